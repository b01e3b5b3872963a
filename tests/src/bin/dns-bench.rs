//! `cargo xtask bench`, end to end: the same zone served in turn by Spillway (XDP path, with
//! the userspace server for what XDP passes on), Spillway's userspace server alone, Knot DNS
//! and NSD, in a private two-namespace veth topology, loaded by dnsperf from the other
//! namespace. For each: qps at < 0.1% loss (the highest of a few rates), latency, and the
//! server's CPU per million answers, each server in two placements (unpinned; and server and
//! its veth's NAPI thread on CPU 0, the generator on CPU 1), reported in its best. Adds a
//! "servers" list (the best) and "servers_all_placements" to target/bench/results.json and
//! writes target/bench/servers.md and servers.png.
//!
//! The client's veth carries the pass-through XDP program for every server alike (native
//! XDP_TX on veth needs it; it slows socket clients such as dnsperf).

use std::{
    net::UdpSocket,
    path::Path,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use spillway_tests::{
    daemon::{Daemon, attach_peer},
    dnswire::{Query, TYPE_A},
    netns::{Proc, SERVER_ADDR4, Topology, spillway_bin},
    peers,
};

const NAMES: usize = 1000;
const RUN_S: u32 = 5;
const ZONE_APEX: &str = "cdn.example.net.";
const PROXY4: &str = "198.51.100.10";
const PROXY6: &str = "2001:db8:100::10";

/// Spillway: one customer with every name, always answered with the proxy (fraction 1).
fn spillway_config(xdp_if: Option<&str>) -> String {
    let names: Vec<String> = (0..NAMES).map(|i| format!("\"c{i}.{ZONE_APEX}\"")).collect();
    let xdp = xdp_if.map(|i| format!("\"{i}\"")).unwrap_or_default();
    format!(
        r#"
[server]
zones = ["{ZONE_APEX}"]
nameservers = ["ns1.{ZONE_APEX}"]
glue = {{ "ns1.{ZONE_APEX}" = ["192.0.2.53"] }}
listen = ["{SERVER_ADDR4}:53"]
xdp_interfaces = [{xdp}]
[api]
listen = "{SERVER_ADDR4}:8053"
token = "bench"
[store]
path = "@DIR@/spillway.db"
[rrl]
enabled = false
[[proxy]]
name = "edge-1"
addresses = ["{PROXY4}", "{PROXY6}"]
capacity_rps = 1000000
[[customer]]
id = "bench"
names = [{}]
origin_addresses = ["203.0.113.10"]
overflow = "origin"
fraction = 1.0
ttl = 30
"#,
        names.join(", ")
    )
}

/// The same data as a zone file for Knot and NSD.
fn zone() -> String {
    let mut z = format!(
        "$TTL 3600\n{ZONE_APEX} 3600 IN SOA ns1.{ZONE_APEX} hostmaster.{ZONE_APEX} 1 3600 600 604800 60\n\
         {ZONE_APEX} 3600 IN NS ns1.{ZONE_APEX}\nns1.{ZONE_APEX} 300 IN A 192.0.2.53\n"
    );
    for i in 0..NAMES {
        z.push_str(&format!("c{i}.{ZONE_APEX} 30 IN A {PROXY4}\nc{i}.{ZONE_APEX} 30 IN AAAA {PROXY6}\n"));
    }
    z
}

/// A and AAAA for the customer names, and one in ten for names that do not exist.
fn queries() -> String {
    let mut q = String::new();
    for i in 0..NAMES * 10 {
        if i % 10 == 9 {
            q.push_str(&format!("nx{i}.{ZONE_APEX} A\n"));
        } else {
            let t = if i % 2 == 0 { "A" } else { "AAAA" };
            q.push_str(&format!("c{}.{ZONE_APEX} {t}\n", i % NAMES));
        }
    }
    q
}

/// CPU seconds used so far by a process and all its descendants (NSD forks its servers).
/// CPU seconds of the daemon's threads, split by name: its DNS threads (`dns-udp-N`,
/// `dns-tcp-N`) and all the others (API, market, store, main).
fn thread_cpu_s(pid: u32) -> (f64, f64) {
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let (mut dns, mut rest) = (0.0, 0.0);
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return (0.0, 0.0) };
    for e in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
        let Some((head, rest_f)) = stat.rsplit_once(')') else { continue };
        let comm = head.split_once('(').map_or("", |(_, c)| c);
        let f: Vec<&str> = rest_f.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let s = (num(11) + num(12)) as f64 / tick;
        if comm.starts_with("dns-") { dns += s } else { rest += s }
    }
    (dns, rest)
}

fn cpu_s(pid: u32) -> f64 {
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    // pid -> (ppid, utime + stime)
    let mut procs: Vec<(u32, u32, u64)> = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0.0 };
    for e in dir.flatten() {
        let Ok(this) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
        // Fields after the command's closing parenthesis: state ppid ... utime(14) stime(15).
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        procs.push((this, num(1) as u32, num(11) + num(12)));
    }
    let mut tree = vec![pid];
    let mut grew = true;
    while grew {
        grew = false;
        for &(p, pp, _) in &procs {
            if tree.contains(&pp) && !tree.contains(&p) {
                tree.push(p);
                grew = true;
            }
        }
    }
    procs.iter().filter(|(p, _, _)| tree.contains(p)).map(|(_, _, t)| *t).sum::<u64>() as f64 / tick
}

/// One CPU's seconds in some states, from /proc/stat. The XDP program runs in softirq; where it
/// lands, and how busy each CPU was, says which CPU limits a run (kxdpgun is pinned to CPU 1).
#[derive(Clone, Copy)]
struct CpuTimes {
    softirq_s: f64,
    /// Idle and iowait.
    idle_s: f64,
    /// All states.
    total_s: f64,
}

