//! The harness: a data directory (with its database), a running server, an
//! HTTPS client that trusts the demo CA, tokens, and the CLI.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use reqwest::header::CONTENT_TYPE;
use reqwest::{Response, StatusCode};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use sqlx::{Connection, Row};

/// The binary cargo built for this test run.
const CARGO_BIN: &str = env!("CARGO_BIN_EXE_ketenpoort");

/// Set to a PostgreSQL URL to run every server on PostgreSQL, each in a
/// fresh schema of that database.
pub const PG_ENV: &str = "KETENPOORT_TEST_DATABASE_URL";

const START_TIMEOUT: Duration = Duration::from_secs(60);
const LISTENING: &str = "ketenpoort listening on https://";
const ADMIN_LISTENING: &str = "ketenpoort admin listening on ";

/// The binary under test, pinned for the whole test process.
/// `KETENPOORT_TEST_BIN` names another one (a release build, say).
///
/// Several checkouts share one target directory here, and
/// `target/debug/ketenpoort` is whichever of them linked last. So: if that
/// file was not built from this checkout (its debug info names another
/// compilation directory), take this checkout's build from `deps/`; then keep
/// the file open and run it through `/proc/<pid>/fd/<n>`, so a later link by
/// another build cannot swap it underneath a running suite.
pub fn bin() -> &'static Path {
    static BIN: OnceLock<(std::fs::File, PathBuf)> = OnceLock::new();
    let (_, path) = BIN.get_or_init(|| {
        let chosen = match std::env::var_os("KETENPOORT_TEST_BIN") {
            Some(p) => PathBuf::from(p),
            None => this_checkouts_binary().unwrap_or_else(|| PathBuf::from(CARGO_BIN)),
        };
        let file =
            std::fs::File::open(&chosen).unwrap_or_else(|e| panic!("{}: {e}", chosen.display()));
        use std::os::fd::AsRawFd;
        let pinned = PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            file.as_raw_fd()
        ));
        let path = if pinned.exists() { pinned } else { chosen };
        (file, path)
    });
    path
}

/// Whether the binary at `p` was compiled in this checkout; None when its
/// debug info cannot tell.
fn built_here(p: &Path) -> Option<bool> {
    let elf = std::fs::read(p).ok()?;
    debug_strings_contain(&elf, env!("CARGO_MANIFEST_DIR").as_bytes())
}

fn this_checkouts_binary() -> Option<PathBuf> {
    let cargo_bin = PathBuf::from(CARGO_BIN);
    match built_here(&cargo_bin) {
        Some(true) => return Some(cargo_bin),
        None => return None, // no debug info to tell: trust cargo
        Some(false) => {}
    }
    let found = build_in_deps(cargo_bin.parent()?);
    match &found {
        Some(p) => eprintln!(
            "e2e: {CARGO_BIN} is another checkout's build; using {}",
            p.display()
        ),
        None => eprintln!(
            "e2e: {CARGO_BIN} may be another checkout's build, and none of this checkout's was found"
        ),
    }
    found
}

/// The newest `ketenpoort` binary in `target/deps` built from this checkout.
fn build_in_deps(target: &Path) -> Option<PathBuf> {
    let mut candidates: Vec<(SystemTime, PathBuf)> = std::fs::read_dir(target.join("deps"))
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().into_string().ok()?;
            let hash = name.strip_prefix("ketenpoort-")?;
            let is_bin = hash.len() == 16
                && hash.bytes().all(|b| b.is_ascii_hexdigit())
                && target
                    .join(format!(".fingerprint/{name}/bin-ketenpoort"))
                    .exists();
            if !is_bin {
                return None;
            }
            Some((e.metadata().ok()?.modified().ok()?, e.path()))
        })
        .collect();
    candidates.sort();
    candidates
        .into_iter()
        .rev()
        .map(|(_, p)| p)
        .find(|p| built_here(p) == Some(true))
}

/// Whether a NUL-terminated `needle` is in an ELF file's DWARF string tables
/// (where compilation directories live); None when there are none.
fn debug_strings_contain(elf: &[u8], needle: &[u8]) -> Option<bool> {
    let at = |o: usize, n: usize| -> Option<usize> {
        let b = elf.get(o..o + n)?;
        Some(
            b.iter()
                .rev()
                .fold(0usize, |acc, x| acc << 8 | usize::from(*x)),
        )
    };
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let (shoff, shentsize, shnum, shstrndx) =
        (at(0x28, 8)?, at(0x3a, 2)?, at(0x3c, 2)?, at(0x3e, 2)?);
    let section = |i: usize| {
        let h = shoff + i * shentsize;
        Some((at(h, 4)?, at(h + 0x18, 8)?, at(h + 0x20, 8)?))
    };
    let (_, names_at, names_len) = section(shstrndx)?;
    let names = elf.get(names_at..names_at + names_len)?;
    let mut any = false;
    for i in 0..shnum {
        let (name, off, len) = section(i)?;
        let name = names.get(name..)?.split(|b| *b == 0).next()?;
        if name == b".debug_str" || name == b".debug_line_str" {
            any = true;
            if elf
                .get(off..off + len)?
                .split(|b| *b == 0)
                .any(|s| s == needle)
            {
                return Some(true);
            }
        }
    }
    any.then_some(false)
}

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn unb64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .expect("base64url")
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

