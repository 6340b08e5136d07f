//! `/v1/calls`: live calls and call control (issue 5). Every command goes to the call's actor
//! through [`crate::session::CallRegistry::control`]; what it did shows up in the event log.
//! Ended calls are not here: they are call records (`/v1/call-records`).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{ControlKey, ReadKey};
use super::{ApiError, ApiQuery, ApiState, Problem, ProblemJson};
use crate::ivr::plan::{HangupCause, Prompt, StepKind};
use crate::session::{
    CallInfo, CallParty, ControlCommand, ControlError, ControlReply, OriginateError,
    OriginateRequest, PlaybackId, RecordAction, TransferTarget,
};
use crate::store::CallId;

/// Ring time of a placed call when the request names none.
const DEFAULT_RING_TIMEOUT_SECS: u64 = 30;
/// The longest ring time a request may ask for.
const MAX_RING_TIMEOUT_SECS: u64 = 300;
/// Extra SIP headers one placed call may carry.
const MAX_EXTRA_HEADERS: usize = 20;

/// This module's routes.
pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_calls, originate))
        .routes(routes!(get_call, hangup))
        .routes(routes!(play))
        .routes(routes!(stop_playback))
        .routes(routes!(send_dtmf))
        .routes(routes!(record))
        .routes(routes!(redirect))
        .routes(routes!(hold))
        .routes(routes!(resume))
        .routes(routes!(mute))
        .routes(routes!(unmute))
        .routes(routes!(transfer))
        .routes(routes!(complete_transfer))
        .routes(routes!(cancel_transfer))
        .routes(routes!(bridge))
}

/// A live call.
#[derive(Debug, Serialize, ToSchema)]
pub struct Call {
    /// The call's id (also its call record's id).
    pub id: String,
    pub session_id: String,
    /// `starting`, `ringing`, `ivr`, `answered`, `bridged` or `ending`.
    pub state: String,
    /// `inbound`, `internal` or `outbound`.
    pub direction: String,
    pub caller: String,
    pub callee: String,
    /// RFC 3339.
    pub started: String,
    /// RFC 3339, once answered.
    pub answered: Option<String>,
    /// The dialplan flow running now.
    pub flow: Option<String>,
}

/// A live call with its legs.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallDetail {
    #[serde(flatten)]
    pub call: Call,
    pub legs: Vec<CallLeg>,
}

/// One leg of a live call.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallLeg {
    pub id: String,
    /// `caller` (leg A; the party rung for a call the server placed) or `callee`.
    pub party: CallParty,
    /// What the leg is: `sip`, `local`, `conference`, `queue` or `webrtc`.
    pub kind: crate::domain::LegKind,
    /// The SIP Call-ID of the leg's dialog (SIP legs only).
    pub sip_call_id: Option<String>,
    pub user: Option<String>,
    /// `ringing`, `answered` or `held`.
    pub state: String,
    /// What the party says is not passed on (muted, or held through the API).
    pub muted: bool,
}

/// Live calls.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallList {
    pub calls: Vec<Call>,
}

/// A call to place.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Originate {
    /// The caller the called party sees (an extension or number: letters, digits, `+._-`).
    pub from: String,
    /// The extension to ring (all its registered phones), or a SIP URI (`sip:alice@192.0.2.7:5080`, `;transport=tcp`
    /// allowed) the INVITE is sent straight to. Security: any control-scope key may make the
    /// server call any SIP URI it can reach.
    pub to: String,
    /// Runs this dialplan flow once answered.
    pub flow: Option<String>,
    /// Or: dials this extension once answered and bridges the two.
    pub connect_to: Option<String>,
    /// Or: once answered, POSTs the session context to this `http(s)://` URL and runs the
    /// steps of its JSON reply, as an IVR `webhook` step does.
    pub webhook: Option<String>,
    /// Seconds `to` (and `connect_to`) may ring (default 30, at most 300).
    pub ring_timeout: Option<u64>,
    /// Display name shown to the called party.
    pub caller_id: Option<String>,
    /// Extra SIP headers on the INVITE; names must start with `X-`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// A call was placed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Created {
    pub id: String,
}

