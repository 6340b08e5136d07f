//! The `/v1` resource endpoints over a real socket: call records (filters, paging, CSV),
//! recordings (metadata, WAV with Range, audited delete), sessions (timeline, attributes),
//! customers, users and registrations. Data is seeded through the store's writer, as the call
//! path writes it; scopes are tested in tests/api.rs.

mod common;
#[allow(unused_macros)]
#[macro_use]
mod store_harness;
use store_harness::call_started;

use common::{TestServer, Ua};
use reqwest::StatusCode;
use serde_json::Value;
use switchboard::media::rtp::{LegStats, Ssrc};
use switchboard::store::{
    CallId, Direction, EndedRecording, HangupBy, LegId, LegKind, LegRole, NewCall, NewLeg,
    NewRecording, RecordingId, RecordingKind, RecordingState, Scope, SessionId, Store, StoreCmd,
};

const T0: i64 = 1_700_000_000_000; // 2023-11-14T22:13:20Z

struct Api {
    base: String,
    client: reqwest::Client,
    read: String,
    control: String,
    admin: String,
}

impl Api {
    async fn new(server: &TestServer) -> Api {
        let store = server.store();
        let mut keys = Vec::new();
        for scope in [Scope::Read, Scope::Control, Scope::Admin] {
            let (_, key) = store
                .create_api_key(&format!("test-{scope}"), scope)
                .await
                .expect("create key");
            keys.push(key);
        }
        let admin = keys.pop().expect("admin");
        let control = keys.pop().expect("control");
        let read = keys.pop().expect("read");
        Api {
            base: format!("http://{}", server.http),
            client: reqwest::Client::new(),
            read,
            control,
            admin,
        }
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.read)
    }

    async fn json(&self, path: &str) -> Value {
        let resp = self.get(path).send().await.expect("request");
        assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
        resp.json().await.expect("json")
    }

    /// GET expecting a problem document with `status`.
    async fn problem(&self, path: &str, status: u16) -> Value {
        let resp = self.get(path).send().await.expect("request");
        expect_problem(resp, status).await
    }
}

async fn expect_problem(resp: reqwest::Response, status: u16) -> Value {
    assert_eq!(resp.status().as_u16(), status, "{}", resp.url());
    assert_eq!(
        resp.headers()["content-type"],
        "application/problem+json",
        "{}",
        resp.url()
    );
    let body: Value = resp.json().await.expect("problem json");
    assert_eq!(body["status"], status);
    body
}

fn new_call(session: SessionId, caller: &str, callee: &str, started_ms: i64) -> NewCall {
    NewCall {
        call_id: CallId::new(),
        session_id: session,
        sip_call_id: format!("{}@198.51.100.1", uuid::Uuid::new_v4()),
        caller: caller.into(),
        callee: callee.into(),
        direction: Direction::Inbound,
        started_ms,
    }
}

/// A call that was answered at +1 s and ended at +61 s with `cause`.
fn seed_call(store: &Store, call: &NewCall, cause: &str) {
    let w = store.writer();
    call_started(&w, call);
    w.send(StoreCmd::CallAnswered {
        call_id: call.call_id,
        at_ms: call.started_ms + 1000,
    });
    w.send(StoreCmd::CallEnded {
        call_id: call.call_id,
        at_ms: call.started_ms + 61_000,
        hangup_cause: cause.into(),
        hangup_by: HangupBy::Caller,
        final_code: Some(200),
    });
}

fn stats(received: u64, lost: u64) -> LegStats {
    LegStats {
        local_ssrc: Ssrc(1),
        remote_ssrc: Some(Ssrc(2)),
        packets_sent: received,
        octets_sent: received * 160,
        packets_received: received,
        octets_received: received * 160,
        packets_expected: received + lost,
        packets_lost: lost,
        duplicates: 0,
        loss_fraction: lost as f64 / (received + lost) as f64,
        jitter_ms: 3.5,
        rtt_ms: Some(20.0),
        remote_loss_fraction: None,
        remote_cumulative_lost: None,
        remote_jitter_ms: None,
        mos: Some(4.1),
    }
}