impl CpuTimes {
    /// Seconds so far, per CPU.
    fn now() -> Vec<CpuTimes> {
        let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        stat.lines()
            .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
            .map(|l| {
                // user nice system idle iowait irq softirq steal (guest time is inside user).
                let f: Vec<f64> =
                    l.split_whitespace().skip(1).take(8).map(|v| v.parse().unwrap_or(0.0) / tick).collect();
                let at = |i: usize| f.get(i).copied().unwrap_or(0.0);
                CpuTimes { softirq_s: at(6), idle_s: at(3) + at(4), total_s: f.iter().sum() }
            })
            .collect()
    }

    /// The seconds spent between `earlier` and `self`.
    fn since(self, earlier: CpuTimes) -> CpuTimes {
        CpuTimes {
            softirq_s: self.softirq_s - earlier.softirq_s,
            idle_s: self.idle_s - earlier.idle_s,
            total_s: self.total_s - earlier.total_s,
        }
    }

    /// The share of the time that the CPU was not idle.
    fn busy_share(&self) -> f64 {
        if self.total_s > 0.0 { 1.0 - self.idle_s / self.total_s } else { 0.0 }
    }
}

/// Run time and run count so far of the XDP program attached to the server's veth (Spillway's,
/// or Knot's redirect to its AF_XDP sockets), from the kernel's BPF statistics.
fn server_xdp_stats(topo: &Topology) -> (f64, f64) {
    let link = topo.server.exec(&["ip", "-j", "link", "show", "dev", &topo.server_if]);
    let link: Value = serde_json::from_slice(&link.stdout).unwrap_or(Value::Null);
    let Some(id) = link[0]["xdp"]["prog"]["id"].as_u64() else { return (0.0, 0.0) };
    let prog = std::process::Command::new("bpftool")
        .args(["-j", "prog", "show", "id", &id.to_string()])
        .output()
        .map(|o| serde_json::from_slice::<Value>(&o.stdout).unwrap_or(Value::Null))
        .unwrap_or(Value::Null);
    (prog["run_time_ns"].as_f64().unwrap_or(0.0), prog["run_cnt"].as_f64().unwrap_or(0.0))
}

/// What the server spent on a run: process CPU seconds (its whole process tree) and the
/// seconds and runs of its XDP program.
struct ServerCost {
    cpu_s: f64,
    xdp_s: f64,
    xdp_runs: f64,
    /// Per CPU, over the run.
    cpus: Vec<CpuTimes>,
}

/// Measure `load` and the server's cost around it.
fn costed<R>(topo: &Topology, pid: Option<u32>, load: impl FnOnce() -> R) -> (R, ServerCost) {
    let (c0, t0, (x0, n0)) = (pid.map_or(0.0, cpu_s), CpuTimes::now(), server_xdp_stats(topo));
    let r = load();
    let (c1, t1, (x1, n1)) = (pid.map_or(0.0, cpu_s), CpuTimes::now(), server_xdp_stats(topo));
    let cpus = t1.iter().zip(&t0).map(|(b, a)| b.since(*a)).collect();
    (r, ServerCost { cpu_s: c1 - c0, xdp_s: (x1 - x0) / 1e9, xdp_runs: n1 - n0, cpus })
}

impl ServerCost {
    /// The JSON fields for `answers` answers.
    fn fields(&self, answers: f64) -> Value {
        let per_m = |s: f64| if answers > 0.0 { s / answers * 1e6 } else { 0.0 };
        json!({
            "cpu_s_per_million": per_m(self.cpu_s + self.xdp_s),
            "process_cpu_s_per_million": per_m(self.cpu_s),
            "xdp_cpu_s_per_million": per_m(self.xdp_s),
            "xdp_ns_per_packet": if self.xdp_runs > 0.0 { self.xdp_s * 1e9 / self.xdp_runs } else { 0.0 },
            "softirq_s_per_million": per_m(self.softirq_s()),
            "softirq_s_per_cpu": self.cpus.iter().map(|c| c.softirq_s).collect::<Vec<_>>(),
            "busy_share_per_cpu": self.cpus.iter().map(CpuTimes::busy_share).collect::<Vec<_>>(),
        })
    }

    fn describe(&self) -> String {
        let per_run = if self.xdp_runs > 0.0 { self.xdp_s * 1e9 / self.xdp_runs } else { 0.0 };
        format!(
            "cpu {:.2} s  xdp {:.2} s ({per_run:.0} ns/pkt)  softirq {:.2} s  per CPU softirq/busy {}",
            self.cpu_s,
            self.xdp_s,
            self.softirq_s(),
            self.cpus
                .iter()
                .map(|c| format!("{:.2} s/{:.0}%", c.softirq_s, c.busy_share() * 100.0))
                .collect::<Vec<_>>()
                .join(" ")
        )
    }

    fn softirq_s(&self) -> f64 {
        self.cpus.iter().map(|c| c.softirq_s).sum()
    }
}

/// Round-trip times seen by a probe sending one query at a time alongside the load.
#[derive(Debug, Default, Clone)]
struct Latency {
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    samples: usize,
    lost: usize,
}

