//! Black-box media tests: real SIPp parties stream audio and DTMF through the built
//! `switchboard` binary, and the test checks what came out: the call recording (stereo WAV,
//! caller left, callee right), what the other party received on the wire (captured with
//! `tshark` on loopback, parsed here), and the `dtmf.received` events in the database.
//!
//! * Golden audio: the caller streams a 1 kHz tone, the callee a 440 Hz tone (both made with
//!   sox at test time). The recording's row must be complete and match its file; the left
//!   channel must carry 1 kHz and the right 440 Hz at the level sent (±3 dB, frequency ±1 %),
//!   neither carrying the other's tone; each party must receive the other's tone.
//! * DTMF: RFC 4733 events replayed from SIPp's own captures, SIP INFO `application/dtmf-relay`,
//!   and in-band tones from a caller without telephone-event must each be reported exactly, in
//!   order, with their source, and reach the callee as RFC 4733 events; 20 s and more of
//!   espeak-ng speech from that caller must report no digit at all.
//!
//! Audio is SIPp's (`rtp_stream` of raw µ-law files written into its working directory,
//! `play_pcap_audio` of `/usr/share/sip-tester/dtmf_2833_*.pcap`); SIPp sends from and
//! advertises its `-mp` port, which is what tshark watches. Without sipp the tests print a
//! notice and pass (as `tests/sipp.rs`); without sox/espeak-ng, or when loopback cannot be
//! captured (no tshark, no permission), they skip (or skip the capture checks) with a notice,
//! unless `CI=true`, where that is a failure.
//!
//! Completion is polled, never slept for: SIPp's exit, tshark's "capturing" line, and the
//! database rows written after the call's media session stopped (the per-leg media
//! statistics, written after every digit event of the call).
#![allow(clippy::disallowed_methods)] // a test measures real time, not the server's clock

mod sipp_harness;

use sipp_harness::capture::{Capture, Datagram, ci, have_tools};

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::Duration;

use sha2::{Digest, Sha256};
use sipp_harness::*;
use sqlx::Row;
use switchboard::media::analysis::{dominant_frequency, rms_dbfs, tone_power_db};
use switchboard::media::codec::g711::{linear_to_ulaw, ulaw_to_linear};
use switchboard::media::dtmf::{Digit, dual_tone};

/// G.711 sample rate and one 20 ms frame at it.
const RATE: u32 = 8000;
const FRAME: usize = 160;
/// The payload types both SIPp parties offer: PCMU and telephone-event.
const PCMU: u8 = 0;
const TELEPHONE_EVENT: u8 = 101;
/// SIPp's `-timeout` for these calls (the harness default of 20 s is too short for speech).
const SIPP_TIMEOUT: &str = "40s";
/// Frames quieter than this are not part of a tone.
const ACTIVE_DBFS: f64 = -40.0;
/// Frames cut from each end of a tone before it is measured (onsets, concealment tails).
const TRIM_FRAMES: usize = 5;

// ---------------------------------------------------------------------------------------------
// Audio files.

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `seconds` of a sine at `freq` Hz, `gain_db` below sox's full scale, as raw µ-law by sox.
fn sox_tone(path: &Path, freq: u32, seconds: u32, gain_db: i32) -> Vec<u8> {
    run(Command::new("sox")
        .args(["-D", "-n", "-r", "8000", "-c", "1", "-t", "ul"])
        .arg(path)
        .args(["synth", &seconds.to_string(), "sine", &freq.to_string()])
        .args(["vol", &format!("{gain_db}dB")]));
    fs::read(path).expect("read the sox tone")
}

fn silence(seconds: f64) -> Vec<u8> {
    vec![linear_to_ulaw(0); (seconds * f64::from(RATE)) as usize]
}

fn decode(ulaw: &[u8]) -> Vec<i16> {
    ulaw.iter().map(|&b| ulaw_to_linear(b)).collect()
}

