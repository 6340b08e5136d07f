//! Reads dialplans: the TOML files of a directory → a checked [`Dialplan`]. Every problem is
//! reported, each with file:line:column and a hint; nothing is built when there is one.
//! PURE apart from reading the files and checking that prompt files exist.
//!
//! Both front ends (TOML files, a webhook's JSON reply) are first turned into one small tree of
//! values that carry their position ([`Node`]); a single decoder turns that tree into plan
//! types, so a step means the same thing, and is checked the same way, in both. The format is
//! documented in `dialplans/README.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::plan::{
    Calendar, CalendarCond, Dial, DialTarget, Dialplan, Flow, Gather, HangupCause, Hours, If, Menu,
    MenuChoice, NumberMatch, Pattern, Pos, Prompt, Record, RingGroup, Route, Step, StepKind,
    Strategy, Switch, Target, Template, Test, Voicemail, Webhook,
};
use crate::media::tone::ToneKind;

/// One problem in a dialplan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub at: Pos,
    pub message: String,
    pub hint: Option<String>,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: error: {}", self.at, self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Where a plan's files refer to: prompts are checked against `media_dir`.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    pub media_dir: std::path::PathBuf,
}

/// Loads `path`: a directory (every `*.toml` in it, sorted by name) or one file.
pub fn load(path: &Path, options: &CheckOptions) -> Result<Dialplan, Vec<Diagnostic>> {
    let files = list_files(path).map_err(|d| vec![d])?;
    let mut ctx = Ctx::new(false);
    let mut plan = Dialplan {
        files: files.clone(),
        ..Dialplan::default()
    };
    let mut syntax_errors = false;
    for file in &files {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                ctx.diags.push(Diagnostic {
                    at: file_pos(file),
                    message: format!("cannot read the file: {e}"),
                    hint: None,
                });
                syntax_errors = true;
                continue;
            }
        };
        let lines = LineIndex::new(&text);
        match toml::de::DeTable::parse(&text) {
            Ok(table) => {
                let root = Node {
                    at: file_pos(file),
                    v: Val::Table(toml_table(table.get_ref(), &lines, file)),
                };
                decode_file(&mut ctx, &root, &mut plan);
            }
            Err(e) => {
                syntax_errors = true;
                let at = match e.span() {
                    Some(span) => lines.pos(file, span.start),
                    None => file_pos(file),
                };
                ctx.diags.push(Diagnostic {
                    at,
                    message: format!("TOML syntax: {}", e.message().trim()),
                    hint: None,
                });
            }
        }
    }
    check_media(&mut ctx, &options.media_dir);
    // With a file unreadable, its names are unknown: reference checks would only add noise.
    if !syntax_errors {
        let refs = std::mem::take(&mut ctx.refs);
        let known = std::mem::take(&mut ctx.known);
        check_refs(&mut ctx, &refs, &known);
        check_unreachable(&mut ctx, &refs, &plan);
    }
    if ctx.diags.is_empty() {
        Ok(plan)
    } else {
        let mut diags = ctx.diags;
        diags.sort_by(|a, b| a.at.cmp(&b.at));
        Err(diags)
    }
}

/// Steps from a webhook's JSON reply: `{"steps": [ {"say": "..."}, ... ]}` or a bare array,
/// each step written as in the TOML plan. Targets must exist in `plan`; a bare `#label` names
/// a label among the reply's own steps. Prompt files are not checked here (a missing one fails
/// when played).
pub fn steps_from_json(
    value: &serde_json::Value,
    plan: &Dialplan,
) -> Result<Vec<Step>, Vec<Diagnostic>> {
    let mut ctx = Ctx::new(true);
    let root = json_node(value);
    let items = match &root.v {
        Val::Array(items) => Some(items),
        Val::Table(entries) => {
            let fields = Fields::new(entries, &root.at, String::new());
            fields.check_keys(&mut ctx, &["steps"]);
            match fields.get("steps") {
                Some(e) => match &e.value.v {
                    Val::Array(items) => Some(items),
                    _ => {
                        ctx.error(&e.value.at, "steps", "expected an array of steps", None);
                        None
                    }
                },
                None => {
                    ctx.error(&root.at, "", "missing key \"steps\"", None);
                    None
                }
            }
        }
        _ => {
            ctx.error(
                &root.at,
                "",
                "expected {\"steps\": [...]} or an array of steps",
                None,
            );
            None
        }
    };
    let steps = items
        .map(|items| decode_steps(&mut ctx, items, "steps", None))
        .unwrap_or_default();
    let refs = std::mem::take(&mut ctx.refs);
    let known = Known {
        local: std::mem::take(&mut ctx.known.local),
        ..Known::of_plan(plan)
    };
    check_refs(&mut ctx, &refs, &known);
    if ctx.diags.is_empty() {
        Ok(steps)
    } else {
        Err(ctx.diags)
    }
}

/// The longest duration a plan may write (timers beyond it are mistakes).
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Parses a duration as written in a plan: `"5s"`, `"1m30s"`, `"500ms"`, `"2h"`; at most
/// [`MAX_DURATION`].
pub fn parse_duration(s: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (Duration::from_millis(1), 2)
        } else if rest.starts_with('h') {
            (Duration::from_secs(3600), 1)
        } else if rest.starts_with('m') {
            (Duration::from_secs(60), 1)
        } else if rest.starts_with('s') {
            (Duration::from_secs(1), 1)
        } else {
            return None;
        };
        rest = &rest[len..];
        total = total.checked_add(unit.checked_mul(u32::try_from(n).ok()?)?)?;
    }
    (total <= MAX_DURATION).then_some(total)
}

/// Parses one line of opening hours: `"mon-fri 08:00-18:00"`, `"mon,wed 09:00-12:00"`,
/// `"daily 00:00-24:00"` (24:00 is the end of the day).
pub fn parse_hours(s: &str) -> Result<Hours, String> {
    let mut parts = s.split_whitespace();
    let (Some(days), Some(times), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err("expected DAYS HH:MM-HH:MM".into());
    };
    let mut set = [false; 7];
    if days == "daily" {
        set = [true; 7];
    } else {
        for item in days.split(',') {
            match item.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (weekday(a)?, weekday(b)?);
                    let mut d = a;
                    loop {
                        set[d] = true;
                        if d == b {
                            break;
                        }
                        d = (d + 1) % 7;
                    }
                }
                None => set[weekday(item)?] = true,
            }
        }
    }
    let (start, end) = times
        .split_once('-')
        .ok_or_else(|| format!("expected HH:MM-HH:MM, found {times:?}"))?;
    let start = clock(start, false)?;
    let end = clock(end, true)?;
    if end <= start {
        return Err("the end must be after the start (split overnight hours in two lines)".into());
    }
    Ok(Hours {
        days: set,
        start,
        end,
    })
}

// ---------------------------------------------------------------------------------------------
// The value tree both front ends produce.

/// A value and where it was written.
#[derive(Debug)]
struct Node {
    v: Val,
    at: Pos,
}

#[derive(Debug)]
enum Val {
    Str(String),
    /// `None`: out of the range of i64.
    Int(Option<i64>),
    Float,
    Bool(bool),
    /// A TOML date-time: the local date when it is only a date.
    Datetime(Option<jiff::civil::Date>),
    Array(Vec<Node>),
    /// Entries in the order they were written.
    Table(Vec<Entry>),
    Null,
}

#[derive(Debug)]
struct Entry {
    key: String,
    at: Pos,
    value: Node,
}

impl Val {
    fn kind(&self) -> &'static str {
        match self {
            Val::Str(_) => "a string",
            Val::Int(_) => "an integer",
            Val::Float => "a float",
            Val::Bool(_) => "a boolean",
            Val::Datetime(_) => "a date-time",
            Val::Array(_) => "an array",
            Val::Table(_) => "a table",
            Val::Null => "null",
        }
    }
}

