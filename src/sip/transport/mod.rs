//! SIP transports (DRIVER): UDP and TCP per RFC 3261 §18, responses routed by Via with
//! `received`/`rport` per RFC 3261 §18.2.1–§18.2.2 and RFC 3581, keep-alives per RFC 5626.
//!
//! This module owns every SIP socket of the process:
//!
//! * **UDP** ([`udp`]): one receive loop per socket, no task per datagram, one reused 64 KiB
//!   buffer, `parse(.., Framing::Datagram)`. Datagrams that are only whitespace (RFC 5626 §4.4.1
//!   CRLF keep-alives) and STUN packets are dropped silently. Sends use the listening socket of
//!   the destination's address family (so the peer sees our well-known port, §18.1.1).
//!   `SO_RCVBUF`/`SO_SNDBUF` are raised to [`TransportConfig::socket_buffer`].
//! * **TCP** ([`tcp`]): an accept loop per listener and one task per connection that both reads
//!   (Content-Length framing with `Framing::Stream` over a growing buffer bounded by
//!   [`MAX_MESSAGE_SIZE`], see [`framing`]) and writes (an mpsc queue of [`Bytes`]). A CRLFCRLF
//!   ping is answered with a CRLF pong (RFC 5626 §3.5.1); stray CRLFs before a start line are
//!   ignored (§7.5). A connection idle for [`TransportConfig::idle_timeout`] is closed. After a
//!   malformed message the connection stops reading, delivers [`InboundEvent::Malformed`] so
//!   the endpoint can answer 400, and closes after that answer is written or after
//!   [`TransportConfig::malformed_linger`] (nothing is expected for responses or messages with
//!   no salvage: it closes at once). Connections are kept in a table keyed by the remote
//!   address: a response or request to a [`Peer`] reuses an open connection, inbound or
//!   outbound (§18.2.2, §18.1.1), else [`TransportSet::send`] connects (bounded by
//!   [`TransportConfig::connect_timeout`]) and registers the new connection. At most
//!   [`TransportConfig::max_connections`] connections are open at once.
//! * **Via stamping** ([`via`]): every inbound request gets its top Via stamped with `received`
//!   and `rport` before delivery (§18.2.1, RFC 3581 §4), so the endpoint finds the response
//!   address with [`via::response_peer`] on the request's top Via and source [`Peer`]. For a
//!   reliable transport that is the source itself (the same connection); for UDP it is
//!   `received` + `rport` (or the sent-by port, or 5060). The endpoint should therefore keep
//!   the request's source `Peer` with the server transaction.
//!
//! Shutdown: the [`CancellationToken`] given to [`TransportSet::bind`] stops every loop;
//! [`TransportSet::closed`] waits until every task this module spawned has ended.
//!
//! Metrics (counters resolved once at bind, so install the recorder before binding):
//! `switchboard_sip_transport_bytes_total` and `switchboard_sip_transport_messages_total`,
//! labelled `direction` = `in`/`out` and `transport` = `udp`/`tcp`.

pub mod framing;
pub mod tcp;
pub mod udp;
pub mod via;

#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::sip::message::{Framing, Invalid, Message, ParseError};

pub use crate::sip::message::MAX_MESSAGE_SIZE;

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

/// Where a message came from or goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub transport: Transport,
    pub addr: SocketAddr,
}

/// One socket to listen on: `udp:IP:PORT` or `tcp:IP:PORT` (IPv6 as `udp:[::1]:5060`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Listen {
    pub transport: Transport,
    pub addr: SocketAddr,
}

/// A message (or a malformed one) that arrived on one of our sockets.
#[derive(Debug)]
pub struct Inbound {
    /// Who sent it; for TCP, `send` to this peer writes on the same connection.
    pub peer: Peer,
    /// Our socket address it arrived on.
    pub local: SocketAddr,
    pub event: InboundEvent,
}

