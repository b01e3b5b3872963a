//! Selling the unused capacity: a sealed-bid auction per period ([`auction`]) and a continuous
//! limit order book per period ([`book`]), both selling from the same pool and never more
//! than it holds.
//!
//! A period is `[start, start + period_s)` with `start` a multiple of `period_s` (UTC).
//! For each period in the horizon:
//! `available = unused (capacity - forecast own usage) - sold (contracts) - reserved (open auctions)`.
//! The network's ask in the book offers exactly `available` at the reserve price, and is
//! withdrawn and reposted whenever that number changes (forecast, auction opened or cleared).
//! Every fill and every auction award becomes a contract. A buyer may buy a block of
//! consecutive periods at once, all or none ([`Market::place_block`]), and keep a standing
//! order that bids in each new period ([`standing`]).
//!
//! Every operation writes its whole result in one store transaction; if the write fails the
//! in-memory book is rebuilt from the store, so memory never runs ahead of the disk.

pub mod auction;
pub mod book;
pub mod standing;
pub mod units;

use std::collections::BTreeMap;

use serde::Serialize;

use self::{
    auction::{Outcome, SealedBid},
    book::{Book, Order, Side, Tif},
    units::Price,
};
use crate::{
    capacity::{Capacity, PeriodForecast},
    contracts::{self, Transitions},
    store::{
        AuctionRow, AuctionSettlement, AwardRecord, BidRow, BookChange, ContractRow, NewAuction, NewContract, OrderRow,
        OrderUpdate, StandingRow, Store, StoreError,
    },
};

/// The owner of the network's asks.
pub const NETWORK: &str = "network";

/// Largest quantity accepted in a bid or order, whatever the capacity.
pub const MAX_RPS: u64 = 1_000_000_000;

#[derive(Debug, thiserror::Error)]
pub enum MarketError {
    /// The request fits the API's document but breaks a rule it cannot state (a rule across
    /// fields, or of the config): 422.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type MarketResult<T> = Result<T, MarketError>;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MarketParams {
    pub period_s: i64,
    pub horizon_periods: i64,
    /// The network's ask price and the default auction reserve, per million requests.
    pub reserve: Price,
}

/// What a period has for sale.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Availability {
    pub period_start: i64,
    pub period_end: i64,
    #[serde(flatten)]
    pub forecast: PeriodForecast,
    pub sold_rps: u64,
    /// Held for open auctions of the period.
    pub reserved_rps: u64,
    /// unused - sold - reserved: what the network's ask offers in the book.
    pub available_rps: u64,
}

/// A bid or order as asked for; the API has checked who may place it.
#[derive(Debug, Clone)]
pub struct OrderRequest {
    pub period_start: i64,
    pub customer: String,
    pub price: Price,
    pub quantity_rps: u64,
    pub tif: Tif,
}

/// A sealed bid as asked for; the API has checked who may place it.
#[derive(Debug, Clone)]
pub struct BidRequest {
    pub auction_id: i64,
    pub customer: String,
    pub quantity_rps: u64,
    pub max_price: Price,
}

#[derive(Debug, Clone)]
pub struct AuctionRequest {
    pub period_start: i64,
    pub closes_at: i64,
    pub quantity_rps: Option<u64>,
    pub reserve: Option<Price>,
}

/// The book of one period, as the API shows it: price levels, no owners.
#[derive(Debug, Clone, Serialize)]
pub struct Depth {
    pub period_start: i64,
    pub bids: Vec<Level>,
    pub asks: Vec<Level>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Level {
    pub price: Price,
    pub quantity_rps: u64,
}

/// Contract transitions as (contract id, time).
type Marks = Vec<(i64, i64)>;

pub struct Market {
    params: MarketParams,
    books: BTreeMap<i64, Book>,
    /// Period -> the network's open ask in it.
    network_asks: BTreeMap<i64, i64>,
    open_auctions: Vec<AuctionRow>,
    /// Contracts not yet ended.
    contracts: Vec<ContractRow>,
    /// Active standing orders.
    standing: Vec<StandingRow>,
    next_order_id: i64,
    /// Activations and ends (contract, time) in force but not yet in the store.
    unrecorded: (Marks, Marks),
}

impl Market {
    /// Rebuild from the store: books from open orders in submission order, open auctions,
    /// contracts not yet ended.
    pub fn load(params: MarketParams, store: &Store) -> MarketResult<Market> {
        let mut m = Market {
            params,
            books: BTreeMap::new(),
            network_asks: BTreeMap::new(),
            open_auctions: store.auctions(true)?,
            contracts: store.unfinished_contracts()?,
            standing: store.standing_orders(None, true)?,
            next_order_id: store.max_order_id()? + 1,
            unrecorded: Default::default(),
        };
        for o in store.orders(None, true)? {
            m.restore(o);
        }
        Ok(m)
    }

