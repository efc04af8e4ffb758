//! The HTTP API: one router built from documented routes only, wrapped in the
//! layers every request passes. Handlers read as the request path:
//! authenticate (route layer), decide, project, log, respond.

mod admin;
mod decisions;
pub mod extract;
mod format;
pub mod headers;
pub mod idempotency;
mod inbox;
mod lifecycle;
pub(crate) mod log;
pub mod middleware;
mod oauth;
mod page;
mod phenomena;
mod publication;
pub mod purpose;
mod signals;
mod system;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, FromRef};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::CorsLayer;
use tower_http::limit::RequestBodyLimitLayer;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Gate, RateLimit, require_principal};
use crate::boundary::{self, Boundary, EgressGuard};
use crate::config::Config;
use crate::crypto::Pseudonymizer;
use crate::crypto::cursor::Cursors;
use crate::ledger::Ledger;
use crate::phenomena::Phenomena;
use crate::policy::PolicyEngine;
use crate::problem::Problem;
use crate::signals::Vault;
use crate::signals::exchange::Desk;
use crate::store::Db;

/// The version in the `API-Version` header (Dutch API Design Rules).
pub const API_VERSION: &str = "1.0.0";

/// Everything a request may need. Cloned for every layer and handler, so
/// it is one reference-counted pointer.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

pub struct Services {
    pub cursors: Cursors,
    pub config: Arc<Config>,
    pub db: Db,
    pub gate: Gate,
    pub boundary: Boundary,
    pub metrics: Option<PrometheusHandle>,
    pub policy: PolicyEngine,
    pub ledger: Ledger,
    pub pseudonyms: Pseudonymizer,
    pub vault: Vault,
    pub phenomena: Phenomena,
    pub egress: EgressGuard,
}

impl Services {
    /// What a signal's state changes go through.
    pub fn desk(&self) -> Desk<'_> {
        Desk {
            vault: &self.vault,
            egress: &self.egress,
            ledger: &self.ledger,
        }
    }
}

impl FromRef<AppState> for Gate {
    fn from_ref(s: &AppState) -> Self {
        s.gate.clone()
    }
}

impl FromRef<AppState> for RateLimit {
    fn from_ref(s: &AppState) -> Self {
        s.gate.rate_limit().clone()
    }
}

impl FromRef<AppState> for Boundary {
    fn from_ref(s: &AppState) -> Self {
        s.boundary.clone()
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "ketenpoort", description = "Exchange gateway of the Drenthe anti-trafficking covenant."),
    modifiers(&BearerAuth),
    tags(
        (name = "operations", description = "Health, readiness and the API description"),
        (name = "log", description = "The disclosure log: checkpoints, proofs and the privacy officer's view"),
        (name = "signals", description = "Submit, read, list and refer signals (covenant members only)"),
        (name = "inbox", description = "Referred signals for the recipient (covenant members only)"),
        (name = "decisions", description = "Dry runs of the covenant policy (covenant members only)"),
        (name = "oauth", description = "Tokens for partner systems: OAuth 2.0 client credentials with a TLS client certificate or a signed assertion"),
        (name = "phenomena", description = "Phenomenon tables under disclosure control: the catalogue and its releases (every partner, the RIEC included)")
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi.info.version = API_VERSION.into();
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .build();
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
        // The token endpoint's client authentication: a TLS client
        // certificate (RFC 8705), or a signed assertion in the form
        // (RFC 7523 private_key_jwt), which OpenAPI has no scheme for.
        components.add_security_scheme(
            "mutualTLS",
            SecurityScheme::MutualTls {
                description: Some(
                    "A client certificate registered for a partner system (`ketenpoort client add`); \
                     alternatively a private_key_jwt assertion in the form"
                        .into(),
                ),
                deprecated: None,
                extensions: None,
            },
        );
    }
}

