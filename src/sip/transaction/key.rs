//! Transaction keys (RFC 3261 §17.1.3, §17.2.3, §9.2) read straight from header text.
//!
//! Matching needs only the top Via (branch, sent-by), the CSeq and, for RFC 2543 peers, the
//! Call-ID and From tag. These helpers read them leniently from the stored header values so that
//! the transaction layer neither depends on the typed parsers nor panics on odd input: anything
//! unreadable simply yields `None`.
//!
//! Branches compare exactly (case-sensitive), as §17.2.3 asks for equality; sent-by compares
//! with case and whitespace ignored.

use crate::sip::message::{Headers, Method, Request, Response};

/// The RFC 3261 branch prefix (§8.1.1.7).
pub(super) const MAGIC_COOKIE: &str = "z9hG4bK";

/// The parts of the top Via that matching needs, borrowed from the header text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ViaText<'a> {
    /// The transport token ("UDP", "TCP", ...), as written.
    pub transport: &'a str,
    /// `host[:port]`, possibly with LWS around the colon.
    pub sent_by: &'a str,
    /// The branch parameter, if present and non-empty.
    pub branch: Option<&'a str>,
    /// The whole Via value, trimmed.
    pub raw: &'a str,
}

/// Key of a server transaction (§17.2.3). ACK is keyed as INVITE so that it finds the INVITE
/// server transaction; CANCEL keeps its own method (§9.2 swaps it to find the INVITE).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum ServerKey {
    /// Branch with the magic cookie: branch + sent-by + method.
    Rfc3261 {
        branch: Box<str>,
        sent_by: Box<str>,
        method: Method,
    },
    /// No magic cookie (RFC 2543 peer): Call-ID + CSeq number + From tag + top Via + method.
    Rfc2543 {
        call_id: Box<str>,
        seq: u32,
        from_tag: Box<str>,
        via: Box<str>,
        method: Method,
    },
}

/// Key of a client transaction (§17.1.3): our branch + the CSeq method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct ClientKey {
    pub branch: Box<str>,
    pub method: Method,
}

impl ServerKey {
    /// The key of a received request, or `None` when it has no usable top Via (or, without a
    /// magic-cookie branch, no CSeq or Call-ID).
    pub(super) fn for_request(req: &Request) -> Option<ServerKey> {
        let via = top_via(&req.headers)?;
        let method = match req.method {
            Method::Ack => Method::Invite,
            ref m => m.clone(),
        };
        match via.branch {
            Some(b) if b.starts_with(MAGIC_COOKIE) => Some(ServerKey::Rfc3261 {
                branch: b.into(),
                sent_by: normalize(via.sent_by).into(),
                method,
            }),
            _ => {
                let (seq, _) = cseq(&req.headers)?;
                let call_id = req.headers.get("Call-ID")?.trim();
                let from_tag = req.headers.get("From").and_then(tag_param).unwrap_or("");
                Some(ServerKey::Rfc2543 {
                    call_id: call_id.into(),
                    seq,
                    from_tag: from_tag.into(),
                    via: normalize(via.raw).into(),
                    method,
                })
            }
        }
    }

    /// The same key for another method (CANCEL → INVITE, §9.2).
    pub(super) fn with_method(&self, m: Method) -> ServerKey {
        let mut k = self.clone();
        match &mut k {
            ServerKey::Rfc3261 { method, .. } | ServerKey::Rfc2543 { method, .. } => *method = m,
        }
        k
    }
}

impl ClientKey {
    /// The key of a response: top Via branch + CSeq method.
    pub(super) fn for_response(resp: &Response) -> Option<ClientKey> {
        let branch = top_via(&resp.headers)?.branch?;
        let (_, method) = cseq(&resp.headers)?;
        Some(ClientKey {
            branch: branch.into(),
            method,
        })
    }
}

/// Reads the top Via value. Tolerates LWS around the slashes of the sent-protocol and around
/// `;` and `=`; a value that still holds several comma-separated Vias yields the first.
pub(super) fn top_via(headers: &Headers) -> Option<ViaText<'_>> {
    let raw = first_element(headers.get("Via")?).trim();
    let (head, params) = raw.split_once(';').unwrap_or((raw, ""));
    // sent-protocol = name SLASH version SLASH transport (SLASH may carry LWS, §25.1).
    let mut rest = head;
    for _ in 0..2 {
        let i = rest.find('/')?;
        rest = &rest[i + 1..];
    }
    let rest = rest.trim_start();
    let end = rest
        .find(|c: char| c.is_ascii_whitespace())
        .unwrap_or(rest.len());
    let (transport, sent_by) = (rest[..end].trim(), rest[end..].trim());
    if transport.is_empty() || sent_by.is_empty() {
        return None;
    }
    let branch = params
        .split(';')
        .find_map(|p| {
            let (name, value) = p.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("branch")
                .then(|| value.trim())
        })
        .filter(|b| !b.is_empty());
    Some(ViaText {
        transport,
        sent_by,
        branch,
        raw,
    })
}

