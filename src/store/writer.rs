//! The single writer task (DESIGN §5: call actors never await the database). Commands are
//! queued without blocking; the task drains whatever is queued (up to [`MAX_BATCH`]) and
//! applies it in one transaction, so throughput grows with load. A failed batch is rolled back
//! and replayed one command per transaction, so only the bad command is lost (and counted).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::{AnyConnection, AnyPool};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::agents;
use super::attachments::{self, AttachmentId, AttachmentRecord};
use super::attributes;
use super::bindings::{self, Binding};
use super::calls::{self, HangupBy, Identity, NewCall, NewLeg, NewSession};
use super::chat::{self, ConversationId, MessageId, NewConversation, NewMessage};
use super::events::{self, EventRecord};
use super::recordings::{self, EndedRecording, NewRecording};
use super::{CallId, LegId, SessionId, StoreError};

/// A write for the writer task.
#[derive(Debug)]
pub enum StoreCmd {
    /// Insert or refresh a binding (keyed by extension and Contact URI).
    UpsertBinding(Binding),
    /// Remove one binding.
    RemoveBinding {
        /// Extension.
        ext: String,
        /// Contact URI as registered.
        contact_uri: String,
    },
    /// Remove all bindings of an extension (`Contact: *`, RFC 3261 §10.2.2).
    RemoveAllBindings {
        /// Extension.
        ext: String,
    },
    /// Delete bindings with `expires_at_ms <= now_ms`.
    PruneExpired {
        /// Now, Unix ms.
        now_ms: i64,
    },
    /// A session starts without a call (chat); the caller identity resolves to a customer.
    SessionStarted(NewSession),
    /// Replace a session's attributes (a JSON object).
    SessionAttributes {
        /// Session.
        session_id: SessionId,
        /// New attributes.
        attributes: serde_json::Value,
    },
    /// Set one session attribute (insert or replace: the last value written wins), e.g. what
    /// the caller entered in the IVR. The session row must exist.
    SessionAttribute {
        /// Session.
        session_id: SessionId,
        /// The call that set it, if any.
        call_id: Option<CallId>,
        /// Attribute name.
        name: String,
        /// Value.
        value: String,
        /// When, Unix ms.
        at_ms: i64,
    },
    /// A session ends.
    SessionEnded {
        /// Session.
        session_id: SessionId,
        /// End, Unix ms.
        at_ms: i64,
    },
    /// A call starts: resolves the caller to a customer (created if new), creates the session
    /// if new and the call row, in one transaction.
    CallStarted(NewCall),
    /// The call was answered (first answer wins).
    CallAnswered {
        /// Call.
        call_id: CallId,
        /// Answer, Unix ms.
        at_ms: i64,
    },
    /// The call ended; durations are computed.
    CallEnded {
        /// Call.
        call_id: CallId,
        /// End, Unix ms.
        at_ms: i64,
        /// Cause text (`normal_clearing`, `no_answer`, `busy`, …).
        hangup_cause: String,
        /// Who hung up.
        hangup_by: HangupBy,
        /// Final SIP status code, if one was sent or received.
        final_code: Option<u16>,
    },
    /// A leg starts.
    LegStarted(NewLeg),
    /// A leg was answered.
    LegAnswered {
        /// Leg.
        leg_id: LegId,
        /// Answer, Unix ms.
        at_ms: i64,
    },
    /// A leg ended.
    LegEnded {
        /// Leg.
        leg_id: LegId,
        /// End, Unix ms.
        at_ms: i64,
        /// Final SIP status code.
        final_code: Option<u16>,
    },
    /// A leg's media statistics, when its media session ends.
    LegMedia {
        /// Leg.
        leg_id: LegId,
        /// The codec the leg used (`PCMU`, `opus`, …).
        codec: Option<String>,
        /// RTP statistics and MOS.
        stats: super::LegMediaStats,
    },
    /// Append to the event log (numbered by the writer).
    Event {
        /// When, Unix ms.
        at_ms: i64,
        /// Kind (`call.started`, …).
        kind: String,
        /// Session, if any.
        session_id: Option<SessionId>,
        /// Call, if any.
        call_id: Option<CallId>,
        /// Payload.
        data: serde_json::Value,
    },
    /// A recording started: its row is inserted in state `recording`.
    RecordingStarted(NewRecording),
    /// A recording ended: state (`complete`/`failed`), duration, size and hash are filled.
    RecordingEnded(EndedRecording),
    /// Another identity of the customer of session `session_id` (a chat's phone and email,
    /// a gateway id); an identity that already names a customer is left as it is.
    IdentityAdded {
        session_id: SessionId,
        identity: Identity,
        at_ms: i64,
    },
    /// A conversation starts (its session exists).
    ConversationStarted(NewConversation),
    /// A conversation is closed.
    ConversationClosed { id: ConversationId, at_ms: i64 },
    /// A message is stored (its session's last activity moves to it).
    MessageAdded(NewMessage),
    /// A conversation's messages written up to `up_to_ms` by the other side were read: the
    /// replies by the customer (`by_customer`), or the customer's by an agent.
    MessagesRead {
        conversation_id: ConversationId,
        up_to_ms: i64,
        by_customer: bool,
        at_ms: i64,
    },
    /// An uploaded file's row (its bytes are on disk already).
    AttachmentAdded(AttachmentRecord),
    /// An attachment is carried by a message (fails if another message carries it).
    AttachmentLinked {
        id: AttachmentId,
        conversation_id: ConversationId,
        message_id: MessageId,
    },
    /// A contact named two customers (e.g. a phone of one and an email of another): the
    /// conflict is stored once per pair, never merged silently.
    ConflictNoted {
        a: (super::CustomerId, Identity),
        b: (super::CustomerId, Identity),
        at_ms: i64,
    },
    /// An agent's visible state changed (`presence`: also what they chose, kept across
    /// restarts).
    AgentState {
        agent_id: String,
        state: String,
        reason: Option<String>,
        presence: Option<String>,
        at_ms: i64,
    },
    /// A contact joined a queue.
    TaskJoined(super::agents::NewTask),
    /// An agent took the task (`outcome`: `answered`, or `callback` for a callback).
    TaskAnswered {
        id: String,
        agent_id: String,
        outcome: String,
        at_ms: i64,
    },
    /// The task left its queue without an agent (`abandoned`, `callback`, `timeout`, …).
    TaskLeft {
        id: String,
        outcome: String,
        at_ms: i64,
    },
    /// The agent finished the task (the call or chat ended).
    TaskEnded { id: String, at_ms: i64 },
    /// Commands applied together in one transaction; `done` hears whether they were
    /// committed ([`WriterHandle::confirm`]). Not nested.
    Confirmed { cmds: Vec<StoreCmd>, done: Confirm },
    /// Answered once everything queued before it is committed (or failed and logged).
    Flush(oneshot::Sender<()>),
}

