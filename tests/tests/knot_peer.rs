//! Against a peer: the same zone served by Knot DNS (knotd from Debian, started here in its own
//! namespaces) and by Spillway. For names whose answers do not depend on a fraction (apex,
//! nameserver and proxy names, NODATA, empty non-terminals, NXDOMAIN, out of zone), over UDP and
//! TCP, IPv4 and IPv6, with and without EDNS: the same rcode, flags, question, EDNS and sections.
//! SOA serials are left out (each server counts its own).

use std::net::SocketAddr;

use hickory_proto::{
    op::{Edns, Message, Query},
    rr::{Name, RData, Record, RecordType},
};
use spillway_tests::{
    daemon::Daemon,
    netns::{SERVER_ADDR4, SERVER_ADDR6, Topology},
    peers::{self, exchange},
    require_privileges,
};

const SPILLWAY: &str = r#"
[server]
zones = ["cdn.example.net."]
nameservers = ["ns1.cdn.example.net."]
glue = { "ns1.cdn.example.net." = ["192.0.2.53", "2001:db8::53"] }
listen = ["192.0.2.53:53", "[2001:db8::53]:53"]
xdp_interfaces = ["IFACE"]
xdp_mode = "native"
[api]
listen = "192.0.2.53:8053"
token = "t"
[store]
path = "@DIR@/spillway.db"
[[proxy]]
name = "edge-1"
addresses = ["198.51.100.10"]
capacity_rps = 1000
[[customer]]
id = "shop"
names = ["shop.cdn.example.net.", "a.b.deep.cdn.example.net."]
origin_addresses = ["203.0.113.10"]
overflow = "origin"
fraction = 0.0
ttl = 30
"#;

/// The same data as a zone file (customer names as their origin answer; they are only asked
/// for types they do not have).
const ZONE: &str = "$TTL 3600
cdn.example.net. 3600 IN SOA ns1.cdn.example.net. hostmaster.cdn.example.net. 1 3600 600 604800 60
cdn.example.net. 3600 IN NS ns1.cdn.example.net.
ns1.cdn.example.net. 300 IN A 192.0.2.53
ns1.cdn.example.net. 300 IN AAAA 2001:db8::53
edge-1.cdn.example.net. 300 IN A 198.51.100.10
shop.cdn.example.net. 30 IN A 203.0.113.10
a.b.deep.cdn.example.net. 30 IN A 203.0.113.10
";

/// What must agree, as comparable text.
fn summary(bytes: &[u8]) -> String {
    let m = Message::from_vec(bytes).expect("reply parses");
    let md = &m.metadata;
    let section = |rs: &[Record]| {
        let mut v: Vec<String> = rs
            .iter()
            .map(|r| {
                let data = match &r.data {
                    RData::SOA(s) => {
                        format!("SOA {} {} _ {} {} {} {}", s.mname, s.rname, s.refresh, s.retry, s.expire, s.minimum)
                    }
                    other => other.to_string(),
                };
                // Names compare case-insensitively (Knot compresses rdata names against the
                // question, so they come back in the question's case).
                format!("{} {} {} {}", r.name, r.record_type(), r.ttl, data).to_lowercase()
            })
            .collect();
        v.sort();
        v
    };
    format!(
        "rcode={:?} aa={} tc={} rd={} ra={} ad={} cd={} q={:?} edns={:?}\nan={:?}\nns={:?}\nar={:?}",
        md.response_code,
        md.authoritative,
        md.truncation,
        md.recursion_desired,
        md.recursion_available,
        md.authentic_data,
        md.checking_disabled,
        m.queries.iter().map(|q| format!("{} {}", q.name, q.query_type)).collect::<Vec<_>>(),
        m.edns.as_ref().map(|e| (e.max_payload(), e.version(), e.flags().dnssec_ok)),
        section(&m.answers),
        section(&m.authorities),
        section(&m.additionals),
    )
}

#[test]
fn same_answers_as_knot() {
    require_privileges!();
    assert!(
        std::process::Command::new("knotd").arg("-V").output().is_ok(),
        "knotd missing: cargo xtask setup installs it"
    );

    let ours = Topology::new();
    let _spillway = Daemon::start(&ours, &SPILLWAY.replace("IFACE", &ours.server_if)).expect("spillway starts");

    let peer = Topology::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let _knot = peers::knot(&peer, dir.path(), "cdn.example.net.", ZONE, None).expect("knotd starts");

    let names = [
        "cdn.example.net.",
        "CDN.Example.NET.",
        "ns1.cdn.example.net.",
        "edge-1.cdn.example.net.",
        "shop.cdn.example.net.",
        "deep.cdn.example.net.",
        "b.deep.cdn.example.net.",
        "nobody.cdn.example.net.",
        "x.nobody.cdn.example.net.",
        "www.example.org.",
        "example.net.",
    ];
    let mut compared = 0;
    let mut failures = Vec::new();
    for name in names {
        for qtype in [RecordType::SOA, RecordType::NS, RecordType::A, RecordType::AAAA, RecordType::MX, RecordType::TXT]
        {
            // Customer names answer A/AAAA by fraction; the rest of their types are compared.
            if name.starts_with("shop.") && matches!(qtype, RecordType::A | RecordType::AAAA) {
                continue;
            }
            for (edns, tcp, v6) in
                [(false, false, false), (true, false, true), (true, true, false), (false, true, true)]
            {
                let mut q = Message::query();
                q.metadata.id = 0x4242;
                q.metadata.recursion_desired = true;
                q.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
                if edns {
                    let mut e = Edns::new();
                    e.set_max_payload(4096);
                    q.set_edns(e);
                }
                let bytes = q.to_vec().unwrap();
                let addr: SocketAddr =
                    if v6 { format!("[{SERVER_ADDR6}]:53") } else { format!("{SERVER_ADDR4}:53") }.parse().unwrap();
                let theirs = exchange(&peer, addr, bytes.clone(), tcp).map(|b| summary(&b));
                let mine = exchange(&ours, addr, bytes, tcp).map(|b| summary(&b));
                compared += 1;
                if theirs != mine {
                    failures.push(format!(
                        "{name} {qtype} edns={edns} tcp={tcp} v6={v6}\n knot:     {theirs:?}\n spillway: {mine:?}"
                    ));
                }
            }
        }
    }
    assert!(compared >= 200, "{compared}");
    assert!(
        failures.is_empty(),
        "{} of {compared} differ:\n{}",
        failures.len(),
        failures[..failures.len().min(3)].join("\n")
    );
}
