//! `/v1/users` (issue 5): extensions (SIP users): list, read, create, change (display name,
//! password), remove. Only digest HA1 values are stored (made for the registrar's realm), and
//! no response ever carries them. Creating, changing and removing are audited.

use crate::domain::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{AdminKey, ApiCaller, ReadKey};
use super::records::{MAX_LIMIT, page_limit};
use super::{ApiError, ApiQuery, ApiState, Problem, ProblemJson};
use crate::sip::auth::user_secrets;
use crate::store::{Actor, NewAudit, User};

/// Shortest password accepted.
pub const MIN_PASSWORD: usize = 8;
/// Longest password accepted, characters.
pub const MAX_PASSWORD: usize = 256;
/// Longest display name, bytes.
pub const MAX_NAME: usize = 128;

/// An extension (never its credentials).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserView {
    /// The extension, also the digest user name.
    pub ext: String,
    pub name: Option<String>,
    /// The realm its credentials are for.
    pub realm: String,
    /// Creation, Unix ms.
    pub created_ms: i64,
}

/// A page of extensions, by extension.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserPage {
    pub items: Vec<UserView>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<String>,
}

/// The user list's paging.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserQuery {
    /// Page cursor: only extensions sorting after this one (`next_after` of the previous page).
    pub after: Option<String>,
    /// Page size, 1–500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// A new extension.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// 1–64 of `A-Z a-z 0-9 _ . -`.
    #[schema(pattern = "^[A-Za-z0-9_.-]{1,64}$")]
    pub ext: String,
    /// Display name (at most 128 bytes).
    #[schema(max_length = 128)]
    pub name: Option<String>,
    /// 8–256 characters.
    #[schema(min_length = 8, max_length = 256)]
    pub password: String,
}

/// Changes to an extension; absent fields are kept, `"name": null` clears the name.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    /// Display name (at most 128 bytes).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 128)]
    pub name: Option<Option<String>>,
    /// 8–256 characters.
    #[schema(min_length = 8, max_length = 256)]
    pub password: Option<String>,
}

impl From<User> for UserView {
    fn from(u: User) -> UserView {
        UserView {
            ext: u.ext,
            name: u.name,
            realm: u.realm,
            created_ms: u.created_ms,
        }
    }
}

/// This module's routes.
pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, update_user, delete_user))
}

