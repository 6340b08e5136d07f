//! Black-box media tests with SIPp against the built `switchboard` binary: recordings survive a
//! `kill -9` in the middle of 20 calls, and a three-party conference mixes N−1.
//!
//! * `sigkill_during_20_recorded_calls_leaves_repaired_playable_recordings`: `serve
//!   --record-calls`, a registered SIPp callee answering every call (and echoing its RTP), a SIPp
//!   caller placing 20 concurrent calls that stream a tone (`uac_stream.xml`, `rtp_stream`).
//!   Once the database shows 20 answered calls with 20 recordings, the calls run a few seconds
//!   and the server gets SIGKILL; SIPp is killed too and the server restarted on the same data
//!   directory and ports. Then every recordings row is `repaired`, every WAV opens in `soxi`
//!   and in hound with the same length as the row's `duration_ms`, that length is within 1 s of
//!   the truth (kill time − the recording's `started_ms`: the header is refreshed every second
//!   of audio and repair goes by the file's size), and every call row is closed (`ended_ms`).
//! * `three_party_conference_each_hears_the_other_two`: parties 1001, 2001 and 3001 dial `*8100`
//!   one after the other, each streaming its own tone. One `tshark` capture on `lo` of the
//!   server's RTP port range records what the server sends each party (RTP from the server port
//!   named in that party's 200 OK). Over the time when all three are in the room (from one
//!   second after the last one started talking, past the join chimes, until the first one
//!   stops), each party's decoded PCMU holds the other two tones and its own ≥ 20 dB below them.
//!
//! Without `sipp` (or `sox`, or a working `tshark` capture for the conference) the tests print a
//! notice and pass, unless `CI` is set, where that is a failure.
#![allow(clippy::disallowed_methods)] // a test measures real time, not the server's clock

mod sipp_harness;

use sipp_harness::capture::{Capture, have_tools};

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use sqlx::Connection;
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteRow};
use switchboard::media::analysis::tone_power_db;
use switchboard::media::codec::g711::ulaw_to_linear;

use sipp_harness::*;

/// Calls placed at once in the crash test.
const CALLS: usize = 20;
/// How long the answered calls run before the kill.
const RUN_BEFORE_KILL: Duration = Duration::from_secs(4);
/// Bound on waiting for all calls to be answered and recorded.
const ANSWER_DEADLINE: Duration = Duration::from_secs(40);
/// What the 20 callers say.
const CALL_TONE: f64 = 500.0;
/// A repaired recording may be this much shorter or longer than the wall-clock truth.
const DURATION_TOLERANCE_MS: i64 = 1000;

/// Tones of the three conference parties: no one's frequency is a low-order intermodulation
/// product of the other two (500/1100/1700 would be: 2·1100 − 1700 = 500).
const TONES: [f64; 3] = [500.0, 1100.0, 1900.0];
const TONE_DBFS: i32 = -12;
/// How long each conference party talks.
const PARTY_HOLD_MS: u32 = 8000;
/// Skipped after the last party starts talking: its join chime and the mixer's queue.
const AFTER_LAST_JOIN: f64 = 1.0;
/// Skipped before the first party stops talking.
const BEFORE_FIRST_LEAVE: f64 = 0.3;
/// At least this much audio with all three in the room.
const MIN_WINDOW: f64 = 2.0;

/// Writes 5 s of a sine at `freq` Hz, `TONE_DBFS`, as raw 8 kHz µ-law `dir/tone.ul`.
fn make_tone(dir: &Path, freq: f64) {
    fs::create_dir_all(dir).expect("tone directory");
    let out = Command::new("sox")
        .args(["-n", "-r", "8000", "-c", "1", "-t", "ul"])
        .arg(dir.join("tone.ul"))
        .args(["synth", "5", "sine", &freq.to_string()])
        .args(["vol", &format!("{TONE_DBFS}dB")])
        .output()
        .expect("run sox");
    assert!(
        out.status.success(),
        "sox failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// The database, read with sqlx (read-only) while or after the server runs.

fn db_path(server: &Server) -> PathBuf {
    server.data_dir().join("switchboard.db")
}

/// Rows of `sql`, or the error (the database may not be there yet).
fn query(db: &Path, sql: &'static str) -> Result<Vec<SqliteRow>, sqlx::Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let options = SqliteConnectOptions::new()
            .filename(db)
            .read_only(true)
            .busy_timeout(Duration::from_secs(5));
        let mut conn = SqliteConnection::connect_with(&options).await?;
        let rows = sqlx::query(sql).fetch_all(&mut conn).await;
        let _ = conn.close().await;
        rows
    })
}

fn count(db: &Path, sql: &'static str) -> Option<i64> {
    query(db, sql).ok()?.first()?.try_get(0).ok()
}

