//! Phenomenon tables over HTTP: the catalogue, the feed of releases, one
//! release and one table of a release. Any partner may read them, the RIEC
//! included (`Ketenpoort-Purpose: fenomeenanalyse`; the policy decides
//! `release-aggregate`); every read of a release is a log entry. A release
//! is served as it was stored. No query parameter beyond the feed's cursor
//! is accepted, so no cross-tabulation outside the catalogue can be asked
//! for (400).

use axum::Json;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::exchange::{Exchange, Purpose, with_receipt};
use super::extract::Query;
use super::middleware::RequestContext;
use super::problem::Problem;
use crate::auth::Principal;
use crate::ledger::LogAction;
use crate::phenomena::{Catalogue, Code, Release, ReleasePage, ReleasePeriod};
use crate::policy::{Action, Decision};

/// No query parameters: any parameter (a dimension, a filter) is refused.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

#[derive(Deserialize, IntoParams, Default)]
#[serde(deny_unknown_fields)]
pub struct FeedParams {
    /// Paging cursor: `nextAfter` of the previous page.
    after: Option<u64>,
    /// At most 100.
    limit: Option<u32>,
}

/// The policy's decision on releasing tables to the caller; a refusal is
/// logged against `resources`.
async fn decide(x: &Exchange<'_>, resources: Vec<String>) -> Result<Decision, Problem> {
    x.decide(
        &x.input(Action::ReleaseAggregate),
        LogAction::ReleaseAggregate,
        resources,
    )
    .await
}

fn release_id(id: &str) -> Result<ReleasePeriod, Problem> {
    id.parse().map_err(|_| Problem::not_found())
}

/// The catalogue: every table of a release, its dimensions and their
/// public category lists, and the trends.
#[utoipa::path(get, path = "/v1/phenomena/tables", tag = "phenomena", security(("bearer" = [])),
    responses((status = 200, body = Catalogue), (status = 400, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn catalogue(
    State(s): State<AppState>,
    ctx: RequestContext,
    principal: Principal,
    Purpose(purpose): Purpose,
    Query(NoParams {}): Query<NoParams>,
) -> Result<Json<Catalogue>, Problem> {
    let x = Exchange {
        state: &s,
        ctx: &ctx,
        principal: &principal,
        purpose,
    };
    decide(&x, vec!["catalogue".into()]).await?;
    Ok(Json(s.phenomena.catalogue()?))
}

/// The releases, oldest first (paged): their ids, periods and tables.
#[utoipa::path(get, path = "/v1/phenomena/releases", tag = "phenomena", security(("bearer" = [])), params(FeedParams),
    responses((status = 200, body = ReleasePage), (status = 400, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn releases(
    State(s): State<AppState>,
    ctx: RequestContext,
    principal: Principal,
    Purpose(purpose): Purpose,
    Query(p): Query<FeedParams>,
) -> Result<Json<ReleasePage>, Problem> {
    let x = Exchange {
        state: &s,
        ctx: &ctx,
        principal: &principal,
        purpose,
    };
    decide(&x, vec!["release".into()]).await?;
    let limit = p.limit.unwrap_or(50).clamp(1, 100);
    Ok(Json(s.phenomena.releases(p.after, limit).await?))
}

/// One release: every table and trend, as published.
#[utoipa::path(get, path = "/v1/phenomena/releases/{id}", tag = "phenomena", security(("bearer" = [])),
    params(("id" = String, Path, description = "release id: the period it closes, e.g. 2026-Q3 or 2026-08")),
    responses((status = 200, body = Release), (status = 400, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem),
        (status = 404, body = Problem)))]
pub async fn release(
    State(s): State<AppState>,
    ctx: RequestContext,
    principal: Principal,
    Purpose(purpose): Purpose,
    Path(id): Path<String>,
    Query(NoParams {}): Query<NoParams>,
) -> Result<Response, Problem> {
    let x = Exchange {
        state: &s,
        ctx: &ctx,
        principal: &principal,
        purpose,
    };
    let id = release_id(&id)?;
    let resources = vec![format!("release:{id}")];
    let decision = decide(&x, resources.clone()).await?;
    let release = s
        .phenomena
        .release(id)
        .await?
        .ok_or_else(Problem::not_found)?;
    let draft = x
        .draft(LogAction::ReleaseAggregate, &decision)
        .resources(resources);
    let receipt = s.ledger.record(draft).await?;
    Ok(with_receipt(receipt, Json(release)))
}

/// One table (or trend) of a release.
#[utoipa::path(get, path = "/v1/phenomena/releases/{id}/tables/{table}", tag = "phenomena", security(("bearer" = [])),
    params(("id" = String, Path, description = "release id, e.g. 2026-Q3"),
        ("table" = String, Path, description = "table or trend id from the catalogue")),
    responses((status = 200, body = Release), (status = 400, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem),
        (status = 404, body = Problem)))]
pub async fn release_table(
    State(s): State<AppState>,
    ctx: RequestContext,
    principal: Principal,
    Purpose(purpose): Purpose,
    Path((id, table)): Path<(String, String)>,
    Query(NoParams {}): Query<NoParams>,
) -> Result<Response, Problem> {
    let x = Exchange {
        state: &s,
        ctx: &ctx,
        principal: &principal,
        purpose,
    };
    let id = release_id(&id)?;
    let table = Code::new(&table).ok_or_else(Problem::not_found)?;
    // Only ids of ours are logged: the table once it is known to exist.
    let decision = decide(&x, vec![format!("release:{id}")]).await?;
    let release = s
        .phenomena
        .release(id)
        .await?
        .ok_or_else(Problem::not_found)?;
    let one = release.only(&table).ok_or_else(Problem::not_found)?;
    let draft = x
        .draft(LogAction::ReleaseAggregate, &decision)
        .resources([format!("release:{id}"), format!("table:{table}")]);
    let receipt = s.ledger.record(draft).await?;
    Ok(with_receipt(receipt, Json(one)))
}
