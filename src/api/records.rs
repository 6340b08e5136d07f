//! `/v1/call-records` (issue 5): call records with their legs and media quality, filtered and
//! paged, and the same list as CSV (RFC 4180).
//!
//! Also the helpers the resource modules share: id and time parsing, and the page limit. Lists are newest
//! first; `limit` (1–500, default 50) bounds a page and `before=<id of the last item>` (given
//! back as `next_before` when the page is full) fetches the next one.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::ReadKey;
use super::{ApiError, ApiQuery, ApiState, Problem};
use crate::store::{CallFilter, CallId, CallRecord, Direction, HangupBy, LegRecord, SessionId};

/// Default page size of every list.
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest page of every list.
pub const MAX_LIMIT: u32 = 500;
/// Most rows one CSV export holds.
pub const MAX_CSV_ROWS: u32 = 100_000;

/// Call direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CallDirection {
    Inbound,
    Outbound,
    Internal,
}

/// Filters of the call-record list and export.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallRecordQuery {
    /// Exact caller (as stored: number or URI).
    pub caller: Option<String>,
    /// Exact callee.
    pub callee: Option<String>,
    pub direction: Option<CallDirection>,
    /// Exact hangup cause (`normal_clearing`, `no_answer`, `busy`, …).
    pub hangup_cause: Option<String>,
    /// Calls started at or after: Unix milliseconds or an RFC 3339 time.
    pub since: Option<String>,
    /// Calls started before: Unix milliseconds or an RFC 3339 time.
    pub until: Option<String>,
    /// Only the calls of this session.
    pub session_id: Option<Uuid>,
    /// Page cursor: only calls older than this call id (`next_before` of the previous page).
    pub before: Option<Uuid>,
    /// Page size, 1–500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// Filters of the CSV export: those of the list, with a larger `limit` and no cursor.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallRecordCsvQuery {
    /// Exact caller (as stored: number or URI).
    pub caller: Option<String>,
    /// Exact callee.
    pub callee: Option<String>,
    pub direction: Option<CallDirection>,
    /// Exact hangup cause (`normal_clearing`, `no_answer`, `busy`, …).
    pub hangup_cause: Option<String>,
    /// Calls started at or after: Unix milliseconds or an RFC 3339 time.
    pub since: Option<String>,
    /// Calls started before: Unix milliseconds or an RFC 3339 time.
    pub until: Option<String>,
    /// Only the calls of this session.
    pub session_id: Option<Uuid>,
    /// Most rows, 1–100000 (default: every matching row, up to 100000).
    #[param(minimum = 1, maximum = 100000)]
    pub limit: Option<u32>,
}

/// A call record.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CallRecordView {
    pub id: Uuid,
    pub session_id: Uuid,
    /// Call-ID of the inbound SIP dialog.
    pub sip_call_id: String,
    pub direction: CallDirection,
    pub caller: String,
    pub callee: String,
    /// Start, Unix ms.
    pub started_ms: i64,
    /// Answer, Unix ms.
    pub answered_ms: Option<i64>,
    /// End, Unix ms.
    pub ended_ms: Option<i64>,
    /// Seconds from start to end.
    pub duration_s: Option<i64>,
    /// Seconds from answer to end (0 if unanswered).
    pub billable_s: Option<i64>,
    pub hangup_cause: Option<String>,
    /// `caller`, `callee` or `system`.
    pub hangup_by: Option<String>,
    /// Final SIP status code.
    pub final_code: Option<u16>,
}

/// A call record with its legs.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CallRecordDetail {
    #[serde(flatten)]
    pub call: CallRecordView,
    /// The call's legs, oldest first.
    pub legs: Vec<LegView>,
}

