//! The media pipeline of one call: what happens to every packet and every 20 ms frame.
//! SANS-IO: the driver ([`super::MediaSession`]) hands it datagrams, commands and the time,
//! and sends what [`Pipeline::poll_transmit`] returns.
//!
//! Per leg (A = the caller, B = the other party) the pipeline keeps an RTP session (RFC 3550:
//! statistics, RTCP, our own SSRC, sequence and timestamps), and, only while something needs
//! the audio, a jitter buffer, a decoder and an encoder. Each leg is its own RTP session: RTCP
//! is answered per leg and never relayed.
//!
//! * **Relay without decoding** when both legs use the same codec: a packet is restamped in
//!   place into the other leg's stream (our SSRC, continuous sequence and timestamps, the
//!   other leg's payload type number) and sent at once.
//! * **Transcoding** when they do not: packets go through the jitter buffer; every frame tick
//!   decodes, resamples to the pipeline rate, resamples to the other codec's rate and encodes.
//! * **Taps**: while recording, every tick also decodes both directions (caller left, other
//!   party right) without touching the relayed packets. A recording can be stopped in the
//!   middle of the call and another started later (voicemail, then a call recording): a
//!   stopped recorder is handed to the driver ([`Pipeline::poll_stopped_recording`]), which
//!   waits for its summary off the media path and reports [`MediaEvent::RecordingStopped`].
//! * **Silence detection** ([`MediaCommand::DetectSilence`]): while armed, the leg's audio is
//!   decoded every tick (even when it is only relayed) and [`MediaEvent::Silence`] is reported
//!   once when every frame has stayed below [`SILENCE_THRESHOLD_DBFS`] for the time asked.
//! * **Sources**: a prompt or tone played to a leg, or music on hold while the leg is held,
//!   replaces what that leg would hear. DTMF sent to a leg goes as RFC 4733 events if it
//!   negotiated telephone-event, as in-band tones otherwise.
//! * **DTMF in**: RFC 4733 events (relayed as events when the other leg takes them, reported
//!   once at their end) and, for G.711 legs without telephone-event, in-band Goertzel
//!   detection.
//!   A digit that cannot cross as it came is re-sent in the form the other leg negotiated.
//! * **Conference**: a leg joined to a room pushes what its party says and plays the room's
//!   mix of everyone else ([`super::conference`]); nothing is relayed between the legs then.
//!   Usually leg A of a one-leg call; leg B during an attended transfer's consultation (the
//!   transferor talks to the consultation call while leg A hears music on hold).
//!
//! Here: the commands, events and configuration, the [`Pipeline`] with its packet entry points
//! and the relay of packets as they came; `transcode` (relay or transcode, per-leg codecs),
//! `frame` (the 20 ms tick), `play` (prompts, tones, music on hold), `dtmf` (digits in and
//! out).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::conference::{ROOM_RATE, Room};
use crate::media::codec::{self, CodecKind, Decoder, Encoder};
use crate::media::dtmf::{Digit, EventReceiver, EventSender, ToneGenerator};
use crate::media::dtmf_detect::DtmfDetector;
use crate::media::frame_clock::FrameClock;
use crate::media::jitter::{JitterBuffer, JitterConfig, Pop};
use crate::media::mixer::PartyId;
use crate::media::negotiate::LegMedia;
use crate::media::player::Playback;
use crate::media::ports::Leg;
use crate::media::recorder::{Recorder, RecordingSummary};
use crate::media::resample::Resampler;
use crate::media::rtp::{self, Incoming, LegStats, RtpPacket, RtpSession, SessionConfig, Ssrc};
use crate::media::tone::{ToneKind, ToneRegion, ToneSource};
use crate::media::{FRAME_MS, frame_len};

mod dtmf;
mod frame;
mod play;
#[cfg(test)]
mod tests;
mod transcode;

/// Frame period.
pub const FRAME: Duration = Duration::from_millis(FRAME_MS as u64);

/// Datagram buffers kept for reuse (a tick sends at most one packet per leg, plus RTCP).
const SPARE_BUFFERS: usize = 4;

/// How long a digit re-sent by us lasts when the original duration is unknown.
const DEFAULT_DIGIT: Duration = Duration::from_millis(100);

