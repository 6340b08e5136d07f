//! `/v1/webhooks` (issue 5, admin scope): subscriptions that receive matching events by HTTP
//! POST, signed with HMAC-SHA256, retried with backoff from the durable log, each with its
//! delivery state. The deliveries themselves run in [`delivery`].

pub mod delivery;

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use delivery::{DeliverySettings, WebhookDispatcher};

use super::auth::AdminKey;
use super::events::rfc3339_ms;
use super::{ApiError, ApiState, Problem, ProblemJson};
use crate::store::{EventFilter, MAX_EVENT_TYPES, NewWebhook, WebhookId, WebhookRecord};

/// Longest accepted URL.
const MAX_URL_LEN: usize = 2000;

/// A subscription to create.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// Where events are POSTed (`http` or `https`).
    #[schema(example = "https://crm.example.com/switchboard")]
    pub url: String,
    /// Event types: exact (`call.ended`), a prefix (`call.*`) or `*`.
    #[schema(example = json!(["call.*", "registration.added"]))]
    pub types: Vec<String>,
    /// The signing secret (16-200 characters); generated when absent.
    pub secret: Option<String>,
    /// Deliver the events after this seq; default: only events from now on.
    #[schema(minimum = 0)]
    pub since: Option<i64>,
}

/// A subscription just created: the only time its secret is shown.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedWebhook {
    #[schema(value_type = String, format = Uuid)]
    pub id: WebhookId,
    pub url: String,
    pub types: Vec<String>,
    /// Verify `Switchboard-Signature` with it; it is not shown again.
    pub secret: String,
}

/// A subscription and its delivery state.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Webhook {
    #[schema(value_type = String, format = Uuid)]
    pub id: WebhookId,
    pub url: String,
    pub types: Vec<String>,
    /// When it was created (RFC 3339).
    #[schema(format = DateTime)]
    pub created_at: String,
    pub delivery: DeliveryState,
}

/// Where a subscription's deliveries stand.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeliveryState {
    /// The last event the receiver acknowledged with a 2xx.
    pub last_delivered_seq: i64,
    /// Matching events after it, not yet acknowledged.
    pub pending_events: i64,
    /// Failed attempts at the next event (0 when nothing is failing).
    pub attempts: i64,
    /// HTTP status of the last attempt, if it got one.
    pub last_status: Option<u16>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the failing event is tried again (RFC 3339).
    #[schema(format = DateTime)]
    pub next_attempt_at: Option<String>,
}

/// Every subscription.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WebhookList {
    pub webhooks: Vec<Webhook>,
}

/// This module's routes.
pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(create_webhook, list_webhooks))
        .routes(routes!(get_webhook, delete_webhook))
}

/// Subscribe a URL to event types.
///
/// Each matching event is POSTed alone, in `seq` order, as the `Event` JSON, with
/// `Switchboard-Event-Id: <seq>` (the idempotency key) and `Switchboard-Signature:
/// t=<unix secs>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`. A non-2xx reply or a timeout
/// (10 s) retries the same event with exponential backoff (1 s doubling to 5 min, with
/// jitter); deliveries are at-least-once and survive restarts.
#[utoipa::path(
    post,
    path = "/v1/webhooks",
    tag = "events",
    security(("api_key" = ["admin"])),
    request_body = CreateWebhook,
    responses(
        (status = 201, description = "Created; the secret is shown only here", body = CreatedWebhook),
        (status = 400, description = "Bad request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "JSON of the wrong shape", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn create_webhook(
    _key: AdminKey,
    State(state): State<ApiState>,
    dispatcher: Option<Extension<WebhookDispatcher>>,
    ProblemJson(req): ProblemJson<CreateWebhook>,
) -> Result<(StatusCode, Json<CreatedWebhook>), ApiError> {
    check_url(&req.url)?;
    if req.types.is_empty() || req.types.len() > MAX_EVENT_TYPES {
        return Err(ApiError::bad_request(format!(
            "types needs 1 to {MAX_EVENT_TYPES} event types"
        )));
    }
    for t in &req.types {
        EventFilter::check_type(t).map_err(ApiError::bad_request)?;
    }
    let secret = match req.secret {
        Some(s) if (16..=200).contains(&s.len()) => s,
        Some(_) => return Err(ApiError::bad_request("secret must be 16-200 characters")),
        None => format!("whsec_{}", hex::encode(rand::random::<[u8; 24]>())),
    };
    if req.since.is_some_and(|s| s < 0) {
        return Err(ApiError::bad_request("since must be 0 or more"));
    }
    let hook = state
        .store
        .create_webhook(&NewWebhook {
            url: req.url,
            types: req.types,
            secret,
            since: req.since,
        })
        .await?;
    match dispatcher {
        Some(Extension(d)) => d.spawn(hook.clone()),
        None => {
            tracing::warn!(webhook = %hook.id, "no webhook dispatcher: deliveries start at the next server start")
        }
    }
    tracing::info!(webhook = %hook.id, url = %hook.url, types = ?hook.types, "webhook created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedWebhook {
            id: hook.id,
            url: hook.url,
            types: hook.types,
            secret: hook.secret,
        }),
    ))
}

