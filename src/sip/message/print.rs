//! The printer: [`Request`]/[`Response`] to wire bytes, and `Display` for URIs, name-addrs,
//! Via values and parameters (RFC 3261 §7, §19.1, §20, §25.1).
//!
//! Headers are printed as stored, one `Name: value` line each, so `parse(print(m)) == m` for
//! every message the parser accepts. CR and LF inside stored values are printed as SP: a value
//! built by code can never inject a header line.

use std::fmt::{self, Write};

use super::header::{NameAddr, Via};
use super::uri::{Param, SipUri, Uri};
use super::{Headers, Request, Response};

pub(super) fn request(r: &Request) -> Vec<u8> {
    let mut s = String::with_capacity(head_size(&r.headers) + 64);
    // Writing into a String cannot fail.
    let _ = write!(s, "{} {} SIP/2.0\r\n", r.method, r.uri);
    finish(s, &r.headers, &r.body)
}

pub(super) fn response(r: &Response) -> Vec<u8> {
    let mut s = String::with_capacity(head_size(&r.headers) + 32 + r.reason.len());
    let _ = write!(s, "SIP/2.0 {} ", r.status.0);
    push_clean(&mut s, &r.reason);
    s.push_str("\r\n");
    finish(s, &r.headers, &r.body)
}

fn head_size(h: &Headers) -> usize {
    h.iter()
        .map(|h| h.name.as_str().len() + h.value.len() + 4)
        .sum::<usize>()
        + 2
}

fn finish(mut s: String, headers: &Headers, body: &[u8]) -> Vec<u8> {
    for h in headers.iter() {
        push_clean(&mut s, h.name.as_str());
        s.push_str(": ");
        push_clean(&mut s, &h.value);
        s.push_str("\r\n");
    }
    s.push_str("\r\n");
    let mut out = s.into_bytes();
    out.extend_from_slice(body);
    out
}

/// Appends `v`, with CR and LF turned into SP.
fn push_clean(s: &mut String, v: &str) {
    if has_cr_or_lf(v.as_bytes()) {
        s.extend(
            v.chars()
                .map(|c| if c == '\r' || c == '\n' { ' ' } else { c }),
        );
    } else {
        s.push_str(v);
    }
}

/// Eight bytes at a time (SWAR): header values are short, so memchr's setup would dominate
/// and a byte loop is several instructions per byte.
fn has_cr_or_lf(b: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    const CR: u64 = u64::from_ne_bytes([b'\r'; 8]);
    const LF: u64 = u64::from_ne_bytes([b'\n'; 8]);
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH != 0;
    let (chunks, tail) = b.as_chunks::<8>();
    chunks.iter().any(|c| {
        let x = u64::from_ne_bytes(*c);
        has_zero(x ^ CR) | has_zero(x ^ LF)
    }) || tail.iter().any(|&c| c == b'\r' || c == b'\n')
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Sip(u) => u.fmt(f),
            Uri::Other { scheme, rest } => write!(f, "{scheme}:{rest}"),
        }
    }
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.secure { "sips:" } else { "sip:" })?;
        if let Some(user) = &self.user {
            f.write_str(user)?;
            if let Some(pw) = &self.password {
                f.write_char(':')?;
                f.write_str(pw)?;
            }
            f.write_char('@')?;
        }
        write!(f, "{}", self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        for p in &self.params {
            p.fmt(f)?;
        }
        for (i, (name, value)) in self.headers.iter().enumerate() {
            f.write_char(if i == 0 { '?' } else { '&' })?;
            f.write_str(name)?;
            f.write_char('=')?;
            f.write_str(value)?;
        }
        Ok(())
    }
}

impl fmt::Display for NameAddr {
    /// Always prints the `<uri>` form (with the display name quoted when present).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(display) = &self.display {
            f.write_char('"')?;
            for c in display.chars() {
                match c {
                    '"' | '\\' => {
                        f.write_char('\\')?;
                        f.write_char(c)?;
                    }
                    '\r' | '\n' => f.write_char(' ')?,
                    _ => f.write_char(c)?,
                }
            }
            f.write_str("\" ")?;
        }
        write!(f, "<{}>", self.uri)?;
        for p in &self.params {
            p.fmt(f)?;
        }
        Ok(())
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} {}", self.protocol, self.transport, self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        for p in &self.params {
            p.fmt(f)?;
        }
        Ok(())
    }
}

