//! Session attributes (DESIGN §4): what a caller entered in the IVR (and what integrators set)
//! as named text values of the session, one row per name, the last value written wins.
//!
//! Written through the writer task ([`StoreCmd::SessionAttribute`], an upsert), so the call
//! path never awaits the database; read with [`Store::session_attributes`]. Independent of the
//! whole-object `sessions.attributes` JSON ([`StoreCmd::SessionAttributes`]).
//!
//! [`StoreCmd::SessionAttribute`]: super::StoreCmd::SessionAttribute
//! [`StoreCmd::SessionAttributes`]: super::StoreCmd::SessionAttributes

use sqlx::{AnyConnection, Row};

use super::{CallId, SessionId, Store, StoreError};

impl Store {
    /// A session's attributes as `(name, value)`, ordered by name.
    pub async fn session_attributes(
        &self,
        session: SessionId,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, value FROM session_attributes WHERE session_id = $1 ORDER BY name",
        )
        .bind(session.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("name")?, row.try_get("value")?)))
            .collect()
    }
}

/// Inserts or replaces one attribute.
pub(super) async fn upsert(
    conn: &mut AnyConnection,
    session: SessionId,
    call: Option<CallId>,
    name: &str,
    value: &str,
    at_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO session_attributes (session_id, name, value, call_id, updated_ms)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (session_id, name) DO UPDATE SET
            value = excluded.value, call_id = excluded.call_id, updated_ms = excluded.updated_ms",
    )
    .bind(session.to_string())
    .bind(name)
    .bind(value)
    .bind(call.map(|c| c.to_string()))
    .bind(at_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
