//! G.722 7 kHz audio coding at 64 kbit/s (ITU-T G.722 (09/2012), mode 1). PURE.
//!
//! Sub-band ADPCM: a 24-tap quadrature mirror filter (§3.2 transmit, §4.4 receive) splits
//! 16 kHz PCM into two 8 kHz bands; the lower band is coded with 6-bit ADPCM (§3.4 QUANTL,
//! §4.3 INVQBL for the output, 4-bit INVQAL for the predictor), the higher band with 2-bit
//! ADPCM (§3.5 QUANTH, INVQAH). Both bands share the adaptive predictor of §3.6 (two poles,
//! six zeros: blocks RECONS, PARREC, UPPOL1/2, UPZERO, FILTEP, FILTEZ, PREDIC) and the
//! log-domain scale factor adaptation (LOGSCL/SCALEL, LOGSCH/SCALEH). One octet per pair of
//! input samples: the 2 high-band bits above the 6 low-band bits (§1.4). RTP carries the octets
//! as they are, first sample pair first (RFC 3551 §4.5.2).
//!
//! Arithmetic follows the recommendation's fixed-point operations (16-bit saturation,
//! arithmetic shifts) so the bit stream interoperates with other implementations. PCM is
//! 16-bit: the QMF scales its input and output so that full scale maps onto the 15-bit
//! signal the ADPCM stages work on. Encoder and decoder are bit-exact with FFmpeg's G.722
//! (checked on speech and tones; a golden vector guards it in the tests).

use super::{CodecError, CodecKind, Decoder, Encoder, RepeatConcealer, check_frame};

/// G.722 PCM rate.
const RATE: u32 = 16000;

/// QMF coefficients h0, h2, …, h22 (G.722 Table 11).
const H_EVEN: [i32; 12] = [3, -11, 12, 32, -210, 951, 3876, -805, 362, -156, 53, -11];
/// QMF coefficients h1, h3, …, h23.
const H_ODD: [i32; 12] = [-11, 53, -156, 362, -805, 3876, 951, -210, 32, 12, -11, 3];

/// QUANTL decision levels (Table 12), in units of the scale factor / 4096.
const Q6: [i32; 30] = [
    0, 35, 72, 110, 150, 190, 233, 276, 323, 370, 422, 473, 530, 587, 650, 714, 786, 858, 940,
    1023, 1121, 1219, 1339, 1458, 1612, 1765, 1980, 2195, 2557, 2919,
];
/// Code for a negative difference in interval `mil` (Table 12, ILN).
const ILN: [u8; 31] = [
    0, 63, 62, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11,
    10, 9, 8, 7, 6, 5, 4,
];
/// Code for a positive difference in interval `mil` (Table 12, ILP).
const ILP: [u8; 31] = [
    0, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48, 47, 46, 45, 44, 43, 42, 41, 40, 39,
    38, 37, 36, 35, 34, 33, 32,
];
/// 4-bit inverse quantiser outputs (Table 14, QQ4 with sign), indexed by the code's top 4 bits.
const QM4: [i32; 16] = [
    0, -20456, -12896, -8968, -6288, -4240, -2584, -1200, 20456, 12896, 8968, 6288, 4240, 2584,
    1200, 0,
];
/// 6-bit inverse quantiser outputs (Table 16, QQ6 with sign), for the decoder's output in
/// mode 1.
const QM6: [i32; 64] = [
    -136, -136, -136, -136, -24808, -21904, -19008, -16704, -14984, -13512, -12280, -11192, -10232,
    -9360, -8576, -7856, -7192, -6576, -6000, -5456, -4944, -4464, -4008, -3576, -3168, -2776,
    -2400, -2032, -1688, -1360, -1040, -728, 24808, 21904, 19008, 16704, 14984, 13512, 12280,
    11192, 10232, 9360, 8576, 7856, 7192, 6576, 6000, 5456, 4944, 4464, 4008, 3576, 3168, 2776,
    2400, 2032, 1688, 1360, 1040, 728, 432, 136, -432, -136,
];
/// Magnitude class of a 4-bit lower-band code (Table 13, RIL → IL4).
const RL42: [usize; 16] = [0, 7, 6, 5, 4, 3, 2, 1, 7, 6, 5, 4, 3, 2, 1, 0];
/// Lower-band log scale factor multipliers (Table 13, WL).
const WL: [i32; 8] = [-60, -30, 58, 172, 334, 538, 1198, 3042];
/// Higher-band inverse quantiser outputs (Table 15, QQ2 with sign).
const QM2: [i32; 4] = [-7408, -1616, 7408, 1616];
/// Magnitude class of a higher-band code (Table 15, IH → IH2).
const RH2: [usize; 4] = [2, 1, 2, 1];
/// Higher-band log scale factor multipliers (Table 15, WH).
const WH: [i32; 3] = [0, -214, 798];
/// Higher-band codes by magnitude class for negative and positive differences (Table 15).
const IHN: [u8; 3] = [0, 1, 0];
const IHP: [u8; 3] = [0, 3, 2];
/// Higher-band decision level (Table 15, Q2).
const Q2: i32 = 564;
/// Inverse-log table of SCALEL/SCALEH (Table 17, ILB).
const ILB: [i32; 32] = [
    2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383, 2435, 2489, 2543, 2599, 2656, 2714, 2774, 2834,
    2896, 2960, 3025, 3091, 3158, 3228, 3298, 3371, 3444, 3520, 3597, 3676, 3756, 3838, 3922, 4008,
];
/// Upper limits of the log scale factors NBL and NBH.
const NBL_MAX: i32 = 18432;
const NBH_MAX: i32 = 22528;

