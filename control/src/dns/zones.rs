//! Our zones and the fixed names in them, from the config: what the userspace server answers
//! from and what the XDP program's negative answers are built from (`ZONES`, `EXISTING`).

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
};

use hickory_proto::rr::Name;
use spillway_common::{
    maps::{NameKey, existing},
    name::name_key,
    negative::{SoaTimers, ZoneRecord},
};

use crate::{
    config::{Config, parse_name},
    dataplane::records::{ZoneEntry, name_wire},
};

/// SOA timers (seconds).
pub const SOA_TTL: u32 = 3600;
pub const SOA_REFRESH: u32 = 3600;
pub const SOA_RETRY: u32 = 600;
pub const SOA_EXPIRE: u32 = 604_800;
/// Negative answers are cached for min(SOA TTL, minimum) (RFC 2308 §5).
pub const SOA_MINIMUM: u32 = 60;

/// The SOA's timers in negative answers (its own TTL is the negative TTL).
pub const NEGATIVE_SOA: SoaTimers = SoaTimers {
    ttl: if SOA_MINIMUM < SOA_TTL { SOA_MINIMUM } else { SOA_TTL },
    refresh: SOA_REFRESH,
    retry: SOA_RETRY,
    expire: SOA_EXPIRE,
    minimum: SOA_MINIMUM,
};

pub struct Zones {
    /// Zone apexes (lowercase): ours, then the customers' delegated ones. All share one SOA
    /// origin and contact, and our nameservers.
    pub zones: Vec<Name>,
    pub mname: Name,
    pub rname: Name,
    pub nameservers: Vec<Name>,
    /// Proxy and nameserver host names (lowercase) -> their addresses.
    pub hosts: HashMap<Name, Vec<IpAddr>>,
    /// Proper ancestors of the host names (lowercase): empty non-terminals, for telling NODATA
    /// from NXDOMAIN; the customer names' come from the catalog (they change at run time).
    pub host_ancestors: HashSet<Name>,
}

impl Zones {
    pub fn from_config(config: &Config) -> Self {
        // Our zones, then the sub-zones customers delegate to us: all get our SOA and NS.
        let ours: Vec<Name> = config.server.zones.iter().filter_map(|z| parse_name(z).ok()).collect();
        let delegated = config.customers().flat_map(|c| c.zones.iter()).filter_map(|z| parse_name(z).ok());
        let home = ours.first().cloned().unwrap_or_else(Name::root);
        let mname = config
            .server
            .nameservers
            .first()
            .and_then(|n| parse_name(n).ok())
            .unwrap_or_else(|| Name::from_ascii("ns1").expect("label").append_domain(&home).expect("fits"));
        let rname = Name::from_ascii("hostmaster").expect("label").append_domain(&home).expect("fits");
        let zones: Vec<Name> = ours.iter().cloned().chain(delegated).map(|apex| apex.to_lowercase()).collect();
        let nameservers: Vec<Name> = config.server.nameservers.iter().filter_map(|n| parse_name(n).ok()).collect();
        let mut hosts: HashMap<Name, Vec<IpAddr>> = HashMap::new();
        if let Some(first) = zones.first() {
            for p in config.proxies() {
                if let Ok(label) = Name::from_ascii(&p.name)
                    && let Ok(name) = label.append_domain(first)
                {
                    hosts.entry(name.to_lowercase()).or_default().extend(p.addresses.iter().copied());
                }
            }
        }
        for (n, addrs) in &config.server.glue {
            if let Ok(name) = parse_name(n) {
                hosts.entry(name.to_lowercase()).or_default().extend(addrs.iter().copied());
            }
        }
        let mut host_ancestors = HashSet::new();
        let hosts_text: Vec<String> = hosts.keys().map(|n| n.to_string()).collect();
        let _ = crate::catalog::add_ancestors(&mut host_ancestors, &hosts_text);
        Self { zones, mname, rname, nameservers, hosts, host_ancestors }
    }

    /// The negative-answer record of a zone apex (`soa_len` 0 when its SOA is too long for the
    /// precomputed form).
    pub fn negative_record(&self, apex: &Name) -> ZoneRecord {
        ZoneRecord::new(name_wire(apex).len(), &name_wire(&self.mname), &name_wire(&self.rname), NEGATIVE_SOA)
    }

    /// Every zone's entry in the data plane's `ZONES` trie.
    pub fn zone_entries(&self) -> Vec<ZoneEntry> {
        self.zones.iter().map(|z| ZoneEntry::new(z, self.negative_record(z))).collect()
    }

    /// The names that exist without customer data: host names (userspace answers them) and
    /// their ancestors (NODATA).
    pub fn fixed_names(&self) -> HashMap<NameKey, u32> {
        let mut out: HashMap<NameKey, u32> =
            self.host_ancestors.iter().map(|n| (name_key(&name_wire(n)), existing::EMPTY)).collect();
        for n in self.hosts.keys() {
            out.insert(name_key(&name_wire(n)), existing::HOST);
        }
        out
    }
}
