//! The addresses XDP answers for, end to end (native XDP on a veth, no userspace listener, so
//! only XDP can answer): with `server.xdp_addresses`, a query to another address of the host is
//! passed to the kernel (`not_local`) and nobody answers it; without it, the host's addresses
//! are followed, and one added while the daemon runs is answered in XDP within seconds.

use std::time::{Duration, Instant};

use spillway_tests::{
    client,
    daemon::{self, Daemon},
    fixture,
    netns::{SERVER_ADDR4, Topology},
    require_privileges,
};

const SHOP: &str = r#"
[[customer]]
id = "shop"
names = ["shop.cdn.example.net."]
origin_addresses = ["203.0.113.10"]
overflow = "origin"
fraction = 1.0
ttl = 30
"#;

fn config(server_if: &str, xdp_addresses: Option<&str>) -> String {
    let c = fixture::daemon_config(&[], Some(server_if), SHOP);
    match xdp_addresses {
        Some(a) => c.replacen("[server]", &format!("[server]\nxdp_addresses = [\"{a}\"]"), 1),
        None => c,
    }
}

/// One A query to `server` with `dig`: the addresses answered (empty on a timeout or an ICMP
/// port unreachable, which dig reports on lines starting with `;;`).
fn ask(topo: &Topology, server: &str) -> Vec<String> {
    let at = format!("@{server}");
    let out = topo.client.exec(&["dig", "+short", "+tries=1", "+time=1", &at, "shop.cdn.example.net", "A"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with(';'))
        .map(str::to_owned)
        .collect()
}

fn not_local(topo: &Topology) -> f64 {
    client::metric(
        &daemon::http(topo, "GET", "/metrics", None, None).1,
        "spillway_xdp_packets_total{outcome=\"not_local\"}",
    )
}

#[test]
fn xdp_answers_its_addresses_only_and_follows_the_host() {
    require_privileges!();
    let topo = Topology::new();
    let add = |a: &str| topo.server.exec_ok(&["ip", "addr", "add", &format!("{a}/24"), "dev", &topo.server_if]);
    add("192.0.2.54");

    // Configured: 192.0.2.54 is the host's, but not listed.
    let mut listed = Daemon::start(&topo, &config(&topo.server_if, Some(SERVER_ADDR4))).expect("spillway starts");
    assert_eq!(ask(&topo, SERVER_ADDR4), ["198.51.100.10"]);
    let before = not_local(&topo);
    let got = ask(&topo, "192.0.2.54");
    assert!(
        got.is_empty(),
        "an address not in server.xdp_addresses is not answered in XDP: {got:?}\n{}\n{}",
        daemon::http(&topo, "GET", "/metrics", None, None).1,
        listed.proc.log_text()
    );
    assert!(not_local(&topo) > before, "counted as not_local");
    assert!(listed.proc.stop().is_some_and(|s| s.success()), "{}", listed.proc.log_text());
    drop(listed);

    // Followed: the host's addresses at start, and one added later.
    let followed = Daemon::start(&topo, &config(&topo.server_if, None)).expect("spillway starts");
    assert_eq!(ask(&topo, "192.0.2.54"), ["198.51.100.10"], "the host's addresses at start");
    add("192.0.2.55");
    let deadline = Instant::now() + Duration::from_secs(15);
    while ask(&topo, "192.0.2.55").is_empty() {
        assert!(Instant::now() < deadline, "192.0.2.55 never answered; log:\n{}", followed.proc.log_text());
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(followed.proc.log_text().contains("the host's addresses changed"), "{}", followed.proc.log_text());
}
