//! The HTTPS server: TLS with rustls on a plain accept loop, HTTP/1.1 and
//! HTTP/2 by hyper, graceful shutdown on SIGTERM or Ctrl-C.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::response::IntoResponse;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::api::{self, AppState, Services};
use crate::auth::{Authenticator, Gate, RateLimit, Signer, Verifier};
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
pub async fn run(mut cfg: Config, demo: bool) -> anyhow::Result<()> {
    let policy = PolicyEngine::load(
        cfg.policy.path.clone(),
        VerificationKeys::from_config(&cfg.policy)?,
    )
    .with_context(|| match &cfg.policy.path {
        Some(path) => format!("the policies at {} were refused", path.display()),
        None => "the embedded default policies were refused".to_owned(),
    })?;
    let db = Db::connect_bounded(
        &cfg.database_url(),
        cfg.database.max_connections,
        (&cfg.database).into(),
    )
    .await?;
    db.migrate().await?;
    if demo {
        demo::init(&cfg, &db, policy.current().data()).await?;
    }
    let admin_tls = admin_tls(&cfg)?;
    let registry = Registry::new(db.clone(), Duration::from_secs(cfg.auth.partner_cache_secs));
    let keys = KeyStore::new(&cfg.data_dir);
    keys.ensure_secret(PSEUDONYM_KEY)?;
    // One pseudonymizer: subjects' pseudonyms, users' and trace ids'
    // references all come from the one key.
    let pseudonyms = Pseudonymizer::new(&*keys.secret(PSEUDONYM_KEY)?);
    // The partner listener is bound before anything reads the public URL:
    // unset, it is the address actually bound (port 0 included).
    let tls = tls::server_config(&cfg)?;
    let listener = TcpListener::bind(cfg.http.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.http.listen))?;
    let addr = listener.local_addr()?;
    if cfg.auth.public_url.is_none() {
        cfg.auth.public_url = Some(format!("https://{addr}"));
    }
    let verifier = Verifier::from_config(&cfg)?;
    // The external issuers' key sets, fetched before the first request.
    verifier.start().await;
    let auth = Authenticator::new(
        verifier,
        registry,
        pseudonyms.clone(),
        cfg.tls.client_ca.is_some(),
    );
    keys.ensure_secret(EGRESS_KEY)?;
    keys.ensure_secret(PERTURBATION_KEY)?;
    let ledger = Ledger::open(db.clone(), &keys, &cfg.log_origin(), pseudonyms.clone()).await?;
    // A signed checkpoint exists from the start, so reading one never
    // has to write.
    ledger.checkpoint().await?;
    tokio::spawn(ledger.clone().checkpointer(
        cfg.log.checkpoint_every,
        Duration::from_secs(cfg.log.checkpoint_interval_secs.max(1)),
    ));
    // Witnesses cosign checkpoints in the background, never on a request's path.
    let mut witnesses = cfg.log.witnesses.clone();
    if demo && cfg.log.demo_witnesses {
        witnesses.extend(demo::start_witnesses(&cfg, ledger.verifier_key()).await?);
    }
    crate::witness::submit::start(&ledger, &witnesses)?;
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
    if let Some(endpoint) = &cfg.telemetry.otlp_endpoint {
        telemetry::otlp::start(endpoint, &cfg.telemetry.service_name)?;
    }
    let egress = EgressGuard::new(db.clone(), &*keys.secret(EGRESS_KEY)?);
    let rate_limit = RateLimit::new(cfg.http.rate_limit_per_second, cfg.http.rate_limit_burst);
    let state = AppState::new(Services {
        config: Arc::new(cfg.clone()),
        gate: Gate::new(
            auth,
            rate_limit,
            ledger.clone(),
            policy.clone(),
            Signer::load(&cfg)?,
        ),
        boundary: Boundary::new(policy.clone(), egress.clone(), ledger.clone()),
        egress,
        db,
        metrics: Some(telemetry::install_metrics()?),
        policy,
        ledger,
        pseudonyms,
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
                let limits = Limits::of(&cfg.http);
                tokio::spawn(serve(listener, tls, admin, limits, std::future::pending()));
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
    let console = if cfg.console.enabled {
        let console = crate::console::Console::new(state.clone(), demo)?;
        tokio::spawn(crate::console::purge_sessions(console.clone()));
        Some(crate::console::router(console))
    } else {
        None
    };
    let app = api::app(state, &cfg, console);
    if demo {
        demo::print_banner(&cfg, addr);
    }
    if cfg.console.enabled {
        println!("ketenpoort console on https://{addr}/console/");
    }
    // Scripts and tests wait for this exact line.
    println!("ketenpoort listening on https://{addr}");
    tracing::info!(%addr, "listening");
    serve(listener, tls, app, Limits::of(&cfg.http), shutdown_signal()).await;
    tracing::info!("stopped");
    Ok(())
}

/// What one listener allows its clients (`http.*`).
#[derive(Clone, Copy)]
struct Limits {
    header_read: Duration,
    idle: Duration,
    connections: usize,
    streams: u32,
}

impl Limits {
    fn of(http: &crate::config::HttpConfig) -> Self {
        Self {
            header_read: Duration::from_secs(http.header_read_timeout_secs.max(1)),
            idle: Duration::from_secs(http.idle_timeout_secs.max(1)),
            connections: http.max_connections.max(1),
            streams: http.max_concurrent_streams.max(1),
        }
    }
}

/// Connections over the cap that are being told so at once (a TLS
/// handshake and a 503); beyond these, the socket is just closed.
const REFUSALS_AT_ONCE: usize = 64;

async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    limits: Limits,
    stop: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    let open = Arc::new(Semaphore::new(limits.connections));
    let refusing = Arc::new(Semaphore::new(REFUSALS_AT_ONCE));
    let mut backoff = Duration::ZERO;
    tokio::pin!(stop);
    loop {
        let (tcp, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => {
                    backoff = Duration::ZERO;
                    c
                }
                Err(e) => {
                    // Out of file descriptors (EMFILE/ENFILE) or another
                    // transient error: back off up to a second instead of
                    // spinning, and say so once per run of errors.
                    if backoff.is_zero() {
                        tracing::warn!(error = %e, "accept failed; backing off");
                    }
                    metrics::counter!("ketenpoort_accept_errors_total").increment(1);
                    backoff = (backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => continue,
                        () = &mut stop => break,
                    }
                }
            },
            () = &mut stop => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let Ok(permit) = open.clone().try_acquire_owned() else {
            metrics::counter!("ketenpoort_connections_refused_total").increment(1);
            if let Ok(turn) = refusing.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    refuse(acceptor, tcp, limits).await;
                    drop(turn);
                });
            }
            continue;
        };
        let app = app.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let Ok(Ok(stream)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
            else {
                metrics::counter!("ketenpoort_tls_handshake_failures_total").increment(1);
                return;
            };
            let client = tls::ClientCertificate::of(stream.get_ref().1);
            // HTTP/1.1 gets the header-read bound; HTTP/2 frames its own.
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            let head = (!h2).then_some(limits.header_read);
            let idle = Idle::new(stream, limits.idle, head);
            let busy = idle.busy.clone();
            let started = idle.started.clone();
            let svc = app
                .map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(client);
                    req
                })
                .map_future(move |answer| {
                    started.fetch_add(1, Ordering::AcqRel);
                    let working = Busy::enter(&busy);
                    async move {
                        let res = answer.await;
                        drop(working);
                        res
                    }
                });
            let http = builder(limits);
            let conn = http
                .serve_connection_with_upgrades(TokioIo::new(idle), TowerToHyperService::new(svc));
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

