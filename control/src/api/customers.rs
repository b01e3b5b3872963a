//! /v1/customers: the customers, their fraction in force, and the manual override.

use std::sync::Arc;

use axum::{
    Extension, Json,
    body::Bytes,
    extract::{Path, Query, State},
    http::StatusCode,
};
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState, Principal};
use crate::{
    catalog::{Customer, Mode},
    config::{Assignment, CustomerConfig, Draw, Overflow},
    engine::Engine,
    settings::CustomerSettings,
};

#[derive(Debug, Serialize)]
pub struct CustomerView {
    pub id: String,
    pub names: Vec<String>,
    /// The fraction in force in the data plane.
    pub fraction: f64,
    pub mode: Mode,
    /// The buyer's own estimate (from the config).
    pub estimate: f64,
    /// Requests/s bought by the buyer's contracts in force now.
    pub contracted_rps: u64,
    pub overflow: Overflow,
    pub assignment: Assignment,
    pub draw: Draw,
    pub ttl: u32,
    pub origin_addresses: Vec<std::net::IpAddr>,
    pub origin_cname: Option<String>,
    /// Answers by target since the program was loaded (XDP path).
    pub answers: AnswerCounts,
    /// The controller's last decision and its inputs (with the market on).
    pub controller: Option<crate::controller::Decision>,
    /// What the buyer set for itself over its entry (the fields above include it).
    pub settings: CustomerSettings,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct AnswerCounts {
    pub proxy: u64,
    pub origin: u64,
    pub cname: u64,
}

#[derive(Debug, Serialize)]
pub struct CustomerList {
    pub customers: Vec<CustomerView>,
}

fn view(engine: &Engine, c: &Customer) -> CustomerView {
    let a = engine.dataplane.as_ref().and_then(|dp| dp.customer_answers(c.index).ok()).unwrap_or_default();
    CustomerView {
        id: c.config.id.clone(),
        names: c.config.names.clone(),
        fraction: c.fraction,
        mode: c.mode,
        estimate: c.config.fraction,
        contracted_rps: c.contracted_rps,
        overflow: c.config.overflow,
        assignment: c.config.assignment,
        draw: c.config.draw,
        ttl: c.config.ttl,
        origin_addresses: c.config.origin_addresses.clone(),
        origin_cname: c.config.origin_cname.clone(),
        answers: AnswerCounts { proxy: a[0], origin: a[1], cname: a[2] },
        controller: engine.decisions.get(&c.config.id).copied(),
        settings: engine.settings.get(&c.config.id).cloned().unwrap_or_default(),
    }
}

pub(crate) fn unknown(id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no customer with id {id:?}"))
}

/// The operator sees every customer, a buyer only itself.
pub async fn list(State(state): State<Arc<AppState>>, Extension(who): Extension<Principal>) -> Json<CustomerList> {
    state
        .with_engine(move |engine| {
            let visible = |c: &&Customer| who.scope().is_none_or(|s| s == c.config.id);
            Json(CustomerList {
                customers: engine.catalog.customers().iter().filter(visible).map(|c| view(engine, c)).collect(),
            })
        })
        .await
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<CustomerView>, ApiError> {
    state
        .with_engine(move |engine| {
            let c = engine.catalog.customer(&id).filter(|c| who.scope().is_none_or(|s| s == c.config.id));
            let c = c.ok_or_else(|| unknown(&id))?;
            Ok(Json(view(engine, c)))
        })
        .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolversQuery {
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize)]
pub struct ResolverCount {
    /// The /24 or /56, e.g. `192.0.2.0/24`.
    pub prefix: String,
    pub queries: u64,
}

#[derive(Debug, Serialize)]
pub struct ResolverQueries {
    pub customer: String,
    pub draw: Draw,
    /// Prefixes counted for the customer (the list shows the first `limit`).
    pub prefixes: usize,
    pub resolvers: Vec<ResolverCount>,
}

/// GET /v1/customers/{id}/resolvers: what the XDP program counted of the resolvers asking for
/// a customer that draws per resolver, most queries first (the operator or the buyer itself).
pub async fn resolvers(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<ResolversQuery>,
) -> Result<Json<ResolverQueries>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit {limit} is not within 1..=10000")));
    }
    state
        .with_engine(move |engine| {
            let c = engine.catalog.customer(&id).filter(|c| who.scope().is_none_or(|s| s == c.config.id));
            let c = c.ok_or_else(|| unknown(&id))?;
            let counted = match &engine.dataplane {
                Some(dp) => dp.resolver_queries(c.index).map_err(ApiError::internal)?,
                None => Vec::new(),
            };
            let resolvers = counted
                .iter()
                .take(limit)
                .map(|&(key, queries)| {
                    let (net, len) = spillway_common::decision::subnet_of_key(key);
                    ResolverCount { prefix: format!("{net}/{len}"), queries }
                })
                .collect();
            Ok(Json(ResolverQueries {
                customer: c.config.id.clone(),
                draw: c.config.draw,
                prefixes: counted.len(),
                resolvers,
            }))
        })
        .await
}

