//! `/v1/sessions` (issue 5): a session with its timeline (its calls with their legs, its
//! recordings, its attributes and its events in log order), and setting its attributes.
//!
//! Attributes set here go through the store's writer task like those the IVR sets
//! (`StoreCmd::SessionAttribute`, last value wins), each with a `session.attribute` event.

use crate::session::service::{SessionService, SetBy};
use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::{ControlKey, ReadKey};
use super::recordings::RecordingView;
use super::records::{CallRecordDetail, call_detail, parse_uuid};
use super::{ApiError, ApiState, Problem, ProblemJson};
use crate::store::{SessionId, SessionRecord};

/// Most events a timeline holds (the oldest first).
pub const MAX_TIMELINE_EVENTS: u32 = 1000;
/// Most attributes one request may set.
pub const MAX_ATTRIBUTES_PER_REQUEST: usize = 100;
/// Longest attribute name, bytes.
pub const MAX_ATTRIBUTE_NAME: usize = 64;
/// Longest attribute value, bytes.
pub const MAX_ATTRIBUTE_VALUE: usize = 4096;

/// Session attributes: name → value.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct Attributes(pub BTreeMap<String, String>);

/// A session and everything that happened in it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SessionTimeline {
    pub id: Uuid,
    /// The customer, when the session's first contact identified one.
    pub customer_id: Option<Uuid>,
    /// `voice`, `chat`, …
    pub channel: String,
    /// Start, Unix ms.
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
    pub attributes: Attributes,
    /// Its calls with their legs, oldest first.
    pub calls: Vec<CallRecordDetail>,
    /// Its recordings, oldest first.
    pub recordings: Vec<RecordingView>,
    /// Its events in log order (at most 1000), as the event stream sends them.
    pub events: Vec<super::events::Event>,
    /// Its conversations on text channels, oldest first (messages in the timeline).
    pub conversations: Vec<super::conversations::ConversationView>,
    /// Everything above in one time order: calls, conversations and their messages, IVR
    /// inputs and API attributes, recordings.
    pub timeline: Vec<super::timeline::TimelineEntry>,
}

/// A session in a list (without its timeline).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SessionSummary {
    pub id: Uuid,
    pub customer_id: Option<Uuid>,
    pub channel: String,
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
}

impl From<&SessionRecord> for SessionSummary {
    fn from(s: &SessionRecord) -> SessionSummary {
        SessionSummary {
            id: s.id.0,
            customer_id: s.customer_id.map(|c| c.0),
            channel: s.channel.clone(),
            started_ms: s.started_ms,
            ended_ms: s.ended_ms,
        }
    }
}

/// This module's routes.
pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(get_session))
        .routes(routes!(put_attributes))
}

/// A session with its timeline: calls (with legs), recordings, attributes and events.
#[utoipa::path(
    get,
    path = "/v1/sessions/{id}",
    tag = "sessions",
    security(("api_key" = ["read"])),
    params(("id" = Uuid, Path, description = "Session id")),
    responses(
        (status = 200, description = "The session and its timeline", body = SessionTimeline),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_session(
    _: ReadKey,
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<SessionTimeline>, ApiError> {
    let session = find(&s, &id).await?;
    let store = &s.store;
    let records = store.calls_for_session(session.id).await?;
    let mut calls = Vec::new();
    for call in &records {
        calls.push(call_detail(&s, call).await?);
    }
    let recordings = store.recordings_for_session(session.id).await?;
    let events = store
        .events_for_session(session.id, MAX_TIMELINE_EVENTS)
        .await?;
    let conversations = super::timeline::session_conversations(&s, session.id).await?;
    let timeline = super::timeline::session_timeline(
        &s,
        session.id,
        (&records, &recordings),
        &events,
        &conversations,
    )
    .await?;
    let conversations = conversations
        .into_iter()
        .map(super::conversations::view)
        .collect();
    Ok(Json(SessionTimeline {
        id: session.id.0,
        customer_id: session.customer_id.map(|c| c.0),
        channel: session.channel.clone(),
        started_ms: session.started_ms,
        ended_ms: session.ended_ms,
        attributes: attributes(&s, session.id).await?,
        calls,
        recordings: recordings.iter().map(RecordingView::from).collect(),
        events: events.into_iter().map(super::events::Event::from).collect(),
        conversations,
        timeline,
    }))
}

/// Set session attributes (`{"name": "value", …}`; existing names are replaced, others kept).
/// Each becomes a `session.attribute` event. Returns all the session's attributes.
#[utoipa::path(
    put,
    path = "/v1/sessions/{id}/attributes",
    tag = "sessions",
    security(("api_key" = ["control"])),
    params(("id" = Uuid, Path, description = "Session id")),
    request_body(content = Attributes, description = "Names (1–64 of `A-Z a-z 0-9 _ . -`) to values (at most 4096 bytes); at most 100"),
    responses(
        (status = 200, description = "The session's attributes", body = Attributes),
        (status = 400, description = "Bad id, body, name or value", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn put_attributes(
    ControlKey(caller): ControlKey,
    State(s): State<ApiState>,
    Path(id): Path<String>,
    ProblemJson(body): ProblemJson<Attributes>,
) -> Result<Json<Attributes>, ApiError> {
    let id = SessionId(parse_uuid("session id", &id)?);
    if body.0.len() > MAX_ATTRIBUTES_PER_REQUEST {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_ATTRIBUTES_PER_REQUEST} attributes per request"
        )));
    }
    for (name, value) in &body.0 {
        check_attribute(name, value)?;
    }
    let session = s
        .store
        .get_session(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("session {id} not found")))?;
    let sessions = SessionService::new(s.store.writer());
    for (name, value) in body.0 {
        let by = SetBy::Api {
            key: caller.key.name.clone(),
        };
        sessions.set_attribute(session.id, by, &name, &value, crate::clock::unix_ms());
    }
    s.store.flush().await?;
    Ok(Json(attributes(&s, session.id).await?))
}

fn check_attribute(name: &str, value: &str) -> Result<(), ApiError> {
    let name_ok = !name.is_empty()
        && name.len() <= MAX_ATTRIBUTE_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !name_ok {
        return Err(ApiError::bad_request(format!(
            "attribute name {name:?}: 1-{MAX_ATTRIBUTE_NAME} of A-Z a-z 0-9 _ . -"
        )));
    }
    if value.len() > MAX_ATTRIBUTE_VALUE {
        return Err(ApiError::bad_request(format!(
            "attribute {name}: value longer than {MAX_ATTRIBUTE_VALUE} bytes"
        )));
    }
    Ok(())
}

async fn find(s: &ApiState, id: &str) -> Result<SessionRecord, ApiError> {
    let id = SessionId(parse_uuid("session id", id)?);
    s.store
        .get_session(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("session {id} not found")))
}

async fn attributes(s: &ApiState, id: SessionId) -> Result<Attributes, ApiError> {
    Ok(Attributes(
        s.store.session_attributes(id).await?.into_iter().collect(),
    ))
}
