//! The call actor's side of the IVR: routing a new call through the dialplan, and carrying
//! out what the interpreter asks (answer, prompts and speech, dials and ring groups,
//! recordings, webhooks, attributes, transfer, hang-up). Slow work (text to speech, HTTP)
//! runs in its own task and comes back as an [`IvrResult`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::{Call, Ending, Side, control, point_media};
use crate::event::Event;
use crate::ivr::interp::{Action, DialOutcome, Input};
use crate::ivr::plan::{HangupCause, Prompt, Step};
use crate::ivr::{parse, route, tts, webhook};
use crate::media::engine::{MediaCommand, PlaySource};
use crate::media::negotiate;
use crate::media::ports::Leg;
use crate::media::recorder::{ChannelMode, Recorder, RecordingSummary};
use crate::media::sdp::SessionDescription;
use crate::media::tone::ToneKind;
use crate::session::CallParty;
use crate::session::core::timers::CallTimer;
use crate::session::service::SetBy;
use crate::sip::dialog::{DialogKey, new_call_id, new_tag};
use crate::sip::endpoint::Command;
use crate::sip::message::{NameAddr, Request, Response, StatusCode};
use crate::sip::transaction::TxId;
use crate::store::{EndedRecording, HangupBy, NewRecording, RecordingId, RecordingKind, StoreCmd};

/// Media playback ids at or above this belong to the interpreter (its id + this); below are
/// the actor's own (ringback).
pub(super) const PLAY_ID_BASE: u64 = 1 << 32;

/// Actions carried out in one go without the flow waiting for anything outside (a goto
/// loop through steps the actor answers at once, like a dial with nobody to ring): past
/// this the flow is stopped.
const MAX_ACTIONS_WITHOUT_WAIT: usize = 1000;

/// Transfers one call may make (a plan that transfers in a circle is stopped).
const MAX_TRANSFERS: u32 = 10;

/// Rate speech is decoded at (the pipeline resamples to its own).
const PROMPT_RATE: u32 = 16_000;

/// Work done off the actor, coming back.
pub(super) enum IvrResult {
    /// Speech synthesised (mono PCM at [`PROMPT_RATE`]) for play `id`, or why not.
    Speech {
        id: u64,
        barge_in: bool,
        result: Result<Arc<[i16]>, String>,
    },
    /// Speech for API playback `id` to `leg`.
    ApiSpeech {
        id: u64,
        leg: Leg,
        result: Result<Arc<[i16]>, String>,
    },
    /// A webhook's reply as steps, or why there are none.
    Webhook {
        id: u64,
        result: Result<Vec<Step>, String>,
    },
}

/// A dial ringing now.
pub(super) struct DialState {
    pub id: u64,
}

impl Call {
    /// Routes the call through the dialplan and starts the route's flow. False when the call
    /// was refused at once (no route).
    pub(super) async fn start_flow(&mut self) -> bool {
        let plan = self.ctx.plan.current();
        let from = self.invite.headers.from().ok();
        let caller = self
            .caller_ext
            .clone()
            .or_else(|| from.as_ref().and_then(NameAddr::sip_user))
            .unwrap_or_else(|| "anonymous".into());
        let Some(route) = route::select(&plan, &self.called, &caller, jiff::Timestamp::now())
        else {
            tracing::info!(called = %self.called, "no dialplan route");
            self.reply_a_final(StatusCode::NOT_FOUND);
            return false;
        };
        tracing::info!(route = %route.name, flow = %route.flow, "routed");
        let flow = route.flow.clone();
        let attrs =
            self.builtin_attributes(caller, from.and_then(|f| f.display).unwrap_or_default());
        self.ep.send(Command::AddDialog {
            key: self.a_dialog_key(),
            owner: self.me.clone(),
        });
        self.start_interpreter(plan, flow, attrs);
        self.pump_ivr().await;
        true
    }

