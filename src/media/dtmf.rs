//! DTMF digits on the wire: RFC 4733 telephone events, SIP INFO bodies and in-band tones.
//!
//! This module owns (SANS-IO / PURE, no clock, no sockets):
//!
//! * [`Digit`]: the sixteen DTMF keys, their characters, their RFC 4733 event codes (§3.2,
//!   table 7: `0`–`9` = 0–9, `*` = 10, `#` = 11, `A`–`D` = 12–15; flash (16) is ignored) and
//!   their row/column frequencies (ITU-T Q.23).
//! * [`EventReceiver`]: the RFC 4733 §2.5.2 receiver. It reports each digit **once, at its
//!   end** (the end packet with the E bit, §2.5.1.4; or a timeout when every end packet was
//!   lost; or the start of the next event), so the duration is always known. It absorbs the
//!   redundant end packets (§2.5.1.4), continuation packets with growing duration (§2.5.1.3),
//!   lost start packets, reordering and late packets of finished events, and tells a new
//!   event with the same digit by its RTP timestamp (§2.5.2.2).
//! * [`EventSender`]: the RFC 4733 §2.5.1 sender: one start packet with the marker bit,
//!   continuation packets every 20 ms with growing duration, the final packet with the E bit
//!   sent three times (§2.5.1.4), all with the event's start timestamp; queued digits follow
//!   one another with a gap.
//! * [`parse_info`] and [`info_body`]: SIP INFO digits (`application/dtmf-relay`, the de
//!   facto Cisco format, and `application/dtmf`).
//! * [`ToneGenerator`]: in-band dual-tone PCM for trunks without telephone-event.
//!
//! In-band *detection* lives in [`crate::media::dtmf_detect`].

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::media::FRAME_MS;

/// What can go wrong with a DTMF digit from outside.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DtmfError {
    /// A SIP INFO with a content type that carries no digit we understand.
    #[error("unsupported DTMF content type {0:?}")]
    UnsupportedContentType(String),
    /// The body is not text.
    #[error("DTMF body is not UTF-8")]
    NotText,
    /// An `application/dtmf-relay` body without a `Signal=` line.
    #[error("DTMF body has no Signal")]
    MissingSignal,
    /// The signal is neither a DTMF key nor an event code 0–15.
    #[error("invalid DTMF signal {0:?}")]
    InvalidSignal(String),
    /// The sender's queue is full.
    #[error("DTMF send queue is full")]
    QueueFull,
}

/// One DTMF key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Digit {
    /// `0`
    D0,
    /// `1`
    D1,
    /// `2`
    D2,
    /// `3`
    D3,
    /// `4`
    D4,
    /// `5`
    D5,
    /// `6`
    D6,
    /// `7`
    D7,
    /// `8`
    D8,
    /// `9`
    D9,
    /// `*`
    Star,
    /// `#`
    Hash,
    /// `A`
    A,
    /// `B`
    B,
    /// `C`
    C,
    /// `D`
    D,
}

/// A digit reported by the [`EventReceiver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigitEvent {
    /// The key.
    pub digit: Digit,
    /// How long the key was held: from the end packet, or the last duration seen when the
    /// end was lost (then a lower bound).
    pub duration: Duration,
    /// The event's RTP timestamp (its start).
    pub timestamp: u32,
    /// `true` when an end packet (E bit) was seen; `false` when the event was closed by the
    /// timeout or by the start of a newer event.
    pub end_seen: bool,
}

/// The RFC 4733 receiver for one RTP stream (one SSRC).
///
/// Feed it every packet of the negotiated telephone-event payload type with
/// [`on_packet`](Self::on_packet); arm a timer at [`poll_timeout`](Self::poll_timeout) and call
/// [`on_timeout`](Self::on_timeout) when it fires. Each digit is reported exactly once, when
/// it ends. Both calls return at most one digit; in the rare case that one packet ends two
/// events (the previous one lost its end, the new one is seen only by its end packet), the
/// second waits in a queue: the next call returns it, or drain [`poll_event`](Self::poll_event).
#[derive(Debug)]
pub struct EventReceiver {
    clock_rate: u32,
    end_timeout: Duration,
    current: Option<Current>,
    /// Timestamp of the last reported event: its late packets are absorbed.
    last_done: Option<u32>,
    ready: VecDeque<DigitEvent>,
}

#[derive(Debug, Clone, Copy)]
struct Current {
    timestamp: u32,
    digit: Digit,
    duration: u32,
    last_seen: Instant,
}

/// One RFC 4733 packet to send, from [`EventSender::poll_packet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPacket {
    /// The telephone-event payload type given to [`EventSender::new`].
    pub payload_type: u8,
    /// The RTP marker bit: set on the first packet of an event only (RFC 4733 §2.5.1.2).
    pub marker: bool,
    /// How far (in RTP timestamp units) the current tick is past the event's start; the
    /// packet's RTP timestamp is `frame_timestamp - since_start`, see
    /// [`rtp_timestamp`](Self::rtp_timestamp).
    pub since_start: u32,
    /// The four-byte RFC 4733 §2.3 payload: event, E|R|volume, duration (big-endian).
    pub payload: [u8; 4],
}

