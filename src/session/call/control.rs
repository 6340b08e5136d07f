//! The call actor's side of the call-control API (issue 5): commands from
//! [`crate::session::CallRegistry::control`] (state, hang-up, play, DTMF, recording, redirect
//! into a flow, hold / mute of a party, blind and attended transfer, bridging with another
//! call) and calls the server places itself (`POST /v1/calls`).
//!
//! Hold through the API is local, as Asterisk and FreeSWITCH do it: the held party hears music
//! on hold and is muted in the media pipeline; no re-INVITE (`sendonly`) is sent, so it works
//! with every phone. A bridge of two calls is a private conference room both join.
//!
//! Attended transfer (FreeSWITCH `att_xfer`, Asterisk `atxfer` semantics): the caller is held,
//! the consultation call (its own actor, same session) rings while the callee hears ringback;
//! once answered, the callee's leg joins the consultation call's private room. Complete: the
//! callee is hung up and the caller's leg joins that room (the calls are then a bridge), also
//! when the callee hangs up after the answer (or before it: a "blonde" transfer completed when
//! the consultation call answers). Cancel, or the consultation call ending: the callee leaves
//! the room, the caller is unheld. The two actors tell each other only
//! `CallInput::ConsultAnswered` and `BridgePeerGone`, each naming its sender, so a late message
//! from an earlier consultation is ignored. While consulting, the call's recording holds the
//! caller left and the consultation (callee and room mixed) right.
//!
//! A placed call is the same B2BUA with leg A turned around: the server's INVITE (RFC 3261
//! §13.2.1) with an offer from a fresh two-leg media session rings the extension `to`; once it
//! answers (2xx, ACKed per §13.2.2.4) it is leg A, so everything the IVR does to a caller
//! (prompts, digits, recordings, a `dial` bridging leg B) applies unchanged.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::super::core::state::Activity;
use super::{Call, Ending, Side, ivr, party, point_media};
use crate::event::{Event, Transferred};
use crate::ivr::interp::{Attributes, DialOutcome, Interpreter, Options};
use crate::ivr::plan::{HangupCause, Prompt};
use crate::media::dtmf::Digit;
use crate::media::engine::{MediaCommand, PlaySource};
use crate::media::negotiate;
use crate::media::ports::Leg;
use crate::media::sdp::SessionDescription;
use crate::session::core::fork::DialId;
use crate::session::{
    CallContext, CallHandle, CallInfo, CallInput, CallParty, ControlCommand, ControlError,
    ControlReply, LegInfo, OriginateRequest, PlaybackId, RecordAction, TransferTarget,
};
use crate::sip::dialog::{Dialog, new_call_id};
use crate::sip::endpoint::{Command, EndpointHandle, Owner, TuEvent};
use crate::sip::message::{Message, Method, Request, Response, StatusCode};
use crate::sip::registrar::Location;
use crate::sip::transaction::Branch;
use crate::store::{CallId, HangupBy, LegId, StoreCmd};

/// Media playback ids at or above this are API playbacks (their id + this); they sit above
/// the interpreter's ([`ivr::PLAY_ID_BASE`]).
pub(super) const API_PLAY_BASE: u64 = 1 << 48;

/// The dial id of a placed call's `connect_to` (interpreter ids count up from 1).
pub(super) const CONNECT_DIAL_ID: u64 = u64::MAX - 1;

/// The fork "dial" id of a placed call's own INVITE.
const OUTBOUND_FORK: DialId = DialId(u64::MAX);

/// How long each digit sent through the API lasts.
const API_DIGIT_DURATION: Duration = Duration::from_millis(100);

/// A call the server placed, while its INVITEs ring.
pub(super) struct Outbound {
    /// What to do once answered.
    flow: Option<String>,
    connect_to: Option<String>,
    webhook: Option<String>,
    ring_timeout: Duration,
    /// The best final failure of the forks so far.
    failure: Option<u16>,
}

/// An attended transfer in progress (on the transferring call): the caller is held, the
/// callee (the transferor) hears ringback, then talks to the consultation call in `room`.
pub(super) struct Consult {
    /// The consultation call.
    pub call: CallId,
    pub room: String,
    /// Where it rings.
    pub to: String,
    /// It answered: the callee is in the room.
    pub answered: bool,
    /// The caller was already held through the API (and stays held if cancelled).
    pub was_held: bool,
    /// The callee hung up while the consultation call rang ("blonde" transfer): the caller
    /// joins it as soon as it answers.
    pub blonde: bool,
}

/// The name of the synthetic flow a placed call's `webhook` runs in.
const WEBHOOK_FLOW: &str = "originate-webhook";

/// How long the `webhook` of a placed call may take to reply.
const ORIGINATE_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs a call the server places, from its INVITE to the call record.
pub(in crate::session) async fn run_originate(
    ctx: Arc<CallContext>,
    ep: EndpointHandle,
    mut inbox: mpsc::UnboundedReceiver<CallInput>,
    record_id: CallId,
    session_id: crate::store::SessionId,
    req: OriginateRequest,
    targets: Vec<Location>,
) {
    let Some(first) = targets.first() else {
        return;
    };
    let placeholder = Request::new(Method::Invite, first.uri.clone());
    let sip: (Owner, mpsc::UnboundedReceiver<TuEvent>) = mpsc::unbounded_channel();
    let ids = (record_id, session_id);
    let mut call = Call::new(ctx, ep, sip, ids, placeholder, None, first.source);
    call.start_outbound(req, &targets);
    call.event_loop(&mut inbox).await;
    call.finish().await;
}

