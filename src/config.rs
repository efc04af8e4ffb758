//! Configuration: defaults, then a TOML file, then `KETENPOORT_*` environment
//! variables, then command-line flags. Every key is documented in the README.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Keys, TLS material, the SQLite database and demo tokens live here.
    pub data_dir: PathBuf,
    pub http: HttpConfig,
    pub tls: TlsConfig,
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    pub log: LogConfig,
    pub policy: PolicyConfig,
    pub admin: AdminConfig,
    pub signals: SignalsConfig,
    pub retention: RetentionConfig,
    pub phenomena: PhenomenaConfig,
    pub logging: LoggingConfig,
    pub api: ApiConfig,
    pub telemetry: TelemetryConfig,
    pub console: ConsoleConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("ketenpoort-data"),
            http: HttpConfig::default(),
            tls: TlsConfig::default(),
            database: DatabaseConfig::default(),
            auth: AuthConfig::default(),
            log: LogConfig::default(),
            policy: PolicyConfig::default(),
            admin: AdminConfig::default(),
            signals: SignalsConfig::default(),
            retention: RetentionConfig::default(),
            phenomena: PhenomenaConfig::default(),
            logging: LoggingConfig::default(),
            api: ApiConfig::default(),
            telemetry: TelemetryConfig::default(),
            console: ConsoleConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Largest accepted request body in bytes.
    pub body_limit: usize,
    /// Whole-request timeout in seconds.
    pub request_timeout_secs: u64,
    /// Sustained requests per second per partner (per instance).
    pub rate_limit_per_second: u32,
    /// Requests a partner may burst above the sustained rate.
    pub rate_limit_burst: u32,
    /// Seconds a client has to send a request's headers (HTTP/1.1).
    pub header_read_timeout_secs: u64,
    /// Seconds a connection may stay without a byte either way before it is
    /// closed (keep-alive, and a client that never sends).
    pub idle_timeout_secs: u64,
    /// Most open client connections; beyond it a new one gets 503 and is
    /// closed.
    pub max_connections: usize,
    /// Most concurrent HTTP/2 streams (requests) on one connection.
    pub max_concurrent_streams: u32,
    /// Seconds the first answer to a write with an `Idempotency-Key` is
    /// kept for a retry (per partner).
    pub idempotency_keep_secs: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            body_limit: 1024 * 1024,
            request_timeout_secs: 30,
            rate_limit_per_second: 200,
            rate_limit_burst: 400,
            header_read_timeout_secs: 10,
            idle_timeout_secs: 60,
            max_connections: 1024,
            max_concurrent_streams: 100,
            idempotency_keep_secs: 86_400,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Server certificate chain (PEM). Default: `DATA_DIR/tls/server.pem`.
    pub cert: Option<PathBuf>,
    /// Server private key (PEM). Default: `DATA_DIR/tls/server.key`.
    pub key: Option<PathBuf>,
    /// CA bundle (PEM) for client certificates. When set, every authenticated
    /// request must present a client certificate registered to its partner.
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://...` or `postgres://...`. Default: SQLite in the data directory.
    pub url: Option<String>,
    pub max_connections: u32,
    /// PostgreSQL: the longest wait for a lock (`lock_timeout`), seconds.
    pub lock_timeout_secs: u64,
    /// PostgreSQL: the longest statement (`statement_timeout`), seconds.
    pub statement_timeout_secs: u64,
    /// PostgreSQL: a session idle inside a transaction this long is ended by
    /// the server, releasing its locks (`idle_in_transaction_session_timeout`).
    pub idle_in_transaction_timeout_secs: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: None,
            max_connections: 16,
            lock_timeout_secs: 10,
            statement_timeout_secs: 60,
            idle_in_transaction_timeout_secs: 15,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Required `iss` claim.
    pub issuer: String,
    /// Required `aud` claim.
    pub audience: String,
    /// Accepted algorithms. Asymmetric only unless `hmac_secret_file` is set.
    pub algorithms: Vec<String>,
    /// PEM public keys of the token issuer. Default: the data directory's
    /// issuer key (`DATA_DIR/keys/token-issuer.pub.pem`).
    pub public_keys: Vec<PathBuf>,
    /// A JWKS file of an external issuer (keys selected by `kid`).
    pub jwks_file: Option<PathBuf>,
    /// Shared HS256 secret. Off unless an operator sets it explicitly.
    pub hmac_secret_file: Option<PathBuf>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
    /// Longest token lifetime `token issue` will sign, in seconds.
    pub max_token_ttl_secs: u64,
    /// How long a partner registry lookup is cached, in seconds. A suspension
    /// takes effect within this time on every instance.
    pub partner_cache_secs: u64,
    /// Lifetime of a token from the token endpoint, in seconds (5–3600).
    pub client_token_ttl_secs: u64,
    /// The gateway's one public URL, as partner systems and browsers reach
    /// it: the token endpoint's URL in the metadata and the audience of
    /// client assertions, the console's OpenID Connect redirect URI. Default:
    /// `https://` and the address the partner listener is bound to.
    pub public_url: Option<String>,
    /// The trusted external issuers (`[[auth.providers]]`), each a partner's
    /// own identity provider: for API tokens (`audience` set) and for the
    /// privacy officer's console sign-in (`client_id` set), or both.
    /// ketenpoort's own issuer (`issuer`, above) is the list's implicit
    /// first entry.
    pub providers: Vec<ProviderConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            issuer: "ketenpoort".into(),
            audience: "ketenpoort".into(),
            algorithms: vec!["EdDSA".into()],
            public_keys: Vec::new(),
            jwks_file: None,
            hmac_secret_file: None,
            leeway_secs: 30,
            max_token_ttl_secs: 30 * 24 * 3600,
            partner_cache_secs: 5,
            client_token_ttl_secs: 600,
            public_url: None,
            providers: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Checkpoint origin (and signing key name). Default `<hostname>/ketenpoort/log`.
    /// Fixed when the log is created: all instances of one log must agree.
    pub origin: Option<String>,
    /// Sign a checkpoint at least every this many entries...
    pub checkpoint_every: u64,
    /// ...and at least this often (seconds) while the log grows.
    pub checkpoint_interval_secs: u64,
    /// Partners outside the covenant see the log's size only as it was at
    /// the last multiple of this many seconds since the Unix epoch: the
    /// newest checkpoint signed by then (`ledger::publish`).
    pub publish_interval_secs: u64,
    /// A privacy-officer search with no filter but a period may span at most
    /// this many days.
    pub max_unfiltered_days: u32,
    /// The most entries one CSV export holds (it is built in memory); a
    /// search that finds more is refused, never cut short.
    pub max_export_rows: u64,
    /// Witnesses that cosign the log's checkpoints (C2SP tlog-witness);
    /// each new checkpoint is handed to every one in the background.
    pub witnesses: Vec<WitnessEndpoint>,
    /// Cosignatures a checkpoint needs to count as witnessed (what `log
    /// verify --min-witnesses` checks; a checkpoint with fewer is served
    /// all the same).
    pub min_witnesses: usize,
    /// With `serve --demo`: run two witnesses in-process and add them to
    /// `witnesses`, so the demo's checkpoints carry cosignatures.
    pub demo_witnesses: bool,
}

