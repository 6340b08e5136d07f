//! HTTP API (axum): `/healthz` and `/metrics` (no key), and the call-control API under `/v1`
//! (issue 5): API keys with scopes ([`auth`]), RFC 9457 problem JSON for every error
//! ([`problem`]), a rate limit per key, a request size limit, CORS only when configured, and
//! an OpenAPI 3.1 document generated from the handlers (`/v1/openapi.json`, utoipa).
//!
//! Each resource lives in its own module and contributes its routes with `routes()`; a
//! handler's `#[utoipa::path]` names its path, parameters, responses and the scope it needs.

pub mod agents;
pub mod auth;
pub mod calls;
pub mod channels;
pub mod conversations;
pub mod customers;
pub mod docs;
pub mod events;
pub mod keys;
pub mod problem;
pub mod recordings;
pub mod records;
pub mod registrations;
pub mod sessions;
pub mod timeline;
pub mod users;
pub mod webchat;
pub mod webhooks;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use problem::{ApiError, ApiQuery, Problem, ProblemJson, problem};

/// What the handlers need.
#[derive(Clone)]
pub struct ApiState {
    pub metrics: PrometheusHandle,
    pub calls: crate::session::CallRegistry,
    pub draining: Arc<dyn Fn() -> bool + Send + Sync>,
    pub store: crate::store::Store,
    pub registrar: Arc<crate::sip::registrar::Registrar>,
    /// Per-key request rate.
    pub limiter: Arc<auth::KeyLimiter>,
    /// Recordings live under `<data_dir>/recordings/`.
    pub data_dir: std::path::PathBuf,
    /// `[http]` settings (CORS, limits).
    pub http: crate::config::HttpConfig,
    /// Conversations on text channels.
    pub chat: crate::chat::ChatService,
    /// `[[trunk]]`s: where calls to phone numbers leave.
    pub trunks: Arc<Vec<crate::session::trunks::Trunk>>,
    /// Queues and agents.
    pub acd: crate::acd::service::Acd,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "switchboard call-control API",
        description = "Calls, sessions, recordings, call records, users and a durable event stream. Every request needs `Authorization: Bearer <API key>` (`switchboard apikey create`); errors are RFC 9457 problem JSON.",
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "calls", description = "Live calls and call control"),
        (name = "agents", description = "Agents, their presence, queues and their figures"),
        (name = "events", description = "The durable event log, its WebSocket stream and webhooks"),
        (name = "records", description = "Call records"),
        (name = "recordings", description = "Recordings and voicemails"),
        (name = "sessions", description = "Sessions and their timeline"),
        (name = "conversations", description = "Conversations on text channels (web chat, gateways) and the channels"),
        (name = "customers", description = "Customers and their identities"),
        (name = "users", description = "Extensions"),
        (name = "registrations", description = "SIP registrations"),
        (name = "keys", description = "API keys"),
        (name = "audit", description = "Who changed or deleted what"),
        (name = "docs", description = "This description of the API"),
    )
)]
struct ApiDoc;

/// Adds the bearer-key security scheme every `/v1` operation uses.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key (`sb_…`); its scope (read, control, admin) decides what it may do",
                    ))
                    .build(),
            ),
        );
    }
}

/// Every `/v1` route, with the OpenAPI document they make up.
pub fn v1() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(me))
        .routes(routes!(openapi_json))
        .routes(routes!(docs_page))
        .merge(keys::routes())
        .merge(calls::routes())
        .merge(events::routes())
        .merge(webhooks::routes())
        .merge(records::routes())
        .merge(recordings::routes())
        .merge(sessions::routes())
        .merge(channels::routes())
        .merge(conversations::routes())
        .merge(customers::routes())
        .merge(users::routes())
        .merge(registrations::routes())
        .merge(agents::routes())
}

