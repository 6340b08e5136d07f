//! The audit log (issue 5): who changed what through the API, and when. Rows are only ever
//! inserted; an audited change and its row are written in one transaction, so neither exists
//! without the other. Also the audited delete of a recording ([`Store::delete_recording`]).

use std::path::Path;

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::recordings::delete_files;
use super::{ApiKeyId, RecordingId, RecordingState, Store, StoreError, parse_id};

/// Who made a change: the API key (its row id and name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The key's id; `None` for changes made without a key (the CLI).
    pub key_id: Option<ApiKeyId>,
    /// The key's name.
    pub name: String,
}

/// A change to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAudit {
    /// Dotted (`recording.delete`, `user.create`, …).
    pub action: String,
    /// What kind of object (`recording`, `user`).
    pub target_kind: String,
    /// Its id (or extension).
    pub target_id: String,
    /// Anything else worth keeping (never a secret).
    pub detail: serde_json::Value,
}

/// One audit row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRecord {
    /// Row id (UUIDv7).
    pub id: Uuid,
    /// When, Unix ms.
    pub at_ms: i64,
    /// The API key's id.
    pub actor_key_id: Option<ApiKeyId>,
    /// The API key's name.
    pub actor_name: String,
    pub action: String,
    pub target_kind: String,
    pub target_id: String,
    pub detail: serde_json::Value,
}

/// What [`Store::delete_recording`] did.
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

impl Store {
    /// Writes one audit row.
    pub async fn audit(&self, actor: &Actor, entry: &NewAudit) -> Result<(), StoreError> {
        let mut conn = self.pool().acquire().await?;
        insert(&mut conn, actor, entry, crate::clock::unix_ms()).await?;
        Ok(())
    }

    /// Up to `limit` audit rows, newest first, written before the row `before` if given.
    pub async fn list_audit(
        &self,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let cols = "id, at_ms, actor_key_id, actor_name, action, target_kind, target_id, detail";
        let rows = match before {
            Some(b) => {
                let sql =
                    format!("SELECT {cols} FROM audit_log WHERE id < $1 ORDER BY id DESC LIMIT $2");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(b.hyphenated().to_string())
                    .bind(i64::from(limit))
                    .fetch_all(self.pool())
                    .await?
            }
            None => {
                let sql = format!("SELECT {cols} FROM audit_log ORDER BY id DESC LIMIT $1");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(i64::from(limit))
                    .fetch_all(self.pool())
                    .await?
            }
        };
        rows.iter().map(audit_from_row).collect()
    }

    /// Deletes a finished recording as retention does (its files, and the directories they
    /// leave empty, under `<data_dir>/recordings`; the row becomes `deleted`) and writes an
    /// audit row `recording.delete` in the same transaction as the row change.
    pub async fn delete_recording(
        &self,
        data_dir: &Path,
        id: RecordingId,
        actor: &Actor,
    ) -> Result<RecordingDeletion, StoreError> {
        let Some(rec) = self.get_recording(id).await? else {
            return Ok(RecordingDeletion::NotFound);
        };
        match rec.state {
            RecordingState::Deleted => return Ok(RecordingDeletion::NotFound),
            RecordingState::Recording => return Ok(RecordingDeletion::StillRecording),
            RecordingState::Complete | RecordingState::Repaired | RecordingState::Failed => {}
        }
        let dir = data_dir.to_path_buf();
        let rel = rec.path.clone();
        let removed = tokio::task::spawn_blocking(move || delete_files(&dir, &rel))
            .await
            .unwrap_or_else(|e| Err(format!("delete task failed: {e}")));
        if let Err(e) = removed {
            return Ok(RecordingDeletion::FileError(e));
        }
        let now = crate::clock::unix_ms();
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query(
            "UPDATE recordings SET state = 'deleted' WHERE id = $1 AND state <> 'deleted'",
        )
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            // Retention got there first; its log line is the record.
            tx.rollback().await?;
            return Ok(RecordingDeletion::NotFound);
        }
        let entry = NewAudit {
            action: "recording.delete".into(),
            target_kind: "recording".into(),
            target_id: id.to_string(),
            detail: serde_json::json!({
                "kind": rec.kind.as_str(),
                "session_id": rec.session_id,
                "call_id": rec.call_id,
                "size_bytes": rec.size_bytes,
            }),
        };
        insert(&mut tx, actor, &entry, now).await?;
        tx.commit().await?;
        tracing::info!(recording = %id, actor = %actor.name, "recording deleted through the API");
        Ok(RecordingDeletion::Deleted)
    }
}

async fn insert(
    conn: &mut AnyConnection,
    actor: &Actor,
    e: &NewAudit,
    at_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_log (id, at_ms, actor_key_id, actor_name, action, target_kind,
                                target_id, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(Uuid::now_v7().hyphenated().to_string())
    .bind(at_ms)
    .bind(actor.key_id.map(|k| k.to_string()))
    .bind(&actor.name)
    .bind(&e.action)
    .bind(&e.target_kind)
    .bind(&e.target_id)
    .bind(e.detail.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn audit_from_row(row: &AnyRow) -> Result<AuditRecord, StoreError> {
    const T: &str = "audit_log";
    let id: String = row.try_get("id")?;
    let key: Option<String> = row.try_get("actor_key_id")?;
    let detail: String = row.try_get("detail")?;
    Ok(AuditRecord {
        id: parse_id(T, &id)?,
        at_ms: row.try_get("at_ms")?,
        actor_key_id: key.map(|k| parse_id(T, &k)).transpose()?,
        actor_name: row.try_get("actor_name")?,
        action: row.try_get("action")?,
        target_kind: row.try_get("target_kind")?,
        target_id: row.try_get("target_id")?,
        detail: serde_json::from_str(&detail).map_err(|e| StoreError::Corrupt {
            table: T,
            reason: format!("bad detail JSON: {e}"),
        })?,
    })
}
