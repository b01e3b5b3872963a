//! On a host with several addresses and a wildcard bind (`0.0.0.0:53`, `[::]:53`), every UDP
//! reply leaves from the address its query was sent to (IP_PKTINFO / IPV6_RECVPKTINFO), so a
//! client that checks the source accepts it.

use std::{
    net::{SocketAddr, UdpSocket},
    time::Duration,
};

use spillway_tests::{
    daemon::Daemon,
    dnswire::{Query, TYPE_A},
    fixture,
    netns::{SERVER_ADDR4, SERVER_ADDR6, Topology},
    require_privileges,
};

const SECOND4: &str = "192.0.2.54";
const SECOND6: &str = "2001:db8::54";

fn config() -> String {
    fixture::daemon_config(&["0.0.0.0:53", "[::]:53"], None, "")
}

#[test]
fn udp_replies_leave_from_the_address_queried() {
    require_privileges!();
    let topo = Topology::new();
    topo.server.exec_ok(&["ip", "addr", "add", &format!("{SECOND4}/24"), "dev", &topo.server_if]);
    topo.server.exec_ok(&["ip", "addr", "add", &format!("{SECOND6}/64"), "dev", &topo.server_if, "nodad"]);
    let _daemon = Daemon::start(&topo, &config()).expect("spillway starts");
    let sources = topo.client.run(|| {
        let mut out = Vec::new();
        for server in [SERVER_ADDR4, SECOND4, SERVER_ADDR6, SECOND6] {
            let to: SocketAddr = SocketAddr::new(server.parse().unwrap(), 53);
            let sock = UdpSocket::bind(if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }).unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let q = Query::new("edge-1.cdn.example.net.", TYPE_A).bytes();
            sock.send_to(&q, to).unwrap();
            let mut buf = [0u8; 512];
            let from = sock.recv_from(&mut buf).map(|(_, from)| from);
            out.push((to, from.map_err(|e| e.to_string())));
        }
        out
    });
    for (to, from) in sources {
        assert_eq!(from, Ok(to), "the reply to a query sent to {to}");
    }
}
