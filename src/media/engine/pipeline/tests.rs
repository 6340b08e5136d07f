use super::frame::is_quiet;
use super::*;
use crate::media::analysis::sine;
use crate::media::rtp::RtpHeader;

const PCMU: LegMedia = LegMedia {
    codec: CodecKind::Pcmu,
    payload_type: 0,
    telephone_event: Some(101),
};

fn pipeline(now: Instant, a: LegMedia, b: LegMedia) -> Pipeline {
    let mut p = Pipeline::new(
        PipelineConfig {
            inband_dtmf: true,
            ..PipelineConfig::default()
        },
        now,
    );
    p.command(
        now,
        MediaCommand::SetMedia {
            leg: Leg::A,
            media: Some(a),
        },
    );
    p.command(
        now,
        MediaCommand::SetMedia {
            leg: Leg::B,
            media: Some(b),
        },
    );
    p
}

/// An RTP packet of `kind` carrying frame `i` of a 1 kHz tone.
fn voice(kind: CodecKind, pt: u8, i: u16, enc: &mut Box<dyn Encoder>) -> Vec<u8> {
    let rate = enc.pcm_rate();
    let pcm = sine(1000.0, rate, -12.0, frame_len(rate) * (usize::from(i) + 1));
    let mut payload = Vec::new();
    enc.encode(&pcm[frame_len(rate) * usize::from(i)..], &mut payload)
        .expect("encode");
    let mut out = Vec::new();
    RtpHeader {
        marker: i == 0,
        payload_type: pt,
        sequence: 1000 + i,
        timestamp: 5000 + u32::from(i) * kind.rtp_timestamp_step(),
        ssrc: Ssrc(0xabcd),
    }
    .write(&payload, &mut out);
    out
}

fn transmits(p: &mut Pipeline) -> Vec<Transmit> {
    std::iter::from_fn(|| p.poll_transmit()).collect()
}

#[test]
fn a_callee_in_a_room_is_cut_off_from_the_caller_until_it_leaves() {
    let t0 = Instant::now();
    let mut p = pipeline(t0, PCMU, PCMU);
    let rooms = super::super::conference::Rooms::default();
    let room = rooms.get_or_create("transfer:test");
    p.command(
        t0,
        MediaCommand::JoinConference {
            room: room.clone(),
            leg: Leg::B,
        },
    );
    assert_eq!(room.len(), 1);
    let mut enc = codec::encoder(CodecKind::Pcmu, 8000).expect("encoder");
    let mut pkt = voice(CodecKind::Pcmu, 0, 0, &mut enc);
    assert_eq!(p.on_rtp(t0, Leg::A, &mut pkt), RtpAction::Consume);
    let mut pkt = voice(CodecKind::Pcmu, 0, 1, &mut enc);
    assert_eq!(p.on_rtp(t0, Leg::B, &mut pkt), RtpAction::Consume);
    // Joining again with the other leg moves the call: one party in the room.
    p.command(
        t0,
        MediaCommand::JoinConference {
            room: room.clone(),
            leg: Leg::A,
        },
    );
    assert_eq!(room.len(), 1);
    p.command(t0, MediaCommand::LeaveConference);
    assert_eq!(room.len(), 0);
    let mut pkt = voice(CodecKind::Pcmu, 0, 2, &mut enc);
    assert_eq!(
        p.on_rtp(t0 + FRAME * 2, Leg::A, &mut pkt),
        RtpAction::Forward,
        "relayed again once out of the room"
    );
}

#[test]
fn a_shared_codec_is_restamped_into_the_other_legs_stream() {
    let t0 = Instant::now();
    let opus_a = LegMedia {
        codec: CodecKind::Opus,
        payload_type: 111,
        telephone_event: None,
    };
    let opus_b = LegMedia {
        payload_type: 96,
        ..opus_a
    };
    let mut p = pipeline(t0, opus_a, opus_b);
    assert!(!p.is_transcoding());
    let mut enc = codec::encoder(CodecKind::Opus, 16_000).expect("encoder");
    let mut seqs = Vec::new();
    for i in 0..3u16 {
        let mut pkt = voice(CodecKind::Opus, 111, i, &mut enc);
        let payload = pkt[12..].to_vec();
        let now = t0 + FRAME * u32::from(i);
        assert_eq!(p.on_rtp(now, Leg::A, &mut pkt), RtpAction::Forward);
        let out = RtpPacket::parse(&pkt).expect("still RTP");
        assert_eq!(out.payload_type(), 96, "the callee's payload type number");
        assert_ne!(out.ssrc(), Ssrc(0xabcd), "our SSRC on the other leg");
        assert_eq!(out.payload(), &payload[..], "payload untouched");
        seqs.push(out.sequence());
    }
    assert_eq!(seqs[1], seqs[0].wrapping_add(1));
    assert_eq!(seqs[2], seqs[1].wrapping_add(1));
    // Nothing is decoded or generated: no frame clock runs, only RTCP is due.
    assert!(p.clock.is_none());
    assert!(transmits(&mut p).is_empty());
}

