//! Continuity from chat to voice end to end (issue 12), against the built `switchboard` binary
//! with SIPp as the carrier: a chat from `+44 20 7946 0000` on a gateway channel; then a call
//! from the trusted trunk with caller `02079460000` (default region GB) gets the chat's
//! `session_id`; then "call me" (`POST /v1/conversations/{id}/call`) leaves by the trunk to
//! `+442079460000`, a SIPp UAS answers it, and it is in the same session; the session's
//! timeline lists the messages and both calls in order.
//!
//! Without `sipp` the test prints a notice and passes, unless `CI` is set, where that fails.
#![allow(clippy::disallowed_methods)] // a test measures real time, not the server's clock

mod common;
mod sipp_harness;

use std::time::{Duration, Instant};

use common::ApiClient;
use reqwest::Method;
use serde_json::{Value, json};
use sipp_harness::*;

/// Polls `f` (an API read) until it gives a value, for at most 10 s.
fn poll<T>(rt: &tokio::runtime::Runtime, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(50)).await });
    }
}

#[test]
fn a_chat_then_a_trunk_call_then_a_call_back_are_one_session() {
    if !on_path("sipp") {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        assert!(!ci, "CI is set but sipp is not on PATH");
        return eprintln!("NOTICE: skipping, sipp not on PATH");
    }
    let ports = Ports::allocate();
    let config = tempfile::NamedTempFile::new().expect("config file");
    std::fs::write(
        config.path(),
        format!(
            "[chat]\ndefault_region = \"GB\"\n\n[[trunk]]\nname = \"carrier\"\n\
             host = \"127.0.0.1:{}\"\nprefixes = [\"+44\"]\nfrom = \"+442071234567\"\n",
            ports.port(CALLEE_SIP)
        ),
    )
    .expect("write config");
    let config_path = config.path().to_string_lossy().into_owned();
    let server = Server::start_with(ports, Target::Switchboard, &["--config", &config_path]);
    let http = std::net::SocketAddr::from(([127, 0, 0, 1], server.ports.port(HTTP)));
    let admin = ApiClient::new(http, &api_key(&server, "admin", "admin"));
    let api = ApiClient::new(http, &api_key(&server, "control", "control"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    // The chat.
    let (status, _) = rt.block_on(admin.send(
        Method::POST,
        "/v1/channels",
        Some(json!({"name": "sms", "kind": "sms"})),
    ));
    assert_eq!(status, 201);
    let (status, chat) = rt.block_on(api.send(
        Method::POST,
        "/v1/channels/sms/messages",
        Some(json!({"from": {"phone": "+44 20 7946 0000"}, "text": "Please call me", "id": "m1"})),
    ));
    assert_eq!(status, 201, "{chat}");
    let session = chat["session_id"].clone();

    // The customer calls in through the trunk (trusted: no challenge) and gets 480.
    SippRun::new(&server, "trunk", "uac_trunk_480", CALLER_SIP, CALLER_MEDIA)
        .args(["-s", UNREGISTERED, "-key", "caller", "02079460000"])
        .succeeds();
    let records = |rt: &tokio::runtime::Runtime| -> Vec<Value> {
        let (_, list) = rt.block_on(api.send(Method::GET, "/v1/call-records", None));
        list["items"].as_array().cloned().unwrap_or_default()
    };
    let inbound = poll(&rt, "the trunk call's record", || {
        records(&rt)
            .into_iter()
            .find(|r| r["caller"] == "02079460000")
    });
    assert_eq!(
        inbound["session_id"], session,
        "the call joins the chat's session: {inbound}"
    );

    // "Call me": out by the trunk to the SIPp UAS, which answers.
    let media_file = server.dir.path().join("callee-offers.txt");
    let mut callee = start_callee(
        &server,
        "uas_answer",
        &[
            "-key".into(),
            "callee_rtp".into(),
            server.ports.port(CALLEE_MEDIA).to_string(),
            "-set".into(),
            "media_file".into(),
            media_file.to_string_lossy().into_owned(),
        ],
    );
    let conversation = chat["conversation_id"].as_str().expect("id");
    let (status, placed) = rt.block_on(api.send(
        Method::POST,
        &format!("/v1/conversations/{conversation}/call"),
        Some(json!({})),
    ));
    assert_eq!(status, 201, "{placed}");
    assert_eq!(placed["to"], "+442079460000");
    assert_eq!(placed["trunk"], "carrier");
    assert_eq!(placed["session_id"], session);
    let call = placed["call_id"].as_str().expect("call").to_owned();
    let answered = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, live) = rt.block_on(api.send(Method::GET, &format!("/v1/calls/{call}"), None));
        if status == 200 && live["answered"].is_string() {
            break;
        }

        assert!(
            Instant::now() < answered,
            "the call back is not answered: {live}\n{}",
            server.logs()
        );
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(50)).await });
    }
    let (status, _) = rt.block_on(api.send(Method::DELETE, &format!("/v1/calls/{call}"), None));
    assert_eq!(status, 204);
    callee.succeeded(&server);
    let outbound = poll(&rt, "the call back's record", || {
        records(&rt)
            .into_iter()
            .find(|r| r["id"] == call.as_str() && r["ended_ms"].is_i64())
    });
    assert_eq!(outbound["session_id"], session, "{outbound}");
    assert!(outbound["answered_ms"].is_i64(), "{outbound}");

    // One timeline: the message, the call in, the call back.
    let (status, doc) = rt.block_on(api.send(
        Method::GET,
        &format!("/v1/sessions/{}", session.as_str().expect("session")),
        None,
    ));
    assert_eq!(status, 200);
    let kinds: Vec<String> = doc["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter_map(|e| match e["kind"].as_str() {
            Some("message") => Some("message".to_owned()),
            Some("call") => Some(format!("call:{}", e["direction"].as_str().unwrap_or(""))),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, ["message", "call:inbound", "call:outbound"], "{doc}");
}
