//! The call actor driving IVR flows, in process over real UDP sockets: flows that end before
//! any call record, loops that never wait, dial timeouts before and after the answer, and a
//! second dial after the first timed out. (The SIPp tests in `sipp_ivr.rs` cover the demo
//! plan end to end.)
#![allow(clippy::disallowed_methods)] // a test measures real time, not the server's clock

mod common;

use std::path::Path;
use std::time::Duration;

use common::{GUARD, TestServer, Ua, answer, call_with_sdp, expect_status, recv_request};
use switchboard::sip::message::{Request, Response};

fn sdp(port: u16) -> String {
    format!(
        "v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio {port} RTP/AVP 0 101\na=rtpmap:0 PCMU/8000\na=rtpmap:101 telephone-event/8000\na=fmtp:101 0-15\na=sendrecv\n"
    )
}

/// A server whose dialplan is `plan` (one file), with `no_answer` seconds of ringing allowed.
async fn server_with_plan(plan: &str, no_answer: u64) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("plan dir");
    std::fs::write(dir.path().join("plan.toml"), plan).expect("write plan");
    let media = Path::new(env!("CARGO_MANIFEST_DIR")).join("media");
    let plan_dir = dir.path().to_path_buf();
    let server = TestServer::start(move |c| {
        c.ivr.dialplans = plan_dir;
        c.media.dir = media;
        c.sip.no_answer_timeout_secs = no_answer;
    })
    .await;
    server.add_user("1001", "pw-a").await;
    for ext in ["1002", "1003"] {
        server.add_user(ext, "pw-x").await;
    }
    (server, dir)
}

/// A registered phone for `ext`.
async fn phone(server: &TestServer, ext: &str) -> Ua {
    let ua = Ua::new(server.sip_udp).await;
    assert_eq!(ua.register(ext, "pw-x", 300).await.status.0, 200);
    ua
}

/// Waits (bounded) until no call actor runs any more.
async fn assert_calls_end(server: &TestServer) {
    let s = server.server.as_ref().expect("running");
    let deadline = tokio::time::Instant::now() + GUARD;
    while s.active_calls() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} call actor(s) still running",
            s.active_calls()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// ACK for the caller's 2xx (the caller's INVITE after the challenge is CSeq 2).
async fn ack(a: &Ua, ok: &Response, call_id: &str) {
    let to = ok.headers.get("To").expect("To");
    a.send_text(&format!(
        "ACK sip:x@{} SIP/2.0\nVia: SIP/2.0/UDP {{addr}};branch=z9hG4bKack{call_id};rport\nMax-Forwards: 70\nFrom: \"Caller\" <sip:1001@switchboard>;tag=a{call_id}\nTo: {to}\nCall-ID: {call_id}\nCSeq: 2 ACK\nContent-Length: 0\n\n",
        a.server
    ))
    .await;
}

/// The next request of `method`, skipping others (retransmissions, ACKs).
async fn recv_method(ua: &Ua, method: &str) -> Request {
    loop {
        let r = recv_request(ua).await;
        if r.method.as_str() == method {
            return r;
        }
    }
}

const EXTENSIONS: &str = "
[[routes]]
name = \"extensions\"
flow = \"ext\"

