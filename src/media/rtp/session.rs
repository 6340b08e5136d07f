//! One RTP leg that the server terminates or relays: [`RtpSession`]. SANS-IO.
//!
//! Receive side (about the remote source):
//! * sequence validation of RFC 3550 §A.1: probation of `MIN_SEQUENTIAL` packets, 16-bit
//!   wrap-around into the extended highest sequence number, and a resync after two
//!   sequential packets beyond `MAX_DROPOUT`. A 128-packet window of seen sequence numbers
//!   also tells duplicates from late packets, so that duplicates do not hide loss.
//! * a new remote SSRC (re-INVITE, a PBX switching streams) runs its own probation next to the
//!   current source; once it validates, the old source's counts are folded into the leg
//!   totals and the new one starts from a clean state, with no loss counted for the switch.
//! * expected / lost / fraction lost (§A.3) and interarrival jitter (§A.8) in timestamp units
//!   at the payload clock rate ([`RtpSession::set_clock_rate`]). A transit jump of more than
//!   3 s is taken as a timestamp discontinuity of the sender, not as jitter.
//! * RTCP in (§6.4): the LSR/arrival of the remote SR for our DLSR, and from a report block
//!   about our SSRC the remote's loss and jitter and the round-trip time
//!   RTT = A − LSR − DLSR (§6.4.1).
//!
//! Send side (what the far end sees from us): one SSRC of ours, sequence numbers that run on
//! by one and timestamps that never go back, whether packets are generated here
//! ([`RtpSession::next_header`]) or forwarded from another party ([`RtpSession::rewrite`]).
//! Each switch of source (another incoming SSRC, a generated prompt, a restart of the
//! forwarded stream) re-offsets sequence and timestamp so that the stream continues, advances
//! the timestamp by the wall time since the last packet (at least one frame), and sets the
//! marker bit so that the far end's jitter buffer resynchronises.
//!
//! RTCP out: [`RtpSession::poll_rtcp`] gives an SR (if we sent since the last report) or RR,
//! with one report block about the remote source and an SDES CNAME, at the interval of
//! §6.3.1 for a two-party session: the fixed minimum (5 s, 2.5 s before the first report)
//! times a random factor in [0.5, 1.5). Timer reconsideration and the e−3/2 compensation are
//! not used: with two members and a fixed interval there is nothing to reconsider.
//!
//! The wall clock comes in once, as the NTP time of the `now` passed to [`RtpSession::new`];
//! later NTP times are that plus the `Instant` difference.

use super::RtpError;
use super::packet::{RtpHeader, RtpPacket, Ssrc};
use super::quality::{self, Codec, QualityInput};
use super::rtcp::{
    self, NtpTime, ReportBlock, RtcpPacket, SenderInfo, compact_to_duration, duration_to_compact,
};
use serde::Serialize;
use std::time::{Duration, Instant};

/// A source is valid after this many sequential packets (RFC 3550 §A.1).
const MIN_SEQUENTIAL: u32 = 2;
/// Largest forward jump taken as loss rather than a restart (§A.1).
const MAX_DROPOUT: u16 = 3000;
/// Largest backward step taken as a late packet rather than a restart (§A.1).
const MAX_MISORDER: u16 = 100;
const RTP_SEQ_MOD: u32 = 1 << 16;
/// Transit jumps beyond this many seconds are sender discontinuities, not jitter.
const TRANSIT_JUMP_SECS: u32 = 3;

/// How an [`RtpSession`] is set up.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionConfig {
    /// Our SSRC (random, chosen by the caller).
    pub ssrc: Ssrc,
    /// Our SDES CNAME (RFC 3550 §6.5.1), at most 255 octets are sent.
    pub cname: String,
    /// Clock rate of the payload in Hz (8000 for G.711, 8000 for G.722 too, 48000 for Opus).
    pub clock_rate: u32,
    /// Seed of the session's random numbers (initial sequence and timestamp, RTCP timer).
    pub seed: u64,
    /// The wall clock, as NTP time, at the `now` given to [`RtpSession::new`].
    pub ntp_at_start: NtpTime,
    /// The RTCP report interval before randomisation (RFC 3550 §6.2: 5 s minimum).
    pub rtcp_interval: Duration,
    /// The codec, for the MOS estimate.
    pub codec: Codec,
}

