//! The web chat widget's server side (issue 12): visitor tokens, the visitor's WebSocket
//! (message, ack, replies, resume after a reconnect with nothing lost or stored twice, read
//! state, typing), and what is refused (a forged token, another site, a bad frame, a flood).
//! The page itself is driven in Chromium by `tests/browser/chat_widget.py`.
#![allow(clippy::disallowed_methods)] // a test measures real time, not the server's clock

mod common;

use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{Value, json};
use switchboard::store::Scope;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use common::{ApiClient, GUARD, TestServer};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn visitor(s: &TestServer, form: Value) -> String {
    let r = reqwest::Client::new()
        .post(format!("http://{}/chat/visitor", s.http))
        .header("Origin", format!("http://{}", s.http))
        .json(&form)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.expect("json");
    body["token"].as_str().expect("token").to_owned()
}

async fn connect(s: &TestServer, token: &str) -> Ws {
    let mut req = format!("ws://{}/chat/ws?token={token}", s.http)
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "Origin",
        format!("http://{}", s.http).parse().expect("header"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("websocket");
    let hello = next(&mut ws).await;
    assert_eq!(hello["type"], "hello");
    ws
}

async fn next(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(GUARD, ws.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .expect("frame");
        if let Message::Text(t) = msg {
            return serde_json::from_str(t.as_str()).expect("json frame");
        }
    }
}

/// The next frame of type `kind` (others skipped).
async fn next_of(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let f = next(ws).await;
        if f["type"] == kind {
            return f;
        }
    }
}

