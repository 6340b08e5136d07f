//! The dialplan front end from the outside: the shipped plans load, each broken plan in
//! `tests/dialplans-broken/` gives exactly the errors its `# expect: LINE:COL text` header
//! lines name, `switchboard dialplan check` prints them, and webhook JSON steps are checked
//! like TOML ones.

use std::path::{Path, PathBuf};
use std::process::Command;

use switchboard::ivr::parse::{CheckOptions, Diagnostic, load, steps_from_json};
use switchboard::ivr::plan::{Dialplan, StepKind, Target};

/// The prompts the shipped plan plays (made by `scripts/make-media` into `media/prompts/`).
const SHIPPED_PROMPTS: &[&str] = &[
    "main-menu",
    "main-menu-short",
    "invalid",
    "no-input",
    "connecting",
    "leave-message",
    "after-hours",
    "goodbye",
];

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A media directory holding a short silent WAV for each of `prompts` (under `prompts/`).
fn dummy_media(prompts: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("prompts")).expect("prompts dir");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    for p in prompts {
        let path = dir.path().join("prompts").join(format!("{p}.wav"));
        let mut w = hound::WavWriter::create(path, spec).expect("create wav");
        for _ in 0..80 {
            w.write_sample(0i16).expect("write sample");
        }
        w.finalize().expect("finalize wav");
    }
    dir
}

fn options(media: &Path) -> CheckOptions {
    CheckOptions {
        media_dir: media.to_owned(),
    }
}

