//! Projection: a record cut down to exactly the fields a decision allows.
//! Whitelist only — a field the decision does not name, or a field with no
//! classification at all, never leaves. A [`Projection`] is made only under
//! a [`Granted`] decision and leaves the process only through a log
//! receipt ([`Projection::released`]): what a handler discloses of a record
//! cannot skip the disclosure log (invariant 2).

use serde_json::{Map, Value};

use crate::crypto::Pseudonymizer;
use crate::crypto::envelope::DataKey;
use crate::ledger::Receipt;
use crate::policy::Granted;
use crate::signals::ENVELOPE;

/// What a recipient may receive of a record, not yet released: no
/// `Serialize`, no access to the value but through a receipt.
#[derive(Debug)]
pub struct Projection(Value);

/// The record (envelope and body) as the granted decision allows it.
pub fn project(record: &Value, granted: &Granted) -> Projection {
    Projection(cut(record, &granted.fields))
}

impl Projection {
    /// The value, once its disclosure is in the log.
    pub fn released(self, _logged: &Receipt) -> Value {
        self.0
    }

    /// Pseudonyms of the persons of `body` this projection says anything
    /// about (see [`crate::signals::subjects`]).
    pub fn subjects(&self, body: &Value, pseudonyms: &Pseudonymizer) -> Vec<String> {
        crate::signals::subjects(body, &self.0, pseudonyms)
    }

    /// The projection sealed under `key` (a recipient's inbox copy at rest).
    pub fn sealed(&self, key: &DataKey, aad: &[u8]) -> Vec<u8> {
        key.seal(aad, &serde_json::to_vec(&self.0).expect("json"))
    }
}

/// The record as `fields` (dotted paths; `victims.name` applies to every
/// victim) allow it, plus the non-personal envelope. A list of persons none
/// of whose fields is allowed is left out entirely.
fn cut(record: &Value, fields: &[String]) -> Value {
    let Some(obj) = record.as_object() else {
        return Value::Object(Map::new());
    };
    let mut out = Map::new();
    for key in ENVELOPE {
        if let Some(v) = obj.get(key) {
            out.insert(key.to_owned(), v.clone());
        }
    }
    for field in fields {
        match field.split_once('.') {
            None => {
                if let Some(v) = obj.get(field.as_str()) {
                    out.insert(field.clone(), v.clone());
                }
            }
            Some((list, sub)) => {
                let Some(items) = obj.get(list).and_then(Value::as_array) else {
                    continue;
                };
                let target = out
                    .entry(list.to_owned())
                    .or_insert_with(|| Value::Array(vec![Value::Object(Map::new()); items.len()]));
                let Some(slots) = target.as_array_mut() else {
                    continue;
                };
                for (item, slot) in items.iter().zip(slots.iter_mut()) {
                    if let (Some(v), Some(slot)) = (item.get(sub), slot.as_object_mut()) {
                        slot.insert(sub.to_owned(), v.clone());
                    }
                }
            }
        }
    }
    Value::Object(out)
}

/// [`cut`] for the tests of other modules: projections by field list.
#[cfg(test)]
pub(crate) fn cut_for_tests(record: &Value, fields: &[String]) -> Value {
    cut(record, fields)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    const ALL_FIELDS: &[&str] = &[
        "municipality",
        "dateReceived",
        "forms",
        "sector",
        "locationType",
        "domesticSetting",
        "indicators",
        "urgency",
        "status",
        "narrative",
        "underminingComponent",
        "assessmentNotes",
        "victims.name",
        "victims.bsn",
        "victims.dateOfBirth",
        "victims.nationality",
        "victims.gender",
        "victims.address",
        "victims.phone",
        "victims.email",
        "victims.minor",
        "victims.labourMigrant",
        "victims.mildIntellectualDisability",
        "victims.careNeeds",
        "suspects.name",
        "suspects.bsn",
        "suspects.companyName",
        "suspects.kvkNumber",
        "suspects.allegedConduct",
        "suspects.phone",
    ];

    fn record(victims: usize, suspects: usize) -> Value {
        let person = |i: usize, kind: &str| {
            json!({"name": format!("{kind}{i}"), "bsn": "111222333", "dateOfBirth": "2000-01-01", "nationality": "NL",
                   "gender": "vrouw", "address": {"street": "S", "postcode": "9401 AA"}, "phone": "0612345678",
                   "email": "a@b.nl", "minor": false, "labourMigrant": true, "mildIntellectualDisability": false,
                   "careNeeds": "x", "companyName": "BV", "kvkNumber": "12345678", "allegedConduct": "y"})
        };
        json!({
            "id": "0193", "schemaVersion": 1, "reporter": "assen", "createdAt": "2026-01-01T00:00:00Z",
            "status": "nieuw", "municipality": "assen", "dateReceived": "2026-01-01", "forms": ["arbeid"],
            "sector": "bouw", "locationType": "woning", "domesticSetting": false, "indicators": ["A-1"],
            "urgency": "hoog", "narrative": "vrije tekst", "unclassified": "never",
            "victims": (0..victims).map(|i| person(i, "v")).collect::<Vec<_>>(),
            "suspects": (0..suspects).map(|i| person(i, "s")).collect::<Vec<_>>(),
        })
    }

    /// Every path in a projected value, in the dotted form decisions use.
    fn paths(v: &Value) -> Vec<String> {
        let mut out = Vec::new();
        for (k, val) in v.as_object().unwrap() {
            match val.as_array() {
                // A list of persons: its elements' keys. An empty list is
                // `<list>.*`: some field of the list must be allowed.
                Some(items)
                    if items.iter().all(Value::is_object) && k != "forms" && k != "indicators" =>
                {
                    if items.is_empty() {
                        out.push(format!("{k}.*"));
                    }
                    for item in items {
                        for sub in item.as_object().unwrap().keys() {
                            out.push(format!("{k}.{sub}"));
                        }
                    }
                }
                _ => out.push(k.clone()),
            }
        }
        out
    }

    #[test]
    fn care_partner_projection() {
        let fields: Vec<String> = ["forms", "victims.name", "victims.careNeeds"]
            .map(String::from)
            .to_vec();
        let p = cut(&record(2, 1), &fields);
        assert_eq!(
            p["victims"],
            json!([{"name": "v0", "careNeeds": "x"}, {"name": "v1", "careNeeds": "x"}])
        );
        assert!(
            p.get("suspects").is_none(),
            "no suspect field allowed: the list is left out"
        );
        assert!(p.get("narrative").is_none() && p.get("unclassified").is_none());
        assert_eq!(p["id"], json!("0193"));
    }

    proptest! {
        /// For random records and random decisions, the projection never
        /// contains a field the decision did not allow.
        #[test]
        fn never_more_than_allowed(
            victims in 0usize..4,
            suspects in 0usize..4,
            mask in proptest::collection::vec(any::<bool>(), ALL_FIELDS.len()),
        ) {
            let allowed: Vec<String> = ALL_FIELDS.iter().zip(&mask).filter(|(_, m)| **m).map(|(f, _)| f.to_string()).collect();
            let p = cut(&record(victims, suspects), &allowed);
            for path in paths(&p) {
                let ok = match path.strip_suffix(".*") {
                    Some(list) => allowed.iter().any(|a| a.starts_with(&format!("{list}."))),
                    None => allowed.contains(&path) || ENVELOPE.contains(&path.as_str()),
                };
                prop_assert!(ok, "{path} disclosed but not allowed");
            }
        }
    }
}
