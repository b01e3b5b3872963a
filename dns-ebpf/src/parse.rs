//! Ethernet (one optional 802.1Q tag), IPv4/IPv6, UDP to port 53, and the DNS question.
//!
//! Accepted: a query (QR=0, opcode QUERY, QDCOUNT=1, no answer or authority records) whose
//! question name has no compression pointer, class IN, a data type
//! (`spillway_common::negative::decidable_type`), and at most one additional record which must
//! be an OPT of version 0 (its options are ignored). Anything else is an `Err(reason)`:
//! the packet goes on to the kernel untouched and the userspace server answers it.

use aya_ebpf::programs::XdpContext;
use spillway_common::{
    decision::{subnet_key_v4, subnet_key_v6},
    dns::*,
    maps::{LOCAL_SET_SMALL, NameKey},
    name::{NAME_WORDS, NameHasher},
    negative::decidable_type,
    stats::XdpOutcome::{self, *},
};

use crate::{
    csum::Csum,
    maps::{LOCAL_ADDRS_V4, LOCAL_ADDRS_V6, LOCAL_SET, SCRATCH},
    packet::{View, ptr_at, read_be16, read_u8},
};

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPV4_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;
const UDP_HLEN: usize = 8;
const IPPROTO_UDP: u8 = 17;
const IPV6_NEXTHDR_FRAGMENT: u8 = 44;

/// Everything the reply needs from the query.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Query {
    /// Offset of the IP header.
    pub l3: usize,
    pub ipv6: bool,
    /// Offset of the DNS header.
    pub dns: usize,
    /// Wire length of the question name, root label included (1..=255).
    pub qname_len: usize,
    pub qtype: u16,
    pub key: NameKey,
    /// The query's header flags word.
    pub flags: u16,
    /// The query had an OPT record. Plain fields, not `Option<Edns>`: LLVM fills the payload of
    /// a `None` with whatever a stack slot holds, and the verifier rejects a pointer there.
    pub edns: bool,
    /// The client's UDP payload size (at least 512) when `edns`.
    pub edns_udp_size: u16,
    /// The DO bit when `edns`.
    pub edns_do: bool,
    /// [`subnet_key_v4`]/[`subnet_key_v6`] of the client.
    pub client_key: u64,
    /// Sum of both IP addresses (the same after they are swapped).
    pub addr_sum: Csum,
    /// Sum of both UDP ports.
    pub port_sum: u16,
    pub id: u16,
    /// Sum of the question name's bytes, placed at their offsets in the message.
    pub name_sum: Csum,
}

impl Query {
    /// Largest reply the client takes over UDP.
    pub fn udp_limit(&self) -> u16 {
        if self.edns { self.edns_udp_size } else { PLAIN_UDP_LIMIT }
    }
}