/// Every route with its documentation. Routes are only ever added here, via
/// `routes!`, so the OpenAPI document and the router cannot drift apart.
fn routes(state: &AppState) -> OpenApiRouter<AppState> {
    // Open CORS on the API description, preflights (OPTIONS) included. The
    // method router needs its own fallback under the CORS layer: the app's
    // `method_not_allowed_fallback` replaces default fallbacks, layered or not,
    // which left preflights without CORS headers (a 405).
    let (schemas, paths, document) = routes!(system::openapi);
    let document = document
        .fallback(method_not_allowed)
        .layer(CorsLayer::permissive());
    let public = OpenApiRouter::new()
        .routes(routes!(system::healthz))
        .routes(routes!(system::readyz))
        // Partner systems get their tokens here: before any token.
        .routes(routes!(oauth::token))
        .routes(routes!(oauth::metadata))
        .routes((schemas, paths, document));
    // The only routes a non-member reaches (the RIEC boundary, layer 2):
    // its own identity, the log's hashes and its own aggregate entries (the
    // audit policy's scope), and the phenomenon tables.
    let any_partner = OpenApiRouter::new()
        .routes(routes!(system::me))
        .routes(routes!(log::checkpoint))
        .routes(routes!(log::verifier_key))
        .routes(routes!(log::inclusion))
        .routes(routes!(log::consistency))
        .routes(routes!(log::entries))
        .routes(routes!(phenomena::catalogue))
        .routes(routes!(phenomena::releases))
        .routes(routes!(phenomena::release))
        .routes(routes!(phenomena::release_table));
    // Everything else: covenant members only, refused (and logged) for a
    // non-member before any handler runs.
    let members = OpenApiRouter::new()
        // Non-members see published checkpoints only, never one on demand.
        .routes(routes!(log::sign_checkpoint))
        .routes(routes!(signals::submit, signals::list))
        .routes(routes!(signals::read, lifecycle::change))
        .routes(routes!(signals::refer))
        .routes(routes!(lifecycle::version))
        .routes(routes!(lifecycle::transition))
        .routes(routes!(
            lifecycle::request_correction,
            lifecycle::correction_requests
        ))
        .routes(routes!(lifecycle::track, lifecycle::feedback))
        .routes(routes!(lifecycle::counts))
        .routes(routes!(inbox::list))
        .routes(routes!(inbox::ack))
        .routes(routes!(decisions::dry_run))
        .routes(routes!(log::search))
        .routes(routes!(log::export))
        .routes(routes!(log::subject))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            idempotency::idempotent,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            boundary::members_only,
        ));
    // Layer 3, the egress guard, sees every response to a non-member that
    // passed authentication, refusals and rate limiting included.
    let authenticated = any_partner
        .merge(members)
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            publication::no_receipt_for_non_members,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::rate_limit::rate_limit,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            boundary::egress_guard,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_principal,
        ));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(public)
        .merge(authenticated)
}

async fn method_not_allowed() -> axum::response::Response {
    Problem::for_status(StatusCode::METHOD_NOT_ALLOWED).into_response()
}

/// The base path of the partner API: the document's server, with the major
/// version in it (API Design Rules, `/core/uri-version`).
const BASE_PATH: &str = "/v1";

/// Where RFC 8615 well-known URIs live.
const WELL_KNOWN: &str = "/.well-known";

