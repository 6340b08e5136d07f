//! `/v1/webhooks` end to end: a receiver in the test that fails its first attempts still gets
//! every matching event, in order, signed; the retries show in the delivery state; deletion
//! stops deliveries; the cursor survives a restart.
#![allow(clippy::disallowed_methods)] // a test measures real time, not the server's clock

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use common::{GUARD, TestServer};
use switchboard::store::{Scope, StoreCmd};
use tokio::sync::{Semaphore, mpsc};

const SECRET: &str = "a-shared-secret-for-tests";

fn append(server: &TestServer, kind: &str, n: u32) {
    server.store().writer().send(StoreCmd::Event {
        at_ms: 1_738_324_800_000,
        kind: kind.to_owned(),
        session_id: None,
        call_id: None,
        data: serde_json::json!({ "n": n }),
    });
}

/// One request the receiver got.
#[derive(Debug)]
struct Received {
    status: u16,
    content_type: String,
    event_id: String,
    signature: String,
    body: Bytes,
}

/// A webhook receiver: answers 500 to its first `failures` requests; later ones are reported
/// at once but answered 200 only when the test adds a permit to `gate` (if `gated`). Every
/// request is reported on the channel as it arrives.
struct Receiver {
    url: String,
    rx: mpsc::UnboundedReceiver<Received>,
    gate: Arc<Semaphore>,
}

async fn receiver(failures: usize, gated: bool) -> Receiver {
    let (tx, rx) = mpsc::unbounded_channel();
    let gate = Arc::new(Semaphore::new(if gated {
        0
    } else {
        Semaphore::MAX_PERMITS
    }));
    let count = Arc::new(AtomicUsize::new(0));
    let handler_gate = gate.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let tx = tx.clone();
            let gate = handler_gate.clone();
            let count = count.clone();
            async move {
                let n = count.fetch_add(1, Ordering::SeqCst);
                let status = if n < failures {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                };
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned()
                };
                let _ = tx.send(Received {
                    status: status.as_u16(),
                    content_type: header("content-type"),
                    event_id: header("switchboard-event-id"),
                    signature: header("switchboard-signature"),
                    body,
                });
                if status.is_success() {
                    gate.acquire().await.expect("gate open").forget();
                }
                status
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind receiver");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Receiver {
        url: format!("http://{addr}/hook"),
        rx,
        gate,
    }
}

impl Receiver {
    async fn next(&mut self) -> Received {
        tokio::time::timeout(GUARD, self.rx.recv())
            .await
            .expect("a delivery in time")
            .expect("receiver running")
    }
}

use common::verify_signature as verify;

async fn create(server: &TestServer, admin: &str, body: serde_json::Value) -> serde_json::Value {
    let resp = reqwest::Client::new()
        .post(format!("http://{}/v1/webhooks", server.http))
        .bearer_auth(admin)
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 201);
    resp.json().await.expect("json")
}

async fn get(server: &TestServer, admin: &str, id: &str) -> serde_json::Value {
    let resp = reqwest::Client::new()
        .get(format!("http://{}/v1/webhooks/{id}", server.http))
        .bearer_auth(admin)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    resp.json().await.expect("json")
}

