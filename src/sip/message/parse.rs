//! The parser: bytes to [`Message`] (RFC 3261 §7, §18.3, §19.1, §20, §25; RFC 4475 §3.1.2).
//!
//! One pass over the header section, no regex, no per-byte allocation: the message is split in
//! lines at LF (a CR before it is dropped, so bare-LF senders are tolerated), folded lines are
//! joined with one SP, header names are canonicalised with a first-letter table, list-valued
//! headers are split at top-level commas, and the headers RFC 4475 §3.1.2 cares about are
//! validated with the typed parsers below (which also serve [`Via::parse`] & co.).
//!
//! Character set policy: the start line and header names must be ASCII; header values and the
//! reason phrase are UTF-8 (RFC 3261 `TEXT-UTF8`), and bytes that are not valid UTF-8 are
//! replaced with U+FFFD (lossy) rather than rejected, so a legacy phone sending a Latin-1
//! display name still gets its call through. A replaced byte in a header that is validated
//! (Via, From, To, Call-ID, CSeq, ...) makes that header's grammar fail, hence `Invalid`.
//! Bodies are never decoded.

use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::Bytes;

use super::header::{CSeq, HeaderError, NameAddr, Via, known_name};
use super::uri::{Host, Param, SipUri, Uri};
use super::{
    Framing, Header, HeaderName, Headers, Invalid, MAX_HEADERS, MAX_LINE_LEN, MAX_MESSAGE_SIZE,
    Message, Method, ParseError, Request, Response, Salvage, StatusCode,
};

/// Parses one message from the front of `buf`; returns it and the bytes consumed.
///
/// `consumed` counts the leading CRLFs skipped, the header section and the body as framed by
/// Content-Length (or the rest of the datagram when it is absent). On a datagram the octets
/// after it are ignored (RFC 4475 §3.1.1.8); on a stream they belong to the next message.
pub fn parse(buf: &[u8], framing: Framing) -> Result<(Message, usize), ParseError> {
    let skip = leading_crlf_len(buf);
    let rest = &buf[skip..];
    if rest.is_empty() {
        return match framing {
            Framing::Stream => Err(ParseError::Incomplete),
            Framing::Datagram => Err(invalid(400, "empty message".into(), false, None)),
        };
    }
    let is_request = looks_like_request(rest);
    let scan_limit = rest.len().min(MAX_MESSAGE_SIZE);
    let (head_len, body_start) = match scan_head(&rest[..scan_limit]) {
        Head::Complete {
            head_len,
            body_start,
        } => (head_len, body_start),
        Head::LineTooLong => {
            return Err(fail_at(rest, is_request, Fail::new(400, "line too long")));
        }
        Head::Partial if rest.len() >= MAX_MESSAGE_SIZE => {
            return Err(fail_at(
                rest,
                is_request,
                Fail::new(413, "header section too large"),
            ));
        }
        Head::Partial => match framing {
            Framing::Stream => {
                // Reject a stream that can never become a message as soon as its first line
                // is complete, rather than buffering up to MAX_MESSAGE_SIZE of garbage.
                if let Some(nl) = memchr::memchr(b'\n', rest) {
                    let line = strip_cr(&rest[..nl]);
                    if let Err(f) = start_line(line) {
                        return Err(fail_at(rest, is_request, f));
                    }
                }
                return Err(ParseError::Incomplete);
            }
            // A datagram that ends without the empty line: its end ends the header section.
            Framing::Datagram => (rest.len(), rest.len()),
        },
    };
    let head = &rest[..head_len];
    // One UTF-8 pass over the whole header section (borrowed when valid, U+FFFD otherwise);
    // every later slice is cut at an ASCII delimiter, hence on a char boundary.
    let head_text = match std::str::from_utf8(head) {
        Ok(t) => std::borrow::Cow::Borrowed(t),
        Err(_) => String::from_utf8_lossy(head),
    };
    let (start, headers, content_length) =
        parse_head(&head_text, framing).map_err(|f| fail_at(head, is_request, f))?;

    let avail = rest.len() - body_start;
    let body_len = match (content_length, framing) {
        (Some(n), _) if n.saturating_add(body_start) > MAX_MESSAGE_SIZE => {
            return Err(fail_at(
                head,
                is_request,
                Fail::new(413, "message too large"),
            ));
        }
        (Some(n), Framing::Datagram) if n > avail => {
            return Err(fail_at(
                head,
                is_request,
                Fail::new(400, "Content-Length larger than the datagram"),
            ));
        }
        (Some(n), Framing::Stream) if n > avail => return Err(ParseError::Incomplete),
        (Some(n), _) => n,
        (None, Framing::Datagram) => avail,
        (None, Framing::Stream) => {
            return Err(fail_at(
                head,
                is_request,
                Fail::new(400, "Content-Length required on a stream transport"),
            ));
        }
    };
    if body_start + body_len > MAX_MESSAGE_SIZE {
        return Err(fail_at(
            head,
            is_request,
            Fail::new(413, "message too large"),
        ));
    }
    let body = Bytes::copy_from_slice(&rest[body_start..body_start + body_len]);
    let headers = Headers(headers);
    let msg = match start {
        Start::Request(method, uri) => Message::Request(Request {
            method,
            uri,
            headers,
            body,
        }),
        Start::Response(status, reason) => Message::Response(Response {
            status,
            reason,
            headers,
            body,
        }),
    };
    Ok((msg, skip + body_start + body_len))
}

/// Number of CR and LF octets before the start line (RFC 3261 §7.5: ignored). A stream
/// transport may drop them itself (keep-alive `CRLFCRLF`, RFC 5626 §3.5.1) to bound its buffer.
pub fn leading_crlf_len(buf: &[u8]) -> usize {
    buf.iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count()
}

/// Parses a URI (Request-URI or addr-spec): `sip:`/`sips:` into [`SipUri`], any other
/// absolute URI into [`Uri::Other`]. No surrounding whitespace or `<>` is accepted.
pub fn parse_uri(s: &str) -> Result<Uri, HeaderError> {
    uri_impl(s, true)
}

