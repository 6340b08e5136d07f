//! SIP transactions (SANS-IO): the RFC 3261 §17 state machines with the RFC 6026 fixes.
//!
//! [`TransactionLayer`] owns the table of every client and server transaction, their timers
//! and their retransmissions. It does no I/O and never reads the clock: the driver feeds it
//! received messages ([`TransactionLayer::handle_message`]), commands from the transaction user
//! ([`TransactionLayer::send_request`], [`TransactionLayer::respond`]) and the time
//! ([`TransactionLayer::handle_timeout`]), then drains [`TransactionLayer::poll_transmit`] and
//! [`TransactionLayer::poll_event`] and sleeps until [`TransactionLayer::poll_timeout`]:
//!
//! ```text
//! loop {
//!     select! { packet => layer.handle_message(now, msg, from) -> Option<TxInput> to the TU,
//!               command => layer.send_request / respond / send_stateless,
//!               sleep_until(layer.poll_timeout()) => layer.handle_timeout(now) }
//!     while let Some(t) = layer.poll_transmit() { transport.send(t.to, t.msg.to_bytes()) }
//!     while let Some(e) = layer.poll_event() { tell the TU }
//! }
//! ```
//!
//! What it implements:
//! * §17.1.1 INVITE client: Calling (Timer A doubling, Timer B = 64*T1), Proceeding,
//!   Completed (Timer D; the ACK for a 300–699 final is built here, §17.1.1.3, and re-sent for
//!   each retransmitted final), and RFC 6026 Accepted (Timer M) passing every 2xx up.
//! * §17.1.2 non-INVITE client: Trying/Proceeding (Timer E capped at T2, Timer F), Completed
//!   (Timer K).
//! * §17.2.1 INVITE server: Proceeding (the last provisional re-sent on request
//!   retransmission; an optional automatic `100 Trying`), Completed (Timer G capped at T2,
//!   Timer H), Confirmed (Timer I), RFC 6026 Accepted (Timer L) absorbing INVITE
//!   retransmissions and passing ACKs up.
//! * §17.2.2 non-INVITE server: Trying/Proceeding/Completed (Timer J).
//! * Matching: §17.1.3 (branch + CSeq method) and §17.2.3 (branch + sent-by + method, ACK to
//!   the INVITE); requests whose branch lacks the `z9hG4bK` cookie (RFC 2543) are keyed by
//!   Call-ID + CSeq number + From tag + top Via + method, so their retransmissions and ACKs
//!   still match. CANCEL gets its own server transaction and is matched to the INVITE server
//!   transaction it targets (§9.2).
//! * Reliable transports (TCP): no A/E/G retransmissions; D, I, J and K are zero.
//!
//! Outgoing messages are printed once, when they enter the layer, and handed out as
//! [`Transmit`] holding their bytes: a retransmission re-sends the same bytes for a reference
//! count. Responses go back to the [`Peer`] the request came from (symmetric response routing,
//! RFC 3581); the transport may refine that per RFC 3261 §18.2.2.
//!
//! A transaction that has its final answer keeps only what a retransmission needs: the bytes of
//! the last response (server, Completed), of the ACK (INVITE client, Completed) or nothing
//! (Accepted, Confirmed, non-INVITE client Completed), never a parsed message. At 1,000 calls/s
//! some 100,000 transactions wait for Timers D, J, L and M at any moment, so a lingering
//! transaction costs its key, its timers and at most one buffer. The table's maps and timer heap
//! shrink once they are at most a quarter full, so a drained burst gives its memory back.
//!
//! Every transaction ends with exactly one [`TxEvent::Terminated`]; a [`TxEvent::Timeout`] or
//! [`TxEvent::TransportError`] precedes it when that is why it ended. Timers live in one binary
//! heap with lazy deletion, the table is a `HashMap`: every operation is O(log n).
//!
//! Header fields are read from their text by private helpers (module `key`), so the layer
//! works without the typed header parsers and never panics on malformed input.

/// Shrinks each collection (anything with `len`, `capacity` and `shrink_to`) that is
/// [`sparse`] to one and a half times its length, which leaves it well over a quarter full.
macro_rules! shrink_sparse {
    ($($c:expr),+ $(,)?) => {
        $(
            if $crate::sip::transaction::sparse($c.len(), $c.capacity()) {
                let keep = $c.len() + $c.len() / 2;
                $c.shrink_to(keep);
            }
        )+
    };
}
pub(crate) use shrink_sparse;