/// Every subscription with its delivery state.
#[utoipa::path(
    get,
    path = "/v1/webhooks",
    tag = "events",
    security(("api_key" = ["admin"])),
    responses(
        (status = 200, description = "The subscriptions", body = WebhookList),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_webhooks(
    _key: AdminKey,
    State(state): State<ApiState>,
) -> Result<Json<WebhookList>, ApiError> {
    let mut webhooks = Vec::new();
    for hook in state.store.list_webhooks().await? {
        webhooks.push(with_state(&state, hook).await?);
    }
    Ok(Json(WebhookList { webhooks }))
}

/// One subscription with its delivery state.
#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}",
    tag = "events",
    security(("api_key" = ["admin"])),
    params(("id" = String, Path, format = Uuid, description = "The subscription")),
    responses(
        (status = 200, description = "The subscription", body = Webhook),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such subscription", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_webhook(
    _key: AdminKey,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Webhook>, ApiError> {
    let id = parse_id(&id)?;
    let hook = state
        .store
        .get_webhook(id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such webhook"))?;
    Ok(Json(with_state(&state, hook).await?))
}

/// Delete a subscription: its deliveries stop at once.
#[utoipa::path(
    delete,
    path = "/v1/webhooks/{id}",
    tag = "events",
    security(("api_key" = ["admin"])),
    params(("id" = String, Path, format = Uuid, description = "The subscription")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such subscription", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn delete_webhook(
    _key: AdminKey,
    State(state): State<ApiState>,
    dispatcher: Option<Extension<WebhookDispatcher>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    if let Some(Extension(d)) = dispatcher {
        d.cancel(id);
    }
    if !state.store.delete_webhook(id).await? {
        return Err(ApiError::not_found("no such webhook"));
    }
    tracing::info!(webhook = %id, "webhook deleted");
    Ok(StatusCode::NO_CONTENT)
}

async fn with_state(state: &ApiState, hook: WebhookRecord) -> Result<Webhook, ApiError> {
    let filter = EventFilter {
        types: hook.types.clone(),
        session_id: None,
    };
    let pending = state
        .store
        .count_events_matching(hook.last_delivered_seq, &filter)
        .await?;
    Ok(Webhook {
        id: hook.id,
        url: hook.url,
        types: hook.types,
        created_at: rfc3339_ms(hook.created_ms),
        delivery: DeliveryState {
            last_delivered_seq: hook.last_delivered_seq,
            pending_events: pending,
            attempts: hook.attempts,
            last_status: hook.last_status,
            last_error: hook.last_error,
            next_attempt_at: hook.next_attempt_ms.map(rfc3339_ms),
        },
    })
}

fn parse_id(id: &str) -> Result<WebhookId, ApiError> {
    id.parse()
        .map_err(|_| ApiError::not_found("no such webhook"))
}

pub(super) fn check_url(url: &str) -> Result<(), ApiError> {
    if url.len() > MAX_URL_LEN {
        return Err(ApiError::bad_request("url is too long"));
    }
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| ApiError::bad_request(format!("url is not a valid URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(ApiError::bad_request("url must be an http or https URL"));
    }
    Ok(())
}
