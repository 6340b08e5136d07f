//! Text to speech through espeak-ng (`switchboard::ivr::tts`): real synthesis, the cache, and
//! the errors an operator sees.
//!
//! The tests that synthesise need `espeak-ng` (scripts/install-test-deps); without it they
//! print a notice and return. The error-path tests run everywhere.

use std::path::Path;
use std::time::Duration;

use switchboard::ivr::tts::{self, TtsError};

fn have_espeak() -> bool {
    if tts::available() {
        true
    } else {
        eprintln!("espeak-ng not installed: skipped (scripts/install-test-deps)");
        false
    }
}

/// Root mean square of a 16-bit mono WAV, in full scale (0..1), and its sample count.
fn wav_rms(path: &Path) -> (f64, usize) {
    let mut reader = hound::WavReader::open(path).expect("a readable WAV");
    let spec = reader.spec();
    assert_eq!(spec.channels, 1, "mono");
    assert_eq!(spec.bits_per_sample, 16, "16-bit");
    assert_eq!(spec.sample_format, hound::SampleFormat::Int);
    let samples: Vec<i16> = reader
        .samples::<i16>()
        .collect::<Result<_, _>>()
        .expect("samples decode");
    let sum: f64 = samples
        .iter()
        .map(|&s| (f64::from(s) / 32768.0).powi(2))
        .sum();
    ((sum / samples.len().max(1) as f64).sqrt(), samples.len())
}

#[tokio::test]
async fn a_sentence_becomes_a_non_silent_mono_wav() {
    if !have_espeak() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = tts::synthesize("Thank you for calling Switchboard.", None, dir.path())
        .await
        .expect("synthesis");
    assert_eq!(path.parent(), Some(dir.path()));
    assert_eq!(path.extension().and_then(|e| e.to_str()), Some("wav"));
    let (rms, n) = wav_rms(&path);
    let rate = hound::WavReader::open(&path)
        .expect("wav")
        .spec()
        .sample_rate;
    assert!(
        n as f64 / f64::from(rate) > 0.5,
        "at least half a second of speech, got {n} samples at {rate} Hz"
    );
    assert!(rms > 0.01, "speech is audible: RMS {rms}");
    // Nothing but the result is left in the cache directory (no temporary files).
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(names, vec![path]);
}

#[tokio::test]
async fn the_second_request_is_served_from_the_cache_without_running_the_program() {
    if !have_espeak() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let first = tts::synthesize("For sales, press 1.", Some("en-us"), dir.path())
        .await
        .expect("synthesis");
    let modified = std::fs::metadata(&first)
        .expect("meta")
        .modified()
        .expect("mtime");
    // A program that does not exist would give NotInstalled if it were run.
    let missing = dir.path().join("no-such-espeak");
    let second = tts::synthesize_with(
        &missing,
        "For sales, press 1.",
        Some("en-us"),
        dir.path(),
        Duration::from_secs(10),
    )
    .await
    .expect("a cache hit");
    assert_eq!(first, second);
    let again = std::fs::metadata(&second)
        .expect("meta")
        .modified()
        .expect("mtime");
    assert_eq!(modified, again, "the cached file was not rewritten");
    // The default voice is en-us: the same cache entry.
    let third = tts::synthesize_with(
        &missing,
        "For sales, press 1.",
        None,
        dir.path(),
        Duration::from_secs(10),
    )
    .await
    .expect("a cache hit with the default voice");
    assert_eq!(first, third);
    // Another text or voice is another entry (and would need the program).
    let other = tts::synthesize_with(
        &missing,
        "For support, press 2.",
        None,
        dir.path(),
        Duration::from_secs(10),
    )
    .await;
    assert!(matches!(other, Err(TtsError::NotInstalled)), "{other:?}");
    let other = tts::synthesize_with(
        &missing,
        "For sales, press 1.",
        Some("en-gb"),
        dir.path(),
        Duration::from_secs(10),
    )
    .await;
    assert!(matches!(other, Err(TtsError::NotInstalled)), "{other:?}");
}

