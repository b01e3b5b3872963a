//! BPF map names, sizes and the `#[repr(C)]` records stored in them.
//!
//! Layout rule: every field is naturally aligned and padding is explicit, so the kernel and
//! userspace agree on the bytes without relying on compiler padding.

use crate::answers::{CNAME_RR_BUF, PROXY_RING_V4_LEN, PROXY_RING_V6_LEN, RR_A_LEN, RR_AAAA_LEN};

/// Customer names: [`NameKey`] -> [`NameValue`].
pub const NAMES_MAP: &str = "NAMES";
/// Customer records, an array of two slots per customer: [`slots::record_index`] ->
/// [`CustomerRecord`].
pub const CUSTOMERS_MAP: &str = "CUSTOMERS";
/// Which slot of a customer's records is live, an array: customer index -> one of [`slots`];
/// entry [`slots::PROXY_RINGS`] says it for [`PROXY_RINGS_MAP`].
pub const ACTIVE_SLOTS_MAP: &str = "ACTIVE_SLOTS";
/// The proxies' answer records, an array of two slots: slot -> [`ProxyRings`].
pub const PROXY_RINGS_MAP: &str = "PROXY_RINGS";
/// Per-CPU answer counters per customer index: [`CustomerCounters`].
pub const CUSTOMER_STATS_MAP: &str = "CUSTOMER_STATS";
/// Per-CPU counters per [`crate::stats::XdpOutcome`].
pub const XDP_STATS_MAP: &str = "XDP_STATS";
/// The addresses the program answers for, per family: address -> 1. Empty: it answers nothing.
pub const LOCAL_ADDRS_V4_MAP: &str = "LOCAL_ADDRS_V4";
pub const LOCAL_ADDRS_V6_MAP: &str = "LOCAL_ADDRS_V6";
/// The same addresses when a family has few: key 0 -> [`LocalSet`].
pub const LOCAL_SET_MAP: &str = "LOCAL_SET";
/// Response rate limiting: key 0 -> [`crate::rrl::RrlParams`].
pub const RRL_CONFIG_MAP: &str = "RRL_CONFIG";
/// Response rate limiting: [`crate::rrl::RrlKey`] -> [`crate::rrl::RrlBucket`] (LRU).
pub const RRL_STATE_MAP: &str = "RRL_STATE";
/// Prefixes exempt from rate limiting (LPM tries, value 1).
pub const RRL_EXEMPT_V4_MAP: &str = "RRL_EXEMPT_V4";
pub const RRL_EXEMPT_V6_MAP: &str = "RRL_EXEMPT_V6";
/// Per-CPU counters per [`crate::rrl::RrlAction`].
pub const RRL_STATS_MAP: &str = "RRL_STATS";
/// Zone apexes, an LPM trie: [`crate::negative::zone_key`] of the apex -> [`crate::negative::ZoneRecord`].
pub const ZONES_MAP: &str = "ZONES";
/// What all zones share: key 0 -> [`crate::negative::ZoneInfo`].
pub const ZONE_INFO_MAP: &str = "ZONE_INFO";
/// Names that exist without a customer's data: [`NameKey`] -> one of [`existing`].
pub const EXISTING_MAP: &str = "EXISTING";
/// Queries per resolver prefix of the customers that draw per resolver (per-CPU LRU):
/// [`ResolverKey`] -> queries.
pub const RESOLVER_QUERIES_MAP: &str = "RESOLVER_QUERIES";
/// (Resolver prefix, customer) pairs whose queries are counted; the least recently asking go.
pub const MAX_RESOLVER_KEYS: u32 = 1 << 16;

/// Destination addresses the program answers for, per family.
pub const MAX_LOCAL_ADDRS: u32 = 4096;
/// Subnets and classes whose response rates are kept.
pub const MAX_RRL_BUCKETS: u32 = 1 << 18;

/// The meaning of the maps' keys and records. Bump it when a key or record changes meaning
/// without changing size (the name hash, a field's use): pinned maps of another version are
/// then migrated, never reused. Sizes and entries are compared by the loader anyway.
#[cfg(not(feature = "layout-next"))]
pub const MAP_LAYOUT_VERSION: u32 = 6;
/// One version ahead, for the binary the upgrade test migrates to (`spillway/upgrade-test`).
#[cfg(feature = "layout-next")]
pub const MAP_LAYOUT_VERSION: u32 = 7;