/// The RFC 4733 sender for one RTP stream.
///
/// Driver contract: on every 20 ms frame tick call [`poll_packet`](Self::poll_packet)
/// exactly once. If it yields a packet, send that packet *instead of* the voice frame of
/// this tick (same SSRC, next sequence number, payload type `packet.payload_type`, marker
/// `packet.marker`) with RTP timestamp `packet.rtp_timestamp(ts)`, where `ts` is the
/// timestamp the voice frame of this tick would have had (the driver's media timestamp keeps
/// advancing by one frame per tick, digit or not). All packets of one event then carry the
/// timestamp of the tick that started it. If it yields `None`, send voice as usual.
/// [`is_active`](Self::is_active) is `true` from an event's start packet to its last end
/// retransmission, for drivers that want to mute the voice path (e.g. the in-band tones of
/// the same key) in the meantime.
#[derive(Debug)]
pub struct EventSender {
    payload_type: u8,
    /// Timestamp units per 20 ms frame.
    frame_units: u32,
    clock_rate: u32,
    gap_ticks: u32,
    queue: VecDeque<(Digit, u32)>,
    state: SendState,
}

#[derive(Debug, Clone, Copy)]
enum SendState {
    Idle,
    /// Sending `digit`; `tick` ticks already sent; `total` duration in units.
    Sending {
        digit: Digit,
        tick: u32,
        total: u32,
    },
    /// End packet sent `sent` times so far (1..3).
    Ending {
        digit: Digit,
        tick: u32,
        total: u32,
        sent: u8,
    },
    /// Silent ticks left before the next digit.
    Gap {
        left: u32,
    },
}

/// In-band DTMF: the dual tone of one digit as PCM, frame by frame.
#[derive(Debug, Clone)]
pub struct ToneGenerator {
    low_step: f32,
    high_step: f32,
    low_phase: f32,
    high_phase: f32,
    amplitude: f32,
    left: usize,
}

// ---------------------------------------------------------------------------------------

const DIGITS: [Digit; 16] = [
    Digit::D0,
    Digit::D1,
    Digit::D2,
    Digit::D3,
    Digit::D4,
    Digit::D5,
    Digit::D6,
    Digit::D7,
    Digit::D8,
    Digit::D9,
    Digit::Star,
    Digit::Hash,
    Digit::A,
    Digit::B,
    Digit::C,
    Digit::D,
];

/// The low-group (row) frequencies in Hz, ITU-T Q.23.
pub const ROW_HZ: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
/// The high-group (column) frequencies in Hz, ITU-T Q.23.
pub const COL_HZ: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];

/// Keys by row and column, as on the keypad.
const KEYPAD: [[Digit; 4]; 4] = [
    [Digit::D1, Digit::D2, Digit::D3, Digit::A],
    [Digit::D4, Digit::D5, Digit::D6, Digit::B],
    [Digit::D7, Digit::D8, Digit::D9, Digit::C],
    [Digit::Star, Digit::D0, Digit::Hash, Digit::D],
];

impl Digit {
    /// All sixteen keys in event-code order.
    pub const ALL: [Digit; 16] = DIGITS;

    /// The key for a character: `0`–`9`, `*`, `#`, `A`–`D` (either case).
    pub fn from_char(c: char) -> Option<Digit> {
        match c {
            '0'..='9' => Self::from_event(c as u8 - b'0'),
            '*' => Some(Digit::Star),
            '#' => Some(Digit::Hash),
            'A'..='D' => Self::from_event(c as u8 - b'A' + 12),
            'a'..='d' => Self::from_event(c as u8 - b'a' + 12),
            _ => None,
        }
    }

    /// The key's character (`A`–`D` upper case).
    pub fn as_char(self) -> char {
        b"0123456789*#ABCD"[self.event_code() as usize] as char
    }

    /// The key for an RFC 4733 event code (0–15); `None` for flash (16) and anything else.
    pub fn from_event(code: u8) -> Option<Digit> {
        DIGITS.get(code as usize).copied()
    }

    /// The RFC 4733 event code (0–15).
    pub fn event_code(self) -> u8 {
        self as u8
    }

    /// Row (0–3) and column (0–3) on the keypad.
    pub fn position(self) -> (usize, usize) {
        // Indexed by event code: 0 1 2 3 4 5 6 7 8 9 * # A B C D.
        const POSITION: [(u8, u8); 16] = [
            (3, 1),
            (0, 0),
            (0, 1),
            (0, 2),
            (1, 0),
            (1, 1),
            (1, 2),
            (2, 0),
            (2, 1),
            (2, 2),
            (3, 0),
            (3, 2),
            (0, 3),
            (1, 3),
            (2, 3),
            (3, 3),
        ];
        let (r, c) = POSITION[self as usize];
        (r as usize, c as usize)
    }

    /// The key at a keypad row and column (each 0–3).
    pub fn at(row: usize, col: usize) -> Option<Digit> {
        KEYPAD.get(row)?.get(col).copied()
    }

    /// The (low, high) tone frequencies in Hz.
    pub fn frequencies(self) -> (f32, f32) {
        let (r, c) = self.position();
        (ROW_HZ[r], COL_HZ[c])
    }
}

impl fmt::Display for Digit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_char())
    }
}

/// How long after the last packet of an unfinished event it is closed anyway. RFC 4733
/// §2.5.1.3 has senders refresh at least every 50 ms; this allows several lost packets.
pub const DEFAULT_END_TIMEOUT: Duration = Duration::from_millis(300);

/// Packets whose timestamp is at most this many seconds (in clock units) before the last
/// finished event are late packets of old events, not new ones.
const STALE_WINDOW_S: u32 = 8;

