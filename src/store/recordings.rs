//! Call recordings (DESIGN §3 steps 4–5): one row per recorded WAV file, its life cycle
//! `recording → complete | failed`, crash recovery at startup (`recording → repaired | failed`)
//! and retention (`… → deleted`).
//!
//! * A row says what it is ([`RecordingKind`]): a call recording, a voicemail left in a
//!   `mailbox` ([`Store::voicemails`]), or a message recorded by the IVR. Repair and retention
//!   treat every kind alike.
//! * Rows are written through the writer task ([`StoreCmd::RecordingStarted`] when the file is
//!   created, [`StoreCmd::RecordingEnded`] when the recorder's summary arrives), so the call
//!   path never awaits the database.
//! * `path` is relative to the data directory (`recordings/YYYY/MM/DD/<session>/<id>.wav`);
//!   a path that would leave the data directory is never opened or deleted.
//! * No foreign keys to `calls`/`sessions`: a recording's row must never be lost because its
//!   call row was (a file without a row would escape repair and retention).
//! * [`Store::repair_recordings`] and [`Store::purge_recordings`] write through the pool
//!   directly: they run at startup and hourly, not on the call path. The companion file of a
//!   stereo recording (`<id>.mixed.wav`) is repaired and deleted with its main file.
//!
//! [`StoreCmd::RecordingStarted`]: super::StoreCmd::RecordingStarted
//! [`StoreCmd::RecordingEnded`]: super::StoreCmd::RecordingEnded

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{CallId, SessionId, Store, StoreError, parse_id};
use crate::media::recorder::{
    RecorderError, RecordingSpec, RecordingSummary, companion_path, is_safe_relative, repair,
};

/// One recording (one main file). UUIDv7, like the other ids (DESIGN §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RecordingId(pub Uuid);

/// Where a recording is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordingState {
    /// Being written (or left open by a crash, until the next start repairs it).
    Recording,
    /// Stopped and finalised normally.
    Complete,
    /// Left open by a crash and repaired at startup.
    Repaired,
    /// Writing or repair failed; the file may be missing or partial.
    Failed,
    /// Removed by retention.
    Deleted,
}

/// What a recording is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordingKind {
    /// The conversation of a call.
    Call,
    /// A message left for a mailbox.
    Voicemail,
    /// Something recorded by the IVR for later playback (a greeting, an announcement).
    Message,
}

/// A recording that has started (its file exists with a valid header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecording {
    /// Recording id.
    pub id: RecordingId,
    /// Session.
    pub session_id: SessionId,
    /// Call recorded.
    pub call_id: CallId,
    /// File path relative to the data directory.
    pub path: String,
    /// 1 or 2.
    pub channels: u16,
    /// Hz.
    pub sample_rate: u32,
    /// Start, Unix ms.
    pub started_ms: i64,
    /// What it is ([`RecordingKind::Call`] from [`NewRecording::from_spec`]).
    pub kind: RecordingKind,
    /// The mailbox of a voicemail (or of a message), if any.
    pub mailbox: Option<String>,
}

/// A recording that has ended (normally or not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedRecording {
    /// Recording id.
    pub id: RecordingId,
    /// `Complete` or `Failed`.
    pub state: RecordingState,
    /// Audio length, ms.
    pub duration_ms: Option<i64>,
    /// File size, bytes.
    pub size_bytes: Option<i64>,
    /// SHA-256 of the file, lowercase hex.
    pub sha256: Option<String>,
    /// End, Unix ms.
    pub ended_ms: i64,
    /// Frames the writer never got (recorded as silence).
    pub dropped_frames: u64,
}

/// A stored recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordingRecord {
    /// Recording id.
    pub id: RecordingId,
    /// Session.
    pub session_id: SessionId,
    /// Call.
    pub call_id: CallId,
    /// Path relative to the data directory.
    pub path: String,
    /// State.
    pub state: RecordingState,
    /// 1 or 2.
    pub channels: u16,
    /// Hz.
    pub sample_rate: u32,
    /// Audio length, ms (once ended or repaired).
    pub duration_ms: Option<i64>,
    /// File size, bytes.
    pub size_bytes: Option<i64>,
    /// SHA-256, lowercase hex.
    pub sha256: Option<String>,
    /// Start, Unix ms.
    pub started_ms: i64,
    /// End, Unix ms.
    pub ended_ms: Option<i64>,
    /// Frames dropped while recording.
    pub dropped_frames: i64,
    /// What it is.
    pub kind: RecordingKind,
    /// The mailbox of a voicemail, if any.
    pub mailbox: Option<String>,
}

