//! What the store reads and writes. The read rows are also what the API returns.

use serde::Serialize;

use super::{Row, StoreResult};

/// A row type with its table's SELECT (every column, in `from_row`'s order).
pub(super) trait FromRow: Sized {
    const SELECT: &str;
    fn from_row(r: &Row) -> StoreResult<Self>;
}

use crate::market::{
    book::{Side, Tif},
    units::Price,
};

fn price(micros: Option<i64>) -> Option<Price> {
    micros.map(|m| Price(m as u64))
}

#[derive(Debug, Clone, Serialize)]
pub struct AuctionRow {
    pub id: i64,
    pub period_start: i64,
    pub period_end: i64,
    pub closes_at: i64,
    /// Requests/s offered.
    pub quantity_rps: u64,
    pub reserve_price: Price,
    /// `open` or `cleared`.
    pub state: String,
    pub clearing_price: Option<Price>,
    pub sold_rps: Option<u64>,
    pub created_at: i64,
    pub cleared_at: Option<i64>,
}

impl FromRow for AuctionRow {
    const SELECT: &str = "SELECT id, period_start, period_end, closes_at, quantity_rps, reserve_micros, \
        state, clearing_price_micros, sold_rps, created_at, cleared_at FROM auctions";

    fn from_row(r: &Row) -> StoreResult<Self> {
        Ok(Self {
            id: r.get(0)?,
            period_start: r.get(1)?,
            period_end: r.get(2)?,
            closes_at: r.get(3)?,
            quantity_rps: r.get::<i64>(4)? as u64,
            reserve_price: Price(r.get::<i64>(5)? as u64),
            state: r.get(6)?,
            clearing_price: price(r.get(7)?),
            sold_rps: r.get::<Option<i64>>(8)?.map(|v| v as u64),
            created_at: r.get(9)?,
            cleared_at: r.get(10)?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct NewAuction {
    pub period_start: i64,
    pub period_end: i64,
    pub closes_at: i64,
    pub quantity_rps: u64,
    pub reserve: Price,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BidRow {
    pub id: i64,
    pub auction_id: i64,
    pub customer: String,
    pub quantity_rps: u64,
    pub max_price: Price,
    pub submitted_at: i64,
    /// `open`, `won`, `partial`, `lost` or `withdrawn`.
    pub state: String,
    pub filled_rps: u64,
    /// The clearing price paid, for a bid that won something.
    pub price: Option<Price>,
    /// Why the bid won, lost or was filled in part.
    pub reason: Option<String>,
}

impl FromRow for BidRow {
    const SELECT: &str = "SELECT id, auction_id, customer, quantity_rps, max_price_micros, submitted_at, \
        state, filled_rps, price_micros, reason FROM bids";

    fn from_row(r: &Row) -> StoreResult<Self> {
        Ok(Self {
            id: r.get(0)?,
            auction_id: r.get(1)?,
            customer: r.get(2)?,
            quantity_rps: r.get::<i64>(3)? as u64,
            max_price: Price(r.get::<i64>(4)? as u64),
            submitted_at: r.get(5)?,
            state: r.get(6)?,
            filled_rps: r.get::<i64>(7)? as u64,
            price: price(r.get(8)?),
            reason: r.get(9)?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct AwardRecord {
    pub bid_id: i64,
    pub state: &'static str,
    pub filled: u64,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct AuctionSettlement {
    pub auction_id: i64,
    pub price: Price,
    pub sold: u64,
    pub at: i64,
    pub awards: Vec<AwardRecord>,
    pub contracts: Vec<NewContract>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OrderRow {
    pub id: i64,
    pub period_start: i64,
    pub period_end: i64,
    pub side: Side,
    /// The buyer's id, or `network` for the network's asks.
    pub owner: String,
    pub price: Price,
    pub quantity_rps: u64,
    pub remaining_rps: u64,
    pub tif: Tif,
    /// `open`, `filled`, `cancelled` or `expired`.
    pub state: String,
    pub created_at: i64,
    pub closed_at: Option<i64>,
}

impl FromRow for OrderRow {
    const SELECT: &str = "SELECT id, period_start, period_end, side, owner, price_micros, quantity_rps, \
        remaining_rps, tif, state, created_at, closed_at FROM orders";

    fn from_row(r: &Row) -> StoreResult<Self> {
        let side: String = r.get(3)?;
        let tif: String = r.get(8)?;
        Ok(Self {
            id: r.get(0)?,
            period_start: r.get(1)?,
            period_end: r.get(2)?,
            side: if side == "ask" { Side::Ask } else { Side::Bid },
            owner: r.get(4)?,
            price: Price(r.get::<i64>(5)? as u64),
            quantity_rps: r.get::<i64>(6)? as u64,
            remaining_rps: r.get::<i64>(7)? as u64,
            tif: if tif == "ioc" { Tif::Ioc } else { Tif::Gtc },
            state: r.get(9)?,
            created_at: r.get(10)?,
            closed_at: r.get(11)?,
        })
    }
}

/// A change to an order already in the store.
#[derive(Debug, Clone)]
pub struct OrderUpdate {
    pub id: i64,
    pub remaining_rps: u64,
    pub state: &'static str,
    pub closed_at: Option<i64>,
}

/// One book operation, written in one transaction.
#[derive(Debug, Clone, Default)]
pub struct BookChange {
    pub inserted: Vec<OrderRow>,
    pub updated: Vec<OrderUpdate>,
    pub contracts: Vec<NewContract>,
    /// Standing orders that placed a bid of `inserted` (so a bid is placed once).
    pub standing: Vec<StandingUpdate>,
}

/// A standing order: a buyer's bid of `quantity_rps` at `price` placed in every period as it
/// opens for sale, until cancelled.
#[derive(Debug, Clone, Serialize)]
pub struct StandingRow {
    pub id: i64,
    pub customer: String,
    pub quantity_rps: u64,
    pub price: Price,
    /// `active` or `cancelled`.
    pub state: String,
    /// The next period it places a bid in.
    pub next_period: i64,
    /// Bids placed so far.
    pub placed: u64,
    pub last_order_id: Option<i64>,
    /// Why the last period it came to got no bid, if it did not.
    pub last_error: Option<String>,
    pub created_at: i64,
    pub cancelled_at: Option<i64>,
}

impl FromRow for StandingRow {
    const SELECT: &str = "SELECT id, customer, quantity_rps, price_micros, state, next_period, placed, \
        last_order_id, last_error, created_at, cancelled_at FROM standing_orders";

    fn from_row(r: &Row) -> StoreResult<Self> {
        Ok(Self {
            id: r.get(0)?,
            customer: r.get(1)?,
            quantity_rps: r.get::<i64>(2)? as u64,
            price: Price(r.get::<i64>(3)? as u64),
            state: r.get(4)?,
            next_period: r.get(5)?,
            placed: r.get::<i64>(6)? as u64,
            last_order_id: r.get(7)?,
            last_error: r.get(8)?,
            created_at: r.get(9)?,
            cancelled_at: r.get(10)?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct NewStanding {
    pub customer: String,
    pub quantity_rps: u64,
    pub price: Price,
    pub next_period: i64,
    pub created_at: i64,
}

/// A standing order's progress after a period.
#[derive(Debug, Clone)]
pub struct StandingUpdate {
    pub id: i64,
    pub next_period: i64,
    pub placed: u64,
    pub last_order_id: Option<i64>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ContractRow {
    pub id: i64,
    pub customer: String,
    /// The period [period_start, period_end), unix seconds.
    pub period_start: i64,
    pub period_end: i64,
    pub rps: u64,
    /// Per million requests served.
    pub price: Price,
    /// `auction` or `book`.
    pub source: String,
    pub auction_id: Option<i64>,
    pub bid_id: Option<i64>,
    pub ask_id: Option<i64>,
    pub created_at: i64,
    pub activated_at: Option<i64>,
    pub ended_at: Option<i64>,
}

impl FromRow for ContractRow {
    const SELECT: &str = "SELECT id, customer, period_start, period_end, rps, price_micros, source, \
        auction_id, bid_id, ask_id, created_at, activated_at, ended_at FROM contracts";

    fn from_row(r: &Row) -> StoreResult<Self> {
        Ok(Self {
            id: r.get(0)?,
            customer: r.get(1)?,
            period_start: r.get(2)?,
            period_end: r.get(3)?,
            rps: r.get::<i64>(4)? as u64,
            price: Price(r.get::<i64>(5)? as u64),
            source: r.get(6)?,
            auction_id: r.get(7)?,
            bid_id: r.get(8)?,
            ask_id: r.get(9)?,
            created_at: r.get(10)?,
            activated_at: r.get(11)?,
            ended_at: r.get(12)?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct NewContract {
    pub customer: String,
    pub period_start: i64,
    pub period_end: i64,
    pub rps: u64,
    pub price: Price,
    pub source: &'static str,
    pub auction_id: Option<i64>,
    pub bid_id: Option<i64>,
    pub ask_id: Option<i64>,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct UsageRow {
    pub customer: String,
    pub interval_start: i64,
    /// Requests the proxies served for the buyer in the interval.
    pub requests: u64,
    /// Of those, requests served with no contract in force (not charged).
    pub uncontracted_requests: u64,
    /// The charge, in currency units.
    pub charge: f64,
    pub charge_micros: u64,
}

impl UsageRow {
    pub(super) fn from_row(r: &Row) -> StoreResult<Self> {
        let micros = r.get::<i64>(4)? as u64;
        Ok(Self {
            customer: r.get(0)?,
            interval_start: r.get(1)?,
            requests: r.get::<i64>(2)? as u64,
            uncontracted_requests: r.get::<i64>(3)? as u64,
            charge: micros as f64 / crate::market::units::MICROS as f64,
            charge_micros: micros,
        })
    }
}

/// One buyer's line of a proxy report, priced.
#[derive(Debug, Clone)]
pub struct ServedRecord {
    pub customer: String,
    pub requests: u64,
    pub uncontracted: u64,
    pub charge_micros: u64,
}

#[derive(Debug, Clone)]
pub struct ReportRecord {
    pub proxy: String,
    pub at: i64,
    pub interval_start: i64,
    pub own_requests: u64,
    pub served: Vec<ServedRecord>,
}
