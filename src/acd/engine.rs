//! The routing engine (SANS-IO): waiting contacts (calls and chats) are matched to free agents
//! by skills, priority and per-channel capacity. Inputs come in through `handle_*(now, …)`;
//! what the driver must do comes out of [`Engine::poll_action`]; the one timer to arm is
//! [`Engine::poll_timeout`]. No clock, socket or channel of its own: tested in virtual time.
//!
//! * **The line**: highest priority first, then the longest waiting; a new priority re-sorts
//!   at once. A contact an agent did not accept goes back to its place (it keeps its arrival
//!   time, so it is at the front of its priority).
//! * **Who may take a contact**: an agent available, not in wrap-up, with capacity left on the
//!   contact's channel (e.g. 1 call + 3 chats; optionally no chat while on a call), holding
//!   every skill of one of the contact's targets at its level. A target is the queue's skills
//!   plus the contact's own; timed escalation widens the targets (other skills or lower
//!   levels, or an overflow queue's agents) while the contact keeps its place.
//! * **Strategies** pick among the eligible agents: longest-idle, round-robin, least-occupied,
//!   skills-best-match (the highest sum of levels over the required skills), ring-all (offered
//!   to every eligible agent at once; the first to accept takes it).
//! * **Timers** (one ordered table): an offer not accepted within the queue's offer timeout
//!   goes back to the line and the agent to break with the reason `no-answer`; a finished task
//!   puts the agent in wrap-up; escalation steps; the maximum wait (an [`Action::Exit`] to
//!   the queue's exit flow). A queue at its maximum length refuses a new contact the same way.
//! * **Incremental routing**: the invariant after every input is "no free agent can take any
//!   contact in the line", so a new contact is matched against the free agents only, and an
//!   agent who frees up scans the line from the front until they take something. Each contact
//!   looked at is one routing decision ([`Engine::decisions`], for the benchmark).
//! * **Agent state** as people see it (available, busy, wrap-up, break with a reason,
//!   offline) is derived, and each change comes out as [`Action::State`].
//! * **Expected wait**: position in the queue × the queue's recent average handle time ÷ the
//!   agents staffed for it.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The channel a contact came in by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Media {
    Voice,
    Chat,
}

impl Media {
    pub fn as_str(self) -> &'static str {
        match self {
            Media::Voice => "voice",
            Media::Chat => "chat",
        }
    }
}

/// How a queue picks among eligible agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    LongestIdle,
    RoundRobin,
    RingAll,
    LeastOccupied,
    SkillsBestMatch,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::LongestIdle => "longest-idle",
            Strategy::RoundRobin => "round-robin",
            Strategy::RingAll => "ring-all",
            Strategy::LeastOccupied => "least-occupied",
            Strategy::SkillsBestMatch => "skills-best-match",
        }
    }

    pub fn parse(s: &str) -> Option<Strategy> {
        Some(match s {
            "longest-idle" => Strategy::LongestIdle,
            "round-robin" => Strategy::RoundRobin,
            "ring-all" => Strategy::RingAll,
            "least-occupied" => Strategy::LeastOccupied,
            "skills-best-match" => Strategy::SkillsBestMatch,
            _ => return None,
        })
    }
}

/// A required skill: name and minimum level.
pub type Skill = (String, u8);

/// A timed widening of who may take a contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Widen {
    /// From now on these skills are the whole requirement (e.g. lower levels, other skills;
    /// empty: any agent).
    Skills(Vec<Skill>),
    /// The agents of this queue (its skills plus the contact's own) may take it too.
    Overflow(String),
}

/// One escalation step: `after` this long in the queue, widen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Escalation {
    pub after: Duration,
    pub widen: Widen,
}

/// A queue's settings.
#[derive(Debug, Clone)]
pub struct QueueSpec {
    pub strategy: Strategy,
    /// Skills every agent serving the queue must hold.
    pub skills: Vec<Skill>,
    pub offer_timeout: Duration,
    pub wrap_up: Duration,
    /// Waiting longer than this: [`Action::Exit`] with [`ExitReason::Timeout`].
    pub max_wait: Option<Duration>,
    /// This many waiting already: a new contact gets [`Action::Exit`] with
    /// [`ExitReason::Full`].
    pub max_length: Option<usize>,
    pub escalations: Vec<Escalation>,
}

