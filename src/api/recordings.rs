//! `/v1/recordings` (issue 5): list and filter recordings (calls, voicemails, messages), their
//! metadata, the WAV itself with HTTP Range (RFC 9110 §14), and the audited delete; and
//! `/v1/audit`, the audit log those deletes (and user changes) are written to.
//!
//! A recording is reachable only by its id: the file's path comes from its database row, never
//! from the request, and must stay under `<data_dir>/recordings` (symbolic links included). The
//! file is streamed, never read whole into memory.

use std::path::{Component, Path as FsPath, PathBuf};

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::{AdminKey, ReadKey};
use super::records::{MAX_LIMIT, next_before, page_limit, parse_time, parse_uuid};
use super::{ApiError, ApiQuery, ApiState, Problem};
use crate::media::recorder::is_safe_relative;
use crate::media::recordings::RecordingDeletion;
use crate::store::{
    Actor, AuditRecord, CallId, RecordingFilter, RecordingId, RecordingKind, RecordingRecord,
    SessionId,
};

/// What a recording is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RecordingKindView {
    /// The conversation of a call.
    Call,
    /// A message left for a mailbox.
    Voicemail,
    /// Something recorded for later playback.
    Message,
}

/// Filters of the recording list.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecordingQuery {
    pub kind: Option<RecordingKindView>,
    /// The mailbox of a voicemail.
    pub mailbox: Option<String>,
    /// Only the recordings of this call.
    pub call_id: Option<Uuid>,
    /// Only the recordings of this session.
    pub session_id: Option<Uuid>,
    /// Started at or after: Unix milliseconds or an RFC 3339 time.
    pub since: Option<String>,
    /// Started before: Unix milliseconds or an RFC 3339 time.
    pub until: Option<String>,
    /// Page cursor: only recordings older than this id (`next_before` of the previous page).
    pub before: Option<Uuid>,
    /// Page size, 1–500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// A recording's metadata (never its file path).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RecordingView {
    pub id: Uuid,
    pub session_id: Uuid,
    pub call_id: Uuid,
    pub kind: RecordingKindView,
    /// The mailbox of a voicemail.
    pub mailbox: Option<String>,
    /// `recording`, `complete`, `repaired`, `failed` or `deleted`.
    pub state: String,
    /// 1 (mono) or 2 (caller left, callee right).
    pub channels: u16,
    /// Hz.
    pub sample_rate: u32,
    pub duration_ms: Option<i64>,
    pub size_bytes: Option<i64>,
    /// SHA-256 of the file, lowercase hex.
    pub sha256: Option<String>,
    /// Start, Unix ms.
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
    /// Frames lost while recording (written as silence).
    pub dropped_frames: i64,
    /// Where to download the WAV.
    pub audio_url: String,
}

/// A page of recordings, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RecordingPage {
    pub items: Vec<RecordingView>,
    /// Pass as `before` for the next page; absent on the last page.
    pub next_before: Option<Uuid>,
}

/// The audit log's paging.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Page cursor: only rows older than this id.
    pub before: Option<Uuid>,
    /// Page size, 1–500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// One audited change.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditView {
    pub id: Uuid,
    /// When, Unix ms.
    pub at_ms: i64,
    /// The API key that made the change.
    pub actor_key_id: Option<Uuid>,
    /// That key's name.
    pub actor_name: String,
    /// `recording.delete`, `user.create`, `user.update`, `user.delete`.
    pub action: String,
    /// `recording` or `user`.
    pub target_kind: String,
    /// The recording id or the extension.
    pub target_id: String,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// A page of the audit log, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditView>,
    /// Pass as `before` for the next page; absent on the last page.
    pub next_before: Option<Uuid>,
}

/// A WAV file (RIFF, 16-bit PCM).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct WavBody(#[allow(dead_code)] Vec<u8>);

/// What a `Range` header asks of a file of a known length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// No (usable) range: the whole file, 200.
    Full,
    /// Bytes `start..=end`, 206.
    Part { start: u64, end: u64 },
    /// Nothing of the file is in the range: 416.
    Unsatisfiable,
}

impl From<RecordingKind> for RecordingKindView {
    fn from(k: RecordingKind) -> RecordingKindView {
        match k {
            RecordingKind::Call => RecordingKindView::Call,
            RecordingKind::Voicemail => RecordingKindView::Voicemail,
            RecordingKind::Message => RecordingKindView::Message,
        }
    }
}

