//! State-machine tests in virtual time: every `Instant` is `t0 + offset`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::sip::message::{Host, SipUri, Uri};
use crate::sip::transport::Transport;

const ALICE: &str = "10.0.0.1:5060";
const BOB: &str = "10.0.0.2:5060";

fn peer(transport: Transport, addr: &str) -> Peer {
    let addr: SocketAddr = addr.parse().expect("test address");
    Peer { transport, addr }
}

fn udp(addr: &str) -> Peer {
    peer(Transport::Udp, addr)
}

fn uri() -> Uri {
    Uri::Sip(SipUri::new(
        Some("bob"),
        Host::Domain("example.com".into()),
        None,
    ))
}

/// A request as a UAC at 10.0.0.1 would send it.
fn request(method: Method, branch: &str, seq: u32) -> Request {
    let mut r = Request::new(method.clone(), uri());
    r.headers.push(
        "Via",
        format!("SIP/2.0/UDP 10.0.0.1:5060;branch={branch};rport"),
    );
    r.headers
        .push("Via", "SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bKlower");
    r.headers.push("Max-Forwards", "70");
    r.headers.push("Route", "<sip:proxy1.example.com;lr>");
    r.headers.push("Route", "<sip:proxy2.example.com;lr>");
    r.headers
        .push("From", "\"Alice\" <sip:alice@example.com>;tag=from1");
    r.headers.push("To", "<sip:bob@example.com>");
    r.headers.push("Call-ID", "call-1@10.0.0.1");
    r.headers.push("CSeq", format!("{seq} {method}"));
    r.headers.push("Contact", "<sip:alice@10.0.0.1:5060>");
    r.headers.push("Content-Length", "0");
    r
}

fn invite(branch: &str) -> Request {
    request(Method::Invite, branch, 1)
}

fn response(req: &Request, code: u16) -> Response {
    let mut r = Response::from_request(req, StatusCode(code));
    if code > 100 {
        r.headers.set("To", "<sip:bob@example.com>;tag=to9");
    }
    r
}

fn layer() -> TransactionLayer {
    TransactionLayer::new(Timers::default())
}

fn drain(l: &mut TransactionLayer) -> Vec<Transmit> {
    std::iter::from_fn(|| l.poll_transmit()).collect()
}

fn events(l: &mut TransactionLayer) -> Vec<TxEvent> {
    std::iter::from_fn(|| l.poll_event()).collect()
}

fn secs(t0: Instant, t: Instant) -> f64 {
    (t - t0).as_secs_f64()
}

/// The message a transmit carries, parsed back from its bytes.
fn msg_of(t: &Transmit) -> Message {
    let (msg, _) = crate::sip::message::parse(&t.bytes, crate::sip::message::Framing::Datagram)
        .expect("the layer prints messages that parse");
    assert_eq!(t.summary, Summary::of(&msg), "summary matches the bytes");
    msg
}

fn status_of(t: &Transmit) -> Option<u16> {
    match msg_of(t) {
        Message::Response(r) => Some(r.status.0),
        Message::Request(_) => None,
    }
}

fn method_of(t: &Transmit) -> Option<Method> {
    match msg_of(t) {
        Message::Request(r) => Some(r.method),
        Message::Response(_) => None,
    }
}

/// Runs every timer to the end, recording (time, transmits, events) at each firing.
fn run_timers(
    l: &mut TransactionLayer,
    t0: Instant,
    limit: usize,
) -> Vec<(f64, Vec<Transmit>, Vec<TxEvent>)> {
    let mut log = Vec::new();
    for _ in 0..limit {
        let Some(at) = l.poll_timeout() else { break };
        l.handle_timeout(at);
        log.push((secs(t0, at), drain(l), events(l)));
    }
    log
}

/// The server side receives `req` and returns the new transaction id.
fn server_receives(l: &mut TransactionLayer, now: Instant, req: Request) -> TxId {
    match l.handle_message(now, Message::Request(req), udp(ALICE)) {
        Some(TxInput::Request { tx, .. }) => tx,
        other => panic!("expected a new request, got {other:?}"),
    }
}

