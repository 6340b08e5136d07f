//! Read queries for the HTTP API (issue 5): filtered, paged lists of call records and
//! recordings, a session's events, customers with their identities, and the one user change
//! the CLI has no call for (the display name). Awaited directly, never from the call path.
//!
//! Lists are newest first and paged with a `before` cursor: ids are UUIDv7, so they sort by
//! creation time and `id < before` is the next page.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::calls::{CALL_COLUMNS, call_from_row};
use super::events::event_from_row;
use super::recordings::{COLUMNS as RECORDING_COLUMNS, recording_from_row};
use super::{
    CallId, CallRecord, CustomerId, Direction, EventRecord, Identity, IdentityKind, RecordingId,
    RecordingKind, RecordingRecord, SessionId, Store, StoreError, parse_id,
};

/// Which call records to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallFilter {
    /// Exact caller.
    pub caller: Option<String>,
    /// Exact callee.
    pub callee: Option<String>,
    pub direction: Option<Direction>,
    /// Exact hangup cause.
    pub hangup_cause: Option<String>,
    /// Started at or after, Unix ms.
    pub since_ms: Option<i64>,
    /// Started before, Unix ms.
    pub until_ms: Option<i64>,
    pub session_id: Option<SessionId>,
    /// Only calls created before this one (the page cursor).
    pub before: Option<CallId>,
    /// Most rows returned.
    pub limit: u32,
}

/// Which recordings to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordingFilter {
    pub kind: Option<RecordingKind>,
    pub mailbox: Option<String>,
    pub call_id: Option<CallId>,
    pub session_id: Option<SessionId>,
    /// Started at or after, Unix ms.
    pub since_ms: Option<i64>,
    /// Started before, Unix ms.
    pub until_ms: Option<i64>,
    /// Include rows removed by retention or the API.
    pub include_deleted: bool,
    /// Only recordings created before this one (the page cursor).
    pub before: Option<RecordingId>,
    /// Most rows returned.
    pub limit: u32,
}

/// A stored customer with its identities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CustomerRecord {
    pub id: CustomerId,
    pub display_name: Option<String>,
    /// Creation, Unix ms.
    pub created_ms: i64,
    /// Phone numbers, SIP URIs, emails… that resolve to this customer.
    pub identities: Vec<Identity>,
}

/// A value bound to a `$n` placeholder of a built query.
enum Bind {
    Text(String),
    Int(i64),
}

/// A `WHERE` clause built from optional conditions, with its bind values in order.
#[derive(Default)]
struct Where {
    clauses: Vec<String>,
    binds: Vec<Bind>,
}

impl Where {
    /// Adds `column op $n`.
    fn push(&mut self, column: &'static str, op: &'static str, value: Bind) {
        self.binds.push(value);
        self.clauses
            .push(format!("{column} {op} ${}", self.binds.len()));
    }

    fn text(&mut self, column: &'static str, value: Option<String>) {
        if let Some(v) = value {
            self.push(column, "=", Bind::Text(v));
        }
    }

    fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.clauses.join(" AND "))
        }
    }

    async fn fetch(
        self,
        store: &Store,
        select: &str,
        order_limit: &str,
        limit: u32,
    ) -> Result<Vec<AnyRow>, StoreError> {
        let sql = format!(
            "{select} {} {order_limit} LIMIT ${}",
            self.sql(),
            self.binds.len() + 1
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for b in self.binds {
            q = match b {
                Bind::Text(s) => q.bind(s),
                Bind::Int(i) => q.bind(i),
            };
        }
        Ok(q.bind(i64::from(limit)).fetch_all(store.pool()).await?)
    }
}