/// Saturates to the 16-bit range, as every 16-bit operation of the recommendation does.
#[inline]
fn sat(x: i32) -> i32 {
    x.clamp(-32768, 32767)
}

/// Q15 multiplication: `a · b / 2^15`, rounding towards −∞ as the recommendation's shifts do.
#[inline]
fn mul15(a: i32, b: i32) -> i32 {
    (a * b) >> 15
}

/// The 12 most recent values of one QMF polyphase branch, newest first, kept twice over so
/// the window is always one contiguous slice.
#[derive(Debug, Clone)]
struct Branch {
    values: [i32; 24],
    head: usize,
}

impl Branch {
    fn new() -> Self {
        Self {
            values: [0; 24],
            head: 0,
        }
    }

    #[inline]
    fn push(&mut self, value: i32) {
        self.head = if self.head == 0 { 11 } else { self.head - 1 };
        self.values[self.head] = value;
        self.values[self.head + 12] = value;
    }

    /// Σ coefficients[i] · value(newest − i).
    #[inline]
    fn filter(&self, coefficients: &[i32; 12]) -> i32 {
        self.values[self.head..self.head + 12]
            .iter()
            .zip(coefficients)
            .map(|(v, h)| v * h)
            .sum()
    }
}

/// State of one sub-band's ADPCM: scale factor and adaptive predictor (§3.5, §3.6).
#[derive(Debug, Clone)]
struct Band {
    /// Signal estimate S (PREDIC).
    s: i32,
    /// Zero-section output SZ (FILTEZ).
    sz: i32,
    /// Log scale factor NB and the linear scale factor DET it yields.
    nb: i32,
    det: i32,
    /// Pole coefficients A1, A2 (index 0 unused).
    a: [i32; 3],
    /// Zero coefficients B1..B6 (index 0 unused).
    b: [i32; 7],
    /// Quantised differences D(n−1)..D(n−6) at indices 1..=6 (index 0 unused).
    d: [i32; 7],
    /// Partially reconstructed signal P(n)..P(n−2).
    p: [i32; 3],
    /// Reconstructed signal R(n)..R(n−2).
    r: [i32; 3],
}

impl Band {
    fn new(det: i32) -> Self {
        Self {
            s: 0,
            sz: 0,
            nb: 0,
            det,
            a: [0; 3],
            b: [0; 7],
            d: [0; 7],
            p: [0; 3],
            r: [0; 3],
        }
    }

