//! The live dialplan: loaded at start-up (an invalid plan refuses the start), reloaded when a
//! file in the directory changes and on SIGHUP. A reload that fails keeps the last good plan.
//! New calls take the current plan (`Arc` snapshot); calls in progress keep theirs.
//!
//! DRIVER: one task owns the loader and the publishing side of a `watch` channel. It wakes on
//! a `*.toml` change in the directory (notify, non-recursive, [`DEBOUNCE`] after the last
//! event), on SIGHUP and on [`PlanHandle::reload_now`]. Each reload runs the loader on a
//! blocking thread; success publishes the new plan, failure logs every diagnostic. Both count
//! in `switchboard_dialplan_reloads_total{result="ok"|"error"}`. The task (and the watcher's
//! thread with it) ends when the last [`PlanHandle`] is dropped.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::parse::{CheckOptions, Diagnostic};
use super::plan::{Dialplan, Pos};

/// Quiet time after the last file event before reloading: an editor's save (write, rename,
/// chmod) or a `cp` of several files becomes one reload.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// Shared handle to the current plan.
#[derive(Clone)]
pub struct PlanHandle {
    rx: watch::Receiver<Arc<Dialplan>>,
    /// `None` for a [`PlanHandle::fixed`] plan.
    control: Option<Control>,
}

/// What reloads have done since the start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadStats {
    /// Reloads that published a new plan.
    pub ok: u64,
    /// Reloads that failed (the previous plan stayed).
    pub errors: u64,
    /// The diagnostics of the latest reload: empty when it succeeded.
    pub last_errors: Vec<Diagnostic>,
}

/// The link from handles to the reloading task.
#[derive(Clone)]
struct Control {
    requests: mpsc::UnboundedSender<oneshot::Sender<Result<(), Vec<Diagnostic>>>>,
    stats: watch::Receiver<ReloadStats>,
}

/// What a plan loader is: the directory (or file) → a checked plan, or every problem.
type Loader = dyn Fn(&Path) -> Result<Dialplan, Vec<Diagnostic>> + Send + Sync + 'static;

/// Why a reload happened, for the log.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    Files,
    Sighup,
    Request,
}

impl PlanHandle {
    /// A handle that always returns `plan` (tests, or no reloading).
    pub fn fixed(plan: Dialplan) -> PlanHandle {
        let (_tx, rx) = watch::channel(Arc::new(plan));
        PlanHandle { rx, control: None }
    }

    /// The plan new calls take.
    pub fn current(&self) -> Arc<Dialplan> {
        self.rx.borrow().clone()
    }

    /// Reloads now and waits for the outcome: `Err` carries the diagnostics (the previous plan
    /// stays). A fixed handle has nothing to reload and answers `Ok`.
    pub async fn reload_now(&self) -> Result<(), Vec<Diagnostic>> {
        let Some(control) = &self.control else {
            return Ok(());
        };
        let (reply, outcome) = oneshot::channel();
        if control.requests.send(reply).is_err() {
            return Ok(());
        }
        outcome.await.unwrap_or(Ok(()))
    }

    /// Waits until a plan newer than the last one this handle saw is published. `false` when
    /// none ever will be (a fixed handle, or the reloader has stopped).
    pub async fn changed(&mut self) -> bool {
        self.rx.changed().await.is_ok()
    }

    /// Reload counts and the latest diagnostics. Zero for a fixed handle.
    pub fn stats(&self) -> ReloadStats {
        self.control
            .as_ref()
            .map(|c| c.stats.borrow().clone())
            .unwrap_or_default()
    }

    /// Waits until the next reload attempt has finished, successful or not. `false` when none
    /// ever will.
    pub async fn attempted(&mut self) -> bool {
        match &mut self.control {
            Some(control) => control.stats.changed().await.is_ok(),
            None => false,
        }
    }
}

/// Loads the plan at `dir` and starts watching it (file changes and SIGHUP); errors when the
/// first load fails.
pub fn start(dir: PathBuf, options: CheckOptions) -> Result<PlanHandle, Vec<Diagnostic>> {
    start_with(dir, move |path| super::parse::load(path, &options))
}

/// [`start`] with the loader given (tests use a fake one). `dir` is a directory (changes to
/// its `*.toml` files reload) or one file (changes to it reload). Must be called inside a
/// tokio runtime.
pub fn start_with(
    dir: PathBuf,
    loader: impl Fn(&Path) -> Result<Dialplan, Vec<Diagnostic>> + Send + Sync + 'static,
) -> Result<PlanHandle, Vec<Diagnostic>> {
    let runtime = tokio::runtime::Handle::try_current()
        .expect("ivr::reload::start is called inside a tokio runtime");
    let loader: Arc<Loader> = Arc::new(loader);
    let plan = loader(&dir)?;
    tracing::info!(
        path = %dir.display(),
        routes = plan.routes.len(),
        flows = plan.flows.len(),
        "dialplan loaded"
    );
    let (plan_tx, plan_rx) = watch::channel(Arc::new(plan));
    let (stats_tx, stats_rx) = watch::channel(ReloadStats::default());
    let (requests_tx, requests_rx) = mpsc::unbounded_channel();
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    // Both are set up before returning, so a change or a SIGHUP right after start counts.
    let watcher = match watch_files(&dir, events_tx) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(path = %dir.display(), error = %e, "cannot watch the dialplan for changes; reload with SIGHUP");
            None
        }
    };
    let hup = {
        let _guard = runtime.enter();
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; dialplan reloads on file changes only");
                None
            }
        }
    };
    let reloader = Reloader {
        dir,
        loader,
        plan: plan_tx,
        stats: stats_tx,
    };
    runtime.spawn(reloader.run(requests_rx, events_rx, hup, watcher));
    Ok(PlanHandle {
        rx: plan_rx,
        control: Some(Control {
            requests: requests_tx,
            stats: stats_rx,
        }),
    })
}

