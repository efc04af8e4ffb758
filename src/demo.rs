//! `serve --demo`: a working Drenthe region in the data directory — keys, a
//! development CA, the covenant partners, a token per partner and role, and
//! fictitious phenomenon contributions so the RIEC has a release to pull.
//! Re-running keeps every existing key, certificate, partner and record.

use std::net::SocketAddr;
use std::time::Duration;

use crate::auth::token::{self, TokenRequest};
use crate::config::{Cadence, Config};
use crate::keys::{KeyStore, TOKEN_ISSUER, write_secret};
use crate::model::client::{Client, Credential};
use crate::partners::{Partner, PartnerStatus};
use crate::phenomena::catalogue::Dimension;
use crate::phenomena::tables::Categories;
use crate::phenomena::{Catalogue, Contribution, RecordKey, ReleasePeriod, release_periods};
use crate::store::Db;
use crate::tls::DevPki;

/// (id, display name, kind, member, roles)
const PARTNERS: &[(&str, &str, &str, bool, &[&str])] = &[
    (
        "aa-en-hunze",
        "Gemeente Aa en Hunze",
        "gemeente",
        true,
        GEMEENTE,
    ),
    ("assen", "Gemeente Assen", "gemeente", true, GEMEENTE),
    (
        "borger-odoorn",
        "Gemeente Borger-Odoorn",
        "gemeente",
        true,
        GEMEENTE,
    ),
    (
        "coevorden",
        "Gemeente Coevorden",
        "gemeente",
        true,
        GEMEENTE,
    ),
    (
        "de-wolden",
        "Gemeente De Wolden",
        "gemeente",
        true,
        GEMEENTE,
    ),
    ("emmen", "Gemeente Emmen", "gemeente", true, GEMEENTE),
    (
        "hoogeveen",
        "Gemeente Hoogeveen",
        "gemeente",
        true,
        GEMEENTE,
    ),
    ("meppel", "Gemeente Meppel", "gemeente", true, GEMEENTE),
    (
        "midden-drenthe",
        "Gemeente Midden-Drenthe",
        "gemeente",
        true,
        GEMEENTE,
    ),
    (
        "noordenveld",
        "Gemeente Noordenveld",
        "gemeente",
        true,
        GEMEENTE,
    ),
    ("tynaarlo", "Gemeente Tynaarlo", "gemeente", true, GEMEENTE),
    (
        "westerveld",
        "Gemeente Westerveld",
        "gemeente",
        true,
        GEMEENTE,
    ),
    (
        "zvhd",
        "Zorg- en Veiligheidshuis Drenthe",
        "zvhd",
        true,
        &["ketenregisseur", "zorgcoordinator", "fg"],
    ),
    (
        "politie",
        "Politie Noord-Nederland (TMM)",
        "politie",
        true,
        &["rechercheur", "fg"],
    ),
    (
        "nla",
        "Nederlandse Arbeidsinspectie",
        "nla",
        true,
        &["inspecteur", "fg"],
    ),
    ("om", "Openbaar Ministerie", "om", true, &["officier", "fg"]),
    (
        "veilig-thuis",
        "Veilig Thuis Drenthe",
        "veilig-thuis",
        true,
        &["aandachtfunctionaris", "fg"],
    ),
    ("fier", "Fier", "zorgpartner", true, &["hulpverlener", "fg"]),
    (
        "riec",
        "RIEC Noord-Nederland",
        "riec",
        false,
        &["analist", "fg"],
    ),
];

const GEMEENTE: &[&str] = &[
    "aandachtfunctionaris-veiligheid",
    "aandachtfunctionaris-sociaal",
    "fg",
];

/// Demo tokens live this long; each demo start signs fresh ones.
const TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// How many fictitious contributions the demo seeds.
const DEMO_CONTRIBUTIONS: usize = 60;

/// A valid body for every POST route (the repository's `examples/`), in
/// the binary: the demo writes them to `DATA_DIR/demo/examples/`, so the
/// requests it suggests work from any directory.
const EXAMPLES: [(&str, &str); 4] = [
    ("signal.json", include_str!("../examples/signal.json")),
    ("referral.json", include_str!("../examples/referral.json")),
    ("decision.json", include_str!("../examples/decision.json")),
    ("subject.json", include_str!("../examples/subject.json")),
];

