//! Registrar bindings (RFC 3261 §10.3): one row per (extension, Contact URI), with the source
//! the REGISTER came from so requests reach UAs behind NAT (RFC 3581 style). The registrar keeps
//! them in memory; this table lets them survive a restart.

use std::net::SocketAddr;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::{Store, StoreError};

/// One registered contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The address-of-record's user part (extension).
    pub ext: String,
    /// The Contact URI as registered.
    pub contact_uri: String,
    /// Transport the REGISTER came on, as its Via token (`UDP`, `TCP`); the registrar reads
    /// it back (`sip::transport::Transport::from_token`).
    pub transport: String,
    /// Address the REGISTER came from.
    pub source_addr: SocketAddr,
    /// Call-ID of the REGISTER (RFC 3261 §10.3 step 7).
    pub call_id: String,
    /// CSeq number of the REGISTER.
    pub cseq: u32,
    /// Expiry, Unix ms.
    pub expires_at_ms: i64,
    /// User-Agent header, if any.
    pub user_agent: Option<String>,
    /// Contact `q` in thousandths (RFC 3261 §20.10 qvalue has at most 3 decimals).
    pub q: Option<u16>,
    /// When this binding was last refreshed, Unix ms.
    pub updated_ms: i64,
}

impl Store {
    /// Unexpired bindings (`expires_at_ms > now_ms`). Rows that do not decode (e.g. a bad
    /// source address) are skipped with a warning.
    pub async fn load_bindings(&self, now_ms: i64) -> Result<Vec<Binding>, StoreError> {
        let rows = sqlx::query(
            "SELECT ext, contact_uri, transport, source_addr, call_id, cseq, expires_at_ms,
                    user_agent, q_milli, updated_ms
             FROM registrations WHERE expires_at_ms > $1 ORDER BY ext, contact_uri",
        )
        .bind(now_ms)
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            match binding_from_row(row) {
                Ok(b) => out.push(b),
                Err(e) => tracing::warn!(error = %e, "skipping undecodable binding"),
            }
        }
        Ok(out)
    }
}

pub(super) async fn upsert(conn: &mut AnyConnection, b: &Binding) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO registrations (id, ext, contact_uri, transport, source_addr, call_id, cseq,
                                    expires_at_ms, user_agent, q_milli, updated_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (ext, contact_uri) DO UPDATE SET
            transport = excluded.transport, source_addr = excluded.source_addr,
            call_id = excluded.call_id, cseq = excluded.cseq,
            expires_at_ms = excluded.expires_at_ms, user_agent = excluded.user_agent,
            q_milli = excluded.q_milli, updated_ms = excluded.updated_ms",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(&b.ext)
    .bind(&b.contact_uri)
    .bind(&b.transport)
    .bind(b.source_addr.to_string())
    .bind(&b.call_id)
    .bind(i64::from(b.cseq))
    .bind(b.expires_at_ms)
    .bind(b.user_agent.as_deref())
    .bind(b.q.map(i64::from))
    .bind(b.updated_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) async fn remove(
    conn: &mut AnyConnection,
    ext: &str,
    contact_uri: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM registrations WHERE ext = $1 AND contact_uri = $2")
        .bind(ext)
        .bind(contact_uri)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub(super) async fn remove_all(conn: &mut AnyConnection, ext: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM registrations WHERE ext = $1")
        .bind(ext)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub(super) async fn prune(conn: &mut AnyConnection, now_ms: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM registrations WHERE expires_at_ms <= $1")
        .bind(now_ms)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

fn binding_from_row(row: &AnyRow) -> Result<Binding, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        table: "registrations",
        reason,
    };
    let addr: String = row.try_get("source_addr")?;
    let addr: SocketAddr = addr
        .parse()
        .map_err(|_| corrupt(format!("bad source address {addr:?}")))?;
    let cseq: i64 = row.try_get("cseq")?;
    let q: Option<i64> = row.try_get("q_milli")?;
    Ok(Binding {
        ext: row.try_get("ext")?,
        contact_uri: row.try_get("contact_uri")?,
        transport: row.try_get("transport")?,
        source_addr: addr,
        call_id: row.try_get("call_id")?,
        cseq: u32::try_from(cseq).map_err(|_| corrupt(format!("bad cseq {cseq}")))?,
        expires_at_ms: row.try_get("expires_at_ms")?,
        user_agent: row.try_get("user_agent")?,
        q: q.map(|q| u16::try_from(q).map_err(|_| corrupt(format!("bad q {q}"))))
            .transpose()?,
        updated_ms: row.try_get("updated_ms")?,
    })
}
