//! HTTP API (axum): `/healthz` and `/metrics` (Prometheus text format). Errors are RFC 9457
//! problem JSON.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;

/// What the handlers need.
#[derive(Clone)]
pub struct ApiState {
    pub metrics: PrometheusHandle,
    pub calls: crate::session::CallRegistry,
    pub draining: Arc<dyn Fn() -> bool + Send + Sync>,
}

/// The router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(state)
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

/// An RFC 9457 problem response.
pub fn problem(status: StatusCode, title: &str, detail: &str) -> Response {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}