/// Where the writer tells whether a [`StoreCmd::Confirmed`] group was committed.
#[derive(Debug)]
pub struct Confirm(std::sync::Mutex<Option<oneshot::Sender<bool>>>);

impl Confirm {
    fn tell(&self, committed: bool) {
        let sender = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(tx) = sender {
            let _ = tx.send(committed); // the waiter may have gone
        }
    }
}

impl StoreCmd {
    /// Appends `event` to the event log (numbered by the writer, published once committed).
    pub fn event(
        at_ms: i64,
        session_id: Option<SessionId>,
        call_id: Option<CallId>,
        event: crate::event::Event,
    ) -> StoreCmd {
        let (kind, data) = event.into_parts();
        StoreCmd::Event {
            at_ms,
            kind,
            session_id,
            call_id,
            data,
        }
    }
}

/// Sends commands to the writer task. Cheap to clone; never blocks.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<StoreCmd>,
    stats: Arc<Stats>,
}

#[derive(Default)]
struct Stats {
    dropped: AtomicU64,
    failed: AtomicU64,
}

/// Commands that may wait in the queue before new ones are dropped (and counted).
pub const QUEUE_CAPACITY: usize = 1 << 17;
/// Most commands applied in one transaction.
pub const MAX_BATCH: usize = 1024;

impl WriterHandle {
    /// Queues a command without waiting. If the queue is full or the writer has stopped, the
    /// command is dropped, counted in [`WriterHandle::dropped`] and logged.
    /// A handle whose commands come out of the returned receiver instead of reaching the
    /// database: tests see exactly what a caller writes.
    pub fn detached() -> (WriterHandle, mpsc::Receiver<StoreCmd>) {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let handle = WriterHandle {
            tx,
            stats: Arc::default(),
        };
        (handle, rx)
    }