/// HTTP/1.1 and HTTP/2 with the listener's limits.
fn builder(limits: Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The header-read bound is `Idle`'s, not hyper's: hyper's also runs
    // while a keep-alive connection waits for its next request, and so
    // closed idle connections after it (10 s), abruptly, racing clients
    // that reuse them, instead of after `http.idle_timeout_secs`.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.streams);
    // hyper's own limits, above the documented ones that `api::headers`
    // answers with problem+json.
    builder.http1().max_headers(api::headers::HTTP1_MAX_FIELDS);
    builder
        .http2()
        .max_header_list_size(api::headers::HTTP2_MAX_HEADER_LIST);
    builder
}

/// A connection over `http.max_connections`: every request on it gets 503
/// problem+json, and it is closed (briefly: the handshake and the answer
/// get a few seconds).
async fn refuse(acceptor: TlsAcceptor, tcp: tokio::net::TcpStream, limits: Limits) {
    let brief = Duration::from_secs(3);
    let Ok(Ok(stream)) = tokio::time::timeout(brief, acceptor.accept(tcp)).await else {
        return;
    };
    let svc = hyper::service::service_fn(|_req| async {
        let mut res = crate::problem::Problem::unavailable(
            "this instance has as many connections as it accepts; retry shortly",
        )
        .into_response();
        res.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("1"),
        );
        res.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
        Ok::<_, std::convert::Infallible>(res)
    });
    let mut b = builder(limits);
    b.http1().keep_alive(false);
    let conn = b.serve_connection(TokioIo::new(Idle::new(stream, brief, None)), svc);
    let _ = tokio::time::timeout(brief, conn).await;
}

