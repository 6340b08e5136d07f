//! Server assembly (DRIVER): opens the store, binds SIP, RTP and HTTP, spawns the endpoint,
//! the registration pruner and the HTTP server, and shuts all of it down in order:
//! SIGTERM/SIGINT → new INVITEs get 503 + Retry-After → calls may finish for the drain timeout
//! → remaining calls get BYE → call records are flushed → exit 0.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::ivr::reload::PlanHandle;
use crate::media::engine::PipelineConfig;
use crate::media::engine::conference::Rooms;
use crate::media::jitter::JitterConfig;
use crate::media::player::PromptCache;
use crate::media::ports::PortPool;
use crate::session::{CallContext, CallRegistry, MediaContext};
use crate::sip::endpoint::{Endpoint, EndpointHandle, IncomingInvite, Local};
use crate::sip::registrar::{Registrar, RegistrarSettings};
use crate::sip::transaction::{Timers, TransactionLayer};
use crate::sip::transport::{Inbound, Listen, Transport, TransportSet};
use crate::store::Store;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: String,
        source: std::io::Error,
    },
    #[error("RTP port range: {0}")]
    Rtp(String),
    #[error("cannot create the data directory {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error("{0}")]
    Assets(#[from] crate::assets::AssetError),
    #[error("invalid dialplan ({} error(s)):\n{}", .0.len(), .0.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
    Dialplan(Vec<crate::ivr::parse::Diagnostic>),
}

/// The media engine's shared settings; music on hold is loaded once, at 8 and 16 kHz. A
/// missing or unreadable file is logged and held parties hear silence.
fn media_context(settings: &Settings) -> MediaContext {
    let media = &settings.media;
    let music_on_hold = if media.music_on_hold.is_empty() {
        None
    } else {
        let cache = PromptCache::new(media.dir.clone());
        let name = std::path::Path::new(&media.music_on_hold);
        match (cache.load(name, 8000), cache.load(name, 16_000)) {
            (Ok(narrow), Ok(wide)) => Some([narrow, wide]),
            (Err(error), _) | (_, Err(error)) => {
                tracing::warn!(%error, "no music on hold: held parties hear silence");
                None
            }
        }
    };
    MediaContext {
        pipeline: PipelineConfig {
            jitter: JitterConfig::default(),
            tone_region: settings.tone_region,
            music_on_hold,
            inband_dtmf: media.inband_dtmf,
        },
        record_calls: settings.recording.record_calls,
        recording: settings.recording.clone(),
        data_dir: settings.data_dir.clone(),
        transcoding: media.transcoding,
        conference_prefix: media.conference_prefix.clone(),
        rooms: Rooms::default(),
        prompts: Arc::new(PromptCache::new(media.dir.clone())),
    }
}

/// A running server: its addresses and a way to stop it.
pub struct Server {
    pub sip: Vec<Listen>,
    pub http: SocketAddr,
    pub store: Store,
    endpoint: EndpointHandle,
    calls: CallRegistry,
    stop_endpoint: CancellationToken,
    stop_http: CancellationToken,
    webhooks: crate::api::webhooks::WebhookDispatcher,
    /// Replies to gateway channels.
    outbox: crate::chat::outbox::Outbox,
    drain_timeout: Duration,
    tasks: tokio::task::JoinSet<()>,
}

/// Runs the server until SIGTERM or SIGINT, then shuts down gracefully.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let server = start(settings).await?;
    wait_for_signal().await;
    tracing::info!("shutdown requested");
    server.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// Starts every subsystem and returns once all sockets are bound: the dialplan, the store, SIP
