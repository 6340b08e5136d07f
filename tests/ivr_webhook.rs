//! The webhook step's HTTP client (`switchboard::ivr::webhook::post`) against servers started
//! in each test on 127.0.0.1: what arrives, and every way a reply can be unusable.
#![allow(clippy::disallowed_methods)] // a test measures real time, not the server's clock

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Json;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect};
use axum::routing::post;
use serde_json::{Value, json};
use switchboard::ivr::webhook::{self, MAX_REPLY_BYTES, WebhookError};

const T: Duration = Duration::from_secs(10);

/// Echoes what it received: body, Content-Type, User-Agent.
async fn echo(headers: HeaderMap, Json(body): Json<Value>) -> Json<Value> {
    let h = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    Json(json!({
        "received": body,
        "content_type": h(header::CONTENT_TYPE),
        "user_agent": h(header::USER_AGENT),
    }))
}

async fn server() -> SocketAddr {
    let app = axum::Router::new()
        .route("/echo", post(echo))
        .route(
            "/fail",
            post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .route(
            "/bad-json",
            post(|| async {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    "{\"steps\": [\n  {\"say\": }\n]}",
                )
            }),
        )
        .route(
            "/huge",
            post(|| async { "x".repeat(MAX_REPLY_BYTES + 1).into_response() }),
        )
        .route(
            "/hop/{n}",
            post(
                |axum::extract::Path(n): axum::extract::Path<u32>| async move {
                    if n == 0 {
                        Redirect::temporary("/echo")
                    } else {
                        Redirect::temporary(&format!("/hop/{}", n - 1))
                    }
                },
            ),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test]
async fn the_context_arrives_as_json_and_the_reply_is_parsed() {
    let addr = server().await;
    let body = json!({"call_id": "c-1", "caller": "1001", "digits": "42", "vars": {"lang": "en"}});
    let reply = webhook::post(&format!("http://{addr}/echo"), &body, T)
        .await
        .expect("a reply");
    assert_eq!(reply["received"], body);
    assert_eq!(reply["content_type"], "application/json");
    assert_eq!(
        reply["user_agent"],
        format!("switchboard/{}", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test]
async fn a_server_error_is_reported_with_its_status() {
    let addr = server().await;
    let err = webhook::post(&format!("http://{addr}/fail"), &json!({}), T)
        .await
        .expect_err("HTTP 500");
    assert!(matches!(err, WebhookError::Status(500)), "{err:?}");
    let err = webhook::post(&format!("http://{addr}/nowhere"), &json!({}), T)
        .await
        .expect_err("HTTP 404");
    assert!(matches!(err, WebhookError::Status(404)), "{err:?}");
}

#[tokio::test]
async fn invalid_json_says_where_it_broke() {
    let addr = server().await;
    let err = webhook::post(&format!("http://{addr}/bad-json"), &json!({}), T)
        .await
        .expect_err("invalid JSON");
    match err {
        WebhookError::InvalidJson(msg) => assert!(msg.contains("line 2 column"), "{msg}"),
        other => panic!("expected InvalidJson, got {other:?}"),
    }
}

#[tokio::test]
async fn a_reply_over_one_mebibyte_is_refused() {
    let addr = server().await;
    let err = webhook::post(&format!("http://{addr}/huge"), &json!({}), T)
        .await
        .expect_err("too big");
    match err {
        WebhookError::Http(msg) => assert!(msg.contains("larger than"), "{msg}"),
        other => panic!("expected Http, got {other:?}"),
    }
}

#[tokio::test]
async fn three_redirects_are_followed_and_a_fourth_is_not() {
    let addr = server().await;
    let body = json!({"n": 3});
    let reply = webhook::post(&format!("http://{addr}/hop/2"), &body, T)
        .await
        .expect("three redirects are fine");
    assert_eq!(reply["received"], body, "307 keeps the method and the body");
    let err = webhook::post(&format!("http://{addr}/hop/3"), &body, T)
        .await
        .expect_err("four redirects");
    assert!(matches!(err, WebhookError::Http(_)), "{err:?}");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    // Accepts connections and holds them open without a byte of reply.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let limit = Duration::from_millis(300);
    let started = Instant::now();
    let err = webhook::post(&format!("http://{addr}/hook"), &json!({}), limit)
        .await
        .expect_err("no answer");
    let took = started.elapsed();
    assert!(
        matches!(err, WebhookError::Timeout(d) if d == limit),
        "{err:?}"
    );
    assert!(took >= limit, "not before the limit: {took:?}");
    assert!(
        took < Duration::from_secs(5),
        "soon after the limit: {took:?}"
    );
}

#[tokio::test]
async fn only_http_and_https_urls_are_used() {
    for url in [
        "ftp://127.0.0.1/hook",
        "file:///etc/passwd",
        "unix:/run/x.sock",
        "not a url",
        "",
    ] {
        let err = webhook::post(url, &json!({}), T).await.expect_err(url);
        assert!(matches!(err, WebhookError::Http(_)), "{url}: {err:?}");
    }
}

#[tokio::test]
async fn a_refused_connection_is_an_http_error() {
    // Bound then dropped: nothing listens on the port.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let err = webhook::post(&format!("http://{addr}/hook"), &json!({}), T)
        .await
        .expect_err("refused");
    assert!(matches!(err, WebhookError::Http(_)), "{err:?}");
}