impl QueueSpec {
    /// A queue with the documented defaults (offer timeout 15 s, wrap-up 10 s, no limits).
    pub fn new(strategy: Strategy, skills: Vec<Skill>) -> QueueSpec {
        QueueSpec {
            strategy,
            skills,
            offer_timeout: Duration::from_secs(15),
            wrap_up: Duration::from_secs(10),
            max_wait: None,
            max_length: None,
            escalations: Vec::new(),
        }
    }
}

/// The presence an agent (or a supervisor for them) chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Available,
    Break,
    Offline,
}

/// An agent's state as people see it: presence plus what the engine knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentState {
    Available,
    /// Holding at least one task (or ringing with an offer).
    Busy,
    WrapUp,
    Break,
    Offline,
}

impl AgentState {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::Available => "available",
            AgentState::Busy => "busy",
            AgentState::WrapUp => "wrap-up",
            AgentState::Break => "break",
            AgentState::Offline => "offline",
        }
    }
}

/// An agent's settings.
#[derive(Debug, Clone, Default)]
pub struct AgentSpec {
    pub skills: Vec<Skill>,
    pub capacity: Vec<(Media, u32)>,
    /// No chat offered while on a call.
    pub no_chat_on_call: bool,
}

/// A contact joining a queue.
#[derive(Debug, Clone)]
pub struct ContactSpec {
    pub queue: String,
    pub media: Media,
    pub priority: i32,
    /// Required on top of the queue's skills.
    pub skills: Vec<Skill>,
}

/// Why a contact left the line without an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// Waited the queue's maximum wait.
    Timeout,
    /// The queue was at its maximum length when it came.
    Full,
    /// No such queue.
    NoQueue,
}

impl ExitReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ExitReason::Timeout => "timeout",
            ExitReason::Full => "full",
            ExitReason::NoQueue => "no-queue",
        }
    }
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Offer `contact` to `agent` (ring their phones, show the chat).
    Offer { contact: u64, agent: String },
    /// Withdraw an offer (another agent took a ring-all contact, the contact left, or the
    /// agent went on break or offline).
    Withdraw { contact: u64, agent: String },
    /// `agent` did not accept in time: the contact is back in line, the agent on break with
    /// reason `no-answer`.
    NoAnswer { contact: u64, agent: String },
    /// The contact leaves the line to its queue's exit flow.
    Exit { contact: u64, reason: ExitReason },
    /// The contact's targets widened (an escalation step ran; `step` counts from 1).
    Escalated { contact: u64, step: usize },
    /// An agent's visible state changed (stored and sent as `agent.state`).
    State {
        agent: String,
        state: AgentState,
        reason: Option<String>,
    },
}

/// Live figures of one queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Live {
    pub waiting: usize,
    /// When the contact waiting longest joined.
    pub oldest: Option<Instant>,
    /// Agents holding the queue's skills, by state.
    pub agents: BTreeMap<&'static str, usize>,
}

type LineKey = (Reverse<i32>, Instant, u64);

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Offer { contact: u64, agent: String },
    Wrap(String),
    Escalate(u64),
    MaxWait(u64),
}

#[derive(Debug, Clone)]
struct Contact {
    spec: Arc<QueueSpec>,
    queue: String,
    media: Media,
    priority: i32,
    own: Vec<Skill>,
    /// Any one of these skill sets will do.
    targets: Vec<Vec<Skill>>,
    /// When it joined: its place among equal priorities (kept when it goes back to the line).
    since: Instant,
    /// Escalation steps run so far.
    escalated: usize,
    /// Agents it is offered to now, with the offer's deadline.
    offered: Vec<(String, Instant)>,
    /// The caller hung up to be called back (no maximum wait then).
    callback: bool,
}

impl Contact {
    fn key(&self, id: u64) -> LineKey {
        (Reverse(self.priority), self.since, id)
    }
}

#[derive(Debug, Clone)]
struct Agent {
    skills: HashMap<String, u8>,
    capacity: HashMap<Media, u32>,
    no_chat_on_call: bool,
    presence: Presence,
    reason: Option<String>,
    /// In wrap-up until then.
    wrap_until: Option<Instant>,
    /// Free since (for longest-idle).
    idle_since: Instant,
    /// Tasks held now, by channel.
    busy: HashMap<Media, u32>,
    /// Contacts offered to them now, by channel.
    offers: HashMap<Media, u32>,
    /// Round-robin turn: when they last got a contact (order of assignment).
    last_turn: u64,
    /// The state last reported.
    shown: AgentState,
}