/// One leg of a call.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LegView {
    pub id: Uuid,
    /// `caller`, `callee` or `monitor`.
    pub role: String,
    /// `sip`, `local`, `conference`, `queue` or `webrtc`.
    pub kind: String,
    /// The SIP Call-ID (SIP legs only).
    pub sip_call_id: Option<String>,
    /// The remote party's URI (SIP legs only).
    pub remote_uri: Option<String>,
    /// Start, Unix ms.
    pub started_ms: i64,
    pub answered_ms: Option<i64>,
    pub ended_ms: Option<i64>,
    pub final_code: Option<u16>,
    /// Media quality, once the leg's media ended.
    pub media: Option<LegMediaView>,
}

/// A leg's media statistics (RFC 3550) and its estimated MOS (ITU-T G.107 E-model).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LegMediaView {
    pub codec: Option<String>,
    pub packets_received: i64,
    pub packets_sent: i64,
    pub packets_lost: i64,
    /// Lost packets in percent of those expected (received + lost).
    pub loss_percent: f64,
    /// Interarrival jitter, ms.
    pub jitter_ms: f64,
    /// Round-trip time, ms.
    pub rtt_ms: Option<f64>,
    /// Mean opinion score, 1–4.5.
    pub mos: Option<f64>,
}

/// A page of call records, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CallRecordPage {
    pub items: Vec<CallRecordView>,
    /// Pass as `before` for the next page; absent on the last page.
    pub next_before: Option<Uuid>,
}

impl From<Direction> for CallDirection {
    fn from(d: Direction) -> CallDirection {
        match d {
            Direction::Inbound => CallDirection::Inbound,
            Direction::Outbound => CallDirection::Outbound,
            Direction::Internal => CallDirection::Internal,
        }
    }
}

impl From<CallDirection> for Direction {
    fn from(d: CallDirection) -> Direction {
        match d {
            CallDirection::Inbound => Direction::Inbound,
            CallDirection::Outbound => Direction::Outbound,
            CallDirection::Internal => Direction::Internal,
        }
    }
}

impl From<&CallRecord> for CallRecordView {
    fn from(c: &CallRecord) -> CallRecordView {
        CallRecordView {
            id: c.id.0,
            session_id: c.session_id.0,
            sip_call_id: c.sip_call_id.clone(),
            direction: c.direction.into(),
            caller: c.caller.clone(),
            callee: c.callee.clone(),
            started_ms: c.started_ms,
            answered_ms: c.answered_ms,
            ended_ms: c.ended_ms,
            duration_s: c.duration_s,
            billable_s: c.billable_s,
            hangup_cause: c.hangup_cause.clone(),
            hangup_by: c.hangup_by.map(|b: HangupBy| b.as_str().to_owned()),
            final_code: c.final_code,
        }
    }
}

impl From<&LegRecord> for LegView {
    fn from(l: &LegRecord) -> LegView {
        LegView {
            id: l.id.0,
            role: l.role.as_str().to_owned(),
            kind: l.kind.as_str().to_owned(),
            sip_call_id: l.sip_call_id.clone(),
            remote_uri: l.remote_uri.clone(),
            started_ms: l.started_ms,
            answered_ms: l.answered_ms,
            ended_ms: l.ended_ms,
            final_code: l.final_code,
            media: l.media.as_ref().map(|m| {
                let expected = m.packets_received.saturating_add(m.packets_lost);
                LegMediaView {
                    codec: m.codec.clone(),
                    packets_received: m.packets_received,
                    packets_sent: m.packets_sent,
                    packets_lost: m.packets_lost,
                    loss_percent: if expected > 0 {
                        m.packets_lost.max(0) as f64 * 100.0 / expected as f64
                    } else {
                        0.0
                    },
                    jitter_ms: m.jitter_ms,
                    rtt_ms: m.rtt_ms,
                    mos: m.mos,
                }
            }),
        }
    }
}

impl CallRecordQuery {
    fn filter(&self, limit: u32) -> Result<CallFilter, ApiError> {
        Ok(CallFilter {
            caller: self.caller.clone(),
            callee: self.callee.clone(),
            direction: self.direction.map(Direction::from),
            hangup_cause: self.hangup_cause.clone(),
            since_ms: parse_time("since", self.since.as_deref())?,
            until_ms: parse_time("until", self.until.as_deref())?,
            session_id: self.session_id.map(SessionId),
            before: self.before.map(CallId),
            limit,
        })
    }
}

