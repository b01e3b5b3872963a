//! `cargo xtask package`: a Debian package of the `spillway` binary, built with `dpkg-deb`
//! from `contrib/debian/` (the systemd unit, the example config, the maintainer scripts and
//! the copyright): `target/debian/spillway_<version>_amd64.deb`. Lintian is run on it when
//! installed.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};
use clap::Args;

#[derive(Debug, Args)]
pub struct PackageArgs {
    /// The binary to package (default: a release build, made first).
    #[arg(long)]
    pub binary: Option<PathBuf>,
    /// The package version (default: the spillway crate's).
    #[arg(long)]
    pub version: Option<String>,
    /// Where the .deb goes (default: target/debian/).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// dpkg-deb's compression: xz (Debian's default, smallest) or gzip (three times faster).
    #[arg(long, default_value = "xz", value_parser = ["xz", "gzip"])]
    pub compression: String,
}

/// The crate's version, as the package's default.
fn crate_version(root: &Path) -> Result<String> {
    let text = std::fs::read_to_string(root.join("control/Cargo.toml"))?;
    let t: toml::Table = toml::from_str(&text)?;
    t.get("package").and_then(|p| p.get("version")).and_then(|v| v.as_str()).map(str::to_owned).context("no version")
}

/// A Debian version: digits first, then what policy allows.
fn check_version(v: &str) -> Result<()> {
    let ok = v.starts_with(|c: char| c.is_ascii_digit())
        && v.chars().all(|c| c.is_ascii_alphanumeric() || ".+~-".contains(c));
    if !ok {
        bail!("{v:?} is not a Debian version (a digit first, then letters, digits and . + ~ -)");
    }
    Ok(())
}

fn control(version: &str, installed_kib: u64) -> String {
    format!(
        "Package: spillway\nVersion: {version}\nArchitecture: amd64\nMaintainer: Spillway <spillway@example.org>\n\
         Installed-Size: {installed_kib}\nDepends: libc6 (>= 2.34)\nRecommends: fonts-dejavu-core\nSection: net\nPriority: optional\n\
         Description: authoritative DNS in XDP and a market for a CDN's spare capacity\n \
         Spillway sells a proxy network's unused capacity to web sites for periods of\n \
         time, through auctions and a continuous market, and steers the buyers' traffic\n \
         onto the proxies by DNS answered in XDP, keeping each buyer within what it\n \
         bought and billing what it used.\n"
    )
}

fn copy(from: &Path, to: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to.parent().expect("a parent"))?;
    std::fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Build the package; returns its path.
pub fn run(root: &Path, args: &PackageArgs) -> Result<PathBuf> {
    let version = match &args.version {
        Some(v) => v.clone(),
        None => crate_version(root)?,
    };
    check_version(&version)?;
    let binary = match &args.binary {
        Some(b) => b.clone(),
        None => {
            crate::cargo(root, &["build", "--release", "-p", "spillway"])?;
            root.join("target/release/spillway")
        }
    };
    let out_dir = args.out_dir.clone().unwrap_or_else(|| root.join("target/debian"));
    let stage = out_dir.join(format!("spillway_{version}"));
    if stage.exists() {
        std::fs::remove_dir_all(&stage)?;
    }
    let contrib = root.join("contrib/debian");
    copy(&binary, &stage.join("usr/bin/spillway"), 0o755)?;
    // Debian ships stripped binaries (the debug symbols belong in a -dbgsym package).
    let status = Command::new("strip")
        .args(["--strip-unneeded", "--remove-section=.comment", "--remove-section=.note"])
        .arg(stage.join("usr/bin/spillway"))
        .status()
        .context("strip")?;
    if !status.success() {
        bail!("strip failed");
    }
    copy(&contrib.join("spillway.service"), &stage.join("lib/systemd/system/spillway.service"), 0o644)?;
    copy(&contrib.join("spillway.toml"), &stage.join("etc/spillway/spillway.toml"), 0o644)?;
    copy(&contrib.join("copyright"), &stage.join("usr/share/doc/spillway/copyright"), 0o644)?;
    // A native package (no Debian revision): its changelog is changelog.gz.
    let changelog = stage.join("usr/share/doc/spillway/changelog.gz");
    let entry = format!(
        "spillway ({version}) unstable; urgency=medium\n\n  * Built by cargo xtask package.\n\n -- Spillway <spillway@example.org>  Thu, 01 Jan 2026 00:00:00 +0000\n"
    );
    let mut gz = Command::new("gzip")
        .args(["-9n", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::fs::File::create(&changelog)?)
        .spawn()?;
    gz.stdin.take().expect("stdin").write_all(entry.as_bytes())?;
    if !gz.wait()?.success() {
        bail!("gzip failed");
    }
    for script in ["postinst", "prerm", "postrm"] {
        copy(&contrib.join(script), &stage.join("DEBIAN").join(script), 0o755)?;
    }
    std::fs::write(stage.join("DEBIAN/conffiles"), "/etc/spillway/spillway.toml\n")?;
    let kib = du_kib(&stage)?;
    std::fs::write(stage.join("DEBIAN/control"), control(&version, kib))?;
    let deb = out_dir.join(format!("spillway_{version}_amd64.deb"));
    let status = Command::new("dpkg-deb")
        .args(["--root-owner-group", &format!("-Z{}", args.compression), "--build"])
        .arg(&stage)
        .arg(&deb)
        .status()
        .context("dpkg-deb")?;
    if !status.success() {
        bail!("dpkg-deb --build failed");
    }
    std::fs::remove_dir_all(&stage)?;
    eprintln!("package: {}", deb.display());
    Ok(deb)
}

/// The staged tree's size in KiB, as dpkg counts it (DEBIAN/ aside).
fn du_kib(dir: &Path) -> Result<u64> {
    fn walk(p: &Path, sum: &mut u64) -> std::io::Result<()> {
        for e in std::fs::read_dir(p)? {
            let e = e?;
            if e.file_name() == "DEBIAN" {
                continue;
            }
            let m = e.metadata()?;
            if m.is_dir() {
                walk(&e.path(), sum)?;
            } else {
                *sum += m.len().div_ceil(1024);
            }
        }
        Ok(())
    }
    let mut sum = 0;
    walk(dir, &mut sum)?;
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_checked_and_the_control_file_names_the_package() {
        assert!(check_version("0.1.0").is_ok() && check_version("1.0~rc1+test-2").is_ok());
        assert!(check_version("v1").is_err() && check_version("1 0").is_err() && check_version("").is_err());
        let c = control("0.1.0", 12345);
        assert!(c.starts_with("Package: spillway\nVersion: 0.1.0\nArchitecture: amd64\n"), "{c}");
        assert!(c.contains("Installed-Size: 12345\n") && c.ends_with(".\n"), "{c}");
    }
}
