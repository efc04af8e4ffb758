//! TLS with rustls: the server configuration (optionally verifying client
//! certificates against `tls.client_ca`) and the development PKI of the demo.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use ring::digest;
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::Config;
use crate::keys::{write_public, write_secret};

/// SHA-256 of the DER client certificate presented on this connection, if any.
/// Inserted into every request of the connection; `auth` binds it to the token.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientCertificate(pub Option<[u8; 32]>);

impl ClientCertificate {
    pub fn of(conn: &rustls::ServerConnection) -> Self {
        Self(
            conn.peer_certificates()
                .and_then(|c| c.first())
                .map(|leaf| fingerprint(leaf)),
        )
    }
}

pub fn fingerprint(der: &[u8]) -> [u8; 32] {
    digest::digest(&digest::SHA256, der)
        .as_ref()
        .try_into()
        .expect("sha256")
}

pub fn server_config(cfg: &Config) -> anyhow::Result<Arc<ServerConfig>> {
    // The TLS layer verifies any certificate offered; `auth` requires one on
    // authenticated routes, so health probes work without.
    build(cfg, cfg.tls.client_ca.as_deref(), true)
}

/// The admin listener: the server certificate, and on every connection a
/// client certificate from `client_ca` (the operators' CA).
pub fn admin_server_config(cfg: &Config, client_ca: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    build(cfg, Some(client_ca), false)
}

fn build(
    cfg: &Config,
    client_ca: Option<&Path>,
    optional: bool,
) -> anyhow::Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cert_path = cfg.tls_cert();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .with_context(|| format!("reading {}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing {}", cert_path.display()))?;
    let key = PrivateKeyDer::from_pem_file(cfg.tls_key())
        .with_context(|| format!("reading {}", cfg.tls_key().display()))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca)
                .with_context(|| format!("reading {}", ca.display()))?
            {
                roots.add(c?)?;
            }
            let mut verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            if optional {
                verifier = verifier.allow_unauthenticated();
            }
            builder.with_client_cert_verifier(verifier.build()?)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .context("server certificate and key do not match")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The demo's development PKI under `DATA_DIR/tls/`: a CA, a server
/// certificate for localhost, and one client certificate per partner under
/// `DATA_DIR/demo/clients/`. Existing files are kept.
pub struct DevPki {
    ca_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl DevPki {
    pub fn ensure(dir: &Path) -> anyhow::Result<Self> {
        let ca_pem = dir.join("tls/ca.pem");
        let ca_key_pem = dir.join("tls/ca.key");
        if !ca_pem.exists() {
            let key = rcgen::KeyPair::generate()?;
            let cert = ca_params().self_signed(&key)?;
            write_secret(&ca_key_pem, key.serialize_pem().as_bytes())?;
            write_public(&ca_pem, cert.pem().as_bytes())?;
        }
        let key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(&ca_key_pem)?)?;
        let ca_pem = std::fs::read_to_string(&ca_pem)?;
        // Same distinguished name and key as the CA on disk, so the leaf's
        // issuer and authority key identifier match it.
        let issuer = rcgen::Issuer::new(ca_params(), key);
        let pki = Self { ca_pem, issuer };
        let server = dir.join("tls/server.pem");
        if !server.exists() {
            let sans = vec![
                "localhost".to_string(),
                "127.0.0.1".to_string(),
                "::1".to_string(),
            ];
            pki.issue(
                &server,
                &dir.join("tls/server.key"),
                "ketenpoort",
                sans,
                false,
            )?;
        }
        Ok(pki)
    }

    /// Issues a client certificate for `partner` unless one exists; returns
    /// the SHA-256 fingerprint of the certificate on disk.
    pub fn ensure_client(&self, dir: &Path, partner: &str) -> anyhow::Result<[u8; 32]> {
        let cert = dir.join(format!("demo/clients/{partner}.pem"));
        if !cert.exists() {
            self.issue(
                &cert,
                &dir.join(format!("demo/clients/{partner}.key")),
                partner,
                vec![],
                true,
            )?;
        }
        Ok(fingerprint(&CertificateDer::from_pem_file(&cert)?))
    }

    fn issue(
        &self,
        cert: &Path,
        key: &Path,
        cn: &str,
        sans: Vec<String>,
        client: bool,
    ) -> anyhow::Result<()> {
        let mut params = rcgen::CertificateParams::new(sans)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "ketenpoort demo");
        params.extended_key_usages = vec![if client {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        }];
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(825);
        let leaf_key = rcgen::KeyPair::generate()?;
        let leaf = params.signed_by(&leaf_key, &self.issuer)?;
        write_secret(key, leaf_key.serialize_pem().as_bytes())?;
        // The chain: leaf then CA, so clients that only trust ca.pem verify it.
        write_public(cert, format!("{}{}", leaf.pem(), self.ca_pem).as_bytes())
    }
}

fn ca_params() -> rcgen::CertificateParams {
    let mut params = rcgen::CertificateParams::default();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ketenpoort demo CA");
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    params
}
