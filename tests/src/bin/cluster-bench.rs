//! `cargo xtask bench` (cluster part): how fast a change reaches a cluster's edges, and what the
//! controller's tick costs for a large cluster. Writes `cluster` into target/bench/results.json.
//!
//! 1. Propagation: a real 3-member etcd and a real control host (`spillway run`, release) on a
//!    namespace's loopback; N edges (3, then 50) run in this process, each with its own etcd
//!    client, engine and catalog and the daemon's follower task, applying to in-memory maps
//!    (no XDP: 50 attached programs do not fit the machine). For each of 100 fraction changes
//!    through the API: the time from sending the request to the last edge's catalog holding
//!    the new fraction.
//! 2. The controller's tick for 10 000 buyers with contracts, its input the totals summed over
//!    50 edges: thread CPU time per tick; and the cost of reading 50 edges' `/cluster/answers`
//!    (10 000 buyers each) into those totals.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use spillway::{
    api::AppState,
    catalog::Catalog,
    cluster::{self, ClusterStatus, answers::EdgeAnswers, state::Keys},
    config::Config,
    engine::{Engine, unix_now, unix_now_f64},
    handover::Phase,
};
use spillway_tests::{
    cluster::{Etcd, Node, cluster_section},
    netns::{NetNs, enter},
};
use tokio::sync::watch;

const OP: &str = "bench-token";
const CHANGES: usize = 100;

fn edge_config(etcd: &Etcd, i: usize) -> Config {
    let text = format!(
        r#"
[server]
zones = ["cdn.example.net."]
listen = ["127.0.0.1:5399"]
[api]
listen = "127.0.0.1:{port}"
token = "{OP}"
{cluster}"#,
        port = 9000 + i,
        cluster = cluster_section(etcd, "edge", &format!("bench-edge-{i}"))
    );
    Config::parse(&text, "edge.toml").expect("edge config")
}

fn control_config(etcd: &Etcd) -> String {
    format!(
        r#"
[server]
zones = ["cdn.example.net."]
[api]
listen = "127.0.0.1:8060"
token = "{OP}"
[store]
path = "@DIR@/spillway.db"
[[proxy]]
name = "p1"
addresses = ["198.51.100.10"]
capacity_rps = 10000
[[customer]]
id = "web"
names = ["www.web.cdn.example.net."]
origin_addresses = ["203.0.113.20"]
overflow = "origin"
fraction = 0.5
{cluster}"#,
        cluster = cluster_section(etcd, "control", "bench-control")
    )
}

/// An edge in this process: the daemon's engine and follower, without listeners or XDP.
struct Edge {
    state: Arc<AppState>,
    _phase: watch::Sender<Phase>,
}

async fn start_edge(config: Config) -> Edge {
    let cfg = config.cluster.clone().expect("cluster");
    let (mut etcd, _) = cluster::connect(&cfg).await.expect("etcd answers");
    let mut engine =
        Engine::new(&config, Catalog::from_config(&config).expect("catalog"), None, unix_now()).expect("engine");
    let keys = Keys::new(&cfg.key_prefix);
    let t = etcd.timeout();
    let snap = cluster::follow::load(etcd.client().await.expect("client"), &keys, t).await.expect("load");
    let from = snap.revision;
    cluster::follow::apply_snapshot(&mut engine, snap);
    let status = Arc::new(ClusterStatus::new(&cfg, from));
    let state = AppState::new(engine, Some(status.clone()));
    let (tx, rx) = watch::channel(Phase::Running);
    tokio::spawn(cluster::follow::follow_loop(state.clone(), etcd, cfg, status, from, rx));
    Edge { state, _phase: tx }
}

