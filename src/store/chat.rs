//! Channels, conversations and messages (issue 12).
//!
//! A channel is a row (`web` exists from the first migration on; gateways are added through
//! the API). A conversation belongs to one session and one channel and is held with one
//! contact: the customer's address on that channel (a gateway user id, a phone number, a web
//! visitor id). Messages are kept in the order they were written, with the gateway's own id
//! unique per channel (so a gateway retrying a message stores it once), and their delivery and
//! read times. Writes go through the writer task (committed before their events are
//! published); the chat service waits for them with [`super::WriterHandle::confirm`].

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::calls::{Identity, IdentityKind};
use super::{CustomerId, SessionId, Store, StoreError, parse_id};
pub use crate::domain::{AuthorKind, ChannelKind, ConversationId, ConversationState, MessageId};

/// A stored channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRecord {
    pub name: String,
    pub kind: ChannelKind,
    /// Where replies to its conversations are POSTed (gateways).
    pub webhook_url: Option<String>,
    /// Signs those POSTs.
    pub secret: Option<String>,
    pub created_ms: i64,
    /// Failed attempts at the oldest undelivered reply (0 when nothing is failing).
    pub attempts: i64,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub next_attempt_ms: Option<i64>,
}

/// A conversation that starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConversation {
    pub id: ConversationId,
    pub session_id: SessionId,
    pub channel: String,
    /// The customer's address on the channel.
    pub contact: String,
    pub started_ms: i64,
}

/// A stored conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationRecord {
    pub id: ConversationId,
    pub session_id: SessionId,
    pub customer_id: Option<CustomerId>,
    pub channel: String,
    pub contact: String,
    pub state: ConversationState,
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
}

/// A message to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    pub session_id: SessionId,
    pub channel: String,
    /// The gateway's id for it (unique per channel), if it came from one.
    pub external_id: Option<String>,
    pub author: AuthorKind,
    pub author_name: Option<String>,
    pub text: String,
    pub created_ms: i64,
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    pub channel: String,
    pub external_id: Option<String>,
    pub author: AuthorKind,
    pub author_name: Option<String>,
    pub text: String,
    pub created_ms: i64,
    pub delivered_ms: Option<i64>,
    pub read_ms: Option<i64>,
}

/// Which conversations to list.
#[derive(Debug, Clone, Default)]
pub struct ConversationFilter {
    pub session_id: Option<SessionId>,
    pub customer_id: Option<CustomerId>,
    pub channel: Option<String>,
    pub state: Option<ConversationState>,
    /// Newest first, at most this many.
    pub limit: u32,
}

const CHANNEL_COLUMNS: &str = "name, kind, webhook_url, secret, created_ms, attempts, \
                               last_status, last_error, next_attempt_ms";
const CONVERSATION_COLUMNS: &str = "c.id, c.session_id, s.customer_id, c.channel, c.contact, \
                                    c.state, c.started_ms, c.ended_ms";
const MESSAGE_COLUMNS: &str = "id, conversation_id, channel, external_id, author_kind, \
                               author_name, body, created_ms, delivered_ms, read_ms";

