//! The web chat widget (issue 12), served by the binary with no CDN: the page `/chat`, the
//! embeddable `/widget.js` (one `<script>` tag on any allowed site: a launcher button and an
//! iframe of `/chat`), the visitor token (`POST /chat/visitor`) and the visitor's WebSocket
//! (`/chat/ws?token=…`).
//!
//! Only the server's own origin and `[chat] widget_origins` may embed the page (CSP
//! `frame-ancestors`) or open the WebSocket (its `Origin` is checked). A visitor is who their
//! signed token says ([`crate::chat::visitor`]); the page never names a customer.
//!
//! Files: `POST /chat/attachments?token=…&name=…` (the body; images and PDF, told by
//! content) gives an id a message frame may carry; `GET /chat/attachments/{id}?token=…`
//! serves only the visitor's own files and those of their conversations.
//!
//! WebSocket frames are JSON text. From the page:
//! `{"type":"message","client_id","text","attachments"?}`
//! (the `client_id`, a UUID the page made, makes a resend after a reconnect idempotent),
//! `{"type":"resume","after"?}` (history after a message id), `{"type":"typing"}`,
//! `{"type":"read","message_id"}`. From the server: `hello`, `message`, `ack` (`client_id` →
//! `id`), `read`, `typing`, `ended`, and `error` (`code`, `detail`) for a bad frame, which is
//! refused without closing the socket.

use std::num::NonZeroU32;
use std::time::Duration;

use axum::Json;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use governor::{Quota, RateLimiter};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::{ApiError, ApiState, ProblemJson};
use crate::chat::hub::RoomEvent;
use crate::chat::visitor::Visitor;
use crate::chat::{ChatError, ChatService, Inbound, Sender};
use crate::store::{AuthorKind, ConversationId, ConversationState, MessageId, MessageRecord};

const PAGE: &str = include_str!("../../web/chat.html");
const PAGE_JS: &str = include_str!("../../web/chat.js");
const PAGE_CSS: &str = include_str!("../../web/chat.css");
const WIDGET_JS: &str = include_str!("../../web/widget.js");

/// Largest frame the page may send.
/// Largest body of a widget request (the pre-chat form).
pub const MAX_BODY: usize = 16 * 1024;
const MAX_FRAME: usize = 16 * 1024;
/// Bad frames tolerated before the socket is closed.
const MAX_BAD_FRAMES: u32 = 20;
/// How long a send to the page may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// The web channel's name.
const WEB: &str = "web";

/// The widget's routes (no API key: visitors are anonymous).
pub fn routes() -> axum::Router<ApiState> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/chat", get(page))
        .route("/chat/chat.js", get(page_js))
        .route("/chat/chat.css", get(page_css))
        .route("/widget.js", get(widget_js))
        .route("/chat/visitor", post(new_visitor))
        .route("/chat/ws", get(socket))
        .route("/chat/attachments", post(upload))
        .route("/chat/attachments/{id}", get(download))
}

#[derive(Debug, Deserialize)]
struct UploadQuery {
    token: Option<String>,
    name: Option<String>,
}

/// The visitor of a request's `token`, or 401.
fn visitor_of(s: &ApiState, token: Option<&str>) -> Result<Visitor, ApiError> {
    let Some(key) = &s.chat.settings().token_key else {
        return Err(ApiError::internal("no visitor token key"));
    };
    let token = token.ok_or_else(|| ApiError::unauthorized("a visitor token is required"))?;
    key.verify(token, crate::clock::unix_ms())
        .map_err(|e| ApiError::unauthorized(e.to_string()))
}

/// A visitor uploads a file (the body; type told by content), to send in a message.
async fn upload(
    State(s): State<ApiState>,
    headers: HeaderMap,
    Query(q): Query<UploadQuery>,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    if !origin_allowed(&s.chat, &headers) {
        return Err(ApiError::forbidden("this site may not use the chat"));
    }
    let visitor = visitor_of(&s, q.token.as_deref())?;
    let bytes = super::conversations::read_limited(body, s.chat.files().max_bytes()).await?;
    let conversation = s
        .chat
        .store()
        .open_conversation_with(WEB, &visitor.id)
        .await?
        .map(|c| c.id);
    let a = s
        .chat
        .files()
        .save(
            &s.store,
            &visitor.id,
            conversation,
            q.name.as_deref().unwrap_or_default(),
            &bytes,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"id": a.id.to_string(), "name": a.name, "content_type": a.content_type,
                    "size_bytes": a.size_bytes}),
        ),
    )
        .into_response())
}

