//! Faults without surprises (issue 18): races answer 409, a full disk is
//! not forever (and `/readyz` says so while it lasts), a timed-out request
//! never answers "nothing was disclosed" for work that commits, and idle
//! connections do not pile up.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;

use crate::client::*;
use crate::common::*;

const REPORTER: &str = "aandachtfunctionaris-sociaal";

/// `n` plain signals, submitted; their ids.
async fn signals(server: &Server, n: usize) -> Vec<String> {
    let mut rng = Rng::new(18);
    let bodies: Vec<Value> = (0..n).map(|_| plain_signal(&mut rng, 2026, 3)).collect();
    submit_all(server, &bodies).await
}

/// 8 identical referrals at once, for each of 20 signals: exactly one 201
/// per signal, every other answer a 409 problem+json, never a 5xx.
#[tokio::test]
async fn identical_concurrent_referrals_are_one_201_and_409s() {
    let server = Server::start(Opts::new()).await;
    let ids = signals(&server, 20).await;
    let regisseur = Role::of(&server, "zvhd", "ketenregisseur");
    let regisseur = &regisseur;
    let (mut created, mut conflicts) = (0, 0);
    for id in &ids {
        let answers: Vec<(u16, String, Value)> =
            futures::future::join_all((0..8).map(|_| async move {
                let res = regisseur.refer(id, "politie", "drieluik").await;
                let (status, ct) = (res.status().as_u16(), content_type(&res));
                (status, ct, res.json().await.expect("a JSON answer"))
            }))
            .await;
        let mine = answers.iter().filter(|a| a.0 == 201).count();
        assert_eq!(mine, 1, "signal {id}: {answers:?}");
        for (status, ct, body) in answers.iter().filter(|a| a.0 != 201) {
            assert_eq!(*status, 409, "{body}");
            assert_eq!(ct, "application/problem+json");
            assert_eq!(
                body["type"], "urn:ketenpoort:problem:already-referred",
                "{body}"
            );
        }
        created += mine;
        conflicts += answers.len() - mine;
    }
    println!("{created} referrals created, {conflicts} conflicts (409)");
    assert_eq!(created, 20);
    assert_eq!(conflicts, 20 * 7);
}

/// Unmounts a test's tmpfs when the test ends, however it ends.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A tmpfs of `size` at `dir`, or why not.
fn mount_tmpfs(dir: &Path, size: &str) -> Result<Mounted, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .output()
        .map_err(|e| format!("running mount: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
    }
    Ok(Mounted(dir.to_owned()))
}

/// Writes `path` until the file system is full (bounded by `limit` bytes).
fn fill(path: &Path, limit: usize) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("filler");
    let chunk = vec![0x5a_u8; 64 * 1024];
    let mut written = 0;
    while written < limit {
        match f.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => written += n,
        }
    }
    let _ = f.sync_all();
    assert!(written < limit, "the file system never filled up");
}

/// One submit: (status, request id, signal id if created).
async fn try_submit(reporter: &Role<'_>, body: &Value) -> (u16, String, Option<String>) {
    let res = reporter.post("/v1/signals", "signalering", body).await;
    let (status, rid) = (res.status().as_u16(), request_id(&res));
    if status == 201 {
        let v = ok_json(res, 201).await;
        return (status, rid, v["id"].as_str().map(str::to_owned));
    }
    let p = problem(res, status, None).await;
    assert_eq!(status, 503, "{p}");
    (status, rid, None)
}

