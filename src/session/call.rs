//! The call actor: one task owning one B2BUA call from INVITE to the call record.
//!
//! Every call (but a conference join) is routed through the dialplan: the route's flow runs in
//! an IVR interpreter ([`crate::ivr::interp`]) whose actions the actor carries out ([`ivr`]):
//! answering locally, prompts, digits, recordings, webhooks, and dials. A dial before any
//! answer is the plain B2BUA (ringing and early media pass through, the callee's answer
//! answers the caller); a dial after the IVR answered bridges the callee into the call.

mod control;

pub(super) use control::run_originate;
mod ivr;
mod queue;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::core::answer::{Unacked, UnackedOutput};
use super::core::fork::{DialId, ForkCommand, ForkSet, cancel_request};
use super::core::leg::LegIdentity;
use super::core::state::{CallState, Ending};
use super::core::timers::{CallTimer, Timers};
use super::{CallContext, CallHandle, CallInput, CallParty};
use crate::domain::{HangupCause, better_failure};
use crate::event::Event;
use crate::ivr::interp::Input;
use crate::media::dtmf;
use crate::media::engine::{MediaCommand, MediaEvent, MediaReport, MediaSession, PlaySource};
use crate::media::negotiate::{self, LegMedia};
use crate::media::ports::Leg;
use crate::media::recorder::{ChannelMode, Recorder, RecordingSpec};
use crate::media::sdp::{Direction as SdpDirection, LegOrigin, SessionDescription};
use crate::media::tone::ToneKind;
use crate::sip::dialog::DialogKey;
use crate::sip::dialog::{Dialog, new_call_id, new_tag, response_with_tag};
use crate::sip::endpoint::{Command, EndpointHandle, Owner, TuEvent, TxFailure};
use crate::sip::message::{Message, Method, NameAddr, Request, Response, StatusCode};
use crate::sip::registrar::{AuthDecision, Location};
use crate::sip::transaction::{Branch, TxId};
use crate::sip::transport::{Peer, Transport};
use crate::store::{
    CallId, Direction, EndedRecording, HangupBy, Identity, IdentityKind, LegId, LegKind, LegRole,
    NewCall, NewLeg, NewRecording, RecordingId, SessionId, StoreCmd,
};

/// Which side of the B2BUA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Caller,
    Callee,
}

/// A re-INVITE being relayed from one side to the other.
struct Reinvite {
    from: Side,
    tx: TxId,
    req: Request,
    branch: Branch,
    cseq: u32,
    /// The offer as the offerer made it (after intersection), to narrow the answer.
    offer: Option<SessionDescription>,
}

struct Call {
    ctx: Arc<CallContext>,
    ep: EndpointHandle,
    /// Where the endpoint sends what concerns this call's transactions and dialogs.
    me: Owner,
    sip_events: mpsc::UnboundedReceiver<TuEvent>,
    record_id: CallId,
    session_id: SessionId,
    legs: [LegId; 2],
    invite: Request,
    /// The caller's INVITE transaction (None for a call the server placed: leg A is then our
    /// own INVITE, see [`control`]).
    invite_tx: Option<TxId>,
    caller_peer: Peer,
    a_tag: String,
    a_dialog: Option<Dialog>,
    b_call_id: String,
    b_tag: String,
    b_dialog: Option<Dialog>,
    forks: ForkSet,
    best_failure: Option<Response>,
    media: Option<MediaSession>,
    media_events: mpsc::UnboundedReceiver<MediaEvent>,
    media_tx: mpsc::UnboundedSender<MediaEvent>,
    /// The caller's offer after intersection, to narrow the callee's answer.
    a_offer: Option<SessionDescription>,
    /// The caller's media promised in an answer already sent (early media).
    a_promised: Option<LegMedia>,
    /// We play ringback to the caller (180 without SDP from the callee).
    ringback: bool,
    /// The callee's early media was bridged (its 18x carried SDP).
    b_early: bool,
    /// A conference call answered by us: the room's name.
    conference: Option<String>,
    /// The recording of this call, if any.
    recording: Option<RecordingId>,
    /// Where each side of the call stands and how it ends.
    state: CallState,
    /// Our 2xx answers waiting for their ACK.
    unacked: Unacked<Side>,
    reinvite: Option<Reinvite>,
    /// The call's named timers (no answer, dial ring, placed-call ring).
    timers: Timers<CallTimer>,
    /// The caller's authenticated extension, if any.
    caller_ext: Option<String>,
    /// The number called (Request-URI user).
    called: String,
    /// The call record was written (calls refused before any flow step have none).
    recorded: bool,
    /// The running IVR flow; None once bridged or finished.
    ivr: Option<crate::ivr::interp::Interpreter>,
    /// Results of IVR work done off the actor (text to speech, webhooks).
    ivr_tx: mpsc::UnboundedSender<ivr::IvrResult>,
    ivr_rx: mpsc::UnboundedReceiver<ivr::IvrResult>,
    /// Waiting in an ACD queue (the `queue` step).
    queue: Option<queue::QueueWait>,
    /// Where the ACD tells this call what happens to it in a queue.
    queue_tx: mpsc::UnboundedSender<(u64, crate::acd::service::ContactEvent)>,
    queue_rx: mpsc::UnboundedReceiver<(u64, crate::acd::service::ContactEvent)>,
    /// The ACD contact an agent took (told `done` when the call ends).
    acd_contact: Option<u64>,
    /// The extension whose phone answered the last dial.
    answered_extension: Option<String>,
    /// The dial ringing now.
    dial: Option<ivr::DialState>,
    /// The offer sent to callees (kept for later dials).
    b_offer: Option<Bytes>,
    /// Every callee-side dialog id registered with the endpoint (one per dial attempt).
    b_dialog_ids: Vec<DialogKey>,
    /// A voicemail or `record` step recording now: (interpreter id, recording).
    ivr_recording: Option<ivr::IvrRecording>,
    /// Recordings asked to stop (or replaced by a newer one) whose summary is awaited, by
    /// file path.
    stopping: Vec<(RecordingId, std::path::PathBuf)>,
    /// The path of the recording running now (`recording`).
    recording_path: Option<std::path::PathBuf>,
    /// `best_failure` was made up by us (nobody to ring, ring timeout), not sent by a callee.
    best_failure_ours: bool,
    /// Transfers so far (a plan that transfers in a circle is stopped).
    transfers: u32,
    /// The `say` play whose speech is being synthesised; a result for another is stale.
    pending_speech: Option<u64>,
    /// The SDP answer the caller got in early media (18x), if any.
    a_early_sdp: Option<Bytes>,
    /// The origin of the SDP we send to each side (caller, callee): one session id per side
    /// for the call, its version bumped only when what we send changes (RFC 3264 §8).
    sdp_out: [LegOrigin; 2],
    /// A call the server placed: its INVITE to leg A, while it rings.
    outbound: Option<control::Outbound>,
    /// Dial this extension once the flow may (a placed call's `connect_to`).
    pending_connect: Option<(String, Duration)>,
    /// A `connect_to` dial: its failure ends the call.
    connecting: bool,
    /// API playbacks running, by id, with the leg they play to.
    api_plays: std::collections::HashMap<u64, Leg>,
    /// The last API playback id given.
    last_play: u64,
    /// Each leg is held (music on hold) by the other.
    held: [bool; 2],
    /// Each leg is held through the API (music on hold, and muted).
    api_held: [bool; 2],
    /// Each leg is muted through the API.
    muted: [bool; 2],
    /// Bridged with another call (`POST /v1/bridges`, a completed attended transfer), or
    /// tied to the other call of an attended transfer: told when this one ends.
    bridge_peer: Option<(CallId, CallHandle)>,
    /// An attended transfer of this call's caller in progress.
    consult: Option<control::Consult>,
    /// This is the consultation call of that call's attended transfer, talking in that room.
    consult_of: Option<(CallId, String)>,
    /// Placed inside an existing session (a "call me" from a chat): nothing to open.
    in_session: bool,
    /// `call.ringing` was written.
    rang: bool,
    /// A request of the call could not be delivered (transport error).
    undelivered: bool,
    /// Unix ms of the call's start and answer.
    started_ms: i64,
    answered_ms: Option<i64>,
    /// Direction and parties, once the record is written.
    direction: Direction,
    caller_user: String,
    /// The flow running now (for the API).
    flow: Option<String>,
}