impl From<RecordingKindView> for RecordingKind {
    fn from(k: RecordingKindView) -> RecordingKind {
        match k {
            RecordingKindView::Call => RecordingKind::Call,
            RecordingKindView::Voicemail => RecordingKind::Voicemail,
            RecordingKindView::Message => RecordingKind::Message,
        }
    }
}

impl From<&RecordingRecord> for RecordingView {
    fn from(r: &RecordingRecord) -> RecordingView {
        RecordingView {
            id: r.id.0,
            session_id: r.session_id.0,
            call_id: r.call_id.0,
            kind: r.kind.into(),
            mailbox: r.mailbox.clone(),
            state: r.state.as_str().to_owned(),
            channels: r.channels,
            sample_rate: r.sample_rate,
            duration_ms: r.duration_ms,
            size_bytes: r.size_bytes,
            sha256: r.sha256.clone(),
            started_ms: r.started_ms,
            ended_ms: r.ended_ms,
            dropped_frames: r.dropped_frames,
            audio_url: format!("/v1/recordings/{}/audio", r.id),
        }
    }
}

impl From<&AuditRecord> for AuditView {
    fn from(a: &AuditRecord) -> AuditView {
        AuditView {
            id: a.id,
            at_ms: a.at_ms,
            actor_key_id: a.actor_key_id.map(|k| k.0),
            actor_name: a.actor_name.clone(),
            action: a.action.clone(),
            target_kind: a.target_kind.clone(),
            target_id: a.target_id.clone(),
            detail: a.detail.clone(),
        }
    }
}

/// This module's routes.
pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_recordings))
        .routes(routes!(get_recording, delete_recording))
        .routes(routes!(get_recording_audio))
        .routes(routes!(list_audit))
}

/// Reads a `Range` header (RFC 9110 §14.2) for a file of `len` bytes. One `bytes` range is
/// honoured; several ranges, other units and malformed values are ignored (the whole file),
/// as §14.2 allows.
pub fn parse_range(value: &str, len: u64) -> ByteRange {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return ByteRange::Full;
    };
    if spec.contains(',') {
        return ByteRange::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return ByteRange::Full;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match (first, last) {
        ("", suffix) if digits(suffix) => match suffix.parse::<u64>() {
            Ok(0) | Err(_) => ByteRange::Unsatisfiable,
            Ok(_) if len == 0 => ByteRange::Unsatisfiable,
            Ok(n) => ByteRange::Part {
                start: len - n.min(len),
                end: len - 1,
            },
        },
        (start, end) if digits(start) && (end.is_empty() || digits(end)) => {
            let Ok(start) = start.parse::<u64>() else {
                return ByteRange::Unsatisfiable; // beyond any file
            };
            let end = if end.is_empty() {
                u64::MAX
            } else {
                end.parse::<u64>().unwrap_or(u64::MAX) // past any file: clamped
            };
            if end < start {
                ByteRange::Full
            } else if start >= len {
                ByteRange::Unsatisfiable
            } else {
                ByteRange::Part {
                    start,
                    end: end.min(len - 1),
                }
            }
        }
        _ => ByteRange::Full,
    }
}

