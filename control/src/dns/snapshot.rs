//! What the userspace server answers from: an immutable snapshot of the catalog, published by
//! the writer (the catalog) and read by every query without a lock. The writer swaps in a new
//! snapshot when names or customers change; a record change (a new fraction) swaps only that
//! customer's record. Counters are atomics shared across snapshots.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
};

use arc_swap::ArcSwap;
use hickory_proto::rr::Name;
use spillway_common::maps::{CustomerRecord, NameKey, ProxySet};

/// One customer as the query path sees it.
#[derive(Debug)]
pub struct LiveCustomer {
    pub id: String,
    /// What the answers are made of; replaced whole on a change.
    answering: ArcSwap<Answering>,
    /// Answers the userspace server gave, by target (proxy, origin, cname).
    answers: [AtomicU64; 3],
    /// The userspace server's round-robin position over the origins.
    rr_cursor: AtomicU64,
}

/// A customer's record in force (as the data plane has it) with the CNAME target it holds,
/// parsed once: one value, so a reader never sees one record with another's CNAME.
#[derive(Debug)]
pub struct Answering {
    pub record: CustomerRecord,
    /// The CNAME target for `overflow = "cname"`.
    pub origin_cname: Option<Name>,
}

impl LiveCustomer {
    pub fn new(id: String, record: CustomerRecord, origin_cname: Option<Name>) -> Self {
        Self {
            id,
            answering: ArcSwap::from_pointee(Answering { record, origin_cname }),
            answers: Default::default(),
            rr_cursor: AtomicU64::new(0),
        }
    }

    /// The record in force and its CNAME (shared: the record holds every precomputed answer,
    /// a few kilobytes).
    pub fn answering(&self) -> Arc<Answering> {
        self.answering.load_full()
    }

    /// A new record with the same CNAME target (the one writer is the catalog).
    pub fn set_record(&self, record: CustomerRecord) {
        let origin_cname = self.answering.load().origin_cname.clone();
        self.answering.store(Arc::new(Answering { record, origin_cname }));
    }

    /// A new record and CNAME target together.
    pub fn set_answering(&self, record: CustomerRecord, origin_cname: Option<Name>) {
        self.answering.store(Arc::new(Answering { record, origin_cname }));
    }

    /// Count one answer of `target` (index of `decision::Target`).
    pub fn count(&self, target: usize) {
        self.answers[target].fetch_add(1, Ordering::Relaxed);
    }

    pub fn answers(&self) -> [u64; 3] {
        std::array::from_fn(|i| self.answers[i].load(Ordering::Relaxed))
    }

    /// The next round-robin position (each call advances it).
    pub fn next_rr(&self) -> u64 {
        self.rr_cursor.fetch_add(1, Ordering::Relaxed)
    }
}

/// The catalog as of one moment: names, customers, proxies.
#[derive(Debug)]
pub struct ZoneSnapshot {
    pub proxies: ProxySet,
    pub by_key: HashMap<NameKey, Arc<LiveCustomer>>,
    /// Every proper ancestor of a customer name (lowercase): empty non-terminals.
    pub ancestors: HashSet<Name>,
    /// The zones' SOA serial (the catalog's, shared by snapshots: it moves on every change).
    pub serial: Arc<AtomicU32>,
}

impl ZoneSnapshot {
    pub fn customer(&self, key: &NameKey) -> Option<&LiveCustomer> {
        self.by_key.get(key).map(|c| &**c)
    }

    pub fn is_empty_non_terminal(&self, name: &Name) -> bool {
        self.ancestors.contains(name)
    }

    pub fn serial(&self) -> u32 {
        self.serial.load(Ordering::Relaxed)
    }
}

/// Where the writer publishes snapshots and readers take them: cheap to clone and share.
pub type Published = Arc<ArcSwap<ZoneSnapshot>>;