fn show(diags: &[Diagnostic]) -> String {
    diags
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn shipped_dialplans_load_with_their_prompts() {
    let media = dummy_media(SHIPPED_PROMPTS);
    let plan = load(&repo("dialplans"), &options(media.path()))
        .unwrap_or_else(|d| panic!("dialplans/ must load:\n{}", show(&d)));
    assert_eq!(plan.routes.len(), 3);
    assert_eq!(plan.calendars.len(), 1);
    assert_eq!(plan.ring_groups.len(), 1);
    assert_eq!(
        plan.queues.keys().map(String::as_str).collect::<Vec<_>>(),
        ["support"]
    );
    assert!(plan.skills.contains("support"));
    let flows: Vec<&str> = plan.flows.keys().map(String::as_str).collect();
    assert_eq!(
        flows,
        [
            "after_hours",
            "extension",
            "main_menu",
            "operator",
            "sales",
            "support",
            "voicemail"
        ]
    );
    assert_eq!(plan.files.len(), 3, "every *.toml of the directory");
    // Each file alone refers to names of the other, or has no routes: only the whole
    // directory is a plan. The calendar file loads on its own.
    load(&repo("dialplans/calendars.toml"), &options(media.path()))
        .unwrap_or_else(|d| panic!("calendars.toml alone:\n{}", show(&d)));
}

#[test]
fn shipped_dialplans_route_100_by_office_hours() {
    use switchboard::ivr::route::select;
    let media = dummy_media(SHIPPED_PROMPTS);
    let plan = load(&repo("dialplans"), &options(media.path())).expect("loads");
    let flow = |called: &str, at: &str| {
        let now: jiff::Timestamp = at.parse().expect("timestamp");
        select(&plan, called, "2001", now).map(|r| r.flow.as_str())
    };
    // Monday 2026-06-01 09:00 BST; the same day at 19:00 BST; Christmas Day.
    assert_eq!(flow("100", "2026-06-01T08:00:00Z"), Some("main_menu"));
    assert_eq!(flow("100", "2026-06-01T18:00:00Z"), Some("after_hours"));
    assert_eq!(flow("100", "2026-12-25T10:00:00Z"), Some("after_hours"));
    assert_eq!(flow("2002", "2026-06-01T08:00:00Z"), Some("extension"));
}

/// Once `scripts/make-media` has made the prompts, the plan loads against the real media
/// directory too (skipped while `media/prompts/` does not exist).
#[test]
fn shipped_dialplans_find_their_prompts_in_media() {
    if !repo("media/prompts").is_dir() {
        eprintln!("media/prompts/ not made yet: skipped");
        return;
    }
    load(&repo("dialplans"), &options(&repo("media")))
        .unwrap_or_else(|d| panic!("dialplans/ against media/:\n{}", show(&d)));
}

/// `# expect: LINE:COL text` lines of a broken plan.
fn expectations(text: &str) -> Vec<(u32, u32, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# expect: "))
        .map(|l| {
            let (pos, what) = l.split_once(' ').expect("expect: LINE:COL text");
            let (line, col) = pos.split_once(':').expect("LINE:COL");
            (
                line.parse().expect("line"),
                col.parse().expect("col"),
                what.to_owned(),
            )
        })
        .collect()
}

#[test]
fn each_broken_plan_gives_exactly_the_expected_errors() {
    let media = dummy_media(&["hello"]);
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo("tests/dialplans-broken"))
        .expect("broken plans")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 12, "{files:?}");
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read");
        let expected = expectations(&text);
        assert!(
            !expected.is_empty(),
            "{} has no # expect: lines",
            file.display()
        );
        let diags = match load(file, &options(media.path())) {
            Ok(_) => Vec::new(),
            Err(d) => d,
        };
        // The message and the hint, as printed.
        let text_of =
            |d: &Diagnostic| format!("{}\n{}", d.message, d.hint.as_deref().unwrap_or(""));
        for (line, col, what) in &expected {
            let found = diags
                .iter()
                .any(|d| d.at.line == *line && d.at.col == *col && text_of(d).contains(what));
            if !found {
                failures.push(format!(
                    "{}: expected {line}:{col} {what:?}; got:\n{}",
                    file.display(),
                    show(&diags)
                ));
            }
        }
        for d in &diags {
            assert_eq!(&d.at.file, file, "diagnostics name the file");
            let expected_here = expected.iter().any(|(line, col, what)| {
                d.at.line == *line && d.at.col == *col && text_of(d).contains(what)
            });
            if !expected_here {
                failures.push(format!("{}: unexpected error: {d}", file.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_same_name_in_two_files_is_an_error_naming_both() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = "[[routes]]\nflow = \"main\"\n\n[[flows.main]]\nhangup = true\n";
    let b = "[ring_groups.g]\nmembers = [\"1\"]\n\n[[flows.main]]\nhangup = \"busy\"\n";
    std::fs::write(dir.path().join("a.toml"), a).expect("write");
    std::fs::write(dir.path().join("b.toml"), b).expect("write");
    let d = load(dir.path(), &options(dir.path())).expect_err("duplicate flow");
    assert_eq!(d.len(), 1, "{}", show(&d));
    assert_eq!(d[0].at.file, dir.path().join("b.toml"));
    assert_eq!((d[0].at.line, d[0].at.col), (4, 9));
    assert!(
        d[0].message.contains("flow \"main\" is defined twice"),
        "{}",
        d[0]
    );
    assert!(
        d[0].hint
            .as_deref()
            .is_some_and(|h| h.contains("a.toml:4:9")),
        "{}",
        d[0]
    );
}

#[test]
fn dialplan_check_command_prints_each_error_and_exits_1() {
    let broken = repo("tests/dialplans-broken/missing-flow.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["dialplan", "check"])
        .arg(&broken)
        .env("SWITCHBOARD_LOG", "off")
        .env_remove("SWITCHBOARD_CONFIG")
        .output()
        .expect("run switchboard");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let first = format!("{}:5:8: error: no flow \"mian\"", broken.display());
    assert!(stdout.contains(&first), "{stdout}");
    assert!(stdout.contains("  hint: did you mean `main`?"), "{stdout}");
    assert!(
        stdout.contains(":12:8: error: no flow \"sales\""),
        "{stdout}"
    );
    assert!(stdout.trim_end().ends_with("2 error(s)"), "{stdout}");
}

#[test]
fn dialplan_check_command_summarises_a_good_plan_with_the_configured_media() {
    let media = dummy_media(SHIPPED_PROMPTS);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("switchboard.toml");
    std::fs::write(
        &config,
        format!(
            "[media]\ndir = {:?}\n\n[ivr]\ndialplans = {:?}\n",
            media.path().display().to_string(),
            repo("dialplans").display().to_string()
        ),
    )
    .expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("--config")
        .arg(&config)
        .args(["dialplan", "check"])
        .env("SWITCHBOARD_LOG", "off")
        .output()
        .expect("run switchboard");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with(
            "dialplan OK: 3 routes, 7 flows, 1 calendars, 1 ring groups, 1 queues (files: "
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("calendars.toml") && stdout.contains("default.toml"),
        "{stdout}"
    );
}

fn json_plan() -> (tempfile::TempDir, Dialplan) {
    let media = dummy_media(SHIPPED_PROMPTS);
    let plan = load(&repo("dialplans"), &options(media.path())).expect("loads");
    (media, plan)
}

#[test]
fn webhook_steps_decode_like_toml_steps() {
    let (_media, plan) = json_plan();
    let reply = serde_json::json!({"steps": [
        {"say": "Your balance is {{balance}}", "barge_in": true},
        {"label": "ask", "gather": "account", "max_digits": 8, "first_timeout": 10,
         "on_failure": "operator"},
        {"if": "account", "matches": "^[0-9]{8}$", "then": "sales", "else": "#ask"},
        {"goto": "voicemail"}
    ]});
    let steps = steps_from_json(&reply, &plan).unwrap_or_else(|d| panic!("{}", show(&d)));
    assert_eq!(steps.len(), 4);
    let StepKind::Gather(g) = &steps[1].kind else {
        panic!("gather expected: {:?}", steps[1].kind);
    };
    assert_eq!(g.max_digits, 8);
    assert_eq!(g.first_timeout, std::time::Duration::from_secs(10));
    assert_eq!(
        g.on_failure,
        Some(Target {
            flow: Some("operator".into()),
            label: None
        })
    );
    assert_eq!(steps[1].label.as_deref(), Some("ask"));
    // A bare array is a reply too.
    let bare = serde_json::json!([{"hangup": "busy"}]);
    assert_eq!(steps_from_json(&bare, &plan).expect("valid").len(), 1);
}

#[test]
fn webhook_steps_name_the_json_path_of_each_error() {
    let (_media, plan) = json_plan();
    let reply = serde_json::json!({"steps": [
        {"answer": true},
        {"play": "tone:beep"},
        {"gather": "pin", "maxdigits": 4},
        {"goto": "nowhere"},
        {"menu": "prompts/main-menu", "options": {"1": "sales#queue"}}
    ]});
    let d = steps_from_json(&reply, &plan).expect_err("invalid steps");
    let messages: Vec<&str> = d.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "steps[2].gather: unknown key \"maxdigits\"",
            "steps[3].goto: no flow \"nowhere\"",
            "steps[4].menu.options.1: flow \"sales\" has no label \"queue\"",
        ]
    );
    assert!(d.iter().all(|d| d.at == Default::default()));
    assert_eq!(d[0].hint.as_deref(), Some("did you mean `max_digits`?"));
}

#[test]
fn the_complete_example_of_the_readme_is_a_valid_plan() {
    let readme = std::fs::read_to_string(repo("dialplans/README.md")).expect("README");
    let (_, rest) = readme
        .split_once("### A complete example")
        .expect("example section");
    let (_, rest) = rest.split_once("```toml\n").expect("toml block");
    let (example, _) = rest.split_once("```").expect("end of block");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("example.toml");
    std::fs::write(&file, example).expect("write");
    let media = dummy_media(&["enter-account"]);
    let plan = load(&file, &options(media.path()))
        .unwrap_or_else(|d| panic!("README example:\n{}", show(&d)));
    assert_eq!(plan.flows.len(), 2);

    // The reply example: its menu names a `payments` flow, so give the plan one.
    let reply: serde_json::Value = {
        let (_, rest) = readme.split_once("```json\n").expect("json block");
        let (json, _) = rest.split_once("```").expect("end of block");
        serde_json::from_str(json).expect("valid JSON")
    };
    let payments =
        "[[routes]]\nnumber = \"300\"\nflow = \"payments\"\n\n[[flows.payments]]\nhangup = true\n";
    std::fs::write(&file, format!("{example}\n{payments}")).expect("write");
    let plan = load(&file, &options(media.path())).unwrap_or_else(|d| panic!("{}", show(&d)));
    let steps = steps_from_json(&reply, &plan).unwrap_or_else(|d| panic!("{}", show(&d)));
    assert_eq!(steps.len(), 4);
}

#[test]
fn webhook_set_keys_apply_in_the_order_written() {
    let (_media, plan) = json_plan();
    let reply: serde_json::Value =
        serde_json::from_str(r#"[{"set": {"zeta": "1", "alpha": "{{zeta}}", "mid": "3"}}]"#)
            .expect("json");
    let steps = steps_from_json(&reply, &plan).unwrap_or_else(|d| panic!("{}", show(&d)));
    let StepKind::Set(pairs) = &steps[0].kind else {
        panic!("set expected: {:?}", steps[0].kind);
    };
    let names: Vec<&str> = pairs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["zeta", "alpha", "mid"]);
}

#[test]
fn steps_that_speak_are_listed_with_their_positions() {
    let media = dummy_media(SHIPPED_PROMPTS);
    let dir = tempfile::tempdir().expect("plan dir");
    let file = dir.path().join("plan.toml");
    std::fs::write(
        &file,
        "[[routes]]\nflow = \"main\"\n\n[[flows.main]]\nplay = \"prompts/goodbye\"\n\n[[flows.main]]\nsay = \"Hello {{caller}}\"\n\n[[flows.main]]\nmenu = \"say:Press 1\"\noptions = { 1 = \"main\" }\n",
    )
    .expect("write");
    let plan = load(&file, &options(media.path())).unwrap_or_else(|d| panic!("{}", show(&d)));
    let lines: Vec<u32> = plan.speech_steps().iter().map(|p| p.line).collect();
    assert_eq!(lines, [7, 10]);
}

/// `switchboard` run in `cwd` (not the checkout), quiet, with no config from the environment.
fn switchboard_in(cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.current_dir(cwd)
        .env("SWITCHBOARD_LOG", "off")
        .env_remove("SWITCHBOARD_CONFIG");
    cmd
}

#[test]
fn outside_a_checkout_the_embedded_demo_plan_and_media_are_installed_under_the_data_dir() {
    let cwd = tempfile::tempdir().expect("temp dir");
    let out = switchboard_in(cwd.path())
        .args(["dialplan", "check"])
        .output()
        .expect("run switchboard");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.starts_with("dialplan OK"), "{stdout}");
    let data = cwd.path().join("data");
    assert!(data.join("dialplans/default.toml").is_file());
    for prompt in SHIPPED_PROMPTS {
        let wav = data.join("media/prompts").join(format!("{prompt}.wav"));
        assert!(wav.is_file(), "{} missing", wav.display());
    }
}

#[test]
fn a_configured_dialplan_path_that_is_missing_is_named_with_its_config_key() {
    let cwd = tempfile::tempdir().expect("temp dir");
    let config = cwd.path().join("switchboard.toml");
    std::fs::write(&config, "[ivr]\ndialplans = \"/nonexistent/plans\"\n").expect("config");
    let out = switchboard_in(cwd.path())
        .arg("--config")
        .arg(&config)
        .args(["dialplan", "check"])
        .output()
        .expect("run switchboard");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("ivr.dialplans"), "{stderr}");
    assert!(stderr.contains("/nonexistent/plans"), "{stderr}");
}