pub fn random_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A data directory and the database that belongs to it. Servers and CLI
/// invocations started on the same `DataDir` share keys, certificates and
/// data. On PostgreSQL the schema is dropped when the `DataDir` goes.
pub struct DataDir {
    dir: tempfile::TempDir,
    /// PostgreSQL only: (URL with `search_path`, admin URL, schema).
    pg: Option<PgSchema>,
}

struct PgSchema {
    url: String,
    admin_url: String,
    schema: String,
}

impl DataDir {
    pub async fn new() -> Arc<Self> {
        let dir = tempfile::Builder::new()
            .prefix("ketenpoort-e2e-")
            .tempdir()
            .expect("temp dir");
        let pg = match std::env::var(PG_ENV) {
            Ok(admin_url) if !admin_url.trim().is_empty() => {
                Some(PgSchema::create(admin_url.trim()).await)
            }
            _ => None,
        };
        Arc::new(Self { dir, pg })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn is_postgres(&self) -> bool {
        self.pg.is_some()
    }

    /// The PostgreSQL schema of this data directory, if any.
    pub fn schema(&self) -> Option<&str> {
        self.pg.as_ref().map(|p| p.schema.as_str())
    }

    /// The database the server and the CLI use: the per-test PostgreSQL
    /// schema, or SQLite in the data directory (ketenpoort's default).
    pub fn database_url(&self) -> String {
        match &self.pg {
            Some(pg) => pg.url.clone(),
            None => format!("sqlite://{}?mode=rwc", self.file("ketenpoort.db").display()),
        }
    }

    /// `--database-url` for PostgreSQL; nothing for SQLite, so the default
    /// (the data directory's database) is exercised too.
    fn database_args(&self) -> Vec<String> {
        match &self.pg {
            Some(pg) => vec!["--database-url".into(), pg.url.clone()],
            None => Vec::new(),
        }
    }

    /// Runs `ketenpoort <args> --data-dir DIR [--database-url URL]`.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_with_env(args, &[])
    }

    /// [`cli`](Self::cli) with extra environment variables.
    pub fn cli_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .arg("--data-dir")
            .arg(self.path())
            .args(self.database_args());
        hermetic(&mut cmd);
        cmd.envs(env.iter().copied());
        cmd.output().expect("running the ketenpoort CLI")
    }

    /// Like [`cli`](Self::cli) but panics unless it exits 0; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "ketenpoort {args:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// `partner list --json`, parsed.
    pub fn partners(&self) -> Vec<Value> {
        let out = self.cli_ok(&["partner", "list", "--json"]);
        serde_json::from_str::<Vec<Value>>(&out).expect("partner list --json is a JSON array")
    }

    /// Tables of this data directory's database (PostgreSQL: of its schema).
    pub async fn tables(&self) -> Vec<String> {
        match &self.pg {
            Some(pg) => {
                let mut conn = sqlx::postgres::PgConnection::connect(&pg.admin_url)
                    .await
                    .expect("postgres");
                let rows: Vec<(String,)> = sqlx::query_as(
                    "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1",
                )
                .bind(&pg.schema)
                .fetch_all(&mut conn)
                .await
                .expect("listing tables");
                rows.into_iter().map(|r| r.0).collect()
            }
            None => {
                let url = format!("sqlite://{}?mode=ro", self.file("ketenpoort.db").display());
                let mut conn = sqlx::sqlite::SqliteConnection::connect(&url)
                    .await
                    .expect("sqlite");
                let rows: Vec<(String,)> = sqlx::query_as(
                    "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY 1",
                )
                .fetch_all(&mut conn)
                .await
                .expect("listing tables");
                rows.into_iter().map(|r| r.0).collect()
            }
        }
    }
}

