//! The console's pages. Each that shows entries reads as the API's FG
//! queries do (`api::log::audit`): the audit policy's scope for an
//! `Exchange` with purpose `verantwoording`, the rows, the query's own log
//! entry, and the page released with its receipt (`Disclosed`).

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use super::session::{self, Fg};
use super::{Console, PURPOSE, charts, control, value};
use crate::api::log::audit::{
    SearchParams, SubjectQuery, audit_scope, query_resources, search_entries, subject_pseudonym,
    visible,
};
use crate::api::log::export::export_entries;
use crate::api::purpose::Exchange;
use crate::ledger::{Disclosed, Entry, LogAction, Outcome};
use crate::policy::model::{AuditQuery, Scope};
use crate::problem::Problem;
use crate::store::ledger::{Search, StoredEntry};
use crate::store::log_counts::{week_of, week_start_ms};

type Page = Result<Disclosed<Response>, Response>;

fn exchange(c: &Console, fg: &Fg) -> Exchange {
    Exchange::signed_in(c.app.clone(), fg.ctx.clone(), fg.principal.clone(), PURPOSE)
}

/// What every page's frame shows: who is signed in, the CSRF token of the
/// sign-out form, which page is current.
fn frame(fg: &Fg, nav: &str) -> minijinja::Value {
    minijinja::context! {
        user => minijinja::context! { partner => fg.partner_name(), partner_id => &fg.principal.partner.id, role => &fg.principal.role },
        csrf => &fg.csrf,
        nav => nav,
    }
}

fn html(c: &Console, name: &str, ctx: minijinja::Value) -> Result<Response, Problem> {
    c.render(name, ctx)
        .map(|body| super::page_response(StatusCode::OK, body))
}

/// An entry as a page shows it, with its display names.
#[derive(Serialize)]
struct Row {
    index: u64,
    time: String,
    date: String,
    actor: String,
    actor_role: String,
    recipient: String,
    action: &'static str,
    purpose: String,
    purpose_name: String,
    legal_basis: String,
    outcome: &'static str,
    fields: Vec<String>,
    /// The fields grouped by whom they are about: `(category, names)`.
    categories: Vec<(String, String)>,
    reasons: Vec<String>,
}

/// Field names grouped by the person or part of the signal they belong to
/// (`victims.name` → victims: name).
fn categories(fields: &[String]) -> Vec<(&'static str, String)> {
    let mut groups: Vec<(&'static str, Vec<&str>)> = vec![
        ("cat_victims", vec![]),
        ("cat_suspects", vec![]),
        ("cat_signal", vec![]),
    ];
    for f in fields {
        let (group, name) = match f.split_once('.') {
            Some(("victims", rest)) => (0, rest),
            Some(("suspects", rest)) => (1, rest),
            _ => (2, f.as_str()),
        };
        groups[group].1.push(name);
    }
    groups
        .into_iter()
        .filter(|(_, names)| !names.is_empty())
        .map(|(key, names)| (key, names.join(", ")))
        .collect()
}

/// Display names of partners and purposes.
struct Names {
    partners: std::collections::HashMap<String, String>,
    policies: std::sync::Arc<crate::policy::Policies>,
}

impl Names {
    async fn load(c: &Console) -> Result<Self, Problem> {
        let partners = c
            .app
            .db
            .partners()
            .await?
            .into_iter()
            .map(|p| (p.id, p.display_name))
            .collect();
        Ok(Self {
            partners,
            policies: c.app.policy.current(),
        })
    }

    fn partner(&self, id: &str) -> String {
        self.partners
            .get(id)
            .cloned()
            .unwrap_or_else(|| id.to_owned())
    }

    fn purpose(&self, id: &str) -> String {
        self.policies
            .data()
            .pointer(&format!("/covenant/purposes/{id}/name"))
            .and_then(|v| v.as_str())
            .unwrap_or(id)
            .to_owned()
    }

    fn row(&self, e: &Entry) -> Row {
        let purpose = e.purpose.clone().unwrap_or_default();
        Row {
            index: e.index,
            time: e.time.replace('T', " ").trim_end_matches('Z').to_owned(),
            date: e.time.get(..10).unwrap_or_default().to_owned(),
            actor: self.partner(&e.actor.partner),
            actor_role: e.actor.role.clone(),
            recipient: e
                .recipient
                .as_deref()
                .map(|r| self.partner(r))
                .unwrap_or_default(),
            action: e.action.as_str(),
            purpose_name: if purpose.is_empty() {
                String::new()
            } else {
                self.purpose(&purpose)
            },
            purpose,
            legal_basis: e.legal_basis.clone().unwrap_or_default(),
            outcome: e.outcome.as_str(),
            fields: e.fields.clone(),
            categories: categories(&e.fields)
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            reasons: e.decision.reasons.clone(),
        }
    }
}

