//! `/v1/customers` (issue 5): a customer with its identities and sessions, and the search by
//! identity (phone number, email, SIP URI, chat id) that finds one. Identities are compared
//! exactly as stored (a phone number as the caller presented it, E.164 preferred).

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::{AdminKey, ReadKey};
use super::records::parse_uuid;
use super::sessions::SessionSummary;
use super::{ApiError, ApiQuery, ApiState, Problem, ProblemJson};
use crate::store::{Actor, CustomerId, CustomerRecord, IdentityKind};

/// One way to reach a customer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IdentityView {
    /// `phone`, `sip`, `email` or `chat`.
    pub kind: String,
    pub value: String,
}

/// A customer with its identities and sessions.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CustomerView {
    pub id: Uuid,
    pub display_name: Option<String>,
    /// First contact, Unix ms.
    pub created_ms: i64,
    pub identities: Vec<IdentityView>,
    /// Its sessions, oldest first.
    pub sessions: Vec<SessionSummary>,
    /// Set when this customer was merged into another: that one holds its identities and
    /// sessions now.
    pub merged_into: Option<Uuid>,
    /// Contacts whose identities named this customer and another one (never merged silently).
    pub conflicts: Vec<ConflictView>,
    /// Queued ahead of the others (`customer.vip` in flows).
    pub vip: bool,
    /// Free attributes (`customer.NAME` in flows).
    pub attributes: std::collections::BTreeMap<String, String>,
}

/// Changes to a customer.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerPatch {
    pub display_name: Option<String>,
    pub vip: Option<bool>,
    /// Merged into the customer's attributes; an empty value removes one. Names are
    /// `[A-Za-z0-9_]` (1-64), values at most 1024 bytes.
    pub attributes: Option<std::collections::BTreeMap<String, String>>,
}

/// One identity of a new customer.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewIdentity {
    /// `phone`, `email`, `chat` or `crm`.
    pub kind: String,
    pub value: String,
}

/// A customer created ahead of any contact.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCustomer {
    pub display_name: Option<String>,
    /// At least one; none may belong to a customer already.
    pub identities: Vec<NewIdentity>,
    #[serde(default)]
    pub vip: bool,
    #[serde(default)]
    pub attributes: std::collections::BTreeMap<String, String>,
}

/// A contact that named two customers.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConflictView {
    pub other_customer_id: Uuid,
    /// This customer's identity and the other's, seen together.
    pub identity: IdentityView,
    pub other_identity: IdentityView,
    /// When, Unix ms.
    pub created_ms: i64,
}

/// The customer to merge into this one, or to split off it again.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OtherCustomer {
    pub customer_id: Uuid,
}

/// The customers found.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CustomerList {
    pub items: Vec<CustomerView>,
}

/// Search by identity: exactly one of the parameters.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CustomerQuery {
    /// A phone number, exactly as stored (E.164 preferred).
    pub phone: Option<String>,
    /// An email address.
    pub email: Option<String>,
    /// A SIP URI.
    pub sip: Option<String>,
    /// A web chat visitor id or a gateway user id (`<channel>:<id>`).
    pub chat: Option<String>,
    /// The customer's id in an external CRM.
    pub crm: Option<String>,
}

/// This module's routes.
pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(search_customers, create_customer))
        .routes(routes!(get_customer, update_customer))
        .routes(routes!(customer_timeline))
        .routes(routes!(merge_customer))
        .routes(routes!(split_customer))
}

/// Everything that happened with a customer, across all their sessions and channels.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CustomerTimeline {
    pub customer_id: Uuid,
    /// In time order (at most 5000 entries, the oldest first); each names its session.
    pub timeline: Vec<super::timeline::TimelineEntry>,
}

