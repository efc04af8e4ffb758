//! Reading leaf bytes at the speed `log verify` needs. [`Entry::decode`]
//! parses with serde and re-encodes to prove the bytes canonical: two
//! passes and some forty allocations an entry, more than half the cost of
//! verifying a log. [`LeafView::parse`] accepts exactly the same bytes in
//! one pass, walking the one canonical form of either leaf version
//! (serde_json's compact output: the key order, `null` for `None`,
//! integers without leading zeros, strings escaped only where serde_json
//! escapes), and returns the fields the derived columns are compared with
//! and, for v2, the projection the leaf names (the caller checks that it is
//! stored and hashes to that name). The property tests below hold it to
//! `Entry::decode` on arbitrary and altered encodings.
//!
//! [`Entry::decode`]: super::Entry::decode
//! [`Entry`]: super::Entry

use std::borrow::Cow;

use super::compact;
use super::entry::{LogAction, Outcome};

/// The fields of a canonical entry that have columns or index rows of
/// their own. Strings borrow from the leaf unless they had escapes.
#[derive(Debug, PartialEq, Eq)]
pub struct LeafView<'a> {
    pub index: u64,
    pub time: Cow<'a, str>,
    pub actor_partner: Cow<'a, str>,
    pub actor_role: Cow<'a, str>,
    pub user: Option<Cow<'a, str>>,
    pub recipient: Option<Cow<'a, str>>,
    pub action: LogAction,
    pub purpose: Option<Cow<'a, str>>,
    pub subjects: Vec<Cow<'a, str>>,
    /// v2, v3: the SHA-256 name of the projection (None: names none, or v1).
    pub projection: Option<[u8; 32]>,
    /// v1: the decision's first reason code (a v2 leaf's reasons are in
    /// its projection).
    pub reason: Option<Cow<'a, str>>,
    pub outcome: Outcome,
}

impl<'a> LeafView<'a> {
    /// `None` unless `leaf` is the canonical encoding of an entry.
    pub fn parse(leaf: &'a [u8]) -> Option<Self> {
        if leaf.starts_with(&compact::PREFIX) {
            let c = compact::Compact::parse(leaf)?;
            return Some(Self {
                index: c.index,
                time: c.time,
                actor_partner: c.partner,
                actor_role: c.role,
                user: c.user,
                recipient: c.recipient,
                action: c.action,
                purpose: c.purpose,
                subjects: c.subjects,
                projection: c.projection,
                reason: None,
                outcome: c.outcome,
            });
        }
        let mut p = Parser::new(leaf)?;
        let v2 = if p.lit(b"{\"v\":1,").is_some() {
            false
        } else {
            p.lit(b"{\"v\":2,")?;
            true
        };
        p.lit(b"\"index\":")?;
        let index = p.uint()?;
        p.lit(b",\"time\":")?;
        let time = p.string()?;
        p.lit(b",\"requestId\":")?;
        p.string()?;
        p.lit(b",\"traceId\":")?;
        p.string()?;
        p.lit(b",\"actor\":{\"partner\":")?;
        let actor_partner = p.string()?;
        p.lit(b",\"role\":")?;
        let actor_role = p.string()?;
        p.lit(b",\"user\":")?;
        let user = p.nullable()?;
        p.lit(b"},\"recipient\":")?;
        let recipient = p.nullable()?;
        p.lit(b",\"action\":")?;
        let action = LogAction::ALL.into_iter().find(|a| p.quoted(a.as_str()))?;
        p.lit(b",\"purpose\":")?;
        let purpose = p.nullable()?;
        if !v2 {
            p.lit(b",\"legalBasis\":")?;
            p.nullable()?;
        }
        p.lit(b",\"resources\":")?;
        p.list(|_| ())?;
        p.lit(b",\"subjects\":")?;
        let mut subjects = Vec::new();
        p.list(|s| subjects.push(s))?;
        let mut projection = None;
        let mut reason = None;
        if v2 {
            p.lit(b",\"projection\":")?;
            if p.lit(b"null").is_none() {
                projection = Some(p.sha256_hex()?);
            }
        } else {
            p.lit(b",\"fields\":")?;
            p.list(|_| ())?;
            p.lit(b",\"decision\":{\"mode\":")?;
            p.string()?;
            p.lit(b",\"reasons\":")?;
            p.list(|r| {
                reason.get_or_insert(r);
            })?;
            p.lit(b"},\"policyRevision\":")?;
            p.nullable()?;
        }
        p.lit(b",\"outcome\":")?;
        let outcome = Outcome::ALL.into_iter().find(|o| p.quoted(o.as_str()))?;
        p.lit(b"}")?;
        p.done().then_some(Self {
            index,
            time,
            actor_partner,
            actor_role,
            user,
            recipient,
            action,
            purpose,
            subjects,
            projection,
            reason,
            outcome,
        })
    }
}