/// A frame is silence for [`MediaCommand::DetectSilence`] when its RMS level is below this,
/// in dBFS after AES17 (a full-scale sine reads 0 dBFS, as [`crate::media::analysis::rms_dbfs`]
/// reads it). −45 dBFS is well under quiet speech (around −35 to −25 dBFS on a phone line)
/// and above the idle noise of a phone or G.711 trunk (−60 dBFS or lower), so breathing and
/// line hiss count as silence and a murmur does not.
pub const SILENCE_THRESHOLD_DBFS: f64 = -45.0;

/// [`SILENCE_THRESHOLD_DBFS`] as a mean square of 16-bit samples:
/// (32768 · 10^(−45/20))² / 2 (the / 2 is AES17's √2 on the RMS).
const QUIET_MEAN_SQUARE: i64 = 16_977;

/// What to play to a leg.
pub enum PlaySource {
    Tone(ToneKind),
    /// Mono PCM at `rate` (resampled to the pipeline rate when it is queued).
    Prompt {
        pcm: Arc<[i16]>,
        rate: u32,
        looped: bool,
    },
}

/// Commands from the call actor.
pub enum MediaCommand {
    /// The negotiated media of a leg (None: no media yet).
    SetMedia { leg: Leg, media: Option<LegMedia> },
    /// Plays to the party on `leg`, replacing what it hears; `barge_in` stops it on a digit
    /// from that party. A playback already running there ends (reported interrupted).
    Play {
        leg: Leg,
        id: u64,
        source: PlaySource,
        barge_in: bool,
    },
    /// Stops what plays to `leg`.
    StopPlayback { leg: Leg },
    /// Sends a digit to the party on `leg`, in the form it negotiated.
    SendDigit {
        leg: Leg,
        digit: Digit,
        duration: Duration,
    },
    /// Taps both directions into this recorder (caller left, other party right; the recorder's
    /// [`crate::media::recorder::ChannelMode`] decides what is kept). A recording already
    /// running is stopped first, as by [`MediaCommand::StopRecording`].
    StartRecording(Recorder),
    /// Stops the current recording now; its summary comes back as
    /// [`MediaEvent::RecordingStopped`]. Nothing happens when nothing is recorded.
    StopRecording,
    /// `Some(after)`: reports [`MediaEvent::Silence`] once, when what `leg`'s party says has
    /// stayed below [`SILENCE_THRESHOLD_DBFS`] for `after` without a break (counted from now;
    /// no packets at all is silence too). Re-arming restarts the count; `None` disarms.
    DetectSilence { leg: Leg, after: Option<Duration> },
    /// Pauses (silence is written, so the timing stays) or resumes the recording.
    PauseRecording(bool),
    /// The party on `leg` is held by the other: it hears music on hold instead.
    Hold { leg: Leg, held: bool },
    /// What the party on `leg` says is not passed on: the other party (and a conference room
    /// or a recording) gets silence instead. Unmuted, packets are relayed as before.
    Mute { leg: Leg, muted: bool },
    /// Joins the party on `leg` to a conference room (leaving the room it was in, if any).
    JoinConference { room: Arc<Room>, leg: Leg },
    /// Leaves the conference room, if any: the legs are relayed to each other again.
    LeaveConference,
}

/// What the pipeline tells the call actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// A digit from the party on `leg`.
    Digit {
        leg: Leg,
        digit: Digit,
        source: DigitSource,
    },
    /// A playback ended: finished, or `interrupted` (stopped, replaced, or barged in).
    PlaybackFinished {
        leg: Leg,
        id: u64,
        interrupted: bool,
    },
    /// A recording stopped by [`MediaCommand::StopRecording`] (or replaced by a new
    /// [`MediaCommand::StartRecording`]) is finalised: its summary (the path says which
    /// recording it was), or why it failed. Sent by the driver once the file is synced and
    /// hashed, so it may come after later events.
    RecordingStopped {
        result: Result<RecordingSummary, String>,
    },
    /// `leg`'s party has been silent for the time [`MediaCommand::DetectSilence`] asked
    /// (reported once; detection is then disarmed).
    Silence { leg: Leg },
}