/// A file of the visitor's own conversations (or their own upload); anything else is 404.
async fn download(
    State(s): State<ApiState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    Query(q): Query<UploadQuery>,
) -> Result<Response, ApiError> {
    let visitor = visitor_of(&s, q.token.as_deref())?;
    let id: crate::store::AttachmentId = id
        .parse()
        .map_err(|_| ApiError::not_found("attachment not found"))?;
    let Some(a) = s.store.get_attachment(id).await? else {
        return Err(ApiError::not_found("attachment not found"));
    };
    let mine = a.owner == visitor.id
        || match a.conversation_id {
            Some(c) => s
                .store
                .get_conversation(c)
                .await?
                .is_some_and(|c| c.channel == WEB && c.contact == visitor.id),
            None => false,
        };
    if !mine {
        return Err(ApiError::not_found("attachment not found"));
    }
    super::conversations::attachment_response(&s, &a).await
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

async fn page(State(s): State<ApiState>) -> Response {
    let settings = s.chat.settings();
    let fields = settings.prechat_fields.join(",");
    let html = PAGE.replace("{{PRECHAT}}", &fields);
    let mut ancestors = String::from("'self'");
    for o in &settings.widget_origins {
        ancestors.push(' ');
        ancestors.push_str(o);
    }
    let csp = format!(
        "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; \
         style-src 'self'; script-src 'self'; frame-ancestors {ancestors}"
    );
    let mut resp = (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        html,
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&csp) {
        resp.headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, v);
    }
    resp
}

async fn page_js() -> Response {
    asset("text/javascript; charset=utf-8", PAGE_JS)
}

async fn page_css() -> Response {
    asset("text/css; charset=utf-8", PAGE_CSS)
}

async fn widget_js() -> Response {
    asset("text/javascript; charset=utf-8", WIDGET_JS)
}

/// Whether a request from a page at `Origin` may use the chat: the server's own origin (the
/// `Host` it was asked by) or an allowed embedding site. No `Origin`: not a browser page.
fn origin_allowed(chat: &ChatService, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let own = origin
        .split_once("://")
        .is_some_and(|(scheme, rest)| matches!(scheme, "http" | "https") && rest == host);
    own || chat.settings().widget_origins.iter().any(|o| o == origin)
}

/// The pre-chat form's answers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewVisitor {
    name: Option<String>,
    phone: Option<String>,
    email: Option<String>,
}