impl Agent {
    fn has(&self, skills: &[Skill]) -> bool {
        skills
            .iter()
            .all(|(s, min)| self.skills.get(s).is_some_and(|l| l >= min))
    }

    fn spare(&self, media: Media) -> bool {
        let held = self.held(media);
        if held >= self.capacity.get(&media).copied().unwrap_or(0) {
            return false;
        }
        !(media == Media::Chat && self.no_chat_on_call && self.held(Media::Voice) > 0)
    }

    /// Available, out of wrap-up, with room on some channel.
    fn free(&self) -> bool {
        self.presence == Presence::Available
            && self.wrap_until.is_none()
            && (self.spare(Media::Voice) || self.spare(Media::Chat))
    }

    fn can_take(&self, c: &Contact) -> bool {
        self.presence == Presence::Available
            && self.wrap_until.is_none()
            && self.spare(c.media)
            && c.targets.iter().any(|t| self.has(t))
    }

    /// Tasks and offers on `media`.
    fn held(&self, media: Media) -> u32 {
        self.busy.get(&media).copied().unwrap_or(0) + self.offers.get(&media).copied().unwrap_or(0)
    }

    fn occupancy(&self) -> u32 {
        self.busy.values().sum::<u32>() + self.offers.values().sum::<u32>()
    }

    fn state(&self) -> AgentState {
        match self.presence {
            Presence::Offline => AgentState::Offline,
            Presence::Break => AgentState::Break,
            Presence::Available if self.occupancy() > 0 => AgentState::Busy,
            Presence::Available if self.wrap_until.is_some() => AgentState::WrapUp,
            Presence::Available => AgentState::Available,
        }
    }
}

/// A contact an agent accepted.
#[derive(Debug, Clone)]
struct Task {
    agent: String,
    queue: String,
    media: Media,
    accepted: Instant,
}

/// Recent average handle time of a queue (exponentially weighted), before any: this.
pub const DEFAULT_HANDLE_TIME: Duration = Duration::from_secs(180);

/// The engine.
#[derive(Debug, Default)]
pub struct Engine {
    queues: HashMap<String, Arc<QueueSpec>>,
    agents: BTreeMap<String, Agent>,
    /// Agents for whom [`Agent::free`] holds.
    free: BTreeSet<String>,
    contacts: HashMap<u64, Contact>,
    /// Contacts waiting and not offered now, best first.
    line: BTreeSet<LineKey>,
    /// Contacts waiting per queue (offered or not).
    per_queue: HashMap<String, usize>,
    tasks: HashMap<u64, Task>,
    timers: BTreeSet<(Instant, Timer)>,
    actions: VecDeque<Action>,
    turn: u64,
    decisions: u64,
    /// Average handle time per queue, in milliseconds.
    handle_ms: HashMap<String, f64>,
    /// Agents touched by the current input, to report state changes.
    touched: BTreeSet<String>,
    /// Contacts back in the line during the current input, to place again.
    requeued: Vec<u64>,
}

impl Engine {
    pub fn new() -> Engine {
        Engine::default()
    }

    /// Adds or replaces a queue. Contacts already waiting keep the settings they came with.
    pub fn set_queue(&mut self, name: &str, spec: QueueSpec) {
        self.queues.insert(name.to_owned(), Arc::new(spec));
    }

    /// Removes a queue: no new contact joins it; those waiting stay until served.
    pub fn remove_queue(&mut self, name: &str) {
        self.queues.remove(name);
    }

    pub fn queue_names(&self) -> impl Iterator<Item = &String> {
        self.queues.keys()
    }

    pub fn has_queue(&self, name: &str) -> bool {
        self.queues.contains_key(name)
    }

    /// How long an offer of `contact` rings (its queue's offer timeout).
    pub fn offer_timeout(&self, contact: u64) -> Option<Duration> {
        self.contacts.get(&contact).map(|c| c.spec.offer_timeout)
    }