    /// Carries out every action the interpreter has queued.
    pub(super) async fn pump_ivr(&mut self) {
        if let Some((to, timeout)) = self.pending_connect.take() {
            self.connecting = true;
            self.start_dial(control::CONNECT_DIAL_ID, vec![to], timeout)
                .await;
        }
        let mut budget = MAX_ACTIONS_WITHOUT_WAIT;
        loop {
            let Some(ivr) = self.ivr.as_mut() else {
                return;
            };
            let mut steps = Vec::new();
            while let Some(step) = ivr.poll_step() {
                steps.push(step);
            }
            for step in steps {
                self.event(Event::IvrStep {
                    flow: step.flow,
                    index: step.index,
                    kind: step.kind.to_owned(),
                    webhook: step.webhook,
                });
            }
            let Some(ivr) = self.ivr.as_mut() else {
                return;
            };
            if budget == 0 {
                tracing::error!(
                    actions = MAX_ACTIONS_WITHOUT_WAIT,
                    "the IVR flow loops without waiting for anything: hanging up"
                );
                return self.ivr_hangup(HangupCause::Normal);
            }
            budget -= 1;
            let Some(action) = ivr.poll_action() else {
                if ivr.is_finished() {
                    self.ivr = None;
                    self.flow = None;
                }
                return;
            };
            self.do_action(action).await;
        }
    }

    /// Gives the interpreter an input (nothing when no flow runs any more).
    pub(super) fn ivr_input(&mut self, input: Input) {
        match input {
            Input::DialDone { id, outcome } if self.queue_dial_done(id, outcome) => return,
            Input::Digit(d) if self.queue_digit(d) => return,
            _ => {}
        }
        if let Some(ivr) = &mut self.ivr {
            ivr.handle_input(crate::clock::now(), input);
        } else if let Input::DialDone { outcome, .. } = input
            && self.connecting
        {
            self.connect_done(outcome);
        }
    }

    async fn do_action(&mut self, action: Action) {
        tracing::debug!(?action, "ivr");
        match action {
            Action::Answer => {
                self.answer_locally();
            }
            Action::Play {
                id,
                prompt,
                barge_in,
            } => self.play(id, prompt, barge_in),
            Action::StopPlayback => {
                self.pending_speech = None;
                if let Some(media) = &self.media {
                    media.command(MediaCommand::StopPlayback { leg: Leg::A });
                }
            }
            Action::Dial {
                id,
                extensions,
                timeout,
            } => self.start_dial(id, extensions, timeout).await,
            Action::StartRecording {
                id,
                voicemail,
                silence,
            } => self.start_message_recording(id, voicemail, silence),
            Action::StopRecording { id } => self.stop_message_recording(id),
            Action::SendMessage { channel, text } => self.text_caller(channel, text),
            Action::RecordCall => {
                if self.recording.is_none() && self.answer_locally() {
                    self.start_recording();
                }
            }
            Action::Webhook {
                id,
                url,
                body,
                timeout,
            } => self.call_webhook(id, url, body, timeout),
            Action::SetAttribute { name, value } => self.set_attribute(name, value),
            Action::Transfer { number } => self.transfer(number),
            Action::Hangup { cause } => self.ivr_hangup(cause),
            Action::Queue {
                id,
                queue,
                priority,
                skills,
            } => self.start_queue(id, queue, priority, skills),
        }
    }

    /// Hands a `send_message` text for the caller's number to the chat side.
    fn text_caller(&mut self, channel: String, text: String) {
        // The call (and its session, where the conversation goes) is recorded first.
        self.ensure_record();
        let to = self
            .ctx
            .sessions
            .normalise(crate::store::Identity {
                kind: crate::domain::IdentityKind::Phone,
                value: self.caller_user.clone(),
            })
            .value;
        if !to.starts_with('+') {
            tracing::info!(
                channel,
                "send_message: the caller has no number in E.164: not sent"
            );
            return;
        }
        let Some(texts) = &self.ctx.texts else {
            tracing::warn!(channel, "send_message: no chat service: not sent");
            return;
        };
        tracing::info!(channel, "send_message: texting the caller");
        let _ = texts.send(crate::session::TextToCaller {
            session_id: self.session_id,
            call_id: self.record_id,
            channel,
            to,
            text,
        });
    }

