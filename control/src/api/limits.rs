//! What one client can take of the API, so that none starves the others: a body size, a time
//! per request, a number of requests in flight, and a rate of writes per buyer token (429 with
//! Retry-After). And every error is JSON, whoever made it (axum's own rejections included).

use std::{num::NonZeroU32, sync::Arc, time::Duration};

use axum::{
    body::to_bytes,
    extract::{Request, State},
    http::{Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock as _};
use tokio::sync::Semaphore;

use super::{ApiError, AppState};
use crate::tokens::Principal;

/// Largest request body accepted (413 above it).
pub const MAX_BODY: usize = 64 << 10;
/// A request that takes longer is answered 503 (its engine step, if it began, still completes).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests served at once; more are answered 503 at once rather than queued.
pub const MAX_IN_FLIGHT: usize = 256;

pub struct Limits {
    in_flight: Arc<Semaphore>,
    writes: DefaultKeyedRateLimiter<String>,
}

impl Limits {
    /// `rate` writes per second per buyer token, bursts of `burst`.
    pub fn new(rate: NonZeroU32, burst: NonZeroU32) -> Self {
        Self {
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            writes: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
        }
    }

    /// A buyer's write (anything but GET) within its rate, or 429 with the seconds to wait.
    /// The operator's token is not limited: it is the network's own.
    pub fn check_write(&self, who: &Principal, method: &Method) -> Result<(), ApiError> {
        let Principal::Buyer(id) = who else { return Ok(()) };
        if *method == Method::GET {
            return Ok(());
        }
        self.writes.check_key(id).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("too many writes from this token: retry in {secs} s"),
            );
            e.retry_after = Some(secs);
            e
        })
    }
}

/// Requests in flight and the time per request.
pub async fn guard(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let Ok(_permit) = state.limits.in_flight.clone().try_acquire_owned() else {
        let mut e = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "too many requests in flight");
        e.retry_after = Some(1);
        return e.into_response();
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the request took longer than {} s", REQUEST_TIMEOUT.as_secs()),
        )
        .into_response(),
    }
}

/// Every error answers `{"error": "..."}`: a 4xx or 5xx that is not JSON (a rejection from an
/// extractor, a body too large) gets its text wrapped.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if status.as_u16() < 400 || is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = to_bytes(body, 4096).await.map(|b| String::from_utf8_lossy(&b).trim().to_owned()).unwrap_or_default();
    let message = if text.is_empty() { status.canonical_reason().unwrap_or("error").to_owned() } else { text };
    let mut out = ApiError::new(status, message).into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}
