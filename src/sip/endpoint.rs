//! The SIP endpoint (DRIVER): one task that owns the transaction table and routes everything
//! that arrives.
//!
//! Its loop is `select! { inbound message | command from a call | next timer | shutdown }`,
//! followed by draining the transaction layer's transmits and events. It answers what needs no
//! state (OPTIONS, 400/416/420/483/501, 481 for unknown dialogs, 503 while draining), stamps
//! `received`/`rport` on the top Via (RFC 3581 §4), hands REGISTER to the [`Registrar`] on a
//! short-lived task (it may read the database), and hands each new INVITE, with a channel of
//! its own, to whoever it was given at start-up ([`IncomingInvite`]). From then on the
//! transaction user (TU) that took the INVITE talks to the endpoint only through
//! [`EndpointHandle`] and hears from it only through [`TuEvent`]s: the endpoint knows nothing
//! of calls, sessions or media.
//!
//! RFC 3261 §8.2 (UAS request checks), §9.2 (CANCEL), §12.2.2 (in-dialog routing), §16.3
//! (Max-Forwards, loop detection), §17 (via [`crate::sip::transaction`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use rand::Rng;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::dialog::DialogKey;
use super::message::{self, Message, Method, Request, Response, StatusCode};
use super::registrar::Registrar;
use super::transaction::{
    Branch, Summary, TransactionLayer, TxEvent, TxId, TxInput, shrink_sparse,
};
use super::transport::{Inbound, InboundEvent, Peer, Transport, TransportSet};

/// Methods we implement, for Allow (RFC 3261 §20.5).
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, UPDATE";
/// Bodies we understand, for Accept (§20.1).
pub const ACCEPT: &str = "application/sdp";
/// Option tags we support (§20.37); none yet, so any Require gets 420.
pub const SUPPORTED: &[&str] = &[];

/// What the endpoint tells the transaction user that owns a transaction or a dialog.
/// Messages are boxed: a call's channel allocates its buffer in blocks of 32 events, so the
/// event's size is memory held per live call.
#[derive(Debug)]
pub enum TuEvent {
    /// A request inside one of the TU's dialogs (BYE, re-INVITE, INFO, ...).
    Request {
        tx: TxId,
        req: Box<Request>,
        from: Peer,
    },
    /// An ACK inside one of the TU's dialogs.
    Ack { req: Box<Request>, from: Peer },
    /// A response to a request the TU sent, named by the request's Via branch.
    Response { branch: Branch, resp: Box<Response> },
    /// A 2xx retransmission after our INVITE client transaction ended: ACK it again.
    StrayResponse { resp: Box<Response>, from: Peer },
    /// A client transaction of the TU failed without a response: it timed out (Timer B or
    /// F) or could not be delivered (a TCP flow gone, a connection refused).
    Failed { branch: Branch, why: TxFailure },
    /// The INVITE was CANCELled (the CANCEL itself was answered 200, §9.2).
    Cancelled,
}

/// Why a client transaction ended without a final response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxFailure {
    /// No answer in time (Timer B or F, RFC 3261 §17.1).
    Timeout,
    /// The request could not be sent (§18.4: a transport error).
    Unreachable,
}

/// Where a transaction user receives what the endpoint routes to it.
pub type Owner = mpsc::UnboundedSender<TuEvent>;

/// A new INVITE outside any dialog, for whoever takes calls. Its server transaction's events
/// (a CANCEL, in-dialog requests once the TU adds its dialog) are already queued on `events`.
#[derive(Debug)]
pub struct IncomingInvite {
    pub tx: TxId,
    pub req: Request,
    pub from: Peer,
    /// Hand this to [`Command::SendRequest`] and [`Command::AddDialog`]: it feeds `events`.
    pub owner: Owner,
    pub events: mpsc::UnboundedReceiver<TuEvent>,
}