fn approx(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

#[test]
fn retransmitted_invite_is_absorbed_and_last_response_resent() {
    let (mut l, t0) = (layer(), Instant::now());
    let req = invite("z9hG4bKinv1");
    let tx = server_receives(&mut l, t0, req.clone());
    assert!(
        drain(&mut l).is_empty(),
        "100 Trying is the TU's choice by default"
    );

    // Retransmission before any response: absorbed, nothing sent.
    let again = l.handle_message(t0, Message::Request(req.clone()), udp(ALICE));
    assert!(again.is_none());
    assert!(drain(&mut l).is_empty());

    l.respond(t0, tx, response(&req, 180)).expect("180");
    assert_eq!(
        drain(&mut l).iter().map(status_of).collect::<Vec<_>>(),
        [Some(180)]
    );
    let again = l.handle_message(t0, Message::Request(req.clone()), udp(ALICE));
    assert!(again.is_none(), "the TU never sees a retransmission");
    let sent = drain(&mut l);
    assert_eq!(sent.iter().map(status_of).collect::<Vec<_>>(), [Some(180)]);
    assert_eq!(sent[0].to, udp(ALICE));
    assert_eq!(sent[0].tx, Some(tx));

    l.respond(t0, tx, response(&req, 486)).expect("486");
    drain(&mut l);
    assert!(
        l.handle_message(t0, Message::Request(req), udp(ALICE))
            .is_none()
    );
    assert_eq!(
        drain(&mut l).iter().map(status_of).collect::<Vec<_>>(),
        [Some(486)]
    );
    assert_eq!(l.len(), 1);
}

#[test]
fn non_invite_retransmission_is_absorbed_in_trying_and_answered_in_completed() {
    let (mut l, t0) = (layer(), Instant::now());
    let req = request(Method::Options, "z9hG4bKopt", 7);
    let tx = server_receives(&mut l, t0, req.clone());
    assert!(
        l.handle_message(t0, Message::Request(req.clone()), udp(ALICE))
            .is_none()
    );
    assert!(
        drain(&mut l).is_empty(),
        "Trying absorbs retransmissions silently"
    );
    l.respond(t0, tx, response(&req, 200)).expect("200");
    drain(&mut l);
    assert_eq!(l.state(tx), Some(TxState::Completed));
    assert!(
        l.handle_message(t0, Message::Request(req.clone()), udp(ALICE))
            .is_none()
    );
    assert_eq!(
        drain(&mut l).iter().map(status_of).collect::<Vec<_>>(),
        [Some(200)]
    );

    let log = run_timers(&mut l, t0, 10);
    assert_eq!(log.len(), 1);
    assert!(approx(log[0].0, 32.0), "Timer J is 64*T1");
    assert_eq!(log[0].2, [TxEvent::Terminated { tx }]);
    assert!(l.is_empty());
    assert!(l.respond(t0, tx, response(&req, 200)).is_err());
}

#[test]
fn auto_trying_sends_100_and_resends_it_on_retransmission() {
    let (mut l, t0) = (layer().with_auto_trying(true), Instant::now());
    let req = invite("z9hG4bKauto");
    server_receives(&mut l, t0, req.clone());
    let sent = drain(&mut l);
    assert_eq!(sent.iter().map(status_of).collect::<Vec<_>>(), [Some(100)]);
    assert_eq!(msg_of(&sent[0]).headers().get("CSeq"), Some("1 INVITE"));
    l.handle_message(t0, Message::Request(req), udp(ALICE));
    assert_eq!(
        drain(&mut l).iter().map(status_of).collect::<Vec<_>>(),
        [Some(100)]
    );
}

#[test]
fn timer_a_doubles_and_timer_b_times_out_at_32s() {
    let (mut l, t0) = (layer(), Instant::now());
    let tx = l
        .send_request(t0, invite("z9hG4bKa"), udp(BOB))
        .expect("send");
    let first = drain(&mut l);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].to, udp(BOB));
    assert_eq!(l.state(tx), Some(TxState::Calling));

    let log = run_timers(&mut l, t0, 100);
    let retransmits: Vec<f64> = log
        .iter()
        .filter(|(_, sent, _)| !sent.is_empty())
        .map(|(t, _, _)| *t)
        .collect();
    assert_eq!(retransmits, [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]);
    let gaps: Vec<f64> = std::iter::once(0.0)
        .chain(retransmits.iter().copied())
        .collect::<Vec<_>>()
        .windows(2)
        .map(|w| w[1] - w[0])
        .collect();
    assert_eq!(
        gaps,
        [0.5, 1.0, 2.0, 4.0, 8.0, 16.0],
        "Timer A doubles with no cap"
    );
    let (at, sent, ev) = log.last().expect("timer B");
    assert!(approx(*at, 32.0));
    assert!(sent.is_empty());
    assert_eq!(ev, &[TxEvent::Timeout { tx }, TxEvent::Terminated { tx }]);
    assert!(l.is_empty());
    assert_eq!(l.poll_timeout(), None);
}

#[test]
fn timer_e_caps_at_t2_and_timer_f_times_out() {
    let (mut l, t0) = (layer(), Instant::now());
    let tx = l
        .send_request(t0, request(Method::Options, "z9hG4bKe", 2), udp(BOB))
        .expect("send");
    drain(&mut l);
    let log = run_timers(&mut l, t0, 100);
    let times: Vec<f64> = log
        .iter()
        .filter(|(_, sent, _)| !sent.is_empty())
        .map(|(t, _, _)| *t)
        .collect();
    assert_eq!(&times[..6], [0.5, 1.5, 3.5, 7.5, 11.5, 15.5]);
    let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().all(|g| *g <= 4.0 + 1e-9),
        "never more than T2: {gaps:?}"
    );
    let (at, _, ev) = log.last().expect("timer F");
    assert!(approx(*at, 32.0));
    assert_eq!(ev, &[TxEvent::Timeout { tx }, TxEvent::Terminated { tx }]);
}

#[test]
fn timer_e_uses_t2_once_proceeding() {
    let (mut l, t0) = (layer(), Instant::now());
    let req = request(Method::Bye, "z9hG4bKbye", 3);
    let tx = l.send_request(t0, req.clone(), udp(BOB)).expect("send");
    drain(&mut l);
    // First retransmit at 0.5 s, then a provisional arrives at 0.6 s.
    l.handle_timeout(t0 + Duration::from_millis(500));
    assert_eq!(drain(&mut l).len(), 1);
    let input = l.handle_message(
        t0 + Duration::from_millis(600),
        Message::Response(response(&req, 100)),
        udp(BOB),
    );
    assert!(matches!(input, Some(TxInput::Response { tx: t, .. }) if t == tx));
    assert_eq!(l.state(tx), Some(TxState::Proceeding));
    // The pending E (at 1.5 s) fires, then every T2 after it.
    let log = run_timers(&mut l, t0, 4);
    let times: Vec<f64> = log.iter().map(|(t, _, _)| *t).collect();
    assert_eq!(times, [1.5, 5.5, 9.5, 13.5]);
}

