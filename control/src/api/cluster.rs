//! A cluster's hosts over HTTP. Writes: an edge takes none (its state is etcd's, written by
//! the control hosts), and a control host takes none while etcd does not answer (a change it
//! could not publish would reach no edge), nor while another replica leads (it names the
//! leader); all refuse before anything changes. And
//! `/cluster/answers`: an edge's answer counters per buyer in a compact form, which the
//! control hosts read every second. And `GET /v1/cluster`: the operator's view of this host's
//! place in the cluster and of the live edges.

use std::sync::Arc;

use axum::{
    Extension, Json,
    extract::{Request, State},
    http::{Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde::Serialize;

use super::{ApiError, AppState, Principal};
use crate::cluster::{answers::EdgeView, config::Role};

/// The leader's API URL, on a follower's refusal.
pub const LEADER_HEADER: &str = "x-spillway-leader";

pub async fn writes(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let Some(cluster) = &state.cluster else { return next.run(req).await };
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return next.run(req).await;
    }
    if cluster.role == Role::Edge {
        return ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "{} is an edge (cluster.role = \"edge\"): it answers from etcd's state; send changes to a control host",
                cluster.name
            ),
        )
        .into_response();
    }
    if !cluster.leads() {
        let Some(leader) = cluster.leader() else {
            let mut e = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no control replica leads the cluster now (etcd elects one: it does not answer, or the election is under way): writes are refused until one leads",
            );
            e.retry_after = Some(1);
            return e.into_response();
        };
        let mut r = ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            format!("{} is a follower: send changes to the leader, {leader}", cluster.name),
        )
        .into_response();
        if let Ok(v) = header::HeaderValue::from_str(&leader) {
            r.headers_mut().insert(LEADER_HEADER, v);
        }
        return r;
    }
    if !cluster.etcd_up() {
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "etcd does not answer: the change could reach no edge, so writes are refused until it does",
        );
        e.retry_after = Some(1);
        return e.into_response();
    }
    next.run(req).await
}

/// One line per buyer, `<id> <proxy> <origin> <cname>`: the answers of both paths so far (the
/// same counts as `spillway_answers_total`, at a fraction of the text). The engine's part is
/// copied under its lock, the XDP counters read after, as for `/metrics`.
pub async fn answers(State(state): State<Arc<AppState>>) -> Result<impl IntoResponse, ApiError> {
    let customers: Vec<(String, u32, [u64; 3])> = state
        .with_engine(|e| {
            e.catalog.customers().iter().map(|c| (c.config.id.clone(), c.index, c.live.answers())).collect()
        })
        .await;
    let st = state.clone();
    let text = tokio::task::spawn_blocking(move || -> crate::Result<String> {
        let mut out = String::with_capacity(customers.len() * 32);
        for (id, index, userspace) in customers {
            let xdp = match &st.stats {
                Some(stats) => stats.customer_answers(index)?,
                None => [0; 3],
            };
            let [p, o, c]: [u64; 3] = std::array::from_fn(|i| xdp[i] + userspace[i]);
            out.push_str(&format!("{id} {p} {o} {c}\n"));
        }
        Ok(out)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text))
}

/// This host in its cluster, and (a control host) the live edges.
#[derive(Debug, Serialize)]
pub struct ClusterView {
    pub name: String,
    pub role: &'static str,
    /// The etcd revision of the state in force.
    pub revision: i64,
    /// Seconds since this host last knew its state was etcd's.
    pub state_age_s: f64,
    /// Why this host is degraded (as `/readyz` says), `None` when it is not.
    pub degraded: Option<String>,
    /// A control host: etcd takes its writes (`None` on an edge).
    pub etcd_up: Option<bool>,
    /// This replica leads the cluster, in term `term` (0 when it does not).
    pub leads: bool,
    pub term: i64,
    /// A control host: the leader's API URL, when one is known.
    pub leader: Option<String>,
    /// A control host: the edges registered now, by name (`None` on an edge).
    pub edges: Option<Vec<EdgeView>>,
}

/// The cluster is the operator's business: the edges' addresses are internal.
pub async fn status(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
) -> Result<Json<ClusterView>, ApiError> {
    who.require_operator()?;
    let Some(c) = &state.cluster else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "this host is not part of a cluster ([cluster] is not set)"));
    };
    let controls = c.role.controls();
    Ok(Json(ClusterView {
        name: c.name.clone(),
        role: c.role.as_str(),
        revision: c.revision(),
        state_age_s: c.state_age_s(),
        degraded: c.degraded(),
        etcd_up: controls.then(|| c.etcd_up()),
        leads: c.leads(),
        term: c.term().max(0),
        leader: if controls { c.leader() } else { None },
        edges: controls.then(|| c.edges()),
    }))
}