/// A witness of the log (`[[log.witnesses]]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessEndpoint {
    /// Its submission prefix: `https://host:port` (`/add-checkpoint` is added).
    pub url: String,
    /// Its name; must be the name in `key` when given.
    #[serde(default)]
    pub name: Option<String>,
    /// Its cosignature/v1 verifier key (`ketenpoort witness init` prints it).
    pub key: String,
    /// PEM certificate (or CA) its TLS certificate must chain to.
    #[serde(default)]
    pub ca: Option<PathBuf>,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            origin: None,
            checkpoint_every: 1000,
            checkpoint_interval_secs: 60,
            publish_interval_secs: 3600,
            max_unfiltered_days: 31,
            max_export_rows: 100_000,
            witnesses: Vec::new(),
            min_witnesses: 0,
            demo_witnesses: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// The Rego policies and their data: a directory, or an OPA bundle
    /// tarball (`.tar.gz`). Not set: the default policies embedded in the
    /// binary (`policies/` as it was built).
    pub path: Option<PathBuf>,
    /// PEM public keys; when set, the policies must be a bundle whose OPA
    /// signature (`.signatures.json`) verifies with one of them.
    pub bundle_verification_keys: Vec<PathBuf>,
    /// Algorithm of those keys: EdDSA, ES256 or RS256.
    pub bundle_verification_algorithm: String,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            path: None,
            bundle_verification_keys: Vec::new(),
            bundle_verification_algorithm: "EdDSA".into(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of the operator listener (policy reload and status). Off
    /// when not set. Plain HTTP only on a loopback address.
    pub listen: Option<SocketAddr>,
    /// CA (PEM) of operator client certificates. When set, the admin
    /// listener speaks TLS (the server certificate) and requires a client
    /// certificate from this CA; required for a non-loopback address.
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignalsConfig {
    /// The partner that receives every submitted signal (the ZVHD).
    pub intake_partner: String,
}

impl Default for SignalsConfig {
    fn default() -> Self {
        Self {
            intake_partner: "zvhd".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Days a signal is kept after it was submitted. Then its data key is
    /// destroyed and its rows (record, referrals, inbox copies) are purged;
    /// the log entries about it remain (they hold pseudonyms only).
    pub signal_days: u32,
    /// How often the retention task runs, in seconds.
    pub interval_secs: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            signal_days: 730,
            interval_secs: 3600,
        }
    }
}

/// How often phenomenon tables are released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cadence {
    Quarter,
    Month,
}