#[test]
fn a_muted_party_is_replaced_by_silence_and_relayed_again_once_unmuted() {
    let t0 = Instant::now();
    let mut p = pipeline(t0, PCMU, PCMU);
    let mut enc = codec::encoder(CodecKind::Pcmu, 8000).expect("encoder");
    p.command(
        t0,
        MediaCommand::Mute {
            leg: Leg::A,
            muted: true,
        },
    );
    assert!(p.clock.is_some(), "silence is generated on the frame clock");
    let mut pkt = voice(CodecKind::Pcmu, 0, 0, &mut enc);
    assert_eq!(p.on_rtp(t0, Leg::A, &mut pkt), RtpAction::Consume);
    p.on_timeout(t0 + FRAME);
    let out = transmits(&mut p);
    let to_b: Vec<_> = out.iter().filter(|t| t.leg == Leg::B && !t.rtcp).collect();
    assert!(!to_b.is_empty(), "the callee gets frames");
    for t in to_b {
        let rtp = RtpPacket::parse(&t.bytes).expect("RTP");
        assert!(
            rtp.payload().iter().all(|&b| b == 0xFF || b == 0x7F),
            "µ-law silence"
        );
    }
    // The callee is not muted: it is relayed.
    let mut pkt = voice(CodecKind::Pcmu, 0, 1, &mut enc);
    assert_eq!(p.on_rtp(t0 + FRAME, Leg::B, &mut pkt), RtpAction::Forward);
    p.command(
        t0 + FRAME,
        MediaCommand::Mute {
            leg: Leg::A,
            muted: false,
        },
    );
    let mut pkt = voice(CodecKind::Pcmu, 0, 2, &mut enc);
    assert_eq!(p.on_rtp(t0 + FRAME, Leg::A, &mut pkt), RtpAction::Forward);
    assert!(p.clock.is_none(), "zero-copy relay again");
}

#[test]
fn different_codecs_are_transcoded_on_the_frame_clock() {
    let t0 = Instant::now();
    let g722 = LegMedia {
        codec: CodecKind::G722,
        payload_type: 9,
        telephone_event: None,
    };
    let mut p = pipeline(t0, PCMU, g722);
    assert!(p.is_transcoding());
    assert_eq!(p.rate(), 16_000);
    let mut enc = codec::encoder(CodecKind::Pcmu, 8000).expect("encoder");
    let mut out = Vec::new();
    for i in 0..50u16 {
        let now = t0 + FRAME * u32::from(i);
        let mut pkt = voice(CodecKind::Pcmu, 0, i, &mut enc);
        assert_eq!(p.on_rtp(now, Leg::A, &mut pkt), RtpAction::Consume);
        p.on_timeout(now);
        out.extend(
            transmits(&mut p)
                .into_iter()
                .filter(|t| t.leg == Leg::B && !t.rtcp),
        );
    }
    // One G.722 packet per 20 ms tick (the first ticks may be silence while the jitter
    // buffer fills), continuous sequence numbers, 160 timestamp units apart.
    assert!(out.len() >= 48, "{} packets", out.len());
    let pkts: Vec<_> = out
        .iter()
        .map(|t| RtpPacket::parse(&t.bytes).expect("rtp"))
        .collect();
    for w in pkts.windows(2) {
        assert_eq!(w[1].sequence(), w[0].sequence().wrapping_add(1));
        assert_eq!(w[1].timestamp(), w[0].timestamp().wrapping_add(160));
        assert_eq!(w[1].payload_type(), 9);
    }
    let mut dec = codec::decoder(CodecKind::G722, 16_000).expect("decoder");
    let mut pcm = Vec::new();
    for pkt in &pkts[pkts.len() - 25..] {
        dec.decode(pkt.payload(), &mut pcm).expect("decode");
    }
    let f = crate::media::analysis::dominant_frequency(&pcm, 16_000).expect("tone");
    assert!(
        (f - 1000.0).abs() < 10.0,
        "1 kHz crosses the transcoder: {f}"
    );
}

