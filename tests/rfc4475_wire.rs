//! Every RFC 4475 torture message sent over UDP to a running server gets the outcome that
//! `tests/data/rfc4475/CASES.tsv` names, and the server keeps answering OPTIONS.

mod common;

use common::{GUARD, TestServer, Ua};
use switchboard::sip::message::Message;

/// What the server must do with one message.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Exactly this status.
    Code(u16),
    /// One of these statuses.
    OneOf(&'static [u16]),
    /// Some final response other than 400 ("processed normally").
    Processed,
    /// Either a 400 or normal processing: any final response.
    Any,
    /// No response at all (responses that match no transaction).
    Nothing,
    /// Either a 400 or nothing.
    BadOrNothing,
}

const CASES: &[(&str, Expect)] = &[
    ("TC_WSINV.dat", Expect::Processed),
    ("TC_INTMETH.dat", Expect::Code(501)),
    ("TC_ESC01_V.dat", Expect::Processed),
    ("TC_ESCNULL_V.dat", Expect::Code(401)),
    ("TC_ESC02_V.dat", Expect::Code(501)),
    ("TC_LWSDISP_V.dat", Expect::Processed),
    ("TC_LONGREQ_V.dat", Expect::Processed),
    ("TC_DBLREQ.dat", Expect::Code(401)),
    ("TC_SEMIURI_V.dat", Expect::Processed),
    ("TC_TRANSPORTS_V.dat", Expect::Processed),
    ("TC_MPART01.dat", Expect::Processed),
    ("TC_UNREASON_V.dat", Expect::Nothing),
    ("TC_NOREASON_V.dat", Expect::Nothing),
    ("TC_BADINV01_I.dat", Expect::Code(400)),
    ("TC_CLERR_I.dat", Expect::Code(400)),
    ("TC_NCL_I.dat", Expect::Code(400)),
    ("TC_SCALAR02_V.dat", Expect::Code(400)),
    ("TC_SCALARLG_V.dat", Expect::Nothing),
    ("TC_QUOTBAL_I.dat", Expect::Any),
    ("TC_LTGTRURI_I.dat", Expect::Any),
    ("TC_LWSRURI_I.dat", Expect::Any),
    ("TC_LWSSTART_V.dat", Expect::Any),
    ("TC_TRWS_I.dat", Expect::Any),
    ("TC_ESCRURI_V.dat", Expect::Any),
    ("TC_BADDATE_V.dat", Expect::Any),
    ("TC_REGBADCT_I.dat", Expect::OneOf(&[400, 401])),
    ("TC_BADASPEC_I.dat", Expect::Any),
    ("TC_BADDN_I.dat", Expect::Any),
    ("TC_BADVERS_V.dat", Expect::Code(505)),
    ("TC_MISMATCH01_V.dat", Expect::Code(400)),
    ("TC_MISMATCH02_V.dat", Expect::OneOf(&[501, 400])),
    ("TC_BIGCODE_V.dat", Expect::Nothing),
    ("TC_BADBRANCH_V.dat", Expect::OneOf(&[400, 200])),
    ("TC_INSUF_I.dat", Expect::Code(400)),
    ("TC_UNKSCM_V.dat", Expect::Code(416)),
    ("TC_NOVELSC_V.dat", Expect::Code(416)),
    ("TC_UNKSM2_V.dat", Expect::OneOf(&[400, 401])),
    ("TC_BEXT01_V.dat", Expect::Code(420)),
    ("TC_INVUT_V.dat", Expect::OneOf(&[415, 407])),
    ("TC_REGAUT01_V.dat", Expect::Code(401)),
    ("TC_MULTI01_I.dat", Expect::Code(400)),
    ("TC_MCL01_I.dat", Expect::Code(400)),
    ("TC_BCAST_V.dat", Expect::Nothing),
    ("TC_ZEROMF_V.dat", Expect::Code(200)),
    ("TC_CPARAM01_V.dat", Expect::Code(401)),
    ("TC_CPARAM02_V.dat", Expect::Code(401)),
    ("TC_REGESCRT_V.dat", Expect::Code(401)),
    ("TC_SDP01_V.dat", Expect::OneOf(&[406, 400, 407])),
    ("TC_INV2543_I.dat", Expect::OneOf(&[401, 407])),
    ("TC_TEST_I.dat", Expect::BadOrNothing),
];

