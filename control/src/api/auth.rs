//! Bearer tokens and tenancy: the operator's token sees and changes everything; a buyer's
//! token (`token` in its `[[customer]]` entry) sees and changes only its own bids, orders,
//! contracts and usage.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{StatusCode, header},
    middleware::Next,
    response::Response,
};

use super::{ApiError, AppState};

pub use crate::tokens::Principal;

impl Principal {
    /// The buyer a request is limited to; `None` for the operator.
    pub fn scope(&self) -> Option<&str> {
        match self {
            Principal::Operator => None,
            Principal::Buyer(id) => Some(id),
        }
    }

    pub fn require_operator(&self) -> Result<(), ApiError> {
        match self {
            Principal::Operator => Ok(()),
            Principal::Buyer(_) => Err(ApiError::new(StatusCode::FORBIDDEN, "this needs the operator's token")),
        }
    }

    /// The buyer a request acts for: a buyer acts for itself (naming another is refused);
    /// the operator names one.
    pub fn acting_for(&self, named: Option<&str>) -> Result<String, ApiError> {
        match (self, named) {
            (Principal::Buyer(me), None) => Ok(me.clone()),
            (Principal::Buyer(me), Some(other)) if other == me => Ok(me.clone()),
            (Principal::Buyer(_), Some(other)) => {
                Err(ApiError::new(StatusCode::FORBIDDEN, format!("a buyer's token cannot act for {other:?}")))
            }
            (Principal::Operator, Some(id)) => Ok(id.to_owned()),
            (Principal::Operator, None) => Err(ApiError::invalid("the operator must name the \"customer\"")),
        }
    }
}

pub async fn require_token(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "missing bearer token (Authorization: Bearer ...)"))?;
    let found = state.tokens.read().unwrap_or_else(|e| e.into_inner()).lookup(given.trim());
    let principal = found.ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "invalid token"))?;
    state.limits.check_write(&principal, req.method())?;
    req.extensions_mut().insert(principal);
    Ok(next.run(req).await)
}

/// GET /v1/session: who the token is (a client such as the dashboard shows what it may).
pub async fn session(axum::Extension(who): axum::Extension<Principal>) -> axum::Json<serde_json::Value> {
    axum::Json(match who {
        Principal::Operator => serde_json::json!({"role": "operator", "customer": null}),
        Principal::Buyer(id) => serde_json::json!({"role": "buyer", "customer": id}),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buyers_act_only_for_themselves() {
        let b = Principal::Buyer("shop".into());
        assert_eq!(b.acting_for(None).unwrap(), "shop");
        assert_eq!(b.acting_for(Some("blog")).unwrap_err().status, StatusCode::FORBIDDEN);
        assert_eq!(Principal::Operator.acting_for(Some("blog")).unwrap(), "blog");
        assert_eq!(Principal::Operator.acting_for(None).unwrap_err().status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(b.require_operator().is_err());
    }
}
