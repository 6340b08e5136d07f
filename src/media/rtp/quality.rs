//! Call quality: the ITU-T G.107 E-model, simplified the common VoIP way, and its MOS. PURE.
//!
//! R = R0 − Is − Id − Ie,eff + A, with:
//! * R0 − Is = 93.2 (the G.107 default values of all the loudness, noise and sidetone
//!   parameters), A = 0 (no advantage factor for wired or trunk calls).
//! * Id from the one-way mouth-to-ear delay d (ms), with the Cole–Rosenbluth approximation of
//!   the G.107 curve for perfect echo cancellation:
//!   Id = 0.024·d + 0.11·(d − 177.3)·H(d − 177.3).
//!   d is estimated as RTT/2 plus the jitter-buffer delay ([`QualityInput::one_way_delay_ms`]).
//! * Ie,eff = Ie + (95 − Ie) · Ppl / (Ppl/BurstR + Bpl) (G.107 §7.2, Ppl in percent),
//!   with Ie and Bpl per codec ([`Codec`]).
//! * MOS from R by G.107 Annex B: 1 for R < 0, 4.5 for R > 100, else
//!   1 + 0.035·R + R·(R − 60)·(100 − R)·7·10⁻⁶. R = 93.2 gives MOS 4.41.
//!
//! Codec values (narrowband scale, so that every codec is scored on one 1–4.41 scale):
//! * G.711 with packet-loss concealment: Ie = 0, Bpl = 25.1 (G.113 Appendix I).
//! * G.722: G.113 gives its impairment on the wideband scale (G.107.1), not on this one. Our
//!   choice: on the narrowband scale G.722 at 64 kbit/s is transparent (Ie = 0), and with the
//!   G.722 Appendix III/IV concealment we assume the loss robustness of G.711 with PLC
//!   (Bpl = 25.1). A wideband score would need the R_wb = 129 scale of G.107.1.
//! * Opus: no ITU-T values exist. Our choice: Ie = 0 (transparent at VoIP bit rates on the
//!   narrowband scale) and Bpl = 25.1 as for a codec with built-in concealment; in-band FEC,
//!   when used, makes real quality better than this estimate, never worse.

/// The codec whose equipment impairment and loss robustness apply.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub enum Codec {
    /// G.711 µ-law or A-law with packet-loss concealment.
    #[default]
    G711,
    /// G.722 at 64 kbit/s (see the module docs for the choice of values).
    G722,
    /// Opus (see the module docs for the choice of values).
    Opus,
    /// Any other codec with its own G.113 values.
    Custom {
        /// Equipment impairment factor Ie.
        ie: f64,
        /// Packet-loss robustness factor Bpl.
        bpl: f64,
    },
}

/// What the E-model needs to know about a call direction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QualityInput {
    /// The codec.
    pub codec: Codec,
    /// Packet loss as a fraction (0.0–1.0); values outside are clamped.
    pub packet_loss: f64,
    /// BurstR: 1.0 for random loss, > 1 for bursty loss (G.107 §7.2).
    pub burst_ratio: f64,
    /// Round-trip time in ms (0 when unknown).
    pub rtt_ms: f64,
    /// Delay added by the receiver's jitter buffer in ms.
    pub jitter_buffer_ms: f64,
}

/// R0 − Is with the G.107 default values.
pub const R_DEFAULT: f64 = 93.2;

impl Codec {
    /// Equipment impairment factor Ie.
    pub fn ie(self) -> f64 {
        match self {
            Codec::G711 | Codec::G722 | Codec::Opus => 0.0,
            Codec::Custom { ie, .. } => ie,
        }
    }

    /// Packet-loss robustness factor Bpl.
    pub fn bpl(self) -> f64 {
        match self {
            Codec::G711 | Codec::G722 | Codec::Opus => 25.1,
            Codec::Custom { bpl, .. } => bpl,
        }
    }
}

impl Default for QualityInput {
    fn default() -> Self {
        QualityInput {
            codec: Codec::G711,
            packet_loss: 0.0,
            burst_ratio: 1.0,
            rtt_ms: 0.0,
            jitter_buffer_ms: 0.0,
        }
    }
}

impl QualityInput {
    /// The one-way delay estimate: RTT/2 plus the jitter-buffer delay, in ms.
    pub fn one_way_delay_ms(&self) -> f64 {
        self.rtt_ms.max(0.0) / 2.0 + self.jitter_buffer_ms.max(0.0)
    }
}

/// The mean opinion score (1.0–4.5) of a call direction.
pub fn mos(input: QualityInput) -> f64 {
    mos_from_r(r_factor(&input))
}

