//! The answer records the XDP program copies into a reply, precomputed by userspace with their
//! ones'-complement sums, so that an answer costs the program one copy and one addition.
//!
//! Every record starts with a compression pointer to the question name (offset 12), so its
//! bytes do not depend on the query. A customer's record ([`CustomerRecord`]) holds its origin
//! address records, one per origin and family, and its CNAME record, each with its sum, all with
//! the customer's TTL.
//!
//! The proxies' records are the same for every customer but for the TTL, so they are kept once
//! ([`ProxyRings`]), per family laid out as a ring: the family's records in order, then the
//! first [`MAX_PROXY_ANSWER`]` - 1` again, so the rotating window starting at any proxy is one
//! contiguous slice; with the sum of the window starting at each proxy. Their TTL bytes are
//! zero, and left out of the sums: the program writes the customer's TTL into each record it
//! copies and adds it to the sum ([`ttl_sum`]).
//!
//! The userspace server builds its answers with its own encoder; the equivalence test holds
//! both to the same bytes.

use crate::{
    checksum::csum16,
    decision::proxy_index,
    dns::{CLASS_IN, PTR_TO_QNAME, RR_FIXED_LEN, TYPE_A, TYPE_AAAA, TYPE_CNAME},
    maps::{CustomerRecord, MAX_CNAME_LEN, MAX_ORIGIN_ADDRS, MAX_PROXY_ADDRS, MAX_PROXY_ANSWER, ProxyRings, ProxySet},
};

/// An A record: fixed part and 4 address bytes.
pub const RR_A_LEN: usize = RR_FIXED_LEN + 4;
/// An AAAA record: fixed part and 16 address bytes.
pub const RR_AAAA_LEN: usize = RR_FIXED_LEN + 16;
/// Records in a proxy ring: every proxy, and the window's wrap-around.
pub const PROXY_RING: usize = MAX_PROXY_ADDRS + MAX_PROXY_ANSWER - 1;
/// Bytes of the A ring.
pub const PROXY_RING_V4_LEN: usize = PROXY_RING * RR_A_LEN;
/// Bytes of the AAAA ring, padded to whole words.
pub const PROXY_RING_V6_LEN: usize = (PROXY_RING * RR_AAAA_LEN).div_ceil(8) * 8;
/// Bytes of the CNAME record buffer: fixed part and the longest target, padded to whole words.
pub const CNAME_RR_BUF: usize = (RR_FIXED_LEN + MAX_CNAME_LEN).div_ceil(8) * 8;
/// Offset of the TTL in a record (after owner pointer, type and class): even, so in a run of
/// address records (even lengths) every TTL sits at an even offset of the run.
pub const RR_TTL_OFF: usize = 6;

/// What `count` records' TTL adds to a ones'-complement sum of theirs, taken at even offsets.
pub const fn ttl_sum(ttl: u32, count: u32) -> u32 {
    count * ((ttl >> 16) + (ttl & 0xffff))
}

/// The fixed part of a record owned by the question name.
pub const fn rr_fixed(rtype: u16, ttl: u32, rdlen: u16) -> [u8; RR_FIXED_LEN] {
    let p = PTR_TO_QNAME.to_be_bytes();
    let t = rtype.to_be_bytes();
    let c = CLASS_IN.to_be_bytes();
    let l = ttl.to_be_bytes();
    let r = rdlen.to_be_bytes();
    [p[0], p[1], t[0], t[1], c[0], c[1], l[0], l[1], l[2], l[3], r[0], r[1]]
}

/// Write an A (4-byte `addr`) or AAAA (16-byte) record into `out`, which is exactly that long.
fn put_address_rr(out: &mut [u8], ttl: u32, addr: &[u8]) {
    let rtype = if addr.len() == 16 { TYPE_AAAA } else { TYPE_A };
    out[..RR_FIXED_LEN].copy_from_slice(&rr_fixed(rtype, ttl, addr.len() as u16));
    out[RR_FIXED_LEN..].copy_from_slice(addr);
}

/// Fill `rec`'s answer records from its TTL, origins and `cname` target (wire format, case as
/// configured; empty for none). The decision fields are `rec`'s own.
pub fn fill_answers(rec: &mut CustomerRecord, cname: &[u8]) -> Result<(), &'static str> {
    let ttl = rec.ttl;
    for i in 0..MAX_ORIGIN_ADDRS {
        let v4 = &mut rec.origin_v4_rr[i * RR_A_LEN..(i + 1) * RR_A_LEN];
        put_address_rr(v4, ttl, &rec.origin_v4[i]);
        rec.origin_v4_sum[i] = if i < rec.origin_v4_len as usize { csum16(v4) } else { 0 };
        let v6 = &mut rec.origin_v6_rr[i * RR_AAAA_LEN..(i + 1) * RR_AAAA_LEN];
        put_address_rr(v6, ttl, &rec.origin_v6[i]);
        rec.origin_v6_sum[i] = if i < rec.origin_v6_len as usize { csum16(v6) } else { 0 };
    }

    rec.cname_rr = [0; CNAME_RR_BUF];
    rec.cname_rr_len = 0;
    rec.cname_rr_sum = 0;
    if !cname.is_empty() {
        if cname.len() > MAX_CNAME_LEN {
            return Err("CNAME target longer than 255 bytes");
        }
        let len = RR_FIXED_LEN + cname.len();
        rec.cname_rr[..RR_FIXED_LEN].copy_from_slice(&rr_fixed(TYPE_CNAME, ttl, cname.len() as u16));
        rec.cname_rr[RR_FIXED_LEN..len].copy_from_slice(cname);
        rec.cname_rr_len = len as u16;
        rec.cname_rr_sum = csum16(&rec.cname_rr[..len]);
    }
    Ok(())
}