#[derive(Debug, Serialize)]
pub struct HistoryView {
    pub customer: String,
    pub every_s: i64,
    pub samples: Vec<crate::history::Sample>,
}

/// GET /v1/customers/{id}/history: the buyer's last hour (the operator or the buyer itself).
pub async fn history(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<HistoryView>, ApiError> {
    state
        .with_engine(move |engine| {
            let c = engine.catalog.customer(&id).filter(|c| who.scope().is_none_or(|s| s == c.config.id));
            let c = c.ok_or_else(|| unknown(&id))?;
            Ok(Json(HistoryView {
                customer: c.config.id.clone(),
                every_s: crate::history::SAMPLE_EVERY_S,
                samples: engine.history.of(&c.config.id),
            }))
        })
        .await
}

/// POST /v1/customers: add a buyer (operator). The body is a `[[customer]]` entry as JSON
/// (without `zones`), checked by the config file's rules; with `token`, the buyer can use the
/// API at once. Stored, so it outlives restarts.
pub async fn create(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Result<Json<CustomerView>, ApiError> {
    who.require_operator()?;
    let c: CustomerConfig = super::parse_json(&body)?;
    if let Some(t) = &c.token {
        crate::tokens::check_token(t).map_err(|e| ApiError::invalid(format!("token: {e}")))?;
    }
    let id = c.id.clone();
    let st = state.clone();
    state
        .with_engine(move |engine| {
            let mut tokens = st.tokens.write().unwrap_or_else(|e| e.into_inner());
            engine.add_customer(c, &mut tokens, crate::engine::unix_now())?;
            let c = engine.catalog.customer(&id).ok_or_else(|| unknown(&id))?;
            Ok(Json(view(engine, c)))
        })
        .await
}

/// Body of PUT /v1/customers/{id}/names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamesRequest {
    pub names: Vec<String>,
}

/// Replace the names of a customer added through the API (operator).
pub async fn put_names(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<CustomerView>, ApiError> {
    who.require_operator()?;
    let req: NamesRequest = super::parse_json(&body)?;
    state
        .with_engine(move |engine| {
            if engine.catalog.customer(&id).is_none() {
                return Err(unknown(&id));
            }
            engine.set_customer_names(&id, req.names, crate::engine::unix_now())?;
            let c = engine.catalog.customer(&id).ok_or_else(|| unknown(&id))?;
            Ok(Json(view(engine, c)))
        })
        .await
}

/// Body of PUT /v1/customers/{id}/fraction.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FractionRequest {
    #[serde(default, deserialize_with = "crate::settings::present")]
    pub fraction: Option<f64>,
    #[serde(default, deserialize_with = "crate::settings::present")]
    pub mode: Option<Mode>,
}

/// What a request asks for, once checked: the fraction and mode to put in force.
fn resolve(req: &FractionRequest, current: &Customer, auto: f64) -> Result<(f64, Mode), ApiError> {
    match (req.fraction, req.mode) {
        (Some(f), None | Some(Mode::Manual)) => {
            if !f.is_finite() || !(0.0..=1.0).contains(&f) {
                return Err(ApiError::bad_request(format!("fraction {f} is outside [0, 1]")));
            }
            Ok((f, Mode::Manual))
        }
        (Some(_), Some(Mode::Auto)) => {
            Err(ApiError::invalid("a fraction sets manual mode; send {\"mode\": \"auto\"} alone to hand it back"))
        }
        (None, Some(Mode::Auto)) => Ok((auto, Mode::Auto)),
        (None, Some(Mode::Manual)) => Ok((current.fraction, Mode::Manual)),
        (None, None) => Err(ApiError::invalid("send {\"fraction\": x} with x in [0, 1], or {\"mode\": \"auto\"}")),
    }
}

pub async fn put_fraction(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<CustomerView>, ApiError> {
    who.require_operator()?;
    let req: FractionRequest = super::parse_json(&body)?;
    state
        .with_engine(move |engine| {
            let current = engine.catalog.customer(&id).ok_or_else(|| unknown(&id))?;
            let (fraction, mode) = resolve(&req, current, engine.catalog.auto_fraction(current))?;
            engine.catalog.set_fraction(&id, fraction, mode, engine.dataplane.as_mut()).map_err(ApiError::internal)?;
            tracing::info!(customer = %id, fraction, ?mode, "fraction set through the API");
            let c = engine.catalog.customer(&id).ok_or_else(|| unknown(&id))?;
            Ok(Json(view(engine, c)))
        })
        .await
}

/// PUT /v1/customers/{id}/settings: the buyer (or the operator) sets its estimate, overflow,
/// origins and their weights, assignment and TTL; fields left out keep what they were. Checked
/// by the config file's rules (a buyer's TTL within the operator's bounds), stored, and in the
/// data plane at once. Another buyer's id is 404.
pub async fn put_settings(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<CustomerView>, ApiError> {
    let change: CustomerSettings = super::parse_json(&body)?;
    if let Some(f) = change.estimate
        && !(f.is_finite() && (0.0..=1.0).contains(&f))
    {
        return Err(ApiError::bad_request(format!("estimate {f} is outside [0, 1]")));
    }
    if change.is_empty() {
        return Err(ApiError::invalid(
            "send at least one of estimate, overflow, origin_addresses, origin_weights, origin_cname, assignment, ttl",
        ));
    }
    change_settings(state, who, id, Some(change)).await
}

/// DELETE /v1/customers/{id}/settings: take every setting away; the customer answers by its
/// entry alone again (the config file's, or as the API added it).
pub async fn delete_settings(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<CustomerView>, ApiError> {
    change_settings(state, who, id, None).await
}

async fn change_settings(
    state: Arc<AppState>,
    who: Principal,
    id: String,
    change: Option<CustomerSettings>,
) -> Result<Json<CustomerView>, ApiError> {
    if who.scope().is_some_and(|me| me != id) {
        return Err(unknown(&id));
    }
    let by_buyer = who.scope().is_some();
    state
        .with_engine(move |engine| {
            if engine.catalog.customer(&id).is_none() {
                return Err(unknown(&id));
            }
            engine.set_customer_settings(&id, change.as_ref(), by_buyer, crate::engine::unix_now())?;
            let c = engine.catalog.customer(&id).ok_or_else(|| unknown(&id))?;
            Ok(Json(view(engine, c)))
        })
        .await
}

/// Body of PUT /v1/customers/{id}/token: the new token, or none to have one made.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    pub token: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct TokenView {
    pub customer: String,
    /// The new token: shown this once (only its digest is kept).
    pub token: String,
}

/// Rotate a buyer's token: the operator for any buyer, a buyer for itself (another buyer's
/// id is 404, as if it did not exist). The old token stops working at once.
pub async fn put_token(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<TokenView>, ApiError> {
    let req: TokenRequest = if body.is_empty() { TokenRequest::default() } else { super::parse_json(&body)? };
    if who.scope().is_some_and(|me| me != id) {
        return Err(unknown(&id));
    }
    let token = req.token.unwrap_or_else(crate::tokens::generate);
    let st = state.clone();
    state
        .with_engine(move |engine| {
            if engine.catalog.customer(&id).is_none() {
                return Err(unknown(&id));
            }
            let mut tokens = st.tokens.write().unwrap_or_else(|e| e.into_inner());
            engine.rotate_token(&id, &token, &mut tokens, crate::engine::unix_now())?;
            Ok(Json(TokenView { customer: id, token }))
        })
        .await
}
