//! Reading and forging stored leaf bytes from outside, as an auditor would:
//! v1 and v2 leaves are JSON text, v3 leaves one CBOR array (README, "The
//! disclosure log"), decoded here with a general CBOR decoder and the
//! README's table of positions, not with ketenpoort's own code.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use minicbor::Decoder;
use minicbor::data::Type;
use serde_json::{Value, json};

/// A v3 leaf starts with these: an array of 15 items, then the version.
const V3: [u8; 2] = [0x8f, 3];

pub fn is_v3(leaf: &[u8]) -> bool {
    leaf.starts_with(&V3)
}

/// Any leaf as JSON in v2's keys (v3's ids, hashes and pseudonyms in
/// their text forms; its time as ms since 1970).
pub fn leaf_json(leaf: &[u8]) -> Value {
    if !is_v3(leaf) {
        return serde_json::from_slice(leaf).expect("a JSON leaf");
    }
    let mut d = Decoder::new(leaf);
    assert_eq!(d.array().unwrap(), Some(15));
    let v = d.u64().unwrap();
    let index = d.u64().unwrap();
    let time = match d.datatype().unwrap() {
        Type::String => json!(d.str().unwrap()),
        _ => json!(d.u64().unwrap()),
    };
    let request_id = text(&mut d, |b| uuid::Uuid::from_slice(b).unwrap().to_string());
    let trace_id = text(&mut d, |b| hex::encode(b));
    let partner = text(&mut d, |_| unreachable!());
    let role = text(&mut d, |_| unreachable!());
    let user = text(&mut d, |b| format!("usr1:{}", URL_SAFE_NO_PAD.encode(b)));
    let recipient = text(&mut d, |_| unreachable!());
    let action = text(&mut d, |_| unreachable!());
    let purpose = text(&mut d, |_| unreachable!());
    let resources = list(&mut d, |_| unreachable!());
    let subjects = list(&mut d, |b| format!("ps1:{}", URL_SAFE_NO_PAD.encode(b)));
    let projection = text(&mut d, |b| hex::encode(b));
    let outcome = text(&mut d, |_| unreachable!());
    assert_eq!(d.position(), leaf.len(), "one item, nothing after it");
    json!({
        "v": v, "index": index, "time": time, "requestId": request_id, "traceId": trace_id,
        "actor": {"partner": partner, "role": role, "user": user},
        "recipient": recipient, "action": action, "purpose": purpose,
        "resources": resources, "subjects": subjects, "projection": projection, "outcome": outcome,
    })
}

/// Text, bytes in their text form, or null.
fn text(d: &mut Decoder<'_>, render: impl Fn(&[u8]) -> String) -> Value {
    match d.datatype().unwrap() {
        Type::Null => {
            d.null().unwrap();
            Value::Null
        }
        Type::Bytes => json!(render(d.bytes().unwrap())),
        _ => json!(d.str().unwrap()),
    }
}

fn list(d: &mut Decoder<'_>, render: impl Fn(&[u8]) -> String) -> Value {
    let n = d.array().unwrap().expect("a definite length");
    Value::Array((0..n).map(|_| text(d, &render)).collect())
}

/// Where the request id's 16 bytes (v3) or 36 characters (v1, v2) are.
pub fn request_id_at(leaf: &[u8]) -> std::ops::Range<usize> {
    if is_v3(leaf) {
        let mut d = Decoder::new(leaf);
        d.array().unwrap();
        for _ in 0..3 {
            d.u64().unwrap();
        }
        // The head of a 16-byte string is one byte.
        let start = d.position() + 1;
        assert_eq!(d.bytes().unwrap().len(), 16);
        return start..start + 16;
    }
    let key = b"\"requestId\":\"";
    let start = leaf
        .windows(key.len())
        .position(|w| w == key)
        .expect("a request id in the leaf")
        + key.len();
    start..start + 36
}

/// The leaf with another request id, still canonical.
pub fn with_request_id(leaf: &[u8], id: uuid::Uuid) -> Vec<u8> {
    let at = request_id_at(leaf);
    let mut out = leaf.to_vec();
    if is_v3(leaf) {
        out.splice(at, id.as_bytes().iter().copied());
    } else {
        out.splice(at, id.to_string().into_bytes());
    }
    out
}

/// The leaf with its outcome replaced, still canonical.
pub fn with_outcome(leaf: &[u8], outcome: &str) -> Vec<u8> {
    if is_v3(leaf) {
        // The outcome is the last item: a short text.
        let old = leaf_json(leaf)["outcome"].as_str().unwrap().to_owned();
        let cut = leaf.len() - old.len() - 1;
        assert_eq!(leaf[cut], 0x60 + old.len() as u8);
        let mut out = leaf[..cut].to_vec();
        out.push(0x60 + outcome.len() as u8);
        out.extend_from_slice(outcome.as_bytes());
        return out;
    }
    let text = String::from_utf8(leaf.to_vec()).expect("UTF-8 leaf");
    let key = "\"outcome\":\"";
    let start = text.find(key).expect("an outcome") + key.len();
    let end = start + text[start..].find('"').expect("end of value");
    format!("{}{outcome}{}", &text[..start], &text[end..]).into_bytes()
}

/// `from` replaced by `to` (as many bytes) at its first occurrence.
pub fn replace_once(leaf: &[u8], from: &str, to: &str) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let at = leaf
        .windows(from.len())
        .position(|w| w == from.as_bytes())
        .unwrap_or_else(|| panic!("{from} in the leaf"));
    let mut out = leaf.to_vec();
    out[at..at + to.len()].copy_from_slice(to.as_bytes());
    out
}
