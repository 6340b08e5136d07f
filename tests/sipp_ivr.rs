//! Black-box IVR tests: SIPp callers dial the running `switchboard` and go through the
//! dialplans (issue 4): the demo plan's main menu (`100`) with digits sent as RFC 4733 events
//! and as SIP INFO, during the greeting (barge-in), reaching ring groups answered by SIPp
//! UASes; voicemail (in and after office hours) stored as a mono recording that holds the
//! caller's audio; webhook flows against an HTTP server in the test (steps from the reply, a
//! reply that never comes, a reply that is not JSON); hot reload on file change and SIGHUP
//! keeping the last good plan; and the refusal to start on an invalid plan.
//!
//! Each test points the server at a plan directory of its own (`--config FILE` with
//! `[ivr] dialplans = "DIR"`): the demo plan of `dialplans/` copied with its `calendars.toml`
//! replaced (office always open, or never), or a small plan written here. The prompts stay
//! the crate's `media/` (the server runs from the crate root).
//!
//! Ringing is proved by the UAS itself: `uas_answer.xml` appends the relayed offer to its
//! media file when the INVITE arrives; the test polls that file (the time it appears is how
//! barge-in is measured against the greeting's length). Bridging is proved by the UAS getting
//! the ACK and then the caller's BYE through the server. Everything else is polled (the
//! database, the server log), never slept for.
//!
//! Without `sipp` (or the `sip-tester` DTMF captures, or `sox`) the tests print a notice and
//! pass, unless `CI` is set, where that is a failure. The start-up refusal needs no tool.
#![allow(clippy::disallowed_methods)] // a test measures real time, not the server's clock

mod common;
mod sipp_harness;

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use sipp_harness::capture::{ci, have_tools};
use sipp_harness::*;
use sqlx::Row;
use switchboard::media::analysis::rms_dbfs;
use switchboard::media::codec::g711::{linear_to_ulaw, ulaw_to_linear};

/// The demo plan and the prompts, relative to the crate root (the server's working directory).
const DEMO_PLAN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/dialplans");
const MEDIA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/media");
/// SIPp's RFC 4733 captures (Debian `sip-tester`).
const DTMF_PCAPS: &str = "/usr/share/sip-tester";
/// The demo plan's numbers and extensions.
const MAIN_MENU: &str = "100";
const SUPPORT_FIRST: &str = "2101";
const SUPPORT_SECOND: &str = "2102";
/// G.711 sample rate.
const RATE: u32 = 8000;
/// SIPp's `-timeout` for IVR calls (prompts make them longer than the harness's 20 s).
const SIPP_TIMEOUT: &str = "40s";
/// Audio quieter than this is not the caller's tone.
const ACTIVE_DBFS: f64 = -40.0;
/// The level of the tone the caller sends, dB below sox's full scale.
const TONE_GAIN_DB: i32 = -10;

// ---------------------------------------------------------------------------------------------
// Plans and the server.

/// A plan directory and the config file that points the server at it, deleted on drop.
struct Plan {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Plan {
    /// An empty plan directory `plan/` (filled by the caller) and its config file.
    fn empty() -> Plan {
        let dir = tempfile::tempdir().expect("temporary directory");
        let plan = dir.path().join("plan");
        fs::create_dir_all(&plan).expect("plan dir");
        let config = dir.path().join("switchboard.toml");
        fs::write(
            &config,
            format!("[ivr]\ndialplans = {:?}\n", plan.display().to_string()),
        )
        .expect("write the config file");
        Plan { dir, config }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("plan")
    }

    /// The demo plan of `dialplans/` with the office calendar open during `hours` (none:
    /// always closed).
    fn demo(hours: &[&str]) -> Plan {
        let plan = Plan::empty();
        let entries = fs::read_dir(DEMO_PLAN).expect("read dialplans/");
        let mut copied = 0;
        for entry in entries {
            let path = entry.expect("dialplans/ entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                let name = path.file_name().expect("a file name");
                fs::copy(&path, plan.path().join(name)).expect("copy a dialplan file");
                copied += 1;
            }
        }
        assert!(copied > 0, "no *.toml in {DEMO_PLAN}");
        let hours: Vec<String> = hours.iter().map(|h| format!("{h:?}")).collect();
        plan.write(
            "calendars.toml",
            &format!(
                "[calendars.office]\ntimezone = \"Europe/London\"\nhours = [{}]\n",
                hours.join(", ")
            ),
        );
        plan
    }

    /// Writes one file of the plan atomically (a rename), so a watcher never reads half of it.
    fn write(&self, name: &str, text: &str) {
        let tmp = self.dir.path().join(format!("{name}.tmp"));
        fs::write(&tmp, text).expect("write a plan file");
        fs::rename(&tmp, self.path().join(name)).expect("move the plan file into place");
    }

