//! The market endpoints: capacity per period, auctions and bids, the order book and orders.
//! Buyers see and change only their own bids and orders; the book's depth is public.

use std::sync::Arc;

use axum::{
    Extension, Json,
    body::Bytes,
    extract::{Path, Query, State},
};
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState, Principal, parse_json};
use crate::{
    engine::{Engine, unix_now},
    market::{
        AuctionRequest, Availability, Depth, MarketError, OrderRequest,
        book::{Side, Tif},
        units::Price,
    },
    store::{AuctionRow, BidRow, ContractRow, OrderRow},
};

pub(super) fn check_customer(engine: &Engine, id: &str) -> Result<(), ApiError> {
    if engine.catalog.customer(id).is_none() {
        return Err(MarketError::NotFound(format!("no customer with id {id:?}")).into());
    }
    Ok(())
}

/// Run a market change (on the engine's blocking thread), then put contracts that came into
/// force in the data plane and wake the scheduler for new deadlines.
pub(super) async fn change<T: Send + 'static>(
    state: &Arc<AppState>,
    f: impl FnOnce(&mut Engine, i64) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let out = state
        .with_engine(move |engine| {
            let now = unix_now();
            let out = f(engine, now)?;
            engine.sync_contracts(now, false)?;
            Ok::<T, ApiError>(out)
        })
        .await?;
    state.market_changed.notify_one();
    Ok(out)
}

/// A read of the engine, on its blocking thread.
pub(super) async fn read<T: Send + 'static>(
    state: &Arc<AppState>,
    f: impl FnOnce(&mut Engine) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    state.with_engine(f).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacityQuery {
    /// How many periods from the current one (default: the whole horizon).
    pub periods: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct CapacityView {
    pub period_s: i64,
    pub periods: Vec<Availability>,
}

pub async fn capacity(
    State(state): State<Arc<AppState>>,
    Query(q): Query<CapacityQuery>,
) -> Result<Json<CapacityView>, ApiError> {
    read(&state, move |engine| {
        let (market, _, cap) = engine.market()?;
        let now = unix_now();
        let n = q.periods.map_or(usize::MAX, |n| n as usize);
        let periods = market.periods(now).take(n).map(|p| market.availability(cap, p)).collect();
        Ok(Json(CapacityView { period_s: market.params().period_s, periods }))
    })
    .await
}

// --- auctions ----------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAuctionRequest {
    pub period_start: i64,
    pub closes_at: i64,
    /// Default: everything available in the period.
    pub quantity_rps: Option<u64>,
    /// Default: the market's reserve price.
    pub reserve_price: Option<Price>,
}

