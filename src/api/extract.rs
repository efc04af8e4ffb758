//! Extractors whose rejections are problem+json and never echo input values.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::problem::Problem;

/// A JSON body. Wrong content type: 415; not JSON: 400; too large: 413;
/// wrong shape: 400 naming the location, not the value.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<serde_json::Value>::from_request(req, state).await {
            Ok(axum::Json(value)) => {
                let mut track = serde_path_to_error::Track::new();
                let de = serde_path_to_error::Deserializer::new(value, &mut track);
                T::deserialize(de).map(Json).map_err(|_| {
                    Problem::invalid_input(
                        "the body does not have the expected structure",
                        vec![crate::problem::FieldError {
                            pointer: pointer(&track.path()),
                            reason: "missing, unknown or of the wrong type".into(),
                        }],
                    )
                })
            }
            Err(JsonRejection::MissingJsonContentType(_)) => {
                Err(Problem::for_status(StatusCode::UNSUPPORTED_MEDIA_TYPE))
            }
            Err(JsonRejection::JsonSyntaxError(_)) => {
                Err(Problem::bad_request("the body is not valid JSON"))
            }
            Err(JsonRejection::BytesRejection(r))
                if r.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(Problem::for_status(StatusCode::PAYLOAD_TOO_LARGE))
            }
            Err(_) => Err(Problem::bad_request("the body could not be read as JSON")),
        }
    }
}

/// Query parameters; unknown or malformed ones are a 400.
/// A JSON Merge Patch body (RFC 7396): `Content-Type:
/// application/merge-patch+json` (415 otherwise), any JSON value.
pub struct MergePatch(pub serde_json::Value);

pub const MERGE_PATCH: &str = "application/merge-patch+json";

impl<S: Send + Sync> FromRequest<S> for MergePatch {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_merge_patch = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| m.trim().eq_ignore_ascii_case(MERGE_PATCH));
        if !is_merge_patch {
            return Err(
                Problem::for_status(StatusCode::UNSUPPORTED_MEDIA_TYPE).detail(
                    "a change is a JSON Merge Patch: Content-Type application/merge-patch+json",
                ),
            );
        }
        let Json(v) = Json::<serde_json::Value>::from_request(req, state).await?;
        Ok(Self(v))
    }
}

pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Query(v))
            .map_err(|_: QueryRejection| {
                Problem::bad_request("invalid or unknown query parameters")
            })
    }
}

/// JSON pointer (RFC 6901) of a serde path.
fn pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path.iter() {
        out.push('/');
        match seg {
            Segment::Seq { index } => out.push_str(&index.to_string()),
            Segment::Map { key } => out.push_str(&key.replace('~', "~0").replace('/', "~1")),
            Segment::Enum { variant } => out.push_str(variant),
            Segment::Unknown => out.push('?'),
        }
    }
    out
}
