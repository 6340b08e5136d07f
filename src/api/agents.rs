//! `/v1/agents` and `/v1/queues` (issue 13): agents (admin CRUD; presence with a control
//! key), queues as the dialplan defines them with their live figures, and the KPIs over a
//! time range, the same for voice and chat.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{AdminKey, ControlKey, ReadKey};
use super::{ApiError, ApiState, Problem, ProblemJson};
use crate::acd::service::parse_presence;
use crate::store::{AgentRecord, StoreError, TaskStats};

/// An agent to create or replace.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentBody {
    /// Lower-case letters, digits, `_` and `-` (1-64); only on create.
    pub id: Option<String>,
    /// Reached on every phone registered for this extension.
    pub extension: String,
    pub name: Option<String>,
    /// Skill → level (0-100); every skill must be declared by the dialplan.
    #[serde(default)]
    pub skills: std::collections::BTreeMap<String, u8>,
    /// Calls at once (default 1).
    pub voice: Option<u32>,
    /// Chats at once (default 3).
    pub chat: Option<u32>,
    /// No chat offered while on a call (default false).
    #[serde(default)]
    pub no_chat_on_call: bool,
    /// May monitor calls (default false).
    #[serde(default)]
    pub supervisor: bool,
}

/// An agent with their state now.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AgentView {
    pub id: String,
    pub extension: String,
    pub name: Option<String>,
    pub skills: std::collections::BTreeMap<String, u8>,
    pub voice: u32,
    pub chat: u32,
    pub no_chat_on_call: bool,
    pub supervisor: bool,
    /// `available`, `busy`, `wrap-up`, `break` or `offline`.
    pub state: String,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AgentList {
    pub agents: Vec<AgentView>,
}

/// A presence to set.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StateBody {
    /// `available`, `break` or `offline` (busy and wrap-up are automatic).
    pub state: String,
    /// Why (for a break: `lunch`, `training`, …).
    pub reason: Option<String>,
}

/// A queue as the dialplan defines it, with its live figures.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QueueView {
    pub name: String,
    pub strategy: String,
    pub skills: std::collections::BTreeMap<String, u8>,
    pub offer_timeout_ms: u64,
    pub wrap_up_ms: u64,
    pub service_level_ms: u64,
    pub max_wait_ms: Option<u64>,
    pub max_length: Option<usize>,
    pub callback: bool,
    /// Contacts waiting now.
    pub waiting: usize,
    /// How long the contact waiting longest has waited (ms).
    pub longest_wait_ms: u64,
    /// Agents holding the queue's skills, by state.
    pub agents: std::collections::BTreeMap<String, usize>,
    /// The last 15 minutes.
    pub last_15_minutes: TaskStats,
    /// Since midnight in the queue's calendar's time zone (UTC without one).
    pub today: TaskStats,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QueueList {
    pub queues: Vec<QueueView>,
}

/// A time range (Unix ms; default: the last 15 minutes), or `period=today` (since midnight
/// in the queue's calendar's time zone, UTC without one).
#[derive(Debug, Clone, Deserialize, IntoParams)]
pub struct Range {
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub period: Option<String>,
}

/// Figures over a range.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StatsView {
    pub from: i64,
    pub to: i64,
    #[serde(flatten)]
    pub stats: TaskStats,
}

/// An agent's figures over a range: their tasks, and how their time was spent.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AgentStatsView {
    pub from: i64,
    pub to: i64,
    #[serde(flatten)]
    pub stats: TaskStats,
    /// Milliseconds in each state over the range.
    pub time_in_state_ms: std::collections::BTreeMap<String, i64>,
    /// Busy and wrap-up ÷ time available, busy or in wrap-up (percent; `None` when the
    /// agent was not staffed).
    pub occupancy_pct: Option<f64>,
}

/// Midnight today in `tz`, Unix ms.
fn start_of_today(tz: &jiff::tz::TimeZone, now_ms: i64) -> i64 {
    let Ok(ts) = jiff::Timestamp::from_millisecond(now_ms) else {
        return now_ms;
    };
    ts.to_zoned(tz.clone())
        .start_of_day()
        .map_or(now_ms, |z| z.timestamp().as_millisecond())
}

/// "Today" for `queue`: its calendar's time zone, or UTC.
fn today_for(state: &ApiState, queue: Option<&str>) -> i64 {
    let plan = state.calls.plan();
    let tz = queue
        .and_then(|q| plan.queues.get(q))
        .and_then(|d| d.calendar.as_ref())
        .and_then(|c| plan.calendars.get(c))
        .map_or(jiff::tz::TimeZone::UTC, |c| c.timezone.clone());
    start_of_today(&tz, crate::clock::unix_ms())
}

