//! Errors as `application/problem+json` (RFC 9457). The `type` is a stable
//! URN per kind of problem; `detail` never carries internals or personal
//! values, only what a partner's developer needs to fix the request.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

pub const CONTENT_TYPE: &str = "application/problem+json";

/// A problem response. Boxed: it travels in every handler's `Err`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(transparent)]
pub struct Problem(Box<Body>);

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Body {
    /// `urn:ketenpoort:problem:<kind>`: stable, for programs to branch on.
    #[serde(rename = "type")]
    kind: String,
    title: &'static str,
    status: u16,
    /// What went wrong and how to fix the request; never a personal value.
    detail: String,
    /// Stable reason code (auth failures, policy denials).
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<String>,
    /// What failed in rejected input (API Design Rules,
    /// `/core/error-handling/invalid-input`): names and reasons, never values.
    #[serde(rename = "invalidParams", skip_serializing_if = "Vec::is_empty")]
    invalid_params: Vec<FieldError>,
    #[serde(skip)]
    retry_after: Option<u64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FieldError {
    /// Where: a JSON pointer into the request body (`/victims/0/bsn`), or
    /// the name of a query parameter.
    #[serde(rename = "name")]
    pub pointer: String,
    /// What is wrong, without the value.
    pub reason: String,
}

impl Problem {
    /// A problem of `kind`; every problem has a `detail`.
    pub fn new(
        status: StatusCode,
        kind: &str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self(Box::new(Body {
            kind: format!("urn:ketenpoort:problem:{kind}"),
            title,
            status: status.as_u16(),
            detail: detail.into(),
            code: None,
            invalid_params: Vec::new(),
            retry_after: None,
        }))
    }

    pub fn detail(mut self, d: impl Into<String>) -> Self {
        self.0.detail = d.into();
        self
    }

    pub fn code(mut self, c: impl Into<String>) -> Self {
        self.0.code = Some(c.into());
        self
    }

    pub fn errors(mut self, e: Vec<FieldError>) -> Self {
        self.0.invalid_params = e;
        self
    }

    /// The stable reason code, or "" when there is none.
    pub fn code_str(&self) -> &str {
        self.0.code.as_deref().unwrap_or("")
    }

    /// The detail, for a page that shows the problem (it never holds a
    /// personal value).
    pub fn detail_text(&self) -> &str {
        &self.0.detail
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "Bad request",
            detail,
        )
    }

    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
            "nothing is found at this URI; check the path and the id in it",
        )
    }

    pub fn unauthorized(code: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authentication required",
            "present a valid bearer token issued for this gateway",
        )
        .code(code)
    }

    pub fn forbidden(code: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail).code(code)
    }

    /// Input that does not fit the schema of the route (a body against its
    /// JSON Schema, a field's format): 400 listing each failing field.
    pub fn invalid_input(detail: impl Into<String>, errors: Vec<FieldError>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid-input",
            "Invalid input",
            detail,
        )
        .errors(errors)
    }

    /// Input that fits the schema but names what the covenant does not
    /// know (a recipient, a purpose): 422 listing each failing field.
    pub fn unprocessable(detail: impl Into<String>, errors: Vec<FieldError>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
            "Request body rejected",
            detail,
        )
        .errors(errors)
    }

    pub fn too_many_requests(retry_after: u64) -> Self {
        let mut p = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many requests",
            "this partner's request rate is above its limit; retry later",
        );
        p.0.retry_after = Some(retry_after.max(1));
        p
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            detail,
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the request failed inside the gateway; nothing was disclosed",
        )
    }

    /// The generic problem for a bare status produced below the handlers
    /// (method not allowed, body limit, timeout).
    pub fn for_status(status: StatusCode) -> Self {
        match status {
            StatusCode::NOT_FOUND => Self::not_found(),
            StatusCode::METHOD_NOT_ALLOWED => Self::new(
                status,
                "method-not-allowed",
                "Method not allowed",
                "this route does not take this method; the Allow header lists the ones it takes",
            ),
            StatusCode::PAYLOAD_TOO_LARGE => Self::new(
                status,
                "payload-too-large",
                "Payload too large",
                "the request body is larger than this gateway accepts",
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::new(
                status,
                "unsupported-media-type",
                "Unsupported media type",
                "send the body as application/json",
            ),
            StatusCode::REQUEST_TIMEOUT | StatusCode::SERVICE_UNAVAILABLE => {
                Self::unavailable("the request did not complete in time; nothing was disclosed")
            }
            s if s.is_client_error() => Self::new(
                s,
                "bad-request",
                "Bad request",
                "the request could not be read; check its method, URI and headers",
            ),
            _ => Self::internal(),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry = self.0.retry_after;
        let body = serde_json::to_vec(&self).expect("problem serialises");
        let mut res = (status, body).into_response();
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if let Some(r) = retry {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(r));
        }
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"ketenpoort\""),
            );
        }
        res
    }
}

/// Internal failures become a 500 whose body says nothing about the cause;
/// the cause goes to the operator's log (it never holds personal values).
impl From<sqlx::Error> for Problem {
    fn from(e: sqlx::Error) -> Self {
        tracing::error!(error = %e, "database error");
        Self::unavailable("the database did not answer; nothing was disclosed")
    }
}

impl From<anyhow::Error> for Problem {
    fn from(e: anyhow::Error) -> Self {
        tracing::error!(error = %e, "internal error");
        Self::internal()
    }
}