pub async fn init(cfg: &Config, db: &Db, policy_data: &serde_json::Value) -> anyhow::Result<()> {
    let dir = &cfg.data_dir;
    let examples = dir.join("demo/examples");
    std::fs::create_dir_all(&examples)?;
    for (name, body) in EXAMPLES {
        std::fs::write(examples.join(name), body)?;
    }
    let keys = KeyStore::new(dir);
    keys.ensure_ed25519(TOKEN_ISSUER)?;
    let pki = DevPki::ensure(dir)?;
    let tokens = dir.join("demo/tokens");
    std::fs::create_dir_all(&tokens)?;
    for (n, (id, name, kind, member, roles)) in PARTNERS.iter().enumerate() {
        let oin = demo_oin(n);
        let cert = pki.ensure_client(dir, id, Some(&oin))?;
        let fingerprint = cert.fingerprint;
        let partner = Partner {
            id: (*id).into(),
            display_name: (*name).into(),
            kind: (*kind).into(),
            member: *member,
            oin: Some(oin),
            roles: roles.iter().map(|r| (*r).to_string()).collect(),
            cert_fingerprints: vec![hex::encode(fingerprint)],
            status: PartnerStatus::Active,
        };
        if !db.insert_partner(&partner).await?
            && let Some(old) = cert.replaced
        {
            renew_fingerprint(db, id, &hex::encode(old), &hex::encode(fingerprint)).await?;
            db.renew_client_fingerprint(
                &demo_client(id),
                &hex::encode(old),
                &hex::encode(fingerprint),
            )
            .await?;
        }
        // Its system: tokens from the token endpoint with the client
        // certificate, for every role but the privacy officer's (a person).
        let client = Client {
            id: demo_client(id),
            partner: (*id).into(),
            roles: roles
                .iter()
                .filter(|r| **r != "fg")
                .map(|r| (*r).to_string())
                .collect(),
            auth: Credential::SelfSignedTlsClientAuth {
                cert_fingerprint: hex::encode(fingerprint),
            },
            status: PartnerStatus::Active,
        };
        db.insert_client(&client).await?;
        for role in *roles {
            let req = TokenRequest {
                partner: id,
                role,
                user: Some("demo"),
                ttl: TOKEN_TTL,
                cert_fingerprint: None,
            };
            let path = tokens.join(format!("{id}.{role}.jwt"));
            let _ = std::fs::remove_file(&path);
            write_secret(&path, token::issue(cfg, &req)?.as_bytes())?;
        }
    }
    // Only into a database without contributions: never mixed with real ones.
    let catalogue = Catalogue::from_policy_data(policy_data)?;
    seed_contributions(db, &catalogue, time::OffsetDateTime::now_utc().date()).await?;
    Ok(())
}

/// Seeds fictitious contributions for the demo region (origin `demo`,
/// no signal behind them) when there are no contributions and no
/// releases at all, so a release of the demo has something to protect.
async fn seed_contributions(
    db: &Db,
    catalogue: &Catalogue,
    today: time::Date,
) -> anyhow::Result<usize> {
    // Only into a database that has published nothing: the seeded
    // months may lie in published periods. It runs before the server
    // serves (and before the log exists), so nothing contributes
    // meanwhile.
    let mut tx = db.begin_write().await?;
    if tx.contribution_count().await? > 0 || !release_periods(&mut tx).await?.is_empty() {
        return Ok(0);
    }
    let last = ReleasePeriod::last_closed(Cadence::Quarter, today).last_month();
    for i in 0..DEMO_CONTRIBUTIONS {
        let c = demo_contribution(catalogue, last, i);
        let key = RecordKey::generate().stored();
        let received = (c.year, c.month);
        tx.insert_contribution(None, key, "demo", &c.row(), received)
            .await?;
    }
    tx.commit().await?;
    Ok(DEMO_CONTRIBUTIONS)
}

/// The `i`th fictitious contribution: a fixed, plainly fictitious spread
/// over the months of last year and of this year up to `last`, the last
/// month of the last closed quarter.
fn demo_contribution(catalogue: &Catalogue, last: (i32, u8), i: usize) -> Contribution {
    use Dimension::*;
    let pick = |d, i: usize| {
        let codes = catalogue.codes(d);
        codes[i % codes.len()].clone()
    };
    let months = 12 + usize::from(last.1);
    let m = (i * 7) % months;
    let (year, month) = if m < 12 {
        (last.0 - 1, m as u8 + 1)
    } else {
        (last.0, (m - 12) as u8 + 1)
    };
    Contribution {
        year,
        month,
        categories: Categories {
            forms: vec![pick(Form, [1, 0, 1, 2, 0, 1, 4][i % 7])],
            sector: pick(Sector, i * 7 / 3),
            location_type: pick(LocationType, i * 3 / 2),
            municipality: pick(Municipality, i * 5),
            victim_groups: vec![pick(VictimGroup, i % 3)],
        },
    }
}

