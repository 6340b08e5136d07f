//! Via handling for the transport layer (PURE): stamping `received`/`rport` on arrival
//! (RFC 3261 §18.2.1, RFC 3581 §4) and choosing where a response goes (RFC 3261 §18.2.2,
//! RFC 3581 §4).
//!
//! How the endpoint uses this: the transport already stamps the top Via of every inbound
//! request ([`stamp_request`]). The endpoint keeps the request's source [`Peer`] with the server
//! transaction and sends each response to [`response_peer`]`(top_via, source)`: for TCP that
//! is the source itself, i.e. the connection the request came on (the transport's connection
//! table is keyed by remote address); for UDP it is `received` (else the sent-by IP) with the
//! `rport` value (else the sent-by port, else 5060). If a TCP connection has gone, §18.2.2 says
//! to connect to `received` with the sent-by port: that is [`response_target`] with
//! `Transport::Tcp`. A sent-by that is a domain name with no `received` needs RFC 3263 lookup
//! and yields `None` here.

use std::net::{IpAddr, SocketAddr};

use super::{Peer, Transport};
use crate::sip::message::{HeaderError, HeaderName, Headers, Host, Param, Request, Via};

/// Stamps the top Via of a received request (§18.2.1, RFC 3581 §4): adds `received=<source IP>`
/// when the sent-by host is a name or a different IP; when the request asked for `rport`,
/// sets it to the source port and always adds `received`.
pub fn stamp_received(via: &mut Via, source: SocketAddr) {
    let ip = source.ip().to_canonical();
    let wants_rport = via.param("rport").is_some();
    if wants_rport {
        set_param(&mut via.params, "rport", Some(source.port().to_string()));
    }
    if wants_rport || host_ip(&via.host) != Some(ip) {
        // IPv6 without brackets: `received = "received" EQUAL (IPv4address / IPv6address)`.
        set_param(&mut via.params, "received", Some(ip.to_string()));
    }
}

/// Parses the top Via of `req`, stamps it with [`stamp_received`] and writes it back.
/// Returns the stamped Via. Fails (leaving the request as it was) if there is no parseable
/// top Via.
pub fn stamp_request(req: &mut Request, source: SocketAddr) -> Result<Via, HeaderError> {
    let mut via = req.headers.top_via()?;
    let before = via.clone();
    stamp_received(&mut via, source);
    if via != before {
        replace_top_via(&mut req.headers, &via);
    }
    Ok(via)
}

/// Replaces the text of the first Via header value with `via`; false if there is none.
pub fn replace_top_via(headers: &mut Headers, via: &Via) -> bool {
    let name = HeaderName::new("Via");
    match headers.0.iter_mut().find(|h| h.name == name) {
        Some(h) => {
            h.value = via.to_string();
            true
        }
        None => false,
    }
}

/// Where a response to a request with this top Via goes over `transport`, ignoring any open
/// connection (§18.2.2 for unreliable transports, and the reconnect rule for reliable ones):
/// `maddr` if it is an IP, else `received`, else the sent-by IP; the port is the `rport` value
/// (RFC 3581 §4, not for `maddr`), else the sent-by port, else the transport default (5060).
/// `None` when the only address is a domain name (RFC 3263 resolution is the caller's job).
pub fn response_target(top_via: &Via, transport: Transport) -> Option<Peer> {
    let sent_by_port = top_via.port.unwrap_or(transport.default_port());
    if let Some(ip) = top_via.param("maddr").flatten().and_then(parse_ip) {
        return Some(Peer {
            transport,
            addr: SocketAddr::new(ip, sent_by_port),
        });
    }
    let ip = top_via
        .param("received")
        .flatten()
        .and_then(parse_ip)
        .or_else(|| host_ip(&top_via.host))?;
    let port = top_via
        .param("rport")
        .flatten()
        .and_then(|p| p.trim().parse::<u16>().ok())
        .filter(|&p| p != 0)
        .unwrap_or(sent_by_port);
    Some(Peer {
        transport,
        addr: SocketAddr::new(ip, port),
    })
}

/// Where to send a response to a request that arrived from `source` with this (stamped) top
/// Via: on a reliable transport the source itself — the same connection (§18.2.2); otherwise
/// [`response_target`].
pub fn response_peer(top_via: &Via, source: Peer) -> Option<Peer> {
    if source.transport.is_reliable() {
        Some(source)
    } else {
        response_target(top_via, source.transport)
    }
}

fn host_ip(host: &Host) -> Option<IpAddr> {
    match host {
        Host::V4(a) => Some(IpAddr::V4(*a)),
        Host::V6(a) => Some(IpAddr::V6(*a).to_canonical()),
        Host::Domain(_) => None,
    }
}

/// An IP literal, IPv6 with or without brackets.
fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    let s = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    s.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

