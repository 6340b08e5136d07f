//! SIP message model, parser and printer (PURE).
//!
//! Owns the RFC 3261 grammar: start lines (§7.1, §7.2), header fields (§7.3, §20) with compact
//! names, folded lines, comma-separated multi-values, quoted strings and escapes, URIs (§19.1,
//! §25) including IPv6 references, extension methods, and bodies kept as bytes. Framing follows
//! §18.3: on a datagram the Content-Length bounds the body and trailing octets are ignored; on a
//! stream Content-Length is mandatory and a short buffer is [`ParseError::Incomplete`], never
//! [`ParseError::Invalid`].
//!
//! Header values are stored as text (canonical header names, compact forms expanded) and
//! parsed into typed values ([`Via`], [`NameAddr`], [`CSeq`], [`Contact`]) on demand; the
//! parser validates the headers that RFC 4475 says must make a message invalid, so on a parsed
//! message the typed accessors ([`Headers::vias`], [`Headers::from`], [`Headers::to`],
//! [`Headers::cseq`], [`Headers::max_forwards`], [`Headers::expires`], [`Headers::contacts`],
//! Route/Record-Route through [`Headers::name_addrs`]) do not fail on syntax. [`check_request`]
//! adds the stateless semantic checks (required and single-valued headers) a UAS makes.
//!
//! Character set: start lines and header names must be ASCII; header values and reason
//! phrases are UTF-8, with invalid sequences replaced by U+FFFD (a replaced byte in a
//! validated header fails its grammar, hence 400). Bodies are bytes, never decoded.

mod check;
mod header;
mod parse;
mod print;
mod uri;

use bytes::Bytes;

pub use check::check_request;
pub use header::{CSeq, Contact, HeaderError, NameAddr, Via};
pub use parse::{leading_crlf_len, parse, parse_uri};
pub use uri::{Host, Param, SipUri, Uri};

/// Largest message we accept on any transport (datagram or one framed stream message).
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024;
/// Most header fields one message may carry (after list values are split).
pub const MAX_HEADERS: usize = 256;
/// Longest physical line (start line or header line) we accept.
pub const MAX_LINE_LEN: usize = 16 * 1024;

/// How the bytes arrived: it decides what a missing or excessive Content-Length means (§18.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// UDP: one datagram holds one message; no Content-Length means "the rest".
    Datagram,
    /// TCP/TLS: Content-Length is required; a short buffer is `Incomplete`.
    Stream,
}

/// Why bytes are not (yet) a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A stream transport must wait for more bytes.
    #[error("incomplete message")]
    Incomplete,
    /// The bytes can never become a valid message.
    #[error("invalid message: {}", .0.reason)]
    Invalid(Box<Invalid>),
}

/// A malformed message, with what is needed to answer it statelessly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Human-readable reason, used in logs and in the Warning/reason phrase of the answer.
    pub reason: String,
    /// The status a request deserves: 400, 505 (bad version), 413 (too large), 416, ...
    pub status: StatusCode,
    /// True when the start line looked like a request (responses are dropped, never answered).
    pub is_request: bool,
    /// Raw header values salvaged leniently so that a stateless error response can be built.
    pub salvage: Option<Salvage>,
}

/// Raw Via/From/To/Call-ID/CSeq values of a malformed request (RFC 3261 §8.2.6.2 copies them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Salvage {
    pub via: Vec<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub call_id: Option<String>,
    pub cseq: Option<String>,
}

/// A SIP method (RFC 3261 §7.1); extension methods keep their exact (case-sensitive) token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Info,
    Update,
    Prack,
    Subscribe,
    Notify,
    Refer,
    Message,
    Publish,
    Other(String),
}

/// A response status code, 100..=699 (RFC 3261 §7.2, §21).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatusCode(pub u16);

/// A parsed SIP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Response(Response),
}

/// A SIP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub uri: Uri,
    pub headers: Headers,
    pub body: Bytes,
}

/// A SIP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: StatusCode,
    pub reason: String,
    pub headers: Headers,
    pub body: Bytes,
}

