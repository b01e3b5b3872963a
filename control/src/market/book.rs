//! A limit order book for one period: price-time priority, partial fills, cancel,
//! good-till-cancelled and immediate-or-cancel orders.
//!
//! An incoming order trades against the best opposite price level first, oldest order first
//! within a level, for as long as prices cross; each trade is at the resting order's price.
//! What is left rests in the book (GTC) or is cancelled (IOC).

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::units::Price;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Bid,
    Ask,
}

/// Time in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tif {
    /// Good till cancelled (or the period starts trading out).
    #[default]
    Gtc,
    /// Immediate or cancel: trade what crosses now, cancel the rest.
    Ioc,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: u64,
    pub side: Side,
    pub owner: String,
    pub price: Price,
    /// Requests/s still wanted or offered.
    pub remaining: u64,
    pub tif: Tif,
}

/// One trade between a resting order (maker) and an incoming one (taker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fill {
    pub bid_id: u64,
    pub ask_id: u64,
    pub buyer: String,
    pub seller: String,
    pub quantity: u64,
    /// The resting order's price.
    pub price: Price,
    /// The order that was resting in the book.
    pub maker_id: u64,
}

/// What happened to a submitted order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Submitted {
    pub fills: Vec<Fill>,
    /// What rests in the book (0 if none).
    pub rested: u64,
    /// What an IOC order had left over and was cancelled.
    pub cancelled: u64,
}

/// (price, total quantity) per price level, best first.
pub type Levels = Vec<(Price, u64)>;

#[derive(Debug, Clone, Default)]
pub struct Book {
    /// Bids by price; the best bid is the last key.
    bids: BTreeMap<Price, VecDeque<Order>>,
    /// Asks by price; the best ask is the first key.
    asks: BTreeMap<Price, VecDeque<Order>>,
    /// Where each resting order is.
    index: HashMap<u64, (Side, Price)>,
}

impl Book {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn best_bid(&self) -> Option<Price> {
        self.bids.keys().next_back().copied()
    }

    pub fn best_ask(&self) -> Option<Price> {
        self.asks.keys().next().copied()
    }

