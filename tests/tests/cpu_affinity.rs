//! `server.dns_cpus` and `server.background_cpus`: the real daemon's DNS threads run only on
//! the CPUs given for them, one UDP socket each, and every other thread on the others; the
//! kernel's view of each thread (/proc/PID/task/TID/status) is what is checked.

use std::time::{Duration, Instant};

use spillway_tests::{daemon::run_in, netns::NetNs, require_privileges};

/// Each thread of `pid`: (name, the CPUs it may run on, as the kernel lists them).
fn threads(pid: u32) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/task")).expect("task dir").flatten() {
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default().trim().to_owned();
        let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
        let cpus = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default();
        out.push((comm, cpus));
    }
    out
}

#[test]
fn dns_threads_and_the_rest_keep_to_their_cpus() {
    require_privileges!();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // With one CPU both lists name it; with more, DNS gets the last and the rest CPU 0.
    let dns = cpus - 1;
    let ns = NetNs::new("spw-cpu");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = format!(
        r#"
[server]
zones = ["cdn.example.net."]
listen = ["127.0.0.1:5353"]
bpffs_dir = "{d}/bpffs-unused"
dns_cpus = [{dns}]
background_cpus = [0]
[api]
listen = "127.0.0.1:8053"
token = "t"
[store]
path = "{d}/spillway.db"
[[customer]]
id = "shop"
names = ["shop.cdn.example.net."]
origin_addresses = ["203.0.113.10"]
overflow = "origin"
fraction = 0.0
"#,
        d = dir.path().display()
    );
    let mut daemon = run_in(&ns, dir.path(), &config);
    // Answering, so every listener thread is up.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = ns.exec(&[
            "dig",
            "@127.0.0.1",
            "-p",
            "5353",
            "+short",
            "+tries=1",
            "+time=1",
            "shop.cdn.example.net.",
            "A",
        ]);
        if String::from_utf8_lossy(&out.stdout).contains("203.0.113.10") {
            break;
        }
        assert!(Instant::now() < deadline, "no answer; log:\n{}", daemon.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    let all = threads(daemon.pid());
    let udp: Vec<_> = all.iter().filter(|(n, _)| n.starts_with("dns-udp-")).collect();
    assert_eq!(udp.len(), 1, "one UDP socket and thread per DNS CPU: {all:?}");
    assert!(all.iter().any(|(n, _)| n.starts_with("dns-tcp-")), "{all:?}");
    for (name, allowed) in &all {
        if name.starts_with("dns-") {
            assert_eq!(allowed, &dns.to_string(), "{name} runs on {allowed}");
        } else if name.starts_with("spillway-bg") {
            assert_eq!(allowed, "0", "{name} runs on {allowed}");
        }
    }
    assert!(all.iter().any(|(n, _)| n.starts_with("spillway-bg")), "{all:?}");
    assert!(daemon.wait_exit(Duration::from_millis(10)).is_none(), "the daemon died:\n{}", daemon.log_text());
}