    /// LOGSCL/LOGSCH then SCALEL/SCALEH: leaks the log scale factor, adds the multiplier of
    /// the code just sent and converts back to the linear domain.
    #[inline]
    fn adapt_scale(&mut self, multiplier: i32, nb_max: i32, shift_base: i32) {
        self.nb = (((self.nb * 127) >> 7) + multiplier).clamp(0, nb_max);
        let mantissa = ILB[((self.nb >> 6) & 31) as usize];
        let shift = shift_base - (self.nb >> 11);
        let linear = if shift < 0 {
            mantissa << -shift
        } else {
            mantissa >> shift
        };
        self.det = linear << 2;
    }

    /// Block 4 (§3.6): reconstructs with the quantised difference `dq`, adapts the pole and
    /// zero coefficients and computes the next signal estimate.
    #[inline]
    fn predict(&mut self, dq: i32) {
        // RECONS, PARREC.
        let r0 = sat(self.s + dq);
        let p0 = sat(self.sz + dq);
        let neg0 = p0 < 0;
        let neg1 = self.p[1] < 0;
        let neg2 = self.p[2] < 0;

        // UPPOL2: second pole.
        let a1x4 = sat(self.a[1] << 2);
        let wd = if neg0 == neg1 { -a1x4 } else { a1x4 };
        let towards = if neg0 == neg2 { 128 } else { -128 };
        let a2 = ((wd.min(32767) >> 7) + towards + mul15(self.a[2], 32512)).clamp(-12288, 12288);

        // UPPOL1: first pole, bounded so the pole pair stays stable.
        let step = if neg0 == neg1 { 192 } else { -192 };
        let limit = sat(15360 - a2);
        let a1 = sat(step + mul15(self.a[1], 32640)).clamp(-limit, limit);

        // UPZERO: sign-sign update of the six zeros, leak 1 − 2^-8.
        let gain = if dq == 0 { 0 } else { 128 };
        let dq_neg = dq < 0;
        for i in 1..7 {
            let towards = if (self.d[i] < 0) == dq_neg {
                gain
            } else {
                -gain
            };
            self.b[i] = sat(towards + mul15(self.b[i], 32640));
        }

        // DELAYA / DELAYL: age the histories.
        self.d.copy_within(1..6, 2);
        self.d[1] = dq;
        self.r = [r0, r0, self.r[1]];
        self.p = [p0, p0, self.p[1]];
        self.a = [0, a1, a2];

        // FILTEP: pole section on the reconstructed signal.
        let sp = sat(mul15(self.a[1], sat(self.r[1] + self.r[1]))
            + mul15(self.a[2], sat(self.r[2] + self.r[2])));
        // FILTEZ: zero section on the quantised differences.
        let sz: i32 = (1..7)
            .map(|i| mul15(self.b[i], sat(self.d[i] + self.d[i])))
            .sum();
        self.sz = sat(sz);
        // PREDIC.
        self.s = sat(sp + self.sz);
    }

    /// Lower band after QUANTL produced `code`: INVQAL, LOGSCL, SCALEL, block 4.
    #[inline]
    fn update_lower(&mut self, code: u8) {
        let ril = usize::from(code >> 2);
        let dq = mul15(self.det, QM4[ril]);
        self.adapt_scale(WL[RL42[ril]], NBL_MAX, 8);
        self.predict(dq);
    }

    /// Higher band after QUANTH produced `code`: INVQAH, LOGSCH, SCALEH, block 4. Returns the
    /// quantised difference.
    #[inline]
    fn update_higher(&mut self, code: u8) -> i32 {
        let code = usize::from(code & 3);
        let dq = mul15(self.det, QM2[code]);
        self.adapt_scale(WH[RH2[code]], NBH_MAX, 10);
        self.predict(dq);
        dq
    }
}

/// G.722 encoder: 320 samples at 16 kHz in, 160 octets out per 20 ms frame.
#[derive(Debug, Clone)]
pub struct G722Encoder {
    /// Transmit QMF branches: the first and the second sample of each input pair.
    first: Branch,
    second: Branch,
    lower: Band,
    higher: Band,
}

impl Default for G722Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl G722Encoder {
    pub fn new() -> Self {
        Self {
            first: Branch::new(),
            second: Branch::new(),
            lower: Band::new(32),
            higher: Band::new(8),
        }
    }