/// The OpenAPI document as served, as the Dutch API Design Rules (the
/// Logius `nlgov` ruleset) ask it, from what the handlers' annotations say:
///
/// - signal schema v1 (`schemas/signal.v1.json`, JSON Schema 2020-12 as
///   OpenAPI 3.1 allows) as the body of `POST /v1/signals`; its `$defs`
///   become `SignalV1<Name>` components (UpperCamelCase, as every schema);
/// - `servers` is the base path `/v1` and the paths are relative to it; the
///   operational routes outside it (`/healthz`, `/readyz`) name their own
///   server `/`;
/// - every error response is `application/problem+json` with the `Problem`
///   schema (`status`, `title`, `detail` always present); every response
///   documents the `API-Version` header; every operation with input (a
///   parameter or a body) documents its 400, and every authenticated one
///   its 401;
/// - the `Ketenpoort-Purpose` header parameter (see
///   [`purpose::PurposeHeader`]) lists the purposes of `policies`;
/// - `info.contact` is the operator's (`api.contact_*`).
fn finish_document(
    doc: utoipa::openapi::OpenApi,
    policies: &crate::policy::Policies,
    api: &crate::config::ApiConfig,
) -> serde_json::Value {
    use serde_json::{Value, json};
    let mut doc = serde_json::to_value(&doc).expect("OpenAPI document serialises");
    doc["info"]["contact"] = json!({
        "name": api.contact_name,
        "url": api.contact_url,
        "email": api.contact_email,
    });

    // Signal schema v1 and its definitions.
    let mut text = include_str!("../../schemas/signal.v1.json").to_owned();
    let names: Vec<String> = serde_json::from_str::<Value>(&text)
        .expect("signal schema is JSON")
        .get("$defs")
        .and_then(Value::as_object)
        .map(|d| d.keys().cloned().collect())
        .unwrap_or_default();
    for name in &names {
        text = text.replace(
            &format!("\"#/$defs/{name}\""),
            &format!("\"#/components/schemas/{}\"", signal_component(name)),
        );
    }
    let mut schema: Value = serde_json::from_str(&text).expect("signal schema is JSON");
    let defs = schema.as_object_mut().and_then(|o| o.remove("$defs"));
    if let Some(o) = schema.as_object_mut() {
        o.remove("$schema");
        o.remove("$id");
    }
    let components = &mut doc["components"]["schemas"];
    for (name, def) in defs
        .and_then(|d| d.as_object().cloned())
        .unwrap_or_default()
    {
        components[signal_component(&name)] = def;
    }
    components["SignalV1"] = schema;
    doc["paths"]["/v1/signals"]["post"]["requestBody"]["content"]["application/json"]["schema"] =
        json!({"$ref": "#/components/schemas/SignalV1"});

    // The problem schema: the body itself, not a reference to a `Body`.
    if let Some(schemas) = doc["components"]["schemas"].as_object_mut()
        && let Some(mut body) = schemas.remove("Body")
    {
        body["description"] =
            "An error, as RFC 9457 problem details (`application/problem+json`). \
            It never carries a personal value."
                .into();
        schemas.insert("Problem".into(), body);
    }

    // Shared components: the version header, the purpose header.
    let components = &mut doc["components"];
    components["headers"]["API-Version"] = json!({
        "description": "The full version of the API that answered (semantic versioning).",
        "required": true,
        "schema": {"type": "string", "example": API_VERSION},
    });
    let purposes = policies
        .data()
        .pointer("/covenant/purposes")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let listed: Vec<String> = purposes
        .iter()
        .map(|(id, p)| {
            let name = p.get("name").and_then(Value::as_str).unwrap_or(id);
            format!("- `{id}`: {name}")
        })
        .collect();
    components["parameters"]["KetenpoortPurpose"] = json!({
        "name": purpose::PURPOSE_PARAMETER,
        "in": "header",
        "required": true,
        "description": format!(
            "The purpose of this exchange: a purpose id of the covenant (policy data \
             `covenant.purposes`). The covenant policy decides whether it fits the caller's \
             role and the recipient.\n\n{}",
            listed.join("\n")
        ),
        "schema": {"type": "string", "enum": purposes.keys().collect::<Vec<_>>()},
    });

    // Operations.
    let problem = json!({
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
    });
    let version = json!({"API-Version": {"$ref": "#/components/headers/API-Version"}});
    let mut paths = serde_json::Map::new();
    for (path, mut item) in doc["paths"].as_object().cloned().unwrap_or_default() {
        for (method, op) in item.as_object_mut().into_iter().flatten() {
            let Some(op) = op.as_object_mut() else {
                continue;
            };
            let mut parameters: Vec<Value> = op
                .get("parameters")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for p in &mut parameters {
                if p["name"] == purpose::PURPOSE_PARAMETER && p["in"] == "header" {
                    *p = json!({"$ref": "#/components/parameters/KetenpoortPurpose"});
                }
            }
            let has_input = !parameters.is_empty()
                || op.contains_key("requestBody")
                || matches!(method.as_str(), "post" | "put" | "patch");
            let secured = op
                .get("security")
                .and_then(Value::as_array)
                .is_some_and(|s| !s.is_empty());
            if !parameters.is_empty() {
                op.insert("parameters".into(), parameters.into());
            }
            let responses = op
                .entry("responses")
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("responses is an object");
            if has_input {
                responses.entry("400").or_insert_with(|| {
                    json!({"description": "Invalid input: the body does not fit the route's schema, or \
                        a parameter, a header or the body cannot be read; `invalidParams` lists \
                        each failing field (its name or JSON pointer and the reason, never the value)."})
                });
            }
            if secured {
                responses.entry("401").or_insert_with(
                    || json!({"description": "No valid bearer token for this gateway."}),
                );
            }
            for (status, response) in responses.iter_mut() {
                let code = status
                    .parse::<u16>()
                    .ok()
                    .and_then(|c| StatusCode::from_u16(c).ok());
                // OpenAPI requires a description on every response; the
                // status text serves where a handler documents none.
                if response.get("description").is_none() {
                    let text = code
                        .and_then(|c| c.canonical_reason())
                        .unwrap_or("Response");
                    response["description"] = text.into();
                }
                if code.is_some_and(|c| c.is_client_error() || c.is_server_error()) {
                    response["content"] = problem.clone();
                }
                response["headers"] = version.clone();
            }
        }
        match path.strip_prefix(BASE_PATH) {
            Some(rest) if rest.starts_with('/') => {
                paths.insert(rest.to_owned(), item);
            }
            // RFC 8615 well-known URIs (the token endpoint's RFC 8414
            // metadata): their server is `/.well-known`, so the path keys
            // stay kebab-case as the rules ask.
            _ if path.starts_with(WELL_KNOWN) => {
                item["servers"] = json!([{
                    "url": WELL_KNOWN,
                    "description": "Well-known URIs (RFC 8615), outside the versioned API"
                }]);
                paths.insert(path[WELL_KNOWN.len()..].to_owned(), item);
            }
            _ => {
                item["servers"] = json!([{
                    "url": "/",
                    "description": "Operational routes, outside the versioned API"
                }]);
                paths.insert(path, item);
            }
        }
    }
    doc["paths"] = paths.into();
    doc["servers"] = json!([{
        "url": BASE_PATH,
        "description": "This gateway, major version 1 of the API (relative to the host that serves this document)"
    }]);
    doc
}

