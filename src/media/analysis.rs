//! Frequency and level of mono PCM, for tests and diagnostics. PURE.
//!
//! Levels are in dBFS after AES17: a full-scale sine reads 0 dBFS, so [`rms_dbfs`],
//! [`tone_power_db`] and the level given to [`sine`] agree for a pure tone.
//! * [`dominant_frequency`]: Hann-windowed FFT peak refined by Gaussian (log-parabolic)
//!   interpolation, then polished by a Goertzel search around it.
//! * [`tone_power_db`]: Hann-windowed Goertzel at one exact frequency (non-integer bins
//!   allowed).
//!
//! Not on the per-packet path: these allocate and use floating point freely.

use std::f64::consts::PI;

/// 16-bit full scale.
const FULL_SCALE: f64 = 32768.0;
/// Longest stretch analysed; longer inputs are analysed over their first this many samples.
const MAX_ANALYSED: usize = 1 << 20;

/// The frequency in Hz of the strongest spectral peak of `samples` at `rate`, `None` if there
/// are fewer than 32 samples or the signal is silent (or DC only). For a pure tone of 100 ms
/// or more the error is far under 1 %.
pub fn dominant_frequency(samples: &[i16], rate: u32) -> Option<f64> {
    let samples = &samples[..samples.len().min(MAX_ANALYSED)];
    if samples.len() < 32 || rate == 0 {
        return None;
    }
    let n = samples.len();
    let mean = samples.iter().map(|&s| f64::from(s)).sum::<f64>() / n as f64;
    let size = n.next_power_of_two() * 2;
    let mut re = vec![0.0; size];
    let mut im = vec![0.0; size];
    let window = hann(n);
    for ((slot, &s), w) in re.iter_mut().zip(samples).zip(&window) {
        *slot = (f64::from(s) - mean) * w;
    }
    fft(&mut re, &mut im);
    let power: Vec<f64> = re[..size / 2]
        .iter()
        .zip(&im[..size / 2])
        .map(|(r, i)| r * r + i * i)
        .collect();
    let (peak, &peak_power) = power
        .iter()
        .enumerate()
        .skip(1)
        .max_by(|a, b| a.1.total_cmp(b.1))?;
    if peak_power <= f64::EPSILON * n as f64 {
        return None;
    }
    // Gaussian interpolation: exact for a Gaussian peak, very close for Hann's main lobe.
    let offset = if peak + 1 < power.len() {
        let (l, c, r) = (
            power[peak - 1].max(1e-300).ln(),
            peak_power.ln(),
            power[peak + 1].max(1e-300).ln(),
        );
        let denominator = l - 2.0 * c + r;
        if denominator.abs() > f64::EPSILON {
            (0.5 * (l - r) / denominator).clamp(-0.5, 0.5)
        } else {
            0.0
        }
    } else {
        0.0
    };
    let bin = f64::from(rate) / size as f64;
    let coarse = (peak as f64 + offset) * bin;
    // Polish: golden-section search of the windowed Goertzel power within ± half a bin.
    let centred: Vec<f64> = samples
        .iter()
        .zip(&window)
        .map(|(&s, w)| (f64::from(s) - mean) * w)
        .collect();
    let power_at = |f: f64| goertzel_power(&centred, f / f64::from(rate));
    let (mut lo, mut hi) = (coarse - bin / 2.0, coarse + bin / 2.0);
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    let mut x1 = hi - ratio * (hi - lo);
    let mut x2 = lo + ratio * (hi - lo);
    let (mut p1, mut p2) = (power_at(x1), power_at(x2));
    for _ in 0..24 {
        if p1 < p2 {
            lo = x1;
            x1 = x2;
            p1 = p2;
            x2 = lo + ratio * (hi - lo);
            p2 = power_at(x2);
        } else {
            hi = x2;
            x2 = x1;
            p2 = p1;
            x1 = hi - ratio * (hi - lo);
            p1 = power_at(x1);
        }
    }
    Some((lo + hi) / 2.0)
}

/// RMS level in dBFS, a full-scale sine reading 0 dBFS (AES17). Silence (or no samples) is
/// `f64::NEG_INFINITY`.
pub fn rms_dbfs(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return f64::NEG_INFINITY;
    }
    let energy: f64 = samples.iter().map(|&s| f64::from(s).powi(2)).sum();
    let rms = (energy / samples.len() as f64).sqrt();
    if rms == 0.0 {
        return f64::NEG_INFINITY;
    }
    20.0 * (rms * std::f64::consts::SQRT_2 / FULL_SCALE).log10()
}

/// Level in dBFS of the component of `samples` at `freq` Hz: Hann-windowed Goertzel,
/// normalised so a sine of that frequency at L dBFS reads L. Other components leak in by
/// the Hann side lobes only (−31 dB and falling), so a tone a few bins away barely counts.
/// Silence (or no samples) is `f64::NEG_INFINITY`.
pub fn tone_power_db(samples: &[i16], rate: u32, freq: f64) -> f64 {
    if samples.is_empty() || rate == 0 {
        return f64::NEG_INFINITY;
    }
    let window = hann(samples.len());
    let weighted: Vec<f64> = samples
        .iter()
        .zip(&window)
        .map(|(&s, w)| f64::from(s) * w)
        .collect();
    let power = goertzel_power(&weighted, freq / f64::from(rate));
    let gain: f64 = window.iter().sum();
    let amplitude = 2.0 * power.sqrt() / gain;
    if amplitude == 0.0 {
        return f64::NEG_INFINITY;
    }
    20.0 * (amplitude / FULL_SCALE).log10()
}

