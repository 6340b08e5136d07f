//! RTCP packets: compound parsing and SR/RR + SDES builders. PURE.
//!
//! * [`parse_compound`] checks a compound packet as RFC 3550 §A.2 asks (every packet version
//!   2, the first an SR or RR, padding only on the last, the lengths adding up to the
//!   datagram) and also checks each SR, RR, SDES and BYE body against its counts, so that the
//!   zero-copy iterators afterwards cannot run out of bytes. Other packet types (APP, RTPFB,
//!   PSFB, XR, …) are passed through as [`RtcpPacket::Other`] for the caller to skip.
//! * [`write_sr`] / [`write_rr`]: a compound SR or RR (§6.4.1, §6.4.2) with at most one report
//!   block, followed by an SDES packet with a CNAME item (§6.5.1), as §6.1 requires.
//! * [`NtpTime`]: the 64-bit NTP timestamp of the SR and its middle 32 bits (the LSR of
//!   §6.4.1); [`compact_to_duration`] / [`duration_to_compact`] for the 16.16 DLSR.

use super::RtpError;
use super::packet::Ssrc;
use std::time::Duration;

/// Packet type of a sender report (RFC 3550 §12.1).
pub const PT_SR: u8 = 200;
/// Packet type of a receiver report.
pub const PT_RR: u8 = 201;
/// Packet type of source description items.
pub const PT_SDES: u8 = 202;
/// Packet type of goodbye.
pub const PT_BYE: u8 = 203;
/// SDES item type of the canonical name (RFC 3550 §6.5.1).
pub const SDES_CNAME: u8 = 1;

/// Length of one report block (RFC 3550 §6.4.1).
const BLOCK_LEN: usize = 24;
/// Length of the sender info of an SR, after the sender's SSRC.
const SENDER_INFO_LEN: usize = 20;

/// A 64-bit NTP timestamp: seconds since 1900 in the high 32 bits, fraction in the low 32
/// (RFC 3550 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NtpTime(pub u64);

/// The sender information of an SR (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderInfo {
    /// Wallclock time when the report was sent.
    pub ntp: NtpTime,
    /// The same instant in the units of the RTP timestamps.
    pub rtp_timestamp: u32,
    /// Packets sent since the start of transmission.
    pub packet_count: u32,
    /// Payload octets sent since the start of transmission.
    pub octet_count: u32,
}

/// One reception report block (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlock {
    /// The source this block is about.
    pub ssrc: Ssrc,
    /// Fraction lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost, 24-bit signed (duplicates can make it negative).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received.
    pub highest_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR from this source (LSR), or 0.
    pub last_sr: u32,
    /// Delay since that SR in 1/65536 s (DLSR), or 0.
    pub delay_since_last_sr: u32,
}

/// A compound RTCP packet that passed [`parse_compound`]; iterate it with
/// [`Compound::packets`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compound<'a>(&'a [u8]);

/// One packet of a compound RTCP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcpPacket<'a> {
    /// A sender report (PT 200).
    SenderReport {
        /// The sender.
        ssrc: Ssrc,
        /// Its sender information.
        info: SenderInfo,
        /// Its reception report blocks.
        reports: ReportBlocks<'a>,
    },
    /// A receiver report (PT 201).
    ReceiverReport {
        /// The reporter.
        ssrc: Ssrc,
        /// Its reception report blocks.
        reports: ReportBlocks<'a>,
    },
    /// Source description items (PT 202).
    SourceDescription(SdesChunks<'a>),
    /// Goodbye (PT 203).
    Bye {
        /// The sources leaving.
        sources: Ssrcs<'a>,
        /// The optional reason text.
        reason: Option<&'a [u8]>,
    },
    /// Any other packet type, not interpreted here.
    Other {
        /// The packet type.
        packet_type: u8,
        /// The 5-bit count / format field.
        count: u8,
        /// The body after the 4-octet header, without padding.
        body: &'a [u8],
    },
}

/// Iterator over the report blocks of an SR or RR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlocks<'a>(&'a [u8]);

