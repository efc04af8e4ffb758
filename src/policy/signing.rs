//! OPA bundle signatures, as OPA defines them
//! (<https://www.openpolicyagent.org/docs/management-bundles#signing>):
//! `.signatures.json` holds exactly one JWT whose payload lists every file
//! of the bundle by name with its SHA-256 digest. A bundle verifies only if
//! the JWT verifies with a configured key and the listed files are exactly
//! the bundle's files, each with its digest.

use std::borrow::Cow;
use std::collections::BTreeMap;

use anyhow::{Context, bail};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::digest;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::config::PolicyConfig;

pub const SIGNATURES_FILE: &str = ".signatures.json";
pub const MANIFEST_FILE: &str = ".manifest";
const HASH_ALGORITHM: &str = "SHA-256";

#[derive(Serialize, Deserialize)]
struct Signatures {
    signatures: Vec<String>,
    /// A custom OPA signing plugin; ketenpoort knows only the default one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    plugin: String,
}

#[derive(Serialize, Deserialize)]
struct Payload {
    files: Vec<FileInfo>,
    /// OPA compares it with the configured scope; ketenpoort configures none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    scope: String,
}

#[derive(Serialize, Deserialize)]
struct FileInfo {
    name: String,
    hash: String,
    algorithm: String,
}

/// `policy.bundle_verification_keys`: the keys a bundle signature must
/// verify with (any one of them), for one algorithm.
pub struct VerificationKeys {
    algorithm: Algorithm,
    keys: Vec<DecodingKey>,
}

impl VerificationKeys {
    /// None when no keys are configured (bundles then must be unsigned).
    pub fn from_config(cfg: &PolicyConfig) -> anyhow::Result<Option<Self>> {
        if cfg.bundle_verification_keys.is_empty() {
            return Ok(None);
        }
        let algorithm = match cfg.bundle_verification_algorithm.as_str() {
            "EdDSA" => Algorithm::EdDSA,
            "ES256" => Algorithm::ES256,
            "RS256" => Algorithm::RS256,
            other => bail!(
                "policy.bundle_verification_algorithm: unsupported algorithm {other:?} (EdDSA, ES256, RS256)"
            ),
        };
        let mut keys = Vec::new();
        for file in &cfg.bundle_verification_keys {
            let pem = std::fs::read(file)
                .with_context(|| format!("reading bundle verification key {}", file.display()))?;
            let key = match algorithm {
                Algorithm::EdDSA => DecodingKey::from_ed_pem(&pem),
                Algorithm::ES256 => DecodingKey::from_ec_pem(&pem),
                _ => DecodingKey::from_rsa_pem(&pem),
            };
            keys.push(key.with_context(|| {
                format!(
                    "{} is not a PEM public key for {}",
                    file.display(),
                    cfg.bundle_verification_algorithm
                )
            })?);
        }
        Ok(Some(Self { algorithm, keys }))
    }

    /// Checks `signatures` (the content of `.signatures.json`) against the
    /// keys, and `files` (every other file of the bundle) against it.
    pub fn verify(
        &self,
        signatures: &[u8],
        files: &BTreeMap<String, Vec<u8>>,
    ) -> anyhow::Result<()> {
        let sigs: Signatures = serde_json::from_slice(strip_bom(signatures))
            .with_context(|| format!("{SIGNATURES_FILE} is not valid"))?;
        anyhow::ensure!(
            sigs.plugin.is_empty(),
            "{SIGNATURES_FILE} names the signing plugin {:?}; only OPA's default signatures are supported",
            sigs.plugin
        );
        let [token] = sigs.signatures.as_slice() else {
            bail!(
                "{SIGNATURES_FILE} must hold exactly one JWT, it holds {}",
                sigs.signatures.len()
            );
        };
        let mut validation = Validation::new(self.algorithm);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_aud = false;
        let mut errors = Vec::new();
        let payload = self
            .keys
            .iter()
            .find_map(
                |key| match jsonwebtoken::decode::<Payload>(token, key, &validation) {
                    Ok(t) => Some(t.claims),
                    Err(e) => {
                        errors.push(e.to_string());
                        None
                    }
                },
            )
            .with_context(|| {
                format!(
                    "the bundle signature does not verify with any key of policy.bundle_verification_keys ({})",
                    errors.join("; ")
                )
            })?;
        anyhow::ensure!(
            payload.scope.is_empty(),
            "the bundle signature has scope {:?}; ketenpoort accepts signatures without a scope",
            payload.scope
        );
        let mut listed: BTreeMap<&str, &FileInfo> = BTreeMap::new();
        for f in &payload.files {
            anyhow::ensure!(
                listed.insert(&f.name, f).is_none(),
                "{} is listed twice in the bundle signature",
                f.name
            );
        }
        for (name, content) in files {
            let info = listed.remove(name.as_str()).with_context(|| {
                format!("{name} is in the bundle but not in its signature (a file was added)")
            })?;
            anyhow::ensure!(
                info.algorithm == HASH_ALGORITHM,
                "{name}: hash algorithm {:?} is not accepted (only {HASH_ALGORITHM})",
                info.algorithm
            );
            let signed = hex::decode(&info.hash)
                .with_context(|| format!("{name}: the signed hash is not hex"))?;
            anyhow::ensure!(
                signed == file_digest(name, content)?,
                "{name}: the content does not match the signature (the file was changed)"
            );
        }
        anyhow::ensure!(
            listed.is_empty(),
            "in the bundle signature but not in the bundle (a file was removed): {}",
            listed.keys().copied().collect::<Vec<_>>().join(", ")
        );
        Ok(())
    }
}

