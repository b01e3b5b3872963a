//! Planned restarts without a lost query: a new `spillway run` takes the running daemon's
//! listening sockets over (SCM_RIGHTS on a unix socket), so the queries queued in them and
//! every one after are answered by one process or the other; then it tells the old daemon to
//! drain and exit.
//!
//! The rendezvous is an abstract unix socket named after `server.bpffs_dir` (abstract names
//! are per network namespace and vanish with the process, so a crashed daemon leaves none).
//!
//! ```text
//! new -> old   "takeover\n"        old stops its API and background work (no store writes)
//! old -> new   header line + fds   {"fds": [{"kind": "udp", "addr": "192.0.2.53:53"}, ...]}
//! new          opens the store, swaps XDP, serves DNS and the API on the fds, is ready
//! new -> old   "drain\n"           old stops reading, finishes what it holds, exits
//! ```
//!
//! If the new daemon fails before "drain" (the connection closes), the old one resumes.

use std::{
    io::{BufRead, BufReader, IoSlice, IoSliceMut, Write},
    net::SocketAddr,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        linux::net::SocketAddrExt,
        unix::net::{SocketAddr as UnixAddr, UnixListener, UnixStream},
    },
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};

/// Most fds passed in one handover (the kernel's SCM_MAX_FD is 253).
const MAX_FDS: usize = 250;
/// How long the old daemon waits for the new one to become ready before resuming.
const READY_WAIT: Duration = Duration::from_secs(120);

/// Where the daemon is in its life, watched by every long-running task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Running,
    /// A new daemon is taking over: no store writes, no API; DNS goes on.
    Quiesced,
    /// The new daemon is ready: stop reading, finish what is held, exit.
    Draining,
}

/// Resolves when `phase` reaches `Draining` (never, if the daemon drops the sender).
pub async fn draining(phase: &mut tokio::sync::watch::Receiver<Phase>) {
    if phase.wait_for(|p| *p == Phase::Draining).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// What a passed socket is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A userspace DNS UDP socket.
    Udp,
    /// A userspace DNS TCP listener.
    Tcp,
    /// The control API's listener.
    Api,
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    kind: Kind,
    addr: SocketAddr,
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    fds: Vec<Entry>,
}

/// Sockets a daemon can hand over: its own copies (dups) of what it listens on.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    inner: Arc<Mutex<Vec<(Kind, SocketAddr, OwnedFd)>>>,
}

impl Registry {
    pub fn add(&self, kind: Kind, addr: SocketAddr, fd: &impl std::os::fd::AsFd) -> Result<()> {
        let dup = fd.as_fd().try_clone_to_owned()?;
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).push((kind, addr, dup));
        Ok(())
    }

    /// A fresh copy of the first socket of `kind` (the API's, to serve it again on resume).
    pub fn dup_of(&self, kind: Kind) -> Option<OwnedFd> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.iter().find(|(k, _, _)| *k == kind).and_then(|(_, _, fd)| fd.try_clone().ok())
    }
}

/// Sockets received from the old daemon, taken by address as the new one binds.
#[derive(Debug, Default)]
pub struct Inherited {
    fds: Vec<(Kind, SocketAddr, OwnedFd)>,
}

impl Inherited {
    /// Every received socket of `kind` bound to `addr`.
    pub fn take(&mut self, kind: Kind, addr: SocketAddr) -> Vec<OwnedFd> {
        let (hit, rest): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.fds).into_iter().partition(|(k, a, _)| *k == kind && *a == addr);
        self.fds = rest;
        hit.into_iter().map(|(_, _, fd)| fd).collect()
    }

    pub fn len(&self) -> usize {
        self.fds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fds.is_empty()
    }
}

/// The rendezvous name for the daemon that pins under `bpffs_dir`.
pub fn socket_name(bpffs_dir: &Path) -> String {
    format!("spillway-handover:{}", bpffs_dir.display())
}

fn unix_addr(name: &str) -> std::io::Result<UnixAddr> {
    UnixAddr::from_abstract_name(name.as_bytes())
}

fn read_line(r: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    Ok(line.trim_end().to_owned())
}

/// The new daemon's side of a handover in progress.
pub struct Takeover {
    stream: UnixStream,
    pub inherited: Inherited,
}

