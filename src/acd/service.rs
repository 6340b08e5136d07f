//! The ACD's driver (DRIVER): one task owns the [`Engine`], the agents as stored, and where
//! each waiting contact (a call actor, the chat side) hears what happens to it. Calls and chats
//! join and leave through an [`Acd`] handle without awaiting; the engine's actions come out as
//! [`ContactEvent`]s to the contact, `agent.state` / `queue.*` / `task.*` events and task rows
//! through the store writer (committed before they are published), and Prometheus gauges.
//!
//! Time is tokio's (`clock::tokio_now`), so the whole service runs in virtual time in tests.
//! A callback contact (the caller hung up to be called back) is served here: when an agent
//! is offered it, the agent's phone is called first, then the customer, in the same session
//! ([`CallbackRequest`], carried out by the server with the call registry).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::engine::{
    Action, AgentSpec, AgentState, ContactSpec, Engine, ExitReason, Live, Media, Presence,
    QueueSpec,
};
use crate::domain::{CallId, ConversationId, SessionId};
use crate::event::Event;
use crate::ivr::reload::PlanHandle;
use crate::store::{AgentRecord, NewTask, StoreCmd, WriterHandle};

/// What happens to a waiting contact, told to whoever holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContactEvent {
    /// Ring `extension` (the agent's phones) for at most `timeout`; or show the chat.
    Offer {
        agent: String,
        extension: String,
        timeout: Duration,
        /// When the ACD got the input that led to this offer (an agent freed, a contact
        /// joined): the call measures the delay to its INVITE from it.
        since: Instant,
    },
    /// Stop ringing that agent (taken by another, no answer, the agent left).
    Withdraw { agent: String },
    /// Leave the queue without an agent.
    Exit { reason: ExitReason },
    /// Where the contact stands (asked with [`Acd::ask_position`]).
    Position { position: usize, wait: Duration },
}

/// A contact joining a queue.
#[derive(Debug)]
pub struct Join {
    pub queue: String,
    pub media: Media,
    pub priority: i32,
    pub skills: Vec<(String, u8)>,
    pub session_id: Option<SessionId>,
    pub call_id: Option<CallId>,
    pub conversation_id: Option<ConversationId>,
    /// Where this contact's [`ContactEvent`]s go.
    pub events: mpsc::UnboundedSender<(u64, ContactEvent)>,
}

/// Why a contact leaves the line by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeftReason {
    /// The caller hung up (the chatter closed) while waiting.
    Abandoned,
}

/// Calls the agent, then the customer, in the customer's session (a callback).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackRequest {
    /// The ACD contact: the placed call reports `done` on it when it ends.
    pub contact: u64,
    pub task_id: String,
    pub agent: String,
    pub agent_extension: String,
    /// The customer's number or extension.
    pub customer: String,
    pub session_id: Option<SessionId>,
}

/// Where a conversation is transferred.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferTo {
    /// Straight to this agent (no offer: it is theirs).
    Agent(String),
    /// Back to a queue, to be offered again.
    Queue(String),
}

/// Why a presence change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AcdError {
    #[error("no agent {0}")]
    NoAgent(String),
    #[error("the ACD is not running")]
    Stopped,
    #[error("this task is not offered to that agent")]
    NotOffered,
    #[error("this conversation is not routed by the ACD")]
    NotRouted,
    #[error("no queue {0}")]
    NoQueue(String),
}

/// A waiting or handled contact as the service knows it.
#[derive(Debug, Clone)]
struct Known {
    task_id: String,
    queue: String,
    media: Media,
    joined: Instant,
    session_id: Option<SessionId>,
    call_id: Option<CallId>,
    conversation_id: Option<ConversationId>,
    events: mpsc::UnboundedSender<(u64, ContactEvent)>,
    /// The customer to call back (set when they chose a callback).
    callback: Option<String>,
    /// Handled by this agent.
    agent: Option<String>,
}

