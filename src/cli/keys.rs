//! `keys`: creates the service keys, and rotates the key-encryption key
//! that wraps every signal's data key (invariant 7: personal data at rest
//! is encrypted with per-record keys).

use std::process::ExitCode;

use clap::Subcommand;

use super::{Common, open};
use crate::crypto::envelope::Keyring;
use crate::keys::KeyStore;
use crate::signals::Vault;

#[derive(Subcommand)]
pub(super) enum KeysCommand {
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

pub(super) async fn run(action: KeysCommand) -> anyhow::Result<ExitCode> {
    match action {
        KeysCommand::Init { common } => init(&common)?,
        KeysCommand::RotateKek { common } => rotate_kek(&common).await?,
        KeysCommand::Rewrap { common } => rewrap(&common).await?,
    }
    Ok(ExitCode::SUCCESS)
}

fn init(common: &Common) -> anyhow::Result<()> {
    let cfg = common.config(None)?;
    crate::server::init_service_keys(&KeyStore::new(&cfg.data_dir))?;
    println!("keys in {}", cfg.data_dir.join("keys").display());
    Ok(())
}

async fn rotate_kek(common: &Common) -> anyhow::Result<()> {
    let (cfg, db) = open(common).await?;
    let store = KeyStore::new(&cfg.data_dir);
    let name = Keyring::create_next(&store)?;
    let n = Vault::new(Keyring::load(&store)?).rewrap_all(&db).await?;
    println!("{name} is now the key-encryption key; {n} data keys re-wrapped");
    Ok(())
}

async fn rewrap(common: &Common) -> anyhow::Result<()> {
    let (cfg, db) = open(common).await?;
    let ring = Keyring::load(&KeyStore::new(&cfg.data_dir))?;
    let name = ring.current().to_owned();
    let n = Vault::new(ring).rewrap_all(&db).await?;
    println!("{name} is the key-encryption key; {n} data keys re-wrapped");
    Ok(())
}