/// The OpenAPI document (also served at `/v1/openapi.json`, and as HTML at `/v1/docs`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = v1().split_for_parts().1;
    docs::add_standard_responses(&mut doc);
    docs::add_event_schemas(&mut doc);
    doc
}

/// The router.
pub fn router(state: ApiState) -> Router {
    let (v1, _) = v1().split_for_parts();
    let max_body = state.http.max_body_bytes;
    // Every extractor takes at most `max_body`; attachment uploads read their body with their
    // own limit (`[chat] attachment_max_bytes`), so the hard cap is the larger of the two.
    let hard_cap = max_body.max(state.chat.files().max_bytes() + 1024);
    let v1 = v1
        .layer(DefaultBodyLimit::max(max_body))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(hard_cap))
        .layer(axum::middleware::map_response(problem::errors_as_problems));
    let v1 = match cors(&state.http.cors_origins) {
        Some(layer) => v1.layer(layer),
        None => v1,
    };
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .merge(
            webchat::routes()
                .layer(DefaultBodyLimit::max(webchat::MAX_BODY))
                .layer(tower_http::limit::RequestBodyLimitLayer::new(hard_cap)),
        )
        .merge(v1)
        .fallback(not_found)
        .with_state(state)
}

/// CORS for the configured origins; None (no CORS headers at all) when there are none.
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let list: Vec<header::HeaderValue> = origins
        .iter()
        .filter_map(|o| header::HeaderValue::from_str(o).ok())
        .collect();
    Some(
        tower_http::cors::CorsLayer::new()
            .allow_origin(list)
            .allow_methods(tower_http::cors::Any)
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]),
    )
}

/// Who a key is.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Me {
    /// The key's name.
    pub name: String,
    /// `read`, `control` or `admin`.
    pub scope: String,
    /// The key's public prefix.
    pub prefix: String,
}

/// The API key making the request.
#[utoipa::path(
    get,
    path = "/v1/me",
    tag = "keys",
    security(("api_key" = ["read"])),
    responses(
        (status = 200, description = "The key", body = Me),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn me(auth::ReadKey(caller): auth::ReadKey) -> Json<Me> {
    Json(Me {
        name: caller.key.name,
        scope: caller.key.scope.to_string(),
        prefix: caller.key.prefix,
    })
}

/// This OpenAPI 3.1 document.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "docs",
    security(("api_key" = ["read"])),
    responses(
        (status = 200, description = "The OpenAPI document", body = Object),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn openapi_json(_: auth::ReadKey) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        docs::generated().json.as_str(),
    )
        .into_response()
}

/// This API's description as one HTML page (no scripts, nothing fetched).
#[utoipa::path(
    get,
    path = "/v1/docs",
    tag = "docs",
    security(("api_key" = ["read"])),
    responses(
        (status = 200, description = "The API reference", body = String, content_type = "text/html"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn docs_page(_: auth::ReadKey) -> Response {
    axum::response::Html(docs::generated().html.as_str()).into_response()
}

async fn healthz(State(s): State<ApiState>) -> Response {
    if (s.draining)() {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "Draining",
            "the server is shutting down",
        );
    }
    let body = serde_json::json!({ "status": "ok", "active_calls": s.calls.active() });
    (StatusCode::OK, axum::Json(body)).into_response()
}

async fn metrics(State(s): State<ApiState>) -> Response {
    metrics::gauge!("switchboard_active_calls_now").set(s.calls.active() as f64);
    // The recorder counts its dropped frames as they happen; show the counter (and the open
    // recordings) even while nothing was dropped, so that a scrape can tell 0 from "unknown".
    let pool = crate::media::recorder::RecorderPool::global_if_started();
    metrics::counter!("switchboard_recorder_dropped_frames_total").increment(0);
    metrics::gauge!("switchboard_recordings_active")
        .set(pool.map_or(0, |p| p.active_recordings()) as f64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

async fn not_found() -> Response {
    problem(StatusCode::NOT_FOUND, "Not Found", "no such resource")
}