/// A finished recording row whose file holds `bytes`; returns its id.
async fn seed_recording(
    server: &TestServer,
    session: SessionId,
    call: CallId,
    kind: RecordingKind,
    mailbox: Option<&str>,
    bytes: &[u8],
) -> (RecordingId, std::path::PathBuf) {
    let id = RecordingId::new();
    let rel = format!("recordings/2023/11/14/{session}/{id}.wav");
    let file = server.dir.path().join(&rel);
    std::fs::create_dir_all(file.parent().expect("dir")).expect("mkdir");
    std::fs::write(&file, bytes).expect("write wav");
    let w = server.store().writer();
    w.send(StoreCmd::RecordingStarted(NewRecording {
        id,
        session_id: session,
        call_id: call,
        path: rel,
        channels: 1,
        sample_rate: 8000,
        started_ms: T0 + 2000,
        kind,
        mailbox: mailbox.map(str::to_owned),
    }));
    w.send(StoreCmd::RecordingEnded(EndedRecording {
        id,
        state: RecordingState::Complete,
        duration_ms: Some(1000),
        size_bytes: Some(bytes.len() as i64),
        sha256: Some("00".repeat(32)),
        ended_ms: T0 + 3000,
        dropped_frames: 0,
    }));
    (id, file)
}

fn wav_bytes(len: usize) -> Vec<u8> {
    let mut v = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
    v.extend((0..len - v.len()).map(|i| (i % 251) as u8));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_records_filter_page_and_show_legs_with_media_quality() {
    let server = TestServer::start(|_| {}).await;
    let api = Api::new(&server).await;
    let store = server.store();
    let s1 = SessionId::new();
    let s2 = SessionId::new();
    let a = new_call(s1, "+4930111", "support", T0);
    let b = new_call(s1, "+4930111", "sales", T0 + 100_000);
    let mut c = new_call(s2, "+4930222", "support", T0 + 200_000);
    c.direction = Direction::Outbound;
    seed_call(store, &a, "normal_clearing");
    seed_call(store, &b, "no_answer");
    seed_call(store, &c, "normal_clearing");
    let leg = LegId::new();
    let w = store.writer();
    w.send(StoreCmd::LegStarted(NewLeg {
        leg_id: leg,
        call_id: a.call_id,
        role: LegRole::Caller,
        kind: LegKind::Sip,
        sip_call_id: Some(a.sip_call_id.clone()),
        remote_uri: Some("sip:+4930111@198.51.100.1".into()),
        started_ms: T0,
    }));
    w.send(StoreCmd::LegMedia {
        leg_id: leg,
        codec: Some("PCMU".into()),
        stats: stats(990, 10).into(),
    });
    store.flush().await.expect("flush");

    let all = api.json("/v1/call-records").await;
    let ids: Vec<&str> = all["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|c| c["id"].as_str().expect("id"))
        .collect();
    let want: Vec<String> = [c.call_id, b.call_id, a.call_id]
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(ids, want, "newest first");
    assert!(all["next_before"].is_null(), "one page");

    let only = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|c| c["id"].as_str().expect("id").to_owned())
            .collect()
    };
    let by_caller = api.json("/v1/call-records?caller=%2B4930222").await;
    assert_eq!(only(&by_caller), vec![c.call_id.to_string()]);
    let by_direction = api.json("/v1/call-records?direction=outbound").await;
    assert_eq!(only(&by_direction), vec![c.call_id.to_string()]);
    let by_cause = api.json("/v1/call-records?hangup_cause=no_answer").await;
    assert_eq!(only(&by_cause), vec![b.call_id.to_string()]);
    let by_callee = api.json("/v1/call-records?callee=support").await;
    assert_eq!(only(&by_callee).len(), 2);
    let by_session = api.json(&format!("/v1/call-records?session_id={s1}")).await;
    assert_eq!(
        only(&by_session),
        vec![b.call_id.to_string(), a.call_id.to_string()]
    );
    // since in ms, until as RFC 3339 (T0 + 150 s).
    let window = api
        .json(&format!(
            "/v1/call-records?since={}&until=2023-11-14T22:15:50Z",
            T0 + 1
        ))
        .await;
    assert_eq!(only(&window), vec![b.call_id.to_string()]);

    // Paging: two, then the rest.
    let page1 = api.json("/v1/call-records?limit=2").await;
    assert_eq!(only(&page1).len(), 2);
    let cursor = page1["next_before"].as_str().expect("cursor").to_owned();
    assert_eq!(cursor, b.call_id.to_string());
    let page2 = api
        .json(&format!("/v1/call-records?limit=2&before={cursor}"))
        .await;
    assert_eq!(only(&page2), vec![a.call_id.to_string()]);
    assert!(page2["next_before"].is_null());

    // Detail with legs and media quality.
    let detail = api.json(&format!("/v1/call-records/{}", a.call_id)).await;
    assert_eq!(detail["caller"], "+4930111");
    assert_eq!(detail["duration_s"], 61);
    assert_eq!(detail["billable_s"], 60);
    assert_eq!(detail["direction"], "inbound");
    let legs = detail["legs"].as_array().expect("legs");
    assert_eq!(legs.len(), 1);
    let media = &legs[0]["media"];
    assert_eq!(media["codec"], "PCMU");
    assert_eq!(media["packets_received"], 990);
    assert_eq!(media["packets_lost"], 10);
    assert_eq!(media["loss_percent"], 1.0);
    assert_eq!(media["jitter_ms"], 3.5);
    assert_eq!(media["mos"], 4.1);

    // Errors.
    api.problem(&format!("/v1/call-records/{}", CallId::new()), 404)
        .await;
    api.problem("/v1/call-records/not-a-uuid", 400).await;
    api.problem("/v1/call-records?limit=0", 400).await;
    api.problem("/v1/call-records?limit=501", 400).await;
    api.problem("/v1/call-records?since=yesterday", 400).await;
    api.problem("/v1/call-records?direction=sideways", 400)
        .await;
    api.problem("/v1/call-records?before=nope", 400).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_records_export_as_csv_with_a_header_and_rfc_4180_quoting() {
    let server = TestServer::start(|_| {}).await;
    let api = Api::new(&server).await;
    let store = server.store();
    let tricky = new_call(SessionId::new(), "\"Smith, J\" <sip:7@x>", "support", T0);
    let plain = new_call(SessionId::new(), "+4930111", "sales", T0 + 1000);
    seed_call(store, &tricky, "normal_clearing");
    seed_call(store, &plain, "busy");
    store.flush().await.expect("flush");

    let resp = api
        .get("/v1/call-records.csv")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::OK);
    let ctype = resp.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(ctype.starts_with("text/csv"), "{ctype}");
    let body = resp.text().await.expect("text");
    let lines: Vec<&str> = body.split_terminator("\r\n").collect();
    assert_eq!(lines.len(), 3, "{body}");
    assert!(
        lines[0].starts_with("id,session_id,sip_call_id,direction,caller,callee,started_ms"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with(&plain.call_id.to_string()),
        "newest first"
    );
    assert!(lines[1].contains(",+4930111,sales,"), "{}", lines[1]);
    assert!(lines[1].ends_with(",busy,caller,200"), "{}", lines[1]);
    assert!(
        lines[2].contains(",\"\"\"Smith, J\"\" <sip:7@x>\",support,"),
        "{}",
        lines[2]
    );

    // The same filters apply.
    let busy = api
        .get("/v1/call-records.csv?hangup_cause=busy")
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("text");
    assert_eq!(busy.split_terminator("\r\n").count(), 2, "{busy}");
    let limited = api
        .get("/v1/call-records.csv?limit=1")
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("text");
    assert_eq!(limited.split_terminator("\r\n").count(), 2, "{limited}");
    api.problem("/v1/call-records.csv?until=later", 400).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_audio_is_served_whole_or_by_range_and_416_outside() {
    let server = TestServer::start(|_| {}).await;
    let api = Api::new(&server).await;
    let store = server.store();
    let call = new_call(SessionId::new(), "+4930111", "support", T0);
    seed_call(store, &call, "normal_clearing");
    let bytes = wav_bytes(1000);
    let (id, _) = seed_recording(
        &server,
        call.session_id,
        call.call_id,
        RecordingKind::Call,
        None,
        &bytes,
    )
    .await;
    let (vm, _) = seed_recording(
        &server,
        call.session_id,
        call.call_id,
        RecordingKind::Voicemail,
        Some("sales"),
        &wav_bytes(100),
    )
    .await;
    store.flush().await.expect("flush");

    // Metadata, without the file path.
    let meta = api.json(&format!("/v1/recordings/{id}")).await;
    assert_eq!(meta["state"], "complete");
    assert_eq!(meta["kind"], "call");
    assert_eq!(meta["size_bytes"], 1000);
    assert!(meta.get("path").is_none(), "{meta}");
    assert!(!meta.to_string().contains("2023/11/14"), "{meta}");

    // List and filters.
    let ids = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|r| r["id"].as_str().expect("id").to_owned())
            .collect()
    };
    let all = api.json("/v1/recordings").await;
    assert_eq!(ids(&all), vec![vm.to_string(), id.to_string()]);
    let voicemails = api
        .json("/v1/recordings?kind=voicemail&mailbox=sales")
        .await;
    assert_eq!(ids(&voicemails), vec![vm.to_string()]);
    let by_call = api
        .json(&format!(
            "/v1/recordings?call_id={}&kind=call",
            call.call_id
        ))
        .await;
    assert_eq!(ids(&by_call), vec![id.to_string()]);
    let none = api
        .json(&format!("/v1/recordings?since={}", T0 + 10_000))
        .await;
    assert!(ids(&none).is_empty());

    // The whole file.
    let audio = format!("/v1/recordings/{id}/audio");
    let whole = api.get(&audio).send().await.expect("request");
    assert_eq!(whole.status(), StatusCode::OK);
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    assert_eq!(whole.headers()["content-type"], "audio/wav");
    assert_eq!(whole.headers()["content-length"], "1000");
    assert_eq!(whole.bytes().await.expect("body").as_ref(), &bytes[..]);

    // The first bytes.
    let first = api
        .get(&audio)
        .header("Range", "bytes=0-43")
        .send()
        .await
        .expect("request");
    assert_eq!(first.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(first.headers()["content-range"], "bytes 0-43/1000");
    assert_eq!(first.bytes().await.expect("body").as_ref(), &bytes[..44]);

    // A middle range and a suffix range.
    let middle = api
        .get(&audio)
        .header("Range", "bytes=500-599")
        .send()
        .await
        .expect("request");
    assert_eq!(middle.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(middle.headers()["content-range"], "bytes 500-599/1000");
    assert_eq!(
        middle.bytes().await.expect("body").as_ref(),
        &bytes[500..600]
    );
    let suffix = api
        .get(&audio)
        .header("Range", "bytes=-10")
        .send()
        .await
        .expect("request");
    assert_eq!(suffix.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(suffix.headers()["content-range"], "bytes 990-999/1000");
    assert_eq!(suffix.bytes().await.expect("body").as_ref(), &bytes[990..]);

    // Outside the file.
    let outside = api
        .get(&audio)
        .header("Range", "bytes=1000-")
        .send()
        .await
        .expect("request");
    assert_eq!(outside.headers()["content-range"], "bytes */1000");
    expect_problem(outside, 416).await;

    // Unknown and malformed ids.
    api.problem(&format!("/v1/recordings/{}/audio", RecordingId::new()), 404)
        .await;
    api.problem(&format!("/v1/recordings/{}", RecordingId::new()), 404)
        .await;
    api.problem("/v1/recordings/..%2F..%2Fetc%2Fpasswd/audio", 400)
        .await;
    api.problem("/v1/recordings?kind=video", 400).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_recording_removes_its_file_keeps_the_row_deleted_and_audits_the_key() {
    let server = TestServer::start(|_| {}).await;
    let api = Api::new(&server).await;
    let store = server.store();
    let call = new_call(SessionId::new(), "+4930111", "support", T0);
    seed_call(store, &call, "normal_clearing");
    let (id, file) = seed_recording(
        &server,
        call.session_id,
        call.call_id,
        RecordingKind::Call,
        None,
        &wav_bytes(200),
    )
    .await;
    // One still being written: not deletable.
    let open = RecordingId::new();
    store
        .writer()
        .send(StoreCmd::RecordingStarted(NewRecording {
            id: open,
            session_id: call.session_id,
            call_id: call.call_id,
            path: format!("recordings/2023/11/14/{}/{open}.wav", call.session_id),
            channels: 1,
            sample_rate: 8000,
            started_ms: T0,
            kind: RecordingKind::Call,
            mailbox: None,
        }));
    store.flush().await.expect("flush");
    assert!(file.exists());

    let url = |id: &str| format!("{}/v1/recordings/{id}", api.base);
    let resp = api
        .client
        .delete(url(&id.to_string()))
        .bearer_auth(&api.admin)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(!file.exists(), "the file is gone");

    let meta = api.json(&format!("/v1/recordings/{id}")).await;
    assert_eq!(meta["state"], "deleted");
    api.problem(&format!("/v1/recordings/{id}/audio"), 404)
        .await;
    let listed = api.json("/v1/recordings").await;
    assert!(
        !listed.to_string().contains(&id.to_string()),
        "deleted recordings are not listed"
    );

    let again = api
        .client
        .delete(url(&id.to_string()))
        .bearer_auth(&api.admin)
        .send()
        .await
        .expect("request");
    expect_problem(again, 404).await;
    let busy = api
        .client
        .delete(url(&open.to_string()))
        .bearer_auth(&api.admin)
        .send()
        .await
        .expect("request");
    expect_problem(busy, 409).await;
    let bad = api
        .client
        .delete(url("x"))
        .bearer_auth(&api.admin)
        .send()
        .await
        .expect("request");
    expect_problem(bad, 400).await;

    // The audit row says which key did it.
    let audit: Value = api
        .client
        .get(format!("{}/v1/audit", api.base))
        .bearer_auth(&api.admin)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let items = audit["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{audit}");
    assert_eq!(items[0]["action"], "recording.delete");
    assert_eq!(items[0]["target_kind"], "recording");
    assert_eq!(items[0]["target_id"], id.to_string());
    assert_eq!(items[0]["actor_name"], "test-admin");
    assert!(items[0]["actor_key_id"].is_string());
    let at = items[0]["at_ms"].as_i64().expect("at_ms");
    assert!((switchboard::clock::unix_ms() - at).abs() < 60_000);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_timeline_holds_calls_recordings_attributes_and_events_and_attributes_can_be_set() {
    let server = TestServer::start(|_| {}).await;
    let api = Api::new(&server).await;
    let store = server.store();
    let call = new_call(SessionId::new(), "+4930111", "support", T0);
    seed_call(store, &call, "normal_clearing");
    let session = call.session_id;
    let w = store.writer();
    for (i, kind) in ["call.answered", "dtmf.received", "ivr.step", "call.ended"]
        .iter()
        .enumerate()
    {
        w.send(StoreCmd::Event {
            at_ms: T0 + i as i64,
            kind: (*kind).into(),
            session_id: Some(session),
            call_id: Some(call.call_id),
            data: serde_json::json!({"i": i}),
        });
    }
    w.send(StoreCmd::Event {
        at_ms: T0,
        kind: "call.answered".into(),
        session_id: Some(SessionId::new()),
        call_id: None,
        data: serde_json::json!({}),
    });
    w.send(StoreCmd::SessionAttribute {
        session_id: session,
        call_id: Some(call.call_id),
        name: "account".into(),
        value: "42".into(),
        at_ms: T0,
    });
    let (rec, _) = seed_recording(
        &server,
        session,
        call.call_id,
        RecordingKind::Call,
        None,
        &wav_bytes(100),
    )
    .await;
    store.flush().await.expect("flush");

    let t = api.json(&format!("/v1/sessions/{session}")).await;
    assert_eq!(t["id"], session.to_string());
    assert_eq!(t["channel"], "voice");
    assert!(t["customer_id"].is_string());
    assert_eq!(t["attributes"], serde_json::json!({"account": "42"}));
    assert_eq!(t["calls"][0]["id"], call.call_id.to_string());
    assert!(t["calls"][0]["legs"].is_array());
    assert_eq!(t["recordings"][0]["id"], rec.to_string());
    let kinds: Vec<&str> = t["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["type"].as_str().expect("type"))
        .collect();
    assert_eq!(
        kinds,
        ["call.answered", "dtmf.received", "ivr.step", "call.ended"]
    );

    // Set attributes (control scope): replaces one, adds one, keeps the rest.
    let put = |body: Value, id: String| {
        api.client
            .put(format!("{}/v1/sessions/{id}/attributes", api.base))
            .bearer_auth(&api.control)
            .json(&body)
            .send()
    };
    let resp = put(
        serde_json::json!({"account": "43", "intent": "billing"}),
        session.to_string(),
    )
    .await
    .expect("request");
    assert_eq!(resp.status(), StatusCode::OK);
    let attrs: Value = resp.json().await.expect("json");
    assert_eq!(
        attrs,
        serde_json::json!({"account": "43", "intent": "billing"})
    );
    let t = api.json(&format!("/v1/sessions/{session}")).await;
    assert_eq!(t["attributes"]["account"], "43");
    let events = t["events"].as_array().expect("events");
    let set: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "session.attribute")
        .collect();
    assert_eq!(set.len(), 2, "one event per attribute");
    assert_eq!(set[0]["data"]["name"], "account");
    assert_eq!(set[0]["data"]["value"], "43");
    let seqs: Vec<i64> = events
        .iter()
        .map(|e| e["seq"].as_i64().expect("seq"))
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in log order");

    // Errors.
    let bad_name = put(serde_json::json!({"no spaces": "x"}), session.to_string())
        .await
        .expect("request");
    expect_problem(bad_name, 400).await;
    let not_strings = put(serde_json::json!({"n": 1}), session.to_string())
        .await
        .expect("request");
    // Well-formed JSON of the wrong shape: 422, as on every route with a body.
    expect_problem(not_strings, 422).await;
    let unknown = put(serde_json::json!({"a": "b"}), SessionId::new().to_string())
        .await
        .expect("request");
    expect_problem(unknown, 404).await;
    let bad_id = put(serde_json::json!({"a": "b"}), "123".into())
        .await
        .expect("request");
    expect_problem(bad_id, 400).await;
    api.problem(&format!("/v1/sessions/{}", SessionId::new()), 404)
        .await;
    api.problem("/v1/sessions/zzz", 400).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_are_found_by_identity_with_their_sessions() {
    let server = TestServer::start(|_| {}).await;
    let api = Api::new(&server).await;
    let store = server.store();
    let first = new_call(SessionId::new(), "+4930111", "support", T0);
    let second = new_call(SessionId::new(), "+4930111", "sales", T0 + 1000);
    seed_call(store, &first, "normal_clearing");
    seed_call(store, &second, "normal_clearing");
    store.flush().await.expect("flush");

    let found = api.json("/v1/customers?phone=%2B4930111").await;
    let items = found["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    let customer = &items[0];
    assert_eq!(
        customer["identities"],
        serde_json::json!([{"kind": "phone", "value": "+4930111"}])
    );
    let sessions: Vec<&str> = customer["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .map(|s| s["id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        sessions,
        [first.session_id.to_string(), second.session_id.to_string()]
    );
    let id = customer["id"].as_str().expect("id");
    let got = api.json(&format!("/v1/customers/{id}")).await;
    assert_eq!(&got, customer);

    let nobody = api.json("/v1/customers?phone=%2B4930999").await;
    assert_eq!(nobody["items"], serde_json::json!([]));
    let by_email = api.json("/v1/customers?email=a%40example.com").await;
    assert_eq!(by_email["items"], serde_json::json!([]));
    api.problem("/v1/customers", 400).await;
    api.problem("/v1/customers?phone=1&email=a%40b", 400).await;
    api.problem(&format!("/v1/customers/{}", uuid::Uuid::now_v7()), 404)
        .await;
    api.problem("/v1/customers/1234", 400).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_created_read_changed_and_removed_without_exposing_hashes() {
    let server = TestServer::start(|_| {}).await;
    let api = Api::new(&server).await;
    let users = format!("{}/v1/users", api.base);
    let post = |body: Value| {
        api.client
            .post(&users)
            .bearer_auth(&api.admin)
            .json(&body)
            .send()
    };
    let created = post(serde_json::json!({"ext": "2001", "name": "Ada", "password": "first-pass"}))
        .await
        .expect("request");
    assert_eq!(created.status(), StatusCode::CREATED);
    let body: Value = created.json().await.expect("json");
    assert_eq!(body["ext"], "2001");
    assert_eq!(body["name"], "Ada");
    assert!(!body.to_string().contains("ha1"), "{body}");

    let dup = post(serde_json::json!({"ext": "2001", "password": "other-pass"}))
        .await
        .expect("request");
    expect_problem(dup, 409).await;
    let bad_ext = post(serde_json::json!({"ext": "20 01", "password": "long-enough"}))
        .await
        .expect("request");
    expect_problem(bad_ext, 400).await;
    let short = post(serde_json::json!({"ext": "2002", "password": "short"}))
        .await
        .expect("request");
    expect_problem(short, 400).await;
    let missing = post(serde_json::json!({"ext": "2002"}))
        .await
        .expect("request");
    expect_problem(missing, 422).await;

    let one = api.json("/v1/users/2001").await;
    assert_eq!(one["name"], "Ada");
    let list = api.json("/v1/users").await;
    assert_eq!(list["items"].as_array().expect("items").len(), 1);
    assert!(!list.to_string().contains("ha1"));

    // Change the name and the password; the new password registers.
    let patch = api
        .client
        .patch(format!("{users}/2001"))
        .bearer_auth(&api.admin)
        .json(&serde_json::json!({"name": "Ada L.", "password": "second-pass"}))
        .send()
        .await
        .expect("request");
    assert_eq!(patch.status(), StatusCode::OK);
    let patched: Value = patch.json().await.expect("json");
    assert_eq!(patched["name"], "Ada L.");
    let ua = Ua::new(server.sip_udp).await;
    assert_eq!(ua.register("2001", "second-pass", 300).await.status.0, 200);
    let clear = api
        .client
        .patch(format!("{users}/2001"))
        .bearer_auth(&api.admin)
        .json(&serde_json::json!({"name": null}))
        .send()
        .await
        .expect("request");
    let cleared: Value = clear.json().await.expect("json");
    assert!(cleared["name"].is_null(), "{cleared}");
    let patch_missing = api
        .client
        .patch(format!("{users}/9999"))
        .bearer_auth(&api.admin)
        .json(&serde_json::json!({"name": "x"}))
        .send()
        .await
        .expect("request");
    expect_problem(patch_missing, 404).await;

    // Remove.
    let del = || {
        api.client
            .delete(format!("{users}/2001"))
            .bearer_auth(&api.admin)
            .send()
    };
    assert_eq!(
        del().await.expect("request").status(),
        StatusCode::NO_CONTENT
    );
    api.problem("/v1/users/2001", 404).await;
    expect_problem(del().await.expect("request"), 404).await;
    api.problem("/v1/users/a%20b", 400).await;

    // Each change is audited.
    let audit: Value = api
        .client
        .get(format!("{}/v1/audit", api.base))
        .bearer_auth(&api.admin)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|a| a["action"].as_str().expect("action"))
        .collect();
    assert_eq!(
        actions,
        ["user.delete", "user.update", "user.update", "user.create"]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_list_the_registrars_live_bindings() {
    let server = TestServer::start(|_| {}).await;
    let api = Api::new(&server).await;
    server.add_user("3001", "pw-3001-long").await;
    server.add_user("3002", "pw-3002-long").await;
    let a = Ua::new(server.sip_udp).await;
    assert_eq!(a.register("3001", "pw-3001-long", 300).await.status.0, 200);
    let b = Ua::new(server.sip_udp).await;
    assert_eq!(b.register("3002", "pw-3002-long", 300).await.status.0, 200);

    let all = api.json("/v1/registrations").await;
    let items = all["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{all}");
    assert_eq!(items[0]["ext"], "3001");
    assert_eq!(items[0]["transport"], "UDP");
    assert_eq!(items[0]["source"], a.addr().to_string());
    assert_eq!(items[0]["contact"], format!("sip:3001@{}", a.addr()));
    let expires = items[0]["expires_at_ms"].as_i64().expect("expires");
    let left = expires - switchboard::clock::unix_ms();
    assert!((250_000..=300_000).contains(&left), "{left}");

    let one = api.json("/v1/registrations?ext=3002").await;
    let items = one["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["source"], b.addr().to_string());
    let none = api.json("/v1/registrations?ext=9999").await;
    assert_eq!(none["items"], serde_json::json!([]));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_every_resource_route_with_its_scope() {
    let server = TestServer::start(|_| {}).await;
    let api = Api::new(&server).await;
    let doc = api.json("/v1/openapi.json").await;
    for (path, method, scope) in [
        ("/v1/call-records", "get", "read"),
        ("/v1/call-records.csv", "get", "read"),
        ("/v1/call-records/{id}", "get", "read"),
        ("/v1/recordings", "get", "read"),
        ("/v1/recordings/{id}", "get", "read"),
        ("/v1/recordings/{id}", "delete", "admin"),
        ("/v1/recordings/{id}/audio", "get", "read"),
        ("/v1/audit", "get", "admin"),
        ("/v1/sessions/{id}", "get", "read"),
        ("/v1/sessions/{id}/attributes", "put", "control"),
        ("/v1/customers", "get", "read"),
        ("/v1/customers/{id}", "get", "read"),
        ("/v1/users", "get", "read"),
        ("/v1/users", "post", "admin"),
        ("/v1/users/{ext}", "get", "read"),
        ("/v1/users/{ext}", "patch", "admin"),
        ("/v1/users/{ext}", "delete", "admin"),
        ("/v1/registrations", "get", "read"),
    ] {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} missing");
        assert_eq!(op["security"][0]["api_key"][0], scope, "{method} {path}");
        assert!(
            op["responses"]["401"]["content"]["application/problem+json"].is_object(),
            "{method} {path} documents 401"
        );
    }
    server.stop().await;
}