/// List recordings (not those deleted).
#[utoipa::path(
    get,
    path = "/v1/recordings",
    tag = "recordings",
    security(("api_key" = ["read"])),
    params(RecordingQuery),
    responses(
        (status = 200, description = "Recordings, newest first", body = RecordingPage),
        (status = 400, description = "A filter does not parse", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_recordings(
    _: ReadKey,
    State(s): State<ApiState>,
    ApiQuery(q): ApiQuery<RecordingQuery>,
) -> Result<Json<RecordingPage>, ApiError> {
    let limit = page_limit(q.limit, MAX_LIMIT)?;
    let filter = RecordingFilter {
        kind: q.kind.map(RecordingKind::from),
        mailbox: q.mailbox,
        call_id: q.call_id.map(CallId),
        session_id: q.session_id.map(SessionId),
        since_ms: parse_time("since", q.since.as_deref())?,
        until_ms: parse_time("until", q.until.as_deref())?,
        include_deleted: false,
        before: q.before.map(RecordingId),
        limit,
    };
    let rows = s.store.list_recordings(&filter).await?;
    Ok(Json(RecordingPage {
        next_before: next_before(&rows, limit, |r| r.id.0),
        items: rows.iter().map(RecordingView::from).collect(),
    }))
}

/// A recording's metadata (also of a deleted one, in state `deleted`).
#[utoipa::path(
    get,
    path = "/v1/recordings/{id}",
    tag = "recordings",
    security(("api_key" = ["read"])),
    params(("id" = Uuid, Path, description = "Recording id")),
    responses(
        (status = 200, description = "The recording", body = RecordingView),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such recording", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_recording(
    _: ReadKey,
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<RecordingView>, ApiError> {
    let rec = find(&s, &id).await?;
    Ok(Json(RecordingView::from(&rec)))
}

/// Download a recording's WAV. Honours one `Range: bytes=…` (206 with `Content-Range`; 416
/// when nothing of the file is in it).
#[utoipa::path(
    get,
    path = "/v1/recordings/{id}/audio",
    tag = "recordings",
    security(("api_key" = ["read"])),
    params(
        ("id" = Uuid, Path, description = "Recording id"),
        ("Range" = Option<String>, Header, description = "One byte range, e.g. `bytes=0-1023` or `bytes=-44`"),
    ),
    responses(
        (status = 200, description = "The whole WAV", body = WavBody, content_type = "audio/wav",
            headers(("Accept-Ranges" = String, description = "`bytes`"), ("Content-Length" = u64))),
        (status = 206, description = "The requested bytes", body = WavBody, content_type = "audio/wav",
            headers(("Content-Range" = String, description = "`bytes start-end/length`"), ("Accept-Ranges" = String))),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such recording, deleted, or its file is missing", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Still being recorded", body = Problem, content_type = "application/problem+json"),
        (status = 416, description = "The range is outside the file", body = Problem, content_type = "application/problem+json",
            headers(("Content-Range" = String, description = "`bytes */length`"))),
    )
)]
async fn get_recording_audio(
    _: ReadKey,
    State(s): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let rec = find(&s, &id).await?;
    match rec.state.as_str() {
        "deleted" => return Err(ApiError::not_found(format!("recording {id} was deleted"))),
        "recording" => {
            return Err(ApiError::conflict(format!(
                "recording {id} is still being recorded"
            )));
        }
        _ => {}
    }
    let path = file_path(&s.data_dir, &rec.path).await?;
    let mut file = tokio::fs::File::open(&path).await.map_err(|e| {
        tracing::warn!(recording = %rec.id, error = %e, "recording file cannot be opened");
        ApiError::not_found(format!("the file of recording {id} is missing"))
    })?;
    let len = file.metadata().await.map_err(ApiError::internal)?.len();
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map_or(ByteRange::Full, |v| parse_range(v, len));
    let (status, start, count) = match range {
        ByteRange::Full => (StatusCode::OK, 0, len),
        ByteRange::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        ByteRange::Unsatisfiable => {
            let mut resp = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "Range Not Satisfiable",
                format!("the file has {len} bytes"),
            )
            .into_response();
            insert_header(&mut resp, header::CONTENT_RANGE, format!("bytes */{len}"));
            insert_header(&mut resp, header::ACCEPT_RANGES, "bytes".into());
            return Ok(resp);
        }
    };
    if start > 0 {
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(ApiError::internal)?;
    }
    let stream = tokio_util::io::ReaderStream::new(file.take(count));
    let mut resp = Response::new(Body::from_stream(stream));
    *resp.status_mut() = status;
    insert_header(&mut resp, header::CONTENT_TYPE, "audio/wav".into());
    insert_header(&mut resp, header::CONTENT_LENGTH, count.to_string());
    insert_header(&mut resp, header::ACCEPT_RANGES, "bytes".into());
    insert_header(
        &mut resp,
        header::CONTENT_DISPOSITION,
        format!("attachment; filename=\"{}.wav\"", rec.id),
    );
    if status == StatusCode::PARTIAL_CONTENT {
        insert_header(
            &mut resp,
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{len}", start + count - 1),
        );
    }
    Ok(resp)
}

