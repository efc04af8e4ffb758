//! `witness init` and `witness serve`: the witness a partner runs to cosign
//! the log's checkpoints (C2SP tlog-witness; see `crate::witness`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use crate::witness::server::{self, WitnessConfig};

#[derive(Subcommand)]
pub(super) enum WitnessCommand {
    /// Create a witness directory: its Ed25519 key, a self-signed TLS
    /// certificate and witness.toml (existing files are kept); print the
    /// witness's verifier key (cosignature/v1) for the log's operator.
    Init {
        /// The witness directory.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The witness's name, a schema-less URL (e.g. witness.assen.nl/ketenpoort).
        #[arg(long)]
        name: String,
        /// A host name or IP address for its TLS certificate (repeatable;
        /// default localhost and 127.0.0.1).
        #[arg(long = "tls-name", value_name = "HOST")]
        tls_names: Vec<String>,
    },
    /// Serve POST /add-checkpoint over HTTPS.
    Serve {
        /// The witness directory (witness.toml, keys, TLS, witness.db).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Listen address (default: witness.toml's `listen`).
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// A log's verifier key, in addition to witness.toml's `logs` (repeatable).
        #[arg(long = "log", value_name = "VKEY")]
        logs: Vec<String>,
    },
}

pub(super) async fn run(action: WitnessCommand) -> anyhow::Result<ExitCode> {
    match action {
        WitnessCommand::Init {
            dir,
            name,
            tls_names,
        } => {
            let names = if tls_names.is_empty() {
                vec!["localhost".into(), "127.0.0.1".into()]
            } else {
                tls_names
            };
            let vkey = server::init(&dir, &name, &names)?;
            eprintln!(
                "witness {name} in {}: give the log's operator this key and tls/witness.pem",
                dir.display()
            );
            println!("{vkey}");
        }
        WitnessCommand::Serve { dir, listen, logs } => {
            let mut cfg = WitnessConfig::load(&dir)?;
            cfg.logs.extend(logs);
            if let Some(l) = listen {
                cfg.listen = l;
            }
            anyhow::ensure!(
                !cfg.logs.is_empty(),
                "no logs to witness: add their verifier keys to `logs` in witness.toml or give --log"
            );
            let _log = crate::telemetry::init_logging("info");
            let witness = server::open(&dir, &cfg).await?;
            let tls = server::tls(&dir, &cfg)?;
            let listener = tokio::net::TcpListener::bind(cfg.listen)
                .await
                .with_context(|| format!("cannot listen on {}", cfg.listen))?;
            let addr = listener.local_addr()?;
            println!(
                "ketenpoort witness {} listening on https://{addr}",
                witness.key().name
            );
            tracing::info!(%addr, "witness listening");
            tokio::select! {
                () = server::serve(listener, tls, witness) => {}
                _ = tokio::signal::ctrl_c() => {}
                () = terminated() => {}
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn terminated() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}
