//! NEN 7513 control: rules that flag what a privacy officer should look at,
//! computed from the log within the FG's scope, each with its threshold in
//! `console.control`. A flag's id names its rule and what it counted, so a
//! review (with a note) stays attached to it; the review is logged.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::Console;
use super::session::now_ms;
use crate::api::log::audit::{audit_scope, query_resources};
use crate::api::purpose::Exchange;
use crate::ledger::{Entry, LogAction, Outcome, Receipt, work};
use crate::policy::model::AuditQuery;
use crate::problem::Problem;
use crate::store::console::ReviewRow;
use crate::store::ledger::Search;

/// Entries one flag links to, at most.
const MAX_LINKED: usize = 50;
/// Entries the rules read, at most (pages of 500).
const MAX_PAGES: usize = 400;

#[derive(Serialize, Debug, Clone)]
pub struct Flag {
    pub id: String,
    pub rule: &'static str,
    /// The user reference or partner the flag is about.
    pub about: String,
    pub detail: String,
    pub count: usize,
    pub entries: Vec<u64>,
    pub reviewed: Option<Reviewed>,
}

#[derive(Serialize, Debug, Clone)]
pub struct Reviewed {
    pub note: String,
    pub when: String,
}

pub fn is_flag_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'-' | b'_' | b'.'))
}

fn is_read(e: &Entry) -> bool {
    matches!(e.action, LogAction::Read | LogAction::List) && e.outcome == Outcome::Disclosed
}

fn when(e: &Entry) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(&e.time, &Rfc3339).ok()
}

/// The flags of the window, within the FG's scope; the query is logged.
pub async fn flags(c: &Console, ex: &Exchange) -> Result<(Receipt, Vec<Flag>), Problem> {
    let cfg = &c.app.config.console.control;
    let now = now_ms();
    let from = now - i64::from(cfg.window_days.max(1)) * 86_400_000;
    let mut search = Search {
        from_ms: Some(from),
        to_ms: Some(now + 1),
        limit: 500,
        ..Default::default()
    };
    let resources = query_resources(&c.app, &search).await?;
    let (vis, granted) = audit_scope(ex, AuditQuery::Search, &resources).await?;
    let mut entries = Vec::new();
    for _ in 0..MAX_PAGES {
        let rows = c.app.db.search_log(&vis, &search).await?;
        for r in &rows {
            entries.push(
                r.entry()
                    .ok_or_else(|| anyhow::anyhow!("log entry {} does not decode", r.idx))?,
            );
        }
        if rows.len() < search.limit as usize {
            break;
        }
        search.after = rows.last().map(|r| r.idx);
    }
    let mut flags = compute(&entries, cfg, now);
    let reviews: HashMap<String, ReviewRow> = c
        .app
        .db
        .console_reviews(&ex.principal.partner.id)
        .await?
        .into_iter()
        .map(|r| (r.flag_id.clone(), r))
        .collect();
    for f in &mut flags {
        if let Some(r) = reviews.get(&f.id) {
            f.reviewed = Some(Reviewed {
                note: r.note.clone(),
                when: OffsetDateTime::from_unix_timestamp_nanos(
                    i128::from(r.reviewed_ms) * 1_000_000,
                )
                .ok()
                .and_then(|t| t.format(&Rfc3339).ok())
                .unwrap_or_default(),
            });
        }
    }
    let draft = ex.draft(&granted).resources(resources);
    let receipt = c.app.ledger.log(draft).await?;
    Ok((receipt, flags))
}

