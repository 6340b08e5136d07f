//! Every `/v1` operation in the OpenAPI document refuses a missing key (401) and a key below
//! its declared scope (403) with problem JSON, and declares a scope at all; plus the body
//! limit (413), the per-key rate limit (429 + Retry-After) and CORS (off unless configured).

mod common;

use common::TestServer;
use serde_json::Value;
use switchboard::store::Scope;

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// One operation of the document: method, path with its parameters filled, declared scope.
struct Operation {
    method: reqwest::Method,
    path: String,
    scope: Option<Scope>,
}

/// Walks paths × methods of the OpenAPI document.
fn operations() -> Vec<Operation> {
    let doc = serde_json::to_value(switchboard::api::openapi()).expect("document as JSON");
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "put", "post", "delete", "patch"] {
            let Some(op) = item.get(method) else { continue };
            let scope = op["security"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|req| req.get("api_key")?.as_array().cloned())
                .flatten()
                .filter_map(|s| Scope::parse(s.as_str()?))
                .max();
            ops.push(Operation {
                method: method.to_uppercase().parse().expect("method"),
                path: fill_params(path),
                scope,
            });
        }
    }
    ops
}

/// `/v1/calls/{id}/play` → `/v1/calls/<random uuid>/play`.
fn fill_params(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c + 1);
        out.push_str(&uuid::Uuid::new_v4().to_string());
        rest = &rest[close..];
    }
    out.push_str(rest);
    out
}

async fn send(
    server: &TestServer,
    op: &Operation,
    key: Option<&str>,
) -> (reqwest::StatusCode, reqwest::header::HeaderMap, String) {
    let url = format!("http://{}{}", server.http, op.path);
    let mut req = client().request(op.method.clone(), url);
    if [
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::PATCH,
    ]
    .contains(&op.method)
    {
        req = req.json(&serde_json::json!({}));
    }
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.expect("body"))
}