/// Signs bundles for `ketenpoort policy bundle --signing-key`.
pub struct Signer {
    algorithm: Algorithm,
    key: EncodingKey,
}

impl Signer {
    /// A PKCS#8 PEM private key: Ed25519 signs EdDSA, P-256 ES256, RSA RS256.
    pub fn from_pem(pem: &[u8]) -> anyhow::Result<Self> {
        let (algorithm, key) = if let Ok(k) = EncodingKey::from_ed_pem(pem) {
            (Algorithm::EdDSA, k)
        } else if let Ok(k) = EncodingKey::from_ec_pem(pem) {
            (Algorithm::ES256, k)
        } else if let Ok(k) = EncodingKey::from_rsa_pem(pem) {
            (Algorithm::RS256, k)
        } else {
            bail!("not a PEM (PKCS#8) Ed25519, P-256 or RSA private key");
        };
        Ok(Self { algorithm, key })
    }

    /// The content of `.signatures.json` for `files` (every other file).
    pub fn sign(&self, files: &BTreeMap<String, Vec<u8>>) -> anyhow::Result<Vec<u8>> {
        let files = files
            .iter()
            .map(|(name, content)| {
                Ok(FileInfo {
                    name: name.clone(),
                    hash: hex::encode(file_digest(name, content)?),
                    algorithm: HASH_ALGORITHM.into(),
                })
            })
            .collect::<anyhow::Result<_>>()?;
        let payload = Payload {
            files,
            scope: String::new(),
        };
        let token = jsonwebtoken::encode(&Header::new(self.algorithm), &payload, &self.key)
            .context("signing the bundle")?;
        Ok(serde_json::to_vec_pretty(&Signatures {
            signatures: vec![token],
            plugin: String::new(),
        })?)
    }
}

/// The digest OPA signs for a bundle file: SHA-256 of its bytes, except for
/// structured files (`data.json`, `.manifest`), whose JSON is hashed in
/// OPA's canonical form, so whitespace and key order do not matter.
fn file_digest(name: &str, content: &[u8]) -> anyhow::Result<Vec<u8>> {
    let base = name.rsplit('/').next().unwrap_or(name);
    let bytes = if base == "data.json" || base == MANIFEST_FILE {
        let raw: &RawValue = serde_json::from_slice(strip_bom(content))
            .with_context(|| format!("{name} is not valid JSON"))?;
        let mut out = Vec::new();
        canonical_json(raw, &mut out)?;
        Cow::Owned(out)
    } else {
        Cow::Borrowed(content)
    };
    Ok(digest::digest(&digest::SHA256, &bytes).as_ref().to_vec())
}

/// OPA's canonical JSON (its `bundle.HashFile`): object keys sorted by
/// bytes, no whitespace, numbers exactly as written, strings escaped as Go's
/// encoding/json escapes them with HTML escaping off. Written by hand: no
/// crate reproduces Go's encoder.
fn canonical_json(raw: &RawValue, out: &mut Vec<u8>) -> serde_json::Result<()> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'{') => {
            let object: BTreeMap<String, &RawValue> = serde_json::from_str(text)?;
            out.push(b'{');
            for (i, (key, value)) in object.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                go_string(key, out);
                out.push(b':');
                canonical_json(value, out)?;
            }
            out.push(b'}');
        }
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text)?;
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_json(item, out)?;
            }
            out.push(b']');
        }
        Some(b'"') => go_string(&serde_json::from_str::<String>(text)?, out),
        // Numbers (OPA decodes them as json.Number, kept as written), true,
        // false, null.
        _ => out.extend_from_slice(text.as_bytes()),
    }
    Ok(())
}

/// A JSON string as Go (1.22+) writes it without HTML escaping: serde_json's
/// escapes, plus U+2028 and U+2029, which Go always escapes.
fn go_string(s: &str, out: &mut Vec<u8>) {
    let escaped = serde_json::to_string(s).expect("a string serialises");
    out.extend_from_slice(
        escaped
            .replace('\u{2028}', "\\u2028")
            .replace('\u{2029}', "\\u2029")
            .as_bytes(),
    );
}

