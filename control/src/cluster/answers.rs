//! The controller's view of a cluster's answers: every second a control host lists the live
//! edges (their lease keys), reads each one's `/cluster/answers`, and adds what each edge answered
//! since the last read to one running total per buyer. The controller takes its deltas from
//! those totals as it does from one host's counters. What it saw of each edge (when it read
//! it last, whether that failed, its answers per second) is the operator's view of the
//! cluster (`GET /v1/cluster`).

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use etcd_client::{Client, GetOptions};
use serde::Serialize;
use tokio::sync::watch;

use super::{
    Etcd,
    config::ClusterConfig,
    state::{Keys, NodeEntry, decode},
    within,
};
use crate::{api::AppState, handover::Phase};

/// Answers per buyer, by target (proxy, origin, CNAME).
pub type Answers = HashMap<String, [u64; 3]>;

/// An edge's `/cluster/answers`: `<id> <proxy> <origin> <cname>` per line. Lines that do not
/// parse are skipped.
pub fn parse(text: &str) -> Answers {
    let mut out = Answers::with_capacity(text.len() / 24);
    for line in text.lines() {
        let mut f = line.split_ascii_whitespace();
        let (Some(id), Some(p), Some(o), Some(c), None) = (f.next(), f.next(), f.next(), f.next(), f.next()) else {
            continue;
        };
        let (Ok(p), Ok(o), Ok(c)) = (p.parse::<u64>(), o.parse::<u64>(), c.parse::<u64>()) else { continue };
        out.insert(id.to_owned(), [p, o, c]);
    }
    out
}

/// A live edge as this control host last saw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EdgeView {
    pub name: String,
    /// Where it said its metrics are, when it registered.
    pub metrics_url: String,
    /// When its answers were last read (Unix ms; `None`: not yet, or this replica does not
    /// lead: only the leader reads them).
    pub read_at_ms: Option<u64>,
    /// Why the last read failed (`None`: it did not).
    pub read_error: Option<String>,
    /// Its answers per second, every buyer's together, between its last two reads.
    pub answers_per_s: Option<f64>,
}

impl EdgeView {
    fn listed(edge: &NodeEntry) -> Self {
        EdgeView {
            name: edge.name.clone(),
            metrics_url: edge.metrics_url.clone(),
            read_at_ms: None,
            read_error: None,
            answers_per_s: None,
        }
    }
}

/// Running totals over every edge, from each edge's counters as read.
#[derive(Debug, Default)]
pub struct EdgeAnswers {
    last: HashMap<String, (Answers, Instant)>,
    totals: Answers,
}

impl EdgeAnswers {
    /// What edge `edge` reports at `at`; returns its answers per second since its last reading.
    /// An edge's first reading is its baseline (what it counted before it was seen is not this
    /// tick's); a counter that went down is an edge that started again, and counts from zero.
    pub fn absorb(&mut self, edge: &str, now: Answers, at: Instant) -> Option<f64> {
        let Some((prev, then)) = self.last.get_mut(edge) else {
            self.last.insert(edge.to_owned(), (now, at));
            return None;
        };
        let mut answered = 0;
        for (customer, cur) in &now {
            let p = prev.get(customer).copied().unwrap_or_default();
            let d: [u64; 3] = std::array::from_fn(|i| if cur[i] >= p[i] { cur[i] - p[i] } else { cur[i] });
            answered += d.iter().sum::<u64>();
            match self.totals.get_mut(customer) {
                Some(total) => (0..3).for_each(|i| total[i] += d[i]),
                None => {
                    self.totals.insert(customer.clone(), d);
                }
            }
        }
        let elapsed = at.saturating_duration_since(*then).as_secs_f64();
        (*prev, *then) = (now, at);
        (elapsed > 0.0).then(|| answered as f64 / elapsed)
    }

    /// Forget edges no longer registered (`live`), or every edge's baseline (an empty set: a
    /// replica that stops leading, so that leading again does not count what the edges
    /// answered meanwhile as one tick's).
    pub fn retain(&mut self, live: &HashSet<String>) {
        self.last.retain(|name, _| live.contains(name));
    }

    pub fn totals(&self) -> &Answers {
        &self.totals
    }
}

/// The live edges, as they registered.
async fn edges(client: &mut Client, keys: &Keys, t: Duration) -> super::ClusterResult<Vec<NodeEntry>> {
    let resp = within(t, client.get(keys.edges(), Some(GetOptions::new().with_prefix()))).await?;
    Ok(resp
        .kvs()
        .iter()
        .filter_map(|kv| decode::<NodeEntry>(kv.key(), kv.value()).map_err(|e| tracing::warn!("{e}")).ok())
        .collect())
}

