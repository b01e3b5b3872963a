//! `cargo xtask`: set-up, tests, demo, benchmarks and deployment for Spillway.
//!
//! Every command that builds or runs Spillway runs `setup` first, so each is one command on a
//! fresh machine.

mod bench;
mod deploy;
mod fuzz;
mod package;
mod progress;
mod setup;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "Spillway's build, test, demo, bench and deploy tasks")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what a fresh machine lacks: apt packages, nightly rust-src, bpf-linker.
    Setup,
    /// Every test, the privileged network-namespace ones included (needs root).
    Test,
    /// Build, start Spillway in two private namespaces, send real queries, explain the answers.
    Demo {
        /// A cluster instead: 3 etcd members, PostgreSQL, 2 control replicas and 3 edges with XDP.
        #[arg(long)]
        cluster: bool,
    },
    /// Benchmarks (never part of `test`); results in target/bench/.
    Bench,
    /// The controller's simulation, full-size scenarios: target/sim/report.json and PNG plots.
    Sim {
        /// The small scenarios (those `test` asserts) instead.
        #[arg(long)]
        small: bool,
    },
    /// The fuzz targets (cargo-fuzz, libFuzzer): the userspace server over UDP and TCP, and the
    /// config parser; then 1 000 000 random and mutated frames through the XDP program.
    /// Writes target/fuzz/results.json.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// One target only (answer_udp, answer_tcp, config, xdp_packets).
        #[arg(long)]
        target: Option<String>,
    },
    /// A Debian package: target/debian/spillway_<version>_amd64.deb.
    Package(package::PackageArgs),
    /// Install the package on edge hosts over ssh, one after the other, and restart hitlessly;
    /// roll back a host whose new daemon does not become ready, and stop there.
    Deploy(deploy::DeployArgs),
}

fn main() -> Result<()> {
    let root = workspace_root();
    match Cli::parse().command {
        Task::Setup => {
            setup::run()?;
            setup::schemathesis(&root).map(drop)
        }
        Task::Test => {
            setup::run()?;
            test(&root)
        }
        Task::Demo { cluster } => {
            setup::run()?;
            require_root("the demo creates network namespaces and attaches XDP")?;
            cargo(&root, &["build", "-p", "spillway"])?;
            let bin = if cluster { "spillway-cluster-demo" } else { "spillway-demo" };
            cargo(&root, &["run", "-q", "-p", "spillway-tests", "--bin", bin])
        }
        Task::Bench => {
            setup::run()?;
            setup::apt_packages(setup::BENCH_PACKAGES)?;
            require_root("benchmarks load XDP programs")?;
            let mut p = progress::Progress::new("bench", 9);
            // The end-to-end bench runs the release binary.
            p.step("building the release binary");
            cargo(&root, &["build", "--release", "-q", "-p", "spillway"])?;
            for bin in ["xdp-microbench", "market-bench", "cluster-bench"] {
                p.step(bin);
                cargo(&root, &["run", "--release", "-q", "-p", "spillway-tests", "--bin", bin])?;
            }
            p.step("the userspace server's criterion benchmark");
            cargo(&root, &["bench", "-q", "-p", "spillway", "--bench", "userspace"])?;
            bench::record_criterion(&root)?;
            p.step("dns-bench: Spillway, Knot DNS and NSD under dnsperf and kxdpgun");
            cargo(&root, &["run", "--release", "-q", "-p", "spillway-tests", "--bin", "dns-bench"])?;
            // The userspace server's latency with the market idle and busy, in one run; then
            // again with a CPU kept for DNS, at a rate one CPU carries with the generator.
            let market_load =
                ["run", "--release", "-q", "-p", "spillway-tests", "--bin", "dns-bench", "--", "--market-load"];
            p.step("dns-bench --market-load");
            cargo(&root, &market_load)?;
            p.step("dns-bench --market-load --reserve-dns-cpu");
            cargo(&root, &[&market_load[..], &["--reserve-dns-cpu", "--qps", "10000"]].concat())?;
            p.step("results in target/bench/");
            p.finish();
            Ok(())
        }
        Task::Sim { small } => {
            setup::run()?;
            let mut args = vec!["run", "--release", "-q", "-p", "spillway-tests", "--bin", "spillway-sim"];
            if small {
                args.extend(["--", "--small"]);
            }
            cargo(&root, &args)
        }
        Task::Fuzz { seconds, target } => {
            setup::run()?;
            setup::cargo_fuzz()?;
            let targets: Vec<&str> = match &target {
                Some(t) => vec![t.as_str()],
                None => fuzz::TARGETS.to_vec(),
            };
            let done = fuzz::run(&root, &targets, fuzz::Budget::Seconds(seconds))?;
            let total: u64 = done.iter().map(|(_, n)| n).sum();
            let json = serde_json::json!({
                "seconds_per_target": seconds,
                "targets": done.iter().map(|(t, n)| serde_json::json!({"target": t, "executions": n})).collect::<Vec<_>>(),
                "total_executions": total,
            });
            let out = root.join("target/fuzz");
            std::fs::create_dir_all(&out)?;
            std::fs::write(out.join("results.json"), serde_json::to_string_pretty(&json)?)?;
            eprintln!("fuzz: {total} executions in all, no crash (target/fuzz/results.json)");
            Ok(())
        }
        Task::Package(args) => {
            let deb = package::run(&root, &args)?;
            // Lintian, where installed (cargo xtask setup installs it): its verdict, in full.
            if Command::new("lintian").arg("--version").output().is_ok() {
                let status = Command::new("lintian").arg(&deb).status()?;
                if !status.success() {
                    bail!("lintian found errors in {}", deb.display());
                }
            }
            Ok(())
        }
        Task::Deploy(args) => deploy::run(&root, &args),
    }
}