mod client;
mod key;
mod server;
mod timer;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;

use crate::sip::message::{Message, Method, Request, Response, StatusCode};
use crate::sip::transport::Peer;

use key::{ClientKey, ServerKey};
use timer::{Armed, Timer, TimerQueue};

/// Identifies one transaction in a [`TransactionLayer`]; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TxId(u64);

/// A Via branch parameter (RFC 3261 §8.1.1.7).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Branch(String);

/// The RFC 3261 timer base values (§17.1.1.1, Table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// T1: RTT estimate, 500 ms by default.
    pub t1: Duration,
    /// T2: maximum retransmit interval for non-INVITE requests and INVITE responses, 4 s.
    pub t2: Duration,
    /// T4: maximum duration a message remains in the network, 5 s.
    pub t4: Duration,
    /// Timer D on unreliable transports: at least 32 s (§17.1.1.2).
    pub timer_d: Duration,
}

/// The four kinds of transaction (RFC 3261 §17).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxKind {
    InviteClient,
    NonInviteClient,
    InviteServer,
    NonInviteServer,
}

/// Transaction states (RFC 3261 Figures 5–8 as amended by RFC 6026). A transaction that has
/// reached Terminated is no longer in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxState {
    /// INVITE client, request sent, nothing received.
    Calling,
    /// Non-INVITE client or server, nothing sent or received yet.
    Trying,
    Proceeding,
    Completed,
    /// RFC 6026: a 2xx to an INVITE was sent or received.
    Accepted,
    /// INVITE server: the ACK for a non-2xx final arrived.
    Confirmed,
}

/// A message for the transport to send.
#[derive(Debug, Clone)]
pub struct Transmit {
    /// The transaction it belongs to (`None` for [`TransactionLayer::send_stateless`]); pass it
    /// to [`TransactionLayer::handle_transport_error`] if sending fails.
    pub tx: Option<TxId>,
    pub to: Peer,
    /// The message as printed (`Message::to_bytes`) when it entered the layer; shared with the
    /// transaction, which re-sends exactly these bytes.
    pub bytes: Bytes,
    /// What it is, for counting without parsing it again.
    pub summary: Summary,
}

/// The method and status of a [`Transmit`], for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// The request's method or the response's CSeq method: its token for the methods of
    /// RFC 3261 and their extensions we know, `"OTHER"` for any other, `""` when a response's
    /// CSeq is unreadable.
    pub method: &'static str,
    /// The status of a response; `None` for a request.
    pub status: Option<StatusCode>,
}

impl Summary {
    /// The summary of any message (the endpoint counts received responses with it).
    pub fn of(msg: &Message) -> Summary {
        match msg {
            Message::Request(r) => Summary::request(r),
            Message::Response(r) => Summary::response(r),
        }
    }
    fn request(r: &Request) -> Summary {
        Summary {
            method: method_label(&r.method),
            status: None,
        }
    }
    fn response(r: &Response) -> Summary {
        Summary {
            method: key::cseq(&r.headers).map_or("", |(_, m)| method_label(&m)),
            status: Some(r.status),
        }
    }
}

fn method_label(m: &Method) -> &'static str {
    m.known_token().unwrap_or("OTHER")
}

/// A message printed once: its bytes (a clone is a reference count) and its summary.
#[derive(Debug, Clone)]
struct Wire {
    bytes: Bytes,
    summary: Summary,
}

impl Wire {
    fn print(msg: &Message) -> Wire {
        match msg {
            Message::Request(r) => Wire::request(r),
            Message::Response(r) => Wire::response(r),
        }
    }
    fn request(r: &Request) -> Wire {
        Wire {
            bytes: Bytes::from(r.to_bytes()),
            summary: Summary::request(r),
        }
    }
    fn response(r: &Response) -> Wire {
        Wire {
            bytes: Bytes::from(r.to_bytes()),
            summary: Summary::response(r),
        }
    }
}