/// On SQLite, a database on a full disk: requests 503 and `/readyz` 503
/// (saying why); once space is freed, requests succeed again within
/// seconds without a restart, the log verifies and every 201 has its entry.
#[tokio::test]
async fn a_full_disk_fails_requests_and_readiness_until_space_is_freed() {
    let data = DataDir::new().await;
    if data.is_postgres() {
        println!("skipped on PostgreSQL: the full disk is tested on SQLite");
        return;
    }
    let dir = data.file("small-disk");
    let _mounted = match mount_tmpfs(&dir, "24m") {
        Ok(m) => m,
        Err(why) => {
            println!("skipped: cannot mount a tmpfs for the database ({why})");
            return;
        }
    };
    let url = format!("sqlite://{}?mode=rwc", dir.join("ketenpoort.db").display());
    let server = Server::start_on(
        data.clone(),
        Opts::new().env("KETENPOORT_DATABASE__URL", &url),
    );
    let reporter = Role::of(&server, "emmen", REPORTER);
    let mut rng = Rng::new(7);
    let mut created = Vec::new();
    for _ in 0..5 {
        let (status, rid, _) = try_submit(&reporter, &plain_signal(&mut rng, 2026, 3)).await;
        assert_eq!(status, 201);
        created.push(rid);
    }

    fill(&dir.join("filler"), 64 << 20);
    let mut refused = 0;
    for _ in 0..400 {
        let (status, rid, _) = try_submit(&reporter, &plain_signal(&mut rng, 2026, 3)).await;
        if status == 201 {
            created.push(rid);
        } else {
            refused += 1;
            break;
        }
    }
    assert_eq!(refused, 1, "no submit failed on a full disk");
    let res = send(server.get("/readyz")).await;
    let p = problem(res, 503, None).await;
    let detail = p["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("disk is full"), "{p}");
    assert!(!detail.contains(&*dir.to_string_lossy()), "{p}");
    // It stays so while the disk is full.
    let (status, _, _) = try_submit(&reporter, &plain_signal(&mut rng, 2026, 3)).await;
    assert_eq!(status, 503);

    std::fs::remove_file(dir.join("filler")).expect("freeing the disk");
    let freed = Instant::now();
    let mut ready = false;
    while freed.elapsed() < Duration::from_secs(15) {
        if send(server.get("/readyz")).await.status() == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ready, "/readyz still 503 15 s after space was freed");
    for _ in 0..5 {
        let (status, rid, _) = try_submit(&reporter, &plain_signal(&mut rng, 2026, 3)).await;
        assert_eq!(status, 201);
        created.push(rid);
    }
    println!(
        "ready again {:?} after space was freed; {} submits created",
        freed.elapsed(),
        created.len()
    );

    let log = log_by_request(&server).await;
    for rid in &created {
        let entries = log.get(rid).map(Vec::as_slice).unwrap_or_default();
        assert!(
            entries.iter().any(|e| e["outcome"] == "disclosed"),
            "the submit {rid} answered 201 has no entry"
        );
    }
    let verify = data.cli(&["log", "verify", "--database-url", &url]);
    assert!(
        verify.status.success(),
        "log verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    drop(server);
}

/// With a log slower than the request timeout (the test holds the log's
/// write lock for 3 s), a request that answers 503 has no `disclosed` entry;
/// one whose work a batch took waits and gets its real answer.
#[tokio::test]
async fn a_timed_out_request_never_has_a_disclosed_entry() {
    use sqlx::Executor;
    let server = Server::start(
        Opts::new()
            .env("KETENPOORT_HTTP__REQUEST_TIMEOUT_SECS", 1)
            .env("KETENPOORT_HTTP__RATE_LIMIT_PER_SECOND", 100_000)
            .env("KETENPOORT_HTTP__RATE_LIMIT_BURST", 100_000),
    )
    .await;
    let mut rng = Rng::new(3);
    let reporters: Vec<Role> = MUNICIPALITIES
        .iter()
        .map(|m| Role::of(&server, m, REPORTER))
        .collect();
    let mut all = Vec::new();
    for _ in 0..3 {
        let bodies: Vec<Value> = (0..60).map(|_| plain_signal(&mut rng, 2026, 3)).collect();
        // The log is slow: its lock is held elsewhere for 3 s.
        let mut holder = server.data().hold_log_lock().await;
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            holder
                .execute("ROLLBACK")
                .await
                .expect("releasing the lock");
        });
        let answers: Vec<(u16, String, Duration)> =
            futures::stream::iter(bodies.iter().enumerate())
                .map(|(i, body)| {
                    let reporter = &reporters[i % reporters.len()];
                    async move {
                        let t = Instant::now();
                        let res = reporter.post("/v1/signals", "signalering", body).await;
                        let (status, rid) = (res.status().as_u16(), request_id(&res));
                        if status != 201 {
                            let p = problem(res, status, None).await;
                            assert_eq!(status, 503, "{p}");
                        }
                        (status, rid, t.elapsed())
                    }
                })
                .buffer_unordered(60)
                .collect()
                .await;
        release.await.expect("the lock holder");
        all.push(answers);
    }
    // Work that was queued when its request gave up would commit now, if
    // it was going to.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = log_by_request(&server).await;
    let mut total = (0, 0, 0);
    for (round, answers) in all.iter().enumerate() {
        let (mut timed_out, mut created, mut late_but_real) = (0, 0, 0);
        for (status, rid, took) in answers {
            let disclosed = log
                .get(rid)
                .into_iter()
                .flatten()
                .filter(|e| e["outcome"] == "disclosed")
                .count();
            if *status == 503 {
                timed_out += 1;
                assert_eq!(disclosed, 0, "request {rid} answered 503 but was disclosed");
            } else {
                created += 1;
                assert_eq!(disclosed, 1, "request {rid} answered 201");
                if *took > Duration::from_secs(1) {
                    late_but_real += 1;
                }
            }
        }
        println!(
            "round {round}: {created} created ({late_but_real} past the 1 s timeout with their \
             real answer), {timed_out} timed out with no entry"
        );
        total = (
            total.0 + created,
            total.1 + late_but_real,
            total.2 + timed_out,
        );
    }
    assert!(total.2 > 0, "no request timed out: the test did not test");
}

