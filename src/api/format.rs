//! Content negotiation for the phenomenon releases: the `Accept` header
//! picks JSON (the default), CSV or JSON-stat 2.0; anything none of them
//! satisfies is 406 problem+json listing what is offered, before the
//! request is decided or logged (it discloses nothing).
//!
//! Written here rather than taken from a crate: the rules are RFC 9110
//! §12.5.1 in a few lines (media ranges with `q`, the most specific range
//! deciding, ties going to the server's order), for three fixed types.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::phenomena::{Code, Release, formats};
use crate::problem::Problem;

pub const JSON: &str = "application/json";
pub const CSV: &str = "text/csv";
pub const JSON_STAT: &str = "application/json-stat+json";

/// What a release is served as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableFormat {
    Json,
    Csv,
    JsonStat,
}

impl TableFormat {
    /// In the server's order of preference: a tie goes to the first.
    const OFFERED: [(TableFormat, &'static str); 3] = [
        (TableFormat::Json, JSON),
        (TableFormat::Csv, CSV),
        (TableFormat::JsonStat, JSON_STAT),
    ];

    /// The format an `Accept` header asks for; `None` when it accepts none
    /// of them. No header (or an empty one) is JSON.
    pub fn negotiate(accept: Option<&str>) -> Option<Self> {
        let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
            return Some(Self::Json);
        };
        let ranges: Vec<(String, f32)> = accept.split(',').filter_map(range).collect();
        let mut best: Option<(Self, f32)> = None;
        for (format, media) in Self::OFFERED {
            let q = quality(&ranges, media);
            if q > 0.0 && best.is_none_or(|(_, b)| q > b) {
                best = Some((format, q));
            }
        }
        best.map(|(f, _)| f)
    }

    /// The release, or one table or trend of it, in this format.
    pub fn render(self, release: &Release, only: Option<&Code>) -> Result<Response, Problem> {
        let mut res = match self {
            Self::Json => {
                let body = match only {
                    Some(id) => release.only(id).ok_or_else(Problem::not_found)?,
                    None => release.clone(),
                };
                axum::Json(body).into_response()
            }
            Self::Csv => (
                [(
                    header::CONTENT_TYPE,
                    "text/csv; charset=utf-8; header=present",
                )],
                formats::csv(release, only)?,
            )
                .into_response(),
            Self::JsonStat => (
                [(header::CONTENT_TYPE, JSON_STAT)],
                formats::json_stat(release, only).to_string(),
            )
                .into_response(),
        };
        res.headers_mut()
            .insert(header::VARY, HeaderValue::from_static("accept"));
        Ok(res)
    }
}

/// One media range of an `Accept` header: its lowercase type and `q`.
fn range(part: &str) -> Option<(String, f32)> {
    let mut params = part.split(';');
    let media = params.next()?.trim().to_ascii_lowercase();
    if media.is_empty() {
        return None;
    }
    let mut q = 1.0;
    for p in params {
        if let Some((k, v)) = p.split_once('=')
            && k.trim().eq_ignore_ascii_case("q")
        {
            q = v
                .trim()
                .parse::<f32>()
                .ok()
                .filter(|q| (0.0..=1.0).contains(q))?;
        }
    }
    Some((media, q))
}

/// The `q` the most specific matching range gives `media` (0 if none).
fn quality(ranges: &[(String, f32)], media: &str) -> f32 {
    let (kind, _) = media.split_once('/').expect("a media type");
    let specificity = |r: &str| {
        if r == media {
            Some(3)
        } else if r.strip_suffix("/*") == Some(kind) {
            Some(2)
        } else if r == "*/*" {
            Some(1)
        } else {
            None
        }
    };
    ranges
        .iter()
        .filter_map(|(r, q)| specificity(r).map(|s| (s, *q)))
        .max_by_key(|(s, _)| *s)
        .map_or(0.0, |(_, q)| q)
}

/// 406: what is offered, in the detail.
pub fn not_acceptable() -> Problem {
    Problem::new(
        StatusCode::NOT_ACCEPTABLE,
        "not-acceptable",
        "Not acceptable",
        format!("the Accept header allows none of the formats offered: {JSON}, {CSV}, {JSON_STAT}"),
    )
}

impl<S: Send + Sync> FromRequestParts<S> for TableFormat {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        let accept: Vec<&str> = parts
            .headers
            .get_all(header::ACCEPT)
            .iter()
            .map(|v| v.to_str().map_err(|_| not_acceptable()))
            .collect::<Result<_, _>>()?;
        let joined = accept.join(",");
        Self::negotiate((!accept.is_empty()).then_some(joined.as_str())).ok_or_else(not_acceptable)
    }
}

#[cfg(test)]
mod tests {
    use super::TableFormat::{self, *};

    #[test]
    fn accept_headers_pick_the_format() {
        for (accept, want) in [
            (None, Some(Json)),
            (Some(""), Some(Json)),
            (Some("*/*"), Some(Json)),
            (Some("application/*"), Some(Json)),
            (Some("application/json"), Some(Json)),
            (Some("text/csv"), Some(Csv)),
            (Some("text/*"), Some(Csv)),
            (Some("TEXT/CSV; charset=utf-8"), Some(Csv)),
            (Some("application/json-stat+json"), Some(JsonStat)),
            (Some("application/json;q=0.5, text/csv"), Some(Csv)),
            (
                Some("text/csv;q=0.2, application/json-stat+json;q=0.9"),
                Some(JsonStat),
            ),
            (Some("*/*;q=0.1, text/csv"), Some(Csv)),
            (Some("application/*;q=0, text/csv;q=0.1"), Some(Csv)),
            (Some("text/html"), None),
            (Some("application/xml, text/html;q=0.9"), None),
            (Some("*/*;q=0"), None),
            (Some("text/csv;q=0"), None),
            (Some("application/json;q=2"), None),
        ] {
            assert_eq!(TableFormat::negotiate(accept), want, "{accept:?}");
        }
    }
}
