//! Building a release: every table of the catalogue over every category
//! (zeros included) and every margin, each cell published through the
//! perturbation table; trends computed from those published cells.
//!
//! A cell is the set of cases (signals) it counts: those counted in its period
//! that have each of its categories (a margin, `totaal`, takes every
//! record). Its value depends on that set only (count and cell key), so a
//! cell that recurs — a margin of one table is a cell of another, a closed
//! period recurs in the next release — is published alike. Periods are
//! closed ones only, and no record is added to a published one (see
//! `period::counted_month`), so the set, and the value, never change.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::catalogue::{Catalogue, Code, Comparison, Dimension, PeriodKind};
use super::cellkey::{CellKey, Perturbation, RecordKey};
use super::period::{Period, ReleasePeriod};

/// One case the tables count: a signal's contribution, its record key,
/// the month it counts in and its category codes.
#[derive(Clone, Debug)]
pub struct Case {
    pub key: RecordKey,
    pub year: i32,
    pub month: u8,
    pub categories: Categories,
}

/// The category codes of a record per dimension. Forms and victim groups
/// can be several at once; the others are one code each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Categories {
    pub forms: Vec<Code>,
    pub sector: Code,
    pub location_type: Code,
    pub municipality: Code,
    pub victim_groups: Vec<Code>,
}

impl Categories {
    fn of(&self, d: Dimension) -> &[Code] {
        match d {
            Dimension::Form => &self.forms,
            Dimension::Sector => std::slice::from_ref(&self.sector),
            Dimension::LocationType => std::slice::from_ref(&self.location_type),
            Dimension::Municipality => std::slice::from_ref(&self.municipality),
            Dimension::VictimGroup => &self.victim_groups,
        }
    }
}

/// A published cell: a period, one category per dimension of its table
/// (or the total code), and the protected count.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Cell {
    #[schema(value_type = String, example = "2026-Q3")]
    pub period: Period,
    /// In the order of the table's dimensions.
    pub categories: Vec<Code>,
    /// The published count: never 1 or 2.
    pub value: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Table {
    pub id: Code,
    pub dimensions: Vec<Dimension>,
    pub period: PeriodKind,
    pub cells: Vec<Cell>,
}

/// One step of a trend: a published cell against its predecessor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TrendPoint {
    #[schema(value_type = String, example = "2026-Q3")]
    pub period: Period,
    #[schema(value_type = String, example = "2026-Q2")]
    pub previous: Period,
    pub categories: Vec<Code>,
    pub value: u64,
    pub previous_value: u64,
    /// `value - previousValue`.
    pub change: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Trend {
    pub id: Code,
    pub table: Code,
    pub compare: Comparison,
    pub points: Vec<TrendPoint>,
}