/// Addresses and identity of this server, shared read-only with calls and the registrar.
#[derive(Debug)]
pub struct Local {
    pub domain: String,
    pub public_ip: std::net::IpAddr,
    /// The sent-by address per transport (Via, Contact).
    pub sent_by: HashMap<Transport, SocketAddr>,
    /// `z9hG4bK` + a per-process random part: branches we create start with it (loop check).
    pub branch_prefix: String,
    pub server_header: String,
    /// Answer UDP requests at their source address even without `rport` (Asterisk's
    /// `force_rport`, the default): NATed phones work and nothing is sent to a Via host.
    pub force_rport: bool,
}

/// Commands a call actor or the registrar sends to the endpoint.
#[derive(Debug)]
pub enum Command {
    /// Send a response on a server transaction.
    Respond {
        tx: TxId,
        resp: Response,
    },
    /// Start a client transaction; its responses and timeout go to `owner`, named by branch.
    SendRequest {
        req: Request,
        to: Peer,
        owner: Owner,
    },
    /// Send bytes outside any transaction (ACK for 2xx, 2xx retransmissions).
    SendRaw {
        to: Peer,
        msg: Message,
    },
    /// Route requests of a dialog (Call-ID, our tag) to `owner`.
    AddDialog {
        key: DialogKey,
        owner: Owner,
    },
    /// Give up on client transactions that will never see a final response (a callee that
    /// vanished after a provisional, RFC 3261 §9.1): they would otherwise live forever.
    Abandon {
        branches: Vec<Branch>,
    },
    RemoveDialog {
        key: DialogKey,
    },
    /// A message of client transaction `tx` could not be sent after all (a TCP connect that
    /// failed on its own task).
    TransportError {
        tx: TxId,
    },
}

/// A cheap, cloneable way to talk to the endpoint task.
#[derive(Clone, Debug)]
pub struct EndpointHandle {
    tx: mpsc::UnboundedSender<Command>,
    pub local: Arc<Local>,
    draining: Arc<AtomicBool>,
}

/// The endpoint task's state.
pub struct Endpoint {
    txl: TransactionLayer,
    transport: TransportSet,
    handle: EndpointHandle,
    commands: mpsc::UnboundedReceiver<Command>,
    client_owners: HashMap<TxId, (Owner, Branch)>,
    server_owners: HashMap<TxId, Owner>,
    dialogs: HashMap<DialogKey, Owner>,
    registrar: Arc<Registrar>,
    /// Where new INVITEs go.
    invites: mpsc::UnboundedSender<IncomingInvite>,
    retry_after_secs: u32,
}

impl Local {
    /// A Via value for a new client transaction on `t`, and its branch.
    pub fn via(&self, t: Transport) -> (String, Branch) {
        let branch = Branch::new(format!(
            "{}{:016x}",
            self.branch_prefix,
            rand::rng().random::<u64>()
        ));
        let addr = self.sent_by(t);
        (
            format!("SIP/2.0/{} {};branch={};rport", t.as_str(), addr, branch),
            branch,
        )
    }
    /// Our Contact URI for dialogs on `t`.
    pub fn contact(&self, t: Transport) -> String {
        let addr = self.sent_by(t);
        match t {
            Transport::Udp => format!("<sip:switchboard@{}>", addr),
            Transport::Tcp => format!("<sip:switchboard@{};transport=tcp>", addr),
        }
    }
    /// The address we advertise for `t`: the public IP with the bound port.
    pub fn sent_by(&self, t: Transport) -> SocketAddr {
        let port = self
            .sent_by
            .get(&t)
            .or_else(|| self.sent_by.values().next())
            .map(|a| a.port())
            .unwrap_or(5060);
        SocketAddr::new(self.public_ip, port)
    }
}

impl EndpointHandle {
    /// A handle whose commands come out of the returned receiver instead of going to an
    /// endpoint task: a transaction user driven without sockets (the call actor's tests) is
    /// seen doing exactly what it asks the endpoint to do.
    pub fn detached(local: Arc<Local>) -> (EndpointHandle, mpsc::UnboundedReceiver<Command>) {
        let (tx, commands) = mpsc::unbounded_channel();
        let handle = EndpointHandle {
            tx,
            local,
            draining: Arc::new(AtomicBool::new(false)),
        };
        (handle, commands)
    }

