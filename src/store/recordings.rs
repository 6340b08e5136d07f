//! Call recordings (DESIGN §3 steps 4–5): one row per recorded WAV file, its life cycle
//! `recording → complete | failed`, crash recovery at startup (`recording → repaired | failed`)
//! and retention (`… → deleted`). This module only stores: the files are repaired, purged and
//! deleted by `media::recordings`, which reads and marks the rows through the methods here
//! (and builds [`NewRecording`] / [`EndedRecording`] from the recorder's spec and summary).
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
//! * Repair and retention write through the pool directly ([`Store::mark_recording_repaired`],
//!   [`Store::mark_recording_deleted`]…): they run at startup and hourly, not on the call path.
//!
//! [`StoreCmd::RecordingStarted`]: super::StoreCmd::RecordingStarted
//! [`StoreCmd::RecordingEnded`]: super::StoreCmd::RecordingEnded

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::{CallId, SessionId, Store, StoreError, parse_id};

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

/// A recording's file as the repair and retention passes see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingFile {
    /// Recording id.
    pub id: RecordingId,
    /// Path relative to the data directory, as stored (not checked here).
    pub path: String,
    /// Start, Unix ms.
    pub started_ms: i64,
}

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

    /// The recordings left in state `recording` (by a crash, when called at startup), by id.
    pub async fn recordings_left_open(&self) -> Result<Vec<RecordingFile>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, path, started_ms FROM recordings WHERE state = 'recording' ORDER BY id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(recording_file_from_row).collect()
    }

    /// Marks a recording left open as `repaired`, with what its repaired file holds.
    pub async fn mark_recording_repaired(
        &self,
        id: RecordingId,
        duration_ms: i64,
        size_bytes: i64,
        sha256: &str,
        ended_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE recordings SET state = 'repaired', duration_ms = $1,
                size_bytes = $2, sha256 = $3, ended_ms = $4
             WHERE id = $5 AND state = 'recording'",
        )
        .bind(duration_ms)
        .bind(size_bytes)
        .bind(sha256)
        .bind(ended_ms)
        .bind(id.to_string())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Marks a recording left open as `failed` (its file could not be repaired).
    pub async fn mark_recording_failed(&self, id: RecordingId) -> Result<(), StoreError> {
        sqlx::query("UPDATE recordings SET state = 'failed' WHERE id = $1 AND state = 'recording'")
            .bind(id.to_string())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The finished recordings (`complete`, `repaired`, `failed`) that started before
    /// `cutoff_ms`, oldest first: what retention deletes.
    pub async fn recordings_started_before(
        &self,
        cutoff_ms: i64,
    ) -> Result<Vec<RecordingFile>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, path, started_ms FROM recordings
             WHERE state IN ('complete', 'repaired', 'failed') AND started_ms < $1
             ORDER BY started_ms, id",
        )
        .bind(cutoff_ms)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(recording_file_from_row).collect()
    }

    /// Marks a recording `deleted` (its files are gone).
    pub async fn mark_recording_deleted(&self, id: RecordingId) -> Result<(), StoreError> {
        sqlx::query("UPDATE recordings SET state = 'deleted' WHERE id = $1")
            .bind(id.to_string())
            .execute(self.pool())
            .await?;
        Ok(())
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

fn recording_file_from_row(row: &AnyRow) -> Result<RecordingFile, StoreError> {
    let id: String = row.try_get("id")?;
    Ok(RecordingFile {
        id: parse_id("recordings", &id)?,
        path: row.try_get("path")?,
        started_ms: row.try_get("started_ms")?,
    })
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