    /// Answers the caller ourselves (the IVR's `answer`, or a step that needs media). The
    /// media session gets two legs: the caller's now, a callee's when a dial is answered.
    /// False when the call cannot be answered (it is then ended).
    pub(super) fn answer_locally(&mut self) -> bool {
        if self.state.caller_answered() {
            return true;
        }
        if !self.state.caller_waits() {
            return false;
        }
        // Early media already gave the caller an answer (a dial that failed): the 200 repeats
        // it, and the caller's leg keeps the codec it promised.
        if let (Some(body), Some(a)) = (self.a_early_sdp.clone(), self.a_promised)
            && self.media.is_some()
        {
            self.stop_ringback();
            if let Some(media) = &self.media {
                media.command(MediaCommand::SetMedia {
                    leg: Leg::A,
                    media: Some(a),
                });
            }
            self.ensure_record();
            self.answer_caller(body);
            return true;
        }
        let answer = self.caller_offer().and_then(|offer| {
            let (answer, a) =
                negotiate::early_answer(&offer).ok_or(StatusCode::NOT_ACCEPTABLE_HERE)?;
            if self.media.is_none() {
                let session = self.open_media(2)?;
                point_media(&session, Leg::A, &offer);
                self.media = Some(session);
            }
            let Some(media) = &self.media else {
                return Err(StatusCode::SERVER_ERROR);
            };
            let body = self.sdp_out[0].write(&answer, self.ctx.media_ip, media.local_port(Leg::A));
            media.command(MediaCommand::SetMedia {
                leg: Leg::A,
                media: Some(a),
            });
            self.a_promised = Some(a);
            self.a_offer = Some(offer);
            Ok(Bytes::from(body))
        });
        match answer {
            Ok(body) => {
                self.ensure_record();
                self.answer_caller(body);
                true
            }
            Err(status) => {
                self.ensure_record();
                self.state.end(Ending {
                    cause: HangupCause::MediaFailed,
                    by: HangupBy::System,
                    code: status.0,
                });
                self.reply_a_final(status);
                self.ivr = None;
                false
            }
        }
    }

    /// Writes the call record, once.
    pub(super) fn ensure_record(&mut self) {
        let ext = self.caller_ext.clone();
        let called = self.called.clone();
        self.record_start(ext.as_deref(), &called);
    }

    pub(super) fn play(&mut self, id: u64, prompt: Prompt, barge_in: bool) {
        if !self.answer_locally() {
            return;
        }
        self.pending_speech = None;
        let source = match prompt {
            Prompt::File(name) => {
                let mut name = std::path::PathBuf::from(name);
                if name.extension().is_none() {
                    name.set_extension("wav");
                }
                // Decoded (and cached) at the caller's rate, so that playing it costs no
                // resampling: 8 kHz for G.711, 16 kHz otherwise.
                let rate = match self.a_promised.map(|m| m.codec.native_rate()) {
                    Some(8000) => 8000,
                    _ => 16_000,
                };
                match self.ctx.media.prompts.load(&name, rate) {
                    Ok(pcm) => PlaySource::Prompt {
                        pcm,
                        rate,
                        looped: false,
                    },
                    Err(error) => {
                        tracing::warn!(%error, "prompt not played");
                        self.ivr_input(Input::PlaybackFailed {
                            id,
                            error: error.to_string(),
                        });
                        return;
                    }
                }
            }
            Prompt::Tone(kind) => PlaySource::Tone(kind),
            Prompt::Silence(_) => {
                self.ivr_input(Input::PlaybackDone {
                    id,
                    interrupted: false,
                });
                return;
            }
            Prompt::Say { text, voice } => {
                self.pending_speech = Some(id);
                self.speak(id, text.0, voice, barge_in);
                return;
            }
        };
        self.play_source(id, source, barge_in);
    }

