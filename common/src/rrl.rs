//! Response rate limiting: one rule for the XDP program and the userspace server.
//!
//! On the model of BIND's and Knot's RRL: responses are counted per client subnet (the /24 of
//! an IPv4 source, the /56 of an IPv6 one, [`crate::decision::subnet_key_v4`]) and per class of
//! answer, in a bucket that earns `rate` credits a second, holds at most `rate`, and owes at
//! most `rate * window_s`: a flood has to stop for `window_s` seconds before its subnet is
//! answered again at the full rate. Over the rate a response is dropped, except every `slip`-th,
//! which goes out truncated (TC=1, no records) so that a real resolver behind a spoofed subnet
//! retries over TCP, where a source cannot be forged. A spoofed flood thus gets back at most
//! `rate` answers a second and small truncated replies, never more bytes than it sent.
//!
//! Only UDP replies are limited; TCP is not (its source is proven by the handshake).

use crate::{decision::mix64, maps::NameKey};

/// The answer classes buckets are kept per (BIND's "responses", "nxdomains", "errors"...).
/// The values are part of the map layout.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RrlClass {
    /// NOERROR with answer records.
    Answer = 0,
    /// NOERROR, no answer, the SOA in authority.
    NoData = 1,
    /// NXDOMAIN.
    NxDomain = 2,
    /// NOERROR, no answer, not authoritative: a delegation.
    Referral = 3,
    /// Any other rcode (FORMERR, SERVFAIL, NOTIMP, REFUSED, ...).
    Error = 4,
}

impl RrlClass {
    pub const ALL: [RrlClass; 5] = [Self::Answer, Self::NoData, Self::NxDomain, Self::Referral, Self::Error];

    pub const fn label(self) -> &'static str {
        match self {
            Self::Answer => "answer",
            Self::NoData => "nodata",
            Self::NxDomain => "nxdomain",
            Self::Referral => "referral",
            Self::Error => "error",
        }
    }

    /// The class of a reply, from its header: the rcode (low four bits of the flags), the AA
    /// bit and the answer count.
    pub const fn of_reply(flags: u16, ancount: u16) -> Self {
        const NXDOMAIN: u16 = 3;
        const AA: u16 = 0x0400;
        match flags & 0xf {
            0 if ancount > 0 => Self::Answer,
            0 if flags & AA != 0 => Self::NoData,
            0 => Self::Referral,
            NXDOMAIN => Self::NxDomain,
            _ => Self::Error,
        }
    }
}

/// What to do with one response.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RrlAction {
    /// Within the rate: send it.
    Send = 0,
    /// Over the rate: send nothing.
    Drop = 1,
    /// Over the rate, this one's turn to slip: send it truncated (TC=1, no records).
    Slip = 2,
    /// From a subnet on the exempt list (or localhost): sent, never counted against a rate.
    Exempt = 3,
}

/// Counters per action (the `spillway_rrl_total{action}` metric), in this order.
pub const RRL_ACTIONS: u32 = 4;

impl RrlAction {
    pub const ALL: [RrlAction; RRL_ACTIONS as usize] = [Self::Send, Self::Drop, Self::Slip, Self::Exempt];

    pub const fn label(self) -> &'static str {
        match self {
            Self::Send => "sent",
            Self::Drop => "dropped",
            Self::Slip => "slipped",
            Self::Exempt => "exempt",
        }
    }
}

/// The limits, as the loader writes them for the XDP program (map `RRL_CONFIG`, key 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RrlParams {
    /// Responses a second per subnet and class; 0 turns rate limiting off.
    pub rate: u32,
    /// Seconds of debt a flood builds up at most.
    pub window_s: u32,
    /// Every `slip`-th limited response is sent truncated; 0 = none, 1 = all.
    pub slip: u32,
    pub _pad: u32,
}

impl RrlParams {
    pub const OFF: Self = Self { rate: 0, window_s: 0, slip: 0, _pad: 0 };
}

/// Key of a bucket: the client's subnet key, the answer class and what the answer is about.
///
/// As in BIND and NSD, answers and NODATA are counted per name and type (a resolver asking many
/// names is not a reflection; one asking the same name again and again is), the other classes
/// per subnet alone (a random-subdomain flood gets one NXDOMAIN budget, not one per name).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RrlKey {
    pub subnet: u64,
    /// [`RrlKey::about_name`] for answers and NODATA, 0 otherwise.
    pub about: u64,
    pub class: u32,
    pub _pad: u32,
}

impl RrlKey {
    /// `subnet` is [`crate::decision::subnet_key_v4`] or `_v6` of the client; `name` the
    /// question's names-map key ([`crate::name::name_key`]).
    #[inline(always)]
    pub fn new(subnet: u64, class: RrlClass, name: &NameKey, qtype: u16) -> Self {
        let about = match class {
            RrlClass::Answer | RrlClass::NoData => Self::about_name(name, qtype),
            _ => 0,
        };
        Self { subnet, about, class: class as u32, _pad: 0 }
    }

    #[inline(always)]
    pub fn about_name(name: &NameKey, qtype: u16) -> u64 {
        mix64(name.h1 ^ ((qtype as u64) << 48))
    }
}

