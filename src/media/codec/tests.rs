//! Round trips, transcoding chains, hostile payloads and concealment across all codecs.

use super::*;
use crate::media::analysis::{dominant_frequency, rms_dbfs, sine};
use crate::media::sdp::Codec;

const ALL: [CodecKind; 4] = [
    CodecKind::Pcmu,
    CodecKind::Pcma,
    CodecKind::G722,
    CodecKind::Opus,
];

/// Encodes `pcm` frame by frame and decodes every packet, as a call leg would.
fn round_trip(kind: CodecKind, rate: u32, pcm: &[i16]) -> Vec<i16> {
    let mut encoder = encoder(kind, rate).expect("encoder");
    let mut decoder = decoder(kind, rate).expect("decoder");
    let mut packet = Vec::new();
    let mut out = Vec::with_capacity(pcm.len());
    for frame in pcm.chunks_exact(frame_len(rate)) {
        packet.clear();
        encoder.encode(frame, &mut packet).expect("encode");
        decoder.decode(&packet, &mut out).expect("decode");
    }
    out
}

/// Linear interpolation between rates, for tests only.
fn resample(pcm: &[i16], from: u32, to: u32) -> Vec<i16> {
    let n = pcm.len() * to as usize / from as usize;
    (0..n)
        .map(|i| {
            let pos = i as f64 * f64::from(from) / f64::from(to);
            let k = pos.floor() as usize;
            let frac = pos - k as f64;
            let a = f64::from(pcm[k.min(pcm.len() - 1)]);
            let b = f64::from(pcm[(k + 1).min(pcm.len() - 1)]);
            (a + (b - a) * frac).round() as i16
        })
        .collect()
}

/// Skips the first 40 ms (codec warm-up and delay) and checks frequency and level.
fn assert_tone(label: &str, pcm: &[i16], rate: u32, freq: f64, level: f64) {
    let steady = &pcm[(rate as usize / 25).min(pcm.len())..];
    assert!(steady.len() >= rate as usize / 10, "{label}: too short");
    let measured = dominant_frequency(steady, rate).expect("tone present");
    assert!(
        (measured - freq).abs() / freq < 0.01,
        "{label}: {measured} Hz instead of {freq}"
    );
    let got = rms_dbfs(steady);
    assert!(
        (got - level).abs() < 3.0,
        "{label}: {got} dBFS instead of {level}"
    );
}

fn test_rates(kind: CodecKind) -> &'static [u32] {
    match kind {
        CodecKind::Pcmu | CodecKind::Pcma => &[8000],
        CodecKind::G722 => &[16000],
        CodecKind::Opus => &[8000, 16000, 48000],
    }
}

#[test]
fn tones_survive_every_codec_at_every_rate() {
    for kind in ALL {
        for &rate in test_rates(kind) {
            for freq in [1000.0, 440.0] {
                let tone = sine(freq, rate, -10.0, rate as usize * 3 / 10);
                let decoded = round_trip(kind, rate, &tone);
                assert_eq!(decoded.len(), tone.len(), "{kind:?} keeps the duration");
                assert_tone(
                    &format!("{kind:?}@{rate} {freq}"),
                    &decoded,
                    rate,
                    freq,
                    -10.0,
                );
            }
        }
    }
}

#[test]
fn g722_keeps_the_wideband_above_4_khz() {
    let tone = sine(6000.0, 16000, -10.0, 4800);
    let decoded = round_trip(CodecKind::G722, 16000, &tone);
    assert_tone("G722 6 kHz", &decoded, 16000, 6000.0, -10.0);
}

#[test]
fn g722_output_closely_follows_the_input() {
    // The QMF pair delays by 22 samples; past the warm-up the error is far below the signal
    // (48 dB measured for this tone).
    let tone = sine(1000.0, 16000, -10.0, 4800);
    let decoded = round_trip(CodecKind::G722, 16000, &tone);
    let delay = 22;
    let error: Vec<i16> = decoded[delay + 800..]
        .iter()
        .zip(&tone[800..])
        .map(|(d, t)| d.saturating_sub(*t))
        .collect();
    let snr = rms_dbfs(&tone[800..]) - rms_dbfs(&error);
    assert!(snr > 40.0, "G.722 SNR {snr} dB");
}

#[test]
fn transcoding_chain_pcmu_g722_opus_pcmu_keeps_the_tone() {
    for freq in [1000.0, 440.0] {
        let tone = sine(freq, 8000, -10.0, 4000);
        let pcmu = round_trip(CodecKind::Pcmu, 8000, &tone);
        let wide = resample(&pcmu, 8000, 16000);
        let g722 = round_trip(CodecKind::G722, 16000, &wide);
        let opus = round_trip(CodecKind::Opus, 16000, &g722);
        let narrow = resample(&opus, 16000, 8000);
        let back = round_trip(CodecKind::Pcmu, 8000, &narrow);
        assert_tone(&format!("chain {freq}"), &back[800..], 8000, freq, -10.0);
    }
}

