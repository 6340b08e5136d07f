//! Step decoding: one flow step (or one step of a webhook's JSON reply) → [`Step`], every action
//! with its allowed options, menus, attribute setting and `goto`-style targets.

use super::*;

/// The steps of a flow (or of a webhook reply), labels checked for duplicates.
pub(super) fn decode_steps(
    ctx: &mut Ctx,
    items: &[Node],
    path: &str,
    flow: Option<&str>,
) -> Vec<Step> {
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

pub(super) const ACTIONS: &[&str] = &[
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
    "send_message",
    "pause",
    "queue",
];

/// The option keys of each action (besides the action key and `label`).
pub(super) fn action_options(action: &str) -> &'static [&'static str] {
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
            "sensitive",
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
        "send_message" => &["text"],
        "queue" => &["priority", "skills"],
        _ => &[],
    }
}

pub(super) fn decode_step(
    ctx: &mut Ctx,
    node: &Node,
    path: String,
    flow: Option<&str>,
) -> Option<Step> {
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
                sensitive: f.opt(ctx, "sensitive", boolean).unwrap_or(false),
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
        "send_message" => {
            let channel = string(ctx, main, mp)?.to_owned();
            if channel.is_empty() {
                ctx.error(&main.at, mp, "no channel to send the message on", None);
                return None;
            }
            StepKind::SendMessage {
                channel,
                text: f.req(ctx, "text", template)?,
            }
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
        "queue" => decode_queue_step(ctx, &f, main, mp, flow)?,
        _ => return None,
    };
    Some(Step {
        label,
        kind,
        at: node.at.clone(),
    })
}

pub(super) fn menu_options(
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

pub(super) fn set_attrs(ctx: &mut Ctx, n: &Node, p: &str) -> Option<Vec<(String, Template)>> {
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

pub(super) fn decode_target(
    ctx: &mut Ctx,
    n: &Node,
    p: &str,
    flow: Option<&str>,
) -> Option<Target> {
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
