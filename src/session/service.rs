//! The session service (DRIVER, thin): the one owner of sessions (DESIGN §4). A session is one
//! customer contact across channels: a web chat that becomes a call, a call transferred to a
//! colleague, a callback. The service opens one for the channel that starts the contact,
//! resolves who the customer is from an identity (a phone number, a SIP URI, an email), lets
//! calls and chats attach to it, and keeps its attributes (what the IVR collected, what an
//! agent or the API set) with a `session.attribute` event for each.
//!
//! Like every writer of the store it never waits for the database: its commands go through the
//! writer task in order, so a session is stored before the call that opened it, and an
//! attribute before its event is published.

use crate::domain::{CallId, SessionId};
use crate::event::Event;
use crate::store::{Identity, NewSession, StoreCmd, WriterHandle};

/// The channel a session (or a call or conversation within it) came in by: `voice`, `web`,
/// or a gateway channel's name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Channel(String);

impl Channel {
    /// Phone calls (SIP).
    pub fn voice() -> Channel {
        Channel("voice".into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who set an attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetBy {
    /// A call's IVR flow.
    Call(CallId),
    /// The API, with the named key.
    Api { key: String },
}

/// Opens sessions and keeps their attributes.
#[derive(Clone)]
pub struct SessionService {
    writer: WriterHandle,
}

impl SessionService {
    pub fn new(writer: WriterHandle) -> SessionService {
        SessionService { writer }
    }

    /// A fresh id for a contact about to start (a call gets its session id when it is
    /// spawned); nothing is stored until [`Self::open`].
    pub fn allocate(&self) -> SessionId {
        SessionId::new()
    }

    /// Opens session `id`, started by `channel` at `at_ms`. With an `identity` the session is
    /// tied to the customer it resolves to (created on first contact). Opening a session that
    /// is already open changes nothing but a missing customer.
    pub fn open(
        &self,
        id: SessionId,
        channel: &Channel,
        identity: Option<Identity>,
        at_ms: i64,
    ) -> SessionId {
        self.writer.send(StoreCmd::SessionStarted(NewSession {
            session_id: id,
            identity,
            channel: channel.as_str().to_owned(),
            started_ms: at_ms,
        }));
        id
    }

    /// Sets one attribute of session `id` (the last value written wins) and publishes
    /// `session.attribute`.
    pub fn set_attribute(&self, id: SessionId, by: SetBy, name: &str, value: &str, at_ms: i64) {
        let (call_id, api_key) = match by {
            SetBy::Call(call) => (Some(call), None),
            SetBy::Api { key } => (None, Some(key)),
        };
        self.writer.send(StoreCmd::SessionAttribute {
            session_id: id,
            call_id,
            name: name.to_owned(),
            value: value.to_owned(),
            at_ms,
        });
        self.writer.send(StoreCmd::event(
            at_ms,
            Some(id),
            call_id,
            Event::SessionAttribute {
                name: name.to_owned(),
                value: value.to_owned(),
                api_key,
            },
        ));
    }
}
