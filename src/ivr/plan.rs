//! The dialplan as the rest of the server sees it: routes, calendars, ring groups and flows of
//! steps, already checked. PURE data: built by [`super::parse`] from the TOML files in
//! `dialplans/` (or from a webhook's JSON reply, for steps), read by [`super::route`] and
//! [`super::interp`]. Nothing here does I/O.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use crate::media::tone::ToneKind;

/// Where something was written: file, 1-based line and column. `Pos::default()` for steps that
/// came from a webhook reply.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub file: PathBuf,
    pub line: u32,
    pub col: u32,
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.col)
    }
}

/// A whole, valid dialplan: every file of the directory merged.
#[derive(Debug, Default)]
pub struct Dialplan {
    /// In the order they are tried: files sorted by name, routes in file order. First match
    /// wins.
    pub routes: Vec<Route>,
    pub flows: BTreeMap<String, Flow>,
    pub calendars: BTreeMap<String, Calendar>,
    pub ring_groups: BTreeMap<String, RingGroup>,
    /// Queues of the ACD, by name.
    pub queues: BTreeMap<String, QueueDef>,
    /// The skills the plan knows (`skills = [...]` at the top of any file): queues, steps and
    /// agents may only name these.
    pub skills: std::collections::BTreeSet<String>,
    /// The files it was read from.
    pub files: Vec<PathBuf>,
}

/// Sends matching calls to a flow.
#[derive(Debug)]
pub struct Route {
    /// The route's name (its table key), for logs.
    pub name: String,
    pub number: NumberMatch,
    /// The caller (From user, or the authenticated extension) must match this.
    pub caller: Option<Pattern>,
    /// Only while this calendar is open (`when`) or closed (`unless`).
    pub calendar: Option<CalendarCond>,
    pub flow: String,
    pub at: Pos,
}

/// How a route matches the called number (the Request-URI user).
#[derive(Debug)]
pub enum NumberMatch {
    Exact(String),
    Prefix(String),
    Pattern(Pattern),
    /// No number condition.
    Any,
}

/// A regular expression (regex crate syntax), anchored as written.
#[derive(Debug, Clone)]
pub struct Pattern(pub regex::Regex);

impl Pattern {
    pub fn is_match(&self, s: &str) -> bool {
        self.0.is_match(s)
    }
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        self.as_str() == other.as_str()
    }
}

/// `when = "cal"` (open) or `unless = "cal"` (closed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalendarCond {
    pub calendar: String,
    pub open: bool,
}

/// Opening hours in a time zone, with holidays (closed all day).
#[derive(Debug, Clone)]
pub struct Calendar {
    pub name: String,
    /// IANA name, e.g. `Europe/London`.
    pub timezone_name: String,
    pub timezone: jiff::tz::TimeZone,
    pub hours: Vec<Hours>,
    pub holidays: Vec<jiff::civil::Date>,
}

/// One line of opening hours: these weekdays, from `start` (inclusive) to `end` (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hours {
    /// Monday = index 0 … Sunday = index 6.
    pub days: [bool; 7],
    pub start: jiff::civil::Time,
    pub end: jiff::civil::Time,
}

/// Extensions rung together or in turn.
#[derive(Debug)]
pub struct RingGroup {
    pub name: String,
    pub members: Vec<String>,
    pub strategy: Strategy,
    /// How long each attempt rings (the whole group for `simultaneous`, each member
    /// otherwise).
    pub ring_timeout: Duration,
    /// Round-robin's next member; shared by every call of this plan.
    pub cursor: AtomicUsize,
    pub at: Pos,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Every member at once; the first to answer takes the call.
    Simultaneous,
    /// Members one after another, in order.
    Sequential,
    /// Members one after another, starting after the one who took the previous call.
    RoundRobin,
}

/// A queue of the ACD (`[queues.NAME]`): who serves it, how agents are picked, and what
/// waiting callers hear. Defaults as documented in `dialplans/README.md`.
#[derive(Debug, Clone)]
pub struct QueueDef {
    pub name: String,
    pub strategy: crate::acd::engine::Strategy,
    /// Skills (and minimum levels) every agent serving it holds.
    pub skills: Vec<(String, u8)>,
    /// How long an offer rings an agent before going to the next (default 15 s).
    pub offer_timeout: Duration,
    /// An agent's wrap-up after a contact of this queue (default 10 s).
    pub wrap_up: Duration,
    /// Answered within this counts toward the service level (default 20 s).
    pub service_level: Duration,
    /// Position and expected wait are announced this often (default 30 s; 0: never).
    pub announce_every: Duration,
    /// Waiting longer than this leaves the queue (`queue_status = timeout`) for `exit`.
    pub max_wait: Option<Duration>,
    /// This many waiting: a new caller leaves at once (`queue_status = full`) for `exit`.
    pub max_length: Option<usize>,
    /// Where a caller goes when leaving without an agent; `None`: the step after `queue`.
    pub exit: Option<Target>,
    /// Waiting callers may press 1 to be called back, keeping their place.
    pub callback: bool,
    /// The calendar whose time zone says what "today" is for the statistics.
    pub calendar: Option<String>,
    pub escalations: Vec<crate::acd::engine::Escalation>,
    pub at: Pos,
}