    pub fn send(&self, cmd: StoreCmd) {
        if let Err(e) = self.tx.try_send(cmd) {
            let n = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            let why = match e {
                mpsc::error::TrySendError::Full(_) => "queue full",
                mpsc::error::TrySendError::Closed(_) => "writer stopped",
            };
            if n.is_power_of_two() {
                tracing::error!(dropped = n, why, "store command dropped");
            }
        }
    }

    /// Waits until everything queued before this call is written.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(StoreCmd::Flush(tx))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)
    }

    /// Applies `cmds` in one transaction and waits until they are committed (waiting for
    /// room in the queue rather than dropping them): what a caller is answered about is
    /// stored. Their events are published after the commit, as always.
    pub async fn confirm(&self, cmds: Vec<StoreCmd>) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        let done = Confirm(std::sync::Mutex::new(Some(tx)));
        self.tx
            .send(StoreCmd::Confirmed { cmds, done })
            .await
            .map_err(|_| StoreError::WriterGone)?;
        match rx.await {
            Ok(true) => Ok(()),
            Ok(false) => Err(StoreError::NotStored),
            Err(_) => Err(StoreError::WriterGone),
        }
    }

    /// Commands dropped because the queue was full or the writer had stopped.
    pub fn dropped(&self) -> u64 {
        self.stats.dropped.load(Ordering::Relaxed)
    }

    /// Commands that failed in the database (logged).
    pub fn failed(&self) -> u64 {
        self.stats.failed.load(Ordering::Relaxed)
    }

    /// Commands waiting in the queue.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

impl std::fmt::Debug for WriterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterHandle")
            .field("queued", &self.queued())
            .field("dropped", &self.dropped())
            .field("failed", &self.failed())
            .finish()
    }
}

/// Starts the writer task; it ends when every [`WriterHandle`] is dropped.
pub(super) fn spawn(
    pool: AnyPool,
    next_seq: i64,
    events: broadcast::Sender<EventRecord>,
) -> WriterHandle {
    let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
    let stats = Arc::new(Stats::default());
    let writer = Writer {
        pool,
        next_seq,
        events,
        stats: stats.clone(),
    };
    tokio::spawn(writer.run(rx));
    WriterHandle { tx, stats }
}