impl EventReceiver {
    /// A receiver for a telephone-event stream at `clock_rate` Hz (8000 usually; the rate of
    /// the `telephone-event/<rate>` rtpmap).
    pub fn new(clock_rate: u32) -> Self {
        Self {
            clock_rate: clock_rate.max(1),
            end_timeout: DEFAULT_END_TIMEOUT,
            current: None,
            last_done: None,
            ready: VecDeque::with_capacity(2),
        }
    }

    /// Changes how long an event without an end packet lives after its last packet.
    pub fn with_end_timeout(mut self, timeout: Duration) -> Self {
        self.end_timeout = timeout;
        self
    }

    /// Forgets all state, e.g. when the stream's SSRC changes. An unfinished event is lost.
    pub fn reset(&mut self) {
        self.current = None;
        self.last_done = None;
        self.ready.clear();
    }

    /// One telephone-event RTP packet: its timestamp, marker bit and payload. Malformed
    /// payloads (shorter than 4 bytes, events other than 0–15) are ignored.
    pub fn on_packet(
        &mut self,
        now: Instant,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
    ) -> Option<DigitEvent> {
        // The marker only says "first packet"; the timestamp tells events apart (§2.5.2.2),
        // which also covers a lost start packet.
        let _ = marker;
        self.handle(now, timestamp, payload);
        self.ready.pop_front()
    }

    fn handle(&mut self, now: Instant, timestamp: u32, payload: &[u8]) {
        let [event, flags, d0, d1, ..] = *payload else {
            return;
        };
        let Some(digit) = Digit::from_event(event) else {
            return;
        };
        let end = flags & 0x80 != 0;
        let duration = u32::from(u16::from_be_bytes([d0, d1]));

        if let Some(done) = self.last_done
            && self.is_stale(timestamp, done)
        {
            return; // a retransmitted end or late packet of a reported event
        }
        if let Some(cur) = self.current
            && cur.timestamp != timestamp
        {
            if self.is_stale(timestamp, cur.timestamp) {
                return; // reordered packet of an older event
            }
            // A newer event started before this one's end arrived.
            self.finish(cur, false);
        }
        let mut cur = match self.current {
            Some(cur) => cur,
            None => Current {
                timestamp,
                digit,
                duration: 0,
                last_seen: now,
            },
        };
        cur.duration = cur.duration.max(duration);
        cur.last_seen = now;
        if end {
            self.finish(cur, true);
        } else {
            self.current = Some(cur);
        }
    }

    /// When [`on_timeout`](Self::on_timeout) should be called: the deadline of an event whose
    /// end has not arrived yet.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.current.map(|c| c.last_seen + self.end_timeout)
    }

    /// Closes an event whose end never arrived, reporting it with the last duration seen.
    pub fn on_timeout(&mut self, now: Instant) -> Option<DigitEvent> {
        if let Some(cur) = self.current
            && now >= cur.last_seen + self.end_timeout
        {
            self.finish(cur, false);
        }
        self.ready.pop_front()
    }

    /// A digit still waiting to be handed out (see the type's documentation).
    pub fn poll_event(&mut self) -> Option<DigitEvent> {
        self.ready.pop_front()
    }

    /// The digit of the event in progress, if any (already started, not yet reported).
    pub fn current_digit(&self) -> Option<Digit> {
        self.current.map(|c| c.digit)
    }

    fn finish(&mut self, cur: Current, end_seen: bool) {
        self.current = None;
        self.last_done = Some(cur.timestamp);
        let micros = u64::from(cur.duration) * 1_000_000 / u64::from(self.clock_rate);
        self.ready.push_back(DigitEvent {
            digit: cur.digit,
            duration: Duration::from_micros(micros),
            timestamp: cur.timestamp,
            end_seen,
        });
    }

    /// `timestamp` is `reference` or shortly before it (RTP serial arithmetic).
    fn is_stale(&self, timestamp: u32, reference: u32) -> bool {
        reference.wrapping_sub(timestamp) <= STALE_WINDOW_S.saturating_mul(self.clock_rate)
    }
}

/// The default length of a sent digit.
pub const DEFAULT_DIGIT_DURATION: Duration = Duration::from_millis(100);
/// The shortest digit we send (ITU-T Q.24 receivers need 40 ms).
pub const MIN_DIGIT_DURATION: Duration = Duration::from_millis(40);
/// The longest digit we send in one event.
pub const MAX_DIGIT_DURATION: Duration = Duration::from_secs(5);
/// Silence after a digit's last end retransmission before the next digit starts. The two
/// retransmissions already take 40 ms, so tone-to-tone the gap is 80 ms.
pub const DEFAULT_INTER_DIGIT_GAP: Duration = Duration::from_millis(40);
/// The volume field of sent events: −10 dBm0 (RFC 4733 §2.3.4).
pub const SEND_VOLUME: u8 = 10;
/// Most digits waiting in a sender's queue.
pub const SEND_QUEUE_LIMIT: usize = 64;

impl EventSender {
    /// A sender for the negotiated telephone-event `payload_type` at `clock_rate` Hz.
    pub fn new(payload_type: u8, clock_rate: u32) -> Self {
        let clock_rate = clock_rate.max(50);
        let mut sender = Self {
            payload_type: payload_type & 0x7f,
            frame_units: clock_rate * FRAME_MS / 1000,
            clock_rate,
            gap_ticks: 0,
            queue: VecDeque::with_capacity(8),
            state: SendState::Idle,
        };
        sender.set_inter_digit_gap(DEFAULT_INTER_DIGIT_GAP);
        sender
    }

