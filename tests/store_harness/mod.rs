//! The database fixture shared by the store test files: one [`TestDb`] per test, on SQLite (a
//! temp dir) and, when `SWITCHBOARD_TEST_PG_URL` is set, on PostgreSQL (a fresh schema per
//! test, so tests run in parallel), and `on_both!`, which turns an `async fn(TestDb)` into the
//! two tests. Include with `#[macro_use] mod store_harness;`.

#![allow(dead_code)]

use std::path::Path;

use sqlx::Connection;
use switchboard::store::{
    Backend, Identity, IdentityKind, NewCall, NewSession, Store, StoreCmd, WriterHandle,
};

pub const PG_ENV: &str = "SWITCHBOARD_TEST_PG_URL";

/// A database for one test, and a data directory (recordings) kept alive with it.
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    data: tempfile::TempDir,
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        let data = tempfile::tempdir().expect("temp dir");
        // A nested, not yet existing directory: open must create it.
        let url = format!(
            "sqlite://{}/data/nested/switchboard.db",
            data.path().display()
        );
        TestDb {
            url,
            backend: Backend::Sqlite,
            data,
        }
    }

    /// A fresh schema in the PostgreSQL database named by `SWITCHBOARD_TEST_PG_URL`.
    pub async fn postgres() -> Option<TestDb> {
        let base = std::env::var(PG_ENV).ok().filter(|u| !u.is_empty())?;
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&base)
            .await
            .expect("connect to SWITCHBOARD_TEST_PG_URL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut conn)
            .await
            .expect("create schema");
        conn.close().await.expect("close");
        let sep = if base.contains('?') { '&' } else { '?' };
        Some(TestDb {
            url: format!("{base}{sep}options=-c%20search_path%3D{schema}"),
            backend: Backend::Postgres,
            data: tempfile::tempdir().expect("temp dir"),
        })
    }

    pub async fn open(&self) -> Store {
        let store = Store::open(&self.url).await.expect("open store");
        assert_eq!(store.backend(), self.backend);
        store
    }

    /// The test's data directory.
    pub fn dir(&self) -> &Path {
        self.data.path()
    }
}

/// Runs an `async fn(TestDb)` as two tests: `sqlite` and `postgres`.
macro_rules! on_both {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::store_harness::TestDb::sqlite()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                match $crate::store_harness::TestDb::postgres().await {
                    Some(db) => super::$name(db).await,
                    None => eprintln!(
                        "skipping PostgreSQL: {} not set",
                        $crate::store_harness::PG_ENV
                    ),
                }
            }
        }
    )+};
}

/// What the session service and a call send for a new call: the session it opens (the
/// caller's phone number as the customer's identity, none for an anonymous caller), then the
/// call record.
pub fn call_started(w: &WriterHandle, c: &NewCall) {
    let identity = (c.caller != "anonymous").then(|| Identity {
        kind: IdentityKind::Phone,
        value: c.caller.clone(),
    });
    w.send(StoreCmd::SessionStarted(NewSession {
        session_id: c.session_id,
        identity,
        channel: "voice".into(),
        started_ms: c.started_ms,
    }));
    w.send(StoreCmd::CallStarted(c.clone()));
}
