//! The `/v1` HTTP API over a real socket: keys, scopes, problem JSON, the OpenAPI document.

mod common;

use common::TestServer;
use switchboard::store::Scope;

async fn key(server: &TestServer, scope: Scope) -> String {
    let store = &server.server.as_ref().expect("running").store;
    store
        .create_api_key(&format!("test-{scope}"), scope)
        .await
        .expect("create key")
        .1
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_is_needed_and_its_scope_is_reported() {
    let server = TestServer::start(|_| {}).await;
    let url = format!("http://{}/v1/me", server.http);
    let resp = client().get(&url).send().await.expect("request");
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = resp.json().await.expect("problem json");
    assert_eq!(body["status"], 401);

    let bad = client()
        .get(&url)
        .bearer_auth("sb_000000000000_00000000000000000000000000000000")
        .send()
        .await
        .expect("request");
    assert_eq!(bad.status(), 401);

    let read = key(&server, Scope::Read).await;
    let me: serde_json::Value = client()
        .get(&url)
        .bearer_auth(&read)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(me["scope"], "read");
    assert_eq!(me["name"], "test-read");

    // Revoked keys stop working.
    let store = &server.server.as_ref().expect("running").store;
    let prefix = switchboard::store::key_prefix(&read)
        .expect("prefix")
        .to_owned();
    store.revoke_api_key(&prefix).await.expect("revoke");
    let gone = client()
        .get(&url)
        .bearer_auth(&read)
        .send()
        .await
        .expect("request");
    assert_eq!(gone.status(), 401);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_3_1_and_names_the_bearer_scheme() {
    let server = TestServer::start(|_| {}).await;
    let read = key(&server, Scope::Read).await;
    let doc: serde_json::Value = client()
        .get(format!("http://{}/v1/openapi.json", server.http))
        .bearer_auth(&read)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    assert!(doc["paths"]["/v1/me"]["get"].is_object());
    assert_eq!(
        doc["components"]["securitySchemes"]["api_key"]["scheme"],
        "bearer"
    );
    server.stop().await;
}
