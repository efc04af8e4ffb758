//! The command line: `serve`, `migrate`, `partner`, `token`, `log`, `keys`,
//! `policy`, `retention`, `phenomena`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::auth::token::{self, TokenRequest};
use crate::config::{Config, Overrides};
use crate::crypto::envelope::Keyring;
use crate::keys::KeyStore;
use crate::partners::{Partner, PartnerStatus};
use crate::phenomena::{Phenomena, ReleasePeriod};
use crate::signals::Vault;
use crate::store::Db;
use crate::{server, telemetry};

#[derive(Parser)]
#[command(
    name = "ketenpoort",
    version,
    about = "Exchange gateway of the Drenthe anti-trafficking covenant"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Common {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (keys, TLS material, SQLite database).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// `sqlite://...` or `postgres://...`; default: SQLite in the data directory.
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
}

impl Common {
    fn config(&self, listen: Option<SocketAddr>) -> anyhow::Result<Config> {
        Config::load(&Overrides {
            config_file: self.config.clone(),
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            listen,
        })
    }
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API over HTTPS.
    Serve {
        #[command(flatten)]
        common: Common,
        /// Listen address (default 127.0.0.1:8443).
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// Initialise the data directory with the Drenthe demo region first.
        #[arg(long)]
        demo: bool,
    },
    /// Apply database migrations and exit.
    Migrate {
        #[command(flatten)]
        common: Common,
    },
    /// Manage the partner registry.
    Partner {
        #[command(subcommand)]
        action: PartnerCommand,
    },
    /// Bearer tokens.
    Token {
        #[command(subcommand)]
        action: TokenCommand,
    },
    /// The disclosure log.
    Log {
        #[command(subcommand)]
        action: LogCommand,
    },
    /// The key store.
    Keys {
        #[command(subcommand)]
        action: KeysCommand,
    },
    /// The covenant policies.
    Policy {
        #[command(subcommand)]
        action: PolicyCommand,
    },
    /// Retention of signals.
    Retention {
        #[command(subcommand)]
        action: RetentionCommand,
    },
    /// Phenomenon tables for the RIEC.
    Phenomena {
        #[command(subcommand)]
        action: PhenomenaCommand,
    },
}

#[derive(Subcommand)]
enum RetentionCommand {
    /// Purge every signal older than retention.signal_days now (the server
    /// also does this every retention.interval_secs): destroy its data key,
    /// delete its rows. The log keeps its entries.
    Run {
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand)]
enum PhenomenaCommand {
    /// Publish the release of a closed period (default: the last one to
    /// close). A period already released is left as it is; one of another
    /// cadence than phenomena.release_every, not yet ended, or not ending
    /// after the newest release is refused.
    Release {
        #[command(flatten)]
        common: Common,
        /// The period: a quarter (2026-Q3) or a month (2026-08), as
        /// phenomena.release_every says.
        #[arg(long, value_name = "PERIOD")]
        period: Option<String>,
    },
}

