//! Every edge registers under `edges/<name>` on a lease it keeps alive: the control hosts
//! find the live edges (and their `/metrics`) there, and an edge that dies drops out after
//! `lease_ttl_s`. A clean stop revokes the lease at once.

use std::time::Duration;

use etcd_client::{Client, PutOptions};
use tokio::sync::watch;

use super::{
    ClusterError, ClusterResult, Etcd,
    config::ClusterConfig,
    state::{Keys, NodeEntry, encode},
    within,
};
use crate::handover::Phase;

/// Keep the registration until the daemon stops; a lost lease is taken again.
pub async fn register_loop(mut etcd: Etcd, cfg: ClusterConfig, entry: NodeEntry, mut phase: watch::Receiver<Phase>) {
    let key = Keys::new(&cfg.key_prefix).edge(&entry.name);
    let mut failures = 0u32;
    while *phase.borrow() == Phase::Running {
        let mut registered = false;
        let t = etcd.timeout();
        let kept = async {
            let client = etcd.client().await?;
            keep(client, &mut registered, &cfg, t, &key, &entry, &mut phase).await
        };
        let kept = kept.await;
        if registered {
            failures = 0;
        }
        match kept {
            Ok(()) => return,
            Err(e) => {
                // Once per outage: the next attempts are the same story.
                if failures == 0 {
                    tracing::warn!(
                        endpoint = etcd.endpoint(),
                        "registration in etcd: {e}; taken again when etcd answers"
                    );
                }
                failures += 1;
                etcd.failed();
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = phase.changed() => {}
                }
            }
        }
    }
}

async fn keep(
    client: &mut Client,
    registered: &mut bool,
    cfg: &ClusterConfig,
    t: Duration,
    key: &str,
    entry: &NodeEntry,
    phase: &mut watch::Receiver<Phase>,
) -> ClusterResult<()> {
    let lease = within(t, client.lease_grant(i64::from(cfg.lease_ttl_s), None)).await?.id();
    within(t, client.put(key, encode(entry), Some(PutOptions::new().with_lease(lease)))).await?;
    tracing::info!(key, lease, "registered in etcd");
    *registered = true;
    let (mut keeper, mut stream) = within(t, client.lease_keep_alive(lease)).await?;
    let mut every = tokio::time::interval(cfg.lease_ttl() / 3);
    loop {
        tokio::select! {
            _ = every.tick() => {
                within(t, keeper.keep_alive()).await?;
                match within(t, stream.message()).await? {
                    Some(r) if r.ttl() > 0 => {}
                    _ => return Err(ClusterError::LeaseLost(lease)),
                }
            }
            _ = phase.changed() => {
                if *phase.borrow() != Phase::Running {
                    let _ = within(t, client.lease_revoke(lease)).await;
                    return Ok(());
                }
            }
        }
    }
}