struct Parser<'a> {
    s: &'a str,
    at: usize,
}

impl<'a> Parser<'a> {
    /// Canonical leaves are UTF-8 and hold no raw control character (not
    /// even between tokens): checked here once, not string by string.
    fn new(leaf: &'a [u8]) -> Option<Self> {
        let no_control = leaf.iter().fold(true, |ok, &b| ok & (b >= 0x20));
        let s = std::str::from_utf8(leaf).ok().filter(|_| no_control)?;
        Some(Self { s, at: 0 })
    }

    fn rest(&self) -> &'a [u8] {
        &self.s.as_bytes()[self.at..]
    }

    fn done(&self) -> bool {
        self.at == self.s.len()
    }

    fn lit(&mut self, s: &[u8]) -> Option<()> {
        self.rest().starts_with(s).then(|| self.at += s.len())
    }

    /// `"<s>"` exactly (for enum names, which need no escapes).
    fn quoted(&mut self, s: &str) -> bool {
        let r = self.rest();
        let n = s.len();
        let hit = r.len() > n + 1 && r[0] == b'"' && &r[1..=n] == s.as_bytes() && r[n + 1] == b'"';
        if hit {
            self.at += n + 2;
        }
        hit
    }

    /// `"<64 lowercase hex digits>"`: a SHA-256 name.
    fn sha256_hex(&mut self) -> Option<[u8; 32]> {
        let r = self.rest();
        let hex = r.get(1..65)?;
        let lower_hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
        if r[0] != b'"' || r.get(65) != Some(&b'"') || !hex.iter().all(lower_hex) {
            return None;
        }
        let mut out = [0; 32];
        hex::decode_to_slice(hex, &mut out).ok()?;
        self.at += 66;
        Some(out)
    }

    /// A decimal without sign, fraction, exponent or leading zero.
    fn uint(&mut self) -> Option<u64> {
        let digits = self
            .rest()
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let d = &self.rest()[..digits];
        if d.is_empty() || (d[0] == b'0' && d.len() > 1) {
            return None;
        }
        let v = d.iter().try_fold(0u64, |v, b| {
            v.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        })?;
        self.at += digits;
        Some(v)
    }

    fn nullable(&mut self) -> Option<Option<Cow<'a, str>>> {
        if self.lit(b"null").is_some() {
            return Some(None);
        }
        self.string().map(Some)
    }

    /// `[]` or `["..",".."]`, each string handed to `each`.
    fn list(&mut self, mut each: impl FnMut(Cow<'a, str>)) -> Option<()> {
        self.lit(b"[")?;
        if self.lit(b"]").is_some() {
            return Some(());
        }
        loop {
            each(self.string()?);
            if self.lit(b"]").is_some() {
                return Some(());
            }
            self.lit(b",")?;
        }
    }

    /// A JSON string as serde_json writes it: `"` and `\` escaped with a
    /// backslash; control characters as `\b \t \n \f \r` or else `\u00xx`
    /// (lowercase hex); nothing else escaped.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        self.lit(b"\"")?;
        let mut owned: Option<String> = None;
        loop {
            let run = memchr::memchr2(b'"', b'\\', self.rest())?;
            // Cut before an ASCII byte: a character boundary.
            let plain = &self.s[self.at..self.at + run];
            self.at += run;
            if self.lit(b"\"").is_some() {
                return Some(match owned {
                    None => Cow::Borrowed(plain),
                    Some(mut s) => {
                        s.push_str(plain);
                        Cow::Owned(s)
                    }
                });
            }
            let (c, len) = unescape(self.rest())?;
            let s = owned.get_or_insert_with(String::new);
            s.push_str(plain);
            s.push(c);
            self.at += len;
        }
    }
}