    fn config_arg(&self) -> String {
        self.config.display().to_string()
    }
}

/// Starts the server on `plan`; None when the test must be skipped. `tools` beyond sipp.
fn start(plan: &Plan, tools: &[&str]) -> Option<Server> {
    if !have_tools(tools) {
        return None;
    }
    setup_with(&["--config", &plan.config_arg()])
}

/// `switchboard user add EXT --password pw-EXT` on the server's database.
fn add_user(server: &Server, ext: &str) {
    let out = Command::new(server_bin())
        .args(["user", "add", ext, "--password", &format!("pw-{ext}")])
        .arg("--data-dir")
        .arg(server.data_dir())
        .output()
        .expect("run switchboard user add");
    assert!(
        out.status.success(),
        "switchboard user add {ext}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A UAS answering as `ext`: registered from `port`, then `uas_answer.xml` listening there.
struct Uas {
    sipp: Sipp,
    media_file: PathBuf,
}

impl Uas {
    /// Registers `ext` from the block offset `port` (run once per extension and server).
    fn register(server: &Server, ext: &str, port: u16, media: u16) {
        SippRun::new(
            server,
            &format!("register-{ext}"),
            "register_ok",
            port,
            media,
        )
        .args(["-s", ext])
        .authenticated_as(ext)
        .succeeds();
    }

    /// Starts the UAS for one call (`name` tells its files apart).
    fn start(server: &Server, name: &str, ext: &str, port: u16, media: u16) -> Uas {
        let media_file = server.dir.path().join(format!("{name}-media.txt"));
        let _ = fs::remove_file(&media_file);
        let mut sipp = SippRun::new(server, name, "uas_answer", port, media)
            .args(["-s", ext])
            .args(["-key", "callee_rtp", &server.ports.port(media).to_string()])
            .args(["-set", "media_file", &media_file.display().to_string()])
            .args(["-timeout", SIPP_TIMEOUT])
            .spawn();
        sipp.wait_listening(server.ports.port(port), server);
        Uas { sipp, media_file }
    }

    /// Whether the INVITE has arrived (the relayed offer is in the media file).
    fn rung(&self) -> bool {
        !sdp_lines(&self.media_file, "offer").is_empty()
    }

    /// Polls (bounded by `limit`) until the INVITE arrives; returns when it did. Fails with
    /// both SIPp reports and the server log if it never does.
    fn wait_rung(&mut self, server: &Server, caller: &mut Sipp, limit: Duration) -> Instant {
        let started = Instant::now();
        while started.elapsed() < limit {
            if self.rung() {
                return Instant::now();
            }
            if self.sipp.exited().is_some() {
                self.sipp.succeeded(server);
            }
            thread::sleep(POLL);
        }
        let why = format!("{} was not rung within {limit:?}", self.sipp.name);
        if caller.exited().is_some() {
            caller.succeeded(server);
        }
        panic!("{why}\n{}", server.logs());
    }
}

/// Files SIPp callers read from their working directory (the server's temporary directory).
fn caller_files(server: &Server, digit_pcap: Option<&str>, audio: &[u8]) {
    let dir = server.dir.path();
    if let Some(name) = digit_pcap {
        let src = Path::new(DTMF_PCAPS).join(format!("dtmf_2833_{name}.pcap"));
        fs::copy(&src, dir.join("ivr_digit.pcap"))
            .unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
    }
    fs::write(dir.join("caller_audio.ul"), audio).expect("write caller audio");
}

/// Numbers the callers' SIPp files.
static CALLS: AtomicU32 = AtomicU32::new(1);

/// A caller (1001) dialling `number` with `scenario`, holding `hold` after its last action.
fn caller(server: &Server, scenario: &str, number: &str, hold: Duration, extra: &[&str]) -> Sipp {
    SippRun::new(
        server,
        &format!("caller{}-{number}", CALLS.fetch_add(1, Ordering::SeqCst)),
        scenario,
        CALLER_SIP,
        CALLER_MEDIA,
    )
    .args(["-s", number])
    .authenticated_as(CALLER)
    .args(["-d", &hold.as_millis().to_string()])
    .args(["-timeout", SIPP_TIMEOUT])
    .args(extra.iter().copied())
    .spawn()
}

/// True when SIPp's RFC 4733 captures are there (a notice when not; a failure under CI).
fn have_dtmf_pcaps() -> bool {
    let probe = Path::new(DTMF_PCAPS).join("dtmf_2833_1.pcap");
    if probe.is_file() {
        return true;
    }
    assert!(!ci(), "CI is set but {} is missing", probe.display());
    eprintln!("NOTICE: skipping, {} missing (sip-tester)", probe.display());
    false
}

// ---------------------------------------------------------------------------------------------
// Audio.

fn silence(seconds: f64) -> Vec<u8> {
    vec![linear_to_ulaw(0); (seconds * f64::from(RATE)) as usize]
}

/// `seconds` of a 1 kHz sine at [`TONE_GAIN_DB`], raw µ-law, by sox; and its level (dBFS).
fn sox_tone(dir: &Path, seconds: f64) -> (Vec<u8>, f64) {
    let path = dir.join("tone.ul");
    let out = Command::new("sox")
        .args(["-D", "-n", "-r", "8000", "-c", "1", "-t", "ul"])
        .arg(&path)
        .args(["synth", &seconds.to_string(), "sine", "1000"])
        .args(["vol", &format!("{TONE_GAIN_DB}dB")])
        .output()
        .expect("run sox");
    assert!(
        out.status.success(),
        "sox: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ulaw = fs::read(&path).expect("read the sox tone");
    let pcm: Vec<i16> = ulaw.iter().map(|&b| ulaw_to_linear(b)).collect();
    (ulaw, rms_dbfs(&pcm))
}

/// Length of a prompt of `media/`.
fn prompt_seconds(name: &str) -> f64 {
    let path = Path::new(MEDIA).join(name);
    let reader =
        hound::WavReader::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    f64::from(reader.duration()) / f64::from(reader.spec().sample_rate)
}

/// Mono samples of a WAV file, and its sample rate.
fn read_mono(path: &Path) -> (Vec<i16>, u32) {
    let mut reader =
        hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = reader.spec();
    assert_eq!(spec.channels, 1, "{}: a voicemail is mono", path.display());
    assert_eq!(spec.bits_per_sample, 16, "{}: 16-bit", path.display());
    let samples = reader
        .samples::<i16>()
        .collect::<Result<Vec<_>, _>>()
        .expect("WAV samples");
    (samples, spec.sample_rate)
}

/// Seconds of 20 ms frames louder than [`ACTIVE_DBFS`], and their level.
fn active_audio(samples: &[i16], rate: u32) -> (f64, f64) {
    let frame = (rate / 50) as usize;
    let loud: Vec<i16> = samples
        .chunks_exact(frame)
        .filter(|f| rms_dbfs(f) > ACTIVE_DBFS)
        .flatten()
        .copied()
        .collect();
    (loud.len() as f64 / f64::from(rate), rms_dbfs(&loud))
}

// ---------------------------------------------------------------------------------------------
// The server's database and log.

impl Db {
    /// Every row of `sql` as column name → text (NULL as "NULL").
    fn rows(&mut self, sql: &str) -> Vec<HashMap<String, String>> {
        use sqlx::Column;
        let rows = self
            .rt
            .block_on(sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).fetch_all(&mut self.conn))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.iter()
            .map(|r| {
                r.columns()
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let v: Option<String> = r.try_get(i).ok().flatten();
                        (c.name().to_owned(), v.unwrap_or_else(|| "NULL".into()))
                    })
                    .collect()
            })
            .collect()
    }

    /// Polls (bounded) until `sql` returns rows that satisfy `done`.
    fn wait_rows(
        &mut self,
        server: &Server,
        sql: &str,
        what: &str,
        done: impl Fn(&[HashMap<String, String>]) -> bool,
    ) -> Vec<HashMap<String, String>> {
        let mut rows = Vec::new();
        for _ in 0..READY_TRIES {
            rows = self.rows(sql);
            if done(&rows) {
                return rows;
            }
            thread::sleep(POLL);
        }
        panic!("{what}: {sql} gave {rows:?}\n{}", server.logs());
    }

    /// The session attribute `name` of any call, once it is stored.
    fn wait_attribute(&mut self, server: &Server, name: &str) -> Vec<String> {
        let sql = format!(
            "SELECT value, session_id, CAST(call_id AS TEXT) AS call_id \
             FROM session_attributes WHERE name = '{name}'"
        );
        let rows = self.wait_rows(server, &sql, &format!("attribute {name}"), |r| {
            !r.is_empty()
        });
        for row in &rows {
            assert_ne!(row["session_id"], "NULL", "{row:?}");
        }
        rows.iter().map(|r| r["value"].clone()).collect()
    }

    /// The voicemail recordings, once every one of them is finished.
    fn wait_voicemails(&mut self, server: &Server) -> Vec<HashMap<String, String>> {
        self.wait_rows(
            server,
            "SELECT path, state, kind, mailbox, CAST(channels AS TEXT) AS channels, \
             CAST(duration_ms AS TEXT) AS duration_ms FROM recordings WHERE kind = 'voicemail'",
            "a finished voicemail recording",
            |r| !r.is_empty() && r.iter().all(|row| row["state"] != "recording"),
        )
    }
}

/// The server's log from byte `from`, ANSI colours removed.
fn log_since(server: &Server, from: usize) -> String {
    let raw = fs::read(server.log_path("switchboard")).unwrap_or_default();
    strip_ansi(&String::from_utf8_lossy(
        raw.get(from..).unwrap_or_default(),
    ))
}

fn log_len(server: &Server) -> usize {
    fs::metadata(server.log_path("switchboard")).map_or(0, |m| m.len() as usize)
}

/// Polls (bounded) until a line of the server log written after byte `from` satisfies
/// `found`; returns that line.
fn wait_log(server: &Server, from: usize, what: &str, found: impl Fn(&str) -> bool) -> String {
    for _ in 0..READY_TRIES {
        if let Some(line) = log_since(server, from).lines().find(|l| found(l)) {
            return line.to_owned();
        }
        thread::sleep(POLL);
    }
    panic!(
        "no server log line {what}; the log since then:\n{}",
        log_since(server, from)
    );
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte (0x40..=0x7e).
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether `line` names `file` with a line and a column (`…/file:L:C`).
fn names_position(line: &str, file: &str) -> bool {
    line.match_indices(&format!("{file}:")).any(|(i, m)| {
        let rest = &line[i + m.len()..];
        let mut parts = rest.splitn(3, ':');
        let is_num = |p: Option<&str>| {
            p.is_some_and(|p| {
                let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
                !digits.is_empty()
            })
        };
        is_num(parts.next()) && is_num(parts.next())
    })
}

// ---------------------------------------------------------------------------------------------
// The demo plan's main menu.

/// Calls `100` with the office open, presses `digit` (RFC 4733 capture name, or SIP INFO) 1 s
/// after the answer, and returns how long after the call started `uas` was rung.
fn menu_call(server: &Server, uas: &mut Uas, digit: Digit) -> Duration {
    // The flows play "connecting" before they dial; the callee answers 200 ms after the
    // INVITE; the caller stays on a while after that.
    let hold = Duration::from_secs_f64(prompt_seconds("prompts/connecting.wav") + 3.0);
    let started = Instant::now();
    let mut caller = match digit {
        Digit::Rfc4733(name) => {
            caller_files(server, Some(name), &silence(0.2));
            caller(server, "uac_ivr_2833", MAIN_MENU, hold, &[])
        }
        Digit::Info(d) => caller(
            server,
            "uac_ivr_info",
            MAIN_MENU,
            hold,
            &["-key", "digit", d],
        ),
    };
    let rung = uas.wait_rung(server, &mut caller, Duration::from_secs(15));
    caller.succeeded(server);
    // The UAS got the ACK and then the caller's BYE through the server: it was bridged.
    uas.sipp.succeeded(server);
    rung - started
}

#[derive(Clone, Copy)]
enum Digit {
    Rfc4733(&'static str),
    Info(&'static str),
}

/// The greeting must be long enough for "rung before it ended" to prove barge-in.
fn greeting_seconds() -> f64 {
    let seconds = prompt_seconds("prompts/main-menu.wav");
    assert!(
        seconds >= 6.0,
        "media/prompts/main-menu.wav lasts {seconds:.1} s: too short to tell barge-in apart"
    );
    seconds
}

#[test]
fn menu_digit_1_as_rfc4733_during_the_greeting_rings_sales_and_is_stored() {
    if !have_dtmf_pcaps() {
        return;
    }
    let plan = Plan::demo(&["daily 00:00-24:00"]);
    let Some(server) = start(&plan, &[]) else {
        return;
    };
    let greeting = greeting_seconds();
    Uas::register(&server, CALLEE, CALLEE_SIP, CALLEE_MEDIA);
    let mut sales = Uas::start(&server, "sales-2001", CALLEE, CALLEE_SIP, CALLEE_MEDIA);
    let after = menu_call(&server, &mut sales, Digit::Rfc4733("1"));
    eprintln!("2001 rung {after:?} after the call started; greeting {greeting:.1} s");
    // The digit went 1 s after the answer; without barge-in the ring would wait for the end
    // of the greeting.
    assert!(
        after.as_secs_f64() < greeting - 3.0,
        "2001 was rung {after:?} after the call started: the digit did not cut the \
         {greeting:.1} s greeting (no barge-in)"
    );
    let mut db = Db::open(&server);
    assert_eq!(db.wait_attribute(&server, "menu"), vec!["1"]);
}

/// The demo plan's option 2 is the `support` queue: two agents with the support skill, made
/// available through the API (2101's agent first), and the caller reaches the agent free the
/// longest; the other agent's phone never rings.
#[test]
fn menu_digit_2_queues_the_caller_for_the_longest_idle_support_agent() {
    let plan = Plan::demo(&["daily 00:00-24:00"]);
    let Some(server) = start(&plan, &[]) else {
        return;
    };
    let greeting = greeting_seconds();
    add_user(&server, SUPPORT_FIRST);
    add_user(&server, SUPPORT_SECOND);
    Uas::register(&server, SUPPORT_FIRST, CALLEE_SIP, CALLEE_MEDIA);
    Uas::register(&server, SUPPORT_SECOND, OTHER_SIP, OTHER_MEDIA);
    let admin = Admin::new(&server);
    admin.add_agent("ann", SUPPORT_FIRST);
    admin.add_agent("bob", SUPPORT_SECOND);
    // A skill the plan does not declare is refused, named.
    let (status, body) = admin.send(
        reqwest::Method::POST,
        "/v1/agents",
        Some(serde_json::json!({"id": "cy", "extension": "2103", "skills": {"juggling": 1}})),
    );
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("juggling"), "{body}");
    // Ann is available first: she has been free the longest.
    assert_eq!(admin.set_state("ann", "available"), "available");
    assert_eq!(admin.set_state("bob", "available"), "available");
    let mut first = Uas::start(
        &server,
        "support-2101",
        SUPPORT_FIRST,
        CALLEE_SIP,
        CALLEE_MEDIA,
    );
    let mut second = Uas::start(
        &server,
        "support-2102",
        SUPPORT_SECOND,
        OTHER_SIP,
        OTHER_MEDIA,
    );
    let after = menu_call(&server, &mut first, Digit::Info("2"));
    assert!(
        after.as_secs_f64() < greeting - 3.0,
        "2101 was rung {after:?} after the call started (greeting {greeting:.1} s): no barge-in"
    );
    assert!(
        !second.rung(),
        "2102 was rung although Ann (2101) was free the longest and answered"
    );
    second.sipp.kill();
    let mut db = Db::open(&server);
    assert_eq!(db.wait_attribute(&server, "menu"), vec!["2"]);
    assert_eq!(db.wait_attribute(&server, "agent"), vec!["ann"]);
    assert_eq!(db.wait_attribute(&server, "queue_status"), vec!["answered"]);
    // The queue's history: one contact, answered.
    let (status, stats) = admin.send(reqwest::Method::GET, "/v1/queues/support/stats", None);
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["contacts"], 1, "{stats}");
    assert_eq!(stats["answered"], 1, "{stats}");
}

/// The server's API with an admin key, for a synchronous test.
struct Admin {
    rt: tokio::runtime::Runtime,
    api: common::ApiClient,
}

impl Admin {
    fn new(server: &Server) -> Admin {
        let http = std::net::SocketAddr::from(([127, 0, 0, 1], server.ports.port(HTTP)));
        Admin {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            api: common::ApiClient::new(http, &api_key(server, "admin", "admin")),
        }
    }

    fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        self.rt.block_on(self.api.send(method, path, body))
    }

    /// Creates agent `id` on `extension` with `support` at level 5 (and `extra` fields).
    fn add_agent(&self, id: &str, extension: &str) {
        let (status, body) = self.send(
            reqwest::Method::POST,
            "/v1/agents",
            Some(serde_json::json!({"id": id, "extension": extension, "skills": {"support": 5}})),
        );
        assert_eq!(status, 201, "{body}");
    }

    /// The events of type `kind` so far.
    fn events(&self, kind: &str) -> Vec<serde_json::Value> {
        let (status, page) = self.send(
            reqwest::Method::GET,
            &format!("/v1/events?type={kind}"),
            None,
        );
        assert_eq!(status, 200, "{page}");
        page["events"].as_array().cloned().unwrap_or_default()
    }

    /// Polls (at most 10 s) for the first event of type `kind` that `matches`.
    fn wait_event(
        &self,
        kind: &str,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let events = self.events(kind);
            if let Some(e) = events.iter().find(|e| matches(e)) {
                return e.clone();
            }
            assert!(Instant::now() < deadline, "no such {kind}: {events:?}");
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sets an agent's presence; their state after it (an agent made available with a
    /// caller waiting is at once `busy`: offered).
    fn set_state(&self, id: &str, state: &str) -> String {
        let (status, body) = self.send(
            reqwest::Method::POST,
            &format!("/v1/agents/{id}/state"),
            Some(serde_json::json!({"state": state})),
        );
        assert_eq!(status, 200, "{body}");
        body["state"].as_str().unwrap_or_default().to_owned()
    }
}

/// Checks the one voicemail recording: mailbox, complete, mono WAV holding `tone` seconds of
/// the caller's tone at the level sent (`level_sent`, dBFS) and not much more than `at_most`
/// seconds in all.
fn assert_voicemail(server: &Server, db: &mut Db, tone: f64, level_sent: f64, at_most: f64) {
    let rows = db.wait_voicemails(server);
    assert_eq!(rows.len(), 1, "one voicemail: {rows:?}");
    let row = &rows[0];
    assert_eq!(row["kind"], "voicemail", "{row:?}");
    assert_eq!(row["mailbox"], "general", "{row:?}");
    assert_eq!(row["state"], "complete", "{row:?}");
    assert_eq!(row["channels"], "1", "{row:?}");
    let path = server.data_dir().join(&row["path"]);
    let (samples, rate) = read_mono(&path);
    let seconds = samples.len() as f64 / f64::from(rate);
    let (loud, level) = active_audio(&samples, rate);
    eprintln!(
        "voicemail {}: {seconds:.2} s, {loud:.2} s of audio at {level:.1} dBFS",
        path.display()
    );
    let duration_ms: f64 = row["duration_ms"].parse().unwrap_or(-1.0);
    assert!(
        (duration_ms / 1000.0 - seconds).abs() < 0.1,
        "duration_ms {duration_ms} but the file holds {seconds:.2} s"
    );
    assert!(
        (loud - tone).abs() <= 0.6,
        "the voicemail holds {loud:.2} s of audio, the caller sent {tone:.2} s"
    );
    assert!(
        (level - level_sent).abs() <= 3.0,
        "the voicemail's audio is at {level:.1} dBFS, the caller sent {level_sent:.1} dBFS"
    );
    assert!(
        seconds <= at_most,
        "the voicemail lasts {seconds:.2} s, more than the {at_most:.1} s the caller was there"
    );
}

#[test]
fn menu_digit_3_leaves_a_voicemail_holding_the_callers_audio() {
    if !have_dtmf_pcaps() {
        return;
    }
    let plan = Plan::demo(&["daily 00:00-24:00"]);
    let Some(server) = start(&plan, &["sox"]) else {
        return;
    };
    // 1 s after the answer the digit; 1 s later the audio starts: silence while the
    // voicemail greeting and the beep play, then the tone.
    let wait = prompt_seconds("prompts/leave-message.wav") + 1.5;
    let tone = 3.0;
    let (tone_audio, level) = sox_tone(server.dir.path(), tone);
    let mut audio = silence(wait);
    audio.extend(tone_audio);
    caller_files(&server, Some("3"), &audio);
    let hold = Duration::from_secs_f64(wait + tone + 1.0);
    caller(&server, "uac_ivr_2833", MAIN_MENU, hold, &[]).succeeded(&server);
    let mut db = Db::open(&server);
    assert_eq!(db.wait_attribute(&server, "menu"), vec!["3"]);
    assert_voicemail(&server, &mut db, tone, level, wait + tone + 1.0);
}

#[test]
fn after_hours_100_is_answered_and_takes_a_voicemail() {
    let plan = Plan::demo(&[]);
    let Some(server) = start(&plan, &["sox"]) else {
        return;
    };
    // The after-hours prompt and the beep (its voicemail has no greeting), then the tone.
    let wait = prompt_seconds("prompts/after-hours.wav") + 1.5;
    let tone = 2.0;
    let (tone_audio, level) = sox_tone(server.dir.path(), tone);
    let mut audio = silence(wait);
    audio.extend(tone_audio);
    caller_files(&server, None, &audio);
    let hold = Duration::from_secs_f64(wait + tone + 1.0);
    // uac_audio asserts the 200 OK: the after-hours flow answers.
    caller(&server, "uac_audio", MAIN_MENU, hold, &[]).succeeded(&server);
    let mut db = Db::open(&server);
    assert_voicemail(&server, &mut db, tone, level, wait + tone + 1.0);
    let menu = db.rows("SELECT value FROM session_attributes WHERE name = 'menu'");
    assert!(menu.is_empty(), "no menu after hours, yet menu = {menu:?}");
}

// ---------------------------------------------------------------------------------------------
// Webhooks.

/// What the test's webhook server does for a path.
#[derive(Clone, Copy)]
enum Reply {
    Json(&'static str),
    Never,
    Body(&'static str),
}

/// A tiny HTTP/1.1 server on loopback: records each request (path, body) and replies per
/// path. Connections that get no reply are held open until the test ends.
struct HookServer {
    port: u16,
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

impl HookServer {
    fn start(routes: Vec<(&'static str, Reply)>) -> HookServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the webhook server");
        let port = listener.local_addr().expect("local addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let Some((path, body, stream)) = read_request(stream) else {
                    continue;
                };
                log.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((path.clone(), body));
                let reply = routes
                    .iter()
                    .find(|(p, _)| *p == path)
                    .map_or(Reply::Body("no such path"), |(_, r)| *r);
                match reply {
                    Reply::Never => held.push(stream),
                    Reply::Json(text) | Reply::Body(text) => respond(stream, text),
                }
            }
        });
        HookServer { port, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn requests(&self, path: &str) -> Vec<String> {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, b)| b.clone())
            .collect()
    }
}

/// Reads one request: (path, body), with Content-Length framing.
fn read_request(stream: TcpStream) -> Option<(String, String, TcpStream)> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_owned();
    let mut length = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((
        path,
        String::from_utf8_lossy(&body).into_owned(),
        reader.into_inner(),
    ))
}

fn respond(mut stream: TcpStream, body: &str) {
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
}

/// Routes 300/301/302 to webhooks at /steps, /silent and /garbage, each falling back to a
/// flow that dials 2101.
fn webhook_plan(hooks: &HookServer) -> String {
    let mut plan = String::new();
    for (number, path) in [("300", "/steps"), ("301", "/silent"), ("302", "/garbage")] {
        let flow = format!("hook{number}");
        plan += &format!(
            "[[routes]]\nnumber = \"{number}\"\nflow = \"{flow}\"\n\n\
             [[flows.{flow}]]\nwebhook = \"{}\"\ntimeout = \"1s\"\nfallback = \"support\"\n\n",
            hooks.url(path)
        );
    }
    plan += "[[flows.support]]\ndial = \"2101\"\n";
    plan
}

#[test]
fn webhook_steps_run_and_a_silent_or_broken_webhook_falls_back() {
    let hooks = HookServer::start(vec![
        (
            "/steps",
            Reply::Json(r#"{"steps":[{"set":{"via":"webhook"}},{"dial":"2001"}]}"#),
        ),
        ("/silent", Reply::Never),
        ("/garbage", Reply::Body("not json")),
    ]);
    let plan = Plan::empty();
    plan.write("webhooks.toml", &webhook_plan(&hooks));
    let Some(server) = start(&plan, &[]) else {
        return;
    };
    add_user(&server, SUPPORT_FIRST);
    Uas::register(&server, CALLEE, CALLEE_SIP, CALLEE_MEDIA);
    Uas::register(&server, SUPPORT_FIRST, OTHER_SIP, OTHER_MEDIA);
    let hold = Duration::from_millis(1000);
    caller_files(&server, None, &silence(0.2));

    // (a) The reply's steps run: an attribute, then a dial of 2001.
    let mut uas = Uas::start(&server, "hook-2001", CALLEE, CALLEE_SIP, CALLEE_MEDIA);
    let mut call = caller(&server, "uac_audio", "300", hold, &[]);
    uas.wait_rung(&server, &mut call, Duration::from_secs(10));
    call.succeeded(&server);
    uas.sipp.succeeded(&server);
    let bodies = hooks.requests("/steps");
    assert_eq!(bodies.len(), 1, "one POST to /steps: {bodies:?}");
    let context: serde_json::Value =
        serde_json::from_str(&bodies[0]).expect("the webhook body is JSON");
    assert_eq!(context["caller"], CALLER, "caller in {context}");
    assert_eq!(context["called"], "300", "called in {context}");
    assert!(
        context["session_id"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "session_id in {context}"
    );
    let mut db = Db::open(&server);
    assert_eq!(db.wait_attribute(&server, "via"), vec!["webhook"]);

    // (b) No reply: after the 1 s timeout the fallback dials 2101; the caller stays.
    let mut uas = Uas::start(
        &server,
        "silent-2101",
        SUPPORT_FIRST,
        OTHER_SIP,
        OTHER_MEDIA,
    );
    let started = Instant::now();
    let mut call = caller(&server, "uac_audio", "301", hold, &[]);
    let rung = uas.wait_rung(&server, &mut call, Duration::from_secs(10)) - started;
    call.succeeded(&server);
    uas.sipp.succeeded(&server);
    assert_eq!(hooks.requests("/silent").len(), 1, "one POST to /silent");
    assert!(
        rung >= Duration::from_millis(900),
        "2101 was rung {rung:?} after the call started, before the webhook's 1 s timeout"
    );

    // (c) A reply that is not JSON: a clear log line, and the fallback dials 2101.
    let from = log_len(&server);
    let mut uas = Uas::start(
        &server,
        "garbage-2101",
        SUPPORT_FIRST,
        OTHER_SIP,
        OTHER_MEDIA,
    );
    let mut call = caller(&server, "uac_audio", "302", hold, &[]);
    uas.wait_rung(&server, &mut call, Duration::from_secs(10));
    call.succeeded(&server);
    uas.sipp.succeeded(&server);
    assert_eq!(hooks.requests("/garbage").len(), 1, "one POST to /garbage");
    let line = wait_log(&server, from, "saying the reply is not valid JSON", |l| {
        l.contains("not valid JSON")
    });
    eprintln!("log: {line}");
}

// ---------------------------------------------------------------------------------------------
// Hot reload and start-up.

/// One route: `100` dials `ext`.
fn route_100_to(ext: &str) -> String {
    format!(
        "[[routes]]\nnumber = \"100\"\nflow = \"to{ext}\"\n\n[[flows.to{ext}]]\ndial = \"{ext}\"\n"
    )
}

/// An invalid plan: an unknown key on line 4, column 1. Its route would send 100 to 2101, so a
/// server that took it anyway would ring the wrong UAS.
const INVALID_ROUTES: &str = "[[routes]]\nnumber = \"100\"\nflow = \"to2101\"\nbogus = 1\n\n\
                              [[flows.to2101]]\ndial = \"2101\"\n";

/// Calls 100 and checks that `uas` is the one rung.
fn call_100_rings(server: &Server, uas: &mut Uas) {
    let mut call = caller(
        server,
        "uac_audio",
        MAIN_MENU,
        Duration::from_millis(500),
        &[],
    );
    uas.wait_rung(server, &mut call, Duration::from_secs(10));
    call.succeeded(server);
    uas.sipp.succeeded(server);
}

/// A successful reload (`dialplan reloaded trigger=…`), by `trigger` (`Files`, `Sighup`).
fn is_reload_line(line: &str, trigger: &str) -> bool {
    line.contains("dialplan reloaded")
        && line
            .to_ascii_lowercase()
            .contains(&format!("trigger={}", trigger.to_ascii_lowercase()))
}

#[test]
fn plan_changes_are_taken_without_restart_and_a_bad_plan_keeps_the_last_good_one() {
    let plan = Plan::empty();
    plan.write("routes.toml", &route_100_to(SUPPORT_FIRST));
    let Some(server) = start(&plan, &[]) else {
        return;
    };
    add_user(&server, SUPPORT_FIRST);
    Uas::register(&server, CALLEE, CALLEE_SIP, CALLEE_MEDIA);
    Uas::register(&server, SUPPORT_FIRST, OTHER_SIP, OTHER_MEDIA);
    caller_files(&server, None, &silence(0.2));

    let mut uas = Uas::start(&server, "first-2101", SUPPORT_FIRST, OTHER_SIP, OTHER_MEDIA);
    call_100_rings(&server, &mut uas);

    // A changed file: the next call takes the new route, same server process.
    let from = log_len(&server);
    plan.write("routes.toml", &route_100_to(CALLEE));
    wait_log(&server, from, "saying the plan was reloaded", |l| {
        is_reload_line(l, "Files")
    });
    let mut uas = Uas::start(&server, "changed-2001", CALLEE, CALLEE_SIP, CALLEE_MEDIA);
    call_100_rings(&server, &mut uas);

    // An invalid file: the error with file:line:column in the log; the last good plan stays.
    let from = log_len(&server);
    plan.write("routes.toml", INVALID_ROUTES);
    let line = wait_log(&server, from, "naming routes.toml:LINE:COLUMN", |l| {
        names_position(l, "routes.toml")
    });
    eprintln!("log: {line}");
    assert!(
        line.contains("routes.toml:4:"),
        "the error should point at line 4 (the unknown key): {line}"
    );
    let mut uas = Uas::start(&server, "kept-2001", CALLEE, CALLEE_SIP, CALLEE_MEDIA);
    call_100_rings(&server, &mut uas);

    // The file fixed again (back to 2101), taken on change; then SIGHUP reloads too.
    let from = log_len(&server);
    plan.write("routes.toml", &route_100_to(SUPPORT_FIRST));
    wait_log(&server, from, "saying the fixed plan was reloaded", |l| {
        is_reload_line(l, "Files")
    });
    let pid = server
        .children
        .iter()
        .find(|(name, _)| *name == "switchboard")
        .map(|(_, child)| child.id())
        .expect("switchboard is running");
    let from = log_len(&server);
    let status = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -HUP {pid}");
    let line = wait_log(&server, from, "saying SIGHUP reloaded the plan", |l| {
        is_reload_line(l, "Sighup")
    });
    eprintln!("log after SIGHUP: {line}");
    let mut uas = Uas::start(&server, "hup-2101", SUPPORT_FIRST, OTHER_SIP, OTHER_MEDIA);
    call_100_rings(&server, &mut uas);
}

#[test]
fn serve_refuses_to_start_on_an_invalid_plan_and_names_the_position() {
    let plan = Plan::empty();
    plan.write("routes.toml", INVALID_ROUTES);
    let data = plan.dir.path().join("data");
    fs::create_dir_all(&data).expect("data dir");
    let ports = Ports::allocate();
    let sip = format!("127.0.0.1:{}", ports.port(SIP));
    let (low, high) = ports.rtp_range();
    let mut child = Command::new(server_bin())
        .arg("serve")
        .args(["--config", &plan.config_arg()])
        .arg("--data-dir")
        .arg(&data)
        .args(["--sip-listen", &format!("udp:{sip}")])
        .args(["--http-listen", &format!("127.0.0.1:{}", ports.port(HTTP))])
        .args(["--rtp-ports", &format!("{low}-{high}")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start switchboard serve");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for switchboard") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("switchboard serve still runs 10 s after start with an invalid plan");
        }
        thread::sleep(POLL);
    };
    let mut output = String::new();
    for pipe in [
        child.stdout.take().map(|mut s| {
            let mut t = String::new();
            let _ = s.read_to_string(&mut t);
            t
        }),
        child.stderr.take().map(|mut s| {
            let mut t = String::new();
            let _ = s.read_to_string(&mut t);
            t
        }),
    ]
    .into_iter()
    .flatten()
    {
        output += &strip_ansi(&pipe);
    }
    assert!(
        !status.success(),
        "switchboard serve exited {status} with an invalid plan:\n{output}"
    );
    assert!(
        output.lines().any(|l| names_position(l, "routes.toml")),
        "the output does not name routes.toml:LINE:COLUMN:\n{output}"
    );
    assert!(
        output.contains("routes.toml:4:"),
        "the error should point at line 4 (the unknown key):\n{output}"
    );
    assert!(
        output.contains("bogus"),
        "the error should name the unknown key:\n{output}"
    );
}

/// A plan whose 100 collects one secret digit into `pin`, then waits for the caller to hang up.
const SENSITIVE_PLAN: &str = "\
[[routes]]
name = \"pin\"
number = \"100\"
flow = \"pin\"

[[flows.pin]]
answer = true

[[flows.pin]]
gather = \"pin\"
max_digits = 1
first_timeout = \"10s\"
sensitive = true

[[flows.pin]]
pause = \"30s\"
";

#[test]
fn a_sensitive_gather_keeps_the_digits_out_of_the_attribute_the_events_and_the_log() {
    if !have_dtmf_pcaps() {
        return;
    }
    let plan = Plan::empty();
    plan.write("plan.toml", SENSITIVE_PLAN);
    let Some(server) = start(&plan, &[]) else {
        return;
    };
    caller_files(&server, Some("1"), &silence(0.2));
    let mut call = caller(
        &server,
        "uac_ivr_2833",
        MAIN_MENU,
        Duration::from_secs(2),
        &[],
    );
    let mut db = Db::open(&server);
    assert_eq!(
        db.wait_attribute(&server, "pin"),
        vec!["•"],
        "stored masked"
    );
    call.succeeded(&server);
    let digits = db.rows("SELECT data FROM events WHERE kind = 'dtmf.received'");
    assert!(!digits.is_empty(), "the digit was reported");
    for row in &digits {
        let data: serde_json::Value = serde_json::from_str(&row["data"]).expect("json");
        assert_eq!(data["digit"], "•", "published masked: {data}");
    }
    let log = log_since(&server, 0);
    let dtmf: Vec<&str> = log.lines().filter(|l| l.contains("DTMF")).collect();
    assert!(!dtmf.is_empty(), "a DTMF log line");
    assert!(
        dtmf.iter()
            .all(|l| l.contains("digit=•") && !l.contains("digit=1")),
        "logged masked: {dtmf:?}"
    );
}

/// A chat is routed by the same ACD: with `[chat] queue = "support"`, a gateway chat arrives
/// while Ann (1 call + 3 chats) is on a support call; it is offered to her, she accepts it
/// through the API, and the session's events say it is hers (`chat.assigned`).
#[test]
fn a_chat_goes_to_the_agent_on_a_call_who_has_chat_capacity() {
    let plan = Plan::demo(&["daily 00:00-24:00"]);
    let mut config = fs::OpenOptions::new()
        .append(true)
        .open(&plan.config)
        .expect("open the config");
    std::io::Write::write_all(&mut config, b"\n[chat]\nqueue = \"support\"\n").expect("append");
    drop(config);
    let Some(server) = start(&plan, &[]) else {
        return;
    };
    add_user(&server, SUPPORT_FIRST);
    Uas::register(&server, SUPPORT_FIRST, CALLEE_SIP, CALLEE_MEDIA);
    let admin = Admin::new(&server);
    let send = |method, path: &str, body| admin.send(method, path, body);
    let (status, body) = send(
        reqwest::Method::POST,
        "/v1/agents",
        Some(serde_json::json!({"id": "ann", "extension": SUPPORT_FIRST,
                                "skills": {"support": 5}, "voice": 1, "chat": 3})),
    );
    assert_eq!(status, 201, "{body}");
    admin.set_state("ann", "available");
    let mut ann = Uas::start(
        &server,
        "support-ann",
        SUPPORT_FIRST,
        CALLEE_SIP,
        CALLEE_MEDIA,
    );
    // A support call that lasts: Ann is on it while the chat comes.
    let mut caller = caller(
        &server,
        "uac_ivr_info",
        MAIN_MENU,
        Duration::from_secs(12),
        &["-key", "digit", "2"],
    );
    ann.wait_rung(&server, &mut caller, Duration::from_secs(15));
    let mut db = Db::open(&server);
    assert_eq!(
        db.wait_attribute(&server, "agent"),
        vec!["ann"],
        "Ann has the call"
    );

    let (status, _) = send(
        reqwest::Method::POST,
        "/v1/channels",
        Some(serde_json::json!({"name": "sms", "kind": "sms"})),
    );
    assert_eq!(status, 201);
    let (status, chat) = send(
        reqwest::Method::POST,
        "/v1/channels/sms/messages",
        Some(serde_json::json!({"from": {"phone": "+442079460001"}, "text": "hello", "id": "m1"})),
    );
    assert_eq!(status, 201, "{chat}");
    let conversation = chat["conversation_id"].as_str().expect("an id").to_owned();
    // The offer: a `task.offered` event for this conversation, to Ann.
    let offered = admin.wait_event("task.offered", |e| {
        e["data"]["conversation_id"] == conversation.as_str()
    });
    assert_eq!(offered["data"]["agent_id"], "ann", "{offered}");
    let (status, accepted) = send(
        reqwest::Method::POST,
        &format!("/v1/conversations/{conversation}/accept"),
        Some(serde_json::json!({"agent_id": "ann"})),
    );
    assert_eq!(status, 200, "{accepted}");
    let page = admin.events("chat.assigned");
    assert!(
        page.iter().any(|e| {
            e["data"]["conversation_id"] == conversation.as_str() && e["data"]["agent_id"] == "ann"
        }),
        "{page:?}"
    );
    // Accepted once: a second accept is refused.
    let (status, _) = send(
        reqwest::Method::POST,
        &format!("/v1/conversations/{conversation}/accept"),
        Some(serde_json::json!({"agent_id": "ann"})),
    );
    assert_eq!(status, 409);
    // Transferred to Bob (chat only, no phone needed): his at once; then back to the queue,
    // where it is offered again, in the same session all along.
    let (status, bob) = send(
        reqwest::Method::POST,
        "/v1/agents",
        Some(serde_json::json!({"id": "bob", "extension": SUPPORT_SECOND,
                                "skills": {"support": 1}, "voice": 0, "chat": 2})),
    );
    assert_eq!(status, 201, "{bob}");
    let (status, moved) = send(
        reqwest::Method::POST,
        &format!("/v1/conversations/{conversation}/transfer"),
        Some(serde_json::json!({"agent_id": "bob"})),
    );
    assert_eq!(status, 200, "{moved}");
    let (status, _) = send(
        reqwest::Method::POST,
        &format!("/v1/conversations/{conversation}/transfer"),
        Some(serde_json::json!({"agent_id": "nobody"})),
    );
    assert_eq!(status, 422);
    let (status, requeued) = send(
        reqwest::Method::POST,
        &format!("/v1/conversations/{conversation}/transfer"),
        Some(serde_json::json!({"queue": "support"})),
    );
    assert_eq!(status, 200, "{requeued}");
    let page = admin.events("chat.assigned");
    let assigned: Vec<&serde_json::Value> = page
        .iter()
        .filter(|e| e["data"]["conversation_id"] == conversation.as_str())
        .collect();
    assert_eq!(
        assigned
            .iter()
            .map(|e| e["data"]["agent_id"].as_str().unwrap_or_default())
            .collect::<Vec<_>>(),
        ["ann", "bob"],
        "{page:?}"
    );
    assert!(
        assigned
            .iter()
            .all(|e| e["session_id"] == chat["session_id"]),
        "one session: {page:?}"
    );
    let joined = admin.events("queue.joined");
    let chat_joins = joined
        .iter()
        .filter(|e| e["data"]["media"] == "chat")
        .count();
    assert_eq!(
        chat_joins, 3,
        "joined, transferred to Bob, back to the queue: {joined:?}"
    );
    caller.succeeded(&server);
}

/// An unauthenticated caller from a trusted trunk at `port` (a block offset), number `from`,
/// dialling 100 and pressing 2 (SIP INFO) 1 s after the answer, staying `hold`.
fn trunk_caller(
    server: &Server,
    name: &str,
    port: u16,
    media: u16,
    from: &str,
    hold: Duration,
) -> Sipp {
    // From 127.0.0.2: the trunks' address (trust is by address, and the agent's phone on
    // 127.0.0.1 must still be challenged when it registers).
    SippRun::new(server, name, "uac_ivr_info_trusted", port, media)
        .args(["-i", "127.0.0.2"])
        .args(["-s", MAIN_MENU])
        .args(["-key", "caller", from])
        .args(["-key", "digit", "2"])
        .args(["-d", &hold.as_millis().to_string()])
        .args(["-timeout", SIPP_TIMEOUT])
        .spawn()
}

/// Priority end to end: a customer marked VIP (`POST /v1/customers`) calls after a normal
/// caller, both wait in the support queue (no agent free); when Ann becomes available the
/// VIP is answered first.
#[test]
fn a_vip_caller_is_answered_before_a_caller_who_came_first() {
    if !have_tools(&["sipp"]) {
        return;
    }
    let plan = Plan::demo(&["daily 00:00-24:00"]);
    let ports = Ports::allocate();
    let mut config = fs::OpenOptions::new()
        .append(true)
        .open(&plan.config)
        .expect("open the config");
    let trunks = format!(
        "\n[chat]\ndefault_region = \"GB\"\n\n[[trunk]]\nname = \"a\"\nhost = \"127.0.0.2:{}\"\nprefixes = [\"+991\"]\n\n[[trunk]]\nname = \"b\"\nhost = \"127.0.0.2:{}\"\nprefixes = [\"+992\"]\n",
        ports.port(CALLER_SIP),
        ports.port(OTHER_SIP)
    );
    std::io::Write::write_all(&mut config, trunks.as_bytes()).expect("append");
    drop(config);
    let server = Server::start_with(
        ports,
        Target::Switchboard,
        &["--config", &plan.config_arg()],
    );
    add_user(&server, SUPPORT_FIRST);
    Uas::register(&server, SUPPORT_FIRST, CALLEE_SIP, CALLEE_MEDIA);
    let admin = Admin::new(&server);
    let send = |method, path: &str, body| admin.send(method, path, body);
    let (status, body) = send(
        reqwest::Method::POST,
        "/v1/customers",
        Some(
            serde_json::json!({"identities": [{"kind": "phone", "value": "020 7946 0002"}],
                                "vip": true, "display_name": "Very Important"}),
        ),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["vip"], true, "{body}");
    let (status, body) = send(
        reqwest::Method::POST,
        "/v1/agents",
        Some(
            serde_json::json!({"id": "ann", "extension": SUPPORT_FIRST, "skills": {"support": 5}}),
        ),
    );
    assert_eq!(status, 201, "{body}");
    let waiting = |n: u64| {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (_, q) = send(reqwest::Method::GET, "/v1/queues/support", None);
            if q["waiting"] == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "never {n} waiting: {q}\n{}\n{}",
                server.logs(),
                tail(&server.dir.path().join("sipp-normal-messages.log"), 80)
            );
            thread::sleep(Duration::from_millis(50));
        }
    };
    let hold = Duration::from_secs(14);
    let mut normal = trunk_caller(
        &server,
        "normal",
        CALLER_SIP,
        CALLER_MEDIA,
        "+442079460001",
        hold,
    );
    waiting(1);
    let mut vip = trunk_caller(
        &server,
        "vip",
        OTHER_SIP,
        OTHER_MEDIA,
        "+442079460002",
        hold,
    );
    waiting(2);
    let mut ann = Uas::start(
        &server,
        "support-ann",
        SUPPORT_FIRST,
        CALLEE_SIP,
        CALLEE_MEDIA,
    );
    admin.set_state("ann", "available");
    ann.wait_rung(&server, &mut vip, Duration::from_secs(10));
    // Who got Ann: the task she accepted is the VIP's (priority 1 when it joined).
    let accepted = admin.wait_event("task.accepted", |_| true);
    let accepted = accepted["data"]["task_id"].as_str().unwrap_or_default();
    let joined = admin.events("queue.joined");
    assert_eq!(joined.len(), 2, "{joined:?}");
    assert_eq!(
        joined[0]["data"]["priority"], 0,
        "the normal caller came first: {joined:?}"
    );
    assert_eq!(joined[1]["data"]["priority"], 1, "then the VIP: {joined:?}");
    assert_eq!(
        joined[1]["data"]["task_id"], accepted,
        "Ann took the VIP's call first: {joined:?}"
    );
    vip.succeeded(&server);
    normal.kill();
}

/// A caller who takes the callback keeps their place: they press 2, then 1, and the server
/// hangs up; the contact is still waiting. When Ann becomes available her phone rings first,
/// then the caller's own phone, and the callback is in the caller's session.
#[test]
fn a_caller_who_takes_the_callback_is_called_back_in_the_same_session() {
    let plan = Plan::demo(&["daily 00:00-24:00"]);
    let Some(server) = start(&plan, &[]) else {
        return;
    };
    add_user(&server, SUPPORT_FIRST);
    Uas::register(&server, SUPPORT_FIRST, CALLEE_SIP, CALLEE_MEDIA);
    // The caller's phone, where the callback comes.
    Uas::register(&server, CALLER, OTHER_SIP, OTHER_MEDIA);
    let admin = Admin::new(&server);
    let send = |method, path: &str, body| admin.send(method, path, body);
    let (status, body) = send(
        reqwest::Method::POST,
        "/v1/agents",
        Some(
            serde_json::json!({"id": "ann", "extension": SUPPORT_FIRST, "skills": {"support": 5}}),
        ),
    );
    assert_eq!(status, 201, "{body}");
    let mut caller = SippRun::new(
        &server,
        "callback-caller",
        "uac_ivr_info_callback",
        CALLER_SIP,
        CALLER_MEDIA,
    )
    .args(["-s", MAIN_MENU])
    .authenticated_as(CALLER)
    .args(["-key", "digit", "2", "-key", "digit2", "1"])
    .args(["-timeout", SIPP_TIMEOUT])
    .spawn();
    caller.succeeded(&server);
    let (_, q) = send(reqwest::Method::GET, "/v1/queues/support", None);
    assert_eq!(q["waiting"], 1, "the place is kept after the hang-up: {q}");
    let mut ann = Uas::start(
        &server,
        "support-ann",
        SUPPORT_FIRST,
        CALLEE_SIP,
        CALLEE_MEDIA,
    );
    let mut phone = Uas::start(&server, "caller-phone", CALLER, OTHER_SIP, OTHER_MEDIA);
    admin.set_state("ann", "available");
    let agent_rung = ann.wait_rung(&server, &mut caller, Duration::from_secs(10));
    let customer_rung = phone.wait_rung(&server, &mut caller, Duration::from_secs(10));
    assert!(
        agent_rung <= customer_rung,
        "the agent first, then the customer"
    );
    let mut db = Db::open(&server);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let calls = db.rows("SELECT session_id FROM calls");
        let sessions: std::collections::BTreeSet<&String> =
            calls.iter().filter_map(|r| r.get("session_id")).collect();
        if calls.len() == 2 {
            assert_eq!(sessions.len(), 1, "one session: {calls:?}");
            break;
        }
        assert!(Instant::now() < deadline, "two calls: {calls:?}");
        thread::sleep(Duration::from_millis(50));
    }
    let left = admin.events("queue.left");
    assert_eq!(left[0]["data"]["reason"], "callback", "{left:?}");
    ann.sipp.kill();
    phone.sipp.kill();
}
