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
                && (e > 2 * step_us || overfull || (e > step_us && head_pt == PT_COMFORT_NOISE));
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
            if seq_delta == 1 && !marker && ts_step > 0 && ts_step <= MAX_PACKET_FRAMES * step {
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

    /// Timestamp units covered by the head packet: the step to the next packet if that is the
    /// next sequence number and no new talk spurt, else the last such step seen.
    fn head_duration(&self) -> i64 {
        let fallback = self.stream.as_ref().map_or(self.step, |s| s.packet_units);
        let (Some(&head), Some(&next)) = (self.queue.front(), self.queue.get(1)) else {
            return fallback;
        };
        let (head, next) = (&self.slots[head], &self.slots[next]);
        let units = next.ts - head.ts;
        // The step to a marker packet includes a silence, not just this packet.
        if next.seq == head.seq + 1
            && !next.marker
            && units > 0
            && units <= MAX_PACKET_FRAMES * self.step
        {
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

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 8000;
    const STEP: u32 = 160;
    const FRAME: Duration = Duration::from_millis(20);

    use crate::media::test_rng::XorShift;

    #[derive(Debug, Clone, Copy)]
    struct Sent {
        at: Duration,
        seq: u16,
        ts: u32,
        marker: bool,
        payload_type: u8,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Out {
        Packet(u32),
        Missing,
        Empty,
    }

    /// `n` packets of `units` timestamp units each; packet `i` leaves at `i·ptime·scale`
    /// (scale < 1: the sender's clock is fast) and arrives after `delay(i)` (None: lost).
    fn send(
        n: usize,
        units: u32,
        seq0: u16,
        ts0: u32,
        scale: f64,
        mut delay: impl FnMut(usize) -> Option<Duration>,
    ) -> Vec<Sent> {
        let ptime_us = f64::from(units) * 1_000_000.0 / f64::from(RATE);
        let mut sent: Vec<Sent> = (0..n)
            .filter_map(|i| {
                let d = delay(i)?;
                let leave = Duration::from_micros((i as f64 * ptime_us * scale).round() as u64);
                Some(Sent {
                    at: leave + d,
                    seq: seq0.wrapping_add(i as u16),
                    ts: ts0.wrapping_add(units.wrapping_mul(i as u32)),
                    marker: i == 0,
                    payload_type: 0,
                })
            })
            .collect();
        sent.sort_by_key(|s| s.at);
        sent
    }

    /// The receiving side: a 20 ms tick at `phase + k·20 ms`; at each tick it pushes what has
    /// arrived, then pops until it holds a frame of decoded audio (`units` per packet,
    /// `consumed` called when `hint`).
    struct Receiver {
        jb: JitterBuffer,
        t0: Instant,
        next: usize,
        tick: u32,
        backlog: u32,
        max_depth: usize,
        out: Vec<Out>,
    }

    impl Receiver {
        fn new(config: JitterConfig) -> Self {
            Self {
                jb: JitterBuffer::new(config, RATE, STEP),
                t0: Instant::now(),
                next: 0,
                tick: 0,
                backlog: 0,
                max_depth: 0,
                out: Vec::new(),
            }
        }

        fn run(&mut self, sent: &[Sent], ticks: u32, units: u32, hint: bool) {
            for _ in 0..ticks {
                let now = self.t0 + Duration::from_millis(5) + FRAME * self.tick;
                self.tick += 1;
                while let Some(s) = sent.get(self.next).filter(|s| self.t0 + s.at <= now) {
                    let payload = s.ts.to_be_bytes();
                    self.jb
                        .push(now, s.seq, s.ts, s.payload_type, s.marker, &payload);
                    self.next += 1;
                }
                self.max_depth = self.max_depth.max(self.jb.stats().depth);
                while self.backlog < STEP {
                    match self.jb.pop(now) {
                        Pop::Packet {
                            timestamp, payload, ..
                        } => {
                            assert_eq!(payload, timestamp.to_be_bytes(), "payload of {timestamp}");
                            self.out.push(Out::Packet(timestamp));
                            self.backlog += units;
                            if hint {
                                self.jb.consumed(units);
                            }
                        }
                        Pop::Missing => {
                            self.out.push(Out::Missing);
                            self.backlog += STEP;
                        }
                        Pop::Empty => {
                            self.out.push(Out::Empty);
                            break;
                        }
                    }
                }
                self.backlog = self.backlog.saturating_sub(STEP);
            }
        }

        fn count(&self, what: Out) -> usize {
            self.out.iter().filter(|&&o| o == what).count()
        }

        fn played(&self) -> Vec<u32> {
            self.out
                .iter()
                .filter_map(|o| match o {
                    Out::Packet(ts) => Some(*ts),
                    _ => None,
                })
                .collect()
        }

        /// The outputs with leading and trailing `Empty` trimmed.
        fn core(&self) -> &[Out] {
            let first = self.out.iter().position(|&o| o != Out::Empty).unwrap_or(0);
            let last = self.out.iter().rposition(|&o| o != Out::Empty).unwrap_or(0);
            &self.out[first..=last]
        }
    }

    fn fixed_60ms() -> JitterConfig {
        JitterConfig {
            min_delay: Duration::from_millis(60),
            ..JitterConfig::default()
        }
    }

    fn constant(ms: u64) -> impl FnMut(usize) -> Option<Duration> {
        move |_| Some(Duration::from_millis(ms))
    }

    fn uniform(rng: &mut XorShift, max_ms: u64) -> Duration {
        Duration::from_micros(rng.below(max_ms * 1000))
    }

    fn ts_of(i: usize) -> u32 {
        1000 + STEP * i as u32
    }

    #[test]
    fn steady_stream_plays_every_packet_in_order_after_the_initial_delay() {
        let sent = send(100, STEP, 7, 1000, 1.0, constant(30));
        let mut rx = Receiver::new(fixed_60ms());
        rx.run(&sent, 120, STEP, false);
        // First packet arrives at 30 ms, is due at 90 ms: ticks at 5..85 ms give Empty.
        assert_eq!(&rx.out[..5], &[Out::Empty; 5]);
        assert_eq!(rx.out[5], Out::Packet(ts_of(0)));
        let expected: Vec<u32> = (0..100).map(ts_of).collect();
        assert_eq!(rx.played(), expected);
        // The end of the stream: three frames concealed, then idle.
        assert_eq!(
            &rx.out[105..109],
            &[Out::Missing, Out::Missing, Out::Missing, Out::Empty]
        );
        assert_eq!(rx.count(Out::Missing), 3);
        let stats = rx.jb.stats();
        assert_eq!((stats.played, stats.concealed, stats.late), (100, 3, 0));
        assert_eq!((stats.adjust_drops, stats.adjust_inserts), (0, 0));
        assert_eq!(stats.talk_spurts, 1);
        assert_eq!(stats.target_delay, Duration::from_millis(60));
    }

    #[test]
    fn random_loss_is_concealed_one_frame_per_lost_packet() {
        let n = 3000;
        let mut rng = XorShift(0x1234_5678);
        let mut lost = vec![false; n];
        for i in 1..n - 1 {
            let run = lost[i.saturating_sub(3)..i].iter().filter(|&&l| l).count();
            lost[i] = rng.percent(5) && run < 3;
        }
        let lost_count = lost.iter().filter(|&&l| l).count();
        assert!(lost_count > 100, "5 % of 3000");
        let sent = send(n, STEP, 0, 1000, 1.0, |i| {
            (!lost[i]).then_some(Duration::from_millis(30))
        });
        let mut rx = Receiver::new(fixed_60ms());
        rx.run(&sent, n as u32 + 20, STEP, false);
        let expected: Vec<Out> = (0..n)
            .map(|i| {
                if lost[i] {
                    Out::Missing
                } else {
                    Out::Packet(ts_of(i))
                }
            })
            .chain([Out::Missing; 3])
            .collect();
        assert_eq!(rx.core(), &expected[..]);
        let stats = rx.jb.stats();
        assert_eq!(stats.concealed as usize, lost_count + 3);
        assert_eq!(stats.played as usize, n - lost_count);
        assert_eq!(
            (stats.late, stats.adjust_drops, stats.adjust_inserts),
            (0, 0, 0)
        );
    }

    #[test]
    fn loss_burst_longer_than_three_frames_goes_empty_then_resumes() {
        let sent = send(100, STEP, 0, 1000, 1.0, |i| {
            (!(50..60).contains(&i)).then_some(Duration::from_millis(30))
        });
        let mut rx = Receiver::new(fixed_60ms());
        rx.run(&sent, 120, STEP, false);
        let core = rx.core();
        assert_eq!(core[49], Out::Packet(ts_of(49)));
        assert_eq!(&core[50..53], &[Out::Missing; 3]);
        assert_eq!(&core[53..60], &[Out::Empty; 7]);
        assert_eq!(core[60], Out::Packet(ts_of(60)), "resumes on time");
        let stats = rx.jb.stats();
        assert_eq!(stats.talk_spurts, 2);
        assert_eq!(stats.played, 90);
    }

    #[test]
    fn adjacent_reordering_is_put_back_in_order() {
        let n = 1000;
        let mut rng = XorShift(42);
        let mut late = vec![false; n];
        let mut swaps = 0;
        let mut i = 0;
        while i < n - 1 {
            if rng.percent(10) {
                late[i] = true;
                swaps += 1;
                i += 2;
            } else {
                i += 1;
            }
        }
        // A swapped packet leaves 25 ms late, after its successor.
        let sent = send(n, STEP, 65_000, 1000, 1.0, |i| {
            Some(Duration::from_millis(if late[i] { 55 } else { 30 }))
        });
        let mut rx = Receiver::new(JitterConfig::default());
        rx.run(&sent, n as u32 + 20, STEP, false);
        let expected: Vec<u32> = (0..n).map(ts_of).collect();
        assert_eq!(rx.played(), expected);
        let stats = rx.jb.stats();
        assert_eq!(stats.reordered, swaps);
        assert_eq!((stats.late, stats.concealed, stats.duplicates), (0, 3, 0));
    }

    #[test]
    fn duplicates_are_dropped_and_counted() {
        let n = 1000;
        let mut rng = XorShift(7);
        let mut sent = send(n, STEP, 100, 1000, 1.0, constant(30));
        let mut copies = Vec::new();
        for s in &sent {
            if rng.percent(10) {
                // Some copies arrive after the original was played.
                let at = s.at + Duration::from_millis(5 + rng.below(100));
                copies.push(Sent { at, ..*s });
            }
        }
        let dups = copies.len() as u64;
        sent.extend(copies);
        sent.sort_by_key(|s| s.at);
        let mut rx = Receiver::new(fixed_60ms());
        rx.run(&sent, n as u32 + 20, STEP, false);
        let expected: Vec<u32> = (0..n).map(ts_of).collect();
        assert_eq!(rx.played(), expected);
        let stats = rx.jb.stats();
        assert_eq!(stats.duplicates, dups);
        assert_eq!((stats.late, stats.concealed), (0, 3));
    }

    #[test]
    fn packet_after_its_playout_time_is_late_and_raises_the_target() {
        let sent = send(100, STEP, 0, 1000, 1.0, |i| {
            Some(Duration::from_millis(if i == 50 { 300 } else { 30 }))
        });
        let mut rx = Receiver::new(fixed_60ms());
        rx.run(&sent, 80, STEP, false);
        assert_eq!(rx.core()[50], Out::Missing);
        let stats = rx.jb.stats();
        assert_eq!((stats.late, stats.concealed), (1, 1));
        assert!(
            stats.target_delay > Duration::from_millis(200) - FRAME,
            "{stats:?}"
        );
    }

    #[test]
    fn jittery_lossy_stream_plays_in_order_with_few_late_packets() {
        let n = 3000;
        let mut rng = XorShift(0xdead_beef);
        let mut lost = 0usize;
        let sent = send(n, STEP, 0, 1000, 1.0, |_| {
            if rng.percent(5) {
                lost += 1;
                None
            } else {
                Some(uniform(&mut rng, 80))
            }
        });
        let mut rx = Receiver::new(JitterConfig::default());
        rx.run(&sent, n as u32 + 30, STEP, false);
        let played = rx.played();
        assert!(played.windows(2).all(|w| w[0] < w[1]), "in timestamp order");
        let stats = rx.jb.stats();
        assert!(stats.late < 30, "{stats:?}");
        assert!(stats.played as usize >= n - lost - stats.late as usize - 10);
        assert!(stats.target_delay >= Duration::from_millis(80), "{stats:?}");
        assert!(
            stats.target_delay <= Duration::from_millis(200),
            "{stats:?}"
        );
        assert!(rx.max_depth <= 12, "depth {}", rx.max_depth);
    }

    fn drift_run(scale: f64, seed: u64) -> (JitterStats, usize) {
        // Ten minutes of the sender's clock, jitter 0–80 ms.
        let n = 30_000;
        let mut rng = XorShift(seed);
        let sent = send(n, STEP, 0, 1000, scale, |_| Some(uniform(&mut rng, 80)));
        let mut rx = Receiver::new(JitterConfig::default());
        rx.run(&sent, (n as f64 * scale) as u32 + 30, STEP, false);
        let played = rx.played();
        assert!(played.windows(2).all(|w| w[0] < w[1]), "in timestamp order");
        (rx.jb.stats(), rx.max_depth)
    }

    #[test]
    fn sender_clock_half_percent_fast_is_held_by_dropping_frames() {
        let (stats, max_depth) = drift_run(1.0 / 1.005, 11);
        // 0.5 % of 10 min is 3 s, 150 frames too many.
        assert!((140..=175).contains(&stats.adjust_drops), "{stats:?}");
        assert!(stats.adjust_inserts < 20, "{stats:?}");
        assert!(max_depth <= 14, "depth {max_depth}");
        assert!(stats.late < 60, "{stats:?}");
    }

    #[test]
    fn sender_clock_half_percent_slow_is_held_by_inserting_frames() {
        let (stats, max_depth) = drift_run(1.0 / 0.995, 12);
        assert!((140..=175).contains(&stats.adjust_inserts), "{stats:?}");
        assert!(stats.adjust_drops < 20, "{stats:?}");
        assert!(max_depth <= 14, "depth {max_depth}");
        assert!(stats.late < 60, "{stats:?}");
    }

    #[test]
    fn talk_spurt_pause_and_restart_reanchors_without_missing_burst() {
        // 50 packets, 2 s of silence (the timestamp runs on), 50 packets with the marker.
        let mut sent = send(50, STEP, 0, 1000, 1.0, constant(30));
        let second = send(50, STEP, 50, ts_of(150), 1.0, constant(30));
        sent.extend(second.into_iter().map(|s| Sent {
            at: s.at + FRAME * 150,
            ..s
        }));
        let mut rx = Receiver::new(fixed_60ms());
        rx.run(&sent, 230, STEP, false);
        let core = rx.core();
        assert_eq!(
            &core[50..54],
            &[Out::Missing, Out::Missing, Out::Missing, Out::Empty]
        );
        assert_eq!(core[150], Out::Packet(ts_of(150)), "second spurt on time");
        assert!(core[54..150].iter().all(|&o| o == Out::Empty));
        assert!(core[150..200].iter().all(|&o| matches!(o, Out::Packet(_))));
        let stats = rx.jb.stats();
        // Three frames concealed at the end of each spurt.
        assert_eq!(
            (stats.talk_spurts, stats.played, stats.concealed),
            (2, 100, 6)
        );
    }

    #[test]
    fn short_pause_before_a_marker_gives_empty_not_missing() {
        let mut sent = send(50, STEP, 0, 1000, 1.0, constant(30));
        let second = send(50, STEP, 50, ts_of(52), 1.0, constant(30));
        sent.extend(second.into_iter().map(|s| Sent {
            at: s.at + FRAME * 52,
            ..s
        }));
        let mut rx = Receiver::new(fixed_60ms());
        rx.run(&sent, 120, STEP, false);
        let core = rx.core();
        assert_eq!(&core[50..52], &[Out::Empty, Out::Empty]);
        assert_eq!(core[52], Out::Packet(ts_of(52)));
        let stats = rx.jb.stats();
        assert_eq!((stats.talk_spurts, stats.played), (2, 100));
        assert_eq!(stats.concealed, 3, "only at the very end");
    }

    #[test]
    fn reset_then_new_source_starts_a_new_timeline() {
        let first = send(50, STEP, 0, 1000, 1.0, constant(30));
        let mut rx = Receiver::new(fixed_60ms());
        rx.run(&first, 40, STEP, false);
        let queued = rx.jb.stats().depth as u64;
        assert!(queued > 0);
        rx.jb.reset();
        assert_eq!(rx.jb.stats().dropped, queued);
        assert_eq!(rx.jb.pop(rx.t0 + FRAME * 40), Pop::Empty);
        // A new SSRC: unrelated sequence numbers and timestamps, from 1 s on.
        let second: Vec<Sent> = send(50, STEP, 40_000, 3_000_000_000, 1.0, constant(30))
            .into_iter()
            .map(|s| Sent {
                at: s.at + Duration::from_secs(1),
                ..s
            })
            .collect();
        let mut rx2 = Receiver {
            out: Vec::new(),
            next: 0,
            ..rx
        };
        rx2.run(&second, 100, STEP, false);
        let expected: Vec<u32> = (0..50).map(|i| 3_000_000_000 + STEP * i).collect();
        assert_eq!(rx2.played(), expected);
        let stats = rx2.jb.stats();
        assert_eq!(
            (stats.late, stats.talk_spurts, stats.timeline_jumps),
            (0, 2, 0)
        );
    }

    #[test]
    fn timestamp_jump_without_reset_is_remapped_and_plays_on() {
        let mut sent = send(50, STEP, 0, 1000, 1.0, constant(30));
        // Same sequence space, a new timestamp origin (another source behind the same SSRC).
        let second = send(50, STEP, 50, 0x8000_0000, 1.0, constant(30));
        sent.extend(second.into_iter().map(|s| Sent {
            at: s.at + FRAME * 50,
            marker: false,
            ..s
        }));
        let mut rx = Receiver::new(fixed_60ms());
        rx.run(&sent, 120, STEP, false);
        let expected: Vec<u32> = (0..50)
            .map(ts_of)
            .chain((0..50).map(|i| 0x8000_0000 + STEP * i))
            .collect();
        assert_eq!(rx.played(), expected);
        assert_eq!(
            rx.core()[..100]
                .iter()
                .filter(|&&o| o == Out::Missing)
                .count(),
            0
        );
        let stats = rx.jb.stats();
        assert_eq!(
            (stats.timeline_jumps, stats.late, stats.concealed),
            (1, 0, 3)
        );
    }

    #[test]
    fn forty_ms_packets_are_returned_once_and_cover_two_ticks() {
        let sent = send(100, 2 * STEP, 0, 1000, 1.0, constant(30));
        let mut rx = Receiver::new(fixed_60ms());
        rx.run(&sent, 220, 2 * STEP, false);
        let expected: Vec<u32> = (0..100).map(|i| 1000 + 2 * STEP * i).collect();
        assert_eq!(rx.played(), expected);
        let stats = rx.jb.stats();
        assert_eq!(
            (stats.concealed, stats.adjust_inserts, stats.adjust_drops),
            (3, 0, 0)
        );
        assert_eq!(
            rx.core()[..100]
                .iter()
                .filter(|&&o| o == Out::Missing)
                .count(),
            0
        );
    }

    #[test]
    fn ten_ms_packets_are_returned_two_per_tick_and_a_lost_one_is_not_concealed() {
        let sent = send(200, STEP / 2, 0, 1000, 1.0, |i| {
            (i != 101).then_some(Duration::from_millis(30))
        });
        let mut rx = Receiver::new(fixed_60ms());
        rx.run(&sent, 110, STEP / 2, false);
        let expected: Vec<u32> = (0..200)
            .filter(|&i| i != 101)
            .map(|i| 1000 + STEP / 2 * i)
            .collect();
        assert_eq!(rx.played(), expected);
        assert_eq!(
            rx.core()[..199]
                .iter()
                .filter(|&&o| o == Out::Missing)
                .count(),
            0
        );
    }

    #[test]
    fn consumed_hint_sets_the_duration_when_it_cannot_be_inferred() {
        // 40 ms packets whose sequence numbers step by 2: the duration is never inferred.
        let sent: Vec<Sent> = send(50, 2 * STEP, 0, 1000, 1.0, constant(30))
            .into_iter()
            .map(|s| Sent {
                seq: s.seq.wrapping_mul(2),
                ..s
            })
            .collect();
        let mut with_hint = Receiver::new(fixed_60ms());
        with_hint.run(&sent, 110, 2 * STEP, true);
        assert_eq!(with_hint.played().len(), 50);
        assert_eq!(with_hint.jb.stats().concealed, 3, "only at the end");
        let mut without = Receiver::new(fixed_60ms());
        without.run(&sent, 110, 2 * STEP, false);
        assert!(
            without.jb.stats().concealed > 3,
            "half of each packet taken as lost"
        );
    }

    #[test]
    fn overflow_drops_the_oldest_packet() {
        let mut jb = JitterBuffer::new(JitterConfig::default(), RATE, STEP);
        let now = Instant::now();
        for i in 0..60u16 {
            jb.push(now, i, u32::from(i) * STEP, 0, false, &[0; 160]);
        }
        let stats = jb.stats();
        assert_eq!((stats.depth, stats.dropped), (50, 10));
        // The oldest went: playout starts at packet 10.
        let Pop::Packet { timestamp, .. } = jb.pop(now + Duration::from_millis(60)) else {
            panic!("expected a packet");
        };
        assert_eq!(timestamp, 10 * STEP);
    }

    #[test]
    fn oversized_payload_is_dropped() {
        let mut jb = JitterBuffer::new(JitterConfig::default(), RATE, STEP);
        jb.push(Instant::now(), 1, 0, 0, false, &vec![0; MAX_PAYLOAD + 1]);
        assert_eq!((jb.stats().dropped, jb.stats().depth), (1, 0));
    }

    #[test]
    fn config_validation_names_the_problem() {
        assert_eq!(JitterConfig::default().validate(), Ok(()));
        let swapped = JitterConfig {
            min_delay: Duration::from_millis(300),
            ..JitterConfig::default()
        };
        assert!(matches!(
            swapped.validate(),
            Err(JitterError::MinAboveMax { .. })
        ));
        let no_room = JitterConfig {
            max_packets: 0,
            ..JitterConfig::default()
        };
        assert_eq!(no_room.validate(), Err(JitterError::NoPackets));
    }
}
