//! RTP packets: a zero-copy parsed view and a header writer. PURE.
//!
//! Implements the fixed header, CSRC list, header extension and padding of RFC 3550 §5.1 and
//! §5.3.1. Every length is checked before it is used: [`RtpPacket::parse`] never panics and
//! never reads past the buffer, whatever the network sends.

use super::RtpError;
use serde::Serialize;

/// Fixed RTP header length (RFC 3550 §5.1).
pub const HEADER_LEN: usize = 12;

/// A synchronisation source identifier (RFC 3550 §3, §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Ssrc(pub u32);

/// A parsed RTP packet borrowing the datagram it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    buf: &'a [u8],
    /// Start of the payload: after the fixed header, CSRC list and extension.
    payload_start: usize,
    /// End of the payload: before the padding.
    payload_end: usize,
}

/// The fields of an outgoing RTP header; [`RtpHeader::write`] prints the 12-octet fixed
/// header (version 2, no padding, no extension, no CSRC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    /// The marker bit (e.g. first packet of a talk spurt, RFC 3551 §4.1).
    pub marker: bool,
    /// The 7-bit payload type; higher bits are ignored.
    pub payload_type: u8,
    /// The sequence number.
    pub sequence: u16,
    /// The RTP timestamp.
    pub timestamp: u32,
    /// The synchronisation source.
    pub ssrc: Ssrc,
}

impl std::fmt::Display for Ssrc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

impl<'a> RtpPacket<'a> {
    /// Parse and length-check `buf` as an RTP packet (RFC 3550 §5.1).
    ///
    /// Rejects: fewer than 12 octets, version other than 2, a CSRC list or header extension
    /// that runs past the end, and a padding count of zero or longer than the space after the
    /// header.
    pub fn parse(buf: &'a [u8]) -> Result<RtpPacket<'a>, RtpError> {
        if buf.len() < HEADER_LEN {
            return Err(RtpError::TooShort { len: buf.len() });
        }
        let b0 = buf[0];
        let version = b0 >> 6;
        if version != 2 {
            return Err(RtpError::BadVersion(version));
        }
        let csrc_count = usize::from(b0 & 0x0f);
        let mut start = HEADER_LEN + 4 * csrc_count;
        if start > buf.len() {
            return Err(RtpError::CsrcPastEnd);
        }
        if b0 & 0x10 != 0 {
            // Extension header: 16-bit profile id, 16-bit length in 32-bit words (§5.3.1).
            let Some(ext) = buf.get(start..start + 4) else {
                return Err(RtpError::ExtensionPastEnd);
            };
            let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
            start += 4 + 4 * words;
            if start > buf.len() {
                return Err(RtpError::ExtensionPastEnd);
            }
        }
        let mut end = buf.len();
        if b0 & 0x20 != 0 {
            let pad = buf[buf.len() - 1];
            if pad == 0 || usize::from(pad) > end - start {
                return Err(RtpError::BadPadding(pad));
            }
            end -= usize::from(pad);
        }
        Ok(RtpPacket {
            buf,
            payload_start: start,
            payload_end: end,
        })
    }

    /// The whole datagram.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// The padding bit.
    pub fn padding(&self) -> bool {
        self.buf[0] & 0x20 != 0
    }

    /// The marker bit.
    pub fn marker(&self) -> bool {
        self.buf[1] & 0x80 != 0
    }

    /// The 7-bit payload type.
    pub fn payload_type(&self) -> u8 {
        self.buf[1] & 0x7f
    }

    /// The sequence number.
    pub fn sequence(&self) -> u16 {
        u16::from_be_bytes([self.buf[2], self.buf[3]])
    }

    /// The RTP timestamp.
    pub fn timestamp(&self) -> u32 {
        u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]])
    }

    /// The synchronisation source.
    pub fn ssrc(&self) -> Ssrc {
        Ssrc(u32::from_be_bytes([
            self.buf[8],
            self.buf[9],
            self.buf[10],
            self.buf[11],
        ]))
    }

    /// The contributing sources (RFC 3550 §5.1 CSRC list), checked by `parse`.
    pub fn csrcs(&self) -> impl Iterator<Item = Ssrc> + 'a {
        let n = usize::from(self.buf[0] & 0x0f);
        self.buf[HEADER_LEN..HEADER_LEN + 4 * n]
            .chunks_exact(4)
            .map(|c| Ssrc(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
    }

    /// The header extension as (profile-defined 16 bits, data), if the X bit is set.
    pub fn extension(&self) -> Option<(u16, &'a [u8])> {
        if self.buf[0] & 0x10 == 0 {
            return None;
        }
        let at = HEADER_LEN + 4 * usize::from(self.buf[0] & 0x0f);
        let profile = u16::from_be_bytes([self.buf[at], self.buf[at + 1]]);
        Some((profile, &self.buf[at + 4..self.payload_start]))
    }

    /// Length of everything before the payload (fixed header, CSRCs, extension).
    pub fn header_len(&self) -> usize {
        self.payload_start
    }

    /// The payload, without padding.
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.payload_start..self.payload_end]
    }
}

impl RtpHeader {
    /// Append the 12-octet header and then `payload` to `out` (which is not cleared, so a
    /// caller can reuse one buffer: `out.clear()` first).
    pub fn write(&self, payload: &[u8], out: &mut Vec<u8>) {
        out.reserve(HEADER_LEN + payload.len());
        out.extend_from_slice(&self.to_bytes());
        out.extend_from_slice(payload);
    }

