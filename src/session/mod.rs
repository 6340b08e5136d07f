//! Calls and sessions: the call actor (one tokio task per call, nobody else holds the call) and
//! the registry that spawns them and reaches them at shutdown.
//!
//! A call is a B2BUA (RFC 3261 §6 "back-to-back user agent", RFC 7092): the caller's leg (A)
//! is a UAS dialog, each callee contact is a forked UAC INVITE (B legs, §16.7-style final
//! response selection), the first 2xx wins and the other forks are CANCELled (§9.1). Media is
//! anchored: both sides see the server's address in SDP (RFC 3264) and RTP flows through
//! the call's [`crate::media::engine::MediaSession`] (relayed when both sides share a codec,
//! transcoded otherwise, recorded when asked). Every call belongs to a session (DESIGN §4); the call record is
//! written through the store's writer task and never awaited.

mod call;
pub mod core;
pub mod service;
pub mod trunks;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::ivr::plan::{HangupCause, Prompt};
use crate::media::engine::PipelineConfig;
use crate::media::engine::conference::Rooms;
use crate::media::ports::PortPool;
use crate::sip::endpoint::{EndpointHandle, IncomingInvite};
use crate::sip::registrar::{Location, Registrar};
use crate::sip::transport::Peer;
use crate::store::{CallId, LegId, SessionId, WriterHandle};

/// What the server, the API and other calls tell a call (its SIP transactions and dialogs
/// report on a channel of their own, [`crate::sip::endpoint::TuEvent`]).
#[derive(Debug)]
pub enum CallInput {
    /// The server is shutting down: hang up.
    Shutdown,
    /// Call `from`, tied to this one, ended (or let go of it): the call it is bridged with
    /// (`POST /v1/bridges`, or after an attended transfer) — hang up too; its attended
    /// transfer's consultation call — caller and callee talk again; the call it consults
    /// for — hang up. Ignored unless `from` is the call this one is tied to now (a late
    /// message from an earlier tie).
    BridgePeerGone { from: CallId },
    /// This call's attended-transfer consultation call `from` was answered.
    ConsultAnswered { from: CallId },
    /// A command from the call-control API; the answer goes back on `reply`.
    Control {
        cmd: ControlCommand,
        reply: oneshot::Sender<Result<ControlReply, ControlError>>,
    },
}

/// One of the two parties of a call: the caller (leg A; the originated party for a call the
/// server placed) or the callee (leg B, the party dialled).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum CallParty {
    Caller,
    Callee,
}

impl CallParty {
    /// The API's name for it (as serialised).
    pub fn as_str(self) -> &'static str {
        match self {
            CallParty::Caller => "caller",
            CallParty::Callee => "callee",
        }
    }
}

/// What happens to the call's recording.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum RecordAction {
    Start,
    Stop,
    Pause,
    Resume,
}

/// A playback started through the API (unique within its call).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PlaybackId(pub u64);

/// A command for a live call.
#[derive(Debug)]
pub enum ControlCommand {
    /// The call's current state.
    Info,
    /// Hangs up both parties (CANCEL / a final response while unanswered).
    Hangup { cause: HangupCause },
    /// Plays a prompt (file, tone or `say:` text) to one party, replacing what it hears.
    Play { prompt: Prompt, party: CallParty },
    /// Stops a playback started with [`ControlCommand::Play`].
    StopPlayback { id: PlaybackId },
    /// Sends DTMF digits (`0-9 * # A-D`) to one party, in the form it negotiated.
    SendDtmf { digits: String, party: CallParty },
    /// Starts, stops, pauses or resumes the call's recording.
    Record(RecordAction),
    /// Runs a dialplan flow on the call (a bridged callee is hung up first).
    Redirect { flow: String },
    /// Holds (or resumes) one party: it hears music on hold and what it says is not passed
    /// on. Local only: no re-INVITE is sent (the Asterisk / FreeSWITCH way for API hold), so
    /// the party's phone does not show the call as held.
    Hold { party: CallParty, held: bool },
    /// Mutes (or unmutes) one party: the other hears silence instead of it.
    Mute { party: CallParty, muted: bool },
    /// Blind transfer of the caller: a bridged callee is hung up (BYE), a ringing dial given
    /// up, then the caller is dialled to the extension (hearing ringback) or runs the flow.
    Transfer(TransferTarget),
    /// Joins this answered one-leg call to the private room `room` shared with call `peer`
    /// (`POST /v1/bridges`); when either ends, the other is hung up.
    Bridge {
        room: String,
        peer: CallId,
        peer_owner: CallHandle,
    },
    /// Starts an attended transfer of the caller: it is held (music on hold), the callee
    /// hears ringback while the consultation call `consult` (placed by the registry right
    /// after) rings `to`, then talks to it through the private room `room`.
    Consult {
        room: String,
        consult: CallId,
        consult_owner: CallHandle,
        to: String,
    },
    /// Completes the attended transfer: the callee is hung up and the caller joins the
    /// answered consultation call (the two are then bridged).
    CompleteTransfer,
    /// Cancels the attended transfer: the consultation call is hung up, caller and callee
    /// talk again.
    CancelTransfer,
}