/// Reads `CSeq: <number> <method>`.
pub(super) fn cseq(headers: &Headers) -> Option<(u32, Method)> {
    let mut it = headers.get("CSeq")?.split_ascii_whitespace();
    let seq = it.next()?.parse::<u32>().ok()?;
    let method = Method::from_token(it.next()?);
    Some((seq, method))
}

/// The `tag` header parameter of a From/To value (outside the `<...>` URI and quotes).
pub(super) fn tag_param(value: &str) -> Option<&str> {
    let params = match value.find('<') {
        Some(open) => {
            let close = value[open..].find('>')? + open;
            &value[close + 1..]
        }
        // addr-spec form: the first `;` ends the URI and starts the header parameters.
        None => value.split_once(';').map_or("", |(_, p)| p),
    };
    params.split(';').find_map(|p| {
        let (name, v) = p.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("tag")
            .then(|| v.trim())
            .filter(|t| !t.is_empty())
    })
}

/// The text up to the first comma outside quotes and angle brackets.
fn first_element(value: &str) -> &str {
    let (mut quoted, mut escaped, mut angle) = (false, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => return &value[..i],
            _ => {}
        }
    }
    value
}

/// Lowercased, whitespace removed: `10.0.0.1 : 5060` and `10.0.0.1:5060` compare equal.
fn normalize(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        let mut h = Headers::default();
        for (n, v) in pairs {
            h.push(n, *v);
        }
        h
    }

    #[test]
    fn top_via_reads_branch_and_sent_by() {
        let h = headers(&[("Via", "SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bKabc")]);
        let v = top_via(&h).expect("valid via");
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.sent_by, "10.0.0.1:5060");
        assert_eq!(v.branch, Some("z9hG4bKabc"));
    }

    #[test]
    fn top_via_tolerates_lws_and_takes_first_of_a_list() {
        let h = headers(&[(
            "v",
            "SIP / 2.0 / TCP  [::1] : 5070 ; Branch = z9hG4bKx , SIP/2.0/UDP b;branch=z9hG4bKy",
        )]);
        let v = top_via(&h).expect("valid via");
        assert_eq!(v.transport, "TCP");
        assert_eq!(normalize(v.sent_by), "[::1]:5070");
        assert_eq!(v.branch, Some("z9hG4bKx"));
    }

    #[test]
    fn garbage_via_and_cseq_yield_none_without_panicking() {
        for bad in [
            "",
            "SIP",
            "SIP/2.0",
            "SIP/2.0/UDP",
            ";branch=z9hG4bK",
            "é/é/é",
            ",,,",
        ] {
            assert_eq!(top_via(&headers(&[("Via", bad)])), None, "{bad:?}");
        }
        for bad in ["", "x INVITE", "1", "99999999999 INVITE", "-1 BYE"] {
            assert_eq!(cseq(&headers(&[("CSeq", bad)])), None, "{bad:?}");
        }
        assert_eq!(top_via(&Headers::default()), None);
    }

    #[test]
    fn empty_branch_counts_as_missing() {
        let h = headers(&[("Via", "SIP/2.0/UDP h;branch=")]);
        assert_eq!(top_via(&h).and_then(|v| v.branch), None);
    }

    #[test]
    fn tag_param_ignores_uri_parameters() {
        assert_eq!(
            tag_param("\"A;tag=x\" <sip:a@h;tag=no>;tag=yes"),
            Some("yes")
        );
        assert_eq!(tag_param("sip:a@h;tag=plain"), Some("plain"));
        assert_eq!(tag_param("<sip:a@h;tag=no>"), None);
        assert_eq!(tag_param("<sip:a@h"), None);
    }

    #[test]
    fn ack_and_invite_share_a_server_key_but_cancel_does_not() {
        use crate::sip::message::{Host, SipUri, Uri};
        let uri = Uri::Sip(SipUri::new(Some("b"), Host::Domain("h".into()), None));
        let mut inv = Request::new(Method::Invite, uri);
        inv.headers
            .push("Via", "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1");
        inv.headers.push("CSeq", "1 INVITE");
        let mut ack = inv.clone();
        ack.method = Method::Ack;
        let mut cancel = inv.clone();
        cancel.method = Method::Cancel;
        let k = ServerKey::for_request(&inv);
        assert!(k.is_some());
        assert_eq!(k, ServerKey::for_request(&ack));
        let ck = ServerKey::for_request(&cancel).expect("key");
        assert_ne!(k.as_ref(), Some(&ck));
        assert_eq!(k, Some(ck.with_method(Method::Invite)));
    }
}