/// JSON files may start with a UTF-8 byte order mark (RFC 8259 §8.1).
pub fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes)
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    use super::*;

    /// A fresh Ed25519 key: (PKCS#8 private PEM, public PEM).
    fn ed25519() -> (String, String) {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
        let public = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .unwrap()
            .public_key()
            .as_ref()
            .to_vec();
        (
            pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.as_ref())),
            pem::encode(&pem::Pem::new(
                "PUBLIC KEY",
                crate::keys::spki_ed25519(&public),
            )),
        )
    }

    fn key_set(dir: &std::path::Path, algorithm: &str, public: &[&str]) -> VerificationKeys {
        let mut cfg = PolicyConfig {
            bundle_verification_algorithm: algorithm.into(),
            ..Default::default()
        };
        for (i, pem) in public.iter().enumerate() {
            let path = dir.join(format!("key-{i}.pem"));
            std::fs::write(&path, pem).unwrap();
            cfg.bundle_verification_keys.push(path);
        }
        VerificationKeys::from_config(&cfg).unwrap().unwrap()
    }

    fn files() -> BTreeMap<String, Vec<u8>> {
        [
            (MANIFEST_FILE, &br#"{"revision": "r1", "roots": [""]}"#[..]),
            ("data.json", br#"{"covenant": {"forms": ["arbeid"]}}"#),
            ("exchange/exchange.rego", b"package ketenpoort.exchange\n"),
        ]
        .into_iter()
        .map(|(n, c)| (n.to_owned(), c.to_vec()))
        .collect()
    }

    /// A `.signatures.json` with one hand-made JWT.
    fn signatures_with(
        header: &serde_json::Value,
        payload: &serde_json::Value,
        sig: &[u8],
    ) -> Vec<u8> {
        let token = format!(
            "{}.{}.{}",
            B64URL.encode(header.to_string()),
            B64URL.encode(payload.to_string()),
            B64URL.encode(sig)
        );
        serde_json::to_vec(&serde_json::json!({"signatures": [token]})).unwrap()
    }

    #[test]
    fn a_signed_bundle_verifies_and_every_alteration_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = ed25519();
        let (_, other_public) = ed25519();
        let signer = Signer::from_pem(private.as_bytes()).unwrap();
        let signed = signer.sign(&files()).unwrap();
        // Any configured key may be the one that verifies.
        let keys = key_set(dir.path(), "EdDSA", &[&other_public, &public]);
        keys.verify(&signed, &files()).unwrap();
        // Whitespace and key order of a structured file do not matter...
        let mut relaid = files();
        relaid.insert(
            "data.json".into(),
            b"{ \"covenant\" : {\"forms\":[\"arbeid\"]} }\n".to_vec(),
        );
        keys.verify(&signed, &relaid).unwrap();

        let refused = |files: &BTreeMap<String, Vec<u8>>, sigs: &[u8], keys: &VerificationKeys| {
            keys.verify(sigs, files).unwrap_err().to_string()
        };
        // ...its content does (a data cell changed).
        let mut changed = files();
        changed.insert(
            "data.json".into(),
            br#"{"covenant": {"forms": ["seksueel"]}}"#.to_vec(),
        );
        assert!(
            refused(&changed, &signed, &keys).contains("data.json: the content does not match")
        );
        // A Rego file changed by one byte.
        let mut changed = files();
        changed
            .get_mut("exchange/exchange.rego")
            .unwrap()
            .push(b' ');
        assert!(refused(&changed, &signed, &keys).contains("exchange/exchange.rego: the content"));
        // A file added after signing.
        let mut added = files();
        added.insert("extra.rego".into(), b"package extra\n".to_vec());
        assert!(
            refused(&added, &signed, &keys)
                .contains("extra.rego is in the bundle but not in its signature")
        );
        // A file removed after signing (the manifest counts too).
        let mut removed = files();
        removed.remove(MANIFEST_FILE);
        assert!(
            refused(&removed, &signed, &keys)
                .contains("not in the bundle (a file was removed): .manifest")
        );
        // Signed with a key that is not configured.
        let only_other = key_set(dir.path(), "EdDSA", &[&other_public]);
        assert!(refused(&files(), &signed, &only_other).contains("does not verify with any key"));
        // The right key, but configured for another algorithm.
        let (ec_private, ec_public) = {
            let k = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
            (k.serialize_pem(), k.public_key_pem())
        };
        let es256 = key_set(dir.path(), "ES256", &[&ec_public]);
        assert!(refused(&files(), &signed, &es256).contains("does not verify with any key"));
        // ES256 signatures verify with ES256 keys.
        let ec_signed = Signer::from_pem(ec_private.as_bytes())
            .unwrap()
            .sign(&files())
            .unwrap();
        es256.verify(&ec_signed, &files()).unwrap();
    }

    #[test]
    fn forged_and_malformed_signatures_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_, public) = ed25519();
        let keys = key_set(dir.path(), "EdDSA", &[&public]);
        let listing: Vec<_> = files()
            .iter()
            .map(|(n, c)| serde_json::json!({"name": n, "hash": hex::encode(file_digest(n, c).unwrap()), "algorithm": "SHA-256"}))
            .collect();
        let payload = serde_json::json!({"files": listing});
        // alg none, with and without a signature part.
        for sig in [&b""[..], b"x"] {
            let none = signatures_with(
                &serde_json::json!({"alg": "none", "typ": "JWT"}),
                &payload,
                sig,
            );
            assert!(keys.verify(&none, &files()).is_err());
        }
        // HS256 keyed with the public key (algorithm confusion).
        let forged = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &payload,
            &EncodingKey::from_secret(public.as_bytes()).unwrap(),
        )
        .unwrap();
        let forged = serde_json::to_vec(&serde_json::json!({"signatures": [forged]})).unwrap();
        assert!(keys.verify(&forged, &files()).is_err());
        // A valid signature with a scope, two signatures, none, a plugin.
        let (private, public) = ed25519();
        let keys = key_set(dir.path(), "EdDSA", &[&public]);
        let signer = Signer::from_pem(private.as_bytes()).unwrap();
        let scoped = jsonwebtoken::encode(
            &Header::new(Algorithm::EdDSA),
            &serde_json::json!({"files": listing, "scope": "write"}),
            &signer.key,
        )
        .unwrap();
        let err = keys
            .verify(
                &serde_json::to_vec(&serde_json::json!({"signatures": [scoped]})).unwrap(),
                &files(),
            )
            .unwrap_err();
        assert!(err.to_string().contains("scope"), "{err}");
        let good: Signatures = serde_json::from_slice(&signer.sign(&files()).unwrap()).unwrap();
        for body in [
            serde_json::json!({"signatures": [good.signatures[0], good.signatures[0]]}),
            serde_json::json!({"signatures": []}),
            serde_json::json!({"signatures": [good.signatures[0]], "plugin": "kms"}),
        ] {
            assert!(
                keys.verify(&serde_json::to_vec(&body).unwrap(), &files())
                    .is_err(),
                "{body}"
            );
        }
        // A listed file with a weaker hash algorithm.
        let mut weak = listing.clone();
        weak[0]["algorithm"] = "MD5".into();
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::EdDSA),
            &serde_json::json!({"files": weak}),
            &signer.key,
        )
        .unwrap();
        let err = keys
            .verify(
                &serde_json::to_vec(&serde_json::json!({"signatures": [token]})).unwrap(),
                &files(),
            )
            .unwrap_err();
        assert!(err.to_string().contains("MD5"), "{err}");
    }

    fn canonical(text: &str) -> String {
        let raw: &RawValue = serde_json::from_str(text).unwrap();
        let mut out = Vec::new();
        canonical_json(raw, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn canonical_json_is_gos_sorted_compact_encoding() {
        // What Go's encoding/json (SetEscapeHTML(false)) writes for the same
        // value decoded with UseNumber, as OPA hashes it.
        assert_eq!(
            canonical(
                r#" { "b" : [1, "x", {"z": null, "a": true}], "a": {"c": 123.45678911111111111111111111, "d": "<&>"},
                   "é": "\u00e9\u2028\b\f\u0001\"\\/", "n": -0, "e": 1E5 } "#
            ),
            "{\"a\":{\"c\":123.45678911111111111111111111,\"d\":\"<&>\"},\"b\":[1,\"x\",{\"a\":true,\"z\":null}],\
             \"e\":1E5,\"n\":-0,\"é\":\"é\\u2028\\b\\f\\u0001\\\"\\\\/\"}"
        );
        // Keys sort by their bytes, like Go's sort.Strings.
        assert_eq!(
            canonical(r#"{"b":1,"B":2,"ä":3,"a":4}"#),
            r#"{"B":2,"a":4,"b":1,"ä":3}"#
        );
    }

    #[test]
    fn structured_files_hash_independent_of_layout() {
        let a = file_digest("x/data.json", b"{\"a\": [1, 2], \"b\": {}}").unwrap();
        let b = file_digest("x/data.json", b"\xef\xbb\xbf{\"b\":{},\n \"a\":[1,2]}").unwrap();
        assert_eq!(a, b);
        let rego = file_digest("x/p.rego", b"{\"a\": [1, 2], \"b\": {}}").unwrap();
        assert_ne!(a, rego, "other files are hashed byte for byte");
        assert!(file_digest("data.json", b"{").is_err());
    }
}
