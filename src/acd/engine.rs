//! The routing engine (SANS-IO, issue 13, first part): waiting contacts (calls and chats) are
//! matched to free agents by skills, priority and per-channel capacity. Inputs come in through
//! `handle_*(now, …)`; what the driver must do comes out of [`Engine::poll_action`]; the one
//! timer to arm is [`Engine::poll_timeout`]. No clock, socket or channel of its own: tested in
//! virtual time.
//!
//! * The line: highest priority first, then the longest waiting; a new priority re-sorts at
//!   once. A contact an agent did not accept goes back to the front of its priority.
//! * An agent takes a contact when available, not in wrap-up, with capacity left on the
//!   contact's channel (e.g. 1 call + 3 chats; optionally no chat while on a call), and every
//!   required skill at its level.
//! * Strategies pick among the eligible agents: longest-idle, round-robin, least-occupied,
//!   skills-best-match (the highest sum of levels over the required skills), ring-all (offered
//!   to every eligible agent at once; the first to accept takes it).
//! * An offer not accepted within the queue's offer timeout goes back to the front and the
//!   agent to break with the reason `no-answer`; a finished task puts the agent in wrap-up for
//!   the queue's wrap-up time.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// The channel a contact came in by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Media {
    Voice,
    Chat,
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

/// A queue's settings.
#[derive(Debug, Clone)]
pub struct QueueSpec {
    pub strategy: Strategy,
    pub offer_timeout: Duration,
    pub wrap_up: Duration,
}

/// A required skill: name and minimum level.
pub type Skill = (String, u8);

/// An agent's presence, as the engine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Available,
    Break,
    Offline,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Offer `contact` to `agent` (ring their phones, show the chat).
    Offer { contact: u64, agent: String },
    /// Withdraw an offer (another agent took a ring-all contact, or it timed out).
    Withdraw { contact: u64, agent: String },
    /// `agent` did not accept in time: now on break with reason `no-answer`.
    NoAnswer { contact: u64, agent: String },
}

#[derive(Debug, Clone)]
struct Contact {
    queue: String,
    media: Media,
    priority: i32,
    skills: Vec<Skill>,
    /// The sort key among equal priorities: when it joined (earlier first); a contact sent
    /// back to the front keeps its original arrival.
    since: Instant,
    /// Agents it is offered to now, with the offer's deadline.
    offered: Vec<(String, Instant)>,
}

#[derive(Debug, Clone)]
struct Agent {
    skills: HashMap<String, u8>,
    capacity: HashMap<Media, u32>,
    no_chat_on_call: bool,
    presence: Presence,
    /// In wrap-up until then.
    wrap_until: Option<Instant>,
    /// Free since (for longest-idle).
    idle_since: Instant,
    /// Tasks held now, by channel.
    busy: HashMap<Media, u32>,
    /// Contacts offered to them now.
    offers: u32,
    /// Round-robin turn: when they last got a contact (order of assignment).
    last_turn: u64,
}

impl Agent {
    fn can_take(&self, c: &Contact, now: Instant) -> bool {
        if self.presence != Presence::Available || self.wrap_until.is_some_and(|t| t > now) {
            return false;
        }
        let held = self.busy.get(&c.media).copied().unwrap_or(0) + self.offers;
        if held >= self.capacity.get(&c.media).copied().unwrap_or(0) {
            return false;
        }
        if c.media == Media::Chat
            && self.no_chat_on_call
            && self.busy.get(&Media::Voice).copied().unwrap_or(0) > 0
        {
            return false;
        }
        c.skills
            .iter()
            .all(|(s, min)| self.skills.get(s).is_some_and(|l| l >= min))
    }

    fn occupancy(&self) -> u32 {
        self.busy.values().sum::<u32>() + self.offers
    }
}

/// The engine.
#[derive(Debug, Default)]
pub struct Engine {
    queues: HashMap<String, QueueSpec>,
    agents: BTreeMap<String, Agent>,
    contacts: HashMap<u64, Contact>,
    actions: std::collections::VecDeque<Action>,
    turn: u64,
}

