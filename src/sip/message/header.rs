//! Typed header values parsed on demand (RFC 3261 §20, §25.1).

use super::uri::{Host, Param, Uri};
use super::HeaderName;

/// A header that is absent or does not follow its grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("missing {0} header")]
    Missing(&'static str),
    #[error("invalid {0} header")]
    Invalid(&'static str),
}

/// One Via value (§20.42): `SIP/2.0/UDP host:port;branch=...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// The protocol name and version, normally "SIP/2.0".
    pub protocol: String,
    /// The transport, uppercased ("UDP", "TCP", "TLS", "WS", or an extension token).
    pub transport: String,
    pub host: Host,
    pub port: Option<u16>,
    pub params: Vec<Param>,
}

/// A name-addr or addr-spec with header parameters (From, To, Contact, Route, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name, unquoted and unescaped.
    pub display: Option<String>,
    pub uri: Uri,
    /// Header parameters after the URI (`tag`, `expires`, `q`, ...).
    pub params: Vec<Param>,
}

/// CSeq (§20.16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: super::Method,
}

/// One Contact value (§20.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contact {
    /// `Contact: *` (only valid in REGISTER with Expires: 0).
    Star,
    Addr(NameAddr),
}

impl Via {
    pub fn parse(value: &str) -> Result<Via, HeaderError> {
        super::parse::via(value)
    }
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }
    pub fn branch(&self) -> Option<&str> {
        self.param("branch").flatten()
    }
}

impl NameAddr {
    pub fn parse(value: &str) -> Result<NameAddr, HeaderError> {
        super::parse::name_addr(value)
    }
    pub fn new(uri: Uri) -> NameAddr {
        NameAddr { display: None, uri, params: Vec::new() }
    }
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }
    pub fn tag(&self) -> Option<&str> {
        self.param("tag").flatten()
    }
}

impl CSeq {
    pub fn parse(value: &str) -> Result<CSeq, HeaderError> {
        super::parse::cseq(value)
    }
}

impl Contact {
    pub fn parse(value: &str) -> Result<Contact, HeaderError> {
        if value.trim() == "*" {
            Ok(Contact::Star)
        } else {
            NameAddr::parse(value).map(Contact::Addr)
        }
    }
}

fn find_param<'a>(params: &'a [Param], name: &str) -> Option<Option<&'a str>> {
    params.iter().find(|p| p.name.eq_ignore_ascii_case(name)).map(|p| p.value.as_deref())
}

/// Canonical spelling of a header name: compact forms expanded (§7.3.3), well-known names in
/// their RFC spelling, anything else kept as given.
pub(crate) fn canonical_name(name: &str) -> HeaderName {
    const KNOWN: &[&str] = &[
        "Accept", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow", "Allow-Events",
        "Authentication-Info", "Authorization", "Call-ID", "Call-Info", "Contact",
        "Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length",
        "Content-Type", "CSeq", "Date", "Error-Info", "Event", "Expires", "From", "In-Reply-To",
        "Max-Forwards", "Min-Expires", "MIME-Version", "Organization", "Priority",
        "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require", "Record-Route",
        "Refer-To", "Referred-By", "Reply-To", "Require", "Retry-After", "Route",
        "Server", "Session-Expires", "Subject", "Supported", "Timestamp", "To", "Unsupported",
        "User-Agent", "Via", "Warning", "WWW-Authenticate",
    ];
    let expanded = match name.len() {
        1 => match name.as_bytes()[0].to_ascii_lowercase() {
            b'i' => Some("Call-ID"),
            b'm' => Some("Contact"),
            b'e' => Some("Content-Encoding"),
            b'l' => Some("Content-Length"),
            b'c' => Some("Content-Type"),
            b'f' => Some("From"),
            b's' => Some("Subject"),
            b'k' => Some("Supported"),
            b't' => Some("To"),
            b'v' => Some("Via"),
            b'o' => Some("Event"),
            b'r' => Some("Refer-To"),
            b'b' => Some("Referred-By"),
            b'x' => Some("Session-Expires"),
            b'u' => Some("Allow-Events"),
            _ => None,
        },
        _ => KNOWN.iter().copied().find(|k| k.eq_ignore_ascii_case(name)),
    };
    match expanded {
        Some(k) => HeaderName(std::borrow::Cow::Borrowed(k)),
        None => HeaderName(std::borrow::Cow::Owned(name.to_owned())),
    }
}
