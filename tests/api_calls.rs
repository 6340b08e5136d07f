//! `/v1/calls` in process over real sockets: placing a call to a registered phone, listing
//! it, playing to it, sending it DTMF and hanging it up through the API (with the events the
//! call writes), control of unknown calls, redirecting a bridged call into a flow, muting and
//! holding a party (checked on the RTP the other party gets), blind transfer, attended
//! transfer (consult, cancel, complete; a refused consultation; the transferor hanging up;
//! checked on the RTP each party gets), list filters and bridging two placed calls.
#![allow(clippy::disallowed_methods)] // a test measures real time, not the server's clock

mod common;

use std::path::Path;
use std::time::Duration;

use std::net::SocketAddr;
use std::sync::Arc;

use common::{
    ApiClient, GUARD, TestServer, Ua, answer, call_with_sdp, expect_status, recv_request,
    sdp_target,
};
use serde_json::{Value, json};
use switchboard::sip::message::Request;
use switchboard::store::{EventRecord, Scope};
use tokio::net::UdpSocket;

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
    server.add_user("1003", "pw-x").await;
    let key = server.api_key(Scope::Control).await;
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

type Api = ApiClient;

/// The call's events once one of `kind` is there (bounded wait).
async fn events_until(server: &TestServer, call: &str, kind: &str) -> Vec<EventRecord> {
    let store = server.store();
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
    let api = Api::new(server.http, &key);
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

    hang_up(&api, &id, &[&b]).await;
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
    let api = Api::new(server.http, &key);
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
    let api = Api::new(server.http, &key);
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
    let read = server.api_key(Scope::Read).await;
    let reader = Api::new(server.http, &read);
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
    let api = Api::new(server.http, &key);
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

/// A caller's payload: PCMU far from silence (0xFF / 0x7F).
const VOICE: [u8; 160] = [0x12; 160];

/// A bridged call 1001 -> 1002 with RTP sockets on both sides.
struct Bridged {
    a: Ua,
    b: Ua,
    a_rtp: Arc<UdpSocket>,
    b_rtp: Arc<UdpSocket>,
    /// Where the caller's RTP goes (the server's side of leg A).
    to_a_side: SocketAddr,
    id: String,
    to: String,
    call_id: String,
    /// Where the callee sends its RTP.
    to_b_side: SocketAddr,
    /// The INVITE the callee answered.
    b_invite: Request,
}

async fn bridged(server: &TestServer, api: &Api, call_id: &str) -> Bridged {
    let b = phone(server, "1002").await;
    let a = Ua::new(server.sip_udp).await;
    let a_rtp = UdpSocket::bind("127.0.0.1:0").await.expect("rtp a");
    let b_rtp = UdpSocket::bind("127.0.0.1:0").await.expect("rtp b");
    let a_port = a_rtp.local_addr().expect("addr").port();
    let b_port = b_rtp.local_addr().expect("addr").port();
    call_with_sdp(&a, "1002", "1001", "pw-a", call_id, &sdp(a_port)).await;
    let inv = recv_method(&b, "INVITE").await;
    let to_b_side = sdp_target(&inv.body);
    b.send(&answer(&inv, 200, "OK", b.addr(), Some(sdp(b_port))))
        .await;
    let ok = expect_status(&a, 200).await;
    let to_a_side = sdp_target(&ok.body);
    let to = ok.headers.get("To").expect("To").to_owned();
    a.send_text(&format!(
        "ACK sip:x@{} SIP/2.0\nVia: SIP/2.0/UDP {{addr}};branch=z9hG4bKack{call_id};rport\nMax-Forwards: 70\nFrom: \"Caller\" <sip:1001@switchboard>;tag=a{call_id}\nTo: {to}\nCall-ID: {call_id}\nCSeq: 2 ACK\nContent-Length: 0\n\n",
        a.server
    ))
    .await;
    assert_eq!(recv_method(&b, "ACK").await.method.as_str(), "ACK");
    let (_, list) = api
        .send(
            reqwest::Method::GET,
            "/v1/calls?state=bridged&caller=1001",
            None,
        )
        .await;
    let calls = list["calls"].as_array().expect("calls");
    assert_eq!(calls.len(), 1, "{list}");
    let id = calls[0]["id"].as_str().expect("id").to_owned();
    Bridged {
        a,
        b,
        a_rtp: Arc::new(a_rtp),
        b_rtp: Arc::new(b_rtp),
        to_b_side,
        b_invite: inv,
        to_a_side,
        id,
        to,
        call_id: call_id.to_owned(),
    }
}

/// The caller talks (a packet every 20 ms) for `frames` frames; the payloads that reach
/// `receiver` meanwhile (and up to 300 ms after).
async fn talk(
    from: &Arc<UdpSocket>,
    to: SocketAddr,
    receiver: &UdpSocket,
    first_seq: u16,
    frames: u16,
) -> Vec<Vec<u8>> {
    talk_with(from, to, receiver, first_seq, frames, VOICE).await
}

/// [`talk`] with another payload.
async fn talk_with(
    from: &Arc<UdpSocket>,
    to: SocketAddr,
    receiver: &UdpSocket,
    first_seq: u16,
    frames: u16,
    payload: [u8; 160],
) -> Vec<Vec<u8>> {
    let sender = from.clone();
    let talking = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for i in 0..frames {
            tick.tick().await;
            let seq = first_seq.wrapping_add(i);
            let mut pkt = vec![0x80u8, 0x00];
            pkt.extend_from_slice(&seq.to_be_bytes());
            pkt.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
            pkt.extend_from_slice(&[0x12, 0x34, 0x56, 0x78]);
            pkt.extend_from_slice(&payload);
            sender.send_to(&pkt, to).await.expect("send rtp");
        }
    });
    let got = listen(
        receiver,
        Duration::from_millis(20 * u64::from(frames) + 300),
    )
    .await;
    talking.await.expect("talking");
    got
}

