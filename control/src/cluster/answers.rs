//! The controller's view of a cluster's answers: every second a control host lists the live
//! edges (their lease keys), reads each one's `/cluster/answers`, and adds what each edge answered
//! since the last read to one running total per buyer. The controller takes its deltas from
//! those totals as it does from one host's counters.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use etcd_client::{Client, GetOptions};
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

/// Running totals over every edge, from each edge's counters as read.
#[derive(Debug, Default)]
pub struct EdgeAnswers {
    last: HashMap<String, Answers>,
    totals: Answers,
}

impl EdgeAnswers {
    /// What edge `edge` reports now. An edge's first reading is its baseline (what it counted
    /// before it was seen is not this tick's); a counter that went down is an edge that
    /// started again, and counts from zero.
    pub fn absorb(&mut self, edge: &str, now: Answers) {
        let first = !self.last.contains_key(edge);
        let prev = self.last.entry(edge.to_owned()).or_default();
        if !first {
            for (customer, cur) in &now {
                let p = prev.get(customer).copied().unwrap_or_default();
                let d: [u64; 3] = std::array::from_fn(|i| if cur[i] >= p[i] { cur[i] - p[i] } else { cur[i] });
                match self.totals.get_mut(customer) {
                    Some(total) => (0..3).for_each(|i| total[i] += d[i]),
                    None => {
                        self.totals.insert(customer.clone(), d);
                    }
                }
            }
        }
        *prev = now;
    }

    /// Forget edges no longer registered.
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
        // The leader's controller uses them; a follower's has nothing to decide.
        if !state.leads() {
            continue;
        }
        let live = match async { edges(etcd.client().await?, &keys, t).await }.await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(endpoint = etcd.endpoint(), "listing the edges: {e}");
                etcd.failed();
                continue;
            }
        };
        let mut reads = tokio::task::JoinSet::new();
        for edge in &live {
            let (http, edge) = (http.clone(), edge.clone());
            reads.spawn(async move {
                let text = async { http.get(&edge.answers_url).send().await?.error_for_status()?.text().await }.await;
                (edge, text)
            });
        }
        while let Some(Ok((edge, text))) = reads.join_next().await {
            match text {
                Ok(text) => seen.absorb(&edge.name, parse(&text)),
                Err(e) => tracing::debug!(edge = %edge.name, "reading the edge's answers: {e}"),
            }
        }
        seen.retain(&live.iter().map(|e| e.name.clone()).collect());
        let totals = seen.totals().clone();
        state.with_engine(move |e| e.cluster_answers = Some(totals)).await;
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
        s.absorb("a", one(100)); // baseline
        s.absorb("b", one(50)); // baseline
        assert!(s.totals().is_empty());
        s.absorb("a", one(130));
        s.absorb("b", one(70));
        assert_eq!(s.totals()["shop"], [50, 0, 0]);
        s.absorb("b", one(5)); // b started again
        assert_eq!(s.totals()["shop"], [55, 0, 0]);
        s.retain(&HashSet::from(["a".to_string()]));
        s.absorb("b", one(500)); // back: a new baseline
        assert_eq!(s.totals()["shop"], [55, 0, 0]);
        // A customer new on a known edge counts from zero.
        s.absorb("a", Answers::from([("shop".to_string(), [130, 0, 0]), ("blog".to_string(), [4, 1, 0])]));
        assert_eq!(s.totals()["blog"], [4, 1, 0]);
    }
}