/// The component name of a signal schema definition: `SignalV1` and the
/// name in UpperCamelCase (`address` → `SignalV1Address`).
fn signal_component(name: &str) -> String {
    let mut out = String::from("SignalV1");
    for part in name.split(|c: char| !c.is_ascii_alphanumeric()) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.extend(first.to_uppercase());
            out.push_str(chars.as_str());
        }
    }
    out
}

/// The operator interface on `admin.listen`: policy status and reload, and
/// the metrics. Its own router, apart from the partner API and its OpenAPI
/// document. The metrics live here, not on the partner listener: their
/// counters (referrals to the RIEC per mode, requests per route) would tell
/// any partner when and how many signals were referred, which the
/// perturbation of the phenomenon tables exists to hide.
pub fn admin_app(state: AppState) -> Router {
    let (router, _) = OpenApiRouter::new()
        .routes(routes!(admin::policy))
        .routes(routes!(admin::reload))
        .routes(routes!(system::metrics))
        .split_for_parts();
    conventions(
        router
            .fallback(|| async { Problem::not_found().into_response() })
            .method_not_allowed_fallback(method_not_allowed),
    )
    .with_state(state)
}

/// What every answer on either listener gets ([`middleware::conventions`]):
/// problem+json for bare error statuses, the request id and trace context,
/// the access log, `API-Version` and the security headers. A panic is
/// caught innermost, so its 500 passes all of these too (and is counted and
/// logged with its request id).
fn conventions<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router
        .layer(CatchPanicLayer::custom(|_| {
            Problem::internal().into_response()
        }))
        .layer(axum::middleware::from_fn(middleware::conventions))
}

/// The complete application: routes, then the layers every request passes.
/// `console` is the privacy officer's console (HTML, `crate::console`),
/// mounted at `/console` under the same layers.
pub fn app(state: AppState, cfg: &Config, console: Option<Router>) -> Router {
    let (router, doc) = routes(&state).split_for_parts();
    let router = match console {
        Some(console) => router.nest_service("/console", console),
        None => router,
    };
    let policies = state.policy.current();
    let doc = system::OpenApiJson(Arc::new(
        finish_document(doc, &policies, &cfg.api).to_string(),
    ));
    let router = router
        .fallback(|| async { Problem::not_found().into_response() })
        .method_not_allowed_fallback(method_not_allowed)
        .layer(Extension(doc))
        .layer(DefaultBodyLimit::max(cfg.http.body_limit))
        .layer(RequestBodyLimitLayer::new(cfg.http.body_limit))
        .layer(axum::middleware::from_fn_with_state(
            middleware::Guard {
                body_limit: cfg.http.body_limit,
                timeout: Duration::from_secs(cfg.http.request_timeout_secs.max(1)),
            },
            middleware::guard,
        ));
    conventions(router).with_state(state)
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    /// A handler that panics still answers with the conventions: problem+json,
    /// request id, `API-Version` and the security headers.
    #[tokio::test]
    async fn a_panic_answers_with_every_convention() {
        async fn boom() -> &'static str {
            panic!("a handler bug")
        }
        let app = conventions(axum::Router::new().route("/boom", axum::routing::get(boom)));
        let req = Request::get("/boom").body(Body::empty()).unwrap();
        let res = app.oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let h = |name: &str| {
            res.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_else(|| panic!("no {name} on a panic's 500"))
                .to_owned()
        };
        assert_eq!(h("content-type"), crate::problem::CONTENT_TYPE);
        assert_eq!(h("api-version"), API_VERSION);
        assert_eq!(h("cache-control"), "no-store");
        assert_eq!(h("content-security-policy"), "frame-ancestors 'none'");
        assert_eq!(h("x-content-type-options"), "nosniff");
        assert!(h("strict-transport-security").starts_with("max-age="));
        uuid::Uuid::parse_str(&h(middleware::REQUEST_ID)).unwrap();
        h("traceparent");
    }
}
