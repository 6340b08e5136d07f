//! The IVR interpreter: runs one call's flow, step by step. SANS-IO (DESIGN.md §2): the call
//! actor feeds it inputs (digits, playback done, dial and webhook results, the time) and
//! carries out the [`Action`]s it yields; the interpreter owns every IVR timer (digit
//! timeouts, pauses, recording limits, webhook deadlines), so each is tested in virtual time.
//!
//! Driving it:
//! ```text
//! loop {
//!     while let Some(action) = interp.poll_action() { carry it out }
//!     select! { input => interp.handle_input(now, input),
//!               sleep_until(interp.poll_timeout()) => interp.handle_timeout(now) }
//! }
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::plan::{Dialplan, Prompt, Step};

/// Session attributes: what the caller entered and what the plan set, by name. Built-ins set
/// before the flow starts: `caller`, `caller_name`, `called`, `call_id`, `session_id`.
pub type Attributes = BTreeMap<String, String>;

/// What the interpreter asks the call actor to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Answer the call (200 OK) now.
    Answer,
    /// Play to the caller, replacing what plays now. `barge_in`: a digit stops it (the digit
    /// still counts). Reported back with [`Input::PlaybackDone`] with the same id. Templates
    /// in `Prompt::Say` are already filled.
    Play {
        id: u64,
        prompt: Prompt,
        barge_in: bool,
    },
    /// Stop whatever plays to the caller.
    StopPlayback,
    /// Ring these extensions at once; the actor gives up after `timeout` (CANCEL) and
    /// reports [`DialOutcome::NoAnswer`]. Always reported with [`Input::DialDone`].
    /// Answered: the call is bridged and the interpreter is finished.
    Dial {
        id: u64,
        extensions: Vec<String>,
        timeout: Duration,
    },
    /// Start recording what the caller says (mono). `voicemail`: the mailbox for a
    /// voicemail, `None` for a `record` step. Silence of `silence` reported with
    /// [`Input::Silence`]. The recording's id comes back with [`Input::RecordingDone`].
    StartRecording {
        id: u64,
        voicemail: Option<String>,
        silence: Option<Duration>,
    },
    /// Stop recording (terminator, silence or maximum length).
    StopRecording { id: u64 },
    /// Start recording the whole call, both parties (the `record_call` step).
    RecordCall,
    /// POST `body` (the session context) to `url`; answer with [`Input::WebhookDone`]. The
    /// interpreter gives up itself at `timeout`.
    Webhook {
        id: u64,
        url: String,
        body: serde_json::Value,
        timeout: Duration,
    },
    /// An attribute was set (store it with the session and its call records).
    SetAttribute { name: String, value: String },
    /// Send the call to another number: match the routes for it and start that flow (the
    /// actor builds a new interpreter; this one is finished).
    Transfer { number: String },
    /// Hang up (BYE when answered, `cause.status()` when not). The interpreter is finished.
    Hangup { cause: super::plan::HangupCause },
}

/// What the call actor tells the interpreter.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A DTMF digit from the caller (`0-9*#A-D`), however it came.
    Digit(char),
    /// A playback ended (finished, or `interrupted`: stopped or barged in).
    PlaybackDone {
        id: u64,
        interrupted: bool,
    },
    /// A playback could not start (missing file, no espeak-ng, ...): treated as finished.
    PlaybackFailed {
        id: u64,
        error: String,
    },
    DialDone {
        id: u64,
        outcome: DialOutcome,
    },
    /// The caller has been silent for the requested time while recording.
    Silence,
    /// The recording of `id` is stored (`recording_id`), or failed (`None`).
    RecordingDone {
        id: u64,
        recording_id: Option<String>,
    },
    /// The webhook answered with these steps, or failed (timeout, HTTP error, invalid JSON,
    /// invalid steps: `Err` with a message for the log).
    WebhookDone {
        id: u64,
        result: Result<Vec<Step>, String>,
    },
}

/// How a dial ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialOutcome {
    /// Someone answered: the caller is bridged.
    Answered,
    Busy,
    NoAnswer,
    /// No registered contact (or no such extension).
    Unavailable,
    Failed,
}

impl DialOutcome {
    /// The value of the `dial_status` attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            DialOutcome::Answered => "answered",
            DialOutcome::Busy => "busy",
            DialOutcome::NoAnswer => "no_answer",
            DialOutcome::Unavailable => "unavailable",
            DialOutcome::Failed => "failed",
        }
    }
}

/// One call's flow being run.
pub struct Interpreter {
    plan: Arc<Dialplan>,
    attrs: Attributes,
}

impl Interpreter {
    /// Starts `flow` of `plan` (which must exist: the actor looked it up through the routes)
    /// with the built-in attributes.
    pub fn new(plan: Arc<Dialplan>, flow: &str, attrs: Attributes, now: Instant) -> Interpreter {
        let _ = (flow, now);
        Interpreter { plan, attrs }
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        None
    }

    pub fn handle_input(&mut self, now: Instant, input: Input) {
        let _ = (now, input);
    }

    /// When [`Interpreter::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
    }

    /// The call was answered by us (after [`Action::Answer`]) — or already was.
    pub fn answered(&self) -> bool {
        false
    }

    /// Nothing more to do: the flow ended (hang up), bridged, or transferred.
    pub fn is_finished(&self) -> bool {
        true
    }

    pub fn attributes(&self) -> &Attributes {
        &self.attrs
    }

    pub fn plan(&self) -> &Arc<Dialplan> {
        &self.plan
    }
}
