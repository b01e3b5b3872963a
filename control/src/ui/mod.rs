//! The operator's window: a live dashboard at `/ui` on the admin listener. The page, its
//! script and style are in this directory and embedded in the binary (nothing is fetched at
//! run time); it logs in with an API token and reads the control API itself (a buyer's token
//! shows only its own), and `/metrics` for the XDP counters. Each buyer's chart is an SVG the
//! server draws with plotters ([`chart`]), at `GET /v1/customers/{id}/history/chart`.

pub mod chart;

use std::sync::Arc;

use axum::{
    Extension, Router,
    extract::{Path, State},
    http::header,
    response::IntoResponse,
    routing::get,
};

use crate::api::{ApiError, AppState, Principal};

const INDEX: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const STYLE: &str = include_str!("style.css");

/// `/ui`, `/ui/app.js`, `/ui/style.css`: public (the data behind them needs a token).
pub fn routes() -> Router<Arc<AppState>> {
    let page = |ty: &'static str, body: &'static str| {
        get(move || async move { ([(header::CONTENT_TYPE, ty), (header::CACHE_CONTROL, "no-cache")], body) })
    };
    Router::new()
        .route("/ui", page("text/html; charset=utf-8", INDEX))
        .route("/ui/", page("text/html; charset=utf-8", INDEX))
        .route("/ui/app.js", page("text/javascript; charset=utf-8", APP_JS))
        .route("/ui/style.css", page("text/css; charset=utf-8", STYLE))
}

/// GET /v1/customers/{id}/history/chart: the buyer's last hour as SVG (the operator or the
/// buyer itself).
pub async fn history_chart(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let (id, samples) = state
        .with_engine(move |engine| {
            let c = engine.catalog.customer(&id).filter(|c| who.scope().is_none_or(|s| s == c.config.id));
            let c = c.ok_or_else(|| crate::api::customers::unknown(&id))?;
            Ok::<_, ApiError>((c.config.id.clone(), engine.history.of(&c.config.id)))
        })
        .await?;
    let svg = chart::history_svg(&id, &samples, crate::engine::unix_now()).map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg))
}
