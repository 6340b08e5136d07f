//! The media engine: everything between an RTP datagram and a PCM sample.
//!
//! * [`sdp`] (PURE): parse, print and rewrite SDP; offer/answer codec intersection
//!   (RFC 8866, RFC 3264).
//! * [`latch`] (SANS-IO): symmetric RTP latching and the minimal RTP/RTCP validation done
//!   before a datagram reaches the pipeline.
//! * [`ports`] (DRIVER): the RTP/RTCP port pool, socket binding and the [`ports::Leg`] names.
//! * [`engine`] (DRIVER + SANS-IO pipeline): the per-call media session every call uses:
//!   relay or transcode, record, play, DTMF, conferences.
//! * [`negotiate`] (PURE): offer/answer across the B2BUA with transcoding.
//! * [`rtp`] (SANS-IO): RTP/RTCP packets and sessions, statistics and MOS (RFC 3550).
//! * [`codec`] (PURE): G.711, G.722, Opus.
//! * [`resample`] (PURE): sample-rate conversion.
//! * [`jitter`] (SANS-IO): the adaptive jitter buffer.
//! * [`frame_clock`] (SANS-IO): 20 ms pacing on absolute deadlines.
//! * [`dtmf`] (SANS-IO): RFC 4733 events and SIP INFO digits; [`dtmf_detect`] (PURE):
//!   in-band Goertzel detection.
//! * [`tone`], [`player`] (PURE): tones and WAV prompts; [`mixer`] (SANS-IO): conferences.
//! * [`recorder`] (DRIVER): crash-safe WAV recording on a writer thread.
//! * [`analysis`] (PURE): frequency and level of PCM, for tests and diagnostics.

pub mod analysis;
pub mod codec;
pub mod dtmf;
pub mod dtmf_detect;
pub mod engine;
pub mod frame_clock;
pub mod jitter;
pub mod latch;
pub mod mixer;
pub mod negotiate;
pub mod player;
pub mod ports;
pub mod recorder;
pub mod recordings;
pub mod resample;
pub mod rtp;
pub mod sdp;
#[cfg(test)]
mod test_rng;
pub mod tone;

/// Every terminated media path works in frames of this many milliseconds.
pub const FRAME_MS: u32 = 20;

/// Samples in one frame of mono PCM at `rate_hz`.
pub const fn frame_len(rate_hz: u32) -> usize {
    (rate_hz * FRAME_MS / 1000) as usize
}
