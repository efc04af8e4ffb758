//! `partner`: registers, lists, suspends and reactivates the partners of
//! the registry. A suspended partner's tokens stop working.

use std::process::ExitCode;

use clap::Subcommand;

use super::{Common, open};
use crate::partners::{Partner, PartnerStatus};

#[derive(Subcommand)]
pub(super) enum PartnerCommand {
    /// Register a partner.
    Add {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        /// gemeente, zvhd, politie, nla, om, veilig-thuis, zorgpartner, riec, ...
        #[arg(long)]
        kind: String,
        /// Comma-separated roles this partner's tokens may carry.
        #[arg(long, value_delimiter = ',', required = true)]
        roles: Vec<String>,
        /// The partner is outside the covenant (phenomenon tables only).
        #[arg(long)]
        non_member: bool,
        #[arg(long)]
        oin: Option<String>,
        /// SHA-256 (hex) of a client certificate; repeatable.
        #[arg(long = "cert-fingerprint")]
        cert_fingerprints: Vec<String>,
    },
    /// List partners.
    List {
        #[command(flatten)]
        common: Common,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Suspend a partner: its tokens stop working.
    Suspend {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        id: String,
    },
    /// Reactivate a suspended partner.
    Activate {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        id: String,
    },
}

pub(super) async fn run(action: PartnerCommand) -> anyhow::Result<ExitCode> {
    match action {
        PartnerCommand::Add {
            common,
            id,
            name,
            kind,
            roles,
            non_member,
            oin,
            cert_fingerprints,
        } => {
            let p = Partner {
                id,
                display_name: name,
                kind,
                member: !non_member,
                oin,
                roles,
                cert_fingerprints: cert_fingerprints
                    .into_iter()
                    .map(|f| f.to_ascii_lowercase().replace(':', ""))
                    .collect(),
                status: PartnerStatus::Active,
            };
            add(&common, &p).await?
        }
        PartnerCommand::List { common, json } => list(&common, json).await?,
        PartnerCommand::Suspend { common, id } => {
            set_status(&common, &id, PartnerStatus::Suspended).await?
        }
        PartnerCommand::Activate { common, id } => {
            set_status(&common, &id, PartnerStatus::Active).await?
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn add(common: &Common, p: &Partner) -> anyhow::Result<()> {
    let (_, db) = open(common).await?;
    p.validate().map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        db.insert_partner(p).await?,
        "partner {:?} already exists",
        p.id
    );
    println!("added {}", p.id);
    Ok(())
}

async fn list(common: &Common, json: bool) -> anyhow::Result<()> {
    let (_, db) = open(common).await?;
    let all = db.partners().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    println!(
        "{:<16} {:<14} {:<7} {:<10} ROLES",
        "ID", "KIND", "MEMBER", "STATUS"
    );
    for p in all {
        let member = if p.member { "yes" } else { "no" };
        println!(
            "{:<16} {:<14} {:<7} {:<10} {}",
            p.id,
            p.kind,
            member,
            p.status.as_str(),
            p.roles.join(",")
        );
    }
    Ok(())
}

async fn set_status(common: &Common, id: &str, status: PartnerStatus) -> anyhow::Result<()> {
    let (_, db) = open(common).await?;
    anyhow::ensure!(
        db.set_partner_status(id, status).await?,
        "no partner {id:?}"
    );
    println!("{id} is now {}", status.as_str());
    Ok(())
}