/// Where a blind transfer sends the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferTarget {
    /// An extension (known to exist and be registered when the command is sent; should its
    /// phone unregister before the dial, the call ends with cause `unavailable`).
    Extension(crate::domain::Extension),
    /// A flow of the dialplan.
    Flow(String),
}

/// The answer to a [`ControlCommand`].
#[derive(Debug, Clone, PartialEq)]
pub enum ControlReply {
    Done,
    Info(CallInfo),
    Playback(PlaybackId),
}

/// Why a command could not be carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// No such live call (or it ended while the command was on its way).
    #[error("no such live call")]
    NoSuchCall,
    /// No such playback, recording, or flow.
    #[error("{0}")]
    NotFound(String),
    /// Not possible in the call's current state.
    #[error("{0}")]
    Conflict(String),
    /// The command itself is unusable.
    #[error("{0}")]
    Invalid(String),
}

/// A live call as the API shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CallInfo {
    pub id: CallId,
    pub session_id: SessionId,
    /// `starting`, `ringing`, `ivr`, `answered`, `bridged`, `ending`.
    pub state: &'static str,
    /// `inbound`, `internal` or `outbound`.
    pub direction: &'static str,
    pub caller: String,
    pub callee: String,
    /// Unix ms.
    pub started_ms: i64,
    /// Unix ms, once answered.
    pub answered_ms: Option<i64>,
    /// The flow running now, if any.
    pub flow: Option<String>,
    pub legs: Vec<LegInfo>,
}

/// One leg of a live call.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LegInfo {
    pub id: LegId,
    pub party: CallParty,
    /// What the leg is (a SIP dialog, a queue, a browser, …).
    pub kind: crate::domain::LegKind,
    /// The SIP Call-ID of the leg's dialog (SIP legs only).
    pub sip_call_id: Option<String>,
    /// The party's extension or user, if known.
    pub user: Option<String>,
    /// `ringing`, `answered` or `held`.
    pub state: &'static str,
    /// What the party says is not passed on (muted, or held through the API).
    pub muted: bool,
}

/// A call the server places (`POST /v1/calls`).
#[derive(Debug, Clone)]
pub struct OriginateRequest {
    /// Who the call is from (the From user the called party sees unless `caller_id`).
    pub from: String,
    /// The extension to ring.
    pub to: String,
    /// Runs this flow once answered.
    pub flow: Option<String>,
    /// Or: dials this extension once answered and bridges the two.
    pub connect_to: Option<String>,
    /// Or: once answered, runs a one-step flow `webhook = URL` (the reply's steps run, as for
    /// an IVR webhook).
    pub webhook: Option<String>,
    /// How long `to` (and `connect_to`) may ring.
    pub ring_timeout: Duration,
    /// Display name shown to the called party.
    pub caller_id: Option<String>,
    /// Extra headers on the INVITE (names checked by the caller: `X-` headers).
    pub headers: Vec<(String, String)>,
    /// This is the consultation call of another call's attended transfer.
    pub consult_for: Option<ConsultFor>,
    /// Place the call inside this session (a "call me" from a chat): one timeline.
    pub session: Option<SessionId>,
    /// The ACD contact this call serves (a callback): the ACD hears when it ends.
    pub acd_contact: Option<u64>,
}

/// What ties a consultation call to the call whose attended transfer it serves.
#[derive(Debug, Clone)]
pub struct ConsultFor {
    /// The transferring call.
    pub call: CallId,
    pub owner: CallHandle,
    /// The consultation call belongs to that call's session (one timeline).
    pub session_id: SessionId,
    /// The private room it talks in, to the transferring call's callee and then its caller.
    pub room: String,
}

