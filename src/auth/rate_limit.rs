//! The per-partner request budget, taken after authentication: every
//! request of a partner, and every logged refusal under its name, draws on
//! its bucket (a stolen token cannot grow the log without bound).

use std::num::NonZeroU32;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::Principal;
use crate::problem::Problem;

/// Per-partner request budget (GCRA), per instance.
#[derive(Clone)]
pub struct RateLimit(Arc<DefaultKeyedRateLimiter<String>>);

impl RateLimit {
    pub fn new(per_second: u32, burst: u32) -> Self {
        let rate = NonZeroU32::new(per_second.max(1)).expect("non-zero");
        let burst = NonZeroU32::new(burst.max(per_second).max(1)).expect("non-zero");
        Self(Arc::new(RateLimiter::keyed(
            Quota::per_second(rate).allow_burst(burst),
        )))
    }

    /// Takes one request from the partner's bucket, or says when to retry.
    pub fn check(&self, partner: &str) -> Result<(), Problem> {
        self.0.check_key(&partner.to_owned()).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            metrics::counter!("ketenpoort_rate_limited_total").increment(1);
            Problem::too_many_requests(wait.as_secs_f64().ceil() as u64)
        })
    }
}

pub async fn rate_limit(
    State(limit): State<RateLimit>,
    req: Request<Body>,
    next: Next,
) -> Response {
    let Some(principal) = req.extensions().get::<Principal>() else {
        return Problem::unauthorized("token-missing").into_response();
    };
    match limit.check(&principal.partner.id) {
        Ok(()) => next.run(req).await,
        Err(problem) => problem.into_response(),
    }
}
