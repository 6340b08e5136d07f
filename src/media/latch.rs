//! Symmetric RTP latching and minimal packet validation for the relay. SANS-IO.
//!
//! Owns the decision "do we accept this datagram, and where do we send the other leg's media":
//! * [`Latch`]: symmetric RTP (RFC 4961) as NAT traversal for an anchor (the "comedia"
//!   behaviour of SBCs). Until latched, datagrams from any source are accepted (the first may
//!   come from a NAT address that differs from the SDP); the first accepted source latches.
//!   Afterwards datagrams from other sources are rejected. The destination for media sent to
//!   the party is its latched source if any, else its SDP address.
//! * Re-latching (optional, off by default): with `relatch_after = Some(d)`, a new source is
//!   accepted and latched once the latched source has been silent for at least `d`, e.g. after
//!   a NAT rebinding. This trades a little hijack resistance for resilience.
//! * A new SDP address (re-INVITE to a different address) resets the latch; the same address
//!   again keeps it, and a first SDP address arriving after latching keeps it too.
//! * An unspecified SDP address (`0.0.0.0`, `::`, RFC 2543 hold) or port 0 is no destination.
//! * [`check_rtp`] / [`check_rtcp`]: a datagram shorter than a header or whose version field is
//!   not 2 (RFC 3550 §5.1, §6.4) is dropped before it can latch.
//!
//! Time is passed in (`now`); nothing here reads a clock or touches a socket.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Fixed RTP header length (RFC 3550 §5.1).
pub const RTP_HEADER_LEN: usize = 12;
/// Fixed RTCP header length: version/count, type, length, SSRC (RFC 3550 §6.4.1).
pub const RTCP_HEADER_LEN: usize = 8;

/// Why the relay dropped a datagram. The label values name the `reason` of
/// `switchboard_rtp_packets_dropped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Too short for a header or version != 2.
    Malformed,
    /// Not from the latched source.
    ForeignSource,
    /// The other leg has neither a latched source nor a usable SDP address.
    NoDestination,
    /// The send failed (socket buffer full or an error).
    SendFailed,
}

/// What the latch decided about one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// From the latched source (or accepted before latching); forward it.
    Accepted,
    /// Accepted and its source is now latched; forward it.
    Latched,
    /// From another source while latched; drop it.
    Rejected,
}

/// The latch of one relay socket: who may send to it, and where replies go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Latch {
    sdp: Option<SocketAddr>,
    latched: Option<SocketAddr>,
    last_from_latched: Option<Instant>,
    relatch_after: Option<Duration>,
    rejected: u64,
}

impl DropReason {
    /// Every reason, in a fixed order (index with [`DropReason::index`]).
    pub const ALL: [DropReason; 4] = [
        DropReason::Malformed,
        DropReason::ForeignSource,
        DropReason::NoDestination,
        DropReason::SendFailed,
    ];

    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::ForeignSource => "foreign_source",
            DropReason::NoDestination => "no_destination",
            DropReason::SendFailed => "send_failed",
        }
    }

    /// Position in [`DropReason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl Latch {
    /// A latch with no SDP address yet; `relatch_after` enables re-latching after silence.
    pub fn new(relatch_after: Option<Duration>) -> Self {
        Self {
            sdp: None,
            latched: None,
            last_from_latched: None,
            relatch_after,
            rejected: 0,
        }
    }

    /// The party's address from its SDP (offer or answer, and every re-INVITE). A different
    /// address than the previous one resets the latch.
    pub fn set_sdp_addr(&mut self, addr: Option<SocketAddr>) {
        if self.sdp.is_some() && self.sdp != addr {
            self.latched = None;
            self.last_from_latched = None;
        }
        self.sdp = addr;
    }

    /// Decides about a valid datagram from `src` received at `now`.
    pub fn on_packet(&mut self, now: Instant, src: SocketAddr) -> Verdict {
        match self.latched {
            Some(latched) if latched == src => {
                self.last_from_latched = Some(now);
                Verdict::Accepted
            }
            Some(_) => {
                let silent = match (self.relatch_after, self.last_from_latched) {
                    (Some(after), Some(last)) => now.saturating_duration_since(last) >= after,
                    _ => false,
                };
                if silent {
                    self.latch(now, src)
                } else {
                    self.rejected += 1;
                    Verdict::Rejected
                }
            }
            None => self.latch(now, src),
        }
    }

    /// Where media for this party goes: the latched source, else a usable SDP address.
    pub fn destination(&self) -> Option<SocketAddr> {
        self.latched.or(self
            .sdp
            .filter(|a| !a.ip().is_unspecified() && a.port() != 0))
    }

    /// The latched source, if any.
    pub fn latched(&self) -> Option<SocketAddr> {
        self.latched
    }

    /// How many datagrams were rejected as foreign.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    fn latch(&mut self, now: Instant, src: SocketAddr) -> Verdict {
        self.latched = Some(src);
        self.last_from_latched = Some(now);
        Verdict::Latched
    }
}

