//! The XDP data plane: loading and attaching the program, and the one owner of its map handles.
//! Everything that writes a BPF map goes through [`Dataplane`].
//!
//! The daemon's data plane is pinned ([`pins`]): its maps and links stay in bpffs when the
//! daemon stops or dies, so the program keeps answering from the last state, and the next
//! daemon takes them over and swaps its program in with `bpf_link_update` (no gap).

mod grace;
pub mod guard;
pub mod pins;
pub mod records;
pub mod test_run;

use std::{
    collections::HashSet,
    os::fd::{AsFd, BorrowedFd},
    path::PathBuf,
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{
        Array, HashMap, IterableMap, MapData, PerCpuArray, PerCpuHashMap, PerCpuValues,
        lpm_trie::{Key as LpmKey, LpmTrie},
    },
    programs::{
        Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        xdp::XdpLink,
    },
};
use spillway_common::{
    maps::{
        ACTIVE_SLOTS_MAP, CUSTOMER_STATS_MAP, CUSTOMERS_MAP, CustomerCounters, CustomerRecord, EXISTING_MAP,
        LOCAL_ADDRS_V4_MAP, LOCAL_ADDRS_V6_MAP, LOCAL_SET_MAP, LocalSet, MAX_CUSTOMERS, NAMES_MAP, NameKey, NameValue,
        PROXY_RINGS_MAP, ProxyRings, RESOLVER_QUERIES_MAP, RRL_CONFIG_MAP, RRL_EXEMPT_V4_MAP, RRL_EXEMPT_V6_MAP,
        RRL_STATS_MAP, ResolverKey, XDP_STATS_MAP, ZONE_INFO_MAP, ZONES_MAP, slots,
    },
    negative::{ZONE_KEY_LEN, ZoneInfo, ZoneRecord},
    rrl::{RRL_ACTIONS, RrlParams},
    stats::XDP_OUTCOMES,
};

use self::{
    grace::GracePeriod,
    pins::{MapsOrigin, PINNED_MAPS, PinDir},
    records::ZoneEntry,
};
use crate::{
    EBPF_OBJECT,
    config::XdpModeConfig,
    error::{Error, Result},
};

/// The XDP programs in the object.
pub mod program {
    /// The DNS responder.
    pub const DNS: &str = "spillway_dns";
    /// Returns XDP_TX and nothing else: the cost floor for benchmarks.
    pub const TX_FLOOR: &str = "xdp_tx_floor";
    /// Returns XDP_PASS: for the peer of a veth pair in native mode.
    pub const PASS: &str = "xdp_pass";
}

#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Benchmarks only: accept the program's own replies as queries.
    pub bench_replay: bool,
    /// The daemon: keep maps and links pinned in this bpffs directory. `None` (tests,
    /// benchmarks): nothing is pinned, and everything goes with the [`Dataplane`].
    pub pin_dir: Option<PathBuf>,
}

/// What attaching to an interface did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attached {
    /// A new link (nothing was attached by us there).
    New,
    /// The pinned link now runs this program: swapped in place, no packet missed.
    Swapped,
}

struct Pinned {
    dir: PinDir,
    layout: String,
    origin: MapsOrigin,
}

pub struct Dataplane {
    ebpf: Ebpf,
    names: HashMap<MapData, NameKey, NameValue>,
    customers: Array<MapData, CustomerRecord>,
    active_slots: Array<MapData, u32>,
    proxy_rings: Array<MapData, ProxyRings>,
    slot_writes: SlotWrites,
    customer_stats: PerCpuArray<MapData, CustomerCounters>,
    xdp_stats: PerCpuArray<MapData, u64>,
    local_v4: HashMap<MapData, [u8; 4], u8>,
    local_set: Array<MapData, LocalSet>,
    local_v6: HashMap<MapData, [u8; 16], u8>,
    rrl_config: Array<MapData, RrlParams>,
    rrl_exempt_v4: LpmTrie<MapData, [u8; 4], u8>,
    rrl_exempt_v6: LpmTrie<MapData, [u8; 16], u8>,
    rrl_stats: PerCpuArray<MapData, u64>,
    zones: LpmTrie<MapData, [u8; ZONE_KEY_LEN], ZoneRecord>,
    zone_info: Array<MapData, ZoneInfo>,
    existing: HashMap<MapData, NameKey, u32>,
    resolver_queries: PerCpuHashMap<MapData, ResolverKey, u64>,
    pins: Option<Pinned>,
}

