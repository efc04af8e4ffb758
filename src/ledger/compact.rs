//! The v3 leaf: an entry as one CBOR array (RFC 8949), in the core
//! deterministic encoding (§4.2.1: shortest heads, definite lengths), so a
//! full-record read is about half its v2 size (JSON text) and any CBOR tool
//! (`cbor2`, cbor.me) reads it. Positions, not keys:
//!
//! | # | item | CBOR |
//! | --- | --- | --- |
//! | 0 | version | uint 3 |
//! | 1 | index | uint |
//! | 2 | time | uint, ms since 1970 (text if the entry's time is not that rendered as RFC 3339) |
//! | 3 | request id | bstr 16, a UUID (text if not its lowercase hyphenated form) |
//! | 4 | trace reference | bstr 16 (text if not 32 lowercase hex) |
//! | 5, 6 | actor partner, role | text |
//! | 7 | actor user | null, or bstr 16 for `usr1:` + base64url (text otherwise) |
//! | 8 | recipient | null or text |
//! | 9 | action | text (the log's action name) |
//! | 10 | purpose | null or text |
//! | 11 | resources | array of text |
//! | 12 | subjects | array of bstr 32 for `ps1:` + base64url (text otherwise) |
//! | 13 | projection | null or bstr 32: the SHA-256 name of the stored projection |
//! | 14 | outcome | text |
//!
//! A value is stored as bytes exactly when its text is the canonical
//! rendering of those bytes; readers render it back, so an entry reads the
//! same in every version. Canonical means "re-encodes to the same bytes":
//! [`Compact::parse`] refuses what a CBOR decoder would tolerate (longer
//! heads, indefinite lengths, text where bytes belong, trailing bytes), so
//! every entry has exactly one v3 encoding.
//!
//! minicbor writes and reads the items; what is hand-written here is the
//! table above.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use minicbor::data::Type;
use minicbor::{Decoder, Encoder};

use super::entry::{LogAction, Outcome};

/// The first two bytes of every v3 leaf: an array of 15 items, then 3.
pub const PREFIX: [u8; 2] = [0x80 | ITEMS as u8, 3];

const ITEMS: u64 = 15;

/// An entry's leaf items, borrowed from the leaf (or the entry) where the
/// text is stored as text, rendered where it is stored as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compact<'a> {
    pub index: u64,
    pub time: Cow<'a, str>,
    pub request_id: Cow<'a, str>,
    pub trace_id: Cow<'a, str>,
    pub partner: Cow<'a, str>,
    pub role: Cow<'a, str>,
    pub user: Option<Cow<'a, str>>,
    pub recipient: Option<Cow<'a, str>>,
    pub action: LogAction,
    pub purpose: Option<Cow<'a, str>>,
    pub resources: Vec<Cow<'a, str>>,
    pub subjects: Vec<Cow<'a, str>>,
    pub projection: Option<[u8; 32]>,
    pub outcome: Outcome,
}

/// How a text item may be held as bytes.
#[derive(Clone, Copy)]
enum Shape {
    /// A UUID in its lowercase hyphenated form.
    Uuid,
    /// 32 lowercase hex digits.
    Hex16,
    /// A prefix and the base64url (no padding) of `n` bytes.
    B64(&'static str, usize),
}

const USER: Shape = Shape::B64("usr1:", 16);
const SUBJECT: Shape = Shape::B64("ps1:", 32);

impl Shape {
    /// The bytes `text` renders, if it is their canonical rendering.
    fn pack(self, text: &str) -> Option<Vec<u8>> {
        let bytes = match self {
            Self::Uuid => uuid::Uuid::try_parse(text).ok()?.as_bytes().to_vec(),
            Self::Hex16 => (text.len() == 32).then(|| hex::decode(text).ok())??,
            Self::B64(prefix, n) => {
                let b = URL_SAFE_NO_PAD.decode(text.strip_prefix(prefix)?).ok()?;
                (b.len() == n).then_some(b)?
            }
        };
        (self.render(&bytes)? == text).then_some(bytes)
    }

    fn render(self, bytes: &[u8]) -> Option<String> {
        match self {
            Self::Uuid => Some(uuid::Uuid::from_slice(bytes).ok()?.hyphenated().to_string()),
            Self::Hex16 => (bytes.len() == 16).then(|| hex::encode(bytes)),
            Self::B64(prefix, n) => {
                (bytes.len() == n).then(|| format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes)))
            }
        }
    }
}

