//! Turning the query into its reply in place: grow or shrink the packet, swap the addresses,
//! rewrite the DNS header, append the answer records or the zone's SOA (and OPT), fix both
//! checksums.

use aya_ebpf::{
    helpers::generated::{bpf_xdp_adjust_head, bpf_xdp_adjust_tail, bpf_xdp_get_buff_len, bpf_xdp_load_bytes},
    programs::XdpContext,
};
use aya_log_ebpf::warn;
use spillway_common::{
    answers::{CNAME_RR_BUF, RR_A_LEN, RR_AAAA_LEN, RR_TTL_OFF, ttl_sum},
    dns::*,
    maps::{CustomerRecord, MAX_ORIGIN_ADDRS, MAX_PROXY_ADDRS, MAX_PROXY_ANSWER, ProxyRings},
    negative::{MAX_SOA_LEN, ZoneRecord, opt_record},
    stats::XdpOutcome::{self, *},
};

use crate::{
    csum::Csum,
    maps::{HEAD_BUF, SCRATCH, ZONE_INFO},
    packet::{Aligned, ptr_at, store},
    parse::Query,
};

const HOP_LIMIT: u8 = 64;
const IPV4_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;
const UDP_HLEN: usize = 8;

/// The answer section to write. Scalars only: LLVM splits references held in an enum into
/// byte shifts of the pointer, which the verifier rejects.
pub enum Answer {
    /// A window of the proxies of the query's family.
    Proxies { start: usize, count: usize },
    /// One origin address of the query's family.
    Origin { index: usize },
    /// A CNAME to the customer's origin name.
    Cname,
    /// No records, TC=1: the rate limit's slip (the client retries over TCP).
    Slip,
}

impl Answer {
    fn count(&self) -> usize {
        match self {
            Answer::Proxies { count, .. } => *count,
            Answer::Slip => 0,
            _ => 1,
        }
    }
}

