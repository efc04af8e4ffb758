//! Keyed cryptography over personal data: envelope encryption at rest
//! (invariant 7, [`envelope`]) and pseudonyms for the disclosure log
//! (invariant 4). One function makes every pseudonym, so the same person is
//! the same pseudonym in every entry. The same key makes the references by
//! which the log keeps what a caller chose — the token's user and the W3C
//! trace id ([`UserRef`], [`TraceRef`]) — so no text a caller chose is ever
//! kept or shown in the clear.

pub mod cursor;
pub mod envelope;

use base64::Engine;
use ring::hmac;
use unicode_normalization::UnicodeNormalization;

/// Key-store name of the pseudonym key.
pub const PSEUDONYM_KEY: &str = "pseudonym";

/// What identifies a data subject, as far as the log needs to know.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SubjectId<'a> {
    pub bsn: Option<&'a str>,
    pub name: Option<&'a str>,
    /// `YYYY-MM-DD`
    pub date_of_birth: Option<&'a str>,
}

/// A caller's user as ketenpoort keeps and shows it: `usr1:` and a keyed
/// hash of the partner and the token's `sub`. The `sub` is the caller's
/// text (it could be anything, a name included): it is never stored, never
/// logged, never echoed. Made only by [`Pseudonymizer::user_ref`] (or read
/// back from a stored entry); the same
/// user of the same partner is the same reference in every entry.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct UserRef(String);

/// A caller's W3C trace id as the disclosure log keeps it: a keyed hash in
/// the trace id's own shape (32 lowercase hex). The same trace id gives the
/// same reference, so the entries of one trace stay together; the caller's
/// 32 characters (which could spell a BSN or a record id) never reach the
/// log. Made only by [`Pseudonymizer::trace_ref`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct TraceRef(String);

impl UserRef {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Read back from a stored log entry (the leaf decoders, which refuse
    /// any leaf that is not one ketenpoort wrote; tests). Never from a
    /// caller's input.
    pub(crate) fn stored(text: impl Into<String>) -> Self {
        Self(text.into())
    }
}

impl TraceRef {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Read back from a stored log entry (the leaf decoders, which refuse
    /// any leaf that is not one ketenpoort wrote; tests). Never from a
    /// caller's input.
    pub(crate) fn stored(text: impl Into<String>) -> Self {
        Self(text.into())
    }
}

#[derive(Clone)]
pub struct Pseudonymizer {
    key: hmac::Key,
}

impl Pseudonymizer {
    pub fn new(secret: &[u8; 32]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    /// `ps1:` + base64url(HMAC-SHA256(key, normalised identifier)): the BSN
    /// when present, otherwise the normalised name and date of birth. None
    /// when the subject has neither.
    pub fn pseudonym(&self, id: &SubjectId<'_>) -> Option<String> {
        let ident = normalise(id)?;
        let tag = hmac::sign(&self.key, ident.as_bytes());
        Some(format!(
            "ps1:{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref())
        ))
    }
}

impl Pseudonymizer {
    /// The reference of `partner`'s user `subject` (a token's `sub`).
    pub fn user_ref(&self, partner: &str, subject: &str) -> UserRef {
        let tag = hmac::sign(&self.key, format!("user:{partner}\n{subject}").as_bytes());
        UserRef(format!(
            "usr1:{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&tag.as_ref()[..16])
        ))
    }

    /// The reference of `partner`'s `Idempotency-Key`: the key is the
    /// caller's own text and is never stored.
    pub fn idempotency_ref(&self, partner: &str, key: &str) -> String {
        let tag = hmac::sign(
            &self.key,
            format!("idempotency:{partner}\n{key}").as_bytes(),
        );
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref())
    }

    /// The reference of a trace id.
    pub fn trace_ref(&self, trace_id: &str) -> TraceRef {
        let tag = hmac::sign(&self.key, format!("trace:{trace_id}").as_bytes());
        TraceRef(hex::encode(&tag.as_ref()[..16]))
    }
}

fn normalise(id: &SubjectId<'_>) -> Option<String> {
    if let Some(bsn) = id.bsn {
        let digits: String = bsn.chars().filter(char::is_ascii_digit).collect();
        if (8..=9).contains(&digits.len()) {
            return Some(format!("bsn:{digits:0>9}"));
        }
    }
    let name = normalise_name(id.name?);
    if name.is_empty() {
        return None;
    }
    let dob = id.date_of_birth.map(str::trim).unwrap_or("");
    Some(format!("name:{name}|dob:{dob}"))
}

/// Lowercase, without diacritics, punctuation or repeated spaces:
/// "  Ana-María  de Vries " and "ana maria de vries" are the same name.
pub fn normalise_name(name: &str) -> String {
    let folded: String = name
        .nfkd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect();
    folded.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> Pseudonymizer {
        Pseudonymizer::new(&[7; 32])
    }

    #[test]
    fn the_bsn_decides_when_present() {
        let a = p().pseudonym(&SubjectId {
            bsn: Some("111222333"),
            name: Some("A"),
            date_of_birth: None,
        });
        let b = p().pseudonym(&SubjectId {
            bsn: Some("111 222 333"),
            name: Some("B"),
            date_of_birth: Some("2000-01-01"),
        });
        assert_eq!(a, b);
        let eight = p().pseudonym(&SubjectId {
            bsn: Some("11222333"),
            ..Default::default()
        });
        let nine = p().pseudonym(&SubjectId {
            bsn: Some("011222333"),
            ..Default::default()
        });
        assert_eq!(eight, nine);
    }

    #[test]
    fn names_are_normalised() {
        let a = p().pseudonym(&SubjectId {
            name: Some("  Ana-María  de Vries "),
            date_of_birth: Some("1990-02-03"),
            bsn: None,
        });
        let b = p().pseudonym(&SubjectId {
            name: Some("ana maria DE vries"),
            date_of_birth: Some("1990-02-03"),
            bsn: None,
        });
        let c = p().pseudonym(&SubjectId {
            name: Some("ana maria de vries"),
            date_of_birth: Some("1990-02-04"),
            bsn: None,
        });
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.unwrap().starts_with("ps1:"));
    }

    #[test]
    fn another_key_gives_another_pseudonym_and_nothing_gives_none() {
        let id = SubjectId {
            bsn: Some("111222333"),
            ..Default::default()
        };
        assert_ne!(
            p().pseudonym(&id),
            Pseudonymizer::new(&[8; 32]).pseudonym(&id)
        );
        assert_eq!(p().pseudonym(&SubjectId::default()), None);
        assert_eq!(
            p().pseudonym(&SubjectId {
                name: Some(" - "),
                ..Default::default()
            }),
            None
        );
    }
}