/// Every table and trend of the catalogue for `release`, over `cases`:
/// the closed years and quarters it covers, nothing to date.
pub fn build(
    catalogue: &Catalogue,
    release: ReleasePeriod,
    cases: &[Case],
    perturbation: &Perturbation,
) -> (Vec<Table>, Vec<Trend>) {
    let covered: Vec<&Case> = cases
        .iter()
        .filter(|r| release.covers(r.year, r.month))
        .collect();
    let tables: Vec<Table> = catalogue
        .tables
        .iter()
        .map(|spec| {
            let periods = match spec.period {
                PeriodKind::Year => release.years(),
                PeriodKind::Quarter => release.quarters(),
            };
            // Per dimension: its categories, then the total.
            let options: Vec<Vec<Code>> = spec
                .dimensions
                .iter()
                .map(|d| {
                    let mut codes = catalogue.codes(*d).to_vec();
                    codes.push(catalogue.total.clone());
                    codes
                })
                .collect();
            let mut cells: HashMap<(Period, Vec<Code>), (u64, CellKey)> = HashMap::new();
            for r in &covered {
                let period = match spec.period {
                    PeriodKind::Year => Period::Year(r.year),
                    PeriodKind::Quarter => Period::Quarter(r.year, (r.month - 1) / 3 + 1),
                };
                let mine: Vec<Vec<Code>> = spec
                    .dimensions
                    .iter()
                    .zip(&options)
                    .map(|(d, opts)| {
                        let mut codes: Vec<Code> = r
                            .categories
                            .of(*d)
                            .iter()
                            .filter(|c| opts.contains(c))
                            .cloned()
                            .collect();
                        codes.sort();
                        codes.dedup();
                        codes.push(catalogue.total.clone());
                        codes
                    })
                    .collect();
                for combo in product(&mine) {
                    let cell = cells.entry((period, combo)).or_default();
                    cell.0 += 1;
                    cell.1.add(r.key);
                }
            }
            let cells = periods
                .iter()
                .flat_map(|p| product(&options).into_iter().map(move |c| (*p, c)))
                .map(|(period, categories)| {
                    let (n, ck) = cells
                        .get(&(period, categories.clone()))
                        .copied()
                        .unwrap_or_default();
                    Cell {
                        period,
                        categories,
                        value: perturbation.publish(n, ck),
                    }
                })
                .collect();
            Table {
                id: spec.id.clone(),
                dimensions: spec.dimensions.clone(),
                period: spec.period,
                cells,
            }
        })
        .collect();
    let trends = catalogue
        .trends
        .iter()
        .filter_map(|spec| {
            let table = tables.iter().find(|t| t.id == spec.table)?;
            let published: HashMap<(Period, &[Code]), u64> = table
                .cells
                .iter()
                .map(|c| ((c.period, c.categories.as_slice()), c.value))
                .collect();
            let points = table
                .cells
                .iter()
                .filter_map(|c| {
                    let previous = match spec.compare {
                        Comparison::PreviousQuarter => c.period.previous_quarter(),
                        Comparison::SameQuarterPreviousYear => {
                            c.period.same_quarter_previous_year()
                        }
                    }?;
                    let before = *published.get(&(previous, c.categories.as_slice()))?;
                    Some(TrendPoint {
                        period: c.period,
                        previous,
                        categories: c.categories.clone(),
                        value: c.value,
                        previous_value: before,
                        change: c.value as i64 - before as i64,
                    })
                })
                .collect();
            Some(Trend {
                id: spec.id.clone(),
                table: spec.table.clone(),
                compare: spec.compare,
                points,
            })
        })
        .collect();
    (tables, trends)
}