impl Store {
    /// Creates a channel; [`StoreError::AlreadyExists`] when the name is taken.
    pub async fn create_channel(&self, c: &ChannelRecord) -> Result<(), StoreError> {
        let done = sqlx::query(
            "INSERT INTO channels (name, kind, webhook_url, secret, created_ms, attempts)
             VALUES ($1, $2, $3, $4, $5, 0) ON CONFLICT (name) DO NOTHING",
        )
        .bind(&c.name)
        .bind(c.kind.as_str())
        .bind(c.webhook_url.as_deref())
        .bind(c.secret.as_deref())
        .bind(c.created_ms)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::AlreadyExists(format!("channel {}", c.name)));
        }
        Ok(())
    }

    pub async fn list_channels(&self) -> Result<Vec<ChannelRecord>, StoreError> {
        let sql = format!("SELECT {CHANNEL_COLUMNS} FROM channels ORDER BY created_ms, name");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(channel_from_row).collect()
    }

    pub async fn get_channel(&self, name: &str) -> Result<Option<ChannelRecord>, StoreError> {
        let sql = format!("SELECT {CHANNEL_COLUMNS} FROM channels WHERE name = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(channel_from_row).transpose()
    }

    /// A reply of `channel` reached its gateway: its delivery time is set, the channel's
    /// failure state cleared.
    pub async fn reply_delivered(
        &self,
        channel: &str,
        message: MessageId,
        at_ms: i64,
        status: u16,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("UPDATE messages SET delivered_ms = $1 WHERE id = $2 AND delivered_ms IS NULL")
            .bind(at_ms)
            .bind(message.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE channels SET attempts = 0, last_status = $1, last_error = NULL,
             next_attempt_ms = NULL WHERE name = $2",
        )
        .bind(i64::from(status))
        .bind(channel)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// An attempt to deliver `channel`'s oldest reply failed.
    pub async fn reply_failed(
        &self,
        channel: &str,
        attempts: i64,
        status: Option<u16>,
        error: &str,
        next_attempt_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE channels SET attempts = $1, last_status = $2, last_error = $3,
             next_attempt_ms = $4 WHERE name = $5",
        )
        .bind(attempts)
        .bind(status.map(i64::from))
        .bind(error)
        .bind(next_attempt_ms)
        .bind(channel)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The oldest reply (not written by the customer) of `channel` not yet delivered.
    pub async fn next_undelivered_reply(
        &self,
        channel: &str,
    ) -> Result<Option<MessageRecord>, StoreError> {
        self.message_where(
            "channel = $1 AND author_kind <> 'customer' AND delivered_ms IS NULL
             ORDER BY created_ms, id LIMIT 1",
            &[channel],
        )
        .await
    }

    pub async fn get_conversation(
        &self,
        id: ConversationId,
    ) -> Result<Option<ConversationRecord>, StoreError> {
        self.conversation_where("c.id = $1", &[&id.to_string()])
            .await
    }

    /// The open conversation of `channel` held with `contact`, if any.
    pub async fn open_conversation_with(
        &self,
        channel: &str,
        contact: &str,
    ) -> Result<Option<ConversationRecord>, StoreError> {
        self.conversation_where(
            "c.channel = $1 AND c.contact = $2 AND c.state = 'open'
             ORDER BY c.started_ms DESC LIMIT 1",
            &[channel, contact],
        )
        .await
    }

    pub async fn list_conversations(
        &self,
        f: &ConversationFilter,
    ) -> Result<Vec<ConversationRecord>, StoreError> {
        let mut cond = String::new();
        let mut args: Vec<String> = Vec::new();
        let mut add = |col: &str, v: String| {
            args.push(v);
            cond.push_str(&format!(" AND {col} = ${}", args.len()));
        };
        if let Some(s) = f.session_id {
            add("c.session_id", s.to_string());
        }
        if let Some(c) = f.customer_id {
            add("s.customer_id", c.to_string());
        }
        if let Some(ch) = &f.channel {
            add("c.channel", ch.clone());
        }
        if let Some(st) = f.state {
            add("c.state", st.as_str().to_owned());
        }
        let sql = format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations c
             JOIN sessions s ON s.id = c.session_id WHERE 1 = 1{cond}
             ORDER BY c.started_ms DESC, c.id DESC LIMIT {}",
            f.limit.clamp(1, 1000)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for a in args {
            q = q.bind(a);
        }
        let rows = q.fetch_all(self.pool()).await?;
        rows.iter().map(conversation_from_row).collect()
    }

    /// A conversation's messages, oldest first.
    pub async fn messages_of(
        &self,
        conversation: ConversationId,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = $1
             ORDER BY created_ms, id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(conversation.to_string())
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(message_from_row).collect()
    }

    /// The message a gateway sent with id `external_id` on `channel`, if stored.
    pub async fn message_by_external_id(
        &self,
        channel: &str,
        external_id: &str,
    ) -> Result<Option<MessageRecord>, StoreError> {
        self.message_where("channel = $1 AND external_id = $2", &[channel, external_id])
            .await
    }

    /// Message `id` of `conversation`, if it is one of its messages.
    pub async fn message_of(
        &self,
        conversation: ConversationId,
        id: MessageId,
    ) -> Result<Option<MessageRecord>, StoreError> {
        self.message_where(
            "conversation_id = $1 AND id = $2",
            &[&conversation.to_string(), &id.to_string()],
        )
        .await
    }

    /// The first conversation matching `cond` (over `c`, joined with its session `s`).
    async fn conversation_where(
        &self,
        cond: &str,
        args: &[&str],
    ) -> Result<Option<ConversationRecord>, StoreError> {
        let sql = format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations c
             JOIN sessions s ON s.id = c.session_id WHERE {cond}"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for a in args {
            q = q.bind(*a);
        }
        let row = q.fetch_optional(self.pool()).await?;
        row.as_ref().map(conversation_from_row).transpose()
    }

    /// The first message matching `cond`.
    async fn message_where(
        &self,
        cond: &str,
        args: &[&str],
    ) -> Result<Option<MessageRecord>, StoreError> {
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE {cond}");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for a in args {
            q = q.bind(*a);
        }
        let row = q.fetch_optional(self.pool()).await?;
        row.as_ref().map(message_from_row).transpose()
    }

    /// The newest session of `customer` with activity at or after `since_ms` (a message, a
    /// call ending, its start), or with a call or conversation still live.
    pub async fn joinable_session(
        &self,
        customer: CustomerId,
        since_ms: i64,
    ) -> Result<Option<SessionId>, StoreError> {
        let id: Option<String> = sqlx::query_scalar(
            "SELECT s.id FROM sessions s WHERE s.customer_id = $1 AND (
                 s.last_activity_ms >= $2
                 OR EXISTS (SELECT 1 FROM calls k WHERE k.session_id = s.id
                            AND (k.ended_ms IS NULL OR k.ended_ms >= $2))
                 OR EXISTS (SELECT 1 FROM conversations c
                            WHERE c.session_id = s.id AND c.state = 'open'))
             ORDER BY s.started_ms DESC LIMIT 1",
        )
        .bind(customer.to_string())
        .bind(since_ms)
        .fetch_optional(self.pool())
        .await?;
        id.map(|id| parse_id("sessions", &id)).transpose()
    }

    /// The identities of the customers of sessions active at or after `since_ms`, with the
    /// session and its last activity (the session service's continuity index at start).
    pub async fn recent_session_identities(
        &self,
        since_ms: i64,
    ) -> Result<Vec<(Identity, SessionId, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT i.kind, i.value, s.id, s.last_activity_ms FROM sessions s
             JOIN customer_identities i ON i.customer_id = s.customer_id
             WHERE s.last_activity_ms >= $1 ORDER BY s.last_activity_ms",
        )
        .bind(since_ms)
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let kind: String = row.try_get("kind")?;
            let Some(kind) = IdentityKind::parse(&kind) else {
                continue;
            };
            let id: String = row.try_get("id")?;
            out.push((
                Identity {
                    kind,
                    value: row.try_get("value")?,
                },
                parse_id("sessions", &id)?,
                row.try_get("last_activity_ms")?,
            ));
        }
        Ok(out)
    }

    /// The customer of session `id`, if known.
    pub async fn customer_of_session(
        &self,
        id: SessionId,
    ) -> Result<Option<CustomerId>, StoreError> {
        let c: Option<Option<String>> =
            sqlx::query_scalar("SELECT customer_id FROM sessions WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(self.pool())
                .await?;
        c.flatten().map(|c| parse_id("sessions", &c)).transpose()
    }
}