/// Runs the call to its end.
#[allow(clippy::too_many_arguments)]
pub(super) async fn run(
    ctx: Arc<CallContext>,
    ep: EndpointHandle,
    invite: crate::sip::endpoint::IncomingInvite,
    mut inbox: mpsc::UnboundedReceiver<CallInput>,
    record_id: CallId,
    session_id: SessionId,
) {
    let crate::sip::endpoint::IncomingInvite {
        tx,
        req,
        from,
        owner,
        events,
    } = invite;
    let sip = (owner, events);
    let mut call = Call::new(ctx, ep, sip, (record_id, session_id), req, Some(tx), from);
    let started = call.start().await;
    if started {
        call.event_loop(&mut inbox).await;
        call.finish().await;
    }
}

impl Call {
    /// A call in its first state; `invite` is the caller's INVITE (or, for a call the server
    /// places, our own).
    fn new(
        ctx: Arc<CallContext>,
        ep: EndpointHandle,
        (me, sip_events): (Owner, mpsc::UnboundedReceiver<TuEvent>),
        (record_id, session_id): (CallId, SessionId),
        invite: Request,
        invite_tx: Option<TxId>,
        from: Peer,
    ) -> Call {
        let ctx_no_answer = ctx.no_answer_timeout;
        let media_ip = ctx.media_ip;
        let (media_tx, media_events) = mpsc::unbounded_channel();
        let (ivr_tx, ivr_rx) = mpsc::unbounded_channel();
        let (queue_tx, queue_rx) = mpsc::unbounded_channel();
        Call {
            record_id,
            session_id,
            legs: [LegId::new(), LegId::new()],
            a_tag: new_tag(),
            b_call_id: new_call_id(),
            b_tag: new_tag(),
            ctx,
            ep,
            me,
            sip_events,
            invite,
            invite_tx,
            caller_peer: from,
            a_dialog: None,
            b_dialog: None,
            forks: ForkSet::new(),
            best_failure: None,
            media: None,
            media_events,
            media_tx,
            a_offer: None,
            a_promised: None,
            ringback: false,
            b_early: false,
            conference: None,
            recording: None,
            state: CallState::offered(),
            unacked: Unacked::new(),
            reinvite: None,
            timers: {
                let mut timers = Timers::new();
                timers.set(CallTimer::NoAnswer, crate::clock::now() + ctx_no_answer);
                timers
            },
            caller_ext: None,
            called: String::new(),
            recorded: false,
            ivr: None,
            ivr_tx,
            ivr_rx,
            queue: None,
            queue_tx,
            queue_rx,
            acd_contact: None,
            answered_extension: None,
            dial: None,
            b_offer: None,
            b_dialog_ids: Vec::new(),
            ivr_recording: None,
            stopping: Vec::new(),
            recording_path: None,
            best_failure_ours: false,
            transfers: 0,
            pending_speech: None,
            a_early_sdp: None,
            sdp_out: [0, 1]
                .map(|_| LegOrigin::new("switchboard", u64::from(rand::random::<u32>()), media_ip)),
            outbound: None,
            pending_connect: None,
            connecting: false,
            api_plays: std::collections::HashMap::new(),
            last_play: 0,
            held: [false; 2],
            api_held: [false; 2],
            muted: [false; 2],
            bridge_peer: None,
            consult: None,
            consult_of: None,
            in_session: false,
            rang: false,
            undelivered: false,
            started_ms: crate::clock::unix_ms(),
            answered_ms: None,
            direction: Direction::Inbound,
            caller_user: String::new(),
            flow: None,
        }
    }

    /// Answers on the caller's INVITE transaction (nothing for a call we placed).
    fn respond_a(&self, resp: Response) {
        if let Some(tx) = self.invite_tx {
            self.ep.respond(tx, resp);
        }
    }
}

impl Call {
    /// Authenticates, routes and forks. False when the call was refused at once.
    async fn start(&mut self) -> bool {
        let caller = match self
            .ctx
            .registrar
            .authenticate(&self.invite, self.caller_peer, true)
            .await
        {
            AuthDecision::Reply(resp) => {
                self.respond_a(resp);
                return false;
            }
            AuthDecision::Allowed(user) => user,
        };
        // A CANCEL may have arrived while we waited for the database.
        while let Ok(input) = self.sip_events.try_recv() {
            if matches!(input, TuEvent::Cancelled) {
                self.reply_a_final(StatusCode::REQUEST_TERMINATED);
                return false;
            }
        }
        let Some(target) = self.invite.uri.as_sip().and_then(|u| u.user_unescaped()) else {
            self.reply_a_final(StatusCode::NOT_FOUND);
            return false;
        };
        let prefix = &self.ctx.media.conference_prefix;
        if !prefix.is_empty()
            && let Some(room) = target.strip_prefix(prefix.as_str())
            && !room.is_empty()
        {
            let room = room.to_owned();
            return self.answer_conference(caller.as_deref(), &target, room);
        }
        self.caller_ext = caller;
        self.called = target;
        self.start_flow().await
    }

    /// Parses the caller's offer, opens the media session, and returns the offer for the
    /// callee side (widened with the codecs we transcode, when enabled).
    fn prepare_media(&mut self) -> Result<Bytes, StatusCode> {
        let sdp = self.caller_offer()?;
        let session = self.open_media(2)?;
        point_media(&session, Leg::A, &sdp);
        let offer = negotiate::relay_offer(&sdp, self.ctx.media.transcoding);
        let body = self.sdp_out[1].write(&offer, self.ctx.media_ip, session.local_port(Leg::B));
        self.media = Some(session);
        self.a_offer = Some(sdp);
        Ok(Bytes::from(body))
    }

    /// The caller's SDP offer, intersected with what we support.
    fn caller_offer(&self) -> Result<SessionDescription, StatusCode> {
        let mut sdp = SessionDescription::parse(&self.invite.body).map_err(|e| {
            tracing::info!(error = %e, "INVITE without a usable SDP offer");
            StatusCode::NOT_ACCEPTABLE_HERE
        })?;
        sdp.intersect_supported()
            .map_err(|_| StatusCode::NOT_ACCEPTABLE_HERE)?;
        Ok(sdp)
    }

    fn open_media(&self, legs: usize) -> Result<MediaSession, StatusCode> {
        MediaSession::open(
            &self.ctx.ports,
            self.ctx.rtp_bind_ip,
            legs,
            self.ctx.media.pipeline.clone(),
            self.media_tx.clone(),
        )
        .map_err(|e| {
            tracing::warn!(error = %e, "no media session for a new call");
            StatusCode::SERVICE_UNAVAILABLE
        })
    }

    /// Answers the caller ourselves and joins it to conference room `room`.
    fn answer_conference(&mut self, caller_ext: Option<&str>, target: &str, room: String) -> bool {
        let answer = self.caller_offer().and_then(|offer| {
            let (answer, media) =
                negotiate::early_answer(&offer).ok_or(StatusCode::NOT_ACCEPTABLE_HERE)?;
            let session = self.open_media(1)?;
            point_media(&session, Leg::A, &offer);
            let body =
                self.sdp_out[0].write(&answer, self.ctx.media_ip, session.local_port(Leg::A));
            session.command(MediaCommand::SetMedia {
                leg: Leg::A,
                media: Some(media),
            });
            let room = self.ctx.media.rooms.get_or_create(&room);
            session.command(MediaCommand::JoinConference { room, leg: Leg::A });
            self.media = Some(session);
            Ok(Bytes::from(body))
        });
        let body = match answer {
            Ok(body) => body,
            Err(status) => {
                self.reply_a_final(status);
                return false;
            }
        };
        tracing::info!(room = %room, "caller joins a conference");
        self.record_start(caller_ext, target);
        self.ep.send(Command::AddDialog {
            key: self.a_dialog_key(),
            owner: self.me.clone(),
        });
        self.conference = Some(room);
        self.answer_caller(body);
        true
    }

    /// Sends our 200 to the caller's INVITE, forms the A dialog, retransmits until ACK, and
    /// records the answer (call, caller's leg, `call.answered`).
    fn answer_caller(&mut self, body: Bytes) {
        self.state.answer_caller();
        let mut ok = self.a_response(StatusCode::OK);
        ok.set_body(Some("application/sdp"), body);
        self.a_dialog = Dialog::uas(&self.invite, &self.a_tag, self.caller_peer).ok();
        self.respond_a(ok.clone());
        self.await_ack(Side::Caller, ok, self.caller_peer);
        tracing::info!("call answered");
        self.record_answer();
    }

