//! The userspace server's listeners: UDP here, TCP in [`super::tcp`].

use std::{net::SocketAddr, os::fd::OwnedFd, sync::Arc};

use tokio::{
    net::{TcpListener, UdpSocket},
    sync::watch,
};

use super::{Authority, Transport, snapshot::Published};
use crate::{
    api::AppState,
    handover::{Inherited, Kind, Phase, Registry, draining},
};

/// Receive buffer of each UDP socket: room for bursts of a few thousand queries.
const UDP_RCVBUF: usize = 8 << 20;

/// Serve UDP and TCP on every address until the daemon drains. Sockets a previous daemon
/// handed over (`inherited`) are served as they are, with the queries already queued in them;
/// the rest are bound: UDP gets one socket per CPU with SO_REUSEPORT (the kernel spreads
/// queries over them by flow), each served by its own task, and a large receive buffer.
/// Every socket is recorded in `registry`, for the next handover.
pub fn serve(
    addrs: &[SocketAddr],
    cx: Arc<DnsContext>,
    inherited: &mut Inherited,
    registry: &Registry,
    phase: &watch::Receiver<Phase>,
) -> std::io::Result<()> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    for &addr in addrs {
        let passed = inherited.take(Kind::Udp, addr);
        let taken_over = !passed.is_empty();
        let udp: Vec<UdpSocket> = if taken_over {
            passed.into_iter().map(udp_from_fd).collect::<std::io::Result<_>>()?
        } else {
            (0..workers).map(|_| udp_socket(addr)).collect::<std::io::Result<_>>()?
        };
        let udp_sockets = udp.len();
        for socket in udp {
            registry.add(Kind::Udp, addr, &socket).map_err(std::io::Error::other)?;
            tokio::spawn(serve_udp(socket, cx.clone(), phase.clone()));
        }
        let tcp = match inherited.take(Kind::Tcp, addr).pop() {
            Some(fd) => tcp_from_fd(fd)?,
            None => tcp_listener(addr)?,
        };
        registry.add(Kind::Tcp, addr, &tcp).map_err(std::io::Error::other)?;
        tracing::info!(%addr, udp_sockets, taken_over, "userspace DNS listening (UDP and TCP)");
        tokio::spawn(super::tcp::serve(tcp, cx.clone(), phase.clone()));
    }
    Ok(())
}

fn udp_from_fd(fd: OwnedFd) -> std::io::Result<UdpSocket> {
    let s = std::net::UdpSocket::from(fd);
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s)
}

pub fn tcp_from_fd(fd: OwnedFd) -> std::io::Result<TcpListener> {
    let s = std::net::TcpListener::from(fd);
    s.set_nonblocking(true)?;
    TcpListener::from_std(s)
}

/// IPv6 sockets are IPv6 only, so "0.0.0.0:53" and "[::]:53" can both be listed.
fn tcp_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    TcpListener::from_std(s.into())
}

fn udp_socket(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_port(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    // The kernel caps it at net.core.rmem_max; what it grants is enough.
    let _ = s.set_recv_buffer_size(UDP_RCVBUF);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

/// What every listener task shares: the rules, the catalog's published snapshot (read without a
/// lock), and the metrics.
pub struct DnsContext {
    pub authority: Authority,
    pub zone: Published,
    pub state: Arc<AppState>,
}

pub(super) fn answer(cx: &DnsContext, request: &[u8], peer: SocketAddr, t: Transport) -> Option<Vec<u8>> {
    let reply = cx.authority.answer(&cx.zone.load(), request, peer.ip(), t);
    if reply.is_some() {
        cx.state.metrics.count_userspace_answer();
    }
    reply
}

async fn serve_udp(socket: UdpSocket, cx: Arc<DnsContext>, mut phase: watch::Receiver<Phase>) {
    let mut buf = vec![0u8; 65_535];
    loop {
        // What is queued when the daemon drains stays in the socket for the daemon that took
        // it over (recv_from is cancel-safe: a datagram is either returned or left queued).
        let received = tokio::select! {
            r = socket.recv_from(&mut buf) => r,
            _ = draining(&mut phase) => return,
        };
        let (n, peer) = match received {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("UDP receive: {e}");
                continue;
            }
        };
        if let Some(reply) = answer(&cx, &buf[..n], peer, Transport::Udp)
            && let Err(e) = socket.send_to(&reply, peer).await
        {
            tracing::debug!(%peer, "UDP send: {e}");
        }
    }
}