    /// Changes the silence between digits (rounded up to whole frames, at least 40 ms).
    pub fn set_inter_digit_gap(&mut self, gap: Duration) {
        let gap = gap.max(Duration::from_millis(40));
        self.gap_ticks = (gap.as_millis() as u32).div_ceil(FRAME_MS);
    }

    /// Queues a digit held for `duration` (clamped to 40 ms – 5 s).
    pub fn queue(&mut self, digit: Digit, duration: Duration) -> Result<(), DtmfError> {
        if self.queue.len() >= SEND_QUEUE_LIMIT {
            return Err(DtmfError::QueueFull);
        }
        let duration = duration.clamp(MIN_DIGIT_DURATION, MAX_DIGIT_DURATION);
        let units = (duration.as_micros() * u128::from(self.clock_rate) / 1_000_000) as u32;
        self.queue
            .push_back((digit, units.min(u32::from(u16::MAX))));
        Ok(())
    }

    /// Queues every key of `digits` (e.g. `"123#"`) with the same duration. Nothing is queued
    /// when a character is not a key or the queue would overflow.
    pub fn queue_str(&mut self, digits: &str, duration: Duration) -> Result<(), DtmfError> {
        let keys: Vec<Digit> = digits
            .chars()
            .map(|c| Digit::from_char(c).ok_or_else(|| DtmfError::InvalidSignal(c.to_string())))
            .collect::<Result<_, _>>()?;
        if self.queue.len() + keys.len() > SEND_QUEUE_LIMIT {
            return Err(DtmfError::QueueFull);
        }
        for key in keys {
            self.queue(key, duration)?;
        }
        Ok(())
    }

    /// `true` from an event's start packet up to its last end retransmission.
    pub fn is_active(&self) -> bool {
        matches!(
            self.state,
            SendState::Sending { .. } | SendState::Ending { .. }
        )
    }

    /// `true` when nothing is being sent, queued or waited for.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, SendState::Idle) && self.queue.is_empty()
    }

    /// The packet for this 20 ms tick, if any. Call exactly once per tick (see the type).
    pub fn poll_packet(&mut self) -> Option<EventPacket> {
        loop {
            match self.state {
                SendState::Idle => {
                    let (digit, total) = self.queue.pop_front()?;
                    self.state = SendState::Sending {
                        digit,
                        tick: 0,
                        total,
                    };
                }
                SendState::Gap { left } => {
                    if left == 0 {
                        self.state = SendState::Idle;
                        continue;
                    }
                    self.state = SendState::Gap { left: left - 1 };
                    return None;
                }
                SendState::Sending { digit, tick, total } => {
                    let reported = (tick + 1) * self.frame_units;
                    let packet_end = reported >= total;
                    let duration = reported.min(total);
                    self.state = if packet_end {
                        SendState::Ending {
                            digit,
                            tick: tick + 1,
                            total,
                            sent: 1,
                        }
                    } else {
                        SendState::Sending {
                            digit,
                            tick: tick + 1,
                            total,
                        }
                    };
                    return Some(self.packet(digit, tick, tick == 0, packet_end, duration));
                }
                SendState::Ending {
                    digit,
                    tick,
                    total,
                    sent,
                } => {
                    self.state = if sent + 1 >= 3 {
                        SendState::Gap {
                            left: self.gap_ticks,
                        }
                    } else {
                        SendState::Ending {
                            digit,
                            tick: tick + 1,
                            total,
                            sent: sent + 1,
                        }
                    };
                    return Some(self.packet(digit, tick, false, true, total));
                }
            }
        }
    }

    fn packet(
        &self,
        digit: Digit,
        tick: u32,
        marker: bool,
        end: bool,
        duration: u32,
    ) -> EventPacket {
        let flags = if end { 0x80 } else { 0 } | SEND_VOLUME;
        let [d0, d1] = (duration.min(u32::from(u16::MAX)) as u16).to_be_bytes();
        EventPacket {
            payload_type: self.payload_type,
            marker,
            since_start: tick * self.frame_units,
            payload: [digit.event_code(), flags, d0, d1],
        }
    }
}

impl EventPacket {
    /// This packet's RTP timestamp, given the timestamp `frame_timestamp` that the voice
    /// frame of the current tick would carry.
    pub fn rtp_timestamp(&self, frame_timestamp: u32) -> u32 {
        frame_timestamp.wrapping_sub(self.since_start)
    }

    /// The E (end) bit.
    pub fn is_end(&self) -> bool {
        self.payload[1] & 0x80 != 0
    }

    /// The duration field in timestamp units.
    pub fn duration(&self) -> u16 {
        u16::from_be_bytes([self.payload[2], self.payload[3]])
    }
}

/// The content type of the SIP INFO bodies [`info_body`] makes.
pub const DTMF_RELAY: &str = "application/dtmf-relay";
/// The content type whose body is just the key (or its event code).
pub const DTMF_PLAIN: &str = "application/dtmf";

