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

    /// Rebuilds codecs, resamplers and the transcoding decision after a media change.
    fn reconfigure(&mut self) {
        let (a, b) = (self.legs[0].media, self.legs[1].media);
        self.transcoding = matches!((a, b), (Some(a), Some(b)) if a.codec != b.codec);
        // Opus runs at whatever rate the pipeline does. Against a G.711 leg nothing above
        // 4 kHz can cross either way, so the pipeline stays at 8 kHz: no resampling, and
        // narrowband Opus is cheaper to encode and decode than wideband (PCMU<->Opus frame:
        // 127 µs instead of 169 µs, `cargo bench --bench media_pipeline`). Prompts and music
        // on hold played to the Opus party during such a call are narrowband too. G.722 is
        // wideband whatever the other leg is.
        let is =
            |m: Option<LegMedia>, kinds: &[CodecKind]| m.is_some_and(|m| kinds.contains(&m.codec));
        let narrow = is(a, &[CodecKind::Pcmu, CodecKind::Pcma])
            || is(b, &[CodecKind::Pcmu, CodecKind::Pcma]);
        let wide = is(a, &[CodecKind::G722])
            || is(b, &[CodecKind::G722])
            || (!narrow && (is(a, &[CodecKind::Opus]) || is(b, &[CodecKind::Opus])));
        self.rate = if self.room.is_some() {
            ROOM_RATE
        } else if wide {
            16_000
        } else {
            8000
        };
        let (rate, jitter, inband) = (self.rate, &self.config.jitter, self.config.inband_dtmf);
        for l in &mut self.legs {
            l.configure(rate, jitter, inband);
        }
        if let Some(tap) = &mut self.recording {
            let to = tap.recorder_rate();
            tap.resample = (to != rate)
                .then(|| {
                    Some([
                        Resampler::new(rate, to).ok()?,
                        Resampler::new(rate, to).ok()?,
                    ])
                })
                .flatten();
        }
        for leg in [Leg::A, Leg::B] {
            if self.legs[leg.index()].held {
                self.start_moh(leg);
            }
        }
    }

    fn start_moh(&mut self, leg: Leg) {
        let pcm = self
            .config
            .music_on_hold
            .as_ref()
            .map(|m| if self.rate == 8000 { &m[0] } else { &m[1] });
        self.legs[leg.index()].moh = pcm.map(|pcm| Playback::looped(Arc::clone(pcm)));
    }

    fn play(&mut self, leg: Leg, id: u64, source: PlaySource, barge_in: bool) {
        let rate = self.rate;
        let source = match source {
            PlaySource::Tone(kind) => match ToneSource::new(kind, self.config.tone_region, rate) {
                Ok(t) => Source::Tone(t),
                Err(error) => {
                    tracing::warn!(%error, "tone not playable");
                    self.events.push_back(MediaEvent::PlaybackFinished {
                        leg,
                        id,
                        interrupted: true,
                    });
                    return;
                }
            },
            PlaySource::Prompt {
                pcm,
                rate: r,
                looped,
            } => {
                let pcm = resample_whole(&pcm, r, rate);
                Source::Prompt(if looped {
                    Playback::looped(pcm)
                } else {
                    Playback::new(pcm)
                })
            }
        };
        let old = self.legs[leg.index()].playing.replace(Playing {
            id,
            barge_in,
            source,
        });
        if let Some(old) = old {
            self.events.push_back(MediaEvent::PlaybackFinished {
                leg,
                id: old.id,
                interrupted: true,
            });
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

    fn on_digit_in(&mut self, now: Instant, leg: Leg, digit: Digit, source: DigitSource) {
        self.events
            .push_back(MediaEvent::Digit { leg, digit, source });
        self.barge_in(leg);
        if self.room.is_some() {
            return;
        }
        let transcoding = self.transcoding;
        let Some(media) = self.legs[leg.other().index()].media else {
            return;
        };
        let relayed_as_event = source == DigitSource::Rfc4733
            && media.telephone_event.is_some()
            && (!transcoding || media.codec.rtp_clock_rate() == 8000);
        if !relayed_as_event {
            self.send_digit(leg.other(), digit, DEFAULT_DIGIT);
        }
        self.update_clock(now);
    }

    /// A digit from `leg` stops a barge-in playback to that same party.
    fn barge_in(&mut self, leg: Leg) {
        if self.legs[leg.index()]
            .playing
            .as_ref()
            .is_some_and(|p| p.barge_in)
        {
            self.stop_playback(leg, true);
        }
    }

    fn stop_playback(&mut self, leg: Leg, interrupted: bool) {
        if let Some(p) = self.legs[leg.index()].playing.take() {
            self.events.push_back(MediaEvent::PlaybackFinished {
                leg,
                id: p.id,
                interrupted,
            });
        }
    }

    fn send_digit(&mut self, leg: Leg, digit: Digit, duration: Duration) {
        let l = &mut self.legs[leg.index()];
        match &mut l.dtmf_out {
            Some(sender) => {
                if let Err(error) = sender.queue(digit, duration) {
                    tracing::info!(%error, "digit not sent");
                }
            }
            None if l.media.is_some() => l.inband_out.push_back((digit, duration)),
            None => {}
        }
    }

    /// One 20 ms frame.
    fn tick(&mut self, now: Instant) {
        let n = frame_len(self.rate);
        // 1. What each party said.
        for i in 0..2 {
            let needs = self.needs_audio(self.legs[i].leg);
            let l = &mut self.legs[i];
            l.heard.clear();
            if needs && l.media.is_some() {
                l.decode_frame(now, n);
            }
            l.heard.resize(n, 0);
            if let Some(w) = &mut l.silence {
                w.quiet = if is_quiet(&l.heard) {
                    w.quiet + FRAME
                } else {
                    Duration::ZERO
                };
                if w.quiet >= w.after {
                    l.silence = None;
                    self.events.push_back(MediaEvent::Silence { leg: l.leg });
                }
            }
            let digit = l.detector.as_mut().and_then(|d| d.process(&l.heard));
            if l.muted {
                l.heard.fill(0);
            }
            if let Some(digit) = digit {
                let leg = l.leg;
                self.on_digit_in(now, leg, digit, DigitSource::Inband);
            }
        }
        // 2. The conference: push what the party said, take the mix of the others.
        if let Some((room, id, leg)) = &self.room {
            room.exchange(
                now,
                *id,
                &self.legs[leg.index()].heard,
                &mut self.room_out,
                n,
            );
        }
        // 3. The recording: caller left, the other party (or the caller's room) right.
        // With the callee in the room (an attended transfer's consultation), the right channel
        // is the consultation: the callee and the room mixed.
        let room_leg = self.room_leg();
        if room_leg == Some(Leg::B) && self.recording.is_some() {
            self.mix.clear();
            self.mix.extend(
                self.legs[1]
                    .heard
                    .iter()
                    .zip(&self.room_out)
                    .map(|(a, b)| a.saturating_add(*b)),
            );
        }
        if let Some(tap) = &mut self.recording {
            let right = match room_leg {
                Some(Leg::A) => &self.room_out,
                Some(Leg::B) => &self.mix,
                None => &self.legs[1].heard,
            };
            tap.write(&self.legs[0].heard, right);
        }
        // 4. What each party hears, where we generate it.
        for i in 0..2 {
            self.output_frame(now, i, n);
        }
    }

    /// Builds and sends what the party on leg `i` hears this frame, if we generate it.
    fn output_frame(&mut self, now: Instant, i: usize, n: usize) {
        let (this, other) = if i == 0 {
            let (a, b) = self.legs.split_at_mut(1);
            (&mut a[0], &b[0])
        } else {
            let (a, b) = self.legs.split_at_mut(1);
            (&mut b[0], &a[0])
        };
        let Some(media) = this.media else {
            return;
        };
        // RFC 4733 events take the stream while they last.
        if let Some(sender) = &mut this.dtmf_out
            && let Some(ev) = sender.poll_packet()
        {
            let step = media.codec.rtp_timestamp_step();
            let mut header = this
                .rtp
                .next_header(now, ev.payload_type, ev.marker, step, 4);
            header.timestamp = ev.rtp_timestamp(header.timestamp);
            let mut bytes = self.spare.pop().unwrap_or_default();
            header.write(&ev.payload, &mut bytes);
            self.transmits.push_back(Transmit {
                leg: this.leg,
                rtcp: false,
                bytes,
            });
            return;
        }
        let frame = &mut self.frame;
        frame.clear();
        frame.resize(n, 0);
        let mut generate = false;
        if let Some(p) = &mut this.playing {
            generate = true;
            let more = match &mut p.source {
                Source::Tone(t) => t.next_frame(frame),
                Source::Prompt(pb) => pb.next_frame(frame),
            };
            if !more {
                let id = p.id;
                this.playing = None;
                self.events.push_back(MediaEvent::PlaybackFinished {
                    leg: this.leg,
                    id,
                    interrupted: false,
                });
            }
        } else if this.held {
            generate = true;
            if let Some(m) = &mut this.moh {
                m.next_frame(frame);
            }
        } else if let Some((_, _, leg)) = &self.room {
            // The party in the room hears its mix; the other one nothing (it is held).
            if leg.index() == i {
                generate = true;
                frame.copy_from_slice(&self.room_out[..n]);
            }
        } else if self.transcoding || other.muted {
            // A muted party's `heard` is silence.
            generate = true;
            frame.copy_from_slice(&other.heard[..n]);
        }
        if this.inband_tone.is_none()
            && let Some((digit, duration)) = this.inband_out.pop_front()
        {
            this.inband_tone = Some(ToneGenerator::new(digit, self.rate, duration));
        }
        if let Some(t) = &mut this.inband_tone {
            generate = true;
            t.fill(frame);
            if t.is_done() {
                this.inband_tone = None;
            }
        }
        if generate {
            let mut bytes = self.spare.pop().unwrap_or_default();
            if this.encode_frame(now, frame, &mut bytes) {
                self.transmits.push_back(Transmit {
                    leg: this.leg,
                    rtcp: false,
                    bytes,
                });
            } else {
                self.spare.push(bytes);
            }
        }
    }
}

impl Tap {
    fn recorder_rate(&self) -> u32 {
        self.recorder.sample_rate()
    }

    fn write(&mut self, left: &[i16], right: &[i16]) {
        match &mut self.resample {
            None => self.recorder.write_frame(left, right),
            Some([l, r]) => {
                let [cl, cr] = &mut self.channels;
                cl.clear();
                cr.clear();
                l.process(left, cl);
                r.process(right, cr);
                let n = cl.len().min(cr.len());
                self.recorder.write_frame(&cl[..n], &cr[..n]);
            }
        }
    }
}

impl LegState {
    fn new(leg: Leg, now: Instant) -> Self {
        let ssrc = Ssrc(rand::random());
        let cname = format!("switchboard-{:08x}", ssrc.0);
        let mut config = SessionConfig::new(ssrc, cname, rand::random());
        config.ntp_at_start = rtp::NtpTime::from_unix(crate::clock::unix_duration());
        Self {
            leg,
            media: None,
            rtp: RtpSession::new(now, config),
            dtmf_in: EventReceiver::new(8000),
            dtmf_out: None,
            inband_out: VecDeque::new(),
            inband_tone: None,
            detector: None,
            jitter: None,
            decoder: None,
            encoder: None,
            rate: 8000,
            jitter_config: JitterConfig::default(),
            up: None,
            down: None,
            playing: None,
            held: false,
            muted: false,
            moh: None,
            silence: None,
            // Scratch buffers grow on first use: a relayed call never touches them.
            heard: Vec::new(),
            pending: VecDeque::new(),
            pcm: Vec::new(),
            resampled: Vec::new(),
            payload: Vec::new(),
        }
    }

    fn set_media(&mut self, media: Option<LegMedia>) {
        if self.media.map(|m| m.codec) != media.map(|m| m.codec) {
            self.decoder = None;
            self.encoder = None;
            self.jitter = None;
        }
        self.media = media;
        let Some(m) = media else {
            self.dtmf_out = None;
            return;
        };
        let clock = m.codec.rtp_clock_rate();
        self.rtp.set_clock_rate(clock);
        self.rtp.set_event_payload_type(m.telephone_event);
        self.rtp.set_codec(match m.codec {
            CodecKind::Pcmu | CodecKind::Pcma => rtp::Codec::G711,
            CodecKind::G722 => rtp::Codec::G722,
            CodecKind::Opus => rtp::Codec::Opus,
        });
        self.dtmf_in = EventReceiver::new(clock);
        self.dtmf_out = m.telephone_event.map(|pt| EventSender::new(pt, clock));
    }

    /// Settles what this leg needs at pipeline rate `rate`. Codecs, resamplers and the
    /// jitter buffer are created on first use ([`Self::ensure_decoding`],
    /// [`Self::ensure_encoding`]): a relayed call never pays for them.
    fn configure(&mut self, rate: u32, jitter: &JitterConfig, inband: bool) {
        let Some(m) = self.media else {
            return;
        };
        if self.rate != rate {
            self.decoder = None;
            self.encoder = None;
            self.up = None;
            self.down = None;
        }
        self.rate = rate;
        self.jitter_config = *jitter;
        // In-band digits are a narrowband trunk habit; decoding every Opus or G.722 frame of
        // a leg just to listen for them would cost more than it finds.
        let narrowband = matches!(m.codec, CodecKind::Pcmu | CodecKind::Pcma);
        self.detector =
            (inband && narrowband && m.telephone_event.is_none()).then(|| DtmfDetector::new(rate));
        self.pending.clear();
    }

    /// The jitter buffer, decoder and resampler to the pipeline rate.
    fn ensure_decoding(&mut self) {
        let Some(m) = self.media else {
            return;
        };
        let codec_rate = codec_pcm_rate(m.codec, self.rate);
        if self.decoder.is_none() {
            self.decoder = codec::decoder(m.codec, codec_rate)
                .inspect_err(|error| tracing::error!(%error, "no decoder"))
                .ok();
            self.up = (codec_rate != self.rate)
                .then(|| Resampler::new(codec_rate, self.rate).ok())
                .flatten();
        }
        if self.jitter.is_none() {
            self.jitter = Some(JitterBuffer::new(
                self.jitter_config,
                m.codec.rtp_clock_rate(),
                m.codec.rtp_timestamp_step(),
            ));
        }
    }

    /// The encoder and resampler from the pipeline rate.
    fn ensure_encoding(&mut self) {
        let Some(m) = self.media else {
            return;
        };
        if self.encoder.is_none() {
            let codec_rate = codec_pcm_rate(m.codec, self.rate);
            self.encoder = codec::encoder(m.codec, codec_rate)
                .inspect_err(|error| tracing::error!(%error, "no encoder"))
                .ok();
            self.down = (codec_rate != self.rate)
                .then(|| Resampler::new(self.rate, codec_rate).ok())
                .flatten();
        }
    }

    /// We are sending something of our own to this party instead of relayed packets.
    fn is_generating(&self) -> bool {
        self.playing.is_some()
            || self.held
            || self.dtmf_out.as_ref().is_some_and(|s| s.is_active())
            || self.inband_tone.is_some()
            || !self.inband_out.is_empty()
    }

    /// Pulls one frame of this party's audio, at the pipeline rate, into `heard`.
    fn decode_frame(&mut self, now: Instant, n: usize) {
        self.ensure_decoding();
        let (Some(j), Some(dec)) = (&mut self.jitter, &mut self.decoder) else {
            return;
        };
        while self.pending.len() < n {
            self.pcm.clear();
            match j.pop(now) {
                Pop::Packet { payload, .. } => {
                    if dec.decode(payload, &mut self.pcm).is_err() {
                        dec.conceal(frame_len(dec.pcm_rate()), &mut self.pcm);
                    }
                }
                Pop::Missing => dec.conceal(frame_len(dec.pcm_rate()), &mut self.pcm),
                Pop::Empty => break,
            }
            match &mut self.up {
                Some(up) => {
                    self.resampled.clear();
                    up.process(&self.pcm, &mut self.resampled);
                    self.pending.extend(self.resampled.iter().copied());
                }
                None => self.pending.extend(self.pcm.iter().copied()),
            }
        }
        // Copied as slices: extending a Vec from `drain(..)` goes sample by sample.
        let take = n.min(self.pending.len());
        let (front, back) = self.pending.as_slices();
        let from_front = take.min(front.len());
        self.heard.extend_from_slice(&front[..from_front]);
        self.heard.extend_from_slice(&back[..take - from_front]);
        if take == self.pending.len() {
            self.pending.clear();
        } else {
            self.pending.drain(..take);
        }
    }

    /// Encodes one frame at the pipeline rate into an RTP packet for this leg, written to
    /// `out` (empty); false when there is nothing to send.
    fn encode_frame(&mut self, now: Instant, frame: &[i16], out: &mut Vec<u8>) -> bool {
        self.ensure_encoding();
        let (Some(media), Some(enc)) = (self.media, self.encoder.as_mut()) else {
            return false;
        };
        let want = frame_len(enc.pcm_rate());
        let input: &[i16] = match &mut self.down {
            Some(down) => {
                self.resampled.clear();
                down.process(frame, &mut self.resampled);
                self.resampled.resize(want, 0);
                &self.resampled
            }
            None => frame,
        };
        self.payload.clear();
        if let Err(error) = enc.encode(input, &mut self.payload) {
            tracing::debug!(%error, "encode failed");
            return false;
        }
        let step = media.codec.rtp_timestamp_step();
        let header = self
            .rtp
            .next_header(now, media.payload_type, false, step, self.payload.len());
        header.write(&self.payload, out);
        true
    }
}

/// The PCM rate a codec instance works at inside a pipeline running at `rate`.
fn codec_pcm_rate(codec: CodecKind, rate: u32) -> u32 {
    match codec {
        CodecKind::Pcmu | CodecKind::Pcma => 8000,
        CodecKind::G722 => 16_000,
        // libopus decodes and encodes at the rate we ask: no resampler needed.
        CodecKind::Opus => rate,
    }
}

/// Whether a frame is below [`SILENCE_THRESHOLD_DBFS`] (an empty frame is).
fn is_quiet(frame: &[i16]) -> bool {
    let energy: i64 = frame.iter().map(|&s| i64::from(s) * i64::from(s)).sum();
    frame.is_empty() || energy < QUIET_MEAN_SQUARE * frame.len() as i64
}

/// Resamples a whole prompt once when it is queued.
fn resample_whole(pcm: &Arc<[i16]>, from: u32, to: u32) -> Arc<[i16]> {
    if from == to {
        return Arc::clone(pcm);
    }
    match crate::media::resample::resample_block(from, to, pcm) {
        Ok(out) => Arc::from(out),
        Err(error) => {
            tracing::warn!(%error, "prompt not resampled");
            Arc::clone(pcm)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::analysis::sine;
    use crate::media::rtp::RtpHeader;

    const PCMU: LegMedia = LegMedia {
        codec: CodecKind::Pcmu,
        payload_type: 0,
        telephone_event: Some(101),
    };

    fn pipeline(now: Instant, a: LegMedia, b: LegMedia) -> Pipeline {
        let mut p = Pipeline::new(
            PipelineConfig {
                inband_dtmf: true,
                ..PipelineConfig::default()
            },
            now,
        );
        p.command(
            now,
            MediaCommand::SetMedia {
                leg: Leg::A,
                media: Some(a),
            },
        );
        p.command(
            now,
            MediaCommand::SetMedia {
                leg: Leg::B,
                media: Some(b),
            },
        );
        p
    }

    /// An RTP packet of `kind` carrying frame `i` of a 1 kHz tone.
    fn voice(kind: CodecKind, pt: u8, i: u16, enc: &mut Box<dyn Encoder>) -> Vec<u8> {
        let rate = enc.pcm_rate();
        let pcm = sine(1000.0, rate, -12.0, frame_len(rate) * (usize::from(i) + 1));
        let mut payload = Vec::new();
        enc.encode(&pcm[frame_len(rate) * usize::from(i)..], &mut payload)
            .expect("encode");
        let mut out = Vec::new();
        RtpHeader {
            marker: i == 0,
            payload_type: pt,
            sequence: 1000 + i,
            timestamp: 5000 + u32::from(i) * kind.rtp_timestamp_step(),
            ssrc: Ssrc(0xabcd),
        }
        .write(&payload, &mut out);
        out
    }

    fn transmits(p: &mut Pipeline) -> Vec<Transmit> {
        std::iter::from_fn(|| p.poll_transmit()).collect()
    }

    #[test]
    fn a_callee_in_a_room_is_cut_off_from_the_caller_until_it_leaves() {
        let t0 = Instant::now();
        let mut p = pipeline(t0, PCMU, PCMU);
        let rooms = super::super::conference::Rooms::default();
        let room = rooms.get_or_create("transfer:test");
        p.command(
            t0,
            MediaCommand::JoinConference {
                room: room.clone(),
                leg: Leg::B,
            },
        );
        assert_eq!(room.len(), 1);
        let mut enc = codec::encoder(CodecKind::Pcmu, 8000).expect("encoder");
        let mut pkt = voice(CodecKind::Pcmu, 0, 0, &mut enc);
        assert_eq!(p.on_rtp(t0, Leg::A, &mut pkt), RtpAction::Consume);
        let mut pkt = voice(CodecKind::Pcmu, 0, 1, &mut enc);
        assert_eq!(p.on_rtp(t0, Leg::B, &mut pkt), RtpAction::Consume);
        // Joining again with the other leg moves the call: one party in the room.
        p.command(
            t0,
            MediaCommand::JoinConference {
                room: room.clone(),
                leg: Leg::A,
            },
        );
        assert_eq!(room.len(), 1);
        p.command(t0, MediaCommand::LeaveConference);
        assert_eq!(room.len(), 0);
        let mut pkt = voice(CodecKind::Pcmu, 0, 2, &mut enc);
        assert_eq!(
            p.on_rtp(t0 + FRAME * 2, Leg::A, &mut pkt),
            RtpAction::Forward,
            "relayed again once out of the room"
        );
    }

    #[test]
    fn a_shared_codec_is_restamped_into_the_other_legs_stream() {
        let t0 = Instant::now();
        let opus_a = LegMedia {
            codec: CodecKind::Opus,
            payload_type: 111,
            telephone_event: None,
        };
        let opus_b = LegMedia {
            payload_type: 96,
            ..opus_a
        };
        let mut p = pipeline(t0, opus_a, opus_b);
        assert!(!p.is_transcoding());
        let mut enc = codec::encoder(CodecKind::Opus, 16_000).expect("encoder");
        let mut seqs = Vec::new();
        for i in 0..3u16 {
            let mut pkt = voice(CodecKind::Opus, 111, i, &mut enc);
            let payload = pkt[12..].to_vec();
            let now = t0 + FRAME * u32::from(i);
            assert_eq!(p.on_rtp(now, Leg::A, &mut pkt), RtpAction::Forward);
            let out = RtpPacket::parse(&pkt).expect("still RTP");
            assert_eq!(out.payload_type(), 96, "the callee's payload type number");
            assert_ne!(out.ssrc(), Ssrc(0xabcd), "our SSRC on the other leg");
            assert_eq!(out.payload(), &payload[..], "payload untouched");
            seqs.push(out.sequence());
        }
        assert_eq!(seqs[1], seqs[0].wrapping_add(1));
        assert_eq!(seqs[2], seqs[1].wrapping_add(1));
        // Nothing is decoded or generated: no frame clock runs, only RTCP is due.
        assert!(p.clock.is_none());
        assert!(transmits(&mut p).is_empty());
    }

    #[test]
    fn a_muted_party_is_replaced_by_silence_and_relayed_again_once_unmuted() {
        let t0 = Instant::now();
        let mut p = pipeline(t0, PCMU, PCMU);
        let mut enc = codec::encoder(CodecKind::Pcmu, 8000).expect("encoder");
        p.command(
            t0,
            MediaCommand::Mute {
                leg: Leg::A,
                muted: true,
            },
        );
        assert!(p.clock.is_some(), "silence is generated on the frame clock");
        let mut pkt = voice(CodecKind::Pcmu, 0, 0, &mut enc);
        assert_eq!(p.on_rtp(t0, Leg::A, &mut pkt), RtpAction::Consume);
        p.on_timeout(t0 + FRAME);
        let out = transmits(&mut p);
        let to_b: Vec<_> = out.iter().filter(|t| t.leg == Leg::B && !t.rtcp).collect();
        assert!(!to_b.is_empty(), "the callee gets frames");
        for t in to_b {
            let rtp = RtpPacket::parse(&t.bytes).expect("RTP");
            assert!(
                rtp.payload().iter().all(|&b| b == 0xFF || b == 0x7F),
                "µ-law silence"
            );
        }
        // The callee is not muted: it is relayed.
        let mut pkt = voice(CodecKind::Pcmu, 0, 1, &mut enc);
        assert_eq!(p.on_rtp(t0 + FRAME, Leg::B, &mut pkt), RtpAction::Forward);
        p.command(
            t0 + FRAME,
            MediaCommand::Mute {
                leg: Leg::A,
                muted: false,
            },
        );
        let mut pkt = voice(CodecKind::Pcmu, 0, 2, &mut enc);
        assert_eq!(p.on_rtp(t0 + FRAME, Leg::A, &mut pkt), RtpAction::Forward);
        assert!(p.clock.is_none(), "zero-copy relay again");
    }

    #[test]
    fn different_codecs_are_transcoded_on_the_frame_clock() {
        let t0 = Instant::now();
        let g722 = LegMedia {
            codec: CodecKind::G722,
            payload_type: 9,
            telephone_event: None,
        };
        let mut p = pipeline(t0, PCMU, g722);
        assert!(p.is_transcoding());
        assert_eq!(p.rate(), 16_000);
        let mut enc = codec::encoder(CodecKind::Pcmu, 8000).expect("encoder");
        let mut out = Vec::new();
        for i in 0..50u16 {
            let now = t0 + FRAME * u32::from(i);
            let mut pkt = voice(CodecKind::Pcmu, 0, i, &mut enc);
            assert_eq!(p.on_rtp(now, Leg::A, &mut pkt), RtpAction::Consume);
            p.on_timeout(now);
            out.extend(
                transmits(&mut p)
                    .into_iter()
                    .filter(|t| t.leg == Leg::B && !t.rtcp),
            );
        }
        // One G.722 packet per 20 ms tick (the first ticks may be silence while the jitter
        // buffer fills), continuous sequence numbers, 160 timestamp units apart.
        assert!(out.len() >= 48, "{} packets", out.len());
        let pkts: Vec<_> = out
            .iter()
            .map(|t| RtpPacket::parse(&t.bytes).expect("rtp"))
            .collect();
        for w in pkts.windows(2) {
            assert_eq!(w[1].sequence(), w[0].sequence().wrapping_add(1));
            assert_eq!(w[1].timestamp(), w[0].timestamp().wrapping_add(160));
            assert_eq!(w[1].payload_type(), 9);
        }
        let mut dec = codec::decoder(CodecKind::G722, 16_000).expect("decoder");
        let mut pcm = Vec::new();
        for pkt in &pkts[pkts.len() - 25..] {
            dec.decode(pkt.payload(), &mut pcm).expect("decode");
        }
        let f = crate::media::analysis::dominant_frequency(&pcm, 16_000).expect("tone");
        assert!(
            (f - 1000.0).abs() < 10.0,
            "1 kHz crosses the transcoder: {f}"
        );
    }

    #[test]
    fn a_digit_sent_to_a_leg_with_telephone_event_goes_as_rfc4733_with_three_ends() {
        let t0 = Instant::now();
        let mut p = pipeline(t0, PCMU, PCMU);
        p.command(
            t0,
            MediaCommand::SendDigit {
                leg: Leg::B,
                digit: Digit::D7,
                duration: Duration::from_millis(100),
            },
        );
        let mut events = Vec::new();
        for i in 0..20u32 {
            p.on_timeout(t0 + FRAME * i);
            for t in transmits(&mut p) {
                let pkt = RtpPacket::parse(&t.bytes).expect("rtp");
                if pkt.payload_type() == 101 {
                    assert_eq!(t.leg, Leg::B);
                    events.push((pkt.marker(), pkt.timestamp(), pkt.payload().to_vec()));
                }
            }
        }
        assert!(events[0].0, "the first event packet has the marker bit");
        assert!(
            events.iter().all(|e| e.1 == events[0].1),
            "one timestamp per event"
        );
        assert!(events.iter().all(|e| e.2[0] == 7), "event code 7");
        let ends = events.iter().filter(|e| e.2[1] & 0x80 != 0).count();
        assert_eq!(ends, 3, "the end is sent three times");
        // Done: the frame clock stops again.
        assert!(p.clock.is_none());
    }

    #[test]
    fn rfc4733_digits_from_a_leg_are_reported_once_and_in_band_to_a_leg_without_events() {
        let t0 = Instant::now();
        let plain = LegMedia {
            telephone_event: None,
            ..PCMU
        };
        let mut p = pipeline(t0, PCMU, plain);
        // "3", 3 packets + 3 ends, all with timestamp 8000.
        let mut digits = Vec::new();
        let mut tone_packets = 0;
        for i in 0..6u16 {
            let duration = 160 * (i.min(3) + 1);
            let end = if i >= 3 { 0x80 } else { 0 };
            let mut pkt = Vec::new();
            RtpHeader {
                marker: i == 0,
                payload_type: 101,
                sequence: 10 + i,
                timestamp: 8000,
                ssrc: Ssrc(7),
            }
            .write(
                &[3, end | 10, (duration >> 8) as u8, duration as u8],
                &mut pkt,
            );
            let now = t0 + FRAME * u32::from(i);
            assert_eq!(
                p.on_rtp(now, Leg::A, &mut pkt),
                RtpAction::Consume,
                "events are not relayed to a leg without telephone-event"
            );
            p.on_timeout(now);
        }
        for i in 6..20u32 {
            p.on_timeout(t0 + FRAME * i);
        }
        while let Some(ev) = p.poll_event() {
            if let MediaEvent::Digit { leg, digit, source } = ev {
                digits.push((leg, digit, source));
            }
        }
        for t in transmits(&mut p) {
            if t.leg == Leg::B && !t.rtcp {
                tone_packets += 1;
            }
        }
        assert_eq!(digits, [(Leg::A, Digit::D3, DigitSource::Rfc4733)]);
        assert!(
            tone_packets >= 5,
            "the digit is played in-band to the callee"
        );
    }

    #[test]
    fn in_band_digits_are_detected_on_a_leg_without_telephone_event() {
        let t0 = Instant::now();
        let plain = LegMedia {
            telephone_event: None,
            ..PCMU
        };
        let mut p = pipeline(t0, plain, PCMU);
        let tone = crate::media::dtmf::dual_tone(Digit::D9, 8000, Duration::from_millis(100));
        let mut pcm = vec![0i16; 800];
        pcm.extend(tone);
        pcm.resize(8000, 0);
        let mut enc = codec::encoder(CodecKind::Pcmu, 8000).expect("encoder");
        for (i, chunk) in pcm.chunks(160).enumerate() {
            let mut payload = Vec::new();
            enc.encode(chunk, &mut payload).expect("encode");
            let mut pkt = Vec::new();
            RtpHeader {
                marker: i == 0,
                payload_type: 0,
                sequence: i as u16,
                timestamp: i as u32 * 160,
                ssrc: Ssrc(9),
            }
            .write(&payload, &mut pkt);
            let now = t0 + FRAME * i as u32;
            p.on_rtp(now, Leg::A, &mut pkt);
            p.on_timeout(now);
        }
        for i in 50..60u32 {
            p.on_timeout(t0 + FRAME * i);
        }
        let digits: Vec<_> = std::iter::from_fn(|| p.poll_event())
            .filter_map(|e| match e {
                MediaEvent::Digit { digit, source, .. } => Some((digit, source)),
                _ => None,
            })
            .collect();
        assert_eq!(digits, [(Digit::D9, DigitSource::Inband)]);
    }

    #[test]
    fn a_digit_barges_in_on_a_prompt_and_the_prompt_end_is_reported() {
        let t0 = Instant::now();
        let mut p = pipeline(t0, PCMU, PCMU);
        let prompt: Arc<[i16]> = Arc::from(sine(500.0, 8000, -12.0, 8000));
        p.command(
            t0,
            MediaCommand::Play {
                leg: Leg::A,
                id: 7,
                source: PlaySource::Prompt {
                    pcm: Arc::clone(&prompt),
                    rate: 8000,
                    looped: false,
                },
                barge_in: true,
            },
        );
        p.on_timeout(t0);
        let played = transmits(&mut p).iter().filter(|t| t.leg == Leg::A).count();
        assert_eq!(
            played, 1,
            "the prompt replaces what the caller hears, frame by frame"
        );
        p.digit_from_info(t0 + FRAME, Leg::A, Digit::D1, Duration::from_millis(100));
        let events: Vec<_> = std::iter::from_fn(|| p.poll_event()).collect();
        assert!(events.contains(&MediaEvent::PlaybackFinished {
            leg: Leg::A,
            id: 7,
            interrupted: true
        }));
        // A prompt without barge-in plays to its end.
        p.command(
            t0,
            MediaCommand::Play {
                leg: Leg::A,
                id: 8,
                source: PlaySource::Prompt {
                    pcm: Arc::from(&prompt[..1600]),
                    rate: 8000,
                    looped: false,
                },
                barge_in: false,
            },
        );
        for i in 2..20u32 {
            p.on_timeout(t0 + FRAME * i);
        }
        let events: Vec<_> = std::iter::from_fn(|| p.poll_event()).collect();
        assert!(events.contains(&MediaEvent::PlaybackFinished {
            leg: Leg::A,
            id: 8,
            interrupted: false
        }));
    }

    /// An RTP packet of `pcm` (one frame) encoded as PCMU, payload type 0, sequence `i`.
    fn pcmu_packet(i: u16, pcm: &[i16], enc: &mut Box<dyn Encoder>) -> Vec<u8> {
        let mut payload = Vec::new();
        enc.encode(pcm, &mut payload).expect("encode");
        let mut out = Vec::new();
        RtpHeader {
            marker: i == 0,
            payload_type: 0,
            sequence: 2000 + i,
            timestamp: 16_000 + u32::from(i) * 160,
            ssrc: Ssrc(0x5151),
        }
        .write(&payload, &mut out);
        out
    }

    /// Frame `i` of something speech-like: three partials whose level swings between −26 and
    /// −20 dBFS at a syllable rate of 3 Hz.
    fn speech_frame(i: usize) -> Vec<i16> {
        (0..160)
            .map(|k| {
                let t = (i * 160 + k) as f64 / 8000.0;
                let envelope = 0.5 + 0.5 * (2.0 * std::f64::consts::PI * 3.0 * t).sin().abs();
                let partials: f64 = [300.0, 700.0, 1200.0]
                    .iter()
                    .map(|f| (2.0 * std::f64::consts::PI * f * t).sin())
                    .sum();
                (envelope * 1100.0 * partials).round() as i16
            })
            .collect()
    }

    /// Uniform noise in `-peak..=peak` (RMS = peak / √3).
    fn noise_frame(rng: &mut crate::media::test_rng::XorShift, peak: i16) -> Vec<i16> {
        let span = 2 * u64::from(peak.unsigned_abs()) + 1;
        (0..160)
            .map(|_| (rng.below(span) as i64 - i64::from(peak)) as i16)
            .collect()
    }

    /// Feeds leg A one frame every 20 ms from `from` (frame index), ticking after each, and
    /// returns the events with the time they came out.
    fn feed_a(
        p: &mut Pipeline,
        t0: Instant,
        from: usize,
        frames: &[Vec<i16>],
        enc: &mut Box<dyn Encoder>,
    ) -> Vec<(Instant, MediaEvent)> {
        let mut events = Vec::new();
        for (k, pcm) in frames.iter().enumerate() {
            let i = from + k;
            let now = t0 + FRAME * i as u32;
            let mut pkt = pcmu_packet(i as u16, pcm, enc);
            p.on_rtp(now, Leg::A, &mut pkt);
            p.on_timeout(now);
            events.extend(std::iter::from_fn(|| p.poll_event()).map(|e| (now, e)));
            transmits(p);
        }
        events
    }

    fn silences(events: &[(Instant, MediaEvent)]) -> Vec<(Instant, Leg)> {
        events
            .iter()
            .filter_map(|(t, e)| match e {
                MediaEvent::Silence { leg } => Some((*t, *leg)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_silence_threshold_is_minus_45_dbfs_as_rms_dbfs_reads_it() {
        for (level, quiet) in [(-44.0, false), (-46.0, true), (-20.0, false)] {
            let tone = sine(440.0, 8000, level, 160);
            assert_eq!(is_quiet(&tone), quiet, "{level} dBFS");
            let measured = crate::media::analysis::rms_dbfs(&tone);
            assert_eq!(measured < SILENCE_THRESHOLD_DBFS, quiet, "{measured}");
        }
        assert!(is_quiet(&[0; 160]));
    }

    #[test]
    fn silence_after_speech_is_reported_once_after_the_time_asked_while_relaying() {
        let t0 = Instant::now();
        let mut p = pipeline(t0, PCMU, PCMU);
        assert!(p.clock.is_none(), "a relayed call decodes nothing");
        p.command(
            t0,
            MediaCommand::DetectSilence {
                leg: Leg::A,
                after: Some(Duration::from_secs(1)),
            },
        );
        assert!(p.clock.is_some(), "detection needs the frame clock");
        let mut enc = codec::encoder(CodecKind::Pcmu, 8000).expect("encoder");
        // 1.5 s of speech (longer than `after`: speech keeps resetting the count)…
        let speech: Vec<_> = (0..75).map(speech_frame).collect();
        let mut forwarded = 0;
        for (i, pcm) in speech.iter().enumerate() {
            let now = t0 + FRAME * i as u32;
            let mut pkt = pcmu_packet(i as u16, pcm, &mut enc);
            if p.on_rtp(now, Leg::A, &mut pkt) == RtpAction::Forward {
                forwarded += 1;
            }
            p.on_timeout(now);
            transmits(&mut p);
        }
        assert_eq!(
            forwarded, 75,
            "the audio is still relayed while it is listened to"
        );
        assert!(
            silences(
                &std::iter::from_fn(|| p.poll_event())
                    .map(|e| (t0, e))
                    .collect::<Vec<_>>()
            )
            .is_empty()
        );
        // …then 3 s of silence.
        let quiet = vec![vec![0i16; 160]; 150];
        let events = feed_a(&mut p, t0, 75, &quiet, &mut enc);
        let found = silences(&events);
        assert_eq!(found.len(), 1, "exactly one Silence: {found:?}");
        let (at, leg) = found[0];
        assert_eq!(leg, Leg::A);
        let silence_from = t0 + FRAME * 75;
        let after = at.duration_since(silence_from);
        assert!(
            after >= Duration::from_secs(1) && after <= Duration::from_millis(1200),
            "reported {after:?} after the speech ended (1 s + the jitter buffer's delay)"
        );
        // Disarmed once reported: no frame clock left on a relayed call.
        assert!(p.clock.is_none());
        assert_eq!(p.report().frames_skipped, 0);
        assert_eq!(p.report().frames_late, 0);
    }

    #[test]
    fn noise_above_the_threshold_is_not_silence_and_hiss_below_it_is() {
        let t0 = Instant::now();
        let mut rng = crate::media::test_rng::XorShift(0x9e37_79b9_7f4a_7c15);
        let mut enc = codec::encoder(CodecKind::Pcmu, 8000).expect("encoder");
        // ±505 uniform: RMS 292, −38 dBFS.
        let mut p = pipeline(t0, PCMU, PCMU);
        let after = Some(Duration::from_millis(500));
        p.command(t0, MediaCommand::DetectSilence { leg: Leg::A, after });
        let loud: Vec<_> = (0..150).map(|_| noise_frame(&mut rng, 505)).collect();
        let events = feed_a(&mut p, t0, 0, &loud, &mut enc);
        assert!(
            silences(&events).is_empty(),
            "−38 dBFS of noise is not silence"
        );
        assert!(p.clock.is_some(), "still armed");
        // ±100 uniform: RMS 58, −52 dBFS: line hiss.
        let mut p = pipeline(t0, PCMU, PCMU);
        p.command(t0, MediaCommand::DetectSilence { leg: Leg::A, after });
        let hiss: Vec<_> = (0..150).map(|_| noise_frame(&mut rng, 100)).collect();
        let events = feed_a(&mut p, t0, 0, &hiss, &mut enc);
        assert_eq!(silences(&events).len(), 1, "−52 dBFS of hiss is silence");
    }

    #[test]
    fn silence_detection_disarmed_with_none_reports_nothing_and_watches_one_leg() {
        let t0 = Instant::now();
        let mut p = pipeline(t0, PCMU, PCMU);
        let after = Some(Duration::from_millis(200));
        p.command(t0, MediaCommand::DetectSilence { leg: Leg::B, after });
        p.command(
            t0,
            MediaCommand::DetectSilence {
                leg: Leg::B,
                after: None,
            },
        );
        assert!(p.clock.is_none(), "disarmed: nothing to tick for");
        p.command(t0, MediaCommand::DetectSilence { leg: Leg::B, after });
        let mut events = Vec::new();
        // Leg A talks all along; leg B sends nothing at all, which is silence too.
        let mut enc = codec::encoder(CodecKind::Pcmu, 8000).expect("encoder");
        let speech: Vec<_> = (0..50).map(speech_frame).collect();
        events.extend(feed_a(&mut p, t0, 0, &speech, &mut enc));
        let found = silences(&events);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].1, Leg::B);
        assert_eq!(found[0].0, t0 + FRAME * 9, "ten quiet frames of 20 ms");
    }

    /// Stops the pipeline's recording at `now` and waits for its summary.
    fn stop_recording(p: &mut Pipeline, now: Instant) -> crate::media::recorder::RecordingSummary {
        p.command(now, MediaCommand::StopRecording);
        p.poll_stopped_recording()
            .expect("stopped")
            .stop()
            .wait_blocking()
            .expect("summary")
    }

    /// The samples of a WAV file (interleaved when stereo).
    fn wav_samples(path: &std::path::Path) -> Vec<i16> {
        hound::WavReader::open(path)
            .expect("wav")
            .samples::<i16>()
            .collect::<Result<_, _>>()
            .expect("samples")
    }

    fn recorder_pool() -> crate::media::recorder::RecorderPool {
        crate::media::recorder::RecorderPool::new(crate::media::recorder::PoolConfig {
            queue_capacity: 4096,
            buffers_per_recording: 512,
        })
        .expect("recorder pool")
    }

    fn caller_only(dir: &std::path::Path) -> crate::media::recorder::RecordingSpec {
        crate::media::recorder::RecordingSpec {
            data_dir: dir.to_path_buf(),
            recording_id: crate::store::RecordingId::new(),
            session_id: crate::store::SessionId::new(),
            call_id: crate::store::CallId::new(),
            started_ms: 1_700_000_000_000,
            sample_rate: 8000,
            mode: crate::media::recorder::ChannelMode::CallerOnly,
            mixed_companion: false,
        }
    }

    #[test]
    fn while_the_callee_consults_in_a_room_the_recording_holds_the_consultation() {
        let t0 = Instant::now();
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = recorder_pool();
        let rooms = super::super::conference::Rooms::default();
        let room = rooms.get_or_create("transfer:rec");
        let mut p = pipeline(t0, PCMU, PCMU);
        let mut spec = caller_only(dir.path());
        spec.mode = crate::media::recorder::ChannelMode::Stereo;
        p.command(
            t0,
            MediaCommand::StartRecording(pool.start(spec).expect("recording")),
        );
        p.command(
            t0,
            MediaCommand::JoinConference {
                room: room.clone(),
                leg: Leg::B,
            },
        );
        // The consultation call: one leg in the same room, saying a 1 kHz tone.
        let mut c = Pipeline::new(PipelineConfig::default(), t0);
        c.command(
            t0,
            MediaCommand::SetMedia {
                leg: Leg::A,
                media: Some(PCMU),
            },
        );
        c.command(
            t0,
            MediaCommand::JoinConference {
                room: room.clone(),
                leg: Leg::A,
            },
        );
        let mut enc = codec::encoder(CodecKind::Pcmu, 8000).expect("encoder");
        let tone = sine(1000.0, 8000, -12.0, 160 * 50);
        for (k, pcm) in tone.chunks(160).enumerate() {
            let now = t0 + FRAME * k as u32;
            let mut pkt = pcmu_packet(k as u16, pcm, &mut enc);
            c.on_rtp(now, Leg::A, &mut pkt);
            c.on_timeout(now);
            p.on_timeout(now);
        }
        let summary = stop_recording(&mut p, t0 + FRAME * 50);
        assert_eq!(summary.channels, 2);
        let samples = wav_samples(&summary.path);
        let right: Vec<i16> = samples.iter().skip(1).step_by(2).copied().collect();
        let left: Vec<i16> = samples.iter().step_by(2).copied().collect();
        let rate = summary.sample_rate as usize;
        let window = &right[rate * 2 / 5..rate * 9 / 10];
        let f = crate::media::analysis::dominant_frequency(window, summary.sample_rate)
            .expect("the consultation on the right");
        assert!((f - 1000.0).abs() < 10.0, "{f}");
        assert!(left.iter().all(|&x| x == 0), "the caller said nothing");
    }

    #[test]
    fn stop_recording_hands_the_recorder_back_and_a_later_recording_starts_afresh() {
        let t0 = Instant::now();
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = recorder_pool();
        let mut p = pipeline(t0, PCMU, PCMU);
        p.command(t0, MediaCommand::StopRecording);
        assert!(p.poll_stopped_recording().is_none(), "nothing to stop");
        let first = pool.start(caller_only(dir.path())).expect("first");
        let first_path = first.path().to_path_buf();
        p.command(t0, MediaCommand::StartRecording(first));
        for i in 0..10u32 {
            p.on_timeout(t0 + FRAME * i);
        }
        p.command(t0 + FRAME * 10, MediaCommand::StopRecording);
        let stopped = p.poll_stopped_recording().expect("handed back");
        assert!(p.poll_stopped_recording().is_none());
        assert!(
            p.clock.is_none(),
            "a relayed call stops ticking once not recording"
        );
        assert_eq!(stopped.frames(), 10);
        let summary = stopped.stop().wait_blocking().expect("summary");
        assert_eq!((summary.path.clone(), summary.frames), (first_path, 10));
        assert_eq!(summary.channels, 1);

        // A second recording, then a third replacing it (the second is handed back too).
        let second = pool.start(caller_only(dir.path())).expect("second");
        let second_path = second.path().to_path_buf();
        p.command(t0 + FRAME * 20, MediaCommand::StartRecording(second));
        for i in 20..25u32 {
            p.on_timeout(t0 + FRAME * i);
        }
        let third = pool.start(caller_only(dir.path())).expect("third");
        p.command(t0 + FRAME * 25, MediaCommand::StartRecording(third));
        let replaced = p
            .poll_stopped_recording()
            .expect("replaced one handed back");
        assert_eq!(replaced.path(), second_path);
        assert_eq!(replaced.frames(), 5);
        for i in 25..28u32 {
            p.on_timeout(t0 + FRAME * i);
        }
        let running = p.take_recorder().expect("the third runs");
        assert_eq!(running.frames(), 3);
        replaced.stop().wait_blocking().expect("second summary");
        running.stop().wait_blocking().expect("third summary");
    }

    #[test]
    fn with_only_the_caller_leg_up_digits_prompts_and_a_voicemail_work_and_the_relay_starts_later()
    {
        let t0 = Instant::now();
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = recorder_pool();
        let mut p = Pipeline::new(
            PipelineConfig {
                inband_dtmf: true,
                ..PipelineConfig::default()
            },
            t0,
        );
        p.command(
            t0,
            MediaCommand::SetMedia {
                leg: Leg::A,
                media: Some(PCMU),
            },
        );
        // A greeting with barge-in: played to the caller, frame by frame.
        p.command(
            t0,
            MediaCommand::Play {
                leg: Leg::A,
                id: 1,
                source: PlaySource::Prompt {
                    pcm: Arc::from(sine(500.0, 8000, -12.0, 16_000)),
                    rate: 8000,
                    looped: false,
                },
                barge_in: true,
            },
        );
        let mut sent = Vec::new();
        for i in 0..5u32 {
            p.on_timeout(t0 + FRAME * i);
            sent.extend(transmits(&mut p));
        }
        assert!(sent.iter().all(|t| t.leg == Leg::A));
        assert_eq!(
            sent.iter().filter(|t| !t.rtcp).count(),
            5,
            "the prompt plays"
        );
        // "4" by RFC 4733: reported, barges in, relayed nowhere.
        for i in 0..4u16 {
            let end = if i == 3 { 0x80 } else { 0 };
            let duration = 160 * (i + 1);
            let mut pkt = Vec::new();
            RtpHeader {
                marker: i == 0,
                payload_type: 101,
                sequence: 10 + i,
                timestamp: 8000,
                ssrc: Ssrc(7),
            }
            .write(
                &[4, end | 10, (duration >> 8) as u8, duration as u8],
                &mut pkt,
            );
            let now = t0 + FRAME * (5 + u32::from(i));
            assert_eq!(p.on_rtp(now, Leg::A, &mut pkt), RtpAction::Consume);
            p.on_timeout(now);
        }
        // "#" by SIP INFO.
        p.digit_from_info(t0 + FRAME * 9, Leg::A, Digit::Hash, DEFAULT_DIGIT);
        let events: Vec<_> = std::iter::from_fn(|| p.poll_event()).collect();
        assert_eq!(
            events,
            [
                MediaEvent::Digit {
                    leg: Leg::A,
                    digit: Digit::D4,
                    source: DigitSource::Rfc4733
                },
                MediaEvent::PlaybackFinished {
                    leg: Leg::A,
                    id: 1,
                    interrupted: true
                },
                MediaEvent::Digit {
                    leg: Leg::A,
                    digit: Digit::Hash,
                    source: DigitSource::SipInfo
                },
            ]
        );
        assert!(transmits(&mut p).iter().all(|t| t.leg == Leg::A));

        // A voicemail: the caller alone, in mono.
        let rec = pool.start(caller_only(dir.path())).expect("voicemail");
        p.command(t0 + FRAME * 10, MediaCommand::StartRecording(rec));
        let mut enc = codec::encoder(CodecKind::Pcmu, 8000).expect("encoder");
        let tone = sine(1000.0, 8000, -12.0, 160 * 60);
        for (k, pcm) in tone.chunks(160).enumerate() {
            let now = t0 + FRAME * (10 + k as u32);
            let mut pkt = pcmu_packet(k as u16, pcm, &mut enc);
            assert_eq!(p.on_rtp(now, Leg::A, &mut pkt), RtpAction::Consume);
            p.on_timeout(now);
        }
        let summary = stop_recording(&mut p, t0 + FRAME * 70);
        assert_eq!((summary.channels, summary.frames), (1, 60));
        let samples = wav_samples(&summary.path);
        let f = crate::media::analysis::dominant_frequency(&samples[160 * 20..], 8000)
            .expect("the caller's tone");
        assert!((f - 1000.0).abs() < 5.0, "{f}");

        // Later the IVR dials an agent: leg B gets its media and the relay starts both ways.
        p.command(
            t0 + FRAME * 80,
            MediaCommand::SetMedia {
                leg: Leg::B,
                media: Some(LegMedia {
                    payload_type: 0,
                    ..PCMU
                }),
            },
        );
        assert!(!p.is_transcoding());
        let now = t0 + FRAME * 81;
        let mut pkt = pcmu_packet(100, &tone[..160], &mut enc);
        assert_eq!(p.on_rtp(now, Leg::A, &mut pkt), RtpAction::Forward);
        let mut pkt = pcmu_packet(7, &tone[..160], &mut enc);
        assert_eq!(p.on_rtp(now, Leg::B, &mut pkt), RtpAction::Forward);
    }

    #[test]
    fn in_band_digits_are_detected_with_only_the_caller_leg_up() {
        let t0 = Instant::now();
        let mut p = Pipeline::new(
            PipelineConfig {
                inband_dtmf: true,
                ..PipelineConfig::default()
            },
            t0,
        );
        let plain = LegMedia {
            telephone_event: None,
            ..PCMU
        };
        p.command(
            t0,
            MediaCommand::SetMedia {
                leg: Leg::A,
                media: Some(plain),
            },
        );
        let mut pcm = vec![0i16; 800];
        pcm.extend(crate::media::dtmf::dual_tone(
            Digit::D2,
            8000,
            Duration::from_millis(100),
        ));
        pcm.resize(8000, 0);
        let frames: Vec<Vec<i16>> = pcm.chunks(160).map(<[i16]>::to_vec).collect();
        let mut enc = codec::encoder(CodecKind::Pcmu, 8000).expect("encoder");
        let events = feed_a(&mut p, t0, 0, &frames, &mut enc);
        let digits: Vec<_> = events
            .into_iter()
            .filter_map(|(_, e)| match e {
                MediaEvent::Digit { leg, digit, source } => Some((leg, digit, source)),
                _ => None,
            })
            .collect();
        assert_eq!(digits, [(Leg::A, Digit::D2, DigitSource::Inband)]);
    }

    #[test]
    fn late_and_skipped_frames_are_counted_in_the_report() {
        let t0 = Instant::now();
        let mut p = pipeline(t0, PCMU, PCMU);
        p.command(
            t0,
            MediaCommand::Play {
                leg: Leg::A,
                id: 1,
                source: PlaySource::Tone(ToneKind::Ringback),
                barge_in: false,
            },
        );
        for i in 0..10u32 {
            p.on_timeout(t0 + FRAME * i);
        }
        assert_eq!((p.report().frames_late, p.report().frames_skipped), (0, 0));
        // The task wakes 3 frames late (caught up), then a whole second late (skips).
        p.on_timeout(t0 + FRAME * 12);
        assert_eq!(p.report().frames_late, 2);
        assert_eq!(p.report().frames_skipped, 0);
        p.on_timeout(t0 + FRAME * 62);
        let r = p.report();
        assert_eq!(
            r.frames_late,
            2 + 4,
            "five frames back to back, four of them late"
        );
        assert_eq!(r.frames_skipped, 50 - 5);
    }
}
