//! The catalogue: the fixed tables a release holds, read from the policy
//! data (`catalogue` in `policies/data.json`). The dimensions are a closed
//! Rust enum, so a catalogue can name no other dimension; a municipality is
//! never crossed with anything; periods are years or quarters.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use anyhow::{Context, bail, ensure};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

/// A category or table code: a lowercase slug from the catalogue. The only
/// text a release holds besides periods; never a value from a signal.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, ToSchema)]
#[schema(value_type = String, example = "arbeid")]
pub struct Code(String);

impl Code {
    pub fn new(s: &str) -> Option<Self> {
        crate::partners::is_slug(s).then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Code {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Code::new(&s).ok_or_else(|| serde::de::Error::custom("not a lowercase code"))
    }
}

/// The dimensions a phenomenon table may have. Nationality, free text,
/// dates and identifiers are not among them, and cannot be added by data.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum Dimension {
    Form,
    Sector,
    LocationType,
    /// Totals per municipality only: never crossed with another dimension.
    Municipality,
    VictimGroup,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PeriodKind {
    Year,
    Quarter,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Comparison {
    PreviousQuarter,
    SameQuarterPreviousYear,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DimensionSpec {
    pub title: String,
    /// The public category list, in publishing order.
    pub codes: Vec<Code>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    pub id: Code,
    pub title: String,
    pub dimensions: Vec<Dimension>,
    pub period: PeriodKind,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrendSpec {
    pub id: Code,
    pub title: String,
    /// The quarter table whose published cells the trend compares.
    pub table: Code,
    pub compare: Comparison,
}

/// The catalogue as served by `GET /v1/phenomena/tables`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Catalogue {
    pub description: String,
    /// The category code of a margin (all categories of a dimension).
    pub total: Code,
    pub dimensions: BTreeMap<Dimension, DimensionSpec>,
    pub tables: Vec<TableSpec>,
    pub trends: Vec<TrendSpec>,
}

impl Catalogue {
    /// Reads and checks `catalogue` from the policy data; refuses anything
    /// the boundary does not allow.
    pub fn from_policy_data(data: &serde_json::Value) -> anyhow::Result<Self> {
        let raw = data
            .get("catalogue")
            .context("the policy data has no catalogue")?;
        let c: Catalogue =
            serde_json::from_value(raw.clone()).context("the catalogue is malformed")?;
        c.check()?;
        Ok(c)
    }

    fn check(&self) -> anyhow::Result<()> {
        for (d, spec) in &self.dimensions {
            let unique: HashSet<&Code> = spec.codes.iter().collect();
            ensure!(
                !spec.codes.is_empty() && unique.len() == spec.codes.len(),
                "dimension {d:?}: codes must be unique and not empty"
            );
            ensure!(
                !unique.contains(&self.total),
                "dimension {d:?} uses the total code"
            );
        }
        let mut ids = HashSet::new();
        for t in &self.tables {
            ensure!(ids.insert(&t.id), "table {} appears twice", t.id);
            let dims: HashSet<&Dimension> = t.dimensions.iter().collect();
            ensure!(
                !dims.is_empty() && dims.len() == t.dimensions.len(),
                "table {}: dimensions must be unique and not empty",
                t.id
            );
            if dims.contains(&Dimension::Municipality) && dims.len() > 1 {
                bail!(
                    "table {}: a municipality is never crossed with another dimension",
                    t.id
                );
            }
            for d in &t.dimensions {
                ensure!(
                    self.dimensions.contains_key(d),
                    "table {}: dimension {d:?} has no category list",
                    t.id
                );
            }
        }
        for tr in &self.trends {
            ensure!(ids.insert(&tr.id), "trend {} reuses an id", tr.id);
            let table = self.table(&tr.table);
            ensure!(
                table.is_some_and(|t| t.period == PeriodKind::Quarter),
                "trend {}: {} is not a quarter table of the catalogue",
                tr.id,
                tr.table
            );
        }
        Ok(())
    }

    pub fn table(&self, id: &Code) -> Option<&TableSpec> {
        self.tables.iter().find(|t| &t.id == id)
    }

    pub fn codes(&self, d: Dimension) -> &[Code] {
        self.dimensions
            .get(&d)
            .map(|s| s.codes.as_slice())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> serde_json::Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/data.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn the_repository_catalogue_is_accepted() {
        let c = Catalogue::from_policy_data(&repo()).unwrap();
        assert_eq!(c.tables.len(), 6);
        assert_eq!(c.total.as_str(), "totaal");
        assert_eq!(c.codes(Dimension::Form).len(), 5);
    }

    #[test]
    fn the_boundary_is_not_negotiable_by_data() {
        let mut d = repo();
        d["catalogue"]["tables"][0]["dimensions"] = serde_json::json!(["nationality"]);
        assert!(Catalogue::from_policy_data(&d).is_err());
        let mut d = repo();
        d["catalogue"]["tables"][0]["dimensions"] = serde_json::json!(["municipality", "form"]);
        assert!(Catalogue::from_policy_data(&d).is_err());
        let mut d = repo();
        d["catalogue"]["tables"][0]["period"] = serde_json::json!("month");
        assert!(Catalogue::from_policy_data(&d).is_err());
        let mut d = repo();
        d["catalogue"]["tables"][0]["filter"] = serde_json::json!("x");
        assert!(Catalogue::from_policy_data(&d).is_err());
        let mut d = repo();
        d["catalogue"]["dimensions"]["sector"]["codes"][0] = serde_json::json!("Vrije tekst");
        assert!(Catalogue::from_policy_data(&d).is_err());
        let mut d = repo();
        d["catalogue"]["dimensions"]["sector"]["codes"][0] = serde_json::json!("totaal");
        assert!(Catalogue::from_policy_data(&d).is_err());
        let mut d = repo();
        d["catalogue"]["trends"][0]["table"] = serde_json::json!("vorm-jaar");
        assert!(Catalogue::from_policy_data(&d).is_err());
        let mut d = repo();
        d.as_object_mut().unwrap().remove("catalogue");
        assert!(Catalogue::from_policy_data(&d).is_err());
    }
}