impl DataDir {
    /// A connection to this data directory's database, as the server sees
    /// it (PostgreSQL: in its schema), for tests that inspect or alter rows.
    pub async fn connect(&self) -> sqlx::AnyConnection {
        sqlx::any::install_default_drivers();
        let url = match &self.pg {
            Some(pg) => pg.url.clone(),
            None => format!("sqlite://{}?mode=rw", self.file("ketenpoort.db").display()),
        };
        sqlx::AnyConnection::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("connecting to {url}: {e}"))
    }

    /// A connection of its own holding the disclosure log's write lock
    /// (SQLite `BEGIN IMMEDIATE`, PostgreSQL the log head `FOR UPDATE`)
    /// until it runs `ROLLBACK`: the log is slow meanwhile.
    pub async fn hold_log_lock(&self) -> sqlx::AnyConnection {
        use sqlx::Executor;
        let mut holder = self.connect().await;
        let lock = if self.is_postgres() {
            "BEGIN; SELECT size FROM log_head WHERE id = 1 FOR UPDATE"
        } else {
            "BEGIN IMMEDIATE"
        };
        holder.execute(lock).await.expect("holding the log's lock");
        holder
    }

    /// Row counts of the tables a request can change, and the log size:
    /// equal before and after a request that must change nothing.
    pub async fn row_counts(&self) -> std::collections::BTreeMap<&'static str, i64> {
        use sqlx::Row;
        let mut conn = self.connect().await;
        let mut out = std::collections::BTreeMap::new();
        for (name, sql) in [
            ("signals", "SELECT COUNT(*) FROM signals"),
            ("signal_keys", "SELECT COUNT(*) FROM signal_keys"),
            ("referrals", "SELECT COUNT(*) FROM referrals"),
            ("inbox", "SELECT COUNT(*) FROM inbox"),
            ("record_keys", "SELECT COUNT(*) FROM record_keys"),
            (
                "phenomenon_contributions",
                "SELECT COUNT(*) FROM phenomenon_contributions",
            ),
            ("log_entries", "SELECT COUNT(*) FROM log_entries"),
            ("log_subjects", "SELECT COUNT(*) FROM log_subjects"),
            ("log_hashes", "SELECT COUNT(*) FROM log_hashes"),
            ("log_checkpoints", "SELECT COUNT(*) FROM log_checkpoints"),
            ("log_head.size", "SELECT size FROM log_head"),
        ] {
            let row = sqlx::query(sql).fetch_one(&mut conn).await.unwrap();
            out.insert(name, row.get(0));
        }
        out
    }

    /// A fresh data directory holding a copy of this one's database (not
    /// its keys): a consistent snapshot, also while a server writes.
    pub async fn copy(&self) -> Arc<DataDir> {
        let copy = DataDir::new().await;
        match (&self.pg, &copy.pg) {
            (Some(from), Some(to)) => {
                let mut conn = sqlx::postgres::PgConnection::connect(&from.admin_url)
                    .await
                    .expect("postgres");
                let mut tx = conn.begin().await.expect("begin");
                sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    .execute(&mut *tx)
                    .await
                    .expect("snapshot");
                for t in self.tables().await {
                    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "CREATE TABLE {to}.{t} (LIKE {from}.{t} INCLUDING ALL); \
                         INSERT INTO {to}.{t} SELECT * FROM {from}.{t};",
                        from = from.schema,
                        to = to.schema
                    )))
                    .execute(&mut *tx)
                    .await
                    .expect("copying a table");
                }
                tx.commit().await.expect("commit");
            }
            (None, None) => {
                let target = copy.file("ketenpoort.db");
                let mut conn = self.connect().await;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "VACUUM INTO '{}'",
                    target.display()
                )))
                .execute(&mut conn)
                .await
                .expect("VACUUM INTO");
            }
            _ => unreachable!("both data directories use the same backend"),
        }
        copy
    }
}

impl PgSchema {
    async fn create(admin_url: &str) -> Self {
        let schema = format!("kp_{}", random_id());
        let mut conn = sqlx::postgres::PgConnection::connect(admin_url)
            .await
            .unwrap_or_else(|e| panic!("{PG_ENV}: cannot connect: {e}"));
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut conn)
            .await
            .expect("CREATE SCHEMA");
        let _ = conn.close().await;
        // libpq `options`, honoured by sqlx's PgConnectOptions: every
        // connection of the server then works in its own schema.
        let options = format!("-c search_path={schema}")
            .replace(' ', "%20")
            .replace('=', "%3D");
        let sep = if admin_url.contains('?') { '&' } else { '?' };
        let url = format!("{admin_url}{sep}options={options}");
        Self {
            url,
            admin_url: admin_url.to_owned(),
            schema,
        }
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        if std::env::var_os("KETENPOORT_TEST_KEEP_SCHEMAS").is_some() {
            return;
        }
        let (url, schema) = (self.admin_url.clone(), self.schema.clone());
        // Drop runs inside a test's runtime; use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(mut conn) = sqlx::postgres::PgConnection::connect(&url).await {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "DROP SCHEMA IF EXISTS {schema} CASCADE"
                    )))
                    .execute(&mut conn)
                    .await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}

/// Child processes see no `KETENPOORT_*` variables from the caller's
/// environment, only the ones a test sets.
pub fn hermetic(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("KETENPOORT_") {
            cmd.env_remove(k);
        }
    }
    cmd.env_remove("RUST_LOG");
}