/// What [`Store::repair_recordings`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RepairCounts {
    /// Rows repaired from their files.
    pub repaired: u64,
    /// Rows whose file was missing or unreadable.
    pub failed: u64,
}

/// How often the retention purge runs.
pub const RECORDING_PURGE_INTERVAL: Duration = Duration::from_secs(3600);

const DAY_MS: i64 = 86_400_000;

pub(super) const COLUMNS: &str = "id, session_id, call_id, path, state, channels, sample_rate, duration_ms, \
     size_bytes, sha256, started_ms, ended_ms, dropped_frames, kind, mailbox";

impl RecordingId {
    /// A fresh UUIDv7 id.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        RecordingId(Uuid::now_v7())
    }
}

impl fmt::Display for RecordingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for RecordingId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(RecordingId)
    }
}

impl RecordingState {
    /// The text stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingState::Recording => "recording",
            RecordingState::Complete => "complete",
            RecordingState::Repaired => "repaired",
            RecordingState::Failed => "failed",
            RecordingState::Deleted => "deleted",
        }
    }

    /// Parses the stored text.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "recording" => RecordingState::Recording,
            "complete" => RecordingState::Complete,
            "repaired" => RecordingState::Repaired,
            "failed" => RecordingState::Failed,
            "deleted" => RecordingState::Deleted,
            _ => return None,
        })
    }
}

impl RecordingKind {
    /// The text stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingKind::Call => "call",
            RecordingKind::Voicemail => "voicemail",
            RecordingKind::Message => "message",
        }
    }

    /// Parses the stored text.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "call" => RecordingKind::Call,
            "voicemail" => RecordingKind::Voicemail,
            "message" => RecordingKind::Message,
            _ => return None,
        })
    }
}

impl fmt::Display for RecordingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for RecordingState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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

    /// The same row as another kind, with its mailbox:
    /// `NewRecording::from_spec(&spec).with_kind(RecordingKind::Voicemail, Some("sales".into()))`.
    pub fn with_kind(mut self, kind: RecordingKind, mailbox: Option<String>) -> NewRecording {
        self.kind = kind;
        self.mailbox = mailbox;
        self
    }

    /// The same row as a voicemail left in `mailbox`.
    pub fn voicemail(self, mailbox: impl Into<String>) -> NewRecording {
        self.with_kind(RecordingKind::Voicemail, Some(mailbox.into()))
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

    /// A recording the recorder could not complete.
    pub fn failed(id: RecordingId, ended_ms: i64) -> EndedRecording {
        EndedRecording {
            id,
            state: RecordingState::Failed,
            duration_ms: None,
            size_bytes: None,
            sha256: None,
            ended_ms,
            dropped_frames: 0,
        }
    }
}