#[test]
fn non_2xx_final_to_invite_gets_a_locally_built_ack() {
    let (mut l, t0) = (layer(), Instant::now());
    let inv = invite("z9hG4bKack");
    let tx = l.send_request(t0, inv.clone(), udp(BOB)).expect("send");
    drain(&mut l);

    let busy = response(&inv, 486);
    let input = l.handle_message(t0, Message::Response(busy.clone()), udp(BOB));
    match input {
        Some(TxInput::Response { tx: t, resp }) => {
            assert_eq!(t, tx);
            assert_eq!(resp.status.0, 486);
        }
        other => panic!("expected the 486 to go up, got {other:?}"),
    }
    assert_eq!(l.state(tx), Some(TxState::Completed));
    let sent = drain(&mut l);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, udp(BOB));
    let Message::Request(ack) = &msg_of(&sent[0]) else {
        panic!("ACK expected")
    };
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(ack.uri, inv.uri);
    let h = &ack.headers;
    assert_eq!(
        h.get_all("Via").collect::<Vec<_>>(),
        ["SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKack;rport"],
        "only the top Via"
    );
    assert_eq!(h.get("From"), inv.headers.get("From"));
    assert_eq!(
        h.get("To"),
        Some("<sip:bob@example.com>;tag=to9"),
        "To from the response"
    );
    assert_eq!(h.get("Call-ID"), Some("call-1@10.0.0.1"));
    assert_eq!(h.get("CSeq"), Some("1 ACK"));
    assert_eq!(
        h.get_all("Route").collect::<Vec<_>>(),
        ["<sip:proxy1.example.com;lr>", "<sip:proxy2.example.com;lr>"]
    );
    assert_eq!(h.get("Max-Forwards"), Some("70"));
    assert_eq!(h.get("Contact"), None);
    assert!(ack.body.is_empty());

    // A retransmitted final is absorbed and re-triggers the same ACK.
    let input = l.handle_message(
        t0 + Duration::from_secs(1),
        Message::Response(busy),
        udp(BOB),
    );
    assert!(input.is_none(), "the final goes up once");
    let again = drain(&mut l);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].bytes, sent[0].bytes, "the same bytes");

    // Timer D (32 s) ends it.
    let log = run_timers(&mut l, t0, 10);
    assert_eq!(log.len(), 1);
    assert!(approx(log[0].0, 32.0));
    assert_eq!(log[0].2, [TxEvent::Terminated { tx }]);
}

#[test]
fn provisional_stops_timer_a_and_timer_b() {
    let (mut l, t0) = (layer(), Instant::now());
    let inv = invite("z9hG4bKprov");
    let tx = l.send_request(t0, inv.clone(), udp(BOB)).expect("send");
    drain(&mut l);
    let input = l.handle_message(t0, Message::Response(response(&inv, 180)), udp(BOB));
    assert!(matches!(input, Some(TxInput::Response { .. })));
    assert_eq!(l.state(tx), Some(TxState::Proceeding));
    assert_eq!(
        l.poll_timeout(),
        None,
        "Proceeding waits for the TU (CANCEL) or a final"
    );
    assert!(l.terminate(tx));
    assert_eq!(events(&mut l), [TxEvent::Terminated { tx }]);
}

#[test]
fn client_accepted_state_passes_2xx_retransmissions_up_until_timer_m() {
    let (mut l, t0) = (layer(), Instant::now());
    let inv = invite("z9hG4bKok");
    let tx = l.send_request(t0, inv.clone(), udp(BOB)).expect("send");
    drain(&mut l);
    let ok = response(&inv, 200);
    for i in 0..3 {
        let now = t0 + Duration::from_secs(i);
        let input = l.handle_message(now, Message::Response(ok.clone()), udp(BOB));
        assert!(
            matches!(input, Some(TxInput::Response { tx: t, ref resp }) if t == tx && resp.status.0 == 200),
            "2xx #{i} must reach the TU so it can re-ACK"
        );
        assert_eq!(l.state(tx), Some(TxState::Accepted));
    }
    assert!(
        drain(&mut l).is_empty(),
        "the TU, not the transaction, ACKs a 2xx"
    );
    // Non-2xx in Accepted is dropped.
    assert!(
        l.handle_message(t0, Message::Response(response(&inv, 500)), udp(BOB))
            .is_none()
    );

    let log = run_timers(&mut l, t0, 10);
    assert_eq!(log.len(), 1);
    assert!(approx(log[0].0, 32.0), "Timer M is 64*T1");
    assert_eq!(log[0].2, [TxEvent::Terminated { tx }]);

    // After Timer M a 2xx retransmission is stray: the TU re-ACKs from the dialog.
    let input = l.handle_message(
        t0 + Duration::from_secs(40),
        Message::Response(ok),
        udp(BOB),
    );
    assert!(
        matches!(input, Some(TxInput::StrayResponse { ref resp, from }) if resp.status.0 == 200 && from == udp(BOB))
    );
}