/// Read every live edge's answers each second and hand the totals to the engine.
pub async fn answers_loop(state: Arc<AppState>, mut etcd: Etcd, cfg: ClusterConfig, mut phase: watch::Receiver<Phase>) {
    let t = etcd.timeout();
    let keys = Keys::new(&cfg.key_prefix);
    let http = match reqwest::Client::builder().timeout(Duration::from_secs(1)).no_proxy().build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("no HTTP client for the edges' answers: {e}");
            return;
        }
    };
    let mut seen = EdgeAnswers::default();
    let mut views: HashMap<String, EdgeView> = HashMap::new();
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = phase.changed() => {}
        }
        if *phase.borrow() != Phase::Running {
            return;
        }
        let live = match async { edges(etcd.client().await?, &keys, t).await }.await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(endpoint = etcd.endpoint(), "listing the edges: {e}");
                etcd.failed();
                continue;
            }
        };
        // Every replica lists the edges for its operator; the leader's controller uses their
        // answers, a follower has nothing to decide and reads none.
        if !state.leads() {
            seen.retain(&HashSet::new());
            views = live.iter().map(|e| (e.name.clone(), EdgeView::listed(e))).collect();
            publish_views(&state, &views);
            continue;
        }
        let mut reads = tokio::task::JoinSet::new();
        for edge in &live {
            let (http, edge) = (http.clone(), edge.clone());
            reads.spawn(async move {
                let text = async { http.get(&edge.answers_url).send().await?.error_for_status()?.text().await }.await;
                (edge, text, Instant::now(), super::unix_ms())
            });
        }
        let mut now_views = HashMap::with_capacity(live.len());
        while let Some(Ok((edge, text, at, at_ms))) = reads.join_next().await {
            let mut view = views.remove(&edge.name).unwrap_or_else(|| EdgeView::listed(&edge));
            view.metrics_url.clone_from(&edge.metrics_url);
            match text {
                Ok(text) => {
                    view.answers_per_s = seen.absorb(&edge.name, parse(&text), at);
                    (view.read_at_ms, view.read_error) = (Some(at_ms), None);
                }
                Err(e) => {
                    tracing::debug!(edge = %edge.name, "reading the edge's answers: {e}");
                    (view.answers_per_s, view.read_error) = (None, Some(e.to_string()));
                }
            }
            now_views.insert(edge.name.clone(), view);
        }
        views = now_views;
        publish_views(&state, &views);
        seen.retain(&live.iter().map(|e| e.name.clone()).collect());
        let totals = seen.totals().clone();
        state.with_engine(move |e| e.cluster_answers = Some(totals)).await;
    }
}

/// The edges as listed and read, by name, for the API.
fn publish_views(state: &AppState, views: &HashMap<String, EdgeView>) {
    if let Some(cluster) = &state.cluster {
        let mut list: Vec<EdgeView> = views.values().cloned().collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        cluster.set_edges(list);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_compact_answers() {
        let a = parse("shop 7 3 0\nblog 0 0 2\nbad 1 2\nworse x 1 2 3\nextra 1 2 3 4\n");
        assert_eq!(a["shop"], [7, 3, 0]);
        assert_eq!(a["blog"], [0, 0, 2]);
        assert_eq!(a.len(), 2);
    }

    #[test]
    fn totals_add_deltas_over_edges_and_survive_restarts() {
        let mut s = EdgeAnswers::default();
        let one = |n: u64| Answers::from([("shop".to_string(), [n, 0, 0])]);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(s.absorb("a", one(100), at(0)), None); // baseline
        assert_eq!(s.absorb("b", one(50), at(0)), None); // baseline
        assert!(s.totals().is_empty());
        assert_eq!(s.absorb("a", one(130), at(2)), Some(15.0));
        assert_eq!(s.absorb("b", one(70), at(1)), Some(20.0));
        assert_eq!(s.totals()["shop"], [50, 0, 0]);
        assert_eq!(s.absorb("b", one(5), at(2)), Some(5.0)); // b started again
        assert_eq!(s.totals()["shop"], [55, 0, 0]);
        s.retain(&HashSet::from(["a".to_string()]));
        assert_eq!(s.absorb("b", one(500), at(3)), None); // back: a new baseline
        assert_eq!(s.totals()["shop"], [55, 0, 0]);
        // A customer new on a known edge counts from zero; a reading at the same instant has no rate.
        let two = Answers::from([("shop".to_string(), [130, 0, 0]), ("blog".to_string(), [4, 1, 0])]);
        assert_eq!(s.absorb("a", two, at(2)), None);
        assert_eq!(s.totals()["blog"], [4, 1, 0]);
        // Every baseline forgotten (a replica that stops leading): the totals stay, the next
        // readings are baselines again.
        s.retain(&HashSet::new());
        assert_eq!(s.absorb("a", one(900), at(9)), None);
        assert_eq!(s.totals()["shop"], [55, 0, 0]);
    }
}