impl QueueDef {
    /// The engine's view of this queue.
    pub fn spec(&self) -> crate::acd::engine::QueueSpec {
        crate::acd::engine::QueueSpec {
            strategy: self.strategy,
            skills: self.skills.clone(),
            offer_timeout: self.offer_timeout,
            wrap_up: self.wrap_up,
            max_wait: self.max_wait,
            max_length: self.max_length,
            escalations: self.escalations.clone(),
        }
    }
}

/// Puts the caller in a queue until an agent answers (the flow ends there), or until the
/// queue lets them go (`queue_status` = `timeout` or `full`; then the queue's `exit`, or the
/// next step).
#[derive(Debug, Clone, PartialEq)]
pub struct QueueStep {
    pub queue: String,
    /// Rendered, then read as a number (`true`/`yes` count 1, `false`/`no`/empty 0).
    pub priority: Option<Template>,
    /// Extra required skills, each `name` or `name:level` (templates allowed).
    pub skills: Vec<Template>,
}

/// A named list of steps.
#[derive(Debug)]
pub struct Flow {
    pub name: String,
    pub steps: Vec<Step>,
    pub at: Pos,
}

impl Dialplan {
    /// Where the plan speaks text (`say`, or a `say:` prompt of any step): they need espeak-ng.
    pub fn speech_steps(&self) -> Vec<&Pos> {
        self.flows
            .values()
            .flat_map(|f| f.steps.iter())
            .filter(|s| s.prompts().any(|p| matches!(p, Prompt::Say { .. })))
            .map(|s| &s.at)
            .collect()
    }
}

impl Step {
    /// Every prompt the step may play.
    pub fn prompts(&self) -> impl Iterator<Item = &Prompt> {
        let list: Vec<&Prompt> = match &self.kind {
            StepKind::Play { prompt, .. } => vec![prompt],
            StepKind::Gather(g) => [&g.prompt, &g.invalid_prompt, &g.timeout_prompt]
                .into_iter()
                .flatten()
                .collect(),
            StepKind::Menu(m) => std::iter::once(&m.greeting)
                .chain(
                    [&m.short_greeting, &m.invalid_prompt, &m.timeout_prompt]
                        .into_iter()
                        .flatten(),
                )
                .collect(),
            StepKind::Voicemail(v) => v.greeting.iter().collect(),
            StepKind::Record(r) => r.prompt.iter().collect(),
            _ => Vec::new(),
        };
        list.into_iter()
    }
}

impl Flow {
    /// Index of the step labelled `label`.
    pub fn label(&self, label: &str) -> Option<usize> {
        self.steps
            .iter()
            .position(|s| s.label.as_deref() == Some(label))
    }
}

/// One step of a flow.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub label: Option<String>,
    pub kind: StepKind,
    pub at: Pos,
}

/// Where `goto`, menu options, `if`, `switch` and fallbacks go: a flow (`"sales"`), a label
/// in a flow (`"sales#queue"`), or a label in the current flow (`"#top"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub flow: Option<String>,
    pub label: Option<String>,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(flow) = &self.flow {
            f.write_str(flow)?;
        }
        if let Some(label) = &self.label {
            write!(f, "#{label}")?;
        }
        Ok(())
    }
}

/// Text with `{{attribute}}` placeholders, filled from the session attributes when the step
/// runs (an unknown attribute becomes the empty string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(pub String);

/// Something played to the caller. In the plan: `"welcome"` (the file `media/welcome.wav`,
/// or any path under `media/`, `.wav` optional), `"tone:ringback"` (ringback, busy,
/// congestion, beep), `"say:Hello {{caller_name}}"` (text to speech), `"silence:2s"`.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// A WAV file, relative to the media directory.
    File(String),
    /// `tone:beep` is the beep before a recording.
    Tone(ToneKind),
    Say {
        text: Template,
        voice: Option<String>,
    },
    Silence(Duration),
}

#[derive(Debug, Clone, PartialEq)]
pub enum StepKind {
    /// Answers the call (200 OK) if it is not answered yet.
    Answer,
    /// `play = "prompt"` (and `say = "text"`, which is `play = "say:text"`).
    Play {
        prompt: Prompt,
        barge_in: bool,
    },
    Gather(Gather),
    Menu(Menu),
    /// Sets session attributes, in order.
    Set(Vec<(String, Template)>),
    If(If),
    Switch(Switch),
    Goto(Target),
    Dial(Dial),
    Voicemail(Voicemail),
    Record(Record),
    /// Starts recording the whole call (both parties, stereo) from here on.
    RecordCall,
    /// Sends the call to another number: the routes are matched again for it.
    Transfer(Template),
    Hangup(HangupCause),
    Webhook(Webhook),
    /// Sends the caller a text on a messaging channel (a chat link by SMS or WhatsApp), to the
    /// caller's number, in the call's session.
    SendMessage {
        channel: String,
        text: Template,
    },
    /// Waits (silence to the caller).
    Pause(Duration),
    Queue(QueueStep),
}