fn set_param(params: &mut Vec<Param>, name: &str, value: Option<String>) {
    match params
        .iter_mut()
        .find(|p| p.name.eq_ignore_ascii_case(name))
    {
        Some(p) => p.value = value,
        None => params.push(Param {
            name: name.to_owned(),
            value,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn via(host: Host, port: Option<u16>, params: &[(&str, Option<&str>)]) -> Via {
        Via {
            protocol: "SIP/2.0".into(),
            transport: "UDP".into(),
            host,
            port,
            params: params.iter().map(|(n, v)| Param::new(n, *v)).collect(),
        }
    }

    fn v4(a: [u8; 4]) -> Host {
        Host::V4(Ipv4Addr::from(a))
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    fn udp(s: &str) -> Option<Peer> {
        Some(Peer {
            transport: Transport::Udp,
            addr: addr(s),
        })
    }

    #[test]
    fn same_ip_without_rport_is_left_alone() {
        let mut v = via(
            v4([192, 0, 2, 1]),
            Some(5060),
            &[("branch", Some("z9hG4bK1"))],
        );
        let before = v.clone();
        stamp_received(&mut v, addr("192.0.2.1:5060"));
        assert_eq!(v, before);
    }

    #[test]
    fn different_ip_gets_received() {
        let mut v = via(
            v4([10, 0, 0, 1]),
            Some(5060),
            &[("branch", Some("z9hG4bK1"))],
        );
        stamp_received(&mut v, addr("192.0.2.9:5999"));
        assert_eq!(v.param("received"), Some(Some("192.0.2.9")));
        assert_eq!(v.param("rport"), None);
    }

    #[test]
    fn domain_sent_by_gets_received() {
        let mut v = via(Host::Domain("pc33.example.com".into()), None, &[]);
        stamp_received(&mut v, addr("192.0.2.9:5060"));
        assert_eq!(v.param("received"), Some(Some("192.0.2.9")));
    }

    #[test]
    fn empty_rport_is_filled_and_received_added_even_for_same_ip() {
        let mut v = via(
            v4([192, 0, 2, 1]),
            Some(5060),
            &[("rport", None), ("branch", Some("b"))],
        );
        stamp_received(&mut v, addr("192.0.2.1:40000"));
        assert_eq!(v.param("rport"), Some(Some("40000")));
        assert_eq!(v.param("received"), Some(Some("192.0.2.1")));
        assert_eq!(v.params[0].name, "rport", "rport keeps its position");
    }

    #[test]
    fn ipv6_received_is_unbracketed_and_mapped_v4_compares_equal() {
        let mut v = via(Host::V6(Ipv6Addr::LOCALHOST), None, &[]);
        stamp_received(&mut v, addr("[2001:db8::9]:5060"));
        assert_eq!(v.param("received"), Some(Some("2001:db8::9")));

        let mut v = via(v4([192, 0, 2, 1]), None, &[]);
        stamp_received(&mut v, addr("[::ffff:192.0.2.1]:5060"));
        assert_eq!(v.param("received"), None);
    }

    #[test]
    fn response_target_uses_received_and_sent_by_port() {
        let v = via(
            Host::Domain("pc33.example.com".into()),
            Some(5070),
            &[("received", Some("192.0.2.9"))],
        );
        assert_eq!(response_target(&v, Transport::Udp), udp("192.0.2.9:5070"));
    }

    #[test]
    fn response_target_uses_rport_value() {
        let v = via(
            v4([10, 0, 0, 1]),
            Some(5060),
            &[("rport", Some("40000")), ("received", Some("192.0.2.9"))],
        );
        assert_eq!(response_target(&v, Transport::Udp), udp("192.0.2.9:40000"));
    }

    #[test]
    fn response_target_without_rport_or_port_defaults_to_5060() {
        let v = via(v4([192, 0, 2, 1]), None, &[("rport", None)]);
        assert_eq!(response_target(&v, Transport::Udp), udp("192.0.2.1:5060"));
    }

    #[test]
    fn response_target_ipv6_received_bracketed_or_not() {
        let v = via(
            Host::V6(Ipv6Addr::LOCALHOST),
            Some(5062),
            &[("received", Some("2001:db8::9"))],
        );
        assert_eq!(
            response_target(&v, Transport::Udp),
            udp("[2001:db8::9]:5062")
        );
        let v = via(
            Host::V6(Ipv6Addr::LOCALHOST),
            None,
            &[("received", Some("[2001:db8::9]"))],
        );
        assert_eq!(
            response_target(&v, Transport::Udp),
            udp("[2001:db8::9]:5060")
        );
        let v = via(
            Host::V6("2001:db8::1".parse().expect("v6")),
            Some(5080),
            &[],
        );
        assert_eq!(
            response_target(&v, Transport::Udp),
            udp("[2001:db8::1]:5080")
        );
    }

    #[test]
    fn response_target_prefers_maddr() {
        let v = via(
            v4([10, 0, 0, 1]),
            Some(5070),
            &[
                ("maddr", Some("239.255.255.1")),
                ("received", Some("192.0.2.9")),
            ],
        );
        assert_eq!(
            response_target(&v, Transport::Udp),
            udp("239.255.255.1:5070")
        );
    }

    #[test]
    fn response_target_for_bare_domain_needs_dns() {
        let v = via(Host::Domain("example.com".into()), None, &[]);
        assert_eq!(response_target(&v, Transport::Udp), None);
    }

    #[test]
    fn reliable_response_goes_back_to_the_source_connection() {
        let v = via(
            v4([10, 0, 0, 1]),
            Some(5060),
            &[("received", Some("192.0.2.9"))],
        );
        let source = Peer {
            transport: Transport::Tcp,
            addr: addr("192.0.2.9:53211"),
        };
        assert_eq!(response_peer(&v, source), Some(source));
        let source = Peer {
            transport: Transport::Udp,
            addr: addr("192.0.2.9:53211"),
        };
        assert_eq!(response_peer(&v, source), udp("192.0.2.9:5060"));
    }
}
