//! SIP and other URIs (RFC 3261 §19.1, §25.1; IPv6 references per RFC 5118).

use std::net::{Ipv4Addr, Ipv6Addr};

/// A URI as found in a Request-URI, a name-addr or an addr-spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uri {
    /// `sip:` or `sips:`.
    Sip(SipUri),
    /// Any other absolute URI (`tel:`, `mailto:`, `soap.beep:` ...), kept as text.
    Other { scheme: String, rest: String },
}

/// A `sip:`/`sips:` URI. User, password and header values keep their escaped wire form, so
/// printing is byte-stable; use [`SipUri::user_unescaped`] for comparisons (§19.1.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    pub secure: bool,
    pub user: Option<String>,
    pub password: Option<String>,
    pub host: Host,
    pub port: Option<u16>,
    /// uri-parameters (`;transport=tcp`, `;lr`, ...), in order.
    pub params: Vec<Param>,
    /// `?name=value` headers, escaped as received.
    pub headers: Vec<(String, String)>,
}

/// The host part of a URI or Via.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A hostname, lowercased.
    Domain(String),
    V4(Ipv4Addr),
    /// Printed in brackets.
    V6(Ipv6Addr),
}

/// A `;name[=value]` parameter. Names are compared case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub value: Option<String>,
}

impl Uri {
    /// The SIP URI, if this is one.
    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            Uri::Other { .. } => None,
        }
    }
    /// The scheme, lowercased ("sip", "sips", "tel", ...).
    pub fn scheme(&self) -> String {
        match self {
            Uri::Sip(u) if u.secure => "sips".into(),
            Uri::Sip(_) => "sip".into(),
            Uri::Other { scheme, .. } => scheme.to_ascii_lowercase(),
        }
    }
}

impl SipUri {
    /// A plain `sip:user@host[:port]` URI.
    pub fn new(user: Option<&str>, host: Host, port: Option<u16>) -> SipUri {
        SipUri {
            secure: false,
            user: user.map(str::to_owned),
            password: None,
            host,
            port,
            params: Vec::new(),
            headers: Vec::new(),
        }
    }
    /// A uri-parameter value (`Some(None)` for a flag such as `lr`).
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .map(|p| p.value.as_deref())
    }
    /// The user part with %HH escapes decoded (may contain NUL; invalid UTF-8 is replaced).
    pub fn user_unescaped(&self) -> Option<String> {
        self.user.as_deref().map(unescape)
    }
}

impl Param {
    pub fn new(name: &str, value: Option<&str>) -> Param {
        Param {
            name: name.to_owned(),
            value: value.map(str::to_owned),
        }
    }
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::V4(a) => write!(f, "{a}"),
            Host::V6(a) => write!(f, "[{a}]"),
        }
    }
}

impl From<std::net::IpAddr> for Host {
    fn from(ip: std::net::IpAddr) -> Host {
        match ip {
            std::net::IpAddr::V4(a) => Host::V4(a),
            std::net::IpAddr::V6(a) => Host::V6(a),
        }
    }
}

/// Decodes %HH escapes; malformed escapes are kept literally.
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
