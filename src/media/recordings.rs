//! Recording files and their rows (DRIVER): what happens to a recording's WAV files after the
//! recorder has let go of them. The store only stores; this module does the file-system work and
//! calls the store for the rows.
//!
//! * Start-up repair ([`repair_recordings`]): every row still `recording` was left open by a
//!   crash; its file's header is fixed ([`recorder::repair`]) and the row becomes `repaired`
//!   (duration, size, SHA-256 filled), or `failed` when the file is missing or unreadable.
//! * Retention ([`purge_recordings`], hourly through [`run_recording_purge`]): files of finished
//!   recordings past `recordings.retention_days` are deleted and their rows marked `deleted`.
//! * The audited delete of one recording through the API ([`delete_recording`]).
//! * The rows the call path writes for a recording: [`NewRecording::from_spec`] and
//!   [`EndedRecording::complete`] (the store's types, built from the recorder's).
//!
//! The companion file of a stereo recording (`<id>.mixed.wav`) is repaired and deleted with its
//! main file. A stored path that would leave the data directory is never opened or deleted.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::recorder::{
    self, RecorderError, RecordingSpec, RecordingSummary, RepairOutcome, companion_path,
    is_safe_relative,
};
use crate::store::{
    Actor, EndedRecording, NewRecording, RecordingId, RecordingKind, RecordingState, Store,
    StoreError,
};

/// What [`repair_recordings`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RepairCounts {
    /// Rows repaired from their files.
    pub repaired: u64,
    /// Rows whose file was missing or unreadable.
    pub failed: u64,
}

/// What [`delete_recording`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordingDeletion {
    /// Files removed, row marked `deleted`, audit row written.
    Deleted,
    /// No such recording, or already deleted.
    NotFound,
    /// Still being written: refused.
    StillRecording,
    /// The file could not be removed (nothing was changed); the reason, for the log.
    FileError(String),
}

/// How often the retention purge runs.
pub const RECORDING_PURGE_INTERVAL: Duration = Duration::from_secs(3600);

const DAY_MS: i64 = 86_400_000;

impl NewRecording {
    /// The row for a recording started from `spec`.
    pub fn from_spec(spec: &RecordingSpec) -> NewRecording {
        NewRecording {
            id: spec.recording_id,
            session_id: spec.session_id,
            call_id: spec.call_id,
            path: spec.relative_path().to_string_lossy().into_owned(),
            channels: spec.channels(),
            sample_rate: spec.sample_rate,
            started_ms: spec.started_ms,
            kind: RecordingKind::Call,
            mailbox: None,
        }
    }
}

impl EndedRecording {
    /// A recording the recorder completed.
    pub fn complete(id: RecordingId, summary: &RecordingSummary) -> EndedRecording {
        EndedRecording {
            id,
            state: RecordingState::Complete,
            duration_ms: Some(i64::try_from(summary.duration.as_millis()).unwrap_or(i64::MAX)),
            size_bytes: Some(i64::try_from(summary.size).unwrap_or(i64::MAX)),
            sha256: Some(summary.sha256.clone()),
            ended_ms: summary.ended_ms,
            dropped_frames: summary.dropped_frames,
        }
    }
}

/// Repairs every recording left in state `recording` by a crash: the file's header is fixed
/// ([`recorder::repair`]), duration, size and SHA-256 are filled and the row becomes `repaired`;
/// a missing or unreadable file makes it `failed` (logged). Call at startup, before calls are
/// accepted (with several nodes on one database this would also touch the other nodes' live
/// recordings, like [`Store::close_orphans`]).
pub async fn repair_recordings(store: &Store, data_dir: &Path) -> Result<RepairCounts, StoreError> {
    let mut counts = RepairCounts::default();
    for rec in store.recordings_left_open().await? {
        let (id, rel) = (rec.id, &rec.path);
        match repair_files(data_dir, rel).await {
            Ok(out) => {
                let duration_ms = i64::try_from(out.duration.as_millis()).unwrap_or(i64::MAX);
                store
                    .mark_recording_repaired(
                        id,
                        duration_ms,
                        i64::try_from(out.size).unwrap_or(i64::MAX),
                        &out.sha256,
                        rec.started_ms.saturating_add(duration_ms),
                    )
                    .await?;
                tracing::info!(recording = %id, path = %rel, duration_ms,
                    "recording left open by a crash repaired");
                counts.repaired += 1;
            }
            Err(e) => {
                tracing::warn!(recording = %id, path = %rel, error = %e,
                    "recording left open by a crash cannot be repaired; marked failed");
                store.mark_recording_failed(id).await?;
                counts.failed += 1;
            }
        }
    }
    Ok(counts)
}

