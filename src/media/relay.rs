//! The RTP/RTCP relay that anchors a call's media between two legs. DRIVER.
//!
//! Owns:
//! * [`PortPool`]: even/odd port pairs (RTP even, RTCP = RTP + 1, RFC 3550 §11) from a
//!   configured range; O(1) allocate and free through a FIFO free list (so a freed pair is
//!   reused last, away from stale packets of the previous call); the pair returns to the pool
//!   when its [`PortPair`] guard drops. Exhaustion is [`RelayError::Exhausted`] (the B2BUA
//!   answers 503).
//! * [`Relay`]: two legs, A and B, each with an RTP and an RTCP socket. A datagram received on
//!   one leg's socket leaves through the other leg's socket of the same kind towards that
//!   leg's destination, so each party sees one symmetric address (RFC 4961). Destinations come
//!   from SDP ([`Relay::set_remote`], callable again at any time for re-INVITEs) and from
//!   symmetric latching ([`super::latch`]).
//!
//! One tokio task per relay owns the four sockets and the four latches and waits on
//! readiness of all of them in one `select!`; each wake drains every socket with
//! `try_recv_from` until `WouldBlock` (at most [`MAX_BATCH`] datagrams per socket per wake,
//! for fairness). No allocation, task spawn or lock per packet: the SDP addresses arrive
//! through a `watch` channel, statistics are relaxed atomics, and the metric handles are
//! resolved once per relay. Socket buffers are enlarged ([`RelayConfig::socket_buffer`]) and
//! IPv4 RTP is marked DSCP EF (RFC 4594).
//!
//! Metrics: `switchboard_rtp_packets_relayed_total{kind="rtp"|"rtcp"}`,
//! `switchboard_rtp_packets_dropped_total{reason=...}` (see [`DropReason::as_str`]) and the
//! gauge `switchboard_media_port_pairs_allocated`.
//!
//! Datagrams longer than [`MAX_DATAGRAM`] bytes are truncated by the receive; RTP over
//! Ethernet never comes near it.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge};
use socket2::{Domain, Protocol, Socket, Type};
use thiserror::Error;
use tokio::io::ReadBuf;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::latch::{self, DropReason, Latch, Verdict};
use crate::clock;

/// Receive buffer size per relay; larger datagrams are truncated.
pub const MAX_DATAGRAM: usize = 2048;
/// Most datagrams drained from one socket per wake before the others get a turn.
pub const MAX_BATCH: usize = 64;
/// Most port pairs tried when binding fails because a port is taken by another process.
pub const MAX_BIND_ATTEMPTS: usize = 16;
/// DSCP EF (46) in the IPv4 TOS byte, for RTP (RFC 4594 §4.1).
const TOS_EF: u32 = 46 << 2;

/// Why a relay could not be set up or run.
#[derive(Debug, Error)]
pub enum RelayError {
    #[error("invalid RTP port range {low}-{high}: it must hold at least one even/odd pair above 0")]
    InvalidRange { low: u16, high: u16 },
    /// Every port pair is in use (the B2BUA answers 503).
    #[error("RTP port pool exhausted")]
    Exhausted,
    #[error("cannot bind RTP port pair {rtp}/{rtcp} on {ip}: {source}")]
    Bind {
        ip: IpAddr,
        rtp: u16,
        rtcp: u16,
        source: io::Error,
    },
    #[error("relay already started")]
    AlreadyStarted,
    #[error("relay sockets are closed")]
    Closed,
    #[error("relay started outside a tokio runtime")]
    NoRuntime,
    #[error("relay socket: {0}")]
    Io(#[from] io::Error),
}

/// One side of the relay. A faces the party that sent the first offer, by convention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Leg {
    A,
    B,
}

/// A range of even/odd RTP/RTCP port pairs. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct PortPool {
    inner: Arc<PoolInner>,
}

/// One allocated pair; returns to its pool when dropped.
#[derive(Debug)]
pub struct PortPair {
    pool: Arc<PoolInner>,
    rtp: u16,
}