/// An entry time (RFC 3339, UTC, milliseconds) as ms since 1970, if it is
/// exactly how ketenpoort renders those ms.
fn millis_of(time: &str) -> Option<u64> {
    let t =
        time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339).ok()?;
    let ms = u64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()?;
    (render_millis(ms)? == time).then_some(ms)
}

/// How ketenpoort writes an entry's time (`ledger::Draft::into_entry`).
pub fn render_millis(ms: u64) -> Option<String> {
    let nanos = i128::from(ms).checked_mul(1_000_000)?;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

type Enc<'w> = Encoder<&'w mut Vec<u8>>;
type EncResult = Result<(), minicbor::encode::Error<std::convert::Infallible>>;

fn text(e: &mut Enc<'_>, shape: Option<Shape>, s: &str) -> EncResult {
    match shape.and_then(|sh| sh.pack(s)) {
        Some(b) => e.bytes(&b)?,
        None => e.str(s)?,
    };
    Ok(())
}

fn nullable(e: &mut Enc<'_>, shape: Option<Shape>, s: Option<&str>) -> EncResult {
    match s {
        Some(s) => text(e, shape, s),
        None => e.null().map(drop),
    }
}

impl Compact<'_> {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(320);
        self.write(&mut Encoder::new(&mut out))
            .expect("writing to a Vec cannot fail");
        out
    }

    fn write(&self, e: &mut Enc<'_>) -> EncResult {
        e.array(ITEMS)?.u64(3)?.u64(self.index)?;
        match millis_of(&self.time) {
            Some(ms) => e.u64(ms)?,
            None => e.str(&self.time)?,
        };
        text(e, Some(Shape::Uuid), &self.request_id)?;
        text(e, Some(Shape::Hex16), &self.trace_id)?;
        e.str(&self.partner)?.str(&self.role)?;
        nullable(e, Some(USER), self.user.as_deref())?;
        nullable(e, None, self.recipient.as_deref())?;
        e.str(self.action.as_str())?;
        nullable(e, None, self.purpose.as_deref())?;
        e.array(self.resources.len() as u64)?;
        for r in &self.resources {
            e.str(r)?;
        }
        e.array(self.subjects.len() as u64)?;
        for s in &self.subjects {
            text(e, Some(SUBJECT), s)?;
        }
        match &self.projection {
            Some(p) => e.bytes(p)?,
            None => e.null()?,
        };
        e.str(self.outcome.as_str())?;
        Ok(())
    }
}

/// The length of the shortest head for argument `n` (§4.2.1).
fn head_len(n: u64) -> usize {
    match n {
        0..24 => 1,
        24..256 => 2,
        256..65_536 => 3,
        65_536..4_294_967_296 => 5,
        _ => 9,
    }
}

/// Items read with their heads checked: each in its shortest form, of
/// definite length (minicbor refuses indefinite strings where a string is
/// read, and `array` says `None` for an indefinite array).
struct Reader<'a> {
    d: Decoder<'a>,
}

impl<'a> Reader<'a> {
    /// The item just read, from `start`, had the shortest head for `arg`
    /// and `body` bytes after it.
    fn shortest(&self, start: usize, arg: u64, body: usize) -> bool {
        self.d.position() - start == head_len(arg) + body
    }

    fn datatype(&self) -> Option<Type> {
        self.d.datatype().ok()
    }

    fn uint(&mut self) -> Option<u64> {
        let start = self.d.position();
        let v = self.d.u64().ok()?;
        self.shortest(start, v, 0).then_some(v)
    }

