//! The egress guard's scanner: what in a response body looks like personal
//! data, and which values in it to look up among the stored ones.
//!
//! A JSON body is scanned value by value — every key, string and number, and
//! a string that is itself JSON once more, decoded — so escapes, nesting and
//! numbers-for-strings hide nothing; any other body as text. In each text:
//!
//! - **patterns**: a 9-digit number passing the 11-proef (BSN), also spaced
//!   or dotted; an e-mail address; a phone number (Dutch national, `+31`,
//!   `0031`, or any `+`/`00` international); an IBAN (country length and
//!   mod-97); a Dutch postcode with a house number, or a postcode on its
//!   own as a whole value; a `ps1:` pseudonym; a calendar date as a date of
//!   birth or of receipt would be written (`1998-04-12`, `12-04-1998`,
//!   `12/4/1998`, `12.04.1998`, `12 april 1998`, `April 12, 1998`).
//!   **Not** dates: a date with a time of day (`2026-11-28T18:00:00.123Z`,
//!   the timestamps of log entries and releases), periods (`2026`,
//!   `2026-Q3`, `2026-08`), and eight digits without separators (log
//!   indices reach that size);
//! - **opaque tokens** (16+ characters of the base64/hex alphabet with a
//!   letter and a digit: hashes, ids, signatures) are matched whole — as an
//!   id, a pseudonym or an IBAN — and not searched for BSNs, phone numbers
//!   or postcodes inside, so a hash never trips a number pattern by chance
//!   (e-mail addresses, pseudonyms and dates are looked for everywhere:
//!   their separators make a chance match in a hash negligible);
//! - **candidates** for the stored-value lookup: every run of up to eight
//!   words (spaced and joined), every digit sequence of BSN or phone length,
//!   every UUID and every opaque token.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use super::fingerprint::{self, Known};
use crate::identifiers::is_valid_bsn;

/// What the guard found: a reason code, never the value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finding {
    Bsn,
    Email,
    Phone,
    Iban,
    Postcode,
    Date,
    Pseudonym,
    /// A value stored with a signal (or a signal, referral or inbox id).
    Known,
    /// The body could not be inspected (too large).
    Unreadable,
}

impl Finding {
    pub fn code(self) -> &'static str {
        match self {
            Finding::Bsn => "bsn",
            Finding::Email => "email",
            Finding::Phone => "phone",
            Finding::Iban => "iban",
            Finding::Postcode => "postcode",
            Finding::Date => "date",
            Finding::Pseudonym => "pseudonym",
            Finding::Known => "known-value",
            Finding::Unreadable => "unreadable",
        }
    }
}

/// The result of scanning: the first pattern found, and the candidates.
#[derive(Debug, Default)]
pub struct Scan {
    pub finding: Option<Finding>,
    pub candidates: BTreeSet<Known>,
}

impl Scan {
    fn found(&mut self, f: Finding) {
        self.finding.get_or_insert(f);
    }
}

/// Words of a name are looked up in runs of at most this many.
const MAX_WORDS: usize = 8;
/// How deep JSON inside JSON strings is decoded.
const MAX_DEPTH: usize = 4;

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)[a-z0-9._%+\-]+@[a-z0-9\-]+(?:\.[a-z0-9\-]+)*\.[a-z]{2,}").expect("regex")
});
static AROUND_AT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"[^\s"'<>()\[\]{},;:]+@[^\s"'<>()\[\]{},;:]+"#).expect("regex"));
static PSEUDONYM: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)ps1:[a-z0-9_\-]{16,}").expect("regex"));
static TOKEN: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"[A-Za-z0-9+/=_\-]+").expect("regex"));
static DIGITS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\+?[0-9](?:[ .\-/()]{0,2}[0-9])*").expect("regex"));
static NUMERIC_DATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"([0-9]{1,4})[\-/.]([0-9]{1,2})[\-/.]([0-9]{1,4})").expect("regex")
});
static TIME_OF_DAY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}").expect("regex"));
const MONTHS: &str = "januari|februari|maart|april|mei|juni|juli|augustus|september|oktober|november|december|\
     january|february|march|may|june|july|august|october|jan|feb|mrt|mar|apr|jun|jul|aug|sept|sep|okt|oct|nov|dec";