#[test]
fn decoders_refuse_empty_payloads_and_survive_garbage() {
    let mut seed = 0x1234_5678_u32;
    let mut random = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed as u8
    };
    for kind in ALL {
        for &rate in test_rates(kind) {
            let mut decoder = decoder(kind, rate).unwrap();
            let mut out = Vec::new();
            assert!(
                matches!(
                    decoder.decode(&[], &mut out),
                    Err(CodecError::Malformed { .. })
                ),
                "{kind:?} empty"
            );
            assert!(out.is_empty());
            for len in [1, 2, 3, 7, 160, 400, 1500] {
                for _ in 0..20 {
                    let payload: Vec<u8> = (0..len).map(|_| random()).collect();
                    let before = out.len();
                    if decoder.decode(&payload, &mut out).is_err() {
                        assert_eq!(out.len(), before, "{kind:?} failed decode appends nothing");
                    }
                }
            }
            // Still decodes real packets afterwards.
            let mut encoder = encoder(kind, rate).unwrap();
            let mut packet = Vec::new();
            encoder
                .encode(&sine(440.0, rate, -10.0, frame_len(rate)), &mut packet)
                .unwrap();
            out.clear();
            decoder.decode(&packet, &mut out).unwrap();
            assert_eq!(out.len(), frame_len(rate));
        }
    }
}

#[test]
fn g711_and_g722_decode_any_ptime() {
    let mut pcmu = decoder(CodecKind::Pcmu, 8000).unwrap();
    let mut out = Vec::new();
    pcmu.decode(&[0xFF; 240], &mut out).unwrap();
    assert_eq!(out, vec![0; 240]);
    let mut g722 = decoder(CodecKind::G722, 16000).unwrap();
    out.clear();
    g722.decode(&[0x55; 80], &mut out).unwrap();
    assert_eq!(out.len(), 160);
}

#[test]
fn encoders_refuse_anything_but_one_frame() {
    for kind in ALL {
        let rate = test_rates(kind)[0];
        let mut encoder = encoder(kind, rate).unwrap();
        let mut out = Vec::new();
        let wrong = vec![0; frame_len(rate) + 2];
        assert_eq!(
            encoder.encode(&wrong, &mut out),
            Err(CodecError::FrameLength {
                expected: frame_len(rate),
                got: frame_len(rate) + 2
            })
        );
        assert!(out.is_empty());
    }
}

#[test]
fn unsupported_rates_are_refused() {
    for (kind, rate) in [
        (CodecKind::Pcmu, 16000),
        (CodecKind::Pcma, 48000),
        (CodecKind::G722, 8000),
        (CodecKind::Opus, 44100),
        (CodecKind::Opus, 0),
    ] {
        assert_eq!(
            encoder(kind, rate).err(),
            Some(CodecError::UnsupportedRate { kind, rate })
        );
        assert_eq!(
            decoder(kind, rate).err(),
            Some(CodecError::UnsupportedRate { kind, rate })
        );
    }
}

#[test]
fn conceal_produces_the_requested_samples_and_fades_to_silence() {
    for kind in ALL {
        for &rate in test_rates(kind) {
            let tone = sine(440.0, rate, -10.0, frame_len(rate) * 10);
            let mut encoder = encoder(kind, rate).unwrap();
            let mut decoder = decoder(kind, rate).unwrap();
            let mut packet = Vec::new();
            let mut out = Vec::new();
            for frame in tone.chunks_exact(frame_len(rate)) {
                packet.clear();
                encoder.encode(frame, &mut packet).unwrap();
                decoder.decode(&packet, &mut out).unwrap();
            }
            for samples in [0, 1, 7, frame_len(rate), frame_len(rate) * 3 + 5] {
                out.clear();
                decoder.conceal(samples, &mut out);
                assert_eq!(out.len(), samples, "{kind:?}@{rate} conceal {samples}");
            }
            // Long losses end in (near) silence.
            out.clear();
            decoder.conceal(frame_len(rate) * 10, &mut out);
            let tail = &out[out.len() - frame_len(rate)..];
            assert!(
                rms_dbfs(tail) < -40.0,
                "{kind:?}@{rate} still loud after 200 ms"
            );
            // Recovery with the next packet also yields exactly what was asked.
            out.clear();
            decoder.recover(&packet, frame_len(rate), &mut out);
            assert_eq!(out.len(), frame_len(rate));
        }
    }
}

