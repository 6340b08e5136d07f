//! `/v1/conversations` (issue 12): conversations on every text channel with their messages;
//! replies from integrators (delivered to the widget or the gateway), closing.

use std::collections::HashMap;

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
    AttachmentId, AttachmentRecord, AuthorKind, ConversationFilter, ConversationId,
    ConversationRecord, ConversationState, CustomerId, MessageId, MessageRecord, SessionId,
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
    /// Files it carries.
    pub attachments: Vec<AttachmentView>,
    /// Written, delivered to the other side, read by it; Unix ms.
    pub created_ms: i64,
    pub delivered_ms: Option<i64>,
    pub read_ms: Option<i64>,
}

/// A file a message carries; its bytes are at
/// `/v1/conversations/{conversation_id}/attachments/{id}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AttachmentView {
    pub id: Uuid,
    pub name: String,
    pub content_type: String,
    pub size_bytes: i64,
}

impl From<&AttachmentRecord> for AttachmentView {
    fn from(a: &AttachmentRecord) -> AttachmentView {
        AttachmentView {
            id: a.id.0,
            name: a.name.clone(),
            content_type: a.content_type.clone(),
            size_bytes: a.size_bytes,
        }
    }
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
    /// Files uploaded into this conversation (`POST …/attachments`) that the reply carries;
    /// the text may then be empty.
    pub attachments: Option<Vec<Uuid>>,
}

/// This module's routes.
pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_conversations))
        .routes(routes!(get_conversation))
        .routes(routes!(post_reply))
        .routes(routes!(close_conversation))
        .routes(routes!(post_typing))
        .routes(routes!(call_customer))
        .routes(routes!(upload_attachment))
        .routes(routes!(get_attachment))
        .routes(routes!(post_read))
        .routes(routes!(accept_conversation))
        .routes(routes!(transfer_conversation))
}

/// What to do once the customer answers a "call me".
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallMe {
    /// Run this flow once answered.
    pub flow: Option<String>,
    /// Or: dial this extension once answered and bridge the two.
    pub connect_to: Option<String>,
    /// How long the customer's phone may ring, seconds (default 30).
    #[schema(minimum = 1, maximum = 300)]
    pub ring_timeout: Option<u64>,
}

/// The call placed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CallPlaced {
    pub call_id: Uuid,
    pub session_id: Uuid,
    /// The number called (E.164) and the trunk it left by.
    pub to: String,
    pub trunk: String,
}