[[flows.ext]]
dial = \"{{called}}\"
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_that_hangs_up_before_anything_answers_with_its_cause_and_ends() {
    let plan = format!(
        "[[routes]]\nnumber = \"666\"\nflow = \"blocked\"\n\n[[flows.blocked]]\nhangup = \"busy\"\n{EXTENSIONS}"
    );
    let (server, _plan) = server_with_plan(&plan, 30).await;
    let a = Ua::new(server.sip_udp).await;
    call_with_sdp(&a, "666", "1001", "pw-a", "blocked-1", &sdp(31000)).await;
    expect_status(&a, 486).await;
    assert_calls_end(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_looping_over_a_dial_with_nobody_to_ring_is_stopped() {
    let plan = format!(
        "[[routes]]\nnumber = \"700\"\nflow = \"spin\"\n\n[[flows.spin]]\nlabel = \"top\"\ndial = \"9999\"\n\n[[flows.spin]]\ngoto = \"#top\"\n{EXTENSIONS}"
    );
    let (server, _plan) = server_with_plan(&plan, 30).await;
    let a = Ua::new(server.sip_udp).await;
    call_with_sdp(&a, "700", "1001", "pw-a", "spin-1", &sdp(31002)).await;
    // The unknown extension's 404 is passed on once the loop is stopped.
    expect_status(&a, 404).await;
    assert_calls_end(&server).await;
    // The server still serves calls.
    let b = phone(&server, "1002").await;
    call_with_sdp(&a, "1002", "1001", "pw-a", "spin-2", &sdp(31004)).await;
    assert_eq!(recv_method(&b, "INVITE").await.method.as_str(), "INVITE");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dial_that_times_out_before_the_answer_leaves_the_flow_time_to_answer() {
    // The ring time (1 s) and then the flow's own answer; the no-answer timeout (2 s) counts
    // from the end of the dial, not from the INVITE.
    let plan = format!(
        "[[routes]]\nnumber = \"200\"\nflow = \"try\"\n\n[[flows.try]]\ndial = \"1002\"\ntimeout = \"1500ms\"\n\n[[flows.try]]\nanswer = true\n\n[[flows.try]]\npause = \"1s\"\n\n[[flows.try]]\nhangup = true\n{EXTENSIONS}"
    );
    let (server, _plan) = server_with_plan(&plan, 2).await;
    let b = phone(&server, "1002").await;
    let a = Ua::new(server.sip_udp).await;
    call_with_sdp(&a, "200", "1001", "pw-a", "late-1", &sdp(31006)).await;
    let inv = recv_method(&b, "INVITE").await;
    b.send(&answer(&inv, 180, "Ringing", b.addr(), None)).await;
    // No early media from the callee: we answer the caller's offer for our ringback.
    let ringing = expect_status(&a, 180).await;
    assert!(!ringing.body.is_empty(), "180 with our early answer");
    let cancel = recv_method(&b, "CANCEL").await;
    b.send(&answer(&cancel, 200, "OK", b.addr(), None)).await;
    b.send(&answer(&inv, 487, "Request Terminated", b.addr(), None))
        .await;
    let ok = expect_status(&a, 200).await;
    assert_eq!(
        ok.body, ringing.body,
        "the IVR's answer repeats the early answer (RFC 6337 §3.1)"
    );
    ack(&a, &ok, "late-1").await;
    // The flow ends with BYE after its pause.
    let bye = recv_method(&a, "BYE").await;
    a.send(&answer(&bye, 200, "OK", a.addr(), None)).await;
    assert_calls_end(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_ring_timeout_the_next_dial_is_a_new_dialog_and_gets_bridged() {
    let plan = format!(
        "[[routes]]\nnumber = \"300\"\nflow = \"hunt\"\n\n[[flows.hunt]]\nanswer = true\n\n[[flows.hunt]]\ndial = \"1002\"\ntimeout = \"1s\"\n\n[[flows.hunt]]\ndial = \"1003\"\n{EXTENSIONS}"
    );
    let (server, _plan) = server_with_plan(&plan, 30).await;
    let b = phone(&server, "1002").await;
    let c = phone(&server, "1003").await;
    let a = Ua::new(server.sip_udp).await;
    call_with_sdp(&a, "300", "1001", "pw-a", "hunt-1", &sdp(31008)).await;
    let ok = expect_status(&a, 200).await;
    ack(&a, &ok, "hunt-1").await;
    let inv_b = recv_method(&b, "INVITE").await;
    b.send(&answer(&inv_b, 180, "Ringing", b.addr(), None))
        .await;
    let cancel = recv_method(&b, "CANCEL").await;
    b.send(&answer(&cancel, 200, "OK", b.addr(), None)).await;
    b.send(&answer(&inv_b, 487, "Request Terminated", b.addr(), None))
        .await;
    let inv_c = recv_method(&c, "INVITE").await;
    assert_ne!(
        inv_c.headers.call_id().ok(),
        inv_b.headers.call_id().ok(),
        "each dial attempt is its own dialog"
    );
    c.send(&answer(&inv_c, 200, "OK", c.addr(), Some(sdp(31010))))
        .await;
    assert_eq!(recv_method(&c, "ACK").await.method.as_str(), "ACK");
    // The caller hangs up: the bridged callee gets the BYE.
    let to = ok.headers.get("To").expect("To");
    a.send_text(&format!(
        "BYE sip:x@{} SIP/2.0\nVia: SIP/2.0/UDP {{addr}};branch=z9hG4bKbyehunt;rport\nMax-Forwards: 70\nFrom: \"Caller\" <sip:1001@switchboard>;tag=ahunt-1\nTo: {to}\nCall-ID: hunt-1\nCSeq: 3 BYE\nContent-Length: 0\n\n",
        a.server
    ))
    .await;
    let bye = recv_method(&c, "BYE").await;
    c.send(&answer(&bye, 200, "OK", c.addr(), None)).await;
    assert_calls_end(&server).await;
    server.stop().await;
}