    /// Adds or replaces an agent (a new agent is offline until told otherwise; a replaced
    /// one keeps its presence and tasks).
    pub fn set_agent(&mut self, now: Instant, id: &str, spec: &AgentSpec) {
        let skills = spec.skills.iter().cloned().collect();
        let capacity = spec.capacity.iter().copied().collect();
        match self.agents.get_mut(id) {
            Some(a) => {
                a.skills = skills;
                a.capacity = capacity;
                a.no_chat_on_call = spec.no_chat_on_call;
            }
            None => {
                self.agents.insert(
                    id.to_owned(),
                    Agent {
                        skills,
                        capacity,
                        no_chat_on_call: spec.no_chat_on_call,
                        presence: Presence::Offline,
                        reason: None,
                        wrap_until: None,
                        idle_since: now,
                        busy: HashMap::new(),
                        offers: HashMap::new(),
                        last_turn: 0,
                        shown: AgentState::Offline,
                    },
                );
            }
        }
        self.after_agent(now, id);
        self.report();
    }

    /// Removes an agent: their offers are withdrawn (the contacts go back to the line).
    pub fn remove_agent(&mut self, now: Instant, id: &str) {
        self.handle_presence(now, id, Presence::Offline, None);
        self.agents.remove(id);
        self.free.remove(id);
    }

    /// A contact joins its queue.
    pub fn handle_contact(&mut self, now: Instant, id: u64, spec: ContactSpec) {
        let Some(queue) = self.queues.get(&spec.queue).cloned() else {
            self.actions.push_back(Action::Exit {
                contact: id,
                reason: ExitReason::NoQueue,
            });
            return;
        };
        let waiting = self.per_queue.get(&spec.queue).copied().unwrap_or(0);
        if queue.max_length.is_some_and(|max| waiting >= max) {
            self.actions.push_back(Action::Exit {
                contact: id,
                reason: ExitReason::Full,
            });
            return;
        }
        let mut target = queue.skills.clone();
        target.extend(spec.skills.iter().cloned());
        let contact = Contact {
            spec: queue.clone(),
            queue: spec.queue.clone(),
            media: spec.media,
            priority: spec.priority,
            own: spec.skills,
            targets: vec![target],
            since: now,
            escalated: 0,
            offered: Vec::new(),
            callback: false,
        };
        if let Some(max) = queue.max_wait {
            self.timers.insert((now + max, Timer::MaxWait(id)));
        }
        if let Some(step) = queue.escalations.first() {
            self.timers.insert((now + step.after, Timer::Escalate(id)));
        }
        self.line.insert(contact.key(id));
        *self.per_queue.entry(spec.queue).or_insert(0) += 1;
        self.contacts.insert(id, contact);
        self.place(now, id);
        self.report();
    }

    /// A contact's priority changes (it moves in the line at once).
    pub fn handle_priority(&mut self, now: Instant, id: u64, priority: i32) {
        let Some(c) = self.contacts.get_mut(&id) else {
            return;
        };
        let was = c.key(id);
        c.priority = priority;
        let key = c.key(id);
        if self.line.remove(&was) {
            self.line.insert(key);
        }
        // No free agent could take it before; none can now (the invariant holds).
        let _ = now;
        self.report();
    }

    /// The caller chose to be called back: the contact keeps its place, without the maximum
    /// wait. An offer out now (its phone rings for nobody: the caller is gone) is withdrawn
    /// without a penalty and the contact placed again.
    pub fn handle_callback(&mut self, now: Instant, id: u64) {
        let Some(c) = self.contacts.get_mut(&id) else {
            return;
        };
        c.callback = true;
        let max = c.spec.max_wait;
        let since = c.since;
        let offered: Vec<String> = c.offered.iter().map(|(a, _)| a.clone()).collect();
        if let Some(max) = max {
            self.timers.remove(&(since + max, Timer::MaxWait(id)));
        }
        for agent in offered {
            self.take_back(id, &agent);
            self.actions
                .push_back(Action::Withdraw { contact: id, agent });
        }
        self.settle(now);
    }

    /// A contact left the line (abandoned, or served elsewhere): its offers are withdrawn.
    pub fn handle_left(&mut self, now: Instant, id: u64) {
        if let Some(c) = self.forget(id) {
            for (agent, at) in c.offered {
                self.timers.remove(&(
                    at,
                    Timer::Offer {
                        contact: id,
                        agent: agent.clone(),
                    },
                ));
                self.unoffer(&agent, c.media);
                self.actions
                    .push_back(Action::Withdraw { contact: id, agent });
            }
        }
        self.settle(now);
    }

