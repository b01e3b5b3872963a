//! The answer rule, shared by the XDP program and the userspace server.
//!
//! Per query: draw a uniform u32; below the customer's threshold the answer is the proxies
//! (a rotating window of at most [`MAX_PROXY_ANSWER`] addresses of the asked family), otherwise
//! the customer's overflow answer: a CNAME to its origin name, or one origin address chosen by
//! its assignment algorithm. A proxy draw with no proxy of the asked family falls back to the
//! overflow answer; an origin answer with no origin of the family is NODATA (userspace answers it).
//!
//! Indexes are masked with the (power of two) array sizes so the BPF verifier can see they are in
//! bounds; the masks never change a valid index.

use crate::maps::{CustomerRecord, MAX_ORIGIN_ADDRS, MAX_PROXY_ADDRS, MAX_PROXY_ANSWER, assignment, overflow};

/// Where an answer sends the client. The value indexes [`crate::maps::CustomerCounters::answers`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Proxy = 0,
    Origin = 1,
    Cname = 2,
}

impl Target {
    pub const ALL: [Target; 3] = [Target::Proxy, Target::Origin, Target::Cname];

    pub const fn label(self) -> &'static str {
        match self {
            Target::Proxy => "proxy",
            Target::Origin => "origin",
            Target::Cname => "cname",
        }
    }
}

/// Threshold meaning "always proxy" (every u32 is below it).
pub const THRESHOLD_ALWAYS: u64 = 1 << 32;

/// The fixed-point threshold for a fraction in [0, 1] (values outside are clamped).
#[cfg(feature = "user")]
pub fn fraction_to_threshold(fraction: f64) -> u64 {
    let f = if fraction.is_nan() { 0.0 } else { fraction.clamp(0.0, 1.0) };
    (f * THRESHOLD_ALWAYS as f64).round() as u64
}

/// The random numbers one query's answer takes, from one uniform u32 (one
/// `bpf_get_prandom_u32` per query in the XDP program): the fraction draw is the number itself,
/// the proxy window's start and the weighted origin's draw come from its splitmix64 mix. Only
/// one of the last two is used by an answer, and the mix spreads them evenly over the numbers
/// the fraction draw left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Draws {
    pub fraction: u32,
    pub window: u32,
    pub origin: u32,
}

impl Draws {
    #[inline(always)]
    pub const fn from_rand(rand: u32) -> Self {
        let m = mix64(rand as u64);
        Self { fraction: rand, window: (m >> 32) as u32, origin: m as u32 }
    }
}

/// The fraction draw of a query in resolver mode ([`crate::maps::draw::RESOLVER`]): a hash of the
/// asking resolver's prefix ([`subnet_key_v4`] or [`subnet_key_v6`]) under the customer's seed, so
/// that every query of one resolver gets the same side while the seed holds, and the share of
/// resolvers (not of queries) on the proxies follows the threshold.
#[inline(always)]
pub const fn resolver_draw(client_key: u64, seed: u32) -> u32 {
    (mix64(client_key ^ ((seed as u64) << 32 | seed as u64)) >> 32) as u32
}

/// The number a query's side is drawn from, by the record's [`crate::maps::draw`] mode:
/// `rand` (the query's [`Draws::fraction`]) or the resolver's [`resolver_draw`].
#[inline(always)]
pub fn side_draw(rec: &CustomerRecord, rand: u32, client_key: u64) -> u32 {
    if rec.draw == crate::maps::draw::RESOLVER { resolver_draw(client_key, rec.resolver_seed) } else { rand }
}

/// Proxy or overflow, for a query of a family with `proxies` proxy and `origins` origin addresses.
/// `None`: nothing to answer with (NODATA).
#[inline(always)]
pub fn choose_target(rec: &CustomerRecord, rand: u32, proxies: u32, origins: u8) -> Option<Target> {
    if (rand as u64) < rec.proxy_threshold && proxies > 0 {
        return Some(Target::Proxy);
    }
    if rec.overflow == overflow::CNAME {
        return Some(Target::Cname);
    }
    if origins > 0 { Some(Target::Origin) } else { None }
}