/// Iterator over a list of SSRCs (BYE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ssrcs<'a>(&'a [u8]);

/// Iterator over the chunks of an SDES packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdesChunks<'a> {
    body: &'a [u8],
    left: u8,
}

/// One SDES chunk: a source and its items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdesChunk<'a> {
    /// The source described.
    pub ssrc: Ssrc,
    /// Its items, as (type, value) pairs.
    pub items: SdesItems<'a>,
}

/// Iterator over the items of one SDES chunk, as (item type, value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdesItems<'a>(&'a [u8]);

/// Iterator over the packets of a [`Compound`].
#[derive(Debug, Clone)]
pub struct CompoundIter<'a>(&'a [u8]);

impl NtpTime {
    /// Seconds from 1900-01-01 (NTP era 0) to 1970-01-01 (Unix epoch).
    pub const UNIX_OFFSET_SECS: u64 = 2_208_988_800;

    /// The NTP time of a point `since_1900` after the NTP epoch (wrapping at era boundaries).
    pub fn from_duration(since_1900: Duration) -> NtpTime {
        let secs = since_1900.as_secs() & 0xffff_ffff;
        let frac = (u64::from(since_1900.subsec_nanos()) << 32) / 1_000_000_000;
        NtpTime((secs << 32) | frac)
    }

    /// The NTP time of a point `since_unix` after the Unix epoch (what `SystemTime` gives).
    pub fn from_unix(since_unix: Duration) -> NtpTime {
        NtpTime::from_duration(since_unix + Duration::from_secs(Self::UNIX_OFFSET_SECS))
    }

    /// The middle 32 bits: the LSR of a report block (RFC 3550 §6.4.1).
    pub fn middle32(self) -> u32 {
        (self.0 >> 16) as u32
    }
}

impl std::ops::Add<Duration> for NtpTime {
    type Output = NtpTime;

    /// This time plus `d`, wrapping at the end of the NTP era.
    fn add(self, d: Duration) -> NtpTime {
        NtpTime(self.0.wrapping_add(NtpTime::from_duration(d).0))
    }
}

/// A 16.16 fixed-point seconds value (DLSR, RTT) as a `Duration`.
pub fn compact_to_duration(v: u32) -> Duration {
    Duration::from_nanos((u64::from(v) * 1_000_000_000) >> 16)
}

/// A `Duration` as 16.16 fixed-point seconds, saturating at about 18 hours.
pub fn duration_to_compact(d: Duration) -> u32 {
    let v = (d.as_nanos() << 16) / 1_000_000_000;
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// Check `buf` as a compound RTCP packet (RFC 3550 §A.2 and the body lengths of SR, RR,
/// SDES and BYE).
pub fn parse_compound(buf: &[u8]) -> Result<Compound<'_>, RtpError> {
    if buf.len() < 4 {
        return Err(RtpError::TooShort { len: buf.len() });
    }
    let mut rest = buf;
    let mut first = true;
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(RtpError::RtcpLengthPastEnd);
        }
        let version = rest[0] >> 6;
        if version != 2 {
            return Err(RtpError::BadVersion(version));
        }
        let pt = rest[1];
        if first && pt != PT_SR && pt != PT_RR {
            return Err(RtpError::RtcpFirstNotReport(pt));
        }
        first = false;
        let len = (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1) * 4;
        if len > rest.len() {
            return Err(RtpError::RtcpLengthPastEnd);
        }
        let padded = rest[0] & 0x20 != 0;
        if padded && len != rest.len() {
            return Err(RtpError::RtcpPaddingNotLast);
        }
        let (pkt, tail) = rest.split_at(len);
        let (_, _, body) = split_packet(pkt)?;
        check_body(pt, rest[0] & 0x1f, body)?;
        rest = tail;
    }
    Ok(Compound(buf))
}

