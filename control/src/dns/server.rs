//! The userspace server's listeners: UDP here, TCP in [`super::tcp`].

use std::{net::SocketAddr, os::fd::OwnedFd, sync::Arc};

use tokio::{
    net::{TcpListener, UdpSocket},
    sync::watch,
};

use spillway_common::rrl::RrlAction;

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
/// queries over them by flow) and a large receive buffer; with `cpus` (`server.dns_cpus`),
/// one socket per CPU listed, and every DNS thread runs on those CPUs only. Every socket is recorded in
/// `registry`, for the next handover.
///
/// Each socket is served on a thread of its own (`dns-udp-N`, `dns-tcp-N`, each a
/// current-thread runtime), never on the runtime that serves the API, the market and the
/// store: a burst of orders cannot queue an answer behind HTTP or JSON work. The threads end
/// when the daemon drains.
pub fn serve(
    addrs: &[SocketAddr],
    cpus: &[usize],
    cx: Arc<DnsContext>,
    inherited: &mut Inherited,
    registry: &Registry,
    phase: &watch::Receiver<Phase>,
) -> std::io::Result<()> {
    let workers =
        if cpus.is_empty() { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { cpus.len() };
    let (mut udp_threads, mut tcp_threads) = (0usize, 0usize);
    for &addr in addrs {
        let passed = inherited.take(Kind::Udp, addr);
        let taken_over = !passed.is_empty();
        let udp: Vec<std::net::UdpSocket> = if taken_over {
            passed.into_iter().map(std::net::UdpSocket::from).collect()
        } else {
            (0..workers).map(|_| udp_socket(addr)).collect::<std::io::Result<_>>()?
        };
        let udp_sockets = udp.len();
        for socket in udp {
            registry.add(Kind::Udp, addr, &socket).map_err(std::io::Error::other)?;
            let (cx, phase) = (cx.clone(), phase.clone());
            on_own_thread(format!("dns-udp-{udp_threads}"), cpus, async move {
                match udp_from_std(socket) {
                    Ok(s) => serve_udp(s, cx, phase).await,
                    Err(e) => tracing::error!(%addr, "UDP socket: {e}"),
                }
            })?;
            udp_threads += 1;
        }
        let tcp = match inherited.take(Kind::Tcp, addr).pop() {
            Some(fd) => std::net::TcpListener::from(fd),
            None => tcp_listener(addr)?,
        };
        registry.add(Kind::Tcp, addr, &tcp).map_err(std::io::Error::other)?;
        tracing::info!(%addr, udp_sockets, taken_over, "userspace DNS listening (UDP and TCP)");
        let (cx, phase) = (cx.clone(), phase.clone());
        on_own_thread(format!("dns-tcp-{tcp_threads}"), cpus, async move {
            match tcp_from_std(tcp) {
                Ok(l) => super::tcp::serve(l, cx, phase).await,
                Err(e) => tracing::error!(%addr, "TCP listener: {e}"),
            }
        })?;
        tcp_threads += 1;
    }
    Ok(())
}

/// Run `task` on a new thread (on `cpus`, any when empty) with a current-thread runtime of its
/// own; the thread ends with the task.
fn on_own_thread(
    name: String,
    cpus: &[usize],
    task: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let cpus = cpus.to_vec();
    std::thread::Builder::new().name(name).spawn(move || {
        if let Err(e) = crate::affinity::pin_current_thread(&cpus) {
            tracing::warn!(?cpus, "server.dns_cpus: {e}");
        }
        rt.block_on(task)
    })?;
    Ok(())
}

/// Sockets are registered with the runtime that serves them, on its own thread.
fn udp_from_std(s: std::net::UdpSocket) -> std::io::Result<UdpSocket> {
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s)
}

fn tcp_from_std(s: std::net::TcpListener) -> std::io::Result<TcpListener> {
    s.set_nonblocking(true)?;
    TcpListener::from_std(s)
}

pub fn tcp_from_fd(fd: OwnedFd) -> std::io::Result<TcpListener> {
    tcp_from_std(std::net::TcpListener::from(fd))
}

/// IPv6 sockets are IPv6 only, so "0.0.0.0:53" and "[::]:53" can both be listed.
fn tcp_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

fn udp_socket(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
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
    Ok(s.into())
}

/// What every listener task shares: the rules, the catalog's published snapshot (read without a
/// lock), and the metrics.
pub struct DnsContext {
    pub authority: Authority,
    pub zone: Published,
    pub state: Arc<AppState>,
    /// The response rate limit of UDP replies (`[rrl]`).
    pub rrl: super::rrl::Limiter,
}

pub(super) fn answer(cx: &DnsContext, request: &[u8], peer: SocketAddr, t: Transport) -> Option<Vec<u8>> {
    let reply = cx.authority.answer(&cx.zone.load(), request, peer.ip(), t)?;
    if t == Transport::Udp && cx.rrl.enabled() {
        let action = cx.rrl.check(peer.ip(), &reply);
        cx.state.metrics.count_rrl(action);
        match action {
            RrlAction::Send | RrlAction::Exempt => {}
            RrlAction::Drop => return None,
            RrlAction::Slip => {
                cx.state.metrics.count_userspace_answer();
                return super::rrl::slip(&reply);
            }
        }
    }
    cx.state.metrics.count_userspace_answer();
    Some(reply)
}

