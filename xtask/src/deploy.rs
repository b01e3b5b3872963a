//! `cargo xtask deploy --host HOST [--host HOST2 ...] --config FILE`: the Debian package
//! (`cargo xtask package`, or `--package`) onto each host over ssh, one after the other,
//! stopping at the first that fails. On a host: the package is installed (dpkg, or unpacked
//! into `--prefix`), the config checked there with the new binary, the daemon restarted
//! (systemd where it runs; else started beside the running one, which hands its sockets and
//! XDP over and exits: a restart without a lost query), and `/readyz` waited for. When the new
//! one does not become ready, the last good package and config go back, and the daemon that
//! ran before keeps serving (a takeover that fails hands back) or is started again.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};
use clap::Args;

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// An edge host (anything ssh accepts); repeat for a rolling deploy, in order.
    #[arg(long = "host", required = true)]
    pub hosts: Vec<String>,
    /// The config to install as /etc/spillway/spillway.toml.
    #[arg(long)]
    pub config: PathBuf,
    /// Remote user (root rights: dpkg, XDP).
    #[arg(long, default_value = "root")]
    pub user: String,
    /// The ssh port.
    #[arg(long)]
    pub port: Option<u16>,
    /// The ssh key.
    #[arg(long)]
    pub identity: Option<PathBuf>,
    /// An ssh option (`-o`), repeatable, e.g. `StrictHostKeyChecking=accept-new`.
    #[arg(long = "ssh-option")]
    pub ssh_options: Vec<String>,
    /// The package to install (default: `cargo xtask package` builds one).
    #[arg(long)]
    pub package: Option<PathBuf>,
    /// Unpack the package under this directory on the host instead of `dpkg -i`, and run the
    /// daemon from there with a pid file (no systemd): for hosts whose package manager is not
    /// ours to use, and the tests.
    #[arg(long)]
    pub prefix: Option<String>,
    /// How long the new daemon has to answer /readyz.
    #[arg(long, default_value_t = 30)]
    pub ready_timeout_s: u32,
    /// Print the steps instead of running them.
    #[arg(long)]
    pub dry_run: bool,
}

/// One step of a deployment: a program and its arguments, run locally.
#[derive(Debug, Clone, PartialEq)]
pub struct Step(pub Vec<String>);

/// Where the deploy keeps its files on a host (under the prefix, if any): the incoming package
/// and config, the last good package (`current.deb`), the config before this deploy.
fn keep_dir(prefix: &str) -> String {
    format!("{prefix}/var/lib/spillway/deploy")
}