/// What a received message means for the transaction user (TU).
#[derive(Debug, Clone)]
pub enum TxInput {
    /// A new request with a new server transaction (never ACK, never CANCEL).
    Request { tx: TxId, req: Request, from: Peer },
    /// A response for one of our client transactions. Finals are passed up once, except that
    /// an INVITE in the Accepted state passes up every 2xx (retransmissions and other forks,
    /// RFC 6026) so that the TU can ACK each. Provisionals are passed up as received (§17.1.1.2).
    Response { tx: TxId, resp: Response },
    /// An ACK for a 2xx: no transaction of its own (end to end), or matched to an INVITE server
    /// transaction in the Accepted state (RFC 6026 §8.7). An ACK that matches nothing (say a
    /// late ACK for a non-2xx after Timer H) comes here too: the TU drops what fits no dialog.
    Ack { req: Request, from: Peer },
    /// A response that matches no client transaction, e.g. a 2xx retransmission after the
    /// INVITE client transaction ended: the TU re-ACKs it or drops it.
    StrayResponse { resp: Response, from: Peer },
    /// A CANCEL with its own server transaction `tx` (answer it with `respond`), matched to the
    /// INVITE server transaction it targets (§9.2), if that still exists.
    Cancel {
        tx: TxId,
        req: Request,
        from: Peer,
        invite_tx: Option<TxId>,
    },
}

/// Things that happen to transactions without a received message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxEvent {
    /// Timer B or F (no final response) or Timer H (no ACK) fired.
    Timeout { tx: TxId },
    /// The transport could not send for this transaction (§17.1.4, §17.2.4).
    TransportError { tx: TxId },
    /// The transaction left the table; exactly one per transaction.
    Terminated { tx: TxId },
}

/// Why the transaction layer refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    #[error("no live transaction {0:?}")]
    UnknownTransaction(TxId),
    #[error("{0:?} is a client transaction")]
    NotAServerTransaction(TxId),
    #[error("{tx:?} cannot send a {status} response in state {state:?}")]
    InvalidState {
        tx: TxId,
        state: TxState,
        status: u16,
    },
    #[error("status code {0} is not in 100..=699")]
    InvalidStatus(u16),
    #[error("missing or unreadable {0} header")]
    InvalidHeader(&'static str),
    #[error("the top Via has no branch with the z9hG4bK magic cookie")]
    MissingBranch,
    #[error("a client transaction with this branch and method already exists")]
    DuplicateTransaction,
    #[error("an ACK has no client transaction; send it with send_stateless")]
    AckHasNoTransaction,
}

/// The transaction table, its timers and its output queues.
#[derive(Debug)]
pub struct TransactionLayer {
    timers: Timers,
    auto_trying: bool,
    next_id: u64,
    txs: HashMap<TxId, Tx>,
    server_index: HashMap<ServerKey, TxId>,
    client_index: HashMap<ClientKey, TxId>,
    queue: TimerQueue,
    transmits: VecDeque<Transmit>,
    events: VecDeque<TxEvent>,
}

/// One transaction.
#[derive(Debug)]
struct Tx {
    kind: TxKind,
    state: TxState,
    peer: Peer,
    reliable: bool,
    key: Key,
    armed: Armed,
    /// The current Timer A/E/G interval.
    interval: Duration,
    /// What a retransmission sends, printed: client, the request until a final response;
    /// INVITE client in Completed, the ACK for the non-2xx final; server, the last response
    /// while a retransmitted request may ask for it (Proceeding, Completed). `None` otherwise.
    wire: Option<Wire>,
    /// INVITE client until its final response: the request, to build the ACK for a non-2xx
    /// final (§17.1.1.3). Dropped at the final.
    invite: Option<Box<Request>>,
}

#[derive(Debug)]
enum Key {
    Client(ClientKey),
    Server(ServerKey),
}

impl Branch {
    /// The RFC 3261 branch prefix.
    pub const MAGIC_COOKIE: &'static str = key::MAGIC_COOKIE;

    /// A fresh, globally unique branch: the magic cookie and 22 random alphanumerics.
    pub fn generate() -> Branch {
        let mut s = String::with_capacity(Self::MAGIC_COOKIE.len() + 22);
        s.push_str(Self::MAGIC_COOKIE);
        s.extend(
            rand::rng()
                .sample_iter(rand::distr::Alphanumeric)
                .take(22)
                .map(char::from),
        );
        Branch(s)
    }
    /// A branch read from a Via header (or made by a caller that builds its own Via).
    pub fn new(value: impl Into<String>) -> Branch {
        Branch(value.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Branch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Display for TxId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "tx{}", self.0)
    }
}

impl Default for Timers {
    fn default() -> Timers {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_d: Duration::from_secs(32),
        }
    }
}