/// Append a compound SR (sender `ssrc`, with `block` if any) + SDES CNAME to `out`.
pub fn write_sr(
    ssrc: Ssrc,
    info: &SenderInfo,
    block: Option<&ReportBlock>,
    cname: &[u8],
    out: &mut Vec<u8>,
) {
    let rc = u8::from(block.is_some());
    let words = (4 + SENDER_INFO_LEN + BLOCK_LEN * usize::from(rc)) / 4;
    write_common(out, rc, PT_SR, words);
    out.extend_from_slice(&ssrc.0.to_be_bytes());
    out.extend_from_slice(&info.ntp.0.to_be_bytes());
    out.extend_from_slice(&info.rtp_timestamp.to_be_bytes());
    out.extend_from_slice(&info.packet_count.to_be_bytes());
    out.extend_from_slice(&info.octet_count.to_be_bytes());
    if let Some(b) = block {
        write_block(b, out);
    }
    write_sdes_cname(ssrc, cname, out);
}

/// Append a compound RR (reporter `ssrc`, with `block` if any) + SDES CNAME to `out`.
pub fn write_rr(ssrc: Ssrc, block: Option<&ReportBlock>, cname: &[u8], out: &mut Vec<u8>) {
    let rc = u8::from(block.is_some());
    let words = (4 + BLOCK_LEN * usize::from(rc)) / 4;
    write_common(out, rc, PT_RR, words);
    out.extend_from_slice(&ssrc.0.to_be_bytes());
    if let Some(b) = block {
        write_block(b, out);
    }
    write_sdes_cname(ssrc, cname, out);
}

impl<'a> Compound<'a> {
    /// The packets, in order.
    pub fn packets(&self) -> CompoundIter<'a> {
        CompoundIter(self.0)
    }
}

impl<'a> Iterator for CompoundIter<'a> {
    type Item = RtcpPacket<'a>;

    fn next(&mut self) -> Option<RtcpPacket<'a>> {
        let rest = self.0;
        let len = (usize::from(u16::from_be_bytes([*rest.get(2)?, *rest.get(3)?])) + 1) * 4;
        let pkt = rest.get(..len)?;
        self.0 = &rest[len..];
        let (pt, count, body) = split_packet(pkt).ok()?;
        Some(match pt {
            PT_SR => RtcpPacket::SenderReport {
                ssrc: Ssrc(be32(body, 0)?),
                info: SenderInfo {
                    ntp: NtpTime((u64::from(be32(body, 4)?) << 32) | u64::from(be32(body, 8)?)),
                    rtp_timestamp: be32(body, 12)?,
                    packet_count: be32(body, 16)?,
                    octet_count: be32(body, 20)?,
                },
                reports: ReportBlocks(
                    body.get(24..24 + BLOCK_LEN * usize::from(count))
                        .unwrap_or_default(),
                ),
            },
            PT_RR => RtcpPacket::ReceiverReport {
                ssrc: Ssrc(be32(body, 0)?),
                reports: ReportBlocks(
                    body.get(4..4 + BLOCK_LEN * usize::from(count))
                        .unwrap_or_default(),
                ),
            },
            PT_SDES => RtcpPacket::SourceDescription(SdesChunks { body, left: count }),
            PT_BYE => {
                let n = 4 * usize::from(count);
                let reason = body
                    .get(n)
                    .and_then(|&l| body.get(n + 1..n + 1 + usize::from(l)));
                RtcpPacket::Bye {
                    sources: Ssrcs(body.get(..n).unwrap_or_default()),
                    reason,
                }
            }
            _ => RtcpPacket::Other {
                packet_type: pt,
                count,
                body,
            },
        })
    }
}

impl Iterator for ReportBlocks<'_> {
    type Item = ReportBlock;

    fn next(&mut self) -> Option<ReportBlock> {
        let b = self.0.get(..BLOCK_LEN)?;
        self.0 = &self.0[BLOCK_LEN..];
        // 24-bit two's complement, sign-extended.
        let lost = (i32::from_be_bytes([b[5], b[6], b[7], 0])) >> 8;
        Some(ReportBlock {
            ssrc: Ssrc(be32(b, 0)?),
            fraction_lost: b[4],
            cumulative_lost: lost,
            highest_seq: be32(b, 8)?,
            jitter: be32(b, 12)?,
            last_sr: be32(b, 16)?,
            delay_since_last_sr: be32(b, 20)?,
        })
    }
}