    pub fn send(&self, cmd: Command) {
        // The endpoint outlives every call; a closed channel only happens at exit.
        let _ = self.tx.send(cmd);
    }
    pub fn respond(&self, tx: TxId, resp: Response) {
        self.send(Command::Respond { tx, resp });
    }
    /// Starts refusing new calls (503 with Retry-After).
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// True once shutdown has begun: new calls are refused with 503.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

impl Endpoint {
    /// Creates the endpoint and its handle; new INVITEs go to `invites`.
    pub fn new(
        txl: TransactionLayer,
        transport: TransportSet,
        local: Arc<Local>,
        registrar: Arc<Registrar>,
        invites: mpsc::UnboundedSender<IncomingInvite>,
        retry_after_secs: u32,
    ) -> Endpoint {
        let (tx, commands) = mpsc::unbounded_channel();
        let handle = EndpointHandle {
            tx,
            local,
            draining: Arc::new(AtomicBool::new(false)),
        };
        Endpoint {
            txl,
            transport,
            handle,
            commands,
            client_owners: HashMap::new(),
            server_owners: HashMap::new(),
            dialogs: HashMap::new(),
            registrar,
            invites,
            retry_after_secs,
        }
    }

    pub fn handle(&self) -> EndpointHandle {
        self.handle.clone()
    }

