//! The durable event log (DESIGN §5): an append-only table numbered by the writer task.
//! Clients resume from a cursor with [`Store::events_since`].

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};

use super::{CallId, SessionId, Store, StoreError, parse_id};

/// One written event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventRecord {
    /// Position in the log; strictly increasing.
    pub seq: i64,
    /// When it happened, Unix ms.
    pub at_ms: i64,
    /// Kind, dotted (`call.started`, `ivr.input`, …).
    pub kind: String,
    /// Session, if any.
    pub session_id: Option<SessionId>,
    /// Call, if any.
    pub call_id: Option<CallId>,
    /// Payload.
    pub data: serde_json::Value,
}

impl Store {
    /// Up to `limit` events with `seq > after`, in order (`after = 0` reads from the start).
    pub async fn events_since(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, at_ms, kind, session_id, call_id, data FROM events
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(event_from_row).collect()
    }
}

/// The next free sequence number (`MAX(seq) + 1`, or 1).
pub(super) async fn next_seq(pool: &AnyPool) -> Result<i64, StoreError> {
    let max: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM events")
        .fetch_one(pool)
        .await?;
    Ok(max.unwrap_or(0) + 1)
}

pub(super) async fn append(conn: &mut AnyConnection, e: &EventRecord) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO events (seq, at_ms, kind, session_id, call_id, data)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(e.seq)
    .bind(e.at_ms)
    .bind(&e.kind)
    .bind(e.session_id.map(|s| s.to_string()))
    .bind(e.call_id.map(|c| c.to_string()))
    .bind(e.data.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) fn event_from_row(row: &AnyRow) -> Result<EventRecord, StoreError> {
    const T: &str = "events";
    let session: Option<String> = row.try_get("session_id")?;
    let call: Option<String> = row.try_get("call_id")?;
    let data: String = row.try_get("data")?;
    Ok(EventRecord {
        seq: row.try_get("seq")?,
        at_ms: row.try_get("at_ms")?,
        kind: row.try_get("kind")?,
        session_id: session.map(|s| parse_id(T, &s)).transpose()?,
        call_id: call.map(|c| parse_id(T, &c)).transpose()?,
        data: serde_json::from_str(&data).map_err(|e| StoreError::Corrupt {
            table: T,
            reason: format!("bad data JSON: {e}"),
        })?,
    })
}