fn data(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/rfc4475/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Sends an OPTIONS with a unique Call-ID and returns every message received before its 200.
/// The endpoint handles datagrams in order, so a stateless answer to an earlier datagram would
/// have arrived first.
async fn barrier(ua: &Ua, n: usize) -> Vec<Message> {
    let call_id = format!("barrier-{n}");
    ua.send_text(&format!(
        "OPTIONS sip:switchboard@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP {{addr}};branch=z9hG4bKbar{n};rport\nMax-Forwards: 70\nFrom: <sip:probe@127.0.0.1>;tag=b{n}\nTo: <sip:switchboard@127.0.0.1>\nCall-ID: {call_id}\nCSeq: 1 OPTIONS\nContent-Length: 0\n\n"
    ))
    .await;
    let mut before = Vec::new();
    loop {
        let msg = ua.recv().await;
        if let Message::Response(r) = &msg
            && r.headers.get("Call-ID") == Some(call_id.as_str())
        {
            assert_eq!(r.status.0, 200, "OPTIONS answered 200");
            return before;
        }
        before.push(msg);
    }
}

fn finals(msgs: &[Message]) -> Vec<u16> {
    msgs.iter()
        .filter_map(|m| match m {
            Message::Response(r) if r.status.0 >= 200 => Some(r.status.0),
            _ => None,
        })
        .collect()
}

/// Several messages share a branch and sent-by (TC_UNKSCM_V and TC_NOVELSC_V), which makes the
/// later one a retransmission of the earlier transaction (RFC 3261 §17.2.3). So each message's
/// outcome is checked on a fresh server; the test below sends all of them to one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_torture_message_gets_its_rfc4475_outcome() {
    let listed: Vec<String> = std::fs::read_to_string(format!(
        "{}/tests/data/rfc4475/CASES.tsv",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("CASES.tsv")
    .lines()
    .skip(1)
    .filter_map(|l| l.split('\t').next().map(str::to_owned))
    .collect();
    assert_eq!(
        listed.len(),
        CASES.len(),
        "one expectation per CASES.tsv row"
    );
    let mut failures = Vec::new();
    for (n, (name, expect)) in CASES.iter().enumerate() {
        assert!(listed.iter().any(|l| l == name), "{name} is in CASES.tsv");
        let server = TestServer::start(|_| {}).await;
        let ua = Ua::new(server.sip_udp).await;
        ua.send(&data(name)).await;
        let got = match expect {
            Expect::Nothing | Expect::BadOrNothing => finals(&barrier(&ua, n).await),
            _ => {
                let first = loop {
                    match tokio::time::timeout(GUARD, ua.recv()).await {
                        Ok(Message::Response(r)) if r.status.0 >= 200 => break Some(r),
                        Ok(_) => continue,
                        Err(_) => break None,
                    }
                };
                if let Some(r) = &first
                    && matches!(expect, Expect::Code(420))
                {
                    assert!(
                        r.headers.get("Unsupported").is_some(),
                        "{name}: 420 lists Unsupported"
                    );
                }
                first.map(|r| vec![r.status.0]).unwrap_or_default()
            }
        };
        let ok = match expect {
            Expect::Code(c) => got == [*c],
            Expect::OneOf(cs) => got.len() == 1 && cs.contains(&got[0]),
            Expect::Processed => got.len() == 1 && got[0] != 400,
            Expect::Any => got.len() == 1,
            Expect::Nothing => got.is_empty(),
            Expect::BadOrNothing => got.is_empty() || got == [400],
        };
        if !ok {
            failures.push(format!("{name}: expected {expect:?}, got {got:?}"));
        }
        server.stop().await;
    }
    assert!(
        failures.is_empty(),
        "RFC 4475 outcomes:\n{}",
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_server_survives_all_torture_messages_and_keeps_answering_options() {
    let server = TestServer::start(|_| {}).await;
    let ua = Ua::new(server.sip_udp).await;
    for (name, _) in CASES {
        ua.send(&data(name)).await;
    }
    let probe = Ua::new(server.sip_udp).await;
    let before = barrier(&probe, 9999).await;
    assert!(before.is_empty(), "the probe only sees its own answer");
    server.stop().await;
}
