//! The decoder's context: the diagnostics it collects, the names a plan defines and the references
//! to them (checked once every file is read), and [`Fields`], the key access of one table that
//! reports unknown, missing and mistyped keys with a "did you mean" hint.

use super::*;

/// Something a plan refers to by name, checked once every file is read.
#[derive(Debug)]
pub(super) struct Ref {
    pub(super) kind: RefKind,
    pub(super) at: Pos,
    pub(super) path: String,
    /// The flow the reference is written in (`None` for routes and webhook replies).
    pub(super) from_flow: Option<String>,
}

#[derive(Debug)]
pub(super) enum RefKind {
    Target(Target),
    Group(String),
    Calendar(String),
    Queue(String),
    Skill(String),
}

/// The names a plan defines, as written: those whose definition has errors too, so that one
/// mistake is reported once.
#[derive(Debug, Default)]
pub(super) struct Known {
    pub(super) calendars: BTreeSet<String>,
    pub(super) groups: BTreeSet<String>,
    pub(super) queues: BTreeSet<String>,
    pub(super) skills: BTreeSet<String>,
    /// Each flow's labels.
    pub(super) flows: BTreeMap<String, Vec<String>>,
    /// The labels of a webhook reply's own steps.
    pub(super) local: BTreeSet<String>,
}

impl Known {
    pub(super) fn of_plan(plan: &Dialplan) -> Known {
        Known {
            calendars: plan.calendars.keys().cloned().collect(),
            groups: plan.ring_groups.keys().cloned().collect(),
            queues: plan.queues.keys().cloned().collect(),
            skills: plan.skills.clone(),
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

pub(super) struct Ctx {
    /// Messages name the JSON path (webhook replies have no positions).
    pub(super) json: bool,
    pub(super) diags: Vec<Diagnostic>,
    pub(super) refs: Vec<Ref>,
    /// Prompt files to look for: (name with `.wav`, where).
    pub(super) media: Vec<(String, Pos)>,
    /// Where each calendar, ring group and flow was first defined (`kind:name`).
    pub(super) defined: BTreeMap<String, Pos>,
    pub(super) known: Known,
}

impl Ctx {
    pub(super) fn new(json: bool) -> Ctx {
        Ctx {
            json,
            diags: Vec::new(),
            refs: Vec::new(),
            media: Vec::new(),
            defined: BTreeMap::new(),
            known: Known::default(),
        }
    }

    pub(super) fn error(
        &mut self,
        at: &Pos,
        path: &str,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
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
pub(super) struct Fields<'a> {
    pub(super) entries: &'a [Entry],
    pub(super) at: &'a Pos,
    pub(super) path: String,
    /// A step's action key: its value's path is the step's own path.
    pub(super) action: Option<&'a str>,
}

impl<'a> Fields<'a> {
    pub(super) fn new(entries: &'a [Entry], at: &'a Pos, path: String) -> Fields<'a> {
        Fields {
            entries,
            at,
            path,
            action: None,
        }
    }

    /// A table, or an error saying what was expected.
    pub(super) fn of(
        ctx: &mut Ctx,
        node: &'a Node,
        path: String,
        what: &str,
    ) -> Option<Fields<'a>> {
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

    pub(super) fn child(&self, key: &str) -> String {
        if self.action == Some(key) {
            self.path.clone()
        } else if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub(super) fn check_keys(&self, ctx: &mut Ctx, allowed: &[&str]) {
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

    pub(super) fn get(&self, key: &str) -> Option<&'a Entry> {
        self.entries.iter().find(|e| e.key == key)
    }

    pub(super) fn opt<T>(
        &self,
        ctx: &mut Ctx,
        key: &str,
        decode: impl FnOnce(&mut Ctx, &'a Node, &str) -> Option<T>,
    ) -> Option<T> {
        let e = self.get(key)?;
        decode(ctx, &e.value, &self.child(key))
    }

    pub(super) fn req<T>(
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
    pub(super) fn at_most_one(&self, ctx: &mut Ctx, keys: &[&str]) {
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
pub(super) fn suggest<'s>(word: &str, allowed: impl Iterator<Item = &'s str> + Clone) -> String {
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
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
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
