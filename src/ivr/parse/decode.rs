//! Decoding one file's top-level tables: `calendars`, `ring_groups`, `skills`, `queues`,
//! `routes` and `flows`
//! (duplicates and unknown keys reported with their position).

use super::*;

pub(super) const TOP_KEYS: &[&str] = &[
    "calendars",
    "ring_groups",
    "skills",
    "queues",
    "routes",
    "flows",
];

pub(super) fn decode_file(ctx: &mut Ctx, root: &Node, plan: &mut Dialplan) {
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
    if let Some(e) = top.get("skills") {
        decode_skill_names(ctx, e, plan);
    }
    if let Some(e) = top.get("queues") {
        for (name, at, node) in named_tables(ctx, e, "queues") {
            if duplicate(ctx, at, "queue", name) {
                continue;
            }
            ctx.known.queues.insert(name.to_owned());
            if let Some(q) = decode_queue(ctx, name, at, node, format!("queues.{name}")) {
                plan.queues.insert(name.to_owned(), q);
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
pub(super) fn duplicate(ctx: &mut Ctx, at: &Pos, what: &str, name: &str) -> bool {
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
pub(super) fn named_tables<'a>(
    ctx: &mut Ctx,
    e: &'a Entry,
    what: &str,
) -> Vec<(&'a str, &'a Pos, &'a Node)> {
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

pub(super) fn decode_group(
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

pub(super) fn decode_route(ctx: &mut Ctx, node: &Node, path: String, n: usize) -> Option<Route> {
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
