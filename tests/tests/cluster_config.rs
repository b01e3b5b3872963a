//! A cluster's config is checked before anything starts: an unknown role, no etcd endpoints,
//! and an etcd that does not answer are clear errors from `spillway check` and from
//! `spillway run` (exit 1, nothing attached); with a real etcd, check says it answers.

use std::{path::Path, time::Duration};

use spillway_tests::{
    cluster::{Etcd, EtcdTls},
    daemon::run_in,
    netns::{NetNs, spillway_bin},
    postgres::Postgres,
    require_privileges,
    tls::TestCa,
};

fn edge_config(cluster: &str) -> String {
    format!(
        r#"
[server]
zones = ["cdn.example.net."]
listen = ["127.0.0.1:5300"]
xdp_interfaces = ["lo"]
xdp_mode = "skb"
[api]
listen = "127.0.0.1:8053"
token = "t"
[cluster]
{cluster}
"#
    )
}

/// `spillway check` in `ns`: (exit code, stdout and stderr).
fn check(ns: &NetNs, dir: &std::path::Path, config: &str) -> (Option<i32>, String) {
    let path = dir.join("check.toml");
    std::fs::write(&path, config).expect("write config");
    let bin = spillway_bin();
    let out = ns.exec(&[bin.to_str().expect("utf-8"), "check", "--config", path.to_str().expect("utf-8")]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), text)
}

#[test]
fn bad_cluster_settings_are_clear_errors_from_check_and_run() {
    require_privileges!();
    let ns = NetNs::new("spw-cc");
    let dir = tempfile::tempdir().expect("temp dir");

    let (code, text) =
        check(&ns, dir.path(), &edge_config("role = \"edgy\"\netcd_endpoints = [\"http://127.0.0.1:2379\"]"));
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("unknown variant `edgy`, expected one of `edge`, `control`, `both`"), "{text}");

    let (code, text) = check(&ns, dir.path(), &edge_config("role = \"edge\""));
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("cluster.etcd_endpoints: at least one etcd endpoint is needed"), "{text}");

    // Nothing listens there: check and run both say etcd does not answer, and run attaches
    // nothing.
    let unreachable = edge_config("role = \"edge\"\netcd_endpoints = [\"http://127.0.0.1:23999\"]\ntimeout_ms = 500");
    let (code, text) = check(&ns, dir.path(), &unreachable);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("http://127.0.0.1:23999") && text.contains("no member answers"), "{text}");
    let mut proc = run_in(&ns, dir.path(), &unreachable);
    let status = proc.wait_exit(Duration::from_secs(10)).expect("exits by itself");
    let log = proc.log_text();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("no member answers"), "{log}");
    let link = ns.exec_ok(&["ip", "link", "show", "lo"]);
    assert!(!link.contains("xdp"), "XDP left on lo: {link}");

    // A real etcd: check says it answers.
    let etcd = Etcd::start(&ns, 1, 23790);
    let reachable = edge_config(&format!("role = \"edge\"\netcd_endpoints = [\"{}\"]", etcd.endpoints()[0]));
    let (code, text) = check(&ns, dir.path(), &reachable);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("cluster role edge, etcd answers"), "{text}");
    drop(etcd);
}

