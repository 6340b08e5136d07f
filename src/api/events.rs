//! `GET /v1/events` (issue 5): the durable event log, as a JSON page or, with a WebSocket
//! upgrade, as a live stream that resumes with `?since=SEQ` and loses or repeats nothing.
//!
//! The stream is gap-free and duplicate-free because it subscribes to the store's broadcast
//! of committed events *before* reading the table: the table covers everything up to the
//! newest seq, the broadcast everything after, and anything seen twice is dropped by seq
//! (`seq <= last`). A subscriber that falls behind the broadcast (`Lagged`) goes back to the
//! table from the last seq it passed. Filters run on the server; a client that cannot take
//! frames for [`SEND_TIMEOUT`] is closed with a reason naming the `since` to resume from.

use std::time::Duration;

use axum::Json;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Extension, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::ReadKey;
use super::webhooks::WebhookDispatcher;
use super::{ApiError, ApiQuery, ApiState, Problem};
use crate::store::{CallId, EventFilter, EventRecord, SessionId, Store};

/// Most events in one page.
pub const MAX_PAGE: u32 = 1000;
/// Events in a page when `limit` is not given.
pub const DEFAULT_PAGE: u32 = 100;
/// Events read from the table at a time while a WebSocket catches up.
const CATCH_UP_PAGE: u32 = 500;
/// A WebSocket ping goes out this often.
pub const PING_INTERVAL: Duration = Duration::from_secs(20);
/// A WebSocket frame the client does not take within this time closes the stream.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Close code for a client that cannot keep up (RFC 6455 §7.4.2: private use).
pub const CLOSE_TOO_SLOW: u16 = 4008;

/// One event of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    /// Position in the log: one global, gap-free sequence; the idempotency key.
    pub seq: i64,
    /// Dotted type: `call.created`, `call.ended`, `registration.added`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// When it happened (RFC 3339, UTC, milliseconds).
    #[schema(format = DateTime, example = "2025-01-31T12:00:00.123Z")]
    pub time: String,
    /// The session it belongs to, if any.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub session_id: Option<SessionId>,
    /// The call it belongs to, if any.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub call_id: Option<CallId>,
    /// Type-specific details.
    pub data: serde_json::Value,
}

/// A page of events.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventPage {
    /// Matching events, oldest first.
    pub events: Vec<Event>,
    /// Pass as `since` to read on (no event at or before it is matching and unread).
    pub next_since: i64,
}

/// Query of `GET /v1/events`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Only events with `seq` greater than this. Default: 0 for a page, "from now on" for a
    /// WebSocket.
    #[param(minimum = 0)]
    pub since: Option<i64>,
    /// Comma-separated types; `call.*` matches every `call.` type, `*` every type.
    #[serde(rename = "type")]
    #[param(rename = "type", example = "call.*,dtmf.received")]
    pub types: Option<String>,
    /// Only this session's events.
    #[param(value_type = Option<String>, format = Uuid)]
    pub session_id: Option<String>,
    /// Most events in the page (1-1000, default 100); ignored by the WebSocket.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

impl From<EventRecord> for Event {
    fn from(e: EventRecord) -> Event {
        Event {
            seq: e.seq,
            kind: e.kind,
            time: rfc3339_ms(e.at_ms),
            session_id: e.session_id,
            call_id: e.call_id,
            data: e.data,
        }
    }
}

impl EventsQuery {
    /// The filter this query asks for.
    pub fn filter(&self) -> Result<EventFilter, ApiError> {
        let mut types = Vec::new();
        if let Some(list) = &self.types {
            for t in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                EventFilter::check_type(t).map_err(ApiError::bad_request)?;
                types.push(t.to_owned());
            }
            if types.len() > crate::store::MAX_EVENT_TYPES {
                return Err(ApiError::bad_request("too many event types"));
            }
        }
        let session_id = match &self.session_id {
            Some(s) => Some(
                s.parse::<SessionId>()
                    .map_err(|_| ApiError::bad_request("session_id must be a UUID"))?,
            ),
            None => None,
        };
        Ok(EventFilter { types, session_id })
    }
}

/// `at_ms` (Unix ms) as RFC 3339 UTC with milliseconds.
pub fn rfc3339_ms(at_ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(at_ms) {
        Ok(t) => t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        Err(_) => "1970-01-01T00:00:00.000Z".to_owned(),
    }
}

/// This module's routes.
pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(events))
}