/// A line of the access request's report: what one recipient received
/// about the person for one purpose (one set of fields), from when to when
/// and how often.
#[derive(Serialize)]
struct ReportRow {
    recipient: String,
    purpose_name: String,
    legal_basis: String,
    categories: Vec<(String, String)>,
    first: String,
    last: String,
    times: i64,
}

/// The report's lines: the grouped disclosures and the entries that name
/// no projection (v1), grouped alike; those that disclosed no field are
/// left out. By recipient, then by first date.
fn report_rows(
    names: &Names,
    groups: Vec<crate::store::ledger::SubjectGroup>,
    single: &[StoredEntry],
) -> Result<Vec<ReportRow>, Problem> {
    use crate::ledger::entry::Projection;
    type Key = (Option<String>, Option<String>, Option<String>, Vec<String>);
    let mut lines: std::collections::BTreeMap<Key, (i64, i64, i64)> = Default::default();
    let mut add = |key: Key, first: i64, last: i64, n: i64| {
        let line = lines.entry(key).or_insert((first, last, 0));
        line.0 = line.0.min(first);
        line.1 = line.1.max(last);
        line.2 += n;
    };
    for g in groups {
        let p = Projection::decode(&g.projection)
            .filter(|_| Projection::hash(&g.projection)[..] == g.name[..])
            .ok_or_else(|| anyhow::anyhow!("a stored projection does not decode"))?;
        if !p.fields.is_empty() {
            let key = (g.recipient, g.purpose, p.legal_basis, p.fields);
            add(key, g.first_ms, g.last_ms, g.count);
        }
    }
    for e in decode(single)? {
        if let Some(ts) = crate::ledger::counts::time_ms(&e.time)
            && !e.fields.is_empty()
        {
            add((e.recipient, e.purpose, e.legal_basis, e.fields), ts, ts, 1);
        }
    }
    let mut rows: Vec<ReportRow> = lines
        .into_iter()
        .map(
            |((recipient, purpose, basis, fields), (first, last, times))| ReportRow {
                recipient: recipient.map(|r| names.partner(&r)).unwrap_or_default(),
                purpose_name: purpose.map(|p| names.purpose(&p)).unwrap_or_default(),
                legal_basis: basis.unwrap_or_default(),
                categories: categories(&fields)
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect(),
                first: ms_date(first),
                last: ms_date(last),
                times,
            },
        )
        .collect();
    rows.sort_by(|a, b| (&a.recipient, &a.first).cmp(&(&b.recipient, &b.first)));
    Ok(rows)
}

fn decode(rows: &[StoredEntry]) -> Result<Vec<Entry>, Problem> {
    rows.iter()
        .map(|s| {
            s.entry()
                .ok_or_else(|| anyhow::anyhow!("log entry {} does not decode", s.idx).into())
        })
        .collect()
}

fn ms_date(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map(|t| t.date().to_string())
        .unwrap_or_default()
}