/// Why a call could not be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginateError {
    #[error("no such extension: {0}")]
    UnknownExtension(String),
    #[error("extension {0} is not registered")]
    NotRegistered(String),
    #[error("no such flow: {0}")]
    UnknownFlow(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the server is not ready to place calls")]
    Unavailable,
}

/// Whether an originate `to` is a SIP URI (`sip:` / `sips:`) rather than an extension.
pub fn is_sip_uri(to: &str) -> bool {
    let starts = |p: &str| to.get(..p.len()).is_some_and(|s| s.eq_ignore_ascii_case(p));
    starts("sip:") || starts("sips:")
}

/// Where a call to a SIP URI goes: straight to the URI's host and port (RFC 3261 §8.1.2
/// without the RFC 3263 SRV/NAPTR steps: the host's addresses, port 5060 unless given), over
/// UDP or, with `;transport=tcp`, TCP. `sips:` is refused (no TLS transport).
async fn sip_uri_target(to: &str) -> Result<Location, OriginateError> {
    use crate::sip::message::{Host, Uri, parse_uri};
    use crate::sip::transport::Transport;
    let uri = parse_uri(to).map_err(|e| OriginateError::Invalid(format!("`to`: {e}")))?;
    let Uri::Sip(sip) = &uri else {
        return Err(OriginateError::Invalid("`to` is not a SIP URI".into()));
    };
    if sip.secure {
        return Err(OriginateError::Invalid(
            "`to`: sips: URIs are not supported (no TLS transport)".into(),
        ));
    }
    let transport = match sip.param("transport").flatten() {
        None => Transport::Udp,
        Some(t) if t.eq_ignore_ascii_case("udp") => Transport::Udp,
        Some(t) if t.eq_ignore_ascii_case("tcp") => Transport::Tcp,
        Some(t) => {
            return Err(OriginateError::Invalid(format!(
                "`to`: transport `{t}` is not supported (udp, tcp)"
            )));
        }
    };
    let port = sip.port.unwrap_or(5060);
    let addr = match &sip.host {
        Host::V4(a) => SocketAddr::new((*a).into(), port),
        Host::V6(a) => SocketAddr::new((*a).into(), port),
        Host::Domain(d) if d.is_empty() => {
            return Err(OriginateError::Invalid("`to` names no host".into()));
        }
        Host::Domain(d) => tokio::net::lookup_host((d.as_str(), port))
            .await
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| OriginateError::Invalid(format!("`to`: cannot resolve host {d}")))?,
    };
    Ok(Location {
        ext: crate::domain::Extension::new(to),
        contact: to.to_owned(),
        uri: uri.clone(),
        source: Peer { transport, addr },
        expires_at_ms: 0,
        call_id: String::new(),
        cseq: 0,
        q: None,
        user_agent: None,
    })
}

/// Everything calls share.
pub struct CallContext {
    pub registrar: Arc<Registrar>,
    pub writer: WriterHandle,
    /// Opens the sessions calls belong to and keeps their attributes.
    pub sessions: service::SessionService,
    pub ports: PortPool,
    /// Address advertised in SDP.
    pub media_ip: IpAddr,
    /// Address the RTP sockets bind to.
    pub rtp_bind_ip: IpAddr,
    pub no_answer_timeout: Duration,
    pub media: MediaContext,
    /// The dialplan new calls take (reloaded on change).
    pub plan: crate::ivr::reload::PlanHandle,
    /// Where a flow's `send_message` texts go (the chat side); None: not sent (logged).
    pub texts: Option<mpsc::UnboundedSender<TextToCaller>>,
    /// The ACD that `queue` steps put callers in (None: a `queue` step fails over to its
    /// exit).
    pub acd: Option<crate::acd::service::Acd>,
}

/// A text a call's flow sends its caller on a messaging channel (`send_message`): handed to
/// the chat side, which writes it to a conversation of that channel in the call's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextToCaller {
    pub session_id: SessionId,
    pub call_id: CallId,
    pub channel: String,
    /// The caller's number in E.164.
    pub to: String,
    pub text: String,
}

