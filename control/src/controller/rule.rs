//! The control law for one buyer, one tick.
//!
//! Goal: requests/s the proxies serve for the buyer (`served`) close to, and not above, what
//! it bought (`purchased`), scaled down when the proxies have less spare capacity than sold.
//!
//! 1. Setpoint `r = purchased x scale x (1 - headroom)`; `scale <= 1` is the network's
//!    momentary spare capacity over everything sold (load feedback: buyers shrink first).
//!    The headroom is `headroom_sigmas` standard deviations of the served rate's own noise
//!    (measured: resolvers of very different sizes make it lumpy), within bounds. A move of
//!    the demand estimate beyond `step_sigmas` of that noise is a step, not noise: it is kept
//!    out of the noise (so a step does not widen the headroom for many TTLs after it), and two
//!    such moves up in a row make the estimate jump to the new level at once.
//! 2. The cache model ([`AnswerWindow`]) gives `f_eff`, the proxy share of the answers still
//!    cached. `served / f_eff` is the buyer's whole demand now, whatever the fraction was
//!    when those answers were given (smoothed: quick to rise, slow to fall).
//! 3. Feed-forward: the cache should hold `f* = r / demand x (1 + trim)`.
//! 4. TTL-aware, asymmetric: going up, new answers get `f*` (the cache reaches it within one
//!    TTL and never passes it). Going down, new answers get whatever makes the cache hold `f*`
//!    after `down_horizon` of the TTL (often 0), since every answer given now stays for a TTL.
//! 5. Integral trim (the I of a PI; step 3 is the proportional part, with gain 1 on the ratio):
//!    `trim += ki x (r - served) / r x dt / ttl`, clamped, frozen while the fraction is
//!    saturated in the error's direction, while the cache has not yet reached the last
//!    fraction (the error is then the TTL's lag), or while `served` is unknown (anti-windup).
//! 6. Unknown `served` (stale reports): never raise the fraction, hold it.
//! 7. With `proxy_ttl_min_s` set (off by default), proxy answers get a shorter TTL
//!    ([`proxy_ttl`]) once the buyer is near what it is allowed or its demand steps up, until
//!    its contract ends: cached answers cannot be recalled, so a short TTL is what bounds how
//!    long a step overshoots. The TTL is not below `proxy_ttl_min_s`, nor below what keeps the
//!    buyer's query load within `max_query_factor` of its own TTL's. Going up, the answer
//!    fraction is then the one that makes the target share of the resolvers hold a proxy
//!    answer ([`share_to_fraction`]), since proxy answers are asked for again sooner.
//! 8. No contract in force: 0. A manual fraction wins. For the first TTL of a contract (the
//!    caches have not turned over, so few and unrepresentative answers are cached): the
//!    buyer's estimate, unless the proxies already serve more than the setpoint.
//! 9. Drawn per resolver (the customer's `draw = "resolver"`), a resolver keeps its side when
//!    it asks again: the answer fraction is the share itself, going down asks for the target
//!    at once (no undershoot: it would hold resolvers on the origin for a whole TTL), the trim
//!    integrates without waiting for the cache to hold the fraction (the hashed resolvers are
//!    never exactly that share), and with short proxy TTLs on a contract starts on them.

use serde::Serialize;

use super::window::AnswerWindow;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RuleParams {
    /// The setpoint sits this many standard deviations of the served rate's own noise below
    /// the purchase (2.3: about 1% of the time above it if the noise were normal)...
    pub headroom_sigmas: f64,
    /// ...but at least this share below it, and at most this.
    pub headroom_min: f64,
    pub headroom_max: f64,
    /// The headroom before the noise has been measured.
    pub headroom_initial: f64,
    /// Integral gain (per TTL).
    pub ki: f64,
    /// Bound on the integral trim.
    pub trim_limit: f64,
    /// Smoothing of the demand estimate when it rises, seconds (fast: more demand is a risk).
    pub demand_tau_s: f64,
    /// ...and when it falls, in TTLs (slow: resolver-size noise is not chased).
    pub demand_fall_ttls: f64,
    /// Going down, the share of a TTL after which the cache should hold the new target.
    pub down_horizon: f64,
    /// A demand estimate this many standard deviations of the noise away from the smoothed one
    /// is a step (see the module's comment).
    pub step_sigmas: f64,
    /// ...and at least this relative change: a small buyer's few large resolvers move its
    /// estimate by tens of percent as their answers come and go, and that is noise.
    pub step_min: f64,
    /// The shortest TTL proxy answers get; 0 (the default): always the customer's.
    pub proxy_ttl_min_s: u32,
    /// The queries a short proxy TTL may cost, as a multiple of those at the customer's TTL.
    pub max_query_factor: f64,
    /// Served over allowed from which proxy answers get the short TTL, for as long as the
    /// contract lasts (switching back and forth made served swing in the simulation).
    pub short_ttl_at: f64,
}

