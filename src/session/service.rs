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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::domain::phone::PhoneRules;
use crate::domain::{CallId, IdentityKind, SessionId};
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

    /// A text channel (`web`, or a gateway channel's name).
    pub fn named(name: &str) -> Channel {
        Channel(name.to_owned())
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
    phones: PhoneRules,
    recent: Arc<Recent>,
    /// Customers' VIP flag and attributes by identity (those with one only), for flows.
    profiles: Arc<Mutex<HashMap<Identity, crate::store::Profile>>>,
}

/// The sessions customers were last active in, by identity, for the continuity window: a
/// call looks its caller up here without waiting for the database (DESIGN §5). Chats note
/// their senders' identities, calls their callers'; the server fills it from the database
/// at start.
struct Recent {
    window_ms: i64,
    by_identity: Mutex<HashMap<Identity, (SessionId, i64)>>,
}

/// Identities that name a customer across channels: a phone number in E.164, an email, a
/// chat or gateway id. An extension's SIP identity is a colleague, and a caller id that is no
/// number (`sipp`, a SIP user name) names nobody in particular: neither joins sessions.
fn continues(identity: &Identity) -> bool {
    match identity.kind {
        IdentityKind::Phone => identity
            .value
            .strip_prefix('+')
            .is_some_and(|digits| digits.len() >= 7 && digits.bytes().all(|b| b.is_ascii_digit())),
        IdentityKind::Email | IdentityKind::Chat | IdentityKind::Crm => true,
        IdentityKind::Sip => false,
    }
}

impl SessionService {
    /// A service with no default region for phone numbers and a 30-minute continuity window.
    pub fn new(writer: WriterHandle) -> SessionService {
        SessionService::with_rules(writer, PhoneRules::default(), 30 * 60 * 1000)
    }

    /// A service normalising phone numbers with `phones`, keeping sessions joinable for
    /// `window_ms` after their last activity.
    pub fn with_rules(writer: WriterHandle, phones: PhoneRules, window_ms: i64) -> SessionService {
        SessionService {
            writer,
            phones,
            recent: Arc::new(Recent {
                window_ms,
                by_identity: Mutex::new(HashMap::new()),
            }),
            profiles: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The profile of the customer `identity` names (normalised first), if they have one.
    pub fn profile(&self, identity: Identity) -> Option<crate::store::Profile> {
        let identity = self.normalise(identity);
        self.profiles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&identity)
            .cloned()
    }

    /// A customer's profile changed: every identity of theirs reads it from now on.
    pub fn set_profile(&self, identities: &[Identity], profile: &crate::store::Profile) {
        let mut map = self.profiles.lock().unwrap_or_else(|e| e.into_inner());
        for i in identities {
            map.insert(i.clone(), profile.clone());
        }
    }

    /// `identity` as customers are stored: a phone number in E.164 when it is one (a caller
    /// id without digits, such as a SIP user name, stays as it came).
    pub fn normalise(&self, identity: Identity) -> Identity {
        match identity.kind {
            IdentityKind::Phone => match self.phones.normalise(&identity.value) {
                Some(value) => Identity {
                    kind: IdentityKind::Phone,
                    value,
                },
                None => identity,
            },
            _ => identity,
        }
    }

    /// The session `identity` was active in within the continuity window, if any.
    pub fn joinable(&self, identity: &Identity, now_ms: i64) -> Option<SessionId> {
        if !continues(identity) {
            return None;
        }
        let map = self
            .recent
            .by_identity
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.get(identity)
            .filter(|(_, at)| now_ms - at <= self.recent.window_ms)
            .map(|(id, _)| *id)
    }

    /// `identity` was active in session `id` at `at_ms` (a message, a call).
    pub fn note_activity(&self, identity: &Identity, id: SessionId, at_ms: i64) {
        if !continues(identity) {
            return;
        }
        let mut map = self
            .recent
            .by_identity
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let window = self.recent.window_ms;
        // Forget what has left the window, now and then (amortised over the inserts).
        if map.len() >= 1024 && map.len().is_power_of_two() {
            map.retain(|_, (_, at)| at_ms - *at <= window);
        }
        let entry = map.entry(identity.clone()).or_insert((id, at_ms));
        if at_ms >= entry.1 {
            *entry = (id, at_ms);
        }
    }

    /// Opens a session for a call from `identity` at `at_ms`, or joins the caller's
    /// joinable session (a chat a minute ago): the session the call belongs to.
    pub fn join_or_open(
        &self,
        id: SessionId,
        channel: &Channel,
        identity: Option<Identity>,
        at_ms: i64,
    ) -> SessionId {
        let identity = identity.map(|i| self.normalise(i));
        if let Some(identity) = &identity
            && let Some(joined) = self.joinable(identity, at_ms)
        {
            self.note_activity(identity, joined, at_ms);
            return joined;
        }
        if let Some(identity) = &identity {
            self.note_activity(identity, id, at_ms);
        }
        self.open(id, channel, identity, at_ms)
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
        let mut cmds = Vec::with_capacity(1);
        self.open_in(&mut cmds, id, channel, identity, at_ms);
        for cmd in cmds {
            self.writer.send(cmd);
        }
        id
    }

    /// Like [`Self::open`], with the write added to `cmds` (written together with what
    /// the caller writes next, e.g. a chat's first message).
    pub fn open_in(
        &self,
        cmds: &mut Vec<StoreCmd>,
        id: SessionId,
        channel: &Channel,
        identity: Option<Identity>,
        at_ms: i64,
    ) {
        let identity = identity.map(|i| self.normalise(i));
        cmds.push(StoreCmd::SessionStarted(NewSession {
            session_id: id,
            identity,
            channel: channel.as_str().to_owned(),
            started_ms: at_ms,
        }));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn phone(v: &str) -> Identity {
        Identity {
            kind: IdentityKind::Phone,
            value: v.into(),
        }
    }

    #[test]
    fn a_customer_number_continues_its_session_within_the_window_only() {
        let (writer, _records) = WriterHandle::detached();
        let rules = PhoneRules::new(Some("GB")).expect("GB");
        let s = SessionService::with_rules(writer, rules, 1_000);
        let chat = SessionId::new();
        s.note_activity(&phone("+442079460000"), chat, 10_000);
        let call = s.join_or_open(
            SessionId::new(),
            &Channel::voice(),
            Some(phone("02079460000")),
            10_500,
        );
        assert_eq!(call, chat, "the national number is the same customer");
        let later = SessionId::new();
        assert_eq!(
            s.join_or_open(
                later,
                &Channel::voice(),
                Some(phone("+442079460000")),
                12_000
            ),
            later,
            "past the window: a new session"
        );
    }

    #[test]
    fn caller_ids_that_are_no_numbers_never_join_a_session() {
        let (writer, _records) = WriterHandle::detached();
        let s = SessionService::new(writer);
        let first = s.join_or_open(SessionId::new(), &Channel::voice(), Some(phone("sipp")), 0);
        let second = SessionId::new();
        assert_eq!(
            s.join_or_open(second, &Channel::voice(), Some(phone("sipp")), 1),
            second
        );
        assert_ne!(first, second);
        let ext = Identity {
            kind: IdentityKind::Sip,
            value: "1001".into(),
        };
        let third = SessionId::new();
        s.note_activity(&ext, first, 0);
        assert_eq!(
            s.join_or_open(third, &Channel::voice(), Some(ext), 1),
            third
        );
    }
}