/// Phenomenon tables for the RIEC and their disclosure control (the cell
/// key method). The perturbation parameters are confidential: knowing them
/// helps an attacker reason about the noise. Every instance and the CLI
/// must use the same values (and the same `keys/phenomena.key`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PhenomenaConfig {
    /// A release at the close of every `quarter` or `month`.
    pub release_every: Cadence,
    /// Whether the server publishes releases itself (at start and when a
    /// period closes). Off, only `ketenpoort phenomena release` does.
    pub auto_publish: bool,
    /// Largest difference between a published and a true count (at least 2).
    pub max_deviation: u32,
    /// Variance of the perturbation of counts large enough to move freely.
    pub variance: f64,
    /// How often (seconds) to check whether a period closed.
    pub check_interval_secs: u64,
}

impl Default for PhenomenaConfig {
    fn default() -> Self {
        Self {
            release_every: Cadence::Quarter,
            auto_publish: true,
            max_deviation: 3,
            variance: 1.0,
            check_interval_secs: 3600,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingConfig {
    /// `tracing` filter directive, e.g. `info` or `ketenpoort=debug,info`.
    pub level: String,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
        }
    }
}

/// What the OpenAPI document says about who runs this gateway
/// (`info.contact`). The defaults are the demo region's.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    pub contact_name: String,
    pub contact_url: String,
    pub contact_email: String,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            contact_name: "ketenpoort demo region Drenthe (development only: set api.contact_*)"
                .into(),
            contact_url: "https://ketenpoort-demo.drenthe.invalid/contact".into(),
            contact_email: "beheer@ketenpoort-demo.drenthe.invalid".into(),
        }
    }
}

/// Traces exported over OTLP/HTTP (off unless an endpoint is set).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Base URL of an OTLP/HTTP receiver (`http://collector:4318`); spans go
    /// to `<endpoint>/v1/traces`. Not set: no spans are exported.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans.
    pub service_name: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "ketenpoort".into(),
        }
    }
}

/// Command-line values that override the file and the environment.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub listen: Option<SocketAddr>,
}

/// Whether `KETENPOORT_<key>` is a configuration setting (and so refused
/// when unknown). Not: `TEST_*` and `BENCH_*`, which belong to the test suite
/// and the benchmark, and `KEK_<n>`, key-encryption keys for the keyring
/// (`crypto::envelope`), which never become configuration values.
fn is_setting(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    let kek = k
        .strip_prefix("kek_")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    !k.starts_with("test_") && !k.starts_with("bench_") && !kek
}

impl Config {
    /// The gateway's URL as partner systems and browsers reach it, without a
    /// trailing `/`. `serve` sets `auth.public_url` from the bound address
    /// when it is not configured (so port 0 gives the real port).
    pub fn public_url(&self) -> String {
        match &self.auth.public_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => format!("https://{}", self.http.listen),
        }
    }

    pub fn load(o: &Overrides) -> anyhow::Result<Self> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = &o.config_file {
            anyhow::ensure!(
                file.exists(),
                "config file {} does not exist",
                file.display()
            );
            fig = fig.merge(Toml::file(file));
        }
        fig = fig.merge(
            Env::prefixed("KETENPOORT_")
                .filter(|k| is_setting(k.as_str()))
                .split("__"),
        );
        let mut cfg: Config = fig.extract().context("invalid configuration")?;
        if let Some(d) = &o.data_dir {
            cfg.data_dir = d.clone();
        }
        if let Some(u) = &o.database_url {
            cfg.database.url = Some(u.clone());
        }
        if let Some(l) = o.listen {
            cfg.http.listen = l;
        }
        Ok(cfg)
    }

    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.data_dir.join(rel)
    }

    pub fn database_url(&self) -> String {
        match &self.database.url {
            Some(u) => u.clone(),
            None => format!("sqlite://{}?mode=rwc", self.path("ketenpoort.db").display()),
        }
    }

    pub fn log_origin(&self) -> String {
        self.log.origin.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty() && !h.contains(char::is_whitespace))
                .unwrap_or_else(|| "localhost".into());
            format!("{host}/ketenpoort/log")
        })
    }

    pub fn tls_cert(&self) -> PathBuf {
        self.tls
            .cert
            .clone()
            .unwrap_or_else(|| self.path("tls/server.pem"))
    }

    pub fn tls_key(&self) -> PathBuf {
        self.tls
            .key
            .clone()
            .unwrap_or_else(|| self.path("tls/server.key"))
    }
}