/// Byte offset → line and column (1-based, columns in characters).
struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    fn new(text: &'a str) -> LineIndex<'a> {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, starts }
    }

    fn pos(&self, file: &Path, offset: usize) -> Pos {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts[line - 1];
        let col = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        Pos {
            file: file.to_owned(),
            line: u32::try_from(line).unwrap_or(u32::MAX),
            col: u32::try_from(col + 1).unwrap_or(u32::MAX),
        }
    }
}

fn file_pos(file: &Path) -> Pos {
    Pos {
        file: file.to_owned(),
        line: 1,
        col: 1,
    }
}

fn toml_table(t: &toml::de::DeTable<'_>, lines: &LineIndex<'_>, file: &Path) -> Vec<Entry> {
    let mut entries: Vec<(usize, Entry)> = t
        .iter()
        .map(|(k, v)| {
            (
                k.span().start,
                Entry {
                    key: k.get_ref().to_string(),
                    at: lines.pos(file, k.span().start),
                    value: toml_node(v, lines, file),
                },
            )
        })
        .collect();
    entries.sort_by_key(|(start, _)| *start);
    entries.into_iter().map(|(_, e)| e).collect()
}

fn toml_node(v: &toml::Spanned<toml::de::DeValue<'_>>, lines: &LineIndex<'_>, file: &Path) -> Node {
    use toml::de::DeValue;
    let val = match v.get_ref() {
        DeValue::String(s) => Val::Str(s.to_string()),
        DeValue::Integer(i) => {
            let digits = i.as_str().replace('_', "");
            Val::Int(i64::from_str_radix(&digits, i.radix()).ok())
        }
        DeValue::Float(_) => Val::Float,
        DeValue::Boolean(b) => Val::Bool(*b),
        DeValue::Datetime(d) => Val::Datetime(match (d.date, d.time, d.offset) {
            (Some(date), None, None) => jiff::civil::Date::new(
                i16::try_from(date.year).unwrap_or(i16::MAX),
                i8::try_from(date.month).unwrap_or(0),
                i8::try_from(date.day).unwrap_or(0),
            )
            .ok(),
            _ => None,
        }),
        DeValue::Array(a) => Val::Array(a.iter().map(|v| toml_node(v, lines, file)).collect()),
        DeValue::Table(t) => Val::Table(toml_table(t, lines, file)),
    };
    Node {
        v: val,
        at: lines.pos(file, v.span().start),
    }
}

fn json_node(v: &serde_json::Value) -> Node {
    use serde_json::Value;
    let val = match v {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Val::Int(Some(i)),
            None if n.is_u64() => Val::Int(None),
            None => Val::Float,
        },
        Value::String(s) => Val::Str(s.clone()),
        Value::Array(a) => Val::Array(a.iter().map(json_node).collect()),
        Value::Object(o) => Val::Table(
            o.iter()
                .map(|(k, v)| Entry {
                    key: k.clone(),
                    at: Pos::default(),
                    value: json_node(v),
                })
                .collect(),
        ),
    };
    Node {
        v: val,
        at: Pos::default(),
    }
}

// ---------------------------------------------------------------------------------------------
// The decoder.

/// Something a plan refers to by name, checked once every file is read.
#[derive(Debug)]
struct Ref {
    kind: RefKind,
    at: Pos,
    path: String,
    /// The flow the reference is written in (`None` for routes and webhook replies).
    from_flow: Option<String>,
}

#[derive(Debug)]
enum RefKind {
    Target(Target),
    Group(String),
    Calendar(String),
}

/// The names a plan defines, as written: those whose definition has errors too, so that one
/// mistake is reported once.
#[derive(Debug, Default)]
struct Known {
    calendars: BTreeSet<String>,
    groups: BTreeSet<String>,
    /// Each flow's labels.
    flows: BTreeMap<String, Vec<String>>,
    /// The labels of a webhook reply's own steps.
    local: BTreeSet<String>,
}

impl Known {
    fn of_plan(plan: &Dialplan) -> Known {
        Known {
            calendars: plan.calendars.keys().cloned().collect(),
            groups: plan.ring_groups.keys().cloned().collect(),
            flows: plan
                .flows
                .iter()
                .map(|(name, f)| {
                    let labels = f.steps.iter().filter_map(|s| s.label.clone()).collect();
                    (name.clone(), labels)
                })
                .collect(),
            local: BTreeSet::new(),
        }
    }
}

struct Ctx {
    /// Messages name the JSON path (webhook replies have no positions).
    json: bool,
    diags: Vec<Diagnostic>,
    refs: Vec<Ref>,
    /// Prompt files to look for: (name with `.wav`, where).
    media: Vec<(String, Pos)>,
    /// Where each calendar, ring group and flow was first defined (`kind:name`).
    defined: BTreeMap<String, Pos>,
    known: Known,
}

impl Ctx {
    fn new(json: bool) -> Ctx {
        Ctx {
            json,
            diags: Vec::new(),
            refs: Vec::new(),
            media: Vec::new(),
            defined: BTreeMap::new(),
            known: Known::default(),
        }
    }

    fn error(&mut self, at: &Pos, path: &str, message: impl Into<String>, hint: Option<String>) {
        let message = message.into();
        let message = if self.json && !path.is_empty() {
            format!("{path}: {message}")
        } else {
            message
        };
        self.diags.push(Diagnostic {
            at: at.clone(),
            message,
            hint,
        });
    }
}

/// The entries of one table being decoded.
struct Fields<'a> {
    entries: &'a [Entry],
    at: &'a Pos,
    path: String,
    /// A step's action key: its value's path is the step's own path.
    action: Option<&'a str>,
}

impl<'a> Fields<'a> {
    fn new(entries: &'a [Entry], at: &'a Pos, path: String) -> Fields<'a> {
        Fields {
            entries,
            at,
            path,
            action: None,
        }
    }

    /// A table, or an error saying what was expected.
    fn of(ctx: &mut Ctx, node: &'a Node, path: String, what: &str) -> Option<Fields<'a>> {
        match &node.v {
            Val::Table(entries) => Some(Fields::new(entries, &node.at, path)),
            other => {
                ctx.error(
                    &node.at,
                    &path,
                    format!("expected {what} (a table), found {}", other.kind()),
                    None,
                );
                None
            }
        }
    }

    fn child(&self, key: &str) -> String {
        if self.action == Some(key) {
            self.path.clone()
        } else if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn check_keys(&self, ctx: &mut Ctx, allowed: &[&str]) {
        for e in self.entries {
            if !allowed.contains(&e.key.as_str()) {
                ctx.error(
                    &e.at,
                    &self.path,
                    format!("unknown key \"{}\"", e.key),
                    Some(suggest(&e.key, allowed.iter().copied())),
                );
            }
        }
    }

    fn get(&self, key: &str) -> Option<&'a Entry> {
        self.entries.iter().find(|e| e.key == key)
    }

    fn opt<T>(
        &self,
        ctx: &mut Ctx,
        key: &str,
        decode: impl FnOnce(&mut Ctx, &'a Node, &str) -> Option<T>,
    ) -> Option<T> {
        let e = self.get(key)?;
        decode(ctx, &e.value, &self.child(key))
    }

    fn req<T>(
        &self,
        ctx: &mut Ctx,
        key: &str,
        decode: impl FnOnce(&mut Ctx, &'a Node, &str) -> Option<T>,
    ) -> Option<T> {
        if self.get(key).is_none() {
            ctx.error(self.at, &self.path, format!("missing key \"{key}\""), None);
            return None;
        }
        self.opt(ctx, key, decode)
    }

    /// At most one of `keys`: an error at the second one written.
    fn at_most_one(&self, ctx: &mut Ctx, keys: &[&str]) {
        let present: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| keys.contains(&e.key.as_str()))
            .collect();
        if let [first, second, ..] = present.as_slice() {
            ctx.error(
                &second.at,
                &self.path,
                format!(
                    "\"{}\" and \"{}\" together: use at most one of {}",
                    first.key,
                    second.key,
                    keys.join(", ")
                ),
                None,
            );
        }
    }
}

/// "did you mean `x`?" for the nearest allowed word, or the list of them.
fn suggest<'s>(word: &str, allowed: impl Iterator<Item = &'s str> + Clone) -> String {
    let best = allowed
        .clone()
        .map(|a| (edit_distance(word, a), a))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((d, a)) if d <= (word.chars().count() / 3).max(1) => format!("did you mean `{a}`?"),
        _ => {
            let all: Vec<&str> = allowed.collect();
            if all.is_empty() {
                "nothing is defined".into()
            } else {
                format!("expected one of: {}", all.join(", "))
            }
        }
    }
}

