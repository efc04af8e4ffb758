//! Phenomenon tables from outside: a referral to the RIEC contributes to
//! the tables, a release is published per closed period and served as
//! stored, and its disclosure control holds over the whole catalogue and
//! several releases — no published 1 or 2 anywhere, the same set of records
//! published alike wherever it appears, no difference of tables, margins
//! or consecutive releases that pins down a count of 1 or 2, only closed
//! periods in a release, and no published cell that a later release (or a
//! late referral) changes.
//!
//! The test knows the truth because it made the data: it mirrors how the
//! gateway reads a signal's categories, in which month it counts and which
//! records a cell counts. The demo's fictitious contributions lie in the
//! current and previous year; the tests use years long past, so the two
//! never share a cell.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Value, json};

use crate::client::*;
use crate::common::*;

/// The perturbation's largest deviation, as the tests configure it.
const MAX_DEVIATION: i64 = 3;

/// `ketenpoort phenomena release [--period P]` expected to fail (with the
/// extra environment `env`); returns its error output.
fn refused(data: &DataDir, period: Option<&str>, env: &[(&str, &str)]) -> String {
    let mut args = vec!["phenomena", "release"];
    args.extend(period.map(|p| ["--period", p]).into_iter().flatten());
    let out = data.cli_with_env(&args, &[&PHENOMENA_ENV[..], env].concat());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{period:?} was published: {err}");
    assert!(
        String::from_utf8_lossy(&out.stdout).is_empty(),
        "{period:?}: nothing printed but the error"
    );
    err
}

/// Every cell of a release by (table, period, categories).
fn cell_values(release: &Value) -> BTreeMap<(String, String, String), i64> {
    release["tables"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| {
            t["cells"].as_array().unwrap().iter().map(move |c| {
                (
                    (
                        t["id"].as_str().unwrap().to_owned(),
                        c["period"].as_str().unwrap().to_owned(),
                        c["categories"].to_string(),
                    ),
                    c["value"].as_i64().unwrap(),
                )
            })
        })
        .collect()
}

/// Asserts that no cell two releases both show differs; returns how many
/// they share.
fn assert_shared_cells_agree(a: &Value, b: &Value) -> usize {
    let (a_cells, b_cells) = (cell_values(a), cell_values(b));
    let mut shared = 0;
    for (key, v) in &a_cells {
        if let Some(w) = b_cells.get(key) {
            shared += 1;
            assert_eq!(v, w, "{key:?} is {v} in {} but {w} in {}", a["id"], b["id"]);
        }
    }
    shared
}

/// What the gateway reads from a signal for the tables, and the month it
/// counts in.
#[derive(Clone, Debug)]
struct Facts {
    year: i32,
    month: u8,
    codes: HashMap<&'static str, Vec<String>>,
}

/// The facts of a signal referred to the RIEC after the releases
/// `released`.
fn facts(body: &Value, released: &[&str]) -> Facts {
    let received = body["dateReceived"].as_str().unwrap();
    let (year, month, day): (i32, u8, u8) = (
        received[..4].parse().unwrap(),
        received[5..7].parse().unwrap(),
        received[8..10].parse().unwrap(),
    );
    let minor = |v: &Value| {
        v["dateOfBirth"].as_str().is_some_and(|b| {
            let (by, bm, bd): (i32, u8, u8) = (
                b[..4].parse().unwrap(),
                b[5..7].parse().unwrap(),
                b[8..10].parse().unwrap(),
            );
            let mut age = year - by;
            if (month, day) < (bm, bd) {
                age -= 1;
            }
            age < 18
        })
    };
    let victims = body["victims"].as_array().unwrap();
    let mut groups = Vec::new();
    if victims.iter().any(minor) {
        groups.push("minderjarig".to_owned());
    }
    if victims.iter().any(|v| !minor(v)) {
        groups.push("meerderjarig".to_owned());
    }
    if victims.iter().any(|v| v["labourMigrant"] == json!(true)) {
        groups.push("arbeidsmigrant".to_owned());
    }
    let one = |k: &str| vec![body[k].as_str().unwrap_or("onbekend").to_owned()];
    let codes = HashMap::from([
        (
            "form",
            body["forms"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f.as_str().unwrap().to_owned())
                .collect(),
        ),
        ("sector", one("sector")),
        ("locationType", one("locationType")),
        ("municipality", one("municipality")),
        ("victimGroup", groups),
    ]);
    let (year, month) = counted((year, month), released);
    Facts { year, month, codes }
}

/// The first and last month the cells of a release cover: closed quarters
/// only, from January of the year before its last one's.
fn coverage(id: &str) -> ((i32, u8), (i32, u8)) {
    let (year, month) = end_of(id);
    let last = if month < 3 {
        (year - 1, 12)
    } else {
        (year, month - month % 3)
    };
    ((last.0 - 1, 1), last)
}

/// The month a signal received in `received` counts in: that month, or,
/// if a release already published it, the first month none has.
fn counted(received: (i32, u8), released: &[&str]) -> (i32, u8) {
    let mut month = received;
    while let Some((_, (y, m))) = released
        .iter()
        .map(|r| coverage(r))
        .find(|(first, last)| (*first..=*last).contains(&month))
    {
        month = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    }
    month
}

/// A set of records (signal numbers), as a bitset.
type Records = Vec<u64>;

fn subset(a: &Records, b: &Records) -> bool {
    a.iter().zip(b).all(|(x, y)| x & !y == 0)
}

fn count(a: &Records) -> i64 {
    a.iter().map(|w| i64::from(w.count_ones())).sum()
}

/// One published cell with the records it counts.
#[derive(Clone, Debug)]
struct Published {
    release: String,
    table: String,
    period: String,
    categories: Vec<String>,
    value: i64,
    records: Records,
}

