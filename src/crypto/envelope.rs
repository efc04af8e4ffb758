//! Envelope encryption of personal data at rest (invariant 7): each signal
//! has its own AES-256-GCM data key; data keys are stored wrapped by a
//! key-encryption key (KEK) from the key store or the environment, in a
//! table apart from the records. Destroying a wrapped data key makes the
//! record unreadable for good, whatever copies of the record tables exist.

use std::collections::BTreeMap;
use std::ffi::OsString;

use anyhow::{Context, bail};
use base64::Engine;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::keys::KeyStore;

/// Key-store names of KEKs: `kek-<n>`; the highest `n` wraps new data keys.
const KEK_PREFIX: &str = "kek-";

/// `KETENPOORT_KEK_<n>` (any case) holds KEK `kek-<n>` as standard base64
/// of its 32 bytes: for secret stores that hand keys over as environment
/// rather than files. `config` leaves these variables to the keyring.
pub const KEK_ENV_PREFIX: &str = "KETENPOORT_KEK_";

/// The KEKs in `env`, by name. A malformed one is an error, never skipped:
/// a key that silently did not load would leave its records unreadable.
fn keks_from_env(
    env: impl IntoIterator<Item = (OsString, OsString)>,
) -> anyhow::Result<BTreeMap<String, Zeroizing<[u8; 32]>>> {
    let mut out = BTreeMap::new();
    for (name, value) in env {
        let name = name.to_string_lossy().to_ascii_uppercase();
        let Some(n) = name.strip_prefix(KEK_ENV_PREFIX) else {
            continue;
        };
        let n: u64 = n
            .parse()
            .ok()
            .filter(|_| n.bytes().all(|b| b.is_ascii_digit()))
            .with_context(|| format!("{name}: expected {KEK_ENV_PREFIX}<n>, n a number"))?;
        let text = Zeroizing::new(value.into_string().unwrap_or_default());
        let bytes = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .unwrap_or_default(),
        );
        let key: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .with_context(|| format!("{name} is not 32 bytes in standard base64"))?;
        if out
            .insert(format!("{KEK_PREFIX}{n}"), Zeroizing::new(key))
            .is_some()
        {
            bail!("{KEK_ENV_PREFIX}{n} is set more than once");
        }
    }
    Ok(out)
}

fn number(name: &str) -> u64 {
    name[KEK_PREFIX.len()..].parse().unwrap_or(0)
}

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

/// The KEKs of the key store and the environment.
pub struct Keyring {
    current: String,
    keks: BTreeMap<String, Zeroizing<[u8; 32]>>,
    /// Whether any KEK came from the environment.
    from_env: bool,
}

impl Keyring {
    /// Loads every KEK: the key store's `kek-<n>.key` files and the
    /// environment's `KETENPOORT_KEK_<n>`. Creates `kek-1` in the store
    /// only when neither holds any.
    pub fn load(store: &KeyStore) -> anyhow::Result<Self> {
        Self::load_from(store, std::env::vars_os())
    }

