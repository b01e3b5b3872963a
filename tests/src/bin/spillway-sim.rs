//! `cargo xtask sim`: run every scenario of the controller's simulation (full size; `--small`
//! for the small ones), write target/sim/report.json and one PNG per scenario, and time a
//! controller tick for 10 000 buyers (thread CPU time).

use std::time::Duration;

use serde_json::json;
use spillway::controller::{BuyerInputs, BuyerTick, Controller, ControllerParams, NetworkInputs};
use spillway_tests::sim::{
    metrics, plot, run,
    scenarios::{self, Size},
};

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU time of one controller tick over 10 000 buyers with full answer windows (median of 20).
fn tick_cost() -> Duration {
    let ids: Vec<String> = (0..10_000).map(|i| format!("b{i}")).collect();
    let mut c = Controller::new(ControllerParams::default());
    let mut samples = Vec::new();
    for t in 0..60 {
        let ticks: Vec<BuyerTick<'_>> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| BuyerTick {
                id,
                proxy_answers: (i % 7) as u64,
                other_answers: (i % 13) as u64,
                inputs: BuyerInputs {
                    purchased_rps: 1000.0,
                    estimate: 0.3,
                    served_rps: Some(900.0 + (i % 100) as f64),
                    manual: None,
                    ttl_s: 30,
                    per_resolver: false,
                },
            })
            .collect();
        let before = thread_cpu();
        let out = c.tick(t, NetworkInputs { spare_rps: Some(1e9) }, &ticks);
        let spent = thread_cpu() - before;
        assert_eq!(out.len(), ids.len());
        if t >= 40 {
            samples.push(spent);
        }
    }
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let size = if std::env::args().any(|a| a == "--small") { Size::Small } else { Size::Full };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/sim");
    std::fs::create_dir_all(&dir).expect("target/sim");
    let mut out = Vec::new();
    let all = scenarios::all(size);
    let n = all.len();
    for (i, sc) in all.into_iter().enumerate() {
        eprintln!("[sim {}/{n}] {} ...", i + 1, sc.name);
        let started = std::time::Instant::now();
        let tr = run(&sc);
        let f = metrics::figures(&sc, &tr);
        let png = dir.join(format!("{}.png", sc.name));
        if let Err(e) = plot::draw(&png, &sc.name, &tr) {
            eprintln!("{}: plot failed: {e}", sc.name);
        }
        println!(
            "{:<16} ttl {:>3}  max overshoot {:>5.1}%  p99 {:>5.1}% (worst buyer {:>5.1}% / {:>5.1}%)  utilization {:>5.1}% (of allowed {:>5.1}%)  settle {}  after the step {}  queries x{:.2}  writes {}  ({:.1} s)",
            sc.name,
            sc.ttl_s,
            f.max_overshoot_pct,
            f.p99_overshoot_pct,
            f.worst_buyer_max_overshoot_pct,
            f.worst_buyer_p99_overshoot_pct,
            f.utilization_pct,
            f.utilization_of_allowed_pct,
            f.settle_s.map_or("-".to_owned(), |s| format!("{s:.0} s")),
            f.recovered_utilization_pct.map_or("-".to_owned(), |u| format!(
                "{u:.1}% from 3 TTLs (per TTL: {})",
                f.utilization_by_ttl_after_step_pct.iter().map(|u| format!("{u:.0}%")).collect::<Vec<_>>().join(" ")
            )),
            f.query_factor,
            tr.writes,
            started.elapsed().as_secs_f64()
        );
        out.push(json!({
            "scenario": sc.name,
            "seed": sc.seed,
            "ttl_s": sc.ttl_s,
            "duration_s": sc.duration_s,
            "buyers": sc.buyers.len(),
            "resolvers_per_buyer": sc.buyers[0].resolvers,
            "largest_resolver_share": tr.largest_resolver_share,
            "max_overshoot_pct": f.max_overshoot_pct,
            "p99_overshoot_pct": f.p99_overshoot_pct,
            "worst_buyer_max_overshoot_pct": f.worst_buyer_max_overshoot_pct,
            "worst_buyer_p99_overshoot_pct": f.worst_buyer_p99_overshoot_pct,
            "max_over_allowed_pct": f.max_over_allowed_pct,
            "utilization_pct": f.utilization_pct,
            "utilization_of_allowed_pct": f.utilization_of_allowed_pct,
            "settle_s": f.settle_s,
            "recovered_utilization_pct": f.recovered_utilization_pct,
            "utilization_by_ttl_after_step_pct": f.utilization_by_ttl_after_step_pct,
            "query_factor": f.query_factor,
            "dataplane_writes": tr.writes,
            "plot": png.file_name().map(|n| n.to_string_lossy().into_owned()),
        }));
    }
    let tick = tick_cost();
    println!("controller tick, 10 000 buyers: {:.2} ms CPU (median of 20)", tick.as_secs_f64() * 1e3);
    let report = json!({
        "size": if size == Size::Full { "full" } else { "small" },
        "scenarios": out,
        "controller_tick_ms_10000_buyers": tick.as_secs_f64() * 1e3,
        "command": if size == Size::Full { "cargo xtask sim" } else { "cargo xtask sim --small" },
    });
    let path = dir.join("report.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report).expect("json")).expect("write report");
    println!("wrote {}", path.display());
}
