//! The adaptive jitter buffer of a terminated leg (IVR, recording, conference, transcoding).
//! SANS-IO.
//!
//! Owns the reordering, de-duplication and timing of *encoded* RTP packets between the socket
//! and the decoder; the decoder does the loss concealment when told [`Pop::Missing`].
//!
//! # Model
//! * Every packet's *transit* is `arrival − timestamp/clock_rate` (RFC 3550 §6.4.1). The
//!   interarrival jitter `J` is the RFC 3550 §6.4.1 / A.8 estimator (`J += (|D| − J)/16`).
//!   The minimum transit over the last 2–3 s (`m`) is the fastest path seen lately.
//! * The *target delay* is `clamp(3·J + frame, min_delay, max_delay)`. It grows at once when
//!   `J` grows, and at once to cover a packet whose transit exceeds `m + target` (a spike);
//!   it shrinks slowly (1/128 of the difference per packet).
//! * A packet with timestamp `t` ideally plays at `t/clock_rate + m + target`. A talk spurt
//!   starts (playout is *anchored*) on the first pop at or after that instant for its first
//!   packet. While playing, the buffer knows the offset `e` between its actual and its ideal
//!   playout and keeps it in a dead band:
//!   - `e < −frame/2` (too little cushion: the target grew, or the sender's clock is slower
//!     than ours): a [`Pop::Missing`] is inserted without advancing playout.
//!   - `e > frame` (too much delay: the target shrank, or the sender's clock is faster): one
//!     frame is dropped at the next cheap moment — a lost frame is skipped instead of
//!     concealed, or a comfort-noise packet (PT 13, RFC 3389) is dropped.
//!   - `e > 2·frame`, or more than `max_delay + 2·frame` of media queued: the head packet is
//!     dropped even in speech.
//!
//!   A talk-spurt boundary re-anchors for free, so in conversation most corrections happen in
//!   silence. Either way the depth stays bounded over any run; [`JitterStats::adjust_drops`]
//!   and [`JitterStats::adjust_inserts`] count the corrections.
//! * Loss: when the frame at the playout cursor is absent, [`Pop::Missing`] (conceal one
//!   frame). After 3 of them in a row with nothing queued, the spurt is over (DTX, hold, end
//!   of speech): [`Pop::Empty`] until the next packet is due. A packet with the marker bit
//!   (RFC 3550 §5.1, RFC 3551 §4.1) after a gap starts a new talk spurt: the gap gives
//!   [`Pop::Empty`], not a burst of `Missing`, and playout re-anchors.
//! * Packets arriving after their playout time are dropped and counted `late`; duplicates
//!   (same extended sequence number, 64-packet window plus the queue) are dropped; packets
//!   out of sequence order are counted `reordered` and put in timestamp order.
//! * A timestamp or sequence jump (transit changing by more than 1 s with a newer sequence
//!   number, or a sequence step beyond ±1000) is a new timeline of the same source: it is
//!   re-mapped onto the old one so that its transit is continuous, and played after what is
//!   queued (counted in `timeline_jumps`). An SSRC change or a re-INVITE calls
//!   [`JitterBuffer::reset`].
//!
//! # Pop contract and packet durations (ptime ≠ 20 ms)
//! [`JitterBuffer::pop`] hands out media from a playout cursor (an RTP timestamp). Call it when
//! the decoder's output holds less than one frame of PCM: with 20 ms packets that is once per
//! frame tick; with 10 ms packets twice in a tick; with 40 ms packets every other tick.
//! * [`Pop::Packet`] advances the cursor to the end of that packet. Its duration is taken from
//!   the next queued packet when it is the next sequence number, else the last duration seen
//!   between consecutive packets, else one frame. The caller may state the true duration
//!   after decoding with [`JitterBuffer::consumed`], which then moves the cursor.
//! * [`Pop::Missing`] means "conceal one frame" (`frame_step` timestamp units). A hole shorter
//!   than a frame (one lost 10 ms packet) is not concealed: the next packet is returned early.
//! * [`Pop::Empty`] means nothing is playing: output silence (or comfort noise), no PLC.
//!
//! # Cost
//! Payloads are copied into a pool of `max_packets` reused buffers; the queue is a ring of
//! slot indices. Once every buffer has grown to the largest payload seen, `push` and `pop` do
//! not allocate. No locks; one owner.
//!
//! Time is passed in (`now`); nothing here reads a clock.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Largest payload accepted (an Opus packet of 120 ms at 510 kbit/s is about 7.7 KB).
pub const MAX_PAYLOAD: usize = 8192;
/// RTP payload type of comfort noise (RFC 3389), the cheapest packet to drop.
const PT_COMFORT_NOISE: u8 = 13;
/// Missing frames in a row, with nothing queued, before a talk spurt is taken as ended.
const MAX_MISSING_RUN: u32 = 3;
/// Target delay = `JITTER_FACTOR · J + frame`, clamped.
const JITTER_FACTOR: i64 = 3;
/// The target shrinks by 1/`TARGET_DECAY` of its excess per packet.
const TARGET_DECAY: i64 = 128;
/// A newer packet whose transit moved by more than this is on a new timeline.
const TRANSIT_JUMP_US: i64 = 1_000_000;
/// A sequence step larger than this (either way) is a new timeline.
const SEQ_JUMP: i64 = 1000;
/// Width of one bucket of the minimum-transit window; the window spans 3 buckets.
const MIN_BUCKET_US: i64 = 1_000_000;
/// Duplicate window in packets (bits of a `u64`).
const SEEN_WINDOW: i64 = 64;
/// Longest packet whose duration is inferred, in frames.
const MAX_PACKET_FRAMES: i64 = 8;