/// What calls need from the media engine, shared.
pub struct MediaContext {
    /// The pipeline settings every call starts from.
    pub pipeline: PipelineConfig,
    /// Record every bridged call (`recording.record_calls`, `serve --record-calls`).
    pub record_calls: bool,
    /// Recording settings (rate, mixed companion).
    pub recording: crate::config::RecordingConfig,
    /// Recordings go under `<data_dir>/recordings/`.
    pub data_dir: std::path::PathBuf,
    /// Offer codecs the caller lacks to the callee and transcode (`media.transcoding`).
    pub transcoding: bool,
    /// Dialled numbers starting with this join the conference room named by the rest
    /// (`media.conference_prefix`); empty disables.
    pub conference_prefix: String,
    /// The live conference rooms.
    pub rooms: Rooms,
    /// Prompts under the media directory, decoded once.
    pub prompts: Arc<crate::media::player::PromptCache>,
}

/// Where a call actor receives [`CallInput`]s.
pub type CallHandle = mpsc::UnboundedSender<CallInput>;

fn unregister(live: &Mutex<HashMap<CallId, CallHandle>>, id: CallId) {
    live.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    metrics::gauge!("switchboard_active_calls").decrement(1.0);
}

/// Spawns calls and keeps a way to reach each live one.
#[derive(Clone)]
pub struct CallRegistry {
    ctx: Arc<CallContext>,
    live: Arc<Mutex<HashMap<CallId, CallHandle>>>,
    tracker: tokio_util::task::TaskTracker,
    /// The SIP endpoint every call sends through.
    endpoint: EndpointHandle,
}

/// How long the API waits for a call actor to answer a command.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);

impl CallRegistry {
    pub fn new(ctx: CallContext, endpoint: EndpointHandle) -> CallRegistry {
        CallRegistry {
            ctx: Arc::new(ctx),
            live: Arc::new(Mutex::new(HashMap::new())),
            tracker: tokio_util::task::TaskTracker::new(),
            endpoint,
        }
    }

    /// Takes the INVITEs the endpoint hands over, one call actor each, until the endpoint
    /// stops.
    pub async fn take_invites(self, mut invites: mpsc::UnboundedReceiver<IncomingInvite>) {
        while let Some(invite) = invites.recv().await {
            self.spawn(invite);
        }
    }

    /// Starts a call actor for a new INVITE.
    fn spawn(&self, invite: IncomingInvite) {
        let (handle, inbox) = mpsc::unbounded_channel();
        let id = CallId::new();
        self.register(id, handle);
        let ctx = self.ctx.clone();
        let live = self.live.clone();
        let ep = self.endpoint.clone();
        let session = self.ctx.sessions.allocate();
        let sip_call_id = invite.req.headers.call_id().unwrap_or_default().to_owned();
        // Every log line of the call, its media task's included, names it.
        let span = tracing::info_span!("call", id = %id, sip_call_id = %sip_call_id);
        self.tracker.spawn(tracing::Instrument::instrument(
            async move {
                call::run(ctx, ep, invite, inbox, id, session).await;
                unregister(&live, id);
            },
            span,
        ));
    }

    /// Places a call (`POST /v1/calls`): checks the request, then starts a call actor that
    /// rings `to` and returns the call's id at once (the call's progress is in its events).
    pub async fn originate(&self, req: OriginateRequest) -> Result<CallId, OriginateError> {
        let (ep, targets) = self.prepare(&req).await?;
        let (owner, inbox) = mpsc::unbounded_channel();
        let id = CallId::new();
        self.spawn_originate(ep, owner, inbox, id, req, targets);
        Ok(id)
    }

    /// Checks a call to place: where its INVITEs go (every registered contact of an
    /// extension: they ring together; a SIP URI's host), through which endpoint.
    async fn prepare(
        &self,
        req: &OriginateRequest,
    ) -> Result<(EndpointHandle, Vec<Location>), OriginateError> {
        let ep = self.endpoint.clone();
        if ep.draining() {
            return Err(OriginateError::Unavailable);
        }
        let plan = self.ctx.plan.current();
        if let Some(flow) = &req.flow
            && !plan.flows.contains_key(flow)
        {
            return Err(OriginateError::UnknownFlow(flow.clone()));
        }
        let direct = if is_sip_uri(&req.to) {
            Some(sip_uri_target(&req.to).await?)
        } else {
            None
        };
        let extensions = direct
            .is_none()
            .then_some(&req.to)
            .into_iter()
            .chain(&req.connect_to);
        for ext in extensions {
            let extension = crate::domain::Extension::new(ext.as_str());
            if self.ctx.registrar.user(&extension).await.is_none() {
                return Err(OriginateError::UnknownExtension(ext.clone()));
            }
        }
        let targets = match direct {
            Some(target) => vec![target],
            None => self
                .ctx
                .registrar
                .lookup(&crate::domain::Extension::new(req.to.as_str())),
        };
        if targets.is_empty() {
            return Err(OriginateError::NotRegistered(req.to.clone()));
        }
        Ok((ep, targets))
    }