/// Rewrite the packet into the reply: the answer section is one of `rec`'s precomputed
/// records or a window of the proxies' (`rings`), copied into the packet and summed with its
/// precomputed sum; the proxies' records get the customer's proxy TTL on the way.
/// On `Err` before the tail adjustment the packet is untouched; the adjustment itself is the last
/// step that can fail.
#[inline(never)]
pub fn write_reply(
    ctx: &XdpContext,
    q: &Query,
    rec: &CustomerRecord,
    rings: &ProxyRings,
    answer: &Answer,
) -> Result<(), XdpOutcome> {
    let d = q.dns & 0x7f;
    let qname_len = q.qname_len & 0xff;
    let v6 = q.qtype == TYPE_AAAA;
    let rr_len = if v6 { RR_AAAA_LEN } else { RR_A_LEN };
    // What to copy: a pointer into the record, a length and the bytes' sum. Every index is
    // masked to its array so the verifier sees the copy inside the record.
    let (src, len, sum): (*const u8, usize, u32) = match *answer {
        Answer::Proxies { start, count } => {
            let s = start & (MAX_PROXY_ADDRS - 1);
            let n = count & (MAX_PROXY_ANSWER * 2 - 1);
            if n > MAX_PROXY_ANSWER {
                return Err(PassNoData);
            }
            let ttl = ttl_sum(rec.proxy_ttl, n as u32);
            if v6 {
                (unsafe { rings.v6_rr.as_ptr().add(s * RR_AAAA_LEN) }, n * RR_AAAA_LEN, rings.v6_sum[s] + ttl)
            } else {
                (unsafe { rings.v4_rr.as_ptr().add(s * RR_A_LEN) }, n * RR_A_LEN, rings.v4_sum[s] + ttl)
            }
        }
        Answer::Origin { index } => {
            let i = index & (MAX_ORIGIN_ADDRS - 1);
            if v6 {
                (unsafe { rec.origin_v6_rr.as_ptr().add(i * RR_AAAA_LEN) }, rr_len, rec.origin_v6_sum[i])
            } else {
                (unsafe { rec.origin_v4_rr.as_ptr().add(i * RR_A_LEN) }, rr_len, rec.origin_v4_sum[i])
            }
        }
        Answer::Cname => {
            let n = rec.cname_rr_len as usize & 0x1ff;
            if n == 0 || n > CNAME_RR_BUF {
                // The loader never writes a CNAME customer without a target.
                return Err(PassNoData);
            }
            (rec.cname_rr.as_ptr(), n, rec.cname_rr_sum)
        }
        Answer::Slip => (rec.cname_rr.as_ptr(), 0, 0),
    };
    let count = answer.count();
    let opt_len = if q.edns { OPT_RR_LEN } else { 0 };
    let ans_off = HEADER_LEN + qname_len + 4;
    let dns_len = ans_off + len + opt_len;
    if dns_len > q.udp_limit() as usize {
        // Userspace truncates (TC) properly; this never happens with 255-byte names and at most
        // 8 records, but the rule is the rule.
        return Err(PassTooBig);
    }
    let (l4, udp_len) = turn_around(ctx, q, dns_len)?;

    // TC on a slip; rcode NOERROR.
    let tc = if matches!(answer, Answer::Slip) { FLAG_TC } else { 0 };
    let header = Header::reply(q, tc, count as u16, 0);
    header.write(ctx, d)?;

    // The answers after the question, then OPT. `body` sums what follows the question, with
    // offsets relative to the message so odd name lengths place words right.
    let mut body = Csum::new();
    if matches!(answer, Answer::Cname) {
        store(ctx, d + ans_off, src, len)?;
    } else {
        // Address records are copied by the program, a record at a time in words: cheaper
        // than the helper for a few dozen bytes. Each gets its TTL: the proxies' have none, an
        // origin's has this one already.
        let ttl = if matches!(answer, Answer::Proxies { .. }) { rec.proxy_ttl } else { rec.ttl }.to_be();
        let n = count & (MAX_PROXY_ANSWER * 2 - 1);
        let mut i = 0;
        while i < MAX_PROXY_ANSWER {
            if i >= n {
                break;
            }
            let at = d + ans_off + i * rr_len;
            unsafe {
                let from = src.add(i * rr_len);
                if v6 {
                    let to = ptr_at::<[u8; RR_AAAA_LEN]>(ctx, at)? as *mut u8;
                    st(to, 0, ld::<u64>(from, 0));
                    st(to, 8, ld::<u64>(from, 8));
                    st(to, 16, ld::<u64>(from, 16));
                    st(to, 24, ld::<u32>(from, 24));
                    st(to, RR_TTL_OFF, ttl);
                } else {
                    let to = ptr_at::<[u8; RR_A_LEN]>(ctx, at)? as *mut u8;
                    st(to, 0, ld::<u64>(from, 0));
                    st(to, 8, ld::<u64>(from, 8));
                    st(to, RR_TTL_OFF, ttl);
                }
            }
            i += 1;
        }
    }
    let mut section = Csum::new();
    section.add_raw(sum as u64);
    body.add_sum_at(ans_off, section);
    put_opt(ctx, q, ans_off + len, &mut body)?;
    finish(ctx, q, l4, udp_len, &header, body)
}