/// How to start a server. `{data_dir}` in an environment value is replaced
/// by the data directory.
#[derive(Default, Clone)]
pub struct Opts {
    env: Vec<(String, String)>,
    config: Option<String>,
    /// `--database-url` instead of the data directory's database.
    database_url: Option<String>,
    /// Run in the (empty) data directory, given as `--data-dir .`.
    in_data_dir: bool,
}

impl Opts {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn env(mut self, key: &str, value: impl ToString) -> Self {
        self.env.push((key.to_owned(), value.to_string()));
        self
    }

    /// A TOML configuration file written into the data directory.
    pub fn config(mut self, toml: &str) -> Self {
        self.config = Some(toml.to_owned());
        self
    }

    /// The server reaches its database at `url` (e.g. through a proxy).
    pub fn database_url(mut self, url: &str) -> Self {
        self.database_url = Some(url.to_owned());
        self
    }

    /// The server runs with the data directory as its working directory,
    /// named relatively (`--data-dir .`): nothing of the repository (its
    /// `policies/`, `examples/`, `schemas/`) is where it looks.
    pub fn in_data_dir(mut self) -> Self {
        self.in_data_dir = true;
        self
    }

    /// Client certificates on: the demo CA verifies them.
    pub fn client_ca(self) -> Self {
        self.env("KETENPOORT_TLS__CLIENT_CA", "{data_dir}/tls/ca.pem")
    }

    /// Registry lookups are not cached: suspensions take effect at once.
    pub fn no_partner_cache(self) -> Self {
        self.env("KETENPOORT_AUTH__PARTNER_CACHE_SECS", 0)
    }
}

/// A running `ketenpoort serve --demo`. Killed when dropped.
pub struct Server {
    child: Child,
    data: Arc<DataDir>,
    addr: SocketAddr,
    log: PathBuf,
    client: reqwest::Client,
    /// Everything the server printed on stdout so far.
    stdout: Arc<Mutex<Vec<String>>>,
}

/// `ketenpoort serve --demo` on `data` with `opts`, quiet about where its
/// output goes.
fn serve_command(data: &DataDir, opts: &Opts) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(["serve", "--demo", "--listen", "127.0.0.1:0", "--data-dir"]);
    if opts.in_data_dir {
        cmd.arg(".").current_dir(data.path());
    } else {
        cmd.arg(data.path());
    }
    match &opts.database_url {
        Some(url) => cmd.args(["--database-url", url]),
        None => cmd.args(data.database_args()),
    };
    if let Some(toml) = &opts.config {
        let file = data.file(&format!("config-{}.toml", random_id()));
        std::fs::write(&file, toml).expect("writing config");
        cmd.arg("--config").arg(file);
    }
    hermetic(&mut cmd);
    // The demo's in-process witnesses cosign checkpoints a moment after
    // they are signed, which would change notes under tests that compare
    // them; tests of witnessing turn them on (tests/e2e/witness.rs).
    cmd.env("KETENPOORT_LOG__DEMO_WITNESSES", "false");
    let dir = data.path().to_str().expect("utf-8 temp dir").to_owned();
    for (k, v) in &opts.env {
        cmd.env(k, v.replace("{data_dir}", &dir));
    }
    cmd
}

impl Server {
    /// A server on a fresh data directory (and database).
    pub async fn start(opts: Opts) -> Server {
        Self::start_on(DataDir::new().await, opts)
    }