/// Every millisecond, one A query for a customer name from its own socket in the client
/// namespace, waiting up to 200 ms for the answer, until `stop`. dnsperf 2.10 prints only the
/// mean and deviation and kxdpgun no latency at all; the probe measures both loads alike.
fn probe(stop: Arc<AtomicBool>) -> Latency {
    // With a CPU kept for DNS, the probe (a client's round trip, light) runs there too, as
    // dnsperf does: on the market's CPU its own wake-ups would be what it measures.
    if reserve_dns_cpu() {
        pin_to(DNS_CPU);
    } else if threaded_napi_mode() {
        pin_to(GENERATOR_CPU);
    }
    let sock = UdpSocket::bind("0.0.0.0:0").expect("probe socket");
    sock.connect((SERVER_ADDR4, 53)).expect("probe connect");
    sock.set_read_timeout(Some(Duration::from_millis(200))).expect("probe timeout");
    let (mut rtts, mut lost, mut buf) = (Vec::new(), 0, [0u8; 1500]);
    let mut id: u16 = 0;
    while !stop.load(Ordering::Relaxed) {
        id = id.wrapping_add(1);
        let mut q = Query::new(&format!("c{}.{ZONE_APEX}", id as usize % NAMES), TYPE_A);
        q.id = id;
        let t0 = Instant::now();
        if sock.send(&q.bytes()).is_err() {
            lost += 1;
            continue;
        }
        let answered = loop {
            match sock.recv(&mut buf) {
                // A late answer to an earlier probe is skipped.
                Ok(n) if n >= 2 && buf[..2] == id.to_be_bytes() => break true,
                Ok(_) => continue,
                Err(_) => break false,
            }
        };
        if answered {
            rtts.push(t0.elapsed().as_secs_f64() * 1e3);
        } else {
            lost += 1;
        }
        std::thread::sleep(Duration::from_millis(1).saturating_sub(t0.elapsed()));
    }
    rtts.sort_by(f64::total_cmp);
    let pct = |p: f64| (!rtts.is_empty()).then(|| rtts[((rtts.len() - 1) as f64 * p).round() as usize]);
    Latency { p50_ms: pct(0.5), p99_ms: pct(0.99), samples: rtts.len(), lost }
}

/// Run `load` with the probe going in the client namespace.
fn probed<R>(topo: &Topology, load: impl FnOnce() -> R) -> (R, Latency) {
    let stop = Arc::new(AtomicBool::new(false));
    std::thread::scope(|s| {
        let flag = stop.clone();
        let h = s.spawn(|| topo.client.run(move || probe(flag)));
        let r = load();
        stop.store(true, Ordering::Relaxed);
        (r, h.join().expect("probe thread"))
    })
}

impl Latency {
    fn describe(&self) -> String {
        let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.3}"));
        format!(
            "probe p50 {} p99 {} ms ({} answered, {} lost)",
            ms(self.p50_ms),
            ms(self.p99_ms),
            self.samples,
            self.lost
        )
    }
}

#[derive(Debug, Default, Clone)]
struct Run {
    sent: f64,
    completed: f64,
    qps: f64,
    avg_ms: f64,
}

impl Run {
    fn loss_pct(&self) -> f64 {
        if self.sent > 0.0 { (self.sent - self.completed) / self.sent * 100.0 } else { 100.0 }
    }
}

