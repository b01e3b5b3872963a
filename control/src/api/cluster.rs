//! Writes on a cluster's hosts: an edge takes none (its state is etcd's, written by the
//! control hosts), and a control host takes none while etcd does not answer (a change it could
//! not publish would reach no edge). Both refuse before anything changes.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::{ApiError, AppState};
use crate::cluster::config::Role;

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
