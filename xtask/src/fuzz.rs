//! `cargo xtask fuzz`: the cargo-fuzz (libFuzzer) targets in `fuzz/`: the userspace server's
//! `Authority::answer` over UDP and over TCP framing, and the config parser. `test` runs each
//! for a fixed count; `fuzz` for a time, and reports the executions.

use std::{path::Path, process::Command};

use anyhow::{Context, Result, bail};

pub const TARGETS: &[&str] = &["answer_udp", "answer_tcp", "config", XDP_PACKETS];

/// Not a libFuzzer target: the XDP program under BPF_PROG_TEST_RUN with random and mutated
/// frames (`tests/tests/xdp_random.rs`, which `cargo test` runs for 100 000).
pub const XDP_PACKETS: &str = "xdp_packets";
/// How many frames `cargo xtask fuzz` sends it, whatever `--seconds`.
pub const XDP_PACKET_COUNT: u64 = 1_000_000;

/// How long each target runs.
#[derive(Debug, Clone, Copy)]
pub enum Budget {
    /// A fixed number of executions (the test's short, repeatable run).
    Runs(u64),
    Seconds(u64),
}

/// Run `targets`; returns (target, executions) for each. A crash fails, with the input that
/// caused it left in fuzz/artifacts/<target>/ (make it a regression test).
pub fn run(root: &Path, targets: &[&str], budget: Budget) -> Result<Vec<(String, u64)>> {
    let dir = root.join("fuzz");
    let mut done = Vec::new();
    let mut p = crate::progress::Progress::new("fuzz", targets.len() as u64);
    for t in targets {
        if !TARGETS.contains(t) {
            bail!("no fuzz target {t:?} (there are {TARGETS:?})");
        }
        p.step(t);
        if *t == XDP_PACKETS {
            done.push((t.to_string(), xdp_packets(root, XDP_PACKET_COUNT)?));
            continue;
        }
        let corpus = dir.join("corpus").join(t);
        std::fs::create_dir_all(&corpus).context("fuzz corpus directory")?;
        let limit = match budget {
            Budget::Runs(n) => format!("-runs={n}"),
            Budget::Seconds(s) => format!("-max_total_time={s}"),
        };
        let out = Command::new("cargo")
            .current_dir(&dir)
            .args(["+nightly", "fuzz", "run", t])
            .arg(&corpus)
            .arg(dir.join("seeds").join(t))
            .args(["--", "-seed=1", "-print_final_stats=1", &limit])
            .output()
            .context("cargo fuzz run (cargo install cargo-fuzz)")?;
        let log = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            bail!("fuzz target {t} failed:\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }
        let runs = log
            .lines()
            .find_map(|l| l.strip_prefix("stat::number_of_executed_units:").map(str::trim))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if runs == 0 {
            bail!("fuzz target {t}: no executions reported:\n{log}");
        }
        eprintln!("fuzz: {t}: {runs} executions, no crash");
        done.push((t.to_string(), runs));
    }
    p.finish();
    Ok(done)
}

/// The XDP program on `count` random and mutated frames (needs root: BPF_PROG_TEST_RUN). Any
/// frame that draws XDP_ABORTED, XDP_DROP or a malformed reply fails it, with the seed.
fn xdp_packets(root: &Path, count: u64) -> Result<u64> {
    let status = Command::new(env!("CARGO"))
        .current_dir(root)
        .args(["test", "--release", "-p", "spillway-tests", "--test", "xdp_random", "random_and_mutated_packets"])
        .args(["--", "--exact", "--nocapture"])
        .env("SPILLWAY_XDP_FUZZ_PACKETS", count.to_string())
        .env("SPILLWAY_REQUIRE_PRIVILEGED", "1")
        .status()
        .context("cargo test xdp_random")?;
    if !status.success() {
        bail!("fuzz target {XDP_PACKETS} failed (its output above has the seed to replay)");
    }
    eprintln!("fuzz: {XDP_PACKETS}: {count} frames, none aborted, dropped or malformed");
    Ok(count)
}