/// One partner organisation's identity provider (`[[auth.providers]]`),
/// trusted for the partners listed here only: a token or ID token that
/// names another partner is refused whatever it says. One entry serves API
/// tokens (with `audience`), the console's sign-in (with `client_id`), or
/// both. README, "Configuration" documents every key.
///
/// ```toml
/// [[auth.providers]]
/// id = "emmen"                        # short id, in URLs, metrics and the session
/// name = "Gemeente Emmen"             # on the sign-in page
/// issuer = "https://login.emmen.nl"   # `iss`; discovery: <issuer>/.well-known/openid-configuration
/// audience = "api://ketenpoort"       # API tokens: required `aud`
/// client_id = "ketenpoort-console"    # console sign-in
/// client_secret_file = "/etc/ketenpoort/emmen.secret"   # or client_secret, or client_key_file
/// partners = ["emmen"]
/// role_claim = "roles"                # a dotted path: "realm_access.roles"
/// roles = { "privacy-officer" = "fg" } # claim value -> covenant role
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// The issuer identifier: tokens' `iss`, and the base of discovery.
    pub issuer: String,
    /// The JWKS URL, instead of the one discovery names (API tokens).
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// API tokens: their required `aud`. Without it, this provider's tokens
    /// are not accepted on the API.
    #[serde(default)]
    pub audience: Option<String>,
    /// API tokens: accepted signature algorithms (never HS*).
    #[serde(default = "default_provider_algorithms")]
    pub algorithms: Vec<String>,
    /// API tokens: seconds between scheduled fetches of the JWKS.
    #[serde(default = "default_jwks_refresh_secs")]
    pub jwks_refresh_secs: u64,
    /// API tokens: the least seconds between two fetches caused by a token
    /// with an unknown `kid`.
    #[serde(default = "default_jwks_min_refresh_secs")]
    pub jwks_min_refresh_secs: u64,
    /// Console sign-in: the console's client id at this provider. Without
    /// it, this provider does not sign anyone in to the console.
    #[serde(default)]
    pub client_id: Option<String>,
    /// The client secret (client_secret_basic). Prefer `client_secret_file`.
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// A private key (PKCS#8 PEM) for `private_key_jwt` client
    /// authentication, instead of a secret.
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    /// Its algorithm: RS256 (default), PS256, ES256 or EdDSA.
    #[serde(default = "default_client_key_alg")]
    pub client_key_alg: String,
    /// Its key id (`kid`), as registered at the provider.
    #[serde(default)]
    pub client_key_id: Option<String>,
    /// The partners whose users this issuer may speak for.
    pub partners: Vec<String>,
    /// The claim naming the partner; without it, the one partner of
    /// `partners`.
    #[serde(default)]
    pub partner_claim: Option<String>,
    /// The claim naming the user's role (a string or an array of strings;
    /// a dotted path reaches into objects: `realm_access.roles`).
    #[serde(default = "default_role_claim")]
    pub role_claim: String,
    /// Claim values mapped to covenant roles. Empty: a value is used as it
    /// is; otherwise only listed values count.
    #[serde(default)]
    pub roles: std::collections::BTreeMap<String, String>,
    /// The claim that identifies the user (kept only as a keyed reference).
    #[serde(default = "default_user_claim")]
    pub user_claim: String,
    /// Scopes to ask for besides `openid` (console sign-in).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// A CA (PEM) trusted for this provider besides the public web roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_provider_algorithms() -> Vec<String> {
    ["RS256", "PS256", "ES256", "EdDSA"]
        .map(String::from)
        .to_vec()
}