// ---------------------------------------------------------------------------------------------
// 1. kill -9 during 20 recorded calls.

#[test]
fn sigkill_during_20_recorded_calls_leaves_repaired_playable_recordings() {
    if !have_tools(&["sipp", "sox", "soxi"]) {
        return;
    }
    let Some(mut server) = setup_with(&["--record-calls"]) else {
        return;
    };
    let db = db_path(&server);
    let tone_dir = server.dir.path().join("tone");
    make_tone(&tone_dir, CALL_TONE);
    register_callee(&server);

    let callee_media = server.ports.port(CALLEE_MEDIA).to_string();
    let calls = CALLS.to_string();
    let mut callee = start_callee(
        &server,
        "uas_answer",
        &[
            "-m",
            &calls,
            "-rtp_echo",
            "-timeout",
            "120s",
            "-key",
            "callee_rtp",
            &callee_media,
            "-set",
            "media_file",
            &server
                .dir
                .path()
                .join("callee-media.txt")
                .display()
                .to_string(),
        ]
        .map(String::from),
    );
    let mut callers = SippRun::new(&server, "callers", "uac_stream", CALLER_SIP, CALLER_MEDIA)
        .args(["-s", CALLEE])
        .authenticated_as(CALLER)
        .args(["-m", &calls, "-l", &calls, "-r", &calls])
        .args(["-d", "120000", "-timeout", "120s"])
        .args([
            "-set",
            "media_file",
            &server
                .dir
                .path()
                .join("caller-media.txt")
                .display()
                .to_string(),
        ])
        .cwd(&tone_dir)
        .spawn();

    // All answered and recording, as the database has it.
    let started = Instant::now();
    loop {
        let answered = count(
            &db,
            "SELECT COUNT(*) FROM calls WHERE answered_ms IS NOT NULL",
        );
        let recording = count(
            &db,
            "SELECT COUNT(*) FROM recordings WHERE state = 'recording'",
        );
        if answered == Some(CALLS as i64) && recording == Some(CALLS as i64) {
            break;
        }
        for sipp in [&mut callers, &mut callee] {
            if let Some(status) = sipp.exited() {
                panic!(
                    "SIPp '{}' exited ({status}) before all calls were answered\n{}\n{}",
                    sipp.name,
                    tail(&sipp.files[3], 60),
                    server.logs()
                );
            }
        }
        assert!(
            started.elapsed() < ANSWER_DEADLINE,
            "after {ANSWER_DEADLINE:?}: {answered:?} of {CALLS} calls answered, {recording:?} \
             recordings running\n{}",
            server.logs()
        );
        thread::sleep(POLL);
    }
    // The calls talk for a while (the audio under test), then the crash.
    thread::sleep(RUN_BEFORE_KILL);
    server.assert_running();
    let killed_ms = server.kill_server();
    callers.kill();
    callee.kill();
    server.restart();

    // Every recording repaired, every file playable, each as long as its call ran.
    let rows = query(
        &db,
        "SELECT id, path, state, duration_ms, started_ms, channels, sample_rate FROM recordings",
    )
    .expect("read the recordings table");
    assert_eq!(rows.len(), CALLS, "one recording per answered call");
    let mut report = String::new();
    for row in &rows {
        let id: String = row.get("id");
        let state: String = row.get("state");
        assert_eq!(state, "repaired", "recording {id} after restart");
        let rel: String = row.get("path");
        let path = server.data_dir().join(&rel);
        let duration_ms: Option<i64> = row.get("duration_ms");
        let duration_ms = duration_ms.unwrap_or_else(|| panic!("{id}: no duration_ms"));
        let started_ms: i64 = row.get("started_ms");
        let channels: i64 = row.get("channels");
        let rate: i64 = row.get("sample_rate");

        let reader = hound::WavReader::open(&path)
            .unwrap_or_else(|e| panic!("hound cannot open {}: {e}", path.display()));
        let spec = reader.spec();
        assert_eq!(i64::from(spec.channels), channels, "{rel}: channels");
        assert_eq!(spec.channels, 2, "{rel}: calls are recorded in stereo");
        assert_eq!(i64::from(spec.sample_rate), rate, "{rel}: sample rate");
        let frames = reader.duration();
        let hound_ms = i64::from(frames) * 1000 / i64::from(spec.sample_rate);
        let samples: Vec<i16> = reader
            .into_samples::<i16>()
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{rel}: unreadable sample: {e}"));
        assert_eq!(
            samples.len() as u64,
            2 * u64::from(frames),
            "{rel}: every sample the header announces is there"
        );
        // The audio is the call's: the caller's tone on the left, its echo from the callee
        // on the right (the second half of the file, well after the answer).
        let half = samples.len() / 4 * 2;
        let mut levels = Vec::new();
        for (channel, name) in [(0, "left (caller)"), (1, "right (callee)")] {
            let pcm: Vec<i16> = samples[half..]
                .iter()
                .skip(channel)
                .step_by(2)
                .copied()
                .collect();
            let level = tone_power_db(&pcm, spec.sample_rate, CALL_TONE);
            levels.push(format!("{level:.1}"));
            assert!(
                level > f64::from(TONE_DBFS) - 8.0,
                "{rel}: {name} channel has the {CALL_TONE} Hz tone at only {level:.1} dBFS"
            );
        }
        let soxi_ms = soxi_duration_ms(&path);
        let truth_ms = killed_ms - started_ms;
        report += &format!(
            "{rel}: row {duration_ms} ms, hound {hound_ms} ms, soxi {soxi_ms} ms, truth {truth_ms} ms, tone L/R {levels:?} dBFS\n"
        );
        assert!(
            (hound_ms - duration_ms).abs() <= 20 && (soxi_ms - duration_ms).abs() <= 20,
            "{rel}: row says {duration_ms} ms, hound {hound_ms} ms, soxi {soxi_ms} ms"
        );
        assert!(
            (duration_ms - truth_ms).abs() <= DURATION_TOLERANCE_MS,
            "{rel}: {duration_ms} ms of audio, but the call was recorded for {truth_ms} ms \
             (kill at {killed_ms}, started {started_ms})\n{report}"
        );
    }
    eprintln!("{report}");

    // Every call record closed at start-up.
    let calls = query(
        &db,
        "SELECT id, ended_ms, hangup_cause, hangup_by FROM calls",
    )
    .expect("read the calls table");
    assert_eq!(calls.len(), CALLS, "one call record per call");
    for call in &calls {
        let id: String = call.get("id");
        let ended: Option<i64> = call.get("ended_ms");
        let cause: Option<String> = call.get("hangup_cause");
        let by: Option<String> = call.get("hangup_by");
        assert!(
            ended.is_some_and(|e| e >= killed_ms),
            "call {id} not closed at start-up (ended_ms {ended:?}, killed at {killed_ms})"
        );
        assert_eq!(
            (cause.as_deref(), by.as_deref()),
            (Some("server_restart"), Some("system")),
            "call {id}: hangup cause"
        );
    }
    let open_legs = count(&db, "SELECT COUNT(*) FROM call_legs WHERE ended_ms IS NULL");
    assert_eq!(open_legs, Some(0), "call legs left open after start-up");
    server.assert_running();
}