/// Raw Goertzel power of `freq` Hz in `samples` (no window): for a full-length sine of
/// amplitude A over n samples, about (A·n/2)². For comparing components of one signal.
pub fn goertzel(samples: &[i16], rate: u32, freq: f64) -> f64 {
    let x: Vec<f64> = samples.iter().map(|&s| f64::from(s)).collect();
    goertzel_power(&x, freq / f64::from(rate.max(1)))
}

/// `samples` samples of a sine at `freq` Hz, `rate` Hz, peak `amplitude_dbfs` (0 dBFS is
/// full scale, clamped there), starting at phase 0.
pub fn sine(freq: f64, rate: u32, amplitude_dbfs: f64, samples: usize) -> Vec<i16> {
    let amplitude = (32767.0 * 10f64.powf(amplitude_dbfs / 20.0)).min(32767.0);
    let step = 2.0 * PI * freq / f64::from(rate.max(1));
    (0..samples)
        .map(|i| (amplitude * (step * i as f64).sin()).round() as i16)
        .collect()
}

/// A periodic Hann window of `n` points.
fn hann(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| 0.5 - 0.5 * (2.0 * PI * i as f64 / n as f64).cos())
        .collect()
}

/// |X(f)|² at the normalised frequency `cycles_per_sample` (Goertzel's recurrence).
fn goertzel_power(samples: &[f64], cycles_per_sample: f64) -> f64 {
    let omega = 2.0 * PI * cycles_per_sample;
    let coeff = 2.0 * omega.cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for &x in samples {
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2).max(0.0)
}

/// In-place iterative radix-2 FFT; `re.len()` must be a power of two.
fn fft(re: &mut [f64], im: &mut [f64]) {
    let n = re.len();
    let mut j = 0;
    for i in 1..n {
        let mut bit = n >> 1;
        while j & bit != 0 {
            j ^= bit;
            bit >>= 1;
        }
        j |= bit;
        if i < j {
            re.swap(i, j);
            im.swap(i, j);
        }
    }
    let mut len = 2;
    while len <= n {
        let angle = -2.0 * PI / len as f64;
        let (w_re, w_im) = (angle.cos(), angle.sin());
        for start in (0..n).step_by(len) {
            let (mut c_re, mut c_im) = (1.0, 0.0);
            for k in 0..len / 2 {
                let (a, b) = (start + k, start + k + len / 2);
                let t_re = re[b] * c_re - im[b] * c_im;
                let t_im = re[b] * c_im + im[b] * c_re;
                re[b] = re[a] - t_re;
                im[b] = im[a] - t_im;
                re[a] += t_re;
                im[a] += t_im;
                let next = c_re * w_re - c_im * w_im;
                c_im = c_re * w_im + c_im * w_re;
                c_re = next;
            }
        }
        len <<= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dominant_frequency_of_pure_tones_is_within_a_tenth_of_a_percent() {
        for (freq, rate) in [
            (1000.0, 8000),
            (440.0, 8000),
            (123.4, 8000),
            (3400.0, 8000),
            (7000.0, 16000),
            (1000.0, 48000),
            (19_000.0, 48000),
        ] {
            let tone = sine(freq, rate, -10.0, rate as usize / 10);
            let measured = dominant_frequency(&tone, rate).expect("a tone has a frequency");
            assert!(
                (measured - freq).abs() / freq < 0.001,
                "{freq} Hz at {rate}: measured {measured}"
            );
        }
    }

    #[test]
    fn dominant_frequency_picks_the_louder_of_two_tones() {
        let a = sine(697.0, 8000, -20.0, 1600);
        let b = sine(1209.0, 8000, -10.0, 1600);
        let mix: Vec<i16> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        let f = dominant_frequency(&mix, 8000).unwrap();
        assert!((f - 1209.0).abs() < 2.0, "{f}");
    }

    #[test]
    fn silence_and_short_input_have_no_frequency() {
        assert_eq!(dominant_frequency(&[0; 800], 8000), None);
        assert_eq!(dominant_frequency(&[1000; 800], 8000), None);
        assert_eq!(dominant_frequency(&[5; 10], 8000), None);
        assert_eq!(rms_dbfs(&[]), f64::NEG_INFINITY);
        assert_eq!(rms_dbfs(&[0; 10]), f64::NEG_INFINITY);
        assert_eq!(tone_power_db(&[0; 10], 8000, 1000.0), f64::NEG_INFINITY);
    }

    #[test]
    fn levels_of_a_sine_agree_with_its_nominal_level() {
        let tone = sine(1000.0, 8000, -10.0, 8000);
        assert!((rms_dbfs(&tone) + 10.0).abs() < 0.05, "{}", rms_dbfs(&tone));
        let at = tone_power_db(&tone, 8000, 1000.0);
        assert!((at + 10.0).abs() < 0.05, "{at}");
        // An off-bin frequency measures as well as an on-bin one.
        let odd = sine(1234.5, 8000, -20.0, 1000);
        let at = tone_power_db(&odd, 8000, 1234.5);
        assert!((at + 20.0).abs() < 0.1, "{at}");
        // Far from the tone there is (almost) nothing.
        assert!(tone_power_db(&tone, 8000, 1500.0) < -80.0);
        let full = sine(1000.0, 8000, 0.0, 8000);
        assert!(rms_dbfs(&full).abs() < 0.05);
        assert_eq!(full.iter().max(), Some(&32767));
    }
}
