//! /v1/proxies: capacities, and the proxies' usage reports (own traffic and requests served
//! per buyer), which feed the forecast and the ledger.

use std::{collections::BTreeMap, sync::Arc};

use axum::{
    Extension, Json,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
};
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState, Principal, parse_json};
use crate::engine::unix_now;

#[derive(Debug, Serialize)]
pub struct ProxyView {
    pub name: String,
    pub capacity_rps: u64,
}

#[derive(Debug, Serialize)]
pub struct ProxyList {
    pub proxies: Vec<ProxyView>,
    pub total_capacity_rps: u64,
}

pub async fn list(State(state): State<Arc<AppState>>) -> Json<ProxyList> {
    state
        .with_engine(|engine| {
            let cap = &engine.capacity;
            Json(ProxyList {
                proxies: cap.proxies().iter().map(|(n, &c)| ProxyView { name: n.clone(), capacity_rps: c }).collect(),
                total_capacity_rps: cap.total_rps(),
            })
        })
        .await
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
    let view = state
        .with_engine(move |engine| {
            if engine.capacity.proxy(&name).is_none() {
                return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no proxy named {name:?}")));
            }
            engine.set_capacity(&name, req.capacity_rps, unix_now())?;
            tracing::info!(proxy = %name, capacity_rps = req.capacity_rps, "capacity set through the API");
            Ok(ProxyView { name, capacity_rps: req.capacity_rps })
        })
        .await?;
    state.market_changed.notify_one();
    Ok(Json(view))
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

fn record(engine: &mut crate::engine::Engine, name: &str, req: ReportRequest) -> Result<Json<ReportView>, ApiError> {
    if engine.capacity.proxy(name).is_none() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no proxy named {name:?}")));
    }
    if let Some(unknown) = req.served.keys().find(|c| engine.catalog.customer(c).is_none()) {
        return Err(ApiError::invalid(format!("served: no customer with id {unknown:?}")));
    }
    let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
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
