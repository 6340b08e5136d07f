//! Media anchoring for the B2BUA (no transcoding yet).
//!
//! * [`sdp`] (PURE): parse, print and rewrite SDP; offer/answer codec intersection
//!   (RFC 8866, RFC 3264).
//! * [`latch`] (SANS-IO): symmetric RTP latching and the minimal RTP validation of the relay.
//! * [`relay`] (DRIVER): the port pool and the two-leg RTP/RTCP relay.

pub mod latch;
pub mod relay;
pub mod sdp;