#[test]
fn a_digit_sent_to_a_leg_with_telephone_event_goes_as_rfc4733_with_three_ends() {
    let t0 = Instant::now();
    let mut p = pipeline(t0, PCMU, PCMU);
    p.command(
        t0,
        MediaCommand::SendDigit {
            leg: Leg::B,
            digit: Digit::D7,
            duration: Duration::from_millis(100),
        },
    );
    let mut events = Vec::new();
    for i in 0..20u32 {
        p.on_timeout(t0 + FRAME * i);
        for t in transmits(&mut p) {
            let pkt = RtpPacket::parse(&t.bytes).expect("rtp");
            if pkt.payload_type() == 101 {
                assert_eq!(t.leg, Leg::B);
                events.push((pkt.marker(), pkt.timestamp(), pkt.payload().to_vec()));
            }
        }
    }
    assert!(events[0].0, "the first event packet has the marker bit");
    assert!(
        events.iter().all(|e| e.1 == events[0].1),
        "one timestamp per event"
    );
    assert!(events.iter().all(|e| e.2[0] == 7), "event code 7");
    let ends = events.iter().filter(|e| e.2[1] & 0x80 != 0).count();
    assert_eq!(ends, 3, "the end is sent three times");
    // Done: the frame clock stops again.
    assert!(p.clock.is_none());
}

#[test]
fn rfc4733_digits_from_a_leg_are_reported_once_and_in_band_to_a_leg_without_events() {
    let t0 = Instant::now();
    let plain = LegMedia {
        telephone_event: None,
        ..PCMU
    };
    let mut p = pipeline(t0, PCMU, plain);
    // "3", 3 packets + 3 ends, all with timestamp 8000.
    let mut digits = Vec::new();
    let mut tone_packets = 0;
    for i in 0..6u16 {
        let duration = 160 * (i.min(3) + 1);
        let end = if i >= 3 { 0x80 } else { 0 };
        let mut pkt = rfc4733_packet(i, 3, end, duration);
        let now = t0 + FRAME * u32::from(i);
        assert_eq!(
            p.on_rtp(now, Leg::A, &mut pkt),
            RtpAction::Consume,
            "events are not relayed to a leg without telephone-event"
        );
        p.on_timeout(now);
    }
    for i in 6..20u32 {
        p.on_timeout(t0 + FRAME * i);
    }
    while let Some(ev) = p.poll_event() {
        if let MediaEvent::Digit { leg, digit, source } = ev {
            digits.push((leg, digit, source));
        }
    }
    for t in transmits(&mut p) {
        if t.leg == Leg::B && !t.rtcp {
            tone_packets += 1;
        }
    }
    assert_eq!(digits, [(Leg::A, Digit::D3, DigitSource::Rfc4733)]);
    assert!(
        tone_packets >= 5,
        "the digit is played in-band to the callee"
    );
}

#[test]
fn in_band_digits_are_detected_on_a_leg_without_telephone_event() {
    let t0 = Instant::now();
    let plain = LegMedia {
        telephone_event: None,
        ..PCMU
    };
    let mut p = pipeline(t0, plain, PCMU);
    let tone = crate::media::dtmf::dual_tone(Digit::D9, 8000, Duration::from_millis(100));
    let mut pcm = vec![0i16; 800];
    pcm.extend(tone);
    pcm.resize(8000, 0);
    let mut enc = codec::encoder(CodecKind::Pcmu, 8000).expect("encoder");
    for (i, chunk) in pcm.chunks(160).enumerate() {
        let mut payload = Vec::new();
        enc.encode(chunk, &mut payload).expect("encode");
        let mut pkt = Vec::new();
        RtpHeader {
            marker: i == 0,
            payload_type: 0,
            sequence: i as u16,
            timestamp: i as u32 * 160,
            ssrc: Ssrc(9),
        }
        .write(&payload, &mut pkt);
        let now = t0 + FRAME * i as u32;
        p.on_rtp(now, Leg::A, &mut pkt);
        p.on_timeout(now);
    }
    for i in 50..60u32 {
        p.on_timeout(t0 + FRAME * i);
    }
    let digits: Vec<_> = std::iter::from_fn(|| p.poll_event())
        .filter_map(|e| match e {
            MediaEvent::Digit { digit, source, .. } => Some((digit, source)),
            _ => None,
        })
        .collect();
    assert_eq!(digits, [(Digit::D9, DigitSource::Inband)]);
}

