//! RTP and RTCP for the media engine (RFC 3550), written here: no RTP crate.
//!
//! * [`packet`] (PURE): the zero-copy [`RtpPacket`] view and the [`RtpHeader`] writer
//!   (RFC 3550 §5.1, §5.3.1).
//! * [`rtcp`] (PURE): compound RTCP parsing with the validity checks of §A.2 (SR, RR, SDES,
//!   BYE; other types skipped) and the SR/RR + SDES CNAME builders (§6.1, §6.4, §6.5); NTP
//!   timestamp helpers.
//! * [`session`] (SANS-IO): [`RtpSession`], one leg that the server terminates or relays:
//!   sequence validation (§A.1), loss (§A.3), interarrival jitter (§A.8), round-trip time
//!   (§6.4.1), continuous outgoing sequence numbers and timestamps across source switches,
//!   and the RTCP report timer (§6.3.1).
//! * [`quality`] (PURE): the simplified ITU-T G.107 E-model and its MOS.
//!
//! The media sockets' loop (`media::engine`, with `media::latch`) keeps its own minimal checks
//! before a packet reaches a leg's session here. Nothing here reads a clock or touches a
//! socket: time comes in as `now: Instant`.

pub mod packet;
pub mod quality;
pub mod rtcp;
pub mod session;

pub use packet::{RtpHeader, RtpPacket, Ssrc};
pub use quality::{Codec, QualityInput, mos};
pub use rtcp::{NtpTime, ReportBlock, RtcpPacket, SenderInfo};
pub use session::{Incoming, LegStats, RtpSession, SessionConfig};

/// Why an RTP or RTCP datagram was rejected. Every variant is about input from the network,
/// so none of them is a bug of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    /// Shorter than the fixed header (12 octets for RTP, 8 for an RTCP packet header).
    #[error("packet too short: {len} octets")]
    TooShort {
        /// Octets available.
        len: usize,
    },
    /// The version field is not 2.
    #[error("unsupported RTP version {0}")]
    BadVersion(u8),
    /// The CSRC count points past the end of the packet.
    #[error("CSRC list runs past the end of the packet")]
    CsrcPastEnd,
    /// The header extension (or its length) runs past the end of the packet.
    #[error("header extension runs past the end of the packet")]
    ExtensionPastEnd,
    /// The padding count is zero or longer than what follows the header.
    #[error("invalid padding count {0}")]
    BadPadding(u8),
    /// An RTCP length field points past the end of the compound packet.
    #[error("RTCP length runs past the end of the compound packet")]
    RtcpLengthPastEnd,
    /// The first RTCP packet of a compound packet is not an SR or RR (RFC 3550 §A.2).
    #[error("compound RTCP packet does not start with SR or RR (type {0})")]
    RtcpFirstNotReport(u8),
    /// A packet other than the last of the compound packet has the padding bit (§A.2).
    #[error("padding bit set on an RTCP packet that is not the last")]
    RtcpPaddingNotLast,
    /// An SR, RR, SDES or BYE body is too short for its counts.
    #[error("RTCP packet type {0} is shorter than its count requires")]
    RtcpBodyTooShort(u8),
}
