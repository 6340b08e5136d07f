//! Talk-off and talk-down of the in-band DTMF detector with real(istic) speech: espeak-ng
//! speaks long English sentences (vowels, numbers) at test time, sox brings them to 8 and
//! 16 kHz, and the detector must find no digit in more than 20 s of speech per voice, yet
//! still find digits mixed into the speech.
//!
//! Needs `espeak-ng` and `sox` (scripts/install-test-deps). Without them the tests print a
//! notice and pass, except under `CI=true`, where they fail.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use switchboard::media::dtmf::{Digit, ToneGenerator};
use switchboard::media::dtmf_detect::DtmfDetector;
use switchboard::media::frame_len;

const TEXT: &str = "Good evening and welcome. Our opening hours are eight a.m. to nine thirty p.m., \
    Monday to Friday, and ten until four on Saturday. Please say or enter your account number, \
    which is the seven digit number beginning with four one five, for example four one five, \
    two nine eight, six zero three. You are caller number twenty three in the queue. \
    Oh, I see, you would like to know more about our new autumn offers? Our agents are all \
    busy at the moment, however your call is really important to us, so please stay on the \
    line and we will be with you as soon as we can. Remember, you can also reach us online, \
    any time of day or night, at our easy-to-use website. Thank you for waiting, \
    eee, aaah, ooooh, you, me, we, hey, hi, how are you today?";

/// (voice, extra espeak-ng arguments): a low male, a female, a high-pitched fast voice.
const VOICES: &[(&str, &[&str])] = &[
    ("en-us", &["-s", "150"]),
    ("en+f3", &["-p", "70", "-s", "140"]),
    ("en-gb+f4", &["-p", "95", "-s", "175"]),
];

/// `true` when `tool` runs; otherwise the test should stop (after the CI check).
fn have(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let message = format!("{tool} is not installed (run scripts/install-test-deps)");
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("dtmf_talkoff: {message}");
        }
        eprintln!("dtmf_talkoff: skipped: {message}");
    }
    ok
}

/// Speech from espeak-ng at `rate` Hz, normalised to a peak of −1 dBFS.
fn speech(dir: &Path, voice: &str, args: &[&str], rate: u32) -> Vec<i16> {
    let raw = dir.join(format!("{voice}.wav"));
    let resampled = dir.join(format!("{voice}-{rate}.wav"));
    let status = Command::new("espeak-ng")
        .args(["-v", voice])
        .args(args)
        .arg("-w")
        .arg(&raw)
        .arg(TEXT)
        .status()
        .expect("run espeak-ng");
    assert!(status.success(), "espeak-ng failed for {voice}");
    let status = Command::new("sox")
        .arg(&raw)
        .args(["-r", &rate.to_string(), "-c", "1", "-b", "16"])
        .arg(&resampled)
        .args(["gain", "-n", "-1"])
        .status()
        .expect("run sox");
    assert!(status.success(), "sox failed for {voice}");
    let mut reader = hound::WavReader::open(&resampled).expect("read resampled WAV");
    assert_eq!(reader.spec().sample_rate, rate);
    reader
        .samples::<i16>()
        .collect::<Result<_, _>>()
        .expect("WAV samples")
}

/// The speech repeated until it lasts at least `seconds`.
fn at_least(mut pcm: Vec<i16>, rate: u32, seconds: usize) -> Vec<i16> {
    let once = pcm.clone();
    while pcm.len() < rate as usize * seconds {
        pcm.extend_from_slice(&once);
    }
    pcm
}

/// Digits found in `pcm`, fed in 20 ms frames, with the sample index of each.
fn detect(rate: u32, pcm: &[i16]) -> Vec<(usize, Digit)> {
    let mut detector = DtmfDetector::new(rate);
    let mut found = Vec::new();
    for (i, frame) in pcm.chunks(frame_len(rate)).enumerate() {
        if let Some(d) = detector.process(frame) {
            found.push((i * frame_len(rate), d));
        }
    }
    found
}

fn scaled(pcm: &[i16], gain_db: f32) -> Vec<i16> {
    let gain = 10f32.powf(gain_db / 20.0);
    pcm.iter()
        .map(|&s| (f32::from(s) * gain).round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

#[test]
fn speech_is_never_taken_for_digits() {
    if !have("espeak-ng") || !have("sox") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    for rate in [8000, 16_000] {
        for (voice, args) in VOICES {
            let pcm = at_least(speech(dir.path(), voice, args, rate), rate, 20);
            assert!(pcm.len() >= rate as usize * 20);
            // Loud (peak −1 dBFS) and at a normal telephone level (−12 dB more).
            for gain_db in [0.0, -12.0] {
                let false_digits = detect(rate, &scaled(&pcm, gain_db));
                assert!(
                    false_digits.is_empty(),
                    "talk-off: {voice} at {rate} Hz, gain {gain_db} dB: {false_digits:?} \
                     (sample, digit) in {} s",
                    pcm.len() / rate as usize
                );
            }
        }
    }
}

#[test]
fn digits_mixed_into_speech_are_found() {
    if !have("espeak-ng") || !have("sox") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let keys = "0123456789*#ABCD";
    for rate in [8000, 16_000] {
        for (voice, args) in VOICES {
            // Speech at a −13 dBFS peak (about −30 dBFS RMS, −22 dBFS in its loudest 50 ms);
            // digits at −16 dBFS peak per tone (−16 dBFS RMS for the pair), 70 ms, one every
            // 1.3 s, over speech and pauses alike.
            let mut pcm: Vec<i32> = at_least(speech(dir.path(), voice, args, rate), rate, 22)
                .into_iter()
                .map(|s| i32::from(scaled(&[s], -12.0)[0]))
                .collect();
            let step = rate as usize * 13 / 10;
            for (i, key) in keys.chars().enumerate() {
                let digit = Digit::from_char(key).expect("key");
                let mut tone =
                    ToneGenerator::with_level(digit, rate, Duration::from_millis(70), -16.0);
                let mut buffer = vec![0i16; tone.remaining()];
                tone.fill(&mut buffer);
                let at = step / 2 + i * step;
                for (s, t) in pcm[at..].iter_mut().zip(&buffer) {
                    *s += i32::from(*t);
                }
            }
            let pcm: Vec<i16> = pcm
                .into_iter()
                .map(|s| s.clamp(-32768, 32767) as i16)
                .collect();
            let found: String = detect(rate, &pcm)
                .iter()
                .map(|(_, d)| d.as_char())
                .collect();
            assert_eq!(found, keys, "talk-down: {voice} at {rate} Hz");
        }
    }
}
