//! Opaque paging cursors. A page of records is cut from all candidates, and
//! the last candidate may be one the caller may not see: its id must not
//! leave in the cursor. The cursor is the position sealed with AES-256-GCM
//! under a key derived from the pseudonym key (HKDF-SHA256), so it is
//! useless outside this gateway and cannot be forged.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};

#[derive(Clone)]
pub struct Cursors {
    key: std::sync::Arc<LessSafeKey>,
}

impl Cursors {
    pub fn new(secret: &[u8; 32]) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"ketenpoort").extract(secret);
        let okm = prk
            .expand(&[b"paging cursor v1"], &AES_256_GCM)
            .expect("HKDF output length");
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        okm.fill(bytes.as_mut()).expect("HKDF fill");
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes.as_ref()).expect("AES key"));
        Self {
            key: std::sync::Arc::new(key),
        }
    }

    /// Seals `position` for the listing `scope` (a cursor of one listing is
    /// refused by another).
    pub fn seal(&self, scope: &str, position: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).expect("system random");
        let mut buf = position.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(scope.as_bytes()),
                &mut buf,
            )
            .expect("AES-GCM seal");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// The position in a cursor made by `seal` for `scope`, or None.
    pub fn open(&self, scope: &str, cursor: &str) -> Option<String> {
        let raw = URL_SAFE_NO_PAD.decode(cursor).ok()?;
        if raw.len() <= NONCE_LEN {
            return None;
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let mut buf = sealed.to_vec();
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(scope.as_bytes()), &mut buf)
            .ok()?;
        String::from_utf8(plain.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_opaque_bound_and_unforgeable() {
        let c = Cursors::new(&[3; 32]);
        let id = "01933a4e-0000-7000-8000-000000000000";
        let cursor = c.seal("signals", id);
        assert!(!cursor.contains(id) && !cursor.contains("01933a4e"));
        assert_eq!(c.open("signals", &cursor).as_deref(), Some(id));
        assert_eq!(c.open("inbox", &cursor), None, "bound to its listing");
        assert_eq!(Cursors::new(&[4; 32]).open("signals", &cursor), None);
        let mut forged = URL_SAFE_NO_PAD.decode(&cursor).unwrap();
        forged[NONCE_LEN] ^= 1;
        assert_eq!(c.open("signals", &URL_SAFE_NO_PAD.encode(forged)), None);
        assert_eq!(c.open("signals", id), None);
        assert_ne!(c.seal("signals", id), cursor, "a fresh nonce each time");
    }
}
