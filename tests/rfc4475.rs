//! RFC 4475 torture messages against `sip::message`: every verdict of
//! `tests/data/rfc4475/CASES.tsv` (parsed as a UDP datagram), print → re-parse stability for
//! the parsed ones, and the stateless `check_request` outcomes of RFC 4475 §3.3.

use std::path::PathBuf;

use switchboard::sip::message::{
    Framing, Message, Method, ParseError, StatusCode, Uri, check_request, parse,
};

fn dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/rfc4475"))
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// (file, section, verdict) for every row of CASES.tsv.
fn cases() -> Vec<(String, String, String)> {
    let tsv = std::fs::read_to_string(dir().join("CASES.tsv")).expect("CASES.tsv");
    tsv.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            assert!(cols.len() >= 4, "bad row {l:?}");
            (cols[0].to_owned(), cols[1].to_owned(), cols[3].to_owned())
        })
        .collect()
}

fn parsed(name: &str) -> Message {
    match parse(&read(name), Framing::Datagram) {
        Ok((m, _)) => m,
        Err(e) => panic!("{name}: {e:?}"),
    }
}

fn request(name: &str) -> switchboard::sip::message::Request {
    match parsed(name) {
        Message::Request(r) => r,
        Message::Response(_) => panic!("{name}: a response"),
    }
}

