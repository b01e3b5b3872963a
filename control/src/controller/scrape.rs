//! Reading a proxy's Prometheus endpoint (`metrics_url`): the counters Spillway expects a
//! proxy to export, and the per-scrape deltas that become a report.
//!
//! - `spillway_proxy_requests_total{customer="<id>"}`: requests served for a buyer.
//! - `spillway_proxy_own_requests_total`: the network's own requests.
//!
//! Other metrics are ignored. Counters that go down (a proxy restart) count from zero again.

use std::collections::BTreeMap;

pub const BUYER_REQUESTS: &str = "spillway_proxy_requests_total";
pub const OWN_REQUESTS: &str = "spillway_proxy_own_requests_total";

/// The counters read from one scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    pub own: u64,
    pub served: BTreeMap<String, u64>,
}

/// Parse the text exposition format for the two counters; unparsable lines are skipped.
pub fn parse(text: &str) -> Counters {
    let mut c = Counters::default();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (series, rest) = match line.find('{') {
            Some(i) => match line[i..].find('}') {
                Some(j) => (&line[..i + j + 1], &line[i + j + 1..]),
                None => continue,
            },
            None => match line.split_once(char::is_whitespace) {
                Some((s, r)) => (s, r),
                None => continue,
            },
        };
        let Some(value) = rest.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()) else { continue };
        if !(value.is_finite() && value >= 0.0) {
            continue;
        }
        let (name, labels) = series.split_once('{').map_or((series, ""), |(n, l)| (n, l.trim_end_matches('}')));
        match name {
            OWN_REQUESTS => c.own += value as u64,
            BUYER_REQUESTS => {
                if let Some(customer) = label(labels, "customer") {
                    *c.served.entry(customer).or_default() += value as u64;
                }
            }
            _ => {}
        }
    }
    c
}

fn label(labels: &str, key: &str) -> Option<String> {
    labels.split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// What happened between two scrapes: (own requests, requests per buyer).
pub fn delta(prev: &Counters, now: &Counters) -> (u64, BTreeMap<String, u64>) {
    let d = |a: u64, b: u64| if b >= a { b - a } else { b };
    let served = now.served.iter().map(|(k, &v)| (k.clone(), d(prev.served.get(k).copied().unwrap_or(0), v))).collect();
    (d(prev.own, now.own), served)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_counters_and_deltas_survive_a_restart() {
        let text = "# HELP spillway_proxy_requests_total x\n# TYPE spillway_proxy_requests_total counter\n\
            spillway_proxy_requests_total{customer=\"shop\",code=\"200\"} 1500\n\
            spillway_proxy_requests_total{code=\"500\",customer=\"shop\"} 20\n\
            spillway_proxy_requests_total{customer=\"blog\"} 7 1700000000000\n\
            spillway_proxy_own_requests_total 90000\n\
            other_metric 5\nbroken{ 4\nspillway_proxy_own_requests_total NaN\n";
        let c = parse(text);
        assert_eq!(c.own, 90000);
        assert_eq!(c.served, BTreeMap::from([("blog".into(), 7), ("shop".into(), 1520)]));
        let later =
            parse("spillway_proxy_requests_total{customer=\"shop\"} 1600\nspillway_proxy_own_requests_total 10\n");
        let (own, served) = delta(&c, &later);
        assert_eq!(own, 10, "a counter that went down restarted from zero");
        assert_eq!(served["shop"], 80);
    }
}
