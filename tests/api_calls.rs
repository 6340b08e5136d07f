//! `/v1/calls` in process over real sockets: placing a call to a registered phone, listing
//! it, playing to it, sending it DTMF and hanging it up through the API (with the events the
//! call writes), control of unknown calls, and redirecting a bridged call into a flow.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{GUARD, TestServer, Ua, answer, call_with_sdp, expect_status, recv_request};
use serde_json::{Value, json};
use switchboard::sip::message::Request;
use switchboard::store::{EventRecord, Scope};

fn sdp(port: u16) -> String {
    format!(
        "v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio {port} RTP/AVP 0 101\na=rtpmap:0 PCMU/8000\na=rtpmap:101 telephone-event/8000\na=fmtp:101 0-15\na=sendrecv\n"
    )
}

// A flow only the API redirects to still needs a route (the checker refuses unused flows).
const PLAN: &str = "
[[routes]]
number = \"777\"
flow = \"parked\"

[[routes]]
name = \"extensions\"
flow = \"ext\"

[[flows.ext]]
dial = \"{{called}}\"

[[flows.parked]]
answer = true

[[flows.parked]]
play = \"tone:beep\"

[[flows.parked]]
pause = \"30s\"
";

async fn server() -> (TestServer, tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("plan dir");
    std::fs::write(dir.path().join("plan.toml"), PLAN).expect("write plan");
    let media = Path::new(env!("CARGO_MANIFEST_DIR")).join("media");
    let plan_dir = dir.path().to_path_buf();
    let server = TestServer::start(move |c| {
        c.ivr.dialplans = plan_dir;
        c.media.dir = media;
    })
    .await;
    server.add_user("1001", "pw-a").await;
    server.add_user("1002", "pw-x").await;
    let key = server
        .server
        .as_ref()
        .expect("running")
        .store
        .create_api_key("test-control", Scope::Control)
        .await
        .expect("key")
        .1;
    (server, dir, key)
}

async fn phone(server: &TestServer, ext: &str) -> Ua {
    let ua = Ua::new(server.sip_udp).await;
    assert_eq!(ua.register(ext, "pw-x", 300).await.status.0, 200);
    ua
}

async fn recv_method(ua: &Ua, method: &str) -> Request {
    loop {
        let r = recv_request(ua).await;
        if r.method.as_str() == method {
            return r;
        }
    }
}

