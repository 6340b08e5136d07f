//! A call waiting in an ACD queue (the `queue` step): answered, it hears music on hold with its
//! position and expected wait announced every `announce_every`; when the ACD offers it to an
//! agent, the agent's registered phones ring (the caller keeps the music) and the first to
//! answer is bridged; a phone that declines or is unreachable goes back to the ACD (the agent
//! to break). Pressing 1, where the queue offers callbacks, keeps the caller's place and hangs
//! up: the ACD calls the agent, then the caller, in the same session. Leaving without an agent
//! (maximum wait or length) goes on in the flow with `queue_status` set.

use std::collections::HashMap;
use std::time::Duration;

use super::Call;
use crate::acd::engine::{ExitReason, Media};
use crate::acd::service::{ContactEvent, Join, LeftReason};
use crate::domain::HangupCause;
use crate::ivr::interp::{DialOutcome, Input, QueueOutcome};
use crate::ivr::plan::{Prompt, Template};
use crate::media::engine::MediaCommand;
use crate::media::ports::Leg;
use crate::session::core::timers::CallTimer;

/// The playback id of queue announcements (never one of the interpreter's).
pub(super) const ANNOUNCE_ID: u64 = u32::MAX as u64;

/// Dials to agents count from here (never one of the interpreter's ids): each offer rings
/// under its own id, so a withdrawn agent's late answer is never taken for another's.
const AGENT_DIAL_BASE: u64 = 1 << 40;

/// The call's place in a queue.
#[derive(Debug)]
pub(super) struct QueueWait {
    /// The `queue` step's id.
    pub(super) step: u64,
    /// The id of the dial ringing agents now (or the last one).
    pub(super) dial: u64,
    pub(super) contact: u64,
    pub(super) announce_every: Duration,
    pub(super) callback: bool,
    /// Agents whose phones ring now, by extension.
    pub(super) ringing: HashMap<String, String>,
    /// Every agent rung by the current dial, by extension (a withdrawn one too: should their
    /// phone answer anyway, the call is theirs).
    pub(super) rung: HashMap<String, String>,
}

impl Call {
    /// The `queue` step starts: answer, music, join.
    pub(super) fn start_queue(
        &mut self,
        id: u64,
        queue: String,
        priority: i32,
        skills: Vec<(String, u8)>,
    ) {
        let def = self.ctx.plan.current().queues.get(&queue).cloned();
        let (Some(acd), Some(def)) = (self.ctx.acd.clone(), def) else {
            tracing::warn!(queue, "queue: no such queue, or no ACD");
            return self.ivr_input(Input::QueueDone {
                id,
                outcome: QueueOutcome::Failed,
            });
        };
        if !self.answer_locally() || self.media.is_none() {
            return;
        }
        self.ensure_record();
        if let Some(media) = &self.media {
            media.command(MediaCommand::Hold {
                leg: Leg::A,
                held: true,
            });
        }
        let contact = acd.join(Join {
            queue: queue.clone(),
            media: Media::Voice,
            priority,
            skills,
            session_id: Some(self.session_id),
            call_id: Some(self.record_id),
            conversation_id: None,
            events: self.queue_tx.clone(),
        });
        tracing::info!(queue, priority, contact, "queued");
        self.queue = Some(QueueWait {
            step: id,
            dial: AGENT_DIAL_BASE,
            contact,
            announce_every: def.announce_every,
            callback: def.callback,
            ringing: HashMap::new(),
            rung: HashMap::new(),
        });
        self.arm_announcement();
    }

    fn arm_announcement(&mut self) {
        if let Some(q) = &self.queue
            && !q.announce_every.is_zero()
        {
            self.timers
                .set(CallTimer::Announce, crate::clock::now() + q.announce_every);
        }
    }

    /// The announcement timer: ask the ACD where the caller stands (the answer comes back as
    /// a [`ContactEvent::Position`]).
    pub(super) fn announce_due(&mut self) {
        if let (Some(q), Some(acd)) = (&self.queue, &self.ctx.acd) {
            acd.ask_position(q.contact);
        }
        self.arm_announcement();
    }

