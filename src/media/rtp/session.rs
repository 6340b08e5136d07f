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
//!   Packets of the old SSRC still in flight (for 250 ms) do not switch back.
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
/// After a switch of remote SSRC, packets of the old SSRC still in flight do not switch back
/// for this long.
const RETIRED_HOLD_OFF: Duration = Duration::from_millis(250);

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

impl From<LegStats> for crate::store::LegMediaStats {
    /// What the call record keeps of a leg's statistics.
    fn from(s: LegStats) -> Self {
        crate::store::LegMediaStats {
            packets_received: s.packets_received,
            packets_sent: s.packets_sent,
            packets_lost: s.packets_lost,
            jitter_ms: s.jitter_ms,
            rtt_ms: s.rtt_ms,
            mos: s.mos,
        }
    }
}

/// The header fields of a received packet that [`RtpSession::restamp`] needs, read once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incoming {
    pub ssrc: Ssrc,
    pub sequence: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub payload_type: u8,
    pub payload_len: usize,
}

impl Incoming {
    /// The fields of `packet`.
    pub fn of(packet: &RtpPacket<'_>) -> Incoming {
        Incoming {
            ssrc: packet.ssrc(),
            sequence: packet.sequence(),
            timestamp: packet.timestamp(),
            marker: packet.marker(),
            payload_type: packet.payload_type(),
            payload_len: packet.payload().len(),
        }
    }
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
    /// The SSRC replaced by the current source, and when.
    retired: Option<(Ssrc, Instant)>,
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
            retired: None,
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

