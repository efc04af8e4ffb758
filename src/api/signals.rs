//! The signal exchange: submit, read, list, refer. Each handler reads as the
//! request path: validate → decide → project → log (same transaction as
//! any change) → respond with the receipt.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::AppState;
use super::extract::{self, Query};
use super::idempotency::IdempotencyKeyHeader;
use super::page::PageLog;
use super::purpose::{self, Exchange, PurposeHeader, party};
use crate::boundary::Delivery;
use crate::ledger::Disclosed;
use crate::policy::{Action, Mode};
use crate::problem::{FieldError, Problem};
use crate::projection::project;
use crate::signals::{self, Facts, Vault};
use crate::store::signals::{Referral, SignalFilter, StoredSignal};

/// What signal-list cursors are sealed for.
const CURSOR_SCOPE: &str = "signals";

/// The id in a path: a UUID, or the resource does not exist.
pub fn parse_id(id: &str) -> Result<String, Problem> {
    Uuid::parse_str(id)
        .map(|u| u.to_string())
        .map_err(|_| Problem::not_found())
}

/// Opens a stored signal into its full record (envelope + body) and body.
pub(super) fn open_record(
    state: &AppState,
    stored: &StoredSignal,
) -> Result<(Value, Value), Problem> {
    let key = state.vault.key(stored)?;
    let body = Vault::open(&key, &stored.facts.id, &stored.body)?;
    Ok((stored.facts.record(&body), body))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignalCreated {
    id: String,
    status: String,
    /// The partner that received the signal (the ZVHD).
    recipient: String,
}

/// Report a signal to the ZVHD (`Ketenpoort-Purpose: signalering`). The body
/// follows `schemas/signal.v1.json`; the intake is itself a logged
/// disclosure from the reporter to the ZVHD.
#[utoipa::path(post, path = "/v1/signals", tag = "signals", security(("bearer" = [])), params(PurposeHeader, IdempotencyKeyHeader),
    request_body(content = Object, description = "A signal, JSON Schema `schemas/signal.v1.json` (see examples/signal.json)"),
    responses((status = 201, body = SignalCreated), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn submit(
    State(state): State<AppState>,
    exchange: Exchange,
    extract::Json(body): extract::Json<Value>,
) -> Result<Disclosed<impl IntoResponse>, Problem> {
    let assessed = signals::assessed_only(&body);
    if !assessed.is_empty() {
        return Err(Problem::invalid_input(
            "the signal names fields only the ZVHD's assessment sets",
            assessed,
        ));
    }
    let body = signals::validate(body)
        .map_err(|e| Problem::invalid_input("the signal does not match schema v1", e))?;
    let intake = state
        .db
        .partner(&state.config.signals.intake_partner)
        .await?
        .ok_or_else(|| Problem::unavailable("the intake partner is not in the registry"))?;
    let id = Uuid::now_v7().to_string();
    let reporter = &exchange.principal.partner.id;
    let facts = Facts::of(&id, reporter, &body, crate::store::now_millis());
    let mut input = exchange.input(Action::Submit);
    input.recipient = Some(party(&intake, None));
    input.signal = Some(facts.for_policy(Vec::new()));
    let granted = exchange.decide(&input, Vec::new()).await?;
    let subjects = signals::subjects(&body, &body, &state.pseudonyms);
    let draft = exchange
        .draft(&granted)
        .recipient(Some(&intake.id))
        .resources([format!("signal:{id}")])
        .subjects(subjects.clone());
    let receipt = state.desk().intake(&facts, &body, &subjects, draft).await?;
    let created = SignalCreated {
        id: id.clone(),
        status: facts.status,
        recipient: intake.id,
    };
    let location = [(header::LOCATION, format!("/v1/signals/{id}"))];
    Ok(receipt.disclose((StatusCode::CREATED, location, Json(created))))
}

/// One signal, projected for the caller by the covenant policy.
#[utoipa::path(get, path = "/v1/signals/{id}", tag = "signals", security(("bearer" = [])),
    params(("id" = String, Path, description = "signal id"), PurposeHeader),
    responses((status = 200, body = Object, headers(("ETag" = String, description = "the version read; send it as If-Match with a change"))),
        (status = 403, body = Problem), (status = 422, body = Problem), (status = 404, body = Problem)))]
