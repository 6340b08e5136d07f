//! SIP users (extensions) with their digest HA1 values (RFC 7616 §3.4.2). Used by the CLI and
//! the registrar's authentication; awaited directly, never from the call path.
//!
//! The store keeps the HA1 strings as data: they are computed from the password by
//! `sip::auth::user_secrets` before they get here.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError};

/// A SIP user. The password itself is never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// Extension, also the digest username.
    pub ext: String,
    /// Display name.
    pub name: Option<String>,
    /// MD5(ext:realm:password), hex.
    #[serde(skip)]
    pub ha1_md5: String,
    /// SHA-256(ext:realm:password), hex.
    #[serde(skip)]
    pub ha1_sha256: String,
    /// The realm the HA1 values were made for; they are useless under another realm.
    pub realm: String,
    /// Creation time, Unix ms.
    pub created_ms: i64,
}

/// What is stored instead of a user's password: the HA1 values and the realm they were made for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSecrets {
    /// MD5(ext:realm:password), hex.
    pub ha1_md5: String,
    /// SHA-256(ext:realm:password), hex.
    pub ha1_sha256: String,
    /// The realm both were made for.
    pub realm: String,
}

impl Store {
    /// Adds a user; [`StoreError::AlreadyExists`] if the extension is taken.
    pub async fn add_user(
        &self,
        ext: &str,
        name: Option<&str>,
        secrets: &UserSecrets,
    ) -> Result<(), StoreError> {
        if ext.is_empty() {
            return Err(StoreError::Invalid("empty extension".into()));
        }
        let done = sqlx::query(
            "INSERT INTO users (ext, name, ha1_md5, ha1_sha256, realm, created_ms)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (ext) DO NOTHING",
        )
        .bind(ext)
        .bind(name)
        .bind(&secrets.ha1_md5)
        .bind(&secrets.ha1_sha256)
        .bind(&secrets.realm)
        .bind(crate::clock::unix_ms())
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::AlreadyExists(ext.to_string()));
        }
        Ok(())
    }

    /// Replaces a user's password (its HA1 values and realm); [`StoreError::NotFound`] if there
    /// is no such user.
    pub async fn set_password(&self, ext: &str, secrets: &UserSecrets) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE users SET ha1_md5 = $1, ha1_sha256 = $2, realm = $3 WHERE ext = $4",
        )
        .bind(&secrets.ha1_md5)
        .bind(&secrets.ha1_sha256)
        .bind(&secrets.realm)
        .bind(ext)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(ext.to_string()));
        }
        Ok(())
    }

    /// Removes a user and their bindings; false if there was no such user.
    pub async fn remove_user(&self, ext: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("DELETE FROM registrations WHERE ext = $1")
            .bind(ext)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM users WHERE ext = $1")
            .bind(ext)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// All users, by extension.
    pub async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let rows = sqlx::query(
            "SELECT ext, name, ha1_md5, ha1_sha256, realm, created_ms FROM users ORDER BY ext",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(user_from_row).collect()
    }

    /// One user.
    pub async fn get_user(&self, ext: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(
            "SELECT ext, name, ha1_md5, ha1_sha256, realm, created_ms FROM users WHERE ext = $1",
        )
        .bind(ext)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }
}

fn user_from_row(row: &AnyRow) -> Result<User, StoreError> {
    Ok(User {
        ext: row.try_get("ext")?,
        name: row.try_get("name")?,
        ha1_md5: row.try_get("ha1_md5")?,
        ha1_sha256: row.try_get("ha1_sha256")?,
        realm: row.try_get("realm")?,
        created_ms: row.try_get("created_ms")?,
    })
}
