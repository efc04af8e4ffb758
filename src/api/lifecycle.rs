//! A signal's life after intake: its assessment and correction (new
//! versions, JSON Merge Patch), earlier versions, moves through the state
//! machine of `data.covenant.lifecycle`, the status feedback to the reporter
//! and the recipients' feedback to the ZVHD. Each handler reads as the
//! request path: decide → project → log (same transaction as the change) →
//! respond with the receipt.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::extract::{self, MergePatch, Query};
use super::page::PageLog;
use super::purpose::{Exchange, PurposeHeader};
use super::signals::{open_record, parse_id};
use crate::ledger::Disclosed;
use crate::model::signal::{CorrectionRequest, Transition};
use crate::policy::Action;
use crate::policy::model::{Scope, TransitionInput};
use crate::problem::Problem;
use crate::projection::project;
use crate::signals::{self, Vault};
use crate::store::signals::SignalFilter;

/// The purpose a reporter corrects under; any other purpose of a `PATCH`
/// is an assessment.
const CORRECTION_PURPOSE: &str = "signalering";

/// The entity tag of a signal's version.
pub fn etag(version: i64) -> (HeaderName, String) {
    (header::ETAG, format!("\"v{version}\""))
}

/// What `If-Match` asks: absent, or the version it names (412 when it
/// names anything but the current version).
fn if_match(headers: &HeaderMap, current: i64) -> Result<(), Problem> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(());
    };
    let v = v
        .to_str()
        .map_err(|_| Problem::bad_request("If-Match must name an entity tag"))?;
    let current = format!("\"v{current}\"");
    let holds = v
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t == current);
    if holds {
        Ok(())
    } else {
        Err(signals::exchange::stale_version())
    }
}

/// The log's name of one version of a signal.
pub(super) fn version_resource(id: &str, version: i64) -> String {
    format!("version:{id}/{version}")
}

/// Change a signal's content with a JSON Merge Patch (RFC 7396,
/// `application/merge-patch+json`): the ZVHD's assessment (purpose
/// `drieluik`: forms, sector, location type, ...) or the reporter's
/// correction while the signal is `nieuw` (purpose `signalering`). The
/// result must be a valid signal (422 with the failing pointers otherwise);
/// it becomes a new version, the one it replaces is kept. `If-Match` with
/// the `ETag` of the version read makes the change conditional (412 if the
/// signal changed since).
#[utoipa::path(patch, path = "/v1/signals/{id}", tag = "signals", security(("bearer" = [])),
    params(("id" = String, Path, description = "signal id"), PurposeHeader,
        ("If-Match" = Option<String>, Header, description = "the ETag of the version the change is made against")),
    request_body(content = Object, content_type = "application/merge-patch+json", description = "A JSON Merge Patch of the signal (see examples/assessment.json)"),
    responses((status = 200, body = Object, description = "the new version as the caller may see it", headers(("ETag" = String, description = "the new version"))),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 412, body = Problem),
        (status = 415, body = Problem), (status = 422, body = Problem)))]
pub async fn change(
    State(state): State<AppState>,
    exchange: Exchange,
    Path(id): Path<String>,
    headers: HeaderMap,
    MergePatch(patch): MergePatch,
) -> Result<Disclosed<impl IntoResponse>, Problem> {
    let id = parse_id(&id)?;
    let (stored, referrals) = state.db.signal(&id).await?.ok_or_else(Problem::not_found)?;
    let action = match exchange.named_purpose() {
        Some(CORRECTION_PURPOSE) => Action::Correct,
        _ => Action::Assess,
    };
    let mut input = exchange.input(action);
    input.signal = Some(stored.facts.for_policy(referrals));
    let granted = exchange
        .decide(&input, vec![format!("signal:{id}")])
        .await?;
    if_match(&headers, stored.facts.version)?;
    let assessed = signals::assessed_only(&patch);
    if action == Action::Correct && !assessed.is_empty() {
        return Err(Problem::unprocessable(
            "a correction names fields only the ZVHD's assessment sets",
            assessed,
        ));
    }
    let (_, current) = open_record(&state, &stored)?;
    let body = signals::revise(&current, &patch)
        .map_err(|e| Problem::unprocessable("the changed signal does not match schema v1", e))?;
    let facts = stored.facts.revised(&body);
    let version = facts.version;
    let projection = project(&facts.record(&body), &granted);
    let subjects = signals::subjects(&body, &body, &state.pseudonyms);
    let draft = exchange
        .draft(&granted)
        .resources([format!("signal:{id}"), version_resource(&id, version)])
        .subjects(projection.subjects(&body, &state.pseudonyms));
    let receipt = state
        .desk()
        .revise(&stored, facts, &body, &subjects, draft)
        .await?;
    Ok(receipt.disclose(([etag(version)], Json(projection.released(&receipt)))))
}

