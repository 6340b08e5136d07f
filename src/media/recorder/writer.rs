//! The writer thread shared by every recording, and its finisher thread: the frame queue and
//! control messages it drains, each open recording's state (gaps filled with silence, headers
//! flushed every [`FLUSH_EVERY_FRAMES`](super::FLUSH_EVERY_FRAMES) frames, pause), and the
//! finishing of a stopped recording (tail padding, fsync, hash, summary) off the frame loop.

use super::*;

pub(super) struct PoolInner {
    pub(super) queue: Arc<ArrayQueue<FrameMsg>>,
    pub(super) ctrl: mpsc::Sender<Ctrl>,
    pub(super) config: PoolConfig,
    pub(super) next_id: AtomicU64,
    pub(super) stats: Arc<PoolStats>,
}

#[derive(Default)]
pub(super) struct PoolStats {
    pub(super) dropped: AtomicU64,
    pub(super) active: AtomicUsize,
}

/// One frame for the writer: `buf` holds `frame_len` left samples then `frame_len` right
/// samples, or is empty for silence.
pub(super) struct FrameMsg {
    pub(super) id: u64,
    pub(super) seq: u64,
    pub(super) buf: Box<[i16]>,
}

pub(super) enum Ctrl {
    Start(u64, Box<Active>),
    /// The recording ends once the writer has received `sent` frames.
    End {
        id: u64,
        sent: u64,
        end: Pending,
    },
    #[cfg(test)]
    Stall {
        stalled: mpsc::Sender<()>,
        release: mpsc::Receiver<()>,
    },
    /// Answered once every frame queued before it is written.
    #[cfg(test)]
    Sync(mpsc::Sender<()>),
}

pub(super) enum Pending {
    Stop {
        total: u64,
        dropped: u64,
        ended_ms: i64,
        reply: Option<oneshot::Sender<Result<RecordingSummary, RecorderError>>>,
    },
    #[cfg(test)]
    Crash { done: mpsc::Sender<()> },
}

/// The writer's state of one open recording.
pub(super) struct Active {
    pub(super) path: PathBuf,
    pub(super) mode: ChannelMode,
    pub(super) sample_rate: u32,
    pub(super) frame_len: usize,
    /// Bytes one frame adds to the main (largest) file.
    pub(super) frame_bytes: u64,
    /// `None` only while being finalised.
    pub(super) main: Option<Wav>,
    pub(super) companion: Option<(Wav, PathBuf)>,
    pub(super) free: Arc<ArrayQueue<Box<[i16]>>>,
    pub(super) started_ms: i64,
    /// Sequence number of the next frame to write.
    pub(super) next_seq: u64,
    pub(super) received: u64,
    pub(super) since_flush: u64,
    pub(super) data_bytes: u64,
    pub(super) failed: Option<String>,
    pub(super) pending: Option<(u64, Pending)>,
}

pub(super) struct WriterThread {
    pub(super) queue: Arc<ArrayQueue<FrameMsg>>,
    pub(super) ctrl: mpsc::Receiver<Ctrl>,
    pub(super) finisher: mpsc::Sender<FinishJob>,
    pub(super) stats: Arc<PoolStats>,
    pub(super) active: HashMap<u64, Active>,
}

/// Work for the finisher thread: fsync, hash and reply.
pub(super) struct FinishJob {
    pub(super) path: PathBuf,
    pub(super) companion: Option<PathBuf>,
    pub(super) channels: u16,
    pub(super) sample_rate: u32,
    pub(super) frames: u64,
    pub(super) dropped: u64,
    pub(super) started_ms: i64,
    pub(super) ended_ms: i64,
    pub(super) failed: Option<String>,
    pub(super) reply: Option<oneshot::Sender<Result<RecordingSummary, RecorderError>>>,
}

#[cfg(test)]
pub(super) struct StallGuard {
    pub(super) _release: mpsc::Sender<()>,
}