static DAY_MONTH_YEAR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"(?i)\b([0-9]{{1,2}})\.?\s+({MONTHS})\.?,?\s+([0-9]{{4}})\b"
    ))
    .expect("regex")
});
static MONTH_DAY_YEAR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"(?i)\b({MONTHS})\.?\s+([0-9]{{1,2}}),?\s+([0-9]{{4}})\b"
    ))
    .expect("regex")
});
static POSTCODE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)([1-9][0-9]{3}) ?([a-z]{2})").expect("regex"));
static HOUSE_AFTER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[ ,]+[0-9]{1,5}").expect("regex"));
static HOUSE_BEFORE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[0-9]{1,5}[a-zA-Z]?[ ,]+$").expect("regex"));
static IBAN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)[a-z]{2}[0-9]{2}(?: ?[a-z0-9]){11,30}").expect("regex"));

/// Scans a response body.
pub fn scan_body(body: &[u8]) -> Scan {
    let mut scan = Scan::default();
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => scan_value(&v, 0, &mut scan),
        Err(_) => scan_text(&String::from_utf8_lossy(body), &mut scan),
    }
    scan
}

/// Scans one more text (a header value) into `scan`.
pub fn scan_text(s: &str, scan: &mut Scan) {
    if EMAIL.is_match(s) {
        scan.found(Finding::Email);
    }
    if PSEUDONYM.is_match(s) {
        scan.found(Finding::Pseudonym);
    }
    for m in AROUND_AT.find_iter(s) {
        scan.candidates.insert(fingerprint::email(m.as_str()));
    }
    dates(s, scan);
    let masked = mask_opaque(s, scan);
    postcodes(&masked, scan);
    ibans(&masked, scan);
    numbers(&masked, scan);
    words(&masked, scan);
}

fn scan_value(v: &Value, depth: usize, scan: &mut Scan) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                scan_text(k, scan);
                scan_value(v, depth, scan);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| scan_value(v, depth, scan)),
        Value::String(s) => {
            scan_text(s, scan);
            // A postcode as a whole value (an address field) counts on its own.
            if POSTCODE
                .find(s.trim())
                .is_some_and(|m| m.len() == s.trim().len() && real_postcode(m.as_str()))
            {
                scan.found(Finding::Postcode);
            }
            let t = s.trim_start();
            if depth < MAX_DEPTH
                && (t.starts_with('{') || t.starts_with('[') || t.starts_with('"'))
                && let Ok(inner) = serde_json::from_str::<Value>(t)
            {
                scan_value(&inner, depth + 1, scan);
            }
        }
        Value::Number(n) => scan_text(&n.to_string(), scan),
        Value::Bool(_) | Value::Null => {}
    }
}

/// Whether a token is opaque: a hash, id, key or signature.
fn is_opaque(t: &str) -> bool {
    t.len() >= 16
        && t.bytes().any(|b| b.is_ascii_alphabetic())
        && t.bytes().any(|b| b.is_ascii_digit())
}

/// Matches opaque tokens whole and returns `s` with them blanked out.
fn mask_opaque(s: &str, scan: &mut Scan) -> String {
    let mut masked = String::with_capacity(s.len());
    let mut last = 0;
    for m in TOKEN.find_iter(s) {
        let t = m.as_str();
        if !is_opaque(t) {
            continue;
        }
        masked.push_str(&s[last..m.start()]);
        masked.push(' ');
        last = m.end();
        scan.candidates.extend(fingerprint::pseudonym(t));
        for part in t.split(['+', '/', '=', '_']) {
            scan.candidates.extend(fingerprint::id(part));
        }
        if is_iban(&t.to_ascii_uppercase()) {
            scan.found(Finding::Iban);
        }
    }
    masked.push_str(&s[last..]);
    masked
}

fn before(s: &str, at: usize) -> Option<char> {
    s[..at].chars().next_back()
}

fn after(s: &str, at: usize) -> Option<char> {
    s[at..].chars().next()
}

fn is_date(y: i32, m: u32, d: u32) -> bool {
    (1900..=2100).contains(&y)
        && u8::try_from(m)
            .ok()
            .and_then(|m| time::Month::try_from(m).ok())
            .zip(u8::try_from(d).ok())
            .is_some_and(|(m, d)| time::Date::from_calendar_date(y, m, d).is_ok())
}

fn month_number(name: &str) -> u32 {
    let n = name.to_lowercase();
    let starts = [
        "jan", "feb", "m", "ap", "m", "jun", "jul", "au", "sep", "o", "nov", "dec",
    ];
    match n.as_str() {
        "maart" | "mrt" | "march" | "mar" => 3,
        "mei" | "may" => 5,
        _ => starts
            .iter()
            .position(|p| n.starts_with(p))
            .map_or(0, |i| i as u32 + 1),
    }
}