enum Cmd {
    Join(u64, Box<Join>),
    Left(u64, LeftReason),
    Answered(u64, String),
    Rejected(u64, String, String),
    Done(u64),
    Callback(u64, String),
    Priority(u64, i32),
    Presence(
        String,
        Presence,
        Option<String>,
        oneshot::Sender<Result<(AgentState, Option<String>), AcdError>>,
    ),
    Agent(AgentRecord),
    RemoveAgent(String),
    Live(String, oneshot::Sender<Live>),
    Position(u64, oneshot::Sender<Option<(usize, Duration)>>),
    AskPosition(u64),
    AgentState(
        String,
        oneshot::Sender<Option<(AgentState, Option<String>)>>,
    ),
    AcceptChat(
        ConversationId,
        String,
        oneshot::Sender<Result<String, AcdError>>,
    ),
    TransferChat(
        ConversationId,
        TransferTo,
        oneshot::Sender<Result<String, AcdError>>,
    ),
    ChatClosed(ConversationId),
    Decisions(oneshot::Sender<u64>),
}

/// The handle calls, chats and the API use. Cheap to clone; never blocks.
#[derive(Clone)]
pub struct Acd {
    tx: mpsc::UnboundedSender<Cmd>,
    next: Arc<AtomicU64>,
}

impl std::fmt::Debug for Acd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Acd")
    }
}

impl Acd {
    /// A contact joins; its id comes back at once (events follow on `join.events`).
    pub fn join(&self, join: Join) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let _ = self.tx.send(Cmd::Join(id, Box::new(join)));
        id
    }

    pub fn left(&self, contact: u64, reason: LeftReason) {
        let _ = self.tx.send(Cmd::Left(contact, reason));
    }

    /// The agent's phone answered (the caller is bridged to them).
    pub fn answered(&self, contact: u64, agent: &str) {
        let _ = self.tx.send(Cmd::Answered(contact, agent.to_owned()));
    }

    /// The agent's phone declined or could not be reached.
    pub fn rejected(&self, contact: u64, agent: &str, reason: &str) {
        let _ = self
            .tx
            .send(Cmd::Rejected(contact, agent.to_owned(), reason.to_owned()));
    }

    /// The agent finished the contact (the call ended).
    pub fn done(&self, contact: u64) {
        let _ = self.tx.send(Cmd::Done(contact));
    }

    /// The caller chose a callback to `customer` and hangs up; the contact keeps its place.
    pub fn callback(&self, contact: u64, customer: &str) {
        let _ = self.tx.send(Cmd::Callback(contact, customer.to_owned()));
    }

    pub fn priority(&self, contact: u64, priority: i32) {
        let _ = self.tx.send(Cmd::Priority(contact, priority));
    }

    /// Sets an agent's presence; answers their visible state after it.
    pub async fn set_presence(
        &self,
        agent: &str,
        presence: Presence,
        reason: Option<String>,
    ) -> Result<(AgentState, Option<String>), AcdError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Presence(agent.to_owned(), presence, reason, tx))
            .map_err(|_| AcdError::Stopped)?;
        rx.await.map_err(|_| AcdError::Stopped)?
    }

    /// An agent was added or changed.
    pub fn agent(&self, record: AgentRecord) {
        let _ = self.tx.send(Cmd::Agent(record));
    }

    pub fn remove_agent(&self, id: &str) {
        let _ = self.tx.send(Cmd::RemoveAgent(id.to_owned()));
    }

    pub async fn live(&self, queue: &str) -> Live {
        let (tx, rx) = oneshot::channel();
        let _ = self.tx.send(Cmd::Live(queue.to_owned(), tx));
        rx.await.unwrap_or_default()
    }

    /// Position and expected wait of a waiting contact.
    pub async fn position(&self, contact: u64) -> Option<(usize, Duration)> {
        let (tx, rx) = oneshot::channel();
        let _ = self.tx.send(Cmd::Position(contact, tx));
        rx.await.ok().flatten()
    }

    /// Position and expected wait, told to the contact as [`ContactEvent::Position`].
    pub fn ask_position(&self, contact: u64) {
        let _ = self.tx.send(Cmd::AskPosition(contact));
    }

    pub async fn agent_state(&self, agent: &str) -> Option<(AgentState, Option<String>)> {
        let (tx, rx) = oneshot::channel();
        let _ = self.tx.send(Cmd::AgentState(agent.to_owned(), tx));
        rx.await.ok().flatten()
    }

    /// The agent accepts the chat offered to them; answers the task id.
    pub async fn accept_chat(
        &self,
        conversation: ConversationId,
        agent: &str,
    ) -> Result<String, AcdError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Cmd::AcceptChat(conversation, agent.to_owned(), tx))
            .map_err(|_| AcdError::Stopped)?;
        rx.await.map_err(|_| AcdError::Stopped)?
    }

    /// Transfers a conversation (waiting or handled) to an agent or a queue, in the same
    /// session; the agent who had it is free (after wrap-up). Answers the new task's id.
    pub async fn transfer_chat(
        &self,
        conversation: ConversationId,
        to: TransferTo,
    ) -> Result<String, AcdError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Cmd::TransferChat(conversation, to, tx))
            .map_err(|_| AcdError::Stopped)?;
        rx.await.map_err(|_| AcdError::Stopped)?
    }

    /// A conversation was closed: waiting, it leaves; handled, its agent is free.
    pub fn chat_closed(&self, conversation: ConversationId) {
        let _ = self.tx.send(Cmd::ChatClosed(conversation));
    }

    /// Routing decisions so far (for the benchmark).
    pub async fn decisions(&self) -> u64 {
        let (tx, rx) = oneshot::channel();
        let _ = self.tx.send(Cmd::Decisions(tx));
        rx.await.unwrap_or(0)
    }
}