impl Iterator for Ssrcs<'_> {
    type Item = Ssrc;

    fn next(&mut self) -> Option<Ssrc> {
        let v = be32(self.0, 0)?;
        self.0 = &self.0[4..];
        Some(Ssrc(v))
    }
}

impl<'a> Iterator for SdesChunks<'a> {
    type Item = SdesChunk<'a>;

    fn next(&mut self) -> Option<SdesChunk<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let ssrc = Ssrc(be32(self.body, 0)?);
        let Some(end) = sdes_chunk_end(self.body) else {
            self.left = 0;
            return None;
        };
        let items = SdesItems(&self.body[4..end]);
        self.body = self.body.get(end..).unwrap_or_default();
        Some(SdesChunk { ssrc, items })
    }
}

impl<'a> SdesChunk<'a> {
    /// The CNAME item, if present.
    pub fn cname(&self) -> Option<&'a [u8]> {
        self.items
            .clone()
            .find(|(t, _)| *t == SDES_CNAME)
            .map(|(_, v)| v)
    }
}

impl<'a> Iterator for SdesItems<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let t = *self.0.first()?;
        if t == 0 {
            return None;
        }
        let len = usize::from(*self.0.get(1)?);
        let value = self.0.get(2..2 + len)?;
        self.0 = &self.0[2 + len..];
        Some((t, value))
    }
}

/// (packet type, count, body without header and padding) of one checked packet.
fn split_packet(pkt: &[u8]) -> Result<(u8, u8, &[u8]), RtpError> {
    let mut end = pkt.len();
    if pkt[0] & 0x20 != 0 {
        let pad = pkt[pkt.len() - 1];
        if pad == 0 || usize::from(pad) > pkt.len() - 4 {
            return Err(RtpError::BadPadding(pad));
        }
        end -= usize::from(pad);
    }
    Ok((pkt[1], pkt[0] & 0x1f, &pkt[4..end]))
}

fn check_body(pt: u8, count: u8, body: &[u8]) -> Result<(), RtpError> {
    let count = usize::from(count);
    let ok = match pt {
        PT_SR => body.len() >= 4 + SENDER_INFO_LEN + BLOCK_LEN * count,
        PT_RR => body.len() >= 4 + BLOCK_LEN * count,
        PT_SDES => {
            let mut rest = body;
            let mut ok = true;
            for _ in 0..count {
                match sdes_chunk_end(rest) {
                    Some(end) => rest = rest.get(end..).unwrap_or_default(),
                    None => {
                        ok = false;
                        break;
                    }
                }
            }
            ok
        }
        PT_BYE => match body.get(4 * count) {
            None => body.len() >= 4 * count,
            Some(&l) => body.len() > 4 * count + usize::from(l),
        },
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(RtpError::RtcpBodyTooShort(pt))
    }
}

/// The end (exclusive, 32-bit aligned) of the SDES chunk at the start of `body`: SSRC, items,
/// a null octet, padding to the next 32-bit boundary (RFC 3550 §6.5).
fn sdes_chunk_end(body: &[u8]) -> Option<usize> {
    let mut at = 4;
    if body.len() < at {
        return None;
    }
    loop {
        let t = *body.get(at)?;
        if t == 0 {
            at += 1;
            break;
        }
        at += 2 + usize::from(*body.get(at + 1)?);
    }
    let end = at.div_ceil(4) * 4;
    // The null padding may be cut short only by the end of the packet; be lenient there.
    Some(end.min(body.len()))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn write_common(out: &mut Vec<u8>, count: u8, pt: u8, words_after_header: usize) {
    out.push(0x80 | (count & 0x1f));
    out.push(pt);
    let len = u16::try_from(words_after_header).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
}

fn write_block(b: &ReportBlock, out: &mut Vec<u8>) {
    out.extend_from_slice(&b.ssrc.0.to_be_bytes());
    let lost = b.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff);
    let lost = lost.to_be_bytes();
    out.extend_from_slice(&[b.fraction_lost, lost[1], lost[2], lost[3]]);
    out.extend_from_slice(&b.highest_seq.to_be_bytes());
    out.extend_from_slice(&b.jitter.to_be_bytes());
    out.extend_from_slice(&b.last_sr.to_be_bytes());
    out.extend_from_slice(&b.delay_since_last_sr.to_be_bytes());
}