impl Store {
    /// Call records matching `f`, newest first.
    pub async fn list_calls(&self, f: &CallFilter) -> Result<Vec<CallRecord>, StoreError> {
        let mut w = Where::default();
        w.text("caller", f.caller.clone());
        w.text("callee", f.callee.clone());
        w.text("direction", f.direction.map(|d| d.as_str().to_owned()));
        w.text("hangup_cause", f.hangup_cause.clone());
        w.text("session_id", f.session_id.map(|s| s.to_string()));
        if let Some(t) = f.since_ms {
            w.push("started_ms", ">=", Bind::Int(t));
        }
        if let Some(t) = f.until_ms {
            w.push("started_ms", "<", Bind::Int(t));
        }
        if let Some(b) = f.before {
            w.push("id", "<", Bind::Text(b.to_string()));
        }
        let select = format!("SELECT {CALL_COLUMNS} FROM calls");
        let rows = w.fetch(self, &select, "ORDER BY id DESC", f.limit).await?;
        rows.iter().map(call_from_row).collect()
    }

    /// Recordings matching `f`, newest first.
    pub async fn list_recordings(
        &self,
        f: &RecordingFilter,
    ) -> Result<Vec<RecordingRecord>, StoreError> {
        let mut w = Where::default();
        w.text("kind", f.kind.map(|k| k.as_str().to_owned()));
        w.text("mailbox", f.mailbox.clone());
        w.text("call_id", f.call_id.map(|c| c.to_string()));
        w.text("session_id", f.session_id.map(|s| s.to_string()));
        if let Some(t) = f.since_ms {
            w.push("started_ms", ">=", Bind::Int(t));
        }
        if let Some(t) = f.until_ms {
            w.push("started_ms", "<", Bind::Int(t));
        }
        if !f.include_deleted {
            w.push("state", "<>", Bind::Text("deleted".into()));
        }
        if let Some(b) = f.before {
            w.push("id", "<", Bind::Text(b.to_string()));
        }
        let select = format!("SELECT {RECORDING_COLUMNS} FROM recordings");
        let rows = w.fetch(self, &select, "ORDER BY id DESC", f.limit).await?;
        rows.iter().map(recording_from_row).collect()
    }

    /// Up to `limit` events of a session, in log order.
    pub async fn events_for_session(
        &self,
        session: SessionId,
        limit: u32,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, at_ms, kind, session_id, call_id, data FROM events
             WHERE session_id = $1 ORDER BY seq LIMIT $2",
        )
        .bind(session.to_string())
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// One customer with its identities.
    pub async fn get_customer(&self, id: CustomerId) -> Result<Option<CustomerRecord>, StoreError> {
        const T: &str = "customers";
        let Some(row) =
            sqlx::query("SELECT id, display_name, created_ms FROM customers WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(self.pool())
                .await?
        else {
            return Ok(None);
        };
        let rows = sqlx::query(
            "SELECT kind, value FROM customer_identities WHERE customer_id = $1
             ORDER BY kind, value",
        )
        .bind(id.to_string())
        .fetch_all(self.pool())
        .await?;
        let mut identities = Vec::with_capacity(rows.len());
        for r in &rows {
            let kind: String = r.try_get("kind")?;
            identities.push(Identity {
                kind: IdentityKind::parse(&kind).ok_or_else(|| StoreError::Corrupt {
                    table: "customer_identities",
                    reason: format!("bad kind {kind:?}"),
                })?,
                value: r.try_get("value")?,
            });
        }
        let stored: String = row.try_get("id")?;
        Ok(Some(CustomerRecord {
            id: parse_id(T, &stored)?,
            display_name: row.try_get("display_name")?,
            created_ms: row.try_get("created_ms")?,
            identities,
        }))
    }

    /// Sets (or with `None` clears) a user's display name; [`StoreError::NotFound`] if there
    /// is no such user.
    pub async fn set_user_name(&self, ext: &str, name: Option<&str>) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE users SET name = $1 WHERE ext = $2")
            .bind(name)
            .bind(ext)
            .execute(self.pool())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(ext.to_string()));
        }
        Ok(())
    }
}