impl Timers {
    /// 64*T1: Timers B, F, H, J, L and M.
    pub fn sixty_four_t1(&self) -> Duration {
        self.t1.saturating_mul(64)
    }
}

impl TransactionLayer {
    /// An empty layer. `100 Trying` is left to the TU; see [`TransactionLayer::with_auto_trying`].
    pub fn new(timers: Timers) -> TransactionLayer {
        TransactionLayer {
            timers,
            auto_trying: false,
            next_id: 0,
            txs: HashMap::new(),
            server_index: HashMap::new(),
            client_index: HashMap::new(),
            queue: TimerQueue::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// When on, every new INVITE server transaction answers `100 Trying` at once (§17.2.1
    /// allows the TU to do it instead, within 200 ms).
    pub fn with_auto_trying(mut self, on: bool) -> TransactionLayer {
        self.auto_trying = on;
        self
    }

    pub fn timers(&self) -> &Timers {
        &self.timers
    }

    /// Feeds a received message; returns what the TU must see, if anything.
    pub fn handle_message(&mut self, now: Instant, msg: Message, from: Peer) -> Option<TxInput> {
        let input = match msg {
            Message::Request(req) => self.on_request(now, req, from),
            Message::Response(resp) => self.on_response(now, resp, from),
        };
        self.prune();
        input
    }

    /// Sends a provisional or final response on a server transaction.
    pub fn respond(&mut self, now: Instant, tx: TxId, resp: Response) -> Result<(), TxError> {
        let r = self.on_respond(now, tx, resp);
        self.prune();
        r
    }

    /// Starts a client transaction for `req`, whose top Via must carry a branch with the magic
    /// cookie (see [`Branch::generate`]) and whose CSeq method must be the request's. The
    /// layer sends the request now and owns its retransmissions.
    pub fn send_request(&mut self, now: Instant, req: Request, to: Peer) -> Result<TxId, TxError> {
        let r = self.start_client(now, req, to);
        self.prune();
        r
    }

    /// Queues a message outside any transaction: the ACK for a 2xx, a stateless response.
    pub fn send_stateless(&mut self, msg: Message, to: Peer) {
        let wire = Wire::print(&msg);
        self.transmits.push_back(Transmit {
            tx: None,
            to,
            bytes: wire.bytes,
            summary: wire.summary,
        });
    }

    /// Fires every timer due at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((at, id, timer)) = self.queue.pop_due(now) {
            let Some(tx) = self.txs.get_mut(&id) else {
                continue;
            };
            if !tx.armed.is(timer, at) {
                continue;
            }
            tx.armed.clear(timer);
            self.fire(now, id, timer);
        }
        self.prune();
    }

    /// The transport failed to send for `tx`: the transaction ends (§17.1.4, §17.2.4) with a
    /// [`TxEvent::TransportError`]. Unknown ids are ignored.
    pub fn handle_transport_error(&mut self, tx: TxId) {
        self.end(tx, Some(TxEvent::TransportError { tx }));
        self.prune();
    }

    /// Ends a transaction on the TU's behalf (e.g. an INVITE client transaction still in
    /// Proceeding 64*T1 after its CANCEL, §9.1). Returns false if it was already gone.
    pub fn terminate(&mut self, tx: TxId) -> bool {
        let live = self.txs.contains_key(&tx);
        self.end(tx, None);
        self.prune();
        live
    }