/// The task's state.
struct Reloader {
    dir: PathBuf,
    loader: Arc<Loader>,
    plan: watch::Sender<Arc<Dialplan>>,
    stats: watch::Sender<ReloadStats>,
}

impl Reloader {
    async fn run(
        self,
        mut requests: mpsc::UnboundedReceiver<oneshot::Sender<Result<(), Vec<Diagnostic>>>>,
        mut events: mpsc::UnboundedReceiver<()>,
        mut hup: Option<tokio::signal::unix::Signal>,
        // Owned here so that it stops (with its thread) when the task ends.
        _watcher: Option<notify::RecommendedWatcher>,
    ) {
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                () = self.plan.closed() => break,
                Some(reply) = requests.recv() => {
                    let outcome = self.reload(Trigger::Request).await;
                    let _ = reply.send(outcome);
                }
                Some(()) = events.recv() => {
                    deadline = Some(crate::clock::tokio_now() + DEBOUNCE);
                }
                () = sleep_until(deadline), if deadline.is_some() => {
                    deadline = None;
                    let _ = self.reload(Trigger::Files).await;
                }
                Some(()) = next_hup(&mut hup) => {
                    let _ = self.reload(Trigger::Sighup).await;
                }
            }
        }
        tracing::debug!(path = %self.dir.display(), "dialplan reloader stopped");
    }

    /// Loads once; publishes on success, keeps the last good plan on failure.
    async fn reload(&self, trigger: Trigger) -> Result<(), Vec<Diagnostic>> {
        let loader = self.loader.clone();
        let dir = self.dir.clone();
        let outcome = match tokio::task::spawn_blocking(move || loader(&dir)).await {
            Ok(outcome) => outcome,
            Err(e) => Err(vec![Diagnostic {
                at: Pos {
                    file: self.dir.clone(),
                    ..Pos::default()
                },
                message: format!("the dialplan loader failed: {e}"),
                hint: None,
            }]),
        };
        match outcome {
            Ok(plan) => {
                let (routes, flows) = (plan.routes.len(), plan.flows.len());
                self.plan.send_replace(Arc::new(plan));
                metrics::counter!("switchboard_dialplan_reloads_total", "result" => "ok")
                    .increment(1);
                tracing::info!(?trigger, routes, flows, "dialplan reloaded");
                self.stats.send_modify(|s| {
                    s.ok += 1;
                    s.last_errors.clear();
                });
                Ok(())
            }
            Err(diagnostics) => {
                metrics::counter!("switchboard_dialplan_reloads_total", "result" => "error")
                    .increment(1);
                tracing::error!(
                    ?trigger,
                    errors = diagnostics.len(),
                    "dialplan reload failed; keeping the previous plan"
                );
                for d in &diagnostics {
                    tracing::error!("{d}");
                }
                self.stats.send_modify(|s| {
                    s.errors += 1;
                    s.last_errors = diagnostics.clone();
                });
                Err(diagnostics)
            }
        }
    }
}

/// Sleeps until `deadline` (callers only poll it when there is one).
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    if let Some(d) = deadline {
        tokio::time::sleep_until(d).await;
    }
}

/// The next SIGHUP; never, without a listener.
async fn next_hup(hup: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match hup {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// Watches `path` without recursion and sends `()` for every relevant change: a `*.toml` file
/// of the directory, or the file itself when `path` is one (its directory is watched, so an
/// editor's write-and-rename is seen).
fn watch_files(
    path: &Path,
    events: mpsc::UnboundedSender<()>,
) -> notify::Result<notify::RecommendedWatcher> {
    use notify::{EventKind, RecursiveMode, Watcher};

    let (watched, only): (PathBuf, Option<std::ffi::OsString>) = if path.is_file() {
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        (parent, path.file_name().map(|n| n.to_owned()))
    } else {
        (path.to_path_buf(), None)
    };
    let relevant = move |p: &Path| match &only {
        Some(name) => p.file_name() == Some(name.as_os_str()),
        None => p.extension().is_some_and(|e| e == "toml"),
    };
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) => {
                let kind = matches!(
                    event.kind,
                    EventKind::Create(_)
                        | EventKind::Modify(_)
                        | EventKind::Remove(_)
                        | EventKind::Any
                );
                if kind && event.paths.iter().any(|p| relevant(p)) {
                    let _ = events.send(());
                }
            }
            Err(e) => tracing::warn!(error = %e, "dialplan watcher"),
        })?;
    watcher.watch(&watched, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}