    fn play_source(&mut self, id: u64, source: PlaySource, barge_in: bool) {
        match &self.media {
            Some(media) => {
                media.command(MediaCommand::Play {
                    leg: Leg::A,
                    id: id + PLAY_ID_BASE,
                    source,
                    barge_in,
                });
                self.event(Event::PlaybackStarted {
                    playback_id: format!("ivr-{id}"),
                    source: "ivr".into(),
                    leg: CallParty::Caller,
                });
            }
            None => self.ivr_input(Input::PlaybackFailed {
                id,
                error: "no media session".into(),
            }),
        }
    }

    /// Text to speech in a task; the speech is played when it comes back.
    fn speak(&mut self, id: u64, text: String, voice: Option<String>, barge_in: bool) {
        let dir = self.ctx.media.data_dir.join("tts");
        let tx = self.ivr_tx.clone();
        tokio::spawn(async move {
            let result = synthesize(dir, text, voice).await;
            let _ = tx.send(IvrResult::Speech {
                id,
                barge_in,
                result,
            });
        });
    }

    /// A result of work done off the actor.
    pub(super) fn on_ivr_result(&mut self, result: IvrResult) {
        match result {
            IvrResult::Speech { id, .. } if self.pending_speech != Some(id) => {
                // The flow moved on (a digit barged in) while the speech was being made.
                tracing::debug!(id, "speech no longer wanted");
            }
            IvrResult::Speech {
                id,
                barge_in,
                result,
            } => match result {
                Ok(pcm) => self.play_source(
                    id,
                    PlaySource::Prompt {
                        pcm,
                        rate: PROMPT_RATE,
                        looped: false,
                    },
                    barge_in,
                ),
                Err(error) => {
                    tracing::error!(%error, "text to speech failed: the `say` step is skipped");
                    self.ivr_input(Input::PlaybackFailed { id, error });
                }
            },
            IvrResult::ApiSpeech { id, leg, result } => match result {
                // Stopped (or the call moved on) before the speech was ready.
                _ if !self.api_plays.contains_key(&id) => {}
                Ok(pcm) => self.api_play_source(
                    id,
                    leg,
                    PlaySource::Prompt {
                        pcm,
                        rate: PROMPT_RATE,
                        looped: false,
                    },
                ),
                Err(error) => {
                    tracing::error!(%error, "text to speech failed: API playback skipped");
                    self.api_plays.remove(&id);
                    self.event(Event::PlaybackFinished {
                        playback_id: id.to_string(),
                        source: "api".into(),
                        leg: None,
                        interrupted: None,
                        error: Some(error.to_string()),
                    });
                }
            },
            IvrResult::Webhook { id, result } => {
                self.ivr_input(Input::WebhookDone { id, result });
            }
        }
    }

    fn call_webhook(&mut self, id: u64, url: String, body: serde_json::Value, timeout: Duration) {
        let tx = self.ivr_tx.clone();
        // The reply is checked against the plan this call runs (not a newer one).
        let plan = match &self.ivr {
            Some(ivr) => ivr.plan().clone(),
            None => self.ctx.plan.current(),
        };
        tracing::info!(%url, "webhook");
        tokio::spawn(async move {
            let result = match webhook::post(&url, &body, timeout).await {
                Ok(reply) => parse::steps_from_json(&reply, &plan).map_err(|errors| {
                    let list: Vec<String> = errors.iter().map(|e| e.message.clone()).collect();
                    format!("webhook reply has invalid steps: {}", list.join("; "))
                }),
                Err(e) => Err(e.to_string()),
            };
            if let Err(error) = &result {
                tracing::warn!(%url, %error, "webhook gave no usable reply");
            }
            let _ = tx.send(IvrResult::Webhook { id, result });
        });
    }

    pub(super) fn set_attribute(&mut self, name: String, value: String) {
        tracing::info!(%name, %value, "session attribute");
        self.ensure_record();
        self.ctx.sessions.set_attribute(
            self.session_id,
            SetBy::Call(self.record_id),
            &name,
            &value,
            crate::clock::unix_ms(),
        );
    }