struct Service {
    engine: Engine,
    agents: HashMap<String, AgentRecord>,
    contacts: HashMap<u64, Known>,
    chats: HashMap<ConversationId, u64>,
    writer: WriterHandle,
    callbacks: mpsc::UnboundedSender<CallbackRequest>,
    /// Contact ids, shared with the handles.
    next: Arc<AtomicU64>,
}

/// Starts the service with the stored agents (their chosen presence restored) and the plan's
/// queues (re-read on every reload; a queue removed keeps serving its contacts).
pub fn start(
    agents: Vec<AgentRecord>,
    mut plan: PlanHandle,
    writer: WriterHandle,
    callbacks: mpsc::UnboundedSender<CallbackRequest>,
) -> Acd {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let next = Arc::new(AtomicU64::new(0));
    let mut service = Service {
        next: next.clone(),
        engine: Engine::new(),
        agents: HashMap::new(),
        contacts: HashMap::new(),
        chats: HashMap::new(),
        writer,
        callbacks,
    };
    let now = crate::clock::tokio_now();
    service.sync_queues(&plan);
    for a in agents {
        service.set_agent(now, a, true);
    }
    service.pump(now);
    tokio::spawn(async move {
        // A fixed plan (or a stopped reloader) never changes: stop asking.
        let mut plan_live = true;
        // The gauges scan every agent and contact: once a second, not on every input.
        let mut gauges = tokio::time::interval(GAUGE_PERIOD);
        gauges.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = service.engine.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(Instant::from_std(at)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                cmd = rx.recv() => {
                    let Some(cmd) = cmd else { break };
                    let now = crate::clock::tokio_now();
                    service.handle(now, cmd);
                    service.pump(now);
                }
                () = sleep => {
                    let now = crate::clock::tokio_now();
                    service.engine.handle_timeout(now.into_std());
                    service.pump(now);
                }
                _ = gauges.tick() => service.gauges(crate::clock::tokio_now()),
                changed = plan.changed(), if plan_live => {
                    if changed {
                        service.sync_queues(&plan);
                    } else {
                        plan_live = false;
                    }
                }
            }
        }
        tracing::debug!("acd stopped");
    });
    Acd { tx, next }
}

/// How often the queue and agent gauges are refreshed.
const GAUGE_PERIOD: Duration = Duration::from_secs(1);

fn presence_str(p: Presence) -> &'static str {
    match p {
        Presence::Available => "available",
        Presence::Break => "break",
        Presence::Offline => "offline",
    }
}

/// `available`, `break` or `offline`.
pub fn parse_presence(s: &str) -> Option<Presence> {
    match s {
        "available" => Some(Presence::Available),
        "break" => Some(Presence::Break),
        "offline" => Some(Presence::Offline),
        _ => None,
    }
}

impl Service {
    fn sync_queues(&mut self, plan: &PlanHandle) {
        let plan = plan.current();
        let gone: Vec<String> = self
            .engine
            .queue_names()
            .filter(|q| !plan.queues.contains_key(*q))
            .cloned()
            .collect();
        for q in gone {
            self.engine.remove_queue(&q);
        }
        for (name, def) in &plan.queues {
            let spec: QueueSpec = def.spec();
            self.engine.set_queue(name, spec);
        }
    }

