//! In-band DTMF detection (PURE): finds keypad digits in PCM, for calls that carry DTMF as
//! audio instead of RFC 4733 events.
//!
//! The detector runs the Goertzel algorithm on the eight ITU-T Q.23 frequencies over blocks
//! of 102 samples at 8 kHz (12.75 ms; the block scales with the rate, 204 at 16 kHz) and
//! applies the ITU-T Q.24-style validity checks that keep speech from being taken for digits
//! (talk-off):
//!
//! 1. each of the two tones is above a minimum level ([`MIN_TONE_DBFS`]);
//! 2. the strongest row and the strongest column each stand out from the other rows and
//!    columns by [`RELATIVE_PEAK_DB`];
//! 3. twist: the high tone may be at most [`NORMAL_TWIST_DB`] below the low one and at most
//!    [`REVERSE_TWIST_DB`] above it;
//! 4. the tone pair holds [`TONE_TO_TOTAL_ENERGY`] of the block's energy (speech and noise
//!    spread theirs over many frequencies);
//! 5. the same digit is seen in two consecutive blocks (25.5 ms of tone, so a 40 ms digit is
//!    always caught wherever it falls on the block grid), and it is reported once; the next
//!    report needs two consecutive blocks without that digit (a gap) or another digit.
//!
//! Cost: eight multiply-adds per sample and a handful of comparisons per block, no
//! allocation after construction.

use crate::media::dtmf::{COL_HZ, Digit, ROW_HZ};

/// Minimum level of each tone, in dBFS (peak of the sinusoid relative to full scale).
pub const MIN_TONE_DBFS: f32 = -36.0;
/// How far the strongest row (column) must be above every other row (column).
pub const RELATIVE_PEAK_DB: f32 = 8.0;
/// Most the high-group tone may be weaker than the low-group tone (ITU-T Q.24: 8 dB).
pub const NORMAL_TWIST_DB: f32 = 8.0;
/// Most the high-group tone may be stronger than the low-group tone (ITU-T Q.24: 4 dB).
pub const REVERSE_TWIST_DB: f32 = 4.0;
/// The share of the block's energy that the two tones must hold.
pub const TONE_TO_TOTAL_ENERGY: f32 = 0.8;
/// Block length at 8 kHz.
const BLOCK_8K: usize = 102;

/// An in-band DTMF detector for one direction of one call.
#[derive(Debug, Clone)]
pub struct DtmfDetector {
    block: usize,
    coef: [f32; 8],
    s1: [f32; 8],
    s2: [f32; 8],
    energy: f32,
    count: usize,
    /// Goertzel power of a tone at the minimum level, for this block length.
    min_power: f32,
    /// Power of a sinusoid per unit of its block mean-square energy: N/2.
    power_per_energy: f32,
    last_hit: Option<Digit>,
    in_digit: Option<Digit>,
    /// Digits found while processing one oversized frame, beyond the one returned.
    extra: [Option<Digit>; 4],
}

fn db_to_power_ratio(db: f32) -> f32 {
    10f32.powf(db / 10.0)
}

impl DtmfDetector {
    /// A detector for PCM at `rate_hz` (8000 and 16000 are the tuned rates; any rate from
    /// 8000 up works, at a cost proportional to the rate).
    pub fn new(rate_hz: u32) -> Self {
        let rate = rate_hz.max(8000);
        let block = (BLOCK_8K as u64 * u64::from(rate)).div_ceil(8000) as usize;
        let mut coef = [0f32; 8];
        for (c, hz) in coef.iter_mut().zip(ROW_HZ.iter().chain(COL_HZ.iter())) {
            *c = 2.0 * (std::f32::consts::TAU * hz / rate as f32).cos();
        }
        let amplitude = 32767.0 * 10f32.powf(MIN_TONE_DBFS / 20.0);
        let n = block as f32;
        Self {
            block,
            coef,
            s1: [0.0; 8],
            s2: [0.0; 8],
            energy: 0.0,
            count: 0,
            // |X|² of a sinusoid of amplitude A over N samples ≈ (A·N/2)².
            min_power: (amplitude * n / 2.0).powi(2),
            power_per_energy: n / 2.0,
            last_hit: None,
            in_digit: None,
            extra: [None; 4],
        }
    }