#[test]
fn a_digit_barges_in_on_a_prompt_and_the_prompt_end_is_reported() {
    let t0 = Instant::now();
    let mut p = pipeline(t0, PCMU, PCMU);
    let prompt: Arc<[i16]> = Arc::from(sine(500.0, 8000, -12.0, 8000));
    p.command(
        t0,
        MediaCommand::Play {
            leg: Leg::A,
            id: 7,
            source: PlaySource::Prompt {
                pcm: Arc::clone(&prompt),
                rate: 8000,
                looped: false,
            },
            barge_in: true,
        },
    );
    p.on_timeout(t0);
    let played = transmits(&mut p).iter().filter(|t| t.leg == Leg::A).count();
    assert_eq!(
        played, 1,
        "the prompt replaces what the caller hears, frame by frame"
    );
    p.digit_from_info(t0 + FRAME, Leg::A, Digit::D1, Duration::from_millis(100));
    let events: Vec<_> = std::iter::from_fn(|| p.poll_event()).collect();
    assert!(events.contains(&MediaEvent::PlaybackFinished {
        leg: Leg::A,
        id: 7,
        interrupted: true
    }));
    // A prompt without barge-in plays to its end.
    p.command(
        t0,
        MediaCommand::Play {
            leg: Leg::A,
            id: 8,
            source: PlaySource::Prompt {
                pcm: Arc::from(&prompt[..1600]),
                rate: 8000,
                looped: false,
            },
            barge_in: false,
        },
    );
    for i in 2..20u32 {
        p.on_timeout(t0 + FRAME * i);
    }
    let events: Vec<_> = std::iter::from_fn(|| p.poll_event()).collect();
    assert!(events.contains(&MediaEvent::PlaybackFinished {
        leg: Leg::A,
        id: 8,
        interrupted: false
    }));
}

/// An RTP packet of `pcm` (one frame) encoded as PCMU, payload type 0, sequence `i`.
/// The `i`-th packet (sequence 10 + i, marker on the first) of RFC 4733 event `event` from
/// SSRC 7 with payload type 101: `end` is the E bit (0x80 or 0), volume 10.
fn rfc4733_packet(i: u16, event: u8, end: u8, duration: u16) -> Vec<u8> {
    let mut pkt = Vec::new();
    RtpHeader {
        marker: i == 0,
        payload_type: 101,
        sequence: 10 + i,
        timestamp: 8000,
        ssrc: Ssrc(7),
    }
    .write(
        &[event, end | 10, (duration >> 8) as u8, duration as u8],
        &mut pkt,
    );
    pkt
}

fn pcmu_packet(i: u16, pcm: &[i16], enc: &mut Box<dyn Encoder>) -> Vec<u8> {
    let mut payload = Vec::new();
    enc.encode(pcm, &mut payload).expect("encode");
    let mut out = Vec::new();
    RtpHeader {
        marker: i == 0,
        payload_type: 0,
        sequence: 2000 + i,
        timestamp: 16_000 + u32::from(i) * 160,
        ssrc: Ssrc(0x5151),
    }
    .write(&payload, &mut out);
    out
}

/// Frame `i` of something speech-like: three partials whose level swings between −26 and
/// −20 dBFS at a syllable rate of 3 Hz.
fn speech_frame(i: usize) -> Vec<i16> {
    (0..160)
        .map(|k| {
            let t = (i * 160 + k) as f64 / 8000.0;
            let envelope = 0.5 + 0.5 * (2.0 * std::f64::consts::PI * 3.0 * t).sin().abs();
            let partials: f64 = [300.0, 700.0, 1200.0]
                .iter()
                .map(|f| (2.0 * std::f64::consts::PI * f * t).sin())
                .sum();
            (envelope * 1100.0 * partials).round() as i16
        })
        .collect()
}

/// Uniform noise in `-peak..=peak` (RMS = peak / √3).
fn noise_frame(rng: &mut crate::media::test_rng::XorShift, peak: i16) -> Vec<i16> {
    let span = 2 * u64::from(peak.unsigned_abs()) + 1;
    (0..160)
        .map(|_| (rng.below(span) as i64 - i64::from(peak)) as i16)
        .collect()
}

/// Feeds leg A one frame every 20 ms from `from` (frame index), ticking after each, and
/// returns the events with the time they came out.
fn feed_a(
    p: &mut Pipeline,
    t0: Instant,
    from: usize,
    frames: &[Vec<i16>],
    enc: &mut Box<dyn Encoder>,
) -> Vec<(Instant, MediaEvent)> {
    let mut events = Vec::new();
    for (k, pcm) in frames.iter().enumerate() {
        let i = from + k;
        let now = t0 + FRAME * i as u32;
        let mut pkt = pcmu_packet(i as u16, pcm, enc);
        p.on_rtp(now, Leg::A, &mut pkt);
        p.on_timeout(now);
        events.extend(std::iter::from_fn(|| p.poll_event()).map(|e| (now, e)));
        transmits(p);
    }
    events
}

