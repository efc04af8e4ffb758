//! Signed checkpoints: the C2SP tlog-checkpoint body (origin, tree size,
//! base64 root) in a C2SP signed note, signed with Ed25519 by ring.

use base64::Engine;
use ring::signature::Ed25519KeyPair;
use signed_note::{Note, StandardVerifier, VerifierList};
use tlog_tiles::Checkpoint;

use super::merkle::Hash;

/// Key-store name of the log's signing key.
pub const LOG_KEY: &str = "log-signing";

const ALG_ED25519: u8 = 0x01;

pub struct NoteSigner {
    name: String,
    id: u32,
    pair: Ed25519KeyPair,
}

impl NoteSigner {
    /// `name` is the key name on the signature line: the log's origin.
    pub fn new(name: &str, pair: Ed25519KeyPair) -> anyhow::Result<Self> {
        anyhow::ensure!(
            signed_note::is_key_name_valid(name),
            "invalid log origin {name:?} (no spaces or '+')"
        );
        let id = signed_note::key_id(name, &encoded_public(public_key(&pair)));
        Ok(Self {
            name: name.to_owned(),
            id,
            pair,
        })
    }

    pub fn verifier_key(&self) -> String {
        verifier_key(&self.name, public_key(&self.pair))
    }

    /// The signed checkpoint note for a tree of `size` with root `root`.
    pub fn checkpoint(&self, size: u64, root: Hash) -> anyhow::Result<String> {
        let body = Checkpoint::new(&self.name, size, root, "")
            .map_err(|_| anyhow::anyhow!("malformed checkpoint"))?;
        let mut note =
            Note::new(&body.to_bytes(), &[]).map_err(|e| anyhow::anyhow!("note: {e}"))?;
        note.add_sigs(&[self])
            .map_err(|e| anyhow::anyhow!("signing note: {e}"))?;
        Ok(String::from_utf8(note.to_bytes())?)
    }
}

fn public_key(pair: &Ed25519KeyPair) -> &[u8] {
    use ring::signature::KeyPair;
    pair.public_key().as_ref()
}

fn encoded_public(public: &[u8]) -> Vec<u8> {
    let mut v = vec![ALG_ED25519];
    v.extend_from_slice(public);
    v
}

/// The note verifier key of an Ed25519 public key under `name`:
/// `<name>+<hex key id>+<base64(0x01 || public key)>`.
pub fn verifier_key(name: &str, public: &[u8]) -> String {
    let encoded = encoded_public(public);
    let id = signed_note::key_id(name, &encoded);
    let b64 = base64::engine::general_purpose::STANDARD.encode(encoded);
    format!("{name}+{id:08x}+{b64}")
}

/// The name of a well-formed verifier key: the origin of the log it verifies.
pub fn key_name(verifier_key: &str) -> anyhow::Result<&str> {
    StandardVerifier::new(verifier_key).map_err(|e| anyhow::anyhow!("verifier key: {e}"))?;
    Ok(verifier_key.split_once('+').map_or("", |(name, _)| name))
}

impl signed_note::Signer for NoteSigner {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.id
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        Ok(self.pair.sign(msg).as_ref().to_vec())
    }
}

/// Verifies a checkpoint note against a verifier key with the independent
/// implementation in `signed_note` (ed25519-dalek), and that its origin is
/// the key's name (ketenpoort signs with the origin as key name); returns
/// (size, root).
pub fn open(note: &str, verifier_key: &str) -> anyhow::Result<(u64, Hash)> {
    let verifier =
        StandardVerifier::new(verifier_key).map_err(|e| anyhow::anyhow!("verifier key: {e}"))?;
    let parsed = Note::from_bytes(note.as_bytes()).map_err(|e| anyhow::anyhow!("note: {e}"))?;
    parsed
        .verify(&VerifierList::new(vec![Box::new(verifier)]))
        .map_err(|e| anyhow::anyhow!("signature: {e}"))?;
    let cp = Checkpoint::from_bytes(parsed.text())
        .map_err(|_| anyhow::anyhow!("malformed checkpoint body"))?;
    let origin = key_name(verifier_key)?;
    anyhow::ensure!(
        cp.origin() == origin,
        "origin {:?} is not the log's origin {origin:?}",
        cp.origin()
    );
    Ok((cp.size(), *cp.hash()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> NoteSigner {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
        NoteSigner::new(
            "example.org/ketenpoort/log",
            Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn checkpoints_follow_c2sp_and_verify_independently() {
        let s = signer();
        let root = Hash([9; 32]);
        let note = s.checkpoint(42, root).unwrap();
        let lines: Vec<&str> = note.lines().collect();
        assert_eq!(lines[0], "example.org/ketenpoort/log");
        assert_eq!(lines[1], "42");
        assert_eq!(
            lines[2],
            base64::engine::general_purpose::STANDARD.encode([9u8; 32])
        );
        assert_eq!(lines[3], "");
        assert!(
            lines[4].starts_with("\u{2014} example.org/ketenpoort/log "),
            "{}",
            lines[4]
        );
        // key id = first 4 bytes of SHA-256(name || 0x0A || 0x01 || public key)
        let sig = base64::engine::general_purpose::STANDARD
            .decode(lines[4].rsplit(' ').next().unwrap())
            .unwrap();
        let vkey = s.verifier_key();
        let pubkey = base64::engine::general_purpose::STANDARD
            .decode(vkey.splitn(3, '+').nth(2).unwrap())
            .unwrap();
        let mut h = b"example.org/ketenpoort/log\n".to_vec();
        h.extend_from_slice(&pubkey);
        let digest = ring::digest::digest(&ring::digest::SHA256, &h);
        assert_eq!(&sig[..4], &digest.as_ref()[..4]);
        assert_eq!(sig.len(), 4 + 64);
        assert_eq!(open(&note, &vkey).unwrap(), (42, root));
        // Any change to the body breaks the signature.
        assert!(open(&note.replacen("\n42\n", "\n43\n", 1), &vkey).is_err());
        assert!(open(&note, &signer().verifier_key()).is_err());
        // The key rebuilt from the public key alone is the same.
        assert_eq!(verifier_key(&s.name, public_key(&s.pair)), vkey);
        assert_eq!(key_name(&vkey).unwrap(), "example.org/ketenpoort/log");
        assert!(key_name("example.org/ketenpoort/log+00000000+AQ==").is_err());
    }

    #[test]
    fn a_checkpoint_of_another_origin_is_refused() {
        let s = signer();
        let body = Checkpoint::new("example.org/other/log", 1, Hash([1; 32]), "").unwrap();
        let mut note = Note::new(&body.to_bytes(), &[]).unwrap();
        note.add_sigs(&[&s]).unwrap();
        let note = String::from_utf8(note.to_bytes()).unwrap();
        let e = open(&note, &s.verifier_key()).unwrap_err().to_string();
        assert!(e.contains("is not the log's origin"), "{e}");
    }
}
