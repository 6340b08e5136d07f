//! UDP transport (RFC 3261 §18.1.1, §18.2.1): socket setup and the receive loop.
//!
//! One loop per socket reads into one reused buffer and parses with `Framing::Datagram`;
//! keep-alives and STUN are dropped; malformed datagrams become
//! [`InboundEvent::Malformed`](super::InboundEvent::Malformed). Sends share the socket
//! (`Arc<UdpSocket>`, `send_to` takes `&self`).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use super::framing::{DatagramKind, classify_datagram};
use super::{Inbound, InboundEvent, Inner, Peer, Transport, TransportError};
use crate::sip::message::{Framing, MAX_MESSAGE_SIZE, ParseError};

/// One bound UDP socket.
pub(super) struct UdpEndpoint {
    pub(super) socket: Arc<UdpSocket>,
    pub(super) local: SocketAddr,
}

/// Binds a UDP socket with large kernel buffers (IPv6 sockets are v6-only, so `[::]` and
/// `0.0.0.0` can both be bound on one port).
pub(super) fn bind(addr: SocketAddr, buffer: usize) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if let Err(e) = socket.set_recv_buffer_size(buffer) {
        tracing::debug!(%addr, error = %e, "could not raise SO_RCVBUF");
    }
    if let Err(e) = socket.set_send_buffer_size(buffer) {
        tracing::debug!(%addr, error = %e, "could not raise SO_SNDBUF");
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// Sends from the first UDP socket of the destination's address family.
pub(super) async fn send(
    inner: &Inner,
    to: SocketAddr,
    bytes: &[u8],
) -> Result<(), TransportError> {
    let ep = inner
        .udp
        .iter()
        .find(|e| e.local.is_ipv4() == to.is_ipv4())
        .ok_or(TransportError::NoSocket {
            transport: Transport::Udp,
            addr: to,
        })?;
    ep.socket.send_to(bytes, to).await?;
    let c = &inner.metrics.udp;
    c.bytes_out.increment(bytes.len() as u64);
    c.msgs_out.increment(1);
    Ok(())
}

/// Receives datagrams until shutdown or until the endpoint drops its receiver.
pub(super) async fn receive_loop(inner: Arc<Inner>, socket: Arc<UdpSocket>, local: SocketAddr) {
    // One byte more than the largest message we accept tells "too large" from "exactly max".
    let mut buf = vec![0u8; MAX_MESSAGE_SIZE + 1];
    let counters = &inner.metrics.udp;
    loop {
        let (n, source) = tokio::select! {
            _ = inner.shutdown.cancelled() => break,
            r = socket.recv_from(&mut buf) => match r {
                Ok(v) => v,
                Err(e) => {
                    // ICMP errors surface here on some platforms; the socket stays usable.
                    tracing::debug!(%local, error = %e, "udp recv error");
                    continue;
                }
            },
        };
        counters.bytes_in.increment(n as u64);
        let data = &buf[..n];
        match classify_datagram(data) {
            DatagramKind::KeepAlive => continue,
            DatagramKind::Stun => {
                tracing::trace!(%source, "ignoring STUN datagram");
                continue;
            }
            DatagramKind::Sip => {}
        }
        counters.msgs_in.increment(1);
        let event = if n > MAX_MESSAGE_SIZE {
            InboundEvent::Malformed(super::invalid_without_salvage(
                "datagram too large",
                413,
                data,
            ))
        } else {
            match (inner.config.parser)(data, Framing::Datagram) {
                Ok((msg, _)) => inner.message_event(msg, source),
                Err(ParseError::Invalid(inv)) => InboundEvent::Malformed(inv),
                Err(ParseError::Incomplete) => InboundEvent::Malformed(
                    super::invalid_without_salvage("truncated datagram", 400, data),
                ),
            }
        };
        let peer = Peer {
            transport: Transport::Udp,
            addr: source,
        };
        if !inner.deliver(Inbound { peer, local, event }).await {
            break;
        }
    }
}