    fn restore(&mut self, o: OrderRow) {
        if o.owner == NETWORK && o.side == Side::Ask {
            self.network_asks.insert(o.period_start, o.id);
        }
        self.books.entry(o.period_start).or_default().restore(Order {
            id: o.id as u64,
            side: o.side,
            owner: o.owner,
            price: o.price,
            remaining: o.remaining_rps,
            tif: o.tif,
        });
    }

    /// After a failed write: the period's book as the store has it.
    fn reload_period(&mut self, store: &Store, period: i64) {
        self.books.remove(&period);
        self.network_asks.remove(&period);
        match store.orders(None, true) {
            Ok(orders) => orders.into_iter().filter(|o| o.period_start == period).for_each(|o| self.restore(o)),
            Err(e) => tracing::error!(period, "cannot reload the book after a failed write: {e}"),
        }
    }

    pub fn params(&self) -> &MarketParams {
        &self.params
    }

    /// Contracts not yet ended.
    pub fn contracts(&self) -> &[ContractRow] {
        &self.contracts
    }

    /// The start of the period holding `t`.
    pub fn period_of(&self, t: i64) -> i64 {
        t.div_euclid(self.params.period_s) * self.params.period_s
    }

    /// Periods open for sale at `now`: the current one through the horizon.
    pub fn periods(&self, now: i64) -> impl Iterator<Item = i64> + use<> {
        let (first, step) = (self.period_of(now), self.params.period_s);
        (0..=self.params.horizon_periods).map(move |k| first + k * step)
    }

    /// Check that `start` is a period open for sale; returns its end.
    pub fn check_period(&self, start: i64, now: i64) -> MarketResult<i64> {
        let p = self.params.period_s;
        if start.rem_euclid(p) != 0 {
            return Err(MarketError::Invalid(format!(
                "period_start {start} is not a period boundary (a multiple of period_s = {p})"
            )));
        }
        let end = start + p;
        if end <= now {
            return Err(MarketError::Conflict(format!("period [{start}, {end}) is in the past (now {now})")));
        }
        let last = self.period_of(now) + self.params.horizon_periods * p;
        if start > last {
            return Err(MarketError::Conflict(format!(
                "period_start {start} is beyond the market horizon (last period starts at {last})"
            )));
        }
        Ok(end)
    }

    fn sold(&self, period: i64) -> u64 {
        self.contracts.iter().filter(|c| c.period_start == period).map(|c| c.rps).sum()
    }

    fn reserved(&self, period: i64, except_auction: Option<i64>) -> u64 {
        self.open_auctions
            .iter()
            .filter(|a| a.period_start == period && Some(a.id) != except_auction)
            .map(|a| a.quantity_rps)
            .sum()
    }

    pub fn availability(&self, cap: &Capacity, period: i64) -> Availability {
        let end = period + self.params.period_s;
        let forecast = cap.period(period, end);
        let sold = self.sold(period);
        let reserved = self.reserved(period, None);
        Availability {
            period_start: period,
            period_end: end,
            forecast,
            sold_rps: sold,
            reserved_rps: reserved,
            available_rps: forecast.unused_rps.saturating_sub(sold).saturating_sub(reserved),
        }
    }

    fn check_quantity(cap: &Capacity, q: u64) -> MarketResult<()> {
        let total = cap.total_rps();
        if q == 0 {
            return Err(MarketError::Invalid("quantity_rps must be at least 1".into()));
        }
        if q > MAX_RPS || q > total {
            return Err(MarketError::Invalid(format!(
                "quantity_rps {q} is more than the network's whole capacity ({total} rps)"
            )));
        }
        Ok(())
    }

