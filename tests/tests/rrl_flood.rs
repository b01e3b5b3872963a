//! Not a reflector, end to end: the real daemon in native XDP mode on a veth, a flood of
//! queries from one /24 (an address of its own on the client's interface, standing in for a
//! spoofed victim) gets back at most the configured rate of answers, and TC=1 slips for every
//! second query over it, never more bytes than it sent; meanwhile another client's queries,
//! within the rate, are all answered. `/metrics` counts the actions.

use std::{
    net::UdpSocket,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use spillway_tests::{
    client,
    daemon::{self, Daemon},
    dnswire::{Query, TYPE_A},
    fixture,
    netns::{CLIENT_ADDR4, SERVER_ADDR4, Topology},
    require_privileges,
};

const RATE: u64 = 50;
const FLOOD_ADDR: &str = "198.18.0.1";
const FLOOD_S: f64 = 3.0;
const FLOOD_PPS: u64 = 5_000;
/// Below the userspace server's rate on a loaded 2-vCPU host.
const USERSPACE_PPS: u64 = 1_500;

fn config(server_if: &str) -> String {
    let extra = format!(
        r#"
[rrl]
rate = {RATE}
window_s = 2
slip = 2

[[customer]]
id = "shop"
names = ["shop.cdn.example.net."]
origin_addresses = ["203.0.113.10"]
overflow = "origin"
fraction = 1.0
ttl = 30
"#
    );
    fixture::daemon_config(&[&format!("{SERVER_ADDR4}:53")], Some(server_if), &extra)
}

#[derive(Debug, Default)]
struct Tally {
    sent: u64,
    sent_bytes: u64,
    answers: u64,
    slips: u64,
    received_bytes: u64,
}

/// Send `pps` queries a second for FLOOD_S seconds from `FLOOD_ADDR` (query `i` for the name
/// `name(i)`), counting what comes back (until half a second after the last query): answers
/// are replies without TC (records, or NXDOMAIN), slips those with TC and no records.
fn flood(pps: u64, name: fn(u64) -> String) -> Tally {
    let sock = UdpSocket::bind((FLOOD_ADDR, 0)).expect("bind the flood's address");
    sock.connect((SERVER_ADDR4, 53)).expect("connect");
    sock.set_read_timeout(Some(Duration::from_millis(20))).expect("timeout");
    let recv = sock.try_clone().expect("clone");
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let reader = std::thread::spawn(move || {
        let (mut t, mut buf) = (Tally::default(), [0u8; 1500]);
        let mut quiet_since: Option<Instant> = None;
        loop {
            match recv.recv(&mut buf) {
                Ok(n) if n >= 12 => {
                    t.received_bytes += n as u64;
                    let tc = buf[2] & 0x02 != 0;
                    let ancount = u16::from_be_bytes([buf[6], buf[7]]);
                    if tc && ancount == 0 {
                        t.slips += 1;
                    } else if !tc {
                        t.answers += 1;
                    }
                    quiet_since = None;
                }
                _ if flag.load(Ordering::Relaxed) => {
                    let q = *quiet_since.get_or_insert_with(Instant::now);
                    if q.elapsed() > Duration::from_millis(500) {
                        return t;
                    }
                }
                _ => {}
            }
        }
    });
    let (mut sent, mut sent_bytes, start) = (0u64, 0u64, Instant::now());
    let total = (pps as f64 * FLOOD_S) as u64;
    while sent < total {
        let q = Query::new(&name(sent), TYPE_A).bytes();
        if sock.send(&q).is_ok() {
            sent += 1;
            sent_bytes += q.len() as u64;
        }
        let due = start + Duration::from_secs_f64(sent as f64 / pps as f64);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    done.store(true, Ordering::Relaxed);
    let mut t = reader.join().expect("reader");
    t.sent = sent;
    t.sent_bytes = sent_bytes;
    t
}

/// 10 queries a second from the client's own address while the flood runs: (asked, answered
/// with the record).
fn bystander(stop: Arc<AtomicBool>) -> (u32, u32) {
    let sock = UdpSocket::bind("0.0.0.0:0").expect("bind");
    sock.connect((SERVER_ADDR4, 53)).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(1))).expect("timeout");
    let (mut asked, mut answered, mut buf) = (0, 0, [0u8; 1500]);
    while !stop.load(Ordering::Relaxed) {
        asked += 1;
        let mut q = Query::new("shop.cdn.example.net.", TYPE_A);
        q.id = asked as u16;
        let _ = sock.send(&q.bytes());
        loop {
            match sock.recv(&mut buf) {
                Ok(n) if n >= 12 && buf[..2] == (asked as u16).to_be_bytes() => {
                    if u16::from_be_bytes([buf[6], buf[7]]) > 0 && buf[2] & 0x02 == 0 {
                        answered += 1;
                    }
                    break;
                }
                Ok(_) => continue,
                Err(_) => break,
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    (asked, answered)
}

/// A counter's value in a `/metrics` text.
/// A flood of at least `min_sent` queries got `RATE` to `budget` replies, every second limited
/// one slipped (some may be lost on the veth), and no more bytes than it sent.
fn assert_limited(what: &str, t: &Tally, min_sent: u64, budget: u64) {
    assert!(t.sent >= min_sent, "the flood ran: {t:?}");
    assert!(t.answers >= RATE && t.answers <= budget, "{what} answers within the rate ({budget}): {t:?}");
    let limited = t.sent - t.answers;
    assert!(t.slips * 2 <= limited + 2 && t.slips * 2 >= limited * 9 / 10, "slip 2: {t:?}");
    assert!(t.received_bytes <= t.sent_bytes, "bytes back / bytes sent ≤ 1: {t:?}");
}

fn counter(text: &str, series: &str) -> u64 {
    client::metric(text, series) as u64
}

#[test]
fn a_flood_from_one_subnet_gets_the_rate_and_slips() {
    require_privileges!();
    let topo = Topology::new();
    topo.client.exec_ok(&["ip", "addr", "add", &format!("{FLOOD_ADDR}/24"), "dev", &topo.client_if]);
    // XDP_TX needs no route back; the userspace server's replies do.
    topo.server.exec_ok(&["ip", "route", "add", "198.18.0.0/24", "via", CLIENT_ADDR4]);
    let daemon = Daemon::start(&topo, &config(&topo.server_if)).expect("spillway starts");

    let stop = Arc::new(AtomicBool::new(false));
    let (t, (asked, answered)) = std::thread::scope(|s| {
        let flag = stop.clone();
        let by = s.spawn(|| topo.client.run(move || bystander(flag)));
        let t = topo.client.run(|| flood(FLOOD_PPS, |_| "shop.cdn.example.net.".into()));
        stop.store(true, Ordering::Relaxed);
        (t, by.join().expect("bystander"))
    });
    let (_, metrics) = daemon::http(&topo, "GET", "/metrics", None, None);
    let log = daemon.proc.log_text();
    eprintln!("flood: {t:?}; bystander asked {asked}, answered {answered}");

    // The flood's budget: the rate for each second it ran, one full bucket to start, and a
    // second boundary either side.
    let budget = RATE * (FLOOD_S as u64 + 2);
    assert!(t.sent >= 10_000, "the flood ran: {t:?}");
    assert!(t.answers >= RATE && t.answers <= budget, "answers within the rate ({budget}): {t:?}\n{log}");
    let limited = t.sent - t.answers;
    // Every second limited query slips (some replies may be lost on the veth under the flood).
    assert!(t.slips * 2 <= limited + 2 && t.slips * 2 >= limited * 9 / 10, "slip 2: {t:?}");
    assert!(t.received_bytes <= t.sent_bytes, "bytes back / bytes sent ≤ 1: {t:?}");
    assert!(asked >= 20 && answered == asked, "the other client within the rate: {answered} of {asked} answered");

    let dropped = counter(&metrics, "spillway_rrl_total{action=\"dropped\"}");
    let slipped = counter(&metrics, "spillway_rrl_total{action=\"slipped\"}");
    let sent = counter(&metrics, "spillway_rrl_total{action=\"sent\"}");
    assert!(dropped.abs_diff(slipped) <= 2, "dropped {dropped}, slipped {slipped}");
    assert!(dropped + slipped >= limited * 9 / 10, "{dropped} + {slipped} limited of {limited}");
    assert!(sent >= t.answers + answered as u64, "sent {sent}");
    assert!(slipped >= t.slips, "every slip the flood saw was counted: {slipped} < {}", t.slips);
    let xdp_slipped = counter(&metrics, "spillway_xdp_packets_total{outcome=\"rrl_slipped\"}");
    assert_eq!(xdp_slipped, slipped, "the answers were XDP's, and so were the slips");

    // A random-subdomain flood: NXDOMAIN from XDP, one budget for the subnet whatever the name.
    let t = topo.client.run(|| flood(FLOOD_PPS, |i| format!("nx{i}.cdn.example.net.")));
    eprintln!("NXDOMAIN flood: {t:?}");
    assert_limited("NXDOMAIN", &t, 10_000, budget);
    let (_, after_nx) = daemon::http(&topo, "GET", "/metrics", None, None);
    let xdp_nx = counter(&after_nx, "spillway_xdp_packets_total{outcome=\"answered_nxdomain\"}");
    assert!(xdp_nx >= t.answers, "the NXDOMAIN answers were XDP's: {xdp_nx} < {}", t.answers);
    let xdp_slipped_nx = counter(&after_nx, "spillway_xdp_packets_total{outcome=\"rrl_slipped\"}") - xdp_slipped;
    assert!(xdp_slipped_nx >= t.slips, "and so were the slips: {xdp_slipped_nx} < {}", t.slips);

    // Names outside our zones go to the userspace server (REFUSED), which limits them by the
    // same rule.
    let t = topo.client.run(|| flood(USERSPACE_PPS, |i| format!("nx{i}.example.org.")));
    eprintln!("REFUSED flood: {t:?}");
    assert_limited("REFUSED", &t, 3_000, budget);
    let (_, after) = daemon::http(&topo, "GET", "/metrics", None, None);
    let all_slipped = |m: &str| counter(m, "spillway_rrl_total{action=\"slipped\"}");
    let xdp_slips = |m: &str| counter(m, "spillway_xdp_packets_total{outcome=\"rrl_slipped\"}");
    let user_slipped = (all_slipped(&after) - xdp_slips(&after)) - (all_slipped(&after_nx) - xdp_slips(&after_nx));
    assert!(user_slipped >= t.slips, "userspace slips counted: {user_slipped} < {}", t.slips);
}