/// Settings of one relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// Re-latch a new source after the latched one was silent this long (see
    /// [`super::latch`]); `None` (default) latches for the whole call.
    pub relatch_after: Option<Duration>,
    /// Requested SO_RCVBUF and SO_SNDBUF per socket, in bytes (the kernel may cap it).
    pub socket_buffer: usize,
}

/// An RTP/RTCP relay between two legs. Dropping it stops the forwarding task, which then
/// closes the sockets and frees the ports; [`Relay::stop`] does the same and waits for it.
#[derive(Debug)]
pub struct Relay {
    bind_ip: IpAddr,
    ports: [u16; 2],
    remotes: watch::Sender<Remotes>,
    stats: Arc<SharedStats>,
    config: RelayConfig,
    state: State,
}

/// Counters of one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectionStats {
    pub rtp_packets: u64,
    pub rtp_bytes: u64,
    pub rtcp_packets: u64,
    pub rtcp_bytes: u64,
}

/// Dropped datagrams by reason, both legs together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropStats {
    pub malformed: u64,
    pub foreign_source: u64,
    pub no_destination: u64,
    pub send_failed: u64,
}

/// A snapshot of one relay's counters, for the call record and tests. A datagram is counted
/// as relayed when it is handed to the socket, before the send returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Received on leg A, sent out of leg B.
    pub a_to_b: DirectionStats,
    /// Received on leg B, sent out of leg A.
    pub b_to_a: DirectionStats,
    pub dropped: DropStats,
}

#[derive(Debug)]
struct PoolInner {
    low: u16,
    high: u16,
    pairs: usize,
    free: Mutex<VecDeque<u16>>,
    allocated: Gauge,
}

/// SDP destinations per socket: [A RTP, A RTCP, B RTP, B RTCP].
type Remotes = [Option<SocketAddr>; 4];

#[derive(Debug)]
enum State {
    Bound(Box<Bound>),
    Running(JoinHandle<()>),
    /// Starting failed half-way; the sockets are closed and the ports freed.
    Closed,
}

#[derive(Debug)]
struct Bound {
    sockets: [StdUdpSocket; 4],
    pairs: [PortPair; 2],
}

/// Per socket index (the receiving socket): packets and bytes, then drops by reason.
#[derive(Debug, Default)]
struct SharedStats {
    packets: [AtomicU64; 4],
    bytes: [AtomicU64; 4],
    dropped: [AtomicU64; 4],
}

struct Metrics {
    relayed_rtp: Counter,
    relayed_rtcp: Counter,
    dropped: [Counter; 4],
}

/// The forwarding task's state: everything it touches per packet.
struct Forwarder {
    sockets: [UdpSocket; 4],
    latches: [Latch; 4],
    stats: Arc<SharedStats>,
    metrics: Metrics,
    buf: Box<[u8; MAX_DATAGRAM]>,
    /// Relayed RTP and RTCP packets not yet added to the Prometheus counters.
    unpublished: [u64; 2],
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.publish();
    }
}

/// Relayed packets are added to the Prometheus counters in batches of this size (and when
/// the relay ends).
const PUBLISH_EVERY: u64 = 64;

/// Receive errors that leave the socket usable (ICMP port unreachable and the like).
pub(crate) fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

impl Leg {
    /// The other leg.
    pub fn other(self) -> Leg {
        match self {
            Leg::A => Leg::B,
            Leg::B => Leg::A,
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Leg::A => 0,
            Leg::B => 1,
        }
    }
}

impl PortPool {
    /// Pairs `(p, p + 1)` with `p` even and `low <= p`, `p + 1 <= high`.
    pub fn new(low: u16, high: u16) -> Result<Self, RelayError> {
        let invalid = RelayError::InvalidRange { low, high };
        let first = if low.is_multiple_of(2) {
            low
        } else {
            low.checked_add(1).ok_or(invalid)?
        };
        if first == 0 || first >= high {
            return Err(RelayError::InvalidRange { low, high });
        }
        let free: VecDeque<u16> = (first..high).step_by(2).collect();
        let pairs = free.len();
        let allocated = metrics::gauge!("switchboard_media_port_pairs_allocated");
        allocated.set(0.0);
        Ok(Self {
            inner: Arc::new(PoolInner {
                low,
                high,
                pairs,
                free: Mutex::new(free),
                allocated,
            }),
        })
    }