/// HTTP/1.1: a keep-alive connection waiting for its next request is kept
/// for the idle timeout (here 6 s), not closed at the header-read timeout
/// (here 2 s) — a client that reuses it after a pause must not race an
/// early close; a request head trickled in a byte at a time is closed at
/// the header-read timeout although bytes keep moving.
#[tokio::test]
async fn keep_alive_waits_the_idle_timeout_and_a_trickled_head_is_cut_off() {
    use tokio::io::AsyncWriteExt;
    let server = Server::start(
        Opts::new()
            .env("KETENPOORT_HTTP__IDLE_TIMEOUT_SECS", 6)
            .env("KETENPOORT_HTTP__HEADER_READ_TIMEOUT_SECS", 2),
    )
    .await;
    let mut kept = tls_connect(&server).await;
    kept.write_all(b"GET /healthz HTTP/1.1\r\nhost: ketenpoort\r\n\r\n")
        .await
        .expect("request");
    let took = closed_after(&mut kept, Duration::from_secs(15)).await;
    println!("a keep-alive connection was closed {took:?} after its request");
    assert!(
        took >= Duration::from_secs(4),
        "closed at {took:?}, before the idle timeout"
    );

    let slow = tls_connect(&server).await;
    let (mut rx, mut tx) = tokio::io::split(slow);
    let trickle = tokio::spawn(async move {
        let _ = tx
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: ketenpoort\r\n")
            .await;
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if tx.write_all(b"x").await.is_err() || tx.flush().await.is_err() {
                break;
            }
        }
    });
    let took = closed_after(&mut rx, Duration::from_secs(15)).await;
    println!("a trickled request head was cut off after {took:?}");
    assert!(
        took < Duration::from_secs(6),
        "a trickled head kept the connection {took:?}"
    );
    trickle.abort();
}

/// A TLS connection to `server` (HTTP/1.1 by ALPN), handshake done.
async fn tls_connect(server: &Server) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(server.data().file("tls/ca.pem")).expect("tls/ca.pem") {
        roots
            .add(c.expect("CA certificate"))
            .expect("adding the CA");
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(server.addr())
        .await
        .expect("connecting");
    let name = rustls_pki_types::ServerName::IpAddress(server.addr().ip().into());
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls))
        .connect(name, tcp)
        .await
        .expect("TLS handshake")
}

