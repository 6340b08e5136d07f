//! Customers, identities, sessions, call records and call legs (DESIGN §4).
//!
//! A call's caller identity (e.g. the E.164 number) resolves to a customer, created on first
//! contact; every call belongs to a session. Durations are whole seconds rounded to nearest
//! (half up) from the millisecond times, which are kept: `duration_s = ended - started`,
//! `billable_s = ended - answered` (0 if never answered).

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::{CallId, CustomerId, LegId, SessionId, Store, StoreError, parse_id};
pub use crate::domain::{Direction, HangupBy, IdentityKind, LegKind, LegRole};

/// A customer identity: (kind, value), e.g. (phone, "+4930123456").
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Identity {
    /// The kind.
    pub kind: IdentityKind,
    /// The value, normalised by the caller (the store compares exactly).
    pub value: String,
}

/// A new session not started by a call (e.g. a chat).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    /// Session id.
    pub session_id: SessionId,
    /// Who the customer is, if known.
    pub identity: Option<Identity>,
    /// `voice`, `chat`, …
    pub channel: String,
    /// Start, Unix ms.
    pub started_ms: i64,
}

/// A call that has started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCall {
    /// Call id.
    pub call_id: CallId,
    /// The session it belongs to (opened before, by the session service).
    pub session_id: SessionId,
    /// Call-ID of the inbound SIP dialog.
    pub sip_call_id: String,
    /// Caller as displayed (From URI or number).
    pub caller: String,
    /// Callee (Request-URI user or number).
    pub callee: String,
    /// Direction.
    pub direction: Direction,
    /// Start, Unix ms.
    pub started_ms: i64,
}

/// A leg that has started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLeg {
    /// Leg id.
    pub leg_id: LegId,
    /// The call.
    pub call_id: CallId,
    /// Its role.
    pub role: LegRole,
    /// What it is.
    pub kind: LegKind,
    /// Call-ID of this leg's SIP dialog (SIP legs only).
    pub sip_call_id: Option<String>,
    /// Remote party URI (SIP legs only).
    pub remote_uri: Option<String>,
    /// Start, Unix ms.
    pub started_ms: i64,
}

/// A stored session.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionRecord {
    /// Session id.
    pub id: SessionId,
    /// Customer, if known.
    pub customer_id: Option<CustomerId>,
    /// Channel it started on.
    pub channel: String,
    /// Start, Unix ms.
    pub started_ms: i64,
    /// End, Unix ms.
    pub ended_ms: Option<i64>,
    /// Attributes (session context), a JSON object.
    pub attributes: serde_json::Value,
}

/// A stored call record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallRecord {
    /// Call id.
    pub id: CallId,
    /// Session.
    pub session_id: SessionId,
    /// SIP Call-ID of the inbound dialog.
    pub sip_call_id: String,
    /// Direction.
    pub direction: Direction,
    /// Caller.
    pub caller: String,
    /// Callee.
    pub callee: String,
    /// Start, Unix ms.
    pub started_ms: i64,
    /// Answer, Unix ms.
    pub answered_ms: Option<i64>,
    /// End, Unix ms.
    pub ended_ms: Option<i64>,
    /// Seconds from start to end.
    pub duration_s: Option<i64>,
    /// Seconds from answer to end (0 if unanswered).
    pub billable_s: Option<i64>,
    /// Cause text (`normal_clearing`, `no_answer`, `server_restart`, …).
    pub hangup_cause: Option<String>,
    /// Who hung up.
    pub hangup_by: Option<HangupBy>,
    /// Final SIP status code.
    pub final_code: Option<u16>,
}

