//! The stack floor of the ceiling benchmark (bench/bench.py): the least a
//! server built from ketenpoort's own HTTP stack pays per request. The same
//! crates as ketenpoort's listener — tokio (multi-threaded, one worker per
//! core), tokio-rustls with the ring provider, TLS 1.3 and 1.2, ALPN h2 and
//! http/1.1, hyper-util's auto builder, an axum `Router`, mimalloc —
//! serving one static `/healthz` with the body and the security headers
//! ketenpoort sends, and nothing else: no access log, no metrics, no
//! request id layer, no limits. Unlike the listener it asks for no client
//! certificate and keeps ring's default suite order; neither changes the
//! cost of a request on an open connection, which is what wrk measures.
//!
//! Interleaved with nginx and ketenpoort it splits the gap to nginx in two:
//! what the stack costs (floor / nginx) and what ketenpoort adds on top of
//! it (ketenpoort / floor). Not part of the product; built only by the
//! bench (`cargo build --release --example stack_floor`).
//!
//! Usage: stack_floor CERT_PEM KEY_PEM PORT

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

// The allocator ketenpoort's binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

static NEXT: AtomicU64 = AtomicU64::new(1);

async fn healthz() -> impl IntoResponse {
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("frame-ancestors 'none'"),
            ),
            (
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static("max-age=31536000; includeSubDomains"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::HeaderName::from_static("api-version"),
                HeaderValue::from_static("bench"),
            ),
            (
                header::HeaderName::from_static("x-request-id"),
                HeaderValue::from(id),
            ),
        ],
        r#"{"status":"ok"}"#,
    )
}

fn tls(cert: &str, key: &str) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .expect("certificate file")
        .collect::<Result<_, _>>()
        .expect("certificate");
    let key = PrivateKeyDer::from_pem_file(key).expect("key");
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("certificate and key");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, cert, key, port] = args.as_slice() else {
        eprintln!("usage: stack_floor CERT_PEM KEY_PEM PORT");
        std::process::exit(2);
    };
    let acceptor = TlsAcceptor::from(tls(cert, key));
    let app = Router::new().route("/healthz", get(healthz));
    let listener = TcpListener::bind(("127.0.0.1", port.parse::<u16>().expect("port")))
        .await
        .expect("bind");
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(app))
                .await;
        });
    }
}