/// Header fields in wire order. List-valued headers (Via, Contact, Route, Record-Route, Allow,
/// Supported, Require, Proxy-Require, Unsupported, Accept, Accept-Encoding, Accept-Language,
/// Content-Encoding, Allow-Events, In-Reply-To, Error-Info, Alert-Info, Call-Info) are split at
/// top-level commas, one [`Header`] per value; all others keep their value whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<Header>);

/// One header field value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: HeaderName,
    /// The value with folding replaced by one SP and surrounding whitespace trimmed.
    pub value: String,
}

/// A header name in canonical form (compact forms expanded, well-known names in their RFC
/// spelling, unknown names as received). Comparison is case-insensitive.
#[derive(Debug, Clone)]
pub struct HeaderName(pub std::borrow::Cow<'static, str>);

impl Method {
    /// The method token as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Other(s) => s,
            known => known.known_token().unwrap_or_default(),
        }
    }

    /// The token of an RFC-defined method; `None` for extension methods.
    pub fn known_token(&self) -> Option<&'static str> {
        Some(match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Other(_) => return None,
        })
    }

    /// Maps a token (case-sensitive, RFC 3261 §7.1) to a method.
    pub fn from_token(token: &str) -> Method {
        match token {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            "INFO" => Method::Info,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "REFER" => Method::Refer,
            "MESSAGE" => Method::Message,
            "PUBLISH" => Method::Publish,
            other => Method::Other(other.to_owned()),
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl StatusCode {
    pub const TRYING: StatusCode = StatusCode(100);
    pub const RINGING: StatusCode = StatusCode(180);
    pub const SESSION_PROGRESS: StatusCode = StatusCode(183);
    pub const OK: StatusCode = StatusCode(200);
    pub const BAD_REQUEST: StatusCode = StatusCode(400);
    pub const UNAUTHORIZED: StatusCode = StatusCode(401);
    pub const FORBIDDEN: StatusCode = StatusCode(403);
    pub const NOT_FOUND: StatusCode = StatusCode(404);
    pub const METHOD_NOT_ALLOWED: StatusCode = StatusCode(405);
    pub const NOT_ACCEPTABLE: StatusCode = StatusCode(406);
    pub const PROXY_AUTH_REQUIRED: StatusCode = StatusCode(407);
    pub const REQUEST_TIMEOUT: StatusCode = StatusCode(408);
    pub const TOO_LARGE: StatusCode = StatusCode(413);
    pub const UNSUPPORTED_MEDIA_TYPE: StatusCode = StatusCode(415);
    pub const UNSUPPORTED_URI_SCHEME: StatusCode = StatusCode(416);
    pub const BAD_EXTENSION: StatusCode = StatusCode(420);
    pub const INTERVAL_TOO_BRIEF: StatusCode = StatusCode(423);
    pub const TEMPORARILY_UNAVAILABLE: StatusCode = StatusCode(480);
    pub const CALL_DOES_NOT_EXIST: StatusCode = StatusCode(481);
    pub const LOOP_DETECTED: StatusCode = StatusCode(482);
    pub const TOO_MANY_HOPS: StatusCode = StatusCode(483);
    pub const BUSY_HERE: StatusCode = StatusCode(486);
    pub const REQUEST_TERMINATED: StatusCode = StatusCode(487);
    pub const NOT_ACCEPTABLE_HERE: StatusCode = StatusCode(488);
    pub const REQUEST_PENDING: StatusCode = StatusCode(491);
    pub const SERVER_ERROR: StatusCode = StatusCode(500);
    pub const NOT_IMPLEMENTED: StatusCode = StatusCode(501);
    pub const SERVICE_UNAVAILABLE: StatusCode = StatusCode(503);
    pub const VERSION_NOT_SUPPORTED: StatusCode = StatusCode(505);

    pub fn is_provisional(self) -> bool {
        self.0 < 200
    }
    pub fn is_success(self) -> bool {
        (200..300).contains(&self.0)
    }
    pub fn is_final(self) -> bool {
        self.0 >= 200
    }

    /// The RFC 3261 §21 reason phrase (or a generic one for the class).
    pub fn reason(self) -> &'static str {
        match self.0 {
            100 => "Trying",
            180 => "Ringing",
            181 => "Call Is Being Forwarded",
            182 => "Queued",
            183 => "Session Progress",
            200 => "OK",
            202 => "Accepted",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            406 => "Not Acceptable",
            407 => "Proxy Authentication Required",
            408 => "Request Timeout",
            413 => "Request Entity Too Large",
            415 => "Unsupported Media Type",
            416 => "Unsupported URI Scheme",
            420 => "Bad Extension",
            423 => "Interval Too Brief",
            480 => "Temporarily Unavailable",
            481 => "Call/Transaction Does Not Exist",
            482 => "Loop Detected",
            483 => "Too Many Hops",
            486 => "Busy Here",
            487 => "Request Terminated",
            488 => "Not Acceptable Here",
            491 => "Request Pending",
            500 => "Server Internal Error",
            501 => "Not Implemented",
            503 => "Service Unavailable",
            504 => "Server Time-out",
            505 => "Version Not Supported",
            600 => "Busy Everywhere",
            603 => "Decline",
            c if c < 200 => "Session Progress",
            c if c < 300 => "OK",
            c if c < 400 => "Redirect",
            c if c < 500 => "Client Error",
            c if c < 600 => "Server Error",
            _ => "Global Failure",
        }
    }
}

impl HeaderName {
    /// Canonical name for a received or wanted header name (expands compact forms, §7.3.3).
    pub fn new(name: &str) -> HeaderName {
        header::canonical_name(name)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl PartialEq for HeaderName {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}
impl Eq for HeaderName {}

impl Headers {
    /// First value of the named header (name in any case or compact form).
    pub fn get(&self, name: &str) -> Option<&str> {
        let name = HeaderName::new(name);
        self.0
            .iter()
            .find(|h| h.name == name)
            .map(|h| h.value.as_str())
    }
    /// Every value of the named header, in order.
    pub fn get_all<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + 'a {
        let name = HeaderName::new(name);
        self.0
            .iter()
            .filter(move |h| h.name == name)
            .map(|h| h.value.as_str())
    }
    /// Appends a header value.
    pub fn push(&mut self, name: &str, value: impl Into<String>) {
        self.0.push(Header {
            name: HeaderName::new(name),
            value: value.into(),
        });
    }
    /// Inserts a value before every other header (a new top Via).
    pub fn push_front(&mut self, name: &str, value: impl Into<String>) {
        self.0.insert(
            0,
            Header {
                name: HeaderName::new(name),
                value: value.into(),
            },
        );
    }
    /// Removes every value of the named header.
    pub fn remove(&mut self, name: &str) {
        let name = HeaderName::new(name);
        self.0.retain(|h| h.name != name);
    }
    /// Replaces every value of the named header with one value (kept at the first position).
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let name = HeaderName::new(name);
        match self.0.iter().position(|h| h.name == name) {
            Some(i) => {
                self.0[i].value = value.into();
                let mut j = 0;
                self.0.retain(|h| {
                    let keep = j <= i || h.name != name;
                    j += 1;
                    keep
                });
            }
            None => self.0.push(Header {
                name,
                value: value.into(),
            }),
        }
    }
    pub fn iter(&self) -> impl Iterator<Item = &Header> {
        self.0.iter()
    }

    /// All Via values, top first.
    pub fn vias(&self) -> Result<Vec<Via>, HeaderError> {
        self.get_all("Via").map(Via::parse).collect()
    }
    /// The top Via.
    pub fn top_via(&self) -> Result<Via, HeaderError> {
        Via::parse(self.get("Via").ok_or(HeaderError::Missing("Via"))?)
    }
    pub fn from(&self) -> Result<NameAddr, HeaderError> {
        NameAddr::parse(self.get("From").ok_or(HeaderError::Missing("From"))?)
    }
    pub fn to(&self) -> Result<NameAddr, HeaderError> {
        NameAddr::parse(self.get("To").ok_or(HeaderError::Missing("To"))?)
    }
    pub fn call_id(&self) -> Result<&str, HeaderError> {
        self.get("Call-ID").ok_or(HeaderError::Missing("Call-ID"))
    }
    pub fn cseq(&self) -> Result<CSeq, HeaderError> {
        CSeq::parse(self.get("CSeq").ok_or(HeaderError::Missing("CSeq"))?)
    }
    /// Max-Forwards, if present (0..=255).
    pub fn max_forwards(&self) -> Result<Option<u8>, HeaderError> {
        self.get("Max-Forwards")
            .map(|v| {
                v.trim()
                    .parse::<u8>()
                    .map_err(|_| HeaderError::Invalid("Max-Forwards"))
            })
            .transpose()
    }
    /// Expires as delta-seconds, if present. Values above 2**32-1 (RFC 4475 §3.1.2.4) are
    /// clamped to `u32::MAX`, never an error; non-digits are.
    pub fn expires(&self) -> Result<Option<u32>, HeaderError> {
        self.get("Expires")
            .map(|v| parse::delta_seconds(v).ok_or(HeaderError::Invalid("Expires")))
            .transpose()
    }
    /// Contact values (one per entry; `*` is [`Contact::Star`]).
    pub fn contacts(&self) -> Result<Vec<Contact>, HeaderError> {
        self.get_all("Contact").map(Contact::parse).collect()
    }
    /// Route or Record-Route entries.
    pub fn name_addrs(&self, name: &str) -> Result<Vec<NameAddr>, HeaderError> {
        self.get_all(name).map(NameAddr::parse).collect()
    }
    /// Option tags of Require, Proxy-Require, Supported or Unsupported.
    pub fn option_tags<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + 'a {
        self.get_all(name).map(str::trim).filter(|s| !s.is_empty())
    }
    /// The media type of Content-Type, lowercased, without parameters ("application/sdp").
    pub fn content_type(&self) -> Option<String> {
        self.get("Content-Type").map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
    }
}