/// The digit (and duration, when given) in a SIP INFO body of content type
/// `application/dtmf-relay` (`Signal=5\r\nDuration=160\r\n`; keys and values case- and
/// space-tolerant, LF or CRLF, `Signal` as a key or an event code 0–15, `Duration` in ms) or
/// `application/dtmf` (the body is the key or its event code). Content-type parameters are
/// ignored.
pub fn parse_info(content_type: &str, body: &[u8]) -> Result<(Digit, Option<Duration>), DtmfError> {
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    let text = std::str::from_utf8(body).map_err(|_| DtmfError::NotText)?;
    if media_type.eq_ignore_ascii_case(DTMF_RELAY) {
        let mut signal = None;
        let mut duration = None;
        for line in text.lines() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let key = key.trim();
            let value = value.trim();
            if key.eq_ignore_ascii_case("signal") {
                signal = Some(parse_signal(value)?);
            } else if key.eq_ignore_ascii_case("duration") {
                // A bad duration does not spoil the digit.
                duration = value.parse::<u64>().ok().map(Duration::from_millis);
            }
        }
        let digit = signal.ok_or(DtmfError::MissingSignal)?;
        Ok((digit, duration))
    } else if media_type.eq_ignore_ascii_case(DTMF_PLAIN) {
        Ok((parse_signal(text.trim())?, None))
    } else {
        Err(DtmfError::UnsupportedContentType(media_type.to_owned()))
    }
}

/// The key in a signal value: one key character, or an event code 0–15.
fn parse_signal(value: &str) -> Result<Digit, DtmfError> {
    let invalid = || DtmfError::InvalidSignal(value.chars().take(16).collect());
    let mut chars = value.chars();
    if let (Some(c), None) = (chars.next(), chars.next())
        && let Some(d) = Digit::from_char(c)
    {
        return Ok(d);
    }
    let code: u8 = value.parse().map_err(|_| invalid())?;
    Digit::from_event(code).ok_or_else(invalid)
}

/// The SIP INFO content type and body that carry `digit` held for `duration`
/// (`application/dtmf-relay`, `Signal=5\r\nDuration=160\r\n`).
pub fn info_body(digit: Digit, duration: Duration) -> (&'static str, String) {
    (
        DTMF_RELAY,
        format!(
            "Signal={}\r\nDuration={}\r\n",
            digit.as_char(),
            duration.as_millis()
        ),
    )
}

/// Level of each of the two in-band tones, in dBFS (ITU-T Q.23 asks for −6..−8 dBm0 per tone
/// on the line; two tones at −7 dBFS peak at 0.89 of full scale, so never clip).
pub const TONE_LEVEL_DBFS: f32 = -7.0;

impl ToneGenerator {
    /// The tones of `digit` at `rate_hz` for `duration`, each at [`TONE_LEVEL_DBFS`].
    pub fn new(digit: Digit, rate_hz: u32, duration: Duration) -> Self {
        Self::with_level(digit, rate_hz, duration, TONE_LEVEL_DBFS)
    }

    /// Like [`new`](Self::new) with each tone at `level_dbfs` (peak of one tone relative to
    /// full scale).
    pub fn with_level(digit: Digit, rate_hz: u32, duration: Duration, level_dbfs: f32) -> Self {
        let rate = rate_hz.max(1) as f32;
        let (low, high) = digit.frequencies();
        let tau = std::f32::consts::TAU;
        Self {
            low_step: tau * low / rate,
            high_step: tau * high / rate,
            low_phase: 0.0,
            high_phase: 0.0,
            amplitude: 32767.0 * 10f32.powf(level_dbfs / 20.0),
            left: (duration.as_micros() * u128::from(rate_hz) / 1_000_000) as usize,
        }
    }

    /// Samples still to come.
    pub fn remaining(&self) -> usize {
        self.left
    }

    /// `true` when every sample has been produced.
    pub fn is_done(&self) -> bool {
        self.left == 0
    }

    /// Writes the next samples into `out` and returns how many were tone; the rest of `out`
    /// (after the end of the digit) is silence.
    pub fn fill(&mut self, out: &mut [i16]) -> usize {
        let n = out.len().min(self.left);
        let tau = std::f32::consts::TAU;
        for sample in &mut out[..n] {
            let v = self.amplitude * (self.low_phase.sin() + self.high_phase.sin());
            *sample = v.round().clamp(-32768.0, 32767.0) as i16;
            self.low_phase += self.low_step;
            self.high_phase += self.high_step;
            if self.low_phase >= tau {
                self.low_phase -= tau;
            }
            if self.high_phase >= tau {
                self.high_phase -= tau;
            }
        }
        out[n..].fill(0);
        self.left -= n;
        n
    }
}

