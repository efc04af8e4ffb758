//! `retention run`: purges every signal past retention now, as the server
//! does on its interval (invariant 7: its data key is destroyed, its rows
//! deleted; the log keeps its entries).

use std::process::ExitCode;

use clap::Subcommand;

use super::{Common, open};

#[derive(Subcommand)]
pub(super) enum RetentionCommand {
    /// Purge every signal older than retention.signal_days now (the server
    /// also does this every retention.interval_secs): destroy its data key,
    /// delete its rows. The log keeps its entries.
    Run {
        #[command(flatten)]
        common: Common,
    },
}

pub(super) async fn run(action: RetentionCommand) -> anyhow::Result<ExitCode> {
    let RetentionCommand::Run { common } = action;
    let (cfg, db) = open(&common).await?;
    let n = crate::retention::purge_expired(&db, &cfg.retention).await?;
    println!(
        "retention: purged {n} signals older than {} days",
        cfg.retention.signal_days
    );
    Ok(ExitCode::SUCCESS)
}