/// Optimal string alignment distance: insertions, deletions, substitutions and swaps of two
/// neighbours ("mian" is one edit from "main").
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

fn list_files(path: &Path) -> Result<Vec<PathBuf>, Diagnostic> {
    let fail = |message: String, hint: Option<String>| Diagnostic {
        at: Pos {
            file: path.to_owned(),
            line: 0,
            col: 0,
        },
        message,
        hint,
    };
    let meta = std::fs::metadata(path).map_err(|e| fail(format!("cannot read: {e}"), None))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut files = Vec::new();
    let dir = std::fs::read_dir(path).map_err(|e| fail(format!("cannot read: {e}"), None))?;
    for entry in dir {
        let entry = entry.map_err(|e| fail(format!("cannot read: {e}"), None))?;
        let p = entry.path();
        if p.extension().is_some_and(|x| x == "toml") && p.is_file() {
            files.push(p);
        }
    }
    if files.is_empty() {
        return Err(fail(
            "no dialplan files (*.toml) in this directory".into(),
            Some("see dialplans/README.md for the format".into()),
        ));
    }
    files.sort();
    Ok(files)
}

const TOP_KEYS: &[&str] = &["calendars", "ring_groups", "routes", "flows"];

fn decode_file(ctx: &mut Ctx, root: &Node, plan: &mut Dialplan) {
    let Val::Table(entries) = &root.v else {
        return;
    };
    let top = Fields::new(entries, &root.at, String::new());
    top.check_keys(ctx, TOP_KEYS);
    if let Some(e) = top.get("calendars") {
        for (name, at, node) in named_tables(ctx, e, "calendars") {
            if duplicate(ctx, at, "calendar", name) {
                continue;
            }
            ctx.known.calendars.insert(name.to_owned());
            if let Some(c) = decode_calendar(ctx, name, node, format!("calendars.{name}")) {
                plan.calendars.insert(name.to_owned(), c);
            }
        }
    }
    if let Some(e) = top.get("ring_groups") {
        for (name, at, node) in named_tables(ctx, e, "ring_groups") {
            if duplicate(ctx, at, "ring group", name) {
                continue;
            }
            ctx.known.groups.insert(name.to_owned());
            if let Some(g) = decode_group(ctx, name, at, node, format!("ring_groups.{name}")) {
                plan.ring_groups.insert(name.to_owned(), g);
            }
        }
    }
    if let Some(e) = top.get("routes") {
        match &e.value.v {
            Val::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let n = plan.routes.len() + 1;
                    if let Some(r) = decode_route(ctx, item, format!("routes[{i}]"), n) {
                        plan.routes.push(r);
                    }
                }
            }
            other => ctx.error(
                &e.value.at,
                "routes",
                format!(
                    "expected an array of tables ([[routes]]), found {}",
                    other.kind()
                ),
                None,
            ),
        }
    }
    if let Some(e) = top.get("flows") {
        let Val::Table(flows) = &e.value.v else {
            ctx.error(
                &e.value.at,
                "flows",
                format!(
                    "expected tables of steps ([[flows.NAME]]), found {}",
                    e.value.v.kind()
                ),
                None,
            );
            return;
        };
        for f in flows {
            let path = format!("flows.{}", f.key);
            let Val::Array(items) = &f.value.v else {
                ctx.error(
                    &f.at,
                    &path,
                    format!("a flow is an array of steps, found {}", f.value.v.kind()),
                    Some(format!("write each step as [[flows.{}]]", f.key)),
                );
                continue;
            };
            if duplicate(ctx, &f.at, "flow", &f.key) {
                continue;
            }
            if items.is_empty() {
                ctx.error(&f.at, &path, "a flow needs at least one step", None);
            }
            let steps = decode_steps(ctx, items, &path, Some(&f.key));
            plan.flows.insert(
                f.key.clone(),
                Flow {
                    name: f.key.clone(),
                    steps,
                    at: f.at.clone(),
                },
            );
        }
    }
}

/// Records the definition of `what` `name`; an error (and `true`) when it was defined before.
fn duplicate(ctx: &mut Ctx, at: &Pos, what: &str, name: &str) -> bool {
    let key = format!("{what}:{name}");
    let Some(first) = ctx.defined.get(&key).cloned() else {
        ctx.defined.insert(key, at.clone());
        return false;
    };
    ctx.error(
        at,
        "",
        format!("{what} \"{name}\" is defined twice"),
        Some(format!("first defined at {first}")),
    );
    true
}

/// The entries of `[calendars.NAME]`-like tables: (name, position of the name, table).
fn named_tables<'a>(ctx: &mut Ctx, e: &'a Entry, what: &str) -> Vec<(&'a str, &'a Pos, &'a Node)> {
    match &e.value.v {
        Val::Table(entries) => entries
            .iter()
            .map(|e| (e.key.as_str(), &e.at, &e.value))
            .collect(),
        other => {
            ctx.error(
                &e.value.at,
                what,
                format!("expected tables ([{what}.NAME]), found {}", other.kind()),
                None,
            );
            Vec::new()
        }
    }
}

fn decode_calendar(ctx: &mut Ctx, name: &str, node: &Node, path: String) -> Option<Calendar> {
    let f = Fields::of(ctx, node, path, "a calendar")?;
    f.check_keys(ctx, &["timezone", "hours", "holidays"]);
    let zone = f.req(ctx, "timezone", |ctx, n, p| {
        let s = string(ctx, n, p)?;
        match jiff::tz::TimeZone::get(s) {
            Ok(tz) => Some((s.to_owned(), tz)),
            Err(_) => {
                ctx.error(
                    &n.at,
                    p,
                    format!("unknown time zone \"{s}\""),
                    Some("use an IANA name such as Europe/London or America/New_York".into()),
                );
                None
            }
        }
    });
    let hours = f
        .req(ctx, "hours", |ctx, n, p| {
            array(ctx, n, p, |ctx, n, p| {
                let s = string(ctx, n, p)?;
                match parse_hours(s) {
                    Ok(h) => Some(h),
                    Err(m) => {
                        ctx.error(
                            &n.at,
                            p,
                            format!("bad hours \"{s}\": {m}"),
                            Some(
                                "write e.g. \"mon-fri 08:00-18:00\", \"mon,wed 09:00-12:00\" or \"daily 00:00-24:00\""
                                    .into(),
                            ),
                        );
                        None
                    }
                }
            })
        })
        .unwrap_or_default();
    let holidays = f
        .opt(ctx, "holidays", |ctx, n, p| array(ctx, n, p, date))
        .unwrap_or_default();
    let (timezone_name, timezone) = zone?;
    Some(Calendar {
        name: name.to_owned(),
        timezone_name,
        timezone,
        hours,
        holidays,
    })
}

fn decode_group(
    ctx: &mut Ctx,
    name: &str,
    at: &Pos,
    node: &Node,
    path: String,
) -> Option<RingGroup> {
    let f = Fields::of(ctx, node, path, "a ring group")?;
    f.check_keys(ctx, &["members", "strategy", "ring_timeout"]);
    let members = f.req(ctx, "members", |ctx, n, p| {
        let members = array(ctx, n, p, |ctx, n, p| {
            let s = string_or_int(ctx, n, p)?;
            if s.is_empty() || s.contains(['@', ';', ' ', ':']) {
                ctx.error(&n.at, p, format!("\"{s}\" is not an extension"), None);
                return None;
            }
            Some(s)
        })?;
        if members.is_empty() {
            ctx.error(&n.at, p, "a ring group needs at least one member", None);
            return None;
        }
        Some(members)
    });
    let strategy = f
        .opt(ctx, "strategy", |ctx, n, p| {
            one_of(
                ctx,
                n,
                p,
                &[
                    ("simultaneous", Strategy::Simultaneous),
                    ("sequential", Strategy::Sequential),
                    ("round_robin", Strategy::RoundRobin),
                ],
            )
        })
        .unwrap_or(Strategy::Simultaneous);
    let ring_timeout = f
        .opt(ctx, "ring_timeout", positive_duration)
        .unwrap_or(Duration::from_secs(20));
    Some(RingGroup {
        name: name.to_owned(),
        members: members?,
        strategy,
        ring_timeout,
        cursor: Default::default(),
        at: at.clone(),
    })
}