/// Why a jitter-buffer configuration is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JitterError {
    /// `min_delay` exceeds `max_delay`.
    #[error("jitter min_delay {min:?} exceeds max_delay {max:?}")]
    MinAboveMax {
        /// The configured minimum.
        min: Duration,
        /// The configured maximum.
        max: Duration,
    },
    /// `initial_delay` lies outside `[min_delay, max_delay]`.
    #[error("jitter initial_delay {0:?} is outside [min_delay, max_delay]")]
    InitialOutOfRange(Duration),
    /// `max_packets` is zero.
    #[error("jitter max_packets must be at least 1")]
    NoPackets,
}

/// Delays and capacity of a jitter buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// Lowest target delay (default 20 ms).
    pub min_delay: Duration,
    /// Highest target delay (default 200 ms).
    pub max_delay: Duration,
    /// Target delay before any jitter is measured (default 60 ms).
    pub initial_delay: Duration,
    /// Packets held at most; beyond, the oldest is dropped (default 50).
    pub max_packets: usize,
}

/// What the decoder gets for one pop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pop<'a> {
    /// Decode this packet.
    Packet {
        /// Its RTP payload type.
        payload_type: u8,
        /// Its RTP timestamp.
        timestamp: u32,
        /// Its payload, valid until the next call on the buffer.
        payload: &'a [u8],
    },
    /// Conceal one frame (loss, or a frame inserted to grow the delay).
    Missing,
    /// Nothing is playing (not started, between talk spurts, on hold): silence, no PLC.
    Empty,
}

/// Counters and gauges of a jitter buffer. Counters run from construction (not reset by
/// [`JitterBuffer::reset`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JitterStats {
    /// Current target delay.
    pub target_delay: Duration,
    /// Interarrival jitter estimate (RFC 3550 §6.4.1).
    pub jitter: Duration,
    /// Packets queued.
    pub depth: usize,
    /// Media queued ahead of the playout cursor.
    pub buffered: Duration,
    /// Packets pushed.
    pub received: u64,
    /// Packets handed to the decoder.
    pub played: u64,
    /// Packets dropped because their playout time had passed.
    pub late: u64,
    /// Packets dropped as duplicates.
    pub duplicates: u64,
    /// Packets dropped for lack of room, for size, or by `reset`.
    pub dropped: u64,
    /// `Missing` returned for lost frames.
    pub concealed: u64,
    /// Packets that arrived after one with a higher sequence number.
    pub reordered: u64,
    /// Frames dropped to shrink the delay (drift, target shrinking, overfull buffer).
    pub adjust_drops: u64,
    /// `Missing` inserted to grow the delay (drift, target growing).
    pub adjust_inserts: u64,
    /// Talk spurts started (playout anchored).
    pub talk_spurts: u64,
    /// Timestamp or sequence jumps re-mapped onto the timeline.
    pub timeline_jumps: u64,
}

