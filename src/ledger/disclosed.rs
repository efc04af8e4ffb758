//! Invariant 2 by type: an answer that discloses leaves only with the
//! receipt of its log entry. A [`Receipt`] comes only from the log
//! ([`Ledger::log`](super::Ledger::log) and
//! [`Ledger::commit`](super::Ledger::commit)), and [`Disclosed`] — the
//! response type of every disclosing handler — only from a receipt. What a
//! handler discloses of a record is a
//! [`Projection`](crate::projection::Projection), which has no way out but
//! through a receipt either: a handler that skips the log does not compile.

use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};

use super::{RECEIPT_HEADER, Receipt};

/// A response whose disclosure is in the log: the body, and the receipt
/// sent with it in the `Ketenpoort-Receipt` header.
#[must_use]
pub struct Disclosed<T> {
    receipt: Receipt,
    body: T,
}

impl Receipt {
    /// The answer that this entry logged.
    pub fn disclose<T>(self, body: T) -> Disclosed<T> {
        Disclosed {
            receipt: self,
            body,
        }
    }
}

impl<T: IntoResponse> IntoResponse for Disclosed<T> {
    fn into_response(self) -> Response {
        let mut res = self.body.into_response();
        res.headers_mut().insert(
            RECEIPT_HEADER,
            HeaderValue::from_str(&self.receipt.header_value()).expect("receipt header is ASCII"),
        );
        res
    }
}
