//! A cluster's hosts over HTTP. Writes: an edge takes none (its state is etcd's, written by
//! the control hosts), and a control host takes none while etcd does not answer (a change it
//! could not publish would reach no edge), nor while another replica leads (it names the
//! leader); all refuse before anything changes. And
//! `/cluster/answers`: an edge's answer counters per buyer in a compact form, which the
//! control hosts read every second.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::{ApiError, AppState};
use crate::cluster::config::Role;

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
