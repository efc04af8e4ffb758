//! `migrate`: applies the database migrations, counts the disclosure log's
//! entries the weekly counts do not cover yet (a log written before
//! migration 0020; `serve` does the same when it opens the log), and exits.

use std::process::ExitCode;

use super::{Common, open};

pub(super) async fn run(common: &Common) -> anyhow::Result<ExitCode> {
    let (_, db) = open(common).await?;
    let counted = crate::ledger::counts::catch_up(&db).await?;
    if counted > 0 {
        println!("disclosure log: {counted} entries counted in the weekly counts");
    }
    println!("migrations applied");
    Ok(ExitCode::SUCCESS)
}