pub async fn read(
    State(state): State<AppState>,
    exchange: Exchange,
    Path(id): Path<String>,
) -> Result<Disclosed<impl IntoResponse>, Problem> {
    let id = parse_id(&id)?;
    let (stored, referrals) = state.db.signal(&id).await?.ok_or_else(Problem::not_found)?;
    let mut input = exchange.input(Action::Read);
    input.signal = Some(stored.facts.for_policy(referrals));
    let resources = vec![format!("signal:{id}")];
    let granted = exchange.decide(&input, resources.clone()).await?;
    let (record, body) = open_record(&state, &stored)?;
    let projection = project(&record, &granted);
    let version = stored.facts.version;
    let draft = exchange
        .draft(&granted)
        .resources(resources)
        .resources([super::lifecycle::version_resource(&id, version)])
        .subjects(projection.subjects(&body, &state.pseudonyms));
    let receipt = state.ledger.log(draft).await?;
    let etag = [super::lifecycle::etag(version)];
    Ok(receipt.disclose((etag, Json(projection.released(&receipt)))))
}

#[derive(Deserialize, IntoParams, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListParams {
    status: Option<String>,
    municipality: Option<String>,
    /// Exploitation form.
    form: Option<String>,
    /// Received on or after (YYYY-MM-DD).
    received_from: Option<String>,
    /// Received on or before (YYYY-MM-DD).
    received_to: Option<String>,
    /// Paging cursor: `nextAfter` of the previous page.
    after: Option<String>,
    /// At most 100.
    limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignalPage {
    /// The signals of this page the caller may see, each projected for it.
    items: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after: Option<String>,
}

pub(super) fn date_param(name: &str, v: &Option<String>) -> Result<(), Problem> {
    match v {
        Some(d)
            if time::Date::parse(d, time::macros::format_description!("[year]-[month]-[day]"))
                .is_err() =>
        {
            Err(Problem::bad_request(format!(
                "{name} must be a YYYY-MM-DD date"
            )))
        }
        _ => Ok(()),
    }
}