    /// Feeds one frame of PCM (any length; 20 ms frames usual) and returns a digit the moment
    /// it is recognised. Each key press is reported once.
    pub fn process(&mut self, frame: &[i16]) -> Option<Digit> {
        let mut found = self.take_extra();
        let mut rest = frame;
        while !rest.is_empty() {
            let take = (self.block - self.count).min(rest.len());
            let (now, later) = rest.split_at(take);
            self.feed(now);
            rest = later;
            if self.count == self.block
                && let Some(digit) = self.end_block()
            {
                if found.is_none() {
                    found = Some(digit);
                } else if let Some(slot) = self.extra.iter_mut().find(|s| s.is_none()) {
                    *slot = Some(digit);
                }
            }
        }
        found
    }

    /// The digit currently held (reported, and not yet released).
    pub fn current(&self) -> Option<Digit> {
        self.in_digit
    }

    /// Forgets partial blocks and the digit in progress.
    pub fn reset(&mut self) {
        self.s1 = [0.0; 8];
        self.s2 = [0.0; 8];
        self.energy = 0.0;
        self.count = 0;
        self.last_hit = None;
        self.in_digit = None;
        self.extra = [None; 4];
    }

    fn take_extra(&mut self) -> Option<Digit> {
        let first = self.extra[0].take();
        self.extra.rotate_left(1);
        first
    }

    fn feed(&mut self, samples: &[i16]) {
        let (mut s1, mut s2, coef) = (self.s1, self.s2, self.coef);
        let mut energy = self.energy;
        for &sample in samples {
            let x = f32::from(sample);
            energy += x * x;
            for k in 0..8 {
                let s0 = coef[k] * s1[k] - s2[k] + x;
                s2[k] = s1[k];
                s1[k] = s0;
            }
        }
        self.s1 = s1;
        self.s2 = s2;
        self.energy = energy;
        self.count += samples.len();
    }

    /// Closes a block: classifies it and runs the two-block confirmation.
    fn end_block(&mut self) -> Option<Digit> {
        let mut power = [0f32; 8];
        for (k, p) in power.iter_mut().enumerate() {
            let (a, b) = (self.s1[k], self.s2[k]);
            *p = a * a + b * b - self.coef[k] * a * b;
        }
        let hit = self.classify(&power);
        self.s1 = [0.0; 8];
        self.s2 = [0.0; 8];
        self.energy = 0.0;
        self.count = 0;

        let mut report = None;
        if hit == self.last_hit && hit != self.in_digit {
            self.in_digit = hit;
            report = hit;
        }
        self.last_hit = hit;
        report
    }

