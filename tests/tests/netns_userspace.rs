//! End to end, XDP and the userspace server together: what XDP answers (customer A/AAAA over
//! UDP) and what it passes on (the apex, NXDOMAIN, REFUSED, TCP) are answered by the real
//! binary, to dig and kdig over IPv4 and IPv6, UDP and TCP; garbage leaves it serving.

use std::{io::Write, net::TcpStream, time::Duration};

use spillway_tests::{
    daemon::{Daemon, http},
    netns::{SERVER_ADDR4, SERVER_ADDR6, Topology},
    require_privileges,
};

fn config(server_if: &str) -> String {
    format!(
        r#"
[server]
zones = ["cdn.example.net."]
nameservers = ["ns1.cdn.example.net."]
glue = {{ "ns1.cdn.example.net." = ["{SERVER_ADDR4}", "{SERVER_ADDR6}"] }}
listen = ["{SERVER_ADDR4}:53", "[{SERVER_ADDR6}]:53"]
xdp_interfaces = ["{server_if}"]
xdp_mode = "native"

[api]
listen = "{SERVER_ADDR4}:8053"
token = "t"

[store]
path = "@DIR@/spillway.db"

[[proxy]]
name = "edge-1"
addresses = ["198.51.100.10", "2001:db8:100::10"]
capacity_rps = 20000

[[customer]]
id = "shop"
names = ["shop.cdn.example.net.", "shop.example."]
zones = ["shop.example."]
origin_addresses = ["203.0.113.10", "2001:db8:200::10"]
overflow = "origin"
fraction = 0.0
ttl = 30
"#
    )
}

/// Run a client; return its full output (stdout), failing on a non-zero exit.
fn run(topo: &Topology, argv: &[&str]) -> String {
    topo.client.exec_ok(argv)
}

fn status_of(out: &str) -> &str {
    out.split("status: ").nth(1).and_then(|s| s.split(',').next()).unwrap_or("")
}

#[test]
fn userspace_answers_what_xdp_passes() {
    require_privileges!();
    let topo = Topology::new();
    let _daemon = Daemon::start(&topo, &config(&topo.server_if)).expect("spillway starts");
    let s4 = format!("@{SERVER_ADDR4}");
    let s6 = format!("@{SERVER_ADDR6}");

    // XDP over UDP, the userspace server over TCP: the same answer by the same rule.
    let udp = run(&topo, &["dig", "+short", "+tries=1", &s4, "shop.cdn.example.net", "A"]);
    let tcp = run(&topo, &["dig", "+short", "+tcp", "+tries=1", &s4, "shop.cdn.example.net", "A"]);
    assert_eq!((udp.trim(), tcp.trim()), ("203.0.113.10", "203.0.113.10"));
    let tcp6 = run(&topo, &["kdig", "+short", "+tcp", "+retry=0", &s6, "shop.cdn.example.net", "AAAA"]);
    assert_eq!(tcp6.trim(), "2001:db8:200::10");

    // The apex: SOA (authoritative) and NS with glue, over UDP and IPv6.
    let soa = run(&topo, &["dig", "+norec", "+tries=1", &s6, "cdn.example.net", "SOA"]);
    assert_eq!(status_of(&soa), "NOERROR", "{soa}");
    assert!(soa.contains("flags: qr aa;"), "{soa}");
    assert!(soa.contains("IN\tSOA\tns1.cdn.example.net. hostmaster.cdn.example.net."), "{soa}");
    let ns = run(&topo, &["kdig", "+retry=0", &s4, "cdn.example.net", "NS"]);
    assert!(ns.contains("ns1.cdn.example.net.") && ns.contains(SERVER_ADDR6), "glue in additional: {ns}");

    // A sub-zone the customer delegates to us: our SOA at its apex (userspace), and the apex
    // itself steered like any customer name (XDP).
    let soa = run(&topo, &["dig", "+short", "+tries=1", &s4, "shop.example", "SOA"]);
    assert!(soa.starts_with("ns1.cdn.example.net. hostmaster.cdn.example.net."), "{soa}");
    let apex = run(&topo, &["dig", "+short", "+tries=1", &s4, "shop.example", "A"]);
    assert_eq!(apex.trim(), "203.0.113.10");

    // Negative answers.
    let nx = run(&topo, &["dig", "+tries=1", &s4, "nobody.cdn.example.net", "A"]);
    assert_eq!(status_of(&nx), "NXDOMAIN", "{nx}");
    assert!(nx.contains("AUTHORITY: 1"), "SOA in authority: {nx}");
    let nodata = run(&topo, &["dig", "+tries=1", &s4, "shop.cdn.example.net", "MX"]);
    assert_eq!(status_of(&nodata), "NOERROR", "{nodata}");
    assert!(nodata.contains("ANSWER: 0") && nodata.contains("AUTHORITY: 1"), "{nodata}");
    let refused = run(&topo, &["dig", "+tries=1", &s4, "www.example.org", "A"]);
    assert_eq!(status_of(&refused), "REFUSED", "{refused}");
    let badvers = run(&topo, &["dig", "+tries=1", "+edns=1", "+noednsnegotiation", &s4, "cdn.example.net", "SOA"]);
    assert_eq!(status_of(&badvers), "BADVERS", "{badvers}");

    // Garbage: random datagrams, a truncated message, a TCP length prefix with nothing after it.
    topo.client.run(|| {
        let sock = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind");
        for i in 0..200u32 {
            let junk: Vec<u8> = (0..(i % 97)).map(|j| (i.wrapping_mul(31) ^ (j * 7)) as u8).collect();
            let _ = sock.send_to(&junk, (SERVER_ADDR4, 53));
        }
        let _ = sock.send_to(&[0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0x3f, b'a'], (SERVER_ADDR4, 53));
        let mut tcp = TcpStream::connect((SERVER_ADDR4, 53)).expect("tcp connect");
        tcp.set_write_timeout(Some(Duration::from_secs(2))).expect("timeout");
        let _ = tcp.write_all(&[0xff, 0xff, 1, 2, 3]);
    });
    let after = run(&topo, &["dig", "+short", "+tcp", "+tries=1", &s4, "edge-1.cdn.example.net", "A"]);
    assert_eq!(after.trim(), "198.51.100.10", "still serving after garbage");

    let (_, metrics) = http(&topo, "GET", "/metrics", None, None);
    let userspace = metrics
        .lines()
        .find(|l| l.starts_with(r#"spillway_dns_queries_total{path="userspace"}"#))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .expect("userspace counter");
    assert!(userspace >= 10.0, "{metrics}");
}
