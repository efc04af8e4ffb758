//! `ketenpoort witness serve`: the witness over HTTPS. One route, `POST
//! /add-checkpoint`, answered by a plain hyper service (it is not part of
//! the gateway's API and has no OpenAPI document); everything else is 404.
//!
//! A witness directory holds `witness.toml`, its key (`keys/witness.pem`),
//! its TLS certificate and key (`tls/witness.pem`, `tls/witness.key`, made
//! self-signed by `witness init` unless replaced) and its state
//! (`witness.db`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::{Answer, Cosigner, MAX_BODY, Witness};
use crate::keys::KeyStore;
use crate::store::witness::WitnessDb;

/// Key-store name of the witness's signing key.
pub const WITNESS_KEY: &str = "witness";
const CONFIG_FILE: &str = "witness.toml";
/// The longest a client connection stays open.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// `witness.toml` of a witness directory.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessConfig {
    /// The witness's name: its key name on cosignature lines (a schema-less
    /// URL, e.g. `witness.assen.nl/ketenpoort`).
    pub name: String,
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Verifier keys of the logs it witnesses, as the log serves them at
    /// `GET /v1/log/verifier-key` (`<origin>+<key id>+<key>`).
    #[serde(default)]
    pub logs: Vec<String>,
    /// TLS certificate chain and key (PEM); default `tls/witness.pem` and
    /// `tls/witness.key` in the witness directory.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7380))
}

impl WitnessConfig {
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        use figment::providers::Format;
        figment::Figment::from(figment::providers::Toml::string(&text))
            .extract()
            .with_context(|| format!("{} is not a witness configuration", path.display()))
    }

    fn cert(&self, dir: &Path) -> PathBuf {
        dir.join(self.tls_cert.clone().unwrap_or("tls/witness.pem".into()))
    }

    fn key(&self, dir: &Path) -> PathBuf {
        dir.join(self.tls_key.clone().unwrap_or("tls/witness.key".into()))
    }
}

/// `witness init`: the key, a self-signed certificate for `tls_names`, and
/// `witness.toml`; existing files are kept. Returns the witness's vkey.
pub fn init(dir: &Path, name: &str, tls_names: &[String]) -> anyhow::Result<String> {
    let keys = KeyStore::new(dir);
    keys.ensure_ed25519(WITNESS_KEY)?;
    let cosigner = Cosigner::new(name, keys.ed25519(WITNESS_KEY)?.key_pair())?;
    let config = dir.join(CONFIG_FILE);
    if !config.exists() {
        let cfg = WitnessConfig {
            name: name.to_owned(),
            listen: default_listen(),
            logs: Vec::new(),
            tls_cert: None,
            tls_key: None,
        };
        crate::keys::write_public(&config, toml_of(&cfg).as_bytes())?;
    }
    let cert = dir.join("tls/witness.pem");
    if !cert.exists() {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(tls_names.to_vec())?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.not_after = rcgen::date_time_ymd(2036, 1, 1);
        let c = params.self_signed(&key)?;
        crate::keys::write_secret(&dir.join("tls/witness.key"), key.serialize_pem().as_bytes())?;
        crate::keys::write_public(&cert, c.pem().as_bytes())?;
    }
    Ok(cosigner.key().vkey())
}

fn toml_of(cfg: &WitnessConfig) -> String {
    let logs: Vec<String> = cfg.logs.iter().map(|l| format!("{l:?}")).collect();
    format!(
        "# ketenpoort witness (C2SP tlog-witness)\nname = {:?}\nlisten = \"{}\"\n\
         # verifier keys of the logs this witness cosigns (GET /v1/log/verifier-key)\nlogs = [{}]\n",
        cfg.name,
        cfg.listen,
        logs.join(", ")
    )
}

/// The witness of directory `dir` with configuration `cfg`.
pub async fn open(dir: &Path, cfg: &WitnessConfig) -> anyhow::Result<Arc<Witness>> {
    let keys = KeyStore::new(dir);
    let cosigner = Cosigner::new(&cfg.name, keys.ed25519(WITNESS_KEY)?.key_pair())?;
    let db = WitnessDb::open(&dir.join("witness.db")).await?;
    Ok(Arc::new(Witness::new(cosigner, &cfg.logs, db)?))
}

/// The witness's TLS configuration (the gateway's cipher suites).
pub fn tls(dir: &Path, cfg: &WitnessConfig) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let cert_path = cfg.cert(dir);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .with_context(|| format!("reading {}", cert_path.display()))?
        .collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_file(cfg.key(dir))
        .with_context(|| format!("reading {}", cfg.key(dir).display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(crate::tls::provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `witness` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, witness: Arc<Witness>) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let (acceptor, witness) = (acceptor.clone(), witness.clone());
        tokio::spawn(async move {
            let Ok(Ok(stream)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
            else {
                return;
            };
            let svc = hyper::service::service_fn(move |req| {
                let witness = witness.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&witness, req).await) }
            });
            let mut http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            http.http1()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10));
            // A connection lasts at most a minute (clients reconnect).
            let conn = http.serve_connection(TokioIo::new(stream), svc);
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, conn).await;
        });
    }
}

async fn answer(witness: &Witness, req: hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
    let a = if req.uri().path() != "/add-checkpoint" {
        Answer::text(404, "not found\n")
    } else if req.method() != hyper::Method::POST {
        Answer::text(405, "use POST\n")
    } else {
        match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(body) => witness.add_checkpoint(&body.to_bytes()).await,
            Err(_) => Answer::text(400, "the request body is unreadable or too large\n"),
        }
    };
    hyper::Response::builder()
        .status(a.status)
        .header(hyper::header::CONTENT_TYPE, a.content_type)
        .body(Full::new(Bytes::from(a.body)))
        .expect("a valid response")
}
