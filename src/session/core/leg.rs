//! Callee legs (PURE vocabulary): what stands where a call's callee stands, whatever its kind.
//!
//! A call connects its caller (leg A) to one callee leg at a time (leg B). The leg may be a SIP
//! dialog reached by forked INVITEs (the first kind, [`LegKind::Sip`]), the server itself (the
//! IVR's local answer, [`LegKind::Local`]), a conference room ([`LegKind::Conference`]), and —
//! in the next issues — a queue holding the caller until an agent takes it
//! ([`LegKind::Queue`]) or a browser over WebRTC ([`LegKind::Webrtc`]). Every kind reports to
//! the call the same four things, through the same four methods of the call actor (see
//! ARCHITECTURE.md, "How a new leg kind plugs in"):
//!
//! | report | call actor | what the call does |
//! |---|---|---|
//! | ringing / early media | `callee_progress(status, reason, early_answer)` | `call.ringing` once; the callee's early media or our ringback to a waiting caller, ringback to one the IVR answered |
//! | answered | `callee_answered(LegIdentity, answer)` | answers the caller with `answer` (or the early answer already sent), records the leg with its kind, starts the recording, cancels the dial's other legs, tells the flow (`dialed`) |
//! | failed | `callee_failed(failure, last)` | keeps the best failure ([`crate::domain::better_failure`]); a 6xx, or the last leg's failure, ends the dial and the flow goes on (`dial_status`) |
//! | ended | the leg's BYE path (`hangup`) | ends the call with the cause and who hung up |
//!
//! The SIP specifics (dialogs, ACK, CANCEL, SDP narrowing) stay in the SIP leg's handlers; the
//! rest of the call never asks what kind a leg is.

pub use crate::domain::LegKind;

/// A callee leg that answered, as the call record names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegIdentity {
    pub kind: LegKind,
    /// The extension, queue or URI that was dialled (the flow's `dialed` attribute).
    pub target: String,
    /// The SIP Call-ID of the leg's dialog (SIP legs only).
    pub sip_call_id: Option<String>,
    /// The party's URI (SIP legs only).
    pub remote_uri: Option<String>,
}
