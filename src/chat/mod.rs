//! Conversations on every text channel (DRIVER, thin; issue 12): the web chat widget and
//! gateway channels (SMS, WhatsApp, a bot) write and read messages here, on the same sessions
//! and customers as calls.
//!
//! * An inbound message names its sender by what the channel knows (a gateway user id, a
//!   phone, an email, a web visitor id). The sender's open conversation on that channel takes
//!   it; otherwise a conversation starts, in the customer's joinable session (see
//!   [`crate::session::service`]: a live one, or one active within the continuity window) or
//!   in a new session opened by this channel.
//! * Text is masked ([`mask`]) before anything is stored, published or logged.
//! * Every write goes through the store writer and is confirmed committed before the caller
//!   is answered, so an answered message is never lost; its event (`chat.started`,
//!   `chat.message`, `chat.read`, `chat.ended`) is published only after that commit.
//! * A gateway's message id is unique per channel: the same id again is answered with the
//!   stored message, not stored twice. Messages from one sender are handled one at a time
//!   (a lock per channel and sender), so two arriving together cannot open two conversations.
//! * Replies to a gateway channel's conversations are POSTed to its webhook by [`outbox`].

pub mod attachment;
pub mod files;
pub mod hub;
pub mod mask;
pub mod outbox;
pub mod visitor;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::domain::phone::PhoneRules;
use crate::domain::{
    AuthorKind, ConversationId, ConversationState, CustomerId, IdentityKind, MessageId, SessionId,
};
use crate::event::{ChatAuthor, Event};
use crate::session::service::{Channel, SessionService};
use crate::store::{
    ConversationRecord, Identity, MessageRecord, NewConversation, NewMessage, Store, StoreCmd,
    StoreError,
};

/// Who uploads through the API.
pub const API_OWNER: &str = "api";
/// Most attachments one message carries.
pub const MAX_ATTACHMENTS: usize = 10;

/// Longest message text, in bytes.
pub const MAX_TEXT_BYTES: usize = 4096;
/// Longest sender id, name or gateway message id.
const MAX_FIELD: usize = 256;

/// Who sent an inbound message, as the channel names them (all optional, at least one of
/// `id`, `phone`, `email` or `visitor`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sender {
    /// The sender's id on the gateway.
    pub id: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
    /// A web chat visitor (from a verified visitor token, never from the page).
    pub visitor: Option<String>,
}

/// A message arriving on a channel.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub channel: String,
    pub from: Sender,
    pub text: String,
    /// The gateway's id for the message (unique per channel).
    pub external_id: Option<String>,
    /// Files the sender uploaded for it (the text may then be empty).
    pub attachments: Vec<crate::domain::AttachmentId>,
}

/// Where an inbound message went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub conversation_id: ConversationId,
    pub session_id: SessionId,
    pub customer_id: Option<CustomerId>,
    pub message_id: MessageId,
    /// False when the gateway's id was stored before (nothing new was stored).
    pub created: bool,
    /// The text as stored (masked), when it was stored.
    pub text: String,
    pub created_ms: i64,
    /// The files it carries.
    pub attachments: Vec<crate::event::AttachmentRef>,
}

