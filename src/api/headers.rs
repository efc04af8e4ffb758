//! Request header fields checked before anything reads them (issue 13):
//! a security header sent twice is ambiguous and refused (400), and a header
//! section over the documented limits is refused (431) — both as
//! problem+json, before authentication.
//!
//! hyper enforces limits of its own while it parses, and answers them with
//! a bare 431 (HTTP/1.1: and closes the connection; HTTP/2: and resets the
//! stream): no body of ours is possible there. Its limits are therefore
//! well above the documented ones — HTTP/1.1: [`HTTP1_MAX_FIELDS`] fields
//! and a request head that fits its read buffer (about 400 KB); HTTP/2: a
//! `SETTINGS_MAX_HEADER_LIST_SIZE` of [`HTTP2_MAX_HEADER_LIST`] (`server.rs`
//! sets both) — so a request over the documented limits reaches this layer
//! and gets an answer it can read; only one far over them is refused at the
//! connection level.

use axum::http::{HeaderMap, HeaderName, StatusCode, header};

use super::purpose::PURPOSE_HEADER;
use crate::problem::Problem;

/// The most header fields a request may carry.
pub const MAX_FIELDS: usize = 100;
/// The most bytes its header fields may take, each counted as HTTP/2
/// counts it for `SETTINGS_MAX_HEADER_LIST_SIZE`: name, value and 32.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// hyper's HTTP/1.1 limit on the number of fields.
pub const HTTP1_MAX_FIELDS: usize = 2 * MAX_FIELDS;
/// The HTTP/2 `SETTINGS_MAX_HEADER_LIST_SIZE` the server announces.
pub const HTTP2_MAX_HEADER_LIST: u32 = 64 * 1024;

/// Headers that decide who asks and why: one value each, or none.
fn single_valued() -> [HeaderName; 2] {
    [
        header::AUTHORIZATION,
        HeaderName::from_static(PURPOSE_HEADER),
    ]
}

/// Why a request's header section is refused, if it is.
pub fn check(headers: &HeaderMap) -> Result<(), Problem> {
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 32)
        .sum();
    if headers.len() > MAX_FIELDS || bytes > MAX_HEADER_BYTES {
        return Err(Problem::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "header-fields-too-large",
            "Request header fields too large",
            format!(
                "at most {MAX_FIELDS} header fields of at most {MAX_HEADER_BYTES} bytes together \
                 (each counted as name, value and 32)"
            ),
        ));
    }
    for name in single_valued() {
        if headers.get_all(&name).iter().nth(1).is_some() {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "ambiguous-header",
                "Ambiguous header",
                format!("the {name} header may be sent once"),
            )
            .code("duplicate-header"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn with(fields: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in fields {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn status(h: &HeaderMap) -> Option<StatusCode> {
        check(h).err().map(|p| p.status())
    }

    #[test]
    fn a_security_header_sent_twice_is_refused() {
        assert_eq!(status(&with(&[("authorization", "Bearer a")])), None);
        for name in ["authorization", "Authorization", "ketenpoort-purpose"] {
            let h = with(&[(name, "x"), (name, "x")]);
            assert_eq!(status(&h), Some(StatusCode::BAD_REQUEST), "{name}");
        }
        // Other repeated fields are HTTP's business.
        assert_eq!(status(&with(&[("accept", "a"), ("accept", "b")])), None);
    }

    #[test]
    fn the_limits_count_as_documented() {
        let many: Vec<(String, String)> = (0..=MAX_FIELDS)
            .map(|i| (format!("x-{i}"), "1".into()))
            .collect();
        let refs: Vec<(&str, &str)> = many.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        assert_eq!(status(&with(&refs[1..])), None);
        assert_eq!(
            status(&with(&refs)),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
        // One field of exactly the limit passes, one byte more does not.
        let fits = "v".repeat(MAX_HEADER_BYTES - 32 - "x-big".len());
        assert_eq!(status(&with(&[("x-big", &fits)])), None);
        let over = format!("{fits}v");
        assert_eq!(
            status(&with(&[("x-big", &over)])),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
        const { assert!(HTTP1_MAX_FIELDS >= 2 * MAX_FIELDS) };
        const { assert!(HTTP2_MAX_HEADER_LIST as usize >= 2 * MAX_HEADER_BYTES) };
    }
}