fn field(out: &str, key: &str) -> f64 {
    out.lines()
        .find_map(|l| l.trim().strip_prefix(key))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn dnsperf(topo: &Topology, file: &Path, max_qps: Option<f64>) -> Run {
    let secs = RUN_S.to_string();
    let q = max_qps.map(|q| (q as u64).to_string());
    let mut argv = vec!["dnsperf", "-s", SERVER_ADDR4, "-d", file.to_str().unwrap_or(""), "-l", &secs];
    argv.extend(["-c", "16", "-T", "2", "-q", "1000", "-t", "1"]);
    if let Some(q) = &q {
        argv.extend(["-Q", q]);
    }
    let out = std::thread::scope(|s| {
        s.spawn(|| {
            if reserve_dns_cpu() {
                pin_to(DNS_CPU);
            } else if threaded_napi_mode() {
                pin_to(GENERATOR_CPU);
            }
            topo.client.exec(&argv)
        })
        .join()
        .expect("dnsperf thread")
    });
    let text = String::from_utf8_lossy(&out.stdout);
    Run {
        sent: field(&text, "Queries sent:"),
        completed: field(&text, "Queries completed:"),
        qps: field(&text, "Queries per second:"),
        avg_ms: field(&text, "Average Latency (s):") * 1e3,
    }
}

/// One server under one generator, as results.json and the table have it.
#[allow(clippy::too_many_arguments)]
fn entry(
    server: &str,
    generator: &str,
    qps: f64,
    loss_pct: f64,
    offered: Option<f64>,
    answers: f64,
    lat: &Latency,
    cost: &ServerCost,
    avg_ms: Option<f64>,
) -> Value {
    let mut v = json!({
        "server": server,
        "generator": generator,
        "qps": qps,
        "loss_pct": loss_pct,
        "offered_limit_qps": offered,
        "met_loss_target": loss_pct < 0.1,
        "latency_p50_ms": lat.p50_ms,
        "latency_p99_ms": lat.p99_ms,
        "latency_probe_samples": lat.samples,
        "latency_probe_lost": lat.lost,
        "generator_avg_latency_ms": avg_ms,
    });
    if let (Value::Object(m), Value::Object(c)) = (&mut v, cost.fields(answers)) {
        m.extend(c);
    }
    v
}

/// The highest rate with < 0.1% loss among: unlimited, then 90%, 75%, 60%, 45% of what the
/// unlimited run achieved, with the server's cost and the probe's latency over that run.
fn measure(topo: &Topology, file: &Path, name: &str, pid: u32) -> Value {
    let mut first_qps = 0.0;
    for step in [1.0, 0.9, 0.75, 0.6, 0.45] {
        let limit = (step < 1.0).then_some(first_qps * step);
        let ((run, lat), cost) = costed(topo, Some(pid), || probed(topo, || dnsperf(topo, file, limit)));
        if step == 1.0 {
            first_qps = run.qps;
        }
        println!(
            "  {name:<20} dnsperf limit {:>9}  qps {:>9.0}  loss {:>6.3}%  {}  {}",
            limit.map_or("none".to_owned(), |l| format!("{l:.0}")),
            run.qps,
            run.loss_pct(),
            lat.describe(),
            cost.describe()
        );
        if run.loss_pct() < 0.1 || step == 0.45 {
            return entry(
                name,
                "dnsperf",
                run.qps,
                run.loss_pct(),
                limit,
                run.completed,
                &lat,
                &cost,
                Some(run.avg_ms),
            );
        }
    }
    unreachable!("the last step returns")
}

/// kxdpgun (AF_XDP) from the client namespace at `qps` for RUN_S seconds, pinned to CPU 1;
/// returns (sent, answered). It attaches its own XDP program on the client's veth and leaves
/// it there: it is detached afterwards.
fn kxdpgun(topo: &Topology, file: &Path, qps: u64) -> (f64, f64) {
    let (secs, rate) = (RUN_S.to_string(), qps.to_string());
    let out = topo.client.exec(&[
        "kxdpgun",
        "-t",
        &secs,
        "-Q",
        &rate,
        "-b",
        "64",
        "-F",
        "1",
        "-i",
        file.to_str().unwrap_or(""),
        "-I",
        &topo.client_if,
        SERVER_ADDR4,
    ]);
    let _ = topo.client.exec(&["ip", "link", "set", "dev", &topo.client_if, "xdp", "off"]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let count = |key: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (count("total queries:"), count("total replies:"))
}

/// The highest offered rate answered with < 0.1% loss under kxdpgun: a descending ladder,
/// then three bisection steps between the first rate that passed and the one above it.
fn measure_kxdpgun(topo: &Topology, file: &Path, name: &str, pid: Option<u32>) -> Value {
    let ladder =
        [2_000_000u64, 1_400_000, 1_000_000, 700_000, 500_000, 350_000, 250_000, 150_000, 100_000, 70_000, 50_000];
    let run = |q: u64| {
        // No probe here: kxdpgun's XDP program on the client's veth takes every UDP reply,
        // the probe's too, and kxdpgun reports no latency itself.
        let lat = Latency::default();
        let ((sent, answered), cost) = costed(topo, pid, || kxdpgun(topo, file, q));
        let loss = if sent > 0.0 { (sent - answered) / sent * 100.0 } else { 100.0 };
        let qps = answered / f64::from(RUN_S);
        println!("  {name:<20} kxdpgun offered {q:>9}  answered {qps:>9.0}/s  loss {loss:>6.3}%  {}", cost.describe());
        let ok = sent > 0.0 && loss < 0.1;
        (ok, entry(name, "kxdpgun", qps, loss, Some(q as f64), answered, &lat, &cost, None))
    };
    let mut above = None;
    for (k, &q) in ladder.iter().enumerate() {
        let (ok, mut best) = run(q);
        if !ok && k + 1 < ladder.len() {
            above = Some(q);
            continue;
        }
        if let (true, Some(mut hi)) = (ok, above) {
            let mut lo = q;
            for _ in 0..3 {
                let mid = (lo + hi) / 2;
                let (ok, e) = run(mid);
                if ok {
                    (lo, best) = (mid, e);
                } else {
                    hi = mid;
                }
            }
        }
        return best;
    }
    unreachable!("the last rate returns")
}

/// Turns the kernel's per-program run time accounting on for the bench and back off after.
struct BpfStats;

impl BpfStats {
    fn enable() -> Self {
        let _ = std::fs::write(BPF_STATS, "1");
        BpfStats
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = std::fs::write(BPF_STATS, "0");
    }
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// `--threaded-napi`: the end-to-end runs with the server (its process, and its veth's NAPI as
/// a kernel thread, see [`ThreadedNapi`]) on one CPU and the generator (dnsperf or kxdpgun,
/// and the probe) on the other, so that the server's XDP work is not paid in the generator's
/// softirq. Without it, only kxdpgun is pinned (`-F 1`) and the rest runs where the scheduler
/// puts it.
fn threaded_napi_mode() -> bool {
    THREADED_NAPI.load(Ordering::Relaxed)
}
/// The placement of the pass in progress (see [`placements`]).
static THREADED_NAPI: AtomicBool = AtomicBool::new(false);

/// The placements to measure every server in: both unless `--threaded-napi` or `--unpinned`
/// asks for one. With both, each server and generator is reported in its best.
fn placements() -> Vec<bool> {
    let has = |flag: &str| std::env::args().any(|a| a == flag);
    match (has("--unpinned"), has("--threaded-napi")) {
        (true, false) => vec![false],
        (false, true) => vec![true],
        _ => vec![false, true],
    }
}

/// Mark each server and generator's entry with the most answers at the loss target as
/// `"best": true`.
fn mark_best(entries: &mut [Value]) {
    let qps = |e: &Value| e["qps"].as_f64().unwrap_or(0.0);
    for i in 0..entries.len() {
        let same = |e: &Value| e["server"] == entries[i]["server"] && e["generator"] == entries[i]["generator"];
        let best = entries.iter().filter(|e| same(e)).all(|e| qps(e) <= qps(&entries[i]));
        let first_best = entries[..i].iter().filter(|e| same(e)).all(|e| qps(e) < qps(&entries[i]));
        entries[i]["best"] = json!(best && first_best);
    }
}
const SERVER_CPU: usize = 0;
const GENERATOR_CPU: usize = 1;

/// The server veth's NAPI as kernel threads (`napi/IF-N`: `ethtool -K IF gro on`, then
/// `threaded` = 1), pinned to SERVER_CPU. Without it the veth's receive work, and with it the
/// XDP program, runs in the softirq of the generator that sent the frame, on the generator's
/// CPU. Switched back off on drop.
struct ThreadedNapi<'a> {
    topo: &'a Topology,
    pids: Vec<u32>,
}

impl<'a> ThreadedNapi<'a> {
    fn start(topo: &'a Topology) -> Result<Self, String> {
        let iface = &topo.server_if;
        let gro = topo.server.exec(&["ethtool", "-K", iface, "gro", "on"]);
        if !gro.status.success() {
            return Err(format!("ethtool -K {iface} gro on: {}", String::from_utf8_lossy(&gro.stderr)));
        }
        topo.server.exec_ok(&["sh", "-c", &format!("echo 1 > /sys/class/net/{iface}/threaded")]);
        let prefix = format!("napi/{iface}-");
        let deadline = Instant::now() + Duration::from_secs(2);
        let pids = loop {
            let pids = kernel_threads(&prefix);
            if !pids.is_empty() || Instant::now() > deadline {
                break pids;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if pids.is_empty() {
            return Err(format!("no {prefix}* thread after `threaded` = 1"));
        }
        for pid in &pids {
            let out = Command::new("taskset").args(["-pc", &SERVER_CPU.to_string(), &pid.to_string()]).output();
            if !out.is_ok_and(|o| o.status.success()) {
                return Err(format!("taskset -pc {SERVER_CPU} {pid} failed"));
            }
        }
        Ok(Self { topo, pids })
    }

    /// Each NAPI thread's CPU time so far (s) and the CPU it last ran on.
    fn threads(&self) -> Vec<(u32, f64, Option<u32>)> {
        self.pids.iter().map(|&p| (p, thread_cpu_time(p), last_cpu(p))).collect()
    }
}

impl Drop for ThreadedNapi<'_> {
    fn drop(&mut self) {
        let iface = &self.topo.server_if;
        let _ = self.topo.server.exec(&["sh", "-c", &format!("echo 0 > /sys/class/net/{iface}/threaded")]);
    }
}

/// Kernel threads whose name starts with `prefix`.
fn kernel_threads(prefix: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.starts_with(prefix)))
        .collect()
}

/// Fields of /proc/PID/stat after the command name.
fn stat_fields(pid: u32) -> Vec<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    text.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().map(str::to_owned).collect()).unwrap_or_default()
}