    /// A server on an existing data directory.
    pub fn start_on(data: Arc<DataDir>, opts: Opts) -> Server {
        let log = data.file(&format!("server-{}.log", random_id()));
        let stderr = std::fs::File::create(&log).expect("log file");
        let mut cmd = serve_command(&data, &opts);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        let mut child = cmd.spawn().expect("spawning ketenpoort serve");
        let stdout = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        // Reads stdout to its end, so the server never blocks on a full pipe.
        let seen = lines.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                seen.lock().expect("stdout lines").push(line.clone());
                if let Some(addr) = line.strip_prefix(LISTENING)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        let addr = match rx.recv_timeout(START_TIMEOUT) {
            Ok(a) => a.parse::<SocketAddr>().expect("listening address"),
            Err(e) => {
                let _ = child.kill();
                let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                let why = match e {
                    mpsc::RecvTimeoutError::Timeout => {
                        format!("did not print {LISTENING:?} within {START_TIMEOUT:?}")
                    }
                    mpsc::RecvTimeoutError::Disconnected => {
                        format!("exited ({status}) before listening")
                    }
                };
                panic!(
                    "ketenpoort serve {why}; stderr:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        let client = client_for(&data, None);
        Server {
            child,
            data,
            addr,
            log,
            client,
            stdout: lines,
        }
    }

    /// Runs `serve` expecting it to refuse to start: its exit status and
    /// stderr. Panics if it starts listening instead.
    pub fn refused(data: &DataDir, opts: Opts) -> (std::process::ExitStatus, String) {
        let mut child = serve_command(data, &opts)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning ketenpoort serve");
        let mut stderr = child.stderr.take().expect("stderr");
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
            text
        });
        let deadline = std::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("waiting for serve") {
                return (status, reader.join().expect("stderr reader"));
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("ketenpoort serve was expected to refuse to start, but kept running");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The admin listener's base URL (`admin.listen`), if it has one.
    pub fn admin_url(&self) -> Option<String> {
        self.stdout
            .lock()
            .expect("stdout lines")
            .iter()
            .find_map(|l| l.strip_prefix(ADMIN_LISTENING).map(str::to_owned))
    }

    /// The server's process id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn data(&self) -> &Arc<DataDir> {
        &self.data
    }

    pub fn dir(&self) -> &Path {
        self.data.path()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn database_url(&self) -> String {
        self.data.database_url()
    }

    /// The server's stderr (JSON logs) so far, as the file holds it now.
    /// The server writes its log on a thread of its own, so a line may land
    /// a moment after the response: use [`Server::logs_flushed`] to see
    /// every line of the requests made so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The server's log once every line of the requests answered so far is
    /// in the file: a barrier request with a fresh trace id, whose access
    /// log line the writer thread (first in, first out) writes after all of
    /// theirs. Panics if it does not appear within 20 s.
    pub async fn logs_flushed(&self) -> String {
        let trace = uuid::Uuid::new_v4().simple().to_string();
        let res = self
            .get("/healthz")
            .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
            .send()
            .await
            .expect("the log barrier request");
        assert_eq!(res.status().as_u16(), 200, "the log barrier request");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let logs = self.logs();
            if logs.contains(&trace) {
                return logs;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the log barrier's line was not written within 20 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    /// The CLI on this server's data directory and database.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.data.cli(args)
    }

    pub fn cli_ok(&self, args: &[&str]) -> String {
        self.data.cli_ok(args)
    }

    /// A client without a client certificate.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// A client that speaks HTTP/2 (ALPN h2).
    pub fn client_h2(&self) -> reqwest::Client {
        build_client(&self.data, None, true)
    }

    /// A client presenting the demo client certificate of `partner`.
    pub fn client_with_cert(&self, partner: &str) -> reqwest::Client {
        client_for(
            &self.data,
            Some(&self.data.file(&format!("demo/clients/{partner}"))),
        )
    }

    /// A client presenting an arbitrary certificate chain and key (PEM files).
    pub fn client_with_cert_files(&self, cert: &Path, key: &Path) -> reqwest::Client {
        build_client(&self.data, Some((cert, key)), false)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path))
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.post(self.url(path))
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path))
    }

    /// The demo token of `partner` in `role`.
    pub fn token(&self, partner: &str, role: &str) -> String {
        let path = self.data.file(&format!("demo/tokens/{partner}.{role}.jwt"));
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .to_owned()
    }

