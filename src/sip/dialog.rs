//! Dialog state (PURE): the RFC 3261 §12 dialog of one B2BUA leg, and the builders for the
//! requests sent inside it (§12.2.1.1) and for the responses that establish it (§12.1.1).
//!
//! A dialog is identified by Call-ID, local tag and remote tag. It remembers the remote target
//! (the peer's Contact), the route set (from Record-Route), both CSeq counters, and the
//! transport flow the peer talks to us on, which is where in-dialog requests go: answering on
//! the flow a request came from is what makes NATed softphones and TCP work (RFC 3581, §18).

use rand::Rng;

use super::message::{CSeq, Headers, Method, NameAddr, Request, Response, StatusCode, Uri};
use super::transport::Peer;

/// A SIP Call-ID (RFC 3261 §8.1.1.4), as opposed to switchboard's own call ids.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SipCallId(String);

/// A From/To tag (RFC 3261 §19.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

macro_rules! text_id {
    ($name:ident) => {
        impl $name {
            pub fn new(value: impl Into<String>) -> $name {
                $name(value.into())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
    };
}
text_id!(SipCallId);
text_id!(Tag);

/// Our half of a dialog id (§12): the Call-ID and our own tag, which is how the endpoint
/// routes in-dialog requests (the remote tag is checked by the dialog's owner).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogKey {
    pub call_id: SipCallId,
    pub local_tag: Tag,
}

impl DialogKey {
    pub fn new(call_id: impl Into<String>, local_tag: impl Into<String>) -> DialogKey {
        DialogKey {
            call_id: SipCallId::new(call_id),
            local_tag: Tag::new(local_tag),
        }
    }
}

/// Why a dialog could not be formed from a message.
#[derive(Debug, thiserror::Error)]
pub enum DialogError {
    #[error("missing or invalid {0}")]
    Header(#[from] super::message::HeaderError),
    #[error("the response has no To tag")]
    NoRemoteTag,
}

/// One leg's dialog.
#[derive(Debug, Clone)]
pub struct Dialog {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
    /// Our From (UAC) or To (UAS) value as a name-addr, without the tag.
    pub local: NameAddr,
    /// The peer's address-of-record, without the tag.
    pub remote: NameAddr,
    /// The peer's Contact URI.
    pub remote_target: Uri,
    /// Route set, in the order requests carry it.
    pub route_set: Vec<String>,
    pub local_cseq: u32,
    pub remote_cseq: Option<u32>,
    /// The flow the peer uses: where our in-dialog requests are sent.
    pub peer: Peer,
}

impl Dialog {
    /// The dialog a UAS forms when it answers `invite` (§12.1.1).
    pub fn uas(invite: &Request, local_tag: &str, peer: Peer) -> Result<Dialog, DialogError> {
        let h = &invite.headers;
        let remote = h.from()?;
        let remote_tag = remote.tag().unwrap_or_default().to_owned();
        let remote_target = first_contact(h).unwrap_or_else(|| remote.uri.clone());
        Ok(Dialog {
            call_id: h.call_id()?.to_owned(),
            local_tag: local_tag.to_owned(),
            remote_tag,
            local: without_tag(h.to()?),
            remote: without_tag(remote),
            remote_target,
            route_set: h.get_all("Record-Route").map(str::to_owned).collect(),
            local_cseq: rand::rng().random_range(1..10_000),
            remote_cseq: Some(h.cseq()?.seq),
            peer,
        })
    }

    /// The dialog a UAC forms from its INVITE and a 2xx (or tagged 1xx) answer (§12.1.2).
    pub fn uac(invite: &Request, resp: &Response, peer: Peer) -> Result<Dialog, DialogError> {
        let h = &invite.headers;
        let to = resp.headers.to()?;
        let remote_tag = to.tag().ok_or(DialogError::NoRemoteTag)?.to_owned();
        let from = h.from()?;
        let remote_target = first_contact(&resp.headers).unwrap_or_else(|| to.uri.clone());
        let mut route_set: Vec<String> = resp
            .headers
            .get_all("Record-Route")
            .map(str::to_owned)
            .collect();
        route_set.reverse();
        Ok(Dialog {
            call_id: h.call_id()?.to_owned(),
            local_tag: from.tag().unwrap_or_default().to_owned(),
            remote_tag,
            local: without_tag(from),
            remote: without_tag(to),
            remote_target,
            route_set,
            local_cseq: h.cseq()?.seq,
            remote_cseq: None,
            peer,
        })
    }

    /// A new request inside the dialog (§12.2.1.1), without Via (the sender adds it).
    pub fn request(&mut self, method: Method) -> Request {
        if method != Method::Ack && method != Method::Cancel {
            self.local_cseq = self.local_cseq.wrapping_add(1);
        }
        self.request_with_cseq(method, self.local_cseq)
    }

    /// The ACK for a 2xx to the INVITE carrying CSeq `seq` (§13.2.2.4).
    pub fn ack(&self, seq: u32) -> Request {
        self.request_with_cseq(Method::Ack, seq)
    }

    /// Checks the CSeq of a request from the peer (§12.2.2): false when it is out of order.
    pub fn accept_remote_cseq(&mut self, cseq: &CSeq) -> bool {
        if cseq.method == Method::Ack || cseq.method == Method::Cancel {
            return true;
        }
        match self.remote_cseq {
            Some(prev) if cseq.seq <= prev => false,
            _ => {
                self.remote_cseq = Some(cseq.seq);
                true
            }
        }
    }

    /// Updates the remote target from a target-refresh request or response (§12.2).
    pub fn refresh_target(&mut self, headers: &Headers) {
        if let Some(uri) = first_contact(headers) {
            self.remote_target = uri;
        }
    }

    fn request_with_cseq(&self, method: Method, seq: u32) -> Request {
        let mut req = Request::new(method.clone(), self.remote_target.clone());
        let h = &mut req.headers;
        for r in &self.route_set {
            h.push("Route", r.clone());
        }
        h.push("Max-Forwards", "70");
        h.push("From", format!("{};tag={}", self.local, self.local_tag));
        let to = if self.remote_tag.is_empty() {
            self.remote.to_string()
        } else {
            format!("{};tag={}", self.remote, self.remote_tag)
        };
        h.push("To", to);
        h.push("Call-ID", self.call_id.clone());
        h.push("CSeq", format!("{seq} {method}"));
        h.push("Content-Length", "0");
        req
    }
}

/// A fresh tag (§19.3: at least 32 bits of randomness).
pub fn new_tag() -> String {
    format!("{:016x}", rand::rng().random::<u64>())
}

/// A fresh Call-ID for a leg we originate.
pub fn new_call_id() -> String {
    format!("{:032x}", rand::rng().random::<u128>())
}

/// Builds a response to `req` with our To tag (when the request has none yet).
pub fn response_with_tag(req: &Request, status: StatusCode, tag: &str) -> Response {
    let mut resp = Response::from_request(req, status);
    if status.0 > 100
        && let Some(to) = req.headers.get("To")
        && NameAddr::parse(to).is_ok_and(|na| na.tag().is_none())
    {
        resp.headers.set("To", format!("{to};tag={tag}"));
    }
    resp
}

fn first_contact(h: &Headers) -> Option<Uri> {
    h.get("Contact")
        .and_then(|c| NameAddr::parse(c).ok())
        .map(|na| na.uri)
}

fn without_tag(mut na: NameAddr) -> NameAddr {
    na.params.retain(|p| !p.name.eq_ignore_ascii_case("tag"));
    na
}
