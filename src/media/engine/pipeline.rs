//! The media pipeline of one call: what happens to every packet and every 20 ms frame.
//! SANS-IO: the driver ([`super::MediaSession`]) hands it datagrams, commands and the time,
//! and sends what [`Pipeline::poll_transmit`] returns.
//!
//! Per leg (A = the caller, B = the other party) the pipeline keeps an RTP session (RFC 3550:
//! statistics, RTCP, our own SSRC/sequence/timestamp), and, only while something needs the
//! audio, a jitter buffer, a decoder and an encoder.
//!
//! * **Relay without decoding** when both legs use the same codec: a packet is restamped into
//!   the other leg's stream (our SSRC, continuous sequence and timestamps, the other leg's
//!   payload type numbers) and sent at once.
//! * **Transcoding** when they do not: packets go through the jitter buffer; every frame tick
//!   decodes, resamples to the pipeline rate, resamples to the other codec's rate and encodes.
//! * **Taps**: while recording, every tick also decodes both directions (caller left, other
//!   party right) without touching the relayed packets.
//! * **Sources**: a prompt, a tone or music on hold played to a leg replaces what that leg
//!   would hear; DTMF sent to a leg goes as RFC 4733 events if the leg negotiated
//!   telephone-event, or as in-band tones otherwise.
//! * **DTMF in**: RFC 4733 events (any mode) and, for legs without telephone-event, in-band
//!   Goertzel detection while the audio is decoded. Digits received as events on one leg are
//!   passed to the other in the form it negotiated.
//! * **Conference**: a one-leg call joined to a room pushes what its party says and plays
//!   the room's mix (everyone but itself).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::media::codec::{self, CodecKind, Decoder, Encoder};
use crate::media::dtmf::{Digit, EventReceiver, EventSender};
use crate::media::dtmf_detect::DtmfDetector;
use crate::media::frame_clock::FrameClock;
use crate::media::jitter::{JitterBuffer, JitterConfig, Pop};
use crate::media::mixer::PartyId;
use crate::media::negotiate::LegMedia;
use crate::media::player::Playback;
use crate::media::recorder::Recorder;
use crate::media::relay::Leg;
use crate::media::resample::Resampler;
use crate::media::rtp::{self, LegStats, RtpSession, Ssrc};
use crate::media::tone::{ToneKind, ToneRegion, ToneSource};
use crate::media::{FRAME_MS, frame_len};

use super::conference::Room;

/// Frame period.
pub const FRAME: Duration = Duration::from_millis(FRAME_MS as u64);

/// What to play to a leg.
pub enum PlaySource {
    Tone(ToneKind),
    /// Mono PCM at the pipeline's rate (see [`Pipeline::rate`]); loaded off the media path.
    Prompt { pcm: Arc<[i16]>, rate: u32, looped: bool },
}

/// Commands from the call actor.
pub enum MediaCommand {
    /// The negotiated media of a leg (None: no media, e.g. before the answer).
    SetMedia { leg: Leg, media: Option<LegMedia> },
    /// Plays to the party on `leg`, replacing what it hears; `barge_in` stops it on a digit.
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
    /// Taps both directions into this recorder (caller left).
    StartRecording(Recorder),
    /// Pauses (silence is written) or resumes the recording.
    PauseRecording(bool),
    /// The party on `leg` is held by the other: it hears music on hold (if configured)
    /// instead of the other party.
    Hold { leg: Leg, held: bool },
    /// Joins the one-leg call to a conference room.
    JoinConference(Arc<Room>),
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
    /// A playback ended (finished, stopped, or interrupted by a digit).
    PlaybackFinished { leg: Leg, id: u64, interrupted: bool },
}

/// How a digit arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigitSource {
    Rfc4733,
    Inband,
    SipInfo,
}

/// A datagram to send.
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
#[derive(Clone)]
pub struct PipelineConfig {
    pub jitter: JitterConfig,
    pub tone_region: ToneRegion,
    /// Music on hold, mono PCM at 16 kHz (resampled per call); None plays silence.
    pub music_on_hold: Option<Arc<[i16]>>,
    /// Detect in-band DTMF on legs without telephone-event (costs a decode per frame).
    pub inband_dtmf: bool,
}