    /// Routes the call again for `number` and runs that flow with the same attributes.
    fn transfer(&mut self, number: String) {
        let Some(old) = self.ivr.take() else {
            return;
        };
        self.transfers += 1;
        if self.transfers > MAX_TRANSFERS {
            tracing::error!(%number, "too many transfers (the plan transfers in a circle?): hanging up");
            return self.ivr_hangup(HangupCause::Unavailable);
        }
        let plan = old.plan().clone();
        let mut attrs = old.attributes().clone();
        let caller = attrs.get("caller").cloned().unwrap_or_default();
        let Some(route) = route::select(&plan, &number, &caller, jiff::Timestamp::now()) else {
            tracing::info!(%number, "transfer to a number without a route");
            return self.ivr_hangup(HangupCause::NotFound);
        };
        tracing::info!(%number, flow = %route.flow, "transfer");
        let flow = route.flow.clone();
        attrs.insert("transferred_from".into(), self.called.clone());
        attrs.insert("called".into(), number.clone());
        self.called = number;
        self.start_interpreter(plan, flow, attrs);
    }

    /// The flow hung up: BYE once answered; before, the last dial's failure passes through
    /// (a plain extension call keeps the callee's 486 or 480), or the cause's status.
    pub(super) fn ivr_hangup(&mut self, cause: HangupCause) {
        self.ivr = None;
        if self.state.caller_answered() {
            tracing::info!(%cause, "IVR hangs up");
            self.hangup(Ending {
                cause,
                by: HangupBy::System,
                code: 200,
            });
            return;
        }
        if self.best_failure.is_some() && cause == HangupCause::Normal {
            self.ensure_record();
            return self.fail_caller(StatusCode::TEMPORARILY_UNAVAILABLE, HangupCause::Failed);
        }
        let status = StatusCode(cause.status());
        if !self.state.is_ending() {
            self.state.end(Ending {
                cause,
                by: HangupBy::System,
                code: status.0,
            });
        }
        self.reply_a_final(status);
    }

    /// Rings `extensions` (every registered contact of each) for `timeout`.
    pub(super) async fn start_dial(&mut self, id: u64, extensions: Vec<String>, timeout: Duration) {
        self.best_failure = None;
        let mut contacts = Vec::new();
        let mut known = false;
        for ext in &extensions {
            let extension = crate::domain::Extension::new(ext.as_str());
            if self.ctx.registrar.user(&extension).await.is_some() {
                known = true;
                for loc in self.ctx.registrar.lookup(&extension) {
                    contacts.push((loc, ext.clone()));
                }
            }
        }
        if contacts.is_empty() {
            let status = if known {
                StatusCode::TEMPORARILY_UNAVAILABLE
            } else {
                StatusCode::NOT_FOUND
            };
            tracing::info!(?extensions, code = status.0, "nobody to ring");
            self.best_failure = Some(Response::from_request(&self.invite, status));
            self.best_failure_ours = true;
            self.ivr_input(Input::DialDone {
                id,
                outcome: DialOutcome::Unavailable,
            });
            return;
        }
        let offer = match self.callee_offer() {
            Ok(offer) => offer,
            Err(status) => {
                self.best_failure = Some(Response::from_request(&self.invite, status));
                self.best_failure_ours = true;
                self.ivr_input(Input::DialDone {
                    id,
                    outcome: DialOutcome::Failed,
                });
                return;
            }
        };
        self.ensure_record();
        // Each dial attempt is its own callee-side dialog.
        if self.forks.iter().next().is_some() {
            self.b_call_id = new_call_id();
            self.b_tag = new_tag();
        }
        let key = DialogKey::new(self.b_call_id.as_str(), self.b_tag.as_str());
        self.ep.send(Command::AddDialog {
            key: key.clone(),
            owner: self.me.clone(),
        });
        self.b_dialog_ids.push(key);
        tracing::info!(?extensions, contacts = contacts.len(), "dialling");
        self.dial = Some(DialState { id });
        // The dial's own timeout bounds the wait now.
        self.timers
            .set(CallTimer::DialRing, crate::clock::now() + timeout);
        self.timers.clear(CallTimer::NoAnswer);
        for (loc, ext) in contacts {
            self.fork(id, &loc, &ext, offer.clone());
        }
    }