    fn set_agent(&mut self, now: Instant, a: AgentRecord, restore: bool) {
        let spec = AgentSpec {
            skills: a.skills.clone(),
            capacity: vec![(Media::Voice, a.voice), (Media::Chat, a.chat)],
            no_chat_on_call: a.no_chat_on_call,
        };
        let id = a.id.clone();
        let presence = parse_presence(&a.presence).unwrap_or(Presence::Offline);
        let reason = a.reason.clone();
        self.engine.set_agent(now.into_std(), &id, &spec);
        self.agents.insert(id.clone(), a);
        if restore && presence != Presence::Offline {
            self.engine
                .handle_presence(now.into_std(), &id, presence, reason);
        }
    }

    fn event(&self, known: Option<&Known>, event: Event) {
        self.writer.send(StoreCmd::event(
            crate::clock::unix_ms(),
            known.and_then(|k| k.session_id),
            known.and_then(|k| k.call_id),
            event,
        ));
    }

    fn tell(&self, contact: u64, event: ContactEvent) {
        if let Some(k) = self.contacts.get(&contact) {
            let _ = k.events.send((contact, event)); // the contact may have gone
        }
    }

    /// A contact left the line for good: its row (`TaskLeft`, unless an agent took it: then
    /// `TaskAnswered` says so) and `queue.left`.
    fn left_queue(&mut self, contact: u64, outcome: &str) {
        let Some(k) = self.contacts.get(&contact) else {
            return;
        };
        let waited = crate::clock::tokio_now()
            .saturating_duration_since(k.joined)
            .as_millis() as i64;
        if !matches!(outcome, "answered" | "callback") {
            self.writer.send(StoreCmd::TaskLeft {
                id: k.task_id.clone(),
                outcome: outcome.to_owned(),
                at_ms: crate::clock::unix_ms(),
            });
        }
        self.event(
            Some(k),
            Event::QueueLeft {
                queue: k.queue.clone(),
                task_id: k.task_id.clone(),
                reason: outcome.to_owned(),
                waited_ms: waited,
            },
        );
    }

    fn forget(&mut self, contact: u64) {
        if let Some(k) = self.contacts.remove(&contact)
            && let Some(c) = k.conversation_id
        {
            self.chats.remove(&c);
        }
    }

    /// `agent` took `contact`; it left the queue as `outcome` (`answered`, `callback`).
    fn accepted(&mut self, now: Instant, contact: u64, agent: &str, outcome: &str) {
        let std_now = now.into_std();
        if !self.engine.handle_accept(std_now, contact, agent) {
            // The phone answered after the offer was withdrawn (a break, a timeout): the
            // call is with this agent all the same, so it is theirs.
            let (queue, media) = match self.contacts.get(&contact) {
                Some(k) => (k.queue.clone(), k.media),
                None => return,
            };
            self.engine
                .handle_assign(std_now, contact, agent, &queue, media);
        }
        self.taken(contact, agent, outcome);
    }

    /// `contact` is `agent`'s now: its row, `queue.left`, `task.accepted`, `chat.assigned`.
    fn taken(&mut self, contact: u64, agent: &str, outcome: &str) {
        self.left_queue(contact, outcome);
        let Some(k) = self.contacts.get_mut(&contact) else {
            return;
        };
        k.agent = Some(agent.to_owned());
        let k = k.clone();
        self.writer.send(StoreCmd::TaskAnswered {
            id: k.task_id.clone(),
            agent_id: agent.to_owned(),
            outcome: outcome.to_owned(),
            at_ms: crate::clock::unix_ms(),
        });
        self.event(
            Some(&k),
            Event::TaskAccepted {
                queue: k.queue.clone(),
                task_id: k.task_id.clone(),
                agent_id: agent.to_owned(),
            },
        );
        if let Some(c) = k.conversation_id {
            self.event(
                Some(&k),
                Event::ChatAssigned {
                    conversation_id: c.to_string(),
                    agent_id: agent.to_owned(),
                },
            );
        }
    }

