//! Standing orders: a buyer's bid of a quantity at a limit price, placed by the market in
//! every period as it opens for sale (enters the horizon) until the buyer cancels it. Each
//! bid is an ordinary good-till-cancelled order of its period, written in the same transaction
//! as the standing order's progress, so a period gets its bid once, whatever crashes.

use super::{Market, MarketError, MarketResult, OrderRequest, book::Tif, units::Price};
use crate::{
    capacity::Capacity,
    store::{BookChange, NewStanding, StandingRow, StandingUpdate, Store},
};

/// A standing order as asked for; the API has checked who may place it.
#[derive(Debug, Clone)]
pub struct StandingRequest {
    pub customer: String,
    pub quantity_rps: u64,
    pub price: Price,
    /// The first period to bid in (one open for sale now, or the next to open); default the
    /// next period to open for sale.
    pub period_start: Option<i64>,
}

impl Market {
    /// The last period open for sale at `now`.
    fn last_open(&self, now: i64) -> i64 {
        self.period_of(now) + self.params.horizon_periods * self.params.period_s
    }

    /// Keep a standing order; the periods already open from its first period on get their bid
    /// at once (see [`Market::run_standing`]).
    pub fn place_standing(
        &mut self,
        store: &mut Store,
        cap: &Capacity,
        req: &StandingRequest,
        now: i64,
    ) -> MarketResult<StandingRow> {
        Self::check_quantity(cap, req.quantity_rps)?;
        let next_to_open = self.last_open(now) + self.params.period_s;
        let first = match req.period_start {
            None => next_to_open,
            Some(p) if p == next_to_open => p,
            Some(p) => {
                self.check_period(p, now)?;
                p
            }
        };
        let row = store.insert_standing(&NewStanding {
            customer: req.customer.clone(),
            quantity_rps: req.quantity_rps,
            price: req.price,
            next_period: first,
            created_at: now,
        })?;
        self.standing.push(row.clone());
        tracing::info!(standing = row.id, customer = %row.customer, rps = row.quantity_rps, price = %row.price,
            first, "standing order placed");
        // Kept whatever happens next: a bid the store refuses now is placed at a later tick.
        if let Err(e) = self.run_standing(store, cap, now) {
            tracing::error!(standing = row.id, "placing standing orders' bids (retried at the next tick): {e}");
        }
        Ok(self.standing.iter().find(|s| s.id == row.id).cloned().unwrap_or(row))
    }

    /// Stop a standing order: no more bids. Those it placed stay in their books (each can be
    /// cancelled as an order). `scope` is the buyer asking (None: operator).
    pub fn cancel_standing(
        &mut self,
        store: &mut Store,
        id: i64,
        scope: Option<&str>,
        now: i64,
    ) -> MarketResult<StandingRow> {
        let row = store
            .standing(id)?
            .filter(|s| scope.is_none_or(|me| me == s.customer))
            .ok_or_else(|| MarketError::NotFound(format!("no standing order {id}")))?;
        if row.state != "active" {
            return Err(MarketError::Conflict(format!("standing order {id} is {}", row.state)));
        }
        store.cancel_standing(id, now)?;
        self.standing.retain(|s| s.id != id);
        tracing::info!(standing = id, "standing order cancelled");
        Ok(StandingRow { state: "cancelled".into(), cancelled_at: Some(now), ..row })
    }

    /// Give every active standing order its bid in each period open for sale that it has
    /// not come to yet. A period that ended meanwhile (the daemon was down) is skipped; one
    /// that refuses the bid (more than the network's whole capacity now) is noted in
    /// `last_error` and skipped. A store error stops here, to be tried again at the next tick.
    pub fn run_standing(&mut self, store: &mut Store, cap: &Capacity, now: i64) -> MarketResult<()> {
        let last = self.last_open(now);
        for i in 0..self.standing.len() {
            while self.standing[i].next_period <= last {
                let so = self.standing[i].clone();
                let period = so.next_period;
                let mut update = StandingUpdate {
                    id: so.id,
                    next_period: period + self.params.period_s,
                    placed: so.placed,
                    last_order_id: so.last_order_id,
                    last_error: None,
                };
                if period + self.params.period_s <= now {
                    // Ended while no one placed its bid (the daemon was down): on to now.
                    update.next_period = self.period_of(now);
                    update.last_error = Some(format!(
                        "periods {period} to {} ended before their bids were placed",
                        update.next_period - self.params.period_s
                    ));
                    tracing::warn!(standing = so.id, "{}", update.last_error.as_deref().unwrap_or_default());
                    store.record_standing(&update)?;
                    self.standing[i].next_period = update.next_period;
                    self.standing[i].last_error = update.last_error;
                    continue;
                }
                let checked = self.check_period(period, now).and_then(|end| {
                    Self::check_quantity(cap, so.quantity_rps)?;
                    Ok(end)
                });
                match checked {
                    Ok(end) => {
                        self.refresh_period(store, cap, period, now)?;
                        let req = OrderRequest {
                            period_start: period,
                            customer: so.customer.clone(),
                            price: so.price,
                            quantity_rps: so.quantity_rps,
                            tif: Tif::Gtc,
                        };
                        let (order, row) = self.new_bid(&req, end, now);
                        update.placed += 1;
                        update.last_order_id = Some(row.id);
                        let mut change = BookChange { standing: vec![update.clone()], ..Default::default() };
                        let contracts = self.submit(order, row, end, now, &mut change);
                        self.commit(store, &[period], &change, contracts)?;
                    }
                    Err(e) => {
                        tracing::warn!(standing = so.id, period, "standing order: no bid for the period: {e}");
                        update.last_error = Some(format!("period {period}: {e}"));
                        store.record_standing(&update)?;
                    }
                }
                let s = &mut self.standing[i];
                s.next_period = update.next_period;
                s.placed = update.placed;
                s.last_order_id = update.last_order_id;
                s.last_error = update.last_error;
            }
        }
        Ok(())
    }
}