fn dates(s: &str, scan: &mut Scan) {
    for c in NUMERIC_DATE.captures_iter(s) {
        let whole = c.get(0).expect("match");
        if before(s, whole.start()).is_some_and(|ch| ch.is_ascii_digit())
            || after(s, whole.end()).is_some_and(|ch| ch.is_ascii_digit())
        {
            continue;
        }
        let n = |i: usize| c[i].parse::<u32>().unwrap_or(0);
        let (a, b, d) = (&c[1], n(2), &c[3]);
        let date = if a.len() == 4 {
            // A date with a time of day is a timestamp, not a birth date.
            if TIME_OF_DAY.is_match(&s[whole.end()..]) {
                continue;
            }
            is_date(n(1) as i32, b, n(3))
        } else if d.len() == 4 {
            is_date(n(3) as i32, b, n(1))
        } else {
            false
        };
        if date {
            scan.found(Finding::Date);
        }
    }
    for c in DAY_MONTH_YEAR.captures_iter(s) {
        let (d, m, y) = (
            c[1].parse().unwrap_or(0),
            month_number(&c[2]),
            c[3].parse().unwrap_or(0),
        );
        if is_date(y, m, d) {
            scan.found(Finding::Date);
        }
    }
    for c in MONTH_DAY_YEAR.captures_iter(s) {
        let (m, d, y) = (
            month_number(&c[1]),
            c[2].parse().unwrap_or(0),
            c[3].parse().unwrap_or(0),
        );
        if is_date(y, m, d) {
            scan.found(Finding::Date);
        }
    }
}

fn real_postcode(p: &str) -> bool {
    let letters = p[p.len() - 2..].to_ascii_uppercase();
    !matches!(letters.as_str(), "SA" | "SD" | "SS")
}

fn postcodes(s: &str, scan: &mut Scan) {
    for m in POSTCODE.find_iter(s) {
        let bounded = !before(s, m.start()).is_some_and(|c| c.is_alphanumeric())
            && !after(s, m.end()).is_some_and(|c| c.is_alphanumeric());
        if bounded
            && real_postcode(m.as_str())
            && (HOUSE_AFTER.is_match(&s[m.end()..]) || HOUSE_BEFORE.is_match(&s[..m.start()]))
        {
            scan.found(Finding::Postcode);
        }
    }
}

/// Length of the IBAN of a country (the EU/EEA, the UK, Switzerland and the
/// countries labour migrants in Drenthe most often come from).
fn iban_length(country: &str) -> Option<usize> {
    Some(match country {
        "NO" => 15,
        "BE" => 16,
        "DK" | "FI" | "NL" => 18,
        "SI" => 19,
        "AT" | "EE" | "LT" | "LU" => 20,
        "CH" | "HR" | "LI" | "LV" => 21,
        "BG" | "DE" | "GB" | "IE" => 22,
        "AD" | "CZ" | "ES" | "MD" | "RO" | "SE" | "SK" => 24,
        "PT" => 25,
        "IS" | "TR" => 26,
        "FR" | "GR" | "IT" => 27,
        "CY" | "HU" | "PL" => 28,
        "UA" => 29,
        "MT" => 31,
        _ => return None,
    })
}