    /// Writes the answer of the call and its leg A (now), and `call.answered`.
    fn record_answer(&mut self) {
        let now = crate::clock::unix_ms();
        self.answered_ms = Some(now);
        self.ctx.writer.send(StoreCmd::CallAnswered {
            call_id: self.record_id,
            at_ms: now,
        });
        self.ctx.writer.send(StoreCmd::LegAnswered {
            leg_id: self.legs[0],
            at_ms: now,
        });
        self.event(Event::CallAnswered {});
    }

    /// Sends one forked INVITE. An authenticated caller is presented as its own extension, not
    /// as whatever its From claims (no caller-ID spoofing by registered users); a trusted trunk's
    /// From user is passed through.
    fn fork(&mut self, dial: u64, loc: &Location, target: &str, offer: Bytes) {
        let caller_ext = self.caller_ext.as_deref();
        let a = &self.invite.headers;
        let mf = a
            .max_forwards()
            .ok()
            .flatten()
            .unwrap_or(70)
            .saturating_sub(1);
        let from = a.from().ok();
        // URIs carry the user part in its escaped wire form (RFC 3261 §19.1.2).
        let caller_user = match caller_ext {
            Some(ext) => ext.to_owned(),
            None => from
                .as_ref()
                .and_then(|f| f.uri.as_sip())
                .and_then(|u| u.user.clone())
                .unwrap_or_else(|| "anonymous".into()),
        };
        let display = from.as_ref().and_then(|f| f.display.clone());
        let domain = &self.ep.local.domain;
        let (via, branch) = self.ep.local.via(loc.source.transport);
        let mut req = Request::new(Method::Invite, loc.uri.clone());
        let h = &mut req.headers;
        h.push("Via", via);
        h.push("Max-Forwards", mf.to_string());
        let from_value = match display {
            Some(d) => format!(
                "\"{}\" <sip:{}@{}>;tag={}",
                d.replace(['"', '\\'], ""),
                caller_user,
                domain,
                self.b_tag
            ),
            None => format!("<sip:{}@{}>;tag={}", caller_user, domain, self.b_tag),
        };
        h.push("From", from_value);
        h.push("To", format!("<sip:{target}@{domain}>"));
        h.push("Call-ID", self.b_call_id.clone());
        h.push("CSeq", "1 INVITE");
        h.push("Contact", self.ep.local.contact(loc.source.transport));
        h.push("Allow", crate::sip::endpoint::ALLOW);
        h.push("User-Agent", self.ep.local.server_header.clone());
        req.set_body(Some("application/sdp"), offer);
        self.forks.add(
            DialId(dial),
            target.to_owned(),
            branch,
            req.clone(),
            loc.source,
        );
        self.ep.send(Command::SendRequest {
            req,
            to: loc.source,
            owner: self.me.clone(),
        });
    }

    async fn event_loop(&mut self, inbox: &mut mpsc::UnboundedReceiver<CallInput>) {
        loop {
            if self.is_over() {
                return;
            }
            let deadline = self.next_deadline();
            tokio::select! {
                input = inbox.recv() => match input {
                    Some(input) => self.handle(input),
                    None => return,
                },
                Some(event) = self.sip_events.recv() => self.on_sip(event),
                Some(event) = self.media_events.recv() => self.on_media_event(event),
                Some(result) = self.ivr_rx.recv() => self.on_ivr_result(result),
                Some((contact, event)) = self.queue_rx.recv() => {
                    self.on_queue_event(contact, event).await;
                }
                _ = tokio::time::sleep_until(deadline) => self.on_timer(),
            }
            self.pump_ivr().await;
        }
    }

    fn is_over(&self) -> bool {
        // A caller answered with a final status by a flow that has nothing more to do is over
        // too, even where no ending was recorded.
        let flow_done = self.state.is_ending()
            || (!self.state.caller_answered() && self.ivr.is_none() && self.dial.is_none());
        flow_done && !self.state.caller_waits() && self.forks.all_done()
    }

    fn next_deadline(&self) -> Instant {
        let mut d = crate::clock::tokio_now() + Duration::from_secs(3600);
        if let Some(t) = self.timers.poll_timeout() {
            d = d.min(Instant::from_std(t));
        }
        if let Some(t) = self.forks.poll_timeout() {
            d = d.min(Instant::from_std(t));
        }
        if let Some(t) = self.ivr.as_ref().and_then(|i| i.poll_timeout()) {
            d = d.min(Instant::from_std(t));
        }
        if let Some(t) = self.unacked.poll_timeout() {
            d = d.min(Instant::from_std(t));
        }
        d
    }

    fn on_timer(&mut self) {
        let now = crate::clock::tokio_now();
        for timer in self.timers.expired(now.into_std()) {
            self.on_call_timer(timer);
        }
        if let Some(ivr) = &mut self.ivr
            && ivr
                .poll_timeout()
                .is_some_and(|t| Instant::from_std(t) <= now)
        {
            ivr.handle_timeout(now.into_std());
        }
        self.forks.handle_timeout(now.into_std());
        self.run_fork_commands();
        self.unacked.handle_timeout(now.into_std());
        while let Some(out) = self.unacked.poll_output() {
            match out {
                UnackedOutput::Retransmit { to, resp } => self.ep.send(Command::SendRaw {
                    to,
                    msg: Message::Response(resp),
                }),
                UnackedOutput::GaveUp { side } => {
                    tracing::info!(?side, "no ACK for our 2xx: hanging up (RFC 3261 §13.3.1.4)");
                    self.hangup(Ending {
                        cause: HangupCause::AckTimeout,
                        by: HangupBy::System,
                        code: 408,
                    });
                }
            }
        }
    }

    fn on_sip(&mut self, event: TuEvent) {
        match event {
            TuEvent::Response { branch, resp } => self.on_response(&branch, *resp),
            TuEvent::Failed { branch, why } => self.on_request_failed(&branch, why),
            TuEvent::Cancelled => {
                if self.caller_waits() {
                    self.state.end(Ending {
                        cause: HangupCause::CallerCancel,
                        by: HangupBy::Caller,
                        code: 487,
                    });
                    self.reply_a_final(StatusCode::REQUEST_TERMINATED);
                    self.cancel_forks();
                    self.ivr = None;
                    self.dial = None;
                }
            }
            TuEvent::Request { tx, req, from } => self.on_request(tx, *req, from),
            TuEvent::Ack { req, from: _ } => {
                if let Some(side) = self.side_of(&req) {
                    self.unacked.ack(side);
                }
            }
            TuEvent::StrayResponse { resp, from: _ } => self.reack(&resp),
        }
    }

    /// A call-level timer fired (see [`CallTimer`]).
    fn on_call_timer(&mut self, timer: CallTimer) {
        match timer {
            CallTimer::NoAnswer if self.caller_waits() => {
                tracing::info!("no answer: giving up");
                self.end_unanswered();
                self.reply_a_final(StatusCode::TEMPORARILY_UNAVAILABLE);
                self.ivr = None;
                self.dial = None;
            }
            CallTimer::DialRing if self.dial.is_some() => self.dial_timed_out(),
            CallTimer::Announce => self.announce_due(),
            CallTimer::OutboundRing
                if !self.state.caller_answered()
                    && !self.state.is_ending()
                    && self.outbound.is_some() =>
            {
                tracing::info!("placed call: no answer in time");
                self.end_unanswered();
            }
            // Fired after what it guarded was over (answered, dial given up, call ending).
            CallTimer::NoAnswer | CallTimer::DialRing | CallTimer::OutboundRing => {}
        }
    }

    /// Nobody answered in time: the call ends `no_answer` (480) and whatever still rings is
    /// CANCELled.
    fn end_unanswered(&mut self) {
        self.state.end(Ending {
            cause: HangupCause::NoAnswer,
            by: HangupBy::System,
            code: 480,
        });
        self.cancel_forks();
    }