fn default_jwks_refresh_secs() -> u64 {
    3600
}

fn default_jwks_min_refresh_secs() -> u64 {
    30
}

fn default_client_key_alg() -> String {
    "RS256".into()
}

fn default_role_claim() -> String {
    "ketenpoort_role".into()
}

fn default_user_claim() -> String {
    "sub".into()
}

/// The privacy officer's console at `/console/`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    pub enabled: bool,
    /// A session ends after this many seconds without a request...
    pub session_idle_secs: u64,
    /// ...and this many seconds after sign-in in any case.
    pub session_absolute_secs: u64,
    /// Weeks of history on the overview.
    pub overview_weeks: u32,
    pub control: ControlConfig,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            session_idle_secs: 15 * 60,
            session_absolute_secs: 8 * 3600,
            overview_weeks: 12,
            control: ControlConfig::default(),
        }
    }
}

/// Thresholds of the NEN 7513 control rules (`console.control`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlConfig {
    /// Days of log the rules look at.
    pub window_days: u32,
    /// A user who reads at least `burst_reads` signals within
    /// `burst_minutes` minutes.
    pub burst_reads: u32,
    pub burst_minutes: u32,
    /// Office hours (local hours in `time_zone`, start inclusive, end
    /// exclusive, Monday to Friday); reads outside them are flagged per
    /// user and local day.
    pub office_start_hour: u8,
    pub office_end_hour: u8,
    /// The IANA time zone of the office hours (daylight saving time
    /// included); the database is compiled in.
    pub time_zone: String,
    /// A user refused at least this many times in the window.
    pub repeated_refusals: u32,
    /// A partner whose disclosures in the last week exceed this factor
    /// times its weekly average over the rest of the window (and at least
    /// `volume_minimum`).
    pub volume_factor: f64,
    pub volume_minimum: u32,
    /// A user (or, without one, a partner) with at least this many reads of
    /// signals that were neither submitted by nor referred or delivered to
    /// the reader's organisation, by the log...
    pub unreferred_reads: u32,
    /// ...looking this many days back for the submission, referral or
    /// delivery (the reads themselves: the last `window_days`).
    pub referral_lookback_days: u32,
    /// Partners whose reads this rule does not judge (none by default; the
    /// intake partner receives every signal by its submission entry).
    pub referral_exempt: Vec<String>,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            window_days: 28,
            burst_reads: 20,
            burst_minutes: 10,
            office_start_hour: 6,
            office_end_hour: 18,
            repeated_refusals: 5,
            volume_factor: 3.0,
            volume_minimum: 10,
            time_zone: "Europe/Amsterdam".into(),
            unreferred_reads: 1,
            referral_lookback_days: 365,
            referral_exempt: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_work_without_a_file() {
        let cfg = Config::load(&Overrides::default()).unwrap();
        assert_eq!(cfg.http.listen.port(), 8443);
        assert_eq!(cfg.http.body_limit, 1 << 20);
        assert!(cfg.database_url().starts_with("sqlite://"));
        assert_eq!(cfg.auth.algorithms, vec!["EdDSA".to_string()]);
    }

    #[test]
    fn file_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("k.toml");
        std::fs::write(&file, "data_dir = \"/srv/kp\"\n[http]\nbody_limit = 2048\n").unwrap();
        let o = Overrides {
            config_file: Some(file),
            database_url: Some("postgres://x@h/db".into()),
            ..Default::default()
        };
        let cfg = Config::load(&o).unwrap();
        assert_eq!(cfg.http.body_limit, 2048);
        assert_eq!(cfg.data_dir, PathBuf::from("/srv/kp"));
        assert_eq!(cfg.database_url(), "postgres://x@h/db");
    }

    #[test]
    fn which_variables_are_settings() {
        for setting in [
            "data_dir",
            "DATABASE__URL",
            "kek",
            "kek_x",
            "kek_",
            "KEK_1_X",
            "keks_1",
        ] {
            assert!(is_setting(setting), "{setting}");
        }
        for other in ["KEK_1", "kek_12", "TEST_DATABASE_URL", "bench_x"] {
            assert!(!is_setting(other), "{other}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("k.toml");
        std::fs::write(&file, "[http]\nbody_limt = 2048\n").unwrap();
        let o = Overrides {
            config_file: Some(file),
            ..Default::default()
        };
        assert!(Config::load(&o).is_err());
    }
}
