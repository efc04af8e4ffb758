//! A stored release in the formats analysts load directly: CSV for
//! spreadsheets (as Dutch Excel opens it: [`crate::spreadsheet`]) and
//! JSON-stat 2.0 for statistical tools (R `rjstat`, Python `pyjstat`, the
//! JSON-stat toolkit). Both are pure functions of the
//! stored [`Release`], as the JSON is: the same cell has the same value in
//! every format, and nothing but its codes, periods and counts is written.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::catalogue::{Code, Dimension};
use super::period::Period;
use super::release::Release;
use super::tables::{Table, Trend};

/// The dimensions in the order of the CSV columns (and their ids in every
/// format: the names the JSON uses).
const DIMENSIONS: [Dimension; 5] = [
    Dimension::Form,
    Dimension::Sector,
    Dimension::LocationType,
    Dimension::Municipality,
    Dimension::VictimGroup,
];

/// A dimension's id, as the JSON names it.
pub fn dimension_id(d: Dimension) -> &'static str {
    match d {
        Dimension::Form => "form",
        Dimension::Sector => "sector",
        Dimension::LocationType => "locationType",
        Dimension::Municipality => "municipality",
        Dimension::VictimGroup => "victimGroup",
    }
}

/// The CSV columns: one row per cell of a table and per point of a trend.
pub const CSV_HEADER: [&str; 12] = [
    "release",
    "table",
    "period",
    "form",
    "sector",
    "locationType",
    "municipality",
    "victimGroup",
    "value",
    "previousPeriod",
    "previousValue",
    "change",
];

/// The tables and trends of `release` that `only` selects (all of them
/// without a selection).
fn selected<'a>(release: &'a Release, only: Option<&Code>) -> (Vec<&'a Table>, Vec<&'a Trend>) {
    let pick = |id: &Code| only.is_none_or(|o| o == id);
    (
        release.tables.iter().filter(|t| pick(&t.id)).collect(),
        release.trends.iter().filter(|t| pick(&t.id)).collect(),
    )
}

/// The dimensions of a trend: those of the table it compares.
fn trend_dimensions(release: &Release, trend: &Trend) -> Vec<Dimension> {
    release
        .tables
        .iter()
        .find(|t| t.id == trend.table)
        .map(|t| t.dimensions.clone())
        .unwrap_or_default()
}

/// The category columns of a row: a table's codes under its dimensions,
/// empty under the dimensions it does not have.
fn category_columns(dimensions: &[Dimension], categories: &[Code]) -> Vec<String> {
    DIMENSIONS
        .iter()
        .map(|d| {
            dimensions
                .iter()
                .position(|x| x == d)
                .and_then(|i| categories.get(i))
                .map(|c| c.as_str().to_owned())
                .unwrap_or_default()
        })
        .collect()
}

/// The release (or one table or trend of it) as CSV: a header row, then
/// one row per cell, each table's cells in the stored order, then one row
/// per trend point. A table's row leaves the trend columns empty.
pub fn csv(release: &Release, only: Option<&Code>) -> anyhow::Result<Vec<u8>> {
    let mut w = crate::spreadsheet::writer();
    w.write_record(CSV_HEADER)?;
    let (tables, trends) = selected(release, only);
    let id = release.id.to_string();
    for t in tables {
        for c in &t.cells {
            let mut row = vec![id.clone(), t.id.to_string(), c.period.to_string()];
            row.extend(category_columns(&t.dimensions, &c.categories));
            row.extend([
                c.value.to_string(),
                String::new(),
                String::new(),
                String::new(),
            ]);
            w.write_record(&row)?;
        }
    }
    for t in trends {
        let dimensions = trend_dimensions(release, t);
        for p in &t.points {
            let mut row = vec![id.clone(), t.id.to_string(), p.period.to_string()];
            row.extend(category_columns(&dimensions, &p.categories));
            row.extend([
                p.value.to_string(),
                p.previous.to_string(),
                p.previous_value.to_string(),
                p.change.to_string(),
            ]);
            w.write_record(&row)?;
        }
    }
    w.into_inner().map_err(|e| anyhow::anyhow!("csv: {e}"))
}

/// What the tables are, for the `note` of every dataset.
const NOTE: &str = "Counts are protected by the cell key method: 1 and 2 are never published, \
    a 0 means 0 to 3, and every total is a cell of its own, so parts need not add up to it.";

/// One dimension of a dataset: its categories in order.
struct Axis {
    id: String,
    codes: Vec<String>,
}

impl Axis {
    fn new(id: &str, codes: impl IntoIterator<Item = String>) -> Self {
        let mut seen = std::collections::HashSet::new();
        let codes = codes
            .into_iter()
            .filter(|c| seen.insert(c.clone()))
            .collect();
        Self {
            id: id.to_owned(),
            codes,
        }
    }