#[test]
fn server_accepted_state_absorbs_invite_retransmissions_and_passes_ack_up_until_timer_l() {
    let (mut l, t0) = (layer(), Instant::now());
    let req = invite("z9hG4bKsrv");
    let tx = server_receives(&mut l, t0, req.clone());
    l.respond(t0, tx, response(&req, 200)).expect("200");
    assert_eq!(drain(&mut l).len(), 1);
    assert_eq!(l.state(tx), Some(TxState::Accepted));

    assert!(
        l.handle_message(t0, Message::Request(req.clone()), udp(ALICE))
            .is_none()
    );
    assert!(
        drain(&mut l).is_empty(),
        "Accepted absorbs INVITE retransmissions; the TU re-sends 2xx"
    );

    // The TU retransmits its 2xx through the transaction.
    l.respond(t0 + Duration::from_millis(500), tx, response(&req, 200))
        .expect("2xx again");
    assert_eq!(drain(&mut l).len(), 1);
    assert!(
        l.respond(t0, tx, response(&req, 486)).is_err(),
        "no non-2xx after a 2xx"
    );

    // An ACK matching the transaction (same branch) goes up.
    let mut ack = request(Method::Ack, "z9hG4bKsrv", 1);
    ack.headers.set("To", "<sip:bob@example.com>;tag=to9");
    let input = l.handle_message(t0, Message::Request(ack.clone()), udp(ALICE));
    assert!(matches!(input, Some(TxInput::Ack { .. })));
    // An ACK with its own branch (the usual case) also goes up, without a transaction.
    let other = request(Method::Ack, "z9hG4bKnew", 1);
    let input = l.handle_message(t0, Message::Request(other), udp(ALICE));
    assert!(matches!(input, Some(TxInput::Ack { from, .. }) if from == udp(ALICE)));
    assert_eq!(l.len(), 1);

    let log = run_timers(&mut l, t0, 10);
    assert_eq!(log.len(), 1);
    assert!(approx(log[0].0, 32.0), "Timer L is 64*T1");
    assert_eq!(log[0].2, [TxEvent::Terminated { tx }]);
    // Once L fired, a late retransmission would be a new request: that is RFC 6026's point,
    // and why L lasts 64*T1.
    assert!(l.is_empty());
}

#[test]
fn timer_g_retransmits_the_final_response_until_ack() {
    let (mut l, t0) = (layer(), Instant::now());
    let req = invite("z9hG4bKg");
    let tx = server_receives(&mut l, t0, req.clone());
    l.respond(t0, tx, response(&req, 486)).expect("486");
    drain(&mut l);

    let mut sent_at = Vec::new();
    while let Some(at) = l.poll_timeout() {
        if secs(t0, at) > 10.0 {
            break;
        }
        l.handle_timeout(at);
        let sent = drain(&mut l);
        assert!(sent.iter().all(|t| status_of(t) == Some(486)));
        sent_at.extend(sent.iter().map(|_| secs(t0, at)));
    }
    assert_eq!(
        sent_at,
        [0.5, 1.5, 3.5, 7.5],
        "T1 doubling, capped at T2 (4 s)"
    );

    let ack = request(Method::Ack, "z9hG4bKg", 1);
    let now = t0 + Duration::from_secs(10);
    assert!(
        l.handle_message(now, Message::Request(ack.clone()), udp(ALICE))
            .is_none()
    );
    assert_eq!(l.state(tx), Some(TxState::Confirmed));
    // ACK retransmissions are absorbed in Confirmed.
    assert!(
        l.handle_message(now, Message::Request(ack), udp(ALICE))
            .is_none()
    );
    assert!(drain(&mut l).is_empty());

    let log = run_timers(&mut l, t0, 10);
    assert_eq!(log.len(), 1, "G and H are gone, only I remains");
    assert!(approx(log[0].0, 15.0), "Timer I is T4 after the ACK");
    assert_eq!(log[0].2, [TxEvent::Terminated { tx }]);
}

#[test]
fn timer_h_gives_up_without_ack() {
    let (mut l, t0) = (layer(), Instant::now());
    let req = invite("z9hG4bKh");
    let tx = server_receives(&mut l, t0, req.clone());
    l.respond(t0, tx, response(&req, 603)).expect("603");
    drain(&mut l);
    let log = run_timers(&mut l, t0, 100);
    let retransmits: Vec<f64> = log
        .iter()
        .filter(|(_, s, _)| !s.is_empty())
        .map(|(t, _, _)| *t)
        .collect();
    assert_eq!(&retransmits[..4], [0.5, 1.5, 3.5, 7.5]);
    assert!(
        retransmits
            .windows(2)
            .skip(3)
            .all(|w| approx(w[1] - w[0], 4.0))
    );
    let (at, _, ev) = log.last().expect("timer H");
    assert!(approx(*at, 32.0));
    assert_eq!(ev, &[TxEvent::Timeout { tx }, TxEvent::Terminated { tx }]);
    assert!(l.is_empty());
}

#[test]
fn cancel_matches_its_invite_server_transaction() {
    let (mut l, t0) = (layer(), Instant::now());
    let inv = invite("z9hG4bKcan");
    let inv_tx = server_receives(&mut l, t0, inv.clone());
    // An unrelated INVITE from another branch.
    server_receives(&mut l, t0, invite("z9hG4bKother"));

    let cancel = request(Method::Cancel, "z9hG4bKcan", 1);
    let input = l.handle_message(t0, Message::Request(cancel.clone()), udp(ALICE));
    let Some(TxInput::Cancel {
        tx,
        invite_tx,
        from,
        req,
    }) = input
    else {
        panic!("expected a CANCEL input, got {input:?}")
    };
    assert_eq!(invite_tx, Some(inv_tx));
    assert_eq!(from, udp(ALICE));
    assert_eq!(req.method, Method::Cancel);
    assert_ne!(tx, inv_tx);
    assert_eq!(l.kind(tx), Some(TxKind::NonInviteServer));

    // CANCEL retransmission is absorbed by its own transaction.
    assert!(
        l.handle_message(t0, Message::Request(cancel.clone()), udp(ALICE))
            .is_none()
    );

    // TU: 200 to the CANCEL, 487 to the INVITE.
    l.respond(t0, tx, response(&cancel, 200))
        .expect("200 CANCEL");
    l.respond(t0, inv_tx, response(&inv, 487)).expect("487");
    let codes: Vec<_> = drain(&mut l).iter().map(status_of).collect();
    assert_eq!(codes, [Some(200), Some(487)]);

    // A CANCEL for an unknown INVITE still gets a transaction, with no INVITE to match.
    let stray = request(Method::Cancel, "z9hG4bKnone", 1);
    let input = l.handle_message(t0, Message::Request(stray), udp(ALICE));
    assert!(matches!(
        input,
        Some(TxInput::Cancel {
            invite_tx: None,
            ..
        })
    ));
}