/// The rules over `entries` (in index order).
pub fn compute(entries: &[Entry], cfg: &crate::config::ControlConfig, now_ms: i64) -> Vec<Flag> {
    let mut flags = Vec::new();
    let user_of = |e: &Entry| e.actor.user.as_ref().map(|u| u.as_str().to_owned());

    // Many reads by one user in a short time.
    let mut reads: BTreeMap<String, Vec<(i64, u64)>> = BTreeMap::new();
    for e in entries.iter().filter(|e| is_read(e)) {
        if let (Some(u), Some(t)) = (user_of(e), when(e)) {
            reads
                .entry(u)
                .or_default()
                .push(((t.unix_timestamp_nanos() / 1_000_000) as i64, e.index));
        }
    }
    let span = i64::from(cfg.burst_minutes.max(1)) * 60_000;
    let need = cfg.burst_reads.max(1) as usize;
    for (user, list) in &reads {
        let mut start = 0;
        while start < list.len() {
            let end = list[start..]
                .iter()
                .take_while(|(t, _)| t - list[start].0 < span)
                .count();
            if end >= need {
                let group = &list[start..start + end];
                flags.push(Flag {
                    id: format!("burst:{user}:{}", group[0].1),
                    rule: "rule_burst",
                    about: user.clone(),
                    detail: format!(
                        "{} raadplegingen binnen {} minuten",
                        group.len(),
                        cfg.burst_minutes
                    ),
                    count: group.len(),
                    entries: group.iter().map(|(_, i)| *i).take(MAX_LINKED).collect(),
                    reviewed: None,
                });
                start += end;
            } else {
                start += 1;
            }
        }
    }

    // Reads outside office hours, per user and day.
    let mut late: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
    for e in entries.iter().filter(|e| is_read(e)) {
        let (Some(u), Some(t)) = (user_of(e), when(e)) else {
            continue;
        };
        let weekend = matches!(t.weekday(), time::Weekday::Saturday | time::Weekday::Sunday);
        let h = t.hour();
        if weekend || h < cfg.office_start_hour || h >= cfg.office_end_hour {
            late.entry((u, t.date().to_string()))
                .or_default()
                .push(e.index);
        }
    }
    for ((user, day), idx) in late {
        flags.push(Flag {
            id: format!("offhours:{user}:{day}"),
            rule: "rule_offhours",
            about: user,
            detail: format!(
                "{} raadplegingen op {day} buiten {}–{} uur (UTC) of in het weekend",
                idx.len(),
                cfg.office_start_hour,
                cfg.office_end_hour
            ),
            count: idx.len(),
            entries: idx.into_iter().take(MAX_LINKED).collect(),
            reviewed: None,
        });
    }

    // Repeated refusals for one user.
    let mut refused: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for e in entries.iter().filter(|e| e.outcome != Outcome::Disclosed) {
        if let Some(u) = user_of(e) {
            refused.entry(u).or_default().push(e.index);
        }
    }
    for (user, idx) in refused {
        if idx.len() >= cfg.repeated_refusals.max(1) as usize {
            flags.push(Flag {
                id: format!("refusals:{user}:{}", idx[0]),
                rule: "rule_refusals",
                about: user,
                detail: format!("{} weigeringen in de periode", idx.len()),
                count: idx.len(),
                entries: idx.into_iter().take(MAX_LINKED).collect(),
                reviewed: None,
            });
        }
    }

    // A partner's volume this week against its own weekly average.
    let week_ms = crate::store::console::WEEK_MS;
    let this_week = (now_ms + crate::store::console::MONDAY_OFFSET_MS) / week_ms;
    let mut per: BTreeMap<String, BTreeMap<i64, Vec<u64>>> = BTreeMap::new();
    for e in entries
        .iter()
        .filter(|e| e.outcome == Outcome::Disclosed && e.action != LogAction::AuditQuery)
    {
        if let Some(t) = when(e) {
            let ms = (t.unix_timestamp_nanos() / 1_000_000) as i64;
            let w = (ms + crate::store::console::MONDAY_OFFSET_MS) / week_ms;
            per.entry(e.actor.partner.clone())
                .or_default()
                .entry(w)
                .or_default()
                .push(e.index);
        }
    }
    let weeks_before = (i64::from(cfg.window_days.max(7)) / 7 - 1).max(1);
    for (partner, weeks) in per {
        let now_count = weeks.get(&this_week).map_or(0, Vec::len);
        let before: usize = weeks
            .iter()
            .filter(|(w, _)| **w < this_week)
            .map(|(_, v)| v.len())
            .sum();
        let avg = before as f64 / weeks_before as f64;
        if now_count >= cfg.volume_minimum as usize && now_count as f64 > cfg.volume_factor * avg {
            let idx = weeks.get(&this_week).cloned().unwrap_or_default();
            flags.push(Flag {
                id: format!("volume:{partner}:{this_week}"),
                rule: "rule_volume",
                about: partner,
                detail: format!(
                    "{now_count} verstrekkingen deze week, gemiddeld {avg:.1} per week ervoor"
                ),
                count: now_count,
                entries: idx.into_iter().take(MAX_LINKED).collect(),
                reviewed: None,
            });
        }
    }
    flags
}