/// The proxy window for one answer: `(start, count)` over `len` addresses of the family.
#[inline(always)]
pub fn proxy_window(len: u32, rand: u32) -> (usize, usize) {
    if len == 0 {
        return (0, 0);
    }
    let count = if (len as usize) < MAX_PROXY_ANSWER { len as usize } else { MAX_PROXY_ANSWER };
    (rem32(rand, len) as usize & (MAX_PROXY_ADDRS - 1), count)
}

/// Index of the i-th proxy of a window.
#[inline(always)]
pub fn proxy_index(start: usize, i: usize, len: u32) -> usize {
    (rem64((start + i) as u64, len as u64) as usize) & (MAX_PROXY_ADDRS - 1)
}

/// `a % b`, 0 when `b` is 0: no panic path, which BPF programs cannot have.
#[inline(always)]
pub const fn rem32(a: u32, b: u32) -> u32 {
    match a.checked_rem(b) {
        Some(r) => r,
        None => 0,
    }
}

/// `a % b`, 0 when `b` is 0.
#[inline(always)]
pub const fn rem64(a: u64, b: u64) -> u64 {
    match a.checked_rem(b) {
        Some(r) => r,
        None => 0,
    }
}

/// The splitmix64 finaliser: a cheap, well-mixed 64-bit hash step.
#[inline(always)]
pub const fn mix64(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Client subnet key: the /24 of an IPv4 client.
#[inline(always)]
pub fn subnet_key_v4(addr: [u8; 4]) -> u64 {
    mix64(u32::from_be_bytes([addr[0], addr[1], addr[2], 0]) as u64 | (4 << 32))
}

/// Client subnet key: the /56 of an IPv6 client.
#[inline(always)]
pub fn subnet_key_v6(addr: [u8; 16]) -> u64 {
    let hi = u64::from_be_bytes([addr[0], addr[1], addr[2], addr[3], addr[4], addr[5], addr[6], 0]);
    mix64(hi ^ (6 << 56))
}

/// The inverse of [`mix64`].
pub const fn unmix64(mut x: u64) -> u64 {
    x ^= (x >> 31) ^ (x >> 62);
    x = x.wrapping_mul(0x3196_42b2_d24d_8ec3);
    x ^= (x >> 27) ^ (x >> 54);
    x = x.wrapping_mul(0x96de_1b17_3f11_9089);
    x ^ (x >> 30) ^ (x >> 60)
}

/// The subnet a [`subnet_key_v4`] or [`subnet_key_v6`] stands for, and its prefix length, for
/// showing a counted resolver. A /56 whose first bytes read like a /24's key (none in the
/// global unicast range) shows as that /24: the two share the key anyway.
pub fn subnet_of_key(key: u64) -> (core::net::IpAddr, u8) {
    let raw = unmix64(key);
    if raw >> 32 == 4 && raw & 0xff == 0 {
        return (core::net::Ipv4Addr::from(raw as u32).into(), 24);
    }
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&(raw ^ (6 << 56)).to_be_bytes());
    (core::net::Ipv6Addr::from(b).into(), 56)
}

#[inline(always)]
pub fn addr_key_v4(addr: &[u8; 4]) -> u64 {
    u32::from_be_bytes(*addr) as u64
}

#[inline(always)]
pub fn addr_key_v6(addr: &[u8; 16]) -> u64 {
    let mut hi = [0u8; 8];
    let mut lo = [0u8; 8];
    hi.copy_from_slice(&addr[..8]);
    lo.copy_from_slice(&addr[8..]);
    u64::from_be_bytes(hi) ^ mix64(u64::from_be_bytes(lo))
}