#[test]
fn cancel_matches_by_sent_by_too() {
    let (mut l, t0) = (layer(), Instant::now());
    server_receives(&mut l, t0, invite("z9hG4bKsame"));
    let mut cancel = request(Method::Cancel, "z9hG4bKsame", 1);
    cancel
        .headers
        .set("Via", "SIP/2.0/UDP 10.7.7.7:5060;branch=z9hG4bKsame");
    let input = l.handle_message(t0, Message::Request(cancel), udp(ALICE));
    assert!(matches!(
        input,
        Some(TxInput::Cancel {
            invite_tx: None,
            ..
        })
    ));
}

#[test]
fn reliable_transport_sends_no_retransmissions() {
    let (mut l, t0) = (layer(), Instant::now());
    let bob = peer(Transport::Tcp, BOB);
    let alice = peer(Transport::Tcp, ALICE);

    let inv = invite("z9hG4bKtcp1");
    let ict = l.send_request(t0, inv.clone(), bob).expect("invite");
    let nict = l
        .send_request(t0, request(Method::Options, "z9hG4bKtcp2", 2), bob)
        .expect("opt");
    let sreq = invite("z9hG4bKtcp3");
    let ist = match l.handle_message(t0, Message::Request(sreq.clone()), alice) {
        Some(TxInput::Request { tx, .. }) => tx,
        other => panic!("{other:?}"),
    };
    l.respond(t0, ist, response(&sreq, 486)).expect("486");
    assert_eq!(drain(&mut l).len(), 3);

    let log = run_timers(&mut l, t0, 100);
    assert!(
        log.iter().all(|(_, sent, _)| sent.is_empty()),
        "no A, E or G on TCP"
    );
    let timeouts: Vec<(f64, TxEvent)> = log
        .iter()
        .flat_map(|(t, _, ev)| ev.iter().map(move |e| (*t, *e)))
        .filter(|(_, e)| matches!(e, TxEvent::Timeout { .. }))
        .collect();
    assert_eq!(
        timeouts,
        [
            (32.0, TxEvent::Timeout { tx: ict }),
            (32.0, TxEvent::Timeout { tx: nict }),
            (32.0, TxEvent::Timeout { tx: ist })
        ],
        "B, F and H still apply"
    );

    // Timer D, I, K are zero: finals on TCP end the client transactions at once.
    let inv = invite("z9hG4bKtcp4");
    let tx = l.send_request(t0, inv.clone(), bob).expect("invite");
    l.handle_message(t0, Message::Response(response(&inv, 404)), bob);
    assert_eq!(l.state(tx), None, "Timer D = 0 on a reliable transport");
    let sent = drain(&mut l);
    assert_eq!(
        sent.iter().filter_map(method_of).collect::<Vec<_>>(),
        [Method::Invite, Method::Ack]
    );
    let opt = request(Method::Options, "z9hG4bKtcp5", 3);
    let tx = l.send_request(t0, opt.clone(), bob).expect("options");
    l.handle_message(t0, Message::Response(response(&opt, 200)), bob);
    assert_eq!(l.state(tx), None, "Timer K = 0 on a reliable transport");
    let sreq = invite("z9hG4bKtcp6");
    let tx = match l.handle_message(t0, Message::Request(sreq.clone()), alice) {
        Some(TxInput::Request { tx, .. }) => tx,
        other => panic!("{other:?}"),
    };
    l.respond(t0, tx, response(&sreq, 480)).expect("480");
    l.handle_message(
        t0,
        Message::Request(request(Method::Ack, "z9hG4bKtcp6", 1)),
        alice,
    );
    assert_eq!(l.state(tx), None, "Timer I = 0 on a reliable transport");
    assert!(l.is_empty());
}

#[test]
fn table_is_empty_after_all_timers_run() {
    let (mut l, t0) = (layer(), Instant::now());
    for i in 0..200u32 {
        let now = t0 + Duration::from_millis(u64::from(i));
        // Client INVITE answered 200, 486, or never.
        let inv = invite(&format!("z9hG4bKc{i}"));
        let tx = l.send_request(now, inv.clone(), udp(BOB)).expect("send");
        match i % 3 {
            0 => {
                l.handle_message(now, Message::Response(response(&inv, 200)), udp(BOB));
            }
            1 => {
                l.handle_message(now, Message::Response(response(&inv, 486)), udp(BOB));
            }
            _ => {}
        }
        // Client non-INVITE answered or not.
        let opt = request(Method::Options, &format!("z9hG4bKo{i}"), i);
        l.send_request(now, opt.clone(), udp(BOB)).expect("send");
        if i % 2 == 0 {
            l.handle_message(now, Message::Response(response(&opt, 200)), udp(BOB));
        }
        // Server INVITE: 200, 486 with ACK, 486 without ACK.
        let sinv = invite(&format!("z9hG4bKs{i}"));
        let stx = server_receives(&mut l, now, sinv.clone());
        let code = if i % 3 == 0 { 200 } else { 486 };
        l.respond(now, stx, response(&sinv, code)).expect("respond");
        if i % 3 == 1 {
            let ack = request(Method::Ack, &format!("z9hG4bKs{i}"), 1);
            l.handle_message(now, Message::Request(ack), udp(ALICE));
        }
        // Server non-INVITE.
        let sopt = request(Method::Register, &format!("z9hG4bKr{i}"), i);
        let rtx = server_receives(&mut l, now, sopt.clone());
        l.respond(now, rtx, response(&sopt, 200)).expect("respond");
        let _ = tx;
    }
    assert_eq!(l.len(), 800);
    let log = run_timers(&mut l, t0, 100_000);
    assert!(log.len() < 100_000);
    assert!(l.is_empty(), "{} transactions leaked", l.len());
    assert_eq!(l.poll_timeout(), None);
    assert_eq!(l.queued_timers(), 0, "stale heap entries are pruned");
    let terminated = log
        .iter()
        .flat_map(|(_, _, ev)| ev.iter())
        .filter(|e| matches!(e, TxEvent::Terminated { .. }))
        .count()
        + events(&mut l).len();
    assert_eq!(terminated, 800, "one Terminated per transaction");
}

