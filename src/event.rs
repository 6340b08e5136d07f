//! The events switchboard publishes (PURE): one [`Event`] enum, the vocabulary of the durable
//! event log (`GET /v1/events`, webhooks).
//!
//! Each variant is one event type; its fields are the event's `data`, serialised with the keys
//! in the order they are declared (the wire format integrators rely on: change a field's order
//! and their byte-level golden files break). The enum is adjacently tagged (`type` + `data`),
//! which is also how the OpenAPI document describes it: a discriminated union on `type`, so a
//! generated client gets one class per event type.
//!
//! To add an event type: add a variant here (with `#[serde(rename = "area.what")]` and its
//! fields in wire order), emit it where it happens through the store writer
//! ([`crate::store::StoreCmd::event`]), and list it in the README's event table. Nothing else
//! needs to know.

use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::{HangupBy, HangupCause};
use crate::session::CallParty;

/// One event's type and details.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(tag = "type", content = "data")]
pub enum Event {
    /// A call was accepted for routing (or placed by the server).
    #[serde(rename = "call.created")]
    CallCreated { caller: String, callee: String },
    /// The called party is ringing (180) or sends early media (183).
    #[serde(rename = "call.ringing")]
    CallRinging { code: u16 },
    /// The call was answered (by a callee, the IVR, or the party a placed call rang).
    #[serde(rename = "call.answered")]
    CallAnswered {},
    /// The call ended.
    #[serde(rename = "call.ended")]
    CallEnded {
        /// Why.
        cause: HangupCause,
        /// Who ended it.
        by: HangupBy,
        /// The final SIP status (200 once answered).
        code: u16,
    },
    /// A party was put on hold or taken off it.
    #[serde(rename = "call.held")]
    CallHeld {
        held: bool,
        leg: CallParty,
        /// `caller` or `callee` (a re-INVITE from that party), `api`, or `transfer`.
        by: String,
    },
    /// A party was muted through the API.
    #[serde(rename = "call.muted")]
    CallMuted { leg: CallParty },
    /// A party was unmuted through the API.
    #[serde(rename = "call.unmuted")]
    CallUnmuted { leg: CallParty },
    /// The call was bridged with another call.
    #[serde(rename = "call.bridged")]
    CallBridged {
        bridge_id: String,
        /// The other call's id.
        with: String,
        /// `consultation` for the two calls of an attended transfer.
        #[serde(skip_serializing_if = "Option::is_none")]
        kind: Option<String>,
    },
    /// The caller was moved: blind or attended transfer, or redirect into a flow.
    #[serde(rename = "call.transferred")]
    CallTransferred(Transferred),
    /// An attended transfer's consultation call changed state.
    #[serde(rename = "call.consultation")]
    CallConsultation {
        /// `started`, `answered`, `completed`, `cancelled`, `ended`.
        state: String,
        consultation_call_id: String,
        /// Where the consultation call rings (on `started`).
        #[serde(skip_serializing_if = "Option::is_none")]
        to: Option<String>,
    },
    /// A DTMF digit from a party.
    #[serde(rename = "dtmf.received")]
    DtmfReceived {
        digit: String,
        leg: CallParty,
        /// `rfc4733`, `info` or `inband`.
        source: String,
    },
    /// Digits sent to a party through the API.
    #[serde(rename = "dtmf.sent")]
    DtmfSent { digits: String, leg: CallParty },
    /// A prompt started playing.
    #[serde(rename = "playback.started")]
    PlaybackStarted {
        playback_id: String,
        /// `api` or `ivr`.
        source: String,
        leg: CallParty,
    },
    /// A prompt finished (or could not be played: `error`).
    #[serde(rename = "playback.finished")]
    PlaybackFinished {
        playback_id: String,
        source: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        leg: Option<CallParty>,
        #[serde(skip_serializing_if = "Option::is_none")]
        interrupted: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// The IVR entered a step.
    #[serde(rename = "ivr.step")]
    IvrStep {
        flow: String,
        index: usize,
        /// `play`, `gather`, `menu`, `dial`, …
        kind: String,
        /// The step came from a webhook reply.
        webhook: bool,
    },
    /// A recording started.
    #[serde(rename = "recording.started")]
    RecordingStarted {
        recording_id: String,
        /// For a recording of the caller alone: `voicemail` or `message`.
        #[serde(skip_serializing_if = "Option::is_none")]
        kind: Option<String>,
        /// The voicemail box (null for a `record` step); absent for a call recording.
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<String>)]
        mailbox: Option<Option<String>>,
    },
    /// A recording stopped (its file is being finalised).
    #[serde(rename = "recording.stopped")]
    RecordingStopped { recording_id: String },
    /// A recording's file is complete and can be downloaded.
    #[serde(rename = "recording.available")]
    RecordingAvailable { recording_id: String },
    /// A recording failed (no usable file).
    #[serde(rename = "recording.failed")]
    RecordingFailed { recording_id: String },
    /// A recording was paused (silence is written meanwhile).
    #[serde(rename = "recording.paused")]
    RecordingPaused { recording_id: String },
    /// A paused recording resumed.
    #[serde(rename = "recording.resumed")]
    RecordingResumed { recording_id: String },
    /// A session attribute was set (by the IVR, or through the API by `api_key`).
    #[serde(rename = "session.attribute")]
    SessionAttribute {
        name: String,
        value: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        api_key: Option<String>,
    },
    /// A phone registered a contact.
    #[serde(rename = "registration.added")]
    RegistrationAdded(Registration),
    /// A contact was unregistered (or replaced).
    #[serde(rename = "registration.removed")]
    RegistrationRemoved(Registration),
    /// A contact expired without refresh.
    #[serde(rename = "registration.expired")]
    RegistrationExpired(Registration),
    /// A conversation started on a text channel (web chat, a gateway).
    #[serde(rename = "chat.started")]
    ChatStarted {
        conversation_id: String,
        channel: String,
    },
    /// A message was written to a conversation (text as stored: card numbers masked).
    #[serde(rename = "chat.message")]
    ChatMessage {
        conversation_id: String,
        message_id: String,
        channel: String,
        author: ChatAuthor,
        text: String,
        /// For a reply: the customer's address on the channel it goes to.
        #[serde(skip_serializing_if = "Option::is_none")]
        contact: Option<String>,
        /// Files it carries (absent when none).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        attachments: Vec<AttachmentRef>,
    },
    /// Messages up to `message_id` were read (`by`: `customer` or `agent`).
    #[serde(rename = "chat.read")]
    ChatRead {
        conversation_id: String,
        message_id: String,
        by: String,
    },
    /// A conversation was closed.
    #[serde(rename = "chat.ended")]
    ChatEnded { conversation_id: String },
    /// A conversation was given to an agent (accepted from the queue, or assigned).
    #[serde(rename = "chat.assigned")]
    ChatAssigned {
        conversation_id: String,
        agent_id: String,
    },
    /// An agent's state changed: `available`, `busy`, `wrap-up`, `break` (with the reason)
    /// or `offline`.
    #[serde(rename = "agent.state")]
    AgentState {
        agent_id: String,
        state: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A call or chat joined a queue (`media`: `voice` or `chat`).
    #[serde(rename = "queue.joined")]
    QueueJoined {
        queue: String,
        task_id: String,
        media: String,
        priority: i32,
    },
    /// A contact left a queue: `answered`, `abandoned`, `callback`, `timeout`, `full` or
    /// `overflow`.
    #[serde(rename = "queue.left")]
    QueueLeft {
        queue: String,
        task_id: String,
        reason: String,
        waited_ms: i64,
    },
    /// A contact was offered to an agent (their phones ring, or the chat shows).
    #[serde(rename = "task.offered")]
    TaskOffered {
        queue: String,
        task_id: String,
        agent_id: String,
        /// A chat's conversation.
        #[serde(skip_serializing_if = "Option::is_none")]
        conversation_id: Option<String>,
    },
    /// The agent took it.
    #[serde(rename = "task.accepted")]
    TaskAccepted {
        queue: String,
        task_id: String,
        agent_id: String,
    },
    /// The agent did not take it (`reason`: `no-answer`, `declined`, `unreachable`,
    /// `withdrawn`).
    #[serde(rename = "task.rejected")]
    TaskRejected {
        queue: String,
        task_id: String,
        agent_id: String,
        reason: String,
    },
}

