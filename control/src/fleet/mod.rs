//! The proxy fleet: every proxy (from the config file, or added through the API), whether it
//! is drained, its health check, and which of them the answers may name now.
//!
//! A proxy leaves the answers when it is drained, fails its health check (`fall` failures in
//! a row), or goes silent (a proxy that reports, pushed or scraped, says nothing for
//! `controller.proxy_down_s`). One above its target load (`controller.target_load` x capacity,
//! by its last report) is left out too, as long as a proxy of the same family below it
//! remains: per-proxy load is relieved before the controller shrinks the buyers. A family
//! with no proxy left answers with the overflow (`spillway_common::decision`).

pub mod health;
pub mod watch;

use std::net::IpAddr;

use serde::Serialize;
use spillway_common::maps::MAX_PROXY_ADDRS;

use self::health::CheckState;
use crate::{config::ProxyConfig, controller::feed::ProxyFeed};

/// Where a proxy is defined: the config file's stay as the file says (drain and capacity
/// aside); the API's are stored and may be changed or removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Config,
    Api,
}

/// Whether the answers may name a proxy, and if not, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Answering,
    Drained,
    CheckFailed,
    Silent,
    Hot,
}

#[derive(Debug, Clone)]
pub struct FleetProxy {
    pub config: ProxyConfig,
    pub source: Source,
    pub drained: bool,
    pub check: CheckState,
    /// Since when the proxy is watched (start, or when added): its silence counts from here
    /// until its first report.
    pub watched_since: f64,
    /// Load (requests/s, own and buyers') by its last report with rates.
    pub load_rps: Option<f64>,
    pub status: Status,
}

/// A change of a proxy's status, for the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub proxy: String,
    pub from: Status,
    pub to: Status,
}

#[derive(Debug, Clone, Default)]
pub struct Fleet {
    /// In order: the config file's, then the API's as added.
    proxies: Vec<FleetProxy>,
}

impl Fleet {
    pub fn insert(&mut self, config: ProxyConfig, source: Source, drained: bool, now: f64) {
        let check = CheckState::default();
        self.proxies.push(FleetProxy {
            config,
            source,
            drained,
            check,
            watched_since: now,
            load_rps: None,
            status: if drained { Status::Drained } else { Status::Answering },
        });
    }