/// What the writer of the two-slot maps must know (see `spillway_common::maps::slots`).
struct SlotWrites {
    grace: GracePeriod,
    /// `ACTIVE_SLOTS` entries changed since the last grace period: their other slot may still
    /// have readers.
    changed: HashSet<u32>,
    /// A grace period has passed since this process took the maps (a previous daemon's last
    /// changes may have readers too).
    settled: bool,
}

impl SlotWrites {
    /// Wait for the readers of `index`'s other slot, if it may have any.
    fn before_write(&mut self, index: u32) -> Result<()> {
        if !self.settled || self.changed.contains(&index) {
            self.grace.wait()?;
            self.changed.clear();
            self.settled = true;
        }
        Ok(())
    }
}

fn map_err(name: &str) -> impl FnOnce(aya::maps::MapError) -> Error + '_ {
    move |source| Error::Map { name: name.to_owned(), source }
}

fn xdp_mode(mode: XdpModeConfig) -> XdpMode {
    match mode {
        XdpModeConfig::Native => XdpMode::Driver,
        XdpModeConfig::Skb => XdpMode::Skb,
    }
}

/// Put `prog` into the link pinned at `path` (`bpf_link_update`: atomic, no packet misses a
/// program).
fn swap_into_link(prog: &mut Xdp, path: &std::path::Path) -> Result<()> {
    let pinned = PinnedLink::from_pin(path).map_err(|e| Error::Pin(format!("{}: {e}", path.display())))?;
    let link = XdpLink::try_from(FdLink::from(pinned)).map_err(|e| Error::Pin(format!("{}: {e}", path.display())))?;
    let id = prog.attach_to_link(link).map_err(prog_err(program::DNS))?;
    // Our handle goes; the pin keeps the link.
    drop(prog.take_link(id).map_err(prog_err(program::DNS))?);
    Ok(())
}

fn prog_err(name: &str) -> impl FnOnce(aya::programs::ProgramError) -> Error + '_ {
    move |source| Error::Program { name: name.to_owned(), source }
}