impl WriterThread {
    pub(super) fn run(mut self) {
        loop {
            let mut disconnected = self.drain_ctrl();
            while let Some(msg) = self.queue.pop() {
                if !self.active.contains_key(&msg.id) {
                    // Its Start was sent before the frame: it is in the control channel now.
                    disconnected |= self.drain_ctrl();
                }
                self.on_frame(msg);
            }
            if disconnected && self.queue.is_empty() {
                break;
            }
            let next = if self.active.is_empty() {
                self.ctrl
                    .recv()
                    .map_err(|_| mpsc::RecvTimeoutError::Disconnected)
            } else {
                self.ctrl.recv_timeout(WRITER_TICK)
            };
            match next {
                Ok(cmd) => self.on_ctrl(cmd),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    if self.queue.is_empty() {
                        break;
                    }
                }
            }
        }
        // Every handle is gone: finalise whatever is still open.
        let ids: Vec<u64> = self.active.keys().copied().collect();
        for id in ids {
            if let Some(mut a) = self.active.remove(&id) {
                let end = a.pending.take().map(|(_, p)| p).unwrap_or(Pending::Stop {
                    total: a.next_seq,
                    dropped: 0,
                    ended_ms: crate::clock::unix_ms(),
                    reply: None,
                });
                self.finish(a, end);
            }
        }
        tracing::debug!("recorder writer stopped");
    }

    /// Handles every queued control message; true if all senders are gone.
    pub(super) fn drain_ctrl(&mut self) -> bool {
        loop {
            match self.ctrl.try_recv() {
                Ok(cmd) => self.on_ctrl(cmd),
                Err(mpsc::TryRecvError::Empty) => return false,
                Err(mpsc::TryRecvError::Disconnected) => return true,
            }
        }
    }

    pub(super) fn on_ctrl(&mut self, cmd: Ctrl) {
        match cmd {
            Ctrl::Start(id, active) => {
                self.active.insert(id, *active);
                self.stats
                    .active
                    .store(self.active.len(), Ordering::Relaxed);
            }
            Ctrl::End { id, sent, end } => {
                if let Some(a) = self.active.get_mut(&id) {
                    a.pending = Some((sent, end));
                    self.finish_if_ready(id);
                }
            }
            #[cfg(test)]
            Ctrl::Stall { stalled, release } => {
                let _ = stalled.send(());
                let _ = release.recv(); // returns when the guard is dropped
            }
            #[cfg(test)]
            Ctrl::Sync(done) => {
                while let Some(msg) = self.queue.pop() {
                    self.on_frame(msg);
                }
                let _ = done.send(());
            }
        }
    }

    pub(super) fn on_frame(&mut self, msg: FrameMsg) {
        let Some(a) = self.active.get_mut(&msg.id) else {
            return; // its recording is gone; nothing to give the buffer back to
        };
        a.received += 1;
        if msg.seq >= a.next_seq {
            let gap = msg.seq - a.next_seq; // frames dropped on the way: silence
            for _ in 0..gap {
                a.write(&[]);
            }
            a.write(&msg.buf);
        }
        if !msg.buf.is_empty() {
            let _ = a.free.push(msg.buf); // cannot be full: it only holds this recording's buffers
        }
        if a.pending.is_some() {
            self.finish_if_ready(msg.id);
        }
    }

    pub(super) fn finish_if_ready(&mut self, id: u64) {
        let ready = self
            .active
            .get(&id)
            .and_then(|a| a.pending.as_ref().map(|(sent, _)| a.received >= *sent))
            .unwrap_or(false);
        if !ready {
            return;
        }
        if let Some(mut a) = self.active.remove(&id) {
            self.stats
                .active
                .store(self.active.len(), Ordering::Relaxed);
            if let Some((_, end)) = a.pending.take() {
                self.finish(a, end);
            }
        }
    }

    pub(super) fn finish(&mut self, mut a: Active, end: Pending) {
        match end {
            Pending::Stop {
                total,
                dropped,
                ended_ms,
                reply,
            } => {
                while a.next_seq < total {
                    a.write(&[]);
                }
                if let Some(main) = a.main.take()
                    && let Err(e) = main.finalize()
                {
                    a.fail(format!("finalising: {e}"));
                }
                let companion = match a.companion.take() {
                    Some((wav, path)) => {
                        if let Err(e) = wav.finalize() {
                            a.fail(format!("finalising the companion: {e}"));
                        }
                        Some(path)
                    }
                    None => None,
                };
                let job = FinishJob {
                    channels: a.mode.channels(),
                    path: a.path,
                    companion,
                    sample_rate: a.sample_rate,
                    frames: a.next_seq,
                    dropped,
                    started_ms: a.started_ms,
                    ended_ms,
                    failed: a.failed,
                    reply,
                };
                if let Err(mpsc::SendError(job)) = self.finisher.send(job) {
                    job.run(); // the finisher is gone: do it here rather than lose it
                }
            }
            #[cfg(test)]
            Pending::Crash { done } => {
                // As after kill -9: no header update, buffered bytes lost.
                std::mem::forget(a.main.take());
                std::mem::forget(a.companion.take());
                let _ = done.send(());
            }
        }
    }
}

