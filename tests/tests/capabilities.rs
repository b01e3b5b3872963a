//! The package's systemd unit cuts root's power to a capability set
//! (`CapabilityBoundingSet` in contrib/debian/spillway.service): the daemon, started with
//! exactly that bounding set (as systemd would), loads and attaches XDP, pins its maps, binds
//! port 53 and answers, over XDP and the userspace server. The unit is not run (no systemd
//! here): its set is read from the file, so a change there is tested.

use std::path::PathBuf;

use spillway_tests::{
    client::dig,
    daemon::Daemon,
    netns::{SERVER_ADDR4, Topology},
    require_privileges,
};

fn bounding_set() -> Vec<String> {
    let unit = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../contrib/debian/spillway.service");
    let text = std::fs::read_to_string(&unit).expect("the unit file");
    let line = text.lines().find_map(|l| l.strip_prefix("CapabilityBoundingSet=")).expect("CapabilityBoundingSet");
    line.split_whitespace().map(|c| c.strip_prefix("CAP_").expect("CAP_ names").to_lowercase()).collect()
}

#[test]
fn the_daemon_runs_with_the_units_capabilities_only() {
    require_privileges!();
    let caps = bounding_set();
    assert!(caps.contains(&"bpf".to_owned()) && !caps.contains(&"sys_admin".to_owned()), "{caps:?}");
    let set = format!("-all,{}", caps.iter().map(|c| format!("+{c}")).collect::<Vec<_>>().join(","));
    let topo = Topology::new();
    let config = format!(
        r#"
[server]
zones = ["cdn.example.net."]
listen = ["{SERVER_ADDR4}:53"]
xdp_interfaces = ["{}"]
xdp_mode = "native"
[api]
listen = "{SERVER_ADDR4}:8053"
token = "t"
[store]
path = "@DIR@/spillway.db"
[[proxy]]
name = "edge-1"
addresses = ["198.51.100.10"]
capacity_rps = 1000
[[customer]]
id = "shop"
names = ["shop.cdn.example.net."]
origin_addresses = ["203.0.113.10"]
overflow = "origin"
fraction = 1.0
"#,
        topo.server_if
    );
    let daemon = Daemon::start_wrapped(&topo, &config, &["setpriv", "--bounding-set", &set, "--"])
        .expect("spillway starts with the unit's capabilities");
    // Its capabilities are those the unit names, of those this machine has (a container may
    // lack some: the daemon must start without them too).
    let bounding = |pid: &str| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let mask = status.lines().find_map(|l| l.strip_prefix("CapBnd:")).unwrap().trim().to_owned();
        let out = std::process::Command::new("capsh").arg(format!("--decode={mask}")).output().expect("capsh");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let names = text.trim().split_once('=').map(|(_, n)| n.to_owned()).unwrap_or_default();
        names.split(',').filter(|n| !n.is_empty()).map(|n| n.trim_start_matches("cap_").to_owned()).collect::<Vec<_>>()
    };
    let ours = bounding("self");
    let want: Vec<String> = caps.iter().filter(|c| ours.contains(c)).cloned().collect();
    let mut got = bounding(&daemon.proc.pid().to_string());
    got.sort();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(got, want_sorted, "the daemon's bounding set");
    assert_eq!(dig(&topo, &[&format!("@{SERVER_ADDR4}"), "shop.cdn.example.net", "A"]), ["198.51.100.10"], "XDP");
    let tcp = dig(&topo, &["+tcp", &format!("@{SERVER_ADDR4}"), "shop.cdn.example.net", "A"]);
    assert_eq!(tcp, ["198.51.100.10"], "the userspace server on port 53");
}
