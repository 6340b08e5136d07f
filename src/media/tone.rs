//! Call-progress and notification tones (PURE).
//!
//! [`ToneSource`] synthesises a [`ToneKind`] with the cadence of a [`ToneRegion`] into frames of
//! mono `i16` at any rate from 8 to 48 kHz (the engine uses 8 000, 16 000 and 48 000 Hz).
//! Frequencies and cadences are those of ITU-T E.180 (Supplement 2, "Various tones used in
//! national networks") for the United States, the CEPT/European recommendation (425 Hz) and the
//! United Kingdom:
//!
//! | tone | US | EU | UK |
//! |---|---|---|---|
//! | dial | 350+440 continuous | 425 continuous | 350+450 continuous |
//! | ringback | 440+480, 2 s on 4 s off | 425, 1 s on 4 s off | 400+450, 0.4 on 0.2 off 0.4 on 2 off |
//! | busy | 480+620, 0.5/0.5 | 425, 0.5/0.5 | 400, 0.375/0.375 |
//! | congestion | 480+620, 0.25/0.25 | 425, 0.2/0.2 | 400, 0.4 on 0.35 off 0.225 on 0.525 off |
//!
//! The notification tones are the same everywhere and finite: `Beep` (1 kHz, 250 ms, the
//! "record after the tone" beep), `Join` (rising 523 → 784 Hz, conference entry) and `Leave`
//! (falling 784 → 523 Hz).
//!
//! Synthesis: each component is a 32-bit phase accumulator read through a 1024-entry sine table
//! with linear interpolation (spurs below −100 dBc, no `sin` per sample, no drift over hours);
//! phase runs on across frames and across the silent parts of a cadence. Every component is
//! at −16 dBFS (≈ −13 dBm0), and each burst is shaped by a 4 ms linear ramp at both ends so
//! cadence edges do not click.

use std::f64::consts::PI;
use std::str::FromStr;
use std::sync::OnceLock;

use thiserror::Error;

/// Errors of this module.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ToneError {
    /// The rate is outside 8–48 kHz.
    #[error("tone rate {0} Hz is not supported (8000..=48000)")]
    BadRate(u32),
    /// A region name that is not `us`, `eu` or `uk`.
    #[error("unknown tone region {0:?} (us, eu, uk)")]
    UnknownRegion(String),
}

/// Which tone to play.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ToneKind {
    /// Ringing (alerting) heard by the caller; loops.
    Ringback,
    /// Called party busy; loops.
    Busy,
    /// Network congestion (reorder / fast busy); loops.
    Congestion,
    /// A single 1 kHz beep; finite.
    Beep,
    /// Conference entry chime; finite.
    Join,
    /// Conference exit chime; finite.
    Leave,
    /// Dial tone; continuous.
    Dial,
}

/// Which country's cadences the call-progress tones follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ToneRegion {
    /// North America (ITU-T E.180 "United States").
    #[default]
    Us,
    /// Europe (CEPT 425 Hz tones).
    Eu,
    /// United Kingdom.
    Uk,
}

impl FromStr for ToneRegion {
    type Err = ToneError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "us" => Ok(Self::Us),
            "eu" => Ok(Self::Eu),
            "uk" | "gb" => Ok(Self::Uk),
            _ => Err(ToneError::UnknownRegion(s.to_owned())),
        }
    }
}

/// One piece of a cadence: up to two frequencies (none: silence) for `ms` milliseconds.
#[derive(Debug, Clone, Copy)]
struct Segment {
    freqs: &'static [f64],
    ms: u32,
}

const fn on(freqs: &'static [f64], ms: u32) -> Segment {
    Segment { freqs, ms }
}

const fn off(ms: u32) -> Segment {
    Segment { freqs: &[], ms }
}

/// A cadence: its segments and whether it repeats.
#[derive(Debug, Clone, Copy)]
struct Cadence {
    segments: &'static [Segment],
    looped: bool,
}