/// Rewrite the packet into a negative answer to `q` (see `spillway_common::negative`): rcode
/// `rcode`, the zone's SOA in authority (serial from `ZONE_INFO`); on a slip (`slip`) TC set and
/// no SOA. The zone's apex is a suffix of the question name.
#[inline(never)]
pub fn write_negative(
    ctx: &XdpContext,
    q: &Query,
    zone: &ZoneRecord,
    rcode: u16,
    slip: bool,
) -> Result<(), XdpOutcome> {
    let serial = ZONE_INFO.get(0).map(|i| i.serial).unwrap_or(0);
    let d = q.dns & 0x7f;
    let qname_len = q.qname_len & 0xff;
    let zone_len = zone.zone_len as usize & 0xff;
    if zone_len == 0 || zone_len > qname_len {
        return Err(PassNoData);
    }
    let soa_len = zone.soa_len as usize & (MAX_SOA_LEN * 2 - 1);
    if soa_len == 0 || soa_len > MAX_SOA_LEN {
        return Err(PassNoData);
    }
    let ans_off = HEADER_LEN + qname_len + 4;
    let auth_len = if slip { 0 } else { 2 + soa_len };
    let opt_len = if q.edns { OPT_RR_LEN } else { 0 };
    let dns_len = ans_off + auth_len + opt_len;
    if dns_len > q.udp_limit() as usize {
        return Err(PassTooBig);
    }
    let (l4, udp_len) = turn_around(ctx, q, dns_len)?;
    let tc = if slip { FLAG_TC } else { 0 };
    let header = Header::reply(q, tc | rcode, 0, if slip { 0 } else { 1 });
    header.write(ctx, d)?;
    let mut body = Csum::new();
    if !slip {
        let owner = ZoneRecord::owner_pointer(qname_len, zone_len);
        unsafe { st(ptr_at::<u16>(ctx, d + ans_off)? as *mut u8, 0, owner.to_be()) };
        body.add16_at(ans_off, owner);
        let soa_off = ans_off + 2;
        store(ctx, d + soa_off, zone.soa.as_ptr(), soa_len)?;
        let mut c = Csum::new();
        c.add_raw(zone.soa_sum as u64);
        body.add_sum_at(soa_off, c);
        // The serial, into the zero bytes the sum left for it.
        let serial_off = soa_off + (zone.serial_off as usize & (MAX_SOA_LEN - 1));
        unsafe { st(ptr_at::<u32>(ctx, d + serial_off)? as *mut u8, 0, serial.to_be()) };
        body.add16_at(serial_off, (serial >> 16) as u16);
        body.add16_at(serial_off + 2, serial as u16);
    }
    put_opt(ctx, q, ans_off + auth_len, &mut body)?;
    finish(ctx, q, l4, udp_len, &header, body)
}

/// The reply's DNS header fields that differ from the query's.
struct Header {
    flags: u16,
    ancount: u16,
    nscount: u16,
    arcount: u16,
}

impl Header {
    /// QR and AA set, RD and CD copied, `extra` (TC, rcode) added, everything else (RA, AD)
    /// clear; one OPT when the query had one.
    #[inline(always)]
    fn reply(q: &Query, extra: u16, ancount: u16, nscount: u16) -> Self {
        let flags = FLAG_QR | FLAG_AA | extra | (q.flags & (FLAG_RD | FLAG_CD));
        Self { flags, ancount, nscount, arcount: if q.edns { 1 } else { 0 } }
    }

    #[inline(always)]
    fn write(&self, ctx: &XdpContext, d: usize) -> Result<(), XdpOutcome> {
        let hdr = unsafe { &mut *ptr_at::<[u8; HEADER_LEN]>(ctx, d)? };
        hdr[2..4].copy_from_slice(&self.flags.to_be_bytes());
        hdr[6..8].copy_from_slice(&self.ancount.to_be_bytes());
        hdr[8..10].copy_from_slice(&self.nscount.to_be_bytes());
        hdr[10..12].copy_from_slice(&self.arcount.to_be_bytes());
        Ok(())
    }
}

