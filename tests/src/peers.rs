//! Other DNS servers to compare with, started by hand in a namespace (there is no systemd
//! here) and stopped with their [`Proc`] guard: Knot DNS (sockets or XDP) and NSD. And the
//! one-query exchange used to wait for them.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream, UdpSocket},
    path::Path,
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Message, Query},
    rr::{Name, RecordType},
};

use crate::netns::{Proc, SERVER_ADDR4, SERVER_ADDR6, Topology};

/// One query, UDP or TCP, from inside the client namespace.
pub fn exchange(topo: &Topology, server: SocketAddr, request: Vec<u8>, tcp: bool) -> Result<Vec<u8>, String> {
    topo.client.run(move || -> Result<Vec<u8>, String> {
        let timeout = Some(Duration::from_secs(2));
        if tcp {
            let mut s = TcpStream::connect_timeout(&server, Duration::from_secs(2)).map_err(|e| e.to_string())?;
            s.set_read_timeout(timeout).map_err(|e| e.to_string())?;
            let mut out = (request.len() as u16).to_be_bytes().to_vec();
            out.extend_from_slice(&request);
            s.write_all(&out).map_err(|e| e.to_string())?;
            let mut len = [0u8; 2];
            s.read_exact(&mut len).map_err(|e| e.to_string())?;
            let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
            s.read_exact(&mut buf).map_err(|e| e.to_string())?;
            Ok(buf)
        } else {
            let bind = if server.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" };
            let s = UdpSocket::bind(bind).map_err(|e| e.to_string())?;
            s.set_read_timeout(timeout).map_err(|e| e.to_string())?;
            s.send_to(&request, server).map_err(|e| e.to_string())?;
            let mut buf = vec![0u8; 65535];
            let n = s.recv(&mut buf).map_err(|e| e.to_string())?;
            buf.truncate(n);
            Ok(buf)
        }
    })
}

/// Wait (up to 10 s) until the server answers an SOA query for `zone` over UDP.
pub fn wait_answering(topo: &Topology, zone: &str, proc: &Proc) -> Result<(), String> {
    let probe = {
        let mut q = Message::query();
        q.add_query(Query::query(Name::from_ascii(zone).map_err(|e| e.to_string())?, RecordType::SOA));
        q.to_vec().map_err(|e| e.to_string())?
    };
    let server: SocketAddr = format!("{SERVER_ADDR4}:53").parse().map_err(|e| format!("{e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while exchange(topo, server, probe.clone(), false).is_err() {
        if Instant::now() > deadline {
            return Err(format!("the server is not answering; log:\n{}", proc.log_text()));
        }
    }
    Ok(())
}

/// knotd serving `zone` (the apex `origin`, from a zone file's text) in the server namespace:
/// over sockets with `workers` UDP workers, or in XDP mode on `xdp_if`.
pub fn knot(topo: &Topology, dir: &Path, origin: &str, zone: &str, xdp_if: Option<&str>) -> Result<Proc, String> {
    for sub in ["run", "db"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(|e| e.to_string())?;
    }
    let file = format!("{}zone", origin);
    std::fs::write(dir.join(&file), zone).map_err(|e| e.to_string())?;
    let d = dir.display();
    let xdp = xdp_if.map(|i| format!("xdp:\n    listen: {i}\n    udp: on\n")).unwrap_or_default();
    let conf = format!(
        "server:\n    rundir: \"{d}/run\"\n    listen: [ {SERVER_ADDR4}@53, {SERVER_ADDR6}@53 ]\n{xdp}\
         database:\n    storage: \"{d}/db\"\n\
         template:\n  - id: default\n    storage: \"{d}\"\n\
         zone:\n  - domain: {origin}\n    file: \"{file}\"\n\
         log:\n  - target: stderr\n    any: warning\n"
    );
    let path = dir.join("knot.conf");
    std::fs::write(&path, conf).map_err(|e| e.to_string())?;
    let proc = topo.server.spawn(&["knotd", "-c", path.to_str().ok_or("path")?], dir.join("knot.log"));
    wait_answering(topo, origin, &proc)?;
    Ok(proc)
}

/// nsd serving `zone` in the server namespace.
pub fn nsd(topo: &Topology, dir: &Path, origin: &str, zone: &str) -> Result<Proc, String> {
    let file = dir.join(format!("{origin}zone"));
    std::fs::write(&file, zone).map_err(|e| e.to_string())?;
    let d = dir.display();
    let conf = format!(
        "server:\n    ip-address: {SERVER_ADDR4}\n    ip-address: {SERVER_ADDR6}\n    port: 53\n\
         \x20   username: \"\"\n    chroot: \"\"\n    zonesdir: \"{d}\"\n    database: \"\"\n\
         \x20   pidfile: \"{d}/nsd.pid\"\n    xfrdfile: \"{d}/xfrd.state\"\n    zonelistfile: \"{d}/zone.list\"\n\
         \x20   server-count: 2\n    verbosity: 1\n    hide-version: yes\n    minimal-responses: yes\n\
         \x20   rrl-ratelimit: 0\n\
         remote-control:\n    control-enable: no\n\
         zone:\n    name: {origin}\n    zonefile: \"{}\"\n",
        file.display()
    );
    let path = dir.join("nsd.conf");
    std::fs::write(&path, conf).map_err(|e| e.to_string())?;
    let proc = topo.server.spawn(&["nsd", "-d", "-c", path.to_str().ok_or("path")?], dir.join("nsd.log"));
    wait_answering(topo, origin, &proc)?;
    Ok(proc)
}