/// This module's routes.
pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_agents, create_agent))
        .routes(routes!(get_agent, replace_agent, delete_agent))
        .routes(routes!(set_state))
        .routes(routes!(agent_stats))
        .routes(routes!(list_queues))
        .routes(routes!(get_queue))
        .routes(routes!(queue_stats))
}

/// Checks a body against the plan's skills; the record to store.
fn record(state: &ApiState, id: String, body: AgentBody) -> Result<AgentRecord, ApiError> {
    if !crate::acd::is_skill_name(&id) {
        return Err(ApiError::unprocessable(format!(
            "id: \"{id}\" is not an agent id (lower-case letters, digits, _ and -, 1-64)"
        )));
    }
    let ext_ok = !body.extension.is_empty()
        && body.extension.len() <= 64
        && !body.extension.contains(['@', ';', ' ', ':', '/']);
    if !ext_ok {
        return Err(ApiError::unprocessable(format!(
            "extension: \"{}\" is not an extension",
            body.extension
        )));
    }
    let plan = state.calls.plan();
    for (skill, level) in &body.skills {
        if !plan.skills.contains(skill) {
            return Err(ApiError::unprocessable(format!(
                "skills: \"{skill}\" is not a skill the dialplan declares"
            )));
        }
        if *level > crate::acd::MAX_LEVEL {
            return Err(ApiError::unprocessable(format!(
                "skills: \"{skill}\": the level is 0 to {}",
                crate::acd::MAX_LEVEL
            )));
        }
    }
    let voice = body.voice.unwrap_or(1);
    let chat = body.chat.unwrap_or(3);
    if voice > 10 || chat > 50 {
        return Err(ApiError::unprocessable(
            "voice: at most 10; chat: at most 50",
        ));
    }
    let now = crate::clock::unix_ms();
    Ok(AgentRecord {
        id,
        extension: body.extension,
        name: body.name,
        skills: body.skills.into_iter().collect(),
        voice,
        chat,
        no_chat_on_call: body.no_chat_on_call,
        supervisor: body.supervisor,
        presence: "offline".into(),
        reason: None,
        created_ms: now,
        updated_ms: now,
    })
}

async fn view(state: &ApiState, a: AgentRecord) -> AgentView {
    let (st, reason) = match state.acd.agent_state(&a.id).await {
        Some((s, r)) => (s.as_str().to_owned(), r),
        None => (a.presence.clone(), a.reason.clone()),
    };
    AgentView {
        id: a.id,
        extension: a.extension,
        name: a.name,
        skills: a.skills.into_iter().collect(),
        voice: a.voice,
        chat: a.chat,
        no_chat_on_call: a.no_chat_on_call,
        supervisor: a.supervisor,
        state: st,
        reason,
    }
}