    /// An agent's presence changes. Offers they have now are withdrawn when they leave
    /// `available` (the contacts go back to the line): a state change racing an offer wins.
    pub fn handle_presence(
        &mut self,
        now: Instant,
        id: &str,
        presence: Presence,
        reason: Option<String>,
    ) {
        let Some(a) = self.agents.get_mut(id) else {
            return;
        };
        if presence == Presence::Available && a.presence != Presence::Available {
            a.idle_since = now;
        }
        a.presence = presence;
        a.reason = if presence == Presence::Break {
            reason
        } else {
            None
        };
        if presence != Presence::Available {
            self.withdraw_offers_of(id);
        }
        self.touched.insert(id.to_owned());
        self.settle(now);
    }

    /// Every offer `agent` has now goes back to the line (withdrawn).
    fn withdraw_offers_of(&mut self, agent: &str) {
        let withdrawn: Vec<u64> = self
            .contacts
            .iter()
            .filter(|(_, c)| c.offered.iter().any(|(a, _)| a == agent))
            .map(|(cid, _)| *cid)
            .collect();
        for contact in withdrawn {
            self.take_back(contact, agent);
            self.actions.push_back(Action::Withdraw {
                contact,
                agent: agent.to_owned(),
            });
        }
    }

    /// Whether `contact` is offered to `agent` now.
    pub fn is_offered(&self, contact: u64, agent: &str) -> bool {
        self.contacts
            .get(&contact)
            .is_some_and(|c| c.offered.iter().any(|(a, _)| a == agent))
    }

    /// `agent` accepted `contact`: it is theirs; other offers of it are withdrawn.
    /// False when the offer is no longer there (timed out, taken by another, withdrawn).
    pub fn handle_accept(&mut self, now: Instant, contact: u64, agent: &str) -> bool {
        let offered = self
            .contacts
            .get(&contact)
            .is_some_and(|c| c.offered.iter().any(|(a, _)| a == agent));
        if !offered {
            return false;
        }
        let Some(c) = self.forget(contact) else {
            return false;
        };
        for (other, at) in &c.offered {
            self.timers.remove(&(
                *at,
                Timer::Offer {
                    contact,
                    agent: other.clone(),
                },
            ));
            self.unoffer(other, c.media);
            if other != agent {
                self.actions.push_back(Action::Withdraw {
                    contact,
                    agent: other.clone(),
                });
            }
        }
        self.start_task(now, contact, agent, &c.queue, c.media);
        self.settle(now);
        true
    }

    /// Gives `contact` (waiting or not) to `agent` directly, without an offer (a transfer
    /// to an agent, or a chat that turns into a call keeping its agent). False when the
    /// agent is unknown.
    pub fn handle_assign(
        &mut self,
        now: Instant,
        contact: u64,
        agent: &str,
        queue: &str,
        media: Media,
    ) -> bool {
        if !self.agents.contains_key(agent) {
            return false;
        }
        if self.contacts.contains_key(&contact) {
            self.handle_left(now, contact);
        }
        self.start_task(now, contact, agent, queue, media);
        self.settle(now);
        true
    }

    /// The agent handling `contact` finished it: wrap-up for its queue's time, then free.
    pub fn handle_done(&mut self, now: Instant, contact: u64) {
        let Some(task) = self.tasks.remove(&contact) else {
            return;
        };
        let handled = now.saturating_duration_since(task.accepted).as_millis() as f64;
        let avg = self.handle_ms.entry(task.queue.clone()).or_insert(handled);
        *avg = 0.8 * *avg + 0.2 * handled;
        let wrap = self
            .queues
            .get(&task.queue)
            .map_or(Duration::ZERO, |q| q.wrap_up);
        if let Some(a) = self.agents.get_mut(&task.agent) {
            if let Some(n) = a.busy.get_mut(&task.media) {
                *n = n.saturating_sub(1);
            }
            if !wrap.is_zero() {
                if let Some(old) = a.wrap_until.take() {
                    self.timers.remove(&(old, Timer::Wrap(task.agent.clone())));
                }
                a.wrap_until = Some(now + wrap);
                self.timers
                    .insert((now + wrap, Timer::Wrap(task.agent.clone())));
            }
            a.idle_since = now + wrap;
        }
        self.touched.insert(task.agent);
        self.settle(now);
    }

