//! `phenomena release`: publishes the phenomenon release of a closed period,
//! as the server does when a period closes. A release holds category codes
//! and counts only (invariant 1: no personal data to the RIEC).

use std::process::ExitCode;

use clap::Subcommand;

use super::{Common, open};
use crate::config::Config;
use crate::keys::KeyStore;
use crate::phenomena::{Phenomena, ReleasePeriod};
use crate::store::Db;

#[derive(Subcommand)]
pub(super) enum PhenomenaCommand {
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

pub(super) async fn run(action: PhenomenaCommand) -> anyhow::Result<ExitCode> {
    let PhenomenaCommand::Release { common, period } = action;
    let (cfg, db) = open(&common).await?;
    let phenomena = service(&cfg, db)?;
    let id = release_period(&cfg, period)?;
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
    Ok(ExitCode::SUCCESS)
}

/// The release service under the configured policies, as `serve` builds it.
fn service(cfg: &Config, db: Db) -> anyhow::Result<Phenomena> {
    let policy = crate::policy::PolicyEngine::load(
        cfg.policy.path.clone(),
        crate::policy::VerificationKeys::from_config(&cfg.policy)?,
    )?;
    let keys = KeyStore::new(&cfg.data_dir);
    Phenomena::new(db, policy, &cfg.phenomena, &keys)
}

/// `--period`, or the last period of the configured cadence to close.
fn release_period(cfg: &Config, period: Option<String>) -> anyhow::Result<ReleasePeriod> {
    Ok(match period {
        Some(p) => p.parse::<ReleasePeriod>().map_err(|_| {
            anyhow::anyhow!("--period must be a quarter (2026-Q3) or a month (2026-08)")
        })?,
        None => ReleasePeriod::last_closed(
            cfg.phenomena.release_every,
            time::OffsetDateTime::now_utc().date(),
        ),
    })
}