impl Default for RuleParams {
    fn default() -> Self {
        Self {
            headroom_sigmas: 2.3,
            headroom_min: 0.01,
            headroom_max: 0.3,
            headroom_initial: 0.05,
            ki: 0.5,
            trim_limit: 0.3,
            demand_tau_s: 2.0,
            demand_fall_ttls: 1.0,
            down_horizon: 0.5,
            step_sigmas: 4.0,
            step_min: 0.5,
            proxy_ttl_min_s: 0,
            max_query_factor: 3.0,
            short_ttl_at: 0.8,
        }
    }
}

/// One buyer's inputs for a tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BuyerInputs {
    /// Requests/s bought by contracts in force (0: none).
    pub purchased_rps: f64,
    /// The buyer's estimate of the share it wants on the proxies.
    pub estimate: f64,
    /// Requests/s the proxies served for the buyer in the last report; `None` if unknown.
    pub served_rps: Option<f64>,
    /// A manual fraction set by the operator.
    pub manual: Option<f64>,
    pub ttl_s: u32,
    /// The data plane draws per resolver (the customer's `draw = "resolver"`): a resolver that
    /// asks again gets the same side, so the fraction is the share of resolvers on the proxies
    /// whatever their answers' TTLs, and going down cannot drain faster than the target.
    pub per_resolver: bool,
}

/// What the rule keeps between ticks.
#[derive(Debug, Clone, Default)]
pub struct BuyerState {
    pub fraction: f64,
    pub trim: f64,
    pub demand_rps: Option<f64>,
    pub window: AnswerWindow,
    /// Seconds with a contract in force, without a break.
    pub active_s: f64,
    /// Variance of the instantaneous demand estimate (`served / cached share`) relative to
    /// the smoothed one: the lumpiness resolvers of different sizes give the served rate.
    /// `None` until measured.
    pub noise_var: Option<f64>,
    /// Ticks in a row whose demand estimate was a step up.
    pub steps_up: u32,
    /// Proxy answers get the short TTL (see [`proxy_ttl`]).
    pub short_ttl: bool,
    /// The TTL of the proxy answers given since the last tick; 0 before the first.
    pub proxy_ttl: u32,
    /// The proxy share of the cache the last decision aimed at (the fraction itself while proxy
    /// answers have the customer's TTL; see [`share_to_fraction`]).
    pub share: f64,
}

/// A decision and the inputs it came from (logged and exported).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Decision {
    pub fraction: f64,
    pub setpoint_rps: f64,
    /// The share below the purchase the setpoint keeps (from the served rate's noise).
    pub headroom: f64,
    pub served_rps: Option<f64>,
    pub demand_rps: Option<f64>,
    /// Proxy share of the answers still cached.
    pub cached_share: Option<f64>,
    pub trim: f64,
    /// The TTL for proxy answers from now on.
    pub proxy_ttl: u32,
    pub why: Why,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Why {
    Manual,
    NoContract,
    /// Nothing cached points at the proxies yet: the buyer's estimate.
    Estimate,
    /// Served unknown: held (never raised).
    Hold,
    Track,
}

