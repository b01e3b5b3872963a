//! The XDP program under many packets: the fraction drawn per query, the proxy window, the origin
//! algorithms, 100 000 random and mutated packets that must each be passed untouched,
//! answered with a well-formed reply, or slipped or dropped by the rate limit, and records
//! replaced while the program reads them.

use std::collections::{HashMap, HashSet};

use hickory_proto::{
    op::{Message, MessageType, ResponseCode},
    rr::{RData, RecordType},
};
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::os::fd::AsFd;

use spillway::dataplane::{
    LoadOptions, program, records,
    test_run::{TestRunOptions, test_run},
};
use spillway_common::stats::XdpOutcome;
use spillway_tests::{
    dnswire::*,
    fixture::{self, XDP_DROP, XDP_PASS, XDP_TX},
    frame::{Transport, checked_dns_payload, query_frame},
    require_privileges,
};

const STEERING: &str = r#"
[server]
zones = ["cdn.example.net."]
xdp_interfaces = ["spw-unused0"]
[api]
listen = "127.0.0.1:0"
token = "t"
[store]
path = "/nonexistent.db"
[[proxy]]
name = "edge-a"
addresses = ["198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4", "198.51.100.5"]
capacity_rps = 1000
[[proxy]]
name = "edge-b"
addresses = ["198.51.100.6", "198.51.100.7", "198.51.100.8", "198.51.100.9", "198.51.100.10", "198.51.100.11"]
capacity_rps = 1000
[[customer]]
id = "shop"
names = ["shop.cdn.example.net."]
origin_addresses = ["203.0.113.1", "203.0.113.2", "203.0.113.3"]
overflow = "origin"
assignment = "round-robin"
fraction = 0.3
ttl = 30
[[customer]]
id = "weighted"
names = ["weighted.cdn.example.net."]
origin_addresses = ["203.0.113.1", "203.0.113.2"]
origin_weights = [3, 1]
overflow = "origin"
assignment = "weighted"
fraction = 0.0
ttl = 30
[[customer]]
id = "hashed"
names = ["hashed.cdn.example.net."]
origin_addresses = ["203.0.113.1", "203.0.113.2", "203.0.113.3"]
overflow = "origin"
assignment = "hash"
fraction = 0.0
ttl = 30
"#;

/// The A records of one XDP reply.
fn answer_a(dp: &spillway::dataplane::Dataplane, frame: &[u8]) -> Vec<[u8; 4]> {
    let (action, out) = fixture::run(dp, program::DNS, frame);
    assert_eq!(action, XDP_TX);
    let msg = Message::from_vec(&checked_dns_payload(&out).expect("checksums")).expect("parses");
    msg.answers
        .iter()
        .map(|r| match &r.data {
            RData::A(a) => a.0.octets(),
            other => panic!("unexpected record {other:?}"),
        })
        .collect()
}

/// BPF_PROG_TEST_RUN runs the program on the calling CPU; the round-robin cursor is per CPU.
/// Pinned to one CPU, its sequence is exact.
fn pin_to_one_cpu() {
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        assert_eq!(libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set), 0, "sched_setaffinity");
    }
}