impl Call {
    /// Opens the media session, sends the INVITE to every target (the contacts of the
    /// extension ring together, one fork each: same Call-ID and From tag, RFC 3261 §16.6-style
    /// parallel search done by us as the UAC) and writes the call record.
    fn start_outbound(&mut self, req: OriginateRequest, targets: &[Location]) {
        self.state.place();
        let session = self.open_media(2);
        let body = session.as_ref().ok().map(|session| {
            let port = session.local_port(Leg::A);
            let body = self.sdp_out[0].write(&negotiate::server_offer(), self.ctx.media_ip, port);
            let sdp = SessionDescription::parse(&body).expect("our own SDP parses");
            (Bytes::from(body), sdp)
        });
        let domain = self.ep.local.domain.clone();
        let call_id = new_call_id();
        let from = match &req.caller_id {
            Some(name) => format!(
                "\"{}\" <sip:{}@{domain}>;tag={}",
                name.replace(['"', '\\', '\r', '\n'], ""),
                req.from,
                self.a_tag
            ),
            None => format!("<sip:{}@{domain}>;tag={}", req.from, self.a_tag),
        };
        let to = if crate::session::is_sip_uri(&req.to) {
            format!("<{}>", targets[0].uri)
        } else {
            format!("<sip:{}@{domain}>", req.to)
        };
        let forks: Vec<(Request, Branch, Location)> = targets
            .iter()
            .map(|target| {
                let (via, branch) = self.ep.local.via(target.source.transport);
                let mut invite = Request::new(Method::Invite, target.uri.clone());
                let h = &mut invite.headers;
                h.push("Via", via);
                h.push("Max-Forwards", "70");
                h.push("From", from.clone());
                h.push("To", to.clone());
                h.push("Call-ID", call_id.clone());
                h.push("CSeq", "1 INVITE");
                h.push("Contact", self.ep.local.contact(target.source.transport));
                h.push("Allow", crate::sip::endpoint::ALLOW);
                h.push("User-Agent", self.ep.local.server_header.clone());
                for (name, value) in &req.headers {
                    h.push(name.as_str(), value.clone());
                }
                if let Some((body, _)) = &body {
                    invite.set_body(Some("application/sdp"), body.clone());
                }
                (invite, branch, target.clone())
            })
            .collect();
        let Some((invite, _, _)) = forks.first() else {
            return;
        };
        let invite = invite.clone();
        self.invite = invite;
        if let Some(of) = &req.consult_for {
            self.bridge_peer = Some((of.call, of.owner.clone()));
            self.consult_of = Some((of.call, of.room.clone()));
        }
        self.in_session = req.session.is_some();
        self.acd_contact = req.acd_contact;
        self.record_start(None, &req.to);
        let (session, (_, offer)) = match (session, body) {
            (Ok(session), Some(body)) => (session, body),
            _ => {
                tracing::warn!("cannot place the call: no media session");
                self.state.end(Ending {
                    cause: HangupCause::MediaFailed,
                    by: HangupBy::System,
                    code: 503,
                });
                return;
            }
        };
        self.media = Some(session);
        self.a_offer = Some(offer);
        self.ep.send(Command::AddDialog {
            key: self.a_dialog_key(),
            owner: self.me.clone(),
        });
        tracing::info!(to = %req.to, contacts = forks.len(), "placing a call");
        self.timers.set(
            crate::session::core::timers::CallTimer::OutboundRing,
            crate::clock::now() + req.ring_timeout,
        );
        self.outbound = Some(Outbound {
            flow: req.flow,
            connect_to: req.connect_to,
            webhook: req.webhook,
            ring_timeout: req.ring_timeout,
            failure: None,
        });
        for (invite, branch, target) in forks {
            self.ep.send(Command::SendRequest {
                req: invite.clone(),
                to: target.source,
                owner: self.me.clone(),
            });
            self.forks
                .add(OUTBOUND_FORK, req.to.clone(), branch, invite, target.source);
        }
    }

    /// Whether `branch` is one of the INVITEs of a call we placed.
    pub(super) fn is_outbound_fork(&self, branch: &Branch) -> bool {
        self.outbound.is_some()
            && self
                .forks
                .iter()
                .any(|f| f.dial == OUTBOUND_FORK && f.branch == *branch)
    }

