//! BPF_PROG_TEST_RUN cost of the XDP program per query (A, AAAA over IPv6, EDNS, a long name, a
//! passed query), next to a program that only returns XDP_TX, measured in the same run, with 1,
//! 10 000 and 1 000 000 names in the map. In the 1-name row the map holds only the name the case
//! queries (the short name for the passed query, which asks for another). Then, with 1 000 000
//! names: the rate limit on, and the customer drawing per resolver.
//! Writes target/bench/results.json.
//!
//! The program runs with BENCH_REPLAY set: test_run's `repeat` feeds each run the previous
//! run's output, so the frame is built with the same MAC, address and port on both sides and
//! the program accepts its own reply as the next query. Every run takes the full answer path.

use std::time::Duration;

use serde_json::json;
use spillway::dataplane::{
    Dataplane, LoadOptions, program,
    records::key_of,
    test_run::{TestRunOptions, test_run},
};
use spillway_common::{
    maps::{CustomerRecord, draw},
    rrl::RrlParams,
};
use spillway_tests::{dnswire::*, fixture};

const CONFIG: &str = r#"
[server]
zones = ["cdn.example.net."]
xdp_interfaces = ["unused0"]
[api]
listen = "127.0.0.1:0"
token = "bench"
[store]
path = "/nonexistent.db"
[rrl]
enabled = false
[[proxy]]
name = "edge-1"
addresses = ["198.51.100.10", "2001:db8:100::10"]
capacity_rps = 1000
[[customer]]
id = "shop"
names = ["shop.cdn.example.net.", "www.a-rather-longer-customer-label.shop.cdn.example.net."]
origin_addresses = ["203.0.113.10", "2001:db8:200::10"]
overflow = "origin"
fraction = 1.0
ttl = 30
"#;

const SHORT: &str = "shop.cdn.example.net.";
const LONG: &str = "www.a-rather-longer-customer-label.shop.cdn.example.net.";

/// One measured query shape.
struct Case {
    label: &'static str,
    ipv6: bool,
    qtype: u16,
    name: &'static str,
    edns: bool,
    /// What the program must do with it.
    action: u32,
}

const CASES: [Case; 7] = [
    Case { label: "A, IPv4", ipv6: false, qtype: TYPE_A, name: SHORT, edns: false, action: fixture::XDP_TX },
    Case { label: "AAAA, IPv6", ipv6: true, qtype: TYPE_AAAA, name: SHORT, edns: false, action: fixture::XDP_TX },
    Case { label: "A, IPv4, EDNS", ipv6: false, qtype: TYPE_A, name: SHORT, edns: true, action: fixture::XDP_TX },
    Case {
        label: "A, IPv4, 58-byte name",
        ipv6: false,
        qtype: TYPE_A,
        name: LONG,
        edns: false,
        action: fixture::XDP_TX,
    },
    Case {
        label: "NXDOMAIN, IPv4",
        ipv6: false,
        qtype: TYPE_A,
        name: "nx.cdn.example.net.",
        edns: false,
        action: fixture::XDP_TX,
    },
    Case { label: "NODATA (MX), IPv4", ipv6: false, qtype: TYPE_MX, name: SHORT, edns: false, action: fixture::XDP_TX },
    Case {
        label: "passed (not our zone)",
        ipv6: false,
        qtype: TYPE_A,
        name: "nx.example.org.",
        edns: false,
        action: fixture::XDP_PASS,
    },
];

const REPEAT: u32 = 1_000_000;
const ROUNDS: usize = 5;

/// A frame whose reply is again a valid query: same MAC, address and port on both sides.
fn symmetric_frame(case: &Case) -> Vec<u8> {
    let mut query = Query::new(case.name, case.qtype);
    if case.edns {
        query = query.edns(Edns::new(1232));
    }
    let dns = query.bytes();
    let mac = [0x02, 0, 0, 0, 0, 1];
    let b = etherparse::PacketBuilder::ethernet2(mac, mac);
    let mut out = Vec::new();
    if case.ipv6 {
        let a = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x53];
        b.ipv6(a, a, 64).udp(53, 53).write(&mut out, &dns).expect("frame");
    } else {
        b.ipv4([192, 0, 2, 53], [192, 0, 2, 53], 64).udp(53, 53).write(&mut out, &dns).expect("frame");
    }
    out
}

