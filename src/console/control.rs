//! NEN 7513 control: rules that flag what a privacy officer should look at,
//! computed from the log within the FG's scope, each with its threshold in
//! `console.control`. A flag's id names its rule and what it counted, so a
//! review (with a note) stays attached to it; the review is logged.

use std::collections::{BTreeMap, HashMap, HashSet};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Serialize;

use super::Console;
use super::session::now_ms;
use crate::api::log::audit::{audit_scope, query_resources};
use crate::api::log::export::each_entry;
use crate::api::purpose::Exchange;
use crate::ledger::{Entry, LogAction, Outcome, Receipt, work};
use crate::policy::model::AuditQuery;
use crate::problem::Problem;
use crate::store::console::ReviewRow;
use crate::store::ledger::Search;

/// Entries one flag links to, at most.
const MAX_LINKED: usize = 50;
/// Pages of 500 entries each read of the rules takes, at most.
const MAX_PAGES: usize = 400;
const DAY_MS: i64 = 86_400_000;

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

/// An entry's time in ms since the epoch.
fn millis(e: &Entry) -> Option<i64> {
    e.time.parse::<Timestamp>().ok().map(|t| t.as_millisecond())
}

/// The time zone of the office hours (`console.control.time_zone`).
pub fn time_zone(cfg: &crate::config::ControlConfig) -> Result<TimeZone, Problem> {
    TimeZone::get(&cfg.time_zone).map_err(|e| {
        Problem::from(anyhow::anyhow!(
            "console.control.time_zone {:?}: {e}",
            cfg.time_zone
        ))
    })
}

/// The signals (`signal:<id>`) an entry names.
fn signals(e: &Entry) -> impl Iterator<Item = &str> {
    e.resources.iter().filter_map(|r| r.strip_prefix("signal:"))
}

/// Entries that give a partner a signal: its submission (to the intake
/// partner, by the reporter), a referral or a delivery to it.
fn gives_signal(e: &Entry) -> bool {
    matches!(
        e.action,
        LogAction::Submit | LogAction::Refer | LogAction::Deliver
    ) && e.outcome == Outcome::Disclosed
}

/// The flags of the window, within the FG's scope; the query is logged.
/// The rules read the entries of the last `window_days`, and for the rule
/// on unreferred reads also the submissions, referrals and deliveries of
/// the `referral_lookback_days` before; the query's entry names the whole
/// period read.
pub async fn flags(c: &Console, ex: &Exchange) -> Result<(Receipt, Vec<Flag>), Problem> {
    let cfg = &c.app.config.console.control;
    let tz = time_zone(cfg)?;
    let now = now_ms();
    let from = now - i64::from(cfg.window_days.max(1)) * DAY_MS;
    let lookback = now - i64::from(cfg.referral_lookback_days) * DAY_MS;
    let search = Search {
        from_ms: Some(from),
        to_ms: Some(now + 1),
        ..Default::default()
    };
    let asked = Search {
        from_ms: Some(lookback.min(from)),
        ..search.clone()
    };
    let resources = query_resources(&c.app, &asked).await?;
    let (vis, granted) = audit_scope(ex, AuditQuery::Search, &resources).await?;
    let mut entries = Vec::new();
    each_entry(&c.app, &vis, search, 500, MAX_PAGES, |_, e| {
        entries.push(e);
        Ok(())
    })
    .await?;
    let mut earlier = Vec::new();
    if lookback < from {
        for action in [LogAction::Submit, LogAction::Refer, LogAction::Deliver] {
            let before = Search {
                from_ms: Some(lookback),
                to_ms: Some(from),
                action: Some(action.as_str().to_owned()),
                outcome: Some(Outcome::Disclosed.as_str().to_owned()),
                ..Default::default()
            };
            each_entry(&c.app, &vis, before, 500, MAX_PAGES, |_, e| {
                earlier.push(e);
                Ok(())
            })
            .await?;
        }
    }
    let mut flags = compute(&entries, &earlier, cfg, &tz, now);
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
                when: Timestamp::from_millisecond(r.reviewed_ms)
                    .map(|t| {
                        t.to_zoned_datetime(tz.clone())
                            .strftime("%Y-%m-%d %H:%M %Z")
                            .to_string()
                    })
                    .unwrap_or_default(),
            });
        }
    }
    let draft = ex.draft(&granted).resources(resources);
    let receipt = c.app.ledger.log(draft).await?;
    Ok((receipt, flags))
}