/// The adaptive jitter buffer of one received RTP stream.
#[derive(Debug)]
pub struct JitterBuffer {
    config: JitterConfig,
    clock_rate: i64,
    /// Timestamp units per 20 ms frame.
    step: i64,
    step_us: i64,
    slots: Vec<Slot>,
    free: Vec<usize>,
    /// Slot indices in timestamp order.
    queue: VecDeque<usize>,
    stream: Option<Stream>,
    mode: Mode,
    /// End (extended timestamp) of the media handed out; packets before it are late.
    cursor: Option<i64>,
    missing_run: u32,
    /// Timestamp of the packet just returned, for [`JitterBuffer::consumed`].
    last_delivered: Option<i64>,
    jitter_us: i64,
    target_us: i64,
    min_us: i64,
    max_us: i64,
    stats: JitterStats,
}

impl Default for JitterConfig {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
            initial_delay: Duration::from_millis(60),
            max_packets: 50,
        }
    }
}

impl JitterConfig {
    /// Whether the delays are ordered and there is room for a packet.
    pub fn validate(&self) -> Result<(), JitterError> {
        if self.min_delay > self.max_delay {
            return Err(JitterError::MinAboveMax {
                min: self.min_delay,
                max: self.max_delay,
            });
        }
        if self.initial_delay < self.min_delay || self.initial_delay > self.max_delay {
            return Err(JitterError::InitialOutOfRange(self.initial_delay));
        }
        if self.max_packets == 0 {
            return Err(JitterError::NoPackets);
        }
        Ok(())
    }
}

impl JitterBuffer {
    /// A buffer for a stream with `clock_rate` timestamp units per second and `frame_step`
    /// units per 20 ms frame (160 for 8 kHz). An invalid `config` is made valid (delays
    /// clamped, at least one packet); check it with [`JitterConfig::validate`] first.
    pub fn new(config: JitterConfig, clock_rate: u32, frame_step: u32) -> Self {
        let mut config = config;
        config.max_delay = config.max_delay.max(config.min_delay);
        config.initial_delay = config
            .initial_delay
            .clamp(config.min_delay, config.max_delay);
        config.max_packets = config.max_packets.max(1);
        let clock_rate = i64::from(clock_rate.max(1));
        let step = i64::from(frame_step.max(1));
        let slots = (0..config.max_packets)
            .map(|_| Slot {
                seq: 0,
                ts: 0,
                raw_ts: 0,
                payload_type: 0,
                marker: false,
                payload: Vec::new(),
            })
            .collect();
        let min_us = duration_us(config.min_delay);
        let max_us = duration_us(config.max_delay);
        Self {
            step_us: (step * 1_000_000 / clock_rate).max(1),
            clock_rate,
            step,
            slots,
            free: (0..config.max_packets).rev().collect(),
            queue: VecDeque::with_capacity(config.max_packets),
            stream: None,
            mode: Mode::Idle,
            cursor: None,
            missing_run: 0,
            last_delivered: None,
            jitter_us: 0,
            target_us: duration_us(config.initial_delay),
            min_us,
            max_us,
            stats: JitterStats::default(),
            config,
        }
    }

