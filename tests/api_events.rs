//! `GET /v1/events` over a real socket: the JSON page, and the WebSocket stream that delivers
//! every event exactly once and in order across a disconnect, with server-side filters, and
//! the `registration.*` events of a real REGISTER.

mod common;

use common::{TestServer, Ua, connect_events, digest_md5, md5_challenge, next_event};
use switchboard::store::{Scope, SessionId, StoreCmd};

/// Appends one event through the writer task, as the call path does.
fn append(server: &TestServer, kind: &str, session: Option<SessionId>, n: u32) {
    server.store().writer().send(StoreCmd::Event {
        at_ms: 1_738_324_800_000 + i64::from(n),
        kind: kind.to_owned(),
        session_id: session,
        call_id: None,
        data: serde_json::json!({ "n": n }),
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_resumed_with_since_gets_every_event_once_in_order() {
    let server = TestServer::start(|_| {}).await;
    let read = server.api_key(Scope::Read).await;
    for n in 1..=3 {
        append(&server, "call.created", None, n);
    }
    server.store().flush().await.expect("flush");

    // From the start: the log first, then live events.
    let mut ws = connect_events(server.http, &read, "since=0").await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(next_event(&mut ws).await);
    }
    for n in 4..=10 {
        append(&server, "call.ringing", None, n);
    }
    for _ in 0..4 {
        seen.push(next_event(&mut ws).await);
    }
    // Disconnect mid-stream (three more are in flight or queued), then more events happen.
    drop(ws);
    for n in 11..=15 {
        append(&server, "call.ended", None, n);
    }
    server.store().flush().await.expect("flush");

    let last = seen.last().expect("some").seq;
    let mut ws = connect_events(server.http, &read, &format!("since={last}")).await;
    for n in 16..=18 {
        append(&server, "dtmf.received", None, n);
    }
    while seen.last().expect("some").seq < 18 {
        seen.push(next_event(&mut ws).await);
    }
    let seqs: Vec<i64> = seen.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=18).collect::<Vec<_>>(),
        "each event once, in order"
    );
    let ns: Vec<i64> = seen
        .iter()
        .map(|e| e.data["n"].as_i64().expect("n"))
        .collect();
    assert_eq!(ns, (1..=18).collect::<Vec<_>>());
    assert_eq!(seen[0].kind, "call.created");
    assert_eq!(seen[0].time, "2025-01-31T12:00:00.001Z");
    assert_eq!(seen[17].kind, "dtmf.received");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_without_since_starts_from_now() {
    let server = TestServer::start(|_| {}).await;
    let read = server.api_key(Scope::Read).await;
    append(&server, "call.created", None, 1);
    server.store().flush().await.expect("flush");
    let mut ws = connect_events(server.http, &read, "").await;
    append(&server, "call.answered", None, 2);
    let e = next_event(&mut ws).await;
    assert_eq!((e.seq, e.kind.as_str()), (2, "call.answered"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_filters_by_type_and_session_on_the_server() {
    let server = TestServer::start(|_| {}).await;
    let read = server.api_key(Scope::Read).await;
    let mine = SessionId::new();
    let other = SessionId::new();
    append(&server, "call.created", Some(mine), 1); // before connecting: from the log
    append(&server, "registration.added", None, 2);
    server.store().flush().await.expect("flush");
    let mut ws = connect_events(
        server.http,
        &read,
        &format!("since=0&type=call.*,dtmf.received&session_id={mine}"),
    )
    .await;
    append(&server, "call.created", Some(other), 3);
    append(&server, "dtmf.received", Some(mine), 4);
    append(&server, "playback.started", Some(mine), 5);
    append(&server, "callback.x", Some(mine), 6);
    append(&server, "call.ended", Some(mine), 7);
    let mut got = Vec::new();
    for _ in 0..3 {
        let e = next_event(&mut ws).await;
        got.push((e.seq, e.kind, e.session_id));
    }
    assert_eq!(
        got,
        vec![
            (1, "call.created".to_owned(), Some(mine)),
            (4, "dtmf.received".to_owned(), Some(mine)),
            (7, "call.ended".to_owned(), Some(mine)),
        ]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_page_reads_the_log_with_filters_and_a_cursor() {
    let server = TestServer::start(|_| {}).await;
    let read = server.api_key(Scope::Read).await;
    let s = SessionId::new();
    append(&server, "call.created", Some(s), 1);
    append(&server, "registration.added", None, 2);
    append(&server, "call.ended", Some(s), 3);
    append(&server, "registration.removed", None, 4);
    server.store().flush().await.expect("flush");
    let client = reqwest::Client::new();
    let get = |q: &str| {
        client
            .get(format!("http://{}/v1/events?{q}", server.http))
            .bearer_auth(&read)
            .send()
    };

    let page: serde_json::Value = get("since=0&limit=2")
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(page["events"].as_array().expect("array").len(), 2);
    assert_eq!(page["events"][0]["seq"], 1);
    assert_eq!(page["events"][0]["type"], "call.created");
    assert_eq!(page["events"][0]["session_id"], s.to_string());
    assert!(page["events"][0]["call_id"].is_null());
    assert_eq!(page["events"][0]["time"], "2025-01-31T12:00:00.001Z");
    assert_eq!(page["next_since"], 2);
    let rest: serde_json::Value = get("since=2").await.expect("r").json().await.expect("j");
    let seqs: Vec<i64> = rest["events"]
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["seq"].as_i64().expect("seq"))
        .collect();
    assert_eq!(seqs, vec![3, 4]);
    assert_eq!(rest["next_since"], 4);

    // A sparse filter still moves the cursor past what it skipped.
    let calls: serde_json::Value = get("type=call.*")
        .await
        .expect("r")
        .json()
        .await
        .expect("j");
    let kinds: Vec<&str> = calls["events"]
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["type"].as_str().expect("type"))
        .collect();
    assert_eq!(kinds, vec!["call.created", "call.ended"]);
    assert_eq!(calls["next_since"], 4);

    for bad in [
        "limit=0",
        "limit=1001",
        "type=Bad",
        "session_id=x",
        "since=-1",
    ] {
        let resp = get(bad).await.expect("request");
        assert_eq!(resp.status(), 400, "{bad}");
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
    }
    let anonymous = client
        .get(format!("http://{}/v1/events", server.http))
        .send()
        .await
        .expect("request");
    assert_eq!(anonymous.status(), 401);
    server.stop().await;
}

/// REGISTER (answering the challenge) with CSeq numbers `cseq` and `cseq + 1`, so that later
/// requests of the same Call-ID are not taken as out of order.
async fn register(ua: &Ua, ext: &str, password: &str, expires: u32, cseq: u32) -> u16 {
    let uri = format!("sip:{}", ua.server);
    let base = |cseq: u32, auth: Option<String>| {
        let mut m = format!(
            "REGISTER {uri} SIP/2.0\nVia: SIP/2.0/UDP {{addr}};branch=z9hG4bKev{ext}{cseq};rport\nMax-Forwards: 70\nFrom: <sip:{ext}@switchboard>;tag=e{ext}\nTo: <sip:{ext}@switchboard>\nCall-ID: ev-{ext}-{{addr}}\nCSeq: {cseq} REGISTER\nContact: <sip:{ext}@{{addr}}>\nExpires: {expires}\n"
        );
        if let Some(a) = auth {
            m.push_str(&format!("Authorization: {a}\n"));
        }
        m.push_str("Content-Length: 0\n\n");
        m
    };
    ua.send_text(&base(cseq, None)).await;
    let challenge = ua.recv_final_or_ringing().await;
    assert_eq!(challenge.status.0, 401, "REGISTER is challenged");
    let ch = md5_challenge(&challenge, "WWW-Authenticate");
    let auth = digest_md5(&ch, ext, password, "REGISTER", &uri);
    ua.send_text(&base(cseq + 1, Some(auth))).await;
    ua.recv_final_or_ringing().await.status.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_and_unregister_are_streamed_as_registration_events() {
    let server = TestServer::start(|_| {}).await;
    server.add_user("201", "pw201").await;
    let read = server.api_key(Scope::Read).await;
    let mut ws = connect_events(server.http, &read, "type=registration.*").await;
    let ua = Ua::new(server.sip_udp).await;
    assert_eq!(register(&ua, "201", "pw201", 300, 1).await, 200);
    let added = next_event(&mut ws).await;
    assert_eq!(added.kind, "registration.added");
    assert_eq!(added.data["ext"], "201");
    assert_eq!(added.data["transport"], "udp");
    assert_eq!(added.data["source"], ua.addr().to_string());
    assert_eq!(added.data["contact"], format!("sip:201@{}", ua.addr()));

    // A refresh is not a new binding; an unregistration removes it.
    assert_eq!(register(&ua, "201", "pw201", 300, 3).await, 200);
    assert_eq!(register(&ua, "201", "pw201", 0, 5).await, 200);
    let removed = next_event(&mut ws).await;
    assert_eq!(removed.kind, "registration.removed");
    assert_eq!(removed.data["ext"], "201");
    assert_eq!(removed.seq, added.seq + 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_larger_than_the_broadcast_buffer_arrives_complete() {
    let server = TestServer::start(|_| {}).await;
    let read = server.api_key(Scope::Read).await;
    let mut ws = connect_events(server.http, &read, "since=0").await;
    // More than the broadcast keeps (4096): a subscriber that lags reads the rest from the log.
    const N: i64 = 6000;
    for n in 1..=N {
        append(&server, "call.created", None, n as u32);
    }
    server.store().flush().await.expect("flush");
    for expected in 1..=N {
        assert_eq!(next_event(&mut ws).await.seq, expected);
    }
    server.stop().await;
}
