//! The HTTPS server: TLS with rustls on a plain accept loop, HTTP/1.1 and
//! HTTP/2 by hyper, graceful shutdown on SIGTERM or Ctrl-C.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::api::{self, AppState, Services};
use crate::auth::{Authenticator, Gate, RateLimit, Verifier};
use crate::boundary::{Boundary, EGRESS_KEY, EgressGuard};
use crate::config::Config;
use crate::crypto::cursor::Cursors;
use crate::crypto::envelope::Keyring;
use crate::crypto::{PSEUDONYM_KEY, Pseudonymizer};
use crate::keys::KeyStore;
use crate::ledger::Ledger;
use crate::partners::Registry;
use crate::phenomena::{PERTURBATION_KEY, Phenomena};
use crate::policy::{PolicyEngine, VerificationKeys};
use crate::signals::Vault;
use crate::store::Db;
use crate::{demo, retention, telemetry, tls};

/// Creates every key `serve` needs, never replacing one: the token issuer,
/// the log signing key, the pseudonym key, the egress guard's fingerprint
/// key, the perturbation secret of the phenomenon tables and the first KEK.
/// After this, `serve` writes nothing into the key directory, so several
/// instances can share one prepared (read-only) copy of it.
pub fn init_service_keys(store: &KeyStore) -> anyhow::Result<()> {
    store.ensure_ed25519(crate::keys::TOKEN_ISSUER)?;
    store.ensure_ed25519(crate::ledger::LOG_KEY)?;
    store.ensure_secret(PSEUDONYM_KEY)?;
    store.ensure_secret(EGRESS_KEY)?;
    store.ensure_secret(PERTURBATION_KEY)?;
    Keyring::load(store)?;
    Ok(())
}

/// `ketenpoort serve`: open storage, (with `--demo`) initialise the demo
/// region, then serve until told to stop.
pub async fn run(cfg: Config, demo: bool) -> anyhow::Result<()> {
    let policy = PolicyEngine::load(
        cfg.policy.path.clone(),
        VerificationKeys::from_config(&cfg.policy)?,
    )
    .with_context(|| format!("the policies at {} were refused", cfg.policy.path.display()))?;
    let db = Db::connect(&cfg.database_url(), cfg.database.max_connections).await?;
    db.migrate().await?;
    if demo {
        demo::init(&cfg, &db, policy.current().data()).await?;
    }
    let admin_tls = admin_tls(&cfg)?;
    let registry = Registry::new(db.clone(), Duration::from_secs(cfg.auth.partner_cache_secs));
    let keys = KeyStore::new(&cfg.data_dir);
    keys.ensure_secret(PSEUDONYM_KEY)?;
    let auth = Authenticator::new(
        Verifier::from_config(&cfg)?,
        registry,
        Pseudonymizer::new(&*keys.secret(PSEUDONYM_KEY)?),
        cfg.tls.client_ca.is_some(),
    );
    keys.ensure_secret(EGRESS_KEY)?;
    keys.ensure_secret(PERTURBATION_KEY)?;
    let ledger = Ledger::open(db.clone(), &keys, &cfg.log_origin()).await?;
    // A signed checkpoint exists from the start, so reading one never
    // has to write.
    ledger.checkpoint().await?;
    tokio::spawn(ledger.clone().checkpointer(
        cfg.log.checkpoint_every,
        Duration::from_secs(cfg.log.checkpoint_interval_secs.max(1)),
    ));
    let phenomena = Phenomena::new(db.clone(), policy.clone(), &cfg.phenomena, &keys)?;
    if cfg.phenomena.auto_publish {
        // The release of any period that closed while no instance ran.
        if let Err(e) = phenomena.publish_due().await {
            tracing::error!(error = %e, "publishing the phenomenon release failed");
        }
        tokio::spawn(phenomena.clone().publisher(Duration::from_secs(
            cfg.phenomena.check_interval_secs.max(1),
        )));
    }
    let egress = EgressGuard::new(db.clone(), &*keys.secret(EGRESS_KEY)?);
    let rate_limit = RateLimit::new(cfg.http.rate_limit_per_second, cfg.http.rate_limit_burst);
    let state = AppState::new(Services {
        config: Arc::new(cfg.clone()),
        gate: Gate::new(auth, rate_limit, ledger.clone(), policy.clone()),
        boundary: Boundary::new(policy.clone(), egress.clone(), ledger.clone()),
        egress,
        db,
        metrics: Some(telemetry::install_metrics()?),
        policy,
        ledger,
        pseudonyms: Pseudonymizer::new(&*keys.secret(PSEUDONYM_KEY)?),
        cursors: Cursors::new(&*keys.secret(PSEUDONYM_KEY)?),
        vault: Vault::new(Keyring::load(&keys)?),
        phenomena,
    });
    tokio::spawn(retention::run(state.db.clone(), cfg.retention.clone()));
    tokio::spawn(reload_on_sighup(state.policy.clone()));
    if let Some(addr) = cfg.admin.listen {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (admin.listen)"))?;
        let local = listener.local_addr()?;
        let admin = api::admin_app(state.clone());
        let scheme = match admin_tls {
            Some(tls) => {
                tokio::spawn(serve(listener, tls, admin, std::future::pending()));
                "https"
            }
            None => {
                tokio::spawn(async move { axum::serve(listener, admin).await });
                "http"
            }
        };
        println!("ketenpoort admin listening on {scheme}://{local}");
        tracing::info!(addr = %local, "admin listening");
    }
    let app = api::app(state, &cfg);
    let tls = tls::server_config(&cfg)?;
    let listener = TcpListener::bind(cfg.http.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.http.listen))?;
    let addr = listener.local_addr()?;
    if demo {
        demo::print_banner(&cfg, addr);
    }
    // Scripts and tests wait for this exact line.
    println!("ketenpoort listening on https://{addr}");
    tracing::info!(%addr, "listening");
    serve(listener, tls, app, shutdown_signal()).await;
    tracing::info!("stopped");
    Ok(())
}