/// One tick of the rule for one buyer. `scale` is the load-feedback factor in [0, 1]; `dt`
/// the seconds since the last tick; `now` the tick's second (answers up to it are in the window).
pub fn step(p: &RuleParams, s: &mut BuyerState, i: &BuyerInputs, scale: f64, now: i64, dt: f64) -> Decision {
    let ttl = i64::from(i.ttl_s.max(1));
    let cached = s.window.proxy_share();
    let allowed = i.purchased_rps * scale.clamp(0.0, 1.0);
    let mut d = Decision {
        fraction: s.fraction,
        setpoint_rps: 0.0,
        headroom: 0.0,
        served_rps: i.served_rps,
        demand_rps: s.demand_rps,
        cached_share: cached,
        trim: s.trim,
        proxy_ttl: i.ttl_s,
        why: Why::Track,
    };
    if let Some(m) = i.manual {
        s.fraction = m.clamp(0.0, 1.0);
        s.share = s.fraction;
        s.proxy_ttl = i.ttl_s;
        return Decision { fraction: s.fraction, why: Why::Manual, ..d };
    }
    if i.purchased_rps <= 0.0 {
        *s = BuyerState { window: std::mem::take(&mut s.window), ..Default::default() };
        return Decision { fraction: 0.0, why: Why::NoContract, ..d };
    }
    s.active_s += dt;
    let warm = s.active_s > ttl as f64;
    // The demand now, from what is served and what is cached: quick to rise, slow to fall.
    // Its scatter around the smoothed value (once the caches have turned over) is the served
    // rate's own noise, which sets the headroom.
    if let (Some(served), Some(share)) = (i.served_rps, cached)
        && share > 0.02
    {
        let inst = served / share;
        let mut jump = false;
        if let Some(prev) = s.demand_rps
            && warm
            && share > 0.05
        {
            let r = (inst / prev - 1.0).powi(2);
            // The noise never reads below what the smallest headroom stands for, so that on a
            // very smooth demand an ordinary move is not taken for a step.
            let floor = (p.headroom_min / p.headroom_sigmas).powi(2);
            let step = r > p.step_min.powi(2) && s.noise_var.is_some_and(|v| r > p.step_sigmas.powi(2) * v.max(floor));
            if step {
                s.steps_up = if inst > prev { s.steps_up + 1 } else { 0 };
                jump = s.steps_up >= 2;
            } else {
                s.steps_up = 0;
                let a = dt / (2.0 * ttl as f64 + dt);
                s.noise_var = Some(s.noise_var.map_or(r, |v| v + a * (r - v)));
            }
        }
        s.demand_rps = Some(match s.demand_rps {
            Some(_) if jump => inst,
            Some(prev) => {
                let tau = if inst > prev { p.demand_tau_s } else { p.demand_fall_ttls * ttl as f64 };
                prev + dt / (tau + dt) * (inst - prev)
            }
            None => inst,
        });
    }
    d.demand_rps = s.demand_rps;
    let headroom = s
        .noise_var
        .map_or(p.headroom_initial, |v| (p.headroom_sigmas * v.sqrt()).clamp(p.headroom_min, p.headroom_max));
    let setpoint = allowed * (1.0 - headroom);
    d.setpoint_rps = setpoint;
    d.headroom = headroom;
    let over = i.served_rps.is_some_and(|x| x > setpoint);
    // Until the caches have turned over once under the contract, what is cached says little
    // about the demand (a few resolvers, of very different sizes): the buyer's estimate,
    // unless the proxies already serve too much.
    let demand = s.demand_rps.filter(|&x| x > 0.0);
    let (Some(demand), true) = (demand, warm || over) else {
        // Per resolver, the estimate's resolvers carry an unknown share of the users (a hash
        // picks them, not their size), so with short proxy TTLs on their answers get one from
        // the start, and what they turn out to carry is corrected within it. Per query the
        // estimate's share is what the users get, on average.
        s.short_ttl |= i.per_resolver && p.proxy_ttl_min_s > 0;
        let share = i.estimate.clamp(0.0, 1.0);
        let ttl = if s.short_ttl { proxy_ttl(p, i.ttl_s, share) } else { i.ttl_s };
        let f = answer_fraction(i, share, ttl);
        s.fraction = if i.served_rps.is_none() && s.fraction > 0.0 { s.fraction.min(f) } else { f };
        s.share = share.min(s.fraction);
        s.proxy_ttl = ttl;
        return Decision { fraction: s.fraction, why: Why::Estimate, proxy_ttl: ttl, ..d };
    };
    let target = (setpoint / demand * (1.0 + s.trim)).clamp(0.0, 1.0);
    let mut f = target;
    // Going up, `f` is the share of the cache to reach; going down, the share of the new answers
    // that drains the cache to the target (both turned into the answer fraction at the end).
    let down = cached.is_some_and(|c| target < c);
    if down && !i.per_resolver {
        // Down: make the cache hold the target after part of a TTL.
        let h = ((ttl as f64) * p.down_horizon).round().max(1.0) as i64;
        let (old_p, old_n) = s.window.surviving(now, h);
        let new_n = s.window.rate() * h as f64;
        if new_n > 0.0 {
            f = ((target * (old_n as f64 + new_n) - old_p as f64) / new_n).clamp(0.0, target);
        }
    }
    let Some(served) = i.served_rps else {
        // Unknown: never up, and the TTL holds.
        let proxy_ttl = if s.proxy_ttl == 0 { i.ttl_s } else { s.proxy_ttl };
        s.share = s.share.min(f);
        s.fraction = s.fraction.min(answer_fraction(i, f, proxy_ttl));
        return Decision { fraction: s.fraction, why: Why::Hold, proxy_ttl, ..d };
    };
    // Integral trim with anti-windup: only once the cache holds what was asked (otherwise the
    // error is the TTL's lag, not a model error), and not against a saturated fraction.
    let e = if setpoint > 0.0 { (setpoint - served) / setpoint } else { -1.0 };
    let saturated = (f >= 1.0 && e > 0.0) || (f <= 0.0 && e < 0.0);
    // Per resolver the cache never holds the fraction exactly: it holds the resolvers hashed
    // below it, more or fewer than the fraction by chance, and their users more or fewer
    // again. That gap is what the trim is for, so it integrates there whenever not saturated.
    let settled = i.per_resolver || cached.is_some_and(|c| (c - s.share).abs() <= 0.1 * s.share.max(0.01));
    if settled && !saturated {
        s.trim = (s.trim + p.ki * e * dt / ttl as f64).clamp(-p.trim_limit, p.trim_limit);
    }
    let ratio = if allowed > 0.0 { served / allowed } else { 0.0 };
    s.short_ttl |= ratio >= p.short_ttl_at || s.steps_up > 0;
    let ttl = if s.short_ttl { proxy_ttl(p, i.ttl_s, f) } else { i.ttl_s };
    s.proxy_ttl = ttl;
    s.share = f;
    // Up: the answers that make that share of the resolvers hold a proxy answer. Down: the
    // share of new answers as computed (new proxy answers with a short TTL that expire before
    // the horizon only drain the cache sooner).
    s.fraction = if down { f } else { answer_fraction(i, f, ttl) };
    Decision { fraction: s.fraction, trim: s.trim, proxy_ttl: ttl, ..d }
}