fn decode_route(ctx: &mut Ctx, node: &Node, path: String, n: usize) -> Option<Route> {
    let f = Fields::of(ctx, node, path, "a route")?;
    f.check_keys(
        ctx,
        &[
            "name", "number", "prefix", "pattern", "caller", "when", "unless", "flow",
        ],
    );
    f.at_most_one(ctx, &["number", "prefix", "pattern"]);
    f.at_most_one(ctx, &["when", "unless"]);
    let name = f
        .opt(ctx, "name", |ctx, n, p| {
            string(ctx, n, p).map(str::to_owned)
        })
        .unwrap_or_else(|| format!("route {n}"));
    let number = if let Some(s) = f.opt(ctx, "number", string_or_int) {
        NumberMatch::Exact(s)
    } else if let Some(s) = f.opt(ctx, "prefix", string_or_int) {
        NumberMatch::Prefix(s)
    } else if let Some(p) = f.opt(ctx, "pattern", regex) {
        NumberMatch::Pattern(p)
    } else {
        NumberMatch::Any
    };
    let caller = f.opt(ctx, "caller", regex);
    let mut calendar = None;
    for (key, open) in [("when", true), ("unless", false)] {
        if let Some(c) = f.opt(ctx, key, |ctx, n, p| {
            let s = string(ctx, n, p)?;
            ctx.refs.push(Ref {
                kind: RefKind::Calendar(s.to_owned()),
                at: n.at.clone(),
                path: p.to_owned(),
                from_flow: None,
            });
            Some(s.to_owned())
        }) {
            calendar.get_or_insert(CalendarCond { calendar: c, open });
        }
    }
    let flow = f.req(ctx, "flow", |ctx, n, p| {
        let s = string(ctx, n, p)?;
        if !is_name(s) {
            ctx.error(&n.at, p, format!("\"{s}\" is not a flow name"), None);
            return None;
        }
        ctx.refs.push(Ref {
            kind: RefKind::Target(Target {
                flow: Some(s.to_owned()),
                label: None,
            }),
            at: n.at.clone(),
            path: p.to_owned(),
            from_flow: None,
        });
        Some(s.to_owned())
    })?;
    Some(Route {
        name,
        number,
        caller,
        calendar,
        flow,
        at: node.at.clone(),
    })
}

/// The steps of a flow (or of a webhook reply), labels checked for duplicates.
fn decode_steps(ctx: &mut Ctx, items: &[Node], path: &str, flow: Option<&str>) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut labels: BTreeMap<String, Pos> = BTreeMap::new();
    let written = items.iter().filter_map(|item| match &item.v {
        Val::Table(entries) => entries.iter().find_map(|e| match &e.value.v {
            Val::Str(s) if e.key == "label" => Some(s.clone()),
            _ => None,
        }),
        _ => None,
    });
    match flow {
        Some(flow) => {
            ctx.known.flows.insert(flow.to_owned(), written.collect());
        }
        None => ctx.known.local.extend(written),
    }
    for (i, item) in items.iter().enumerate() {
        let Some(step) = decode_step(ctx, item, format!("{path}[{i}]"), flow) else {
            continue;
        };
        if let Some(label) = &step.label {
            let label_at = match &item.v {
                Val::Table(entries) => entries
                    .iter()
                    .find(|e| e.key == "label")
                    .map_or(item.at.clone(), |e| e.value.at.clone()),
                _ => item.at.clone(),
            };
            if let Some(first) = labels.get(label) {
                let hint = (!ctx.json).then(|| format!("first used at {first}"));
                ctx.error(
                    &label_at,
                    &format!("{path}[{i}]"),
                    format!("label \"{label}\" is used twice in this flow"),
                    hint,
                );
            } else {
                labels.insert(label.clone(), label_at);
            }
        }
        steps.push(step);
    }
    steps
}

const ACTIONS: &[&str] = &[
    "answer",
    "play",
    "say",
    "gather",
    "menu",
    "set",
    "if",
    "switch",
    "goto",
    "dial",
    "voicemail",
    "record",
    "record_call",
    "transfer",
    "hangup",
    "webhook",
    "pause",
];

/// The option keys of each action (besides the action key and `label`).
fn action_options(action: &str) -> &'static [&'static str] {
    match action {
        "play" => &["barge_in"],
        "say" => &["voice", "barge_in"],
        "gather" => &[
            "prompt",
            "min_digits",
            "max_digits",
            "terminator",
            "first_timeout",
            "inter_digit_timeout",
            "tries",
            "invalid_prompt",
            "timeout_prompt",
            "pattern",
            "on_failure",
        ],
        "menu" => &[
            "short_greeting",
            "options",
            "timeout",
            "tries",
            "invalid_prompt",
            "timeout_prompt",
            "on_failure",
            "into",
        ],
        "if" => &["equals", "not_equals", "matches", "one_of", "then", "else"],
        "switch" => &["cases", "default"],
        "dial" => &["timeout"],
        "voicemail" => &["greeting", "beep", "max_length", "silence", "terminator"],
        "record" => &["prompt", "beep", "max_length", "silence", "terminator"],
        "webhook" => &["timeout", "fallback"],
        _ => &[],
    }
}

