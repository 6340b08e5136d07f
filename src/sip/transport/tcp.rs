//! TCP transport (RFC 3261 §18, RFC 5626 §3.5.1): listeners, the connection table and one
//! task per connection that frames what it reads and writes what it is given.
//!
//! The table is keyed by the remote address. An accepted connection is registered under the
//! address it came from, an outbound one under the address we connected to, so a response
//! sent to a request's source [`Peer`](super::Peer) goes back on the same connection (§18.2.2)
//! and requests to a peer reuse any open connection (§18.1.1). `send` returns once the message
//! is queued on the connection; a write error closes the connection.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;

use super::framing::{Frame, PONG, StreamFramer};
use super::{Inbound, InboundEvent, Inner, Peer, Transport, TransportError};
use crate::sip::message::{Framing, MAX_MESSAGE_SIZE};

/// A write that makes no progress for this long closes the connection.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Listen backlog.
const BACKLOG: i32 = 1024;

/// The connection table and the connection limit.
pub(super) struct TcpState {
    conns: Mutex<HashMap<SocketAddr, ConnHandle>>,
    permits: Arc<Semaphore>,
    next_id: AtomicU64,
}

/// How `send` reaches a connection task.
#[derive(Clone)]
struct ConnHandle {
    id: u64,
    tx: mpsc::Sender<Bytes>,
}

/// Binds a listening socket (`SO_REUSEADDR`; IPv6 sockets are v6-only).
pub(super) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// Accepts connections until shutdown; over the limit a new connection is closed at once.
pub(super) async fn accept_loop(inner: Arc<Inner>, listener: TcpListener) {
    loop {
        let (stream, remote) = tokio::select! {
            _ = inner.shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(error = %e, "tcp accept failed");
                    tokio::select! {
                        _ = inner.shutdown.cancelled() => break,
                        _ = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    }
                }
            },
        };
        let Ok(permit) = inner.tcp.permits.clone().try_acquire_owned() else {
            tracing::warn!(%remote, "too many tcp connections, refusing");
            continue;
        };
        if let Err(e) = start_connection(&inner, stream, remote, permit, false) {
            tracing::debug!(%remote, error = %e, "tcp connection setup failed");
        }
    }
}

/// Queues `bytes` on the open connection to `to` without waiting; the bytes come back when
/// there is none or its queue is full.
pub(super) fn try_send(inner: &Arc<Inner>, to: SocketAddr, bytes: Bytes) -> Result<(), Bytes> {
    let Some(h) = inner.tcp.get(to) else {
        return Err(bytes);
    };
    h.tx.try_send(bytes).map_err(|e| match e {
        mpsc::error::TrySendError::Full(b) | mpsc::error::TrySendError::Closed(b) => b,
    })
}

/// Queues `bytes` on the connection to `to`, connecting first if there is none.
pub(super) async fn send(
    inner: &Arc<Inner>,
    to: SocketAddr,
    bytes: Bytes,
) -> Result<(), TransportError> {
    let mut bytes = bytes;
    if let Some(h) = inner.tcp.get(to) {
        match h.tx.send(bytes).await {
            Ok(()) => return Ok(()),
            Err(mpsc::error::SendError(b)) => {
                // The connection ended under us: forget it and open a new one.
                inner.tcp.remove(to, h.id);
                bytes = b;
            }
        }
    }
    let h = connect(inner, to).await?;
    h.tx.send(bytes)
        .await
        .map_err(|_| TransportError::ConnectionClosed(to))
}

impl TcpState {
    pub(super) fn new(max_connections: usize) -> TcpState {
        TcpState {
            conns: Mutex::new(HashMap::new()),
            permits: Arc::new(Semaphore::new(max_connections)),
            next_id: AtomicU64::new(1),
        }
    }

    /// Open connections.
    pub(super) fn len(&self) -> usize {
        self.table().len()
    }

    fn table(&self) -> MutexGuard<'_, HashMap<SocketAddr, ConnHandle>> {
        // The table holds no invariant a panicking holder could break.
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, addr: SocketAddr) -> Option<ConnHandle> {
        self.table().get(&addr).cloned()
    }

    /// Removes the entry for `addr` if it is still connection `id`.
    fn remove(&self, addr: SocketAddr, id: u64) {
        let mut t = self.table();
        if t.get(&addr).is_some_and(|h| h.id == id) {
            t.remove(&addr);
        }
    }
}

async fn connect(inner: &Arc<Inner>, to: SocketAddr) -> Result<ConnHandle, TransportError> {
    let permit = inner
        .tcp
        .permits
        .clone()
        .try_acquire_owned()
        .map_err(|_| TransportError::TooManyConnections)?;
    let stream =
        match tokio::time::timeout(inner.config.connect_timeout, TcpStream::connect(to)).await {
            Err(_) => return Err(TransportError::ConnectTimeout(to)),
            Ok(Err(source)) => return Err(TransportError::Connect { addr: to, source }),
            Ok(Ok(s)) => s,
        };
    if inner.shutdown.is_cancelled() {
        return Err(TransportError::Shutdown);
    }
    Ok(start_connection(inner, stream, to, permit, true)?)
}

