//! `/v1/conversations` (issue 12): conversations on every text channel with their messages;
//! replies from integrators (delivered to the widget or the gateway), closing.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::{ControlKey, ReadKey};
use super::records::parse_uuid;
use super::{ApiError, ApiQuery, ApiState, Problem, ProblemJson};
use crate::chat::ChatError;
use crate::store::{
    AuthorKind, ConversationFilter, ConversationId, ConversationRecord, ConversationState,
    CustomerId, MessageId, MessageRecord, SessionId,
};

/// Most conversations one list returns.
const MAX_LIST: u32 = 500;

/// A conversation (without its messages).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConversationView {
    pub id: Uuid,
    pub session_id: Uuid,
    pub customer_id: Option<Uuid>,
    pub channel: String,
    /// The customer's address on the channel (gateway user id, phone, visitor id).
    pub contact: String,
    pub state: ConversationState,
    /// Start and end, Unix ms.
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
}

/// Who wrote a message.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuthorView {
    pub kind: AuthorKind,
    pub name: Option<String>,
}

/// One message.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MessageView {
    pub id: Uuid,
    pub author: AuthorView,
    /// The text as stored (card numbers masked).
    pub text: String,
    /// The gateway's id for it, for a message that came from one.
    pub external_id: Option<String>,
    /// Written, delivered to the other side, read by it; Unix ms.
    pub created_ms: i64,
    pub delivered_ms: Option<i64>,
    pub read_ms: Option<i64>,
}

/// A conversation with its messages, oldest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConversationDetail {
    #[serde(flatten)]
    pub conversation: ConversationView,
    pub messages: Vec<MessageView>,
}

/// Conversations found, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConversationList {
    pub items: Vec<ConversationView>,
}

/// Filters (all optional, combined).
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConversationQuery {
    pub session_id: Option<String>,
    pub customer_id: Option<String>,
    pub channel: Option<String>,
    /// `open` or `closed`.
    pub state: Option<String>,
    /// At most this many (1-500, default 100).
    pub limit: Option<u32>,
}

/// A reply to write.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReply {
    /// 1-4096 bytes; card numbers are masked before it is stored.
    pub text: String,
    /// Shown as the author's name; defaults to the API key's name.
    pub author: Option<String>,
}

/// This module's routes.
pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_conversations))
        .routes(routes!(get_conversation))
        .routes(routes!(post_reply))
        .routes(routes!(close_conversation))
        .routes(routes!(post_typing))
        .routes(routes!(post_read))
}

/// Messages read up to one.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadUpTo {
    /// The newest message read; the customer's messages up to it are marked read.
    pub message_id: Uuid,
}

