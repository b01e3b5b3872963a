//! The live set of proxies and customers, and each customer's fraction in force. The catalog is
//! what the API reads and changes; every change is written to the data plane first and kept only
//! if that write succeeded, so the two never disagree. After each change the catalog publishes
//! what the userspace DNS server answers from (a [`ZoneSnapshot`]), so queries never wait for it.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
};

use arc_swap::ArcSwap;

use hickory_proto::rr::Name;
use serde::{Deserialize, Serialize};
use spillway_common::{
    answers::proxy_rings,
    maps::{CustomerRecord, NameKey, ProxyRings, ProxySet, existing},
    name::name_key,
};

use crate::{
    config::{Config, CustomerConfig, parse_name},
    dataplane::{
        Dataplane,
        pins::MapsOrigin,
        records::{ZoneEntry, customer_record, key_of, name_wire, proxy_set, resolver_seed},
    },
    dns::{
        snapshot::{LiveCustomer, Published, ZoneSnapshot},
        zones::Zones,
    },
    error::{Error, Result},
};

/// Who sets a customer's fraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The control plane: the buyer's estimate while a contract is in force, else 0
    /// (when the market is on).
    Auto,
    /// An operator's override through the API, until set back to auto.
    Manual,
}

#[derive(Debug, Clone)]
pub struct Customer {
    pub config: CustomerConfig,
    /// Index in the customers map and the per-customer counters.
    pub index: u32,
    pub keys: Vec<NameKey>,
    /// The fraction in force in the data plane.
    pub fraction: f64,
    pub mode: Mode,
    /// The record in force, as the data plane has it.
    pub record: CustomerRecord,
    /// Requests/s bought by contracts in force now.
    pub contracted_rps: u64,
    /// What the userspace server answers from: the same record, and its answer counters.
    pub live: Arc<LiveCustomer>,
    /// The catalog's change count when this customer last changed (what a cluster's control
    /// host has published is told apart by it).
    pub version: u64,
}

pub struct Catalog {
    proxy_set: ProxySet,
    /// The proxies' answer records for the data plane, built from `proxy_set` when it changes.
    proxy_rings: Box<ProxyRings>,
    customers: Vec<Customer>,
    by_id: HashMap<String, usize>,
    by_key: HashMap<NameKey, usize>,
    /// The zones' SOA serial, shared with the snapshots: the start time, counted up on every
    /// change of the data (a restart never goes back); a cluster's edges take etcd's instead.
    serial: Arc<AtomicU32>,
    /// The market is on: names answer with proxies only under a contract in force.
    gated: bool,
    /// Every proper ancestor of a customer name (lowercase): the names that exist only because
    /// names exist below them (empty non-terminals), for telling NODATA from NXDOMAIN in O(1).
    ancestors: HashSet<Name>,
    /// Customers defined in the config file (the API may not change them).
    from_file: usize,
    /// The snapshot the userspace server reads, replaced after every change of names.
    published: Published,
    /// Every zone's negative-answer record, for the data plane.
    zone_entries: Vec<ZoneEntry>,
    /// Host names and their ancestors (`maps::existing`), which the config fixes.
    fixed_names: HashMap<NameKey, u32>,
    /// `server.resolver_redraw_s`, and the period whose seeds the records hold.
    redraw_s: u32,
    epoch: u64,
    /// The proxy addresses in force, as given.
    proxy_addresses: Vec<std::net::IpAddr>,
    /// Counts changes of customers and proxies: each takes the next number.
    version: u64,
    /// The number the proxy set took when it last changed.
    proxies_version: u64,
}