fn fraction(edge: &Edge) -> Option<f64> {
    edge.state.engine().catalog.customer("web").map(|c| c.fraction)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Changes through the API to `n` in-process edges: (p50, p99, max) in ms to the last edge.
fn propagation(rt: &tokio::runtime::Runtime, etcd: &Etcd, n: usize, http: &reqwest::Client) -> (f64, f64, f64) {
    let edges: Vec<Edge> = rt.block_on(async {
        let mut v = Vec::new();
        for i in 0..n {
            v.push(start_edge(edge_config(etcd, i)).await);
        }
        v
    });
    let mut lasts = Vec::new();
    for k in 0..CHANGES {
        let f = ((k % 90) + 5) as f64 / 100.0;
        let t0 = Instant::now();
        let status = rt.block_on(async {
            http.put("http://127.0.0.1:8060/v1/customers/web/fraction")
                .bearer_auth(OP)
                .json(&json!({"fraction": f}))
                .send()
                .await
                .map(|r| r.status().as_u16())
        });
        assert_eq!(status.ok(), Some(200), "PUT fraction");
        let mut pending: Vec<usize> = (0..n).collect();
        let mut last = Duration::ZERO;
        while !pending.is_empty() {
            pending.retain(|&i| fraction(&edges[i]) != Some(f));
            last = t0.elapsed();
            assert!(last < Duration::from_secs(10), "change {k} did not reach {} edges", pending.len());
            std::thread::sleep(Duration::from_micros(200));
        }
        lasts.push(last.as_secs_f64() * 1e3);
    }
    lasts.sort_by(f64::total_cmp);
    (percentile(&lasts, 0.5), percentile(&lasts, 0.99), *lasts.last().expect("changes"))
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The controller's tick for `buyers` buyers with contracts: (median, max) thread CPU ms over
/// 20 ticks; and the CPU ms to read `edges` edges' answers into the totals.
fn controller_tick(buyers: usize, edges: usize) -> (f64, f64, f64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut text = format!(
        r#"
[server]
zones = ["cdn.example.net."]
[api]
listen = "127.0.0.1:8060"
token = "{OP}"
[store]
path = "{}/spillway.db"
[market]
[[proxy]]
name = "p1"
addresses = ["198.51.100.10"]
capacity_rps = 100000000
[cluster]
role = "control"
etcd_endpoints = ["http://127.0.0.1:2379"]
"#,
        dir.path().display()
    );
    for b in 0..buyers {
        text += &format!(
            "[[customer]]\nid = \"b{b}\"\nnames = [\"b{b}.cdn.example.net.\"]\norigin_addresses = [\"203.0.113.20\"]\noverflow = \"origin\"\nfraction = 0.5\n"
        );
    }
    let config = Config::parse(&text, "control.toml").expect("control config");
    let mut engine =
        Engine::new(&config, Catalog::from_config(&config).expect("catalog"), None, unix_now()).expect("engine");
    // The elected replica's engine: it holds the store's term.
    engine.store.take_term(1, "bench-control", unix_now()).expect("term");
    let ids: Vec<String> = (0..buyers).map(|b| format!("b{b}")).collect();
    for id in &ids {
        engine.catalog.set_contracted(id, 100, None).expect("contracted");
    }
    // Every edge's /cluster/answers, as the answers task reads them.
    let metrics: Vec<String> =
        (0..edges).map(|e| ids.iter().map(|id| format!("{id} {} {} 0\n", 1000 + e, 500 + e)).collect()).collect();
    let mut seen = EdgeAnswers::default();
    // The first reading of an edge is its baseline; the second is the steady state, timed.
    for (e, m) in metrics.iter().enumerate() {
        seen.absorb(&format!("edge-{e}"), cluster::answers::parse(m), std::time::Instant::now());
    }
    let c0 = thread_cpu();
    for (e, m) in metrics.iter().enumerate() {
        seen.absorb(&format!("edge-{e}"), cluster::answers::parse(m), std::time::Instant::now());
    }
    let read_ms = (thread_cpu() - c0).as_secs_f64() * 1e3;
    let mut totals: HashMap<String, [u64; 3]> = seen.totals().clone();
    let mut ticks = Vec::new();
    let t = unix_now_f64();
    for k in 0..21 {
        for v in totals.values_mut() {
            v[0] += 50 * edges as u64;
            v[1] += 50 * edges as u64;
        }
        engine.cluster_answers = Some(totals.clone());
        let c0 = thread_cpu();
        engine.control_tick(t + k as f64).expect("tick");
        if k > 0 {
            ticks.push((thread_cpu() - c0).as_secs_f64() * 1e3);
        }
    }
    ticks.sort_by(f64::total_cmp);
    (percentile(&ticks, 0.5), *ticks.last().expect("ticks"), read_ms)
}

fn main() {
    let (tick_p50, tick_max, read_ms) = controller_tick(10_000, 50);
    println!(
        "controller tick, 10 000 buyers, answers summed over 50 edges: {tick_p50:.1} ms CPU (median of 20), {tick_max:.1} ms at most; reading 50 edges' /cluster/answers into the totals: {read_ms:.0} ms CPU"
    );

    let ns = NetNs::new("spw-cbench");
    let etcd = Etcd::start(&ns, 3, 23790);
    let control = Node::spawn(&ns, "http://127.0.0.1:8060", &control_config(&etcd));
    // This process joins the namespace: the edges and the requests below run in it.
    enter(&format!("/var/run/netns/{}", ns.name));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let http = reqwest::Client::builder().no_proxy().build().expect("http client");
    let deadline = Instant::now() + Duration::from_secs(20);
    while rt.block_on(http.get("http://127.0.0.1:8060/readyz").send()).map(|r| r.status().as_u16()).ok() != Some(200) {
        assert!(Instant::now() < deadline, "the control host never became ready: {}", control.proc.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut doc = json!({
        "controller_tick_10000_buyers_50_edges_cpu_ms_p50": tick_p50,
        "controller_tick_10000_buyers_50_edges_cpu_ms_max": tick_max,
        "read_50_edges_answers_10000_buyers_cpu_ms": read_ms,
    });
    for n in [3, 50] {
        let (p50, p99, max) = propagation(&rt, &etcd, n, &http);
        println!(
            "API fraction change to the last of {n} edges' maps ({CHANGES} changes): p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms"
        );
        doc[format!("propagation_{n}_edges_ms")] = json!({"p50": p50, "p99": p99, "max": max});
    }
    drop(rt);

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir).expect("target/bench");
    let out = dir.join("results.json");
    let mut all: Value =
        std::fs::read_to_string(&out).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(json!({}));
    all["cluster"] = doc;
    std::fs::write(&out, serde_json::to_string_pretty(&all).expect("json")).expect("write results");
    println!("wrote {}", out.display());
    drop(control);
    drop(etcd);
}