/// In-band DTMF as µ-law: 600 ms of silence, then each digit 100 ms at the generator's level
/// with 100 ms of silence after it, then 600 ms of silence.
fn inband_digits(digits: &str) -> Vec<u8> {
    let mut out = silence(0.6);
    for c in digits.chars() {
        let digit = Digit::from_char(c).expect("a DTMF digit");
        let tone = dual_tone(digit, RATE, Duration::from_millis(100));
        out.extend(tone.iter().map(|&s| linear_to_ulaw(s)));
        out.extend(silence(0.1));
    }
    out.extend(silence(0.6));
    out
}

const SPEECH: &str = "Good morning, and thank you for calling the customer service line. \
    Your call may be recorded for training and quality purposes. If you are calling about an \
    order you placed in the last thirty days, please have your order number ready, it starts \
    with four, seven, and has nine digits in total. Our opening hours are eight thirty in the \
    morning until six in the evening, Monday to Friday, and nine until one on Saturdays. \
    Did you know that most questions about deliveries, returns and refunds are answered on \
    our website? Oh, really, you would rather speak to somebody? Of course, no problem at \
    all. Please hold the line, eee, aaah, ooh, hmm, one of our friendly advisers will be with \
    you shortly. Thank you for your patience, and have a lovely day.";

/// Exactly `seconds` of espeak-ng speech as µ-law at 8 kHz (repeated if shorter).
fn speech(dir: &Path, seconds: usize) -> Vec<u8> {
    let wav = dir.join("speech.wav");
    let ul = dir.join("speech.ul");
    run(Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "150", "-w"])
        .arg(&wav)
        .arg(SPEECH));
    run(Command::new("sox")
        .arg(&wav)
        .args(["-r", "8000", "-c", "1", "-t", "ul"])
        .arg(&ul)
        .args(["gain", "-n", "-3"]));
    let once = fs::read(&ul).expect("read the speech");
    assert!(
        once.len() > RATE as usize,
        "espeak-ng made under 1 s of speech"
    );
    let mut out = Vec::new();
    while out.len() < seconds * RATE as usize {
        out.extend_from_slice(&once);
    }
    out.truncate(seconds * RATE as usize);
    out
}

/// The parts of an RTP packet the checks need (RFC 3550 §5.1).
#[derive(Debug)]
struct Rtp<'a> {
    pt: u8,
    timestamp: u32,
    payload: &'a [u8],
}

fn parse_rtp(b: &[u8]) -> Option<Rtp<'_>> {
    if b.len() < 12 || b[0] >> 6 != 2 {
        return None;
    }
    let mut start = 12 + usize::from(b[0] & 0x0f) * 4;
    if b[0] & 0x10 != 0 {
        let words = u16::from_be_bytes([*b.get(start + 2)?, *b.get(start + 3)?]);
        start += 4 + usize::from(words) * 4;
    }
    let mut end = b.len();
    if b[0] & 0x20 != 0 {
        end = end.checked_sub(usize::from(*b.last()?))?;
    }
    Some(Rtp {
        pt: b[1] & 0x7f,
        timestamp: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        payload: b.get(start..end)?,
    })
}

/// RTP packets sent to `port`, in capture order; every one must come from the server's RTP
/// ports (media anchored, never straight from the other party).
fn rtp_to<'a>(server: &Server, capture: &'a [Datagram], port: u16) -> Vec<Rtp<'a>> {
    let (low, high) = server.ports.rtp_range();
    capture
        .iter()
        .filter(|d| d.dst_port == port)
        .inspect(|d| {
            assert!(
                (low..=high).contains(&d.src_port),
                "a datagram to port {port} came from port {}, not from the server's {low}-{high}",
                d.src_port
            )
        })
        .filter_map(|d| parse_rtp(&d.payload))
        .collect()
}

