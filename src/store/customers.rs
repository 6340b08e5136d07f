//! One customer identity (issue 12): merging two customers and splitting them again, each in
//! one transaction with its audit row, and the conflicts a contact's identities reveal.
//!
//! A merge moves the absorbed customer's identities and sessions to the survivor, keeps the
//! absorbed row with `merged_into` pointing at the survivor, and records exactly what moved
//! (`customer_merges`), so a split moves that back. A conflict (a phone of one customer and an
//! email of another in one contact) is stored once per pair and shown with both customers.

use sqlx::{AnyConnection, Row};

use super::audit::{self, Actor, NewAudit};
use super::calls::{Identity, IdentityKind};
use super::{CustomerId, Store, StoreError, parse_id};

/// A stored conflict, seen from one customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictRecord {
    pub other_customer_id: CustomerId,
    /// This customer's identity and the other's, seen in one contact.
    pub identity: Identity,
    pub other_identity: Identity,
    pub created_ms: i64,
}

impl Store {
    /// Moves `from`'s identities and sessions to `into`; `from` then points at `into`.
    pub async fn merge_customers(
        &self,
        into: CustomerId,
        from: CustomerId,
        actor: &Actor,
    ) -> Result<(), StoreError> {
        if into == from {
            return Err(StoreError::Invalid(
                "a customer cannot be merged into itself".into(),
            ));
        }
        let now = crate::clock::unix_ms();
        let mut tx = self.pool().begin().await?;
        for id in [into, from] {
            let merged: Option<Option<String>> =
                sqlx::query_scalar("SELECT merged_into FROM customers WHERE id = $1")
                    .bind(id.to_string())
                    .fetch_optional(&mut *tx)
                    .await?;
            match merged {
                None => return Err(StoreError::NotFound(format!("customer {id}"))),
                Some(Some(_)) => {
                    return Err(StoreError::Invalid(format!(
                        "customer {id} was merged into another"
                    )));
                }
                Some(None) => {}
            }
        }
        let identities: Vec<(String, String)> =
            sqlx::query("SELECT kind, value FROM customer_identities WHERE customer_id = $1")
                .bind(from.to_string())
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| Ok((r.try_get("kind")?, r.try_get("value")?)))
                .collect::<Result<_, sqlx::Error>>()?;
        let sessions: Vec<String> =
            sqlx::query_scalar("SELECT id FROM sessions WHERE customer_id = $1")
                .bind(from.to_string())
                .fetch_all(&mut *tx)
                .await?;
        for (table, col) in [
            ("customer_identities", "customer_id"),
            ("sessions", "customer_id"),
        ] {
            let sql = format!("UPDATE {table} SET {col} = $1 WHERE {col} = $2");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(into.to_string())
                .bind(from.to_string())
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("UPDATE customers SET merged_into = $1 WHERE id = $2")
            .bind(into.to_string())
            .bind(from.to_string())
            .execute(&mut *tx)
            .await?;
        let moved_identities = serde_json::json!(
            identities
                .iter()
                .map(|(k, v)| serde_json::json!({"kind": k, "value": v}))
                .collect::<Vec<_>>()
        );
        let moved_sessions = serde_json::json!(sessions);
        sqlx::query(
            "INSERT INTO customer_merges (id, into_id, from_id, identities, sessions, merged_ms)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(into.to_string())
        .bind(from.to_string())
        .bind(moved_identities.to_string())
        .bind(moved_sessions.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let entry = NewAudit {
            action: "customer.merge".into(),
            target_kind: "customer".into(),
            target_id: into.to_string(),
            detail: serde_json::json!({"merged": from.to_string(),
                "identities": moved_identities, "sessions": moved_sessions}),
        };
        audit::insert(&mut tx, actor, &entry, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Undoes the last merge of `from` into `into`: what it moved goes back to `from`.
    pub async fn split_customers(
        &self,
        into: CustomerId,
        from: CustomerId,
        actor: &Actor,
    ) -> Result<(), StoreError> {
        let now = crate::clock::unix_ms();
        let mut tx = self.pool().begin().await?;
        let row = sqlx::query(
            "SELECT id, identities, sessions FROM customer_merges
             WHERE into_id = $1 AND from_id = $2 AND split_ms IS NULL
             ORDER BY merged_ms DESC LIMIT 1",
        )
        .bind(into.to_string())
        .bind(from.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound(format!(
                "merge of customer {from} into {into}"
            )));
        };
        let merge_id: String = row.try_get("id")?;
        let identities: serde_json::Value =
            serde_json::from_str(&row.try_get::<String, _>("identities")?).unwrap_or_default();
        let sessions: serde_json::Value =
            serde_json::from_str(&row.try_get::<String, _>("sessions")?).unwrap_or_default();
        for i in identities.as_array().into_iter().flatten() {
            sqlx::query(
                "UPDATE customer_identities SET customer_id = $1
                 WHERE kind = $2 AND value = $3 AND customer_id = $4",
            )
            .bind(from.to_string())
            .bind(i["kind"].as_str().unwrap_or_default())
            .bind(i["value"].as_str().unwrap_or_default())
            .bind(into.to_string())
            .execute(&mut *tx)
            .await?;
        }
        for s in sessions.as_array().into_iter().flatten() {
            sqlx::query("UPDATE sessions SET customer_id = $1 WHERE id = $2 AND customer_id = $3")
                .bind(from.to_string())
                .bind(s.as_str().unwrap_or_default())
                .bind(into.to_string())
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("UPDATE customers SET merged_into = NULL WHERE id = $1")
            .bind(from.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE customer_merges SET split_ms = $1 WHERE id = $2")
            .bind(now)
            .bind(&merge_id)
            .execute(&mut *tx)
            .await?;
        let entry = NewAudit {
            action: "customer.split".into(),
            target_kind: "customer".into(),
            target_id: into.to_string(),
            detail: serde_json::json!({"split": from.to_string(),
                "identities": identities, "sessions": sessions}),
        };
        audit::insert(&mut tx, actor, &entry, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Brings phone identities stored in other formats (before numbers were normalised, or
    /// under another default region) to the form `normalise` gives. Where the normalised
    /// number already names a customer, the other customer is merged into it (with an audit
    /// row by `actor`); otherwise the value is rewritten. Runs once per `rules` (kept in
    /// `meta`); returns how many identities changed.
    pub async fn normalise_phone_identities(
        &self,
        rules: &str,
        normalise: impl Fn(&str) -> Option<String>,
        actor: &Actor,
    ) -> Result<usize, StoreError> {
        const KEY: &str = "phone_identities_normalised_with";
        let done: Option<String> = sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
            .bind(KEY)
            .fetch_optional(self.pool())
            .await?;
        if done.as_deref() == Some(rules) {
            return Ok(0);
        }
        let rows: Vec<(String, String)> =
            sqlx::query("SELECT value, customer_id FROM customer_identities WHERE kind = 'phone'")
                .fetch_all(self.pool())
                .await?
                .iter()
                .map(|r| Ok((r.try_get("value")?, r.try_get("customer_id")?)))
                .collect::<Result<_, sqlx::Error>>()?;
        let mut changed = 0;
        for (value, customer) in rows {
            let Some(e164) = normalise(&value).filter(|n| *n != value) else {
                continue;
            };
            let holder: Option<String> = sqlx::query_scalar(
                "SELECT customer_id FROM customer_identities WHERE kind = 'phone' AND value = $1",
            )
            .bind(&e164)
            .fetch_optional(self.pool())
            .await?;
            match holder {
                Some(holder) if holder != customer => {
                    // Two customers for one number: the duplicate is merged into the holder.
                    let (into, from) = (
                        parse_id("customers", &holder)?,
                        parse_id("customers", &customer)?,
                    );
                    if self.merged_into(from).await?.is_none() {
                        self.merge_customers(into, from, actor).await?;
                    }
                    sqlx::query(
                        "DELETE FROM customer_identities WHERE kind = 'phone' AND value = $1",
                    )
                    .bind(&value)
                    .execute(self.pool())
                    .await?;
                }
                Some(_) => {
                    sqlx::query(
                        "DELETE FROM customer_identities WHERE kind = 'phone' AND value = $1",
                    )
                    .bind(&value)
                    .execute(self.pool())
                    .await?;
                }
                None => {
                    sqlx::query(
                        "UPDATE customer_identities SET value = $1 WHERE kind = 'phone' AND value = $2",
                    )
                    .bind(&e164)
                    .bind(&value)
                    .execute(self.pool())
                    .await?;
                }
            }
            changed += 1;
        }
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(KEY)
        .bind(rules)
        .execute(self.pool())
        .await?;
        Ok(changed)
    }

    /// The customer a merged customer now is (None when it was not merged).
    pub async fn merged_into(&self, id: CustomerId) -> Result<Option<CustomerId>, StoreError> {
        let m: Option<Option<String>> =
            sqlx::query_scalar("SELECT merged_into FROM customers WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(self.pool())
                .await?;
        m.flatten().map(|m| parse_id("customers", &m)).transpose()
    }

    /// The conflicts that name customer `id`, oldest first.
    pub async fn conflicts_of(&self, id: CustomerId) -> Result<Vec<ConflictRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT customer_id, other_customer_id, kind, value, other_kind, other_value,
                    created_ms
             FROM customer_conflicts WHERE customer_id = $1 OR other_customer_id = $1
             ORDER BY created_ms, id",
        )
        .bind(id.to_string())
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let ident = |k: &str, v: &str| -> Result<Identity, StoreError> {
                let kind: String = r.try_get(k)?;
                Ok(Identity {
                    kind: IdentityKind::parse(&kind).ok_or_else(|| StoreError::Corrupt {
                        table: "customer_conflicts",
                        reason: format!("bad kind {kind:?}"),
                    })?,
                    value: r.try_get(v)?,
                })
            };
            let a: String = r.try_get("customer_id")?;
            let b: String = r.try_get("other_customer_id")?;
            let (mine, other, other_id) = if a == id.to_string() {
                (
                    ident("kind", "value")?,
                    ident("other_kind", "other_value")?,
                    b,
                )
            } else {
                (
                    ident("other_kind", "other_value")?,
                    ident("kind", "value")?,
                    a,
                )
            };
            out.push(ConflictRecord {
                other_customer_id: parse_id("customer_conflicts", &other_id)?,
                identity: mine,
                other_identity: other,
                created_ms: r.try_get("created_ms")?,
            });
        }
        Ok(out)
    }
}

/// Records that `a`'s identity and `b`'s were seen in one contact (once per pair).
pub(super) async fn conflict_noted(
    conn: &mut AnyConnection,
    a: (CustomerId, &Identity),
    b: (CustomerId, &Identity),
    at_ms: i64,
) -> Result<(), sqlx::Error> {
    // One row per unordered pair: the smaller id first.
    let (first, second) = if a.0 <= b.0 { (a, b) } else { (b, a) };
    sqlx::query(
        "INSERT INTO customer_conflicts (id, customer_id, other_customer_id, kind, value,
                                         other_kind, other_value, created_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (customer_id, other_customer_id) DO NOTHING",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(first.0.to_string())
    .bind(second.0.to_string())
    .bind(first.1.kind.as_str())
    .bind(&first.1.value)
    .bind(second.1.kind.as_str())
    .bind(&second.1.value)
    .bind(at_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