    /// Encodes one pair of 16 kHz samples into one octet.
    #[inline]
    fn encode_pair(&mut self, x0: i16, x1: i16) -> u8 {
        // Transmit QMF (§3.2): xA from the newer sample of each pair, xB from the older.
        self.first.push(i32::from(x0));
        self.second.push(i32::from(x1));
        let xa = self.second.filter(&H_EVEN);
        let xb = self.first.filter(&H_ODD);
        let xl = (xa + xb) >> 14;
        let xh = (xa - xb) >> 14;

        // Lower band: SUBTRA, QUANTL.
        let el = sat(xl - self.lower.s);
        let magnitude = if el >= 0 { el } else { -(el + 1) };
        let det = self.lower.det;
        // The interval whose decision levels enclose the magnitude (levels rise monotonically).
        let interval = 1 + Q6[1..].partition_point(|&q| magnitude >= (q * det) >> 12);
        let il = if el < 0 { ILN[interval] } else { ILP[interval] };
        self.lower.update_lower(il);

        // Higher band: SUBTRA, QUANTH.
        let eh = sat(xh - self.higher.s);
        let magnitude = if eh >= 0 { eh } else { -(eh + 1) };
        let class = if magnitude >= (Q2 * self.higher.det) >> 12 {
            2
        } else {
            1
        };
        let ih = if eh < 0 { IHN[class] } else { IHP[class] };
        self.higher.update_higher(ih);

        (ih << 6) | il
    }
}

impl Encoder for G722Encoder {
    fn kind(&self) -> CodecKind {
        CodecKind::G722
    }

    fn pcm_rate(&self) -> u32 {
        RATE
    }

    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError> {
        check_frame(pcm, RATE)?;
        out.reserve(pcm.len() / 2);
        for pair in pcm.chunks_exact(2) {
            let octet = self.encode_pair(pair[0], pair[1]);
            out.push(octet);
        }
        Ok(())
    }
}

/// G.722 decoder: each octet yields two samples at 16 kHz.
#[derive(Debug)]
pub struct G722Decoder {
    /// Receive QMF branches: difference and sum of the band signals.
    diff: Branch,
    sum: Branch,
    lower: Band,
    higher: Band,
    concealer: RepeatConcealer,
}

impl Default for G722Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl G722Decoder {
    pub fn new() -> Self {
        Self {
            diff: Branch::new(),
            sum: Branch::new(),
            lower: Band::new(32),
            higher: Band::new(8),
            concealer: RepeatConcealer::new(RATE),
        }
    }

    /// Decodes one octet into two samples.
    #[inline]
    fn decode_octet(&mut self, octet: u8) -> [i16; 2] {
        let il = octet & 0x3F;
        let ih = octet >> 6;

        // Lower band: INVQBL with the 6-bit table, RECONS, LIMIT; then adapt as the encoder.
        let dl = mul15(self.lower.det, QM6[usize::from(il)]);
        let rl = (self.lower.s + dl).clamp(-16384, 16383);
        self.lower.update_lower(il);

        // Higher band: INVQAH, RECONS, LIMIT (the predictor adapts on the same difference).
        let s = self.higher.s;
        let dh = self.higher.update_higher(ih);
        let rh = (s + dh).clamp(-16384, 16383);

        // Receive QMF (§4.4).
        self.diff.push(rl - rh);
        self.sum.push(rl + rh);
        let out0 = self.diff.filter(&H_EVEN) >> 11;
        let out1 = self.sum.filter(&H_ODD) >> 11;
        [sat(out0) as i16, sat(out1) as i16]
    }
}

impl Decoder for G722Decoder {
    fn kind(&self) -> CodecKind {
        CodecKind::G722
    }

    fn pcm_rate(&self) -> u32 {
        RATE
    }

    /// Every octet is a valid code; only an empty payload is refused.
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError> {
        if payload.is_empty() {
            return Err(CodecError::Malformed {
                kind: CodecKind::G722,
                reason: "empty payload",
            });
        }
        let start = out.len();
        out.reserve(payload.len() * 2);
        for &octet in payload {
            out.extend_from_slice(&self.decode_octet(octet));
        }
        self.concealer.decoded(&out[start..]);
        Ok(())
    }

    fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) {
        self.concealer.conceal(samples, out);
    }
}