/// A stored call leg.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LegRecord {
    /// Leg id.
    pub id: LegId,
    /// Call.
    pub call_id: CallId,
    /// Role.
    pub role: LegRole,
    /// What it is.
    pub kind: LegKind,
    /// SIP Call-ID of the leg (SIP legs only).
    pub sip_call_id: Option<String>,
    /// Remote URI (SIP legs only).
    pub remote_uri: Option<String>,
    /// Start, Unix ms.
    pub started_ms: i64,
    /// Answer, Unix ms.
    pub answered_ms: Option<i64>,
    /// End, Unix ms.
    pub ended_ms: Option<i64>,
    /// Final SIP status code.
    pub final_code: Option<u16>,
    /// Media quality, once the leg's media ended.
    pub media: Option<LegMediaRecord>,
}

/// The media statistics stored for a leg when its media session ends (from
/// `media::rtp::LegStats`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LegMediaStats {
    /// RTP packets received from the remote.
    pub packets_received: u64,
    /// RTP packets sent.
    pub packets_sent: u64,
    /// Packets lost.
    pub packets_lost: u64,
    /// Interarrival jitter, ms.
    pub jitter_ms: f64,
    /// Round-trip time, ms, if known.
    pub rtt_ms: Option<f64>,
    /// E-model MOS of what was received, if anything was.
    pub mos: Option<f64>,
}

/// A leg's media statistics as stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LegMediaRecord {
    pub codec: Option<String>,
    pub packets_received: i64,
    pub packets_sent: i64,
    pub packets_lost: i64,
    pub jitter_ms: f64,
    pub rtt_ms: Option<f64>,
    pub mos: Option<f64>,
}

pub(super) const CALL_COLUMNS: &str = "id, session_id, sip_call_id, direction, caller, callee, started_ms, \
     answered_ms, ended_ms, duration_s, billable_s, hangup_cause, hangup_by, final_code";

