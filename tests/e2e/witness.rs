//! Witnessed checkpoints (issue 19): `ketenpoort witness serve` as separate
//! processes, the gateway handing them its checkpoints, cosignatures checked
//! by a verifier written here from the C2SP text (tlog-cosignature), split
//! views, rollbacks, a witness that is down, and incremental `log verify`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::StreamExt;
use reqwest::Method;
use ring::signature::{ED25519, Ed25519KeyPair, UnparsedPublicKey};

use crate::client::*;
use crate::common::*;

const ORIGIN: &str = "witness-test.example/ketenpoort/log";

// ---------------------------------------------------------------------------
// A verifier of cosignatures, from c2sp.org/tlog-cosignature alone.

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    ctx.finish().as_ref().try_into().unwrap()
}

/// A witness vkey: `<name>+<8 hex key id>+base64(0x04 || 32-byte key)`;
/// the key id must be SHA-256(name || "\n" || 0x04 || key)[:4].
fn parse_witness_key(vkey: &str) -> (String, [u8; 4], [u8; 32]) {
    let mut it = vkey.trim().splitn(3, '+');
    let (name, id, key) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
    let raw = STANDARD.decode(key).unwrap();
    assert_eq!(raw[0], 0x04, "cosignature/v1 keys have type 0x04");
    let public: [u8; 32] = raw[1..].try_into().unwrap();
    let id: [u8; 4] = hex::decode(id).unwrap().try_into().unwrap();
    let expected = sha256(&[name.as_bytes(), b"\n", &[0x04], &public]);
    assert_eq!(id, expected[..4], "key id of {vkey}");
    (name.to_owned(), id, public)
}

/// The note body (text) of a signed note: up to and including the newline
/// before the blank line.
fn note_body(note: &str) -> &str {
    let end = note.find("\n\n").expect("a signed note") + 1;
    &note[..end]
}

/// The timestamp of `vkey`'s valid cosignature among the signature lines
/// of `note`, if there is one. Signed message: "cosignature/v1\n",
/// "time <t>\n", then the note body; the signature is key id (4) ||
/// timestamp (8, big-endian) || Ed25519 signature (64).
fn cosigned_at(note: &str, vkey: &str) -> Option<u64> {
    let (name, id, public) = parse_witness_key(vkey);
    let body = note_body(note);
    let sigs = &note[body.len() + 1..];
    sigs.lines().find_map(|line| {
        let rest = line.strip_prefix("\u{2014} ")?;
        let (n, b64) = rest.split_once(' ')?;
        let raw = STANDARD.decode(b64).ok()?;
        if n != name || raw.len() != 4 + 8 + 64 || raw[..4] != id {
            return None;
        }
        let t = u64::from_be_bytes(raw[4..12].try_into().unwrap());
        let msg = format!("cosignature/v1\ntime {t}\n{body}");
        UnparsedPublicKey::new(&ED25519, public)
            .verify(msg.as_bytes(), &raw[12..])
            .ok()
            .map(|()| t)
    })
}

fn size_of(note: &str) -> u64 {
    note.lines().nth(1).unwrap().parse().unwrap()
}

// ---------------------------------------------------------------------------
// Witness processes.

struct Witness {
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    vkey: String,
    child: Option<Child>,
    addr: Option<std::net::SocketAddr>,
    log: PathBuf,
}

impl Witness {
    /// `witness init` in a fresh directory.
    fn init(name: &str) -> Witness {
        let tmp = tempfile::Builder::new()
            .prefix("ketenpoort-witness-")
            .tempdir()
            .unwrap();
        let dir = tmp.path().to_owned();
        let mut cmd = Command::new(bin());
        cmd.args(["witness", "init", "--name", name, "--dir"])
            .arg(&dir);
        hermetic(&mut cmd);
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let vkey = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        parse_witness_key(&vkey);
        Witness {
            log: dir.join("witness.log"),
            dir,
            _tmp: Some(tmp),
            vkey,
            child: None,
            addr: None,
        }
    }