/// Call the customer of a conversation back ("call me"), inside the same session.
///
/// The customer's phone (an identity of theirs, in E.164) is called by the `[[trunk]]` whose
/// prefix matches it; the call's `session_id` is the conversation's, so the timeline shows
/// the chat and the call together.
#[utoipa::path(
    post,
    path = "/v1/conversations/{id}/call",
    tag = "conversations",
    security(("api_key" = ["control"])),
    params(("id" = String, Path, description = "Conversation id")),
    request_body = CallMe,
    responses(
        (status = 201, description = "Placed; its progress is in its events", body = CallPlaced),
        (status = 400, description = "Bad request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such conversation", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "No phone number for the customer, or no trunk for it", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "JSON of the wrong shape", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The server is not ready to place calls", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn call_customer(
    _: ControlKey,
    State(s): State<ApiState>,
    Path(id): Path<String>,
    ProblemJson(req): ProblemJson<CallMe>,
) -> Result<(StatusCode, Json<CallPlaced>), ApiError> {
    let id = ConversationId(parse_uuid("id", &id)?);
    let ring = req.ring_timeout.unwrap_or(30);
    if !(1..=300).contains(&ring) {
        return Err(ApiError::bad_request(
            "ring_timeout must be 1 to 300 seconds",
        ));
    }
    let placed = call_me(&s, id, req.flow, req.connect_to, ring).await?;
    Ok((StatusCode::CREATED, Json(placed)))
}

/// Places a call to the phone of conversation `id`'s customer, in its session.
pub(super) async fn call_me(
    s: &ApiState,
    id: ConversationId,
    flow: Option<String>,
    connect_to: Option<String>,
    ring_timeout: u64,
) -> Result<CallPlaced, ApiError> {
    let Some(c) = s.store.get_conversation(id).await? else {
        return Err(ApiError::not_found("conversation not found"));
    };
    let phone = match c.customer_id {
        Some(customer) => s.store.get_customer(customer).await?.and_then(|cu| {
            cu.identities
                .into_iter()
                .find(|i| i.kind == crate::store::IdentityKind::Phone && i.value.starts_with('+'))
                .map(|i| i.value)
        }),
        None => None,
    };
    let Some(phone) = phone else {
        return Err(ApiError::conflict(
            "the customer has no phone number in E.164",
        ));
    };
    let Some(trunk) = crate::session::trunks::route(&s.trunks, &phone) else {
        return Err(ApiError::conflict(format!("no [[trunk]] carries {phone}")));
    };
    let call = s
        .calls
        .originate(crate::session::OriginateRequest {
            from: trunk.from.clone().unwrap_or_else(|| "switchboard".into()),
            to: trunk.uri(&phone),
            flow,
            connect_to,
            webhook: None,
            ring_timeout: std::time::Duration::from_secs(ring_timeout),
            caller_id: None,
            headers: Vec::new(),
            consult_for: None,
            session: Some(c.session_id),
            acd_contact: None,
        })
        .await?;
    tracing::info!(conversation = %id, %call, trunk = %trunk.name, "calling the customer back");
    Ok(CallPlaced {
        call_id: call.0,
        session_id: c.session_id.0,
        to: phone,
        trunk: trunk.name.clone(),
    })
}

/// A file's bytes.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct FileBody(#[allow(dead_code)] Vec<u8>);

/// The uploaded file's name.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// Shown to the customer (path and control characters removed); default `file`.
    pub name: Option<String>,
}

/// Upload a file into a conversation, for a reply to carry (`attachments` of
/// `POST …/messages`).
///
/// The body is the file itself. Its type is told by its content, not its name or
/// Content-Type: PNG, JPEG, GIF, WebP or PDF, up to `[chat] attachment_max_bytes`.
#[utoipa::path(
    post,
    path = "/v1/conversations/{id}/attachments",
    tag = "conversations",
    security(("api_key" = ["control"])),
    params(("id" = String, Path, description = "Conversation id"), UploadQuery),
    request_body(content = FileBody, content_type = "application/octet-stream"),
    responses(
        (status = 201, description = "Stored", body = AttachmentView),
        (status = 400, description = "Bad request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such conversation", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The conversation is closed", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The file is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not an image or PDF", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn upload_attachment(
    _: ControlKey,
    State(s): State<ApiState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<UploadQuery>,
    body: axum::body::Body,
) -> Result<(StatusCode, Json<AttachmentView>), ApiError> {
    let id = ConversationId(parse_uuid("id", &id)?);
    let Some(c) = s.store.get_conversation(id).await? else {
        return Err(ApiError::not_found("conversation not found"));
    };
    if c.state != ConversationState::Open {
        return Err(ApiError::conflict("the conversation is closed"));
    }
    let bytes = read_limited(body, s.chat.files().max_bytes()).await?;
    let name = q.name.unwrap_or_default();
    let a = s
        .chat
        .files()
        .save(&s.store, crate::chat::API_OWNER, Some(id), &name, &bytes)
        .await?;
    Ok((StatusCode::CREATED, Json(AttachmentView::from(&a))))
}

/// The body, at most `max` bytes (413 beyond).
pub(super) async fn read_limited(
    body: axum::body::Body,
    max: usize,
) -> Result<axum::body::Bytes, ApiError> {
    axum::body::to_bytes(body, max).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Payload Too Large",
            format!("the file is larger than {max} bytes"),
        )
    })
}