    fn str(&mut self) -> Option<&'a str> {
        let start = self.d.position();
        let s = self.d.str().ok()?;
        self.shortest(start, s.len() as u64, s.len()).then_some(s)
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let start = self.d.position();
        let b = self.d.bytes().ok()?;
        self.shortest(start, b.len() as u64, b.len()).then_some(b)
    }

    fn array(&mut self) -> Option<u64> {
        let start = self.d.position();
        let n = self.d.array().ok()??;
        // Each item is at least one byte: a count beyond the rest is forged.
        let rest = (self.d.input().len() - self.d.position()) as u64;
        (self.shortest(start, n, 0) && n <= rest).then_some(n)
    }

    fn null(&mut self) -> Option<bool> {
        let null = self.datatype()? == Type::Null;
        if null {
            self.d.null().ok()?;
        }
        Some(null)
    }

    /// Text, or bytes in `shape`'s text form; text that has a byte form
    /// is not canonical (it is written as bytes).
    fn text(&mut self, shape: Option<Shape>) -> Option<Cow<'a, str>> {
        match (self.datatype()?, shape) {
            (Type::String, None) => self.str().map(Cow::Borrowed),
            (Type::String, Some(sh)) => {
                let s = self.str()?;
                sh.pack(s).is_none().then_some(Cow::Borrowed(s))
            }
            (Type::Bytes, Some(sh)) => sh.render(self.bytes()?).map(Cow::Owned),
            _ => None,
        }
    }

    fn nullable(&mut self, shape: Option<Shape>) -> Option<Option<Cow<'a, str>>> {
        if self.null()? {
            return Some(None);
        }
        self.text(shape).map(Some)
    }

    fn list(&mut self, shape: Option<Shape>) -> Option<Vec<Cow<'a, str>>> {
        let n = self.array()?;
        (0..n).map(|_| self.text(shape)).collect()
    }

    /// ms as a number, or text that is not such a rendering.
    fn time(&mut self) -> Option<Cow<'a, str>> {
        match self.datatype()? {
            Type::String => {
                let s = self.str()?;
                millis_of(s).is_none().then_some(Cow::Borrowed(s))
            }
            _ => Some(Cow::Owned(render_millis(self.uint()?)?)),
        }
    }

    fn name<T: Copy>(&mut self, all: &[T], name: impl Fn(T) -> &'static str) -> Option<T> {
        let s = self.str()?;
        all.iter().copied().find(|x| name(*x) == s)
    }
}

impl<'a> Compact<'a> {
    /// The items of `leaf` if it is the canonical v3 encoding of an entry
    /// (what [`Compact::encode`] writes for them, byte for byte; the
    /// property tests of `ledger::leaf` hold it to encoding again).
    pub fn parse(leaf: &'a [u8]) -> Option<Self> {
        if !leaf.starts_with(&PREFIX) {
            return None;
        }
        let mut d = Decoder::new(leaf);
        d.set_position(PREFIX.len());
        let mut r = Reader { d };
        let c = Self {
            index: r.uint()?,
            time: r.time()?,
            request_id: r.text(Some(Shape::Uuid))?,
            trace_id: r.text(Some(Shape::Hex16))?,
            partner: r.text(None)?,
            role: r.text(None)?,
            user: r.nullable(Some(USER))?,
            recipient: r.nullable(None)?,
            action: r.name(&LogAction::ALL, LogAction::as_str)?,
            purpose: r.nullable(None)?,
            resources: r.list(None)?,
            subjects: r.list(Some(SUBJECT))?,
            projection: match r.null()? {
                true => None,
                false => Some(r.bytes()?.try_into().ok()?),
            },
            outcome: r.name(&Outcome::ALL, Outcome::as_str)?,
        };
        (r.d.position() == leaf.len()).then_some(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_pack_only_their_canonical_text() {
        let id = "01933a4e-7c1d-7000-8000-0000000abcde";
        assert_eq!(Shape::Uuid.pack(id).map(|b| b.len()), Some(16));
        for not in [
            "01933A4E-7C1D-7000-8000-0000000ABCDE",
            "01933a4e7c1d70008000-0000000abcde",
            "{01933a4e-7c1d-7000-8000-0000000abcde}",
            "urn:uuid:01933a4e-7c1d-7000-8000-0000000abcde",
        ] {
            assert_eq!(Shape::Uuid.pack(not), None, "{not}");
        }
        assert_eq!(
            Shape::Hex16.pack(&"ab".repeat(16)).map(|b| b.len()),
            Some(16)
        );
        assert_eq!(Shape::Hex16.pack(&"AB".repeat(16)), None);
        assert_eq!(Shape::Hex16.pack(&"ab".repeat(15)), None);
        let user = format!("usr1:{}", URL_SAFE_NO_PAD.encode([9u8; 16]));
        assert_eq!(USER.pack(&user), Some(vec![9; 16]));
        // The last character's unused bits set: another text, the same bytes.
        let mut odd = user.clone();
        odd.pop();
        odd.push('R');
        assert_eq!(USER.pack(&odd), None);
        assert_eq!(SUBJECT.pack(&user), None);
        assert_eq!(
            millis_of("2026-12-04T21:14:07.123Z"),
            Some(1_796_418_847_123)
        );
        assert_eq!(millis_of("2026-12-04T21:14:07.1234Z"), None);
        assert_eq!(millis_of("2026-12-04T22:14:07.123+01:00"), None);
        assert_eq!(
            render_millis(1_796_418_847_123).as_deref(),
            Some("2026-12-04T21:14:07.123Z")
        );
    }
}
