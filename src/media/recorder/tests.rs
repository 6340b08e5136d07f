use super::*;

const T0: i64 = 1_700_000_000_000; // 2023-11-14T22:13:20Z

/// Tests write frames in bursts, not every 20 ms: give each recording room for them.
fn pool() -> RecorderPool {
    RecorderPool::new(PoolConfig {
        queue_capacity: 16_384,
        buffers_per_recording: 256,
    })
    .expect("pool starts")
}

fn spec(dir: &Path, rate: u32, mode: ChannelMode, companion: bool) -> RecordingSpec {
    RecordingSpec {
        data_dir: dir.to_path_buf(),
        recording_id: RecordingId::new(),
        session_id: SessionId::new(),
        call_id: CallId::new(),
        started_ms: T0,
        sample_rate: rate,
        mode,
        mixed_companion: companion,
    }
}

/// Frame `k` of a continuous sine of `hz` at `rate`, amplitude 8000.
fn tone(hz: f64, rate: u32, k: usize) -> Vec<i16> {
    let n = frame_len(rate);
    (0..n)
        .map(|i| {
            let t = (k * n + i) as f64 / f64::from(rate);
            (8000.0 * (2.0 * std::f64::consts::PI * hz * t).sin()).round() as i16
        })
        .collect()
}

fn read(path: &Path) -> (hound::WavSpec, Vec<i16>) {
    let mut r = hound::WavReader::open(path).expect("opens with hound");
    let spec = r.spec();
    let samples = r
        .samples::<i16>()
        .collect::<Result<Vec<_>, _>>()
        .expect("samples");
    (spec, samples)
}

fn channel(samples: &[i16], channels: usize, c: usize) -> Vec<i16> {
    samples.iter().skip(c).step_by(channels).copied().collect()
}

/// Sign changes per second: 2 × the frequency of a pure tone.
fn crossings_per_second(x: &[i16], rate: u32) -> f64 {
    let n = x.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
    n as f64 * f64::from(rate) / x.len() as f64
}

fn sha_of(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).expect("read")))
}

#[test]
fn path_is_dated_utc_under_the_session() {
    let s = spec(Path::new("/data"), 8000, ChannelMode::Stereo, false);
    let want = format!(
        "recordings/2023/11/14/{}/{}.wav",
        s.session_id, s.recording_id
    );
    assert_eq!(s.relative_path(), PathBuf::from(&want));
    assert_eq!(s.path(), Path::new("/data").join(want));
    assert_eq!(civil_date(0), (1970, 1, 1));
    assert_eq!(civil_date(951_782_400_000), (2000, 2, 29));
    assert_eq!(civil_date(-1), (1969, 12, 31));
    assert!(is_safe_relative(&s.relative_path()));
    assert!(!is_safe_relative(Path::new("../etc/passwd")));
    assert!(!is_safe_relative(Path::new("/etc/passwd")));
}

#[test]
fn unsupported_sample_rate_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = pool()
        .start(spec(dir.path(), 44_100, ChannelMode::Stereo, false))
        .expect_err("44.1 kHz");
    assert!(matches!(err, RecorderError::BadSampleRate(44_100)));
}

#[test]
fn stereo_recording_has_the_tone_left_silence_right_and_a_matching_summary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = spec(dir.path(), 8000, ChannelMode::Stereo, false);
    let mut rec = pool().start(s.clone()).expect("starts");
    for k in 0..100 {
        rec.write_frame(&tone(500.0, 8000, k), &[]);
    }
    let sum = rec.stop().wait_blocking().expect("summary");
    assert_eq!(sum.path, s.path());
    assert_eq!(sum.frames, 100);
    assert_eq!(sum.duration, Duration::from_secs(2));
    assert_eq!((sum.channels, sum.sample_rate), (2, 8000));
    assert_eq!(sum.dropped_frames, 0);
    assert_eq!(sum.started_ms, T0);
    assert!(sum.companion.is_none());

    let (wspec, samples) = read(&sum.path);
    assert_eq!(
        (wspec.channels, wspec.sample_rate, wspec.bits_per_sample),
        (2, 8000, 16)
    );
    assert_eq!(samples.len(), 2 * 16_000, "2 s of stereo");
    let left = channel(&samples, 2, 0);
    let right = channel(&samples, 2, 1);
    let zc = crossings_per_second(&left, 8000);
    assert!(
        (990.0..=1010.0).contains(&zc),
        "500 Hz left: {zc} crossings/s"
    );
    assert!(right.iter().all(|&x| x == 0), "right is silent");
    assert_eq!(
        left,
        (0..100)
            .flat_map(|k| tone(500.0, 8000, k))
            .collect::<Vec<_>>()
    );

    assert_eq!(sum.size, std::fs::metadata(&sum.path).expect("meta").len());
    assert_eq!(
        sum.sha256,
        sha_of(&sum.path),
        "sha256 matches a recomputation"
    );
}

