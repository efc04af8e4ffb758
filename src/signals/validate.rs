//! Schema v1 (`schemas/signal.v1.json`) plus the checks a schema cannot
//! express: the BSN 11-proef and real, plausible dates. Errors name the
//! location and the rule, never the value.

use std::sync::LazyLock;

use serde_json::Value;
use time::Date;
use time::macros::format_description;

use crate::identifiers::is_valid_bsn;
use crate::problem::FieldError;

static SCHEMA: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    let schema: Value =
        serde_json::from_str(include_str!("../../schemas/signal.v1.json")).expect("schema is JSON");
    jsonschema::validator_for(&schema).expect("schema compiles")
});

fn parse_date(s: &str) -> Option<Date> {
    Date::parse(s, format_description!("[year]-[month]-[day]")).ok()
}

fn err(pointer: String, reason: &str) -> FieldError {
    FieldError {
        pointer,
        reason: reason.to_owned(),
    }
}

/// Validates a submitted body; on success returns it with each victim's
/// `minor` flag derived from the date of birth at the date received.
pub fn validate(mut body: Value) -> Result<Value, Vec<FieldError>> {
    let mut errors: Vec<FieldError> = SCHEMA
        .iter_errors(&body)
        .map(|e| {
            let at = e.instance_path().as_str().to_owned();
            match e.kind() {
                jsonschema::error::ValidationErrorKind::Required { property } => err(
                    format!("{at}/{}", property.as_str().unwrap_or("?")),
                    "required",
                ),
                jsonschema::error::ValidationErrorKind::AdditionalProperties { .. } => err(
                    if at.is_empty() { "/".into() } else { at },
                    "unknown property",
                ),
                kind => err(
                    if at.is_empty() { "/".into() } else { at },
                    &format!("violates `{}`", kind.keyword()),
                ),
            }
        })
        .collect();
    if !errors.is_empty() {
        errors.sort_by(|a, b| a.pointer.cmp(&b.pointer));
        errors.dedup_by(|a, b| a.pointer == b.pointer && a.reason == b.reason);
        return Err(errors);
    }
    let today = time::OffsetDateTime::now_utc().date();
    let received = body["dateReceived"].as_str().and_then(parse_date);
    match received {
        None => errors.push(err("/dateReceived".into(), "not a calendar date")),
        Some(d) if d > today.next_day().unwrap_or(today) => {
            errors.push(err("/dateReceived".into(), "in the future"))
        }
        _ => {}
    }
    for kind in ["victims", "suspects"] {
        let Some(list) = body.get_mut(kind).and_then(Value::as_array_mut) else {
            continue;
        };
        for (i, person) in list.iter_mut().enumerate() {
            let at = |f: &str| format!("/{kind}/{i}/{f}");
            if let Some(bsn) = person.get("bsn").and_then(Value::as_str)
                && !is_valid_bsn(bsn)
            {
                errors.push(err(at("bsn"), "fails the 11-proef"));
            }
            let born = match person.get("dateOfBirth").and_then(Value::as_str) {
                None => None,
                Some(s) => match parse_date(s) {
                    Some(d) if d.year() >= 1900 && received.is_none_or(|r| d <= r) => Some(d),
                    Some(_) => {
                        errors.push(err(
                            at("dateOfBirth"),
                            "before 1900 or after the date received",
                        ));
                        None
                    }
                    None => {
                        errors.push(err(at("dateOfBirth"), "not a calendar date"));
                        None
                    }
                },
            };
            if kind == "victims" {
                let minor = match (born, received) {
                    (Some(b), Some(r)) => age_at(b, r) < 18,
                    _ => false,
                };
                person["minor"] = Value::Bool(minor);
            }
        }
    }
    if errors.is_empty() {
        Ok(body)
    } else {
        Err(errors)
    }
}

fn age_at(born: Date, at: Date) -> i32 {
    let mut age = at.year() - born.year();
    if (at.month() as u8, at.day()) < (born.month() as u8, born.day()) {
        age -= 1;
    }
    age
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ok() -> Value {
        json!({
            "municipality": "assen",
            "dateReceived": "2026-03-01",
            "forms": ["arbeid"],
            "urgency": "normaal",
            "victims": [{"name": "X Y", "bsn": "111222333", "dateOfBirth": "2008-03-02"}]
        })
    }

    #[test]
    fn a_valid_body_gets_minor_flags() {
        let v = validate(ok()).unwrap();
        assert_eq!(
            v["victims"][0]["minor"],
            json!(true),
            "17 on the day before the 18th birthday"
        );
        let mut b = ok();
        b["victims"][0]["dateOfBirth"] = json!("2008-03-01");
        assert_eq!(validate(b).unwrap()["victims"][0]["minor"], json!(false));
    }

    #[test]
    fn errors_name_locations_never_values() {
        let mut b = ok();
        b["victims"][0]["bsn"] = json!("111222334");
        b["victims"][0]["email"] = json!("geheim-adres");
        b["forms"] = json!(["vlees"]);
        let e = validate(b.clone()).unwrap_err();
        let text = serde_json::to_string(&e).unwrap();
        assert!(
            !text.contains("geheim-adres") && !text.contains("vlees"),
            "{text}"
        );
        assert!(e.iter().any(|f| f.pointer == "/victims/0/email"));
        assert!(e.iter().any(|f| f.pointer == "/forms/0"));
        b["victims"][0]["email"] = json!("a@b.nl");
        b["forms"] = json!(["arbeid"]);
        let e = validate(b).unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!(
            (e[0].pointer.as_str(), e[0].reason.as_str()),
            ("/victims/0/bsn", "fails the 11-proef")
        );
    }

    #[test]
    fn unknown_and_missing_properties() {
        let mut b = ok();
        b.as_object_mut().unwrap().remove("urgency");
        b["victims"][0]["shoeSize"] = json!(44);
        let e = validate(b).unwrap_err();
        assert!(
            e.iter()
                .any(|f| f.pointer == "/urgency" && f.reason == "required"),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|f| f.pointer == "/victims/0" && f.reason == "unknown property"),
            "{e:?}"
        );
    }

    #[test]
    fn impossible_dates() {
        let mut b = ok();
        b["dateReceived"] = json!("2026-02-30");
        assert!(validate(b).is_err());
        let mut b = ok();
        b["victims"][0]["dateOfBirth"] = json!("2027-01-01");
        assert!(validate(b).is_err());
    }
}