pub const MAX_NAMES: u32 = 1 << 20;
/// Customers an edge holds. Their records are preallocated, two slots each (see [`slots`]):
/// 2 x 16 384 x 944 bytes = 31 MB of kernel memory.
pub const MAX_CUSTOMERS: u32 = 1 << 14;
/// Proxy addresses kept per address family.
pub const MAX_PROXY_ADDRS: usize = 64;
/// Proxy addresses put in one answer: a rotating window over the family's proxies.
pub const MAX_PROXY_ANSWER: usize = 8;
/// Origin addresses per family per customer.
pub const MAX_ORIGIN_ADDRS: usize = 8;
/// Longest CNAME target in wire format.
pub const MAX_CNAME_LEN: usize = 255;

/// Key of the names map: two independent 64-bit hashes of the lowercased wire-format name.
///
/// Hashing keeps the key at 16 bytes whatever the name length, so the kernel's own map hash and
/// compare stay cheap and flat from 1 to 1 000 000 names. Two names sharing both hashes are
/// refused by the loader (it never happens by chance: 2^-128).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NameKey {
    pub h1: u64,
    pub h2: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NameValue {
    /// Index into the customers map and the customer counters.
    pub customer: u32,
    pub _pad: u32,
}

/// Two slots per record, so that a reader never sees one half written: the writer fills the
/// slot that is not live, makes it live in `ACTIVE_SLOTS` (one aligned 4-byte store), and before
/// it writes the other slot again waits for every program run that may still read it (an RCU
/// grace period). A query reads the live slot's number, then that slot.
pub mod slots {
    use super::MAX_CUSTOMERS;

    /// No record: the customer's queries go to userspace.
    pub const NONE: u32 = 0;
    /// Slot 0 is live.
    pub const FIRST: u32 = 1;
    /// Slot 1 is live.
    pub const SECOND: u32 = 2;
    /// The `ACTIVE_SLOTS` entry of the proxy rings.
    pub const PROXY_RINGS: u32 = MAX_CUSTOMERS;
    /// Entries of `ACTIVE_SLOTS`.
    pub const ENTRIES: u32 = MAX_CUSTOMERS + 1;

    /// The slot (0 or 1) that `active` (one of the constants above but [`NONE`]) makes live.
    pub const fn slot(active: u32) -> u32 {
        (active - 1) & 1
    }

    /// The other live value: what the next write fills and makes live.
    pub const fn next(active: u32) -> u32 {
        if active == FIRST { SECOND } else { FIRST }
    }

    /// The `CUSTOMERS` index of a customer's slot.
    pub const fn record_index(customer: u32, slot: u32) -> u32 {
        customer * 2 + (slot & 1)
    }
}

/// What a name in the `EXISTING` map is.
pub mod existing {
    /// An empty non-terminal, or a zone's own name: NODATA for every type.
    pub const EMPTY: u32 = 1;
    /// A proxy's or name server's host name: its addresses are answered by userspace.
    pub const HOST: u32 = 2;
}

/// What the answer is when a query is not sent to the proxies.
pub mod overflow {
    pub const ORIGIN: u8 = 0;
    pub const CNAME: u8 = 1;
}

/// Which number a query's side (proxies or overflow) is drawn from.
pub mod draw {
    /// A random number per query: the share of answers follows the fraction.
    pub const QUERY: u8 = 0;
    /// [`crate::decision::resolver_draw`] of the resolver's prefix under the record's seed:
    /// every query of a resolver gets the same side while the seed holds, so the share of
    /// resolvers follows the fraction, and their users with them.
    pub const RESOLVER: u8 = 1;
}

/// How one origin address is chosen for an overflow answer.
pub mod assignment {
    pub const ROUND_ROBIN: u8 = 0;
    pub const WEIGHTED: u8 = 1;
    /// Rendezvous hash of the client's subnet (/24 for IPv4, /56 for IPv6).
    pub const HASH: u8 = 2;
}

