//! The command line: `serve`, `migrate`, `partner`, `client`, `token`, `log`, `keys`,
//! `policy`, `retention`, `phenomena`, `witness`. This module holds the clap types
//! shared by every subcommand and the dispatch; each subcommand's arguments
//! and body live in a file of their own.

mod client;
mod keys;
mod log;
mod migrate;
mod partner;
mod phenomena;
mod policy;
mod retention;
mod serve;
mod token;
mod witness;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, Overrides};
use crate::store::Db;
use client::ClientCommand;
use keys::KeysCommand;
use log::LogCommand;
use partner::PartnerCommand;
use phenomena::PhenomenaCommand;
use policy::PolicyCommand;
use retention::RetentionCommand;
use token::TokenCommand;
use witness::WitnessCommand;

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
    /// Partner systems that get their own tokens at the token endpoint.
    Client {
        #[command(subcommand)]
        action: ClientCommand,
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
    /// The witness a partner runs to cosign the log's checkpoints.
    Witness {
        #[command(subcommand)]
        action: WitnessCommand,
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

/// The configuration and a migrated database, as most subcommands need them.
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
        } => serve::run(&common, listen, demo).await,
        Command::Migrate { common } => migrate::run(&common).await,
        Command::Partner { action } => partner::run(action).await,
        Command::Client { action } => client::run(action).await,
        Command::Token { action } => token::run(action).await,
        Command::Log { action } => log::run(action).await,
        Command::Keys { action } => keys::run(action).await,
        Command::Policy { action } => policy::run(action),
        Command::Retention { action } => retention::run(action).await,
        Command::Phenomena { action } => phenomena::run(action).await,
        Command::Witness { action } => witness::run(action).await,
    }
}
