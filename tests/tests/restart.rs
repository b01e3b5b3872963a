//! An edge that never goes dark: under a steady load of 2 500 queries/s from the client
//! namespace, half answered by XDP and half by the userspace server, the real binary is
//! stopped with SIGTERM and started, killed with SIGKILL and started, and upgraded (started
//! beside the running daemon) to a binary whose XDP program and map layout differ. Every query
//! is counted. Then `spillway detach` leaves no pin and no program behind.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use spillway_common::maps::MAP_LAYOUT_VERSION;
use spillway_tests::{
    daemon::{Daemon, wait_ready},
    dnswire::{Query, TYPE_A},
    fixture,
    load::{Class, QueryLoad},
    netns::{Proc, SERVER_ADDR4, Topology, spillway_bin},
    require_privileges,
};

/// The binary the upgrade goes to: built by `cargo xtask test` with `--features upgrade-test`
/// (another XDP program, the next map layout), next to the plain one.
fn upgrade_bin() -> Option<PathBuf> {
    let p = std::env::var_os("SPILLWAY_UPGRADE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| spillway_bin().with_file_name("spillway-upgrade"));
    p.is_file().then_some(p)
}

fn config(server_if: &str) -> String {
    let shop = r#"
[[customer]]
id = "shop"
names = ["shop.cdn.example.net."]
origin_addresses = ["203.0.113.10"]
overflow = "origin"
fraction = 1.0
ttl = 30
"#;
    fixture::daemon_config(&[&format!("{SERVER_ADDR4}:53")], Some(server_if), shop)
}

/// The program attached to `iface` in the server namespace: (id, tag).
fn attached_program(topo: &Topology) -> Option<(u64, String)> {
    let out = topo.server.exec_ok(&["ip", "-d", "-j", "link", "show", "dev", &topo.server_if]);
    let v: serde_json::Value = serde_json::from_str(&out).ok()?;
    let prog = v.pointer("/0/xdp/prog")?;
    Some((prog.get("id")?.as_u64()?, prog.get("tag")?.as_str()?.to_owned()))
}

struct Phase {
    name: &'static str,
    from: Duration,
    to: Duration,
}

#[test]
fn restarts_crashes_and_upgrades_lose_no_xdp_query() {
    require_privileges!();
    let Some(upgrade) = upgrade_bin() else {
        assert!(
            std::env::var("SPILLWAY_REQUIRE_PRIVILEGED").as_deref() != Ok("1"),
            "target/debug/spillway-upgrade is missing: `cargo xtask test` builds it"
        );
        eprintln!("SKIPPED: no upgrade binary (cargo xtask test builds it)");
        return;
    };
    let topo = Topology::new();
    let mut daemon = Daemon::start(&topo, &config(&topo.server_if)).expect("spillway starts");
    let first = attached_program(&topo).expect("XDP attached");

    let target: SocketAddr = format!("{SERVER_ADDR4}:53").parse().unwrap();
    let classes = vec![
        // A customer name: answered by XDP.
        Class { label: "xdp", query: Query::new("shop.cdn.example.net.", TYPE_A).bytes() },
        // The apex SOA: passed on by XDP, answered by the userspace server.
        Class { label: "userspace", query: Query::new("cdn.example.net.", 6).bytes() },
    ];
    let load = QueryLoad::start(&topo.client, target, classes, 1250);
    let mut phases = Vec::new();
    let settle = Duration::from_secs(2);
    std::thread::sleep(settle);

    // 1. SIGTERM, then start: XDP answers from the pinned state meanwhile.
    let t0 = load.elapsed();
    let status = daemon.proc.stop().expect("stops on SIGTERM");
    assert!(status.success(), "{}", daemon.proc.log_text());
    assert!(daemon.proc.log_text().contains("XDP keeps answering"), "{}", daemon.proc.log_text());
    assert_eq!(attached_program(&topo).map(|p| p.0), Some(first.0), "XDP stays after SIGTERM");
    std::thread::sleep(Duration::from_millis(500));
    let mut second = daemon.spawn_next(&topo, &spillway_bin(), 2);
    wait_ready(&topo, &second).expect("second start");
    std::thread::sleep(settle);
    phases.push(Phase { name: "SIGTERM then start", from: t0, to: load.elapsed() });
    let log = second.log_text();
    assert!(log.contains("reusing the pinned maps"), "{log}");
    assert!(log.contains("swapped into the pinned link"), "{log}");
    let after_restart = attached_program(&topo).expect("XDP attached");
    assert_ne!(after_restart.0, first.0, "the new process's program runs");
    assert_eq!(after_restart.1, first.1, "the same program");

    // 2. SIGKILL, then start.
    let t1 = load.elapsed();
    second.kill9();
    std::thread::sleep(Duration::from_millis(500));
    assert!(attached_program(&topo).is_some(), "XDP stays after kill -9");
    let third = daemon.spawn_next(&topo, &spillway_bin(), 3);
    wait_ready(&topo, &third).expect("third start");
    std::thread::sleep(settle);
    phases.push(Phase { name: "kill -9 then start", from: t1, to: load.elapsed() });

    // 3. Planned upgrade: the new binary starts beside the running one and takes over.
    let t2 = load.elapsed();
    let mut fourth = daemon.spawn_next(&topo, &upgrade, 4);
    let mut third: Proc = third;
    let status = third.wait_exit(Duration::from_secs(30)).expect("the old daemon exits after the handover");
    assert!(status.success(), "{}", third.log_text());
    wait_ready(&topo, &fourth).expect("upgraded start");
    std::thread::sleep(settle);
    phases.push(Phase { name: "upgrade (planned restart)", from: t2, to: load.elapsed() });
    let log = fourth.log_text();
    assert!(log.contains("map layout changed: migrating"), "{log}");
    assert!(log.contains("swapped into the pinned link"), "{log}");
    assert!(log.contains("taking over from the running daemon"), "{log}");
    assert!(third.log_text().contains("the new daemon is ready: draining"), "{}", third.log_text());
    let upgraded = attached_program(&topo).expect("XDP attached");
    assert_ne!(upgraded.1, first.1, "the upgrade's program differs");
    let pins = daemon.bpffs.pins();
    let (old, new) =
        (format!("spillway/maps-v{MAP_LAYOUT_VERSION}-"), format!("spillway/maps-v{}-", MAP_LAYOUT_VERSION + 1));
    assert!(pins.iter().any(|p| p.starts_with(&new)), "the new layout's maps are pinned: {pins:?}");
    assert!(!pins.iter().any(|p| p.starts_with(&old)), "the old layout's maps are gone: {pins:?}");

    let reports = load.stop();
    let (xdp, user) = (&reports[0], &reports[1]);
    for p in &phases {
        let (sent, lost) = (xdp.sent_in(p.from, p.to), xdp.unanswered(p.from, p.to));
        let (usent, ulost) = (user.sent_in(p.from, p.to), user.unanswered(p.from, p.to));
        let gap = user.longest_gap(p.from, p.to);
        eprintln!(
            "{}: XDP {lost} of {sent} unanswered; userspace {ulost} of {usent} unanswered (longest gap {gap:?})",
            p.name
        );
        assert!(sent > 2000, "{}: the load ran ({sent} XDP queries)", p.name);
        assert_eq!(lost, 0, "{}: XDP queries unanswered", p.name);
    }
    let planned = &phases[2];
    assert_eq!(user.unanswered(planned.from, planned.to), 0, "planned restart: userspace queries unanswered");

    // 4. `spillway detach` removes the program, its link and its pins.
    assert!(fourth.stop().is_some_and(|s| s.success()), "{}", fourth.log_text());
    let pin_dir = daemon.bpffs.pin_dir();
    let out =
        topo.server.exec_ok(&[spillway_bin().to_str().unwrap(), "detach", "--bpffs-dir", pin_dir.to_str().unwrap()]);
    assert!(out.contains("removed XDP (native) on"), "{out}");
    assert_eq!(daemon.bpffs.pins(), Vec::<String>::new(), "no pins left");
    assert_eq!(attached_program(&topo), None, "no program left on the interface");
}