impl Catalog {
    /// Build from a validated config. Fails if two names hash to the same key (never by chance).
    pub fn from_config(config: &Config) -> Result<Self> {
        let proxy_addresses: Vec<std::net::IpAddr> =
            config.proxies().flat_map(|p| p.addresses.iter().copied()).collect();
        let proxy_set = proxy_set(proxy_addresses.iter()).map_err(|e| Error::Record("(proxies)".into(), e))?;
        let proxy_rings = Box::new(proxy_rings(&proxy_set).map_err(|e| Error::Record("(proxies)".into(), e.into()))?);
        let zones = Zones::from_config(config);
        let start =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as u32).unwrap_or(1);
        let serial = Arc::new(AtomicU32::new(start));
        let mut catalog = Self {
            proxy_set,
            proxy_rings,
            customers: Vec::new(),
            by_id: HashMap::new(),
            by_key: HashMap::new(),
            serial: serial.clone(),
            gated: config.market.is_some(),
            ancestors: HashSet::new(),
            from_file: 0,
            published: Arc::new(ArcSwap::from_pointee(ZoneSnapshot {
                proxies: proxy_set,
                by_key: HashMap::new(),
                ancestors: HashSet::new(),
                serial,
            })),
            zone_entries: zones.zone_entries(),
            fixed_names: zones.fixed_names(),
            redraw_s: config.server.resolver_redraw_s.max(1),
            epoch: 0,
            proxy_addresses,
            version: 0,
            proxies_version: 0,
        };
        catalog.epoch = catalog.epoch_at(crate::engine::unix_now());
        for c in config.customers() {
            catalog.insert_customer(c.clone(), None)?;
        }
        catalog.from_file = catalog.customers.len();
        // The SOA serial counts changes after start.
        catalog.serial.store(start, Ordering::Relaxed);
        catalog.publish();
        Ok(catalog)
    }

    /// Where the userspace server takes its snapshots from.
    pub fn published(&self) -> Published {
        self.published.clone()
    }

    /// Publish through `old`'s handle from now on (an engine built again from the store: the
    /// userspace server keeps reading the handle it was given at start), with a serial that
    /// never goes back from `old`'s.
    pub fn take_over(&mut self, old: &Catalog) {
        self.published = old.published.clone();
        let serial = self.serial().max(old.serial().wrapping_add(1));
        self.serial.store(serial, Ordering::Relaxed);
        self.publish();
    }

    /// The snapshot in force now.
    pub fn snapshot(&self) -> Arc<ZoneSnapshot> {
        self.published.load_full()
    }

    /// Build a snapshot of the names and customers and put it in force. O(names): called when
    /// names or customers change, not for a new fraction (that swaps one record).
    pub fn publish(&self) {
        let by_key = self.by_key.iter().map(|(k, &i)| (*k, self.customers[i].live.clone())).collect();
        self.published.store(Arc::new(ZoneSnapshot {
            proxies: self.proxy_set,
            by_key,
            ancestors: self.ancestors.clone(),
            serial: self.serial.clone(),
        }));
    }

    /// Count a change of the data, and give the data plane's negative answers the new serial.
    fn bump_serial(&self, dp: Option<&mut Dataplane>) -> Result<()> {
        let serial = self.serial.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        match dp {
            Some(dp) => dp.set_serial(serial),
            None => Ok(()),
        }
    }

    /// The zones' SOA serial now (the userspace server reads it from the snapshot).
    pub fn serial(&self) -> u32 {
        self.serial.load(Ordering::Relaxed)
    }

    /// Put `serial` in force, in the data plane first: a cluster's edges answer with the one
    /// the leader published, so every edge gives the same serial for the same data.
    pub fn set_serial(&self, serial: u32, dp: Option<&mut Dataplane>) -> Result<()> {
        if let Some(dp) = dp {
            dp.set_serial(serial)?;
        }
        self.serial.store(serial, Ordering::Relaxed);
        Ok(())
    }

    /// The existing-names map's kind for an ancestor of a customer name: none when the config
    /// fixes the name (a host name wins).
    fn ancestor_kind(&self, name: &Name) -> Option<(NameKey, u32)> {
        let key = name_key(&name_wire(name));
        (!self.fixed_names.contains_key(&key)).then_some((key, existing::EMPTY))
    }

    /// Every name the existing-names map should hold.
    fn wanted_existing(&self) -> HashMap<NameKey, u32> {
        let mut out = self.fixed_names.clone();
        out.extend(self.ancestors.iter().filter_map(|n| self.ancestor_kind(n)));
        out
    }

    /// Add a customer (validated by the caller) and publish the new snapshot. See
    /// [`Catalog::insert_customer`].
    pub fn add_customer(&mut self, config: CustomerConfig, dp: Option<&mut Dataplane>) -> Result<()> {
        self.insert_customer(config, dp)?;
        self.publish();
        Ok(())
    }

    /// Add a customer without publishing (for adding many, then [`Catalog::publish`] once): its
    /// record and names go to the data plane first, record before names. Fails if a name
    /// shares a key with another (never by chance).
    pub fn insert_customer(&mut self, config: CustomerConfig, dp: Option<&mut Dataplane>) -> Result<()> {
        let fraction = if self.gated { 0.0 } else { config.fraction };
        let record = customer_record(&config, fraction, self.epoch).map_err(|e| Error::Record(config.id.clone(), e))?;
        self.insert_record(config, fraction, record, dp)
    }

    /// [`Catalog::insert_customer`] with the record it starts with.
    fn insert_record(
        &mut self,
        config: CustomerConfig,
        fraction: f64,
        record: CustomerRecord,
        mut dp: Option<&mut Dataplane>,
    ) -> Result<()> {
        let id = config.id.clone();
        if self.by_id.contains_key(&id) {
            return Err(Error::Record(id, "a customer of this id exists".into()));
        }
        let index = u32::try_from(self.customers.len())
            .ok()
            .filter(|&i| i < spillway_common::maps::MAX_CUSTOMERS)
            .ok_or_else(|| Error::Record(id.clone(), "the customers map is full".into()))?;
        let keys = self.free_keys(&id, &config.names)?;
        if let Some(dp) = dp.as_deref_mut() {
            dp.set_customer(index, &record)?;
            for key in &keys {
                dp.set_name(*key, index)?;
            }
        }
        let i = self.customers.len();
        for key in &keys {
            self.by_key.insert(*key, i);
        }
        self.by_id.insert(id, i);
        let new_ancestors = add_ancestors(&mut self.ancestors, &config.names);
        if let Some(dp) = dp.as_deref_mut() {
            for (key, kind) in new_ancestors.iter().filter_map(|n| self.ancestor_kind(n)) {
                dp.set_existing(key, kind)?;
            }
        }
        self.bump_serial(dp)?;
        let cname = config.origin_cname.as_deref().and_then(|n| parse_name(n).ok());
        let live = Arc::new(LiveCustomer::new(config.id.clone(), record, cname));
        self.version += 1;
        self.customers.push(Customer {
            config,
            index,
            keys,
            fraction,
            mode: Mode::Auto,
            record,
            contracted_rps: 0,
            live,
            version: self.version,
        });
        Ok(())
    }

    /// Customer `i` changed: it takes the next change number.
    fn touch(&mut self, i: usize) {
        self.version += 1;
        self.customers[i].version = self.version;
    }

    /// The number of the last change of a customer or of the proxies.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The number the proxy set took when it last changed.
    pub fn proxies_version(&self) -> u64 {
        self.proxies_version
    }

    /// The proxy addresses in force.
    pub fn proxy_addresses(&self) -> &[std::net::IpAddr] {
        &self.proxy_addresses
    }

    /// A customer as a cluster's control hosts put it in force (on an edge): added, or its
    /// names, entry and record replaced, data plane first. New names go in before old ones
    /// leave; then the record, built with the fraction and proxy TTL given, is one write. The
    /// edge does not decide fractions: the customer is held as set by hand.
    pub fn apply_entry(
        &mut self,
        config: CustomerConfig,
        fraction: f64,
        proxy_ttl: u32,
        contracted_rps: u64,
        mut dp: Option<&mut Dataplane>,
    ) -> Result<()> {
        let id = config.id.clone();
        let mut record = customer_record(&config, fraction, self.epoch).map_err(|e| Error::Record(id.clone(), e))?;
        record.proxy_ttl = proxy_ttl.clamp(1, config.ttl.max(1));
        let Some(&i) = self.by_id.get(&id) else {
            self.insert_record(config, fraction, record, dp)?;
            let c = self.customers.last_mut().expect("just added");
            c.mode = Mode::Manual;
            c.contracted_rps = contracted_rps;
            self.publish();
            return Ok(());
        };
        if self.customers[i].config.zones != config.zones {
            return Err(Error::Record(id, "its delegated zones changed: restart the edge to serve them".into()));
        }
        if self.customers[i].config.names != config.names {
            self.set_names(&id, config.names.clone(), dp.as_deref_mut())?;
        }
        if let Some(dp) = dp.as_deref_mut() {
            dp.set_customer(self.customers[i].index, &record)?;
        }
        let cname = config.origin_cname.as_deref().and_then(|n| parse_name(n).ok());
        let c = &mut self.customers[i];
        c.live.set_answering(record, cname);
        c.record = record;
        c.fraction = fraction;
        c.mode = Mode::Manual;
        c.contracted_rps = contracted_rps;
        c.config = config;
        self.touch(i);
        self.bump_serial(dp)
    }

    /// Replace a customer's names: new names go to the data plane before old ones leave it.
    pub fn set_names(&mut self, id: &str, names: Vec<String>, mut dp: Option<&mut Dataplane>) -> Result<()> {
        let i = *self.by_id.get(id).ok_or_else(|| Error::Record(id.into(), "no such customer".into()))?;
        let keys = self.free_keys(id, &names)?;
        let old = self.customers[i].keys.clone();
        if let Some(dp) = dp.as_deref_mut() {
            for key in &keys {
                dp.set_name(*key, self.customers[i].index)?;
            }
            for key in old.iter().filter(|k| !keys.contains(k)) {
                dp.remove_name(*key)?;
            }
        }
        for key in &old {
            self.by_key.remove(key);
        }
        for key in &keys {
            self.by_key.insert(*key, i);
        }
        let c = &mut self.customers[i];
        c.keys = keys;
        c.config.names = names;
        self.touch(i);
        self.refresh_names(dp)
    }

    /// The keys of `names`, none of them owned by a customer other than `id`.
    fn free_keys(&self, id: &str, names: &[String]) -> Result<Vec<NameKey>> {
        let mut keys: Vec<NameKey> = Vec::new();
        for n in names {
            let key = key_of(n).map_err(|e| Error::Record(id.into(), e))?;
            if keys.contains(&key) {
                return Err(Error::Record(id.into(), format!("name {n:?} is listed twice")));
            }
            if let Some(&other) = self.by_key.get(&key)
                && self.customers[other].config.id != id
            {
                let owner = &self.customers[other].config.id;
                return Err(Error::Record(id.into(), format!("name {n:?} belongs to customer {owner:?}")));
            }
            keys.push(key);
        }
        Ok(keys)
    }

    /// Recompute the empty non-terminals; in the data plane new ones go in before stale ones
    /// go out.
    fn refresh_names(&mut self, mut dp: Option<&mut Dataplane>) -> Result<()> {
        let before = std::mem::take(&mut self.ancestors);
        for c in &self.customers {
            add_ancestors(&mut self.ancestors, &c.config.names);
        }
        if let Some(dp) = dp.as_deref_mut() {
            for (key, kind) in self.ancestors.difference(&before).filter_map(|n| self.ancestor_kind(n)) {
                dp.set_existing(key, kind)?;
            }
            for (key, _) in before.difference(&self.ancestors).filter_map(|n| self.ancestor_kind(n)) {
                dp.remove_existing(key)?;
            }
        }
        self.bump_serial(dp)?;
        self.publish();
        Ok(())
    }

    /// True for customers from the config file, which the API does not change.
    pub fn is_from_file(&self, id: &str) -> bool {
        self.by_id.get(id).is_some_and(|&i| i < self.from_file)
    }

    /// The fraction auto mode puts in force: the buyer's estimate, or 0 when the market is on
    /// and no contract of the buyer is in force.
    pub fn auto_fraction(&self, c: &Customer) -> f64 {
        if self.gated && c.contracted_rps == 0 { 0.0 } else { c.config.fraction }
    }

    /// The buyer's contracts in force changed: record it, and in auto mode, when the buyer
    /// gains its first contract or loses its last, put the new fraction in force (the
    /// estimate, or 0); in between the controller moves it.
    pub fn set_contracted(&mut self, id: &str, rps: u64, dp: Option<&mut Dataplane>) -> Result<()> {
        let i = *self.by_id.get(id).ok_or_else(|| Error::Record(id.into(), "no such customer".into()))?;
        let before = self.customers[i].contracted_rps;
        self.customers[i].contracted_rps = rps;
        if before != rps {
            self.touch(i);
        }
        if before > 0 && rps > 0 {
            return Ok(());
        }
        let c = &self.customers[i];
        let fraction = self.auto_fraction(c);
        if c.mode == Mode::Auto && fraction != c.fraction {
            self.set_fraction(id, fraction, Mode::Auto, dp)?;
            tracing::info!(customer = %id, contracted_rps = rps, fraction, "fraction follows the contracts in force");
        }
        Ok(())
    }

    pub fn proxy_set(&self) -> &ProxySet {
        &self.proxy_set
    }

    /// Put new proxy addresses in force (the fleet's choice): the data plane's records (its
    /// two slots, so a reader sees the old set or the new), then the userspace server's
    /// snapshot. Nothing changes on an error.
    pub fn set_proxies(&mut self, addresses: &[std::net::IpAddr], dp: Option<&mut Dataplane>) -> Result<()> {
        let set = proxy_set(addresses).map_err(|e| Error::Record("(proxies)".into(), e))?;
        if set == self.proxy_set {
            return Ok(());
        }
        let rings = Box::new(proxy_rings(&set).map_err(|e| Error::Record("(proxies)".into(), e.into()))?);
        if let Some(dp) = dp {
            dp.set_proxy_rings(&rings)?;
        }
        self.proxy_set = set;
        self.proxy_rings = rings;
        self.proxy_addresses = addresses.to_vec();
        self.version += 1;
        self.proxies_version = self.version;
        self.publish();
        Ok(())
    }

    pub fn customers(&self) -> &[Customer] {
        &self.customers
    }

    pub fn customer(&self, id: &str) -> Option<&Customer> {
        self.by_id.get(id).map(|&i| &self.customers[i])
    }

    /// Put the catalog into a freshly loaded data plane. New maps are filled: the proxies'
    /// records, customer records, then names (a name points at a record that already
    /// exists). Pinned maps taken over are reconciled in place: names that left or moved go first
    /// (passed on to userspace meanwhile), then records and names are written, then records
    /// nobody uses go.
    /// Counters stay with the customer that owned them; an index that now holds another
    /// customer, or none, starts from zero.
    pub fn install(&self, dp: &mut Dataplane) -> Result<()> {
        let reused = dp.maps_origin() == Some(&MapsOrigin::Reused);
        dp.set_proxy_rings(&self.proxy_rings)?;
        let mut kept = HashSet::new();
        let mut left = HashSet::new();
        if reused {
            for (key, index) in dp.names()? {
                let want = self.by_key.get(&key).map(|&i| self.customers[i].index);
                if want == Some(index) {
                    kept.insert(index);
                } else {
                    dp.remove_name(key)?;
                    left.insert(index);
                }
            }
        }
        for c in &self.customers {
            if reused && !kept.contains(&c.index) {
                dp.zero_customer_stats(c.index)?;
            }
            dp.set_customer(c.index, &c.record)?;
        }
        for c in &self.customers {
            for key in &c.keys {
                dp.set_name(*key, c.index)?;
            }
        }
        // Negative answers: the existing names, then the zones that make them answered.
        let wanted = self.wanted_existing();
        for (key, kind) in &wanted {
            dp.set_existing(*key, *kind)?;
        }
        dp.set_zones(&self.zone_entries, self.serial())?;
        if reused {
            for (key, _) in dp.existing()? {
                if !wanted.contains_key(&key) {
                    dp.remove_existing(key)?;
                }
            }
            let live: HashSet<u32> = self.customers.iter().map(|c| c.index).collect();
            for i in dp.customer_indices()? {
                if !live.contains(&i) {
                    dp.remove_customer(i)?;
                }
            }
            for &i in left.difference(&live) {
                dp.zero_customer_stats(i)?;
            }
        }
        Ok(())
    }

    /// Set a customer's fraction and mode: data plane first, then the catalog.
    /// `None` for the data plane when XDP is off.
    pub fn set_fraction(
        &mut self,
        id: &str,
        fraction: f64,
        mode: Mode,
        dp: Option<&mut Dataplane>,
    ) -> Result<&Customer> {
        let i = self.position(id)?;
        let c = &self.customers[i];
        let mut record = customer_record(&c.config, fraction, self.epoch).map_err(|e| Error::Record(id.into(), e))?;
        record.proxy_ttl = c.record.proxy_ttl;
        self.replace_record(i, record, dp)?;
        let c = &mut self.customers[i];
        c.fraction = fraction;
        c.mode = mode;
        Ok(&self.customers[i])
    }

    /// Set the TTL of a customer's proxy answers (1 to its own TTL; origin and CNAME answers
    /// keep the customer's): data plane first, then the catalog.
    pub fn set_proxy_ttl(&mut self, id: &str, ttl: u32, dp: Option<&mut Dataplane>) -> Result<&Customer> {
        let i = self.position(id)?;
        let c = &self.customers[i];
        if ttl == 0 || ttl > c.config.ttl {
            return Err(Error::Record(id.into(), format!("proxy TTL {ttl} is not within 1..={}", c.config.ttl)));
        }
        let record = CustomerRecord { proxy_ttl: ttl, ..c.record };
        self.replace_record(i, record, dp)?;
        Ok(&self.customers[i])
    }

    /// Replace a customer's entry but its names (what the buyer set for itself, validated by
    /// the caller): the record is rebuilt around the fraction in force, data plane first. In
    /// auto mode with no controller at work (the market off, or no contract in force) the
    /// fraction follows the new estimate; a manual override or the controller's fraction
    /// stays. A proxy TTL the controller shortened stays, within the new TTL.
    pub fn set_config(&mut self, id: &str, config: CustomerConfig, dp: Option<&mut Dataplane>) -> Result<&Customer> {
        let i = self.position(id)?;
        let c = &self.customers[i];
        if config.id != c.config.id || config.names != c.config.names || config.zones != c.config.zones {
            return Err(Error::Record(id.into(), "names and zones change by their own requests".into()));
        }
        let controlled = self.gated && c.contracted_rps > 0;
        let fraction = match c.mode {
            Mode::Manual => c.fraction,
            Mode::Auto if controlled => c.fraction,
            Mode::Auto if self.gated => 0.0,
            Mode::Auto => config.fraction,
        };
        let mut record = customer_record(&config, fraction, self.epoch).map_err(|e| Error::Record(id.into(), e))?;
        if c.record.proxy_ttl < c.config.ttl {
            record.proxy_ttl = c.record.proxy_ttl.min(config.ttl);
        }
        let cname = config.origin_cname.as_deref().and_then(|n| parse_name(n).ok());
        let index = c.index;
        let mut dp = dp;
        if let Some(dp) = dp.as_deref_mut() {
            dp.set_customer(index, &record)?;
        }
        let c = &mut self.customers[i];
        c.record = record;
        c.fraction = fraction;
        c.config = config;
        c.live.set_answering(record, cname);
        self.touch(i);
        self.bump_serial(dp)?;
        Ok(&self.customers[i])
    }

    /// The re-draw period of Unix time `now`.
    fn epoch_at(&self, now: i64) -> u64 {
        now.max(0) as u64 / u64::from(self.redraw_s)
    }

    /// Give the customers that draw per resolver the seed of `now`'s period, if it is a new
    /// one: which resolvers get the proxies is drawn again. Returns how many records changed.
    pub fn redraw(&mut self, now: i64, mut dp: Option<&mut Dataplane>) -> Result<usize> {
        let epoch = self.epoch_at(now);
        if epoch == self.epoch {
            return Ok(0);
        }
        self.epoch = epoch;
        let mut changed = 0;
        for i in 0..self.customers.len() {
            let c = &self.customers[i];
            if c.record.draw != spillway_common::maps::draw::RESOLVER {
                continue;
            }
            let record = CustomerRecord { resolver_seed: resolver_seed(&c.config.id, epoch), ..c.record };
            self.replace_record(i, record, dp.as_deref_mut())?;
            changed += 1;
        }
        Ok(changed)
    }

    fn position(&self, id: &str) -> Result<usize> {
        self.by_id.get(id).copied().ok_or_else(|| Error::Record(id.into(), "no such customer".into()))
    }

    /// Customer `i`'s record in the data plane, then in the catalog and the userspace server.
    fn replace_record(&mut self, i: usize, record: CustomerRecord, mut dp: Option<&mut Dataplane>) -> Result<()> {
        if let Some(dp) = dp.as_deref_mut() {
            dp.set_customer(self.customers[i].index, &record)?;
        }
        let c = &mut self.customers[i];
        c.record = record;
        c.live.set_record(record);
        self.touch(i);
        self.bump_serial(dp)
    }
}

/// Put every proper ancestor of `names` (lowercase) into `set`; returns the ones it added.
pub fn add_ancestors(set: &mut HashSet<Name>, names: &[String]) -> Vec<Name> {
    let mut added = Vec::new();
    for n in names.iter().filter_map(|n| parse_name(n).ok()) {
        let mut up = n.to_lowercase().base_name();
        while !up.is_root() && set.insert(up.clone()) {
            added.push(up.clone());
            up = up.base_name();
        }
    }
    added
}
