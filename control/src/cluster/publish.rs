//! A control host writes the catalog's changes to etcd: every customer that changed since the
//! last write that etcd took, and the proxy set. Writes go in transactions of at most
//! [`TXN_OPS`] keys (etcd's default limit is 128); a key is only counted as published once its
//! transaction was acknowledged, so a change made while etcd is down goes out when it is back.
//! Every transaction also writes the zones' SOA serial (`state/serial`), one later than the
//! last it wrote: every edge then answers with the same serial for the same state.
//!
//! Between changes it asks etcd every [`PROBE_EVERY`] whether it answers: the API refuses
//! writes while it does not (a change it could not publish would reach no edge).

use std::{collections::HashMap, sync::Arc, time::Duration};

use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};

use super::Etcd;
use tokio::sync::watch;

use super::{
    ClusterError, ClusterResult, ClusterStatus,
    config::ClusterConfig,
    state::{CustomerEntry, Keys, ProxiesEntry, SerialEntry, StateKey, ZonesEntry, decode, encode, later},
    within,
};
use crate::{api::AppState, handover::Phase};

/// Keys per transaction.
pub const TXN_OPS: usize = 100;
/// How often the catalog is looked at for changes.
const POLL: Duration = Duration::from_millis(20);
/// How often etcd is asked whether it answers, when nothing was written.
const PROBE_EVERY: Duration = Duration::from_millis(500);

/// What the catalog holds that etcd does not have yet, taken under the engine's lock.
struct Changes {
    /// The catalog's change number these are as of.
    version: u64,
    customers: Vec<CustomerEntry>,
    proxies: Option<ProxiesEntry>,
    /// The catalog's SOA serial then.
    serial: u32,
}

/// `since`: the change number etcd has everything up to (`None`: nothing yet).
fn changes_since(engine: &crate::engine::Engine, since: Option<u64>) -> Option<Changes> {
    let catalog = &engine.catalog;
    if since == Some(catalog.version()) {
        return None;
    }
    let first = since.is_none();
    let since = since.unwrap_or(0);
    let customers = catalog
        .customers()
        .iter()
        .filter(|c| c.version > since)
        .map(|c| CustomerEntry {
            config: c.config.clone(),
            fraction: c.fraction,
            proxy_ttl: c.record.proxy_ttl,
            contracted_rps: c.contracted_rps,
        })
        .collect();
    let proxies = (first || catalog.proxies_version() > since)
        .then(|| ProxiesEntry { addresses: catalog.proxy_addresses().to_vec() });
    Some(Changes { version: catalog.version(), customers, proxies, serial: catalog.serial() })
}

/// The publisher's memory of what etcd holds: value bytes by key.
struct Published {
    keys: Keys,
    values: HashMap<String, Vec<u8>>,
    /// The catalog's change number etcd has everything up to (`None`: nothing yet).
    version: Option<u64>,
    /// The SOA serial etcd holds (0: none yet).
    serial: u32,
}

impl Published {
    /// Read what etcd holds under `state/` (another control host's, or our last run's): keys
    /// of customers the catalog does not have are deleted with the first write.
    async fn load(client: &mut Client, keys: Keys, t: Duration) -> ClusterResult<(Self, Vec<String>)> {
        let resp = within(t, client.get(keys.state(), Some(GetOptions::new().with_prefix()))).await?;
        let mut values = HashMap::new();
        for kv in resp.kvs() {
            values.insert(String::from_utf8_lossy(kv.key()).into_owned(), kv.value().to_vec());
        }
        let stale = values.keys().filter(|k| matches!(keys.parse(k.as_bytes()), StateKey::Customer(_))).cloned();
        let stale = stale.collect();
        let serial = values.get(&keys.serial()).and_then(|v| decode::<SerialEntry>(keys.serial().as_bytes(), v).ok());
        let serial = serial.map_or(0, |s| s.serial);
        Ok((Self { keys, values, version: None, serial }, stale))
    }