impl Engine {
    pub fn new() -> Engine {
        Engine::default()
    }

    pub fn set_queue(&mut self, name: &str, spec: QueueSpec) {
        self.queues.insert(name.to_owned(), spec);
    }

    /// Adds or replaces an agent (offline until told otherwise).
    pub fn set_agent(
        &mut self,
        now: Instant,
        id: &str,
        skills: &[Skill],
        capacity: &[(Media, u32)],
        no_chat_on_call: bool,
    ) {
        let agent = Agent {
            skills: skills.iter().cloned().collect(),
            capacity: capacity.iter().copied().collect(),
            no_chat_on_call,
            presence: Presence::Offline,
            wrap_until: None,
            idle_since: now,
            busy: HashMap::new(),
            offers: 0,
            last_turn: 0,
        };
        self.agents.insert(id.to_owned(), agent);
    }

    /// A contact joins `queue`.
    pub fn handle_contact(
        &mut self,
        now: Instant,
        id: u64,
        queue: &str,
        media: Media,
        priority: i32,
        skills: Vec<Skill>,
    ) {
        self.contacts.insert(
            id,
            Contact {
                queue: queue.to_owned(),
                media,
                priority,
                skills,
                since: now,
                offered: Vec::new(),
            },
        );
        self.route(now);
    }

    /// A contact's priority changes (it moves in the line at once).
    pub fn handle_priority(&mut self, now: Instant, id: u64, priority: i32) {
        if let Some(c) = self.contacts.get_mut(&id) {
            c.priority = priority;
        }
        self.route(now);
    }

    /// A contact left the line (abandoned, or served elsewhere): its offers are withdrawn.
    pub fn handle_left(&mut self, now: Instant, id: u64) {
        if let Some(c) = self.contacts.remove(&id) {
            for (agent, _) in c.offered {
                self.unoffer(&agent);
                self.actions
                    .push_back(Action::Withdraw { contact: id, agent });
            }
        }
        self.route(now);
    }

    /// An agent's presence changes.
    pub fn handle_presence(&mut self, now: Instant, id: &str, presence: Presence) {
        if let Some(a) = self.agents.get_mut(id) {
            if presence == Presence::Available && a.presence != Presence::Available {
                a.idle_since = now;
            }
            a.presence = presence;
        }
        self.route(now);
    }

    /// `agent` accepted `contact`: it is theirs; other offers of it are withdrawn.
    /// False when the offer is no longer there (timed out, taken by another).
    pub fn handle_accept(&mut self, now: Instant, contact: u64, agent: &str) -> bool {
        let Some(c) = self.contacts.get(&contact) else {
            return false;
        };
        if !c.offered.iter().any(|(a, _)| a == agent) {
            return false;
        }
        let Some(c) = self.contacts.remove(&contact) else {
            return false;
        };
        for (other, _) in &c.offered {
            self.unoffer(other);
            if other != agent {
                self.actions.push_back(Action::Withdraw {
                    contact,
                    agent: other.clone(),
                });
            }
        }
        if let Some(a) = self.agents.get_mut(agent) {
            *a.busy.entry(c.media).or_insert(0) += 1;
        }
        self.route(now);
        true
    }

    /// `agent` finished a task on `media`: wrap-up for `queue`'s time, then free.
    pub fn handle_done(&mut self, now: Instant, agent: &str, media: Media, queue: &str) {
        let wrap = self.queues.get(queue).map_or(Duration::ZERO, |q| q.wrap_up);
        if let Some(a) = self.agents.get_mut(agent) {
            if let Some(n) = a.busy.get_mut(&media) {
                *n = n.saturating_sub(1);
            }
            a.wrap_until = Some(now + wrap);
            a.idle_since = now + wrap;
        }
        self.route(now);
    }

