//! /v1/standing-orders: a buyer's bid placed by the market in every new period (see
//! `market::standing`). Buyers see and cancel only their own.

use std::sync::Arc;

use axum::{
    Extension, Json,
    body::Bytes,
    extract::{Path, Query, State},
};
use serde::{Deserialize, Serialize};

use super::{
    ApiError, AppState, Principal,
    market::{change, check_customer, read},
    parse_json,
};
use crate::{
    market::{MarketError, standing::StandingRequest, units::Price},
    store::StandingRow,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceStandingRequest {
    /// The buyer; a buyer's token may leave it out.
    pub customer: Option<String>,
    /// Requests/s to bid for in each period.
    pub quantity_rps: u64,
    /// Limit price per million requests.
    pub price: Price,
    /// The first period (open for sale now, or the next to open); default the next to open.
    pub period_start: Option<i64>,
}

pub async fn place(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Result<Json<StandingRow>, ApiError> {
    let req: PlaceStandingRequest = parse_json(&body)?;
    let customer = who.acting_for(req.customer.as_deref())?;
    change(&state, move |engine, now| {
        check_customer(engine, &customer)?;
        let (market, store, cap) = engine.market()?;
        let r = StandingRequest {
            customer,
            quantity_rps: req.quantity_rps,
            price: req.price,
            period_start: req.period_start,
        };
        Ok(market.place_standing(store, cap, &r, now)?)
    })
    .await
    .map(Json)
}

#[derive(Debug, Serialize)]
pub struct StandingList {
    pub standing_orders: Vec<StandingRow>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandingQuery {
    /// Only active ones.
    #[serde(default)]
    pub active: bool,
}

pub async fn list(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Query(q): Query<StandingQuery>,
) -> Result<Json<StandingList>, ApiError> {
    read(&state, move |engine| {
        let (_, store, _) = engine.market()?;
        Ok(Json(StandingList { standing_orders: store.standing_orders(who.scope(), q.active)? }))
    })
    .await
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<i64>,
) -> Result<Json<StandingRow>, ApiError> {
    read(&state, move |engine| {
        let (_, store, _) = engine.market()?;
        let s = store
            .standing(id)?
            .filter(|s| who.scope().is_none_or(|me| me == s.customer))
            .ok_or_else(|| MarketError::NotFound(format!("no standing order {id}")))?;
        Ok(Json(s))
    })
    .await
}

pub async fn cancel(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<i64>,
) -> Result<Json<StandingRow>, ApiError> {
    change(&state, move |engine, now| {
        let (market, store, _) = engine.market()?;
        Ok(market.cancel_standing(store, id, who.scope(), now)?)
    })
    .await
    .map(Json)
}
