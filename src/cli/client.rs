//! `client`: registers, lists, suspends and reactivates partner systems
//! that get their own tokens at the token endpoint (`POST /v1/oauth/token`).
//! A suspended client gets no new token; its tokens already issued live
//! their few minutes (`auth.client_token_ttl_secs`) unless its partner is
//! suspended too.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use super::{Common, open};
use crate::model::client::{Client, Credential, is_oin};
use crate::model::partner::is_slug;
use crate::partners::PartnerStatus;

#[derive(Subcommand)]
pub(super) enum ClientCommand {
    /// Register a partner system. Exactly one of --cert, --cert-fingerprint,
    /// --oin or --jwks says how it authenticates.
    Add {
        #[command(flatten)]
        common: Common,
        /// The client id (a slug), sent as `client_id`.
        #[arg(long)]
        id: String,
        #[arg(long)]
        partner: String,
        /// Comma-separated roles it may ask for (`scope`); each a role of the partner.
        #[arg(long, value_delimiter = ',', required = true)]
        roles: Vec<String>,
        /// self_signed_tls_client_auth: its certificate (PEM).
        #[arg(long, value_name = "PEM")]
        cert: Option<PathBuf>,
        /// self_signed_tls_client_auth: its certificate's SHA-256 (hex).
        #[arg(long)]
        cert_fingerprint: Option<String>,
        /// tls_client_auth: the OIN in its certificate's subject serialNumber
        /// (needs tls.client_ca).
        #[arg(long)]
        oin: Option<String>,
        /// private_key_jwt: its public keys (a JWKS file).
        #[arg(long, value_name = "FILE")]
        jwks: Option<PathBuf>,
    },
    /// List clients.
    List {
        #[command(flatten)]
        common: Common,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Suspend a client: it gets no new token.
    Suspend {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        id: String,
    },
    /// Reactivate a suspended client.
    Activate {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        id: String,
    },
}

pub(super) async fn run(action: ClientCommand) -> anyhow::Result<ExitCode> {
    match action {
        ClientCommand::Add {
            common,
            id,
            partner,
            roles,
            cert,
            cert_fingerprint,
            oin,
            jwks,
        } => {
            let auth = auth(cert, cert_fingerprint, oin, jwks)?;
            let client = Client {
                id,
                partner,
                roles,
                auth,
                status: PartnerStatus::Active,
            };
            add(&common, &client).await?;
        }
        ClientCommand::List { common, json } => list(&common, json).await?,
        ClientCommand::Suspend { common, id } => {
            set_status(&common, &id, PartnerStatus::Suspended).await?
        }
        ClientCommand::Activate { common, id } => {
            set_status(&common, &id, PartnerStatus::Active).await?
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn auth(
    cert: Option<PathBuf>,
    fingerprint: Option<String>,
    oin: Option<String>,
    jwks: Option<PathBuf>,
) -> anyhow::Result<Credential> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    Ok(match (cert, fingerprint, oin, jwks) {
        (Some(pem), None, None, None) => {
            let der = CertificateDer::from_pem_file(&pem)
                .with_context(|| format!("reading a certificate from {}", pem.display()))?;
            Credential::SelfSignedTlsClientAuth {
                cert_fingerprint: hex::encode(crate::tls::fingerprint(&der)),
            }
        }
        (None, Some(fp), None, None) => {
            let fp = fp.to_ascii_lowercase().replace(':', "");
            anyhow::ensure!(
                fp.len() == 64 && fp.bytes().all(|b| b.is_ascii_hexdigit()),
                "--cert-fingerprint must be a SHA-256 in hex"
            );
            Credential::SelfSignedTlsClientAuth {
                cert_fingerprint: fp,
            }
        }
        (None, None, Some(oin), None) => {
            anyhow::ensure!(is_oin(&oin), "--oin must be 20 digits");
            Credential::TlsClientAuth { oin }
        }
        (None, None, None, Some(file)) => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let set: jsonwebtoken::jwk::JwkSet =
                serde_json::from_str(&text).context("--jwks is not a JWKS")?;
            anyhow::ensure!(!set.keys.is_empty(), "--jwks holds no key");
            anyhow::ensure!(
                set.keys
                    .iter()
                    .all(|k| jsonwebtoken::DecodingKey::from_jwk(k).is_ok()),
                "--jwks holds a key that cannot verify signatures"
            );
            Credential::PrivateKeyJwt {
                jwks: serde_json::to_string(&set)?,
            }
        }
        _ => anyhow::bail!("give exactly one of --cert, --cert-fingerprint, --oin or --jwks"),
    })
}

async fn add(common: &Common, c: &Client) -> anyhow::Result<()> {
    let (_, db) = open(common).await?;
    anyhow::ensure!(is_slug(&c.id), "--id must be a slug (a-z, 0-9, -)");
    let partner = db
        .partner(&c.partner)
        .await?
        .with_context(|| format!("no partner {:?}", c.partner))?;
    for role in &c.roles {
        anyhow::ensure!(
            partner.roles.contains(role),
            "role {role:?} is not a role of partner {:?}",
            partner.id
        );
    }
    anyhow::ensure!(
        db.insert_client(c).await?,
        "client {:?} already exists",
        c.id
    );
    println!("added client {} of {}", c.id, c.partner);
    Ok(())
}

async fn list(common: &Common, json: bool) -> anyhow::Result<()> {
    let (_, db) = open(common).await?;
    let all = db.clients().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    println!(
        "{:<24} {:<16} {:<28} {:<10} ROLES",
        "ID", "PARTNER", "METHOD", "STATUS"
    );
    for c in all {
        println!(
            "{:<24} {:<16} {:<28} {:<10} {}",
            c.id,
            c.partner,
            c.auth.method(),
            c.status.as_str(),
            c.roles.join(",")
        );
    }
    Ok(())
}

async fn set_status(common: &Common, id: &str, status: PartnerStatus) -> anyhow::Result<()> {
    let (_, db) = open(common).await?;
    anyhow::ensure!(db.set_client_status(id, status).await?, "no client {id:?}");
    println!("{id}: {}", status.as_str());
    Ok(())
}