/// Collects digits into an attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct Gather {
    /// The attribute the digits go to.
    pub into: String,
    pub prompt: Option<Prompt>,
    pub min_digits: u32,
    pub max_digits: u32,
    /// Ends the input early (not stored); `None` for no terminator.
    pub terminator: Option<char>,
    /// Time to the first digit, counted from the end of the prompt.
    pub first_timeout: Duration,
    pub inter_digit_timeout: Duration,
    /// Attempts before giving up.
    pub tries: u32,
    pub invalid_prompt: Option<Prompt>,
    pub timeout_prompt: Option<Prompt>,
    /// The input must match (after min/max checks).
    pub pattern: Option<Pattern>,
    /// Where to go after the last failed attempt; `None`: the next step (the attribute is
    /// left unset).
    pub on_failure: Option<Target>,
    /// The digits are secret (a card number, a PIN): the attribute, the `dtmf.received`
    /// events and the DTMF log lines carry them masked; the clear digits are never stored.
    pub sensitive: bool,
}

/// Digits as a sensitive gather stores them: a card-length input keeps its last four
/// (`•••• 1111`), anything shorter is all bullets.
pub fn mask_digits(digits: &str) -> String {
    let n = digits.chars().count();
    if n >= 12 {
        let last: String = digits.chars().skip(n - 4).collect();
        format!("•••• {last}")
    } else {
        "•".repeat(n)
    }
}

/// A one-digit menu.
#[derive(Debug, Clone, PartialEq)]
pub struct Menu {
    /// Played the first time and after `repeat`.
    pub greeting: Prompt,
    /// Played after an invalid choice or a timeout (the long greeting when absent).
    pub short_greeting: Option<Prompt>,
    pub options: Vec<(char, MenuChoice)>,
    /// Time to wait for a digit after the greeting ends.
    pub timeout: Duration,
    pub tries: u32,
    pub invalid_prompt: Option<Prompt>,
    pub timeout_prompt: Option<Prompt>,
    /// After the last failed attempt; `None`: the next step.
    pub on_failure: Option<Target>,
    /// The attribute the chosen digit is stored in (default `menu`).
    pub into: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MenuChoice {
    Go(Target),
    /// Plays the long greeting again (does not count as a try).
    Repeat,
}

/// `if = "attr"` with one comparison; no comparison means "set and not empty".
#[derive(Debug, Clone, PartialEq)]
pub struct If {
    pub attr: String,
    pub test: Test,
    pub then: Target,
    /// `None`: the next step.
    pub otherwise: Option<Target>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    Present,
    Equals(Template),
    NotEquals(Template),
    Matches(Pattern),
    OneOf(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Switch {
    pub attr: String,
    pub cases: Vec<(String, Target)>,
    /// `None`: the next step.
    pub default: Option<Target>,
}

/// Rings an extension or a ring group. Answered: the caller is bridged to whoever answered
/// and the flow ends there. Not answered: the attribute `dial_status` is set (`busy`,
/// `no_answer`, `unavailable`, `failed`) and the flow goes on with the next step.
#[derive(Debug, Clone, PartialEq)]
pub struct Dial {
    pub to: DialTarget,
    /// How long to ring (for a ring group: its own timeout unless this is set).
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DialTarget {
    /// `dial = "2001"` or `dial = "{{called}}"`.
    Extension(Template),
    /// `dial = "group:sales"`.
    Group(String),
}

/// Leaves a message: greeting, beep, record the caller until silence, the terminator, the
/// maximum length or hang-up. Stored as a recording of the session (kind `voicemail`).
#[derive(Debug, Clone, PartialEq)]
pub struct Voicemail {
    pub mailbox: Template,
    pub greeting: Option<Prompt>,
    pub beep: bool,
    pub max_length: Duration,
    /// Stop after this much silence (once the caller has spoken, or from the start).
    pub silence: Option<Duration>,
    pub terminator: Option<char>,
}

/// Records what the caller says into a recording whose id goes to attribute `into`.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub into: String,
    pub prompt: Option<Prompt>,
    pub beep: bool,
    pub max_length: Duration,
    pub silence: Option<Duration>,
    pub terminator: Option<char>,
}

pub use crate::domain::HangupCause;

/// POSTs the session context to `url`; the JSON reply's steps run next (dynamic IVR). No
/// reply within `timeout`, an error status, or a reply that is not valid steps: the
/// `fallback` target runs (or the next step when there is none).
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub url: Template,
    pub timeout: Duration,
    pub fallback: Option<Target>,
}