fn is_voice(p: &[u8]) -> bool {
    p == VOICE
}

fn is_silence(p: &[u8]) -> bool {
    !p.is_empty() && p.iter().all(|&b| b == 0xFF || b == 0x7F)
}

/// What `sock` receives for `window` (PCMU RTP payloads only).
async fn listen(sock: &UdpSocket, window: Duration) -> Vec<Vec<u8>> {
    let until = tokio::time::Instant::now() + window;
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok(r) = tokio::time::timeout_at(until, sock.recv_from(&mut buf)).await {
        let (n, _) = r.expect("recv rtp");
        if n > 12 && buf[1] & 0x7f == 0 {
            got.push(buf[12..n].to_vec());
        }
    }
    got
}

async fn post(api: &Api, id: &str, what: &str, body: Value) -> u16 {
    let (status, problem) = api
        .send(
            reqwest::Method::POST,
            &format!("/v1/calls/{id}/{what}"),
            Some(body),
        )
        .await;
    assert!(status < 500, "{what}: {status} {problem}");
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_muted_or_held_caller_is_not_heard_and_a_held_one_hears_music() {
    let (server, _plan, key) = server().await;
    let api = Api::new(server.http, &key);
    let call = bridged(&server, &api, "mute-1").await;
    let id = call.id.clone();

    // Relayed as is before anything.
    let heard = talk(&call.a_rtp, call.to_a_side, &call.b_rtp, 1, 10).await;
    assert!(heard.iter().any(|p| is_voice(p)), "the caller is heard");

    assert_eq!(post(&api, &id, "mute", json!({})).await, 204);
    let (_, detail) = api
        .send(reqwest::Method::GET, &format!("/v1/calls/{id}"), None)
        .await;
    assert_eq!(detail["legs"][0]["muted"], true, "{detail}");
    assert_eq!(detail["legs"][1]["muted"], false, "{detail}");
    let heard = talk(&call.a_rtp, call.to_a_side, &call.b_rtp, 100, 25).await;
    let first_silence = heard
        .iter()
        .position(|p| is_silence(p))
        .expect("the callee gets silence while the caller is muted");
    assert!(
        !heard[first_silence..].iter().any(|p| is_voice(p)),
        "nothing of the muted caller reaches the callee"
    );

    assert_eq!(
        post(&api, &id, "unmute", json!({"leg": "caller"})).await,
        204
    );
    let heard = talk(&call.a_rtp, call.to_a_side, &call.b_rtp, 200, 10).await;
    assert!(
        heard.iter().any(|p| is_voice(p)),
        "heard again once unmuted"
    );

    // Hold: the caller hears music on hold and is not heard.
    assert_eq!(post(&api, &id, "hold", json!({})).await, 204);
    let music = listen(&call.a_rtp, Duration::from_millis(600)).await;
    assert!(
        music.iter().filter(|p| !is_silence(p)).count() >= 10,
        "the held caller hears music on hold ({} packets)",
        music.len()
    );
    let heard = talk(&call.a_rtp, call.to_a_side, &call.b_rtp, 300, 25).await;
    let first_silence = heard
        .iter()
        .position(|p| is_silence(p))
        .expect("the callee gets silence while the caller is held");
    assert!(!heard[first_silence..].iter().any(|p| is_voice(p)));
    let (_, detail) = api
        .send(reqwest::Method::GET, &format!("/v1/calls/{id}"), None)
        .await;
    assert_eq!(detail["legs"][0]["state"], "held", "{detail}");

    assert_eq!(post(&api, &id, "resume", json!({})).await, 204);
    let heard = talk(&call.a_rtp, call.to_a_side, &call.b_rtp, 400, 10).await;
    assert!(
        heard.iter().any(|p| is_voice(p)),
        "heard again once resumed"
    );

    // Bad requests.
    assert_eq!(post(&api, &id, "mute", json!({"leg": "nobody"})).await, 422);
    let unknown = "0190a0a0-0000-7000-8000-000000000000";
    assert_eq!(post(&api, unknown, "hold", json!({})).await, 404);

    hang_up(&api, &id, &[&call.b, &call.a]).await;
    let events = events_until(&server, &id, "call.ended").await;
    let control: Vec<(&str, Value)> = events
        .iter()
        .filter(|e| matches!(e.kind.as_str(), "call.muted" | "call.unmuted" | "call.held"))
        .map(|e| (e.kind.as_str(), e.data.clone()))
        .collect();
    assert_eq!(
        control,
        [
            ("call.muted", json!({"leg": "caller"})),
            ("call.unmuted", json!({"leg": "caller"})),
            (
                "call.held",
                json!({"held": true, "leg": "caller", "by": "api"})
            ),
            (
                "call.held",
                json!({"held": false, "leg": "caller", "by": "api"})
            ),
        ]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blind_transfer_hangs_up_the_callee_and_rings_the_new_extension() {
    let (server, _plan, key) = server().await;
    let api = Api::new(server.http, &key);
    let c = phone(&server, "1003").await;
    let call = bridged(&server, &api, "xfer-1").await;
    let id = call.id.clone();

    assert_eq!(
        post(&api, &id, "transfer", json!({"to": "9999"})).await,
        404
    );
    // 1001 exists but no phone of it is registered: refused, the call goes on.
    assert_eq!(
        post(&api, &id, "transfer", json!({"to": "1001"})).await,
        409
    );
    assert_eq!(
        post(
            &api,
            &id,
            "transfer",
            json!({"to": "1003", "flow": "parked"})
        )
        .await,
        400
    );
    assert_eq!(
        post(&api, &id, "transfer", json!({"to": "1003"})).await,
        204
    );
    let bye = recv_method(&call.b, "BYE").await;
    call.b
        .send(&answer(&bye, 200, "OK", call.b.addr(), None))
        .await;
    let inv = recv_method(&c, "INVITE").await;
    c.send(&answer(&inv, 180, "Ringing", c.addr(), None)).await;
    // The caller hears ringback while 1003 rings.
    let ringback = listen(&call.a_rtp, Duration::from_millis(400)).await;
    assert!(
        ringback.iter().filter(|p| !is_silence(p)).count() >= 5,
        "ringback to the caller ({} packets)",
        ringback.len()
    );
    c.send(&answer(&inv, 200, "OK", c.addr(), Some(sdp(31530))))
        .await;
    assert_eq!(recv_method(&c, "ACK").await.method.as_str(), "ACK");
    let events = events_until(&server, &id, "call.transferred").await;
    let transferred = events
        .iter()
        .find(|e| e.kind == "call.transferred")
        .expect("transferred");
    assert_eq!(transferred.data, json!({"to": "1003", "kind": "blind"}));
    // Bridged to 1003 now.
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        let (_, detail) = api
            .send(reqwest::Method::GET, &format!("/v1/calls/{id}"), None)
            .await;
        if detail["state"] == "bridged" && detail["legs"][1]["user"] == "1003" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{detail}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The caller hangs up: 1003 is hung up too.
    call.a
        .send_text(&format!(
            "BYE sip:x@{} SIP/2.0\nVia: SIP/2.0/UDP {{addr}};branch=z9hG4bKbye{};rport\nMax-Forwards: 70\nFrom: \"Caller\" <sip:1001@switchboard>;tag=a{}\nTo: {}\nCall-ID: {}\nCSeq: 3 BYE\nContent-Length: 0\n\n",
            call.a.server, call.call_id, call.call_id, call.to, call.call_id
        ))
        .await;
    let bye = recv_method(&c, "BYE").await;
    c.send(&answer(&bye, 200, "OK", c.addr(), None)).await;
    events_until(&server, &id, "call.ended").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_list_filters_by_state_caller_callee_and_session() {
    let (server, _plan, key) = server().await;
    let api = Api::new(server.http, &key);
    let call = bridged(&server, &api, "filter-1").await;
    let (_, detail) = api
        .send(
            reqwest::Method::GET,
            &format!("/v1/calls/{}", call.id),
            None,
        )
        .await;
    let session = detail["session_id"].as_str().expect("session").to_owned();
    let by_session = format!("?session_id={session}");
    for (query, n) in [
        ("", 1),
        ("?state=bridged", 1),
        ("?state=ivr", 0),
        ("?caller=1001&callee=1002", 1),
        ("?callee=1003", 0),
        (by_session.as_str(), 1),
        ("?session_id=0190a0a0-0000-7000-8000-000000000000", 0),
    ] {
        let (status, list) = api
            .send(reqwest::Method::GET, &format!("/v1/calls{query}"), None)
            .await;
        assert_eq!(status, 200, "{query}");
        assert_eq!(
            list["calls"].as_array().map(Vec::len),
            Some(n),
            "{query}: {list}"
        );
    }
    server.stop().await;
}

/// G.711 µ-law of one sample.
fn ulaw(sample: i16) -> u8 {
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(32635) + 0x84;
    let mut exponent = 7;
    let mut mask = 0x4000;
    while exponent > 0 && s & mask == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = (s >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) as u8 | mantissa as u8)
}

/// 20 ms of a 1 kHz tone in PCMU.
fn tone() -> [u8; 160] {
    std::array::from_fn(|k| {
        let t = k as f64 / 8000.0;
        ulaw((8000.0 * (2.0 * std::f64::consts::PI * 1000.0 * t).sin()) as i16)
    })
}

/// Places a call to `phone`, answered with RTP on `rtp`; the call's id and where its RTP goes.
async fn place(
    server: &TestServer,
    api: &Api,
    phone: &Ua,
    to: &str,
    rtp: &UdpSocket,
) -> (String, SocketAddr) {
    let (status, created) = api
        .send(
            reqwest::Method::POST,
            "/v1/calls",
            Some(json!({"from": "5000", "to": to})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let inv = recv_method(phone, "INVITE").await;
    let target = sdp_target(&inv.body);
    let port = rtp.local_addr().expect("addr").port();
    phone
        .send(&answer(&inv, 200, "OK", phone.addr(), Some(sdp(port))))
        .await;
    assert_eq!(recv_method(phone, "ACK").await.method.as_str(), "ACK");
    events_until(server, &id, "call.answered").await;
    (id, target)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_placed_calls_bridged_hear_each_other_and_end_together() {
    let (server, _plan, key) = server().await;
    let api = Api::new(server.http, &key);
    let b = phone(&server, "1002").await;
    let c = phone(&server, "1003").await;
    let b_rtp = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("rtp b"));
    let c_rtp = UdpSocket::bind("127.0.0.1:0").await.expect("rtp c");
    let (one, b_target) = place(&server, &api, &b, "1002", &b_rtp).await;
    let (two, _) = place(&server, &api, &c, "1003", &c_rtp).await;

    let (status, _) = api
        .send(
            reqwest::Method::POST,
            "/v1/bridges",
            Some(json!({"call_ids": [one, one]})),
        )
        .await;
    assert_eq!(status, 400);
    let unknown = "0190a0a0-0000-7000-8000-000000000000";
    let (status, _) = api
        .send(
            reqwest::Method::POST,
            "/v1/bridges",
            Some(json!({"call_ids": [one, unknown]})),
        )
        .await;
    assert_eq!(status, 404);
    let (status, made) = api
        .send(
            reqwest::Method::POST,
            "/v1/bridges",
            Some(json!({"call_ids": [one, two]})),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let bridge = made["id"].as_str().expect("bridge id").to_owned();

    // 1002 speaks, 1003 hears it.
    let heard = talk_with(&b_rtp, b_target, &c_rtp, 1, 30, tone()).await;
    assert!(
        heard.iter().filter(|p| !is_silence(p)).count() >= 10,
        "1003 hears 1002 ({} packets)",
        heard.len()
    );
    let (_, detail) = api
        .send(reqwest::Method::GET, &format!("/v1/calls/{one}"), None)
        .await;
    assert_eq!(detail["state"], "bridged", "{detail}");
    // Bridged calls are not bridged again.
    let (status, _) = api
        .send(
            reqwest::Method::POST,
            "/v1/bridges",
            Some(json!({"call_ids": [one, two]})),
        )
        .await;
    assert_eq!(status, 409);

    // One ends: the other is hung up too.
    hang_up(&api, &one, &[&b, &c]).await;
    for (id, with) in [(&one, &two), (&two, &one)] {
        let events = events_until(&server, id, "call.ended").await;
        let bridged = events
            .iter()
            .find(|e| e.kind == "call.bridged")
            .expect("call.bridged");
        assert_eq!(bridged.data, json!({"bridge_id": bridge, "with": with}));
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_a_sip_uri_goes_straight_to_its_host_and_is_answered() {
    let (server, _plan, key) = server().await;
    let api = Api::new(server.http, &key);
    // Not registered: only its own address.
    let alice = Ua::new(server.sip_udp).await;
    let uri = format!("sip:alice@{}", alice.addr());

    for bad in [
        "sip:",
        "sip:alice@",
        "sips:alice@127.0.0.1",
        "sip:a@127.0.0.1;transport=sctp",
    ] {
        let (status, problem) = api
            .send(
                reqwest::Method::POST,
                "/v1/calls",
                Some(json!({"from": "5000", "to": bad})),
            )
            .await;
        assert_eq!(status, 400, "{bad}: {problem}");
    }

    let (status, created) = api
        .send(
            reqwest::Method::POST,
            "/v1/calls",
            Some(json!({"from": "5000", "to": uri})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let inv = recv_method(&alice, "INVITE").await;
    assert_eq!(inv.uri.to_string(), uri);
    assert!(
        inv.headers.get("To").is_some_and(|t| t.contains(&uri)),
        "{:?}",
        inv.headers.get("To")
    );
    alice
        .send(&answer(&inv, 200, "OK", alice.addr(), Some(sdp(31540))))
        .await;
    assert_eq!(recv_method(&alice, "ACK").await.method.as_str(), "ACK");
    events_until(&server, &id, "call.answered").await;
    let (status, detail) = api
        .send(reqwest::Method::GET, &format!("/v1/calls/{id}"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(detail["state"], "answered");
    assert_eq!(detail["callee"], uri.as_str());
    assert_eq!(detail["legs"][0]["kind"], "sip", "{detail}");

    hang_up(&api, &id, &[&alice]).await;
    events_until(&server, &id, "call.ended").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_placed_call_with_a_webhook_runs_the_reply_steps_once_answered() {
    let (server, _plan, key) = server().await;
    let api = Api::new(server.http, &key);
    let b = phone(&server, "1002").await;
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(|| async {
            axum::Json(json!({"steps": [{"set": {"via": "originate-webhook"}}, {"hangup": true}]}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hook = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });

    let (status, problem) = api
        .send(
            reqwest::Method::POST,
            "/v1/calls",
            Some(json!({"from": "5000", "to": "1002", "webhook": "ftp://x", })),
        )
        .await;
    assert_eq!(status, 400, "{problem}");
    let (status, created) = api
        .send(
            reqwest::Method::POST,
            "/v1/calls",
            Some(json!({"from": "5000", "to": "1002", "webhook": format!("http://{hook}/hook")})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let inv = recv_method(&b, "INVITE").await;
    b.send(&answer(&inv, 200, "OK", b.addr(), Some(sdp(31560))))
        .await;
    assert_eq!(recv_method(&b, "ACK").await.method.as_str(), "ACK");
    let bye = recv_method(&b, "BYE").await;
    b.send(&answer(&bye, 200, "OK", b.addr(), None)).await;
    let events = events_until(&server, &id, "call.ended").await;
    let session = events[0].session_id.expect("session").to_string();
    let (status, timeline) = api
        .send(
            reqwest::Method::GET,
            &format!("/v1/sessions/{session}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{timeline}");
    assert_eq!(
        timeline["attributes"]["via"], "originate-webhook",
        "{timeline}"
    );
    server.stop().await;
}

/// Waits (bounded) until call `call` has `n` events of `kind` whose `data.state` is `state`.
async fn states_until(server: &TestServer, call: &str, kind: &str, state: &str, n: usize) {
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        let events = events_until(server, call, "call.created").await;
        let seen = events
            .iter()
            .filter(|e| e.kind == kind && e.data["state"] == state)
            .count();
        if seen >= n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{kind} {state} x{n}: {:?}",
            kinds(&events)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The consultation call of an attended transfer rings `c`, from the transferor 1002: `c`
/// answers 180; its INVITE.
async fn consultation_rings(c: &Ua) -> Request {
    let inv = recv_method(c, "INVITE").await;
    let from = inv.headers.get("From").expect("From").to_owned();
    assert!(from.contains("sip:1002@"), "from the transferor: {from}");
    c.send(&answer(&inv, 180, "Ringing", c.addr(), None)).await;
    inv
}

/// `c` answers the consultation call `inv` with RTP on `rtp`; where `c` sends its RTP.
async fn consultation_answers(c: &Ua, inv: &Request, rtp: &UdpSocket) -> SocketAddr {
    let port = rtp.local_addr().expect("addr").port();
    c.send(&answer(inv, 200, "OK", c.addr(), Some(sdp(port))))
        .await;
    assert_eq!(recv_method(c, "ACK").await.method.as_str(), "ACK");
    sdp_target(&inv.body)
}

fn audible(packets: &[Vec<u8>]) -> usize {
    packets.iter().filter(|p| !is_silence(p)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attended_transfer_consults_then_is_cancelled_or_completed() {
    let (server, _plan, key) = server().await;
    let api = Api::new(server.http, &key);
    let c = phone(&server, "1003").await;
    let c_rtp = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("rtp c"));
    let call = bridged(&server, &api, "atx-1").await;
    let id = call.id.clone();
    let attended = |to: &str| json!({"to": to, "attended": true});

    // Refusals: nothing in progress, a flow, an unknown extension.
    assert_eq!(post(&api, &id, "transfer/complete", json!({})).await, 409);
    assert_eq!(post(&api, &id, "transfer/cancel", json!({})).await, 409);
    assert_eq!(
        post(
            &api,
            &id,
            "transfer",
            json!({"flow": "parked", "attended": true})
        )
        .await,
        400
    );
    assert_eq!(post(&api, &id, "transfer", attended("9999")).await, 404);

    // 1. Consult 1003, then cancel.
    let consult = start_attended(&api, &id, "1003").await;
    let inv = consultation_rings(&c).await;
    // Only one at a time; not completed before it answers.
    assert_eq!(post(&api, &id, "transfer", attended("1003")).await, 409);
    assert_eq!(post(&api, &id, "transfer/complete", json!({})).await, 409);
    // The caller hears music on hold, the callee ringback.
    let music = listen(&call.a_rtp, Duration::from_millis(400)).await;
    assert!(
        audible(&music) >= 5,
        "music on hold ({} packets)",
        music.len()
    );
    let ringback = listen(&call.b_rtp, Duration::from_millis(400)).await;
    assert!(
        audible(&ringback) >= 5,
        "ringback ({} packets)",
        ringback.len()
    );
    let to_c_side = consultation_answers(&c, &inv, &c_rtp).await;
    states_until(&server, &id, "call.consultation", "answered", 1).await;
    // The callee and 1003 hear each other; the caller hears neither and is not heard.
    hear_each_other((&call.b_rtp, call.to_b_side), (&c_rtp, to_c_side), 1).await;
    let heard = talk(&call.a_rtp, call.to_a_side, &call.b_rtp, 1, 25).await;
    assert!(
        !heard.iter().any(|p| is_voice(p)),
        "the held caller is not heard"
    );
    let (_, detail) = api
        .send(reqwest::Method::GET, &format!("/v1/calls/{consult}"), None)
        .await;
    let (_, mine) = api
        .send(reqwest::Method::GET, &format!("/v1/calls/{id}"), None)
        .await;
    assert_eq!(
        detail["session_id"], mine["session_id"],
        "one session: {detail}"
    );
    assert_eq!(detail["state"], "bridged", "{detail}");
    assert_eq!(mine["legs"][0]["state"], "held", "{mine}");

    assert_eq!(post(&api, &id, "transfer/cancel", json!({})).await, 204);
    let bye = recv_method(&c, "BYE").await;
    c.send(&answer(&bye, 200, "OK", c.addr(), None)).await;
    events_until(&server, &consult, "call.ended").await;
    let heard = talk(&call.a_rtp, call.to_a_side, &call.b_rtp, 100, 15).await;
    assert!(
        heard.iter().any(|p| is_voice(p)),
        "caller and callee talk again"
    );

    // 2. Consult 1003 again, then complete: the callee goes, the caller talks to 1003.
    let consult = start_attended(&api, &id, "1003").await;
    let inv = consultation_rings(&c).await;
    let to_c_side = consultation_answers(&c, &inv, &c_rtp).await;
    states_until(&server, &id, "call.consultation", "answered", 2).await;
    assert_eq!(post(&api, &id, "transfer/complete", json!({})).await, 204);
    let bye = recv_method(&call.b, "BYE").await;
    call.b
        .send(&answer(&bye, 200, "OK", call.b.addr(), None))
        .await;
    hear_each_other((&call.a_rtp, call.to_a_side), (&c_rtp, to_c_side), 200).await;
    let (_, mine) = api
        .send(reqwest::Method::GET, &format!("/v1/calls/{id}"), None)
        .await;
    assert_eq!(mine["state"], "bridged", "{mine}");
    assert_eq!(mine["legs"].as_array().map(Vec::len), Some(1), "{mine}");
    assert_eq!(mine["legs"][0]["state"], "answered", "{mine}");

    // 1003 hangs up: the caller is hung up too.
    let to_c = c_to_header(&inv);
    c.send_text(&format!(
        "BYE sip:x@{} SIP/2.0\nVia: SIP/2.0/UDP {{addr}};branch=z9hG4bKbyec;rport\nMax-Forwards: 70\nFrom: {to_c}\nTo: {}\nCall-ID: {}\nCSeq: 9 BYE\nContent-Length: 0\n\n",
        c.server,
        inv.headers.get("From").expect("From"),
        inv.headers.get("Call-ID").expect("Call-ID"),
    ))
    .await;
    let bye = recv_method(&call.a, "BYE").await;
    call.a
        .send(&answer(&bye, 200, "OK", call.a.addr(), None))
        .await;
    let events = events_until(&server, &id, "call.ended").await;
    let story: Vec<(&str, Value)> = events
        .iter()
        .filter(|e| {
            matches!(
                e.kind.as_str(),
                "call.held" | "call.consultation" | "call.transferred"
            )
        })
        .map(|e| (e.kind.as_str(), e.data.clone()))
        .collect();
    let first = started_ids(&events);
    assert_eq!(
        story,
        [
            (
                "call.held",
                json!({"held": true, "leg": "caller", "by": "transfer"})
            ),
            (
                "call.consultation",
                json!({"state": "started", "consultation_call_id": first[0], "to": "1003"})
            ),
            (
                "call.consultation",
                json!({"state": "answered", "consultation_call_id": first[0]})
            ),
            (
                "call.consultation",
                json!({"state": "cancelled", "consultation_call_id": first[0]})
            ),
            (
                "call.held",
                json!({"held": false, "leg": "caller", "by": "transfer"})
            ),
            (
                "call.held",
                json!({"held": true, "leg": "caller", "by": "transfer"})
            ),
            (
                "call.consultation",
                json!({"state": "started", "consultation_call_id": consult, "to": "1003"})
            ),
            (
                "call.consultation",
                json!({"state": "answered", "consultation_call_id": consult})
            ),
            (
                "call.held",
                json!({"held": false, "leg": "caller", "by": "transfer"})
            ),
            (
                "call.transferred",
                json!({"kind": "attended", "to": "1003", "consultation_call_id": consult})
            ),
        ]
    );
    events_until(&server, &consult, "call.ended").await;
    server.stop().await;
}

/// The consultation call ids of the `started` consultations, in order.
fn started_ids(events: &[EventRecord]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.kind == "call.consultation" && e.data["state"] == "started")
        .filter_map(|e| e.data["consultation_call_id"].as_str().map(str::to_owned))
        .collect()
}

/// The phone's own address in the dialog of `inv` (the To of its INVITE with the tag
/// [`answer`] gave it): the From of a request the phone sends in that dialog.
fn c_to_header(inv: &Request) -> String {
    format!("{};tag=callee", inv.headers.get("To").expect("To"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_consultation_reconnects_and_a_transferor_hanging_up_completes_it() {
    let (server, _plan, key) = server().await;
    let api = Api::new(server.http, &key);
    let c = phone(&server, "1003").await;
    let c_rtp = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("rtp c"));
    let call = bridged(&server, &api, "atx-2").await;
    let id = call.id.clone();
    let attended = json!({"to": "1003", "attended": true});

    // 1003 is busy: caller and callee talk again.
    assert_eq!(post(&api, &id, "transfer", attended.clone()).await, 202);
    let inv = consultation_rings(&c).await;
    c.send(&answer(&inv, 486, "Busy Here", c.addr(), None))
        .await;
    states_until(&server, &id, "call.consultation", "ended", 1).await;
    let heard = talk(&call.a_rtp, call.to_a_side, &call.b_rtp, 1, 15).await;
    assert!(
        heard.iter().any(|p| is_voice(p)),
        "caller and callee talk again"
    );
    let (_, mine) = api
        .send(reqwest::Method::GET, &format!("/v1/calls/{id}"), None)
        .await;
    assert_eq!(mine["legs"][0]["state"], "answered", "{mine}");

    // Consulting again; 1003 answers and the transferor hangs up: the transfer completes.
    assert_eq!(post(&api, &id, "transfer", attended).await, 202);
    let inv = consultation_rings(&c).await;
    let to_c_side = consultation_answers(&c, &inv, &c_rtp).await;
    states_until(&server, &id, "call.consultation", "answered", 1).await;
    hang_up_callee(&call).await;
    transferred_attended(&server, &id).await;
    hear_each_other((&call.a_rtp, call.to_a_side), (&c_rtp, to_c_side), 100).await;

    // Transferred again, blind, into a flow: 1003 is hung up, the caller hears the flow.
    assert_eq!(
        post(&api, &id, "transfer", json!({"flow": "parked"})).await,
        204
    );
    let bye = recv_method(&c, "BYE").await;
    c.send(&answer(&bye, 200, "OK", c.addr(), None)).await;
    let events = events_until(&server, &id, "playback.finished").await;
    assert!(
        events.iter().any(|e| e.kind == "call.transferred"
            && e.data == json!({"flow": "parked", "kind": "blind"})),
        "{:?}",
        kinds(&events)
    );
    let (_, mine) = api
        .send(reqwest::Method::GET, &format!("/v1/calls/{id}"), None)
        .await;
    assert_eq!(mine["state"], "ivr", "{mine}");
    assert_eq!(mine["flow"], "parked", "{mine}");

    hang_up(&api, &id, &[&call.a]).await;
    events_until(&server, &id, "call.ended").await;
    server.stop().await;
}

/// The callee of `call` sends BYE.
async fn hang_up_callee(call: &Bridged) {
    let inv = &call.b_invite;
    call.b
        .send_text(&format!(
            "BYE sip:x@{} SIP/2.0\nVia: SIP/2.0/UDP {{addr}};branch=z9hG4bKbyeb;rport\nMax-Forwards: 70\nFrom: {}\nTo: {}\nCall-ID: {}\nCSeq: 9 BYE\nContent-Length: 0\n\n",
            call.b.server,
            c_to_header(inv),
            inv.headers.get("From").expect("From"),
            inv.headers.get("Call-ID").expect("Call-ID"),
        ))
        .await;
    let ok = expect_status(&call.b, 200).await;
    assert_eq!(ok.status.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_placed_call_rings_every_phone_of_the_extension_and_the_first_answer_wins() {
    let (server, _plan, key) = server().await;
    let api = Api::new(server.http, &key);
    let desk = phone(&server, "1002").await;
    let soft = phone(&server, "1002").await;
    let place = || async {
        let (status, created) = api
            .send(
                reqwest::Method::POST,
                "/v1/calls",
                Some(json!({"from": "5000", "to": "1002"})),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        let id = created["id"].as_str().expect("id").to_owned();
        let on_desk = recv_method(&desk, "INVITE").await;
        let on_soft = recv_method(&soft, "INVITE").await;
        assert_eq!(
            on_desk.headers.get("Call-ID"),
            on_soft.headers.get("Call-ID"),
            "one call, forked"
        );
        assert_ne!(on_desk.headers.get("Via"), on_soft.headers.get("Via"));
        (id, on_desk, on_soft)
    };

    // The softphone answers: the desk phone stops ringing.
    let (id, on_desk, on_soft) = place().await;
    desk.send(&answer(&on_desk, 180, "Ringing", desk.addr(), None))
        .await;
    soft.send(&answer(&on_soft, 180, "Ringing", soft.addr(), None))
        .await;
    soft.send(&answer(&on_soft, 200, "OK", soft.addr(), Some(sdp(31560))))
        .await;
    assert_eq!(recv_method(&soft, "ACK").await.method.as_str(), "ACK");
    let cancel = recv_method(&desk, "CANCEL").await;
    desk.send(&answer(&cancel, 200, "OK", desk.addr(), None))
        .await;
    desk.send(&answer(
        &on_desk,
        487,
        "Request Terminated",
        desk.addr(),
        None,
    ))
    .await;
    events_until(&server, &id, "call.answered").await;
    let (_, detail) = api
        .send(reqwest::Method::GET, &format!("/v1/calls/{id}"), None)
        .await;
    assert_eq!(detail["state"], "answered", "{detail}");
    hang_up(&api, &id, &[&soft]).await;
    let events = events_until(&server, &id, "call.ended").await;
    assert_eq!(
        kinds(&events),
        [
            "call.created",
            "call.ringing",
            "call.answered",
            "call.ended"
        ]
    );

    // Neither answers: the call ends with the best of their answers (busy over unavailable).
    let (id, on_desk, on_soft) = place().await;
    desk.send(&answer(&on_desk, 486, "Busy Here", desk.addr(), None))
        .await;
    soft.send(&answer(
        &on_soft,
        480,
        "Temporarily Unavailable",
        soft.addr(),
        None,
    ))
    .await;
    let events = events_until(&server, &id, "call.ended").await;
    let ended = events.last().expect("ended");
    assert_eq!(ended.data["cause"], "busy", "{:?}", ended.data);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transferor_hanging_up_while_the_consultation_rings_hands_the_caller_over() {
    let (server, _plan, key) = server().await;
    let api = Api::new(server.http, &key);
    let c = phone(&server, "1003").await;
    let c_rtp = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("rtp c"));
    let call = bridged(&server, &api, "atx-3").await;
    let id = call.id.clone();

    assert_eq!(
        post(
            &api,
            &id,
            "transfer",
            json!({"to": "1003", "attended": true})
        )
        .await,
        202
    );
    let inv = consultation_rings(&c).await;
    // The transferor leaves while 1003 rings: the caller stays, on hold.
    hang_up_callee(&call).await;
    let (_, mine) = api
        .send(reqwest::Method::GET, &format!("/v1/calls/{id}"), None)
        .await;
    assert_eq!(mine["legs"].as_array().map(Vec::len), Some(1), "{mine}");
    assert_eq!(mine["legs"][0]["state"], "held", "{mine}");
    let music = listen(&call.a_rtp, Duration::from_millis(400)).await;
    assert!(
        audible(&music) >= 5,
        "music on hold ({} packets)",
        music.len()
    );
    // 1003 answers: the caller talks to it.
    let to_c_side = consultation_answers(&c, &inv, &c_rtp).await;
    transferred_attended(&server, &id).await;
    hear_each_other((&call.a_rtp, call.to_a_side), (&c_rtp, to_c_side), 1).await;

    hang_up(&api, &id, &[&call.a, &c]).await;
    events_until(&server, &id, "call.ended").await;
    server.stop().await;
}

/// Two parties (each an RTP socket and where it sends) hear each other's tone, both ways.
async fn hear_each_other(
    one: (&Arc<UdpSocket>, SocketAddr),
    two: (&Arc<UdpSocket>, SocketAddr),
    first_seq: u16,
) {
    for ((from, to), (receiver, _), way) in [(one, two, "one to two"), (two, one, "two to one")] {
        let heard = talk_with(from, to, receiver, first_seq, 30, tone()).await;
        assert!(audible(&heard) >= 10, "{way}: {} packets", heard.len());
    }
}

/// Waits for the call's `call.transferred` and checks it was an attended transfer.
async fn transferred_attended(server: &TestServer, id: &str) {
    let events = events_until(server, id, "call.transferred").await;
    let done = events
        .iter()
        .find(|e| e.kind == "call.transferred")
        .expect("transferred");
    assert_eq!(done.data["kind"], "attended", "{:?}", done.data);
}

/// Starts an attended transfer of call `id` to `to`; the consultation call's id.
async fn start_attended(api: &Api, id: &str, to: &str) -> String {
    let (status, started) = api
        .send(
            reqwest::Method::POST,
            &format!("/v1/calls/{id}/transfer"),
            Some(json!({"to": to, "attended": true})),
        )
        .await;
    assert_eq!(status, 202, "{started}");
    started["consultation_call_id"]
        .as_str()
        .expect("consultation call id")
        .to_owned()
}

/// Hangs call `id` up through the API; each of `phones` gets a BYE and answers it.
async fn hang_up(api: &Api, id: &str, phones: &[&Ua]) {
    let (status, problem) = api
        .send(reqwest::Method::DELETE, &format!("/v1/calls/{id}"), None)
        .await;
    assert_eq!(status, 204, "{problem}");
    for phone in phones {
        let bye = recv_method(phone, "BYE").await;
        phone
            .send(&answer(&bye, 200, "OK", phone.addr(), None))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_invite_cannot_be_delivered_ends_unreachable() {
    let (server, _plan, key) = server().await;
    let api = Api::new(server.http, &key);
    // A TCP port nobody listens on: the connection is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let (status, created) = api
        .send(
            reqwest::Method::POST,
            "/v1/calls",
            Some(json!({"from": "5000", "to": format!("sip:bob@127.0.0.1:{port};transport=tcp")})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let events = events_until(&server, &id, "call.ended").await;
    let ended = events.last().expect("call.ended");
    assert_eq!(ended.data["cause"], "unreachable", "{:?}", ended.data);
    server.stop().await;
}
