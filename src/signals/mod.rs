//! Signals: validation against schema v1, the facts the policy sees, and
//! the data subjects the log pseudonymises. A record is kept as JSON (the
//! validated body plus what ketenpoort derives), encrypted at rest.

pub mod exchange;
mod validate;

use std::sync::Arc;

use serde_json::{Value, json};

use crate::crypto::envelope::{DataKey, Keyring};
use crate::crypto::{Pseudonymizer, SubjectId};
pub use crate::model::signal::Facts;
use crate::policy::model::{ReferralFact, SignalFacts};
pub use validate::validate;

pub const SCHEMA_VERSION: u32 = 1;

pub use crate::model::signal::{STATUS_NEW, STATUS_REFERRED};

/// Envelope keys set by ketenpoort on every record it returns: not personal,
/// always present in a projection.
pub const ENVELOPE: [&str; 4] = ["id", "schemaVersion", "reporter", "createdAt"];

impl Facts {
    /// Reads the plaintext facts out of a validated body.
    pub fn of(id: &str, reporter: &str, body: &Value, created_at: i64) -> Self {
        let s = |k: &str| {
            body.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        Self {
            id: id.to_owned(),
            reporter: reporter.to_owned(),
            municipality: s("municipality"),
            forms: body["forms"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f.as_str().map(str::to_owned))
                .collect(),
            date_received: s("dateReceived"),
            victim_minor: persons(body, "victims")
                .any(|v| v.get("minor") == Some(&Value::Bool(true))),
            domestic_setting: body.get("domesticSetting") == Some(&Value::Bool(true)),
            status: STATUS_NEW.to_owned(),
            created_at,
            version: 1,
            closing_reason: None,
        }
    }

    /// The facts of a new version of this signal, whose body is `body`:
    /// what the body says read anew, the rest (id, reporter, status, times)
    /// kept, the version one higher.
    pub fn revised(&self, body: &Value) -> Self {
        let read = Self::of(&self.id, &self.reporter, body, self.created_at);
        Self {
            status: self.status.clone(),
            version: self.version + 1,
            closing_reason: self.closing_reason.clone(),
            ..read
        }
    }

    /// The policy's view of this signal.
    pub fn for_policy(&self, referrals: Vec<ReferralFact>) -> SignalFacts {
        SignalFacts {
            reporter: self.reporter.clone(),
            municipality: self.municipality.clone(),
            forms: self.forms.clone(),
            victim_minor: self.victim_minor,
            domestic_setting: self.domestic_setting,
            referrals,
            status: self.status.clone(),
        }
    }

    /// The full record: the stored body under the envelope and status.
    pub fn record(&self, body: &Value) -> Value {
        let mut rec = body.clone();
        let created = time::OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(self.created_at) * 1_000_000,
        )
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        });
        let envelope = json!({
            "id": self.id,
            "schemaVersion": SCHEMA_VERSION,
            "reporter": self.reporter,
            "createdAt": created,
            "status": self.status,
        });
        if let (Some(r), Value::Object(env)) = (rec.as_object_mut(), envelope) {
            r.extend(env);
        }
        rec
    }
}

/// Fields only the ZVHD's assessment sets (purpose `drieluik`): the flag
/// "ondermijnende component" and the Drieluik's notes. A report, or a
/// reporter's correction, that names one is refused: the reporter does not
/// write the ZVHD's judgement.
pub const ASSESSED_ONLY: [&str; 2] = ["underminingComponent", "assessmentNotes"];

/// The assessment-only fields a report or a correction names (present,
/// even as `null`), as pointers without values.
pub fn assessed_only(body: &Value) -> Vec<crate::problem::FieldError> {
    ASSESSED_ONLY
        .iter()
        .filter(|f| body.get(**f).is_some())
        .map(|f| crate::problem::FieldError {
            pointer: format!("/{f}"),
            reason: "set by the ZVHD's assessment only".into(),
        })
        .collect()
}

/// A change of a signal's content: `patch`, a JSON Merge Patch (RFC 7396),
/// applied to `current` (a stored, validated body), and the result validated
/// as a new signal would be (the errors name pointers, never values). The
/// derived `minor` flags are taken off first and derived anew, so a patch
/// sees the body as it was submitted.
pub fn revise(current: &Value, patch: &Value) -> Result<Value, Vec<crate::problem::FieldError>> {
    let mut body = current.clone();
    for person in body
        .get_mut("victims")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if let Some(p) = person.as_object_mut() {
            p.remove("minor");
        }
    }
    json_patch::merge(&mut body, patch);
    validate(body)
}