/// The statistics of one leg (for the call record, the API and metrics).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LegStats {
    /// Our SSRC.
    pub local_ssrc: Ssrc,
    /// The remote's current validated SSRC.
    pub remote_ssrc: Option<Ssrc>,
    /// RTP packets we sent.
    pub packets_sent: u64,
    /// RTP payload octets we sent.
    pub octets_sent: u64,
    /// RTP packets received from the remote (every parsed packet, all sources).
    pub packets_received: u64,
    /// RTP payload octets received.
    pub octets_received: u64,
    /// Packets expected from the remote, over all its validated sources (§A.3).
    pub packets_expected: u64,
    /// Packets lost (expected minus unique packets received; never negative here).
    pub packets_lost: u64,
    /// Duplicate packets received.
    pub duplicates: u64,
    /// `packets_lost / packets_expected` (0.0–1.0).
    pub loss_fraction: f64,
    /// Interarrival jitter of the current remote source in ms.
    pub jitter_ms: f64,
    /// Round-trip time from the last report about us that had an LSR.
    pub rtt_ms: Option<f64>,
    /// Fraction lost the remote reported about our stream (0.0–1.0).
    pub remote_loss_fraction: Option<f64>,
    /// Cumulative loss the remote reported about our stream.
    pub remote_cumulative_lost: Option<i32>,
    /// Jitter the remote reported about our stream, in ms.
    pub remote_jitter_ms: Option<f64>,
    /// E-model MOS of what we receive (our loss and jitter, the RTT if known), once anything
    /// was received.
    pub mos: Option<f64>,
}

/// The RTP/RTCP state of one leg.
#[derive(Debug, Clone)]
pub struct RtpSession {
    ssrc: Ssrc,
    cname: Box<[u8]>,
    clock_rate: u32,
    codec: Codec,
    jitter_buffer_delay: Option<Duration>,
    event_payload_type: Option<u8>,
    epoch: Instant,
    ntp_epoch: NtpTime,
    rng: SplitMix64,
    // Receive side.
    source: Option<Source>,
    candidate: Option<Source>,
    received_packets: u64,
    received_octets: u64,
    /// Expected, lost and duplicate counts of sources no longer current.
    folded_expected: u64,
    folded_lost: u64,
    folded_duplicates: u64,
    last_sr: Option<(u32, Instant)>,
    remote_report: Option<ReportBlock>,
    rtt: Option<Duration>,
    // Send side.
    send: SendState,
    // RTCP timer.
    rtcp_interval: Duration,
    next_rtcp: Instant,
    sent_since_report: bool,
}