    /// Takes the least recently freed pair, or [`RelayError::Exhausted`].
    pub fn allocate(&self) -> Result<PortPair, RelayError> {
        let rtp = {
            let mut free = self.inner.lock();
            let rtp = free.pop_front().ok_or(RelayError::Exhausted)?;
            self.inner
                .allocated
                .set((self.inner.pairs - free.len()) as f64);
            rtp
        };
        Ok(PortPair {
            pool: Arc::clone(&self.inner),
            rtp,
        })
    }

    /// Pairs currently free.
    pub fn available(&self) -> usize {
        self.inner.lock().len()
    }

    /// Pairs in the pool.
    pub fn capacity(&self) -> usize {
        self.inner.pairs
    }

    /// The configured range.
    pub fn range(&self) -> (u16, u16) {
        (self.inner.low, self.inner.high)
    }
}

impl PortPair {
    /// The even RTP port.
    pub fn rtp(&self) -> u16 {
        self.rtp
    }

    /// The RTCP port, RTP + 1.
    pub fn rtcp(&self) -> u16 {
        self.rtp + 1
    }
}

impl Drop for PortPair {
    fn drop(&mut self) {
        let mut free = self.pool.lock();
        free.push_back(self.rtp);
        self.pool
            .allocated
            .set((self.pool.pairs - free.len()) as f64);
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            relatch_after: None,
            socket_buffer: default_socket_buffer(),
        }
    }
}

impl Relay {
    /// Allocates and binds two port pairs on `bind_ip` with the default configuration.
    pub fn new(pool: &PortPool, bind_ip: IpAddr) -> Result<Self, RelayError> {
        Self::with_config(pool, bind_ip, RelayConfig::default())
    }

    /// Allocates and binds two port pairs on `bind_ip`. A pair whose ports are taken by
    /// another process is skipped (up to [`MAX_BIND_ATTEMPTS`] times). Needs no runtime.
    pub fn with_config(
        pool: &PortPool,
        bind_ip: IpAddr,
        config: RelayConfig,
    ) -> Result<Self, RelayError> {
        let (pair_a, rtp_a, rtcp_a) = bind_pair(pool, bind_ip, config.socket_buffer)?;
        let (pair_b, rtp_b, rtcp_b) = bind_pair(pool, bind_ip, config.socket_buffer)?;
        let ports = [pair_a.rtp(), pair_b.rtp()];
        Ok(Self {
            bind_ip,
            ports,
            remotes: watch::Sender::new([None; 4]),
            stats: Arc::new(SharedStats::default()),
            config,
            state: State::Bound(Box::new(Bound {
                sockets: [rtp_a, rtcp_a, rtp_b, rtcp_b],
                pairs: [pair_a, pair_b],
            })),
        })
    }

    /// The RTP port to advertise in the SDP sent to `leg`'s party (RTCP is this + 1).
    pub fn local_port(&self, leg: Leg) -> u16 {
        self.ports[leg.index()]
    }

    /// The RTP address to advertise to `leg`'s party.
    pub fn local_addr(&self, leg: Leg) -> SocketAddr {
        SocketAddr::new(self.bind_ip, self.local_port(leg))
    }

    /// Sets `leg`'s party's RTP address from its SDP; RTCP goes to the next port (RFC 3550
    /// §11). Callable before or after [`Relay::start`], again on every re-INVITE.
    pub fn set_remote(&self, leg: Leg, rtp: SocketAddr) {
        let rtcp = rtp
            .port()
            .checked_add(1)
            .map(|p| SocketAddr::new(rtp.ip(), p));
        self.set_remotes(leg, Some(rtp), rtcp);
    }

    /// Like [`Relay::set_remote`] with an explicit RTCP address (SDP `a=rtcp`, RFC 3605).
    pub fn set_remote_with_rtcp(&self, leg: Leg, rtp: SocketAddr, rtcp: SocketAddr) {
        self.set_remotes(leg, Some(rtp), Some(rtcp));
    }

    /// Forgets `leg`'s SDP address (its latched source, if any, still receives).
    pub fn clear_remote(&self, leg: Leg) {
        self.set_remotes(leg, None, None);
    }