/// This module's routes.
pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_call_records))
        .routes(routes!(export_call_records))
        .routes(routes!(get_call_record))
}

/// Parses an id path or query value; a malformed one is a 400.
pub fn parse_uuid(what: &str, text: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(text).map_err(|_| ApiError::bad_request(format!("{what} must be a UUID")))
}

/// Parses `since`/`until`: Unix milliseconds or an RFC 3339 time.
pub fn parse_time(name: &str, text: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(text) = text else {
        return Ok(None);
    };
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(Some(ms));
    }
    text.parse::<jiff::Timestamp>()
        .map(|t| Some(t.as_millisecond()))
        .map_err(|_| {
            ApiError::bad_request(format!(
                "{name} must be Unix milliseconds or an RFC 3339 time"
            ))
        })
}

/// The page size asked for: default [`DEFAULT_LIMIT`], 1..=`max` or a 400.
pub fn page_limit(limit: Option<u32>, max: u32) -> Result<u32, ApiError> {
    match limit {
        None => Ok(DEFAULT_LIMIT.min(max)),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::bad_request(format!(
            "limit must be between 1 and {max}"
        ))),
    }
}

/// The cursor for the next page: the last item's id when the page is full.
pub fn next_before<T>(items: &[T], limit: u32, id: impl Fn(&T) -> Uuid) -> Option<Uuid> {
    if items.len() as u64 >= u64::from(limit) {
        items.last().map(id)
    } else {
        None
    }
}

/// A call record with its legs, read from the store.
pub async fn call_detail(
    state: &ApiState,
    call: &CallRecord,
) -> Result<CallRecordDetail, ApiError> {
    let legs = state.store.legs_for_call(call.id).await?;
    Ok(CallRecordDetail {
        call: call.into(),
        legs: legs.iter().map(LegView::from).collect(),
    })
}

/// List call records.
#[utoipa::path(
    get,
    path = "/v1/call-records",
    tag = "records",
    security(("api_key" = ["read"])),
    params(CallRecordQuery),
    responses(
        (status = 200, description = "Call records, newest first", body = CallRecordPage),
        (status = 400, description = "A filter does not parse", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_call_records(
    _: ReadKey,
    State(s): State<ApiState>,
    ApiQuery(q): ApiQuery<CallRecordQuery>,
) -> Result<Json<CallRecordPage>, ApiError> {
    let limit = page_limit(q.limit, MAX_LIMIT)?;
    let calls = s.store.list_calls(&q.filter(limit)?).await?;
    Ok(Json(CallRecordPage {
        next_before: next_before(&calls, limit, |c| c.id.0),
        items: calls.iter().map(CallRecordView::from).collect(),
    }))
}

/// Export call records as CSV (RFC 4180, with a header row), newest first.
#[utoipa::path(
    get,
    path = "/v1/call-records.csv",
    tag = "records",
    security(("api_key" = ["read"])),
    params(CallRecordCsvQuery),
    responses(
        (status = 200, description = "CSV with a header row; fields quoted per RFC 4180", body = String, content_type = "text/csv"),
        (status = 400, description = "A filter does not parse", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn export_call_records(
    _: ReadKey,
    State(s): State<ApiState>,
    ApiQuery(q): ApiQuery<CallRecordCsvQuery>,
) -> Result<Response, ApiError> {
    let wanted = match q.limit {
        None => MAX_CSV_ROWS,
        Some(n) => page_limit(Some(n), MAX_CSV_ROWS)?,
    };
    let list = CallRecordQuery {
        caller: q.caller,
        callee: q.callee,
        direction: q.direction,
        hangup_cause: q.hangup_cause,
        since: q.since,
        until: q.until,
        session_id: q.session_id,
        before: None,
        limit: None,
    };
    let mut filter = list.filter(MAX_LIMIT)?;
    let mut out = String::new();
    csv_row(&mut out, CSV_HEADER.iter().map(|h| (*h).to_owned()));
    let mut written = 0u32;
    while written < wanted {
        filter.limit = MAX_LIMIT.min(wanted - written);
        let page = s.store.list_calls(&filter).await?;
        for c in &page {
            csv_row(&mut out, csv_fields(c));
        }
        written += page.len() as u32;
        match page.last() {
            Some(last) if page.len() as u32 == filter.limit => filter.before = Some(last.id),
            _ => break,
        }
    }
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "text/csv; charset=utf-8; header=present",
            ),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"call-records.csv\"",
            ),
        ],
        out,
    )
        .into_response())
}

