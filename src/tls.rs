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

/// The client certificate presented on this connection, if any: its
/// SHA-256 fingerprint and, when its subject carries one, the OIN in its
/// `serialNumber` (as PKIoverheid organisation certificates do). Inserted
/// into every request of the connection; `auth` binds tokens to the
/// fingerprint, the token endpoint matches clients by either. The OIN is
/// only as trustworthy as the CA that verified the certificate: without
/// `tls.client_ca` any certificate is accepted (RFC 8705 self-signed
/// client authentication) and only the fingerprint counts.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientCertificate {
    pub fingerprint: Option<[u8; 32]>,
    pub oin: Option<Oin>,
}

/// An OIN: 20 ASCII digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Oin([u8; 20]);

impl Oin {
    pub fn parse(s: &str) -> Option<Self> {
        crate::model::client::is_oin(s).then(|| Self(s.as_bytes().try_into().expect("20 bytes")))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("digits")
    }
}

impl ClientCertificate {
    pub fn of(conn: &rustls::ServerConnection) -> Self {
        match conn.peer_certificates().and_then(|c| c.first()) {
            Some(leaf) => Self {
                fingerprint: Some(fingerprint(leaf)),
                oin: subject_oin(leaf),
            },
            None => Self::default(),
        }
    }
}

/// The OIN in a certificate subject's `serialNumber` (OID 2.5.4.5), if it
/// is one.
pub fn subject_oin(der: &[u8]) -> Option<Oin> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let attr = cert
        .subject()
        .iter_by_oid(&x509_parser::oid_registry::OID_X509_SERIALNUMBER)
        .next()?;
    Oin::parse(attr.as_str().ok()?)
}

/// Without a client CA: any certificate a client offers is taken (and
/// none required), its possession of the key proven by the handshake —
/// RFC 8705's self-signed client authentication. What it is worth is
/// decided above TLS, by its fingerprint.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::server::danger::ClientCertVerifier for AnyCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
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

/// The cryptography the server offers, after the NCSC's ICT-beveiligingsrichtlijnen
/// voor TLS (2021): only suites rated "goed" — TLS 1.3's three AEAD suites,
/// and for TLS 1.2 ECDHE with AES-GCM or ChaCha20-Poly1305 (no CBC, no RSA
/// key exchange, no finite-field DHE) — in the order the guidelines list them
/// (AES-256-GCM, ChaCha20-Poly1305, AES-128-GCM); key exchange over X25519,
/// secp256r1 or secp384r1.
pub fn provider() -> rustls::crypto::CryptoProvider {
    use rustls::crypto::ring::{cipher_suite as cs, default_provider, kx_group};
    rustls::crypto::CryptoProvider {
        cipher_suites: vec![
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        ],
        kx_groups: vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1],
        ..default_provider()
    }
}

fn build(
    cfg: &Config,
    client_ca: Option<&Path>,
    optional: bool,
) -> anyhow::Result<Arc<ServerConfig>> {
    let provider = Arc::new(provider());
    let cert_path = cfg.tls_cert();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .with_context(|| format!("reading {}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing {}", cert_path.display()))?;
    let key = PrivateKeyDer::from_pem_file(cfg.tls_key())
        .with_context(|| format!("reading {}", cfg.tls_key().display()))?;
    // TLS 1.3 and 1.2 only.
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
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
        None => builder.with_client_cert_verifier(Arc::new(AnyCertificate(provider))),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .context("server certificate and key do not match")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // The server chooses the suite, in the order above (the guidelines ask
    // it for TLS 1.2; rustls applies it to 1.3 as well).
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}

/// How long the demo's server and client certificates are valid.
const DEMO_VALIDITY: time::Duration = time::Duration::days(90);
/// A demo certificate that would no longer verify this long from now (or
/// does not verify at all) is issued anew when the demo starts.
const DEMO_RENEW_BEFORE: time::Duration = time::Duration::days(30);