/// How a digit arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigitSource {
    Rfc4733,
    Inband,
    SipInfo,
}

impl DigitSource {
    /// Name for logs and events.
    pub fn as_str(self) -> &'static str {
        match self {
            DigitSource::Rfc4733 => "rfc4733",
            DigitSource::Inband => "inband",
            DigitSource::SipInfo => "sip_info",
        }
    }
}

/// A datagram to send out of a leg's RTP (or RTCP) socket.
#[derive(Debug)]
pub struct Transmit {
    pub leg: Leg,
    pub rtcp: bool,
    pub bytes: Vec<u8>,
}

/// What to do with an RTP packet just received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtpAction {
    /// The buffer was restamped in place: send it out of the other leg.
    Forward,
    /// Nothing to send now.
    Consume,
}

/// Settings shared by every call.
#[derive(Clone, Default)]
pub struct PipelineConfig {
    pub jitter: JitterConfig,
    pub tone_region: ToneRegion,
    /// Music on hold as mono PCM at 8 kHz and at 16 kHz; None plays silence.
    pub music_on_hold: Option<[Arc<[i16]>; 2]>,
    /// Detect in-band DTMF on legs without telephone-event (costs a decode per frame).
    pub inband_dtmf: bool,
}

/// Per-leg statistics at the end of the call (None for a leg that never had media).
#[derive(Debug, Clone, Default)]
pub struct PipelineReport {
    pub legs: [Option<LegStats>; 2],
    pub codecs: [Option<CodecKind>; 2],
    /// Frames the frame clock skipped because the task ran too late to catch up (lost audio;
    /// also counted in `switchboard_media_frames_skipped_total`).
    pub frames_skipped: u64,
    /// Frames produced a period or more after their deadline (caught up, back to back).
    pub frames_late: u64,
}

/// The pipeline of one call.
pub struct Pipeline {
    config: PipelineConfig,
    legs: [LegState; 2],
    /// Both legs' media known and different: decode, resample, encode.
    transcoding: bool,
    /// Internal rate: 16 kHz if a leg is wideband or the call is in a room, else 8 kHz.
    rate: u32,
    recording: Option<Tap>,
    /// Recorders stopped and not yet handed to the driver.
    stopped: VecDeque<Recorder>,
    /// The room one leg is in: (room, its party id there, that leg).
    room: Option<(Arc<Room>, PartyId, Leg)>,
    clock: Option<FrameClock>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<MediaEvent>,
    /// What the room sends this call's party, this tick.
    room_out: Vec<i16>,
    /// The callee and the room mixed, for the recording (callee in a room).
    mix: Vec<i16>,
    /// The frame being built for one leg.
    frame: Vec<i16>,
    /// Sent datagrams' buffers, reused for the next generated packets.
    spare: Vec<Vec<u8>>,
    /// Frame clock counters over the whole call (the clock itself comes and goes).
    frames_skipped: u64,
    frames_late: u64,
}

/// The recorder and its resamplers (pipeline rate → recording rate).
struct Tap {
    recorder: Recorder,
    resample: Option<[Resampler; 2]>,
    channels: [Vec<i16>; 2],
}

/// One leg's state.
struct LegState {
    leg: Leg,
    media: Option<LegMedia>,
    rtp: RtpSession,
    dtmf_in: EventReceiver,
    dtmf_out: Option<EventSender>,
    /// In-band digits waiting to be played to this party (no telephone-event).
    inband_out: VecDeque<(Digit, Duration)>,
    inband_tone: Option<ToneGenerator>,
    detector: Option<DtmfDetector>,
    jitter: Option<JitterBuffer>,
    decoder: Option<Box<dyn Decoder>>,
    encoder: Option<Box<dyn Encoder>>,
    /// The pipeline rate and jitter settings this leg was configured with.
    rate: u32,
    jitter_config: JitterConfig,
    /// Codec rate → pipeline rate, and back.
    up: Option<Resampler>,
    down: Option<Resampler>,
    playing: Option<Playing>,
    held: bool,
    /// What this party says is replaced by silence for everyone else.
    muted: bool,
    moh: Option<Playback>,
    /// Armed silence detection.
    silence: Option<SilenceWatch>,
    /// What this party said during the current tick, at the pipeline rate.
    heard: Vec<i16>,
    /// Decoded samples not yet consumed (packets longer than a frame).
    pending: VecDeque<i16>,
    /// Scratch: decoder output, resampler output, encoder output, packet.
    pcm: Vec<i16>,
    resampled: Vec<i16>,
    payload: Vec<u8>,
}