    /// A received packet. The payload is copied into the buffer's pool.
    pub fn push(
        &mut self,
        now: Instant,
        sequence: u16,
        timestamp: u32,
        payload_type: u8,
        marker: bool,
        payload: &[u8],
    ) {
        self.stats.received += 1;
        if payload.len() > MAX_PAYLOAD {
            self.stats.dropped += 1;
            return;
        }
        let Some(mut stream) = self.stream.take() else {
            self.stream = Some(Stream::new(now, sequence, timestamp, self.step));
            self.accept(now, sequence, timestamp, payload_type, marker, payload);
            return;
        };
        let seq_delta = i64::from(sequence.wrapping_sub(stream.raw_seq) as i16);
        let jumped = if seq_delta.abs() > SEQ_JUMP {
            true
        } else if seq_delta > 0 {
            let ts = stream.extend_ts(timestamp);
            let transit = stream.us_since_epoch(now) - stream.ts_us(ts, self.clock_rate);
            (transit - stream.last_transit).abs() > TRANSIT_JUMP_US
        } else {
            false
        };
        if jumped {
            stream.remap(now, sequence, timestamp, self.clock_rate);
            self.stats.timeline_jumps += 1;
        }
        self.stream = Some(stream);
        self.accept(now, sequence, timestamp, payload_type, marker, payload);
    }