struct Writer {
    pool: AnyPool,
    next_seq: i64,
    events: broadcast::Sender<EventRecord>,
    stats: Arc<Stats>,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<StoreCmd>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
            let mut flushes = Vec::new();
            let mut cmds = Vec::with_capacity(batch.len());
            for cmd in batch.drain(..) {
                match cmd {
                    StoreCmd::Flush(done) => flushes.push(done),
                    cmd => cmds.push(cmd),
                }
            }
            if !cmds.is_empty() {
                self.write(&cmds).await;
            }
            for done in flushes {
                let _ = done.send(()); // the waiter may have gone; nothing to do
            }
        }
        tracing::debug!("store writer stopped");
    }

    /// Writes one batch in one transaction; on failure, one transaction per command.
    async fn write(&mut self, cmds: &[StoreCmd]) {
        let seq_before = self.next_seq;
        let mut written = Vec::new();
        match self.write_tx(cmds, &mut written).await {
            Ok(()) => {
                self.publish(written);
                confirm(cmds, true);
            }
            Err(e) => {
                tracing::warn!(error = %e, n = cmds.len(), "store batch failed; retrying one by one");
                self.next_seq = seq_before;
                for cmd in cmds {
                    let seq_before = self.next_seq;
                    let mut written = Vec::new();
                    match self.write_tx(std::slice::from_ref(cmd), &mut written).await {
                        Ok(()) => {
                            self.publish(written);
                            confirm(std::slice::from_ref(cmd), true);
                        }
                        Err(e) => {
                            confirm(std::slice::from_ref(cmd), false);
                            self.next_seq = seq_before;
                            self.stats.failed.fetch_add(1, Ordering::Relaxed);
                            tracing::error!(error = %e, cmd = cmd_name(cmd), "store command failed");
                        }
                    }
                }
            }
        }
    }

    async fn write_tx(
        &mut self,
        cmds: &[StoreCmd],
        written: &mut Vec<EventRecord>,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        for cmd in cmds {
            if let Err(e) = self.apply(&mut tx, cmd, written).await {
                // Rolled back here, not when the pool next hands out this connection: a
                // dropped transaction keeps SQLite's write lock, and the retry that follows
                // on another connection would find the database locked.
                if let Err(rollback) = tx.rollback().await {
                    tracing::warn!(error = %rollback, "store rollback failed");
                }
                return Err(e);
            }
        }
        tx.commit().await
    }

    async fn apply(
        &mut self,
        conn: &mut AnyConnection,
        cmd: &StoreCmd,
        written: &mut Vec<EventRecord>,
    ) -> Result<(), sqlx::Error> {
        match cmd {
            StoreCmd::UpsertBinding(b) => bindings::upsert(conn, b).await,
            StoreCmd::RemoveBinding { ext, contact_uri } => {
                bindings::remove(conn, ext, contact_uri).await
            }
            StoreCmd::RemoveAllBindings { ext } => bindings::remove_all(conn, ext).await,
            StoreCmd::PruneExpired { now_ms } => bindings::prune(conn, *now_ms).await,
            StoreCmd::SessionStarted(s) => calls::session_started(conn, s).await,
            StoreCmd::SessionAttributes {
                session_id,
                attributes,
            } => calls::session_attributes(conn, *session_id, attributes).await,
            StoreCmd::SessionAttribute {
                session_id,
                call_id,
                name,
                value,
                at_ms,
            } => attributes::upsert(conn, *session_id, *call_id, name, value, *at_ms).await,
            StoreCmd::SessionEnded { session_id, at_ms } => {
                calls::session_ended(conn, *session_id, *at_ms).await
            }
            StoreCmd::CallStarted(c) => calls::call_started(conn, c).await,
            StoreCmd::CallAnswered { call_id, at_ms } => {
                calls::call_answered(conn, *call_id, *at_ms).await
            }
            StoreCmd::CallEnded {
                call_id,
                at_ms,
                hangup_cause,
                hangup_by,
                final_code,
            } => {
                calls::call_ended(
                    conn,
                    *call_id,
                    *at_ms,
                    hangup_cause,
                    *hangup_by,
                    *final_code,
                )
                .await
            }
            StoreCmd::LegStarted(l) => calls::leg_started(conn, l).await,
            StoreCmd::LegAnswered { leg_id, at_ms } => {
                calls::leg_answered(conn, *leg_id, *at_ms).await
            }
            StoreCmd::LegEnded {
                leg_id,
                at_ms,
                final_code,
            } => calls::leg_ended(conn, *leg_id, *at_ms, *final_code).await,
            StoreCmd::LegMedia {
                leg_id,
                codec,
                stats,
            } => calls::leg_media(conn, *leg_id, codec.as_deref(), stats).await,
            StoreCmd::Event {
                at_ms,
                kind,
                session_id,
                call_id,
                data,
            } => {
                let record = EventRecord {
                    seq: self.next_seq,
                    at_ms: *at_ms,
                    kind: kind.clone(),
                    session_id: *session_id,
                    call_id: *call_id,
                    data: data.clone(),
                };
                events::append(conn, &record).await?;
                self.next_seq += 1;
                written.push(record);
                Ok(())
            }
            StoreCmd::RecordingStarted(r) => recordings::recording_started(conn, r).await,
            StoreCmd::RecordingEnded(r) => recordings::recording_ended(conn, r).await,
            StoreCmd::IdentityAdded {
                session_id,
                identity,
                at_ms,
            } => calls::identity_added(conn, *session_id, identity, *at_ms).await,
            StoreCmd::ConversationStarted(c) => chat::conversation_started(conn, c).await,
            StoreCmd::ConversationClosed { id, at_ms } => {
                chat::conversation_closed(conn, *id, *at_ms).await
            }
            StoreCmd::MessageAdded(m) => chat::message_added(conn, m).await,
            StoreCmd::MessagesRead {
                conversation_id,
                up_to_ms,
                by_customer,
                at_ms,
            } => chat::messages_read(conn, *conversation_id, *up_to_ms, *by_customer, *at_ms).await,
            StoreCmd::AttachmentAdded(a) => attachments::attachment_added(conn, a).await,
            StoreCmd::AttachmentLinked {
                id,
                conversation_id,
                message_id,
            } => attachments::attachment_linked(conn, *id, *conversation_id, *message_id).await,
            StoreCmd::ConflictNoted { a, b, at_ms } => {
                super::customers::conflict_noted(conn, (a.0, &a.1), (b.0, &b.1), *at_ms).await
            }
            StoreCmd::AgentState {
                agent_id,
                state,
                reason,
                presence,
                at_ms,
            } => {
                agents::state_changed(
                    conn,
                    agent_id,
                    state,
                    reason.as_deref(),
                    presence.as_deref(),
                    *at_ms,
                )
                .await
            }
            StoreCmd::TaskJoined(t) => agents::task_joined(conn, t).await,
            StoreCmd::TaskAnswered {
                id,
                agent_id,
                outcome,
                at_ms,
            } => agents::task_answered(conn, id, agent_id, outcome, *at_ms).await,
            StoreCmd::TaskLeft { id, outcome, at_ms } => {
                agents::task_left(conn, id, outcome, *at_ms).await
            }
            StoreCmd::TaskEnded { id, at_ms } => agents::task_ended(conn, id, *at_ms).await,
            StoreCmd::Confirmed { cmds, .. } => {
                for cmd in cmds {
                    if matches!(cmd, StoreCmd::Confirmed { .. }) {
                        return Err(sqlx::Error::Protocol("nested confirmed writes".into()));
                    }
                    Box::pin(self.apply(conn, cmd, written)).await?;
                }
                Ok(())
            }
            StoreCmd::Flush(_) => Ok(()),
        }
    }

    fn publish(&self, written: Vec<EventRecord>) {
        for e in written {
            let _ = self.events.send(e); // no subscribers is fine
        }
    }
}

