//! An edge follows etcd: it loads everything under `state/` at one revision, puts it in
//! force, then watches from the next revision and applies each change as it comes, all the
//! changes of one etcd response under one hold of the engine. When the watch breaks (a member
//! went, etcd is gone) it loads again and puts in force what differs, then watches on: a
//! compacted history costs nothing but that load. Meanwhile the data plane answers from what
//! it has; [`ClusterStatus`] tells how old that is.

use std::{collections::HashSet, sync::Arc, time::Duration};

use etcd_client::{Client, EventType, GetOptions, WatchOptions};
use tokio::sync::watch;

use super::{
    ClusterError, ClusterResult, ClusterStatus, Etcd,
    config::ClusterConfig,
    state::{CustomerEntry, Keys, ProxiesEntry, SerialEntry, StateKey, ZonesEntry, decode},
    within,
};
use crate::{api::AppState, engine::Engine, handover::Phase};

/// How often the watch asks etcd for its revision when nothing changes (so the state's age
/// is known while all is quiet, and a silent etcd is found).
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// One change to put in force.
#[derive(Debug)]
pub enum Change {
    Customer(Box<CustomerEntry>),
    /// The key of a customer went: it is answered with its origins only.
    Retire(String),
    Proxies(ProxiesEntry),
    Zones(ZonesEntry),
    /// The SOA serial the leader gave this state: put in force after the rest of its batch.
    Serial(SerialEntry),
}

/// Everything under `state/` at one revision.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub revision: i64,
    pub changes: Vec<Change>,
}

/// A key and its value as a change (`None` for keys that are not state, or values that do
/// not parse: those are logged and left out, the state before them stays).
fn change_of(keys: &Keys, key: &[u8], value: Option<&[u8]>) -> Option<Change> {
    let parsed = match (keys.parse(key), value) {
        (StateKey::Customer(id), None) => Ok(Change::Retire(id)),
        (StateKey::Customer(id), Some(v)) => decode::<CustomerEntry>(key, v).and_then(|e| {
            if e.config.id == id {
                Ok(Change::Customer(Box::new(e)))
            } else {
                Err(ClusterError::Value { key: String::from_utf8_lossy(key).into(), message: "another id".into() })
            }
        }),
        (StateKey::Proxies, Some(v)) => decode(key, v).map(Change::Proxies),
        (StateKey::Zones, Some(v)) => decode(key, v).map(Change::Zones),
        (StateKey::Serial, Some(v)) => decode(key, v).map(Change::Serial),
        _ => return None,
    };
    parsed.map_err(|e| tracing::warn!("etcd value not taken: {e}")).ok()
}

/// Read everything under `state/`.
pub async fn load(client: &mut Client, keys: &Keys, t: Duration) -> ClusterResult<Snapshot> {
    let resp = within(t, client.get(keys.state(), Some(GetOptions::new().with_prefix()))).await?;
    let revision = resp.header().map_or(0, |h| h.revision());
    let changes = resp.kvs().iter().filter_map(|kv| change_of(keys, kv.key(), Some(kv.value()))).collect();
    Ok(Snapshot { revision, changes })
}

/// Put changes in force, in order. A customer the catalog refuses (a name another still holds:
/// a name moved between customers in one batch, the giver after the taker) is tried again after
/// the rest; what still fails is logged and changes nothing. The serial goes last: each change
/// before it counts the edge's own serial up, then the leader's replaces it.
pub fn apply_all(engine: &mut Engine, mut changes: Vec<Change>) {
    changes.sort_by_key(|c| matches!(c, Change::Serial(_)));
    let mut again = Vec::new();
    for change in changes {
        if let Err((change, _)) = apply(engine, change) {
            again.push(*change);
        }
    }
    for change in again {
        if let Err((_, e)) = apply(engine, change) {
            tracing::warn!("change from etcd not put in force: {e}");
        }
    }
}