async fn serve_udp(socket: UdpSocket, cx: Arc<DnsContext>, mut phase: watch::Receiver<Phase>) {
    let mut buf = vec![0u8; 65_535];
    // Bound to a wildcard address, a reply must leave from the address the query came to
    // (a host with several addresses): the kernel tells it, and we set it on the reply.
    let wildcard = socket.local_addr().is_ok_and(|a| a.ip().is_unspecified());
    if wildcard && let Err(e) = udp_dst::enable(&socket) {
        tracing::warn!("UDP: no destination addresses (IP_PKTINFO): {e}");
    }
    loop {
        // What is queued when the daemon drains stays in the socket for the daemon that took
        // it over (a receive is cancel-safe: a datagram is either returned or left queued).
        let received = tokio::select! {
            r = udp_dst::recv(&socket, &mut buf, wildcard) => r,
            _ = draining(&mut phase) => return,
        };
        let (n, peer, dst) = match received {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("UDP receive: {e}");
                continue;
            }
        };
        if let Some(reply) = answer(&cx, &buf[..n], peer, Transport::Udp)
            && let Err(e) = udp_dst::send(&socket, &reply, peer, dst).await
        {
            tracing::debug!(%peer, "UDP send: {e}");
        }
    }
}

/// Datagrams with their destination address (IP_PKTINFO, IPV6_RECVPKTINFO), and replies sent
/// from it (the same cmsg on `sendmsg`).
mod udp_dst {
    use std::{
        io::{self, IoSlice, IoSliceMut},
        net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
        os::fd::AsRawFd,
    };

    use nix::sys::socket::{
        ControlMessage, ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, sendmsg, setsockopt, sockopt,
    };
    use tokio::{io::Interest, net::UdpSocket};

    pub fn enable(socket: &UdpSocket) -> io::Result<()> {
        if socket.local_addr()?.is_ipv4() {
            setsockopt(socket, sockopt::Ipv4PacketInfo, &true)?;
        } else {
            setsockopt(socket, sockopt::Ipv6RecvPacketInfo, &true)?;
        }
        Ok(())
    }

    fn to_std(a: &SockaddrStorage) -> Option<SocketAddr> {
        if let Some(v4) = a.as_sockaddr_in() {
            return Some(SocketAddr::from((v4.ip(), v4.port())));
        }
        a.as_sockaddr_in6().map(|v6| SocketAddr::from((v6.ip(), v6.port())))
    }

    /// (length, peer, the address the datagram was sent to when `with_dst`).
    pub async fn recv(
        socket: &UdpSocket,
        buf: &mut [u8],
        with_dst: bool,
    ) -> io::Result<(usize, SocketAddr, Option<IpAddr>)> {
        if !with_dst {
            let (n, peer) = socket.recv_from(buf).await?;
            return Ok((n, peer, None));
        }
        socket
            .async_io(Interest::READABLE, || {
                let mut iov = [IoSliceMut::new(buf)];
                let mut space = nix::cmsg_space!(libc::in6_pktinfo);
                let msg =
                    recvmsg::<SockaddrStorage>(socket.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_DONTWAIT)?;
                let peer = msg.address.as_ref().and_then(to_std).ok_or_else(|| io::Error::other("no peer address"))?;
                let mut dst = None;
                for c in msg.cmsgs()? {
                    match c {
                        ControlMessageOwned::Ipv4PacketInfo(pi) => {
                            dst = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(pi.ipi_addr.s_addr))))
                        }
                        ControlMessageOwned::Ipv6PacketInfo(pi) => {
                            dst = Some(IpAddr::V6(Ipv6Addr::from(pi.ipi6_addr.s6_addr)))
                        }
                        _ => {}
                    }
                }
                Ok((msg.bytes, peer, dst))
            })
            .await
    }

    /// Send `data` to `peer`, from `src` when given.
    pub async fn send(socket: &UdpSocket, data: &[u8], peer: SocketAddr, src: Option<IpAddr>) -> io::Result<usize> {
        let Some(src) = src else { return socket.send_to(data, peer).await };
        let to = SockaddrStorage::from(peer);
        socket
            .async_io(Interest::WRITABLE, || {
                let iov = [IoSlice::new(data)];
                let sent = match src {
                    IpAddr::V4(a) => {
                        let pi = libc::in_pktinfo {
                            ipi_ifindex: 0,
                            ipi_spec_dst: libc::in_addr { s_addr: u32::from(a).to_be() },
                            ipi_addr: libc::in_addr { s_addr: 0 },
                        };
                        sendmsg(
                            socket.as_raw_fd(),
                            &iov,
                            &[ControlMessage::Ipv4PacketInfo(&pi)],
                            MsgFlags::MSG_DONTWAIT,
                            Some(&to),
                        )
                    }
                    IpAddr::V6(a) => {
                        let pi =
                            libc::in6_pktinfo { ipi6_addr: libc::in6_addr { s6_addr: a.octets() }, ipi6_ifindex: 0 };
                        sendmsg(
                            socket.as_raw_fd(),
                            &iov,
                            &[ControlMessage::Ipv6PacketInfo(&pi)],
                            MsgFlags::MSG_DONTWAIT,
                            Some(&to),
                        )
                    }
                };
                Ok(sent?)
            })
            .await
    }
}
