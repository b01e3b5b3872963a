//! The controller's simulation (`cargo xtask sim`): the real [`spillway::controller`] driven
//! second by second by a simulated world ([`model`]) through a clock this module owns.
//! Deterministic from each scenario's seed. [`metrics`] turns a run into the report's
//! figures, [`plot`] into a PNG, [`scenarios`] lists what is run.

pub mod metrics;
pub mod model;
pub mod plot;
pub mod scenarios;

use spillway::controller::{BuyerInputs, BuyerTick, Controller, ControllerParams, NetworkInputs, RuleParams};

use self::model::{Pick, Proxy, Resolvers, rng};
use rand::Rng;
use spillway::dataplane::records::resolver_seed;
use spillway_common::decision::fraction_to_threshold;

/// A buyer: its resolvers, demand, contract and estimate.
#[derive(Debug, Clone)]
pub struct BuyerSpec {
    pub resolvers: usize,
    pub demand_rps: f64,
    pub purchased_rps: f64,
    /// The buyer's estimate of its share on the proxies (the initial fraction).
    pub estimate: f64,
    /// The contract: [start, end).
    pub start: i64,
    pub end: i64,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub seed: u64,
    pub duration_s: i64,
    pub ttl_s: u32,
    /// Resolver sizes: Zipf exponent and largest size (users).
    pub zipf_s: f64,
    pub max_resolver_size: u32,
    pub buyers: Vec<BuyerSpec>,
    pub proxies: Vec<Proxy>,
    /// Load a proxy should stay under; buyers get what is left below it.
    pub target_load: f64,
    /// From each time, every buyer's demand is multiplied by the factor.
    pub demand_steps: Vec<(i64, f64)>,
    /// Proxies that fail (stop serving and reporting) at a time.
    pub proxy_failures: Vec<(i64, usize)>,
    /// From each time, the network's own traffic is multiplied by the factor (above forecast).
    pub own_surges: Vec<(i64, f64)>,
    /// Standard deviation of per-second demand noise (multiplicative).
    pub noise: f64,
    /// The controller's `proxy_ttl_min_s` (0: proxy answers keep the customer's TTL).
    pub proxy_ttl_min_s: u32,
    /// The data plane's draw: `None` per query; `Some(s)` per resolver, the seed re-drawn
    /// every `s` seconds.
    pub redraw_s: Option<i64>,
    /// When a step happens, for `settle_s`.
    pub step_at: Option<i64>,
}

/// A proxy silent this long is taken as down; until then its reports are unknown.
pub const DOWN_S: i64 = 10;

/// What happened, second by second.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    /// Per buyer, per second: served, purchased, allowed (purchased x the real spare-capacity
    /// scale), demand, fraction in force.
    pub served: Vec<Vec<f64>>,
    pub purchased: Vec<Vec<f64>>,
    pub allowed: Vec<Vec<f64>>,
    pub demand: Vec<Vec<f64>>,
    pub fraction: Vec<Vec<f64>>,
    /// Data-plane writes the controller asked for.
    pub writes: u64,
    /// Queries the resolvers sent (every buyer, every second).
    pub queries: u64,
    pub largest_resolver_share: f64,
}

fn factor_at(steps: &[(i64, f64)], t: i64) -> f64 {
    steps.iter().rev().find(|(at, _)| *at <= t).map_or(1.0, |(_, f)| *f)
}