#[test]
fn thousands_of_calls_cost_little() {
    // 20,000 complete call set-ups (client + server INVITE, 200, timers to the end).
    let (mut l, t0) = (layer(), Instant::now());
    let n = 20_000u32;
    for i in 0..n {
        let now = t0 + Duration::from_micros(u64::from(i) * 100);
        let inv = invite(&format!("z9hG4bKbulk{i}"));
        l.send_request(now, inv.clone(), udp(BOB)).expect("send");
        let stx = server_receives(&mut l, now, inv.clone());
        l.respond(now, stx, response(&inv, 200)).expect("200");
        l.handle_message(now, Message::Response(response(&inv, 200)), udp(BOB));
        drain(&mut l);
        l.handle_timeout(now);
    }
    assert_eq!(l.len(), 2 * n as usize);
    l.handle_timeout(t0 + Duration::from_secs(100));
    assert!(l.is_empty());
    assert_eq!(events(&mut l).len(), 2 * n as usize);
}

#[test]
fn response_with_unknown_branch_is_stray() {
    let (mut l, t0) = (layer(), Instant::now());
    let inv = invite("z9hG4bKmine");
    let tx = l.send_request(t0, inv.clone(), udp(BOB)).expect("send");
    let mut other = response(&inv, 200);
    other
        .headers
        .set("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKnotmine");
    let input = l.handle_message(t0, Message::Response(other), udp(BOB));
    assert!(matches!(input, Some(TxInput::StrayResponse { .. })));
    // Same branch, other method (CSeq) does not match either (§17.1.3).
    let mut wrong_method = response(&inv, 200);
    wrong_method.headers.set("CSeq", "1 BYE");
    let input = l.handle_message(t0, Message::Response(wrong_method), udp(BOB));
    assert!(matches!(input, Some(TxInput::StrayResponse { .. })));
    // No Via at all: stray, no panic.
    let mut bare = response(&inv, 200);
    bare.headers.remove("Via");
    assert!(matches!(
        l.handle_message(t0, Message::Response(bare), udp(BOB)),
        Some(TxInput::StrayResponse { .. })
    ));
    assert_eq!(l.state(tx), Some(TxState::Calling));
}

#[test]
fn cancel_client_transaction_is_separate_from_its_invite() {
    let (mut l, t0) = (layer(), Instant::now());
    let inv = invite("z9hG4bKcc");
    let itx = l.send_request(t0, inv.clone(), udp(BOB)).expect("invite");
    l.handle_message(t0, Message::Response(response(&inv, 180)), udp(BOB));
    let cancel = request(Method::Cancel, "z9hG4bKcc", 1);
    let ctx = l
        .send_request(t0, cancel.clone(), udp(BOB))
        .expect("cancel, same branch");
    assert_ne!(itx, ctx);
    let input = l.handle_message(t0, Message::Response(response(&cancel, 200)), udp(BOB));
    assert!(matches!(input, Some(TxInput::Response { tx, .. }) if tx == ctx));
    let input = l.handle_message(t0, Message::Response(response(&inv, 487)), udp(BOB));
    assert!(matches!(input, Some(TxInput::Response { tx, .. }) if tx == itx));
}

#[test]
fn rfc2543_requests_without_cookie_still_match_retransmissions_and_ack() {
    let (mut l, t0) = (layer(), Instant::now());
    let mut req = invite("oldstyle");
    req.headers.set("Via", "SIP/2.0/UDP 10.0.0.1:5060");
    let tx = server_receives(&mut l, t0, req.clone());
    l.respond(t0, tx, response(&req, 404)).expect("404");
    drain(&mut l);
    assert!(
        l.handle_message(t0, Message::Request(req.clone()), udp(ALICE))
            .is_none()
    );
    assert_eq!(
        drain(&mut l).iter().map(status_of).collect::<Vec<_>>(),
        [Some(404)]
    );
    let mut ack = req.clone();
    ack.method = Method::Ack;
    ack.headers.set("CSeq", "1 ACK");
    assert!(
        l.handle_message(t0, Message::Request(ack), udp(ALICE))
            .is_none()
    );
    assert_eq!(l.state(tx), Some(TxState::Confirmed));
    // A new CSeq is a new transaction.
    let mut next = req;
    next.headers.set("CSeq", "2 INVITE");
    assert!(matches!(
        l.handle_message(t0, Message::Request(next), udp(ALICE)),
        Some(TxInput::Request { .. })
    ));
}

#[test]
fn request_without_via_is_dropped_without_panicking() {
    let (mut l, t0) = (layer(), Instant::now());
    let mut req = invite("z9hG4bKx");
    req.headers.remove("Via");
    assert!(
        l.handle_message(t0, Message::Request(req), udp(ALICE))
            .is_none()
    );
    assert!(l.is_empty());
}