/// The receive state of one remote source (RFC 3550 §A.1 `source`).
#[derive(Debug, Clone, Copy)]
struct Source {
    ssrc: Ssrc,
    max_seq: u16,
    cycles: u32,
    base_seq: u32,
    bad_seq: u32,
    probation: u32,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    duplicates: u32,
    /// Bit i set: extended sequence `max - i` was received.
    seen: u128,
    transit: Option<i32>,
    /// Interarrival jitter in timestamp units (§A.8).
    jitter: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SeqOutcome {
    /// Counted: in order, late or after a gap.
    Valid,
    /// A duplicate; not counted.
    Duplicate,
    /// Probation or a suspected restart; not counted yet.
    Pending,
    /// Two sequential packets after a big jump: the sender restarted its sequence.
    Restart,
}

#[derive(Debug, Clone, Copy)]
struct SendState {
    started: bool,
    /// Highest sequence number and timestamp sent, and when the highest timestamp was sent.
    seq: u16,
    ts: u32,
    ts_at: Option<Instant>,
    last_at: Option<Instant>,
    packets: u64,
    octets: u64,
    mode: SendMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendMode {
    Idle,
    Generated,
    Forward {
        ssrc: Ssrc,
        seq_offset: u16,
        ts_offset: u32,
        max_in_seq: u16,
    },
}

/// SplitMix64: small, fast, deterministic from a seed; not for cryptography (RFC 3550 only
/// needs the initial values to be unpredictable enough for SSRC/plaintext-attack hygiene).
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SessionConfig {
    /// A configuration with 8 kHz G.711, a 5 s RTCP interval and the NTP epoch as start time.
    pub fn new(ssrc: Ssrc, cname: impl Into<String>, seed: u64) -> SessionConfig {
        SessionConfig {
            ssrc,
            cname: cname.into(),
            clock_rate: 8000,
            seed,
            ntp_at_start: NtpTime::default(),
            rtcp_interval: Duration::from_secs(5),
            codec: Codec::G711,
        }
    }
}

impl RtpSession {
    /// A session starting at `now`.
    pub fn new(now: Instant, config: SessionConfig) -> RtpSession {
        let mut rng = SplitMix64(config.seed);
        let seq = rng.next() as u16;
        let ts = rng.next() as u32;
        let mut s = RtpSession {
            ssrc: config.ssrc,
            cname: config.cname.into_bytes().into_boxed_slice(),
            clock_rate: config.clock_rate.max(1),
            codec: config.codec,
            jitter_buffer_delay: None,
            event_payload_type: None,
            epoch: now,
            ntp_epoch: config.ntp_at_start,
            rng,
            source: None,
            candidate: None,
            received_packets: 0,
            received_octets: 0,
            folded_expected: 0,
            folded_lost: 0,
            folded_duplicates: 0,
            last_sr: None,
            remote_report: None,
            rtt: None,
            send: SendState {
                started: false,
                // The first packet sent uses seq + 1 and ts (see `start_point`).
                seq: seq.wrapping_sub(1),
                ts,
                ts_at: None,
                last_at: None,
                packets: 0,
                octets: 0,
                mode: SendMode::Idle,
            },
            rtcp_interval: config.rtcp_interval,
            next_rtcp: now,
            sent_since_report: false,
        };
        // §6.3.1: the first report after half the minimum interval.
        s.next_rtcp = now + s.randomised(s.rtcp_interval / 2);
        s
    }

    /// Our SSRC.
    pub fn ssrc(&self) -> Ssrc {
        self.ssrc
    }

    /// Set the payload clock rate (Hz) for jitter, SR timestamps and source switches.
    pub fn set_clock_rate(&mut self, rate_hz: u32) {
        let rate = rate_hz.max(1);
        if rate != self.clock_rate {
            for s in self.source.iter_mut().chain(self.candidate.iter_mut()) {
                s.jitter *= f64::from(rate) / f64::from(self.clock_rate);
                s.transit = None;
            }
            self.clock_rate = rate;
        }
    }

    /// Set the codec used for the MOS estimate.
    pub fn set_codec(&mut self, codec: Codec) {
        self.codec = codec;
    }

    /// Set the delay of the receiving jitter buffer used for the MOS estimate. Without it the
    /// estimate is 20 ms + 2 × jitter.
    pub fn set_jitter_buffer_delay(&mut self, delay: Duration) {
        self.jitter_buffer_delay = Some(delay);
    }

    /// The payload type of RFC 4733 telephone events: such packets repeat one timestamp for a
    /// whole event, so they are counted but left out of the jitter estimate.
    pub fn set_event_payload_type(&mut self, pt: Option<u8>) {
        self.event_payload_type = pt;
    }

    /// Account for an RTP packet received from the remote.
    pub fn on_rtp(&mut self, now: Instant, packet: &RtpPacket<'_>) {
        self.received_packets += 1;
        self.received_octets += packet.payload().len() as u64;
        let ssrc = packet.ssrc();
        let seq = packet.sequence();
        let arrival = self.arrival_ts(now);
        let jitter_ok = self.event_payload_type != Some(packet.payload_type());
        let jump = self.clock_rate.saturating_mul(TRANSIT_JUMP_SECS);

        if let Some(src) = self.source.as_mut().filter(|s| s.ssrc == ssrc) {
            match src.update_seq(seq) {
                SeqOutcome::Valid => {
                    if jitter_ok {
                        src.update_jitter(arrival, packet.timestamp(), jump);
                    }
                }
                SeqOutcome::Restart => {
                    let old = *src;
                    self.fold(&old);
                    let src = self.source.as_mut().expect("matched above");
                    src.restart(seq);
                    if jitter_ok {
                        src.update_jitter(arrival, packet.timestamp(), jump);
                    }
                }
                SeqOutcome::Duplicate | SeqOutcome::Pending => {}
            }
            return;
        }

        // Another SSRC: probation next to the current source.
        let cand = match &mut self.candidate {
            Some(c) if c.ssrc == ssrc => c,
            slot => slot.insert(Source::new(ssrc, seq)),
        };
        if matches!(
            cand.update_seq(seq),
            SeqOutcome::Valid | SeqOutcome::Restart
        ) {
            if jitter_ok {
                cand.update_jitter(arrival, packet.timestamp(), jump);
            }
            let new = self.candidate.take();
            if let Some(old) = self.source.take() {
                self.fold(&old);
            }
            self.source = new;
        }
    }