/// Put one change in force; a customer the catalog refuses is handed back with the reason. A
/// customer entry is held to this edge's config rules first (its zones, TTL bounds): one that
/// breaks them changes nothing.
fn apply(engine: &mut Engine, change: Change) -> Result<(), (Box<Change>, crate::Error)> {
    let result = match change {
        Change::Customer(e) => {
            let problems = engine.config.check_added_customers(std::slice::from_ref(&e.config));
            if !problems.is_empty() {
                tracing::warn!(customer = %e.config.id, ?problems, "customer from etcd not taken: this edge's config does not allow it");
                return Ok(());
            }
            let c = e.config.clone();
            return engine
                .catalog
                .apply_entry(c, e.fraction, e.proxy_ttl, e.contracted_rps, engine.dataplane.as_mut())
                .map_err(|err| (Box::new(Change::Customer(e)), err));
        }
        Change::Retire(id) => match engine.catalog.customer(&id) {
            Some(c) if c.fraction != 0.0 => {
                engine.catalog.set_fraction(&id, 0.0, crate::catalog::Mode::Manual, engine.dataplane.as_mut()).map(drop)
            }
            _ => Ok(()),
        },
        Change::Proxies(p) => engine.catalog.set_proxies(&p.addresses, engine.dataplane.as_mut()),
        Change::Serial(s) => engine.catalog.set_serial(s.serial, engine.dataplane.as_mut()),
        Change::Zones(z) => {
            if z.zones != engine.config.server.zones {
                tracing::warn!(cluster = ?z.zones, here = ?engine.config.server.zones,
                    "the control hosts serve other zones than this edge's config");
            }
            Ok(())
        }
    };
    if let Err(e) = result {
        tracing::warn!("change from etcd not put in force: {e}");
    }
    Ok(())
}

/// Put a loaded snapshot in force: every entry applied, customers etcd no longer has are
/// answered with their origins (before the serial, which goes last).
pub fn apply_snapshot(engine: &mut Engine, snap: Snapshot) {
    let mut present = HashSet::new();
    for change in &snap.changes {
        if let Change::Customer(e) = change {
            present.insert(e.config.id.clone());
        }
    }
    let mut changes = snap.changes;
    let gone = engine.catalog.customers().iter().map(|c| c.config.id.clone()).filter(|id| !present.contains(id));
    changes.extend(gone.map(Change::Retire).collect::<Vec<_>>());
    apply_all(engine, changes);
}