#[tokio::test]
async fn a_missing_program_is_not_installed_with_the_install_hint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("bin/espeak-ng");
    let err = tts::synthesize_with(
        &missing,
        "Hello.",
        None,
        dir.path(),
        Duration::from_secs(10),
    )
    .await
    .expect_err("no program");
    assert!(matches!(err, TtsError::NotInstalled), "{err:?}");
    assert!(
        err.to_string().contains("apt-get install espeak-ng"),
        "message tells how to fix it: {err}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("read_dir").count(),
        0,
        "no partial file"
    );
}

#[tokio::test]
async fn hostile_voices_are_rejected_before_anything_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such-espeak");
    let long = "a".repeat(33);
    for voice in [
        "",
        "--stdout",
        "-w /etc/passwd",
        "en-us; rm -rf /",
        "../../voices/x",
        "en us",
        "en\nus",
        "ён",
        long.as_str(),
    ] {
        let err = tts::synthesize_with(
            &missing,
            "Hello.",
            Some(voice),
            dir.path(),
            Duration::from_secs(10),
        )
        .await
        .expect_err("rejected");
        // Failed (not NotInstalled): the program was never started.
        match err {
            TtsError::Failed(msg) => assert!(msg.contains("invalid voice"), "{voice:?}: {msg}"),
            other => panic!("{voice:?}: expected an invalid-voice error, got {other:?}"),
        }
    }
    let ok = "a".repeat(32);
    for voice in ["en-us", "en+f3", "pt_BR", ok.as_str()] {
        let err = tts::synthesize_with(
            &missing,
            "Hello.",
            Some(voice),
            dir.path(),
            Duration::from_secs(10),
        )
        .await
        .expect_err("the program is missing");
        assert!(
            matches!(err, TtsError::NotInstalled),
            "{voice:?} is a valid name: {err:?}"
        );
    }
}

#[tokio::test]
async fn an_unknown_voice_fails_with_espeak_ngs_own_message() {
    if !have_espeak() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let err = tts::synthesize("Hello.", Some("xx-nosuchvoice"), dir.path())
        .await
        .expect_err("unknown voice");
    match err {
        TtsError::Failed(msg) => assert!(msg.contains("voice does not exist"), "{msg}"),
        other => panic!("expected Failed, got {other:?}"),
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("read_dir").count(),
        0,
        "no partial file"
    );
}

#[tokio::test]
async fn a_synthesis_over_the_time_limit_is_abandoned_and_leaves_no_file() {
    if !have_espeak() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let text =
        "This sentence is long enough that no machine speaks it in no time at all. ".repeat(20);
    let err = tts::synthesize_with(
        Path::new("espeak-ng"),
        &text,
        None,
        dir.path(),
        Duration::ZERO,
    )
    .await
    .expect_err("over the limit");
    match err {
        TtsError::Failed(msg) => assert!(msg.contains("killed"), "{msg}"),
        other => panic!("expected Failed, got {other:?}"),
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("read_dir").count(),
        0,
        "no partial file"
    );
}

#[test]
fn the_committed_prompts_are_16khz_mono_peak_normalised_speech() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("media/prompts");
    for name in [
        "main-menu",
        "main-menu-short",
        "invalid",
        "no-input",
        "connecting",
        "leave-message",
        "after-hours",
        "goodbye",
    ] {
        let path = root.join(format!("{name}.wav"));
        let mut reader = hound::WavReader::open(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (scripts/make-prompts)", path.display()));
        let spec = reader.spec();
        assert_eq!(
            (spec.sample_rate, spec.channels, spec.bits_per_sample),
            (16000, 1, 16),
            "{name}"
        );
        let samples: Vec<i16> = reader
            .samples::<i16>()
            .collect::<Result<_, _>>()
            .expect("samples");
        let peak = samples.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        let peak_db = 20.0 * (f64::from(peak) / 32768.0).log10();
        assert!(
            (-3.5..=-2.5).contains(&peak_db),
            "{name}: peak {peak_db:.2} dBFS"
        );
        let (rms, n) = wav_rms(&path);
        assert!(n > 16000, "{name}: over a second");
        assert!(rms > 0.03, "{name}: RMS {rms}");
        // 200 ms of silence at the end; speech from the start (leading silence trimmed).
        assert!(
            samples[n - 3000..].iter().all(|&s| s == 0),
            "{name}: silent tail"
        );
        assert!(
            samples[..800].iter().any(|&s| s.unsigned_abs() > 300),
            "{name}: speech within the first 50 ms"
        );
    }
}
