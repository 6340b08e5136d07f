//! The IVR interpreter: runs one call's flow, step by step. SANS-IO (DESIGN.md §2): the call
//! actor feeds it inputs (digits, playback done, dial and webhook results, the time) and
//! carries out the [`Action`]s it yields; the interpreter owns every IVR timer (digit
//! timeouts, pauses, silence prompts, recording limits, webhook deadlines), so each is tested
//! in virtual time.
//!
//! It owns: where the call is in the plan (a flow and a step, plus the steps a webhook
//! returned and where to come back after them), the session attributes, the type-ahead digit
//! buffer, and what the call waits for ([`Interpreter::poll_timeout`] is that wait's
//! deadline). Steps run one after another until one must wait for an input or a timer;
//! more than [`MAX_STEPS_WITHOUT_WAIT`] steps in a row without waiting (a `goto` loop) hangs
//! up. Reaching the end of a flow hangs up.
//!
//! Driving it:
//! ```text
//! loop {
//!     while let Some(action) = interp.poll_action() { carry it out }
//!     select! { input => interp.handle_input(now, input),
//!               sleep_until(interp.poll_timeout()) => interp.handle_timeout(now) }
//! }
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::plan::{
    Dial, DialTarget, Dialplan, Gather, HangupCause, Menu, MenuChoice, Prompt, Step, StepKind,
    Strategy, Target, Test,
};
use super::template::render;
use crate::media::tone::ToneKind;

/// A goto loop guard: this many steps in a row without waiting, and the call is hung up.
pub const MAX_STEPS_WITHOUT_WAIT: usize = 1000;

/// How long a `dial` of an extension rings when the step does not say.
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a stopped recording may take to report its end.
pub const STOP_RECORDING_TIMEOUT: Duration = Duration::from_secs(10);

/// How an interpreter starts.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// The call is already answered (a transfer from an answered flow): `answer` does nothing.
    pub answered: bool,
    /// How long a `dial` of an extension rings when its step sets no `timeout`.
    pub default_dial_timeout: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            answered: false,
            default_dial_timeout: DEFAULT_DIAL_TIMEOUT,
        }
    }
}

/// Digits typed ahead (while nothing collects them) kept for the next gather or menu.
pub const TYPE_AHEAD_MAX: usize = 32;

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
    /// Text the caller `text` on messaging channel `channel` (the template already filled).
    SendMessage { channel: String, text: String },
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
    Hangup { cause: HangupCause },
    /// Put the caller in `queue` (answered first) until an agent answers or the queue lets
    /// them go; always reported with [`Input::QueueDone`]. `skills` are on top of the
    /// queue's own.
    Queue {
        id: u64,
        queue: String,
        priority: i32,
        skills: Vec<(String, u8)>,
    },
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
    QueueDone {
        id: u64,
        outcome: QueueOutcome,
    },
}

/// How a `queue` step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueOutcome {
    /// An agent answered: the caller is bridged and the flow is over.
    Answered,
    /// The queue's maximum wait passed.
    Timeout,
    /// The queue was at its maximum length.
    Full,
    /// The caller chose a callback and hung up.
    Callback,
    /// No such queue any more, or the ACD is not running.
    Failed,
}

impl QueueOutcome {
    /// The value of the `queue_status` attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueOutcome::Answered => "answered",
            QueueOutcome::Timeout => "timeout",
            QueueOutcome::Full => "full",
            QueueOutcome::Callback => "callback",
            QueueOutcome::Failed => "failed",
        }
    }
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
    /// Where the call is: a flow at the bottom, then the steps of webhook replies being run
    /// (each frame's index is the step it runs; the frames below already point past their
    /// webhook step, where the call goes on once the frame above has run to its end).
    frames: Vec<Frame>,
    wait: Wait,
    actions: VecDeque<Action>,
    /// The last id given to a playback, dial, recording or webhook.
    last_id: u64,
    answered: bool,
    /// Digits that came while nothing collected them, for the next gather or menu.
    type_ahead: VecDeque<char>,
    /// Ring time of an extension `dial` without its own `timeout`.
    default_dial_timeout: Duration,
    /// Actions handed out so far by [`Interpreter::poll_action`].
    popped: u64,
    /// Steps entered, each with the number of actions queued before it (so the actor can
    /// report a step before the actions it caused).
    entered: VecDeque<(u64, StepEntered)>,
}

/// A step the interpreter started (for the `ivr.step` event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepEntered {
    /// The flow the call is in.
    pub flow: String,
    /// The step's index in its flow (or in the webhook reply when `webhook`).
    pub index: usize,
    /// The step's kind (`play`, `gather`, `menu`, `dial`, …).
    pub kind: &'static str,
    /// The step came from a webhook reply.
    pub webhook: bool,
}

/// A list of steps being run, and the step it is at.
#[derive(Debug)]
struct Frame {
    code: Code,
    index: usize,
}

#[derive(Debug)]
enum Code {
    /// A flow of the plan, by name.
    Flow(String),
    /// The steps a webhook answered with.
    Webhook(Arc<[Step]>),
}

/// What the call waits for.
#[derive(Debug)]
enum Wait {
    /// Nothing: the next step runs.
    Running,
    /// A `play` step's prompt, or a `pause`.
    Prompt(Playing),
    Gather(Box<Gathering>),
    Menu(Box<Choosing>),
    Dial(Dialing),
    /// A `queue` step with this id, until its [`Input::QueueDone`].
    Queue(u64),
    Record(Box<Recording>),
    Webhook {
        id: u64,
        /// The interpreter gives up then and runs the fallback.
        deadline: Instant,
        fallback: Option<Target>,
    },
    /// Hung up, transferred or bridged.
    Finished,
}

/// Something being played to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Playing {
    /// An [`Action::Play`] with this id, until its [`Input::PlaybackDone`].
    Media(u64),
    /// Silence (a `silence:` prompt, a pause) until then: nothing to play, just a timer.
    Silence(Instant),
}

/// The digits of one attempt of a gather or a menu: its prompts (a digit cuts them short),
/// then the digits until the terminator, the maximum or a timeout.
#[derive(Debug)]
struct Collector {
    playing: Option<Playing>,
    /// The prompts still to play after the one playing.
    queue: VecDeque<Prompt>,
    digits: String,
    /// Once the prompts are over: when the first (or next) digit is overdue.
    deadline: Option<Instant>,
    max_digits: usize,
    terminator: Option<char>,
    first_timeout: Duration,
    inter_digit_timeout: Duration,
}

/// How an attempt of a gather or a menu went.
#[derive(Debug, PartialEq, Eq)]
enum Collected {
    Waiting,
    /// The input ended (terminator, maximum, or a timeout after some digits).
    Digits(String),
    /// No digit came in time.
    TimedOut,
}

#[derive(Debug)]
struct Gathering {
    spec: Gather,
    failures: u32,
    input: Collector,
}

#[derive(Debug)]
struct Choosing {
    spec: Menu,
    failures: u32,
    input: Collector,
}

#[derive(Debug)]
struct Dialing {
    id: u64,
    /// Who rings now.
    ringing: Vec<String>,
    /// Who rings next, in turn (sequential and round-robin groups).
    rest: VecDeque<String>,
    /// How long each member in turn rings.
    ring_timeout: Duration,
    /// The step's `timeout` for a group rung in turn: no member starts after this.
    give_up: Option<Instant>,
}

/// A `voicemail` or `record` step being run.
#[derive(Debug)]
struct Recording {
    spec: RecordSpec,
    phase: RecordPhase,
}

/// What a `voicemail` or `record` step asks for (templates filled).
#[derive(Debug)]
struct RecordSpec {
    /// The mailbox (voicemail) or `None` (record).
    voicemail: Option<String>,
    /// The attribute the recording id goes to.
    into: String,
    beep: bool,
    max_length: Duration,
    silence: Option<Duration>,
    terminator: Option<char>,
}

#[derive(Debug)]
enum RecordPhase {
    /// The greeting (or the record prompt); a digit skips it.
    Greeting(Playing),
    /// The beep before recording, [`Action::Play`] with this id.
    Beep(u64),
    /// Recording until the terminator, silence or `deadline` (the maximum length).
    Recording { id: u64, deadline: Instant },
    /// [`Action::StopRecording`] sent; waiting for [`Input::RecordingDone`] until `deadline`
    /// (then the recording counts as failed and the flow goes on).
    Stopping { id: u64, deadline: Instant },
}

/// An input or a timer, as the wait states see it.
#[derive(Debug)]
enum Event {
    Digit(char),
    /// [`Input::PlaybackDone`] or [`Input::PlaybackFailed`].
    PlaybackEnded(u64),
    /// The wait's deadline passed.
    Timeout,
    DialDone(u64, DialOutcome),
    Silence,
    RecordingDone(u64, Option<String>),
    WebhookDone(u64, Result<Vec<Step>, String>),
    QueueDone(u64, QueueOutcome),
}

/// A `queue` step's priority as rendered: a number (-1000 to 1000), or a yes/no (`true` and
/// `yes` count 1: `priority = "{{customer.vip}}"` puts VIPs ahead); anything else 0.
pub fn parse_priority(s: &str) -> i32 {
    let s = s.trim();
    match s.to_ascii_lowercase().as_str() {
        "true" | "yes" => 1,
        "false" | "no" | "" => 0,
        _ => match s.parse::<i32>() {
            Ok(n) => n.clamp(-1000, 1000),
            Err(_) => {
                tracing::warn!(priority = %s, "queue: priority is not a number: 0");
                0
            }
        },
    }
}

impl Interpreter {
    /// Starts `flow` of `plan` (which must exist: the actor looked it up through the routes)
    /// with the built-in attributes.
    pub fn new(plan: Arc<Dialplan>, flow: &str, attrs: Attributes, now: Instant) -> Interpreter {
        Interpreter::with_options(plan, flow, attrs, now, Options::default())
    }

    /// Like [`Interpreter::new`], for a call that is already answered (a transfer from an
    /// answered flow): `answer` steps do nothing.
    pub fn new_answered(
        plan: Arc<Dialplan>,
        flow: &str,
        attrs: Attributes,
        now: Instant,
    ) -> Interpreter {
        let options = Options {
            answered: true,
            ..Options::default()
        };
        Interpreter::with_options(plan, flow, attrs, now, options)
    }

    /// Starts `flow` with explicit [`Options`].
    pub fn with_options(
        plan: Arc<Dialplan>,
        flow: &str,
        attrs: Attributes,
        now: Instant,
        options: Options,
    ) -> Interpreter {
        let answered = options.answered;
        let mut interp = Interpreter {
            default_dial_timeout: options.default_dial_timeout,
            plan,
            attrs,
            frames: Vec::new(),
            wait: Wait::Running,
            actions: VecDeque::new(),
            last_id: 0,
            answered,
            type_ahead: VecDeque::new(),
            popped: 0,
            entered: VecDeque::new(),
        };
        interp.jump(&Target {
            flow: Some(flow.to_owned()),
            label: None,
        });
        interp.run(now);
        interp
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        let action = self.actions.pop_front();
        if action.is_some() {
            self.popped += 1;
        }
        action
    }

    /// The next step entered before the next queued action (all of them once no action is
    /// left), for reporting in order: poll this before each [`Interpreter::poll_action`].
    pub fn poll_step(&mut self) -> Option<StepEntered> {
        match self.entered.front() {
            Some((before, _)) if *before <= self.popped => self.entered.pop_front().map(|e| e.1),
            _ => None,
        }
    }

    pub fn handle_input(&mut self, now: Instant, input: Input) {
        let event = match input {
            Input::Digit(d) => Event::Digit(d),
            Input::PlaybackDone { id, .. } => Event::PlaybackEnded(id),
            Input::PlaybackFailed { id, error } => {
                tracing::warn!(id, %error, "playback failed: going on as if it had played");
                Event::PlaybackEnded(id)
            }
            Input::DialDone { id, outcome } => Event::DialDone(id, outcome),
            Input::Silence => Event::Silence,
            Input::RecordingDone { id, recording_id } => Event::RecordingDone(id, recording_id),
            Input::WebhookDone { id, result } => Event::WebhookDone(id, result),
            Input::QueueDone { id, outcome } => Event::QueueDone(id, outcome),
        };
        self.dispatch(now, event);
    }