/// How long a leg has to stay quiet, and how long it has been.
struct SilenceWatch {
    after: Duration,
    quiet: Duration,
}

struct Playing {
    id: u64,
    barge_in: bool,
    source: Source,
}

enum Source {
    Tone(ToneSource),
    Prompt(Playback),
}

impl Pipeline {
    pub fn new(config: PipelineConfig, now: Instant) -> Self {
        let legs = [Leg::A, Leg::B].map(|leg| LegState::new(leg, now));
        Self {
            config,
            legs,
            transcoding: false,
            rate: 8000,
            recording: None,
            stopped: VecDeque::new(),
            room: None,
            clock: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            room_out: Vec::new(),
            mix: Vec::new(),
            frame: Vec::new(),
            spare: Vec::new(),
            frames_skipped: 0,
            frames_late: 0,
        }
    }

    /// The internal sample rate.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Whether the two legs use different codecs.
    pub fn is_transcoding(&self) -> bool {
        self.transcoding
    }

    /// Applies a command.
    pub fn command(&mut self, now: Instant, cmd: MediaCommand) {
        match cmd {
            MediaCommand::SetMedia { leg, media } => {
                self.legs[leg.index()].set_media(media);
                self.reconfigure();
            }
            MediaCommand::Play {
                leg,
                id,
                source,
                barge_in,
            } => self.play(leg, id, source, barge_in),
            MediaCommand::StopPlayback { leg } => self.stop_playback(leg, true),
            MediaCommand::SendDigit {
                leg,
                digit,
                duration,
            } => self.send_digit(leg, digit, duration),
            MediaCommand::StartRecording(recorder) => {
                let old = self.recording.replace(Tap {
                    recorder,
                    resample: None,
                    channels: [Vec::new(), Vec::new()],
                });
                if let Some(old) = old {
                    self.stopped.push_back(old.recorder);
                }
                self.reconfigure();
            }
            MediaCommand::StopRecording => {
                if let Some(tap) = self.recording.take() {
                    self.stopped.push_back(tap.recorder);
                }
            }
            MediaCommand::DetectSilence { leg, after } => {
                self.legs[leg.index()].silence = after.map(|after| SilenceWatch {
                    after,
                    quiet: Duration::ZERO,
                });
            }
            MediaCommand::PauseRecording(paused) => {
                if let Some(tap) = &mut self.recording {
                    if paused {
                        tap.recorder.pause();
                    } else {
                        tap.recorder.resume();
                    }
                }
            }
            MediaCommand::Hold { leg, held } => {
                let l = &mut self.legs[leg.index()];
                l.held = held;
                l.moh = None;
                if held {
                    self.start_moh(leg);
                }
            }
            MediaCommand::Mute { leg, muted } => {
                self.legs[leg.index()].muted = muted;
            }
            MediaCommand::JoinConference { room, leg } => {
                self.leave_conference();
                let id = room.join();
                self.room = Some((room, id, leg));
                self.reconfigure();
            }
            MediaCommand::LeaveConference => {
                if self.room.is_some() {
                    self.leave_conference();
                    self.reconfigure();
                }
            }
        }
        self.update_clock(now);
    }

    /// Takes the running recorder out, to stop it.
    pub fn take_recorder(&mut self) -> Option<Recorder> {
        self.recording.take().map(|t| t.recorder)
    }

    /// A recorder stopped by [`MediaCommand::StopRecording`] (or replaced): the driver calls
    /// [`Recorder::stop`] and reports the summary as [`MediaEvent::RecordingStopped`].
    pub fn poll_stopped_recording(&mut self) -> Option<Recorder> {
        self.stopped.pop_front()
    }