/// An earlier (or the current) version of a signal, for the ZVHD roles
/// only (purpose `drieluik`); the log entry names the version.
#[utoipa::path(get, path = "/v1/signals/{id}/versions/{version}", tag = "signals", security(("bearer" = [])),
    params(("id" = String, Path, description = "signal id"), ("version" = i64, Path, description = "version number, from 1"), PurposeHeader),
    responses((status = 200, body = Object, headers(("ETag" = String, description = "the version"))),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn version(
    State(state): State<AppState>,
    exchange: Exchange,
    Path((id, version)): Path<(String, String)>,
) -> Result<Disclosed<impl IntoResponse>, Problem> {
    let id = parse_id(&id)?;
    let version: i64 = version
        .parse()
        .ok()
        .filter(|v| *v >= 1)
        .ok_or_else(Problem::not_found)?;
    let (stored, referrals) = state.db.signal(&id).await?.ok_or_else(Problem::not_found)?;
    let mut input = exchange.input(Action::History);
    input.signal = Some(stored.facts.for_policy(referrals));
    let granted = exchange
        .decide(&input, vec![format!("signal:{id}")])
        .await?;
    let sealed = match version {
        v if v == stored.facts.version => stored.body.clone(),
        v if v < stored.facts.version => state
            .db
            .signal_version(&id, v)
            .await?
            .ok_or_else(Problem::not_found)?,
        _ => return Err(Problem::not_found()),
    };
    let body = Vault::open(&state.vault.key(&stored)?, &id, &sealed)?;
    let projection = project(&stored.facts.record(&body), &granted);
    let draft = exchange
        .draft(&granted)
        .resources([format!("signal:{id}"), version_resource(&id, version)])
        .subjects(projection.subjects(&body, &state.pseudonyms));
    let receipt = state.ledger.log(draft).await?;
    Ok(receipt.disclose(([etag(version)], Json(projection.released(&receipt)))))
}

/// The longest note a correction request may carry.
const NOTE_MAX_CHARS: usize = 4000;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CorrectionRequestBody {
    /// The correction asked for, as a JSON Merge Patch of the signal (RFC
    /// 7396): the signal it would make must be valid (422 with pointers
    /// otherwise). The ZVHD applies it, if at all, with an assessment.
    #[schema(value_type = Object)]
    patch: Value,
    /// An explanation for the ZVHD (free text, at most 4000 characters;
    /// treated as the most sensitive class, T).
    note: Option<String>,
}

/// A correction request as it was received: a message, not a change.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CorrectionRequested {
    id: String,
    signal_id: String,
    /// The version the request was made against (the signal's current one).
    against_version: i64,
    /// The partner the request goes to (the ZVHD).
    recipient: String,
    /// RFC 3339, UTC.
    #[schema(format = DateTime)]
    received_at: String,
}

