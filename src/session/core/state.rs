//! The call's state (SANS-IO): one explicit value for where each side of the call stands and
//! how the call ends, instead of flags the code must read together.
//!
//! * The caller's side follows its INVITE transaction (RFC 3261 §13.3.1): offered until we
//!   send a final response, then answered (2xx) or refused (3xx–6xx, including the 487 of a
//!   CANCEL, §9.2). A call the server places starts in [`CallerState::Placing`]: leg A is our
//!   own INVITE and there is no caller transaction to answer.
//! * The callee's side is idle until a callee leg of any kind answers
//!   ([`crate::session::core::leg`]); a transfer that replaces the callee returns it to idle.
//! * The ending, once decided, names the cause, who hung up and the status; a later event
//!   either replaces it ([`CallState::end`], the decision of a more specific path) or leaves it
//!   ([`CallState::end_first`], the first decision wins).
//!
//! [`CallState::phase`] is what the call-control API shows (`GET /v1/calls/{id}` `state`).

use crate::domain::{HangupBy, HangupCause};

/// Where the caller's leg (leg A) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerState {
    /// The caller's INVITE waits for our final response.
    Offered,
    /// A call the server places: our INVITE to leg A is out and has no 2xx yet.
    Placing,
    /// Leg A answered: our 2xx sent to the caller, or a 2xx to our INVITE.
    Answered,
    /// The caller's INVITE got a final non-2xx response from us.
    Refused,
}

/// Where the callee's leg (leg B) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalleeState {
    /// No callee answered (nobody dialled yet, a dial ringing, or the callee was replaced).
    Idle,
    /// A callee leg answered and is the call's leg B.
    Answered,
}

/// How the call ends, once decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ending {
    pub cause: HangupCause,
    pub by: HangupBy,
    /// The SIP status that ended it (200 for a BYE).
    pub code: u16,
}

/// The call as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The caller waits and no flow step has run yet.
    Starting,
    /// Someone is being rung: the dial of an unanswered call, or a placed call's leg A.
    Ringing,
    /// The IVR flow is running.
    Ivr,
    /// Answered, with nobody on the other side (a conference, a flow that ended).
    Answered,
    /// Two parties talk: a callee answered, or the call is bridged with another.
    Bridged,
    /// The ending is decided; the call is being torn down.
    Ending,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Ringing => "ringing",
            Phase::Ivr => "ivr",
            Phase::Answered => "answered",
            Phase::Bridged => "bridged",
            Phase::Ending => "ending",
        }
    }
}

/// What the call is doing besides its two sides, for [`CallState::phase`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Activity {
    /// An IVR flow runs.
    pub ivr: bool,
    /// A dial rings callees.
    pub dialling: bool,
    /// A callee dialog is up, or the call is bridged with another call.
    pub bridged: bool,
}

/// The call's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallState {
    caller: CallerState,
    callee: CalleeState,
    ending: Option<Ending>,
}

impl CallState {
    /// A call for a caller's INVITE.
    pub fn offered() -> Self {
        CallState {
            caller: CallerState::Offered,
            callee: CalleeState::Idle,
            ending: None,
        }
    }

    pub fn caller(&self) -> CallerState {
        self.caller
    }

    /// The caller's INVITE still waits for our final response.
    pub fn caller_waits(&self) -> bool {
        self.caller == CallerState::Offered
    }

    /// Leg A answered.
    pub fn caller_answered(&self) -> bool {
        self.caller == CallerState::Answered
    }

    /// The call was placed by the server: leg A is our INVITE (from the start; answering it
    /// does not change that for [`Self::caller_waits`]).
    pub fn place(&mut self) {
        if self.caller == CallerState::Offered {
            self.caller = CallerState::Placing;
        }
    }

    /// Leg A answered (our 2xx to the caller, or the 2xx to our INVITE).
    pub fn answer_caller(&mut self) {
        self.caller = CallerState::Answered;
    }

    /// A final non-2xx goes to the caller; false when a final response was already sent (the
    /// transaction takes only one).
    pub fn refuse_caller(&mut self) -> bool {
        if self.caller != CallerState::Offered {
            return false;
        }
        self.caller = CallerState::Refused;
        true
    }

    /// A callee leg answered.
    pub fn callee_answered(&self) -> bool {
        self.callee == CalleeState::Answered
    }

    pub fn answer_callee(&mut self) {
        self.callee = CalleeState::Answered;
    }