    /// `witness serve` witnessing the log of `log_vkey`, on `listen`.
    fn start(&mut self, log_vkey: &str, listen: &str) {
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(bin());
        cmd.args([
            "witness", "serve", "--listen", listen, "--log", log_vkey, "--dir",
        ])
        .arg(&self.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(err));
        hermetic(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some((_, addr)) = line.split_once("listening on https://") {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("witness did not start: {}", self.logs()));
        self.addr = Some(addr.parse().unwrap());
        self.child = Some(child);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("https://{}", self.addr.expect("started"))
    }

    fn ca(&self) -> PathBuf {
        self.dir.join("tls/witness.pem")
    }

    fn name(&self) -> String {
        parse_witness_key(&self.vkey).0
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The `[[log.witnesses]]` entry of this witness.
    fn config(&self) -> String {
        format!(
            "[[log.witnesses]]\nurl = {:?}\nname = {:?}\nkey = {:?}\nca = {:?}\n",
            self.url(),
            self.name(),
            self.vkey,
            self.ca().display().to_string()
        )
    }

    /// POST /add-checkpoint: (status, content type, body).
    async fn add(&self, old: u64, proof: &[String], note: &str) -> (u16, String, String) {
        let mut body = format!("old {old}\n");
        for h in proof {
            body.push_str(h);
            body.push('\n');
        }
        body.push('\n');
        body.push_str(note);
        let res = client_trusting(&self.ca())
            .post(format!("{}/add-checkpoint", self.url()))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let ct = header(&res, "content-type").unwrap_or_default();
        (status, ct, res.text().await.unwrap())
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        self.stop();
    }
}

fn client_trusting(ca: &Path) -> reqwest::Client {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A free loopback port (bound and released).
fn free_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

// ---------------------------------------------------------------------------
// The gateway.

/// Server options: a fixed origin, checkpoints only on request, an admin
/// listener for /metrics, and `extra` TOML (witnesses).
fn opts(extra: &str) -> Opts {
    Opts::new()
        .env("KETENPOORT_HTTP__RATE_LIMIT_PER_SECOND", 1_000_000)
        .env("KETENPOORT_HTTP__RATE_LIMIT_BURST", 1_000_000)
        .env("KETENPOORT_LOG__CHECKPOINT_INTERVAL_SECS", 86_400)
        .env("KETENPOORT_LOG__CHECKPOINT_EVERY", 1_000_000_000)
        .config(&format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n[log]\norigin = {ORIGIN:?}\n{extra}"
        ))
}

/// Appends `n` entries, 16 requests at a time.
async fn grow(server: &Server, n: u64) {
    let fg = Role::of(server, "zvhd", "fg");
    futures::stream::iter(0..n)
        .for_each_concurrent(16, |_| async {
            fg.append_one().await;
        })
        .await;
}

async fn sign(server: &Server) -> String {
    Role::of(server, "zvhd", "fg").sign_checkpoint().await
}

async fn served(server: &Server) -> String {
    let res = Role::of(server, "zvhd", "fg")
        .get("/v1/log/checkpoint", None)
        .await;
    assert_eq!(res.status(), 200);
    res.text().await.unwrap()
}

/// Waits until the served checkpoint has `size` entries and a valid
/// cosignature by each of `witnesses`; returns it.
async fn cosigned_by(server: &Server, size: u64, witnesses: &[&Witness]) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let note = served(server).await;
        if size_of(&note) == size
            && witnesses
                .iter()
                .all(|w| cosigned_at(&note, &w.vkey).is_some())
        {
            return note;
        }
        assert!(
            Instant::now() < deadline,
            "checkpoint {size} not cosigned by all witnesses; served:\n{note}\nserver logs:\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn metrics(server: &Server) -> String {
    let admin = server.admin_url().expect("admin listener");
    server
        .client()
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of `metric{witness="name"}` on /metrics, if present.
fn metric(text: &str, metric: &str, witness: &str) -> Option<f64> {
    let prefix = format!("{metric}{{witness=\"{witness}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().parse().unwrap())
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A copy of `from`'s database and keys: the same log, signed with the same
/// key, as a rogue operator would keep to fork it.
async fn fork_of(from: &DataDir) -> std::sync::Arc<DataDir> {
    let copy = from.copy().await;
    let keys = copy.file("keys");
    std::fs::create_dir_all(&keys).unwrap();
    for e in std::fs::read_dir(from.file("keys")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), keys.join(e.file_name())).unwrap();
    }
    copy
}

fn verify(data: &DataDir, args: &[&str]) -> (bool, String) {
    let mut all = vec!["log", "verify"];
    all.extend_from_slice(args);
    let out = data.cli(&all);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

// ---------------------------------------------------------------------------
// Tests.

/// Two witnesses cosign the log's checkpoints; a fork of the same log,
/// signed with the same key (two databases sharing a prefix), is refused by
/// both, raises the alert, and fails `log verify --min-witnesses 2`.
#[tokio::test]
async fn witnesses_cosign_and_refuse_a_split_view() {
    let a_data = DataDir::new().await;
    let vkey = {
        let a = Server::start_on(a_data.clone(), opts(""));
        grow(&a, 40).await;
        Role::of(&a, "zvhd", "fg").verifier_key().await
    };
    let b_data = fork_of(&a_data).await;
    let (mut w1, mut w2) = (
        Witness::init("w1.example/witness"),
        Witness::init("w2.example/witness"),
    );
    w1.start(&vkey, "127.0.0.1:0");
    w2.start(&vkey, "127.0.0.1:0");
    let witnesses = format!("min_witnesses = 2\n{}{}", w1.config(), w2.config());
    let keys = ["--witness-key", &w1.vkey, "--witness-key", &w2.vkey];

    let a = Server::start_on(a_data.clone(), opts(&witnesses));
    grow(&a, 25).await;
    let note = sign(&a).await;
    let size = size_of(&note);
    let cosigned = cosigned_by(&a, size, &[&w1, &w2]).await;
    // The log's own signature line first, then one line per witness, each
    // a valid cosignature/v1 of the same body.
    assert_eq!(note_body(&cosigned), note_body(&note));
    assert_eq!(
        cosigned
            .lines()
            .filter(|l| l.starts_with('\u{2014}'))
            .count(),
        3
    );
    let now = now();
    for w in [&w1, &w2] {
        let t = cosigned_at(&cosigned, &w.vkey).unwrap();
        assert!(t <= now + 5 && t + 600 > now, "timestamp {t}");
    }
    // Another witness key verifies none of them.
    let stranger = Witness::init("w1.example/witness");
    assert_eq!(cosigned_at(&cosigned, &stranger.vkey), None);
    // The gauge follows the stored cosignature.
    wait_for("the cosigned size on /metrics", async || {
        metric(
            &metrics(&a).await,
            "ketenpoort_witness_cosigned_size",
            &w1.name(),
        ) == Some(size as f64)
    })
    .await;
    drop(a);
    let (ok, out) = verify(&a_data, &[&keys[..], &["--min-witnesses", "2"]].concat());
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!(
            "checkpoint {size} witnessed by w1.example/witness, w2.example/witness"
        )),
        "{out}"
    );

    // The fork: the same prefix of 40, then other entries, same key.
    let b = Server::start_on(b_data.clone(), opts(&witnesses));
    grow(&b, 30).await;
    let forked = sign(&b).await;
    let fork_size = size_of(&forked);
    wait_for("both witnesses to refuse the fork", async || {
        let m = metrics(&b).await;
        [&w1, &w2].iter().all(|w| {
            metric(&m, "ketenpoort_witness_refusals_total", &w.name()).is_some_and(|n| n >= 1.0)
        })
    })
    .await;
    assert!(
        // Refused as inconsistent, or (before the fork's own checkpoint)
        // its older checkpoint seen as a rollback: either way an alert.
        b.logs().contains("ALERT: the witness"),
        "{}",
        b.logs()
    );
    let served_fork = served(&b).await;
    assert_eq!(size_of(&served_fork), fork_size);
    assert_eq!(cosigned_at(&served_fork, &w1.vkey), None);
    assert_eq!(cosigned_at(&served_fork, &w2.vkey), None);
    // Each witness still holds A's checkpoint.
    assert!(
        w1.logs().contains("refused a checkpoint inconsistent"),
        "{}",
        w1.logs()
    );
    drop(b);
    let (ok, out) = verify(&b_data, &[&keys[..], &["--min-witnesses", "2"]].concat());
    assert!(!ok, "the fork verified with --min-witnesses 2: {out}");
    assert!(out.contains("not witnessed"), "{out}");
    // Without witnesses the fork is a well-formed log: only they catch it.
    let (ok, out) = verify(&b_data, &[]);
    assert!(ok, "{out}");
}

/// The protocol at the witness: rollbacks, truncations, a rewritten
/// history signed with the log's key, unknown logs and bad signatures are
/// refused with the spec's statuses; its state survives a restart.
#[tokio::test]
async fn the_witness_refuses_rollbacks_and_rewrites_and_keeps_its_state() {
    let server = Server::start(opts("")).await;
    let fg = Role::of(&server, "zvhd", "fg");
    let vkey = fg.verifier_key().await;
    grow(&server, 10).await;
    let n1 = sign(&server).await;
    grow(&server, 10).await;
    let n2 = sign(&server).await;
    let (s1, s2) = (size_of(&n1), size_of(&n2));
    let proof = |from: u64, to: u64| {
        let fg = &fg;
        async move {
            let v = ok_json(
                fg.get(
                    &format!("/v1/log/proofs/consistency?from={from}&to={to}"),
                    None,
                )
                .await,
                200,
            )
            .await;
            v["proof"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h.as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let mut w = Witness::init("w.example/witness");
    w.start(&vkey, "127.0.0.1:0");

    let (st, _, line) = w.add(0, &[], &n1).await;
    assert_eq!(st, 200, "{line}");
    assert!(line.starts_with("\u{2014} w.example/witness ") && line.ends_with('\n'));
    assert!(cosigned_at(&format!("{n1}{line}"), &w.vkey).is_some());
    // The first one again, from 0: the witness is at s1 now.
    assert_eq!(
        w.add(0, &[], &n1).await,
        (409, "text/x.tlog.size".into(), format!("{s1}\n"))
    );
    let (st, _, line) = w.add(s1, &proof(s1, s2).await, &n2).await;
    assert_eq!(st, 200, "{line}");
    assert!(cosigned_at(&format!("{n2}{line}"), &w.vkey).is_some());
    // Rolled back: an older checkpoint from the witness's size, or from its own.
    assert_eq!(w.add(s2, &[], &n1).await.0, 400);
    assert_eq!(
        w.add(s1, &[], &n1).await,
        (409, "text/x.tlog.size".into(), format!("{s2}\n"))
    );
    // The same size again is fine (the same root)...
    assert_eq!(w.add(s2, &[], &n2).await.0, 200);

    // ...another root at that size, or a larger tree whose proof does not
    // lead back to what the witness holds, signed with the log's own key
    // (a rewrite by whoever holds it), is not.
    let pair = {
        let pem = std::fs::read_to_string(server.data().file("keys/log-signing.pem")).unwrap();
        let der = pem::parse(pem).unwrap();
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(der.contents()).unwrap()
    };
    let rewritten = |size: u64, root: [u8; 32]| {
        sign_note(
            &vkey,
            &pair,
            &format!("{ORIGIN}\n{size}\n{}\n", STANDARD.encode(root)),
        )
    };
    assert_eq!(
        w.add(s2, &[], &rewritten(s2, [7; 32])).await,
        (409, "text/x.tlog.size".into(), format!("{s2}\n"))
    );
    let mut p = proof(s1, s2).await;
    p.push(STANDARD.encode([9u8; 32]));
    assert_eq!(w.add(s2, &p, &rewritten(s2 + 5, [8; 32])).await.0, 422);
    assert_eq!(w.add(s2, &[], &rewritten(s2 + 5, [8; 32])).await.0, 422);
    // A note not signed by the log's key, and a log it does not witness.
    let other = Ed25519KeyPair::from_pkcs8(
        Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
            .unwrap()
            .as_ref(),
    )
    .unwrap();
    let forged = sign_note(
        &vkey,
        &other,
        &format!("{ORIGIN}\n{}\n{}\n", s2 + 1, STANDARD.encode([1u8; 32])),
    );
    assert_eq!(w.add(s2, &[], &forged).await.0, 403);
    let unknown = n2.replace(ORIGIN, "elsewhere.example/log");
    assert_eq!(w.add(0, &[], &unknown).await.0, 404);
    assert_eq!(w.add(0, &[], "not a note").await.0, 400);
    let res = client_trusting(&w.ca())
        .request(Method::GET, format!("{}/add-checkpoint", w.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);

    // After a restart it holds s2 still.
    w.stop();
    w.start(&vkey, "127.0.0.1:0");
    assert_eq!(
        w.add(0, &[], &n1).await,
        (409, "text/x.tlog.size".into(), format!("{s2}\n"))
    );
    assert_eq!(w.add(s1, &proof(s1, s2).await, &n2).await.0, 409);
    grow(&server, 5).await;
    let n3 = sign(&server).await;
    let s3 = size_of(&n3);
    assert_eq!(w.add(s2, &proof(s2, s3).await, &n3).await.0, 200);
}

/// A C2SP signed note of `text` by `pair` under the name of `vkey` (key id
/// SHA-256(name || "\n" || 0x01 || key)[:4]).
fn sign_note(vkey: &str, pair: &Ed25519KeyPair, text: &str) -> String {
    use ring::signature::KeyPair;
    let name = vkey.split('+').next().unwrap();
    let id = &sha256(&[name.as_bytes(), b"\n", &[0x01], pair.public_key().as_ref()])[..4];
    let mut sig = id.to_vec();
    sig.extend_from_slice(pair.sign(text.as_bytes()).as_ref());
    format!("{text}\n\u{2014} {name} {}\n", STANDARD.encode(sig))
}

/// A witness that is down costs the log nothing: disclosures go on, the
/// checkpoint goes out with a cosignature fewer, the failures are counted;
/// once it is back, one request with one consistency proof catches it up.
#[tokio::test]
async fn a_witness_that_is_down_delays_nothing_and_catches_up() {
    let mut w = Witness::init("w.example/witness");
    let listen = free_port();
    // The configuration needs the witness's address before it starts.
    w.addr = Some(listen.parse().unwrap());
    let server = Server::start(opts(&w.config())).await;
    let vkey = Role::of(&server, "zvhd", "fg").verifier_key().await;
    w.start(&vkey, &listen);
    let first = sign(&server).await;
    cosigned_by(&server, size_of(&first), &[&w]).await;
    w.stop();

    let melder = Role::of(&server, "emmen", "aandachtfunctionaris-sociaal");
    let signal: serde_json::Value =
        serde_json::from_str(include_str!("../../examples/signal.json")).unwrap();
    for _ in 0..3 {
        // Answered with a receipt: the disclosure did not wait.
        melder.submit(&signal).await;
        grow(&server, 10).await;
        sign(&server).await;
    }
    wait_for("failures to be counted", async || {
        metric(
            &metrics(&server).await,
            "ketenpoort_witness_failures_total",
            &w.name(),
        )
        .is_some_and(|n| n >= 1.0)
    })
    .await;
    let latest = served(&server).await;
    assert_eq!(cosigned_at(&latest, &w.vkey), None);
    let m = metrics(&server).await;
    assert!(
        metric(&m, "ketenpoort_witness_lag_entries", &w.name()).is_some_and(|n| n > 0.0),
        "{m}"
    );
    let logs = server.logs_flushed().await;
    assert!(logs.contains("witness unavailable"), "{logs}");

    let before = w.logs().matches("\"cosigned\"").count();
    w.start(&vkey, &listen);
    let size = size_of(&latest);
    cosigned_by(&server, size, &[&w]).await;
    let logs = w.logs();
    let after: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("\"cosigned\""))
        .skip(before)
        .collect();
    assert_eq!(after.len(), 1, "{logs}");
    assert!(
        after[0].contains(&format!("\"old\":{}", size_of(&first)))
            && after[0].contains(&format!("\"size\":{size}")),
        "{}",
        after[0]
    );
}

/// `log verify --since FILE` reads only what was added since the checkpoint
/// in FILE and writes the newest; a rewritten history (a fork that shares
/// the first entries, signed with the log's key) fails it through the
/// consistency proof, though it verifies whole on its own.
#[tokio::test]
async fn incremental_verify_reads_only_new_entries() {
    const OLD: u64 = 20_000;
    const NEW: u64 = 1_000;
    let data = DataDir::new().await;
    let server = Server::start_on(data.clone(), opts(""));
    grow(&server, OLD - 200).await;
    let fork = fork_of(&data).await;
    grow(&server, 200).await;
    let old = size_of(&sign(&server).await);
    let kept = data.file("verified.note");
    let kept_arg = kept.to_str().unwrap();

    // No file yet: a full run that writes it.
    let (ok, out) = verify(&data, &["--since", kept_arg]);
    assert!(ok, "{out}");
    let full_read: u64 = read_count(&out);
    assert!(full_read >= old, "{out}");
    let note = std::fs::read_to_string(&kept).unwrap();
    let verified = size_of(&note);
    assert!(verified >= old, "{note}");

    grow(&server, NEW).await;
    let newest = size_of(&sign(&server).await);
    let (ok, out) = verify(&data, &["--since", kept_arg]);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!(
            "consistent with the checkpoint of size {verified} verified before"
        )),
        "{out}"
    );
    let read = read_count(&out);
    let size: u64 = out
        .strip_prefix("log verified: ")
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert_eq!(read, size - verified, "{out}");
    assert!(
        (NEW..NEW + 50).contains(&read),
        "read {read} entries: {out}"
    );
    assert_eq!(size_of(&std::fs::read_to_string(&kept).unwrap()), newest);

    // Nothing new: nothing read.
    let (ok, out) = verify(&data, &["--since", kept_arg]);
    assert!(ok, "{out}");
    assert!(read_count(&out) <= 2, "{out}");

    // The fork: the first OLD - 200 entries, then its own, re-signed.
    drop(server);
    let rogue = Server::start_on(fork.clone(), opts(""));
    grow(&rogue, 2_000).await;
    sign(&rogue).await;
    drop(rogue);
    let (ok, out) = verify(&fork, &[]);
    assert!(ok, "the fork is a well-formed log on its own: {out}");
    let held = fork.file("held.note");
    std::fs::copy(&kept, &held).unwrap();
    let (ok, out) = verify(&fork, &["--since", held.to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("not consistent with the checkpoint verified before"),
        "{out}"
    );
    assert!(out.contains("no consistency proof"), "{out}");

    // The limit the README states: an old entry's bytes changed with the
    // tree left as it was are not read by an incremental run; a full run
    // finds them.
    {
        let mut conn = data.connect().await;
        let leaf: Vec<u8> = sqlx::query_scalar("SELECT leaf FROM log_entries WHERE idx = 10")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        let changed = crate::leaves::replace_once(&leaf, "zvhd", "zvhe");
        sqlx::query("UPDATE log_entries SET leaf = $1 WHERE idx = 10")
            .bind(changed)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let (ok, out) = verify(&data, &["--since", kept_arg]);
    assert!(ok, "{out}");
    assert!(read_count(&out) <= 2, "{out}");
    let (ok, out) = verify(&data, &[]);
    assert!(!ok && out.contains("first bad index 10"), "{out}");
}

fn read_count(out: &str) -> u64 {
    out.lines()
        .find_map(|l| {
            l.split_once("read ")
                .and_then(|(_, r)| r.split(' ').next())
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or_else(|| panic!("no count read in {out}"))
}

/// `serve --demo` runs two witnesses of its own: the demo's checkpoint
/// carries two cosignatures that verify here, and with `log verify`.
#[tokio::test]
async fn the_demo_checkpoint_carries_two_cosignatures() {
    let server = Server::start(Opts::new().env("KETENPOORT_LOG__DEMO_WITNESSES", "true")).await;
    grow(&server, 3).await;
    let size = size_of(&sign(&server).await);
    let mut vkeys = Vec::new();
    for n in 1..=2 {
        // `witness init` on an existing witness directory keeps its key and
        // prints its verifier key.
        let dir = server.data().file(&format!("demo/witnesses/w{n}"));
        let name = format!("witness-{n}.demo.ketenpoort.example/w{n}");
        let mut cmd = Command::new(bin());
        cmd.args(["witness", "init", "--name", &name, "--dir"])
            .arg(&dir);
        hermetic(&mut cmd);
        let out = cmd.output().unwrap();
        assert!(out.status.success());
        vkeys.push(String::from_utf8(out.stdout).unwrap().trim().to_owned());
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let note = loop {
        let note = served(&server).await;
        if size_of(&note) == size && vkeys.iter().all(|k| cosigned_at(&note, k).is_some()) {
            break note;
        }
        assert!(Instant::now() < deadline, "{note}\n{}", server.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        note.lines().filter(|l| l.starts_with('\u{2014}')).count(),
        3,
        "{note}"
    );
    let (ok, out) = verify(
        server.data(),
        &[
            "--witness-key",
            &vkeys[0],
            "--witness-key",
            &vkeys[1],
            "--min-witnesses",
            "2",
        ],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("checkpoint {size} witnessed by witness-1.demo")),
        "{out}"
    );
}