    /// A response to one of the INVITEs (fork `i`) of a call we placed.
    pub(super) fn on_outbound_response(&mut self, i: usize, resp: Response) {
        let status = resp.status;
        if status.is_provisional() {
            let wanted = self.forks.on_provisional(i);
            self.run_fork_commands();
            if wanted && (status.0 == 180 || status.0 == 183) {
                self.note_ringing(status);
            }
            return;
        }
        if !self.forks.on_final(i) {
            // A 2xx retransmission: our ACK was lost.
            self.reack(&resp);
            return;
        }
        if !status.is_success() {
            if self.state.caller_answered() || self.state.is_ending() {
                // A fork we CANCELled once another answered (or we gave up).
                return;
            }
            let Some(out) = self.outbound.as_mut() else {
                return;
            };
            if crate::domain::better_failure(out.failure, status.0) {
                out.failure = Some(status.0);
            }
            let decline = status.0 >= 600;
            if self.forks.dial_waiting(OUTBOUND_FORK) && !decline {
                return;
            }
            let code = out.failure.unwrap_or(status.0);
            tracing::info!(code, "placed call not answered");
            if decline {
                // A 6xx ends the search: the other phones stop ringing (§16.7 step 5).
                self.cancel_forks();
            }
            self.state.end(Ending {
                cause: self.failure_cause(code),
                by: HangupBy::Callee,
                code,
            });
            return;
        }
        let Some(fork) = self.forks.get(i) else {
            return;
        };
        let dialog = Dialog::uac(&fork.invite, &resp, fork.peer);
        let media = SessionDescription::parse(&resp.body)
            .ok()
            .and_then(|sdp| negotiate::leg_media(&sdp).map(|m| (sdp, m)));
        let dialog = match dialog {
            Ok(d) if !self.state.is_ending() && !self.state.caller_answered() => d,
            Ok(d) => {
                // Hung up (or timed out) while it rang, or another phone answered first.
                return self.ack_and_bye(d);
            }
            Err(error) => {
                tracing::info!(%error, "unusable 2xx to a placed call");
                self.state.end(Ending {
                    cause: HangupCause::Failed,
                    by: HangupBy::System,
                    code: 500,
                });
                // The extension's other phones stop ringing.
                self.cancel_forks();
                return;
            }
        };
        let ack = dialog.ack(1);
        self.ep.send(Command::SendRaw {
            to: dialog.peer,
            msg: Message::Request(self.with_via(ack, dialog.peer.transport)),
        });
        self.a_dialog = Some(dialog);
        self.state.answer_caller();
        // The extension's other phones stop ringing.
        self.cancel_forks();
        self.record_answer();
        let Some(((sdp, a), session)) = media.zip(self.media.as_ref()) else {
            tracing::info!("placed call answered without usable SDP");
            return self.hangup(Ending {
                cause: HangupCause::MediaFailed,
                by: HangupBy::System,
                code: 488,
            });
        };
        point_media(session, Leg::A, &sdp);
        session.command(MediaCommand::SetMedia {
            leg: Leg::A,
            media: Some(a),
        });
        self.a_promised = Some(a);
        tracing::info!(codec = a.codec.name(), "placed call answered");
        if let Some((peer, room)) = self.consult_of.clone() {
            return self.join_consultation(peer, room);
        }
        let Some(out) = self.outbound.as_ref() else {
            return;
        };
        if let Some(flow) = out.flow.clone() {
            self.run_flow(flow);
        } else if let Some(url) = out.webhook.clone() {
            self.run_webhook(url);
        } else if let Some(to) = out.connect_to.clone() {
            self.pending_connect = Some((to, out.ring_timeout));
        }
    }

    /// The first 18x of a dial or a placed call: `call.ringing`.
    pub(super) fn note_ringing(&mut self, status: StatusCode) {
        if !self.rang {
            self.rang = true;
            self.event(Event::CallRinging { code: status.0 });
        }
    }

    /// A `connect_to` dial ended: bridged, or the call ends.
    pub(super) fn connect_done(&mut self, outcome: DialOutcome) {
        self.connecting = false;
        if outcome != DialOutcome::Answered {
            tracing::info!(
                outcome = outcome.as_str(),
                "placed call: connect_to not reached"
            );
            self.hangup(Ending {
                cause: match outcome {
                    DialOutcome::Busy => HangupCause::Busy,
                    DialOutcome::NoAnswer => HangupCause::NoAnswer,
                    DialOutcome::Unavailable => HangupCause::Unavailable,
                    DialOutcome::Answered | DialOutcome::Failed => HangupCause::Failed,
                },
                by: HangupBy::System,
                code: 200,
            });
        }
    }

    /// Runs the one-step flow `webhook = url` on an answered placed call, in a plan of its
    /// own (the reply's steps run as for an IVR webhook; they cannot `goto` dialplan flows).
    fn run_webhook(&mut self, url: String) {
        use crate::ivr::plan::{Dialplan, Flow, Pos, Step, StepKind, Template, Webhook};
        let mut plan = Dialplan::default();
        plan.calendars = self.ctx.plan.current().calendars.clone();
        let step = Step {
            label: None,
            kind: StepKind::Webhook(Webhook {
                url: Template(url),
                timeout: ORIGINATE_WEBHOOK_TIMEOUT,
                fallback: None,
            }),
            at: Pos::default(),
        };
        plan.flows.insert(
            WEBHOOK_FLOW.to_owned(),
            Flow {
                name: WEBHOOK_FLOW.to_owned(),
                steps: vec![step],
                at: Pos::default(),
            },
        );
        self.run_flow_in(Arc::new(plan), WEBHOOK_FLOW.to_owned());
    }

    /// Starts `flow` (which exists) on the call with the built-in attributes (kept from the
    /// flow running before, if any).
    fn run_flow(&mut self, flow: String) {
        let plan = self.ctx.plan.current();
        self.run_flow_in(plan, flow);
    }

    /// [`Self::run_flow`] in the given plan.
    fn run_flow_in(&mut self, plan: Arc<crate::ivr::plan::Dialplan>, flow: String) {
        let attrs = match self.ivr.take() {
            Some(old) => old.attributes().clone(),
            None => self.builtin_attributes(self.caller_user.clone(), String::new()),
        };
        self.start_interpreter(plan, flow, attrs);
    }