/// Everything the data plane needs to answer for one customer: the decision's inputs and every
/// answer record it may send but the proxies' ([`ProxyRings`]), precomputed (see
/// [`crate::answers`]). Replaced whole on every change, through the other of its two slots (see
/// [`slots`]), so a packet sees either the old or the new record, never a mix.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CustomerRecord {
    /// Proxy answer iff the query's draw (see [`draw`]) `< proxy_threshold`; 0 = never,
    /// 2^32 = always.
    pub proxy_threshold: u64,
    /// The TTL of origin and CNAME answers (the customer's).
    pub ttl: u32,
    /// The TTL of proxy answers, which the program writes into each proxy record it copies:
    /// the customer's, or shorter where the controller wants a quicker hold on the buyer.
    pub proxy_ttl: u32,
    /// One of [`overflow`].
    pub overflow: u8,
    /// One of [`assignment`].
    pub assignment: u8,
    pub origin_v4_len: u8,
    pub origin_v6_len: u8,
    /// Length of `cname_rr`; 0: no CNAME target.
    pub cname_rr_len: u16,
    /// One of [`draw`].
    pub draw: u8,
    pub _pad: u8,
    /// Ones'-complement sum of `cname_rr[..cname_rr_len]`, folded.
    pub cname_rr_sum: u32,
    /// The seed of [`draw::RESOLVER`]: a new one re-draws which resolvers get the proxies.
    pub resolver_seed: u32,
    pub origin_v4: [[u8; 4]; MAX_ORIGIN_ADDRS],
    /// Cumulative weights for [`assignment::WEIGHTED`]: entry i is w0 + ... + wi.
    pub origin_v4_cum_weight: [u32; MAX_ORIGIN_ADDRS],
    pub origin_v6: [[u8; 16]; MAX_ORIGIN_ADDRS],
    pub origin_v6_cum_weight: [u32; MAX_ORIGIN_ADDRS],
    /// Sum of each origin's record.
    pub origin_v4_sum: [u32; MAX_ORIGIN_ADDRS],
    pub origin_v6_sum: [u32; MAX_ORIGIN_ADDRS],
    /// One A / AAAA record per origin.
    pub origin_v4_rr: [u8; MAX_ORIGIN_ADDRS * RR_A_LEN],
    pub origin_v6_rr: [u8; MAX_ORIGIN_ADDRS * RR_AAAA_LEN],
    /// The CNAME record to the origin name, target case as configured.
    pub cname_rr: [u8; CNAME_RR_BUF],
}

impl CustomerRecord {
    pub const fn zeroed() -> Self {
        Self {
            proxy_threshold: 0,
            ttl: 0,
            proxy_ttl: 0,
            overflow: overflow::ORIGIN,
            assignment: assignment::ROUND_ROBIN,
            origin_v4_len: 0,
            origin_v6_len: 0,
            cname_rr_len: 0,
            draw: draw::QUERY,
            _pad: 0,
            cname_rr_sum: 0,
            resolver_seed: 0,
            origin_v4: [[0; 4]; MAX_ORIGIN_ADDRS],
            origin_v4_cum_weight: [0; MAX_ORIGIN_ADDRS],
            origin_v6: [[0; 16]; MAX_ORIGIN_ADDRS],
            origin_v6_cum_weight: [0; MAX_ORIGIN_ADDRS],
            origin_v4_sum: [0; MAX_ORIGIN_ADDRS],
            origin_v6_sum: [0; MAX_ORIGIN_ADDRS],
            origin_v4_rr: [0; MAX_ORIGIN_ADDRS * RR_A_LEN],
            origin_v6_rr: [0; MAX_ORIGIN_ADDRS * RR_AAAA_LEN],
            cname_rr: [0; CNAME_RR_BUF],
        }
    }
}

/// The proxies' address records, per family a ring with the sum of the window starting at each
/// proxy; TTL 0 (see [`crate::answers`]). Replaced whole through two slots, as customers are.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ProxyRings {
    /// The proxies' addresses per family (at most [`MAX_PROXY_ADDRS`]).
    pub v4_len: u32,
    pub v6_len: u32,
    pub v4_sum: [u32; MAX_PROXY_ADDRS],
    pub v6_sum: [u32; MAX_PROXY_ADDRS],
    pub v4_rr: [u8; PROXY_RING_V4_LEN],
    pub v6_rr: [u8; PROXY_RING_V6_LEN],
}