/// `spillway run` with `config`, once its API (127.0.0.1:8053) says it is ready (20 s at most).
fn run_ready(ns: &NetNs, dir: &std::path::Path, config: &str) -> spillway_tests::netns::Proc {
    let mut proc = run_in(ns, dir, config);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let ready =
        || ns.run(|| reqwest::blocking::get("http://127.0.0.1:8053/readyz").is_ok_and(|r| r.status().is_success()));
    while !ready() {
        assert!(std::time::Instant::now() < deadline, "never ready: {}", proc.log_text());
        assert!(proc.wait_exit(Duration::ZERO).is_none(), "exited: {}", proc.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    proc
}

/// A host answering DNS on 127.0.0.1:5300, its API on 8053, and `store` in its `[store]`.
fn host_with_store(store: &str) -> String {
    format!(
        r#"
[server]
zones = ["cdn.example.net."]
listen = ["127.0.0.1:5300"]
[api]
listen = "127.0.0.1:8053"
token = "t"
[store]
{store}
"#
    )
}

/// One host with its store on PostgreSQL (no XDP: the store is what this test is about).
fn postgres_host(url: &str) -> String {
    host_with_store(&format!("url = \"{url}\""))
        + r#"
[market]
[[proxy]]
name = "p1"
addresses = ["198.51.100.10"]
capacity_rps = 1000
"#
}

#[test]
fn a_postgresql_store_that_does_not_answer_is_a_clear_error_and_one_that_does_is_set_up() {
    require_privileges!();
    let ns = NetNs::new("spw-pg");
    let dir = tempfile::tempdir().expect("temp dir");

    // A bad connection string: check names the key.
    let (code, text) = check(&ns, dir.path(), &postgres_host("postgresql://h:notaport/db"));
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("store.url: not a PostgreSQL connection string"), "{text}");

    // Nothing listens there: run stops at once and says where it tried.
    let mut proc = run_in(&ns, dir.path(), &postgres_host("postgresql://spillway@127.0.0.1:25999/spillway"));
    let status = proc.wait_exit(Duration::from_secs(15)).expect("exits by itself");
    let log = proc.log_text();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("postgresql 127.0.0.1:25999/spillway"), "{log}");

    // A real server and an empty database: the first host creates the schema, and a second
    // start finds it (no second creation).
    let pg = Postgres::start(Some(&ns), "127.0.0.1", 25432);
    pg.create_database("spillway");
    let config = postgres_host(&pg.url("spillway"));
    for _ in 0..2 {
        let mut proc = run_ready(&ns, dir.path(), &config);
        assert!(proc.log_text().contains("store=postgresql 127.0.0.1:25432/spillway"), "{}", proc.log_text());
        proc.stop();
    }
    assert_eq!(pg.psql("spillway", "SELECT count(*) FROM spillway_schema"), "1");
    assert_eq!(pg.psql("spillway", "SELECT count(*) FROM contracts"), "0");
}