/// Report at the end of the call.
#[derive(Debug, Clone, Default)]
pub struct PipelineReport {
    pub legs: [Option<LegStats>; 2],
}

/// The pipeline of one call.
pub struct Pipeline {
    config: PipelineConfig,
    legs: [LegState; 2],
    /// Both legs' media known and different: decode, resample, encode.
    transcoding: bool,
    /// Internal rate: 16 kHz if a leg is wideband, else 8 kHz.
    rate: u32,
    recorder: Option<Recorder>,
    recording_paused: bool,
    room: Option<(Arc<Room>, PartyId)>,
    clock: Option<FrameClock>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<MediaEvent>,
    /// Scratch buffers reused every frame.
    scratch: Vec<i16>,
    encoded: Vec<u8>,
}

/// One leg's state.
struct LegState {
    leg: Leg,
    media: Option<LegMedia>,
    rtp: RtpSession,
    dtmf_in: EventReceiver,
    dtmf_out: EventSender,
    /// In-band digits being played to this party (no telephone-event).
    inband_out: VecDeque<(Digit, Duration)>,
    inband_tone: Option<ToneSource>,
    detector: Option<DtmfDetector>,
    jitter: Option<JitterBuffer>,
    decoder: Option<Box<dyn Decoder>>,
    encoder: Option<Box<dyn Encoder>>,
    /// codec rate → pipeline rate, and back.
    up: Option<Resampler>,
    down: Option<Resampler>,
    playing: Option<Playing>,
    held: bool,
    moh: Option<Playback>,
    /// What this party said during the current tick, at the pipeline rate.
    heard: Vec<i16>,
    /// Decoded samples not yet consumed (packets longer than one frame).
    pending: VecDeque<i16>,
    /// We sent something ourselves since the last forwarded packet (marker on resume).
    generated: bool,
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
            recorder: None,
            recording_paused: false,
            room: None,
            clock: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            scratch: Vec::with_capacity(frame_len(48_000)),
            encoded: Vec::with_capacity(512),
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
            } => {
                let rate = self.rate;
                let region = self.config.tone_region;
                let source = match source {
                    PlaySource::Tone(kind) => Source::Tone(ToneSource::new(kind, region, rate)),
                    PlaySource::Prompt { pcm, rate: r, looped } => {
                        Source::Prompt(Playback::new(resample_whole(&pcm, r, rate), looped))
                    }
                };
                let l = &mut self.legs[leg.index()];
                if let Some(old) = l.playing.replace(Playing {
                    id,
                    barge_in,
                    source,
                }) {
                    self.events.push_back(MediaEvent::PlaybackFinished {
                        leg,
                        id: old.id,
                        interrupted: true,
                    });
                }
            }
            MediaCommand::StopPlayback { leg } => self.stop_playback(leg, true),
            MediaCommand::SendDigit {
                leg,
                digit,
                duration,
            } => self.send_digit(leg, digit, duration),
            MediaCommand::StartRecording(recorder) => {
                self.recorder = Some(recorder);
                self.recording_paused = false;
            }
            MediaCommand::PauseRecording(paused) => {
                self.recording_paused = paused;
                if let Some(r) = &self.recorder {
                    if paused {
                        r.pause();
                    } else {
                        r.resume();
                    }
                }
            }
            MediaCommand::Hold { leg, held } => {
                let rate = self.rate;
                let moh = self.config.music_on_hold.clone();
                let l = &mut self.legs[leg.index()];
                l.held = held;
                l.moh = match (held, moh) {
                    (true, Some(pcm)) => Some(Playback::new(resample_whole(&pcm, 16_000, rate), true)),
                    _ => None,
                };
            }
            MediaCommand::JoinConference(room) => {
                let id = room.join();
                self.room = Some((room, id));
            }
        }
        self.update_clock(now);
    }

    /// Takes the recorder out (to stop it off the media path).
    pub fn take_recorder(&mut self) -> Option<Recorder> {
        let r = self.recorder.take();
        self.update_clock_keep();
        r
    }

    /// An RTP packet received on `leg`. `buf` may be restamped in place for forwarding.
    pub fn on_rtp(&mut self, now: Instant, leg: Leg, buf: &mut [u8]) -> RtpAction {
        let Ok(packet) = rtp::parse(buf) else {
            return RtpAction::Consume;
        };
        let (pt, seq, ts, marker) = (
            packet.payload_type(),
            packet.sequence(),
            packet.timestamp(),
            packet.marker(),
        );
        let this = &mut self.legs[leg.index()];
        this.rtp.on_rtp(now, &packet);
        let Some(media) = this.media else {
            return RtpAction::Consume;
        };
        if Some(pt) == media.telephone_event {
            if let Some(ev) = this.dtmf_in.on_packet(now, ts, marker, packet.payload()) {
                self.on_digit_in(leg, ev.digit, DigitSource::Rfc4733);
            }
            // Events cross as events only when the other leg negotiated them too and the
            // packet can be relayed as is.
            return self.forward_event(leg, buf);
        }
        if pt != media.payload_type {
            // Comfort noise or an unexpected codec: not relayed (the far end may not know it).
            return RtpAction::Consume;
        }
        let needs_audio = self.needs_audio(leg);
        let this = &mut self.legs[leg.index()];
        if needs_audio && let Some(j) = &mut this.jitter {
            j.push(now, seq, ts, pt, marker, packet.payload());
        }
        self.forward_voice(leg, buf)
    }

    /// An RTCP packet received on `leg`: statistics only, never relayed (each leg is its own
    /// RTP session).
    pub fn on_rtcp(&mut self, now: Instant, leg: Leg, buf: &[u8]) {
        self.legs[leg.index()].rtp.on_rtcp(now, buf);
    }

    /// When [`Pipeline::on_timeout`] wants to run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let rtcp = self
            .legs
            .iter()
            .filter(|l| l.media.is_some())
            .map(|l| l.rtp.poll_timeout())
            .min();
        let tick = self.clock.as_ref().map(FrameClock::next_deadline);
        match (rtcp, tick) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs the frame ticks and RTCP reports that are due.
    pub fn on_timeout(&mut self, now: Instant) {
        if let Some(clock) = &mut self.clock {
            let due = clock.tick(now).frames();
            for _ in 0..due {
                self.tick(now);
            }
        }
        for l in &mut self.legs {
            if l.media.is_none() {
                continue;
            }
            if let Some(report) = l.rtp.poll_rtcp(now) {
                self.transmits.push_back(Transmit {
                    leg: l.leg,
                    rtcp: true,
                    bytes: report,
                });
            }
        }
        self.update_clock(now);
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the call actor.
    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        self.events.pop_front()
    }

    /// A digit that arrived by SIP INFO on `leg`: reported, and passed to the other leg.
    pub fn digit_from_info(&mut self, leg: Leg, digit: Digit, duration: Duration) {
        self.events.push_back(MediaEvent::Digit {
            leg,
            digit,
            source: DigitSource::SipInfo,
        });
        self.barge_in(leg);
        if self.legs[leg.other().index()].media.is_some() && self.room.is_none() {
            self.send_digit(leg.other(), digit, duration);
        }
    }

    /// Per-leg statistics now.
    pub fn report(&self) -> PipelineReport {
        PipelineReport {
            legs: [0, 1].map(|i| self.legs[i].media.map(|_| self.legs[i].rtp.stats())),
        }
    }

    /// Leaves the conference, if any.
    pub fn leave_conference(&mut self) {
        if let Some((room, id)) = self.room.take() {
            room.leave(id);
        }
    }

    fn needs_audio(&self, leg: Leg) -> bool {
        let l = &self.legs[leg.index()];
        self.recorder.is_some()
            || self.transcoding
            || self.room.is_some()
            || (self.config.inband_dtmf
                && l.media.is_some_and(|m| m.telephone_event.is_none()))
    }

    fn needs_tick(&self) -> bool {
        self.recorder.is_some()
            || self.transcoding
            || self.room.is_some()
            || self.legs.iter().any(|l| {
                l.playing.is_some()
                    || l.moh.is_some()
                    || l.dtmf_out.is_active()
                    || !l.inband_out.is_empty()
                    || l.inband_tone.is_some()
                    || (self.config.inband_dtmf
                        && l.media.is_some_and(|m| m.telephone_event.is_none()))
            })
    }

    fn update_clock(&mut self, now: Instant) {
        if self.needs_tick() {
            if self.clock.is_none() {
                self.clock = Some(FrameClock::new(now + FRAME, FRAME));
            }
        } else {
            self.clock = None;
        }
    }

    fn update_clock_keep(&mut self) {
        if !self.needs_tick() {
            self.clock = None;
        }
    }

    /// Rebuilds codecs, resamplers and the transcoding decision after a media change.
    fn reconfigure(&mut self) {
        let (a, b) = (self.legs[0].media, self.legs[1].media);
        self.transcoding = matches!((a, b), (Some(a), Some(b)) if a.codec != b.codec);
        let wide = |m: Option<LegMedia>| m.is_some_and(|m| m.codec.native_rate() > 8000);
        self.rate = if wide(a) || wide(b) { 16_000 } else { 8000 };
        let rate = self.rate;
        let jitter = self.config.jitter.clone();
        let inband = self.config.inband_dtmf;
        for l in &mut self.legs {
            l.configure(rate, &jitter, inband);
        }
    }

    /// Restamps a voice packet from `leg` into the other leg's stream, if it is relayed as is.
    fn forward_voice(&mut self, leg: Leg, buf: &mut [u8]) -> RtpAction {
        if self.transcoding || self.room.is_some() {
            return RtpAction::Consume;
        }
        let out = &mut self.legs[leg.other().index()];
        let Some(media) = out.media else {
            return RtpAction::Consume;
        };
        if out.is_generating() || out.held {
            return RtpAction::Consume;
        }
        let marker = std::mem::take(&mut out.generated);
        out.rtp.rewrite(buf, media.payload_type, marker);
        RtpAction::Forward
    }

    fn forward_event(&mut self, leg: Leg, buf: &mut [u8]) -> RtpAction {
        if self.room.is_some() {
            return RtpAction::Consume;
        }
        let out = &mut self.legs[leg.other().index()];
        let Some(te) = out.media.and_then(|m| m.telephone_event) else {
            // The digit was reported; on_digit_in queued it in-band for that leg.
            return RtpAction::Consume;
        };
        if self.transcoding && out.media.map(|m| m.codec.rtp_clock_rate()) != Some(8000) {
            // Event timestamps are in the voice clock; a different clock means re-sending
            // them as our own events (done by on_digit_in).
            return RtpAction::Consume;
        }
        if out.is_generating() || out.held {
            return RtpAction::Consume;
        }
        out.rtp.rewrite(buf, te, false);
        RtpAction::Forward
    }

    fn on_digit_in(&mut self, leg: Leg, digit: Digit, source: DigitSource) {
        self.events.push_back(MediaEvent::Digit { leg, digit, source });
        self.barge_in(leg);
        if self.room.is_some() {
            return;
        }
        let other = &self.legs[leg.other().index()];
        let Some(media) = other.media else {
            return;
        };
        let relayed_as_event = source == DigitSource::Rfc4733
            && media.telephone_event.is_some()
            && (!self.transcoding || media.codec.rtp_clock_rate() == 8000);
        if !relayed_as_event {
            self.send_digit(leg.other(), digit, Duration::from_millis(100));
        }
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
        let Some(media) = l.media else {
            return;
        };
        if media.telephone_event.is_some() {
            l.dtmf_out.queue(digit, duration);
        } else {
            l.inband_out.push_back((digit, duration));
        }
        let now = self.clock.as_ref().map(FrameClock::next_deadline);
        if self.clock.is_none()
            && let Some(now) = now.or(Some(Instant::now()))
        {
            // The driver calls command/update paths with the real time; starting the clock
            // one frame from the last known deadline is close enough for a digit.
            self.update_clock(now);
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
            if needs {
                l.decode_frame(now, n);
                if let Some(d) = &mut l.detector
                    && let Some(digit) = d.process(&l.heard)
                {
                    let leg = l.leg;
                    self.on_digit_in(leg, digit, DigitSource::Inband);
                }
            }
            let l = &mut self.legs[i];
            l.heard.resize(n, 0);
        }
        // 2. The recording: caller left, other party right.
        if let Some(r) = &self.recorder {
            let right: &[i16] = match &self.room {
                Some((room, id)) => {
                    room.output(*id, &mut self.scratch, n);
                    &self.scratch
                }
                None => &self.legs[1].heard,
            };
            r.write_frame(&self.legs[0].heard, right);
        }
        // 3. The conference.
        if let Some((room, id)) = &self.room {
            room.exchange(now, *id, &self.legs[0].heard, &mut self.scratch, n);
        }
        // 4. What each party hears.
        for i in 0..2 {
            self.output_frame(i, n);
        }
    }

    /// Builds and sends what the party on leg `i` hears this frame, if we generate it.
    fn output_frame(&mut self, i: usize, n: usize) {
        let other_heard = std::mem::take(&mut self.legs[1 - i].heard);
        let transcoding = self.transcoding;
        let in_room = self.room.is_some() && i == 0;
        let l = &mut self.legs[i];
        let Some(media) = l.media else {
            self.legs[1 - i].heard = other_heard;
            return;
        };
        // RFC 4733 events take the stream while they last.
        if let Some(ev) = l.dtmf_out.poll_packet() {
            let header = l
                .rtp
                .event_header(media.telephone_event.unwrap_or(101), ev.marker, ev.start);
            self.encoded.clear();
            header.write(&ev.payload, &mut self.encoded);
            self.transmits.push_back(Transmit {
                leg: l.leg,
                rtcp: false,
                bytes: self.encoded.clone(),
            });
            l.rtp.advance(media.codec.rtp_timestamp_step());
            l.generated = true;
            self.legs[1 - i].heard = other_heard;
            return;
        }
        let mut frame = std::mem::take(&mut self.scratch);
        frame.clear();
        frame.resize(n, 0);
        let mut generate = false;
        if let Some(p) = &mut l.playing {
            generate = true;
            let more = match &mut p.source {
                Source::Tone(t) => t.next_frame(&mut frame),
                Source::Prompt(pb) => pb.next_frame(&mut frame),
            };
            if !more {
                let id = p.id;
                l.playing = None;
                self.events.push_back(MediaEvent::PlaybackFinished {
                    leg: l.leg,
                    id,
                    interrupted: false,
                });
            }
        } else if l.held {
            generate = true;
            if let Some(m) = &mut l.moh {
                m.next_frame(&mut frame);
            }
        } else if in_room {
            generate = true;
            frame.copy_from_slice(&self.scratch_room()[..n.min(self.scratch_room().len())]);
        } else if transcoding {
            generate = true;
            frame.copy_from_slice(&other_heard[..n]);
        }
        let l = &mut self.legs[i];
        if l.inband_tone.is_none()
            && let Some((digit, duration)) = l.inband_out.pop_front()
        {
            l.inband_tone = Some(ToneSource::dtmf(digit, duration, self.rate));
        }
        if let Some(t) = &mut l.inband_tone {
            generate = true;
            let mut tone = vec![0i16; n];
            let more = t.next_frame(&mut tone);
            for (s, t) in frame.iter_mut().zip(tone) {
                *s = t;
            }
            if !more {
                l.inband_tone = None;
            }
        }
        if generate {
            l.send_frame(&frame, &mut self.encoded, &mut self.transmits);
        }
        self.scratch = frame;
        self.legs[1 - i].heard = other_heard;
    }

    fn scratch_room(&self) -> &[i16] {
        &self.scratch
    }
}