    /// Spawns the forwarding task on the current tokio runtime.
    pub fn start(&mut self) -> Result<(), RelayError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(RelayError::NoRuntime);
        }
        let bound = match std::mem::replace(&mut self.state, State::Closed) {
            State::Bound(bound) => bound,
            running @ State::Running(_) => {
                self.state = running;
                return Err(RelayError::AlreadyStarted);
            }
            State::Closed => return Err(RelayError::Closed),
        };
        let Bound { sockets, pairs } = *bound;
        let [s0, s1, s2, s3] = sockets;
        let sockets = [
            UdpSocket::from_std(s0)?,
            UdpSocket::from_std(s1)?,
            UdpSocket::from_std(s2)?,
            UdpSocket::from_std(s3)?,
        ];
        let forwarder = Forwarder {
            sockets,
            latches: std::array::from_fn(|_| Latch::new(self.config.relatch_after)),
            stats: Arc::clone(&self.stats),
            metrics: Metrics::new(),
            buf: Box::new([0; MAX_DATAGRAM]),
            unpublished: [0, 0],
        };
        let remotes = self.remotes.subscribe();
        self.state = State::Running(tokio::spawn(forwarder.run(remotes, pairs)));
        Ok(())
    }

    /// Whether [`Relay::start`] has run.
    pub fn is_running(&self) -> bool {
        matches!(self.state, State::Running(_))
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> RelayStats {
        self.stats.snapshot()
    }

    /// Stops forwarding and waits until the sockets are closed and the ports are back in the
    /// pool. Returns the final counters.
    pub async fn stop(self) -> RelayStats {
        let Relay {
            remotes,
            state,
            stats,
            ..
        } = self;
        drop(remotes);
        if let State::Running(task) = state {
            // A JoinError means the task panicked or was cancelled: either way it is gone.
            let _ = task.await;
        }
        stats.snapshot()
    }

    fn set_remotes(&self, leg: Leg, rtp: Option<SocketAddr>, rtcp: Option<SocketAddr>) {
        let i = leg.index() * 2;
        self.remotes.send_modify(|r| {
            r[i] = rtp;
            r[i + 1] = rtcp;
        });
    }
}

impl PoolInner {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<u16>> {
        // The critical sections cannot panic; a poisoned lock still holds a valid list.
        self.free.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl SharedStats {
    fn snapshot(&self) -> RelayStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let dir = |rtp: usize| DirectionStats {
            rtp_packets: get(&self.packets[rtp]),
            rtp_bytes: get(&self.bytes[rtp]),
            rtcp_packets: get(&self.packets[rtp + 1]),
            rtcp_bytes: get(&self.bytes[rtp + 1]),
        };
        RelayStats {
            a_to_b: dir(0),
            b_to_a: dir(2),
            dropped: DropStats {
                malformed: get(&self.dropped[DropReason::Malformed.index()]),
                foreign_source: get(&self.dropped[DropReason::ForeignSource.index()]),
                no_destination: get(&self.dropped[DropReason::NoDestination.index()]),
                send_failed: get(&self.dropped[DropReason::SendFailed.index()]),
            },
        }
    }
}

impl DropStats {
    /// All drops.
    pub fn total(&self) -> u64 {
        self.malformed + self.foreign_source + self.no_destination + self.send_failed
    }
}

impl Metrics {
    fn new() -> Self {
        Self {
            relayed_rtp: metrics::counter!("switchboard_rtp_packets_relayed_total", "kind" => "rtp"),
            relayed_rtcp: metrics::counter!("switchboard_rtp_packets_relayed_total", "kind" => "rtcp"),
            dropped: DropReason::ALL
                .map(|r| metrics::counter!("switchboard_rtp_packets_dropped_total", "reason" => r.as_str())),
        }
    }
}

impl Forwarder {
    /// The relay loop: SDP updates first, then every readable socket drained in turn. Ends
    /// when the [`Relay`] is dropped or stopped; then the sockets close and `pairs` return
    /// to the pool, in that order.
    ///
    /// Hand-polled rather than `select!` over `readable()` futures: each socket keeps its one
    /// waker slot registered between wakeups and the SDP-change future lives until it fires, so
    /// a wakeup costs no future construction, waiter-list locking or teardown (measured: the
    /// `select!` form spent ~15 % of relay CPU there).
    async fn run(mut self, mut remotes: watch::Receiver<Remotes>, pairs: [PortPair; 2]) {
        self.apply_remotes(&remotes.borrow_and_update());
        loop {
            let open = {
                let changed = remotes.changed();
                tokio::pin!(changed);
                std::future::poll_fn(|cx| {
                    if let Poll::Ready(r) = changed.as_mut().poll(cx) {
                        return Poll::Ready(r.is_ok());
                    }
                    self.poll_sockets(cx)
                })
                .await
            };
            if !open {
                break;
            }
            self.apply_remotes(&remotes.borrow_and_update());
        }
        drop(self);
        drop(pairs);
    }