/// The rules over `entries` (the window, in index order), with `earlier`
/// (submissions, referrals and deliveries before the window) for the rule
/// on unreferred reads; office hours are local time in `tz`.
pub fn compute(
    entries: &[Entry],
    earlier: &[Entry],
    cfg: &crate::config::ControlConfig,
    tz: &TimeZone,
    now_ms: i64,
) -> Vec<Flag> {
    let mut flags = Vec::new();
    let user_of = |e: &Entry| e.actor.user.as_ref().map(|u| u.as_str().to_owned());

    // Many reads by one user in a short time.
    let mut reads: BTreeMap<String, Vec<(i64, u64)>> = BTreeMap::new();
    for e in entries.iter().filter(|e| is_read(e)) {
        if let (Some(u), Some(t)) = (user_of(e), millis(e)) {
            reads.entry(u).or_default().push((t, e.index));
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

    // Reads outside office hours (local time, daylight saving included),
    // per user and local day.
    let mut late: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
    for e in entries.iter().filter(|e| is_read(e)) {
        let (Some(u), Some(t)) = (user_of(e), millis(e)) else {
            continue;
        };
        let Ok(local) = Timestamp::from_millisecond(t).map(|t| t.to_zoned_datetime(tz.clone()))
        else {
            continue;
        };
        let weekend = matches!(
            local.weekday(),
            jiff::civil::Weekday::Saturday | jiff::civil::Weekday::Sunday
        );
        let h = i64::from(local.hour());
        if weekend || h < i64::from(cfg.office_start_hour) || h >= i64::from(cfg.office_end_hour) {
            late.entry((u, local.date().to_string()))
                .or_default()
                .push(e.index);
        }
    }
    let zone = tz.iana_name().unwrap_or("UTC");
    for ((user, day), idx) in late {
        flags.push(Flag {
            id: format!("offhours:{user}:{day}"),
            rule: "rule_offhours",
            about: user,
            detail: format!(
                "{} raadplegingen op {day} buiten {}–{} uur ({zone}) of in het weekend",
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

    // Reads of signals that the reader's organisation neither submitted nor
    // had referred or delivered to it (before the read): per reading user,
    // or per partner for reads without a user.
    let mut given: HashMap<(&str, &str), u64> = HashMap::new();
    for e in earlier.iter().chain(entries).filter(|e| gives_signal(e)) {
        let mut to: Vec<&str> = e.recipient.as_deref().into_iter().collect();
        if e.action == LogAction::Submit {
            to.push(&e.actor.partner);
        }
        for s in signals(e) {
            for p in &to {
                let first = given.entry((*p, s)).or_insert(e.index);
                *first = (*first).min(e.index);
            }
        }
    }
    let exempt: HashSet<&str> = cfg.referral_exempt.iter().map(String::as_str).collect();
    // (about, reading partner) -> (the reads, the signals they read)
    type Reads<'a> = (Vec<u64>, HashSet<&'a str>);
    let mut unreferred: BTreeMap<(String, String), Reads<'_>> = BTreeMap::new();
    for e in entries.iter().filter(|e| {
        e.action == LogAction::Read
            && e.outcome == Outcome::Disclosed
            && !exempt.contains(e.actor.partner.as_str())
    }) {
        let reader = e.actor.partner.as_str();
        let without: Vec<&str> = signals(e)
            .filter(|s| given.get(&(reader, *s)).is_none_or(|i| *i > e.index))
            .collect();
        if without.is_empty() {
            continue;
        }
        let about = user_of(e).unwrap_or_else(|| reader.to_owned());
        let slot = unreferred.entry((about, reader.to_owned())).or_default();
        slot.0.push(e.index);
        slot.1.extend(without);
    }
    for ((about, partner), (idx, read)) in unreferred {
        if idx.len() >= cfg.unreferred_reads.max(1) as usize {
            flags.push(Flag {
                id: format!("unreferred:{about}:{}", idx[0]),
                rule: "rule_unreferred",
                about,
                detail: format!(
                    "{} raadplegingen van {} signalen die {partner} niet zelf meldde en niet \
                     doorverwezen of afgeleverd kreeg (volgens het log van de laatste {} dagen)",
                    idx.len(),
                    read.len(),
                    cfg.referral_lookback_days.max(cfg.window_days)
                ),
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
        if let Some(ms) = millis(e) {
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
        e.resources = vec![];
        e.actor = Actor {
            partner: "nla".into(),
            role: "inspecteur".into(),
            user: serde_json::from_value(serde_json::Value::from(user)).unwrap(),
        };
        e.recipient = Some("nla".into());
        e.decision = DecisionRecord {
            mode: "full".into(),
            reasons: vec![],
        };
        e
    }

    fn amsterdam() -> TimeZone {
        TimeZone::get("Europe/Amsterdam").unwrap()
    }

    const NOW: i64 = 1_764_892_800_000; // 2026-12-05

    #[test]
    fn each_rule_flags_past_its_threshold_and_not_below() {
        let cfg = crate::config::ControlConfig {
            burst_reads: 3,
            burst_minutes: 10,
            repeated_refusals: 2,
            ..Default::default()
        };
        // Wednesday 2026-12-02: three reads in 5 minutes at 11:00 in
        // Amsterdam, one read at 23:00 there, two refusals for another user.
        let read = |i, t, u| entry(i, t, u, LogAction::Read, Outcome::Disclosed);
        let refused = |i, t, u| entry(i, t, u, LogAction::Read, Outcome::Denied);
        let entries = vec![
            read(0, "2026-12-02T10:00:00.000Z", "usr1:a"),
            read(1, "2026-12-02T10:02:00.000Z", "usr1:a"),
            read(2, "2026-12-02T10:05:00.000Z", "usr1:a"),
            read(3, "2026-12-02T22:00:00.000Z", "usr1:b"),
            refused(4, "2026-12-02T11:00:00.000Z", "usr1:c"),
            refused(5, "2026-12-02T11:01:00.000Z", "usr1:c"),
            refused(6, "2026-12-02T11:30:00.000Z", "usr1:d"),
        ];
        let flags = compute(&entries, &[], &cfg, &amsterdam(), NOW);
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
        assert!(compute(&entries, &[], &strict, &amsterdam(), NOW).is_empty());
    }

    /// Office hours are Amsterdam's, summer and winter: 16:30 UTC is 18:30
    /// in July (CEST, +2) but 17:30 in December (CET, +1); 05:30 UTC is
    /// 07:30 in July. A UTC clock would judge all three the other way.
    #[test]
    fn office_hours_are_local_time_with_daylight_saving() {
        let cfg = crate::config::ControlConfig::default(); // 6-18 local
        let read = |i, t, u| entry(i, t, u, LogAction::Read, Outcome::Disclosed);
        let entries = vec![
            read(0, "2026-07-01T16:30:00.000Z", "usr1:summer-evening"),
            read(1, "2026-12-02T16:30:00.000Z", "usr1:winter-afternoon"),
            read(2, "2026-07-01T05:30:00.000Z", "usr1:summer-morning"),
            // 23:30 UTC on Friday 2026-12-04 is Saturday 00:30 in Amsterdam.
            read(3, "2026-12-04T23:30:00.000Z", "usr1:friday-night"),
        ];
        let flags = compute(&entries, &[], &cfg, &amsterdam(), NOW);
        let late: Vec<(&str, &str)> = flags
            .iter()
            .filter(|f| f.rule == "rule_offhours")
            .map(|f| (f.about.as_str(), f.id.rsplit(':').next().unwrap()))
            .collect();
        assert_eq!(
            late,
            vec![
                ("usr1:friday-night", "2026-12-05"),
                ("usr1:summer-evening", "2026-07-01"),
            ]
        );
        let utc = compute(&entries, &[], &cfg, &TimeZone::UTC, NOW);
        assert_eq!(
            utc.iter().filter(|f| f.rule == "rule_offhours").count(),
            2,
            "in UTC the summer morning is flagged and the summer evening is not"
        );
        assert!(
            utc.iter()
                .any(|f| f.rule == "rule_offhours" && f.about == "usr1:summer-morning")
        );
    }

    /// A read needs the signal's submission by, or referral or delivery to,
    /// the reader's organisation before it, in the window or before it.
    #[test]
    fn reads_without_a_referral_to_the_readers_organisation_are_flagged() {
        let cfg = crate::config::ControlConfig::default();
        let at = "2026-12-02T10:00:00.000Z";
        let with = |mut e: Entry, resources: &[&str], partner: &str, recipient: &str| {
            e.resources = resources.iter().map(|r| r.to_string()).collect();
            e.actor.partner = partner.into();
            e.recipient = Some(recipient.into());
            e
        };
        let gives = |i, action, s: &str, actor, to| {
            with(
                entry(i, at, "usr1:x", action, Outcome::Disclosed),
                &[s],
                actor,
                to,
            )
        };
        let read = |i, s: &str, partner, user| {
            with(
                entry(i, at, user, LogAction::Read, Outcome::Disclosed),
                &[s],
                partner,
                partner,
            )
        };
        // Before the window: signal A submitted by Emmen (to the ZVHD).
        let earlier = vec![gives(1, LogAction::Submit, "signal:A", "emmen", "zvhd")];
        let entries = vec![
            // B referred to the NLA; read by the NLA after: fine.
            gives(10, LogAction::Refer, "signal:B", "zvhd", "nla"),
            read(11, "signal:B", "nla", "usr1:nla"),
            // A read by its reporter and by the intake: fine.
            read(12, "signal:A", "emmen", "usr1:emmen"),
            read(13, "signal:A", "zvhd", "usr1:zvhd"),
            // A read by the police, never referred to it: flagged; and C
            // read by the police before its referral to the police.
            read(14, "signal:A", "politie", "usr1:pol"),
            read(15, "signal:C", "politie", "usr1:pol"),
            gives(16, LogAction::Refer, "signal:C", "zvhd", "politie"),
            read(17, "signal:C", "politie", "usr1:pol"),
            // A refused read is no disclosure.
            with(
                entry(18, at, "usr1:om", LogAction::Read, Outcome::Denied),
                &["signal:A"],
                "om",
                "om",
            ),
        ];
        let flags = compute(&entries, &earlier, &cfg, &amsterdam(), NOW);
        let unreferred: Vec<_> = flags
            .iter()
            .filter(|f| f.rule == "rule_unreferred")
            .collect();
        assert_eq!(unreferred.len(), 1, "{unreferred:?}");
        assert_eq!(unreferred[0].about, "usr1:pol");
        assert_eq!(unreferred[0].entries, vec![14, 15]);
        assert!(is_flag_id(&unreferred[0].id));
        // Without the submission before the window, the intake's and the
        // reporter's reads of A are unreferred too.
        let flags = compute(&entries, &[], &cfg, &amsterdam(), NOW);
        assert_eq!(
            flags.iter().filter(|f| f.rule == "rule_unreferred").count(),
            3
        );
        // The threshold, and the exempt partners.
        let cfg = crate::config::ControlConfig {
            unreferred_reads: 3,
            ..Default::default()
        };
        assert!(
            !compute(&entries, &earlier, &cfg, &amsterdam(), NOW)
                .iter()
                .any(|f| f.rule == "rule_unreferred")
        );
        let cfg = crate::config::ControlConfig {
            referral_exempt: vec!["politie".into()],
            ..Default::default()
        };
        assert!(
            !compute(&entries, &earlier, &cfg, &amsterdam(), NOW)
                .iter()
                .any(|f| f.rule == "rule_unreferred")
        );
    }
}