    /// The attributes every flow starts with: caller, caller_name, called, call_id and
    /// session_id.
    pub(super) fn builtin_attributes(&self, caller: String, caller_name: String) -> Attributes {
        let mut attrs = Attributes::new();
        attrs.insert("caller".into(), caller);
        attrs.insert("caller_name".into(), caller_name);
        attrs.insert("called".into(), self.called.clone());
        attrs.insert("call_id".into(), self.record_id.to_string());
        attrs.insert("session_id".into(), self.session_id.to_string());
        // What the customer's record says (`customer.vip`, `customer.NAME`).
        let profile = self
            .ctx
            .sessions
            .profile(crate::store::Identity {
                kind: crate::domain::IdentityKind::Phone,
                value: attrs.get("caller").cloned().unwrap_or_default(),
            })
            .unwrap_or_default();
        attrs.insert("customer.vip".into(), profile.vip.to_string());
        for (k, v) in profile.attributes {
            attrs.insert(format!("customer.{k}"), v);
        }
        attrs
    }

    /// Starts an interpreter on `flow` (which exists in `plan`) with `attrs`.
    pub(super) fn start_interpreter(
        &mut self,
        plan: Arc<crate::ivr::plan::Dialplan>,
        flow: String,
        attrs: Attributes,
    ) {
        let options = Options {
            answered: self.state.caller_answered(),
            default_dial_timeout: self.ctx.no_answer_timeout,
        };
        self.pending_speech = None;
        self.flow = Some(flow.clone());
        self.ivr = Some(Interpreter::with_options(
            plan,
            &flow,
            attrs,
            crate::clock::now(),
            options,
        ));
    }

    /// Carries out an API command.
    pub(super) fn on_control(&mut self, cmd: ControlCommand) -> Result<ControlReply, ControlError> {
        if let ControlCommand::Info = cmd {
            return Ok(ControlReply::Info(self.info()));
        }
        if self.state.is_ending()
            || (!self.state.caller_waits()
                && !self.state.caller_answered()
                && self.outbound.is_none())
        {
            return Err(ControlError::Conflict("the call is ending".into()));
        }
        match cmd {
            ControlCommand::Info => Ok(ControlReply::Info(self.info())),
            ControlCommand::Hangup { cause } => {
                self.api_hangup(cause);
                Ok(ControlReply::Done)
            }
            ControlCommand::Play { prompt, party } => self.api_play(prompt, party),
            ControlCommand::StopPlayback { id } => {
                let leg = self
                    .api_plays
                    .remove(&id.0)
                    .ok_or_else(|| ControlError::NotFound("no such playback running".into()))?;
                if let Some(media) = &self.media {
                    media.command(MediaCommand::StopPlayback { leg });
                }
                Ok(ControlReply::Done)
            }
            ControlCommand::SendDtmf { digits, party } => {
                let leg = self.live_leg(party)?;
                let list = digits
                    .chars()
                    .map(Digit::from_char)
                    .collect::<Option<Vec<_>>>()
                    .filter(|l| !l.is_empty())
                    .ok_or_else(|| ControlError::Invalid("digits are 0-9, *, #, A-D".into()))?;
                let Some(media) = &self.media else {
                    return Err(ControlError::Conflict("the call has no media".into()));
                };
                for digit in list {
                    media.command(MediaCommand::SendDigit {
                        leg,
                        digit,
                        duration: API_DIGIT_DURATION,
                    });
                }
                self.event(Event::DtmfSent { digits, leg: party });
                Ok(ControlReply::Done)
            }
            ControlCommand::Record(action) => self.api_record(action),
            ControlCommand::Redirect { flow } => self.api_redirect(flow),
            ControlCommand::Hold { party, held } => self.api_hold(party, held),
            ControlCommand::Mute { party, muted } => self.api_mute(party, muted),
            ControlCommand::Transfer(target) => self.api_transfer(target),
            ControlCommand::Bridge {
                room,
                peer,
                peer_owner,
            } => self.api_bridge(room, peer, peer_owner),
            ControlCommand::Consult {
                room,
                consult,
                consult_owner,
                to,
            } => self.api_consult(room, consult, consult_owner, to),
            ControlCommand::CompleteTransfer => {
                if self.reinvite.is_some() {
                    return Err(ControlError::Conflict("a re-INVITE is in progress".into()));
                }
                self.complete_transfer()
            }
            ControlCommand::CancelTransfer => {
                if self.consult.is_none() {
                    return Err(ControlError::Conflict(
                        "no attended transfer is in progress".into(),
                    ));
                }
                if let Some((_, peer)) = self.bridge_peer.take() {
                    let _ = peer.send(CallInput::BridgePeerGone {
                        from: self.record_id,
                    });
                }
                self.end_consultation("cancelled");
                Ok(ControlReply::Done)
            }
        }
    }