/// What arrived.
#[derive(Debug)]
pub enum InboundEvent {
    /// A well-formed message; requests already carry a stamped top Via (§18.2.1).
    Message(Message),
    /// Bytes that can never be a message. For a request with salvage, the endpoint answers
    /// 400 (or `status`) to `peer`; on TCP the connection closes after that answer.
    Malformed(Box<Invalid>),
}

/// Parses one message from the front of a buffer (the contract of [`crate::sip::message::parse`]).
pub type ParseFn = fn(&[u8], Framing) -> Result<(Message, usize), ParseError>;

/// Tunables; [`TransportConfig::default`] is what production uses.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// A TCP connection with no traffic either way for this long is closed.
    pub idle_timeout: Duration,
    /// Outbound TCP connect attempts give up after this long.
    pub connect_timeout: Duration,
    /// Most TCP connections (inbound plus outbound) open at once; more are refused.
    pub max_connections: usize,
    /// How long a TCP connection that sent a malformed request waits for our 400 before closing.
    pub malformed_linger: Duration,
    /// `SO_RCVBUF`/`SO_SNDBUF` asked for on UDP sockets (the kernel may cap it).
    pub socket_buffer: usize,
    /// Queued outbound messages per TCP connection before `send` waits.
    pub write_queue: usize,
    /// The message parser; tests substitute a toy one.
    pub parser: ParseFn,
}

/// A handle on the bound sockets; cheap to clone.
#[derive(Clone)]
pub struct TransportSet {
    inner: Arc<Inner>,
}

/// Why a message could not be sent or a socket bound.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("no {transport} socket for address family of {addr}")]
    NoSocket {
        transport: Transport,
        addr: SocketAddr,
    },
    #[error("connecting to {0} timed out")]
    ConnectTimeout(SocketAddr),
    #[error("connecting to {addr}: {source}")]
    Connect { addr: SocketAddr, source: io::Error },
    #[error("too many open connections")]
    TooManyConnections,
    #[error("the connection to {0} closed")]
    ConnectionClosed(SocketAddr),
    #[error("transport is shutting down")]
    Shutdown,
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

/// Why a [`Listen`] string does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid listen address {0:?}: expected udp:IP:PORT or tcp:IP:PORT")]
pub struct ListenParseError(pub String);

/// Default [`TransportConfig::idle_timeout`]: 10 minutes without traffic.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Default [`TransportConfig::connect_timeout`].
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default [`TransportConfig::max_connections`].
pub const MAX_CONNECTIONS: usize = 10_000;
/// Default [`TransportConfig::malformed_linger`].
pub const MALFORMED_LINGER: Duration = Duration::from_secs(2);
/// Default [`TransportConfig::socket_buffer`]: 4 MiB.
pub const SOCKET_BUFFER: usize = 4 * 1024 * 1024;
/// Default [`TransportConfig::write_queue`].
pub const WRITE_QUEUE: usize = 256;

struct Inner {
    udp: Vec<udp::UdpEndpoint>,
    tcp: tcp::TcpState,
    tcp_listens: Vec<SocketAddr>,
    config: TransportConfig,
    inbound: mpsc::Sender<Inbound>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    metrics: Counters,
}

/// Metric handles resolved once (a `counter!` lookup per datagram would cost a hash).
struct Counters {
    udp: DirCounters,
    tcp: DirCounters,
}

struct DirCounters {
    bytes_in: metrics::Counter,
    bytes_out: metrics::Counter,
    msgs_in: metrics::Counter,
    msgs_out: metrics::Counter,
}

impl Transport {
    /// Reliable transports skip retransmission timers (RFC 3261 §17.1.1.2, §17.2.1).
    pub fn is_reliable(self) -> bool {
        matches!(self, Transport::Tcp)
    }
    /// The Via transport token.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }
    /// A Via transport token or `transport=` URI parameter, in any case.
    pub fn from_token(token: &str) -> Option<Transport> {
        if token.eq_ignore_ascii_case("udp") {
            Some(Transport::Udp)
        } else if token.eq_ignore_ascii_case("tcp") {
            Some(Transport::Tcp)
        } else {
            None
        }
    }
    /// The default port for the transport (§19.1.2): 5060 for UDP and TCP.
    pub fn default_port(self) -> u16 {
        5060
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}",
            self.transport.as_str().to_ascii_lowercase(),
            self.addr
        )
    }
}