/// utime + stime of a thread, in seconds.
fn thread_cpu_time(pid: u32) -> f64 {
    let f = stat_fields(pid);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / hz
}

/// The CPU a thread last ran on (field 39 of /proc/PID/stat).
fn last_cpu(pid: u32) -> Option<u32> {
    stat_fields(pid).get(36).and_then(|v| v.parse().ok())
}

/// Keep every thread of `pid` on `cpu`.
fn pin_process(pid: u32, cpu: usize) -> Result<(), String> {
    let out = Command::new("taskset").args(["-a", "-pc", &cpu.to_string(), &pid.to_string()]).output();
    match out {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!("taskset -a -pc {cpu} {pid}: {}", String::from_utf8_lossy(&o.stderr))),
        Err(e) => Err(format!("taskset: {e}")),
    }
}

/// Measure one server under both generators with the placement above, and record it in each
/// entry: the CPUs, and the NAPI threads' CPU time and CPU over the runs.
fn placed(topo: &Topology, pid: u32, measure: impl FnOnce() -> Vec<Value>) -> Result<Vec<Value>, String> {
    if !threaded_napi_mode() {
        let mut entries = measure();
        for e in &mut entries {
            e["placement"] = json!({"generator_cpu": "kxdpgun -F 1, dnsperf unpinned", "threaded_napi": false});
        }
        return Ok(entries);
    }
    pin_process(pid, SERVER_CPU)?;
    let napi = ThreadedNapi::start(topo)?;
    let before = napi.threads();
    let mut entries = measure();
    let after = napi.threads();
    let threads: Vec<Value> =
        before.iter().zip(&after).map(|(b, a)| json!({"pid": a.0, "cpu_s": a.1 - b.1, "last_cpu": a.2})).collect();
    for e in &mut entries {
        e["placement"] = json!({
            "server_cpu": SERVER_CPU, "generator_cpu": GENERATOR_CPU,
            "threaded_napi": true, "napi_threads_over_both_generators": threads,
        });
    }
    println!(
        "  placement: server and NAPI on CPU {SERVER_CPU}, generator on CPU {GENERATOR_CPU}; NAPI threads {threads:?}"
    );
    Ok(entries)
}

