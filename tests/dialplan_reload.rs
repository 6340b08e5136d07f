//! The live dialplan (`switchboard::ivr::reload`) with a fake loader: the plan file holds a
//! number, and the "plan" has that many routes. Proves what a file change, an invalid file,
//! an explicit reload and dropping the handles do. (SIGHUP: tests/dialplan_reload_sighup.rs.)

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use switchboard::ivr::parse::Diagnostic;
use switchboard::ivr::plan::{Dialplan, NumberMatch, Pos, Route};
use switchboard::ivr::reload::{self, PlanHandle};

/// Generous: notify and the debounce take a fraction of a second.
const WAIT: Duration = Duration::from_secs(10);

/// The fake plan: `n` routes, `n` read from `file` (a number and nothing else).
fn load_number(file: &Path) -> Result<Dialplan, Vec<Diagnostic>> {
    let text = std::fs::read_to_string(file).map_err(|e| vec![diag(file, &e.to_string())])?;
    let n: usize = text
        .trim()
        .parse()
        .map_err(|e| vec![diag(file, &format!("not a number: {e}"))])?;
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
    plan.files.push(file.to_path_buf());
    Ok(plan)
}

fn diag(file: &Path, message: &str) -> Diagnostic {
    Diagnostic {
        at: Pos {
            file: file.to_path_buf(),
            line: 1,
            col: 1,
        },
        message: message.to_owned(),
        hint: None,
    }
}

/// A directory with `plan.toml` holding `n`, watched with the fake loader.
fn setup(n: &str) -> (tempfile::TempDir, PathBuf, PlanHandle) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("plan.toml");
    std::fs::write(&file, n).expect("write");
    let f = file.clone();
    let handle =
        reload::start_with(dir.path().to_path_buf(), move |_dir| load_number(&f)).expect("start");
    (dir, file, handle)
}

/// Waits (bounded) until the current plan has `n` routes.
async fn until_routes(handle: &mut PlanHandle, n: usize) {
    tokio::time::timeout(WAIT, async {
        while handle.current().routes.len() != n {
            assert!(handle.changed().await, "the reloader stopped");
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "no plan with {n} routes within {WAIT:?} (current {})",
            handle.current().routes.len()
        )
    });
}

fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .install_recorder()
            .expect("the only recorder of this test binary")
    })
}

/// `switchboard_dialplan_reloads_total{result=...}` as rendered (0 before the first count).
fn reloads_counted(result: &str) -> u64 {
    let want = format!("switchboard_dialplan_reloads_total{{result=\"{result}\"}} ");
    metrics()
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(&want).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0)
}

#[tokio::test]
async fn an_invalid_plan_at_start_refuses_the_start_with_its_diagnostics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("plan.toml");
    std::fs::write(&file, "three").expect("write");
    let f = file.clone();
    let err = reload::start_with(dir.path().to_path_buf(), move |_| load_number(&f))
        .err()
        .expect("refused");
    assert_eq!(err.len(), 1);
    assert!(err[0].message.contains("not a number"), "{}", err[0]);
    assert_eq!(err[0].at.file, file);
}

#[tokio::test]
async fn a_changed_file_publishes_the_new_plan() {
    let (_dir, file, mut handle) = setup("1");
    assert_eq!(handle.current().routes.len(), 1);
    let old = handle.current();
    std::fs::write(&file, "3").expect("write");
    until_routes(&mut handle, 3).await;
    assert!(handle.stats().ok >= 1, "{:?}", handle.stats());
    // A call that took the old plan keeps it.
    assert_eq!(old.routes.len(), 1);
}

#[tokio::test]
async fn a_new_toml_file_in_the_directory_triggers_a_reload() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The fake plan counts the *.toml files.
    let count = |d: &Path| -> Result<Dialplan, Vec<Diagnostic>> {
        let n = std::fs::read_dir(d)
            .map_err(|e| vec![diag(d, &e.to_string())])?
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "toml"))
            })
            .count();
        load_number_from(n)
    };
    let mut handle = reload::start_with(dir.path().to_path_buf(), count).expect("start");
    assert_eq!(handle.current().routes.len(), 0);
    std::fs::write(dir.path().join("a.toml"), "").expect("write");
    until_routes(&mut handle, 1).await;
    // Written elsewhere and renamed in, as editors and deploy tools do.
    let outside = tempfile::tempdir_in(dir.path()).expect("subdir");
    let staged = outside.path().join("b.toml");
    std::fs::write(&staged, "").expect("write");
    std::fs::rename(&staged, dir.path().join("b.toml")).expect("rename");
    until_routes(&mut handle, 2).await;
    std::fs::remove_file(dir.path().join("a.toml")).expect("remove");
    until_routes(&mut handle, 1).await;
}