/// (transports, registrar, endpoint and calls), the housekeeping tasks, then HTTP.
pub async fn start(mut settings: Settings) -> Result<Server, ServerError> {
    // The recorder is installed before anything records a metric.
    let _ = metrics_handle();
    crate::assets::resolve(&mut settings)?;
    // An invalid dialplan refuses the start, before anything is bound.
    let plan = load_dialplan(&settings)?;
    let store = open_store(&settings).await?;
    let stop_endpoint = CancellationToken::new();
    let sessions = start_sessions(&settings, &store).await?;
    // A flow's `send_message` texts, from the calls to the chat side.
    let (texts, texts_rx) = mpsc::unbounded_channel();
    // The ACD, with the stored agents; its callbacks are placed through the call registry.
    let (callbacks, callbacks_rx) = mpsc::unbounded_channel();
    let acd = crate::acd::service::start(
        store.list_agents().await?,
        plan.clone(),
        store.writer(),
        callbacks,
    );
    let sip = start_sip(
        &settings,
        &store,
        (sessions.clone(), texts, acd.clone()),
        plan.clone(),
        stop_endpoint.clone(),
    )
    .await?;
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(sip.calls.clone().take_invites(sip.new_invites));
    tasks.spawn(place_callbacks(
        sip.calls.clone(),
        acd.clone(),
        callbacks_rx,
        stop_endpoint.clone(),
    ));
    tasks.spawn(sip.endpoint.run(sip.inbound, stop_endpoint.clone()));
    spawn_housekeeping(
        &mut tasks,
        &settings,
        &store,
        &sip.registrar,
        plan,
        sip.prompts,
        &stop_endpoint,
    );
    let http = start_http(
        &settings,
        &store,
        (sessions, texts_rx, acd),
        &sip.calls,
        &sip.handle,
        &sip.registrar,
        &mut tasks,
    )
    .await?;

    Ok(Server {
        sip: sip.bound,
        http: http.addr,
        store,
        endpoint: sip.handle,
        calls: sip.calls,
        stop_endpoint,
        stop_http: http.stop,
        webhooks: http.webhooks,
        outbox: http.outbox,
        drain_timeout: settings.drain_timeout,
        tasks,
    })
}

/// Loads and checks the dialplan and starts watching it for changes; warns when it speaks text
/// and espeak-ng is missing.
fn load_dialplan(settings: &Settings) -> Result<PlanHandle, ServerError> {
    let plan = crate::ivr::reload::start(
        settings.ivr.dialplans.clone(),
        crate::ivr::parse::CheckOptions {
            media_dir: settings.media.dir.clone(),
        },
    )
    .map_err(ServerError::Dialplan)?;
    {
        let current = plan.current();
        let speech = current.speech_steps();
        if !speech.is_empty() && !crate::ivr::tts::available() {
            tracing::warn!(
                steps = speech.len(),
                first = %speech[0],
                "the dialplan speaks text but espeak-ng is not installed (apt-get install espeak-ng): those prompts will be skipped"
            );
        }
    }
    Ok(plan)
}

/// Opens the store (creating the data directory for a SQLite file), then closes the call
/// records and repairs the recordings an earlier crash left open.
async fn open_store(settings: &Settings) -> Result<Store, ServerError> {
    if settings.database_url.starts_with("sqlite:") && !settings.database_url.contains(":memory:") {
        std::fs::create_dir_all(&settings.data_dir)
            .map_err(|e| ServerError::DataDir(settings.data_dir.display().to_string(), e))?;
    }
    let store = Store::open(&settings.database_url).await?;
    tracing::info!(backend = ?store.backend(), "store open");
    let closed = store.close_orphans(crate::clock::unix_ms()).await?;
    crate::media::recordings::repair_recordings(&store, &settings.data_dir).await?;
    if closed > 0 {
        tracing::warn!(
            calls = closed,
            "closed call records left open by an earlier crash"
        );
    }
    Ok(store)
}

/// The SIP side, built but not yet running: [`start`] spawns the endpoint and the call
/// registry's INVITE loop.
struct Sip {
    bound: Vec<Listen>,
    inbound: mpsc::Receiver<Inbound>,
    endpoint: Endpoint,
    handle: EndpointHandle,
    registrar: Arc<Registrar>,
    calls: CallRegistry,
    new_invites: mpsc::UnboundedReceiver<IncomingInvite>,
    prompts: Arc<PromptCache>,
}

