//! The partner registry: the organisations that may connect, their kind,
//! covenant membership, roles and client certificates (the data type is
//! [`crate::model::partner`]); the registry's rules and its cache.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

pub use crate::model::partner::{Partner, PartnerStatus, is_slug};
use crate::store::Db;

impl Partner {
    /// Checks the registry's own rules; the policy decides what a kind may do.
    pub fn validate(&self) -> Result<(), String> {
        if !is_slug(&self.id) {
            return Err("id must be a lowercase slug of 2 to 63 characters".into());
        }
        if !is_slug(&self.kind) {
            return Err("kind must be a lowercase slug".into());
        }
        if self.display_name.trim().is_empty() || self.display_name.len() > 200 {
            return Err("display name must be 1 to 200 characters".into());
        }
        if self.roles.is_empty() || !self.roles.iter().all(|r| is_slug(r)) {
            return Err("roles must be one or more lowercase slugs".into());
        }
        if let Some(oin) = &self.oin
            && (oin.len() != 20 || !oin.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err("OIN must be 20 digits".into());
        }
        if !self
            .cert_fingerprints
            .iter()
            .all(|f| f.len() == 64 && f.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        {
            return Err(
                "certificate fingerprints must be 64 lowercase hex characters (SHA-256)".into(),
            );
        }
        Ok(())
    }

    pub fn is_active(&self) -> bool {
        self.status == PartnerStatus::Active
    }
}

/// A registry lookup and when it was made (None: no such partner).
type Cached = (Instant, Option<Arc<Partner>>);

/// Registry lookups with a short cache, so authentication does not query the
/// database on every request while a suspension still takes effect quickly.
#[derive(Clone)]
pub struct Registry {
    db: Db,
    ttl: Duration,
    cache: Arc<RwLock<HashMap<String, Cached>>>,
}

impl Registry {
    pub fn new(db: Db, ttl: Duration) -> Self {
        Self {
            db,
            ttl,
            cache: Arc::default(),
        }
    }

    pub async fn get(&self, id: &str) -> Result<Option<Arc<Partner>>, sqlx::Error> {
        if let Some((at, p)) = self.cache.read().expect("registry cache").get(id)
            && at.elapsed() < self.ttl
        {
            return Ok(p.clone());
        }
        let found = self.db.partner(id).await?.map(Arc::new);
        let mut cache = self.cache.write().expect("registry cache");
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(id.to_owned(), (Instant::now(), found.clone()));
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> Partner {
        Partner {
            id: "assen".into(),
            display_name: "Gemeente Assen".into(),
            kind: "gemeente".into(),
            member: true,
            oin: Some("00000001001589623000".into()),
            roles: vec!["fg".into()],
            cert_fingerprints: vec!["ab".repeat(32)],
            status: PartnerStatus::Active,
        }
    }

    #[test]
    fn validation() {
        assert!(p().validate().is_ok());
        for bad in [
            Partner {
                id: "Assen".into(),
                ..p()
            },
            Partner {
                id: "a".into(),
                ..p()
            },
            Partner {
                roles: vec![],
                ..p()
            },
            Partner {
                oin: Some("123".into()),
                ..p()
            },
            Partner {
                cert_fingerprints: vec!["AB".repeat(32)],
                ..p()
            },
            Partner {
                display_name: " ".into(),
                ..p()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
