//! Whole-plan checks, once every file is decoded: prompt files exist under the media directory,
//! every reference names something defined, and nothing defined is unreachable.

use super::*;

pub(super) fn check_media(ctx: &mut Ctx, media_dir: &Path) {
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

pub(super) fn check_refs(ctx: &mut Ctx, refs: &[Ref], known: &Known) {
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
            RefKind::Queue(name) if !known.queues.contains(name) => ctx.error(
                &r.at,
                &r.path,
                format!("no queue \"{name}\""),
                Some(suggest(name, known.queues.iter().map(String::as_str))),
            ),
            RefKind::Skill(name) if !known.skills.contains(name) => ctx.error(
                &r.at,
                &r.path,
                format!("skill \"{name}\" is not declared"),
                Some(format!(
                    "declare it with `skills = [\"{name}\", ...]` at the top of a plan file"
                )),
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
pub(super) fn check_unreachable(ctx: &mut Ctx, refs: &[Ref], plan: &Dialplan) {
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
