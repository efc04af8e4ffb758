//! Fingerprints of the values stored with a signal: keyed hashes (HMAC with
//! `keys/egress.key`) of normalised names, BSNs, e-mail addresses, phone
//! numbers, ids and pseudonyms. Written in the transaction that stores the
//! values; the egress guard normalises what it finds the same way and looks
//! the hashes up. No plaintext is ever kept.

use ring::hmac;
use serde_json::Value;

use crate::crypto::normalise_name;

/// Key-store name of the fingerprint key.
pub const EGRESS_KEY: &str = "egress";

/// Names shorter than this (letters and digits, without spaces) are too
/// short to tell apart from ordinary text; layers 1 and 2 cover them.
const MIN_NAME: usize = 4;

/// A normalised value, as fingerprinted.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Known {
    /// Lowercase, no diacritics or punctuation: spaced and compact forms.
    Name(String),
    /// Nine digits (an eight-digit BSN gets its leading zero back).
    Bsn(String),
    Email(String),
    /// National form for Dutch numbers (`06...`), `00<country>...` otherwise.
    Phone(String),
    /// A UUID, lowercase with hyphens.
    Id(String),
    /// The base64url part of a `ps1:` pseudonym.
    Pseudonym(String),
}

impl Known {
    fn input(&self) -> String {
        match self {
            Known::Name(v) => format!("kv1|name:{v}"),
            Known::Bsn(v) => format!("kv1|bsn:{v}"),
            Known::Email(v) => format!("kv1|email:{v}"),
            Known::Phone(v) => format!("kv1|phone:{v}"),
            Known::Id(v) => format!("kv1|id:{v}"),
            Known::Pseudonym(v) => format!("kv1|ps:{v}"),
        }
    }
}

/// The spaced and compact forms of a name long enough to fingerprint.
pub fn names(raw: &str) -> Vec<Known> {
    let spaced = normalise_name(raw);
    let compact: String = spaced.chars().filter(|c| *c != ' ').collect();
    if compact.chars().count() < MIN_NAME || !compact.chars().any(char::is_alphabetic) {
        return Vec::new();
    }
    let mut out = vec![Known::Name(compact.clone())];
    if spaced != compact {
        out.push(Known::Name(spaced));
    }
    out
}

pub fn bsn(digits: &str) -> Option<Known> {
    ((8..=9).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| Known::Bsn(format!("{digits:0>9}")))
}

pub fn email(raw: &str) -> Known {
    Known::Email(raw.trim().to_lowercase())
}

/// The phone number in `digits` (with or without a leading `+`), in the
/// one form it is fingerprinted in.
pub fn phone(digits: &str, plus: bool) -> Option<Known> {
    if digits.len() < 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let national = |rest: &str| format!("0{rest}");
    let form = if plus {
        match digits.strip_prefix("31") {
            Some(rest) => national(rest),
            None => format!("00{digits}"),
        }
    } else if let Some(rest) = digits.strip_prefix("0031") {
        national(rest)
    } else if let (Some(rest), 11) = (digits.strip_prefix("31"), digits.len()) {
        national(rest)
    } else {
        digits.to_owned()
    };
    Some(Known::Phone(form))
}

/// A phone number as written in a signal.
pub fn phone_written(raw: &str) -> Option<Known> {
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    phone(&digits, raw.trim_start().starts_with('+'))
}

pub fn id(raw: &str) -> Option<Known> {
    uuid::Uuid::parse_str(raw)
        .ok()
        .map(|u| Known::Id(u.hyphenated().to_string()))
}

pub fn pseudonym(p: &str) -> Option<Known> {
    let rest = p.strip_prefix("ps1:").unwrap_or(p);
    (rest.len() >= 16).then(|| Known::Pseudonym(rest.to_owned()))
}