    /// Handle a compound RTCP packet from the remote.
    pub fn on_rtcp(&mut self, now: Instant, buf: &[u8]) -> Result<(), RtpError> {
        let compound = rtcp::parse_compound(buf)?;
        for p in compound.packets() {
            match p {
                RtcpPacket::SenderReport { info, reports, .. } => {
                    self.last_sr = Some((info.ntp.middle32(), now));
                    for b in reports {
                        self.on_report_block(now, &b);
                    }
                }
                RtcpPacket::ReceiverReport { reports, .. } => {
                    for b in reports {
                        self.on_report_block(now, &b);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The header for the next packet generated here (a prompt, a tone, mixed or transcoded
    /// audio) with `payload_len` octets of payload, counted as sent at `now`.
    ///
    /// `timestamp_step` is the timestamp advance since our previous generated packet (the
    /// samples per packet, more after silence). After forwarded packets the step is at least
    /// the wall time since the last packet, and the marker bit is set.
    pub fn next_header(
        &mut self,
        now: Instant,
        payload_type: u8,
        marker: bool,
        timestamp_step: u32,
        payload_len: usize,
    ) -> RtpHeader {
        let (seq, ts, marker) = match self.send.mode {
            SendMode::Generated => (
                self.send.seq.wrapping_add(1),
                self.send.ts.wrapping_add(timestamp_step),
                marker,
            ),
            SendMode::Idle | SendMode::Forward { .. } => {
                let (seq, ts, switched) = self.start_point(now, timestamp_step);
                (seq, ts, marker || switched)
            }
        };
        self.send.mode = SendMode::Generated;
        self.sent(now, seq, ts, payload_len);
        RtpHeader {
            marker,
            payload_type,
            sequence: seq,
            timestamp: ts,
            ssrc: self.ssrc,
        }
    }

    /// Build the next generated packet into `out` (cleared first): [`Self::next_header`] +
    /// the header write.
    pub fn write_packet(
        &mut self,
        now: Instant,
        payload_type: u8,
        marker: bool,
        timestamp_step: u32,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) {
        let h = self.next_header(now, payload_type, marker, timestamp_step, payload.len());
        out.clear();
        h.write(payload, out);
    }

    /// Restamp a packet forwarded from another party in place: our SSRC, and its sequence
    /// number and timestamp offset so that the far end sees one continuous stream. A new
    /// incoming SSRC, a return from generated packets or a restart of the incoming sequence
    /// is a discontinuity: the offsets are recomputed and the marker bit is set. Payload type,
    /// CSRCs, extension and payload are left alone. Counted as sent at `now`.
    pub fn rewrite(&mut self, now: Instant, packet: &mut [u8]) -> Result<RtpHeader, RtpError> {
        let p = RtpPacket::parse(packet)?;
        let (in_ssrc, in_seq, in_ts) = (p.ssrc(), p.sequence(), p.timestamp());
        let payload_len = p.payload().len();
        let mut marker = p.marker();

        let continuing = match &mut self.send.mode {
            SendMode::Forward {
                ssrc,
                seq_offset,
                ts_offset,
                max_in_seq,
            } if *ssrc == in_ssrc => {
                let udelta = in_seq.wrapping_sub(*max_in_seq);
                if udelta < MAX_DROPOUT {
                    *max_in_seq = in_seq;
                    Some((*seq_offset, *ts_offset))
                } else if udelta > u16::MAX - MAX_MISORDER {
                    Some((*seq_offset, *ts_offset))
                } else {
                    None
                }
            }
            _ => None,
        };
        let (seq_offset, ts_offset) = match continuing {
            Some(o) => o,
            None => {
                let frame = crate::media::frame_len(self.clock_rate) as u32;
                let (seq, ts, switched) = self.start_point(now, frame);
                marker |= switched;
                let seq_offset = seq.wrapping_sub(in_seq);
                let ts_offset = ts.wrapping_sub(in_ts);
                self.send.mode = SendMode::Forward {
                    ssrc: in_ssrc,
                    seq_offset,
                    ts_offset,
                    max_in_seq: in_seq,
                };
                (seq_offset, ts_offset)
            }
        };
        let header = RtpHeader {
            marker,
            payload_type: p.payload_type(),
            sequence: in_seq.wrapping_add(seq_offset),
            timestamp: in_ts.wrapping_add(ts_offset),
            ssrc: self.ssrc,
        };
        packet[1] = (u8::from(marker) << 7) | (packet[1] & 0x7f);
        packet[2..4].copy_from_slice(&header.sequence.to_be_bytes());
        packet[4..8].copy_from_slice(&header.timestamp.to_be_bytes());
        packet[8..12].copy_from_slice(&header.ssrc.0.to_be_bytes());
        self.sent(now, header.sequence, header.timestamp, payload_len);
        Ok(header)
    }

    /// When the next RTCP report is due.
    pub fn poll_timeout(&self) -> Instant {
        self.next_rtcp
    }

    /// The compound RTCP report due at `now`, if any (see [`Self::poll_rtcp_into`]).
    pub fn poll_rtcp(&mut self, now: Instant) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        self.poll_rtcp_into(now, &mut out).then_some(out)
    }

    /// If a report is due at `now`, write it into `out` (cleared first), schedule the next
    /// one and return true: an SR if we sent RTP since the last report, else an RR; with a
    /// report block about the remote source if we have one, and our SDES CNAME.
    pub fn poll_rtcp_into(&mut self, now: Instant, out: &mut Vec<u8>) -> bool {
        if now < self.next_rtcp {
            return false;
        }
        out.clear();
        let block = self.report_block(now);
        if self.sent_since_report {
            let info = SenderInfo {
                ntp: self.ntp_at(now),
                rtp_timestamp: self.rtp_ts_at(now),
                packet_count: self.send.packets as u32,
                octet_count: self.send.octets as u32,
            };
            rtcp::write_sr(self.ssrc, &info, block.as_ref(), &self.cname, out);
        } else {
            rtcp::write_rr(self.ssrc, block.as_ref(), &self.cname, out);
        }
        self.sent_since_report = false;
        self.next_rtcp = now + self.randomised(self.rtcp_interval);
        true
    }

    /// The leg's statistics now.
    pub fn stats(&self) -> LegStats {
        let (cur_expected, cur_lost, cur_dups) = self
            .source
            .as_ref()
            .map(|s| {
                (
                    s.expected(),
                    s.lost().max(0) as u64,
                    u64::from(s.duplicates),
                )
            })
            .unwrap_or_default();
        let expected = self.folded_expected + cur_expected;
        let lost = self.folded_lost + cur_lost;
        let loss_fraction = if expected == 0 {
            0.0
        } else {
            (lost as f64 / expected as f64).min(1.0)
        };
        let rate = f64::from(self.clock_rate);
        let jitter_ms = self.source.map(|s| s.jitter / rate * 1000.0).unwrap_or(0.0);
        let rtt_ms = self.rtt.map(|d| d.as_secs_f64() * 1000.0);
        let mos = (expected > 0).then(|| {
            let jb = self
                .jitter_buffer_delay
                .map(|d| d.as_secs_f64() * 1000.0)
                .unwrap_or(20.0 + 2.0 * jitter_ms);
            quality::mos(QualityInput {
                codec: self.codec,
                packet_loss: loss_fraction,
                burst_ratio: 1.0,
                rtt_ms: rtt_ms.unwrap_or(0.0),
                jitter_buffer_ms: jb,
            })
        });
        LegStats {
            local_ssrc: self.ssrc,
            remote_ssrc: self.source.map(|s| s.ssrc),
            packets_sent: self.send.packets,
            octets_sent: self.send.octets,
            packets_received: self.received_packets,
            octets_received: self.received_octets,
            packets_expected: expected,
            packets_lost: lost,
            duplicates: self.folded_duplicates + cur_dups,
            loss_fraction,
            jitter_ms,
            rtt_ms,
            remote_loss_fraction: self
                .remote_report
                .map(|b| f64::from(b.fraction_lost) / 256.0),
            remote_cumulative_lost: self.remote_report.map(|b| b.cumulative_lost),
            remote_jitter_ms: self
                .remote_report
                .map(|b| f64::from(b.jitter) / rate * 1000.0),
            mos,
        }
    }

    /// Our NTP time at `now`.
    pub fn ntp_at(&self, now: Instant) -> NtpTime {
        self.ntp_epoch
            .add(now.saturating_duration_since(self.epoch))
    }

    fn on_report_block(&mut self, now: Instant, b: &ReportBlock) {
        if b.ssrc != self.ssrc {
            return;
        }
        self.remote_report = Some(*b);
        if b.last_sr == 0 {
            return;
        }
        // RFC 3550 §6.4.1: RTT = A - LSR - DLSR, all in 1/65536 s.
        let a = self.ntp_at(now).middle32();
        let rtt = a
            .wrapping_sub(b.last_sr)
            .wrapping_sub(b.delay_since_last_sr);
        // A negative result (clock trouble, a forged block) is no measurement.
        if (rtt as i32) >= 0 {
            self.rtt = Some(compact_to_duration(rtt));
        }
    }

    /// The report block about the current remote source, closing the report interval.
    fn report_block(&mut self, now: Instant) -> Option<ReportBlock> {
        let last_sr = self.last_sr;
        let s = self.source.as_mut()?;
        let expected = s.expected() as u32;
        let expected_interval = expected.wrapping_sub(s.expected_prior);
        s.expected_prior = expected;
        let received_interval = s.received.wrapping_sub(s.received_prior);
        s.received_prior = s.received;
        let lost_interval = i64::from(expected_interval) - i64::from(received_interval);
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / i64::from(expected_interval)).min(255) as u8
        };
        let (lsr, dlsr) = match last_sr {
            Some((lsr, at)) => (lsr, duration_to_compact(now.saturating_duration_since(at))),
            None => (0, 0),
        };
        Some(ReportBlock {
            ssrc: s.ssrc,
            fraction_lost,
            cumulative_lost: s.lost().clamp(-0x80_0000, 0x7f_ffff) as i32,
            highest_seq: s.extended_max(),
            jitter: s.jitter as u32,
            last_sr: lsr,
            delay_since_last_sr: dlsr,
        })
    }

    fn fold(&mut self, old: &Source) {
        self.folded_expected += old.expected();
        self.folded_lost += old.lost().max(0) as u64;
        self.folded_duplicates += u64::from(old.duplicates);
    }

    /// Sequence and timestamp for the first packet after a switch of what we send, and
    /// whether it is a switch (rather than the very first packet).
    fn start_point(&self, now: Instant, min_step: u32) -> (u16, u32, bool) {
        let seq = self.send.seq.wrapping_add(1);
        if !self.send.started {
            return (seq, self.send.ts, false);
        }
        let elapsed = self
            .send
            .ts_at
            .map(|at| self.duration_to_ts(now.saturating_duration_since(at)))
            .unwrap_or(0);
        (seq, self.send.ts.wrapping_add(elapsed.max(min_step)), true)
    }

    fn sent(&mut self, now: Instant, seq: u16, ts: u32, payload_len: usize) {
        let s = &mut self.send;
        if !s.started || (seq.wrapping_sub(s.seq) as i16) > 0 {
            s.seq = seq;
        }
        if !s.started || (ts.wrapping_sub(s.ts) as i32) > 0 {
            s.ts = ts;
            s.ts_at = Some(now);
        }
        s.started = true;
        s.last_at = Some(now);
        s.packets += 1;
        s.octets += payload_len as u64;
        self.sent_since_report = true;
    }

    /// The RTP timestamp of `now` on our sending timeline (for the SR).
    fn rtp_ts_at(&self, now: Instant) -> u32 {
        match self.send.ts_at {
            Some(at) => self
                .send
                .ts
                .wrapping_add(self.duration_to_ts(now.saturating_duration_since(at))),
            None => self.send.ts,
        }
    }

    fn arrival_ts(&self, now: Instant) -> u32 {
        self.duration_to_ts(now.saturating_duration_since(self.epoch))
    }

    fn duration_to_ts(&self, d: Duration) -> u32 {
        (d.as_nanos() * u128::from(self.clock_rate) / 1_000_000_000) as u32
    }

    /// `base` × a random factor in [0.5, 1.5) (RFC 3550 §6.3.1).
    fn randomised(&mut self, base: Duration) -> Duration {
        base.mul_f64(0.5 + self.rng.next_f64())
    }
}

impl Source {
    /// A source seen for the first time: on probation (§A.1).
    fn new(ssrc: Ssrc, seq: u16) -> Source {
        let mut s = Source {
            ssrc,
            max_seq: 0,
            cycles: 0,
            base_seq: 0,
            bad_seq: 0,
            probation: MIN_SEQUENTIAL,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            duplicates: 0,
            seen: 0,
            transit: None,
            jitter: 0.0,
        };
        s.init_seq(seq);
        s.max_seq = seq.wrapping_sub(1);
        s
    }

    fn init_seq(&mut self, seq: u16) {
        self.base_seq = u32::from(seq);
        self.max_seq = seq;
        self.bad_seq = RTP_SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
        self.received_prior = 0;
        self.expected_prior = 0;
        self.duplicates = 0;
        self.seen = 0;
    }

    /// A sequence restart of the same SSRC: counts start again from `seq` (already counted).
    fn restart(&mut self, seq: u16) {
        self.init_seq(seq);
        self.received = 1;
        self.seen = 1;
        self.transit = None;
    }

    /// RFC 3550 §A.1 `update_seq`, plus duplicate detection in a 128-packet window.
    fn update_seq(&mut self, seq: u16) -> SeqOutcome {
        let udelta = seq.wrapping_sub(self.max_seq);
        if self.probation > 0 {
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    self.init_seq(seq);
                    self.received = 1;
                    self.seen = 1;
                    return SeqOutcome::Valid;
                }
            } else {
                self.probation = MIN_SEQUENTIAL - 1;
                self.max_seq = seq;
            }
            return SeqOutcome::Pending;
        }
        if udelta == 0 {
            self.duplicates += 1;
            return SeqOutcome::Duplicate;
        }
        if udelta < MAX_DROPOUT {
            // In order, with a permissible gap.
            if seq < self.max_seq {
                self.cycles += RTP_SEQ_MOD;
            }
            self.max_seq = seq;
            self.seen = if udelta >= 128 {
                0
            } else {
                self.seen << udelta
            } | 1;
        } else if u32::from(udelta) <= RTP_SEQ_MOD - u32::from(MAX_MISORDER) {
            // A very large jump: a restart if the next packet follows it.
            if u32::from(seq) == self.bad_seq {
                return SeqOutcome::Restart;
            }
            self.bad_seq = (u32::from(seq) + 1) & (RTP_SEQ_MOD - 1);
            return SeqOutcome::Pending;
        } else {
            // Late (reordered) or a duplicate of an older packet.
            let behind = RTP_SEQ_MOD - u32::from(udelta);
            if u64::from(self.extended_max()) < u64::from(self.base_seq) + u64::from(behind) {
                // From before the first counted packet: the expected count does not include
                // it, so counting it would hide a loss.
                return SeqOutcome::Pending;
            }
            if behind < 128 {
                let bit = 1u128 << behind;
                if self.seen & bit != 0 {
                    self.duplicates += 1;
                    return SeqOutcome::Duplicate;
                }
                self.seen |= bit;
            }
        }
        self.received += 1;
        SeqOutcome::Valid
    }

    /// RFC 3550 §A.8 interarrival jitter, `arrival` in timestamp units.
    fn update_jitter(&mut self, arrival: u32, timestamp: u32, jump: u32) {
        let transit = arrival.wrapping_sub(timestamp) as i32;
        if let Some(prev) = self.transit {
            let d = transit.wrapping_sub(prev).unsigned_abs();
            if d <= jump {
                self.jitter += (f64::from(d) - self.jitter) / 16.0;
            }
        }
        self.transit = Some(transit);
    }

    fn extended_max(&self) -> u32 {
        self.cycles.wrapping_add(u32::from(self.max_seq))
    }

    fn expected(&self) -> u64 {
        if self.probation > 0 {
            return 0;
        }
        (u64::from(self.extended_max()) + 1).saturating_sub(u64::from(self.base_seq))
    }

    fn lost(&self) -> i64 {
        self.expected() as i64 - i64::from(self.received)
    }
}

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}