async fn say(ws: &mut Ws, client_id: &str, text: &str) {
    let frame = json!({"type": "message", "client_id": client_id, "text": text});
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .expect("send");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_chats_reconnects_and_nothing_is_lost_or_stored_twice() {
    let s = TestServer::start(|c| c.chat.default_region = "GB".into()).await;
    let api = ApiClient::new(s.http, &s.api_key(Scope::Control).await);
    let token = visitor(&s, json!({"name": "Ada", "phone": "020 7946 0000"})).await;
    let mut ws = connect(&s, &token).await;
    say(&mut ws, "c-1", "Hello, card 4111 1111 1111 1111").await;
    let ack = next_of(&mut ws, "ack").await;
    assert_eq!(ack["client_id"], "c-1");
    let echo = next_of(&mut ws, "message").await;
    assert_eq!(echo["id"], ack["id"], "the stored message comes back");
    assert_eq!(
        echo["text"], "Hello, card •••• 1111",
        "masked before storage"
    );
    assert_eq!(echo["author"]["kind"], "customer");
    let conversation = ack["conversation_id"].as_str().expect("id").to_owned();
    // The customer is the phone's, in E.164; the contact is the visitor.
    let (_, conv) = api
        .send(
            Method::GET,
            &format!("/v1/conversations/{conversation}"),
            None,
        )
        .await;
    assert_eq!(conv["channel"], "web");
    assert!(conv["contact"].as_str().expect("contact").starts_with("v-"));
    let (_, found) = api
        .send(Method::GET, "/v1/customers?phone=%2B442079460000", None)
        .await;
    assert_eq!(found["items"][0]["id"], conv["customer_id"]);

    // A reply through the API reaches the page; an agent typing shows.
    let (status, _) = api
        .send(
            Method::POST,
            &format!("/v1/conversations/{conversation}/typing"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(next_of(&mut ws, "typing").await["by"], "agent");
    let (status, reply) = api
        .send(
            Method::POST,
            &format!("/v1/conversations/{conversation}/messages"),
            Some(json!({"text": "Hi Ada", "author": "Grace"})),
        )
        .await;
    assert_eq!(status, 201);
    let got = next_of(&mut ws, "message").await;
    assert_eq!(got["text"], "Hi Ada");
    assert_eq!(got["author"], json!({"kind": "agent", "name": "Grace"}));
    // The visitor reads it; the agent reads the visitor's message.
    ws.send(Message::Text(
        json!({"type": "read", "message_id": reply["id"]})
            .to_string()
            .into(),
    ))
    .await
    .expect("send");
    let (status, _) = api
        .send(
            Method::POST,
            &format!("/v1/conversations/{conversation}/read"),
            Some(json!({"message_id": ack["id"]})),
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(next_of(&mut ws, "read").await["message_id"], ack["id"]);

    // The connection drops; meanwhile a reply is written and the page's next message waits.
    drop(ws);
    api.send(
        Method::POST,
        &format!("/v1/conversations/{conversation}/messages"),
        Some(json!({"text": "While you were away"})),
    )
    .await;
    let mut ws = connect(&s, &token).await;
    ws.send(Message::Text(
        json!({"type": "resume", "after": reply["id"]})
            .to_string()
            .into(),
    ))
    .await
    .expect("send");
    let missed = next_of(&mut ws, "message").await;
    assert_eq!(
        missed["text"], "While you were away",
        "resume sends what came after"
    );
    // The page resends a message whose ack it never got: stored once, same id.
    say(&mut ws, "c-1", "Hello, card 4111 1111 1111 1111").await;
    let again = next_of(&mut ws, "ack").await;
    assert_eq!(again["id"], ack["id"], "a resend is the same message");
    say(&mut ws, "c-2", "Thanks").await;
    let thanks = next_of(&mut ws, "ack").await;
    assert_eq!(
        next_of(&mut ws, "message").await["id"],
        thanks["id"],
        "its echo"
    );
    let (_, conv) = api
        .send(
            Method::GET,
            &format!("/v1/conversations/{conversation}"),
            None,
        )
        .await;
    let texts: Vec<&str> = conv["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["text"].as_str().expect("text"))
        .collect();
    assert_eq!(
        texts,
        [
            "Hello, card •••• 1111",
            "Hi Ada",
            "While you were away",
            "Thanks"
        ]
    );
    assert!(
        conv["messages"][1]["read_ms"].is_i64(),
        "the reply was read: {conv}"
    );
    assert!(
        conv["messages"][0]["read_ms"].is_i64(),
        "the agent read it: {conv}"
    );
    // A full resume (a reloaded page) sends the whole conversation with the page's ids.
    ws.send(Message::Text(json!({"type": "resume"}).to_string().into()))
        .await
        .expect("send");
    let first = next_of(&mut ws, "message").await;
    assert_eq!(first["client_id"], "c-1");

    // Closing the conversation tells the page.
    api.send(
        Method::POST,
        &format!("/v1/conversations/{conversation}/close"),
        None,
    )
    .await;
    assert_eq!(
        next_of(&mut ws, "ended").await["conversation_id"],
        conversation.as_str()
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tokens_foreign_sites_bad_frames_and_floods_are_refused() {
    let s = TestServer::start(|c| {
        c.chat.messages_per_minute = 4; // the blank message counts too
        c.chat.widget_origins = vec!["https://shop.example".into()];
    })
    .await;
    let http = reqwest::Client::new();
    // Another site may not get a token; an allowed one may.
    for (origin, want) in [("https://evil.example", 403), ("https://shop.example", 201)] {
        let r = http
            .post(format!("http://{}/chat/visitor", s.http))
            .header("Origin", origin)
            .json(&json!({}))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), want, "{origin}");
    }
    let r = http
        .post(format!("http://{}/chat/visitor", s.http))
        .json(&json!({"phone": "no digits"}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 400);
    let token = visitor(&s, json!({})).await;
    // A changed token is refused before any upgrade.
    let mut forged = token.clone();
    forged.replace_range(0..2, "00");
    for t in [forged.as_str(), "nonsense"] {
        let r = http
            .get(format!("http://{}/chat/ws?token={t}", s.http))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 401, "{t}");
        let p: Value = r.json().await.expect("problem");
        assert_eq!(p["status"], 401);
    }
    // The page of the embedding page has the page's origin; the chat page says who may frame it.
    let page = http
        .get(format!("http://{}/chat", s.http))
        .send()
        .await
        .expect("page");
    let csp = page
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        csp.contains("frame-ancestors 'self' https://shop.example"),
        "{csp}"
    );
    let mut ws = connect(&s, &token).await;
    for bad in [
        "not json",
        r#"{"type":"message"}"#,
        r#"{"type":"read","message_id":"x"}"#,
    ] {
        ws.send(Message::Text(bad.into())).await.expect("send");
        let e = next_of(&mut ws, "error").await;
        assert_eq!(e["code"], "bad_frame", "{bad}");
    }
    say(&mut ws, "e-1", "   ").await;
    assert_eq!(next_of(&mut ws, "error").await["code"], "invalid");
    for i in 0..3 {
        say(&mut ws, &format!("f-{i}"), "flood").await;
        next_of(&mut ws, "ack").await;
    }
    say(&mut ws, "f-3", "flood").await;
    assert_eq!(next_of(&mut ws, "error").await["code"], "rate_limited");
    // Still open and still itself after the errors.
    ws.send(Message::Text(json!({"type": "resume"}).to_string().into()))
        .await
        .expect("send");
    assert_eq!(next_of(&mut ws, "message").await["text"], "flood");
    s.stop().await;
}

/// A PNG's signature and a little more: enough for the server to tell it is a PNG.
fn png(len: usize) -> Vec<u8> {
    let mut b = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    b.resize(len, 7);
    b
}

async fn upload(s: &TestServer, token: &str, name: &str, body: Vec<u8>) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!(
            "http://{}/chat/attachments?token={token}&name={name}",
            s.http
        ))
        .header("Content-Type", "text/plain") // ignored: the content decides
        .body(body)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_are_checked_by_content_and_served_only_to_their_conversation() {
    let s = TestServer::start(|c| c.chat.attachment_max_bytes = 4096).await;
    let api = ApiClient::new(s.http, &s.api_key(Scope::Control).await);
    let token = visitor(&s, json!({"name": "Ada"})).await;
    let other = visitor(&s, json!({})).await;
    let (status, a) = upload(&s, &token, "../photo.png", png(300)).await;
    assert_eq!(status, 201, "{a}");
    assert_eq!(a["content_type"], "image/png");
    assert_eq!(a["name"], "photo.png", "the path is dropped");
    let (status, p) = upload(&s, &token, "x.png", b"MZ\x90\0 an exe named png".to_vec()).await;
    assert_eq!((status, p["status"].clone()), (415, json!(415)), "{p}");
    let (status, p) = upload(&s, &token, "big.png", png(5000)).await;
    assert_eq!(status, 413, "its own size limit: {p}");
    let (status, _) = upload(&s, "forged", "x.png", png(100)).await;
    assert_eq!(status, 401);

    let mut ws = connect(&s, &token).await;
    let frame =
        json!({"type": "message", "client_id": "p-1", "text": "", "attachments": [a["id"]]});
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .expect("send");
    let ack = next_of(&mut ws, "ack").await;
    let echo = next_of(&mut ws, "message").await;
    assert_eq!(echo["attachments"][0]["name"], "photo.png", "{echo}");
    // The same file cannot be sent twice.
    let frame =
        json!({"type": "message", "client_id": "p-2", "text": "again", "attachments": [a["id"]]});
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .expect("send");
    assert_eq!(next_of(&mut ws, "error").await["code"], "invalid");

    let conversation = ack["conversation_id"].as_str().expect("id");
    let (_, conv) = api
        .send(
            Method::GET,
            &format!("/v1/conversations/{conversation}"),
            None,
        )
        .await;
    assert_eq!(
        conv["messages"][0]["attachments"][0]["id"], a["id"],
        "{conv}"
    );
    let http = reqwest::Client::new();
    let file = http
        .get(format!(
            "http://{}/v1/conversations/{conversation}/attachments/{}",
            s.http,
            a["id"].as_str().expect("id")
        ))
        .bearer_auth(api.key())
        .send()
        .await
        .expect("get");
    assert_eq!(file.status(), 200);
    assert_eq!(
        file.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("image/png")
    );
    assert_eq!(file.bytes().await.expect("bytes").to_vec(), png(300));
    // Only the visitor of that conversation gets it through the widget.
    for (t, want) in [(&token, 200), (&other, 404)] {
        let r = http
            .get(format!(
                "http://{}/chat/attachments/{}?token={t}",
                s.http,
                a["id"].as_str().expect("id")
            ))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), want);
    }
    // An agent's file reaches the visitor, who may fetch it.
    let pdf = b"%PDF-1.4\n%\xe2\xe3\n1 0 obj\n".to_vec();
    let r = http
        .post(format!(
            "http://{}/v1/conversations/{conversation}/attachments?name=invoice.pdf",
            s.http
        ))
        .bearer_auth(api.key())
        .body(pdf.clone())
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), 201);
    let up: Value = r.json().await.expect("json");
    let (status, reply) = api
        .send(
            Method::POST,
            &format!("/v1/conversations/{conversation}/messages"),
            Some(json!({"text": "Your invoice", "attachments": [up["id"]]})),
        )
        .await;
    assert_eq!(status, 201, "{reply}");
    assert_eq!(reply["attachments"][0]["content_type"], "application/pdf");
    let got = next_of(&mut ws, "message").await;
    assert_eq!(got["attachments"][0]["name"], "invoice.pdf");
    let r = http
        .get(format!(
            "http://{}/chat/attachments/{}?token={token}",
            s.http,
            up["id"].as_str().expect("id")
        ))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()
            .get("content-disposition")
            .and_then(|v| v.to_str().ok()),
        Some("attachment; filename=\"invoice.pdf\"")
    );
    assert_eq!(r.bytes().await.expect("bytes").to_vec(), pdf);
    s.stop().await;
}
