//! Many edges, one market: a real 3-member etcd cluster, two control replicas (one leads,
//! the other follows; kill -9 of the leader hands the market over) and 3 edges, each
//! edge with XDP attached to its own veth, and resolvers asking every edge with dig and a
//! steady query load. A change made through the control host's API reaches every edge's maps
//! within a second; an auction's contract's start and end switch every edge's answers; one etcd member
//! going is invisible; all of etcd going leaves every edge answering (no query lost on the XDP
//! path) while the control host refuses writes with 503 and changes nothing; etcd back, the
//! edges load the state again and the next change reaches them all; the controller's fraction
//! follows the sum of the edges' answers, and the operator's view (`GET /v1/cluster`) lists
//! the edges with what each answers.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use spillway::store::Store;
use spillway_tests::{
    client::{metric, now_f64, sleep_until},
    cluster::{ClusterNet, Etcd, Node, control_config, edge_config, postgres_store},
    dnswire::Query,
    load::{Class, QueryLoad},
    postgres::Postgres,
    require_privileges,
};

const OP: &str = "operator-token";
const PROXY: &str = "198.51.100.10";
const ORIGIN: &str = "203.0.113.20";
const NAME: &str = "www.web.cdn.example.net";
const ZONE: &str = "cdn.example.net";
const MISSING: &str = "nobody.cdn.example.net";
const PERIOD_S: i64 = 10;
const EDGES: usize = 3;
const SECOND: Duration = Duration::from_secs(1);

struct Cluster {
    // Drop order: the processes before etcd and the namespaces.
    /// Two control replicas; the one writes go to follows the leader.
    controls: Vec<Node>,
    leader: std::cell::Cell<usize>,
    edges: Vec<Node>,
    etcd: Etcd,
    pg: Postgres,
    net: ClusterNet,
}

impl Cluster {
    fn control(&self) -> &Node {
        &self.controls[self.leader.get()]
    }

