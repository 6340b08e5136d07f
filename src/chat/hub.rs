//! Who is listening to which conversation (DRIVER): one task reads the committed event log's
//! broadcast and hands each `chat.*` event, and each typing notice, to the listeners of its
//! conversation only. A visitor's socket thus wakes for its own conversation, not for every
//! message of every chat on the server (10,000 idle widgets would otherwise each look at every
//! message).
//!
//! Events reach a room only after their commit (they come from the store's broadcast). When the
//! hub falls behind the broadcast, every room is told to resynchronise (its listeners read what
//! they missed from the database).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::Typing;
use crate::domain::ConversationId;
use crate::store::EventRecord;

/// What a conversation's listeners get.
#[derive(Debug, Clone)]
pub enum RoomEvent {
    /// A committed `chat.*` event of the conversation.
    Event(Arc<EventRecord>),
    /// Someone types.
    Typing(Typing),
    /// Events may have been missed: read the conversation again.
    Resync,
}

/// Capacity of one conversation's channel.
const ROOM_CAPACITY: usize = 64;

/// The rooms. Cheap to clone.
#[derive(Clone, Default)]
pub struct Hub {
    rooms: Arc<Mutex<HashMap<ConversationId, broadcast::Sender<RoomEvent>>>>,
}

impl Hub {
    /// Listens to conversation `id` from now on.
    pub fn subscribe(&self, id: ConversationId) -> broadcast::Receiver<RoomEvent> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        // Forget rooms nobody listens to any more, now and then (amortised).
        if rooms.len() >= 64 && rooms.len().is_power_of_two() {
            rooms.retain(|_, tx| tx.receiver_count() > 0);
        }
        rooms
            .entry(id)
            .or_insert_with(|| broadcast::channel(ROOM_CAPACITY).0)
            .subscribe()
    }

    fn send(&self, id: ConversationId, e: RoomEvent) {
        let rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = rooms.get(&id) {
            let _ = tx.send(e); // nobody listening is fine
        }
    }

    /// A typing notice for conversation `t.conversation_id`.
    pub fn typing(&self, t: Typing) {
        self.send(t.conversation_id, RoomEvent::Typing(t));
    }

    /// Routes the committed events of `events` until it closes.
    pub async fn run(self, mut events: broadcast::Receiver<EventRecord>) {
        loop {
            match events.recv().await {
                Ok(e) if e.kind.starts_with("chat.") => {
                    let Some(id) = e
                        .data
                        .get("conversation_id")
                        .and_then(Value::as_str)
                        .and_then(|c| c.parse::<ConversationId>().ok())
                    else {
                        continue;
                    };
                    self.send(id, RoomEvent::Event(Arc::new(e)));
                }
                Ok(_) => {}
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "chat hub lagged: rooms resynchronise");
                    let rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
                    for tx in rooms.values() {
                        let _ = tx.send(RoomEvent::Resync);
                    }
                }
                Err(RecvError::Closed) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SessionId;

    fn event(kind: &str, conversation: ConversationId) -> EventRecord {
        EventRecord {
            seq: 1,
            at_ms: 0,
            kind: kind.into(),
            session_id: Some(SessionId::new()),
            call_id: None,
            data: serde_json::json!({"conversation_id": conversation.to_string()}),
        }
    }

    #[tokio::test]
    async fn a_conversation_hears_its_own_events_only() {
        let hub = Hub::default();
        let (tx, rx) = broadcast::channel(16);
        let task = tokio::spawn(hub.clone().run(rx));
        let (mine, other) = (ConversationId::new(), ConversationId::new());
        let mut listener = hub.subscribe(mine);
        tx.send(event("chat.message", other)).expect("sent");
        tx.send(event("call.created", mine)).expect("sent");
        tx.send(event("chat.message", mine)).expect("sent");
        match listener.recv().await.expect("an event") {
            RoomEvent::Event(e) => {
                assert_eq!(e.data["conversation_id"], mine.to_string());
                assert_eq!(e.kind, "chat.message");
            }
            other => panic!("{other:?}"),
        }
        hub.typing(Typing {
            conversation_id: other,
            by: crate::domain::AuthorKind::Agent,
            name: None,
        });
        hub.typing(Typing {
            conversation_id: mine,
            by: crate::domain::AuthorKind::Agent,
            name: None,
        });
        assert!(matches!(
            listener.recv().await.expect("typing"),
            RoomEvent::Typing(t) if t.conversation_id == mine
        ));
        drop(tx);
        task.await.expect("the hub ends with the log");
    }
}