/// Binds the SIP transports, loads the registrar (and its bindings) and builds the endpoint and
/// the call registry with the media context.
async fn start_sip(
    settings: &Settings,
    store: &Store,
    (sessions, texts, acd): (
        crate::session::service::SessionService,
        mpsc::UnboundedSender<crate::session::TextToCaller>,
        crate::acd::service::Acd,
    ),
    plan: PlanHandle,
    stop: CancellationToken,
) -> Result<Sip, ServerError> {
    let (inbound_tx, inbound) = mpsc::channel(65_536);
    let listens: Vec<Listen> = settings
        .sip_listen
        .iter()
        .map(|l| Listen {
            transport: l.transport,
            addr: l.addr,
        })
        .collect();
    let transport = TransportSet::bind(&listens, inbound_tx, stop)
        .await
        .map_err(|source| ServerError::Bind {
            what: "SIP",
            addr: listens
                .iter()
                .map(|l| l.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            source,
        })?;
    let bound = transport.local_addrs();
    for l in &bound {
        tracing::info!(listen = %l, "SIP listening");
    }
    let local = Arc::new(Local {
        domain: settings.domain.clone(),
        public_ip: settings.public_ip,
        sent_by: bound.iter().map(|l| (l.transport, l.addr)).collect(),
        branch_prefix: format!("z9hG4bK{:08x}.", rand::random::<u32>()),
        server_header: format!("switchboard/{}", env!("CARGO_PKG_VERSION")),
        force_rport: settings.force_rport,
    });
    let registrar = start_registrar(settings, store).await?;

    let rtp_bind_ip = bound
        .iter()
        .map(|l| l.addr.ip())
        .next()
        .unwrap_or(settings.public_ip);
    let media = media_context(settings);
    let prompts = media.prompts.clone();
    tracing::info!(
        low = settings.rtp_ports.0,
        high = settings.rtp_ports.1,
        "RTP port range"
    );

    let (invites, new_invites) = mpsc::unbounded_channel();
    let endpoint = Endpoint::new(
        TransactionLayer::new(Timers::default()).with_auto_trying(true),
        transport,
        local,
        registrar.clone(),
        invites,
        settings.retry_after_secs,
    );
    let handle = endpoint.handle();
    let calls = CallRegistry::new(
        CallContext {
            registrar: registrar.clone(),
            writer: store.writer(),
            sessions,
            texts: Some(texts),
            acd: Some(acd),
            ports: PortPool::new(settings.rtp_ports.0, settings.rtp_ports.1)
                .map_err(|e| ServerError::Rtp(e.to_string()))?,
            media_ip: settings.public_ip,
            rtp_bind_ip,
            no_answer_timeout: settings.no_answer_timeout,
            media,
            plan,
        },
        handle.clone(),
    );
    Ok(Sip {
        bound,
        inbound,
        endpoint,
        handle,
        registrar,
        calls,
        new_invites,
        prompts,
    })
}

/// The registrar with the digest settings; it loads the unexpired bindings from the store.
async fn start_registrar(
    settings: &Settings,
    store: &Store,
) -> Result<Arc<Registrar>, ServerError> {
    let nonce_secret = std::env::var("SWITCHBOARD_NONCE_SECRET")
        .map(String::into_bytes)
        .unwrap_or_else(|_| rand::random::<[u8; 32]>().to_vec());
    let registrar = Registrar::new(
        RegistrarSettings {
            realm: settings.domain.clone(),
            nonce_secret,
            nonce_ttl: settings.nonce_ttl,
            trusted: settings.trusted.clone(),
            min_expires: settings.min_expires,
            max_expires: settings.max_expires,
            default_expires: settings.default_expires,
            failures_before_throttle: settings.auth_failures_before_throttle,
            throttle_window: settings.auth_throttle_window,
            algorithms: settings.digest_algorithms.clone(),
        },
        store.clone(),
    )
    .await?;
    Ok(Arc::new(registrar))
}

/// The background tasks that keep the server tidy until `stop`: recording retention, fresh
/// prompts after a dialplan reload, and the pruning of expired registrations.
fn spawn_housekeeping(
    tasks: &mut tokio::task::JoinSet<()>,
    settings: &Settings,
    store: &Store,
    registrar: &Arc<Registrar>,
    mut plan_changes: PlanHandle,
    prompts: Arc<PromptCache>,
    stop: &CancellationToken,
) {
    tasks.spawn(crate::media::recordings::run_recording_purge(
        store.clone(),
        settings.data_dir.clone(),
        settings.recording.retention_days,
        stop.clone(),
    ));
    // A reloaded plan may name re-recorded prompts: decode them afresh (calls playing the old
    // ones keep their copy).
    let prompts_stop = stop.clone();
    tasks.spawn(async move {
        loop {
            tokio::select! {
                changed = plan_changes.changed() => {
                    if !changed {
                        return;
                    }
                    prompts.clear();
                }
                _ = prompts_stop.cancelled() => return,
            }
        }
    });
    let pruner_stop = stop.clone();
    let pruned = registrar.clone();
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tokio::select! {
                _ = pruner_stop.cancelled() => break,
                _ = tick.tick() => pruned.prune(),
            }
        }
    });
}

