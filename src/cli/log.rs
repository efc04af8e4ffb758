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
use crate::ledger::verify::{HeldCheckpoint, Options, TrustedKey};
use crate::store::Db;
use crate::witness::WitnessKey;

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
        /// Incremental: FILE holds a checkpoint verified before; check that
        /// the log is consistent with it and read only the entries after
        /// it, then write the newest checkpoint (with its cosignatures) to
        /// FILE for next time. A missing FILE means a full run that writes it.
        #[arg(long, value_name = "FILE")]
        since: Option<PathBuf>,
        /// A witness's cosignature/v1 verifier key (or a file holding it);
        /// repeatable. The report says which checkpoints it cosigned.
        /// Default: the keys of `log.witnesses` in the configuration.
        #[arg(long = "witness-key", value_name = "VKEY|FILE")]
        witness_keys: Vec<String>,
        /// The newest checkpoint must carry this many valid cosignatures by
        /// those witnesses. Default: `log.min_witnesses`.
        #[arg(long, value_name = "K")]
        min_witnesses: Option<usize>,
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
    let (common, verifier_key, checkpoints, since, witness_keys, min_witnesses) = match action {
        LogCommand::Verify {
            common,
            verifier_key,
            checkpoints,
            since,
            witness_keys,
            min_witnesses,
        } => (
            common,
            verifier_key,
            checkpoints,
            since,
            witness_keys,
            min_witnesses,
        ),
        LogCommand::UserRef {
            common,
            partner,
            user,
        } => return user_ref(common, &partner, &user),
    };
    let cfg = common.config(None)?;
    let trusted = trusted_log_key(&cfg, verifier_key)?;
    let held = held_checkpoints(&checkpoints)?;
    let witness_keys = if witness_keys.is_empty() {
        cfg.log.witnesses.iter().map(|w| w.key.clone()).collect()
    } else {
        witness_keys
    };
    let witnesses = witness_keys
        .iter()
        .map(|k| WitnessKey::parse(&key_or_file(k)?))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let min_witnesses = min_witnesses.unwrap_or(cfg.log.min_witnesses);
    let old = match &since {
        Some(path) if path.exists() => Some(
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        ),
        _ => None,
    };
    let opts = Options {
        held: &held,
        since: old.as_deref(),
        witnesses: &witnesses,
        min_witnesses,
    };
    // The scan opens connections of its own (see store::log_scan).
    let db = Db::connect(&cfg.database_url(), 1).await?;
    let r = match crate::ledger::verify::verify(&db, &trusted, &opts).await {
        Ok(r) => r,
        Err(f) => {
            eprintln!("log verification FAILED: {f}");
            return Ok(ExitCode::FAILURE);
        }
    };
    println!(
        "log verified: {} entries, {} checkpoints, root {}{}",
        r.entries,
        r.checkpoints,
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, r.root.0),
        if r.held > 0 {
            format!("; consistent with {} held checkpoints", r.held)
        } else {
            String::new()
        }
    );
    match r.since {
        Some(old) => println!(
            "incremental: consistent with the checkpoint of size {old} verified before; read {} entries",
            r.read
        ),
        None => println!("read {} entries", r.read),
    }
    for (size, names) in &r.witnessed {
        println!("checkpoint {size} witnessed by {}", names.join(", "));
    }
    if let (Some(path), Some(note)) = (&since, &r.newest) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, note).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
        println!("verified checkpoint written to {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// A key given on the command line, or the contents of the file it names.
fn key_or_file(v: &str) -> anyhow::Result<String> {
    let path = std::path::Path::new(v);
    if path.is_file() {
        return Ok(std::fs::read_to_string(path)
            .with_context(|| format!("reading {}", path.display()))?
            .trim()
            .to_owned());
    }
    Ok(v.to_owned())
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
        return Ok(TrustedKey::Note(key_or_file(&v)?));
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
