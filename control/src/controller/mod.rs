//! The traffic controller: every tick (1 s) it sets each buyer's fraction so the requests the
//! proxies serve for it approach, and stay under, what it bought, and shrink when the proxies
//! have less spare capacity at that moment. The law is in [`rule`]; the cache model in
//! [`window`]. This module holds the state of every buyer and the network-wide load feedback.
//! The simulation (`cargo xtask sim`) drives this same code through its own clock.

pub mod feed;
pub mod rule;
pub mod scrape;
pub mod window;

use std::collections::HashMap;

use self::rule::BuyerState;
pub use self::rule::{BuyerInputs, Decision, RuleParams, Why};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ControllerParams {
    pub rule: RuleParams,
    /// A fraction is written to the data plane only when it moves by at least this much (or
    /// to or from 0).
    pub min_change: f64,
}

impl Default for ControllerParams {
    fn default() -> Self {
        Self { rule: RuleParams::default(), min_change: 0.005 }
    }
}

/// The network's state this tick, for the load feedback.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetworkInputs {
    /// Requests/s the proxies can give buyers right now: over the proxies with fresh reports,
    /// `target load x capacity - own traffic`. `None` when unknown (then the last known
    /// scale is kept).
    pub spare_rps: Option<f64>,
}

/// One buyer's tick: its id, the answers its names gave since the last tick, its inputs.
#[derive(Debug, Clone)]
pub struct BuyerTick<'a> {
    pub id: &'a str,
    pub proxy_answers: u64,
    pub other_answers: u64,
    pub inputs: BuyerInputs,
}

/// A decision for one buyer, and whether it should be written to the data plane.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Output {
    pub decision: Decision,
    pub write: bool,
}

#[derive(Debug, Default)]
pub struct Controller {
    params: ControllerParams,
    buyers: HashMap<String, (BuyerState, f64)>,
    scale: f64,
    last_tick: Option<i64>,
}

impl Controller {
    pub fn new(params: ControllerParams) -> Self {
        Self { params, buyers: HashMap::new(), scale: 1.0, last_tick: None }
    }

    /// The load-feedback factor in force: spare capacity over everything sold, at most 1.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// One tick at second `now`. Outputs come in the order of `buyers`.
    pub fn tick(&mut self, now: i64, network: NetworkInputs, buyers: &[BuyerTick<'_>]) -> Vec<Output> {
        let dt = self.last_tick.map_or(1.0, |t| (now - t).max(1) as f64);
        self.last_tick = Some(now);
        let sold: f64 = buyers.iter().map(|b| b.inputs.purchased_rps.max(0.0)).sum();
        if let Some(spare) = network.spare_rps {
            self.scale = if sold > 0.0 { (spare.max(0.0) / sold).min(1.0) } else { 1.0 };
        }
        let p = self.params;
        buyers
            .iter()
            .map(|b| {
                let (state, written) =
                    self.buyers.entry(b.id.to_owned()).or_insert_with(|| (BuyerState::default(), 0.0));
                let ttl = i64::from(b.inputs.ttl_s.max(1));
                // The proxy answers since the last tick had the TTL the last decision chose.
                let proxy_ttl = if state.proxy_ttl == 0 { ttl } else { i64::from(state.proxy_ttl) };
                state.window.push(now, b.proxy_answers, b.other_answers, ttl, proxy_ttl);
                let decision = rule::step(&p.rule, state, &b.inputs, self.scale, now, dt);
                let f = decision.fraction;
                let write = (f - *written).abs() >= p.min_change
                    || ((f == 0.0) != (*written == 0.0))
                    || (f == 1.0 && *written != 1.0);
                if write {
                    *written = f;
                }
                Output { decision, write }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick<'a>(id: &'a str, purchased: f64, served: Option<f64>, proxy: u64, other: u64) -> BuyerTick<'a> {
        BuyerTick {
            id,
            proxy_answers: proxy,
            other_answers: other,
            inputs: BuyerInputs {
                purchased_rps: purchased,
                estimate: 0.5,
                served_rps: served,
                manual: None,
                ttl_s: 5,
                per_resolver: false,
            },
        }
    }

    #[test]
    fn writes_only_meaningful_moves() {
        let mut c = Controller::new(ControllerParams::default());
        let out = c.tick(0, NetworkInputs { spare_rps: Some(1e9) }, &[tick("a", 100.0, Some(0.0), 0, 0)]);
        assert!(out[0].write, "the first fraction (the estimate) is written");
        let out = c.tick(1, NetworkInputs { spare_rps: Some(1e9) }, &[tick("a", 100.0, Some(0.0), 0, 0)]);
        assert!(!out[0].write, "no change, no write");
        let out = c.tick(2, NetworkInputs { spare_rps: Some(1e9) }, &[tick("a", 0.0, None, 0, 0)]);
        assert!(out[0].write && out[0].decision.fraction == 0.0, "the contract ended");
    }

    #[test]
    fn spare_capacity_below_what_was_sold_shrinks_everyone_alike() {
        let mut c = Controller::new(ControllerParams::default());
        let b = [tick("a", 300.0, Some(0.0), 0, 0), tick("b", 100.0, Some(0.0), 0, 0)];
        c.tick(0, NetworkInputs { spare_rps: Some(200.0) }, &b);
        assert!((c.scale() - 0.5).abs() < 1e-12);
        c.tick(1, NetworkInputs { spare_rps: None }, &b);
        assert!((c.scale() - 0.5).abs() < 1e-12, "unknown keeps the last scale");
        c.tick(2, NetworkInputs { spare_rps: Some(1e6) }, &b);
        assert_eq!(c.scale(), 1.0);
    }
}