    /// Runs until `stop` is cancelled (after the server has drained calls).
    pub async fn run(mut self, mut inbound: mpsc::Receiver<Inbound>, stop: CancellationToken) {
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self.txl.poll_timeout().map(tokio::time::Instant::from_std);
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                Some(cmd) = self.commands.recv() => self.handle_command(cmd),
                Some(msg) = inbound.recv() => self.handle_inbound(msg),
                _ = sleep_until_opt(deadline) => self.txl.handle_timeout(crate::clock::now()),
                _ = housekeeping.tick() => self.housekeeping(),
            }
            self.drain().await;
        }
    }

    /// Once a second: owners whose call has ended are forgotten, the table sizes published as
    /// gauges, and the routing maps shrunk after a burst (a `HashMap` keeps its largest
    /// capacity otherwise).
    ///
    /// An owner is the sending half of its call's channel, and a channel's first block of
    /// slots (some 8 kB) lives as long as one sender does: kept until Timer M, the owner of an
    /// INVITE client transaction would hold that memory for 32 s after its call has gone.
    fn housekeeping(&mut self) {
        self.client_owners
            .retain(|_, (owner, _)| !owner.is_closed());
        self.server_owners.retain(|_, owner| !owner.is_closed());
        self.dialogs.retain(|_, owner| !owner.is_closed());
        metrics::gauge!("switchboard_sip_transactions").set(self.txl.len() as f64);
        metrics::gauge!("switchboard_sip_dialogs").set(self.dialogs.len() as f64);
        metrics::gauge!("switchboard_sip_transaction_owners")
            .set((self.client_owners.len() + self.server_owners.len()) as f64);
        shrink_sparse!(self.client_owners, self.server_owners, self.dialogs);
    }

    async fn drain(&mut self) {
        while let Some(t) = self.txl.poll_transmit() {
            if !self.transmit(t.to, t.bytes, t.summary, t.tx).await
                && let Some(tx) = t.tx
            {
                self.txl.handle_transport_error(tx);
            }
        }
        while let Some(ev) = self.txl.poll_event() {
            match ev {
                TxEvent::Timeout { tx } | TxEvent::TransportError { tx } => {
                    let why = match ev {
                        TxEvent::TransportError { .. } => TxFailure::Unreachable,
                        _ => TxFailure::Timeout,
                    };
                    if let Some((owner, branch)) = self.client_owners.remove(&tx)
                        && let Err(mpsc::error::SendError(TuEvent::Failed { branch, .. })) =
                            owner.send(TuEvent::Failed { branch, why })
                        && why == TxFailure::Unreachable
                    {
                        // Its call already ended (a BYE it sent on its way out).
                        tracing::warn!(%branch, "request of an ended call could not be delivered");
                    }
                    self.server_owners.remove(&tx);
                }
                TxEvent::Terminated { tx } => {
                    self.client_owners.remove(&tx);
                    self.server_owners.remove(&tx);
                }
            }
        }
    }

    /// Sends one message; false when the transport refused it at once. A TCP connect that
    /// fails later, on its own task, is reported back as [`Command::TransportError`].
    async fn transmit(&self, to: Peer, bytes: Bytes, summary: Summary, tx: Option<TxId>) -> bool {
        count_message("out", summary);
        match to.transport {
            Transport::Udp => {
                if let Err(e) = self.transport.send(to, bytes).await {
                    tracing::debug!(peer = %to.addr, error = %e, "SIP send failed");
                    return false;
                }
                true
            }
            Transport::Tcp => {
                // In order on an open connection; only a connect (or a full queue) waits in
                // a task of its own.
                let Err(bytes) = self.transport.try_send_tcp(to.addr, bytes) else {
                    return true;
                };
                let transport = self.transport.clone();
                let commands = self.handle.tx.clone();
                tokio::spawn(async move {
                    if let Err(e) = transport.send(to, bytes).await {
                        tracing::debug!(peer = %to.addr, error = %e, "SIP send failed");
                        if let Some(tx) = tx {
                            let _ = commands.send(Command::TransportError { tx });
                        }
                    }
                });
                true
            }
        }
    }

    fn handle_command(&mut self, cmd: Command) {
        let now = crate::clock::now();
        match cmd {
            Command::Respond { tx, resp } => {
                // Only a CANCEL needs the owner of an INVITE server transaction, and a final
                // response ends what it can do (RFC 3261 §9.2).
                if resp.status.is_final() {
                    self.server_owners.remove(&tx);
                }
                if let Err(e) = self.txl.respond(now, tx, resp) {
                    tracing::debug!(error = %e, "response on a finished transaction");
                }
            }
            Command::SendRequest { req, to, owner } => {
                let branch = Branch::new(
                    req.headers
                        .top_via()
                        .ok()
                        .and_then(|v| v.branch().map(str::to_owned))
                        .unwrap_or_default(),
                );
                match self.txl.send_request(now, req, to) {
                    Ok(tx) => {
                        self.client_owners.insert(tx, (owner, branch));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not start a client transaction");
                        let _ = owner.send(TuEvent::Failed {
                            branch,
                            why: TxFailure::Unreachable,
                        });
                    }
                }
            }
            Command::SendRaw { to, msg } => self.txl.send_stateless(msg, to),
            Command::AddDialog { key, owner } => {
                self.dialogs.insert(key, owner);
            }
            Command::Abandon { branches } => {
                // Rare (only when a fork never answered its CANCEL): a scan is fine.
                let txs: Vec<TxId> = self
                    .client_owners
                    .iter()
                    .filter(|(_, (_, b))| branches.contains(b))
                    .map(|(tx, _)| *tx)
                    .collect();
                for tx in txs {
                    self.client_owners.remove(&tx);
                    self.txl.terminate(tx);
                }
            }
            Command::RemoveDialog { key } => {
                self.dialogs.remove(&key);
            }
            Command::TransportError { tx } => self.txl.handle_transport_error(tx),
        }
    }

    fn handle_inbound(&mut self, inbound: Inbound) {
        let peer = inbound.peer;
        match inbound.event {
            InboundEvent::Malformed(invalid) => {
                metrics::counter!("switchboard_sip_malformed_total").increment(1);
                tracing::debug!(peer = %peer.addr, reason = %invalid.reason, "malformed SIP message");
                if invalid.is_request
                    && let Some(s) = &invalid.salvage
                    && !s.via.is_empty()
                {
                    let resp = Response::from_salvage(s, invalid.status, &invalid.reason);
                    self.send_stateless(peer, resp);
                }
            }
            InboundEvent::Message(Message::Request(req)) => {
                count_request("in", &req.method);
                if let Err(invalid) = message::check_request(&req) {
                    tracing::debug!(peer = %peer.addr, reason = %invalid.reason, "bad request");
                    let mut resp = Response::from_request(&req, invalid.status);
                    resp.reason = invalid.reason.clone();
                    self.send_stateless(peer, resp);
                    return;
                }
                let target = response_peer(&req, peer, self.handle.local.force_rport);
                if let Some(input) =
                    self.txl
                        .handle_message(crate::clock::now(), Message::Request(req), target)
                {
                    self.handle_tx_input(input);
                }
            }
            InboundEvent::Message(msg @ Message::Response(_)) => {
                count_message("in", Summary::of(&msg));
                if let Some(input) = self.txl.handle_message(crate::clock::now(), msg, peer) {
                    self.handle_tx_input(input);
                }
            }
        }
    }

    /// Sends a response outside a transaction to the request's source (Via-routed in effect:
    /// the source is where `received`/`rport` would point).
    fn send_stateless(&mut self, to: Peer, resp: Response) {
        self.txl.send_stateless(Message::Response(resp), to);
    }

    fn respond_now(&mut self, tx: TxId, resp: Response) {
        if let Err(e) = self.txl.respond(crate::clock::now(), tx, resp) {
            tracing::debug!(error = %e, "response on a finished transaction");
        }
    }

    fn handle_tx_input(&mut self, input: TxInput) {
        match input {
            TxInput::Request { tx, req, from } => self.handle_request(tx, req, from),
            TxInput::Response { tx, resp } => {
                if let Some((owner, branch)) = self.client_owners.get(&tx) {
                    let _ = owner.send(TuEvent::Response {
                        branch: branch.clone(),
                        resp: Box::new(resp),
                    });
                }
            }
            TxInput::Ack { req, from } => {
                if let Some(owner) = self.dialog_owner(&req) {
                    let _ = owner.send(TuEvent::Ack {
                        req: Box::new(req),
                        from,
                    });
                }
            }
            TxInput::StrayResponse { resp, from } => {
                // A 2xx retransmission for a leg we originated: the call re-sends its ACK.
                let is_invite = resp
                    .headers
                    .cseq()
                    .is_ok_and(|c| c.method == Method::Invite);
                if resp.status.is_success() && is_invite {
                    let key = resp.headers.call_id().ok().zip(
                        resp.headers
                            .from()
                            .ok()
                            .and_then(|f| f.tag().map(str::to_owned)),
                    );
                    if let Some((cid, tag)) = key
                        && let Some(owner) = self.dialogs.get(&DialogKey::new(cid, tag))
                    {
                        let _ = owner.send(TuEvent::StrayResponse {
                            resp: Box::new(resp),
                            from,
                        });
                    }
                }
            }
            TxInput::Cancel {
                tx,
                req,
                from: _,
                invite_tx,
            } => {
                // §9.2: a CANCEL matching an INVITE server transaction gets 200; it reaches
                // the call only while the INVITE has no final response (the owner is dropped
                // at the final).
                match invite_tx {
                    Some(invite_tx) => {
                        self.respond_now(tx, Response::from_request(&req, StatusCode::OK));
                        if let Some(owner) = self.server_owners.get(&invite_tx) {
                            let _ = owner.send(TuEvent::Cancelled);
                        }
                    }
                    None => self.respond_now(
                        tx,
                        Response::from_request(&req, StatusCode::CALL_DOES_NOT_EXIST),
                    ),
                }
            }
        }
    }

    fn dialog_owner(&self, req: &Request) -> Option<&Owner> {
        let call_id = req.headers.call_id().ok()?;
        let tag = req.headers.to().ok()?.tag()?.to_owned();
        self.dialogs.get(&DialogKey::new(call_id, tag))
    }

    fn handle_request(&mut self, tx: TxId, req: Request, from: Peer) {
        // §8.2.1 / RFC 4475 §3.3.2: we only route sip: and sips: Request-URIs.
        if req.uri.as_sip().is_none() {
            return self.reject(tx, &req, StatusCode::UNSUPPORTED_URI_SCHEME);
        }
        let in_dialog = req.headers.to().is_ok_and(|t| t.tag().is_some());
        if in_dialog {
            match self.dialog_owner(&req).cloned() {
                Some(owner) => {
                    if req.method == Method::Invite {
                        self.server_owners.insert(tx, owner.clone());
                    }
                    // The call may have ended before its RemoveDialog got here: answer 481
                    // rather than leave the server transaction waiting forever.
                    if let Err(mpsc::error::SendError(TuEvent::Request { req, .. })) =
                        owner.send(TuEvent::Request {
                            tx,
                            req: Box::new(req),
                            from,
                        })
                    {
                        self.server_owners.remove(&tx);
                        if let (Ok(call_id), Some(tag)) = (
                            req.headers.call_id(),
                            req.headers
                                .to()
                                .ok()
                                .and_then(|t| t.tag().map(str::to_owned)),
                        ) {
                            self.dialogs.remove(&DialogKey::new(call_id, tag));
                        }
                        self.reject(tx, &req, StatusCode::CALL_DOES_NOT_EXIST);
                    }
                }
                None if req.method == Method::Ack => {}
                None => self.reject(tx, &req, StatusCode::CALL_DOES_NOT_EXIST),
            }
            return;
        }
        match &req.method {
            Method::Options => self.answer_options(tx, &req),
            Method::Register => {
                let registrar = self.registrar.clone();
                let handle = self.handle.clone();
                tokio::spawn(async move {
                    let resp = registrar.handle_register(&req, from).await;
                    handle.respond(tx, resp);
                });
            }
            Method::Invite => self.new_invite(tx, req, from),
            Method::Other(_)
            | Method::Subscribe
            | Method::Notify
            | Method::Publish
            | Method::Message
            | Method::Refer
            | Method::Prack => self.reject(tx, &req, StatusCode::NOT_IMPLEMENTED),
            Method::Ack => {}
            Method::Bye | Method::Info | Method::Update | Method::Cancel => {
                self.reject(tx, &req, StatusCode::CALL_DOES_NOT_EXIST)
            }
        }
    }

    /// OPTIONS to us (§11.2): answered locally whatever Max-Forwards says (RFC 4475 §3.3.11).
    fn answer_options(&mut self, tx: TxId, req: &Request) {
        if let Some(resp) = self.require_check(req) {
            return self.respond_now(tx, resp);
        }
        let mut resp = crate::sip::dialog::response_with_tag(
            req,
            StatusCode::OK,
            &crate::sip::dialog::new_tag(),
        );
        self.decorate(&mut resp);
        self.respond_now(tx, resp);
    }

    fn new_invite(&mut self, tx: TxId, req: Request, from: Peer) {
        if self.handle.draining() {
            let mut resp = error_response(&req, StatusCode::SERVICE_UNAVAILABLE);
            resp.headers
                .push("Retry-After", self.retry_after_secs.to_string());
            return self.respond_now(tx, resp);
        }
        if let Some(resp) = self.require_check(&req) {
            return self.respond_now(tx, resp);
        }
        match req.headers.max_forwards() {
            Ok(Some(0)) => return self.reject(tx, &req, StatusCode::TOO_MANY_HOPS),
            Ok(_) => {}
            Err(_) => return self.reject(tx, &req, StatusCode::BAD_REQUEST),
        }
        if self.is_loop(&req) {
            return self.reject(tx, &req, StatusCode::LOOP_DETECTED);
        }
        if !req.body.is_empty() {
            match req.headers.content_type().as_deref() {
                Some("application/sdp") => {}
                _ => {
                    let mut resp = error_response(&req, StatusCode::UNSUPPORTED_MEDIA_TYPE);
                    resp.headers.push("Accept", ACCEPT);
                    return self.respond_now(tx, resp);
                }
            }
        }
        if let Some(accept) = req.headers.get("Accept")
            && !accepts_sdp(&req)
        {
            tracing::debug!(accept, "INVITE does not accept SDP");
            let mut resp = error_response(&req, StatusCode::NOT_ACCEPTABLE);
            resp.headers.push(
                "Warning",
                "399 switchboard \"only application/sdp is offered\"",
            );
            return self.respond_now(tx, resp);
        }
        let (owner, events) = mpsc::unbounded_channel();
        let invite = IncomingInvite {
            tx,
            req,
            from,
            owner: owner.clone(),
            events,
        };
        if let Err(mpsc::error::SendError(invite)) = self.invites.send(invite) {
            // Nobody takes calls any more (shutting down).
            let resp = error_response(&invite.req, StatusCode::SERVICE_UNAVAILABLE);
            return self.respond_now(tx, resp);
        }
        self.server_owners.insert(tx, owner);
    }

    /// 420 for Require option tags we do not support (§8.2.2.3).
    fn require_check(&self, req: &Request) -> Option<Response> {
        let unsupported: Vec<&str> = req
            .headers
            .option_tags("Require")
            .filter(|t| !SUPPORTED.contains(t))
            .collect();
        if unsupported.is_empty() {
            return None;
        }
        let mut resp = error_response(req, StatusCode::BAD_EXTENSION);
        resp.headers.push("Unsupported", unsupported.join(", "));
        Some(resp)
    }

    /// A request that already carries a Via we created (§16.3 step 4, simplified for a B2BUA).
    fn is_loop(&self, req: &Request) -> bool {
        let prefix = &self.handle.local.branch_prefix;
        req.headers
            .get_all("Via")
            .any(|v| v.contains(prefix.as_str()))
    }

    /// A final error response; it carries a To tag (§8.2.6.2) except for 481, which has no
    /// dialog to name.
    fn reject(&mut self, tx: TxId, req: &Request, status: StatusCode) {
        let mut resp = error_response(req, status);
        if status == StatusCode::NOT_IMPLEMENTED {
            resp.headers.push("Allow", ALLOW);
        }
        self.respond_now(tx, resp);
    }

    fn decorate(&self, resp: &mut Response) {
        resp.headers.push("Allow", ALLOW);
        resp.headers.push("Accept", ACCEPT);
        resp.headers.push("Supported", SUPPORTED.join(", "));
        resp.headers
            .push("Server", self.handle.local.server_header.clone());
    }
}