#[test]
fn g711_concealment_repeats_the_last_frame_then_fades() {
    let mut decoder = decoder(CodecKind::Pcma, 8000).unwrap();
    let mut out = Vec::new();
    let mut frame = Vec::new();
    let mut encoder = encoder(CodecKind::Pcma, 8000).unwrap();
    encoder
        .encode(&sine(400.0, 8000, -6.0, 160), &mut frame)
        .unwrap();
    decoder.decode(&frame, &mut out).unwrap();
    let last = out.clone();
    out.clear();
    decoder.conceal(160, &mut out);
    assert_eq!(
        out[0], last[0],
        "first concealed sample repeats at full gain"
    );
    assert!(
        rms_dbfs(&out) > rms_dbfs(&last) - 3.0,
        "first frame barely faded"
    );
    out.clear();
    decoder.conceal(480, &mut out);
    assert!(out[..320].iter().any(|&s| s != 0), "still fading");
    assert!(out[320..].iter().all(|&s| s == 0), "silence after 60 ms");
    // A new packet resets the fade.
    decoder.decode(&frame, &mut out).unwrap();
    out.clear();
    decoder.conceal(1, &mut out);
    assert_eq!(out[0], last[0]);
}

#[test]
fn codec_kinds_map_sdp_and_rtp_parameters() {
    let codec = |encoding: &str, clock_rate, channels| Codec {
        payload_type: 96,
        encoding: encoding.to_owned(),
        clock_rate,
        channels,
        fmtp: None,
    };
    assert_eq!(
        CodecKind::from_sdp(&codec("pcmu", 8000, 1)),
        Some(CodecKind::Pcmu)
    );
    assert_eq!(
        CodecKind::from_sdp(&codec("PCMA", 8000, 1)),
        Some(CodecKind::Pcma)
    );
    assert_eq!(
        CodecKind::from_sdp(&codec("G722", 8000, 1)),
        Some(CodecKind::G722)
    );
    assert_eq!(
        CodecKind::from_sdp(&codec("OPUS", 48000, 2)),
        Some(CodecKind::Opus)
    );
    assert_eq!(CodecKind::from_sdp(&codec("opus", 48000, 1)), None);
    assert_eq!(CodecKind::from_sdp(&codec("G722", 16000, 1)), None);
    assert_eq!(
        CodecKind::from_sdp(&codec("telephone-event", 8000, 1)),
        None
    );
    let table: Vec<_> = ALL
        .iter()
        .map(|k| {
            (
                k.name(),
                k.rtp_clock_rate(),
                k.native_rate(),
                k.static_payload_type(),
                k.rtp_timestamp_step(),
            )
        })
        .collect();
    assert_eq!(
        table,
        [
            ("PCMU", 8000, 8000, Some(0), 160),
            ("PCMA", 8000, 8000, Some(8), 160),
            ("G722", 8000, 16000, Some(9), 160),
            ("opus", 48000, 48000, None, 960),
        ]
    );
}

#[test]
fn encoded_sizes_match_the_bitrates() {
    let tone = sine(440.0, 16000, -10.0, 320);
    let mut out = Vec::new();
    encoder(CodecKind::G722, 16000)
        .unwrap()
        .encode(&tone, &mut out)
        .unwrap();
    assert_eq!(out.len(), 160, "64 kbit/s");
    let tone = sine(440.0, 8000, -10.0, 160);
    out.clear();
    encoder(CodecKind::Pcmu, 8000)
        .unwrap()
        .encode(&tone, &mut out)
        .unwrap();
    assert_eq!(out.len(), 160, "64 kbit/s");
    let mut opus = encoder(CodecKind::Opus, 48000).unwrap();
    let tone = sine(440.0, 48000, -10.0, 960 * 50);
    let mut total = 0;
    for frame in tone.chunks_exact(960) {
        out.clear();
        opus.encode(frame, &mut out).unwrap();
        total += out.len();
    }
    let kbps = total as f64 * 8.0 / 1000.0;
    assert!(kbps > 8.0 && kbps < 48.0, "opus at {kbps} kbit/s");
}

/// Per-frame cost (best of 5 runs of 500 frames):
/// `cargo test --release --lib media::codec -- --ignored --nocapture`.
#[test]
#[ignore]
fn per_frame_cost() {
    use std::time::Instant;
    let frames = 500;
    for kind in ALL {
        for &rate in test_rates(kind) {
            let n = frame_len(rate);
            let tone = sine(440.0, rate, -10.0, n * frames);
            let (mut encode, mut decode) = (u128::MAX, u128::MAX);
            for _ in 0..5 {
                let mut encoder = encoder(kind, rate).unwrap();
                let mut decoder = decoder(kind, rate).unwrap();
                let mut packets = Vec::with_capacity(frames);
                let start = Instant::now();
                for frame in tone.chunks_exact(n) {
                    let mut packet = Vec::with_capacity(400);
                    encoder.encode(frame, &mut packet).unwrap();
                    packets.push(packet);
                }
                encode = encode.min(start.elapsed().as_nanos() / frames as u128);
                let mut out = Vec::with_capacity(n);
                let start = Instant::now();
                for packet in &packets {
                    out.clear();
                    decoder.decode(packet, &mut out).unwrap();
                }
                decode = decode.min(start.elapsed().as_nanos() / frames as u128);
            }
            println!("{kind:?}@{rate}: encode {encode} ns/frame, decode {decode} ns/frame");
        }
    }
}

fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Golden vectors made with FFmpeg 5.1 (`-c:a g722`, then `-f g722` decode) from this very
/// input: our bit stream and our decoded PCM are bit-exact with it.
#[test]
fn g722_is_bit_exact_with_ffmpeg() {
    let a = sine(1000.0, 16000, -10.0, 1600);
    let b = sine(5000.0, 16000, -16.0, 1600);
    let mix: Vec<i16> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    let mut encoder = encoder(CodecKind::G722, 16000).unwrap();
    let mut stream = Vec::new();
    for frame in mix.chunks_exact(320) {
        encoder.encode(frame, &mut stream).unwrap();
    }
    assert_eq!(stream.len(), 800);
    assert_eq!(
        stream[..16],
        [
            0xb7, 0x10, 0xaf, 0xa0, 0x04, 0xa0, 0xa0, 0x20, 0xa1, 0xb6, 0x11, 0x8c, 0x0f, 0x1c,
            0xad, 0x28
        ]
    );
    assert_eq!(fnv1a(stream.iter().copied()), 0xf6ea_d18c_6511_783d);
    let mut decoder = decoder(CodecKind::G722, 16000).unwrap();
    let mut pcm = Vec::new();
    decoder.decode(&stream, &mut pcm).unwrap();
    assert_eq!(
        fnv1a(pcm.iter().flat_map(|s| s.to_le_bytes())),
        0x4352_3936_ccfd_9805
    );
}

/// A voice-like signal: a 150 Hz harmonic series (1/k amplitudes) under a 3 Hz syllabic
/// envelope, so SILK's voice activity detector sees speech (a steady tone reads as noise).
fn voiced(rate: u32, samples: usize) -> Vec<i16> {
    (0..samples)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            let envelope = 0.55 + 0.45 * (2.0 * std::f64::consts::PI * 3.0 * t).sin();
            let harmonics: f64 = (1..=10)
                .map(|k| {
                    (2.0 * std::f64::consts::PI * 150.0 * f64::from(k) * t).sin() / f64::from(k)
                })
                .sum();
            (6000.0 * envelope * harmonics) as i16
        })
        .collect()
}

/// Error of `got` against `reference` in dB below the reference.
fn snr_db(reference: &[i16], got: &[i16]) -> f64 {
    let error: Vec<i16> = reference
        .iter()
        .zip(got)
        .map(|(r, g)| r.saturating_sub(*g))
        .collect();
    rms_dbfs(reference) - rms_dbfs(&error)
}

#[test]
fn opus_recovers_a_lost_frame_from_the_next_packets_fec() {
    let rate = 16000;
    let n = frame_len(rate);
    let voice = voiced(rate, n * 30);
    let mut encoder = encoder(CodecKind::Opus, rate).unwrap();
    let packets: Vec<Vec<u8>> = voice
        .chunks_exact(n)
        .map(|frame| {
            let mut packet = Vec::new();
            encoder.encode(frame, &mut packet).unwrap();
            packet
        })
        .collect();
    // Frames 20 and 21 lost; at packet 22 the first is concealed and the second rebuilt.
    let run = |use_fec: bool| {
        let mut decoder = decoder(CodecKind::Opus, rate).unwrap();
        let mut out = Vec::new();
        for (i, packet) in packets.iter().enumerate() {
            match i {
                20 | 21 => {}
                22 if use_fec => decoder.recover(packet, 2 * n, &mut out),
                22 => decoder.conceal(2 * n, &mut out),
                _ => {}
            }
            if !(20..22).contains(&i) {
                decoder.decode(packet, &mut out).unwrap();
            }
        }
        out
    };
    let clean = {
        let mut decoder = decoder(CodecKind::Opus, rate).unwrap();
        let mut out = Vec::new();
        for packet in &packets {
            decoder.decode(packet, &mut out).unwrap();
        }
        out
    };
    let (fec, plc) = (run(true), run(false));
    assert_eq!(fec.len(), voice.len());
    assert_eq!(plc.len(), voice.len());
    let frame21 = 21 * n..22 * n;
    let with_fec = snr_db(&clean[frame21.clone()], &fec[frame21.clone()]);
    let without = snr_db(&clean[frame21.clone()], &plc[frame21]);
    assert!(
        with_fec > without + 3.0,
        "FEC {with_fec} dB vs PLC {without} dB"
    );
}