/// Parse a query. `replay` (benchmarks only) also accepts a reply this program wrote, so that
/// BPF_PROG_TEST_RUN's repeat, which feeds each run the previous run's output, times the full
/// path.
#[inline(always)]
fn parse_query(ctx: &XdpContext, replay: bool, out: *mut Query) -> Result<(), XdpOutcome> {
    // Group bit of the destination MAC: multicast or broadcast, never answered (a reply to
    // a frame every host received would come from every host).
    let eth = View::<ETH_HLEN>::at(ctx, 0).map_err(|_| PassNotIp)?;
    if eth.u8(0) & 1 != 0 {
        return Err(PassNotUnicast);
    }
    let mut l3 = ETH_HLEN;
    let mut ethertype = eth.be16(12);
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        ethertype = read_be16(ctx, 16).map_err(|_| PassNotIp)?;
        l3 = ETH_HLEN + 4;
    }

    // Each header is checked once for its length, then read at constant offsets.
    let mut addr_sum = Csum::new();
    let (ipv6, l4, ip_payload_len, client_key) = match ethertype {
        ETH_P_IP => {
            let ip = View::<IPV4_HLEN>::at(ctx, l3)?;
            let vihl = ip.u8(0);
            if vihl >> 4 != 4 || vihl & 0xf < 5 {
                return Err(PassMalformed);
            }
            if vihl & 0xf != 5 {
                return Err(PassIpOptions);
            }
            let total_len = ip.be16(2) as usize;
            // The reserved flag must be zero (RFC 791); more-fragments or an offset: a fragment.
            let frag = ip.be16(6);
            if frag & 0x8000 != 0 {
                return Err(PassMalformed);
            }
            if frag & 0x3fff != 0 {
                return Err(PassFragment);
            }
            if ip.u8(9) != IPPROTO_UDP {
                return Err(PassNotDns);
            }
            let src = ip.bytes::<4>(12);
            let dst = ip.bytes::<4>(16);
            addr_sum.add_bytes4(&src.0);
            addr_sum.add_bytes4(&dst.0);
            if total_len < IPV4_HLEN {
                return Err(PassMalformed);
            }
            if !is_local_v4(&dst.0) {
                return Err(PassNotLocal);
            }
            (false, l3 + IPV4_HLEN, total_len - IPV4_HLEN, subnet_key_v4(src.0))
        }
        ETH_P_IPV6 => {
            let ip = View::<IPV6_HLEN>::at(ctx, l3)?;
            if ip.u8(0) >> 4 != 6 {
                return Err(PassMalformed);
            }
            let payload_len = ip.be16(4) as usize;
            match ip.u8(6) {
                IPPROTO_UDP => {}
                IPV6_NEXTHDR_FRAGMENT => return Err(PassFragment),
                _ => return Err(PassNotDns),
            }
            let src = ip.bytes::<16>(8);
            let dst = ip.bytes::<16>(24);
            addr_sum.add_bytes16(&src.0);
            addr_sum.add_bytes16(&dst.0);
            if !is_local_v6(&dst.0) {
                return Err(PassNotLocal);
            }
            (true, l3 + IPV6_HLEN, payload_len, subnet_key_v6(src.0))
        }
        _ => return Err(PassNotIp),
    };

    let udp = View::<UDP_HLEN>::at(ctx, l4)?;
    let sport = udp.be16(0);
    let dport = udp.be16(2);
    if dport != DNS_PORT {
        return Err(PassNotDns);
    }
    if sport == 0 {
        return Err(PassSourcePort);
    }
    let udp_len = udp.be16(4) as usize;
    let udp_csum = udp.be16(6);
    // The UDP length must agree with the IP length, and the frame must hold it (it may be
    // longer: Ethernet pads short frames).
    let frame_len = ctx.data_end() - ctx.data();
    if udp_len != ip_payload_len || udp_len < UDP_HLEN + HEADER_LEN || l4 + udp_len > frame_len {
        return Err(PassMalformed);
    }
    let dns = l4 + UDP_HLEN;
    let dns_len = udp_len - UDP_HLEN;

    let hdr = View::<HEADER_LEN>::at(ctx, dns)?;
    let id = hdr.be16(0);
    let flags = hdr.be16(2);
    let qdcount = hdr.be16(4);
    let ancount = hdr.be16(6);
    let nscount = hdr.be16(8);
    let arcount = hdr.be16(10);
    if (flags & FLAG_QR != 0 && !replay)
        || flags & (OPCODE_MASK | FLAG_TC) != 0
        || qdcount != 1
        || (ancount != 0 && !replay)
        || (nscount != 0 && !replay)
        || arcount > 1
    {
        return Err(PassNotQuery);
    }

    // The question name, in two passes. First its labels, a length byte at a time, for where it
    // ends; then its bytes, copied into scratch with one helper call and hashed a word at a time
    // (lowercased for the map key, as received for the reply's checksum). A byte-at-a-time walk
    // cost about 3 ns per name byte, a third of the program's time for a 22-byte name.
    let name_off = dns + HEADER_LEN;
    let mut end = 0usize;
    let mut labels = 0;
    loop {
        if labels > MAX_NAME_WIRE_LEN / 2 {
            return Err(PassName);
        }
        let len = read_u8(ctx, name_off + end).map_err(|_| PassName)? as usize;
        if len == 0 {
            break;
        }
        if len > MAX_LABEL_LEN as usize {
            // A compression pointer (0xC0) or a reserved label type.
            return Err(PassName);
        }
        end += len + 1;
        if end >= MAX_NAME_WIRE_LEN {
            return Err(PassName);
        }
        labels += 1;
    }
    let qname_len = forget_constant(end as u32 + 1)?;
    let (key, name_sum) = hash_name(ctx, name_off, qname_len)?;

    let q_end = name_off + qname_len;
    let qtype = read_be16(ctx, q_end)?;
    let qclass = read_be16(ctx, q_end + 2)?;
    if qclass != CLASS_IN || !decidable_type(qtype) {
        return Err(PassType);
    }

    let mut msg_len = HEADER_LEN + qname_len + 4;
    let mut edns = false;
    let mut edns_udp_size = PLAIN_UDP_LIMIT;
    let mut edns_do = false;
    let replayed_records = replay && (ancount != 0 || nscount != 0);
    if arcount == 1 && !replayed_records {
        let opt = View::<OPT_RR_LEN>::at(ctx, q_end + 4)?;
        let root = opt.u8(0);
        let rtype = opt.be16(1);
        let udp_size = opt.be16(3);
        let ttl = opt.be32(5);
        let rdlen = opt.be16(9);
        // Version (second byte of the TTL) must be 0 (userspace answers BADVERS otherwise).
        if root != 0 || rtype != TYPE_OPT || (ttl >> 16) & 0xff != 0 {
            return Err(PassEdns);
        }
        // Options are ignored (RFC 6891 §6.1.2; a server without cookies ignores COOKIE, RFC
        // 7873 §5.2.1).
        msg_len += rdlen as usize;
        msg_len += OPT_RR_LEN;
        edns = true;
        edns_udp_size = if udp_size < PLAIN_UDP_LIMIT { PLAIN_UDP_LIMIT } else { udp_size };
        edns_do = ttl & EDNS_FLAG_DO != 0;
    } else if replay && arcount == 1 {
        // A replayed reply: its OPT sits after the answers or the SOA. Take it as present so
        // the repeat keeps timing the EDNS reply path (the OPT's few reads above are not timed).
        edns = true;
    }
    if msg_len != dns_len && !replay {
        return Err(PassNotQuery);
    }

    // A zero UDP checksum is invalid over IPv6 (RFC 8200 §8.1). Other checksums are not
    // verified: the Ethernet FCS protects the wire, and on veth, virtio or local traffic the
    // field holds only the partial sum of checksum offload, which XDP cannot check.
    if ipv6 && udp_csum == 0 {
        return Err(PassMalformed);
    }

    let mut port_sum = Csum::new();
    port_sum.add16(sport);
    port_sum.add16(dport);
    // Field by field into the slot: a whole `Query` built first would be a second copy on
    // the stack.
    unsafe {
        (*out).l3 = l3;
        (*out).ipv6 = ipv6;
        (*out).dns = dns;
        (*out).qname_len = qname_len;
        (*out).qtype = qtype;
        (*out).key = key;
        (*out).flags = flags;
        (*out).edns = edns;
        (*out).edns_udp_size = edns_udp_size;
        (*out).edns_do = edns_do;
        (*out).client_key = client_key;
        (*out).addr_sum = addr_sum;
        (*out).port_sum = port_sum.fold();
        (*out).id = id;
        (*out).name_sum = name_sum;
    }
    Ok(())
}