/// Every agent with their state now.
#[utoipa::path(get, path = "/v1/agents", tag = "agents", security(("api_key" = ["read"])),
    responses(
        (status = 200, description = "The agents", body = AgentList),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_agents(
    _key: ReadKey,
    State(state): State<ApiState>,
) -> Result<Json<AgentList>, ApiError> {
    let mut agents = Vec::new();
    for a in state.store.list_agents().await? {
        agents.push(view(&state, a).await);
    }
    Ok(Json(AgentList { agents }))
}

/// Create an agent (offline until they set themselves available).
#[utoipa::path(post, path = "/v1/agents", tag = "agents", security(("api_key" = ["admin"])),
    request_body = AgentBody,
    responses(
        (status = 201, description = "Created", body = AgentView),
        (status = 400, description = "Bad request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The id is taken", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field that does not parse, or a skill the plan does not declare (named)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_agent(
    _key: AdminKey,
    State(state): State<ApiState>,
    ProblemJson(body): ProblemJson<AgentBody>,
) -> Result<(StatusCode, Json<AgentView>), ApiError> {
    let Some(id) = body.id.clone() else {
        return Err(ApiError::unprocessable("id: required"));
    };
    let rec = record(&state, id, body)?;
    match state.store.add_agent(&rec).await {
        Err(StoreError::AlreadyExists(id)) => {
            return Err(ApiError::conflict(format!("agent {id} exists")));
        }
        r => r?,
    }
    state.acd.agent(rec.clone());
    tracing::info!(agent = %rec.id, extension = %rec.extension, "agent added");
    Ok((StatusCode::CREATED, Json(view(&state, rec).await)))
}

/// One agent.
#[utoipa::path(get, path = "/v1/agents/{id}", tag = "agents", security(("api_key" = ["read"])),
    params(("id" = String, Path, description = "Agent id")),
    responses(
        (status = 200, description = "The agent", body = AgentView),
        (status = 404, description = "No such agent", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_agent(
    _key: ReadKey,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<AgentView>, ApiError> {
    let a = state
        .store
        .get_agent(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no agent {id}")))?;
    Ok(Json(view(&state, a).await))
}

/// Replace an agent's settings (their presence stays).
#[utoipa::path(put, path = "/v1/agents/{id}", tag = "agents", security(("api_key" = ["admin"])),
    params(("id" = String, Path, description = "Agent id")),
    request_body = AgentBody,
    responses(
        (status = 200, description = "Replaced", body = AgentView),
        (status = 404, description = "No such agent", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field that does not parse, or an undeclared skill", body = Problem, content_type = "application/problem+json"),
    ))]
async fn replace_agent(
    _key: AdminKey,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    ProblemJson(body): ProblemJson<AgentBody>,
) -> Result<Json<AgentView>, ApiError> {
    let old = state
        .store
        .get_agent(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no agent {id}")))?;
    let mut rec = record(&state, id, body)?;
    rec.presence = old.presence;
    rec.reason = old.reason;
    rec.created_ms = old.created_ms;
    state.store.update_agent(&rec).await?;
    state.acd.agent(rec.clone());
    Ok(Json(view(&state, rec).await))
}

/// Remove an agent (their history stays; offers they have are withdrawn).
#[utoipa::path(delete, path = "/v1/agents/{id}", tag = "agents", security(("api_key" = ["admin"])),
    params(("id" = String, Path, description = "Agent id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such agent", body = Problem, content_type = "application/problem+json"),
    ))]
async fn delete_agent(
    _key: AdminKey,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !state.store.remove_agent(&id).await? {
        return Err(ApiError::not_found(format!("no agent {id}")));
    }
    state.acd.remove_agent(&id);
    Ok(StatusCode::NO_CONTENT)
}

/// Set an agent's presence: `available`, `break` (with a reason) or `offline`. Stored with
/// the time and reason and sent as an `agent.state` event. Offers the agent has are withdrawn
/// when they leave `available` (the contacts go back to the line).
#[utoipa::path(post, path = "/v1/agents/{id}/state", tag = "agents", security(("api_key" = ["control"])),
    params(("id" = String, Path, description = "Agent id")),
    request_body = StateBody,
    responses(
        (status = 200, description = "The agent's state now", body = AgentView),
        (status = 404, description = "No such agent", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a state (named)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn set_state(
    _key: ControlKey,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    ProblemJson(body): ProblemJson<StateBody>,
) -> Result<Json<AgentView>, ApiError> {
    let presence = parse_presence(&body.state).ok_or_else(|| {
        ApiError::unprocessable(format!(
            "state: \"{}\" is not one of available, break, offline",
            body.state
        ))
    })?;
    if body.reason.as_ref().is_some_and(|r| r.len() > 200) {
        return Err(ApiError::unprocessable("reason: at most 200 bytes"));
    }
    let a = state
        .store
        .get_agent(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no agent {id}")))?;
    state
        .acd
        .set_presence(&id, presence, body.reason)
        .await
        .map_err(|e| ApiError::not_found(e.to_string()))?;
    Ok(Json(view(&state, a).await))
}

fn range(state: &ApiState, queue: Option<&str>, r: &Range) -> Result<(i64, i64), ApiError> {
    let to = r.to.unwrap_or_else(crate::clock::unix_ms);
    let from = match r.period.as_deref() {
        Some("today") => today_for(state, queue),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "period: \"{other}\" is not `today`"
            )));
        }
        None => r.from.unwrap_or(to.saturating_sub(15 * 60 * 1000)),
    };
    if from > to {
        return Err(ApiError::bad_request("from is after to"));
    }
    Ok((from, to))
}

/// An agent's figures over a range (default the last 15 minutes).
#[utoipa::path(get, path = "/v1/agents/{id}/stats", tag = "agents", security(("api_key" = ["read"])),
    params(("id" = String, Path, description = "Agent id"), Range),
    responses(
        (status = 200, description = "Figures of the tasks the agent took, time in each state, occupancy", body = AgentStatsView),
        (status = 404, description = "No such agent", body = Problem, content_type = "application/problem+json"),
    ))]
async fn agent_stats(
    _key: ReadKey,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Query(r): Query<Range>,
) -> Result<Json<AgentStatsView>, ApiError> {
    let (from, to) = range(&state, None, &r)?;
    if state.store.get_agent(&id).await?.is_none() {
        return Err(ApiError::not_found(format!("no agent {id}")));
    }
    let tasks = state.store.tasks(None, Some(&id), from, to).await?;
    let stats = TaskStats::of(&tasks, 20_000);
    // Time in each state: the state at `from`, then each change up to `to`.
    let mut time: std::collections::BTreeMap<String, i64> = Default::default();
    let mut current = state
        .store
        .agent_state_at(&id, from)
        .await?
        .map(|s| s.state)
        .unwrap_or_else(|| "offline".into());
    let mut since = from;
    for change in state.store.agent_states(&id, from, to, 100_000).await? {
        *time.entry(current).or_insert(0) += change.at_ms.saturating_sub(since);
        current = change.state;
        since = change.at_ms;
    }
    *time.entry(current).or_insert(0) += to.saturating_sub(since);
    let get = |k: &str| time.get(k).copied().unwrap_or(0);
    let working = get("busy") + get("wrap-up");
    let staffed = working + get("available");
    let occupancy_pct = (staffed > 0).then(|| 100.0 * working as f64 / staffed as f64);
    Ok(Json(AgentStatsView {
        from,
        to,
        stats,
        time_in_state_ms: time,
        occupancy_pct,
    }))
}

async fn queue_view(
    state: &ApiState,
    def: &crate::ivr::plan::QueueDef,
) -> Result<QueueView, ApiError> {
    let live = state.acd.live(&def.name).await;
    let now = crate::clock::unix_ms();
    let threshold = def.service_level.as_millis() as i64;
    let recent = state
        .store
        .tasks(Some(&def.name), None, now - 15 * 60 * 1000, now + 1)
        .await?;
    let last_15_minutes = TaskStats::of(&recent, threshold);
    let today = state
        .store
        .tasks(
            Some(&def.name),
            None,
            today_for(state, Some(&def.name)),
            now + 1,
        )
        .await?;
    let today = TaskStats::of(&today, threshold);
    let longest = live.oldest.map_or(0, |t| {
        crate::clock::now().saturating_duration_since(t).as_millis() as u64
    });
    Ok(QueueView {
        name: def.name.clone(),
        strategy: def.strategy.as_str().to_owned(),
        skills: def.skills.iter().cloned().collect(),
        offer_timeout_ms: def.offer_timeout.as_millis() as u64,
        wrap_up_ms: def.wrap_up.as_millis() as u64,
        service_level_ms: def.service_level.as_millis() as u64,
        max_wait_ms: def.max_wait.map(|d| d.as_millis() as u64),
        max_length: def.max_length,
        callback: def.callback,
        waiting: live.waiting,
        longest_wait_ms: longest,
        agents: live
            .agents
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        last_15_minutes,
        today,
    })
}

/// Every queue of the dialplan with its live figures.
#[utoipa::path(get, path = "/v1/queues", tag = "agents", security(("api_key" = ["read"])),
    responses((status = 200, description = "The queues", body = QueueList)))]