fn write_sdes_cname(ssrc: Ssrc, cname: &[u8], out: &mut Vec<u8>) {
    let cname = &cname[..cname.len().min(255)];
    // SSRC + type + length + text + at least one null, padded to 32 bits.
    let chunk = (4 + 2 + cname.len() + 1).div_ceil(4) * 4;
    write_common(out, 1, PT_SDES, chunk / 4);
    out.extend_from_slice(&ssrc.0.to_be_bytes());
    out.push(SDES_CNAME);
    out.push(cname.len() as u8);
    out.extend_from_slice(cname);
    let nulls = chunk - 4 - 2 - cname.len();
    out.extend(std::iter::repeat_n(0u8, nulls));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block() -> ReportBlock {
        ReportBlock {
            ssrc: Ssrc(0xaabb_ccdd),
            fraction_lost: 25,
            cumulative_lost: -3,
            highest_seq: 0x0001_0005,
            jitter: 77,
            last_sr: 0x1234_5678,
            delay_since_last_sr: 0x0001_8000,
        }
    }

    fn info() -> SenderInfo {
        SenderInfo {
            ntp: NtpTime(0x0102_0304_0506_0708),
            rtp_timestamp: 160,
            packet_count: 10,
            octet_count: 1600,
        }
    }

    #[test]
    fn sr_with_block_and_cname_round_trips() {
        let mut out = Vec::new();
        write_sr(Ssrc(7), &info(), Some(&block()), b"sb@host", &mut out);
        assert_eq!(out.len() % 4, 0);
        let c = parse_compound(&out).expect("valid");
        let pkts: Vec<_> = c.packets().collect();
        assert_eq!(pkts.len(), 2);
        match pkts[0] {
            RtcpPacket::SenderReport {
                ssrc,
                info: i,
                reports,
            } => {
                assert_eq!(ssrc, Ssrc(7));
                assert_eq!(i, info());
                assert_eq!(reports.collect::<Vec<_>>(), vec![block()]);
            }
            other => panic!("not an SR: {other:?}"),
        }
        match pkts[1] {
            RtcpPacket::SourceDescription(chunks) => {
                let chunks: Vec<_> = chunks.collect();
                assert_eq!(chunks.len(), 1);
                assert_eq!(chunks[0].ssrc, Ssrc(7));
                assert_eq!(chunks[0].cname(), Some(&b"sb@host"[..]));
            }
            other => panic!("not SDES: {other:?}"),
        }
    }

    #[test]
    fn rr_without_block_round_trips_for_every_cname_length_alignment() {
        for n in 0..8 {
            let cname = vec![b'x'; n];
            let mut out = Vec::new();
            write_rr(Ssrc(9), None, &cname, &mut out);
            assert_eq!(out.len() % 4, 0);
            let c = parse_compound(&out).expect("valid");
            let mut it = c.packets();
            assert!(matches!(
                it.next(),
                Some(RtcpPacket::ReceiverReport { ssrc: Ssrc(9), reports }) if reports.count() == 0
            ));
            let Some(RtcpPacket::SourceDescription(mut chunks)) = it.next() else {
                panic!("no SDES")
            };
            assert_eq!(chunks.next().and_then(|c| c.cname()), Some(&cname[..]));
            assert!(it.next().is_none());
        }
    }

    #[test]
    fn bye_and_unknown_types_are_parsed_after_a_report() {
        let mut out = Vec::new();
        write_rr(Ssrc(1), Some(&block()), b"c", &mut out);
        // APP packet (PT 204): header + SSRC + name.
        out.extend_from_slice(&[0x80, 204, 0, 2, 0, 0, 0, 1, b'a', b'b', b'c', b'd']);
        // BYE with one SSRC and reason "bye" (+ padding to the word), padded packet, last.
        out.extend_from_slice(&[0xa1, PT_BYE, 0, 3, 0, 0, 0, 1, 3, b'b', b'y', b'e']);
        out.extend_from_slice(&[0, 0, 0, 4]);
        let c = parse_compound(&out).expect("valid");
        let pkts: Vec<_> = c.packets().collect();
        assert_eq!(pkts.len(), 4);
        assert!(matches!(
            pkts[2],
            RtcpPacket::Other {
                packet_type: 204,
                ..
            }
        ));
        let RtcpPacket::Bye { sources, reason } = pkts[3] else {
            panic!("no BYE")
        };
        assert_eq!(sources.collect::<Vec<_>>(), vec![Ssrc(1)]);
        assert_eq!(reason, Some(&b"bye"[..]));
    }

    #[test]
    fn malformed_compound_packets_are_rejected() {
        let mut good = Vec::new();
        write_rr(Ssrc(1), Some(&block()), b"cname", &mut good);
        assert!(parse_compound(&good).is_ok());
        // Short.
        assert_eq!(
            parse_compound(&good[..3]),
            Err(RtpError::TooShort { len: 3 })
        );
        // Every truncation fails (lengths no longer add up) without panic.
        let rr_len = 8 + 24;
        for n in (0..good.len()).filter(|&n| n != rr_len) {
            assert!(parse_compound(&good[..n]).is_err(), "truncated at {n}");
        }
        // Bad version.
        let mut b = good.clone();
        b[0] = 0x41;
        assert_eq!(parse_compound(&b), Err(RtpError::BadVersion(1)));
        // First packet not a report.
        let sdes_at = 8 + 24;
        assert_eq!(
            parse_compound(&good[sdes_at..]),
            Err(RtpError::RtcpFirstNotReport(PT_SDES))
        );
        // Padding on a packet that is not the last.
        let mut b = good.clone();
        b[0] |= 0x20;
        assert_eq!(parse_compound(&b), Err(RtpError::RtcpPaddingNotLast));
        // Report count larger than the body.
        let mut b = good.clone();
        b[0] = 0x82;
        assert_eq!(parse_compound(&b), Err(RtpError::RtcpBodyTooShort(PT_RR)));
        // Length field past the end.
        let mut b = good.clone();
        b[3] = 0xff;
        assert_eq!(parse_compound(&b), Err(RtpError::RtcpLengthPastEnd));
        // SDES item length past the chunk.
        let mut b = good.clone();
        b[sdes_at + 9] = 200;
        assert_eq!(parse_compound(&b), Err(RtpError::RtcpBodyTooShort(PT_SDES)));
    }

    #[test]
    fn fuzzed_bytes_never_panic() {
        let mut good = Vec::new();
        write_sr(Ssrc(1), &info(), Some(&block()), b"cname", &mut good);
        for i in 0..good.len() {
            for v in [0u8, 1, 0x1f, 0x20, 0x3f, 0x80, 0xa0, 0xbf, 0xff] {
                let mut b = good.clone();
                b[i] = v;
                if let Ok(c) = parse_compound(&b) {
                    for p in c.packets() {
                        if let RtcpPacket::SourceDescription(ch) = p {
                            for c in ch {
                                let _ = c.items.count();
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn ntp_middle_bits_and_compact_durations() {
        let t = NtpTime::from_unix(Duration::from_millis(1_500));
        assert_eq!(t.0 >> 32, NtpTime::UNIX_OFFSET_SECS + 1);
        assert_eq!(t.0 as u32, 0x8000_0000);
        assert_eq!(
            t.middle32(),
            (((NtpTime::UNIX_OFFSET_SECS + 1) as u32) << 16) | 0x8000
        );
        assert_eq!(
            duration_to_compact(Duration::from_millis(1_500)),
            0x0001_8000
        );
        assert_eq!(
            compact_to_duration(0x0001_8000),
            Duration::from_millis(1_500)
        );
        let later = t + Duration::from_millis(250);
        assert_eq!(later.middle32() - t.middle32(), 0x4000);
    }
}
