//! `cargo xtask setup`: idempotent installation of what a fresh machine of this kind lacks.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};

/// Debian packages: LLVM 22 for bpf-linker, the DNS clients and tools the tests and demo use,
/// the proxy (HAProxy) and origin (nginx) the proxy tests run, Prometheus (and promtool) for
/// the alerting rules, sshd and lintian for the package and deploy test, chromium for the
/// dashboard's test, and a font for the simulation's plots.
const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "iproute2",
    "dnsutils",
    "knot-dnsutils",
    "knot",
    "bpftool",
    "haproxy",
    "nginx-light",
    "prometheus",
    "openssh-server",
    "lintian",
    "chromium",
    // Clusters: etcd (its client crate's build needs protoc, and the well-known .proto files
    // protoc imports, which only libprotobuf-dev ships) and PostgreSQL.
    "etcd-server",
    "etcd-client",
    "protobuf-compiler",
    "libprotobuf-dev",
    "postgresql",
    // The TLS tests' certificates (a throwaway CA and its leaves).
    "openssl",
    "fonts-dejavu-core",
];
/// What only `cargo xtask bench` needs: the load generator and a second reference server.
pub const BENCH_PACKAGES: &[&str] = &["dnsperf", "nsd", "ethtool"];
/// bpf-linker must link the LLVM that matches nightly's (22).
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

pub fn run() -> Result<()> {
    let mut p = crate::progress::Progress::new("setup", 3);
    p.step("apt packages");
    apt_packages(APT_PACKAGES)?;
    p.step("nightly rust-src");
    nightly()?;
    p.step("bpf-linker (built against LLVM 22 when missing: a few minutes)");
    bpf_linker()?;
    p.finish();
    Ok(())
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

/// Install those of `packages` that are missing (apt-get update only then).
pub fn apt_packages(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("setup: installing {}", missing.join(" "));
    run_cmd(Command::new("apt-get").args(["update", "-qq"]))?;
    run_cmd(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn nightly() -> Result<()> {
    let list = Command::new("rustup").args(["toolchain", "list"]).output().context("rustup")?;
    if !String::from_utf8_lossy(&list.stdout).lines().any(|l| l.starts_with("nightly")) {
        eprintln!("setup: installing the nightly toolchain (the eBPF build needs -Z build-std)");
        run_cmd(Command::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]))?;
    }
    let comps = Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", "nightly"])
        .output()
        .context("rustup component list")?;
    if !String::from_utf8_lossy(&comps.stdout).lines().any(|l| l.starts_with("rust-src")) {
        eprintln!("setup: adding rust-src to nightly");
        run_cmd(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))?;
    }
    Ok(())
}

/// True if `program args...` runs and succeeds (the tool is there).
fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn bpf_linker() -> Result<()> {
    if runs("bpf-linker", &["--version"]) {
        return Ok(());
    }
    eprintln!("setup: building bpf-linker against LLVM 22 (about a minute)");
    run_cmd(
        Command::new(env!("CARGO"))
            .args(["install", "bpf-linker", "--no-default-features", "--features", "llvm-22"])
            .env("LLVM_PREFIX", LLVM_PREFIX),
    )
}

/// cargo-fuzz, for the fuzz targets (they build with nightly).
pub fn cargo_fuzz() -> Result<()> {
    if runs("cargo", &["+nightly", "fuzz", "--version"]) {
        return Ok(());
    }
    eprintln!("setup: installing cargo-fuzz (about two minutes)");
    run_cmd(Command::new(env!("CARGO")).args(["install", "cargo-fuzz", "--locked"]))
}

/// The schemathesis release the API test is pinned to (its checks change between releases).
pub const SCHEMATHESIS_VERSION: &str = "4.32.5";

/// schemathesis (PyPI), in a virtualenv of its own under target/tools (nothing is installed
/// for the whole machine); returns its executable.
pub fn schemathesis(root: &Path) -> Result<PathBuf> {
    let venv = root.join("target/tools/schemathesis");
    let exe = venv.join("bin/schemathesis");
    let version = Command::new(&exe).arg("--version").output();
    if version.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(SCHEMATHESIS_VERSION)) {
        return Ok(exe);
    }
    eprintln!("setup: installing schemathesis {SCHEMATHESIS_VERSION} in {}", venv.display());
    run_cmd(Command::new("python3").args(["-m", "venv", "--clear"]).arg(&venv))?;
    run_cmd(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .arg(format!("schemathesis=={SCHEMATHESIS_VERSION}")),
    )?;
    Ok(exe)
}

fn run_cmd(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("{cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}