/// Inputs to the origin choice that vary per query.
#[derive(Clone, Copy, Debug)]
pub struct OriginDraw {
    /// This CPU's (or task's) round-robin position for the customer.
    pub rr_cursor: u64,
    pub rand: u32,
    /// [`subnet_key_v4`] or [`subnet_key_v6`] of the client.
    pub client_key: u64,
}

/// Which of `len` (1..=8) origins answers, by the customer's assignment algorithm.
/// `addr_key(i)` is the [`addr_key_v4`]/[`addr_key_v6`] of origin i, used by the hash algorithm.
#[inline(always)]
pub fn pick_origin(
    algorithm: u8,
    len: u8,
    cum_weight: &[u32; MAX_ORIGIN_ADDRS],
    draw: OriginDraw,
    addr_key: impl Fn(usize) -> u64,
) -> usize {
    let len = len as usize;
    if len <= 1 {
        return 0;
    }
    let last = (len - 1) & (MAX_ORIGIN_ADDRS - 1);
    match algorithm {
        assignment::WEIGHTED => {
            let total = cum_weight[last];
            if total == 0 {
                return 0;
            }
            let r = rem32(draw.rand, total);
            let mut i = 0;
            while i < last {
                if r < cum_weight[i] {
                    return i;
                }
                i += 1;
            }
            last
        }
        assignment::HASH => {
            // Rendezvous (highest random weight) hashing: removing an origin moves only its
            // own subnets.
            let mut best = 0;
            let mut best_score = 0;
            let mut i = 0;
            while i < MAX_ORIGIN_ADDRS {
                if i >= len {
                    break;
                }
                let score = mix64(draw.client_key ^ addr_key(i));
                if i == 0 || score > best_score {
                    best = i;
                    best_score = score;
                }
                i += 1;
            }
            best
        }
        _ => rem64(draw.rr_cursor, len as u64) as usize & (MAX_ORIGIN_ADDRS - 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(threshold: u64, over: u8) -> CustomerRecord {
        let mut r = CustomerRecord::zeroed();
        r.proxy_threshold = threshold;
        r.overflow = over;
        r
    }

    use std::string::ToString;

    #[test]
    fn subnet_keys_decode_to_their_subnet() {
        assert_eq!(unmix64(mix64(0x0123_4567_89ab_cdef)), 0x0123_4567_89ab_cdef);
        let (a, len) = subnet_of_key(subnet_key_v4([192, 0, 2, 77]));
        assert_eq!((a.to_string(), len), ("192.0.2.0".to_string(), 24));
        let v6: core::net::Ipv6Addr = "2001:db8:1:2ff::5".parse().unwrap();
        let (a, len) = subnet_of_key(subnet_key_v6(v6.octets()));
        assert_eq!((a.to_string(), len), ("2001:db8:1:200::".to_string(), 56));
    }

    /// One resolver, one side while the seed holds; over many resolvers, the threshold's share;
    /// another seed re-draws them.
    #[test]
    fn resolver_draw_is_sticky_per_prefix_and_follows_the_threshold() {
        let key = |a: u8, b: u8, c: u8| subnet_key_v4([10, a, b, c]);
        assert_eq!(resolver_draw(key(1, 2, 3), 9), resolver_draw(key(1, 2, 200), 9));
        let threshold = (0.3 * THRESHOLD_ALWAYS as f64) as u64;
        let below = |seed: u32| {
            (0..=255u8)
                .flat_map(|a| (0..40u8).map(move |b| (a, b)))
                .filter(|&(a, b)| u64::from(resolver_draw(key(a, b, 1), seed)) < threshold)
                .collect::<std::vec::Vec<_>>()
        };
        let (one, two) = (below(1), below(2));
        let share = one.len() as f64 / (256.0 * 40.0);
        assert!((share - 0.3).abs() < 0.02, "{share}");
        let kept = one.iter().filter(|k| two.contains(k)).count() as f64 / one.len() as f64;
        assert!((kept - 0.3).abs() < 0.05, "a new seed keeps {kept} of the proxies' resolvers");
    }

    #[test]
    fn threshold_edges() {
        let r0 = rec(0, overflow::ORIGIN);
        let r1 = rec(THRESHOLD_ALWAYS, overflow::ORIGIN);
        for rand in [0, 1, u32::MAX / 2, u32::MAX] {
            assert_eq!(choose_target(&r0, rand, 3, 1), Some(Target::Origin));
            assert_eq!(choose_target(&r1, rand, 3, 1), Some(Target::Proxy));
        }
    }

    #[test]
    fn proxy_draw_without_proxies_overflows() {
        let r = rec(THRESHOLD_ALWAYS, overflow::CNAME);
        assert_eq!(choose_target(&r, 7, 0, 0), Some(Target::Cname));
        let r = rec(THRESHOLD_ALWAYS, overflow::ORIGIN);
        assert_eq!(choose_target(&r, 7, 0, 0), None);
    }

    #[test]
    fn one_draw_spreads_windows_over_the_proxy_share() {
        // Draws below a quarter threshold (the proxy answers) still start windows evenly.
        let mut starts = [0u32; 5];
        for rand in (0..u32::MAX / 4).step_by(4099) {
            starts[proxy_window(5, Draws::from_rand(rand).window).0] += 1;
        }
        let (lo, hi) = (starts.iter().min().unwrap(), starts.iter().max().unwrap());
        assert!(*hi - *lo < hi / 20, "uneven starts {starts:?}");
        assert_eq!(Draws::from_rand(7).fraction, 7);
    }

    #[test]
    fn window_rotates_and_caps() {
        assert_eq!(proxy_window(3, 4), (1, 3));
        assert_eq!(proxy_window(20, 39), (19, 8));
        assert_eq!(proxy_index(19, 2, 20), 1);
        assert_eq!(proxy_window(0, 9), (0, 0));
    }

    #[test]
    fn weighted_follows_cumulative_weights() {
        let mut cum = [0u32; 8];
        cum[0] = 3;
        cum[1] = 4;
        let mut hits = [0u32; 2];
        for rand in 0..4000u32 {
            let d = OriginDraw { rr_cursor: 0, rand, client_key: 0 };
            hits[pick_origin(assignment::WEIGHTED, 2, &cum, d, |_| 0)] += 1;
        }
        assert_eq!(hits, [3000, 1000]);
    }

    #[test]
    fn round_robin_cycles() {
        let cum = [0u32; 8];
        let picks: [usize; 4] = core::array::from_fn(|c| {
            let d = OriginDraw { rr_cursor: c as u64, rand: 0, client_key: 0 };
            pick_origin(assignment::ROUND_ROBIN, 3, &cum, d, |_| 0)
        });
        assert_eq!(picks, [0, 1, 2, 0]);
    }

    #[test]
    fn hash_is_sticky_per_subnet_and_consistent() {
        let cum = [0u32; 8];
        let addrs: [[u8; 4]; 3] = [[10, 0, 0, 1], [10, 0, 0, 2], [10, 0, 0, 3]];
        let pick = |client: [u8; 4], n: u8| {
            let d = OriginDraw { rr_cursor: 0, rand: 0, client_key: subnet_key_v4(client) };
            pick_origin(assignment::HASH, n, &cum, d, |i| addr_key_v4(&addrs[i]))
        };
        // Same /24, same origin.
        assert_eq!(pick([192, 0, 2, 1], 3), pick([192, 0, 2, 200], 3));
        // Removing the last origin moves only the subnets that were on it.
        let mut moved = 0;
        let mut spread = [0; 3];
        for s in 0..=255u8 {
            let before = pick([198, 51, s, 1], 3);
            spread[before] += 1;
            let after = pick([198, 51, s, 1], 2);
            if before != 2 {
                assert_eq!(before, after);
            } else {
                moved += 1;
            }
        }
        assert!(spread.iter().all(|&n| n > 40), "uneven spread {spread:?}");
        assert_eq!(moved, spread[2]);
    }
}
