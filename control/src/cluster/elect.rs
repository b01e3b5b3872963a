//! Control replicas elect one leader with etcd's election API: each campaigns with its API
//! URL on a lease of its own under `<prefix>leader`, and the oldest candidate's key leads.
//!
//! - The leader takes its term (its key's revision) in the store before anything else
//!   ([`crate::store::Store::take_term`]), then builds its memory from the store, then runs
//!   the market, the controller and the publisher and takes writes. The store refuses a write
//!   of any older term, so a leader that was paused or cut off, and has not noticed yet,
//!   changes nothing once the next one took over.
//! - It steps down when etcd says its lease is gone, or when the store says a newer term
//!   leads. While etcd does not answer at all it goes on leading (no other replica can be
//!   elected then, and one cut off from etcd alone is fenced off by the store as soon as
//!   another is); a clean stop revokes the lease, so the next replica leads at once.
//! - A follower answers reads from the store as of at most [`REFRESH_EVERY`] ago, and refuses
//!   writes with 421 and the leader's URL (503 while no leader is known).

use std::{sync::Arc, time::Duration};

use etcd_client::{Client, LeaseKeepAliveStream, LeaseKeeper};
use tokio::{sync::watch, time::Instant};

use super::{ClusterError, ClusterResult, ClusterStatus, Etcd, config::ClusterConfig, state::Keys, within};
use crate::{api::AppState, handover::Phase};

/// How often a follower reads the store again.
pub const REFRESH_EVERY: Duration = Duration::from_secs(2);

/// A lease kept alive on whichever member answers.
struct Lease {
    id: i64,
    keeper: LeaseKeeper,
    stream: LeaseKeepAliveStream,
}

impl Lease {
    async fn grant(client: &mut Client, ttl_s: i64, t: Duration) -> ClusterResult<Lease> {
        let id = within(t, client.lease_grant(ttl_s, None)).await?.id();
        let (keeper, stream) = within(t, client.lease_keep_alive(id)).await?;
        Ok(Lease { id, keeper, stream })
    }

    /// One keep-alive; on a member that fails, again through the next one.
    async fn keep(&mut self, etcd: &mut Etcd) -> ClusterResult<()> {
        let t = etcd.timeout();
        let once = async {
            within(t, self.keeper.keep_alive()).await?;
            match within(t, self.stream.message()).await? {
                Some(r) if r.ttl() > 0 => Ok(()),
                _ => Err(ClusterError::LeaseLost(self.id)),
            }
        };
        match once.await {
            Err(ClusterError::LeaseLost(id)) => Err(ClusterError::LeaseLost(id)),
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::debug!(endpoint = etcd.endpoint(), "lease keep-alive: {e}");
                etcd.failed();
                let client = etcd.client().await?;
                (self.keeper, self.stream) = within(t, client.lease_keep_alive(self.id)).await?;
                Err(e)
            }
        }
    }
}

/// Campaign, lead, step down, campaign again, until the daemon stops.
pub async fn elect_loop(
    state: Arc<AppState>,
    mut etcd: Etcd,
    cfg: ClusterConfig,
    status: Arc<ClusterStatus>,
    api_url: String,
    mut phase: watch::Receiver<Phase>,
) {
    let name = Keys::new(&cfg.key_prefix).election();
    let mut failures = 0u32;
    // Leases of earlier rounds not yet revoked (etcd was gone): their keys would hold the
    // lead, unkept, until their TTL ran out; revoked first, the next campaign wins at once.
    let mut stale: Vec<i64> = Vec::new();
    while *phase.borrow() == Phase::Running {
        revoke(&mut etcd, &mut stale).await;
        let mut lease = None;
        let result = campaign_and_lead(&state, &mut etcd, &cfg, &status, &name, &api_url, &mut phase, &mut lease).await;
        if status.lead().is_some() {
            status.set_lead(None);
            status.set_leader(None);
            state.step_down().await;
            tracing::warn!("no longer the cluster's leader: the market, the controller and writes stop here");
        }
        // The key goes with the lease: another replica leads without waiting for the TTL.
        stale.extend(lease);
        revoke(&mut etcd, &mut stale).await;
        match result {
            Ok(()) => return,
            Err(e) => {
                if failures == 0 {
                    tracing::warn!(endpoint = etcd.endpoint(), "the leader election: {e}; campaigning again");
                }
                failures += 1;
                status.set_leader(None);
                etcd.failed();
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(300)) => {}
                    _ = phase.changed() => {}
                }
            }
        }
    }
}

