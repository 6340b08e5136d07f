//! One timeline per session and per customer (issue 12): everything that happened with the
//! customer, whatever the channel, in time order — calls, conversations and their messages,
//! what the IVR collected and what the API set (attributes), recordings. What an agent reads
//! before saying hello, so the customer never repeats themselves.

use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::conversations::AuthorView;
use super::{ApiError, ApiState};
use crate::store::{CallRecord, ConversationRecord, EventRecord, RecordingRecord, SessionId};

/// Most entries one timeline holds (the oldest first).
pub const MAX_ENTRIES: usize = 5000;

/// One thing that happened in a session.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TimelineEntry {
    /// A call started (its end and cause as known now).
    Call {
        at_ms: i64,
        session_id: Uuid,
        call_id: Uuid,
        /// `inbound`, `outbound` or `internal`.
        direction: String,
        caller: String,
        callee: String,
        answered_ms: Option<i64>,
        ended_ms: Option<i64>,
        hangup_cause: Option<String>,
    },
    /// A conversation started on a text channel.
    Conversation {
        at_ms: i64,
        session_id: Uuid,
        conversation_id: Uuid,
        channel: String,
        /// `open` or `closed`.
        state: String,
        ended_ms: Option<i64>,
    },
    /// A message of a conversation (text as stored: card numbers masked).
    Message {
        at_ms: i64,
        session_id: Uuid,
        conversation_id: Uuid,
        channel: String,
        message_id: Uuid,
        author: AuthorView,
        text: String,
    },
    /// An attribute was set: an IVR input (with its call) or a value from the API.
    Attribute {
        at_ms: i64,
        session_id: Uuid,
        name: String,
        value: String,
        call_id: Option<Uuid>,
        /// The API key that set it, for a value from the API.
        api_key: Option<String>,
    },
    /// A recording (call recording or voicemail) started.
    Recording {
        at_ms: i64,
        session_id: Uuid,
        recording_id: Uuid,
        call_id: Uuid,
        duration_ms: Option<i64>,
    },
}

impl TimelineEntry {
    fn at_ms(&self) -> i64 {
        match self {
            TimelineEntry::Call { at_ms, .. }
            | TimelineEntry::Conversation { at_ms, .. }
            | TimelineEntry::Message { at_ms, .. }
            | TimelineEntry::Attribute { at_ms, .. }
            | TimelineEntry::Recording { at_ms, .. } => *at_ms,
        }
    }
}

/// Session `id`'s conversations, oldest first.
pub async fn session_conversations(
    s: &ApiState,
    id: SessionId,
) -> Result<Vec<ConversationRecord>, ApiError> {
    let filter = crate::store::ConversationFilter {
        session_id: Some(id),
        limit: 1000,
        ..Default::default()
    };
    let mut list = s.store.list_conversations(&filter).await?;
    list.reverse();
    Ok(list)
}

/// The timeline of session `id`, given what the session document already read (its
/// conversations' messages are read here).
pub async fn session_timeline(
    s: &ApiState,
    id: SessionId,
    (calls, recordings): (&[CallRecord], &[RecordingRecord]),
    events: &[EventRecord],
    conversations: &[ConversationRecord],
) -> Result<Vec<TimelineEntry>, ApiError> {
    let session_id = id.0;
    let mut out = Vec::new();
    for c in calls {
        out.push(TimelineEntry::Call {
            at_ms: c.started_ms,
            session_id,
            call_id: c.id.0,
            direction: c.direction.as_str().to_owned(),
            caller: c.caller.clone(),
            callee: c.callee.clone(),
            answered_ms: c.answered_ms,
            ended_ms: c.ended_ms,
            hangup_cause: c.hangup_cause.clone(),
        });
    }
    for r in recordings {
        out.push(TimelineEntry::Recording {
            at_ms: r.started_ms,
            session_id,
            recording_id: r.id.0,
            call_id: r.call_id.0,
            duration_ms: r.duration_ms,
        });
    }
    for e in events.iter().filter(|e| e.kind == "session.attribute") {
        let text = |k: &str| e.data.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        out.push(TimelineEntry::Attribute {
            at_ms: e.at_ms,
            session_id,
            name: text("name").unwrap_or_default(),
            value: text("value").unwrap_or_default(),
            call_id: e.call_id.map(|c| c.0),
            api_key: text("api_key"),
        });
    }
    for c in conversations {
        out.push(TimelineEntry::Conversation {
            at_ms: c.started_ms,
            session_id,
            conversation_id: c.id.0,
            channel: c.channel.clone(),
            state: c.state.as_str().to_owned(),
            ended_ms: c.ended_ms,
        });
        for m in s.store.messages_of(c.id).await? {
            out.push(TimelineEntry::Message {
                at_ms: m.created_ms,
                session_id,
                conversation_id: c.id.0,
                channel: c.channel.clone(),
                message_id: m.id.0,
                author: AuthorView {
                    kind: m.author,
                    name: m.author_name,
                },
                text: m.text,
            });
        }
    }
    sort(&mut out);
    Ok(out)
}

/// Time order; at the same millisecond a call or conversation comes before what happened in
/// it.
pub fn sort(entries: &mut Vec<TimelineEntry>) {
    let rank = |e: &TimelineEntry| match e {
        TimelineEntry::Call { .. } | TimelineEntry::Conversation { .. } => 0,
        _ => 1,
    };
    entries.sort_by_key(|e| (e.at_ms(), rank(e)));
    entries.truncate(MAX_ENTRIES);
}
