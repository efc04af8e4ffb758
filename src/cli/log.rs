//! `log verify`: recomputes the whole disclosure log and checks every
//! checkpoint against a key kept outside the database, and the log against
//! checkpoints kept outside it (invariant 3: the log is tamper-evident).
//! `log user-ref`: the reference under which the log names a partner's
//! user, for a privacy officer looking for that user's entries.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use super::Common;
use crate::config::Config;
use crate::keys::KeyStore;
use crate::ledger::verify::{HeldCheckpoint, TrustedKey};
use crate::store::Db;

#[derive(Subcommand)]
pub(super) enum LogCommand {
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
    /// Print the reference (`usr1:...`) under which the log, `/v1/me` and
    /// the export name a partner's user (a token's `sub`); the user id
    /// itself is never kept.
    UserRef {
        #[command(flatten)]
        common: Common,
        /// Partner id.
        #[arg(long)]
        partner: String,
        /// The user id as the partner's tokens carry it (`sub`).
        #[arg(long)]
        user: String,
    },
}

pub(super) async fn run(action: LogCommand) -> anyhow::Result<ExitCode> {
    let (common, verifier_key, checkpoints) = match action {
        LogCommand::Verify {
            common,
            verifier_key,
            checkpoints,
        } => (common, verifier_key, checkpoints),
        LogCommand::UserRef {
            common,
            partner,
            user,
        } => return user_ref(common, &partner, &user),
    };
    let cfg = common.config(None)?;
    let trusted = trusted_log_key(&cfg, verifier_key)?;
    let held = held_checkpoints(&checkpoints)?;
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
    Ok(ExitCode::SUCCESS)
}

/// The checkpoint notes given with `--checkpoint`, each named by its path.
fn held_checkpoints(paths: &[PathBuf]) -> anyhow::Result<Vec<HeldCheckpoint>> {
    paths
        .iter()
        .map(|path| {
            let note = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Ok(HeldCheckpoint {
                name: path.display().to_string(),
                note,
            })
        })
        .collect()
}

/// The key `log verify` checks checkpoints with: `--verifier-key` (the key
/// itself or a file holding it), else the data directory's log signing
/// public key (never the key stored in the database, which whoever can
/// rewrite the log can replace).
fn trusted_log_key(cfg: &Config, explicit: Option<String>) -> anyhow::Result<TrustedKey> {
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

/// `log user-ref`: the user's reference, made with the data directory's
/// pseudonym key as the server makes it.
fn user_ref(common: Common, partner: &str, user: &str) -> anyhow::Result<ExitCode> {
    let cfg = common.config(None)?;
    let keys = KeyStore::new(&cfg.data_dir);
    let refs = crate::crypto::Pseudonymizer::new(&*keys.secret(crate::crypto::PSEUDONYM_KEY)?);
    println!("{}", refs.user_ref(partner, user).as_str());
    Ok(ExitCode::SUCCESS)
}