/// Everything of a signal the guard must recognise: the names, BSNs,
/// e-mail addresses and phone numbers of its victims and suspects (and a
/// suspect's company), its id and its subjects' pseudonyms.
pub fn of_signal(id_: &str, body: &Value, subjects: &[String]) -> Vec<Known> {
    let mut out: Vec<Known> = id(id_).into_iter().collect();
    for person in ["victims", "suspects"]
        .into_iter()
        .flat_map(|k| body.get(k).and_then(Value::as_array).into_iter().flatten())
    {
        let s = |k: &str| person.get(k).and_then(Value::as_str);
        for name in [s("name"), s("companyName")].into_iter().flatten() {
            out.extend(names(name));
        }
        out.extend(s("bsn").and_then(bsn));
        out.extend(s("email").map(email));
        out.extend(s("phone").and_then(phone_written));
    }
    out.extend(subjects.iter().filter_map(|p| pseudonym(p)));
    out.sort();
    out.dedup();
    out
}

/// Keyed hashes of known values.
#[derive(Clone)]
pub struct Fingerprinter {
    key: hmac::Key,
}

impl Fingerprinter {
    pub fn new(secret: &[u8; 32]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    /// 128 bits of HMAC-SHA256 over the normalised value.
    pub fn fingerprint(&self, k: &Known) -> Vec<u8> {
        hmac::sign(&self.key, k.input().as_bytes()).as_ref()[..16].to_vec()
    }

    pub fn all(&self, known: &[Known]) -> Vec<Vec<u8>> {
        known.iter().map(|k| self.fingerprint(k)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_forms() {
        assert_eq!(
            names("  Ána-María  de VRIES "),
            vec![
                Known::Name("anamariadevries".into()),
                Known::Name("ana maria de vries".into())
            ]
        );
        assert!(names("Li").is_empty(), "too short to fingerprint");
        assert_eq!(bsn("12345672"), Some(Known::Bsn("012345672".into())));
        assert_eq!(bsn("1234567"), None);
        for (raw, want) in [
            ("+31 6 1234 5678", "0612345678"),
            ("06-12345678", "0612345678"),
            ("0031612345678", "0612345678"),
            ("(0591) 12 34 56", "0591123456"),
            ("+44 20 7946 0958", "00442079460958"),
        ] {
            assert_eq!(phone_written(raw), Some(Known::Phone(want.into())), "{raw}");
        }
        // Digits only, the + lost: the Dutch country code is still recognised.
        assert_eq!(
            phone("31612345678", false),
            Some(Known::Phone("0612345678".into()))
        );
        assert_eq!(
            id("0193A4E2-0000-7000-8000-00000000000A"),
            id("0193a4e20000700080000000000000 0a"
                .replace(' ', "")
                .as_str())
        );
        assert_eq!(
            email(" Jan@Example.ORG "),
            Known::Email("jan@example.org".into())
        );
    }

    #[test]
    fn a_signal_yields_its_values_and_the_key_matters() {
        let body: Value = serde_json::from_str(include_str!("../../examples/signal.json")).unwrap();
        let id_ = "0193a4e2-0000-7000-8000-00000000000a";
        let known = of_signal(
            id_,
            &body,
            &["ps1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into()],
        );
        for want in [
            Known::Name("voorbeeld slachtoffer".into()),
            Known::Name("voorbeeldverdachte".into()),
            Known::Name("voorbeeld uitzendbureau b v".into()),
            Known::Bsn("123456782".into()),
            Known::Email("slachtoffer@example.invalid".into()),
            Known::Phone("0600000000".into()),
            Known::Id(id_.into()),
            Known::Pseudonym("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into()),
        ] {
            assert!(known.contains(&want), "{want:?} missing from {known:?}");
        }
        let (a, b) = (Fingerprinter::new(&[1; 32]), Fingerprinter::new(&[2; 32]));
        assert_eq!(a.fingerprint(&known[0]).len(), 16);
        assert_ne!(a.fingerprint(&known[0]), b.fingerprint(&known[0]));
    }
}