    /// The callee leg was replaced (a transfer): no callee until the next one answers.
    pub fn release_callee(&mut self) {
        self.callee = CalleeState::Idle;
    }

    pub fn is_ending(&self) -> bool {
        self.ending.is_some()
    }

    pub fn ending(&self) -> Option<Ending> {
        self.ending
    }

    /// Decides the ending, replacing an earlier decision.
    pub fn end(&mut self, ending: Ending) {
        self.ending = Some(ending);
    }

    /// Decides the ending unless one is already decided; true when this one was taken.
    pub fn end_first(&mut self, ending: Ending) -> bool {
        if self.ending.is_some() {
            return false;
        }
        self.ending = Some(ending);
        true
    }

    /// The call as the API names it.
    pub fn phase(&self, now: Activity) -> Phase {
        if self.ending.is_some() {
            return Phase::Ending;
        }
        if !self.caller_answered() {
            if self.caller == CallerState::Placing || now.dialling {
                Phase::Ringing
            } else if now.ivr {
                Phase::Ivr
            } else {
                Phase::Starting
            }
        } else if now.bridged {
            Phase::Bridged
        } else if now.ivr {
            Phase::Ivr
        } else {
            Phase::Answered
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ending(cause: HangupCause, code: u16) -> Ending {
        Ending {
            cause,
            by: HangupBy::System,
            code,
        }
    }

    #[test]
    fn a_caller_is_answered_or_refused_once() {
        let mut s = CallState::offered();
        assert!(s.caller_waits());
        assert!(s.refuse_caller());
        assert_eq!(s.caller(), CallerState::Refused);
        assert!(!s.refuse_caller(), "a second final response is refused");
        assert!(!s.caller_waits());
        assert!(!s.caller_answered());

        let mut s = CallState::offered();
        s.answer_caller();
        assert!(!s.refuse_caller(), "no 4xx after our 2xx");
        assert!(s.caller_answered());
    }

    #[test]
    fn a_placed_call_has_no_caller_transaction_to_answer() {
        let mut s = CallState::offered();
        s.place();
        assert_eq!(s.caller(), CallerState::Placing);
        assert!(!s.caller_waits());
        assert!(!s.refuse_caller());
        assert_eq!(s.phase(Activity::default()), Phase::Ringing);
        s.answer_caller();
        assert_eq!(s.phase(Activity::default()), Phase::Answered);
        s.place();
        assert!(s.caller_answered(), "placing again does not unanswer leg A");
    }

    #[test]
    fn the_first_ending_wins_unless_replaced() {
        let mut s = CallState::offered();
        assert!(s.end_first(ending(HangupCause::NoAnswer, 480)));
        assert!(!s.end_first(ending(HangupCause::Shutdown, 503)));
        assert_eq!(s.ending().map(|e| e.code), Some(480));
        s.end(ending(HangupCause::CallerCancel, 487));
        assert_eq!(s.ending().map(|e| e.cause), Some(HangupCause::CallerCancel));
        assert!(s.is_ending());
    }

    #[test]
    fn a_transfer_releases_the_callee_until_the_next_answers() {
        let mut s = CallState::offered();
        s.answer_caller();
        s.answer_callee();
        assert!(s.callee_answered());
        s.release_callee();
        assert!(!s.callee_answered());
    }

    #[test]
    fn the_phase_names_what_the_call_does() {
        let mut s = CallState::offered();
        let idle = Activity::default();
        let ivr = Activity { ivr: true, ..idle };
        let dialling = Activity {
            ivr: true,
            dialling: true,
            ..idle
        };
        let bridged = Activity {
            bridged: true,
            ..idle
        };
        assert_eq!(s.phase(idle), Phase::Starting);
        assert_eq!(s.phase(ivr), Phase::Ivr);
        assert_eq!(s.phase(dialling), Phase::Ringing);
        s.answer_caller();
        assert_eq!(s.phase(ivr), Phase::Ivr);
        assert_eq!(
            s.phase(dialling),
            Phase::Ivr,
            "an answered caller hears the IVR"
        );
        assert_eq!(s.phase(bridged), Phase::Bridged);
        let bridged_in_flow = Activity {
            ivr: true,
            ..bridged
        };
        assert_eq!(s.phase(bridged_in_flow), Phase::Bridged);
        assert_eq!(s.phase(idle), Phase::Answered);
        s.end(ending(HangupCause::Normal, 200));
        assert_eq!(s.phase(bridged).as_str(), "ending");
    }
}
