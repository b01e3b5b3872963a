//! Many edges, one market. With a `[cluster]` section, etcd carries what every edge answers
//! from (customers, names, records and fractions, the proxy set), under one key prefix:
//!
//! - a control host ([`publish`]) writes the catalog's changes there;
//! - an edge ([`follow`]) loads it at a revision, then watches from the next one and applies
//!   each change to its maps; when etcd is gone it keeps answering with what it has (and says
//!   how old that is), and when etcd is back it loads it again;
//! - every edge registers with a lease ([`register`]), and the controller reads each live
//!   edge's `/metrics` for the answers it gave ([`answers`]);
//! - control replicas elect one leader ([`elect`]): only it runs the market, the controller
//!   and the publisher, and takes writes, fenced in the store by its term.

pub mod answers;
pub mod config;
pub mod elect;
pub mod etcd;
pub mod follow;
pub mod publish;
pub mod register;
pub mod state;

use std::{
    sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering},
    time::Duration,
};

use self::config::{ClusterConfig, Role};
pub use self::etcd::Etcd;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("etcd ({endpoints}): {message}")]
    Etcd { endpoints: String, message: String },
    #[error("etcd: {0}")]
    Client(#[from] etcd_client::Error),
    #[error("etcd did not answer within {0:?}")]
    Timeout(Duration),
    #[error("key {key}: {message}")]
    Value { key: String, message: String },
    #[error("the watch ended: {0}")]
    WatchEnded(String),
    #[error("lease {0} expired")]
    LeaseLost(i64),
    #[error("leading: {0}")]
    Promote(String),
    #[error("the election key of term {0} is gone: another replica leads")]
    Deposed(i64),
}

pub type ClusterResult<T> = Result<T, ClusterError>;

/// Run one etcd request with the cluster's timeout.
pub async fn within<T>(t: Duration, f: impl Future<Output = Result<T, etcd_client::Error>>) -> ClusterResult<T> {
    match tokio::time::timeout(t, f).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(ClusterError::Timeout(t)),
    }
}

/// Reach etcd and make sure it answers (a read of the prefix, from the first member that
/// does): an unreachable etcd at start is an error, not a host that waits quietly. Returns
/// the members' clients and etcd's revision.
pub async fn connect(cfg: &ClusterConfig) -> ClusterResult<(Etcd, i64)> {
    let mut etcd = Etcd::new(cfg);
    let revision = etcd.probe(&cfg.key_prefix).await?;
    Ok((etcd, revision))
}

pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// What the API, `/readyz` and `/metrics` know of this host's place in the cluster; written by
/// the cluster's tasks, read without a lock.
pub struct ClusterStatus {
    pub role: Role,
    pub name: String,
    /// After this long without word from etcd, an edge says it is degraded.
    pub degraded_after: Duration,
    /// When this host last knew its state was etcd's (Unix ms; 0: never).
    synced_at_ms: AtomicU64,
    /// The etcd revision of that state.
    revision: AtomicI64,
    /// A control host: etcd takes writes (else the API refuses them).
    etcd_up: AtomicBool,
    /// A control replica: the term it leads (its election key's revision); 0 when it does not.
    term: AtomicI64,
    /// A control replica: the leader's API URL, as the election says (`None`: no leader known).
    leader: std::sync::Mutex<Option<String>>,
    /// A control replica that leads: its election key and that key's revision (the term).
    lead: std::sync::Mutex<Option<publish::Lead>>,
    /// A control host: the live edges as it last listed (and, leading, read) them.
    edges: std::sync::Mutex<Vec<answers::EdgeView>>,
}

impl ClusterStatus {
    pub fn new(cfg: &ClusterConfig, revision: i64) -> Self {
        Self {
            role: cfg.role,
            name: cfg.node_name(),
            // An edge hears from etcd every second (progress notices) while all is well.
            degraded_after: Duration::from_secs(3),
            synced_at_ms: AtomicU64::new(unix_ms()),
            revision: AtomicI64::new(revision),
            etcd_up: AtomicBool::new(true),
            term: AtomicI64::new(0),
            leader: std::sync::Mutex::new(None),
            lead: std::sync::Mutex::new(None),
            edges: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// A control host: the live edges, by name.
    pub fn edges(&self) -> Vec<answers::EdgeView> {
        self.edges.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_edges(&self, edges: Vec<answers::EdgeView>) {
        *self.edges.lock().unwrap_or_else(|e| e.into_inner()) = edges;
    }

    /// This control replica leads the cluster (runs the market, the controller, the
    /// publisher, and takes writes).
    pub fn leads(&self) -> bool {
        self.term() > 0
    }

    /// The term this replica leads; 0 when it does not.
    pub fn term(&self) -> i64 {
        self.term.load(Ordering::Acquire)
    }

    /// Leading with election key `key` of revision `term` (`None`: not leading).
    pub fn set_lead(&self, lead: Option<publish::Lead>) {
        let term = lead.as_ref().map_or(0, |l| l.1);
        *self.lead.lock().unwrap_or_else(|e| e.into_inner()) = lead;
        self.term.store(term, Ordering::Release);
    }

    pub fn lead(&self) -> Option<publish::Lead> {
        self.lead.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// etcd no longer holds the key of `term`: the election loop steps down.
    pub fn depose(&self, term: i64) {
        let _ = self.term.compare_exchange(term, -term, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Deposed while leading `term` (the election loop has yet to step down).
    pub fn deposed(&self, term: i64) -> bool {
        self.term.load(Ordering::Acquire) == -term
    }

    /// The leader's API URL, when one is known.
    pub fn leader(&self) -> Option<String> {
        self.leader.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_leader(&self, url: Option<String>) {
        *self.leader.lock().unwrap_or_else(|e| e.into_inner()) = url;
    }

    /// The state is etcd's as of `revision`, now.
    pub fn synced(&self, revision: i64) {
        self.revision.fetch_max(revision, Ordering::Relaxed);
        self.synced_at_ms.store(unix_ms(), Ordering::Relaxed);
    }

    pub fn revision(&self) -> i64 {
        self.revision.load(Ordering::Relaxed)
    }

    /// Seconds since the state was last known to be etcd's.
    pub fn state_age_s(&self) -> f64 {
        unix_ms().saturating_sub(self.synced_at_ms.load(Ordering::Relaxed)) as f64 / 1000.0
    }

    pub fn set_etcd_up(&self, up: bool) {
        if self.etcd_up.swap(up, Ordering::Relaxed) != up {
            if up {
                tracing::info!("etcd answers again: writes are taken");
            } else {
                tracing::warn!("etcd does not answer: writes are refused until it does");
            }
        }
    }

    pub fn etcd_up(&self) -> bool {
        self.etcd_up.load(Ordering::Relaxed)
    }

    /// Why this host is degraded, if it is: an edge answering from state older than
    /// `degraded_after`, a control host that cannot reach etcd.
    pub fn degraded(&self) -> Option<String> {
        let age = self.state_age_s();
        if self.role.serves_dns() && age > self.degraded_after.as_secs_f64() {
            return Some(format!(
                "no word from etcd for {age:.0} s: answering from the state of revision {}",
                self.revision()
            ));
        }
        if self.role.controls() && !self.etcd_up() {
            return Some("etcd does not answer: writes are refused".into());
        }
        if self.role.controls() && !self.leads() && self.leader().is_none() {
            return Some("no control replica leads: writes are refused until one is elected".into());
        }
        None
    }
}
