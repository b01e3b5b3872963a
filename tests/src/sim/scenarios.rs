//! The scenarios: full size for `cargo xtask sim`, small for `cargo xtask test`.

use super::{BuyerSpec, Scenario, model::Proxy};

/// Size of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    Full,
    Small,
}

fn proxies(n: usize, own_base: f64) -> Vec<Proxy> {
    (0..n).map(|_| Proxy { capacity_rps: 25_000.0, own_base_rps: own_base, diurnal: 0.1, day_s: 600.0 }).collect()
}

/// One buyer wanting `demand` rps and buying `purchased`, from t = 30 to 30 s before the end;
/// its estimate is 80% of the share it would need (a careful buyer).
fn buyer(resolvers: usize, demand: f64, purchased: f64, duration: i64) -> BuyerSpec {
    BuyerSpec {
        resolvers,
        demand_rps: demand,
        purchased_rps: purchased,
        estimate: 0.8 * purchased / demand,
        start: 30,
        end: duration - 30,
    }
}

fn base(name: &str, size: Size, ttl: u32) -> Scenario {
    let duration = match (size, ttl) {
        (_, t) if t >= 300 => 2400,
        (Size::Full, _) => 900,
        (Size::Small, _) => 600,
    };
    // A 20 000 rps site hears from tens of thousands of resolvers.
    let resolvers = if size == Size::Full { 50_000 } else { 20_000 };
    Scenario {
        name: name.to_owned(),
        seed: 42,
        duration_s: duration,
        ttl_s: ttl,
        zipf_s: 1.2,
        max_resolver_size: 5000,
        buyers: vec![buyer(resolvers, 20_000.0, 6_000.0, duration)],
        proxies: proxies(4, 12_000.0),
        target_load: 0.9,
        demand_steps: vec![],
        proxy_failures: vec![],
        own_surges: vec![],
        noise: 0.02,
        step_at: None,
        proxy_ttl_min_s: 0,
        redraw_s: None,
    }
}

pub fn all(size: Size) -> Vec<Scenario> {
    let mut out = Vec::new();
    out.push(base("steady_ttl30", size, 30));

    let mut s = base("demand_step_x3", size, 30);
    let at = s.duration_s / 2;
    s.demand_steps = vec![(at, 3.0)];
    s.step_at = Some(at);
    out.push(s);

    // Sold close to the spare capacity, so losing a proxy leaves less than was sold.
    let mut s = base("proxy_fails", size, 30);
    // At 300 s the own traffic is at its mean (the compressed day is 600 s), so the lost
    // proxy leaves 31 500 rps of spare for 36 000 sold.
    let at = 300;
    let d = s.duration_s;
    s.buyers = vec![buyer(s.buyers[0].resolvers, 60_000.0, 36_000.0, d)];
    s.proxy_failures = vec![(at, 0)];
    s.step_at = Some(at);
    out.push(s);

    let mut s = base("own_load_surge", size, 30);
    let at = s.duration_s / 2;
    s.buyers = vec![buyer(s.buyers[0].resolvers, 60_000.0, 30_000.0, d)];
    s.own_surges = vec![(at, 1.5)];
    s.step_at = Some(at);
    out.push(s);

    let mut s = base("buyers_1000", size, 30);
    let n = if size == Size::Full { 1000 } else { 100 };
    s.name = format!("buyers_{n}");
    s.proxies = proxies(if size == Size::Full { 40 } else { 4 }, 8_000.0);
    s.buyers = (0..n)
        .map(|i| {
            // Spread demand and shares deterministically: 200..2000 rps, buying 20..60% of it.
            let demand = 200.0 + (i * 7919 % 1800) as f64;
            let share = 0.2 + (i * 104_729 % 400) as f64 / 1000.0;
            // Two resolvers per rps of demand.
            buyer((demand * 2.0) as usize, demand, demand * share, s.duration_s)
        })
        .collect();
    if size == Size::Small {
        // 100 buyers x ~1100 rps x 40% fits 4 proxies' spare.
        s.proxies = proxies(4, 8_000.0);
    }
    out.push(s);

    out.push(base("steady_ttl5", size, 5));
    out.push(base("steady_ttl300", size, 300));
    // The TTL 30 scenarios again with short proxy TTLs (controller.proxy_ttl_min_s = 5).
    let short: Vec<Scenario> = out
        .iter()
        .filter(|s| s.ttl_s == 30)
        .map(|s| Scenario { name: format!("{}_short_ttl", s.name), proxy_ttl_min_s: 5, ..s.clone() })
        .collect();
    out.extend(short);
    // Drawn per resolver (`draw = "resolver"`), re-drawn hourly (the default
    // `server.resolver_redraw_s`); the many buyers also re-drawn every TTL, which is worse.
    let mut per_resolver: Vec<Scenario> = out
        .iter()
        .filter(|s| s.ttl_s == 30)
        .map(|s| Scenario { name: format!("{}_resolver", s.name), redraw_s: Some(3600), ..s.clone() })
        .collect();
    let every_ttl: Vec<Scenario> = out
        .iter()
        .filter(|s| s.name.starts_with("buyers_"))
        .map(|s| Scenario { name: format!("{}_resolver_redraw_ttl", s.name), redraw_s: Some(30), ..s.clone() })
        .collect();
    per_resolver.extend(every_ttl);
    out.extend(per_resolver);
    out
}