    /// The offer for a callee: the caller's, widened with what we transcode, pointing at our
    /// callee-side port. Opens the media session when the caller is not answered yet.
    pub(super) fn callee_offer(&mut self) -> Result<Bytes, StatusCode> {
        if let Some(offer) = &self.b_offer {
            return Ok(offer.clone());
        }
        let offer = if self.media.is_none() {
            self.prepare_media()?
        } else {
            let sdp = match &self.a_offer {
                Some(sdp) => negotiate::relay_offer(sdp, self.ctx.media.transcoding),
                None => negotiate::relay_offer(&self.caller_offer()?, self.ctx.media.transcoding),
            };
            let Some(media) = &self.media else {
                return Err(StatusCode::SERVER_ERROR);
            };
            Bytes::from(self.sdp_out[1].write(&sdp, self.ctx.media_ip, media.local_port(Leg::B)))
        };
        self.b_offer = Some(offer.clone());
        Ok(offer)
    }

    /// Every fork of the current dial failed.
    pub(super) fn dial_failed(&mut self) {
        let Some(dial) = self.dial.take() else {
            return;
        };
        let status = self
            .best_failure
            .as_ref()
            .map(|r| r.status.0)
            .unwrap_or(480);
        let outcome = match HangupCause::from_failure(status) {
            HangupCause::Busy | HangupCause::Declined => DialOutcome::Busy,
            HangupCause::NoAnswer | HangupCause::Cancelled => DialOutcome::NoAnswer,
            HangupCause::NotFound => DialOutcome::Unavailable,
            _ => DialOutcome::Failed,
        };
        tracing::info!(code = status, outcome = outcome.as_str(), "dial failed");
        self.stop_ringback();
        self.timers.set(
            CallTimer::NoAnswer,
            crate::clock::now() + self.ctx.no_answer_timeout,
        );
        self.ivr_input(Input::DialDone {
            id: dial.id,
            outcome,
        });
    }

    /// Nobody answered in time: CANCEL the forks and tell the flow.
    pub(super) fn dial_timed_out(&mut self) {
        let Some(dial) = self.dial.take() else {
            return;
        };
        tracing::info!("dial: no answer in time");
        self.cancel_forks();
        self.best_failure = Some(Response::from_request(
            &self.invite,
            StatusCode::TEMPORARILY_UNAVAILABLE,
        ));
        self.best_failure_ours = true;
        self.stop_ringback();
        self.timers.set(
            CallTimer::NoAnswer,
            crate::clock::now() + self.ctx.no_answer_timeout,
        );
        self.ivr_input(Input::DialDone {
            id: dial.id,
            outcome: DialOutcome::NoAnswer,
        });
    }

    /// A callee answered the current dial: the call is bridged; the flow ends there.
    pub(super) fn dial_answered(&mut self, extension: String) {
        self.answered_extension = Some(extension.clone());
        if let Some(dial) = self.dial.take() {
            self.set_attribute("dialed".into(), extension);
            self.ivr_input(Input::DialDone {
                id: dial.id,
                outcome: DialOutcome::Answered,
            });
        }
    }

    /// The caller, already answered by the IVR, hears ringback while a callee rings.
    pub(super) fn ringback_while_dialling(&mut self, status: StatusCode) {
        // A queued caller keeps the music while an agent's phone rings.
        if self.ringback
            || self.dial.is_none()
            || self.queue.is_some()
            || !(status.0 == 180 || status.0 == 183)
        {
            return;
        }
        if let Some(media) = &self.media {
            media.command(MediaCommand::Play {
                leg: Leg::A,
                id: 0,
                source: PlaySource::Tone(ToneKind::Ringback),
                barge_in: false,
            });
            self.ringback = true;
        }
    }

    /// After a failed dial: no more ringback, and the callee side forgets that callee's
    /// media (early media of a busy callee must not stay bridged).
    pub(super) fn stop_ringback(&mut self) {
        let Some(media) = &self.media else {
            return;
        };
        if self.ringback {
            self.ringback = false;
            media.command(MediaCommand::StopPlayback { leg: Leg::A });
        }
        media.command(MediaCommand::SetMedia {
            leg: Leg::B,
            media: None,
        });
        self.b_early = false;
    }

