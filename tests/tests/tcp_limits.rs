//! TCP from the open internet (RFC 7766 §6.2.3): 2 000 idle connections from one source, and
//! connections from another that send queries and never read the replies, do not stop a
//! third client's TCP queries; the server closes what is over a source's cap at once, and the
//! never-reading connections after its write timeout.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use spillway_tests::{
    daemon::Daemon,
    dnswire::{Query, TYPE_A},
    fixture,
    netns::{SERVER_ADDR4, Topology},
    require_privileges,
};

const IDLE_SOURCE: &str = "192.0.2.2";
const GREEDY_SOURCE: &str = "192.0.2.3";
const GOOD_SOURCE: &str = "192.0.2.4";

fn config() -> String {
    fixture::daemon_config(&[&format!("{SERVER_ADDR4}:53")], None, "")
}

fn connect_from(source: &str) -> std::io::Result<TcpStream> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    let src: Ipv4Addr = source.parse().unwrap();
    s.bind(&SocketAddr::from((src, 0)).into())?;
    let dst: SocketAddr = format!("{SERVER_ADDR4}:53").parse().unwrap();
    s.connect_timeout(&dst.into(), Duration::from_secs(2))?;
    Ok(s.into())
}

/// One query over TCP from `source`: the reply's rcode, or the error.
fn tcp_query(source: &str) -> Result<u8, String> {
    let mut s = connect_from(source).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let q = Query::new("edge-1.cdn.example.net.", TYPE_A).bytes();
    let mut msg = (q.len() as u16).to_be_bytes().to_vec();
    msg.extend_from_slice(&q);
    s.write_all(&msg).map_err(|e| e.to_string())?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).map_err(|e| e.to_string())?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut reply).map_err(|e| e.to_string())?;
    Ok(reply[3] & 0x0f)
}

/// Whether the server closed `s` (EOF or reset) within `within`.
fn closed_by_server(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 1024];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn idle_and_never_reading_connections_do_not_stop_tcp() {
    require_privileges!();
    let topo = Topology::new();
    for a in [IDLE_SOURCE, GREEDY_SOURCE, GOOD_SOURCE] {
        topo.client.exec_ok(&["ip", "addr", "add", &format!("{a}/24"), "dev", &topo.client_if]);
    }
    let _daemon = Daemon::start(&topo, &config()).expect("spillway starts");
    let report = topo.client.run(|| {
        assert_eq!(tcp_query(GOOD_SOURCE), Ok(0), "a TCP query before the flood");
        // 2 000 idle connections from one source.
        let mut idle: Vec<TcpStream> = (0..2000).filter_map(|_| connect_from(IDLE_SOURCE).ok()).collect();
        // From another, connections that send query after query and never read a reply.
        let q = Query::new("edge-1.cdn.example.net.", TYPE_A).bytes();
        let mut one = (q.len() as u16).to_be_bytes().to_vec();
        one.extend_from_slice(&q);
        let burst: Vec<u8> = one.iter().copied().cycle().take(one.len() * 20_000).collect();
        let mut greedy: Vec<TcpStream> = (0..16)
            .filter_map(|_| {
                let mut s = connect_from(GREEDY_SOURCE).ok()?;
                s.set_write_timeout(Some(Duration::from_millis(200))).unwrap();
                let _ = s.write_all(&burst);
                Some(s)
            })
            .collect();
        // The third client is served at once, again and again.
        let start = Instant::now();
        let answers: Vec<Result<u8, String>> = (0..20).map(|_| tcp_query(GOOD_SOURCE)).collect();
        let took = start.elapsed();
        // Over the source's cap, closed at once; the never-reading ones after the write timeout
        // (or the idle timeout, for one whose replies all fit the buffers).
        let closed_idle = idle.iter_mut().map(|s| closed_by_server(s, Duration::from_millis(1))).filter(|c| *c).count();
        let t = Instant::now();
        let closed_greedy =
            greedy.iter_mut().map(|s| closed_by_server(s, Duration::from_secs(12))).filter(|c| *c).count();
        (idle.len(), closed_idle, greedy.len(), closed_greedy, answers, took, t.elapsed())
    });
    let (opened, closed_idle, greedy, closed_greedy, answers, took, greedy_wait) = report;
    eprintln!(
        "idle: {closed_idle} of {opened} closed by the server; never-reading: {closed_greedy} of {greedy} closed \
         (within {greedy_wait:?}); 20 queries from a third source in {took:?}"
    );
    assert!(answers.iter().all(|a| *a == Ok(0)), "{answers:?}");
    assert!(opened >= 1900, "the flood connected ({opened})");
    assert!(
        closed_idle >= opened - 32,
        "at most 32 connections of one source stay open ({closed_idle} of {opened} closed)"
    );
    assert_eq!(closed_greedy, greedy, "clients that never read are dropped after the write timeout");
}