    /// A sensitive gather is collecting digits now: the caller masks them in what it logs and
    /// publishes.
    pub fn collecting_sensitive(&self) -> bool {
        matches!(&self.wait, Wait::Gather(g) if g.spec.sensitive)
    }

    /// When [`Interpreter::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.wait {
            Wait::Prompt(Playing::Silence(at)) => Some(*at),
            Wait::Gather(g) => g.input.poll_timeout(),
            Wait::Menu(m) => m.input.poll_timeout(),
            Wait::Record(r) => match r.phase {
                RecordPhase::Greeting(Playing::Silence(at)) => Some(at),
                RecordPhase::Recording { deadline, .. }
                | RecordPhase::Stopping { deadline, .. } => Some(deadline),
                _ => None,
            },
            Wait::Webhook { deadline, .. } => Some(*deadline),
            Wait::Prompt(Playing::Media(_))
            | Wait::Dial(_)
            | Wait::Queue(_)
            | Wait::Running
            | Wait::Finished => None,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_some_and(|at| at <= now) {
            self.dispatch(now, Event::Timeout);
        }
    }

    /// The call was answered by us (after [`Action::Answer`]) — or already was.
    pub fn answered(&self) -> bool {
        self.answered
    }

    /// Nothing more to do: the flow ended (hang up), bridged, or transferred.
    pub fn is_finished(&self) -> bool {
        matches!(self.wait, Wait::Finished)
    }

    pub fn attributes(&self) -> &Attributes {
        &self.attrs
    }

    pub fn plan(&self) -> &Arc<Dialplan> {
        &self.plan
    }

    /// Hands `event` to what the call waits for, then runs steps until the next wait.
    fn dispatch(&mut self, now: Instant, event: Event) {
        let wait = std::mem::replace(&mut self.wait, Wait::Running);
        self.wait = self.on_event(now, wait, event);
        self.run(now);
    }

    /// Runs steps until one waits (or the call is finished).
    fn run(&mut self, now: Instant) {
        let mut steps = 0;
        while matches!(self.wait, Wait::Running) {
            if steps == MAX_STEPS_WITHOUT_WAIT {
                tracing::warn!(
                    flow = self.flow_name(),
                    steps,
                    "too many steps without waiting (a goto loop?): hanging up"
                );
                self.finish(Action::Hangup {
                    cause: HangupCause::Normal,
                });
                return;
            }
            steps += 1;
            match self.current_step() {
                Some(step) => {
                    self.note_step(&step);
                    self.wait = self.execute(now, step);
                }
                None if self.frames.len() > 1 => {
                    // The webhook's steps are over: back after the webhook step.
                    self.frames.pop();
                }
                None => self.finish(Action::Hangup {
                    cause: HangupCause::Normal,
                }),
            }
        }
    }

    /// Runs one step: moves on (or jumps) and returns [`Wait::Running`], or returns what the
    /// step waits for.
    fn execute(&mut self, now: Instant, step: Step) -> Wait {
        match step.kind {
            StepKind::Answer => {
                if !self.answered {
                    self.answered = true;
                    self.actions.push_back(Action::Answer);
                }
                self.next()
            }
            StepKind::Play { prompt, barge_in } => Wait::Prompt(self.play(now, &prompt, barge_in)),
            StepKind::Gather(spec) => {
                let prompts = spec.prompt.iter().cloned().collect();
                let input = self.collector(&spec, prompts);
                self.gather_attempt(now, spec, 0, input)
            }
            StepKind::Menu(spec) => {
                let input = self.menu_collector(&spec, vec![spec.greeting.clone()]);
                self.menu_attempt(now, spec, 0, input)
            }
            StepKind::Set(list) => {
                for (name, value) in &list {
                    let value = render(value, &self.attrs);
                    self.set(name, value);
                }
                self.next()
            }
            StepKind::If(cond) => {
                let value = self.attrs.get(&cond.attr).map(String::as_str);
                let holds = match &cond.test {
                    Test::Present => value.is_some_and(|v| !v.is_empty()),
                    Test::Equals(t) => value.unwrap_or("") == render(t, &self.attrs),
                    Test::NotEquals(t) => value.unwrap_or("") != render(t, &self.attrs),
                    Test::Matches(p) => full_match(p, value.unwrap_or("")),
                    Test::OneOf(list) => list.iter().any(|v| value == Some(v.as_str())),
                };
                if holds {
                    self.jump(&cond.then)
                } else {
                    self.go(cond.otherwise.as_ref())
                }
            }
            StepKind::Switch(switch) => {
                let value = self.attrs.get(&switch.attr).map(String::as_str);
                let case = switch
                    .cases
                    .iter()
                    .find(|(case, _)| value == Some(case.as_str()))
                    .map(|(_, target)| target);
                self.go(case.or(switch.default.as_ref()))
            }
            StepKind::Goto(target) => self.jump(&target),
            StepKind::Dial(dial) => self.dial(now, &dial),
            StepKind::Voicemail(vm) => {
                let mailbox = render(&vm.mailbox, &self.attrs);
                self.record(
                    now,
                    RecordSpec {
                        voicemail: Some(mailbox),
                        into: "voicemail_recording".to_owned(),
                        beep: vm.beep,
                        max_length: vm.max_length,
                        silence: vm.silence,
                        terminator: vm.terminator,
                    },
                    vm.greeting.as_ref(),
                )
            }
            StepKind::Record(rec) => self.record(
                now,
                RecordSpec {
                    voicemail: None,
                    into: rec.into,
                    beep: rec.beep,
                    max_length: rec.max_length,
                    silence: rec.silence,
                    terminator: rec.terminator,
                },
                rec.prompt.as_ref(),
            ),
            StepKind::RecordCall => {
                self.actions.push_back(Action::RecordCall);
                self.next()
            }
            StepKind::SendMessage { channel, text } => {
                let text = render(&text, &self.attrs);
                self.actions
                    .push_back(Action::SendMessage { channel, text });
                self.next()
            }
            StepKind::Transfer(number) => {
                let number = render(&number, &self.attrs);
                self.finish(Action::Transfer { number });
                Wait::Finished
            }
            StepKind::Hangup(cause) => {
                self.finish(Action::Hangup { cause });
                Wait::Finished
            }
            StepKind::Webhook(hook) => {
                let id = self.new_id();
                let body = self.context();
                self.actions.push_back(Action::Webhook {
                    id,
                    url: super::template::render_url(&hook.url, &self.attrs),
                    body,
                    timeout: hook.timeout,
                });
                Wait::Webhook {
                    id,
                    deadline: now + hook.timeout,
                    fallback: hook.fallback,
                }
            }
            StepKind::Pause(d) => Wait::Prompt(Playing::Silence(now + d)),
            StepKind::Queue(q) => {
                let id = self.new_id();
                let priority = q
                    .priority
                    .as_ref()
                    .map_or(0, |t| parse_priority(&render(t, &self.attrs)));
                let skills = q
                    .skills
                    .iter()
                    .filter_map(|t| {
                        let s = render(t, &self.attrs);
                        match crate::acd::parse_skill(&s) {
                            Ok(skill) => Some(skill),
                            Err(e) => {
                                tracing::warn!(skill = %s, error = %e, "queue: skill ignored");
                                None
                            }
                        }
                    })
                    .collect();
                self.actions.push_back(Action::Queue {
                    id,
                    queue: q.queue,
                    priority,
                    skills,
                });
                Wait::Queue(id)
            }
        }
    }

    /// What `event` does to `wait`; returns the new wait ([`Wait::Running`] once the step is
    /// done and the call has moved on).
    fn on_event(&mut self, now: Instant, wait: Wait, event: Event) -> Wait {
        match (wait, event) {
            (Wait::Finished, _) => Wait::Finished,
            (Wait::Gather(mut g), event) => match self.collect(now, &mut g.input, event) {
                Collected::Waiting => Wait::Gather(g),
                done => self.gather_done(now, *g, done),
            },
            (Wait::Menu(mut m), event) => match self.collect(now, &mut m.input, event) {
                Collected::Waiting => Wait::Menu(m),
                done => self.menu_done(now, *m, done),
            },
            (Wait::Record(r), event) => self.on_record_event(now, r, event),
            // Keys pressed while a dial rings or a webhook is out answer nothing the caller
            // heard: they are not typed ahead into the next menu.
            (wait @ (Wait::Dial(_) | Wait::Queue(_) | Wait::Webhook { .. }), Event::Digit(d)) => {
                tracing::debug!(digit = %d, "digit while dialling or waiting for a webhook: dropped");
                wait
            }
            (wait, Event::Digit(d)) => {
                self.buffer_digit(d);
                wait
            }
            (Wait::Prompt(Playing::Media(id)), Event::PlaybackEnded(ended)) if id == ended => {
                self.next()
            }
            (Wait::Prompt(Playing::Silence(at)), Event::Timeout) if at <= now => self.next(),
            (Wait::Dial(dialing), Event::DialDone(id, outcome)) if dialing.id == id => {
                self.dial_done(now, dialing, outcome)
            }
            (Wait::Queue(id), Event::QueueDone(done, outcome)) if id == done => {
                self.set("queue_status", outcome.as_str().to_owned());
                match outcome {
                    QueueOutcome::Answered | QueueOutcome::Callback => Wait::Finished,
                    QueueOutcome::Timeout | QueueOutcome::Full | QueueOutcome::Failed => {
                        let exit = self.queue_exit();
                        self.go(exit.as_ref())
                    }
                }
            }
            (Wait::Webhook { id, fallback, .. }, Event::WebhookDone(done, result))
                if id == done =>
            {
                match result {
                    Ok(steps) => {
                        // Back after the webhook step once its steps are over.
                        if let Some(frame) = self.frames.last_mut() {
                            frame.index += 1;
                        }
                        self.frames.push(Frame {
                            code: Code::Webhook(steps.into()),
                            index: 0,
                        });
                        Wait::Running
                    }
                    Err(msg) => {
                        tracing::warn!(error = %msg, "webhook failed: running the fallback");
                        self.go(fallback.as_ref())
                    }
                }
            }
            (
                Wait::Webhook {
                    deadline, fallback, ..
                },
                Event::Timeout,
            ) if deadline <= now => {
                tracing::warn!("webhook timed out: running the fallback");
                self.go(fallback.as_ref())
            }
            // Stale ids, late replies, and inputs this wait does not expect.
            (wait, event) => {
                tracing::debug!(?event, "ignored IVR input");
                wait
            }
        }
    }

    // ----- gather and menu -----

    fn collector(&self, spec: &Gather, prompts: Vec<Prompt>) -> Collector {
        Collector {
            playing: None,
            queue: prompts.into(),
            digits: String::new(),
            deadline: None,
            max_digits: usize::try_from(spec.max_digits)
                .unwrap_or(usize::MAX)
                .max(1),
            terminator: spec.terminator,
            first_timeout: spec.first_timeout,
            inter_digit_timeout: spec.inter_digit_timeout,
        }
    }

    fn menu_collector(&self, spec: &Menu, prompts: Vec<Prompt>) -> Collector {
        Collector {
            playing: None,
            queue: prompts.into(),
            digits: String::new(),
            deadline: None,
            max_digits: 1,
            terminator: None,
            first_timeout: spec.timeout,
            inter_digit_timeout: spec.timeout,
        }
    }

    /// Starts an attempt: digits typed ahead stand for the prompts (all of them, an invalid or
    /// timeout prompt too: the caller is already typing) and are used up as far as this
    /// attempt needs; without any, the prompts play and then the first-digit timer runs.
    fn begin(&mut self, now: Instant, input: &mut Collector) -> Collected {
        if !self.type_ahead.is_empty() {
            input.queue.clear();
            while let Some(d) = self.type_ahead.pop_front() {
                if let Collected::Digits(digits) = input.digit(now, d) {
                    return Collected::Digits(digits);
                }
            }
            return Collected::Waiting;
        }
        self.next_prompt(now, input);
        Collected::Waiting
    }

    /// Plays the next prompt of `input`, or (none left) starts waiting for the first digit.
    fn next_prompt(&mut self, now: Instant, input: &mut Collector) {
        match input.queue.pop_front() {
            Some(prompt) => input.playing = Some(self.play(now, &prompt, true)),
            None => {
                input.playing = None;
                input.deadline = Some(now + input.first_timeout);
            }
        }
    }

    /// What `event` does to one attempt of a gather or menu.
    fn collect(&mut self, now: Instant, input: &mut Collector, event: Event) -> Collected {
        match event {
            Event::Digit(d) => {
                if let Some(playing) = input.playing.take() {
                    // Barge-in: the prompts are over. The media pipeline stops a barge-in
                    // playback itself; say it too, and forget its PlaybackDone.
                    if let Playing::Media(_) = playing {
                        self.actions.push_back(Action::StopPlayback);
                    }
                    input.queue.clear();
                }
                input.digit(now, d)
            }
            Event::PlaybackEnded(id) if input.playing == Some(Playing::Media(id)) => {
                self.next_prompt(now, input);
                Collected::Waiting
            }
            Event::Timeout => match (input.playing, input.deadline) {
                (Some(Playing::Silence(at)), _) if at <= now => {
                    self.next_prompt(now, input);
                    Collected::Waiting
                }
                (None, Some(at)) if at <= now => {
                    if input.digits.is_empty() {
                        Collected::TimedOut
                    } else {
                        Collected::Digits(std::mem::take(&mut input.digits))
                    }
                }
                _ => Collected::Waiting,
            },
            _ => Collected::Waiting,
        }
    }

    /// Starts (or, with type-ahead, runs) attempt number `failures + 1` of a gather.
    fn gather_attempt(
        &mut self,
        now: Instant,
        spec: Gather,
        failures: u32,
        mut input: Collector,
    ) -> Wait {
        let started = self.begin(now, &mut input);
        let g = Gathering {
            spec,
            failures,
            input,
        };
        match started {
            Collected::Waiting => Wait::Gather(Box::new(g)),
            done => self.gather_done(now, g, done),
        }
    }

    fn gather_done(&mut self, now: Instant, g: Gathering, done: Collected) -> Wait {
        let Gathering { spec, failures, .. } = g;
        let retry_prompt = match done {
            Collected::Digits(digits) => {
                let long_enough = digits.chars().count() >= spec.min_digits as usize;
                let matches = spec.pattern.as_ref().is_none_or(|p| full_match(p, &digits));
                if long_enough && matches {
                    let value = if spec.sensitive {
                        super::plan::mask_digits(&digits)
                    } else {
                        digits
                    };
                    self.set(&spec.into, value);
                    return self.next();
                }
                spec.invalid_prompt.clone()
            }
            Collected::TimedOut | Collected::Waiting => spec.timeout_prompt.clone(),
        };
        let failures = failures + 1;
        if failures >= spec.tries.max(1) {
            return self.go(spec.on_failure.as_ref());
        }
        let prompts = retry_prompt
            .into_iter()
            .chain(spec.prompt.clone())
            .collect();
        let input = self.collector(&spec, prompts);
        self.gather_attempt(now, spec, failures, input)
    }

    fn menu_attempt(
        &mut self,
        now: Instant,
        spec: Menu,
        failures: u32,
        mut input: Collector,
    ) -> Wait {
        let started = self.begin(now, &mut input);
        let m = Choosing {
            spec,
            failures,
            input,
        };
        match started {
            Collected::Waiting => Wait::Menu(Box::new(m)),
            done => self.menu_done(now, m, done),
        }
    }

    fn menu_done(&mut self, now: Instant, m: Choosing, done: Collected) -> Wait {
        let Choosing { spec, failures, .. } = m;
        let retry_prompt = match done {
            Collected::Digits(digits) => {
                let choice = digits.chars().next().and_then(|d| {
                    spec.options
                        .iter()
                        .find(|(key, _)| *key == d)
                        .map(|(_, choice)| choice.clone())
                });
                match choice {
                    Some(MenuChoice::Go(target)) => {
                        self.set(&spec.into, digits);
                        return self.jump(&target);
                    }
                    Some(MenuChoice::Repeat) => {
                        let input = self.menu_collector(&spec, vec![spec.greeting.clone()]);
                        return self.menu_attempt(now, spec, failures, input);
                    }
                    None => spec.invalid_prompt.clone(),
                }
            }
            Collected::TimedOut | Collected::Waiting => spec.timeout_prompt.clone(),
        };
        let failures = failures + 1;
        if failures >= spec.tries.max(1) {
            return self.go(spec.on_failure.as_ref());
        }
        let short = spec
            .short_greeting
            .as_ref()
            .unwrap_or(&spec.greeting)
            .clone();
        let prompts = retry_prompt.into_iter().chain([short]).collect();
        let input = self.menu_collector(&spec, prompts);
        self.menu_attempt(now, spec, failures, input)
    }

    fn buffer_digit(&mut self, d: char) {
        if self.type_ahead.len() < TYPE_AHEAD_MAX {
            self.type_ahead.push_back(d);
        } else {
            tracing::debug!(digit = %d, "type-ahead buffer full: digit dropped");
        }
    }

    // ----- dial -----

    fn dial(&mut self, now: Instant, dial: &Dial) -> Wait {
        let (members, ring_timeout, give_up) = match &dial.to {
            DialTarget::Extension(ext) => {
                let ext = render(ext, &self.attrs);
                let timeout = dial.timeout.unwrap_or(self.default_dial_timeout);
                (vec![vec![ext]], timeout, None)
            }
            DialTarget::Group(name) => {
                let Some(group) = self.plan.ring_groups.get(name) else {
                    tracing::warn!(group = %name, "no such ring group");
                    return self.dial_failed(DialOutcome::Unavailable);
                };
                let members = &group.members;
                match group.strategy {
                    Strategy::Simultaneous => (
                        vec![members.clone()],
                        dial.timeout.unwrap_or(group.ring_timeout),
                        None,
                    ),
                    Strategy::Sequential => (
                        members.iter().map(|m| vec![m.clone()]).collect(),
                        group.ring_timeout,
                        dial.timeout.map(|t| now + t),
                    ),
                    Strategy::RoundRobin => {
                        let start = match members.len() {
                            0 => 0,
                            n => group.cursor.fetch_add(1, Ordering::Relaxed) % n,
                        };
                        (
                            members[start..]
                                .iter()
                                .chain(&members[..start])
                                .map(|m| vec![m.clone()])
                                .collect(),
                            group.ring_timeout,
                            dial.timeout.map(|t| now + t),
                        )
                    }
                }
            }
        };
        let mut rest: VecDeque<Vec<String>> = members.into();
        match rest.pop_front() {
            Some(first) if !first.is_empty() => {
                let rest = rest.into_iter().flatten().collect();
                self.ring(now, first, rest, ring_timeout, give_up)
            }
            _ => {
                tracing::warn!("dial: nobody to ring");
                self.dial_failed(DialOutcome::Unavailable)
            }
        }
    }

    /// Rings `ringing`; at most until `give_up`.
    fn ring(
        &mut self,
        now: Instant,
        ringing: Vec<String>,
        rest: VecDeque<String>,
        ring_timeout: Duration,
        give_up: Option<Instant>,
    ) -> Wait {
        let id = self.new_id();
        let timeout = match give_up {
            Some(at) => ring_timeout.min(at.saturating_duration_since(now)),
            None => ring_timeout,
        };
        self.actions.push_back(Action::Dial {
            id,
            extensions: ringing.clone(),
            timeout,
        });
        Wait::Dial(Dialing {
            id,
            ringing,
            rest,
            ring_timeout,
            give_up,
        })
    }

    fn dial_done(&mut self, now: Instant, mut dialing: Dialing, outcome: DialOutcome) -> Wait {
        if outcome == DialOutcome::Answered {
            self.set("dial_status", outcome.as_str().to_owned());
            // Who answered a simultaneous ring is the actor's to tell.
            if let [ext] = dialing.ringing.as_slice() {
                self.set("dialed", ext.clone());
            }
            return Wait::Finished;
        }
        let in_time = dialing.give_up.is_none_or(|at| now < at);
        match dialing.rest.pop_front() {
            Some(next) if in_time => self.ring(
                now,
                vec![next],
                dialing.rest,
                dialing.ring_timeout,
                dialing.give_up,
            ),
            _ => self.dial_failed(outcome),
        }
    }

    /// The exit of the queue the current `queue` step names, if it has one.
    fn queue_exit(&self) -> Option<Target> {
        let step = self.current_step()?;
        let StepKind::Queue(q) = &step.kind else {
            return None;
        };
        self.plan.queues.get(&q.queue).and_then(|d| d.exit.clone())
    }

    fn dial_failed(&mut self, outcome: DialOutcome) -> Wait {
        self.set("dial_status", outcome.as_str().to_owned());
        self.next()
    }

    // ----- voicemail and record -----

    /// The greeting (a digit skips it), the beep, then the recording.
    fn record(&mut self, now: Instant, spec: RecordSpec, greeting: Option<&Prompt>) -> Wait {
        let phase = match greeting {
            Some(prompt) => RecordPhase::Greeting(self.play(now, prompt, true)),
            None => self.after_greeting(now, &spec),
        };
        Wait::Record(Box::new(Recording { spec, phase }))
    }

    /// The beep, or (no beep) the recording itself.
    fn after_greeting(&mut self, now: Instant, spec: &RecordSpec) -> RecordPhase {
        if spec.beep {
            let id = self.new_id();
            self.actions.push_back(Action::Play {
                id,
                prompt: Prompt::Tone(ToneKind::Beep),
                barge_in: false,
            });
            RecordPhase::Beep(id)
        } else {
            self.start_recording(now, spec)
        }
    }

    fn start_recording(&mut self, now: Instant, spec: &RecordSpec) -> RecordPhase {
        let id = self.new_id();
        self.actions.push_back(Action::StartRecording {
            id,
            voicemail: spec.voicemail.clone(),
            silence: spec.silence,
        });
        RecordPhase::Recording {
            id,
            deadline: now + spec.max_length,
        }
    }

    fn on_record_event(&mut self, now: Instant, mut rec: Box<Recording>, event: Event) -> Wait {
        let next_phase = match (&rec.phase, event) {
            (RecordPhase::Greeting(playing), Event::Digit(_)) => {
                // The digit skips the greeting and is dropped.
                if let Playing::Media(_) = playing {
                    self.actions.push_back(Action::StopPlayback);
                }
                self.after_greeting(now, &rec.spec)
            }
            (RecordPhase::Greeting(Playing::Media(id)), Event::PlaybackEnded(ended))
                if *id == ended =>
            {
                self.after_greeting(now, &rec.spec)
            }
            (RecordPhase::Greeting(Playing::Silence(at)), Event::Timeout) if *at <= now => {
                self.after_greeting(now, &rec.spec)
            }
            (RecordPhase::Beep(id), Event::PlaybackEnded(ended)) if *id == ended => {
                self.start_recording(now, &rec.spec)
            }
            (
                &RecordPhase::Recording { id, .. } | &RecordPhase::Stopping { id, .. },
                Event::RecordingDone(done, recording_id),
            ) if id == done => {
                // Normally after StopRecording; earlier when the recorder gave up.
                return self.recorded(&rec.spec, recording_id);
            }
            (&RecordPhase::Recording { id, deadline }, event) => {
                let stop = match event {
                    Event::Digit(d) => rec.spec.terminator == Some(d),
                    Event::Silence => true,
                    Event::Timeout => deadline <= now,
                    _ => false,
                };
                if !stop {
                    return Wait::Record(rec);
                }
                self.actions.push_back(Action::StopRecording { id });
                RecordPhase::Stopping {
                    id,
                    deadline: now + STOP_RECORDING_TIMEOUT,
                }
            }
            (&RecordPhase::Stopping { deadline, .. }, Event::Timeout) if deadline <= now => {
                tracing::warn!("the recording never reported its end: going on without it");
                return self.recorded(&rec.spec, None);
            }
            // Digits while beeping or recording are not typed ahead: they were for this step.
            _ => return Wait::Record(rec),
        };
        rec.phase = next_phase;
        Wait::Record(rec)
    }

    fn recorded(&mut self, spec: &RecordSpec, recording_id: Option<String>) -> Wait {
        match recording_id {
            Some(recording_id) => self.set(&spec.into, recording_id),
            None => tracing::warn!("the recording failed"),
        }
        self.next()
    }

    // ----- helpers -----

    /// Plays `prompt` (templates filled), or starts the timer of a silence.
    fn play(&mut self, now: Instant, prompt: &Prompt, barge_in: bool) -> Playing {
        let prompt = match prompt {
            Prompt::Silence(d) => return Playing::Silence(now + *d),
            Prompt::Say { text, voice } => Prompt::Say {
                text: super::plan::Template(render(text, &self.attrs)),
                voice: voice.clone(),
            },
            other => other.clone(),
        };
        let id = self.new_id();
        self.actions.push_back(Action::Play {
            id,
            prompt,
            barge_in,
        });
        Playing::Media(id)
    }

    fn set(&mut self, name: &str, value: String) {
        self.attrs.insert(name.to_owned(), value.clone());
        self.actions.push_back(Action::SetAttribute {
            name: name.to_owned(),
            value,
        });
    }

    fn new_id(&mut self) -> u64 {
        self.last_id += 1;
        self.last_id
    }

    fn finish(&mut self, action: Action) {
        self.actions.push_back(action);
        self.wait = Wait::Finished;
    }

    /// The step to run now (cloned: the plan is shared), or `None` at the end of its list.
    fn current_step(&self) -> Option<Step> {
        let frame = self.frames.last()?;
        match &frame.code {
            Code::Flow(name) => self.plan.flows.get(name)?.steps.get(frame.index).cloned(),
            Code::Webhook(steps) => steps.get(frame.index).cloned(),
        }
    }

    /// Remembers that `step` starts now (bounded: a flow that never lets the actor poll
    /// keeps only the latest).
    fn note_step(&mut self, step: &Step) {
        if self.entered.len() >= 256 {
            self.entered.pop_front();
        }
        let index = self.frames.last().map_or(0, |f| f.index);
        let entered = StepEntered {
            flow: self.flow_name().to_owned(),
            index,
            kind: step_kind_name(&step.kind),
            webhook: self.frames.len() > 1,
        };
        let before = self.popped + self.actions.len() as u64;
        self.entered.push_back((before, entered));
    }

    /// The flow the call is in (for webhook steps: the flow whose webhook they came from).
    fn flow_name(&self) -> &str {
        match self.frames.first().map(|f| &f.code) {
            Some(Code::Flow(name)) => name,
            _ => "",
        }
    }

    /// On to the next step.
    fn next(&mut self) -> Wait {
        if let Some(frame) = self.frames.last_mut() {
            frame.index += 1;
        }
        Wait::Running
    }

    /// To `target`, or (none) the next step.
    fn go(&mut self, target: Option<&Target>) -> Wait {
        match target {
            Some(target) => self.jump(target),
            None => self.next(),
        }
    }

    /// To `target`: leaves any webhook steps for good. An unknown flow or label (the plan
    /// checker rejects them, but webhook steps are not checked against the plan) hangs up.
    fn jump(&mut self, target: &Target) -> Wait {
        // `#label` inside a webhook's steps names a label of those steps first (the checker
        // resolves it the same way), then one of the flow it was called from.
        if target.flow.is_none()
            && let Some(label) = &target.label
            && let Some(frame) = self.frames.last_mut()
            && let Code::Webhook(steps) = &frame.code
            && let Some(index) = steps.iter().position(|s| s.label.as_deref() == Some(label))
        {
            frame.index = index;
            return Wait::Running;
        }
        let flow = target
            .flow
            .clone()
            .unwrap_or_else(|| self.flow_name().to_owned());
        let index = match self.plan.flows.get(&flow) {
            Some(f) => match &target.label {
                Some(label) => f.label(label),
                None => Some(0),
            },
            None => None,
        };
        let Some(index) = index else {
            tracing::warn!(%target, "no such flow or label: hanging up");
            self.finish(Action::Hangup {
                cause: HangupCause::Normal,
            });
            return Wait::Finished;
        };
        self.frames.clear();
        self.frames.push(Frame {
            code: Code::Flow(flow),
            index,
        });
        Wait::Running
    }

    /// The session context a webhook is POSTed: `flow` is the flow the call is in, `step`
    /// the index of the webhook step in its list (the flow, or the steps of an earlier
    /// webhook reply).
    fn context(&self) -> serde_json::Value {
        let attr = |name: &str| self.attrs.get(name).cloned();
        serde_json::json!({
            "event": "ivr.webhook",
            "session_id": attr("session_id"),
            "call_id": attr("call_id"),
            "caller": attr("caller"),
            "called": attr("called"),
            "attributes": self.attrs,
            "flow": self.flow_name(),
            "step": self.frames.last().map_or(0, |f| f.index),
        })
    }
}