/// Revoke what etcd takes; a lease it no longer knows is gone already.
async fn revoke(etcd: &mut Etcd, leases: &mut Vec<i64>) {
    let t = etcd.timeout();
    let Ok(client) = etcd.client().await else { return };
    let mut kept = Vec::new();
    for id in leases.drain(..) {
        match within(t, client.lease_revoke(id)).await {
            Ok(_) => {}
            Err(e) if e.to_string().contains("not found") => {}
            Err(_) => kept.push(id),
        }
    }
    *leases = kept;
}

#[allow(clippy::too_many_arguments)]
async fn campaign_and_lead(
    state: &Arc<AppState>,
    etcd: &mut Etcd,
    cfg: &ClusterConfig,
    status: &ClusterStatus,
    name: &str,
    api_url: &str,
    phase: &mut watch::Receiver<Phase>,
    lease_id: &mut Option<i64>,
) -> ClusterResult<()> {
    let t = etcd.timeout();
    let mut client = etcd.client().await?.clone();
    let mut lease = Lease::grant(&mut client, i64::from(cfg.lease_ttl_s), t).await?;
    *lease_id = Some(lease.id);
    let mut every = tokio::time::interval((cfg.lease_ttl() / 5).max(Duration::from_millis(200)));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut election = client.election_client();
    let mut observer = client.election_client();
    let mut refreshed = Instant::now();

    // A follower until the campaign returns: it keeps its lease, learns the leader, and
    // reads the store again now and then.
    let key = {
        let campaign = election.campaign(name, api_url, lease.id);
        tokio::pin!(campaign);
        loop {
            tokio::select! {
                won = &mut campaign => {
                    let won = won?;
                    break won.leader().cloned().ok_or_else(|| ClusterError::Value {
                        key: name.to_owned(),
                        message: "the campaign's answer has no leader key".into(),
                    })?;
                }
                _ = every.tick() => {
                    lease.keep(etcd).await?;
                    let leader = within(t, observer.leader(name)).await.ok();
                    status.set_leader(leader.and_then(|r| r.kv().map(|kv| String::from_utf8_lossy(kv.value()).into_owned())));
                    if refreshed.elapsed() >= REFRESH_EVERY {
                        state.refresh().await;
                        refreshed = Instant::now();
                    }
                }
                _ = phase.changed() => {
                    if *phase.borrow() != Phase::Running {
                        return Ok(());
                    }
                }
            }
        }
    };

    // Elected: the store first (the leader before is fenced off from here), then memory.
    let term = key.rev();
    state.promote(term, status.name.clone()).await.map_err(|e| ClusterError::Promote(e.to_string()))?;
    status.set_lead(Some((key.key().to_vec(), term)));
    status.set_leader(Some(api_url.to_owned()));
    state.market_changed.notify_one();
    tracing::info!(term, url = api_url, "leads the cluster: the store's state loaded, the market runs here");

    loop {
        tokio::select! {
            _ = every.tick() => {
                // etcd gone: nobody else can be elected, so the market goes on here (writes
                // through the API are refused meanwhile); etcd back without our lease, or
                // the store naming a newer term, and this replica steps down.
                if let Err(e @ ClusterError::LeaseLost(_)) = lease.keep(etcd).await {
                    return Err(e);
                }
                if status.deposed(term) {
                    return Err(ClusterError::Deposed(term));
                }
                if !state.holds_term(term).await {
                    return Err(ClusterError::Promote(format!("the store names a newer leader than term {term}")));
                }
            }
            _ = phase.changed() => {
                if *phase.borrow() != Phase::Running {
                    return Ok(());
                }
            }
        }
    }
}