    /// Timers: offers not accepted in time; wrap-ups that ended.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut expired = Vec::new();
        for (id, c) in &mut self.contacts {
            c.offered.retain(|(agent, at)| {
                let over = *at <= now;
                if over {
                    expired.push((*id, agent.clone()));
                }
                !over
            });
        }
        for (contact, agent) in expired {
            self.unoffer(&agent);
            if let Some(a) = self.agents.get_mut(&agent) {
                a.presence = Presence::Break;
            }
            self.actions.push_back(Action::NoAnswer { contact, agent });
        }
        for a in self.agents.values_mut() {
            if a.wrap_until.is_some_and(|t| t <= now) {
                a.wrap_until = None;
            }
        }
        self.route(now);
    }

    /// The next thing to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Engine::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let offers = self
            .contacts
            .values()
            .flat_map(|c| c.offered.iter().map(|(_, at)| *at));
        let wraps = self.agents.values().filter_map(|a| a.wrap_until);
        offers.chain(wraps).min()
    }

    /// Contacts waiting (not yet accepted).
    pub fn waiting(&self) -> usize {
        self.contacts.len()
    }

    fn unoffer(&mut self, agent: &str) {
        if let Some(a) = self.agents.get_mut(agent) {
            a.offers = a.offers.saturating_sub(1);
        }
    }

    /// Offers waiting contacts, best first, to the agents their queue's strategy picks.
    fn route(&mut self, now: Instant) {
        // Nobody free: nothing to match (the common case while a line builds up).
        let anyone = self
            .agents
            .values()
            .any(|a| a.presence == Presence::Available && a.wrap_until.is_none_or(|t| t <= now));
        if !anyone {
            return;
        }
        let mut line: Vec<(i32, Instant, u64)> = self
            .contacts
            .iter()
            .filter(|(_, c)| c.offered.is_empty())
            .map(|(id, c)| (c.priority, c.since, *id))
            .collect();
        line.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        for (_, _, id) in line {
            let Some(c) = self.contacts.get(&id) else {
                continue;
            };
            let Some(spec) = self.queues.get(&c.queue) else {
                continue;
            };
            let eligible: Vec<&String> = self
                .agents
                .iter()
                .filter(|(_, a)| a.can_take(c, now))
                .map(|(id, _)| id)
                .collect();
            if eligible.is_empty() {
                continue;
            }
            let chosen: Vec<String> = match spec.strategy {
                Strategy::RingAll => eligible.into_iter().cloned().collect(),
                strategy => {
                    let key = |id: &&String| -> (i64, i64, String) {
                        let a = &self.agents[*id];
                        let primary = match strategy {
                            Strategy::LongestIdle => 0,
                            Strategy::RoundRobin => a.last_turn as i64,
                            Strategy::LeastOccupied => i64::from(a.occupancy()),
                            Strategy::SkillsBestMatch => -c
                                .skills
                                .iter()
                                .map(|(s, _)| i64::from(a.skills.get(s).copied().unwrap_or(0)))
                                .sum::<i64>(),
                            Strategy::RingAll => 0,
                        };
                        let idle = a.idle_since.saturating_duration_since(now).as_nanos() as i64
                            - now.saturating_duration_since(a.idle_since).as_nanos() as i64;
                        (primary, idle, (*id).clone())
                    };
                    eligible
                        .iter()
                        .min_by_key(|id| key(id))
                        .map(|id| vec![(*id).clone()])
                        .unwrap_or_default()
                }
            };
            let deadline = now + spec.offer_timeout;
            self.turn += 1;
            for agent in chosen {
                if let Some(a) = self.agents.get_mut(&agent) {
                    a.offers += 1;
                    a.last_turn = self.turn;
                }
                if let Some(c) = self.contacts.get_mut(&id) {
                    c.offered.push((agent.clone(), deadline));
                }
                self.actions.push_back(Action::Offer { contact: id, agent });
            }
        }
    }
}

#[cfg(test)]
mod tests;
