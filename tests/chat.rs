//! Conversations end to end (issue 12) through the HTTP API of a running server, on SQLite
//! and, when `SWITCHBOARD_TEST_PG_URL` is set, on PostgreSQL: a gateway channel's messages
//! (the same gateway id stored once), replies POSTed to its webhook signed and in order after
//! failures, card numbers masked before storage, one customer for one phone number in every
//! format, and a call from that number joining the chat's session.
#![allow(clippy::disallowed_methods)] // a test measures real time, not the server's clock

mod common;
#[macro_use]
#[allow(unused_macros)]
mod store_harness;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use common::{ApiClient, GUARD, TestServer, Ua, invite_with_sdp, verify_signature as verify};
use reqwest::Method;
use serde_json::{Value, json};
use switchboard::config::Config;
use switchboard::store::Scope;
use tokio::sync::mpsc;

/// A server on the database of `pg` (a PostgreSQL URL) or a fresh SQLite file, with GB as
/// the default region for phone numbers.
async fn server(pg: Option<&str>, edit: impl FnOnce(&mut Config)) -> TestServer {
    let pg = pg.map(str::to_owned);
    TestServer::start(move |c| {
        c.database_url = pg;
        c.chat.default_region = "GB".into();
        c.http.webhook_retry_base_ms = 20;
        edit(c);
    })
    .await
}

/// Runs `$body` (an `async fn(Option<String>)`) on SQLite, and on PostgreSQL when the
/// harness has it.
macro_rules! both {
    ($sqlite:ident, $pg:ident, $scenario:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            $scenario(None).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $pg() {
            match store_harness::TestDb::postgres().await {
                Some(db) => $scenario(Some(db.url.clone())).await,
                None => eprintln!("SWITCHBOARD_TEST_PG_URL not set: PostgreSQL variant skipped"),
            }
        }
    };
}

async fn keys(s: &TestServer) -> (ApiClient, ApiClient) {
    let admin = s.api_key(Scope::Admin).await;
    let control = s.api_key(Scope::Control).await;
    (
        ApiClient::new(s.http, &admin),
        ApiClient::new(s.http, &control),
    )
}

async fn channel(admin: &ApiClient, name: &str, webhook: Option<&str>) -> Value {
    let mut body = json!({"name": name, "kind": "sms"});
    if let Some(url) = webhook {
        body["webhook_url"] = json!(url);
    }
    let (status, created) = admin.send(Method::POST, "/v1/channels", Some(body)).await;
    assert_eq!(status, 201, "{created}");
    created
}

async fn inbound(api: &ApiClient, channel: &str, body: Value) -> (u16, Value) {
    api.send(
        Method::POST,
        &format!("/v1/channels/{channel}/messages"),
        Some(body),
    )
    .await
}

both!(
    gateway_messages_sqlite,
    gateway_messages_postgres,
    a_gateway_message_opens_a_conversation_and_the_same_id_is_stored_once
);