    /// What the ACD says about this call.
    pub(super) async fn on_queue_event(&mut self, contact: u64, event: ContactEvent) {
        let Some(q) = &self.queue else {
            return;
        };
        if q.contact != contact {
            return;
        }
        match event {
            ContactEvent::Offer {
                agent,
                extension,
                timeout,
                since,
            } if q.ringing.is_empty() => {
                let dial = q.dial + 1;
                if let Some(q) = &mut self.queue {
                    q.ringing.insert(extension.clone(), agent.clone());
                    q.rung = q.ringing.clone();
                    q.dial = dial;
                }
                tracing::info!(agent, extension, "queue: ringing the agent");
                // The ACD's own offer timeout withdraws it first; this only bounds the dial.
                self.start_dial(dial, vec![extension], timeout + Duration::from_secs(5))
                    .await;
                // From the ACD's input (an agent freed) to the INVITE handed to the endpoint.
                metrics::histogram!("switchboard_acd_ring_delay_seconds").record(
                    crate::clock::tokio_now()
                        .saturating_duration_since(since)
                        .as_secs_f64(),
                );
            }
            ContactEvent::Offer {
                agent, extension, ..
            } => {
                // Ring-all: another agent's phones ring in the same dial; the first to answer
                // takes the call.
                if self.ring_more(&extension) {
                    tracing::info!(agent, extension, "queue: ringing another agent");
                    if let Some(q) = &mut self.queue {
                        q.rung.insert(extension.clone(), agent.clone());
                        q.ringing.insert(extension, agent);
                    }
                } else if let Some(acd) = &self.ctx.acd {
                    acd.rejected(contact, &agent, "unreachable");
                }
            }
            ContactEvent::Withdraw { agent } => {
                let Some(q) = &mut self.queue else {
                    return;
                };
                let before = q.ringing.len();
                q.ringing.retain(|_, a| *a != agent);
                // The last agent ringing withdrawn: the dial is given up (with a ring-all's
                // other agents still ringing, it goes on for them).
                if before > 0 && q.ringing.is_empty() {
                    tracing::info!(agent, "queue: offer withdrawn");
                    self.dial = None;
                    self.cancel_forks();
                    self.stop_agent_media();
                }
            }
            ContactEvent::Exit { reason } => {
                let step = q.step;
                tracing::info!(reason = reason.as_str(), "queue: left without an agent");
                // An agent's phone still ringing is given up (its offer is withdrawn too).
                if !q.ringing.is_empty() {
                    self.dial = None;
                    self.cancel_forks();
                }
                self.leave_queue();
                let outcome = match reason {
                    ExitReason::Timeout => QueueOutcome::Timeout,
                    ExitReason::Full => QueueOutcome::Full,
                    ExitReason::NoQueue => QueueOutcome::Failed,
                };
                self.ivr_input(Input::QueueDone { id: step, outcome });
            }
            ContactEvent::Position { position, wait } => {
                let minutes = wait.as_secs().div_ceil(60).max(1);
                let mut text = format!(
                    "You are number {position} in line. The expected wait is about {minutes} minute{}.",
                    if minutes == 1 { "" } else { "s" }
                );
                if q.callback {
                    text.push_str(" To be called back instead, keeping your place, press 1.");
                }
                self.play(
                    ANNOUNCE_ID,
                    Prompt::Say {
                        text: Template(text),
                        voice: None,
                    },
                    false,
                );
            }
        }
    }

    /// After a failed or withdrawn ring, the caller hears the music again (not the agent's
    /// early media).
    fn stop_agent_media(&mut self) {
        if let Some(media) = &self.media {
            media.command(MediaCommand::SetMedia {
                leg: Leg::B,
                media: None,
            });
            media.command(MediaCommand::Hold {
                leg: Leg::A,
                held: true,
            });
        }
    }

