//! Response rate limiting of the program's answers, by the rule in `spillway_common::rrl`.

use aya_ebpf::{helpers::generated::bpf_ktime_get_coarse_ns, maps::lpm_trie::Key, programs::XdpContext};
use spillway_common::rrl::{RrlAction, RrlBucket, RrlClass, RrlKey};

use crate::{
    maps::{RRL_CONFIG, RRL_EXEMPT_V4, RRL_EXEMPT_V6, RRL_STATE, RRL_STATS, SCRATCH},
    packet::read,
    parse::Query,
};

/// What to do with the reply to `q`, of class `class` (an [`RrlClass`] value). Off (rate 0, or
/// no config): [`RrlAction::Send`], uncounted.
#[inline(never)]
pub fn limit(ctx: &XdpContext, q: &Query, class: u32) -> RrlAction {
    let Some(p) = RRL_CONFIG.get(0) else { return RrlAction::Send };
    if p.rate == 0 {
        return RrlAction::Send;
    }
    let now_s = (unsafe { bpf_ktime_get_coarse_ns() } / 1_000_000_000) as u32;
    // Key and new bucket in scratch: the stack is spent by the reply path.
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else { return RrlAction::Send };
    let (key, fresh) = unsafe { (&mut (*scratch).rrl_key, &mut (*scratch).rrl_bucket) };
    let class = match class {
        1 => RrlClass::NoData,
        2 => RrlClass::NxDomain,
        _ => RrlClass::Answer,
    };
    *key = RrlKey::new(q.client_key, class, &q.key, q.qtype);
    let mut action = match RRL_STATE.get_ptr_mut(&*key) {
        Some(b) => unsafe { (*b).step(now_s, p) },
        None => {
            *fresh = RrlBucket::full(now_s, p);
            let a = fresh.step(now_s, p);
            // A full table evicts the least recently used bucket; an error only loses this count.
            let _ = RRL_STATE.insert(&*key, &*fresh, 0);
            a
        }
    };
    // Only a limited answer pays for the exemption lookup.
    if action != RrlAction::Send && exempt(ctx, q) {
        action = RrlAction::Exempt;
    }
    if let Some(c) = RRL_STATS.get_ptr_mut(action as u32) {
        unsafe { *c += 1 };
    }
    action
}

/// The client's address is read again from the packet, still the query here: kept in `Query`
/// it cost stack the program does not have. The trie keys are built in scratch: they are packed
/// structs, which on the stack LLVM may write at unaligned offsets the verifier refuses there.
#[inline(always)]
fn exempt(ctx: &XdpContext, q: &Query) -> bool {
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else { return false };
    let l3 = q.l3 & 0x1f;
    if q.ipv6 {
        let key = unsafe { &mut (*scratch).exempt_v6 };
        match read::<16>(ctx, l3 + 8) {
            Ok(src) => {
                *key = Key::new(128, src.0);
                RRL_EXEMPT_V6.get(key).is_some()
            }
            Err(_) => false,
        }
    } else {
        let key = unsafe { &mut (*scratch).exempt_v4 };
        match read::<4>(ctx, l3 + 12) {
            Ok(src) => {
                *key = Key::new(32, src.0);
                RRL_EXEMPT_V4.get(key).is_some()
            }
            Err(_) => false,
        }
    }
}