/// Retention: deletes the files of finished recordings that started more than
/// `retention_days` before `now_ms` and marks their rows `deleted` (each logged). Rows still
/// `recording` are left alone; `retention_days == 0` keeps everything. A file that is already
/// gone counts as deleted; one that cannot be deleted is logged and retried at the next run.
/// Returns the number of rows marked deleted.
pub async fn purge_recordings(
    store: &Store,
    data_dir: &Path,
    retention_days: u32,
    now_ms: i64,
) -> Result<u64, StoreError> {
    if retention_days == 0 {
        return Ok(0);
    }
    let cutoff = now_ms.saturating_sub(i64::from(retention_days) * DAY_MS);
    let mut deleted = 0;
    for rec in store.recordings_started_before(cutoff).await? {
        let (id, rel) = (rec.id, &rec.path);
        if let Err(e) = delete_files_off_runtime(data_dir, rel).await {
            tracing::warn!(recording = %id, path = %rel, error = %e,
                "recording past retention could not be deleted; will retry");
            continue;
        }
        store.mark_recording_deleted(id).await?;
        tracing::info!(recording = %id, path = %rel, retention_days,
            "recording deleted by retention");
        deleted += 1;
    }
    Ok(deleted)
}

/// Runs [`purge_recordings`] now and then every [`RECORDING_PURGE_INTERVAL`] until `stop` is
/// cancelled; returns at once when `retention_days` is 0 (keep forever).
pub async fn run_recording_purge(
    store: Store,
    data_dir: PathBuf,
    retention_days: u32,
    stop: CancellationToken,
) {
    if retention_days == 0 {
        return;
    }
    let mut tick = tokio::time::interval(RECORDING_PURGE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {
                let now = crate::clock::unix_ms();
                if let Err(e) = purge_recordings(&store, &data_dir, retention_days, now).await {
                    tracing::warn!(error = %e, "recording retention purge failed");
                }
            }
        }
    }
}

/// Deletes a finished recording as retention does (its files, and the directories they leave
/// empty, under `<data_dir>/recordings`; the row becomes `deleted`) and writes an audit row
/// `recording.delete` in the same transaction as the row change.
pub async fn delete_recording(
    store: &Store,
    data_dir: &Path,
    id: RecordingId,
    actor: &Actor,
) -> Result<RecordingDeletion, StoreError> {
    let Some(rec) = store.get_recording(id).await? else {
        return Ok(RecordingDeletion::NotFound);
    };
    match rec.state {
        RecordingState::Deleted => return Ok(RecordingDeletion::NotFound),
        RecordingState::Recording => return Ok(RecordingDeletion::StillRecording),
        RecordingState::Complete | RecordingState::Repaired | RecordingState::Failed => {}
    }
    if let Err(e) = delete_files_off_runtime(data_dir, &rec.path).await {
        return Ok(RecordingDeletion::FileError(e));
    }
    if !store.mark_recording_deleted_audited(&rec, actor).await? {
        // Retention got there first; its log line is the record.
        return Ok(RecordingDeletion::NotFound);
    }
    tracing::info!(recording = %id, actor = %actor.name, "recording deleted through the API");
    Ok(RecordingDeletion::Deleted)
}

/// Repairs a recording's main file (and its companion, best effort) off the runtime.
async fn repair_files(data_dir: &Path, rel: &str) -> Result<RepairOutcome, RecorderError> {
    let rel_path = Path::new(rel);
    if !is_safe_relative(rel_path) {
        return Err(RecorderError::NotWav {
            path: rel_path.to_path_buf(),
            reason: "stored path leaves the data directory".into(),
        });
    }
    let path = data_dir.join(rel_path);
    tokio::task::spawn_blocking(move || {
        let companion = companion_path(&path);
        if companion.exists()
            && let Err(e) = recorder::repair(&companion)
        {
            tracing::warn!(path = %companion.display(), error = %e, "companion not repaired");
        }
        recorder::repair(&path)
    })
    .await
    .unwrap_or(Err(RecorderError::WriterGone))
}

/// [`delete_files`] on a blocking thread.
async fn delete_files_off_runtime(data_dir: &Path, rel: &str) -> Result<(), String> {
    let dir = data_dir.to_path_buf();
    let rel = rel.to_owned();
    tokio::task::spawn_blocking(move || delete_files(&dir, &rel))
        .await
        .unwrap_or_else(|e| Err(format!("delete task failed: {e}")))
}

/// Deletes a recording's files (missing ones are fine) and the directories they leave empty,
/// up to `<data_dir>/recordings`.
fn delete_files(data_dir: &Path, rel: &str) -> Result<(), String> {
    let rel_path = Path::new(rel);
    if !is_safe_relative(rel_path) {
        return Err("stored path leaves the data directory".into());
    }
    let path = data_dir.join(rel_path);
    for file in [companion_path(&path), path.clone()] {
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", file.display())),
        }
    }
    let root = data_dir.join("recordings");
    let mut dir = path.parent();
    while let Some(d) = dir {
        if d == root || !d.starts_with(&root) || std::fs::remove_dir(d).is_err() {
            break; // not empty (or not ours): stop tidying
        }
        dir = d.parent();
    }
    Ok(())
}
