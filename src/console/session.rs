//! Console sessions, kept server-side (`console_sessions`): the cookie holds
//! a random id (`HttpOnly; Secure; SameSite=Strict`, `__Host-` prefixed),
//! the database only its SHA-256. A session ends after
//! `console.session_idle_secs` without a request, `session_absolute_secs`
//! after sign-in, or at sign-out. Every form carries the session's CSRF
//! token; a form without it changes nothing (403).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ring::rand::SecureRandom;

use super::Console;
use crate::auth::Principal;
use crate::crypto::UserRef;
use crate::request::RequestContext;
use crate::store::console::SessionRow;

/// The session cookie (SameSite=Strict).
pub const COOKIE: &str = "__Host-kp-console";
/// The cookie of a sign-in through an identity provider, which must come
/// back on the provider's redirect (SameSite=Lax, ten minutes).
pub const LOGIN_COOKIE: &str = "__Host-kp-login";
pub const SIGNIN_PATH: &str = "/console/aanmelden";
/// A session's last activity is written at most this often (ms).
pub const TOUCH_EVERY_MS: i64 = 60_000;

pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// 32 random bytes, base64url.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .expect("system randomness");
    B64URL.encode(b)
}

pub fn hash_id(id: &str) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, id.as_bytes()))
}

/// The value of cookie `name` in the request, if it has the shape of ours.
pub fn cookie(parts: &Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| {
            v.len() == 43
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

pub fn set_cookie(res: &mut Response, name: &str, value: &str, lax: bool) {
    let same_site = if lax { "Lax; Max-Age=600" } else { "Strict" };
    let v = format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite={same_site}");
    res.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_str(&v).expect("cookie is ASCII"),
    );
}

pub fn clear_cookie(res: &mut Response, name: &str) {
    let v = format!("{name}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0");
    res.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_str(&v).expect("cookie is ASCII"),
    );
}

/// Equal strings, compared in constant time.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Back to sign-in, the session cookie cleared: nothing is shown.
pub fn to_signin() -> Response {
    let mut res = Redirect::to(SIGNIN_PATH).into_response();
    clear_cookie(&mut res, COOKIE);
    res
}

/// A signed-in privacy officer.
pub struct Fg {
    pub principal: Principal,
    pub ctx: RequestContext,
    pub csrf: String,
    /// The identity provider the session was signed in through (none for
    /// the demo sign-in).
    pub provider: Option<String>,
    id_hash: String,
}

impl Fg {
    /// Whether a form's token is this session's.
    pub fn csrf_ok(&self, token: &str) -> bool {
        same(&self.csrf, token)
    }

    pub async fn sign_out(&self, console: &Console) -> Result<(), sqlx::Error> {
        console.app.db.delete_console_session(&self.id_hash).await
    }

    pub fn partner_name(&self) -> &str {
        &self.principal.partner.display_name
    }
}

impl FromRequestParts<Console> for Fg {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Self, Response> {
        let ctx = RequestContext::from_request_parts(parts, console)
            .await
            .map_err(|p| console.error_page(&p))?;
        let Some(id) = cookie(parts, COOKIE) else {
            return Err(to_signin());
        };
        let id_hash = hash_id(&id);
        let db = &console.app.db;
        let row = db
            .console_session(&id_hash)
            .await
            .map_err(|e| console.error_page(&e.into()))?;
        let cfg = &console.app.config.console;
        let now = now_ms();
        let Some(row) = row else {
            return Err(to_signin());
        };
        let expired = now - row.seen_ms > cfg.session_idle_secs as i64 * 1000
            || now - row.created_ms > cfg.session_absolute_secs as i64 * 1000;
        let (Some(partner), Some(role)) = (row.partner.clone(), row.role.clone()) else {
            return Err(to_signin());
        };
        if expired {
            let _ = db.delete_console_session(&id_hash).await;
            return Err(to_signin());
        }
        let partner = match db.partner(&partner).await {
            Ok(Some(p)) => p,
            Ok(None) => return Err(to_signin()),
            Err(e) => return Err(console.error_page(&e.into())),
        };
        // Checked at sign-in; again here, so a suspension ends the session.
        if role != "fg" || !partner.member || !partner.is_active() {
            let _ = db.delete_console_session(&id_hash).await;
            return Err(console.forbidden("forbidden_role"));
        }
        // A write per page view would be a database write for every read;
        // once a minute is precise enough for an idle timeout of minutes.
        if now - row.seen_ms >= TOUCH_EVERY_MS {
            db.touch_console_session(&id_hash, now, now - TOUCH_EVERY_MS + 1)
                .await
                .map_err(|e| console.error_page(&e.into()))?;
        }
        let user = row
            .user_ref
            .as_deref()
            .and_then(|u| serde_json::from_value::<UserRef>(serde_json::Value::from(u)).ok());
        Ok(Fg {
            principal: Principal {
                partner: Arc::new(partner),
                role,
                user,
            },
            ctx,
            csrf: row.csrf,
            provider: row.provider,
            id_hash,
        })
    }
}

/// A visitor before sign-in: its pre-session (for the CSRF token of the
/// sign-in forms), made on first visit.
pub struct Visitor {
    pub csrf: String,
    /// A new pre-session's cookie, to be set on the answer.
    pub new_id: Option<String>,
}

impl Visitor {
    pub async fn of(parts: &Parts, console: &Console) -> Result<Self, sqlx::Error> {
        let db = &console.app.db;
        if let Some(id) = cookie(parts, COOKIE)
            && let Some(row) = db.console_session(&hash_id(&id)).await?
            && now_ms() - row.created_ms
                < console.app.config.console.session_idle_secs as i64 * 1000
        {
            return Ok(Self {
                csrf: row.csrf,
                new_id: None,
            });
        }
        let id = random_token();
        let csrf = random_token();
        let now = now_ms();
        db.insert_console_session(
            &hash_id(&id),
            &SessionRow {
                partner: None,
                role: None,
                user_ref: None,
                provider: None,
                csrf: csrf.clone(),
                pending: None,
                created_ms: now,
                seen_ms: now,
            },
        )
        .await?;
        Ok(Self {
            csrf,
            new_id: Some(id),
        })
    }
}

/// Starts a signed-in session: a fresh id (never the pre-session's), the
/// cookie set on `res`.
pub async fn begin(
    console: &Console,
    principal: &Principal,
    provider: Option<&str>,
    res: &mut Response,
) -> Result<(), sqlx::Error> {
    let id = random_token();
    let now = now_ms();
    console
        .app
        .db
        .insert_console_session(
            &hash_id(&id),
            &SessionRow {
                partner: Some(principal.partner.id.clone()),
                role: Some(principal.role.clone()),
                user_ref: principal.user.as_ref().map(|u| u.as_str().to_owned()),
                provider: provider.map(str::to_owned),
                csrf: random_token(),
                pending: None,
                created_ms: now,
                seen_ms: now,
            },
        )
        .await?;
    set_cookie(res, COOKIE, &id, false);
    Ok(())
}

/// The answer to a form whose CSRF token is wrong: 403, nothing changed.
pub fn csrf_failed(console: &Console) -> Response {
    let mut res = console.forbidden("csrf_failed");
    *res.status_mut() = StatusCode::FORBIDDEN;
    res
}