    fn handle(&mut self, input: CallInput) {
        match input {
            CallInput::Control { cmd, reply } => {
                let _ = reply.send(self.on_control(cmd));
            }
            CallInput::BridgePeerGone { from } => {
                if self.bridge_peer.as_ref().map(|(id, _)| *id) != Some(from) {
                    tracing::debug!(%from, "late message from a call no longer tied to this one");
                    return;
                }
                self.bridge_peer = None;
                if self.consult.is_some() {
                    // The consultation call ended (not answered, or hung up): back to the callee.
                    self.end_consultation("ended");
                } else if self.state.caller_answered() && !self.state.is_ending() {
                    self.hangup(Ending {
                        cause: HangupCause::Normal,
                        by: HangupBy::System,
                        code: 200,
                    });
                } else if self.outbound.is_some() && !self.state.is_ending() {
                    // A consultation call still ringing when its transfer was cancelled.
                    self.api_hangup(crate::ivr::plan::HangupCause::Normal);
                }
            }
            CallInput::ConsultAnswered { from } => self.consultation_answered(from),
            CallInput::Shutdown => {
                self.ivr = None;
                self.dial = None;
                if self.state.caller_answered() {
                    self.hangup(Ending {
                        cause: HangupCause::Shutdown,
                        by: HangupBy::System,
                        code: 200,
                    });
                } else if self.state.caller_waits() {
                    self.state.end(Ending {
                        cause: HangupCause::Shutdown,
                        by: HangupBy::System,
                        code: 503,
                    });
                    self.reply_a_final(StatusCode::SERVICE_UNAVAILABLE);
                    self.cancel_forks();
                }
            }
        }
    }

    fn on_response(&mut self, branch: &Branch, resp: Response) {
        // A CANCEL shares its INVITE's branch (RFC 3261 §9.1): only INVITE responses belong
        // to forks and re-INVITEs; BYE and CANCEL answers need nothing from us.
        if !resp
            .headers
            .cseq()
            .is_ok_and(|c| c.method == Method::Invite)
        {
            return;
        }
        if let Some(r) = &self.reinvite
            && r.branch == *branch
        {
            return self.on_reinvite_response(resp);
        }
        let Some(i) = self.forks.find(branch) else {
            // A 2xx retransmission for a re-INVITE we already ACKed.
            self.reack(&resp);
            return;
        };
        if self.is_outbound_fork(branch) {
            return self.on_outbound_response(i, resp);
        }
        let status = resp.status;
        if status.is_provisional() {
            // Any provisional, 100 included, lets a CANCEL go out (§9.1): a trunk may send
            // 100 and nothing else for a long while.
            let wanted = self.forks.on_provisional(i);
            self.run_fork_commands();
            // 100, or a late 18x from a fork of a dial already given up: nothing for the
            // caller.
            if status == StatusCode::TRYING || !wanted || !self.is_current_fork(i) {
                return;
            }
            // The callee's early media, narrowed for the caller while it still waits.
            let early = if !resp.body.is_empty() && self.caller_waits() {
                match self.answer_for_caller(&resp) {
                    Some(body) => Some(body),
                    None => return,
                }
            } else {
                None
            };
            self.callee_progress(status, &resp.reason, early);
            return;
        }
        self.forks.on_final(i);
        if status.is_success() {
            self.on_fork_answered(i, resp);
            return;
        }
        tracing::debug!(code = status.0, "fork failed");
        if !self.is_current_fork(i) || self.state.callee_answered() {
            // A fork of a dial already given up (CANCELled after its timeout) or lost.
            return;
        }
        let dial = self.forks.get(i).map(|f| f.dial);
        let last = dial.is_some_and(|d| self.forks.dial_done(d));
        self.callee_failed(resp, last);
    }

    /// A callee leg of the ringing dial failed with `failure` (a SIP final response, or one a
    /// leg of another kind stands for, see [`super::core::leg`]); `last`: no other leg of the
    /// dial is still trying. The best failure is kept ([`better_failure`]); a 6xx ends the
    /// search at once (RFC 3261 §16.7 step 5: the other legs are cancelled); after the last
    /// failure the flow goes on with the outcome.
    fn callee_failed(&mut self, failure: Response, last: bool) {
        let status = failure.status;
        if better_failure(self.best_failure.as_ref().map(|r| r.status.0), status.0) {
            self.best_failure = Some(failure);
            self.best_failure_ours = false;
        }
        let global_failure = status.0 >= 600;
        if global_failure {
            self.cancel_forks();
        }
        if global_failure || last {
            self.dial_failed();
        }
    }

    /// Answers the caller with the best failure of the last dial (passed through as the callee
    /// gave it), or `fallback` when there was none.
    fn fail_caller(&mut self, fallback: StatusCode, fallback_cause: HangupCause) {
        if !self.state.caller_waits() {
            return;
        }
        let best = self.best_failure.take();
        let status = best.as_ref().map(|r| r.status).unwrap_or(fallback);
        let mut out = self.a_response(status);
        if let Some(b) = &best {
            out.reason.clone_from(&b.reason);
        }
        let cause = match best {
            Some(_) => self.failure_cause(status.0),
            None => fallback_cause,
        };
        self.state.end(Ending {
            cause,
            by: if best.is_some() && !self.best_failure_ours {
                HangupBy::Callee
            } else {
                HangupBy::System
            },
            code: status.0,
        });
        self.state.refuse_caller();
        self.respond_a(out);
    }

    fn on_fork_answered(&mut self, i: usize, resp: Response) {
        // RFC 6026: every 2xx is passed up; a retransmission of the winner's only needs its
        // ACK again (§13.2.2.4).
        let to_tag = resp
            .headers
            .to()
            .ok()
            .and_then(|t| t.tag().map(str::to_owned));
        if let Some(d) = &self.b_dialog
            && to_tag.as_deref() == Some(d.remote_tag.as_str())
        {
            self.send_ack(Side::Callee, 1);
            return;
        }
        let Some(fork) = self.forks.get(i) else {
            return;
        };
        let (target, remote_uri) = (fork.target.clone(), fork.invite.uri.to_string());
        let dialog = match Dialog::uac(&fork.invite, &resp, fork.peer) {
            Ok(d) => d,
            Err(e) => {
                tracing::info!(error = %e, "unusable 2xx from callee");
                return;
            }
        };
        let current = self.is_current_fork(i);
        if self.state.callee_answered()
            || !current
            || self.state.is_ending()
            || (!self.state.caller_waits() && !self.state.caller_answered())
        {
            // A second fork answered, a fork of a dial given up, or the caller already left.
            return self.ack_and_bye(dialog);
        }
        let Some(body) = self.answer_for_caller(&resp) else {
            // The callee's answer is unusable: end its leg and fail the call.
            self.b_dialog = Some(dialog);
            self.send_ack(Side::Callee, 1);
            self.hangup(Ending {
                cause: HangupCause::MediaFailed,
                by: HangupBy::System,
                code: 488,
            });
            self.reply_a_final(StatusCode::NOT_ACCEPTABLE_HERE);
            self.cancel_forks();
            self.dial = None;
            self.ivr = None;
            return;
        };
        self.b_dialog = Some(dialog);
        self.send_ack(Side::Callee, 1);
        let leg = LegIdentity {
            kind: LegKind::Sip,
            target,
            sip_call_id: Some(self.b_call_id.clone()),
            remote_uri: Some(remote_uri),
        };
        self.callee_answered(leg, body);
    }

    /// Whether the caller still waits for an answer (nobody answered it, no final response).
    fn caller_waits(&self) -> bool {
        self.state.caller_waits()
    }

    /// A callee leg of any kind reports progress (see [`super::core::leg`]): `status` is 180
    /// (ringing), 183 (early media: `early` is the caller's answer for it) or another 1xx.
    /// `call.ringing` is written once; a waiting caller hears the callee's early media or our
    /// ringback (RFC 3960 §3), an answered one (IVR) hears ringback.
    fn callee_progress(&mut self, status: StatusCode, reason: &str, early: Option<Bytes>) {
        if status.0 == 180 || status.0 == 183 {
            self.note_ringing(status);
        }
        if !self.caller_waits() {
            if self.state.caller_answered() && !self.state.callee_answered() {
                self.ringback_while_dialling(status);
            }
            return;
        }
        let mut out = self.a_response(status);
        out.reason = reason.to_owned();
        if let Some(body) = early {
            out.set_body(Some("application/sdp"), body);
            self.b_early = true;
        } else if status == StatusCode::RINGING && !self.b_early {
            // No early media from the callee: we play ringback ourselves (RFC 3960 §3).
            if let Some(body) = self.start_ringback() {
                out.set_body(Some("application/sdp"), body);
            }
        }
        if !out.body.is_empty() {
            // An answer already given in early media: an answer of our own later (the IVR
            // after a failed dial) repeats it (RFC 6337 §3.1).
            self.a_early_sdp = Some(out.body.clone());
        }
        self.respond_a(out);
    }

