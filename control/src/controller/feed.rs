//! What the proxies say, as rates: each report (pushed to `POST /v1/proxies/{name}/report`,
//! or scraped from the proxy's metrics) gives requests since the proxy's previous report;
//! divided by the time between them, they are requests/s. A proxy's numbers are fresh for
//! `stale_s`; after that they are unknown (not zero) until `down_s`, when the proxy counts as
//! down and drops out (its capacity too).

use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, Default)]
struct ProxyRates {
    /// When the last report came (seconds since the epoch, with fraction).
    at: Option<f64>,
    /// When the proxy last answered a scrape, with numbers or without (a mapping that matches
    /// nothing): alive, its numbers unknown.
    heard_at: Option<f64>,
    /// Rates from the last two reports (none after the first).
    own_rps: Option<f64>,
    served_rps: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Default)]
pub struct ProxyFeed {
    proxies: HashMap<String, ProxyRates>,
}

/// The proxies' state at one moment, for the controller.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeedSnapshot {
    /// Requests/s served per buyer over the fresh proxies; `None` when some proxy is stale
    /// (unknown) or none has reported rates yet.
    pub served: Option<HashMap<String, f64>>,
    /// `target load x capacity - own traffic` over the fresh proxies; `None` as above.
    pub spare_rps: Option<f64>,
    pub fresh: usize,
    pub stale: usize,
    pub down: usize,
}

impl ProxyFeed {
    /// A report at `at`: requests since the previous report (over `interval_s` if the proxy
    /// says, else the time since its previous report).
    pub fn report(
        &mut self,
        proxy: &str,
        at: f64,
        interval_s: Option<f64>,
        own_requests: u64,
        served: &BTreeMap<String, u64>,
    ) {
        let p = self.proxies.entry(proxy.to_owned()).or_default();
        let span = interval_s.or(p.at.map(|prev| at - prev)).filter(|s| *s > 0.0);
        p.at = Some(at);
        match span {
            Some(s) => {
                p.own_rps = Some(own_requests as f64 / s);
                p.served_rps = served.iter().map(|(c, &n)| (c.clone(), n as f64 / s)).collect();
            }
            // The first report only starts the clock.
            None => {
                p.own_rps = None;
                p.served_rps.clear();
            }
        }
    }

    /// When `proxy` last reported, and its load then: own and buyers' requests/s (`None`
    /// until it has rates).
    pub fn last(&self, proxy: &str) -> Option<(f64, Option<f64>)> {
        let p = self.proxies.get(proxy)?;
        Some((p.at?, p.own_rps.map(|own| own + p.served_rps.values().sum::<f64>())))
    }

    /// The proxy answered at `at` but gave no numbers: alive, not reporting.
    pub fn heard(&mut self, proxy: &str, at: f64) {
        self.proxies.entry(proxy.to_owned()).or_default().heard_at = Some(at);
    }

    /// When the proxy was last heard from: a report, or an answer without numbers.
    pub fn heard_at(&self, proxy: &str) -> Option<f64> {
        let p = self.proxies.get(proxy)?;
        match (p.at, p.heard_at) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// A proxy removed: its reports go with it.
    pub fn forget(&mut self, proxy: &str) {
        self.proxies.remove(proxy);
    }

    pub fn snapshot(
        &self,
        now: f64,
        capacity: &BTreeMap<String, u64>,
        target_load: f64,
        stale_s: f64,
        down_s: f64,
    ) -> FeedSnapshot {
        let mut s = FeedSnapshot::default();
        let mut served: HashMap<String, f64> = HashMap::new();
        let mut spare = 0.0;
        let mut rated = 0;
        for (name, cap) in capacity {
            let Some(p) = self.proxies.get(name).filter(|p| p.at.is_some_and(|at| now - at < down_s)) else {
                s.down += 1;
                continue;
            };
            if p.at.is_some_and(|at| now - at > stale_s) {
                s.stale += 1;
                continue;
            }
            s.fresh += 1;
            if let Some(own) = p.own_rps {
                rated += 1;
                spare += target_load * *cap as f64 - own;
                for (c, r) in &p.served_rps {
                    *served.entry(c.clone()).or_default() += r;
                }
            }
        }
        if s.stale == 0 && rated > 0 && rated == s.fresh {
            s.served = Some(served);
            s.spare_rps = Some(spare.max(0.0));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps() -> BTreeMap<String, u64> {
        BTreeMap::from([("a".to_owned(), 1000), ("b".to_owned(), 1000)])
    }

    fn served(n: u64) -> BTreeMap<String, u64> {
        BTreeMap::from([("shop".to_owned(), n)])
    }

    #[test]
    fn rates_freshness_and_down() {
        let mut f = ProxyFeed::default();
        // Nothing reported: both down, nothing known.
        let s = f.snapshot(100.0, &caps(), 0.9, 3.0, 10.0);
        assert_eq!((s.down, s.served.is_none()), (2, true));
        // First reports only start the clock.
        f.report("a", 100.0, None, 500, &served(50));
        f.report("b", 100.0, None, 500, &served(50));
        assert!(f.snapshot(100.5, &caps(), 0.9, 3.0, 10.0).served.is_none());
        f.report("a", 101.0, None, 300, &served(100));
        f.report("b", 101.0, Some(2.0), 400, &served(100));
        let s = f.snapshot(101.5, &caps(), 0.9, 3.0, 10.0);
        assert_eq!(s.served.as_ref().unwrap()["shop"], 150.0);
        assert_eq!(s.spare_rps, Some(900.0 - 300.0 + 900.0 - 200.0));
        // b goes quiet: unknown, then down (and out of the spare).
        f.report("a", 106.0, None, 500, &served(500));
        let s = f.snapshot(106.0, &caps(), 0.9, 3.0, 10.0);
        assert_eq!((s.stale, s.served.is_none(), s.spare_rps.is_none()), (1, true, true));
        f.report("a", 112.0, Some(1.0), 100, &served(40));
        let s = f.snapshot(112.0, &caps(), 0.9, 3.0, 10.0);
        assert_eq!((s.down, s.fresh), (1, 1));
        assert_eq!(s.served.unwrap()["shop"], 40.0);
        assert_eq!(s.spare_rps, Some(800.0));
    }
}