/// `keep: false` validates only: the result is hollow (empty strings, no parameters), so a
/// grammar check allocates nothing. `keep: true` builds the full value.
fn uri_impl(s: &str, keep: bool) -> Result<Uri, HeaderError> {
    const E: HeaderError = HeaderError::Invalid("URI");
    let b = s.as_bytes();
    let colon = b.iter().position(|&c| c == b':').ok_or(E)?;
    let scheme = &b[..colon];
    if scheme.first().is_none_or(|c| !c.is_ascii_alphabetic()) || !all(scheme, &SCHEME) {
        return Err(E);
    }
    let rest = &s[colon + 1..];
    if scheme.eq_ignore_ascii_case(b"sip") {
        sip_uri(rest, false, keep).map(Uri::Sip).ok_or(E)
    } else if scheme.eq_ignore_ascii_case(b"sips") {
        sip_uri(rest, true, keep).map(Uri::Sip).ok_or(E)
    } else if rest.is_empty() || !all(rest.as_bytes(), &URIC) {
        Err(E)
    } else {
        Ok(Uri::Other {
            scheme: own(&s[..colon], keep),
            rest: own(rest, keep),
        })
    }
}

/// Via (§20.42): `sent-protocol LWS sent-by *( SEMI via-params )`, LWS allowed around `/`,
/// `:`, `;` and `=`.
pub(super) fn via(value: &str) -> Result<Via, HeaderError> {
    via_impl(value, true)
}

fn via_impl(value: &str, keep: bool) -> Result<Via, HeaderError> {
    const E: HeaderError = HeaderError::Invalid("Via");
    let mut c = Cursor::new(value);
    c.sws();
    let name = c.take(&TOKEN);
    c.sws();
    if name.is_empty() || !c.eat(b'/') {
        return Err(E);
    }
    c.sws();
    let version = c.take(&TOKEN);
    c.sws();
    if version.is_empty() || !c.eat(b'/') {
        return Err(E);
    }
    c.sws();
    let transport = c.take(&TOKEN);
    if transport.is_empty() || c.sws() == 0 {
        return Err(E);
    }
    let (host, used) = parse_host(c.rest(), keep).ok_or(E)?;
    c.pos += used;
    let save = c.pos;
    c.sws();
    let port = if c.eat(b':') {
        c.sws();
        Some(parse_port(c.take_digits()).ok_or(E)?)
    } else {
        c.pos = save;
        None
    };
    let mut rport_ok = true;
    let params = c
        .header_params(keep, |name, value| {
            if name.eq_ignore_ascii_case("rport") && value.is_some_and(|v| parse_port(v).is_none())
            {
                rport_ok = false;
            }
        })
        .ok_or(E)?;
    c.sws();
    if !c.at_end() || !rport_ok {
        return Err(E);
    }
    if !keep {
        let (protocol, transport) = (String::new(), String::new());
        return Ok(Via {
            protocol,
            transport,
            host,
            port,
            params,
        });
    }
    let protocol = if name == "SIP" && version == "2.0" {
        "SIP/2.0".to_owned()
    } else {
        format!("{name}/{version}")
    };
    Ok(Via {
        protocol,
        transport: transport.to_ascii_uppercase(),
        host,
        port,
        params,
    })
}

/// name-addr or addr-spec with header parameters (§20.10, §20.20, §20.39, §25.1).
///
/// In the addr-spec form (no `<>`) the URI ends at the first `;` or whitespace and must not
/// contain `,` or `?` (§20: such URIs must be enclosed in `<>`, RFC 4475 §3.1.2.13). Inside
/// `<>` no whitespace is allowed (§3.1.2.14). An unquoted display name is a sequence of tokens
/// (§3.1.2.15); a quoted one must be terminated (§3.1.2.6).
pub(super) fn name_addr(value: &str) -> Result<NameAddr, HeaderError> {
    name_addr_impl(value, true)
}

fn name_addr_impl(value: &str, keep: bool) -> Result<NameAddr, HeaderError> {
    const E: HeaderError = HeaderError::Invalid("name-addr");
    let s = trim_ws(value);
    let b = s.as_bytes();
    let (display, uri, after) = if b.first() == Some(&b'"') {
        let end = quoted_end(b, 0).ok_or(E)?;
        let display = if keep {
            unescape_quoted(&s[1..end - 1])
        } else {
            String::new()
        };
        let rest = trim_start_ws(&s[end..]);
        let (uri, after) = angle_uri(rest, keep).ok_or(E)?;
        (Some(display), uri, after)
    } else if let Some(lt) = b.iter().position(|&c| c == b'<') {
        let display = trim_end_ws(&s[..lt]);
        if !display
            .bytes()
            .all(|c| TOKEN[c as usize] || c == b' ' || c == b'\t')
        {
            return Err(E);
        }
        let (uri, after) = angle_uri(&s[lt..], keep).ok_or(E)?;
        (
            if display.is_empty() {
                None
            } else {
                Some(own(display, keep))
            },
            uri,
            after,
        )
    } else {
        let end = b
            .iter()
            .position(|&c| matches!(c, b';' | b' ' | b'\t'))
            .unwrap_or(b.len());
        let spec = &s[..end];
        if spec.bytes().any(|c| matches!(c, b',' | b'?')) {
            return Err(E);
        }
        (None, uri_impl(spec, keep)?, &s[end..])
    };
    let mut c = Cursor::new(after);
    let params = c.header_params(keep, |_, _| {}).ok_or(E)?;
    c.sws();
    if !c.at_end() {
        return Err(E);
    }
    Ok(NameAddr {
        display,
        uri,
        params,
    })
}

/// CSeq (§20.16): `1*DIGIT LWS Method`; the number must fit in 32 bits (RFC 4475 §3.1.2.4).
pub(super) fn cseq(value: &str) -> Result<CSeq, HeaderError> {
    const E: HeaderError = HeaderError::Invalid("CSeq");
    let s = trim_ws(value);
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let seq = parse_u64(&s.as_bytes()[..digits])
        .and_then(|n| u32::try_from(n).ok())
        .ok_or(E)?;
    let rest = &s[digits..];
    let method = trim_start_ws(rest);
    if method.len() == rest.len() || method.is_empty() || !all(method.as_bytes(), &TOKEN) {
        return Err(E);
    }
    Ok(CSeq {
        seq,
        method: Method::from_token(method),
    })
}

/// `delta-seconds` (§25.1) clamped to `u32::MAX` (RFC 4475 §3.1.2.4: overlarge is not an error).
pub(super) fn delta_seconds(value: &str) -> Option<u32> {
    let s = trim_ws(value).as_bytes();
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(parse_u64(s).map_or(u32::MAX, |n| u32::try_from(n).unwrap_or(u32::MAX)))
}

// ---------------------------------------------------------------------------------------------
// Message-level helpers.

/// A message-level failure before it is wrapped with the salvage.
#[derive(Debug)]
struct Fail {
    status: u16,
    reason: String,
}