fn run_all() -> Result<Vec<Value>, String> {
    let _stats = BpfStats::enable();
    let topo = Topology::new();
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let file = dir.path().join("queries.txt");
    std::fs::write(&file, queries()).map_err(|e| e.to_string())?;
    println!("end to end: {NAMES} names, dnsperf (16 clients, 2 threads, {RUN_S} s runs), 10% NXDOMAIN");
    let mut out = Vec::new();
    for (name, xdp) in [("spillway-xdp", true), ("spillway-userspace", false)] {
        let mut d = Daemon::start(&topo, &spillway_config(xdp.then_some(topo.server_if.as_str())))?;
        let pid = d.proc.pid();
        out.extend(placed(&topo, pid, || {
            let first = measure(&topo, &file, name, pid);
            // kxdpgun brings its own program for the client's veth.
            d.peer.take();
            vec![first, measure_kxdpgun(&topo, &file, name, Some(pid))]
        })?);
    }
    type Start = fn(&Topology, &Path, &str, &str, Option<&str>) -> Result<Proc, String>;
    let servers: [(&str, Start, bool); 3] = [
        ("knot", peers::knot, false),
        ("knot-xdp", peers::knot, true),
        ("nsd", |t, d, o, z, _| peers::nsd(t, d, o, z), false),
    ];
    for (name, start, xdp) in servers {
        let sub = dir.path().join(name);
        std::fs::create_dir_all(&sub).map_err(|e| e.to_string())?;
        let peer = attach_peer(&topo)?;
        let proc = match start(&topo, &sub, ZONE_APEX, &zone(), xdp.then_some(topo.server_if.as_str())) {
            Ok(p) => p,
            Err(e) if xdp => {
                println!("  {name}: not measured ({e})");
                continue;
            }
            Err(e) => return Err(e),
        };
        let pid = proc.pid();
        out.extend(placed(&topo, pid, || {
            let first = measure(&topo, &file, name, pid);
            drop(peer);
            vec![first, measure_kxdpgun(&topo, &file, name, Some(pid))]
        })?);
        drop(proc);
        // Knot in XDP mode leaves its program on the server's veth.
        let _ = topo.server.exec(&["ip", "link", "set", "dev", &topo.server_if, "xdp", "off"]);
    }
    Ok(out)
}

fn markdown(servers: &[Value]) -> String {
    let xdp = |generator: &Value, key: &str| {
        servers
            .iter()
            .find(|s| s["server"] == "spillway-xdp" && &s["generator"] == generator)
            .and_then(|s| s[key].as_f64())
            .unwrap_or(0.0)
    };
    let ms = |v: &Value| v.as_f64().map_or("-".to_owned(), |v| format!("{v:.2}"));
    let mut md = String::from(
        "| server | generator | placement | qps at < 0.1% loss | loss | latency p50 / p99 (ms, probe) | server CPU µs per answer | of it XDP program | XDP ns per packet | Spillway XDP qps / this | this CPU per answer / Spillway XDP's |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for s in servers {
        let qps = s["qps"].as_f64().unwrap_or(0.0);
        let cpu = s["cpu_s_per_million"].as_f64().unwrap_or(0.0);
        let xdp_cpu = xdp(&s["generator"], "cpu_s_per_million");
        md.push_str(&format!(
            "| {} | {} | {} | {:.0}{} | {:.3}% | {} / {} | {:.2} | {:.2} | {} | {:.2}x | {:.1}x |\n",
            s["server"].as_str().unwrap_or(""),
            s["generator"].as_str().unwrap_or(""),
            if s["placement"]["threaded_napi"] == json!(true) { "threaded NAPI" } else { "unpinned" },
            qps,
            if s["met_loss_target"].as_bool() == Some(true) { "" } else { " (loss target not met)" },
            s["loss_pct"].as_f64().unwrap_or(0.0),
            ms(&s["latency_p50_ms"]),
            ms(&s["latency_p99_ms"]),
            cpu,
            s["xdp_cpu_s_per_million"].as_f64().unwrap_or(0.0),
            s["xdp_ns_per_packet"].as_f64().filter(|v| *v > 0.0).map_or("-".to_owned(), |v| format!("{v:.0}")),
            if qps > 0.0 { xdp(&s["generator"], "qps") / qps } else { 0.0 },
            if xdp_cpu > 0.0 { cpu / xdp_cpu } else { 0.0 },
        ));
    }
    md
}

fn chart(path: &Path, servers: &[Value]) -> Result<(), String> {
    use plotters::prelude::*;
    let bars: Vec<(String, f64)> = servers
        .iter()
        .map(|s| {
            let label = format!("{} ({})", s["server"].as_str().unwrap_or(""), s["generator"].as_str().unwrap_or(""));
            (label, s["qps"].as_f64().unwrap_or(0.0))
        })
        .collect();
    let top = bars.iter().map(|b| b.1).fold(1.0, f64::max) * 1.15;
    let root = BitMapBackend::new(path, (1400, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let labels = spillway_tests::sim::plot::font_loaded();
    let mut b = ChartBuilder::on(&root);
    b.margin(15).x_label_area_size(if labels { 40 } else { 0 }).y_label_area_size(if labels { 80 } else { 0 });
    if labels {
        b.caption("qps at < 0.1% loss (same run)", ("sans-serif", 20));
    }
    let mut c = b.build_cartesian_2d((0..bars.len()).into_segmented(), 0.0..top).map_err(|e| e.to_string())?;
    if labels {
        c.configure_mesh()
            .x_label_formatter(&|x| match x {
                SegmentValue::CenterOf(i) => bars.get(*i).map(|b| b.0.clone()).unwrap_or_default(),
                _ => String::new(),
            })
            .y_desc("qps")
            .draw()
            .map_err(|e| e.to_string())?;
    }
    c.draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
        Rectangle::new([(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), *v)], BLUE.mix(0.6).filled())
    }))
    .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

/// Buyers placing orders in the market-load comparison.
const BUYERS: usize = 10;
/// Orders per second the market takes during the loaded run.
const ORDER_RATE: u64 = 1000;
/// Rounds of the three phases (idle, loaded, loaded with the clients at nice 10).
const MARKET_LOAD_ROUNDS: usize = 3;
/// The fixed query rate of both runs (the userspace server's limit here is about 70 k).
const MARKET_LOAD_QPS: f64 = 30_000.0;
/// `--reserve-dns-cpu`: the daemon's DNS threads on CPU 0 (`server.dns_cpus`), as an operator
/// would keep a CPU for DNS, with dnsperf and the probe; its other threads and the order clients
/// on CPU 1. The query generator stands in for clients on other hosts, whose packets reach the
/// edge through its NIC: on the market's CPU, its own late sends and reads would be what the
/// probe measures (with dnsperf on CPU 1 the ratio was 2.5x, and the market took 937 orders/s).
fn reserve_dns_cpu() -> bool {
    std::env::args().any(|a| a == "--reserve-dns-cpu")
}
const DNS_CPU: usize = 0;
const OTHER_CPU: usize = 1;

