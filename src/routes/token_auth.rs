//! Who calls a front door for programs (the REST API, MCP, the Jupyter
//! gateway): a token among the configured API tokens, compared in constant
//! time; what it creates is owned by a keyed fingerprint of it (its
//! `Tenant`).

use super::AppState;
use crate::error::AppError;
use crate::services::tasks::Tenant;
use crate::services::tokens::token_fingerprint;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A caller holding one of the configured tokens (`Authorization: Bearer`).
#[derive(Clone)]
pub struct ApiCaller(pub Tenant);

impl FromRequestParts<AppState> for ApiCaller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(AppError::unauthorized)?;
        tenant_of(state, given)
            .map(ApiCaller)
            .ok_or_else(AppError::unauthorized)
    }
}

/// The tenant of `given` when it is one of the configured tokens.
pub fn tenant_of(state: &AppState, given: &str) -> Option<Tenant> {
    let given = given.trim();
    // Every token is compared, in constant time, whatever matches.
    let mut ok = subtle::Choice::from(0);
    for token in state.config.api_tokens.iter().filter(|t| !t.is_empty()) {
        let a = Sha256::digest(token.as_bytes());
        let b = Sha256::digest(given.as_bytes());
        ok |= a.ct_eq(&b);
    }
    bool::from(ok).then(|| Tenant(token_fingerprint(&state.token_key, given)))
}
