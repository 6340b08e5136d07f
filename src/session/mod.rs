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

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::media::engine::PipelineConfig;
use crate::media::engine::conference::Rooms;
use crate::media::ports::PortPool;
use crate::sip::endpoint::{EndpointHandle, Owner};
use crate::sip::message::{Request, Response};
use crate::sip::registrar::Registrar;
use crate::sip::transaction::TxId;
use crate::sip::transport::Peer;
use crate::store::WriterHandle;

/// What the endpoint (or the server) tells a call.
#[derive(Debug)]
pub enum CallInput {
    /// A request inside one of the call's dialogs (BYE, re-INVITE, INFO, ...).
    Request { tx: TxId, req: Request, from: Peer },
    /// An ACK inside one of the call's dialogs.
    Ack { req: Request, from: Peer },
    /// A response to a request the call sent, identified by its Via branch.
    Response { branch: String, resp: Response },
    /// A 2xx retransmission after our INVITE transaction ended: ACK it again.
    StrayResponse { resp: Response, from: Peer },
    /// A client transaction of the call timed out (Timer B or F).
    Timeout { branch: String },
    /// The caller CANCELled the INVITE (the CANCEL itself was answered 200).
    Cancelled,
    /// The server is shutting down: hang up.
    Shutdown,
}

/// Everything calls share.
pub struct CallContext {
    pub registrar: Arc<Registrar>,
    pub writer: WriterHandle,
    pub ports: PortPool,
    /// Address advertised in SDP.
    pub media_ip: IpAddr,
    /// Address the RTP sockets bind to.
    pub rtp_bind_ip: IpAddr,
    pub no_answer_timeout: Duration,
    pub media: MediaContext,
    /// The dialplan new calls take (reloaded on change).
    pub plan: crate::ivr::reload::PlanHandle,
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

/// Spawns calls and keeps a way to reach each live one.
#[derive(Clone)]
pub struct CallRegistry {
    ctx: Arc<CallContext>,
    live: Arc<Mutex<HashMap<u64, Owner>>>,
    next: Arc<AtomicU64>,
    tracker: tokio_util::task::TaskTracker,
}

impl CallRegistry {
    pub fn new(ctx: CallContext) -> CallRegistry {
        CallRegistry {
            ctx: Arc::new(ctx),
            live: Arc::new(Mutex::new(HashMap::new())),
            next: Arc::new(AtomicU64::new(1)),
            tracker: tokio_util::task::TaskTracker::new(),
        }
    }

    /// Starts a call actor for a new INVITE; returns where the endpoint sends its inputs.
    pub fn spawn(&self, ep: EndpointHandle, tx: TxId, invite: Request, from: Peer) -> Owner {
        let (owner, inbox) = mpsc::unbounded_channel();
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, owner.clone());
        metrics::gauge!("switchboard_active_calls").increment(1.0);
        let ctx = self.ctx.clone();
        let live = self.live.clone();
        let me = owner.clone();
        self.tracker.spawn(async move {
            call::run(ctx, ep, me, inbox, tx, invite, from).await;
            live.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            metrics::gauge!("switchboard_active_calls").decrement(1.0);
        });
        owner
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
