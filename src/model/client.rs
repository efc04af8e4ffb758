//! A partner system registered to obtain its own tokens at the token
//! endpoint (OAuth 2.0 client credentials, RFC 6749 §4.4).

use serde::Serialize;

use super::partner::PartnerStatus;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Client {
    /// The OAuth `client_id` (a slug).
    pub id: String,
    /// The partner it belongs to: its tokens name this partner.
    pub partner: String,
    /// The roles it may ask for (`scope`), each also a role of its partner.
    pub roles: Vec<String>,
    pub auth: Credential,
    pub status: PartnerStatus,
}

/// How a client proves who it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Credential {
    /// RFC 8705 §2.2: a (self-signed or any) certificate, registered by its
    /// SHA-256 fingerprint (lowercase hex).
    SelfSignedTlsClientAuth { cert_fingerprint: String },
    /// RFC 8705 §2.1: a certificate from the configured client CA
    /// (`tls.client_ca`) whose subject `serialNumber` is this OIN.
    TlsClientAuth { oin: String },
    /// RFC 7523: a JWT assertion signed with one of these keys (a JWKS).
    PrivateKeyJwt { jwks: String },
}

impl Credential {
    pub fn method(&self) -> &'static str {
        match self {
            Self::SelfSignedTlsClientAuth { .. } => "self_signed_tls_client_auth",
            Self::TlsClientAuth { .. } => "tls_client_auth",
            Self::PrivateKeyJwt { .. } => "private_key_jwt",
        }
    }
}

/// An OIN: 20 digits.
pub fn is_oin(s: &str) -> bool {
    s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit())
}
