//! Opus (RFC 6716) through libopus (the `opus` crate). PURE: libopus does no I/O.
//!
//! Mono, `OPUS_APPLICATION_VOIP`, 20 ms frames, voice signal hint, inband FEC on with an
//! expected loss of [`EXPECTED_LOSS_PERCENT`] so the FEC data is actually sent (RFC 6716
//! §2.1.7), VBR at [`bitrate`] (24 kbit/s up to wideband, 32 kbit/s above). The RTP payload is
//! one Opus packet (RFC 7587 §4.2); the RTP clock is 48 kHz whatever PCM rate the codec runs
//! at (RFC 7587 §4.1), which [`super::CodecKind::rtp_clock_rate`] reflects.

use opus::{Application, Bitrate, Channels, Signal};

use super::{CodecError, CodecKind, Decoder, Encoder, check_frame};

/// Packet loss the encoder assumes, which sizes its inband FEC. At 5 % libopus 1.3 judges a
/// 24 kbit/s wideband stream too lean for FEC and sends none; at 10 % it does (tested).
pub const EXPECTED_LOSS_PERCENT: i32 = 10;
/// libopus encoder complexity (0–10). Encoding dominates the cost of an Opus leg; on 16 kHz
/// speech (release build, loaded 2-core Xeon) one 20 ms frame took about 60 µs at 0, 120 µs
/// at 3, 150 µs at 5 and 400 µs at 10. 3 keeps SILK's quality for voice at a third of the
/// default's cost.
pub const COMPLEXITY: i32 = 3;
/// Largest Opus packet (RFC 6716 §3.4, R5).
const MAX_PACKET: usize = 1275;
/// Longest duration one Opus packet can carry, in ms (RFC 6716 §3.2.5).
const MAX_PACKET_MS: usize = 120;

fn opus_error(error: opus::Error) -> CodecError {
    CodecError::Opus(error.to_string())
}

/// Target bitrate for PCM at `rate`.
pub fn bitrate(rate: u32) -> i32 {
    if rate <= 16000 { 24000 } else { 32000 }
}

/// Opus encoder, one 20 ms frame per packet.
pub struct OpusEncoder {
    inner: opus::Encoder,
    rate: u32,
    packet: Box<[u8; MAX_PACKET]>,
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder")
            .field("rate", &self.rate)
            .finish_non_exhaustive()
    }
}

impl OpusEncoder {
    /// A mono VoIP encoder taking PCM at `rate` (8000, 12000, 16000, 24000 or 48000).
    pub fn new(rate: u32) -> Result<Self, CodecError> {
        let mut inner =
            opus::Encoder::new(rate, Channels::Mono, Application::Voip).map_err(opus_error)?;
        inner
            .set_bitrate(Bitrate::Bits(bitrate(rate)))
            .map_err(opus_error)?;
        inner.set_inband_fec(true).map_err(opus_error)?;
        inner
            .set_packet_loss_perc(EXPECTED_LOSS_PERCENT)
            .map_err(opus_error)?;
        inner.set_signal(Signal::Voice).map_err(opus_error)?;
        inner.set_complexity(COMPLEXITY).map_err(opus_error)?;
        Ok(Self {
            inner,
            rate,
            packet: Box::new([0; MAX_PACKET]),
        })
    }
}

impl Encoder for OpusEncoder {
    fn kind(&self) -> CodecKind {
        CodecKind::Opus
    }

    fn pcm_rate(&self) -> u32 {
        self.rate
    }

    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError> {
        check_frame(pcm, self.rate)?;
        let len = self
            .inner
            .encode(pcm, &mut self.packet[..])
            .map_err(opus_error)?;
        out.extend_from_slice(&self.packet[..len]);
        Ok(())
    }
}