/// The overview: disclosures per week by recipient and purpose, refusals by
/// reason code, the latest checkpoint (verified in the browser).
pub async fn overview(State(c): State<Console>, fg: Fg) -> Page {
    let ex = exchange(&c, &fg);
    let now = session::now_ms();
    let this_week = week_of(now);
    let weeks = i64::from(c.app.config.console.overview_weeks.max(1));
    let from_ms = week_start_ms(this_week - weeks + 1);
    let to_ms = week_start_ms(this_week + 1);
    let search = Search {
        from_ms: Some(from_ms),
        to_ms: Some(to_ms),
        limit: 500,
        ..Default::default()
    };
    let err = |p: Problem| c.error_page(&p);
    let resources = query_resources(&c.app, &search).await.map_err(err)?;
    let (vis, granted) = audit_scope(&ex, AuditQuery::Search, &resources)
        .await
        .map_err(err)?;
    // The weekly counts kept at append (migration 0020), not the entries:
    // a page over a million entries reads a few hundred rows.
    let first_week = this_week - weeks + 1;
    let counts = c
        .app
        .db
        .log_counts(&vis, Some((first_week, this_week + 1)))
        .await
        .map_err(|e| err(e.into()))?;
    // Refusals by their first reason code.
    let mut refusals = std::collections::BTreeMap::<String, u64>::new();
    for (k, n) in counts
        .0
        .iter()
        .filter(|(k, _)| k.outcome == Outcome::Denied.as_str())
    {
        let code = if k.reason.is_empty() {
            "?"
        } else {
            k.reason.as_str()
        };
        *refusals.entry(code.to_owned()).or_default() += *n as u64;
    }
    let names = Names::load(&c).await.map_err(err)?;
    let week_labels: Vec<String> = (0..weeks)
        .map(|i| ms_date(week_start_ms(this_week - weeks + 1 + i)))
        .collect();
    let mut by_recipient = std::collections::BTreeMap::<String, Vec<u64>>::new();
    let mut by_purpose = std::collections::BTreeMap::<(String, String), u64>::new();
    let disclosed = counts
        .0
        .iter()
        .filter(|(k, _)| k.outcome == Outcome::Disclosed.as_str());
    for (k, n) in disclosed {
        let r = Some(k.recipient.as_str())
            .filter(|r| !r.is_empty())
            .map(|r| names.partner(r))
            .unwrap_or_else(|| "-".into());
        let slot = (k.week - first_week) as usize;
        let series = by_recipient
            .entry(r.clone())
            .or_insert_with(|| vec![0; weeks as usize]);
        if let Some(s) = series.get_mut(slot) {
            *s += *n as u64;
        }
        let p = Some(k.purpose.as_str())
            .filter(|p| !p.is_empty())
            .map(|p| names.purpose(p))
            .unwrap_or_else(|| "-".into());
        *by_purpose.entry((r, p)).or_default() += *n as u64;
    }
    let weekly_svg = charts::stacked_weeks(&week_labels, &by_recipient);
    let refusal_svg = charts::bars(&refusals);
    let purpose_rows: Vec<_> = by_purpose
        .iter()
        .map(|((r, p), n)| serde_json::json!({"recipient": r, "purpose": p, "count": n}))
        .collect();
    let checkpoint = c
        .app
        .ledger
        .latest_checkpoint()
        .await
        .map_err(|e| err(e.into()))?;
    let draft = ex.draft(&granted).resources(resources);
    let receipt = c.app.ledger.log(draft).await.map_err(|e| err(e.into()))?;
    let body = html(
        &c,
        "overview.html",
        minijinja::context! {
            title => c.text("overview_title"),
            scope_all => matches!(granted.scope, Some(Scope::All)),
            from => ms_date(from_ms), to => ms_date(to_ms - 1),
            weekly_svg => minijinja::Value::from_safe_string(weekly_svg),
            refusal_svg => minijinja::Value::from_safe_string(refusal_svg),
            weekly => value(by_recipient.iter().map(|(r, s)| serde_json::json!({"recipient": r, "counts": s})).collect::<Vec<_>>()),
            weeks => value(&week_labels),
            purposes => value(purpose_rows),
            refusals => value(&refusals),
            checkpoint_size => checkpoint.as_ref().map(|c| c.size),
            checkpoint_root => checkpoint.as_ref().map(|c| B64.encode(&c.root)),
            ..frame(&fg, "overview")
        },
    )
    .map_err(err)?;
    Ok(receipt.disclose(body))
}

/// The search form's fields as the browser sends them (empty = not given).
/// `user` is the keyed reference of the acting user (`usr1:...`), never the
/// user's own id: that comes only in the POST body ([`search_post`]).
#[derive(Deserialize, Default, Serialize, Clone)]
#[serde(default)]
pub struct SearchForm {
    from: String,
    to: String,
    partner: String,
    recipient: String,
    purpose: String,
    action: String,
    outcome: String,
    user: String,
    after: String,
}