    /// A callee leg of any kind answered (see [`super::core::leg`]); `answer` is the caller's
    /// SDP answer for it. The caller is answered (with the early answer if one was sent), the
    /// leg recorded, the recording started, other legs of the dial cancelled, the flow told.
    fn callee_answered(&mut self, leg: LegIdentity, answer: Bytes) {
        self.state.answer_callee();
        if !self.state.caller_answered() {
            // An answer already given in an unreliable 18x is the answer (RFC 6337 §3.1).
            let body = self.a_early_sdp.clone().unwrap_or(answer);
            self.answer_caller(body);
        }
        if self.ctx.media.record_calls && self.recording.is_none() {
            self.start_recording();
        }
        let now = crate::clock::unix_ms();
        self.ctx.writer.send(StoreCmd::LegStarted(NewLeg {
            leg_id: self.legs[1],
            call_id: self.record_id,
            role: LegRole::Callee,
            kind: leg.kind,
            sip_call_id: leg.sip_call_id,
            remote_uri: leg.remote_uri,
            started_ms: now,
        }));
        self.ctx.writer.send(StoreCmd::LegAnswered {
            leg_id: self.legs[1],
            at_ms: now,
        });
        self.cancel_forks();
        self.dial_answered(leg.target);
    }

    /// Narrows a callee answer (or early-media SDP) for the caller, rewrites it for our
    /// ports, points the media session at the callee and tells it both legs' codecs. None
    /// when the SDP is unusable.
    fn answer_for_caller(&mut self, resp: &Response) -> Option<Bytes> {
        let mut sdp = SessionDescription::parse(&resp.body).ok()?;
        let offer = self.a_offer.as_ref()?;
        let (a, b) = negotiate::answer_for_offerer(offer, &mut sdp, self.a_promised)?;
        let media = self.media.as_ref()?;
        point_media(media, Leg::B, &sdp);
        media.command(MediaCommand::SetMedia {
            leg: Leg::A,
            media: Some(a),
        });
        media.command(MediaCommand::SetMedia {
            leg: Leg::B,
            media: Some(b),
        });
        if self.ringback {
            self.ringback = false;
            media.command(MediaCommand::StopPlayback { leg: Leg::A });
        }
        if a.codec != b.codec {
            tracing::info!(
                caller = a.codec.name(),
                callee = b.codec.name(),
                "transcoding"
            );
        }
        self.a_promised = Some(a);
        let body = self.sdp_out[0].write(&sdp, self.ctx.media_ip, media.local_port(Leg::A));
        Some(Bytes::from(body))
    }

    /// Answers the caller's offer for early media and plays ringback; the SDP for the 180.
    fn start_ringback(&mut self) -> Option<Bytes> {
        let media = self.media.as_ref()?;
        let (sdp, a) = negotiate::early_answer(self.a_offer.as_ref()?)?;
        let body =
            Bytes::from(self.sdp_out[0].write(&sdp, self.ctx.media_ip, media.local_port(Leg::A)));
        if self.ringback {
            // Already ringing: the same answer again (RFC 3264 §8: unchanged).
            return Some(body);
        }
        media.command(MediaCommand::SetMedia {
            leg: Leg::A,
            media: Some(a),
        });
        media.command(MediaCommand::Play {
            leg: Leg::A,
            id: 0,
            source: PlaySource::Tone(ToneKind::Ringback),
            barge_in: false,
        });
        self.a_promised = Some(a);
        self.ringback = true;
        Some(body)
    }

    /// A new recording of this call in `mode` (a mixed companion only for stereo, when asked).
    fn recording_spec(&self, mode: ChannelMode) -> RecordingSpec {
        let settings = &self.ctx.media.recording;
        RecordingSpec {
            data_dir: self.ctx.media.data_dir.clone(),
            recording_id: RecordingId::new(),
            session_id: self.session_id,
            call_id: self.record_id,
            started_ms: crate::clock::unix_ms(),
            sample_rate: settings.sample_rate,
            mode,
            mixed_companion: mode == ChannelMode::Stereo && settings.mixed_mono,
        }
    }

    /// Starts recording the call (caller left, callee right).
    fn start_recording(&mut self) {
        if self.media.is_none() {
            return;
        }
        let spec = self.recording_spec(ChannelMode::Stereo);
        let row = NewRecording::from_spec(&spec);
        match Recorder::start(spec) {
            Ok(recorder) => {
                tracing::info!(path = %recorder.path().display(), "recording");
                self.replace_running_recording(row.id, recorder.path().to_owned());
                let event = Event::RecordingStarted {
                    recording_id: row.id.to_string(),
                    kind: None,
                    mailbox: None,
                };
                self.ctx.writer.send(StoreCmd::RecordingStarted(row));
                self.event(event);
                if let Some(media) = &self.media {
                    media.command(MediaCommand::StartRecording(recorder));
                }
            }
            Err(error) => tracing::error!(%error, "cannot start the recording"),
        }
    }

    fn on_media_event(&mut self, event: MediaEvent) {
        match event {
            MediaEvent::Digit { leg, digit, source } => {
                // A sensitive gather's digits are never logged or published in clear.
                let secret =
                    leg == Leg::A && self.ivr.as_ref().is_some_and(|i| i.collecting_sensitive());
                let shown = if secret {
                    "•".to_owned()
                } else {
                    digit.as_char().to_string()
                };
                tracing::info!(?leg, digit = %shown, ?source, "DTMF");
                metrics::counter!("switchboard_dtmf_digits_total", "source" => source.as_str())
                    .increment(1);
                if leg == Leg::A {
                    self.ivr_input(Input::Digit(digit.as_char()));
                }
                self.event(Event::DtmfReceived {
                    digit: shown,
                    leg: party(leg),
                    source: source.as_str().to_owned(),
                });
            }
            MediaEvent::PlaybackFinished {
                leg,
                id,
                interrupted,
            } if id >= control::API_PLAY_BASE => {
                self.api_plays.remove(&(id - control::API_PLAY_BASE));
                self.event(Event::PlaybackFinished {
                    playback_id: (id - control::API_PLAY_BASE).to_string(),
                    source: "api".into(),
                    leg: Some(party(leg)),
                    interrupted: Some(interrupted),
                    error: None,
                });
            }
            MediaEvent::PlaybackFinished {
                leg: Leg::A,
                id,
                interrupted,
            } if id >= ivr::PLAY_ID_BASE => {
                self.event(Event::PlaybackFinished {
                    playback_id: format!("ivr-{}", id - ivr::PLAY_ID_BASE),
                    source: "ivr".into(),
                    leg: Some(CallParty::Caller),
                    interrupted: Some(interrupted),
                    error: None,
                });
                self.ivr_input(Input::PlaybackDone {
                    id: id - ivr::PLAY_ID_BASE,
                    interrupted,
                })
            }
            MediaEvent::PlaybackFinished { .. } => {}
            MediaEvent::Silence { leg: Leg::A } => self.ivr_input(Input::Silence),
            MediaEvent::Silence { .. } => {}
            MediaEvent::RecordingStopped { result } => self.on_recording_stopped(result),
        }
    }

    /// A request of ours got no response: it timed out, or could not be delivered at all
    /// (logged at warn: a phone's TCP flow is gone, a host refuses the connection; the call
    /// record then says `unreachable` rather than `normal_clearing`).
    fn on_request_failed(&mut self, branch: &Branch, why: TxFailure) {
        if why == TxFailure::Unreachable {
            tracing::warn!(%branch, "a request of the call could not be delivered");
            self.undelivered = true;
        }
        if let Some(r) = &self.reinvite
            && r.branch == *branch
        {
            if let Some(r) = self.reinvite.take() {
                self.respond_in_dialog(r.tx, &r.req, StatusCode::REQUEST_TIMEOUT);
            }
            return;
        }
        if let Some(fork) = self.forks.find(branch).and_then(|i| self.forks.get(i)) {
            let mut synthetic = Response::from_request(&fork.invite, StatusCode::REQUEST_TIMEOUT);
            synthetic.reason = "Request Timeout".into();
            self.on_response(branch, synthetic);
        }
    }

