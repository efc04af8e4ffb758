//! Signing in and out: the page that lists the partners' identity
//! providers (and, with `serve --demo` only, the demo FGs), the OpenID
//! Connect round trip, and admission: only role `fg` of an active covenant
//! member enters; anyone else gets a 403 page and a logged refusal.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::session::{self, Fg, Visitor};
use super::{Console, PURPOSE, oidc, value};
use crate::api::purpose::Exchange;
use crate::auth::Principal;
use crate::policy::{Action, Decision};
use crate::request::RequestContext;
use crate::store::console::SessionRow;

/// The sign-in page.
pub async fn page(State(c): State<Console>, parts: Parts) -> Response {
    let visitor = match Visitor::of(&parts, &c).await {
        Ok(v) => v,
        Err(e) => return c.error_page(&e.into()),
    };
    let providers: Vec<_> = c
        .providers
        .iter()
        .map(|p| serde_json::json!({"id": p.cfg.id, "name": p.name()}))
        .collect();
    let demo_fgs = if c.demo {
        match c.app.db.partners().await {
            Ok(list) => list
                .into_iter()
                .filter(|p| p.roles.iter().any(|r| r == "fg"))
                .map(
                    |p| serde_json::json!({"id": p.id, "name": p.display_name, "member": p.member}),
                )
                .collect(),
            Err(e) => return c.error_page(&e.into()),
        }
    } else {
        Vec::new()
    };
    let failed = parts.uri.query().is_some_and(|q| q.contains("mislukt"));
    let mut res = c.page(
        StatusCode::OK,
        "signin.html",
        minijinja::context! {
            title => c.text("signin_title"),
            providers => value(providers),
            demo_fgs => value(demo_fgs),
            csrf => visitor.csrf,
            failed,
        },
    );
    if let Some(id) = visitor.new_id {
        session::set_cookie(&mut res, session::COOKIE, &id, false);
    }
    res
}

#[derive(Deserialize)]
pub struct DemoForm {
    partner: String,
    csrf: String,
}

/// `serve --demo` only: signs in as the FG of a demo partner.
pub async fn demo(State(c): State<Console>, parts: Parts, Form(f): Form<DemoForm>) -> Response {
    if !c.demo {
        return c.error_page(&crate::problem::Problem::not_found());
    }
    let Ok(visitor) = Visitor::of(&parts, &c).await else {
        return session::to_signin();
    };
    if visitor.new_id.is_some() || !session::same(&visitor.csrf, &f.csrf) {
        return session::csrf_failed(&c);
    }
    let ctx = match parts.extensions.get::<RequestContext>().cloned() {
        Some(ctx) => ctx,
        None => return c.error_page(&crate::problem::Problem::internal()),
    };
    admit(
        &c,
        ctx,
        &f.partner,
        "fg",
        &format!("demo-fg@{}", f.partner),
        None,
    )
    .await
}

/// Admits a signed-in identity: an active covenant member's `fg` gets a
/// session; anyone else a 403 page, the refusal logged under their partner
/// and role.
async fn admit(
    c: &Console,
    ctx: RequestContext,
    partner: &str,
    role: &str,
    subject: &str,
    provider: Option<&str>,
) -> Response {
    let partner = match c.app.db.partner(partner).await {
        Ok(Some(p)) if p.is_active() => p,
        Ok(_) => return c.forbidden("forbidden_role"),
        Err(e) => return c.error_page(&e.into()),
    };
    let user = c.app.pseudonyms.user_ref(&partner.id, subject);
    let principal = Principal {
        partner: std::sync::Arc::new(partner),
        role: role.to_owned(),
        user: Some(user),
    };
    if role != "fg" || !principal.partner.member {
        let exchange = Exchange::signed_in(c.app.clone(), ctx, principal, PURPOSE);
        let refused = Decision::deny("console-fg-only", &exchange.policy_revision());
        if let Err(p) = exchange
            .log_refusal(Action::AuditQuery, &refused, vec!["route:/console".into()])
            .await
        {
            return c.error_page(&p);
        }
        return c.forbidden("forbidden_role");
    }
    let mut res = Redirect::to("/console/").into_response();
    if let Err(e) = session::begin(c, &principal, provider, &mut res).await {
        return c.error_page(&e.into());
    }
    res
}