/// Opus decoder producing mono PCM at its rate; concealment and FEC recovery by libopus.
pub struct OpusDecoder {
    inner: opus::Decoder,
    rate: u32,
    /// Samples in 2.5 ms, the granularity libopus conceals in.
    quantum: usize,
    /// Scratch for concealment rounded up to that granularity.
    scratch: Vec<i16>,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder")
            .field("rate", &self.rate)
            .finish_non_exhaustive()
    }
}

impl OpusDecoder {
    /// A mono decoder producing PCM at `rate` (8000, 12000, 16000, 24000 or 48000).
    pub fn new(rate: u32) -> Result<Self, CodecError> {
        let inner = opus::Decoder::new(rate, Channels::Mono).map_err(opus_error)?;
        let quantum = (rate / 400) as usize;
        Ok(Self {
            inner,
            rate,
            quantum,
            scratch: Vec::with_capacity(crate::media::frame_len(rate)),
        })
    }

    fn max_samples(&self) -> usize {
        self.rate as usize * MAX_PACKET_MS / 1000
    }

    /// Runs libopus' loss path for `samples` samples, appending exactly `samples`: PLC in
    /// chunks of at most one 20 ms frame (rounded up to 2.5 ms). With a `next` packet, the
    /// last (up to) 20 ms are rebuilt from its inband FEC instead, since that is the audio FEC
    /// describes (RFC 6716 §2.1.7); libopus falls back to PLC when `next` carries none.
    fn lost(&mut self, next: &[u8], samples: usize, out: &mut Vec<i16>) {
        let frame = crate::media::frame_len(self.rate);
        let fec_part = if next.is_empty() {
            0
        } else {
            samples.min(frame)
        };
        let mut remaining = samples - fec_part;
        while remaining > 0 {
            let want = remaining.min(frame);
            self.run_loss(&[], want, out);
            remaining -= want;
        }
        if fec_part > 0 {
            self.run_loss(next, fec_part, out);
        }
    }

    /// One libopus loss call (PLC when `next` is empty, else FEC from `next`) appending exactly
    /// `want` samples; whatever libopus cannot produce is silence.
    fn run_loss(&mut self, next: &[u8], want: usize, out: &mut Vec<i16>) {
        let chunk = want.div_ceil(self.quantum) * self.quantum;
        self.scratch.clear();
        self.scratch.resize(chunk, 0);
        let fec = !next.is_empty();
        let got = match self.inner.decode(next, &mut self.scratch, fec) {
            Ok(n) => n.min(want),
            Err(_) => self
                .inner
                .decode(&[], &mut self.scratch, false)
                .map_or(0, |n| n.min(want)),
        };
        out.extend_from_slice(&self.scratch[..got]);
        out.resize(out.len() + (want - got), 0);
    }
}

impl Decoder for OpusDecoder {
    fn kind(&self) -> CodecKind {
        CodecKind::Opus
    }

    fn pcm_rate(&self) -> u32 {
        self.rate
    }

    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError> {
        let malformed = |reason| CodecError::Malformed {
            kind: CodecKind::Opus,
            reason,
        };
        if payload.is_empty() {
            // An empty slice means "lost" to libopus; an empty RTP payload is just malformed.
            return Err(malformed("empty payload"));
        }
        let samples = opus::packet::get_nb_samples(payload, self.rate)
            .map_err(|_| malformed("invalid TOC or frame count"))?;
        if samples == 0 || samples > self.max_samples() {
            return Err(malformed("invalid packet duration"));
        }
        let start = out.len();
        out.resize(start + samples, 0);
        match self.inner.decode(payload, &mut out[start..], false) {
            Ok(n) => {
                out.truncate(start + n.min(samples));
                Ok(())
            }
            Err(_) => {
                out.truncate(start);
                Err(malformed("corrupt packet"))
            }
        }
    }

    fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) {
        self.lost(&[], samples, out);
    }

    fn recover(&mut self, next: &[u8], samples: usize, out: &mut Vec<i16>) {
        self.lost(next, samples, out);
    }
}
