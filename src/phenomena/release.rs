//! Releases: the types a release is made of (category codes, periods and
//! counts only: invariant 1, no personal data to the RIEC) and the service
//! that builds, stores and reads them. A release is built once, for a closed
//! period, and served as stored.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, ensure};
use serde::{Deserialize, Deserializer, Serialize};
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

use super::tables::{self, Case, Categories, Table, Trend};
use super::{Catalogue, Code, PERTURBATION_KEY, Period, Perturbation, RecordKey, ReleasePeriod};
use crate::config::{Cadence, PhenomenaConfig};
use crate::keys::KeyStore;
use crate::policy::PolicyEngine;
use crate::store::phenomena::ContributionRow;
use crate::store::{Db, WriteTx};

/// The periods of the stored releases (read under the log head lock).
pub(crate) async fn release_periods(tx: &mut WriteTx) -> Result<Vec<ReleasePeriod>, sqlx::Error> {
    Ok(periods(tx.release_ids().await?))
}

fn periods(ids: Vec<String>) -> Vec<ReleasePeriod> {
    ids.iter().filter_map(|id| id.parse().ok()).collect()
}

/// The release that ends last.
fn newest(released: &[ReleasePeriod]) -> Option<&ReleasePeriod> {
    released.iter().max_by_key(|r| r.last_month())
}

/// An RFC 3339 time (UTC, milliseconds) set by ketenpoort.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[schema(value_type = String, example = "2026-10-01T00:00:05.123Z")]
pub struct Timestamp(String);

/// The statements a release may take, for its deadline (see `Db::bounded`).
const RELEASE_STATEMENTS: u32 = 64;

impl Timestamp {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn now() -> Self {
        let now = time::OffsetDateTime::now_utc();
        let ms = now
            .replace_nanosecond(now.millisecond() as u32 * 1_000_000)
            .expect("ms");
        Self(ms.format(&Rfc3339).expect("rfc3339"))
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        time::OffsetDateTime::parse(&s, &Rfc3339)
            .map(|_| Self(s))
            .map_err(|_| serde::de::Error::custom("not an RFC 3339 time"))
    }
}

/// The policy revision a release was built under (`sha256:<hex>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[schema(value_type = String)]
pub struct Revision(String);

impl Revision {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Revision {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let ok = s
            .strip_prefix("sha256:")
            .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
        ok.then_some(Self(s))
            .ok_or_else(|| serde::de::Error::custom("not a policy revision"))
    }
}

/// A release: every table and trend of the catalogue for one closed period.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Release {
    /// The period the release closes, also its id: `2026-Q3` or `2026-08`.
    #[schema(value_type = String, example = "2026-Q3")]
    pub id: ReleasePeriod,
    /// The first quarter it covers (the start of the year before its last
    /// quarter's). It holds only quarters and years that had ended when
    /// its period ended.
    #[schema(value_type = String, example = "2025-Q1")]
    pub from: Period,
    pub created_at: Timestamp,
    /// The policy bundle (and so the catalogue) it was built under.
    pub policy_revision: Revision,
    pub tables: Vec<Table>,
    pub trends: Vec<Trend>,
}

impl Release {
    /// Whether the release has a table or trend `id`.
    pub fn holds(&self, id: &Code) -> bool {
        self.tables.iter().any(|t| &t.id == id) || self.trends.iter().any(|t| &t.id == id)
    }

    /// One table or trend of the release, as a release of its own.
    pub fn only(&self, id: &Code) -> Option<Release> {
        let tables: Vec<Table> = self
            .tables
            .iter()
            .filter(|t| &t.id == id)
            .cloned()
            .collect();
        let trends: Vec<Trend> = self
            .trends
            .iter()
            .filter(|t| &t.id == id)
            .cloned()
            .collect();
        (!tables.is_empty() || !trends.is_empty()).then(|| Release {
            tables,
            trends,
            ..self.clone()
        })
    }
}

