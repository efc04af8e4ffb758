//! C2SP tlog-cosignature `cosignature/v1` with Ed25519: the witness's
//! signature over a checkpoint, as one more line of its signed note.
//!
//! The signed message is `cosignature/v1\n`, `time <POSIX seconds>\n`, then
//! the checkpoint's note body (its text, without signature lines). The
//! signature is the 8-byte big-endian timestamp followed by the 64-byte
//! Ed25519 signature; its key id is the first four bytes of
//! SHA-256(name || "\n" || 0x04 || public key). `signed_note` parses and
//! writes the lines; this file is the one thing it does not know: the
//! cosignature's message and key id (the azul crates at this version have
//! no cosignature support).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

/// The vkey signature type of an Ed25519 cosignature/v1 key.
const ALG_COSIGNATURE_V1: u8 = 0x04;

/// The message a cosignature/v1 signs for `text` (a checkpoint note body,
/// ending in a newline) at `timestamp`.
pub fn message(text: &[u8], timestamp: u64) -> Vec<u8> {
    let mut m = format!("cosignature/v1\ntime {timestamp}\n").into_bytes();
    m.extend_from_slice(text);
    m
}

fn key_id(name: &str, public: &[u8; 32]) -> u32 {
    let mut v = vec![ALG_COSIGNATURE_V1];
    v.extend_from_slice(public);
    signed_note::key_id(name, &v)
}

/// A witness's public key: `<name>+<hex key id>+<base64(0x04 || key)>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WitnessKey {
    pub name: String,
    pub public: [u8; 32],
    pub id: u32,
}

impl WitnessKey {
    pub fn new(name: &str, public: [u8; 32]) -> anyhow::Result<Self> {
        anyhow::ensure!(
            signed_note::is_key_name_valid(name),
            "invalid witness name {name:?} (no spaces or '+')"
        );
        Ok(Self {
            name: name.to_owned(),
            id: key_id(name, &public),
            public,
        })
    }

    /// Parses a vkey of type 0x04.
    pub fn parse(vkey: &str) -> anyhow::Result<Self> {
        let mut parts = vkey.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            anyhow::bail!("a witness key is <name>+<key id>+<base64 key>");
        };
        let raw = STANDARD
            .decode(key)
            .map_err(|_| anyhow::anyhow!("witness key: the key is not base64"))?;
        let public: [u8; 32] = match raw.split_first() {
            Some((&ALG_COSIGNATURE_V1, k)) => k
                .try_into()
                .map_err(|_| anyhow::anyhow!("witness key: not 32 bytes"))?,
            _ => anyhow::bail!("witness key: not an Ed25519 cosignature/v1 key (type 0x04)"),
        };
        let k = Self::new(name, public)?;
        anyhow::ensure!(
            u32::from_str_radix(id, 16).ok() == Some(k.id) && id.len() == 8,
            "witness key: the key id does not match the name and key"
        );
        Ok(k)
    }

    pub fn vkey(&self) -> String {
        let mut v = vec![ALG_COSIGNATURE_V1];
        v.extend_from_slice(&self.public);
        format!("{}+{:08x}+{}", self.name, self.id, STANDARD.encode(v))
    }

    /// The timestamp of `line` if it is a valid cosignature by this key of
    /// the note body `text`; `None` for another key's line or a bad one.
    pub fn check(&self, text: &[u8], line: &str) -> Option<u64> {
        let sig =
            signed_note::Signature::from_bytes(line.trim_end_matches('\n').as_bytes()).ok()?;
        if sig.name() != self.name || sig.id() != self.id {
            return None;
        }
        let (ts, ed) = sig.signature().split_first_chunk::<8>()?;
        let ts = u64::from_be_bytes(*ts);
        (ed.len() == 64
            && ts < 1 << 63
            && UnparsedPublicKey::new(&ED25519, self.public)
                .verify(&message(text, ts), ed)
                .is_ok())
        .then_some(ts)
    }
}

/// The witness's signing key.
pub struct Cosigner {
    key: WitnessKey,
    pair: Ed25519KeyPair,
}

impl Cosigner {
    pub fn new(name: &str, pair: Ed25519KeyPair) -> anyhow::Result<Self> {
        let public: [u8; 32] = pair
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| anyhow::anyhow!("not an Ed25519 key"))?;
        Ok(Self {
            key: WitnessKey::new(name, public)?,
            pair,
        })
    }

    pub fn key(&self) -> &WitnessKey {
        &self.key
    }

    /// The cosignature line (ending in a newline) of the note body `text`
    /// at `timestamp`.
    pub fn cosign(&self, text: &[u8], timestamp: u64) -> String {
        let mut sig = timestamp.to_be_bytes().to_vec();
        sig.extend_from_slice(self.pair.sign(&message(text, timestamp)).as_ref());
        let mut id_sig = self.key.id.to_be_bytes().to_vec();
        id_sig.extend_from_slice(&sig);
        format!("\u{2014} {} {}\n", self.key.name, STANDARD.encode(id_sig))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosigner(name: &str) -> Cosigner {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
        Cosigner::new(name, Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()).unwrap()
    }

    /// The spec's example cosignature line: key id and timestamp decode as
    /// the spec lays them out.
    #[test]
    fn the_spec_example_line_has_the_layout() {
        let line = "\u{2014} witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==";
        let sig = signed_note::Signature::from_bytes(line.as_bytes()).unwrap();
        assert_eq!(sig.name(), "witness.example.com/w1");
        assert_eq!(sig.signature().len(), 8 + 64);
        // time 1679315147 as in the spec's signed message example
        assert_eq!(
            u64::from_be_bytes(sig.signature()[..8].try_into().unwrap()),
            1679315147
        );
    }

    #[test]
    fn cosignatures_verify_and_bind_the_body_and_time() {
        let w = cosigner("witness.example/w1");
        let text = b"example.com/log\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let line = w.cosign(text, 1_700_000_000);
        assert!(line.starts_with("\u{2014} witness.example/w1 "));
        let key = WitnessKey::parse(&w.key().vkey()).unwrap();
        assert_eq!(&key, w.key());
        assert_eq!(key.check(text, &line), Some(1_700_000_000));
        assert_eq!(key.check(b"example.com/log\n6\nx\n", &line), None);
        assert_eq!(
            cosigner("witness.example/w1").key().check(text, &line),
            None
        );
        // Another timestamp in the line breaks the signature.
        let mut raw = STANDARD
            .decode(line.trim_end().rsplit(' ').next().unwrap())
            .unwrap();
        raw[11] ^= 1;
        let forged = format!("\u{2014} witness.example/w1 {}\n", STANDARD.encode(raw));
        assert_eq!(key.check(text, &forged), None);
        assert!(WitnessKey::parse("w+00000000+AQ==").is_err());
        let mut wrong_id = w.key().vkey();
        wrong_id.replace_range(key.name.len() + 1..key.name.len() + 9, "00000000");
        assert!(WitnessKey::parse(&wrong_id).is_err());
    }
}
