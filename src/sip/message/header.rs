//! Typed header values parsed on demand (RFC 3261 §20, §25.1).

use super::HeaderName;
use super::uri::{Host, Param, Uri};

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
    /// The `received` parameter (RFC 3261 §18.2.1), as text.
    pub fn received(&self) -> Option<&str> {
        self.param("received").flatten()
    }
    /// The `rport` parameter (RFC 3581): `None` when absent, `Some(None)` for the bare flag a
    /// client sends, `Some(Some(port))` once a server filled it in. A non-numeric value reads
    /// as the flag.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.param("rport").map(|v| v.and_then(|p| p.parse().ok()))
    }
}

impl NameAddr {
    pub fn parse(value: &str) -> Result<NameAddr, HeaderError> {
        super::parse::name_addr(value)
    }
    pub fn new(uri: Uri) -> NameAddr {
        NameAddr {
            display: None,
            uri,
            params: Vec::new(),
        }
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
    params
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(name))
        .map(|p| p.value.as_deref())
}

/// Canonical spelling of a header name: compact forms expanded (§7.3.3), well-known names in
/// their RFC spelling, anything else kept as given.
///
/// Cheap on the hot path: one match on the first letter, then a case-insensitive comparison
/// against the few well-known names starting with that letter (length is compared first).
pub(crate) fn canonical_name(name: &str) -> HeaderName {
    match known_name(name) {
        Some(k) => HeaderName(std::borrow::Cow::Borrowed(k)),
        None => HeaderName(std::borrow::Cow::Owned(name.to_owned())),
    }
}

/// The canonical `'static` spelling of a compact or well-known header name.
pub(crate) fn known_name(name: &str) -> Option<&'static str> {
    let b = name.as_bytes();
    let first = b.first()?.to_ascii_lowercase();
    if b.len() == 1 {
        return match first {
            b'a' => Some("Accept-Contact"),
            b'b' => Some("Referred-By"),
            b'c' => Some("Content-Type"),
            b'd' => Some("Request-Disposition"),
            b'e' => Some("Content-Encoding"),
            b'f' => Some("From"),
            b'i' => Some("Call-ID"),
            b'j' => Some("Reject-Contact"),
            b'k' => Some("Supported"),
            b'l' => Some("Content-Length"),
            b'm' => Some("Contact"),
            b'n' => Some("Identity-Info"),
            b'o' => Some("Event"),
            b'r' => Some("Refer-To"),
            b's' => Some("Subject"),
            b't' => Some("To"),
            b'u' => Some("Allow-Events"),
            b'v' => Some("Via"),
            b'x' => Some("Session-Expires"),
            b'y' => Some("Identity"),
            _ => None,
        };
    }
    let candidates: &[&'static str] = match first {
        b'a' => &[
            "Accept",
            "Accept-Encoding",
            "Accept-Language",
            "Alert-Info",
            "Allow",
            "Allow-Events",
            "Authentication-Info",
            "Authorization",
            "Accept-Contact",
        ],
        b'c' => &[
            "Call-ID",
            "Contact",
            "Content-Length",
            "Content-Type",
            "CSeq",
            "Call-Info",
            "Content-Disposition",
            "Content-Encoding",
            "Content-Language",
        ],
        b'd' => &["Date"],
        b'e' => &["Expires", "Error-Info", "Event"],
        b'f' => &["From"],
        b'i' => &["In-Reply-To", "Identity", "Identity-Info"],
        b'm' => &["Max-Forwards", "Min-Expires", "MIME-Version", "Min-SE"],
        b'o' => &["Organization"],
        b'p' => &[
            "Proxy-Authenticate",
            "Proxy-Authorization",
            "Proxy-Require",
            "Priority",
            "Path",
            "P-Asserted-Identity",
            "P-Preferred-Identity",
            "Privacy",
        ],
        b'r' => &[
            "Record-Route",
            "Route",
            "Require",
            "Retry-After",
            "Refer-To",
            "Referred-By",
            "Reply-To",
            "RAck",
            "RSeq",
            "Reason",
            "Replaces",
            "Reject-Contact",
            "Request-Disposition",
        ],
        b's' => &[
            "Supported",
            "Server",
            "Session-Expires",
            "Subject",
            "Subscription-State",
            "Service-Route",
        ],
        b't' => &["To", "Timestamp"],
        b'u' => &["User-Agent", "Unsupported"],
        b'v' => &["Via"],
        b'w' => &["WWW-Authenticate", "Warning"],
        _ => &[],
    };
    candidates
        .iter()
        .copied()
        .find(|k| k.eq_ignore_ascii_case(name))
}
