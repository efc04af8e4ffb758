//! The signal exchange: submit, read, list, refer. Each handler reads as the
//! request path: validate → decide → project → log (same transaction as
//! any change) → respond with the receipt.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::AppState;
use super::exchange::{Exchange, PageLog, Purpose, party, with_receipt};
use super::extract::{self, Query};
use super::middleware::RequestContext;
use super::problem::{FieldError, Problem};
use crate::auth::Principal;
use crate::boundary;
use crate::ledger::{LogAction, work};
use crate::phenomena::{self, RecordKey};
use crate::policy::{Action, Mode};
use crate::projection::project;
use crate::signals::{self, Meta, Vault};
use crate::store::signals::{Referral, SignalFilter, StoredSignal};

/// What signal-list cursors are sealed for.
const CURSOR_SCOPE: &str = "signals";

/// The id in a path: a UUID, or the resource does not exist.
pub fn parse_id(id: &str) -> Result<String, Problem> {
    Uuid::parse_str(id)
        .map(|u| u.to_string())
        .map_err(|_| Problem::not_found())
}

/// Opens a stored signal into its full record (envelope + body).
fn open_record(s: &AppState, stored: &StoredSignal) -> Result<(Value, Value), Problem> {
    let key = s.vault.key(stored)?;
    let body = Vault::open(&key, &stored.meta.id, &stored.body)?;
    Ok((stored.meta.record(&body), body))
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
#[utoipa::path(post, path = "/v1/signals", tag = "signals", security(("bearer" = [])),
    request_body(content = Object, description = "A signal, JSON Schema `schemas/signal.v1.json` (see examples/signal.json)"),
    responses((status = 201, body = SignalCreated), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn submit(
    State(s): State<AppState>,
    ctx: RequestContext,
    principal: Principal,
    Purpose(purpose): Purpose,
    extract::Json(body): extract::Json<Value>,
) -> Result<Response, Problem> {
    let x = Exchange {
        state: &s,
        ctx: &ctx,
        principal: &principal,
        purpose,
    };
    let body = signals::validate(body)
        .map_err(|e| Problem::unprocessable("the signal does not match schema v1", e))?;
    let intake =
        s.db.partner(&s.config.signals.intake_partner)
            .await?
            .ok_or_else(|| Problem::unavailable("the intake partner is not in the registry"))?;
    let id = Uuid::now_v7().to_string();
    let meta = Meta::of(
        &id,
        &principal.partner.id,
        &body,
        crate::store::now_millis(),
    );
    let mut input = x.input(Action::Submit);
    input.recipient = Some(party(&intake, None));
    input.signal = Some(meta.facts(Vec::new()));
    let decision = x.decide(&input, LogAction::Submit, Vec::new()).await?;
    let sealed = s.vault.seal_new(&id, &body);
    let subjects = signals::subjects(&body, &body, &s.pseudonyms);
    let known = boundary::fingerprint::of_signal(&id, &body, &subjects);
    let fingerprints = s.egress.fingerprints(&known);
    let draft = x
        .draft(LogAction::Submit, &decision)
        .recipient(Some(&intake.id))
        .resources([format!("signal:{id}")])
        .subjects(subjects);
    let stored = meta.clone();
    let receipt = s
        .ledger
        .commit(work(move |mut unit| {
            Box::pin(async move {
                let tx = unit.tx();
                tx.insert_signal(&stored, &sealed.body, &sealed.kek_id, &sealed.wrapped)
                    .await?;
                tx.insert_record_key(&stored.id, RecordKey::generate().stored())
                    .await?;
                tx.insert_fingerprints(&stored.id, &fingerprints).await?;
                Ok(unit.append(draft))
            })
        }))
        .await?;
    let created = SignalCreated {
        id: id.clone(),
        status: meta.status,
        recipient: intake.id,
    };
    let mut res = with_receipt(receipt, (StatusCode::CREATED, Json(created)));
    res.headers_mut().insert(
        header::LOCATION,
        format!("/v1/signals/{id}").parse().expect("location"),
    );
    Ok(res)
}

/// One signal, projected for the caller by the covenant policy.
#[utoipa::path(get, path = "/v1/signals/{id}", tag = "signals", security(("bearer" = [])),
    params(("id" = String, Path, description = "signal id")),
    responses((status = 200, body = Object), (status = 403, body = Problem), (status = 422, body = Problem), (status = 404, body = Problem)))]