impl LegState {
    fn new(leg: Leg, now: Instant) -> Self {
        Self {
            leg,
            media: None,
            rtp: RtpSession::new(Ssrc(rand::random()), now),
            dtmf_in: EventReceiver::new(),
            dtmf_out: EventSender::new(),
            inband_out: VecDeque::new(),
            inband_tone: None,
            detector: None,
            jitter: None,
            decoder: None,
            encoder: None,
            up: None,
            down: None,
            playing: None,
            held: false,
            moh: None,
            heard: Vec::with_capacity(frame_len(48_000)),
            pending: VecDeque::new(),
            generated: false,
        }
    }

    fn set_media(&mut self, media: Option<LegMedia>) {
        if self.media.map(|m| m.codec) != media.map(|m| m.codec) {
            self.decoder = None;
            self.encoder = None;
            self.jitter = None;
        }
        self.media = media;
        if let Some(m) = media {
            self.rtp.set_clock_rate(m.codec.rtp_clock_rate());
        }
    }

    fn configure(&mut self, rate: u32, jitter: &JitterConfig, inband: bool) {
        let Some(m) = self.media else {
            return;
        };
        let codec_rate = codec_pcm_rate(m.codec, rate);
        if self.decoder.as_ref().is_none_or(|d| d.pcm_rate() != codec_rate) {
            self.decoder = codec::decoder(m.codec, codec_rate).ok();
            self.encoder = codec::encoder(m.codec, codec_rate).ok();
        }
        self.up = (codec_rate != rate)
            .then(|| Resampler::new(codec_rate, rate).ok())
            .flatten();
        self.down = (codec_rate != rate)
            .then(|| Resampler::new(rate, codec_rate).ok())
            .flatten();
        if self.jitter.is_none() {
            self.jitter = Some(JitterBuffer::new(
                jitter.clone(),
                m.codec.rtp_clock_rate(),
                m.codec.rtp_timestamp_step(),
            ));
        }
        self.detector = (inband && m.telephone_event.is_none())
            .then(|| DtmfDetector::new(rate.min(16_000)));
        self.pending.clear();
    }

