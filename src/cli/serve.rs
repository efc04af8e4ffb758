//! `serve`: loads the configuration, starts logging and serves the API over
//! HTTPS (with `--demo`, after initialising the demo region).

use std::net::SocketAddr;
use std::process::ExitCode;

use super::Common;
use crate::{server, telemetry};

pub(super) async fn run(
    common: &Common,
    listen: Option<SocketAddr>,
    demo: bool,
) -> anyhow::Result<ExitCode> {
    let cfg = common.config(listen)?;
    // Held until `serve` returns: every queued log line is written out.
    let _log = telemetry::init_logging(&cfg.logging.level);
    server::run(cfg, demo).await?;
    Ok(ExitCode::SUCCESS)
}
