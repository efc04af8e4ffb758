//! The console's own router: HTML pages, not API operations, so not in the
//! OpenAPI document (`api::app` mounts it at `/console`). The route scan
//! test (`http::routes_are_registered_only_through_the_openapi_router`)
//! allows exactly this file besides `src/api/mod.rs`.

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use super::{Console, pages, signin, verify};

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/verify.js");

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut res = (StatusCode::OK, body).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}

/// The console, with its state.
pub fn router(console: Console) -> Router {
    Router::new()
        .route("/", get(pages::overview))
        .route("/aanmelden", get(signin::page))
        .route("/aanmelden/demo", post(signin::demo))
        .route("/aanmelden/{provider}", get(signin::start))
        .route("/oidc/terug", get(signin::callback))
        .route("/afmelden", post(signin::sign_out))
        .route("/zoeken", get(pages::search).post(pages::search_post))
        .route("/export", get(pages::export))
        .route("/regels/{index}", get(pages::entry))
        .route("/inzage", get(pages::subject_form).post(pages::subject))
        .route("/controle", get(pages::control_page))
        .route("/controle/beoordeeld", post(pages::review))
        .route("/verificatie/checkpoint", get(verify::checkpoint))
        .route("/verificatie/consistentie", get(verify::consistency))
        .route("/verificatie/inclusie", get(verify::inclusion))
        .route(
            "/static/console.css",
            get(|| async { asset(CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/static/verify.js",
            get(|| async { asset(JS, "text/javascript; charset=utf-8") }),
        )
        .fallback(|| async { Redirect::to("/console/") })
        .with_state(console)
}
