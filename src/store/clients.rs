//! The `clients` table (partner systems at the token endpoint) and the
//! `client_assertions` table (the jti of each `private_key_jwt` assertion,
//! until it expires).

use sqlx::Row;

use super::Db;
use crate::model::client::{Client, Credential};
use crate::model::partner::PartnerStatus;

const COLUMNS: &str = "id, partner, roles, method, cert_fingerprint, oin, jwks, status";

fn from_row(row: &sqlx::any::AnyRow) -> Result<Client, sqlx::Error> {
    let decode = |what: &str| sqlx::Error::Decode(format!("client {what}").into());
    let roles: String = row.try_get("roles")?;
    let method: String = row.try_get("method")?;
    let text = |col: &str| -> Result<String, sqlx::Error> {
        row.try_get::<Option<String>, _>(col)?
            .ok_or_else(|| decode(col))
    };
    let auth = match method.as_str() {
        "self_signed_tls_client_auth" => Credential::SelfSignedTlsClientAuth {
            cert_fingerprint: text("cert_fingerprint")?,
        },
        "tls_client_auth" => Credential::TlsClientAuth { oin: text("oin")? },
        "private_key_jwt" => Credential::PrivateKeyJwt {
            jwks: text("jwks")?,
        },
        _ => return Err(decode("method")),
    };
    let status: String = row.try_get("status")?;
    Ok(Client {
        id: row.try_get("id")?,
        partner: row.try_get("partner")?,
        roles: serde_json::from_str(&roles).map_err(|_| decode("roles"))?,
        auth,
        status: PartnerStatus::parse(&status).ok_or_else(|| decode("status"))?,
    })
}

impl Db {
    /// Registers `c`; false (and nothing changed) when the id exists.
    pub async fn insert_client(&self, c: &Client) -> Result<bool, sqlx::Error> {
        let (fp, oin, jwks) = match &c.auth {
            Credential::SelfSignedTlsClientAuth { cert_fingerprint } => {
                (Some(cert_fingerprint.as_str()), None, None)
            }
            Credential::TlsClientAuth { oin } => (None, Some(oin.as_str()), None),
            Credential::PrivateKeyJwt { jwks } => (None, None, Some(jwks.as_str())),
        };
        let q = sqlx::query(
            "INSERT INTO clients (id, partner, roles, method, cert_fingerprint, oin, jwks, status, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&c.id)
        .bind(&c.partner)
        .bind(serde_json::to_string(&c.roles).expect("json"))
        .bind(c.auth.method())
        .bind(fp)
        .bind(oin)
        .bind(jwks)
        .bind(c.status.as_str())
        .bind(super::now_millis());
        Ok(self.execute_write(q).await?.rows_affected() == 1)
    }

    pub async fn client(&self, id: &str) -> Result<Option<Client>, sqlx::Error> {
        let q = format!("SELECT {COLUMNS} FROM clients WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    pub async fn clients(&self) -> Result<Vec<Client>, sqlx::Error> {
        let q = format!("SELECT {COLUMNS} FROM clients ORDER BY partner, id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(q))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(from_row).collect()
    }

    /// Returns false when no such client exists.
    pub async fn set_client_status(
        &self,
        id: &str,
        status: PartnerStatus,
    ) -> Result<bool, sqlx::Error> {
        let q = sqlx::query("UPDATE clients SET status = $1 WHERE id = $2")
            .bind(status.as_str())
            .bind(id);
        Ok(self.execute_write(q).await?.rows_affected() == 1)
    }

    /// A self-signed client's certificate `old` replaced by `new`; false
    /// when the client is not registered with `old`.
    pub async fn renew_client_fingerprint(
        &self,
        id: &str,
        old: &str,
        new: &str,
    ) -> Result<bool, sqlx::Error> {
        let q = sqlx::query(
            "UPDATE clients SET cert_fingerprint = $1 WHERE id = $2 AND cert_fingerprint = $3",
        )
        .bind(new)
        .bind(id)
        .bind(old);
        Ok(self.execute_write(q).await?.rows_affected() == 1)
    }

    /// Remembers an assertion's `jti` until `expires_at` (ms); false if it
    /// was seen before (a replay). Forgets expired ones on the way.
    pub async fn remember_assertion(
        &self,
        client: &str,
        jti: &str,
        expires_at: i64,
    ) -> Result<bool, sqlx::Error> {
        let purge = sqlx::query("DELETE FROM client_assertions WHERE expires_at < $1")
            .bind(super::now_millis());
        self.execute_write(purge).await?;
        let q = sqlx::query(
            "INSERT INTO client_assertions (client_id, jti, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (client_id, jti) DO NOTHING",
        )
        .bind(client)
        .bind(jti)
        .bind(expires_at);
        Ok(self.execute_write(q).await?.rows_affected() == 1)
    }
}