async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    stop: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        let (tcp, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let Ok(Ok(stream)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
            else {
                metrics::counter!("ketenpoort_tls_handshake_failures_total").increment(1);
                return;
            };
            let client = tls::ClientCertificate::of(stream.get_ref().1);
            let svc =
                app.map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(client);
                    req
                });
            let mut builder = auto::Builder::new(TokioExecutor::new());
            // hyper's own limits, above the documented ones that
            // `api::headers` answers with problem+json.
            builder.http1().max_headers(api::headers::HTTP1_MAX_FIELDS);
            builder
                .http2()
                .max_header_list_size(api::headers::HTTP2_MAX_HEADER_LIST);
            let conn = builder.serve_connection_with_upgrades(
                TokioIo::new(stream),
                TowerToHyperService::new(svc),
            );
            let _ = watcher.watch(conn.into_owned()).await;
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(20), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 20s; stopping anyway");
    }
}

/// The admin listener's TLS configuration, if it uses TLS. Plain HTTP is
/// refused on anything but a loopback address: an operator interface on a
/// network needs TLS and operator client certificates.
fn admin_tls(cfg: &Config) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
    let Some(addr) = cfg.admin.listen else {
        return Ok(None);
    };
    match &cfg.admin.client_ca {
        Some(ca) => Ok(Some(tls::admin_server_config(cfg, ca)?)),
        None if addr.ip().is_loopback() => Ok(None),
        None => anyhow::bail!(
            "admin.listen {addr} is not a loopback address: plain HTTP is refused there; set admin.client_ca \
             (TLS with operator client certificates) or listen on a loopback address"
        ),
    }
}

/// SIGHUP reloads the policies; a failing bundle leaves the running ones
/// (`PolicyEngine::reload` logs the outcome).
async fn reload_on_sighup(policy: PolicyEngine) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        let policy = policy.clone();
        let _ = tokio::task::spawn_blocking(move || policy.reload()).await;
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}