pub async fn open_auction(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Result<Json<AuctionRow>, ApiError> {
    who.require_operator()?;
    let req: OpenAuctionRequest = parse_json(&body)?;
    change(&state, move |engine, now| {
        let (market, store, cap) = engine.market()?;
        let req = AuctionRequest {
            period_start: req.period_start,
            closes_at: req.closes_at,
            quantity_rps: req.quantity_rps,
            reserve: req.reserve_price,
        };
        Ok(market.open_auction(store, cap, &req, now)?)
    })
    .await
    .map(Json)
}

#[derive(Debug, Serialize)]
pub struct AuctionList {
    pub auctions: Vec<AuctionRow>,
}

pub async fn list_auctions(State(state): State<Arc<AppState>>) -> Result<Json<AuctionList>, ApiError> {
    read(&state, |engine| {
        let (_, store, _) = engine.market()?;
        Ok(Json(AuctionList { auctions: store.auctions(false)? }))
    })
    .await
}

#[derive(Debug, Serialize)]
pub struct AuctionView {
    #[serde(flatten)]
    pub auction: AuctionRow,
    /// All bids for the operator; a buyer's own bids for a buyer.
    pub bids: Vec<BidRow>,
}

fn auction_view(engine: &mut Engine, id: i64, who: &Principal) -> Result<AuctionView, ApiError> {
    let (_, store, _) = engine.market()?;
    let auction = store.auction(id)?.ok_or_else(|| MarketError::NotFound(format!("no auction {id}")))?;
    let bids = store.bids(id, who.scope())?;
    Ok(AuctionView { auction, bids })
}

pub async fn get_auction(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<i64>,
) -> Result<Json<AuctionView>, ApiError> {
    read(&state, move |engine| Ok(Json(auction_view(engine, id, &who)?))).await
}

/// Close an auction now, before its `closes_at` (the operator's call).
pub async fn clear_auction(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<i64>,
) -> Result<Json<AuctionView>, ApiError> {
    who.require_operator()?;
    change(&state, move |engine, now| {
        let (market, store, cap) = engine.market()?;
        if store.auction(id)?.is_none() {
            return Err(MarketError::NotFound(format!("no auction {id}")).into());
        }
        market.clear_auction(store, cap, id, now)?;
        Ok(())
    })
    .await?;
    read(&state, move |engine| Ok(Json(auction_view(engine, id, &who)?))).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BidRequest {
    /// The buyer; a buyer's token may leave it out.
    pub customer: Option<String>,
    pub quantity_rps: u64,
    /// Per million requests.
    pub max_price: Price,
}

pub async fn place_bid(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<i64>,
    body: Bytes,
) -> Result<Json<BidRow>, ApiError> {
    let req: BidRequest = parse_json(&body)?;
    let customer = who.acting_for(req.customer.as_deref())?;
    change(&state, move |engine, now| {
        check_customer(engine, &customer)?;
        let (market, store, cap) = engine.market()?;
        let bid = crate::market::BidRequest {
            auction_id: id,
            customer,
            quantity_rps: req.quantity_rps,
            max_price: req.max_price,
        };
        Ok(market.place_bid(store, cap, &bid, now)?)
    })
    .await
    .map(Json)
}

#[derive(Debug, Serialize)]
pub struct BidList {
    pub bids: Vec<BidRow>,
}

pub async fn list_bids(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<i64>,
) -> Result<Json<BidList>, ApiError> {
    read(&state, move |engine| Ok(Json(BidList { bids: auction_view(engine, id, &who)?.bids }))).await
}

pub async fn withdraw_bid(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path((id, bid)): Path<(i64, i64)>,
) -> Result<Json<BidRow>, ApiError> {
    change(&state, move |engine, now| {
        let (market, store, _) = engine.market()?;
        // Another buyer's bid is "not found" in the same words as one that does not exist.
        let mine = |b: &crate::store::BidRow| who.scope().is_none_or(|s| s == b.customer);
        if store.bid(bid)?.is_none_or(|b| b.auction_id != id || !mine(&b)) {
            return Err(MarketError::NotFound(format!("no bid {bid} in auction {id}")).into());
        }
        Ok(market.withdraw_bid(store, bid, who.scope(), now)?)
    })
    .await
    .map(Json)
}

// --- the book ----------------------------------------------------------------------------

pub async fn book(State(state): State<Arc<AppState>>, Path(period): Path<i64>) -> Result<Json<Depth>, ApiError> {
    read(&state, move |engine| {
        let (market, _, _) = engine.market()?;
        market.check_period(period, unix_now())?;
        Ok(Json(market.depth(period)))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrderRequest {
    /// The buyer; a buyer's token may leave it out.
    pub customer: Option<String>,
    pub period_start: i64,
    /// Only `bid`: the network's asks come from the unused capacity.
    #[serde(default = "bid")]
    pub side: Side,
    pub quantity_rps: u64,
    /// Limit price per million requests.
    pub price: Price,
    #[serde(default)]
    pub tif: Tif,
}

fn bid() -> Side {
    Side::Bid
}

#[derive(Debug, Serialize)]
pub struct OrderResult {
    pub order: OrderRow,
    /// Contracts made by this order's fills.
    pub contracts: Vec<ContractRow>,
}

pub async fn place_order(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Result<Json<OrderResult>, ApiError> {
    let req: PlaceOrderRequest = parse_json(&body)?;
    if req.side == Side::Ask {
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "only bids are placed through the API: the network's asks follow its unused capacity",
        ));
    }
    let customer = who.acting_for(req.customer.as_deref())?;
    change(&state, move |engine, now| {
        check_customer(engine, &customer)?;
        let (market, store, cap) = engine.market()?;
        let r = OrderRequest {
            period_start: req.period_start,
            customer,
            price: req.price,
            quantity_rps: req.quantity_rps,
            tif: req.tif,
        };
        let (order, contracts) = market.place_order(store, cap, &r, now)?;
        Ok(OrderResult { order, contracts })
    })
    .await
    .map(Json)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceBlockRequest {
    /// The buyer; a buyer's token may leave it out.
    pub customer: Option<String>,
    /// The first period of the block.
    pub period_start: i64,
    /// How many consecutive periods.
    pub periods: u32,
    /// Requests/s in every period.
    pub quantity_rps: u64,
    /// Limit price per million requests, in every period.
    pub price: Price,
}

#[derive(Debug, Serialize)]
pub struct BlockResult {
    /// One filled order per period, in period order.
    pub orders: Vec<OrderRow>,
    /// The contracts they made, one per period.
    pub contracts: Vec<ContractRow>,
}

/// POST /v1/blocks: the same quantity at a limit price in consecutive periods, all or none.
pub async fn place_block(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Result<Json<BlockResult>, ApiError> {
    let req: PlaceBlockRequest = parse_json(&body)?;
    if req.periods == 0 {
        return Err(ApiError::bad_request("periods must be at least 1"));
    }
    let customer = who.acting_for(req.customer.as_deref())?;
    change(&state, move |engine, now| {
        check_customer(engine, &customer)?;
        let (market, store, cap) = engine.market()?;
        let r = OrderRequest {
            period_start: req.period_start,
            customer,
            price: req.price,
            quantity_rps: req.quantity_rps,
            tif: Tif::Ioc,
        };
        let (orders, contracts) = market.place_block(store, cap, &r, i64::from(req.periods), now)?;
        Ok(BlockResult { orders, contracts })
    })
    .await
    .map(Json)
}

#[derive(Debug, Serialize)]
pub struct OrderList {
    pub orders: Vec<OrderRow>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrdersQuery {
    /// Only open orders.
    #[serde(default)]
    pub open: bool,
}

pub async fn list_orders(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Query(q): Query<OrdersQuery>,
) -> Result<Json<OrderList>, ApiError> {
    read(&state, move |engine| {
        let (_, store, _) = engine.market()?;
        Ok(Json(OrderList { orders: store.orders(who.scope(), q.open)? }))
    })
    .await
}

pub async fn get_order(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<i64>,
) -> Result<Json<OrderRow>, ApiError> {
    read(&state, move |engine| {
        let (_, store, _) = engine.market()?;
        let o = store
            .order(id)?
            .filter(|o| who.scope().is_none_or(|s| s == o.owner))
            .ok_or_else(|| MarketError::NotFound(format!("no order {id}")))?;
        Ok(Json(o))
    })
    .await
}

pub async fn cancel_order(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<i64>,
) -> Result<Json<OrderRow>, ApiError> {
    change(&state, move |engine, now| {
        let (market, store, _) = engine.market()?;
        Ok(market.cancel_order(store, id, who.scope(), now)?)
    })
    .await
    .map(Json)
}
