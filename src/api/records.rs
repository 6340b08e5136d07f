//! `/v1` records (issue 5).

use utoipa_axum::router::OpenApiRouter;

use super::ApiState;

/// This module's routes.
pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
}