impl Dataplane {
    /// Load the object and the DNS program into the kernel (not attached yet).
    pub fn load(opts: LoadOptions) -> Result<Self> {
        let replay: u8 = opts.bench_replay.into();
        let mut loader = EbpfLoader::new();
        loader.override_global("BENCH_REPLAY", &replay, true);
        let pins = match &opts.pin_dir {
            None => None,
            Some(root) => {
                let dir = PinDir::open(root)?;
                let layout = pins::layout_of(EBPF_OBJECT)?;
                let maps_dir = dir.maps_dir(&layout);
                let others: Vec<String> = dir.map_layouts().into_iter().filter(|l| *l != layout).collect();
                let origin = if maps_dir.is_dir() {
                    pins::check_pinned(EBPF_OBJECT, &maps_dir)?;
                    MapsOrigin::Reused
                } else if others.is_empty() {
                    MapsOrigin::Created
                } else {
                    MapsOrigin::Migrated { from: others }
                };
                std::fs::create_dir_all(&maps_dir)
                    .map_err(|e| Error::Pin(format!("creating {}: {e}", maps_dir.display())))?;
                // Present: taken over as they are; absent: created and pinned there.
                for name in PINNED_MAPS {
                    loader.map_pin_path(name, maps_dir.join(name));
                }
                Some(Pinned { dir, layout, origin })
            }
        };
        let mut ebpf = loader.load(EBPF_OBJECT)?;
        for name in [program::DNS, program::TX_FLOOR, program::PASS] {
            let prog: &mut Xdp =
                ebpf.program_mut(name).ok_or(Error::MissingProgram(name))?.try_into().map_err(prog_err(name))?;
            prog.load().map_err(prog_err(name))?;
        }
        let mut take = |name: &'static str| ebpf.take_map(name).ok_or(Error::MissingMap(name));
        let names = HashMap::try_from(take(NAMES_MAP)?).map_err(map_err(NAMES_MAP))?;
        let customers = Array::try_from(take(CUSTOMERS_MAP)?).map_err(map_err(CUSTOMERS_MAP))?;
        let active_slots = Array::try_from(take(ACTIVE_SLOTS_MAP)?).map_err(map_err(ACTIVE_SLOTS_MAP))?;
        let proxy_rings = Array::try_from(take(PROXY_RINGS_MAP)?).map_err(map_err(PROXY_RINGS_MAP))?;
        let slot_writes = SlotWrites { grace: GracePeriod::new()?, changed: HashSet::new(), settled: false };
        let customer_stats = PerCpuArray::try_from(take(CUSTOMER_STATS_MAP)?).map_err(map_err(CUSTOMER_STATS_MAP))?;
        let xdp_stats = PerCpuArray::try_from(take(XDP_STATS_MAP)?).map_err(map_err(XDP_STATS_MAP))?;
        let local_v4 = HashMap::try_from(take(LOCAL_ADDRS_V4_MAP)?).map_err(map_err(LOCAL_ADDRS_V4_MAP))?;
        let local_v6 = HashMap::try_from(take(LOCAL_ADDRS_V6_MAP)?).map_err(map_err(LOCAL_ADDRS_V6_MAP))?;
        let local_set = Array::try_from(take(LOCAL_SET_MAP)?).map_err(map_err(LOCAL_SET_MAP))?;
        let rrl_config = Array::try_from(take(RRL_CONFIG_MAP)?).map_err(map_err(RRL_CONFIG_MAP))?;
        let rrl_exempt_v4 = LpmTrie::try_from(take(RRL_EXEMPT_V4_MAP)?).map_err(map_err(RRL_EXEMPT_V4_MAP))?;
        let rrl_exempt_v6 = LpmTrie::try_from(take(RRL_EXEMPT_V6_MAP)?).map_err(map_err(RRL_EXEMPT_V6_MAP))?;
        let rrl_stats = PerCpuArray::try_from(take(RRL_STATS_MAP)?).map_err(map_err(RRL_STATS_MAP))?;
        let zones = LpmTrie::try_from(take(ZONES_MAP)?).map_err(map_err(ZONES_MAP))?;
        let zone_info = Array::try_from(take(ZONE_INFO_MAP)?).map_err(map_err(ZONE_INFO_MAP))?;
        let existing = HashMap::try_from(take(EXISTING_MAP)?).map_err(map_err(EXISTING_MAP))?;
        let resolver_queries =
            PerCpuHashMap::try_from(take(RESOLVER_QUERIES_MAP)?).map_err(map_err(RESOLVER_QUERIES_MAP))?;
        Ok(Self {
            ebpf,
            names,
            customers,
            active_slots,
            proxy_rings,
            slot_writes,
            customer_stats,
            xdp_stats,
            local_v4,
            local_set,
            local_v6,
            rrl_config,
            rrl_exempt_v4,
            rrl_exempt_v6,
            rrl_stats,
            zones,
            zone_info,
            existing,
            resolver_queries,
            pins,
        })
    }

    /// How the pinned maps came to be (`None`: not pinned).
    pub fn maps_origin(&self) -> Option<&MapsOrigin> {
        self.pins.as_ref().map(|p| &p.origin)
    }

    /// The pinned maps' layout fingerprint (`None`: not pinned).
    pub fn layout(&self) -> Option<&str> {
        self.pins.as_ref().map(|p| p.layout.as_str())
    }