    /// Rings `extension`'s phones too, in the dial ringing now. False when there is no such
    /// dial or no registered phone.
    fn ring_more(&mut self, extension: &str) -> bool {
        let Some(dial) = self.dial.as_ref().map(|d| d.id) else {
            return false;
        };
        let locations = self
            .ctx
            .registrar
            .lookup(&crate::domain::Extension::new(extension));
        if locations.is_empty() {
            return false;
        }
        let Ok(offer) = self.callee_offer() else {
            return false;
        };
        for loc in locations {
            self.fork(dial, &loc, extension, offer.clone());
        }
        true
    }

    /// The music stops; the call is no longer waiting.
    fn leave_queue(&mut self) {
        self.queue = None;
        self.timers.clear(CallTimer::Announce);
        if let Some(media) = &self.media {
            media.command(MediaCommand::StopPlayback { leg: Leg::A });
            media.command(MediaCommand::Hold {
                leg: Leg::A,
                held: false,
            });
        }
    }

    /// A dial of the queue step ended: answered, the agent has the call; otherwise the ACD
    /// hears why and the caller keeps waiting. True when it was the queue's dial.
    pub(super) fn queue_dial_done(&mut self, id: u64, outcome: DialOutcome) -> bool {
        let Some(q) = &mut self.queue else {
            return false;
        };
        if q.dial != id {
            return false;
        }
        let (contact, step) = (q.contact, q.step);
        let ringing = std::mem::take(&mut q.ringing);
        let rung = std::mem::take(&mut q.rung);
        let Some(acd) = self.ctx.acd.clone() else {
            return true;
        };
        if outcome == DialOutcome::Answered {
            let answered = self.answered_extension.clone();
            // The agent whose phone answered; with one rung, that one.
            let agent = answered
                .as_ref()
                .and_then(|ext| rung.get(ext))
                .or_else(|| (rung.len() == 1).then(|| rung.values().next()).flatten())
                .cloned();
            if let Some(agent) = agent {
                acd.answered(contact, &agent);
                self.set_attribute("agent".into(), agent);
            }
            self.leave_queue();
            self.acd_contact = Some(contact);
            self.ivr_input(Input::QueueDone {
                id: step,
                outcome: QueueOutcome::Answered,
            });
            return true;
        }
        let reason = match outcome {
            DialOutcome::Busy => "declined",
            DialOutcome::NoAnswer => "no-answer",
            DialOutcome::Unavailable | DialOutcome::Failed => "unreachable",
            DialOutcome::Answered => "answered",
        };
        for agent in ringing.values() {
            acd.rejected(contact, agent, reason);
        }
        self.stop_agent_media();
        true
    }

    /// A digit while waiting: 1 takes the callback where the queue offers it. True when the
    /// digit was the queue's.
    pub(super) fn queue_digit(&mut self, digit: char) -> bool {
        let Some(q) = &self.queue else {
            return false;
        };
        if !(q.callback && digit == '1' && q.ringing.is_empty()) {
            return true; // nothing else to type while waiting
        }
        let (step, contact) = (q.step, q.contact);
        if let Some(acd) = &self.ctx.acd {
            let customer = self
                .caller_ext
                .clone()
                .unwrap_or_else(|| self.caller_user.clone());
            tracing::info!(customer, "queue: callback chosen");
            acd.callback(contact, &customer);
        }
        // The ACD keeps the place; this call ends.
        self.queue = None;
        self.timers.clear(CallTimer::Announce);
        self.ivr_input(Input::QueueDone {
            id: step,
            outcome: QueueOutcome::Callback,
        });
        self.ivr_hangup(HangupCause::Normal);
        true
    }

    /// The call ends: waiting, it abandoned; handled by an agent, the agent is done.
    pub(super) fn queue_call_over(&mut self) {
        let Some(acd) = self.ctx.acd.clone() else {
            return;
        };
        if let Some(q) = self.queue.take() {
            acd.left(q.contact, LeftReason::Abandoned);
        }
        if let Some(contact) = self.acd_contact.take() {
            acd.done(contact);
        }
    }
}