/// Reads until the server closes `conn` (at most `within`); how long that took.
async fn closed_after<S: tokio::io::AsyncRead + Unpin>(conn: &mut S, within: Duration) -> Duration {
    use tokio::io::AsyncReadExt;
    let t = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((t + within).into(), conn.read(&mut buf)).await {
            Err(_) => panic!("the server kept the connection open for {within:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return t.elapsed(),
            Ok(Ok(_)) => {}
        }
    }
}

/// Past `http.idle_timeout_secs` the server closes a connection that sent
/// nothing after its handshake, and a keep-alive connection after its last
/// answer; with `http.max_connections` reached, a new connection gets a
/// clean 503 problem+json, and a request succeeds once one has closed.
#[tokio::test]
async fn idle_connections_are_closed_and_the_connection_cap_refuses_cleanly() {
    use tokio::io::AsyncWriteExt;
    let server = Server::start(
        Opts::new()
            .env("KETENPOORT_HTTP__IDLE_TIMEOUT_SECS", 2)
            .env("KETENPOORT_HTTP__MAX_CONNECTIONS", 3),
    )
    .await;

    // Silent after the handshake.
    let mut silent = tls_connect(&server).await;
    let took = closed_after(&mut silent, Duration::from_secs(10)).await;
    println!("a silent connection was closed after {took:?}");
    assert!(took >= Duration::from_millis(1500), "{took:?}");

    // Idle after one request on a keep-alive connection.
    let mut kept = tls_connect(&server).await;
    kept.write_all(b"GET /healthz HTTP/1.1\r\nhost: ketenpoort\r\n\r\n")
        .await
        .expect("request");
    let took = closed_after(&mut kept, Duration::from_secs(10)).await;
    println!("a keep-alive connection was closed {took:?} after its request");

    // The cap: three idle connections hold every place.
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(tls_connect(&server).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let res = send(server.get("/healthz")).await;
    assert_eq!(header(&res, "retry-after").as_deref(), Some("1"));
    let p = problem(res, 503, None).await;
    println!("over the cap: {p}");
    // Once they time out, a request succeeds again.
    let t = Instant::now();
    let mut served = false;
    while t.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Ok(res) = server.client().get(server.url("/healthz")).send().await
            && res.status() == 200
        {
            served = true;
            break;
        }
    }
    assert!(
        served,
        "no request succeeded after the idle connections timed out"
    );
    drop(idle);
}