    /// Records what the caller says (a voicemail or a `record` step), mono.
    fn start_message_recording(
        &mut self,
        id: u64,
        voicemail: Option<String>,
        silence: Option<Duration>,
    ) {
        if !self.answer_locally() {
            return;
        }
        if self.media.is_none() {
            return;
        }
        let spec = self.recording_spec(ChannelMode::CallerOnly);
        let row = NewRecording::from_spec(&spec);
        let (kind, row) = match &voicemail {
            Some(mailbox) => (
                RecordingKind::Voicemail,
                row.with_kind(RecordingKind::Voicemail, Some(mailbox.clone())),
            ),
            None => (
                RecordingKind::Message,
                row.with_kind(RecordingKind::Message, None),
            ),
        };
        match Recorder::start(spec) {
            Ok(recorder) => {
                let path = recorder.path().to_owned();
                tracing::info!(path = %path.display(), kind = kind.as_str(), "recording the caller");
                let rid = row.id;
                let event = Event::RecordingStarted {
                    recording_id: rid.to_string(),
                    kind: Some(kind.as_str().to_owned()),
                    mailbox: Some(voicemail.clone()),
                };
                self.ctx.writer.send(StoreCmd::RecordingStarted(row));
                self.event(event);
                if let Some(media) = &self.media {
                    media.command(MediaCommand::StartRecording(recorder));
                    media.command(MediaCommand::DetectSilence {
                        leg: Leg::A,
                        after: silence,
                    });
                }
                self.replace_running_recording(rid, path);
                self.ivr_recording = Some(IvrRecording {
                    id,
                    recording: rid,
                    stopping: false,
                });
            }
            Err(error) => {
                tracing::error!(%error, "cannot start recording the caller");
                self.ivr_input(Input::RecordingDone {
                    id,
                    recording_id: None,
                });
            }
        }
    }

    fn stop_message_recording(&mut self, id: u64) {
        let Some(rec) = &mut self.ivr_recording else {
            return;
        };
        if rec.id != id || rec.stopping {
            return;
        }
        rec.stopping = true;
        if let (Some(rid), Some(path)) = (self.recording.take(), self.recording_path.take()) {
            self.stopping.push((rid, path));
        }
        if let Some(media) = &self.media {
            media.command(MediaCommand::DetectSilence {
                leg: Leg::A,
                after: None,
            });
            media.command(MediaCommand::StopRecording);
        }
    }

    /// The engine runs one recording at a time: a new one replaces (stops) the one running,
    /// whose summary then comes back as a `RecordingStopped`.
    pub(super) fn replace_running_recording(&mut self, rid: RecordingId, path: std::path::PathBuf) {
        if let (Some(old), Some(old_path)) = (self.recording.take(), self.recording_path.take()) {
            self.stopping.push((old, old_path));
        }
        self.recording = Some(rid);
        self.recording_path = Some(path);
    }

    /// A recording stopped mid-call (asked to, or replaced): its row is completed and, for a
    /// voicemail or `record` step, the flow goes on.
    pub(super) fn on_recording_stopped(&mut self, result: Result<RecordingSummary, String>) {
        let found = match &result {
            Ok(summary) => self.stopping.iter().position(|(_, p)| *p == summary.path),
            Err(_) => (!self.stopping.is_empty()).then_some(0),
        };
        let Some(index) = found else {
            tracing::warn!("a recording stopped that was not asked to");
            return;
        };
        let (rid, _) = self.stopping.remove(index);
        let (ended, ok) = match &result {
            Ok(summary) => (EndedRecording::complete(rid, summary), true),
            Err(error) => {
                tracing::error!(%error, "recording failed");
                (EndedRecording::failed(rid, crate::clock::unix_ms()), false)
            }
        };
        self.ctx.writer.send(StoreCmd::RecordingEnded(ended));
        self.event(Event::RecordingStopped {
            recording_id: rid.to_string(),
        });
        let recording_id = rid.to_string();
        self.event(if ok {
            Event::RecordingAvailable { recording_id }
        } else {
            Event::RecordingFailed { recording_id }
        });
        if self
            .ivr_recording
            .as_ref()
            .is_some_and(|r| r.recording == rid)
            && let Some(rec) = self.ivr_recording.take()
        {
            self.ivr_input(Input::RecordingDone {
                id: rec.id,
                recording_id: ok.then(|| rid.to_string()),
            });
        }
    }