    fn json(&self) -> Value {
        json!({"label": self.id, "category": {"index": self.codes}})
    }
}

/// A JSON-stat dataset over `axes` with values placed by the position of
/// their categories (row-major, the first axis slowest), `null` where no
/// value is published.
fn dataset(
    label: String,
    release: &Release,
    axes: &[Axis],
    values: Vec<(Vec<String>, Value)>,
) -> Value {
    let positions: Vec<HashMap<&str, usize>> = axes
        .iter()
        .map(|a| {
            a.codes
                .iter()
                .enumerate()
                .map(|(i, c)| (c.as_str(), i))
                .collect()
        })
        .collect();
    let size: Vec<usize> = axes.iter().map(|a| a.codes.len()).collect();
    let mut dense = vec![Value::Null; size.iter().product()];
    for (coords, value) in values {
        let at = coords
            .iter()
            .zip(&positions)
            .zip(&size)
            .try_fold(0usize, |acc, ((c, pos), n)| {
                Some(acc * n + pos.get(c.as_str())?)
            });
        if let Some(at) = at {
            dense[at] = value;
        }
    }
    let mut dimension = serde_json::Map::new();
    for a in axes {
        dimension.insert(a.id.clone(), a.json());
    }
    json!({
        "class": "dataset",
        "label": label,
        "note": [NOTE],
        "source": "ketenpoort, Drenthe anti-trafficking covenant",
        "updated": release.created_at.as_str(),
        "id": axes.iter().map(|a| a.id.clone()).collect::<Vec<_>>(),
        "size": size,
        "dimension": dimension,
        "value": dense,
        "extension": {
            "release": release.id.to_string(),
            "from": release.from.to_string(),
            "policyRevision": release.policy_revision.as_str(),
        },
    })
}

fn periods<'a>(it: impl Iterator<Item = &'a Period>) -> Vec<String> {
    let mut ps: Vec<Period> = it.copied().collect();
    ps.sort();
    ps.iter().map(Period::to_string).collect()
}

fn codes_at<'a>(it: impl Iterator<Item = &'a [Code]>, i: usize) -> Vec<String> {
    it.filter_map(|cs| cs.get(i))
        .map(|c| c.as_str().to_owned())
        .collect()
}

/// A table as a dataset: period × its dimensions.
fn table_dataset(release: &Release, t: &Table) -> Value {
    let mut axes = vec![Axis::new(
        "period",
        periods(t.cells.iter().map(|c| &c.period)),
    )];
    for (i, d) in t.dimensions.iter().enumerate() {
        let codes = codes_at(t.cells.iter().map(|c| c.categories.as_slice()), i);
        axes.push(Axis::new(dimension_id(*d), codes));
    }
    let values = t
        .cells
        .iter()
        .map(|c| {
            let mut coords = vec![c.period.to_string()];
            coords.extend(c.categories.iter().map(|c| c.as_str().to_owned()));
            (coords, json!(c.value))
        })
        .collect();
    let mut ds = dataset(format!("{} ({})", t.id, release.id), release, &axes, values);
    ds["role"] = roles(&t.dimensions, false);
    ds
}

/// A trend as a dataset: period × the dimensions of its table × a measure
/// (`value`, `previousValue`, `change`).
fn trend_dataset(release: &Release, t: &Trend) -> Value {
    let dimensions = trend_dimensions(release, t);
    let mut axes = vec![Axis::new(
        "period",
        periods(t.points.iter().map(|p| &p.period)),
    )];
    for (i, d) in dimensions.iter().enumerate() {
        let codes = codes_at(t.points.iter().map(|p| p.categories.as_slice()), i);
        axes.push(Axis::new(dimension_id(*d), codes));
    }
    let measures = ["value", "previousValue", "change"];
    axes.push(Axis::new("measure", measures.map(String::from)));
    let values = t
        .points
        .iter()
        .flat_map(|p| {
            let mut coords = vec![p.period.to_string()];
            coords.extend(p.categories.iter().map(|c| c.as_str().to_owned()));
            [json!(p.value), json!(p.previous_value), json!(p.change)]
                .into_iter()
                .zip(measures)
                .map(move |(v, m)| {
                    let mut at = coords.clone();
                    at.push(m.to_owned());
                    (at, v)
                })
        })
        .collect();
    let mut ds = dataset(format!("{} ({})", t.id, release.id), release, &axes, values);
    ds["role"] = roles(&dimensions, true);
    ds["extension"]["table"] = json!(t.table.as_str());
    ds["extension"]["compare"] = json!(t.compare);
    ds
}

fn roles(dimensions: &[Dimension], measured: bool) -> Value {
    let mut role = json!({"time": ["period"]});
    if dimensions.contains(&Dimension::Municipality) {
        role["geo"] = json!(["municipality"]);
    }
    if measured {
        role["metric"] = json!(["measure"]);
    }
    role
}