impl fmt::Display for Param {
    /// `;name` or `;name=value` (value printed as stored, quoted if it was quoted).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char(';')?;
        f.write_str(&self.name)?;
        if let Some(v) = &self.value {
            f.write_char('=')?;
            f.write_str(v)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Framing, Message, Method, StatusCode, parse};
    use super::*;
    use crate::sip::message::Host;

    #[test]
    fn request_prints_start_line_headers_and_body() {
        let mut r = Request::new(
            Method::Options,
            Uri::Sip(SipUri::new(
                Some("bob"),
                Host::Domain("example.com".into()),
                Some(5060),
            )),
        );
        r.headers.push("Via", "SIP/2.0/UDP h;branch=z9hG4bK1");
        r.set_body(Some("text/plain"), bytes::Bytes::from_static(b"hi"));
        assert_eq!(
            r.to_bytes(),
            b"OPTIONS sip:bob@example.com:5060 SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
        );
    }

    #[test]
    fn response_keeps_the_space_before_an_empty_reason() {
        let r = Response {
            status: StatusCode::TRYING,
            reason: String::new(),
            headers: Headers::default(),
            body: bytes::Bytes::new(),
        };
        assert_eq!(r.to_bytes(), b"SIP/2.0 100 \r\n\r\n");
    }

    #[test]
    fn cr_lf_detection_finds_them_anywhere() {
        assert!(!has_cr_or_lf(
            b"SIP/2.0/UDP host;branch=z9hG4bK1 plus some more text"
        ));
        for i in 0..40 {
            let mut v = vec![b'a'; 40];
            v[i] = b'\r';
            assert!(has_cr_or_lf(&v), "CR at {i}");
            v[i] = b'\n';
            assert!(has_cr_or_lf(&v), "LF at {i}");
            v[i] = 0x8d;
            assert!(!has_cr_or_lf(&v), "0x8d at {i}");
        }
    }

    #[test]
    fn header_values_cannot_inject_lines() {
        let mut r = Request::new(
            Method::Bye,
            Uri::Other {
                scheme: "tel".into(),
                rest: "1".into(),
            },
        );
        r.headers.push("Subject", "a\r\nVia: evil");
        let bytes = r.to_bytes();
        assert!(bytes.windows(9).all(|w| w != b"\r\nVia: ev"));
    }

    #[test]
    fn name_addr_display_quotes_and_escapes() {
        let n = NameAddr::parse("A \"B\" <sip:a@b>;tag=1").ok();
        assert!(
            n.is_none(),
            "quotes inside an unquoted display name are invalid"
        );
        let n = NameAddr::parse("\"A \\\"B\\\\\" <sip:a@b;lr>;tag=1").expect("valid");
        assert_eq!(n.to_string(), "\"A \\\"B\\\\\" <sip:a@b;lr>;tag=1");
        let n = NameAddr::parse("sip:a@b;tag=1").expect("addr-spec");
        assert_eq!(n.to_string(), "<sip:a@b>;tag=1");
        assert_eq!(NameAddr::parse(&n.to_string()), Ok(n));
    }

    #[test]
    fn via_display_round_trips() {
        let v = Via::parse("SIP / 2.0 / udp  [2001:db8::1] : 5060 ; branch = z9hG4bK1 ; rport")
            .expect("via");
        assert_eq!(
            v.to_string(),
            "SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK1;rport"
        );
        assert_eq!(Via::parse(&v.to_string()), Ok(v));
    }

    #[test]
    fn printed_message_reparses_equal() {
        let raw = b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/TCP b\r\n\
To: <sip:b@x>;tag=9\r\nFrom: \"A\" <sip:a@x>;tag=1\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
Content-Length: 0\r\n\r\n";
        let (m, _) = parse(raw, Framing::Datagram).expect("valid");
        let printed = m.to_bytes();
        let (again, used) = parse(&printed, Framing::Stream).expect("reparse");
        assert_eq!(used, printed.len());
        assert_eq!(again, m);
        assert!(matches!(m, Message::Response(ref r) if r.headers.get_all("Via").count() == 2));
    }
}
