//! `migrate`: applies the database migrations and exits.

use std::process::ExitCode;

use super::{Common, open};

pub(super) async fn run(common: &Common) -> anyhow::Result<ExitCode> {
    open(common).await?;
    println!("migrations applied");
    Ok(ExitCode::SUCCESS)
}
