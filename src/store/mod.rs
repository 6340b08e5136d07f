//! Persistence (DRIVER): users, registrar bindings, customers and their identities, sessions
//! and their attributes, call records with legs, recordings (calls, voicemails, messages), and
//! the durable event log (DESIGN §4, §5).
//!
//! * One portable schema in `migrations/` runs unchanged on SQLite and PostgreSQL through
//!   sqlx's `Any` driver: TEXT ids (UUIDv7 made in Rust), BIGINT Unix-millisecond times,
//!   JSON as TEXT, `$n` placeholders (which SQLite also understands), no SERIAL/AUTOINCREMENT.
//! * SQLite (`sqlite:///abs/x.db`, `sqlite://./rel/x.db`, `sqlite:rel/x.db`): the file and
//!   its directory are created; every connection runs with WAL, `busy_timeout` 5 s,
//!   `synchronous=NORMAL` and foreign keys on.
//! * Reads (`get_user`, `load_bindings`, `get_call`…) are awaited directly; they are for the
//!   CLI, startup, the API and tests, never the call path.
//! * Writes from the call path go through **one writer task** ([`WriterHandle::send`] never
//!   blocks or awaits). Commands queued together are applied in one transaction; if that
//!   transaction fails, the batch is replayed one command per transaction so one bad command
//!   cannot take its neighbours down. [`StoreCmd::Flush`] answers once everything queued
//!   before it is committed.
//! * The event log: the writer numbers events from its own counter, seeded with
//!   `MAX(seq)+1` at open; since it is the only writer the sequence is gap-free and monotonic.
//!   Written events are also published on a broadcast channel ([`Store::subscribe_events`])
//!   after commit, so nothing is published that is not first written. (Several nodes writing
//!   events into one PostgreSQL would need a database sequence instead: not done yet.)
//! * Users keep only digest HA1 values (MD5 and SHA-256, RFC 7616 §3.4.2), never passwords.

mod agents;
mod api_keys;
mod attachments;
mod attributes;
mod audit;
mod bindings;
mod calls;
mod chat;
mod customers;
mod events;
mod profiles;
mod queries;
mod recordings;
mod users;
mod webhooks;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Once;

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use tokio::sync::broadcast;

pub use crate::domain::{ApiKeyId, CallId, CustomerId, LegId, SessionId, WebhookId};
pub use agents::{AgentRecord, NewTask, StateRecord, TaskRecord, TaskStats};
pub use api_keys::{ApiKeyRecord, Scope, key_prefix};
pub use attachments::{AttachmentId, AttachmentRecord};
pub use audit::{Actor, AuditRecord, NewAudit};
pub use bindings::Binding;
pub use calls::{
    CallRecord, Direction, HangupBy, Identity, IdentityKind, LegKind, LegMediaRecord,
    LegMediaStats, LegRecord, LegRole, NewCall, NewLeg, NewSession, SessionRecord,
};
pub use chat::{
    AuthorKind, ChannelKind, ChannelRecord, ConversationFilter, ConversationId, ConversationRecord,
    ConversationState, MessageId, MessageRecord, NewConversation, NewMessage,
};
pub use customers::ConflictRecord;
pub use events::EventRecord;
pub use profiles::Profile;
pub use queries::{CallFilter, CustomerRecord, RecordingFilter};
pub use recordings::{
    EndedRecording, NewRecording, RecordingFile, RecordingId, RecordingKind, RecordingRecord,
    RecordingState,
};
pub use users::{User, UserSecrets};
pub use webhooks::{EventFilter, MAX_TYPES as MAX_EVENT_TYPES, NewWebhook, WebhookRecord};
pub use writer::{StoreCmd, WriterHandle};

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL is not one we understand. The URL itself is not repeated (it may hold
    /// a password).
    #[error("unsupported database URL: {0}")]
    BadUrl(String),
    /// The database failed.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Creating the SQLite directory failed.
    #[error("cannot create database directory {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// `add_user` for an extension that exists.
    #[error("user {0} already exists")]
    AlreadyExists(String),
    /// The user does not exist.
    #[error("user {0} not found")]
    NotFound(String),
    /// An argument is not acceptable (e.g. an empty extension).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// A stored row does not decode (bad id, unknown enum text, bad JSON).
    #[error("corrupt row in {table}: {reason}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The writer task has stopped.
    #[error("store writer has stopped")]
    WriterGone,
    /// A confirmed write was refused by the database (rolled back; logged by the writer).
    #[error("the database refused the write")]
    NotStored,
}

/// Which database is behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// Handle to the database: a connection pool plus the writer task. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    writer: WriterHandle,
    events: broadcast::Sender<EventRecord>,
}

/// Capacity of the broadcast of written events; slower subscribers see `Lagged` and resume
/// from the table with [`Store::events_since`].
const EVENT_BROADCAST_CAPACITY: usize = 4096;