/// A file a message carries (`chat.message`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = AttachmentRefData)]
pub struct AttachmentRef {
    pub id: String,
    pub name: String,
    /// `image/png`, `image/jpeg`, `image/gif`, `image/webp` or `application/pdf`.
    pub content_type: String,
    pub size_bytes: i64,
}

impl From<&crate::store::AttachmentRecord> for AttachmentRef {
    fn from(a: &crate::store::AttachmentRecord) -> AttachmentRef {
        AttachmentRef {
            id: a.id.to_string(),
            name: a.name.clone(),
            content_type: a.content_type.clone(),
            size_bytes: a.size_bytes,
        }
    }
}

/// Who wrote a message (`chat.message`).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = ChatAuthorData)]
pub struct ChatAuthor {
    /// `customer`, `agent`, `bot` or `system`.
    pub kind: crate::domain::AuthorKind,
    pub name: Option<String>,
}

/// Where a transfer or redirect sent the caller (`call.transferred`).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = TransferredData)]
#[serde(untagged)]
pub enum Transferred {
    /// Blind transfer or redirect into a flow (`kind`: `blind` or `redirect`).
    Flow { flow: String, kind: String },
    /// Blind transfer to an extension (`kind`: `blind`).
    Extension { to: String, kind: String },
    /// Attended transfer completed (`kind`: `attended`).
    Attended {
        kind: String,
        to: String,
        consultation_call_id: String,
    },
}

