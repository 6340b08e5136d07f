//! Audio codecs of the media engine. PURE: no I/O, no clock, no allocation per frame once the
//! caller's output buffers have grown to size.
//!
//! Owns [`CodecKind`] (what an SDP `a=rtpmap` names and how RTP clocks it), the
//! [`Encoder`]/[`Decoder`] traits and their implementations:
//! * G.711 µ-law and A-law (ITU-T G.711; RFC 3551 §4.5.14, static PT 0 and 8), table driven:
//!   [`g711`].
//! * G.722 64 kbit/s SB-ADPCM (ITU-T G.722 §3–§4 and §6, mode 1), 16 kHz PCM, with the
//!   RFC 3551 §4.5.2 quirk of an 8000 Hz RTP clock: [`g722`].
//! * Opus (RFC 6716) through libopus, mono, VoIP application, 20 ms frames, inband FEC;
//!   RTP payload format RFC 7587 (`opus/48000/2`, 48 kHz RTP clock at any PCM rate): [`opus`].
//!
//! Every encoder takes exactly one 20 ms frame ([`crate::media::frame_len`] samples at its PCM
//! rate); every decoder takes one RTP payload of any duration. Malformed payloads return a
//! [`CodecError`], never a panic. Losses are bridged by [`Decoder::conceal`]: libopus' PLC for
//! Opus, a fading repetition of the last frame for G.711 and G.722.

pub mod g711;
pub mod g722;
pub mod opus;

use thiserror::Error;

use crate::media::frame_len;
use crate::media::sdp::{Codec, SupportedCodec};

/// Why a codec could not be built or could not code a frame.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CodecError {
    /// The codec does not work at this PCM sample rate.
    #[error("{kind:?} does not support a PCM rate of {rate} Hz")]
    UnsupportedRate { kind: CodecKind, rate: u32 },
    /// An encoder was handed something other than one 20 ms frame.
    #[error("expected a frame of {expected} samples, got {got}")]
    FrameLength { expected: usize, got: usize },
    /// The payload cannot be decoded (empty, truncated, corrupt).
    #[error("malformed {kind:?} payload: {reason}")]
    Malformed {
        kind: CodecKind,
        reason: &'static str,
    },
    /// libopus refused an operation.
    #[error("opus: {0}")]
    Opus(String),
}

/// An audio codec the media engine can terminate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodecKind {
    /// G.711 µ-law.
    Pcmu,
    /// G.711 A-law.
    Pcma,
    /// G.722 at 64 kbit/s.
    G722,
    /// Opus, mono.
    Opus,
}

impl CodecKind {
    /// The codec an SDP payload type describes: `PCMU/8000`, `PCMA/8000`, `G722/8000` (mono)
    /// or `opus/48000/2`, names case-insensitive. Anything else (telephone-event included) is
    /// `None`.
    pub fn from_sdp(codec: &Codec) -> Option<Self> {
        Self::from_supported(codec.supported()?)
    }

    /// The codec behind a negotiated [`SupportedCodec`]; `None` for telephone-event.
    pub fn from_supported(codec: SupportedCodec) -> Option<Self> {
        match codec {
            SupportedCodec::Pcmu => Some(Self::Pcmu),
            SupportedCodec::Pcma => Some(Self::Pcma),
            SupportedCodec::G722 => Some(Self::G722),
            SupportedCodec::Opus => Some(Self::Opus),
            SupportedCodec::TelephoneEvent => None,
        }
    }

    /// The `a=rtpmap` encoding name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pcmu => "PCMU",
            Self::Pcma => "PCMA",
            Self::G722 => "G722",
            Self::Opus => "opus",
        }
    }

    /// RTP timestamp clock rate: 8000 for G.722 too (RFC 3551 §4.5.2), 48000 for Opus
    /// whatever the audio bandwidth (RFC 7587 §4.1).
    pub fn rtp_clock_rate(self) -> u32 {
        match self {
            Self::Pcmu | Self::Pcma | Self::G722 => 8000,
            Self::Opus => 48000,
        }
    }

    /// The sample rate the codec's audio is natively coded at.
    pub fn native_rate(self) -> u32 {
        match self {
            Self::Pcmu | Self::Pcma => 8000,
            Self::G722 => 16000,
            Self::Opus => 48000,
        }
    }

    /// The RFC 3551 static payload type, if the codec has one.
    pub fn static_payload_type(self) -> Option<u8> {
        match self {
            Self::Pcmu => Some(0),
            Self::Pcma => Some(8),
            Self::G722 => Some(9),
            Self::Opus => None,
        }
    }

    /// How far the RTP timestamp advances per 20 ms frame.
    pub fn rtp_timestamp_step(self) -> u32 {
        self.rtp_clock_rate() * crate::media::FRAME_MS / 1000
    }

    /// Whether the codec can be driven with PCM at `rate`.
    pub fn supports_pcm_rate(self, rate: u32) -> bool {
        match self {
            Self::Pcmu | Self::Pcma => rate == 8000,
            Self::G722 => rate == 16000,
            Self::Opus => matches!(rate, 8000 | 12000 | 16000 | 24000 | 48000),
        }
    }

    fn check_rate(self, rate: u32) -> Result<(), CodecError> {
        if self.supports_pcm_rate(rate) {
            Ok(())
        } else {
            Err(CodecError::UnsupportedRate { kind: self, rate })
        }
    }
}