/// Gives the page a visitor token (a new anonymous visitor, with the form's answers).
async fn new_visitor(
    State(s): State<ApiState>,
    headers: HeaderMap,
    ProblemJson(form): ProblemJson<NewVisitor>,
) -> Result<Response, ApiError> {
    if !origin_allowed(&s.chat, &headers) {
        return Err(ApiError::forbidden("this site may not use the chat"));
    }
    let clean = |v: Option<String>, what: &str| -> Result<Option<String>, ApiError> {
        match v.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) {
            Some(v) if v.len() > 200 => Err(ApiError::bad_request(format!(
                "{what} is longer than 200 bytes"
            ))),
            other => Ok(other),
        }
    };
    let name = clean(form.name, "name")?;
    let phone = clean(form.phone, "phone")?;
    let email = clean(form.email, "email")?;
    if let Some(p) = &phone
        && s.chat.settings().phones.normalise(p).is_none()
    {
        return Err(ApiError::bad_request("phone has no digits"));
    }
    if email.as_ref().is_some_and(|e| !e.contains('@')) {
        return Err(ApiError::bad_request("email is not an email address"));
    }
    let Some(key) = &s.chat.settings().token_key else {
        return Err(ApiError::internal("no visitor token key"));
    };
    let visitor = Visitor {
        id: format!("v-{}", uuid::Uuid::now_v7().simple()),
        name,
        phone,
        email,
        expires_ms: crate::clock::unix_ms() + s.chat.settings().token_ttl_ms,
    };
    let token = key.sign(&visitor);
    Ok((
        StatusCode::CREATED,
        Json(json!({"token": token, "visitor_id": visitor.id, "expires_ms": visitor.expires_ms})),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
struct SocketQuery {
    token: Option<String>,
}

/// The visitor's WebSocket.
async fn socket(
    State(s): State<ApiState>,
    headers: HeaderMap,
    Query(q): Query<SocketQuery>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    if !origin_allowed(&s.chat, &headers) {
        return Err(ApiError::forbidden("this site may not use the chat"));
    }
    let Some(key) = &s.chat.settings().token_key else {
        return Err(ApiError::internal("no visitor token key"));
    };
    let token = q
        .token
        .ok_or_else(|| ApiError::unauthorized("a visitor token is required"))?;
    let visitor = key
        .verify(&token, crate::clock::unix_ms())
        .map_err(|e| ApiError::unauthorized(e.to_string()))?;
    let upgrade = upgrade.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let chat = s.chat.clone();
    let api = s.clone();
    let conversation = chat
        .store()
        .open_conversation_with(WEB, &visitor.id)
        .await?
        .map(|c| c.id);
    tracing::debug!(visitor = %visitor.id, "chat visitor connected");
    // Listen before the upgrade completes: nothing committed from here on is missed.
    let room = conversation.map(|c| chat.listen(c));
    Ok(upgrade
        .max_message_size(MAX_FRAME)
        // An idle widget costs little: small buffers (frames are small JSON).
        .read_buffer_size(4 * 1024)
        .write_buffer_size(4 * 1024)
        .on_upgrade(move |ws| async move {
            let per_minute =
                NonZeroU32::new(chat.settings().messages_per_minute).unwrap_or(NonZeroU32::MIN);
            let call_me = chat.settings().call_me_flow.is_some()
                || chat.settings().call_me_connect_to.is_some();
            let mut v = VisitorSocket {
                ws,
                api,
                call_me,
                chat,
                visitor,
                conversation,
                room,
                sent_own: std::collections::VecDeque::new(),
                limiter: RateLimiter::direct(Quota::per_minute(per_minute)),
                bad: 0,
            };
            v.run().await;
        })
        .into_response())
}

struct VisitorSocket {
    ws: WebSocket,
    /// The API's state, for placing a "call me".
    api: ApiState,
    /// "Call me" is configured.
    call_me: bool,
    chat: ChatService,
    visitor: Visitor,
    /// The visitor's open conversation, once there is one.
    conversation: Option<ConversationId>,
    /// What happens in it (its committed events, typing).
    room: Option<tokio::sync::broadcast::Receiver<RoomEvent>>,
    /// The messages this socket sent the page itself after their ack (their events are not
    /// sent again).
    sent_own: std::collections::VecDeque<String>,
    limiter: RateLimiter<
        governor::state::NotKeyed,
        governor::state::InMemoryState,
        governor::clock::DefaultClock,
    >,
    bad: u32,
}

/// A frame from the page.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum FromPage {
    Message {
        client_id: String,
        #[serde(default)]
        text: String,
        #[serde(default)]
        attachments: Vec<String>,
    },
    Resume {
        after: Option<String>,
    },
    Typing {},
    CallMe {},
    Read {
        message_id: String,
    },
}

impl VisitorSocket {
    async fn run(&mut self) {
        let hello = json!({
            "type": "hello",
            "visitor_id": self.visitor.id,
            "name": self.visitor.name,
            "conversation_id": self.conversation.map(|c| c.to_string()),
            "call_me": self.call_me && self.visitor.phone.is_some(),
        });
        if self.send(&hello).await.is_err() {
            return;
        }
        let mut ping = tokio::time::interval(Duration::from_secs(25));
        ping.tick().await;
        loop {
            tokio::select! {
                frame = self.ws.recv() => match frame {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                    Some(Ok(Message::Text(text))) => {
                        if self.on_frame(text.as_str()).await.is_err() {
                            return;
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        if self.error("bad_frame", "frames are JSON text").await.is_err() {
                            return;
                        }
                    }
                    Some(Ok(_)) => {}
                },
                e = next_in(&mut self.room) => match e {
                    Ok(RoomEvent::Event(e)) => {
                        if self.on_event(&e).await.is_err() {
                            return;
                        }
                    }
                    Ok(RoomEvent::Typing(t)) => {
                        if t.by != AuthorKind::Customer
                            && self.send(&json!({"type": "typing", "by": t.by, "name": t.name})).await.is_err()
                        {
                            return;
                        }
                    }
                    Ok(RoomEvent::Resync) | Err(RecvError::Lagged(_)) => {
                        // Missed events: the page asks for what it lacks with `resume`.
                        if self.send(&json!({"type": "resync"})).await.is_err() {
                            return;
                        }
                    }
                    Err(RecvError::Closed) => self.room = None,
                },
                _ = ping.tick() => {
                    if self.ws.send(Message::Ping(Default::default())).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    async fn on_frame(&mut self, text: &str) -> Result<(), ()> {
        let frame: FromPage = match serde_json::from_str(text) {
            Ok(f) => f,
            Err(e) => return self.error("bad_frame", &e.to_string()).await,
        };
        match frame {
            FromPage::Message {
                client_id,
                text,
                attachments,
            } => {
                if client_id.is_empty() || client_id.len() > 64 {
                    return self
                        .error("bad_frame", "client_id must be 1-64 bytes")
                        .await;
                }
                let Ok(attachments) = attachments
                    .iter()
                    .map(|a| a.parse())
                    .collect::<Result<Vec<crate::store::AttachmentId>, _>>()
                else {
                    return self.error("bad_frame", "unknown attachment").await;
                };
                if self.limiter.check().is_err() {
                    return self
                        .error("rate_limited", "too many messages: wait a moment")
                        .await;
                }
                let got = self
                    .chat
                    .receive(Inbound {
                        channel: WEB.into(),
                        from: Sender {
                            id: None,
                            phone: self.visitor.phone.clone(),
                            email: self.visitor.email.clone(),
                            name: self.visitor.name.clone(),
                            visitor: Some(self.visitor.id.clone()),
                        },
                        text,
                        external_id: Some(format!("{}:{client_id}", self.visitor.id)),
                        attachments,
                    })
                    .await;
                match got {
                    Ok(r) => {
                        if self.conversation != Some(r.conversation_id) {
                            // A new conversation: listen from its first message on (that one
                            // is sent below, its event may have passed already).
                            self.conversation = Some(r.conversation_id);
                            self.room = Some(self.chat.listen(r.conversation_id));
                        }
                        self.send(&json!({
                            "type": "ack",
                            "client_id": client_id,
                            "id": r.message_id.to_string(),
                            "conversation_id": r.conversation_id.to_string(),
                        }))
                        .await?;
                        // The message as stored (masked), at once; its event is not sent again.
                        if self.sent_own.len() >= 64 {
                            self.sent_own.pop_front();
                        }
                        self.sent_own.push_back(r.message_id.to_string());
                        self.send(&json!({
                            "type": "message",
                            "id": r.message_id.to_string(),
                            "conversation_id": r.conversation_id.to_string(),
                            "author": {"kind": AuthorKind::Customer, "name": self.visitor.name},
                            "text": r.text,
                            "attachments": r.attachments,
                            "created_ms": r.created_ms,
                            "client_id": client_id,
                        }))
                        .await
                    }
                    Err(ChatError::Invalid(why)) => self.error("invalid", &why).await,
                    Err(e) => {
                        tracing::warn!(error = %e, "chat message not stored");
                        self.error("not_stored", "the message was not stored: send it again")
                            .await
                    }
                }
            }
            FromPage::Resume { after } => self.resume(after.as_deref()).await,
            FromPage::CallMe {} => {
                let Some(c) = self.conversation.filter(|_| self.call_me) else {
                    return self
                        .error("call_me", "write a message first: then we can call you")
                        .await;
                };
                let settings = self.chat.settings();
                let (flow, connect_to) = (
                    settings.call_me_flow.clone(),
                    settings.call_me_connect_to.clone(),
                );
                match super::conversations::call_me(&self.api, c, flow, connect_to, 30).await {
                    Ok(placed) => {
                        self.send(&json!({"type": "calling", "to": placed.to}))
                            .await
                    }
                    Err(e) => self.error("call_me", &e.detail).await,
                }
            }
            FromPage::Typing {} => {
                if let Some(c) = self.conversation {
                    self.chat
                        .typing(c, AuthorKind::Customer, self.visitor.name.clone());
                }
                Ok(())
            }
            FromPage::Read { message_id } => {
                let (Some(c), Ok(id)) = (self.conversation, message_id.parse::<MessageId>()) else {
                    return self.error("bad_frame", "unknown message").await;
                };
                match self.chat.read(c, id, true).await {
                    Ok(()) => Ok(()),
                    Err(ChatError::NotFound(_)) => self.error("bad_frame", "unknown message").await,
                    Err(e) => {
                        tracing::warn!(error = %e, "chat read state not stored");
                        Ok(())
                    }
                }
            }
        }
    }

    /// Sends the visitor's conversation after message `after` (all of it without).
    async fn resume(&mut self, after: Option<&str>) -> Result<(), ()> {
        let Some(c) = self.conversation else {
            return Ok(());
        };
        let messages = match self.chat.store().messages_of(c).await {
            Ok(m) => m,
            Err(error) => {
                tracing::warn!(%error, "chat history not read");
                return self
                    .error("not_read", "history unavailable: resume again")
                    .await;
            }
        };
        let start = after
            .and_then(|a| messages.iter().position(|m| m.id.to_string() == a))
            .map_or(0, |i| i + 1);
        let files = self
            .chat
            .store()
            .attachments_of_conversation(c)
            .await
            .unwrap_or_default();
        for m in &messages[start..] {
            let mine: Vec<_> = files
                .iter()
                .filter(|a| a.message_id == Some(m.id))
                .map(crate::event::AttachmentRef::from)
                .collect();
            let frame = message_frame(m, &self.visitor.id, &mine);
            self.send(&frame).await?;
        }
        let state = self
            .chat
            .store()
            .get_conversation(c)
            .await
            .ok()
            .flatten()
            .map(|c| c.state);
        if state == Some(ConversationState::Closed) {
            self.send(&json!({"type": "ended", "conversation_id": c.to_string()}))
                .await?;
        }
        Ok(())
    }

    /// Passes on what happened in the visitor's conversation (the hub routes only its
    /// events here).
    async fn on_event(&mut self, e: &crate::store::EventRecord) -> Result<(), ()> {
        let Some(c) = self.conversation else {
            return Ok(());
        };
        match e.kind.as_str() {
            "chat.message" => {
                let d = &e.data;
                if let Some(id) = d.get("message_id").and_then(Value::as_str)
                    && let Some(i) = self.sent_own.iter().position(|own| own == id)
                {
                    self.sent_own.remove(i);
                    return Ok(());
                }
                self.send(&json!({
                    "type": "message",
                    "id": d["message_id"],
                    "conversation_id": d["conversation_id"],
                    "author": d["author"],
                    "text": d["text"],
                    "attachments": d.get("attachments").cloned().unwrap_or_else(|| json!([])),
                    "created_ms": e.at_ms,
                }))
                .await
            }
            "chat.read" if e.data["by"] == "agent" => {
                self.send(&json!({"type": "read", "message_id": e.data["message_id"]}))
                    .await
            }
            "chat.ended" => {
                self.conversation = None;
                self.room = None;
                self.send(&json!({"type": "ended", "conversation_id": c.to_string()}))
                    .await
            }
            _ => Ok(()),
        }
    }

    async fn error(&mut self, code: &str, detail: &str) -> Result<(), ()> {
        self.bad += 1;
        self.send(&json!({"type": "error", "code": code, "detail": detail}))
            .await?;
        if self.bad > MAX_BAD_FRAMES {
            return Err(());
        }
        Ok(())
    }

    async fn send(&mut self, frame: &Value) -> Result<(), ()> {
        let text = frame.to_string();
        match tokio::time::timeout(SEND_TIMEOUT, self.ws.send(Message::Text(text.into()))).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(()),
        }
    }
}

/// The next event of `room`, or never without one.
async fn next_in(
    room: &mut Option<tokio::sync::broadcast::Receiver<RoomEvent>>,
) -> Result<RoomEvent, RecvError> {
    match room {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// A stored message as the page sees it (with the page's own `client_id` for its messages).
fn message_frame(
    m: &MessageRecord,
    visitor: &str,
    attachments: &[crate::event::AttachmentRef],
) -> Value {
    let client_id = m
        .external_id
        .as_deref()
        .and_then(|x| x.strip_prefix(visitor))
        .and_then(|x| x.strip_prefix(':'));
    json!({
        "type": "message",
        "id": m.id.to_string(),
        "conversation_id": m.conversation_id.to_string(),
        "author": {"kind": m.author, "name": m.author_name},
        "text": m.text,
        "attachments": attachments,
        "created_ms": m.created_ms,
        "client_id": client_id,
        "read": m.read_ms.is_some(),
    })
}