    // --- auctions ------------------------------------------------------------------------

    pub fn open_auction(
        &mut self,
        store: &mut Store,
        cap: &Capacity,
        req: &AuctionRequest,
        now: i64,
    ) -> MarketResult<AuctionRow> {
        let end = self.check_period(req.period_start, now)?;
        if req.period_start <= now {
            return Err(MarketError::Conflict(format!(
                "an auction is for a future period; period {} has started",
                req.period_start
            )));
        }
        if req.closes_at <= now || req.closes_at > req.period_start {
            return Err(MarketError::Invalid(format!(
                "closes_at {} must be after now ({now}) and no later than period_start {}",
                req.closes_at, req.period_start
            )));
        }
        let available = self.availability(cap, req.period_start).available_rps;
        let quantity = req.quantity_rps.unwrap_or(available);
        if quantity == 0 {
            return Err(MarketError::Conflict(format!("period {} has no capacity left to auction", req.period_start)));
        }
        if quantity > available {
            return Err(MarketError::Conflict(format!(
                "quantity_rps {quantity} is more than the period's available {available} rps"
            )));
        }
        let row = store.insert_auction(&NewAuction {
            period_start: req.period_start,
            period_end: end,
            closes_at: req.closes_at,
            quantity_rps: quantity,
            reserve: req.reserve.unwrap_or(self.params.reserve),
            created_at: now,
        })?;
        self.open_auctions.push(row.clone());
        // The auction's share leaves the book.
        self.refresh_period(store, cap, req.period_start, now)?;
        Ok(row)
    }

    fn open_auction_row(&self, id: i64) -> MarketResult<&AuctionRow> {
        self.open_auctions
            .iter()
            .find(|a| a.id == id)
            .ok_or_else(|| MarketError::Conflict(format!("auction {id} is closed")))
    }

    pub fn place_bid(&mut self, store: &mut Store, cap: &Capacity, bid: &BidRequest, now: i64) -> MarketResult<BidRow> {
        let auction_id = bid.auction_id;
        if store.auction(auction_id)?.is_none() {
            return Err(MarketError::NotFound(format!("no auction {auction_id}")));
        }
        let a = self.open_auction_row(auction_id)?;
        if now >= a.closes_at {
            return Err(MarketError::Conflict(format!("auction {auction_id} closed for bids at {}", a.closes_at)));
        }
        Self::check_quantity(cap, bid.quantity_rps)?;
        Ok(store.insert_bid(auction_id, &bid.customer, bid.quantity_rps, bid.max_price, now)?)
    }

    /// Withdraw a bid before the auction closes; `scope` is the buyer asking (None: operator).
    pub fn withdraw_bid(
        &mut self,
        store: &mut Store,
        bid_id: i64,
        scope: Option<&str>,
        now: i64,
    ) -> MarketResult<BidRow> {
        let bid = store
            .bid(bid_id)?
            .filter(|b| scope.is_none_or(|s| s == b.customer))
            .ok_or_else(|| MarketError::NotFound(format!("no bid {bid_id}")))?;
        if bid.state != "open" {
            return Err(MarketError::Conflict(format!("bid {bid_id} is {}", bid.state)));
        }
        let a = self.open_auction_row(bid.auction_id)?;
        if now >= a.closes_at {
            return Err(MarketError::Conflict(format!("auction {} is closing", bid.auction_id)));
        }
        store.withdraw_bid(bid_id)?;
        Ok(store.bid(bid_id)?.expect("exists"))
    }

