//! The control API (HTTP, JSON under /v1 with a bearer token) and the admin endpoints
//! (/metrics, /healthz, /readyz) on one listener.

mod auth;
mod customers;
mod error;

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, Ordering},
};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    middleware,
    response::IntoResponse,
    routing::get,
};

pub use self::error::ApiError;
use crate::{catalog::Catalog, dataplane::Dataplane, metrics::Metrics};

/// What the handlers share: the catalog and the data plane behind one lock, so a change is
/// applied to both or to neither.
pub struct AppState {
    pub engine: Mutex<Engine>,
    pub metrics: Metrics,
    pub token: String,
    pub ready: AtomicBool,
}

pub struct Engine {
    pub catalog: Catalog,
    pub dataplane: Option<Dataplane>,
}

impl AppState {
    pub fn new(catalog: Catalog, dataplane: Option<Dataplane>, token: String) -> Arc<Self> {
        Arc::new(Self {
            engine: Mutex::new(Engine { catalog, dataplane }),
            metrics: Metrics::new(),
            token,
            ready: AtomicBool::new(false),
        })
    }

    pub fn engine(&self) -> std::sync::MutexGuard<'_, Engine> {
        // A panic while holding the lock leaves the catalog and maps as they were written.
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    let v1 = Router::new()
        .route("/customers", get(customers::list))
        .route("/customers/{id}", get(customers::get))
        .route("/customers/{id}/fraction", axum::routing::put(customers::put_fraction))
        .fallback(not_found)
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_token));
    Router::new()
        .nest("/v1", v1)
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such endpoint")
}

async fn metrics(State(state): State<Arc<AppState>>) -> Result<impl IntoResponse, ApiError> {
    let engine = state.engine();
    let text = state
        .metrics
        .render(&engine.catalog, engine.dataplane.as_ref())
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text))
}

async fn readyz(State(state): State<Arc<AppState>>) -> (StatusCode, &'static str) {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}
