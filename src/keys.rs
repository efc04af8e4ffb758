//! The key store: every secret ketenpoort holds lives under `DATA_DIR/keys/`,
//! one file per key, readable by the service user only. Several instances
//! share the directory (a mounted secret) so they sign and pseudonymise alike.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair};

/// Ed25519 key that signs the tokens of the demo and `token issue`.
pub const TOKEN_ISSUER: &str = "token-issuer";

pub struct KeyStore {
    dir: PathBuf,
}

/// An Ed25519 key pair as PKCS#8 (the form ring and jsonwebtoken read).
pub struct Ed25519 {
    pkcs8: zeroize::Zeroizing<Vec<u8>>,
}

impl Ed25519 {
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    pub fn key_pair(&self) -> Ed25519KeyPair {
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(&self.pkcs8).expect("validated when loaded")
    }
}

impl KeyStore {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join("keys"),
        }
    }

    fn file(&self, name: &str, ext: &str) -> PathBuf {
        self.dir.join(format!("{name}.{ext}"))
    }

    /// Creates the Ed25519 key `name` unless it exists; never replaces a key.
    pub fn ensure_ed25519(&self, name: &str) -> anyhow::Result<()> {
        let path = self.file(name, "pem");
        if path.exists() {
            return Ok(());
        }
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| anyhow::anyhow!("key generation failed"))?;
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .map_err(|_| anyhow::anyhow!("generated key unreadable"))?;
        write_secret(
            &path,
            pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.as_ref())).as_bytes(),
        )?;
        let public = spki_ed25519(pair.public_key().as_ref());
        write_public(
            &self.file(name, "pub.pem"),
            pem::encode(&pem::Pem::new("PUBLIC KEY", public)).as_bytes(),
        )
    }

    pub fn ed25519(&self, name: &str) -> anyhow::Result<Ed25519> {
        let path = self.file(name, "pem");
        let text = fs::read(&path).with_context(|| format!("reading key {}", path.display()))?;
        let block =
            pem::parse(text).with_context(|| format!("key {} is not PEM", path.display()))?;
        if block.tag() != "PRIVATE KEY" {
            bail!("key {} is not a PKCS#8 private key", path.display());
        }
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(block.contents())
            .map_err(|_| anyhow::anyhow!("key {} is not an Ed25519 PKCS#8 key", path.display()))?;
        Ok(Ed25519 {
            pkcs8: zeroize::Zeroizing::new(block.contents().to_vec()),
        })
    }

    /// The public half of the Ed25519 key `name` (`<name>.pub.pem`), for
    /// those who verify without the private key.
    pub fn ed25519_public(&self, name: &str) -> anyhow::Result<[u8; 32]> {
        let path = self.file(name, "pub.pem");
        let text = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let block = pem::parse(text).with_context(|| format!("{} is not PEM", path.display()))?;
        let der = block.contents();
        let prefix = spki_ed25519(&[]);
        match der.strip_prefix(&prefix[..]) {
            Some(key) if block.tag() == "PUBLIC KEY" => key.try_into().ok(),
            _ => None,
        }
        .with_context(|| format!("{} is not an Ed25519 public key", path.display()))
    }

    /// Path of the public half of `name`, for configurations that verify.
    pub fn public_pem_path(&self, name: &str) -> PathBuf {
        self.file(name, "pub.pem")
    }

    /// Creates a random 32-byte secret `name` unless it exists.
    pub fn ensure_secret(&self, name: &str) -> anyhow::Result<()> {
        let path = self.file(name, "key");
        if path.exists() {
            return Ok(());
        }
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        SystemRandom::new()
            .fill(bytes.as_mut())
            .map_err(|_| anyhow::anyhow!("random generator failed"))?;
        write_secret(&path, hex::encode(bytes.as_ref()).as_bytes())
    }

    /// Names of the secrets (`<name>.key`) starting with `prefix`, sorted.
    pub fn names_with_prefix(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        let mut names = Vec::new();
        if !self.dir.exists() {
            return Ok(names);
        }
        for e in fs::read_dir(&self.dir)? {
            let name = e?.file_name().to_string_lossy().into_owned();
            if let Some(stem) = name.strip_suffix(".key")
                && stem.starts_with(prefix)
            {
                names.push(stem.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    pub fn secret(&self, name: &str) -> anyhow::Result<zeroize::Zeroizing<[u8; 32]>> {
        let path = self.file(name, "key");
        let text = zeroize::Zeroizing::new(
            fs::read_to_string(&path).with_context(|| format!("reading key {}", path.display()))?,
        );
        let mut out = zeroize::Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), out.as_mut())
            .with_context(|| format!("key {} is not 32 hex-encoded bytes", path.display()))?;
        Ok(out)
    }
}

/// SubjectPublicKeyInfo DER of an Ed25519 public key (RFC 8410).
pub fn spki_ed25519(public: &[u8]) -> Vec<u8> {
    let mut der = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    der.extend_from_slice(public);
    der
}

/// Writes a file readable by the owner only, refusing to overwrite.
pub fn write_secret(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_new(path, bytes, 0o600)
}

pub fn write_public(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_new(path, bytes, 0o644)
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent()
        && !parent.exists()
    {
        use std::os::unix::fs::DirBuilderExt;
        // A new directory for keys or tokens is the owner's alone.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)?;
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_created_once_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let ks = KeyStore::new(dir.path());
        ks.ensure_ed25519("k").unwrap();
        let first = ks
            .ed25519("k")
            .unwrap()
            .key_pair()
            .public_key()
            .as_ref()
            .to_vec();
        ks.ensure_ed25519("k").unwrap();
        assert_eq!(
            ks.ed25519("k").unwrap().key_pair().public_key().as_ref(),
            &first[..]
        );
        assert_eq!(ks.ed25519_public("k").unwrap()[..], first[..]);
        ks.ensure_secret("s").unwrap();
        let s1 = *ks.secret("s").unwrap();
        ks.ensure_secret("s").unwrap();
        assert_eq!(*ks.secret("s").unwrap(), s1);
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.path().join("keys/k.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "private key readable by others");
        let dir_mode = fs::metadata(dir.path().join("keys"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o077, 0, "key directory open to others");
    }

    /// `keys init` leaves nothing for `serve` to create: every key it loads
    /// is there, and what `serve` does with the directory changes nothing.
    #[test]
    fn init_creates_every_key_serve_needs() {
        use crate::boundary::EGRESS_KEY;
        use crate::crypto::PSEUDONYM_KEY;
        use crate::crypto::envelope::Keyring;
        use crate::ledger::LOG_KEY;
        use crate::phenomena::PERTURBATION_KEY;

        let dir = tempfile::tempdir().unwrap();
        let ks = KeyStore::new(dir.path());
        let files = || {
            let mut all: Vec<(String, Vec<u8>)> = fs::read_dir(dir.path().join("keys"))
                .unwrap()
                .map(|e| {
                    let e = e.unwrap();
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        fs::read(e.path()).unwrap(),
                    )
                })
                .collect();
            all.sort();
            all
        };
        crate::server::init_service_keys(&ks).unwrap();
        let created = files();
        let names: Vec<&str> = created.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "egress.key",
                "kek-1.key",
                "log-signing.pem",
                "log-signing.pub.pem",
                "phenomena.key",
                "pseudonym.key",
                "token-issuer.pem",
                "token-issuer.pub.pem",
            ]
        );

        // Every key loads the way `serve` loads it.
        ks.ed25519(TOKEN_ISSUER).unwrap();
        ks.ed25519(LOG_KEY).unwrap();
        for name in [PSEUDONYM_KEY, EGRESS_KEY, PERTURBATION_KEY] {
            ks.secret(name).unwrap();
        }
        assert!(ks.public_pem_path(TOKEN_ISSUER).exists());
        assert_eq!(Keyring::load(&ks).unwrap().current(), "kek-1");

        // What `serve` (server.rs, Ledger::open, Keyring::load) and a second
        // `keys init` do with a prepared directory: nothing new, nothing changed.
        for name in [PSEUDONYM_KEY, EGRESS_KEY, PERTURBATION_KEY] {
            ks.ensure_secret(name).unwrap();
        }
        ks.ensure_ed25519(LOG_KEY).unwrap();
        Keyring::load(&ks).unwrap();
        crate::server::init_service_keys(&ks).unwrap();
        assert_eq!(files(), created);

        use std::os::unix::fs::PermissionsExt;
        for (name, _) in &created {
            let mode = fs::metadata(dir.path().join("keys").join(name))
                .unwrap()
                .permissions()
                .mode();
            if !name.ends_with(".pub.pem") {
                assert_eq!(mode & 0o077, 0, "{name} readable by others");
            }
        }
    }

    #[test]
    fn jwt_crate_reads_our_key_files() {
        let dir = tempfile::tempdir().unwrap();
        let ks = KeyStore::new(dir.path());
        ks.ensure_ed25519("k").unwrap();
        let enc = jsonwebtoken::EncodingKey::from_ed_pem(
            &fs::read(dir.path().join("keys/k.pem")).unwrap(),
        )
        .unwrap();
        let dec = jsonwebtoken::DecodingKey::from_ed_pem(
            &fs::read(dir.path().join("keys/k.pub.pem")).unwrap(),
        )
        .unwrap();
        let tok = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
            &serde_json::json!({"exp": 4_000_000_000u64}),
            &enc,
        )
        .unwrap();
        let v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
        jsonwebtoken::decode::<serde_json::Value>(&tok, &dec, &v).unwrap();
    }
}