fn load_number_from(n: usize) -> Result<Dialplan, Vec<Diagnostic>> {
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
async fn an_invalid_file_keeps_the_last_good_plan_and_counts_the_error() {
    let errors_before = reloads_counted("error");
    let (_dir, file, mut handle) = setup("2");
    std::fs::write(&file, "two and a half").expect("write");
    tokio::time::timeout(WAIT, async {
        while handle.stats().errors == 0 {
            assert!(handle.attempted().await, "the reloader stopped");
        }
    })
    .await
    .expect("the failed reload within the wait");
    assert_eq!(handle.current().routes.len(), 2, "the last good plan stays");
    let stats = handle.stats();
    assert_eq!(stats.errors, 1, "{stats:?}");
    assert_eq!(stats.last_errors.len(), 1);
    assert!(stats.last_errors[0].message.contains("not a number"));
    assert!(
        reloads_counted("error") > errors_before,
        "the metric counts it"
    );
    // Fixing the file recovers.
    std::fs::write(&file, "4").expect("write");
    until_routes(&mut handle, 4).await;
    assert!(handle.stats().last_errors.is_empty());
}

#[tokio::test]
async fn reload_now_reports_the_outcome_and_publishes_on_success() {
    // A .txt plan: the watcher ignores it, only the explicit reloads load it.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("plan.txt");
    std::fs::write(&file, "1").expect("write");
    let f = file.clone();
    let ok_before = reloads_counted("ok");
    let mut handle =
        reload::start_with(dir.path().to_path_buf(), move |_| load_number(&f)).expect("start");
    std::fs::write(&file, "5").expect("write");
    handle.reload_now().await.expect("a valid plan");
    assert_eq!(
        handle.current().routes.len(),
        5,
        "published before reload_now returns"
    );
    assert!(handle.changed().await, "the new version is announced");
    assert!(reloads_counted("ok") > ok_before);
    std::fs::write(&file, "x").expect("write");
    let err = handle.reload_now().await.expect_err("invalid");
    assert!(err[0].message.contains("not a number"), "{}", err[0]);
    assert_eq!(handle.current().routes.len(), 5);
    let stats = handle.stats();
    assert_eq!((stats.ok, stats.errors), (1, 1), "{stats:?}");
}

#[tokio::test]
async fn a_single_file_is_watched_through_its_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("main.plan");
    std::fs::write(&file, "1").expect("write");
    let mut handle = reload::start_with(file.clone(), load_number).expect("start");
    // Replaced by rename, as an editor saves: the new inode is still seen.
    let staged = dir.path().join(".main.plan.swp");
    std::fs::write(&staged, "6").expect("write");
    std::fs::rename(&staged, &file).expect("rename");
    until_routes(&mut handle, 6).await;
}

#[tokio::test]
async fn dropping_every_handle_stops_the_reloader() {
    /// Dropped with the loader, i.e. when the reloading task ends.
    struct Gone(Option<tokio::sync::oneshot::Sender<()>>);
    impl Drop for Gone {
        fn drop(&mut self) {
            if let Some(tx) = self.0.take() {
                let _ = tx.send(());
            }
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (tx, rx) = tokio::sync::oneshot::channel();
    let gone = Gone(Some(tx));
    let handle = reload::start_with(dir.path().to_path_buf(), move |_| {
        let _keep = &gone;
        load_number_from(0)
    })
    .expect("start");
    let clone = handle.clone();
    drop(handle);
    assert_eq!(clone.current().routes.len(), 0, "a clone keeps it running");
    clone.reload_now().await.expect("still reloading");
    drop(clone);
    tokio::time::timeout(WAIT, rx)
        .await
        .expect("the reloader stops (and drops its loader and watcher)")
        .expect("dropped, not leaked");
}

#[tokio::test]
async fn a_fixed_plan_never_changes() {
    let mut handle = PlanHandle::fixed(load_number_from(2).expect("plan"));
    assert_eq!(handle.current().routes.len(), 2);
    handle.reload_now().await.expect("nothing to reload");
    assert!(!handle.changed().await);
    assert!(!handle.attempted().await);
    assert_eq!(handle.stats(), reload::ReloadStats::default());
}