/// Delete a recording: its file is removed, the row stays in state `deleted`, and the audit log
/// records which key did it.
#[utoipa::path(
    delete,
    path = "/v1/recordings/{id}",
    tag = "recordings",
    security(("api_key" = ["admin"])),
    params(("id" = Uuid, Path, description = "Recording id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such recording, or already deleted", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Still being recorded", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn delete_recording(
    AdminKey(caller): AdminKey,
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = RecordingId(parse_uuid("recording id", &id)?);
    let actor = Actor {
        key_id: Some(caller.key.id),
        name: caller.key.name,
    };
    match crate::media::recordings::delete_recording(&s.store, &s.data_dir, id, &actor).await? {
        RecordingDeletion::Deleted => Ok(StatusCode::NO_CONTENT),
        RecordingDeletion::NotFound => {
            Err(ApiError::not_found(format!("recording {id} not found")))
        }
        RecordingDeletion::StillRecording => Err(ApiError::conflict(format!(
            "recording {id} is still being recorded"
        ))),
        RecordingDeletion::FileError(e) => Err(ApiError::internal(format!(
            "recording {id} could not be deleted: {e}"
        ))),
    }
}

/// Read the audit log: who deleted recordings or changed users, newest first.
#[utoipa::path(
    get,
    path = "/v1/audit",
    tag = "audit",
    security(("api_key" = ["admin"])),
    params(AuditQuery),
    responses(
        (status = 200, description = "Audit rows, newest first", body = AuditPage),
        (status = 400, description = "A parameter does not parse", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_audit(
    _: AdminKey,
    State(s): State<ApiState>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let limit = page_limit(q.limit, MAX_LIMIT)?;
    let rows = s.store.list_audit(q.before, limit).await?;
    Ok(Json(AuditPage {
        next_before: next_before(&rows, limit, |a| a.id),
        items: rows.iter().map(AuditView::from).collect(),
    }))
}

/// The recording with the id in the path: 400 for a malformed id, 404 for an unknown one.
async fn find(s: &ApiState, id: &str) -> Result<RecordingRecord, ApiError> {
    let id = RecordingId(parse_uuid("recording id", id)?);
    s.store
        .get_recording(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("recording {id} not found")))
}

/// The file of a stored relative path, refused unless it stays under `<data_dir>/recordings`
/// once symbolic links are resolved.
async fn file_path(data_dir: &FsPath, rel: &str) -> Result<PathBuf, ApiError> {
    let rel = FsPath::new(rel);
    let under_recordings = is_safe_relative(rel)
        && rel.components().next() == Some(Component::Normal("recordings".as_ref()));
    if !under_recordings {
        return Err(ApiError::internal(format!(
            "stored recording path {} leaves <data_dir>/recordings",
            rel.display()
        )));
    }
    let missing = || ApiError::not_found("the recording's file is missing");
    let root = tokio::fs::canonicalize(data_dir.join("recordings"))
        .await
        .map_err(|_| missing())?;
    let path = tokio::fs::canonicalize(data_dir.join(rel))
        .await
        .map_err(|_| missing())?;
    if !path.starts_with(&root) {
        return Err(ApiError::internal(format!(
            "recording file {} resolves outside <data_dir>/recordings",
            rel.display()
        )));
    }
    Ok(path)
}

fn insert_header(resp: &mut Response, name: header::HeaderName, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        resp.headers_mut().insert(name, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_first_bytes_open_end_suffix_and_clamped() {
        assert_eq!(
            parse_range("bytes=0-9", 100),
            ByteRange::Part { start: 0, end: 9 }
        );
        assert_eq!(
            parse_range("bytes=90-", 100),
            ByteRange::Part { start: 90, end: 99 }
        );
        assert_eq!(
            parse_range("bytes=-10", 100),
            ByteRange::Part { start: 90, end: 99 }
        );
        assert_eq!(
            parse_range("bytes=-1000", 100),
            ByteRange::Part { start: 0, end: 99 }
        );
        assert_eq!(
            parse_range("bytes=50-5000", 100),
            ByteRange::Part { start: 50, end: 99 }
        );
    }

    #[test]
    fn ranges_outside_the_file_are_unsatisfiable_and_odd_ones_ignored() {
        assert_eq!(parse_range("bytes=100-", 100), ByteRange::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), ByteRange::Unsatisfiable);
        assert_eq!(
            parse_range("bytes=99999999999999999999999-", 100),
            ByteRange::Unsatisfiable
        );
        assert_eq!(parse_range("bytes=0-1", 0), ByteRange::Unsatisfiable);
        assert_eq!(parse_range("bytes=5-1", 100), ByteRange::Full);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), ByteRange::Full);
        assert_eq!(parse_range("items=0-1", 100), ByteRange::Full);
        assert_eq!(parse_range("bytes=x-1", 100), ByteRange::Full);
    }
}