const US_DIAL: &[f64] = &[350.0, 440.0];
const US_RING: &[f64] = &[440.0, 480.0];
const US_BUSY: &[f64] = &[480.0, 620.0];
const EU: &[f64] = &[425.0];
const UK_DIAL: &[f64] = &[350.0, 450.0];
const UK_RING: &[f64] = &[400.0, 450.0];
const UK_BUSY: &[f64] = &[400.0];
const C5: &[f64] = &[523.25];
const G5: &[f64] = &[783.99];

fn cadence(kind: ToneKind, region: ToneRegion) -> Cadence {
    use ToneKind::*;
    use ToneRegion::*;
    let (segments, looped): (&'static [Segment], bool) = match (kind, region) {
        (Dial, Us) => (const { &[on(US_DIAL, 1000)] }, true),
        (Dial, Eu) => (const { &[on(EU, 1000)] }, true),
        (Dial, Uk) => (const { &[on(UK_DIAL, 1000)] }, true),
        (Ringback, Us) => (const { &[on(US_RING, 2000), off(4000)] }, true),
        (Ringback, Eu) => (const { &[on(EU, 1000), off(4000)] }, true),
        (Ringback, Uk) => (
            const { &[on(UK_RING, 400), off(200), on(UK_RING, 400), off(2000)] },
            true,
        ),
        (Busy, Us) => (const { &[on(US_BUSY, 500), off(500)] }, true),
        (Busy, Eu) => (const { &[on(EU, 500), off(500)] }, true),
        (Busy, Uk) => (const { &[on(UK_BUSY, 375), off(375)] }, true),
        (Congestion, Us) => (const { &[on(US_BUSY, 250), off(250)] }, true),
        (Congestion, Eu) => (const { &[on(EU, 200), off(200)] }, true),
        (Congestion, Uk) => (
            const { &[on(UK_BUSY, 400), off(350), on(UK_BUSY, 225), off(525)] },
            true,
        ),
        (Beep, _) => (const { &[on(&[1000.0], 250)] }, false),
        (Join, _) => (const { &[on(C5, 100), on(G5, 150)] }, false),
        (Leave, _) => (const { &[on(G5, 100), on(C5, 150)] }, false),
    };
    Cadence { segments, looped }
}

/// Peak amplitude of one component: −16 dBFS.
const AMPLITUDE: f64 = 32767.0 * 0.158_489_319_246_111_35; // 10^(-16/20)
/// Length of the on/off ramps.
const RAMP_MS: u32 = 4;
const TABLE_BITS: u32 = 10;
const TABLE_LEN: usize = 1 << TABLE_BITS;

/// One period of a sine at [`AMPLITUDE`], with a guard entry for the interpolation.
fn table() -> &'static [f32; TABLE_LEN + 1] {
    static TABLE: OnceLock<[f32; TABLE_LEN + 1]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = [0.0f32; TABLE_LEN + 1];
        for (i, v) in t.iter_mut().enumerate() {
            *v = (AMPLITUDE * (2.0 * PI * i as f64 / TABLE_LEN as f64).sin()) as f32;
        }
        t
    })
}

/// A tone being played: call [`next_frame`](Self::next_frame) once per 20 ms.
#[derive(Debug, Clone)]
pub struct ToneSource {
    kind: ToneKind,
    rate: u32,
    cadence: Cadence,
    /// Segment being played.
    segment: usize,
    /// Samples of it already played.
    offset: u32,
    /// Its length in samples.
    length: u32,
    ramp: u32,
    /// Whether the current segment fades in / out (its neighbour sounds different).
    fade: (bool, bool),
    phase: [u32; 2],
    done: bool,
}