    pub fn get(&self, id: u64) -> Option<&Order> {
        let (side, price) = self.index.get(&id)?;
        self.side(*side).get(price)?.iter().find(|o| o.id == id)
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Resting orders, bids then asks, each best price first and oldest first within a price.
    pub fn orders(&self) -> impl Iterator<Item = &Order> {
        self.bids.values().rev().flatten().chain(self.asks.values().flatten())
    }

    /// Total quantity per price level: (bids best first, asks best first).
    pub fn depth(&self) -> (Levels, Levels) {
        let level = |(p, q): (&Price, &VecDeque<Order>)| (*p, q.iter().map(|o| o.remaining).sum());
        (self.bids.iter().rev().map(level).collect(), self.asks.iter().map(level).collect())
    }

    fn side(&self, side: Side) -> &BTreeMap<Price, VecDeque<Order>> {
        match side {
            Side::Bid => &self.bids,
            Side::Ask => &self.asks,
        }
    }

    /// What an incoming bid at `limit` would buy now: the asks at `limit` or below.
    pub fn asks_up_to(&self, limit: Price) -> u64 {
        self.asks.range(..=limit).flat_map(|(_, q)| q.iter()).map(|o| o.remaining).sum()
    }

    /// Put an order back exactly as it was (restoring a book from the store, oldest first):
    /// no matching.
    pub fn restore(&mut self, order: Order) {
        self.index.insert(order.id, (order.side, order.price));
        let book = match order.side {
            Side::Bid => &mut self.bids,
            Side::Ask => &mut self.asks,
        };
        book.entry(order.price).or_default().push_back(order);
    }

    /// Match an incoming order, then rest (GTC) or cancel (IOC) what is left.
    /// The caller gives ids in increasing submission order; a zero quantity is a no-op.
    pub fn submit(&mut self, mut order: Order) -> Submitted {
        let mut out = Submitted::default();
        let opposite = match order.side {
            Side::Bid => &mut self.asks,
            Side::Ask => &mut self.bids,
        };
        while order.remaining > 0 {
            let best = match order.side {
                Side::Bid => opposite.first_entry().filter(|e| *e.key() <= order.price),
                Side::Ask => opposite.last_entry().filter(|e| *e.key() >= order.price),
            };
            let Some(mut level) = best else { break };
            let price = *level.key();
            let queue = level.get_mut();
            while order.remaining > 0 {
                let Some(maker) = queue.front_mut() else { break };
                let q = maker.remaining.min(order.remaining);
                maker.remaining -= q;
                order.remaining -= q;
                let (bid, ask) = match order.side {
                    Side::Bid => (&order, &*maker),
                    Side::Ask => (&*maker, &order),
                };
                out.fills.push(Fill {
                    bid_id: bid.id,
                    ask_id: ask.id,
                    buyer: bid.owner.clone(),
                    seller: ask.owner.clone(),
                    quantity: q,
                    price,
                    maker_id: maker.id,
                });
                if maker.remaining == 0 {
                    let id = maker.id;
                    queue.pop_front();
                    self.index.remove(&id);
                }
            }
            if queue.is_empty() {
                level.remove();
            }
        }
        if order.remaining > 0 {
            match order.tif {
                Tif::Gtc => {
                    out.rested = order.remaining;
                    self.restore(order);
                }
                Tif::Ioc => out.cancelled = order.remaining,
            }
        }
        out
    }

    /// Remove a resting order; returns it as it was (with what was left of it).
    pub fn cancel(&mut self, id: u64) -> Option<Order> {
        let (side, price) = self.index.remove(&id)?;
        let book = match side {
            Side::Bid => &mut self.bids,
            Side::Ask => &mut self.asks,
        };
        let queue = book.get_mut(&price)?;
        let pos = queue.iter().position(|o| o.id == id)?;
        let order = queue.remove(pos);
        if queue.is_empty() {
            book.remove(&price);
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn order(id: u64, side: Side, price: u64, q: u64, tif: Tif) -> Order {
        Order { id, side, owner: format!("o{id}"), price: Price(price), remaining: q, tif }
    }

    #[test]
    fn price_then_time_priority_at_the_resting_price() {
        let mut b = Book::new();
        b.submit(order(1, Side::Ask, 5, 10, Tif::Gtc));
        b.submit(order(2, Side::Ask, 4, 10, Tif::Gtc));
        b.submit(order(3, Side::Ask, 4, 10, Tif::Gtc));
        let s = b.submit(order(4, Side::Bid, 5, 25, Tif::Gtc));
        let got: Vec<(u64, u64, Price)> = s.fills.iter().map(|f| (f.ask_id, f.quantity, f.price)).collect();
        assert_eq!(got, [(2, 10, Price(4)), (3, 10, Price(4)), (1, 5, Price(5))]);
        assert_eq!(s.rested, 0);
        assert_eq!(b.get(1).map(|o| o.remaining), Some(5));
    }

    #[test]
    fn partial_fill_rests_and_ioc_cancels_the_rest() {
        let mut b = Book::new();
        b.submit(order(1, Side::Ask, 5, 10, Tif::Gtc));
        let s = b.submit(order(2, Side::Bid, 6, 15, Tif::Gtc));
        assert_eq!((s.fills[0].quantity, s.rested), (10, 5));
        assert_eq!(b.best_bid(), Some(Price(6)));
        let s = b.submit(order(3, Side::Ask, 6, 8, Tif::Ioc));
        assert_eq!((s.fills[0].quantity, s.cancelled, s.rested), (5, 3, 0));
        assert!(b.is_empty());
        let s = b.submit(order(4, Side::Bid, 6, 8, Tif::Ioc));
        assert_eq!((s.fills.len(), s.cancelled), (0, 8));
        assert!(b.is_empty());
    }

    #[test]
    fn cancel_removes_only_that_order() {
        let mut b = Book::new();
        b.submit(order(1, Side::Bid, 5, 10, Tif::Gtc));
        b.submit(order(2, Side::Bid, 5, 10, Tif::Gtc));
        assert_eq!(b.cancel(1).map(|o| o.remaining), Some(10));
        assert_eq!(b.cancel(1), None);
        assert_eq!(b.depth().0, [(Price(5), 10)]);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Submit(Side, u64, u64, bool),
        Cancel(usize),
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        let submit = (prop::bool::ANY, 1u64..20, 1u64..100, prop::bool::weighted(0.2))
            .prop_map(|(bid, p, q, ioc)| Op::Submit(if bid { Side::Bid } else { Side::Ask }, p, q, ioc));
        let cancel = (0usize..64).prop_map(Op::Cancel);
        prop::collection::vec(prop_oneof![4 => submit, 1 => cancel], 0..120)
    }

    proptest! {
        #[test]
        fn book_invariants(ops in ops()) {
            let mut b = Book::new();
            // Reference: each order's quantity, filled and cancelled amounts.
            let mut placed: Vec<(Side, Price, u64)> = Vec::new();
            let mut filled: Vec<u64> = Vec::new();
            let mut gone: Vec<u64> = Vec::new();
            for op in ops {
                match op {
                    Op::Submit(side, p, q, ioc) => {
                        let id = placed.len() as u64;
                        let tif = if ioc { Tif::Ioc } else { Tif::Gtc };
                        let before = b.clone();
                        placed.push((side, Price(p), q));
                        filled.push(0);
                        gone.push(0);
                        let s = b.submit(order(id, side, p, q, tif));
                        let mut last_price: Option<Price> = None;
                        for f in &s.fills {
                            // Conservation: each fill is one quantity for both sides.
                            filled[f.bid_id as usize] += f.quantity;
                            filled[f.ask_id as usize] += f.quantity;
                            // The limit is respected and the trade is at the resting price.
                            let maker = before.get(f.maker_id).expect("maker was resting");
                            prop_assert_eq!(f.price, maker.price);
                            match side {
                                Side::Bid => prop_assert!(f.price <= Price(p)),
                                Side::Ask => prop_assert!(f.price >= Price(p)),
                            }
                            // Best prices first.
                            if let Some(lp) = last_price {
                                match side {
                                    Side::Bid => prop_assert!(f.price >= lp),
                                    Side::Ask => prop_assert!(f.price <= lp),
                                }
                            }
                            last_price = Some(f.price);
                        }
                        // Time priority: within a level, makers are taken in resting order.
                        let resting: Vec<u64> = before.orders().map(|o| o.id).collect();
                        let makers: Vec<u64> = s.fills.iter().map(|f| f.maker_id).collect();
                        for w in makers.windows(2) {
                            let (a, c) = (before.get(w[0]).unwrap(), before.get(w[1]).unwrap());
                            if a.price == c.price {
                                let pa = resting.iter().position(|&x| x == w[0]).unwrap();
                                let pc = resting.iter().position(|&x| x == w[1]).unwrap();
                                prop_assert!(pa < pc);
                            }
                        }
                        let traded: u64 = s.fills.iter().map(|f| f.quantity).sum();
                        prop_assert_eq!(traded + s.rested + s.cancelled, q);
                        gone[id as usize] += s.cancelled;
                        if ioc { prop_assert_eq!(s.rested, 0); }
                    }
                    Op::Cancel(i) => {
                        if let Some(o) = b.cancel(i as u64) {
                            gone[i] += o.remaining;
                        }
                    }
                }
                // Never crossed.
                if let (Some(bb), Some(ba)) = (b.best_bid(), b.best_ask()) {
                    prop_assert!(bb < ba);
                }
            }
            // Every order is accounted for: filled + cancelled + resting = placed.
            for (id, (_, _, q)) in placed.iter().enumerate() {
                let resting = b.get(id as u64).map_or(0, |o| o.remaining);
                prop_assert_eq!(filled[id] + gone[id] + resting, *q, "order {}", id);
            }
        }
    }
}