#[test]
fn send_request_rejects_what_it_cannot_match() {
    let (mut l, t0) = (layer(), Instant::now());
    let mut no_cookie = invite("abc");
    no_cookie
        .headers
        .set("Via", "SIP/2.0/UDP 10.0.0.1;branch=abc");
    assert_eq!(
        l.send_request(t0, no_cookie, udp(BOB)),
        Err(TxError::MissingBranch)
    );
    let mut bad_cseq = invite("z9hG4bK1");
    bad_cseq.headers.set("CSeq", "1 BYE");
    assert_eq!(
        l.send_request(t0, bad_cseq, udp(BOB)),
        Err(TxError::InvalidHeader("CSeq"))
    );
    assert_eq!(
        l.send_request(t0, request(Method::Ack, "z9hG4bK2", 1), udp(BOB)),
        Err(TxError::AckHasNoTransaction)
    );
    l.send_request(t0, invite("z9hG4bK3"), udp(BOB))
        .expect("first");
    assert_eq!(
        l.send_request(t0, invite("z9hG4bK3"), udp(BOB)),
        Err(TxError::DuplicateTransaction)
    );
    assert_eq!(l.len(), 1);
}

#[test]
fn respond_rejects_client_transactions_and_bad_states() {
    let (mut l, t0) = (layer(), Instant::now());
    let inv = invite("z9hG4bKr");
    let ctx = l.send_request(t0, inv.clone(), udp(BOB)).expect("send");
    assert_eq!(
        l.respond(t0, ctx, response(&inv, 200)),
        Err(TxError::NotAServerTransaction(ctx))
    );
    let sinv = invite("z9hG4bKs");
    let stx = server_receives(&mut l, t0, sinv.clone());
    assert_eq!(
        l.respond(t0, stx, response(&sinv, 99)),
        Err(TxError::InvalidStatus(99))
    );
    l.respond(t0, stx, response(&sinv, 486)).expect("486");
    assert!(matches!(
        l.respond(t0, stx, response(&sinv, 180)),
        Err(TxError::InvalidState {
            state: TxState::Completed,
            ..
        })
    ));
}

#[test]
fn transport_error_ends_the_transaction_with_an_event() {
    let (mut l, t0) = (layer(), Instant::now());
    let tx = l
        .send_request(t0, invite("z9hG4bKterr"), udp(BOB))
        .expect("send");
    let sent = drain(&mut l);
    let failed = sent[0].tx.expect("transaction transmit");
    l.handle_transport_error(failed);
    assert_eq!(
        events(&mut l),
        [TxEvent::TransportError { tx }, TxEvent::Terminated { tx }]
    );
    assert!(l.is_empty());
    assert_eq!(l.poll_timeout(), None);
    l.handle_transport_error(tx);
    assert!(
        events(&mut l).is_empty(),
        "a second error for a gone transaction is ignored"
    );
}

#[test]
fn stateless_sends_carry_no_transaction() {
    let mut l = layer();
    l.send_stateless(
        Message::Request(request(Method::Ack, "z9hG4bKs", 1)),
        udp(BOB),
    );
    let sent = drain(&mut l);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].tx, None);
    assert!(l.is_empty());
}

#[test]
fn generated_branches_carry_the_cookie_and_differ() {
    let (a, b) = (Branch::generate(), Branch::generate());
    assert!(a.as_str().starts_with(Branch::MAGIC_COOKIE));
    assert_eq!(a.as_str().len(), 29);
    assert_ne!(a, b);
}

#[test]
fn late_handle_timeout_does_not_replay_missed_retransmissions() {
    let (mut l, t0) = (layer(), Instant::now());
    l.send_request(t0, invite("z9hG4bKlate"), udp(BOB))
        .expect("send");
    drain(&mut l);
    // The driver oversleeps to 10 s: one retransmission, the next one interval later.
    l.handle_timeout(t0 + Duration::from_secs(10));
    assert_eq!(drain(&mut l).len(), 1);
    assert_eq!(l.poll_timeout(), Some(t0 + Duration::from_secs(11)));
}

/// What a transaction holds: (bytes it would re-send, whether it keeps the parsed INVITE).
fn held(l: &TransactionLayer, tx: TxId) -> (Option<Bytes>, bool) {
    let t = l.txs.get(&tx).expect("live transaction");
    (t.wire.as_ref().map(|w| w.bytes.clone()), t.invite.is_some())
}

#[test]
fn lingering_transactions_keep_only_the_bytes_a_retransmission_needs() {
    let (mut l, t0) = (layer(), Instant::now());

    // INVITE client, 2xx: Accepted (Timer M) re-sends nothing and keeps no INVITE.
    let inv = invite("z9hG4bKlc2xx");
    let c2xx = l.send_request(t0, inv.clone(), udp(BOB)).expect("send");
    assert!(
        held(&l, c2xx).1,
        "the INVITE is kept until a final, for the ACK"
    );
    l.handle_message(t0, Message::Response(response(&inv, 200)), udp(BOB));
    assert_eq!(l.state(c2xx), Some(TxState::Accepted));
    assert_eq!(held(&l, c2xx), (None, false));

    // INVITE client, 486: Completed (Timer D) keeps the ACK's bytes only.
    let inv = invite("z9hG4bKlc486");
    let c486 = l.send_request(t0, inv.clone(), udp(BOB)).expect("send");
    drain(&mut l);
    l.handle_message(t0, Message::Response(response(&inv, 486)), udp(BOB));
    let ack = drain(&mut l).pop().expect("ACK sent");
    assert_eq!(l.state(c486), Some(TxState::Completed));
    assert_eq!(held(&l, c486), (Some(ack.bytes), false));

    // Non-INVITE client, 200: Completed (Timer K) re-sends nothing.
    let opt = request(Method::Options, "z9hG4bKlco", 2);
    let copt = l.send_request(t0, opt.clone(), udp(BOB)).expect("send");
    l.handle_message(t0, Message::Response(response(&opt, 200)), udp(BOB));
    assert_eq!(l.state(copt), Some(TxState::Completed));
    assert_eq!(held(&l, copt), (None, false));

    // INVITE server, 200: Accepted (Timer L) absorbs retransmissions, keeps nothing.
    let sinv = invite("z9hG4bKls2xx");
    let s2xx = server_receives(&mut l, t0, sinv.clone());
    l.respond(t0, s2xx, response(&sinv, 200)).expect("200");
    assert_eq!(held(&l, s2xx), (None, false));

    // INVITE server, 486 then ACK: Confirmed (Timer I) keeps nothing.
    let sinv = invite("z9hG4bKls486");
    let s486 = server_receives(&mut l, t0, sinv.clone());
    l.respond(t0, s486, response(&sinv, 486)).expect("486");
    assert!(held(&l, s486).0.is_some(), "Completed re-sends its final");
    let ack = request(Method::Ack, "z9hG4bKls486", 1);
    l.handle_message(t0, Message::Request(ack), udp(ALICE));
    assert_eq!(l.state(s486), Some(TxState::Confirmed));
    assert_eq!(held(&l, s486), (None, false));

    // Non-INVITE server, 200: Completed (Timer J) keeps the bytes of its final.
    let bye = request(Method::Bye, "z9hG4bKlsbye", 2);
    let sbye = server_receives(&mut l, t0, bye.clone());
    drain(&mut l);
    l.respond(t0, sbye, response(&bye, 200)).expect("200");
    let ok = drain(&mut l).pop().expect("200 sent");
    assert_eq!(held(&l, sbye), (Some(ok.bytes), false));
}