fn test(root: &Path) -> Result<()> {
    require_root("the integration tests attach XDP programs in network namespaces")?;
    cargo(root, &["fmt", "--all", "--check"])?;
    cargo(root, &["clippy", "--all-targets", "--", "-D", "warnings"])?;
    // The end-to-end tests run the real binary; the restart test also upgrades to one whose
    // XDP program and map layout differ (built first: the plain build then takes its place).
    cargo(root, &["build", "-p", "spillway", "--features", "upgrade-test"])?;
    let bin = root.join("target/debug");
    std::fs::copy(bin.join("spillway"), bin.join("spillway-upgrade")).context("copying the upgrade binary")?;
    cargo(root, &["build", "-p", "spillway"])?;
    let schemathesis = setup::schemathesis(root)?;
    let status = Command::new(env!("CARGO"))
        .current_dir(root)
        .args(["test"])
        // Privileged tests fail instead of skipping.
        .env("SPILLWAY_REQUIRE_PRIVILEGED", "1")
        .env("SPILLWAY_SCHEMATHESIS", schemathesis)
        .status()
        .context("cargo test")?;
    if !status.success() {
        bail!("tests failed");
    }
    // The store's and the market's tests again, on PostgreSQL (a server of their own).
    let cargo_bin = env!("CARGO");
    cargo(
        root,
        &[
            "run",
            "-q",
            "-p",
            "spillway-tests",
            "--bin",
            "with-postgres",
            "--",
            cargo_bin,
            "test",
            "-p",
            "spillway",
            "--lib",
            "--",
            "store::",
            "market::",
        ],
    )
    .context("the store's tests on PostgreSQL")?;
    // Each fuzz target for a short, fixed count (the long runs are `cargo xtask fuzz`).
    setup::cargo_fuzz()?;
    // (The XDP frames ran in `cargo test` above, 100 000 of them.)
    let libfuzzer: Vec<&str> = fuzz::TARGETS.iter().copied().filter(|t| *t != fuzz::XDP_PACKETS).collect();
    fuzz::run(root, &libfuzzer, fuzz::Budget::Runs(20_000))?;
    Ok(())
}

fn require_root(why: &str) -> Result<()> {
    let uid = Command::new("id").arg("-u").output().context("id -u")?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        bail!("run as root: {why}");
    }
    Ok(())
}

pub fn cargo(root: &Path, args: &[&str]) -> Result<()> {
    let status = Command::new(env!("CARGO"))
        .current_dir(root)
        .args(args)
        .status()
        .with_context(|| format!("cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed", args.join(" "));
    }
    Ok(())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}