    fn handle(&mut self, now: Instant, cmd: Cmd) {
        let std_now = now.into_std();
        match cmd {
            Cmd::Join(id, join) => {
                let task_id = uuid::Uuid::new_v4().to_string();
                let known = Known {
                    task_id: task_id.clone(),
                    queue: join.queue.clone(),
                    media: join.media,
                    joined: now,
                    session_id: join.session_id,
                    call_id: join.call_id,
                    conversation_id: join.conversation_id,
                    events: join.events,
                    callback: None,
                    agent: None,
                };
                self.writer.send(StoreCmd::TaskJoined(NewTask {
                    id: task_id.clone(),
                    queue: join.queue.clone(),
                    media: join.media.as_str().to_owned(),
                    session_id: join.session_id.map(|s| s.to_string()),
                    call_id: join.call_id.map(|c| c.to_string()),
                    conversation_id: join.conversation_id.map(|c| c.to_string()),
                    priority: join.priority,
                    joined_ms: crate::clock::unix_ms(),
                }));
                self.event(
                    Some(&known),
                    Event::QueueJoined {
                        queue: join.queue.clone(),
                        task_id,
                        media: join.media.as_str().to_owned(),
                        priority: join.priority,
                    },
                );
                if let Some(c) = join.conversation_id {
                    self.chats.insert(c, id);
                }
                self.contacts.insert(id, known);
                self.engine.handle_contact(
                    std_now,
                    id,
                    ContactSpec {
                        queue: join.queue,
                        media: join.media,
                        priority: join.priority,
                        skills: join.skills,
                    },
                );
            }
            Cmd::Left(id, LeftReason::Abandoned) => self.gone(now, id),
            Cmd::Answered(id, agent) => self.accepted(now, id, &agent, "answered"),
            Cmd::Rejected(id, agent, reason) => {
                // A refusal of an offer that is gone (withdrawn, timed out) changes nothing.
                if !self.engine.is_offered(id, &agent) {
                    return;
                }
                if let Some(k) = self.contacts.get(&id) {
                    self.event(
                        Some(k),
                        Event::TaskRejected {
                            queue: k.queue.clone(),
                            task_id: k.task_id.clone(),
                            agent_id: agent.clone(),
                            reason: reason.clone(),
                        },
                    );
                }
                // Like an offer not answered: back to the line, the agent on break.
                self.engine
                    .handle_presence(std_now, &agent, Presence::Break, Some(reason));
            }
            Cmd::Done(id) => self.done(now, id),
            Cmd::Callback(id, customer) => {
                if let Some(k) = self.contacts.get_mut(&id) {
                    k.callback = Some(customer);
                    self.engine.handle_callback(std_now, id);
                }
            }
            Cmd::Priority(id, p) => self.engine.handle_priority(std_now, id, p),
            Cmd::Presence(agent, presence, reason, reply) => {
                if !self.agents.contains_key(&agent) {
                    let _ = reply.send(Err(AcdError::NoAgent(agent)));
                    return;
                }
                if let Some(a) = self.agents.get_mut(&agent) {
                    a.presence = presence_str(presence).to_owned();
                    a.reason = reason.clone();
                }
                self.engine
                    .handle_presence(std_now, &agent, presence, reason.clone());
                let state = self
                    .engine
                    .agent_state(&agent)
                    .map(|(s, r)| (s, r.map(str::to_owned)));
                // The chosen presence is kept; the row says the state it leads to (an agent
                // made available while on a call stays busy).
                self.writer.send(StoreCmd::AgentState {
                    agent_id: agent.clone(),
                    state: state
                        .as_ref()
                        .map_or(presence_str(presence), |(s, _)| s.as_str())
                        .to_owned(),
                    reason,
                    presence: Some(presence_str(presence).to_owned()),
                    at_ms: crate::clock::unix_ms(),
                });
                let _ = reply.send(state.ok_or(AcdError::NoAgent(agent)));
            }
            Cmd::Agent(record) => self.set_agent(now, record, false),
            Cmd::RemoveAgent(id) => {
                self.engine.remove_agent(std_now, &id);
                self.agents.remove(&id);
            }
            Cmd::Live(queue, reply) => {
                let _ = reply.send(self.engine.live(&queue));
            }
            Cmd::Position(id, reply) => {
                let answer = self.engine.position(id).zip(self.engine.expected_wait(id));
                let _ = reply.send(answer);
            }
            Cmd::AskPosition(id) => {
                if let (Some(position), Some(wait)) =
                    (self.engine.position(id), self.engine.expected_wait(id))
                {
                    self.tell(id, ContactEvent::Position { position, wait });
                }
            }
            Cmd::AgentState(id, reply) => {
                let _ = reply.send(
                    self.engine
                        .agent_state(&id)
                        .map(|(s, r)| (s, r.map(str::to_owned))),
                );
            }
            Cmd::AcceptChat(conversation, agent, reply) => {
                let Some(&id) = self.chats.get(&conversation) else {
                    let _ = reply.send(Err(AcdError::NotOffered));
                    return;
                };
                if !self.engine.handle_accept(std_now, id, &agent) {
                    let _ = reply.send(Err(AcdError::NotOffered));
                    return;
                }
                // Accepted in the engine: the rest as for an answered call.
                self.taken(id, &agent, "answered");
                let task = self.contacts.get(&id).map(|k| k.task_id.clone());
                let _ = reply.send(task.ok_or(AcdError::NotOffered));
            }
            Cmd::TransferChat(conversation, to, reply) => {
                let _ = reply.send(self.transfer_chat(now, conversation, to));
            }
            Cmd::ChatClosed(conversation) => {
                if let Some(&id) = self.chats.get(&conversation) {
                    self.gone(now, id);
                }
            }
            Cmd::Decisions(reply) => {
                let _ = reply.send(self.engine.decisions());
            }
        }
    }