/// Registers a connection and spawns its task. With `prefer_existing` (outbound connects that
/// raced another connect to the same peer) an already registered connection wins and the new
/// stream is dropped.
fn start_connection(
    inner: &Arc<Inner>,
    stream: TcpStream,
    remote: SocketAddr,
    permit: OwnedSemaphorePermit,
    prefer_existing: bool,
) -> io::Result<ConnHandle> {
    stream.set_nodelay(true)?;
    let local = stream.local_addr()?;
    let (tx, rx) = mpsc::channel(inner.config.write_queue.max(1));
    let handle = ConnHandle {
        id: inner.tcp.next_id.fetch_add(1, Ordering::Relaxed),
        tx,
    };
    {
        let mut table = inner.tcp.table();
        if prefer_existing && let Some(existing) = table.get(&remote) {
            return Ok(existing.clone());
        }
        table.insert(remote, handle.clone());
    }
    tracing::debug!(%remote, %local, "tcp connection open");
    let conn = Connection {
        inner: inner.clone(),
        stream,
        remote,
        local,
        id: handle.id,
        rx,
        _permit: permit,
    };
    inner.tracker.spawn(conn.run());
    Ok(handle)
}

/// One TCP connection, owned by its task.
struct Connection {
    inner: Arc<Inner>,
    stream: TcpStream,
    remote: SocketAddr,
    local: SocketAddr,
    id: u64,
    rx: mpsc::Receiver<Bytes>,
    _permit: OwnedSemaphorePermit,
}

/// Why the read side handled a batch of frames the way it did.
enum ReadOutcome {
    Continue,
    /// A malformed request was reported: stop reading, wait for our answer.
    Linger,
    Close,
}

impl Connection {
    async fn run(mut self) {
        let inner = self.inner.clone();
        let cfg = &inner.config;
        let mut framer = StreamFramer::new(MAX_MESSAGE_SIZE);
        let mut idle_deadline = crate::clock::tokio_now() + cfg.idle_timeout;
        // After a malformed request: no more reading; close after the next write or then.
        let mut linger_until: Option<Instant> = None;
        loop {
            let deadline = linger_until.map_or(idle_deadline, |l| l.min(idle_deadline));
            tokio::select! {
                _ = inner.shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(deadline) => break,
                r = self.stream.read_buf(framer.buffer()), if linger_until.is_none() => {
                    let n = match r {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) => {
                            tracing::debug!(remote = %self.remote, error = %e, "tcp read error");
                            break;
                        }
                    };
                    inner.metrics.tcp.bytes_in.increment(n as u64);
                    idle_deadline = crate::clock::tokio_now() + cfg.idle_timeout;
                    match self.handle_frames(&mut framer).await {
                        ReadOutcome::Continue => {}
                        ReadOutcome::Linger => {
                            linger_until = Some(crate::clock::tokio_now() + cfg.malformed_linger);
                        }
                        ReadOutcome::Close => break,
                    }
                }
                msg = self.rx.recv() => {
                    let Some(bytes) = msg else { break };
                    if !self.write(&bytes).await {
                        break;
                    }
                    inner.metrics.tcp.msgs_out.increment(1);
                    idle_deadline = crate::clock::tokio_now() + cfg.idle_timeout;
                    if linger_until.is_some() {
                        break; // the answer to the malformed request is out
                    }
                }
            }
        }
        inner.tcp.remove(self.remote, self.id);
        // Send our FIN; bounded so that a stuck peer cannot hold the task.
        let _ = tokio::time::timeout(Duration::from_secs(1), self.stream.shutdown()).await;
        tracing::debug!(remote = %self.remote, "tcp connection closed");
    }

    async fn handle_frames(&mut self, framer: &mut StreamFramer) -> ReadOutcome {
        let inner = self.inner.clone();
        let parser = inner.config.parser;
        let peer = Peer {
            transport: Transport::Tcp,
            addr: self.remote,
        };
        while let Some(frame) = framer.next_frame(|b| parser(b, Framing::Stream)) {
            match frame {
                Frame::Ping => {
                    if !self.write(PONG).await {
                        return ReadOutcome::Close;
                    }
                }
                Frame::Message(msg) => {
                    inner.metrics.tcp.msgs_in.increment(1);
                    let event = inner.message_event(msg, self.remote);
                    if !inner
                        .deliver(Inbound {
                            peer,
                            local: self.local,
                            event,
                        })
                        .await
                    {
                        return ReadOutcome::Close;
                    }
                }
                Frame::Invalid(inv) => {
                    inner.metrics.tcp.msgs_in.increment(1);
                    tracing::debug!(remote = %self.remote, reason = %inv.reason, "malformed message on tcp");
                    let answer_expected = inv.is_request && inv.salvage.is_some();
                    let event = InboundEvent::Malformed(inv);
                    if !inner
                        .deliver(Inbound {
                            peer,
                            local: self.local,
                            event,
                        })
                        .await
                    {
                        return ReadOutcome::Close;
                    }
                    return if answer_expected {
                        ReadOutcome::Linger
                    } else {
                        ReadOutcome::Close
                    };
                }
            }
        }
        ReadOutcome::Continue
    }

    /// Writes all of `bytes`; false when the connection is broken.
    async fn write(&mut self, bytes: &[u8]) -> bool {
        match tokio::time::timeout(WRITE_TIMEOUT, self.stream.write_all(bytes)).await {
            Ok(Ok(())) => {
                self.inner
                    .metrics
                    .tcp
                    .bytes_out
                    .increment(bytes.len() as u64);
                true
            }
            Ok(Err(e)) => {
                tracing::debug!(remote = %self.remote, error = %e, "tcp write error");
                false
            }
            Err(_) => {
                tracing::debug!(remote = %self.remote, "tcp write timed out");
                false
            }
        }
    }
}
