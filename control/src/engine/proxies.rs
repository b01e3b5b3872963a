//! The engine's proxy operations: the fleet loaded at start, proxies added, changed, drained
//! and removed through the API (stored first, then in memory, then in the answers), health
//! check results, and the answers' proxy set kept to what the fleet allows.

use crate::{
    Result,
    capacity::Capacity,
    config::{Config, ProxyConfig},
    fleet::{Fleet, Source, Status},
    market::MarketError,
    store::Store,
};

use super::Engine;

/// The config file's proxies, then those the API added (unless the file now has the name, or
/// the entry breaks a rule: skipped, and the log says so), drained as stored; capacities into
/// `capacity`.
pub(super) fn load_fleet(config: &Config, store: &Store, capacity: &mut Capacity, now: f64) -> Result<Fleet> {
    let drained: std::collections::HashSet<String> = store.drained_proxies()?.into_iter().collect();
    let mut fleet = Fleet::default();
    for p in config.proxies() {
        capacity.set_proxy(&p.name, p.capacity_rps);
        fleet.insert(p.clone(), Source::Config, drained.contains(&p.name), now);
    }
    for (name, p) in store.proxies()? {
        let p = match p {
            Ok(p) if p.name == name => p,
            Ok(_) => {
                tracing::warn!(proxy = %name, "stored proxy not loaded: its entry names another");
                continue;
            }
            Err(e) => {
                tracing::warn!(proxy = %name, "stored proxy not loaded: {e}");
                continue;
            }
        };
        let mut problems: Vec<String> = p.problems().into_iter().map(|(k, m)| format!("{k}: {m}")).collect();
        if fleet.get(&name).is_some() {
            problems.push("the config file defines a proxy of this name".into());
        }
        problems.extend(fleet.conflicts(&p));
        if !problems.is_empty() {
            tracing::warn!(proxy = %name, ?problems, "stored proxy not loaded");
            continue;
        }
        capacity.set_proxy(&p.name, p.capacity_rps);
        fleet.insert(p, Source::Api, drained.contains(&name), now);
    }
    // Capacities changed through the API outlive restarts (for proxies still there).
    for (name, rps) in store.capacities()? {
        if capacity.proxy(&name).is_some() {
            capacity.set_proxy(&name, rps);
        }
    }
    Ok(fleet)
}

fn not_found(name: &str) -> MarketError {
    MarketError::NotFound(format!("no proxy named {name:?}"))
}

impl Engine {
    /// Why `p` cannot be the proxy of its name (`replacing`: an existing one): its own rules
    /// and the fleet's (422).
    fn check_proxy(&self, p: &ProxyConfig) -> Result<(), MarketError> {
        let mut problems: Vec<String> = p.problems().into_iter().map(|(k, m)| format!("{k}: {m}")).collect();
        problems.extend(self.fleet.conflicts(p));
        if problems.is_empty() { Ok(()) } else { Err(MarketError::Invalid(problems.join("; "))) }
    }

    /// Add a proxy (stored, then in the answers at once).
    pub fn add_proxy(&mut self, p: ProxyConfig, now: f64) -> Result<()> {
        if self.fleet.get(&p.name).is_some() {
            return Err(MarketError::Conflict(format!("a proxy named {:?} exists", p.name)).into());
        }
        self.check_proxy(&p)?;
        self.store.put_proxy(&p, now as i64)?;
        self.capacity.set_proxy(&p.name, p.capacity_rps);
        tracing::info!(proxy = %p.name, addresses = ?p.addresses, capacity_rps = p.capacity_rps, "proxy added");
        self.fleet.insert(p, Source::Api, false, now);
        self.evaluate_proxies(now)
    }