    /// Starts an attended transfer (see [`ControlCommand::Consult`]).
    fn api_consult(
        &mut self,
        room: String,
        consult: CallId,
        consult_owner: CallHandle,
        to: String,
    ) -> Result<ControlReply, ControlError> {
        if self.consult.is_some() {
            return Err(ControlError::Conflict(
                "an attended transfer is already in progress".into(),
            ));
        }
        if !self.state.caller_answered() || self.b_dialog.is_none() || !self.state.callee_answered()
        {
            return Err(ControlError::Conflict(
                "only a call whose callee answered can be transferred attended".into(),
            ));
        }
        if self.conference.is_some() || self.bridge_peer.is_some() {
            return Err(ControlError::Conflict(
                "a bridged or conference call cannot be transferred attended".into(),
            ));
        }
        if self.reinvite.is_some() {
            return Err(ControlError::Conflict("a re-INVITE is in progress".into()));
        }
        let Some(media) = &self.media else {
            return Err(ControlError::Conflict("the call has no media".into()));
        };
        media.command(MediaCommand::Play {
            leg: Leg::B,
            id: 0,
            source: PlaySource::Tone(crate::media::tone::ToneKind::Ringback),
            barge_in: false,
        });
        let was_held = self.api_held[0];
        self.api_held[0] = true;
        self.apply_hold_mute(Leg::A);
        tracing::info!(%consult, %to, "attended transfer: consulting");
        if !was_held {
            self.event(Event::CallHeld {
                held: true,
                leg: CallParty::Caller,
                by: "transfer".into(),
            });
        }
        self.event(Event::CallConsultation {
            state: "started".into(),
            consultation_call_id: consult.to_string(),
            to: Some(to.clone()),
        });
        self.consult = Some(Consult {
            call: consult,
            room,
            to,
            answered: false,
            was_held,
            blonde: false,
        });
        self.bridge_peer = Some((consult, consult_owner));
        Ok(ControlReply::Done)
    }

    /// The consultation call answered: the callee stops hearing ringback and talks to it.
    pub(super) fn consultation_answered(&mut self, from: CallId) {
        if self.state.is_ending() {
            return;
        }
        let Some(c) = self
            .consult
            .as_mut()
            .filter(|c| !c.answered && c.call == from)
        else {
            return;
        };
        c.answered = true;
        let (call, room, blonde) = (c.call, c.room.clone(), c.blonde);
        if blonde {
            // The transferor hung up while it rang: the caller goes straight to it.
            tracing::info!(%call, "attended transfer: answered after the callee left");
            let _ = self.complete_transfer();
            return;
        }
        if let Some(media) = &self.media {
            media.command(MediaCommand::StopPlayback { leg: Leg::B });
            media.command(MediaCommand::JoinConference {
                room: self.ctx.media.rooms.get_or_create(&room),
                leg: Leg::B,
            });
        }
        tracing::info!(%call, "attended transfer: consultation answered");
        self.event(Event::CallConsultation {
            state: "answered".into(),
            consultation_call_id: call.to_string(),
            to: None,
        });
    }

    /// The consultation is over without a transfer (`state`: `cancelled` through the API,
    /// `ended` when the consultation call ended): caller and callee talk again.
    pub(super) fn end_consultation(&mut self, state: &str) {
        let Some(c) = self.consult.take() else {
            return;
        };
        if let Some(media) = &self.media {
            if !c.answered {
                media.command(MediaCommand::StopPlayback { leg: Leg::B });
            }
            media.command(MediaCommand::LeaveConference);
        }
        if c.blonde {
            // The transferor left and the consultation call failed: nobody is left to talk to.
            tracing::info!(call = %c.call, state, "attended transfer failed after the callee left");
            self.event(Event::CallConsultation {
                state: state.into(),
                consultation_call_id: c.call.to_string(),
                to: None,
            });
            return self.hangup(Ending {
                cause: HangupCause::Normal,
                by: HangupBy::System,
                code: 200,
            });
        }
        self.api_held[0] = c.was_held;
        self.apply_hold_mute(Leg::A);
        tracing::info!(call = %c.call, state, "attended transfer: consultation over");
        self.event(Event::CallConsultation {
            state: state.into(),
            consultation_call_id: c.call.to_string(),
            to: None,
        });
        if !c.was_held {
            self.event(Event::CallHeld {
                held: false,
                leg: CallParty::Caller,
                by: "transfer".into(),
            });
        }
    }

    /// Completes the attended transfer: the callee goes (BYE, unless it already hung up) and
    /// the caller joins the consultation call's room; the two calls are then bridged.
    pub(super) fn complete_transfer(&mut self) -> Result<ControlReply, ControlError> {
        match &self.consult {
            None => {
                return Err(ControlError::Conflict(
                    "no attended transfer is in progress".into(),
                ));
            }
            Some(c) if !c.answered => {
                return Err(ControlError::Conflict(
                    "the consultation call is not answered yet".into(),
                ));
            }
            Some(_) => {}
        }
        let Some(c) = self.consult.take() else {
            return Ok(ControlReply::Done);
        };
        if self.state.callee_answered() {
            self.drop_callee();
        }
        if let Some(media) = &self.media {
            media.command(MediaCommand::JoinConference {
                room: self.ctx.media.rooms.get_or_create(&c.room),
                leg: Leg::A,
            });
        }
        let was_held = self.api_held[0];
        self.reset_hold_mute();
        if was_held {
            self.event(Event::CallHeld {
                held: false,
                leg: CallParty::Caller,
                by: "transfer".into(),
            });
        }
        tracing::info!(call = %c.call, to = %c.to, "attended transfer completed");
        self.event(Event::CallTransferred(Transferred::Attended {
            kind: "attended".into(),
            to: c.to.clone(),
            consultation_call_id: c.call.to_string(),
        }));
        self.conference = Some(c.room);
        Ok(ControlReply::Done)
    }

