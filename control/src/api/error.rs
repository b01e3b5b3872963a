//! API errors: a status and a JSON body `{"error": "..."}` that says what is wrong.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::market::MarketError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Seconds to wait, sent as Retry-After (429, 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), retry_after: None }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// The request fits the document, but a rule across its fields (or of the config, or of
    /// the market) refuses it.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl From<MarketError> for ApiError {
    fn from(e: MarketError) -> Self {
        let e = match e {
            MarketError::Store(s) => return s.into(),
            other => other,
        };
        let status = match &e {
            MarketError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            MarketError::NotFound(_) => StatusCode::NOT_FOUND,
            MarketError::Forbidden(_) => StatusCode::FORBIDDEN,
            MarketError::Conflict(_) => StatusCode::CONFLICT,
            MarketError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> Self {
        match e {
            crate::Error::Market(m) => m.into(),
            crate::Error::Store(s) => s.into(),
            other => ApiError::internal(other),
        }
    }
}

/// A sum past i64 is the request's fault (422); any other store error (a full disk, an I/O
/// error) is 503: the transaction was rolled back, nothing changed, try again later.
impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::Overflow(_) => ApiError::invalid(e.to_string()),
            other => {
                let mut e = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the store cannot take the change now (nothing was changed): {other}"),
                );
                e.retry_after = Some(1);
                e
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(json!({ "error": self.message }))).into_response();
        if let Some(secs) = self.retry_after {
            r.headers_mut().insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        r
    }
}

/// Parse a JSON body, with the parser's message (field, line, column) on failure.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}