impl Takeover {
    /// Ask a running daemon for its sockets. `None` when none is running (nothing listens on
    /// the rendezvous name).
    pub fn request(name: &str) -> Result<Option<Takeover>> {
        let Ok(mut stream) = UnixStream::connect_addr(&unix_addr(name)?) else { return Ok(None) };
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        stream.write_all(b"takeover\n")?;
        let mut data = vec![0u8; 64 << 10];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; MAX_FDS]);
        let (n, raw) = {
            let mut iov = [IoSliceMut::new(&mut data)];
            let msg = recvmsg::<()>(stream.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)
                .map_err(|e| Error::Handover(format!("receiving the sockets: {e}")))?;
            let mut raw = Vec::new();
            for c in msg.cmsgs().map_err(|e| Error::Handover(format!("receiving the sockets: {e}")))? {
                if let ControlMessageOwned::ScmRights(fds) = c {
                    raw.extend(fds);
                }
            }
            (msg.bytes, raw)
        };
        // SAFETY: the kernel just installed these fds in this process for us alone.
        let fds: Vec<OwnedFd> = raw.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }).collect();
        data.truncate(n);
        let mut reader = BufReader::new(&stream);
        if !data.ends_with(b"\n") {
            let mut rest = Vec::new();
            reader.read_until(b'\n', &mut rest)?;
            data.extend(rest);
        }
        let header: Header = serde_json::from_slice(data.trim_ascii_end())
            .map_err(|e| Error::Handover(format!("the running daemon's answer: {e}")))?;
        if header.fds.len() != fds.len() {
            return Err(Error::Handover(format!("{} sockets announced, {} received", header.fds.len(), fds.len())));
        }
        let fds = header.fds.into_iter().zip(fds).map(|(e, fd)| (e.kind, e.addr, fd)).collect();
        Ok(Some(Takeover { stream, inherited: Inherited { fds } }))
    }

    /// Ready: tell the old daemon to drain and exit.
    pub fn finish(mut self) -> Result<()> {
        self.stream.write_all(b"drain\n")?;
        Ok(())
    }
}

/// What the old daemon's main task is asked to do.
#[derive(Debug)]
pub enum Event {
    /// Stop the API and background work; answer on the sender when nothing writes any more.
    Quiesce(oneshot::Sender<()>),
    /// The new daemon is ready: stop reading and exit.
    Drain,
    /// The new daemon went away before it was ready: carry on.
    Resume,
}

/// Listen on the rendezvous name (once the previous holder has let it go) and serve
/// takeovers, on a thread of its own. Events arrive on the returned receiver.
pub fn serve(name: String, registry: Registry) -> mpsc::UnboundedReceiver<Event> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("handover".into())
        .spawn(move || {
            let listener = loop {
                match unix_addr(&name).and_then(|a| UnixListener::bind_addr(&a)) {
                    Ok(l) => break l,
                    // The daemon we took over still holds it for a moment.
                    Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    Err(e) => {
                        return tracing::error!(%name, "handover socket: {e}; planned restarts will not hand over");
                    }
                }
            };
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                match hand_over(conn, &registry, &tx) {
                    Ok(true) => return,
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!("handover failed, resuming: {e}");
                        let _ = tx.send(Event::Resume);
                    }
                }
            }
        })
        .expect("spawning the handover thread");
    rx
}

/// One takeover: true when the new daemon took over (we drain), false when it went away.
fn hand_over(conn: UnixStream, registry: &Registry, tx: &mpsc::UnboundedSender<Event>) -> Result<bool> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(&conn);
    if read_line(&mut reader)? != "takeover" {
        return Ok(false);
    }
    tracing::info!("a new daemon asks to take over: pausing the API and background work");
    let (ack_tx, ack_rx) = oneshot::channel();
    tx.send(Event::Quiesce(ack_tx)).map_err(|_| Error::Handover("the daemon is stopping".into()))?;
    ack_rx.blocking_recv().map_err(|_| Error::Handover("the daemon is stopping".into()))?;
    let (header, raw) = {
        let inner = registry.inner.lock().unwrap_or_else(|e| e.into_inner());
        let passed = &inner[..inner.len().min(MAX_FDS)];
        let header = Header { fds: passed.iter().map(|(kind, addr, _)| Entry { kind: *kind, addr: *addr }).collect() };
        let raw: Vec<i32> = passed.iter().map(|(_, _, fd)| fd.as_raw_fd()).collect();
        (header, raw)
    };
    let mut line = serde_json::to_vec(&header).map_err(|e| Error::Handover(e.to_string()))?;
    line.push(b'\n');
    sendmsg::<()>(
        conn.as_raw_fd(),
        &[IoSlice::new(&line)],
        &[ControlMessage::ScmRights(&raw)],
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| Error::Handover(format!("sending the sockets: {e}")))?;
    tracing::info!(sockets = raw.len(), "sockets handed over; waiting for the new daemon to be ready");
    conn.set_read_timeout(Some(READY_WAIT))?;
    match read_line(&mut reader) {
        Ok(l) if l == "drain" => {
            tracing::info!("the new daemon is ready: draining");
            let _ = tx.send(Event::Drain);
            Ok(true)
        }
        _ => {
            tracing::warn!("the new daemon went away before it was ready: resuming");
            let _ = tx.send(Event::Resume);
            Ok(false)
        }
    }
}