/// The release as JSON-stat 2.0: one table or trend as a `dataset`, a
/// whole release as a `collection` holding every table and trend as a
/// dataset of its own (tables have different dimensions, so one cube
/// cannot hold them).
pub fn json_stat(release: &Release, only: Option<&Code>) -> Value {
    let (tables, trends) = selected(release, only);
    let mut items: Vec<Value> = tables
        .into_iter()
        .map(|t| table_dataset(release, t))
        .chain(trends.into_iter().map(|t| trend_dataset(release, t)))
        .collect();
    if only.is_some() && items.len() == 1 {
        let mut ds = items.remove(0);
        let mut out = serde_json::Map::new();
        out.insert("version".into(), json!("2.0"));
        out.extend(ds.as_object_mut().map(std::mem::take).unwrap_or_default());
        return Value::Object(out);
    }
    json!({
        "version": "2.0",
        "class": "collection",
        "label": format!("phenomenon tables, release {}", release.id),
        "updated": release.created_at.as_str(),
        "source": "ketenpoort, Drenthe anti-trafficking covenant",
        "note": [NOTE],
        "link": {"item": items},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release() -> Release {
        serde_json::from_str(
            r#"{"id":"2026-Q3","from":"2025-Q1","createdAt":"2026-10-01T00:00:05.123Z",
            "policyRevision":"sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "tables":[{"id":"vorm-sector-jaar","dimensions":["form","sector"],"period":"year","cells":[
                {"period":"2025","categories":["arbeid","bouw"],"value":4},
                {"period":"2025","categories":["arbeid","totaal"],"value":7},
                {"period":"2025","categories":["totaal","bouw"],"value":0},
                {"period":"2025","categories":["totaal","totaal"],"value":9}]},
              {"id":"vorm-kwartaal","dimensions":["form"],"period":"quarter","cells":[
                {"period":"2025-Q1","categories":["arbeid"],"value":3},
                {"period":"2025-Q2","categories":["arbeid"],"value":5}]}],
            "trends":[{"id":"vorm-kwartaal-op-kwartaal","table":"vorm-kwartaal","compare":"previous-quarter",
              "points":[{"period":"2025-Q2","previous":"2025-Q1","categories":["arbeid"],
                "value":5,"previousValue":3,"change":2}]}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn csv_has_the_bom_the_separator_and_a_row_per_cell() {
        let body = csv(&release(), None).unwrap();
        let bom = crate::spreadsheet::BOM;
        assert!(body.starts_with(bom));
        let text = std::str::from_utf8(&body[bom.len()..]).unwrap();
        let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert_eq!(lines[0], CSV_HEADER.join(";"));
        assert_eq!(lines.len(), 1 + 4 + 2 + 1);
        assert_eq!(
            lines[1],
            "2026-Q3;vorm-sector-jaar;2025;arbeid;bouw;;;;4;;;"
        );
        assert_eq!(
            lines[7],
            "2026-Q3;vorm-kwartaal-op-kwartaal;2025-Q2;arbeid;;;;;5;2025-Q1;3;2"
        );
        let one = csv(&release(), Code::new("vorm-kwartaal").as_ref()).unwrap();
        assert_eq!(String::from_utf8(one).unwrap().lines().count(), 3);
    }

    #[test]
    fn json_stat_places_every_value_at_its_categories() {
        let r = release();
        let ds = json_stat(&r, Code::new("vorm-sector-jaar").as_ref());
        assert_eq!(ds["version"], "2.0");
        assert_eq!(ds["class"], "dataset");
        assert_eq!(ds["id"], json!(["period", "form", "sector"]));
        assert_eq!(ds["size"], json!([1, 2, 2]));
        assert_eq!(ds["value"], json!([4, 7, 0, 9]));
        let all = json_stat(&r, None);
        assert_eq!(all["class"], "collection");
        let trend = &all["link"]["item"][2];
        assert_eq!(trend["id"], json!(["period", "form", "measure"]));
        assert_eq!(trend["value"], json!([5, 3, 2]));
        assert!(trend.get("version").is_none());
    }

    /// Both shapes validate against the JSON-stat 2.0 schema as published
    /// (`schemas/json-stat-2.0.schema.json`), and a broken one does not.
    #[test]
    fn json_stat_validates_against_the_published_schema() {
        let schema: Value =
            serde_json::from_str(include_str!("../../schemas/json-stat-2.0.schema.json")).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let r = release();
        for only in [
            None,
            Code::new("vorm-sector-jaar"),
            Code::new("vorm-kwartaal-op-kwartaal"),
        ] {
            let doc = json_stat(&r, only.as_ref());
            let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{only:?}: {errors:?}");
        }
        let mut bad = json_stat(&r, None);
        bad["link"]["item"][0]["version"] = json!("2.0");
        assert!(!validator.is_valid(&bad));
    }
}