#[test]
fn skipped_frames_are_silence_in_place_and_keep_the_duration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rec = pool()
        .start(spec(dir.path(), 8000, ChannelMode::Stereo, false))
        .expect("starts");
    for k in 0..10 {
        rec.write_frame(&tone(500.0, 8000, k), &[]);
    }
    rec.skip_frames(15);
    for k in 25..50 {
        rec.write_frame(&tone(500.0, 8000, k), &[]);
    }
    let sum = rec.stop().wait_blocking().expect("summary");
    assert_eq!(sum.frames, 50);
    assert_eq!(sum.duration, Duration::from_secs(1));
    assert_eq!(sum.dropped_frames, 0, "a skipped frame was never offered");
    let (_, samples) = read(&sum.path);
    let left = channel(&samples, 2, 0);
    let n = frame_len(8000);
    assert!(
        left[..10 * n].iter().any(|&v| v != 0),
        "tone before the gap"
    );
    assert!(
        left[10 * n..25 * n].iter().all(|&v| v == 0),
        "silence in the gap"
    );
    assert!(left[25 * n..].iter().any(|&v| v != 0), "tone after the gap");
}

#[test]
fn mono_mode_and_companion_carry_the_mix_of_both_parties() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = pool();
    let mut stereo = p
        .start(spec(dir.path(), 16_000, ChannelMode::Stereo, true))
        .expect("stereo");
    let mut mono = p
        .start(spec(dir.path(), 16_000, ChannelMode::Mono, true))
        .expect("mono");
    for k in 0..10 {
        let (l, r) = (tone(500.0, 16_000, k), tone(1000.0, 16_000, k));
        stereo.write_frame(&l, &r);
        mono.write_frame(&l, &r);
    }
    let want: Vec<i16> = (0..10)
        .flat_map(|k| {
            let (l, r) = (tone(500.0, 16_000, k), tone(1000.0, 16_000, k));
            l.into_iter()
                .zip(r)
                .map(|(a, b)| a.saturating_add(b))
                .collect::<Vec<_>>()
        })
        .collect();
    let s = stereo.stop().wait_blocking().expect("stereo summary");
    let m = mono.stop().wait_blocking().expect("mono summary");
    assert!(m.companion.is_none(), "a mono recording needs no companion");
    assert_eq!(m.channels, 1);
    let (mspec, msamples) = read(&m.path);
    assert_eq!((mspec.channels, mspec.sample_rate), (1, 16_000));
    assert_eq!(msamples, want);

    let c = s.companion.expect("companion written");
    assert_eq!(c.path, companion_path(&s.path));
    assert!(c.path.to_string_lossy().ends_with(".mixed.wav"));
    let (cspec, csamples) = read(&c.path);
    assert_eq!(cspec.channels, 1);
    assert_eq!(csamples, want);
    assert_eq!(c.sha256, sha_of(&c.path));
}

#[test]
fn caller_only_mode_records_the_left_channel_alone_in_mono() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = pool();
    let mut rec = p
        .start(spec(dir.path(), 8000, ChannelMode::CallerOnly, true))
        .expect("caller-only");
    for k in 0..60 {
        rec.write_frame(&tone(500.0, 8000, k), &tone(1000.0, 8000, k));
    }
    rec.skip_frames(2);
    let sum = rec.stop().wait_blocking().expect("summary");
    assert_eq!(sum.channels, 1);
    assert!(sum.companion.is_none(), "one channel needs no companion");
    assert!(!companion_path(&sum.path).exists());
    assert_eq!(sum.frames, 62);
    assert_eq!(sum.duration, Duration::from_millis(62 * 20));
    assert_eq!(sum.sha256, sha_of(&sum.path));
    let (wspec, samples) = read(&sum.path);
    assert_eq!((wspec.channels, wspec.sample_rate), (1, 8000));
    let want: Vec<i16> = (0..60).flat_map(|k| tone(500.0, 8000, k)).collect();
    assert_eq!(&samples[..want.len()], &want[..], "the caller, not the mix");
    assert!(
        samples[want.len()..].iter().all(|&v| v == 0),
        "skipped frames are silence"
    );
    assert_eq!(samples.len(), 62 * 160);
}