/// Per-connection SQLite settings (DESIGN §5: WAL, busy timeout, one writer).
const SQLITE_PRAGMAS: [&str; 4] = [
    "PRAGMA journal_mode = WAL",
    "PRAGMA busy_timeout = 5000",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA foreign_keys = ON",
];

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

impl Store {
    /// Opens (and for SQLite creates) the database at `url`, runs migrations, seeds the event
    /// sequence and starts the writer task. Must be called inside a tokio runtime.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);

        let (backend, conn_url) = normalize_url(url)?;
        let options = match backend {
            Backend::Sqlite => AnyPoolOptions::new()
                .max_connections(4)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        for pragma in SQLITE_PRAGMAS {
                            sqlx::query(pragma).execute(&mut *conn).await?;
                        }
                        Ok(())
                    })
                }),
            Backend::Postgres => AnyPoolOptions::new().max_connections(8),
        };
        let pool = options.connect(&conn_url).await?;
        MIGRATOR.run(&pool).await?;
        let next_seq = events::next_seq(&pool).await?;
        let (events, _) = broadcast::channel(EVENT_BROADCAST_CAPACITY);
        let writer = writer::spawn(pool.clone(), next_seq, events.clone());
        Ok(Store {
            pool,
            backend,
            writer,
            events,
        })
    }

    /// Runs pending migrations (idempotent; [`Store::open`] already does it).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A handle for fire-and-forget writes.
    pub fn writer(&self) -> WriterHandle {
        self.writer.clone()
    }

    /// Waits until every command queued so far is committed (tests, shutdown).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.writer.flush().await
    }

    /// Flushes the writer and closes the pool. Other clones of this store become unusable.
    pub async fn close(&self) -> Result<(), StoreError> {
        let flushed = self.flush().await;
        self.pool.close().await;
        flushed
    }

    /// Events after they are committed, in sequence order.
    pub fn subscribe_events(&self) -> broadcast::Receiver<EventRecord> {
        self.events.subscribe()
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// Turns a user-facing URL into what the driver accepts. SQLite paths become absolute
/// (`sqlite://host/..` would otherwise be read as a host name and lower-cased), the parent
/// directory is created and `mode=rwc` added so the file is created.
fn normalize_url(url: &str) -> Result<(Backend, String), StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok((Backend::Postgres, url.to_string()));
    }
    let Some(rest) = url.strip_prefix("sqlite:") else {
        let scheme = url.split(':').next().unwrap_or_default();
        return Err(StoreError::BadUrl(format!(
            "scheme {scheme:?} (use sqlite:… or postgres://…)"
        )));
    };
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (path, params) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    if path == ":memory:" || (path.is_empty() && params.is_some_and(|q| q.contains("mode=memory")))
    {
        return Ok((Backend::Sqlite, url.to_string()));
    }
    if path.is_empty() {
        return Err(StoreError::BadUrl("sqlite URL without a file path".into()));
    }
    let mut file = PathBuf::from(path);
    if file.is_relative() {
        let cwd = std::env::current_dir().map_err(|source| StoreError::Io {
            path: PathBuf::from("."),
            source,
        })?;
        file = cwd.join(file);
    }
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let mut query: Vec<&str> = params
        .map(|q| q.split('&').filter(|p| !p.is_empty()).collect())
        .unwrap_or_default();
    if !query.iter().any(|p| p.starts_with("mode=")) {
        query.push("mode=rwc");
    }
    Ok((
        Backend::Sqlite,
        format!("sqlite://{}?{}", encode_path(&file), query.join("&")),
    ))
}

fn encode_path(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3F"),
            '#' => out.push_str("%23"),
            ' ' => out.push_str("%20"),
            c => out.push(c),
        }
    }
    out
}

/// Reads a TEXT id column.
fn parse_id<T: std::str::FromStr>(table: &'static str, text: &str) -> Result<T, StoreError> {
    text.parse().map_err(|_| StoreError::Corrupt {
        table,
        reason: format!("bad id {text:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_url_gets_its_directory_created_path_encoded_and_create_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}/sub dir/x.db", dir.path().display());
        let (b, u) = normalize_url(&url).expect("ok");
        assert_eq!(b, Backend::Sqlite);
        assert!(u.starts_with("sqlite:///"), "{u}");
        assert!(u.ends_with("/sub%20dir/x.db?mode=rwc"), "{u}");
        assert!(dir.path().join("sub dir").is_dir());
    }

    #[test]
    fn unknown_scheme_is_refused_without_echoing_the_url() {
        let err = normalize_url("mysql://user:pw@host/db").expect_err("refused");
        assert!(!err.to_string().contains("pw"));
    }

    #[test]
    fn postgres_url_is_passed_through() {
        let (b, u) = normalize_url("postgres://u@127.0.0.1:5432/db").expect("ok");
        assert_eq!(b, Backend::Postgres);
        assert_eq!(u, "postgres://u@127.0.0.1:5432/db");
    }
}