fn silences(events: &[(Instant, MediaEvent)]) -> Vec<(Instant, Leg)> {
    events
        .iter()
        .filter_map(|(t, e)| match e {
            MediaEvent::Silence { leg } => Some((*t, *leg)),
            _ => None,
        })
        .collect()
}

#[test]
fn the_silence_threshold_is_minus_45_dbfs_as_rms_dbfs_reads_it() {
    for (level, quiet) in [(-44.0, false), (-46.0, true), (-20.0, false)] {
        let tone = sine(440.0, 8000, level, 160);
        assert_eq!(is_quiet(&tone), quiet, "{level} dBFS");
        let measured = crate::media::analysis::rms_dbfs(&tone);
        assert_eq!(measured < SILENCE_THRESHOLD_DBFS, quiet, "{measured}");
    }
    assert!(is_quiet(&[0; 160]));
}

#[test]
fn silence_after_speech_is_reported_once_after_the_time_asked_while_relaying() {
    let t0 = Instant::now();
    let mut p = pipeline(t0, PCMU, PCMU);
    assert!(p.clock.is_none(), "a relayed call decodes nothing");
    p.command(
        t0,
        MediaCommand::DetectSilence {
            leg: Leg::A,
            after: Some(Duration::from_secs(1)),
        },
    );
    assert!(p.clock.is_some(), "detection needs the frame clock");
    let mut enc = codec::encoder(CodecKind::Pcmu, 8000).expect("encoder");
    // 1.5 s of speech (longer than `after`: speech keeps resetting the count)…
    let speech: Vec<_> = (0..75).map(speech_frame).collect();
    let mut forwarded = 0;
    for (i, pcm) in speech.iter().enumerate() {
        let now = t0 + FRAME * i as u32;
        let mut pkt = pcmu_packet(i as u16, pcm, &mut enc);
        if p.on_rtp(now, Leg::A, &mut pkt) == RtpAction::Forward {
            forwarded += 1;
        }
        p.on_timeout(now);
        transmits(&mut p);
    }
    assert_eq!(
        forwarded, 75,
        "the audio is still relayed while it is listened to"
    );
    assert!(
        silences(
            &std::iter::from_fn(|| p.poll_event())
                .map(|e| (t0, e))
                .collect::<Vec<_>>()
        )
        .is_empty()
    );
    // …then 3 s of silence.
    let quiet = vec![vec![0i16; 160]; 150];
    let events = feed_a(&mut p, t0, 75, &quiet, &mut enc);
    let found = silences(&events);
    assert_eq!(found.len(), 1, "exactly one Silence: {found:?}");
    let (at, leg) = found[0];
    assert_eq!(leg, Leg::A);
    let silence_from = t0 + FRAME * 75;
    let after = at.duration_since(silence_from);
    assert!(
        after >= Duration::from_secs(1) && after <= Duration::from_millis(1200),
        "reported {after:?} after the speech ended (1 s + the jitter buffer's delay)"
    );
    // Disarmed once reported: no frame clock left on a relayed call.
    assert!(p.clock.is_none());
    assert_eq!(p.report().frames_skipped, 0);
    assert_eq!(p.report().frames_late, 0);
}

#[test]
fn noise_above_the_threshold_is_not_silence_and_hiss_below_it_is() {
    let t0 = Instant::now();
    let mut rng = crate::media::test_rng::XorShift(0x9e37_79b9_7f4a_7c15);
    let mut enc = codec::encoder(CodecKind::Pcmu, 8000).expect("encoder");
    // ±505 uniform: RMS 292, −38 dBFS.
    let mut p = pipeline(t0, PCMU, PCMU);
    let after = Some(Duration::from_millis(500));
    p.command(t0, MediaCommand::DetectSilence { leg: Leg::A, after });
    let loud: Vec<_> = (0..150).map(|_| noise_frame(&mut rng, 505)).collect();
    let events = feed_a(&mut p, t0, 0, &loud, &mut enc);
    assert!(
        silences(&events).is_empty(),
        "−38 dBFS of noise is not silence"
    );
    assert!(p.clock.is_some(), "still armed");
    // ±100 uniform: RMS 58, −52 dBFS: line hiss.
    let mut p = pipeline(t0, PCMU, PCMU);
    p.command(t0, MediaCommand::DetectSilence { leg: Leg::A, after });
    let hiss: Vec<_> = (0..150).map(|_| noise_frame(&mut rng, 100)).collect();
    let events = feed_a(&mut p, t0, 0, &hiss, &mut enc);
    assert_eq!(silences(&events).len(), 1, "−52 dBFS of hiss is silence");
}

