//! /v1/proxies: the fleet (added, changed, drained, removed at run time; config-file proxies
//! are drained and given capacity here, changed in the file), and the proxies' usage reports
//! (own traffic and requests served per buyer), which feed the forecast and the ledger.

use std::{collections::BTreeMap, net::IpAddr, sync::Arc};

use axum::{
    Extension, Json,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
};
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState, Principal, parse_json};
use crate::{
    config::{HealthCheck, MetricsMapping, ProxyConfig},
    engine::{Engine, unix_now_f64},
    fleet::{FleetProxy, Source, Status},
};

/// A proxy as the fleet has it: its entry, where it is defined, and whether the answers may
/// name it now.
#[derive(Debug, Serialize)]
pub struct ProxyView {
    pub name: String,
    pub addresses: Vec<IpAddr>,
    pub capacity_rps: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsMapping>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthCheck>,
    pub source: Source,
    pub drained: bool,
    pub status: Status,
    /// The health check's verdict (`None`: no check).
    pub check_up: Option<bool>,
    /// Own and buyers' requests/s by its last report (`None`: no rates yet).
    pub load_rps: Option<f64>,
}

impl ProxyView {
    fn of(p: &FleetProxy) -> Self {
        ProxyView {
            name: p.config.name.clone(),
            addresses: p.config.addresses.clone(),
            capacity_rps: p.config.capacity_rps,
            metrics_url: p.config.metrics_url.clone(),
            metrics: p.config.metrics.clone(),
            health: p.config.health.clone(),
            source: p.source,
            drained: p.drained,
            status: p.status,
            check_up: p.config.health.as_ref().map(|_| p.check.up()),
            load_rps: p.load_rps,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ProxyList {
    pub proxies: Vec<ProxyView>,
    pub total_capacity_rps: u64,
}

/// The fleet is the operator's business: its health URLs and metrics are internal.
pub async fn list(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
) -> Result<Json<ProxyList>, ApiError> {
    who.require_operator()?;
    Ok(state
        .with_engine(|engine| {
            Json(ProxyList {
                proxies: engine.fleet.proxies().iter().map(ProxyView::of).collect(),
                total_capacity_rps: engine.capacity.total_rps(),
            })
        })
        .await)
}

fn view(engine: &Engine, name: &str) -> Result<ProxyView, ApiError> {
    engine
        .fleet
        .get(name)
        .map(ProxyView::of)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no proxy named {name:?}")))
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Json<ProxyView>, ApiError> {
    who.require_operator()?;
    state.with_engine(move |engine| view(engine, &name).map(Json)).await
}

/// Body of PUT /v1/proxies/{name}: the whole entry but its name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyChange {
    pub addresses: Vec<IpAddr>,
    pub capacity_rps: u64,
    #[serde(default)]
    pub metrics_url: Option<String>,
    #[serde(default)]
    pub metrics: Option<MetricsMapping>,
    #[serde(default)]
    pub health: Option<HealthCheck>,
}

/// The bounds the API's document states are 400 (the rules it cannot state are the engine's
/// 422).
fn within_bounds(p: &ProxyConfig, name: bool) -> Result<(), ApiError> {
    let problems: Vec<String> =
        p.out_of_bounds().into_iter().filter(|(k, _)| name || k != "name").map(|(k, m)| format!("{k}: {m}")).collect();
    if problems.is_empty() { Ok(()) } else { Err(ApiError::bad_request(problems.join("; "))) }
}

/// Run a change of the fleet as the operator (in one engine step, with the time), and wake
/// the tasks that watch the proxies and the market (capacity may have changed).
async fn apply<T: Send + 'static>(
    state: &Arc<AppState>,
    who: &Principal,
    f: impl FnOnce(&mut Engine, f64) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    who.require_operator()?;
    let out = state.with_engine(move |engine| f(engine, unix_now_f64())).await?;
    state.proxies_changed.notify_one();
    state.market_changed.notify_one();
    Ok(out)
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Result<Json<ProxyView>, ApiError> {
    who.require_operator()?;
    let p: ProxyConfig = parse_json(&body)?;
    within_bounds(&p, true)?;
    apply(&state, &who, move |e, now| {
        let name = p.name.clone();
        e.add_proxy(p, now)?;
        view(e, &name).map(Json)
    })
    .await
}

pub async fn put(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<ProxyView>, ApiError> {
    who.require_operator()?;
    let c: ProxyChange = parse_json(&body)?;
    let p = ProxyConfig {
        name: name.clone(),
        addresses: c.addresses,
        capacity_rps: c.capacity_rps,
        metrics_url: c.metrics_url,
        metrics: c.metrics,
        health: c.health,
    };
    // The name is the path's: an unknown one is 404, not a bound of the body.
    within_bounds(&p, false)?;
    apply(&state, &who, move |e, now| {
        e.change_proxy(p, now)?;
        view(e, &name).map(Json)
    })
    .await
}

/// Removes an added proxy; answers with it as it was.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Json<ProxyView>, ApiError> {
    apply(&state, &who, move |e, now| {
        let before = view(e, &name)?;
        e.remove_proxy(&name, now)?;
        Ok(Json(before))
    })
    .await
}

async fn set_drained(
    state: Arc<AppState>,
    who: Principal,
    name: String,
    drained: bool,
) -> Result<Json<ProxyView>, ApiError> {
    apply(&state, &who, move |e, now| {
        e.set_drained(&name, drained, now)?;
        view(e, &name).map(Json)
    })
    .await
}

pub async fn drain(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Json<ProxyView>, ApiError> {
    set_drained(state, who, name, true).await
}

pub async fn undrain(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Json<ProxyView>, ApiError> {
    set_drained(state, who, name, false).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacityRequest {
    pub capacity_rps: u64,
}

pub async fn put_capacity(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<ProxyView>, ApiError> {
    who.require_operator()?;
    let req: CapacityRequest = parse_json(&body)?;
    if req.capacity_rps == 0 || req.capacity_rps > crate::market::MAX_RPS {
        return Err(ApiError::bad_request(format!(
            "capacity_rps {} must be between 1 and {}",
            req.capacity_rps,
            crate::market::MAX_RPS
        )));
    }
    apply(&state, &who, move |e, now| {
        e.set_capacity(&name, req.capacity_rps, now as i64)?;
        tracing::info!(proxy = %name, capacity_rps = req.capacity_rps, "capacity set through the API");
        view(e, &name).map(Json)
    })
    .await
}

/// Body of POST /v1/proxies/{name}/report: requests served since the proxy's last report.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportRequest {
    /// The network's own requests (not a buyer's).
    #[serde(default)]
    pub own_requests: u64,
    /// Requests served per buyer id.
    #[serde(default)]
    pub served: BTreeMap<String, u64>,
    /// Seconds the counts cover (default: the time since this proxy's previous report).
    pub interval_s: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct ReportView {
    pub proxy: String,
    pub at: i64,
    pub interval_start: i64,
    pub own_requests: u64,
    pub served: Vec<ServedView>,
}

#[derive(Debug, Serialize)]
pub struct ServedView {
    pub customer: String,
    pub requests: u64,
    pub uncontracted_requests: u64,
    pub charge_micros: u64,
}

pub async fn report(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<ReportView>, ApiError> {
    who.require_operator()?;
    let req: ReportRequest = parse_json(&body)?;
    state.with_engine(move |engine| record(engine, &name, req)).await
}

fn record(engine: &mut Engine, name: &str, req: ReportRequest) -> Result<Json<ReportView>, ApiError> {
    view(engine, name)?;
    if let Some(unknown) = req.served.keys().find(|c| engine.catalog.customer(c).is_none()) {
        return Err(ApiError::invalid(format!("served: no customer with id {unknown:?}")));
    }
    let at = crate::engine::unix_now_f64();
    let r = engine.record_report(name, req.own_requests, &req.served, req.interval_s, at)?;
    Ok(Json(ReportView {
        proxy: r.proxy,
        at: r.at,
        interval_start: r.interval_start,
        own_requests: r.own_requests,
        served: r
            .served
            .into_iter()
            .map(|s| ServedView {
                customer: s.customer,
                requests: s.requests,
                uncontracted_requests: s.uncontracted,
                charge_micros: s.charge_micros,
            })
            .collect(),
    }))
}
