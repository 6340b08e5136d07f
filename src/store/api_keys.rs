//! API keys (issue 5): `sb_<prefix>_<secret>`, shown once at creation. Only the key's SHA-256
//! is stored; the prefix (public, unique) finds the row, the hash is compared in constant time.

use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{ApiKeyId, Store, StoreError, parse_id};

/// What a key may do: each scope includes the ones before it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Read calls, records, recordings, events.
    Read,
    /// Read, and act on calls (originate, hang up, play, record, …).
    Control,
    /// Everything, including users, API keys and webhooks.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Control => "control",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "read" => Some(Scope::Read),
            "control" => Some(Scope::Control),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored key, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApiKeyRecord {
    pub id: ApiKeyId,
    pub name: String,
    /// The public part of the key (`sb_<prefix>_…`).
    pub prefix: String,
    pub scope: Scope,
    pub created_ms: i64,
    pub revoked_ms: Option<i64>,
}

/// The hex SHA-256 of a whole key.
fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Splits `sb_<prefix>_<secret>` into its prefix; None for anything else.
pub fn key_prefix(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("sb_")?;
    let (prefix, secret) = rest.split_once('_')?;
    let hex_ok = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex_ok(prefix, 12) && hex_ok(secret, 32)).then_some(prefix)
}

impl Store {
    /// Creates a key; returns its row and the key itself (to be shown once, never again).
    pub async fn create_api_key(
        &self,
        name: &str,
        scope: Scope,
    ) -> Result<(ApiKeyRecord, String), StoreError> {
        if name.trim().is_empty() || name.len() > 200 {
            return Err(StoreError::Invalid(
                "an API key needs a name (1-200 characters)".into(),
            ));
        }
        let random: [u8; 22] = rand::random();
        let prefix = hex::encode(&random[..6]);
        let secret = hex::encode(&random[6..]);
        let key = format!("sb_{prefix}_{secret}");
        let record = ApiKeyRecord {
            id: ApiKeyId::new(),
            name: name.to_owned(),
            prefix,
            scope,
            created_ms: crate::clock::unix_ms(),
            revoked_ms: None,
        };
        sqlx::query(
            "INSERT INTO api_keys (id, name, prefix, hash, scope, created_ms)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(record.id.to_string())
        .bind(&record.name)
        .bind(&record.prefix)
        .bind(key_hash(&key))
        .bind(scope.as_str())
        .bind(record.created_ms)
        .execute(self.pool())
        .await?;
        Ok((record, key))
    }

    /// The live (not revoked) key `key`, if it is one.
    pub async fn verify_api_key(&self, key: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let Some(prefix) = key_prefix(key) else {
            return Ok(None);
        };
        let row = sqlx::query(
            "SELECT id, name, prefix, hash, scope, created_ms, revoked_ms FROM api_keys
             WHERE prefix = $1",
        )
        .bind(prefix)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let stored: String = row.try_get("hash")?;
        let given = key_hash(key);
        // Constant time over the (fixed-length) hex digests.
        let same = stored.len() == given.len()
            && stored
                .bytes()
                .zip(given.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        let record = key_from_row(&row)?;
        Ok((same && record.revoked_ms.is_none()).then_some(record))
    }

    /// Every key, newest first.
    pub async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, prefix, hash, scope, created_ms, revoked_ms FROM api_keys
             ORDER BY created_ms DESC, id DESC",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(key_from_row).collect()
    }

    /// Revokes a key (by id or prefix); NotFound when there is none.
    pub async fn revoke_api_key(&self, id_or_prefix: &str) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_ms = $1
             WHERE (id = $2 OR prefix = $2) AND revoked_ms IS NULL",
        )
        .bind(crate::clock::unix_ms())
        .bind(id_or_prefix)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(id_or_prefix.to_owned()));
        }
        Ok(())
    }
}

fn key_from_row(row: &AnyRow) -> Result<ApiKeyRecord, StoreError> {
    let id: String = row.try_get("id")?;
    let scope: String = row.try_get("scope")?;
    Ok(ApiKeyRecord {
        id: parse_id("api_keys", &id)?,
        name: row.try_get("name")?,
        prefix: row.try_get("prefix")?,
        scope: Scope::parse(&scope)
            .ok_or_else(|| StoreError::Invalid(format!("api_keys: bad scope {scope:?}")))?,
        created_ms: row.try_get("created_ms")?,
        revoked_ms: row.try_get("revoked_ms")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_keys_have_a_prefix() {
        assert_eq!(
            key_prefix("sb_0123456789ab_0123456789abcdef0123456789abcdef"),
            Some("0123456789ab")
        );
        for bad in [
            "",
            "sb_",
            "sb_0123456789ab",
            "sb_0123456789ab_short",
            "xx_0123456789ab_0123456789abcdef0123456789abcdef",
            "sb_0123456789aZ_0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(key_prefix(bad), None, "{bad:?}");
        }
    }
}
