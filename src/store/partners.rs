//! The partner registry table.

use sqlx::Row;

use super::Db;
use crate::model::partner::{Partner, PartnerStatus};

const COLUMNS: &str = "id, display_name, kind, member, oin, roles, cert_fingerprints, status";

fn from_row(row: &sqlx::any::AnyRow) -> Result<Partner, sqlx::Error> {
    let roles: String = row.try_get("roles")?;
    let fps: String = row.try_get("cert_fingerprints")?;
    let status: String = row.try_get("status")?;
    let member: i64 = row.try_get("member")?;
    Ok(Partner {
        id: row.try_get("id")?,
        display_name: row.try_get("display_name")?,
        kind: row.try_get("kind")?,
        member: member != 0,
        oin: row.try_get("oin")?,
        roles: serde_json::from_str(&roles).map_err(|e| sqlx::Error::Decode(e.into()))?,
        cert_fingerprints: serde_json::from_str(&fps).map_err(|e| sqlx::Error::Decode(e.into()))?,
        status: PartnerStatus::parse(&status)
            .ok_or_else(|| sqlx::Error::Decode("partner status".into()))?,
    })
}

impl Db {
    /// Inserts `p`; returns false (and changes nothing) when the id exists.
    pub async fn insert_partner(&self, p: &Partner) -> Result<bool, sqlx::Error> {
        let q = sqlx::query(
            "INSERT INTO partners (id, display_name, kind, member, oin, roles, cert_fingerprints, status, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&p.id)
        .bind(&p.display_name)
        .bind(&p.kind)
        .bind(i64::from(p.member))
        .bind(&p.oin)
        .bind(serde_json::to_string(&p.roles).expect("json"))
        .bind(serde_json::to_string(&p.cert_fingerprints).expect("json"))
        .bind(p.status.as_str())
        .bind(super::now_millis());
        Ok(self.execute_write(q).await?.rows_affected() == 1)
    }

    /// Replaces the registered client-certificate fingerprints of `id`.
    pub async fn set_partner_fingerprints(
        &self,
        id: &str,
        fingerprints: &[String],
    ) -> Result<(), sqlx::Error> {
        let q = sqlx::query("UPDATE partners SET cert_fingerprints = $1 WHERE id = $2")
            .bind(serde_json::to_string(fingerprints).expect("json"))
            .bind(id);
        self.execute_write(q).await?;
        Ok(())
    }

    pub async fn partner(&self, id: &str) -> Result<Option<Partner>, sqlx::Error> {
        let q = format!("SELECT {COLUMNS} FROM partners WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    pub async fn partners(&self) -> Result<Vec<Partner>, sqlx::Error> {
        let q = format!("SELECT {COLUMNS} FROM partners ORDER BY id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(q))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(from_row).collect()
    }

    /// Returns false when no such partner exists.
    pub async fn set_partner_status(
        &self,
        id: &str,
        status: PartnerStatus,
    ) -> Result<bool, sqlx::Error> {
        let q = sqlx::query("UPDATE partners SET status = $1 WHERE id = $2")
            .bind(status.as_str())
            .bind(id);
        Ok(self.execute_write(q).await?.rows_affected() == 1)
    }
}
