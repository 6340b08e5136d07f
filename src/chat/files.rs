//! Chat attachments on disk (DRIVER): an upload is checked (size, then type by content),
//! written under `<data_dir>/attachments/`, synced, and only then recorded (confirmed
//! committed), so a row never names a file that is not there. Files are read back by id only;
//! who may read which is decided by the caller ([`crate::api::webchat`], the API).

use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::ChatError;
use super::attachment::{FileKind, clean_name};
use crate::domain::{AttachmentId, ConversationId};
use crate::store::{AttachmentRecord, Store, StoreCmd};

/// Where attachments live and how large one may be.
#[derive(Debug, Clone)]
pub struct Files {
    dir: PathBuf,
    max_bytes: usize,
}

impl Files {
    /// Files under `<data_dir>/attachments`, each at most `max_bytes`.
    pub fn new(data_dir: &std::path::Path, max_bytes: usize) -> Files {
        Files {
            dir: data_dir.join("attachments"),
            max_bytes,
        }
    }

    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    fn path(&self, id: AttachmentId) -> PathBuf {
        self.dir.join(id.to_string())
    }

    /// Stores an upload by `owner` (a visitor id, or `api`), in `conversation` when known.
    pub async fn save(
        &self,
        store: &Store,
        owner: &str,
        conversation: Option<ConversationId>,
        name: &str,
        bytes: &[u8],
    ) -> Result<AttachmentRecord, ChatError> {
        if bytes.is_empty() {
            return Err(ChatError::Invalid("the file is empty".into()));
        }
        if bytes.len() > self.max_bytes {
            return Err(ChatError::TooLarge(self.max_bytes));
        }
        let Some(kind) = FileKind::sniff(bytes) else {
            return Err(ChatError::Unsupported);
        };
        let record = AttachmentRecord {
            id: AttachmentId::new(),
            owner: owner.to_owned(),
            conversation_id: conversation,
            message_id: None,
            content_type: kind.content_type().to_owned(),
            size_bytes: bytes.len() as i64,
            sha256: hex::encode(Sha256::digest(bytes)),
            name: clean_name(name),
            created_ms: crate::clock::unix_ms(),
        };
        let path = self.path(record.id);
        let dir = self.dir.clone();
        let data = bytes.to_vec();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::io::Write;
            std::fs::create_dir_all(&dir)?;
            let mut f = std::fs::File::create(&path)?;
            f.write_all(&data)?;
            f.sync_all()
        })
        .await
        .map_err(|e| ChatError::Io(e.to_string()))?
        .map_err(|e| ChatError::Io(e.to_string()))?;
        store
            .writer()
            .confirm(vec![StoreCmd::AttachmentAdded(record.clone())])
            .await?;
        Ok(record)
    }

    /// The bytes of attachment `id`.
    pub async fn read(&self, id: AttachmentId) -> Result<Vec<u8>, ChatError> {
        tokio::fs::read(self.path(id))
            .await
            .map_err(|e| ChatError::Io(e.to_string()))
    }
}
