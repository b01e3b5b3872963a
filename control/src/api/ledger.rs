//! Contracts and usage (the ledger), JSON or CSV. Buyers see only their own.

use std::sync::Arc;

use axum::{
    Extension, Json,
    extract::{Query, State},
    http::header,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState, Principal};
use crate::store::{ContractRow, UsageRow};

#[derive(Debug, Serialize)]
pub struct ContractList {
    pub contracts: Vec<ContractRow>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContractsQuery {
    pub customer: Option<String>,
}

pub async fn contracts(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Query(q): Query<ContractsQuery>,
) -> Result<Json<ContractList>, ApiError> {
    let customer = scoped(&who, q.customer)?;
    let contracts = state.with_engine(move |engine| engine.store.contracts(customer.as_deref())).await?;
    Ok(Json(ContractList { contracts }))
}

/// The customer filter a request may use: a buyer only its own.
fn scoped(who: &Principal, asked: Option<String>) -> Result<Option<String>, ApiError> {
    match who.scope() {
        None => Ok(asked),
        Some(me) => who.acting_for(asked.as_deref().or(Some(me))).map(Some),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    pub customer: Option<String>,
    /// Interval starts >= from (unix seconds; default 0).
    pub from: Option<i64>,
    /// Interval starts < to (default: no end).
    pub to: Option<i64>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct UsageView {
    pub usage: Vec<UsageRow>,
    pub total_requests: u64,
    pub total_charge: f64,
    pub total_charge_micros: u64,
}

pub async fn usage(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Query(q): Query<UsageQuery>,
) -> Result<Response, ApiError> {
    let customer = scoped(&who, q.customer)?;
    let (from, to) = (q.from.unwrap_or(0), q.to.unwrap_or(i64::MAX));
    if from > to {
        return Err(ApiError::invalid(format!("from {from} is after to {to}")));
    }
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => return Err(ApiError::bad_request(format!("format {other:?}: use json or csv"))),
    };
    let rows = state.with_engine(move |engine| engine.store.usage(customer.as_deref(), from, to)).await?;
    if csv {
        let mut out = String::from("customer,interval_start,requests,uncontracted_requests,charge_micros,charge\n");
        for r in &rows {
            out.push_str(&format!(
                "{},{},{},{},{},{}\n",
                r.customer,
                r.interval_start,
                r.requests,
                r.uncontracted_requests,
                r.charge_micros,
                crate::market::units::Price(r.charge_micros)
            ));
        }
        return Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], out).into_response());
    }
    let total_charge_micros: u64 = rows.iter().map(|r| r.charge_micros).sum();
    Ok(Json(UsageView {
        total_requests: rows.iter().map(|r| r.requests).sum(),
        total_charge: total_charge_micros as f64 / crate::market::units::MICROS as f64,
        total_charge_micros,
        usage: rows,
    })
    .into_response())
}
