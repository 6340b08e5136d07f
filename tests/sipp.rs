//! Black-box SIP tests: the SIPp scenarios in `sipp-scenarios/` driven against the built
//! `switchboard` binary over real loopback sockets.
//!
//! Each test starts its own server (`switchboard serve`) on a block of ports of its own, with a
//! temporary data directory and three extensions added first with `switchboard user add`:
//! 1001 (caller), 2001 (callee), 3001 (exists, never registered). The password of EXT is
//! `pw-EXT`. Readiness is polled: `GET /healthz` answers 200 and the SIP UDP port is bound,
//! within a bounded number of tries.
//!
//! A callee is registered by running `register_ok.xml` to completion from the very port its UAS
//! scenario then listens on (so the registered Contact and the source address agree); the
//! caller starts only once the UAS process has bound that port (read from `/proc/net/udp`).
//!
//! Media is proved by the test itself: the caller's and the callee's SDP name UDP sockets this
//! test owns (`-key caller_rtp` / `-key callee_rtp`). The caller scenario writes the c=/m= lines
//! of the 200 OK to a file; the test streams 100 PCMU packets there, the callee socket echoes
//! whatever it receives back to where it came from, and both sides count what arrives. Every
//! packet must come from the server's `--rtp-ports` range, never straight from the other party.
//!
//! Without `sipp` on PATH the tests print a notice and pass, unless `CI` is set, where that is a
//! failure. `SIPP_TEST_PEER=kamailio` runs the same tests against Kamailio + rtpengine
//! (`sipp-scenarios/peer/kamailio-peer.cfg`) to validate the scenarios and this harness.
#![allow(clippy::disallowed_methods)] // a test measures real time, not the server's clock

mod sipp_harness;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use sipp_harness::*;

/// A call with media through the server: callee answers, test plays RTP, caller hangs up.
fn anchored_call(transport: &[&str]) {
    anchored_call_with("uac_call", transport);
}

/// [`anchored_call`] with caller scenario `uac` (same harness contract as `uac_call.xml`).
/// When the scenario logs the `o=` of an 18x answer (`early_o`), the 200's (`final_o`) must be
/// the same: one answer, same version (RFC 6337 §3.1, RFC 3264 §8).
fn anchored_call_with(uac: &str, transport: &[&str]) {
    let Some(server) = setup() else { return };
    register_callee(&server);
    let rtp = server.ports.rtp_range();
    let caller_rtp = UdpSocket::bind("127.0.0.1:0").expect("caller RTP socket");
    let callee_rtp = UdpSocket::bind("127.0.0.1:0").expect("callee RTP socket");
    let caller_port = caller_rtp.local_addr().expect("addr").port();
    let callee_port = callee_rtp.local_addr().expect("addr").port();
    let caller_file = server.dir.path().join("caller-media.txt");
    let callee_file = server.dir.path().join("callee-media.txt");

    let stop = Arc::new(AtomicBool::new(false));
    let callee_media = rtp_peer(callee_rtp, stop.clone(), rtp, true);
    let mut callee = start_callee(
        &server,
        "uas_answer",
        &[
            "-key".into(),
            "callee_rtp".into(),
            callee_port.to_string(),
            "-set".into(),
            "media_file".into(),
            callee_file.display().to_string(),
        ],
    );
    let mut caller = SippRun::new(&server, "caller", uac, CALLER_SIP, CALLER_MEDIA)
        .args(["-s", CALLEE])
        .authenticated_as(CALLER)
        .args(["-key", "caller_rtp", &caller_port.to_string()])
        .args(["-set", "media_file", &caller_file.display().to_string()])
        .args(["-d", "6000"])
        .args(transport.iter().copied())
        .spawn();

    let answer = wait_sdp(&caller_file, "answer", &mut caller, &server);
    assert_anchored(&server, "200 OK to the caller", &answer, callee_port);
    let to = SocketAddr::from(([127, 0, 0, 1], answer.port));
    let player = caller_rtp.try_clone().expect("clone caller socket");
    let caller_media = rtp_peer(caller_rtp, stop.clone(), rtp, false);
    play_rtp(&player, to);
    // Let the last echoes come home (bounded), then stop counting.
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let at_callee = callee_media.join().expect("callee RTP thread");
    let at_caller = caller_media.join().expect("caller RTP thread");

    caller.succeeded(&server);
    callee.succeeded(&server);

    eprintln!(
        "media through the server: callee got {} and caller got {} of {PACKETS} PCMU packets",
        at_callee.pcmu, at_caller.pcmu
    );
    let logged = std::fs::read_to_string(&caller_file).unwrap_or_default();
    let origin = |label: &str| -> Vec<String> {
        logged
            .lines()
            .filter_map(|l| l.strip_prefix(label))
            .map(|o| o.trim().to_owned())
            .filter(|o| !o.is_empty())
            .collect()
    };
    if let Some(final_o) = origin("final_o ").first() {
        eprintln!("answer origin: 18x {:?}, 200 {final_o}", origin("early_o "));
        for early in origin("early_o ") {
            assert_eq!(
                &early, final_o,
                "the 18x and the 200 must carry the same answer"
            );
        }
    }
    let offers = sdp_lines(&callee_file, "offer");
    let offer = offers.first().expect("callee logged the relayed offer");
    assert_anchored(&server, "INVITE to the callee", offer, caller_port);
    assert!(
        at_callee.foreign.is_empty() && at_caller.foreign.is_empty(),
        "RTP bypassed the server: callee got from {:?}, caller got from {:?}",
        at_callee.foreign,
        at_caller.foreign
    );
    assert!(
        at_callee.pcmu >= MIN_RELAYED,
        "callee got {} of {PACKETS} PCMU packets relayed by the server",
        at_callee.pcmu
    );
    assert!(
        at_caller.pcmu >= MIN_RELAYED,
        "caller got {} of {PACKETS} echoed PCMU packets back through the server",
        at_caller.pcmu
    );
}

