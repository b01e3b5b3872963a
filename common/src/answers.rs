//! The answer records the XDP program copies into a reply, precomputed by userspace with their
//! ones'-complement sums, so that an answer costs the program one copy and one addition.
//!
//! Every record starts with a compression pointer to the question name (offset 12), so its
//! bytes do not depend on the query. A customer's record ([`CustomerRecord`]) holds:
//! - its origin address records, one per origin and family, each with its sum;
//! - its CNAME record, with its sum;
//! - the proxies' address records per family, laid out as a ring: the family's records in order,
//!   then the first [`MAX_PROXY_ANSWER`]` - 1` again, so the rotating window starting at any
//!   proxy is one contiguous slice; with the sum of the window starting at each proxy.
//!
//! All records carry the customer's TTL. The userspace server builds its answers with its own
//! encoder; the equivalence test holds both to the same bytes.

use crate::{
    checksum::csum16,
    decision::proxy_index,
    dns::{CLASS_IN, PTR_TO_QNAME, RR_FIXED_LEN, TYPE_A, TYPE_AAAA, TYPE_CNAME},
    maps::{CustomerRecord, MAX_CNAME_LEN, MAX_ORIGIN_ADDRS, MAX_PROXY_ADDRS, MAX_PROXY_ANSWER, ProxySet},
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
/// configured; empty for none) and the proxies. The decision fields are `rec`'s own.
pub fn fill_answers(rec: &mut CustomerRecord, proxies: &ProxySet, cname: &[u8]) -> Result<(), &'static str> {
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

    let (n4, n6) = (proxies.v4_len, proxies.v6_len);
    if n4 as usize > MAX_PROXY_ADDRS || n6 as usize > MAX_PROXY_ADDRS {
        return Err("more proxy addresses of a family than the data plane holds");
    }
    rec.proxy_v4_len = n4 as u8;
    rec.proxy_v6_len = n6 as u8;
    rec.proxy_v4_rr = [0; PROXY_RING_V4_LEN];
    rec.proxy_v6_rr = [0; PROXY_RING_V6_LEN];
    rec.proxy_v4_sum = [0; MAX_PROXY_ADDRS];
    rec.proxy_v6_sum = [0; MAX_PROXY_ADDRS];
    for k in 0..PROXY_RING {
        if n4 > 0 {
            let at = k * RR_A_LEN;
            put_address_rr(&mut rec.proxy_v4_rr[at..at + RR_A_LEN], ttl, &proxies.v4[proxy_index(0, k, n4)]);
        }
        if n6 > 0 {
            let at = k * RR_AAAA_LEN;
            put_address_rr(&mut rec.proxy_v6_rr[at..at + RR_AAAA_LEN], ttl, &proxies.v6[proxy_index(0, k, n6)]);
        }
    }
    let window4 = (n4 as usize).min(MAX_PROXY_ANSWER);
    for s in 0..n4 as usize {
        rec.proxy_v4_sum[s] = csum16(&rec.proxy_v4_rr[s * RR_A_LEN..(s + window4) * RR_A_LEN]);
    }
    let window6 = (n6 as usize).min(MAX_PROXY_ANSWER);
    for s in 0..n6 as usize {
        rec.proxy_v6_sum[s] = csum16(&rec.proxy_v6_rr[s * RR_AAAA_LEN..(s + window6) * RR_AAAA_LEN]);
    }
    Ok(())
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

    #[test]
    fn every_window_is_the_rotation_of_the_proxies() {
        for n in [1u32, 3, 8, 9, 64] {
            let mut rec = CustomerRecord::zeroed();
            rec.ttl = 0x01020304;
            let set = proxies(n, n);
            fill_answers(&mut rec, &set, b"").unwrap();
            for rand in 0..200u32 {
                let (start, count) = proxy_window(n, rand);
                let slice = &rec.proxy_v4_rr[start * RR_A_LEN..(start + count) * RR_A_LEN];
                for i in 0..count {
                    let rr = &slice[i * RR_A_LEN..(i + 1) * RR_A_LEN];
                    assert_eq!(rr[..RR_FIXED_LEN], rr_fixed(TYPE_A, 0x01020304, 4));
                    assert_eq!(rr[RR_FIXED_LEN..], set.v4[proxy_index(start, i, n)]);
                }
                assert_eq!(rec.proxy_v4_sum[start], csum16(slice));
                let slice = &rec.proxy_v6_rr[start * RR_AAAA_LEN..(start + count) * RR_AAAA_LEN];
                assert_eq!(slice[slice.len() - 16..], set.v6[proxy_index(start, count - 1, n)]);
                assert_eq!(rec.proxy_v6_sum[start], csum16(slice));
            }
        }
    }

    #[test]
    fn origin_and_cname_records() {
        let mut rec = CustomerRecord::zeroed();
        rec.ttl = 60;
        rec.origin_v4[1] = [203, 0, 113, 11];
        rec.origin_v4_len = 2;
        fill_answers(&mut rec, &proxies(0, 0), b"\x06origin\x00").unwrap();
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
        assert_eq!((rec.proxy_v4_len, rec.proxy_v6_len), (0, 0));
    }

    #[test]
    fn refuses_what_does_not_fit() {
        let mut rec = CustomerRecord::zeroed();
        assert!(fill_answers(&mut rec, &proxies(0, 0), &[1u8; 256]).is_err());
        let mut big = proxies(0, 0);
        big.v4_len = MAX_PROXY_ADDRS as u32 + 1;
        assert!(fill_answers(&mut rec, &big, b"").is_err());
    }
}