    /// Start reading the program's log records (aya-log) into the `log` facade.
    pub fn take_logger(&mut self) -> Option<aya_log::EbpfLogger<&'static dyn log::Log>> {
        aya_log::EbpfLogger::init(&mut self.ebpf).ok()
    }

    /// Attach the DNS program to an interface. Pinned: the link stays when the Dataplane goes
    /// (and a pinned link already there gets this program in place); not pinned: detached when
    /// the Dataplane is dropped.
    pub fn attach(&mut self, interface: &str, mode: XdpModeConfig) -> Result<Attached> {
        let Some(pins) = &self.pins else {
            self.attach_program(program::DNS, interface, mode)?;
            return Ok(Attached::New);
        };
        let path = pins.dir.link_path(interface, mode);
        // A link in the other mode cannot be switched in place: it goes first.
        for (iface, other_mode, other) in pins.dir.links() {
            if iface == interface && other != path {
                tracing::warn!(%interface, from = %other_mode, "xdp_mode changed: the old attachment is removed first");
                PinDir::remove_link(&other)?;
            }
        }
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(program::DNS)
            .ok_or(Error::MissingProgram(program::DNS))?
            .try_into()
            .map_err(prog_err(program::DNS))?;
        if path.exists() {
            match swap_into_link(prog, &path) {
                Ok(()) => return Ok(Attached::Swapped),
                Err(e) => {
                    tracing::warn!(%interface, "the pinned link cannot take the program ({e}): attaching anew");
                    PinDir::remove_link(&path)?;
                }
            }
        }
        let id = prog
            .attach(interface, xdp_mode(mode))
            .map_err(|source| Error::Program { name: format!("{} on {interface}", program::DNS), source })?;
        let link = prog.take_link(id).map_err(prog_err(program::DNS))?;
        let fd = FdLink::try_from(link).map_err(|e| {
            Error::Pin(format!("XDP on {interface} is a netlink attachment (kernel older than 5.9?): {e}"))
        })?;
        // Pinned, the link outlives our handle; dropping the handle leaves it attached.
        let _pinned = fd.pin(&path).map_err(|e| Error::Pin(format!("pinning {}: {e}", path.display())))?;
        Ok(Attached::New)
    }

    /// After attaching to every configured interface: detach from interfaces no longer
    /// configured, and remove maps a migration left behind.
    pub fn retire(&mut self, interfaces: &[String]) -> Result<()> {
        let Some(pins) = &self.pins else { return Ok(()) };
        for (iface, _, path) in pins.dir.links() {
            if !interfaces.contains(&iface) {
                PinDir::remove_link(&path)?;
                tracing::info!(interface = %iface, "XDP detached: the interface is no longer configured");
            }
        }
        if let MapsOrigin::Migrated { from } = &pins.origin {
            for layout in from {
                pins.dir.remove_maps(layout)?;
                tracing::info!(%layout, "old pinned maps removed after the migration");
            }
        }
        Ok(())
    }

    /// After a failed start: detach from `interfaces` (those this start attached anew), and
    /// when nothing was pinned before this start, unpin everything it pinned.
    pub fn detach_new(self, interfaces: &[String]) -> Result<()> {
        let Some(pins) = &self.pins else { return Ok(()) };
        if pins.origin == MapsOrigin::Created {
            return self.unpin_all().map(drop);
        }
        for (iface, _, path) in pins.dir.links() {
            if interfaces.contains(&iface) {
                PinDir::remove_link(&path)?;
            }
        }
        Ok(())
    }

    /// Remove the program from every interface and unpin everything (`--detach-on-exit`).
    pub fn unpin_all(mut self) -> Result<Vec<String>> {
        match self.pins.take() {
            Some(p) => p.dir.remove_all(),
            None => Ok(Vec::new()),
        }
    }

    /// Attach one of the object's programs (see [`program`]) to an interface.
    pub fn attach_program(&mut self, name: &'static str, interface: &str, mode: XdpModeConfig) -> Result<()> {
        let prog: &mut Xdp =
            self.ebpf.program_mut(name).ok_or(Error::MissingProgram(name))?.try_into().map_err(prog_err(name))?;
        prog.attach(interface, xdp_mode(mode))
            .map_err(|source| Error::Program { name: format!("{name} on {interface}"), source })?;
        Ok(())
    }

    /// The fd of one of the object's programs, for BPF_PROG_TEST_RUN.
    pub fn program_fd(&self, name: &'static str) -> Result<BorrowedFd<'_>> {
        let prog: &Xdp =
            self.ebpf.program(name).ok_or(Error::MissingProgram(name))?.try_into().map_err(prog_err(name))?;
        Ok(prog.fd().map_err(prog_err(name))?.as_fd())
    }

    /// The live value of `ACTIVE_SLOTS` entry `index`.
    fn active(&self, index: u32) -> Result<u32> {
        self.active_slots.get(&index, 0).map_err(map_err(ACTIVE_SLOTS_MAP))
    }

    /// Make `active` live for `ACTIVE_SLOTS` entry `index`. The values differ in their low byte
    /// only, so even a byte-wise copy by the kernel is never read torn.
    fn set_active(&mut self, index: u32, active: u32) -> Result<()> {
        self.active_slots.set(index, active, 0).map_err(map_err(ACTIVE_SLOTS_MAP))?;
        self.slot_writes.changed.insert(index);
        Ok(())
    }

    /// Replace a customer's record whole: written into its slot that is not live, then made
    /// live (see `spillway_common::maps::slots`), so a reader sees the old or the new one.
    pub fn set_customer(&mut self, index: u32, record: &CustomerRecord) -> Result<()> {
        if index >= MAX_CUSTOMERS {
            return Err(Error::Record(format!("#{index}"), "the customers map is full".into()));
        }
        self.slot_writes.before_write(index)?;
        let next = slots::next(self.active(index)?);
        let at = slots::record_index(index, slots::slot(next));
        self.customers.set(at, record, 0).map_err(map_err(CUSTOMERS_MAP))?;
        self.set_active(index, next)
    }

    /// Replace the proxies' records, as [`Dataplane::set_customer`] does a customer's.
    pub fn set_proxy_rings(&mut self, rings: &ProxyRings) -> Result<()> {
        let index = slots::PROXY_RINGS;
        self.slot_writes.before_write(index)?;
        let next = slots::next(self.active(index)?);
        self.proxy_rings.set(slots::slot(next), rings, 0).map_err(map_err(PROXY_RINGS_MAP))?;
        self.set_active(index, next)
    }

    pub fn set_name(&mut self, key: NameKey, customer: u32) -> Result<()> {
        self.names.insert(key, NameValue { customer, _pad: 0 }, 0).map_err(map_err(NAMES_MAP))
    }

    /// Remove a name; its queries are passed on to userspace from then on.
    pub fn remove_name(&mut self, key: NameKey) -> Result<()> {
        self.names.remove(&key).map_err(map_err(NAMES_MAP))
    }

    /// Every name in the map and its customer index (for reconciling pinned maps).
    pub fn names(&self) -> Result<Vec<(NameKey, u32)>> {
        self.names.iter().map(|r| r.map(|(k, v)| (k, v.customer)).map_err(map_err(NAMES_MAP))).collect()
    }

    /// Every customer index with a record.
    pub fn customer_indices(&self) -> Result<Vec<u32>> {
        let mut live = Vec::new();
        for index in 0..MAX_CUSTOMERS {
            if self.active(index)? != slots::NONE {
                live.push(index);
            }
        }
        Ok(live)
    }

    /// Take a customer's record out: its queries go to userspace from then on.
    pub fn remove_customer(&mut self, index: u32) -> Result<()> {
        self.set_active(index, slots::NONE)
    }

    /// Zero a customer index's counters (a pinned index that now holds another customer).
    pub fn zero_customer_stats(&mut self, index: u32) -> Result<()> {
        let cpus = aya::util::nr_cpus().map_err(|(what, e)| Error::Pin(format!("{what}: {e}")))?;
        let zeros = PerCpuValues::try_from(vec![CustomerCounters::default(); cpus])
            .map_err(|e| Error::Pin(format!("per-CPU values: {e}")))?;
        self.customer_stats.set(index, zeros, 0).map_err(map_err(CUSTOMER_STATS_MAP))?;
        let stale: Vec<ResolverKey> =
            self.resolver_queries.keys().filter_map(|k| k.ok()).filter(|k| k.customer == index).collect();
        for k in stale {
            // Gone already (evicted): nothing to zero.
            let _ = self.resolver_queries.remove(&k);
        }
        Ok(())
    }

    /// The queries counted per resolver prefix for a customer index (one that draws per
    /// resolver), summed over CPUs, most first: ([`spillway_common::decision::subnet_key_v4`]
    /// or `_v6` of the prefix, queries). The map is an LRU: prefixes that stopped asking go
    /// first when it is full.
    pub fn resolver_queries(&self, index: u32) -> Result<Vec<(u64, u64)>> {
        let mut out = Vec::new();
        for entry in self.resolver_queries.iter() {
            // An entry evicted while the walk passes it is skipped, not an error.
            let Ok((key, per_cpu)) = entry else { continue };
            if key.customer == index {
                out.push((key.client_key, per_cpu.iter().sum::<u64>()));
            }
        }
        out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok(out)
    }

    /// Make `addrs` the destination addresses the program answers for (others are passed).
    /// New ones first, then the stale ones go: a reader never finds an address missing that
    /// stays.
    pub fn set_local_addrs(&mut self, addrs: &[std::net::IpAddr]) -> Result<()> {
        use std::net::IpAddr;
        let v4: Vec<[u8; 4]> =
            addrs.iter().filter_map(|a| if let IpAddr::V4(a) = a { Some(a.octets()) } else { None }).collect();
        let v6: Vec<[u8; 16]> =
            addrs.iter().filter_map(|a| if let IpAddr::V6(a) = a { Some(a.octets()) } else { None }).collect();
        replace_set(&mut self.local_v4, &v4, LOCAL_ADDRS_V4_MAP)?;
        replace_set(&mut self.local_v6, &v6, LOCAL_ADDRS_V6_MAP)?;
        // After the hash maps: the small set may send the program to them.
        self.local_set.set(0, LocalSet::new(&v4, &v6), 0).map_err(map_err(LOCAL_SET_MAP))
    }

    /// The rate limit's parameters and exempt prefixes (stale prefixes removed after).
    pub fn set_rrl(&mut self, params: &RrlParams, exempt: &[ipnet::IpNet]) -> Result<()> {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for net in exempt {
            match net {
                ipnet::IpNet::V4(n) => v4.push((u32::from(n.prefix_len()), n.network().octets())),
                ipnet::IpNet::V6(n) => v6.push((u32::from(n.prefix_len()), n.network().octets())),
            }
        }
        replace_prefixes(&mut self.rrl_exempt_v4, &v4, RRL_EXEMPT_V4_MAP)?;
        replace_prefixes(&mut self.rrl_exempt_v6, &v6, RRL_EXEMPT_V6_MAP)?;
        self.rrl_config.set(0, params, 0).map_err(map_err(RRL_CONFIG_MAP))
    }

    /// Make `zones` the zones the program answers negatively for, all with SOA serial
    /// `serial`: the serial and the new zones first, then stale zones go.
    pub fn set_zones(&mut self, zones: &[ZoneEntry], serial: u32) -> Result<()> {
        self.zone_info.set(0, ZoneInfo { serial, _pad: 0 }, 0).map_err(map_err(ZONE_INFO_MAP))?;
        for z in zones {
            self.zones.insert(&LpmKey::new(z.prefix_len, z.key), z.record, 0).map_err(map_err(ZONES_MAP))?;
        }
        let stale: Vec<(u32, [u8; ZONE_KEY_LEN])> = self
            .zones
            .keys()
            .filter_map(|k| k.ok())
            .map(|k| (k.prefix_len(), k.data()))
            .filter(|(len, data)| !zones.iter().any(|z| z.prefix_len == *len && z.key == *data))
            .collect();
        for (len, data) in stale {
            self.zones.remove(&LpmKey::new(len, data)).map_err(map_err(ZONES_MAP))?;
        }
        Ok(())
    }

    /// The SOA serial of every zone's negative answers.
    pub fn set_serial(&mut self, serial: u32) -> Result<()> {
        let mut info = self.zone_info.get(&0, 0).map_err(map_err(ZONE_INFO_MAP))?;
        info.serial = serial;
        self.zone_info.set(0, info, 0).map_err(map_err(ZONE_INFO_MAP))
    }

    /// A name that exists without a customer's data (`spillway_common::maps::existing`).
    pub fn set_existing(&mut self, key: NameKey, kind: u32) -> Result<()> {
        self.existing.insert(key, kind, 0).map_err(map_err(EXISTING_MAP))
    }

    pub fn remove_existing(&mut self, key: NameKey) -> Result<()> {
        self.existing.remove(&key).map_err(map_err(EXISTING_MAP))
    }

    /// Every name in the existing-names map and its kind (for reconciling pinned maps).
    pub fn existing(&self) -> Result<Vec<(NameKey, u32)>> {
        self.existing.iter().map(|r| r.map_err(map_err(EXISTING_MAP))).collect()
    }

    /// Per-action counts of the program's rate limit, indexed by `RrlAction`.
    pub fn rrl_stats(&self) -> Result<[u64; RRL_ACTIONS as usize]> {
        sum_counters(&self.rrl_stats, RRL_STATS_MAP)
    }

    /// Per-outcome packet counts, summed over CPUs, indexed by `XdpOutcome`.
    pub fn xdp_stats(&self) -> Result<[u64; XDP_OUTCOMES as usize]> {
        sum_counters(&self.xdp_stats, XDP_STATS_MAP)
    }

    /// A customer's answer counts, summed over CPUs, indexed by `Target`.
    pub fn customer_answers(&self, index: u32) -> Result<[u64; 3]> {
        sum_customer_answers(&self.customer_stats, index)
    }

    /// Handles of its own to the counters, for readers that must not take the engine's lock
    /// (`/metrics`).
    pub fn stats_reader(&self) -> Result<StatsReader> {
        let open = |m: &MapData, name: &'static str| -> Result<aya::maps::Map> {
            let id = m.info().map_err(map_err(name))?.id();
            Ok(aya::maps::Map::PerCpuArray(MapData::from_id(id).map_err(map_err(name))?))
        };
        Ok(StatsReader {
            rrl_stats: PerCpuArray::try_from(open(self.rrl_stats.map(), RRL_STATS_MAP)?)
                .map_err(map_err(RRL_STATS_MAP))?,
            customer_stats: PerCpuArray::try_from(open(self.customer_stats.map(), CUSTOMER_STATS_MAP)?)
                .map_err(map_err(CUSTOMER_STATS_MAP))?,
            xdp_stats: PerCpuArray::try_from(open(self.xdp_stats.map(), XDP_STATS_MAP)?)
                .map_err(map_err(XDP_STATS_MAP))?,
        })
    }
}