#[test]
fn fraction_window_and_origin_algorithms() {
    require_privileges!();
    pin_to_one_cpu();
    let (dp, _) = fixture::load(STEERING, LoadOptions::default());
    let query = query_frame(&Transport::V4, &Query::new("shop.cdn.example.net.", TYPE_A).bytes());

    // Fraction 0.3: 10 000 runs land within 0.27..0.33; proxy answers are windows of 8 of the
    // 11 proxies, rotating; origin answers go round-robin over the 3 origins.
    let runs = 10_000;
    let mut proxied = 0;
    let mut starts = HashSet::new();
    let mut origins: HashMap<[u8; 4], u32> = HashMap::new();
    for _ in 0..runs {
        let a = answer_a(&dp, &query);
        if a[0][2] == 100 {
            proxied += 1;
            assert_eq!(a.len(), 8, "a window of 8 proxies: {a:?}");
            let unique: HashSet<_> = a.iter().collect();
            assert_eq!(unique.len(), 8, "distinct proxies: {a:?}");
            for w in a.windows(2) {
                let (x, y) = (w[0][3], w[1][3]);
                assert_eq!(y, if x == 11 { 1 } else { x + 1 }, "consecutive (wrapping) proxies: {a:?}");
            }
            starts.insert(a[0][3]);
        } else {
            assert_eq!(a.len(), 1, "one origin: {a:?}");
            *origins.entry(a[0]).or_default() += 1;
        }
    }
    let share = proxied as f64 / runs as f64;
    assert!((0.27..=0.33).contains(&share), "proxy share {share} at fraction 0.3");
    assert_eq!(starts.len(), 11, "every proxy starts some window: {starts:?}");
    // One CPU, one cursor: the counts differ by at most 1.
    let counts: Vec<u32> = origins.values().copied().collect();
    assert_eq!(counts.len(), 3, "{origins:?}");
    assert!(counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1, "round-robin {origins:?}");

    // Weighted 3:1.
    let query = query_frame(&Transport::V4, &Query::new("weighted.cdn.example.net.", TYPE_A).bytes());
    let first = (0..4000).filter(|_| answer_a(&dp, &query)[0] == [203, 0, 113, 1]).count();
    let share = first as f64 / 4000.0;
    assert!((0.70..=0.80).contains(&share), "weight 3 of 4 got {share}");

    // Hash: the same client subnet always gets the same origin.
    let query = query_frame(&Transport::V4, &Query::new("hashed.cdn.example.net.", TYPE_A).bytes());
    let first = answer_a(&dp, &query);
    for _ in 0..200 {
        assert_eq!(answer_a(&dp, &query), first);
    }
}

/// What the program did with one packet.
#[derive(PartialEq)]
enum Outcome {
    Passed,
    Answered,
    /// NXDOMAIN or NODATA with one SOA in authority.
    Negative,
    /// TC=1, no records: the rate limit's slip.
    Slipped,
    /// XDP_DROP: the rate limit's drop.
    Dropped,
}

/// Every outcome is XDP_PASS with the frame untouched, XDP_TX with a well-formed reply (an
/// answer, or a slip), or XDP_DROP (counted, and checked against the rate limit's counter).
fn check_outcome(dp: &spillway::dataplane::Dataplane, input: &[u8]) -> Result<Outcome, String> {
    let (action, out) = fixture::run(dp, program::DNS, input);
    match action {
        XDP_PASS if out == input => Ok(Outcome::Passed),
        XDP_PASS => Err("passed but modified".into()),
        XDP_TX => {
            let dns = checked_dns_payload(&out)?;
            let m = Message::from_vec(&dns).map_err(|e| format!("reply does not parse: {e}"))?;
            if m.metadata.message_type != MessageType::Response {
                return Err(format!("odd reply {m:?}"));
            }
            let rcode = m.metadata.response_code;
            let soa_only = m.authorities.len() == 1 && m.authorities[0].record_type() == RecordType::SOA;
            match (m.answers.is_empty(), m.metadata.truncation) {
                (false, false) if rcode == ResponseCode::NoError => Ok(Outcome::Answered),
                (true, false) if soa_only && matches!(rcode, ResponseCode::NXDomain | ResponseCode::NoError) => {
                    Ok(Outcome::Negative)
                }
                (true, true) if m.queries.len() == 1 && m.authorities.is_empty() => Ok(Outcome::Slipped),
                _ => Err(format!("odd reply {m:?}")),
            }
        }
        XDP_DROP => Ok(Outcome::Dropped),
        other => Err(format!("action {other}")),
    }
}