/// An uppercase IBAN without spaces, checked by length and mod-97.
fn is_iban(s: &str) -> bool {
    let Some(len) = s.get(..2).and_then(iban_length) else {
        return false;
    };
    if s.len() != len || !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    let rearranged = s[4..].bytes().chain(s[..4].bytes());
    let mut rem: u32 = 0;
    for b in rearranged {
        let v = if b.is_ascii_digit() {
            u32::from(b - b'0')
        } else {
            u32::from(b - b'A') + 10
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

fn ibans(s: &str, scan: &mut Scan) {
    for m in IBAN.find_iter(s) {
        if before(s, m.start()).is_some_and(|c| c.is_alphanumeric()) {
            continue;
        }
        let compact: String = m
            .as_str()
            .chars()
            .filter(|c| *c != ' ')
            .collect::<String>()
            .to_ascii_uppercase();
        let fits = compact
            .get(..2)
            .and_then(iban_length)
            .and_then(|len| compact.get(..len))
            .is_some_and(is_iban);
        if fits {
            scan.found(Finding::Iban);
        }
    }
}

/// BSNs and phone numbers: every run of digit groups (spaces, dots, dashes,
/// slashes and brackets between them), and every stretch of its groups.
fn numbers(s: &str, scan: &mut Scan) {
    for m in DIGITS.find_iter(s) {
        let run = m.as_str();
        let plus = run.starts_with('+');
        let groups: Vec<&str> = run
            .split(|c: char| !c.is_ascii_digit())
            .filter(|g| !g.is_empty())
            .collect();
        for i in 0..groups.len() {
            let mut digits = String::new();
            for g in &groups[i..] {
                digits.push_str(g);
                if digits.len() > 17 {
                    break;
                }
                number(&digits, plus && i == 0, scan);
            }
        }
    }
}

fn number(d: &str, plus: bool, scan: &mut Scan) {
    if d.len() == 9 && is_valid_bsn(d) {
        scan.found(Finding::Bsn);
    }
    scan.candidates.extend(fingerprint::bsn(d));
    let dutch_national = d.len() == 10 && d.starts_with('0') && !d.starts_with("00");
    let international = (plus && (8..=15).contains(&d.len()))
        || (d.starts_with("00") && !d.starts_with("000") && (11..=17).contains(&d.len()));
    if dutch_national || international {
        scan.found(Finding::Phone);
    }
    if d.len() >= 10 {
        scan.candidates.extend(fingerprint::phone(d, plus));
    }
}

/// Runs of words, for the stored names.
fn words(s: &str, scan: &mut Scan) {
    let normal = crate::crypto::normalise_name(s);
    let words: Vec<&str> = normal.split(' ').filter(|w| !w.is_empty()).collect();
    for i in 0..words.len() {
        for j in i + 1..=(i + MAX_WORDS).min(words.len()) {
            scan.candidates
                .extend(fingerprint::names(&words[i..j].join(" ")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(body: &str) -> Option<Finding> {
        scan_body(body.as_bytes()).finding
    }

    fn candidates(body: &str) -> BTreeSet<Known> {
        scan_body(body.as_bytes()).candidates
    }

    /// Every way of carrying one value in a JSON body.
    fn positions(v: &str) -> Vec<String> {
        let s = serde_json::to_string(v).unwrap();
        let escaped = serde_json::to_string(&format!("{{\"x\":{s}}}")).unwrap();
        let unicode: String = v.chars().map(|c| format!("\\u{:04x}", c as u32)).collect();
        vec![
            v.to_owned(),
            format!("{{\"a\":{s}}}"),
            format!("{{{s}:1}}"),
            format!("{{\"a\":{{\"b\":[1,{{\"c\":[{s}]}}]}}}}"),
            format!("[{s}]"),
            format!("{{\"nested\":{escaped}}}"),
            format!("{{\"u\":\"{unicode}\"}}"),
            format!("{{\"t\":\"zie {} ook\"}}", v.replace('"', "")),
            format!("text/plain before {v} after"),
        ]
    }

    #[test]
    fn a_bsn_is_found_everywhere_also_as_a_number() {
        for b in positions("123456782") {
            assert_eq!(finding(&b), Some(Finding::Bsn), "{b}");
        }
        for b in [
            "{\"n\":123456782}",
            "[999999990]",
            "{\"x\":\"123 456 782\"}",
            "{\"x\":\"1234.56.782\"}",
        ] {
            assert_eq!(finding(b), Some(Finding::Bsn), "{b}");
        }
        // Nine digits failing the 11-proef are no BSN; an index is no BSN.
        assert_eq!(finding("{\"index\":123456789,\"treeSize\":12345678}"), None);
    }

    #[test]
    fn e_mail_phone_iban_postcode_pseudonym_everywhere() {
        for (v, f) in [
            ("jan.devries@example.org", Finding::Email),
            ("JAN.DEVRIES@EXAMPLE.ORG", Finding::Email),
            ("+31 6 1234 5678", Finding::Phone),
            ("06-12345678", Finding::Phone),
            ("0031612345678", Finding::Phone),
            ("+44 20 7946 0958", Finding::Phone),
            ("NL91 ABNA 0417 1643 00", Finding::Iban),
            ("nl91abna0417164300", Finding::Iban),
            ("DE89370400440532013000", Finding::Iban),
            ("Voorbeeldweg 12, 7811 AA Emmen", Finding::Postcode),
            ("7811 aa 12", Finding::Postcode),
            (
                "ps1:9hAzXq0lO3d1K2J5m8QnR7sT4uV6wY0zAbCdEfGhIjK",
                Finding::Pseudonym,
            ),
        ] {
            for b in positions(v) {
                assert_eq!(finding(&b), Some(f), "{v} in {b}");
            }
        }
        assert_eq!(
            finding("{\"postcode\":\"7811AA\"}"),
            Some(Finding::Postcode)
        );
        // Wrong check digits: no IBAN.
        assert_eq!(finding("{\"x\":\"NL92ABNA0417164300\"}"), None);
    }

    #[test]
    fn dates_as_written_are_found_timestamps_and_periods_pass() {
        for v in [
            "1998-04-12",
            "12-04-1998",
            "12/4/1998",
            "12.04.1998",
            "1998/04/12",
            "12 april 1998",
            "12 APR. 1998",
            "April 12, 1998",
            "geb.12-04-1998",
            "/v1/x/1998-04-12/y123",
        ] {
            for b in positions(v) {
                assert_eq!(finding(&b), Some(Finding::Date), "{v} in {b}");
            }
        }
        for ok in [
            "{\"time\":\"2026-11-28T18:00:00.123Z\",\"createdAt\":\"2026-10-01T00:00:05+02:00\"}",
            "{\"id\":\"2026-Q3\",\"from\":\"2025-Q1\",\"period\":\"2026\",\"month\":\"2026-08\"}",
            "{\"version\":\"1.0.0\",\"ip\":\"127.0.0.1\",\"index\":20250101}",
            "{\"x\":\"2026-02-30\"}",
        ] {
            assert_eq!(finding(ok), None, "{ok}");
        }
    }

    #[test]
    fn legitimate_riec_bodies_pass() {
        let entry = r#"{"treeSize":12,"entries":[{"index":3,"leafHash":"q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJ0123=",
            "leaf":"eyJ2IjoxLCJpbmRleCI6M30=","entry":{"v":1,"index":3,"time":"2026-11-28T18:00:00.123Z",
            "requestId":"0193a4e2-7c1d-7a00-8000-1234567890ab","traceId":"4bf92f3577b34da6a3ce929d0e0e4736",
            "actor":{"partner":"riec","role":"analist","user":"demo"},"recipient":"riec","action":"release-aggregate",
            "purpose":"fenomeenanalyse","legalBasis":"Geen verwerking van persoonsgegevens over de convenantsgrens",
            "resources":["release:2026-Q3"],"subjects":[],"fields":[],"decision":{"mode":"aggregate",
            "reasons":["grant:fenomeen-aggregaat"]},"policyRevision":"sha256:220a7f946db2d735111433a4ac21dbdb12bb2c02f8e2fd62ba5f801957f098ad",
            "outcome":"disclosed"}}]}"#;
        assert_eq!(finding(entry), None);
        let release = r#"{"id":"2026-Q3","from":"2025-Q1","createdAt":"2026-10-01T00:00:05.123Z",
            "tables":[{"id":"vorm-sector-jaar","dimensions":["form","sector"],"period":"year",
            "cells":[{"period":"2026","categories":["arbeid","land-en-tuinbouw"],"value":12}]}]}"#;
        assert_eq!(finding(release), None);
        let checkpoint = "host/ketenpoort/log\n1234\nq83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJ0123=\n\n\
                          — host/ketenpoort/log Az3f9Q0123abcdefABCDEF0123456789abcdefABCDEF0123456789abcdefABCDEF012345==\n";
        assert_eq!(finding(checkpoint), None);
        // Opaque tokens are never searched for numbers inside.
        assert_eq!(finding("{\"h\":\"AAAA123456782AAAA0612345678AA\"}"), None);
    }

    #[test]
    fn candidates_cover_names_in_every_form() {
        let want = Known::Name("jan de vries".into());
        let compact = Known::Name("jandevries".into());
        for v in [
            "Jan de Vries",
            "JAN  DE   VRIES",
            "jan-de-vries",
            "Ján de Vriës",
            "melding over Jan de Vries uit",
        ] {
            for b in positions(v) {
                let c = candidates(&b);
                assert!(c.contains(&want), "{v} in {b}");
            }
        }
        for b in positions("JanDeVries") {
            assert!(candidates(&b).contains(&compact), "{b}");
        }
        let c = candidates("{\"n\":12345672}");
        assert!(
            c.contains(&Known::Bsn("012345672".into())),
            "an 8-digit number as a BSN without its 0"
        );
        let c = candidates("{\"p\":\"31612345678\"}");
        assert!(c.contains(&Known::Phone("0612345678".into())));
        let id = "0193a4e2-7c1d-7a00-8000-1234567890ab";
        for form in [
            id.to_owned(),
            id.to_uppercase(),
            id.replace('-', ""),
            format!("signal:{id}"),
        ] {
            for b in positions(&form) {
                assert!(candidates(&b).contains(&Known::Id(id.into())), "{b}");
            }
        }
        assert!(
            candidates("{\"x\":\"Jan@Example.org\"}")
                .contains(&Known::Email("jan@example.org".into()))
        );
    }
}
