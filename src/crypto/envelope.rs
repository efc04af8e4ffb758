//! Envelope encryption of personal data at rest (invariant 7): each signal
//! has its own AES-256-GCM data key; data keys are stored wrapped by a
//! key-encryption key (KEK) from the key store, in a table apart from the
//! records. Destroying a wrapped data key makes the record unreadable for
//! good, whatever copies of the record tables exist.

use std::collections::BTreeMap;

use anyhow::Context;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::keys::KeyStore;

/// Key-store names of KEKs: `kek-<n>`; the highest `n` wraps new data keys.
const KEK_PREFIX: &str = "kek-";

fn key(bytes: &[u8]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).expect("32-byte AES key"))
}

fn random<const N: usize>() -> Zeroizing<[u8; N]> {
    let mut b = Zeroizing::new([0u8; N]);
    SystemRandom::new().fill(b.as_mut()).expect("system random");
    b
}

/// `nonce || ciphertext || tag`, bound to `aad`.
fn seal(k: &LessSafeKey, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let nonce = random::<NONCE_LEN>();
    let mut buf = plaintext.to_vec();
    k.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(*nonce),
        Aad::from(aad),
        &mut buf,
    )
    .expect("AES-GCM seal");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&buf);
    out
}

fn open(k: &LessSafeKey, aad: &[u8], sealed: &[u8]) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    anyhow::ensure!(sealed.len() > NONCE_LEN, "ciphertext too short");
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    let mut buf = Zeroizing::new(ct.to_vec());
    let nonce =
        Nonce::try_assume_unique_for_key(nonce).map_err(|_| anyhow::anyhow!("bad nonce"))?;
    let len = k
        .open_in_place(nonce, Aad::from(aad), buf.as_mut_slice())
        .map_err(|_| anyhow::anyhow!("decryption failed"))?
        .len();
    buf.truncate(len);
    Ok(buf)
}

/// A record's data key, in memory only while it is used.
pub struct DataKey(Zeroizing<[u8; 32]>);

impl DataKey {
    pub fn generate() -> Self {
        Self(random::<32>())
    }

    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        seal(&key(self.0.as_ref()), aad, plaintext)
    }

    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> anyhow::Result<Zeroizing<Vec<u8>>> {
        open(&key(self.0.as_ref()), aad, sealed)
    }
}

/// The KEKs of the key store.
pub struct Keyring {
    current: String,
    keks: BTreeMap<String, Zeroizing<[u8; 32]>>,
}

impl Keyring {
    /// Loads every `kek-<n>` key, creating `kek-1` on first use.
    pub fn load(store: &KeyStore) -> anyhow::Result<Self> {
        let mut names = store.names_with_prefix(KEK_PREFIX)?;
        if names.is_empty() {
            store.ensure_secret(&format!("{KEK_PREFIX}1"))?;
            names = store.names_with_prefix(KEK_PREFIX)?;
        }
        let mut keks = BTreeMap::new();
        for n in &names {
            keks.insert(n.clone(), store.secret(n)?);
        }
        let current = names
            .iter()
            .max_by_key(|n| n[KEK_PREFIX.len()..].parse::<u64>().unwrap_or(0))
            .cloned()
            .context("no key-encryption key")?;
        Ok(Self { current, keks })
    }

    /// Creates the next KEK (`kek-<n+1>`) in the store; new data keys are
    /// wrapped by it once the keyring is reloaded.
    pub fn create_next(store: &KeyStore) -> anyhow::Result<String> {
        let ring = Self::load(store)?;
        let next = ring.current[KEK_PREFIX.len()..].parse::<u64>().unwrap_or(0) + 1;
        let name = format!("{KEK_PREFIX}{next}");
        store.ensure_secret(&name)?;
        Ok(name)
    }

    pub fn current(&self) -> &str {
        &self.current
    }

    /// Wraps a data key with the current KEK, bound to the record id.
    pub fn wrap(&self, record_id: &str, dk: &DataKey) -> (String, Vec<u8>) {
        let kek = key(self.keks[&self.current].as_ref());
        (
            self.current.clone(),
            seal(&kek, record_id.as_bytes(), dk.0.as_ref()),
        )
    }

    pub fn unwrap(&self, kek_id: &str, record_id: &str, wrapped: &[u8]) -> anyhow::Result<DataKey> {
        let kek = self
            .keks
            .get(kek_id)
            .with_context(|| format!("key-encryption key {kek_id} is not in the key store"))?;
        let raw = open(&key(kek.as_ref()), record_id.as_bytes(), wrapped)?;
        let arr: [u8; 32] = raw
            .as_slice()
            .try_into()
            .context("data key is not 32 bytes")?;
        Ok(DataKey(Zeroizing::new(arr)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_binding() {
        let dk = DataKey::generate();
        let sealed = dk.seal(b"signal-1", b"geheim");
        assert_eq!(&**dk.open(b"signal-1", &sealed).unwrap(), b"geheim");
        assert!(
            dk.open(b"signal-2", &sealed).is_err(),
            "ciphertext moved to another record must not open"
        );
        assert!(DataKey::generate().open(b"signal-1", &sealed).is_err());
        assert!(!sealed.windows(6).any(|w| w == b"geheim"));
    }

    #[test]
    fn wrapping_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::new(dir.path());
        let ring = Keyring::load(&store).unwrap();
        assert_eq!(ring.current(), "kek-1");
        let dk = DataKey::generate();
        let (id, wrapped) = ring.wrap("r1", &dk);
        assert!(ring.unwrap(&id, "r2", &wrapped).is_err());
        assert_eq!(Keyring::create_next(&store).unwrap(), "kek-2");
        let ring = Keyring::load(&store).unwrap();
        assert_eq!(ring.current(), "kek-2");
        let old = ring.unwrap(&id, "r1", &wrapped).unwrap();
        let sealed = dk.seal(b"r1", b"x");
        assert_eq!(&**old.open(b"r1", &sealed).unwrap(), b"x");
    }
}
