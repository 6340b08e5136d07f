//! The audit log (issue 5): who changed what through the API, and when. Rows are only ever
//! inserted; an audited change and its row are written in one transaction, so neither exists
//! without the other. Also the audited row change of a deleted recording
//! ([`Store::mark_recording_deleted_audited`]; `media::recordings::delete_recording` removes its
//! files first).

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::{ApiKeyId, RecordingRecord, Store, StoreError, parse_id};

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

    /// Marks the recording `rec` (whose files are gone) `deleted` and writes an audit row
    /// `recording.delete` in the same transaction; false (nothing written) when it was already
    /// deleted (retention got there first; its log line is the record).
    pub async fn mark_recording_deleted_audited(
        &self,
        rec: &RecordingRecord,
        actor: &Actor,
    ) -> Result<bool, StoreError> {
        let id = rec.id;
        let now = crate::clock::unix_ms();
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query(
            "UPDATE recordings SET state = 'deleted' WHERE id = $1 AND state <> 'deleted'",
        )
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(false);
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
        Ok(true)
    }
}

pub(super) async fn insert(
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