fn error_response(req: &Request, status: StatusCode) -> Response {
    if status == StatusCode::CALL_DOES_NOT_EXIST {
        return Response::from_request(req, status);
    }
    crate::sip::dialog::response_with_tag(req, status, &crate::sip::dialog::new_tag())
}

/// Where responses to `req` go: the source with `force_rport` or on a reliable transport,
/// else per RFC 3261 §18.2.2 / RFC 3581 from the top Via (the transport already stamped
/// `received`/`rport` on it).
fn response_peer(req: &Request, peer: Peer, force_rport: bool) -> Peer {
    if peer.transport.is_reliable() || force_rport {
        return peer;
    }
    req.headers
        .top_via()
        .ok()
        .and_then(|v| super::transport::via::response_peer(&v, peer))
        .unwrap_or(peer)
}

fn accepts_sdp(req: &Request) -> bool {
    req.headers.get_all("Accept").any(|a| {
        let t = a
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        t == "application/sdp" || t == "application/*" || t == "*/*" || t.is_empty()
    })
}

/// Counts one message in `switchboard_sip_messages_total`. Extension methods (named by
/// whoever sends them) share one `OTHER` label, so a peer cannot grow the metrics without
/// bound; status codes are bounded by the parser (100..=699).
fn count_message(direction: &'static str, summary: Summary) {
    let status = summary.status.map(|s| s.0.to_string()).unwrap_or_default();
    metrics::counter!("switchboard_sip_messages_total", "direction" => direction, "method" => summary.method, "status" => status).increment(1);
}

fn count_request(direction: &'static str, method: &Method) {
    metrics::counter!("switchboard_sip_messages_total", "direction" => direction, "method" => method_label(method), "status" => "").increment(1);
}

fn method_label(m: &Method) -> &'static str {
    m.known_token().unwrap_or("OTHER")
}

/// How often the endpoint publishes its table sizes and shrinks its maps.
const HOUSEKEEPING: std::time::Duration = std::time::Duration::from_secs(1);

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A call's channel buffers events in blocks of 32: what one event weighs is memory held
    /// for every live call (about 8 kB per call when messages went by value).
    #[test]
    fn an_event_for_a_transaction_user_is_small() {
        let size = std::mem::size_of::<TuEvent>();
        assert!(size <= 64, "TuEvent is {size} bytes");
    }
}