impl Store {
    /// One recording.
    pub async fn get_recording(
        &self,
        id: RecordingId,
    ) -> Result<Option<RecordingRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM recordings WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(recording_from_row).transpose()
    }

    /// The recordings of a session, oldest first.
    pub async fn recordings_for_session(
        &self,
        session: SessionId,
    ) -> Result<Vec<RecordingRecord>, StoreError> {
        self.recordings_where("session_id", session.to_string())
            .await
    }

    /// The recordings of a call, oldest first.
    pub async fn recordings_for_call(
        &self,
        call: CallId,
    ) -> Result<Vec<RecordingRecord>, StoreError> {
        self.recordings_where("call_id", call.to_string()).await
    }

    /// The voicemails left in `mailbox` and not deleted by retention, oldest first.
    pub async fn voicemails(&self, mailbox: &str) -> Result<Vec<RecordingRecord>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM recordings
             WHERE kind = 'voicemail' AND mailbox = $1 AND state <> 'deleted'
             ORDER BY started_ms, id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(mailbox)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(recording_from_row).collect()
    }

    /// Repairs every recording left in state `recording` by a crash: the file's header is fixed
    /// ([`repair`]), duration, size and SHA-256 are filled and the row becomes `repaired`; a
    /// missing or unreadable file makes it `failed` (logged). Call at startup, before calls are
    /// accepted (with several nodes on one database this would also touch the other nodes'
    /// live recordings, like [`Store::close_orphans`]).
    pub async fn repair_recordings(&self, data_dir: &Path) -> Result<RepairCounts, StoreError> {
        let rows = sqlx::query(
            "SELECT id, path, started_ms FROM recordings WHERE state = 'recording' ORDER BY id",
        )
        .fetch_all(self.pool())
        .await?;
        let mut counts = RepairCounts::default();
        for row in &rows {
            let id: String = row.try_get("id")?;
            let rel: String = row.try_get("path")?;
            let started_ms: i64 = row.try_get("started_ms")?;
            match repair_files(data_dir, &rel).await {
                Ok(out) => {
                    let duration_ms = i64::try_from(out.duration.as_millis()).unwrap_or(i64::MAX);
                    sqlx::query(
                        "UPDATE recordings SET state = 'repaired', duration_ms = $1,
                            size_bytes = $2, sha256 = $3, ended_ms = $4
                         WHERE id = $5 AND state = 'recording'",
                    )
                    .bind(duration_ms)
                    .bind(i64::try_from(out.size).unwrap_or(i64::MAX))
                    .bind(&out.sha256)
                    .bind(started_ms.saturating_add(duration_ms))
                    .bind(&id)
                    .execute(self.pool())
                    .await?;
                    tracing::info!(recording = %id, path = %rel, duration_ms,
                        "recording left open by a crash repaired");
                    counts.repaired += 1;
                }
                Err(e) => {
                    tracing::warn!(recording = %id, path = %rel, error = %e,
                        "recording left open by a crash cannot be repaired; marked failed");
                    sqlx::query(
                        "UPDATE recordings SET state = 'failed' WHERE id = $1 AND state = 'recording'",
                    )
                    .bind(&id)
                    .execute(self.pool())
                    .await?;
                    counts.failed += 1;
                }
            }
        }
        Ok(counts)
    }

    /// Retention: deletes the files of finished recordings that started more than
    /// `retention_days` before `now_ms` and marks their rows `deleted` (each logged). Rows
    /// still `recording` are left alone; `retention_days == 0` keeps everything. A file that is
    /// already gone counts as deleted; one that cannot be deleted is logged and retried at the
    /// next run. Returns the number of rows marked deleted.
    pub async fn purge_recordings(
        &self,
        data_dir: &Path,
        retention_days: u32,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        if retention_days == 0 {
            return Ok(0);
        }
        let cutoff = now_ms.saturating_sub(i64::from(retention_days) * DAY_MS);
        let rows = sqlx::query(
            "SELECT id, path FROM recordings
             WHERE state IN ('complete', 'repaired', 'failed') AND started_ms < $1
             ORDER BY started_ms, id",
        )
        .bind(cutoff)
        .fetch_all(self.pool())
        .await?;
        let mut deleted = 0;
        for row in &rows {
            let id: String = row.try_get("id")?;
            let rel: String = row.try_get("path")?;
            let dir = data_dir.to_path_buf();
            let rel_owned = rel.clone();
            let removed = tokio::task::spawn_blocking(move || delete_files(&dir, &rel_owned))
                .await
                .unwrap_or_else(|e| Err(format!("delete task failed: {e}")));
            if let Err(e) = removed {
                tracing::warn!(recording = %id, path = %rel, error = %e,
                    "recording past retention could not be deleted; will retry");
                continue;
            }
            sqlx::query("UPDATE recordings SET state = 'deleted' WHERE id = $1")
                .bind(&id)
                .execute(self.pool())
                .await?;
            tracing::info!(recording = %id, path = %rel, retention_days,
                "recording deleted by retention");
            deleted += 1;
        }
        Ok(deleted)
    }

    /// Runs [`Store::purge_recordings`] now and then every [`RECORDING_PURGE_INTERVAL`] until
    /// `stop` is cancelled; returns at once when `retention_days` is 0 (keep forever).
    pub async fn run_recording_purge(
        self,
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
                    if let Err(e) = self.purge_recordings(&data_dir, retention_days, now).await {
                        tracing::warn!(error = %e, "recording retention purge failed");
                    }
                }
            }
        }
    }

    async fn recordings_where(
        &self,
        column: &'static str,
        value: String,
    ) -> Result<Vec<RecordingRecord>, StoreError> {
        let sql =
            format!("SELECT {COLUMNS} FROM recordings WHERE {column} = $1 ORDER BY started_ms, id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(value)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(recording_from_row).collect()
    }
}