    /// Every demo token: (partner, role, token).
    pub fn demo_tokens(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.data.file("demo/tokens")).expect("demo/tokens") {
            let name = e
                .expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned();
            if let Some(stem) = name.strip_suffix(".jwt")
                && let Some((partner, role)) = stem.split_once('.')
            {
                out.push((
                    partner.to_owned(),
                    role.to_owned(),
                    self.token(partner, role),
                ));
            }
        }
        out.sort();
        out
    }

    /// Valid claims for `partner` in `role`, to be altered by a test.
    pub fn claims(&self, partner: &str, role: &str) -> Value {
        let t = now();
        json!({
            "iss": "ketenpoort",
            "aud": "ketenpoort",
            "iat": t,
            "nbf": t,
            "exp": t + 600,
            "jti": uuid::Uuid::now_v7().to_string(),
            "sub": "e2e",
            "partner": partner,
            "role": role,
        })
    }

    /// Signs `claims` with the server's token issuer key (EdDSA).
    pub fn sign(&self, claims: &Value) -> String {
        let pem = std::fs::read(self.data.file("keys/token-issuer.pem")).expect("issuer key");
        let key = jsonwebtoken::EncodingKey::from_ed_pem(&pem).expect("Ed25519 PKCS#8 PEM");
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
            claims,
            &key,
        )
        .expect("signing")
    }

    /// `token issue` through the CLI.
    pub fn issue(&self, extra: &[&str]) -> String {
        let mut args = vec!["token", "issue"];
        args.extend_from_slice(extra);
        self.cli_ok(&args).trim().to_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client_for(data: &DataDir, cert_stem: Option<&Path>) -> reqwest::Client {
    match cert_stem {
        Some(stem) => {
            let (cert, key) = (stem.with_extension("pem"), stem.with_extension("key"));
            build_client(data, Some((&cert, &key)), false)
        }
        None => build_client(data, None, false),
    }
}

/// reqwest on a rustls configuration (ring) that trusts only the demo CA of
/// `data`, optionally with a client certificate. Redirects are not followed:
/// a redirect is an answer the tests want to see.
fn build_client(data: &DataDir, identity: Option<(&Path, &Path)>, h2: bool) -> reqwest::Client {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(data.file("tls/ca.pem")).expect("tls/ca.pem") {
        roots
            .add(c.expect("CA certificate"))
            .expect("adding the CA");
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots);
    let mut tls = match identity {
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .expect("client certificate")
                .collect::<Result<_, _>>()
                .expect("client certificate PEM");
            let key = PrivateKeyDer::from_pem_file(key).expect("client key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client certificate and key")
        }
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = if h2 {
        vec![b"h2".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client")
}

/// Asserts `res` is an `application/problem+json` with `status` (and, when
/// given, the reason `code`); returns the problem.
pub async fn problem(res: Response, status: u16, code: Option<&str>) -> Value {
    let (got, ct) = (res.status(), content_type(&res));
    let body = res.text().await.expect("body");
    assert_eq!(
        got,
        StatusCode::from_u16(status).unwrap(),
        "status; body: {body}"
    );
    assert_eq!(
        ct, "application/problem+json",
        "content type of a {status}; body: {body}"
    );
    let p: Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("problem is not JSON ({e}): {body}"));
    assert_eq!(p["status"], json!(status), "problem status: {p}");
    let kind = p["type"]
        .as_str()
        .unwrap_or_else(|| panic!("problem without type: {p}"));
    assert!(
        kind.starts_with("urn:ketenpoort:problem:"),
        "problem type {kind}"
    );
    assert!(
        p["title"].as_str().is_some_and(|t| !t.is_empty()),
        "problem without title: {p}"
    );
    if let Some(code) = code {
        assert_eq!(p["code"], json!(code), "problem code: {p}");
    }
    p
}

pub fn content_type(res: &Response) -> String {
    res.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

pub fn header(res: &Response, name: &str) -> Option<String> {
    res.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The API description as served.
pub async fn openapi(server: &Server) -> Value {
    let res = server
        .get("/v1/openapi.json")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.expect("OpenAPI JSON")
}

/// (METHOD, path template) of every documented operation; the template as
/// the server serves it: the path appended to its server's URL (the path
/// item's own `servers`, else the document's).
pub fn operations(doc: &Value) -> Vec<(String, String)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in [
            "get", "put", "post", "delete", "options", "head", "patch", "trace",
        ] {
            if item.get(method).is_some() {
                ops.push((method.to_uppercase(), served_path(doc, item, path)));
            }
        }
    }
    ops
}

/// The base URL (a path) of a path item: its own first server, else the
/// document's first server, else `/`, without a trailing slash.
fn server_base<'a>(doc: &'a Value, item: &'a Value) -> &'a str {
    let url = item["servers"][0]["url"]
        .as_str()
        .or_else(|| doc["servers"][0]["url"].as_str())
        .unwrap_or("/");
    assert!(
        url.starts_with('/'),
        "server URL {url}: the tests expect a path relative to the host"
    );
    url.trim_end_matches('/')
}

fn served_path(doc: &Value, item: &Value, path: &str) -> String {
    format!("{}{path}", server_base(doc, item))
}

/// The documented operation `method` (any case) on `served`, a template as
/// [`operations`] returns it; `Null` if there is none.
pub fn operation<'a>(doc: &'a Value, method: &str, served: &str) -> &'a Value {
    static NULL: Value = Value::Null;
    doc["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .find(|(path, item)| served_path(doc, item, path) == served)
        .map(|(_, item)| &item[method.to_lowercase()])
        .unwrap_or(&NULL)
}

/// `value` with a local `$ref` (`#/components/...`) resolved, one level.
pub fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str().and_then(|r| r.strip_prefix('#')) {
        Some(pointer) => doc.pointer(pointer).expect("a $ref that resolves"),
        None => value,
    }
}

