//! The engine: everything the control plane changes, behind one lock so a change reaches the
//! store, the market's memory and the data plane together or not at all.

mod proxies;

use std::collections::{BTreeMap, HashMap};

use crate::{
    capacity::{Capacity, forecast::ForecastParams},
    catalog::Catalog,
    catalog::Mode,
    config::{Config, CustomerConfig},
    contracts,
    controller::{
        BuyerInputs, BuyerTick, Controller, ControllerParams, Decision, NetworkInputs, RuleParams,
        feed::{FeedSnapshot, ProxyFeed},
    },
    dataplane::Dataplane,
    error::{Error, Result},
    fleet::Fleet,
    ledger,
    market::{Market, MarketError, MarketParams, MarketResult, units::Price},
    settings::CustomerSettings,
    store::Store,
    tokens::{Principal, TokenDigest, Tokens},
};

pub struct Engine {
    /// The config file as loaded: the rules customers added through the API are held to.
    pub config: Config,
    /// Customers added through the API (also in the catalog and the store), as added: the
    /// catalog holds them with their settings over them.
    pub api_customers: Vec<CustomerConfig>,
    /// What buyers set for themselves (stored), by customer; the catalog has it in force.
    pub settings: HashMap<String, CustomerSettings>,
    pub catalog: Catalog,
    pub dataplane: Option<Dataplane>,
    pub store: Store,
    pub capacity: Capacity,
    /// Every proxy, its drain and health, and which the answers may name.
    pub fleet: Fleet,
    /// `None` when the config has no `[market]` section.
    pub market: Option<Market>,
    /// The traffic controller (runs with the market) and what the proxies report.
    pub controller: Controller,
    pub feed: ProxyFeed,
    /// Answers counted so far per customer (XDP + userspace), for per-tick deltas.
    answers_seen: HashMap<String, [u64; 3]>,
    /// The last decision per customer, for the metrics and the API.
    pub decisions: HashMap<String, Decision>,
    /// The proxies as of the last tick.
    pub last_feed: FeedSnapshot,
    /// The tokens found at start (the API state takes them: they are read without this lock).
    pub tokens: Tokens,
    /// Each buyer's last hour, for the operator's window.
    pub history: crate::history::History,
    /// A cluster's control host: every edge's answers so far, per buyer (the controller's
    /// input instead of this host's own counters). `None`: one host, or not read yet.
    pub cluster_answers: Option<HashMap<String, [u64; 3]>>,
}

/// Whether a problem from `Config::check_added_customers` is about customer `id`.
fn is_about(problem: &str, id: &str) -> bool {
    problem.strip_prefix(id).is_some_and(|rest| rest.starts_with(':') || rest.starts_with('.'))
}

/// Customer `id`'s entry without the settings over it: the config file's, or as the API
/// added it.
fn base_config(config: &Config, api_customers: &[CustomerConfig], id: &str) -> Option<CustomerConfig> {
    config.customers().chain(api_customers).find(|c| c.id == id).cloned()
}

/// The config file's rules for a customer's entry with settings over it (`effective`), among
/// the others as they are: the problems of that customer.
fn check_settings(config: &Config, api_customers: &[CustomerConfig], effective: &CustomerConfig) -> Vec<String> {
    if config.customers().any(|c| c.id == effective.id) {
        return config.check_changed_file_customer(effective, api_customers);
    }
    let all: Vec<CustomerConfig> =
        api_customers.iter().map(|c| if c.id == effective.id { effective.clone() } else { c.clone() }).collect();
    config.check_added_customers(&all).into_iter().filter(|p| is_about(p, &effective.id)).collect()
}

/// What buyers set for themselves, over the entries as they are now, into the catalog (before
/// the data plane is attached). Settings an entry no longer takes are skipped (and kept; the
/// log says so), never a daemon that will not start.
fn load_settings(
    config: &Config,
    store: &Store,
    api_customers: &[CustomerConfig],
    catalog: &mut Catalog,
) -> Result<HashMap<String, CustomerSettings>> {
    let mut settings = HashMap::new();
    for (id, set) in store.customer_settings()? {
        let set = match set {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(customer = %id, "stored settings not loaded: {e}");
                continue;
            }
        };
        let Some(base) = base_config(config, api_customers, &id) else { continue };
        let effective = set.apply(&base);
        let problems = check_settings(config, api_customers, &effective);
        if !problems.is_empty() {
            tracing::warn!(customer = %id, ?problems, "stored settings not loaded: the entry does not take them");
            continue;
        }
        if let Err(e) = catalog.set_config(&id, effective, None) {
            tracing::warn!(customer = %id, "stored settings not loaded: {e}");
            continue;
        }
        settings.insert(id, set);
    }
    Ok(settings)
}