impl Fail {
    fn new(status: u16, reason: &str) -> Fail {
        Fail {
            status,
            reason: reason.to_owned(),
        }
    }
}

enum Start {
    Request(Method, Uri),
    Response(StatusCode, String),
}

enum Head {
    /// `head_len` ends after the last header line's LF; `body_start` after the empty line.
    Complete {
        head_len: usize,
        body_start: usize,
    },
    Partial,
    LineTooLong,
}

fn invalid(status: u16, reason: String, is_request: bool, salvage: Option<Salvage>) -> ParseError {
    ParseError::Invalid(Box::new(Invalid {
        reason,
        status: StatusCode(status),
        is_request,
        salvage,
    }))
}

/// Wraps a failure; for a request, salvages Via/From/To/Call-ID/CSeq from `head` leniently.
fn fail_at(head: &[u8], is_request: bool, f: Fail) -> ParseError {
    let salvage = is_request.then(|| salvage(head));
    invalid(f.status, f.reason, is_request, salvage)
}

/// A start line that begins with a token and SP is treated as a request; "SIP/" (which holds
/// a non-token `/`) as a response; anything else as noise to drop.
fn looks_like_request(buf: &[u8]) -> bool {
    let n = buf.iter().take_while(|&&b| TOKEN[b as usize]).count();
    n > 0 && buf.get(n) == Some(&b' ')
}

fn scan_head(buf: &[u8]) -> Head {
    let mut line_start = 0;
    loop {
        let Some(off) = memchr::memchr(b'\n', &buf[line_start..]) else {
            return if buf.len() - line_start > MAX_LINE_LEN {
                Head::LineTooLong
            } else {
                Head::Partial
            };
        };
        if off > MAX_LINE_LEN {
            return Head::LineTooLong;
        }
        let next = line_start + off + 1;
        match buf.get(next) {
            None => return Head::Partial,
            Some(b'\n') => {
                return Head::Complete {
                    head_len: next,
                    body_start: next + 1,
                };
            }
            Some(b'\r') => match buf.get(next + 1) {
                None => return Head::Partial,
                Some(b'\n') => {
                    return Head::Complete {
                        head_len: next,
                        body_start: next + 2,
                    };
                }
                Some(_) => {}
            },
            Some(_) => {}
        }
        line_start = next;
    }
}

/// Physical lines of a header section, CR LF or LF terminated, terminators removed.
struct Lines<'a> {
    buf: &'a str,
    pos: usize,
}

impl<'a> Lines<'a> {
    fn new(buf: &'a str) -> Lines<'a> {
        Lines { buf, pos: 0 }
    }
    fn next_line(&mut self) -> Option<&'a str> {
        let rest = self.buf.get(self.pos..).filter(|r| !r.is_empty())?;
        let (line, adv) = match memchr::memchr(b'\n', rest.as_bytes()) {
            Some(i) => (&rest[..i], i + 1),
            None => (rest, rest.len()),
        };
        self.pos += adv;
        Some(line.strip_suffix('\r').unwrap_or(line))
    }
    /// The next line starts with SP or HT: it continues the current header (§7.3.1).
    fn continues(&self) -> bool {
        matches!(self.buf.as_bytes().get(self.pos), Some(b' ' | b'\t'))
    }
    /// The current header's value with its continuation lines joined by one SP, trimmed.
    fn field_value(&mut self, first: &'a str) -> String {
        let first = trim_ws(first);
        if !self.continues() {
            return first.to_owned();
        }
        let mut v = String::with_capacity(first.len() + 64);
        v.push_str(first);
        while self.continues() {
            let Some(line) = self.next_line() else { break };
            let piece = trim_ws(line);
            if piece.is_empty() {
                continue;
            }
            if !v.is_empty() {
                v.push(' ');
            }
            v.push_str(piece);
        }
        v
    }
}

type Parsed = (Start, Vec<Header>, Option<usize>);

fn parse_head(head: &str, framing: Framing) -> Result<Parsed, Fail> {
    let mut lines = Lines::new(head);
    let first = lines.next_line().unwrap_or_default();
    let start = start_line(first.as_bytes())?;
    let method = match &start {
        Start::Request(m, _) => Some(m),
        Start::Response(..) => None,
    };
    let mut headers: Vec<Header> = Vec::with_capacity(16);
    let mut content_length: Option<usize> = None;
    let mut cl_conflict = false;
    while let Some(line) = lines.next_line() {
        let Some(&lead) = line.as_bytes().first() else {
            break;
        };
        if lead == b' ' || lead == b'\t' {
            return Err(Fail::new(400, "folded line without a header field"));
        }
        let colon = line
            .find(':')
            .ok_or_else(|| Fail::new(400, "header line without a colon"))?;
        let name_str = trim_end_ws(&line[..colon]);
        if name_str.is_empty() || !all(name_str.as_bytes(), &TOKEN) {
            return Err(Fail::new(400, "invalid header field name"));
        }
        let value = lines.field_value(&line[colon + 1..]);
        let name = match known_name(name_str) {
            Some(k) => HeaderName(std::borrow::Cow::Borrowed(k)),
            None => HeaderName(std::borrow::Cow::Owned(name_str.to_owned())),
        };
        let canonical = name.as_str();
        if canonical == "Content-Length" {
            let n = content_length_value(&value)?;
            match content_length {
                Some(prev) if prev != n => cl_conflict = true,
                Some(_) => {}
                None => content_length = Some(n),
            }
        } else {
            validate(canonical, &value, method)?;
        }
        if is_list(canonical) {
            let strict = matches!(canonical, "Via" | "Contact" | "Route" | "Record-Route");
            if value.is_empty() {
                validate_element(canonical, &value)?;
                push(&mut headers, Header { name, value })?;
                continue;
            }
            for elem in split_list(&value) {
                if elem.is_empty() && !strict {
                    continue;
                }
                validate_element(canonical, elem)?;
                push(
                    &mut headers,
                    Header {
                        name: name.clone(),
                        value: elem.to_owned(),
                    },
                )?;
            }
        } else {
            push(&mut headers, Header { name, value })?;
        }
    }
    if cl_conflict && framing == Framing::Stream {
        return Err(Fail::new(400, "conflicting Content-Length values"));
    }
    Ok((start, headers, content_length))
}

fn push(headers: &mut Vec<Header>, h: Header) -> Result<(), Fail> {
    if headers.len() >= MAX_HEADERS {
        return Err(Fail::new(400, "too many header fields"));
    }
    headers.push(h);
    Ok(())
}

