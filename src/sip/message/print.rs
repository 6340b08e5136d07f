//! The printer. STUB: the message helper replaces every body here.

use super::{Request, Response};

pub(super) fn request(r: &Request) -> Vec<u8> {
    let _ = r;
    todo!("print request")
}

pub(super) fn response(r: &Response) -> Vec<u8> {
    let _ = r;
    todo!("print response")
}

use super::header::{NameAddr, Via};
use super::uri::{Param, SipUri, Uri};
use std::fmt;

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let _ = f;
        todo!("Uri display")
    }
}
impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let _ = f;
        todo!("SipUri display")
    }
}
impl fmt::Display for NameAddr {
    /// Always prints the `<uri>` form (with the display name quoted when present).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let _ = f;
        todo!("NameAddr display")
    }
}
impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let _ = f;
        todo!("Via display")
    }
}
impl fmt::Display for Param {
    /// `;name` or `;name=value` (value printed as stored, quoted if it was quoted).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let _ = f;
        todo!("Param display")
    }
}