fn decode_step(ctx: &mut Ctx, node: &Node, path: String, flow: Option<&str>) -> Option<Step> {
    let mut f = Fields::of(ctx, node, path, "a step")?;
    let actions: Vec<&Entry> = f
        .entries
        .iter()
        .filter(|e| ACTIONS.contains(&e.key.as_str()))
        .collect();
    let action = match actions.as_slice() {
        [] => {
            let mut allowed: Vec<&str> = ACTIONS.to_vec();
            allowed.push("label");
            let unknown = f.entries.iter().any(|e| !allowed.contains(&e.key.as_str()));
            if unknown {
                f.check_keys(ctx, &allowed);
            } else {
                ctx.error(
                    f.at,
                    &f.path,
                    "a step needs an action key",
                    Some(format!("one of: {}", ACTIONS.join(", "))),
                );
            }
            return None;
        }
        [one] => *one,
        [first, second, ..] => {
            ctx.error(
                &second.at,
                &f.path,
                format!(
                    "two action keys in one step: \"{}\" and \"{}\"",
                    first.key, second.key
                ),
                Some("each step has exactly one action; split it into two steps".into()),
            );
            return None;
        }
    };
    let name = action.key.as_str();
    if ctx.json {
        f.path = format!("{}.{name}", f.path);
    }
    f.action = Some(name);
    let mut allowed = vec![name, "label"];
    allowed.extend_from_slice(action_options(name));
    f.check_keys(ctx, &allowed);
    let label = f.opt(ctx, "label", |ctx, n, p| {
        let s = string(ctx, n, p)?;
        if !is_name(s) {
            ctx.error(
                &n.at,
                p,
                format!("\"{s}\" is not a label"),
                Some("labels are letters, digits, `_` and `-`".into()),
            );
            return None;
        }
        Some(s.to_owned())
    });
    let main = &action.value;
    let mp = f.child(name);
    let mp = mp.as_str();
    let target = |ctx: &mut Ctx, n: &Node, p: &str| decode_target(ctx, n, p, flow);
    let kind = match name {
        "answer" => {
            yes(ctx, main, mp, name)?;
            StepKind::Answer
        }
        "play" => StepKind::Play {
            prompt: prompt(ctx, main, mp)?,
            barge_in: f.opt(ctx, "barge_in", boolean).unwrap_or(false),
        },
        "say" => StepKind::Play {
            prompt: Prompt::Say {
                text: template(ctx, main, mp)?,
                voice: f.opt(ctx, "voice", |ctx, n, p| {
                    string(ctx, n, p).map(str::to_owned)
                }),
            },
            barge_in: f.opt(ctx, "barge_in", boolean).unwrap_or(false),
        },
        "gather" => {
            let into = attr_name(ctx, main, mp);
            let min = f.opt(ctx, "min_digits", |c, n, p| uint(c, n, p, 1, 64));
            let max = f.opt(ctx, "max_digits", |c, n, p| uint(c, n, p, 1, 64));
            let (min_digits, max_digits) = (min.unwrap_or(1), max.unwrap_or(20));
            if min_digits > max_digits {
                let at = f
                    .get("min_digits")
                    .or(f.get("max_digits"))
                    .map_or(f.at, |e| &e.value.at);
                ctx.error(
                    at,
                    &f.child("min_digits"),
                    format!("min_digits ({min_digits}) is greater than max_digits ({max_digits})"),
                    None,
                );
            }
            StepKind::Gather(Gather {
                prompt: f.opt(ctx, "prompt", prompt),
                min_digits,
                max_digits,
                terminator: f.opt(ctx, "terminator", terminator).unwrap_or(Some('#')),
                first_timeout: f
                    .opt(ctx, "first_timeout", positive_duration)
                    .unwrap_or(Duration::from_secs(5)),
                inter_digit_timeout: f
                    .opt(ctx, "inter_digit_timeout", positive_duration)
                    .unwrap_or(Duration::from_secs(3)),
                tries: f.opt(ctx, "tries", tries).unwrap_or(3),
                invalid_prompt: f.opt(ctx, "invalid_prompt", prompt),
                timeout_prompt: f.opt(ctx, "timeout_prompt", prompt),
                pattern: f.opt(ctx, "pattern", regex),
                on_failure: f.opt(ctx, "on_failure", target),
                into: into?,
            })
        }
        "menu" => {
            let greeting = prompt(ctx, main, mp);
            let options = f.req(ctx, "options", |ctx, n, p| menu_options(ctx, n, p, flow));
            StepKind::Menu(Menu {
                short_greeting: f.opt(ctx, "short_greeting", prompt),
                timeout: f
                    .opt(ctx, "timeout", positive_duration)
                    .unwrap_or(Duration::from_secs(5)),
                tries: f.opt(ctx, "tries", tries).unwrap_or(3),
                invalid_prompt: f.opt(ctx, "invalid_prompt", prompt),
                timeout_prompt: f.opt(ctx, "timeout_prompt", prompt),
                on_failure: f.opt(ctx, "on_failure", target),
                into: f
                    .opt(ctx, "into", attr_name)
                    .unwrap_or_else(|| "menu".into()),
                greeting: greeting?,
                options: options?,
            })
        }
        "set" => StepKind::Set(set_attrs(ctx, main, mp)?),
        "if" => {
            let attr = attr_name(ctx, main, mp);
            f.at_most_one(ctx, &["equals", "not_equals", "matches", "one_of"]);
            let test = if let Some(t) = f.opt(ctx, "equals", template) {
                Test::Equals(t)
            } else if let Some(t) = f.opt(ctx, "not_equals", template) {
                Test::NotEquals(t)
            } else if let Some(p) = f.opt(ctx, "matches", regex) {
                Test::Matches(p)
            } else if let Some(v) =
                f.opt(ctx, "one_of", |ctx, n, p| array(ctx, n, p, string_or_int))
            {
                Test::OneOf(v)
            } else {
                Test::Present
            };
            let then = f.req(ctx, "then", target);
            StepKind::If(If {
                otherwise: f.opt(ctx, "else", target),
                attr: attr?,
                test,
                then: then?,
            })
        }
        "switch" => {
            let attr = attr_name(ctx, main, mp);
            let cases = f.req(ctx, "cases", |ctx, n, p| {
                let cf = Fields::of(ctx, n, p.to_owned(), "cases")?;
                if cf.entries.is_empty() {
                    ctx.error(&n.at, p, "a switch needs at least one case", None);
                }
                let mut cases = Vec::new();
                for e in cf.entries {
                    if let Some(t) = decode_target(ctx, &e.value, &cf.child(&e.key), flow) {
                        cases.push((e.key.clone(), t));
                    }
                }
                Some(cases)
            });
            StepKind::Switch(Switch {
                default: f.opt(ctx, "default", target),
                attr: attr?,
                cases: cases?,
            })
        }
        "goto" => StepKind::Goto(target(ctx, main, mp)?),
        "dial" => {
            let to = string_or_int(ctx, main, mp).and_then(|s| {
                if let Some(group) = s.strip_prefix("group:") {
                    ctx.refs.push(Ref {
                        kind: RefKind::Group(group.to_owned()),
                        at: main.at.clone(),
                        path: mp.to_owned(),
                        from_flow: flow.map(str::to_owned),
                    });
                    Some(DialTarget::Group(group.to_owned()))
                } else if s.trim().is_empty() {
                    ctx.error(&main.at, mp, "nothing to dial", None);
                    None
                } else {
                    check_template(ctx, &main.at, mp, &s).map(DialTarget::Extension)
                }
            });
            StepKind::Dial(Dial {
                timeout: f.opt(ctx, "timeout", positive_duration),
                to: to?,
            })
        }
        "voicemail" => StepKind::Voicemail(Voicemail {
            mailbox: template(ctx, main, mp)?,
            greeting: f.opt(ctx, "greeting", prompt),
            beep: f.opt(ctx, "beep", boolean).unwrap_or(true),
            max_length: f
                .opt(ctx, "max_length", positive_duration)
                .unwrap_or(Duration::from_secs(120)),
            silence: f
                .opt(ctx, "silence", silence)
                .unwrap_or(Some(Duration::from_secs(5))),
            terminator: f.opt(ctx, "terminator", terminator).unwrap_or(Some('#')),
        }),
        "record" => {
            let into = attr_name(ctx, main, mp);
            StepKind::Record(Record {
                prompt: f.opt(ctx, "prompt", prompt),
                beep: f.opt(ctx, "beep", boolean).unwrap_or(true),
                max_length: f
                    .opt(ctx, "max_length", positive_duration)
                    .unwrap_or(Duration::from_secs(60)),
                silence: f
                    .opt(ctx, "silence", silence)
                    .unwrap_or(Some(Duration::from_secs(3))),
                terminator: f.opt(ctx, "terminator", terminator).unwrap_or(Some('#')),
                into: into?,
            })
        }
        "record_call" => {
            yes(ctx, main, mp, name)?;
            StepKind::RecordCall
        }
        "transfer" => {
            let s = string_or_int(ctx, main, mp)?;
            if s.trim().is_empty() {
                ctx.error(&main.at, mp, "no number to transfer to", None);
                return None;
            }
            StepKind::Transfer(check_template(ctx, &main.at, mp, &s)?)
        }
        "hangup" => StepKind::Hangup(match &main.v {
            Val::Bool(true) => HangupCause::Normal,
            _ => one_of(
                ctx,
                main,
                mp,
                &[
                    ("normal", HangupCause::Normal),
                    ("busy", HangupCause::Busy),
                    ("rejected", HangupCause::Rejected),
                    ("unavailable", HangupCause::Unavailable),
                    ("not_found", HangupCause::NotFound),
                ],
            )?,
        }),
        "webhook" => {
            let url = template(ctx, main, mp).and_then(|t| {
                if t.0.starts_with("http://")
                    || t.0.starts_with("https://")
                    || t.0.starts_with("{{")
                {
                    Some(t)
                } else {
                    ctx.error(
                        &main.at,
                        mp,
                        format!("\"{}\" is not an http:// or https:// URL", t.0),
                        None,
                    );
                    None
                }
            });
            StepKind::Webhook(Webhook {
                timeout: f
                    .opt(ctx, "timeout", positive_duration)
                    .unwrap_or(Duration::from_secs(5)),
                fallback: f.opt(ctx, "fallback", target),
                url: url?,
            })
        }
        "pause" => StepKind::Pause(duration(ctx, main, mp)?),
        _ => return None,
    };
    Some(Step {
        label,
        kind,
        at: node.at.clone(),
    })
}