    fn load_from(
        store: &KeyStore,
        env: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> anyhow::Result<Self> {
        let mut keks = keks_from_env(env)?;
        let from_env = !keks.is_empty();
        let mut names = store.names_with_prefix(KEK_PREFIX)?;
        if names.is_empty() && !from_env {
            store.ensure_secret(&format!("{KEK_PREFIX}1"))?;
            names = store.names_with_prefix(KEK_PREFIX)?;
        }
        for n in &names {
            let key = store.secret(n)?;
            // The same name from both sources must be the same key: which of
            // two would wrap, and which would the records need?
            if keks.get(n).is_some_and(|e| **e != *key) {
                bail!(
                    "{n} is in the key store and in {KEK_ENV_PREFIX}{}, with different values",
                    number(n)
                );
            }
            keks.insert(n.clone(), key);
        }
        let current = keks
            .keys()
            .max_by_key(|n| number(n))
            .cloned()
            .context("no key-encryption key")?;
        Ok(Self {
            current,
            keks,
            from_env,
        })
    }

    /// Creates the next KEK (`kek-<n+1>`) in the store; new data keys are
    /// wrapped by it once the keyring is reloaded. Refused when KEKs come
    /// from the environment: the next one belongs there too.
    pub fn create_next(store: &KeyStore) -> anyhow::Result<String> {
        Self::load(store)?.add_next(store)
    }

    fn add_next(&self, store: &KeyStore) -> anyhow::Result<String> {
        let next = number(&self.current) + 1;
        if self.from_env {
            bail!(
                "the key-encryption keys come from the environment: set {KEK_ENV_PREFIX}{next} to a new \
                 key (32 random bytes, base64) wherever ketenpoort runs, then run `ketenpoort keys rewrap`"
            );
        }
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

    fn env(vars: &[(&str, String)]) -> Vec<(OsString, OsString)> {
        vars.iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    fn b64(key: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(key)
    }

    /// KEKs from the environment alone: nothing is written to the store,
    /// the highest wraps, and a record wrapped under one opens with it.
    #[test]
    fn keks_from_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::new(dir.path());
        let (k1, k2) = (random::<32>(), random::<32>());
        let vars = env(&[
            ("KETENPOORT_KEK_1", b64(k1.as_ref())),
            ("ketenpoort_kek_2", format!(" {}\n", b64(k2.as_ref()))),
            ("KETENPOORT_DATA_DIR", "/elsewhere".into()),
        ]);
        let ring = Keyring::load_from(&store, vars.clone()).unwrap();
        assert_eq!(ring.current(), "kek-2");
        assert!(store.names_with_prefix(KEK_PREFIX).unwrap().is_empty());
        let dk = DataKey::generate();
        let (id, wrapped) = ring.wrap("r1", &dk);
        assert_eq!(id, "kek-2");
        // The same key from the environment unwraps it...
        let sealed = dk.seal(b"r1", b"x");
        let again = Keyring::load_from(&store, vars).unwrap();
        let opened = again.unwrap(&id, "r1", &wrapped).unwrap();
        assert_eq!(&**opened.open(b"r1", &sealed).unwrap(), b"x");
        // ...another one under the same name does not.
        let other = env(&[("KETENPOORT_KEK_2", b64(random::<32>().as_ref()))]);
        let other = Keyring::load_from(&store, other).unwrap();
        assert!(other.unwrap(&id, "r1", &wrapped).is_err());
        // The next KEK belongs in the environment too.
        let e = again.add_next(&store).err().unwrap().to_string();
        assert!(
            e.contains("KETENPOORT_KEK_3") && e.contains("keys rewrap"),
            "{e}"
        );
        assert!(store.names_with_prefix(KEK_PREFIX).unwrap().is_empty());
    }

    #[test]
    fn files_and_environment_together() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::new(dir.path());
        let file_ring = Keyring::load(&store).unwrap();
        assert_eq!(file_ring.current(), "kek-1");
        let k1 = store.secret("kek-1").unwrap();
        let k5 = random::<32>();
        // A file KEK and a newer one from the environment: both load.
        let ring = Keyring::load_from(
            &store,
            env(&[
                ("KETENPOORT_KEK_5", b64(k5.as_ref())),
                ("KETENPOORT_KEK_1", b64(k1.as_ref())),
            ]),
        )
        .unwrap();
        assert_eq!(ring.current(), "kek-5");
        assert_eq!(ring.keks.len(), 2);
        // The same name with another value is refused, not guessed.
        let e = Keyring::load_from(
            &store,
            env(&[("KETENPOORT_KEK_1", b64(random::<32>().as_ref()))]),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("different values"), "{e}");
        assert!(!e.contains(&b64(k1.as_ref())), "a key in the message");
    }

    #[test]
    fn malformed_environment_keks_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::new(dir.path());
        let good = b64(random::<32>().as_ref());
        for vars in [
            vec![("KETENPOORT_KEK_1", b64(&[7u8; 31]))],
            vec![("KETENPOORT_KEK_1", "not base64!".to_owned())],
            vec![("KETENPOORT_KEK_1", hex::encode([7u8; 32]))],
            vec![("KETENPOORT_KEK_X", good.clone())],
            vec![("KETENPOORT_KEK_", good.clone())],
            vec![("KETENPOORT_KEK_+1", good.clone())],
            vec![
                ("KETENPOORT_KEK_1", good.clone()),
                ("KETENPOORT_KEK_01", good.clone()),
            ],
        ] {
            let e = Keyring::load_from(&store, env(&vars)).err();
            let e = e
                .unwrap_or_else(|| panic!("{vars:?} was accepted"))
                .to_string();
            assert!(!e.contains(&good), "a key in the message: {e}");
        }
        assert!(store.names_with_prefix(KEK_PREFIX).unwrap().is_empty());
    }
}