/// The data plane's counters, read through handles of their own (no `&mut`, no lock).
pub struct StatsReader {
    customer_stats: PerCpuArray<MapData, CustomerCounters>,
    xdp_stats: PerCpuArray<MapData, u64>,
    rrl_stats: PerCpuArray<MapData, u64>,
}

impl StatsReader {
    pub fn xdp_stats(&self) -> Result<[u64; XDP_OUTCOMES as usize]> {
        sum_counters(&self.xdp_stats, XDP_STATS_MAP)
    }

    pub fn rrl_stats(&self) -> Result<[u64; RRL_ACTIONS as usize]> {
        sum_counters(&self.rrl_stats, RRL_STATS_MAP)
    }

    pub fn customer_answers(&self, index: u32) -> Result<[u64; 3]> {
        sum_customer_answers(&self.customer_stats, index)
    }
}

/// A per-CPU counter array's counters, each summed over CPUs.
fn sum_counters<const N: usize>(map: &PerCpuArray<MapData, u64>, name: &str) -> Result<[u64; N]> {
    let mut out = [0u64; N];
    for (i, slot) in out.iter_mut().enumerate() {
        let per_cpu = map.get(&(i as u32), 0).map_err(map_err(name))?;
        *slot = per_cpu.iter().sum();
    }
    Ok(out)
}