struct Api {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl Api {
    fn new(server: &TestServer, key: &str) -> Api {
        Api {
            base: format!("http://{}", server.http),
            key: key.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// The call's events once one of `kind` is there (bounded wait).
async fn events_until(server: &TestServer, call: &str, kind: &str) -> Vec<EventRecord> {
    let store = &server.server.as_ref().expect("running").store;
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        let events: Vec<EventRecord> = store
            .events_since(0, 10_000)
            .await
            .expect("events")
            .into_iter()
            .filter(|e| e.call_id.map(|c| c.to_string()).as_deref() == Some(call))
            .collect();
        if events.iter().any(|e| e.kind == kind) {
            return events;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {kind} event for call {call}: {:?}",
            events.iter().map(|e| &e.kind).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn kinds(events: &[EventRecord]) -> Vec<&str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_placed_call_is_listed_played_to_sent_dtmf_and_hung_up_through_the_api() {
    let (server, _plan, key) = server().await;
    let api = Api::new(&server, &key);
    let b = phone(&server, "1002").await;

    let (status, created) = api
        .send(
            reqwest::Method::POST,
            "/v1/calls",
            Some(json!({"from": "5000", "to": "1002", "caller_id": "Campaign", "headers": {"X-Campaign": "spring"}})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();

    let inv = recv_method(&b, "INVITE").await;
    assert!(
        inv.headers
            .get("From")
            .is_some_and(|f| f.contains("\"Campaign\" <sip:5000@")),
        "{:?}",
        inv.headers.get("From")
    );
    assert_eq!(inv.headers.get("X-Campaign"), Some("spring"));
    b.send(&answer(&inv, 180, "Ringing", b.addr(), None)).await;
    b.send(&answer(&inv, 200, "OK", b.addr(), Some(sdp(31500))))
        .await;
    assert_eq!(recv_method(&b, "ACK").await.method.as_str(), "ACK");
    events_until(&server, &id, "call.answered").await;

    let (status, list) = api.send(reqwest::Method::GET, "/v1/calls", None).await;
    assert_eq!(status, 200);
    let listed = list["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .find(|c| c["id"] == id.as_str())
        .expect("the placed call is listed");
    assert_eq!(listed["direction"], "outbound");
    assert_eq!(listed["callee"], "1002");
    assert_eq!(listed["state"], "answered");

    let (status, detail) = api
        .send(reqwest::Method::GET, &format!("/v1/calls/{id}"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(detail["legs"][0]["user"], "1002");

    let (status, played) = api
        .send(
            reqwest::Method::POST,
            &format!("/v1/calls/{id}/play"),
            Some(json!({"tone": "beep"})),
        )
        .await;
    assert_eq!(status, 201, "{played}");
    let playback = played["playback_id"].as_str().expect("playback id");
    let events = events_until(&server, &id, "playback.finished").await;
    let started = events
        .iter()
        .find(|e| e.kind == "playback.started")
        .expect("playback.started");
    assert_eq!(started.data["playback_id"], playback);

    let (status, _) = api
        .send(
            reqwest::Method::POST,
            &format!("/v1/calls/{id}/dtmf"),
            Some(json!({"digits": "12#"})),
        )
        .await;
    assert_eq!(status, 204);
    let (status, bad) = api
        .send(
            reqwest::Method::POST,
            &format!("/v1/calls/{id}/dtmf"),
            Some(json!({"digits": "1x"})),
        )
        .await;
    assert_eq!(status, 400, "{bad}");

    let (status, _) = api
        .send(reqwest::Method::DELETE, &format!("/v1/calls/{id}"), None)
        .await;
    assert_eq!(status, 204);
    let bye = recv_method(&b, "BYE").await;
    b.send(&answer(&bye, 200, "OK", b.addr(), None)).await;
    let events = events_until(&server, &id, "call.ended").await;
    assert_eq!(
        kinds(&events),
        [
            "call.created",
            "call.ringing",
            "call.answered",
            "playback.started",
            "playback.finished",
            "dtmf.sent",
            "call.ended"
        ]
    );
    let ended = events.last().expect("ended");
    assert_eq!(ended.data["cause"], "normal_clearing");
    assert_eq!(ended.data["by"], "system");

    // The ended call is no longer live.
    let (status, gone) = api
        .send(reqwest::Method::GET, &format!("/v1/calls/{id}"), None)
        .await;
    assert_eq!(status, 404, "{gone}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_placed_call_nobody_answers_ends_with_no_answer() {
    let (server, _plan, key) = server().await;
    let api = Api::new(&server, &key);
    let b = phone(&server, "1002").await;
    let (status, created) = api
        .send(
            reqwest::Method::POST,
            "/v1/calls",
            Some(json!({"from": "5000", "to": "1002", "ring_timeout": 1})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let inv = recv_method(&b, "INVITE").await;
    b.send(&answer(&inv, 180, "Ringing", b.addr(), None)).await;
    let cancel = recv_method(&b, "CANCEL").await;
    b.send(&answer(&cancel, 200, "OK", b.addr(), None)).await;
    b.send(&answer(&inv, 487, "Request Terminated", b.addr(), None))
        .await;
    let events = events_until(&server, &id, "call.ended").await;
    assert_eq!(
        kinds(&events),
        ["call.created", "call.ringing", "call.ended"]
    );
    assert_eq!(events[2].data["cause"], "no_answer");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_of_an_unknown_call_or_an_unregistered_target_is_a_problem() {
    let (server, _plan, key) = server().await;
    let api = Api::new(&server, &key);
    let unknown = "0190a0a0-0000-7000-8000-000000000000";
    for (method, path, body) in [
        (reqwest::Method::GET, format!("/v1/calls/{unknown}"), None),
        (
            reqwest::Method::DELETE,
            format!("/v1/calls/{unknown}"),
            None,
        ),
        (
            reqwest::Method::POST,
            format!("/v1/calls/{unknown}/play"),
            Some(json!({"tone": "beep"})),
        ),
        (reqwest::Method::GET, "/v1/calls/not-an-id".to_owned(), None),
    ] {
        let (status, problem) = api.send(method, &path, body).await;
        assert_eq!(status, 404, "{path}: {problem}");
        assert_eq!(problem["status"], 404);
    }
    // 1002 exists but is not registered; 9999 does not exist.
    let (status, problem) = api
        .send(
            reqwest::Method::POST,
            "/v1/calls",
            Some(json!({"from": "5000", "to": "1002"})),
        )
        .await;
    assert_eq!(status, 409, "{problem}");
    let (status, _) = api
        .send(
            reqwest::Method::POST,
            "/v1/calls",
            Some(json!({"from": "5000", "to": "9999"})),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = api
        .send(
            reqwest::Method::POST,
            "/v1/calls",
            Some(json!({"from": "5000", "to": "1002", "headers": {"Via": "x"}})),
        )
        .await;
    assert_eq!(status, 400);
    // A read key may list but not place calls.
    let read = server
        .server
        .as_ref()
        .expect("running")
        .store
        .create_api_key("test-read", Scope::Read)
        .await
        .expect("key")
        .1;
    let reader = Api::new(&server, &read);
    assert_eq!(
        reader.send(reqwest::Method::GET, "/v1/calls", None).await.0,
        200
    );
    assert_eq!(
        reader
            .send(
                reqwest::Method::POST,
                "/v1/calls",
                Some(json!({"from": "5000", "to": "1002"}))
            )
            .await
            .0,
        403
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridged_call_redirected_into_a_flow_drops_the_callee_and_runs_the_flow() {
    let (server, _plan, key) = server().await;
    let api = Api::new(&server, &key);
    let b = phone(&server, "1002").await;
    let a = Ua::new(server.sip_udp).await;
    call_with_sdp(&a, "1002", "1001", "pw-a", "redir-1", &sdp(31510)).await;
    let inv = recv_method(&b, "INVITE").await;
    b.send(&answer(&inv, 200, "OK", b.addr(), Some(sdp(31512))))
        .await;
    let ok = expect_status(&a, 200).await;
    let to = ok.headers.get("To").expect("To");
    a.send_text(&format!(
        "ACK sip:x@{} SIP/2.0\nVia: SIP/2.0/UDP {{addr}};branch=z9hG4bKackredir;rport\nMax-Forwards: 70\nFrom: \"Caller\" <sip:1001@switchboard>;tag=aredir-1\nTo: {to}\nCall-ID: redir-1\nCSeq: 2 ACK\nContent-Length: 0\n\n",
        a.server
    ))
    .await;
    assert_eq!(recv_method(&b, "ACK").await.method.as_str(), "ACK");

    let (_, list) = api.send(reqwest::Method::GET, "/v1/calls", None).await;
    let call = list["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .find(|c| c["state"] == "bridged")
        .expect("the bridged call is listed")
        .clone();
    let id = call["id"].as_str().expect("id").to_owned();

    let (status, problem) = api
        .send(
            reqwest::Method::POST,
            &format!("/v1/calls/{id}/redirect"),
            Some(json!({"flow": "nowhere"})),
        )
        .await;
    assert_eq!(status, 404, "{problem}");
    let (status, body) = api
        .send(
            reqwest::Method::POST,
            &format!("/v1/calls/{id}/redirect"),
            Some(json!({"flow": "parked"})),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let bye = recv_method(&b, "BYE").await;
    b.send(&answer(&bye, 200, "OK", b.addr(), None)).await;
    let events = events_until(&server, &id, "playback.started").await;
    let steps: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e.kind == "ivr.step")
        .map(|e| {
            (
                e.data["flow"].as_str().unwrap_or_default(),
                e.data["kind"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [("ext", "dial"), ("parked", "answer"), ("parked", "play")]
    );
    assert!(kinds(&events).contains(&"call.transferred"));
    let (_, detail) = api
        .send(reqwest::Method::GET, &format!("/v1/calls/{id}"), None)
        .await;
    assert_eq!(detail["state"], "ivr");
    assert_eq!(detail["flow"], "parked");
    assert_eq!(detail["legs"].as_array().map(Vec::len), Some(1));

    // The caller hangs up; the call ends.
    a.send_text(&format!(
        "BYE sip:x@{} SIP/2.0\nVia: SIP/2.0/UDP {{addr}};branch=z9hG4bKbyeredir;rport\nMax-Forwards: 70\nFrom: \"Caller\" <sip:1001@switchboard>;tag=aredir-1\nTo: {to}\nCall-ID: redir-1\nCSeq: 3 BYE\nContent-Length: 0\n\n",
        a.server
    ))
    .await;
    events_until(&server, &id, "call.ended").await;
    server.stop().await;
}
