//! Decoding the ACD's part of a plan: `skills = [...]` (the skills the plan knows) and
//! `[queues.NAME]` (strategy, skills, timeouts, limits, exit, callbacks, escalation).

use super::*;
use crate::acd::engine::{Escalation, Strategy as AcdStrategy, Widen};

pub(super) const QUEUE_KEYS: &[&str] = &[
    "strategy",
    "skills",
    "offer_timeout",
    "wrap_up",
    "service_level",
    "announce_every",
    "max_wait",
    "max_length",
    "exit",
    "callback",
    "calendar",
    "escalate",
];

/// `skills = ["support", "english"]`: each a skill name the rest of the plan may use.
pub(super) fn decode_skill_names(ctx: &mut Ctx, e: &Entry, plan: &mut Dialplan) {
    let names = array(ctx, &e.value, "skills", |ctx, n, p| {
        let s = string(ctx, n, p)?;
        if !crate::acd::is_skill_name(s) {
            ctx.error(
                &n.at,
                p,
                format!("\"{s}\" is not a skill name"),
                Some("skill names are lower-case letters, digits, _ and -".into()),
            );
            return None;
        }
        Some(s.to_owned())
    });
    for name in names.unwrap_or_default() {
        ctx.known.skills.insert(name.clone());
        plan.skills.insert(name);
    }
}

/// One required skill, `name` or `name:level`; the name must be declared.
pub(super) fn skill(ctx: &mut Ctx, n: &Node, p: &str) -> Option<(String, u8)> {
    let s = string(ctx, n, p)?;
    match crate::acd::parse_skill(s) {
        Ok(skill) => {
            ctx.refs.push(Ref {
                kind: RefKind::Skill(skill.0.clone()),
                at: n.at.clone(),
                path: p.to_owned(),
                from_flow: None,
            });
            Some(skill)
        }
        Err(e) => {
            ctx.error(
                &n.at,
                p,
                e,
                Some("a skill is \"name\" or \"name:level\"".into()),
            );
            None
        }
    }
}

fn queue_ref(ctx: &mut Ctx, n: &Node, p: &str, flow: Option<&str>) -> Option<String> {
    let s = string(ctx, n, p)?;
    ctx.refs.push(Ref {
        kind: RefKind::Queue(s.to_owned()),
        at: n.at.clone(),
        path: p.to_owned(),
        from_flow: flow.map(str::to_owned),
    });
    Some(s.to_owned())
}

pub(super) fn decode_queue(
    ctx: &mut Ctx,
    name: &str,
    at: &Pos,
    node: &Node,
    path: String,
) -> Option<QueueDef> {
    if !crate::acd::is_skill_name(name) {
        ctx.error(
            at,
            &path,
            format!("\"{name}\" is not a queue name"),
            Some("queue names are lower-case letters, digits, _ and -".into()),
        );
    }
    let f = Fields::of(ctx, node, path, "a queue")?;
    f.check_keys(ctx, QUEUE_KEYS);
    let strategy = f
        .opt(ctx, "strategy", |ctx, n, p| {
            one_of(
                ctx,
                n,
                p,
                &[
                    ("longest-idle", AcdStrategy::LongestIdle),
                    ("round-robin", AcdStrategy::RoundRobin),
                    ("ring-all", AcdStrategy::RingAll),
                    ("least-occupied", AcdStrategy::LeastOccupied),
                    ("skills-best-match", AcdStrategy::SkillsBestMatch),
                ],
            )
        })
        .unwrap_or(AcdStrategy::LongestIdle);
    let skills = f
        .opt(ctx, "skills", |ctx, n, p| array(ctx, n, p, skill))
        .unwrap_or_default();
    let exit = f.opt(ctx, "exit", |ctx, n, p| decode_target(ctx, n, p, None));
    let calendar = f.opt(ctx, "calendar", |ctx, n, p| {
        let s = string(ctx, n, p)?;
        ctx.refs.push(Ref {
            kind: RefKind::Calendar(s.to_owned()),
            at: n.at.clone(),
            path: p.to_owned(),
            from_flow: None,
        });
        Some(s.to_owned())
    });
    let escalations = f
        .opt(ctx, "escalate", |ctx, n, p| {
            array(ctx, n, p, |ctx, n, p| {
                let e = Fields::of(ctx, n, p.to_owned(), "an escalation step")?;
                e.check_keys(ctx, &["after", "skills", "overflow"]);
                e.at_most_one(ctx, &["skills", "overflow"]);
                let after = e.req(ctx, "after", positive_duration);
                let widen = if let Some(skills) =
                    e.opt(ctx, "skills", |ctx, n, p| array(ctx, n, p, skill))
                {
                    Widen::Skills(skills)
                } else if let Some(q) =
                    e.opt(ctx, "overflow", |ctx, n, p| queue_ref(ctx, n, p, None))
                {
                    Widen::Overflow(q)
                } else {
                    ctx.error(
                        &n.at,
                        p,
                        "an escalation step widens by `skills` or `overflow`",
                        None,
                    );
                    return None;
                };
                Some(Escalation {
                    after: after?,
                    widen,
                })
            })
        })
        .unwrap_or_default();
    let mut sorted = escalations.clone();
    sorted.sort_by_key(|e| e.after);
    if sorted != escalations {
        ctx.error(
            &node.at,
            "",
            format!("queue \"{name}\": escalation steps must come in the order of `after`"),
            None,
        );
    }
    Some(QueueDef {
        name: name.to_owned(),
        strategy,
        skills,
        offer_timeout: f
            .opt(ctx, "offer_timeout", positive_duration)
            .unwrap_or(Duration::from_secs(15)),
        wrap_up: f
            .opt(ctx, "wrap_up", duration)
            .unwrap_or(Duration::from_secs(10)),
        service_level: f
            .opt(ctx, "service_level", positive_duration)
            .unwrap_or(Duration::from_secs(20)),
        announce_every: f
            .opt(ctx, "announce_every", duration)
            .unwrap_or(Duration::from_secs(30)),
        max_wait: f.opt(ctx, "max_wait", positive_duration),
        max_length: f
            .opt(ctx, "max_length", |ctx, n, p| uint(ctx, n, p, 1, 100_000))
            .map(|n| n as usize),
        exit,
        callback: f.opt(ctx, "callback", boolean).unwrap_or(false),
        calendar,
        escalations,
        at: at.clone(),
    })
}

/// The `queue` step: `queue = "support"`, `priority = "{{customer.vip}}"` (or a number),
/// `skills = ["english:3", "{{language}}"]`.
pub(super) fn decode_queue_step(
    ctx: &mut Ctx,
    f: &Fields,
    main: &Node,
    mp: &str,
    flow: Option<&str>,
) -> Option<StepKind> {
    let queue = queue_ref(ctx, main, mp, flow)?;
    let priority = f.opt(ctx, "priority", |ctx, n, p| match &n.v {
        Val::Int(Some(i)) if (-1000..=1000).contains(i) => Some(Template(i.to_string())),
        Val::Int(_) => {
            ctx.error(&n.at, p, "a priority is -1000 to 1000", None);
            None
        }
        _ => template(ctx, n, p),
    });
    let skills = f
        .opt(ctx, "skills", |ctx, n, p| {
            array(ctx, n, p, |ctx, n, p| {
                let s = string(ctx, n, p)?;
                if s.contains("{{") {
                    return check_template(ctx, &n.at, p, s);
                }
                skill(ctx, n, p).map(|_| Template(s.to_owned()))
            })
        })
        .unwrap_or_default();
    Some(StepKind::Queue(QueueStep {
        queue,
        priority,
        skills,
    }))
}