    /// The earliest timer deadline, if any transaction has a timer armed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.queue.earliest()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<TxEvent> {
        self.events.pop_front()
    }

    /// Live transactions.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// The state of a live transaction.
    pub fn state(&self, tx: TxId) -> Option<TxState> {
        self.txs.get(&tx).map(|t| t.state)
    }

    /// The kind of a live transaction.
    pub fn kind(&self, tx: TxId) -> Option<TxKind> {
        self.txs.get(&tx).map(|t| t.kind)
    }

    fn alloc_id(&mut self) -> TxId {
        self.next_id += 1;
        TxId(self.next_id)
    }

    /// Arms `timer` for `id` at `now + after`.
    fn arm(&mut self, id: TxId, timer: Timer, now: Instant, after: Duration) {
        if let Some(tx) = self.txs.get_mut(&id) {
            let at = now + after;
            tx.armed.set(timer, at);
            self.queue.push(at, id, timer);
        }
    }

    /// Arms a retransmission timer; the interval is at least 1 ms so that a zero T1 cannot
    /// make `handle_timeout` spin.
    fn arm_retransmit(&mut self, id: TxId, timer: Timer, now: Instant, interval: Duration) {
        let interval = interval.max(Duration::from_millis(1));
        if let Some(tx) = self.txs.get_mut(&id) {
            tx.interval = interval;
        }
        self.arm(id, timer, now, interval);
    }

    fn disarm(&mut self, id: TxId, timers: &[Timer]) {
        if let Some(tx) = self.txs.get_mut(&id) {
            for t in timers {
                tx.armed.clear(*t);
            }
        }
    }

    /// Enters a lingering state: arms `timer` after `wait`, or ends at once when `wait` is zero
    /// (Timers D, I, J, K on reliable transports).
    fn linger(&mut self, id: TxId, timer: Timer, now: Instant, wait: Duration) {
        if wait.is_zero() {
            self.end(id, None);
        } else {
            self.arm(id, timer, now, wait);
        }
    }

    fn send(&mut self, id: TxId, to: Peer, wire: Wire) {
        self.transmits.push_back(Transmit {
            tx: Some(id),
            to,
            bytes: wire.bytes,
            summary: wire.summary,
        });
    }

    fn fire(&mut self, now: Instant, id: TxId, timer: Timer) {
        match timer {
            Timer::A | Timer::E => self.client_retransmit(now, id, timer),
            Timer::G => self.server_retransmit(now, id),
            Timer::B | Timer::F | Timer::H => self.end(id, Some(TxEvent::Timeout { tx: id })),
            Timer::D | Timer::I | Timer::J | Timer::K | Timer::L | Timer::M => self.end(id, None),
        }
    }

    /// Removes a transaction from the table and its index, queueing `reason` (if any) and then
    /// `Terminated`. Its heap entries become stale.
    fn end(&mut self, id: TxId, reason: Option<TxEvent>) {
        let Some(tx) = self.txs.remove(&id) else {
            return;
        };
        match tx.key {
            Key::Client(k) => {
                if self.client_index.get(&k) == Some(&id) {
                    self.client_index.remove(&k);
                }
            }
            Key::Server(k) => {
                if self.server_index.get(&k) == Some(&id) {
                    self.server_index.remove(&k);
                }
            }
        }
        tracing::trace!(tx = %id, kind = ?tx.kind, state = ?tx.state, "transaction terminated");
        self.events.extend(reason);
        self.events.push_back(TxEvent::Terminated { tx: id });
    }

    /// Drops stale heap entries from the top so that `poll_timeout` is exact, and gives back
    /// the memory of a drained burst.
    fn prune(&mut self) {
        let txs = &self.txs;
        self.queue
            .prune(|at, id, timer| txs.get(&id).is_some_and(|t| t.armed.is(timer, at)));
        self.shrink();
    }

    /// Hash maps and heaps keep their largest capacity for ever: after a burst of 100,000
    /// transactions the table would hold tens of megabytes of empty slots. A collection at most
    /// a quarter full is shrunk to one and a half times its length (amortised O(1): it lost
    /// three quarters of its entries since it last grew or shrank).
    fn shrink(&mut self) {
        shrink_sparse!(
            self.txs,
            self.server_index,
            self.client_index,
            self.queue,
            self.transmits,
            self.events
        );
    }

    /// Memory held by the table, for tests: (capacity of the transaction map, of the timer
    /// heap).
    #[cfg(test)]
    fn capacities(&self) -> (usize, usize) {
        (self.txs.capacity(), self.queue.capacity())
    }

    /// Heap entries, live or stale (tests check that stale ones do not pile up).
    #[cfg(test)]
    fn queued_timers(&self) -> usize {
        self.queue.len()
    }
}

/// Capacity below which collections are never shrunk.
const SMALL: usize = 1024;

/// True when a collection of `len` items is worth shrinking: large and at most a quarter full.
pub(crate) fn sparse(len: usize, capacity: usize) -> bool {
    capacity > SMALL && len.saturating_mul(4) <= capacity
}

fn status_ok(status: StatusCode) -> Result<(), TxError> {
    if (100..=699).contains(&status.0) {
        Ok(())
    } else {
        Err(TxError::InvalidStatus(status.0))
    }
}

fn is_invite(m: &Method) -> bool {
    matches!(m, Method::Invite)
}

#[cfg(test)]
mod tests;