impl ProxyRings {
    pub const fn zeroed() -> Self {
        Self {
            v4_len: 0,
            v6_len: 0,
            v4_sum: [0; MAX_PROXY_ADDRS],
            v6_sum: [0; MAX_PROXY_ADDRS],
            v4_rr: [0; PROXY_RING_V4_LEN],
            v6_rr: [0; PROXY_RING_V6_LEN],
        }
    }
}

/// The proxy servers' addresses by family: what userspace builds [`ProxyRings`] from, and
/// answers from itself.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxySet {
    pub v4_len: u32,
    pub v6_len: u32,
    pub v4: [[u8; 4]; MAX_PROXY_ADDRS],
    pub v6: [[u8; 16]; MAX_PROXY_ADDRS],
}

impl ProxySet {
    pub const fn empty() -> Self {
        Self { v4_len: 0, v6_len: 0, v4: [[0; 4]; MAX_PROXY_ADDRS], v6: [[0; 16]; MAX_PROXY_ADDRS] }
    }
}

/// Addresses of a family kept in [`LocalSet`]; with more, the program looks them up in the
/// `LOCAL_ADDRS_*` hash maps.
pub const LOCAL_SET_SMALL: usize = 4;

/// The local addresses of each family when there are at most [`LOCAL_SET_SMALL`] of them, so
/// that the common host costs the program a few compares in an array slot instead of a hash
/// lookup; `v4_len`/`v6_len` above [`LOCAL_SET_SMALL`]: look in the hash map. Written after
/// the hash maps. An update is not atomic for a reader, and needs not be: a torn read can only
/// pass a query to userspace, which answers it, or answer for an address removed that instant.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LocalSet {
    pub v4_len: u32,
    pub v6_len: u32,
    pub v4: [[u8; 4]; LOCAL_SET_SMALL],
    pub v6: [[u8; 16]; LOCAL_SET_SMALL],
}

impl LocalSet {
    /// The set for these addresses (a family with more than [`LOCAL_SET_SMALL`] is marked for
    /// the hash map).
    pub fn new(v4: &[[u8; 4]], v6: &[[u8; 16]]) -> Self {
        let mut s = Self { v4_len: v4.len() as u32, v6_len: v6.len() as u32, ..Default::default() };
        for (slot, a) in s.v4.iter_mut().zip(v4) {
            *slot = *a;
        }
        for (slot, a) in s.v6.iter_mut().zip(v6) {
            *slot = *a;
        }
        s
    }
}

/// Per-CPU, per-customer counters, indexed by [`crate::decision::Target`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CustomerCounters {
    pub answers: [u64; 3],
    /// This CPU's round-robin position over the customer's origins.
    pub rr_cursor: u64,
}

/// Key of [`RESOLVER_QUERIES_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ResolverKey {
    /// [`crate::decision::subnet_key_v4`] or [`crate::decision::subnet_key_v6`] of the source.
    pub client_key: u64,
    pub customer: u32,
    pub _pad: u32,
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all are #[repr(C)], Copy, with explicit padding and no pointers.
    unsafe impl aya::Pod for NameKey {}
    unsafe impl aya::Pod for NameValue {}
    unsafe impl aya::Pod for CustomerRecord {}
    unsafe impl aya::Pod for ProxyRings {}
    unsafe impl aya::Pod for CustomerCounters {}
    unsafe impl aya::Pod for ResolverKey {}
    unsafe impl aya::Pod for LocalSet {}
    unsafe impl aya::Pod for crate::rrl::RrlParams {}
    unsafe impl aya::Pod for crate::rrl::RrlKey {}
    unsafe impl aya::Pod for crate::rrl::RrlBucket {}
    unsafe impl aya::Pod for crate::negative::ZoneRecord {}
    unsafe impl aya::Pod for crate::negative::ZoneInfo {}
}

const _: () = assert!(core::mem::size_of::<CustomerRecord>().is_multiple_of(8));
const _: () = assert!(core::mem::size_of::<CustomerRecord>() == 944);
const _: () = assert!(core::mem::size_of::<ProxyRings>().is_multiple_of(8));