    fn transfer_chat(
        &mut self,
        now: Instant,
        conversation: ConversationId,
        to: TransferTo,
    ) -> Result<String, AcdError> {
        let std_now = now.into_std();
        let Some(&old) = self.chats.get(&conversation) else {
            return Err(AcdError::NotRouted);
        };
        let Some(known) = self.contacts.get(&old).cloned() else {
            return Err(AcdError::NotRouted);
        };
        let queue = match &to {
            TransferTo::Agent(agent) if !self.agents.contains_key(agent) => {
                return Err(AcdError::NoAgent(agent.clone()));
            }
            TransferTo::Queue(q) if !self.engine.has_queue(q) => {
                return Err(AcdError::NoQueue(q.clone()));
            }
            TransferTo::Queue(q) => q.clone(),
            TransferTo::Agent(_) => known.queue.clone(),
        };
        // The old task ends: it leaves its queue, or its agent is done with it.
        if self.engine.is_waiting(old) {
            self.engine.handle_left(std_now, old);
            self.left_queue(old, "transferred");
            self.forget(old);
        } else {
            self.done(now, old);
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let task_id = uuid::Uuid::new_v4().to_string();
        let fresh = Known {
            task_id: task_id.clone(),
            queue: queue.clone(),
            joined: now,
            agent: None,
            callback: None,
            ..known
        };
        self.writer.send(StoreCmd::TaskJoined(NewTask {
            id: task_id.clone(),
            queue: queue.clone(),
            media: Media::Chat.as_str().to_owned(),
            session_id: fresh.session_id.map(|s| s.to_string()),
            call_id: None,
            conversation_id: Some(conversation.to_string()),
            priority: 0,
            joined_ms: crate::clock::unix_ms(),
        }));
        self.event(
            Some(&fresh),
            Event::QueueJoined {
                queue: queue.clone(),
                task_id: task_id.clone(),
                media: Media::Chat.as_str().to_owned(),
                priority: 0,
            },
        );
        self.chats.insert(conversation, id);
        self.contacts.insert(id, fresh);
        match to {
            TransferTo::Agent(agent) => {
                self.engine
                    .handle_assign(std_now, id, &agent, &queue, Media::Chat);
                self.taken(id, &agent, "answered");
            }
            TransferTo::Queue(_) => {
                self.engine.handle_contact(
                    std_now,
                    id,
                    ContactSpec {
                        queue,
                        media: Media::Chat,
                        priority: 0,
                        skills: Vec::new(),
                    },
                );
            }
        }
        Ok(task_id)
    }

    /// The customer went (hung up, closed the chat): waiting, the contact abandoned;
    /// with an agent, the agent is done with it.
    fn gone(&mut self, now: Instant, id: u64) {
        if self.engine.is_waiting(id) {
            self.engine.handle_left(now.into_std(), id);
            self.left_queue(id, "abandoned");
            self.forget(id);
        } else {
            self.done(now, id);
        }
    }

    fn done(&mut self, now: Instant, id: u64) {
        if let Some(k) = self.contacts.get(&id)
            && k.agent.is_some()
        {
            self.writer.send(StoreCmd::TaskEnded {
                id: k.task_id.clone(),
                at_ms: crate::clock::unix_ms(),
            });
        }
        self.engine.handle_done(now.into_std(), id);
        self.forget(id);
    }

    /// Carries out what the engine decided.
    fn pump(&mut self, now: Instant) {
        while let Some(action) = self.engine.poll_action() {
            match action {
                Action::Offer { contact, agent } => {
                    let Some(k) = self.contacts.get(&contact).cloned() else {
                        continue;
                    };
                    // Taken already (a callback placed for one of a ring-all's agents).
                    if k.agent.is_some() {
                        continue;
                    }
                    let extension = self
                        .agents
                        .get(&agent)
                        .map(|a| a.extension.clone())
                        .unwrap_or_default();
                    self.event(
                        Some(&k),
                        Event::TaskOffered {
                            queue: k.queue.clone(),
                            task_id: k.task_id.clone(),
                            agent_id: agent.clone(),
                            conversation_id: k.conversation_id.map(|c| c.to_string()),
                        },
                    );
                    if let Some(customer) = &k.callback {
                        // The caller is gone: the agent is called first, then the customer.
                        // The agent takes it when their phone answers; a failure comes
                        // back as `rejected`.
                        let _ = self.callbacks.send(CallbackRequest {
                            contact,
                            task_id: k.task_id.clone(),
                            agent: agent.clone(),
                            agent_extension: extension,
                            customer: customer.clone(),
                            session_id: k.session_id,
                        });
                        self.accepted(now, contact, &agent, "callback");
                        continue;
                    }
                    let timeout = self
                        .engine
                        .offer_timeout(contact)
                        .unwrap_or(Duration::from_secs(15));
                    self.tell(
                        contact,
                        ContactEvent::Offer {
                            agent,
                            extension,
                            timeout,
                            since: now,
                        },
                    );
                }
                Action::Withdraw { contact, agent } => {
                    self.tell(contact, ContactEvent::Withdraw { agent })
                }
                Action::NoAnswer { contact, agent } => {
                    if let Some(k) = self.contacts.get(&contact) {
                        self.event(
                            Some(k),
                            Event::TaskRejected {
                                queue: k.queue.clone(),
                                task_id: k.task_id.clone(),
                                agent_id: agent.clone(),
                                reason: "no-answer".into(),
                            },
                        );
                    }
                    self.tell(contact, ContactEvent::Withdraw { agent });
                }
                Action::Exit { contact, reason } => {
                    self.tell(contact, ContactEvent::Exit { reason });
                    self.left_queue(contact, reason.as_str());
                    self.forget(contact);
                }
                Action::Escalated { contact, step } => {
                    tracing::info!(contact, step, "queue: escalated");
                }
                Action::State {
                    agent,
                    state,
                    reason,
                } => {
                    self.writer.send(StoreCmd::AgentState {
                        agent_id: agent.clone(),
                        state: state.as_str().to_owned(),
                        reason: reason.clone(),
                        // The engine's own break (no answer) is kept across restarts too.
                        presence: (state == AgentState::Break).then(|| "break".to_owned()),
                        at_ms: crate::clock::unix_ms(),
                    });
                    self.event(
                        None,
                        Event::AgentState {
                            agent_id: agent,
                            state: state.as_str().to_owned(),
                            reason,
                        },
                    );
                }
            }
        }
    }

    fn gauges(&mut self, now: Instant) {
        let std_now = now.into_std();
        let mut by_state: HashMap<&'static str, usize> = HashMap::new();
        for id in self.agents.keys() {
            if let Some((state, _)) = self.engine.agent_state(id) {
                *by_state.entry(state.as_str()).or_insert(0) += 1;
            }
        }
        for state in ["available", "busy", "wrap-up", "break", "offline"] {
            metrics::gauge!("switchboard_agents", "state" => state)
                .set(by_state.get(state).copied().unwrap_or(0) as f64);
        }
        let names: Vec<String> = self.engine.queue_names().cloned().collect();
        for q in names {
            let live = self.engine.live(&q);
            let longest = live
                .oldest
                .map_or(0.0, |t| std_now.saturating_duration_since(t).as_secs_f64());
            metrics::gauge!("switchboard_queue_waiting", "queue" => q.clone())
                .set(live.waiting as f64);
            metrics::gauge!("switchboard_queue_longest_wait_seconds", "queue" => q.clone())
                .set(longest);
        }
    }
}