fn persons<'a>(body: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    body.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// Pseudonyms of the victims and suspects that `disclosed` (a projection
/// of `body`, which keeps each person at its position) says anything about:
/// the log names whom a recipient received data about, not everyone in the
/// record. Each is identified from `body`, so a person has one pseudonym
/// however little of them a recipient gets.
pub fn subjects(body: &Value, disclosed: &Value, p: &Pseudonymizer) -> Vec<String> {
    let mut out: Vec<String> = ["victims", "suspects"]
        .into_iter()
        .flat_map(|k| persons(body, k).zip(persons(disclosed, k)))
        .filter(|(_, shown)| shown.as_object().is_some_and(|o| !o.is_empty()))
        .filter_map(|(person, _)| {
            let s = |k: &str| person.get(k).and_then(Value::as_str);
            p.pseudonym(&SubjectId {
                bsn: s("bsn"),
                name: s("name"),
                date_of_birth: s("dateOfBirth"),
            })
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Seals and opens signal bodies (and inbox copies) under per-signal data
/// keys wrapped by the keyring's KEK.
#[derive(Clone)]
pub struct Vault {
    keyring: Arc<Keyring>,
}

/// A freshly sealed signal: its body and its wrapped data key.
pub struct Sealed {
    pub body: Vec<u8>,
    pub kek_id: String,
    pub wrapped: Vec<u8>,
}

impl Vault {
    pub fn new(keyring: Keyring) -> Self {
        Self {
            keyring: Arc::new(keyring),
        }
    }

    /// Seals a new version of a signal's body under its existing data key.
    pub fn seal_with(key: &DataKey, id: &str, body: &Value) -> Vec<u8> {
        key.seal(id.as_bytes(), &serde_json::to_vec(body).expect("json"))
    }

    pub fn seal_new(&self, id: &str, body: &Value) -> Sealed {
        let key = DataKey::generate();
        let (kek_id, wrapped) = self.keyring.wrap(id, &key);
        let body = key.seal(id.as_bytes(), &serde_json::to_vec(body).expect("json"));
        Sealed {
            body,
            kek_id,
            wrapped,
        }
    }

    pub fn key(&self, s: &crate::store::signals::StoredSignal) -> anyhow::Result<DataKey> {
        self.keyring.unwrap(&s.kek_id, &s.facts.id, &s.wrapped)
    }

    /// Re-wraps every data key under the keyring's current KEK (after
    /// `Keyring::create_next`, or a new `KETENPOORT_KEK_<n>`); returns how
    /// many were re-wrapped.
    pub async fn rewrap_all(&self, db: &crate::store::Db) -> anyhow::Result<usize> {
        let mut n = 0;
        for (id, kek_id, wrapped) in db.signal_keys().await? {
            if kek_id == self.keyring.current() {
                continue;
            }
            let key = self.keyring.unwrap(&kek_id, &id, &wrapped)?;
            let (new_kek, new_wrapped) = self.keyring.wrap(&id, &key);
            let mut tx = db.begin_write().await?;
            tx.set_signal_key(&id, &new_kek, &new_wrapped).await?;
            tx.commit().await?;
            n += 1;
        }
        Ok(n)
    }

    /// Decrypts `sealed`, bound to `aad` (the signal or inbox item id).
    pub fn open(key: &DataKey, aad: &str, sealed: &[u8]) -> anyhow::Result<Value> {
        Ok(serde_json::from_slice(&key.open(aad.as_bytes(), sealed)?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::projection::cut_for_tests as project;

    #[test]
    fn a_merge_patch_is_validated_after_merging() {
        let current = validate(json!({
            "municipality": "assen", "dateReceived": "2026-03-01", "forms": ["onbekend"],
            "urgency": "normaal", "victims": [{"name": "A", "dateOfBirth": "2010-01-01"}]
        }))
        .unwrap();
        assert_eq!(current["victims"][0]["minor"], true);
        // Forms replaced, a field removed (null), the derived flag kept.
        let v2 = revise(&current, &json!({"forms": ["arbeid"], "sector": "bouw"})).unwrap();
        assert_eq!(v2["forms"], json!(["arbeid"]));
        assert_eq!(v2["victims"][0]["minor"], true);
        let v3 = revise(&v2, &json!({"sector": null})).unwrap();
        assert!(v3.get("sector").is_none());
        // Breaking the schema: the pointers, never the values.
        let errors = revise(
            &current,
            &json!({"forms": [], "municipality": null, "secret": "x"}),
        )
        .unwrap_err();
        let pointers: Vec<_> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert!(pointers.contains(&"/forms"), "{pointers:?}");
        assert!(pointers.contains(&"/municipality"), "{pointers:?}");
        // A derived flag is no input.
        assert!(
            revise(
                &current,
                &json!({"victims": [{"name": "A", "minor": false}]})
            )
            .is_err()
        );
    }

    #[test]
    fn subjects_are_the_persons_a_projection_tells_about() {
        let p = Pseudonymizer::new(&[1; 32]);
        let body = json!({
            "forms": ["arbeid"],
            "victims": [{"name": "A", "bsn": "111222333"}],
            "suspects": [{"name": "B", "dateOfBirth": "1980-01-01", "nationality": "NL"}]
        });
        let id = |bsn, name, date_of_birth| {
            p.pseudonym(&SubjectId {
                bsn,
                name,
                date_of_birth,
            })
            .unwrap()
        };
        let victim = id(Some("111222333"), None, None);
        let suspect = id(None, Some("B"), Some("1980-01-01"));
        let mut both = vec![victim.clone(), suspect.clone()];
        both.sort();
        let fields = |f: &[&str]| f.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(subjects(&body, &body, &p), both);
        // Care receives the victim only: the suspect is not its subject.
        let care = project(&body, &fields(&["victims.bsn", "suspects.gender"]));
        assert_eq!(subjects(&body, &care, &p), vec![victim]);
        // Any field of a person names the person, by the full record's pseudonym.
        let quasi = project(&body, &fields(&["suspects.nationality"]));
        assert_eq!(subjects(&body, &quasi, &p), vec![suspect]);
        assert!(subjects(&body, &project(&body, &fields(&["forms"])), &p).is_empty());
    }
}