/// `soxi -D` of `path`, in ms.
fn soxi_duration_ms(path: &Path) -> i64 {
    let out = Command::new("soxi")
        .arg("-D")
        .arg(path)
        .output()
        .expect("run soxi");
    assert!(
        out.status.success(),
        "soxi cannot open {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let seconds: f64 = text
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("soxi -D said {text:?}: {e}"));
    (seconds * 1000.0).round() as i64
}

// ---------------------------------------------------------------------------------------------
// 2. Three-party conference.

/// The RTP header of a PCMU packet: (sequence number, payload).
fn pcmu(payload: &[u8]) -> Option<(u16, &[u8])> {
    if payload.len() < 12 || payload[0] >> 6 != 2 || payload[1] & 0x7f != 0 {
        return None;
    }
    let csrc = usize::from(payload[0] & 0x0f) * 4;
    let mut start = 12 + csrc;
    if payload[0] & 0x10 != 0 {
        let ext = payload.get(start + 2..start + 4)?;
        start += 4 + usize::from(u16::from_be_bytes([ext[0], ext[1]])) * 4;
    }
    let mut end = payload.len();
    if payload[0] & 0x20 != 0 {
        end = end.checked_sub(usize::from(*payload.last()?))?;
    }
    let seq = u16::from_be_bytes([payload[2], payload[3]]);
    Some((seq, payload.get(start..end)?))
}

