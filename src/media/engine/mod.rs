//! The media engine's driver: one task per call owning the call's RTP/RTCP sockets. DRIVER.
//!
//! [`MediaSession`] binds one even/odd port pair per leg from the [`PortPool`] (one leg for a
//! call the server answers itself, two for a bridged call), latches each socket to its peer
//! ([`super::latch`], RFC 4961 symmetric RTP) and runs one loop:
//! `poll_fn { commands | frame-clock/RTCP deadline | every socket }` → one call into the
//! [`Pipeline`] → drain `poll_transmit` / `poll_event`. Sockets are drained until
//! `WouldBlock`, [`MAX_BATCH`] datagrams per socket per wake; the forwarding path restamps a
//! packet in the receive buffer and sends it from there (no allocation per relayed packet).
//!
//! The call actor talks to it only through commands ([`MediaSession::command`]) and gets
//! [`MediaEvent`]s (digits, playback ends, silence, recordings stopped mid-call) on the
//! channel it passed in. [`MediaSession::stop`] ends the task and returns the per-leg
//! statistics and the recording still running then, finished.

pub mod conference;
pub mod pipeline;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use metrics::Counter;
use tokio::io::ReadBuf;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use pipeline::{
    DigitSource, MediaCommand, MediaEvent, Pipeline, PipelineConfig, PipelineReport, PlaySource,
    SILENCE_THRESHOLD_DBFS,
};

use super::dtmf::Digit;
use super::latch::{self, DropReason, Latch, Verdict};
use super::ports::{self, Leg, MAX_BATCH, MAX_DATAGRAM, PortError, PortPair, PortPool};
use super::recorder::RecordingSummary;
use crate::clock;

/// What the call actor learns when the media session ends.
#[derive(Debug, Default)]
pub struct MediaReport {
    pub pipeline: PipelineReport,
    /// The recording still running at the end (one stopped earlier was reported as
    /// [`MediaEvent::RecordingStopped`]).
    pub recording: Option<RecordingSummary>,
}

/// Handle to one call's media task. Dropping it closes the command channel, which ends the
/// task; the task still finalises the recording.
pub struct MediaSession {
    bind_ip: IpAddr,
    ports: Vec<u16>,
    cmd: mpsc::UnboundedSender<Cmd>,
    task: Option<JoinHandle<MediaReport>>,
}

enum Cmd {
    Remote {
        leg: Leg,
        rtp: SocketAddr,
        rtcp: Option<SocketAddr>,
    },
    Media(MediaCommand),
    InfoDigit {
        leg: Leg,
        digit: Digit,
        duration: Duration,
    },
    Stop(oneshot::Sender<()>),
}

struct Driver {
    pipeline: Pipeline,
    /// Per leg: RTP socket, RTCP socket.
    sockets: Vec<[UdpSocket; 2]>,
    latches: Vec<[Latch; 2]>,
    _pairs: Vec<PortPair>,
    commands: mpsc::UnboundedReceiver<Cmd>,
    events: mpsc::UnboundedSender<MediaEvent>,
    metrics: Metrics,
    sleep: Pin<Box<tokio::time::Sleep>>,
    armed: Option<Instant>,
    buf: Box<[u8; MAX_DATAGRAM]>,
}

impl MediaSession {
    /// Binds `legs` (1 or 2) port pairs and starts the task. Must run inside a tokio runtime.
    pub fn open(
        pool: &PortPool,
        bind_ip: IpAddr,
        legs: usize,
        config: PipelineConfig,
        events: mpsc::UnboundedSender<MediaEvent>,
    ) -> Result<Self, PortError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(PortError::NoRuntime);
        }
        let legs = legs.clamp(1, 2);
        let mut sockets = Vec::with_capacity(legs);
        let mut pairs = Vec::with_capacity(legs);
        let mut ports = Vec::with_capacity(legs);
        for _ in 0..legs {
            let (pair, rtp, rtcp) =
                ports::bind_pair(pool, bind_ip, ports::default_socket_buffer())?;
            ports.push(pair.rtp());
            sockets.push([UdpSocket::from_std(rtp)?, UdpSocket::from_std(rtcp)?]);
            pairs.push(pair);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let now = clock::now();
        let driver = Driver {
            pipeline: Pipeline::new(config, now),
            latches: (0..legs)
                .map(|_| [Latch::new(None), Latch::new(None)])
                .collect(),
            sockets,
            _pairs: pairs,
            commands: rx,
            events,
            metrics: Metrics::new(),
            sleep: Box::pin(tokio::time::sleep_until(far_future().into())),
            armed: None,
            buf: Box::new([0; MAX_DATAGRAM]),
        };
        // The media task logs under the span of whoever opened it (the call).
        let task = tokio::spawn(tracing::Instrument::in_current_span(driver.run()));
        Ok(Self {
            bind_ip,
            ports,
            cmd: tx,
            task: Some(task),
        })
    }

    /// Our RTP port on `leg` (for SDP).
    pub fn local_port(&self, leg: Leg) -> u16 {
        self.ports
            .get(leg.index())
            .or(self.ports.first())
            .copied()
            .unwrap_or(0)
    }

    /// Our RTP address on `leg`.
    pub fn local_addr(&self, leg: Leg) -> SocketAddr {
        SocketAddr::new(self.bind_ip, self.local_port(leg))
    }

    /// Where `leg`'s party receives, from its SDP (RTCP defaults to RTP + 1).
    pub fn set_remote(&self, leg: Leg, rtp: SocketAddr, rtcp: Option<SocketAddr>) {
        let _ = self.cmd.send(Cmd::Remote { leg, rtp, rtcp });
    }

    /// Sends a command to the pipeline.
    pub fn command(&self, cmd: MediaCommand) {
        let _ = self.cmd.send(Cmd::Media(cmd));
    }

    /// A digit that arrived by SIP INFO from `leg`'s party.
    pub fn digit_from_info(&self, leg: Leg, digit: Digit, duration: Duration) {
        let _ = self.cmd.send(Cmd::InfoDigit {
            leg,
            digit,
            duration,
        });
    }

    /// Stops the task, finalises the recording and returns the report.
    pub async fn stop(mut self) -> MediaReport {
        let (tx, rx) = oneshot::channel();
        let _ = self.cmd.send(Cmd::Stop(tx));
        let _ = rx.await;
        match self.task.take() {
            Some(task) => task.await.unwrap_or_default(),
            None => MediaReport::default(),
        }
    }
}