/// Grow the packet to the reply (`dns_len` bytes of DNS message) and turn its headers around:
/// MACs and addresses swapped, ports swapped, lengths set, IPv4 checksum rewritten. Returns the
/// UDP header's offset and the UDP length; the UDP checksum is [`finish`]'s.
#[inline(always)]
fn turn_around(ctx: &XdpContext, q: &Query, dns_len: usize) -> Result<(usize, u16), XdpOutcome> {
    // The verifier loses the bounds of the parser's offsets when `Query` goes through the stack;
    // these masks restate them (l3 is 14 or 18, dns at most 66, names at most 255 bytes) and
    // never change a value the parser produced.
    let l3 = q.l3 & 0x1f;
    let d = q.dns & 0x7f;
    let qname_len = q.qname_len & 0xff;
    grow(ctx, d + dns_len, d + HEADER_LEN + qname_len + 4)?;
    // Every packet pointer is invalid from here on: all access goes through ptr_at again.

    // Each header is edited through one checked pointer to all of it: LLVM may merge separate
    // checks and rebuild a pointer the verifier then has no range for.
    // Swaps move whole words, unaligned (see `packet::Aligned`), straight between packet bytes.
    let eth = ptr_at::<[u8; 12]>(ctx, 0)? as *mut u8;
    unsafe {
        let (d0, d1) = (ld::<u32>(eth, 0), ld::<u16>(eth, 4));
        st(eth, 0, ld::<u32>(eth, 6));
        st(eth, 4, ld::<u16>(eth, 10));
        st(eth, 6, d0);
        st(eth, 10, d1);
    }

    let udp_len = (UDP_HLEN + dns_len) as u16;
    let l4 = if q.ipv6 {
        let ip = unsafe { &mut *ptr_at::<[u8; IPV6_HLEN]>(ctx, l3)? };
        ip[4..6].copy_from_slice(&udp_len.to_be_bytes());
        ip[7] = HOP_LIMIT;
        let p = ip.as_mut_ptr();
        unsafe {
            let (s0, s1) = (ld::<u64>(p, 8), ld::<u64>(p, 16));
            st(p, 8, ld::<u64>(p, 24));
            st(p, 16, ld::<u64>(p, 32));
            st(p, 24, s0);
            st(p, 32, s1);
        }
        l3 + IPV6_HLEN
    } else {
        let ip = unsafe { &mut *ptr_at::<[u8; IPV4_HLEN]>(ctx, l3)? };
        ip[2..4].copy_from_slice(&(IPV4_HLEN as u16 + udp_len).to_be_bytes());
        ip[8] = HOP_LIMIT;
        ip[10] = 0;
        ip[11] = 0;
        let p = ip.as_mut_ptr();
        let mut sum = Csum::new();
        unsafe {
            let src = ld::<u32>(p, 12);
            st(p, 12, ld::<u32>(p, 16));
            st(p, 16, src);
            // The header as five native-order words, and the checksum written back in native
            // order: byte order does not change a ones'-complement sum (RFC 1071 §2(B)).
            let mut i = 0;
            while i < IPV4_HLEN {
                sum.add32(ld::<u32>(p, i));
                i += 4;
            }
            st::<u16>(p, 10, !sum.fold());
        }
        l3 + IPV4_HLEN
    };

    // UDP: swap the ports, new length; the checksum is written last.
    let udp = unsafe { &mut *ptr_at::<[u8; UDP_HLEN]>(ctx, l4)? };
    let p = udp.as_mut_ptr();
    unsafe {
        let sport = ld::<u16>(p, 0);
        st(p, 0, ld::<u16>(p, 2));
        st(p, 2, sport);
    }
    udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
    Ok((l4, udp_len))
}

/// A `T` at `p + off`, unaligned.
#[inline(always)]
unsafe fn ld<T: Copy>(p: *const u8, off: usize) -> T {
    unsafe { core::ptr::read_unaligned(p.add(off) as *const T) }
}

/// Write a `T` at `p + off`, unaligned.
#[inline(always)]
unsafe fn st<T: Copy>(p: *mut u8, off: usize, v: T) {
    unsafe { core::ptr::write_unaligned(p.add(off) as *mut T, v) }
}

