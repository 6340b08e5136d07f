//! The `/v1` HTTP API over a real socket: keys, scopes, problem JSON, the OpenAPI document.

mod common;

use common::TestServer;
use switchboard::store::Scope;

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

    let read = server.api_key(Scope::Read).await;
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
    let store = server.store();
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
    let read = server.api_key(Scope::Read).await;
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

#[test]
fn committed_api_docs_match_the_code() {
    let doc = switchboard::api::openapi();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    for (file, want) in [
        ("openapi.json", switchboard::api::docs::json(&doc)),
        ("api.html", switchboard::api::docs::html(&doc)),
    ] {
        let have = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        assert!(
            have == want,
            "docs/{file} differs from what the code generates: run scripts/update-api-docs"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_page_is_the_generated_html_behind_a_key() {
    let server = TestServer::start(|_| {}).await;
    let url = format!("http://{}/v1/docs", server.http);
    let anonymous = client().get(&url).send().await.expect("request");
    assert_eq!(anonymous.status(), 401);

    let read = server.api_key(Scope::Read).await;
    let resp = client()
        .get(&url)
        .bearer_auth(&read)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/html")
    );
    let page = resp.text().await.expect("body");
    assert_eq!(page, switchboard::api::docs::generated().html);
    assert!(page.contains("/v1/api-keys"), "operations are listed");
    assert!(!page.contains("<script"), "no scripts");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_creates_lists_and_revokes_keys_over_http() {
    let server = TestServer::start(|_| {}).await;
    let base = format!("http://{}/v1/api-keys", server.http);
    let admin = server.api_key(Scope::Admin).await;

    let created = client()
        .post(&base)
        .bearer_auth(&admin)
        .json(&serde_json::json!({"name": "crm", "scope": "control"}))
        .send()
        .await
        .expect("request");
    assert_eq!(created.status(), 201);
    let created: serde_json::Value = created.json().await.expect("json");
    let new_key = created["key"]
        .as_str()
        .expect("the key is shown")
        .to_owned();
    assert_eq!(created["scope"], "control");
    assert_eq!(created["revoked_ms"], serde_json::Value::Null);
    let id = created["id"].as_str().expect("id").to_owned();

    let me: serde_json::Value = client()
        .get(format!("http://{}/v1/me", server.http))
        .bearer_auth(&new_key)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(me["name"], "crm");

    let list: serde_json::Value = client()
        .get(&base)
        .bearer_auth(&admin)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let listed = list
        .as_array()
        .expect("array")
        .iter()
        .find(|k| k["id"] == id.as_str())
        .expect("the new key is listed");
    assert!(listed.get("key").is_none(), "the secret is never listed");

    let bad = client()
        .post(&base)
        .bearer_auth(&admin)
        .json(&serde_json::json!({"name": "x", "scope": "root"}))
        .send()
        .await
        .expect("request");
    assert_eq!(bad.status(), 422);
    assert_eq!(bad.headers()["content-type"], "application/problem+json");

    let revoke = |id: String| {
        let url = format!("{base}/{id}");
        let admin = admin.clone();
        async move {
            client()
                .delete(url)
                .bearer_auth(admin)
                .send()
                .await
                .expect("request")
                .status()
        }
    };
    assert_eq!(revoke(id.clone()).await, 204);
    assert_eq!(revoke(id).await, 404, "already revoked");
    assert_eq!(revoke("not-a-uuid".into()).await, 404);
    let gone = client()
        .get(format!("http://{}/v1/me", server.http))
        .bearer_auth(&new_key)
        .send()
        .await
        .expect("request");
    assert_eq!(gone.status(), 401);
    server.stop().await;
}