/// What to play: exactly one of `file`, `tone`, `say`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Play {
    /// A WAV prompt under the media directory (`prompts/welcome`).
    pub file: Option<String>,
    /// `ringback`, `busy`, `congestion` or `beep`.
    pub tone: Option<String>,
    /// Text to speak.
    pub say: Option<String>,
    /// Who hears it (default `caller`).
    pub leg: Option<CallParty>,
}

/// A playback started.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlaybackCreated {
    pub playback_id: String,
}

/// Digits to send.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Dtmf {
    /// `0-9`, `*`, `#`, `A-D`; at most 32.
    pub digits: String,
    /// Who receives them (default `caller`).
    pub leg: Option<CallParty>,
}

/// A recording command.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub action: RecordAction,
}

/// A flow to run on the call.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Redirect {
    /// A flow of the dialplan.
    pub flow: String,
}

/// The party a hold or mute applies to.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LegChoice {
    /// `caller` (default: in a contact centre the customer, leg A) or `callee`.
    pub leg: Option<CallParty>,
}

/// Where a transfer sends the caller: exactly one of `to`, `flow`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Transfer {
    /// An extension: the caller is dialled to it (hearing ringback). With `attended`, an
    /// extension or a SIP URI: the consultation call rings it.
    pub to: Option<String>,
    /// A dialplan flow the caller runs (blind only).
    pub flow: Option<String>,
    /// An attended (consultative) transfer: the caller is held (music on hold) and a
    /// consultation call from the callee rings `to`; once it answers the callee talks to it.
    /// Then `POST .../transfer/complete` or `.../transfer/cancel`. Default `false` (blind).
    #[serde(default)]
    pub attended: bool,
}

/// An attended transfer started.
#[derive(Debug, Serialize, ToSchema)]
pub struct TransferStarted {
    /// The consultation call (a live call of the same session; its events tell when it rings,
    /// answers or ends).
    pub consultation_call_id: String,
}

/// Two calls to bridge.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBridge {
    /// Two live calls, each answered by us without a callee (placed calls, callers in a flow).
    pub call_ids: Vec<String>,
}

/// A bridge was made.
#[derive(Debug, Serialize, ToSchema)]
pub struct BridgeCreated {
    pub id: String,
    pub call_ids: Vec<String>,
}

/// Filters for the live calls (all must match).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// `starting`, `ringing`, `ivr`, `answered`, `bridged` or `ending`.
    pub state: Option<String>,
    /// The caller's user or number, exactly.
    pub caller: Option<String>,
    /// The number called, exactly.
    pub callee: Option<String>,
    /// The session the call belongs to.
    pub session_id: Option<String>,
}

/// How a call is hung up.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HangupParams {
    /// `normal` (default), `busy`, `rejected`, `unavailable` or `not_found` (the last four
    /// set the SIP status an unanswered caller gets).
    pub cause: Option<String>,
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> ApiError {
        match e {
            ControlError::NoSuchCall => no_such_call(),
            ControlError::NotFound(why) => ApiError::not_found(why),
            ControlError::Conflict(why) => ApiError::conflict(why),
            ControlError::Invalid(why) => ApiError::bad_request(why),
        }
    }
}

impl From<OriginateError> for ApiError {
    fn from(e: OriginateError) -> ApiError {
        match e {
            OriginateError::NotRegistered(_) => ApiError::conflict(e.to_string()),
            OriginateError::Unavailable => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable",
                e.to_string(),
            ),
            other => ApiError::bad_request(other.to_string()),
        }
    }
}

fn no_such_call() -> ApiError {
    ApiError::not_found("no such live call (ended calls are under /v1/call-records)")
}

fn call_id(id: &str) -> Result<CallId, ApiError> {
    id.parse().map_err(|_| no_such_call())
}

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

