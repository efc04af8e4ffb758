//! The disclosure log over HTTP. Checkpoints, the verifier key and proofs
//! are hashes: any partner may fetch them ([`proofs`]). Entries are personal
//! data (they hold pseudonyms): which ones a caller sees is the audit
//! policy's scope, and every read of entries is itself logged ([`audit`],
//! and its CSV form, [`export`]).

pub(crate) mod audit;
pub(crate) mod export;
mod proofs;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

pub use audit::*;
pub use export::*;
pub use proofs::*;

/// The most entries a search page holds.
const MAX_PAGE: u32 = 500;

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}