    /// Forwards what every socket has, registering for readiness where it has nothing. Ready
    /// only on a fatal socket error (the relay stops, as if closed).
    fn poll_sockets(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        let now = clock::now();
        for i in 0..4 {
            let mut budget = MAX_BATCH;
            loop {
                let mut rb = ReadBuf::new(&mut self.buf[..]);
                match self.sockets[i].poll_recv_from(cx, &mut rb) {
                    Poll::Ready(Ok(src)) => {
                        let len = rb.filled().len();
                        self.forward(i, len, src, now);
                    }
                    Poll::Ready(Err(error)) if is_transient(&error) => {
                        // ICMP errors surfacing on some systems: nothing to do but read on.
                        tracing::trace!(%error, "relay receive error");
                    }
                    Poll::Ready(Err(error)) => {
                        tracing::warn!(%error, "relay socket failed; stopping the relay");
                        return Poll::Ready(false);
                    }
                    Poll::Pending => break,
                }
                budget -= 1;
                if budget == 0 {
                    // Fairness with other relays: come back after they had their turn.
                    cx.waker().wake_by_ref();
                    break;
                }
            }
        }
        Poll::Pending
    }

    fn apply_remotes(&mut self, remotes: &Remotes) {
        for (latch, addr) in self.latches.iter_mut().zip(remotes) {
            latch.set_sdp_addr(*addr);
        }
    }

    fn forward(&mut self, i: usize, len: usize, src: SocketAddr, now: Instant) {
        let packet = &self.buf[..len];
        let is_rtp = i.is_multiple_of(2);
        let valid = if is_rtp {
            latch::check_rtp(packet)
        } else {
            latch::check_rtcp(packet)
        };
        if let Err(reason) = valid {
            return self.dropped(reason);
        }
        match self.latches[i].on_packet(now, src) {
            Verdict::Rejected => return self.dropped(DropReason::ForeignSource),
            Verdict::Latched => tracing::debug!(socket = i, %src, "relay latched"),
            Verdict::Accepted => {}
        }
        let out = i ^ 2;
        let Some(dest) = self.latches[out].destination() else {
            return self.dropped(DropReason::NoDestination);
        };
        self.stats.packets[i].fetch_add(1, Ordering::Relaxed);
        self.stats.bytes[i].fetch_add(len as u64, Ordering::Relaxed);
        match self.sockets[out].try_send_to(packet, dest) {
            Ok(_) => {
                // Counted locally and published in batches: a shared counter per packet costs.
                self.unpublished[usize::from(!is_rtp)] += 1;
                if self.unpublished[0] + self.unpublished[1] >= PUBLISH_EVERY {
                    self.publish();
                }
            }
            Err(error) => {
                tracing::trace!(%error, %dest, "relay send failed");
                self.stats.packets[i].fetch_sub(1, Ordering::Relaxed);
                self.stats.bytes[i].fetch_sub(len as u64, Ordering::Relaxed);
                self.dropped(DropReason::SendFailed);
            }
        }
    }

    fn publish(&mut self) {
        self.metrics.relayed_rtp.increment(self.unpublished[0]);
        self.metrics.relayed_rtcp.increment(self.unpublished[1]);
        self.unpublished = [0, 0];
    }