/// The PCMU audio in `packets`, decoded, in arrival order.
fn pcmu_audio(packets: &[Rtp<'_>]) -> Vec<i16> {
    packets
        .iter()
        .filter(|p| p.pt == PCMU)
        .flat_map(|p| decode(p.payload))
        .collect()
}

/// The digits of the RFC 4733 events in `packets` (payload type `pt`): one per event (one RTP
/// timestamp), in order, each required to have been ended (E bit).
fn rfc4733_digits(packets: &[Rtp<'_>]) -> Vec<char> {
    let mut events: Vec<(u32, u8, bool)> = Vec::new();
    for p in packets.iter().filter(|p| p.pt == TELEPHONE_EVENT) {
        let (Some(&code), Some(&flags)) = (p.payload.first(), p.payload.get(1)) else {
            continue;
        };
        let end = flags & 0x80 != 0;
        match events.iter_mut().find(|e| e.0 == p.timestamp) {
            Some(e) => {
                assert_eq!(
                    e.1, code,
                    "one RFC 4733 event (timestamp) changed its digit"
                );
                e.2 |= end;
            }
            None => events.push((p.timestamp, code, end)),
        }
    }
    events
        .iter()
        .map(|&(ts, code, end)| {
            assert!(
                end,
                "RFC 4733 event {code} (timestamp {ts}) was never ended"
            );
            Digit::from_event(code).map_or('?', Digit::as_char)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The server's database.

impl Db {
    fn count(&mut self, sql: &'static str) -> i64 {
        let row = self
            .rt
            .block_on(sqlx::query(sql).fetch_one(&mut self.conn))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        row.get(0)
    }

    /// Polls (bounded) until the call's media session has ended and everything it reported
    /// is written: the per-leg media statistics come last, after the call's digit events.
    fn wait_call_finished(&mut self, server: &Server) {
        let sql = "SELECT COUNT(*) FROM call_legs WHERE rtp_packets_received IS NOT NULL";
        for _ in 0..READY_TRIES {
            if self.count(sql) >= 2 {
                return;
            }
            thread::sleep(POLL);
        }
        panic!(
            "the call's media statistics were never written\n{}",
            server.logs()
        );
    }

    /// The `dtmf.received` events: (digit, leg, source), in order.
    fn digits(&mut self) -> Vec<(String, String, String)> {
        let rows = self
            .rt
            .block_on(
                sqlx::query("SELECT data FROM events WHERE kind = 'dtmf.received' ORDER BY seq")
                    .fetch_all(&mut self.conn),
            )
            .expect("read events");
        rows.iter()
            .map(|r| {
                let data: String = r.get(0);
                let v: serde_json::Value = serde_json::from_str(&data).expect("event data is JSON");
                let field = |k: &str| v[k].as_str().unwrap_or_default().to_string();
                (field("digit"), field("leg"), field("source"))
            })
            .collect()
    }

    /// Every recordings row as column → text (NULL as "NULL").
    fn recordings(&mut self) -> Vec<HashMap<String, String>> {
        let rows = self
            .rt
            .block_on(
                sqlx::query(
                    "SELECT id, call_id, path, state, CAST(channels AS TEXT), \
                     CAST(sample_rate AS TEXT), CAST(duration_ms AS TEXT), \
                     CAST(size_bytes AS TEXT), sha256, CAST(started_ms AS TEXT), \
                     CAST(ended_ms AS TEXT), CAST(dropped_frames AS TEXT) FROM recordings",
                )
                .fetch_all(&mut self.conn),
            )
            .expect("read recordings");
        let names = [
            "id",
            "call_id",
            "path",
            "state",
            "channels",
            "sample_rate",
            "duration_ms",
            "size_bytes",
            "sha256",
            "started_ms",
            "ended_ms",
            "dropped_frames",
        ];
        rows.iter()
            .map(|r| {
                names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| {
                        let v: Option<String> = r.get(i);
                        (n.to_string(), v.unwrap_or_else(|| "NULL".into()))
                    })
                    .collect()
            })
            .collect()
    }

    /// RTP packets the server received from the party of the leg with this role.
    fn packets_received(&mut self, role: &str) -> i64 {
        let row = self
            .rt
            .block_on(
                sqlx::query("SELECT rtp_packets_received FROM call_legs WHERE role = ?")
                    .bind(role)
                    .fetch_one(&mut self.conn),
            )
            .unwrap_or_else(|e| panic!("call_legs row of the {role}: {e}"));
        row.get::<Option<i64>, _>(0).unwrap_or(0)
    }

    fn call_ids(&mut self) -> Vec<String> {
        let rows = self
            .rt
            .block_on(sqlx::query("SELECT id FROM calls").fetch_all(&mut self.conn))
            .expect("read calls");
        rows.iter().map(|r| r.get(0)).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// One call between two SIPp parties.

/// What to run: the caller's scenario and audio files, and how long the caller holds.
struct CallPlan<'a> {
    caller_scenario: &'a str,
    caller_audio: Option<&'a [u8]>,
    callee_audio: &'a [u8],
    /// Files copied into SIPp's working directory (for `play_pcap_audio`).
    copies: &'a [PathBuf],
    hold: Duration,
    /// Capture what the parties receive.
    capture: bool,
}

/// Registers the callee, writes the audio files, captures both SIPp media ports (if it
/// can), runs the call to completion and waits for its rows. Returns the capture, if any.
fn run_call(server: &Server, plan: &CallPlan<'_>) -> Option<Vec<Datagram>> {
    register_callee(server);
    let dir = server.dir.path();
    if let Some(audio) = plan.caller_audio {
        fs::write(dir.join("caller_audio.ul"), audio).expect("write caller audio");
    }
    fs::write(dir.join("callee_audio.ul"), plan.callee_audio).expect("write callee audio");
    for file in plan.copies {
        let name = file.file_name().expect("a file name");
        fs::copy(file, dir.join(name)).unwrap_or_else(|e| panic!("copy {}: {e}", file.display()));
    }
    let media = [
        server.ports.port(CALLER_MEDIA),
        server.ports.port(CALLEE_MEDIA),
    ];
    let capture = plan
        .capture
        .then(|| Capture::start(dir, "capture", &udp_ports(&media)))
        .flatten();
    let mut callee = start_callee(
        server,
        "uas_audio",
        &["-timeout".into(), SIPP_TIMEOUT.into()],
    );
    SippRun::new(
        server,
        "caller",
        plan.caller_scenario,
        CALLER_SIP,
        CALLER_MEDIA,
    )
    .args(["-s", CALLEE])
    .authenticated_as(CALLER)
    .args(["-d", &plan.hold.as_millis().to_string()])
    .args(["-timeout", SIPP_TIMEOUT])
    .succeeds();
    callee.succeeded(server);
    capture.map(Capture::stop)
}

// ---------------------------------------------------------------------------------------------
// Audio checks.

/// The longest run of 20 ms frames louder than [`ACTIVE_DBFS`], less [`TRIM_FRAMES`] at each
/// end.
fn tone_segment(pcm: &[i16]) -> &[i16] {
    let active: Vec<bool> = pcm
        .chunks_exact(FRAME)
        .map(|f| rms_dbfs(f) > ACTIVE_DBFS)
        .collect();
    let (mut best, mut start) = ((0, 0), 0);
    for (i, &a) in active.iter().chain([&false]).enumerate() {
        if !a {
            if i - start > best.1 - best.0 {
                best = (start, i);
            }
            start = i + 1;
        }
    }
    let (from, to) = (best.0 + TRIM_FRAMES, best.1.saturating_sub(TRIM_FRAMES));
    if to <= from {
        return &[];
    }
    &pcm[from * FRAME..to * FRAME]
}

/// What a check expects of one tone.
struct Tone {
    freq: f64,
    level_dbfs: f64,
    seconds: f64,
}

/// The median over 200 ms windows of the power at `freq`: an adaptive jitter buffer may
/// insert a concealed frame when the sender's pacing jitters (SIPp's does, by up to 16 ms), and
/// the phase jump that makes must not read as a weaker tone.
fn median_tone_power(pcm: &[i16], freq: f64) -> f64 {
    let mut powers: Vec<f64> = pcm
        .chunks_exact(10 * FRAME)
        .map(|w| tone_power_db(w, RATE, freq))
        .collect();
    powers.sort_by(f64::total_cmp);
    powers
        .get(powers.len() / 2)
        .copied()
        .unwrap_or(f64::NEG_INFINITY)
}

/// `pcm` (one channel, or what a party received) carries `want` and not `not`.
fn assert_tone(what: &str, pcm: &[i16], want: &Tone, not: &Tone) {
    let segment = tone_segment(pcm);
    let seconds = segment.len() as f64 / f64::from(RATE);
    assert!(
        seconds >= want.seconds - 0.5,
        "{what}: the {} Hz tone lasts {seconds:.2} s, sent {:.2} s",
        want.freq,
        want.seconds
    );
    let freq = dominant_frequency(segment, RATE).unwrap_or(0.0);
    let level = rms_dbfs(segment);
    let power = median_tone_power(segment, want.freq);
    let wrong = tone_power_db(segment, RATE, not.freq);
    eprintln!(
        "{what}: {seconds:.2} s at {freq:.2} Hz, {level:.2} dBFS ({:.2} dB at {} Hz, {wrong:.2} dB at {} Hz)",
        power, want.freq, not.freq
    );
    assert!(
        (freq - want.freq).abs() <= want.freq * 0.01,
        "{what}: dominant frequency {freq:.2} Hz, sent {} Hz",
        want.freq
    );
    for (name, got) in [("RMS level", level), ("tone power", power)] {
        assert!(
            (got - want.level_dbfs).abs() <= 3.0,
            "{what}: {name} {got:.2} dBFS, sent {:.2} dBFS",
            want.level_dbfs
        );
    }
    assert!(
        wrong < not.level_dbfs - 30.0,
        "{what}: carries the other party's {} Hz tone at {wrong:.2} dBFS",
        not.freq
    );
}

/// The recording row is complete and matches its file; returns the file's path.
fn assert_recording_row(server: &Server, db: &mut Db) -> PathBuf {
    let mut rows = Vec::new();
    for _ in 0..READY_TRIES {
        rows = db.recordings();
        if rows.iter().all(|r| r["state"] != "recording") && !rows.is_empty() {
            break;
        }
        thread::sleep(POLL);
    }
    assert_eq!(rows.len(), 1, "one recording per answered call: {rows:?}");
    let row = &rows[0];
    assert_eq!(row["state"], "complete", "recording row {row:?}");
    assert_eq!(row["channels"], "2", "stereo: {row:?}");
    assert_eq!(row["sample_rate"], "8000", "{row:?}");
    assert_eq!(row["dropped_frames"], "0", "{row:?}");
    assert_eq!(
        db.call_ids(),
        vec![row["call_id"].clone()],
        "the recording names the call"
    );
    let num = |k: &str| -> i64 {
        row[k]
            .parse()
            .unwrap_or_else(|_| panic!("{k} not set: {row:?}"))
    };
    assert!(num("ended_ms") >= num("started_ms"), "{row:?}");
    let rel = Path::new(&row["path"]);
    assert!(rel.is_relative(), "path relative to the data dir: {row:?}");
    let path = server.dir.path().join("data").join(rel);
    let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(num("size_bytes"), bytes.len() as i64, "size_bytes: {row:?}");
    assert_eq!(
        row["sha256"],
        hex::encode(Sha256::digest(&bytes)),
        "sha256 of {}",
        path.display()
    );
    let reader = hound::WavReader::open(&path).expect("the recording is a WAV file");
    let frames = i64::from(reader.duration());
    let duration = num("duration_ms");
    assert!(
        (frames * 1000 / i64::from(RATE) - duration).abs() <= 40,
        "duration_ms {duration} but the file holds {frames} frames"
    );
    path
}

/// The recording's channels (left, right).
fn read_stereo(path: &Path) -> (Vec<i16>, Vec<i16>) {
    let mut reader = hound::WavReader::open(path).expect("open the recording");
    let spec = reader.spec();
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (2, RATE, 16),
        "stereo 16-bit at 8 kHz"
    );
    let samples: Vec<i16> = reader
        .samples::<i16>()
        .collect::<Result<_, _>>()
        .expect("WAV samples");
    let left = samples.iter().step_by(2).copied().collect();
    let right = samples.iter().skip(1).step_by(2).copied().collect();
    (left, right)
}

#[test]
fn tones_are_recorded_caller_left_callee_right_and_reach_the_other_party() {
    if !have_tools(&["sipp", "sox"]) {
        return;
    }
    let Some(server) = setup_with(&["--record-calls"]) else {
        return;
    };
    let dir = server.dir.path();
    let seconds = 3;
    let caller_audio = sox_tone(&dir.join("tone1000.ul"), 1000, seconds, -10);
    let callee_audio = sox_tone(&dir.join("tone440.ul"), 440, seconds, -16);
    let sent = |ulaw: &[u8], freq: f64| Tone {
        freq,
        level_dbfs: rms_dbfs(&decode(ulaw)),
        seconds: f64::from(seconds),
    };
    let (k1000, k440) = (sent(&caller_audio, 1000.0), sent(&callee_audio, 440.0));
    let capture = run_call(
        &server,
        &CallPlan {
            caller_scenario: "uac_audio",
            caller_audio: Some(&caller_audio),
            callee_audio: &callee_audio,
            copies: &[],
            hold: Duration::from_millis(u64::from(seconds) * 1000 + 1500),
            capture: true,
        },
    );
    let mut db = Db::open(&server);
    db.wait_call_finished(&server);
    let path = assert_recording_row(&server, &mut db);
    let (left, right) = read_stereo(&path);
    assert_tone("recording, left (caller)", &left, &k1000, &k440);
    assert_tone("recording, right (callee)", &right, &k440, &k1000);

    if let Some(capture) = capture {
        let at_callee = pcmu_audio(&rtp_to(&server, &capture, server.ports.port(CALLEE_MEDIA)));
        let at_caller = pcmu_audio(&rtp_to(&server, &capture, server.ports.port(CALLER_MEDIA)));
        assert_tone("received by the callee", &at_callee, &k1000, &k440);
        assert_tone("received by the caller", &at_caller, &k440, &k1000);
    }
}

/// The `dtmf.received` events must be exactly `digits`, from the caller, by `source`.
fn assert_digit_events(db: &mut Db, digits: &str, source: &str) {
    let got = db.digits();
    let expected: Vec<(String, String, String)> = digits
        .chars()
        .map(|c| (c.to_string(), "caller".into(), source.into()))
        .collect();
    assert_eq!(got, expected, "dtmf.received events (digit, leg, source)");
}

/// The callee received exactly `digits` as RFC 4733 events.
fn assert_callee_events(server: &Server, capture: Option<Vec<Datagram>>, digits: &str) {
    let Some(capture) = capture else { return };
    let packets = rtp_to(server, &capture, server.ports.port(CALLEE_MEDIA));
    let got: String = rfc4733_digits(&packets).into_iter().collect();
    eprintln!(
        "callee received {} RTP packets; RFC 4733 digits {got:?}",
        packets.len()
    );
    assert_eq!(got, digits, "RFC 4733 events received by the callee");
}

#[test]
fn rfc4733_digits_are_reported_in_order_and_relayed_as_events() {
    if !have_tools(&["sipp"]) {
        return;
    }
    let pcaps: Vec<PathBuf> = ["1", "5", "9", "pound"]
        .iter()
        .map(|d| PathBuf::from(format!("/usr/share/sip-tester/dtmf_2833_{d}.pcap")))
        .collect();
    if let Some(missing) = pcaps.iter().find(|p| !p.is_file()) {
        assert!(!ci(), "CI is set but {} is missing", missing.display());
        eprintln!(
            "NOTICE: skipping, {} missing (sip-tester)",
            missing.display()
        );
        return;
    }
    let Some(server) = setup() else { return };
    let capture = run_call(
        &server,
        &CallPlan {
            caller_scenario: "uac_dtmf_2833",
            caller_audio: None,
            callee_audio: &silence(1.0),
            copies: &pcaps,
            hold: Duration::from_millis(1000),
            capture: true,
        },
    );
    let mut db = Db::open(&server);
    db.wait_call_finished(&server);
    assert_digit_events(&mut db, "159#", "rfc4733");
    assert_callee_events(&server, capture, "159#");
}

#[test]
fn sip_info_digits_are_reported_and_sent_to_the_callee_as_rfc4733() {
    if !have_tools(&["sipp"]) {
        return;
    }
    let Some(server) = setup() else { return };
    let capture = run_call(
        &server,
        &CallPlan {
            caller_scenario: "uac_dtmf_info",
            caller_audio: None,
            callee_audio: &silence(1.0),
            copies: &[],
            hold: Duration::from_millis(2000),
            capture: true,
        },
    );
    let mut db = Db::open(&server);
    db.wait_call_finished(&server);
    assert_digit_events(&mut db, "47*", "sip_info");
    assert_callee_events(&server, capture, "47*");
}

#[test]
fn inband_digits_from_a_caller_without_telephone_event_are_detected_exactly() {
    if !have_tools(&["sipp"]) {
        return;
    }
    let Some(server) = setup() else { return };
    let digits = "123456789*0#";
    let audio = inband_digits(digits);
    let hold = Duration::from_millis((audio.len() as u64 * 1000 / u64::from(RATE)) + 1000);
    let capture = run_call(
        &server,
        &CallPlan {
            caller_scenario: "uac_audio_no_te",
            caller_audio: Some(&audio),
            callee_audio: &silence(1.0),
            copies: &[],
            hold,
            capture: true,
        },
    );
    let mut db = Db::open(&server);
    db.wait_call_finished(&server);
    assert_digit_events(&mut db, digits, "inband");
    assert_callee_events(&server, capture, digits);
}

#[test]
fn twenty_seconds_of_speech_from_a_caller_without_telephone_event_report_no_digit() {
    if !have_tools(&["sipp", "sox", "espeak-ng"]) {
        return;
    }
    let Some(server) = setup() else { return };
    let audio = speech(server.dir.path(), 22);
    let seconds = audio.len() as f64 / f64::from(RATE);
    eprintln!("streaming {seconds:.1} s of espeak-ng speech");
    let hold = Duration::from_millis((seconds * 1000.0) as u64 + 1000);
    run_call(
        &server,
        &CallPlan {
            caller_scenario: "uac_audio_no_te",
            caller_audio: Some(&audio),
            callee_audio: &silence(1.0),
            copies: &[],
            hold,
            capture: false,
        },
    );
    let mut db = Db::open(&server);
    db.wait_call_finished(&server);
    // The speech did reach the server (the detector ran on it), and gave no digit.
    let sent = audio.len() / FRAME;
    let received = db.packets_received("caller");
    assert!(
        received as usize >= sent * 95 / 100,
        "the server received {received} of the {sent} speech packets"
    );
    assert_digit_events(&mut db, "", "inband");
}

/// A capture filter for UDP to or from any of `ports`.
fn udp_ports(ports: &[u16]) -> String {
    ports
        .iter()
        .map(|p| format!("udp port {p}"))
        .collect::<Vec<_>>()
        .join(" or ")
}