/// Why a chat request failed.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// An attachment larger than the limit (bytes).
    #[error("the file is larger than {0} bytes")]
    TooLarge(usize),
    /// An attachment of a kind the chat does not take.
    #[error("only images (PNG, JPEG, GIF, WebP) and PDF files are accepted")]
    Unsupported,
    #[error("attachment storage failed: {0}")]
    Io(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Settings of the chat service.
#[derive(Debug, Clone)]
pub struct ChatSettings {
    /// A session stays joinable this long after its last call or message.
    pub continuity_ms: i64,
    pub phones: PhoneRules,
    pub masker: mask::Masker,
    /// Sites that may embed the widget.
    pub widget_origins: Vec<String>,
    /// The pre-chat form's fields.
    pub prechat_fields: Vec<String>,
    /// Signs visitor tokens (None until the server resolves it from the environment or
    /// the data directory).
    pub token_key: Option<visitor::TokenKey>,
    pub token_ttl_ms: i64,
    pub messages_per_minute: u32,
    pub attachment_max_bytes: usize,
    /// "Call me": the flow the answered call runs, or the extension it connects to.
    pub call_me_flow: Option<String>,
    pub call_me_connect_to: Option<String>,
    /// The ACD queue new customer conversations join.
    pub queue: Option<String>,
}

impl Default for ChatSettings {
    fn default() -> Self {
        ChatSettings {
            continuity_ms: 30 * 60 * 1000,
            phones: PhoneRules::default(),
            masker: mask::Masker::default(),
            widget_origins: Vec::new(),
            prechat_fields: vec!["name".into(), "phone".into(), "email".into()],
            token_key: None,
            token_ttl_ms: 30 * 24 * 3_600_000,
            messages_per_minute: 30,
            attachment_max_bytes: 10 * 1024 * 1024,
            call_me_flow: None,
            call_me_connect_to: None,
            queue: None,
        }
    }
}

/// Someone is typing in a conversation (not stored: it only goes to the other side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Typing {
    pub conversation_id: ConversationId,
    pub by: AuthorKind,
    pub name: Option<String>,
}

/// Held while one sender's message is handled.
type SenderLock = Arc<tokio::sync::Mutex<()>>;

/// Writes and reads conversations. Cheap to clone.
#[derive(Clone)]
pub struct ChatService {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    sessions: SessionService,
    settings: ChatSettings,
    /// One lock per (channel, sender) with a message in progress.
    senders: Mutex<HashMap<(String, String), SenderLock>>,
    outbox: outbox::Outbox,
    hub: hub::Hub,
    files: files::Files,
    /// Routes new conversations to agents (set once at start).
    acd: std::sync::OnceLock<(
        crate::acd::service::Acd,
        tokio::sync::mpsc::UnboundedSender<(u64, crate::acd::service::ContactEvent)>,
    )>,
}