    pub fn get(&self, name: &str) -> Option<&FleetProxy> {
        self.proxies.iter().find(|p| p.config.name == name)
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut FleetProxy> {
        self.proxies.iter_mut().find(|p| p.config.name == name)
    }

    pub fn remove(&mut self, name: &str) -> Option<FleetProxy> {
        let at = self.proxies.iter().position(|p| p.config.name == name)?;
        Some(self.proxies.remove(at))
    }

    pub fn proxies(&self) -> &[FleetProxy] {
        &self.proxies
    }

    /// Why `candidate` cannot join the fleet as it is (replacing the proxy of its name, if
    /// any): an address another proxy has, or more addresses of a family than the data plane
    /// holds. The proxy's own rules are `ProxyConfig::problems`.
    pub fn conflicts(&self, candidate: &ProxyConfig) -> Vec<String> {
        let others = || self.proxies.iter().filter(|p| p.config.name != candidate.name);
        let mut v = Vec::new();
        for a in &candidate.addresses {
            if let Some(o) = others().find(|p| p.config.addresses.contains(a)) {
                v.push(format!("address {a} is proxy {:?}'s", o.config.name));
            }
        }
        let count = |v6: bool| {
            let family = |addrs: &[IpAddr]| addrs.iter().filter(|a| a.is_ipv6() == v6).count();
            others().map(|p| family(&p.config.addresses)).sum::<usize>() + family(&candidate.addresses)
        };
        for (family, v6) in [("IPv4", false), ("IPv6", true)] {
            if count(v6) > MAX_PROXY_ADDRS {
                v.push(format!("the proxies would have more than {MAX_PROXY_ADDRS} {family} addresses"));
            }
        }
        v
    }

    /// Judge every proxy at `now` and return the addresses the answers may name (IPv4 then
    /// IPv6, each in fleet order), with the proxies whose status changed.
    pub fn evaluate(
        &mut self,
        now: f64,
        feed: &ProxyFeed,
        target_load: f64,
        down_s: f64,
    ) -> (Vec<IpAddr>, Vec<Transition>) {
        // Drained, failed or silent proxies are out whatever their load.
        let mut usable = Vec::with_capacity(self.proxies.len());
        for p in &mut self.proxies {
            let last = feed.last(&p.config.name);
            p.load_rps = last.and_then(|(_, load)| load);
            let monitored = p.config.metrics_url.is_some() || last.is_some();
            let heard = feed.heard_at(&p.config.name).map_or(p.watched_since, |at| at.max(p.watched_since));
            let out = if p.drained {
                Some(Status::Drained)
            } else if !p.check.up() {
                Some(Status::CheckFailed)
            } else if monitored && now - heard >= down_s {
                Some(Status::Silent)
            } else {
                None
            };
            let hot = p.load_rps.is_some_and(|l| l > target_load * p.config.capacity_rps as f64);
            usable.push((out, hot));
        }
        let mut chosen = Vec::new();
        let mut left_out_hot = vec![false; self.proxies.len()];
        for v6 in [false, true] {
            let has = |p: &FleetProxy| p.config.addresses.iter().any(|a| a.is_ipv6() == v6);
            let candidates: Vec<usize> =
                (0..self.proxies.len()).filter(|&i| usable[i].0.is_none() && has(&self.proxies[i])).collect();
            let any_cool = candidates.iter().any(|&i| !usable[i].1);
            for i in candidates {
                if any_cool && usable[i].1 {
                    left_out_hot[i] = true;
                    continue;
                }
                chosen.extend(self.proxies[i].config.addresses.iter().filter(|a| a.is_ipv6() == v6));
            }
        }
        let mut changes = Vec::new();
        for (i, p) in self.proxies.iter_mut().enumerate() {
            let status = usable[i].0.unwrap_or(if left_out_hot[i] { Status::Hot } else { Status::Answering });
            if status != p.status {
                changes.push(Transition { proxy: p.config.name.clone(), from: p.status, to: status });
                p.status = status;
            }
        }
        (chosen, changes)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn proxy(name: &str, addrs: &[&str], metrics: bool) -> ProxyConfig {
        ProxyConfig {
            name: name.into(),
            addresses: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            capacity_rps: 1000,
            metrics_url: metrics.then(|| format!("http://{name}.test/metrics")),
            metrics: None,
            health: None,
        }
    }

    fn v4(set: &[IpAddr]) -> Vec<String> {
        set.iter().filter(|a| a.is_ipv4()).map(|a| a.to_string()).collect()
    }

    fn v6_len(set: &[IpAddr]) -> usize {
        set.iter().filter(|a| a.is_ipv6()).count()
    }

    fn fleet() -> Fleet {
        let mut f = Fleet::default();
        f.insert(proxy("a", &["192.0.2.1", "2001:db8::1"], false), Source::Config, false, 0.0);
        f.insert(proxy("b", &["192.0.2.2"], true), Source::Config, false, 0.0);
        f.insert(proxy("c", &["192.0.2.3"], false), Source::Api, false, 0.0);
        f
    }

    fn report(feed: &mut ProxyFeed, name: &str, at: f64, requests: u64) {
        feed.report(name, at, Some(1.0), requests, &BTreeMap::new());
    }

    #[test]
    fn drained_failed_and_silent_proxies_leave_the_answers() {
        let mut f = fleet();
        let mut feed = ProxyFeed::default();
        let (set, changes) = f.evaluate(1.0, &feed, 0.9, 10.0);
        assert_eq!((v4(&set), v6_len(&set)), (vec!["192.0.2.1".into(), "192.0.2.2".into(), "192.0.2.3".into()], 1));
        assert!(changes.is_empty());
        // b is scraped but says nothing for proxy_down_s (from when it was first watched).
        let (set, changes) = f.evaluate(10.0, &feed, 0.9, 10.0);
        assert_eq!(v4(&set), ["192.0.2.1", "192.0.2.3"]);
        assert_eq!(changes, [Transition { proxy: "b".into(), from: Status::Answering, to: Status::Silent }]);
        report(&mut feed, "b", 10.5, 10);
        assert_eq!(v4(&f.evaluate(11.0, &feed, 0.9, 10.0).0), ["192.0.2.1", "192.0.2.2", "192.0.2.3"]);
        // c never reports and has no metrics: only its check or a drain takes it out.
        f.get_mut("c").unwrap().drained = true;
        let a = f.get_mut("a").unwrap();
        for _ in 0..2 {
            a.check.record(false, 2, 2);
        }
        let (set, changes) = f.evaluate(12.0, &feed, 0.9, 10.0);
        assert_eq!((v4(&set), v6_len(&set)), (vec!["192.0.2.2".into()], 0), "a's IPv6 went with it");
        assert_eq!(changes.iter().map(|t| t.to).collect::<Vec<_>>(), [Status::CheckFailed, Status::Drained]);
        // b silent too: IPv4 has no proxy left (the answers overflow).
        let (set, _) = f.evaluate(30.0, &feed, 0.9, 10.0);
        assert!(set.is_empty());
    }

    #[test]
    fn a_hot_proxy_is_left_out_while_a_cool_one_of_its_family_remains() {
        let mut f = fleet();
        let mut feed = ProxyFeed::default();
        report(&mut feed, "a", 1.0, 0);
        report(&mut feed, "b", 1.0, 950); // above 0.9 x 1000
        report(&mut feed, "c", 1.0, 100);
        let (set, changes) = f.evaluate(1.5, &feed, 0.9, 10.0);
        assert_eq!(v4(&set), ["192.0.2.1", "192.0.2.3"]);
        assert_eq!(changes, [Transition { proxy: "b".into(), from: Status::Answering, to: Status::Hot }]);
        assert_eq!(f.get("b").unwrap().load_rps, Some(950.0));
        // All hot: all kept (the controller shrinks the buyers).
        report(&mut feed, "a", 2.0, 990);
        report(&mut feed, "c", 2.0, 990);
        report(&mut feed, "b", 2.0, 990);
        let (set, _) = f.evaluate(2.5, &feed, 0.9, 10.0);
        assert_eq!((v4(&set).len(), v6_len(&set)), (3, 1));
        // Back under: back in.
        report(&mut feed, "b", 3.0, 500);
        let (_, changes) = f.evaluate(3.5, &feed, 0.9, 10.0);
        assert_eq!(changes.iter().filter(|t| t.to == Status::Hot).count(), 2, "a and c are hot now, b is not");
        assert_eq!(f.get("b").unwrap().status, Status::Answering);
    }

    #[test]
    fn conflicts_are_shared_addresses_and_full_families() {
        let f = fleet();
        assert!(f.conflicts(&proxy("a", &["192.0.2.1"], false)).is_empty(), "its own address");
        assert_eq!(f.conflicts(&proxy("d", &["192.0.2.2"], false)), ["address 192.0.2.2 is proxy \"b\"'s"]);
        let many: Vec<String> = (0..MAX_PROXY_ADDRS).map(|i| format!("10.0.0.{}", i + 1)).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let e = f.conflicts(&proxy("d", &many, false));
        assert_eq!(e, [format!("the proxies would have more than {MAX_PROXY_ADDRS} IPv4 addresses")]);
    }
}
