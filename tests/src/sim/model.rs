//! The simulated world: resolvers of Zipf-distributed sizes caching each buyer's answer for
//! its TTL (proxy answers may carry a shorter one than the customer's), users behind them
//! sending requests, proxies with capacities and their own
//! diurnal traffic, and the reports the proxies send. Deterministic from a seed; no network.

use rand::{Rng, SeedableRng, rngs::StdRng};
use spillway_common::decision::{mix64, resolver_draw, subnet_key_v4};

/// One buyer's resolver population.
pub struct Resolvers {
    /// Each resolver's share of the buyer's users (sums to 1).
    pub weight: Vec<f64>,
    /// Whether the answer it holds points at the proxies.
    pub on_proxy: Vec<bool>,
    /// `wheel[s]`: resolvers whose cached answer expires at the second `t` with
    /// `t mod wheel.len() = s` (one slot more than the customer's TTL, so that an answer of
    /// any TTL up to it lands in another slot than the one being asked).
    wheel: Vec<Vec<u32>>,
    /// The customer's TTL.
    ttl: i64,
    /// Sum of the weights of resolvers on the proxies.
    pub proxy_weight: f64,
    /// Each resolver's prefix key, as the data plane computes it from the source address.
    pub keys: Vec<u64>,
}

/// How an asking resolver's side is drawn: the data plane's two modes.
#[derive(Debug, Clone, Copy)]
pub enum Pick {
    /// Each query on its own: proxies with probability `fraction`.
    Query { fraction: f64 },
    /// Each resolver by [`resolver_draw`] of its key under `seed`, against `threshold`.
    Resolver { threshold: u64, seed: u32 },
}

/// A sample from the Zipf distribution on 1..=max with exponent `s` (inverse CDF on a table).
fn zipf_table(s: f64, max: u32) -> Vec<f64> {
    let mut cdf = Vec::with_capacity(max as usize);
    let mut acc = 0.0;
    for k in 1..=max {
        acc += 1.0 / f64::from(k).powf(s);
        cdf.push(acc);
    }
    for c in &mut cdf {
        *c /= acc;
    }
    cdf
}

impl Resolvers {
    /// `n` resolvers with sizes drawn from Zipf(`s`) on 1..=`max_size` users, their cache
    /// expiries spread uniformly over the TTL; none on the proxies yet.
    pub fn new(rng: &mut StdRng, n: usize, s: f64, max_size: u32, ttl: u32) -> Self {
        let cdf = zipf_table(s, max_size);
        let sizes: Vec<f64> = (0..n)
            .map(|_| {
                let u: f64 = rng.random();
                (cdf.partition_point(|&c| c < u) + 1) as f64
            })
            .collect();
        let total: f64 = sizes.iter().sum();
        let ttl = ttl.max(1) as usize;
        let mut wheel = vec![Vec::new(); ttl + 1];
        for i in 0..n {
            wheel[rng.random_range(0..ttl)].push(i as u32);
        }
        Self {
            weight: sizes.iter().map(|s| s / total).collect(),
            on_proxy: vec![false; n],
            wheel,
            ttl: ttl as i64,
            proxy_weight: 0.0,
            // Not from `rng`: the draws of the scenarios stay what they were before keys.
            keys: (0..n as u64).map(|i| subnet_key_v4((mix64(i) as u32).to_be_bytes())).collect(),
        }
    }

    /// The resolvers whose answer expires at second `t` ask again; each gets the proxies as
    /// `pick` says, with TTL `proxy_ttl` (1 to the customer's), and otherwise the customer's
    /// TTL. Returns (proxy answers, other answers).
    pub fn requery(&mut self, rng: &mut StdRng, t: i64, pick: Pick, proxy_ttl: i64) -> (u64, u64) {
        let len = self.wheel.len() as i64;
        let slot = t.rem_euclid(len) as usize;
        let proxy_ttl = proxy_ttl.clamp(1, self.ttl);
        let (mut p, mut o) = (0, 0);
        for i in std::mem::take(&mut self.wheel[slot]) {
            let proxy = match pick {
                Pick::Query { fraction } => rng.random::<f64>() < fraction,
                Pick::Resolver { threshold, seed } => u64::from(resolver_draw(self.keys[i as usize], seed)) < threshold,
            };
            let next = if proxy { proxy_ttl } else { self.ttl };
            self.wheel[(t + next).rem_euclid(len) as usize].push(i);
            let i = i as usize;
            if proxy != self.on_proxy[i] {
                self.proxy_weight += if proxy { self.weight[i] } else { -self.weight[i] };
                self.on_proxy[i] = proxy;
            }
            if proxy {
                p += 1;
            } else {
                o += 1;
            }
        }
        (p, o)
    }

    /// The largest resolver's share of the users.
    pub fn largest_share(&self) -> f64 {
        self.weight.iter().copied().fold(0.0, f64::max)
    }
}

/// A proxy server: capacity and its own traffic over the day.
#[derive(Debug, Clone, Copy)]
pub struct Proxy {
    pub capacity_rps: f64,
    pub own_base_rps: f64,
    /// Diurnal swing of own traffic (0.2 = +-20%).
    pub diurnal: f64,
    /// Length of the simulated "day", seconds (compressed so a run sees a swing).
    pub day_s: f64,
}

impl Proxy {
    pub fn own_rps(&self, t: i64, surge: f64) -> f64 {
        let phase = t as f64 / self.day_s * std::f64::consts::TAU;
        self.own_base_rps * (1.0 + self.diurnal * phase.sin()) * surge
    }
}

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_sizes_are_skewed_and_requery_follows_the_fraction() {
        let mut r = rng(1);
        let mut res = Resolvers::new(&mut r, 5000, 1.2, 10_000, 10);
        assert!((res.weight.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        let mut sorted = res.weight.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        // The top 1% of resolvers hold far more than 1% of the users.
        let top: f64 = sorted[..50].iter().sum();
        assert!(top > 0.1, "top 1% hold {top}");
        let (mut p, mut o) = (0, 0);
        for t in 0..10 {
            let (a, b) = res.requery(&mut r, t, Pick::Query { fraction: 0.3 }, 10);
            p += a;
            o += b;
        }
        assert_eq!(p + o, 5000, "each resolver asks once per TTL");
        let share = p as f64 / 5000.0;
        assert!((share - 0.3).abs() < 0.03, "{share}");
    }

    /// Proxy answers with a shorter TTL are asked for again sooner: a resolver holds each
    /// answer for its TTL, so the share holding a proxy answer is `f·tp / (f·tp + (1 - f)·T)`.
    #[test]
    fn resolvers_honour_the_proxy_answers_ttl() {
        let mut r = rng(2);
        let mut res = Resolvers::new(&mut r, 20_000, 1.2, 10, 30);
        let (f, tp) = (0.7, 5);
        let mut asked = 0;
        for t in 0..300 {
            let (a, b) = res.requery(&mut r, t, Pick::Query { fraction: f }, tp);
            asked += a + b;
        }
        let held = res.on_proxy.iter().filter(|&&x| x).count() as f64 / 20_000.0;
        let want = f * 5.0 / (f * 5.0 + (1.0 - f) * 30.0);
        assert!((held - want).abs() < 0.02, "held {held}, want {want}");
        // Queries: the proxy holders ask 6 times as often.
        let per_s = asked as f64 / 300.0;
        let want_per_s = 20_000.0 * (want / 5.0 + (1.0 - want) / 30.0);
        assert!((per_s / want_per_s - 1.0).abs() < 0.05, "{per_s} against {want_per_s}");
    }
}