/// The OPT record at message offset `off` when the query had one, added to `body`.
#[inline(always)]
fn put_opt(ctx: &XdpContext, q: &Query, off: usize, body: &mut Csum) -> Result<(), XdpOutcome> {
    if !q.edns {
        return Ok(());
    }
    let d = q.dns & 0x7f;
    let opt = Aligned(opt_record(q.edns_do));
    let to = ptr_at::<[u8; OPT_RR_LEN]>(ctx, d + off)? as *mut u8;
    let from = opt.0.as_ptr();
    unsafe {
        st(to, 0, ld::<u64>(from, 0));
        st(to, 8, ld::<u16>(from, 8));
        st(to, 10, ld::<u8>(from, 10));
    }
    let opt = &opt.0;
    body.add16_at(off + 1, u16::from_be_bytes([opt[1], opt[2]]));
    body.add16_at(off + 3, u16::from_be_bytes([opt[3], opt[4]]));
    body.add16_at(off + 7, u16::from_be_bytes([opt[7], opt[8]]));
    Ok(())
}

/// The UDP checksum over pseudo-header, UDP header, DNS header, question and `body` (what
/// follows the question, summed at its message offsets), written into the UDP header.
#[inline(always)]
fn finish(ctx: &XdpContext, q: &Query, l4: usize, udp_len: u16, h: &Header, body: Csum) -> Result<(), XdpOutcome> {
    let qname_len = q.qname_len & 0xff;
    let mut sum = q.addr_sum;
    sum.add16(17);
    sum.add16(udp_len);
    sum.add16(q.port_sum);
    sum.add16(udp_len);
    sum.add16(q.id);
    sum.add16(h.flags);
    sum.add16(1);
    sum.add16(h.ancount);
    sum.add16(h.nscount);
    sum.add16(h.arcount);
    sum.add_sum_at(0, q.name_sum);
    sum.add16_at(HEADER_LEN + qname_len, q.qtype);
    sum.add16_at(HEADER_LEN + qname_len + 2, CLASS_IN);
    sum.add_sum_at(0, body);
    let udp = unsafe { &mut *ptr_at::<[u8; UDP_HLEN]>(ctx, l4)? };
    udp[6..8].copy_from_slice(&sum.finish_udp().to_be_bytes());
    Ok(())
}

/// Make the packet `new_len` bytes long, keeping its first `keep` bytes (headers and question).
///
/// The tail first: cheap, and drivers with page-sized buffers have room. Frames built from an
/// skb (veth, generic XDP) may have almost no tailroom, but XDP always has 256 bytes of
/// headroom: then the kept bytes are copied out, the start moves back, and they are copied in
/// again at the new start. What follows them is overwritten by the answers.
#[inline(always)]
fn grow(ctx: &XdpContext, new_len: usize, keep: usize) -> Result<(), XdpOutcome> {
    // The helper, not data_end - data: LLVM turns that into arithmetic on pkt_end, which the
    // verifier refuses.
    let frame_len = unsafe { bpf_xdp_get_buff_len(ctx.ctx) } as i64;
    let delta = new_len as i64 - frame_len;
    if unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta as i32) } == 0 {
        return Ok(());
    }
    let keep = keep & (HEAD_BUF - 1);
    if delta <= 0 || keep == 0 {
        return Err(PassGrowFailed);
    }
    let scratch = SCRATCH.get_ptr_mut(0).ok_or(PassGrowFailed)?;
    let head = unsafe { &mut (*scratch).head };
    if unsafe { bpf_xdp_load_bytes(ctx.ctx, 0, head.as_mut_ptr() as *mut _, keep as u32) } != 0 {
        return Err(PassGrowFailed);
    }
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(delta as i32)) } != 0 {
        // Rare (no headroom either): worth a log line, and userspace still answers.
        warn!(ctx, "no room to grow the reply by {} bytes; passing the query on", delta as i32);
        return Err(PassGrowFailed);
    }
    // From here the packet has moved: a failure can no longer pass it on untouched, but the
    // store is within the `keep` bytes just made room for and cannot fail.
    store(ctx, 0, head.as_ptr(), keep)
}
