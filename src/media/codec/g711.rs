//! G.711 µ-law (PCMU) and A-law (PCMA), ITU-T G.711 §2–§3 (RFC 3551 §4.5.14). PURE.
//!
//! Table driven: decoding is one lookup in a 256-entry table; encoding is one lookup in a
//! table indexed by the significant bits of the linear sample (14 bits for µ-law, 13 for
//! A-law: the resolution G.711 quantises from). All tables are built at compile time.

use super::{CodecError, CodecKind, Decoder, Encoder, RepeatConcealer, check_frame};

/// The G.711 companding law.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Law {
    /// µ-law (North America, Japan): PCMU.
    Mu,
    /// A-law (rest of the world): PCMA.
    A,
}

impl Law {
    fn kind(self) -> CodecKind {
        match self {
            Law::Mu => CodecKind::Pcmu,
            Law::A => CodecKind::Pcma,
        }
    }
}

/// µ-law bias added to the magnitude before the segment search (G.711 Table 2a: 33 in
/// 14-bit units).
const MU_BIAS: i32 = 0x84;
/// Largest 14-bit magnitude µ-law represents before the bias.
const MU_CLIP: i32 = 8159;

/// Encodes one 14-bit linear value (-8192..=8191) to µ-law.
const fn mu_encode14(value: i32) -> u8 {
    let (mut magnitude, mask) = if value < 0 {
        (-value, 0x7F)
    } else {
        (value, 0xFF)
    };
    if magnitude > MU_CLIP {
        magnitude = MU_CLIP;
    }
    magnitude += MU_BIAS >> 2;
    // Segment: how many doublings of 64 the biased magnitude reaches.
    let mut segment = 0;
    while segment < 8 && magnitude >= (0x40 << segment) {
        segment += 1;
    }
    if segment >= 8 {
        return (0x7F ^ mask) as u8;
    }
    let code = (segment << 4) | ((magnitude >> (segment + 1)) & 0x0F);
    (code ^ mask) as u8
}

/// Decodes one µ-law byte to 16-bit linear.
const fn mu_decode(code: u8) -> i16 {
    let code = !code as i32;
    let magnitude = (((code & 0x0F) << 3) + MU_BIAS) << ((code & 0x70) >> 4);
    if code & 0x80 != 0 {
        (MU_BIAS - magnitude) as i16
    } else {
        (magnitude - MU_BIAS) as i16
    }
}

/// Encodes one 13-bit linear value (-4096..=4095) to A-law (even bits inverted, 0x55).
const fn a_encode13(value: i32) -> u8 {
    let (magnitude, mask) = if value >= 0 {
        (value, 0xD5)
    } else {
        (-value - 1, 0x55)
    };
    let mut segment = 0;
    while segment < 8 && magnitude >= (0x20 << segment) {
        segment += 1;
    }
    if segment >= 8 {
        return (0x7F ^ mask) as u8;
    }
    let shift = if segment < 2 { 1 } else { segment };
    let code = (segment << 4) | ((magnitude >> shift) & 0x0F);
    (code ^ mask) as u8
}

/// Decodes one A-law byte to 16-bit linear.
const fn a_decode(code: u8) -> i16 {
    let code = (code ^ 0x55) as i32;
    let segment = (code & 0x70) >> 4;
    let mut magnitude = (code & 0x0F) << 4;
    magnitude += if segment == 0 { 8 } else { 0x108 };
    if segment > 1 {
        magnitude <<= segment - 1;
    }
    if code & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

const fn mu_encode_table() -> [u8; 1 << 14] {
    let mut table = [0u8; 1 << 14];
    let mut i = 0;
    while i < table.len() {
        // Index is the 14-bit two's complement pattern of `sample >> 2`.
        let value = ((i as i32) << 18) >> 18;
        table[i] = mu_encode14(value);
        i += 1;
    }
    table
}

const fn a_encode_table() -> [u8; 1 << 13] {
    let mut table = [0u8; 1 << 13];
    let mut i = 0;
    while i < table.len() {
        let value = ((i as i32) << 19) >> 19;
        table[i] = a_encode13(value);
        i += 1;
    }
    table
}

const fn decode_table(law: Law) -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = match law {
            Law::Mu => mu_decode(i as u8),
            Law::A => a_decode(i as u8),
        };
        i += 1;
    }
    table
}

static MU_ENCODE: [u8; 1 << 14] = mu_encode_table();
static A_ENCODE: [u8; 1 << 13] = a_encode_table();
static MU_DECODE: [i16; 256] = decode_table(Law::Mu);
static A_DECODE: [i16; 256] = decode_table(Law::A);

/// µ-law code of one 16-bit linear sample.
#[inline]
pub fn linear_to_ulaw(sample: i16) -> u8 {
    MU_ENCODE[((sample >> 2) as u16 & 0x3FFF) as usize]
}