pub async fn read(
    State(s): State<AppState>,
    ctx: RequestContext,
    principal: Principal,
    Purpose(purpose): Purpose,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let x = Exchange {
        state: &s,
        ctx: &ctx,
        principal: &principal,
        purpose,
    };
    let id = parse_id(&id)?;
    let (stored, referrals) = s.db.signal(&id).await?.ok_or_else(Problem::not_found)?;
    let mut input = x.input(Action::Read);
    input.signal = Some(stored.meta.facts(referrals));
    let decision = x
        .decide(&input, LogAction::Read, vec![format!("signal:{id}")])
        .await?;
    let (record, body) = open_record(&s, &stored)?;
    let projected = project(&record, &decision.fields);
    let draft = x
        .draft(LogAction::Read, &decision)
        .resources([format!("signal:{id}")])
        .subjects(signals::subjects(&body, &projected, &s.pseudonyms));
    let receipt = s.ledger.record(draft).await?;
    Ok(with_receipt(receipt, Json(projected)))
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

fn date_param(name: &str, v: &Option<String>) -> Result<(), Problem> {
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
#[utoipa::path(get, path = "/v1/signals", tag = "signals", operation_id = "list_signals", security(("bearer" = [])), params(ListParams),
    responses((status = 200, body = SignalPage), (status = 400, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn list(
    State(s): State<AppState>,
    ctx: RequestContext,
    principal: Principal,
    Purpose(purpose): Purpose,
    Query(p): Query<ListParams>,
) -> Result<Response, Problem> {
    let x = Exchange {
        state: &s,
        ctx: &ctx,
        principal: &principal,
        purpose,
    };
    x.known_purpose(LogAction::List).await?;
    for (name, v) in [
        ("status", &p.status),
        ("municipality", &p.municipality),
        ("form", &p.form),
    ] {
        if v.as_deref().is_some_and(|v| !crate::partners::is_slug(v)) {
            return Err(Problem::bad_request(format!("{name} must be a code")));
        }
    }
    date_param("receivedFrom", &p.received_from)?;
    date_param("receivedTo", &p.received_to)?;
    let after = match p.after.as_deref() {
        Some(c) => Some(
            s.cursors
                .open(CURSOR_SCOPE, c)
                .ok_or_else(|| Problem::bad_request("invalid cursor"))?,
        ),
        None => None,
    };
    let limit = p.limit.unwrap_or(50).clamp(1, 100);
    let filter = SignalFilter {
        status: p.status,
        municipality: p.municipality,
        form: p.form,
        received_from: p.received_from,
        received_to: p.received_to,
        reporter: None,
        after,
        limit,
    };
    let candidates = s.db.signals(&filter).await?;
    // The page ends at the last candidate, which the caller may not be
    // allowed to see: the cursor is sealed, never the bare id.
    let next_after = (candidates.len() as u32 == limit)
        .then(|| {
            candidates
                .last()
                .map(|c| s.cursors.seal(CURSOR_SCOPE, &c.meta.id))
        })
        .flatten();
    let ids: Vec<&str> = candidates.iter().map(|c| c.meta.id.as_str()).collect();
    let mut referrals = s.db.referrals_of(&ids).await?;
    let mut items = Vec::new();
    let mut page = PageLog::default();
    for c in &candidates {
        let mut input = x.input(Action::List);
        input.signal = Some(
            c.meta
                .facts(referrals.remove(&c.meta.id).unwrap_or_default()),
        );
        let d = s.policy.decide(&input);
        if !d.allow {
            continue;
        }
        let (record, body) = open_record(&s, c)?;
        let item = project(&record, &d.fields);
        let subjects = signals::subjects(&body, &item, &s.pseudonyms);
        page.disclosed(format!("signal:{}", c.meta.id), subjects, d);
        items.push(item);
    }
    let receipt = s.ledger.record(page.draft(&x, LogAction::List)).await?;
    Ok(with_receipt(
        receipt,
        Json(SignalPage { items, next_after }),
    ))
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
    params(("id" = String, Path, description = "signal id")), request_body = ReferralRequest,
    responses((status = 201, body = ReferralCreated), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn refer(
    State(s): State<AppState>,
    ctx: RequestContext,
    principal: Principal,
    Purpose(purpose): Purpose,
    Path(id): Path<String>,
    extract::Json(req): extract::Json<ReferralRequest>,
) -> Result<Response, Problem> {
    let id = parse_id(&id)?;
    let policies = s.policy.current();
    let mut errors = Vec::new();
    let recipient = match s.db.partner(&req.recipient).await? {
        Some(r) if crate::partners::is_slug(&req.recipient) => Some(r),
        _ => {
            errors.push(FieldError {
                pointer: "/recipient".into(),
                reason: "unknown partner".into(),
            });
            None
        }
    };
    if !policies.is_known_purpose(&req.purpose) {
        errors.push(FieldError {
            pointer: "/purpose".into(),
            reason: "unknown purpose".into(),
        });
    } else if purpose.as_deref().is_some_and(|h| h != req.purpose) {
        errors.push(FieldError {
            pointer: "/purpose".into(),
            reason: "differs from the Ketenpoort-Purpose header".into(),
        });
    }
    let Some(recipient) = recipient.filter(|_| errors.is_empty()) else {
        return Err(Problem::unprocessable(
            "the referral names an unknown recipient or purpose",
            errors,
        ));
    };
    let x = Exchange {
        state: &s,
        ctx: &ctx,
        principal: &principal,
        purpose,
    };
    let (stored, referrals) = s.db.signal(&id).await?.ok_or_else(Problem::not_found)?;
    if s.db.referred(&id, &recipient.id, &req.purpose).await? {
        return Err(
            Problem::new(StatusCode::CONFLICT, "already-referred", "Already referred")
                .detail("this signal was already referred to this recipient for this purpose"),
        );
    }
    let mut input = x.input(Action::Refer);
    input.recipient = Some(party(&recipient, None));
    input.signal = Some(stored.meta.facts(referrals));
    let decision = x
        .decide(&input, LogAction::Refer, vec![format!("signal:{id}")])
        .await?;
    let (record, body) = open_record(&s, &stored)?;
    let referral = Referral {
        id: Uuid::now_v7().to_string(),
        signal_id: id.clone(),
        recipient: recipient.id.clone(),
        purpose: req.purpose.clone(),
        referred_by: principal.partner.id.clone(),
    };
    let mut resources = vec![format!("signal:{id}"), format!("referral:{}", referral.id)];
    // A member gets a copy in its inbox: the projection made for it now,
    // sealed under the signal's data key. A non-member gets nothing; the
    // signal counts towards the phenomenon tables instead.
    let disclosed = project(&record, &decision.fields);
    let aggregate = decision.mode == Mode::Aggregate;
    let contribution = aggregate
        .then(|| phenomena::Contribution::of(&body).map(|c| c.row()))
        .transpose()?;
    let copy = if aggregate {
        None
    } else {
        let item = Uuid::now_v7().to_string();
        let sealed = s.vault.key(&stored)?.seal(
            item.as_bytes(),
            &serde_json::to_vec(&disclosed).expect("json"),
        );
        resources.push(format!("inbox:{item}"));
        Some((item, sealed))
    };
    let inbox_item = copy.as_ref().map(|(item, _)| item.clone());
    let ids: Vec<_> = [Some(&referral.id), inbox_item.as_ref()]
        .into_iter()
        .flatten()
        .filter_map(|i| boundary::fingerprint::id(i))
        .collect();
    let fingerprints = s.egress.fingerprints(&ids);
    let draft = x
        .draft(LogAction::Refer, &decision)
        .recipient(Some(&recipient.id))
        .resources(resources)
        .subjects(signals::subjects(&body, &disclosed, &s.pseudonyms));
    let stored_referral = referral.clone();
    let receipt = s
        .ledger
        .commit(work(move |mut unit| {
            Box::pin(async move {
                let r = &stored_referral;
                unit.tx().insert_referral(r).await?;
                if let Some(c) = &contribution {
                    phenomena::contribute(&mut unit, &r.signal_id, c).await?;
                }
                let tx = unit.tx();
                if let Some((item, sealed)) = &copy {
                    tx.insert_inbox_item(item, r, sealed).await?;
                }
                tx.insert_fingerprints(&r.signal_id, &fingerprints).await?;
                Ok(unit.append(draft))
            })
        }))
        .await?;
    let referral_id = referral.id;
    let created = ReferralCreated {
        id: referral_id,
        recipient: recipient.id.clone(),
        purpose: req.purpose,
        mode: decision.mode,
        inbox_item,
        fields: decision.fields,
    };
    Ok(with_receipt(receipt, (StatusCode::CREATED, Json(created))))
}