/// Every combination taking one code from each list.
fn product(lists: &[Vec<Code>]) -> Vec<Vec<Code>> {
    lists.iter().fold(vec![Vec::new()], |acc, list| {
        acc.iter()
            .flat_map(|prefix| {
                list.iter().map(move |c| {
                    let mut next = prefix.clone();
                    next.push(c.clone());
                    next
                })
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(s: &str) -> Code {
        Code::new(s).unwrap()
    }

    fn catalogue() -> Catalogue {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/data.json");
        let data = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        Catalogue::from_policy_data(&data).unwrap()
    }

    fn case(key: u64, year: i32, month: u8, forms: &[&str], sector: &str) -> Case {
        Case {
            key: RecordKey(key),
            year,
            month,
            categories: Categories {
                forms: forms.iter().map(|f| code(f)).collect(),
                sector: code(sector),
                location_type: code("onbekend"),
                municipality: code("emmen"),
                victim_groups: vec![code("meerderjarig")],
            },
        }
    }

    fn cell<'a>(tables: &'a [Table], id: &str, period: &str, cats: &[&str]) -> &'a Cell {
        let t = tables.iter().find(|t| t.id.as_str() == id).unwrap();
        t.cells
            .iter()
            .find(|c| {
                c.period.to_string() == period
                    && c.categories
                        .iter()
                        .map(Code::as_str)
                        .eq(cats.iter().copied())
            })
            .unwrap_or_else(|| panic!("{id} {period} {cats:?}"))
    }

    #[test]
    fn every_category_and_margin_is_a_cell_and_recurring_cells_agree() {
        let c = catalogue();
        let p = Perturbation::new(3, 1.0, &[3; 32]).unwrap();
        let mut cases = Vec::new();
        for i in 0..40u64 {
            let forms: &[&str] = if i % 3 == 0 {
                &["arbeid", "seksueel"]
            } else {
                &["arbeid"]
            };
            let sector = if i % 2 == 0 { "bouw" } else { "horeca" };
            cases.push(case(
                i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                2025,
                1 + (i % 12) as u8,
                forms,
                sector,
            ));
        }
        let release = ReleasePeriod::Quarter(2026, 3);
        let (tables, trends) = build(&c, release, &cases, &p);
        assert_eq!(tables.len(), c.tables.len());
        let sector = tables
            .iter()
            .find(|t| t.id.as_str() == "vorm-sector-jaar")
            .unwrap();
        assert_eq!(
            sector.cells.len(),
            6 * 13,
            "one closed year × (5 forms + total) × (12 sectors + total)"
        );
        // The form margin of the sector table is the form-year cell, and the
        // grand totals of all tables are one cell.
        let form_year = cell(&tables, "vorm-jaar", "2025", &["arbeid"]).value;
        assert_eq!(
            cell(&tables, "vorm-sector-jaar", "2025", &["arbeid", "totaal"]).value,
            form_year
        );
        assert_eq!(
            cell(&tables, "vorm-locatie-jaar", "2025", &["arbeid", "totaal"]).value,
            form_year
        );
        let total = cell(&tables, "vorm-jaar", "2025", &["totaal"]).value;
        assert_eq!(
            cell(&tables, "gemeente-jaar", "2025", &["totaal"]).value,
            total
        );
        assert_eq!(
            cell(&tables, "gemeente-jaar", "2025", &["emmen"]).value,
            total
        );
        assert_eq!(
            cell(
                &tables,
                "slachtoffergroep-vorm-jaar",
                "2025",
                &["totaal", "totaal"]
            )
            .value,
            total
        );
        // Every record is in arbeid and in the total: same set, same value.
        assert_eq!(form_year, total);
        // 2026 has not ended: no year cell of it, and no quarter to date.
        for t in &tables {
            assert!(
                t.cells
                    .iter()
                    .all(|c| c.period != Period::Year(2026) && c.period <= Period::Quarter(2026, 3)),
                "{}",
                t.id.as_str()
            );
        }
        // A later release publishes the closed year alike.
        let (later, _) = build(&c, ReleasePeriod::Quarter(2026, 4), &cases, &p);
        assert_eq!(
            cell(&later, "vorm-jaar", "2025", &["arbeid"]).value,
            form_year
        );
        // No 1s or 2s anywhere.
        for t in &tables {
            assert!(t.cells.iter().all(|c| c.value == 0 || c.value >= 3));
        }
        // Trends are differences of published cells.
        let qoq = trends
            .iter()
            .find(|t| t.compare == Comparison::PreviousQuarter)
            .unwrap();
        for pt in &qoq.points {
            assert_eq!(pt.change, pt.value as i64 - pt.previous_value as i64);
            let cats: Vec<&str> = pt.categories.iter().map(Code::as_str).collect();
            assert_eq!(
                cell(&tables, "vorm-kwartaal", &pt.period.to_string(), &cats).value,
                pt.value
            );
            assert_eq!(
                cell(&tables, "vorm-kwartaal", &pt.previous.to_string(), &cats).value,
                pt.previous_value
            );
        }
        assert_eq!(
            qoq.points.len(),
            6 * 6,
            "six quarters have a predecessor in the release"
        );
    }

    #[test]
    fn records_outside_the_release_do_not_count() {
        let c = catalogue();
        let p = Perturbation::new(3, 1.0, &[3; 32]).unwrap();
        let cases: Vec<Case> = (0..30u64)
            .map(|i| case(i * 77 + 1, 2026, 10, &["arbeid"], "bouw"))
            .collect();
        let (tables, _) = build(&c, ReleasePeriod::Quarter(2026, 3), &cases, &p);
        assert!(tables.iter().all(|t| t.cells.iter().all(|c| c.value == 0)));
        // A month inside the quarter publishes no cell of it.
        let (tables, _) = build(&c, ReleasePeriod::Month(2026, 11), &cases, &p);
        assert!(tables.iter().all(|t| t.cells.iter().all(|c| c.value == 0)));
        assert!(tables.iter().all(|t| {
            t.cells
                .iter()
                .all(|c| c.period < Period::Quarter(2026, 4) && c.period != Period::Year(2026))
        }));
        for release in [
            ReleasePeriod::Month(2026, 12),
            ReleasePeriod::Quarter(2026, 4),
        ] {
            let (tables, _) = build(&c, release, &cases, &p);
            assert!(cell(&tables, "vorm-kwartaal", "2026-Q4", &["arbeid"]).value >= 27);
            assert!(cell(&tables, "vorm-jaar", "2026", &["arbeid"]).value >= 27);
        }
    }
}