/// A file of a conversation.
#[utoipa::path(
    get,
    path = "/v1/conversations/{id}/attachments/{attachment_id}",
    tag = "conversations",
    security(("api_key" = ["read"])),
    params(
        ("id" = String, Path, description = "Conversation id"),
        ("attachment_id" = String, Path, description = "Attachment id"),
    ),
    responses(
        (status = 200, description = "The file", content(
            (FileBody = "image/png"), (FileBody = "image/jpeg"), (FileBody = "image/gif"),
            (FileBody = "image/webp"), (FileBody = "application/pdf"))),
        (status = 400, description = "Bad id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such file in this conversation", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_attachment(
    _: ReadKey,
    State(s): State<ApiState>,
    Path((id, attachment)): Path<(String, String)>,
) -> Result<axum::response::Response, ApiError> {
    let id = ConversationId(parse_uuid("id", &id)?);
    let attachment = AttachmentId(parse_uuid("attachment_id", &attachment)?);
    match s.store.get_attachment(attachment).await? {
        Some(a) if a.conversation_id == Some(id) => attachment_response(&s, &a).await,
        _ => Err(ApiError::not_found("attachment not found")),
    }
}

/// The file of `a`, served as its checked type, never rendered inline as a page.
pub(super) async fn attachment_response(
    s: &ApiState,
    a: &AttachmentRecord,
) -> Result<axum::response::Response, ApiError> {
    use axum::http::header;
    use axum::response::IntoResponse;
    let bytes = s.chat.files().read(a.id).await?;
    let disposition = format!(
        "{}; filename=\"{}\"",
        if a.content_type.starts_with("image/") {
            "inline"
        } else {
            "attachment"
        },
        a.name.replace(['"', '\\'], "_")
    );
    let mut resp = bytes.into_response();
    let h = resp.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, a.content_type.as_str()),
        (header::CONTENT_DISPOSITION, disposition.as_str()),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; sandbox",
        ),
    ] {
        if let Ok(v) = axum::http::HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    }
    Ok(resp)
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
    let attachments = attachments_by_message(&s, id).await?;
    let messages = s
        .store
        .messages_of(id)
        .await?
        .into_iter()
        .map(|m| message_view(m, &attachments))
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
    let files: Vec<AttachmentId> = req
        .attachments
        .unwrap_or_default()
        .into_iter()
        .map(AttachmentId)
        .collect();
    let m = s
        .chat
        .reply(id, AuthorKind::Agent, Some(author), &req.text, &files)
        .await?;
    let attachments = attachments_by_message(&s, id).await?;
    Ok((StatusCode::CREATED, Json(message_view(m, &attachments))))
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

/// The ACD chats are routed through: a 503 when there is none (`[chat] queue` unset).
fn routing(s: &ApiState) -> Result<&crate::acd::service::Acd, ApiError> {
    s.chat.acd().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable",
            "chats are not routed",
        )
    })
}

/// An agent takes a conversation.
#[derive(Debug, Clone, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptBody {
    pub agent_id: String,
}

/// The task the agent took.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Accepted {
    pub task_id: String,
    pub agent_id: String,
}

/// The agent accepts the conversation the ACD offered them (`task.offered`): it is theirs
/// (`task.accepted`, `chat.assigned`). An offer that was withdrawn or went to another agent
/// is a 409: a race is resolved one way.
#[utoipa::path(
    post,
    path = "/v1/conversations/{id}/accept",
    tag = "conversations",
    security(("api_key" = ["control"])),
    params(("id" = String, Path, description = "Conversation id")),
    request_body = AcceptBody,
    responses(
        (status = 200, description = "Taken", body = Accepted),
        (status = 400, description = "Bad id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not offered to that agent (now)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Chats are not routed (no `[chat] queue`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn accept_conversation(
    _: ControlKey,
    State(s): State<ApiState>,
    Path(id): Path<String>,
    super::ProblemJson(req): super::ProblemJson<AcceptBody>,
) -> Result<Json<Accepted>, ApiError> {
    let id = ConversationId(parse_uuid("id", &id)?);
    let acd = routing(&s)?;
    match acd.accept_chat(id, &req.agent_id).await {
        Ok(task_id) => {
            // Its events are in the log when the answer comes.
            s.store.flush().await?;
            Ok(Json(Accepted {
                task_id,
                agent_id: req.agent_id,
            }))
        }
        Err(e) => Err(ApiError::conflict(e.to_string())),
    }
}

/// Where to transfer a conversation: one of `agent_id` or `queue`.
#[derive(Debug, Clone, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferBody {
    pub agent_id: Option<String>,
    pub queue: Option<String>,
}