/// A registered contact (`registration.*`).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = RegistrationData)]
pub struct Registration {
    pub ext: String,
    pub contact: String,
    /// `udp` or `tcp`.
    pub transport: String,
    /// The address the REGISTER came from.
    pub source: String,
}

impl Event {
    /// The event's type (`call.created`, …) and its `data`, as the event log stores them.
    pub fn into_parts(self) -> (String, serde_json::Value) {
        let mut value = match serde_json::to_value(&self) {
            Ok(serde_json::Value::Object(map)) => map,
            // Unreachable: an adjacently tagged enum of plain fields is always an object.
            _ => return (String::new(), serde_json::Value::Null),
        };
        let kind = match value.remove("type") {
            Some(serde_json::Value::String(kind)) => kind,
            _ => String::new(),
        };
        let data = value
            .remove("data")
            .unwrap_or_else(|| serde_json::json!({}));
        (kind, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes integrators saw before the enum existed (json! literals), per type.
    fn wire(event: Event) -> (String, String) {
        let (kind, data) = event.into_parts();
        (kind, data.to_string())
    }

    #[test]
    fn call_events_keep_their_wire_form() {
        assert_eq!(
            wire(Event::CallCreated {
                caller: "1001".into(),
                callee: "2001".into()
            }),
            (
                "call.created".into(),
                r#"{"caller":"1001","callee":"2001"}"#.into()
            )
        );
        assert_eq!(
            wire(Event::CallAnswered {}),
            ("call.answered".into(), "{}".into())
        );
        assert_eq!(
            wire(Event::CallEnded {
                cause: HangupCause::Normal,
                by: HangupBy::Caller,
                code: 200
            })
            .1,
            r#"{"cause":"normal_clearing","by":"caller","code":200}"#
        );
        assert_eq!(
            wire(Event::CallHeld {
                held: true,
                leg: CallParty::Callee,
                by: "caller".into()
            })
            .1,
            r#"{"held":true,"leg":"callee","by":"caller"}"#
        );
        assert_eq!(
            wire(Event::CallBridged {
                bridge_id: "bridge:x".into(),
                with: "c2".into(),
                kind: None
            })
            .1,
            r#"{"bridge_id":"bridge:x","with":"c2"}"#
        );
    }

    #[test]
    fn transfers_keep_each_kinds_key_order() {
        let blind = Event::CallTransferred(Transferred::Extension {
            to: "2002".into(),
            kind: "blind".into(),
        });
        assert_eq!(wire(blind).1, r#"{"to":"2002","kind":"blind"}"#);
        let redirect = Event::CallTransferred(Transferred::Flow {
            flow: "main".into(),
            kind: "redirect".into(),
        });
        assert_eq!(wire(redirect).1, r#"{"flow":"main","kind":"redirect"}"#);
        let attended = Event::CallTransferred(Transferred::Attended {
            kind: "attended".into(),
            to: "2003".into(),
            consultation_call_id: "c9".into(),
        });
        assert_eq!(
            wire(attended),
            (
                "call.transferred".into(),
                r#"{"kind":"attended","to":"2003","consultation_call_id":"c9"}"#.into()
            )
        );
    }

    #[test]
    fn optional_fields_are_absent_not_null_except_a_record_steps_mailbox() {
        let call_recording = Event::RecordingStarted {
            recording_id: "r1".into(),
            kind: None,
            mailbox: None,
        };
        assert_eq!(wire(call_recording).1, r#"{"recording_id":"r1"}"#);
        let record_step = Event::RecordingStarted {
            recording_id: "r2".into(),
            kind: Some("message".into()),
            mailbox: Some(None),
        };
        assert_eq!(
            wire(record_step).1,
            r#"{"recording_id":"r2","kind":"message","mailbox":null}"#
        );
        let failed_tts = Event::PlaybackFinished {
            playback_id: "3".into(),
            source: "api".into(),
            leg: None,
            interrupted: None,
            error: Some("espeak-ng missing".into()),
        };
        assert_eq!(
            wire(failed_tts).1,
            r#"{"playback_id":"3","source":"api","error":"espeak-ng missing"}"#
        );
    }

    #[test]
    fn registration_events_carry_the_contact() {
        let e = Event::RegistrationAdded(Registration {
            ext: "1001".into(),
            contact: "<sip:1001@10.0.0.5:5062>".into(),
            transport: "udp".into(),
            source: "10.0.0.5:5062".into(),
        });
        assert_eq!(
            wire(e),
            (
                "registration.added".into(),
                r#"{"ext":"1001","contact":"<sip:1001@10.0.0.5:5062>","transport":"udp","source":"10.0.0.5:5062"}"#
                    .into()
            )
        );
    }
}