    /// Clear one open auction now: its share and what else is unused, up to its quantity.
    pub fn clear_auction(&mut self, store: &mut Store, cap: &Capacity, id: i64, now: i64) -> MarketResult<AuctionRow> {
        let a = self.open_auction_row(id)?.clone();
        let unused = cap.period(a.period_start, a.period_end).unused_rps;
        let supply = a.quantity_rps.min(
            unused.saturating_sub(self.sold(a.period_start)).saturating_sub(self.reserved(a.period_start, Some(id))),
        );
        let bids: Vec<BidRow> = store.bids(id, None)?.into_iter().filter(|b| b.state == "open").collect();
        let sealed: Vec<SealedBid> = bids
            .iter()
            .map(|b| SealedBid {
                id: b.id as u64,
                buyer: b.customer.clone(),
                quantity: b.quantity_rps,
                max_price: b.max_price,
                seq: b.id as u64,
            })
            .collect();
        let result = auction::clear(supply, a.reserve_price, &sealed);
        let mut settle = AuctionSettlement {
            auction_id: id,
            price: result.price,
            sold: result.sold,
            at: now,
            awards: Vec::new(),
            contracts: Vec::new(),
        };
        for (b, award) in bids.iter().zip(&result.awards) {
            settle.awards.push(AwardRecord {
                bid_id: b.id,
                state: match award.outcome {
                    Outcome::Won => "won",
                    Outcome::Partial => "partial",
                    Outcome::Lost => "lost",
                },
                filled: award.filled,
                reason: award.reason.clone(),
            });
            if award.filled > 0 {
                settle.contracts.push(NewContract {
                    customer: b.customer.clone(),
                    period_start: a.period_start,
                    period_end: a.period_end,
                    rps: award.filled,
                    price: result.price,
                    source: "auction",
                    auction_id: Some(id),
                    bid_id: Some(b.id),
                    ask_id: None,
                    created_at: now,
                });
            }
        }
        let created = store.settle_auction(&settle)?;
        tracing::info!(auction = id, supply, sold = result.sold, price = %result.price, bids = bids.len(), "auction cleared");
        self.open_auctions.retain(|x| x.id != id);
        self.contracts.extend(created);
        // What the auction did not sell returns to the book.
        self.refresh_period(store, cap, a.period_start, now)?;
        Ok(store.auction(id)?.expect("exists"))
    }

    // --- the book ------------------------------------------------------------------------

    /// Place a buyer's bid in a period's book; returns the order as it stands and the
    /// contracts its fills made.
    pub fn place_order(
        &mut self,
        store: &mut Store,
        cap: &Capacity,
        req: &OrderRequest,
        now: i64,
    ) -> MarketResult<(OrderRow, Vec<ContractRow>)> {
        let end = self.check_period(req.period_start, now)?;
        Self::check_quantity(cap, req.quantity_rps)?;
        // The network's ask is brought up to date first, so the bid meets what is really unused.
        self.refresh_period(store, cap, req.period_start, now)?;
        let (order, row) = self.new_bid(req, end, now);
        let mut change = BookChange::default();
        let contracts = self.submit(order, row, end, now, &mut change);
        self.commit(store, &[req.period_start], &change, contracts)?;
        let row = change.inserted.swap_remove(0);
        let made = self.contracts_of(&[row.id]);
        Ok((row, made))
    }

    /// Buy the same quantity at a limit price in `periods` consecutive periods from
    /// `req.period_start`, all or none: every period fills in full now, in one store
    /// transaction, or nothing is bought (409, saying which period falls short). `req.tif`
    /// is not used: a block fills at once or not at all.
    pub fn place_block(
        &mut self,
        store: &mut Store,
        cap: &Capacity,
        req: &OrderRequest,
        periods: i64,
        now: i64,
    ) -> MarketResult<(Vec<OrderRow>, Vec<ContractRow>)> {
        let most = self.params.horizon_periods + 1;
        if !(1..=most).contains(&periods) {
            return Err(MarketError::Invalid(format!(
                "periods {periods} is not within 1..={most} (the periods open for sale)"
            )));
        }
        let starts: Vec<i64> = (0..periods).map(|k| req.period_start + k * self.params.period_s).collect();
        let ends = starts.iter().map(|&p| self.check_period(p, now)).collect::<MarketResult<Vec<i64>>>()?;
        Self::check_quantity(cap, req.quantity_rps)?;
        // Refused before anything is written (the network's asks included).
        for &p in &starts {
            let offered = self.offered_up_to(cap, p, req.price);
            if offered < req.quantity_rps {
                return Err(MarketError::Conflict(format!(
                    "period {p} offers {offered} of the {} rps at {} or less: the block buys nothing",
                    req.quantity_rps, req.price
                )));
            }
        }
        for &p in &starts {
            self.refresh_period(store, cap, p, now)?;
        }
        let mut change = BookChange::default();
        let mut contracts = Vec::new();
        for (&p, &end) in starts.iter().zip(&ends) {
            let (order, row) = self.new_bid(&OrderRequest { period_start: p, tif: Tif::Ioc, ..req.clone() }, end, now);
            contracts.extend(self.submit(order, row, end, now, &mut change));
        }
        // All or none, whatever the estimate above missed: nothing of a short block is written.
        let block: Vec<&OrderRow> = change.inserted.iter().filter(|o| o.side == Side::Bid).collect();
        if let Some(short) = block.iter().find(|o| o.remaining_rps > 0) {
            let p = short.period_start;
            for &p in &starts {
                self.reload_period(store, p);
            }
            return Err(MarketError::Conflict(format!("period {p} fell short: the block buys nothing")));
        }
        self.commit(store, &starts, &change, contracts)?;
        let ids: Vec<i64> = change.inserted.iter().map(|o| o.id).collect();
        let made = self.contracts_of(&ids);
        Ok((change.inserted, made))
    }

