//! Spillway's XDP program: answers A and AAAA queries for customer names straight from BPF maps
//! with XDP_TX, NXDOMAIN and NODATA for other names in our zones, and passes everything else to
//! the kernel (and so to the userspace server).
//!
//! Entry points are thin wrappers: `spillway_dns` maps the `try_` function's result to an action
//! and counts it. Every `Err` is a pass reason, so the only actions are XDP_TX, XDP_PASS and
//! XDP_DROP (an answer over the rate limit); XDP_ABORTED is never returned.
#![no_std]
#![no_main]

mod csum;
mod maps;
mod negative;
mod packet;
mod parse;
mod respond;
mod rrl;

use aya_ebpf::{bindings::xdp_action, helpers::bpf_get_prandom_u32, macros::xdp, programs::XdpContext};
use spillway_common::{
    decision::{
        Draws, OriginDraw, Target, addr_key_v4, addr_key_v6, choose_target, pick_origin, proxy_window, side_draw,
    },
    dns::{TYPE_A, TYPE_AAAA},
    maps::draw,
    rrl::{RrlAction, RrlClass},
    stats::XdpOutcome,
};

use crate::{
    maps::{CUSTOMER_STATS, NAMES, XDP_STATS, count_resolver, customer_record, proxy_rings},
    negative::known,
    respond::{Answer, write_reply},
};

/// Set to 1 at load time by benchmarks only: accept this program's own replies as queries (see
/// `parse::parse_query`).
#[unsafe(no_mangle)]
static BENCH_REPLAY: u8 = 0;

/// The upgrade test's program (feature `variant`) reads this once per packet, so its
/// instructions differ from the default build's and nothing else does.
#[cfg(feature = "variant")]
#[unsafe(no_mangle)]
static PROGRAM_VARIANT: u32 = 1;

#[xdp]
pub fn spillway_dns(ctx: XdpContext) -> u32 {
    #[cfg(feature = "variant")]
    unsafe {
        core::ptr::read_volatile(&PROGRAM_VARIANT)
    };
    let outcome = match try_spillway_dns(&ctx) {
        Ok(outcome) => outcome,
        Err(reason) => reason,
    };
    if let Some(counter) = XDP_STATS.get_ptr_mut(outcome as u32) {
        unsafe { *counter += 1 };
    }
    match outcome {
        XdpOutcome::RrlDropped => xdp_action::XDP_DROP,
        XdpOutcome::RrlSlipped => xdp_action::XDP_TX,
        o if o.is_answer() => xdp_action::XDP_TX,
        _ => xdp_action::XDP_PASS,
    }
}

/// `Ok`: what was sent (an answer or a slip) or dropped; `Err`: why the packet is passed on.
#[inline(always)]
fn try_spillway_dns(ctx: &XdpContext) -> Result<XdpOutcome, XdpOutcome> {
    let replay = unsafe { core::ptr::read_volatile(&BENCH_REPLAY) } != 0;
    let parsed = parse::parse_to_scratch(ctx, replay);
    if parsed != parse::PARSED {
        return Err(XdpOutcome::from_index(parsed).unwrap_or(XdpOutcome::PassMalformed));
    }
    let q = parse::stashed()?;
    let Some(name) = (unsafe { NAMES.get(&q.key) }) else { return negative(ctx, known::NOT_CUSTOMER) };
    if q.qtype != TYPE_A && q.qtype != TYPE_AAAA {
        return negative(ctx, known::EXISTS);
    }
    let customer = name.customer;
    let rec = customer_record(customer).ok_or(XdpOutcome::PassUnknownName)?;
    let rings = proxy_rings().ok_or(XdpOutcome::PassUnknownName)?;
    let v6 = q.qtype == TYPE_AAAA;
    let proxy_len = if v6 { rings.v6_len } else { rings.v4_len };
    let origin_len = if v6 { rec.origin_v6_len } else { rec.origin_v4_len };
    let draws = Draws::from_rand(unsafe { bpf_get_prandom_u32() });
    if rec.draw == draw::RESOLVER {
        count_resolver(customer, q.client_key);
    }
    let Some(target) = choose_target(rec, side_draw(rec, draws.fraction, q.client_key), proxy_len, origin_len) else {
        return negative(ctx, known::EXISTS);
    };
    match rrl::limit(ctx, q, RrlClass::Answer as u32) {
        RrlAction::Send | RrlAction::Exempt => {}
        RrlAction::Drop => return Ok(XdpOutcome::RrlDropped),
        RrlAction::Slip => {
            // `write_reply` is a subprogram: a second call site is a call, not a copy.
            write_reply(ctx, q, rec, rings, &Answer::Slip)?;
            return Ok(XdpOutcome::RrlSlipped);
        }
    }
    let counters = CUSTOMER_STATS.get_ptr_mut(customer);

    let answer = match target {
        Target::Proxy => {
            let (start, count) = proxy_window(proxy_len, draws.window);
            Answer::Proxies { start, count }
        }
        Target::Cname => Answer::Cname,
        Target::Origin => {
            let rr_cursor = match counters {
                Some(c) => unsafe {
                    let cursor = (*c).rr_cursor;
                    (*c).rr_cursor = cursor.wrapping_add(1);
                    cursor
                },
                None => 0,
            };
            let draw = OriginDraw { rr_cursor, rand: draws.origin, client_key: q.client_key };
            let index = if v6 {
                let cum = &rec.origin_v6_cum_weight;
                pick_origin(rec.assignment, origin_len, cum, draw, |i| addr_key_v6(&rec.origin_v6[i & 7]))
            } else {
                let cum = &rec.origin_v4_cum_weight;
                pick_origin(rec.assignment, origin_len, cum, draw, |i| addr_key_v4(&rec.origin_v4[i & 7]))
            };
            Answer::Origin { index }
        }
    };
    write_reply(ctx, q, rec, rings, &answer)?;
    if let Some(c) = counters {
        unsafe { (*c).answers[target as usize & 3] += 1 };
    }
    Ok(match target {
        Target::Proxy => XdpOutcome::AnsweredProxy,
        Target::Origin => XdpOutcome::AnsweredOrigin,
        Target::Cname => XdpOutcome::AnsweredCname,
    })
}

/// A negative answer (see `negative::answer`), or why it is passed on.
#[inline(always)]
fn negative(ctx: &XdpContext, known: u32) -> Result<XdpOutcome, XdpOutcome> {
    let o = XdpOutcome::from_index(negative::answer(ctx, known)).unwrap_or(XdpOutcome::PassMalformed);
    if o.is_answer() || o == XdpOutcome::RrlSlipped || o == XdpOutcome::RrlDropped { Ok(o) } else { Err(o) }
}

/// The cost floor for benchmarks: bounce every packet back untouched.
#[xdp]
pub fn xdp_tx_floor(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_TX
}

/// For the peer of a veth pair: native XDP_TX on veth drops frames unless the peer device has an
/// XDP program too; this one passes everything.
#[xdp]
pub fn xdp_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
