//! DNS over TCP (RFC 1035 §4.2.2, RFC 7766): length-prefixed messages, several per
//! connection, and the limits of RFC 7766 §6.2.3 as NSD and Knot keep them, so that no client
//! can stop TCP for the others:
//! - a cap per source address: a source at its cap has its newest connection closed at once;
//! - a total cap: at it, the connection idle longest is closed to make room (accept never
//!   stops for everyone);
//! - an idle timeout, a write timeout (a client that does not read is dropped), and a total
//!   lifetime per connection.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{Notify, watch},
};

use super::{Transport, server::DnsContext};
use crate::handover::{Phase, draining};

/// The limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    pub max_connections: usize,
    pub max_per_source: usize,
    /// No complete query for this long: closed.
    pub idle: Duration,
    /// A reply not taken by the client in this long: closed.
    pub write: Duration,
    /// Closed after this long, however busy.
    pub lifetime: Duration,
}

impl Default for TcpLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_per_source: 32,
            idle: Duration::from_secs(10),
            write: Duration::from_secs(5),
            lifetime: Duration::from_secs(120),
        }
    }
}

struct Conn {
    source: IpAddr,
    last_active: Instant,
    close: Arc<Notify>,
}

/// The open connections of a listener.
pub struct ConnTable {
    limits: TcpLimits,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next: u64,
    conns: HashMap<u64, Conn>,
    per_source: HashMap<IpAddr, usize>,
}

/// A connection's place in the table: removed when dropped.
pub struct Admitted {
    table: Arc<ConnTable>,
    id: u64,
    pub close: Arc<Notify>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.table.remove(self.id);
    }
}

impl Inner {
    fn remove(&mut self, id: u64) -> Option<Conn> {
        let c = self.conns.remove(&id)?;
        if let Some(n) = self.per_source.get_mut(&c.source) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&c.source);
            }
        }
        Some(c)
    }
}

impl ConnTable {
    pub fn new(limits: TcpLimits) -> Arc<Self> {
        Arc::new(Self { limits, inner: Mutex::new(Inner::default()) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admit a new connection from `source`, or `None` if the source is at its cap. At the
    /// total cap, the connection idle longest is told to close and leaves the table.
    pub fn admit(self: &Arc<Self>, source: IpAddr) -> Option<Admitted> {
        let mut inner = self.lock();
        if inner.per_source.get(&source).copied().unwrap_or(0) >= self.limits.max_per_source {
            return None;
        }
        if inner.conns.len() >= self.limits.max_connections {
            let idlest = inner.conns.iter().min_by_key(|(_, c)| c.last_active).map(|(&id, _)| id);
            if let Some(c) = idlest.and_then(|id| inner.remove(id)) {
                c.close.notify_one();
            }
        }
        let id = inner.next;
        inner.next += 1;
        let close = Arc::new(Notify::new());
        inner.conns.insert(id, Conn { source, last_active: Instant::now(), close: close.clone() });
        *inner.per_source.entry(source).or_default() += 1;
        Some(Admitted { table: self.clone(), id, close })
    }

    /// A connection completed a query: it is not idle.
    fn touch(&self, id: u64) {
        if let Some(c) = self.lock().conns.get_mut(&id) {
            c.last_active = Instant::now();
        }
    }

    fn remove(&self, id: u64) {
        self.lock().remove(id);
    }

    /// Open connections (for tests).
    pub fn len(&self) -> usize {
        self.lock().conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Accept until the daemon drains. Accepting never waits for a free slot: the table makes one.
pub async fn serve(listener: TcpListener, cx: Arc<DnsContext>, mut phase: watch::Receiver<Phase>) {
    let table = ConnTable::new(TcpLimits::default());
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = draining(&mut phase) => return,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors or memory: a moment's pause, not a busy loop.
                tracing::warn!("TCP accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Some(admitted) = table.admit(peer.ip()) else {
            tracing::debug!(%peer, "TCP: the source is at its connection cap; closed");
            continue;
        };
        let (cx, phase, limits) = (cx.clone(), phase.clone(), table.limits);
        tokio::spawn(async move {
            if let Err(e) = serve_connection(stream, peer, &cx, phase, &admitted, limits).await {
                tracing::debug!(%peer, "TCP connection: {e}");
            }
        });
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    cx: &DnsContext,
    mut phase: watch::Receiver<Phase>,
    me: &Admitted,
    limits: TcpLimits,
) -> std::io::Result<()> {
    let end_of_life = tokio::time::Instant::now() + limits.lifetime;
    let mut buf = vec![0u8; 65_535];
    loop {
        // Draining: the query in hand is answered, then the connection closes (the client
        // reconnects to the daemon that took the listener over).
        let read = tokio::select! {
            r = tokio::time::timeout(limits.idle, stream.read_u16()) => r,
            _ = draining(&mut phase) => return Ok(()),
            _ = me.close.notified() => return Ok(()),
            _ = tokio::time::sleep_until(end_of_life) => return Ok(()),
        };
        let len = match read {
            Ok(Ok(len)) => len,
            // Idle, closed by the client, or an error: the connection ends.
            _ => return Ok(()),
        };
        let Some(len) = message_len(len) else { return Ok(()) };
        tokio::time::timeout(limits.idle, stream.read_exact(&mut buf[..len]))
            .await
            .map_err(std::io::Error::other)??;
        if let Some(reply) = super::server::answer(cx, &buf[..len], peer, Transport::Tcp) {
            let Some(out) = frame(&reply) else { return Ok(()) };
            tokio::select! {
                w = tokio::time::timeout(limits.write, stream.write_all(&out)) => w.map_err(std::io::Error::other)??,
                _ = me.close.notified() => return Ok(()),
            }
        }
        me.table.touch(me.id);
    }
}

/// A message's length from its 2-byte prefix; `None` for one shorter than a DNS header, which
/// ends the connection.
pub fn message_len(prefix: u16) -> Option<usize> {
    (prefix >= 12).then_some(usize::from(prefix))
}

/// A reply with its length prefix (RFC 1035 §4.2.2); `None` if it cannot have one.
pub fn frame(reply: &[u8]) -> Option<Vec<u8>> {
    let len = u16::try_from(reply.len()).ok()?;
    let mut out = Vec::with_capacity(reply.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(reply);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_source_and_eviction_of_the_idlest() {
        let t = ConnTable::new(TcpLimits { max_connections: 3, max_per_source: 2, ..Default::default() });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = t.admit(a).unwrap();
        std::thread::sleep(Duration::from_millis(2));
        let a2 = t.admit(a).unwrap();
        assert!(t.admit(a).is_none(), "a source at its cap");
        let b1 = t.admit(b).unwrap();
        t.touch(a1.id);
        // Full: a new source gets in, and the idlest (a2: a1 was just active) is told to close.
        let b2 = t.admit(b).unwrap();
        assert_eq!(t.len(), 3);
        let notified = a2.close.notified();
        tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
            tokio::time::timeout(Duration::from_secs(1), notified).await.expect("a2 told to close")
        });
        drop((a1, b1, b2));
        drop(a2);
        assert!(t.is_empty());
        // A closed connection frees its source's slot.
        let _again = t.admit(a).unwrap();
    }
}