/// Make a set map hold exactly `want` (value 1): inserts first, then removals.
fn replace_set<const N: usize>(map: &mut HashMap<MapData, [u8; N], u8>, want: &[[u8; N]], name: &str) -> Result<()> {
    for k in want {
        map.insert(k, 1, 0).map_err(map_err(name))?;
    }
    let stale: Vec<[u8; N]> = map.keys().filter_map(|k| k.ok()).filter(|k| !want.contains(k)).collect();
    for k in stale {
        map.remove(&k).map_err(map_err(name))?;
    }
    Ok(())
}

/// Make an LPM trie hold exactly the prefixes `want` (length, network), value 1.
fn replace_prefixes<const N: usize>(
    map: &mut LpmTrie<MapData, [u8; N], u8>,
    want: &[(u32, [u8; N])],
    name: &str,
) -> Result<()> {
    for (len, net) in want {
        map.insert(&LpmKey::new(*len, *net), 1, 0).map_err(map_err(name))?;
    }
    let stale: Vec<(u32, [u8; N])> =
        map.keys().filter_map(|k| k.ok()).map(|k| (k.prefix_len(), k.data())).filter(|k| !want.contains(k)).collect();
    for (len, net) in stale {
        map.remove(&LpmKey::new(len, net)).map_err(map_err(name))?;
    }
    Ok(())
}

fn sum_customer_answers(map: &PerCpuArray<MapData, CustomerCounters>, index: u32) -> Result<[u64; 3]> {
    let per_cpu = map.get(&index, 0).map_err(map_err(CUSTOMER_STATS_MAP))?;
    let mut out = [0u64; 3];
    for c in per_cpu.iter() {
        for (o, v) in out.iter_mut().zip(c.answers) {
            *o += v;
        }
    }
    Ok(out)
}