/// The session service, with the sessions customers were active in within the continuity
/// window (so a call right after a restart still joins the chat before it).
async fn start_sessions(
    settings: &Settings,
    store: &Store,
) -> Result<crate::session::service::SessionService, ServerError> {
    let sessions = crate::session::service::SessionService::with_rules(
        store.writer(),
        settings.chat.phones,
        settings.chat.continuity_ms,
    );
    // Phone identities stored in other formats (before E.164, or another default region).
    let phones = settings.chat.phones;
    let actor = crate::store::Actor {
        key_id: None,
        name: "phone-normalisation".into(),
    };
    let changed = store
        .normalise_phone_identities(&phones.describe(), |v| phones.normalise(v), &actor)
        .await?;
    if changed > 0 {
        tracing::info!(changed, "phone identities normalised to E.164");
    }
    let since = crate::clock::unix_ms() - settings.chat.continuity_ms;
    for (identity, session, at_ms) in store.recent_session_identities(since).await? {
        sessions.note_activity(&identity, session, at_ms);
    }
    for (identity, profile) in store.customer_profiles().await? {
        sessions.set_profile(&[identity], &profile);
    }
    Ok(sessions)
}

/// The key that signs chat visitor tokens when `[chat] visitor_secret` is not set:
/// `SWITCHBOARD_CHAT_SECRET`, else one generated once and kept in `<data_dir>/chat-secret`
/// (owner-only), so visitors' tokens outlive a restart.
fn visitor_key(data_dir: &std::path::Path) -> Result<crate::chat::visitor::TokenKey, ServerError> {
    use crate::chat::visitor::TokenKey;
    if let Ok(secret) = std::env::var("SWITCHBOARD_CHAT_SECRET")
        && secret.len() >= 16
    {
        return Ok(TokenKey::new(secret.as_bytes()));
    }
    let path = data_dir.join("chat-secret");
    if let Ok(secret) = std::fs::read_to_string(&path)
        && secret.trim().len() >= 32
    {
        return Ok(TokenKey::new(secret.trim().as_bytes()));
    }
    let secret = hex::encode(rand::random::<[u8; 32]>());
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)?;
        f.write_all(secret.as_bytes())
    };
    write().map_err(|e| ServerError::DataDir(path.display().to_string(), e))?;
    tracing::info!(path = %path.display(), "chat visitor key generated");
    Ok(TokenKey::new(secret.as_bytes()))
}

/// The HTTP side, running.
struct Http {
    addr: SocketAddr,
    stop: CancellationToken,
    webhooks: crate::api::webhooks::WebhookDispatcher,
    outbox: crate::chat::outbox::Outbox,
}

/// Places the ACD's callbacks: the agent's phone rings first; answered, the customer is
/// dialled and bridged, in the customer's session.
async fn place_callbacks(
    calls: CallRegistry,
    acd: crate::acd::service::Acd,
    mut requests: mpsc::UnboundedReceiver<crate::acd::service::CallbackRequest>,
    stop: CancellationToken,
) {
    // Ends with the endpoint: the registry it holds keeps the ACD (and this channel) alive.
    loop {
        let r = tokio::select! {
            r = requests.recv() => r,
            () = stop.cancelled() => None,
        };
        let Some(r) = r else { return };
        tracing::info!(agent = %r.agent, customer = %r.customer, task = %r.task_id, "placing a callback");
        let req = crate::session::OriginateRequest {
            from: r.customer.clone(),
            to: r.agent_extension.clone(),
            flow: None,
            connect_to: Some(r.customer.clone()),
            webhook: None,
            ring_timeout: Duration::from_secs(30),
            caller_id: Some("Callback".into()),
            headers: Vec::new(),
            consult_for: None,
            session: r.session_id,
            acd_contact: Some(r.contact),
        };
        if let Err(error) = calls.originate(req).await {
            tracing::warn!(%error, agent = %r.agent, "callback not placed");
            // Nothing rings: the agent is free again.
            acd.done(r.contact);
        }
    }
}