impl Driver {
    async fn run(mut self) -> MediaReport {
        let stop = std::future::poll_fn(|cx| self.poll(cx)).await;
        // A digit whose end packet never came is still reported, and nothing queued is lost.
        self.pipeline.close(clock::now());
        self.flush();
        self.pipeline.leave_conference();
        let recording = match self.pipeline.take_recorder() {
            Some(recorder) => match recorder.stop().await {
                Ok(summary) => Some(summary),
                Err(error) => {
                    tracing::error!(%error, "recording not finalised");
                    None
                }
            },
            None => None,
        };
        let report = MediaReport {
            pipeline: self.pipeline.report(),
            recording,
        };
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        report
    }

    /// Runs until the handle is dropped (None) or asks to stop (its reply channel).
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<oneshot::Sender<()>>> {
        loop {
            let now = clock::now();
            // Commands first: they may change what the sockets' packets mean.
            loop {
                match self.commands.poll_recv(cx) {
                    Poll::Ready(Some(Cmd::Stop(reply))) => return Poll::Ready(Some(reply)),
                    Poll::Ready(None) => return Poll::Ready(None),
                    Poll::Ready(Some(cmd)) => self.on_command(now, cmd),
                    Poll::Pending => break,
                }
            }
            if let Poll::Ready(false) = self.poll_sockets(cx, now) {
                return Poll::Ready(None);
            }
            self.pipeline.on_timeout(now);
            self.flush();
            match self.pipeline.poll_timeout() {
                Some(deadline) if deadline <= clock::now() => continue,
                Some(deadline) => {
                    if self.armed != Some(deadline) {
                        self.sleep.as_mut().reset(deadline.into());
                        self.armed = Some(deadline);
                    }
                    if self.sleep.as_mut().poll(cx).is_ready() {
                        self.armed = None;
                        continue;
                    }
                }
                None => self.armed = None,
            }
            return Poll::Pending;
        }
    }

    fn on_command(&mut self, now: Instant, cmd: Cmd) {
        match cmd {
            Cmd::Remote { leg, rtp, rtcp } => {
                let Some(l) = self.latches.get_mut(leg.index()) else {
                    return;
                };
                let rtcp = rtcp.or_else(|| {
                    rtp.port()
                        .checked_add(1)
                        .map(|p| SocketAddr::new(rtp.ip(), p))
                });
                l[0].set_sdp_addr(Some(rtp));
                l[1].set_sdp_addr(rtcp);
            }
            Cmd::Media(cmd) => self.pipeline.command(now, cmd),
            Cmd::InfoDigit {
                leg,
                digit,
                duration,
            } => self.pipeline.digit_from_info(now, leg, digit, duration),
            Cmd::Stop(_) => {}
        }
    }

    fn poll_sockets(&mut self, cx: &mut Context<'_>, now: Instant) -> Poll<bool> {
        for leg in 0..self.sockets.len() {
            for kind in 0..2 {
                let mut budget = MAX_BATCH;
                loop {
                    let mut rb = ReadBuf::new(&mut self.buf[..]);
                    match self.sockets[leg][kind].poll_recv_from(cx, &mut rb) {
                        Poll::Ready(Ok(src)) => {
                            let len = rb.filled().len();
                            self.on_datagram(now, leg, kind, len, src);
                        }
                        Poll::Ready(Err(e)) if ports::is_transient(&e) => {}
                        Poll::Ready(Err(error)) => {
                            tracing::warn!(%error, "media socket failed; stopping the media session");
                            return Poll::Ready(false);
                        }
                        Poll::Pending => break,
                    }
                    budget -= 1;
                    if budget == 0 {
                        cx.waker().wake_by_ref();
                        break;
                    }
                }
            }
        }
        Poll::Pending
    }