/// A TCP proxy to PostgreSQL that, once armed, forwards the client's
/// statement that locks the log head (and one more message), then stops
/// forwarding either way — a connection a firewall dropped mid-transaction.
struct Proxy {
    addr: std::net::SocketAddr,
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stopped: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn to(upstream: std::net::SocketAddr) -> Proxy {
        use std::sync::Arc;
        use std::sync::atomic::AtomicBool;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("proxy");
        let addr = listener.local_addr().expect("proxy address");
        let armed = Arc::new(AtomicBool::new(false));
        let stopped = Arc::new(AtomicBool::new(false));
        let (a, s) = (armed.clone(), stopped.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pipe(cr, sw, Some(a.clone()), s.clone()));
                tokio::spawn(pipe(sr, cw, None, s.clone()));
            }
        });
        Proxy {
            addr,
            armed,
            stopped,
            task,
        }
    }

    fn resume(&self) {
        self.armed.store(false, std::sync::atomic::Ordering::SeqCst);
        self.stopped
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to`, holding what it read while `stopped`; on the
/// client side (`trigger`), an armed proxy stops after the message after
/// the log head's `FOR UPDATE`.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    trigger: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    stopped: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::Ordering::SeqCst;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    // The chunk with the log head's `FOR UPDATE` went through.
    let mut locked = false;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Bounded: the test resumes or drops the proxy.
        for _ in 0..1200 {
            if !stopped.load(SeqCst) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
        if let Some(armed) = &trigger
            && armed.load(SeqCst)
        {
            if locked {
                stopped.store(true, SeqCst);
                armed.store(false, SeqCst);
                locked = false;
            } else if buf[..n].windows(10).any(|w| w == b"FOR UPDATE") {
                locked = true;
            }
        }
    }
}

/// Two instances on one PostgreSQL; one reaches it through a connection
/// that stops forwarding while its batch holds the log head. The other
/// keeps serving (within the stuck session's idle-in-transaction bound),
/// and the stuck one serves again once the connection resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_database_connection_does_not_stop_the_other_instance() {
    let data = DataDir::new().await;
    if !data.is_postgres() {
        println!("skipped on SQLite: this is PostgreSQL's fault (set {PG_ENV})");
        return;
    }
    let direct = data.database_url();
    let host = url_host_port(&direct);
    let upstream = tokio::net::lookup_host(&host)
        .await
        .ok()
        .and_then(|mut a| a.next())
        .expect("PostgreSQL's address");
    let healthy = Server::start_on(data.clone(), Opts::new());
    let proxy = Proxy::to(upstream).await;
    // In plain text, so the proxy can see the statement.
    let proxied = direct.replacen(&host, &proxy.addr.to_string(), 1) + "&sslmode=disable";
    let stuck = Server::start_on(
        data.clone(),
        Opts::new()
            .database_url(&proxied)
            .env("KETENPOORT_DATABASE__IDLE_IN_TRANSACTION_TIMEOUT_SECS", 3)
            .env("KETENPOORT_DATABASE__LOCK_TIMEOUT_SECS", 3)
            .env("KETENPOORT_DATABASE__STATEMENT_TIMEOUT_SECS", 3)
            // Shorter than the stuck request: answering it is not idleness.
            .env("KETENPOORT_HTTP__IDLE_TIMEOUT_SECS", 1),
    );
    let mut rng = Rng::new(5);
    let (a, b) = (
        Role::of(&healthy, "emmen", REPORTER),
        Role::of(&stuck, "emmen", REPORTER),
    );
    let (status, _, _) = try_submit(&a, &plain_signal(&mut rng, 2026, 3)).await;
    assert_eq!(status, 201);

    // The first batch of `stuck` locks the log head (its connections have
    // not prepared that statement yet, so the proxy sees its text), then
    // its connection goes silent.
    proxy.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    let body = plain_signal(&mut rng, 2026, 3);
    let hung = tokio::spawn({
        let stuck_url = stuck.url("/v1/signals");
        let client = stuck.client().clone();
        let token = stuck.token("emmen", REPORTER);
        async move {
            client
                .post(stuck_url)
                .bearer_auth(token)
                .header("ketenpoort-purpose", "signalering")
                .json(&body)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    });
    let t = Instant::now();
    let mut stopped = false;
    while t.elapsed() < Duration::from_secs(10) {
        if proxy.stopped.load(std::sync::atomic::Ordering::SeqCst) {
            stopped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(stopped, "the proxy never saw the log head locked");

    // The healthy instance serves again within the bounds.
    let t = Instant::now();
    let mut served = None;
    while t.elapsed() < Duration::from_secs(30) {
        let (status, _, _) = try_submit(&a, &plain_signal(&mut rng, 2026, 3)).await;
        if status == 201 {
            served = Some(t.elapsed());
            break;
        }
    }
    let served = served.expect("the healthy instance never served while the other was stuck");
    println!("the healthy instance served again {served:?} after the other got stuck");

    proxy.resume();
    let answered = tokio::time::timeout(Duration::from_secs(30), hung)
        .await
        .expect("the stuck request never answered");
    println!("the stuck request answered {answered:?}");
    let status = answered
        .expect("the request task")
        .expect("an HTTP answer, not a closed connection");
    assert_eq!(status, 503, "the stuck request answers 503");
    let t = Instant::now();
    let mut recovered = None;
    while t.elapsed() < Duration::from_secs(30) {
        let (status, _, _) = try_submit(&b, &plain_signal(&mut rng, 2026, 3)).await;
        if status == 201 {
            recovered = Some(t.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let recovered = recovered.expect("the stuck instance never recovered");
    println!("the stuck instance served again {recovered:?} after the connection resumed");
    let verify = data.cli(&["log", "verify"]);
    assert!(
        verify.status.success(),
        "log verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
}

/// `host:port` of a `postgres://user@host:port/db?...` URL.
fn url_host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split(['/', '?']).next().unwrap_or_default();
    let hostport = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:5432")
    }
}