/// Every cell of `release`, with its true record set: the contributions
/// `included` (signal numbers recorded before the release was made).
fn cells_of(
    release: &Value,
    facts: &[Facts],
    included: &BTreeSet<usize>,
    catalogue: &Value,
) -> Vec<Published> {
    let id = release["id"].as_str().unwrap();
    let (first, last) = coverage(id);
    let words = facts.len().div_ceil(64);
    let total = catalogue["total"].as_str().unwrap();
    let mut out = Vec::new();
    for table in release["tables"].as_array().unwrap() {
        let dims: Vec<String> = table["dimensions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap().to_owned())
            .collect();
        let spec = catalogue["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == table["id"])
            .expect("a table of the catalogue");
        assert_eq!(spec["dimensions"], table["dimensions"]);
        assert_eq!(spec["period"], table["period"]);
        // Every category combination, margins and zeros included.
        let per_period: usize = dims
            .iter()
            .map(|d| {
                catalogue["dimensions"][d]["codes"]
                    .as_array()
                    .unwrap()
                    .len()
                    + 1
            })
            .product();
        let periods: BTreeSet<&str> = table["cells"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["period"].as_str().unwrap())
            .collect();
        // Closed periods only: last year, this year once it has ended.
        let expected_periods = match table["period"].as_str().unwrap() {
            "year" => 1 + usize::from(last.1 == 12),
            _ => 4 + usize::from(last.1 / 3),
        };
        assert_eq!(periods.len(), expected_periods, "{id} {}", table["id"]);
        assert_eq!(
            table["cells"].as_array().unwrap().len(),
            per_period * expected_periods,
            "{id} {}: every combination is a cell",
            table["id"]
        );
        for cell in table["cells"].as_array().unwrap() {
            let period = cell["period"].as_str().unwrap();
            let cats: Vec<String> = cell["categories"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_owned())
                .collect();
            let mut records = vec![0u64; words];
            for &i in included {
                let f = &facts[i];
                if !(first..=last).contains(&(f.year, f.month)) {
                    continue;
                }
                let in_period = match period.split_once("-Q") {
                    None => f.year.to_string() == period,
                    Some((y, q)) => {
                        f.year.to_string() == y && ((f.month - 1) / 3 + 1).to_string() == q
                    }
                };
                let in_categories = dims
                    .iter()
                    .zip(&cats)
                    .all(|(d, c)| c == total || f.codes[d.as_str()].contains(c));
                if in_period && in_categories {
                    records[i / 64] |= 1 << (i % 64);
                }
            }
            out.push(Published {
                release: id.to_owned(),
                table: table["id"].as_str().unwrap().to_owned(),
                period: period.to_owned(),
                categories: cats,
                value: cell["value"].as_i64().unwrap(),
                records,
            });
        }
    }
    out
}

/// The true counts an attacker who knows the method (and the largest
/// deviation) cannot exclude for a published value.
fn possible(published: i64) -> (i64, i64) {
    if published == 0 {
        (0, MAX_DEVIATION)
    } else {
        (
            (published - MAX_DEVIATION).max(1),
            published + MAX_DEVIATION,
        )
    }
}

/// Whether a difference of two published cells leaves the attacker certain
/// that the true difference is 1 or 2.
fn pins_down_a_small_count(a: i64, b: i64) -> bool {
    let ((alo, ahi), (blo, bhi)) = (possible(a), possible(b));
    let (lo, hi) = ((alo - bhi).max(0), ahi - blo);
    lo >= 1 && hi <= 2
}

#[tokio::test]
async fn disclosure_control_over_the_catalogue_and_several_releases() {
    let server = Server::start(phenomena_opts()).await;
    let riec = Role::of(&server, "riec", "analist");
    let catalogue: Value = riec
        .get("/v1/phenomena/tables", FEN)
        .await
        .json()
        .await
        .unwrap();
    let mut rng = Rng::new(0x5eed_2019);
    // Phase 1: 2019 and the first half of 2020.
    let mut bodies: Vec<Value> = (0..90)
        .map(|i| {
            let (year, month) = if i < 60 {
                (2019, 1 + (i % 12) as u8)
            } else {
                (2020, 1 + (i % 6) as u8)
            };
            plain_signal(&mut rng, year, month)
        })
        .collect();
    let mut ids = submit_all(&server, &bodies).await;
    // A share stays with the members; the rest is referred (some try twice).
    let referred: BTreeSet<usize> = (0..90).filter(|i| i % 9 != 4).collect();
    let to_riec: Vec<String> = referred.iter().map(|&i| ids[i].clone()).collect();
    for r in refer_all(&server, &to_riec, "riec", FEN).await {
        assert_eq!(r["mode"], "aggregate", "{r}");
        assert!(
            r.get("inboxItem").is_none(),
            "nothing is delivered to the RIEC: {r}"
        );
        assert_eq!(r["fields"], json!([]));
    }
    // Referring again is refused (409): a signal contributes once.
    let regisseur = Role::of(&server, "zvhd", "ketenregisseur");
    for id in &to_riec[..10] {
        let res = regisseur.refer(id, "riec", FEN).await;
        assert_eq!(res.status(), 409);
    }
    let phase1 = referred.clone();
    assert!(publish(&server, "2019-Q4").contains("published"));
    assert!(publish(&server, "2020-Q2").contains("published"));
    // Phase 2: more of 2020, and late ones received in published periods
    // (2019 and the first half of 2020): they count from 2020-07 on.
    let more: Vec<Value> = (0..60)
        .map(|i| {
            let (year, month) = if i < 15 {
                (2019, 1 + (i % 12) as u8)
            } else {
                (2020, 1 + (i % 12) as u8)
            };
            plain_signal(&mut rng, year, month)
        })
        .collect();
    ids.extend(submit_all(&server, &more).await);
    bodies.extend(more);
    let phase2: BTreeSet<usize> = (90..150).filter(|i| i % 7 != 3).collect();
    let to_riec: Vec<String> = phase2.iter().map(|&i| ids[i].clone()).collect();
    refer_all(&server, &to_riec, "riec", FEN).await;
    let all: BTreeSet<usize> = phase1.union(&phase2).copied().collect();
    assert!(publish(&server, "2020-Q4").contains("published"));
    // A release is made once: publishing again changes nothing.
    let first = fetch_release(&riec, "2019-Q4").await;
    assert!(publish(&server, "2019-Q4").contains("already published"));
    assert_eq!(fetch_release(&riec, "2019-Q4").await, first);

    let facts: Vec<Facts> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| facts(b, if i < 90 { &[] } else { &["2019-Q4", "2020-Q2"] }))
        .collect();
    assert!(
        phase2
            .iter()
            .filter(|&&i| facts[i].year == 2020 && facts[i].month == 7)
            .count()
            >= 20,
        "late referrals move to the first open month"
    );
    let mut cells = Vec::new();
    let mut releases: Vec<Value> = Vec::new();
    for (id, included) in [
        ("2019-Q4", &phase1),
        ("2020-Q2", &phase1),
        ("2020-Q4", &all),
    ] {
        let release = fetch_release(&riec, id).await;
        assert_eq!(release["id"], id);
        // A cell shown before is shown alike, whatever came in between.
        for earlier in &releases {
            assert!(assert_shared_cells_agree(earlier, &release) > 100);
        }
        releases.push(release.clone());
        cells.extend(cells_of(&release, &facts, included, &catalogue));
        // Trends are differences of the release's own published cells.
        let table_value: HashMap<(String, String), i64> = release["tables"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["period"] == "quarter")
            .flat_map(|t| t["cells"].as_array().unwrap().iter())
            .map(|c| {
                (
                    (
                        c["period"].as_str().unwrap().to_owned(),
                        c["categories"].to_string(),
                    ),
                    c["value"].as_i64().unwrap(),
                )
            })
            .collect();
        let trends = release["trends"].as_array().unwrap();
        assert_eq!(trends.len(), catalogue["trends"].as_array().unwrap().len());
        for point in trends.iter().flat_map(|t| t["points"].as_array().unwrap()) {
            let cats = point["categories"].to_string();
            let v = point["value"].as_i64().unwrap();
            let p = point["previousValue"].as_i64().unwrap();
            assert_eq!(
                table_value[&(point["period"].as_str().unwrap().to_owned(), cats.clone())],
                v
            );
            assert_eq!(
                table_value[&(point["previous"].as_str().unwrap().to_owned(), cats)],
                p
            );
            assert_eq!(point["change"].as_i64().unwrap(), v - p, "{point}");
        }
    }

    // 1. No published 1 or 2; never further than the largest deviation;
    //    an empty cell is published as 0.
    let mut small = 0;
    for c in &cells {
        let truth = count(&c.records);
        assert!(c.value == 0 || c.value >= 3, "{c:?}");
        assert!(
            (c.value - truth).abs() <= MAX_DEVIATION,
            "{c:?} (true {truth})"
        );
        if truth == 0 {
            assert_eq!(c.value, 0, "{c:?}");
        }
        small += usize::from(truth == 1 || truth == 2);
    }
    assert!(
        small >= 100,
        "the data should hold many cells of 1 or 2, has {small}"
    );

    // 2. The same set of records is published alike everywhere: tables,
    //    margins, releases.
    let mut by_set: HashMap<&Records, BTreeSet<i64>> = HashMap::new();
    for c in &cells {
        by_set.entry(&c.records).or_default().insert(c.value);
    }
    for (set, values) in &by_set {
        assert_eq!(
            values.len(),
            1,
            "the record set of {} records published as {values:?}",
            count(set)
        );
    }
    let nonempty = cells.iter().filter(|c| count(&c.records) > 0).count();
    let recurring = nonempty - by_set.keys().filter(|s| count(s) > 0).count();
    assert!(
        recurring > 200,
        "cells recur across tables, margins and releases ({recurring})"
    );

    // 3. Differencing: every pair of cells whose record sets differ by one
    //    or two records (a margin and its cell, a table and another, one
    //    release and the next).
    let distinct: Vec<(&Records, i64)> = by_set
        .iter()
        .map(|(s, v)| (*s, *v.iter().next().unwrap()))
        .collect();
    let (mut pairs, mut exact) = (0, 0);
    for (a, va) in &distinct {
        for (b, vb) in &distinct {
            if a == b || !subset(b, a) {
                continue;
            }
            let diff = count(a) - count(b);
            if diff == 1 || diff == 2 {
                pairs += 1;
                assert!(
                    !pins_down_a_small_count(*va, *vb),
                    "published {va} - {vb} pins down a true difference of {diff}"
                );
                exact += usize::from(va - vb == diff);
            }
        }
    }
    assert!(
        pairs >= 100,
        "too few differencing pairs to judge ({pairs})"
    );
    assert!(
        (exact as f64) < 0.8 * pairs as f64,
        "differences of published cells give the true small difference too often ({exact} of {pairs})"
    );

    // 4. Margin minus the other cells of a partition (single-valued
    //    dimensions): estimates a small cell exactly no more often than
    //    chance, and the published parts need not add up to the margin.
    let total = catalogue["total"].as_str().unwrap();
    let (mut estimates, mut estimated_exactly, mut not_adding_up) = (0, 0, 0);
    for m in cells.iter() {
        let table = catalogue["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == m.table)
            .unwrap();
        for (pos, dim) in table["dimensions"].as_array().unwrap().iter().enumerate() {
            let dim = dim.as_str().unwrap();
            if !matches!(dim, "sector" | "locationType" | "municipality")
                || m.categories[pos] != total
            {
                continue;
            }
            let parts: Vec<&Published> = cells
                .iter()
                .filter(|c| {
                    c.release == m.release
                        && c.table == m.table
                        && c.period == m.period
                        && c.categories[pos] != total
                        && c.categories
                            .iter()
                            .enumerate()
                            .all(|(i, x)| i == pos || *x == m.categories[i])
                })
                .collect();
            let sum: i64 = parts.iter().map(|p| p.value).sum();
            not_adding_up += usize::from(sum != m.value);
            for p in &parts {
                let truth = count(&p.records);
                if truth == 1 || truth == 2 {
                    estimates += 1;
                    estimated_exactly += usize::from(m.value - (sum - p.value) == truth);
                }
            }
        }
    }
    assert!(
        estimates >= 30,
        "too few small cells in partitions ({estimates})"
    );
    assert!(
        (estimated_exactly as f64) < 0.8 * estimates as f64,
        "a margin minus its other cells gives small counts too often ({estimated_exactly} of {estimates})"
    );
    assert!(
        not_adding_up > 0,
        "perturbed cells are independent: some margins differ from the sum of their parts"
    );
}

#[tokio::test]
async fn releases_api_feed_errors_and_log_entries() {
    let server = Server::start(phenomena_opts()).await;
    let riec = Role::of(&server, "riec", "analist");
    let mut rng = Rng::new(7);
    let bodies: Vec<Value> = (0..12)
        .map(|i| plain_signal(&mut rng, 2021, 1 + i as u8))
        .collect();
    let ids = submit_all(&server, &bodies).await;
    refer_all(&server, &ids, "riec", FEN).await;
    for p in ["2021-Q1", "2021-Q2", "2021-Q3"] {
        publish(&server, p);
    }
    // The feed, one at a time with the cursor, in the order releases were made.
    let mut seen = Vec::new();
    let mut after: Option<u64> = None;
    loop {
        let path = match after {
            Some(a) => format!("/v1/phenomena/releases?limit=1&after={a}"),
            None => "/v1/phenomena/releases?limit=1".to_owned(),
        };
        let page: Value = riec.get(&path, FEN).await.json().await.unwrap();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 1);
        seen.extend(items.iter().map(|i| i["id"].as_str().unwrap().to_owned()));
        match page["nextAfter"].as_u64() {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen, ["2021-Q1", "2021-Q2", "2021-Q3"]);
    let q3 = fetch_release(&riec, "2021-Q3").await;
    assert_eq!(q3["from"], "2020-Q1");
    // One table of a release; a trend too.
    let res = riec
        .get("/v1/phenomena/releases/2021-Q3/tables/gemeente-jaar", FEN)
        .await;
    assert_eq!(res.status(), 200);
    let one: Value = res.json().await.unwrap();
    assert_eq!(one["tables"].as_array().unwrap().len(), 1);
    assert_eq!(one["trends"], json!([]));
    let res = riec
        .get(
            "/v1/phenomena/releases/2021-Q3/tables/vorm-kwartaal-op-kwartaal",
            FEN,
        )
        .await;
    assert_eq!(res.status(), 200);
    // Unknown releases and tables: 404. Any other question: 400.
    for path in [
        "/v1/phenomena/releases/2017-Q1",
        "/v1/phenomena/releases/not-a-period",
        "/v1/phenomena/releases/2021-Q3/tables/nationaliteit-jaar",
        "/v1/phenomena/releases/2021-Q3/tables/Vorm-Jaar",
        "/v1/phenomena/releases/2017-Q1/tables/vorm-jaar",
    ] {
        problem(riec.get(path, FEN).await, 404, None).await;
    }
    for path in [
        "/v1/phenomena/tables?form=arbeid",
        "/v1/phenomena/releases/2021-Q3?form=arbeid",
        "/v1/phenomena/releases/2021-Q3?municipality=emmen&sector=bouw",
        "/v1/phenomena/releases/2021-Q3/tables/vorm-jaar?nationality=RO",
        "/v1/phenomena/releases/2021-Q3?period=2021-07-14",
        "/v1/phenomena/releases?form=arbeid",
        "/v1/phenomena/releases?limit=x",
    ] {
        problem(riec.get(path, FEN).await, 400, None).await;
    }
    // Another purpose: refused by the policy, and logged.
    let res = riec
        .get("/v1/phenomena/releases/2021-Q3", "opsporing")
        .await;
    problem(res, 403, Some("purpose-not-for-action")).await;
    // A member reads the same tables.
    let zvhd = Role::of(&server, "zvhd", "ketenregisseur");
    assert_eq!(fetch_release(&zvhd, "2021-Q3").await, q3);

    // Every release read is an entry: release-aggregate, no subjects, no
    // record ids. The RIEC sees its own entries in full, once published.
    let size = published_size(&server, riec.token()).await;
    let res = riec
        .get(
            &format!(
                "/v1/log/entries?start={}&end={size}",
                size.saturating_sub(1000)
            ),
            AUDIT,
        )
        .await;
    assert_eq!(res.status(), 200);
    let page: Value = res.json().await.unwrap();
    let mine: Vec<&Value> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e.get("entry"))
        .collect();
    let reads: Vec<&&Value> = mine
        .iter()
        .filter(|e| e["outcome"] == "disclosed")
        .collect();
    assert!(reads.len() >= 3, "{mine:?}");
    for e in &mine {
        assert_eq!(e["actor"]["partner"], "riec");
        assert_eq!(e["action"], "release-aggregate", "{e}");
        assert_eq!(e["subjects"], json!([]));
        assert_eq!(e["fields"], json!([]));
        for r in e["resources"].as_array().unwrap() {
            let r = r.as_str().unwrap();
            assert!(r.starts_with("release:") || r.starts_with("table:"), "{r}");
        }
    }
    assert!(
        reads
            .iter()
            .any(|e| e["resources"] == json!(["release:2021-Q3", "table:gemeente-jaar"]))
    );
    assert!(reads.iter().all(|e| e["decision"]["mode"] == "aggregate"));
}

#[tokio::test]
async fn retention_keeps_the_tables_stable() {
    let data = DataDir::new().await;
    let mut rng = Rng::new(11);
    let (ids, before) = {
        let server = Server::start_on(data.clone(), phenomena_opts());
        let bodies: Vec<Value> = (0..40)
            .map(|i| plain_signal(&mut rng, 2022, 1 + (i % 12) as u8))
            .collect();
        let ids = submit_all(&server, &bodies).await;
        refer_all(&server, &ids, "riec", FEN).await;
        publish(&server, "2022-Q4");
        (
            ids,
            fetch_release(&Role::of(&server, "riec", "analist"), "2022-Q4").await,
        )
    };
    // Retention purges every signal (all are older than zero days).
    let server = Server::start_on(
        data.clone(),
        phenomena_opts()
            .env("KETENPOORT_RETENTION__SIGNAL_DAYS", 0)
            .env("KETENPOORT_RETENTION__INTERVAL_SECS", 1),
    );
    let zvhd = Role::of(&server, "zvhd", "ketenregisseur");
    let mut gone = false;
    for _ in 0..200 {
        let res = zvhd.read(&ids[ids.len() - 1], "drieluik").await;
        if res.status() == 404 {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(gone, "retention did not purge the signals");
    // A later release covers 2022 again: the same records, the same values.
    publish(&server, "2023-Q2");
    let after = fetch_release(&Role::of(&server, "riec", "analist"), "2023-Q2").await;
    let cells = |r: &Value| -> BTreeMap<(String, String, String), i64> {
        r["tables"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|t| {
                t["cells"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|c| c["period"].as_str().unwrap().starts_with("2022"))
                    .map(move |c| {
                        (
                            (
                                t["id"].to_string(),
                                c["period"].to_string(),
                                c["categories"].to_string(),
                            ),
                            c["value"].as_i64().unwrap(),
                        )
                    })
            })
            .collect()
    };
    let (b, a) = (cells(&before), cells(&after));
    assert!(b.values().any(|v| *v > 0));
    assert_eq!(b, a, "the 2022 cells changed after retention");
}

#[tokio::test]
async fn the_riec_demo_token_pulls_a_release_of_protected_tables() {
    let data = DataDir::new().await;
    let today = time::OffsetDateTime::now_utc().date();
    let (y, m) = (today.year(), today.month() as u8);
    let last_quarter = match (m - 1) / 3 + 1 {
        1 => format!("{}-Q4", y - 1),
        q => format!("{y}-Q{}", q - 1),
    };
    let release = {
        let server = Server::start_on(data.clone(), Opts::new());
        let riec = Role::of(&server, "riec", "analist");
        let page: Value = riec
            .get("/v1/phenomena/releases", FEN)
            .await
            .json()
            .await
            .unwrap();
        let ids: Vec<&str> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids,
            [last_quarter.as_str()],
            "the server publishes the last closed quarter"
        );
        let release = fetch_release(&riec, &last_quarter).await;
        let values: Vec<i64> = release["tables"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|t| {
                t["cells"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c["value"].as_i64().unwrap())
            })
            .collect();
        assert!(
            values.iter().filter(|v| **v >= 3).count() >= 10,
            "the demo tables hold counts"
        );
        assert!(values.iter().all(|v| *v == 0 || *v >= 3));
        assert!(
            server
                .logs_flushed()
                .await
                .contains("phenomenon release published")
        );
        release
    };
    // Again on the same data: nothing seeded twice, nothing recomputed.
    let server = Server::start_on(data.clone(), Opts::new());
    let riec = Role::of(&server, "riec", "analist");
    assert_eq!(fetch_release(&riec, &last_quarter).await, release);
    assert!(
        server
            .cli_ok(&["phenomena", "release"])
            .contains("already published")
    );
    // A monthly cadence publishes the last closed month.
    let server =
        Server::start(Opts::new().env("KETENPOORT_PHENOMENA__RELEASE_EVERY", "month")).await;
    let last_month = if m == 1 {
        format!("{}-12", y - 1)
    } else {
        format!("{y}-{:02}", m - 1)
    };
    let page: Value = Role::of(&server, "riec", "fg")
        .get("/v1/phenomena/releases", FEN)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"][0]["id"], last_month.as_str());
    fetch_release(&Role::of(&server, "riec", "fg"), &last_month).await;
}

#[tokio::test]
async fn consecutive_releases_agree_on_every_cell_they_share() {
    let server = Server::start(phenomena_opts()).await;
    let riec = Role::of(&server, "riec", "analist");
    let mut rng = Rng::new(0xa11c);
    let bodies: Vec<Value> = (0..40)
        .map(|i| plain_signal(&mut rng, 2021, 1 + (i % 6) as u8))
        .collect();
    let ids = submit_all(&server, &bodies).await;
    refer_all(&server, &ids, "riec", FEN).await;
    publish(&server, "2021-Q2");
    let before = fetch_release(&riec, "2021-Q2").await;
    // One new referral in a quiet quarter: it shows in no cell the next
    // release shares with this one (to-date cells of 2021 would have
    // shown it: there are none).
    let one = submit_all(&server, &[plain_signal(&mut rng, 2021, 8)]).await;
    refer_all(&server, &one, "riec", FEN).await;
    publish(&server, "2021-Q3");
    let after = fetch_release(&riec, "2021-Q3").await;
    assert_eq!(
        assert_shared_cells_agree(&before, &after),
        cell_values(&before).len(),
        "the next release shows every cell of this one"
    );
    let new: Vec<_> = cell_values(&after)
        .into_keys()
        .filter(|k| !cell_values(&before).contains_key(k))
        .collect();
    assert!(
        new.iter().all(|(_, period, _)| period == "2021-Q3"),
        "the only new cells are those of the quarter that closed: {:?}",
        new.iter().find(|(_, p, _)| p != "2021-Q3")
    );
    // Trend points shared by both are alike too.
    let points = |r: &Value| -> BTreeMap<String, Value> {
        r["trends"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|t| {
                t["points"].as_array().unwrap().iter().map(move |p| {
                    (
                        format!("{} {} {}", t["id"], p["period"], p["categories"]),
                        p.clone(),
                    )
                })
            })
            .collect()
    };
    let (pb, pa) = (points(&before), points(&after));
    assert!(!pb.is_empty());
    for (k, p) in &pb {
        assert_eq!(Some(p), pa.get(k), "{k}");
    }
}

/// How many of the RIEC's contributions were received in which month
/// (`yyyymm`) and count in which.
async fn counted_months(server: &Server) -> BTreeMap<(i64, i64), i64> {
    let mut conn = server.data().connect().await;
    let rows: Vec<(i64, i64, i64)> = sqlx::query_as(
        "SELECT year * 100 + month, counted_year * 100 + counted_month, count(*) \
         FROM phenomenon_contributions WHERE origin = 'referral' GROUP BY 1, 2",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    rows.into_iter().map(|(r, c, n)| ((r, c), n)).collect()
}

/// The published value of one cell of a release.
fn value(release: &Value, table: &str, period: &str, categories: &[&str]) -> i64 {
    cell_values(release)[&(
        table.to_owned(),
        period.to_owned(),
        json!(categories).to_string(),
    )]
}

#[tokio::test]
async fn a_late_referral_changes_no_published_cell_and_counts_in_the_first_open_period() {
    let server = Server::start(phenomena_opts()).await;
    let riec = Role::of(&server, "riec", "analist");
    let mut rng = Rng::new(0x1a7e);
    let early: Vec<Value> = (0..30)
        .map(|i| plain_signal(&mut rng, 2021, 1 + (i % 6) as u8))
        .collect();
    let ids = submit_all(&server, &early).await;
    refer_all(&server, &ids, "riec", FEN).await;
    publish(&server, "2021-Q2");
    let q2 = fetch_release(&riec, "2021-Q2").await;
    // Late: received in February (published), referred now; and one of
    // August (open), which counts where it was received.
    let late: Vec<Value> = (0..25).map(|_| plain_signal(&mut rng, 2021, 2)).collect();
    let mut ids = submit_all(&server, &late).await;
    ids.extend(submit_all(&server, &[plain_signal(&mut rng, 2021, 8)]).await);
    refer_all(&server, &ids, "riec", FEN).await;
    publish(&server, "2021-Q3");
    let q3 = fetch_release(&riec, "2021-Q3").await;
    assert_eq!(assert_shared_cells_agree(&q2, &q3), cell_values(&q2).len());
    let months = counted_months(&server).await;
    assert_eq!(months[&(202102, 202107)], 25, "{months:?}");
    assert_eq!(months[&(202108, 202108)], 1, "{months:?}");
    assert!(
        months
            .iter()
            .all(|((r, c), _)| r == c || (*r == 202102 && *c == 202107)),
        "{months:?}"
    );
    // 26 records in the third quarter: published within the deviation.
    let total = value(&q3, "vorm-kwartaal", "2021-Q3", &["totaal"]);
    assert!((23..=29).contains(&total), "{total}");

    // Into a published year: after the release that closes 2021, a signal
    // of May 2021 counts in January 2022.
    publish(&server, "2021-Q4");
    let q4 = fetch_release(&riec, "2021-Q4").await;
    let late: Vec<Value> = (0..20).map(|_| plain_signal(&mut rng, 2021, 5)).collect();
    let ids = submit_all(&server, &late).await;
    refer_all(&server, &ids, "riec", FEN).await;
    publish(&server, "2022-Q1");
    let next = fetch_release(&riec, "2022-Q1").await;
    assert!(assert_shared_cells_agree(&q4, &next) > 200);
    for earlier in [&q2, &q3] {
        assert!(assert_shared_cells_agree(earlier, &next) > 0);
    }
    assert_eq!(counted_months(&server).await[&(202105, 202201)], 20);
    let total = value(&next, "vorm-kwartaal", "2022-Q1", &["totaal"]);
    assert!((17..=23).contains(&total), "{total}");
    assert_eq!(
        value(&next, "vorm-jaar", "2021", &["totaal"]),
        value(&q4, "vorm-jaar", "2021", &["totaal"])
    );
}

#[tokio::test]
async fn a_release_made_while_referrals_commit_misses_none_and_changes_none() {
    let server = Server::start(phenomena_opts()).await;
    let riec = Role::of(&server, "riec", "analist");
    let mut rng = Rng::new(0xc0de);
    let bodies: Vec<Value> = (0..120)
        .map(|i| plain_signal(&mut rng, 2022, 4 + (i % 3) as u8))
        .collect();
    let ids = submit_all(&server, &bodies).await;
    // The release of the quarter these signals were received in is made
    // while they are referred: each is counted by it, or after it.
    let data = server.data().clone();
    let release = std::thread::spawn(move || {
        data.cli_with_env(
            &["phenomena", "release", "--period", "2022-Q2"],
            &PHENOMENA_ENV,
        )
    });
    refer_all(&server, &ids, "riec", FEN).await;
    let out = release.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let months = counted_months(&server).await;
    let in_q2: i64 = months
        .iter()
        .filter(|((r, c), _)| r == c)
        .map(|(_, n)| n)
        .sum();
    let moved: i64 = months
        .iter()
        .filter(|((r, c), _)| r != c)
        .inspect(|((_, c), _)| assert_eq!(*c, 202207))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(in_q2 + moved, 120, "{months:?}");
    publish(&server, "2022-Q3");
    let (q2, q3) = (
        fetch_release(&riec, "2022-Q2").await,
        fetch_release(&riec, "2022-Q3").await,
    );
    assert_eq!(assert_shared_cells_agree(&q2, &q3), cell_values(&q2).len());
    let total = |r: &Value, p| value(r, "vorm-kwartaal", p, &["totaal"]);
    assert!((total(&q2, "2022-Q2") - in_q2).abs() <= MAX_DEVIATION);
    assert!((total(&q3, "2022-Q3") - moved).abs() <= MAX_DEVIATION);
}

#[tokio::test]
async fn a_monthly_release_adds_nothing_until_a_quarter_closes() {
    let server =
        Server::start(phenomena_opts().env("KETENPOORT_PHENOMENA__RELEASE_EVERY", "month")).await;
    let riec = Role::of(&server, "riec", "analist");
    let mut rng = Rng::new(0x3011);
    let bodies: Vec<Value> = (0..36)
        .map(|i| plain_signal(&mut rng, 2021, 4 + (i % 6) as u8))
        .collect();
    let ids = submit_all(&server, &bodies).await;
    let monthly = [("KETENPOORT_PHENOMENA__RELEASE_EVERY", "month")];
    let release = |p: &str| {
        let env = [&PHENOMENA_ENV[..], &monthly].concat();
        let out = server
            .data()
            .cli_with_env(&["phenomena", "release", "--period", p], &env);
        assert!(
            out.status.success(),
            "{p}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    refer_all(&server, &ids[..24], "riec", FEN).await;
    release("2021-06");
    // Referrals between the monthly releases inside a quarter show in
    // none of them (those received in the quarter before count from July).
    refer_all(&server, &ids[24..30], "riec", FEN).await;
    release("2021-07");
    refer_all(&server, &ids[30..], "riec", FEN).await;
    release("2021-08");
    release("2021-09");
    let june = fetch_release(&riec, "2021-06").await;
    for id in ["2021-07", "2021-08"] {
        let r = fetch_release(&riec, id).await;
        assert_eq!(r["tables"], june["tables"], "{id}");
        assert_eq!(r["trends"], june["trends"], "{id}");
    }
    let september = fetch_release(&riec, "2021-09").await;
    assert_shared_cells_agree(&june, &september);
    assert!(
        cell_values(&september)
            .keys()
            .any(|(_, p, _)| p == "2021-Q3")
    );
    assert!(
        !cell_values(&june)
            .keys()
            .any(|(_, p, _)| p.starts_with("2021-Q3") || p == "2021")
    );
}

#[tokio::test]
async fn the_cli_refuses_periods_a_release_may_not_have() {
    let data = DataDir::new().await;
    // Without the perturbation secret nothing is published (no new secret
    // is made up: the cells would not match earlier releases).
    assert!(refused(&data, Some("2020-Q1"), &[]).contains("phenomena.key"));
    // The server publishes the last closed quarter at start.
    let server = Server::start_on(data.clone(), Opts::new());
    let today = time::OffsetDateTime::now_utc().date();
    let (y, m) = (today.year(), today.month() as u8);
    let q = (m - 1) / 3 + 1;
    let current = format!("{y}-Q{q}");
    let (last, before) = match q {
        1 => (format!("{}-Q4", y - 1), format!("{}-Q3", y - 1)),
        2 => (format!("{y}-Q1"), format!("{}-Q4", y - 1)),
        q => (format!("{y}-Q{}", q - 1), format!("{y}-Q{}", q - 2)),
    };
    let last_month = if m == 1 {
        format!("{}-12", y - 1)
    } else {
        format!("{y}-{:02}", m - 1)
    };
    let this_month = format!("{y}-{m:02}");
    assert!(refused(&data, Some(&current), &[]).contains("not ended"));
    assert!(refused(&data, Some(&before), &[]).contains("newest release"));
    assert!(refused(&data, Some("2020-Q1"), &[]).contains("newest release"));
    assert!(refused(&data, Some(&last_month), &[]).contains("release_every"));
    for bad in ["2026-08-01", "2026-Q5", "Q3"] {
        assert!(refused(&data, Some(bad), &[]).contains("--period"), "{bad}");
    }
    // The last closed quarter itself is there already: not an error.
    assert!(
        server
            .cli_ok(&["phenomena", "release", "--period", &last])
            .contains("already published")
    );
    // Monthly: a quarter is refused, and so is this month; the last closed
    // month holds the cells of the last closed quarter, nothing newer.
    let monthly = [("KETENPOORT_PHENOMENA__RELEASE_EVERY", "month")];
    assert!(refused(&data, Some(&last), &monthly).contains("release_every"));
    assert!(refused(&data, Some(&this_month), &monthly).contains("not ended"));
    let out = data.cli_with_env(
        &["phenomena", "release"],
        &[&PHENOMENA_ENV[..], &monthly].concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let riec = Role::of(&server, "riec", "analist");
    let (a, b) = (
        fetch_release(&riec, &last).await,
        fetch_release(&riec, &last_month).await,
    );
    assert_eq!(a["tables"], b["tables"]);
}

// ---------------------------------------------------------------------------
// Formats: JSON, CSV and JSON-stat 2.0 of the same stored release.

/// The cells of a release's JSON, by (table, period, categories); trend
/// points under their value, previous value and change.
fn json_cells(release: &Value) -> BTreeMap<(String, String, Vec<String>), Vec<i64>> {
    let mut out = BTreeMap::new();
    for t in release["tables"].as_array().unwrap() {
        for c in t["cells"].as_array().unwrap() {
            let key = (
                t["id"].as_str().unwrap().to_owned(),
                c["period"].as_str().unwrap().to_owned(),
                strings(&c["categories"]).collect(),
            );
            out.insert(key, vec![c["value"].as_i64().unwrap()]);
        }
    }
    for t in release["trends"].as_array().unwrap() {
        for p in t["points"].as_array().unwrap() {
            let key = (
                t["id"].as_str().unwrap().to_owned(),
                p["period"].as_str().unwrap().to_owned(),
                strings(&p["categories"]).collect(),
            );
            let v = |k: &str| p[k].as_i64().unwrap();
            out.insert(key, vec![v("value"), v("previousValue"), v("change")]);
        }
    }
    out
}

/// The dimensions of each table of a release's JSON (a trend: its
/// table's).
fn json_dimensions(release: &Value) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = release["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["id"].as_str().unwrap().to_owned(),
                strings(&t["dimensions"]).collect(),
            )
        })
        .collect();
    for t in release["trends"].as_array().unwrap() {
        let dims = out[t["table"].as_str().unwrap()].clone();
        out.insert(t["id"].as_str().unwrap().to_owned(), dims);
    }
    out
}

/// The same cells read from the CSV: `;`-separated, UTF-8 with a BOM, a
/// header row and one row per cell or trend point.
fn csv_cells(
    body: &[u8],
    release: &str,
    dimensions: &BTreeMap<String, Vec<String>>,
) -> BTreeMap<(String, String, Vec<String>), Vec<i64>> {
    assert!(body.starts_with(b"\xEF\xBB\xBF"), "a byte order mark");
    let text = std::str::from_utf8(body).expect("UTF-8");
    assert!(
        text.contains("\r\n") && !text.contains(','),
        "CRLF, no commas"
    );
    let mut reader = csv::ReaderBuilder::new().delimiter(b';').from_reader(body);
    let headers: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        headers,
        [
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
            "change"
        ]
    );
    let mut out = BTreeMap::new();
    for row in reader.records() {
        let row = row.expect("a CSV record");
        let col = |name: &str| row[headers.iter().position(|h| h == name).unwrap()].to_owned();
        assert_eq!(col("release"), release);
        let table = col("table");
        let categories: Vec<String> = dimensions[&table].iter().map(|d| col(d)).collect();
        assert!(categories.iter().all(|c| !c.is_empty()), "{row:?}");
        let mut values = vec![col("value").parse().unwrap()];
        if !col("previousPeriod").is_empty() {
            values.push(col("previousValue").parse().unwrap());
            values.push(col("change").parse().unwrap());
        }
        let fresh = out.insert((table, col("period"), categories), values);
        assert!(fresh.is_none(), "one row per cell: {row:?}");
    }
    out
}

/// The same cells read from JSON-stat datasets: each value at the position
/// its categories give (row-major over `id`, `size`).
fn json_stat_cells(datasets: &[&Value]) -> BTreeMap<(String, String, Vec<String>), Vec<i64>> {
    let mut out = BTreeMap::new();
    for ds in datasets {
        let label = ds["label"].as_str().unwrap();
        let table = label.split(' ').next().unwrap().to_owned();
        let ids: Vec<String> = strings(&ds["id"]).collect();
        let sizes: Vec<usize> = ds["size"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap() as usize)
            .collect();
        let index: Vec<Vec<String>> = ids
            .iter()
            .map(|d| strings(&ds["dimension"][d]["category"]["index"]).collect())
            .collect();
        assert_eq!(
            index.iter().map(Vec::len).collect::<Vec<_>>(),
            sizes,
            "{label}"
        );
        let values = ds["value"].as_array().unwrap();
        assert_eq!(values.len(), sizes.iter().product::<usize>(), "{label}");
        let measured = ids.last().is_some_and(|d| d == "measure");
        for (at, v) in values.iter().enumerate() {
            let Some(v) = v.as_i64() else { continue };
            let mut rest = at;
            let mut coords = vec![String::new(); ids.len()];
            for i in (0..ids.len()).rev() {
                coords[i] = index[i][rest % sizes[i]].clone();
                rest /= sizes[i];
            }
            let measure = measured.then(|| coords.pop().unwrap());
            let period = coords.remove(0);
            let slot = out
                .entry((table.clone(), period, coords))
                .or_insert_with(Vec::new);
            match measure.as_deref() {
                None | Some("value") => slot.insert(0, v),
                Some(_) => slot.push(v),
            }
        }
    }
    out
}

fn json_stat_validator() -> jsonschema::Validator {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/json-stat-2.0.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::validator_for(&schema).expect("the JSON-stat schema compiles")
}

fn assert_json_stat(validator: &jsonschema::Validator, doc: &Value) {
    let errors: Vec<String> = validator.iter_errors(doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "not JSON-stat 2.0: {errors:?}");
}

#[tokio::test]
async fn releases_come_as_csv_and_json_stat_with_the_same_cells() {
    let server = Server::start(Opts::new()).await;
    let validator = json_stat_validator();
    // The RIEC (its answers pass the egress guard) and a member (whose
    // answers carry a receipt).
    let riec = Role::of(&server, "riec", "analist");
    let member = Role::of(&server, "zvhd", "ketenregisseur");
    let page = ok_json(riec.get("/v1/phenomena/releases", FEN).await, 200).await;
    let id = page["items"][0]["id"]
        .as_str()
        .expect("the demo's release")
        .to_owned();
    let path = format!("/v1/phenomena/releases/{id}");
    let as_type = async |role: &Role<'_>, path: &str, accept: Option<&str>| {
        let rb = role.request(reqwest::Method::GET, path, FEN);
        send(match accept {
            Some(a) => rb.header("accept", a),
            None => rb,
        })
        .await
    };

    // JSON stays the default.
    let json = fetch_release(&riec, &id).await;
    for accept in [
        "*/*",
        "application/*",
        "application/json",
        "text/html;q=0.5, */*;q=0.1",
    ] {
        let res = as_type(&riec, &path, Some(accept)).await;
        assert!(
            content_type(&res).starts_with("application/json"),
            "{accept}"
        );
        assert_eq!(ok_json(res, 200).await, json, "{accept}");
    }
    let cells = json_cells(&json);
    let dimensions = json_dimensions(&json);
    assert!(
        cells.values().filter(|v| v[0] >= 3).count() >= 10,
        "the demo has counts"
    );

    // CSV: every cell and trend point, each with its value.
    let res = as_type(&riec, &path, Some("text/csv")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        content_type(&res),
        "text/csv; charset=utf-8; header=present"
    );
    assert_eq!(header(&res, "vary").as_deref(), Some("accept"));
    let body = res.bytes().await.unwrap();
    assert_eq!(csv_cells(&body, &id, &dimensions), cells);

    // JSON-stat 2.0: a collection of one dataset per table and trend.
    let res = as_type(&riec, &path, Some("application/json-stat+json")).await;
    assert_eq!(content_type(&res), "application/json-stat+json");
    let doc = ok_json(res, 200).await;
    assert_json_stat(&validator, &doc);
    assert_eq!(doc["class"], "collection");
    let items: Vec<&Value> = doc["link"]["item"].as_array().unwrap().iter().collect();
    assert_eq!(items.len(), dimensions.len());
    assert_eq!(json_stat_cells(&items), cells);

    // One table, in each format: the same cells again.
    let table_path = format!("{path}/tables/vorm-sector-jaar");
    let one = ok_json(as_type(&riec, &table_path, None).await, 200).await;
    let one_cells = json_cells(&one);
    assert!(!one_cells.is_empty());
    assert!(one_cells.iter().all(|(k, v)| cells[k] == *v));
    let res = as_type(&riec, &table_path, Some("text/csv")).await;
    let body = res.bytes().await.unwrap();
    assert_eq!(csv_cells(&body, &id, &dimensions), one_cells);
    let res = as_type(&riec, &table_path, Some("application/json-stat+json")).await;
    let ds = ok_json(res, 200).await;
    assert_json_stat(&validator, &ds);
    assert_eq!(
        (&ds["class"], &ds["version"]),
        (&json!("dataset"), &json!("2.0"))
    );
    assert_eq!(ds["id"], json!(["period", "form", "sector"]));
    assert_eq!(json_stat_cells(&[&ds]), one_cells);
    let trend_path = format!("{path}/tables/vorm-kwartaal-op-kwartaal");
    let res = as_type(&riec, &trend_path, Some("application/json-stat+json")).await;
    let ds = ok_json(res, 200).await;
    assert_json_stat(&validator, &ds);
    let trend_cells = json_cells(&ok_json(as_type(&riec, &trend_path, None).await, 200).await);
    assert!(!trend_cells.is_empty());
    assert_eq!(json_stat_cells(&[&ds]), trend_cells);
    let missing = as_type(
        &riec,
        &format!("{path}/tables/geen-tabel"),
        Some("text/csv"),
    )
    .await;
    problem(missing, 404, None).await;

    // Every format is logged alike: the same action, resources and
    // decision, a receipt for a member.
    let mut logged = Vec::new();
    for accept in [None, Some("text/csv"), Some("application/json-stat+json")] {
        let res = as_type(&member, &table_path, accept).await;
        assert_eq!(res.status(), 200, "{accept:?}");
        receipt(&res);
        let mut e = entry_of(&server, &request_id(&res)).await;
        for k in ["index", "time", "requestId", "traceId"] {
            e[k] = Value::Null;
        }
        logged.push(e);
    }
    assert_eq!(logged[0]["action"], "release-aggregate");
    assert_eq!(
        logged[0]["resources"],
        json!([format!("release:{id}"), "table:vorm-sector-jaar"])
    );
    assert!(logged.iter().all(|e| *e == logged[0]), "{logged:?}");

    // Anything else is 406, listing what is offered, and changes nothing.
    let before = server.data().row_counts().await;
    for accept in [
        "text/html",
        "application/xml, text/plain;q=0.5",
        "text/csv;q=0",
    ] {
        for p in [&path, &table_path] {
            let p = problem(as_type(&riec, p, Some(accept)).await, 406, None).await;
            let detail = p["detail"].as_str().unwrap();
            for offered in ["application/json", "text/csv", "application/json-stat+json"] {
                assert!(detail.contains(offered), "{detail}");
            }
        }
    }
    assert_eq!(
        server.data().row_counts().await,
        before,
        "a 406 logs nothing"
    );

    // The API description lists the three media types and the 406.
    let doc = openapi(&server).await;
    for route in [
        "/phenomena/releases/{id}",
        "/phenomena/releases/{id}/tables/{table}",
    ] {
        let responses = &doc["paths"][route]["get"]["responses"];
        let types: BTreeSet<&str> = responses["200"]["content"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            types,
            BTreeSet::from(["application/json", "text/csv", "application/json-stat+json"]),
            "{route}"
        );
        assert!(
            responses["406"]["content"]["application/problem+json"].is_object(),
            "{route}"
        );
    }
}
