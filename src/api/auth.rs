//! API keys on requests: `Authorization: Bearer sb_…`. A handler names the scope it needs by
//! taking one of the extractors [`ReadKey`], [`ControlKey`] or [`AdminKey`]: a missing or
//! unknown key is 401, a key without the scope 403, a key over its rate 429 (problem JSON).

use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use governor::{Quota, RateLimiter};

use super::ApiState;
use super::problem::ApiError;
use crate::store::{ApiKeyId, ApiKeyRecord, Scope};

/// Per-key request rate (token bucket), shared by every request.
pub type KeyLimiter = RateLimiter<
    ApiKeyId,
    governor::state::keyed::DefaultKeyedStateStore<ApiKeyId>,
    governor::clock::DefaultClock,
>;

/// A limiter allowing `per_sec` requests per second per key, bursts of `burst`.
pub fn limiter(per_sec: u32, burst: u32) -> Arc<KeyLimiter> {
    let per_sec = NonZeroU32::new(per_sec).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst).unwrap_or(per_sec);
    Arc::new(RateLimiter::keyed(
        Quota::per_second(per_sec).allow_burst(burst),
    ))
}

/// The key a request was made with.
#[derive(Debug, Clone)]
pub struct ApiCaller {
    pub key: ApiKeyRecord,
}

/// Finds, checks and rate-limits the request's key for `needed`.
async fn authorize(parts: &Parts, state: &ApiState, needed: Scope) -> Result<ApiCaller, ApiError> {
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::unauthorized(
            "an API key is required: Authorization: Bearer <key>",
        ));
    };
    let key = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| ApiError::unauthorized("the Authorization header must be `Bearer <key>`"))?;
    let Some(record) = state.store.verify_api_key(key).await? else {
        return Err(ApiError::unauthorized("unknown or revoked API key"));
    };
    if record.scope < needed {
        return Err(ApiError::forbidden(format!(
            "this API key has scope `{}`; this request needs `{needed}`",
            record.scope
        )));
    }
    if let Err(not_until) = state.limiter.check_key(&record.id) {
        let wait = not_until.wait_time_from(governor::clock::Clock::now(
            &governor::clock::DefaultClock::default(),
        ));
        return Err(ApiError::too_many_requests(wait.as_secs() + 1));
    }
    Ok(ApiCaller { key: record })
}

macro_rules! scope_extractor {
    ($(#[$doc:meta])* $name:ident, $scope:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name(pub ApiCaller);

        impl FromRequestParts<ApiState> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(
                parts: &mut Parts,
                state: &ApiState,
            ) -> Result<Self, Self::Rejection> {
                authorize(parts, state, $scope).await.map($name)
            }
        }
    };
}

scope_extractor!(
    /// A key with at least the `read` scope.
    ReadKey,
    Scope::Read
);
scope_extractor!(
    /// A key with at least the `control` scope.
    ControlKey,
    Scope::Control
);
scope_extractor!(
    /// A key with the `admin` scope.
    AdminKey,
    Scope::Admin
);