#[test]
fn silence_detection_disarmed_with_none_reports_nothing_and_watches_one_leg() {
    let t0 = Instant::now();
    let mut p = pipeline(t0, PCMU, PCMU);
    let after = Some(Duration::from_millis(200));
    p.command(t0, MediaCommand::DetectSilence { leg: Leg::B, after });
    p.command(
        t0,
        MediaCommand::DetectSilence {
            leg: Leg::B,
            after: None,
        },
    );
    assert!(p.clock.is_none(), "disarmed: nothing to tick for");
    p.command(t0, MediaCommand::DetectSilence { leg: Leg::B, after });
    let mut events = Vec::new();
    // Leg A talks all along; leg B sends nothing at all, which is silence too.
    let mut enc = codec::encoder(CodecKind::Pcmu, 8000).expect("encoder");
    let speech: Vec<_> = (0..50).map(speech_frame).collect();
    events.extend(feed_a(&mut p, t0, 0, &speech, &mut enc));
    let found = silences(&events);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].1, Leg::B);
    assert_eq!(found[0].0, t0 + FRAME * 9, "ten quiet frames of 20 ms");
}

/// Stops the pipeline's recording at `now` and waits for its summary.
fn stop_recording(p: &mut Pipeline, now: Instant) -> crate::media::recorder::RecordingSummary {
    p.command(now, MediaCommand::StopRecording);
    p.poll_stopped_recording()
        .expect("stopped")
        .stop()
        .wait_blocking()
        .expect("summary")
}

/// The samples of a WAV file (interleaved when stereo).
fn wav_samples(path: &std::path::Path) -> Vec<i16> {
    hound::WavReader::open(path)
        .expect("wav")
        .samples::<i16>()
        .collect::<Result<_, _>>()
        .expect("samples")
}

fn recorder_pool() -> crate::media::recorder::RecorderPool {
    crate::media::recorder::RecorderPool::new(crate::media::recorder::PoolConfig {
        queue_capacity: 4096,
        buffers_per_recording: 512,
    })
    .expect("recorder pool")
}

fn caller_only(dir: &std::path::Path) -> crate::media::recorder::RecordingSpec {
    crate::media::recorder::RecordingSpec {
        data_dir: dir.to_path_buf(),
        recording_id: crate::store::RecordingId::new(),
        session_id: crate::store::SessionId::new(),
        call_id: crate::store::CallId::new(),
        started_ms: 1_700_000_000_000,
        sample_rate: 8000,
        mode: crate::media::recorder::ChannelMode::CallerOnly,
        mixed_companion: false,
    }
}

#[test]
fn while_the_callee_consults_in_a_room_the_recording_holds_the_consultation() {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = recorder_pool();
    let rooms = super::super::conference::Rooms::default();
    let room = rooms.get_or_create("transfer:rec");
    let mut p = pipeline(t0, PCMU, PCMU);
    let mut spec = caller_only(dir.path());
    spec.mode = crate::media::recorder::ChannelMode::Stereo;
    p.command(
        t0,
        MediaCommand::StartRecording(pool.start(spec).expect("recording")),
    );
    p.command(
        t0,
        MediaCommand::JoinConference {
            room: room.clone(),
            leg: Leg::B,
        },
    );
    // The consultation call: one leg in the same room, saying a 1 kHz tone.
    let mut c = Pipeline::new(PipelineConfig::default(), t0);
    c.command(
        t0,
        MediaCommand::SetMedia {
            leg: Leg::A,
            media: Some(PCMU),
        },
    );
    c.command(
        t0,
        MediaCommand::JoinConference {
            room: room.clone(),
            leg: Leg::A,
        },
    );
    let mut enc = codec::encoder(CodecKind::Pcmu, 8000).expect("encoder");
    let tone = sine(1000.0, 8000, -12.0, 160 * 50);
    for (k, pcm) in tone.chunks(160).enumerate() {
        let now = t0 + FRAME * k as u32;
        let mut pkt = pcmu_packet(k as u16, pcm, &mut enc);
        c.on_rtp(now, Leg::A, &mut pkt);
        c.on_timeout(now);
        p.on_timeout(now);
    }
    let summary = stop_recording(&mut p, t0 + FRAME * 50);
    assert_eq!(summary.channels, 2);
    let samples = wav_samples(&summary.path);
    let right: Vec<i16> = samples.iter().skip(1).step_by(2).copied().collect();
    let left: Vec<i16> = samples.iter().step_by(2).copied().collect();
    let rate = summary.sample_rate as usize;
    let window = &right[rate * 2 / 5..rate * 9 / 10];
    let f = crate::media::analysis::dominant_frequency(window, summary.sample_rate)
        .expect("the consultation on the right");
    assert!((f - 1000.0).abs() < 10.0, "{f}");
    assert!(left.iter().all(|&x| x == 0), "the caller said nothing");
}