/// The script a host runs: install, check, restart, wait for ready, or roll back. `readyz` is
/// the daemon's /readyz URL as seen from the host.
pub fn host_script(prefix: &str, readyz: &str, ready_timeout_s: u32) -> String {
    let tries = ready_timeout_s * 5;
    let keep = keep_dir(prefix);
    format!(
        r#"#!/bin/sh
# Spillway's deploy on one host (written by cargo xtask deploy).
set -u
P='{prefix}'
KEEP='{keep}'
IN="$KEEP/incoming"
CONF="$P/etc/spillway/spillway.toml"
BIN="$P/usr/bin/spillway"
PIDFILE="$P/run/spillway.pid"
LOG="$P/var/log/spillway.log"
READYZ='{readyz}'
mkdir -p "$P/etc/spillway" "$P/run" "$P/var/log" "$P/var/lib/spillway"

systemd() {{ [ -z "$P" ] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; }}
install_pkg() {{
    if [ -n "$P" ]; then dpkg-deb -x "$1" "$P"; else DEBIAN_FRONTEND=noninteractive dpkg -i --force-confold "$1" >/dev/null; fi
}}
alive() {{ [ -n "$1" ] && [ "$1" != 0 ] && kill -0 "$1" 2>/dev/null; }}
# The /readyz URL of a config file's [api] listen (for the config a rollback puts back).
readyz_of() {{
    a=$(awk -F'"' '/^\[/ {{ s = ($0 == "[api]") }} s && /^[ \t]*listen[ \t]*=/ {{ print $2; exit }}' "$1")
    echo "http://$(echo "$a" | sed 's/^0\.0\.0\.0:/127.0.0.1:/; s/^\[::\]:/[::1]:/')/readyz"
}}
# Ready: /readyz answers 200, the new daemon ($1) runs and the one it replaces ($2) is gone
# (so the answer is the new one's).
ready() {{
    i=0
    while [ $i -lt {tries} ]; do
        if systemd; then
            systemctl is-active --quiet spillway && curl -fsS -m 1 "$READYZ" >/dev/null 2>&1 && return 0
        else
            alive "$1" || return 1
            if ! alive "$2" && curl -fsS -m 1 "$READYZ" >/dev/null 2>&1; then return 0; fi
        fi
        i=$((i + 1))
        sleep 0.2
    done
    return 1
}}
start() {{
    if systemd; then
        systemctl daemon-reload && systemctl enable --quiet spillway && systemctl restart spillway
        echo 0
    else
        nohup "$BIN" run --config "$CONF" </dev/null >>"$LOG" 2>&1 &
        echo $!
    fi
}}
rollback() {{
    [ -f "$KEEP/current.deb" ] && install_pkg "$KEEP/current.deb"
    if [ -f "$KEEP/previous.toml" ]; then
        cp "$KEEP/previous.toml" "$CONF"
        READYZ=$(readyz_of "$CONF")
    else
        rm -f "$CONF"
    fi
    if systemd; then
        [ -f "$KEEP/current.deb" ] && systemctl restart spillway
    elif alive "$OLD"; then
        if ready "$OLD" 0; then echo "deploy: rolled back; the previous daemon ($OLD) still serves" >&2; return; fi
    elif [ -f "$KEEP/current.deb" ]; then
        pid=$(start)
        if ready "$pid" 0; then echo "$pid" > "$PIDFILE"; echo "deploy: rolled back; the previous version started" >&2; return; fi
    fi
    echo "deploy: rolled back the files" >&2
}}

OLD=$(cat "$PIDFILE" 2>/dev/null || echo 0)
alive "$OLD" || OLD=0
if [ -f "$CONF" ]; then cp "$CONF" "$KEEP/previous.toml"; else rm -f "$KEEP/previous.toml"; fi
if ! install_pkg "$IN/new.deb"; then echo "deploy: the package did not install" >&2; rollback; exit 1; fi
cp "$IN/spillway.toml" "$CONF"
if ! "$BIN" check --config "$CONF"; then
    echo "deploy: the config does not validate on this host" >&2
    rollback
    exit 1
fi
pid=$(start)
if ready "$pid" "$OLD"; then
    [ "$pid" != 0 ] && echo "$pid" > "$PIDFILE"
    cp "$IN/new.deb" "$KEEP/current.deb"
    echo "deploy: ready, version $(dpkg-deb -f "$KEEP/current.deb" Version)"
    exit 0
fi
echo "deploy: the new daemon did not become ready (its log: $LOG)" >&2
alive "$pid" && [ "$pid" != "$OLD" ] && kill "$pid"
rollback
exit 1
"#
    )
}

/// The /readyz URL of a config's `api.listen`, as the host itself reaches it.
fn readyz_url(api_listen: &str) -> String {
    let local = api_listen.replace("0.0.0.0", "127.0.0.1").replace("[::]", "[::1]");
    format!("http://{local}/readyz")
}

/// The commands that deploy to one host, in order (pure, so it is tested without a host).
pub fn plan(args: &DeployArgs, host: &str, package: &Path, script: &Path) -> Vec<Step> {
    let target = format!("{}@{host}", args.user);
    let mut opts = vec!["-o".to_owned(), "BatchMode=yes".to_owned(), "-o".into(), "ConnectTimeout=5".into()];
    for o in &args.ssh_options {
        opts.extend(["-o".to_owned(), o.clone()]);
    }
    if let Some(i) = &args.identity {
        opts.extend(["-i".to_owned(), i.display().to_string()]);
    }
    let with_port = |flag: &str| -> Vec<String> {
        let mut v = opts.clone();
        if let Some(p) = args.port {
            v.extend([flag.to_owned(), p.to_string()]);
        }
        v
    };
    let ssh = |cmd: String| Step([vec!["ssh".to_owned()], with_port("-p"), vec![target.clone(), cmd]].concat());
    let scp = |from: &Path, name: &str, incoming: &str| {
        let to = format!("{target}:{incoming}/{name}");
        Step([vec!["scp".to_owned(), "-q".into()], with_port("-P"), vec![from.display().to_string(), to]].concat())
    };
    let prefix = args.prefix.clone().unwrap_or_default();
    let incoming = format!("{}/incoming", keep_dir(&prefix));
    vec![
        ssh(format!("mkdir -p '{incoming}'")),
        scp(package, "new.deb", &incoming),
        scp(&args.config, "spillway.toml", &incoming),
        scp(script, "deploy.sh", &incoming),
        ssh(format!("sh '{incoming}/deploy.sh'")),
    ]
}

/// Check the config with the package's own binary, before any host is touched.
fn check_locally(package: &Path, config: &Path, work: &Path) -> Result<()> {
    let dir = work.join("unpacked");
    let status = Command::new("dpkg-deb").arg("-x").arg(package).arg(&dir).status().context("dpkg-deb")?;
    if !status.success() {
        bail!("{} is not a package dpkg-deb can unpack", package.display());
    }
    let status = Command::new(dir.join("usr/bin/spillway")).args(["check", "--config"]).arg(config).status()?;
    if !status.success() {
        bail!("the config does not validate");
    }
    Ok(())
}