    /// A frame generated by us is being sent (or will be) instead of relayed packets.
    fn is_generating(&self) -> bool {
        self.playing.is_some()
            || self.dtmf_out.is_active()
            || self.inband_tone.is_some()
            || !self.inband_out.is_empty()
    }

    /// Pulls one frame of this party's audio at the pipeline rate into `heard`.
    fn decode_frame(&mut self, now: Instant, n: usize) {
        let (Some(j), Some(dec)) = (&mut self.jitter, &mut self.decoder) else {
            return;
        };
        let mut pcm: Vec<i16> = Vec::new();
        while self.pending.len() < n {
            pcm.clear();
            match j.pop(now) {
                Pop::Packet { payload, .. } => {
                    if dec.decode(payload, &mut pcm).is_err() {
                        dec.conceal(frame_len(dec.pcm_rate()), &mut pcm);
                    }
                }
                Pop::Missing => dec.conceal(frame_len(dec.pcm_rate()), &mut pcm),
                Pop::Empty => break,
            }
            match &mut self.up {
                Some(up) => {
                    let mut out = Vec::with_capacity(n);
                    up.process(&pcm, &mut out);
                    self.pending.extend(out);
                }
                None => self.pending.extend(pcm.iter().copied()),
            }
        }
        let take = n.min(self.pending.len());
        self.heard.extend(self.pending.drain(..take));
    }

