//! Black-box tests of the call-control API (issue 5) against the running `switchboard` binary
//! and a SIPp phone: a call placed with `POST /v1/calls` to a SIPp UAS registered as 2001,
//! played to, sent DTMF and hung up through the API, while a WebSocket on `GET /v1/events`
//! receives exactly the call's events in order; and the same kind of call with the WebSocket
//! closed mid-call and resumed with `since=`, every event arriving once.
//!
//! The server, its extensions and SIPp runs come from `tests/sipp_harness`; the API key is
//! made with the CLI (`switchboard apikey create`, the key alone on stdout), as an operator
//! would. The callee is `uas_answer.xml` (180, 200 with SDP naming an RTP port the test owns,
//! ACK, then the server's BYE answered 200): its exit code proves it got the BYE. The test's
//! RTP socket proves the media side: the beep is audible there and the digits arrive as
//! RFC 4733 events. Waits are bounded polls or reads of the stream, never sleeps.
//!
//! The tests are plain `#[test]`s (the harness blocks on std processes); the HTTP and
//! WebSocket clients run on a small tokio runtime each test builds, and SIPp's blocking
//! waits happen outside `block_on`, where nothing async is held up.
//!
//! Without `sipp` the tests print a notice and pass, unless `CI` is set, where that fails.
#![allow(clippy::disallowed_methods)] // a test measures real time, not the server's clock

mod common;
mod sipp_harness;

use std::net::UdpSocket;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{ApiClient, EventSocket, GUARD, connect_events, next_event};
use serde_json::json;
use sipp_harness::*;
use switchboard::api::events::Event;
use switchboard::media::analysis::rms_dbfs;
use switchboard::media::codec::g711::ulaw_to_linear;

type Ws = EventSocket;

/// A 20 ms µ-law frame louder than this carries the beep (silence is far below).
const AUDIBLE_DBFS: f64 = -40.0;
/// The beep (1 kHz, 250 ms) is 12 frames of 20 ms; most of them must arrive audible.
const BEEP_FRAMES_MIN: usize = 8;
/// `12#` as RFC 4733 event codes.
const DIGITS: &str = "12#";
const DIGIT_EVENTS: [u8; 3] = [1, 2, 11];
/// What the server logs for a placed call that is answered, played a beep, sent DTMF and
/// hung up through the API (derived from a run, then fixed here).
const CALL_EVENTS: [&str; 7] = [
    "call.created",
    "call.ringing",
    "call.answered",
    "playback.started",
    "playback.finished",
    "dtmf.sent",
    "call.ended",
];

// ---------------------------------------------------------------------------------------------
// The API.