    fn on_request(&mut self, tx: TxId, req: Request, from: Peer) {
        let Some(side) = self.side_of(&req) else {
            self.ep.respond(
                tx,
                Response::from_request(&req, StatusCode::CALL_DOES_NOT_EXIST),
            );
            return;
        };
        let from_tag = req
            .headers
            .from()
            .ok()
            .map(|f| f.tag().unwrap_or_default().to_owned());
        let in_order = match (self.dialog_mut(side), req.headers.cseq()) {
            // Same Call-ID and our tag, but another remote tag: not this dialog (§12.2.2), e.g.
            // a losing fork that answered too and hangs up.
            (Some(d), _) if from_tag.as_deref() != Some(d.remote_tag.as_str()) => {
                self.ep.respond(
                    tx,
                    Response::from_request(&req, StatusCode::CALL_DOES_NOT_EXIST),
                );
                return;
            }
            (Some(d), Ok(cseq)) => d.accept_remote_cseq(&cseq),
            (None, _) => {
                // A request on a dialog that is not confirmed yet (e.g. BYE before our 200).
                self.ep.respond(
                    tx,
                    Response::from_request(&req, StatusCode::CALL_DOES_NOT_EXIST),
                );
                return;
            }
            (_, Err(_)) => false,
        };
        if !in_order {
            self.ep
                .respond(tx, Response::from_request(&req, StatusCode::SERVER_ERROR));
            return;
        }
        match req.method {
            Method::Bye => {
                self.ep
                    .respond(tx, Response::from_request(&req, StatusCode::OK));
                if side == Side::Callee
                    && let Some(answered) = self.consult.as_ref().map(|c| c.answered)
                {
                    self.forget_leg(side);
                    if answered {
                        // The transferor hung up while consulting: the transfer completes.
                        tracing::info!("callee hung up while consulting: completing the transfer");
                        let _ = self.complete_transfer();
                    } else {
                        // While the consultation call rings: the caller will go straight to
                        // it ("blonde" transfer, as Asterisk and FreeSWITCH do).
                        tracing::info!(
                            "callee hung up while the consultation rang: blonde transfer"
                        );
                        if let Some(c) = &mut self.consult {
                            c.blonde = true;
                        }
                        self.drop_callee();
                    }
                    return;
                }
                let by = match side {
                    Side::Caller => HangupBy::Caller,
                    Side::Callee => HangupBy::Callee,
                };
                tracing::info!(by = %by, "call ended by BYE");
                self.hangup_leg(other(side));
                self.forget_leg(side);
                if side == Side::Caller {
                    // The caller left during the IVR or while a dial was ringing.
                    self.ivr = None;
                    self.dial = None;
                    if !self.forks.all_done() {
                        self.cancel_forks();
                    }
                }
                self.state.end(Ending {
                    cause: HangupCause::Normal,
                    by,
                    code: 200,
                });
                self.unacked.clear();
            }
            Method::Invite => self.on_reinvite(tx, req, from, side),
            Method::Options => {
                let mut resp = Response::from_request(&req, StatusCode::OK);
                resp.headers.push("Allow", crate::sip::endpoint::ALLOW);
                resp.headers.push("Accept", crate::sip::endpoint::ACCEPT);
                self.ep.respond(tx, resp);
            }
            Method::Info => self.on_info(tx, &req, side),
            Method::Update if req.body.is_empty() => {
                self.ep
                    .respond(tx, Response::from_request(&req, StatusCode::OK));
            }
            _ => {
                let mut resp = Response::from_request(&req, StatusCode::NOT_IMPLEMENTED);
                resp.headers.push("Allow", crate::sip::endpoint::ALLOW);
                self.ep.respond(tx, resp);
            }
        }
    }

    /// Relays a re-INVITE (hold, resume, media change) to the other side with SDP rewritten.
    fn on_reinvite(&mut self, tx: TxId, req: Request, _from: Peer, side: Side) {
        if self.reinvite.is_some() || !self.state.caller_answered() || self.state.is_ending() {
            return self.respond_in_dialog(tx, &req, StatusCode::REQUEST_PENDING);
        }
        if let Some(d) = self.dialog_mut(side) {
            d.refresh_target(&req.headers);
        }
        if side == Side::Caller && self.b_dialog.is_none() {
            // Nobody to relay to: the IVR answers for itself.
            return self.answer_reinvite_locally(tx, req);
        }
        let mut offer = None;
        let body = if req.body.is_empty() {
            Bytes::new()
        } else {
            let Ok(mut sdp) = SessionDescription::parse(&req.body) else {
                return self.respond_in_dialog(tx, &req, StatusCode::NOT_ACCEPTABLE_HERE);
            };
            if sdp.intersect_supported().is_err() {
                return self.respond_in_dialog(tx, &req, StatusCode::NOT_ACCEPTABLE_HERE);
            }
            let Some(media) = self.media.as_ref() else {
                return self.respond_in_dialog(tx, &req, StatusCode::SERVER_ERROR);
            };
            point_media(media, leg_of(side), &sdp);
            let relayed = negotiate::relay_offer(&sdp, self.ctx.media.transcoding);
            let to = usize::from(other(side) == Side::Callee);
            let port = media.local_port(leg_of(other(side)));
            offer = Some(sdp);
            Bytes::from(self.sdp_out[to].write(&relayed, self.ctx.media_ip, port))
        };
        let target = other(side);
        let Some(d) = self.dialog_mut(target) else {
            return self.respond_in_dialog(tx, &req, StatusCode::CALL_DOES_NOT_EXIST);
        };
        let mut out = d.request(Method::Invite);
        let cseq = d.local_cseq;
        let peer = d.peer;
        let contact = self.ep.local.contact(peer.transport);
        out.headers.push("Contact", contact);
        if !body.is_empty() {
            out.set_body(Some("application/sdp"), body);
        }
        let (via, branch) = self.ep.local.via(peer.transport);
        out.headers.push_front("Via", via);
        self.reinvite = Some(Reinvite {
            from: side,
            tx,
            req,
            branch,
            cseq,
            offer,
        });
        self.ep.send(Command::SendRequest {
            req: out,
            to: peer,
            owner: self.me.clone(),
        });
    }

    fn on_reinvite_response(&mut self, resp: Response) {
        let status = resp.status;
        if status.is_provisional() {
            return;
        }
        let Some(r) = self.reinvite.take() else {
            return;
        };
        let to_side = other(r.from);
        if !status.is_success() {
            return self.respond_in_dialog(r.tx, &r.req, status);
        }
        if let Some(d) = self.dialog_mut(to_side) {
            d.refresh_target(&resp.headers);
        }
        self.send_ack(to_side, r.cseq);
        let body = if resp.body.is_empty() {
            Bytes::new()
        } else {
            let Some(media) = self.media.as_ref() else {
                return;
            };
            let narrowed = SessionDescription::parse(&resp.body)
                .ok()
                .and_then(|mut sdp| {
                    let offer = r.offer.as_ref()?;
                    let (offerer, answerer) = negotiate::answer_for_offerer(offer, &mut sdp, None)?;
                    Some((sdp, offerer, answerer, offer.direction()))
                });
            match narrowed {
                Some((sdp, offerer, answerer, direction)) => {
                    point_media(media, leg_of(to_side), &sdp);
                    media.command(MediaCommand::SetMedia {
                        leg: leg_of(r.from),
                        media: Some(offerer),
                    });
                    media.command(MediaCommand::SetMedia {
                        leg: leg_of(to_side),
                        media: Some(answerer),
                    });
                    // The offerer holding the other party: music on hold for it.
                    let held = matches!(direction, SdpDirection::SendOnly | SdpDirection::Inactive);
                    let index = usize::from(to_side == Side::Callee);
                    media.command(MediaCommand::Hold {
                        leg: leg_of(to_side),
                        held: held || self.api_held[index],
                    });
                    if self.held[index] != held {
                        self.held[index] = held;
                        self.event(Event::CallHeld {
                            held,
                            leg: party(leg_of(to_side)),
                            by: party(leg_of(r.from)).as_str().into(),
                        });
                    }
                    if self.a_promised.is_some() && r.from == Side::Caller {
                        self.a_promised = Some(offerer);
                    }
                    let from = usize::from(r.from == Side::Callee);
                    let port = media.local_port(leg_of(r.from));
                    Bytes::from(self.sdp_out[from].write(&sdp, self.ctx.media_ip, port))
                }
                None => {
                    return self.respond_in_dialog(r.tx, &r.req, StatusCode::NOT_ACCEPTABLE_HERE);
                }
            }
        };
        let Some(peer) = self.dialog_mut(r.from).map(|d| d.peer) else {
            return;
        };
        self.accept_reinvite(r.tx, &r.req, r.from, peer, body);
    }