impl Active {
    /// Writes one frame (`buf` as in [`FrameMsg`]; empty = silence) and flushes every second.
    pub(super) fn write(&mut self, buf: &[i16]) {
        self.next_seq += 1;
        if self.failed.is_some() {
            return;
        }
        if self.data_bytes + self.frame_bytes > MAX_DATA_BYTES {
            self.fail("the 4 GiB WAV size limit was reached".into());
            return;
        }
        if let Err(e) = self.write_samples(buf) {
            self.fail(e.to_string());
            return;
        }
        self.data_bytes += self.frame_bytes;
        self.since_flush += 1;
        if self.since_flush >= FLUSH_EVERY_FRAMES {
            self.since_flush = 0;
            if let Err(e) = self.flush() {
                self.fail(format!("flushing: {e}"));
            }
        }
    }

    pub(super) fn write_samples(&mut self, buf: &[i16]) -> Result<(), hound::Error> {
        let n = self.frame_len;
        let (left, right) = if buf.len() == 2 * n {
            buf.split_at(n)
        } else {
            (&[][..], &[][..])
        };
        let at = |s: &[i16], i: usize| s.get(i).copied().unwrap_or(0);
        if let Some(main) = self.main.as_mut() {
            match self.mode {
                ChannelMode::Stereo => {
                    let mut w = main.get_i16_writer(2 * n as u32);
                    for i in 0..n {
                        w.write_sample(at(left, i));
                        w.write_sample(at(right, i));
                    }
                    w.flush()?;
                }
                ChannelMode::Mono => {
                    let mut w = main.get_i16_writer(n as u32);
                    for i in 0..n {
                        w.write_sample(mix(at(left, i), at(right, i)));
                    }
                    w.flush()?;
                }
                ChannelMode::CallerOnly => {
                    let mut w = main.get_i16_writer(n as u32);
                    for i in 0..n {
                        w.write_sample(at(left, i));
                    }
                    w.flush()?;
                }
            }
        }
        if let Some((wav, _)) = self.companion.as_mut() {
            let mut w = wav.get_i16_writer(n as u32);
            for i in 0..n {
                w.write_sample(mix(at(left, i), at(right, i)));
            }
            w.flush()?;
        }
        Ok(())
    }

    pub(super) fn flush(&mut self) -> Result<(), hound::Error> {
        if let Some(main) = self.main.as_mut() {
            main.flush()?;
        }
        if let Some((wav, _)) = self.companion.as_mut() {
            wav.flush()?;
        }
        Ok(())
    }

    pub(super) fn fail(&mut self, reason: String) {
        if self.failed.is_none() {
            tracing::error!(path = %self.path.display(), %reason, "recording failed");
            // Best effort: keep what was written readable.
            let _ = self.flush();
            self.failed = Some(reason);
        }
    }
}

impl FinishJob {
    pub(super) fn run(self) {
        let result = self.summarise();
        if let Err(e) = &result {
            tracing::error!(error = %e, "recording could not be completed");
        }
        if let Some(reply) = self.reply {
            let _ = reply.send(result); // the waiter may have gone
        }
    }

    pub(super) fn summarise(&self) -> Result<RecordingSummary, RecorderError> {
        if let Some(reason) = &self.failed {
            return Err(RecorderError::Failed {
                path: self.path.clone(),
                reason: reason.clone(),
            });
        }
        let (size, sha256) = sync_and_hash(&self.path)?;
        let companion = match &self.companion {
            Some(path) => {
                let (size, sha256) = sync_and_hash(path)?;
                Some(CompanionSummary {
                    path: path.clone(),
                    size,
                    sha256,
                })
            }
            None => None,
        };
        if let Some(dir) = self.path.parent() {
            // Make the directory entry durable too (best effort: not every FS allows it).
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(RecordingSummary {
            path: self.path.clone(),
            duration: Duration::from_millis(self.frames * u64::from(FRAME_MS)),
            channels: self.channels,
            sample_rate: self.sample_rate,
            size,
            sha256,
            started_ms: self.started_ms,
            ended_ms: self.ended_ms,
            frames: self.frames,
            dropped_frames: self.dropped,
            companion,
        })
    }
}

/// Copies `src` into `dst`, cutting or padding with silence.
pub(super) fn copy_padded(dst: &mut [i16], src: &[i16]) {
    let n = dst.len().min(src.len());
    dst[..n].copy_from_slice(&src[..n]);
    dst[n..].fill(0);
}

/// Saturating mix of two parties.
pub(super) fn mix(a: i16, b: i16) -> i16 {
    a.saturating_add(b)
}