/// Signals the caller may see (paged), filtered by status, municipality,
/// form and date received; each decided and projected on its own.
#[utoipa::path(get, path = "/v1/signals", tag = "signals", operation_id = "list_signals", security(("bearer" = [])), params(ListParams, PurposeHeader),
    responses((status = 200, body = SignalPage), (status = 400, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    exchange: Exchange,
    Query(params): Query<ListParams>,
) -> Result<Disclosed<Json<SignalPage>>, Problem> {
    exchange.known_purpose(Action::List).await?;
    let filter = params.filter(&state)?;
    let candidates = state.db.signals(&filter).await?;
    // The page ends at the last candidate, which the caller may not be
    // allowed to see: the cursor is sealed, never the bare id.
    let next_after = (candidates.len() as u32 == filter.limit)
        .then(|| {
            candidates
                .last()
                .map(|c| state.cursors.seal(CURSOR_SCOPE, &c.facts.id))
        })
        .flatten();
    let ids: Vec<&str> = candidates.iter().map(|c| c.facts.id.as_str()).collect();
    let mut referrals = state.db.referrals_of(&ids).await?;
    let mut items = Vec::new();
    let mut page = PageLog::default();
    for candidate in &candidates {
        let facts = &candidate.facts;
        let mut input = exchange.input(Action::List);
        input.signal = Some(facts.for_policy(referrals.remove(&facts.id).unwrap_or_default()));
        let Some(granted) = exchange.decide_record(&input) else {
            continue;
        };
        let (record, body) = open_record(&state, candidate)?;
        let item = project(&record, &granted);
        let subjects = item.subjects(&body, &state.pseudonyms);
        let named = [
            format!("signal:{}", facts.id),
            super::lifecycle::version_resource(&facts.id, facts.version),
        ];
        page.disclosed(named, subjects, granted);
        items.push(item);
    }
    let receipt = state
        .ledger
        .log(page.draft(&exchange, Action::List))
        .await?;
    let items = items.into_iter().map(|i| i.released(&receipt)).collect();
    Ok(receipt.disclose(Json(SignalPage { items, next_after })))
}

impl ListParams {
    /// The store's filter for these parameters: codes, dates and the
    /// sealed cursor checked.
    fn filter(self, state: &AppState) -> Result<SignalFilter, Problem> {
        for (name, v) in [
            ("status", &self.status),
            ("municipality", &self.municipality),
            ("form", &self.form),
        ] {
            if v.as_deref().is_some_and(|v| !crate::partners::is_slug(v)) {
                return Err(Problem::bad_request(format!("{name} must be a code")));
            }
        }
        date_param("receivedFrom", &self.received_from)?;
        date_param("receivedTo", &self.received_to)?;
        let after = match self.after.as_deref() {
            Some(c) => Some(
                state
                    .cursors
                    .open(CURSOR_SCOPE, c)
                    .ok_or_else(|| Problem::bad_request("invalid cursor"))?,
            ),
            None => None,
        };
        Ok(SignalFilter {
            status: self.status,
            municipality: self.municipality,
            form: self.form,
            received_from: self.received_from,
            received_to: self.received_to,
            reporter: None,
            after,
            limit: self.limit.unwrap_or(50).clamp(1, 100),
        })
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReferralRequest {
    /// Partner id of the recipient.
    recipient: String,
    /// Purpose of the referral; must equal the `Ketenpoort-Purpose` header.
    purpose: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReferralCreated {
    id: String,
    recipient: String,
    purpose: String,
    /// `full`/`masked`: a copy is in the recipient's inbox; `aggregate`: the
    /// signal counts towards phenomenon tables only, no record is delivered.
    mode: Mode,
    #[serde(skip_serializing_if = "Option::is_none")]
    inbox_item: Option<String>,
    fields: Vec<String>,
}

/// Refer a signal to a partner for a purpose. The recipient's projection is
/// stored in its inbox; a referral to a non-member only records the signal
/// as a contribution to phenomenon tables.
#[utoipa::path(post, path = "/v1/signals/{id}/referrals", tag = "signals", security(("bearer" = [])),
    params(("id" = String, Path, description = "signal id"), PurposeHeader, IdempotencyKeyHeader), request_body = ReferralRequest,
    responses((status = 201, body = ReferralCreated), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn refer(
    State(state): State<AppState>,
    exchange: Exchange,
    Path(id): Path<String>,
    extract::Json(req): extract::Json<ReferralRequest>,
) -> Result<Disclosed<impl IntoResponse>, Problem> {
    let id = parse_id(&id)?;
    let recipient = req.recipient(&state, &exchange).await?;
    let (stored, referrals) = state.db.signal(&id).await?.ok_or_else(Problem::not_found)?;
    req.not_yet_referred(&state, &id, &recipient.id).await?;
    let mut input = exchange.input(Action::Refer);
    input.recipient = Some(party(&recipient, None));
    input.signal = Some(stored.facts.for_policy(referrals));
    let granted = exchange
        .decide(&input, vec![format!("signal:{id}")])
        .await?;
    let (record, body) = open_record(&state, &stored)?;
    let disclosed = project(&record, &granted);
    let referral = Referral {
        id: Uuid::now_v7().to_string(),
        signal_id: id,
        recipient: recipient.id.clone(),
        purpose: req.purpose.clone(),
        referred_by: exchange.principal.partner.id.clone(),
    };
    let referral_id = referral.id.clone();
    let draft = exchange
        .draft(&granted)
        .recipient(Some(&recipient.id))
        .subjects(disclosed.subjects(&body, &state.pseudonyms));
    let (desk, delivery) = (state.desk(), Delivery::of(&granted));
    let referred = desk
        .refer(&stored, &body, referral, &disclosed, delivery, draft)
        .await?;
    let granted = granted.into_decision();
    let created = ReferralCreated {
        id: referral_id,
        recipient: recipient.id,
        purpose: req.purpose,
        mode: granted.mode,
        inbox_item: referred.inbox_item,
        fields: granted.fields,
    };
    Ok(referred
        .receipt
        .disclose((StatusCode::CREATED, Json(created))))
}

impl ReferralRequest {
    /// 409 if the signal was referred to this recipient for this purpose
    /// before.
    async fn not_yet_referred(
        &self,
        state: &AppState,
        signal: &str,
        recipient: &str,
    ) -> Result<(), Problem> {
        if state.db.referred(signal, recipient, &self.purpose).await? {
            return Err(crate::signals::exchange::already_referred());
        }
        Ok(())
    }

    /// The recipient, once the body names a registered partner and a
    /// purpose of the covenant that the header does not contradict (422
    /// listing each failing field otherwise).
    async fn recipient(
        &self,
        state: &AppState,
        exchange: &Exchange,
    ) -> Result<crate::partners::Partner, Problem> {
        let mut errors = Vec::new();
        let recipient = match state.db.partner(&self.recipient).await? {
            Some(r) if crate::partners::is_slug(&self.recipient) => Some(r),
            _ => {
                errors.push(FieldError {
                    pointer: "/recipient".into(),
                    reason: "unknown partner".into(),
                });
                None
            }
        };
        let policies = state.policy.current();
        errors.extend(purpose::body_error(
            &policies,
            exchange.named_purpose(),
            &self.purpose,
        ));
        match recipient.filter(|_| errors.is_empty()) {
            Some(r) => Ok(r),
            None => Err(Problem::unprocessable(
                "the referral names an unknown recipient or purpose",
                errors,
            )),
        }
    }
}