    /// The next piece of media for the decoder (see the module docs for when to call it).
    pub fn pop(&mut self, now: Instant) -> Pop<'_> {
        self.last_delivered = None;
        let Some(stream) = &self.stream else {
            return Pop::Empty;
        };
        let now_us = stream.us_since_epoch(now);
        let min_transit = stream.window.min();
        let step = self.step;
        let step_us = self.step_us;
        loop {
            let target = self.target_us;
            let Mode::Playing { offset } = self.mode else {
                let Some(&head) = self.queue.front() else {
                    return Pop::Empty;
                };
                let head_us = self.ts_us(self.slots[head].ts);
                if now_us < head_us + min_transit + target {
                    return Pop::Empty;
                }
                self.mode = Mode::Playing {
                    offset: now_us - head_us,
                };
                self.stats.talk_spurts += 1;
                return self.deliver();
            };
            let cursor = self.cursor.unwrap_or(0);
            let e = offset - min_transit - target;
            if e < -step_us / 2 && !self.queue.is_empty() {
                self.mode = Mode::Playing {
                    offset: offset + step_us,
                };
                self.stats.adjust_inserts += 1;
                return Pop::Missing;
            }
            let Some(&head) = self.queue.front() else {
                if self.missing_run >= MAX_MISSING_RUN {
                    self.mode = Mode::Idle;
                    self.missing_run = 0;
                    return Pop::Empty;
                }
                self.missing_run += 1;
                self.cursor = Some(cursor + step);
                self.stats.concealed += 1;
                return Pop::Missing;
            };
            let (head_ts, head_marker, head_pt) = {
                let slot = &self.slots[head];
                (slot.ts, slot.marker, slot.payload_type)
            };
            let gap = head_ts - cursor;
            if gap > 0 && head_marker {
                // A new talk spurt after a gap: re-anchor instead of concealing the gap.
                self.mode = Mode::Idle;
                self.missing_run = 0;
                continue;
            }
            if gap >= step {
                if e > step_us {
                    // Shrink the delay by skipping a lost frame rather than concealing it.
                    self.mode = Mode::Playing {
                        offset: offset - step_us,
                    };
                    self.cursor = Some(cursor + step);
                    self.stats.adjust_drops += 1;
                    continue;
                }
                self.missing_run += 1;
                self.cursor = Some(cursor + step);
                self.stats.concealed += 1;
                return Pop::Missing;
            }
            // The head is due; a hole shorter than a frame is skipped.
            let offset = offset - self.units_us(gap.max(0));
            self.mode = Mode::Playing { offset };
            let e = offset - min_transit - target;
            let duration = self.head_duration();
            let next_due = self
                .queue
                .get(1)
                .is_some_and(|&next| self.slots[next].ts - (head_ts + duration) < step);
            let overfull = self.buffered_us(head_ts) > self.max_us + 2 * step_us;
            let drop = next_due
                && (e > 2 * step_us
                    || overfull
                    || (e > step_us && head_pt == PT_COMFORT_NOISE));
            if drop {
                self.release_head();
                self.cursor = Some(head_ts + duration);
                self.mode = Mode::Playing {
                    offset: offset - self.units_us(duration),
                };
                self.stats.adjust_drops += 1;
                continue;
            }
            return self.deliver();
        }
    }

    /// The decoder found `ts_units` timestamp units in the packet just returned by
    /// [`JitterBuffer::pop`]: playout continues right after it. Without this call the duration
    /// is inferred (see the module docs). Ignored unless the last pop returned a packet.
    pub fn consumed(&mut self, ts_units: u32) {
        if let Some(ts) = self.last_delivered.take() {
            let units = i64::from(ts_units);
            self.cursor = Some(ts + units);
            if units > 0
                && units <= MAX_PACKET_FRAMES * self.step
                && let Some(stream) = &mut self.stream
            {
                stream.packet_units = units;
            }
        }
    }

    /// Counters and current gauges.
    pub fn stats(&self) -> JitterStats {
        let mut stats = self.stats;
        stats.target_delay = Duration::from_micros(self.target_us.max(0) as u64);
        stats.jitter = Duration::from_micros(self.jitter_us.max(0) as u64);
        stats.depth = self.queue.len();
        let buffered = match (self.cursor, self.queue.front()) {
            (Some(cursor), _) => self.buffered_us(cursor),
            (None, Some(&head)) => self.buffered_us(self.slots[head].ts),
            (None, None) => 0,
        };
        stats.buffered = Duration::from_micros(buffered.max(0) as u64);
        stats
    }

    /// Forget the stream (SSRC change, re-INVITE): queued packets are dropped and the next
    /// packet starts a new timeline. The jitter estimate and target delay are kept (the network
    /// path usually is), and so are the counters.
    pub fn reset(&mut self) {
        while !self.queue.is_empty() {
            self.release_head();
            self.stats.dropped += 1;
        }
        self.stream = None;
        self.mode = Mode::Idle;
        self.cursor = None;
        self.missing_run = 0;
        self.last_delivered = None;
    }

    /// Estimators, duplicate and late checks, and queueing of a packet on the current timeline.
    fn accept(
        &mut self,
        now: Instant,
        sequence: u16,
        timestamp: u32,
        payload_type: u8,
        marker: bool,
        payload: &[u8],
    ) {
        let clock_rate = self.clock_rate;
        let step = self.step;
        let Some(stream) = &mut self.stream else {
            return;
        };
        let seq_delta = i64::from(sequence.wrapping_sub(stream.raw_seq) as i16);
        let seq = stream.seq + seq_delta;
        let ts = stream.extend_ts(timestamp);
        // Duplicates: the bit window, then the queue for anything older.
        if seq_delta <= 0 {
            let age = -seq_delta;
            let seen = if age < SEEN_WINDOW {
                stream.seen & (1 << age) != 0
            } else {
                self.queue.iter().any(|&i| self.slots[i].seq == seq)
            };
            if seen {
                self.stats.duplicates += 1;
                return;
            }
        }
        let now_us = stream.us_since_epoch(now);
        let transit = now_us - stream.ts_us(ts, clock_rate);
        if seq_delta > 0 {
            let ts_step = ts - stream.ts;
            if seq_delta == 1 && ts_step > 0 && ts_step <= MAX_PACKET_FRAMES * step {
                stream.packet_units = ts_step;
            }
            stream.seen = if seq_delta >= SEEN_WINDOW {
                0
            } else {
                stream.seen << seq_delta
            } | 1;
            stream.seq = seq;
            stream.raw_seq = sequence;
            stream.ts = ts;
            stream.raw_ts = timestamp;
            stream.last_transit = transit;
        } else {
            if -seq_delta < SEEN_WINDOW {
                stream.seen |= 1 << -seq_delta;
            }
            self.stats.reordered += 1;
        }
        // RFC 3550 §6.4.1 interarrival jitter, in arrival order.
        if let Some(prev) = stream.prev_transit {
            let d = (transit - prev).abs();
            self.jitter_us += (d - self.jitter_us) / 16;
        }
        stream.prev_transit = Some(transit);
        stream.window.add(now_us, transit);
        let excess = transit - stream.window.min();
        let older_but_newer_ts = seq_delta < 0 && ts > stream.ts;
        self.adapt_target(excess);
        if older_but_newer_ts || self.cursor.is_some_and(|cursor| ts < cursor) {
            self.stats.late += 1;
            return;
        }
        self.enqueue(seq, ts, timestamp, payload_type, marker, payload);
    }

    fn adapt_target(&mut self, excess_us: i64) {
        let raw = (JITTER_FACTOR * self.jitter_us + self.step_us).clamp(self.min_us, self.max_us);
        if raw > self.target_us {
            self.target_us = raw;
        } else {
            self.target_us += (raw - self.target_us) / TARGET_DECAY;
        }
        if excess_us > self.target_us {
            self.target_us = (excess_us + self.step_us / 2).min(self.max_us);
        }
    }

    fn enqueue(
        &mut self,
        seq: i64,
        ts: i64,
        raw_ts: u32,
        payload_type: u8,
        marker: bool,
        payload: &[u8],
    ) {
        let position = self
            .queue
            .iter()
            .position(|&i| (self.slots[i].ts, self.slots[i].seq) > (ts, seq))
            .unwrap_or(self.queue.len());
        if self.queue.len() >= self.config.max_packets {
            self.stats.dropped += 1;
            if position == 0 {
                return;
            }
            self.release_head();
            return self.enqueue(seq, ts, raw_ts, payload_type, marker, payload);
        }
        let Some(index) = self.free.pop() else {
            // Every slot not free is queued, and the queue has room: unreachable, but
            // dropping is the safe answer.
            self.stats.dropped += 1;
            return;
        };
        let slot = &mut self.slots[index];
        slot.seq = seq;
        slot.ts = ts;
        slot.raw_ts = raw_ts;
        slot.payload_type = payload_type;
        slot.marker = marker;
        slot.payload.clear();
        slot.payload.extend_from_slice(payload);
        self.queue.insert(position, index);
    }

    /// Hand the head packet to the decoder.
    fn deliver(&mut self) -> Pop<'_> {
        let duration = self.head_duration();
        let Some(index) = self.queue.pop_front() else {
            return Pop::Empty;
        };
        self.free.push(index);
        let slot = &self.slots[index];
        self.cursor = Some(slot.ts + duration);
        self.last_delivered = Some(slot.ts);
        self.missing_run = 0;
        self.stats.played += 1;
        Pop::Packet {
            payload_type: slot.payload_type,
            timestamp: slot.raw_ts,
            payload: &slot.payload,
        }
    }

    fn release_head(&mut self) {
        if let Some(index) = self.queue.pop_front() {
            self.free.push(index);
        }
    }

    /// Timestamp units covered by the head packet.
    fn head_duration(&self) -> i64 {
        let fallback = self.stream.as_ref().map_or(self.step, |s| s.packet_units);
        let (Some(&head), Some(&next)) = (self.queue.front(), self.queue.get(1)) else {
            return fallback;
        };
        let (head, next) = (&self.slots[head], &self.slots[next]);
        let units = next.ts - head.ts;
        if next.seq == head.seq + 1 && units > 0 && units <= MAX_PACKET_FRAMES * self.step {
            units
        } else {
            fallback
        }
    }

    /// Microseconds of media queued from `from` (a timestamp) to the end of the last packet.
    fn buffered_us(&self, from: i64) -> i64 {
        let Some(&last) = self.queue.back() else {
            return 0;
        };
        let units = self.stream.as_ref().map_or(self.step, |s| s.packet_units);
        self.units_us(self.slots[last].ts + units - from)
    }

    fn ts_us(&self, ts: i64) -> i64 {
        self.stream
            .as_ref()
            .map_or(0, |s| s.ts_us(ts, self.clock_rate))
    }

    fn units_us(&self, units: i64) -> i64 {
        units * 1_000_000 / self.clock_rate
    }
}