#[test]
fn pause_writes_silence_and_keeps_the_timing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rec = pool()
        .start(spec(dir.path(), 8000, ChannelMode::Stereo, false))
        .expect("starts");
    for k in 0..75 {
        match k {
            25 => rec.pause(),
            50 => rec.resume(),
            _ => {}
        }
        rec.write_frame(&tone(500.0, 8000, k), &tone(500.0, 8000, k));
    }
    let sum = rec.stop().wait_blocking().expect("summary");
    assert_eq!(
        sum.duration,
        Duration::from_millis(1500),
        "paused time is included"
    );
    let (_, samples) = read(&sum.path);
    let left = channel(&samples, 2, 0);
    assert_eq!(left.len(), 12_000);
    let (before, rest) = left.split_at(4000);
    let (paused, after) = rest.split_at(4000);
    assert!(paused.iter().all(|&x| x == 0), "silence while paused");
    assert!(before.iter().any(|&x| x != 0) && after.iter().any(|&x| x != 0));
    assert_eq!(
        after,
        &(50..75)
            .flat_map(|k| tone(500.0, 8000, k))
            .collect::<Vec<_>>()[..]
    );
}

#[test]
fn header_is_valid_while_open_and_a_crash_loses_under_a_second() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec_pool = pool();
    let mut rec = rec_pool
        .start(spec(dir.path(), 8000, ChannelMode::Stereo, true))
        .expect("starts");
    let path = rec.path().to_path_buf();
    for k in 0..175 {
        rec.write_frame(&tone(500.0, 8000, k), &[]); // 3.5 s
    }
    rec.simulate_crash();
    assert_eq!(rec_pool.active_recordings(), 0);

    // Before any repair: the header written by the last flush is valid on its own.
    let r = hound::WavReader::open(&path).expect("valid header after flush");
    let secs = f64::from(r.duration()) / 8000.0;
    assert!(secs >= 2.5, "header covers {secs} s");
    drop(r);

    let out = repair(&path).expect("repairs");
    assert!(out.duration >= Duration::from_secs(3), "{:?}", out.duration);
    assert!(
        out.duration <= Duration::from_millis(3500),
        "{:?}",
        out.duration
    );
    assert_eq!((out.channels, out.sample_rate), (2, 8000));
    assert_eq!(out.size, std::fs::metadata(&path).expect("meta").len());
    assert_eq!(out.sha256, sha_of(&path));
    let (_, samples) = read(&path);
    assert_eq!(samples.len() as u128, 2 * 8 * out.duration.as_millis());
    let left = channel(&samples, 2, 0);
    assert_eq!(
        left[..8000],
        (0..50)
            .flat_map(|k| tone(500.0, 8000, k))
            .collect::<Vec<_>>()[..]
    );

    let cout = repair(&companion_path(&path)).expect("companion repairs");
    assert!(cout.duration >= Duration::from_secs(3));
    assert_eq!(cout.channels, 1);
}

#[test]
fn repair_truncates_a_partial_trailing_sample_frame() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("x.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&path, spec).expect("create");
    for i in 0..200i16 {
        w.write_sample(i).expect("write");
    }
    w.finalize().expect("finalize");
    // As after a crash: sizes still zero, and 3 bytes of a half-written frame.
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[4..8].copy_from_slice(&0u32.to_le_bytes());
    bytes[40..44].copy_from_slice(&0u32.to_le_bytes());
    bytes.extend_from_slice(&[1, 2, 3]);
    std::fs::write(&path, &bytes).expect("write");

    let out = repair(&path).expect("repairs");
    assert_eq!(out.truncated_bytes, 3);
    assert!(out.header_rewritten);
    assert_eq!(out.size, 44 + 400);
    assert_eq!(out.duration, Duration::from_micros(100 * 125));
    let (_, samples) = read(&path);
    assert_eq!(samples, (0..200).collect::<Vec<i16>>());

    let again = repair(&path).expect("idempotent");
    assert!(!again.header_rewritten);
    assert_eq!(again.truncated_bytes, 0);
    assert_eq!(again.sha256, out.sha256);
}