/// A release in the feed: what it is, not what it holds.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseSummary {
    #[schema(value_type = String, example = "2026-Q3")]
    pub id: ReleasePeriod,
    #[schema(value_type = String, example = "2025-Q1")]
    pub from: Period,
    pub created_at: Timestamp,
    /// Ids of its tables and trends.
    pub tables: Vec<Code>,
}

/// A page of the release feed, oldest first.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleasePage {
    pub items: Vec<ReleaseSummary>,
    /// Cursor for the next page (`after`), when there may be more.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<u64>,
}

fn parse_release(body: &str) -> anyhow::Result<Release> {
    serde_json::from_str(body).context("a stored release does not parse")
}

/// Builds, stores and reads releases.
#[derive(Clone)]
pub struct Phenomena {
    db: Db,
    policy: PolicyEngine,
    perturbation: Arc<Perturbation>,
    cadence: Cadence,
}

impl Phenomena {
    pub fn new(
        db: Db,
        policy: PolicyEngine,
        cfg: &PhenomenaConfig,
        keys: &KeyStore,
    ) -> anyhow::Result<Self> {
        let secret = keys.secret(PERTURBATION_KEY)?;
        Ok(Self {
            db,
            policy,
            perturbation: Arc::new(Perturbation::new(cfg.max_deviation, cfg.variance, &secret)?),
            cadence: cfg.release_every,
        })
    }

    /// The catalogue of the policies in force.
    pub fn catalogue(&self) -> anyhow::Result<Catalogue> {
        Catalogue::from_policy_data(self.policy.current().data())
    }

    pub async fn release(&self, id: ReleasePeriod) -> anyhow::Result<Option<Release>> {
        self.db
            .release(&id.to_string())
            .await?
            .map(|b| parse_release(&b))
            .transpose()
    }