/// The event log: a page of events, or a live WebSocket stream.
///
/// Without a WebSocket upgrade, answers a JSON page of the events after `since`.
/// With `Connection: Upgrade` / `Upgrade: websocket`, answers `101 Switching Protocols` and
/// sends each matching event as one JSON text frame, in `seq` order, from `since` (default:
/// from now on) and then live. Nothing is lost or repeated: after a disconnect, reconnect with
/// `since=<last seq received>`. The server pings every 20 s; a client that does not take
/// frames for 10 s is closed with code 4008 and a reason naming the `since` to resume from;
/// at shutdown the stream closes with 1001.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    security(("api_key" = ["read"])),
    params(EventsQuery),
    responses(
        (status = 200, description = "A page of events (no upgrade)", body = EventPage),
        (status = 101, description = "Switched to a WebSocket: each text frame is one `Event`"),
        (status = 400, description = "Bad query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn events(
    _key: ReadKey,
    State(state): State<ApiState>,
    dispatcher: Option<Extension<WebhookDispatcher>>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<EventsQuery>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let filter = query.filter()?;
    if let Some(since) = query.since
        && since < 0
    {
        return Err(ApiError::bad_request("since must be 0 or more"));
    }
    let wants_ws = headers
        .get(axum::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !wants_ws {
        let limit = query.limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(ApiError::bad_request(format!(
                "limit must be 1 to {MAX_PAGE}"
            )));
        }
        let (records, next_since) = state
            .store
            .events_matching(query.since.unwrap_or(0), &filter, limit)
            .await?;
        let page = EventPage {
            events: records.into_iter().map(Event::from).collect(),
            next_since,
        };
        return Ok(Json(page).into_response());
    }
    let upgrade = upgrade.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let stop = dispatcher
        .map(|Extension(d)| d.stop_token())
        .unwrap_or_default();
    let store = state.store.clone();
    // Subscribe before the upgrade completes, so nothing committed from here on is missed.
    let rx = store.subscribe_events();
    let since = match query.since {
        Some(s) => s,
        None => store.latest_event_seq().await?,
    };
    Ok(upgrade
        .on_upgrade(move |socket| async move {
            let mut stream = Stream {
                socket,
                store,
                filter,
                last: since,
            };
            let end = stream.run(rx, stop).await;
            stream.close(end).await;
        })
        .into_response())
}

/// Why a stream ended.
#[derive(Debug)]
enum End {
    /// The client closed or went away.
    Client,
    /// The client did not take a frame in time.
    TooSlow,
    /// The server is stopping.
    Shutdown,
    /// Reading the log failed.
    Store,
}

/// One WebSocket subscriber.
struct Stream {
    socket: WebSocket,
    store: Store,
    filter: EventFilter,
    /// The last seq passed (sent, or skipped by the filter).
    last: i64,
}

impl Stream {
    async fn run(
        &mut self,
        mut rx: tokio::sync::broadcast::Receiver<EventRecord>,
        stop: tokio_util::sync::CancellationToken,
    ) -> End {
        if let Err(end) = self.catch_up().await {
            return end;
        }
        let mut ping =
            tokio::time::interval_at(crate::clock::tokio_now() + PING_INTERVAL, PING_INTERVAL);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return End::Shutdown,
                received = rx.recv() => match received {
                    Ok(e) => {
                        if e.seq <= self.last {
                            continue;
                        }
                        if let Err(end) = self.pass(e).await {
                            return end;
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        tracing::debug!(missed = n, last = self.last, "event stream lagged; reading the log");
                        if let Err(end) = self.catch_up().await {
                            return end;
                        }
                    }
                    Err(RecvError::Closed) => return End::Shutdown,
                },
                _ = ping.tick() => {
                    if let Err(end) = self.send(Message::Ping(Default::default())).await {
                        return end;
                    }
                }
                msg = self.socket.recv() => match msg {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return End::Client,
                    Some(Ok(_)) => {} // pongs and anything else the client says
                },
            }
        }
    }

    /// Sends every matching event after `last` from the table, up to the newest.
    async fn catch_up(&mut self) -> Result<(), End> {
        loop {
            let (page, next) = self
                .store
                .events_matching(self.last, &self.filter, CATCH_UP_PAGE)
                .await
                .map_err(|error| {
                    tracing::warn!(%error, "event stream cannot read the log");
                    End::Store
                })?;
            let full = page.len() == CATCH_UP_PAGE as usize;
            for e in page {
                self.pass(e).await?;
            }
            self.last = self.last.max(next);
            if !full {
                return Ok(());
            }
        }
    }

    /// Sends `e` if it matches; either way it is passed.
    async fn pass(&mut self, e: EventRecord) -> Result<(), End> {
        let seq = e.seq;
        if self.filter.matches(&e) {
            let json = serde_json::to_string(&Event::from(e)).map_err(|_| End::Store)?;
            self.send(Message::Text(json.into())).await?;
        }
        self.last = seq;
        Ok(())
    }

    async fn send(&mut self, msg: Message) -> Result<(), End> {
        match tokio::time::timeout(SEND_TIMEOUT, self.socket.send(msg)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::Client),
            Err(_) => Err(End::TooSlow),
        }
    }

    async fn close(mut self, end: End) {
        let (code, reason) = match end {
            End::Client => return,
            End::TooSlow => (
                CLOSE_TOO_SLOW,
                format!("too slow: reconnect with since={}", self.last),
            ),
            End::Shutdown => (
                close_code::AWAY,
                format!("server stopping: reconnect with since={}", self.last),
            ),
            End::Store => (
                close_code::ERROR,
                format!("server error: reconnect with since={}", self.last),
            ),
        };
        tracing::debug!(?end, last = self.last, "closing event stream");
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            self.socket.send(Message::Close(Some(frame))),
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_738_324_800_123), "2025-01-31T12:00:00.123Z");
    }

    #[test]
    fn type_lists_are_split_and_checked() {
        let q = EventsQuery {
            types: Some("call.*, dtmf.received,".into()),
            ..Default::default()
        };
        assert_eq!(
            q.filter().expect("valid").types,
            vec!["call.*".to_owned(), "dtmf.received".to_owned()]
        );
        let bad = EventsQuery {
            types: Some("call.*,DROP TABLE".into()),
            ..Default::default()
        };
        assert!(bad.filter().is_err());
        let bad_session = EventsQuery {
            session_id: Some("nope".into()),
            ..Default::default()
        };
        assert!(bad_session.filter().is_err());
    }
}