    /// A request to the leader; a follower's 421 sends it to the other replica.
    fn api(&self, method: &'static str, path: &str, body: Option<Value>) -> (u16, Value) {
        let (mut status, mut text) = self.net.http(method, &self.control().url(path), Some(OP), body.as_ref());
        if status == 421 {
            self.leader.set(1 - self.leader.get());
            (status, text) = self.net.http(method, &self.control().url(path), Some(OP), body.as_ref());
        }
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    fn api_ok(&self, method: &'static str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.api(method, path, body);
        assert_eq!(status, 200, "{method} {path}: {v}\n{}", self.logs());
        v
    }

    fn set_fraction(&self, f: f64) -> u16 {
        self.api("PUT", "/v1/customers/web/fraction", Some(json!({"fraction": f}))).0
    }

    /// Every edge answers `want` within a second of now.
    fn all_answer_within_a_second(&self, want: &str, what: &str) {
        let took = self.net.until_all_answer(NAME, want, SECOND);
        assert!(
            took.is_some(),
            "{what}: not every edge answers {want} within 1 s: {:?}\n{}",
            self.answers(),
            self.logs()
        );
        eprintln!("{what}: every edge answers {want} after {:?}", took.unwrap_or_default());
    }

    /// The last lines of every node's log, for a failure's message.
    fn logs(&self) -> String {
        let tail =
            |t: String| t.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
        let mut out = String::new();
        for (i, n) in self.controls.iter().enumerate() {
            out += &format!("control-{}:\n{}\n", i + 1, tail(n.proc.log_text()));
        }
        for (i, e) in self.edges.iter().enumerate() {
            out += &format!("edge {i}:\n{}\n", tail(e.proc.log_text()));
        }
        out
    }

    fn answers(&self) -> Vec<Vec<String>> {
        (0..EDGES).map(|i| self.net.dig(i, NAME)).collect()
    }

    /// Every edge gives one SOA serial, from its userspace server and its XDP program alike,
    /// within a second (edges put a change in force one after the other): that serial.
    fn one_serial(&self, what: &str) -> u32 {
        let start = Instant::now();
        loop {
            let seen: Vec<_> = (0..EDGES).map(|i| self.net.serials(i, ZONE, MISSING)).collect();
            let all: Vec<Option<u32>> = seen.iter().flat_map(|&(a, b)| [a, b]).collect();
            if let Some(Some(first)) = all.first().copied().filter(|_| all.windows(2).all(|w| w[0] == w[1])) {
                eprintln!("{what}: every edge's SOA serial is {first}");
                return first;
            }
            assert!(start.elapsed() < SECOND, "{what}: the edges' SOA serials (SOA, NXDOMAIN) differ: {seen:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn edge_get(&self, i: usize, path: &str) -> (u16, String) {
        self.net.http("GET", &self.edges[i].url(path), Some(OP), None)
    }
}

/// The start of the running period, and of the next one.
fn periods() -> (i64, i64) {
    let p = (now_f64() as i64 / PERIOD_S) * PERIOD_S;
    (p, p + PERIOD_S)
}

#[test]
fn three_edges_follow_one_control_host_through_etcd() {
    require_privileges!();
    let net = ClusterNet::new(EDGES);
    let etcd = Etcd::start(&net.core, 3, 23790);
    let pg = Postgres::start(Some(&net.core), "127.0.0.1", 25432);
    pg.create_database("spillway");
    let store = postgres_store(&pg, "spillway");
    let first = control_config(&etcd, &store, OP, PROXY, PERIOD_S);
    let second = first.replace("127.0.0.1:8060", "127.0.0.1:8059").replace("control-1", "control-2");
    let controls = vec![Node::spawn(&net.core, "http://127.0.0.1:8060", &first)];
    controls[0].wait_ready(&net);
    let mut controls = controls;
    controls.push(Node::spawn(&net.core, "http://127.0.0.1:8059", &second));
    controls[1].wait_ready(&net);
    let edges: Vec<Node> = (0..EDGES)
        .map(|i| Node::spawn(&net.core, &format!("http://127.0.0.1:{}", 8061 + i), &edge_config(&net, &etcd, i, OP)))
        .collect();
    for e in &edges {
        e.wait_ready(&net);
    }
    let mut c = Cluster { controls, leader: std::cell::Cell::new(0), edges, etcd, pg, net };

    // 1. A customer added through the control host's API answers from every edge (its
    //    origin: no contract yet) within a second.
    assert!(c.answers().iter().all(|a| a.is_empty()), "before it is added: {:?}", c.answers());
    let web = json!({"id": "web", "names": [format!("{NAME}.")], "origin_addresses": [ORIGIN],
        "overflow": "origin", "fraction": 1.0, "ttl": 2});
    c.api_ok("POST", "/v1/customers", Some(web));
    c.all_answer_within_a_second(ORIGIN, "customer added");
    // An edge takes no writes: its state is etcd's.
    let (status, text) =
        c.net.http("PUT", &c.edges[0].url("/v1/customers/web/fraction"), Some(OP), Some(&json!({"fraction": 0.5})));
    assert_eq!(status, 421, "{text}");
    assert!(text.contains("edge"), "{text}");
    // The second control replica follows: it refuses writes, naming the leader, and answers
    // reads from the store (as of at most 2 s ago).
    let follower_url = c.controls[1].url("/v1/customers/web/fraction");
    let (status, text) = c.net.http("PUT", &follower_url, Some(OP), Some(&json!({"fraction": 0.5})));
    assert_eq!(status, 421, "{text}");
    assert!(text.contains("http://127.0.0.1:8060"), "the follower names the leader: {text}");
    let deadline = Instant::now() + Duration::from_secs(4);
    while c.net.http("GET", &c.controls[1].url("/v1/customers/web"), Some(OP), None).0 != 200 {
        assert!(Instant::now() < deadline, "the follower never read the new customer\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    let leading = |n: &Node| metric(&c.net.http("GET", &n.url("/metrics"), None, None).1, "spillway_cluster_leader");
    assert!(leading(&c.controls[0]) > 0.0 && leading(&c.controls[1]) == 0.0, "one leader, one follower");

    // 2. An auction's contract switches every edge to the proxy within a second of its
    //    period's start, and back to the origin within a second of its end. The auction
    //    clears by itself at its close (the leader's scheduler), a second before the start.
    let start = ((now_f64() as i64 + 3) / PERIOD_S + 1) * PERIOD_S;
    let auction = json!({"period_start": start, "closes_at": start - 1, "quantity_rps": 100});
    let id = c.api_ok("POST", "/v1/auctions", Some(auction))["id"].as_i64().expect("auction id");
    let bid = json!({"customer": "web", "quantity_rps": 100, "max_price": 2.0});
    c.api_ok("POST", &format!("/v1/auctions/{id}/bids"), Some(bid));
    sleep_until(start as f64);
    let a = c.api_ok("GET", &format!("/v1/auctions/{id}"), None);
    assert_eq!(a["state"], "cleared", "{a}");
    c.all_answer_within_a_second(PROXY, "the auction's contract started");
    sleep_until((start + PERIOD_S) as f64);
    c.all_answer_within_a_second(ORIGIN, "the auction's contract ended");

    // A contract over the next periods, for the rest of the test.
    let (running, _) = periods();
    for k in 0..12 {
        let order = json!({"customer": "web", "period_start": running + k * PERIOD_S, "quantity_rps": 100,
            "price": 1.0, "tif": "ioc"});
        assert_eq!(c.api_ok("POST", "/v1/orders", Some(order))["order"]["state"], "filled");
    }
    c.all_answer_within_a_second(PROXY, "long contract started");

    // 3. A fraction change by hand shows on every edge, and every edge's SOA serial moves on
    //    to the same one (the leader's, published with the change).
    let before = c.one_serial("before the change");
    assert_eq!(c.set_fraction(0.0), 200);
    c.all_answer_within_a_second(ORIGIN, "fraction 0");
    let after = c.one_serial("fraction 0");
    assert!(after.wrapping_sub(before) as i32 > 0, "the serial moved on: {before} then {after}");

    // 4. kill -9 of the control leader right after a write it acknowledged: the other replica
    //    leads within the lease TTL (3 s), has that write, and the market goes on there; the
    //    killed one, started again, follows.
    let late = json!({"customer": "web", "period_start": running + 20 * PERIOD_S, "quantity_rps": 50,
        "price": 1.0, "tif": "ioc"});
    let acked = c.api_ok("POST", "/v1/orders", Some(late))["order"]["id"].as_i64().expect("order id");
    let killed_at = Instant::now();
    c.controls[0].proc.kill9();
    c.leader.set(1);
    let fraction_1 = json!({"fraction": 1.0});
    loop {
        match c.net.http("PUT", &c.controls[1].url("/v1/customers/web/fraction"), Some(OP), Some(&fraction_1)).0 {
            200 => break,
            421 | 503 => assert!(killed_at.elapsed() < Duration::from_secs(6), "no new leader\n{}", c.logs()),
            s => panic!("a write after the leader's death: {s}\n{}", c.logs()),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("control-2 leads {:?} after control-1's kill -9", killed_at.elapsed());
    assert!(killed_at.elapsed() < Duration::from_secs(5), "the other replica led after {:?}", killed_at.elapsed());
    c.all_answer_within_a_second(PROXY, "fraction 1 from the new leader");
    let elected = c.one_serial("fraction 1 from the new leader");
    assert!(
        elected.wrapping_sub(after) as i32 > 0,
        "a new leader's serial goes on from etcd's: {after} then {elected}"
    );
    let order = c.api_ok("GET", &format!("/v1/orders/{acked}"), None);
    assert_eq!(order["state"], "filled", "the acknowledged order survived the leader: {order}");
    let more = json!({"customer": "web", "period_start": running + 21 * PERIOD_S, "quantity_rps": 50,
        "price": 1.0, "tif": "ioc"});
    assert_eq!(c.api_ok("POST", "/v1/orders", Some(more))["order"]["state"], "filled", "the market goes on");
    c.controls[0] = Node::spawn(&c.net.core, "http://127.0.0.1:8060", &first);
    c.controls[0].wait_ready(&c.net);
    let (status, text) =
        c.net.http("PUT", &c.controls[0].url("/v1/customers/web/fraction"), Some(OP), Some(&json!({"fraction": 0.5})));
    assert_eq!(status, 421, "the restarted replica follows: {text}");
    assert!(text.contains("http://127.0.0.1:8059"), "{text}");

    // 5. One etcd member killed (one that does not lead: a leader's death costs an election,
    //    during which etcd takes no write): nothing visible.
    let leader = c.etcd.leader(&c.net.core);
    let follower = (leader + 1) % 3;
    c.etcd.kill(follower);
    assert_eq!(c.set_fraction(1.0), 200, "a write with one etcd member gone");
    c.all_answer_within_a_second(PROXY, "fraction 1 with a member gone");
    for i in 0..EDGES {
        let (_, ready) = c.edge_get(i, "/readyz");
        assert_eq!(ready.trim(), "ready", "edge {i} with one etcd member gone");
    }

    // 6. All of etcd killed, under a steady query load on every edge: every edge keeps
    //    answering from XDP with the last fraction, and says it is degraded; the control host
    //    refuses writes with 503 and changes nothing.
    let loads: Vec<QueryLoad> = (0..EDGES)
        .map(|i| {
            let classes = vec![Class { label: "xdp", query: Query::new(&format!("{NAME}."), 1).bytes() }];
            QueryLoad::start(&c.net.clients, format!("{}:53", c.net.links[i].edge_addr).parse().unwrap(), classes, 300)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    for i in (0..3).filter(|&i| i != follower) {
        c.etcd.kill(i);
    }
    let deadline = Instant::now() + Duration::from_secs(6);
    // Writes taken before the control host noticed are kept, and reach the edges when etcd is
    // back; these put back what is in force.
    loop {
        let (status, body) = c.api("PUT", "/v1/customers/web/fraction", Some(json!({"fraction": 1.0})));
        if status == 503 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the control host still takes writes with etcd gone: {status} {body}\n{}",
            c.logs()
        );
        assert_eq!(status, 200, "{body}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, refused) = c.api("PUT", "/v1/customers/web/fraction", Some(json!({"fraction": 0.0})));
    assert_eq!(status, 503, "{refused}");
    assert!(refused.to_string().contains("etcd"), "{refused}");
    let web = c.api_ok("GET", "/v1/customers/web", None);
    assert_eq!(web["fraction"].as_f64(), Some(1.0), "a refused write changed nothing: {web}");
    let deadline = Instant::now() + Duration::from_secs(8);
    for i in 0..EDGES {
        loop {
            let (status, ready) = c.edge_get(i, "/readyz");
            if status == 200 && ready.starts_with("degraded") {
                break;
            }
            assert!(Instant::now() < deadline, "edge {i} never said it is degraded: {status} {ready}");
            std::thread::sleep(Duration::from_millis(100));
        }
        let (_, text) = c.edge_get(i, "/metrics");
        let age = metric(&text, "spillway_edge_state_age_seconds");
        assert!(age >= 3.0, "edge {i}: state age {age} s with etcd gone");
    }
    assert!(c.answers().iter().all(|a| a == &[PROXY]), "answers with etcd gone: {:?}", c.answers());

    // 7. etcd back: the edges load the state again, and a change made then reaches them all.
    for i in 0..3 {
        c.etcd.restart(&c.net.core, i);
    }
    c.etcd.wait_healthy(&c.net.core, 3);
    let deadline = Instant::now() + Duration::from_secs(15);
    for i in 0..EDGES {
        while c.edge_get(i, "/readyz").1.trim() != "ready" {
            assert!(Instant::now() < deadline, "edge {i} never loaded the state again");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    loop {
        match c.set_fraction(0.0) {
            200 => break,
            503 => assert!(Instant::now() < deadline, "the control host never took writes again"),
            s => panic!("fraction with etcd back: {s}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    c.all_answer_within_a_second(ORIGIN, "fraction 0 with etcd back");
    for (i, load) in loads.into_iter().enumerate() {
        let r = &load.stop()[0];
        let all = (Duration::ZERO, Duration::from_secs(3600));
        assert!(r.sent_in(all.0, all.1) > 1000, "edge {i}: the load sent {}", r.sent_in(all.0, all.1));
        assert_eq!(r.unanswered(all.0, all.1), 0, "edge {i}: queries lost on the XDP path through etcd's outage");
    }

    // 8. The controller sums the edges' answers: resolvers ask all three, and the proxy
    //    reports serving three times what was bought; the fraction comes down on every edge.
    c.api_ok("PUT", "/v1/customers/web/fraction", Some(json!({"mode": "auto"})));
    let loads: Vec<QueryLoad> = (0..EDGES)
        .map(|i| {
            let classes = vec![Class { label: "xdp", query: Query::new(&format!("{NAME}."), 1).bytes() }];
            QueryLoad::start(&c.net.clients, format!("{}:53", c.net.links[i].edge_addr).parse().unwrap(), classes, 100)
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    let low = loop {
        let report = json!({"own_requests": 1000, "served": {"web": 300}, "interval_s": 1.0});
        c.api_ok("POST", "/v1/proxies/p1/report", Some(report));
        let web = c.api_ok("GET", "/v1/customers/web", None);
        let f = web["fraction"].as_f64().expect("fraction");
        if f < 0.6 {
            break web;
        }
        assert!(Instant::now() < deadline, "the fraction never came down: {web}");
        std::thread::sleep(SECOND);
    };
    // What the control host reads of each edge: one line per buyer, both paths' answers.
    let (status, text) = c.edge_get(0, "/cluster/answers");
    assert_eq!(status, 200, "{text}");
    let line: Vec<u64> = text
        .lines()
        .find_map(|l| l.strip_prefix("web "))
        .map(|rest| rest.split(' ').map(|n| n.parse().expect("a count")).collect())
        .unwrap_or_default();
    assert!(line.len() == 3 && line[0] + line[1] > 1000, "edge 0's answers for web: {text:?}");
    // The operator's view of the cluster: the leader lists the three edges with the rate it
    // reads from each (100 queries/s each now); the follower lists them too, names the
    // leader and reads none; an edge knows only itself.
    let view = |n: &Node| -> Value {
        let (status, text) = c.net.http("GET", &n.url("/v1/cluster"), Some(OP), None);
        assert_eq!(status, 200, "{text}");
        serde_json::from_str(&text).expect("the cluster's view")
    };
    let lead = view(c.control());
    let edges = lead["edges"].as_array().cloned().unwrap_or_default();
    assert_eq!((lead["leads"].as_bool(), edges.len()), (Some(true), EDGES), "{lead}");
    for e in &edges {
        let rate = e["answers_per_s"].as_f64().unwrap_or(0.0);
        assert!((30.0..400.0).contains(&rate) && e["read_error"].is_null(), "an edge under 100 queries/s: {e}");
    }
    let other = &c.controls[1 - c.leader.get()];
    let follows = view(other);
    assert_eq!(
        (follows["leads"].as_bool(), &follows["leader"]),
        (Some(false), &json!(c.control().url(""))),
        "{follows}"
    );
    let listed = follows["edges"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        listed.iter().map(|e| &e["name"]).collect::<Vec<_>>(),
        edges.iter().map(|e| &e["name"]).collect::<Vec<_>>()
    );
    assert!(listed.iter().all(|e| e["read_at_ms"].is_null()), "a follower reads no edge: {follows}");
    let (_, own) = c.edge_get(0, "/v1/cluster");
    let own: Value = serde_json::from_str(&own).expect("an edge's view");
    assert_eq!((&own["role"], &own["edges"], &own["degraded"]), (&json!("edge"), &Value::Null, &Value::Null), "{own}");
    let demand = low["controller"]["demand_rps"].as_f64().unwrap_or(0.0);
    assert!(demand > 150.0, "the controller saw the three edges' queries (300/s in all) as demand: {low}");
    let f = low["fraction"].as_f64().unwrap_or(1.0);
    std::thread::sleep(SECOND);
    for i in 0..EDGES {
        let (_, text) = c.edge_get(i, "/metrics");
        let at_edge = metric(&text, "spillway_customer_fraction{customer=\"web\"}");
        assert!(at_edge < 0.6, "edge {i} has fraction {at_edge}; the control host {f}");
    }
    drop(loads);

    // 9. The control hosts' store is PostgreSQL, and what it holds adds up: the 15 contracts
    //    bought, each once, the first activated and ended, the market's conservation checks
    //    clean, the proxy's reports in the ledger.
    let url = c.pg.url("spillway");
    let (problems, contracts, reports) = c.net.core.run(move || {
        let s = Store::open_postgres(&url, None, None).expect("the control host's store");
        (s.check().expect("check"), s.contracts(Some("web")).expect("contracts"), s.report_count().expect("reports"))
    });
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(contracts.len(), 15, "{contracts:?}");
    assert!(contracts[0].activated_at.is_some() && contracts[0].ended_at.is_some(), "{:?}", contracts[0]);
    // Every contract that started was activated once, on time (its start, or its sale for
    // one bought in its period), by whichever replica led then: the store refuses a fenced
    // leader's activation.
    let now = now_f64() as i64;
    for k in contracts.iter().filter(|k| k.period_start + 1 < now) {
        let at = k.activated_at.unwrap_or_else(|| panic!("contract {} never activated: {k:?}", k.id));
        let due = k.period_start.max(k.created_at);
        assert!((due..=due + 3).contains(&at), "contract {} activated at {at}: {k:?}", k.id);
    }
    assert!(reports > 0, "the proxy's reports are in the ledger");
    assert_eq!(c.pg.psql("spillway", "SELECT version FROM spillway_schema"), "5");
    let term: i64 = c.pg.psql("spillway", "SELECT term FROM spillway_leader").parse().expect("a term");
    assert!(term > 0, "the store names the leader's term");
}
