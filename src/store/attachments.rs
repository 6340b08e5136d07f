//! Chat attachments' rows (issue 12): the bytes are files under the data directory (written
//! and synced by the chat service before the row); a row names its uploader, the
//! conversation and message it belongs to, its content type (told by content), size and hash.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::{ConversationId, MessageId, Store, StoreError, parse_id};
pub use crate::domain::AttachmentId;

/// An uploaded file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentRecord {
    pub id: AttachmentId,
    /// Who uploaded it: a web visitor's id, or `api`.
    pub owner: String,
    pub conversation_id: Option<ConversationId>,
    pub message_id: Option<MessageId>,
    pub content_type: String,
    pub size_bytes: i64,
    /// Hex SHA-256 of the bytes.
    pub sha256: String,
    /// The name the uploader gave (cleaned).
    pub name: String,
    pub created_ms: i64,
}

const COLUMNS: &str =
    "id, owner, conversation_id, message_id, content_type, size_bytes, sha256, name, created_ms";

impl Store {
    pub async fn get_attachment(
        &self,
        id: AttachmentId,
    ) -> Result<Option<AttachmentRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM attachments WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// The attachments of a conversation's messages, oldest first.
    pub async fn attachments_of_conversation(
        &self,
        conversation: ConversationId,
    ) -> Result<Vec<AttachmentRecord>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM attachments WHERE conversation_id = $1
             AND message_id IS NOT NULL ORDER BY created_ms, id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(conversation.to_string())
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(from_row).collect()
    }
}

pub(super) async fn attachment_added(
    conn: &mut AnyConnection,
    a: &AttachmentRecord,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO attachments (id, owner, conversation_id, message_id, content_type,
                                  size_bytes, sha256, name, created_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(a.id.to_string())
    .bind(&a.owner)
    .bind(a.conversation_id.map(|c| c.to_string()))
    .bind(a.message_id.map(|m| m.to_string()))
    .bind(&a.content_type)
    .bind(a.size_bytes)
    .bind(&a.sha256)
    .bind(&a.name)
    .bind(a.created_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Ties attachment `id` to a message of a conversation; fails (rolling back the message
/// with it) when it is already tied to another message.
pub(super) async fn attachment_linked(
    conn: &mut AnyConnection,
    id: AttachmentId,
    conversation: ConversationId,
    message: MessageId,
) -> Result<(), sqlx::Error> {
    let done = sqlx::query(
        "UPDATE attachments SET conversation_id = $1, message_id = $2
         WHERE id = $3 AND message_id IS NULL",
    )
    .bind(conversation.to_string())
    .bind(message.to_string())
    .bind(id.to_string())
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(sqlx::Error::RowNotFound);
    }
    Ok(())
}

fn from_row(row: &AnyRow) -> Result<AttachmentRecord, StoreError> {
    let id: String = row.try_get("id")?;
    let conversation: Option<String> = row.try_get("conversation_id")?;
    let message: Option<String> = row.try_get("message_id")?;
    Ok(AttachmentRecord {
        id: parse_id("attachments", &id)?,
        owner: row.try_get("owner")?,
        conversation_id: conversation
            .map(|c| parse_id("attachments", &c))
            .transpose()?,
        message_id: message.map(|m| parse_id("attachments", &m)).transpose()?,
        content_type: row.try_get("content_type")?,
        size_bytes: row.try_get("size_bytes")?,
        sha256: row.try_get("sha256")?,
        name: row.try_get("name")?,
        created_ms: row.try_get("created_ms")?,
    })
}