/// One subnet's and class's balance.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RrlBucket {
    /// The second (of a monotonic clock) the balance was last credited.
    pub last_s: u32,
    /// Credits left; negative is debt.
    pub balance: i32,
    /// Limited responses so far, for the slip turn.
    pub limited: u32,
    pub _pad: u32,
}

impl RrlBucket {
    /// A new bucket, full, for a first response at `now_s` (which [`RrlBucket::step`] then
    /// counts).
    pub const fn full(now_s: u32, p: &RrlParams) -> Self {
        Self { last_s: now_s, balance: clamp_i32(p.rate as i64), limited: 0, _pad: 0 }
    }

    /// Count one response at `now_s` and say what to do with it. `rate == 0` sends everything.
    pub fn step(&mut self, now_s: u32, p: &RrlParams) -> RrlAction {
        if p.rate == 0 {
            return RrlAction::Send;
        }
        let rate = p.rate as i64;
        // A clock that went back (another CPU's earlier read) credits nothing.
        let elapsed = now_s.wrapping_sub(self.last_s);
        if elapsed > 0 && elapsed < 1 << 31 {
            let credited = self.balance as i64 + elapsed as i64 * rate;
            self.balance = clamp_i32(if credited > rate { rate } else { credited });
            self.last_s = now_s;
        }
        let floor = -(rate * p.window_s as i64);
        let after = self.balance as i64 - 1;
        self.balance = clamp_i32(if after < floor { floor } else { after });
        if after >= 0 {
            return RrlAction::Send;
        }
        self.limited = self.limited.wrapping_add(1);
        if p.slip != 0 && crate::decision::rem32(self.limited, p.slip) == 0 { RrlAction::Slip } else { RrlAction::Drop }
    }
}

const fn clamp_i32(v: i64) -> i32 {
    if v > i32::MAX as i64 {
        i32::MAX
    } else if v < i32::MIN as i64 {
        i32::MIN
    } else {
        v as i32
    }
}

/// Longest exempt prefix list per family the XDP program holds.
pub const MAX_RRL_EXEMPT: u32 = 1024;

#[cfg(test)]
mod tests {
    use super::*;

    const P: RrlParams = RrlParams { rate: 5, window_s: 3, slip: 2, _pad: 0 };

    fn run(b: &mut RrlBucket, now: u32, n: usize) -> [usize; 3] {
        let mut out = [0; 3];
        for _ in 0..n {
            out[b.step(now, &P) as usize] += 1;
        }
        out
    }

    #[test]
    fn a_flood_gets_the_rate_and_every_slipth_truncated() {
        let mut b = RrlBucket::full(100, &P);
        assert_eq!(run(&mut b, 100, 105), [5, 50, 50]);
        // Debt is capped at rate * window: 3 seconds of silence pay it off, the 4th earns 5.
        assert_eq!(b.balance, -15);
        assert_eq!(run(&mut b, 103, 1), [0, 1, 0]);
        let mut b2 = b;
        assert_eq!(run(&mut b2, 107, 6), [5, 0, 1], "full again after the window");
    }

    #[test]
    fn credit_is_per_second_and_capped_at_the_rate() {
        let mut b = RrlBucket::full(10, &P);
        assert_eq!(run(&mut b, 10, 3), [3, 0, 0]);
        assert_eq!(run(&mut b, 1000, 6), [5, 1, 0], "a long pause earns at most the rate");
        // Rate 5: one second later, 5 more.
        assert_eq!(run(&mut b, 1001, 5)[0], 4, "the debt of one is paid first");
    }

    #[test]
    fn a_clock_that_goes_back_credits_nothing() {
        let mut b = RrlBucket::full(50, &P);
        run(&mut b, 50, 5);
        assert_eq!(b.step(49, &P), RrlAction::Drop);
        assert_eq!(b.last_s, 50);
    }

    #[test]
    fn slip_zero_never_slips_slip_one_always_does() {
        for (slip, want) in [(0, [2, 8, 0]), (1, [2, 0, 8])] {
            let p = RrlParams { rate: 2, window_s: 1, slip, _pad: 0 };
            let mut b = RrlBucket::full(0, &p);
            let mut out = [0; 3];
            for _ in 0..10 {
                out[b.step(0, &p) as usize] += 1;
            }
            assert_eq!(out, want, "slip {slip}");
        }
    }

    #[test]
    fn rate_zero_is_off() {
        let mut b = RrlBucket::default();
        for _ in 0..1000 {
            assert_eq!(b.step(0, &RrlParams::OFF), RrlAction::Send);
        }
    }

    #[test]
    fn classes_from_the_header() {
        assert_eq!(RrlClass::of_reply(0x8400, 1), RrlClass::Answer);
        assert_eq!(RrlClass::of_reply(0x8400, 0), RrlClass::NoData);
        assert_eq!(RrlClass::of_reply(0x8000, 0), RrlClass::Referral);
        assert_eq!(RrlClass::of_reply(0x8403, 0), RrlClass::NxDomain);
        assert_eq!(RrlClass::of_reply(0x8405, 0), RrlClass::Error);
        assert_eq!(RrlClass::of_reply(0x8002, 0), RrlClass::Error);
    }
}