/// Linphone with SRTP mandatory calls a plain phone: 488 with a Warning, the callee is never
/// rung. Never an answered call where both ends hear silence (issue 11, item 8).
#[test]
fn srtp_only_offer_is_refused_with_488_and_a_warning() {
    let Some(server) = setup() else { return };
    if server.target != Target::Switchboard {
        return eprintln!("NOTICE: SRTP refusal is switchboard's rule, not the peer's");
    }
    register_callee(&server);
    SippRun::new(&server, "caller", "uac_srtp_488", CALLER_SIP, CALLER_MEDIA)
        .args(["-s", CALLEE])
        .authenticated_as(CALLER)
        .succeeds();
}

/// An offer with an SRTP stream and a plain one: the plain one is carried (media flows through
/// the server), the SRTP one rejected, and no key, ZRTP hash or feedback line reaches either
/// side; the 18x and 200 answers are the same.
#[test]
fn srtp_offer_with_a_plain_stream_is_carried_plain_without_keys() {
    if std::env::var("SIPP_TEST_PEER").is_ok_and(|p| p == "kamailio") {
        return eprintln!("NOTICE: SDP whitelist is switchboard's rule, not the peer's");
    }
    anchored_call_with("uac_call_srtp_fallback", &[]);
}

/// Caller scenario to `ext` that ends with a final response, no callee involved.
fn caller_only(scenario: &str, ext: &str) {
    let Some(server) = setup() else { return };
    SippRun::new(&server, "caller", scenario, CALLER_SIP, CALLER_MEDIA)
        .args(["-s", ext])
        .authenticated_as(CALLER)
        .succeeds();
}

/// Callee scenario `uas` answering caller scenario `uac`, both required to succeed.
fn call_pair(uas: &str, uac: &str) {
    let Some(server) = setup() else { return };
    register_callee(&server);
    let mut callee = start_callee(&server, uas, &[]);
    SippRun::new(&server, "caller", uac, CALLER_SIP, CALLER_MEDIA)
        .args(["-s", CALLEE])
        .authenticated_as(CALLER)
        .succeeds();
    callee.succeeded(&server);
}

#[test]
fn options_is_answered_200_with_allow_accept_supported() {
    let Some(server) = setup() else { return };
    SippRun::new(&server, "options", "options", OTHER_SIP, OTHER_MEDIA).succeeds();
}