impl From<Listen> for Peer {
    fn from(l: Listen) -> Peer {
        Peer {
            transport: l.transport,
            addr: l.addr,
        }
    }
}

impl FromStr for Listen {
    type Err = ListenParseError;
    fn from_str(s: &str) -> Result<Listen, ListenParseError> {
        let err = || ListenParseError(s.to_owned());
        let (t, addr) = s.trim().split_once(':').ok_or_else(err)?;
        let transport = Transport::from_token(t).ok_or_else(err)?;
        let addr = addr.parse::<SocketAddr>().map_err(|_| err())?;
        Ok(Listen { transport, addr })
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Peer::from(*self).fmt(f)
    }
}

impl<'de> serde::Deserialize<'de> for Listen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Listen, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for Listen {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Default for TransportConfig {
    fn default() -> TransportConfig {
        TransportConfig {
            idle_timeout: IDLE_TIMEOUT,
            connect_timeout: CONNECT_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            malformed_linger: MALFORMED_LINGER,
            socket_buffer: SOCKET_BUFFER,
            write_queue: WRITE_QUEUE,
            parser: crate::sip::message::parse,
        }
    }
}

impl TransportSet {
    /// Binds every listen address with the default configuration and starts the receive
    /// loops; messages go to `inbound` until `shutdown` is cancelled.
    pub async fn bind(
        listens: &[Listen],
        inbound: mpsc::Sender<Inbound>,
        shutdown: CancellationToken,
    ) -> io::Result<TransportSet> {
        TransportSet::bind_with(listens, inbound, shutdown, TransportConfig::default()).await
    }