    /// The 12-octet header alone.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0] = 0x80;
        h[1] = (u8::from(self.marker) << 7) | (self.payload_type & 0x7f);
        h[2..4].copy_from_slice(&self.sequence.to_be_bytes());
        h[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        h[8..12].copy_from_slice(&self.ssrc.0.to_be_bytes());
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> RtpHeader {
        RtpHeader {
            marker: true,
            payload_type: 8,
            sequence: 0xfffe,
            timestamp: 0xdead_beef,
            ssrc: Ssrc(0x1234_5678),
        }
    }

    #[test]
    fn written_header_parses_back_to_the_same_fields() {
        let mut out = Vec::new();
        header().write(b"hello", &mut out);
        assert_eq!(out.len(), 17);
        let p = RtpPacket::parse(&out).expect("valid");
        assert!(p.marker());
        assert_eq!(p.payload_type(), 8);
        assert_eq!(p.sequence(), 0xfffe);
        assert_eq!(p.timestamp(), 0xdead_beef);
        assert_eq!(p.ssrc(), Ssrc(0x1234_5678));
        assert_eq!(p.payload(), b"hello");
        assert_eq!(p.csrcs().count(), 0);
        assert_eq!(p.extension(), None);
        assert_eq!(p.header_len(), 12);
    }

    #[test]
    fn csrc_extension_and_padding_are_skipped_to_find_the_payload() {
        let mut buf = header().to_bytes().to_vec();
        buf[0] |= 0x20 | 0x10 | 2; // padding, extension, 2 CSRCs
        buf.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]); // CSRCs
        buf.extend_from_slice(&[0xbe, 0xde, 0, 1, 9, 9, 9, 9]); // extension, 1 word
        buf.extend_from_slice(b"pay");
        buf.extend_from_slice(&[0, 0, 3]); // 3 octets of padding
        let p = RtpPacket::parse(&buf).expect("valid");
        assert_eq!(p.payload(), b"pay");
        assert!(p.padding());
        assert_eq!(p.csrcs().collect::<Vec<_>>(), vec![Ssrc(1), Ssrc(2)]);
        assert_eq!(p.extension(), Some((0xbede, &[9u8, 9, 9, 9][..])));
    }

    #[test]
    fn malformed_packets_are_rejected_without_panic() {
        let good = header().to_bytes();
        // Short.
        for n in 0..12 {
            assert_eq!(
                RtpPacket::parse(&good[..n]),
                Err(RtpError::TooShort { len: n })
            );
        }
        // Version 1 and 3.
        let mut b = good;
        b[0] = 0x40;
        assert_eq!(RtpPacket::parse(&b), Err(RtpError::BadVersion(1)));
        b[0] = 0xc0;
        assert_eq!(RtpPacket::parse(&b), Err(RtpError::BadVersion(3)));
        // CSRC count past the end.
        let mut b = good.to_vec();
        b[0] |= 0x0f;
        b.extend_from_slice(&[0; 56]); // 14 of 15 CSRCs
        assert_eq!(RtpPacket::parse(&b), Err(RtpError::CsrcPastEnd));
        // Extension header cut, and extension length past the end.
        let mut b = good.to_vec();
        b[0] |= 0x10;
        b.extend_from_slice(&[0xbe, 0xde]);
        assert_eq!(RtpPacket::parse(&b), Err(RtpError::ExtensionPastEnd));
        b.extend_from_slice(&[0xff, 0xff, 1, 2, 3, 4]);
        assert_eq!(RtpPacket::parse(&b), Err(RtpError::ExtensionPastEnd));
        // Padding longer than what follows the header, and zero padding.
        let mut b = good.to_vec();
        b[0] |= 0x20;
        b.extend_from_slice(&[1, 2, 5]);
        assert_eq!(RtpPacket::parse(&b), Err(RtpError::BadPadding(5)));
        let last = b.len() - 1;
        b[last] = 0;
        assert_eq!(RtpPacket::parse(&b), Err(RtpError::BadPadding(0)));
        // Padding-only on a bare header.
        let mut b = good;
        b[0] |= 0x20;
        assert!(RtpPacket::parse(&b).is_err());
    }

    #[test]
    fn padding_exactly_filling_the_rest_gives_an_empty_payload() {
        let mut b = header().to_bytes().to_vec();
        b[0] |= 0x20;
        b.extend_from_slice(&[0, 0, 0, 4]);
        assert_eq!(RtpPacket::parse(&b).expect("valid").payload(), b"");
    }

    #[test]
    fn every_truncation_of_a_full_packet_parses_or_errs_without_panic() {
        let mut buf = header().to_bytes().to_vec();
        buf[0] |= 0x20 | 0x10 | 1;
        buf.extend_from_slice(&[0, 0, 0, 1, 0xbe, 0xde, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8]);
        buf.extend_from_slice(b"xy\0\x02");
        for n in 0..=buf.len() {
            let _ = RtpPacket::parse(&buf[..n]);
            for v in 0..=255u8 {
                let mut b = buf[..n].to_vec();
                if let Some(last) = b.last_mut() {
                    *last = v;
                }
                let _ = RtpPacket::parse(&b);
            }
        }
    }
}