/// Keep the calling thread, and the threads and processes it starts, on `cpu`.
fn pin_to(cpu: usize) {
    if let Err(e) = spillway::affinity::pin_current_thread(&[cpu]) {
        eprintln!("dns-bench: keeping to CPU {cpu}: {e}");
    }
}

/// The query rate of `--market-load`: `--qps N`, else [`MARKET_LOAD_QPS`].
fn market_load_qps() -> f64 {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2).find(|w| w[0] == "--qps").and_then(|w| w[1].parse().ok()).unwrap_or(MARKET_LOAD_QPS)
}

fn market_config() -> String {
    let mut c =
        spillway_config(None).replace("token = \"bench\"", "token = \"bench\"\nwrite_rate = 500\nwrite_burst = 500");
    c.push_str(
        "\n[market]\nperiod_s = 3600\nhorizon_periods = 24\nreserve_price = 1.0\ninterval_s = 60\nassumed_own_load = 0.2\n",
    );
    for i in 0..BUYERS {
        c.push_str(&format!(
            "\n[[customer]]\nid = \"buyer{i}\"\nnames = [\"buyer{i}.{ZONE_APEX}\"]\norigin_addresses = [\"203.0.113.20\"]\n\
             overflow = \"origin\"\nfraction = 0.5\ntoken = \"buyer-token-{i}\"\n"
        ));
    }
    c
}

/// Resting bids (below the network's ask, so nothing trades) from every buyer's token, at
/// ORDER_RATE in all, until `stop`: (acknowledged, refused). The client threads run at `nice`
/// (0: the generators' own priority; more: buyers elsewhere, whose CPU is not this host's).
fn order_load(stop: Arc<AtomicBool>, nice: i32) -> (u64, u64) {
    let period =
        (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 3600 + 1) * 3600;
    let threads: Vec<_> = (0..BUYERS)
        .map(|i| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                // SAFETY: a syscall on the calling thread.
                unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) };
                let client = reqwest::blocking::Client::new();
                let url = spillway_tests::daemon::api_url("/v1/orders");
                let body = json!({"period_start": period, "quantity_rps": 1, "price": 0.5}).to_string();
                let every = Duration::from_secs_f64(BUYERS as f64 / ORDER_RATE as f64);
                let (mut ok, mut refused) = (0, 0);
                let start = Instant::now();
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let r = client
                        .post(&url)
                        .bearer_auth(format!("buyer-token-{i}"))
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send();
                    match r {
                        Ok(r) if r.status().is_success() => ok += 1,
                        _ => refused += 1,
                    }
                    n += 1;
                    std::thread::sleep((start + every * n).saturating_duration_since(Instant::now()));
                }
                (ok, refused)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().expect("order thread")).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
}

