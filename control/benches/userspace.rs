//! The userspace server's cost per query: the bytes of a UDP request in, the reply's bytes out
//! (parse, catalog lookup, decision, encode), with 1 000 and 100 000 customer names. `cargo
//! xtask bench` runs it and copies the medians into target/bench/results.json.

use std::{hint::black_box, net::IpAddr};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use hickory_proto::{
    op::{Edns, Message, Query},
    rr::{Name, RecordType},
};
use spillway::{
    catalog::Catalog,
    config::Config,
    dns::authority::{Authority, Transport},
};

/// One customer with `names` names, always answered with the proxies (fraction 1).
fn config(names: usize) -> Config {
    let list: Vec<String> = (0..names).map(|i| format!("\"c{i}.cdn.example.net.\"")).collect();
    let text = format!(
        r#"
[server]
zones = ["cdn.example.net."]
nameservers = ["ns1.cdn.example.net."]
glue = {{ "ns1.cdn.example.net." = ["192.0.2.53"] }}
listen = ["127.0.0.1:5353"]
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
id = "bench"
names = [{}]
origin_addresses = ["203.0.113.10", "2001:db8:200::10"]
overflow = "origin"
fraction = 1.0
ttl = 30
"#,
        list.join(", ")
    );
    Config::parse(&text, "bench.toml").expect("bench config")
}

fn request(name: &str, qtype: RecordType, edns: bool) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = 0x4242;
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        m.set_edns(e);
    }
    m.to_vec().expect("request")
}

fn per_query(c: &mut Criterion) {
    let client: IpAddr = "192.0.2.1".parse().expect("addr");
    let mut group = c.benchmark_group("userspace");
    for names in [1_000usize, 100_000] {
        let config = config(names);
        let catalog = Catalog::from_config(&config).expect("catalog").snapshot();
        let authority = Authority::new(&config);
        let cases = [
            ("A", request("c7.cdn.example.net.", RecordType::A, false)),
            ("AAAA", request("c7.cdn.example.net.", RecordType::AAAA, false)),
            ("A, EDNS", request("c7.cdn.example.net.", RecordType::A, true)),
            ("NXDOMAIN", request("nx.cdn.example.net.", RecordType::A, false)),
        ];
        for (label, bytes) in &cases {
            let reply = authority.answer(&catalog, bytes, client, Transport::Udp).expect("a reply");
            assert!(reply.len() > bytes.len(), "{label}: the reply holds more than the question");
            group.bench_with_input(BenchmarkId::new(*label, names), bytes, |b, bytes| {
                b.iter(|| authority.answer(&catalog, black_box(bytes), client, Transport::Udp))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, per_query);
criterion_main!(benches);
