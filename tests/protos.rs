//! Replays the PROTOS c07-sip suite (4,527 malformed INVITEs, each followed by its teardown)
//! over UDP against an in-process server, checking after every case that the server still
//! answers OPTIONS. The cases are GPLv2 and are read from `../shared` at test time, never copied
//! into this project (see `../shared/conformance/protos-c07-sip/SOURCE.md`).

mod common;

use std::path::PathBuf;

use common::{TestServer, Ua};
use switchboard::sip::message::Message;

fn cases_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/conformance/protos-c07-sip/cases"
    ))
}

/// Splits a case file into its messages: each is `<length> <bytes>`.
fn messages(raw: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = raw;
    while !rest.is_empty() {
        let Some(space) = rest.iter().position(|&b| b == b' ') else {
            break;
        };
        let Some(len) = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
        else {
            break;
        };
        let start = space + 1;
        let end = (start + len).min(rest.len());
        out.push(rest[start..end].to_vec());
        rest = &rest[end..];
    }
    out
}

fn replace(hay: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

/// Fills the runner's placeholders (SOURCE.md); Content-Length is the filled body's length.
fn fill(template: &[u8], n: usize, port: u16) -> Vec<u8> {
    let mut m = template.to_vec();
    for (k, v) in [
        ("<To>", "1002@127.0.0.1".to_owned()),
        ("<From>", "protos@127.0.0.1".to_owned()),
        ("<From-Address>", "127.0.0.1".to_owned()),
        ("<From-IP>", "127.0.0.1".to_owned()),
        ("<Local-Port>", port.to_string()),
        ("<Branch-ID>", format!("p{n}")),
        ("<Call-ID>", format!("protos-{n}")),
        ("<CSeq>", "1".to_owned()),
        ("<Teardown-Method>", "CANCEL".to_owned()),
    ] {
        m = replace(&m, k.as_bytes(), v.as_bytes());
    }
    let body_len = m
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| m.len() - p - 4)
        .unwrap_or(0);
    replace(&m, b"<Content-Length>", body_len.to_string().as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_survives_every_protos_case_and_keeps_answering_options() {
    let dir = cases_dir();
    if !dir.is_dir() {
        eprintln!(
            "notice: {} is absent (a user's clone without ../shared): PROTOS replay skipped",
            dir.display()
        );
        return;
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("cases")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    assert!(
        files.len() >= 4000,
        "the PROTOS suite has 4,527 cases, found {}",
        files.len()
    );
    let server = TestServer::start(|_| {}).await;
    let attacker = Ua::new(server.sip_udp).await;
    let probe = Ua::new(server.sip_udp).await;
    let port = attacker.addr().port();
    let mut sent = 0;
    for (n, path) in files.iter().enumerate() {
        let raw = std::fs::read(path).expect("case");
        for m in messages(&raw) {
            let mut bytes = fill(&m, n, port);
            // A few cases exceed the largest UDP datagram: send what fits.
            bytes.truncate(65_507);
            attacker.send(&bytes).await;
            sent += 1;
        }
        if n % 10 == 0 || n + 1 == files.len() {
            // The server still answers a valid OPTIONS.
            let call_id = format!("alive-{n}");
            probe
                .send_text(&format!(
                    "OPTIONS sip:switchboard@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP {{addr}};branch=z9hG4bKalive{n};rport\nMax-Forwards: 70\nFrom: <sip:probe@127.0.0.1>;tag=al{n}\nTo: <sip:switchboard@127.0.0.1>\nCall-ID: {call_id}\nCSeq: 1 OPTIONS\nContent-Length: 0\n\n"
                ))
                .await;
            loop {
                if let Message::Response(r) = probe.recv().await
                    && r.headers.get("Call-ID") == Some(call_id.as_str())
                {
                    assert_eq!(r.status.0, 200, "alive after case {}", path.display());
                    break;
                }
            }
        }
    }
    assert!(sent >= files.len(), "every case sent");
    server.stop().await;
}
