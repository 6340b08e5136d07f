//! Stateless request checks a UAS makes before any processing (RFC 3261 §8.1.1, §8.2;
//! RFC 4475 §3.3.1, §3.3.8, §3.3.9).
//!
//! The parser already rejects what is syntactically broken; [`check_request`] rejects what is
//! well-formed but unusable: a request missing one of the headers every request must carry
//! (To, From, CSeq, Call-ID, Via; Max-Forwards is not required, so RFC 2543 peers still work,
//! RFC 4475 §3.4.1) or carrying several values of a header that may appear only once
//! (To, From, Call-ID, CSeq, Max-Forwards, Content-Length, Content-Type, Expires). Both are
//! answered 400 (Bad Request), statelessly, from the returned [`Invalid`]'s salvage.

use super::{Invalid, Request, Salvage, StatusCode};

/// Headers every request carries (RFC 3261 §8.1.1).
const REQUIRED: [&str; 5] = ["To", "From", "CSeq", "Call-ID", "Via"];
/// Headers that may appear at most once (RFC 3261 §7.3.1, §20).
const SINGLE: [&str; 8] = [
    "To",
    "From",
    "Call-ID",
    "CSeq",
    "Max-Forwards",
    "Content-Length",
    "Content-Type",
    "Expires",
];

/// Checks that `req` carries the mandatory headers once each. On failure the [`Invalid`] has
/// status 400, `is_request: true`, a reason naming the header ("missing Call-ID header",
/// "multiple To headers") and a salvage (all Vias, the first From/To/Call-ID/CSeq) from
/// which [`super::Response::from_salvage`] builds the answer.
// The signature is the contract other modules code against; the error is the rare path and is
// built once per rejected request, so its size does not matter.
#[allow(clippy::result_large_err)]
pub fn check_request(req: &Request) -> Result<(), Invalid> {
    let mut counts = [0usize; SINGLE.len()];
    let mut has_via = false;
    for h in req.headers.iter() {
        let name = h.name.as_str();
        has_via |= name == "Via";
        if let Some(i) = SINGLE.iter().position(|s| *s == name) {
            counts[i] += 1;
        }
    }
    for name in REQUIRED {
        let present = match SINGLE.iter().position(|s| *s == name) {
            Some(i) => counts[i] > 0,
            None => has_via,
        };
        if !present {
            return Err(bad_request(req, format!("missing {name} header")));
        }
    }
    if let Some(i) = counts.iter().position(|&n| n > 1) {
        return Err(bad_request(req, format!("multiple {} headers", SINGLE[i])));
    }
    Ok(())
}

fn bad_request(req: &Request, reason: String) -> Invalid {
    let h = &req.headers;
    let salvage = Salvage {
        via: h.get_all("Via").map(str::to_owned).collect(),
        from: h.get("From").map(str::to_owned),
        to: h.get("To").map(str::to_owned),
        call_id: h.get("Call-ID").map(str::to_owned),
        cseq: h.get("CSeq").map(str::to_owned),
    };
    Invalid {
        reason,
        status: StatusCode::BAD_REQUEST,
        is_request: true,
        salvage: Some(salvage),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Method, Request, Uri};
    use super::*;

    fn base() -> Request {
        let mut r = Request::new(
            Method::Options,
            Uri::Other {
                scheme: "tel".into(),
                rest: "1".into(),
            },
        );
        for (n, v) in [
            ("Via", "SIP/2.0/UDP h;branch=z9hG4bK1"),
            ("To", "<sip:a@b>"),
            ("From", "<sip:c@d>;tag=1"),
            ("Call-ID", "x"),
            ("CSeq", "1 OPTIONS"),
        ] {
            r.headers.push(n, v);
        }
        r
    }

    #[test]
    fn complete_request_passes() {
        assert_eq!(check_request(&base()), Ok(()));
    }

    #[test]
    fn missing_call_id_is_400_with_salvage() {
        let mut r = base();
        r.headers.remove("Call-ID");
        let e = check_request(&r).expect_err("missing");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.reason, "missing Call-ID header");
        assert_eq!(e.salvage.map(|s| s.via.len()), Some(1));
    }

    #[test]
    fn duplicate_content_type_is_400() {
        let mut r = base();
        r.headers.push("c", "text/plain");
        r.headers.push("Content-Type", "text/html");
        let e = check_request(&r).expect_err("dup");
        assert_eq!(e.reason, "multiple Content-Type headers");
    }

    #[test]
    fn several_vias_are_fine() {
        let mut r = base();
        r.headers.push("Via", "SIP/2.0/UDP h2");
        assert_eq!(check_request(&r), Ok(()));
    }
}