    /// At the end of the call: recordings asked to stop just before report their summaries
    /// shortly after the media session ended; wait for them (bounded) so their rows are
    /// complete.
    pub(super) async fn await_stopped_recording(&mut self) {
        let deadline = crate::clock::tokio_now() + Duration::from_secs(5);
        while !self.stopping.is_empty() {
            match tokio::time::timeout_at(deadline, self.media_events.recv()).await {
                Ok(Some(event)) => self.on_media_event(event),
                _ => break,
            }
        }
        for (rid, _) in std::mem::take(&mut self.stopping) {
            self.ctx
                .writer
                .send(StoreCmd::RecordingEnded(EndedRecording::failed(
                    rid,
                    crate::clock::unix_ms(),
                )));
        }
    }
}

/// Text to speech (espeak-ng, cached under `dir`), decoded at [`PROMPT_RATE`].
pub(super) async fn synthesize(
    dir: std::path::PathBuf,
    text: String,
    voice: Option<String>,
) -> Result<Arc<[i16]>, String> {
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let path = tts::synthesize(&text, voice.as_deref(), &dir)
        .await
        .map_err(|e| e.to_string())?;
    let name = path
        .file_name()
        .map(Path::new)
        .ok_or_else(|| "speech file without a name".to_owned())?
        .to_owned();
    let cache = crate::media::player::PromptCache::new(dir.clone());
    tokio::task::spawn_blocking(move || cache.load(&name, PROMPT_RATE))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// A voicemail or `record` step's recording.
pub(super) struct IvrRecording {
    /// The interpreter's id for it.
    pub id: u64,
    pub recording: RecordingId,
    /// StopRecording sent; the summary is awaited.
    pub stopping: bool,
}

impl Call {
    /// A re-INVITE from a caller talking to the IVR (no callee): answered here. A new offer
    /// re-points the caller's media; an empty one gets our current media as the offer.
    pub(super) fn answer_reinvite_locally(&mut self, tx: TxId, req: Request) {
        let Some(media) = &self.media else {
            return self.respond_in_dialog(tx, &req, StatusCode::SERVER_ERROR);
        };
        let offer = if req.body.is_empty() {
            self.a_offer.clone()
        } else {
            let Ok(mut sdp) = SessionDescription::parse(&req.body) else {
                return self.respond_in_dialog(tx, &req, StatusCode::NOT_ACCEPTABLE_HERE);
            };
            if sdp.intersect_supported().is_err() {
                return self.respond_in_dialog(tx, &req, StatusCode::NOT_ACCEPTABLE_HERE);
            }
            Some(sdp)
        };
        let Some((answer, a)) = offer.as_ref().and_then(negotiate::early_answer) else {
            return self.respond_in_dialog(tx, &req, StatusCode::NOT_ACCEPTABLE_HERE);
        };
        if let Some(sdp) = &offer
            && !req.body.is_empty()
        {
            point_media(media, Leg::A, sdp);
            media.command(MediaCommand::SetMedia {
                leg: Leg::A,
                media: Some(a),
            });
            self.a_promised = Some(a);
            self.a_offer = offer.clone();
        }
        let body = self.sdp_out[0].write(&answer, self.ctx.media_ip, media.local_port(Leg::A));
        let Some(peer) = self.a_dialog.as_ref().map(|d| d.peer) else {
            return self.respond_in_dialog(tx, &req, StatusCode::CALL_DOES_NOT_EXIST);
        };
        self.accept_reinvite(tx, &req, Side::Caller, peer, Bytes::from(body));
    }
}