/// Starts a sign-in through provider `id`: a pending sign-in kept
/// server-side (its cookie is SameSite=Lax: it must come back on the
/// provider's redirect), then off to the provider.
pub async fn start(State(c): State<Console>, Path(id): Path<String>) -> Response {
    let Some(provider) = c.providers.iter().find(|p| p.cfg.id == id) else {
        return c.error_page(&crate::problem::Problem::not_found());
    };
    let (url, pending) = match provider.start().await {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(provider = %provider.cfg.id, error = %e, "console sign-in could not start");
            return Redirect::to("/console/aanmelden?mislukt").into_response();
        }
    };
    let login = session::random_token();
    let now = session::now_ms();
    let row = SessionRow {
        partner: None,
        role: None,
        user_ref: None,
        provider: Some(provider.cfg.id.clone()),
        csrf: session::random_token(),
        pending: Some(serde_json::to_string(&pending).expect("pending sign-in serialises")),
        created_ms: now,
        seen_ms: now,
    };
    if let Err(e) = c
        .app
        .db
        .insert_console_session(&session::hash_id(&login), &row)
        .await
    {
        return c.error_page(&e.into());
    }
    let mut res = Redirect::to(&url).into_response();
    session::set_cookie(&mut res, session::LOGIN_COOKIE, &login, true);
    res
}

#[derive(Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
}

/// The provider's redirect back: the state must be the pending sign-in's,
/// the code is exchanged and the ID token verified, then the identity is
/// admitted. The page that follows is reached by a navigation of the
/// console's own (so the SameSite=Strict session cookie is sent).
pub async fn callback(
    State(c): State<Console>,
    parts: Parts,
    Query(cb): Query<Callback>,
) -> Response {
    let failed = || {
        let mut res = Redirect::to("/console/aanmelden?mislukt").into_response();
        session::clear_cookie(&mut res, session::LOGIN_COOKIE);
        res
    };
    let Some(login) = session::cookie(&parts, session::LOGIN_COOKIE) else {
        return failed();
    };
    let login_hash = session::hash_id(&login);
    let row = match c.app.db.console_session(&login_hash).await {
        Ok(Some(r)) => r,
        Ok(None) => return failed(),
        Err(e) => return c.error_page(&e.into()),
    };
    // One use only.
    let _ = c.app.db.delete_console_session(&login_hash).await;
    let Some(pending) = row
        .pending
        .as_deref()
        .and_then(|p| serde_json::from_str::<oidc::Pending>(p).ok())
    else {
        return failed();
    };
    let fresh = session::now_ms() - row.created_ms < 600_000;
    let (Some(code), Some(state)) = (cb.code, cb.state) else {
        return failed();
    };
    if !fresh || !session::same(&state, &pending.state) {
        return failed();
    }
    let Some(provider) = c.providers.iter().find(|p| p.cfg.id == pending.provider) else {
        return failed();
    };
    let identity = match provider.finish(&code, &pending).await {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(provider = %provider.cfg.id, error = %e, "console sign-in refused");
            return failed();
        }
    };
    let Some(ctx) = parts.extensions.get::<RequestContext>().cloned() else {
        return c.error_page(&crate::problem::Problem::internal());
    };
    let res = admit(
        &c,
        ctx,
        &identity.partner,
        &identity.role,
        &identity.subject,
        Some(&provider.cfg.id),
    )
    .await;
    if !res.status().is_redirection() {
        return res;
    }
    // Signed in: continue by a page of our own instead of the redirect.
    let mut page = c.page(
        StatusCode::OK,
        "continue.html",
        minijinja::context! { title => c.text("signin_title") },
    );
    for v in res.headers().get_all(axum::http::header::SET_COOKIE) {
        page.headers_mut()
            .append(axum::http::header::SET_COOKIE, v.clone());
    }
    session::clear_cookie(&mut page, session::LOGIN_COOKIE);
    page
}

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

/// Signs out: the session is deleted; then, for a session signed in
/// through a provider that offers RP-initiated logout, on to the provider's
/// `end_session_endpoint` to end the session there too. That step is a page
/// of our own (a refresh and a link), not a redirect: the console's CSP
/// (`form-action 'self'`) rightly stops a form's redirect to another site.
pub async fn sign_out(State(c): State<Console>, fg: Fg, Form(f): Form<CsrfForm>) -> Response {
    if !fg.csrf_ok(&f.csrf) {
        return session::csrf_failed(&c);
    }
    if let Err(e) = fg.sign_out(&c).await {
        return c.error_page(&e.into());
    }
    let provider = fg
        .provider
        .as_deref()
        .and_then(|id| c.providers.iter().find(|p| p.cfg.id == id));
    let end_session = match provider {
        Some(p) => p.end_session_url().await,
        None => None,
    };
    let Some(url) = end_session else {
        return session::to_signin();
    };
    let mut page = c.page(
        StatusCode::OK,
        "signed_out.html",
        minijinja::context! {
            title => c.text("signed_out_title"),
            end_session => url,
            provider => provider.map(|p| p.name().to_owned()),
        },
    );
    session::clear_cookie(&mut page, session::COOKIE);
    page
}