    /// Apply `ops` with the next serial (`at_least` if that is later); remember it once etcd
    /// took them.
    async fn commit_with_serial(
        &mut self,
        client: &mut Client,
        lead: &Lead,
        mut ops: Vec<TxnOp>,
        at_least: u32,
        t: Duration,
    ) -> ClusterResult<()> {
        let next = self.serial.wrapping_add(1);
        let next = if later(at_least, next) { at_least } else { next };
        ops.push(TxnOp::put(self.keys.serial(), encode(&SerialEntry { serial: next }), None));
        commit(client, lead, ops, t).await?;
        self.serial = next;
        Ok(())
    }

    /// Write what differs from etcd's copy; on success remember it.
    async fn write(&mut self, client: &mut Client, lead: &Lead, changes: Changes, t: Duration) -> ClusterResult<usize> {
        let mut puts: Vec<(String, Vec<u8>)> = Vec::new();
        for c in &changes.customers {
            puts.push((self.keys.customer(&c.config.id), encode(c)));
        }
        if let Some(p) = &changes.proxies {
            puts.push((self.keys.proxies(), encode(p)));
        }
        puts.retain(|(k, v)| self.values.get(k) != Some(v));
        let n = puts.len();
        for chunk in puts.chunks(TXN_OPS) {
            let ops = chunk.iter().map(|(k, v)| TxnOp::put(k.as_str(), v.clone(), None)).collect::<Vec<_>>();
            self.commit_with_serial(client, lead, ops, changes.serial, t).await?;
            for (k, v) in chunk {
                self.values.insert(k.clone(), v.clone());
            }
        }
        self.version = Some(changes.version);
        Ok(n)
    }

    async fn delete(&mut self, client: &mut Client, lead: &Lead, stale: &[String], t: Duration) -> ClusterResult<()> {
        for chunk in stale.chunks(TXN_OPS) {
            let ops = chunk.iter().map(|k| TxnOp::delete(k.as_str(), None)).collect::<Vec<_>>();
            self.commit_with_serial(client, lead, ops, 0, t).await?;
            for k in chunk {
                self.values.remove(k);
            }
        }
        Ok(())
    }
}

/// The election key this replica leads with: each write is made only while it is the one
/// etcd holds (a deposed leader that has not noticed yet writes nothing to the edges).
pub type Lead = (Vec<u8>, i64);

/// Apply `ops` if `lead`'s key is still the one of its election.
async fn commit(client: &mut Client, lead: &Lead, ops: Vec<TxnOp>, t: Duration) -> ClusterResult<()> {
    let still = Compare::create_revision(lead.0.clone(), CompareOp::Equal, lead.1);
    let r = within(t, client.txn(Txn::new().when([still]).and_then(ops))).await?;
    if r.succeeded() { Ok(()) } else { Err(ClusterError::Deposed(lead.1)) }
}