    /// Answers a re-INVITE from `side` with 200 (our Contact, `body` as SDP when not empty)
    /// and retransmits it until the ACK (§13.3.1.4).
    fn accept_reinvite(&mut self, tx: TxId, req: &Request, side: Side, peer: Peer, body: Bytes) {
        let mut ok = Response::from_request(req, StatusCode::OK);
        ok.headers
            .push("Contact", self.ep.local.contact(peer.transport));
        if !body.is_empty() {
            ok.set_body(Some("application/sdp"), body);
        }
        self.ep.respond(tx, ok.clone());
        self.await_ack(side, ok, peer);
    }

    /// Over UDP, our 2xx is retransmitted until its ACK arrives (RFC 3261 §13.3.1.4).
    fn await_ack(&mut self, side: Side, resp: Response, peer: Peer) {
        self.unacked.start(crate::clock::now(), side, resp, peer);
    }

    /// A 2xx to an INVITE we sent came again: our ACK was lost, send it again (§13.2.2.4),
    /// on whichever leg it belongs to.
    fn reack(&mut self, resp: &Response) {
        if !resp.status.is_success() {
            return;
        }
        let Ok(cseq) = resp.headers.cseq() else {
            return;
        };
        let side = if resp.headers.call_id().ok() == Some(self.b_call_id.as_str()) {
            Side::Callee
        } else {
            Side::Caller
        };
        let to_tag = resp
            .headers
            .to()
            .ok()
            .and_then(|t| t.tag().map(str::to_owned));
        let ours = match side {
            Side::Caller => self.a_dialog.as_ref(),
            Side::Callee => self.b_dialog.as_ref(),
        }
        .is_some_and(|d| to_tag.as_deref() == Some(d.remote_tag.as_str()));
        if ours {
            self.send_ack(side, cseq.seq);
        }
    }

    fn respond_in_dialog(&mut self, tx: TxId, req: &Request, status: StatusCode) {
        let mut resp = Response::from_request(req, status);
        if status == StatusCode::NOT_ACCEPTABLE_HERE
            && let Some(warning) = negotiate::offer_warning(&req.body)
        {
            resp.headers.push("Warning", warning);
        }
        self.ep.respond(tx, resp);
    }

    fn side_of(&self, req: &Request) -> Option<Side> {
        let call_id = req.headers.call_id().ok()?;
        if call_id == self.b_call_id {
            Some(Side::Callee)
        } else if Some(call_id) == self.invite.headers.call_id().ok() {
            Some(Side::Caller)
        } else {
            None
        }
    }

    fn dialog_mut(&mut self, side: Side) -> Option<&mut Dialog> {
        match side {
            Side::Caller => self.a_dialog.as_mut(),
            Side::Callee => self.b_dialog.as_mut(),
        }
    }

    fn send_ack(&mut self, side: Side, seq: u32) {
        let Some(d) = self.dialog_mut(side) else {
            return;
        };
        let ack = d.ack(seq);
        let peer = d.peer;
        let ack = self.with_via(ack, peer.transport);
        self.ep.send(Command::SendRaw {
            to: peer,
            msg: Message::Request(ack),
        });
    }

    /// Sends BYE on one leg (if it is confirmed) and forgets its dialog.
    fn hangup_leg(&mut self, side: Side) {
        let Some(d) = self.dialog_mut(side) else {
            return;
        };
        let bye = d.request(Method::Bye);
        let peer = d.peer;
        let bye = self.with_via(bye, peer.transport);
        self.ep.send(Command::SendRequest {
            req: bye,
            to: peer,
            owner: self.me.clone(),
        });
        self.forget_leg(side);
    }

    fn forget_leg(&mut self, side: Side) {
        match side {
            Side::Caller => self.a_dialog = None,
            Side::Callee => self.b_dialog = None,
        }
    }

    /// Ends the call: BYE to both parties, forks still ringing CANCELled, the flow stopped.
    fn hangup(&mut self, ending: Ending) {
        self.hangup_leg(Side::Caller);
        self.hangup_leg(Side::Callee);
        self.unacked.clear();
        self.ivr = None;
        self.dial = None;
        self.cancel_forks();
        self.state.end_first(ending);
    }

    /// CANCELs every fork still ringing (RFC 3261 §9.1).
    fn cancel_forks(&mut self) {
        self.forks.cancel_all(crate::clock::now());
        self.run_fork_commands();
    }

    /// Carries out what the fork set asks for: CANCELs, and abandoning the transactions of
    /// forks that never answered theirs.
    fn run_fork_commands(&mut self) {
        while let Some(cmd) = self.forks.poll_command() {
            match cmd {
                ForkCommand::Cancel { index } => {
                    if let Some(fork) = self.forks.get(index) {
                        self.ep.send(Command::SendRequest {
                            req: cancel_request(&fork.invite),
                            to: fork.peer,
                            owner: self.me.clone(),
                        });
                    }
                }
                ForkCommand::Abandon { branches } => {
                    tracing::info!(
                        forks = branches.len(),
                        "callee never answered CANCEL: giving up"
                    );
                    self.ep.send(Command::Abandon { branches });
                }
            }
        }
    }

    /// The cause a callee's failure stands for; our own 408 for a fork that could not be
    /// delivered says so.
    fn failure_cause(&self, code: u16) -> HangupCause {
        if code == 408 && self.undelivered {
            HangupCause::Unreachable
        } else {
            HangupCause::from_failure(code)
        }
    }

    /// Whether fork `i` belongs to the dial ringing now.
    fn is_current_fork(&self, i: usize) -> bool {
        let dial = self.dial.as_ref().map(|d| DialId(d.id));
        dial.is_some() && self.forks.get(i).map(|f| f.dial) == dial
    }

    /// A 2xx we do not want (RFC 3261 §13.2.2.4): ACK it, then end its dialog with BYE.
    fn ack_and_bye(&self, mut d: Dialog) {
        self.ep.send(Command::SendRaw {
            to: d.peer,
            msg: Message::Request(self.with_via(d.ack(1), d.peer.transport)),
        });
        let bye = self.with_via(d.request(Method::Bye), d.peer.transport);
        self.ep.send(Command::SendRequest {
            req: bye,
            to: d.peer,
            owner: self.me.clone(),
        });
    }

    fn with_via(&self, mut req: Request, t: Transport) -> Request {
        let (via, _) = self.ep.local.via(t);
        req.headers.push_front("Via", via);
        req
    }

    /// A response to the caller's INVITE with our tag and Contact.
    fn a_response(&self, status: StatusCode) -> Response {
        let mut resp = response_with_tag(&self.invite, status, &self.a_tag);
        if status.0 > 100 && status.0 < 300 {
            // Responses that form the dialog echo Record-Route in order (§12.1.1), or a
            // caller behind a record-routing proxy would bypass it for ACK and BYE.
            for rr in self.invite.headers.get_all("Record-Route") {
                resp.headers.push("Record-Route", rr.to_owned());
            }
            resp.headers
                .push("Contact", self.ep.local.contact(self.caller_peer.transport));
            resp.headers.push("Allow", crate::sip::endpoint::ALLOW);
        }
        if status == StatusCode::NOT_ACCEPTABLE_HERE
            && let Some(warning) = negotiate::offer_warning(&self.invite.body)
        {
            // Why the offer is refused, e.g. SRTP we do not carry (RFC 3261 §20.43).
            resp.headers.push("Warning", warning);
        }
        resp
    }

    fn reply_a_final(&mut self, status: StatusCode) {
        if !self.state.refuse_caller() {
            return;
        }
        self.respond_a(self.a_response(status));
    }