/// The demo's development PKI under `DATA_DIR/tls/`: a CA, a server
/// certificate for localhost, and one client certificate per partner under
/// `DATA_DIR/demo/clients/`. Existing files are kept while they verify
/// against the CA for at least [`DEMO_RENEW_BEFORE`] more; a certificate
/// closer to its end is issued anew, with a new key.
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
        if !pki.lasts(&server, false) {
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
                None,
            )?;
        }
        Ok(pki)
    }

    /// Issues a client certificate for `partner` unless one exists that
    /// lasts; returns the SHA-256 fingerprint of the certificate on disk,
    /// and of the one it replaced, if it replaced one.
    pub fn ensure_client(
        &self,
        dir: &Path,
        partner: &str,
        oin: Option<&str>,
    ) -> anyhow::Result<ClientCert> {
        let cert = dir.join(format!("demo/clients/{partner}.pem"));
        let mut replaced = None;
        let carries = |path: &Path| {
            CertificateDer::from_pem_file(path)
                .ok()
                .map(|c| subject_oin(&c).map(|o| o.as_str().to_owned()))
                == Some(oin.map(str::to_owned))
        };
        if !self.lasts(&cert, true) || !carries(&cert) {
            replaced = CertificateDer::from_pem_file(&cert)
                .ok()
                .map(|c| fingerprint(&c));
            self.issue(
                &cert,
                &dir.join(format!("demo/clients/{partner}.key")),
                partner,
                vec![],
                Some(oin),
            )?;
        }
        Ok(ClientCert {
            fingerprint: fingerprint(&CertificateDer::from_pem_file(&cert)?),
            replaced,
        })
    }

    /// Whether the certificate at `path` exists and still verifies against
    /// this CA [`DEMO_RENEW_BEFORE`] from now: as a client certificate, or
    /// as the server certificate of localhost.
    fn lasts(&self, path: &Path, client: bool) -> bool {
        use rustls::client::danger::ServerCertVerifier;
        let check = || -> anyhow::Result<()> {
            let leaf = CertificateDer::from_pem_file(path)?;
            let mut roots = rustls::RootCertStore::empty();
            roots.add(CertificateDer::from_pem_slice(self.ca_pem.as_bytes())?)?;
            let roots = Arc::new(roots);
            let provider = Arc::new(provider());
            let later = time::OffsetDateTime::now_utc() + DEMO_RENEW_BEFORE;
            let at = rustls_pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                u64::try_from(later.unix_timestamp())?,
            ));
            if client {
                WebPkiClientVerifier::builder_with_provider(roots, provider)
                    .build()?
                    .verify_client_cert(&leaf, &[], at)?;
            } else {
                let name = rustls_pki_types::ServerName::try_from("localhost")?;
                rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider)
                    .build()?
                    .verify_server_cert(&leaf, &[], &name, &[], at)?;
            }
            Ok(())
        };
        check().is_ok()
    }

    fn issue(
        &self,
        cert: &Path,
        key: &Path,
        cn: &str,
        sans: Vec<String>,
        // A client certificate, with the OIN its subject carries, if any.
        client: Option<Option<&str>>,
    ) -> anyhow::Result<()> {
        let mut params = rcgen::CertificateParams::new(sans)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "ketenpoort demo");
        if let Some(Some(oin)) = client {
            // serialNumber (2.5.4.5), where PKIoverheid certificates carry the OIN.
            params.distinguished_name.push(
                rcgen::DnType::CustomDnType(vec![2, 5, 4, 5]),
                rcgen::DnValue::PrintableString(oin.try_into()?),
            );
        }
        params.extended_key_usages = vec![if client.is_some() {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        }];
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        params.not_after = params.not_before + DEMO_VALIDITY;
        let leaf_key = rcgen::KeyPair::generate()?;
        let leaf = params.signed_by(&leaf_key, &self.issuer)?;
        // Written beside, then moved over a certificate being renewed.
        let (new_key, new_cert) = (
            key.with_extension("key.new"),
            cert.with_extension("pem.new"),
        );
        for stale in [&new_key, &new_cert] {
            let _ = std::fs::remove_file(stale);
        }
        write_secret(&new_key, leaf_key.serialize_pem().as_bytes())?;
        // The chain: leaf then CA, so clients that only trust ca.pem verify it.
        write_public(
            &new_cert,
            format!("{}{}", leaf.pem(), self.ca_pem).as_bytes(),
        )?;
        std::fs::rename(&new_key, key)?;
        std::fs::rename(&new_cert, cert)?;
        Ok(())
    }
}

/// A demo client certificate: its fingerprint, and that of the
/// certificate it replaced when the demo issued it anew.
pub struct ClientCert {
    pub fingerprint: [u8; 32],
    pub replaced: Option<[u8; 32]>,
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