/// Why `(status, headers, body)` is not a problem document with `want`; None when it is.
fn not_a_problem(
    got: &(reqwest::StatusCode, reqwest::header::HeaderMap, String),
    want: u16,
) -> Option<String> {
    let (status, headers, body) = got;
    if status.as_u16() != want {
        return Some(format!("status {status}, want {want}: {body}"));
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type != "application/problem+json" {
        return Some(format!("content-type {content_type:?}"));
    }
    match serde_json::from_str::<Value>(body) {
        Ok(p) if p["status"] == want && p["title"].is_string() && p["type"].is_string() => None,
        _ => Some(format!("not a problem document: {body}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_declares_a_scope_and_refuses_missing_and_lower_keys() {
    let server = TestServer::start(|c| {
        c.http.rate_limit_per_sec = 100_000;
        c.http.rate_limit_burst = 100_000;
    })
    .await;
    let keys = [
        (Scope::Read, server.api_key(Scope::Read).await),
        (Scope::Control, server.api_key(Scope::Control).await),
        (Scope::Admin, server.api_key(Scope::Admin).await),
    ];
    let ops = operations();
    assert!(ops.len() >= 5, "the document lists the operations");
    let mut failures = Vec::new();
    for op in &ops {
        let name = format!("{} {}", op.method, op.path);
        let Some(needed) = op.scope else {
            failures.push(format!(
                "{name}: declares no security requirement (add security((\"api_key\" = [\"read\"|\"control\"|\"admin\"])))"
            ));
            continue;
        };
        if let Some(why) = not_a_problem(&send(&server, op, None).await, 401) {
            failures.push(format!("{name} without a key: {why}"));
        }
        for (scope, key) in &keys {
            let got = send(&server, op, Some(key)).await;
            if *scope < needed {
                if let Some(why) = not_a_problem(&got, 403) {
                    failures.push(format!("{name} with a {scope} key (needs {needed}): {why}"));
                }
            } else if [401, 403].contains(&got.0.as_u16()) {
                failures.push(format!(
                    "{name} with a {scope} key (declared {needed}) is refused: {} {}",
                    got.0, got.2
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_413_problem_json() {
    let server = TestServer::start(|c| c.http.max_body_bytes = 1024).await;
    let admin = server.api_key(Scope::Admin).await;
    let url = format!("http://{}/v1/api-keys", server.http);
    let big = serde_json::json!({"name": "x".repeat(2048), "scope": "read"});
    let resp = client()
        .post(&url)
        .bearer_auth(&admin)
        .json(&big)
        .send()
        .await
        .expect("request");
    let got = (
        resp.status(),
        resp.headers().clone(),
        resp.text().await.expect("body"),
    );
    assert_eq!(not_a_problem(&got, 413), None);

    // Just under the limit is read (and refused for its content, not its size).
    let small = serde_json::json!({"name": "x".repeat(900), "scope": "read"});
    let resp = client()
        .post(&url)
        .bearer_auth(&admin)
        .json(&small)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 400, "a 900-character name is too long");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_its_rate_gets_429_with_retry_after_and_other_keys_do_not() {
    let server = TestServer::start(|c| {
        c.http.rate_limit_per_sec = 1;
        c.http.rate_limit_burst = 1;
    })
    .await;
    let busy = server.api_key(Scope::Read).await;
    let other = server.api_key(Scope::Read).await;
    let url = format!("http://{}/v1/me", server.http);
    let mut limited = None;
    // A burst of 1 at 1/s: of five back-to-back requests at most two can pass.
    for _ in 0..5 {
        let resp = client()
            .get(&url)
            .bearer_auth(&busy)
            .send()
            .await
            .expect("request");
        if resp.status() == 429 {
            limited = Some((
                resp.status(),
                resp.headers().clone(),
                resp.text().await.expect("body"),
            ));
            break;
        }
    }
    let limited = limited.expect("the busy key was limited");
    assert_eq!(not_a_problem(&limited, 429), None);
    let retry_after: u64 = limited.1["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=2).contains(&retry_after), "{retry_after}");

    let resp = client()
        .get(&url)
        .bearer_auth(&other)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200, "the limit is per key");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_is_off_by_default() {
    let server = TestServer::start(|_| {}).await;
    let read = server.api_key(Scope::Read).await;
    let resp = client()
        .get(format!("http://{}/v1/me", server.http))
        .bearer_auth(&read)
        .header("origin", "https://app.example.com")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("access-control-allow-origin").is_none());

    let preflight = client()
        .request(
            reqwest::Method::OPTIONS,
            format!("http://{}/v1/me", server.http),
        )
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .expect("request");
    assert!(
        preflight
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_allows_exactly_the_configured_origins() {
    let server = TestServer::start(|c| {
        c.http.cors_origins = vec!["https://app.example.com".into()];
    })
    .await;
    let read = server.api_key(Scope::Read).await;
    let url = format!("http://{}/v1/me", server.http);
    let resp = client()
        .get(&url)
        .bearer_auth(&read)
        .header("origin", "https://app.example.com")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );

    let preflight = client()
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .expect("request");
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );

    let stranger = client()
        .get(&url)
        .bearer_auth(&read)
        .header("origin", "https://evil.example.net")
        .send()
        .await
        .expect("request");
    assert!(
        stranger
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framework_errors_under_v1_are_problem_json_too() {
    let server = TestServer::start(|_| {}).await;
    let read = server.api_key(Scope::Read).await;
    let wrong_method = client()
        .post(format!("http://{}/v1/me", server.http))
        .bearer_auth(&read)
        .send()
        .await
        .expect("request");
    let got = (
        wrong_method.status(),
        wrong_method.headers().clone(),
        wrong_method.text().await.expect("body"),
    );
    assert_eq!(not_a_problem(&got, 405), None);
    assert!(got.1.get("allow").is_some(), "405 keeps its Allow header");

    let unknown = client()
        .get(format!("http://{}/v1/no-such-thing", server.http))
        .bearer_auth(&read)
        .send()
        .await
        .expect("request");
    let got = (
        unknown.status(),
        unknown.headers().clone(),
        unknown.text().await.expect("body"),
    );
    assert_eq!(not_a_problem(&got, 404), None);
    server.stop().await;
}