    fn record_start(&mut self, caller_ext: Option<&str>, callee: &str) {
        if self.recorded {
            return;
        }
        self.recorded = true;
        let from = self.invite.headers.from().ok();
        let caller = caller_ext
            .map(str::to_owned)
            .or_else(|| from.as_ref().and_then(NameAddr::sip_user))
            .unwrap_or_else(|| "anonymous".into());
        // An authenticated extension is a SIP identity; a trusted trunk's caller is a number.
        // A call the server placed is outbound; its customer is the party it rang.
        let (kind, direction) = if self.invite_tx.is_none() {
            (IdentityKind::Sip, Direction::Outbound)
        } else if caller_ext.is_some() {
            (IdentityKind::Sip, Direction::Internal)
        } else {
            (IdentityKind::Phone, Direction::Inbound)
        };
        // A consultation call rings a colleague, not the session's customer.
        let identity = if self.consult_of.is_some() || self.in_session {
            None
        } else if direction == Direction::Outbound {
            Some(Identity {
                kind,
                value: callee.to_owned(),
            })
        } else {
            (caller != "anonymous").then(|| Identity {
                kind,
                value: caller.clone(),
            })
        };
        self.direction = direction;
        self.caller_user = caller.clone();
        self.called = callee.to_owned();
        let now = crate::clock::unix_ms();
        self.started_ms = now;
        let sip_call_id = self.invite.headers.call_id().unwrap_or_default().to_owned();
        if self.consult_of.is_none() && !self.in_session {
            // A consultation call joins the session of the call it serves, already open; a
            // call placed into a session (a chat's "call me") joins that one.
            let voice = crate::session::service::Channel::voice();
            // A caller who chatted (or called) a moment ago continues that session.
            self.session_id =
                self.ctx
                    .sessions
                    .join_or_open(self.session_id, &voice, identity, now);
        }
        self.ctx.writer.send(StoreCmd::CallStarted(NewCall {
            call_id: self.record_id,
            session_id: self.session_id,
            sip_call_id: sip_call_id.clone(),
            caller: caller.clone(),
            callee: callee.to_owned(),
            direction,
            started_ms: now,
        }));
        self.event(Event::CallCreated {
            caller: caller.clone(),
            callee: callee.to_owned(),
        });
        self.ctx.writer.send(StoreCmd::LegStarted(NewLeg {
            leg_id: self.legs[0],
            call_id: self.record_id,
            role: LegRole::Caller,
            kind: LegKind::Sip,
            sip_call_id: Some(sip_call_id),
            remote_uri: from.map(|f| f.uri.to_string()),
            started_ms: now,
        }));
    }

    /// Closes the record, stops the media (finalising the recording), unhooks the dialogs.
    async fn finish(&mut self) {
        self.queue_call_over();
        if let Some((_, peer)) = self.bridge_peer.take() {
            let _ = peer.send(CallInput::BridgePeerGone {
                from: self.record_id,
            });
        }
        let mut ending = self.state.ending().unwrap_or(Ending {
            cause: HangupCause::Unknown,
            by: HangupBy::System,
            code: 500,
        });
        if self.undelivered && ending.cause == HangupCause::Normal {
            ending.cause = HangupCause::Unreachable;
        }
        // A re-INVITE still being relayed gets its final answer (§15.1.2), or its server
        // transaction would wait for one forever.
        if let Some(r) = self.reinvite.take() {
            self.respond_in_dialog(r.tx, &r.req, StatusCode::REQUEST_TERMINATED);
        }
        // Media first: its last digits and the recording come before the call's end.
        if let Some(media) = self.media.take() {
            let report = media.stop().await;
            // Digits the media session reported as it stopped.
            while let Ok(event) = self.media_events.try_recv() {
                self.on_media_event(event);
            }
            // A voicemail stopped just before the hang-up: its summary is on its way.
            self.await_stopped_recording().await;
            self.store_media_report(report);
        }
        let now = crate::clock::unix_ms();
        for key in std::mem::take(&mut self.b_dialog_ids) {
            self.ep.send(Command::RemoveDialog { key });
        }
        if !self.recorded {
            self.ep.send(Command::RemoveDialog {
                key: self.a_dialog_key(),
            });
            return;
        }
        for (i, leg) in self.legs.iter().enumerate() {
            if i == 0 || self.state.callee_answered() {
                self.ctx.writer.send(StoreCmd::LegEnded {
                    leg_id: *leg,
                    at_ms: now,
                    final_code: Some(ending.code),
                });
            }
        }
        self.event(Event::CallEnded {
            cause: ending.cause,
            by: ending.by,
            code: ending.code,
        });
        self.ctx.writer.send(StoreCmd::CallEnded {
            call_id: self.record_id,
            at_ms: now,
            hangup_cause: ending.cause.as_str().to_owned(),
            hangup_by: ending.by,
            final_code: Some(ending.code),
        });
        self.ep.send(Command::RemoveDialog {
            key: self.a_dialog_key(),
        });
    }

    /// The caller-side dialog as the endpoint routes it: the caller's Call-ID and our tag.
    fn a_dialog_key(&self) -> DialogKey {
        DialogKey::new(
            self.invite.headers.call_id().unwrap_or_default(),
            self.a_tag.as_str(),
        )
    }
}

fn other(side: Side) -> Side {
    match side {
        Side::Caller => Side::Callee,
        Side::Callee => Side::Caller,
    }
}

impl Call {
    /// SIP INFO: a DTMF digit (`application/dtmf-relay`, `application/dtmf`) goes to the media
    /// session, which reports it and passes it on in the form the other side negotiated. Other
    /// bodies are acknowledged and ignored (legacy INFO usage, RFC 6086 §2).
    fn on_info(&mut self, tx: TxId, req: &Request, side: Side) {
        let content_type = req.headers.get("Content-Type").unwrap_or_default();
        match dtmf::parse_info(content_type, &req.body) {
            Ok((digit, duration)) => {
                if let Some(media) = &self.media {
                    let duration = duration.unwrap_or(Duration::from_millis(100));
                    media.digit_from_info(leg_of(side), digit, duration);
                }
            }
            // Not a DTMF body: acknowledged and ignored.
            Err(dtmf::DtmfError::UnsupportedContentType(_)) => {}
            Err(error) => {
                tracing::info!(%error, "unusable DTMF INFO");
                return self.respond_in_dialog(tx, req, StatusCode::BAD_REQUEST);
            }
        }
        self.respond_in_dialog(tx, req, StatusCode::OK);
    }

    /// Appends an event about this call to the durable event log.
    fn event(&self, event: Event) {
        self.ctx.writer.send(StoreCmd::event(
            crate::clock::unix_ms(),
            Some(self.session_id),
            Some(self.record_id),
            event,
        ));
    }

    /// Stores per-leg media statistics and the finished recording.
    fn store_media_report(&self, report: MediaReport) {
        for (i, stats) in report.pipeline.legs.iter().cloned().enumerate() {
            let Some(stats) = stats else {
                continue;
            };
            if i == 1 && !self.state.callee_answered() {
                continue;
            }
            tracing::info!(
                leg = i,
                received = stats.packets_received,
                lost = stats.packets_lost,
                jitter_ms = stats.jitter_ms,
                mos = stats.mos,
                "media statistics"
            );
            self.ctx.writer.send(StoreCmd::LegMedia {
                leg_id: self.legs[i],
                codec: report.pipeline.codecs[i].map(|c| c.name().to_owned()),
                stats: stats.into(),
            });
        }
        if let Some(id) = self.recording {
            let ended = match &report.recording {
                Some(summary) => EndedRecording::complete(id, summary),
                None => EndedRecording::failed(id, crate::clock::unix_ms()),
            };
            self.ctx.writer.send(StoreCmd::RecordingEnded(ended));
            self.event(Event::RecordingStopped {
                recording_id: id.to_string(),
            });
            let recording_id = id.to_string();
            self.event(if report.recording.is_some() {
                Event::RecordingAvailable { recording_id }
            } else {
                Event::RecordingFailed { recording_id }
            });
        }
    }
}

/// The party on `leg`.
fn party(leg: Leg) -> CallParty {
    if leg == Leg::A {
        CallParty::Caller
    } else {
        CallParty::Callee
    }
}

fn leg_of(side: Side) -> Leg {
    match side {
        Side::Caller => Leg::A,
        Side::Callee => Leg::B,
    }
}

/// Points the media session's `leg` at the RTP/RTCP addresses of that party's SDP. Hold
/// with `c=0.0.0.0` or port 0 keeps the old address: the latch still follows the real source.
fn point_media(media: &MediaSession, leg: Leg, sdp: &SessionDescription) {
    let Some(rtp) = sdp
        .rtp_addr()
        .filter(|a| !a.ip().is_unspecified() && a.port() != 0)
    else {
        return;
    };
    let rtcp = sdp
        .rtcp_addr()
        .filter(|a| !a.ip().is_unspecified() && a.port() != 0);
    media.set_remote(leg, rtp, rtcp);
}
