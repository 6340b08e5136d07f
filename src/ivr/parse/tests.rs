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
    let text = include_str!("../../../dialplans/default.toml");
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

const QUEUE_PLAN: &str = r#"skills = ["support", "english"]

[queues.support]
strategy = "skills-best-match"
skills = ["support:3"]
max_wait = "2m"
exit = "voicemail"
callback = true

[[queues.support.escalate]]
after = "60s"
skills = ["support:1"]

[[routes]]
number = "100"
flow = "main"

[[flows.main]]
queue = "support"
priority = "{{customer.vip}}"
skills = ["english:2", "{{language}}"]

[[flows.voicemail]]
hangup = true
"#;

#[test]
fn queues_skills_and_the_queue_step_decode_with_their_defaults() {
    let plan = load_str(QUEUE_PLAN).expect("valid plan");
    assert_eq!(
        plan.skills.iter().map(String::as_str).collect::<Vec<_>>(),
        ["english", "support"]
    );
    let q = &plan.queues["support"];
    assert_eq!(q.strategy, crate::acd::engine::Strategy::SkillsBestMatch);
    assert_eq!(q.skills, [("support".to_owned(), 3)]);
    assert_eq!(q.offer_timeout, Duration::from_secs(15));
    assert_eq!(q.wrap_up, Duration::from_secs(10));
    assert_eq!(q.service_level, Duration::from_secs(20));
    assert_eq!(q.announce_every, Duration::from_secs(30));
    assert_eq!(q.max_wait, Some(Duration::from_secs(120)));
    assert!(q.callback);
    assert_eq!(q.escalations.len(), 1);
    let StepKind::Queue(step) = &plan.flows["main"].steps[0].kind else {
        panic!("a queue step");
    };
    assert_eq!(step.queue, "support");
    assert_eq!(step.priority, Some(Template("{{customer.vip}}".into())));
    assert_eq!(step.skills.len(), 2);
}

#[test]
fn an_unknown_queue_or_undeclared_skill_is_an_error_at_its_line() {
    let text = QUEUE_PLAN
        .replace("queue = \"support\"", "queue = \"suport\"")
        .replace("skills = [\"support:1\"]", "skills = [\"juggling:1\"]");
    let errs = errors(&text);
    assert!(
        errs.iter()
            .any(|e| e.starts_with("19:9 no queue \"suport\"")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("12:11 skill \"juggling\" is not declared")),
        "{errs:?}"
    );
    let errs =
        errors(&QUEUE_PLAN.replace("strategy = \"skills-best-match\"", "strategy = \"random\""));
    assert!(errs.iter().any(|e| e.starts_with("4:12")), "{errs:?}");
}