pub(super) async fn conversation_started(
    conn: &mut AnyConnection,
    c: &NewConversation,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO conversations (id, session_id, channel, contact, state, started_ms)
         VALUES ($1, $2, $3, $4, 'open', $5)",
    )
    .bind(c.id.to_string())
    .bind(c.session_id.to_string())
    .bind(&c.channel)
    .bind(&c.contact)
    .bind(c.started_ms)
    .execute(&mut *conn)
    .await?;
    touch_session(conn, c.session_id, c.started_ms).await
}

pub(super) async fn conversation_closed(
    conn: &mut AnyConnection,
    id: ConversationId,
    at_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE conversations SET state = 'closed', ended_ms = $1 WHERE id = $2")
        .bind(at_ms)
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub(super) async fn message_added(
    conn: &mut AnyConnection,
    m: &NewMessage,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO messages (id, conversation_id, channel, external_id, author_kind,
                               author_name, body, created_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(m.id.to_string())
    .bind(m.conversation_id.to_string())
    .bind(&m.channel)
    .bind(m.external_id.as_deref())
    .bind(m.author.as_str())
    .bind(m.author_name.as_deref())
    .bind(&m.text)
    .bind(m.created_ms)
    .execute(&mut *conn)
    .await?;
    touch_session(conn, m.session_id, m.created_ms).await
}

/// The customer's messages of a conversation up to `up_to` were read by the other side (or
/// the other side's, by the customer: `by_customer`).
pub(super) async fn messages_read(
    conn: &mut AnyConnection,
    conversation: ConversationId,
    up_to_ms: i64,
    by_customer: bool,
    at_ms: i64,
) -> Result<(), sqlx::Error> {
    let authors = if by_customer {
        "author_kind <> 'customer'"
    } else {
        "author_kind = 'customer'"
    };
    let sql = format!(
        "UPDATE messages SET read_ms = $1 WHERE conversation_id = $2 AND created_ms <= $3
         AND read_ms IS NULL AND {authors}"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(at_ms)
        .bind(conversation.to_string())
        .bind(up_to_ms)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Session `id` saw activity at `at_ms` (continuity: it stays joinable for a window after).
pub(super) async fn touch_session(
    conn: &mut AnyConnection,
    id: SessionId,
    at_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE sessions SET last_activity_ms = $1
         WHERE id = $2 AND (last_activity_ms IS NULL OR last_activity_ms < $1)",
    )
    .bind(at_ms)
    .bind(id.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn corrupt(table: &'static str, what: &str, value: &str) -> StoreError {
    StoreError::Corrupt {
        table,
        reason: format!("unknown {what} {value:?}"),
    }
}

fn channel_from_row(row: &AnyRow) -> Result<ChannelRecord, StoreError> {
    let kind: String = row.try_get("kind")?;
    let status: Option<i64> = row.try_get("last_status")?;
    Ok(ChannelRecord {
        name: row.try_get("name")?,
        kind: ChannelKind::parse(&kind).ok_or_else(|| corrupt("channels", "kind", &kind))?,
        webhook_url: row.try_get("webhook_url")?,
        secret: row.try_get("secret")?,
        created_ms: row.try_get("created_ms")?,
        attempts: row.try_get("attempts")?,
        last_status: status.and_then(|s| u16::try_from(s).ok()),
        last_error: row.try_get("last_error")?,
        next_attempt_ms: row.try_get("next_attempt_ms")?,
    })
}

fn conversation_from_row(row: &AnyRow) -> Result<ConversationRecord, StoreError> {
    let id: String = row.try_get("id")?;
    let session: String = row.try_get("session_id")?;
    let customer: Option<String> = row.try_get("customer_id")?;
    let state: String = row.try_get("state")?;
    Ok(ConversationRecord {
        id: parse_id("conversations", &id)?,
        session_id: parse_id("conversations", &session)?,
        customer_id: customer
            .map(|c| parse_id("conversations", &c))
            .transpose()?,
        channel: row.try_get("channel")?,
        contact: row.try_get("contact")?,
        state: ConversationState::parse(&state)
            .ok_or_else(|| corrupt("conversations", "state", &state))?,
        started_ms: row.try_get("started_ms")?,
        ended_ms: row.try_get("ended_ms")?,
    })
}

fn message_from_row(row: &AnyRow) -> Result<MessageRecord, StoreError> {
    let id: String = row.try_get("id")?;
    let conversation: String = row.try_get("conversation_id")?;
    let author: String = row.try_get("author_kind")?;
    Ok(MessageRecord {
        id: parse_id("messages", &id)?,
        conversation_id: parse_id("messages", &conversation)?,
        channel: row.try_get("channel")?,
        external_id: row.try_get("external_id")?,
        author: AuthorKind::parse(&author).ok_or_else(|| corrupt("messages", "author", &author))?,
        author_name: row.try_get("author_name")?,
        text: row.try_get("body")?,
        created_ms: row.try_get("created_ms")?,
        delivered_ms: row.try_get("delivered_ms")?,
        read_ms: row.try_get("read_ms")?,
    })
}