    /// What a bid at `limit` would buy in `period` once the network's ask is brought up to
    /// date: the asks at `limit` or below, the network's at what is available now.
    fn offered_up_to(&self, cap: &Capacity, period: i64, limit: Price) -> u64 {
        let book = self.books.get(&period);
        let all = book.map_or(0, |b| b.asks_up_to(limit));
        let network = self.network_asks.get(&period).and_then(|&id| book?.get(id as u64));
        let others = all - network.filter(|o| o.price <= limit).map_or(0, |o| o.remaining);
        let network_then = if self.params.reserve <= limit { self.availability(cap, period).available_rps } else { 0 };
        others + network_then
    }

    /// A buyer's bid as the book and the store hold it, with the next order id.
    fn new_bid(&mut self, req: &OrderRequest, end: i64, now: i64) -> (Order, OrderRow) {
        let id = self.next_order_id;
        self.next_order_id += 1;
        let order = Order {
            id: id as u64,
            side: Side::Bid,
            owner: req.customer.clone(),
            price: req.price,
            remaining: req.quantity_rps,
            tif: req.tif,
        };
        let row = OrderRow {
            id,
            period_start: req.period_start,
            period_end: end,
            side: Side::Bid,
            owner: req.customer.clone(),
            price: req.price,
            quantity_rps: req.quantity_rps,
            remaining_rps: req.quantity_rps,
            tif: req.tif,
            state: "open".into(),
            created_at: now,
            closed_at: None,
        };
        (order, row)
    }

    /// The book contracts made by the bids `ids`.
    fn contracts_of(&self, ids: &[i64]) -> Vec<ContractRow> {
        self.contracts
            .iter()
            .filter(|c| c.source == "book" && c.bid_id.is_some_and(|b| ids.contains(&b)))
            .cloned()
            .collect()
    }

    /// Match `order` in its period's book and describe the result in `change`.
    fn submit(
        &mut self,
        order: Order,
        mut row: OrderRow,
        end: i64,
        now: i64,
        change: &mut BookChange,
    ) -> Vec<NewContract> {
        let period = row.period_start;
        let book = self.books.entry(period).or_default();
        let result = book.submit(order);
        let mut contracts = Vec::new();
        for f in &result.fills {
            let remaining = book.get(f.maker_id).map_or(0, |o| o.remaining);
            change.updated.retain(|u| u.id != f.maker_id as i64);
            change.updated.push(OrderUpdate {
                id: f.maker_id as i64,
                remaining_rps: remaining,
                state: if remaining == 0 { "filled" } else { "open" },
                closed_at: (remaining == 0).then_some(now),
            });
            if remaining == 0 && self.network_asks.get(&period) == Some(&(f.maker_id as i64)) {
                self.network_asks.remove(&period);
            }
            contracts.push(NewContract {
                customer: f.buyer.clone(),
                period_start: period,
                period_end: end,
                rps: f.quantity,
                price: f.price,
                source: "book",
                auction_id: None,
                bid_id: Some(f.bid_id as i64),
                ask_id: Some(f.ask_id as i64),
                created_at: now,
            });
        }
        // What did not trade: resting (GTC) or cancelled (IOC).
        row.remaining_rps = result.rested + result.cancelled;
        let filled_all = result.rested == 0 && result.cancelled == 0;
        row.state = if filled_all {
            "filled"
        } else if result.rested > 0 {
            "open"
        } else {
            "cancelled"
        }
        .into();
        if result.rested == 0 {
            row.closed_at = Some(now);
        }
        if row.owner == NETWORK && result.rested > 0 {
            self.network_asks.insert(period, row.id);
        }
        change.inserted.push(row);
        contracts
    }