/// The character a canonical escape at the start of `r` stands for, and
/// the escape's length.
fn unescape(r: &[u8]) -> Option<(char, usize)> {
    let short = match *r.get(1)? {
        b'"' => Some('"'),
        b'\\' => Some('\\'),
        b'b' => Some('\u{8}'),
        b't' => Some('\t'),
        b'n' => Some('\n'),
        b'f' => Some('\u{c}'),
        b'r' => Some('\r'),
        b'u' => None,
        _ => return None,
    };
    if let Some(c) = short {
        return Some((c, 2));
    }
    let hex = r.get(2..6)?;
    let lower_hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
    if &hex[..2] != b"00" || !hex.iter().all(lower_hex) {
        return None;
    }
    let v = u8::from_str_radix(std::str::from_utf8(&hex[2..]).ok()?, 16).ok()?;
    // Only control characters without a short form are written this way.
    let canonical = v < 0x20 && !matches!(v, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d);
    canonical.then_some((char::from(v), 6))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::ledger::entry::tests::sample;
    use crate::ledger::entry::{Actor, DecisionRecord, Entry, V1, V2, VERSION};

    /// The stored projections a test's leaves may name: (name, bytes).
    type Known = Vec<([u8; 32], Vec<u8>)>;

    /// What `Entry::decode` says about `bytes` with the projection it
    /// names (from `known`, or none), in `LeafView`'s terms.
    fn reference(bytes: &[u8], known: &Known) -> Option<LeafView<'static>> {
        let (e, projection) = std::iter::once(None)
            .chain(known.iter().map(Some))
            .find_map(|k| {
                Entry::decode(bytes, k.map(|(_, b)| &b[..])).map(|e| (e, k.map(|(h, _)| *h)))
            })?;
        let own = |s: String| Cow::Owned(s);
        Some(LeafView {
            index: e.index,
            time: own(e.time),
            actor_partner: own(e.actor.partner),
            actor_role: own(e.actor.role),
            user: e.actor.user.map(|u| own(u.as_str().to_owned())),
            recipient: e.recipient.map(own),
            action: e.action,
            purpose: e.purpose.map(own),
            subjects: e.subjects.into_iter().map(own).collect(),
            projection,
            reason: (e.v == V1)
                .then(|| e.decision.reasons.first().cloned().map(own))
                .flatten(),
            outcome: e.outcome,
        })
    }

    fn agree(bytes: &[u8], known: &Known) -> Result<(), TestCaseError> {
        let view = LeafView::parse(bytes);
        // A well-formed name of a projection that is not stored: `log
        // verify` fails it by the name (not the parser's business).
        if let Some(Some(name)) = view.as_ref().map(|v| v.projection)
            && !known.iter().any(|(h, _)| *h == name)
        {
            return Ok(());
        }
        prop_assert_eq!(
            view,
            reference(bytes, known),
            "{}",
            String::from_utf8_lossy(bytes)
        );
        Ok(())
    }

    fn known(e: &Entry) -> Known {
        e.leaf().1.map(|r| (r.hash, r.body)).into_iter().collect()
    }

    #[test]
    fn borrows_plain_strings() {
        let e = sample(4);
        let bytes = e.encode();
        let v = LeafView::parse(&bytes).expect("canonical");
        assert_eq!(v.projection, e.leaf().1.map(|r| r.hash));
        assert!(matches!(v.actor_partner, Cow::Borrowed("assen")));
        assert_eq!(v.subjects, ["ps1:abc"]);
    }

    /// Near misses of the canonical form, each accepted by serde_json's
    /// parser but not canonical (or not an entry at all).
    #[test]
    fn rejects_what_decode_rejects() {
        for v in [V1, V2] {
            let mut e = sample(7);
            e.v = v;
            e.actor.user = Some(crate::crypto::UserRef::stored(
                "q\"b\\c\u{1}\u{1f}\n\t\r\u{8}\u{c}é/\u{7f}",
            ));
            let k = known(&e);
            let text = String::from_utf8(e.encode()).unwrap();
            for escaped in [r#"q\"b\\c"#, r"\u0001\u001f\n\t\r\b\f", "é/\u{7f}"] {
                assert!(text.contains(escaped), "{escaped} in {text}");
            }
            let alterations = [
                text.replacen(":7,", ": 7,", 1),
                text.replacen(":7,", ":07,", 1),
                text.replacen(":7,", ":7.0,", 1),
                text.replacen(&format!("\"v\":{v}"), "\"v\":256", 1),
                text.replacen(&format!("\"v\":{v}"), &format!("\"v\":{}", 3 - v), 1),
                text.replacen(&format!("\"v\":{v}"), &format!("\"v\":0{v}"), 1),
                text.replacen("\\u0001", "\\u0001".to_uppercase().as_str(), 1),
                text.replacen("\\u001f", "\\u001F", 1),
                text.replacen("\\n", "\\u000a", 1),
                text.replacen("é", "\\u00e9", 1),
                text.replacen("/", "\\/", 1),
                text.replacen("assen", "ass\\u0065n", 1),
                text.replacen("\"submit\"", "\"subm\\u0069t\"", 1),
                text.replacen("\"submit\"", "\"Submit\"", 1),
                text.replacen("\"disclosed\"", "\"disclosed \"", 1),
                text.replacen("\"ps1:abc\"]", "\"ps1:abc\",]", 1),
                format!("{text}\n"),
                format!(" {text}"),
                text.replacen(
                    &format!("{{\"v\":{v},"),
                    &format!("{{\"v\":{v},\"x\":0,"),
                    1,
                ),
                text.replacen("\"time\"", "\"tim\\u0065\"", 1),
                text.replacen("assen", "assen\u{0}", 1),
            ];
            for (n, a) in alterations.iter().enumerate() {
                assert_ne!(*a, text, "alteration {n} changes the text");
                agree(a.as_bytes(), &k).unwrap();
                assert_eq!(LeafView::parse(a.as_bytes()), None, "alteration {n}: {a}");
            }
            if v == V2 {
                // The projection's name: lowercase hex of 32 bytes, or null.
                let name = hex::encode(k[0].0);
                for a in [
                    text.replacen(&name, &name.to_uppercase(), 1),
                    text.replacen(&name, &name[1..], 1),
                    text.replacen(&name, &format!("{name}0"), 1),
                    text.replacen(&format!("\"{name}\""), "[]", 1),
                ] {
                    agree(a.as_bytes(), &k).unwrap();
                    assert_eq!(LeafView::parse(a.as_bytes()), None, "{a}");
                }
                // Another well-formed name parses; verify finds it not stored.
                let other = text.replacen(&name, &"0".repeat(64), 1);
                assert_eq!(
                    LeafView::parse(other.as_bytes()).unwrap().projection,
                    Some([0; 32])
                );
                assert_eq!(Entry::decode(other.as_bytes(), Some(&k[0].1)), None);
            }
            // Invalid UTF-8 inside a string.
            let mut bytes = text.into_bytes();
            let at = bytes.iter().position(|b| *b == 0xc3).expect("é");
            bytes[at + 1] = b'x';
            agree(&bytes, &k).unwrap();
        }
    }

    fn text() -> impl Strategy<Value = String> {
        // Quotes, backslashes, control characters, non-ASCII: every escape.
        proptest::string::string_regex("(?s).{0,12}").expect("regex")
    }

    fn texts() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec(text(), 0..4)
    }

    /// Text, or text in the shape a v3 leaf holds as bytes (so both of its
    /// forms are drawn).
    fn shaped(render: fn([u8; 32]) -> String) -> impl Strategy<Value = String> {
        prop_oneof![text(), any::<[u8; 32]>().prop_map(render)]
    }

    fn request_id() -> impl Strategy<Value = String> {
        shaped(|b| uuid::Uuid::from_slice(&b[..16]).unwrap().to_string())
    }

    fn trace_id() -> impl Strategy<Value = String> {
        shaped(|b| hex::encode(&b[..16]))
    }

    fn user() -> impl Strategy<Value = String> {
        use base64::Engine;
        shaped(|b| {
            format!(
                "usr1:{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&b[..16])
            )
        })
    }

    fn subjects() -> impl Strategy<Value = Vec<String>> {
        use base64::Engine;
        proptest::collection::vec(
            shaped(|b| {
                format!(
                    "ps1:{}",
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
                )
            }),
            0..4,
        )
    }

    fn time() -> impl Strategy<Value = String> {
        prop_oneof![
            text(),
            (0..253_402_300_800_000u64)
                .prop_map(|ms| crate::ledger::compact::render_millis(ms).unwrap())
        ]
    }

    fn entry() -> impl Strategy<Value = Entry> {
        (
            (
                proptest::sample::select(vec![V1, V2, VERSION]),
                any::<u64>(),
                time(),
                request_id(),
                text(),
                text(),
            ),
            (
                proptest::option::of(user()),
                proptest::option::of(text()),
                proptest::option::of(text()),
                proptest::option::of(text()),
            ),
            (
                proptest::sample::select(LogAction::ALL.to_vec()),
                proptest::sample::select(Outcome::ALL.to_vec()),
            ),
            (texts(), subjects(), texts(), texts(), text(), trace_id()),
        )
            .prop_map(
                |(
                    (v, index, time, request_id, partner, role),
                    (user, recipient, purpose, legal_basis),
                    (action, outcome),
                    (resources, subjects, fields, reasons, mode, trace_id),
                )| Entry {
                    v,
                    index,
                    time,
                    request_id,
                    trace_id: crate::crypto::TraceRef::stored(trace_id),
                    actor: Actor {
                        partner,
                        role,
                        user: user.map(crate::crypto::UserRef::stored),
                    },
                    recipient,
                    action,
                    purpose,
                    legal_basis,
                    resources,
                    subjects,
                    fields,
                    decision: DecisionRecord { mode, reasons },
                    policy_revision: Some(format!("sha256:{VERSION}")),
                    outcome,
                },
            )
    }

    /// Where each head of the CBOR items in `b` starts (unsigned integers,
    /// strings, arrays; simple values such as null are one byte).
    fn heads(b: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < b.len() {
            out.push(at);
            let (major, info) = (b[at] >> 5, b[at] & 31);
            let extra = match info {
                24 => 1,
                25 => 2,
                26 => 4,
                27 => 8,
                _ => 0,
            };
            let arg = match extra {
                0 => u64::from(info),
                _ => b[at + 1..at + 1 + extra]
                    .iter()
                    .fold(0, |v, x| (v << 8) | u64::from(*x)),
            };
            at += 1 + extra;
            if matches!(major, 2 | 3) {
                at += arg as usize;
            }
        }
        out
    }

    /// The same item with its head one size longer: a CBOR decoder reads
    /// the same value, but it is not the shortest form.
    fn widen(b: &[u8], at: usize) -> Option<Vec<u8>> {
        let (major, info) = (b[at] >> 5, b[at] & 31);
        if major == 7 {
            return None;
        }
        let (old, new) = match info {
            0..24 => (0, 1),
            24 => (1, 2),
            25 => (2, 4),
            26 => (4, 8),
            _ => return None,
        };
        let arg: u64 = if old == 0 {
            u64::from(info)
        } else {
            b[at + 1..at + 1 + old]
                .iter()
                .fold(0, |v, x| (v << 8) | u64::from(*x))
        };
        let info = match new {
            1 => 24,
            2 => 25,
            4 => 26,
            _ => 27,
        };
        let mut out = b[..at].to_vec();
        out.push(major << 5 | info);
        out.extend_from_slice(&arg.to_be_bytes()[8 - new..]);
        out.extend_from_slice(&b[at + 1 + old..]);
        Some(out)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Every head of a v3 leaf made one size longer: not canonical,
        /// refused by both readers.
        #[test]
        fn v3_refuses_longer_heads(mut e in entry(), pick in any::<prop::sample::Index>()) {
            e.v = VERSION;
            let bytes = e.encode();
            let all = heads(&bytes);
            let at = all[pick.index(all.len())];
            if let Some(wide) = widen(&bytes, at) {
                prop_assert!(minicbor::Decoder::new(&wide).skip().is_ok());
                prop_assert_eq!(LeafView::parse(&wide), None, "head at {}", at);
                agree(&wide, &known(&e))?;
            }
        }

        /// On every encoding, and on every encoding with a byte changed,
        /// added or removed, the parser says what `Entry::decode` says.
        #[test]
        fn parses_exactly_what_decode_accepts(
            e in entry(),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            edit in 0..3u8,
        ) {
            let bytes = e.encode();
            let stored = known(&e);
            prop_assert!(LeafView::parse(&bytes).is_some());
            agree(&bytes, &stored)?;
            let mut changed = bytes.clone();
            let k = at.index(bytes.len());
            match edit {
                0 => changed[k] = byte,
                1 => changed.insert(k, byte),
                _ => {
                    changed.remove(k);
                }
            }
            agree(&changed, &stored)?;
        }
    }
}
