//! Webhook subscriptions with their delivery cursors (issue 5), and the filtered reads of the
//! event log shared by the event stream (`GET /v1/events`) and the webhook deliveries.
//!
//! A subscription row is its own cursor: `last_delivered_seq` only moves forward when the
//! receiver acknowledged that event, so deliveries are at-least-once and survive a restart.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::events::{EventRecord, event_from_row};
use super::{SessionId, Store, StoreError, WebhookId, parse_id};

/// Most type patterns in one filter.
pub const MAX_TYPES: usize = 50;

/// Which events a reader wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Exact types (`call.ended`), prefixes (`call.*`) or `*`; empty: every type.
    pub types: Vec<String>,
    /// Only this session's events.
    pub session_id: Option<SessionId>,
}

/// A subscription to create.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub url: String,
    /// Type patterns, as in [`EventFilter::types`] (at least one).
    pub types: Vec<String>,
    /// The signing secret.
    pub secret: String,
    /// Deliver events after this seq; None: from the newest event on.
    pub since: Option<i64>,
}

/// A stored subscription and its delivery state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRecord {
    pub id: WebhookId,
    pub url: String,
    pub types: Vec<String>,
    pub secret: String,
    pub created_ms: i64,
    /// The last event the receiver acknowledged (2xx).
    pub last_delivered_seq: i64,
    /// Failed attempts at the event after the cursor (0 when nothing is failing).
    pub attempts: i64,
    /// The HTTP status of the last attempt, if it got one.
    pub last_status: Option<u16>,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
    /// When the failing event is tried again, Unix ms.
    pub next_attempt_ms: Option<i64>,
}

impl EventFilter {
    /// Whether `e` passes the filter.
    pub fn matches(&self, e: &EventRecord) -> bool {
        if self.session_id.is_some() && e.session_id != self.session_id {
            return false;
        }
        self.types.is_empty() || self.types.iter().any(|p| type_matches(p, &e.kind))
    }

    /// Checks one type pattern: lowercase dotted words (`a-z`, `0-9`, `_`), optionally ending
    /// in `.*`, or `*` alone.
    pub fn check_type(pattern: &str) -> Result<(), String> {
        let body = if pattern == "*" {
            return Ok(());
        } else {
            pattern.strip_suffix(".*").unwrap_or(pattern)
        };
        let word_ok = |w: &str| {
            !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        if pattern.len() > 100 || !body.split('.').all(word_ok) {
            return Err(format!(
                "bad event type {pattern:?}: use dotted lowercase words like `call.ended`, a prefix like `call.*`, or `*`"
            ));
        }
        Ok(())
    }

    /// The SQL condition for this filter (after `WHERE seq > $1`) and its arguments, which
    /// are bound from `$2` on.
    fn sql(&self) -> (String, Vec<String>) {
        let mut cond = String::new();
        let mut args = Vec::new();
        if let Some(s) = self.session_id {
            args.push(s.to_string());
            cond.push_str(&format!(" AND session_id = ${}", args.len() + 1));
        }
        if !self.types.is_empty() && !self.types.iter().any(|t| t == "*") {
            let mut alts = Vec::new();
            for t in &self.types {
                match t.strip_suffix(".*") {
                    Some(prefix) => {
                        // Only `[a-z0-9_.]` get here (check_type): `_` is the one LIKE wildcard.
                        args.push(format!("{}.%", prefix.replace('_', "\\_")));
                        alts.push(format!("kind LIKE ${} ESCAPE '\\'", args.len() + 1));
                    }
                    None => {
                        args.push(t.clone());
                        alts.push(format!("kind = ${}", args.len() + 1));
                    }
                }
            }
            cond.push_str(&format!(" AND ({})", alts.join(" OR ")));
        }
        (cond, args)
    }
}

/// Whether the event type `kind` matches `pattern` (exact, `prefix.*` or `*`).
pub fn type_matches(pattern: &str, kind: &str) -> bool {
    if pattern == "*" || pattern == kind {
        return true;
    }
    pattern.strip_suffix(".*").is_some_and(|prefix| {
        kind.strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('.'))
    })
}