/// Accepts a datagram as RTP: at least 12 bytes, version 2 (RFC 3550 §5.1).
pub fn check_rtp(packet: &[u8]) -> Result<(), DropReason> {
    check(packet, RTP_HEADER_LEN)
}

/// Accepts a datagram as RTCP: at least 8 bytes, version 2 (RFC 3550 §6.4). The rest passes
/// through unexamined (compound packets, SRTCP).
pub fn check_rtcp(packet: &[u8]) -> Result<(), DropReason> {
    check(packet, RTCP_HEADER_LEN)
}

fn check(packet: &[u8], min: usize) -> Result<(), DropReason> {
    match packet.first() {
        Some(first) if packet.len() >= min && first >> 6 == 2 => Ok(()),
        _ => Err(DropReason::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn first_source_latches_and_others_are_rejected() {
        let t0 = Instant::now();
        let mut latch = Latch::new(None);
        latch.set_sdp_addr(Some(addr("192.0.2.1:4000")));
        assert_eq!(latch.destination(), Some(addr("192.0.2.1:4000")));
        assert_eq!(
            latch.on_packet(t0, addr("198.51.100.9:61000")),
            Verdict::Latched
        );
        assert_eq!(
            latch.destination(),
            Some(addr("198.51.100.9:61000")),
            "NAT source wins"
        );
        assert_eq!(
            latch.on_packet(t0, addr("198.51.100.9:61000")),
            Verdict::Accepted
        );
        assert_eq!(
            latch.on_packet(t0, addr("192.0.2.1:4000")),
            Verdict::Rejected
        );
        assert_eq!(latch.rejected(), 1);
        assert_eq!(latch.destination(), Some(addr("198.51.100.9:61000")));
    }

    #[test]
    fn without_relatch_a_silent_source_stays_latched() {
        let t0 = Instant::now();
        let mut latch = Latch::new(None);
        latch.on_packet(t0, addr("10.0.0.1:1000"));
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(
            latch.on_packet(later, addr("10.0.0.2:1000")),
            Verdict::Rejected
        );
    }

    #[test]
    fn relatch_happens_only_after_the_silence_period() {
        let t0 = Instant::now();
        let mut latch = Latch::new(Some(Duration::from_secs(5)));
        latch.on_packet(t0, addr("10.0.0.1:1000"));
        latch.on_packet(t0 + Duration::from_secs(2), addr("10.0.0.1:1000"));
        let other = addr("10.0.0.2:2000");
        assert_eq!(
            latch.on_packet(t0 + Duration::from_secs(6), other),
            Verdict::Rejected
        );
        assert_eq!(
            latch.on_packet(t0 + Duration::from_secs(7), other),
            Verdict::Latched
        );
        assert_eq!(latch.destination(), Some(other));
    }

    #[test]
    fn new_sdp_address_resets_the_latch_but_same_address_does_not() {
        let t0 = Instant::now();
        let mut latch = Latch::new(None);
        latch.on_packet(t0, addr("10.0.0.1:1000"));
        latch.set_sdp_addr(Some(addr("192.0.2.1:4000")));
        assert_eq!(
            latch.latched(),
            Some(addr("10.0.0.1:1000")),
            "first SDP keeps early latch"
        );
        latch.set_sdp_addr(Some(addr("192.0.2.1:4000")));
        assert_eq!(
            latch.latched(),
            Some(addr("10.0.0.1:1000")),
            "unchanged re-INVITE keeps it"
        );
        latch.set_sdp_addr(Some(addr("192.0.2.2:5000")));
        assert_eq!(latch.latched(), None);
        assert_eq!(latch.destination(), Some(addr("192.0.2.2:5000")));
    }

    #[test]
    fn unspecified_or_zero_port_sdp_address_is_no_destination() {
        let mut latch = Latch::new(None);
        assert_eq!(latch.destination(), None);
        latch.set_sdp_addr(Some(addr("0.0.0.0:4000")));
        assert_eq!(latch.destination(), None);
        latch.set_sdp_addr(Some(addr("[::]:4000")));
        assert_eq!(latch.destination(), None);
        latch.set_sdp_addr(Some(addr("192.0.2.1:0")));
        assert_eq!(latch.destination(), None);
    }

    #[test]
    fn short_or_wrong_version_datagrams_are_malformed() {
        let mut rtp = [0u8; 12];
        rtp[0] = 0x80;
        assert_eq!(check_rtp(&rtp), Ok(()));
        assert_eq!(check_rtp(&rtp[..11]), Err(DropReason::Malformed));
        assert_eq!(check_rtp(&[]), Err(DropReason::Malformed));
        rtp[0] = 0x40;
        assert_eq!(check_rtp(&rtp), Err(DropReason::Malformed));
        let rtcp = [0x81, 200, 0, 1, 0, 0, 0, 1];
        assert_eq!(check_rtcp(&rtcp), Ok(()));
        assert_eq!(check_rtcp(&rtcp[..4]), Err(DropReason::Malformed));
    }

    #[test]
    fn drop_reasons_index_their_table() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}
