//! Reads dialplans: the TOML files of a directory → a checked [`Dialplan`]. Every problem is
//! reported, each with file:line:column and a hint; nothing is built when there is one.
//! PURE apart from reading the files and checking that prompt files exist.
//!
//! Both front ends (TOML files, a webhook's JSON reply) are first turned into one small tree of
//! values that carry their position ([`Node`]); a single decoder turns that tree into plan
//! types, so a step means the same thing, and is checked the same way, in both. The format is
//! documented in `dialplans/README.md`.
//!
//! Here: [`load`], [`steps_from_json`], the diagnostics and durations. `tree` builds the value
//! tree from TOML or JSON, `ctx` is the decoder's context (diagnostics, names, keys), `decode`
//! the top-level tables, `calendar` calendars and opening hours, `steps` the steps of a flow,
//! `values` the typed values, `check` the whole-plan checks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::plan::{
    Calendar, CalendarCond, Dial, DialTarget, Dialplan, Flow, Gather, HangupCause, Hours, If, Menu,
    MenuChoice, NumberMatch, Pattern, Pos, Prompt, QueueDef, QueueStep, Record, RingGroup, Route,
    Step, StepKind, Strategy, Switch, Target, Template, Test, Voicemail, Webhook,
};
use crate::media::tone::ToneKind;

mod calendar;
mod check;
mod ctx;
mod decode;
mod queues;
mod steps;
#[cfg(test)]
mod tests;
mod tree;
mod values;

pub use calendar::parse_hours;
use calendar::*;
use check::*;
use ctx::*;
use decode::*;
use queues::*;
use steps::*;
use tree::*;
use values::*;

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