/// The proxy rings of `proxies`, TTL 0 (see the module's comment).
pub fn proxy_rings(proxies: &ProxySet) -> Result<ProxyRings, &'static str> {
    let (n4, n6) = (proxies.v4_len, proxies.v6_len);
    if n4 as usize > MAX_PROXY_ADDRS || n6 as usize > MAX_PROXY_ADDRS {
        return Err("more proxy addresses of a family than the data plane holds");
    }
    let mut r = ProxyRings::zeroed();
    r.v4_len = n4;
    r.v6_len = n6;
    for k in 0..PROXY_RING {
        if n4 > 0 {
            let at = k * RR_A_LEN;
            put_address_rr(&mut r.v4_rr[at..at + RR_A_LEN], 0, &proxies.v4[proxy_index(0, k, n4)]);
        }
        if n6 > 0 {
            let at = k * RR_AAAA_LEN;
            put_address_rr(&mut r.v6_rr[at..at + RR_AAAA_LEN], 0, &proxies.v6[proxy_index(0, k, n6)]);
        }
    }
    let window4 = (n4 as usize).min(MAX_PROXY_ANSWER);
    for s in 0..n4 as usize {
        r.v4_sum[s] = csum16(&r.v4_rr[s * RR_A_LEN..(s + window4) * RR_A_LEN]);
    }
    let window6 = (n6 as usize).min(MAX_PROXY_ANSWER);
    for s in 0..n6 as usize {
        r.v6_sum[s] = csum16(&r.v6_rr[s * RR_AAAA_LEN..(s + window6) * RR_AAAA_LEN]);
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::proxy_window;

    fn proxies(n4: u32, n6: u32) -> ProxySet {
        let mut s = ProxySet::empty();
        for i in 0..n4 as usize {
            s.v4[i] = [198, 51, 100, i as u8];
        }
        for i in 0..n6 as usize {
            s.v6[i] = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, i as u8];
        }
        s.v4_len = n4;
        s.v6_len = n6;
        s
    }

    /// Ones'-complement fold of a sum of 16-bit words.
    fn fold(mut sum: u64) -> u32 {
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u32
    }

    /// The window starting at each proxy, with a TTL written into each of its records as the
    /// program does: the proxies in rotation, and ring sum plus [`ttl_sum`] is its sum.
    #[test]
    fn every_window_is_the_rotation_of_the_proxies() {
        let ttl: u32 = 0x0102_f3f4;
        for n in [1u32, 3, 8, 9, 64] {
            let set = proxies(n, n);
            let rings = proxy_rings(&set).unwrap();
            for rand in 0..200u32 {
                let (start, count) = proxy_window(n, rand);
                let mut window = rings.v4_rr[start * RR_A_LEN..(start + count) * RR_A_LEN].to_vec();
                for i in 0..count {
                    let rr = &mut window[i * RR_A_LEN..(i + 1) * RR_A_LEN];
                    assert_eq!(rr[..RR_FIXED_LEN], rr_fixed(TYPE_A, 0, 4));
                    assert_eq!(rr[RR_FIXED_LEN..], set.v4[proxy_index(start, i, n)]);
                    rr[RR_TTL_OFF..RR_TTL_OFF + 4].copy_from_slice(&ttl.to_be_bytes());
                }
                let sum = rings.v4_sum[start] as u64 + ttl_sum(ttl, count as u32) as u64;
                assert_eq!(fold(sum), csum16(&window));
                let mut window = rings.v6_rr[start * RR_AAAA_LEN..(start + count) * RR_AAAA_LEN].to_vec();
                assert_eq!(window[window.len() - 16..], set.v6[proxy_index(start, count - 1, n)]);
                for i in 0..count {
                    let at = i * RR_AAAA_LEN + RR_TTL_OFF;
                    window[at..at + 4].copy_from_slice(&ttl.to_be_bytes());
                }
                let sum = rings.v6_sum[start] as u64 + ttl_sum(ttl, count as u32) as u64;
                assert_eq!(fold(sum), csum16(&window));
            }
        }
    }

    #[test]
    fn origin_and_cname_records() {
        let mut rec = CustomerRecord::zeroed();
        rec.ttl = 60;
        rec.origin_v4[1] = [203, 0, 113, 11];
        rec.origin_v4_len = 2;
        fill_answers(&mut rec, b"\x06origin\x00").unwrap();
        let rr = &rec.origin_v4_rr[RR_A_LEN..2 * RR_A_LEN];
        assert_eq!(rr, [0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 203, 0, 113, 11]);
        assert_eq!(rec.origin_v4_sum[1], csum16(rr));
        assert_eq!(rec.origin_v6_sum, [0; MAX_ORIGIN_ADDRS], "no IPv6 origin, no sums");
        assert_eq!(rec.cname_rr_len as usize, RR_FIXED_LEN + 8);
        assert_eq!(
            &rec.cname_rr[..RR_FIXED_LEN + 8],
            b"\xc0\x0c\x00\x05\x00\x01\x00\x00\x00\x3c\x00\x08\x06origin\x00"
        );
        assert_eq!(rec.cname_rr_sum, csum16(&rec.cname_rr[..RR_FIXED_LEN + 8]));
    }

    #[test]
    fn refuses_what_does_not_fit() {
        let mut rec = CustomerRecord::zeroed();
        assert!(fill_answers(&mut rec, &[1u8; 256]).is_err());
        let mut big = proxies(0, 0);
        big.v4_len = MAX_PROXY_ADDRS as u32 + 1;
        assert!(proxy_rings(&big).is_err());
    }
}