/// 16-bit linear value of one µ-law code.
#[inline]
pub fn ulaw_to_linear(code: u8) -> i16 {
    MU_DECODE[code as usize]
}

/// A-law code of one 16-bit linear sample.
#[inline]
pub fn linear_to_alaw(sample: i16) -> u8 {
    A_ENCODE[((sample >> 3) as u16 & 0x1FFF) as usize]
}

/// 16-bit linear value of one A-law code.
#[inline]
pub fn alaw_to_linear(code: u8) -> i16 {
    A_DECODE[code as usize]
}

/// G.711 encoder at 8000 Hz.
#[derive(Debug)]
pub struct G711Encoder {
    law: Law,
}

impl G711Encoder {
    pub fn new(law: Law) -> Self {
        Self { law }
    }
}

impl Encoder for G711Encoder {
    fn kind(&self) -> CodecKind {
        self.law.kind()
    }

    fn pcm_rate(&self) -> u32 {
        8000
    }

    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError> {
        check_frame(pcm, 8000)?;
        match self.law {
            Law::Mu => out.extend(pcm.iter().map(|&s| linear_to_ulaw(s))),
            Law::A => out.extend(pcm.iter().map(|&s| linear_to_alaw(s))),
        }
        Ok(())
    }
}

/// G.711 decoder at 8000 Hz. Any payload length is valid (one sample per byte); an empty
/// payload is refused.
#[derive(Debug)]
pub struct G711Decoder {
    law: Law,
    concealer: RepeatConcealer,
}

impl G711Decoder {
    pub fn new(law: Law) -> Self {
        Self {
            law,
            concealer: RepeatConcealer::new(8000),
        }
    }
}

impl Decoder for G711Decoder {
    fn kind(&self) -> CodecKind {
        self.law.kind()
    }

    fn pcm_rate(&self) -> u32 {
        8000
    }

    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError> {
        if payload.is_empty() {
            return Err(CodecError::Malformed {
                kind: self.law.kind(),
                reason: "empty payload",
            });
        }
        let start = out.len();
        let table = match self.law {
            Law::Mu => &MU_DECODE,
            Law::A => &A_DECODE,
        };
        out.extend(payload.iter().map(|&b| table[b as usize]));
        self.concealer.decoded(&out[start..]);
        Ok(())
    }

    fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) {
        self.concealer.conceal(samples, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_known_values() {
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x7F), 0);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        // Segment 0, step 1: 8 (14-bit 2) + bias lands in code 0xFE.
        assert_eq!(ulaw_to_linear(0xFE), 8);
        assert_eq!(ulaw_to_linear(0x7E), -8);
        assert_eq!(linear_to_ulaw(8), 0xFE);
        assert_eq!(linear_to_ulaw(-8), 0x7E);
    }

    #[test]
    fn alaw_known_values() {
        assert_eq!(linear_to_alaw(0), 0xD5);
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(linear_to_alaw(-1), 0x55);
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2A);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
    }

    #[test]
    fn every_code_round_trips_through_linear() {
        for code in 0..=255u8 {
            let linear = ulaw_to_linear(code);
            let back = linear_to_ulaw(linear);
            // µ-law has two zeros (0x7F and 0xFF): both decode to 0, which encodes as 0xFF.
            if code == 0x7F {
                assert_eq!(back, 0xFF);
            } else {
                assert_eq!(back, code, "µ-law {code:#04x} -> {linear}");
            }
            assert_eq!(
                linear_to_alaw(alaw_to_linear(code)),
                code,
                "A-law {code:#04x}"
            );
        }
    }

    #[test]
    fn quantisation_error_stays_within_half_a_step() {
        for sample in (i16::MIN..=i16::MAX).step_by(7) {
            for (encode, decode, law) in [
                (
                    linear_to_ulaw as fn(i16) -> u8,
                    ulaw_to_linear as fn(u8) -> i16,
                    "µ",
                ),
                (linear_to_alaw, alaw_to_linear, "A"),
            ] {
                let back = i32::from(decode(encode(sample)));
                let error = (back - i32::from(sample)).abs();
                // Half a step grows with the segment (at most 512); the clipped extremes
                // are off by up to the clip distance (643 for µ-law).
                let allowed = (i32::from(sample).abs() / 16).max(16) + 700;
                assert!(error <= allowed, "{law}-law {sample} -> {back}");
            }
        }
    }

    #[test]
    fn decoding_is_monotonic_in_the_linear_order() {
        // Positive µ-law codes 0xFF down to 0x80 increase in magnitude.
        let positives: Vec<i16> = (0x80..=0xFFu8).rev().map(ulaw_to_linear).collect();
        assert!(positives.windows(2).all(|w| w[0] < w[1]));
    }
}