#[derive(Subcommand)]
enum LogCommand {
    /// Recompute the whole log and check every checkpoint; exit 0 only if
    /// everything verifies, otherwise name the first bad index.
    Verify {
        #[command(flatten)]
        common: Common,
        /// The log's verifier key as GET /v1/log/verifier-key serves it (or
        /// a file holding it). Default: keys/log-signing.pub.pem of the data
        /// directory. Needed with --database-url without --data-dir.
        #[arg(long, value_name = "KEY|FILE")]
        verifier_key: Option<String>,
        /// A checkpoint note kept outside the database (as GET
        /// /v1/log/checkpoint served it); the log must be consistent with
        /// it. Repeatable.
        #[arg(long = "checkpoint", value_name = "FILE")]
        checkpoints: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create every key the service needs (once, before the first start
    /// of several instances that share the key directory). Never replaces.
    Init {
        #[command(flatten)]
        common: Common,
    },
    /// Create a new key-encryption key and re-wrap every data key with it.
    /// The old KEK file can be removed once this has succeeded everywhere.
    /// With KEKs in the environment (`KETENPOORT_KEK_<n>`) set the next one
    /// there and use `rewrap`.
    RotateKek {
        #[command(flatten)]
        common: Common,
    },
    /// Re-wrap every data key not yet under the current (highest)
    /// key-encryption key, from the key store or the environment.
    Rewrap {
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Run the Rego tests (`test_*` rules in `*_test.rego`).
    Test {
        /// Policy directory or bundle (default: policy.path from the configuration).
        #[arg(long, value_name = "DIR")]
        policies: Option<PathBuf>,
    },
    /// Evaluate JSON lines `{"entrypoint": ..., "input": ...}` from stdin;
    /// print one decision per line.
    Eval {
        #[arg(long, value_name = "DIR")]
        policies: Option<PathBuf>,
        /// Instead of decisions, evaluate the inputs this many times and print
        /// the decision latency (JSON: count, p50, p99, mean in µs).
        #[arg(long, value_name = "ROUNDS")]
        timing: Option<u32>,
    },
    /// Build an OPA bundle tarball from a policy directory, after its Rego
    /// tests pass; with a signing key, signed as OPA signs bundles.
    Bundle {
        #[arg(long, value_name = "DIR")]
        policies: PathBuf,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// PEM private key (PKCS#8): Ed25519 (EdDSA), P-256 (ES256) or RSA (RS256).
        #[arg(long, value_name = "PEM")]
        signing_key: Option<PathBuf>,
    },
    /// Write the JSON Schemas of the policy input and decision.
    Schema {
        #[arg(long, value_name = "DIR", default_value = "policies/schema")]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum PartnerCommand {
    /// Register a partner.
    Add {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        /// gemeente, zvhd, politie, nla, om, veilig-thuis, zorgpartner, riec, ...
        #[arg(long)]
        kind: String,
        /// Comma-separated roles this partner's tokens may carry.
        #[arg(long, value_delimiter = ',', required = true)]
        roles: Vec<String>,
        /// The partner is outside the covenant (phenomenon tables only).
        #[arg(long)]
        non_member: bool,
        #[arg(long)]
        oin: Option<String>,
        /// SHA-256 (hex) of a client certificate; repeatable.
        #[arg(long = "cert-fingerprint")]
        cert_fingerprints: Vec<String>,
    },
    /// List partners.
    List {
        #[command(flatten)]
        common: Common,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Suspend a partner: its tokens stop working.
    Suspend {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        id: String,
    },
    /// Reactivate a suspended partner.
    Activate {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        id: String,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a signed token for a partner and role.
    Issue {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        partner: String,
        #[arg(long)]
        role: String,
        #[arg(long)]
        user: Option<String>,
        /// Lifetime: 30s, 15m, 1h, 7d.
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// Bind the token to this client certificate (PEM), RFC 8705.
        #[arg(long, value_name = "PEM")]
        bind_cert: Option<PathBuf>,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn open(common: &Common) -> anyhow::Result<(Config, Db)> {
    let cfg = common.config(None)?;
    let db = Db::connect(&cfg.database_url(), 2).await?;
    db.migrate().await?;
    Ok((cfg, db))
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve {
            common,
            listen,
            demo,
        } => {
            let cfg = common.config(listen)?;
            telemetry::init_logging(&cfg.logging.level);
            server::run(cfg, demo).await?;
        }
        Command::Migrate { common } => {
            open(&common).await?;
            println!("migrations applied");
        }
        Command::Partner { action } => return partner(action).await,
        Command::Log {
            action:
                LogCommand::Verify {
                    common,
                    verifier_key,
                    checkpoints,
                },
        } => {
            let cfg = common.config(None)?;
            let trusted = trusted_log_key(&cfg, verifier_key)?;
            let held = checkpoints
                .iter()
                .map(|path| {
                    let note = std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    Ok(crate::ledger::verify::HeldCheckpoint {
                        name: path.display().to_string(),
                        note,
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            // The scan opens connections of its own (see store::log_scan).
            let db = Db::connect(&cfg.database_url(), 1).await?;
            match crate::ledger::verify::verify(&db, &trusted, &held).await {
                Ok(r) => println!(
                    "log verified: {} entries, {} checkpoints, root {}{}",
                    r.entries,
                    r.checkpoints,
                    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, r.root.0),
                    if r.held > 0 {
                        format!("; consistent with {} held checkpoints", r.held)
                    } else {
                        String::new()
                    }
                ),
                Err(f) => {
                    eprintln!("log verification FAILED: {f}");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        Command::Policy { action } => return policy(action),
        Command::Retention {
            action: RetentionCommand::Run { common },
        } => {
            let (cfg, db) = open(&common).await?;
            let n = crate::retention::purge_expired(&db, &cfg.retention).await?;
            println!(
                "retention: purged {n} signals older than {} days",
                cfg.retention.signal_days
            );
        }
        Command::Phenomena {
            action: PhenomenaCommand::Release { common, period },
        } => {
            let (cfg, db) = open(&common).await?;
            let policy = crate::policy::PolicyEngine::load(
                cfg.policy.path.clone(),
                crate::policy::VerificationKeys::from_config(&cfg.policy)?,
            )?;
            let keys = KeyStore::new(&cfg.data_dir);
            let phenomena = Phenomena::new(db, policy, &cfg.phenomena, &keys)?;
            let id = match period {
                Some(p) => p.parse::<ReleasePeriod>().map_err(|_| {
                    anyhow::anyhow!("--period must be a quarter (2026-Q3) or a month (2026-08)")
                })?,
                None => ReleasePeriod::last_closed(
                    cfg.phenomena.release_every,
                    time::OffsetDateTime::now_utc().date(),
                ),
            };
            let (created, release) = phenomena.publish(id).await?;
            let verb = if created {
                "published"
            } else {
                "already published"
            };
            println!(
                "release {} {verb}: {} tables, {} trends",
                release.id,
                release.tables.len(),
                release.trends.len()
            );
        }
        Command::Keys {
            action: KeysCommand::Init { common },
        } => {
            let cfg = common.config(None)?;
            crate::server::init_service_keys(&KeyStore::new(&cfg.data_dir))?;
            println!("keys in {}", cfg.data_dir.join("keys").display());
        }
        Command::Keys {
            action: KeysCommand::RotateKek { common },
        } => {
            let (cfg, db) = open(&common).await?;
            let store = KeyStore::new(&cfg.data_dir);
            let name = Keyring::create_next(&store)?;
            let n = Vault::new(Keyring::load(&store)?).rewrap_all(&db).await?;
            println!("{name} is now the key-encryption key; {n} data keys re-wrapped");
        }
        Command::Keys {
            action: KeysCommand::Rewrap { common },
        } => {
            let (cfg, db) = open(&common).await?;
            let ring = Keyring::load(&KeyStore::new(&cfg.data_dir))?;
            let name = ring.current().to_owned();
            let n = Vault::new(ring).rewrap_all(&db).await?;
            println!("{name} is the key-encryption key; {n} data keys re-wrapped");
        }
        Command::Token {
            action:
                TokenCommand::Issue {
                    common,
                    partner,
                    role,
                    user,
                    ttl,
                    bind_cert,
                },
        } => {
            let (cfg, db) = open(&common).await?;
            let p = db
                .partner(&partner)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no partner {partner:?}"))?;
            anyhow::ensure!(
                p.roles.contains(&role),
                "role {role:?} is not registered for partner {partner:?}"
            );
            let cert_fingerprint = match bind_cert {
                Some(path) => {
                    use rustls_pki_types::pem::PemObject;
                    let der = rustls_pki_types::CertificateDer::from_pem_file(&path)
                        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
                    Some(crate::tls::fingerprint(&der))
                }
                None => None,
            };
            let req = TokenRequest {
                partner: &partner,
                role: &role,
                user: user.as_deref(),
                ttl: token::parse_ttl(&ttl)?,
                cert_fingerprint,
            };
            println!("{}", token::issue(&cfg, &req)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The key `log verify` checks checkpoints with: `--verifier-key` (the key
/// itself or a file holding it), else the data directory's log signing
/// public key (never the key stored in the database, which whoever can
/// rewrite the log can replace).
fn trusted_log_key(
    cfg: &Config,
    explicit: Option<String>,
) -> anyhow::Result<crate::ledger::verify::TrustedKey> {
    use crate::ledger::verify::TrustedKey;
    if let Some(v) = explicit {
        let path = std::path::Path::new(&v);
        let key = if path.is_file() {
            std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?
                .trim()
                .to_owned()
        } else {
            v
        };
        return Ok(TrustedKey::Note(key));
    }
    let public = KeyStore::new(&cfg.data_dir)
        .ed25519_public(crate::ledger::LOG_KEY)
        .context(
            "no trusted log key: give --verifier-key (GET /v1/log/verifier-key) or a --data-dir \
             holding keys/log-signing.pub.pem",
        )?;
    Ok(TrustedKey::Ed25519 {
        public,
        origin: cfg.log.origin.clone(),
    })
}

/// The policies to load: `explicit`, or policy.path; verified as `serve`
/// verifies them (policy.bundle_verification_keys).
fn load_policies(explicit: Option<PathBuf>) -> anyhow::Result<crate::policy::Bundle> {
    let cfg = Config::load(&Overrides::default())?;
    let keys = crate::policy::VerificationKeys::from_config(&cfg.policy)?;
    let source = explicit.unwrap_or(cfg.policy.path);
    Ok(crate::policy::Bundle::load(&source, keys.as_ref())?)
}

fn policy(action: PolicyCommand) -> anyhow::Result<ExitCode> {
    use std::io::{BufRead, Write};

    use crate::policy::{Bundle, Policies, Signer, run_tests};
    match action {
        PolicyCommand::Test { policies } => {
            let bundle = load_policies(policies)?;
            let report = run_tests(&bundle)?;
            for f in &report.failed {
                println!("FAIL {f}");
            }
            println!(
                "{} passed, {} failed ({})",
                report.passed.len(),
                report.failed.len(),
                bundle.revision()
            );
            if !report.failed.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
        }
        PolicyCommand::Eval { policies, timing } => {
            #[derive(serde::Deserialize)]
            struct Line {
                entrypoint: String,
                input: serde_json::Value,
            }
            let compiled = Policies::compile(&load_policies(policies)?)?;
            let mut lines = Vec::new();
            for line in std::io::stdin().lock().lines() {
                let line = line?;
                if !line.trim().is_empty() {
                    lines.push(serde_json::from_str::<Line>(&line)?);
                }
            }
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            if let Some(rounds) = timing {
                let mut micros = Vec::with_capacity(lines.len() * rounds as usize);
                for _ in 0..rounds.max(1) {
                    for l in &lines {
                        let start = std::time::Instant::now();
                        std::hint::black_box(compiled.evaluate(&l.entrypoint, &l.input));
                        micros.push(start.elapsed().as_secs_f64() * 1e6);
                    }
                }
                micros.sort_by(f64::total_cmp);
                let pct = |p: f64| micros[((micros.len() - 1) as f64 * p).round() as usize];
                let mean = micros.iter().sum::<f64>() / micros.len() as f64;
                let summary = serde_json::json!({
                    "count": micros.len(), "p50_us": pct(0.5), "p99_us": pct(0.99), "mean_us": mean,
                });
                writeln!(out, "{summary}")?;
            } else {
                for l in &lines {
                    serde_json::to_writer(&mut out, &compiled.evaluate(&l.entrypoint, &l.input))?;
                    out.write_all(b"\n")?;
                }
            }
            out.flush()?;
        }
        PolicyCommand::Bundle {
            policies,
            out,
            signing_key,
        } => {
            anyhow::ensure!(
                policies.is_dir(),
                "{} is not a policy directory",
                policies.display()
            );
            let bundle = Bundle::load(&policies, None)?;
            Policies::vet(&bundle).context("no bundle written")?;
            let signer = match &signing_key {
                Some(path) => Some(
                    Signer::from_pem(&std::fs::read(path)?)
                        .with_context(|| format!("signing key {}", path.display()))?,
                ),
                None => None,
            };
            let mut file = std::io::BufWriter::new(
                std::fs::File::create(&out)
                    .with_context(|| format!("creating {}", out.display()))?,
            );
            bundle.write_tarball(&mut file, signer.as_ref())?;
            file.flush()?;
            println!(
                "wrote {} ({}, {})",
                out.display(),
                bundle.revision(),
                if signer.is_some() {
                    "signed"
                } else {
                    "unsigned"
                }
            );
        }
        PolicyCommand::Schema { out } => {
            std::fs::create_dir_all(&out)?;
            for (name, schema) in [
                ("input.json", schemars::schema_for!(crate::policy::Input)),
                (
                    "decision.json",
                    schemars::schema_for!(crate::policy::Decision),
                ),
            ] {
                std::fs::write(
                    out.join(name),
                    serde_json::to_string_pretty(&schema)? + "\n",
                )?;
            }
            println!("wrote {}", out.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn partner(action: PartnerCommand) -> anyhow::Result<ExitCode> {
    match action {
        PartnerCommand::Add {
            common,
            id,
            name,
            kind,
            roles,
            non_member,
            oin,
            cert_fingerprints,
        } => {
            let (_, db) = open(&common).await?;
            let p = Partner {
                id,
                display_name: name,
                kind,
                member: !non_member,
                oin,
                roles,
                cert_fingerprints: cert_fingerprints
                    .into_iter()
                    .map(|f| f.to_ascii_lowercase().replace(':', ""))
                    .collect(),
                status: PartnerStatus::Active,
            };
            p.validate().map_err(anyhow::Error::msg)?;
            anyhow::ensure!(
                db.insert_partner(&p).await?,
                "partner {:?} already exists",
                p.id
            );
            println!("added {}", p.id);
        }
        PartnerCommand::List { common, json } => {
            let (_, db) = open(&common).await?;
            let all = db.partners().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                println!(
                    "{:<16} {:<14} {:<7} {:<10} ROLES",
                    "ID", "KIND", "MEMBER", "STATUS"
                );
                for p in all {
                    let member = if p.member { "yes" } else { "no" };
                    println!(
                        "{:<16} {:<14} {:<7} {:<10} {}",
                        p.id,
                        p.kind,
                        member,
                        p.status.as_str(),
                        p.roles.join(",")
                    );
                }
            }
        }
        PartnerCommand::Suspend { common, id } => {
            set_status(&common, &id, PartnerStatus::Suspended).await?
        }
        PartnerCommand::Activate { common, id } => {
            set_status(&common, &id, PartnerStatus::Active).await?
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn set_status(common: &Common, id: &str, status: PartnerStatus) -> anyhow::Result<()> {
    let (_, db) = open(common).await?;
    anyhow::ensure!(
        db.set_partner_status(id, status).await?,
        "no partner {id:?}"
    );
    println!("{id} is now {}", status.as_str());
    Ok(())
}