/// Records a review of flag `id` with `note`; the review row and its log
/// entry (resource `control-flag:<id>`) commit together.
pub async fn review(c: &Console, ex: &Exchange, id: &str, note: &str) -> Result<(), Problem> {
    let resources = vec![format!("control-flag:{id}")];
    let (_, granted) = audit_scope(ex, AuditQuery::Search, &resources).await?;
    let draft = ex.draft(&granted).resources(resources);
    let partner = ex.principal.partner.id.clone();
    let row = ReviewRow {
        flag_id: id.to_owned(),
        reviewer: ex
            .principal
            .user
            .as_ref()
            .map(|u| u.as_str().to_owned())
            .unwrap_or_default(),
        note: note.to_owned(),
        reviewed_ms: now_ms(),
    };
    c.app
        .ledger
        .commit(work(move |mut unit| {
            Box::pin(async move {
                unit.tx().upsert_console_review(&partner, &row).await?;
                Ok(unit.append(draft))
            })
        }))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Actor, DecisionRecord};

    fn entry(index: u64, time: &str, user: &str, action: LogAction, outcome: Outcome) -> Entry {
        let mut e = crate::ledger::entry::tests::sample(index);
        e.time = time.into();
        e.action = action;
        e.outcome = outcome;
        e.actor = Actor {
            partner: "nla".into(),
            role: "inspecteur".into(),
            user: serde_json::from_value(serde_json::Value::from(user)).unwrap(),
        };
        e.decision = DecisionRecord {
            mode: "full".into(),
            reasons: vec![],
        };
        e
    }

    #[test]
    fn each_rule_flags_past_its_threshold_and_not_below() {
        let cfg = crate::config::ControlConfig {
            burst_reads: 3,
            burst_minutes: 10,
            repeated_refusals: 2,
            ..Default::default()
        };
        // Wednesday 2026-12-02: three reads in 5 minutes at 10:00 UTC, one
        // read at 22:00, two refusals for another user.
        let entries = vec![
            entry(
                0,
                "2026-12-02T10:00:00.000Z",
                "usr1:a",
                LogAction::Read,
                Outcome::Disclosed,
            ),
            entry(
                1,
                "2026-12-02T10:02:00.000Z",
                "usr1:a",
                LogAction::Read,
                Outcome::Disclosed,
            ),
            entry(
                2,
                "2026-12-02T10:05:00.000Z",
                "usr1:a",
                LogAction::Read,
                Outcome::Disclosed,
            ),
            entry(
                3,
                "2026-12-02T22:00:00.000Z",
                "usr1:b",
                LogAction::Read,
                Outcome::Disclosed,
            ),
            entry(
                4,
                "2026-12-02T11:00:00.000Z",
                "usr1:c",
                LogAction::Read,
                Outcome::Denied,
            ),
            entry(
                5,
                "2026-12-02T11:01:00.000Z",
                "usr1:c",
                LogAction::Read,
                Outcome::Denied,
            ),
            entry(
                6,
                "2026-12-02T11:30:00.000Z",
                "usr1:d",
                LogAction::Read,
                Outcome::Denied,
            ),
        ];
        let now = 1_764_892_800_000; // 2026-12-05
        let flags = compute(&entries, &cfg, now);
        let find = |rule: &str| flags.iter().filter(|f| f.rule == rule).collect::<Vec<_>>();
        let burst = find("rule_burst");
        assert_eq!(burst.len(), 1);
        assert_eq!(burst[0].entries, vec![0, 1, 2]);
        let late = find("rule_offhours");
        assert_eq!(late.len(), 1);
        assert_eq!(
            (late[0].about.as_str(), late[0].entries.clone()),
            ("usr1:b", vec![3])
        );
        let refused = find("rule_refusals");
        assert_eq!(refused.len(), 1, "usr1:d was refused once only");
        assert_eq!(refused[0].entries, vec![4, 5]);
        assert!(flags.iter().all(|f| is_flag_id(&f.id)));
        // Below the thresholds: nothing.
        let strict = crate::config::ControlConfig {
            burst_reads: 4,
            repeated_refusals: 3,
            office_start_hour: 0,
            office_end_hour: 24,
            ..cfg
        };
        assert!(compute(&entries, &strict, now).is_empty());
    }
}
