//! Reading a proxy's Prometheus endpoint (`metrics_url`): which series count its requests (the
//! mapping, configurable per proxy or for all), and the per-scrape deltas that become a report.
//!
//! The default mapping is Spillway's own exporter convention:
//! - `spillway_proxy_requests_total{customer="<id>"}`: requests served for a buyer;
//! - `spillway_proxy_own_requests_total`: the network's own requests.
//!
//! HAProxy's built-in exporter is mapped with `haproxy_backend_http_requests_total`, label
//! `proxy` (the backend: one per buyer, named by its id or mapped by `buyers`). Other series
//! are ignored. Counters that go down (a proxy restart) count from zero again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const BUYER_REQUESTS: &str = "spillway_proxy_requests_total";
pub const OWN_REQUESTS: &str = "spillway_proxy_own_requests_total";

/// Which series of a proxy's endpoint count what it serves.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsMapping {
    /// Requests served per buyer.
    pub served: ServedSeries,
    /// The network's own requests (none: the proxy reports none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub own: Option<OwnSeries>,
}

/// A counter whose `label` names the buyer: its id, or a key of `buyers` (label value -> id).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServedSeries {
    pub metric: String,
    pub label: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub buyers: BTreeMap<String, String>,
}

/// A counter summed over its series; with `label`, only the series whose label is one of
/// `values`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OwnSeries {
    pub metric: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

impl Default for MetricsMapping {
    fn default() -> Self {
        MetricsMapping {
            served: ServedSeries { metric: BUYER_REQUESTS.into(), label: "customer".into(), buyers: BTreeMap::new() },
            own: Some(OwnSeries { metric: OWN_REQUESTS.into(), label: None, values: Vec::new() }),
        }
    }
}

fn is_metric_name(s: &str) -> bool {
    let mut b = s.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

fn is_label_name(s: &str) -> bool {
    !s.contains(':') && is_metric_name(s)
}

impl MetricsMapping {
    /// What is wrong with the mapping, as (key under it, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut v = Vec::new();
        let metric = |v: &mut Vec<(String, String)>, key: &str, m: &str| {
            if !is_metric_name(m) {
                v.push((key.into(), format!("{m:?} is not a Prometheus metric name")));
            }
        };
        metric(&mut v, "served.metric", &self.served.metric);
        if !is_label_name(&self.served.label) {
            v.push(("served.label".into(), format!("{:?} is not a Prometheus label name", self.served.label)));
        }
        if self.served.buyers.iter().any(|(k, id)| k.is_empty() || id.is_empty()) {
            v.push(("served.buyers".into(), "label values and buyer ids must not be empty".into()));
        }
        if let Some(own) = &self.own {
            metric(&mut v, "own.metric", &own.metric);
            match &own.label {
                Some(l) if !is_label_name(l) => {
                    v.push(("own.label".into(), format!("{l:?} is not a Prometheus label name")))
                }
                None if !own.values.is_empty() => v.push(("own.values".into(), "needs own.label".into())),
                _ => {}
            }
        }
        v
    }
}

/// The counters read from one scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    pub own: u64,
    pub served: BTreeMap<String, u64>,
}

/// The samples of the text exposition format: (metric name, labels as written, value); lines
/// that do not parse and values that are not finite and non-negative are skipped.
pub fn samples(text: &str) -> impl Iterator<Item = (&str, &str, f64)> {
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).filter_map(|line| {
        let (series, rest) = match line.find('{') {
            Some(i) => {
                let j = line[i..].find('}')?;
                (&line[..i + j + 1], &line[i + j + 1..])
            }
            None => line.split_once(char::is_whitespace)?,
        };
        let value = rest.split_whitespace().next().and_then(|v| v.parse::<f64>().ok())?;
        if !(value.is_finite() && value >= 0.0) {
            return None;
        }
        let (name, labels) = series.split_once('{').map_or((series, ""), |(n, l)| (n, l.trim_end_matches('}')));
        Some((name, labels, value))
    })
}

/// Parse the text exposition format for the mapped counters; unparsable lines are skipped.
/// `None` when no series of the mapped metrics is there at all (the mapping matches nothing:
/// the proxy's numbers are unknown, not zero).
pub fn parse(text: &str, mapping: &MetricsMapping) -> Option<Counters> {
    let mut c = Counters::default();
    let mut matched = false;
    for (name, labels, value) in samples(text) {
        if let Some(own) = &mapping.own
            && name == own.metric
        {
            matched = true;
            let counts = match &own.label {
                None => true,
                Some(l) => label(labels, l).is_some_and(|v| own.values.iter().any(|w| w == v)),
            };
            if counts {
                c.own += value as u64;
            }
        }
        if name == mapping.served.metric {
            matched = true;
            if let Some(v) = label(labels, &mapping.served.label) {
                let buyer = mapping.served.buyers.get(v).cloned().unwrap_or_else(|| v.to_owned());
                *c.served.entry(buyer).or_default() += value as u64;
            }
        }
    }
    matched.then_some(c)
}

/// The value of label `key` in `labels` (as [`samples`] gives them).
pub fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    labels.split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"'))
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
        let c = parse(text, &MetricsMapping::default()).unwrap();
        assert_eq!(c.own, 90000);
        assert_eq!(c.served, BTreeMap::from([("blog".into(), 7), ("shop".into(), 1520)]));
        let later = parse(
            "spillway_proxy_requests_total{customer=\"shop\"} 1600\nspillway_proxy_own_requests_total 10\n",
            &MetricsMapping::default(),
        )
        .unwrap();
        let (own, served) = delta(&c, &later);
        assert_eq!(own, 10, "a counter that went down restarted from zero");
        assert_eq!(served["shop"], 80);
    }

    /// HAProxy 2.6's exporter, as it prints backends: one per buyer (one renamed), the
    /// network's own sites in their own backends.
    #[test]
    fn haproxy_backends_map_to_buyers_and_own_traffic() {
        let text = "# TYPE haproxy_backend_http_requests_total counter\n\
            haproxy_backend_http_requests_total{proxy=\"shop\"} 120\n\
            haproxy_backend_http_requests_total{proxy=\"be_blog\"} 30\n\
            haproxy_backend_http_requests_total{proxy=\"www\"} 500\n\
            haproxy_backend_http_requests_total{proxy=\"static\"} 70\n\
            haproxy_frontend_http_requests_total{proxy=\"fe\"} 999\n";
        let mapping = MetricsMapping {
            served: ServedSeries {
                metric: "haproxy_backend_http_requests_total".into(),
                label: "proxy".into(),
                buyers: BTreeMap::from([("be_blog".into(), "blog".into())]),
            },
            own: Some(OwnSeries {
                metric: "haproxy_backend_http_requests_total".into(),
                label: Some("proxy".into()),
                values: vec!["www".into(), "static".into()],
            }),
        };
        assert!(mapping.problems().is_empty());
        let c = parse(text, &mapping).unwrap();
        assert_eq!(c.own, 570);
        assert_eq!((c.served["shop"], c.served["blog"]), (120, 30), "{c:?}");
        // The default mapping finds nothing of Spillway's in HAProxy's exporter: unknown.
        assert_eq!(parse(text, &MetricsMapping::default()), None);
        // Bad names are caught.
        let bad = MetricsMapping {
            served: ServedSeries { metric: "1x".into(), label: "a:b".into(), buyers: BTreeMap::new() },
            own: Some(OwnSeries { metric: "ok".into(), label: None, values: vec!["www".into()] }),
        };
        let keys: Vec<String> = bad.problems().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["served.metric", "served.label", "own.values"]);
    }
}