    /// A consultation call answered: it talks in the transferring call's room (to its
    /// callee, then, once the transfer completes, to its caller) and tells that call.
    fn join_consultation(&mut self, peer: CallId, room: String) {
        if let Some(media) = &self.media {
            media.command(MediaCommand::JoinConference {
                room: self.ctx.media.rooms.get_or_create(&room),
                leg: Leg::A,
            });
        }
        let me = self.record_id;
        match &self.bridge_peer {
            Some((_, owner)) if owner.send(CallInput::ConsultAnswered { from: me }).is_ok() => {}
            _ => {
                tracing::info!("the transferring call is gone: hanging up");
                return self.hangup(Ending {
                    cause: HangupCause::Normal,
                    by: HangupBy::System,
                    code: 200,
                });
            }
        }
        self.event(Event::CallBridged {
            bridge_id: room.clone(),
            with: peer.to_string(),
            kind: Some("consultation".into()),
        });
        self.conference = Some(room);
    }

    /// Joins the private room of a bridge with call `peer`: what runs on the call stops.
    fn api_bridge(
        &mut self,
        room: String,
        peer: crate::store::CallId,
        peer_owner: CallHandle,
    ) -> Result<ControlReply, ControlError> {
        if !self.state.caller_answered()
            || self.b_dialog.is_some()
            || self.dial.is_some()
            || self.connecting
            || self.conference.is_some()
            || self.reinvite.is_some()
        {
            return Err(ControlError::Conflict(
                "only an answered call without a callee can be bridged".into(),
            ));
        }
        let Some(media) = &self.media else {
            return Err(ControlError::Conflict("the call has no media".into()));
        };
        self.ivr = None;
        self.flow = None;
        self.pending_speech = None;
        self.pending_connect = None;
        media.command(MediaCommand::StopPlayback { leg: Leg::A });
        media.command(MediaCommand::JoinConference {
            room: self.ctx.media.rooms.get_or_create(&room),
            leg: Leg::A,
        });
        tracing::info!(%room, %peer, "bridged through the API");
        self.event(Event::CallBridged {
            bridge_id: room.clone(),
            with: peer.to_string(),
            kind: None,
        });
        self.conference = Some(room);
        self.bridge_peer = Some((peer, peer_owner));
        Ok(ControlReply::Done)
    }

    /// Holds or resumes `party` locally: music on hold to it, its audio muted. No re-INVITE
    /// (RFC 3264 §8.4 `sendonly`) is sent: the party's phone keeps sending, we just do not pass
    /// it on, which works with every phone and needs no offer/answer round trip.
    fn api_hold(&mut self, party: CallParty, held: bool) -> Result<ControlReply, ControlError> {
        let leg = self.live_leg(party)?;
        if leg == Leg::A && self.consult.is_some() {
            return Err(ControlError::Conflict(
                "the caller is held by an attended transfer in progress".into(),
            ));
        }
        let i = leg.index();
        if self.api_held[i] == held {
            return Ok(ControlReply::Done);
        }
        self.api_held[i] = held;
        self.apply_hold_mute(leg);
        tracing::info!(leg = party.as_str(), held, "hold through the API");
        self.event(Event::CallHeld {
            held,
            leg: party,
            by: "api".into(),
        });
        Ok(ControlReply::Done)
    }

    /// Mutes or unmutes `party`: the other hears silence instead of it.
    fn api_mute(&mut self, party: CallParty, muted: bool) -> Result<ControlReply, ControlError> {
        let leg = self.live_leg(party)?;
        let i = leg.index();
        if self.muted[i] == muted {
            return Ok(ControlReply::Done);
        }
        self.muted[i] = muted;
        self.apply_hold_mute(leg);
        let leg = party;
        self.event(if muted {
            Event::CallMuted { leg }
        } else {
            Event::CallUnmuted { leg }
        });
        Ok(ControlReply::Done)
    }

    /// Tells the media session what `leg` hears and whether it is passed on.
    fn apply_hold_mute(&self, leg: Leg) {
        let i = leg.index();
        if let Some(media) = &self.media {
            media.command(MediaCommand::Hold {
                leg,
                held: self.held[i] || self.api_held[i],
            });
            media.command(MediaCommand::Mute {
                leg,
                muted: self.muted[i] || self.api_held[i],
            });
        }
    }

    /// Blind transfer: the callee goes, the caller is dialled to `to` or runs the flow.
    fn api_transfer(&mut self, target: TransferTarget) -> Result<ControlReply, ControlError> {
        match target {
            TransferTarget::Flow(flow) => {
                self.move_caller(Transferred::Flow {
                    flow: flow.clone(),
                    kind: "blind".into(),
                })?;
                self.run_flow(flow);
                Ok(ControlReply::Done)
            }
            TransferTarget::Extension(to) => {
                if !self.state.caller_answered() {
                    return Err(ControlError::Conflict(
                        "the call is not answered yet".into(),
                    ));
                }
                self.move_caller(Transferred::Extension {
                    to: to.to_string(),
                    kind: "blind".into(),
                })?;
                self.ivr = None;
                self.flow = None;
                self.pending_speech = None;
                if let Some(media) = &self.media {
                    media.command(MediaCommand::StopPlayback { leg: Leg::A });
                }
                self.pending_connect = Some((to.to_string(), self.ctx.no_answer_timeout));
                Ok(ControlReply::Done)
            }
        }
    }