    /// An RTP packet received on `leg`. When [`RtpAction::Forward`] is returned, `buf` was
    /// restamped in place and goes out of the other leg.
    pub fn on_rtp(&mut self, now: Instant, leg: Leg, buf: &mut [u8]) -> RtpAction {
        let Ok(packet) = RtpPacket::parse(buf) else {
            return RtpAction::Consume;
        };
        let incoming = Incoming::of(&packet);
        let (pt, seq, ts, marker) = (
            incoming.payload_type,
            incoming.sequence,
            incoming.timestamp,
            incoming.marker,
        );
        let needs_audio = self.needs_audio(leg);
        let this = &mut self.legs[leg.index()];
        this.rtp.on_rtp(now, &packet);
        let Some(media) = this.media else {
            return RtpAction::Consume;
        };
        if Some(pt) == media.telephone_event {
            let mut ended = this.dtmf_in.on_packet(now, ts, marker, packet.payload());
            while let Some(ev) = ended {
                self.on_digit_in(now, leg, ev.digit, DigitSource::Rfc4733);
                ended = self.legs[leg.index()].dtmf_in.poll_event();
            }
            return self.forward(now, leg, buf, incoming, true);
        }
        if pt != media.payload_type {
            // Comfort noise or a codec we did not select: the other side may not know it.
            return RtpAction::Consume;
        }
        if needs_audio {
            this.ensure_decoding();
            if let Some(j) = &mut this.jitter {
                j.push(now, seq, ts, pt, marker, packet.payload());
            }
        }
        self.forward(now, leg, buf, incoming, false)
    }

    /// An RTCP packet received on `leg`: statistics only.
    pub fn on_rtcp(&mut self, now: Instant, leg: Leg, buf: &[u8]) {
        if let Err(error) = self.legs[leg.index()].rtp.on_rtcp(now, buf) {
            tracing::trace!(%error, ?leg, "RTCP ignored");
        }
    }

    /// A digit that arrived by SIP INFO from `leg`: reported, and passed on.
    pub fn digit_from_info(&mut self, now: Instant, leg: Leg, digit: Digit, duration: Duration) {
        self.events.push_back(MediaEvent::Digit {
            leg,
            digit,
            source: DigitSource::SipInfo,
        });
        self.barge_in(leg);
        if self.room.is_none() && self.legs[leg.other().index()].media.is_some() {
            self.send_digit(leg.other(), digit, duration);
        }
        self.update_clock(now);
    }

    /// When [`Pipeline::on_timeout`] wants to run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next = self.clock.as_ref().map(FrameClock::next_deadline);
        for l in &self.legs {
            if l.media.is_none() {
                continue;
            }
            for t in [Some(l.rtp.poll_timeout()), l.dtmf_in.poll_timeout()]
                .into_iter()
                .flatten()
            {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        next
    }

    /// Runs the frame ticks, RTCP reports and DTMF timeouts that are due at `now`.
    pub fn on_timeout(&mut self, now: Instant) {
        if let Some(clock) = &mut self.clock {
            let ticks = clock.tick(now);
            self.frames_late += u64::from(ticks.caught_up);
            self.frames_skipped += ticks.skipped;
            if ticks.caught_up > 0 {
                // Frames made after their deadline (caught up in a burst).
                metrics::counter!("switchboard_media_frames_late_total")
                    .increment(u64::from(ticks.caught_up));
            }
            if ticks.skipped > 0 {
                // The task ran too late to catch up (a starved core): those frames are lost,
                // but the recording keeps wall-clock time (silence in their place).
                metrics::counter!("switchboard_media_frames_skipped_total")
                    .increment(ticks.skipped);
                if let Some(tap) = &mut self.recording {
                    tap.recorder.skip_frames(ticks.skipped);
                }
            }
            for _ in 0..ticks.frames {
                self.tick(now);
            }
        }
        for i in 0..2 {
            if self.legs[i].media.is_none() {
                continue;
            }
            let leg = self.legs[i].leg;
            let mut report = Vec::new();
            if self.legs[i].rtp.poll_rtcp_into(now, &mut report) {
                self.transmits.push_back(Transmit {
                    leg,
                    rtcp: true,
                    bytes: report,
                });
            }
            if self.legs[i]
                .dtmf_in
                .poll_timeout()
                .is_some_and(|t| t <= now)
                && let Some(ev) = self.legs[i].dtmf_in.on_timeout(now)
            {
                self.on_digit_in(now, leg, ev.digit, DigitSource::Rfc4733);
            }
        }
        self.update_clock(now);
    }

    /// The next datagram to send. Hand its buffer back with [`Pipeline::recycle`].
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Takes back a sent datagram's buffer for the next generated packet (no allocation per
    /// frame once warm).
    pub fn recycle(&mut self, mut bytes: Vec<u8>) {
        if self.spare.len() < SPARE_BUFFERS {
            bytes.clear();
            self.spare.push(bytes);
        }
    }

    /// The next event for the call actor.
    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        self.events.pop_front()
    }