impl From<&CallInfo> for Call {
    fn from(c: &CallInfo) -> Call {
        Call {
            id: c.id.to_string(),
            session_id: c.session_id.to_string(),
            state: c.state.to_owned(),
            direction: c.direction.to_owned(),
            caller: c.caller.clone(),
            callee: c.callee.clone(),
            started: rfc3339(c.started_ms),
            answered: c.answered_ms.map(rfc3339),
            flow: c.flow.clone(),
        }
    }
}

/// A user part we put into a SIP URI ourselves: letters, digits and `+._-`.
fn check_user(what: &str, v: &str) -> Result<(), ApiError> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "`{what}` must be 1-64 letters, digits or +._-"
        )))
    }
}

/// Where a call is placed: an extension, or any SIP URI (the server sends the INVITE straight
/// to its host: a control-scope key can therefore make the server call, and spend media on,
/// any SIP address).
fn check_target(what: &str, to: &str) -> Result<(), ApiError> {
    if !crate::session::is_sip_uri(to) {
        return check_user(what, to);
    }
    if to.len() > 256 || to.chars().any(|c| c.is_control() || c == ' ') {
        return Err(ApiError::bad_request(format!(
            "`{what}`: a SIP URI is at most 256 characters without spaces or control characters"
        )));
    }
    Ok(())
}

fn check_originate(o: &Originate) -> Result<OriginateRequest, ApiError> {
    check_user("from", &o.from)?;
    check_target("to", &o.to)?;
    if let Some(c) = &o.connect_to {
        check_user("connect_to", c)?;
    }
    let after = [
        o.flow.is_some(),
        o.connect_to.is_some(),
        o.webhook.is_some(),
    ];
    if after.iter().filter(|x| **x).count() > 1 {
        return Err(ApiError::bad_request(
            "give at most one of `flow`, `connect_to`, `webhook`",
        ));
    }
    if let Some(url) = &o.webhook {
        let lower = url.to_ascii_lowercase();
        let ok = (lower.starts_with("http://") || lower.starts_with("https://"))
            && url.len() <= 2048
            && !url.chars().any(|c| c.is_control() || c == ' ')
            && !url.contains("{{");
        if !ok {
            return Err(ApiError::bad_request(
                "`webhook` is an http(s) URL of at most 2048 characters",
            ));
        }
    }
    let ring = o.ring_timeout.unwrap_or(DEFAULT_RING_TIMEOUT_SECS);
    if !(1..=MAX_RING_TIMEOUT_SECS).contains(&ring) {
        return Err(ApiError::bad_request(format!(
            "`ring_timeout` is 1-{MAX_RING_TIMEOUT_SECS} seconds"
        )));
    }
    if let Some(name) = &o.caller_id
        && (name.len() > 64 || name.chars().any(char::is_control))
    {
        return Err(ApiError::bad_request(
            "`caller_id` is at most 64 characters without control characters",
        ));
    }
    if o.headers.len() > MAX_EXTRA_HEADERS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_EXTRA_HEADERS} extra headers"
        )));
    }
    for (name, value) in &o.headers {
        let token = name.len() <= 64
            && name.len() > 2
            && name[..2].eq_ignore_ascii_case("x-")
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c));
        if !token {
            return Err(ApiError::bad_request(format!(
                "header `{name}`: extra headers are `X-` tokens"
            )));
        }
        if value.len() > 1024 || value.chars().any(char::is_control) {
            return Err(ApiError::bad_request(format!(
                "header `{name}`: at most 1024 characters without control characters"
            )));
        }
    }
    Ok(OriginateRequest {
        from: o.from.clone(),
        to: o.to.clone(),
        flow: o.flow.clone(),
        connect_to: o.connect_to.clone(),
        webhook: o.webhook.clone(),
        ring_timeout: Duration::from_secs(ring),
        caller_id: o.caller_id.clone(),
        headers: o
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        consult_for: None,
        session: None,
        acd_contact: None,
    })
}