#[test]
fn random_and_mutated_packets() {
    require_privileges!();
    // The rate limit on, with no exemption, so that the flood of answers for the same few
    // names also takes the drop and slip paths.
    let config = format!("{}\n[rrl]\nrate = 100\nwindow_s = 1\nslip = 2\n", fixture::config_text());
    let (dp, _) = fixture::load(&config, LoadOptions::default());
    let seed: u64 = std::env::var("SPILLWAY_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("seed {seed} (SPILLWAY_FUZZ_SEED to replay)");
    let mut rng = StdRng::seed_from_u64(seed);

    let names =
        ["fixed.cdn.example.net.", "origin.cdn.example.net.", "cname.cdn.example.net.", "nobody.cdn.example.net."];
    let mut seeds = Vec::new();
    for t in [Transport::V4, Transport::V6, Transport::V4.vlan(3), Transport::V6.vlan(9)] {
        for n in names {
            for qt in [TYPE_A, TYPE_AAAA, TYPE_MX] {
                seeds.push(query_frame(&t, &Query::new(n, qt).bytes()));
                seeds.push(query_frame(&t, &Query::new(n, qt).edns(Edns::new(1232)).bytes()));
            }
        }
    }

    // `cargo xtask fuzz` sends a million (SPILLWAY_XDP_FUZZ_PACKETS).
    let total: u64 = std::env::var("SPILLWAY_XDP_FUZZ_PACKETS").ok().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let (mut tx, mut negative, mut slipped, mut dropped) = (0u64, 0u64, 0u64, 0u64);
    let mut failures = Vec::new();
    for i in 0..total {
        let input: Vec<u8> = if i % 4 == 0 {
            // Random bytes, sometimes with a plausible Ethernet/IP start.
            let len = rng.random_range(15..600);
            let mut f: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            if rng.random_bool(0.5) {
                let s = &seeds[rng.random_range(0..seeds.len())];
                let keep = rng.random_range(14..s.len().min(len));
                f[..keep].copy_from_slice(&s[..keep]);
            }
            f
        } else {
            // A valid query with a few bytes changed, cut short, or extended.
            let mut f = seeds[rng.random_range(0..seeds.len())].clone();
            for _ in 0..rng.random_range(1..4) {
                match rng.random_range(0..3) {
                    0 => {
                        let at = rng.random_range(0..f.len());
                        f[at] = rng.random();
                    }
                    1 if f.len() > 15 => {
                        let at = rng.random_range(14..f.len());
                        f.truncate(at);
                    }
                    1 => {}
                    _ => f.extend((0..rng.random_range(1..40)).map(|_| rng.random::<u8>())),
                }
            }
            f
        };
        match check_outcome(&dp, &input) {
            Ok(Outcome::Answered) => tx += 1,
            Ok(Outcome::Negative) => negative += 1,
            Ok(Outcome::Slipped) => slipped += 1,
            Ok(Outcome::Dropped) => dropped += 1,
            Ok(Outcome::Passed) => {}
            Err(e) => failures.push(format!("{e}: {}", input.iter().map(|b| format!("{b:02x}")).collect::<String>())),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} packets failed (seed {seed}):\n{}",
        failures.len(),
        failures[..failures.len().min(5)].join("\n")
    );
    // Mutations that leave a query valid (e.g. a changed ID, with a matching checksum by
    // chance, or the unmutated seeds above) must still be answered: the fuzz reaches the
    // answering path.
    eprintln!(
        "{tx} of {total} answered, {negative} negative answers, {slipped} slipped, {dropped} dropped by the rate limit"
    );
    let outcomes = dp.xdp_stats().expect("XDP counters");
    assert_eq!(
        outcomes[XdpOutcome::AnsweredNxDomain as usize] + outcomes[XdpOutcome::AnsweredNoData as usize],
        negative,
        "every negative answer counted"
    );
    assert!(negative > 0, "the fuzz reached the negative-answer path");
    assert_eq!(outcomes[XdpOutcome::RrlDropped as usize], dropped, "every drop is the rate limit's");
    assert_eq!(outcomes[XdpOutcome::RrlSlipped as usize], slipped);
    assert!(tx > 0 && slipped > 0 && dropped > 0, "the fuzz reached the answer, slip and drop paths");
}

/// Run the program on `query` in one thread while this one calls `write(dp, n)` for n = 1, 2,
/// ... as fast as the data plane takes it (each write into the slot the one before left waits
/// for a grace period), until the reader has made 5 000 runs and the writer 200 writes. Every
/// reply must be XDP_TX with correct checksums, and `version` of it (which panics on a reply
/// that mixes versions) is counted. `write(dp, 0)` is done before the reader starts.
fn replaced_under_reads(
    dp: &mut spillway::dataplane::Dataplane,
    query: Vec<u8>,
    mut write: impl FnMut(&mut spillway::dataplane::Dataplane, u32),
    version: impl Fn(&Message) -> u32 + Send + 'static,
) -> HashMap<u32, u32> {
    use std::sync::{
        Arc,
        atomic::{AtomicU32, Ordering::Relaxed},
    };
    write(dp, 0);
    let prog = dp.program_fd(program::DNS).expect("program").try_clone_to_owned().expect("dup");
    let writes = Arc::new(AtomicU32::new(1));
    let reader = {
        let writes = writes.clone();
        std::thread::spawn(move || {
            let mut seen: HashMap<u32, u32> = HashMap::new();
            let mut runs = 0;
            while runs < 5_000 || writes.load(Relaxed) < 200 {
                let r = test_run(prog.as_fd(), &TestRunOptions::new(&query)).expect("test run");
                assert_eq!(r.return_value, XDP_TX);
                let msg = Message::from_vec(&checked_dns_payload(&r.data_out).expect("checksums")).expect("parses");
                *seen.entry(version(&msg)).or_default() += 1;
                runs += 1;
            }
            seen
        })
    };
    while !reader.is_finished() {
        let n = writes.load(Relaxed);
        write(dp, n);
        writes.store(n + 1, Relaxed);
    }
    let seen = reader.join().expect("reader");
    let writes = writes.load(Relaxed);
    assert!(writes >= 200, "{writes} replacements during the reads");
    seen
}

/// A customer's record replaced while the program reads it is seen whole: two versions that
/// differ in every byte of the origin answer (TTL 30 or 90, other addresses, other sums), and
/// each reply is one of them.
#[test]
fn records_replaced_under_reads_are_never_torn() {
    require_privileges!();
    let (mut dp, catalog) = fixture::load(STEERING, LoadOptions::default());
    let shop = catalog.customer("shop").expect("shop");
    let version = |ttl: u32, base: u8| {
        let mut config = shop.config.clone();
        config.ttl = ttl;
        config.origin_addresses = (1..=3).map(|i| std::net::IpAddr::from([203, 0, 113, base + i])).collect();
        config.origin_weights = None;
        records::customer_record(&config, 0.0, 0).expect("record")
    };
    let (a, b) = (version(30, 0), version(90, 100));
    let query = query_frame(&Transport::V4, &Query::new("shop.cdn.example.net.", TYPE_A).bytes());
    let index = shop.index;
    let seen = replaced_under_reads(
        &mut dp,
        query,
        |dp, n| dp.set_customer(index, if n.is_multiple_of(2) { &a } else { &b }).expect("record replaced"),
        |msg| {
            let [rr] = &msg.answers[..] else { panic!("one origin answer: {msg:?}") };
            let RData::A(addr) = &rr.data else { panic!("an A record: {rr:?}") };
            let last = addr.0.octets()[3];
            let want = if rr.ttl == 30 { 1..=3 } else { 101..=103 };
            assert!(want.contains(&last), "one version per reply: TTL {} with {addr}", rr.ttl);
            rr.ttl
        },
    );
    assert_eq!(seen.keys().copied().collect::<HashSet<_>>(), HashSet::from([30, 90]), "both versions read: {seen:?}");
}

/// The proxies' records replaced while the program reads them are seen whole: two proxy sets
/// (11 and 8 addresses, other networks), and each reply's window is from one.
#[test]
fn proxy_rings_replaced_under_reads_are_never_torn() {
    require_privileges!();
    let (mut dp, catalog) = fixture::load(STEERING, LoadOptions::default());
    let shop = catalog.customer("shop").expect("shop");
    dp.set_customer(shop.index, &records::customer_record(&shop.config, 1.0, 0).expect("record")).expect("all proxies");
    let mut other = spillway_common::maps::ProxySet::empty();
    for i in 0..8u8 {
        other.v4[i as usize] = [198, 18, 0, i + 1];
    }
    other.v4_len = 8;
    let rings = |set: &spillway_common::maps::ProxySet| spillway_common::answers::proxy_rings(set).expect("rings");
    let (a, b) = (rings(catalog.proxy_set()), rings(&other));
    let query = query_frame(&Transport::V4, &Query::new("shop.cdn.example.net.", TYPE_A).bytes());
    let seen = replaced_under_reads(
        &mut dp,
        query,
        |dp, n| dp.set_proxy_rings(if n.is_multiple_of(2) { &a } else { &b }).expect("rings replaced"),
        |msg| {
            assert_eq!(msg.answers.len(), 8, "a whole window: {msg:?}");
            let nets: HashSet<[u8; 3]> = msg
                .answers
                .iter()
                .map(|rr| {
                    let RData::A(a) = &rr.data else { panic!("an A record: {rr:?}") };
                    let a = a.0.octets();
                    [a[0], a[1], a[2]]
                })
                .collect();
            assert_eq!(nets.len(), 1, "one proxy set per reply: {msg:?}");
            nets.into_iter().next().unwrap()[1] as u32
        },
    );
    assert_eq!(seen.keys().copied().collect::<HashSet<_>>(), HashSet::from([51, 18]), "both sets read: {seen:?}");
}