fn start_line(line: &[u8]) -> Result<Start, Fail> {
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        return status_line(line);
    }
    // Request-Line = Method SP Request-URI SP SIP-Version: exactly two single SPs
    // (RFC 4475 §3.1.2.7-§3.1.2.10: extra, trailing or embedded whitespace is rejected).
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(uri), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(Fail::new(400, "malformed Request-Line"));
    };
    if parts.next().is_some() || uri.is_empty() || version.is_empty() {
        return Err(Fail::new(400, "malformed Request-Line (extra whitespace)"));
    }
    if method.is_empty() || !all(method, &TOKEN) {
        return Err(Fail::new(400, "invalid method token"));
    }
    if !version.eq_ignore_ascii_case(b"SIP/2.0") {
        return Err(Fail::new(505, "SIP version not supported"));
    }
    let uri = std::str::from_utf8(uri).map_err(|_| Fail::new(400, "invalid Request-URI"))?;
    let uri = parse_uri(uri).map_err(|_| Fail::new(400, "invalid Request-URI"))?;
    if uri.as_sip().is_some_and(|u| !u.headers.is_empty()) {
        return Err(Fail::new(400, "Request-URI must not carry headers"));
    }
    let method = std::str::from_utf8(method).map_err(|_| Fail::new(400, "invalid method token"))?;
    Ok(Start::Request(Method::from_token(method), uri))
}

fn status_line(line: &[u8]) -> Result<Start, Fail> {
    let sp = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    if !line[..sp].eq_ignore_ascii_case(b"SIP/2.0") {
        return Err(Fail::new(505, "SIP version not supported"));
    }
    let rest = line.get(sp + 1..).unwrap_or_default();
    let code_len = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
    let code = &rest[..code_len];
    if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) {
        return Err(Fail::new(400, "invalid status code"));
    }
    let status = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    if !(100..=699).contains(&status) {
        return Err(Fail::new(400, "status code out of range"));
    }
    let reason = rest.get(code_len + 1..).unwrap_or_default();
    Ok(Start::Response(
        StatusCode(status),
        String::from_utf8_lossy(reason).into_owned(),
    ))
}

/// Headers that carry a comma-separated list (the `Headers` contract in `mod.rs`).
fn is_list(name: &str) -> bool {
    matches!(
        name,
        "Via"
            | "Contact"
            | "Route"
            | "Record-Route"
            | "Allow"
            | "Supported"
            | "Require"
            | "Proxy-Require"
            | "Unsupported"
            | "Accept"
            | "Accept-Encoding"
            | "Accept-Language"
            | "Content-Encoding"
            | "Allow-Events"
            | "In-Reply-To"
            | "Error-Info"
            | "Alert-Info"
            | "Call-Info"
    )
}

/// Splits at commas outside quoted strings and `<>`; elements trimmed.
fn split_list(value: &str) -> impl Iterator<Item = &str> {
    let b = value.as_bytes();
    let mut start = 0;
    let mut i = 0;
    let mut in_quote = false;
    let mut in_angle = false;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        while i < b.len() {
            let c = b[i];
            i += 1;
            match c {
                b'\\' if in_quote => i += 1,
                b'"' => in_quote = !in_quote,
                b'<' if !in_quote => in_angle = true,
                b'>' if !in_quote => in_angle = false,
                b',' if !in_quote && !in_angle => {
                    let elem = &value[start..i - 1];
                    start = i;
                    return Some(trim_ws(elem));
                }
                _ => {}
            }
        }
        done = true;
        Some(trim_ws(value.get(start..).unwrap_or_default()))
    })
}

/// Grammar checks for headers whose syntax makes a message invalid (RFC 4475 §3.1.2), on the
/// whole (unsplit) value. List elements are checked by [`validate_element`].
fn validate(name: &str, value: &str, method: Option<&Method>) -> Result<(), Fail> {
    let bad = |what: &str| Err(bad_header(what));
    match name {
        "From" | "To" if name_addr_impl(value, false).is_err() => return bad(name),
        "CSeq" => {
            let c = cseq(value).map_err(|_| bad_header("CSeq"))?;
            if let Some(m) = method
                && c.method != *m
            {
                // RFC 4475 §3.1.2.17/18: 400, or 501 when the method itself is unknown.
                let status = if matches!(m, Method::Other(_)) {
                    501
                } else {
                    400
                };
                return Err(Fail {
                    status,
                    reason: "CSeq method does not match the Request-Line".into(),
                });
            }
        }
        "Call-ID" if !valid_call_id(value) => return bad(name),
        "Max-Forwards" if delta_seconds(value).is_none_or(|n| n > 255) => return bad(name),
        "Expires" if delta_seconds(value).is_none() => return bad(name),
        "Date" if !valid_date(value) => return bad(name),
        _ => {}
    }
    Ok(())
}

fn bad_header(name: &str) -> Fail {
    Fail {
        status: 400,
        reason: format!("invalid {name} header"),
    }
}

fn validate_element(name: &str, elem: &str) -> Result<(), Fail> {
    let ok = match name {
        "Via" => via_impl(elem, false).is_ok(),
        "Contact" => trim_ws(elem) == "*" || name_addr_impl(elem, false).is_ok(),
        "Route" | "Record-Route" => name_addr_impl(elem, false).is_ok(),
        _ => true,
    };
    if ok { Ok(()) } else { Err(bad_header(name)) }
}

fn content_length_value(value: &str) -> Result<usize, Fail> {
    let s = trim_ws(value).as_bytes();
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return Err(Fail::new(400, "invalid Content-Length"));
    }
    match parse_u64(s).and_then(|n| usize::try_from(n).ok()) {
        Some(n) if n <= MAX_MESSAGE_SIZE => Ok(n),
        _ => Err(Fail::new(413, "Content-Length too large")),
    }
}

/// `callid = word [ "@" word ]` (§25.1).
fn valid_call_id(s: &str) -> bool {
    let word = |w: &str| !w.is_empty() && all(w.as_bytes(), &WORD);
    match s.split_once('@') {
        Some((a, b)) => word(a) && word(b),
        None => word(s),
    }
}

