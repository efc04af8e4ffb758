//! A partner organisation as the registry stores it.

use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Partner {
    pub id: String,
    pub display_name: String,
    pub kind: String,
    /// Covenant member. Non-members (the RIEC) receive phenomenon tables only.
    pub member: bool,
    /// Organisatie-identificatienummer (20 digits) of Dutch government bodies.
    pub oin: Option<String>,
    pub roles: Vec<String>,
    /// Lowercase hex SHA-256 of the DER client certificates of this partner.
    pub cert_fingerprints: Vec<String>,
    pub status: PartnerStatus,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PartnerStatus {
    Active,
    Suspended,
}

impl PartnerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "suspended" => Some(Self::Suspended),
            _ => None,
        }
    }
}

/// A lowercase slug: what partner ids, kinds and roles look like.
pub fn is_slug(s: &str) -> bool {
    (2..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}