impl Collector {
    fn poll_timeout(&self) -> Option<Instant> {
        match self.playing {
            Some(Playing::Silence(at)) => Some(at),
            Some(Playing::Media(_)) => None,
            None => self.deadline,
        }
    }

    /// A digit, once the prompts are over.
    fn digit(&mut self, now: Instant, d: char) -> Collected {
        if self.terminator == Some(d) {
            return Collected::Digits(std::mem::take(&mut self.digits));
        }
        self.digits.push(d);
        if self.digits.chars().count() >= self.max_digits {
            return Collected::Digits(std::mem::take(&mut self.digits));
        }
        self.deadline = Some(now + self.inter_digit_timeout);
        Collected::Waiting
    }
}

/// `pattern` matches the whole of `s` (however the pattern is anchored).
fn full_match(pattern: &super::plan::Pattern, s: &str) -> bool {
    // The whole-string form of each pattern, compiled once per process (plans hold a few
    // dozen patterns; the map is emptied if reloads ever fill it).
    static WHOLE: std::sync::Mutex<Option<std::collections::HashMap<String, regex::Regex>>> =
        std::sync::Mutex::new(None);
    let mut cache = WHOLE.lock().unwrap_or_else(|e| e.into_inner());
    let map = cache.get_or_insert_with(Default::default);
    if map.len() > 1024 {
        map.clear();
    }
    if let Some(whole) = map.get(pattern.as_str()) {
        return whole.is_match(s);
    }
    match regex::Regex::new(&format!("^(?:{})$", pattern.as_str())) {
        Ok(whole) => {
            let hit = whole.is_match(s);
            map.insert(pattern.as_str().to_owned(), whole);
            hit
        }
        // Cannot happen (the pattern compiled once already); be strict if it does.
        Err(_) => pattern.0.find(s).is_some_and(|m| m.len() == s.len()),
    }
}