/// `rfc1123-date` (§20.17): `wkday "," SP 2DIGIT SP month SP 4DIGIT SP time SP "GMT"`;
/// any other zone is invalid (RFC 4475 §3.1.2.12).
fn valid_date(s: &str) -> bool {
    const DAYS: [&[u8]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    const SEPS: [(usize, u8); 8] = [
        (3, b','),
        (4, b' '),
        (7, b' '),
        (11, b' '),
        (16, b' '),
        (19, b':'),
        (22, b':'),
        (25, b' '),
    ];
    let b = s.as_bytes();
    if b.len() != 29 {
        return false;
    }
    let num = |r: std::ops::Range<usize>| {
        let d = &b[r];
        d.iter()
            .all(u8::is_ascii_digit)
            .then(|| d.iter().fold(0u32, |n, c| n * 10 + u32::from(c - b'0')))
    };
    DAYS.iter().any(|d| d.eq_ignore_ascii_case(&b[0..3]))
        && MONTHS.iter().any(|m| m.eq_ignore_ascii_case(&b[8..11]))
        && SEPS.iter().all(|&(i, c)| b[i] == c)
        && b[26..29].eq_ignore_ascii_case(b"GMT")
        && num(5..7).is_some_and(|d| (1..=31).contains(&d))
        && num(12..16).is_some()
        && num(17..19).is_some_and(|h| h <= 23)
        && num(20..22).is_some_and(|m| m <= 59)
        && num(23..25).is_some_and(|s| s <= 60)
}

/// Lenient scan of a (possibly malformed) header section for what a stateless 400 needs:
/// every Via line as received (unfolded), the first From, To, Call-ID and CSeq.
fn salvage(head: &[u8]) -> Salvage {
    let mut s = Salvage::default();
    let head = String::from_utf8_lossy(head);
    let mut lines = Lines::new(&head);
    let _start_line = lines.next_line();
    let mut n = 0;
    while let Some(line) = lines.next_line() {
        n += 1;
        let Some(&lead) = line.as_bytes().first() else {
            break;
        };
        if n > MAX_HEADERS * 2 {
            break;
        }
        if lead == b' ' || lead == b'\t' {
            continue;
        }
        let Some(colon) = line.find(':') else {
            continue;
        };
        let Some(name) = known_name(trim_end_ws(&line[..colon])) else {
            continue;
        };
        if !matches!(name, "Via" | "From" | "To" | "Call-ID" | "CSeq") {
            continue;
        }
        let value = lines.field_value(&line[colon + 1..]);
        let slot = match name {
            "Via" => {
                s.via.push(value);
                continue;
            }
            "From" => &mut s.from,
            "To" => &mut s.to,
            "Call-ID" => &mut s.call_id,
            _ => &mut s.cseq,
        };
        if slot.is_none() {
            *slot = Some(value);
        }
    }
    s
}

// ---------------------------------------------------------------------------------------------
// URI pieces.

fn sip_uri(s: &str, secure: bool, keep: bool) -> Option<SipUri> {
    let b = s.as_bytes();
    // '@' appears in no part of a SIP URI but the userinfo separator (§25.1), while the user
    // part may hold ';' '?' ',' (RFC 4475 §3.1.1.2, §3.1.1.9): split there first.
    let (user, password, hp_start) = match b.iter().position(|&c| c == b'@') {
        Some(at) => {
            let ui = &s[..at];
            let (u, p) = match ui.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (ui, None),
            };
            if u.is_empty() || !all(u.as_bytes(), &USER) {
                return None;
            }
            if p.is_some_and(|p| !all(p.as_bytes(), &PASSWORD)) {
                return None;
            }
            (Some(own(u, keep)), p.map(|p| own(p, keep)), at + 1)
        }
        None => (None, None, 0),
    };
    let hp = &s[hp_start..];
    let hb = hp.as_bytes();
    let (host, mut i) = parse_host(hp, keep)?;
    let mut port = None;
    if hb.get(i) == Some(&b':') {
        let digits = hb[i + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        port = Some(parse_port(&hp[i + 1..i + 1 + digits])?);
        i += 1 + digits;
    }
    let mut params = Vec::new();
    while hb.get(i) == Some(&b';') {
        let start = i + 1;
        let end = hb[start..]
            .iter()
            .position(|&c| c == b';' || c == b'?')
            .map_or(hb.len(), |e| start + e);
        let p = &hp[start..end];
        let (name, value) = match p.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (p, None),
        };
        if name.is_empty() || !all(name.as_bytes(), &PARAM) {
            return None;
        }
        if value.is_some_and(|v| v.is_empty() || !all(v.as_bytes(), &PARAM)) {
            return None;
        }
        if keep {
            params.push(Param {
                name: name.to_owned(),
                value: value.map(str::to_owned),
            });
        }
        i = end;
    }
    let mut headers = Vec::new();
    if hb.get(i) == Some(&b'?') {
        for h in hp[i + 1..].split('&') {
            let (n, v) = h.split_once('=')?;
            if n.is_empty() || !all(n.as_bytes(), &HNV) || !all(v.as_bytes(), &HNV) {
                return None;
            }
            if keep {
                headers.push((n.to_owned(), v.to_owned()));
            }
        }
        i = hb.len();
    }
    (i == hb.len()).then_some(SipUri {
        secure,
        user,
        password,
        host,
        port,
        params,
        headers,
    })
}

/// A host at the front of `s`: `[IPv6]`, IPv4 or a hostname (lowercased). Returns the bytes
/// used.
fn parse_host(s: &str, keep: bool) -> Option<(Host, usize)> {
    let b = s.as_bytes();
    if b.first() == Some(&b'[') {
        let close = b.iter().position(|&c| c == b']')?;
        let addr: Ipv6Addr = s[1..close].parse().ok()?;
        return Some((Host::V6(addr), close + 1));
    }
    let end = b.iter().position(|&c| !HOST[c as usize]).unwrap_or(b.len());
    let h = &s[..end];
    if !h.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric) {
        return None;
    }
    let host = match h.parse::<Ipv4Addr>() {
        Ok(a) => Host::V4(a),
        Err(_) if keep => Host::Domain(h.to_ascii_lowercase()),
        Err(_) => Host::Domain(String::new()),
    };
    Some((host, end))
}

fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `<addr-spec>` at the front of `s` (no whitespace inside); returns the URI and what follows.
fn angle_uri(s: &str, keep: bool) -> Option<(Uri, &str)> {
    let inner_and_rest = s.strip_prefix('<')?;
    let (inner, after) = inner_and_rest.split_once('>')?;
    if inner.bytes().any(is_ws) {
        return None;
    }
    Some((uri_impl(inner, keep).ok()?, after))
}

