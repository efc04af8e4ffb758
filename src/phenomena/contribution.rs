//! What a signal referred to a non-member contributes to the phenomenon
//! tables: the month it was received and its category codes, nothing else
//! (invariant 1: no personal data to the RIEC). It is recorded in the
//! referral's transaction, in the month [`period::counted_month`] gives.

use anyhow::Context;
use serde_json::Value;

use super::period;
use super::release::release_periods;
use super::tables::Categories;
use super::{Code, RecordKey};
use crate::ledger::Unit;
use crate::store::phenomena::ContributionRow;

/// The victim group codes a signal's victims fall into (the catalogue's
/// `victimGroup` categories).
const MINOR: &str = "minderjarig";
const ADULT: &str = "meerderjarig";
const LABOUR_MIGRANT: &str = "arbeidsmigrant";
/// A sector or location type the signal does not give.
const UNKNOWN: &str = "onbekend";

/// What a signal contributes to the tables: the month it was received and
/// its category codes, read from a validated signal body (the schema's
/// enumerations).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contribution {
    pub year: i32,
    pub month: u8,
    pub categories: Categories,
}

impl Contribution {
    pub fn of(body: &Value) -> anyhow::Result<Self> {
        let code = |v: Option<&str>| {
            Code::new(v.unwrap_or(UNKNOWN)).context("a category of the signal is not a code")
        };
        let received = body["dateReceived"].as_str().unwrap_or_default();
        let date = time::Date::parse(
            received,
            time::macros::format_description!("[year]-[month]-[day]"),
        )
        .context("the signal has no date received")?;
        let victims = body["victims"].as_array().cloned().unwrap_or_default();
        let flag = |v: &Value, k: &str| v.get(k) == Some(&Value::Bool(true));
        let mut victim_groups = Vec::new();
        for (group, present) in [
            (MINOR, victims.iter().any(|v| flag(v, "minor"))),
            (ADULT, victims.iter().any(|v| !flag(v, "minor"))),
            (
                LABOUR_MIGRANT,
                victims.iter().any(|v| flag(v, "labourMigrant")),
            ),
        ] {
            if present {
                victim_groups.push(code(Some(group))?);
            }
        }
        let forms = body["forms"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| code(f.as_str()))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            year: date.year(),
            month: date.month() as u8,
            categories: Categories {
                forms,
                sector: code(body["sector"].as_str())?,
                location_type: code(body["locationType"].as_str())?,
                municipality: code(body["municipality"].as_str())?,
                victim_groups,
            },
        })
    }

    /// The row the store keeps.
    pub fn row(&self) -> ContributionRow {
        let strings = |c: &[Code]| c.iter().map(|c| c.as_str().to_owned()).collect();
        ContributionRow {
            year: self.year,
            month: self.month,
            forms: strings(&self.categories.forms),
            sector: self.categories.sector.as_str().to_owned(),
            location_type: self.categories.location_type.as_str().to_owned(),
            municipality: self.categories.municipality.as_str().to_owned(),
            victim_groups: strings(&self.categories.victim_groups),
        }
    }
}

/// Records a signal's contribution inside the referral's unit of work
/// (once per signal; a later referral changes nothing), counted in the
/// month [`period::counted_month`] gives against the stored releases.
///
/// Why a [`Unit`]: its transaction is the ledger's batch, which holds the
/// log head lock from its start to its commit — the lock
/// [`Phenomena::publish`](super::Phenomena::publish) takes too. Whichever comes second sees the other
/// committed: a release either counts the contribution or was stored
/// before it, and then moved it past itself.
pub async fn contribute(
    unit: &mut Unit<'_>,
    signal_id: &str,
    c: &ContributionRow,
) -> Result<(), sqlx::Error> {
    let tx = unit.tx();
    let counted = period::counted_month((c.year, c.month), &release_periods(tx).await?);
    tx.insert_contribution(
        Some(signal_id),
        RecordKey::generate().stored(),
        "referral",
        c,
        counted,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contribution_holds_codes_and_a_month_only() {
        let body: Value = serde_json::from_str(include_str!("../../examples/signal.json")).unwrap();
        let body = crate::signals::validate(body).unwrap();
        let c = Contribution::of(&body).unwrap();
        assert_eq!((c.year, c.month), (2026, 11));
        let codes = |v: &[Code]| v.iter().map(|c| c.as_str().to_owned()).collect::<Vec<_>>();
        assert_eq!(codes(&c.categories.forms), ["arbeid"]);
        assert_eq!(c.categories.sector.as_str(), "land-en-tuinbouw");
        assert_eq!(c.categories.municipality.as_str(), "emmen");
        assert_eq!(
            codes(&c.categories.victim_groups),
            ["meerderjarig", "arbeidsmigrant"]
        );
        let mut bare = body.clone();
        bare.as_object_mut().unwrap().remove("sector");
        assert_eq!(
            Contribution::of(&bare).unwrap().categories.sector.as_str(),
            "onbekend"
        );
        let mut minor = body;
        minor["victims"][0]["minor"] = Value::Bool(true);
        minor["victims"][0]["labourMigrant"] = Value::Bool(false);
        let c = Contribution::of(&minor).unwrap();
        assert_eq!(codes(&c.categories.victim_groups), ["minderjarig"]);
    }
}