    /// [`TransportSet::bind`] with explicit tunables (and parser).
    pub async fn bind_with(
        listens: &[Listen],
        inbound: mpsc::Sender<Inbound>,
        shutdown: CancellationToken,
        config: TransportConfig,
    ) -> io::Result<TransportSet> {
        // Bind everything first so that a failure leaves no task behind.
        let mut udp_sockets = Vec::new();
        let mut tcp_listeners = Vec::new();
        for l in listens {
            match l.transport {
                Transport::Udp => {
                    udp_sockets.push(udp::bind(l.addr, config.socket_buffer)?);
                }
                Transport::Tcp => tcp_listeners.push(tcp::bind(l.addr)?),
            }
        }
        let udp = udp_sockets
            .into_iter()
            .map(|socket| {
                let local = socket.local_addr()?;
                Ok(udp::UdpEndpoint {
                    socket: Arc::new(socket),
                    local,
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        let tcp_listens = tcp_listeners
            .iter()
            .map(|l| l.local_addr())
            .collect::<io::Result<Vec<_>>>()?;
        let inner = Arc::new(Inner {
            udp,
            tcp: tcp::TcpState::new(config.max_connections),
            tcp_listens,
            config,
            inbound,
            shutdown,
            tracker: TaskTracker::new(),
            metrics: Counters::new(),
        });
        for ep in &inner.udp {
            inner.tracker.spawn(udp::receive_loop(
                inner.clone(),
                ep.socket.clone(),
                ep.local,
            ));
        }
        for listener in tcp_listeners {
            inner
                .tracker
                .spawn(tcp::accept_loop(inner.clone(), listener));
        }
        Ok(TransportSet { inner })
    }

    /// The addresses actually bound (ephemeral ports resolved), UDP first, in listen order.
    pub fn local_addrs(&self) -> Vec<Listen> {
        let udp = self.inner.udp.iter().map(|e| Listen {
            transport: Transport::Udp,
            addr: e.local,
        });
        let tcp = self.inner.tcp_listens.iter().map(|&addr| Listen {
            transport: Transport::Tcp,
            addr,
        });
        udp.chain(tcp).collect()
    }

    /// Sends one already-printed message. UDP: `send_to` from the first listening socket of
    /// the destination's family. TCP: on the open connection to `to.addr` (inbound or
    /// outbound), else on a new connection that is then registered for reuse.
    pub async fn send(&self, to: Peer, bytes: Bytes) -> Result<(), TransportError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(TransportError::Shutdown);
        }
        match to.transport {
            Transport::Udp => udp::send(&self.inner, to.addr, &bytes).await,
            Transport::Tcp => tcp::send(&self.inner, to.addr, bytes).await,
        }
    }

    /// Queues a message on the open TCP connection to `to` without waiting, so that messages
    /// queued one after another leave in that order (a `100 Trying` before the `407` that
    /// follows it). Gives the bytes back when there is no open connection or its queue is full:
    /// the caller then uses [`TransportSet::send`], which may connect.
    pub fn try_send_tcp(&self, to: SocketAddr, bytes: Bytes) -> Result<(), Bytes> {
        if self.inner.shutdown.is_cancelled() {
            return Err(bytes);
        }
        tcp::try_send(&self.inner, to, bytes)
    }

    /// The sent-by address for our Via on transport `t` (the first listening socket of that
    /// transport), or `None` if we do not listen on it. A wildcard address (0.0.0.0, ::) is
    /// returned as bound: the endpoint should then use its configured public address.
    pub fn via_sent_by(&self, t: Transport) -> Option<SocketAddr> {
        self.local_addrs()
            .into_iter()
            .find(|l| l.transport == t)
            .map(|l| l.addr)
    }

    /// Open TCP connections (inbound and outbound).
    pub fn connection_count(&self) -> usize {
        self.inner.tcp.len()
    }

    /// Waits until every task of this transport set has ended (after `shutdown` is cancelled).
    pub async fn closed(&self) {
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }
}

impl Inner {
    /// Hands an event to the endpoint; false when the endpoint is gone or we are shutting down.
    async fn deliver(&self, inbound: Inbound) -> bool {
        tokio::select! {
            _ = self.shutdown.cancelled() => false,
            r = self.inbound.send(inbound) => r.is_ok(),
        }
    }

    /// Turns a parsed message into an inbound event, stamping a request's top Via (§18.2.1).
    fn message_event(&self, mut msg: Message, source: SocketAddr) -> InboundEvent {
        if let Message::Request(req) = &mut msg {
            // An unparseable top Via is left for the endpoint to reject.
            let _ = via::stamp_request(req, source);
        }
        InboundEvent::Message(msg)
    }
}

impl Counters {
    fn new() -> Counters {
        Counters {
            udp: DirCounters::new("udp"),
            tcp: DirCounters::new("tcp"),
        }
    }
}

impl DirCounters {
    fn new(transport: &'static str) -> DirCounters {
        DirCounters {
            bytes_in: metrics::counter!("switchboard_sip_transport_bytes_total", "direction" => "in", "transport" => transport),
            bytes_out: metrics::counter!("switchboard_sip_transport_bytes_total", "direction" => "out", "transport" => transport),
            msgs_in: metrics::counter!("switchboard_sip_transport_messages_total", "direction" => "in", "transport" => transport),
            msgs_out: metrics::counter!("switchboard_sip_transport_messages_total", "direction" => "out", "transport" => transport),
        }
    }
}

/// An [`Invalid`] for bytes the parser never saw whole (too large, truncated).
fn invalid_without_salvage(reason: &str, status: u16, bytes: &[u8]) -> Box<Invalid> {
    Box::new(Invalid {
        reason: reason.to_owned(),
        status: crate::sip::message::StatusCode(status),
        is_request: !bytes.starts_with(b"SIP/"),
        salvage: None,
    })
}