/// Waits (bounded by the guard) until the subscription's saved cursor reaches `seq`: it is
/// written just after the receiver's 2xx.
async fn wait_cursor(server: &TestServer, admin: &str, id: &str, seq: i64) -> serde_json::Value {
    let webhook_id = id.parse().expect("webhook id");
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        // Straight from the store: polling over HTTP would run into the key's rate limit.
        let row = server
            .store()
            .get_webhook(webhook_id)
            .await
            .expect("read")
            .expect("subscription");
        if row.last_delivered_seq == seq {
            return get(server, admin, id).await;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "cursor not saved: {row:?}"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_gets_every_event_in_order_signed_after_retries() {
    let server = TestServer::start(|c| c.http.webhook_retry_base_ms = 20).await;
    let admin = server.api_key(Scope::Admin).await;
    append(&server, "call.created", 0); // before the subscription: not delivered
    server.store().flush().await.expect("flush");
    let mut hook = receiver(2, true).await;
    let created = create(
        &server,
        &admin,
        serde_json::json!({ "url": hook.url, "types": ["call.*"], "secret": SECRET }),
    )
    .await;
    assert_eq!(created["secret"], SECRET);
    assert_eq!(created["types"], serde_json::json!(["call.*"]));
    let id = created["id"].as_str().expect("id").to_owned();

    append(&server, "call.created", 1); // seq 2
    append(&server, "registration.added", 2); // seq 3: not subscribed
    append(&server, "call.answered", 3); // seq 4
    append(&server, "call.ended", 4); // seq 5

    // Two failures, then the third attempt is held while we look at the delivery state.
    for _ in 0..2 {
        let r = hook.next().await;
        assert_eq!((r.status, r.event_id.as_str()), (500, "2"));
    }
    let third = hook.next().await;
    assert_eq!(third.event_id, "2");
    let state = get(&server, &admin, &id).await;
    let delivery = &state["delivery"];
    assert_eq!(delivery["attempts"], 2, "{state}");
    assert_eq!(delivery["last_status"], 500);
    assert!(
        delivery["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("500"))
    );
    assert!(delivery["next_attempt_at"].is_string());
    assert_eq!(delivery["last_delivered_seq"], 1);
    assert_eq!(delivery["pending_events"], 3);

    hook.gate.add_permits(1000);
    let mut delivered = vec![third];
    while delivered.len() < 3 {
        delivered.push(hook.next().await);
    }
    let seqs: Vec<&str> = delivered.iter().map(|r| r.event_id.as_str()).collect();
    assert_eq!(seqs, vec!["2", "4", "5"]);
    for r in &delivered {
        assert_eq!(r.status, 200);
        assert_eq!(r.content_type, "application/json");
        assert!(verify(&r.signature, &r.body, SECRET), "{}", r.signature);
        assert!(!verify(&r.signature, &r.body, "another-secret-entirely"));
        let event: serde_json::Value = serde_json::from_slice(&r.body).expect("event JSON");
        assert_eq!(event["seq"].to_string(), r.event_id);
        assert!(
            event["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("call."))
        );
    }
    let state = wait_cursor(&server, &admin, &id, 5).await;
    assert_eq!(state["delivery"]["pending_events"], 0);
    assert_eq!(state["delivery"]["attempts"], 0);
    assert_eq!(state["delivery"]["last_status"], 200);
    assert!(state["delivery"]["last_error"].is_null());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_subscription_stops_its_deliveries() {
    let server = TestServer::start(|_| {}).await;
    let admin = server.api_key(Scope::Admin).await;
    let mut gone = receiver(0, false).await;
    let mut kept = receiver(0, false).await;
    let a = create(
        &server,
        &admin,
        serde_json::json!({ "url": gone.url, "types": ["*"] }),
    )
    .await;
    assert!(
        a["secret"].as_str().is_some_and(|s| s.len() >= 32),
        "a secret is generated"
    );
    create(
        &server,
        &admin,
        serde_json::json!({ "url": kept.url, "types": ["*"] }),
    )
    .await;
    append(&server, "call.created", 1);
    assert_eq!(gone.next().await.event_id, "1");
    assert_eq!(kept.next().await.event_id, "1");

    let id = a["id"].as_str().expect("id");
    let client = reqwest::Client::new();
    let url = format!("http://{}/v1/webhooks/{id}", server.http);
    let del = client
        .delete(&url)
        .bearer_auth(&admin)
        .send()
        .await
        .expect("request");
    assert_eq!(del.status(), 204);
    let again = client
        .get(&url)
        .bearer_auth(&admin)
        .send()
        .await
        .expect("r");
    assert_eq!(again.status(), 404);

    append(&server, "call.ended", 2);
    assert_eq!(kept.next().await.event_id, "2");
    let list: serde_json::Value = client
        .get(format!("http://{}/v1/webhooks", server.http))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("r")
        .json()
        .await
        .expect("json");
    assert_eq!(list["webhooks"].as_array().expect("array").len(), 1);
    assert!(
        list["webhooks"][0].get("secret").is_none(),
        "secrets are shown once"
    );
    server.stop().await;
    assert!(gone.rx.try_recv().is_err(), "no delivery after the delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_resume_from_the_saved_cursor_after_a_restart() {
    let server = TestServer::start(|_| {}).await;
    let admin = server.api_key(Scope::Admin).await;
    let mut hook = receiver(0, false).await;
    let created = create(
        &server,
        &admin,
        serde_json::json!({ "url": hook.url, "types": ["call.ended"], "since": 0 }),
    )
    .await;
    let id = created["id"].as_str().expect("id").to_owned();
    append(&server, "call.ended", 1);
    assert_eq!(hook.next().await.event_id, "1");
    wait_cursor(&server, &admin, &id, 1).await;
    let dir = server.stop_keep_dir().await;

    let server = TestServer::start_in(dir, |_| {}).await;
    append(&server, "call.created", 2);
    append(&server, "call.ended", 3);
    assert_eq!(hook.next().await.event_id, "3", "event 1 is not sent again");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_need_the_admin_scope_and_a_valid_body() {
    let server = TestServer::start(|_| {}).await;
    let read = server.api_key(Scope::Read).await;
    let control = server.api_key(Scope::Control).await;
    let admin = server.api_key(Scope::Admin).await;
    let client = reqwest::Client::new();
    let url = format!("http://{}/v1/webhooks", server.http);
    for k in [&read, &control] {
        let resp = client.get(&url).bearer_auth(k).send().await.expect("r");
        assert_eq!(resp.status(), 403);
    }
    assert_eq!(client.get(&url).send().await.expect("r").status(), 401);
    for bad in [
        serde_json::json!({ "url": "ftp://x/y", "types": ["call.*"] }),
        serde_json::json!({ "url": "http://x/y", "types": [] }),
        serde_json::json!({ "url": "http://x/y", "types": ["Call"] }),
        serde_json::json!({ "url": "http://x/y", "types": ["*"], "secret": "short" }),
        serde_json::json!({ "url": "http://x/y", "types": ["*"], "extra": 1 }),
    ] {
        let resp = client
            .post(&url)
            .bearer_auth(&admin)
            .json(&bad)
            .send()
            .await
            .expect("r");
        assert!(resp.status().is_client_error(), "{bad}: {}", resp.status());
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
    }
    let missing = client
        .get(format!("{url}/00000000-0000-0000-0000-000000000000"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("r");
    assert_eq!(missing.status(), 404);
    server.stop().await;
}