/// Seconds since the epoch, the market's clock.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Seconds since the epoch, with fraction: the proxies' and the controller's clock.
pub fn unix_now_f64() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

impl Engine {
    /// Open the store and rebuild the market from it. The data plane, if any, is attached
    /// by the caller after `install`.
    pub fn new(config: &Config, catalog: Catalog, dataplane: Option<Dataplane>, now: i64) -> Result<Engine> {
        // An edge keeps nothing of its own: what it answers from is etcd's.
        let store = match &config.store {
            Some(s) => Store::open_config(s)?,
            None => Store::open(std::path::Path::new(":memory:"))?,
        };
        // A cluster's control replica writes nothing until it is elected.
        if config.cluster.as_ref().is_some_and(|c| c.role.controls()) {
            store.set_fence(crate::store::Fence::Follower);
        }
        let mut engine = Self::assemble(config, catalog, store, now).map_err(|b| b.0)?;
        engine.dataplane = dataplane;
        Ok(engine)
    }

    /// Build the engine's memory from what `store` holds (the store back on failure).
    fn assemble(
        config: &Config,
        mut catalog: Catalog,
        store: Store,
        now: i64,
    ) -> std::result::Result<Engine, Box<(Error, Store)>> {
        let read = (|| -> Result<_> {
            let mut stored_tokens: HashMap<String, Option<TokenDigest>> = store.token_digests()?.into_iter().collect();
            let mut tokens = Tokens::default();
            tokens
                .add(TokenDigest::of(&config.api_token()?), Principal::Operator)
                .map_err(|e| Error::Record("(operator)".into(), format!("token: {e}")))?;
            // The config file's customers: a token rotated through the API replaces the file's. A
            // duplicate here is the config's mistake (the operator's token from token_file
            // included), and the daemon says so instead of starting.
            for c in config.customers() {
                let digest = match stored_tokens.remove(&c.id) {
                    Some(Some(d)) => Some(d),
                    Some(None) => {
                        tracing::warn!(customer = %c.id, "its stored token is unreadable: the config file's is used");
                        c.token.as_deref().map(TokenDigest::of)
                    }
                    None => c.token.as_deref().map(TokenDigest::of),
                };
                if let Some(d) = digest {
                    tokens
                        .add(d, Principal::Buyer(c.id.clone()))
                        .map_err(|e| Error::Record(c.id.clone(), format!("token: {e}")))?;
                }
            }
            // Customers added through the API, unless the config file now defines the same id or
            // a rule they no longer meet, or their token is taken (then the file wins, and the log
            // says so): a bad stored customer is skipped, never a daemon that will not start.
            let mut api_customers = Vec::new();
            for (id, c) in store.customers()? {
                let c = match c {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(customer = %id, "stored customer not loaded: {e}");
                        continue;
                    }
                };
                let mut candidate = api_customers.clone();
                candidate.push(c.clone());
                let problems: Vec<String> =
                    config.check_added_customers(&candidate).into_iter().filter(|p| is_about(p, &c.id)).collect();
                if !problems.is_empty() {
                    tracing::warn!(customer = %c.id, ?problems, "stored customer not loaded: it conflicts with the config");
                    continue;
                }
                let digest = stored_tokens.get(&c.id).copied().flatten();
                if digest.is_some_and(|d| tokens.contains(d)) {
                    tracing::warn!(customer = %c.id, "stored customer not loaded: its token is another's");
                    continue;
                }
                if let Err(e) = catalog.insert_customer(c.clone(), None) {
                    tracing::warn!(customer = %c.id, "stored customer not loaded: {e}");
                    continue;
                }
                if let Some(d) = digest {
                    tokens.add(d, Principal::Buyer(c.id.clone())).map_err(|e| Error::Record(c.id.clone(), e))?;
                }
                api_customers.push(c);
            }
            let settings = load_settings(config, &store, &api_customers, &mut catalog)?;
            catalog.publish();
            let m = config.market.as_ref();
            let params = ForecastParams {
                weeks: m.map_or(4, |m| m.forecast_weeks),
                sigmas: m.map_or(2.0, |m| m.forecast_sigmas),
                margin: m.map_or(0.1, |m| m.forecast_margin),
            };
            let mut capacity =
                Capacity::new(m.map_or(60, |m| m.interval_s), params, m.map_or(0.5, |m| m.assumed_own_load));
            let fleet = proxies::load_fleet(config, &store, &mut capacity, now as f64)?;
            for (t, requests) in store.own_usage_since(now - capacity.history_window())? {
                capacity.record_own(t, requests);
            }
            let market = match m {
                None => None,
                Some(m) => {
                    let reserve =
                        Price::from_decimal(m.reserve_price).map_err(|e| Error::Record("(market)".into(), e))?;
                    let params = MarketParams {
                        period_s: i64::from(m.period_s),
                        horizon_periods: i64::from(m.horizon_periods),
                        reserve,
                    };
                    Some(Market::load(params, &store).map_err(Error::from)?)
                }
            };
            let ctl = &config.controller;
            let controller = Controller::new(ControllerParams {
                min_change: ctl.min_change,
                rule: RuleParams {
                    proxy_ttl_min_s: ctl.proxy_ttl_min_s,
                    max_query_factor: ctl.max_query_factor,
                    ..Default::default()
                },
            });
            Ok((tokens, api_customers, settings, capacity, fleet, market, controller))
        })();
        let (tokens, api_customers, settings, capacity, fleet, market, controller) = match read {
            Ok(r) => r,
            Err(e) => return Err(Box::new((e, store))),
        };
        let mut engine = Engine {
            config: config.clone(),
            api_customers,
            settings,
            catalog,
            dataplane: None,
            store,
            capacity,
            fleet,
            market,
            controller,
            feed: ProxyFeed::default(),
            answers_seen: HashMap::new(),
            decisions: HashMap::new(),
            last_feed: FeedSnapshot::default(),
            tokens,
            history: Default::default(),
            cluster_answers: None,
        };
        // The contracts in force now decide the fractions the data plane starts with.
        match engine.sync_contracts(now, true).and_then(|()| engine.evaluate_proxies(now as f64)) {
            Ok(()) => Ok(engine),
            Err(e) => Err(Box::new((e, engine.store))),
        }
    }

    /// Build the memory again from the store, as a new start would (a control replica that
    /// was elected: the leader before may have changed anything). The data plane, the
    /// history and the edges' last answers are kept; the maps are filled from the new catalog.
    /// On failure the engine is as it was.
    pub fn reload(&mut self, now: i64) -> Result<()> {
        let catalog = Catalog::from_config(&self.config)?;
        let placeholder = Store::open(std::path::Path::new(":memory:"))?;
        let store = std::mem::replace(&mut self.store, placeholder);
        let mut new = match Self::assemble(&self.config, catalog, store, now) {
            Ok(new) => new,
            Err(failed) => {
                let (e, store) = *failed;
                self.store = store;
                return Err(e);
            }
        };
        new.dataplane = self.dataplane.take();
        new.history = std::mem::take(&mut self.history);
        new.cluster_answers = self.cluster_answers.take();
        new.catalog.take_over(&self.catalog);
        *self = new;
        if let Some(dp) = self.dataplane.as_mut() {
            self.catalog.install(dp)?;
        }
        Ok(())
    }

    pub fn market(&mut self) -> MarketResult<(&mut Market, &mut Store, &Capacity)> {
        match &mut self.market {
            Some(m) => Ok((m, &mut self.store, &self.capacity)),
            None => Err(MarketError::Conflict("the market is off: add a [market] section to the config".into())),
        }
    }

    /// Record contract activations and ends due at `now` and put each affected buyer's
    /// fraction in force (`all`: every buyer, at start).
    pub fn sync_contracts(&mut self, now: i64, all: bool) -> Result<()> {
        let Some(market) = &mut self.market else { return Ok(()) };
        let t = market.contract_transitions(&mut self.store, now);
        let ids: Vec<String> = if all {
            self.catalog.customers().iter().map(|c| c.config.id.clone()).collect()
        } else {
            // New contracts of a running period also count: look at everyone with a contract.
            let mut ids: Vec<String> = t.customers.into_iter().collect();
            ids.extend(market.contracts().iter().map(|c| c.customer.clone()));
            ids.sort();
            ids.dedup();
            ids
        };
        for id in ids {
            let rps = contracts::active_rps(market.contracts(), &id, now);
            let known = self.catalog.customer(&id).map(|c| c.contracted_rps);
            if known.is_some_and(|k| k != rps) || (all && known.is_some()) {
                self.catalog.set_contracted(&id, rps, self.dataplane.as_mut())?;
            }
        }
        Ok(())
    }

    /// The market's regular work, then the contracts' transitions and the per-resolver seeds
    /// of a new re-draw period: these run even when the market's work failed, so contracts
    /// switch on time in the data plane.
    pub fn tick(&mut self, now: i64) -> Result<()> {
        let market = match &mut self.market {
            Some(market) => market.tick(&mut self.store, &self.capacity, now).map_err(Error::from),
            None => Ok(()),
        };
        self.sync_contracts(now, false)?;
        let redraw = self.catalog.redraw(now, self.dataplane.as_mut());
        market?;
        redraw.map(|_| ())
    }

    /// One controller tick at `now` (seconds, with fraction): every buyer's answers since the
    /// last tick, what the proxies serve for it, the contracts in force; fractions that move
    /// enough are written to the data plane (auto mode only). The market must be on.
    pub fn control_tick(&mut self, now: f64) -> Result<()> {
        if self.market.is_none() {
            return Ok(());
        }
        let c = &self.config.controller;
        let min_change = c.min_change;
        let snap = self.feed.snapshot(now, self.capacity.proxies(), c.target_load, c.report_stale_s, c.proxy_down_s);
        let mut ids = Vec::new();
        let mut ticks = Vec::new();
        let cluster = self.config.cluster.is_some();
        for cust in self.catalog.customers() {
            let total: [u64; 3] = if cluster {
                self.cluster_answers.as_ref().and_then(|a| a.get(&cust.config.id)).copied().unwrap_or_default()
            } else {
                let xdp = match &self.dataplane {
                    Some(dp) => dp.customer_answers(cust.index)?,
                    None => [0; 3],
                };
                let userspace = cust.live.answers();
                std::array::from_fn(|i| xdp[i] + userspace[i])
            };
            let prev = self.answers_seen.insert(cust.config.id.clone(), total).unwrap_or(total);
            let d: [u64; 3] = std::array::from_fn(|i| total[i].saturating_sub(prev[i]));
            ids.push(cust.config.id.clone());
            ticks.push((
                d,
                BuyerInputs {
                    purchased_rps: cust.contracted_rps as f64,
                    estimate: cust.config.fraction,
                    served_rps: snap.served.as_ref().map(|m| m.get(&cust.config.id).copied().unwrap_or(0.0)),
                    manual: (cust.mode == Mode::Manual).then_some(cust.fraction),
                    ttl_s: cust.config.ttl,
                    per_resolver: cust.config.draw == crate::config::Draw::Resolver,
                },
            ));
        }
        let buyer_ticks: Vec<BuyerTick<'_>> = ids
            .iter()
            .zip(&ticks)
            .map(|(id, (d, inputs))| BuyerTick { id, proxy_answers: d[0], other_answers: d[1] + d[2], inputs: *inputs })
            .collect();
        let outputs =
            self.controller.tick(now.floor() as i64, NetworkInputs { spare_rps: snap.spare_rps }, &buyer_ticks);
        for (id, out) in ids.iter().zip(outputs) {
            let d = out.decision;
            tracing::debug!(customer = %id, fraction = d.fraction, setpoint = d.setpoint_rps, served = ?d.served_rps,
                demand = ?d.demand_rps, cached_share = ?d.cached_share, headroom = d.headroom, trim = d.trim,
                why = ?d.why, scale = self.controller.scale(), "controller decision");
            let current = self.catalog.customer(id).map(|c| (c.mode, c.fraction));
            // The controller writes meaningful moves from what it last wrote; a fraction put in
            // force meanwhile by other hands (back to auto from an override) is corrected too.
            let apart = |f: f64| (f - d.fraction).abs() >= min_change || ((f == 0.0) != (d.fraction == 0.0));
            if let Some((Mode::Auto, f)) = current
                && (out.write || apart(f))
                && (f - d.fraction).abs() > f64::EPSILON
            {
                self.catalog.set_fraction(id, d.fraction, Mode::Auto, self.dataplane.as_mut())?;
                tracing::info!(customer = %id, from = f, to = d.fraction, setpoint = d.setpoint_rps,
                    served = ?d.served_rps, demand = ?d.demand_rps, cached_share = ?d.cached_share,
                    headroom = d.headroom, why = ?d.why, scale = self.controller.scale(), "fraction moved by the controller");
            }
            if let Some(c) = self.catalog.customer(id)
                && c.mode == Mode::Auto
                && c.record.proxy_ttl != d.proxy_ttl
            {
                let from = c.record.proxy_ttl;
                self.catalog.set_proxy_ttl(id, d.proxy_ttl, self.dataplane.as_mut())?;
                tracing::info!(customer = %id, from, to = d.proxy_ttl, "proxy answers' TTL set by the controller");
            }
            self.decisions.insert(id.clone(), d);
        }
        self.last_feed = snap;
        Ok(())
    }

    /// A proxy's report received at `at` (seconds, with fraction): own usage into the
    /// forecast history, served requests into the ledger and the controller's feed.
    pub fn record_report(
        &mut self,
        proxy: &str,
        own_requests: u64,
        served: &BTreeMap<String, u64>,
        interval_s: Option<f64>,
        at: f64,
    ) -> Result<crate::store::ReportRecord> {
        // The same checks for pushed and scraped reports.
        let sum = served.values().try_fold(own_requests, |a, &b| a.checked_add(b));
        if sum.is_none_or(|s| s > i64::MAX as u64 / 2) {
            return Err(MarketError::Invalid("request counts are too large".into()).into());
        }
        if interval_s.is_some_and(|s| !(s.is_finite() && s > 0.0 && s <= 3600.0)) {
            return Err(MarketError::Invalid("interval_s must be above 0 and at most 3600".into()).into());
        }
        let now = at.floor() as i64;
        let interval = self.capacity.history().interval_of(now);
        let contracts = self.market.as_ref().map(Market::contracts).unwrap_or_default();
        let record = ledger::price_report(contracts, proxy, now, interval, own_requests, served);
        // Stored first: memory follows only what was committed.
        self.store.record_report(&record)?;
        self.feed.report(proxy, at, interval_s, own_requests, served);
        self.capacity.record_own(now, own_requests);
        Ok(record)
    }

    /// Add a customer through the API: checked by the config file's rules (and its token
    /// against every token in `tokens`), stored with its token's digest, then put in the
    /// catalog, the data plane and `tokens`. Delegated zones are config-file only.
    pub fn add_customer(&mut self, c: CustomerConfig, tokens: &mut Tokens, now: i64) -> Result<()> {
        if !c.zones.is_empty() {
            return Err(
                MarketError::Invalid("zones (delegated sub-zones) are set in the config file only".into()).into()
            );
        }
        // A token already in use is a conflict (409), whatever else is wrong.
        let digest = c.token.as_deref().map(TokenDigest::of);
        if digest.is_some_and(|d| tokens.contains(d)) {
            return Err(MarketError::Conflict(format!("{}.token: is the same as another token", c.id)).into());
        }
        self.check_customers(&c, self.api_customers.iter().cloned().chain([c.clone()]).collect())?;
        self.store.insert_customer(&c, digest, now)?;
        if let Err(e) = self.catalog.add_customer(c.clone(), self.dataplane.as_mut()) {
            let _ = self.store.delete_customer(&c.id);
            return Err(e);
        }
        if let Some(d) = digest {
            tokens.add(d, Principal::Buyer(c.id.clone())).map_err(|e| Error::Record(c.id.clone(), e))?;
        }
        tracing::info!(customer = %c.id, names = ?c.names, "customer added through the API");
        self.api_customers.push(c);
        Ok(())
    }

    /// Replace the names of a customer added through the API.
    pub fn set_customer_names(&mut self, id: &str, names: Vec<String>, now: i64) -> Result<()> {
        if self.catalog.is_from_file(id) {
            return Err(MarketError::Conflict(format!(
                "customer {id:?} is defined in the config file; change it there"
            ))
            .into());
        }
        let i = self
            .api_customers
            .iter()
            .position(|c| c.id == id)
            .ok_or_else(|| MarketError::NotFound(format!("no customer with id {id:?}")))?;
        let mut changed = self.api_customers[i].clone();
        changed.names = names.clone();
        let mut all = self.api_customers.clone();
        all[i] = changed.clone();
        let effective = self.settings.get(id).map_or_else(|| changed.clone(), |s| s.apply(&changed));
        self.check_customers(&effective, all)?;
        self.store.update_customer(&changed, now)?;
        self.catalog.set_names(id, names, self.dataplane.as_mut())?;
        tracing::info!(customer = %id, names = ?changed.names, "names replaced through the API");
        self.api_customers[i] = changed;
        Ok(())
    }

    /// Lay `change` over what customer `id` set before (`None`: take every setting away, back
    /// to the entry alone): checked by the config file's rules, and a buyer's TTL within
    /// `server.buyer_ttl_min_s..=buyer_ttl_max_s`; stored, then in the catalog and the data
    /// plane.
    pub fn set_customer_settings(
        &mut self,
        id: &str,
        change: Option<&CustomerSettings>,
        by_buyer: bool,
        now: i64,
    ) -> Result<()> {
        let base = base_config(&self.config, &self.api_customers, id)
            .ok_or_else(|| MarketError::NotFound(format!("no customer with id {id:?}")))?;
        let s = &self.config.server;
        if let Some(ttl) = change.and_then(|c| c.ttl).filter(|_| by_buyer)
            && !(s.buyer_ttl_min_s..=s.buyer_ttl_max_s).contains(&ttl)
        {
            return Err(MarketError::Invalid(format!(
                "{id}.ttl: {ttl} is not within the operator's bounds {}..={} (server.buyer_ttl_min_s, buyer_ttl_max_s)",
                s.buyer_ttl_min_s, s.buyer_ttl_max_s
            ))
            .into());
        }
        let before = self.settings.get(id).cloned().unwrap_or_default();
        let merged = change.map_or_else(CustomerSettings::default, |c| before.merged(c));
        let effective = merged.apply(&base);
        let problems = check_settings(&self.config, &self.api_customers, &effective);
        if !problems.is_empty() {
            return Err(MarketError::Invalid(problems.join("; ")).into());
        }
        self.store.set_customer_settings(id, &merged, now)?;
        if let Err(e) = self.catalog.set_config(id, effective, self.dataplane.as_mut()) {
            let _ = self.store.set_customer_settings(id, &before, now);
            return Err(e);
        }
        tracing::info!(customer = %id, settings = ?merged, by_buyer, "customer settings changed through the API");
        if merged.is_empty() {
            self.settings.remove(id);
        } else {
            self.settings.insert(id.to_owned(), merged);
        }
        Ok(())
    }

    fn check_customers(&self, c: &CustomerConfig, all: Vec<CustomerConfig>) -> Result<()> {
        let problems: Vec<String> =
            self.config.check_added_customers(&all).into_iter().filter(|p| is_about(p, &c.id)).collect();
        if problems.is_empty() { Ok(()) } else { Err(MarketError::Invalid(problems.join("; ")).into()) }
    }

    /// Give a customer a new token (stored as its digest; the old one stops working at once).
    pub fn rotate_token(&mut self, id: &str, token: &str, tokens: &mut Tokens, now: i64) -> Result<()> {
        crate::tokens::check_token(token).map_err(MarketError::Invalid)?;
        let digest = TokenDigest::of(token);
        let who = Principal::Buyer(id.to_owned());
        if tokens.lookup(token).is_some_and(|p| p != who) {
            return Err(MarketError::Conflict("token: is the same as another token".into()).into());
        }
        self.store.set_token(id, digest, now)?;
        tokens.replace(&who, digest).map_err(|e| MarketError::Invalid(format!("token: {e}")))?;
        tracing::info!(customer = %id, "token rotated through the API");
        Ok(())
    }

    /// A sample of every buyer for the history, when one is due at `now`.
    pub fn sample_history(&mut self, now: i64) {
        if !self.history.due(now) {
            return;
        }
        let samples: Vec<(String, crate::history::Sample)> = self
            .catalog
            .customers()
            .iter()
            .map(|c| {
                let d = self.decisions.get(&c.config.id);
                let s = crate::history::Sample {
                    t: now,
                    fraction: c.fraction,
                    contracted_rps: c.contracted_rps,
                    served_rps: d.and_then(|d| d.served_rps),
                    setpoint_rps: d.map(|d| d.setpoint_rps),
                };
                (c.config.id.clone(), s)
            })
            .collect();
        self.history.record(now, samples);
    }
}