/// The prompt a play request names, checked like a dialplan's.
fn prompt(state: &ApiState, p: &Play) -> Result<Prompt, ApiError> {
    let spec = match (&p.file, &p.tone, &p.say) {
        (Some(f), None, None) => {
            if f.contains(':') {
                return Err(ApiError::bad_request(
                    "`file` is a path under the media directory",
                ));
            }
            f.clone()
        }
        (None, Some(t), None) => format!("tone:{t}"),
        (None, None, Some(s)) => {
            if s.is_empty() || s.len() > 2000 {
                return Err(ApiError::bad_request("`say` is 1-2000 characters"));
            }
            // Placeholders are not filled for API speech.
            format!("say:{}", s.replace("{{", "{ {"))
        }
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of `file`, `tone`, `say`",
            ));
        }
    };
    let plan = state.calls.plan();
    let steps = crate::ivr::parse::steps_from_json(&serde_json::json!([{ "play": spec }]), &plan)
        .map_err(|errors| {
        let list: Vec<String> = errors.iter().map(|e| e.message.clone()).collect();
        ApiError::bad_request(list.join("; "))
    })?;
    match steps.into_iter().next().map(|s| s.kind) {
        Some(StepKind::Play { prompt, .. }) => Ok(prompt),
        _ => Err(ApiError::bad_request("not a prompt")),
    }
}