// ---------------------------------------------------------------------------------------------
// Lexical helpers.

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str) -> Cursor<'a> {
        Cursor { s, pos: 0 }
    }
    fn rest(&self) -> &'a str {
        self.s.get(self.pos..).unwrap_or_default()
    }
    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }
    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        if hit {
            self.pos += 1;
        }
        hit
    }
    /// Skips SP/HT (folding is already one SP); returns how many.
    fn sws(&mut self) -> usize {
        let n = self.rest().bytes().take_while(|&c| is_ws(c)).count();
        self.pos += n;
        n
    }
    /// Takes the longest run of ASCII bytes in `class`.
    fn take(&mut self, class: &[bool; 256]) -> &'a str {
        let rest = self.rest();
        let n = rest.bytes().take_while(|&c| class[c as usize]).count();
        self.pos += n;
        &rest[..n]
    }
    fn take_digits(&mut self) -> &'a str {
        let rest = self.rest();
        let n = rest.bytes().take_while(u8::is_ascii_digit).count();
        self.pos += n;
        &rest[..n]
    }
    /// `*( SEMI generic-param )` with `gen-value = token / host / quoted-string`; a quoted
    /// value keeps its quotes. `seen` is called for each parameter; they are collected only
    /// when `keep`.
    fn header_params(
        &mut self,
        keep: bool,
        mut seen: impl FnMut(&'a str, Option<&'a str>),
    ) -> Option<Vec<Param>> {
        let mut out = Vec::new();
        loop {
            let save = self.pos;
            self.sws();
            if !self.eat(b';') {
                self.pos = save;
                return Some(out);
            }
            self.sws();
            let name = self.take(&TOKEN);
            if name.is_empty() {
                return None;
            }
            let save = self.pos;
            self.sws();
            let value = if self.eat(b'=') {
                self.sws();
                let v = if self.peek() == Some(b'"') {
                    let rest = self.rest();
                    let end = quoted_end(rest.as_bytes(), 0)?;
                    self.pos += end;
                    &rest[..end]
                } else {
                    self.take(&GENVAL)
                };
                if v.is_empty() {
                    return None;
                }
                Some(v)
            } else {
                self.pos = save;
                None
            };
            seen(name, value);
            if keep {
                out.push(Param {
                    name: name.to_owned(),
                    value: value.map(str::to_owned),
                });
            }
        }
    }
}