fn menu_options(
    ctx: &mut Ctx,
    n: &Node,
    p: &str,
    flow: Option<&str>,
) -> Option<Vec<(char, MenuChoice)>> {
    let f = Fields::of(ctx, n, p.to_owned(), "menu options")?;
    if f.entries.is_empty() {
        ctx.error(&n.at, p, "a menu needs at least one option", None);
        return None;
    }
    let mut options = Vec::new();
    for e in f.entries {
        let mut chars = e.key.chars();
        let digit = match (chars.next(), chars.next()) {
            (Some(c), None) if is_dtmf(c) => c,
            _ => {
                ctx.error(
                    &e.at,
                    &f.path,
                    format!("menu option \"{}\" is not one DTMF key", e.key),
                    Some(
                        "options are single keys: 0-9, *, #, A-D (quote them: \"*\" = ...)".into(),
                    ),
                );
                continue;
            }
        };
        let choice = if matches!(&e.value.v, Val::Str(s) if s == "repeat") {
            Some(MenuChoice::Repeat)
        } else {
            decode_target(ctx, &e.value, &f.child(&e.key), flow).map(MenuChoice::Go)
        };
        if let Some(choice) = choice {
            options.push((digit, choice));
        }
    }
    Some(options)
}

fn set_attrs(ctx: &mut Ctx, n: &Node, p: &str) -> Option<Vec<(String, Template)>> {
    let f = Fields::of(ctx, n, p.to_owned(), "attributes to set")?;
    if f.entries.is_empty() {
        ctx.error(&n.at, p, "nothing to set", None);
        return None;
    }
    let mut out = Vec::new();
    for e in f.entries {
        if !is_attr(&e.key) {
            ctx.error(
                &e.at,
                p,
                format!("\"{}\" is not an attribute name", e.key),
                Some("attribute names are [A-Za-z_][A-Za-z0-9_.]*".into()),
            );
            continue;
        }
        let vp = f.child(&e.key);
        if let Some(t) = string_or_int(ctx, &e.value, &vp)
            .and_then(|s| check_template(ctx, &e.value.at, &vp, &s))
        {
            out.push((e.key.clone(), t));
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// Values.

fn type_error(ctx: &mut Ctx, n: &Node, p: &str, expected: &str) {
    ctx.error(
        &n.at,
        p,
        format!("expected {expected}, found {}", n.v.kind()),
        None,
    );
}

fn string<'a>(ctx: &mut Ctx, n: &'a Node, p: &str) -> Option<&'a str> {
    match &n.v {
        Val::Str(s) => Some(s),
        _ => {
            type_error(ctx, n, p, "a string");
            None
        }
    }
}

/// A string, or an integer taken as its decimal digits (numbers written unquoted).
fn string_or_int(ctx: &mut Ctx, n: &Node, p: &str) -> Option<String> {
    match &n.v {
        Val::Str(s) => Some(s.clone()),
        Val::Int(Some(i)) => Some(i.to_string()),
        _ => {
            type_error(ctx, n, p, "a string");
            None
        }
    }
}

fn boolean(ctx: &mut Ctx, n: &Node, p: &str) -> Option<bool> {
    match &n.v {
        Val::Bool(b) => Some(*b),
        _ => {
            type_error(ctx, n, p, "true or false");
            None
        }
    }
}

/// `answer = true`, `record_call = true`.
fn yes(ctx: &mut Ctx, n: &Node, p: &str, action: &str) -> Option<()> {
    match &n.v {
        Val::Bool(true) => Some(()),
        _ => {
            ctx.error(
                &n.at,
                p,
                format!("write `{action} = true` (or remove the step)"),
                None,
            );
            None
        }
    }
}

fn uint(ctx: &mut Ctx, n: &Node, p: &str, min: u32, max: u32) -> Option<u32> {
    match &n.v {
        Val::Int(Some(i)) if (i64::from(min)..=i64::from(max)).contains(i) => {
            u32::try_from(*i).ok()
        }
        Val::Int(_) => {
            ctx.error(&n.at, p, format!("must be between {min} and {max}"), None);
            None
        }
        _ => {
            type_error(ctx, n, p, "an integer");
            None
        }
    }
}

fn tries(ctx: &mut Ctx, n: &Node, p: &str) -> Option<u32> {
    uint(ctx, n, p, 1, 100)
}

fn one_of<T: Copy>(ctx: &mut Ctx, n: &Node, p: &str, choices: &[(&str, T)]) -> Option<T> {
    let s = string(ctx, n, p)?;
    if let Some((_, v)) = choices.iter().find(|(name, _)| *name == s) {
        return Some(*v);
    }
    ctx.error(
        &n.at,
        p,
        format!("unknown value \"{s}\""),
        Some(suggest(s, choices.iter().map(|(name, _)| *name))),
    );
    None
}

fn array<T>(
    ctx: &mut Ctx,
    n: &Node,
    p: &str,
    mut item: impl FnMut(&mut Ctx, &Node, &str) -> Option<T>,
) -> Option<Vec<T>> {
    let Val::Array(items) = &n.v else {
        type_error(ctx, n, p, "an array");
        return None;
    };
    Some(
        items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| item(ctx, v, &format!("{p}[{i}]")))
            .collect(),
    )
}

const DURATION_HINT: &str =
    "durations are \"5s\", \"1m30s\", \"500ms\" or whole seconds, at most 24h";

fn duration(ctx: &mut Ctx, n: &Node, p: &str) -> Option<Duration> {
    match &n.v {
        Val::Int(Some(i)) if u64::try_from(*i).is_ok_and(|s| s <= MAX_DURATION.as_secs()) => {
            Some(Duration::from_secs(i.unsigned_abs()))
        }
        Val::Str(s) => match parse_duration(s) {
            Some(d) => Some(d),
            None => {
                ctx.error(
                    &n.at,
                    p,
                    format!("bad duration \"{s}\""),
                    Some(DURATION_HINT.into()),
                );
                None
            }
        },
        _ => {
            ctx.error(
                &n.at,
                p,
                format!("expected a duration, found {}", n.v.kind()),
                Some(DURATION_HINT.into()),
            );
            None
        }
    }
}

fn positive_duration(ctx: &mut Ctx, n: &Node, p: &str) -> Option<Duration> {
    let d = duration(ctx, n, p)?;
    if d.is_zero() {
        ctx.error(&n.at, p, "must be longer than zero", None);
        return None;
    }
    Some(d)
}

/// A duration or `"off"`.
fn silence(ctx: &mut Ctx, n: &Node, p: &str) -> Option<Option<Duration>> {
    if matches!(&n.v, Val::Str(s) if s == "off") {
        return Some(None);
    }
    positive_duration(ctx, n, p).map(Some)
}

fn is_dtmf(c: char) -> bool {
    matches!(c, '0'..='9' | '*' | '#' | 'A'..='D')
}

/// One DTMF key, or `""` for none.
fn terminator(ctx: &mut Ctx, n: &Node, p: &str) -> Option<Option<char>> {
    let s = string(ctx, n, p)?;
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (None, _) => Some(None),
        (Some(c), None) if is_dtmf(c) => Some(Some(c)),
        _ => {
            ctx.error(
                &n.at,
                p,
                format!("\"{s}\" is not one DTMF key"),
                Some("one of 0-9, *, #, A-D, or \"\" for none".into()),
            );
            None
        }
    }
}

fn date(ctx: &mut Ctx, n: &Node, p: &str) -> Option<jiff::civil::Date> {
    let parsed = match &n.v {
        Val::Datetime(Some(d)) => Some(*d),
        Val::Str(s) => s
            .parse::<jiff::civil::Date>()
            .ok()
            .filter(|_| s.len() == 10),
        _ => None,
    };
    if parsed.is_none() {
        let what = match &n.v {
            Val::Str(s) => format!("bad date \"{s}\""),
            other => format!("expected a date, found {}", other.kind()),
        };
        ctx.error(
            &n.at,
            p,
            what,
            Some("write 2026-12-25 or \"2026-12-25\"".into()),
        );
    }
    parsed
}

