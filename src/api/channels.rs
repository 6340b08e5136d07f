//! `/v1/channels` (issue 12): messaging channels as rows. `web` (the chat widget) exists by
//! default; a gateway (SMS, WhatsApp, social, a bot) is created by an admin with the URL its
//! replies are POSTed to, and posts its customers' messages to
//! `POST /v1/channels/{name}/messages` with a control key.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::{AdminKey, ControlKey, ReadKey};
use super::events::rfc3339_ms;
use super::webhooks::check_url;
use super::{ApiError, ApiState, Problem, ProblemJson};
use crate::chat::{Inbound, Sender};
use crate::store::{ChannelKind, ChannelRecord};

/// A channel to create.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateChannel {
    /// Lowercase letters, digits, `-` and `_` (1-40), e.g. `sms-uk`.
    #[schema(example = "sms")]
    pub name: String,
    /// `sms`, `whatsapp`, `social`, `bot` or `other` (`web` is the widget's own).
    pub kind: ChannelKind,
    /// Where replies to its conversations are POSTed (`http` or `https`); without it,
    /// replies are only stored and published as events.
    pub webhook_url: Option<String>,
}

/// A channel just created: the only time its secret is shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreatedChannel {
    pub name: String,
    pub kind: ChannelKind,
    pub webhook_url: Option<String>,
    /// Verify `Switchboard-Signature` on replies with it; it is not shown again (null
    /// without a webhook).
    pub secret: Option<String>,
}

/// A channel and the state of its reply deliveries.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChannelView {
    pub name: String,
    pub kind: ChannelKind,
    pub webhook_url: Option<String>,
    /// When it was created (RFC 3339).
    #[schema(format = DateTime)]
    pub created_at: String,
    /// Failed attempts at the oldest undelivered reply (0 when nothing is failing).
    pub attempts: i64,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
}

/// Every channel.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChannelList {
    pub channels: Vec<ChannelView>,
}

/// Who wrote, as the gateway knows them: at least one of `id`, `phone` or `email`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageFrom {
    /// The user's id on the gateway (e.g. a WhatsApp id); replies go to it.
    pub id: Option<String>,
    /// A phone number in any format (normalised to E.164 with the default region).
    pub phone: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
}

/// A customer's message arriving from a gateway.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InboundMessage {
    pub from: MessageFrom,
    /// The text (1-4096 bytes); card numbers are masked before it is stored.
    pub text: String,
    /// The gateway's id for the message, unique per channel: the same id again is not
    /// stored twice.
    pub id: String,
}

/// Where the message went.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InboundAccepted {
    pub conversation_id: Uuid,
    pub session_id: Uuid,
    pub customer_id: Option<Uuid>,
    pub message_id: Uuid,
}

/// This module's routes.
pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(create_channel, list_channels))
        .routes(routes!(post_message))
}

/// Longest channel name.
const MAX_NAME: usize = 40;