/// A leader whose election key is gone (another replica's campaign won while it was paused,
/// say) publishes nothing more: its next write to etcd fails the key's compare, it steps
/// down, campaigns again and leads with a newer term, and only then publishes, from the store.
/// It is a role "both" host: built again from the store at its election, its own DNS server
/// answers what it published, with the SOA serial it gave the edges.
#[test]
fn a_deposed_leader_publishes_nothing_until_it_is_elected_again() {
    require_privileges!();
    let ns = NetNs::new("spw-cd");
    let dir = tempfile::tempdir().expect("temp dir");
    let etcd = Etcd::start(&ns, 1, 23790);
    let endpoint = etcd.endpoints()[0].clone();
    let config = host_with_store(&format!("path = \"{}/s.db\"", dir.path().display()))
        + &format!(
            r#"
[cluster]
role = "both"
etcd_endpoints = ["{endpoint}"]
name = "ctl"
lease_ttl_s = 3
timeout_ms = 1000
"#
        );
    let mut proc = run_in(&ns, dir.path(), &config);
    let get = |path: &str| {
        let url = format!("http://127.0.0.1:8053{path}");
        ns.run(move || reqwest::blocking::get(url).ok().filter(|r| r.status().is_success()).and_then(|r| r.text().ok()))
    };
    let term = || {
        get("/metrics").and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("spillway_cluster_leader "))
                .and_then(|v| v.trim().parse::<i64>().ok())
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while term().unwrap_or(0) <= 0 {
        assert!(std::time::Instant::now() < deadline, "never led: {}", proc.log_text());
        assert!(proc.wait_exit(Duration::ZERO).is_none(), "exited: {}", proc.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    let first = term().unwrap_or(0);

    let etcdctl = |args: &[&str]| {
        let mut argv = vec!["etcdctl", "--endpoints", endpoint.as_str()];
        argv.extend_from_slice(args);
        ns.exec_ok(&argv)
    };
    etcdctl(&["del", "--prefix", "/spillway/leader"]);
    let add = |id: &str, origin: &str| {
        let customer = serde_json::json!({"id": id, "names": [format!("www.{id}.cdn.example.net.")],
            "origin_addresses": [origin], "overflow": "origin", "fraction": 1.0});
        ns.run(move || {
            reqwest::blocking::Client::new()
                .post("http://127.0.0.1:8053/v1/customers")
                .bearer_auth("t")
                .json(&customer)
                .send()
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        })
    };
    assert_eq!(add("web", "203.0.113.20"), 200, "{}", proc.log_text());
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let published = etcdctl(&["get", "--print-value-only", "/spillway/state/customers/web"]);
        if !published.trim().is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the customer never reached etcd: {}", proc.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = proc.log_text();
    assert!(log.contains("another replica leads now: this one publishes no more"), "{log}");
    let second = term().unwrap_or(0);
    assert!(second > first, "led again with a newer term: {first} then {second}\n{log}");
    assert_eq!(add("shop", "203.0.113.21"), 200, "{}", proc.log_text());

    let dig = |args: &[&str]| {
        let mut argv = vec!["dig", "@127.0.0.1", "-p", "5300", "+tries=1", "+time=1"];
        argv.extend_from_slice(args);
        String::from_utf8_lossy(&ns.exec(&argv).stdout).into_owned()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let published = etcdctl(&["get", "--print-value-only", "/spillway/state/serial"]);
        let serial: Option<u32> = serde_json::from_str::<serde_json::Value>(published.trim())
            .ok()
            .and_then(|v| v["serial"].as_u64())
            .map(|s| s as u32);
        let answered = dig(&["+short", "www.shop.cdn.example.net", "A"]);
        let soa = dig(&["+short", "cdn.example.net", "SOA"]);
        let here: Option<u32> = soa.split_whitespace().nth(2).and_then(|s| s.parse().ok());
        if answered.trim() == "203.0.113.21" && serial.is_some() && serial == here {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "after its election the host's DNS answers {answered:?} (want 203.0.113.21), SOA serial {here:?} \
             (etcd's {serial:?})\n{}",
            proc.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    proc.stop();
}

/// etcd and PostgreSQL on TLS, both asking for client certificates (PostgreSQL over TLS only,
/// `cert` authentication): a control host given the CA and its certificate leads, writes its
/// store and publishes; the session it holds in PostgreSQL is TLS. A CA that did not sign the
/// server's certificate, a key that is not the certificate's, no certificate or another
/// name's, and TLS settings that contradict each other, are clear errors from check and run.
#[test]
fn etcd_and_postgresql_over_tls_with_the_certificates_checked() {
    require_privileges!();
    let ns = NetNs::new("spw-tls");
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new("spillway-test-ca");
    let stranger = TestCa::new("another-ca");
    let client = ca.leaf("spillway");
    let etcd = Etcd::start_tls(
        &ns,
        1,
        23890,
        EtcdTls { ca: ca.cert.clone(), server: ca.leaf("etcd"), client: ca.leaf("etcdctl") },
    );
    let pg = Postgres::start_tls(Some(&ns), "127.0.0.1", 25532, &ca.leaf("postgres"), &ca.cert);
    pg.create_database("spillway");
    let endpoint = etcd.endpoints()[0].clone();
    assert!(endpoint.starts_with("https://"), "{endpoint}");
    // PostgreSQL takes a client certificate made out to its user alone: `client`'s, unless a
    // test gives another (cert file, key file).
    let config_as = |etcd_ca: &Path, pg_ca: Option<&Path>, url: &str, pg_identity: Option<(&Path, &Path)>| {
        let pg_ca = pg_ca.map(|p| format!("ca_file = \"{}\"\n", p.display())).unwrap_or_default();
        let pg_identity = pg_identity
            .map(|(c, k)| format!("cert_file = \"{}\"\nkey_file = \"{}\"\n", c.display(), k.display()))
            .unwrap_or_default();
        host_with_store(&format!("url = \"{url}\"\n{pg_ca}{pg_identity}"))
            + &format!(
                r#"
[cluster]
role = "both"
etcd_endpoints = ["{endpoint}"]
etcd_ca_file = "{}"
etcd_cert_file = "{}"
etcd_key_file = "{}"
name = "ctl"
lease_ttl_s = 3
timeout_ms = 1000
"#,
                etcd_ca.display(),
                client.cert.display(),
                client.key.display()
            )
    };
    let config = |etcd_ca: &Path, pg_ca: Option<&Path>, url: &str| {
        config_as(etcd_ca, pg_ca, url, pg_ca.map(|_| (client.cert.as_path(), client.key.as_path())))
    };
    let url = pg.url("spillway");

    // Settings that contradict each other, and a CA that signed neither server.
    let (code, text) = check(&ns, dir.path(), &config(&ca.cert, None, &format!("{url}?sslmode=require")));
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("store.url: sslmode=require needs [store] ca_file"), "{text}");
    let plain = config(&ca.cert, Some(&ca.cert), &url).replace("https://", "http://");
    let (code, text) = check(&ns, dir.path(), &plain);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("every endpoint is https://"), "{text}");
    let (code, text) = check(&ns, dir.path(), &config(&stranger.cert, Some(&ca.cert), &url));
    assert_eq!(code, Some(1), "a CA that did not sign etcd's certificate: {text}");
    assert!(text.contains(&endpoint), "{text}");
    let mut proc = run_in(&ns, dir.path(), &config(&ca.cert, Some(&stranger.cert), &url));
    let status = proc.wait_exit(Duration::from_secs(15)).expect("exits by itself");
    let log = proc.log_text();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("postgresql 127.0.0.1:25532/spillway") && log.contains("invalid peer certificate: UnknownIssuer"),
        "{log}"
    );

    // A certificate with another's key, and none at all where PostgreSQL asks for one.
    let other = ca.leaf("other");
    let (code, text) =
        check(&ns, dir.path(), &config_as(&ca.cert, Some(&ca.cert), &url, Some((&client.cert, &other.key))));
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("store.key_file:") && text.contains("is not the key of"), "{text}");
    let mut proc = run_in(&ns, dir.path(), &config_as(&ca.cert, Some(&ca.cert), &url, None));
    let status = proc.wait_exit(Duration::from_secs(15)).expect("exits by itself");
    let log = proc.log_text();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("connection requires a valid client certificate"), "{log}");
    // A certificate the CA made out to another name: not this user's.
    let (other_cert, other_key) = (other.cert.as_path(), other.key.as_path());
    let mut proc = run_in(&ns, dir.path(), &config_as(&ca.cert, Some(&ca.cert), &url, Some((other_cert, other_key))));
    let status = proc.wait_exit(Duration::from_secs(15)).expect("exits by itself");
    let log = proc.log_text();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("certificate authentication failed for user \"spillway\""), "{log}");

    // The right CA and certificates: check says etcd answers; run leads, writes and publishes
    // over TLS.
    let good = config(&ca.cert, Some(&ca.cert), &url);
    let (code, text) = check(&ns, dir.path(), &good);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("etcd answers"), "{text}");
    let mut proc = run_ready(&ns, dir.path(), &good);
    let web = serde_json::json!({"id": "web", "names": ["www.web.cdn.example.net."],
        "origin_addresses": ["203.0.113.20"], "overflow": "origin", "fraction": 1.0});
    let status = ns.run(move || {
        reqwest::blocking::Client::new()
            .post("http://127.0.0.1:8053/v1/customers")
            .bearer_auth("t")
            .json(&web)
            .send()
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    });
    assert_eq!(status, 200, "{}", proc.log_text());
    let mut etcdctl = etcd.etcdctl();
    etcdctl.extend(["get", "--print-value-only", "/spillway/state/customers/web"].map(String::from));
    let etcdctl: Vec<&str> = etcdctl.iter().map(String::as_str).collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while ns.exec_ok(&etcdctl).trim().is_empty() {
        assert!(std::time::Instant::now() < deadline, "the customer never reached etcd: {}", proc.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(pg.psql("spillway", "SELECT count(*) FROM customers WHERE id = 'web'"), "1");
    let tls = pg.psql(
        "spillway",
        "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.application_name = 'spillway'",
    );
    assert_eq!(tls, "t", "spillway's sessions are TLS");
    proc.stop();
}