/// The userspace server under dnsperf at a fixed rate, idle and then while the market takes
/// ORDER_RATE orders/s from buyer tokens: latency from the probe, qps from dnsperf.
fn market_load() -> Result<Value, String> {
    let reserved = reserve_dns_cpu();
    if reserved {
        // Before anything starts: the order clients and the daemon inherit it (the daemon's
        // DNS threads then move by `server.dns_cpus`, dnsperf and the probe by their own pin).
        pin_to(OTHER_CPU);
    }
    let topo = Topology::new();
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let file = dir.path().join("queries.txt");
    std::fs::write(&file, queries()).map_err(|e| e.to_string())?;
    let mut config = market_config();
    if reserved {
        let cpus = format!("[server]\ndns_cpus = [{DNS_CPU}]\nbackground_cpus = [{OTHER_CPU}]");
        config = config.replacen("[server]", &cpus, 1);
    }
    let d = Daemon::start(&topo, &config)?;
    let pid = d.proc.pid();
    let mut runs = Vec::new();
    // Idle; taking orders from clients at the generators' priority; and from clients at nice
    // 10, as if the buyers were elsewhere (on one host, their CPU competes with the daemon's).
    // Rounds, so that the host's own drift (a shared VM) shows as spread between rounds rather
    // than as a ratio: the ratios are the medians of each round's.
    let phases = [(false, 0), (true, 0), (true, 10)];
    for (round, (loaded, clients_nice)) in (0..MARKET_LOAD_ROUNDS).flat_map(|r| phases.map(|p| (r, p))) {
        let stop = Arc::new(AtomicBool::new(false));
        let threads0 = thread_cpu_s(pid);
        let (((run, lat), orders), cost) = costed(&topo, Some(pid), || {
            std::thread::scope(|s| {
                let flag = stop.clone();
                let orders = loaded.then(|| s.spawn(|| topo.client.run(move || order_load(flag, clients_nice))));
                let r = probed(&topo, || dnsperf(&topo, &file, Some(market_load_qps())));
                stop.store(true, Ordering::Relaxed);
                (r, orders.map(|h| h.join().expect("orders")))
            })
        });
        let threads1 = thread_cpu_s(pid);
        let (dns_cpu, other_cpu) = (threads1.0 - threads0.0, threads1.1 - threads0.1);
        let (ok, refused) = orders.unwrap_or((0, 0));
        let label = match (loaded, clients_nice) {
            (false, _) => "idle market".to_owned(),
            (true, 0) => "market taking orders".to_owned(),
            (true, n) => format!("orders, clients nice {n}"),
        };
        println!(
            "  {round} {label:<22} qps {:>8.0}  loss {:>6.3}%  {}  orders acknowledged {ok} ({:.0}/s), refused {refused}",
            run.qps,
            run.loss_pct(),
            lat.describe(),
            ok as f64 / f64::from(RUN_S)
        );
        println!("    {}  (DNS threads {dns_cpu:.2} s, other threads {other_cpu:.2} s)", cost.describe());
        runs.push(json!({
            "round": round, "order_clients_nice": clients_nice,
            "daemon_cpu_s": cost.cpu_s, "dns_threads_cpu_s": dns_cpu, "other_threads_cpu_s": other_cpu,
            "busy_share_per_cpu": cost.cpus.iter().map(CpuTimes::busy_share).collect::<Vec<_>>(),
            "market": label, "qps": run.qps, "loss_pct": run.loss_pct(),
            "latency_p50_ms": lat.p50_ms, "latency_p99_ms": lat.p99_ms, "latency_probe_samples": lat.samples,
            "orders_acknowledged": ok, "orders_refused": refused, "orders_per_s": ok as f64 / f64::from(RUN_S),
        }));
    }
    let p99 = |i: usize| runs[i]["latency_p99_ms"].as_f64();
    // Phase `phase`'s p99 over the idle p99 of the same round, each round; and their median.
    let ratios = |phase: usize| -> Vec<f64> {
        (0..MARKET_LOAD_ROUNDS)
            .filter_map(|r| match (p99(r * phases.len()), p99(r * phases.len() + phase)) {
                (Some(idle), Some(busy)) if idle > 0.0 => Some(busy / idle),
                _ => None,
            })
            .collect()
    };
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (!v.is_empty()).then(|| v[v.len() / 2])
    };
    let (loaded, nice10) = (ratios(1), ratios(2));
    let show = |r: Option<f64>| r.map_or("-".into(), |r| format!("{r:.2}x"));
    println!(
        "  p99 under market load / idle p99, median of {MARKET_LOAD_ROUNDS} rounds: {} {loaded:.2?} \
         (order clients nice 10: {} {nice10:.2?})",
        show(median(loaded.clone())),
        show(median(nice10.clone()))
    );
    let (ratio, ratio_nice10) = (median(loaded.clone()), median(nice10.clone()));
    Ok(json!({
        "p99_ratio_per_round": loaded, "p99_ratio_clients_nice10_per_round": nice10,
        "offered_qps": market_load_qps(), "reserved_dns_cpu": reserved, "runs": runs,
        "placement": if reserved {
            json!({"dns_threads_dnsperf_probe_cpu": DNS_CPU, "daemon_other_threads_order_clients_cpu": OTHER_CPU})
        } else {
            json!("unpinned")
        },
        "p99_ratio": ratio, "p99_ratio_clients_nice10": ratio_nice10,
    }))
}

fn main() {
    if std::env::args().any(|a| a == "--market-load") {
        let _ = spillway_bin();
        let result = match market_load() {
            Ok(r) => r,
            Err(e) => {
                eprintln!("dns-bench: {e}");
                std::process::exit(1);
            }
        };
        let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench/results.json");
        std::fs::create_dir_all(out.parent().expect("dir")).expect("target/bench");
        let mut doc: Value =
            std::fs::read_to_string(&out).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(json!({}));
        doc[if reserve_dns_cpu() { "market_load_reserved_cpu" } else { "market_load" }] = result;
        std::fs::write(&out, serde_json::to_string_pretty(&doc).expect("json")).expect("write results");
        return;
    }
    for tool in ["dnsperf", "kxdpgun", "knotd", "nsd", "ethtool"] {
        if std::process::Command::new("which").arg(tool).output().map(|o| !o.status.success()).unwrap_or(true) {
            eprintln!("dns-bench: {tool} is missing (cargo xtask bench installs it)");
            std::process::exit(1);
        }
    }
    let _ = spillway_bin();
    let started = Instant::now();
    let mut servers = Vec::new();
    for threaded in placements() {
        THREADED_NAPI.store(threaded, Ordering::Relaxed);
        println!("placement: {}", if threaded { "threaded NAPI" } else { "unpinned" });
        match run_all() {
            Ok(s) => servers.extend(s),
            Err(e) => {
                eprintln!("dns-bench: {e}");
                std::process::exit(1);
            }
        }
    }
    mark_best(&mut servers);
    let all = servers.clone();
    // The best of each, in the order the servers were measured in.
    let mut servers: Vec<Value> = servers.into_iter().filter(|e| e["best"] == json!(true)).collect();
    let first_seen =
        |e: &Value| all.iter().position(|a| a["server"] == e["server"] && a["generator"] == e["generator"]);
    servers.sort_by_key(first_seen);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir).expect("target/bench");
    let out = dir.join("results.json");
    let mut doc: Value =
        std::fs::read_to_string(&out).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(json!({}));
    doc["servers"] = Value::Array(servers.clone());
    doc["servers_all_placements"] = Value::Array(all);
    std::fs::write(&out, serde_json::to_string_pretty(&doc).expect("json")).expect("write results");
    let md = markdown(&servers);
    std::fs::write(dir.join("servers.md"), &md).expect("write table");
    if let Err(e) = chart(&dir.join("servers.png"), &servers) {
        eprintln!("chart: {e}");
    }
    println!("\n{md}\nwrote {} ({:.0} s)", out.display(), started.elapsed().as_secs_f64());
    std::thread::sleep(Duration::from_millis(10));
}