/// Run a scenario.
pub fn run(sc: &Scenario) -> Trace {
    let mut r = rng(sc.seed);
    let mut resolvers: Vec<Resolvers> = sc
        .buyers
        .iter()
        .map(|b| Resolvers::new(&mut r, b.resolvers, sc.zipf_s, sc.max_resolver_size, sc.ttl_s))
        .collect();
    let n = sc.buyers.len();
    let secs = sc.duration_s as usize;
    let mut tr = Trace {
        served: vec![Vec::with_capacity(secs); n],
        purchased: vec![Vec::with_capacity(secs); n],
        allowed: vec![Vec::with_capacity(secs); n],
        demand: vec![Vec::with_capacity(secs); n],
        fraction: vec![Vec::with_capacity(secs); n],
        largest_resolver_share: resolvers.iter().map(Resolvers::largest_share).fold(0.0, f64::max),
        ..Default::default()
    };
    let rule = RuleParams { proxy_ttl_min_s: sc.proxy_ttl_min_s, ..Default::default() };
    let mut ctl = Controller::new(ControllerParams { rule, ..Default::default() });
    let ids: Vec<String> = (0..n).map(|i| format!("b{i}")).collect();
    let mut fraction = vec![0.0; n];
    let mut proxy_ttl = vec![i64::from(sc.ttl_s); n];
    let mut answers = vec![(0u64, 0u64); n];
    // Last report: served per buyer and own per proxy, from second t-1.
    let mut last_served: Vec<f64> = vec![0.0; n];
    let mut last_own: Vec<f64> = sc.proxies.iter().map(|p| p.own_rps(0, 1.0)).collect();
    let failed_at = |k: usize| sc.proxy_failures.iter().filter(|(_, i)| *i == k).map(|(t, _)| *t).min();
    for t in 0..sc.duration_s {
        // 1. The controller, on what the reports of t-1 say.
        let silent: Vec<Option<i64>> =
            (0..sc.proxies.len()).map(|k| failed_at(k).filter(|&f| f < t).map(|f| t - f)).collect();
        // A proxy silent for less than DOWN_S is unknown (not zero): hold. After that it is down.
        let stale = silent.iter().any(|s| s.is_some_and(|age| age < DOWN_S));
        let spare = if stale {
            None
        } else {
            Some(
                sc.proxies
                    .iter()
                    .zip(&silent)
                    .filter(|(_, s)| s.is_none())
                    .zip(&last_own)
                    .map(|((p, _), own)| sc.target_load * p.capacity_rps - own)
                    .sum::<f64>(),
            )
        };
        let ticks: Vec<BuyerTick<'_>> = sc
            .buyers
            .iter()
            .enumerate()
            .map(|(b, spec)| BuyerTick {
                id: &ids[b],
                proxy_answers: answers[b].0,
                other_answers: answers[b].1,
                inputs: BuyerInputs {
                    purchased_rps: if spec.start <= t && t < spec.end { spec.purchased_rps } else { 0.0 },
                    estimate: spec.estimate,
                    served_rps: (!stale).then_some(last_served[b]),
                    manual: None,
                    ttl_s: sc.ttl_s,
                    per_resolver: sc.redraw_s.is_some(),
                },
            })
            .collect();
        for (b, out) in ctl.tick(t, NetworkInputs { spare_rps: spare }, &ticks).into_iter().enumerate() {
            let ttl = i64::from(out.decision.proxy_ttl);
            if out.write || ttl != proxy_ttl[b] {
                fraction[b] = out.decision.fraction;
                proxy_ttl[b] = ttl;
                tr.writes += 1;
            }
        }
        // 2. Resolvers whose answers expired ask again.
        for (b, res) in resolvers.iter_mut().enumerate() {
            let pick = match sc.redraw_s {
                None => Pick::Query { fraction: fraction[b] },
                // The seed the catalog writes: from the id and the period (t from 0, not Unix time).
                Some(every) => Pick::Resolver {
                    threshold: fraction_to_threshold(fraction[b]),
                    seed: resolver_seed(&ids[b], t.div_euclid(every.max(1)) as u64),
                },
            };
            answers[b] = res.requery(&mut r, t, pick, proxy_ttl[b]);
            tr.queries += answers[b].0 + answers[b].1;
        }
        // 3. Traffic in second t, and the true room for buyers.
        let demand_factor = factor_at(&sc.demand_steps, t);
        let surge = factor_at(&sc.own_surges, t);
        let healthy: Vec<bool> = (0..sc.proxies.len()).map(|k| failed_at(k).is_none_or(|f| t < f)).collect();
        let own: Vec<f64> = sc.proxies.iter().map(|p| p.own_rps(t, surge)).collect();
        let true_spare: f64 = sc
            .proxies
            .iter()
            .zip(&own)
            .zip(&healthy)
            .filter(|(_, h)| **h)
            .map(|((p, o), _)| sc.target_load * p.capacity_rps - o)
            .sum::<f64>()
            .max(0.0);
        let sold: f64 = sc.buyers.iter().filter(|s| s.start <= t && t < s.end).map(|s| s.purchased_rps).sum();
        let scale = if sold > 0.0 { (true_spare / sold).min(1.0) } else { 1.0 };
        for (b, spec) in sc.buyers.iter().enumerate() {
            let noise = 1.0 + sc.noise * (r.random::<f64>() * 2.0 - 1.0) * 1.732;
            let d = spec.demand_rps * demand_factor * noise;
            let served = d * resolvers[b].proxy_weight;
            let purchased = if spec.start <= t && t < spec.end { spec.purchased_rps } else { 0.0 };
            tr.served[b].push(served);
            tr.purchased[b].push(purchased);
            tr.allowed[b].push(purchased * scale);
            tr.demand[b].push(d);
            tr.fraction[b].push(fraction[b]);
            last_served[b] = served;
        }
        // 4. The reports of second t (failed proxies send none; clients fail over, so the
        //    healthy ones serve all of the buyers' traffic).
        last_own = own;
    }
    tr
}