/// Live calls.
#[utoipa::path(
    get,
    path = "/v1/calls",
    tag = "calls",
    security(("api_key" = ["read"])),
    params(ListParams),
    responses(
        (status = 200, description = "The live calls that match, oldest first", body = CallList),
        (status = 400, description = "Unusable filter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_calls(
    _: ReadKey,
    State(s): State<ApiState>,
    ApiQuery(q): ApiQuery<ListParams>,
) -> Json<CallList> {
    let calls = s.calls.list().await;
    let matches = |c: &CallInfo| {
        q.state.as_deref().is_none_or(|v| v == c.state)
            && q.caller.as_deref().is_none_or(|v| v == c.caller)
            && q.callee.as_deref().is_none_or(|v| v == c.callee)
            && q.session_id
                .as_deref()
                .is_none_or(|v| v == c.session_id.to_string())
    };
    Json(CallList {
        calls: calls
            .iter()
            .filter(|c| matches(c))
            .map(Call::from)
            .collect(),
    })
}

/// One live call with its legs (ended calls are under `/v1/call-records`).
#[utoipa::path(
    get,
    path = "/v1/calls/{id}",
    tag = "calls",
    security(("api_key" = ["read"])),
    params(("id" = String, Path, description = "The call's id")),
    responses(
        (status = 200, description = "The call", body = CallDetail),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such live call (ended calls are call records)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_call(
    _: ReadKey,
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<CallDetail>, ApiError> {
    let id = call_id(&id)?;
    match s.calls.control(id, ControlCommand::Info).await? {
        ControlReply::Info(info) => Ok(Json(CallDetail {
            call: Call::from(&info),
            legs: info
                .legs
                .iter()
                .map(|l| CallLeg {
                    id: l.id.to_string(),
                    party: l.party,
                    kind: l.kind,
                    sip_call_id: l.sip_call_id.clone(),
                    user: l.user.clone(),
                    state: l.state.to_owned(),
                    muted: l.muted,
                })
                .collect(),
        })),
        _ => Err(ApiError::internal("unexpected reply to Info")),
    }
}

/// Places a call: rings `to` (every registered phone of the extension together; the first to
/// answer wins, the others stop ringing), then runs `flow`, dials `connect_to`, or just stays
/// up. Answers at once; the call's progress is in its events (`call.ringing`, `call.answered`,
/// `call.ended` with cause `no_answer` after the ring timeout, or `busy`, `declined`, … from
/// the best answer of the phones).
///
/// `to` may be a SIP URI instead of an extension: the INVITE goes straight to the URI's host
/// (UDP, or TCP with `;transport=tcp`). Security: a `control` key can thus make the server call
/// any SIP address it reaches; give such keys only to trusted systems.
#[utoipa::path(
    post,
    path = "/v1/calls",
    tag = "calls",
    security(("api_key" = ["control"])),
    request_body = Originate,
    responses(
        (status = 201, description = "The call is being placed", body = Created),
        (status = 400, description = "Unusable request (unknown extension or flow, bad header)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`to` is not registered", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The server is shutting down", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn originate(
    _: ControlKey,
    State(s): State<ApiState>,
    ProblemJson(req): ProblemJson<Originate>,
) -> Result<Response, ApiError> {
    let req = check_originate(&req)?;
    let id = s.calls.originate(req).await?;
    Ok((StatusCode::CREATED, Json(Created { id: id.to_string() })).into_response())
}

/// Hangs a call up (BYE once answered; CANCEL or a final response while it rings).
#[utoipa::path(
    delete,
    path = "/v1/calls/{id}",
    tag = "calls",
    security(("api_key" = ["control"])),
    params(("id" = String, Path, description = "The call's id"), HangupParams),
    responses(
        (status = 204, description = "Hanging up"),
        (status = 400, description = "Unknown cause", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such live call", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The call is already ending", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn hangup(
    _: ControlKey,
    State(s): State<ApiState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<HangupParams>,
) -> Result<StatusCode, ApiError> {
    let id = call_id(&id)?;
    let cause = match q.cause.as_deref().unwrap_or("normal") {
        "normal" | "normal_clearing" => HangupCause::Normal,
        "busy" => HangupCause::Busy,
        "rejected" => HangupCause::Rejected,
        "unavailable" => HangupCause::Unavailable,
        "not_found" => HangupCause::NotFound,
        other => return Err(ApiError::bad_request(format!("unknown cause `{other}`"))),
    };
    s.calls
        .control(id, ControlCommand::Hangup { cause })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Plays a prompt, tone or speech to one party; returns a playback id that can be stopped.
#[utoipa::path(
    post,
    path = "/v1/calls/{id}/play",
    tag = "calls",
    security(("api_key" = ["control"])),
    params(("id" = String, Path, description = "The call's id")),
    request_body = Play,
    responses(
        (status = 201, description = "Playing (`playback.started` / `playback.finished` follow)", body = PlaybackCreated),
        (status = 400, description = "Unusable prompt", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such live call, or no such prompt file", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The call or that party is not answered", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn play(
    _: ControlKey,
    State(s): State<ApiState>,
    Path(id): Path<String>,
    ProblemJson(req): ProblemJson<Play>,
) -> Result<Response, ApiError> {
    let id = call_id(&id)?;
    let prompt = prompt(&s, &req)?;
    let party = req.leg.unwrap_or(CallParty::Caller);
    match s
        .calls
        .control(id, ControlCommand::Play { prompt, party })
        .await?
    {
        ControlReply::Playback(PlaybackId(p)) => Ok((
            StatusCode::CREATED,
            Json(PlaybackCreated {
                playback_id: p.to_string(),
            }),
        )
            .into_response()),
        _ => Err(ApiError::internal("unexpected reply to Play")),
    }
}

/// Stops a playback.
#[utoipa::path(
    delete,
    path = "/v1/calls/{id}/playbacks/{playback_id}",
    tag = "calls",
    security(("api_key" = ["control"])),
    params(
        ("id" = String, Path, description = "The call's id"),
        ("playback_id" = String, Path, description = "The playback's id"),
    ),
    responses(
        (status = 204, description = "Stopped"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such live call or running playback", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The call is ending", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn stop_playback(
    _: ControlKey,
    State(s): State<ApiState>,
    Path((id, playback)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = call_id(&id)?;
    let playback = playback
        .parse::<u64>()
        .map_err(|_| ApiError::not_found("no such playback running"))?;
    s.calls
        .control(
            id,
            ControlCommand::StopPlayback {
                id: PlaybackId(playback),
            },
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sends DTMF digits to one party (RFC 4733 when it negotiated telephone-event, else in-band).
#[utoipa::path(
    post,
    path = "/v1/calls/{id}/dtmf",
    tag = "calls",
    security(("api_key" = ["control"])),
    params(("id" = String, Path, description = "The call's id")),
    request_body = Dtmf,
    responses(
        (status = 204, description = "Sending"),
        (status = 400, description = "Not DTMF digits", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such live call", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The call or that party is not answered", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn send_dtmf(
    _: ControlKey,
    State(s): State<ApiState>,
    Path(id): Path<String>,
    ProblemJson(req): ProblemJson<Dtmf>,
) -> Result<StatusCode, ApiError> {
    let id = call_id(&id)?;
    if req.digits.is_empty() || req.digits.len() > 32 {
        return Err(ApiError::bad_request("`digits` is 1-32 DTMF digits"));
    }
    s.calls
        .control(
            id,
            ControlCommand::SendDtmf {
                digits: req.digits,
                party: req.leg.unwrap_or(CallParty::Caller),
            },
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Starts, stops, pauses or resumes the call's recording (stereo: caller left, callee right).
#[utoipa::path(
    post,
    path = "/v1/calls/{id}/record",
    tag = "calls",
    security(("api_key" = ["control"])),
    params(("id" = String, Path, description = "The call's id")),
    request_body = Record,
    responses(
        (status = 204, description = "Done (`recording.*` events follow)"),
        (status = 400, description = "Unknown action", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such live call", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not possible now (not answered, already recording, nothing recorded)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn record(
    _: ControlKey,
    State(s): State<ApiState>,
    Path(id): Path<String>,
    ProblemJson(req): ProblemJson<Record>,
) -> Result<StatusCode, ApiError> {
    let id = call_id(&id)?;
    s.calls
        .control(id, ControlCommand::Record(req.action))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Runs a dialplan flow on the call; a bridged callee (or the call this one is bridged with)
/// is hung up, a ringing dial given up.
#[utoipa::path(
    post,
    path = "/v1/calls/{id}/redirect",
    tag = "calls",
    security(("api_key" = ["control"])),
    params(("id" = String, Path, description = "The call's id")),
    request_body = Redirect,
    responses(
        (status = 204, description = "The flow runs (`call.transferred`, `ivr.step` events follow)"),
        (status = 400, description = "Unusable request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such live call or flow", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not possible now", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn redirect(
    _: ControlKey,
    State(s): State<ApiState>,
    Path(id): Path<String>,
    ProblemJson(req): ProblemJson<Redirect>,
) -> Result<StatusCode, ApiError> {
    let id = call_id(&id)?;
    s.calls
        .control(id, ControlCommand::Redirect { flow: req.flow })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Holds or resumes one party through the API.
async fn set_hold(
    s: &ApiState,
    id: &str,
    choice: LegChoice,
    held: bool,
) -> Result<StatusCode, ApiError> {
    let id = call_id(id)?;
    let party = choice.leg.unwrap_or(CallParty::Caller);
    s.calls
        .control(id, ControlCommand::Hold { party, held })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Holds one party (default the caller): it hears music on hold and what it says is not
/// passed on. Local hold: no re-INVITE goes to the party's phone (as with Asterisk's and
/// FreeSWITCH's API hold). `call.held` with `held: true` follows.
#[utoipa::path(
    post,
    path = "/v1/calls/{id}/hold",
    tag = "calls",
    security(("api_key" = ["control"])),
    params(("id" = String, Path, description = "The call's id")),
    request_body = LegChoice,
    responses(
        (status = 204, description = "Held (holding a held party changes nothing)"),
        (status = 400, description = "Unusable request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such live call", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The call or that party is not answered", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn hold(
    _: ControlKey,
    State(s): State<ApiState>,
    Path(id): Path<String>,
    ProblemJson(choice): ProblemJson<LegChoice>,
) -> Result<StatusCode, ApiError> {
    set_hold(&s, &id, choice, true).await
}

/// Resumes a party held through the API. `call.held` with `held: false` follows.
#[utoipa::path(
    post,
    path = "/v1/calls/{id}/resume",
    tag = "calls",
    security(("api_key" = ["control"])),
    params(("id" = String, Path, description = "The call's id")),
    request_body = LegChoice,
    responses(
        (status = 204, description = "Resumed (resuming a party not held changes nothing)"),
        (status = 400, description = "Unusable request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such live call", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The call or that party is not answered", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn resume(
    _: ControlKey,
    State(s): State<ApiState>,
    Path(id): Path<String>,
    ProblemJson(choice): ProblemJson<LegChoice>,
) -> Result<StatusCode, ApiError> {
    set_hold(&s, &id, choice, false).await
}

/// Mutes or unmutes one party through the API.
async fn set_mute(
    s: &ApiState,
    id: &str,
    choice: LegChoice,
    muted: bool,
) -> Result<StatusCode, ApiError> {
    let id = call_id(id)?;
    let party = choice.leg.unwrap_or(CallParty::Caller);
    s.calls
        .control(id, ControlCommand::Mute { party, muted })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Mutes one party (default the caller): the other hears silence instead of it (DTMF still
/// crosses). `call.muted` follows.
#[utoipa::path(
    post,
    path = "/v1/calls/{id}/mute",
    tag = "calls",
    security(("api_key" = ["control"])),
    params(("id" = String, Path, description = "The call's id")),
    request_body = LegChoice,
    responses(
        (status = 204, description = "Muted (muting a muted party changes nothing)"),
        (status = 400, description = "Unusable request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such live call", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The call or that party is not answered", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn mute(
    _: ControlKey,
    State(s): State<ApiState>,
    Path(id): Path<String>,
    ProblemJson(choice): ProblemJson<LegChoice>,
) -> Result<StatusCode, ApiError> {
    set_mute(&s, &id, choice, true).await
}

/// Unmutes one party. `call.unmuted` follows.
#[utoipa::path(
    post,
    path = "/v1/calls/{id}/unmute",
    tag = "calls",
    security(("api_key" = ["control"])),
    params(("id" = String, Path, description = "The call's id")),
    request_body = LegChoice,
    responses(
        (status = 204, description = "Unmuted (unmuting a party not muted changes nothing)"),
        (status = 400, description = "Unusable request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such live call", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The call or that party is not answered", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn unmute(
    _: ControlKey,
    State(s): State<ApiState>,
    Path(id): Path<String>,
    ProblemJson(choice): ProblemJson<LegChoice>,
) -> Result<StatusCode, ApiError> {
    set_mute(&s, &id, choice, false).await
}

/// Transfers the caller.
///
/// **Blind** (default): a bridged callee (or the call this one is bridged with, e.g. after an
/// attended transfer) is hung up, a ringing dial given up, then the caller is dialled to
/// extension `to` (hearing ringback; if nobody answers the call ends) or runs `flow`.
/// `call.transferred` follows.
///
/// **Attended** (`"attended": true`, a call whose callee answered): the caller is held (music
/// on hold) and a consultation call from the callee's extension rings `to` (an extension or a
/// SIP URI) while the callee hears ringback; once it answers, the callee and `to` talk.
/// `POST .../transfer/complete` then hangs up the callee and bridges the caller with `to`
/// (`call.transferred` with `kind: attended`); `POST .../transfer/cancel` hangs up the
/// consultation call and caller and callee talk again. Should the consultation call fail or
/// end, caller and callee talk again too. Should the callee hang up, the transfer completes:
/// at once if `to` answered, else when it answers (the caller waits on hold; if `to` fails,
/// the call ends). Should the caller hang up, the consultation ends with the call.
/// `call.consultation` events (`state`: `started`, `answered`, `cancelled`, `ended`) follow
/// the consultation.
#[utoipa::path(
    post,
    path = "/v1/calls/{id}/transfer",
    tag = "calls",
    security(("api_key" = ["control"])),
    params(("id" = String, Path, description = "The call's id")),
    request_body = Transfer,
    responses(
        (status = 202, description = "Attended: consulting", body = TransferStarted),
        (status = 204, description = "Blind: transferring"),
        (status = 400, description = "Unusable request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such live call, extension or flow", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not possible now (not answered, no answered callee for an attended transfer, one already in progress, a conference call, `to` not registered)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn transfer(
    _: ControlKey,
    State(s): State<ApiState>,
    Path(id): Path<String>,
    ProblemJson(req): ProblemJson<Transfer>,
) -> Result<Response, ApiError> {
    let id = call_id(&id)?;
    if req.attended {
        let (Some(to), None) = (req.to, req.flow) else {
            return Err(ApiError::bad_request(
                "an attended transfer takes `to` (an extension or a SIP URI), not `flow`",
            ));
        };
        check_target("to", &to)?;
        let consult = s.calls.attended_transfer(id, to).await?;
        return Ok((
            StatusCode::ACCEPTED,
            Json(TransferStarted {
                consultation_call_id: consult.to_string(),
            }),
        )
            .into_response());
    }
    let target = match (req.to, req.flow) {
        (Some(to), None) => {
            check_user("to", &to)?;
            TransferTarget::Extension(crate::domain::Extension::new(to))
        }
        (None, Some(flow)) => TransferTarget::Flow(flow),
        _ => return Err(ApiError::bad_request("give exactly one of `to`, `flow`")),
    };
    s.calls.transfer(id, target).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Completes the attended transfer in progress: the callee is hung up and the caller is
/// bridged with the consultation call (`call.transferred` with `kind: attended`; when either
/// call ends the other is hung up).
#[utoipa::path(
    post,
    path = "/v1/calls/{id}/transfer/complete",
    tag = "calls",
    security(("api_key" = ["control"])),
    params(("id" = String, Path, description = "The transferring call's id")),
    responses(
        (status = 204, description = "Transferred"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such live call", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "No attended transfer in progress, or its consultation call is not answered yet", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn complete_transfer(
    _: ControlKey,
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.calls
        .control(call_id(&id)?, ControlCommand::CompleteTransfer)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Cancels the attended transfer in progress: the consultation call is hung up (or its
/// ringing given up) and the caller, no longer held, talks to the callee again
/// (`call.consultation` with `state: cancelled`).
#[utoipa::path(
    post,
    path = "/v1/calls/{id}/transfer/cancel",
    tag = "calls",
    security(("api_key" = ["control"])),
    params(("id" = String, Path, description = "The transferring call's id")),
    responses(
        (status = 204, description = "Cancelled"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such live call", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "No attended transfer in progress", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn cancel_transfer(
    _: ControlKey,
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.calls
        .control(call_id(&id)?, ControlCommand::CancelTransfer)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Bridges two live calls, each answered by us without a callee (two placed calls, two
/// callers in a flow): what runs on them stops and they hear each other (through a private
/// conference room). When either call ends, the other is hung up. `call.bridged` follows on
/// both.
#[utoipa::path(
    post,
    path = "/v1/bridges",
    tag = "calls",
    security(("api_key" = ["control"])),
    request_body = NewBridge,
    responses(
        (status = 201, description = "Bridged", body = BridgeCreated),
        (status = 400, description = "Not two different call ids", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such live call", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A call is not answered, has a callee or is in a conference", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn bridge(
    _: ControlKey,
    State(s): State<ApiState>,
    ProblemJson(req): ProblemJson<NewBridge>,
) -> Result<Response, ApiError> {
    let [a, b] = req.call_ids.as_slice() else {
        return Err(ApiError::bad_request("`call_ids` holds exactly two calls"));
    };
    let (a, b) = (call_id(a)?, call_id(b)?);
    let id = s.calls.bridge(a, b).await?;
    Ok((
        StatusCode::CREATED,
        Json(BridgeCreated {
            id,
            call_ids: vec![a.to_string(), b.to_string()],
        }),
    )
        .into_response())
}