/// The demo partners' OINs: fictitious (`00000099…`), 20 digits as real
/// OINs, carried in the subject of their demo client certificates.
pub fn demo_oin(n: usize) -> String {
    format!("00000099{:09}000", n + 1)
}

/// The client id of a demo partner's system at the token endpoint.
pub fn demo_client(partner: &str) -> String {
    format!("{partner}-systeem")
}

/// A demo partner whose client certificate was issued anew: the new
/// certificate's fingerprint takes the old one's place in its registration
/// (a registration without the old one was changed by hand and is kept).
async fn renew_fingerprint(db: &Db, id: &str, old: &str, new: &str) -> anyhow::Result<()> {
    let Some(p) = db.partner(id).await? else {
        return Ok(());
    };
    if !p.cert_fingerprints.iter().any(|f| f == old) {
        return Ok(());
    }
    let fingerprints: Vec<String> = p
        .cert_fingerprints
        .iter()
        .map(|f| if f == old { new.to_owned() } else { f.clone() })
        .collect();
    db.set_partner_fingerprints(id, &fingerprints).await?;
    Ok(())
}

/// The demo's two witnesses (`log.demo_witnesses`), each an in-process
/// witness with its own directory (`DATA_DIR/demo/witnesses/w<n>`: key,
/// self-signed TLS certificate, state) on a loopback port of its own, as a
/// partner would run `ketenpoort witness serve`. Returns their entries for
/// `log.witnesses`.
pub async fn start_witnesses(
    cfg: &Config,
    log_key: &str,
) -> anyhow::Result<Vec<crate::config::WitnessEndpoint>> {
    use crate::witness::server;
    let mut endpoints = Vec::new();
    for n in 1..=2 {
        let dir = cfg.data_dir.join(format!("demo/witnesses/w{n}"));
        let name = format!("witness-{n}.demo.ketenpoort.example/w{n}");
        let vkey = server::init(&dir, &name, &["localhost".into(), "127.0.0.1".into()])?;
        let mut wcfg = server::WitnessConfig::load(&dir)?;
        wcfg.logs = vec![log_key.to_owned()];
        let witness = server::open(&dir, &wcfg).await?;
        let tls = server::tls(&dir, &wcfg)?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        tokio::spawn(server::serve(listener, tls, witness));
        endpoints.push(crate::config::WitnessEndpoint {
            url: format!("https://{addr}"),
            name: Some(name),
            key: vkey,
            ca: Some(dir.join("tls/witness.pem")),
        });
    }
    Ok(endpoints)
}

pub fn print_banner(cfg: &Config, addr: SocketAddr) {
    let dir = cfg.data_dir.display();
    let base = format!("https://{addr}");
    println!(
        "ketenpoort demo region (Drenthe)\n\
         \n  data directory   {dir}\n  database         {db}\n  CA certificate   {dir}/tls/ca.pem\n  \
         tokens           {dir}/demo/tokens/<partner>.<role>.jwt\n  client certs     {dir}/demo/clients/<partner>.pem\n  \
         example bodies   {dir}/demo/examples/<route>.json\n{witnesses}\
         \nTry:\n  curl --cacert {dir}/tls/ca.pem {base}/healthz\n  \
         curl --cacert {dir}/tls/ca.pem -H \"Authorization: Bearer $(cat {dir}/demo/tokens/assen.aandachtfunctionaris-veiligheid.jwt)\" {base}/v1/me\n  \
         curl --cacert {dir}/tls/ca.pem {base}/v1/openapi.json\n  \
         curl --cacert {dir}/tls/ca.pem -H \"Authorization: Bearer $(cat {dir}/demo/tokens/emmen.aandachtfunctionaris-sociaal.jwt)\" \
         -H \"Ketenpoort-Purpose: signalering\" -H \"Content-Type: application/json\" -d @{dir}/demo/examples/signal.json {base}/v1/signals\n  \
         curl --cacert {dir}/tls/ca.pem -H \"Authorization: Bearer $(cat {dir}/demo/tokens/riec.analist.jwt)\" \
         -H \"Ketenpoort-Purpose: fenomeenanalyse\" {base}/v1/phenomena/releases\n",
        db = redact_url(&cfg.database_url()),
        witnesses = if cfg.log.demo_witnesses {
            format!("  witnesses        {dir}/demo/witnesses/w1, w2 (cosign every checkpoint)\n")
        } else {
            String::new()
        },
    );
}

/// A database URL without its password, for printing.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => match url[s + 3..at].find(':') {
            Some(c) => format!("{}:***{}", &url[..s + 3 + c], &url[at..]),
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redaction() {
        assert_eq!(
            super::redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(super::redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