/// One pooled packet.
#[derive(Debug)]
struct Slot {
    seq: i64,
    ts: i64,
    /// The timestamp as received (differs from `ts` modulo 2³² after a re-mapped jump).
    raw_ts: u32,
    payload_type: u8,
    marker: bool,
    payload: Vec<u8>,
}

/// Playout state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// No talk spurt playing: wait for the head packet's ideal playout time.
    Idle,
    /// Playing; a timestamp `t` plays (virtually) at `offset + t/clock_rate` µs after the epoch.
    Playing { offset: i64 },
}

/// The timeline of the received stream: extension of sequence numbers and timestamps, and the
/// transit estimators.
#[derive(Debug)]
struct Stream {
    epoch: Instant,
    /// Extended timestamp at the epoch.
    ts_epoch: i64,
    /// Highest extended sequence number and its raw value.
    seq: i64,
    raw_seq: u16,
    /// Extended and raw timestamp of the packet with the highest sequence number.
    ts: i64,
    raw_ts: u32,
    /// Bit `i`: sequence number `seq − i` was received.
    seen: u64,
    last_transit: i64,
    prev_transit: Option<i64>,
    window: MinWindow,
    /// Timestamp units per packet, as last seen between consecutive packets.
    packet_units: i64,
}

/// Minimum transit over the last 2–3 s, in three 1 s buckets.
#[derive(Debug)]
struct MinWindow {
    start_us: i64,
    current: i64,
    previous: [i64; 2],
}