impl Store {
    /// Closes call rows (and legs) left open by a crash: `ended_ms = now_ms`, durations
    /// computed, cause `server_restart`, hung up by `system`. Call at startup, before calls are
    /// accepted. Returns the number of calls closed. (With several nodes on one database this
    /// would also close the other nodes' live calls: calls carry no node yet.)
    pub async fn close_orphans(&self, now_ms: i64) -> Result<u64, StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("UPDATE call_legs SET ended_ms = $1 WHERE ended_ms IS NULL")
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        let done = end_call_query(
            "WHERE ended_ms IS NULL",
            now_ms,
            "server_restart",
            HangupBy::System,
            None,
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// One call record.
    pub async fn get_call(&self, id: CallId) -> Result<Option<CallRecord>, StoreError> {
        let sql = format!("SELECT {CALL_COLUMNS} FROM calls WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(call_from_row).transpose()
    }

    /// The calls of a session, oldest first.
    pub async fn calls_for_session(
        &self,
        session: SessionId,
    ) -> Result<Vec<CallRecord>, StoreError> {
        let sql = format!(
            "SELECT {CALL_COLUMNS} FROM calls WHERE session_id = $1 ORDER BY started_ms, id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(session.to_string())
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(call_from_row).collect()
    }

    /// The legs of a call, oldest first.
    pub async fn legs_for_call(&self, call: CallId) -> Result<Vec<LegRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, call_id, role, kind, sip_call_id, remote_uri, started_ms, answered_ms, ended_ms,
                    final_code, codec, rtp_packets_received, rtp_packets_sent, rtp_packets_lost,
                    jitter_ms, rtt_ms, mos
             FROM call_legs WHERE call_id = $1 ORDER BY started_ms, id",
        )
        .bind(call.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(leg_from_row).collect()
    }

    /// The customer an identity resolves to.
    pub async fn customer_for_identity(
        &self,
        kind: IdentityKind,
        value: &str,
    ) -> Result<Option<CustomerId>, StoreError> {
        let id: Option<String> = sqlx::query_scalar(
            "SELECT customer_id FROM customer_identities WHERE kind = $1 AND value = $2",
        )
        .bind(kind.as_str())
        .bind(value)
        .fetch_optional(self.pool())
        .await?;
        id.map(|id| parse_id("customer_identities", &id))
            .transpose()
    }

    /// One session.
    pub async fn get_session(&self, id: SessionId) -> Result<Option<SessionRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, customer_id, channel, started_ms, ended_ms, attributes
             FROM sessions WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    /// A customer's sessions, oldest first.
    pub async fn sessions_for_customer(
        &self,
        customer: CustomerId,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, customer_id, channel, started_ms, ended_ms, attributes
             FROM sessions WHERE customer_id = $1 ORDER BY started_ms, id",
        )
        .bind(customer.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(session_from_row).collect()
    }
}

/// Resolves `identity` to a customer, creating customer and identity when new.
async fn resolve_customer(
    conn: &mut AnyConnection,
    identity: &Identity,
    now_ms: i64,
) -> Result<String, sqlx::Error> {
    let find = "SELECT customer_id FROM customer_identities WHERE kind = $1 AND value = $2";
    let existing: Option<String> = sqlx::query_scalar(find)
        .bind(identity.kind.as_str())
        .bind(&identity.value)
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(id) = existing {
        return Ok(id);
    }
    let new_id = CustomerId::new().to_string();
    sqlx::query("INSERT INTO customers (id, display_name, created_ms) VALUES ($1, NULL, $2)")
        .bind(&new_id)
        .bind(now_ms)
        .execute(&mut *conn)
        .await?;
    // ON CONFLICT: another node may have created the identity meanwhile (PostgreSQL).
    sqlx::query(
        "INSERT INTO customer_identities (kind, value, customer_id, created_ms)
         VALUES ($1, $2, $3, $4) ON CONFLICT (kind, value) DO NOTHING",
    )
    .bind(identity.kind.as_str())
    .bind(&identity.value)
    .bind(&new_id)
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    let winner: String = sqlx::query_scalar(find)
        .bind(identity.kind.as_str())
        .bind(&identity.value)
        .fetch_one(&mut *conn)
        .await?;
    if winner != new_id {
        sqlx::query("DELETE FROM customers WHERE id = $1")
            .bind(&new_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(winner)
}

pub(super) async fn session_started(
    conn: &mut AnyConnection,
    s: &NewSession,
) -> Result<(), sqlx::Error> {
    let customer = match &s.identity {
        Some(identity) => Some(resolve_customer(conn, identity, s.started_ms).await?),
        None => None,
    };
    let sid = s.session_id.to_string();
    sqlx::query(
        "INSERT INTO sessions (id, customer_id, channel, started_ms, ended_ms, attributes,
                               last_activity_ms)
         VALUES ($1, $2, $3, $4, NULL, '{}', $4) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&sid)
    .bind(customer.as_deref())
    .bind(&s.channel)
    .bind(s.started_ms)
    .execute(&mut *conn)
    .await?;
    if let Some(customer) = customer {
        sqlx::query("UPDATE sessions SET customer_id = $1 WHERE id = $2 AND customer_id IS NULL")
            .bind(customer)
            .bind(&sid)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Ties `identity` to the customer of session `session` (if it has one and the identity
/// names nobody yet).
pub(super) async fn identity_added(
    conn: &mut AnyConnection,
    session: SessionId,
    identity: &Identity,
    at_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO customer_identities (kind, value, customer_id, created_ms)
         SELECT $1, $2, customer_id, $3 FROM sessions WHERE id = $4 AND customer_id IS NOT NULL
         ON CONFLICT (kind, value) DO NOTHING",
    )
    .bind(identity.kind.as_str())
    .bind(&identity.value)
    .bind(at_ms)
    .bind(session.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) async fn session_attributes(
    conn: &mut AnyConnection,
    session: SessionId,
    attributes: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sessions SET attributes = $1 WHERE id = $2")
        .bind(attributes.to_string())
        .bind(session.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub(super) async fn session_ended(
    conn: &mut AnyConnection,
    session: SessionId,
    at_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sessions SET ended_ms = $1 WHERE id = $2 AND ended_ms IS NULL")
        .bind(at_ms)
        .bind(session.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub(super) async fn call_started(conn: &mut AnyConnection, c: &NewCall) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO calls (id, session_id, sip_call_id, direction, caller, callee, started_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(c.call_id.to_string())
    .bind(c.session_id.to_string())
    .bind(&c.sip_call_id)
    .bind(c.direction.as_str())
    .bind(&c.caller)
    .bind(&c.callee)
    .bind(c.started_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) async fn call_answered(
    conn: &mut AnyConnection,
    call: CallId,
    at_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE calls SET answered_ms = $1 WHERE id = $2 AND answered_ms IS NULL")
        .bind(at_ms)
        .bind(call.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub(super) async fn call_ended(
    conn: &mut AnyConnection,
    call: CallId,
    at_ms: i64,
    cause: &str,
    by: HangupBy,
    final_code: Option<u16>,
) -> Result<(), sqlx::Error> {
    let done = end_call_query(
        "WHERE id = $5 AND ended_ms IS NULL",
        at_ms,
        cause,
        by,
        final_code,
    )
    .bind(call.to_string())
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        tracing::debug!(%call, "CallEnded for a call that is unknown or already ended");
    }
    Ok(())
}

pub(super) async fn leg_started(conn: &mut AnyConnection, l: &NewLeg) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO call_legs (id, call_id, role, kind, sip_call_id, remote_uri, started_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(l.leg_id.to_string())
    .bind(l.call_id.to_string())
    .bind(l.role.as_str())
    .bind(l.kind.as_str())
    .bind(&l.sip_call_id)
    .bind(&l.remote_uri)
    .bind(l.started_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) async fn leg_answered(
    conn: &mut AnyConnection,
    leg: LegId,
    at_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE call_legs SET answered_ms = $1 WHERE id = $2 AND answered_ms IS NULL")
        .bind(at_ms)
        .bind(leg.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub(super) async fn leg_ended(
    conn: &mut AnyConnection,
    leg: LegId,
    at_ms: i64,
    final_code: Option<u16>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE call_legs SET ended_ms = $1, final_code = $2 WHERE id = $3 AND ended_ms IS NULL",
    )
    .bind(at_ms)
    .bind(final_code.map(i64::from))
    .bind(leg.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) async fn leg_media(
    conn: &mut AnyConnection,
    leg: LegId,
    codec: Option<&str>,
    stats: &LegMediaStats,
) -> Result<(), sqlx::Error> {
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    sqlx::query(
        "UPDATE call_legs SET codec = $1, rtp_packets_received = $2, rtp_packets_sent = $3,
                rtp_packets_lost = $4, jitter_ms = $5, rtt_ms = $6, mos = $7
         WHERE id = $8",
    )
    .bind(codec.map(str::to_owned))
    .bind(count(stats.packets_received))
    .bind(count(stats.packets_sent))
    .bind(count(stats.packets_lost))
    .bind(stats.jitter_ms)
    .bind(stats.rtt_ms)
    .bind(stats.mos)
    .bind(leg.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// `UPDATE calls` closing a call at `$1`; `filter` may use `$5` and beyond. Durations are
/// rounded to the nearest second and never negative.
fn end_call_query<'q>(
    filter: &'static str,
    at_ms: i64,
    cause: &'q str,
    by: HangupBy,
    final_code: Option<u16>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    let sql = format!(
        "UPDATE calls SET
            ended_ms = $1,
            duration_s = CASE WHEN $1 > started_ms THEN ($1 - started_ms + 500) / 1000 ELSE 0 END,
            billable_s = CASE WHEN answered_ms IS NULL OR $1 <= answered_ms THEN 0
                              ELSE ($1 - answered_ms + 500) / 1000 END,
            hangup_cause = $2, hangup_by = $3, final_code = $4
         {filter}"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(at_ms)
        .bind(cause)
        .bind(by.as_str())
        .bind(final_code.map(i64::from))
}

fn corrupt(table: &'static str, reason: String) -> StoreError {
    StoreError::Corrupt { table, reason }
}

fn code(table: &'static str, v: Option<i64>) -> Result<Option<u16>, StoreError> {
    v.map(|c| u16::try_from(c).map_err(|_| corrupt(table, format!("bad status code {c}"))))
        .transpose()
}

pub(super) fn call_from_row(row: &AnyRow) -> Result<CallRecord, StoreError> {
    const T: &str = "calls";
    let id: String = row.try_get("id")?;
    let session: String = row.try_get("session_id")?;
    let direction: String = row.try_get("direction")?;
    let hangup_by: Option<String> = row.try_get("hangup_by")?;
    Ok(CallRecord {
        id: parse_id(T, &id)?,
        session_id: parse_id(T, &session)?,
        sip_call_id: row.try_get("sip_call_id")?,
        direction: Direction::parse(&direction)
            .ok_or_else(|| corrupt(T, format!("bad direction {direction:?}")))?,
        caller: row.try_get("caller")?,
        callee: row.try_get("callee")?,
        started_ms: row.try_get("started_ms")?,
        answered_ms: row.try_get("answered_ms")?,
        ended_ms: row.try_get("ended_ms")?,
        duration_s: row.try_get("duration_s")?,
        billable_s: row.try_get("billable_s")?,
        hangup_cause: row.try_get("hangup_cause")?,
        hangup_by: hangup_by
            .map(|h| HangupBy::parse(&h).ok_or_else(|| corrupt(T, format!("bad hangup_by {h:?}"))))
            .transpose()?,
        final_code: code(T, row.try_get("final_code")?)?,
    })
}

fn leg_from_row(row: &AnyRow) -> Result<LegRecord, StoreError> {
    const T: &str = "call_legs";
    let id: String = row.try_get("id")?;
    let call: String = row.try_get("call_id")?;
    let role: String = row.try_get("role")?;
    Ok(LegRecord {
        id: parse_id(T, &id)?,
        call_id: parse_id(T, &call)?,
        role: LegRole::parse(&role).ok_or_else(|| corrupt(T, format!("bad role {role:?}")))?,
        kind: {
            let kind: String = row.try_get("kind")?;
            LegKind::parse(&kind).ok_or_else(|| corrupt(T, format!("bad kind {kind:?}")))?
        },
        sip_call_id: row.try_get("sip_call_id")?,
        remote_uri: row.try_get("remote_uri")?,
        started_ms: row.try_get("started_ms")?,
        answered_ms: row.try_get("answered_ms")?,
        ended_ms: row.try_get("ended_ms")?,
        final_code: code(T, row.try_get("final_code")?)?,
        media: match row.try_get::<Option<i64>, _>("rtp_packets_received")? {
            None => None,
            Some(packets_received) => Some(LegMediaRecord {
                codec: row.try_get("codec")?,
                packets_received,
                packets_sent: row
                    .try_get::<Option<i64>, _>("rtp_packets_sent")?
                    .unwrap_or(0),
                packets_lost: row
                    .try_get::<Option<i64>, _>("rtp_packets_lost")?
                    .unwrap_or(0),
                jitter_ms: row.try_get::<Option<f64>, _>("jitter_ms")?.unwrap_or(0.0),
                rtt_ms: row.try_get("rtt_ms")?,
                mos: row.try_get("mos")?,
            }),
        },
    })
}

fn session_from_row(row: &AnyRow) -> Result<SessionRecord, StoreError> {
    const T: &str = "sessions";
    let id: String = row.try_get("id")?;
    let customer: Option<String> = row.try_get("customer_id")?;
    let attributes: String = row.try_get("attributes")?;
    Ok(SessionRecord {
        id: parse_id(T, &id)?,
        customer_id: customer.map(|c| parse_id(T, &c)).transpose()?,
        channel: row.try_get("channel")?,
        started_ms: row.try_get("started_ms")?,
        ended_ms: row.try_get("ended_ms")?,
        attributes: serde_json::from_str(&attributes)
            .map_err(|e| corrupt(T, format!("bad attributes JSON: {e}")))?,
    })
}