#[test]
fn zero_length_and_garbage_files_are_refused_not_repaired() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty.wav");
    std::fs::write(&empty, b"").expect("write");
    let err = repair(&empty).expect_err("empty file");
    assert!(matches!(err, RecorderError::NotWav { .. }), "{err}");
    assert_eq!(
        std::fs::metadata(&empty).expect("meta").len(),
        0,
        "left untouched"
    );

    let junk = dir.path().join("junk.wav");
    std::fs::write(&junk, b"RIFF\0\0\0\0WAVEjunk\xff\xff\xff\xff").expect("write");
    assert!(matches!(repair(&junk), Err(RecorderError::NotWav { .. })));

    let missing = dir.path().join("missing.wav");
    assert!(matches!(repair(&missing), Err(RecorderError::Io { .. })));
}

#[test]
fn slow_writer_leads_to_counted_drops_not_blocking() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = RecorderPool::new(PoolConfig {
        queue_capacity: 2,
        buffers_per_recording: 4,
    })
    .expect("pool");
    let mut rec = p
        .start(spec(dir.path(), 8000, ChannelMode::Stereo, false))
        .expect("starts");
    let stall = p.stall_writer();
    for k in 0..100 {
        rec.write_frame(&tone(500.0, 8000, k), &[]); // returns although nobody reads
    }
    assert_eq!(
        rec.dropped_frames(),
        98,
        "two fit in the queue, the rest are dropped"
    );
    assert_eq!(p.dropped_frames(), 98);
    drop(stall);
    let sum = rec.stop().wait_blocking().expect("summary");
    assert_eq!(sum.dropped_frames, 98);
    assert_eq!(sum.frames, 100, "dropped frames are written as silence");
    assert_eq!(sum.duration, Duration::from_secs(2));
    let (_, samples) = read(&sum.path);
    let left = channel(&samples, 2, 0);
    assert_eq!(left.len(), 16_000);
    assert_eq!(
        left[..320],
        (0..2)
            .flat_map(|k| tone(500.0, 8000, k))
            .collect::<Vec<_>>()[..]
    );
    assert!(left[320..].iter().all(|&x| x == 0));
}

#[test]
fn many_recordings_share_one_writer_within_their_buffer_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = pool();
    let mut recs: Vec<Recorder> = (0..64)
        .map(|_| {
            p.start(spec(dir.path(), 8000, ChannelMode::Stereo, false))
                .expect("starts")
        })
        .collect();
    let frame = tone(500.0, 8000, 0);
    for _ in 0..60 {
        for r in &mut recs {
            r.write_frame(&frame, &frame);
        }
    }
    // A recording never allocates more buffers than its budget.
    assert!(recs.iter().all(|r| r.allocated <= 256));
    let pending: Vec<PendingSummary> = recs.into_iter().map(Recorder::stop).collect();
    for s in pending {
        let s = s.wait_blocking().expect("summary");
        assert_eq!(s.frames, 60);
        assert_eq!(s.dropped_frames, 0);
        let (_, samples) = read(&s.path);
        assert_eq!(samples.len(), 60 * 160 * 2);
    }
    assert_eq!(p.active_recordings(), 0);
}

#[test]
fn paced_frames_reuse_one_buffer_once_warm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = pool();
    let mut rec = p
        .start(spec(dir.path(), 8000, ChannelMode::Stereo, false))
        .expect("starts");
    let frame = tone(500.0, 8000, 0);
    for _ in 0..200 {
        rec.write_frame(&frame, &frame);
        p.sync_writer(); // like the 20 ms pacing: the writer keeps up
    }
    assert_eq!(rec.allocated, 1, "one buffer, recycled 200 times");
    assert_eq!(rec.dropped_frames(), 0);
    let sum = rec.stop().wait_blocking().expect("summary");
    assert_eq!(sum.frames, 200);
}

#[tokio::test]
async fn stop_is_awaited_without_blocking_the_runtime_and_drop_finalises() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = pool();
    let mut rec = p
        .start(spec(dir.path(), 8000, ChannelMode::Stereo, false))
        .expect("starts");
    for k in 0..5 {
        rec.write_frame(&tone(500.0, 8000, k), &[]);
    }
    let sum = rec.stop().await.expect("summary");
    assert_eq!(sum.frames, 5);

    let mut dropped = p
        .start(spec(dir.path(), 8000, ChannelMode::Mono, false))
        .expect("starts");
    let path = dropped.path().to_path_buf();
    for k in 0..5 {
        dropped.write_frame(&tone(500.0, 8000, k), &[]);
    }
    drop(dropped);
    // A later stop on the same writer is answered after the dropped one was finalised.
    let last = p
        .start(spec(dir.path(), 8000, ChannelMode::Mono, false))
        .expect("starts");
    last.stop().await.expect("summary");
    let (_, samples) = read(&path);
    assert_eq!(samples.len(), 5 * 160);
}
