//! NXDOMAIN and NODATA for names in our zones, with the zone's SOA, in the layout of
//! `spillway_common::negative` (the userspace server sends the same bytes).

use aya_ebpf::programs::XdpContext;
use spillway_common::{
    dns::{HEADER_LEN, MAX_NAME_WIRE_LEN},
    maps::existing,
    name::{NAME_WORDS, lower_word},
    negative::ZoneRecord,
    rrl::{RrlAction, RrlClass},
    stats::XdpOutcome::{self, *},
};

use crate::{
    maps::{EXISTING, SCRATCH, ZONES},
    packet::{ptr_at, read_be16},
    parse::{Query, stashed},
    respond::write_negative,
    rrl,
};

const TYPE_NS: u16 = 2;
const TYPE_SOA: u16 = 6;
const RCODE_NXDOMAIN: u16 = 3;

/// What the caller knows of the question name.
pub mod known {
    /// Not a customer's name: whether it exists is the `EXISTING` map's to say.
    pub const NOT_CUSTOMER: u32 = 0;
    /// A customer's name with no data of the type.
    pub const EXISTS: u32 = 1;
}

/// Answer the stashed query negatively: NODATA when the name exists but has no data of the
/// type, else NXDOMAIN. `known` is one of [`known`]. Returns the outcome's index. Out of line:
/// its frame and the rate limit's are not on the stack with the positive path's.
#[inline(never)]
pub fn answer(ctx: &XdpContext, known: u32) -> u32 {
    let q = match stashed() {
        Ok(q) => q,
        Err(o) => return o as u32,
    };
    match decide(ctx, q, known) {
        Ok(o) | Err(o) => o as u32,
    }
}

#[inline(always)]
fn decide(ctx: &XdpContext, q: &Query, known: u32) -> Result<XdpOutcome, XdpOutcome> {
    // The zone first: a name outside every zone (the passed query) costs no second hash lookup.
    let (zone, zone_len) = find_zone(ctx, q)?;
    let exists = known == known::EXISTS
        || match unsafe { EXISTING.get(&q.key) }.copied() {
            Some(existing::HOST) => return Err(PassHost),
            Some(_) => true,
            None => false,
        };
    // The apex exists (SOA and NS there are positive answers: userspace's).
    let apex = zone_len == q.qname_len & 0xff;
    if apex && (q.qtype == TYPE_SOA || q.qtype == TYPE_NS) {
        return Err(PassType);
    }
    let nodata = exists || apex;
    let (class, rcode) = if nodata { (RrlClass::NoData, 0) } else { (RrlClass::NxDomain, RCODE_NXDOMAIN) };
    if zone.soa_len == 0 {
        return Err(PassNoData);
    }
    match rrl::limit(ctx, q, class as u32) {
        RrlAction::Send | RrlAction::Exempt => {}
        RrlAction::Drop => return Ok(RrlDropped),
        RrlAction::Slip => {
            write_negative(ctx, q, zone, rcode, true)?;
            return Ok(RrlSlipped);
        }
    }
    write_negative(ctx, q, zone, rcode, false)?;
    Ok(if nodata { AnsweredNoData } else { AnsweredNxDomain })
}

/// The closest enclosing zone of the question name, and its apex's length: one LPM trie
/// lookup of the name lowercased and reversed (`spillway_common::negative::zone_key`), then a
/// check that the match ends at a label boundary (a label's data may hold a byte that equals a
/// length).
#[inline(always)]
fn find_zone(ctx: &XdpContext, q: &Query) -> Result<(&'static ZoneRecord, usize), XdpOutcome> {
    let scratch = SCRATCH.get_ptr_mut(0).ok_or(PassNotInZone)?;
    let name_off = (q.dns & 0x7f) + HEADER_LEN;
    let len = q.qname_len & 0xff;
    if len == 0 {
        return Err(PassNotInZone);
    }
    // The name as whole words with the padding in front, so that reversing the words' order
    // and each word's bytes reverses the name: word i is read straight from the packet at
    // `name_off - pad + 8i` (the padding bytes, the DNS header's, are masked off the first), so
    // the last word ends with the name.
    let words_n = (len + 7) / 8;
    let pad = (words_n * 8 - len) & 7;
    let first_mask = !((1u64 << (pad * 8)) - 1);
    let start = name_off - pad;
    let key = unsafe { &mut (*scratch).zone_key };
    key.prefix_len = (len * 8) as u32;
    let data = core::ptr::addr_of_mut!(key.data) as *mut u64;
    // Forwards through the packet (LLVM turns a backwards walk's bound checks into negative
    // offsets, which the verifier refuses), backwards through the key.
    let mut i = 0;
    while i < NAME_WORDS {
        if i >= words_n {
            break;
        }
        let p = ptr_at::<u64>(ctx, start + i * 8).map_err(|_| PassNotInZone)?;
        let mut w = unsafe { core::ptr::read_unaligned(p) };
        if i == 0 {
            w &= first_mask;
        }
        let k = (words_n - 1 - i) & (NAME_WORDS - 1);
        unsafe { core::ptr::write_unaligned(data.add(k), lower_word(w).swap_bytes()) };
        i += 1;
    }
    let zone = ZONES.get(&*key).ok_or(PassNotInZone)?;
    let zone_len = zone.zone_len as usize & 0xff;
    if zone_len == 0 || zone_len > len {
        return Err(PassNotInZone);
    }
    // The apex must start where a label does.
    let want = len - zone_len;
    let mut at = 0usize;
    let mut labels = 0;
    while labels <= MAX_NAME_WIRE_LEN / 2 {
        if at == want {
            return Ok((zone, zone_len));
        }
        if at > want {
            break;
        }
        // Two bytes (the type follows the name): for a one-byte read LLVM writes the bound
        // check in a form the verifier does not take.
        let l = (read_be16(ctx, name_off + at)? >> 8) as usize;
        if l == 0 {
            break;
        }
        at = (at + l + 1) & 0x1ff;
        labels += 1;
    }
    Err(PassNotInZone)
}
