//! Typed values of a plan: strings, booleans, bounded integers, choices, durations, DTMF
//! terminators, dates, regexes, attribute names, templates and prompts, each with its own error
//! and hint.

use super::*;

pub(super) fn type_error(ctx: &mut Ctx, n: &Node, p: &str, expected: &str) {
    ctx.error(
        &n.at,
        p,
        format!("expected {expected}, found {}", n.v.kind()),
        None,
    );
}

pub(super) fn string<'a>(ctx: &mut Ctx, n: &'a Node, p: &str) -> Option<&'a str> {
    match &n.v {
        Val::Str(s) => Some(s),
        _ => {
            type_error(ctx, n, p, "a string");
            None
        }
    }
}

/// A string, or an integer taken as its decimal digits (numbers written unquoted).
pub(super) fn string_or_int(ctx: &mut Ctx, n: &Node, p: &str) -> Option<String> {
    match &n.v {
        Val::Str(s) => Some(s.clone()),
        Val::Int(Some(i)) => Some(i.to_string()),
        _ => {
            type_error(ctx, n, p, "a string");
            None
        }
    }
}

pub(super) fn boolean(ctx: &mut Ctx, n: &Node, p: &str) -> Option<bool> {
    match &n.v {
        Val::Bool(b) => Some(*b),
        _ => {
            type_error(ctx, n, p, "true or false");
            None
        }
    }
}

/// `answer = true`, `record_call = true`.
pub(super) fn yes(ctx: &mut Ctx, n: &Node, p: &str, action: &str) -> Option<()> {
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

pub(super) fn uint(ctx: &mut Ctx, n: &Node, p: &str, min: u32, max: u32) -> Option<u32> {
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

pub(super) fn tries(ctx: &mut Ctx, n: &Node, p: &str) -> Option<u32> {
    uint(ctx, n, p, 1, 100)
}

pub(super) fn one_of<T: Copy>(
    ctx: &mut Ctx,
    n: &Node,
    p: &str,
    choices: &[(&str, T)],
) -> Option<T> {
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

pub(super) fn array<T>(
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

pub(super) const DURATION_HINT: &str =
    "durations are \"5s\", \"1m30s\", \"500ms\" or whole seconds, at most 24h";

pub(super) fn duration(ctx: &mut Ctx, n: &Node, p: &str) -> Option<Duration> {
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

pub(super) fn positive_duration(ctx: &mut Ctx, n: &Node, p: &str) -> Option<Duration> {
    let d = duration(ctx, n, p)?;
    if d.is_zero() {
        ctx.error(&n.at, p, "must be longer than zero", None);
        return None;
    }
    Some(d)
}

/// A duration or `"off"`.
pub(super) fn silence(ctx: &mut Ctx, n: &Node, p: &str) -> Option<Option<Duration>> {
    if matches!(&n.v, Val::Str(s) if s == "off") {
        return Some(None);
    }
    positive_duration(ctx, n, p).map(Some)
}

pub(super) fn is_dtmf(c: char) -> bool {
    matches!(c, '0'..='9' | '*' | '#' | 'A'..='D')
}

/// One DTMF key, or `""` for none.
pub(super) fn terminator(ctx: &mut Ctx, n: &Node, p: &str) -> Option<Option<char>> {
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

pub(super) fn date(ctx: &mut Ctx, n: &Node, p: &str) -> Option<jiff::civil::Date> {
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

pub(super) fn regex(ctx: &mut Ctx, n: &Node, p: &str) -> Option<Pattern> {
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

pub(super) fn is_attr(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

/// Flow and label names.
pub(super) fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

pub(super) fn attr_name(ctx: &mut Ctx, n: &Node, p: &str) -> Option<String> {
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

pub(super) fn template(ctx: &mut Ctx, n: &Node, p: &str) -> Option<Template> {
    let s = string(ctx, n, p)?;
    check_template(ctx, &n.at, p, s)
}

/// Every `{{name}}` must name an attribute.
pub(super) fn check_template(ctx: &mut Ctx, at: &Pos, p: &str, s: &str) -> Option<Template> {
    let t = Template(s.to_owned());
    for name in crate::ivr::template::names(&t) {
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

pub(super) const PROMPT_HINT: &str = "a prompt is a file under the media directory (\"prompts/welcome\"), \"tone:ringback|busy|congestion|beep\", \"say:text\" or \"silence:2s\"";

pub(super) fn prompt(ctx: &mut Ctx, n: &Node, p: &str) -> Option<Prompt> {
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