    /// Per-leg statistics now.
    pub fn report(&self) -> PipelineReport {
        PipelineReport {
            legs: [0, 1].map(|i| self.legs[i].media.map(|_| self.legs[i].rtp.stats())),
            codecs: [0, 1].map(|i| self.legs[i].media.map(|m| m.codec)),
            frames_skipped: self.frames_skipped,
            frames_late: self.frames_late,
        }
    }

    /// The call is over: RFC 4733 events still open (their end never came) are reported.
    pub fn close(&mut self, now: Instant) {
        let later = now + Duration::from_secs(3600);
        for i in 0..2 {
            let leg = self.legs[i].leg;
            if self.legs[i].dtmf_in.poll_timeout().is_some()
                && let Some(ev) = self.legs[i].dtmf_in.on_timeout(later)
            {
                self.events.push_back(MediaEvent::Digit {
                    leg,
                    digit: ev.digit,
                    source: DigitSource::Rfc4733,
                });
            }
        }
    }

    /// The leg in a conference room, if any.
    fn room_leg(&self) -> Option<Leg> {
        self.room.as_ref().map(|(_, _, leg)| *leg)
    }

    /// Leaves the conference, if any.
    pub fn leave_conference(&mut self) {
        if let Some((room, id, _)) = self.room.take() {
            room.leave(id);
        }
    }

    /// Whether what `leg`'s party says must be decoded.
    fn needs_audio(&self, leg: Leg) -> bool {
        let l = &self.legs[leg.index()];
        self.recording.is_some()
            || self.transcoding
            || self.room.is_some()
            || l.detector.is_some()
            || l.silence.is_some()
    }

    fn needs_tick(&self) -> bool {
        let muted_to = |i: usize| self.legs[i].muted && self.legs[1 - i].media.is_some();
        self.recording.is_some()
            || muted_to(0)
            || muted_to(1)
            || self.transcoding
            || self.room.is_some()
            || self.legs.iter().any(|l| {
                l.media.is_some()
                    && (l.playing.is_some()
                        || l.held
                        || l.detector.is_some()
                        || l.silence.is_some()
                        || l.dtmf_out.as_ref().is_some_and(|s| !s.is_idle())
                        || !l.inband_out.is_empty()
                        || l.inband_tone.is_some())
            })
    }

    fn update_clock(&mut self, now: Instant) {
        if !self.needs_tick() {
            self.clock = None;
        } else if self.clock.is_none() {
            self.clock = Some(FrameClock::new(now, FRAME));
        }
    }

    /// Restamps a packet from `leg` into the other leg's stream, if it is relayed as is.
    fn forward(
        &mut self,
        now: Instant,
        leg: Leg,
        buf: &mut [u8],
        incoming: Incoming,
        event: bool,
    ) -> RtpAction {
        if self.room.is_some() || (!event && self.legs[leg.index()].muted) {
            return RtpAction::Consume;
        }
        let transcoding = self.transcoding;
        let out = &mut self.legs[leg.other().index()];
        let Some(media) = out.media else {
            return RtpAction::Consume;
        };
        let pt = if event {
            // Events cross as events only when that leg takes them in the same clock.
            match media.telephone_event {
                Some(te) if !transcoding || media.codec.rtp_clock_rate() == 8000 => te,
                _ => return RtpAction::Consume,
            }
        } else if transcoding {
            return RtpAction::Consume;
        } else {
            media.payload_type
        };
        if out.is_generating() {
            return RtpAction::Consume;
        }
        out.rtp.restamp(now, buf, incoming, pt);
        RtpAction::Forward
    }
}