impl ToneSource {
    /// A `kind` tone with `region`'s cadence at `rate` Hz.
    pub fn new(kind: ToneKind, region: ToneRegion, rate: u32) -> Result<Self, ToneError> {
        if !(8000..=48000).contains(&rate) {
            return Err(ToneError::BadRate(rate));
        }
        let cadence = cadence(kind, region);
        let mut tone = Self {
            kind,
            rate,
            cadence,
            segment: 0,
            offset: 0,
            length: 0,
            ramp: RAMP_MS * rate / 1000,
            fade: (true, true),
            phase: [0; 2],
            done: false,
        };
        tone.enter(0);
        Ok(tone)
    }

    /// Which tone this is.
    pub fn kind(&self) -> ToneKind {
        self.kind
    }

    /// Its sample rate.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// True for tones that end (Beep, Join, Leave).
    pub fn is_finite(&self) -> bool {
        !self.cadence.looped
    }

    /// True once a finite tone has played completely.
    pub fn is_finished(&self) -> bool {
        self.done
    }

    /// Total length of a finite tone in samples; `None` for looping tones.
    pub fn total_len(&self) -> Option<u64> {
        self.is_finite().then(|| {
            (0..self.cadence.segments.len())
                .map(|i| u64::from(self.segment_len(i)))
                .sum()
        })
    }

    /// Starts segment `i`.
    fn enter(&mut self, i: usize) {
        let segs = self.cadence.segments;
        let n = segs.len();
        let freqs = segs[i].freqs;
        let prev = if i > 0 {
            Some(segs[i - 1].freqs)
        } else if self.cadence.looped {
            Some(segs[n - 1].freqs)
        } else {
            None
        };
        let next = if i + 1 < n {
            Some(segs[i + 1].freqs)
        } else if self.cadence.looped {
            Some(segs[0].freqs)
        } else {
            None
        };
        self.segment = i;
        self.offset = 0;
        self.length = self.segment_len(i);
        self.fade = (prev != Some(freqs), next != Some(freqs));
    }

    fn segment_len(&self, i: usize) -> u32 {
        self.cadence.segments[i].ms * self.rate / 1000
    }