/// The whole dual tone of `digit` at `rate_hz` for `duration`, at [`TONE_LEVEL_DBFS`].
pub fn dual_tone(digit: Digit, rate_hz: u32, duration: Duration) -> Vec<i16> {
    let mut generator = ToneGenerator::new(digit, rate_hz, duration);
    let mut out = vec![0; generator.remaining()];
    generator.fill(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(digit: Digit, end: bool, duration: u16) -> [u8; 4] {
        let [d0, d1] = duration.to_be_bytes();
        [digit.event_code(), if end { 0x8a } else { 0x0a }, d0, d1]
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn digit_chars_and_event_codes_round_trip() {
        for (code, d) in Digit::ALL.iter().enumerate() {
            assert_eq!(d.event_code() as usize, code);
            assert_eq!(Digit::from_event(code as u8), Some(*d));
            assert_eq!(Digit::from_char(d.as_char()), Some(*d));
            let (r, c) = d.position();
            assert_eq!(Digit::at(r, c), Some(*d));
        }
        assert_eq!(Digit::from_char('b'), Some(Digit::B));
        assert_eq!(Digit::from_char('x'), None);
        assert_eq!(Digit::from_event(16), None);
        assert_eq!(Digit::D5.frequencies(), (770.0, 1336.0));
        assert_eq!(Digit::Hash.to_string(), "#");
    }

    #[test]
    fn receiver_reports_once_despite_continuations_and_three_end_packets() {
        let t0 = Instant::now();
        let mut rx = EventReceiver::new(8000);
        let ts = 12_345;
        let mut got = Vec::new();
        for (i, dur) in [160u16, 320, 480, 640].into_iter().enumerate() {
            got.extend(rx.on_packet(
                t0 + ms(20 * i as u64),
                ts,
                i == 0,
                &pkt(Digit::D5, false, dur),
            ));
        }
        assert!(got.is_empty(), "nothing before the end");
        assert_eq!(rx.current_digit(), Some(Digit::D5));
        for i in 0..3 {
            got.extend(rx.on_packet(t0 + ms(80 + 20 * i), ts, false, &pkt(Digit::D5, true, 800)));
        }
        assert_eq!(
            got,
            vec![DigitEvent {
                digit: Digit::D5,
                duration: ms(100),
                timestamp: ts,
                end_seen: true
            }]
        );
        assert_eq!(rx.poll_timeout(), None);
    }

    #[test]
    fn receiver_reports_event_whose_start_was_lost() {
        let t0 = Instant::now();
        let mut rx = EventReceiver::new(8000);
        assert_eq!(
            rx.on_packet(t0, 1000, false, &pkt(Digit::D7, false, 480)),
            None
        );
        let e = rx.on_packet(t0 + ms(20), 1000, false, &pkt(Digit::D7, true, 640));
        assert_eq!(e.map(|e| (e.digit, e.duration)), Some((Digit::D7, ms(80))));
    }

    #[test]
    fn receiver_reports_event_seen_only_by_its_end_packet() {
        let t0 = Instant::now();
        let mut rx = EventReceiver::new(8000);
        let e = rx.on_packet(t0, 1000, false, &pkt(Digit::Star, true, 800));
        assert_eq!(e.map(|e| (e.digit, e.end_seen)), Some((Digit::Star, true)));
        assert_eq!(
            rx.on_packet(t0 + ms(20), 1000, false, &pkt(Digit::Star, true, 800)),
            None
        );
    }

    #[test]
    fn receiver_times_out_an_event_whose_end_was_lost() {
        let t0 = Instant::now();
        let mut rx = EventReceiver::new(8000);
        rx.on_packet(t0, 5000, true, &pkt(Digit::D9, false, 160));
        rx.on_packet(t0 + ms(20), 5000, false, &pkt(Digit::D9, false, 320));
        let deadline = rx.poll_timeout().expect("timer armed");
        assert_eq!(deadline, t0 + ms(20) + DEFAULT_END_TIMEOUT);
        assert_eq!(rx.on_timeout(deadline - ms(1)), None, "not yet");
        let e = rx.on_timeout(deadline).expect("reported at timeout");
        assert_eq!(
            (e.digit, e.duration, e.end_seen),
            (Digit::D9, ms(40), false)
        );
        assert_eq!(rx.poll_timeout(), None);
        // Late end packets of that event are absorbed.
        assert_eq!(
            rx.on_packet(deadline + ms(5), 5000, false, &pkt(Digit::D9, true, 800)),
            None
        );
    }

    #[test]
    fn same_digit_twice_is_told_apart_by_timestamp() {
        let t0 = Instant::now();
        let mut rx = EventReceiver::new(8000);
        let mut got = Vec::new();
        for (ts, at) in [(8000u32, 0u64), (9600, 200)] {
            got.extend(rx.on_packet(t0 + ms(at), ts, true, &pkt(Digit::D1, false, 160)));
            for i in 0..3 {
                got.extend(rx.on_packet(
                    t0 + ms(at + 20 + 20 * i),
                    ts,
                    false,
                    &pkt(Digit::D1, true, 320),
                ));
            }
        }
        let stamps: Vec<u32> = got.iter().map(|e| e.timestamp).collect();
        assert_eq!(stamps, vec![8000, 9600]);
        assert!(got.iter().all(|e| e.digit == Digit::D1));
    }

    #[test]
    fn new_event_closes_an_unfinished_one_and_both_are_reported() {
        let t0 = Instant::now();
        let mut rx = EventReceiver::new(8000);
        rx.on_packet(t0, 100, true, &pkt(Digit::D2, false, 160));
        // The end of "2" is lost; "3" is seen only by its end packet.
        let first = rx.on_packet(t0 + ms(200), 2000, false, &pkt(Digit::D3, true, 800));
        assert_eq!(
            first.map(|e| (e.digit, e.end_seen)),
            Some((Digit::D2, false))
        );
        let second = rx.poll_event();
        assert_eq!(
            second.map(|e| (e.digit, e.end_seen)),
            Some((Digit::D3, true))
        );
        assert_eq!(rx.poll_event(), None);
    }

    #[test]
    fn late_packet_of_an_older_event_is_not_a_new_digit() {
        let t0 = Instant::now();
        let mut rx = EventReceiver::new(8000);
        assert!(
            rx.on_packet(t0, 1000, true, &pkt(Digit::D4, true, 800))
                .is_some()
        );
        assert!(
            rx.on_packet(t0 + ms(200), 3000, true, &pkt(Digit::D6, true, 800))
                .is_some()
        );
        assert_eq!(
            rx.on_packet(t0 + ms(220), 1000, false, &pkt(Digit::D4, true, 800)),
            None
        );
        // Timestamps wrap.
        assert!(
            rx.on_packet(
                t0 + ms(400),
                u32::MAX - 10,
                true,
                &pkt(Digit::D8, true, 800)
            )
            .is_none()
        );
        let mut rx = EventReceiver::new(8000);
        assert!(
            rx.on_packet(t0, u32::MAX - 10, true, &pkt(Digit::D8, true, 800))
                .is_some()
        );
        assert!(
            rx.on_packet(t0 + ms(200), 1500, true, &pkt(Digit::D0, true, 800))
                .is_some()
        );
    }

    #[test]
    fn malformed_payloads_are_ignored() {
        let t0 = Instant::now();
        let mut rx = EventReceiver::new(8000);
        assert_eq!(rx.on_packet(t0, 1, true, &[]), None);
        assert_eq!(rx.on_packet(t0, 1, true, &[5, 0x80, 3]), None);
        assert_eq!(rx.on_packet(t0, 1, true, &[16, 0x80, 3, 32]), None, "flash");
        assert_eq!(rx.on_packet(t0, 1, true, &[200, 0x80, 3, 32]), None);
        assert_eq!(rx.poll_timeout(), None);
        // Extra bytes (e.g. RFC 2198 leftovers) after the first four are tolerated.
        let e = rx.on_packet(t0, 2, true, &[5, 0x80, 3, 32, 9, 9]);
        assert_eq!(e.map(|e| e.digit), Some(Digit::D5));
    }

    #[test]
    fn sender_emits_start_continuations_and_three_end_packets_with_one_timestamp() {
        let mut tx = EventSender::new(101, 8000);
        assert!(tx.is_idle());
        tx.queue(Digit::D5, DEFAULT_DIGIT_DURATION).unwrap();
        let mut packets = Vec::new();
        let mut frame_ts = 40_000u32;
        for _ in 0..12 {
            if let Some(p) = tx.poll_packet() {
                assert!(tx.is_active() || p.is_end());
                packets.push((
                    p.marker,
                    p.is_end(),
                    p.duration(),
                    p.rtp_timestamp(frame_ts),
                    p.payload,
                ));
            }
            frame_ts += 160;
        }
        let summary: Vec<_> = packets.iter().map(|p| (p.0, p.1, p.2, p.3)).collect();
        assert_eq!(
            summary,
            vec![
                (true, false, 160, 40_000),
                (false, false, 320, 40_000),
                (false, false, 480, 40_000),
                (false, false, 640, 40_000),
                (false, true, 800, 40_000),
                (false, true, 800, 40_000),
                (false, true, 800, 40_000),
            ]
        );
        assert_eq!(packets[0].4, [5, 10, 0, 160]);
        assert_eq!(packets[6].4, [5, 0x80 | 10, 3, 32]);
        assert!(tx.is_idle());
        assert!(!tx.is_active());
    }

    #[test]
    fn sender_clamps_short_digits_to_40ms_and_separates_queued_digits() {
        let mut tx = EventSender::new(96, 8000);
        tx.queue_str("12", ms(10)).unwrap();
        // One entry per tick: Some((marker, end, duration, timestamp)) or None.
        let mut ticks = Vec::new();
        let mut frame_ts = 0u32;
        for _ in 0..14 {
            ticks.push(tx.poll_packet().map(|p| {
                assert_eq!(p.payload_type, 96);
                (
                    p.payload[0],
                    p.marker,
                    p.is_end(),
                    p.duration(),
                    p.rtp_timestamp(frame_ts),
                )
            }));
            frame_ts += 160;
        }
        assert_eq!(
            ticks,
            vec![
                Some((1, true, false, 160, 0)),
                Some((1, false, true, 320, 0)),
                Some((1, false, true, 320, 0)),
                Some((1, false, true, 320, 0)),
                None,
                None,
                Some((2, true, false, 160, 960)),
                Some((2, false, true, 320, 960)),
                Some((2, false, true, 320, 960)),
                Some((2, false, true, 320, 960)),
                None,
                None,
                None,
                None,
            ]
        );
        assert!(tx.is_idle());
    }

    #[test]
    fn sender_rejects_bad_keys_and_overflow() {
        let mut tx = EventSender::new(101, 8000);
        assert!(matches!(
            tx.queue_str("12x", ms(100)),
            Err(DtmfError::InvalidSignal(_))
        ));
        assert!(tx.is_idle(), "nothing queued from a bad string");
        for _ in 0..SEND_QUEUE_LIMIT {
            tx.queue(Digit::D0, ms(100)).unwrap();
        }
        assert_eq!(tx.queue(Digit::D0, ms(100)), Err(DtmfError::QueueFull));
    }

    #[test]
    fn sender_at_48khz_uses_960_units_per_frame() {
        let mut tx = EventSender::new(101, 48_000);
        tx.queue(Digit::Hash, ms(50)).unwrap();
        let durations: Vec<u16> = std::iter::from_fn(|| tx.poll_packet())
            .map(|p| p.duration())
            .collect();
        assert_eq!(durations, vec![960, 1920, 2400, 2400, 2400]);
    }

    #[test]
    fn sender_output_feeds_receiver_to_one_digit_each() {
        let t0 = Instant::now();
        let mut tx = EventSender::new(101, 8000);
        let mut rx = EventReceiver::new(8000);
        tx.queue_str("5#5", ms(100)).unwrap();
        let mut got = Vec::new();
        for tick in 0..60u32 {
            if let Some(p) = tx.poll_packet() {
                let now = t0 + ms(u64::from(tick) * 20);
                got.extend(rx.on_packet(now, p.rtp_timestamp(tick * 160), p.marker, &p.payload));
            }
        }
        let digits: String = got.iter().map(|e| e.digit.as_char()).collect();
        assert_eq!(digits, "5#5");
        assert!(got.iter().all(|e| e.duration == ms(100) && e.end_seen));
    }

    #[test]
    fn info_dtmf_relay_variants_parse() {
        let cases: &[(&str, &[u8], Digit, Option<u64>)] = &[
            (
                "application/dtmf-relay",
                b"Signal=5\r\nDuration=160\r\n",
                Digit::D5,
                Some(160),
            ),
            (
                "Application/DTMF-Relay",
                b"signal = 5\nduration = 250\n",
                Digit::D5,
                Some(250),
            ),
            (
                "application/dtmf-relay; charset=utf-8",
                b"Signal= *\r\nDuration= 100",
                Digit::Star,
                Some(100),
            ),
            ("application/dtmf-relay", b"Signal=#\r\n", Digit::Hash, None),
            (
                "application/dtmf-relay",
                b"Signal=10\r\nDuration=x\r\n",
                Digit::Star,
                None,
            ),
            (
                "application/dtmf-relay",
                b"Signal=11\r\n",
                Digit::Hash,
                None,
            ),
            ("application/dtmf-relay", b"Signal=d\r\n", Digit::D, None),
            ("application/dtmf", b"7", Digit::D7, None),
            ("application/dtmf", b" 11\r\n", Digit::Hash, None),
            ("application/dtmf", b"#", Digit::Hash, None),
        ];
        for (ct, body, digit, dur) in cases {
            assert_eq!(
                parse_info(ct, body),
                Ok((*digit, dur.map(Duration::from_millis))),
                "{ct} {:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn info_garbage_is_an_error() {
        assert_eq!(
            parse_info("application/dtmf-relay", b"Duration=160\r\n"),
            Err(DtmfError::MissingSignal)
        );
        assert_eq!(
            parse_info("application/dtmf-relay", b""),
            Err(DtmfError::MissingSignal)
        );
        assert!(matches!(
            parse_info("application/dtmf-relay", b"Signal=16\r\n"),
            Err(DtmfError::InvalidSignal(_))
        ));
        assert!(matches!(
            parse_info("application/dtmf-relay", b"Signal=55\r\n"),
            Err(DtmfError::InvalidSignal(_))
        ));
        assert!(matches!(
            parse_info("application/dtmf-relay", b"Signal=\r\n"),
            Err(DtmfError::InvalidSignal(_))
        ));
        assert!(matches!(
            parse_info("application/dtmf", b"x"),
            Err(DtmfError::InvalidSignal(_))
        ));
        assert!(matches!(
            parse_info("application/dtmf", b""),
            Err(DtmfError::InvalidSignal(_))
        ));
        assert_eq!(
            parse_info("application/dtmf", &[0xff, 0xfe]),
            Err(DtmfError::NotText)
        );
        assert!(matches!(
            parse_info("application/sdp", b"v=0"),
            Err(DtmfError::UnsupportedContentType(_))
        ));
    }

    #[test]
    fn info_body_round_trips() {
        let (ct, body) = info_body(Digit::Star, ms(160));
        assert_eq!(ct, "application/dtmf-relay");
        assert_eq!(body, "Signal=*\r\nDuration=160\r\n");
        assert_eq!(
            parse_info(ct, body.as_bytes()),
            Ok((Digit::Star, Some(ms(160))))
        );
    }

    #[test]
    fn tone_generator_makes_the_requested_length_at_minus_7_dbfs_per_tone() {
        for rate in [8000u32, 16_000, 48_000] {
            let pcm = dual_tone(Digit::D1, rate, ms(100));
            assert_eq!(pcm.len(), rate as usize / 10);
            let peak = pcm.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
            assert!(peak < 32767 && peak > 25_000, "peak {peak} at {rate}");
            let mean_square =
                pcm.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / pcm.len() as f64;
            // Two tones each of amplitude A: mean square A² (A²/2 each).
            let per_tone_dbfs = 10.0 * (mean_square / 2.0 * 2.0).log10() - 20.0 * 32767f64.log10();
            assert!(
                (per_tone_dbfs + 7.0).abs() < 0.3,
                "{per_tone_dbfs} dBFS at {rate}"
            );
        }
        let mut generator = ToneGenerator::new(Digit::D0, 8000, ms(30));
        let mut frame = [1i16; 160];
        assert_eq!(generator.fill(&mut frame), 160);
        assert_eq!(generator.fill(&mut frame), 80);
        assert!(frame[80..].iter().all(|&s| s == 0));
        assert!(generator.is_done());
    }
}
