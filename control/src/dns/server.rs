//! UDP and TCP listeners (RFC 1035 §4.2, RFC 7766: length-prefixed messages, several queries
//! per connection, an idle timeout).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, UdpSocket},
};

use super::{Authority, Transport, snapshot::Published};
use crate::api::AppState;

/// A TCP connection with no complete query for this long is closed (RFC 7766 §6.2.3).
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Concurrent TCP connections per listener; more wait in the kernel's backlog.
const MAX_TCP_CONNECTIONS: usize = 1024;

/// Receive buffer of each UDP socket: room for bursts of a few thousand queries.
const UDP_RCVBUF: usize = 8 << 20;

/// Bind UDP and TCP on every address, then serve them until the runtime stops. UDP gets one
/// socket per CPU with SO_REUSEPORT (the kernel spreads queries over them by flow), each
/// served by its own task, and a large receive buffer.
pub async fn serve(addrs: &[SocketAddr], cx: Arc<DnsContext>) -> std::io::Result<()> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    for &addr in addrs {
        for _ in 0..workers {
            let udp = udp_socket(addr)?;
            tokio::spawn(serve_udp(udp, cx.clone()));
        }
        let tcp = tcp_listener(addr)?;
        tracing::info!(%addr, udp_sockets = workers, "userspace DNS listening (UDP and TCP)");
        tokio::spawn(serve_tcp(tcp, cx.clone()));
    }
    Ok(())
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

fn answer(cx: &DnsContext, request: &[u8], peer: SocketAddr, t: Transport) -> Option<Vec<u8>> {
    let reply = cx.authority.answer(&cx.zone.load(), request, peer.ip(), t);
    if reply.is_some() {
        cx.state.metrics.count_userspace_answer();
    }
    reply
}

async fn serve_udp(socket: UdpSocket, cx: Arc<DnsContext>) {
    let mut buf = vec![0u8; 65_535];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
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

async fn serve_tcp(listener: TcpListener, cx: Arc<DnsContext>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_TCP_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("TCP accept: {e}");
                continue;
            }
        };
        let cx = cx.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_connection(stream, peer, &cx).await {
                tracing::debug!(%peer, "TCP connection: {e}");
            }
            drop(permit);
        });
    }
}

async fn serve_connection(mut stream: TcpStream, peer: SocketAddr, cx: &DnsContext) -> std::io::Result<()> {
    let mut buf = vec![0u8; 65_535];
    loop {
        let len = match tokio::time::timeout(TCP_IDLE, stream.read_u16()).await {
            Ok(Ok(len)) => usize::from(len),
            // Idle, closed by the client, or an error: the connection ends.
            _ => return Ok(()),
        };
        if len < 12 {
            return Ok(());
        }
        tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut buf[..len])).await.map_err(std::io::Error::other)??;
        if let Some(reply) = answer(cx, &buf[..len], peer, Transport::Tcp) {
            let mut out = Vec::with_capacity(reply.len() + 2);
            out.extend_from_slice(&(reply.len() as u16).to_be_bytes());
            out.extend_from_slice(&reply);
            stream.write_all(&out).await?;
        }
    }
}