/// Ask the ZVHD to correct a signal (AVG art. 16) once it is past `nieuw`
/// (purpose `signalering`; the reporting municipality, its own signals
/// only). The request is a logged message to the ZVHD, not a change: the
/// signal keeps its version until the ZVHD applies the correction with an
/// assessment. The proposed change is a JSON Merge Patch that must leave a
/// valid signal; fields only the assessment sets are refused (422).
#[utoipa::path(post, path = "/v1/signals/{id}/correction-requests", tag = "signals", security(("bearer" = [])),
    params(("id" = String, Path, description = "signal id"), PurposeHeader),
    request_body(content = CorrectionRequestBody, description = "The proposed change and a note (see examples/correction-request.json)"),
    responses((status = 202, body = CorrectionRequested, description = "the request is with the ZVHD; the signal is unchanged"),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn request_correction(
    State(state): State<AppState>,
    exchange: Exchange,
    Path(id): Path<String>,
    extract::Json(req): extract::Json<CorrectionRequestBody>,
) -> Result<Disclosed<impl IntoResponse>, Problem> {
    let id = parse_id(&id)?;
    let (stored, referrals) = state.db.signal(&id).await?.ok_or_else(Problem::not_found)?;
    let mut input = exchange.input(Action::RequestCorrection);
    input.signal = Some(stored.facts.for_policy(referrals));
    let granted = exchange
        .decide(&input, vec![format!("signal:{id}")])
        .await?;
    let proposed = proposed_correction(&state, &stored, &req)?;
    let request = CorrectionRequest {
        id: uuid::Uuid::now_v7().to_string(),
        signal_id: id.clone(),
        against_version: stored.facts.version,
        partner: exchange.principal.partner.id.clone(),
        body: Vec::new(),
        at: crate::store::now_millis(),
    };
    let intake = &state.config.signals.intake_partner;
    let subjects = signals::subjects(&proposed, &req.patch, &state.pseudonyms);
    let draft = exchange
        .draft(&granted)
        .recipient(Some(intake))
        .resources([
            format!("signal:{id}"),
            format!("correction-request:{}", request.id),
        ])
        .subjects(subjects.clone());
    let requested = CorrectionRequested {
        id: request.id.clone(),
        signal_id: id,
        against_version: request.against_version,
        recipient: intake.clone(),
        received_at: super::inbox::rfc3339(request.at),
    };
    let content = serde_json::json!({ "patch": req.patch, "note": req.note });
    let receipt = state
        .desk()
        .request_correction(&stored, request, &content, &proposed, &subjects, draft)
        .await?;
    Ok(receipt.disclose((StatusCode::ACCEPTED, Json(requested))))
}

/// The signal a correction request proposes: its patch is an object that
/// names no assessment-only field and leaves a valid signal; its note is
/// not too long. Errors are pointers, never values.
fn proposed_correction(
    state: &AppState,
    stored: &crate::store::signals::StoredSignal,
    req: &CorrectionRequestBody,
) -> Result<Value, Problem> {
    let mut errors = Vec::new();
    match req.patch.as_object() {
        Some(o) if !o.is_empty() => errors.extend(in_patch(signals::assessed_only(&req.patch))),
        _ => errors.push(crate::problem::FieldError {
            pointer: "/patch".into(),
            reason: "must be a non-empty JSON Merge Patch object".into(),
        }),
    }
    if req
        .note
        .as_ref()
        .is_some_and(|n| n.chars().count() > NOTE_MAX_CHARS)
    {
        errors.push(crate::problem::FieldError {
            pointer: "/note".into(),
            reason: format!("longer than {NOTE_MAX_CHARS} characters"),
        });
    }
    if !errors.is_empty() {
        return Err(Problem::unprocessable(
            "the correction request cannot be accepted",
            errors,
        ));
    }
    let (_, current) = open_record(state, stored)?;
    signals::revise(&current, &req.patch).map_err(|e| {
        Problem::unprocessable(
            "the corrected signal would not match schema v1",
            in_patch(e),
        )
    })
}

/// Pointers into the signal as pointers into the request's `patch`.
fn in_patch(errors: Vec<crate::problem::FieldError>) -> Vec<crate::problem::FieldError> {
    errors
        .into_iter()
        .map(|f| crate::problem::FieldError {
            pointer: format!("/patch{}", f.pointer.trim_end_matches('/')),
            reason: f.reason,
        })
        .collect()
}

/// One correction request as the ZVHD reads it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CorrectionRequestView {
    id: String,
    /// The partner that asked (the reporter).
    partner: String,
    against_version: i64,
    /// RFC 3339, UTC.
    #[schema(format = DateTime)]
    received_at: String,
    /// The proposed JSON Merge Patch, as the caller's grant allows it.
    #[schema(value_type = Object)]
    patch: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CorrectionRequests {
    signal_id: String,
    /// The signal's current version: a request made against an earlier one
    /// may have been applied, or overtaken, since.
    current_version: i64,
    requests: Vec<CorrectionRequestView>,
}

/// The reporter's correction requests of a signal, oldest first, for the
/// ZVHD roles (purpose `drieluik`). The read is logged, naming each request.
#[utoipa::path(get, path = "/v1/signals/{id}/correction-requests", tag = "signals", security(("bearer" = [])),
    params(("id" = String, Path, description = "signal id"), PurposeHeader),
    responses((status = 200, body = CorrectionRequests), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn correction_requests(
    State(state): State<AppState>,
    exchange: Exchange,
    Path(id): Path<String>,
) -> Result<Disclosed<Json<CorrectionRequests>>, Problem> {
    let id = parse_id(&id)?;
    let (stored, referrals) = state.db.signal(&id).await?.ok_or_else(Problem::not_found)?;
    let mut input = exchange.input(Action::ReviewCorrections);
    input.signal = Some(stored.facts.for_policy(referrals));
    let granted = exchange
        .decide(&input, vec![format!("signal:{id}")])
        .await?;
    let stored_requests = state.db.correction_requests(&id).await?;
    let key = state.vault.key(&stored)?;
    let mut opened = Vec::with_capacity(stored_requests.len());
    let mut subjects = Vec::new();
    let (_, current) = open_record(&state, &stored)?;
    for r in &stored_requests {
        let content = Vault::open(&key, &CorrectionRequest::aad(&id, &r.id), &r.body)?;
        let patch = content.get("patch").cloned().unwrap_or(Value::Null);
        let note = content
            .get("note")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let projection = project(&patch, &granted);
        if let Ok(proposed) = signals::revise(&current, &patch) {
            subjects.extend(projection.subjects(&proposed, &state.pseudonyms));
        }
        // The note is free text (class T): shown only under a grant of it.
        let note = note.filter(|_| granted.fields.iter().any(|f| f == "narrative"));
        opened.push((r, projection, note));
    }
    subjects.sort();
    subjects.dedup();
    let mut resources = vec![format!("signal:{id}")];
    resources.extend(
        stored_requests
            .iter()
            .map(|r| format!("correction-request:{}", r.id)),
    );
    let receipt = state
        .ledger
        .log(
            exchange
                .draft(&granted)
                .resources(resources)
                .subjects(subjects),
        )
        .await?;
    let requests = opened
        .into_iter()
        .map(|(r, projection, note)| CorrectionRequestView {
            id: r.id.clone(),
            partner: r.partner.clone(),
            against_version: r.against_version,
            received_at: super::inbox::rfc3339(r.at),
            patch: projection.released(&receipt),
            note,
        })
        .collect();
    let view = CorrectionRequests {
        signal_id: id,
        current_version: stored.facts.version,
        requests,
    };
    Ok(receipt.disclose(Json(view)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransitionRequest {
    /// The status to move to (`data.covenant.lifecycle.statuses`).
    to: String,
    /// The closing reason, when moving to `afgesloten` (and only then).
    reason: Option<String>,
}

/// One move of a signal's status: codes and a time.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransitionView {
    from: String,
    to: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// RFC 3339, UTC.
    #[schema(format = DateTime)]
    at: String,
}

impl From<&Transition> for TransitionView {
    fn from(t: &Transition) -> Self {
        Self {
            from: t.from.clone(),
            to: t.to.clone(),
            reason: t.reason.clone(),
            at: super::inbox::rfc3339(t.at),
        }
    }
}

/// Move a signal through the state machine (`data.covenant.lifecycle`):
/// the ketenregisseur and the zorgcoördinatoren. A status or closing reason
/// the covenant does not know is 422, a move the state machine does not
/// allow from the signal's status 409; both are logged refusals. The log
/// entry names the move (`transition:<from>/<to>`, `reason:<code>`).
#[utoipa::path(post, path = "/v1/signals/{id}/transitions", tag = "signals", security(("bearer" = [])),
    params(("id" = String, Path, description = "signal id"), PurposeHeader), request_body = TransitionRequest,
    responses((status = 201, body = TransitionView), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn transition(
    State(state): State<AppState>,
    exchange: Exchange,
    Path(id): Path<String>,
    extract::Json(req): extract::Json<TransitionRequest>,
) -> Result<Disclosed<impl IntoResponse>, Problem> {
    let id = parse_id(&id)?;
    // The history first: a move made after it was read takes the number
    // this one would, so the two cannot both be stored.
    let seq = state.db.transitions(&id).await?.len() as i64 + 1;
    let (stored, referrals) = state.db.signal(&id).await?.ok_or_else(Problem::not_found)?;
    let mut input = exchange.input(Action::Transition);
    input.signal = Some(stored.facts.for_policy(referrals));
    input.transition = Some(TransitionInput {
        to: req.to.clone(),
        reason: req.reason.clone(),
    });
    let granted = exchange
        .decide(&input, vec![format!("signal:{id}")])
        .await?;
    let moved = Transition {
        seq,
        from: stored.facts.status.clone(),
        to: req.to,
        reason: req.reason,
        actor: exchange.principal.partner.id.clone(),
        at: crate::store::now_millis(),
    };
    let mut resources = vec![
        format!("signal:{id}"),
        format!("transition:{}/{}", moved.from, moved.to),
    ];
    resources.extend(moved.reason.iter().map(|r| format!("reason:{r}")));
    let draft = exchange.draft(&granted).resources(resources);
    let view = TransitionView::from(&moved);
    let receipt = state.desk().transition(&id, moved, draft).await?;
    Ok(receipt.disclose((StatusCode::CREATED, Json(view))))
}

/// A referral as the ZVHD follows it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReferralFeedbackView {
    recipient: String,
    purpose: String,
    /// The recipient's latest status code (`data.covenant.lifecycle.feedback`).
    #[serde(skip_serializing_if = "Option::is_none")]
    feedback: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    feedback_at: Option<String>,
}

/// The feedback on a signal (terugkoppeling): its status, closing reason
/// and the dates of its moves; for the ZVHD also its referrals and what
/// their recipients reported back.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusFeedback {
    signal_id: String,
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    closing_reason: Option<String>,
    transitions: Vec<TransitionView>,
    /// Only for the ZVHD (the decision's scope `all`); never for the reporter.
    #[serde(skip_serializing_if = "Option::is_none")]
    referrals: Option<Vec<ReferralFeedbackView>>,
}

/// Follow a signal (terugkoppeling): the reporting municipality for its
/// own signals (purpose `signalering`: status, closing reason, dates of the
/// moves — never who received it or what they hold), the ZVHD for any
/// (`drieluik`, `zorgcoordinatie`: with the recipients' feedback). Every
/// read is logged.
#[utoipa::path(get, path = "/v1/signals/{id}/feedback", tag = "signals", security(("bearer" = [])),
    params(("id" = String, Path, description = "signal id"), PurposeHeader),
    responses((status = 200, body = StatusFeedback), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn track(
    State(state): State<AppState>,
    exchange: Exchange,
    Path(id): Path<String>,
) -> Result<Disclosed<Json<StatusFeedback>>, Problem> {
    let id = parse_id(&id)?;
    let (stored, referrals) = state.db.signal(&id).await?.ok_or_else(Problem::not_found)?;
    let mut input = exchange.input(Action::Track);
    input.signal = Some(stored.facts.for_policy(referrals));
    let resources = vec![format!("signal:{id}")];
    let granted = exchange.decide(&input, resources.clone()).await?;
    let transitions = state.db.transitions(&id).await?;
    let referrals = match granted.scope {
        Some(Scope::All) => Some(state.db.referral_feedback(&id).await?),
        _ => None,
    };
    let view = StatusFeedback {
        signal_id: id,
        status: stored.facts.status,
        closing_reason: stored.facts.closing_reason,
        transitions: transitions.iter().map(TransitionView::from).collect(),
        referrals: referrals.map(|rs| {
            rs.into_iter()
                .map(|r| ReferralFeedbackView {
                    recipient: r.recipient,
                    purpose: r.purpose,
                    feedback: r.feedback,
                    feedback_at: r.feedback_at.map(super::inbox::rfc3339),
                })
                .collect()
        }),
    };
    let receipt = state
        .ledger
        .log(exchange.draft(&granted).resources(resources))
        .await?;
    Ok(receipt.disclose(Json(view)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRequest {
    /// `ontvangen`, `in-onderzoek`, `afgerond` or `niet-opgepakt`
    /// (`data.covenant.lifecycle.feedback`).
    status: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeedbackRecorded {
    signal_id: String,
    purpose: String,
    status: String,
}

/// Report back on a referral (terugkoppeling): the recipient of a referral
/// (police, NLA, OM, care partners) sets a status code on the referral it
/// received for the purpose in `Ketenpoort-Purpose`; the ZVHD sees it. An
/// unknown code is 422; a partner without that referral is refused (403).
#[utoipa::path(post, path = "/v1/signals/{id}/feedback", tag = "signals", security(("bearer" = [])),
    params(("id" = String, Path, description = "signal id"), PurposeHeader), request_body = FeedbackRequest,
    responses((status = 201, body = FeedbackRecorded), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 422, body = Problem)))]
pub async fn feedback(
    State(state): State<AppState>,
    exchange: Exchange,
    Path(id): Path<String>,
    extract::Json(req): extract::Json<FeedbackRequest>,
) -> Result<Disclosed<impl IntoResponse>, Problem> {
    let id = parse_id(&id)?;
    let (stored, referrals) = state.db.signal(&id).await?.ok_or_else(Problem::not_found)?;
    let mut input = exchange.input(Action::Feedback);
    input.signal = Some(stored.facts.for_policy(referrals));
    input.feedback = Some(req.status.clone());
    let granted = exchange
        .decide(&input, vec![format!("signal:{id}")])
        .await?;
    // The policy found the caller's referral for this purpose.
    let purpose = input.purpose;
    let partner = exchange.principal.partner.id.clone();
    let draft = exchange
        .draft(&granted)
        .recipient(Some(&state.config.signals.intake_partner))
        .resources([format!("signal:{id}"), format!("feedback:{}", req.status)]);
    let receipt = state
        .desk()
        .feedback(&id, &partner, &purpose, &req.status, draft)
        .await?;
    let recorded = FeedbackRecorded {
        signal_id: id,
        purpose,
        status: req.status,
    };
    Ok(receipt.disclose((StatusCode::CREATED, Json(recorded))))
}

#[derive(Deserialize, IntoParams, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CountParams {
    municipality: Option<String>,
    /// Exploitation form.
    form: Option<String>,
    /// Received on or after (YYYY-MM-DD).
    received_from: Option<String>,
    /// Received on or before (YYYY-MM-DD).
    received_to: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusCount {
    status: String,
    count: u64,
}

/// How many signals the caller may follow are in each status.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusCounts {
    /// Every status of the state machine, zeros included, in its order.
    counts: Vec<StatusCount>,
    total: u64,
}

/// The number of signals per status (the ZVHD's monitoring of the
/// overview lists; a municipality gets its own reports' counts), filtered
/// by municipality, form and date received. A signal counts when the caller
/// may follow it (`track`); the one log entry names every signal counted.
#[utoipa::path(get, path = "/v1/signals/counts", tag = "signals", operation_id = "count_signals", security(("bearer" = [])),
    params(CountParams, PurposeHeader),
    responses((status = 200, body = StatusCounts), (status = 400, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn counts(
    State(state): State<AppState>,
    exchange: Exchange,
    Query(params): Query<CountParams>,
) -> Result<Disclosed<Json<StatusCounts>>, Problem> {
    exchange.known_purpose(Action::Track).await?;
    let filter = params.filter()?;
    let policies = state.policy.current();
    let mut counts: Vec<StatusCount> = policies
        .data()
        .pointer("/covenant/lifecycle/statuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|s| StatusCount {
            status: s.to_owned(),
            count: 0,
        })
        .collect();
    let mut page = PageLog::default();
    for facts in state.db.signal_facts(&filter).await? {
        // Following a signal needs no referral (the track grants are the
        // reporter's own signals and all for the ZVHD): without its
        // referrals a decision can only refuse more, never grant more.
        let mut input = exchange.input(Action::Track);
        input.signal = Some(facts.for_policy(Vec::new()));
        let Some(granted) = exchange.decide_record(&input) else {
            continue;
        };
        match counts.iter_mut().find(|c| c.status == facts.status) {
            Some(c) => c.count += 1,
            None => counts.push(StatusCount {
                status: facts.status.clone(),
                count: 1,
            }),
        }
        page.disclosed([format!("signal:{}", facts.id)], Vec::new(), granted);
    }
    let total = counts.iter().map(|c| c.count).sum();
    let receipt = state
        .ledger
        .log(page.draft(&exchange, Action::Track))
        .await?;
    Ok(receipt.disclose(Json(StatusCounts { counts, total })))
}

impl CountParams {
    fn filter(self) -> Result<SignalFilter, Problem> {
        for (name, v) in [("municipality", &self.municipality), ("form", &self.form)] {
            if v.as_deref().is_some_and(|v| !crate::partners::is_slug(v)) {
                return Err(Problem::bad_request(format!("{name} must be a code")));
            }
        }
        super::signals::date_param("receivedFrom", &self.received_from)?;
        super::signals::date_param("receivedTo", &self.received_to)?;
        Ok(SignalFilter {
            municipality: self.municipality,
            form: self.form,
            received_from: self.received_from,
            received_to: self.received_to,
            ..SignalFilter::default()
        })
    }
}
