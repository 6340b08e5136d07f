//! `/v1/registrations` (issue 5): the registrar's live bindings (RFC 3261 §10), read from its
//! memory (what calls are routed on), not from the database.

use crate::domain::Extension;
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::ReadKey;
use super::{ApiError, ApiQuery, ApiState, Problem};
use crate::sip::registrar::Location;

/// One registered contact.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RegistrationView {
    /// The extension.
    pub ext: String,
    /// The Contact URI as registered.
    pub contact: String,
    /// `UDP` or `TCP`: the flow the REGISTER came on, which requests to the contact use.
    pub transport: String,
    /// The address the REGISTER came from (`ip:port`).
    pub source: String,
    /// Expiry, Unix ms.
    pub expires_at_ms: i64,
    pub user_agent: Option<String>,
    /// Contact `q` (0–1), if given.
    pub q: Option<f64>,
}

/// The live registrations, by extension and contact.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RegistrationList {
    pub items: Vec<RegistrationView>,
}

/// Filter of the registration list.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RegistrationQuery {
    /// Only this extension's contacts.
    pub ext: Option<String>,
}

impl From<Location> for RegistrationView {
    fn from(l: Location) -> RegistrationView {
        RegistrationView {
            transport: l.source.transport.as_str().to_owned(),
            source: l.source.addr.to_string(),
            ext: l.ext.to_string(),
            contact: l.contact,
            expires_at_ms: l.expires_at_ms,
            user_agent: l.user_agent,
            q: l.q.map(|q| f64::from(q) / 1000.0),
        }
    }
}

/// This module's routes.
pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(list_registrations))
}

/// List live registrations, optionally of one extension.
#[utoipa::path(
    get,
    path = "/v1/registrations",
    tag = "registrations",
    security(("api_key" = ["read"])),
    params(RegistrationQuery),
    responses(
        (status = 200, description = "Unexpired bindings", body = RegistrationList),
        (status = 400, description = "A parameter does not parse", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_registrations(
    _: ReadKey,
    State(s): State<ApiState>,
    ApiQuery(q): ApiQuery<RegistrationQuery>,
) -> Result<Json<RegistrationList>, ApiError> {
    let locations = match &q.ext {
        Some(ext) => s.registrar.lookup(&Extension::new(ext.as_str())),
        None => s.registrar.all_locations(),
    };
    Ok(Json(RegistrationList {
        items: locations.into_iter().map(RegistrationView::from).collect(),
    }))
}
