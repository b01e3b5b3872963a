//! BPF_PROG_TEST_RUN cost of the XDP program per answered query, next to a program that only
//! returns XDP_TX, measured in the same run, with 1, 100 000 and 1 000 000 names in the map.
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
[[proxy]]
name = "edge-1"
addresses = ["198.51.100.10", "2001:db8:100::10"]
capacity_rps = 1000
[[customer]]
id = "shop"
names = ["shop.cdn.example.net."]
origin_addresses = ["203.0.113.10", "2001:db8:200::10"]
overflow = "origin"
fraction = 1.0
ttl = 30
"#;

const REPEAT: u32 = 1_000_000;
const ROUNDS: usize = 5;

/// A frame whose reply is again a valid query: same MAC, address and port on both sides.
fn symmetric_frame(ipv6: bool, qtype: u16) -> Vec<u8> {
    let dns = Query::new("shop.cdn.example.net.", qtype).bytes();
    let mac = [0x02, 0, 0, 0, 0, 1];
    let b = etherparse::PacketBuilder::ethernet2(mac, mac);
    let mut out = Vec::new();
    if ipv6 {
        let a = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x53];
        b.ipv6(a, a, 64).udp(53, 53).write(&mut out, &dns).expect("frame");
    } else {
        b.ipv4([192, 0, 2, 53], [192, 0, 2, 53], 64).udp(53, 53).write(&mut out, &dns).expect("frame");
    }
    out
}

/// Median ns per run over ROUNDS calls of REPEAT runs.
fn measure(dp: &Dataplane, prog: &'static str, frame: &[u8]) -> f64 {
    let fd = dp.program_fd(prog).expect("fd");
    let first = test_run(fd, &TestRunOptions::new(frame)).expect("test run");
    assert_eq!(first.return_value, fixture::XDP_TX, "{prog} must answer the benchmark frame");
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
    let (mut dp, _) = fixture::load(CONFIG, LoadOptions { bench_replay: true });
    let cases = [("A over IPv4", false, TYPE_A), ("AAAA over IPv6", true, TYPE_AAAA)];
    let mut results = Vec::new();
    let mut loaded = 1usize;
    for names in [1usize, 100_000, 1_000_000] {
        while loaded < names {
            let key = key_of(&format!("n{loaded}.bench.cdn.example.net.")).expect("name");
            dp.set_name(key, 0).expect("insert name");
            loaded += 1;
        }
        for (label, ipv6, qtype) in cases {
            let frame = symmetric_frame(ipv6, qtype);
            // Interleave floor and program so both see the same machine state.
            let floor = measure(&dp, program::TX_FLOOR, &frame);
            let answer = measure(&dp, program::DNS, &frame);
            println!(
                "{names:>9} names  {label:<16} answer {answer:>6.1} ns  XDP_TX floor {floor:>5.1} ns  ratio {:.2}x",
                answer / floor
            );
            results.push(json!({
                "names": names, "query": label, "answer_ns": answer, "floor_ns": floor, "ratio": answer / floor,
                "repeat": REPEAT, "rounds": ROUNDS, "statistic": "median",
            }));
        }
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir).expect("target/bench");
    let out = dir.join("results.json");
    let doc = json!({ "microbench": results, "command": "cargo xtask bench" });
    std::fs::write(&out, serde_json::to_string_pretty(&doc).expect("json")).expect("write results");
    println!("wrote {}", out.display());
}