#[test]
fn register_is_challenged_then_accepted_with_right_password() {
    let Some(server) = setup() else { return };
    register_callee(&server);
    match server.metric("switchboard_registrations") {
        Some(n) => assert!(n >= 1.0, "switchboard_registrations = {n} after a REGISTER"),
        None if server.target == Target::Switchboard => {
            eprintln!("NOTICE: /metrics has no switchboard_registrations gauge")
        }
        None => {}
    }
}

#[test]
fn register_with_wrong_password_is_rejected() {
    let Some(server) = setup() else { return };
    SippRun::new(
        &server,
        "register-bad",
        "register_bad_password",
        OTHER_SIP,
        OTHER_MEDIA,
    )
    .args(["-s", CALLEE, "-au", CALLEE, "-ap", "not-the-password"])
    .succeeds();
    if let Some(n) = server.metric("switchboard_registrations") {
        assert_eq!(n, 0.0, "a rejected REGISTER must not create a binding");
    }
}

#[test]
fn call_over_udp_is_answered_and_media_flows_through_the_server() {
    anchored_call(&[]);
}

#[test]
fn call_from_tcp_caller_is_answered_and_media_flows_through_the_server() {
    anchored_call(&["-t", "t1"]);
}

#[test]
fn cancel_while_ringing_gets_487() {
    call_pair("uas_ring_no_answer", "uac_cancel");
}

#[test]
fn invite_to_unknown_extension_gets_404() {
    caller_only("uac_404", UNKNOWN);
}

#[test]
fn invite_to_unregistered_extension_gets_480() {
    caller_only("uac_480", UNREGISTERED);
}

#[test]
fn callee_busy_486_is_relayed_to_caller() {
    call_pair("uas_busy", "uac_busy");
}

#[test]
fn callee_bye_is_relayed_to_caller() {
    call_pair("uas_bye", "uac_callee_hangs_up");
}

#[test]
fn reinvite_hold_and_resume_are_relayed_with_anchored_sdp() {
    let Some(server) = setup() else { return };
    register_callee(&server);
    let caller_rtp = UdpSocket::bind("127.0.0.1:0").expect("caller RTP socket");
    let callee_rtp = UdpSocket::bind("127.0.0.1:0").expect("callee RTP socket");
    let caller_port = caller_rtp.local_addr().expect("addr").port();
    let callee_port = callee_rtp.local_addr().expect("addr").port();
    let caller_file = server.dir.path().join("caller-media.txt");
    let callee_file = server.dir.path().join("callee-media.txt");
    let mut callee = start_callee(
        &server,
        "uas_reinvite",
        &[
            "-key".into(),
            "callee_rtp".into(),
            callee_port.to_string(),
            "-set".into(),
            "media_file".into(),
            callee_file.display().to_string(),
        ],
    );
    SippRun::new(
        &server,
        "caller",
        "uac_reinvite_hold",
        CALLER_SIP,
        CALLER_MEDIA,
    )
    .args(["-s", CALLEE])
    .authenticated_as(CALLER)
    .args(["-key", "caller_rtp", &caller_port.to_string()])
    .args(["-set", "media_file", &caller_file.display().to_string()])
    .succeeds();
    callee.succeeded(&server);
    for label in ["answer", "hold", "resume"] {
        let seen = sdp_lines(&caller_file, label);
        let seen = seen
            .first()
            .unwrap_or_else(|| panic!("caller logged no '{label}' 200 OK SDP"));
        assert_anchored(
            &server,
            &format!("{label} 200 OK to the caller"),
            seen,
            callee_port,
        );
    }
    for label in ["offer", "hold-offer", "resume-offer"] {
        let seen = sdp_lines(&callee_file, label);
        let seen = seen
            .first()
            .unwrap_or_else(|| panic!("callee logged no '{label}' INVITE SDP"));
        assert_anchored(
            &server,
            &format!("{label} INVITE to the callee"),
            seen,
            caller_port,
        );
    }
    drop((caller_rtp, callee_rtp));
}

#[test]
fn ulaw_encoder_matches_g711_reference_points() {
    // Reference values of ITU-T G.711 µ-law: 0 -> 0xFF, max positive -> 0x80, max negative -> 0x00.
    assert_eq!(linear_to_ulaw(0), 0xff);
    assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
    assert_eq!(linear_to_ulaw(i16::MIN + 1), 0x00);
    assert_eq!(linear_to_ulaw(-1), 0x7f);
}