fn regex(ctx: &mut Ctx, n: &Node, p: &str) -> Option<Pattern> {
    let s = string(ctx, n, p)?;
    match regex::Regex::new(s) {
        Ok(r) => Some(Pattern(r)),
        Err(e) => {
            let text = e.to_string();
            let reason = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid")
                .trim()
                .trim_start_matches("error: ")
                .to_owned();
            ctx.error(
                &n.at,
                p,
                format!("bad regex \"{s}\": {reason}"),
                Some("regex crate syntax; anchor with ^ and $ to match the whole value".into()),
            );
            None
        }
    }
}

fn is_attr(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

/// Flow and label names.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

fn attr_name(ctx: &mut Ctx, n: &Node, p: &str) -> Option<String> {
    let s = string(ctx, n, p)?;
    if !is_attr(s) {
        ctx.error(
            &n.at,
            p,
            format!("\"{s}\" is not an attribute name"),
            Some("attribute names are [A-Za-z_][A-Za-z0-9_.]*".into()),
        );
        return None;
    }
    Some(s.to_owned())
}

fn template(ctx: &mut Ctx, n: &Node, p: &str) -> Option<Template> {
    let s = string(ctx, n, p)?;
    check_template(ctx, &n.at, p, s)
}

/// Every `{{name}}` must name an attribute.
fn check_template(ctx: &mut Ctx, at: &Pos, p: &str, s: &str) -> Option<Template> {
    let t = Template(s.to_owned());
    for name in super::template::names(&t) {
        if !is_attr(&name) {
            ctx.error(
                at,
                p,
                format!("\"{{{{{name}}}}}\" is not an attribute placeholder"),
                Some("placeholders are {{name}} with name [A-Za-z_][A-Za-z0-9_.]*".into()),
            );
            return None;
        }
    }
    Some(t)
}

const PROMPT_HINT: &str = "a prompt is a file under the media directory (\"prompts/welcome\"), \"tone:ringback|busy|congestion|beep\", \"say:text\" or \"silence:2s\"";

fn prompt(ctx: &mut Ctx, n: &Node, p: &str) -> Option<Prompt> {
    let s = string(ctx, n, p)?;
    if let Some(t) = s.strip_prefix("tone:") {
        let tone = match t {
            "ringback" => ToneKind::Ringback,
            "busy" => ToneKind::Busy,
            "congestion" => ToneKind::Congestion,
            "beep" => ToneKind::Beep,
            _ => {
                ctx.error(
                    &n.at,
                    p,
                    format!("unknown tone \"{t}\""),
                    Some(suggest(
                        t,
                        ["ringback", "busy", "congestion", "beep"].into_iter(),
                    )),
                );
                return None;
            }
        };
        return Some(Prompt::Tone(tone));
    }
    if let Some(text) = s.strip_prefix("say:") {
        return Some(Prompt::Say {
            text: check_template(ctx, &n.at, p, text)?,
            voice: None,
        });
    }
    if let Some(d) = s.strip_prefix("silence:") {
        return match parse_duration(d) {
            Some(d) => Some(Prompt::Silence(d)),
            None => {
                ctx.error(
                    &n.at,
                    p,
                    format!("bad duration \"{d}\""),
                    Some(DURATION_HINT.into()),
                );
                None
            }
        };
    }
    if let Some((kind, _)) = s.split_once(':').filter(|(k, _)| !k.contains('/')) {
        ctx.error(
            &n.at,
            p,
            format!("unknown prompt kind \"{kind}:\""),
            Some(PROMPT_HINT.into()),
        );
        return None;
    }
    let path = Path::new(s);
    let inside = !s.is_empty()
        && !s.contains('\\')
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !inside {
        ctx.error(
            &n.at,
            p,
            format!("prompt \"{s}\" is not a path inside the media directory"),
            Some("write a relative path without `..`, e.g. \"prompts/welcome\"".into()),
        );
        return None;
    }
    let file = if s.to_ascii_lowercase().ends_with(".wav") {
        s.to_owned()
    } else {
        format!("{s}.wav")
    };
    ctx.media.push((file.clone(), n.at.clone()));
    Some(Prompt::File(file))
}

fn decode_target(ctx: &mut Ctx, n: &Node, p: &str, flow: Option<&str>) -> Option<Target> {
    let s = string(ctx, n, p)?;
    let target = match s.split_once('#') {
        Some((f, l)) => Target {
            flow: (!f.is_empty()).then(|| f.to_owned()),
            label: Some(l.to_owned()),
        },
        None => Target {
            flow: Some(s.to_owned()),
            label: None,
        },
    };
    let ok =
        target.flow.as_deref().is_none_or(is_name) && target.label.as_deref().is_none_or(is_name);
    if !ok {
        ctx.error(
            &n.at,
            p,
            format!("\"{s}\" is not a target"),
            Some("targets are \"flow\", \"flow#label\" or \"#label\"".into()),
        );
        return None;
    }
    ctx.refs.push(Ref {
        kind: RefKind::Target(target.clone()),
        at: n.at.clone(),
        path: p.to_owned(),
        from_flow: flow.map(str::to_owned),
    });
    Some(target)
}

fn weekday(s: &str) -> Result<usize, String> {
    const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    DAYS.iter()
        .position(|d| d.eq_ignore_ascii_case(s))
        .ok_or_else(|| format!("unknown day \"{s}\" (mon, tue, wed, thu, fri, sat, sun or daily)"))
}

fn clock(s: &str, end: bool) -> Result<jiff::civil::Time, String> {
    let bad = || format!("bad time \"{s}\" (HH:MM)");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: i8 = h.parse().map_err(|_| bad())?;
    let m: i8 = m.parse().map_err(|_| bad())?;
    if end && h == 24 && m == 0 {
        return Ok(jiff::civil::Time::MAX);
    }
    jiff::civil::Time::new(h, m, 0, 0).map_err(|_| bad())
}

// ---------------------------------------------------------------------------------------------
// Whole-plan checks.

fn check_media(ctx: &mut Ctx, media_dir: &Path) {
    for (file, at) in std::mem::take(&mut ctx.media) {
        let full = media_dir.join(&file);
        if !full.is_file() {
            ctx.error(
                &at,
                "",
                format!("prompt file \"{file}\" not found"),
                Some(format!("expected {}", full.display())),
            );
        }
    }
}

fn check_refs(ctx: &mut Ctx, refs: &[Ref], known: &Known) {
    for r in refs {
        match &r.kind {
            RefKind::Calendar(name) if !known.calendars.contains(name) => ctx.error(
                &r.at,
                &r.path,
                format!("no calendar \"{name}\""),
                Some(suggest(name, known.calendars.iter().map(String::as_str))),
            ),
            RefKind::Group(name) if !known.groups.contains(name) => ctx.error(
                &r.at,
                &r.path,
                format!("no ring group \"{name}\""),
                Some(suggest(name, known.groups.iter().map(String::as_str))),
            ),
            RefKind::Target(t) => {
                let flow = t.flow.as_deref().or(r.from_flow.as_deref());
                match (flow, &t.label) {
                    (None, Some(label)) if !known.local.contains(label) => ctx.error(
                        &r.at,
                        &r.path,
                        format!("no label \"{label}\" in these steps"),
                        Some(suggest(label, known.local.iter().map(String::as_str))),
                    ),
                    (None, _) => {}
                    (Some(flow), label) => match known.flows.get(flow) {
                        None => ctx.error(
                            &r.at,
                            &r.path,
                            format!("no flow \"{flow}\""),
                            Some(suggest(flow, known.flows.keys().map(String::as_str))),
                        ),
                        Some(labels) => {
                            if let Some(label) = label.as_ref().filter(|l| !labels.contains(l)) {
                                ctx.error(
                                    &r.at,
                                    &r.path,
                                    format!("flow \"{flow}\" has no label \"{label}\""),
                                    Some(if labels.is_empty() {
                                        "label a step with `label = \"name\"`".into()
                                    } else {
                                        suggest(label, labels.iter().map(String::as_str))
                                    }),
                                );
                            }
                        }
                    },
                }
            }
            _ => {}
        }
    }
}

/// A flow that cannot be reached from any route — directly, or through the targets of flows
/// that can — can never run.
fn check_unreachable(ctx: &mut Ctx, refs: &[Ref], plan: &Dialplan) {
    let target_flow = |r: &Ref| match &r.kind {
        RefKind::Target(t) => t.flow.clone(),
        _ => None,
    };
    let mut reachable: BTreeSet<String> = refs
        .iter()
        .filter(|r| r.from_flow.is_none())
        .filter_map(target_flow)
        .collect();
    let mut queue: Vec<String> = reachable.iter().cloned().collect();
    while let Some(flow) = queue.pop() {
        for r in refs
            .iter()
            .filter(|r| r.from_flow.as_deref() == Some(flow.as_str()))
        {
            if let Some(next) = target_flow(r)
                && reachable.insert(next.clone())
            {
                queue.push(next);
            }
        }
    }
    for (name, flow) in &plan.flows {
        if !reachable.contains(name.as_str()) {
            ctx.error(
                &flow.at,
                "",
                format!("flow \"{name}\" is never used"),
                Some(format!(
                    "no route leads to it (directly or through a goto, menu option or fallback of a flow a route leads to): add a route with `flow = \"{name}\"`, or remove it"
                )),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str) -> Result<Dialplan, Vec<Diagnostic>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("plan.toml");
        std::fs::write(&file, text).expect("write plan");
        std::fs::create_dir_all(dir.path().join("media/prompts")).expect("media dir");
        std::fs::write(dir.path().join("media/prompts/hello.wav"), b"").expect("prompt");
        load(
            &file,
            &CheckOptions {
                media_dir: dir.path().join("media"),
            },
        )
    }

    fn errors(text: &str) -> Vec<String> {
        match load_str(text) {
            Ok(_) => Vec::new(),
            Err(d) => d
                .iter()
                .map(|d| format!("{}:{} {}", d.at.line, d.at.col, d.message))
                .collect(),
        }
    }

    #[test]
    fn durations_parse_in_every_unit() {
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("24h"), Some(MAX_DURATION));
        assert_eq!(parse_duration("24h1s"), None, "longer than a day");
        assert_eq!(parse_duration("99999999999999h"), None);
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn hours_lines_parse_days_ranges_and_end_of_day() {
        let h = parse_hours("mon-fri 08:00-18:00").expect("valid");
        assert_eq!(h.days, [true, true, true, true, true, false, false]);
        assert_eq!(h.start, jiff::civil::time(8, 0, 0, 0));
        let h = parse_hours("mon,wed,fri 09:00-12:00").expect("valid");
        assert_eq!(h.days, [true, false, true, false, true, false, false]);
        let h = parse_hours("daily 00:00-24:00").expect("valid");
        assert_eq!(h.days, [true; 7]);
        assert_eq!(h.end, jiff::civil::Time::MAX);
        let h = parse_hours("sat-mon 10:00-14:00").expect("wraps");
        assert_eq!(h.days, [true, false, false, false, false, true, true]);
        assert!(parse_hours("mon-fry 08:00-18:00").is_err());
        assert!(parse_hours("mon 18:00-08:00").is_err());
        assert!(parse_hours("mon 8:00-18:00").is_err());
        assert!(parse_hours("mon 08:00-25:00").is_err());
        assert!(parse_hours("mon").is_err());
    }

    #[test]
    fn a_small_plan_decodes_into_the_ast() {
        let plan = load_str(
            r##"
[[routes]]
number = "100"
flow = "main"

[[flows.main]]
answer = true

[[flows.main]]
label = "top"
gather = "pin"
prompt = "prompts/hello"
max_digits = 4
terminator = ""

[[flows.main]]
set = { b = "{{pin}}", a = "x" }

[[flows.main]]
if = "pin"
equals = "1234"
then = "#top"

[[flows.main]]
hangup = "busy"
"##,
        )
        .expect("valid");
        assert_eq!(plan.routes.len(), 1);
        assert_eq!(plan.routes[0].name, "route 1");
        let main = &plan.flows["main"];
        assert_eq!(main.steps.len(), 5);
        assert_eq!(main.label("top"), Some(1));
        let StepKind::Gather(g) = &main.steps[1].kind else {
            panic!("gather expected: {:?}", main.steps[1].kind);
        };
        assert_eq!((g.min_digits, g.max_digits, g.terminator), (1, 4, None));
        assert_eq!(g.prompt, Some(Prompt::File("prompts/hello.wav".into())));
        assert_eq!(main.steps[1].at.line, 9);
        let StepKind::Set(set) = &main.steps[2].kind else {
            panic!("set expected");
        };
        let names: Vec<&str> = set.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["b", "a"], "set keeps the written order");
        assert_eq!(main.steps[4].kind, StepKind::Hangup(HangupCause::Busy));
    }

    #[test]
    fn every_problem_is_reported_with_its_position() {
        let errs = errors(
            r#"
[[routes]]
number = "100"
flow = "main"

[[flows.main]]
gather = "pin"
maxdigits = 4
tries = "three"

[[flows.main]]
goto = "nowhere"
"#,
        );
        assert_eq!(
            errs,
            [
                "8:1 unknown key \"maxdigits\"",
                "9:9 expected an integer, found a string",
                "12:8 no flow \"nowhere\"",
            ]
        );
    }

    #[test]
    fn unknown_key_hint_names_the_nearest_key() {
        let d = load_str("[[routes]]\nflow = \"x\"\n[[flows.x]]\ngather = \"a\"\nmaxdigits = 3\n")
            .expect_err("unknown key");
        assert_eq!(d[0].hint.as_deref(), Some("did you mean `max_digits`?"));
    }

    #[test]
    fn bad_prompt_paths_are_refused() {
        let errs = errors(
            "[[routes]]\nflow = \"x\"\n[[flows.x]]\nplay = \"../etc/passwd\"\n[[flows.x]]\nplay = \"/abs\"\n[[flows.x]]\nplay = \"tone:bep\"\n[[flows.x]]\nplay = \"prompts/missing\"\n",
        );
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert!(errs[0].contains("not a path inside"), "{errs:?}");
        assert!(errs[1].contains("not a path inside"), "{errs:?}");
        assert!(errs[2].contains("unknown tone"), "{errs:?}");
        assert!(
            errs[3].contains("prompts/missing.wav\" not found"),
            "{errs:?}"
        );
    }

    #[test]
    fn empty_directory_is_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let opts = CheckOptions {
            media_dir: dir.path().to_owned(),
        };
        let d = load(dir.path(), &opts).expect_err("empty");
        assert!(d[0].message.contains("no dialplan files"), "{d:?}");
        let d = load(&dir.path().join("nope"), &opts).expect_err("missing");
        assert!(d[0].message.contains("cannot read"), "{d:?}");
    }

    #[test]
    fn truncated_plans_never_panic() {
        let text = include_str!("../../dialplans/default.toml");
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("plan.toml");
        let opts = CheckOptions {
            media_dir: dir.path().to_owned(),
        };
        for cut in (0..text.len())
            .step_by(11)
            .filter(|&c| text.is_char_boundary(c))
        {
            std::fs::write(&file, &text[..cut]).expect("write");
            let _ = load(&file, &opts);
        }
        for v in [
            serde_json::json!(null),
            serde_json::json!({"steps": 1}),
            serde_json::json!([1, "x", {"menu": {}}, {"gather": 5, "min_digits": -1}]),
            serde_json::json!([{"pause": 1e300}, {"dial": "group:"}, {"goto": "#"}]),
        ] {
            assert!(steps_from_json(&v, &Dialplan::default()).is_err(), "{v}");
        }
    }
}