/// Whether the program answers for this IPv4 address: compares in the small set, or the hash
/// map (see `spillway_common::maps::LocalSet`).
#[inline(always)]
fn is_local_v4(dst: &[u8; 4]) -> bool {
    let Some(set) = LOCAL_SET.get(0) else { return false };
    let n = set.v4_len as usize;
    if n > LOCAL_SET_SMALL {
        return unsafe { LOCAL_ADDRS_V4.get(dst) }.is_some();
    }
    let d = u32::from_ne_bytes(*dst);
    let mut i = 0;
    while i < LOCAL_SET_SMALL {
        if i >= n {
            break;
        }
        if u32::from_ne_bytes(set.v4[i]) == d {
            return true;
        }
        i += 1;
    }
    false
}

/// [`is_local_v4`] for IPv6.
#[inline(always)]
fn is_local_v6(dst: &[u8; 16]) -> bool {
    let Some(set) = LOCAL_SET.get(0) else { return false };
    let n = set.v6_len as usize;
    if n > LOCAL_SET_SMALL {
        return unsafe { LOCAL_ADDRS_V6.get(dst) }.is_some();
    }
    let d = u128::from_ne_bytes(*dst);
    let mut i = 0;
    while i < LOCAL_SET_SMALL {
        if i >= n {
            break;
        }
        if u128::from_ne_bytes(set.v6[i]) == d {
            return true;
        }
        i += 1;
    }
    false
}