        // Another SSRC: probation next to the current source, unless it is the tail of the
        // source just replaced.
        if let Some((old, at)) = self.retired
            && old == ssrc
            && now.saturating_duration_since(at) < RETIRED_HOLD_OFF
        {
            return;
        }
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
                self.retired = Some((old.ssrc, now));
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
        let incoming = Incoming::of(&p);
        Ok(self.restamp(now, packet, incoming, incoming.payload_type))
    }

    /// [`Self::rewrite`] for a packet already parsed (`incoming` read from `packet`), also
    /// setting its payload type to `payload_type` (the other leg's number for the codec).
    pub fn restamp(
        &mut self,
        now: Instant,
        packet: &mut [u8],
        incoming: Incoming,
        payload_type: u8,
    ) -> RtpHeader {
        let Incoming {
            ssrc: in_ssrc,
            sequence: in_seq,
            timestamp: in_ts,
            payload_len,
            ..
        } = incoming;
        let mut marker = incoming.marker;

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
            payload_type,
            sequence: in_seq.wrapping_add(seq_offset),
            timestamp: in_ts.wrapping_add(ts_offset),
            ssrc: self.ssrc,
        };
        packet[1] = (u8::from(marker) << 7) | (payload_type & 0x7f);
        packet[2..4].copy_from_slice(&header.sequence.to_be_bytes());
        packet[4..8].copy_from_slice(&header.timestamp.to_be_bytes());
        packet[8..12].copy_from_slice(&header.ssrc.0.to_be_bytes());
        self.sent(now, header.sequence, header.timestamp, payload_len);
        header
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
        self.ntp_epoch + now.saturating_duration_since(self.epoch)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtp::rtcp::parse_compound;

    const US: Ssrc = Ssrc(0x5b5b_0001);
    const FRAME: Duration = Duration::from_millis(20);

    fn session(t0: Instant) -> RtpSession {
        RtpSession::new(t0, SessionConfig::new(US, "sb@test", 42))
    }

    fn packet(ssrc: u32, seq: u16, ts: u32) -> Vec<u8> {
        let mut v = Vec::new();
        RtpHeader {
            marker: false,
            payload_type: 0,
            sequence: seq,
            timestamp: ts,
            ssrc: Ssrc(ssrc),
        }
        .write(&[0xd5; 160], &mut v);
        v
    }

    fn feed(s: &mut RtpSession, now: Instant, ssrc: u32, seq: u16, ts: u32) {
        let buf = packet(ssrc, seq, ts);
        s.on_rtp(now, &RtpPacket::parse(&buf).expect("test packet"));
    }

    /// Feed seq numbers `seqs` of one source, sent every 20 ms, arriving without delay.
    fn feed_seqs(s: &mut RtpSession, t0: Instant, ssrc: u32, seqs: &[u16]) {
        for (i, &seq) in seqs.iter().enumerate() {
            let ts = u32::from(seq) * 160;
            feed(s, t0 + FRAME * i as u32, ssrc, seq, ts);
        }
    }

    fn block_of(report: &[u8]) -> Option<ReportBlock> {
        let c = parse_compound(report).expect("valid report");
        c.packets().find_map(|p| match p {
            RtcpPacket::SenderReport { mut reports, .. }
            | RtcpPacket::ReceiverReport { mut reports, .. } => reports.next(),
            _ => None,
        })
    }

    #[test]
    fn in_order_stream_counts_no_loss_after_probation() {
        let t0 = Instant::now();
        let mut s = session(t0);
        let seqs: Vec<u16> = (1000..1100).collect();
        feed_seqs(&mut s, t0, 0xaa, &seqs);
        let st = s.stats();
        assert_eq!(st.packets_received, 100);
        assert_eq!(st.octets_received, 16_000);
        // The first packet is probation (§A.1): the count starts at the second.
        assert_eq!(st.packets_expected, 99);
        assert_eq!(st.packets_lost, 0);
        assert_eq!(st.remote_ssrc, Some(Ssrc(0xaa)));
        assert!(st.jitter_ms < 0.001);
        let mos = st.mos.expect("received media");
        assert!(mos > 4.3, "{mos}");
    }

    #[test]
    fn sequence_wraps_at_65535_into_the_extended_highest_sequence() {
        let t0 = Instant::now();
        let mut s = session(t0);
        let seqs: Vec<u16> = (0..20).map(|i| 65_530u16.wrapping_add(i)).collect();
        feed_seqs(&mut s, t0, 0xaa, &seqs);
        assert_eq!(s.stats().packets_lost, 0);
        assert_eq!(s.stats().packets_expected, 19);
        let rr = s.poll_rtcp(t0 + Duration::from_secs(10)).expect("due");
        let b = block_of(&rr).expect("block about the remote");
        assert_eq!(b.ssrc, Ssrc(0xaa));
        assert_eq!(b.highest_seq, (1 << 16) + 13);
        assert_eq!(b.cumulative_lost, 0);
        assert_eq!(b.fraction_lost, 0);
    }

    #[test]
    fn gaps_duplicates_and_reordering_are_counted_apart() {
        let t0 = Instant::now();
        let mut s = session(t0);
        // 5 and 6 lost, 10 twice, 12/13 swapped, 15 again late, 3 again very late.
        let seqs = [
            1, 2, 3, 4, 7, 8, 9, 10, 10, 11, 13, 12, 14, 15, 16, 17, 15, 18, 3, 19, 20,
        ];
        feed_seqs(&mut s, t0, 0xaa, &seqs);
        let st = s.stats();
        assert_eq!(st.packets_expected, 19, "2..=20");
        assert_eq!(st.packets_lost, 2);
        assert_eq!(st.duplicates, 3);
        // A late packet fills its gap: 6 arrives after all.
        feed(&mut s, t0 + Duration::from_secs(1), 0xaa, 6, 960);
        assert_eq!(s.stats().packets_lost, 1);
        let rr = s.poll_rtcp(t0 + Duration::from_secs(10)).expect("due");
        let b = block_of(&rr).expect("block");
        assert_eq!(b.cumulative_lost, 1);
        assert_eq!(b.highest_seq, 20);
        // 1 of 19 lost in this interval: 256/19 = 13.
        assert_eq!(b.fraction_lost, 13);
    }

    #[test]
    fn fraction_lost_covers_only_the_last_interval() {
        let t0 = Instant::now();
        let mut s = session(t0);
        let seqs: Vec<u16> = (1..=101).filter(|n| n % 10 != 5).collect();
        feed_seqs(&mut s, t0, 0xaa, &seqs);
        let first = s.poll_rtcp(t0 + Duration::from_secs(4)).expect("due");
        assert_eq!(block_of(&first).expect("block").fraction_lost, 25); // 10 of 100
        let seqs: Vec<u16> = (102..=201).collect();
        feed_seqs(&mut s, t0 + Duration::from_secs(4), 0xaa, &seqs);
        let second = s.poll_rtcp(t0 + Duration::from_secs(20)).expect("due");
        let b = block_of(&second).expect("block");
        assert_eq!(b.fraction_lost, 0);
        assert_eq!(b.cumulative_lost, 10);
    }

    #[test]
    fn jitter_of_alternating_delay_approaches_the_delay_step() {
        let t0 = Instant::now();
        let mut s = session(t0);
        // Every other packet 10 ms late: |D| = 10 ms = 80 timestamp units each time.
        for i in 0..400u32 {
            let delay = if i % 2 == 0 {
                Duration::ZERO
            } else {
                Duration::from_millis(10)
            };
            feed(&mut s, t0 + FRAME * i + delay, 0xaa, i as u16, i * 160);
        }
        let j = s.stats().jitter_ms;
        assert!((j - 10.0).abs() < 0.1, "{j}");
    }

    #[test]
    fn jitter_of_uniform_random_delay_approaches_a_third_of_its_range() {
        // For delays uniform on [0, X], E|D| = X/3 (A.8 estimates E|D|).
        let t0 = Instant::now();
        let mut s = session(t0);
        s.set_clock_rate(48_000);
        let mut rng = SplitMix64(7);
        let mut sum = 0.0;
        let mut n = 0.0;
        for i in 0..20_000u32 {
            let delay = Duration::from_micros((rng.next_f64() * 30_000.0) as u64);
            feed(
                &mut s,
                t0 + FRAME * i + delay,
                0xaa,
                i as u16,
                i.wrapping_mul(960),
            );
            if i > 100 {
                sum += s.stats().jitter_ms;
                n += 1.0;
            }
        }
        let mean = sum / n;
        assert!((mean - 10.0).abs() < 0.5, "{mean}");
    }

    #[test]
    fn ssrc_change_restarts_the_source_without_fake_loss() {
        let t0 = Instant::now();
        let mut s = session(t0);
        let seqs: Vec<u16> = (100..150).collect();
        feed_seqs(&mut s, t0, 0xaa, &seqs);
        // The PBX switches streams: new SSRC, unrelated sequence and timestamps.
        let t1 = t0 + Duration::from_secs(1);
        for i in 0..50u32 {
            feed(
                &mut s,
                t1 + FRAME * i,
                0xbb,
                40_000 + i as u16,
                7_777_777 + i * 160,
            );
        }
        let st = s.stats();
        assert_eq!(st.remote_ssrc, Some(Ssrc(0xbb)));
        assert_eq!(st.packets_lost, 0);
        assert_eq!(st.loss_fraction, 0.0);
        assert_eq!(st.packets_expected, 49 + 49);
        assert!(st.jitter_ms < 0.001, "{}", st.jitter_ms);
        let rr = s.poll_rtcp(t1 + Duration::from_secs(10)).expect("due");
        let b = block_of(&rr).expect("block");
        assert_eq!(b.ssrc, Ssrc(0xbb));
        assert_eq!(b.highest_seq, 40_049);
        assert_eq!(b.cumulative_lost, 0);
    }

    #[test]
    fn late_packets_of_the_old_ssrc_do_not_switch_back() {
        let t0 = Instant::now();
        let mut s = session(t0);
        feed_seqs(&mut s, t0, 0xaa, &[1, 2, 3, 4]);
        feed_seqs(&mut s, t0 + FRAME * 4, 0xbb, &[500, 501]);
        // 6 and 7 of the old source were delayed in the network.
        feed_seqs(&mut s, t0 + FRAME * 6, 0xaa, &[6, 7]);
        feed_seqs(&mut s, t0 + FRAME * 8, 0xbb, &[502, 503]);
        let st = s.stats();
        assert_eq!(st.remote_ssrc, Some(Ssrc(0xbb)));
        assert_eq!(st.packets_lost, 0);
        // The old source may come back for real later (end of music on hold).
        feed_seqs(&mut s, t0 + Duration::from_secs(5), 0xaa, &[100, 101, 102]);
        assert_eq!(s.stats().remote_ssrc, Some(Ssrc(0xaa)));
        assert_eq!(s.stats().packets_lost, 0);
    }

    #[test]
    fn a_stray_packet_from_another_ssrc_does_not_switch_the_source() {
        let t0 = Instant::now();
        let mut s = session(t0);
        feed_seqs(&mut s, t0, 0xaa, &[1, 2, 3]);
        feed(&mut s, t0 + FRAME * 3, 0xbb, 900, 0);
        feed_seqs(&mut s, t0 + FRAME * 4, 0xaa, &[4, 5]);
        let st = s.stats();
        assert_eq!(st.remote_ssrc, Some(Ssrc(0xaa)));
        assert_eq!(st.packets_lost, 0);
        assert_eq!(st.packets_received, 6);
    }

    #[test]
    fn sequence_restart_on_the_same_ssrc_resyncs_after_two_packets() {
        let t0 = Instant::now();
        let mut s = session(t0);
        let mut seqs: Vec<u16> = (10..20).collect();
        seqs.extend(30_000..30_010);
        feed_seqs(&mut s, t0, 0xaa, &seqs);
        let st = s.stats();
        // 11..=19 (9) then 30_001..=30_009 counted from the restart (the first jumped
        // packet waits for confirmation).
        assert_eq!(st.packets_lost, 0);
        assert_eq!(st.packets_expected, 9 + 9);
    }

    #[test]
    fn rtt_from_a_report_block_echoing_our_sr() {
        let t0 = Instant::now();
        let mut cfg = SessionConfig::new(US, "sb@test", 1);
        cfg.ntp_at_start = NtpTime::from_unix(Duration::from_secs(1_700_000_000));
        let mut s = RtpSession::new(t0, cfg);
        s.next_header(t0, 0, true, 160, 160);
        let sr_at = s.poll_timeout();
        let sr = s.poll_rtcp(sr_at).expect("due");
        let c = parse_compound(&sr).expect("valid");
        let Some(RtcpPacket::SenderReport { ssrc, info, .. }) = c.packets().next() else {
            panic!("we sent, so an SR")
        };
        assert_eq!(ssrc, US);
        assert_eq!(info.packet_count, 1);
        assert_eq!(info.octet_count, 160);
        // The remote held our SR for 100 ms; the network adds 40 ms each way.
        let block = ReportBlock {
            ssrc: US,
            fraction_lost: 64,
            cumulative_lost: 7,
            highest_seq: 1,
            jitter: 80,
            last_sr: info.ntp.middle32(),
            delay_since_last_sr: duration_to_compact(Duration::from_millis(100)),
        };
        let mut rr = Vec::new();
        rtcp::write_rr(Ssrc(0xaa), Some(&block), b"remote", &mut rr);
        s.on_rtcp(sr_at + Duration::from_millis(180), &rr)
            .expect("valid RR");
        let st = s.stats();
        let rtt = st.rtt_ms.expect("measured");
        assert!((rtt - 80.0).abs() < 0.1, "{rtt}");
        assert_eq!(st.remote_loss_fraction, Some(0.25));
        assert_eq!(st.remote_cumulative_lost, Some(7));
        assert_eq!(st.remote_jitter_ms, Some(10.0));
    }

    #[test]
    fn report_block_about_another_ssrc_is_ignored() {
        let t0 = Instant::now();
        let mut s = session(t0);
        let block = ReportBlock {
            ssrc: Ssrc(0x1234),
            fraction_lost: 64,
            cumulative_lost: 7,
            highest_seq: 1,
            jitter: 80,
            last_sr: 5,
            delay_since_last_sr: 0,
        };
        let mut rr = Vec::new();
        rtcp::write_rr(Ssrc(0xaa), Some(&block), b"remote", &mut rr);
        s.on_rtcp(t0, &rr).expect("valid");
        assert_eq!(s.stats().rtt_ms, None);
        assert_eq!(s.stats().remote_loss_fraction, None);
        assert!(s.on_rtcp(t0, &rr[..10]).is_err());
    }

    #[test]
    fn our_rr_echoes_the_remote_sr_with_its_delay() {
        let t0 = Instant::now();
        let mut s = session(t0);
        feed_seqs(&mut s, t0, 0xaa, &[1, 2, 3]);
        let info = SenderInfo {
            ntp: NtpTime(0x1122_3344_5566_7788),
            rtp_timestamp: 0,
            packet_count: 3,
            octet_count: 480,
        };
        let mut sr = Vec::new();
        rtcp::write_sr(Ssrc(0xaa), &info, None, b"remote", &mut sr);
        s.on_rtcp(t0 + Duration::from_secs(1), &sr)
            .expect("valid SR");
        let rr = s
            .poll_rtcp(t0 + Duration::from_millis(2500 + 1000))
            .expect("due");
        assert!(matches!(
            parse_compound(&rr).expect("valid").packets().next(),
            Some(RtcpPacket::ReceiverReport { ssrc: US, .. })
        ));
        let b = block_of(&rr).expect("block");
        assert_eq!(b.last_sr, 0x3344_5566);
        assert_eq!(
            b.delay_since_last_sr,
            duration_to_compact(Duration::from_millis(2500))
        );
    }

    #[test]
    fn rtcp_intervals_are_randomised_around_the_minimum() {
        let t0 = Instant::now();
        let mut s = session(t0);
        let first = s.poll_timeout() - t0;
        assert!(
            (Duration::from_millis(1250)..Duration::from_millis(3750)).contains(&first),
            "{first:?}"
        );
        assert!(
            s.poll_rtcp(s.poll_timeout() - Duration::from_millis(1))
                .is_none()
        );
        let mut now = s.poll_timeout();
        let mut intervals = Vec::new();
        for i in 0..200 {
            if i % 2 == 0 {
                s.next_header(now, 0, false, 160, 160);
            }
            let report = s.poll_rtcp(now).expect("due at the timeout");
            let first_pt = report[1];
            assert_eq!(
                first_pt,
                if i % 2 == 0 { 200 } else { 201 },
                "SR iff we sent"
            );
            assert!(s.poll_rtcp(now).is_none(), "one report per interval");
            let next = s.poll_timeout();
            intervals.push((next - now).as_secs_f64());
            now = next;
        }
        assert!(intervals.iter().all(|&d| (2.5..7.5).contains(&d)));
        let mean = intervals.iter().sum::<f64>() / intervals.len() as f64;
        assert!((mean - 5.0).abs() < 0.3, "{mean}");
        // Deterministic for one seed.
        let again = session(t0);
        assert_eq!(again.poll_timeout(), session(t0).poll_timeout());
    }

    #[test]
    fn generated_headers_run_on_and_are_counted() {
        let t0 = Instant::now();
        let mut s = session(t0);
        let a = s.next_header(t0, 8, true, 160, 160);
        let b = s.next_header(t0 + FRAME, 8, false, 160, 160);
        let c = s.next_header(t0 + FRAME * 10, 8, true, 1440, 160);
        assert_eq!(a.ssrc, US);
        assert_eq!(b.sequence, a.sequence.wrapping_add(1));
        assert_eq!(c.sequence, a.sequence.wrapping_add(2));
        assert_eq!(b.timestamp, a.timestamp.wrapping_add(160));
        assert_eq!(c.timestamp, b.timestamp.wrapping_add(1440));
        assert!(a.marker && !b.marker && c.marker);
        let st = s.stats();
        assert_eq!((st.packets_sent, st.octets_sent), (3, 480));
        let mut out = vec![1, 2, 3];
        s.write_packet(t0 + FRAME * 11, 8, false, 160, b"abc", &mut out);
        let p = RtpPacket::parse(&out).expect("valid");
        assert_eq!(p.payload(), b"abc");
        assert_eq!(p.sequence(), a.sequence.wrapping_add(3));
    }

    #[test]
    fn rewrite_keeps_one_continuous_stream_across_source_switches() {
        let t0 = Instant::now();
        let mut s = session(t0);
        let mut now = t0;
        let mut out: Vec<RtpHeader> = Vec::new();
        let forward = |s: &mut RtpSession, now: Instant, ssrc: u32, seq: u16, ts: u32| {
            let mut buf = packet(ssrc, seq, ts);
            let h = s.rewrite(now, &mut buf).expect("valid");
            let p = RtpPacket::parse(&buf).expect("still valid");
            assert_eq!(
                (p.sequence(), p.timestamp(), p.ssrc(), p.marker()),
                (h.sequence, h.timestamp, h.ssrc, h.marker)
            );
            assert_eq!(p.payload(), &[0xd5; 160][..]);
            h
        };
        // Party A, whose sequence wraps on the way.
        for i in 0..10u16 {
            out.push(forward(
                &mut s,
                now,
                0xa,
                65_530u16.wrapping_add(i),
                4_000_000_000 + u32::from(i) * 160,
            ));
            now += FRAME;
        }
        // A prompt.
        now += FRAME * 3;
        for _ in 0..5 {
            out.push(s.next_header(now, 0, false, 160, 160));
            now += FRAME;
        }
        // Party B after a transfer, then back to A.
        for i in 0..10u16 {
            out.push(forward(&mut s, now, 0xb, 17 + i, 99 + u32::from(i) * 160));
            now += FRAME;
        }
        for i in 0..5u16 {
            out.push(forward(
                &mut s,
                now,
                0xa,
                200 + i,
                12_345 + u32::from(i) * 160,
            ));
            now += FRAME;
        }
        let switches = [10, 15, 25];
        for (i, w) in out.windows(2).enumerate() {
            let (prev, cur) = (w[0], w[1]);
            assert_eq!(cur.ssrc, US);
            assert_eq!(cur.sequence, prev.sequence.wrapping_add(1), "at {}", i + 1);
            let step = cur.timestamp.wrapping_sub(prev.timestamp);
            assert!(
                step > 0 && step < 1 << 20,
                "timestamp step {step} at {}",
                i + 1
            );
            assert_eq!(
                cur.marker,
                switches.contains(&(i + 1)),
                "marker at {}",
                i + 1
            );
        }
        // The prompt came 4 frames of wall time after A's last packet.
        assert_eq!(out[10].timestamp.wrapping_sub(out[9].timestamp), 4 * 160);
        assert_eq!(s.stats().packets_sent, 30);
    }

    #[test]
    fn rewrite_preserves_reordering_and_rejects_malformed_packets() {
        let t0 = Instant::now();
        let mut s = session(t0);
        let mut seqs = Vec::new();
        for seq in [10u16, 12, 11, 13] {
            let mut buf = packet(0xa, seq, u32::from(seq) * 160);
            seqs.push(s.rewrite(t0, &mut buf).expect("valid").sequence);
        }
        let base = seqs[0];
        assert_eq!(
            seqs,
            vec![
                base,
                base.wrapping_add(2),
                base.wrapping_add(1),
                base.wrapping_add(3)
            ]
        );
        let mut short = vec![0x80, 0, 0];
        assert!(s.rewrite(t0, &mut short).is_err());
        let mut v1 = packet(0xa, 14, 0);
        v1[0] = 0x40;
        assert!(s.rewrite(t0, &mut v1).is_err());
        // A restart of the forwarded sequence is a discontinuity, not a 30 000-packet gap.
        let mut buf = packet(0xa, 40_000, 0);
        let h = s.rewrite(t0 + FRAME, &mut buf).expect("valid");
        assert_eq!(h.sequence, base.wrapping_add(4));
        assert!(h.marker);
    }

    #[test]
    fn telephone_events_do_not_inflate_jitter() {
        let t0 = Instant::now();
        let mut s = session(t0);
        s.set_event_payload_type(Some(101));
        for i in 0..50u32 {
            let mut v = Vec::new();
            let event = (10..30).contains(&i);
            RtpHeader {
                marker: false,
                payload_type: if event { 101 } else { 0 },
                sequence: i as u16,
                // An event repeats the timestamp of its start.
                timestamp: if event { 1600 } else { i * 160 },
                ssrc: Ssrc(0xaa),
            }
            .write(&[0; 4], &mut v);
            s.on_rtp(t0 + FRAME * i, &RtpPacket::parse(&v).expect("valid"));
        }
        assert!(s.stats().jitter_ms < 0.001);
        assert_eq!(s.stats().packets_lost, 0);
    }

    #[test]
    fn mos_reflects_loss() {
        let t0 = Instant::now();
        let mut s = session(t0);
        let seqs: Vec<u16> = (0..1000).filter(|n| n % 20 != 7).collect();
        feed_seqs(&mut s, t0, 0xaa, &seqs);
        let st = s.stats();
        assert!(
            (st.loss_fraction - 0.05).abs() < 0.002,
            "{}",
            st.loss_fraction
        );
        let mos = st.mos.expect("received");
        assert!(mos < 4.0 && mos > 3.0, "{mos}");
        assert_eq!(session(t0).stats().mos, None);
        let json = serde_json::to_string(&st).expect("serialises");
        assert!(json.contains("\"mos\""));
    }
}
