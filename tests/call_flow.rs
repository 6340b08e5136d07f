//! End-to-end B2BUA behaviour over real UDP sockets against an in-process server: digest
//! registration, an authenticated call with media relayed both ways, BYE, CANCEL, and the
//! failure answers (404, 480, 486).
#![allow(clippy::disallowed_methods)] // a test measures real time, not the server's clock

mod common;

use std::net::SocketAddr;

use common::{
    GUARD, TestServer, Ua, answer, call_with_sdp, digest_md5, expect_status, invite_with_sdp,
    md5_challenge, recv_request, sdp_target,
};
use switchboard::sip::message::{Message, Request};
use tokio::net::UdpSocket;

fn sdp(port: u16) -> String {
    format!(
        "v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio {port} RTP/AVP 0 8 101\na=rtpmap:0 PCMU/8000\na=rtpmap:8 PCMA/8000\na=rtpmap:101 telephone-event/8000\na=fmtp:101 0-15\na=sendrecv\n"
    )
}

fn invite_text(
    to_ext: &str,
    from_ext: &str,
    call_id: &str,
    cseq: u32,
    rtp: u16,
    auth: Option<&str>,
    server: SocketAddr,
) -> String {
    invite_with_sdp(to_ext, from_ext, call_id, cseq, &sdp(rtp), auth, server)
}

/// Sends an authenticated INVITE (answering the 407).
async fn call(a: &Ua, to: &str, from: &str, pw: &str, call_id: &str, rtp: u16) {
    call_with_sdp(a, to, from, pw, call_id, &sdp(rtp)).await;
}

/// An unauthenticated INVITE (CSeq 1) from `ua` offering RTP on `rtp`.
async fn send_invite(ua: &Ua, to: &str, from: &str, call_id: &str, rtp: u16) {
    let text = invite_text(to, from, call_id, 1, rtp, None, ua.server);
    ua.send(text.replace("{addr}", &ua.addr().to_string()).as_bytes())
        .await;
}