fn cmd_name(cmd: &StoreCmd) -> &'static str {
    match cmd {
        StoreCmd::UpsertBinding(_) => "UpsertBinding",
        StoreCmd::RemoveBinding { .. } => "RemoveBinding",
        StoreCmd::RemoveAllBindings { .. } => "RemoveAllBindings",
        StoreCmd::PruneExpired { .. } => "PruneExpired",
        StoreCmd::SessionStarted(_) => "SessionStarted",
        StoreCmd::SessionAttributes { .. } => "SessionAttributes",
        StoreCmd::SessionAttribute { .. } => "SessionAttribute",
        StoreCmd::SessionEnded { .. } => "SessionEnded",
        StoreCmd::CallStarted(_) => "CallStarted",
        StoreCmd::CallAnswered { .. } => "CallAnswered",
        StoreCmd::CallEnded { .. } => "CallEnded",
        StoreCmd::LegStarted(_) => "LegStarted",
        StoreCmd::LegAnswered { .. } => "LegAnswered",
        StoreCmd::LegEnded { .. } => "LegEnded",
        StoreCmd::LegMedia { .. } => "LegMedia",
        StoreCmd::Event { .. } => "Event",
        StoreCmd::RecordingStarted(_) => "RecordingStarted",
        StoreCmd::RecordingEnded(_) => "RecordingEnded",
        StoreCmd::IdentityAdded { .. } => "IdentityAdded",
        StoreCmd::ConversationStarted(_) => "ConversationStarted",
        StoreCmd::ConversationClosed { .. } => "ConversationClosed",
        StoreCmd::MessageAdded(_) => "MessageAdded",
        StoreCmd::MessagesRead { .. } => "MessagesRead",
        StoreCmd::AttachmentAdded(_) => "AttachmentAdded",
        StoreCmd::AttachmentLinked { .. } => "AttachmentLinked",
        StoreCmd::ConflictNoted { .. } => "ConflictNoted",
        StoreCmd::AgentState { .. } => "AgentState",
        StoreCmd::TaskJoined(_) => "TaskJoined",
        StoreCmd::TaskAnswered { .. } => "TaskAnswered",
        StoreCmd::TaskLeft { .. } => "TaskLeft",
        StoreCmd::TaskEnded { .. } => "TaskEnded",
        StoreCmd::Confirmed { .. } => "Confirmed",
        StoreCmd::Flush(_) => "Flush",
    }
}

/// Tells the waiters of the confirmed groups among `cmds` whether they were committed.
fn confirm(cmds: &[StoreCmd], committed: bool) {
    for cmd in cmds {
        if let StoreCmd::Confirmed { done, .. } = cmd {
            done.tell(committed);
        }
    }
}