    /// The call as the API shows it.
    fn info(&self) -> CallInfo {
        let state = self
            .state
            .phase(Activity {
                ivr: self.ivr.is_some(),
                dialling: self.dial.is_some(),
                bridged: self.b_dialog.is_some() || self.bridge_peer.is_some(),
            })
            .as_str();
        let leg_state = |answered: bool, held: bool| match (answered, held) {
            (false, _) => "ringing",
            (true, false) => "answered",
            (true, true) => "held",
        };
        let a_user = if self.outbound.is_some() {
            self.called.clone()
        } else {
            self.caller_user.clone()
        };
        let mut legs = vec![LegInfo {
            id: self.legs[0],
            party: CallParty::Caller,
            kind: crate::domain::LegKind::Sip,
            sip_call_id: self.invite.headers.call_id().ok().map(str::to_owned),
            user: Some(a_user).filter(|u| !u.is_empty()),
            state: leg_state(
                self.state.caller_answered(),
                self.held[0] || self.api_held[0],
            ),
            muted: self.muted[0] || self.api_held[0],
        }];
        let b_ringing = self.dial.is_some() && !self.forks.all_done();
        if self.b_dialog.is_some() || b_ringing {
            let user = self
                .forks
                .iter()
                .rev()
                .find(|f| f.dial != OUTBOUND_FORK)
                .map(|f| f.target.clone());
            legs.push(LegInfo {
                id: self.legs[1],
                party: CallParty::Callee,
                kind: crate::domain::LegKind::Sip,
                sip_call_id: Some(self.b_call_id.clone()),
                user,
                state: leg_state(self.b_dialog.is_some(), self.held[1] || self.api_held[1]),
                muted: self.muted[1] || self.api_held[1],
            });
        }
        CallInfo {
            id: self.record_id,
            session_id: self.session_id,
            state,
            direction: self.direction.as_str(),
            caller: self.caller_user.clone(),
            callee: self.called.clone(),
            started_ms: self.started_ms,
            answered_ms: self.answered_ms,
            flow: self.flow.clone(),
            legs,
        }
    }

    /// The media leg of `party`, which must be answered.
    fn live_leg(&self, party: CallParty) -> Result<Leg, ControlError> {
        if !self.state.caller_answered() {
            return Err(ControlError::Conflict(
                "the call is not answered yet".into(),
            ));
        }
        match party {
            CallParty::Caller => Ok(Leg::A),
            CallParty::Callee if self.b_dialog.is_some() => Ok(Leg::B),
            CallParty::Callee => Err(ControlError::Conflict(
                "the call has no answered callee".into(),
            )),
        }
    }

    pub(super) fn api_hangup(&mut self, cause: HangupCause) {
        let name = cause;
        tracing::info!(%cause, "hung up through the API");
        if self.state.caller_answered() {
            return self.hangup(Ending {
                cause: name,
                by: HangupBy::System,
                code: 200,
            });
        }
        self.ivr = None;
        self.dial = None;
        self.cancel_forks();
        if self.outbound.is_some() {
            self.state.end(Ending {
                cause: name,
                by: HangupBy::System,
                code: 487,
            });
            return;
        }
        self.ensure_record();
        let status = StatusCode(cause.status());
        self.state.end(Ending {
            cause: name,
            by: HangupBy::System,
            code: status.0,
        });
        self.reply_a_final(status);
    }

    fn api_play(&mut self, prompt: Prompt, party: CallParty) -> Result<ControlReply, ControlError> {
        let leg = self.live_leg(party)?;
        if self.media.is_none() {
            return Err(ControlError::Conflict("the call has no media".into()));
        }
        let source =
            match prompt {
                Prompt::File(name) => {
                    let mut name = std::path::PathBuf::from(name);
                    if name.extension().is_none() {
                        name.set_extension("wav");
                    }
                    let rate = match (leg, self.a_promised.map(|m| m.codec.native_rate())) {
                        (Leg::A, Some(8000)) => 8000,
                        _ => 16_000,
                    };
                    let pcm =
                        self.ctx.media.prompts.load(&name, rate).map_err(|e| {
                            ControlError::NotFound(format!("prompt not playable: {e}"))
                        })?;
                    Some(PlaySource::Prompt {
                        pcm,
                        rate,
                        looped: false,
                    })
                }
                Prompt::Tone(kind) => Some(PlaySource::Tone(kind)),
                Prompt::Silence(_) => {
                    return Err(ControlError::Invalid("nothing to play".into()));
                }
                Prompt::Say { text, voice } => {
                    self.last_play += 1;
                    let id = self.last_play;
                    self.api_plays.insert(id, leg);
                    let dir = self.ctx.media.data_dir.join("tts");
                    let tx = self.ivr_tx.clone();
                    tokio::spawn(async move {
                        let result = ivr::synthesize(dir, text.0, voice).await;
                        let _ = tx.send(ivr::IvrResult::ApiSpeech { id, leg, result });
                    });
                    return Ok(ControlReply::Playback(PlaybackId(id)));
                }
            };
        self.last_play += 1;
        let id = self.last_play;
        if let Some(source) = source {
            self.api_play_source(id, leg, source);
        }
        Ok(ControlReply::Playback(PlaybackId(id)))
    }

