//! The control API (HTTP, JSON under /v1 with a bearer token) and the admin endpoints
//! (/metrics, /healthz, /readyz) on one listener. `openapi.json` documents /v1; a test
//! checks the router against it.

mod auth;
mod cluster;
pub(crate) mod customers;
mod error;
mod ledger;
pub mod limits;
mod market;
pub mod openapi;
mod proxies;
mod standing;
#[cfg(test)]
mod tests;

use std::sync::{
    Arc, Mutex, RwLock,
    atomic::{AtomicBool, Ordering},
};

use axum::{
    Router,
    extract::{DefaultBodyLimit, State},
    http::{StatusCode, header},
    middleware,
    response::IntoResponse,
    routing::{delete, get, post, put},
};
use tokio::sync::Notify;

pub use self::{
    auth::Principal,
    error::{ApiError, parse_json},
};
use crate::{
    dataplane::StatsReader,
    engine::Engine,
    metrics::{EngineView, Metrics},
    tokens::Tokens,
};

/// The OpenAPI document of /v1.
pub const OPENAPI: &str = include_str!("openapi.json");

/// What the handlers share: the engine behind one lock, so a change is applied to the
/// store, the market and the data plane together or not at all.
pub struct AppState {
    pub engine: Mutex<Engine>,
    pub metrics: Metrics,
    /// Every accepted token's digest and who it stands for (read by every request, changed
    /// under the engine's lock by those that add or rotate one).
    pub tokens: RwLock<Tokens>,
    pub ready: AtomicBool,
    /// Wakes the market scheduler when a change may move its next deadline.
    pub market_changed: Notify,
    /// The API changed the proxies: their watching tasks follow at once.
    pub proxies_changed: Notify,
    /// The data plane's counters, read without the engine's lock (`None`: XDP is off).
    pub stats: Option<StatsReader>,
    /// Requests in flight and buyers' write rates.
    pub limits: limits::Limits,
    /// This host's place in a cluster (`None`: one host does everything).
    pub cluster: Option<Arc<crate::cluster::ClusterStatus>>,
}

impl AppState {
    pub fn new(mut engine: Engine, cluster: Option<Arc<crate::cluster::ClusterStatus>>) -> Arc<Self> {
        let tokens = std::mem::take(&mut engine.tokens);
        let api = &engine.config.api;
        let limits = limits::Limits::new(api.write_rate, api.write_burst);
        let stats = engine.dataplane.as_ref().and_then(|dp| match dp.stats_reader() {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!("XDP counters will read 0 in /metrics: {e}");
                None
            }
        });
        Arc::new(Self {
            stats,
            limits,
            engine: Mutex::new(engine),
            metrics: Metrics::new(cluster.is_some()),
            cluster,
            tokens: RwLock::new(tokens),
            ready: AtomicBool::new(false),
            market_changed: Notify::new(),
            proxies_changed: Notify::new(),
        })
    }

    pub fn engine(&self) -> std::sync::MutexGuard<'_, Engine> {
        // A panic while holding the lock leaves the store, catalog and maps as they were written.
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run `f` on the engine on a blocking thread. Engine work waits for the lock and may
    /// wait for the store's fsync or a BPF syscall; on the blocking pool that never stalls the
    /// async workers that serve DNS and the API.
    pub async fn with_engine<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Engine) -> T + Send + 'static,
    ) -> T {
        let state = self.clone();
        match tokio::task::spawn_blocking(move || f(&mut state.engine())).await {
            Ok(v) => v,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // The runtime is shutting down and dropped the task: so does this caller's.
            Err(_) => std::future::pending().await,
        }
    }
}

impl AppState {
    /// This host runs the market, the controller and takes writes: one host, or the elected
    /// control replica of a cluster.
    pub fn leads(&self) -> bool {
        self.cluster.as_ref().is_none_or(|c| c.leads())
    }

    /// Elected with `term`: take the term in the store (every older term's write fails from
    /// then on), then build the engine's memory and tokens from what the store holds.
    pub async fn promote(self: &Arc<Self>, term: i64, holder: String) -> crate::Result<()> {
        let taken =
            self.reload_from_store(move |e, now| Ok(e.store.take_term(term, &holder, now).map(|()| true)?)).await;
        if taken.is_err() {
            self.step_down().await;
        }
        taken
    }

    /// Build the engine's memory and the tokens again from the store, when `first` says so
    /// (true); on failure the engine is as it was.
    async fn reload_from_store(
        self: &Arc<Self>,
        first: impl FnOnce(&mut Engine, i64) -> crate::Result<bool> + Send + 'static,
    ) -> crate::Result<()> {
        let tokens = self
            .with_engine(move |e| -> crate::Result<_> {
                let now = crate::engine::unix_now();
                if !first(e, now)? {
                    return Ok(None);
                }
                e.reload(now)?;
                Ok(Some(std::mem::take(&mut e.tokens)))
            })
            .await?;
        if let Some(t) = tokens {
            *self.tokens.write().unwrap_or_else(|e| e.into_inner()) = t;
        }
        Ok(())
    }

