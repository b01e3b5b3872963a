//! `cargo xtask deploy --host HOST --config FILE`: build a release binary, validate the config,
//! copy both to the host over ssh, install a systemd unit (or a pid-file start where there is no
//! systemd), start it and wait for /readyz.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};
use clap::Args;

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The edge host (anything ssh accepts: name, address, ssh-config alias).
    #[arg(long)]
    pub host: String,
    /// The config to install as /etc/spillway/spillway.toml.
    #[arg(long)]
    pub config: PathBuf,
    /// Remote user (needs root rights for XDP).
    #[arg(long, default_value = "root")]
    pub user: String,
    /// Print the steps instead of running them.
    #[arg(long)]
    pub dry_run: bool,
}

const UNIT: &str = "[Unit]
Description=Spillway authoritative DNS (XDP) and capacity market
After=network-online.target
Wants=network-online.target

[Service]
ExecStartPre=/usr/local/bin/spillway check --config /etc/spillway/spillway.toml
ExecStart=/usr/local/bin/spillway run --config /etc/spillway/spillway.toml
Restart=on-failure
LimitMEMLOCK=infinity

[Install]
WantedBy=multi-user.target
";

/// One step of a deployment: a program and its arguments, run locally.
#[derive(Debug, Clone, PartialEq)]
pub struct Step(pub Vec<String>);

/// The commands a deployment runs, in order (pure, so it is tested without a host).
pub fn plan(args: &DeployArgs, binary: &Path, api_listen: &str) -> Vec<Step> {
    let target = format!("{}@{}", args.user, args.host);
    let ssh = |script: &str| Step(vec!["ssh".into(), target.clone(), script.into()]);
    let scp = |from: &Path, to: &str| Step(vec!["scp".into(), from.display().to_string(), format!("{target}:{to}")]);
    let readyz = api_listen.replace("0.0.0.0", "127.0.0.1");
    vec![
        ssh("install -d -m 0755 /etc/spillway /var/lib/spillway"),
        scp(binary, "/usr/local/bin/spillway.new"),
        scp(&args.config, "/etc/spillway/spillway.toml.new"),
        // Validate on the host with the new binary before anything is replaced.
        ssh(
            "chmod 0755 /usr/local/bin/spillway.new && /usr/local/bin/spillway.new check --config /etc/spillway/spillway.toml.new \
             && mv /usr/local/bin/spillway.new /usr/local/bin/spillway && mv /etc/spillway/spillway.toml.new /etc/spillway/spillway.toml",
        ),
        ssh(&format!(
            "if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then \
               printf '%s' '{UNIT}' > /etc/systemd/system/spillway.service && systemctl daemon-reload && systemctl enable spillway && systemctl restart spillway; \
             else \
               [ -f /run/spillway.pid ] && kill $(cat /run/spillway.pid) 2>/dev/null; sleep 1; \
               nohup /usr/local/bin/spillway run --config /etc/spillway/spillway.toml >/var/log/spillway.log 2>&1 & echo $! > /run/spillway.pid; \
             fi"
        )),
        ssh(&format!(
            "for i in $(seq 50); do curl -fsS http://{readyz}/readyz && exit 0; sleep 0.2; done; echo 'spillway did not become ready' >&2; exit 1"
        )),
    ]
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
    crate::cargo(root, &["build", "--release", "-p", "spillway"])?;
    let binary = root.join("target/release/spillway");
    // Validate locally first: every error with its line, before touching the host.
    let status = Command::new(&binary).args(["check", "--config"]).arg(&args.config).status()?;
    if !status.success() {
        bail!("the config does not validate");
    }
    let steps = plan(args, &binary, &api_listen);
    let mut p = crate::progress::Progress::new("deploy", steps.len() as u64);
    for Step(argv) in steps {
        if args.dry_run {
            println!("{}", argv.join(" "));
            continue;
        }
        p.step(&describe(&argv));
        let status = Command::new(&argv[0]).args(&argv[1..]).status().with_context(|| argv[0].clone())?;
        if !status.success() {
            bail!("deploy step failed: {}", argv.join(" "));
        }
    }
    p.finish();
    Ok(())
}

/// A step in a few words, for the progress line: the program and the start of what it runs.
fn describe(argv: &[String]) -> String {
    let what: String = argv.last().map(|a| a.chars().take(60).collect()).unwrap_or_default();
    format!("{} {what}", argv[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_validates_before_replacing_and_waits_for_ready() {
        let args =
            DeployArgs { host: "edge-7".into(), config: "/tmp/s.toml".into(), user: "root".into(), dry_run: true };
        let steps = plan(&args, Path::new("/b/spillway"), "0.0.0.0:8053");
        let text: Vec<String> = steps.iter().map(|s| s.0.join(" ")).collect();
        assert_eq!(text[1], "scp /b/spillway root@edge-7:/usr/local/bin/spillway.new");
        let check = text.iter().position(|t| t.contains("spillway.new check")).unwrap();
        let start = text.iter().position(|t| t.contains("systemctl restart spillway")).unwrap();
        assert!(check < start, "the config is checked on the host before the service starts");
        assert!(text.last().unwrap().contains("http://127.0.0.1:8053/readyz"));
        assert!(steps.iter().all(|s| s.0[0] == "ssh" || s.0[0] == "scp"));
    }
}