/// A path template with every `{param}` replaced by a random UUID.
pub fn concrete(template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').expect("unclosed path parameter") + open;
        out.push_str(&rest[..open]);
        out.push_str(&uuid::Uuid::new_v4().to_string());
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

// ---------------------------------------------------------------------------
// Test data shared by the feature files.

/// A valid BSN (11-proef) from 8 random digits.
pub fn bsn() -> String {
    loop {
        let digits: Vec<u32> = uuid::Uuid::new_v4()
            .as_bytes()
            .iter()
            .take(8)
            .map(|b| u32::from(*b) % 10)
            .collect();
        let sum: u32 = digits
            .iter()
            .enumerate()
            .map(|(i, d)| d * (9 - i as u32))
            .sum();
        let check = sum % 11;
        if check < 10 && digits[0] != 0 {
            let mut s: String = digits.iter().map(|d| d.to_string()).collect();
            s.push_str(&check.to_string());
            return s;
        }
    }
}

/// A unique value that must never show up where it does not belong.
pub fn marker() -> String {
    format!("mrk{}", &random_id()[..20])
}

/// A signal with every classified field present. Returns the body and the
/// unique markers in its personal values (names, numbers, free text).
pub fn full_signal(
    municipality: &str,
    forms: &[&str],
    minor: bool,
    domestic: bool,
) -> (Value, Vec<String>) {
    let m: Vec<String> = (0..9).map(|_| marker()).collect();
    let (victim_bsn, suspect_bsn) = (bsn(), bsn());
    let body = json!({
        "municipality": municipality,
        "dateReceived": "2026-01-15",
        "forms": forms,
        "sector": "horeca",
        "locationType": "woning",
        "domesticSetting": domestic,
        "indicators": ["A-3", "S-12"],
        "urgency": "hoog",
        "victims": [{
            "name": format!("Slachtoffer {}", m[0]),
            "bsn": victim_bsn,
            "dateOfBirth": if minor { "2012-05-01" } else { "1990-03-04" },
            "nationality": "RO",
            "gender": "vrouw",
            "address": {"street": m[1], "houseNumber": "12", "postcode": "9401 AB", "city": "Assen", "country": "NL"},
            "phone": "+31 6 12345678",
            "email": format!("{}@example.invalid", m[2]),
            "labourMigrant": true,
            "mildIntellectualDisability": true,
            "careNeeds": format!("Zorgbehoefte {}", m[3]),
        }],
        "suspects": [{
            "name": format!("Verdachte {}", m[4]),
            "bsn": suspect_bsn,
            "dateOfBirth": "1975-07-08",
            "nationality": "NL",
            "gender": "man",
            "address": {"street": m[5], "houseNumber": "3", "postcode": "7811 AA", "city": "Emmen", "country": "NL"},
            "phone": "+31 6 87654321",
            "email": format!("{}@example.invalid", m[6]),
            "companyName": format!("Uitzendbureau {} B.V.", m[7]),
            "kvkNumber": "12345678",
            "allegedConduct": format!("Houdt paspoorten in {}", m[8]),
        }],
        "narrative": format!("Vrije tekst over iedereen {}", m[0]),
    });
    let mut markers = m;
    markers.extend([victim_bsn, suspect_bsn]);
    (body, markers)
}

pub const MUNICIPALITIES: [&str; 12] = [
    "aa-en-hunze",
    "assen",
    "borger-odoorn",
    "coevorden",
    "de-wolden",
    "emmen",
    "hoogeveen",
    "meppel",
    "midden-drenthe",
    "noordenveld",
    "tynaarlo",
    "westerveld",
];
pub const FORMS: [&str; 5] = ["seksueel", "arbeid", "crimineel", "orgaan", "onbekend"];
pub const SECTORS: [&str; 12] = [
    "land-en-tuinbouw",
    "bouw",
    "horeca",
    "logistiek",
    "schoonmaak",
    "vleesverwerking",
    "prostitutie",
    "huishoudelijk",
    "industrie",
    "zorg",
    "overig",
    "onbekend",
];
pub const LOCATIONS: [&str; 10] = [
    "woning",
    "bedrijfspand",
    "horeca",
    "seksinrichting",
    "agrarisch",
    "huisvesting-arbeidsmigranten",
    "online",
    "openbare-ruimte",
    "overig",
    "onbekend",
];

/// A small deterministic generator (xorshift64*), so a failing data set can
/// be reproduced.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// A signal without personal values: only what the tables count varies.
pub fn plain_signal(rng: &mut Rng, year: i32, month: u8) -> Value {
    let day = 1 + rng.below(28);
    let mut forms = vec![rng.pick(&FORMS)];
    if rng.chance(25) {
        let second = rng.pick(&FORMS);
        if !forms.contains(&second) {
            forms.push(second);
        }
    }
    let minor = rng.chance(25);
    let born = if minor { year - 15 } else { year - 30 };
    let mut victim = json!({
        "dateOfBirth": format!("{born:04}-{month:02}-{day:02}"),
        "labourMigrant": rng.chance(30),
    });
    if rng.chance(15) {
        victim.as_object_mut().unwrap().remove("dateOfBirth");
    }
    let mut victims = vec![victim];
    if rng.chance(15) {
        victims.push(json!({"labourMigrant": false}));
    }
    let mut body = json!({
        "municipality": if rng.chance(8) { "buiten-drenthe" } else { rng.pick(&MUNICIPALITIES) },
        "dateReceived": format!("{year:04}-{month:02}-{day:02}"),
        "forms": forms,
        "urgency": "normaal",
        "victims": victims,
        "narrative": "Fictief testsignaal zonder persoonsgegevens."
    });
    if !rng.chance(20) {
        body["sector"] = json!(rng.pick(&SECTORS));
    }
    if !rng.chance(20) {
        body["locationType"] = json!(rng.pick(&LOCATIONS));
    }
    body
}

/// The configuration every server and CLI run of these tests shares.
pub const PHENOMENA_ENV: [(&str, &str); 2] = [
    ("KETENPOORT_PHENOMENA__MAX_DEVIATION", "3"),
    ("KETENPOORT_PHENOMENA__VARIANCE", "1.0"),
];

/// A server for the tests of the phenomenon tables: the shared perturbation settings, no rate
/// limit in the way of bulk submissions, and no release of its own — the
/// tests publish past periods in order, and the last closed quarter,
/// published at start, would be newer than all of them.
pub fn phenomena_opts() -> Opts {
    let mut o = Opts::new()
        .env("KETENPOORT_HTTP__RATE_LIMIT_PER_SECOND", 100_000)
        .env("KETENPOORT_HTTP__RATE_LIMIT_BURST", 100_000)
        .env("KETENPOORT_PHENOMENA__AUTO_PUBLISH", "false")
        // The RIEC reads its own entries once they are published.
        .env("KETENPOORT_LOG__PUBLISH_INTERVAL_SECS", 1);
    for (k, v) in PHENOMENA_ENV {
        o = o.env(k, v);
    }
    o
}

/// `ketenpoort phenomena release --period P`; returns its output.
pub fn publish(server: &Server, period: &str) -> String {
    let out = server.data().cli_with_env(
        &["phenomena", "release", "--period", period],
        &PHENOMENA_ENV,
    );
    assert!(
        out.status.success(),
        "phenomena release {period}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The last month of a cell period (`2021`, `2021-Q3`) or of a release
/// period (`2021-Q3`, `2021-08`).
pub fn end_of(period: &str) -> (i32, u8) {
    let year: i32 = period[..4].parse().unwrap();
    match period.get(5..) {
        None => (year, 12),
        Some(rest) => match rest.strip_prefix('Q') {
            Some(q) => (year, q.parse::<u8>().unwrap() * 3),
            None => (year, rest.parse().unwrap()),
        },
    }
}

#[tokio::test]
async fn harness_database_is_isolated() {
    let server = Server::start(Opts::new()).await;
    let tables = server.data().tables().await;
    assert!(
        tables.iter().any(|t| t == "partners"),
        "partners table not in this test's database: {tables:?}"
    );
    assert!(tables.iter().any(|t| t == "_sqlx_migrations"), "{tables:?}");
    if let Some(schema) = server.data().schema() {
        assert!(
            server
                .database_url()
                .contains(&format!("search_path%3D{schema}"))
        );
        // The demo partners were written into this schema.
        let admin = std::env::var(PG_ENV).unwrap();
        let mut conn = sqlx::postgres::PgConnection::connect(admin.trim())
            .await
            .unwrap();
        let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {schema}.partners"
        )))
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(n, 19, "demo partners in schema {schema}");
    } else {
        assert!(server.dir().join("ketenpoort.db").exists());
    }
    let res = server.get("/healthz").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        server.logs().contains("listening"),
        "stderr holds the JSON logs"
    );
}