pub(super) async fn recording_started(
    conn: &mut AnyConnection,
    r: &NewRecording,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO recordings (id, session_id, call_id, path, state, channels, sample_rate,
                                 started_ms, dropped_frames, kind, mailbox)
         VALUES ($1, $2, $3, $4, 'recording', $5, $6, $7, 0, $8, $9)",
    )
    .bind(r.id.to_string())
    .bind(r.session_id.to_string())
    .bind(r.call_id.to_string())
    .bind(&r.path)
    .bind(i64::from(r.channels))
    .bind(i64::from(r.sample_rate))
    .bind(r.started_ms)
    .bind(r.kind.as_str())
    .bind(r.mailbox.as_deref())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) async fn recording_ended(
    conn: &mut AnyConnection,
    r: &EndedRecording,
) -> Result<(), sqlx::Error> {
    let done = sqlx::query(
        "UPDATE recordings SET state = $1, duration_ms = $2, size_bytes = $3, sha256 = $4,
            ended_ms = $5, dropped_frames = $6
         WHERE id = $7 AND state = 'recording'",
    )
    .bind(r.state.as_str())
    .bind(r.duration_ms)
    .bind(r.size_bytes)
    .bind(r.sha256.as_deref())
    .bind(r.ended_ms)
    .bind(i64::try_from(r.dropped_frames).unwrap_or(i64::MAX))
    .bind(r.id.to_string())
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        tracing::debug!(recording = %r.id, "RecordingEnded for a recording unknown or not open");
    }
    Ok(())
}

/// Repairs a recording's main file (and its companion, best effort) off the runtime.
async fn repair_files(
    data_dir: &Path,
    rel: &str,
) -> Result<crate::media::recorder::RepairOutcome, RecorderError> {
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
            && let Err(e) = repair(&companion)
        {
            tracing::warn!(path = %companion.display(), error = %e, "companion not repaired");
        }
        repair(&path)
    })
    .await
    .unwrap_or(Err(RecorderError::WriterGone))
}

/// Deletes a recording's files (missing ones are fine) and the directories they leave empty,
/// up to `<data_dir>/recordings`.
pub(super) fn delete_files(data_dir: &Path, rel: &str) -> Result<(), String> {
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

pub(super) fn recording_from_row(row: &AnyRow) -> Result<RecordingRecord, StoreError> {
    const T: &str = "recordings";
    let corrupt = |reason: String| StoreError::Corrupt { table: T, reason };
    let id: String = row.try_get("id")?;
    let session: String = row.try_get("session_id")?;
    let call: String = row.try_get("call_id")?;
    let state: String = row.try_get("state")?;
    let channels: i64 = row.try_get("channels")?;
    let sample_rate: i64 = row.try_get("sample_rate")?;
    let kind: String = row.try_get("kind")?;
    Ok(RecordingRecord {
        id: parse_id(T, &id)?,
        session_id: parse_id(T, &session)?,
        call_id: parse_id(T, &call)?,
        path: row.try_get("path")?,
        state: RecordingState::parse(&state)
            .ok_or_else(|| corrupt(format!("bad state {state:?}")))?,
        channels: u16::try_from(channels)
            .map_err(|_| corrupt(format!("bad channels {channels}")))?,
        sample_rate: u32::try_from(sample_rate)
            .map_err(|_| corrupt(format!("bad sample_rate {sample_rate}")))?,
        duration_ms: row.try_get("duration_ms")?,
        size_bytes: row.try_get("size_bytes")?,
        sha256: row.try_get("sha256")?,
        started_ms: row.try_get("started_ms")?,
        ended_ms: row.try_get("ended_ms")?,
        dropped_frames: row.try_get("dropped_frames")?,
        kind: RecordingKind::parse(&kind).ok_or_else(|| corrupt(format!("bad kind {kind:?}")))?,
        mailbox: row.try_get("mailbox")?,
    })
}