/// The names-map key and the checksum of the question name's `len` bytes at `off` (which the
/// label walk found in the packet), hashed a word at a time straight from the packet (unaligned
/// 8-byte loads, see `build.rs`). The name's last word may run past the packet's end; the
/// question's type and class follow the name, so when it has fewer than 4 bytes left the word
/// is loaded so as to end with the class, and shifted down.
#[inline(always)]
fn hash_name(ctx: &XdpContext, off: usize, len: usize) -> Result<(NameKey, Csum), XdpOutcome> {
    let len = len & 0xff;
    if len == 0 {
        return Err(PassName);
    }
    let last = (len - 1) / 8;
    // Bytes of the name in its last word (1..=8), kept in the low bytes (little-endian loads).
    let tail = len - last * 8;
    let tail_mask = if tail == 8 { u64::MAX } else { (1u64 << (tail * 8)) - 1 };
    let mut hasher = NameHasher::new();
    let mut sum = Csum::new();
    let mut k = 0;
    while k < NAME_WORDS {
        let short = k == last && tail < 4;
        let at = if short { off + len - 4 } else { off + k * 8 };
        let p = ptr_at::<u64>(ctx, at).map_err(|_| PassName)?;
        let mut w = unsafe { core::ptr::read_unaligned(p) };
        if short {
            w >>= (4 - tail) * 8;
        }
        if k == last {
            w &= tail_mask;
        }
        hasher.push_word(w);
        // Summed as little-endian words; byte-swapped to network order below (RFC 1071 §2(B)).
        sum.add32((w >> 32) as u32);
        sum.add32(w as u32);
        if k == last {
            break;
        }
        k += 1;
    }
    let mut name_sum = Csum::new();
    name_sum.add16(sum.fold().swap_bytes());
    Ok((hasher.finish(len), name_sum))
}

/// What [`parse_to_scratch`] returns for a query it parsed; anything else is an `XdpOutcome`.
pub const PARSED: u32 = u32::MAX;

/// Parse a query into the per-CPU scratch slot (see `Scratch::query`): [`PARSED`], or the
/// pass reason. Out of line, so that its stack frame and the reply path's (also out of line)
/// are never both on the 512-byte stack.
#[inline(never)]
pub fn parse_to_scratch(ctx: &XdpContext, replay: bool) -> u32 {
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else { return PassMalformed as u32 };
    match parse_query(ctx, replay, unsafe { core::ptr::addr_of_mut!((*scratch).query) }) {
        Ok(()) => PARSED,
        Err(reason) => reason as u32,
    }
}

/// The query [`parse_to_scratch`] stored.
#[inline(always)]
pub fn stashed() -> Result<&'static Query, XdpOutcome> {
    let scratch = SCRATCH.get_ptr_mut(0).ok_or(PassMalformed)?;
    Ok(unsafe { &*core::ptr::addr_of!((*scratch).query) })
}

/// Pass `v` through a per-CPU map slot so the verifier sees an unknown value in 1..=255 instead
/// of one of 255 constants; see `maps::SCRATCH`. The bound is a mask (the verifier tracks masks
/// exactly; LLVM rewrites range compares into forms it does not) and never changes a length the
/// walk produced, which is at most 255.
#[inline(always)]
fn forget_constant(v: u32) -> Result<usize, XdpOutcome> {
    let scratch = SCRATCH.get_ptr_mut(0).ok_or(PassName)?;
    let slot = unsafe { core::ptr::addr_of_mut!((*scratch).name_len) };
    unsafe { core::ptr::write_volatile(slot, v) };
    let v = (unsafe { core::ptr::read_volatile(slot) } & 0xff) as usize;
    if v == 0 {
        return Err(PassName);
    }
    Ok(v)
}