/// Follow etcd until the daemon stops; the snapshot of `from_revision` is in force already.
pub async fn follow_loop(
    state: Arc<AppState>,
    mut etcd: Etcd,
    cfg: ClusterConfig,
    status: Arc<ClusterStatus>,
    from_revision: i64,
    mut phase: watch::Receiver<Phase>,
) {
    let t = etcd.timeout();
    let keys = Keys::new(&cfg.key_prefix);
    let mut from = Some(from_revision);
    let mut backoff = Duration::from_millis(100);
    while *phase.borrow() == Phase::Running {
        let revision = match from.take() {
            Some(r) => r,
            None => match async { load(etcd.client().await?, &keys, t).await }.await {
                Ok(snap) => {
                    let revision = snap.revision;
                    state.with_engine(move |e| apply_snapshot(e, snap)).await;
                    status.synced(revision);
                    tracing::info!(revision, "state loaded from etcd again");
                    revision
                }
                Err(e) => {
                    tracing::debug!(endpoint = etcd.endpoint(), "loading the state from etcd: {e}");
                    etcd.failed();
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = phase.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        backoff = Duration::from_millis(100);
        let watched = async {
            let client = etcd.client().await?;
            watch_from(&state, client, &keys, &status, revision, t, &mut phase).await
        };
        match watched.await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(
                    endpoint = etcd.endpoint(),
                    age_s = status.state_age_s(),
                    "watching etcd: {e}; answering from the state in hand, loading it again from the next member"
                );
                etcd.failed();
            }
        }
    }
}

/// Watch `state/` from after `revision` and apply what comes; `Ok` when the daemon stops.
async fn watch_from(
    state: &Arc<AppState>,
    client: &mut Client,
    keys: &Keys,
    status: &ClusterStatus,
    revision: i64,
    t: Duration,
    phase: &mut watch::Receiver<Phase>,
) -> ClusterResult<()> {
    let options = WatchOptions::new().with_prefix().with_start_revision(revision + 1);
    let mut stream = within(t, client.watch(keys.state(), Some(options))).await?;
    let mut progress = tokio::time::interval(PROGRESS_EVERY);
    let mut heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            msg = stream.message() => {
                let Some(resp) = msg? else { return Err(ClusterError::WatchEnded("etcd closed it".into())) };
                if resp.canceled() {
                    return Err(ClusterError::WatchEnded(format!(
                        "cancelled ({}; history compacted at revision {})", resp.cancel_reason(), resp.compact_revision()
                    )));
                }
                heard = tokio::time::Instant::now();
                let revision = resp.header().map_or(0, |h| h.revision());
                let changes: Vec<Change> = resp
                    .events()
                    .iter()
                    .filter_map(|ev| {
                        let kv = ev.kv()?;
                        let value = (ev.event_type() == EventType::Put).then(|| kv.value());
                        change_of(keys, kv.key(), value)
                    })
                    .collect();
                if !changes.is_empty() {
                    state
                        .with_engine(move |e| apply_all(e, changes))
                        .await;
                }
                status.synced(revision);
            }
            _ = progress.tick() => {
                if heard.elapsed() > PROGRESS_EVERY * 2 + t {
                    return Err(ClusterError::WatchEnded(format!("no word from etcd for {:?}", heard.elapsed())));
                }
                within(t, stream.request_progress()).await?;
            }
            _ = phase.changed() => {
                if *phase.borrow() != Phase::Running {
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{catalog::Catalog, config::Config};

    fn edge() -> Engine {
        let text = "[server]\nzones = [\"cdn.example.net.\"]\nlisten = [\"127.0.0.1:5300\"]\n\
            [api]\nlisten = \"127.0.0.1:8053\"\ntoken = \"t\"\n\
            [cluster]\nrole = \"edge\"\netcd_endpoints = [\"http://127.0.0.1:2379\"]\n";
        let config = Config::parse(text, "edge.toml").expect("edge config");
        Engine::new(&config, Catalog::from_config(&config).expect("catalog"), None, 0).expect("engine")
    }

    fn entry(id: &str, names: &[&str], fraction: f64) -> Change {
        let config = serde_json::from_value(serde_json::json!({"id": id, "names": names,
            "origin_addresses": ["203.0.113.7"], "overflow": "origin", "fraction": 0.5, "ttl": 30}))
        .expect("customer");
        Change::Customer(Box::new(CustomerEntry { config, fraction, proxy_ttl: 30, contracted_rps: 0 }))
    }

    fn names(e: &Engine, id: &str) -> Vec<String> {
        e.catalog.customer(id).map(|c| c.config.names.clone()).unwrap_or_default()
    }

    #[test]
    fn a_name_moved_in_one_batch_lands_whatever_the_order() {
        let mut e = edge();
        apply_all(&mut e, vec![entry("a", &["x.cdn.example.net."], 1.0), entry("b", &["y.cdn.example.net."], 1.0)]);
        // b takes x before a gives it up.
        let batch = vec![
            entry("b", &["y.cdn.example.net.", "x.cdn.example.net."], 0.25),
            entry("a", &["z.cdn.example.net."], 1.0),
        ];
        apply_all(&mut e, batch);
        assert_eq!(names(&e, "a"), ["z.cdn.example.net."]);
        assert_eq!(names(&e, "b"), ["y.cdn.example.net.", "x.cdn.example.net."]);
        assert_eq!(e.catalog.customer("b").map(|c| c.fraction), Some(0.25));
    }

    #[test]
    fn a_snapshot_retires_what_etcd_no_longer_has_and_bad_entries_change_nothing() {
        let mut e = edge();
        apply_all(&mut e, vec![entry("a", &["x.cdn.example.net."], 1.0), entry("b", &["y.cdn.example.net."], 1.0)]);
        // A name outside this edge's zones is refused; b keeps what it had.
        let snap = Snapshot { revision: 7, changes: vec![entry("b", &["y.elsewhere.example."], 0.5)] };
        apply_snapshot(&mut e, snap);
        assert_eq!(e.catalog.customer("a").map(|c| c.fraction), Some(0.0), "a is gone from etcd: origins only");
        assert_eq!(names(&e, "b"), ["y.cdn.example.net."]);
        assert_eq!(e.catalog.customer("b").map(|c| c.fraction), Some(1.0));
    }

    #[test]
    fn the_leaders_serial_is_the_edges_whatever_the_edge_counted() {
        let mut e = edge();
        let serial = |n| Change::Serial(SerialEntry { serial: n });
        // The serial came first in the batch: the changes after it count no further.
        apply_all(
            &mut e,
            vec![serial(41), entry("a", &["x.cdn.example.net."], 1.0), entry("b", &["y.cdn.example.net."], 1.0)],
        );
        assert_eq!(e.catalog.serial(), 41);
        assert_eq!(e.catalog.snapshot().serial(), 41, "the userspace server answers with it");
        // A snapshot that retires a customer still ends on etcd's serial.
        apply_snapshot(
            &mut e,
            Snapshot { revision: 9, changes: vec![serial(42), entry("b", &["y.cdn.example.net."], 1.0)] },
        );
        assert_eq!(e.catalog.customer("a").map(|c| c.fraction), Some(0.0));
        assert_eq!(e.catalog.serial(), 42);
        // Without a serial in etcd (hand-written state), the edge counts its own.
        apply_all(&mut e, vec![entry("b", &["y.cdn.example.net."], 0.5)]);
        assert_eq!(e.catalog.serial(), 43);
    }
}