#[test]
fn three_party_conference_each_hears_the_other_two() {
    if !have_tools(&["sipp", "sox", "tshark"]) {
        return;
    }
    let Some(server) = setup() else { return };
    let Some(capture) = Capture::start(
        server.dir.path(),
        "conference",
        &format!(
            "udp portrange {}-{}",
            server.ports.rtp_range().0,
            server.ports.rtp_range().1
        ),
    ) else {
        return;
    };
    let parties = [
        (CALLER, CALLER_SIP, CALLER_MEDIA),
        (CALLEE, CALLEE_SIP, CALLEE_MEDIA),
        (UNREGISTERED, OTHER_SIP, OTHER_MEDIA),
    ];
    let hold = PARTY_HOLD_MS.to_string();
    let mut sipps = Vec::new();
    let mut server_ports = Vec::new();
    for (i, (ext, sip, media)) in parties.into_iter().enumerate() {
        let dir = server.dir.path().join(format!("party-{ext}"));
        make_tone(&dir, TONES[i]);
        let media_file = dir.join("media.txt");
        let mut sipp = SippRun::new(&server, &format!("party-{ext}"), "uac_stream", sip, media)
            .args(["-s", "*8100"])
            .authenticated_as(ext)
            .args(["-d", &hold])
            .args(["-set", "media_file", &media_file.display().to_string()])
            .cwd(&dir)
            .spawn();
        // Joined (answered) before the next one dials: a known order of joins.
        let answer = wait_sdp(&media_file, "answer", &mut sipp, &server);
        assert_anchored(&server, &format!("200 OK to {ext}"), &answer, 0);
        server_ports.push(answer.port);
        sipps.push(sipp);
    }
    for sipp in &mut sipps {
        sipp.succeeded(&server);
    }
    let packets = capture.stop();

    // Who says what: RTP to the party's server port; who hears what: RTP from it.
    let said = |port: u16| -> Vec<f64> {
        packets
            .iter()
            .filter(|p| p.dst_port == port && pcmu(&p.payload).is_some())
            .map(|p| p.time)
            .collect()
    };
    let spans: Vec<(f64, f64)> = server_ports
        .iter()
        .map(|&port| {
            let t = said(port);
            assert!(
                t.len() > 100,
                "only {} PCMU packets reached server port {port}\n{}",
                t.len(),
                server.logs()
            );
            (t[0], t[t.len() - 1])
        })
        .collect();
    let from = spans.iter().map(|s| s.0).fold(f64::MIN, f64::max) + AFTER_LAST_JOIN;
    let to = spans.iter().map(|s| s.1).fold(f64::MAX, f64::min) - BEFORE_FIRST_LEAVE;
    assert!(
        to - from >= MIN_WINDOW,
        "all three parties talked together for only {:.2} s (spans {spans:?})",
        to - from
    );

    let mut report = String::new();
    let mut levels = HashMap::new();
    for (i, &port) in server_ports.iter().enumerate() {
        let mut heard: Vec<(u32, Vec<i16>)> = Vec::new();
        let mut seq = ExtendSeq::default();
        for p in packets
            .iter()
            .filter(|p| p.src_port == port && p.time >= from && p.time <= to)
        {
            if let Some((s, audio)) = pcmu(&p.payload) {
                heard.push((
                    seq.extend(s),
                    audio.iter().map(|&c| ulaw_to_linear(c)).collect(),
                ));
            }
        }
        heard.sort_by_key(|(s, _)| *s);
        let pcm: Vec<i16> = heard.into_iter().flat_map(|(_, a)| a).collect();
        let expected = ((to - from) * 8000.0) as usize;
        assert!(
            pcm.len() >= expected * 8 / 10,
            "party {i} (server port {port}) got {} samples in a {:.2} s window",
            pcm.len(),
            to - from
        );
        let db: Vec<f64> = TONES
            .iter()
            .map(|&f| tone_power_db(&pcm, 8000, f))
            .collect();
        report += &format!(
            "party {i} ({} Hz) hears {db:.1?} dBFS at {TONES:?} Hz\n",
            TONES[i]
        );
        levels.insert(i, db);
    }
    eprintln!("window {:.2} s\n{report}", to - from);
    for (i, db) in &levels {
        let others: Vec<f64> = (0..3).filter(|j| j != i).map(|j| db[j]).collect();
        for (j, level) in (0..3).filter(|j| j != i).zip(&others) {
            assert!(
                *level > f64::from(TONE_DBFS) - 10.0,
                "party {i} should hear party {j}'s {} Hz tone (got {level:.1} dBFS)\n{report}",
                TONES[j]
            );
        }
        let quietest = others.iter().copied().fold(f64::MAX, f64::min);
        assert!(
            db[*i] <= quietest - 20.0,
            "party {i} hears its own {} Hz tone at {:.1} dBFS, not 20 dB below the others \
             ({quietest:.1} dBFS)\n{report}",
            TONES[*i],
            db[*i]
        );
    }
}

/// RTP sequence numbers extended across wrap-around (RFC 3550 A.1, simplified).
#[derive(Default)]
struct ExtendSeq {
    last: Option<u32>,
}

impl ExtendSeq {
    fn extend(&mut self, seq: u16) -> u32 {
        let ext = match self.last {
            None => u32::from(seq) + 65_536,
            Some(last) => {
                let cycle = last & !0xffff;
                let candidates = [cycle.wrapping_sub(65_536), cycle, cycle + 65_536]
                    .map(|c| c.wrapping_add(u32::from(seq)));
                candidates
                    .into_iter()
                    .min_by_key(|c| c.abs_diff(last))
                    .unwrap_or(u32::from(seq))
            }
        };
        self.last = Some(self.last.map_or(ext, |l| l.max(ext)));
        ext
    }
}
