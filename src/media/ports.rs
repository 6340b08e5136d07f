//! RTP/RTCP ports and sockets for the media sessions. DRIVER (binds sockets).
//!
//! Owns:
//! * [`PortPool`]: even/odd port pairs (RTP even, RTCP = RTP + 1, RFC 3550 §11) from a
//!   configured range; O(1) allocate and free through a FIFO free list (so a freed pair is
//!   reused last, away from stale packets of the previous call); the pair returns to the pool
//!   when its [`PortPair`] guard drops. Exhaustion is [`PortError::Exhausted`] (the B2BUA
//!   answers 503). The gauge `switchboard_media_port_pairs_allocated` follows the pool.
//! * [`bind_pair`]: allocates a pair and binds its two non-blocking UDP sockets, skipping
//!   pairs another process holds; socket buffers are enlarged and IPv4 RTP is marked DSCP EF
//!   (RFC 4594 §4.1).
//! * [`Leg`]: the two sides of a call's media, A (the caller) and B.
//! * The receive limits every media socket loop shares: [`MAX_DATAGRAM`] (longer datagrams
//!   are truncated; RTP over Ethernet never comes near it) and [`MAX_BATCH`].

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::{Arc, Mutex, PoisonError};

use metrics::Gauge;
use socket2::{Domain, Protocol, Socket, Type};
use thiserror::Error;

/// Receive buffer size per media session; larger datagrams are truncated.
pub const MAX_DATAGRAM: usize = 2048;
/// Most datagrams drained from one socket per wake before the others get a turn.
pub const MAX_BATCH: usize = 64;
/// Most port pairs tried when binding fails because a port is taken by another process.
pub const MAX_BIND_ATTEMPTS: usize = 16;
/// DSCP EF (46) in the IPv4 TOS byte, for RTP (RFC 4594 §4.1).
const TOS_EF: u32 = 46 << 2;

/// Why media ports could not be allocated or bound.
#[derive(Debug, Error)]
pub enum PortError {
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
    #[error("media session opened outside a tokio runtime")]
    NoRuntime,
    #[error("media socket: {0}")]
    Io(#[from] io::Error),
}

/// One side of a call's media. A faces the party that sent the first offer, by convention.
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

#[derive(Debug)]
struct PoolInner {
    low: u16,
    high: u16,
    pairs: usize,
    free: Mutex<VecDeque<u16>>,
    allocated: Gauge,
}

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
    pub fn new(low: u16, high: u16) -> Result<Self, PortError> {
        let invalid = PortError::InvalidRange { low, high };
        let first = if low.is_multiple_of(2) {
            low
        } else {
            low.checked_add(1).ok_or(invalid)?
        };
        if first == 0 || first >= high {
            return Err(PortError::InvalidRange { low, high });
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

    /// Takes the least recently freed pair, or [`PortError::Exhausted`].
    pub fn allocate(&self) -> Result<PortPair, PortError> {
        let rtp = {
            let mut free = self.inner.lock();
            let rtp = free.pop_front().ok_or(PortError::Exhausted)?;
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

impl PoolInner {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<u16>> {
        // The critical sections cannot panic; a poisoned lock still holds a valid list.
        self.free.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Requested SO_RCVBUF and SO_SNDBUF per media socket, in bytes (the kernel may cap it).
pub(crate) fn default_socket_buffer() -> usize {
    256 * 1024
}

/// Allocates pairs until one binds (up to [`MAX_BIND_ATTEMPTS`]); pairs that failed stay out
/// until this returns, then go to the back of the pool. Returns the pair with its RTP and
/// RTCP sockets, non-blocking. Needs no runtime.
pub(crate) fn bind_pair(
    pool: &PortPool,
    ip: IpAddr,
    buffer: usize,
) -> Result<(PortPair, StdUdpSocket, StdUdpSocket), PortError> {
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
                    return Err(PortError::Bind {
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

    const LOCALHOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

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
        assert!(matches!(pool.allocate(), Err(PortError::Exhausted)));
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
                    Err(PortError::InvalidRange { .. })
                ),
                "{low}-{high}"
            );
        }
        assert!(PortPool::new(5000, 5001).is_ok());
    }

    #[test]
    fn bind_pair_binds_rtp_on_the_even_port_and_rtcp_on_the_next() {
        let pool = PortPool::new(23000, 23009).unwrap();
        let (pair, rtp, rtcp) = bind_pair(&pool, LOCALHOST, default_socket_buffer()).unwrap();
        assert_eq!(rtp.local_addr().unwrap().port(), pair.rtp());
        assert_eq!(rtcp.local_addr().unwrap().port(), pair.rtp() + 1);
        assert_eq!(pair.rtp() % 2, 0);
    }

    #[test]
    fn bind_pair_skips_a_pair_taken_by_another_process() {
        let pool = PortPool::new(23010, 23019).unwrap();
        let _squatter = StdUdpSocket::bind((LOCALHOST, 23010)).expect("squat the first pair");
        let (pair, _rtp, _rtcp) = bind_pair(&pool, LOCALHOST, default_socket_buffer()).unwrap();
        assert_ne!(pair.rtp(), 23010);
        assert_eq!(
            pool.available(),
            pool.capacity() - 1,
            "the skipped pair went back to the pool"
        );
    }
}