/// Transfer a conversation to an agent (it is theirs at once: `chat.assigned`) or to a queue
/// (offered again), in the same session; the agent who had it goes to wrap-up.
#[utoipa::path(
    post,
    path = "/v1/conversations/{id}/transfer",
    tag = "conversations",
    security(("api_key" = ["control"])),
    params(("id" = String, Path, description = "Conversation id")),
    request_body = TransferBody,
    responses(
        (status = 200, description = "Transferred: the new task", body = Accepted),
        (status = 400, description = "Bad id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The conversation is not routed by the ACD", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Neither or both of agent_id and queue, or no such agent or queue", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Chats are not routed (no `[chat] queue`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn transfer_conversation(
    _: ControlKey,
    State(s): State<ApiState>,
    Path(id): Path<String>,
    super::ProblemJson(req): super::ProblemJson<TransferBody>,
) -> Result<Json<Accepted>, ApiError> {
    use crate::acd::service::{AcdError, TransferTo};
    let id = ConversationId(parse_uuid("id", &id)?);
    let to = match (req.agent_id, req.queue) {
        (Some(agent), None) => TransferTo::Agent(agent),
        (None, Some(queue)) => TransferTo::Queue(queue),
        _ => {
            return Err(ApiError::unprocessable("exactly one of agent_id and queue"));
        }
    };
    let agent_id = match &to {
        TransferTo::Agent(a) => a.clone(),
        TransferTo::Queue(_) => String::new(),
    };
    let acd = routing(&s)?;
    match acd.transfer_chat(id, to).await {
        Ok(task_id) => {
            s.store.flush().await?;
            Ok(Json(Accepted { task_id, agent_id }))
        }
        Err(e @ (AcdError::NoAgent(_) | AcdError::NoQueue(_))) => {
            Err(ApiError::unprocessable(e.to_string()))
        }
        Err(e) => Err(ApiError::conflict(e.to_string())),
    }
}

impl From<ChatError> for ApiError {
    fn from(e: ChatError) -> ApiError {
        match e {
            ChatError::Invalid(why) => ApiError::bad_request(why),
            ChatError::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            ChatError::Conflict(why) => ApiError::conflict(why),
            ChatError::TooLarge(max) => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Payload Too Large",
                format!("the file is larger than {max} bytes"),
            ),
            ChatError::Unsupported => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Unsupported Media Type",
                "only images (PNG, JPEG, GIF, WebP) and PDF files are accepted",
            ),
            ChatError::Io(e) => ApiError::internal(e),
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

/// The attachments of conversation `id`'s messages, by message.
pub(super) async fn attachments_by_message(
    s: &ApiState,
    id: ConversationId,
) -> Result<HashMap<MessageId, Vec<AttachmentRecord>>, ApiError> {
    let mut map: HashMap<MessageId, Vec<AttachmentRecord>> = HashMap::new();
    for a in s.store.attachments_of_conversation(id).await? {
        if let Some(m) = a.message_id {
            map.entry(m).or_default().push(a);
        }
    }
    Ok(map)
}

pub(super) fn message_view(
    m: MessageRecord,
    attachments: &HashMap<MessageId, Vec<AttachmentRecord>>,
) -> MessageView {
    MessageView {
        attachments: attachments
            .get(&m.id)
            .map(|v| v.iter().map(AttachmentView::from).collect())
            .unwrap_or_default(),
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