/// Turns 20 ms frames of mono PCM into RTP payloads.
pub trait Encoder: Send {
    fn kind(&self) -> CodecKind;
    /// The PCM sample rate this encoder takes.
    fn pcm_rate(&self) -> u32;
    /// Encodes exactly one 20 ms frame of `frame_len(pcm_rate)` samples, appending to out.
    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError>;
}

/// Turns RTP payloads into mono PCM.
pub trait Decoder: Send {
    fn kind(&self) -> CodecKind;
    /// The PCM sample rate this decoder produces.
    fn pcm_rate(&self) -> u32;
    /// Decodes one RTP payload (any ptime) appending PCM at pcm_rate.
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError>;
    /// Packet-loss concealment: appends `samples` samples (Opus: its PLC; G.711/G.722: fade
    /// the last frame repeated, then silence).
    fn conceal(&mut self, samples: usize, out: &mut Vec<i16>);
    /// Conceals `samples` lost samples when the packet after the loss, `next`, is already at
    /// hand: Opus rebuilds the loss from the inband FEC data `next` carries (RFC 6716 §2.1.7);
    /// other codecs (and Opus when `next` carries none) conceal as [`Self::conceal`]. Decode
    /// `next` itself afterwards as usual.
    fn recover(&mut self, next: &[u8], samples: usize, out: &mut Vec<i16>) {
        let _ = next;
        self.conceal(samples, out);
    }
}

/// A new encoder of `kind` taking PCM at `pcm_rate`: G.711 only at 8000 Hz, G.722 only at
/// 16000 Hz, Opus at 8000, 12000, 16000, 24000 or 48000 Hz.
pub fn encoder(kind: CodecKind, pcm_rate: u32) -> Result<Box<dyn Encoder>, CodecError> {
    kind.check_rate(pcm_rate)?;
    Ok(match kind {
        CodecKind::Pcmu => Box::new(g711::G711Encoder::new(g711::Law::Mu)),
        CodecKind::Pcma => Box::new(g711::G711Encoder::new(g711::Law::A)),
        CodecKind::G722 => Box::new(g722::G722Encoder::new()),
        CodecKind::Opus => Box::new(opus::OpusEncoder::new(pcm_rate)?),
    })
}

/// A new decoder of `kind` producing PCM at `pcm_rate` (the same rates as [`encoder`]).
pub fn decoder(kind: CodecKind, pcm_rate: u32) -> Result<Box<dyn Decoder>, CodecError> {
    kind.check_rate(pcm_rate)?;
    Ok(match kind {
        CodecKind::Pcmu => Box::new(g711::G711Decoder::new(g711::Law::Mu)),
        CodecKind::Pcma => Box::new(g711::G711Decoder::new(g711::Law::A)),
        CodecKind::G722 => Box::new(g722::G722Decoder::new()),
        CodecKind::Opus => Box::new(opus::OpusDecoder::new(pcm_rate)?),
    })
}

fn check_frame(pcm: &[i16], rate: u32) -> Result<(), CodecError> {
    let expected = frame_len(rate);
    if pcm.len() == expected {
        Ok(())
    } else {
        Err(CodecError::FrameLength {
            expected,
            got: pcm.len(),
        })
    }
}

/// Concealment by repetition for codecs without their own PLC: the last decoded 20 ms are
/// repeated with a linear fade to silence over [`FADE_FRAMES`] frames, then silence. Any
/// successful decode resets the fade.
#[derive(Debug)]
struct RepeatConcealer {
    /// The last `frame_len(rate)` decoded samples (fewer until that much was decoded).
    last: Vec<i16>,
    /// Samples concealed since the last decode.
    lost: usize,
    frame: usize,
}

/// Frames over which concealment fades to silence.
const FADE_FRAMES: usize = 3;

impl RepeatConcealer {
    fn new(rate: u32) -> Self {
        let frame = frame_len(rate);
        Self {
            last: Vec::with_capacity(frame),
            lost: 0,
            frame,
        }
    }

    /// Remembers the tail of what was just decoded.
    fn decoded(&mut self, pcm: &[i16]) {
        self.lost = 0;
        if pcm.len() >= self.frame {
            self.last.clear();
            self.last.extend_from_slice(&pcm[pcm.len() - self.frame..]);
        } else {
            let keep = (self.frame - pcm.len()).min(self.last.len());
            self.last.drain(..self.last.len() - keep);
            self.last.extend_from_slice(pcm);
        }
    }

    fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) {
        let fade = self.frame * FADE_FRAMES;
        let start = out.len();
        out.resize(start + samples, 0);
        if !self.last.is_empty() {
            for (i, slot) in out[start..].iter_mut().enumerate() {
                let pos = self.lost + i;
                if pos >= fade {
                    break;
                }
                let sample = i32::from(self.last[pos % self.last.len()]);
                *slot = (sample * (fade - pos) as i32 / fade as i32) as i16;
            }
        }
        self.lost = self.lost.saturating_add(samples);
    }
}

#[cfg(test)]
mod tests;