#[test]
fn stop_recording_hands_the_recorder_back_and_a_later_recording_starts_afresh() {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = recorder_pool();
    let mut p = pipeline(t0, PCMU, PCMU);
    p.command(t0, MediaCommand::StopRecording);
    assert!(p.poll_stopped_recording().is_none(), "nothing to stop");
    let first = pool.start(caller_only(dir.path())).expect("first");
    let first_path = first.path().to_path_buf();
    p.command(t0, MediaCommand::StartRecording(first));
    for i in 0..10u32 {
        p.on_timeout(t0 + FRAME * i);
    }
    p.command(t0 + FRAME * 10, MediaCommand::StopRecording);
    let stopped = p.poll_stopped_recording().expect("handed back");
    assert!(p.poll_stopped_recording().is_none());
    assert!(
        p.clock.is_none(),
        "a relayed call stops ticking once not recording"
    );
    assert_eq!(stopped.frames(), 10);
    let summary = stopped.stop().wait_blocking().expect("summary");
    assert_eq!((summary.path.clone(), summary.frames), (first_path, 10));
    assert_eq!(summary.channels, 1);

    // A second recording, then a third replacing it (the second is handed back too).
    let second = pool.start(caller_only(dir.path())).expect("second");
    let second_path = second.path().to_path_buf();
    p.command(t0 + FRAME * 20, MediaCommand::StartRecording(second));
    for i in 20..25u32 {
        p.on_timeout(t0 + FRAME * i);
    }
    let third = pool.start(caller_only(dir.path())).expect("third");
    p.command(t0 + FRAME * 25, MediaCommand::StartRecording(third));
    let replaced = p
        .poll_stopped_recording()
        .expect("replaced one handed back");
    assert_eq!(replaced.path(), second_path);
    assert_eq!(replaced.frames(), 5);
    for i in 25..28u32 {
        p.on_timeout(t0 + FRAME * i);
    }
    let running = p.take_recorder().expect("the third runs");
    assert_eq!(running.frames(), 3);
    replaced.stop().wait_blocking().expect("second summary");
    running.stop().wait_blocking().expect("third summary");
}