    /// Fills `out` (normally `frame_len(rate)` samples) with the next samples of the tone.
    /// Returns false, with `out` silent, once a finite tone had already finished before this
    /// frame; the frame holding a finite tone's last samples returns true, silence-padded.
    pub fn next_frame(&mut self, out: &mut [i16]) -> bool {
        if self.done {
            out.fill(0);
            return false;
        }
        let table = table();
        let mut i = 0;
        while i < out.len() {
            if self.offset >= self.length {
                let mut next = self.segment + 1;
                if next == self.cadence.segments.len() {
                    if !self.cadence.looped {
                        self.done = true;
                        out[i..].fill(0);
                        return true;
                    }
                    next = 0;
                }
                self.enter(next);
                continue;
            }
            let seg = self.cadence.segments[self.segment];
            let n = ((self.length - self.offset) as usize).min(out.len() - i);
            let chunk = &mut out[i..i + n];
            // Steps of the phase accumulators: f / rate × 2³².
            let mut steps = [0u32; 2];
            for (step, &f) in steps.iter_mut().zip(seg.freqs) {
                *step = (f / f64::from(self.rate) * 4_294_967_296.0).round() as u32;
            }
            let voices = seg.freqs.len().min(2);
            let ramped = (self.fade.0 && self.offset < self.ramp)
                || (self.fade.1 && self.length - self.offset - n as u32 <= self.ramp);
            for (j, s) in chunk.iter_mut().enumerate() {
                let mut v = 0.0f32;
                for (phase, &step) in self.phase.iter_mut().zip(&steps).take(voices) {
                    let p = *phase;
                    let idx = (p >> (32 - TABLE_BITS)) as usize;
                    let frac = (p << TABLE_BITS) as f32 * (1.0 / 4_294_967_296.0);
                    v += table[idx] + (table[idx + 1] - table[idx]) * frac;
                    *phase = p.wrapping_add(step);
                }
                if ramped {
                    let t = self.offset + j as u32;
                    let edge = match self.fade {
                        (true, true) => t.min(self.length - 1 - t),
                        (true, false) => t,
                        _ => self.length - 1 - t,
                    };
                    if edge < self.ramp {
                        v *= edge as f32 / self.ramp as f32;
                    }
                }
                *s = v.round() as i16;
            }
            // Silent segments leave the phase where it was: it resumes continuously.
            self.offset += n as u32;
            i += n;
        }
        if !self.cadence.looped
            && self.segment + 1 == self.cadence.segments.len()
            && self.offset >= self.length
        {
            self.done = true;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::analysis::goertzel;
    use crate::media::frame_len;

    /// Amplitude of `freq` in `x`.
    fn amplitude(x: &[i16], rate: u32, freq: f64) -> f64 {
        2.0 * goertzel(x, rate, freq).sqrt() / x.len() as f64
    }

    fn render(kind: ToneKind, region: ToneRegion, rate: u32, ms: u32) -> Vec<i16> {
        let mut t = ToneSource::new(kind, region, rate).unwrap();
        let n = frame_len(rate);
        let mut all = Vec::new();
        let mut frame = vec![0; n];
        for _ in 0..ms / 20 {
            t.next_frame(&mut frame);
            all.extend_from_slice(&frame);
        }
        all
    }

    fn rms(x: &[i16]) -> f64 {
        (x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    /// Samples of `x` at `ms` milliseconds for `len_ms`.
    fn at(x: &[i16], rate: u32, ms: u32, len_ms: u32) -> &[i16] {
        let s = (ms * rate / 1000) as usize;
        &x[s..s + (len_ms * rate / 1000) as usize]
    }

    #[test]
    fn us_ringback_is_440_480_two_on_four_off() {
        for rate in [8000, 16000, 48000] {
            let x = render(ToneKind::Ringback, ToneRegion::Us, rate, 12_000);
            for start in [0, 6000] {
                let burst = at(&x, rate, start + 100, 1800);
                for f in [440.0, 480.0] {
                    let a = amplitude(burst, rate, f);
                    assert!(
                        (a - AMPLITUDE).abs() < AMPLITUDE * 0.06,
                        "{f} Hz at {rate}: {a}"
                    );
                }
                assert!(amplitude(burst, rate, 1000.0) < 20.0);
                assert_eq!(rms(at(&x, rate, start + 2010, 3980)), 0.0);
            }
        }
    }

    #[test]
    fn eu_and_uk_cadences_follow_e180() {
        let rate = 8000;
        let eu = render(ToneKind::Busy, ToneRegion::Eu, rate, 2000);
        assert!(amplitude(at(&eu, rate, 10, 480), rate, 425.0) > AMPLITUDE * 0.9);
        assert_eq!(rms(at(&eu, rate, 505, 490)), 0.0);
        assert!(amplitude(at(&eu, rate, 1010, 480), rate, 425.0) > AMPLITUDE * 0.9);

        let eu = render(ToneKind::Congestion, ToneRegion::Eu, rate, 800);
        assert!(rms(at(&eu, rate, 10, 180)) > 1000.0);
        assert_eq!(rms(at(&eu, rate, 205, 190)), 0.0);
        assert!(rms(at(&eu, rate, 410, 180)) > 1000.0);

        let uk = render(ToneKind::Ringback, ToneRegion::Uk, rate, 6000);
        for (ms, len, sound) in [
            (0, 400, true),
            (400, 200, false),
            (600, 400, true),
            (1000, 2000, false),
            (3000, 400, true),
        ] {
            let part = at(&uk, rate, ms + 5, len - 10);
            if sound {
                assert!(amplitude(part, rate, 400.0) > AMPLITUDE * 0.9, "at {ms}");
                assert!(amplitude(part, rate, 450.0) > AMPLITUDE * 0.9, "at {ms}");
            } else {
                assert_eq!(rms(part), 0.0, "at {ms}");
            }
        }
    }

    #[test]
    fn congestion_us_is_fast_busy() {
        let x = render(ToneKind::Congestion, ToneRegion::Us, 8000, 1000);
        assert!(amplitude(at(&x, 8000, 10, 230), 8000, 620.0) > AMPLITUDE * 0.9);
        assert_eq!(rms(at(&x, 8000, 255, 240)), 0.0);
        assert!(amplitude(at(&x, 8000, 510, 230), 8000, 480.0) > AMPLITUDE * 0.9);
    }

    #[test]
    fn dial_tone_is_continuous_and_phase_continuous_across_frames() {
        let rate = 16000;
        let x = render(ToneKind::Dial, ToneRegion::Us, rate, 3000);
        // A pure two-tone sum never jumps more than the sum of both slopes.
        let max_step = 2.0 * PI * (350.0 + 440.0) / f64::from(rate) * AMPLITUDE * 1.05;
        for w in x[rate as usize / 100..].windows(2) {
            let d = (f64::from(w[1]) - f64::from(w[0])).abs();
            assert!(d <= max_step, "step {d} > {max_step}");
        }
        assert!(amplitude(&x, rate, 350.0) > AMPLITUDE * 0.98);
        assert!(amplitude(&x, rate, 440.0) > AMPLITUDE * 0.98);
    }

    #[test]
    fn level_is_about_minus_16_dbfs_per_component() {
        let x = render(ToneKind::Dial, ToneRegion::Eu, 8000, 1000);
        let dbfs = 20.0 * (rms(&x) * 2f64.sqrt() / 32767.0).log10();
        assert!((dbfs + 16.0).abs() < 0.2, "{dbfs} dBFS");
    }

    #[test]
    fn finite_tones_end_and_report_it() {
        for kind in [ToneKind::Beep, ToneKind::Join, ToneKind::Leave] {
            let mut t = ToneSource::new(kind, ToneRegion::Us, 8000).unwrap();
            assert!(t.is_finite());
            let total = t.total_len().unwrap();
            let mut frame = [0i16; 160];
            let mut frames = 0;
            while t.next_frame(&mut frame) {
                frames += 1;
                assert!(frames < 100);
            }
            assert_eq!(frames, total.div_ceil(160));
            assert!(t.is_finished());
            assert!(frame.iter().all(|&s| s == 0));
        }
    }

    #[test]
    fn join_rises_and_leave_falls() {
        let join = render(ToneKind::Join, ToneRegion::Us, 8000, 260);
        assert!(amplitude(at(&join, 8000, 10, 80), 8000, 523.25) > AMPLITUDE * 0.8);
        assert!(amplitude(at(&join, 8000, 120, 120), 8000, 783.99) > AMPLITUDE * 0.8);
        let leave = render(ToneKind::Leave, ToneRegion::Us, 8000, 260);
        assert!(amplitude(at(&leave, 8000, 10, 80), 8000, 783.99) > AMPLITUDE * 0.8);
        assert!(amplitude(at(&leave, 8000, 120, 120), 8000, 523.25) > AMPLITUDE * 0.8);
    }

    #[test]
    fn looping_tones_never_finish() {
        let mut t = ToneSource::new(ToneKind::Busy, ToneRegion::Uk, 48000).unwrap();
        let mut frame = vec![0; 960];
        for _ in 0..1000 {
            assert!(t.next_frame(&mut frame));
        }
        assert!(!t.is_finished());
    }

    #[test]
    fn rejects_rates_outside_8_to_48_khz_and_parses_regions() {
        assert_eq!(
            ToneSource::new(ToneKind::Dial, ToneRegion::Us, 4000).unwrap_err(),
            ToneError::BadRate(4000)
        );
        assert_eq!("UK".parse::<ToneRegion>(), Ok(ToneRegion::Uk));
        assert!("fr".parse::<ToneRegion>().is_err());
    }
}
