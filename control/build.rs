//! Builds the XDP program (`dns-ebpf`) for the BPF target with aya-build; the loader embeds the
//! resulting object from OUT_DIR.
use std::path::PathBuf;

use anyhow::Context as _;
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?;
    let root_dir = PathBuf::from(&manifest_dir).join("..").join("dns-ebpf");
    let root_dir = root_dir.to_str().context("dns-ebpf path is not UTF-8")?;
    // aya-build watches dns-ebpf itself; the kernel program also compiles `common`.
    println!("cargo:rerun-if-changed={manifest_dir}/../common/src");
    // The upgrade test's binary carries a program that differs (see dns-ebpf's `variant`).
    let features: &[&str] = if std::env::var_os("CARGO_FEATURE_UPGRADE_TEST").is_some() { &["variant"] } else { &[] };
    aya_build::build_ebpf(
        [Package { name: "dns-ebpf", root_dir, features, ..Default::default() }],
        Toolchain::default(),
    )
}