/// Publish until the daemon stops. `client` answered at start.
pub async fn publish_loop(
    state: Arc<AppState>,
    mut etcd: Etcd,
    cfg: ClusterConfig,
    status: Arc<ClusterStatus>,
    mut phase: watch::Receiver<Phase>,
) {
    let t = etcd.timeout();
    let mut health = Health::new(&cfg);
    let keys = Keys::new(&cfg.key_prefix);
    let zones = ZonesEntry { zones: state.engine().config.server.zones.clone() };
    let mut published: Option<Published> = None;
    let mut published_term = 0;
    let mut stale: Vec<String> = Vec::new();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = phase.changed() => {}
        }
        if *phase.borrow() != Phase::Running {
            return;
        }
        // Only the leader publishes; a new term's catalog is new, compared with etcd afresh.
        let term = status.term();
        if term != published_term {
            published = None;
            published_term = term;
        }
        let Some(lead) = status.lead().filter(|_| term != 0) else { continue };
        let result: ClusterResult<bool> = async {
            let client = etcd.client().await?;
            let p = match &mut published {
                Some(p) => p,
                None => {
                    let (p, mut from_etcd) = Published::load(client, keys.clone(), t).await?;
                    commit(client, &lead, vec![TxnOp::put(keys.zones(), encode(&zones), None)], t).await?;
                    let ids: std::collections::HashSet<String> = state
                        .with_engine(|e| e.catalog.customers().iter().map(|c| c.config.id.clone()).collect())
                        .await;
                    from_etcd
                        .retain(|k| !matches!(keys.parse(k.as_bytes()), StateKey::Customer(id) if ids.contains(&id)));
                    stale = from_etcd;
                    published.insert(p)
                }
            };
            if !stale.is_empty() {
                p.delete(client, &lead, &stale, t).await?;
                tracing::info!(keys = stale.len(), "customers no longer in the catalog removed from etcd");
                stale.clear();
            }
            let since = p.version;
            let Some(changes) = state.with_engine(move |e| changes_since(e, since)).await else {
                return Ok(false);
            };
            let n = p.write(client, &lead, changes, t).await?;
            if n > 0 {
                tracing::debug!(keys = n, serial = p.serial, "catalog changes published to etcd");
                // This host answers with the serial the edges got (a role "both" host's DNS).
                let serial = p.serial;
                let taken = state
                    .with_engine(move |e| {
                        if later(serial, e.catalog.serial()) {
                            e.catalog.set_serial(serial, e.dataplane.as_mut())
                        } else {
                            Ok(())
                        }
                    })
                    .await;
                if let Err(e) = taken {
                    tracing::warn!(serial, "the published SOA serial is not this host's: {e}");
                }
            }
            // Only a write etcd took is word from it (changes back to what it has are none).
            Ok(n > 0)
        }
        .await;
        match result {
            Ok(true) => health.answered(&status, 0),
            Ok(false) if health.since_contact() >= PROBE_EVERY => {
                let probe = async {
                    let client = etcd.client().await?;
                    within(t, client.get(keys.zones(), Some(GetOptions::new().with_count_only()))).await
                };
                match probe.await {
                    Ok(r) => health.answered(&status, r.header().map_or(0, |h| h.revision())),
                    // One failed request may be one member going: the next goes to another.
                    Err(e) => {
                        tracing::debug!(endpoint = etcd.endpoint(), "etcd probe: {e}");
                        health.failed(&status, &mut etcd);
                    }
                }
            }
            Ok(false) => {}
            Err(ClusterError::Deposed(term)) => {
                tracing::warn!(term, "another replica leads now: this one publishes no more");
                status.depose(term);
            }
            Err(e) => {
                if health.failures == 0 {
                    tracing::warn!(endpoint = etcd.endpoint(), "publishing to etcd: {e}; trying the next member");
                }
                if health.failed(&status, &mut etcd) {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

/// Whether etcd takes writes, as the publisher has seen it: down when every member failed in
/// a row (one that fails is left for the next).
struct Health {
    failures: u32,
    down_after: u32,
    last_contact: tokio::time::Instant,
}

impl Health {
    fn new(cfg: &ClusterConfig) -> Self {
        Self {
            failures: 0,
            down_after: cfg.etcd_endpoints.len().max(2) as u32,
            last_contact: tokio::time::Instant::now(),
        }
    }

    fn since_contact(&self) -> Duration {
        self.last_contact.elapsed()
    }

    /// etcd took a write or answered a probe, at `revision` (0: not known).
    fn answered(&mut self, status: &ClusterStatus, revision: i64) {
        self.last_contact = tokio::time::Instant::now();
        self.failures = 0;
        status.set_etcd_up(true);
        status.synced(revision);
    }

    /// A request failed: the next goes to the next member. True when etcd is down.
    fn failed(&mut self, status: &ClusterStatus, etcd: &mut Etcd) -> bool {
        etcd.failed();
        self.failures += 1;
        let down = self.failures >= self.down_after;
        if down {
            status.set_etcd_up(false);
        }
        down
    }
}