/// A control key made with the CLI on the server's data directory.
fn control_key(server: &Server) -> String {
    api_key(server, "sipp-api", "control")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The API client with the test's own calls.
struct Api {
    client: ApiClient,
    http: std::net::SocketAddr,
}

impl std::ops::Deref for Api {
    type Target = ApiClient;
    fn deref(&self) -> &ApiClient {
        &self.client
    }
}

impl Api {
    fn new(server: &Server, key: String) -> Api {
        let http = std::net::SocketAddr::from(([127, 0, 0, 1], server.ports.port(HTTP)));
        Api {
            client: ApiClient::new(http, &key),
            http,
        }
    }

    /// Every event of the log after `since` (all pages), and the cursor after them.
    async fn log_since(&self, mut since: i64) -> (Vec<Event>, i64) {
        let mut all = Vec::new();
        loop {
            let (status, page) = self
                .send(
                    reqwest::Method::GET,
                    &format!("/v1/events?since={since}&limit=1000"),
                    None,
                )
                .await;
            assert_eq!(status, 200, "{page}");
            let events: Vec<Event> =
                serde_json::from_value(page["events"].clone()).expect("a page of events");
            let next = page["next_since"].as_i64().expect("next_since");
            if events.is_empty() {
                return (all, next.max(since));
            }
            all.extend(events);
            since = next;
        }
    }

    /// The call's events in the log after `since`, once one of `kind` is there (bounded poll).
    async fn log_until(&self, since: i64, call: &str, kind: &str) -> Vec<Event> {
        let deadline = Instant::now() + GUARD;
        loop {
            let events = of_call(&self.log_since(since).await.0, call);
            if events.iter().any(|e| e.kind == kind) {
                return events;
            }
            assert!(
                Instant::now() < deadline,
                "no {kind} in the log for call {call}: {:?}",
                kinds(&events)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `GET /v1/events` upgraded to a WebSocket, the key on the handshake.
    async fn connect(&self, query: &str) -> Ws {
        connect_events(self.http, self.key(), query).await
    }

    /// Places a call from `api` to the callee: its id.
    async fn originate(&self) -> String {
        let (status, created) = self
            .send(
                reqwest::Method::POST,
                "/v1/calls",
                Some(json!({"from": "api", "to": CALLEE})),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        created["id"].as_str().expect("id").to_owned()
    }

    /// Plays the beep to the called phone: the playback id.
    async fn play_beep(&self, call: &str) -> String {
        let (status, played) = self
            .send(
                reqwest::Method::POST,
                &format!("/v1/calls/{call}/play"),
                Some(json!({"tone": "beep"})),
            )
            .await;
        assert_eq!(status, 201, "{played}");
        played["playback_id"]
            .as_str()
            .expect("playback_id")
            .to_owned()
    }

    async fn dtmf(&self, call: &str) {
        let (status, body) = self
            .send(
                reqwest::Method::POST,
                &format!("/v1/calls/{call}/dtmf"),
                Some(json!({"digits": DIGITS})),
            )
            .await;
        assert_eq!(status, 204, "{body}");
    }

    async fn hang_up(&self, call: &str) {
        let (status, body) = self
            .send(reqwest::Method::DELETE, &format!("/v1/calls/{call}"), None)
            .await;
        assert_eq!(status, 204, "{body}");
    }
}

/// Reads frames into `seen` until the call's `kind` arrives. Frames of no call must be
/// registration events (the stream is unfiltered); frames of another call fail the test.
async fn read_until(ws: &mut Ws, seen: &mut Vec<Event>, call: &str, kind: &str) {
    loop {
        let e = next_event(ws).await;
        let ours = is_of(&e, call);
        assert!(
            ours || (e.call_id.is_none() && e.kind.starts_with("registration.")),
            "an event of nothing this test did: {e:?}"
        );
        let done = ours && e.kind == kind;
        seen.push(e);
        if done {
            return;
        }
    }
}

fn is_of(e: &Event, call: &str) -> bool {
    e.call_id.is_some_and(|c| c.to_string() == call)
}

fn of_call(events: &[Event], call: &str) -> Vec<Event> {
    events.iter().filter(|e| is_of(e, call)).cloned().collect()
}

fn kinds(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

fn assert_strictly_increasing(events: &[Event], what: &str) {
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "{what}: seqs not strictly increasing (a duplicate or a reorder): {seqs:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The called phone.

/// What the callee's RTP port received from the server.
#[derive(Debug, Default)]
struct Heard {
    pcmu: usize,
    /// PCMU frames louder than [`AUDIBLE_DBFS`].
    audible: usize,
    /// RFC 4733 events, one per event (its packets share an RTP timestamp), in order.
    digits: Vec<u8>,
    digit_timestamps: Vec<u32>,
}

/// SIPp as 2001 (`uas_answer.xml`), with its SDP naming an RTP port of the test.
struct Callee {
    sipp: Sipp,
    media_file: PathBuf,
    heard: Arc<Mutex<Heard>>,
    stop: Arc<AtomicBool>,
    rtp: Option<thread::JoinHandle<()>>,
}

impl Callee {
    /// Registers 2001 from the UAS's port and starts the UAS there.
    fn start(server: &Server) -> Callee {
        register_callee(server);
        let socket = UdpSocket::bind("127.0.0.1:0").expect("callee RTP socket");
        let port = socket.local_addr().expect("addr").port();
        let media_file = server.dir.path().join("callee-media.txt");
        let _ = std::fs::remove_file(&media_file);
        let sipp = start_callee(
            server,
            "uas_answer",
            &[
                "-key".into(),
                "callee_rtp".into(),
                port.to_string(),
                "-set".into(),
                "media_file".into(),
                media_file.display().to_string(),
            ],
        );
        let heard = Arc::new(Mutex::new(Heard::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let rtp = Some(listen(
            socket,
            server.ports.rtp_range(),
            heard.clone(),
            stop.clone(),
        ));
        Callee {
            sipp,
            media_file,
            heard,
            stop,
            rtp,
        }
    }

    fn heard<T>(&self, f: impl FnOnce(&Heard) -> T) -> T {
        f(&self.heard.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Bounded poll until the digits sent have all arrived as RFC 4733 events.
    fn wait_digits(&self) {
        let deadline = Instant::now() + GUARD;
        while self.heard(|h| h.digits.len()) < DIGIT_EVENTS.len() {
            assert!(
                Instant::now() < deadline,
                "the callee's RTP port did not receive {DIGITS} as RFC 4733 events: {:?}",
                self.heard(|h| h.digits.clone())
            );
            thread::sleep(POLL);
        }
        assert_eq!(self.heard(|h| h.digits.clone()), DIGIT_EVENTS);
    }

    /// The UAS got the server's BYE and answered it (its scenario passed); the relayed offer
    /// named the server's RTP port; the beep was audible at the callee.
    fn finished(mut self, server: &Server) {
        self.sipp.succeeded(server);
        let offer = sdp_lines(&self.media_file, "offer");
        assert_eq!(offer.len(), 1, "one INVITE with an SDP offer");
        assert_anchored(server, "the placed call's offer", &offer[0], 0);
        self.stop.store(true, Ordering::SeqCst);
        if let Some(rtp) = self.rtp.take() {
            rtp.join().expect("RTP listener");
        }
        let heard = self.heard(|h| (h.pcmu, h.audible));
        assert!(
            heard.1 >= BEEP_FRAMES_MIN,
            "the beep is not audible at the callee: {} PCMU frames, {} above {AUDIBLE_DBFS} dBFS",
            heard.0,
            heard.1
        );
    }
}

impl Drop for Callee {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Receives the server's RTP for the callee until `stop`: PCMU levels and RFC 4733 events.
fn listen(
    socket: UdpSocket,
    rtp: (u16, u16),
    heard: Arc<Mutex<Heard>>,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("set_read_timeout");
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::SeqCst) {
            let Ok((n, from)) = socket.recv_from(&mut buf) else {
                continue;
            };
            let from_server = from.ip().is_loopback() && (rtp.0..=rtp.1).contains(&from.port());
            // RTP version 2, no CSRCs or extension (what the server sends).
            if !from_server || n < 12 || buf[0] != 0x80 {
                continue;
            }
            let payload = &buf[12..n];
            let timestamp = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
            let mut h = heard.lock().unwrap_or_else(|e| e.into_inner());
            match buf[1] & 0x7f {
                0 => {
                    h.pcmu += 1;
                    let samples: Vec<i16> = payload.iter().map(|&b| ulaw_to_linear(b)).collect();
                    if rms_dbfs(&samples) > AUDIBLE_DBFS {
                        h.audible += 1;
                    }
                }
                // telephone-event (the callee answered 101): one event per timestamp.
                101 if payload.len() == 4 && !h.digit_timestamps.contains(&timestamp) => {
                    h.digit_timestamps.push(timestamp);
                    h.digits.push(payload[0]);
                }
                _ => {}
            }
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[test]
fn originate_play_dtmf_and_hang_up_with_exactly_the_expected_events_on_the_websocket() {
    let Some(server) = setup() else { return };
    let api = Api::new(&server, control_key(&server));
    let callee = Callee::start(&server);
    let rt = runtime();

    // The stream opens before the call exists, from the log's current end.
    let (_, start) = rt.block_on(api.log_since(0));
    let mut ws = rt.block_on(api.connect(&format!("since={start}")));
    let mut seen = Vec::new();
    let (call, playback) = rt.block_on(async {
        let call = api.originate().await;
        read_until(&mut ws, &mut seen, &call, "call.answered").await;
        let playback = api.play_beep(&call).await;
        read_until(&mut ws, &mut seen, &call, "playback.finished").await;
        api.dtmf(&call).await;
        (call, playback)
    });
    callee.wait_digits();
    rt.block_on(async {
        api.hang_up(&call).await;
        read_until(&mut ws, &mut seen, &call, "call.ended").await;
    });
    callee.finished(&server);

    assert_strictly_increasing(&seen, "the WebSocket");
    assert!(
        seen.iter().all(|e| e.seq > start),
        "nothing from before since={start}"
    );
    let ours = of_call(&seen, &call);
    assert_eq!(
        kinds(&ours),
        CALL_EVENTS,
        "the call's events on the WebSocket"
    );
    let by_kind = |k: &str| ours.iter().find(|e| e.kind == k).expect("listed");
    assert_eq!(by_kind("call.ringing").data["code"], 180);
    assert_eq!(by_kind("playback.started").data["playback_id"], playback);
    assert_eq!(by_kind("playback.finished").data["playback_id"], playback);
    assert_eq!(by_kind("playback.finished").data["interrupted"], false);
    assert_eq!(by_kind("dtmf.sent").data["digits"], DIGITS);
    assert_eq!(by_kind("call.ended").data["cause"], "normal_clearing");

    // The stream is the log: the same events, seqs and contents.
    let (log, _) = rt.block_on(api.log_since(start));
    assert_eq!(
        ours,
        of_call(&log, &call),
        "the WebSocket and the log differ"
    );
    rt.block_on(async {
        let (status, gone) = api
            .send(reqwest::Method::GET, &format!("/v1/calls/{call}"), None)
            .await;
        assert_eq!(status, 404, "an ended call is not live: {gone}");
        let _ = ws.close(None).await;
    });
}

#[test]
fn a_websocket_closed_mid_call_and_resumed_with_since_gets_every_remaining_event_once() {
    let Some(server) = setup() else { return };
    let api = Api::new(&server, control_key(&server));
    let callee = Callee::start(&server);
    let rt = runtime();

    let (start, call, before) = rt.block_on(async {
        let (_, start) = api.log_since(0).await;
        let mut ws = api.connect(&format!("since={start}")).await;
        let call = api.originate().await;
        let mut before = Vec::new();
        read_until(&mut ws, &mut before, &call, "call.answered").await;
        // Gone mid-call: whatever the server sends from here on is not read.
        ws.close(None).await.expect("close the WebSocket");
        drop(ws);

        api.play_beep(&call).await;
        api.log_until(start, &call, "playback.finished").await;
        api.dtmf(&call).await;
        (start, call, before)
    });
    callee.wait_digits();
    rt.block_on(api.hang_up(&call));
    callee.finished(&server);
    let last = before.last().expect("events before the disconnect").seq;

    let after = rt.block_on(async {
        api.log_until(start, &call, "call.ended").await;
        let mut ws = api.connect(&format!("since={last}")).await;
        let mut after = Vec::new();
        read_until(&mut ws, &mut after, &call, "call.ended").await;
        let _ = ws.close(None).await;
        after
    });

    assert_strictly_increasing(&before, "before the disconnect");
    assert!(
        after.iter().all(|e| e.seq > last),
        "resumed with since={last}, got older events: {:?}",
        after.iter().map(|e| e.seq).collect::<Vec<_>>()
    );
    assert_strictly_increasing(&after, "after resuming");
    let before = of_call(&before, &call);
    let after = of_call(&after, &call);
    assert_eq!(kinds(&before), &CALL_EVENTS[..3], "before the disconnect");
    assert_eq!(kinds(&after), &CALL_EVENTS[3..], "after resuming");
    // Together they are the call's whole history in the log, each event once.
    let union: Vec<Event> = before.into_iter().chain(after).collect();
    let (log, _) = rt.block_on(api.log_since(start));
    assert_eq!(
        union,
        of_call(&log, &call),
        "the resumed stream and the log differ"
    );
}