    fn classify(&self, power: &[f32; 8]) -> Option<Digit> {
        let (rows, cols) = power.split_at(4);
        let best = |group: &[f32]| {
            let mut i = 0;
            for (j, &p) in group.iter().enumerate() {
                if p > group[i] {
                    i = j;
                }
            }
            i
        };
        let (r, c) = (best(rows), best(cols));
        let (row, col) = (rows[r], cols[c]);
        // 1. Level.
        if row < self.min_power || col < self.min_power {
            return None;
        }
        // 3. Twist.
        if col < row {
            if row > col * db_to_power_ratio(NORMAL_TWIST_DB) {
                return None;
            }
        } else if col > row * db_to_power_ratio(REVERSE_TWIST_DB) {
            return None;
        }
        // 2. Relative peaks.
        let peak = db_to_power_ratio(RELATIVE_PEAK_DB);
        for (i, &p) in rows.iter().enumerate() {
            if i != r && p * peak > row {
                return None;
            }
        }
        for (i, &p) in cols.iter().enumerate() {
            if i != c && p * peak > col {
                return None;
            }
        }
        // 4. The pair holds most of the energy.
        if row + col < TONE_TO_TOTAL_ENERGY * self.power_per_energy * self.energy {
            return None;
        }
        Digit::at(r, c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::frame_len;

    /// The dual tone of `digit`: low tone at `low_dbfs`, high tone `twist_db` above it
    /// (negative: normal twist, high tone weaker).
    fn tone(digit: Digit, rate: u32, ms: usize, low_dbfs: f32, twist_db: f32) -> Vec<f32> {
        let (low, high) = digit.frequencies();
        let a_low = 32767.0 * 10f32.powf(low_dbfs / 20.0);
        let a_high = a_low * 10f32.powf(twist_db / 20.0);
        let n = rate as usize * ms / 1000;
        let tau = std::f32::consts::TAU;
        (0..n)
            .map(|i| {
                let t = i as f32 / rate as f32;
                a_low * (tau * low * t).sin() + a_high * (tau * high * t + 0.7).sin()
            })
            .collect()
    }

    fn silence(rate: u32, ms: usize) -> Vec<f32> {
        vec![0.0; rate as usize * ms / 1000]
    }

    fn to_pcm(x: &[f32]) -> Vec<i16> {
        x.iter()
            .map(|v| v.round().clamp(-32768.0, 32767.0) as i16)
            .collect()
    }

    /// Deterministic roughly Gaussian noise of the given RMS.
    fn add_noise(x: &mut [f32], rms: f32, seed: u64) {
        let mut state = seed | 1;
        let mut uniform = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        // Sum of 4 uniforms on [-0.5, 0.5): variance 4/12.
        let scale = rms / (4.0f32 / 12.0).sqrt();
        for v in x.iter_mut() {
            *v += scale * (uniform() + uniform() + uniform() + uniform());
        }
    }

    fn rms(x: &[f32]) -> f32 {
        (x.iter().map(|v| v * v).sum::<f32>() / x.len().max(1) as f32).sqrt()
    }

    /// G.711 µ-law, enough for the test: encode then decode.
    fn mulaw_round_trip(x: i16) -> i16 {
        const BIAS: i32 = 0x84;
        const CLIP: i32 = 32635;
        let mut v = i32::from(x);
        let sign = if v < 0 { 0x80 } else { 0 };
        if v < 0 {
            v = -v;
        }
        v = v.min(CLIP) + BIAS;
        let mut exponent = 7;
        let mut mask = 0x4000;
        while exponent > 0 && v & mask == 0 {
            exponent -= 1;
            mask >>= 1;
        }
        let mantissa = (v >> (exponent + 3)) & 0x0f;
        let byte = !(sign | (exponent << 4) | mantissa) as u8;
        // Decode.
        let u = !byte;
        let sign = u & 0x80;
        let exponent = i32::from((u >> 4) & 0x07);
        let mantissa = i32::from(u & 0x0f);
        let magnitude = (((mantissa << 3) + BIAS) << exponent) - BIAS;
        (if sign != 0 { -magnitude } else { magnitude }) as i16
    }

    /// Runs PCM through a fresh detector in 20 ms frames and returns the digits.
    fn detect(rate: u32, pcm: &[i16]) -> String {
        let mut detector = DtmfDetector::new(rate);
        let mut out = String::new();
        for frame in pcm.chunks(frame_len(rate)) {
            if let Some(d) = detector.process(frame) {
                out.push(d.as_char());
            }
        }
        out
    }

    fn padded(rate: u32, lead_samples: usize, body: &[f32]) -> Vec<f32> {
        let mut x = vec![0.0; lead_samples];
        x.extend_from_slice(body);
        x.extend(silence(rate, 60));
        x
    }

    #[test]
    fn mulaw_helper_is_close_to_identity() {
        for x in [-32000i16, -1000, -5, 0, 7, 1234, 30000] {
            let y = mulaw_round_trip(x);
            assert!(
                (i32::from(x) - i32::from(y)).abs() <= i32::from(x).abs() / 16 + 8,
                "{x} -> {y}"
            );
        }
    }

    #[test]
    fn all_digits_at_minus_20_and_minus_6_dbfs_in_40ms_are_detected_at_8_and_16_khz() {
        for rate in [8000, 16_000] {
            for level in [-20.0, -6.0] {
                for (i, digit) in Digit::ALL.into_iter().enumerate() {
                    // Vary where the tone falls on the block grid.
                    let lead = (i * 37) % 200;
                    let x = padded(rate, lead, &tone(digit, rate, 40, level, 0.0));
                    assert_eq!(
                        detect(rate, &to_pcm(&x)),
                        digit.to_string(),
                        "{digit} at {level} dBFS, {rate} Hz, lead {lead}"
                    );
                }
            }
        }
    }

    #[test]
    fn forty_ms_digit_is_found_at_every_offset_on_the_block_grid() {
        for lead in 0..BLOCK_8K + 1 {
            let x = padded(8000, 160 + lead, &tone(Digit::D0, 8000, 40, -20.0, 0.0));
            assert_eq!(detect(8000, &to_pcm(&x)), "0", "lead {lead}");
        }
    }

    #[test]
    fn digits_survive_white_noise_at_15_db_snr_and_mulaw() {
        for rate in [8000, 16_000] {
            for (i, digit) in Digit::ALL.into_iter().enumerate() {
                let t = tone(digit, rate, 40, -20.0, 0.0);
                let mut x = padded(rate, 50 + i * 11, &t);
                add_noise(&mut x, rms(&t) / 10f32.powf(15.0 / 20.0), 0x9e37 + i as u64);
                let pcm: Vec<i16> = to_pcm(&x).into_iter().map(mulaw_round_trip).collect();
                assert_eq!(
                    detect(rate, &pcm),
                    digit.to_string(),
                    "{digit} at {rate} Hz"
                );
            }
        }
    }

    #[test]
    fn forty_ms_digit_in_noise_and_mulaw_is_found_at_every_offset() {
        for lead in 0..BLOCK_8K + 1 {
            for digit in [Digit::D1, Digit::D0, Digit::D] {
                let t = tone(digit, 8000, 40, -20.0, 0.0);
                let mut x = padded(8000, 160 + lead, &t);
                add_noise(&mut x, rms(&t) / 10f32.powf(15.0 / 20.0), 7 + lead as u64);
                let pcm: Vec<i16> = to_pcm(&x).into_iter().map(mulaw_round_trip).collect();
                assert_eq!(detect(8000, &pcm), digit.to_string(), "{digit} lead {lead}");
            }
        }
    }

    #[test]
    fn twist_within_limits_is_accepted_and_beyond_is_rejected() {
        for digit in [Digit::D1, Digit::D5, Digit::Hash, Digit::D] {
            let found = |twist: f32| {
                detect(
                    8000,
                    &to_pcm(&padded(8000, 30, &tone(digit, 8000, 60, -12.0, twist))),
                )
            };
            assert_eq!(found(-6.0), digit.to_string(), "{digit}: 6 dB normal twist");
            assert_eq!(found(2.0), digit.to_string(), "{digit}: 2 dB reverse twist");
            assert_eq!(found(-10.0), "", "{digit}: 10 dB normal twist");
            assert_eq!(found(6.0), "", "{digit}: 6 dB reverse twist");
        }
    }

    #[test]
    fn digit_string_with_50ms_gaps_is_detected_exactly() {
        for rate in [8000, 16_000] {
            let mut x = silence(rate, 30);
            for c in "159#".chars() {
                let digit = Digit::from_char(c).expect("key");
                x.extend(tone(digit, rate, 50, -15.0, -2.0));
                x.extend(silence(rate, 50));
            }
            assert_eq!(detect(rate, &to_pcm(&x)), "159#", "{rate} Hz");
        }
    }

    #[test]
    fn same_digit_twice_after_a_gap_is_reported_twice_and_a_long_press_once() {
        let mut x = tone(Digit::D3, 8000, 2000, -10.0, 0.0);
        x.extend(silence(8000, 50));
        x.extend(tone(Digit::D3, 8000, 60, -10.0, 0.0));
        x.extend(silence(8000, 50));
        assert_eq!(detect(8000, &to_pcm(&x)), "33");
    }

    #[test]
    fn short_tones_single_tones_silence_and_noise_are_not_digits() {
        let short = padded(8000, 0, &tone(Digit::D8, 8000, 20, -10.0, 0.0));
        assert_eq!(detect(8000, &to_pcm(&short)), "", "20 ms is too short");
        let single: Vec<f32> = (0..8000)
            .map(|i| 8000.0 * (std::f32::consts::TAU * 852.0 * i as f32 / 8000.0).sin())
            .collect();
        assert_eq!(detect(8000, &to_pcm(&single)), "", "one tone");
        assert_eq!(detect(8000, &to_pcm(&silence(8000, 1000))), "");
        let mut noise = silence(8000, 3000);
        add_noise(&mut noise, 6000.0, 42);
        assert_eq!(detect(8000, &to_pcm(&noise)), "");
        let quiet = padded(8000, 0, &tone(Digit::D8, 8000, 100, -45.0, 0.0));
        assert_eq!(detect(8000, &to_pcm(&quiet)), "", "below the minimum level");
    }

    #[test]
    fn large_frames_lose_no_digits() {
        let mut x = silence(8000, 20);
        for c in "12".chars() {
            x.extend(tone(
                Digit::from_char(c).expect("key"),
                8000,
                50,
                -10.0,
                0.0,
            ));
            x.extend(silence(8000, 50));
        }
        let pcm = to_pcm(&x);
        let mut detector = DtmfDetector::new(8000);
        let mut out: String = detector
            .process(&pcm)
            .map(|d| d.to_string())
            .unwrap_or_default();
        while let Some(d) = detector.process(&[]) {
            out.push(d.as_char());
        }
        assert_eq!(out, "12");
    }
}