async fn list_queues(
    _key: ReadKey,
    State(state): State<ApiState>,
) -> Result<Json<QueueList>, ApiError> {
    let plan = state.calls.plan();
    let mut queues = Vec::new();
    for def in plan.queues.values() {
        queues.push(queue_view(&state, def).await?);
    }
    Ok(Json(QueueList { queues }))
}

/// One queue with its live figures.
#[utoipa::path(get, path = "/v1/queues/{name}", tag = "agents", security(("api_key" = ["read"])),
    params(("name" = String, Path, description = "Queue name")),
    responses(
        (status = 200, description = "The queue", body = QueueView),
        (status = 404, description = "No such queue", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_queue(
    _key: ReadKey,
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<QueueView>, ApiError> {
    let plan = state.calls.plan();
    let def = plan
        .queues
        .get(&name)
        .ok_or_else(|| ApiError::not_found(format!("no queue {name}")))?;
    Ok(Json(queue_view(&state, def).await?))
}

/// A queue's figures over a range (default the last 15 minutes): contacts, answered,
/// service level, average speed of answer, average handle time, abandon rate, first response.
#[utoipa::path(get, path = "/v1/queues/{name}/stats", tag = "agents", security(("api_key" = ["read"])),
    params(("name" = String, Path, description = "Queue name"), Range),
    responses(
        (status = 200, description = "The figures", body = StatsView),
        (status = 400, description = "Bad range", body = Problem, content_type = "application/problem+json"),
    ))]
async fn queue_stats(
    _key: ReadKey,
    State(state): State<ApiState>,
    Path(name): Path<String>,
    Query(r): Query<Range>,
) -> Result<Json<StatsView>, ApiError> {
    let (from, to) = range(&state, Some(&name), &r)?;
    let threshold = state
        .calls
        .plan()
        .queues
        .get(&name)
        .map_or(20_000, |d| d.service_level.as_millis() as i64);
    let tasks = state.store.tasks(Some(&name), None, from, to).await?;
    let stats = TaskStats::of(&tasks, threshold);
    Ok(Json(StatsView { from, to, stats }))
}