    fn on_datagram(&mut self, now: Instant, leg: usize, kind: usize, len: usize, src: SocketAddr) {
        let is_rtp = kind == 0;
        let valid = if is_rtp {
            latch::check_rtp(&self.buf[..len])
        } else {
            latch::check_rtcp(&self.buf[..len])
        };
        if let Err(reason) = valid {
            return self.metrics.dropped(reason);
        }
        if self.latches[leg][kind].on_packet(now, src) == Verdict::Rejected {
            return self.metrics.dropped(DropReason::ForeignSource);
        }
        let this = leg_of(leg);
        if !is_rtp {
            self.pipeline.on_rtcp(now, this, &self.buf[..len]);
            return;
        }
        let action = self.pipeline.on_rtp(now, this, &mut self.buf[..len]);
        if action == pipeline::RtpAction::Forward {
            let out = 1 - leg;
            if let (Some(sockets), Some(dest)) = (
                self.sockets.get(out),
                self.latches.get(out).and_then(|l| l[0].destination()),
            ) {
                match sockets[0].try_send_to(&self.buf[..len], dest) {
                    Ok(_) => self.metrics.relayed(),
                    Err(_) => self.metrics.dropped(DropReason::SendFailed),
                }
            } else {
                self.metrics.dropped(DropReason::NoDestination);
            }
        }
    }

    fn flush(&mut self) {
        while let Some(t) = self.pipeline.poll_transmit() {
            let i = t.leg.index();
            let kind = usize::from(t.rtcp);
            if let (Some(sockets), Some(dest)) = (
                self.sockets.get(i),
                self.latches.get(i).and_then(|l| l[kind].destination()),
            ) {
                match sockets[kind].try_send_to(&t.bytes, dest) {
                    Ok(_) => self.metrics.generated(t.rtcp),
                    Err(error) => {
                        tracing::trace!(%error, %dest, "media send failed");
                        self.metrics.dropped(DropReason::SendFailed);
                    }
                }
            }
            self.pipeline.recycle(t.bytes);
        }
        while let Some(ev) = self.pipeline.poll_event() {
            let _ = self.events.send(ev);
        }
        // A stopped recording is finalised, synced and hashed by the recorder's threads; its
        // summary is awaited on a task of its own so this one never waits for the disk.
        while let Some(recorder) = self.pipeline.poll_stopped_recording() {
            let pending = recorder.stop();
            let events = self.events.clone();
            tokio::spawn(tracing::Instrument::in_current_span(async move {
                let result = pending.await.map_err(|error| {
                    tracing::error!(%error, "recording not finalised");
                    error.to_string()
                });
                let _ = events.send(MediaEvent::RecordingStopped { result });
            }));
        }
    }
}

/// Prometheus counters, resolved once per session; relayed and generated packets are added
/// in batches (a shared counter per packet costs).
struct Metrics {
    relayed: Counter,
    generated_rtp: Counter,
    generated_rtcp: Counter,
    dropped: [Counter; 4],
    unpublished: [u64; 3],
}

/// Packets counted locally before they are added to the Prometheus counters.
const PUBLISH_EVERY: u64 = 64;

impl Metrics {
    fn new() -> Self {
        Self {
            relayed: metrics::counter!("switchboard_rtp_packets_relayed_total", "kind" => "rtp"),
            generated_rtp: metrics::counter!("switchboard_media_packets_generated_total", "kind" => "rtp"),
            generated_rtcp: metrics::counter!("switchboard_media_packets_generated_total", "kind" => "rtcp"),
            dropped: DropReason::ALL.map(|r| {
                metrics::counter!("switchboard_rtp_packets_dropped_total", "reason" => r.as_str())
            }),
            unpublished: [0; 3],
        }
    }

    fn relayed(&mut self) {
        self.count(0);
    }

    fn generated(&mut self, rtcp: bool) {
        self.count(if rtcp { 2 } else { 1 });
    }

    fn count(&mut self, i: usize) {
        self.unpublished[i] += 1;
        if self.unpublished.iter().sum::<u64>() >= PUBLISH_EVERY {
            self.publish();
        }
    }

    fn dropped(&self, reason: DropReason) {
        self.dropped[reason.index()].increment(1);
    }

    fn publish(&mut self) {
        let [r, g, c] = std::mem::take(&mut self.unpublished);
        self.relayed.increment(r);
        self.generated_rtp.increment(g);
        self.generated_rtcp.increment(c);
    }
}

impl Drop for Metrics {
    fn drop(&mut self) {
        self.publish();
    }
}

fn leg_of(i: usize) -> Leg {
    if i == 0 { Leg::A } else { Leg::B }
}

fn far_future() -> Instant {
    clock::now() + Duration::from_secs(86_400)
}
