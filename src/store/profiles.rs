//! Customer priority (issue 13): `vip` and free attributes on a customer, read by flows and
//! queue steps as `customer.vip` and `customer.NAME`. Set through the API; calls read them
//! from the session service's copy (never from the database on the call path).

use std::collections::BTreeMap;

use sqlx::Row;

use super::calls::{Identity, IdentityKind};
use super::{CustomerId, Store, StoreError};

/// What flows know of a customer.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Profile {
    pub vip: bool,
    pub attributes: BTreeMap<String, String>,
}

fn parse_attributes(s: &str) -> BTreeMap<String, String> {
    serde_json::from_str::<BTreeMap<String, serde_json::Value>>(s)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect()
}

impl Store {
    /// A customer's profile (default when there is no such customer).
    pub async fn customer_profile(&self, id: CustomerId) -> Result<Profile, StoreError> {
        let row = sqlx::query("SELECT vip, attributes FROM customers WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await?;
        Ok(match row {
            Some(r) => Profile {
                vip: r.try_get::<i64, _>("vip")? != 0,
                attributes: parse_attributes(&r.try_get::<String, _>("attributes")?),
            },
            None => Profile::default(),
        })
    }

    /// Changes a customer: `vip`, attributes (merged; an empty value removes one) and the
    /// display name. False when there is no such customer.
    pub async fn update_customer(
        &self,
        id: CustomerId,
        display_name: Option<&str>,
        vip: Option<bool>,
        attributes: Option<&BTreeMap<String, String>>,
    ) -> Result<bool, StoreError> {
        let mut profile = self.customer_profile(id).await?;
        if let Some(v) = vip {
            profile.vip = v;
        }
        for (k, v) in attributes.into_iter().flatten() {
            if v.is_empty() {
                profile.attributes.remove(k);
            } else {
                profile.attributes.insert(k.clone(), v.clone());
            }
        }
        let attrs = serde_json::to_string(&profile.attributes).unwrap_or_else(|_| "{}".into());
        let done = sqlx::query(
            "UPDATE customers SET vip = $1, attributes = $2,
                                  display_name = COALESCE($3, display_name)
             WHERE id = $4",
        )
        .bind(i64::from(profile.vip))
        .bind(attrs)
        .bind(display_name)
        .bind(id.to_string())
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Creates a customer ahead of any contact, with identities no customer holds yet
    /// ([`StoreError::AlreadyExists`] names the first one taken).
    pub async fn create_customer(
        &self,
        display_name: Option<&str>,
        identities: &[Identity],
        profile: &Profile,
    ) -> Result<CustomerId, StoreError> {
        let id = CustomerId::new();
        let now = crate::clock::unix_ms();
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO customers (id, display_name, created_ms, vip, attributes)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id.to_string())
        .bind(display_name)
        .bind(now)
        .bind(i64::from(profile.vip))
        .bind(serde_json::to_string(&profile.attributes).unwrap_or_else(|_| "{}".into()))
        .execute(&mut *tx)
        .await?;
        for i in identities {
            let done = sqlx::query(
                "INSERT INTO customer_identities (kind, value, customer_id, created_ms)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (kind, value) DO NOTHING",
            )
            .bind(i.kind.as_str())
            .bind(&i.value)
            .bind(id.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                tx.rollback().await?;
                return Err(StoreError::AlreadyExists(format!(
                    "{} {}",
                    i.kind.as_str(),
                    i.value
                )));
            }
        }
        tx.commit().await?;
        Ok(id)
    }

    /// Every identity of a customer with a profile (VIP or attributes), for the calls' copy.
    pub async fn customer_profiles(&self) -> Result<Vec<(Identity, Profile)>, StoreError> {
        let rows = sqlx::query(
            "SELECT i.kind, i.value, c.vip, c.attributes
             FROM customers c JOIN customer_identities i ON i.customer_id = c.id
             WHERE c.vip <> 0 OR c.attributes <> '{}'",
        )
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let kind: String = r.try_get("kind")?;
            let Some(kind) = IdentityKind::parse(&kind) else {
                continue;
            };
            out.push((
                Identity {
                    kind,
                    value: r.try_get("value")?,
                },
                Profile {
                    vip: r.try_get::<i64, _>("vip")? != 0,
                    attributes: parse_attributes(&r.try_get::<String, _>("attributes")?),
                },
            ));
        }
        Ok(out)
    }
}