/// The answer fraction that makes a share `share` of the resolvers hold a proxy answer: the
/// share itself when the data plane draws per resolver, [`share_to_fraction`] per query.
fn answer_fraction(i: &BuyerInputs, share: f64, proxy_ttl: u32) -> f64 {
    if i.per_resolver { share.clamp(0.0, 1.0) } else { share_to_fraction(share, i.ttl_s, proxy_ttl) }
}

/// The answer fraction that makes a share `share` of the resolvers hold a proxy answer, when
/// proxy answers are cached `proxy_ttl` and the others `ttl`: a resolver holds each answer for
/// its TTL, so the held share is `f·tp / (f·tp + (1 - f)·T)`; this is its inverse.
pub fn share_to_fraction(share: f64, ttl: u32, proxy_ttl: u32) -> f64 {
    let c = share.clamp(0.0, 1.0);
    let (t, tp) = (f64::from(ttl.max(1)), f64::from(proxy_ttl.max(1)));
    if c >= 1.0 { 1.0 } else { c * t / (c * t + (1.0 - c) * tp) }
}

/// The short TTL for proxy answers when a share `share` of the resolvers is to hold one: not
/// below `proxy_ttl_min_s`, nor below what keeps the queries within `max_query_factor` of those
/// at the customer's `ttl` (that share asking `ttl / short` times as often), nor above `ttl`.
pub fn proxy_ttl(p: &RuleParams, ttl: u32, share: f64) -> u32 {
    if p.proxy_ttl_min_s == 0 || ttl <= p.proxy_ttl_min_s {
        return ttl;
    }
    let q = p.max_query_factor.max(1.0);
    let f = share.clamp(0.0, 1.0);
    let bound = if f > 0.0 { (f * f64::from(ttl) / (q - 1.0 + f)).ceil() } else { 0.0 };
    f64::from(p.proxy_ttl_min_s).max(bound).min(f64::from(ttl)) as u32
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn inputs(purchased: f64, served: Option<f64>) -> BuyerInputs {
        BuyerInputs {
            purchased_rps: purchased,
            estimate: 0.3,
            served_rps: served,
            manual: None,
            ttl_s: 10,
            per_resolver: false,
        }
    }

    #[test]
    fn no_contract_is_zero_and_manual_wins() {
        let p = RuleParams::default();
        let mut s = BuyerState { fraction: 0.7, ..Default::default() };
        assert_eq!(step(&p, &mut s, &inputs(0.0, Some(5.0)), 1.0, 0, 1.0).fraction, 0.0);
        let mut i = inputs(0.0, None);
        i.manual = Some(0.9);
        assert_eq!(step(&p, &mut s, &i, 1.0, 0, 1.0).why, Why::Manual);
        assert_eq!(s.fraction, 0.9);
    }

    #[test]
    fn starts_from_the_estimate_then_tracks_the_purchase() {
        let p = RuleParams::default();
        let mut s = BuyerState::default();
        let d = step(&p, &mut s, &inputs(100.0, Some(0.0)), 1.0, 0, 1.0);
        assert_eq!((d.fraction, d.why), (0.3, Why::Estimate));
        // Within the first TTL the estimate holds while served is under the setpoint.
        s.window.push(0, 30, 70, 10, 10);
        let d = step(&p, &mut s, &inputs(100.0, Some(50.0)), 1.0, 1, 1.0);
        assert_eq!((d.fraction, d.why), (0.3, Why::Estimate));
        // The cache holds 30% proxy answers and 300 rps are served: over the purchase, so it
        // tracks at once. Demand is about 1000 rps (smoothed), so the cache should hold under
        // 10%; going down, new answers get less than that so the cache drains fast.
        let d = step(&p, &mut s, &inputs(100.0, Some(300.0)), 1.0, 2, 1.0);
        assert_eq!(d.why, Why::Track);
        assert!(d.fraction < 0.1, "{d:?}");
        assert!(d.fraction >= 0.0);
    }

    #[test]
    fn going_up_never_past_the_target_and_load_feedback_scales_it() {
        let p = RuleParams { headroom_min: 0.0, ..Default::default() };
        let fresh = || {
            let mut s = BuyerState { fraction: 0.1, active_s: 100.0, ..Default::default() };
            s.window.push(0, 10, 90, 10, 10);
            s.demand_rps = Some(1000.0);
            s
        };
        let d = step(&p, &mut fresh(), &inputs(500.0, Some(100.0)), 1.0, 1, 1.0);
        assert!((d.fraction - 0.5).abs() < 0.01, "{d:?}");
        let d = step(&p, &mut fresh(), &inputs(500.0, Some(100.0)), 0.5, 1, 1.0);
        assert!((d.fraction - 0.25).abs() < 0.01, "half the spare capacity, half the target: {d:?}");
    }

    /// A demand that triples after a noisy steady state: the estimate jumps to the new level on
    /// the second tick and the headroom stays what the noise asks for. Without the step test
    /// the step reads as noise and the headroom goes to its maximum.
    #[test]
    fn a_step_is_not_noise() {
        let run = |p: &RuleParams| {
            let mut s = BuyerState { fraction: 0.5, active_s: 100.0, ..Default::default() };
            let mut at = HashMap::new();
            for t in 0..400i64 {
                let demand = if t < 200 { 1000.0 } else { 3000.0 };
                // Deterministic noise within ±2%.
                let noise = 0.02 * ((t * 7919 % 13) as f64 / 6.0 - 1.0);
                s.window.push(t, 50, 50, 10, 10);
                let d = step(p, &mut s, &inputs(5000.0, Some(demand * 0.5 * (1.0 + noise))), 1.0, t, 1.0);
                at.insert(t, d);
            }
            at
        };
        let with = run(&RuleParams::default());
        let before = with[&199].headroom;
        assert!(before < 0.05, "{before}");
        assert!(with[&201].demand_rps.is_some_and(|d| d > 2900.0), "{:?}", with[&201]);
        for t in [205, 230, 399] {
            assert!(with[&t].headroom < 1.5 * before, "at {t}: {} against {before} before the step", with[&t].headroom);
        }
        let without = run(&RuleParams { step_sigmas: f64::INFINITY, ..Default::default() });
        assert!(without[&230].headroom > 4.0 * before, "{:?}", without[&230]);
        // A move smaller than `step_min` is noise, however far out: it widens the headroom.
        let small = run(&RuleParams { step_min: 3.0, ..Default::default() });
        assert!(small[&230].headroom > 4.0 * before, "{:?}", small[&230]);
    }

    /// The short proxy TTL: the floor, raised where the query load would pass its bound, never
    /// above the customer's TTL; off with a floor of 0. The fraction that makes a share of the
    /// resolvers hold proxy answers inverts the held share, and is the share itself at one TTL.
    #[test]
    fn short_proxy_ttl_and_the_fraction_for_a_share() {
        let p = RuleParams { proxy_ttl_min_s: 5, max_query_factor: 3.0, ..Default::default() };
        assert_eq!(proxy_ttl(&p, 30, 0.28), 5);
        // 0.9 x 30 / tp + 0.1 <= 3 needs tp >= 9.3.
        assert_eq!(proxy_ttl(&p, 30, 0.9), 10);
        assert_eq!(proxy_ttl(&p, 4, 0.5), 4, "a TTL under the floor stays");
        assert_eq!(proxy_ttl(&RuleParams::default(), 30, 0.28), 30, "off by default");
        for c in [0.0, 0.1, 0.28, 0.5, 0.9, 1.0] {
            assert!((share_to_fraction(c, 30, 30) - c).abs() < 1e-12);
            let f = share_to_fraction(c, 30, 5);
            let held = if f > 0.0 { f * 5.0 / (f * 5.0 + (1.0 - f) * 30.0) } else { 0.0 };
            assert!((held - c).abs() < 1e-9, "{c}: {f} holds {held}");
        }
    }

    /// Drawn per resolver, a resolver that asks again gets the same side: the fraction is the
    /// share to hold both ways. Per query, going up asks for more (proxy answers expire sooner)
    /// and going down for less (to drain the cache within the horizon).
    #[test]
    fn per_resolver_fractions_are_the_share_itself() {
        let p = RuleParams { headroom_min: 0.0, proxy_ttl_min_s: 5, ..Default::default() };
        // The cached proxy answers were given at the customer's TTL (before the short one).
        let run = |cached: u64, served: f64, per_resolver: bool| {
            let mut s = BuyerState { fraction: 0.1, active_s: 100.0, short_ttl: true, ..Default::default() };
            s.window.push(0, cached, 100 - cached, 30, 30);
            s.demand_rps = Some(1000.0);
            let i = BuyerInputs { ttl_s: 30, per_resolver, ..inputs(500.0, Some(served)) };
            step(&p, &mut s, &i, 1.0, 1, 1.0)
        };
        // Up: 10% cached serving 100 of 1000 rps; the target share is about half.
        let (by_query, by_resolver) = (run(10, 100.0, false), run(10, 100.0, true));
        assert!((by_resolver.fraction - 0.5).abs() < 0.02, "{by_resolver:?}");
        assert!(by_query.fraction > by_resolver.fraction + 0.2, "{by_query:?}");
        assert!(by_resolver.proxy_ttl < 30, "the short TTL still applies: {by_resolver:?}");
        // Down: 90% cached serving 900; the target is about half again.
        let (by_query, by_resolver) = (run(90, 900.0, false), run(90, 900.0, true));
        assert!((by_resolver.fraction - 0.5).abs() < 0.05, "{by_resolver:?}");
        assert!(by_query.fraction < by_resolver.fraction - 0.2, "{by_query:?}");
    }

    /// Per resolver, the hashed resolvers below the fraction are more or fewer than it by
    /// chance, so the cache's share never settles on it; the trim corrects what they carry
    /// anyway (per query it waits for the cache). And in a contract's first TTL, with short
    /// proxy TTLs on, the estimate's answers get the short TTL per resolver only.
    #[test]
    fn per_resolver_trims_an_unsettled_cache_and_starts_short() {
        let p = RuleParams { proxy_ttl_min_s: 5, ..Default::default() };
        let run = |per_resolver: bool| {
            let mut s = BuyerState { fraction: 0.22, share: 0.22, active_s: 100.0, ..Default::default() };
            s.window.push(0, 28, 72, 30, 30);
            s.demand_rps = Some(1000.0);
            let i = BuyerInputs { ttl_s: 30, per_resolver, ..inputs(300.0, Some(400.0)) };
            for t in 1..20 {
                step(&p, &mut s, &i, 1.0, t, 1.0);
            }
            s.trim
        };
        assert!(run(true) < -0.05, "{}", run(true));
        assert_eq!(run(false), 0.0, "per query the trim waits for the cache");
        let first = |per_resolver: bool| {
            let mut s = BuyerState::default();
            let i = BuyerInputs { ttl_s: 30, per_resolver, ..inputs(300.0, Some(0.0)) };
            step(&p, &mut s, &i, 1.0, 0, 1.0)
        };
        let (by_resolver, by_query) = (first(true), first(false));
        assert_eq!((by_resolver.why, by_query.why), (Why::Estimate, Why::Estimate));
        assert_eq!((by_resolver.proxy_ttl, by_query.proxy_ttl), (5, 30), "{by_resolver:?} {by_query:?}");
        assert_eq!(by_resolver.fraction, 0.3, "the estimate is the share of resolvers");
    }

    #[test]
    fn unknown_served_holds_and_does_not_wind_up() {
        let p = RuleParams::default();
        let mut s = BuyerState { fraction: 0.2, active_s: 100.0, ..Default::default() };
        s.window.push(0, 20, 80, 10, 10);
        s.demand_rps = Some(1000.0);
        for t in 1..50 {
            let d = step(&p, &mut s, &inputs(900.0, None), 1.0, t, 1.0);
            assert_eq!(d.why, Why::Hold);
            assert!(d.fraction <= 0.2 + 1e-12);
        }
        assert_eq!(s.trim, 0.0);
    }

    #[test]
    fn trim_corrects_a_biased_model_and_stops_at_saturation() {
        let p = RuleParams::default();
        let mut s = BuyerState { fraction: 0.5, active_s: 100.0, ..Default::default() };
        s.window.push(0, 50, 50, 10, 10);
        s.demand_rps = Some(1000.0);
        // The cache holds what was asked but served stays below the setpoint: the model is
        // off, the trim grows, bounded.
        for _ in 1..200 {
            step(&p, &mut s, &inputs(200.0, Some(100.0)), 1.0, 1, 1.0);
            s.fraction = 0.5;
        }
        assert!(s.trim > 0.0 && s.trim <= p.trim_limit, "{}", s.trim);
        // While the cache lags the command, no integration.
        let mut lag = BuyerState { fraction: 0.9, active_s: 100.0, ..Default::default() };
        lag.window.push(0, 10, 90, 10, 10);
        lag.demand_rps = Some(1000.0);
        step(&p, &mut lag, &inputs(900.0, Some(100.0)), 1.0, 1, 1.0);
        assert_eq!(lag.trim, 0.0);
    }
}