pub fn run(root: &Path, args: &DeployArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.config).with_context(|| format!("reading {}", args.config.display()))?;
    let value: toml::Table = toml::from_str(&text).with_context(|| format!("parsing {}", args.config.display()))?;
    let api_listen = value
        .get("api")
        .and_then(|a| a.get("listen"))
        .and_then(|l| l.as_str())
        .context("the config has no api.listen")?
        .to_owned();
    let package = match &args.package {
        Some(p) => p.clone(),
        None => crate::package::run(
            root,
            &crate::package::PackageArgs { binary: None, version: None, out_dir: None, compression: "xz".into() },
        )?,
    };
    let work = root.join("target/deploy");
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir_all(&work)?;
    check_locally(&package, &args.config, &work)?;
    let script = work.join("deploy.sh");
    let prefix = args.prefix.clone().unwrap_or_default();
    std::fs::write(&script, host_script(&prefix, &readyz_url(&api_listen), args.ready_timeout_s))?;
    let steps: Vec<(String, Vec<Step>)> =
        args.hosts.iter().map(|h| (h.clone(), plan(args, h, &package, &script))).collect();
    let total = steps.iter().map(|(_, s)| s.len() as u64).sum();
    let mut p = crate::progress::Progress::new("deploy", total);
    for (i, (host, host_steps)) in steps.into_iter().enumerate() {
        for Step(argv) in host_steps {
            if args.dry_run {
                println!("{}", argv.join(" "));
                continue;
            }
            p.step(&format!("{host}: {}", describe(&argv)));
            let status = Command::new(&argv[0]).args(&argv[1..]).status().with_context(|| argv[0].clone())?;
            if !status.success() {
                let left = &args.hosts[i + 1..];
                bail!(
                    "deploy to {host} failed at: {}\nthe rolling deploy stops here; not deployed: {left:?}",
                    argv.join(" ")
                );
            }
        }
    }
    if !args.dry_run {
        p.finish();
    }
    Ok(())
}

/// A step in a few words, for the progress line: the program and what it runs or copies.
fn describe(argv: &[String]) -> String {
    let what: String = argv.last().map(|a| a.chars().take(60).collect()).unwrap_or_default();
    format!("{} {what}", argv[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(prefix: Option<&str>) -> DeployArgs {
        DeployArgs {
            hosts: vec!["edge-7".into(), "edge-8".into()],
            config: "/tmp/s.toml".into(),
            user: "root".into(),
            port: Some(2222),
            identity: Some("/k/id".into()),
            ssh_options: vec!["StrictHostKeyChecking=accept-new".into()],
            package: None,
            prefix: prefix.map(str::to_owned),
            ready_timeout_s: 30,
            dry_run: true,
        }
    }

    #[test]
    fn a_host_gets_the_package_config_and_script_then_runs_it() {
        let steps = plan(&args(None), "edge-7", Path::new("/b/s.deb"), Path::new("/b/deploy.sh"));
        let text: Vec<String> = steps.iter().map(|s| s.0.join(" ")).collect();
        let opts = "-o BatchMode=yes -o ConnectTimeout=5 -o StrictHostKeyChecking=accept-new -i /k/id";
        assert_eq!(text[0], format!("ssh {opts} -p 2222 root@edge-7 mkdir -p '/var/lib/spillway/deploy/incoming'"));
        assert_eq!(
            text[1],
            format!("scp -q {opts} -P 2222 /b/s.deb root@edge-7:/var/lib/spillway/deploy/incoming/new.deb")
        );
        assert!(text[4].ends_with("sh '/var/lib/spillway/deploy/incoming/deploy.sh'"), "{}", text[4]);
        let p = plan(&args(Some("/opt/edge")), "edge-7", Path::new("/b/s.deb"), Path::new("/b/deploy.sh"));
        assert!(p[0].0.last().unwrap().contains("/opt/edge/var/lib/spillway/deploy/incoming"));
    }

    #[test]
    fn the_host_script_checks_before_starting_and_rolls_back() {
        let s = host_script("", &readyz_url("0.0.0.0:8053"), 30);
        assert!(s.contains("READYZ='http://127.0.0.1:8053/readyz'"));
        let check = s.find("\"$BIN\" check --config").unwrap();
        let start = s.find("pid=$(start)\nif ready").unwrap();
        assert!(check < start, "the config is checked on the host before the daemon starts");
        assert!(s.contains("while [ $i -lt 150 ]"), "30 s in 0.2 s steps");
        assert!(s.matches("rollback\n").count() >= 2, "a failed check and a daemon never ready roll back");
        assert_eq!(readyz_url("[::]:8053"), "http://[::1]:8053/readyz");
        assert!(s.contains("READYZ=$(readyz_of \"$CONF\")"), "a rollback waits on the previous config's API");
    }
}
