//! A cluster's config is checked before anything starts: an unknown role, no etcd endpoints,
//! and an etcd that does not answer are clear errors from `spillway check` and from
//! `spillway run` (exit 1, nothing attached); with a real etcd, check says it answers.

use std::time::Duration;

use spillway_tests::{
    cluster::Etcd,
    daemon::run_in,
    netns::{NetNs, spillway_bin},
    require_privileges,
};

fn edge_config(cluster: &str) -> String {
    format!(
        r#"
[server]
zones = ["cdn.example.net."]
listen = ["127.0.0.1:5300"]
xdp_interfaces = ["lo"]
xdp_mode = "skb"
[api]
listen = "127.0.0.1:8053"
token = "t"
[cluster]
{cluster}
"#
    )
}

/// `spillway check` in `ns`: (exit code, stdout and stderr).
fn check(ns: &NetNs, dir: &std::path::Path, config: &str) -> (Option<i32>, String) {
    let path = dir.join("check.toml");
    std::fs::write(&path, config).expect("write config");
    let bin = spillway_bin();
    let out = ns.exec(&[bin.to_str().expect("utf-8"), "check", "--config", path.to_str().expect("utf-8")]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), text)
}

#[test]
fn bad_cluster_settings_are_clear_errors_from_check_and_run() {
    require_privileges!();
    let ns = NetNs::new("spw-cc");
    let dir = tempfile::tempdir().expect("temp dir");

    let (code, text) =
        check(&ns, dir.path(), &edge_config("role = \"edgy\"\netcd_endpoints = [\"http://127.0.0.1:2379\"]"));
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("unknown variant `edgy`, expected one of `edge`, `control`, `both`"), "{text}");

    let (code, text) = check(&ns, dir.path(), &edge_config("role = \"edge\""));
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("cluster.etcd_endpoints: at least one etcd endpoint is needed"), "{text}");

    // Nothing listens there: check and run both say etcd does not answer, and run attaches
    // nothing.
    let unreachable = edge_config("role = \"edge\"\netcd_endpoints = [\"http://127.0.0.1:23999\"]\ntimeout_ms = 500");
    let (code, text) = check(&ns, dir.path(), &unreachable);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("http://127.0.0.1:23999") && text.contains("no member answers"), "{text}");
    let mut proc = run_in(&ns, dir.path(), &unreachable);
    let status = proc.wait_exit(Duration::from_secs(10)).expect("exits by itself");
    let log = proc.log_text();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("no member answers"), "{log}");
    let link = ns.exec_ok(&["ip", "link", "show", "lo"]);
    assert!(!link.contains("xdp"), "XDP left on lo: {link}");

    // A real etcd: check says it answers.
    let etcd = Etcd::start(&ns, 1, 23790);
    let reachable = edge_config(&format!("role = \"edge\"\netcd_endpoints = [\"{}\"]", etcd.endpoints()[0]));
    let (code, text) = check(&ns, dir.path(), &reachable);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("cluster role edge, etcd answers"), "{text}");
    drop(etcd);
}