    /// The feed: releases in the order they were made, after `after`.
    pub async fn releases(&self, after: Option<u64>, limit: u32) -> anyhow::Result<ReleasePage> {
        let rows = self.db.releases(after.unwrap_or(0), limit).await?;
        let next_after = (rows.len() as u32 == limit)
            .then(|| rows.last().map(|(seq, _)| *seq))
            .flatten();
        let items = rows
            .iter()
            .map(|(_, body)| {
                let r = parse_release(body)?;
                Ok(ReleaseSummary {
                    id: r.id,
                    from: r.from,
                    created_at: r.created_at,
                    tables: r
                        .tables
                        .iter()
                        .map(|t| t.id.clone())
                        .chain(r.trends.iter().map(|t| t.id.clone()))
                        .collect(),
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(ReleasePage { items, next_after })
    }

    /// Publishes the release of a closed period of the configured cadence,
    /// once: if it exists, it is returned as stored (`false`), never
    /// recomputed. A period that does not end after the newest release is
    /// refused: it would add a cut-off between published ones to difference.
    ///
    /// The contributions are read and the release stored under the log
    /// head lock (see [`contribute`](super::contribute)), so no contribution to a period this
    /// release covers can commit after the release without being moved
    /// past it.
    pub async fn publish(&self, id: ReleasePeriod) -> anyhow::Result<(bool, Release)> {
        self.check_period(id)?;
        if let Some(existing) = self.release(id).await? {
            return Ok((false, existing));
        }
        let policies = self.policy.current();
        let catalogue = Catalogue::from_policy_data(policies.data())?;
        let revision = Revision(policies.revision().to_owned());
        let mut tx = self.db.begin_write().await?;
        tx.lock_log_head().await.context("locking the log head")?;
        let released = release_periods(&mut tx).await?;
        if released.contains(&id) {
            // Another instance published it first: serve theirs.
            drop(tx);
            let theirs = self.release(id).await?.context("release vanished")?;
            return Ok((false, theirs));
        }
        if let Some(newest) = newest(&released) {
            ensure!(
                id.last_month() > newest.last_month(),
                "period {id} does not end after the newest release, {newest}: releases are made in order"
            );
        }
        let (first, last) = id.months();
        let records = tx
            .contributions(first.0, last)
            .await?
            .into_iter()
            .filter_map(|(key, counted, row)| case(key, counted, row))
            .collect::<Vec<_>>();
        let (tables, trends) = tables::build(&catalogue, id, &records, &self.perturbation);
        let release = Release {
            id,
            from: Period::Quarter(first.0, 1),
            created_at: Timestamp::now(),
            policy_revision: revision,
            tables,
            trends,
        };
        let body = serde_json::to_string(&release)?;
        tx.insert_release(&id.to_string(), crate::store::now_millis(), &body)
            .await?;
        tx.commit().await?;
        metrics::counter!("ketenpoort_phenomena_releases_total").increment(1);
        tracing::info!(release = %id, "phenomenon release published");
        Ok((true, release))
    }

    /// A period of the configured cadence that has ended.
    fn check_period(&self, id: ReleasePeriod) -> anyhow::Result<()> {
        let today = time::OffsetDateTime::now_utc().date();
        ensure!(
            id.cadence() == self.cadence,
            "period {id} is not a {} (phenomena.release_every)",
            match self.cadence {
                Cadence::Quarter => "quarter",
                Cadence::Month => "month",
            }
        );
        ensure!(
            id.is_closed(today),
            "period {id} has not ended yet: a release holds closed periods only"
        );
        Ok(())
    }

    /// Publishes the periods that closed since the newest release, oldest
    /// first: the most recently closed one, and any that closed while no
    /// instance ran (at most two years' worth).
    pub async fn publish_due(&self) -> anyhow::Result<()> {
        let today = time::OffsetDateTime::now_utc().date();
        let released = periods(self.db.release_ids().await?);
        let newest = newest(&released).map(|r| r.last_month());
        let last = ReleasePeriod::last_closed(self.cadence, today);
        let due: Vec<ReleasePeriod> = std::iter::successors(Some(last), |p| Some(p.previous()))
            .take(if newest.is_some() { 24 } else { 1 })
            .take_while(|p| newest.is_none_or(|n| p.last_month() > n))
            .collect();
        for id in due.into_iter().rev() {
            // Bounded like the log's batches: it holds the log head.
            self.db
                .bounded(RELEASE_STATEMENTS, self.publish(id))
                .await?;
        }
        Ok(())
    }

    /// Background task: a release as soon as a period has closed.
    pub async fn publisher(self, interval: Duration) {
        loop {
            tokio::time::sleep(interval).await;
            if let Err(e) = self.publish_due().await {
                tracing::error!(error = %e, "publishing the phenomenon release failed");
            }
        }
    }
}

/// A stored contribution as a case of the tables, in the month it counts
/// in; rows whose codes are not codes are left out (they cannot come from a
/// validated signal).
fn case(key: i64, counted: (i32, u8), row: ContributionRow) -> Option<Case> {
    let codes = |v: &[String]| v.iter().map(|s| Code::new(s)).collect::<Option<Vec<_>>>();
    Some(Case {
        key: RecordKey::from_stored(key),
        year: counted.0,
        month: counted.1,
        categories: Categories {
            forms: codes(&row.forms)?,
            sector: Code::new(&row.sector)?,
            location_type: Code::new(&row.location_type)?,
            municipality: Code::new(&row.municipality)?,
            victim_groups: codes(&row.victim_groups)?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_release_with_free_text_does_not_parse() {
        let good = r#"{"id":"2026-Q3","from":"2025-Q1","createdAt":"2026-10-01T00:00:00.000Z",
            "policyRevision":"sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "tables":[{"id":"vorm-jaar","dimensions":["form"],"period":"year",
            "cells":[{"period":"2026","categories":["arbeid"],"value":4}]}],"trends":[]}"#;
        assert!(parse_release(good).is_ok());
        for (from, to) in [
            (r#"["arbeid"]"#, r#"["Jan de Vries"]"#),
            (r#""value":4"#, r#""value":"4""#),
            (r#""period":"2026""#, r#""period":"2026-07-14""#),
            (r#""trends":[]"#, r#""trends":[],"note":"x""#),
            (r#"2026-10-01T00:00:00.000Z"#, r#"1 oktober"#),
        ] {
            assert!(parse_release(&good.replace(from, to)).is_err(), "{to}");
        }
    }
}