async fn a_gateway_message_opens_a_conversation_and_the_same_id_is_stored_once(pg: Option<String>) {
    let s = server(pg.as_deref(), |_| {}).await;
    let (admin, api) = keys(&s).await;
    channel(&admin, "sms", None).await;
    let msg = json!({"from": {"id": "wa-77", "phone": "+44 20 7946 0000", "name": "Ada"},
                     "text": "Hello, my parcel is late", "id": "gw-1"});
    let (status, first) = inbound(&api, "sms", msg.clone()).await;
    assert_eq!(status, 201, "{first}");
    let (status, again) = inbound(&api, "sms", msg).await;
    assert_eq!(
        status, 200,
        "the same gateway id is answered, not stored again"
    );
    assert_eq!(first, again);
    let (status, second) = inbound(
        &api,
        "sms",
        json!({"from": {"id": "wa-77"}, "text": "Any news?", "id": "gw-2"}),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(
        second["conversation_id"], first["conversation_id"],
        "the sender's open conversation takes the next message"
    );
    let id = first["conversation_id"].as_str().expect("id");
    let (status, conv) = api
        .send(Method::GET, &format!("/v1/conversations/{id}"), None)
        .await;
    assert_eq!(status, 200);
    let texts: Vec<&str> = conv["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["text"].as_str().expect("text"))
        .collect();
    assert_eq!(texts, ["Hello, my parcel is late", "Any news?"]);
    assert_eq!(
        conv["messages"][0]["author"],
        json!({"kind": "customer", "name": "Ada"})
    );
    assert_eq!(conv["contact"], "wa-77");
    assert_eq!(conv["session_id"], first["session_id"]);
    assert_eq!(conv["customer_id"], first["customer_id"]);
    // The customer is found by the phone, in any format.
    let (status, found) = api
        .send(Method::GET, "/v1/customers?phone=%2B442079460000", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(found["items"][0]["id"], first["customer_id"], "{found}");
    // The events: started once, one message each, with the session.
    let (status, events) = api.send(Method::GET, "/v1/events?type=chat.*", None).await;
    assert_eq!(status, 200, "{events}");
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["type"].as_str().expect("type"))
        .collect();
    assert_eq!(kinds, ["chat.started", "chat.message", "chat.message"]);
    assert_eq!(events["events"][0]["session_id"], first["session_id"]);
    s.stop().await;
}

/// One request the gateway got.
struct Delivered {
    message_id: String,
    signature: String,
    body: Bytes,
}

/// A gateway answering 503 to its first `failures` requests.
async fn gateway(failures: usize) -> (String, mpsc::UnboundedReceiver<Delivered>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let count = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new().route(
        "/out",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let tx = tx.clone();
            let count = count.clone();
            async move {
                if count.fetch_add(1, Ordering::SeqCst) < failures {
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned()
                };
                let _ = tx.send(Delivered {
                    message_id: header("switchboard-message-id"),
                    signature: header("switchboard-signature"),
                    body,
                });
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind gateway");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/out"), rx)
}

both!(
    replies_sqlite,
    replies_postgres,
    replies_reach_the_gateway_signed_and_in_order_after_failed_attempts
);

async fn replies_reach_the_gateway_signed_and_in_order_after_failed_attempts(pg: Option<String>) {
    let s = server(pg.as_deref(), |_| {}).await;
    let (admin, api) = keys(&s).await;
    let (url, mut got) = gateway(2).await;
    let created = channel(&admin, "whatsapp", Some(&url)).await;
    let secret = created["secret"]
        .as_str()
        .expect("secret shown once")
        .to_owned();
    let (_, first) = inbound(
        &api,
        "whatsapp",
        json!({"from": {"id": "+447700900123"}, "text": "hi", "id": "m1"}),
    )
    .await;
    let id = first["conversation_id"].as_str().expect("id");
    let mut sent = Vec::new();
    for text in ["Hello! How can I help?", "Your parcel arrives today."] {
        let (status, m) = api
            .send(
                Method::POST,
                &format!("/v1/conversations/{id}/messages"),
                Some(json!({"text": text, "author": "Grace"})),
            )
            .await;
        assert_eq!(status, 201, "{m}");
        assert_eq!(m["author"], json!({"kind": "agent", "name": "Grace"}));
        sent.push(m["id"].as_str().expect("id").to_owned());
    }
    for (want_id, want_text) in sent
        .iter()
        .zip(["Hello! How can I help?", "Your parcel arrives today."])
    {
        let d = tokio::time::timeout(GUARD, got.recv())
            .await
            .expect("a delivery in time")
            .expect("gateway running");
        assert!(
            verify(&d.signature, &d.body, &secret),
            "signed with the channel's secret"
        );
        let body: Value = serde_json::from_slice(&d.body).expect("json");
        assert_eq!(&d.message_id, want_id, "in order");
        assert_eq!(body["id"], json!(want_id));
        assert_eq!(body["text"], want_text);
        assert_eq!(body["to"], "+447700900123", "addressed to the sender");
        assert_eq!(body["conversation_id"], json!(id));
    }
    // Delivery is recorded on the message.
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        let (_, conv) = api
            .send(Method::GET, &format!("/v1/conversations/{id}"), None)
            .await;
        if conv["messages"][2]["delivered_ms"].is_i64() {
            assert!(
                conv["messages"][0]["delivered_ms"].is_null(),
                "the customer's own"
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{conv}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    s.stop().await;
}

both!(
    masking_sqlite,
    masking_postgres,
    a_card_number_is_masked_before_it_is_stored_or_published
);

async fn a_card_number_is_masked_before_it_is_stored_or_published(pg: Option<String>) {
    let s = server(pg.as_deref(), |_| {}).await;
    let (admin, api) = keys(&s).await;
    channel(&admin, "sms", None).await;
    let (status, got) = inbound(
        &api,
        "sms",
        json!({"from": {"phone": "07911 123456"},
               "text": "card 4111 1111 1111 1111 exp 12/29", "id": "c1"}),
    )
    .await;
    assert_eq!(status, 201, "{got}");
    let id = got["conversation_id"].as_str().expect("id");
    let (_, conv) = api
        .send(Method::GET, &format!("/v1/conversations/{id}"), None)
        .await;
    assert_eq!(conv["messages"][0]["text"], "card •••• 1111 exp 12/29");
    assert_eq!(conv["contact"], "+447911123456", "the phone in E.164");
    let (_, events) = api
        .send(Method::GET, "/v1/events?type=chat.message", None)
        .await;
    let text = events.to_string();
    assert!(!text.contains("4111 1111"), "{text}");
    assert!(text.contains("•••• 1111"), "{text}");
    s.stop().await;
}

both!(
    continuity_sqlite,
    continuity_postgres,
    a_call_from_the_chatting_customers_number_joins_the_chats_session
);

async fn a_call_from_the_chatting_customers_number_joins_the_chats_session(pg: Option<String>) {
    let s = server(pg.as_deref(), |c| {
        c.sip.trusted_cidrs = vec!["127.0.0.0/8".into()];
    })
    .await;
    let (admin, api) = keys(&s).await;
    channel(&admin, "sms", None).await;
    let (status, chat) = inbound(
        &api,
        "sms",
        json!({"from": {"phone": "+44 20 7946 0000"}, "text": "I'll call you", "id": "x1"}),
    )
    .await;
    assert_eq!(status, 201, "{chat}");
    // The same customer on another channel, the number written nationally: same session.
    let (_, other) = inbound(
        &api,
        "sms",
        json!({"from": {"id": "someone-else"}, "text": "unrelated", "id": "x2"}),
    )
    .await;
    assert_ne!(other["session_id"], chat["session_id"], "another customer");
    channel(&admin, "whatsapp", None).await;
    let (_, wa) = inbound(
        &api,
        "whatsapp",
        json!({"from": {"phone": "020 7946 0000"}, "text": "also here", "id": "y1"}),
    )
    .await;
    assert_eq!(
        wa["session_id"], chat["session_id"],
        "one session across channels"
    );
    assert_eq!(wa["customer_id"], chat["customer_id"]);
    assert_ne!(wa["conversation_id"], chat["conversation_id"]);
    // A call from a trusted trunk with the caller number written nationally.
    let ua = Ua::new(s.sip_udp).await;
    let sdp = "v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 30990 RTP/AVP 0\na=rtpmap:0 PCMU/8000\n";
    let invite = invite_with_sdp("1002", "02079460000", "cont-1", 1, sdp, None, s.sip_udp)
        .replace("{addr}", &ua.addr().to_string());
    ua.send(invite.as_bytes()).await;
    let deadline = tokio::time::Instant::now() + GUARD;
    let record = loop {
        let (status, list) = api.send(Method::GET, "/v1/call-records", None).await;
        assert_eq!(status, 200, "{list}");
        if let Some(r) = list["items"].as_array().and_then(|a| a.first()) {
            break r.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "no call record");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(
        record["session_id"], chat["session_id"],
        "the call continues the chat's session: {record}"
    );
    // One timeline: the messages, then the call, in time order; the same for the customer.
    let session = chat["session_id"].as_str().expect("session");
    let (status, doc) = api
        .send(Method::GET, &format!("/v1/sessions/{session}"), None)
        .await;
    assert_eq!(status, 200, "{doc}");
    let summary = |timeline: &Value| -> Vec<String> {
        timeline
            .as_array()
            .expect("timeline")
            .iter()
            .filter_map(|e| match e["kind"].as_str() {
                Some("message") => Some(format!("message:{}", e["text"].as_str().unwrap_or(""))),
                Some("call") => Some(format!("call:{}", e["caller"].as_str().unwrap_or(""))),
                _ => None,
            })
            .collect()
    };
    let want = [
        "message:I'll call you",
        "message:also here",
        "call:02079460000",
    ];
    assert_eq!(summary(&doc["timeline"]), want, "{doc}");
    assert_eq!(doc["conversations"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        doc["calls"].as_array().map(Vec::len),
        Some(1),
        "the arrays stay"
    );
    let customer = chat["customer_id"].as_str().expect("customer");
    let (status, all) = api
        .send(
            Method::GET,
            &format!("/v1/customers/{customer}/timeline"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(summary(&all["timeline"]), want);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_chat_requests_get_problem_answers_and_nothing_is_lost() {
    let s = server(None, |_| {}).await;
    let (admin, api) = keys(&s).await;
    channel(&admin, "sms", None).await;
    let ok = json!({"from": {"id": "u1"}, "text": "kept", "id": "k1"});
    let (status, kept) = inbound(&api, "sms", ok).await;
    assert_eq!(status, 201);
    let id = kept["conversation_id"].as_str().expect("id").to_owned();
    let big = "x".repeat(5000);
    for (path, body, want) in [
        (
            "/v1/channels/nope/messages",
            json!({"from": {"id": "u1"}, "text": "a", "id": "1"}),
            404,
        ),
        (
            "/v1/channels/web/messages",
            json!({"from": {"id": "u1"}, "text": "a", "id": "1"}),
            400,
        ),
        (
            "/v1/channels/sms/messages",
            json!({"from": {"id": "u1"}, "text": "  ", "id": "2"}),
            400,
        ),
        (
            "/v1/channels/sms/messages",
            json!({"from": {"id": "u1"}, "text": big, "id": "3"}),
            400,
        ),
        (
            "/v1/channels/sms/messages",
            json!({"from": {}, "text": "a", "id": "4"}),
            400,
        ),
        (
            "/v1/channels/sms/messages",
            json!({"from": {"phone": "no digits"}, "text": "a", "id": "5"}),
            400,
        ),
        (
            "/v1/channels/sms/messages",
            json!({"text": "a", "id": "6"}),
            422,
        ),
        (
            "/v1/conversations/0190a0a0-0000-7000-8000-000000000000/messages",
            json!({"text": "a"}),
            404,
        ),
        (
            "/v1/conversations/not-a-uuid/messages",
            json!({"text": "a"}),
            400,
        ),
    ] {
        let (status, problem) = api.send(Method::POST, path, Some(body)).await;
        assert_eq!(status, want, "{path}: {problem}");
        assert_eq!(problem["status"], want, "problem JSON: {problem}");
    }
    let (status, _) = admin
        .send(
            Method::POST,
            "/v1/channels",
            Some(json!({"name": "sms", "kind": "sms"})),
        )
        .await;
    assert_eq!(status, 409, "the name is taken");
    let (status, _) = admin
        .send(
            Method::POST,
            "/v1/channels",
            Some(json!({"name": "Bad Name", "kind": "sms"})),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = api
        .send(
            Method::POST,
            "/v1/channels",
            Some(json!({"name": "x", "kind": "sms"})),
        )
        .await;
    assert_eq!(status, 403, "channels are created with an admin key");
    let (status, _) = api
        .send(Method::POST, &format!("/v1/conversations/{id}/close"), None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = api
        .send(
            Method::POST,
            &format!("/v1/conversations/{id}/messages"),
            Some(json!({"text": "too late"})),
        )
        .await;
    assert_eq!(status, 409, "a closed conversation takes no reply");
    let (status, _) = api
        .send(Method::POST, &format!("/v1/conversations/{id}/close"), None)
        .await;
    assert_eq!(status, 409);
    let (_, conv) = api
        .send(Method::GET, &format!("/v1/conversations/{id}"), None)
        .await;
    assert_eq!(conv["state"], "closed");
    assert_eq!(conv["messages"].as_array().map(Vec::len), Some(1), "{conv}");
    // The closed conversation's sender starts a new one.
    let (status, next) = inbound(
        &api,
        "sms",
        json!({"from": {"id": "u1"}, "text": "again", "id": "k2"}),
    )
    .await;
    assert_eq!(status, 201);
    assert_ne!(next["conversation_id"], json!(id));
    assert_eq!(
        next["session_id"], kept["session_id"],
        "in the same session"
    );
    let (_, list) = api
        .send(
            Method::GET,
            "/v1/conversations?channel=sms&state=open",
            None,
        )
        .await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
    s.stop().await;
}

both!(
    customers_sqlite,
    customers_postgres,
    a_contact_naming_two_customers_is_a_conflict_and_a_merge_can_be_split_again
);

async fn a_contact_naming_two_customers_is_a_conflict_and_a_merge_can_be_split_again(
    pg: Option<String>,
) {
    let s = server(pg.as_deref(), |_| {}).await;
    let (admin, api) = keys(&s).await;
    channel(&admin, "sms", None).await;
    let (_, a) = inbound(
        &api,
        "sms",
        json!({"from": {"phone": "+44 7911 123456"}, "text": "from my phone", "id": "1"}),
    )
    .await;
    let (_, b) = inbound(
        &api,
        "sms",
        json!({"from": {"email": "Ada@Example.com"}, "text": "from my email", "id": "2"}),
    )
    .await;
    let (ca, cb) = (a["customer_id"].clone(), b["customer_id"].clone());
    assert_ne!(ca, cb, "two customers so far");
    // One contact with both: not merged silently, a conflict on both customers.
    let (status, both) = inbound(
        &api,
        "sms",
        json!({"from": {"id": "g-1", "phone": "07911123456", "email": "ada@example.com"},
               "text": "both", "id": "3"}),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(both["customer_id"], ca, "the first identity's customer");
    let customer = |id: &Value| {
        let id = id.as_str().expect("id").to_owned();
        let api = &api;
        async move {
            let (status, c) = api
                .send(Method::GET, &format!("/v1/customers/{id}"), None)
                .await;
            assert_eq!(status, 200, "{c}");
            c
        }
    };
    let seen_a = customer(&ca).await;
    assert_eq!(seen_a["conflicts"][0]["other_customer_id"], cb, "{seen_a}");
    assert_eq!(
        seen_a["conflicts"][0]["other_identity"]["value"],
        "ada@example.com"
    );
    assert_eq!(customer(&cb).await["conflicts"][0]["other_customer_id"], ca);
    // Any format of the number finds the customer; unknown CRM ids find nobody.
    for q in [
        "phone=07911%20123456",
        "phone=%2B447911123456",
        "email=ADA@example.com",
    ] {
        let (_, found) = api
            .send(Method::GET, &format!("/v1/customers?{q}"), None)
            .await;
        let want = if q.starts_with("phone") { &ca } else { &cb };
        assert_eq!(&found["items"][0]["id"], want, "{q}: {found}");
    }
    let (status, found) = api.send(Method::GET, "/v1/customers?crm=nope", None).await;
    assert_eq!(
        (status, found["items"].as_array().map(Vec::len)),
        (200, Some(0))
    );

    // Merge b into a: b points at a; its email and session are a's now.
    let cap = ca.as_str().expect("id");
    let (status, merged) = api
        .send(
            Method::POST,
            &format!("/v1/customers/{cap}/merge"),
            Some(json!({"customer_id": cb})),
        )
        .await;
    assert_eq!(status, 403, "merging takes an admin key: {merged}");
    let (status, merged) = admin
        .send(
            Method::POST,
            &format!("/v1/customers/{cap}/merge"),
            Some(json!({"customer_id": cb})),
        )
        .await;
    assert_eq!(status, 200, "{merged}");
    assert_eq!(
        merged["sessions"].as_array().map(Vec::len),
        Some(2),
        "{merged}"
    );
    assert_eq!(
        customer(&cb).await["merged_into"],
        ca,
        "the old id points at the survivor"
    );
    let (_, found) = api
        .send(Method::GET, "/v1/customers?email=ada@example.com", None)
        .await;
    assert_eq!(found["items"][0]["id"], ca);
    let (status, _) = admin
        .send(
            Method::POST,
            &format!("/v1/customers/{cap}/merge"),
            Some(json!({"customer_id": ca})),
        )
        .await;
    assert_eq!(status, 400, "not into itself");

    // Split it off again: what moved goes back.
    let (status, split) = admin
        .send(
            Method::POST,
            &format!("/v1/customers/{cap}/split"),
            Some(json!({"customer_id": cb})),
        )
        .await;
    assert_eq!(status, 200, "{split}");
    assert_eq!(split["id"], cb);
    assert!(split["merged_into"].is_null());
    assert_eq!(split["sessions"].as_array().map(Vec::len), Some(1));
    let (_, found) = api
        .send(Method::GET, "/v1/customers?email=ada@example.com", None)
        .await;
    assert_eq!(found["items"][0]["id"], cb);
    let (status, _) = admin
        .send(
            Method::POST,
            &format!("/v1/customers/{cap}/split"),
            Some(json!({"customer_id": cb})),
        )
        .await;
    assert_eq!(status, 404, "nothing left to split");
    // Both are in the audit log.
    let (_, audit) = admin.send(Method::GET, "/v1/audit?limit=100", None).await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["action"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        actions.contains(&"customer.merge") && actions.contains(&"customer.split"),
        "{audit}"
    );
    s.stop().await;
}

both!(
    stored_phones_sqlite,
    stored_phones_postgres,
    phone_identities_stored_in_other_formats_are_normalised_and_duplicates_merged
);

async fn phone_identities_stored_in_other_formats_are_normalised_and_duplicates_merged(
    pg: Option<String>,
) {
    use switchboard::store::{Identity, IdentityKind, NewSession, StoreCmd};
    // Before: no default region, numbers stored as they came (as before E.164).
    let s = server(pg.as_deref(), |c| c.chat.default_region = String::new()).await;
    for (value, at) in [
        ("02079460000", 1),
        ("+442079460000", 2),
        ("07911 123456", 3),
    ] {
        s.store()
            .writer()
            .send(StoreCmd::SessionStarted(NewSession {
                session_id: switchboard::store::SessionId::new(),
                identity: Some(Identity {
                    kind: IdentityKind::Phone,
                    value: value.into(),
                }),
                channel: "voice".into(),
                started_ms: at,
            }));
    }
    s.store().flush().await.expect("flush");
    let dir = s.stop_keep_dir().await;
    // After: GB; the start normalises what is stored.
    let pg2 = pg.clone();
    let s = TestServer::start_in(dir, move |c| {
        c.database_url = pg2;
        c.chat.default_region = "GB".into();
    })
    .await;
    let api = ApiClient::new(s.http, &s.api_key(Scope::Admin).await);
    let (_, one) = api
        .send(Method::GET, "/v1/customers?phone=%2B442079460000", None)
        .await;
    let c = &one["items"][0];
    assert_eq!(
        c["sessions"].as_array().map(Vec::len),
        Some(2),
        "merged: {one}"
    );
    let phones: Vec<&str> = c["identities"]
        .as_array()
        .expect("identities")
        .iter()
        .filter_map(|i| i["value"].as_str())
        .collect();
    assert_eq!(phones, ["+442079460000"], "one identity, in E.164");
    let (_, mobile) = api
        .send(Method::GET, "/v1/customers?phone=%2B447911123456", None)
        .await;
    assert_eq!(
        mobile["items"].as_array().map(Vec::len),
        Some(1),
        "rewritten: {mobile}"
    );
    let (_, audit) = api.send(Method::GET, "/v1/audit?limit=100", None).await;
    assert!(audit.to_string().contains("customer.merge"), "{audit}");
    s.stop().await;
}

/// A plan whose number 555 texts the caller a chat link on `sms`, then hangs up.
const TEXTING_PLAN: &str = "\
[[routes]]
name = \"text me\"
number = \"555\"
flow = \"text_me\"

[[routes]]
name = \"extensions\"
flow = \"ext\"

[[flows.ext]]
dial = \"{{called}}\"

[[flows.text_me]]
send_message = \"sms\"
text = \"Continue in chat: https://example.com/chat?session={{session_id}}\"

[[flows.text_me]]
hangup = true
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ivr_texts_the_caller_a_chat_link_on_their_messaging_channel() {
    let plan = tempfile::tempdir().expect("plan dir");
    std::fs::write(plan.path().join("plan.toml"), TEXTING_PLAN).expect("write plan");
    let plan_dir = plan.path().to_path_buf();
    let media = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("media");
    let s = server(None, move |c| {
        c.ivr.dialplans = plan_dir;
        c.media.dir = media;
        c.sip.trusted_cidrs = vec!["127.0.0.0/8".into()];
    })
    .await;
    let (admin, api) = keys(&s).await;
    let (url, mut got) = gateway(0).await;
    let created = channel(&admin, "sms", Some(&url)).await;
    let secret = created["secret"].as_str().expect("secret").to_owned();
    let ua = Ua::new(s.sip_udp).await;
    let sdp = "v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 30992 RTP/AVP 0\na=rtpmap:0 PCMU/8000\n";
    let invite = invite_with_sdp("555", "02079460000", "text-1", 1, sdp, None, s.sip_udp)
        .replace("{addr}", &ua.addr().to_string());
    ua.send(invite.as_bytes()).await;
    let Ok(Some(d)) = tokio::time::timeout(GUARD, got.recv()).await else {
        let (_, records) = api.send(Method::GET, "/v1/call-records", None).await;
        let (_, convs) = api.send(Method::GET, "/v1/conversations", None).await;
        let (_, events) = api.send(Method::GET, "/v1/events", None).await;
        panic!("no text reached the gateway\n{records}\n{convs}\n{events}");
    };
    assert!(verify(&d.signature, &d.body, &secret));
    let body: Value = serde_json::from_slice(&d.body).expect("json");
    assert_eq!(body["to"], "+442079460000", "the caller's number in E.164");
    assert_eq!(body["author"], "bot");
    let text = body["text"].as_str().expect("text");
    assert!(
        text.starts_with("Continue in chat: https://example.com/chat?session="),
        "{text}"
    );
    // The conversation is in the call's session.
    let (_, records) = api.send(Method::GET, "/v1/call-records", None).await;
    let session = records["items"][0]["session_id"].clone();
    assert!(
        text.ends_with(session.as_str().expect("session")),
        "{text} / {session}"
    );
    let (_, list) = api
        .send(Method::GET, "/v1/conversations?channel=sms", None)
        .await;
    assert_eq!(list["items"][0]["session_id"], session, "{list}");
    assert_eq!(list["items"][0]["contact"], "+442079460000");
    s.stop().await;
}