/// A customer's timeline across all their sessions: calls, conversations and messages, IVR
/// inputs and attributes, recordings, in time order.
#[utoipa::path(
    get,
    path = "/v1/customers/{id}/timeline",
    tag = "customers",
    security(("api_key" = ["read"])),
    params(("id" = Uuid, Path, description = "Customer id")),
    responses(
        (status = 200, description = "The customer's timeline", body = CustomerTimeline),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such customer", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn customer_timeline(
    _: ReadKey,
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<CustomerTimeline>, ApiError> {
    let id = CustomerId(parse_uuid("id", &id)?);
    if s.store.get_customer(id).await?.is_none() {
        return Err(ApiError::not_found("customer not found"));
    }
    let mut timeline = Vec::new();
    for session in s.store.sessions_for_customer(id).await? {
        let calls = s.store.calls_for_session(session.id).await?;
        let recordings = s.store.recordings_for_session(session.id).await?;
        let events = s
            .store
            .events_for_session(session.id, super::sessions::MAX_TIMELINE_EVENTS)
            .await?;
        let conversations = super::timeline::session_conversations(&s, session.id).await?;
        timeline.extend(
            super::timeline::session_timeline(
                &s,
                session.id,
                (&calls, &recordings),
                &events,
                &conversations,
            )
            .await?,
        );
    }
    super::timeline::sort(&mut timeline);
    Ok(Json(CustomerTimeline {
        customer_id: id.0,
        timeline,
    }))
}

/// Find customers by identity: `?phone=` (any format of the number), `?email=`, `?sip=`,
/// `?chat=` or `?crm=` (exactly one).
#[utoipa::path(
    get,
    path = "/v1/customers",
    tag = "customers",
    security(("api_key" = ["read"])),
    params(CustomerQuery),
    responses(
        (status = 200, description = "The customers with that identity (none or one)", body = CustomerList),
        (status = 400, description = "Not exactly one identity given", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn search_customers(
    _: ReadKey,
    State(s): State<ApiState>,
    ApiQuery(q): ApiQuery<CustomerQuery>,
) -> Result<Json<CustomerList>, ApiError> {
    let given: Vec<(IdentityKind, String)> = [
        (IdentityKind::Phone, q.phone),
        (IdentityKind::Email, q.email),
        (IdentityKind::Sip, q.sip),
        (IdentityKind::Chat, q.chat),
        (IdentityKind::Crm, q.crm),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    let [(kind, value)] = given.as_slice() else {
        return Err(ApiError::bad_request(
            "give exactly one of phone, email, sip, chat or crm",
        ));
    };
    // Numbers are stored in E.164: any format of the same number finds the customer.
    let value = match kind {
        IdentityKind::Phone => s
            .chat
            .settings()
            .phones
            .normalise(value)
            .unwrap_or_else(|| value.clone()),
        IdentityKind::Email => value.trim().to_lowercase(),
        _ => value.clone(),
    };
    let (kind, value) = (kind, &value);
    let mut items = Vec::new();
    if let Some(id) = s.store.customer_for_identity(*kind, value).await?
        && let Some(c) = s.store.get_customer(id).await?
    {
        items.push(view(&s, c).await?);
    }
    Ok(Json(CustomerList { items }))
}

/// A customer with its identities and sessions.
#[utoipa::path(
    get,
    path = "/v1/customers/{id}",
    tag = "customers",
    security(("api_key" = ["read"])),
    params(("id" = Uuid, Path, description = "Customer id")),
    responses(
        (status = 200, description = "The customer", body = CustomerView),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such customer", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_customer(
    _: ReadKey,
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<CustomerView>, ApiError> {
    let id = CustomerId(parse_uuid("customer id", &id)?);
    customer_view(&s, id).await
}

async fn view(s: &ApiState, c: CustomerRecord) -> Result<CustomerView, ApiError> {
    let sessions = s.store.sessions_for_customer(c.id).await?;
    let profile = s.store.customer_profile(c.id).await?;
    Ok(CustomerView {
        vip: profile.vip,
        attributes: profile.attributes,
        id: c.id.0,
        display_name: c.display_name,
        created_ms: c.created_ms,
        identities: c
            .identities
            .into_iter()
            .map(|i| IdentityView {
                kind: i.kind.as_str().to_owned(),
                value: i.value,
            })
            .collect(),
        sessions: sessions.iter().map(SessionSummary::from).collect(),
        merged_into: s.store.merged_into(c.id).await?.map(|m| m.0),
        conflicts: s
            .store
            .conflicts_of(c.id)
            .await?
            .into_iter()
            .map(|k| ConflictView {
                other_customer_id: k.other_customer_id.0,
                identity: IdentityView {
                    kind: k.identity.kind.as_str().to_owned(),
                    value: k.identity.value,
                },
                other_identity: IdentityView {
                    kind: k.other_identity.kind.as_str().to_owned(),
                    value: k.other_identity.value,
                },
                created_ms: k.created_ms,
            })
            .collect(),
    })
}

fn check_attributes(attrs: &std::collections::BTreeMap<String, String>) -> Result<(), ApiError> {
    for (k, v) in attrs {
        let ok = !k.is_empty()
            && k.len() <= 64
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !ok {
            return Err(ApiError::unprocessable(format!(
                "attributes: \"{k}\" is not an attribute name ([A-Za-z0-9_], 1-64)"
            )));
        }
        if v.len() > 1024 {
            return Err(ApiError::unprocessable(format!(
                "attributes: \"{k}\": at most 1024 bytes"
            )));
        }
    }
    Ok(())
}

/// Sets a customer's VIP flag, attributes or name; flows read them as `customer.vip` and
/// `customer.NAME` from the next call on.
#[utoipa::path(
    patch,
    path = "/v1/customers/{id}",
    tag = "customers",
    security(("api_key" = ["admin"])),
    params(("id" = Uuid, Path, description = "Customer id")),
    request_body = CustomerPatch,
    responses(
        (status = 200, description = "The customer", body = CustomerView),
        (status = 404, description = "No such customer", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field that does not parse (named)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn update_customer(
    _: AdminKey,
    State(s): State<ApiState>,
    Path(id): Path<String>,
    ProblemJson(req): ProblemJson<CustomerPatch>,
) -> Result<Json<CustomerView>, ApiError> {
    let id = CustomerId(parse_uuid("customer id", &id)?);
    if let Some(a) = &req.attributes {
        check_attributes(a)?;
    }
    let found = s
        .store
        .update_customer(
            id,
            req.display_name.as_deref(),
            req.vip,
            req.attributes.as_ref(),
        )
        .await?;
    if !found {
        return Err(ApiError::not_found(format!("customer {id} not found")));
    }
    refresh_profile(&s, id).await?;
    customer_view(&s, id).await
}

/// The calls' copy of a customer's profile follows the store.
async fn refresh_profile(s: &ApiState, id: CustomerId) -> Result<(), ApiError> {
    let profile = s.store.customer_profile(id).await?;
    if let Some(c) = s.store.get_customer(id).await? {
        s.chat.sessions().set_profile(&c.identities, &profile);
    }
    Ok(())
}

/// Creates a customer ahead of any contact (a VIP list imported from a CRM): their calls
/// and chats join this customer.
#[utoipa::path(
    post,
    path = "/v1/customers",
    tag = "customers",
    security(("api_key" = ["admin"])),
    request_body = NewCustomer,
    responses(
        (status = 201, description = "Created", body = CustomerView),
        (status = 409, description = "An identity belongs to a customer already (named)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field that does not parse (named)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn create_customer(
    _: AdminKey,
    State(s): State<ApiState>,
    ProblemJson(req): ProblemJson<NewCustomer>,
) -> Result<(axum::http::StatusCode, Json<CustomerView>), ApiError> {
    if req.identities.is_empty() {
        return Err(ApiError::unprocessable("identities: at least one"));
    }
    check_attributes(&req.attributes)?;
    let mut identities = Vec::new();
    for (i, n) in req.identities.iter().enumerate() {
        let kind = match n.kind.as_str() {
            "phone" => IdentityKind::Phone,
            "email" => IdentityKind::Email,
            "chat" => IdentityKind::Chat,
            "crm" => IdentityKind::Crm,
            other => {
                return Err(ApiError::unprocessable(format!(
                    "identities[{i}].kind: \"{other}\" is not phone, email, chat or crm"
                )));
            }
        };
        if n.value.trim().is_empty() || n.value.len() > 256 {
            return Err(ApiError::unprocessable(format!(
                "identities[{i}].value: 1-256 bytes"
            )));
        }
        let identity = s.chat.sessions().normalise(crate::store::Identity {
            kind,
            value: n.value.trim().to_owned(),
        });
        if kind == IdentityKind::Phone && !identity.value.starts_with('+') {
            return Err(ApiError::unprocessable(format!(
                "identities[{i}].value: \"{}\" is not a phone number",
                n.value
            )));
        }
        identities.push(identity);
    }
    let profile = crate::store::Profile {
        vip: req.vip,
        attributes: req.attributes,
    };
    let id = match s
        .store
        .create_customer(req.display_name.as_deref(), &identities, &profile)
        .await
    {
        Err(crate::store::StoreError::AlreadyExists(what)) => {
            return Err(ApiError::conflict(format!(
                "{what} belongs to a customer already"
            )));
        }
        r => r?,
    };
    s.chat.sessions().set_profile(&identities, &profile);
    let view = customer_view(&s, id).await?;
    Ok((axum::http::StatusCode::CREATED, view))
}

/// Merge another customer into this one: its identities and sessions move here, it points
/// here (`merged_into`), and an audit row says what moved. `…/split` undoes it.
#[utoipa::path(
    post,
    path = "/v1/customers/{id}/merge",
    tag = "customers",
    security(("api_key" = ["admin"])),
    params(("id" = Uuid, Path, description = "The customer that stays")),
    request_body = OtherCustomer,
    responses(
        (status = 200, description = "Merged: the surviving customer", body = CustomerView),
        (status = 400, description = "Bad request (itself, or a customer merged before)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such customer", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "JSON of the wrong shape", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn merge_customer(
    key: AdminKey,
    State(s): State<ApiState>,
    Path(id): Path<String>,
    ProblemJson(req): ProblemJson<OtherCustomer>,
) -> Result<Json<CustomerView>, ApiError> {
    let id = CustomerId(parse_uuid("customer id", &id)?);
    s.store
        .merge_customers(id, CustomerId(req.customer_id), &actor(&key))
        .await?;
    tracing::info!(into = %id, from = %req.customer_id, "customers merged");
    customer_view(&s, id).await
}

/// Who changes customers: the admin key.
fn actor(key: &AdminKey) -> Actor {
    Actor {
        key_id: Some(key.0.key.id),
        name: key.0.key.name.clone(),
    }
}

/// Customer `id` as the API shows it, or 404.
async fn customer_view(s: &ApiState, id: CustomerId) -> Result<Json<CustomerView>, ApiError> {
    let c = s
        .store
        .get_customer(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("customer {id} not found")))?;
    Ok(Json(view(s, c).await?))
}

/// Split a customer merged into this one off again: what the merge moved goes back.
#[utoipa::path(
    post,
    path = "/v1/customers/{id}/split",
    tag = "customers",
    security(("api_key" = ["admin"])),
    params(("id" = Uuid, Path, description = "The customer the other was merged into")),
    request_body = OtherCustomer,
    responses(
        (status = 200, description = "Split: the customer split off", body = CustomerView),
        (status = 400, description = "Bad request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such merge", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "JSON of the wrong shape", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn split_customer(
    key: AdminKey,
    State(s): State<ApiState>,
    Path(id): Path<String>,
    ProblemJson(req): ProblemJson<OtherCustomer>,
) -> Result<Json<CustomerView>, ApiError> {
    let id = CustomerId(parse_uuid("customer id", &id)?);
    let other = CustomerId(req.customer_id);
    s.store.split_customers(id, other, &actor(&key)).await?;
    tracing::info!(from = %id, split = %other, "customers split");
    customer_view(&s, other).await
}