    /// Timers: offers not accepted in time, wrap-ups that ended, escalation, maximum wait.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(first) = self.timers.first() {
            if first.0 > now {
                break;
            }
            let Some((at, timer)) = self.timers.pop_first() else {
                break;
            };
            match timer {
                Timer::Offer { contact, agent } => {
                    self.take_back_at(contact, &agent, Some(at));
                    if let Some(a) = self.agents.get_mut(&agent) {
                        a.presence = Presence::Break;
                        a.reason = Some("no-answer".into());
                    }
                    // On break, the agent's other offers go back too.
                    self.withdraw_offers_of(&agent);
                    self.touched.insert(agent.clone());
                    self.actions.push_back(Action::NoAnswer { contact, agent });
                }
                Timer::Wrap(agent) => {
                    if let Some(a) = self.agents.get_mut(&agent) {
                        a.wrap_until = None;
                    }
                    self.touched.insert(agent);
                }
                Timer::Escalate(contact) => self.escalate(now, contact),
                Timer::MaxWait(contact) => {
                    if let Some(c) = self.forget(contact) {
                        for (agent, at) in c.offered {
                            self.timers.remove(&(
                                at,
                                Timer::Offer {
                                    contact,
                                    agent: agent.clone(),
                                },
                            ));
                            self.unoffer(&agent, c.media);
                            self.actions.push_back(Action::Withdraw { contact, agent });
                        }
                        self.actions.push_back(Action::Exit {
                            contact,
                            reason: ExitReason::Timeout,
                        });
                    }
                }
            }
        }
        self.settle(now);
    }

    /// The next thing to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Engine::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|(at, _)| *at)
    }

    /// Contacts waiting (not yet accepted).
    pub fn waiting(&self) -> usize {
        self.contacts.len()
    }

    /// Routing decisions so far: contacts looked at for an agent (matched or not).
    pub fn decisions(&self) -> u64 {
        self.decisions
    }

    /// Whether `contact` is waiting.
    pub fn is_waiting(&self, contact: u64) -> bool {
        self.contacts.contains_key(&contact)
    }

    /// An agent's state as people see it, with the break reason.
    pub fn agent_state(&self, id: &str) -> Option<(AgentState, Option<&str>)> {
        self.agents
            .get(id)
            .map(|a| (a.state(), a.reason.as_deref()))
    }

    /// The agent holding `contact`, if accepted.
    pub fn task_agent(&self, contact: u64) -> Option<&str> {
        self.tasks.get(&contact).map(|t| t.agent.as_str())
    }

    /// 1-based position of `contact` among the contacts waiting in its queue.
    pub fn position(&self, contact: u64) -> Option<usize> {
        let c = self.contacts.get(&contact)?;
        let key = c.key(contact);
        let ahead = self
            .contacts
            .iter()
            .filter(|(id, o)| o.queue == c.queue && o.key(**id) < key)
            .count();
        Some(ahead + 1)
    }

    /// Expected wait of `contact`: its position × the queue's average handle time ÷ the
    /// agents staffed for it (not offline), at least one.
    pub fn expected_wait(&self, contact: u64) -> Option<Duration> {
        let position = self.position(contact)? as f64;
        let c = self.contacts.get(&contact)?;
        let handle = self
            .handle_ms
            .get(&c.queue)
            .copied()
            .unwrap_or(DEFAULT_HANDLE_TIME.as_millis() as f64);
        let staffed = self
            .agents
            .values()
            .filter(|a| a.presence != Presence::Offline && c.targets.iter().any(|t| a.has(t)))
            .count()
            .max(1) as f64;
        Some(Duration::from_millis((position * handle / staffed) as u64))
    }

    /// Live figures of `queue`.
    pub fn live(&self, queue: &str) -> Live {
        let mut live = Live::default();
        for c in self.contacts.values().filter(|c| c.queue == queue) {
            live.waiting += 1;
            live.oldest = Some(live.oldest.map_or(c.since, |o| o.min(c.since)));
        }
        if let Some(spec) = self.queues.get(queue) {
            for a in self.agents.values().filter(|a| a.has(&spec.skills)) {
                *live.agents.entry(a.state().as_str()).or_insert(0) += 1;
            }
        }
        live
    }

    /// Removes a waiting contact from every index; returns it.
    fn forget(&mut self, id: u64) -> Option<Contact> {
        let c = self.contacts.remove(&id)?;
        self.line.remove(&c.key(id));
        if let Some(n) = self.per_queue.get_mut(&c.queue) {
            *n = n.saturating_sub(1);
        }
        if let Some(max) = c.spec.max_wait {
            self.timers.remove(&(c.since + max, Timer::MaxWait(id)));
        }
        if let Some(step) = c.spec.escalations.get(c.escalated) {
            self.timers
                .remove(&(c.since + step.after, Timer::Escalate(id)));
        }
        Some(c)
    }

    fn start_task(&mut self, now: Instant, contact: u64, agent: &str, queue: &str, media: Media) {
        // A contact has one task: one it had before (an assignment over it) ends.
        if let Some(old) = self.tasks.remove(&contact)
            && let Some(a) = self.agents.get_mut(&old.agent)
        {
            if let Some(n) = a.busy.get_mut(&old.media) {
                *n = n.saturating_sub(1);
            }
            self.touched.insert(old.agent);
        }
        if let Some(a) = self.agents.get_mut(agent) {
            *a.busy.entry(media).or_insert(0) += 1;
        }
        self.tasks.insert(
            contact,
            Task {
                agent: agent.to_owned(),
                queue: queue.to_owned(),
                media,
                accepted: now,
            },
        );
        self.touched.insert(agent.to_owned());
    }

    /// The offer of `contact` to `agent` is gone: back to the line if nobody else has it.
    fn take_back(&mut self, contact: u64, agent: &str) {
        self.take_back_at(contact, agent, None);
    }

    fn take_back_at(&mut self, contact: u64, agent: &str, fired: Option<Instant>) {
        let Some(c) = self.contacts.get_mut(&contact) else {
            return;
        };
        let Some(i) = c.offered.iter().position(|(a, _)| a == agent) else {
            return;
        };
        let (_, at) = c.offered.remove(i);
        let back = c.offered.is_empty();
        let key = c.key(contact);
        let media = c.media;
        if fired.is_none() {
            self.timers.remove(&(
                at,
                Timer::Offer {
                    contact,
                    agent: agent.to_owned(),
                },
            ));
        }
        if back {
            self.line.insert(key);
            self.requeued.push(contact);
        }
        self.unoffer(agent, media);
    }

    fn escalate(&mut self, now: Instant, id: u64) {
        let Some(c) = self.contacts.get(&id) else {
            return;
        };
        let Some(step) = c.spec.escalations.get(c.escalated).cloned() else {
            return;
        };
        let target = match &step.widen {
            Widen::Skills(skills) => Some(skills.clone()),
            Widen::Overflow(q) => self.queues.get(q).map(|q| {
                let mut t = q.skills.clone();
                t.extend(c.own.iter().cloned());
                t
            }),
        };
        let Some(c) = self.contacts.get_mut(&id) else {
            return;
        };
        match (&step.widen, target) {
            (Widen::Skills(_), Some(t)) => c.targets = vec![t],
            (Widen::Overflow(_), Some(t)) => c.targets.push(t),
            (_, None) => {}
        }
        c.escalated += 1;
        if let Some(next) = c.spec.escalations.get(c.escalated) {
            self.timers
                .insert((c.since + next.after, Timer::Escalate(id)));
        }
        self.actions.push_back(Action::Escalated {
            contact: id,
            step: c.escalated,
        });
        self.place(now, id);
    }

    fn unoffer(&mut self, agent: &str, media: Media) {
        if let Some(a) = self.agents.get_mut(agent)
            && let Some(n) = a.offers.get_mut(&media)
        {
            *n = n.saturating_sub(1);
        }
        self.touched.insert(agent.to_owned());
    }

    /// After an input: every touched agent who is free now takes what they can from the
    /// line; then state changes are reported.
    fn settle(&mut self, now: Instant) {
        let touched: Vec<String> = self.touched.iter().cloned().collect();
        for id in touched {
            self.after_agent(now, &id);
        }
        // Contacts put back in the line by a withdrawal may suit other free agents.
        for id in std::mem::take(&mut self.requeued) {
            self.place(now, id);
        }
        self.report();
    }

    /// Re-files `agent` among the free; a free agent serves the line.
    fn after_agent(&mut self, now: Instant, id: &str) {
        let free = self.agents.get(id).is_some_and(Agent::free);
        if !free {
            self.free.remove(id);
            return;
        }
        self.free.insert(id.to_owned());
        self.serve(now, id);
    }

    /// A free agent scans the line from the front; each contact they can take is placed by
    /// its queue's strategy (which may pick another free agent), until they are busy.
    fn serve(&mut self, now: Instant, id: &str) {
        let mut from: Option<LineKey> = None;
        loop {
            let Some(agent) = self.agents.get(id) else {
                return;
            };
            if !agent.free() {
                self.free.remove(id);
                return;
            }
            let range = match from {
                Some(k) => self.line.range((Bound::Excluded(k), Bound::Unbounded)),
                None => self.line.range(..),
            };
            let mut found = None;
            let mut looked = 0;
            for key in range {
                looked += 1;
                if let Some(c) = self.contacts.get(&key.2)
                    && agent.can_take(c)
                {
                    found = Some(*key);
                    break;
                }
            }
            // The one found is counted by `place`.
            self.decisions += looked - u64::from(found.is_some());
            let Some(key) = found else {
                return;
            };
            from = Some(key);
            self.place(now, key.2);
        }
    }

    /// Offers a contact in the line to the free agents its queue's strategy picks.
    fn place(&mut self, now: Instant, id: u64) {
        let Some(c) = self.contacts.get(&id) else {
            return;
        };
        if !c.offered.is_empty() {
            return;
        }
        self.decisions += 1;
        let eligible: Vec<&String> = self
            .free
            .iter()
            .filter(|a| self.agents.get(*a).is_some_and(|a| a.can_take(c)))
            .collect();
        if eligible.is_empty() {
            return;
        }
        let strategy = c.spec.strategy;
        let chosen: Vec<String> = match strategy {
            Strategy::RingAll => eligible.into_iter().cloned().collect(),
            strategy => {
                let key = |id: &String| -> (i64, Instant, String) {
                    let a = &self.agents[id];
                    let primary = match strategy {
                        Strategy::RoundRobin => a.last_turn as i64,
                        Strategy::LeastOccupied => i64::from(a.occupancy()),
                        Strategy::SkillsBestMatch => -c
                            .targets
                            .iter()
                            .filter(|t| a.has(t))
                            .map(|t| {
                                t.iter()
                                    .map(|(s, _)| i64::from(a.skills.get(s).copied().unwrap_or(0)))
                                    .sum::<i64>()
                            })
                            .max()
                            .unwrap_or(0),
                        Strategy::LongestIdle | Strategy::RingAll => 0,
                    };
                    (primary, a.idle_since, id.clone())
                };
                eligible
                    .into_iter()
                    .min_by_key(|id| key(id))
                    .map(|id| vec![id.clone()])
                    .unwrap_or_default()
            }
        };
        let deadline = now + c.spec.offer_timeout;
        let media = c.media;
        let key = c.key(id);
        self.line.remove(&key);
        self.turn += 1;
        for agent in chosen {
            if let Some(a) = self.agents.get_mut(&agent) {
                *a.offers.entry(media).or_insert(0) += 1;
                a.last_turn = self.turn;
                if !a.free() {
                    self.free.remove(&agent);
                }
            }
            if let Some(c) = self.contacts.get_mut(&id) {
                c.offered.push((agent.clone(), deadline));
            }
            self.timers.insert((
                deadline,
                Timer::Offer {
                    contact: id,
                    agent: agent.clone(),
                },
            ));
            self.touched.insert(agent.clone());
            self.actions.push_back(Action::Offer { contact: id, agent });
        }
    }

    /// Reports the visible state of each touched agent that changed.
    fn report(&mut self) {
        for id in std::mem::take(&mut self.touched) {
            if let Some(a) = self.agents.get_mut(&id) {
                let state = a.state();
                if state != a.shown {
                    a.shown = state;
                    self.actions.push_back(Action::State {
                        agent: id,
                        state,
                        reason: a.reason.clone(),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