/// The transmission rating factor R.
pub fn r_factor(input: &QualityInput) -> f64 {
    let ppl = (input.packet_loss.clamp(0.0, 1.0) * 100.0).max(0.0);
    let burst = if input.burst_ratio.is_finite() && input.burst_ratio >= 1.0 {
        input.burst_ratio
    } else {
        1.0
    };
    R_DEFAULT
        - delay_impairment(input.one_way_delay_ms())
        - effective_equipment_impairment(input.codec.ie(), input.codec.bpl(), ppl, burst)
}

/// Id for a one-way delay of `d_ms` (Cole–Rosenbluth approximation).
pub fn delay_impairment(d_ms: f64) -> f64 {
    let d = if d_ms.is_finite() { d_ms.max(0.0) } else { 0.0 };
    let over = (d - 177.3).max(0.0);
    0.024 * d + 0.11 * over
}

/// Ie,eff = Ie + (95 − Ie) · Ppl / (Ppl/BurstR + Bpl), `ppl_percent` in percent.
pub fn effective_equipment_impairment(ie: f64, bpl: f64, ppl_percent: f64, burst: f64) -> f64 {
    let denom = ppl_percent / burst + bpl;
    if denom <= 0.0 || !denom.is_finite() {
        return ie;
    }
    ie + (95.0 - ie) * ppl_percent / denom
}

/// MOS from R (G.107 Annex B), clamped to 1.0–4.5.
pub fn mos_from_r(r: f64) -> f64 {
    if r.is_nan() || r < 0.0 {
        1.0
    } else if r > 100.0 {
        4.5
    } else {
        (1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6).clamp(1.0, 4.5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, eps: f64) -> bool {
        (a - b).abs() < eps
    }

    #[test]
    fn perfect_g711_scores_4_41() {
        let m = mos(QualityInput::default());
        assert!(close(m, 4.409, 0.001), "{m}");
        assert!(close(mos_from_r(R_DEFAULT), 4.41, 0.005));
    }

    #[test]
    fn annex_b_mapping_points() {
        assert_eq!(mos_from_r(-5.0), 1.0);
        assert_eq!(mos_from_r(0.0), 1.0);
        assert_eq!(mos_from_r(120.0), 4.5);
        assert!(close(mos_from_r(50.0), 2.58, 0.01));
        assert!(close(mos_from_r(70.0), 3.60, 0.01));
        assert!(close(mos_from_r(80.0), 4.02, 0.01));
    }

    #[test]
    fn loss_lowers_mos_monotonically() {
        let mut prev = f64::INFINITY;
        for pct in [0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 40.0] {
            let m = mos(QualityInput {
                packet_loss: pct / 100.0,
                ..QualityInput::default()
            });
            assert!(m < prev, "{pct}% -> {m} not below {prev}");
            prev = m;
        }
        assert!(prev < 2.0, "40% loss still scores {prev}");
        // 1% random loss on G.711+PLC: Ie,eff = 95/(1+25.1) = 3.64.
        let r = r_factor(&QualityInput {
            packet_loss: 0.01,
            ..QualityInput::default()
        });
        assert!(close(r, 93.2 - 95.0 / 26.1, 1e-9));
    }

    #[test]
    fn bursty_loss_hurts_more_than_random_loss() {
        let random = QualityInput {
            packet_loss: 0.05,
            ..QualityInput::default()
        };
        let bursty = QualityInput {
            burst_ratio: 2.0,
            ..random
        };
        assert!(mos(bursty) < mos(random));
    }

    #[test]
    fn delay_beyond_177_ms_drops_steeply() {
        let at = |d: f64| {
            mos(QualityInput {
                rtt_ms: 2.0 * d,
                ..QualityInput::default()
            })
        };
        let step_below = at(170.0) - at(150.0);
        let step_above = at(220.0) - at(200.0);
        assert!(
            step_above < step_below * 3.0,
            "{step_below} vs {step_above}"
        );
        assert!(at(400.0) < 3.6);
        assert!(at(100.0) > 4.3);
        assert!(close(delay_impairment(100.0), 2.4, 1e-9));
        assert!(close(delay_impairment(277.3), 0.024 * 277.3 + 11.0, 1e-9));
    }

    #[test]
    fn nonsense_inputs_stay_in_range() {
        for input in [
            QualityInput {
                packet_loss: f64::NAN,
                rtt_ms: f64::INFINITY,
                burst_ratio: 0.0,
                ..QualityInput::default()
            },
            QualityInput {
                packet_loss: 5.0,
                rtt_ms: -3.0,
                jitter_buffer_ms: 1e9,
                codec: Codec::Custom {
                    ie: 200.0,
                    bpl: 0.0,
                },
                burst_ratio: f64::NAN,
            },
        ] {
            let m = mos(input);
            assert!((1.0..=4.5).contains(&m), "{m}");
        }
    }
}
