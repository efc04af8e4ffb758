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
use super::extract::Query;
use super::format::TableFormat;
use super::purpose::{Exchange, PurposeHeader};
use crate::ledger::Disclosed;
use crate::phenomena::{Catalogue, Code, Release, ReleasePage, ReleasePeriod};
use crate::policy::{Action, Granted};
use crate::problem::Problem;

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
async fn decide(exchange: &Exchange, resources: Vec<String>) -> Result<Granted, Problem> {
    let input = exchange.input(Action::ReleaseAggregate);
    exchange.decide(&input, resources).await
}

fn release_id(id: &str) -> Result<ReleasePeriod, Problem> {
    id.parse().map_err(|_| Problem::not_found())
}

/// The catalogue: every table of a release, its dimensions and their
/// public category lists, and the trends.
#[utoipa::path(get, path = "/v1/phenomena/tables", tag = "phenomena", security(("bearer" = [])), params(PurposeHeader),
    responses((status = 200, body = Catalogue), (status = 400, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn catalogue(
    State(state): State<AppState>,
    exchange: Exchange,
    Query(NoParams {}): Query<NoParams>,
) -> Result<Json<Catalogue>, Problem> {
    decide(&exchange, vec!["catalogue".into()]).await?;
    Ok(Json(state.phenomena.catalogue()?))
}

/// The releases, oldest first (paged): their ids, periods and tables.
#[utoipa::path(get, path = "/v1/phenomena/releases", tag = "phenomena", security(("bearer" = [])), params(FeedParams, PurposeHeader),
    responses((status = 200, body = ReleasePage), (status = 400, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn releases(
    State(state): State<AppState>,
    exchange: Exchange,
    Query(p): Query<FeedParams>,
) -> Result<Json<ReleasePage>, Problem> {
    decide(&exchange, vec!["release".into()]).await?;
    let limit = p.limit.unwrap_or(50).clamp(1, 100);
    Ok(Json(state.phenomena.releases(p.after, limit).await?))
}

/// The media types a release and a table are served in.
const FORMATS: &str = "JSON by default; `Accept: text/csv` gives CSV (UTF-8 with a byte order \
    mark, `;` between fields, a header row and one row per cell or trend point) and \
    `Accept: application/json-stat+json` gives JSON-stat 2.0; any other `Accept` is 406.";

/// One release: every table and trend, as published. JSON by default;
/// `Accept: text/csv` or `application/json-stat+json` for CSV or
/// JSON-stat 2.0 (a collection of datasets), built from the same stored
/// release.
#[utoipa::path(get, path = "/v1/phenomena/releases/{id}", tag = "phenomena", security(("bearer" = [])),
    params(("id" = String, Path, description = "release id: the period it closes, e.g. 2026-Q3 or 2026-08"), PurposeHeader),
    responses((status = 200, description = FORMATS, content((Release = "application/json"), (String = "text/csv"), (Object = "application/json-stat+json"))),
        (status = 400, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem),
        (status = 404, body = Problem), (status = 406, body = Problem)))]
pub async fn release(
    State(state): State<AppState>,
    format: TableFormat,
    exchange: Exchange,
    Path(id): Path<String>,
    Query(NoParams {}): Query<NoParams>,
) -> Result<Disclosed<Response>, Problem> {
    let id = release_id(&id)?;
    let resources = vec![format!("release:{id}")];
    let granted = decide(&exchange, resources.clone()).await?;
    let release = state
        .phenomena
        .release(id)
        .await?
        .ok_or_else(Problem::not_found)?;
    let body = format.render(&release, None)?;
    let draft = exchange.draft(&granted).resources(resources);
    let receipt = state.ledger.log(draft).await?;
    Ok(receipt.disclose(body))
}

/// One table (or trend) of a release, in the release's envelope (JSON),
/// as CSV, or as a JSON-stat 2.0 dataset (`Accept`, as for a release).
#[utoipa::path(get, path = "/v1/phenomena/releases/{id}/tables/{table}", tag = "phenomena", security(("bearer" = [])),
    params(("id" = String, Path, description = "release id, e.g. 2026-Q3"),
        ("table" = String, Path, description = "table or trend id from the catalogue"), PurposeHeader),
    responses((status = 200, description = FORMATS, content((Release = "application/json"), (String = "text/csv"), (Object = "application/json-stat+json"))),
        (status = 400, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem),
        (status = 404, body = Problem), (status = 406, body = Problem)))]
pub async fn release_table(
    State(state): State<AppState>,
    format: TableFormat,
    exchange: Exchange,
    Path((id, table)): Path<(String, String)>,
    Query(NoParams {}): Query<NoParams>,
) -> Result<Disclosed<Response>, Problem> {
    let id = release_id(&id)?;
    let table = Code::new(&table).ok_or_else(Problem::not_found)?;
    // Only ids of ours are logged: the table once it is known to exist.
    let granted = decide(&exchange, vec![format!("release:{id}")]).await?;
    let release = state
        .phenomena
        .release(id)
        .await?
        .ok_or_else(Problem::not_found)?;
    if !release.holds(&table) {
        return Err(Problem::not_found());
    }
    let body = format.render(&release, Some(&table))?;
    let draft = exchange
        .draft(&granted)
        .resources([format!("release:{id}"), format!("table:{table}")]);
    let receipt = state.ledger.log(draft).await?;
    Ok(receipt.disclose(body))
}
