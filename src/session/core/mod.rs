//! The call's sans-IO parts (SANS-IO, in the style of [`crate::sip::transaction`]): state
//! machines that take `now` and inputs and queue what the driver must do, with no sockets,
//! channels or clocks of their own, each tested in virtual time.
//!
//! * [`fork`]: the INVITEs sent to reach a callee and their CANCELs (RFC 3261 §9.1, §16.7).
//! * [`answer`]: our 2xx answers retransmitted until their ACK (RFC 3261 §13.3.1.4).
//! * [`leg`]: what any callee leg reports to its call, whatever its kind.
//! * [`state`]: where each side of the call stands and how it ends; the phase the API shows.
//! * [`timers`]: the call's named timers (no answer, dial ring, placed-call ring).

pub mod answer;
pub mod fork;
pub mod leg;
pub mod state;
pub mod timers;