async fn rtp_roundtrip(from: &UdpSocket, to_server: SocketAddr, receiver: &UdpSocket, seq: u16) {
    let mut pkt = vec![0x80u8, 0x00];
    pkt.extend_from_slice(&seq.to_be_bytes());
    pkt.extend_from_slice(&[0, 0, 0, 160, 0x12, 0x34, 0x56, 0x78]);
    pkt.extend_from_slice(&[0xd5; 160]);
    from.send_to(&pkt, to_server).await.expect("send rtp");
    // Each leg is its own RTP session: the server restamps SSRC, sequence and timestamp, and
    // relays the payload (same codec on both legs) untouched. Ringback the server played
    // before the answer may still be queued: skip other payloads until ours arrives.
    let deadline = tokio::time::Instant::now() + GUARD;
    let mut buf = [0u8; 2048];
    loop {
        let (n, _) = tokio::time::timeout_at(deadline, receiver.recv_from(&mut buf))
            .await
            .expect("RTP relayed through the server")
            .expect("recv rtp");
        assert!(n > 12, "an RTP packet");
        assert_eq!(buf[1] & 0x7f, 0, "PCMU payload type");
        if buf[12..n] == pkt[12..] {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_extensions_call_each_other_with_media_through_the_server() {
    let server = TestServer::start(|_| {}).await;
    server.add_user("1001", "pw-a").await;
    server.add_user("1002", "pw-b").await;
    let a = Ua::new(server.sip_udp).await;
    let b = Ua::new(server.sip_udp).await;
    let reg = b.register("1002", "pw-b", 300).await;
    assert_eq!(reg.status.0, 200, "registered");
    assert!(
        reg.headers
            .get("Contact")
            .is_some_and(|c| c.contains(&b.addr().to_string()))
    );

    let a_rtp = UdpSocket::bind("127.0.0.1:0").await.expect("rtp a");
    let b_rtp = UdpSocket::bind("127.0.0.1:0").await.expect("rtp b");
    call(
        &a,
        "1002",
        "1001",
        "pw-a",
        "call-1",
        a_rtp.local_addr().expect("addr").port(),
    )
    .await;

    let inv = recv_request(&b).await;
    assert_eq!(inv.method.as_str(), "INVITE");
    let offer_target = sdp_target(&inv.body);
    assert_eq!(offer_target.ip().to_string(), "127.0.0.1");
    assert!(
        (30000..=31999).contains(&offer_target.port()),
        "offer anchored on the server: {offer_target}"
    );
    b.send(&answer(&inv, 180, "Ringing", b.addr(), None)).await;
    expect_status(&a, 180).await;
    b.send(&answer(
        &inv,
        200,
        "OK",
        b.addr(),
        Some(sdp(b_rtp.local_addr().expect("addr").port())),
    ))
    .await;
    let ok = expect_status(&a, 200).await;
    let answer_target = sdp_target(&ok.body);
    assert!(
        (30000..=31999).contains(&answer_target.port()),
        "answer anchored: {answer_target}"
    );
    assert_ne!(answer_target, offer_target, "each side has its own port");
    let ack_from_server = recv_request(&b).await;
    assert_eq!(
        ack_from_server.method.as_str(),
        "ACK",
        "the server ACKs the callee's 200"
    );

    let to_tag = ok.headers.get("To").expect("To").to_owned();
    a.send_text(&format!(
        "ACK sip:1002@{} SIP/2.0\nVia: SIP/2.0/UDP {{addr}};branch=z9hG4bKack1;rport\nMax-Forwards: 70\nFrom: \"Caller\" <sip:1001@switchboard>;tag=acall-1\nTo: {to_tag}\nCall-ID: call-1\nCSeq: 2 ACK\nContent-Length: 0\n\n",
        server.sip_udp
    ))
    .await;

    // Media both ways through the relay.
    rtp_roundtrip(&a_rtp, answer_target, &b_rtp, 1).await;
    rtp_roundtrip(&b_rtp, offer_target, &a_rtp, 1).await;

    a.send_text(&format!(
        "BYE sip:1002@{} SIP/2.0\nVia: SIP/2.0/UDP {{addr}};branch=z9hG4bKbye1;rport\nMax-Forwards: 70\nFrom: \"Caller\" <sip:1001@switchboard>;tag=acall-1\nTo: {to_tag}\nCall-ID: call-1\nCSeq: 3 BYE\nContent-Length: 0\n\n",
        server.sip_udp
    ))
    .await;
    expect_status(&a, 200).await;
    let bye = recv_request(&b).await;
    assert_eq!(
        bye.method.as_str(),
        "BYE",
        "the BYE is relayed to the callee"
    );
    b.send(&answer(&bye, 200, "OK", b.addr(), None)).await;

    let dir = server.stop_keep_dir().await;
    let db = dir.path().join("switchboard.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("db");
    let row: (
        Option<i64>,
        Option<i64>,
        Option<String>,
        Option<i64>,
        String,
    ) = sqlx::query_as(
        "SELECT answered_ms, ended_ms, hangup_by, final_code, session_id FROM calls",
    )
    .fetch_one(&pool)
    .await
    .expect("one call record");
    assert!(row.0.is_some(), "answer time recorded");
    assert!(row.1.is_some(), "end time recorded");
    assert_eq!(row.2.as_deref(), Some("caller"), "the caller hung up");
    assert_eq!(row.3, Some(200));
    assert!(!row.4.is_empty(), "the call belongs to a session");
}

/// Extensions 1001 and 1002 on `server`: the caller's UA, and the callee's UA registered.
async fn caller_and_callee(server: &TestServer) -> (Ua, Ua) {
    server.add_user("1001", "pw-a").await;
    server.add_user("1002", "pw-b").await;
    let a = Ua::new(server.sip_udp).await;
    let b = Ua::new(server.sip_udp).await;
    assert_eq!(b.register("1002", "pw-b", 300).await.status.0, 200);
    (a, b)
}

/// An answered call between `a` (1001) and `b` (1002, registered); returns the caller's To
/// value (with tag).
async fn establish(server: &TestServer, a: &Ua, b: &Ua, call_id: &str) -> String {
    call(a, "1002", "1001", "pw-a", call_id, 30500).await;
    let inv = recv_request(b).await;
    b.send(&answer(&inv, 200, "OK", b.addr(), Some(sdp(30502))))
        .await;
    let ok = expect_status(a, 200).await;
    assert_eq!(recv_request(b).await.method.as_str(), "ACK");
    let to = ok.headers.get("To").expect("To").to_owned();
    a.send_text(&format!(
        "ACK sip:1002@{} SIP/2.0\nVia: SIP/2.0/UDP {{addr}};branch=z9hG4bKack{call_id};rport\nMax-Forwards: 70\nFrom: \"Caller\" <sip:1001@switchboard>;tag=a{call_id}\nTo: {to}\nCall-ID: {call_id}\nCSeq: 2 ACK\nContent-Length: 0\n\n",
        server.sip_udp
    ))
    .await;
    to
}

async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect http");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut out = String::new();
    tokio::time::timeout(GUARD, s.read_to_string(&mut out))
        .await
        .expect("http answer")
        .expect("read");
    let code = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_refuses_new_calls_with_503_and_hangs_up_live_calls() {
    let mut server = TestServer::start(|c| c.shutdown.drain_timeout_secs = 1).await;
    let (a, b) = caller_and_callee(&server).await;
    establish(&server, &a, &b, "call-sd").await;
    let running = server.server.take().expect("running");
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().expect("dir"));
    let stopping = tokio::spawn(running.shutdown());
    // While draining, a new INVITE is refused with 503 and Retry-After.
    let c = Ua::new(server.sip_udp).await;
    let mut refused = None;
    for n in 0..50 {
        send_invite(&c, "1002", "1001", &format!("late{n}"), 30600).await;
        let r = c.recv_final_or_ringing().await;
        if r.status.0 == 503 {
            refused = Some(r);
            break;
        }
    }
    let refused = refused.expect("503 while draining");
    assert!(
        refused.headers.get("Retry-After").is_some(),
        "503 carries Retry-After"
    );
    // After the drain timeout both legs get a BYE.
    assert_eq!(
        recv_request(&a).await.method.as_str(),
        "BYE",
        "caller gets BYE"
    );
    assert_eq!(
        recv_request(&b).await.method.as_str(),
        "BYE",
        "callee gets BYE"
    );
    tokio::time::timeout(GUARD, stopping)
        .await
        .expect("shutdown finishes")
        .expect("join");
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        dir.path().join("switchboard.db").display()
    ))
    .await
    .expect("db");
    let (by, cause): (Option<String>, Option<String>) =
        sqlx::query_as("SELECT hangup_by, hangup_cause FROM calls WHERE answered_ms IS NOT NULL")
            .fetch_one(&pool)
            .await
            .expect("the call record is closed");
    assert_eq!(by.as_deref(), Some("system"));
    assert_eq!(cause.as_deref(), Some("shutdown"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_report_calls_registrations_sip_messages_and_rtp() {
    let server = TestServer::start(|_| {}).await;
    let (a, b) = caller_and_callee(&server).await;
    establish(&server, &a, &b, "call-m").await;
    let (code, health) = http_get(server.http, "/healthz").await;
    assert_eq!(code, 200, "{health}");
    let (code, body) = http_get(server.http, "/metrics").await;
    assert_eq!(code, 200);
    for name in [
        "switchboard_active_calls",
        "switchboard_registrations",
        "switchboard_sip_messages_total",
        "switchboard_rtp_packets_relayed_total",
    ] {
        assert!(body.contains(name), "{name} in /metrics:\n{body}");
    }
    assert!(body.contains("method=\"INVITE\""), "SIP messages by method");
    assert!(body.contains("status=\"200\""), "SIP messages by status");
    let (code, problem) = http_get(server.http, "/nope").await;
    assert_eq!(code, 404);
    assert!(problem.contains("application/problem+json"), "{problem}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_call_times_out_with_480_and_the_callee_is_cancelled() {
    let server = TestServer::start(|c| c.sip.no_answer_timeout_secs = 1).await;
    let (a, b) = caller_and_callee(&server).await;
    call(&a, "1002", "1001", "pw-a", "call-na", 30700).await;
    let inv = recv_request(&b).await;
    b.send(&answer(&inv, 180, "Ringing", b.addr(), None)).await;
    expect_status(&a, 180).await;
    expect_status(&a, 480).await;
    assert_eq!(recv_request(&b).await.method.as_str(), "CANCEL");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_forwards_zero_gets_483_and_unsupported_require_gets_420() {
    let server = TestServer::start(|c| c.sip.trusted_cidrs = vec!["127.0.0.0/8".into()]).await;
    let a = Ua::new(server.sip_udp).await;
    let inv = invite_text("1002", "trunk", "mf0", 1, 30800, None, server.sip_udp)
        .replace("{addr}", &a.addr().to_string())
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    a.send(inv.as_bytes()).await;
    expect_status(&a, 483).await;
    let inv = invite_text("1002", "trunk", "req1", 1, 30800, None, server.sip_udp)
        .replace("{addr}", &a.addr().to_string())
        .replace(
            "Max-Forwards: 70",
            "Max-Forwards: 70\r\nRequire: 100rel, foo",
        );
    a.send(inv.as_bytes()).await;
    let r = expect_status(&a, 420).await;
    assert!(
        r.headers.get_all("Unsupported").any(|v| v.contains("foo")),
        "420 lists foo"
    );
    server.stop().await;
}

/// Caller `a` (1001) and two registered phones of 1002, "desk" and "mobile", with an
/// authenticated call from `a` ringing both; returns the UAs and each fork's INVITE.
async fn ring_two_phones(
    server: &TestServer,
    call_id: &str,
    rtp: u16,
) -> (Ua, Ua, Ua, Request, Request) {
    server.add_user("1001", "pw-a").await;
    server.add_user("1002", "pw-b").await;
    let a = Ua::new(server.sip_udp).await;
    let desk = Ua::new(server.sip_udp).await;
    let mobile = Ua::new(server.sip_udp).await;
    assert_eq!(desk.register("1002", "pw-b", 300).await.status.0, 200);
    let both = mobile.register("1002", "pw-b", 300).await;
    assert_eq!(
        both.headers.get_all("Contact").count(),
        2,
        "two contacts bound"
    );
    call(&a, "1002", "1001", "pw-a", call_id, rtp).await;
    let inv_desk = recv_request(&desk).await;
    let inv_mobile = recv_request(&mobile).await;
    assert_eq!(inv_desk.method.as_str(), "INVITE");
    assert_eq!(inv_mobile.method.as_str(), "INVITE");
    (a, desk, mobile, inv_desk, inv_mobile)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_contacts_ring_in_parallel_and_the_first_answer_wins() {
    let server = TestServer::start(|_| {}).await;
    let (a, desk, mobile, inv_desk, inv_mobile) =
        ring_two_phones(&server, "call-fork", 30900).await;
    mobile
        .send(&answer(&inv_mobile, 180, "Ringing", mobile.addr(), None))
        .await;
    desk.send(&answer(&inv_desk, 180, "Ringing", desk.addr(), None))
        .await;
    mobile
        .send(&answer(
            &inv_mobile,
            200,
            "OK",
            mobile.addr(),
            Some(sdp(30902)),
        ))
        .await;
    loop {
        let r = a.recv_final_or_ringing().await;
        if r.status.0 == 200 {
            break;
        }
        assert_eq!(r.status.0, 180);
    }
    assert_eq!(
        recv_request(&mobile).await.method.as_str(),
        "ACK",
        "the winner is ACKed"
    );
    assert_eq!(
        recv_request(&desk).await.method.as_str(),
        "CANCEL",
        "the other fork is cancelled"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bindings_survive_a_restart() {
    let trusted =
        |c: &mut switchboard::config::Config| c.sip.trusted_cidrs = vec!["127.0.0.0/8".into()];
    let server = TestServer::start(|_| {}).await;
    server.add_user("1002", "pw-b").await;
    let b = Ua::new(server.sip_udp).await;
    assert_eq!(b.register("1002", "pw-b", 300).await.status.0, 200);
    let dir = server.stop_keep_dir().await;
    let server = TestServer::start_in(dir, trusted).await;
    let b = Ua {
        sock: b.sock,
        server: server.sip_udp,
    };
    let a = Ua::new(server.sip_udp).await;
    send_invite(&a, "1002", "trunk", "after-restart", 31000).await;
    let inv = recv_request(&b).await;
    assert_eq!(
        inv.method.as_str(),
        "INVITE",
        "the binding from before the restart is used"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_auth_failures_from_one_source_are_throttled() {
    let server = TestServer::start(|c| c.sip.auth_failures_before_throttle = 1).await;
    server.add_user("1001", "right").await;
    let a = Ua::new(server.sip_udp).await;
    assert_ne!(a.register("1001", "wrong", 300).await.status.0, 200);
    // Even the right password is refused while the source is throttled.
    a.send_text(&format!(
        "REGISTER sip:{} SIP/2.0\nVia: SIP/2.0/UDP {{addr}};branch=z9hG4bKthr;rport\nMax-Forwards: 70\nFrom: <sip:1001@switchboard>;tag=t\nTo: <sip:1001@switchboard>\nCall-ID: thr\nCSeq: 1 REGISTER\nContact: <sip:1001@{{addr}}>\nContent-Length: 0\n\n",
        server.sip_udp
    ))
    .await;
    assert_eq!(
        a.recv_final_or_ringing().await.status.0,
        403,
        "throttled source is refused"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_before_answer_gets_487_and_cancels_the_callee() {
    let server = TestServer::start(|_| {}).await;
    let (a, b) = caller_and_callee(&server).await;
    call(&a, "1002", "1001", "pw-a", "call-2", 30000).await;
    let inv = recv_request(&b).await;
    b.send(&answer(&inv, 180, "Ringing", b.addr(), None)).await;
    expect_status(&a, 180).await;
    a.send_text(&format!(
        "CANCEL sip:1002@{} SIP/2.0\nVia: SIP/2.0/UDP {{addr}};branch=z9hG4bKinvcall-22;rport\nMax-Forwards: 70\nFrom: \"Caller\" <sip:1001@switchboard>;tag=acall-2\nTo: <sip:1002@switchboard>\nCall-ID: call-2\nCSeq: 2 CANCEL\nContent-Length: 0\n\n",
        server.sip_udp
    ))
    .await;
    // The CANCEL's 200 and the INVITE's 487 may come in either order.
    let mut got = Vec::new();
    while got.len() < 2 {
        let r = a.recv_final_or_ringing().await;
        got.push((r.status.0, r.headers.get("CSeq").unwrap_or("").to_owned()));
    }
    assert!(got.contains(&(200, "2 CANCEL".into())), "{got:?}");
    assert!(got.contains(&(487, "2 INVITE".into())), "{got:?}");
    let cancel = recv_request(&b).await;
    assert_eq!(
        cancel.method.as_str(),
        "CANCEL",
        "the callee's fork is cancelled"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_extension_is_404_and_unregistered_is_480_and_busy_is_relayed() {
    let server = TestServer::start(|c| c.sip.trusted_cidrs = vec!["127.0.0.0/8".into()]).await;
    server.add_user("1002", "pw-b").await;
    server.add_user("1003", "pw-c").await;
    let a = Ua::new(server.sip_udp).await;
    send_invite(&a, "9999", "trunk", "c404", 30000).await;
    expect_status(&a, 404).await;
    send_invite(&a, "1003", "trunk", "c480", 30000).await;
    expect_status(&a, 480).await;

    let b = Ua::new(server.sip_udp).await;
    // Trusted sources register without a challenge.
    b.send_text(&format!(
        "REGISTER sip:{} SIP/2.0\nVia: SIP/2.0/UDP {{addr}};branch=z9hG4bKr1;rport\nMax-Forwards: 70\nFrom: <sip:1002@switchboard>;tag=r1\nTo: <sip:1002@switchboard>\nCall-ID: r-1002\nCSeq: 1 REGISTER\nContact: <sip:1002@{{addr}}>\nExpires: 300\nContent-Length: 0\n\n",
        server.sip_udp
    ))
    .await;
    expect_status(&b, 200).await;
    send_invite(&a, "1002", "trunk", "c486", 30000).await;
    let inv = recv_request(&b).await;
    b.send(&answer(&inv, 486, "Busy Here", b.addr(), None))
        .await;
    expect_status(&a, 486).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_user_get_the_same_answer() {
    let server = TestServer::start(|_| {}).await;
    server.add_user("1001", "right").await;
    let a = Ua::new(server.sip_udp).await;
    let wrong = a.register("1001", "wrong", 300).await;
    let b = Ua::new(server.sip_udp).await;
    let unknown = b.register("7777", "whatever", 300).await;
    assert_eq!(wrong.status, unknown.status, "no user enumeration");
    assert_eq!(wrong.reason, unknown.reason);
    assert_ne!(wrong.status.0, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_brief_expires_gets_423_with_min_expires() {
    let server = TestServer::start(|_| {}).await;
    server.add_user("1001", "pw").await;
    let a = Ua::new(server.sip_udp).await;
    let r = a.register("1001", "pw", 5).await;
    assert_eq!(r.status.0, 423);
    assert_eq!(r.headers.get("Min-Expires"), Some("60"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_is_answered_with_allow_accept_and_supported() {
    let server = TestServer::start(|_| {}).await;
    let a = Ua::new(server.sip_udp).await;
    a.send_text("OPTIONS sip:switchboard@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP {addr};branch=z9hG4bKo1;rport\nMax-Forwards: 70\nFrom: <sip:probe@127.0.0.1>;tag=o1\nTo: <sip:switchboard@127.0.0.1>\nCall-ID: o1\nCSeq: 1 OPTIONS\nContent-Length: 0\n\n").await;
    let r = expect_status(&a, 200).await;
    assert!(r.headers.get("Allow").is_some_and(|v| v.contains("INVITE")));
    assert_eq!(r.headers.get("Accept"), Some("application/sdp"));
    assert!(r.headers.get("Supported").is_some());
    server.stop().await;
}

/// The caller's CANCEL for the INVITE `call()` sent (CSeq 2, branch `z9hG4bKinv{call_id}2`).
async fn send_cancel(server: &TestServer, a: &Ua, call_id: &str) {
    a.send_text(&format!(
        "CANCEL sip:1002@{} SIP/2.0\nVia: SIP/2.0/UDP {{addr}};branch=z9hG4bKinv{call_id}2;rport\nMax-Forwards: 70\nFrom: \"Caller\" <sip:1001@switchboard>;tag=a{call_id}\nTo: <sip:1002@switchboard>\nCall-ID: {call_id}\nCSeq: 2 CANCEL\nContent-Length: 0\n\n",
        server.sip_udp
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_a_callee_that_only_sent_100_trying() {
    let server = TestServer::start(|_| {}).await;
    let (a, b) = caller_and_callee(&server).await;
    call(&a, "1002", "1001", "pw-a", "call-t100", 30100).await;
    let inv = recv_request(&b).await;
    assert_eq!(inv.method.as_str(), "INVITE");
    // A trunk answers 100 and takes its time before 18x (RFC 3261 §9.1: any provisional).
    b.send(&answer(&inv, 100, "Trying", b.addr(), None)).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    send_cancel(&server, &a, "call-t100").await;
    let cancel = recv_request(&b).await;
    assert_eq!(cancel.method.as_str(), "CANCEL", "the callee is cancelled");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answer_to_a_record_routed_invite_copies_record_route() {
    let server = TestServer::start(|c| c.sip.trusted_cidrs = vec!["127.0.0.0/8".into()]).await;
    server.add_user("1002", "pw-b").await;
    let a = Ua::new(server.sip_udp).await;
    let b = Ua::new(server.sip_udp).await;
    register_trusted(&server, &b, "1002").await;
    // An INVITE that came through a record-routing proxy (Kamailio in front).
    let inv = invite_text("1002", "trunk", "call-rr", 1, 30200, None, server.sip_udp)
        .replace("{addr}", &a.addr().to_string())
        .replace(
            "Max-Forwards: 70\r\n",
            "Max-Forwards: 69\r\nRecord-Route: <sip:p2.example;lr>\r\nRecord-Route: <sip:p1.example;lr>\r\n",
        );
    a.send(inv.as_bytes()).await;
    let binv = recv_request(&b).await;
    b.send(&answer(&binv, 180, "Ringing", b.addr(), None)).await;
    let ringing = expect_status(&a, 180).await;
    b.send(&answer(&binv, 200, "OK", b.addr(), Some(sdp(30202))))
        .await;
    let ok = expect_status(&a, 200).await;
    for r in [&ringing, &ok] {
        let rr: Vec<&str> = r.headers.get_all("Record-Route").collect();
        assert_eq!(
            rr,
            ["<sip:p2.example;lr>", "<sip:p1.example;lr>"],
            "{} copies Record-Route in order (RFC 3261 §12.1.1)",
            r.status.0
        );
    }
    server.stop().await;
}

/// REGISTER from a trusted source (no challenge).
async fn register_trusted(server: &TestServer, ua: &Ua, ext: &str) {
    ua.send_text(&format!(
        "REGISTER sip:{} SIP/2.0\nVia: SIP/2.0/UDP {{addr}};branch=z9hG4bKrt{ext};rport\nMax-Forwards: 70\nFrom: <sip:{ext}@switchboard>;tag=rt{ext}\nTo: <sip:{ext}@switchboard>\nCall-ID: rt-{ext}-{{addr}}\nCSeq: 1 REGISTER\nContact: <sip:{ext}@{{addr}}>\nExpires: 300\nContent-Length: 0\n\n",
        server.sip_udp
    ))
    .await;
    expect_status(ua, 200).await;
}

/// A re-INVITE from the caller inside the call set up by `establish`, with SDP.
fn caller_reinvite(server: &TestServer, call_id: &str, to: &str, cseq: u32, rtp: u16) -> String {
    let body = sdp(rtp).replace('\n', "\r\n");
    format!(
        "INVITE sip:1002@{} SIP/2.0\nVia: SIP/2.0/UDP {{addr}};branch=z9hG4bKre{call_id}{cseq};rport\nMax-Forwards: 70\nFrom: \"Caller\" <sip:1001@switchboard>;tag=a{call_id}\nTo: {to}\nCall-ID: {call_id}\nCSeq: {cseq} INVITE\nContact: <sip:1001@{{addr}}>\nContent-Type: application/sdp\nContent-Length: {}\n\n",
        server.sip_udp,
        body.len()
    )
    .replace('\n', "\r\n")
        + &body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_reinvite_gets_a_final_answer_when_the_other_side_hangs_up() {
    let server = TestServer::start(|_| {}).await;
    let (a, b) = caller_and_callee(&server).await;
    let to = establish(&server, &a, &b, "call-rb").await;
    a.send(
        caller_reinvite(&server, "call-rb", &to, 3, 30500)
            .replace("{addr}", &a.addr().to_string())
            .as_bytes(),
    )
    .await;
    let reinv = recv_request(&b).await;
    assert_eq!(reinv.method.as_str(), "INVITE", "the re-INVITE is relayed");
    // The callee hangs up instead of answering it.
    let bye = format!(
        "BYE sip:switchboard@{} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bKbyeb;rport\r\nMax-Forwards: 70\r\nFrom: {};tag=callee\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 7 BYE\r\nContent-Length: 0\r\n\r\n",
        server.sip_udp,
        b.addr(),
        reinv.headers.get("To").expect("To"),
        reinv.headers.get("From").expect("From"),
        reinv.headers.get("Call-ID").expect("Call-ID"),
    );
    b.send(bye.as_bytes()).await;
    let mut got_bye = false;
    let mut final_to_reinvite = None;
    while !(got_bye && final_to_reinvite.is_some()) {
        match a.recv().await {
            Message::Request(r) if r.method.as_str() == "BYE" => got_bye = true,
            Message::Response(r) if r.status.0 >= 200 => {
                assert_eq!(r.headers.get("CSeq"), Some("3 INVITE"));
                final_to_reinvite = Some(r.status.0);
            }
            _ => {}
        }
    }
    assert_eq!(final_to_reinvite, Some(487));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bye_from_a_losing_fork_does_not_end_the_answered_call() {
    let server = TestServer::start(|c| c.shutdown.drain_timeout_secs = 1).await;
    let (a, desk, mobile, inv_desk, inv_mobile) =
        ring_two_phones(&server, "call-lose", 30300).await;
    mobile
        .send(&answer(
            &inv_mobile,
            200,
            "OK",
            mobile.addr(),
            Some(sdp(30302)),
        ))
        .await;
    expect_status(&a, 200).await;
    // The desk phone answered too, a moment later, and its user hung up at once: its BYE
    // crosses ours. It names the B leg's Call-ID and our tag, but its own tag.
    let desk_ok = String::from_utf8(answer(&inv_desk, 200, "OK", desk.addr(), Some(sdp(30304))))
        .expect("utf8")
        .replace("tag=callee", "tag=desk");
    desk.send(desk_ok.as_bytes()).await;
    let bye = format!(
        "BYE sip:switchboard@{} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bKbyedesk;rport\r\nMax-Forwards: 70\r\nFrom: {};tag=desk\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 9 BYE\r\nContent-Length: 0\r\n\r\n",
        server.sip_udp,
        desk.addr(),
        inv_desk.headers.get("To").expect("To"),
        inv_desk.headers.get("From").expect("From"),
        inv_desk.headers.get("Call-ID").expect("Call-ID"),
    );
    desk.send(bye.as_bytes()).await;
    // The caller keeps its call: no BYE reaches it.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(1500);
    let mut buf = vec![0u8; 65_536];
    while let Ok(r) = tokio::time::timeout_at(deadline, a.sock.recv_from(&mut buf)).await {
        let (n, _) = r.expect("recv");
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(!text.starts_with("BYE "), "the caller was hung up:\n{text}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decline_6xx_from_one_fork_cancels_the_others_and_reaches_the_caller() {
    let server = TestServer::start(|c| c.shutdown.drain_timeout_secs = 1).await;
    let (a, desk, mobile, inv_desk, inv_mobile) = ring_two_phones(&server, "call-603", 30400).await;
    mobile
        .send(&answer(&inv_mobile, 180, "Ringing", mobile.addr(), None))
        .await;
    desk.send(&answer(&inv_desk, 603, "Decline", desk.addr(), None))
        .await;
    // §16.7 step 5: a 6xx ends the search; the other branches are cancelled.
    loop {
        match mobile.recv().await {
            Message::Request(r) if r.method.as_str() == "CANCEL" => break,
            _ => {}
        }
    }
    loop {
        let r = a.recv_final_or_ringing().await;
        if r.status.0 != 180 {
            assert_eq!(r.status.0, 603);
            break;
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authenticated_caller_is_presented_as_its_own_extension() {
    let server = TestServer::start(|_| {}).await;
    let (a, b) = caller_and_callee(&server).await;
    let addr = a.addr().to_string();
    // The From claims to be the CEO's number; the credentials are 1001's.
    let spoof = |cseq: u32, auth: Option<&str>| {
        invite_text("1002", "1001", "spoof", cseq, 31100, auth, server.sip_udp)
            .replace("sip:1001@switchboard", "sip:+15550100@switchboard")
            .replace("{addr}", &addr)
    };
    a.send(spoof(1, None).as_bytes()).await;
    let challenge = expect_status(&a, 407).await;
    let ch = md5_challenge(&challenge, "Proxy-Authenticate");
    let auth = digest_md5(
        &ch,
        "1001",
        "pw-a",
        "INVITE",
        &format!("sip:1002@{}", server.sip_udp),
    );
    a.send(spoof(2, Some(&auth)).as_bytes()).await;
    let inv = recv_request(&b).await;
    let from = inv.headers.get("From").expect("From");
    assert!(
        from.contains("sip:1001@"),
        "presented as the authenticated extension: {from}"
    );
    assert!(
        !from.contains("+15550100"),
        "the claimed identity is not passed on: {from}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extension_binds_at_most_ten_contacts() {
    let server = TestServer::start(|_| {}).await;
    server.add_user("1002", "pw-b").await;
    let mut phones = Vec::new();
    for _ in 0..10 {
        let p = Ua::new(server.sip_udp).await;
        assert_eq!(p.register("1002", "pw-b", 300).await.status.0, 200);
        phones.push(p);
    }
    let eleventh = Ua::new(server.sip_udp).await;
    let r = eleventh.register("1002", "pw-b", 300).await;
    assert_eq!(r.status.0, 403, "{} {}", r.status.0, r.reason);
    drop(phones);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retransmitted_2xx_to_a_relayed_reinvite_is_acked_again() {
    let server = TestServer::start(|_| {}).await;
    let (a, b) = caller_and_callee(&server).await;
    call(&a, "1002", "1001", "pw-a", "call-rei", 31200).await;
    let inv = recv_request(&b).await;
    b.send(&answer(&inv, 200, "OK", b.addr(), Some(sdp(31202))))
        .await;
    let ok = expect_status(&a, 200).await;
    assert_eq!(recv_request(&b).await.method.as_str(), "ACK");
    a.send_text(&format!(
        "ACK sip:1002@{} SIP/2.0\nVia: SIP/2.0/UDP {{addr}};branch=z9hG4bKackrei;rport\nMax-Forwards: 70\nFrom: \"Caller\" <sip:1001@switchboard>;tag=acall-rei\nTo: {}\nCall-ID: call-rei\nCSeq: 2 ACK\nContent-Length: 0\n\n",
        server.sip_udp,
        ok.headers.get("To").expect("To")
    ))
    .await;

    // The callee puts the caller on hold: a re-INVITE in the B dialog.
    let body = sdp(31202)
        .replace("a=sendrecv", "a=sendonly")
        .replace('\n', "\r\n");
    let reinvite = format!(
        "INVITE sip:switchboard@{} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bKrei1;rport\r\nMax-Forwards: 70\r\nFrom: <sip:1002@switchboard>;tag=callee\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 2 INVITE\r\nContact: <sip:callee@{}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        server.sip_udp,
        b.addr(),
        inv.headers.get("From").expect("From"),
        inv.headers.get("Call-ID").expect("Call-ID"),
        b.addr(),
        body.len()
    );
    b.send(reinvite.as_bytes()).await;
    let relayed = recv_request(&a).await;
    assert_eq!(
        relayed.method.as_str(),
        "INVITE",
        "the re-INVITE reaches the caller"
    );
    let relayed_sdp = String::from_utf8_lossy(&relayed.body).into_owned();
    assert!(
        relayed_sdp.contains("a=sendonly"),
        "hold is relayed: {relayed_sdp}"
    );
    assert!(
        !relayed_sdp.contains("31202"),
        "the callee's own port is not exposed"
    );
    let a_ok = answer(
        &relayed,
        200,
        "OK",
        a.addr(),
        Some(sdp(31200).replace("a=sendrecv", "a=recvonly")),
    );
    a.send(&a_ok).await;
    assert_eq!(
        recv_request(&a).await.method.as_str(),
        "ACK",
        "the caller's 200 is ACKed"
    );
    let b_ok = expect_status(&b, 200).await;
    assert!(String::from_utf8_lossy(&b_ok.body).contains("a=recvonly"));
    // Our ACK got lost: the caller retransmits its 200 and must be ACKed again.
    a.send(&a_ok).await;
    assert_eq!(
        recv_request(&a).await.method.as_str(),
        "ACK",
        "the retransmitted 200 is ACKed again"
    );
    server.stop().await;
}
