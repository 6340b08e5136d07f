//! SIGHUP reloads the live dialplan. Its own test binary: the test signals its own process,
//! which must not disturb other tests.

use std::path::Path;
use std::time::Duration;

use switchboard::ivr::parse::Diagnostic;
use switchboard::ivr::plan::{Dialplan, NumberMatch, Pos, Route};
use switchboard::ivr::reload;

/// `n` routes, `n` read from `file`.
fn load_number(file: &Path) -> Result<Dialplan, Vec<Diagnostic>> {
    let bad = |message: String| {
        vec![Diagnostic {
            at: Pos {
                file: file.to_path_buf(),
                line: 1,
                col: 1,
            },
            message,
            hint: None,
        }]
    };
    let text = std::fs::read_to_string(file).map_err(|e| bad(e.to_string()))?;
    let n: usize = text.trim().parse().map_err(|e| bad(format!("{e}")))?;
    let mut plan = Dialplan::default();
    for i in 0..n {
        plan.routes.push(Route {
            name: format!("r{i}"),
            number: NumberMatch::Any,
            caller: None,
            calendar: None,
            flow: "main".to_owned(),
            at: Pos::default(),
        });
    }
    Ok(plan)
}

#[tokio::test]
async fn sighup_reloads_the_plan() {
    // A .txt plan: the file watcher ignores it, so only the signal can reload it.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("plan.txt");
    std::fs::write(&file, "1").expect("write");
    let f = file.clone();
    let mut handle =
        reload::start_with(dir.path().to_path_buf(), move |_| load_number(&f)).expect("start");
    std::fs::write(&file, "7").expect("write");
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -HUP");
    tokio::time::timeout(Duration::from_secs(10), handle.changed())
        .await
        .expect("a reload within 10 s");
    assert_eq!(handle.current().routes.len(), 7);
    assert_eq!(handle.stats().ok, 1);
}
