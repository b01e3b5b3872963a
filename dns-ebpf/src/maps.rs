//! Map definitions. Names and layouts come from `spillway_common::maps`.

use crate::parse::Query;
use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, LruPerCpuHashMap, PerCpuArray, lpm_trie::Key},
};
use spillway_common::{
    maps::{
        CustomerCounters, CustomerRecord, LocalSet, MAX_CUSTOMERS, MAX_LOCAL_ADDRS, MAX_NAMES, MAX_RESOLVER_KEYS,
        MAX_RRL_BUCKETS, NameKey, NameValue, ProxyRings, ResolverKey, slots,
    },
    negative::{MAX_ZONES, ZONE_KEY_LEN, ZoneInfo, ZoneRecord},
    rrl::{MAX_RRL_EXEMPT, RRL_ACTIONS, RrlBucket, RrlKey, RrlParams},
    stats::XDP_OUTCOMES,
};

#[map(name = "NAMES")]
pub static NAMES: HashMap<NameKey, NameValue> = HashMap::with_max_entries(MAX_NAMES, BPF_F_NO_PREALLOC);

/// Two slots per customer (see `spillway_common::maps::slots`).
#[map(name = "CUSTOMERS")]
pub static CUSTOMERS: Array<CustomerRecord> = Array::with_max_entries(MAX_CUSTOMERS * 2, 0);

#[map(name = "ACTIVE_SLOTS")]
pub static ACTIVE_SLOTS: Array<u32> = Array::with_max_entries(slots::ENTRIES, 0);

#[map(name = "PROXY_RINGS")]
pub static PROXY_RINGS: Array<ProxyRings> = Array::with_max_entries(2, 0);

/// The live slot of `ACTIVE_SLOTS` entry `index`, if one is.
#[inline(always)]
fn live_slot(index: u32) -> Option<u32> {
    let active = unsafe { core::ptr::read_volatile(ACTIVE_SLOTS.get_ptr(index)?) };
    if active == slots::NONE { None } else { Some(slots::slot(active)) }
}

/// A customer's live record: two array lookups, which the verifier inlines (no hash).
#[inline(always)]
pub fn customer_record(customer: u32) -> Option<&'static CustomerRecord> {
    if customer >= MAX_CUSTOMERS {
        return None;
    }
    CUSTOMERS.get(slots::record_index(customer, live_slot(customer)?))
}

/// The live proxy rings.
#[inline(always)]
pub fn proxy_rings() -> Option<&'static ProxyRings> {
    PROXY_RINGS.get(live_slot(slots::PROXY_RINGS)?)
}

#[map(name = "CUSTOMER_STATS")]
pub static CUSTOMER_STATS: PerCpuArray<CustomerCounters> = PerCpuArray::with_max_entries(MAX_CUSTOMERS, 0);

#[map(name = "XDP_STATS")]
pub static XDP_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(XDP_OUTCOMES, 0);

#[map(name = "LOCAL_ADDRS_V4")]
pub static LOCAL_ADDRS_V4: HashMap<[u8; 4], u8> = HashMap::with_max_entries(MAX_LOCAL_ADDRS, BPF_F_NO_PREALLOC);

#[map(name = "LOCAL_ADDRS_V6")]
pub static LOCAL_ADDRS_V6: HashMap<[u8; 16], u8> = HashMap::with_max_entries(MAX_LOCAL_ADDRS, BPF_F_NO_PREALLOC);

#[map(name = "LOCAL_SET")]
pub static LOCAL_SET: Array<LocalSet> = Array::with_max_entries(1, 0);

#[map(name = "RRL_CONFIG")]
pub static RRL_CONFIG: Array<RrlParams> = Array::with_max_entries(1, 0);

/// Shared by every CPU, so a flood spread over queues meets one budget; concurrent updates of
/// one bucket may lose a count now and then, which errs by a response, not by a rate.
#[map(name = "RRL_STATE")]
pub static RRL_STATE: LruHashMap<RrlKey, RrlBucket> = LruHashMap::with_max_entries(MAX_RRL_BUCKETS, 0);

#[map(name = "RRL_EXEMPT_V4")]
pub static RRL_EXEMPT_V4: LpmTrie<[u8; 4], u8> = LpmTrie::with_max_entries(MAX_RRL_EXEMPT, 0);

#[map(name = "RRL_EXEMPT_V6")]
pub static RRL_EXEMPT_V6: LpmTrie<[u8; 16], u8> = LpmTrie::with_max_entries(MAX_RRL_EXEMPT, 0);

#[map(name = "RRL_STATS")]
pub static RRL_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(RRL_ACTIONS, 0);

/// The longest match of a question's reversed name is its closest enclosing zone.
#[map(name = "ZONES")]
pub static ZONES: LpmTrie<[u8; ZONE_KEY_LEN], ZoneRecord> = LpmTrie::with_max_entries(MAX_ZONES, 0);

#[map(name = "ZONE_INFO")]
pub static ZONE_INFO: Array<ZoneInfo> = Array::with_max_entries(1, 0);

/// Names that exist without a customer's data (`spillway_common::maps::existing`).
#[map(name = "EXISTING")]
pub static EXISTING: HashMap<NameKey, u32> = HashMap::with_max_entries(MAX_NAMES, BPF_F_NO_PREALLOC);

/// Per CPU, so counting takes no lock and no atomic; userspace sums the CPUs.
#[map(name = "RESOLVER_QUERIES")]
pub static RESOLVER_QUERIES: LruPerCpuHashMap<ResolverKey, u64> =
    LruPerCpuHashMap::with_max_entries(MAX_RESOLVER_KEYS, 0);

/// One more query from the resolver prefix `client_key` for `customer`.
#[inline(always)]
pub fn count_resolver(customer: u32, client_key: u64) {
    let key = ResolverKey { client_key, customer, _pad: 0 };
    match RESOLVER_QUERIES.get_ptr_mut(&key) {
        Some(n) => unsafe { *n += 1 },
        // A full map evicts the least recently asking; a lost insert race loses one count.
        None => {
            let _ = RESOLVER_QUERIES.insert(&key, &1, 0);
        }
    }
}

/// Per-CPU scratch space (see [`Scratch`]).
#[map(name = "SCRATCH")]
pub static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// Bytes longer than the stack allows, and values the verifier should forget.
#[repr(C)]
pub struct Scratch {
    /// The parsed query. The reply path reads it from here, so for the verifier every field is
    /// a value within its bounds rather than one of the constants each parse path produced, and
    /// the reply path is checked once for all of them instead of once per path.
    pub query: Query,
    /// Reading the name length back from a map makes the verifier forget that it was one of
    /// 255 constants, so it checks the code after the name walk once instead of once per length.
    pub name_len: u32,
    pub _pad: u32,
    /// The `ZONES` key of the question (see `negative::find_zone`).
    pub zone_key: Key<[u8; ZONE_KEY_LEN]>,
    pub _pad2: [u8; 4],
    /// The rate limit's exemption lookups (see `rrl::exempt`).
    pub exempt_v4: Key<[u8; 4]>,
    pub exempt_v6: Key<[u8; 16]>,
    /// The rate limit's bucket key, and a new bucket before it is inserted.
    pub rrl_key: RrlKey,
    pub rrl_bucket: RrlBucket,
    /// Headers and question, while the packet grows at its head (see `respond::grow`).
    pub head: [u8; HEAD_BUF],
}

/// Room for the longest part kept when growing at the head: Ethernet + VLAN + IPv6 + UDP + DNS
/// header + 255-byte name + type and class = 337 bytes.
pub const HEAD_BUF: usize = 512;