/// List extensions, by extension.
#[utoipa::path(
    get,
    path = "/v1/users",
    tag = "users",
    security(("api_key" = ["read"])),
    params(UserQuery),
    responses(
        (status = 200, description = "Extensions", body = UserPage),
        (status = 400, description = "A parameter does not parse", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_users(
    _: ReadKey,
    State(s): State<ApiState>,
    ApiQuery(q): ApiQuery<UserQuery>,
) -> Result<Json<UserPage>, ApiError> {
    let limit = page_limit(q.limit, MAX_LIMIT)? as usize;
    let items: Vec<UserView> = s
        .store
        .list_users()
        .await?
        .into_iter()
        .filter(|u| q.after.as_deref().is_none_or(|a| u.ext.as_str() > a))
        .take(limit)
        .map(UserView::from)
        .collect();
    let next_after = if items.len() == limit {
        items.last().map(|u| u.ext.clone())
    } else {
        None
    };
    Ok(Json(UserPage { items, next_after }))
}

/// One extension.
#[utoipa::path(
    get,
    path = "/v1/users/{ext}",
    tag = "users",
    security(("api_key" = ["read"])),
    params(("ext" = String, Path, description = "Extension")),
    responses(
        (status = 200, description = "The extension", body = UserView),
        (status = 400, description = "Not a valid extension", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such extension", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_user(
    _: ReadKey,
    State(s): State<ApiState>,
    Path(ext): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    check_path_ext(&ext)?;
    Ok(Json(find(&s, &ext).await?.into()))
}

/// Create an extension.
#[utoipa::path(
    post,
    path = "/v1/users",
    tag = "users",
    security(("api_key" = ["admin"])),
    request_body = NewUser,
    responses(
        (status = 201, description = "Created", body = UserView),
        (status = 400, description = "Bad extension, name or password", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The extension exists", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn create_user(
    AdminKey(caller): AdminKey,
    State(s): State<ApiState>,
    ProblemJson(body): ProblemJson<NewUser>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    let ext_ok = !body.ext.is_empty()
        && body.ext.len() <= 64
        && body
            .ext
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !ext_ok {
        return Err(ApiError::bad_request(
            "ext must be 1-64 of A-Z a-z 0-9 _ . -",
        ));
    }
    check_password(&body.password)?;
    if let Some(name) = &body.name {
        check_name(name)?;
    }
    s.store
        .add_user(
            &body.ext,
            body.name.as_deref(),
            &user_secrets(&body.ext, s.registrar.realm(), &body.password),
        )
        .await
        .map_err(|e| match e {
            crate::store::StoreError::AlreadyExists(ext) => {
                ApiError::conflict(format!("extension {ext} exists"))
            }
            other => other.into(),
        })?;
    s.registrar.forget_user(&Extension::new(body.ext.as_str()));
    audit(&s, &caller, "user.create", &body.ext, serde_json::json!({})).await?;
    let user = find(&s, &body.ext).await?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// Change an extension's display name or password.
#[utoipa::path(
    patch,
    path = "/v1/users/{ext}",
    tag = "users",
    security(("api_key" = ["admin"])),
    params(("ext" = String, Path, description = "Extension")),
    request_body = UserChange,
    responses(
        (status = 200, description = "The extension as changed", body = UserView),
        (status = 400, description = "Bad extension, name or password", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such extension", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn update_user(
    AdminKey(caller): AdminKey,
    State(s): State<ApiState>,
    Path(ext): Path<String>,
    ProblemJson(body): ProblemJson<UserChange>,
) -> Result<Json<UserView>, ApiError> {
    check_path_ext(&ext)?;
    if let Some(p) = &body.password {
        check_password(p)?;
    }
    if let Some(Some(name)) = &body.name {
        check_name(name)?;
    }
    find(&s, &ext).await?;
    if let Some(name) = &body.name {
        s.store.set_user_name(&ext, name.as_deref()).await?;
    }
    if let Some(p) = &body.password {
        s.store
            .set_password(&ext, &user_secrets(&ext, s.registrar.realm(), p))
            .await?;
    }
    s.registrar.forget_user(&Extension::new(ext.as_str()));
    let detail = serde_json::json!({
        "name": body.name.is_some(),
        "password": body.password.is_some(),
    });
    audit(&s, &caller, "user.update", &ext, detail).await?;
    Ok(Json(find(&s, &ext).await?.into()))
}

/// Remove an extension and its registrations.
#[utoipa::path(
    delete,
    path = "/v1/users/{ext}",
    tag = "users",
    security(("api_key" = ["admin"])),
    params(("ext" = String, Path, description = "Extension")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Not a valid extension", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such extension", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn delete_user(
    AdminKey(caller): AdminKey,
    State(s): State<ApiState>,
    Path(ext): Path<String>,
) -> Result<StatusCode, ApiError> {
    check_path_ext(&ext)?;
    if !s.store.remove_user(&ext).await? {
        return Err(ApiError::not_found(format!("extension {ext} not found")));
    }
    s.registrar.forget_user(&Extension::new(ext.as_str()));
    audit(&s, &caller, "user.delete", &ext, serde_json::json!({})).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `Some(value)` for a field that is present, even as `null` (so `null` can clear it).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// An extension in a path: what the CLI accepts (1–64 SIP unreserved characters).
fn check_path_ext(ext: &str) -> Result<(), ApiError> {
    let ok = !ext.is_empty()
        && ext.len() <= 64
        && ext
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'()+".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request("not a valid extension"))
    }
}

fn check_password(p: &str) -> Result<(), ApiError> {
    let n = p.chars().count();
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&n) {
        return Err(ApiError::bad_request(format!(
            "the password must have {MIN_PASSWORD} to {MAX_PASSWORD} characters"
        )));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.len() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "the name must be at most {MAX_NAME} bytes without control characters"
        )));
    }
    Ok(())
}

async fn find(s: &ApiState, ext: &str) -> Result<User, ApiError> {
    s.store
        .get_user(ext)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("extension {ext} not found")))
}

async fn audit(
    s: &ApiState,
    caller: &ApiCaller,
    action: &str,
    ext: &str,
    detail: serde_json::Value,
) -> Result<(), ApiError> {
    let actor = Actor {
        key_id: Some(caller.key.id),
        name: caller.key.name.clone(),
    };
    let entry = NewAudit {
        action: action.into(),
        target_kind: "user".into(),
        target_id: ext.into(),
        detail,
    };
    Ok(s.store.audit(&actor, &entry).await?)
}