    fn dropped(&self, reason: DropReason) {
        self.stats.dropped[reason.index()].fetch_add(1, Ordering::Relaxed);
        self.metrics.dropped[reason.index()].increment(1);
    }
}

pub(crate) fn default_socket_buffer() -> usize {
    256 * 1024
}

/// Allocates pairs until one binds; pairs that failed stay out until this returns, then go
/// to the back of the pool.
pub(crate) fn bind_pair(
    pool: &PortPool,
    ip: IpAddr,
    buffer: usize,
) -> Result<(PortPair, StdUdpSocket, StdUdpSocket), RelayError> {
    let mut failed = Vec::new();
    loop {
        let pair = pool.allocate()?;
        let bound = bind_udp(SocketAddr::new(ip, pair.rtp()), buffer)
            .and_then(|rtp| Ok((rtp, bind_udp(SocketAddr::new(ip, pair.rtcp()), buffer)?)));
        match bound {
            Ok((rtp, rtcp)) => return Ok((pair, rtp, rtcp)),
            Err(source) => {
                let retry = source.kind() == io::ErrorKind::AddrInUse
                    && failed.len() + 1 < MAX_BIND_ATTEMPTS;
                if !retry {
                    return Err(RelayError::Bind {
                        ip,
                        rtp: pair.rtp(),
                        rtcp: pair.rtcp(),
                        source,
                    });
                }
                tracing::debug!(
                    port = pair.rtp(),
                    "RTP port pair in use elsewhere; trying the next"
                );
                failed.push(pair);
            }
        }
    }
}

/// A non-blocking UDP socket with enlarged buffers (best effort) and DSCP EF on IPv4.
fn bind_udp(addr: SocketAddr, buffer: usize) -> io::Result<StdUdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: the kernel caps the sizes (net.core.rmem_max) and old kernels may refuse.
    let _ = socket.set_recv_buffer_size(buffer);
    let _ = socket.set_send_buffer_size(buffer);
    if addr.is_ipv4() {
        let _ = socket.set_tos_v4(TOS_EF);
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_hands_out_even_odd_pairs_within_the_range() {
        let pool = PortPool::new(10001, 10008).unwrap();
        assert_eq!(
            pool.capacity(),
            3,
            "10002, 10004, 10006 (10008 has no odd partner)"
        );
        let pairs: Vec<_> = (0..3).map(|_| pool.allocate().unwrap()).collect();
        let ports: Vec<_> = pairs.iter().map(|p| (p.rtp(), p.rtcp())).collect();
        assert_eq!(ports, [(10002, 10003), (10004, 10005), (10006, 10007)]);
    }

    #[test]
    fn exhausted_pool_errors_and_a_dropped_pair_comes_back() {
        let pool = PortPool::new(20000, 20003).unwrap();
        let first = pool.allocate().unwrap();
        let second = pool.allocate().unwrap();
        assert!(matches!(pool.allocate(), Err(RelayError::Exhausted)));
        assert_eq!(pool.available(), 0);
        let freed = first.rtp();
        drop(first);
        assert_eq!(pool.available(), 1);
        assert_eq!(pool.allocate().unwrap().rtp(), freed);
        drop(second);
    }

    #[test]
    fn freed_pairs_are_reused_last() {
        let pool = PortPool::new(20000, 20005).unwrap();
        let first = pool.allocate().unwrap();
        let port = first.rtp();
        drop(first);
        assert_ne!(pool.allocate().unwrap().rtp(), port);
    }

    #[test]
    fn invalid_ranges_are_refused() {
        for (low, high) in [
            (0, 100),
            (5000, 5000),
            (5000, 5001 - 2),
            (u16::MAX, u16::MAX),
            (5001, 5002),
        ] {
            assert!(
                matches!(
                    PortPool::new(low, high),
                    Err(RelayError::InvalidRange { .. })
                ),
                "{low}-{high}"
            );
        }
        assert!(PortPool::new(5000, 5001).is_ok());
    }

    #[test]
    fn start_outside_a_runtime_is_an_error() {
        let pool = PortPool::new(30000, 30999).unwrap();
        let mut relay = Relay::new(&pool, IpAddr::from([127, 0, 0, 1])).unwrap();
        assert!(matches!(relay.start(), Err(RelayError::NoRuntime)));
        assert!(!relay.is_running());
    }
}