    /// Write a change of the books of `periods` in one transaction; if it fails, those books
    /// are rebuilt from the store.
    fn commit(
        &mut self,
        store: &mut Store,
        periods: &[i64],
        change: &BookChange,
        contracts: Vec<NewContract>,
    ) -> MarketResult<()> {
        let change = BookChange { contracts, ..change.clone() };
        match store.apply_book_change(&change) {
            Ok(created) => {
                self.contracts.extend(created);
                Ok(())
            }
            Err(e) => {
                for &p in periods {
                    self.reload_period(store, p);
                }
                Err(e.into())
            }
        }
    }

    /// Cancel a resting order; `scope` is the buyer asking (None: operator).
    pub fn cancel_order(
        &mut self,
        store: &mut Store,
        id: i64,
        scope: Option<&str>,
        now: i64,
    ) -> MarketResult<OrderRow> {
        let row = store
            .order(id)?
            .filter(|o| scope.is_none_or(|s| s == o.owner))
            .ok_or_else(|| MarketError::NotFound(format!("no order {id}")))?;
        if row.state != "open" {
            return Err(MarketError::Conflict(format!("order {id} is {}", row.state)));
        }
        if row.owner == NETWORK {
            return Err(MarketError::Conflict(
                "the network's asks follow the unused capacity; they are not cancelled by hand".into(),
            ));
        }
        let removed = self.books.get_mut(&row.period_start).and_then(|b| b.cancel(id as u64));
        let remaining = removed.map_or(row.remaining_rps, |o| o.remaining);
        let change = BookChange {
            updated: vec![OrderUpdate { id, remaining_rps: remaining, state: "cancelled", closed_at: Some(now) }],
            ..Default::default()
        };
        self.commit(store, &[row.period_start], &change, Vec::new())?;
        Ok(store.order(id)?.expect("exists"))
    }

    /// Make the network's ask in a period offer exactly what is available: withdraw the old
    /// ask and post a new one (which may trade with resting bids at once).
    fn refresh_period(&mut self, store: &mut Store, cap: &Capacity, period: i64, now: i64) -> MarketResult<()> {
        let target = self.availability(cap, period).available_rps;
        let current_id = self.network_asks.get(&period).copied();
        let current =
            current_id.and_then(|id| self.books.get(&period)?.get(id as u64).map(|o| o.remaining)).unwrap_or(0);
        if target == current && (target == 0 || current_id.is_some()) {
            return Ok(());
        }
        let end = period + self.params.period_s;
        let mut change = BookChange::default();
        if let Some(id) = current_id {
            let left = self.books.get_mut(&period).and_then(|b| b.cancel(id as u64)).map_or(0, |o| o.remaining);
            self.network_asks.remove(&period);
            change.updated.push(OrderUpdate { id, remaining_rps: left, state: "cancelled", closed_at: Some(now) });
        }
        let mut contracts = Vec::new();
        if target > 0 {
            let id = self.next_order_id;
            self.next_order_id += 1;
            let order = Order {
                id: id as u64,
                side: Side::Ask,
                owner: NETWORK.into(),
                price: self.params.reserve,
                remaining: target,
                tif: Tif::Gtc,
            };
            let row = OrderRow {
                id,
                period_start: period,
                period_end: end,
                side: Side::Ask,
                owner: NETWORK.into(),
                price: self.params.reserve,
                quantity_rps: target,
                remaining_rps: target,
                tif: Tif::Gtc,
                state: "open".into(),
                created_at: now,
                closed_at: None,
            };
            contracts = self.submit(order, row, end, now, &mut change);
        }
        self.commit(store, &[period], &change, contracts)
    }