/// The name of a step's kind, as written in a dialplan.
fn step_kind_name(kind: &StepKind) -> &'static str {
    match kind {
        StepKind::Answer => "answer",
        StepKind::Play { .. } => "play",
        StepKind::Gather(_) => "gather",
        StepKind::Menu(_) => "menu",
        StepKind::Set(_) => "set",
        StepKind::If(_) => "if",
        StepKind::Switch(_) => "switch",
        StepKind::Goto(_) => "goto",
        StepKind::Dial(_) => "dial",
        StepKind::Queue(_) => "queue",
        StepKind::Voicemail(_) => "voicemail",
        StepKind::Record(_) => "record",
        StepKind::RecordCall => "record_call",
        StepKind::SendMessage { .. } => "send_message",
        StepKind::Transfer(_) => "transfer",
        StepKind::Hangup(_) => "hangup",
        StepKind::Webhook(_) => "webhook",
        StepKind::Pause(_) => "pause",
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::ivr::plan::{
        Flow, If, Pattern, Pos, Record, RingGroup, Switch, Template, Voicemail, Webhook,
    };

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn step(kind: StepKind) -> Step {
        Step {
            label: None,
            kind,
            at: Pos::default(),
        }
    }

    fn labelled(label: &str, kind: StepKind) -> Step {
        Step {
            label: Some(label.to_owned()),
            ..step(kind)
        }
    }

    fn plan(flows: Vec<(&str, Vec<Step>)>) -> Dialplan {
        Dialplan {
            flows: flows
                .into_iter()
                .map(|(name, steps)| {
                    let flow = Flow {
                        name: name.to_owned(),
                        steps,
                        at: Pos::default(),
                    };
                    (name.to_owned(), flow)
                })
                .collect(),
            ..Dialplan::default()
        }
    }

    fn add_group(plan: &mut Dialplan, members: &[&str], strategy: Strategy, cursor: usize) {
        plan.ring_groups.insert(
            "sales".to_owned(),
            RingGroup {
                name: "sales".to_owned(),
                members: members.iter().map(|m| m.to_string()).collect(),
                strategy,
                ring_timeout: secs(10),
                cursor: AtomicUsize::new(cursor),
                at: Pos::default(),
            },
        );
    }

    fn attrs() -> Attributes {
        [
            ("caller", "1001"),
            ("called", "2001"),
            ("call_id", "c1"),
            ("session_id", "s1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    fn start(plan: Dialplan, now: Instant) -> Interpreter {
        Interpreter::new(Arc::new(plan), "main", attrs(), now)
    }

    fn drain(interp: &mut Interpreter) -> Vec<Action> {
        std::iter::from_fn(|| interp.poll_action()).collect()
    }

    fn file(name: &str) -> Prompt {
        Prompt::File(name.to_owned())
    }

    fn play(name: &str) -> StepKind {
        StepKind::Play {
            prompt: file(name),
            barge_in: false,
        }
    }

    fn hangup(cause: HangupCause) -> StepKind {
        StepKind::Hangup(cause)
    }

    fn played(id: u64, name: &str, barge_in: bool) -> Action {
        Action::Play {
            id,
            prompt: file(name),
            barge_in,
        }
    }

    fn attr(name: &str, value: &str) -> Action {
        Action::SetAttribute {
            name: name.to_owned(),
            value: value.to_owned(),
        }
    }

    fn hung_up(cause: HangupCause) -> Action {
        Action::Hangup { cause }
    }

    fn label(label: &str) -> Target {
        Target {
            flow: None,
            label: Some(label.to_owned()),
        }
    }

    fn flow(flow: &str) -> Target {
        Target {
            flow: Some(flow.to_owned()),
            label: None,
        }
    }

    fn done(id: u64) -> Input {
        Input::PlaybackDone {
            id,
            interrupted: false,
        }
    }

    fn digits(interp: &mut Interpreter, now: Instant, digits: &str) {
        for d in digits.chars() {
            interp.handle_input(now, Input::Digit(d));
        }
    }

    fn pattern(re: &str) -> Pattern {
        Pattern(regex::Regex::new(re).expect("test pattern"))
    }

    /// Enter up to 4 digits (at least 1), `#` ends; 5 s to the first digit, 3 s between.
    fn gather() -> Gather {
        Gather {
            into: "acct".to_owned(),
            prompt: Some(file("enter")),
            min_digits: 1,
            max_digits: 4,
            terminator: Some('#'),
            first_timeout: secs(5),
            inter_digit_timeout: secs(3),
            tries: 3,
            invalid_prompt: Some(file("invalid")),
            timeout_prompt: Some(file("timeout")),
            pattern: None,
            on_failure: None,
            sensitive: false,
        }
    }

    /// 1: the flow `sales`; 9: repeat. 5 s for the digit.
    fn menu() -> Menu {
        Menu {
            greeting: file("long"),
            short_greeting: Some(file("short")),
            options: vec![
                ('1', MenuChoice::Go(flow("sales"))),
                ('9', MenuChoice::Repeat),
            ],
            timeout: secs(5),
            tries: 3,
            invalid_prompt: Some(file("invalid")),
            timeout_prompt: Some(file("timeout")),
            on_failure: None,
            into: "menu".to_owned(),
        }
    }

    // ----- basic steps -----

    #[test]
    fn answer_play_then_end_of_flow_hangs_up() {
        let t0 = Instant::now();
        let mut i = start(
            plan(vec![(
                "main",
                vec![
                    step(StepKind::Answer),
                    step(StepKind::Answer),
                    step(play("hello")),
                ],
            )]),
            t0,
        );
        assert_eq!(drain(&mut i), [Action::Answer, played(1, "hello", false)]);
        assert!(i.answered());
        assert!(!i.is_finished());
        assert_eq!(i.poll_timeout(), None);
        i.handle_input(t0 + secs(2), done(1));
        assert_eq!(drain(&mut i), [hung_up(HangupCause::Normal)]);
        assert!(i.is_finished());
    }

    #[test]
    fn entered_steps_are_reported_before_the_actions_they_cause() {
        let t0 = Instant::now();
        let mut i = start(
            plan(vec![(
                "main",
                vec![
                    step(StepKind::Answer),
                    step(StepKind::Answer),
                    step(play("hello")),
                ],
            )]),
            t0,
        );
        // Interleaved as the actor polls: steps first, then the next action.
        let mut seen = Vec::new();
        loop {
            while let Some(s) = i.poll_step() {
                seen.push(format!("step {} {}", s.index, s.kind));
            }
            match i.poll_action() {
                Some(a) => seen.push(format!("{a:?}").chars().take(6).collect()),
                None => break,
            }
        }
        assert_eq!(
            seen,
            [
                "step 0 answer",
                "Answer",
                "step 1 answer",
                "step 2 play",
                "Play {"
            ]
        );
        i.handle_input(t0 + secs(2), done(1));
        assert_eq!(i.poll_step(), None, "the end of the flow is no step");
        assert_eq!(drain(&mut i), [hung_up(HangupCause::Normal)]);
    }

    #[test]
    fn hangup_step_gives_its_cause_and_later_inputs_are_ignored() {
        let t0 = Instant::now();
        let mut i = start(
            plan(vec![(
                "main",
                vec![step(hangup(HangupCause::Busy)), step(play("never"))],
            )]),
            t0,
        );
        assert_eq!(drain(&mut i), [hung_up(HangupCause::Busy)]);
        assert!(i.is_finished());
        assert!(!i.answered());
        i.handle_input(t0, Input::Digit('1'));
        i.handle_timeout(t0 + secs(100));
        assert_eq!(drain(&mut i), []);
    }

    #[test]
    fn new_answered_skips_the_answer() {
        let t0 = Instant::now();
        let p = plan(vec![("main", vec![step(StepKind::Answer)])]);
        let mut i = Interpreter::new_answered(Arc::new(p), "main", attrs(), t0);
        assert_eq!(drain(&mut i), [hung_up(HangupCause::Normal)]);
    }

    #[test]
    fn say_prompt_is_rendered_from_the_attributes() {
        let t0 = Instant::now();
        let say = Prompt::Say {
            text: Template("You called {{called}} from {{ caller }}".to_owned()),
            voice: Some("en".to_owned()),
        };
        let mut i = start(
            plan(vec![(
                "main",
                vec![step(StepKind::Play {
                    prompt: say,
                    barge_in: true,
                })],
            )]),
            t0,
        );
        let rendered = Prompt::Say {
            text: Template("You called 2001 from 1001".to_owned()),
            voice: Some("en".to_owned()),
        };
        assert_eq!(
            drain(&mut i),
            [Action::Play {
                id: 1,
                prompt: rendered,
                barge_in: true
            }]
        );
    }

    #[test]
    fn stale_playback_done_is_ignored_and_failed_playback_goes_on() {
        let t0 = Instant::now();
        let mut i = start(
            plan(vec![("main", vec![step(play("a")), step(play("b"))])]),
            t0,
        );
        assert_eq!(drain(&mut i), [played(1, "a", false)]);
        i.handle_input(t0, done(7));
        assert_eq!(drain(&mut i), []);
        i.handle_input(
            t0,
            Input::PlaybackFailed {
                id: 1,
                error: "no such file".to_owned(),
            },
        );
        assert_eq!(drain(&mut i), [played(2, "b", false)]);
    }

    #[test]
    fn silence_prompt_and_pause_are_timers() {
        let t0 = Instant::now();
        let mut i = start(
            plan(vec![(
                "main",
                vec![
                    step(StepKind::Play {
                        prompt: Prompt::Silence(secs(1)),
                        barge_in: false,
                    }),
                    step(StepKind::Pause(secs(2))),
                    step(play("after")),
                ],
            )]),
            t0,
        );
        assert_eq!(drain(&mut i), []);
        assert_eq!(i.poll_timeout(), Some(t0 + secs(1)));
        i.handle_timeout(t0 + Duration::from_millis(999));
        assert_eq!(i.poll_timeout(), Some(t0 + secs(1)));
        i.handle_timeout(t0 + secs(1));
        assert_eq!(i.poll_timeout(), Some(t0 + secs(3)));
        i.handle_timeout(t0 + secs(2));
        assert_eq!(drain(&mut i), []);
        i.handle_timeout(t0 + secs(3));
        assert_eq!(drain(&mut i), [played(1, "after", false)]);
        assert_eq!(i.poll_timeout(), None);
    }

    #[test]
    fn record_call_and_transfer() {
        let t0 = Instant::now();
        let mut i = start(
            plan(vec![(
                "main",
                vec![
                    step(StepKind::RecordCall),
                    step(StepKind::Transfer(Template("9{{called}}".to_owned()))),
                    step(play("never")),
                ],
            )]),
            t0,
        );
        assert_eq!(
            drain(&mut i),
            [
                Action::RecordCall,
                Action::Transfer {
                    number: "92001".to_owned()
                }
            ]
        );
        assert!(i.is_finished());
    }

    // ----- gather -----

    fn gather_plan(g: Gather) -> Dialplan {
        plan(vec![(
            "main",
            vec![step(StepKind::Gather(g)), step(hangup(HangupCause::Normal))],
        )])
    }

    #[test]
    fn gather_collects_digits_until_the_terminator() {
        let t0 = Instant::now();
        let mut i = start(gather_plan(gather()), t0);
        assert_eq!(drain(&mut i), [played(1, "enter", true)]);
        assert_eq!(i.poll_timeout(), None, "no timer while the prompt plays");
        i.handle_input(t0 + secs(2), done(1));
        assert_eq!(
            i.poll_timeout(),
            Some(t0 + secs(7)),
            "first digit: from prompt end"
        );
        digits(&mut i, t0 + secs(3), "12");
        assert_eq!(i.poll_timeout(), Some(t0 + secs(6)), "inter-digit");
        assert_eq!(drain(&mut i), []);
        digits(&mut i, t0 + secs(4), "#");
        assert_eq!(
            drain(&mut i),
            [attr("acct", "12"), hung_up(HangupCause::Normal)]
        );
        assert_eq!(i.attributes().get("acct").map(String::as_str), Some("12"));
    }

    #[test]
    fn a_sensitive_gather_stores_its_digits_masked() {
        let t0 = Instant::now();
        let card = Gather {
            max_digits: 19,
            sensitive: true,
            ..gather()
        };
        let mut i = start(gather_plan(card), t0);
        drain(&mut i);
        assert!(
            i.collecting_sensitive(),
            "the caller masks the digits it reports"
        );
        i.handle_input(t0 + secs(1), done(1));
        digits(&mut i, t0 + secs(2), "4111111111111111#");
        assert_eq!(
            drain(&mut i),
            [attr("acct", "•••• 1111"), hung_up(HangupCause::Normal)]
        );
        assert!(!i.collecting_sensitive());
        let mut pin = start(
            gather_plan(Gather {
                sensitive: true,
                ..gather()
            }),
            t0,
        );
        drain(&mut pin);
        digits(&mut pin, t0 + secs(1), "1234#");
        assert_eq!(
            pin.attributes().get("acct").map(String::as_str),
            Some("••••")
        );
        let mut plain = start(gather_plan(gather()), t0);
        drain(&mut plain);
        assert!(!plain.collecting_sensitive());
    }

    #[test]
    fn gather_ends_at_max_digits() {
        let t0 = Instant::now();
        let mut i = start(gather_plan(gather()), t0);
        i.handle_input(t0, done(1));
        drain(&mut i);
        digits(&mut i, t0, "123");
        assert_eq!(drain(&mut i), []);
        digits(&mut i, t0, "4");
        assert_eq!(
            drain(&mut i),
            [attr("acct", "1234"), hung_up(HangupCause::Normal)]
        );
    }

    #[test]
    fn a_digit_barges_into_the_gather_prompt() {
        let t0 = Instant::now();
        let mut i = start(gather_plan(gather()), t0);
        assert_eq!(drain(&mut i), [played(1, "enter", true)]);
        digits(&mut i, t0, "5");
        assert_eq!(drain(&mut i), [Action::StopPlayback]);
        assert_eq!(i.poll_timeout(), Some(t0 + secs(3)));
        // The barged prompt's PlaybackDone changes nothing.
        i.handle_input(
            t0,
            Input::PlaybackDone {
                id: 1,
                interrupted: true,
            },
        );
        digits(&mut i, t0 + secs(1), "#");
        assert_eq!(
            drain(&mut i),
            [attr("acct", "5"), hung_up(HangupCause::Normal)]
        );
    }

    #[test]
    fn inter_digit_timeout_evaluates_partial_input() {
        let t0 = Instant::now();
        let mut i = start(
            gather_plan(Gather {
                min_digits: 2,
                ..gather()
            }),
            t0,
        );
        i.handle_input(t0, done(1));
        drain(&mut i);
        digits(&mut i, t0 + secs(1), "12");
        i.handle_timeout(t0 + secs(3));
        assert_eq!(drain(&mut i), []);
        i.handle_timeout(t0 + secs(4));
        assert_eq!(
            drain(&mut i),
            [attr("acct", "12"), hung_up(HangupCause::Normal)]
        );
    }

    #[test]
    fn first_digit_timeout_plays_timeout_prompt_retries_then_on_failure() {
        let t0 = Instant::now();
        let g = Gather {
            tries: 2,
            on_failure: Some(flow("bye")),
            ..gather()
        };
        let p = plan(vec![
            (
                "main",
                vec![step(StepKind::Gather(g)), step(hangup(HangupCause::Busy))],
            ),
            ("bye", vec![step(play("bye"))]),
        ]);
        let mut i = start(p, t0);
        assert_eq!(drain(&mut i), [played(1, "enter", true)]);
        i.handle_input(t0, done(1));
        i.handle_timeout(t0 + secs(5));
        assert_eq!(drain(&mut i), [played(2, "timeout", true)]);
        i.handle_input(t0 + secs(6), done(2));
        assert_eq!(drain(&mut i), [played(3, "enter", true)]);
        i.handle_input(t0 + secs(7), done(3));
        assert_eq!(i.poll_timeout(), Some(t0 + secs(12)));
        i.handle_timeout(t0 + secs(12));
        assert_eq!(drain(&mut i), [played(4, "bye", false)]);
        assert!(!i.attributes().contains_key("acct"));
    }

    #[test]
    fn invalid_input_plays_the_invalid_prompt_then_the_prompt_again() {
        let t0 = Instant::now();
        let g = Gather {
            pattern: Some(pattern(r"\d{3}")),
            ..gather()
        };
        let mut i = start(gather_plan(g), t0);
        i.handle_input(t0, done(1));
        drain(&mut i);
        // Four digits contain a match of \d{3} but the whole input must match.
        digits(&mut i, t0, "1234");
        assert_eq!(drain(&mut i), [played(2, "invalid", true)]);
        i.handle_input(t0, done(2));
        assert_eq!(drain(&mut i), [played(3, "enter", true)]);
        i.handle_input(t0, done(3));
        digits(&mut i, t0, "12#");
        assert_eq!(drain(&mut i), [played(4, "invalid", true)]);
        // A digit cuts both the invalid prompt and the prompt after it.
        digits(&mut i, t0, "987#");
        assert_eq!(
            drain(&mut i),
            [
                Action::StopPlayback,
                attr("acct", "987"),
                hung_up(HangupCause::Normal)
            ]
        );
    }

    #[test]
    fn too_short_input_at_the_last_try_goes_to_the_next_step() {
        let t0 = Instant::now();
        let g = Gather {
            min_digits: 3,
            tries: 1,
            ..gather()
        };
        let mut i = start(gather_plan(g), t0);
        i.handle_input(t0, done(1));
        drain(&mut i);
        digits(&mut i, t0, "1#");
        assert_eq!(drain(&mut i), [hung_up(HangupCause::Normal)]);
        assert!(!i.attributes().contains_key("acct"));
    }

    #[test]
    fn type_ahead_during_a_plain_play_feeds_the_next_gather_without_its_prompt() {
        let t0 = Instant::now();
        let p = plan(vec![(
            "main",
            vec![
                step(play("welcome")),
                step(StepKind::Gather(gather())),
                step(hangup(HangupCause::Normal)),
            ],
        )]);
        let mut i = start(p, t0);
        assert_eq!(drain(&mut i), [played(1, "welcome", false)]);
        digits(&mut i, t0, "42#");
        assert_eq!(drain(&mut i), [], "a non-barge-in play goes on");
        i.handle_input(t0 + secs(3), done(1));
        assert_eq!(
            drain(&mut i),
            [attr("acct", "42"), hung_up(HangupCause::Normal)]
        );
    }

    #[test]
    fn partial_type_ahead_waits_for_more_digits() {
        let t0 = Instant::now();
        let p = plan(vec![(
            "main",
            vec![
                step(StepKind::Pause(secs(1))),
                step(StepKind::Gather(gather())),
                step(hangup(HangupCause::Normal)),
            ],
        )]);
        let mut i = start(p, t0);
        digits(&mut i, t0, "4");
        i.handle_timeout(t0 + secs(1));
        assert_eq!(drain(&mut i), [], "no prompt: the caller is typing");
        assert_eq!(i.poll_timeout(), Some(t0 + secs(4)));
        digits(&mut i, t0 + secs(2), "2#");
        assert_eq!(
            drain(&mut i),
            [attr("acct", "42"), hung_up(HangupCause::Normal)]
        );
    }

    #[test]
    fn type_ahead_keeps_at_most_32_digits() {
        let t0 = Instant::now();
        let g = Gather {
            max_digits: 40,
            terminator: None,
            ..gather()
        };
        let p = plan(vec![(
            "main",
            vec![step(play("welcome")), step(StepKind::Gather(g))],
        )]);
        let mut i = start(p, t0);
        drain(&mut i);
        digits(&mut i, t0, &"1".repeat(40));
        i.handle_input(t0, done(1));
        assert_eq!(drain(&mut i), []);
        i.handle_timeout(t0 + secs(3));
        assert_eq!(drain(&mut i)[0], attr("acct", &"1".repeat(32)));
    }

    // ----- menu -----

    fn menu_plan(m: Menu) -> Dialplan {
        plan(vec![
            (
                "main",
                vec![
                    step(StepKind::Menu(m)),
                    step(hangup(HangupCause::Busy)),
                    labelled("fail", play("sorry")),
                ],
            ),
            ("sales", vec![step(play("sales"))]),
        ])
    }

    #[test]
    fn menu_option_goes_to_its_flow() {
        let t0 = Instant::now();
        let mut i = start(menu_plan(menu()), t0);
        assert_eq!(drain(&mut i), [played(1, "long", true)]);
        digits(&mut i, t0, "1");
        assert_eq!(
            drain(&mut i),
            [
                Action::StopPlayback,
                attr("menu", "1"),
                played(2, "sales", false)
            ]
        );
    }

    #[test]
    fn menu_repeat_replays_the_long_greeting_without_using_a_try() {
        let t0 = Instant::now();
        let mut i = start(menu_plan(Menu { tries: 2, ..menu() }), t0);
        assert_eq!(drain(&mut i), [played(1, "long", true)]);
        i.handle_input(t0, done(1));
        digits(&mut i, t0, "9");
        assert_eq!(drain(&mut i), [played(2, "long", true)]);
        i.handle_input(t0, done(2));
        digits(&mut i, t0, "9");
        assert_eq!(drain(&mut i), [played(3, "long", true)]);
        i.handle_input(t0, done(3));
        digits(&mut i, t0, "5");
        assert_eq!(drain(&mut i), [played(4, "invalid", true)]);
        i.handle_input(t0, done(4));
        assert_eq!(drain(&mut i), [played(5, "short", true)]);
        i.handle_input(t0, done(5));
        i.handle_timeout(t0 + secs(5));
        // Two tries used (the repeats did not count): on to the next step.
        assert_eq!(drain(&mut i), [hung_up(HangupCause::Busy)]);
        assert!(!i.attributes().contains_key("menu"));
    }

    #[test]
    fn menu_invalid_choice_plays_invalid_then_short_greeting() {
        let t0 = Instant::now();
        let mut i = start(menu_plan(menu()), t0);
        i.handle_input(t0, done(1));
        digits(&mut i, t0, "7");
        assert_eq!(
            drain(&mut i),
            [played(1, "long", true), played(2, "invalid", true)]
        );
        i.handle_input(t0, done(2));
        assert_eq!(drain(&mut i), [played(3, "short", true)]);
        i.handle_input(t0, done(3));
        digits(&mut i, t0, "1");
        assert_eq!(
            drain(&mut i),
            [attr("menu", "1"), played(4, "sales", false)]
        );
    }

    #[test]
    fn menu_without_short_greeting_replays_the_long_one() {
        let t0 = Instant::now();
        let m = Menu {
            short_greeting: None,
            invalid_prompt: None,
            ..menu()
        };
        let mut i = start(menu_plan(m), t0);
        i.handle_input(t0, done(1));
        digits(&mut i, t0, "7");
        assert_eq!(
            drain(&mut i),
            [played(1, "long", true), played(2, "long", true)]
        );
    }

    #[test]
    fn menu_timeouts_go_to_on_failure() {
        let t0 = Instant::now();
        let m = Menu {
            tries: 2,
            on_failure: Some(label("fail")),
            ..menu()
        };
        let mut i = start(menu_plan(m), t0);
        assert_eq!(drain(&mut i), [played(1, "long", true)]);
        i.handle_input(t0, done(1));
        assert_eq!(i.poll_timeout(), Some(t0 + secs(5)));
        i.handle_timeout(t0 + secs(5));
        assert_eq!(drain(&mut i), [played(2, "timeout", true)]);
        i.handle_input(t0 + secs(6), done(2));
        assert_eq!(drain(&mut i), [played(3, "short", true)]);
        i.handle_input(t0 + secs(7), done(3));
        assert_eq!(i.poll_timeout(), Some(t0 + secs(12)));
        i.handle_timeout(t0 + secs(12));
        assert_eq!(drain(&mut i), [played(4, "sorry", false)]);
    }

    // ----- set, if, switch, goto -----

    #[test]
    fn set_if_switch_and_goto_with_labels() {
        let t0 = Instant::now();
        let tpl = |s: &str| Template(s.to_owned());
        let if_ = |attr: &str, test: Test, then: Target, otherwise: Option<Target>| {
            step(StepKind::If(If {
                attr: attr.to_owned(),
                test,
                then,
                otherwise,
            }))
        };
        let bad = Target {
            flow: Some("main".to_owned()),
            label: Some("bad".to_owned()),
        };
        let p = plan(vec![
            (
                "main",
                vec![
                    step(StepKind::Set(vec![
                        ("a".to_owned(), tpl("x")),
                        ("b".to_owned(), tpl("{{a}}y")),
                    ])),
                    if_("b", Test::Equals(tpl("{{a}}y")), label("sw"), None),
                    step(hangup(HangupCause::Busy)),
                    labelled(
                        "sw",
                        StepKind::Switch(Switch {
                            attr: "a".to_owned(),
                            cases: vec![
                                ("z".to_owned(), label("bad")),
                                ("x".to_owned(), flow("other")),
                            ],
                            default: None,
                        }),
                    ),
                    labelled("bad", hangup(HangupCause::Rejected)),
                    labelled("done", play("done")),
                ],
            ),
            (
                "other",
                vec![
                    if_("missing", Test::Present, bad.clone(), None),
                    if_("a", Test::NotEquals(tpl("x")), bad.clone(), None),
                    if_(
                        "a",
                        Test::OneOf(vec!["w".into(), "x".into()]),
                        label("m"),
                        Some(bad.clone()),
                    ),
                    step(hangup(HangupCause::Busy)),
                    Step {
                        label: Some("m".to_owned()),
                        ..if_(
                            "b",
                            Test::Matches(pattern("x")),
                            bad.clone(),
                            Some(label("sw")),
                        )
                    },
                    step(hangup(HangupCause::Busy)),
                    labelled(
                        "sw",
                        StepKind::Switch(Switch {
                            attr: "nothing".to_owned(),
                            cases: vec![("".to_owned(), bad)],
                            default: Some(label("end")),
                        }),
                    ),
                    step(hangup(HangupCause::Busy)),
                    labelled(
                        "end",
                        StepKind::Goto(Target {
                            flow: Some("main".to_owned()),
                            label: Some("done".to_owned()),
                        }),
                    ),
                ],
            ),
        ]);
        let mut i = start(p, t0);
        assert_eq!(
            drain(&mut i),
            [attr("a", "x"), attr("b", "xy"), played(1, "done", false)]
        );
        assert_eq!(i.attributes().get("b").map(String::as_str), Some("xy"));
    }

    #[test]
    fn if_without_otherwise_and_switch_without_default_go_to_the_next_step() {
        let t0 = Instant::now();
        let p = plan(vec![(
            "main",
            vec![
                step(StepKind::If(If {
                    attr: "caller".to_owned(),
                    test: Test::Equals(Template("9999".to_owned())),
                    then: label("bad"),
                    otherwise: None,
                })),
                step(StepKind::Switch(Switch {
                    attr: "caller".to_owned(),
                    cases: vec![("9999".to_owned(), label("bad"))],
                    default: None,
                })),
                step(play("ok")),
                labelled("bad", hangup(HangupCause::Rejected)),
            ],
        )]);
        let mut i = start(p, t0);
        assert_eq!(drain(&mut i), [played(1, "ok", false)]);
    }

    #[test]
    fn goto_loop_hangs_up() {
        let t0 = Instant::now();
        let p = plan(vec![(
            "main",
            vec![
                labelled(
                    "top",
                    StepKind::Set(vec![("n".to_owned(), Template("1".to_owned()))]),
                ),
                step(StepKind::Goto(label("top"))),
            ],
        )]);
        let mut i = start(p, t0);
        let actions = drain(&mut i);
        assert_eq!(actions.last(), Some(&hung_up(HangupCause::Normal)));
        // One Set in every two steps, until the guard stops the run.
        assert_eq!(actions.len(), MAX_STEPS_WITHOUT_WAIT / 2 + 1);
        assert!(i.is_finished());
    }

    #[test]
    fn a_label_in_webhook_steps_is_found_among_those_steps() {
        let t0 = Instant::now();
        let p = plan(vec![(
            "main",
            vec![step(StepKind::Webhook(Webhook {
                url: Template("http://x/".into()),
                timeout: Duration::from_secs(2),
                fallback: None,
            }))],
        )]);
        let mut i = start(p, t0);
        let id = match drain(&mut i).as_slice() {
            [Action::Webhook { id, .. }] => *id,
            other => panic!("expected one webhook, got {other:?}"),
        };
        let steps = vec![
            step(StepKind::Goto(label("end"))),
            step(StepKind::Set(vec![(
                "skipped".into(),
                Template("1".into()),
            )])),
            labelled(
                "end",
                StepKind::Set(vec![("reached".into(), Template("1".into()))]),
            ),
        ];
        i.handle_input(
            t0,
            Input::WebhookDone {
                id,
                result: Ok(steps),
            },
        );
        let actions = drain(&mut i);
        assert!(actions.contains(&Action::SetAttribute {
            name: "reached".into(),
            value: "1".into()
        }));
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, Action::SetAttribute { name, .. } if name == "skipped"))
        );
    }

    #[test]
    fn goto_an_unknown_label_hangs_up() {
        let t0 = Instant::now();
        let p = plan(vec![("main", vec![step(StepKind::Goto(label("nowhere")))])]);
        let mut i = start(p, t0);
        assert_eq!(drain(&mut i), [hung_up(HangupCause::Normal)]);
    }

    // ----- dial -----

    fn dial_plan(to: DialTarget, timeout: Option<Duration>) -> Dialplan {
        plan(vec![(
            "main",
            vec![
                step(StepKind::Dial(Dial { to, timeout })),
                step(play("sorry")),
            ],
        )])
    }

    fn dialed(id: u64, extensions: &[&str], timeout: Duration) -> Action {
        Action::Dial {
            id,
            extensions: extensions.iter().map(|e| e.to_string()).collect(),
            timeout,
        }
    }

    fn dial_done(id: u64, outcome: DialOutcome) -> Input {
        Input::DialDone { id, outcome }
    }

    fn queue_plan(exit: Option<&str>) -> Dialplan {
        let mut p = plan(vec![
            (
                "main",
                vec![
                    step(StepKind::Set(vec![(
                        "customer.vip".to_owned(),
                        Template("true".into()),
                    )])),
                    step(StepKind::Queue(crate::ivr::plan::QueueStep {
                        queue: "support".into(),
                        priority: Some(Template("{{customer.vip}}".into())),
                        skills: vec![Template("english:{{level}}".into())],
                    })),
                    step(StepKind::Hangup(HangupCause::Busy)),
                ],
            ),
            (
                "voicemail",
                vec![step(StepKind::Hangup(HangupCause::Normal))],
            ),
        ]);
        let def = crate::ivr::plan::QueueDef {
            name: "support".into(),
            strategy: crate::acd::engine::Strategy::LongestIdle,
            skills: Vec::new(),
            offer_timeout: secs(15),
            wrap_up: secs(10),
            service_level: secs(20),
            announce_every: secs(30),
            max_wait: Some(secs(120)),
            max_length: None,
            exit: exit.map(|f| Target {
                flow: Some(f.to_owned()),
                label: None,
            }),
            callback: false,
            calendar: None,
            escalations: Vec::new(),
            at: Pos::default(),
        };
        p.queues.insert("support".into(), def);
        p
    }

    #[test]
    fn queue_step_renders_priority_and_skills_and_an_answer_finishes() {
        let t0 = Instant::now();
        let mut attrs = attrs();
        attrs.insert("level".into(), "3".into());
        let mut i = Interpreter::new(Arc::new(queue_plan(None)), "main", attrs, t0);
        let actions: Vec<Action> = drain(&mut i)
            .into_iter()
            .filter(|a| !matches!(a, Action::SetAttribute { .. }))
            .collect();
        assert_eq!(
            actions,
            [Action::Queue {
                id: 1,
                queue: "support".into(),
                priority: 1,
                skills: vec![("english".into(), 3)],
            }]
        );
        i.handle_input(
            t0,
            Input::QueueDone {
                id: 1,
                outcome: QueueOutcome::Answered,
            },
        );
        assert!(i.is_finished());
    }

    #[test]
    fn queue_timeout_goes_to_the_queues_exit_or_else_the_next_step() {
        let t0 = Instant::now();
        for (exit, cause) in [
            (Some("voicemail"), HangupCause::Normal),
            (None, HangupCause::Busy),
        ] {
            let mut i = start(queue_plan(exit), t0);
            drain(&mut i);
            i.handle_input(
                t0 + secs(120),
                Input::QueueDone {
                    id: 1,
                    outcome: QueueOutcome::Timeout,
                },
            );
            let actions = drain(&mut i);
            assert!(
                actions.contains(&Action::SetAttribute {
                    name: "queue_status".into(),
                    value: "timeout".into()
                }),
                "{actions:?}"
            );
            assert_eq!(actions.last(), Some(&Action::Hangup { cause }), "{exit:?}");
        }
    }

    #[test]
    fn priorities_read_numbers_and_yes_no() {
        assert_eq!(parse_priority("true"), 1);
        assert_eq!(parse_priority("YES"), 1);
        assert_eq!(parse_priority("false"), 0);
        assert_eq!(parse_priority(""), 0);
        assert_eq!(parse_priority(" 7 "), 7);
        assert_eq!(parse_priority("-3"), -3);
        assert_eq!(parse_priority("99999"), 1000);
        assert_eq!(parse_priority("high"), 0);
    }

    #[test]
    fn dial_extension_answered_finishes() {
        let t0 = Instant::now();
        let ext = DialTarget::Extension(Template("{{called}}".to_owned()));
        let mut i = start(dial_plan(ext, None), t0);
        assert_eq!(drain(&mut i), [dialed(1, &["2001"], DEFAULT_DIAL_TIMEOUT)]);
        assert_eq!(i.poll_timeout(), None, "the actor owns the ring timeout");
        i.handle_input(t0 + secs(4), dial_done(1, DialOutcome::Answered));
        assert_eq!(
            drain(&mut i),
            [attr("dial_status", "answered"), attr("dialed", "2001")]
        );
        assert!(i.is_finished());
    }

    #[test]
    fn dial_busy_sets_dial_status_and_goes_on() {
        let t0 = Instant::now();
        let ext = DialTarget::Extension(Template("2002".to_owned()));
        let mut i = start(dial_plan(ext, Some(secs(12))), t0);
        assert_eq!(drain(&mut i), [dialed(1, &["2002"], secs(12))]);
        i.handle_input(t0, dial_done(9, DialOutcome::Answered));
        assert_eq!(drain(&mut i), [], "stale dial id");
        i.handle_input(t0, dial_done(1, DialOutcome::Busy));
        assert_eq!(
            drain(&mut i),
            [attr("dial_status", "busy"), played(2, "sorry", false)]
        );
        assert!(!i.is_finished());
    }

    #[test]
    fn the_default_ring_time_comes_from_the_options() {
        let t0 = Instant::now();
        let ext = DialTarget::Extension(Template("2001".to_owned()));
        let options = Options {
            answered: false,
            default_dial_timeout: secs(7),
        };
        let mut i =
            Interpreter::with_options(Arc::new(dial_plan(ext, None)), "main", attrs(), t0, options);
        assert_eq!(drain(&mut i), [dialed(1, &["2001"], secs(7))]);
    }

    #[test]
    fn digits_pressed_while_a_dial_rings_are_not_typed_ahead() {
        let t0 = Instant::now();
        let p = plan(vec![(
            "main",
            vec![
                step(StepKind::Dial(Dial {
                    to: DialTarget::Extension(Template("2001".to_owned())),
                    timeout: None,
                })),
                step(StepKind::Gather(gather())),
            ],
        )]);
        let mut i = start(p, t0);
        drain(&mut i);
        digits(&mut i, t0 + secs(1), "12");
        i.handle_input(t0 + secs(5), dial_done(1, DialOutcome::NoAnswer));
        let actions = drain(&mut i);
        // The gather's prompt plays: no digit was kept for it.
        assert!(
            actions.iter().any(|a| matches!(a, Action::Play { .. })),
            "{actions:?}"
        );
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, Action::SetAttribute { name, .. } if name == "acct")),
            "{actions:?}"
        );
    }

    #[test]
    fn sequential_group_rings_members_in_order() {
        let t0 = Instant::now();
        let mut p = dial_plan(DialTarget::Group("sales".to_owned()), None);
        add_group(&mut p, &["a", "b", "c"], Strategy::Sequential, 0);
        let mut i = start(p, t0);
        assert_eq!(drain(&mut i), [dialed(1, &["a"], secs(10))]);
        i.handle_input(t0 + secs(10), dial_done(1, DialOutcome::NoAnswer));
        assert_eq!(drain(&mut i), [dialed(2, &["b"], secs(10))]);
        i.handle_input(t0 + secs(11), dial_done(2, DialOutcome::Busy));
        assert_eq!(drain(&mut i), [dialed(3, &["c"], secs(10))]);
        i.handle_input(t0 + secs(12), dial_done(3, DialOutcome::Unavailable));
        assert_eq!(
            drain(&mut i),
            [
                attr("dial_status", "unavailable"),
                played(4, "sorry", false)
            ]
        );
    }

    #[test]
    fn sequential_group_answered_by_the_second_member() {
        let t0 = Instant::now();
        let mut p = dial_plan(DialTarget::Group("sales".to_owned()), None);
        add_group(&mut p, &["a", "b", "c"], Strategy::Sequential, 0);
        let mut i = start(p, t0);
        i.handle_input(t0, dial_done(1, DialOutcome::Failed));
        i.handle_input(t0, dial_done(2, DialOutcome::Answered));
        assert_eq!(
            drain(&mut i),
            [
                dialed(1, &["a"], secs(10)),
                dialed(2, &["b"], secs(10)),
                attr("dial_status", "answered"),
                attr("dialed", "b")
            ]
        );
        assert!(i.is_finished());
    }

    #[test]
    fn sequential_group_dial_timeout_caps_the_total() {
        let t0 = Instant::now();
        let mut p = dial_plan(DialTarget::Group("sales".to_owned()), Some(secs(25)));
        add_group(&mut p, &["a", "b", "c", "d"], Strategy::Sequential, 0);
        let mut i = start(p, t0);
        assert_eq!(drain(&mut i), [dialed(1, &["a"], secs(10))]);
        i.handle_input(t0 + secs(10), dial_done(1, DialOutcome::NoAnswer));
        assert_eq!(drain(&mut i), [dialed(2, &["b"], secs(10))]);
        i.handle_input(t0 + secs(20), dial_done(2, DialOutcome::NoAnswer));
        assert_eq!(drain(&mut i), [dialed(3, &["c"], secs(5))], "what is left");
        i.handle_input(t0 + secs(25), dial_done(3, DialOutcome::NoAnswer));
        assert_eq!(
            drain(&mut i),
            [attr("dial_status", "no_answer"), played(4, "sorry", false)]
        );
    }

    #[test]
    fn round_robin_starts_at_the_cursor() {
        let t0 = Instant::now();
        let mut p = dial_plan(DialTarget::Group("sales".to_owned()), None);
        add_group(&mut p, &["a", "b", "c"], Strategy::RoundRobin, 4);
        let p = Arc::new(p);
        let mut i = Interpreter::new(p.clone(), "main", attrs(), t0);
        assert_eq!(drain(&mut i), [dialed(1, &["b"], secs(10))]);
        i.handle_input(t0, dial_done(1, DialOutcome::NoAnswer));
        assert_eq!(drain(&mut i), [dialed(2, &["c"], secs(10))]);
        i.handle_input(t0, dial_done(2, DialOutcome::NoAnswer));
        assert_eq!(drain(&mut i), [dialed(3, &["a"], secs(10))]);
        // The next call starts one further on.
        let mut next = Interpreter::new(p, "main", attrs(), t0);
        assert_eq!(drain(&mut next), [dialed(1, &["c"], secs(10))]);
    }

    #[test]
    fn simultaneous_group_is_one_dial_with_every_member() {
        let t0 = Instant::now();
        let mut p = dial_plan(DialTarget::Group("sales".to_owned()), None);
        add_group(&mut p, &["a", "b"], Strategy::Simultaneous, 0);
        let mut i = start(p, t0);
        assert_eq!(drain(&mut i), [dialed(1, &["a", "b"], secs(10))]);
        i.handle_input(t0, dial_done(1, DialOutcome::Answered));
        assert_eq!(drain(&mut i), [attr("dial_status", "answered")]);
        assert!(i.is_finished());

        let mut p = dial_plan(DialTarget::Group("sales".to_owned()), Some(secs(15)));
        add_group(&mut p, &["a", "b"], Strategy::Simultaneous, 0);
        let mut i = start(p, t0);
        assert_eq!(drain(&mut i), [dialed(1, &["a", "b"], secs(15))]);
        i.handle_input(t0, dial_done(1, DialOutcome::NoAnswer));
        assert_eq!(
            drain(&mut i),
            [attr("dial_status", "no_answer"), played(2, "sorry", false)]
        );
    }

    #[test]
    fn unknown_or_empty_group_is_unavailable() {
        let t0 = Instant::now();
        let mut i = start(dial_plan(DialTarget::Group("nope".to_owned()), None), t0);
        assert_eq!(
            drain(&mut i),
            [
                attr("dial_status", "unavailable"),
                played(1, "sorry", false)
            ]
        );
        let mut p = dial_plan(DialTarget::Group("sales".to_owned()), None);
        add_group(&mut p, &[], Strategy::RoundRobin, 0);
        let mut i = start(p, t0);
        assert_eq!(
            drain(&mut i),
            [
                attr("dial_status", "unavailable"),
                played(1, "sorry", false)
            ]
        );
    }

    // ----- voicemail and record -----

    fn voicemail() -> Voicemail {
        Voicemail {
            mailbox: Template("{{called}}".to_owned()),
            greeting: Some(file("vm")),
            beep: true,
            max_length: secs(60),
            silence: Some(secs(3)),
            terminator: Some('#'),
        }
    }

    fn vm_plan(vm: Voicemail) -> Dialplan {
        plan(vec![(
            "main",
            vec![
                step(StepKind::Voicemail(vm)),
                step(hangup(HangupCause::Normal)),
            ],
        )])
    }

    fn beep(id: u64) -> Action {
        Action::Play {
            id,
            prompt: Prompt::Tone(ToneKind::Beep),
            barge_in: false,
        }
    }

    #[test]
    fn voicemail_greeting_beep_record_until_the_terminator() {
        let t0 = Instant::now();
        let mut i = start(vm_plan(voicemail()), t0);
        assert_eq!(drain(&mut i), [played(1, "vm", true)]);
        i.handle_input(t0 + secs(5), done(1));
        assert_eq!(drain(&mut i), [beep(2)]);
        i.handle_input(t0 + secs(6), done(2));
        assert_eq!(
            drain(&mut i),
            [Action::StartRecording {
                id: 3,
                voicemail: Some("2001".to_owned()),
                silence: Some(secs(3)),
            }]
        );
        assert_eq!(i.poll_timeout(), Some(t0 + secs(66)));
        digits(&mut i, t0 + secs(10), "5");
        assert_eq!(drain(&mut i), []);
        digits(&mut i, t0 + secs(20), "#");
        assert_eq!(drain(&mut i), [Action::StopRecording { id: 3 }]);
        assert_eq!(
            i.poll_timeout(),
            Some(t0 + secs(20) + STOP_RECORDING_TIMEOUT)
        );
        i.handle_input(
            t0 + secs(20),
            Input::RecordingDone {
                id: 3,
                recording_id: Some("rec-1".to_owned()),
            },
        );
        assert_eq!(
            drain(&mut i),
            [
                attr("voicemail_recording", "rec-1"),
                hung_up(HangupCause::Normal)
            ]
        );
    }

    #[test]
    fn a_recording_that_never_reports_its_end_fails_after_the_stop_timeout() {
        let t0 = Instant::now();
        let mut i = start(vm_plan(voicemail()), t0);
        drain(&mut i);
        i.handle_input(t0 + secs(5), done(1));
        i.handle_input(t0 + secs(6), done(2));
        drain(&mut i);
        digits(&mut i, t0 + secs(9), "#");
        assert_eq!(drain(&mut i), [Action::StopRecording { id: 3 }]);
        i.handle_timeout(t0 + secs(9) + STOP_RECORDING_TIMEOUT - Duration::from_millis(1));
        assert_eq!(drain(&mut i), []);
        i.handle_timeout(t0 + secs(9) + STOP_RECORDING_TIMEOUT);
        // No attribute for a recording that failed; the flow goes on.
        assert_eq!(drain(&mut i), [hung_up(HangupCause::Normal)]);
    }

    #[test]
    fn a_digit_skips_the_voicemail_greeting() {
        let t0 = Instant::now();
        let mut i = start(vm_plan(voicemail()), t0);
        digits(&mut i, t0, "#");
        assert_eq!(
            drain(&mut i),
            [played(1, "vm", true), Action::StopPlayback, beep(2)]
        );
        // The greeting's late PlaybackDone does not skip the beep.
        i.handle_input(t0, done(1));
        assert_eq!(drain(&mut i), []);
    }

    #[test]
    fn voicemail_stops_at_max_length() {
        let t0 = Instant::now();
        let vm = Voicemail {
            greeting: None,
            beep: false,
            ..voicemail()
        };
        let mut i = start(vm_plan(vm), t0);
        assert_eq!(
            drain(&mut i),
            [Action::StartRecording {
                id: 1,
                voicemail: Some("2001".to_owned()),
                silence: Some(secs(3)),
            }]
        );
        i.handle_timeout(t0 + secs(59));
        assert_eq!(drain(&mut i), []);
        i.handle_timeout(t0 + secs(60));
        assert_eq!(drain(&mut i), [Action::StopRecording { id: 1 }]);
        i.handle_input(
            t0 + secs(60),
            Input::RecordingDone {
                id: 1,
                recording_id: Some("rec-2".to_owned()),
            },
        );
        assert_eq!(
            drain(&mut i),
            [
                attr("voicemail_recording", "rec-2"),
                hung_up(HangupCause::Normal)
            ]
        );
    }

    #[test]
    fn record_stops_on_silence() {
        let t0 = Instant::now();
        let rec = Record {
            into: "message".to_owned(),
            prompt: Some(file("speak")),
            beep: false,
            max_length: secs(30),
            silence: Some(secs(2)),
            terminator: None,
        };
        let p = plan(vec![(
            "main",
            vec![step(StepKind::Record(rec)), step(play("thanks"))],
        )]);
        let mut i = start(p, t0);
        assert_eq!(drain(&mut i), [played(1, "speak", true)]);
        i.handle_input(t0, done(1));
        assert_eq!(
            drain(&mut i),
            [Action::StartRecording {
                id: 2,
                voicemail: None,
                silence: Some(secs(2)),
            }]
        );
        digits(&mut i, t0, "#");
        assert_eq!(drain(&mut i), [], "no terminator");
        i.handle_input(t0 + secs(5), Input::Silence);
        assert_eq!(drain(&mut i), [Action::StopRecording { id: 2 }]);
        i.handle_input(
            t0 + secs(5),
            Input::RecordingDone {
                id: 2,
                recording_id: Some("rec-3".to_owned()),
            },
        );
        assert_eq!(
            drain(&mut i),
            [attr("message", "rec-3"), played(3, "thanks", false)]
        );
    }

    #[test]
    fn failed_recording_sets_no_attribute() {
        let t0 = Instant::now();
        let vm = Voicemail {
            greeting: None,
            beep: false,
            ..voicemail()
        };
        let mut i = start(vm_plan(vm), t0);
        drain(&mut i);
        i.handle_input(t0, Input::Silence);
        i.handle_input(
            t0,
            Input::RecordingDone {
                id: 1,
                recording_id: None,
            },
        );
        assert_eq!(
            drain(&mut i),
            [
                Action::StopRecording { id: 1 },
                hung_up(HangupCause::Normal)
            ]
        );
    }

    // ----- webhook -----

    fn webhook(fallback: Option<Target>) -> StepKind {
        StepKind::Webhook(Webhook {
            url: Template("https://crm.example/ivr?from={{caller}}".to_owned()),
            timeout: secs(5),
            fallback,
        })
    }

    fn webhook_plan(fallback: Option<Target>) -> Dialplan {
        plan(vec![(
            "main",
            vec![
                step(webhook(fallback)),
                step(play("after")),
                labelled("fallback", play("fallback")),
                labelled("end", play("end")),
            ],
        )])
    }

    fn webhook_done(id: u64, result: Result<Vec<Step>, String>) -> Input {
        Input::WebhookDone { id, result }
    }

    #[test]
    fn webhook_posts_the_session_context() {
        let t0 = Instant::now();
        let mut i = start(webhook_plan(None), t0);
        let body = serde_json::json!({
            "event": "ivr.webhook",
            "session_id": "s1",
            "call_id": "c1",
            "caller": "1001",
            "called": "2001",
            "attributes": {"caller": "1001", "called": "2001", "call_id": "c1", "session_id": "s1"},
            "flow": "main",
            "step": 0,
        });
        assert_eq!(
            drain(&mut i),
            [Action::Webhook {
                id: 1,
                url: "https://crm.example/ivr?from=1001".to_owned(),
                body,
                timeout: secs(5),
            }]
        );
        assert_eq!(i.poll_timeout(), Some(t0 + secs(5)));
    }

    #[test]
    fn webhook_steps_run_then_the_flow_goes_on() {
        let t0 = Instant::now();
        let mut i = start(webhook_plan(None), t0);
        drain(&mut i);
        let steps = vec![
            step(StepKind::Set(vec![(
                "c".to_owned(),
                Template("1".to_owned()),
            )])),
            step(play("dynamic")),
        ];
        i.handle_input(t0 + secs(1), webhook_done(1, Ok(steps)));
        assert_eq!(i.poll_timeout(), None);
        assert_eq!(drain(&mut i), [attr("c", "1"), played(2, "dynamic", false)]);
        i.handle_input(t0 + secs(2), done(2));
        assert_eq!(drain(&mut i), [played(3, "after", false)]);
    }

    #[test]
    fn webhook_inside_webhook_steps_returns_to_each_caller() {
        let t0 = Instant::now();
        let mut i = start(webhook_plan(None), t0);
        drain(&mut i);
        let outer = vec![step(webhook(None)), step(play("outer"))];
        i.handle_input(t0, webhook_done(1, Ok(outer)));
        let Some(Action::Webhook { id: 2, body, .. }) = i.poll_action() else {
            panic!("expected the inner webhook");
        };
        assert_eq!(body["flow"], "main");
        i.handle_input(t0, webhook_done(2, Ok(vec![step(play("inner"))])));
        assert_eq!(drain(&mut i), [played(3, "inner", false)]);
        i.handle_input(t0, done(3));
        assert_eq!(drain(&mut i), [played(4, "outer", false)]);
        i.handle_input(t0, done(4));
        assert_eq!(drain(&mut i), [played(5, "after", false)]);
    }

    #[test]
    fn goto_in_webhook_steps_leaves_them_for_good() {
        let t0 = Instant::now();
        let mut i = start(webhook_plan(None), t0);
        drain(&mut i);
        let steps = vec![step(StepKind::Goto(label("end"))), step(play("never"))];
        i.handle_input(t0, webhook_done(1, Ok(steps)));
        assert_eq!(drain(&mut i), [played(2, "end", false)]);
        i.handle_input(t0, done(2));
        assert_eq!(drain(&mut i), [hung_up(HangupCause::Normal)]);
    }

    #[test]
    fn webhook_timeout_runs_the_fallback_and_late_replies_are_ignored() {
        let t0 = Instant::now();
        let mut i = start(webhook_plan(Some(label("fallback"))), t0);
        drain(&mut i);
        i.handle_timeout(t0 + secs(4));
        assert_eq!(drain(&mut i), []);
        i.handle_timeout(t0 + secs(5));
        assert_eq!(drain(&mut i), [played(2, "fallback", false)]);
        i.handle_input(t0 + secs(6), webhook_done(1, Ok(vec![step(play("late"))])));
        assert_eq!(drain(&mut i), []);
    }

    #[test]
    fn webhook_error_runs_the_fallback_or_the_next_step() {
        let t0 = Instant::now();
        let mut i = start(webhook_plan(Some(label("fallback"))), t0);
        drain(&mut i);
        i.handle_input(t0, webhook_done(1, Err("HTTP 500".to_owned())));
        assert_eq!(drain(&mut i), [played(2, "fallback", false)]);

        let mut i = start(webhook_plan(None), t0);
        drain(&mut i);
        i.handle_input(t0, webhook_done(1, Err("invalid JSON".to_owned())));
        assert_eq!(drain(&mut i), [played(2, "after", false)]);
    }

    #[test]
    fn stale_webhook_reply_is_ignored() {
        let t0 = Instant::now();
        let mut i = start(webhook_plan(None), t0);
        drain(&mut i);
        i.handle_input(t0, webhook_done(99, Ok(vec![step(play("stale"))])));
        assert_eq!(drain(&mut i), []);
        assert_eq!(i.poll_timeout(), Some(t0 + secs(5)));
        i.handle_input(t0, webhook_done(1, Ok(vec![])));
        assert_eq!(drain(&mut i), [played(2, "after", false)]);
    }
}