    /// No longer the leader: the store takes no write from this replica.
    pub async fn step_down(self: &Arc<Self>) {
        self.with_engine(|e| e.store.set_fence(crate::store::Fence::Follower)).await;
    }

    /// The store still names `term` as the leader's (a write of this replica's failed when
    /// it did not, and fenced it off).
    pub async fn holds_term(self: &Arc<Self>, term: i64) -> bool {
        self.with_engine(move |e| e.store.fence() == crate::store::Fence::Leader(term)).await
    }

    /// A follower: its memory read again from the store, so its answers to reads follow the
    /// leader's writes.
    pub async fn refresh(self: &Arc<Self>) {
        let follower = |e: &mut Engine, _| Ok(e.store.fence() == crate::store::Fence::Follower);
        if let Err(err) = self.reload_from_store(follower).await {
            tracing::warn!("a follower reading the store again: {err}");
        }
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    let v1 = Router::new()
        .route("/session", get(auth::session))
        .route("/customers", get(customers::list).post(customers::create))
        .route("/customers/{id}", get(customers::get))
        .route("/customers/{id}/names", put(customers::put_names))
        .route("/customers/{id}/fraction", put(customers::put_fraction))
        .route("/customers/{id}/resolvers", get(customers::resolvers))
        .route("/customers/{id}/history", get(customers::history))
        .route("/customers/{id}/history/chart", get(crate::ui::history_chart))
        .route("/customers/{id}/settings", put(customers::put_settings).delete(customers::delete_settings))
        .route("/customers/{id}/token", put(customers::put_token))
        .route("/proxies", get(proxies::list).post(proxies::create))
        .route("/proxies/{name}", get(proxies::get).put(proxies::put).delete(proxies::delete))
        .route("/proxies/{name}/drain", post(proxies::drain))
        .route("/proxies/{name}/undrain", post(proxies::undrain))
        .route("/proxies/{name}/capacity", put(proxies::put_capacity))
        .route("/proxies/{name}/report", post(proxies::report))
        .route("/capacity", get(market::capacity))
        .route("/auctions", get(market::list_auctions).post(market::open_auction))
        .route("/auctions/{id}", get(market::get_auction))
        .route("/auctions/{id}/clear", post(market::clear_auction))
        .route("/auctions/{id}/bids", get(market::list_bids).post(market::place_bid))
        .route("/auctions/{id}/bids/{bid}", delete(market::withdraw_bid))
        .route("/book/{period_start}", get(market::book))
        .route("/orders", get(market::list_orders).post(market::place_order))
        .route("/orders/{id}", get(market::get_order).delete(market::cancel_order))
        .route("/blocks", post(market::place_block))
        .route("/standing-orders", get(standing::list).post(standing::place))
        .route("/standing-orders/{id}", get(standing::get))
        .route("/standing-orders/{id}/cancel", post(standing::cancel))
        .route("/contracts", get(ledger::contracts))
        .route("/usage", get(ledger::usage))
        .route("/cluster", get(cluster::status))
        .route_layer(middleware::from_fn_with_state(state.clone(), cluster::writes))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_token))
        // The document is public: it describes the API, it holds nothing of anyone's.
        .route("/openapi.json", get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }))
        .fallback(not_found);
    Router::new()
        .nest("/v1", v1)
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/cluster/answers", get(cluster::answers))
        .merge(crate::ui::routes())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limits::MAX_BODY))
        .layer(middleware::from_fn_with_state(state.clone(), limits::guard))
        .layer(middleware::from_fn(limits::json_errors))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such endpoint")
}

/// The engine's part is copied under its lock in one short step; the per-CPU counters are read
/// after, through handles of their own, so a scrape holds up neither DNS nor the API.
async fn metrics(State(state): State<Arc<AppState>>) -> Result<impl IntoResponse, ApiError> {
    let view = state.with_engine(|engine| EngineView::of(engine)).await;
    let st = state.clone();
    let text = tokio::task::spawn_blocking(move || st.metrics.render(&view, st.stats.as_ref(), st.cluster.as_deref()))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text))
}

/// Ready once the listeners are up. A cluster's host that answers from state etcd has not
/// confirmed lately, or a control host that cannot reach etcd, stays ready (it keeps
/// answering: fail-static) and says it is degraded, and why.
async fn readyz(State(state): State<Arc<AppState>>) -> (StatusCode, String) {
    if !state.ready.load(Ordering::Acquire) {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".into());
    }
    match state.cluster.as_ref().and_then(|c| c.degraded()) {
        Some(why) => (StatusCode::OK, format!("degraded: {why}\n")),
        None => (StatusCode::OK, "ready\n".into()),
    }
}