/// Index just past the closing quote of the quoted-string starting at `b[start] == '"'`.
fn quoted_end(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Removes the backslashes of quoted-pairs (the quotes themselves already stripped).
fn unescape_quoted(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let mut chars = rest[i + 1..].chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out.push_str(rest);
    out
}

/// An owned copy when building, an empty (non-allocating) string when only validating.
fn own(s: &str, keep: bool) -> String {
    if keep { s.to_owned() } else { String::new() }
}

fn is_ws(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

fn trim_ws(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

fn trim_start_ws(s: &str) -> &str {
    s.trim_start_matches([' ', '\t'])
}

fn trim_end_ws(s: &str) -> &str {
    s.trim_end_matches([' ', '\t'])
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Decimal digits to u64; `None` on overflow or when there are no digits.
fn parse_u64(d: &[u8]) -> Option<u64> {
    if d.is_empty() {
        return None;
    }
    d.iter().try_fold(0u64, |n, &c| {
        n.checked_mul(10)?
            .checked_add(u64::from(c.wrapping_sub(b'0')))
    })
}

fn all(s: &[u8], class: &[bool; 256]) -> bool {
    s.iter().all(|&c| class[c as usize])
}

/// Alphanumerics plus `extra`.
const fn class(extra: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = (c as u8).is_ascii_alphanumeric();
        c += 1;
    }
    union(t, extra)
}

const fn union(a: [bool; 256], extra: &[u8]) -> [bool; 256] {
    let mut t = a;
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
}

/// `token` (§25.1).
const TOKEN: [bool; 256] = class(b"-.!%*_+`'~");
/// `word` (§25.1), the Call-ID alphabet.
const WORD: [bool; 256] = union(TOKEN, b"()<>:\\\"/[]?{}");
/// `unreserved` plus `%` (escapes are kept as received, not checked).
const UNRESERVED: [bool; 256] = class(b"-_.!~*'()%");
const USER: [bool; 256] = union(UNRESERVED, b"&=+$,;?/");
const PASSWORD: [bool; 256] = union(UNRESERVED, b"&=+$,");
const PARAM: [bool; 256] = union(UNRESERVED, b"[]/:&+$");
const HNV: [bool; 256] = union(UNRESERVED, b"[]/?:+$");
/// Hostname characters (`_` tolerated, as seen in the wild).
const HOST: [bool; 256] = class(b"-._");
const SCHEME: [bool; 256] = class(b"+-.");
/// `uric` for non-SIP URIs, plus `[]` (IPv6 literals) and `#`.
const URIC: [bool; 256] = union(UNRESERVED, b";/?:@&=+$,[]#");
/// `gen-value` unquoted: token or host (IPv6 references included).
const GENVAL: [bool; 256] = union(TOKEN, b"[]:");

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

    fn req(buf: &[u8]) -> Request {
        match parse(buf, Framing::Datagram) {
            Ok((Message::Request(r), _)) => r,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    fn invalid_of(buf: &[u8], framing: Framing) -> Invalid {
        match parse(buf, framing) {
            Err(ParseError::Invalid(i)) => *i,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn parses_a_plain_invite_and_reports_consumed() {
        let (msg, used) = parse(INVITE, Framing::Stream).expect("valid");
        assert_eq!(used, INVITE.len());
        let Message::Request(r) = msg else {
            panic!("request")
        };
        assert_eq!(r.method, Method::Invite);
        assert_eq!(r.headers.cseq().expect("cseq").seq, 314159);
        assert_eq!(r.headers.from().expect("from").tag(), Some("1928301774"));
        assert_eq!(&r.body[..], b"v=0\n");
    }

    #[test]
    fn stream_is_incomplete_until_the_last_byte_arrives() {
        for n in 0..INVITE.len() {
            assert_eq!(
                parse(&INVITE[..n], Framing::Stream),
                Err(ParseError::Incomplete),
                "prefix of {n} bytes"
            );
        }
        assert!(parse(INVITE, Framing::Stream).is_ok());
    }

    #[test]
    fn stream_leaves_the_next_message_in_the_buffer() {
        let mut two = b"\r\n\r\n".to_vec();
        two.extend_from_slice(INVITE);
        two.extend_from_slice(INVITE);
        let (_, used) = parse(&two, Framing::Stream).expect("first");
        assert_eq!(used, 4 + INVITE.len());
        let (_, used2) = parse(&two[used..], Framing::Stream).expect("second");
        assert_eq!(used2, INVITE.len());
    }

    #[test]
    fn stream_without_content_length_is_invalid_but_datagram_takes_the_rest() {
        let msg = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n\r\nxyz";
        let inv = invalid_of(msg, Framing::Stream);
        assert_eq!(inv.status, StatusCode(400));
        assert!(inv.is_request);
        assert_eq!(&req(msg).body[..], b"xyz");
    }

    #[test]
    fn stream_garbage_start_line_is_invalid_before_the_headers_end() {
        let inv = invalid_of(
            b"OPTIONS  sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n",
            Framing::Stream,
        );
        assert_eq!(inv.status, StatusCode(400));
    }

    #[test]
    fn stream_header_section_unfinished_within_the_limit_is_413_not_incomplete() {
        let mut buf = b"OPTIONS sip:a@b SIP/2.0\r\n".to_vec();
        while buf.len() <= MAX_MESSAGE_SIZE {
            buf.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        let inv = invalid_of(&buf, Framing::Stream);
        assert_eq!(inv.status, StatusCode(413));
        assert!(inv.is_request);
    }

    #[test]
    fn stream_conflicting_content_lengths_are_invalid() {
        let msg = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 1\r\nl: 2\r\n\r\nab";
        assert_eq!(invalid_of(msg, Framing::Stream).status, StatusCode(400));
        assert_eq!(&req(msg).body[..], b"a");
    }

    #[test]
    fn content_length_beyond_the_limit_is_413() {
        let msg = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 9999999\r\n\r\n";
        assert_eq!(invalid_of(msg, Framing::Stream).status, StatusCode(413));
        let msg = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 99999999999999999999999\r\n\r\n";
        assert_eq!(invalid_of(msg, Framing::Datagram).status, StatusCode(413));
    }

    #[test]
    fn too_many_headers_and_too_long_lines_are_invalid() {
        let mut buf = b"OPTIONS sip:a@b SIP/2.0\r\n".to_vec();
        for _ in 0..=MAX_HEADERS {
            buf.extend_from_slice(b"X: y\r\n");
        }
        buf.extend_from_slice(b"\r\n");
        assert_eq!(invalid_of(&buf, Framing::Datagram).status, StatusCode(400));

        let mut buf = b"OPTIONS sip:a@b SIP/2.0\r\nX: ".to_vec();
        buf.resize(buf.len() + MAX_LINE_LEN + 1, b'a');
        buf.extend_from_slice(b"\r\n\r\n");
        assert_eq!(invalid_of(&buf, Framing::Datagram).status, StatusCode(400));
        assert_eq!(
            invalid_of(&buf[..buf.len() - 4], Framing::Stream).status,
            StatusCode(400)
        );
    }

    #[test]
    fn compact_names_are_expanded() {
        let r = req(
            b"OPTIONS sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h\r\nf: <sip:x@y>;tag=1\r\n\
t: sip:z@w\r\ni: abc\r\nm: <sip:c@d>\r\nl: 0\r\nc: text/plain\r\nk: timer\r\ns: hi\r\n\r\n",
        );
        let names: Vec<&str> = r.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Via",
                "From",
                "To",
                "Call-ID",
                "Contact",
                "Content-Length",
                "Content-Type",
                "Supported",
                "Subject"
            ]
        );
    }

    #[test]
    fn folded_lines_are_joined_with_one_space() {
        let r = req(
            b"OPTIONS sip:a@b SIP/2.0\r\nSubject: one  \r\n   two\r\n\tthree\r\nX-Empty:\r\n\r\n",
        );
        assert_eq!(r.headers.get("Subject"), Some("one two three"));
        assert_eq!(r.headers.get("X-Empty"), Some(""));
    }

    #[test]
    fn list_headers_split_outside_quotes_and_angles_only() {
        let r = req(b"OPTIONS sip:a@b SIP/2.0\r\n\
Contact: \"Bell, A.\" <sip:a@b;x=1>, <sip:c@d>\r\n\
Allow: INVITE, ACK,BYE\r\n\
Authorization: Digest username=\"a\", realm=\"b\"\r\n\r\n");
        let contacts: Vec<&str> = r.headers.get_all("Contact").collect();
        assert_eq!(contacts, ["\"Bell, A.\" <sip:a@b;x=1>", "<sip:c@d>"]);
        assert_eq!(r.headers.get_all("Allow").count(), 3);
        assert_eq!(r.headers.get_all("Authorization").count(), 1);
    }

    #[test]
    fn ipv6_via_and_uri_parse() {
        let v = Via::parse(
            "SIP/2.0/UDP [2001:db8::10]:5070;branch=z9hG4bK1;rport;received=2001:db8::9",
        )
        .expect("via");
        assert_eq!(v.host, Host::V6("2001:db8::10".parse().expect("addr")));
        assert_eq!(v.port, Some(5070));
        assert_eq!(v.rport(), Some(None));
        assert_eq!(v.received(), Some("2001:db8::9"));
        assert_eq!(v.branch(), Some("z9hG4bK1"));
        let r = req(b"OPTIONS sip:[2001:db8::1] SIP/2.0\r\nVia: SIP/2.0/UDP [::1]\r\n\r\n");
        let v6: Ipv6Addr = "2001:db8::1".parse().expect("addr");
        assert_eq!(r.uri.as_sip().map(|u| &u.host), Some(&Host::V6(v6)));
        let Uri::Sip(u) = parse_uri("sips:alice@[2001:DB8::1]:5061;transport=tcp").expect("uri")
        else {
            panic!("sip uri")
        };
        assert!(u.secure);
        assert_eq!(u.host, Host::V6("2001:db8::1".parse().expect("addr")));
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.param("transport"), Some(Some("tcp")));
        assert_eq!(u.to_string(), "sips:alice@[2001:db8::1]:5061;transport=tcp");
        assert!(parse_uri("sip:[2001:db8::zz]").is_err());
    }

    #[test]
    fn uri_parts_keep_escapes_and_lowercase_the_domain() {
        let Uri::Sip(u) =
            parse_uri("sip:I%20have:pw@EXAMPLE.Net;lr;maddr=x?Subject=hi&Route=%3Csip:a%3E")
                .expect("uri")
        else {
            panic!("sip uri")
        };
        assert_eq!(u.user.as_deref(), Some("I%20have"));
        assert_eq!(u.user_unescaped().as_deref(), Some("I have"));
        assert_eq!(u.password.as_deref(), Some("pw"));
        assert_eq!(u.host, Host::Domain("example.net".into()));
        assert_eq!(
            u.params,
            [Param::new("lr", None), Param::new("maddr", Some("x"))]
        );
        assert_eq!(u.headers.len(), 2);
        assert_eq!(
            parse_uri("tel:+1-201-555-0123"),
            Ok(Uri::Other {
                scheme: "tel".into(),
                rest: "+1-201-555-0123".into()
            })
        );
        assert!(parse_uri("sip:a@b c").is_err());
        assert!(parse_uri("<sip:a@b>").is_err());
        assert!(parse_uri("sip:a@b:99999").is_err());
        assert!(parse_uri("sip:").is_err());
    }

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse("\"J Rosenberg \\\\\\\"\"  <sip:j@example.com> ; tag = 98 ;lr")
            .expect("quoted");
        assert_eq!(n.display.as_deref(), Some("J Rosenberg \\\""));
        assert_eq!(n.tag(), Some("98"));
        assert_eq!(n.param("lr"), Some(None));
        let n = NameAddr::parse("caller<sip:caller@example.com>;tag=323").expect("lwsdisp");
        assert_eq!(n.display.as_deref(), Some("caller"));
        let n = NameAddr::parse("sip:+1@gw.example.net;unknownparam").expect("addr-spec");
        assert!(n.uri.as_sip().is_some_and(|u| u.params.is_empty()));
        assert_eq!(n.param("unknownparam"), Some(None));
        assert!(NameAddr::parse("sip:u@example.com?Route=%3Csip:a%3E").is_err());
        assert!(NameAddr::parse("Bell, Alexander <sip:a@b>").is_err());
        assert!(NameAddr::parse("< sip:a@b >").is_err());
        assert!(NameAddr::parse("\"unterminated <sip:a@b>").is_err());
        assert!(NameAddr::parse("<sip:a@b>;;").is_err());
    }

    #[test]
    fn cseq_and_delta_seconds_limits() {
        assert_eq!(CSeq::parse("0009 INVITE").expect("cseq").seq, 9);
        assert_eq!(CSeq::parse("4294967295 ACK").expect("max").seq, u32::MAX);
        assert!(CSeq::parse("4294967296 ACK").is_err());
        assert!(CSeq::parse("1INVITE").is_err());
        assert_eq!(delta_seconds("1".repeat(100).as_str()), Some(u32::MAX));
        assert_eq!(delta_seconds("-1"), None);
    }

    #[test]
    fn salvage_keeps_the_raw_values_needed_for_a_400() {
        let inv = invalid_of(
            b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h1;branch=z9hG4bKa, SIP/2.0/UDP h2\r\n\
v: SIP/2.0/UDP h3\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:z@w>\r\ni: cid-1\r\nCSeq: 1 INVITE\r\n\
Max-Forwards: 300\r\n\r\n",
            Framing::Datagram,
        );
        assert_eq!(inv.status, StatusCode(400));
        assert!(inv.is_request);
        let s = inv.salvage.expect("salvage");
        assert_eq!(
            s.via,
            [
                "SIP/2.0/UDP h1;branch=z9hG4bKa, SIP/2.0/UDP h2",
                "SIP/2.0/UDP h3"
            ]
        );
        assert_eq!(s.from.as_deref(), Some("<sip:x@y>;tag=1"));
        assert_eq!(s.to.as_deref(), Some("<sip:z@w>"));
        assert_eq!(s.call_id.as_deref(), Some("cid-1"));
        assert_eq!(s.cseq.as_deref(), Some("1 INVITE"));
    }

    #[test]
    fn unknown_version_is_505_for_a_request() {
        let inv = invalid_of(
            b"OPTIONS sip:a@b SIP/7.0\r\nCall-ID: x\r\n\r\n",
            Framing::Datagram,
        );
        assert_eq!(inv.status, StatusCode(505));
        assert!(inv.is_request);
        assert_eq!(inv.salvage.and_then(|s| s.call_id).as_deref(), Some("x"));
        let inv = invalid_of(b"SIP/7.0 200 OK\r\n\r\n", Framing::Datagram);
        assert!(!inv.is_request);
        assert!(inv.salvage.is_none());
    }

    #[test]
    fn version_is_case_insensitive_and_extension_methods_keep_their_case() {
        let r = req(b"Foo sip:a@b sip/2.0\r\nCSeq: 1 Foo\r\n\r\n");
        assert_eq!(r.method, Method::Other("Foo".into()));
    }

    #[test]
    fn status_line_limits() {
        assert!(parse(b"SIP/2.0 699 Whatever\r\n\r\n", Framing::Datagram).is_ok());
        assert!(parse(b"SIP/2.0 099 Low\r\n\r\n", Framing::Datagram).is_err());
        assert!(parse(b"SIP/2.0 700 High\r\n\r\n", Framing::Datagram).is_err());
        assert!(parse(b"SIP/2.0 2000 Long\r\n\r\n", Framing::Datagram).is_err());
    }

    #[test]
    fn non_utf8_header_values_are_replaced_but_structural_headers_fail() {
        let r = req(b"OPTIONS sip:a@b SIP/2.0\r\nSubject: caf\xe9\r\n\r\n");
        assert_eq!(r.headers.get("Subject"), Some("caf\u{FFFD}"));
        let inv = invalid_of(
            b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: a\xffb\r\n\r\n",
            Framing::Datagram,
        );
        assert_eq!(inv.status, StatusCode(400));
    }

    #[test]
    fn bare_lf_line_endings_are_tolerated() {
        let r = req(b"OPTIONS sip:a@b SIP/2.0\nCall-ID: x\nContent-Length: 2\n\nhi");
        assert_eq!(&r.body[..], b"hi");
    }

    #[test]
    fn keepalive_only_is_incomplete_on_a_stream_and_invalid_as_a_datagram() {
        assert_eq!(
            parse(b"\r\n\r\n", Framing::Stream),
            Err(ParseError::Incomplete)
        );
        assert!(!invalid_of(b"\r\n\r\n", Framing::Datagram).is_request);
        assert_eq!(leading_crlf_len(b"\r\n\r\nX"), 4);
    }

    #[test]
    fn arbitrary_prefixes_never_panic() {
        let data: Vec<u8> = (0..=255u8).cycle().take(2048).collect();
        for framing in [Framing::Datagram, Framing::Stream] {
            for n in 0..data.len() {
                let _ = parse(&data[..n], framing);
                let _ = parse(&INVITE[..n.min(INVITE.len())], framing);
            }
        }
    }
}