/// Whether `v` has the shape of a user reference: `usr1:` and 22 base64url
/// characters (16 bytes of HMAC).
pub(crate) fn is_user_ref(v: &str) -> bool {
    v.strip_prefix("usr1:").is_some_and(|t| {
        t.len() == 22
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

impl SearchForm {
    fn given(&self) -> bool {
        [
            &self.from,
            &self.to,
            &self.partner,
            &self.recipient,
            &self.purpose,
            &self.action,
            &self.outcome,
            &self.user,
        ]
        .iter()
        .any(|v| !v.is_empty())
    }

    fn params(&self, limit: Option<u32>) -> Result<SearchParams, Problem> {
        let opt = |v: &String| (!v.trim().is_empty()).then(|| v.trim().to_owned());
        Ok(SearchParams {
            from: opt(&self.from),
            to: opt(&self.to),
            partner: opt(&self.partner),
            recipient: opt(&self.recipient),
            purpose: opt(&self.purpose),
            action: opt(&self.action),
            outcome: opt(&self.outcome),
            after: match opt(&self.after) {
                Some(a) => Some(
                    a.parse()
                        .map_err(|_| Problem::bad_request("after must be a number"))?,
                ),
                None => None,
            },
            limit,
        })
    }

    /// The store's search of this form: the API's filters and checks, and
    /// the user reference.
    fn to_search(&self, c: &Console, limit: Option<u32>) -> Result<Search, Problem> {
        let mut search = self.params(limit)?.to_search(&c.app)?;
        let user = self.user.trim();
        if !user.is_empty() {
            if !is_user_ref(user) {
                return Err(Problem::bad_request(c.text("search_user_ref_invalid")));
            }
            search.user = Some(user.to_owned());
        }
        Ok(search)
    }

    /// The query string of this search (for paging and the export).
    fn query(&self, after: Option<u64>) -> String {
        let mut f = self.clone();
        f.after = after.map(|a| a.to_string()).unwrap_or_default();
        let pairs: Vec<(String, String)> = [
            ("from", f.from),
            ("to", f.to),
            ("partner", f.partner),
            ("recipient", f.recipient),
            ("purpose", f.purpose),
            ("action", f.action),
            ("outcome", f.outcome),
            ("user", f.user),
            ("after", f.after),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect::<Vec<_>>()
            .join("&")
    }
}

fn urlencode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The choices of the search form's lists.
fn choices(c: &Console) -> minijinja::Value {
    let policies = c.app.policy.current();
    let purposes: Vec<String> = policies
        .data()
        .pointer("/covenant/purposes")
        .and_then(|v| v.as_object())
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    minijinja::context! {
        purposes => purposes,
        // The log's own vocabulary: every action and outcome an entry can hold.
        actions => LogAction::ALL.map(LogAction::as_str),
        outcomes => Outcome::ALL.map(Outcome::as_str),
    }
}

/// The search form as posted: its filters, the CSRF token, and the user id
/// as the partner knows it (`user_id`), which goes no further than this
/// handler.
#[derive(Deserialize)]
pub struct SearchPost {
    csrf: String,
    #[serde(default)]
    user_id: String,
    #[serde(flatten)]
    form: SearchForm,
}

/// Longest user id the form takes (characters).
const MAX_USER_ID: usize = 256;

/// The search form's POST: a user id becomes the keyed reference the log
/// holds (of the acting partner's user; without an acting partner, of the
/// FG's own organisation), and the browser is sent to the search with that
/// reference, so the user id never reaches a URL, the log or a page.
pub async fn search_post(State(c): State<Console>, fg: Fg, Form(f): Form<SearchPost>) -> Response {
    if !fg.csrf_ok(&f.csrf) {
        return session::csrf_failed(&c);
    }
    let mut form = f.form;
    let user_id = f.user_id.trim();
    if !user_id.is_empty() {
        let partner = match form.partner.trim() {
            "" => fg.principal.partner.id.clone(),
            p => p.to_owned(),
        };
        if user_id.chars().count() > MAX_USER_ID
            || user_id.chars().any(char::is_control)
            || !crate::partners::is_slug(&partner)
        {
            let ctx = minijinja::context! {
                title => c.text("search_title"),
                form => value(SearchForm { user: String::new(), ..form }),
                choices => choices(&c),
                error => c.text("search_user_invalid"),
                ..frame(&fg, "search")
            };
            let mut res = html(&c, "search.html", ctx).unwrap_or_else(|p| c.error_page(&p));
            *res.status_mut() = StatusCode::BAD_REQUEST;
            return res;
        }
        form.user = c
            .app
            .pseudonyms
            .user_ref(&partner, user_id)
            .as_str()
            .to_owned();
        form.partner = partner;
    }
    form.after.clear();
    axum::response::Redirect::to(&format!("/console/zoeken?{}", form.query(None))).into_response()
}

/// The search: filters, a page of entries, the next page, the CSV export.
pub async fn search(State(c): State<Console>, fg: Fg, Query(form): Query<SearchForm>) -> Response {
    let base = minijinja::context! {
        title => c.text("search_title"),
        form => value(&form),
        choices => choices(&c),
        ..frame(&fg, "search")
    };
    if !form.given() {
        return html(&c, "search.html", base).unwrap_or_else(|p| c.error_page(&p));
    }
    let run = async {
        let search = form.to_search(&c, Some(50))?;
        let ex = exchange(&c, &fg);
        let (receipt, rows, next) =
            search_entries(&c.app, &ex, AuditQuery::Search, search, Vec::new()).await?;
        Ok::<_, Problem>((receipt, rows, next))
    };
    match run.await {
        Err(p) if p.status().is_client_error() && p.status() != StatusCode::FORBIDDEN => {
            let ctx = minijinja::context! { error => p.detail_text(), ..base };
            let mut res = html(&c, "search.html", ctx).unwrap_or_else(|p| c.error_page(&p));
            *res.status_mut() = StatusCode::BAD_REQUEST;
            res
        }
        Err(p) => c.error_page(&p),
        Ok((receipt, rows, next)) => {
            let rendered = async {
                let names = Names::load(&c).await?;
                let entries: Vec<Row> = decode(&rows)?.iter().map(|e| names.row(e)).collect();
                Ok::<_, Problem>(entries)
            }
            .await;
            let entries = match rendered {
                Ok(e) => e,
                Err(p) => return c.error_page(&p),
            };
            let ctx = minijinja::context! {
                results => value(entries),
                next => next.map(|n| form.query(Some(n))),
                export => form.query(None),
                ..base
            };
            match html(&c, "search.html", ctx) {
                Ok(res) => receipt.disclose(res).into_response(),
                Err(p) => c.error_page(&p),
            }
        }
    }
}

/// The search as CSV (the API's export, logged as an export).
pub async fn export(State(c): State<Console>, fg: Fg, Query(form): Query<SearchForm>) -> Response {
    let run = async {
        let search = form.to_search(&c, None)?;
        export_entries(&c.app, &exchange(&c, &fg), search).await
    };
    match run.await {
        Ok((receipt, body)) => receipt
            .disclose(
                (
                    [
                        (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                        (
                            header::CONTENT_DISPOSITION,
                            "attachment; filename=\"ketenpoort-log.csv\"",
                        ),
                        (header::CACHE_CONTROL, "no-store"),
                    ],
                    body,
                )
                    .into_response(),
            )
            .into_response(),
        Err(p) => c.error_page(&p),
    }
}

/// One entry: its fields, and the data the browser verifies its inclusion
/// proof with (the leaf bytes as stored).
pub async fn entry(State(c): State<Console>, fg: Fg, Path(index): Path<u64>) -> Page {
    let err = |p: Problem| c.error_page(&p);
    let size = c.app.ledger.size().await.map_err(|e| err(e.into()))?;
    if index >= size {
        return Err(err(Problem::not_found().detail("no entry with this index")));
    }
    let ex = exchange(&c, &fg);
    let resources = vec![format!("log:{}-{}", index, index + 1)];
    let (vis, granted) = audit_scope(&ex, AuditQuery::Entries, &resources)
        .await
        .map_err(err)?;
    let stored = c
        .app
        .db
        .log_entries(index, index + 1)
        .await
        .map_err(|e| err(e.into()))?
        .pop()
        .ok_or_else(|| err(Problem::not_found()))?;
    let shown = visible(&vis, &stored);
    let names = Names::load(&c).await.map_err(err)?;
    let entry = if shown { stored.entry() } else { None };
    let draft = ex.draft(&granted).resources(resources);
    let receipt = c.app.ledger.log(draft).await.map_err(|e| err(e.into()))?;
    let body = html(
        &c,
        "entry.html",
        minijinja::context! {
            title => format!("{} {index}", c.text("entry_title")),
            index,
            shown,
            row => entry.as_ref().map(|e| value(names.row(e))),
            entry => entry.as_ref().map(value),
            leaf => shown.then(|| B64.encode(&stored.leaf)),
            leaf_hash => B64.encode(&stored.leaf_hash),
            ..frame(&fg, "search")
        },
    )
    .map_err(err)?;
    Ok(receipt.disclose(body))
}

/// The access request form.
pub async fn subject_form(State(c): State<Console>, fg: Fg) -> Response {
    html(
        &c,
        "subject.html",
        minijinja::context! { title => c.text("subject_title"), ..frame(&fg, "subject") },
    )
    .unwrap_or_else(|p| c.error_page(&p))
}

#[derive(Deserialize)]
pub struct SubjectForm {
    csrf: String,
    #[serde(default)]
    bsn: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    dob: String,
}

/// The access request (AVG art. 15): the identifier comes in a POST body,
/// is pseudonymised and forgotten; the report lists recipients,
/// categories, dates, purposes and legal bases — never a value.
pub async fn subject(State(c): State<Console>, fg: Fg, Form(f): Form<SubjectForm>) -> Response {
    if !fg.csrf_ok(&f.csrf) {
        return session::csrf_failed(&c);
    }
    let form_error = |key: &str| {
        let ctx = minijinja::context! {
            title => c.text("subject_title"),
            error => c.text(key),
            ..frame(&fg, "subject")
        };
        let mut res = html(&c, "subject.html", ctx).unwrap_or_else(|p| c.error_page(&p));
        *res.status_mut() = StatusCode::BAD_REQUEST;
        res
    };
    let bsn = f.bsn.trim();
    let name = f.name.trim();
    let dob = f.dob.trim();
    if !bsn.is_empty() && !crate::identifiers::is_valid_bsn(bsn) {
        return form_error("subject_bsn_invalid");
    }
    if bsn.is_empty() && name.is_empty() {
        return form_error("subject_missing");
    }
    if bsn.is_empty()
        && (dob.is_empty()
            || time::Date::parse(
                dob,
                time::macros::format_description!("[year]-[month]-[day]"),
            )
            .is_err())
    {
        return form_error("subject_dob_invalid");
    }
    let q = SubjectQuery {
        bsn: (!bsn.is_empty()).then(|| bsn.to_owned()),
        name: (bsn.is_empty()).then(|| name.to_owned()),
        date_of_birth: (bsn.is_empty()).then(|| dob.to_owned()),
    };
    let pseudonym = match subject_pseudonym(&c.app, &q) {
        Ok(p) => p,
        Err(_) => return form_error("subject_missing"),
    };
    let ex = exchange(&c, &fg);
    let run = async {
        let resources = query_resources(&c.app, &Search::default()).await?;
        let (vis, granted) = audit_scope(&ex, AuditQuery::Subject, &resources).await?;
        let (groups, single) = c.app.db.subject_disclosures(&vis, &pseudonym).await?;
        let names = Names::load(&c).await?;
        let rows = report_rows(&names, groups, &single)?;
        let draft = ex
            .draft(&granted)
            .resources(resources)
            .subjects(vec![pseudonym]);
        let receipt = c.app.ledger.log(draft).await?;
        Ok::<_, Problem>((receipt, rows))
    };
    let (receipt, rows) = match run.await {
        Ok(x) => x,
        Err(p) => return c.error_page(&p),
    };
    let today = time::OffsetDateTime::now_utc().date().to_string();
    let ctx = minijinja::context! {
        title => c.text("subject_title"),
        report => value(rows),
        today,
        ..frame(&fg, "subject")
    };
    match html(&c, "subject.html", ctx) {
        Ok(res) => receipt.disclose(res).into_response(),
        Err(p) => c.error_page(&p),
    }
}

/// The control flags (NEN 7513) of the window, each with its entries and
/// whether it was reviewed.
pub async fn control_page(State(c): State<Console>, fg: Fg) -> Page {
    let err = |p: Problem| c.error_page(&p);
    let ex = exchange(&c, &fg);
    let (receipt, flags) = control::flags(&c, &ex).await.map_err(err)?;
    let body = html(
        &c,
        "control.html",
        minijinja::context! {
            title => c.text("control_title"),
            flags => value(flags),
            ..frame(&fg, "control")
        },
    )
    .map_err(err)?;
    Ok(receipt.disclose(body))
}

#[derive(Deserialize)]
pub struct ReviewForm {
    csrf: String,
    flag: String,
    #[serde(default)]
    note: String,
}

/// Marks a flag as reviewed, with a note; the review and its log entry are
/// written in one transaction.
pub async fn review(State(c): State<Console>, fg: Fg, Form(f): Form<ReviewForm>) -> Response {
    if !fg.csrf_ok(&f.csrf) {
        return session::csrf_failed(&c);
    }
    let note = f.note.trim();
    if note.is_empty() || note.chars().count() > 1000 || !control::is_flag_id(&f.flag) {
        let p = Problem::bad_request(c.text("control_note_missing"));
        return c.error_page(&p);
    }
    match control::review(&c, &exchange(&c, &fg), &f.flag, note).await {
        Ok(()) => axum::response::Redirect::to("/console/controle").into_response(),
        Err(p) => c.error_page(&p),
    }
}