#[test]
fn completed_non_invite_server_resends_the_exact_bytes_of_its_final() {
    let (mut l, t0) = (layer(), Instant::now());
    let bye = request(Method::Bye, "z9hG4bKsame", 2);
    let tx = server_receives(&mut l, t0, bye.clone());
    l.respond(t0, tx, response(&bye, 200)).expect("200");
    let first = drain(&mut l);
    assert_eq!(first.len(), 1);
    for s in [1, 10, 31] {
        let at = t0 + Duration::from_secs(s);
        assert!(
            l.handle_message(at, Message::Request(bye.clone()), udp(ALICE))
                .is_none()
        );
        let again = drain(&mut l);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].bytes, first[0].bytes, "same bytes at {s} s");
        assert_eq!(again[0].to, udp(ALICE));
        assert_eq!(again[0].tx, Some(tx));
    }
    // Timer J (64*T1) ends it.
    let log = run_timers(&mut l, t0, 10);
    assert!(approx(log.last().expect("Timer J").0, 32.0));
    assert!(l.is_empty());
}

#[test]
fn timer_g_resends_the_exact_bytes_of_the_final() {
    let (mut l, t0) = (layer(), Instant::now());
    let inv = invite("z9hG4bKgsame");
    let tx = server_receives(&mut l, t0, inv.clone());
    l.respond(t0, tx, response(&inv, 486)).expect("486");
    let first = drain(&mut l).pop().expect("486 sent");
    let log = run_timers(&mut l, t0, 3);
    assert_eq!(log.len(), 3);
    for (at, sent, _) in &log {
        assert_eq!(sent.len(), 1, "one retransmission at {at} s");
        assert_eq!(sent[0].bytes, first.bytes, "same bytes at {at} s");
    }
}

#[test]
fn table_gives_its_memory_back_after_a_burst_drains() {
    // A burst of 20,000 call set-ups (both sides) then every timer to the end, in virtual time.
    let (mut l, t0) = (layer(), Instant::now());
    for i in 0..20_000u32 {
        let now = t0 + Duration::from_micros(u64::from(i) * 50);
        let inv = invite(&format!("z9hG4bKburst{i}"));
        l.send_request(now, inv.clone(), udp(BOB)).expect("send");
        let stx = server_receives(&mut l, now, inv.clone());
        l.respond(now, stx, response(&inv, 200)).expect("200");
        l.handle_message(now, Message::Response(response(&inv, 200)), udp(BOB));
        drain(&mut l);
        events(&mut l);
    }
    let (peak_txs, peak_heap) = l.capacities();
    assert!(
        peak_txs >= 40_000 && peak_heap >= 40_000,
        "{peak_txs} {peak_heap}"
    );
    // Halfway through the timers the table has already shrunk with it.
    l.handle_timeout(t0 + Duration::from_millis(32_000 + 800));
    let left = l.len();
    assert!(left > 0 && left < 10_000, "{left}");
    assert!(l.capacities().0 < peak_txs / 2, "shrunk while draining");
    while let Some(at) = l.poll_timeout() {
        l.handle_timeout(at);
        events(&mut l);
    }
    assert!(l.is_empty());
    assert!(l.server_index.is_empty() && l.client_index.is_empty());
    assert_eq!(l.queued_timers(), 0);
    let (txs, heap) = l.capacities();
    assert!(
        txs <= SMALL && heap <= SMALL,
        "capacity left: {txs} slots, {heap} heap entries"
    );
    assert!(l.server_index.capacity() <= SMALL && l.client_index.capacity() <= SMALL);
}

#[test]
fn a_collection_is_shrunk_only_when_large_and_mostly_empty() {
    assert!(!sparse(0, SMALL));
    assert!(sparse(0, SMALL + 1));
    assert!(sparse(1000, 4000));
    assert!(!sparse(1001, 4000));
    let mut m: HashMap<u32, u32> = (0..100_000).map(|i| (i, i)).collect();
    m.retain(|k, _| *k < 1000);
    shrink_sparse!(m);
    assert!(m.capacity() < 4 * m.len(), "{}", m.capacity());
    let cap = m.capacity();
    shrink_sparse!(m);
    assert_eq!(m.capacity(), cap, "no shrink twice in a row");
}
