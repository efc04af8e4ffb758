//! `token issue`: prints a signed bearer token for a registered partner and
//! role, optionally bound to a client certificate (RFC 8705).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

use super::{Common, open};
use crate::auth::token::{self, TokenRequest};

#[derive(Subcommand)]
pub(super) enum TokenCommand {
    /// Print a signed token for a partner and role.
    Issue {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        partner: String,
        #[arg(long)]
        role: String,
        #[arg(long)]
        user: Option<String>,
        /// Lifetime: 30s, 15m, 1h, 7d.
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// Bind the token to this client certificate (PEM), RFC 8705.
        #[arg(long, value_name = "PEM")]
        bind_cert: Option<PathBuf>,
    },
}

pub(super) async fn run(action: TokenCommand) -> anyhow::Result<ExitCode> {
    let TokenCommand::Issue {
        common,
        partner,
        role,
        user,
        ttl,
        bind_cert,
    } = action;
    let (cfg, db) = open(&common).await?;
    let p = db
        .partner(&partner)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no partner {partner:?}"))?;
    anyhow::ensure!(
        p.roles.contains(&role),
        "role {role:?} is not registered for partner {partner:?}"
    );
    let cert_fingerprint = bind_cert.as_deref().map(cert_fingerprint).transpose()?;
    let req = TokenRequest {
        partner: &partner,
        role: &role,
        user: user.as_deref(),
        ttl: token::parse_ttl(&ttl)?,
        cert_fingerprint,
    };
    println!("{}", token::issue(&cfg, &req)?);
    Ok(ExitCode::SUCCESS)
}

/// The fingerprint of the client certificate (PEM) at `path`.
fn cert_fingerprint(path: &Path) -> anyhow::Result<[u8; 32]> {
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::CertificateDer::from_pem_file(path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    Ok(crate::tls::fingerprint(&der))
}