#[test]
fn with_only_the_caller_leg_up_digits_prompts_and_a_voicemail_work_and_the_relay_starts_later() {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = recorder_pool();
    let mut p = Pipeline::new(
        PipelineConfig {
            inband_dtmf: true,
            ..PipelineConfig::default()
        },
        t0,
    );
    p.command(
        t0,
        MediaCommand::SetMedia {
            leg: Leg::A,
            media: Some(PCMU),
        },
    );
    // A greeting with barge-in: played to the caller, frame by frame.
    p.command(
        t0,
        MediaCommand::Play {
            leg: Leg::A,
            id: 1,
            source: PlaySource::Prompt {
                pcm: Arc::from(sine(500.0, 8000, -12.0, 16_000)),
                rate: 8000,
                looped: false,
            },
            barge_in: true,
        },
    );
    let mut sent = Vec::new();
    for i in 0..5u32 {
        p.on_timeout(t0 + FRAME * i);
        sent.extend(transmits(&mut p));
    }
    assert!(sent.iter().all(|t| t.leg == Leg::A));
    assert_eq!(
        sent.iter().filter(|t| !t.rtcp).count(),
        5,
        "the prompt plays"
    );
    // "4" by RFC 4733: reported, barges in, relayed nowhere.
    for i in 0..4u16 {
        let end = if i == 3 { 0x80 } else { 0 };
        let duration = 160 * (i + 1);
        let mut pkt = rfc4733_packet(i, 4, end, duration);
        let now = t0 + FRAME * (5 + u32::from(i));
        assert_eq!(p.on_rtp(now, Leg::A, &mut pkt), RtpAction::Consume);
        p.on_timeout(now);
    }
    // "#" by SIP INFO.
    p.digit_from_info(t0 + FRAME * 9, Leg::A, Digit::Hash, DEFAULT_DIGIT);
    let events: Vec<_> = std::iter::from_fn(|| p.poll_event()).collect();
    assert_eq!(
        events,
        [
            MediaEvent::Digit {
                leg: Leg::A,
                digit: Digit::D4,
                source: DigitSource::Rfc4733
            },
            MediaEvent::PlaybackFinished {
                leg: Leg::A,
                id: 1,
                interrupted: true
            },
            MediaEvent::Digit {
                leg: Leg::A,
                digit: Digit::Hash,
                source: DigitSource::SipInfo
            },
        ]
    );
    assert!(transmits(&mut p).iter().all(|t| t.leg == Leg::A));

    // A voicemail: the caller alone, in mono.
    let rec = pool.start(caller_only(dir.path())).expect("voicemail");
    p.command(t0 + FRAME * 10, MediaCommand::StartRecording(rec));
    let mut enc = codec::encoder(CodecKind::Pcmu, 8000).expect("encoder");
    let tone = sine(1000.0, 8000, -12.0, 160 * 60);
    for (k, pcm) in tone.chunks(160).enumerate() {
        let now = t0 + FRAME * (10 + k as u32);
        let mut pkt = pcmu_packet(k as u16, pcm, &mut enc);
        assert_eq!(p.on_rtp(now, Leg::A, &mut pkt), RtpAction::Consume);
        p.on_timeout(now);
    }
    let summary = stop_recording(&mut p, t0 + FRAME * 70);
    assert_eq!((summary.channels, summary.frames), (1, 60));
    let samples = wav_samples(&summary.path);
    let f = crate::media::analysis::dominant_frequency(&samples[160 * 20..], 8000)
        .expect("the caller's tone");
    assert!((f - 1000.0).abs() < 5.0, "{f}");

    // Later the IVR dials an agent: leg B gets its media and the relay starts both ways.
    p.command(
        t0 + FRAME * 80,
        MediaCommand::SetMedia {
            leg: Leg::B,
            media: Some(LegMedia {
                payload_type: 0,
                ..PCMU
            }),
        },
    );
    assert!(!p.is_transcoding());
    let now = t0 + FRAME * 81;
    let mut pkt = pcmu_packet(100, &tone[..160], &mut enc);
    assert_eq!(p.on_rtp(now, Leg::A, &mut pkt), RtpAction::Forward);
    let mut pkt = pcmu_packet(7, &tone[..160], &mut enc);
    assert_eq!(p.on_rtp(now, Leg::B, &mut pkt), RtpAction::Forward);
}

#[test]
fn in_band_digits_are_detected_with_only_the_caller_leg_up() {
    let t0 = Instant::now();
    let mut p = Pipeline::new(
        PipelineConfig {
            inband_dtmf: true,
            ..PipelineConfig::default()
        },
        t0,
    );
    let plain = LegMedia {
        telephone_event: None,
        ..PCMU
    };
    p.command(
        t0,
        MediaCommand::SetMedia {
            leg: Leg::A,
            media: Some(plain),
        },
    );
    let mut pcm = vec![0i16; 800];
    pcm.extend(crate::media::dtmf::dual_tone(
        Digit::D2,
        8000,
        Duration::from_millis(100),
    ));
    pcm.resize(8000, 0);
    let frames: Vec<Vec<i16>> = pcm.chunks(160).map(<[i16]>::to_vec).collect();
    let mut enc = codec::encoder(CodecKind::Pcmu, 8000).expect("encoder");
    let events = feed_a(&mut p, t0, 0, &frames, &mut enc);
    let digits: Vec<_> = events
        .into_iter()
        .filter_map(|(_, e)| match e {
            MediaEvent::Digit { leg, digit, source } => Some((leg, digit, source)),
            _ => None,
        })
        .collect();
    assert_eq!(digits, [(Leg::A, Digit::D2, DigitSource::Inband)]);
}

#[test]
fn late_and_skipped_frames_are_counted_in_the_report() {
    let t0 = Instant::now();
    let mut p = pipeline(t0, PCMU, PCMU);
    p.command(
        t0,
        MediaCommand::Play {
            leg: Leg::A,
            id: 1,
            source: PlaySource::Tone(ToneKind::Ringback),
            barge_in: false,
        },
    );
    for i in 0..10u32 {
        p.on_timeout(t0 + FRAME * i);
    }
    assert_eq!((p.report().frames_late, p.report().frames_skipped), (0, 0));
    // The task wakes 3 frames late (caught up), then a whole second late (skips).
    p.on_timeout(t0 + FRAME * 12);
    assert_eq!(p.report().frames_late, 2);
    assert_eq!(p.report().frames_skipped, 0);
    p.on_timeout(t0 + FRAME * 62);
    let r = p.report();
    assert_eq!(
        r.frames_late,
        2 + 4,
        "five frames back to back, four of them late"
    );
    assert_eq!(r.frames_skipped, 50 - 5);
}