/// Binds the HTTP listener, starts the webhook deliveries and serves the API on `tasks`.
async fn start_http(
    settings: &Settings,
    store: &Store,
    (sessions, mut texts, acd): (
        crate::session::service::SessionService,
        mpsc::UnboundedReceiver<crate::session::TextToCaller>,
        crate::acd::service::Acd,
    ),
    calls: &CallRegistry,
    handle: &EndpointHandle,
    registrar: &Arc<Registrar>,
    tasks: &mut tokio::task::JoinSet<()>,
) -> Result<Http, ServerError> {
    let listener = tokio::net::TcpListener::bind(settings.http_listen)
        .await
        .map_err(|source| ServerError::Bind {
            what: "HTTP",
            addr: settings.http_listen.to_string(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind {
        what: "HTTP",
        addr: settings.http_listen.to_string(),
        source,
    })?;
    tracing::info!(listen = %addr, "HTTP listening");
    let draining_handle = handle.clone();
    let retry = crate::api::webhooks::DeliverySettings {
        base_delay: Duration::from_millis(settings.http.webhook_retry_base_ms.max(1)),
        ..Default::default()
    };
    let outbox = crate::chat::outbox::Outbox::new(store.clone(), retry);
    outbox.start().await?;
    let files =
        crate::chat::files::Files::new(&settings.data_dir, settings.chat.attachment_max_bytes);
    let mut chat_settings = settings.chat.clone();
    if chat_settings.token_key.is_none() {
        chat_settings.token_key = Some(visitor_key(&settings.data_dir)?);
    }
    let chat = crate::chat::ChatService::new(
        store.clone(),
        sessions,
        chat_settings,
        outbox.clone(),
        files,
    );
    let stop = CancellationToken::new();
    chat.attach_acd(acd.clone());
    let texter = chat.clone();
    let texts_stop = stop.clone();
    tasks.spawn(async move {
        loop {
            let t = tokio::select! {
                t = texts.recv() => t,
                _ = texts_stop.cancelled() => None,
            };
            let Some(t) = t else { return };
            if let Err(error) = texter.text_caller(&t).await {
                tracing::warn!(%error, channel = %t.channel, call = %t.call_id, "send_message failed");
            }
        }
    });
    let app = crate::api::router(crate::api::ApiState {
        metrics: metrics_handle(),
        calls: calls.clone(),
        draining: Arc::new(move || draining_handle.draining()),
        store: store.clone(),
        registrar: registrar.clone(),
        limiter: crate::api::auth::limiter(
            settings.http.rate_limit_per_sec,
            settings.http.rate_limit_burst,
        ),
        data_dir: settings.data_dir.clone(),
        http: settings.http.clone(),
        chat,
        trunks: Arc::new(settings.trunks.clone()),
        acd,
    });
    // Webhook deliveries: one task per subscription; handlers reach the dispatcher (and
    // event streams its stop token) as a request extension.
    let webhooks = crate::api::webhooks::WebhookDispatcher::new(store.clone(), retry);
    webhooks.start().await?;
    let app = app.layer(axum::Extension(webhooks.clone()));
    let http_stop = stop.clone();
    tasks.spawn(async move {
        let serve = axum::serve(listener, app)
            .with_graceful_shutdown(async move { http_stop.cancelled().await });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    Ok(Http {
        addr,
        stop,
        webhooks,
        outbox,
    })
}

impl Server {
    /// Calls whose actor is still running.
    pub fn active_calls(&self) -> usize {
        self.calls.active()
    }

    /// The bound address of the first listener of `transport`.
    pub fn sip_addr(&self, transport: Transport) -> Option<SocketAddr> {
        self.sip
            .iter()
            .find(|l| l.transport == transport)
            .map(|l| l.addr)
    }

    /// Graceful shutdown: refuse new calls, let calls finish for the drain timeout, BYE the
    /// rest, flush the call records, stop every task.
    pub async fn shutdown(mut self) {
        self.endpoint.set_draining();
        let active = self.calls.active();
        if active > 0 {
            tracing::info!(active, timeout = ?self.drain_timeout, "draining calls");
            let deadline = crate::clock::tokio_now() + self.drain_timeout;
            while self.calls.active() > 0 && crate::clock::tokio_now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        if self.calls.active() > 0 {
            tracing::info!(active = self.calls.active(), "hanging up remaining calls");
            self.calls.hangup_all();
        }
        // Give the BYEs a moment on the wire, bounded; calls end themselves after sending.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.calls.wait_idle()).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Err(e) = self.store.flush().await {
            tracing::error!(error = %e, "could not flush the store");
        }
        self.webhooks.shutdown().await;
        self.outbox.shutdown().await;
        self.stop_http.cancel();
        self.stop_endpoint.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// The process-wide Prometheus recorder (installed once; tests start many servers).
fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed");
            }
            handle
        })
        .clone()
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