impl ChatService {
    pub fn new(
        store: Store,
        sessions: SessionService,
        settings: ChatSettings,
        outbox: outbox::Outbox,
        files: files::Files,
    ) -> ChatService {
        let hub = hub::Hub::default();
        tokio::spawn(hub.clone().run(store.subscribe_events()));
        ChatService {
            inner: Arc::new(Inner {
                store,
                sessions,
                settings,
                senders: Mutex::new(HashMap::new()),
                outbox,
                hub,
                files,
                acd: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Routes new customer conversations through `acd` (to `[chat] queue`). What the ACD
    /// says back about a chat (offers, withdrawals) is for the desk, which reads the events;
    /// a chat leaving its queue without an agent is logged.
    pub fn attach_acd(&self, acd: crate::acd::service::Acd) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some((contact, event)) = rx.recv().await {
                if let crate::acd::service::ContactEvent::Exit { reason } = event {
                    tracing::info!(contact, reason = reason.as_str(), "chat left its queue");
                }
            }
        });
        let _ = self.inner.acd.set((acd, tx));
    }

    /// The ACD, when chats are routed.
    pub fn acd(&self) -> Option<&crate::acd::service::Acd> {
        self.inner.acd.get().map(|(a, _)| a)
    }

    /// A new customer conversation joins the chat queue (VIP customers first).
    fn route(&self, conversation: ConversationId, session: SessionId, identity: Option<&Identity>) {
        let (Some(queue), Some((acd, events))) = (&self.inner.settings.queue, self.inner.acd.get())
        else {
            return;
        };
        let vip = identity
            .and_then(|i| self.inner.sessions.profile(i.clone()))
            .is_some_and(|p| p.vip);
        acd.join(crate::acd::service::Join {
            queue: queue.clone(),
            media: crate::acd::engine::Media::Chat,
            priority: i32::from(vip),
            skills: Vec::new(),
            session_id: Some(session),
            call_id: None,
            conversation_id: Some(conversation),
            events: events.clone(),
        });
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Attachments on disk.
    pub fn files(&self) -> &files::Files {
        &self.inner.files
    }

    pub fn settings(&self) -> &ChatSettings {
        &self.inner.settings
    }

    /// Tells the other side of conversation `id` that `by` is typing.
    pub fn typing(&self, id: ConversationId, by: AuthorKind, name: Option<String>) {
        self.inner.hub.typing(Typing {
            conversation_id: id,
            by,
            name,
        });
    }

    /// What happens in conversation `id` from now on (its committed `chat.*` events, typing).
    pub fn listen(&self, id: ConversationId) -> tokio::sync::broadcast::Receiver<hub::RoomEvent> {
        self.inner.hub.subscribe(id)
    }

    /// The session service conversations open sessions through.
    pub fn sessions(&self) -> &SessionService {
        &self.inner.sessions
    }

    /// The reply deliveries to gateway channels.
    pub fn outbox(&self) -> &outbox::Outbox {
        &self.inner.outbox
    }

    /// Masks `text` as it will be stored.
    pub fn mask(&self, text: &str) -> String {
        self.inner.settings.masker.mask(text)
    }

    /// Stores a message from a customer (see the module docs for where it goes).
    pub async fn receive(&self, msg: Inbound) -> Result<Received, ChatError> {
        check_text(&msg.text, !msg.attachments.is_empty())?;
        for (what, v) in [
            ("from.id", &msg.from.id),
            ("from.phone", &msg.from.phone),
            ("from.email", &msg.from.email),
            ("from.name", &msg.from.name),
            ("id", &msg.external_id),
        ] {
            if v.as_ref()
                .is_some_and(|v| v.is_empty() || v.len() > MAX_FIELD)
            {
                return Err(ChatError::Invalid(format!(
                    "{what} must be 1 to {MAX_FIELD} bytes"
                )));
            }
        }
        let identities = self.identities(&msg.channel, &msg.from)?;
        // The sender's address on the channel: what a reply is sent to.
        let contact = msg
            .from
            .visitor
            .clone()
            .or_else(|| msg.from.id.clone())
            .or_else(|| {
                identities
                    .iter()
                    .find(|i| i.kind != IdentityKind::Chat)
                    .map(|i| i.value.clone())
            });
        let Some(contact) = contact else {
            return Err(ChatError::Invalid(
                "from needs an id, a phone or an email".into(),
            ));
        };
        let lock = self.sender_lock(&msg.channel, &contact);
        let _held = lock.lock().await;
        let result = self.receive_locked(msg, identities, contact.clone()).await;
        drop(_held);
        self.release_sender(&contact, lock);
        result
    }

    async fn receive_locked(
        &self,
        msg: Inbound,
        identities: Vec<Identity>,
        contact: String,
    ) -> Result<Received, ChatError> {
        let s = &self.inner;
        if let Some(id) = &msg.external_id
            && let Some(m) = s.store.message_by_external_id(&msg.channel, id).await?
        {
            let c = s
                .store
                .get_conversation(m.conversation_id)
                .await?
                .ok_or_else(|| ChatError::NotFound("conversation".into()))?;
            return Ok(Received {
                conversation_id: c.id,
                session_id: c.session_id,
                customer_id: c.customer_id,
                message_id: m.id,
                created: false,
                text: m.text,
                created_ms: m.created_ms,
                attachments: Vec::new(),
            });
        }
        let now = crate::clock::unix_ms();
        let mut cmds = Vec::new();
        let (conversation, new) = match s
            .store
            .open_conversation_with(&msg.channel, &contact)
            .await?
        {
            Some(c) => (c, false),
            None => {
                let (session_id, customer_id) = self.session_for(&identities, now).await?;
                match session_id {
                    Some(id) => {
                        // Joined: the other identities are the same customer's.
                        for identity in &identities {
                            cmds.push(StoreCmd::IdentityAdded {
                                session_id: id,
                                identity: identity.clone(),
                                at_ms: now,
                            });
                        }
                        let c =
                            self.start_conversation(id, customer_id, &msg.channel, &contact, now);
                        (c, true)
                    }
                    None => {
                        let id = s.sessions.allocate();
                        s.sessions.open_in(
                            &mut cmds,
                            id,
                            &Channel::named(&msg.channel),
                            identities.first().cloned(),
                            now,
                        );
                        for identity in identities.iter().skip(1) {
                            cmds.push(StoreCmd::IdentityAdded {
                                session_id: id,
                                identity: identity.clone(),
                                at_ms: now,
                            });
                        }
                        let c = self.start_conversation(id, None, &msg.channel, &contact, now);
                        (c, true)
                    }
                }
            }
        };
        if new {
            // Stored before its first message.
            cmds.push(StoreCmd::ConversationStarted(NewConversation {
                id: conversation.id,
                session_id: conversation.session_id,
                channel: conversation.channel.clone(),
                contact: conversation.contact.clone(),
                started_ms: now,
            }));
            cmds.push(StoreCmd::event(
                now,
                Some(conversation.session_id),
                None,
                Event::ChatStarted {
                    conversation_id: conversation.id.to_string(),
                    channel: conversation.channel.clone(),
                },
            ));
        }
        let text = self.mask(&msg.text);
        let message = NewMessage {
            id: MessageId::new(),
            conversation_id: conversation.id,
            session_id: conversation.session_id,
            channel: msg.channel.clone(),
            external_id: msg.external_id.clone(),
            author: AuthorKind::Customer,
            author_name: msg.from.name.clone(),
            text,
            created_ms: now,
        };
        let (message_id, stored_text) = (message.id, message.text.clone());
        let files = self
            .attachments_for(&msg.attachments, &contact, conversation.id)
            .await?;
        let refs: Vec<crate::event::AttachmentRef> = files
            .iter()
            .map(crate::event::AttachmentRef::from)
            .collect();
        self.push_message(&mut cmds, message, &conversation.contact, &files);
        match s.store.writer().confirm(cmds).await {
            Ok(()) => {}
            // A duplicate gateway id that raced us past the check: answer with the stored one.
            Err(e) if msg.external_id.is_some() => {
                if let Some(id) = &msg.external_id
                    && let Some(m) = s.store.message_by_external_id(&msg.channel, id).await?
                {
                    return Ok(Received {
                        conversation_id: m.conversation_id,
                        session_id: conversation.session_id,
                        customer_id: conversation.customer_id,
                        message_id: m.id,
                        created: false,
                        text: m.text,
                        created_ms: m.created_ms,
                        attachments: Vec::new(),
                    });
                }
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        }
        for identity in &identities {
            s.sessions
                .note_activity(identity, conversation.session_id, now);
        }
        if new {
            self.route(conversation.id, conversation.session_id, identities.first());
        }
        let customer_id = match conversation.customer_id {
            Some(c) => Some(c),
            None => s.store.customer_of_session(conversation.session_id).await?,
        };
        tracing::debug!(conversation = %conversation.id, channel = %msg.channel, "message received");
        Ok(Received {
            conversation_id: conversation.id,
            session_id: conversation.session_id,
            customer_id,
            message_id,
            created: true,
            text: stored_text,
            created_ms: now,
            attachments: refs,
        })
    }

    /// Writes a reply to conversation `id` (an agent's, a bot's, the API's). A gateway
    /// channel's reply is then POSTed to the gateway.
    pub async fn reply(
        &self,
        id: ConversationId,
        author: AuthorKind,
        author_name: Option<String>,
        text: &str,
        attachments: &[crate::domain::AttachmentId],
    ) -> Result<MessageRecord, ChatError> {
        check_text(text, !attachments.is_empty())?;
        if author == AuthorKind::Customer {
            return Err(ChatError::Invalid(
                "a reply is written by an agent, a bot or the system".into(),
            ));
        }
        let s = &self.inner;
        let c = self.open_conversation(id).await?;
        let now = crate::clock::unix_ms();
        let message = NewMessage {
            id: MessageId::new(),
            conversation_id: c.id,
            session_id: c.session_id,
            channel: c.channel.clone(),
            external_id: None,
            author,
            author_name,
            text: self.mask(text),
            created_ms: now,
        };
        let record = MessageRecord {
            id: message.id,
            conversation_id: c.id,
            channel: c.channel.clone(),
            external_id: None,
            author,
            author_name: message.author_name.clone(),
            text: message.text.clone(),
            created_ms: now,
            delivered_ms: None,
            read_ms: None,
        };
        let files = self.attachments_for(attachments, API_OWNER, c.id).await?;
        let mut cmds = Vec::new();
        self.push_message(&mut cmds, message, &c.contact, &files);
        s.store.writer().confirm(cmds).await?;
        s.outbox.wake(&c.channel);
        Ok(record)
    }

    /// Texts a caller (a flow's `send_message`): a bot message in the conversation of
    /// `t.channel` with the caller's number, started in the call's session when there is none,
    /// delivered to the channel's gateway.
    pub async fn text_caller(&self, t: &crate::session::TextToCaller) -> Result<(), ChatError> {
        check_text(&t.text, false)?;
        let s = &self.inner;
        let Some(channel) = s.store.get_channel(&t.channel).await? else {
            return Err(ChatError::NotFound(format!("channel {}", t.channel)));
        };
        if channel.kind == crate::domain::ChannelKind::Web {
            return Err(ChatError::Invalid(
                "the web channel cannot text a phone number".into(),
            ));
        }
        let now = crate::clock::unix_ms();
        let lock = self.sender_lock(&t.channel, &t.to);
        let held = lock.lock().await;
        let mut cmds = Vec::new();
        let conversation = match s.store.open_conversation_with(&t.channel, &t.to).await? {
            Some(c) => c,
            None => {
                let c = self.start_conversation(t.session_id, None, &t.channel, &t.to, now);
                cmds.push(StoreCmd::IdentityAdded {
                    session_id: t.session_id,
                    identity: crate::store::Identity {
                        kind: IdentityKind::Phone,
                        value: t.to.clone(),
                    },
                    at_ms: now,
                });
                cmds.push(StoreCmd::ConversationStarted(NewConversation {
                    id: c.id,
                    session_id: c.session_id,
                    channel: c.channel.clone(),
                    contact: c.contact.clone(),
                    started_ms: now,
                }));
                cmds.push(StoreCmd::event(
                    now,
                    Some(c.session_id),
                    Some(t.call_id),
                    Event::ChatStarted {
                        conversation_id: c.id.to_string(),
                        channel: c.channel.clone(),
                    },
                ));
                c
            }
        };
        let message = NewMessage {
            id: MessageId::new(),
            conversation_id: conversation.id,
            session_id: conversation.session_id,
            channel: t.channel.clone(),
            external_id: None,
            author: AuthorKind::Bot,
            author_name: None,
            text: self.mask(&t.text),
            created_ms: now,
        };
        self.push_message(&mut cmds, message, &conversation.contact, &[]);
        s.store.writer().confirm(cmds).await?;
        drop(held);
        self.release_sender(&t.to, lock);
        s.outbox.wake(&t.channel);
        Ok(())
    }

    /// Closes conversation `id` (`chat.ended`).
    pub async fn close(&self, id: ConversationId) -> Result<(), ChatError> {
        let s = &self.inner;
        let c = self.open_conversation(id).await?;
        let now = crate::clock::unix_ms();
        s.store
            .writer()
            .confirm(vec![
                StoreCmd::ConversationClosed {
                    id: c.id,
                    at_ms: now,
                },
                StoreCmd::event(
                    now,
                    Some(c.session_id),
                    None,
                    Event::ChatEnded {
                        conversation_id: c.id.to_string(),
                    },
                ),
            ])
            .await?;
        if let Some(acd) = self.acd() {
            acd.chat_closed(c.id);
        }
        Ok(())
    }

    /// The messages of conversation `id` up to `up_to` were read, by the customer
    /// (`by_customer`: the replies) or by the other side (the customer's messages).
    pub async fn read(
        &self,
        id: ConversationId,
        up_to: MessageId,
        by_customer: bool,
    ) -> Result<(), ChatError> {
        let s = &self.inner;
        let c = s
            .store
            .get_conversation(id)
            .await?
            .ok_or_else(|| ChatError::NotFound("conversation".into()))?;
        let Some(m) = s.store.message_of(id, up_to).await? else {
            return Err(ChatError::NotFound("message".into()));
        };
        let now = crate::clock::unix_ms();
        s.store
            .writer()
            .confirm(vec![
                StoreCmd::MessagesRead {
                    conversation_id: id,
                    up_to_ms: m.created_ms,
                    by_customer,
                    at_ms: now,
                },
                StoreCmd::event(
                    now,
                    Some(c.session_id),
                    None,
                    Event::ChatRead {
                        conversation_id: id.to_string(),
                        message_id: up_to.to_string(),
                        by: if by_customer { "customer" } else { "agent" }.into(),
                    },
                ),
            ])
            .await?;
        Ok(())
    }

    async fn open_conversation(&self, id: ConversationId) -> Result<ConversationRecord, ChatError> {
        let c = self
            .inner
            .store
            .get_conversation(id)
            .await?
            .ok_or_else(|| ChatError::NotFound("conversation".into()))?;
        if c.state != ConversationState::Open {
            return Err(ChatError::Conflict("the conversation is closed".into()));
        }
        Ok(c)
    }

    /// The uploads `ids` for a message by `owner` in `conversation`: each must be theirs (or
    /// uploaded into that conversation) and not sent yet.
    async fn attachments_for(
        &self,
        ids: &[crate::domain::AttachmentId],
        owner: &str,
        conversation: ConversationId,
    ) -> Result<Vec<crate::store::AttachmentRecord>, ChatError> {
        if ids.len() > MAX_ATTACHMENTS {
            return Err(ChatError::Invalid(format!(
                "at most {MAX_ATTACHMENTS} attachments per message"
            )));
        }
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let a = self.inner.store.get_attachment(*id).await?;
            let usable = a.filter(|a| {
                a.message_id.is_none()
                    && (a.owner == owner || a.conversation_id == Some(conversation))
            });
            match usable {
                Some(a)
                    if !out
                        .iter()
                        .any(|o: &crate::store::AttachmentRecord| o.id == a.id) =>
                {
                    out.push(a)
                }
                _ => {
                    return Err(ChatError::Invalid(format!(
                        "attachment {id} is unknown or already sent"
                    )));
                }
            }
        }
        Ok(out)
    }

    fn push_message(
        &self,
        cmds: &mut Vec<StoreCmd>,
        m: NewMessage,
        contact: &str,
        files: &[crate::store::AttachmentRecord],
    ) {
        let event = Event::ChatMessage {
            conversation_id: m.conversation_id.to_string(),
            message_id: m.id.to_string(),
            channel: m.channel.clone(),
            author: ChatAuthor {
                kind: m.author,
                name: m.author_name.clone(),
            },
            text: m.text.clone(),
            contact: (m.author != AuthorKind::Customer).then(|| contact.to_owned()),
            attachments: files
                .iter()
                .map(crate::event::AttachmentRef::from)
                .collect(),
        };
        let (at, session) = (m.created_ms, m.session_id);
        let (message_id, conversation_id) = (m.id, m.conversation_id);
        cmds.push(StoreCmd::MessageAdded(m));
        for f in files {
            cmds.push(StoreCmd::AttachmentLinked {
                id: f.id,
                conversation_id,
                message_id,
            });
        }
        cmds.push(StoreCmd::event(at, Some(session), None, event));
    }

    /// A conversation about to start (stored by the caller's writes).
    fn start_conversation(
        &self,
        session_id: SessionId,
        customer_id: Option<CustomerId>,
        channel: &str,
        contact: &str,
        now: i64,
    ) -> ConversationRecord {
        ConversationRecord {
            id: ConversationId::new(),
            session_id,
            customer_id,
            channel: channel.to_owned(),
            contact: contact.to_owned(),
            state: ConversationState::Open,
            started_ms: now,
            ended_ms: None,
        }
    }

    /// The joinable session of the customer the identities name (first found wins), with
    /// that customer.
    async fn session_for(
        &self,
        identities: &[Identity],
        now: i64,
    ) -> Result<(Option<SessionId>, Option<CustomerId>), ChatError> {
        let s = &self.inner;
        let mut customer: Option<(CustomerId, &Identity)> = None;
        for i in identities {
            let Some(c) = s.store.customer_for_identity(i.kind, &i.value).await? else {
                continue;
            };
            match customer {
                None => customer = Some((c, i)),
                Some((first, seen)) if first != c => {
                    // One contact, two customers: stored and shown, never merged silently.
                    tracing::info!(kind = %i.kind, "a contact names two customers: conflict noted");
                    s.store.writer().send(StoreCmd::ConflictNoted {
                        a: (first, seen.clone()),
                        b: (c, i.clone()),
                        at_ms: now,
                    });
                }
                Some(_) => {}
            }
        }
        let customer = customer.map(|(c, _)| c);
        let Some(customer) = customer else {
            return Ok((None, None));
        };
        let since = now - s.settings.continuity_ms;
        let session = s.store.joinable_session(customer, since).await?;
        Ok((session, Some(customer)))
    }

    /// The sender's identities, the conversation's contact first: the gateway user id (or
    /// the visitor), then the phone (E.164), then the email (lowercase).
    fn identities(&self, channel: &str, from: &Sender) -> Result<Vec<Identity>, ChatError> {
        let mut out = Vec::new();
        if let Some(v) = &from.visitor {
            out.push(Identity {
                kind: IdentityKind::Chat,
                value: format!("{channel}:{v}"),
            });
        } else if let Some(id) = &from.id {
            out.push(Identity {
                kind: IdentityKind::Chat,
                value: format!("{channel}:{id}"),
            });
        }
        if let Some(p) = &from.phone {
            let Some(e164) = self.inner.settings.phones.normalise(p) else {
                return Err(ChatError::Invalid(format!(
                    "from.phone {p:?} has no digits"
                )));
            };
            out.push(Identity {
                kind: IdentityKind::Phone,
                value: e164,
            });
        }
        if let Some(e) = &from.email {
            let e = e.trim().to_lowercase();
            if !e.contains('@') {
                return Err(ChatError::Invalid(
                    "from.email is not an email address".into(),
                ));
            }
            out.push(Identity {
                kind: IdentityKind::Email,
                value: e,
            });
        }
        Ok(out)
    }

    fn sender_lock(&self, channel: &str, contact: &str) -> SenderLock {
        let mut map = self.inner.senders.lock().unwrap_or_else(|e| e.into_inner());
        map.entry((channel.to_owned(), contact.to_owned()))
            .or_default()
            .clone()
    }

    /// Forgets a sender's lock nobody else holds or waits for.
    fn release_sender(&self, contact: &str, lock: SenderLock) {
        let mut map = self.inner.senders.lock().unwrap_or_else(|e| e.into_inner());
        // Ours and the map's: nobody else has it.
        if Arc::strong_count(&lock) == 2 {
            map.retain(|(_, c), l| !(c == contact && Arc::ptr_eq(l, &lock)));
        }
    }
}

fn check_text(text: &str, with_files: bool) -> Result<(), ChatError> {
    if text.trim().is_empty() && !with_files {
        return Err(ChatError::Invalid("text is empty".into()));
    }
    if text.len() > MAX_TEXT_BYTES {
        return Err(ChatError::Invalid(format!(
            "text is longer than {MAX_TEXT_BYTES} bytes"
        )));
    }
    Ok(())
}