#[test]
fn harness_runs_this_checkouts_binary() {
    if std::env::var_os("KETENPOORT_TEST_BIN").is_some() {
        return;
    }
    if let Some(here) = built_here(bin()) {
        assert!(
            here,
            "{} was not built from {}",
            bin().display(),
            env!("CARGO_MANIFEST_DIR")
        );
        // The fallback finds this checkout's build among all in the target dir.
        let target = Path::new(CARGO_BIN).parent().unwrap();
        assert!(
            build_in_deps(target).is_some(),
            "no build of this checkout in {}/deps",
            target.display()
        );
    }
}

// ---- what the database holds, raw (for the tests of what is stored) ----

pub async fn pool(data: &DataDir) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&data.database_url())
        .await
        .expect("the test database")
}

/// Everything the database holds, as bytes: on SQLite the database file
/// and its WAL; on PostgreSQL every row of every table of the schema as
/// text (bytea as hex).
pub async fn raw_database(data: &DataDir) -> Vec<u8> {
    if !data.is_postgres() {
        let mut out = Vec::new();
        for suffix in ["", "-wal", "-shm", "-journal"] {
            if let Ok(bytes) = std::fs::read(data.file(&format!("ketenpoort.db{suffix}"))) {
                out.extend(bytes);
            }
        }
        return out;
    }
    let db = pool(data).await;
    let tables: Vec<String> = sqlx::query(
        "SELECT table_name::text AS t FROM information_schema.tables WHERE table_schema = current_schema()",
    )
    .fetch_all(&db)
    .await
    .unwrap()
    .iter()
    .map(|r| r.get("t"))
    .collect();
    assert!(tables.iter().any(|t| t == "signals"), "{tables:?}");
    let mut out = Vec::new();
    for t in tables {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT x::text AS line FROM {t} x"
        )))
        .fetch_all(&db)
        .await
        .unwrap();
        for r in rows {
            out.extend(r.get::<String, _>("line").into_bytes());
            out.push(b'\n');
        }
    }
    out
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