impl Stream {
    fn new(now: Instant, sequence: u16, timestamp: u32, step: i64) -> Self {
        let ts = i64::from(timestamp);
        Self {
            epoch: now,
            ts_epoch: ts,
            seq: i64::from(sequence),
            raw_seq: sequence,
            ts,
            raw_ts: timestamp,
            seen: 0,
            last_transit: 0,
            prev_transit: None,
            window: MinWindow::new(),
            packet_units: step,
        }
        .with_first_packet_pending()
    }

    /// Make the reference one sequence number below the first packet, so that `accept`
    /// handles it like any newer packet.
    fn with_first_packet_pending(mut self) -> Self {
        self.seq -= 1;
        self.raw_seq = self.raw_seq.wrapping_sub(1);
        self
    }

    fn extend_ts(&self, timestamp: u32) -> i64 {
        self.ts + i64::from(timestamp.wrapping_sub(self.raw_ts) as i32)
    }

    fn ts_us(&self, ts: i64, clock_rate: i64) -> i64 {
        (ts - self.ts_epoch) * 1_000_000 / clock_rate
    }

    fn us_since_epoch(&self, now: Instant) -> i64 {
        i64::try_from(now.saturating_duration_since(self.epoch).as_micros()).unwrap_or(i64::MAX)
    }

    /// A jump: map the new raw sequence number and timestamp so that the packet arriving now
    /// keeps the last transit and follows the newest packet.
    fn remap(&mut self, now: Instant, sequence: u16, timestamp: u32, clock_rate: i64) {
        let ts_us = self.us_since_epoch(now) - self.last_transit;
        let ts = (self.ts_epoch + ts_us * clock_rate / 1_000_000).max(self.ts + self.packet_units);
        // The packet becomes the next sequence number after the newest: `accept` will see
        // `seq_delta == 1`.
        self.raw_seq = sequence.wrapping_sub(1);
        self.seen = 0;
        // Reference "one packet before" it.
        self.ts = ts - self.packet_units;
        self.raw_ts = timestamp.wrapping_sub(self.packet_units as u32);
        self.prev_transit = None;
    }
}

impl MinWindow {
    fn new() -> Self {
        Self {
            start_us: 0,
            current: i64::MAX,
            previous: [i64::MAX; 2],
        }
    }

    fn add(&mut self, now_us: i64, transit: i64) {
        let age = now_us - self.start_us;
        if age >= 3 * MIN_BUCKET_US {
            *self = Self::new();
            self.start_us = now_us;
        } else {
            for _ in 0..age / MIN_BUCKET_US {
                self.previous = [self.current, self.previous[0]];
                self.current = i64::MAX;
                self.start_us += MIN_BUCKET_US;
            }
        }
        self.current = self.current.min(transit);
    }

    fn min(&self) -> i64 {
        let min = self.current.min(self.previous[0]).min(self.previous[1]);
        if min == i64::MAX { 0 } else { min }
    }
}

fn duration_us(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}