const WEBHOOK_COLUMNS: &str = "id, url, types, secret, created_ms, last_delivered_seq, attempts, \
                               last_status, last_error, next_attempt_ms";

impl Store {
    /// The newest event's seq (0 when the log is empty).
    pub async fn latest_event_seq(&self) -> Result<i64, StoreError> {
        let max: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM events")
            .fetch_one(self.pool())
            .await?;
        Ok(max.unwrap_or(0))
    }

    /// Up to `limit` events with `seq > after` that pass `filter`, in order, and the cursor to
    /// read on from: the last event returned, or, when the page is not full, the newest seq
    /// the read covered (so sparse filters do not rescan what they skipped).
    pub async fn events_matching(
        &self,
        after: i64,
        filter: &EventFilter,
        limit: u32,
    ) -> Result<(Vec<EventRecord>, i64), StoreError> {
        // Read before the page: every event up to it is committed (one writer, seq order).
        let latest = self.latest_event_seq().await?;
        let (cond, args) = filter.sql();
        let sql = format!(
            "SELECT seq, at_ms, kind, session_id, call_id, data FROM events
             WHERE seq > $1{cond} ORDER BY seq LIMIT {}",
            limit.max(1)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(after);
        for a in args {
            q = q.bind(a);
        }
        let rows = q.fetch_all(self.pool()).await?;
        let events = rows
            .iter()
            .map(event_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let last = events.last().map_or(after, |e| e.seq);
        let next = if events.len() < limit.max(1) as usize {
            last.max(latest)
        } else {
            last
        };
        Ok((events, next))
    }

    /// How many events with `seq > after` pass `filter`.
    pub async fn count_events_matching(
        &self,
        after: i64,
        filter: &EventFilter,
    ) -> Result<i64, StoreError> {
        let (cond, args) = filter.sql();
        let sql = format!("SELECT COUNT(*) FROM events WHERE seq > $1{cond}");
        let mut q = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(after);
        for a in args {
            q = q.bind(a);
        }
        let n: i64 = q.fetch_one(self.pool()).await?;
        Ok(n)
    }

    /// Creates a subscription; its cursor is `since`, or the newest event.
    pub async fn create_webhook(&self, new: &NewWebhook) -> Result<WebhookRecord, StoreError> {
        if new.types.is_empty() || new.types.len() > MAX_TYPES {
            return Err(StoreError::Invalid(format!(
                "a webhook needs 1 to {MAX_TYPES} event types"
            )));
        }
        for t in &new.types {
            EventFilter::check_type(t).map_err(StoreError::Invalid)?;
        }
        let cursor = match new.since {
            Some(s) => s.max(0),
            None => self.latest_event_seq().await?,
        };
        let record = WebhookRecord {
            id: WebhookId::new(),
            url: new.url.clone(),
            types: new.types.clone(),
            secret: new.secret.clone(),
            created_ms: crate::clock::unix_ms(),
            last_delivered_seq: cursor,
            attempts: 0,
            last_status: None,
            last_error: None,
            next_attempt_ms: None,
        };
        let types = serde_json::to_string(&record.types).map_err(|e| StoreError::Corrupt {
            table: "webhooks",
            reason: e.to_string(),
        })?;
        sqlx::query(
            "INSERT INTO webhooks (id, url, types, secret, created_ms, last_delivered_seq, attempts)
             VALUES ($1, $2, $3, $4, $5, $6, 0)",
        )
        .bind(record.id.to_string())
        .bind(&record.url)
        .bind(types)
        .bind(&record.secret)
        .bind(record.created_ms)
        .bind(record.last_delivered_seq)
        .execute(self.pool())
        .await?;
        Ok(record)
    }

    /// Every subscription, oldest first.
    pub async fn list_webhooks(&self) -> Result<Vec<WebhookRecord>, StoreError> {
        let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks ORDER BY created_ms, id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(webhook_from_row).collect()
    }

    /// One subscription.
    pub async fn get_webhook(&self, id: WebhookId) -> Result<Option<WebhookRecord>, StoreError> {
        let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(webhook_from_row).transpose()
    }

    /// Deletes a subscription; false if there was none.
    pub async fn delete_webhook(&self, id: WebhookId) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM webhooks WHERE id = $1")
            .bind(id.to_string())
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Event `seq` was acknowledged with `status`: the cursor moves to it and the failure
    /// state is cleared. False if the subscription is gone.
    pub async fn webhook_delivered(
        &self,
        id: WebhookId,
        seq: i64,
        status: u16,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE webhooks SET last_delivered_seq = $2, attempts = 0, last_status = $3,
                 last_error = NULL, next_attempt_ms = NULL
             WHERE id = $1",
        )
        .bind(id.to_string())
        .bind(seq)
        .bind(i64::from(status))
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// An attempt failed: its count, status (if any), reason and the next attempt's time.
    /// False if the subscription is gone.
    pub async fn webhook_failed(
        &self,
        id: WebhookId,
        attempts: i64,
        status: Option<u16>,
        error: &str,
        next_attempt_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE webhooks SET attempts = $2, last_status = $3, last_error = $4,
                 next_attempt_ms = $5
             WHERE id = $1",
        )
        .bind(id.to_string())
        .bind(attempts)
        .bind(status.map(i64::from))
        .bind(error)
        .bind(next_attempt_ms)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }
}

fn webhook_from_row(row: &AnyRow) -> Result<WebhookRecord, StoreError> {
    const T: &str = "webhooks";
    let id: String = row.try_get("id")?;
    let types: String = row.try_get("types")?;
    let status: Option<i64> = row.try_get("last_status")?;
    Ok(WebhookRecord {
        id: parse_id(T, &id)?,
        url: row.try_get("url")?,
        types: serde_json::from_str(&types).map_err(|e| StoreError::Corrupt {
            table: T,
            reason: format!("bad types JSON: {e}"),
        })?,
        secret: row.try_get("secret")?,
        created_ms: row.try_get("created_ms")?,
        last_delivered_seq: row.try_get("last_delivered_seq")?,
        attempts: row.try_get("attempts")?,
        last_status: status.and_then(|s| u16::try_from(s).ok()),
        last_error: row.try_get("last_error")?,
        next_attempt_ms: row.try_get("next_attempt_ms")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, session: Option<SessionId>) -> EventRecord {
        EventRecord {
            seq: 1,
            at_ms: 0,
            kind: kind.into(),
            session_id: session,
            call_id: None,
            data: serde_json::json!({}),
        }
    }

    #[test]
    fn prefix_patterns_match_whole_words_only() {
        assert!(type_matches("call.*", "call.ended"));
        assert!(type_matches("call.*", "call.x.y"));
        assert!(!type_matches("call.*", "callback.ended"));
        assert!(!type_matches("call.*", "call"));
        assert!(type_matches("*", "registration.added"));
        assert!(type_matches("call.ended", "call.ended"));
        assert!(!type_matches("call.ended", "call.ended2"));
    }

    #[test]
    fn filter_needs_type_and_session_to_match() {
        let s = SessionId::new();
        let f = EventFilter {
            types: vec!["call.*".into(), "dtmf.received".into()],
            session_id: Some(s),
        };
        assert!(f.matches(&event("call.created", Some(s))));
        assert!(f.matches(&event("dtmf.received", Some(s))));
        assert!(!f.matches(&event("call.created", None)));
        assert!(!f.matches(&event("registration.added", Some(s))));
        assert!(EventFilter::default().matches(&event("anything", None)));
    }

    #[test]
    fn type_patterns_are_checked() {
        for ok in ["call.ended", "call.*", "*", "ivr.step", "a_b.c1"] {
            assert!(EventFilter::check_type(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Call.ended",
            "call.",
            "*.ended",
            "call.*.x",
            "call%",
            "a..b",
        ] {
            assert!(EventFilter::check_type(bad).is_err(), "{bad}");
        }
    }
}