    /// Plays an API playback's audio now.
    pub(super) fn api_play_source(&mut self, id: u64, leg: Leg, source: PlaySource) {
        let Some(media) = &self.media else {
            return;
        };
        media.command(MediaCommand::Play {
            leg,
            id: API_PLAY_BASE + id,
            source,
            barge_in: false,
        });
        self.api_plays.insert(id, leg);
        self.event(Event::PlaybackStarted {
            playback_id: id.to_string(),
            source: "api".into(),
            leg: party(leg),
        });
    }

    fn api_record(&mut self, action: RecordAction) -> Result<ControlReply, ControlError> {
        if !self.state.caller_answered() || self.media.is_none() {
            return Err(ControlError::Conflict(
                "the call is not answered yet".into(),
            ));
        }
        if self.ivr_recording.is_some() {
            return Err(ControlError::Conflict(
                "the flow is recording a message".into(),
            ));
        }
        match action {
            RecordAction::Start => {
                if self.recording.is_some() {
                    return Err(ControlError::Conflict("the call is being recorded".into()));
                }
                self.start_recording();
                if self.recording.is_none() {
                    return Err(ControlError::Conflict(
                        "the recording could not start".into(),
                    ));
                }
            }
            RecordAction::Stop => {
                let (Some(rid), Some(path)) = (self.recording.take(), self.recording_path.take())
                else {
                    return Err(ControlError::Conflict(
                        "the call is not being recorded".into(),
                    ));
                };
                self.stopping.push((rid, path));
                if let Some(media) = &self.media {
                    media.command(MediaCommand::StopRecording);
                }
            }
            RecordAction::Pause | RecordAction::Resume => {
                let Some(rid) = self.recording else {
                    return Err(ControlError::Conflict(
                        "the call is not being recorded".into(),
                    ));
                };
                let pause = action == RecordAction::Pause;
                if let Some(media) = &self.media {
                    media.command(MediaCommand::PauseRecording(pause));
                }
                let recording_id = rid.to_string();
                self.event(if pause {
                    Event::RecordingPaused { recording_id }
                } else {
                    Event::RecordingResumed { recording_id }
                });
            }
        }
        Ok(ControlReply::Done)
    }

    /// Runs `flow` on the call: a ringing dial is given up, a bridged callee hung up.
    fn api_redirect(&mut self, flow: String) -> Result<ControlReply, ControlError> {
        if !self.ctx.plan.current().flows.contains_key(&flow) {
            return Err(ControlError::NotFound(format!("no such flow: {flow}")));
        }
        self.move_caller(Transferred::Flow {
            flow: flow.clone(),
            kind: "redirect".into(),
        })?;
        self.run_flow(flow);
        Ok(ControlReply::Done)
    }

    /// Frees the caller for a transfer or redirect: a ringing dial is given up, a bridged
    /// callee hung up (or the call this one is bridged with), hold and mute cleared;
    /// `call.transferred` is written with `data`.
    fn move_caller(&mut self, data: Transferred) -> Result<(), ControlError> {
        if self.consult.is_some() {
            return Err(ControlError::Conflict(
                "an attended transfer is in progress: complete or cancel it first".into(),
            ));
        }
        if self.conference.is_some() && self.bridge_peer.is_none() {
            return Err(ControlError::Conflict(
                "a conference call cannot be redirected".into(),
            ));
        }
        if self.reinvite.is_some() {
            return Err(ControlError::Conflict("a re-INVITE is in progress".into()));
        }
        if !self.state.caller_answered() && self.outbound.is_some() {
            return Err(ControlError::Conflict(
                "the call is not answered yet".into(),
            ));
        }
        if let Some((_, peer)) = self.bridge_peer.take() {
            // Bridged with another call: that call's party goes, as a callee would.
            let _ = peer.send(CallInput::BridgePeerGone {
                from: self.record_id,
            });
            self.conference = None;
            if let Some(media) = &self.media {
                media.command(MediaCommand::LeaveConference);
            }
        }
        if self.dial.take().is_some() {
            self.cancel_forks();
            self.stop_ringback();
        }
        self.connecting = false;
        self.pending_connect = None;
        if self.b_dialog.is_some() {
            self.drop_callee();
        }
        self.reset_hold_mute();
        tracing::info!(?data, "caller moved through the API");
        self.event(Event::CallTransferred(data));
        Ok(())
    }

    /// Hangs up the callee (BYE, unless it already left), closes its leg record and forgets
    /// its media.
    pub(super) fn drop_callee(&mut self) {
        self.hangup_leg(Side::Callee);
        self.ctx.writer.send(StoreCmd::LegEnded {
            leg_id: self.legs[1],
            at_ms: crate::clock::unix_ms(),
            final_code: Some(200),
        });
        self.legs[1] = LegId::new();
        self.state.release_callee();
        if let Some(media) = &self.media {
            // What played to it (ringback of a consultation, an API prompt) ends with it.
            media.command(MediaCommand::StopPlayback { leg: Leg::B });
            media.command(MediaCommand::SetMedia {
                leg: Leg::B,
                media: None,
            });
        }
    }

    /// Clears hold and mute of both parties (the party on leg B is a new one).
    fn reset_hold_mute(&mut self) {
        self.held = [false; 2];
        self.api_held = [false; 2];
        self.muted = [false; 2];
        for leg in [Leg::A, Leg::B] {
            self.apply_hold_mute(leg);
        }
    }
}