/// One call record with its legs (codec, packets, loss, jitter, MOS).
#[utoipa::path(
    get,
    path = "/v1/call-records/{id}",
    tag = "records",
    security(("api_key" = ["read"])),
    params(("id" = Uuid, Path, description = "Call id")),
    responses(
        (status = 200, description = "The call record", body = CallRecordDetail),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such call", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_call_record(
    _: ReadKey,
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<CallRecordDetail>, ApiError> {
    let id = CallId(parse_uuid("call id", &id)?);
    let call = s
        .store
        .get_call(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("call {id} not found")))?;
    Ok(Json(call_detail(&s, &call).await?))
}

const CSV_HEADER: [&str; 14] = [
    "id",
    "session_id",
    "sip_call_id",
    "direction",
    "caller",
    "callee",
    "started_ms",
    "answered_ms",
    "ended_ms",
    "duration_s",
    "billable_s",
    "hangup_cause",
    "hangup_by",
    "final_code",
];

fn csv_fields(c: &CallRecord) -> impl Iterator<Item = String> {
    fn opt<T: ToString>(v: Option<T>) -> String {
        v.map(|v| v.to_string()).unwrap_or_default()
    }
    [
        c.id.to_string(),
        c.session_id.to_string(),
        c.sip_call_id.clone(),
        c.direction.as_str().to_owned(),
        c.caller.clone(),
        c.callee.clone(),
        c.started_ms.to_string(),
        opt(c.answered_ms),
        opt(c.ended_ms),
        opt(c.duration_s),
        opt(c.billable_s),
        opt(c.hangup_cause.as_deref()),
        opt(c.hangup_by.map(HangupBy::as_str)),
        opt(c.final_code),
    ]
    .into_iter()
}

/// Appends one CSV record (RFC 4180 §2): fields holding a comma, quote, CR or LF are quoted,
/// quotes doubled; CRLF ends the line.
fn csv_row(out: &mut String, fields: impl Iterator<Item = String>) {
    for (i, f) in fields.enumerate() {
        if i > 0 {
            out.push(',');
        }
        if f.contains([',', '"', '\r', '\n']) {
            out.push('"');
            out.push_str(&f.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(&f);
        }
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_what_rfc_4180_requires() {
        let mut out = String::new();
        csv_row(
            &mut out,
            ["plain", "a,b", "say \"hi\"", "two\nlines", ""]
                .iter()
                .map(|s| (*s).to_owned()),
        );
        assert_eq!(out, "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",\r\n");
    }

    #[test]
    fn times_are_unix_ms_or_rfc_3339() {
        assert_eq!(
            parse_time("since", Some("1700000000000")).ok(),
            Some(Some(1_700_000_000_000))
        );
        assert_eq!(
            parse_time("since", Some("2023-11-14T22:13:20Z")).ok(),
            Some(Some(1_700_000_000_000))
        );
        assert!(parse_time("since", Some("yesterday")).is_err());
        assert_eq!(parse_time("since", None).ok(), Some(None));
    }

    #[test]
    fn limits_default_to_50_and_refuse_out_of_range() {
        assert_eq!(page_limit(None, MAX_LIMIT).ok(), Some(50));
        assert_eq!(page_limit(Some(500), MAX_LIMIT).ok(), Some(500));
        assert!(page_limit(Some(0), MAX_LIMIT).is_err());
        assert!(page_limit(Some(501), MAX_LIMIT).is_err());
    }
}