#[test]
fn all_fifty_messages_get_their_verdict() {
    let cases = cases();
    assert_eq!(cases.len(), 50);
    let mut wrong = Vec::new();
    for (file, section, verdict) in &cases {
        let bytes = read(file);
        let is_response = bytes.starts_with(b"SIP/");
        match (verdict.as_str(), parse(&bytes, Framing::Datagram)) {
            ("parse", Ok(_)) => {}
            ("reject", Err(ParseError::Invalid(inv))) => {
                if inv.is_request == is_response {
                    wrong.push(format!(
                        "{file} ({section}): is_request = {}",
                        inv.is_request
                    ));
                }
                if inv.is_request && inv.salvage.is_none() {
                    wrong.push(format!("{file} ({section}): no salvage"));
                }
            }
            (v, got) => wrong.push(format!("{file} ({section}): expected {v}, got {got:?}")),
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong verdicts:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn parsed_messages_print_and_reparse_equal() {
    for (file, _, verdict) in cases() {
        if verdict != "parse" {
            continue;
        }
        let m = parsed(&file);
        let printed = m.to_bytes();
        let again = match parse(&printed, Framing::Datagram) {
            Ok((again, _)) => again,
            Err(e) => panic!("{file}: printed form does not parse: {e:?}"),
        };
        assert_eq!(again, m, "{file}: print/parse not stable");
        assert_eq!(again.to_bytes(), printed, "{file}: printing not idempotent");
    }
}

#[test]
fn check_request_rejects_insufficient_and_duplicated_headers_with_400() {
    for file in ["TC_INSUF_I.dat", "TC_MULTI01_I.dat", "TC_MCL01_I.dat"] {
        let err = check_request(&request(file)).expect_err(file);
        assert_eq!(err.status, StatusCode::BAD_REQUEST, "{file}");
        assert!(err.is_request);
        assert!(
            err.salvage.is_some_and(|s| !s.via.is_empty()),
            "{file}: salvage"
        );
    }
}

#[test]
fn check_request_accepts_ordinary_valid_requests() {
    for file in [
        "TC_WSINV.dat",
        "TC_INTMETH.dat",
        "TC_ESC01_V.dat",
        "TC_LONGREQ_V.dat",
        "TC_DBLREQ.dat",
        "TC_MPART01.dat",
        "TC_INV2543_I.dat",
        "TC_ZEROMF_V.dat",
        "TC_CPARAM01_V.dat",
        "TC_REGESCRT_V.dat",
    ] {
        assert_eq!(check_request(&request(file)), Ok(()), "{file}");
    }
}

#[test]
fn wsinv_values_are_unfolded_and_typed() {
    let r = request("TC_WSINV.dat");
    let h = &r.headers;
    assert_eq!(h.cseq().expect("cseq").seq, 9);
    assert_eq!(h.max_forwards(), Ok(Some(68)));
    assert_eq!(h.to().expect("to").tag(), Some("1918181833n"));
    let from = h.from().expect("from");
    assert_eq!(from.display.as_deref(), Some("J Rosenberg \\\""));
    assert_eq!(from.tag(), Some("98asjd8"));
    let vias = h.vias().expect("vias");
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[1].transport, "TCP");
    assert_eq!(vias[2].branch(), Some("z9hG4bK30239"));
    assert_eq!(
        h.get("NewFangledHeader"),
        Some("newfangled value continued newfangled value")
    );
    assert_eq!(h.get("Subject"), Some(""));
    let contact = h.contacts().expect("contacts");
    assert_eq!(contact.len(), 1);
    assert_eq!(r.body.len(), 150);
}

#[test]
fn extension_and_escaped_methods_are_kept_verbatim() {
    assert_eq!(
        request("TC_INTMETH.dat").method,
        Method::Other("!interesting-Method0123456789_*+`.%indeed'~".into())
    );
    assert_eq!(
        request("TC_ESC02_V.dat").method,
        Method::Other("RE%47IST%45R".into())
    );
}

#[test]
fn escnull_keeps_two_distinct_contacts_and_the_escaped_user() {
    let r = request("TC_ESCNULL_V.dat");
    let contacts = r.headers.contacts().expect("contacts");
    assert_eq!(contacts.len(), 2);
    assert_ne!(contacts[0], contacts[1]);
    let to = r.headers.to().expect("to");
    assert_eq!(
        to.uri.as_sip().and_then(|u| u.user.as_deref()),
        Some("null-%00-null")
    );
}

#[test]
fn dblreq_yields_only_the_first_request() {
    let bytes = read("TC_DBLREQ.dat");
    let (m, used) = parse(&bytes, Framing::Datagram).expect("first");
    assert!(matches!(&m, Message::Request(r) if r.method == Method::Register && r.body.is_empty()));
    assert!(used < bytes.len());
}

#[test]
fn unknown_schemes_parse_as_other_uris() {
    assert!(matches!(request("TC_UNKSCM_V.dat").uri, Uri::Other { .. }));
    assert_eq!(request("TC_NOVELSC_V.dat").uri.scheme(), "soap.beep");
    let r = request("TC_UNKSM2_V.dat");
    assert_eq!(r.headers.to().expect("to").uri.scheme(), "isbn");
}

#[test]
fn contact_params_go_where_the_brackets_say() {
    let c01 = request("TC_CPARAM01_V.dat")
        .headers
        .name_addrs("Contact")
        .expect("c");
    assert_eq!(c01[0].param("unknownparam"), Some(None));
    assert!(c01[0].uri.as_sip().is_some_and(|u| u.params.is_empty()));
    let c02 = request("TC_CPARAM02_V.dat")
        .headers
        .name_addrs("Contact")
        .expect("c");
    assert!(c02[0].params.is_empty());
    assert_eq!(
        c02[0].uri.as_sip().and_then(|u| u.param("unknownparam")),
        Some(None)
    );
    let esc = request("TC_REGESCRT_V.dat")
        .headers
        .name_addrs("Contact")
        .expect("c");
    assert_eq!(
        esc[0].uri.as_sip().map(|u| u.headers.clone()),
        Some(vec![(
            "Route".to_owned(),
            "%3Csip:sip.example.com%3E".to_owned()
        )])
    );
}

#[test]
fn rejections_carry_the_status_the_rfc_describes() {
    let status = |f: &str| match parse(&read(f), Framing::Datagram) {
        Err(ParseError::Invalid(i)) => i.status,
        other => panic!("{f}: {other:?}"),
    };
    assert_eq!(
        status("TC_BADVERS_V.dat"),
        StatusCode::VERSION_NOT_SUPPORTED
    );
    assert_eq!(status("TC_MISMATCH01_V.dat"), StatusCode::BAD_REQUEST);
    assert_eq!(status("TC_MISMATCH02_V.dat"), StatusCode::NOT_IMPLEMENTED);
    assert_eq!(status("TC_SCALAR02_V.dat"), StatusCode::BAD_REQUEST);
    assert_eq!(status("TC_CLERR_I.dat"), StatusCode::BAD_REQUEST);
}

#[test]
fn stream_framing_waits_for_a_short_body_and_rejects_a_negative_length() {
    assert_eq!(
        parse(&read("TC_CLERR_I.dat"), Framing::Stream),
        Err(ParseError::Incomplete)
    );
    assert!(matches!(
        parse(&read("TC_NCL_I.dat"), Framing::Stream),
        Err(ParseError::Invalid(_))
    ));
    assert!(matches!(
        parse(&read("TC_MCL01_I.dat"), Framing::Stream),
        Err(ParseError::Invalid(_))
    ));
}

#[test]
fn every_prefix_of_every_vector_is_safe_on_a_stream() {
    for (file, _, _) in cases() {
        let bytes = read(&file);
        for n in 0..bytes.len() {
            let _ = parse(&bytes[..n], Framing::Stream);
            let _ = parse(&bytes[..n], Framing::Datagram);
        }
    }
}