    /// Starts the actor of a call to place (checked by [`Self::prepare`]).
    fn spawn_originate(
        &self,
        ep: EndpointHandle,
        handle: CallHandle,
        inbox: mpsc::UnboundedReceiver<CallInput>,
        id: CallId,
        req: OriginateRequest,
        targets: Vec<Location>,
    ) {
        self.register(id, handle);
        let ctx = self.ctx.clone();
        let live = self.live.clone();
        // A consultation call belongs to the session of the call it serves (one timeline).
        let session = match (&req.consult_for, req.session) {
            (Some(of), _) => of.session_id,
            (None, Some(session)) => session,
            (None, None) => self.ctx.sessions.allocate(),
        };
        let span = tracing::info_span!("call", id = %id, placed = true);
        self.tracker.spawn(tracing::Instrument::instrument(
            async move {
                call::run_originate(ctx, ep, inbox, id, session, req, targets).await;
                unregister(&live, id);
            },
            span,
        ));
    }

    /// Starts an attended transfer of call `id`'s caller to `to` (an extension or a SIP URI):
    /// the caller is held, a consultation call from the callee rings `to` and, once answered,
    /// talks with the callee; [`ControlCommand::CompleteTransfer`] or
    /// [`ControlCommand::CancelTransfer`] ends it. Returns the consultation call's id.
    pub async fn attended_transfer(&self, id: CallId, to: String) -> Result<CallId, ControlError> {
        let owner = self.owner(id)?;
        let info = match self.control(id, ControlCommand::Info).await? {
            ControlReply::Info(info) => info,
            _ => return Err(ControlError::NoSuchCall),
        };
        let from = info
            .legs
            .get(1)
            .and_then(|l| l.user.clone())
            .unwrap_or_else(|| info.callee.clone());
        let mut req = OriginateRequest {
            from,
            to: to.clone(),
            flow: None,
            connect_to: None,
            webhook: None,
            ring_timeout: self.ctx.no_answer_timeout,
            caller_id: None,
            headers: Vec::new(),
            consult_for: None,
            session: None,
            acd_contact: None,
        };
        let (ep, targets) = self.prepare(&req).await.map_err(|e| match e {
            OriginateError::UnknownExtension(_) | OriginateError::UnknownFlow(_) => {
                ControlError::NotFound(e.to_string())
            }
            OriginateError::Invalid(_) => ControlError::Invalid(e.to_string()),
            OriginateError::NotRegistered(_) | OriginateError::Unavailable => {
                ControlError::Conflict(e.to_string())
            }
        })?;
        let (consult_owner, inbox) = mpsc::unbounded_channel();
        let consult = CallId::new();
        let room = format!("transfer:{consult}");
        let (reply, answer) = oneshot::channel();
        owner
            .send(CallInput::Control {
                cmd: ControlCommand::Consult {
                    room: room.clone(),
                    consult,
                    consult_owner: consult_owner.clone(),
                    to,
                },
                reply,
            })
            .map_err(|_| ControlError::NoSuchCall)?;
        req.consult_for = Some(ConsultFor {
            call: id,
            owner,
            session_id: info.session_id,
            room,
        });
        // Once the call took the command, the consultation call must start even if this
        // request goes away (a client that disconnects, a slow answer): detached.
        let me = self.clone();
        let started = tokio::spawn(async move {
            match answer.await {
                Ok(Ok(_)) => {
                    me.spawn_originate(ep, consult_owner, inbox, consult, req, targets);
                    Ok(consult)
                }
                Ok(Err(e)) => Err(e),
                Err(_) => Err(ControlError::NoSuchCall),
            }
        });
        match tokio::time::timeout(CONTROL_TIMEOUT, started).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) | Err(_) => Err(ControlError::Conflict(
                "the call did not answer in time; its events tell whether the transfer started"
                    .into(),
            )),
        }
    }

    /// Where call `id`'s inputs go.
    fn owner(&self, id: CallId) -> Result<CallHandle, ControlError> {
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
            .ok_or(ControlError::NoSuchCall)
    }

    /// Sends a command to a live call and waits (bounded) for its answer.
    pub async fn control(
        &self,
        id: CallId,
        cmd: ControlCommand,
    ) -> Result<ControlReply, ControlError> {
        let owner = self.owner(id)?;
        let (reply, answer) = oneshot::channel();
        owner
            .send(CallInput::Control { cmd, reply })
            .map_err(|_| ControlError::NoSuchCall)?;
        match tokio::time::timeout(CONTROL_TIMEOUT, answer).await {
            Ok(Ok(result)) => result,
            // The call ended (or was still being authenticated) before it answered.
            Ok(Err(_)) | Err(_) => Err(ControlError::NoSuchCall),
        }
    }

    /// Blind transfer (see [`ControlCommand::Transfer`]): checks that the extension or flow
    /// exists, then tells the call.
    pub async fn transfer(
        &self,
        id: CallId,
        target: TransferTarget,
    ) -> Result<ControlReply, ControlError> {
        match &target {
            TransferTarget::Extension(ext) => {
                if self.ctx.registrar.user(ext).await.is_none() {
                    return Err(ControlError::NotFound(format!("no such extension: {ext}")));
                }
                if self.ctx.registrar.lookup(ext).is_empty() {
                    return Err(ControlError::Conflict(format!(
                        "extension {ext} is not registered"
                    )));
                }
            }
            TransferTarget::Flow(flow) => {
                if !self.ctx.plan.current().flows.contains_key(flow) {
                    return Err(ControlError::NotFound(format!("no such flow: {flow}")));
                }
            }
        }
        self.control(id, ControlCommand::Transfer(target)).await
    }

    /// Bridges two live calls, each an answered caller leg without a callee (two placed
    /// calls, two callers in a flow): both join a private conference room. Returns the
    /// bridge's id (its room's name).
    pub async fn bridge(&self, a: CallId, b: CallId) -> Result<String, ControlError> {
        if a == b {
            return Err(ControlError::Invalid(
                "a call cannot be bridged with itself".into(),
            ));
        }
        let (owner_a, owner_b) = (self.owner(a)?, self.owner(b)?);
        for id in [a, b] {
            match self.control(id, ControlCommand::Info).await? {
                ControlReply::Info(info)
                    if info.answered_ms.is_some()
                        && info.legs.len() == 1
                        && matches!(info.state, "answered" | "ivr") => {}
                _ => {
                    return Err(ControlError::Conflict(format!(
                        "call {id} is not an answered call without a callee"
                    )));
                }
            }
        }
        let room = format!("bridge:{}", CallId::new());
        let cmd = |peer: CallId, peer_owner: CallHandle| ControlCommand::Bridge {
            room: room.clone(),
            peer,
            peer_owner,
        };
        self.control(a, cmd(b, owner_b)).await?;
        if let Err(e) = self.control(b, cmd(a, owner_a.clone())).await {
            // Changed in between: the first call is not left alone in the room.
            let _ = owner_a.send(CallInput::BridgePeerGone { from: b });
            return Err(e);
        }
        Ok(room)
    }

    /// Every live call's state (calls that do not answer in time, e.g. still being
    /// authenticated, are left out).
    pub async fn list(&self) -> Vec<CallInfo> {
        let ids: Vec<CallId> = self
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect();
        let mut asks = tokio::task::JoinSet::new();
        for id in ids {
            let me = self.clone();
            asks.spawn(async move {
                match tokio::time::timeout(
                    Duration::from_secs(1),
                    me.control(id, ControlCommand::Info),
                )
                .await
                {
                    Ok(Ok(ControlReply::Info(info))) => Some(info),
                    _ => None,
                }
            });
        }
        let mut calls = Vec::new();
        while let Some(done) = asks.join_next().await {
            if let Ok(Some(info)) = done {
                calls.push(info);
            }
        }
        calls.sort_by_key(|c| (c.started_ms, c.id));
        calls
    }

    fn register(&self, id: CallId, owner: CallHandle) {
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, owner);
        metrics::gauge!("switchboard_active_calls").increment(1.0);
    }

    /// The dialplan new calls take now.
    pub fn plan(&self) -> Arc<crate::ivr::plan::Dialplan> {
        self.ctx.plan.current()
    }

    /// Number of live calls.
    pub fn active(&self) -> usize {
        self.live.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Asks every live call to hang up.
    pub fn hangup_all(&self) {
        for owner in self.live.lock().unwrap_or_else(|e| e.into_inner()).values() {
            let _ = owner.send(CallInput::Shutdown);
        }
    }

    /// Waits until every call actor has finished.
    pub async fn wait_idle(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }
}

#[cfg(test)]
mod tests;
