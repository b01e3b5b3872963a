//! `cargo xtask demo --cluster`: a Spillway cluster in private namespaces. A real 3-member etcd,
//! two control replicas (one leads) and three edges (each with XDP attached to its own veth); a customer is
//! added through the control host's API, a contract bought, a fraction changed, and dig asks
//! every edge each time; then all of etcd is stopped (the edges keep answering, the control
//! host refuses writes) and started again (the edges catch up); last, kill -9 of the leading
//! control replica, and the other leads. Everything is cleaned up.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use spillway_tests::{
    client::now_f64,
    cluster::{ClusterNet, Etcd, Node, control_config, edge_config, postgres_store},
    postgres::Postgres,
};

const OP: &str = "demo-token";
const PROXY: &str = "198.51.100.10";
const ORIGIN: &str = "203.0.113.20";
const NAME: &str = "www.web.cdn.example.net";
const PERIOD_S: i64 = 60;
const EDGES: usize = 3;

fn api(net: &ClusterNet, control: &Node, method: &'static str, path: &str, body: Option<Value>) -> (u16, Value) {
    let (status, text) = net.http(method, &control.url(path), Some(OP), body.as_ref());
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn show(net: &ClusterNet, what: &str) {
    println!("  {what}");
    for i in 0..EDGES {
        let answers = net.dig(i, NAME);
        let meaning = match answers.first().map(String::as_str) {
            Some(PROXY) => "a proxy",
            Some(ORIGIN) => "the origin",
            _ => "nothing",
        };
        println!("    edge-{} ({}): {NAME} A -> {answers:?} ({meaning})", i + 1, net.links[i].edge_addr);
    }
}

fn wait_all(net: &ClusterNet, want: &str) -> Duration {
    net.until_all_answer(NAME, want, Duration::from_secs(5)).expect("every edge answers")
}

fn main() {
    println!("== a cluster: 3 etcd members, PostgreSQL, 2 control replicas, 3 edges with XDP, in namespaces");
    let net = ClusterNet::new(EDGES);
    let mut etcd = Etcd::start(&net.core, 3, 23790);
    println!("etcd: {}", etcd.endpoints().join(", "));
    let pg = Postgres::start(Some(&net.core), "127.0.0.1", 25432);
    pg.create_database("spillway");
    println!("PostgreSQL: {}", pg.url("spillway"));
    let store = postgres_store(&pg, "spillway");
    let first = control_config(&etcd, &store, OP, PROXY, PERIOD_S);
    let control = Node::spawn(&net.core, "http://127.0.0.1:8060", &first);
    control.wait_ready(&net);
    println!("control-1: API on {} (role = \"control\": no DNS); it leads", control.api);
    let second = first.replace("127.0.0.1:8060", "127.0.0.1:8059").replace("control-1", "control-2");
    let standby = Node::spawn(&net.core, "http://127.0.0.1:8059", &second);
    standby.wait_ready(&net);
    let (status, r) = api(&net, &standby, "PUT", "/v1/customers/web/fraction", Some(json!({"fraction": 1.0})));
    println!("control-2: API on {}; it follows, a write to it: {status} {}", standby.api, r["error"]);
    let edges: Vec<Node> = (0..EDGES)
        .map(|i| Node::spawn(&net.core, &format!("http://127.0.0.1:{}", 8061 + i), &edge_config(&net, &etcd, i, OP)))
        .collect();
    for (i, e) in edges.iter().enumerate() {
        e.wait_ready(&net);
        println!("edge-{}: DNS and XDP on {}, admin on {}", i + 1, net.links[i].edge_addr, e.api);
    }

    println!("\n== 1. a customer added through the control host's API (no contract: its origin)");
    let web = json!({"id": "web", "names": [format!("{NAME}.")], "origin_addresses": [ORIGIN],
        "overflow": "origin", "fraction": 1.0, "ttl": 30});
    assert_eq!(api(&net, &control, "POST", "/v1/customers", Some(web)).0, 200);
    let took = wait_all(&net, ORIGIN);
    show(&net, &format!("every edge has it after {took:.0?}:"));

    println!("\n== 2. a contract bought for this period: the proxy, on every edge");
    let period = (now_f64() as i64 / PERIOD_S) * PERIOD_S;
    let order = json!({"customer": "web", "period_start": period, "quantity_rps": 100, "price": 1.0, "tif": "ioc"});
    let (status, r) = api(&net, &control, "POST", "/v1/orders", Some(order));
    assert_eq!(status, 200, "{r}");
    let took = wait_all(&net, PROXY);
    show(&net, &format!("order {}: every edge switched after {took:.0?}:", r["order"]["state"]));

    println!("\n== 3. the operator sets the fraction to 0 by hand");
    assert_eq!(api(&net, &control, "PUT", "/v1/customers/web/fraction", Some(json!({"fraction": 0.0}))).0, 200);
    let took = wait_all(&net, ORIGIN);
    show(&net, &format!("every edge after {took:.0?}:"));
    assert_eq!(api(&net, &control, "PUT", "/v1/customers/web/fraction", Some(json!({"fraction": 1.0}))).0, 200);
    wait_all(&net, PROXY);

    println!("\n== 4. all of etcd stopped: the edges answer from what they have (fail-static)");
    for i in 0..3 {
        etcd.kill(i);
    }
    let start = Instant::now();
    let refused = loop {
        let (status, body) = api(&net, &control, "PUT", "/v1/customers/web/fraction", Some(json!({"fraction": 1.0})));
        if status == 503 || start.elapsed() > Duration::from_secs(5) {
            break (status, body);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    println!("  a write to the control host: {} {}", refused.0, refused.1);
    std::thread::sleep(Duration::from_secs(3));
    for (i, e) in edges.iter().enumerate() {
        let (_, ready) = net.http("GET", &e.url("/readyz"), None, None);
        println!("    edge-{} /readyz: {}", i + 1, ready.trim());
    }
    show(&net, "and they still answer:");

    println!("\n== 5. etcd back: the edges load the state again; a change reaches them all");
    for i in 0..3 {
        etcd.restart(&net.core, i);
    }
    etcd.wait_healthy(&net.core, 3);
    let deadline = Instant::now() + Duration::from_secs(15);
    while api(&net, &control, "PUT", "/v1/customers/web/fraction", Some(json!({"fraction": 0.0}))).0 != 200 {
        assert!(Instant::now() < deadline, "the control host takes writes again");
        std::thread::sleep(Duration::from_millis(200));
    }
    let took = wait_all(&net, ORIGIN);
    show(&net, &format!("fraction 0 again, on every edge after {took:.0?}:"));
    for (i, e) in edges.iter().enumerate() {
        let (_, ready) = net.http("GET", &e.url("/readyz"), None, None);
        println!("    edge-{} /readyz: {}", i + 1, ready.trim());
    }

    println!("\n== 6. kill -9 of control-1, the leader: control-2 leads, and the market goes on there");
    let mut control = control;
    control.proc.kill9();
    let start = Instant::now();
    while api(&net, &standby, "PUT", "/v1/customers/web/fraction", Some(json!({"fraction": 1.0}))).0 != 200 {
        assert!(start.elapsed() < Duration::from_secs(10), "control-2 leads");
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = wait_all(&net, PROXY);
    show(
        &net,
        &format!(
            "control-2 took writes {:.1?} after the kill; fraction 1 on every edge after {took:.0?}:",
            start.elapsed()
        ),
    );

    println!("\ndone: stopping the nodes, etcd and the namespaces");
    drop(edges);
    drop(standby);
    drop(control);
}