/// A connection's transport that fails once no byte has moved either way
/// for `idle` while no request on it is being answered: an idle keep-alive
/// connection, or a client that connected and sends nothing, is closed.
/// On HTTP/1.1 (`head`), a request's head must also arrive within `head`
/// of the connection's start (the first request) or of its first byte (a
/// later one): a client that trickles its headers is closed, while an idle
/// keep-alive connection waits the whole `idle`.
struct Idle<S> {
    inner: S,
    idle: Duration,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// Requests on this connection being answered now.
    busy: Arc<AtomicUsize>,
    /// Requests on this connection handed to the service so far: one more
    /// than when the head clock started means that head arrived.
    started: Arc<AtomicUsize>,
    head: Option<Duration>,
    /// The head clock: its deadline and `started` when it began.
    head_deadline: Option<(std::pin::Pin<Box<tokio::time::Sleep>>, usize)>,
}

/// One request being answered (see [`Idle`]).
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn enter(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<S> Idle<S> {
    fn new(inner: S, idle: Duration, head: Option<Duration>) -> Self {
        Self {
            inner,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
            busy: Arc::new(AtomicUsize::new(0)),
            started: Arc::new(AtomicUsize::new(0)),
            head,
            // The first request's head is due from the connection's start.
            head_deadline: head.map(|h| (Box::pin(tokio::time::sleep(h)), 0)),
        }
    }

    /// Keeps the head clock: stops it once its request reached the
    /// service, starts it at the first byte of a new request.
    fn head_clock(&mut self, got_bytes: bool) {
        let started = self.started.load(Ordering::Acquire);
        if self
            .head_deadline
            .as_ref()
            .is_some_and(|(_, at)| *at != started)
        {
            self.head_deadline = None;
        }
        if let Some(head) = self.head
            && got_bytes
            && self.head_deadline.is_none()
            && self.busy.load(Ordering::Acquire) == 0
        {
            self.head_deadline = Some((Box::pin(tokio::time::sleep(head)), started));
        }
    }

    fn moved(&mut self) {
        let next = tokio::time::Instant::now() + self.idle;
        self.deadline.as_mut().reset(next);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Idle<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let before = buf.filled().len();
        match std::pin::Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                let got = buf.filled().len() > before;
                if got {
                    self.moved();
                }
                self.head_clock(got);
                Poll::Ready(r)
            }
            Poll::Pending => {
                self.head_clock(false);
                let waiting = self.busy.load(Ordering::Acquire) == 0;
                if let Some((clock, _)) = self.head_deadline.as_mut()
                    && waiting
                    && clock.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "request head not received in time",
                    )));
                }
                self.poll_idle(cx)
            }
        }
    }
}

impl<S> Idle<S> {
    fn poll_idle(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        match self.deadline.as_mut().poll(cx) {
            // A slow answer is not idleness: wait another round.
            Poll::Ready(()) if self.busy.load(Ordering::Acquire) > 0 => {
                self.moved();
                let _ = self.deadline.as_mut().poll(cx);
                Poll::Pending
            }
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "idle connection",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Idle<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.moved();
        }
        r
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
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