/// Show the customer that an agent is typing (the widget shows it for a few seconds).
#[utoipa::path(
    post,
    path = "/v1/conversations/{id}/typing",
    tag = "conversations",
    security(("api_key" = ["control"])),
    params(("id" = String, Path, description = "Conversation id")),
    responses(
        (status = 204, description = "Sent to the widget"),
        (status = 400, description = "Bad id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such conversation", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn post_typing(
    key: ControlKey,
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = ConversationId(parse_uuid("id", &id)?);
    if s.store.get_conversation(id).await?.is_none() {
        return Err(ApiError::not_found("conversation not found"));
    }
    s.chat
        .typing(id, AuthorKind::Agent, Some(key.0.key.name.clone()));
    Ok(StatusCode::NO_CONTENT)
}

/// Mark the customer's messages read up to one (`chat.read`; the widget shows it).
#[utoipa::path(
    post,
    path = "/v1/conversations/{id}/read",
    tag = "conversations",
    security(("api_key" = ["control"])),
    params(("id" = String, Path, description = "Conversation id")),
    request_body = ReadUpTo,
    responses(
        (status = 204, description = "Marked"),
        (status = 400, description = "Bad request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such conversation or message", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "JSON of the wrong shape", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn post_read(
    _: ControlKey,
    State(s): State<ApiState>,
    Path(id): Path<String>,
    ProblemJson(req): ProblemJson<ReadUpTo>,
) -> Result<StatusCode, ApiError> {
    let id = ConversationId(parse_uuid("id", &id)?);
    s.chat.read(id, MessageId(req.message_id), false).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Conversations, newest first.
#[utoipa::path(
    get,
    path = "/v1/conversations",
    tag = "conversations",
    security(("api_key" = ["read"])),
    params(ConversationQuery),
    responses(
        (status = 200, description = "The conversations", body = ConversationList),
        (status = 400, description = "Bad filter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_conversations(
    _: ReadKey,
    State(s): State<ApiState>,
    ApiQuery(q): ApiQuery<ConversationQuery>,
) -> Result<Json<ConversationList>, ApiError> {
    let state = match q.state.as_deref() {
        None => None,
        Some(st) => Some(
            ConversationState::parse(st)
                .ok_or_else(|| ApiError::bad_request("state must be open or closed"))?,
        ),
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be 1 to {MAX_LIST}"
        )));
    }
    let filter = ConversationFilter {
        session_id: q
            .session_id
            .as_deref()
            .map(|v| parse_uuid("session_id", v).map(SessionId))
            .transpose()?,
        customer_id: q
            .customer_id
            .as_deref()
            .map(|v| parse_uuid("customer_id", v).map(CustomerId))
            .transpose()?,
        channel: q.channel,
        state,
        limit,
    };
    let items = s
        .store
        .list_conversations(&filter)
        .await?
        .into_iter()
        .map(view)
        .collect();
    Ok(Json(ConversationList { items }))
}

/// A conversation with its messages.
#[utoipa::path(
    get,
    path = "/v1/conversations/{id}",
    tag = "conversations",
    security(("api_key" = ["read"])),
    params(("id" = String, Path, description = "Conversation id")),
    responses(
        (status = 200, description = "The conversation", body = ConversationDetail),
        (status = 400, description = "Bad id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such conversation", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_conversation(
    _: ReadKey,
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<ConversationDetail>, ApiError> {
    let id = ConversationId(parse_uuid("id", &id)?);
    let Some(c) = s.store.get_conversation(id).await? else {
        return Err(ApiError::not_found("conversation not found"));
    };
    let messages = s
        .store
        .messages_of(id)
        .await?
        .into_iter()
        .map(message_view)
        .collect();
    Ok(Json(ConversationDetail {
        conversation: view(c),
        messages,
    }))
}

/// Write a reply to a conversation.
///
/// It is delivered to the customer: over the widget's WebSocket for the web channel, to the
/// channel's webhook for a gateway (in order, retried). `chat.message` is published.
#[utoipa::path(
    post,
    path = "/v1/conversations/{id}/messages",
    tag = "conversations",
    security(("api_key" = ["control"])),
    params(("id" = String, Path, description = "Conversation id")),
    request_body = NewReply,
    responses(
        (status = 201, description = "Stored", body = MessageView),
        (status = 400, description = "Bad request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such conversation", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The conversation is closed", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "JSON of the wrong shape", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn post_reply(
    key: ControlKey,
    State(s): State<ApiState>,
    Path(id): Path<String>,
    ProblemJson(req): ProblemJson<NewReply>,
) -> Result<(StatusCode, Json<MessageView>), ApiError> {
    let id = ConversationId(parse_uuid("id", &id)?);
    let author = req.author.unwrap_or_else(|| key.0.key.name.clone());
    if author.is_empty() || author.len() > 100 {
        return Err(ApiError::bad_request("author must be 1 to 100 bytes"));
    }
    let m = s
        .chat
        .reply(id, AuthorKind::Agent, Some(author), &req.text)
        .await?;
    Ok((StatusCode::CREATED, Json(message_view(m))))
}

/// Close a conversation (`chat.ended`).
#[utoipa::path(
    post,
    path = "/v1/conversations/{id}/close",
    tag = "conversations",
    security(("api_key" = ["control"])),
    params(("id" = String, Path, description = "Conversation id")),
    responses(
        (status = 204, description = "Closed"),
        (status = 400, description = "Bad id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such conversation", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already closed", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn close_conversation(
    _: ControlKey,
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = ConversationId(parse_uuid("id", &id)?);
    s.chat.close(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

impl From<ChatError> for ApiError {
    fn from(e: ChatError) -> ApiError {
        match e {
            ChatError::Invalid(why) => ApiError::bad_request(why),
            ChatError::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            ChatError::Conflict(why) => ApiError::conflict(why),
            ChatError::Store(e) => e.into(),
        }
    }
}

pub(super) fn view(c: ConversationRecord) -> ConversationView {
    ConversationView {
        id: c.id.0,
        session_id: c.session_id.0,
        customer_id: c.customer_id.map(|c| c.0),
        channel: c.channel,
        contact: c.contact,
        state: c.state,
        started_ms: c.started_ms,
        ended_ms: c.ended_ms,
    }
}

pub(super) fn message_view(m: MessageRecord) -> MessageView {
    MessageView {
        id: m.id.0,
        author: AuthorView {
            kind: m.author,
            name: m.author_name,
        },
        text: m.text,
        external_id: m.external_id,
        created_ms: m.created_ms,
        delivered_ms: m.delivered_ms,
        read_ms: m.read_ms,
    }
}
