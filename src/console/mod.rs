//! The privacy officer's console at `/console/`: server-rendered Dutch HTML
//! for the FG to review disclosures, answer access requests, check for
//! misuse and verify the log in the browser.
//!
//! It is no second way to the log: every page that shows entries is an FG
//! query through the API's own request path (`Exchange` → the audit
//! policy's scope → the query's own log entry → `Receipt` → `Disclosed`),
//! with purpose `verantwoording`; only the sign-in and the session differ
//! from the API's bearer token ([`session`], [`signin`]). Templates, texts,
//! the stylesheet and the script are compiled into the binary.

mod charts;
mod control;
mod oidc;
mod pages;
mod routes;
mod session;
mod signin;
mod texts;
mod verify;

use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use minijinja::Environment;
use serde::Serialize;

use crate::api::AppState;
use crate::problem::Problem;
pub use routes::router;

/// The purpose of every console page: accounting for processing.
pub const PURPOSE: &str = "verantwoording";

/// The console's Content-Security-Policy: its own script and stylesheet
/// only, no inline code, no frames.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
    connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// What the console's handlers share.
#[derive(Clone)]
pub struct Console(Arc<Inner>);

pub struct Inner {
    pub app: AppState,
    templates: Environment<'static>,
    texts: std::collections::BTreeMap<&'static str, &'static str>,
    providers: Vec<oidc::Provider>,
    /// `serve --demo`: the development sign-in exists.
    demo: bool,
}

impl std::ops::Deref for Console {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Console {
    pub fn new(app: AppState, demo: bool) -> anyhow::Result<Self> {
        let cfg = app.config.clone();
        let public_url = cfg.public_url();
        // The providers with a client id sign people in; the others are
        // trusted for API tokens only.
        let providers = cfg
            .auth
            .providers
            .iter()
            .filter(|p| p.client_id.is_some())
            .map(|p| oidc::Provider::from_config(p, &public_url))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self(Arc::new(Inner {
            app,
            templates: templates(),
            texts: texts::nl(),
            providers,
            demo,
        })))
    }

    /// Renders `name` with `ctx` (and the texts as `t`).
    fn render(&self, name: &str, ctx: minijinja::Value) -> Result<String, Problem> {
        let tmpl = self
            .templates
            .get_template(name)
            .map_err(|e| anyhow::anyhow!("template {name}: {e}"))?;
        let ctx = minijinja::context! { t => &self.texts, demo => self.demo, ..ctx };
        tmpl.render(ctx)
            .map_err(|e| Problem::from(anyhow::anyhow!("template {name}: {e}")))
    }

    fn text(&self, key: &str) -> &'static str {
        self.texts.get(key).copied().unwrap_or("")
    }

    /// A page: HTML under the console's security headers.
    fn page(&self, status: StatusCode, name: &str, ctx: minijinja::Value) -> Response {
        match self.render(name, ctx) {
            Ok(body) => page_response(status, body),
            Err(p) => self.error_page(&p),
        }
    }

    /// A problem as a page: its status and detail (never a personal value).
    fn error_page(&self, p: &Problem) -> Response {
        let status = p.status();
        let title = match status {
            StatusCode::FORBIDDEN => self.text("forbidden_title"),
            StatusCode::NOT_FOUND => self.text("not_found"),
            _ => self.text("error_title"),
        };
        let detail = if status.is_server_error() {
            String::new()
        } else {
            p.detail_text().to_owned()
        };
        let ctx = minijinja::context! { title, detail, status => status.as_u16() };
        match self.render("error.html", ctx) {
            Ok(body) => page_response(status, body),
            Err(_) => (status, "error").into_response(),
        }
    }

    /// A 403 page with one of the console's texts.
    fn forbidden(&self, text_key: &str) -> Response {
        let p = Problem::forbidden("console", self.text(text_key));
        self.error_page(&p)
    }
}

/// HTML with the console's headers: CSP, no caching (pages show log
/// content), no referrer.
pub(crate) fn page_response(status: StatusCode, body: String) -> Response {
    let mut res = (status, Html(body)).into_response();
    secure(&mut res);
    res
}

fn secure(res: &mut Response) {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// The templates, compiled into the binary.
fn templates() -> Environment<'static> {
    let mut env = Environment::new();
    for (name, source) in [
        ("base.html", include_str!("templates/base.html")),
        ("signin.html", include_str!("templates/signin.html")),
        ("continue.html", include_str!("templates/continue.html")),
        ("signed_out.html", include_str!("templates/signed_out.html")),
        ("error.html", include_str!("templates/error.html")),
        ("overview.html", include_str!("templates/overview.html")),
        ("search.html", include_str!("templates/search.html")),
        ("entry.html", include_str!("templates/entry.html")),
        ("subject.html", include_str!("templates/subject.html")),
        ("control.html", include_str!("templates/control.html")),
    ] {
        env.add_template(name, source)
            .unwrap_or_else(|e| panic!("console template {name}: {e}"));
    }
    env
}

/// A value for templates.
fn value<T: Serialize>(v: T) -> minijinja::Value {
    minijinja::Value::from_serialize(v)
}

/// Removes expired sessions (and abandoned sign-ins) every few minutes.
pub async fn purge_sessions(console: Console) {
    let cfg = console.app.config.console.clone();
    loop {
        let now = session::now_ms();
        let _ = console
            .app
            .db
            .purge_console_sessions(
                now - cfg.session_idle_secs as i64 * 1000,
                now - cfg.session_absolute_secs as i64 * 1000,
            )
            .await;
        tokio::time::sleep(std::time::Duration::from_secs(300)).await;
    }
}