    /// Orders of periods that have ended expire.
    fn expire(&mut self, store: &mut Store, now: i64) -> MarketResult<()> {
        let ended: Vec<i64> = self.books.keys().copied().filter(|&p| p + self.params.period_s <= now).collect();
        for period in ended {
            let book = self.books.get(&period).cloned().unwrap_or_default();
            let change = BookChange {
                updated: book
                    .orders()
                    .map(|o| OrderUpdate {
                        id: o.id as i64,
                        remaining_rps: o.remaining,
                        state: "expired",
                        closed_at: Some(now),
                    })
                    .collect(),
                ..Default::default()
            };
            self.commit(store, &[period], &change, Vec::new())?;
            self.books.remove(&period);
            self.network_asks.remove(&period);
        }
        Ok(())
    }

    /// The market's regular work at `now`: clear auctions whose bidding closed, expire
    /// orders of ended periods, bring the network's asks up to date over the horizon, and
    /// place the standing orders' bids in periods newly open for sale.
    pub fn tick(&mut self, store: &mut Store, cap: &Capacity, now: i64) -> MarketResult<()> {
        // Each step on its own: one auction or period the store refuses does not hold up the
        // others; the first error is returned after all were tried.
        let mut first_error = None;
        let due: Vec<i64> = self.open_auctions.iter().filter(|a| a.closes_at <= now).map(|a| a.id).collect();
        for id in due {
            if let Err(e) = self.clear_auction(store, cap, id, now) {
                tracing::error!(auction = id, "clearing: {e}");
                first_error.get_or_insert(e);
            }
        }
        if let Err(e) = self.expire(store, now) {
            tracing::error!("expiring orders: {e}");
            first_error.get_or_insert(e);
        }
        for period in self.periods(now).collect::<Vec<_>>() {
            if let Err(e) = self.refresh_period(store, cap, period, now) {
                tracing::error!(period, "the network's ask: {e}");
                first_error.get_or_insert(e);
            }
        }
        if let Err(e) = self.run_standing(store, cap, now) {
            tracing::error!("standing orders: {e}");
            first_error.get_or_insert(e);
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Contract activations and ends due at `now`: applied to memory at once (so the data
    /// plane switches on time whatever the store does), then recorded in the store. A record
    /// that fails to land is kept and tried again at every call until it does.
    pub fn contract_transitions(&mut self, store: &mut Store, now: i64) -> Transitions {
        let t = contracts::due(&self.contracts, now);
        for c in &mut self.contracts {
            if t.activate.contains(&c.id) {
                c.activated_at = Some(now);
                self.unrecorded.0.push((c.id, now));
                tracing::info!(contract = c.id, customer = %c.customer, rps = c.rps, "contract active");
            }
            if t.end.contains(&c.id) {
                c.ended_at = Some(now);
                self.unrecorded.1.push((c.id, now));
                tracing::info!(contract = c.id, customer = %c.customer, "contract ended");
            }
        }
        self.contracts.retain(|c| c.ended_at.is_none());
        if !self.unrecorded.0.is_empty() || !self.unrecorded.1.is_empty() {
            match store.mark_contracts(&self.unrecorded.0, &self.unrecorded.1) {
                Ok(()) => self.unrecorded = Default::default(),
                // A control replica that does not lead: the leader records them.
                Err(StoreError::NotLeader) => {}
                Err(e) => tracing::error!(
                    pending = self.unrecorded.0.len() + self.unrecorded.1.len(),
                    "recording contract transitions (in force in the data plane; retried): {e}"
                ),
            }
        }
        t
    }

    /// When the market next has work: an auction closing or a contract boundary.
    pub fn next_event(&self, now: i64) -> Option<i64> {
        let auctions = self.open_auctions.iter().map(|a| a.closes_at.max(now + 1)).min();
        [auctions, contracts::next_boundary(&self.contracts, now)].into_iter().flatten().min()
    }

    pub fn depth(&self, period: i64) -> Depth {
        let (bids, asks) = self.books.get(&period).map(Book::depth).unwrap_or_default();
        let level = |(price, quantity_rps)| Level { price, quantity_rps };
        Depth {
            period_start: period,
            bids: bids.into_iter().map(level).collect(),
            asks: asks.into_iter().map(level).collect(),
        }
    }
}

#[cfg(test)]
mod tests;
