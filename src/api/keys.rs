//! `/v1/api-keys` (issue 5): list, create (the key is in the answer once, never again) and
//! revoke API keys. Admin scope only: a key that can mint keys can do anything.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::AdminKey;
use super::problem::{ApiError, Problem};
use super::{ApiState, ProblemJson};
use crate::store::{ApiKeyId, ApiKeyRecord, Scope};

/// An API key, without its secret.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ApiKey {
    /// The key's id (for `DELETE /v1/api-keys/{id}`).
    #[schema(value_type = String, format = Uuid)]
    pub id: ApiKeyId,
    pub name: String,
    /// The public part of the key: `sb_<prefix>_…`.
    pub prefix: String,
    pub scope: Scope,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// Revocation time (ms since the epoch); null while the key works.
    pub revoked_ms: Option<i64>,
}

/// What a new key is called and may do.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    /// A name saying who uses the key (1-200 characters).
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    pub scope: Scope,
}

/// A key just created: `key` is shown here once and never again (only its hash is stored).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct CreatedApiKey {
    /// The key itself, for `Authorization: Bearer <key>`.
    pub key: String,
    #[serde(flatten)]
    pub api_key: ApiKey,
}

impl From<ApiKeyRecord> for ApiKey {
    fn from(r: ApiKeyRecord) -> ApiKey {
        ApiKey {
            id: r.id,
            name: r.name,
            prefix: r.prefix,
            scope: r.scope,
            created_ms: r.created_ms,
            revoked_ms: r.revoked_ms,
        }
    }
}

/// This module's routes.
pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_keys, create_key))
        .routes(routes!(revoke_key))
}

/// Every API key (revoked ones too), newest first.
#[utoipa::path(
    get,
    path = "/v1/api-keys",
    tag = "keys",
    security(("api_key" = ["admin"])),
    responses(
        (status = 200, description = "The keys", body = Vec<ApiKey>),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key is not an admin key", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_keys(
    AdminKey(_): AdminKey,
    State(s): State<ApiState>,
) -> Result<Json<Vec<ApiKey>>, ApiError> {
    let keys = s.store.api_keys().await?;
    Ok(Json(keys.into_iter().map(ApiKey::from).collect()))
}

/// Creates a key; the answer holds the key itself, shown this once.
#[utoipa::path(
    post,
    path = "/v1/api-keys",
    tag = "keys",
    security(("api_key" = ["admin"])),
    request_body = NewApiKey,
    responses(
        (status = 201, description = "The new key (its secret shown once)", body = CreatedApiKey),
        (status = 400, description = "Bad name or scope", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key is not an admin key", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn create_key(
    AdminKey(_): AdminKey,
    State(s): State<ApiState>,
    ProblemJson(new): ProblemJson<NewApiKey>,
) -> Result<(StatusCode, Json<CreatedApiKey>), ApiError> {
    let (record, key) = s.store.create_api_key(&new.name, new.scope).await?;
    tracing::info!(name = %record.name, prefix = %record.prefix, scope = %record.scope, "API key created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedApiKey {
            key,
            api_key: record.into(),
        }),
    ))
}

/// Revokes a key: it stops working at once.
#[utoipa::path(
    delete,
    path = "/v1/api-keys/{id}",
    tag = "keys",
    security(("api_key" = ["admin"])),
    params(("id" = String, Path, format = Uuid, description = "The key's id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key is not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such key, or already revoked", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn revoke_key(
    AdminKey(caller): AdminKey,
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let not_found = || ApiError::not_found(format!("no live API key {id}"));
    let id: ApiKeyId = id.parse().map_err(|_| not_found())?;
    match s.store.revoke_api_key(&id.to_string()).await {
        Ok(()) => {
            tracing::info!(%id, by = %caller.key.prefix, "API key revoked");
            Ok(StatusCode::NO_CONTENT)
        }
        Err(crate::store::StoreError::NotFound(_)) => Err(not_found()),
        Err(e) => Err(e.into()),
    }
}