impl Request {
    /// A request with no headers and an empty body.
    pub fn new(method: Method, uri: Uri) -> Request {
        Request {
            method,
            uri,
            headers: Headers::default(),
            body: Bytes::new(),
        }
    }
    /// Prints the request to wire bytes (headers as stored; see [`Request::set_body`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        print::request(self)
    }
    /// Sets the body, Content-Type (when given) and Content-Length.
    pub fn set_body(&mut self, content_type: Option<&str>, body: Bytes) {
        set_body(&mut self.headers, &mut self.body, content_type, body)
    }
}

impl Response {
    /// A response to `req` per RFC 3261 §8.2.6.2: Via, From, To, Call-ID and CSeq copied,
    /// Content-Length 0. The caller adds a To tag when one is needed.
    pub fn from_request(req: &Request, status: StatusCode) -> Response {
        let mut headers = Headers::default();
        for h in req.headers.iter() {
            if matches!(h.name.as_str(), "Via" | "From" | "To" | "Call-ID" | "CSeq") {
                headers.0.push(h.clone());
            }
        }
        headers.push("Content-Length", "0");
        Response {
            status,
            reason: status.reason().to_owned(),
            headers,
            body: Bytes::new(),
        }
    }
    /// A stateless error response built from the salvage of a malformed request.
    pub fn from_salvage(s: &Salvage, status: StatusCode, reason: &str) -> Response {
        let mut headers = Headers::default();
        for v in &s.via {
            headers.push("Via", v.clone());
        }
        for (name, value) in [
            ("From", &s.from),
            ("To", &s.to),
            ("Call-ID", &s.call_id),
            ("CSeq", &s.cseq),
        ] {
            if let Some(v) = value {
                headers.push(name, v.clone());
            }
        }
        headers.push("Content-Length", "0");
        Response {
            status,
            reason: reason.to_owned(),
            headers,
            body: Bytes::new(),
        }
    }
    pub fn to_bytes(&self) -> Vec<u8> {
        print::response(self)
    }
    pub fn set_body(&mut self, content_type: Option<&str>, body: Bytes) {
        set_body(&mut self.headers, &mut self.body, content_type, body)
    }
}

impl Message {
    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }
}

fn set_body(headers: &mut Headers, slot: &mut Bytes, content_type: Option<&str>, body: Bytes) {
    match content_type {
        Some(ct) => headers.set("Content-Type", ct),
        None if body.is_empty() => headers.remove("Content-Type"),
        None => {}
    }
    headers.set("Content-Length", body.len().to_string());
    *slot = body;
}