    /// Encodes one frame at the pipeline rate and queues it for this leg.
    fn send_frame(&mut self, frame: &[i16], encoded: &mut Vec<u8>, out: &mut VecDeque<Transmit>) {
        let (Some(media), Some(enc)) = (self.media, &mut self.encoder) else {
            return;
        };
        let mut pcm;
        let input: &[i16] = match &mut self.down {
            Some(down) => {
                pcm = Vec::with_capacity(frame_len(enc.pcm_rate()));
                down.process(frame, &mut pcm);
                pcm.resize(frame_len(enc.pcm_rate()), 0);
                &pcm
            }
            None => frame,
        };
        let mut payload = Vec::with_capacity(256);
        if enc.encode(input, &mut payload).is_err() {
            return;
        }
        let marker = !self.generated;
        let header = self.rtp.next_header(
            media.payload_type,
            marker,
            media.codec.rtp_timestamp_step(),
        );
        encoded.clear();
        header.write(&payload, encoded);
        self.generated = true;
        out.push_back(Transmit {
            leg: self.leg,
            rtcp: false,
            bytes: encoded.clone(),
        });
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

/// Resamples a whole prompt once when it is queued.
fn resample_whole(pcm: &[i16], from: u32, to: u32) -> Arc<[i16]> {
    if from == to {
        return Arc::from(pcm);
    }
    match Resampler::new(from, to) {
        Ok(mut r) => {
            let mut out = Vec::with_capacity(pcm.len() * to as usize / from as usize + 64);
            r.process(pcm, &mut out);
            Arc::from(out)
        }
        Err(_) => Arc::from(pcm),
    }
}

impl Leg {
    pub(crate) fn index(self) -> usize {
        match self {
            Leg::A => 0,
            Leg::B => 1,
        }
    }
}