/// Create a messaging channel.
///
/// Replies written to its conversations are POSTed to `webhook_url` one at a time, in order,
/// as JSON (`id`, `conversation_id`, `channel`, `to`, `text`, `author`, `author_name`,
/// `created_ms`) with `Switchboard-Message-Id: <id>` (the idempotency key) and
/// `Switchboard-Signature: t=<unix secs>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`. A
/// non-2xx reply or a timeout retries the same message with exponential backoff (1 s doubling
/// to 5 min).
#[utoipa::path(
    post,
    path = "/v1/channels",
    tag = "conversations",
    security(("api_key" = ["admin"])),
    request_body = CreateChannel,
    responses(
        (status = 201, description = "Created; the secret is shown only here", body = CreatedChannel),
        (status = 400, description = "Bad request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The name is taken", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "JSON of the wrong shape", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn create_channel(
    _key: AdminKey,
    State(state): State<ApiState>,
    ProblemJson(req): ProblemJson<CreateChannel>,
) -> Result<(StatusCode, Json<CreatedChannel>), ApiError> {
    let name_ok = !req.name.is_empty()
        && req.name.len() <= MAX_NAME
        && req
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !name_ok {
        return Err(ApiError::bad_request(format!(
            "name must be 1-{MAX_NAME} lowercase letters, digits, '-' or '_'"
        )));
    }
    if req.kind == ChannelKind::Web {
        return Err(ApiError::bad_request(
            "kind web is the chat widget's own channel",
        ));
    }
    if let Some(url) = &req.webhook_url {
        check_url(url)?;
    }
    let secret = req
        .webhook_url
        .as_ref()
        .map(|_| format!("chsec_{}", hex::encode(rand::random::<[u8; 24]>())));
    let record = ChannelRecord {
        name: req.name,
        kind: req.kind,
        webhook_url: req.webhook_url,
        secret,
        created_ms: crate::clock::unix_ms(),
        attempts: 0,
        last_status: None,
        last_error: None,
        next_attempt_ms: None,
    };
    state.store.create_channel(&record).await?;
    state.chat.outbox().spawn(record.clone());
    tracing::info!(channel = %record.name, kind = %record.kind, "channel created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedChannel {
            name: record.name,
            kind: record.kind,
            webhook_url: record.webhook_url,
            secret: record.secret,
        }),
    ))
}

/// Every channel with the state of its reply deliveries.
#[utoipa::path(
    get,
    path = "/v1/channels",
    tag = "conversations",
    security(("api_key" = ["read"])),
    responses(
        (status = 200, description = "The channels", body = ChannelList),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_channels(
    _key: ReadKey,
    State(state): State<ApiState>,
) -> Result<Json<ChannelList>, ApiError> {
    let channels = state
        .store
        .list_channels()
        .await?
        .into_iter()
        .map(|c| ChannelView {
            created_at: rfc3339_ms(c.created_ms),
            name: c.name,
            kind: c.kind,
            webhook_url: c.webhook_url,
            attempts: c.attempts,
            last_status: c.last_status,
            last_error: c.last_error,
        })
        .collect();
    Ok(Json(ChannelList { channels }))
}

/// Deliver a customer's message from a gateway.
///
/// The sender's open conversation on this channel takes it; otherwise a conversation starts
/// in the customer's session when one is live or was active within the continuity window
/// (so a chat after a call, or a call after a chat, is one session), else in a new session.
/// The same `id` again answers 200 with the stored message.
#[utoipa::path(
    post,
    path = "/v1/channels/{name}/messages",
    tag = "conversations",
    security(("api_key" = ["control"])),
    params(("name" = String, Path, description = "The channel")),
    request_body = InboundMessage,
    responses(
        (status = 201, description = "Stored", body = InboundAccepted),
        (status = 200, description = "Stored before (same id)", body = InboundAccepted),
        (status = 400, description = "Bad request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such channel", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "JSON of the wrong shape", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn post_message(
    _key: ControlKey,
    State(state): State<ApiState>,
    Path(name): Path<String>,
    ProblemJson(req): ProblemJson<InboundMessage>,
) -> Result<(StatusCode, Json<InboundAccepted>), ApiError> {
    let Some(channel) = state.store.get_channel(&name).await? else {
        return Err(ApiError::not_found(format!("channel {name:?} not found")));
    };
    if channel.kind == ChannelKind::Web {
        return Err(ApiError::bad_request(
            "the web channel takes messages from the chat widget only",
        ));
    }
    let got = state
        .chat
        .receive(Inbound {
            channel: channel.name,
            from: Sender {
                id: req.from.id,
                phone: req.from.phone,
                email: req.from.email,
                name: req.from.name,
                visitor: None,
            },
            text: req.text,
            external_id: Some(req.id),
            attachments: Vec::new(),
        })
        .await?;
    let status = if got.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(InboundAccepted {
            conversation_id: got.conversation_id.0,
            session_id: got.session_id.0,
            customer_id: got.customer_id.map(|c| c.0),
            message_id: got.message_id.0,
        }),
    ))
}
