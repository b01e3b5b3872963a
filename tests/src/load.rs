//! A steady UDP query load from a namespace, with every query accounted for: when it was sent,
//! and whether (and when) its reply came. For tests that must show no query goes unanswered
//! across a restart, and how long a gap lasts where one may.

use std::{
    net::{SocketAddr, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::netns::NetNs;

/// Sockets per class: a query's socket and DNS id together name it (4 x 65536 per class).
const SOCKETS: usize = 4;
/// Most queries a class sends (the ids of its sockets).
const CAPACITY: usize = SOCKETS * 65_536;

/// One kind of query, sent again and again.
pub struct Class {
    pub label: &'static str,
    /// The query's wire form; its id is overwritten.
    pub query: Vec<u8>,
}

struct Track {
    label: &'static str,
    /// Nanoseconds after the start, plus one (0: not yet), per query.
    sent: Vec<AtomicU64>,
    answered: Vec<AtomicU64>,
}

pub struct QueryLoad {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    tracks: Vec<Arc<Track>>,
    start: Instant,
}

/// What one class saw: per query, when it was sent and when its reply came (offsets from the
/// start of the load).
pub struct ClassReport {
    pub label: &'static str,
    pub sent: Vec<Duration>,
    pub answered: Vec<Option<Duration>>,
}

impl ClassReport {
    /// Queries sent in [from, to) that got no reply.
    pub fn unanswered(&self, from: Duration, to: Duration) -> usize {
        self.window(from, to).filter(|(_, a)| a.is_none()).count()
    }

    pub fn sent_in(&self, from: Duration, to: Duration) -> usize {
        self.window(from, to).count()
    }

    /// The longest stretch of consecutive unanswered queries sent in [from, to), from the
    /// first of them to the next answered one.
    pub fn longest_gap(&self, from: Duration, to: Duration) -> Duration {
        let mut longest = Duration::ZERO;
        let mut gap_start = None;
        for (s, a) in self.window(from, to) {
            match (a, gap_start) {
                (None, None) => gap_start = Some(s),
                (Some(_), Some(g)) => {
                    longest = longest.max(s - g);
                    gap_start = None;
                }
                _ => {}
            }
        }
        if let (Some(g), Some(last)) = (gap_start, self.window(from, to).last()) {
            longest = longest.max(last.0 - g);
        }
        longest
    }

    fn window(&self, from: Duration, to: Duration) -> impl Iterator<Item = (Duration, Option<Duration>)> + '_ {
        self.sent.iter().zip(&self.answered).filter(move |(s, _)| **s >= from && **s < to).map(|(s, a)| (*s, *a))
    }
}

impl QueryLoad {
    /// Send every class at `rate` queries/s each to `target`, from inside `ns`, until stopped.
    pub fn start(ns: &NetNs, target: SocketAddr, classes: Vec<Class>, rate: u32) -> QueryLoad {
        let n = classes.len();
        let sockets: Vec<Vec<UdpSocket>> = ns.run(move || {
            (0..n)
                .map(|_| {
                    (0..SOCKETS)
                        .map(|_| {
                            let s = UdpSocket::bind("0.0.0.0:0").expect("bind a client socket");
                            s.set_read_timeout(Some(Duration::from_millis(20))).expect("timeout");
                            s
                        })
                        .collect()
                })
                .collect()
        });
        let stop = Arc::new(AtomicBool::new(false));
        let start = Instant::now();
        let mut tracks = Vec::new();
        let mut threads = Vec::new();
        let mut senders = Vec::new();
        for (class, socks) in classes.into_iter().zip(sockets) {
            let track = Arc::new(Track {
                label: class.label,
                sent: (0..CAPACITY).map(|_| AtomicU64::new(0)).collect(),
                answered: (0..CAPACITY).map(|_| AtomicU64::new(0)).collect(),
            });
            for (i, sock) in socks.iter().enumerate() {
                let sock = sock.try_clone().expect("socket clone");
                let (track, stop) = (track.clone(), stop.clone());
                threads.push(std::thread::spawn(move || receive(sock, i, &track, &stop, start)));
            }
            senders.push((class.query, socks, track.clone()));
            tracks.push(track);
        }
        let stop_tx = stop.clone();
        threads.push(std::thread::spawn(move || {
            let mut next = 0usize;
            while !stop_tx.load(Ordering::Relaxed) {
                let due = (start.elapsed().as_secs_f64() * f64::from(rate)) as usize;
                while next < due.min(CAPACITY) {
                    for (query, socks, track) in &mut senders {
                        let (sock, id) = (&socks[next % SOCKETS], (next / SOCKETS) as u16);
                        query[..2].copy_from_slice(&id.to_be_bytes());
                        track.sent[next].store(start.elapsed().as_nanos() as u64 + 1, Ordering::Relaxed);
                        let _ = sock.send_to(query, target);
                    }
                    next += 1;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        }));
        QueryLoad { stop, threads, tracks, start }
    }

    /// Time since the load started (for windows in the report).
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Stop sending, wait a second for the last replies, and report.
    pub fn stop(self) -> Vec<ClassReport> {
        std::thread::sleep(Duration::from_millis(100));
        let sending_until = self.start.elapsed();
        self.stop.store(true, Ordering::Relaxed);
        std::thread::sleep(Duration::from_secs(1));
        for t in self.threads {
            let _ = t.join();
        }
        self.tracks
            .iter()
            .map(|t| {
                let at = |v: &AtomicU64| match v.load(Ordering::Relaxed) {
                    0 => None,
                    n => Some(Duration::from_nanos(n - 1)),
                };
                let (sent, answered) = t
                    .sent
                    .iter()
                    .zip(&t.answered)
                    .filter_map(|(s, a)| Some((at(s)?, at(a))))
                    .filter(|(s, _)| *s < sending_until)
                    .unzip();
                ClassReport { label: t.label, sent, answered }
            })
            .collect()
    }
}

/// Count the replies on one socket: a NOERROR response with one of our ids.
fn receive(sock: UdpSocket, index: usize, track: &Track, stop: &AtomicBool, start: Instant) {
    let mut buf = [0u8; 1500];
    // Replies still come for a moment after the sender stops.
    let mut quiet_since: Option<Instant> = None;
    loop {
        if stop.load(Ordering::Relaxed) {
            let q = *quiet_since.get_or_insert_with(Instant::now);
            if q.elapsed() > Duration::from_millis(800) {
                return;
            }
        }
        let Ok(n) = sock.recv(&mut buf) else { continue };
        if n < 12 || buf[2] & 0x80 == 0 || buf[3] & 0x0f != 0 {
            continue;
        }
        let k = usize::from(u16::from_be_bytes([buf[0], buf[1]])) * SOCKETS + index;
        if let Some(slot) = track.answered.get(k) {
            let _ =
                slot.compare_exchange(0, start.elapsed().as_nanos() as u64 + 1, Ordering::Relaxed, Ordering::Relaxed);
        }
    }
}
