//! The report's figures for one run.
//!
//! - `max_overshoot_pct`: the worst 10 s window (sliding by 1 s, inside the contracts) of
//!   served over purchased, in % above 100 (0 if never above), all buyers summed.
//! - `p99_overshoot_pct`: the 99th percentile of those windows.
//! - `worst_buyer_max_overshoot_pct`, `worst_buyer_p99_overshoot_pct`: the same per buyer,
//!   the worst buyer (equal to the above with one buyer).
//! - `max_over_allowed_pct`: the same against what the proxies' spare capacity allowed.
//! - `utilization_pct`: served / purchased, summed over the seconds where a buyer's demand
//!   exceeds its purchase, after a warm-up of two TTLs from the contract's start.
//! - `utilization_of_allowed_pct`: the same against what was allowed.
//! - `settle_s`: after the scenario's step, how long until served (10 s windows, all buyers
//!   summed) is within 5% above allowed and stays there for the rest of the run (`None`
//!   without a step). Below allowed is the controller's headroom, not a failure to settle.
//! - `recovered_utilization_pct`: after the scenario's step, served / allowed from 3 TTLs
//!   after it to the contracts' end, all buyers summed (`None` without a step): how well the
//!   controller is back at work once what was cached at the step has expired.
//! - `query_factor`: the queries resolvers sent over those they would have sent with every
//!   answer at the customer's TTL (1.0: no added load from short proxy TTLs).
//! - `utilization_by_ttl_after_step_pct`: the same for each of the first 6 TTLs after the step
//!   (the first holds the overshoot of the answers cached at the step).

use serde::Serialize;

use super::{Scenario, Trace};

pub const WINDOW_S: usize = 10;

#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    pub max_overshoot_pct: f64,
    pub p99_overshoot_pct: f64,
    pub worst_buyer_max_overshoot_pct: f64,
    pub worst_buyer_p99_overshoot_pct: f64,
    pub max_over_allowed_pct: f64,
    pub utilization_pct: f64,
    pub utilization_of_allowed_pct: f64,
    pub settle_s: Option<f64>,
    pub recovered_utilization_pct: Option<f64>,
    pub utilization_by_ttl_after_step_pct: Vec<f64>,
    pub query_factor: f64,
}

/// (window start, served / base) for every 10 s window where the base is positive throughout.
fn window_ratios(served: &[f64], base: &[f64]) -> Vec<(usize, f64)> {
    (0..served.len().saturating_sub(WINDOW_S - 1))
        .filter(|&i| base[i..i + WINDOW_S].iter().all(|&p| p > 0.0))
        .map(|i| (i, served[i..i + WINDOW_S].iter().sum::<f64>() / base[i..i + WINDOW_S].iter().sum::<f64>()))
        .collect()
}

fn over_pct(ratio: f64) -> f64 {
    ((ratio - 1.0) * 100.0).max(0.0)
}

fn p99(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { 0.0 } else { v[((v.len() - 1) as f64 * 0.99).round() as usize] }
}

fn summed(v: &[Vec<f64>]) -> Vec<f64> {
    let len = v.first().map_or(0, Vec::len);
    (0..len).map(|t| v.iter().map(|x| x[t]).sum()).collect()
}

pub fn figures(sc: &Scenario, tr: &Trace) -> Figures {
    let total: Vec<f64> =
        window_ratios(&summed(&tr.served), &summed(&tr.purchased)).into_iter().map(|(_, r)| over_pct(r)).collect();
    let (mut worst_max, mut worst_p99) = (0.0f64, 0.0f64);
    let mut max_allowed = 0.0f64;
    let (mut used, mut bought, mut allowed_sum) = (0.0, 0.0, 0.0);
    let warmup = 2 * i64::from(sc.ttl_s);
    for (b, spec) in sc.buyers.iter().enumerate() {
        let w: Vec<f64> =
            window_ratios(&tr.served[b], &tr.purchased[b]).into_iter().map(|(_, r)| over_pct(r)).collect();
        worst_max = w.iter().copied().fold(worst_max, f64::max);
        worst_p99 = worst_p99.max(p99(w));
        for (_, r) in window_ratios(&tr.served[b], &tr.allowed[b]) {
            max_allowed = max_allowed.max(over_pct(r));
        }
        for t in 0..tr.served[b].len() {
            let p = tr.purchased[b][t];
            if p > 0.0 && t as i64 >= spec.start + warmup && tr.demand[b][t] > p {
                used += tr.served[b][t];
                bought += p;
                allowed_sum += tr.allowed[b][t];
            }
        }
    }
    let settle_s = sc.step_at.map(|at| settle(tr, at as usize));
    let ttl = sc.ttl_s as usize;
    let end = sc.buyers.iter().map(|b| b.end).max().unwrap_or(0).max(0) as usize;
    let recovered_utilization_pct = sc.step_at.map(|at| utilization_of_allowed(tr, at as usize + 3 * ttl, end));
    let utilization_by_ttl_after_step_pct = sc.step_at.map_or(Vec::new(), |at| {
        let at = at as usize;
        (0..6).map(|k| utilization_of_allowed(tr, at + k * ttl, (at + (k + 1) * ttl).min(end))).collect()
    });
    Figures {
        max_overshoot_pct: total.iter().copied().fold(0.0, f64::max),
        p99_overshoot_pct: p99(total),
        worst_buyer_max_overshoot_pct: worst_max,
        worst_buyer_p99_overshoot_pct: worst_p99,
        max_over_allowed_pct: max_allowed,
        utilization_pct: if bought > 0.0 { used / bought * 100.0 } else { 0.0 },
        utilization_of_allowed_pct: if allowed_sum > 0.0 { used / allowed_sum * 100.0 } else { 0.0 },
        settle_s,
        recovered_utilization_pct,
        utilization_by_ttl_after_step_pct,
        query_factor: {
            let at_ttl: f64 = sc.buyers.iter().map(|b| b.resolvers as f64).sum::<f64>() * sc.duration_s as f64
                / f64::from(sc.ttl_s.max(1));
            if at_ttl > 0.0 { tr.queries as f64 / at_ttl } else { 0.0 }
        },
    }
}

/// Summed served over summed allowed in the seconds `from..to`, in % (0 if nothing allowed).
fn utilization_of_allowed(tr: &Trace, from: usize, to: usize) -> f64 {
    let (served, allowed) = (summed(&tr.served), summed(&tr.allowed));
    let to = to.min(served.len());
    let (s, a) = (from..to).fold((0.0, 0.0), |(s, a), t| (s + served[t], a + allowed[t]));
    if a > 0.0 { s / a * 100.0 } else { 0.0 }
}

/// Seconds after `at` until the summed served stays at or under 105% of allowed.
fn settle(tr: &Trace, at: usize) -> f64 {
    let ratios = window_ratios(&summed(&tr.served), &summed(&tr.allowed));
    // A window starting before the step may still end after it.
    let from = at.saturating_sub(WINDOW_S - 1);
    ratios
        .iter()
        .filter(|&&(i, r)| i >= from && r > 1.05)
        .map(|&(i, _)| (i + WINDOW_S).saturating_sub(at))
        .max()
        .unwrap_or(0) as f64
}