    /// Replace an API proxy's entry (addresses, capacity, metrics, check); it keeps whether it
    /// is drained, and its check state unless the check changed.
    pub fn change_proxy(&mut self, p: ProxyConfig, now: f64) -> Result<()> {
        let Some(old) = self.fleet.get(&p.name) else { return Err(not_found(&p.name).into()) };
        if old.source == Source::Config {
            return Err(MarketError::Conflict(format!(
                "proxy {:?} is defined in the config file: change it there (drain and capacity work here)",
                p.name
            ))
            .into());
        }
        self.check_proxy(&p)?;
        self.store.put_proxy(&p, now as i64)?;
        self.capacity.set_proxy(&p.name, p.capacity_rps);
        let entry = self.fleet.get_mut(&p.name).expect("checked above");
        if entry.config.health != p.health {
            entry.check = Default::default();
        }
        tracing::info!(proxy = %p.name, addresses = ?p.addresses, capacity_rps = p.capacity_rps, "proxy changed");
        entry.config = p;
        self.evaluate_proxies(now)
    }

    /// Remove an API proxy: out of the answers, the capacity and the feed.
    pub fn remove_proxy(&mut self, name: &str, now: f64) -> Result<()> {
        let Some(p) = self.fleet.get(name) else { return Err(not_found(name).into()) };
        if p.source == Source::Config {
            return Err(MarketError::Conflict(format!(
                "proxy {name:?} is defined in the config file: remove it there, or drain it"
            ))
            .into());
        }
        self.store.delete_proxy(name)?;
        self.fleet.remove(name);
        self.capacity.remove_proxy(name);
        self.feed.forget(name);
        tracing::info!(proxy = %name, "proxy removed");
        self.evaluate_proxies(now)
    }

    /// Drain (no new answers; its reports still count) or undrain a proxy of either kind.
    pub fn set_drained(&mut self, name: &str, drained: bool, now: f64) -> Result<()> {
        if self.fleet.get(name).is_none() {
            return Err(not_found(name).into());
        }
        self.store.set_drained(name, drained, now as i64)?;
        self.fleet.get_mut(name).expect("checked above").drained = drained;
        tracing::info!(proxy = %name, drained, "proxy drain set");
        self.evaluate_proxies(now)
    }

    /// Change a proxy's capacity; it is kept across restarts.
    pub fn set_capacity(&mut self, proxy: &str, rps: u64, now: i64) -> Result<()> {
        let Some(p) = self.fleet.get(proxy) else { return Err(not_found(proxy).into()) };
        match p.source {
            Source::Config => self.store.set_capacity(proxy, rps, now)?,
            Source::Api => self.store.put_proxy(&ProxyConfig { capacity_rps: rps, ..p.config.clone() }, now)?,
        }
        self.capacity.set_proxy(proxy, rps);
        self.fleet.get_mut(proxy).expect("checked above").config.capacity_rps = rps;
        self.evaluate_proxies(now as f64)
    }

    /// One health check result for `proxy` (gone meanwhile: ignored).
    pub fn record_check(&mut self, proxy: &str, ok: Result<(), String>, now: f64) -> Result<()> {
        let Some(p) = self.fleet.get_mut(proxy) else { return Ok(()) };
        let Some(h) = p.config.health.clone() else { return Ok(()) };
        if p.check.record(ok.is_ok(), h.rise, h.fall) {
            match &ok {
                Ok(()) => tracing::info!(proxy, url = %h.url, "health check passes again"),
                Err(e) => tracing::warn!(proxy, url = %h.url, "health check failed {} times in a row: {e}", h.fall),
            }
            return self.evaluate_proxies(now);
        }
        Ok(())
    }

    /// Judge the fleet at `now` and put the proxies it allows in force, if they changed.
    pub fn evaluate_proxies(&mut self, now: f64) -> Result<()> {
        let c = &self.config.controller;
        let (addresses, changes) = self.fleet.evaluate(now, &self.feed, c.target_load, c.proxy_down_s);
        for t in &changes {
            match t.to {
                Status::Answering => tracing::info!(proxy = %t.proxy, from = ?t.from, "proxy back in the answers"),
                // A proxy that failed is news for the operator; a drain or a hot proxy is not.
                Status::CheckFailed | Status::Silent => {
                    tracing::warn!(proxy = %t.proxy, why = ?t.to, "proxy left the answers")
                }
                Status::Drained | Status::Hot => {
                    tracing::info!(proxy = %t.proxy, why = ?t.to, "proxy left the answers")
                }
            }
        }
        self.catalog.set_proxies(&addresses, self.dataplane.as_mut())
    }
}