/// Median ns per run over ROUNDS calls of REPEAT runs.
fn measure(dp: &Dataplane, prog: &'static str, frame: &[u8], action: u32) -> f64 {
    let fd = dp.program_fd(prog).expect("fd");
    let first = test_run(fd, &TestRunOptions::new(frame)).expect("test run");
    assert_eq!(first.return_value, action, "{prog}: unexpected action on the benchmark frame");
    let mut samples: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let opts = TestRunOptions { repeat: REPEAT, ..TestRunOptions::new(frame) };
            test_run(fd, &opts).expect("test run").duration
        })
        .collect();
    samples.sort();
    // The kernel reports whole nanoseconds per run.
    samples[ROUNDS / 2].as_nanos() as f64
}

fn main() {
    let (mut dp, catalog) = fixture::load(CONFIG, LoadOptions { bench_replay: true, ..Default::default() });
    let shop = &catalog.customers()[0];
    let (short, long) = (key_of(SHORT).expect("name"), key_of(LONG).expect("name"));
    assert!(shop.keys.contains(&short) && shop.keys.contains(&long), "the config holds both queried names");
    let mut loaded = shop.keys.len();
    let mut results = Vec::new();
    println!("{:>9}  {:<22} {:>9} {:>13} {:>7}", "names", "query", "program", "XDP_TX floor", "ratio");
    for names in [1, 10_000, 1_000_000] {
        while loaded < names {
            let key = key_of(&format!("n{loaded}.bench.cdn.example.net.")).expect("name");
            dp.set_name(key, shop.index).expect("insert name");
            loaded += 1;
        }
        for case in &CASES {
            // One name: take out the name this case does not query, and put it back after.
            let other = if case.name == LONG { short } else { long };
            if names == 1 {
                dp.remove_name(other).expect("remove name");
            }
            let frame = symmetric_frame(case);
            // Interleave floor and program so both see the same machine state.
            let floor = measure(&dp, program::TX_FLOOR, &frame, fixture::XDP_TX);
            let program = measure(&dp, program::DNS, &frame, case.action);
            if names == 1 {
                dp.set_name(other, shop.index).expect("restore name");
            }
            println!("{names:>9}  {:<22} {program:>6.0} ns {floor:>10.0} ns {:>6.2}x", case.label, program / floor);
            results.push(json!({
                "names": names, "query": case.label, "program_ns": program, "floor_ns": floor,
                "ratio": program / floor, "repeat": REPEAT, "rounds": ROUNDS, "statistic": "median",
            }));
        }
    }
    // With 1 000 000 names, the A and AAAA cases again under a setting: `what` labels them.
    let mut variant = |dp: &Dataplane, what: &str, tag: (&str, serde_json::Value)| {
        for case in &CASES[..2] {
            let frame = symmetric_frame(case);
            let floor = measure(dp, program::TX_FLOOR, &frame, fixture::XDP_TX);
            let program = measure(dp, program::DNS, &frame, case.action);
            let label = format!("{}, {what}", case.label);
            println!("{loaded:>9}  {label:<22} {program:>6.0} ns {floor:>10.0} ns {:>6.2}x", program / floor);
            let mut row = json!({
                "names": loaded, "query": label, "program_ns": program, "floor_ns": floor,
                "ratio": program / floor, "repeat": REPEAT, "rounds": ROUNDS, "statistic": "median",
            });
            row[tag.0] = tag.1.clone();
            results.push(row);
        }
    };
    // The rate limit's own cost: on, at a rate the runs never reach, so every answer reads the
    // clock and looks up and updates its bucket.
    let never = RrlParams { rate: i32::MAX as u32, window_s: 1, slip: 2, _pad: 0 };
    dp.set_rrl(&never, &[]).expect("rate limit on");
    variant(&dp, "rate limit on", ("rrl", json!(true)));
    dp.set_rrl(&RrlParams::OFF, &[]).expect("rate limit off");
    // Drawn per resolver: the draw is a hash of the source's prefix, and each answer counts
    // the prefix in the per-CPU LRU map (one lookup and an increment once it is there).
    let by_resolver = CustomerRecord { draw: draw::RESOLVER, ..shop.record };
    dp.set_customer(shop.index, &by_resolver).expect("per resolver");
    variant(&dp, "per resolver", ("draw", json!("resolver")));
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir).expect("target/bench");
    let out = dir.join("results.json");
    let doc = json!({ "microbench": results, "command": "cargo xtask bench" });
    std::fs::write(&out, serde_json::to_string_pretty(&doc).expect("json")).expect("write results");
    println!("wrote {}", out.display());
}
