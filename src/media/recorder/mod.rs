//! Crash-safe call recording (DRIVER, thread-based): 16-bit PCM WAV files written by one shared
//! writer thread, fed frame by frame from the media path.
//!
//! What this module owns:
//! * [`RecorderPool`]: **one writer thread for all recordings** (plus one finisher thread).
//!   Hundreds of recordings are multiplexed over one bounded lock-free queue
//!   (`crossbeam_queue::ArrayQueue`) of frame messages; control messages (start, stop) travel on
//!   an unbounded `std::sync::mpsc` channel that also wakes the writer. A thread per call would
//!   cost a stack and a scheduler entity per call and gain nothing: writing 500 calls × 50
//!   frames/s of 8 kHz stereo is ~16 MB/s of sequential `write(2)`s through 16 KiB buffers,
//!   which one thread does with room to spare. The writer wakes every [`WRITER_TICK`] (and at
//!   once on control messages), so the media path never makes a system call.
//! * [`Recorder`]: the per-recording handle the media path owns. [`Recorder::write_frame`]
//!   never blocks and, once warm, never allocates: it copies both parties into a pooled buffer
//!   (at most [`PoolConfig::buffers_per_recording`] per recording, recycled by the writer) and
//!   pushes it on the shared queue. If no buffer is free or the queue is full the frame is
//!   **dropped and counted** ([`Recorder::dropped_frames`], [`RecorderPool::dropped_frames`]);
//!   the writer fills every gap in the frame sequence with silence, so the file's timing stays
//!   true to the call even when audio was lost.
//! * Layout: `<data_dir>/recordings/YYYY/MM/DD/<session_id>/<recording_id>.wav` (UTC date of
//!   the start), plus `<recording_id>.mixed.wav` for the optional mixed-mono companion
//!   ([`companion_path`]). Stereo files carry the caller on the left channel and the other
//!   party on the right; mono files and the companion carry the saturating sum of both;
//!   caller-only files (voicemail, [`ChannelMode::CallerOnly`]) carry the left channel alone.
//! * Pause/resume: while paused the writer writes silence, so durations include paused time.
//! * Crash safety: the RIFF and data chunk sizes are rewritten and the buffers flushed every
//!   [`FLUSH_EVERY_FRAMES`] frames (one second of audio, via `hound::WavWriter::flush`), so a
//!   `kill -9` loses at most the last second; [`repair`] fixes the sizes of a file left open
//!   by a crash from its actual length. The header itself is on disk before
//!   [`RecorderPool::start`] returns.
//! * Stop: [`Recorder::stop`] returns a [`PendingSummary`] (awaitable, backed by a
//!   `tokio::sync::oneshot`): the writer pads the tail, finalises the header, and the finisher
//!   thread fsyncs the file(s) and directory and computes SHA-256 without holding up the frame
//!   loop. The async caller awaits it without blocking a tokio worker.
//!
//! Here: the public handles ([`RecorderPool`], [`Recorder`], [`PendingSummary`]), the spec and
//! summary types and the file layout. `writer` holds the writer and finisher threads, `wav` the
//! WAV files (header, fsync and hash, [`repair`]); recording repair at startup and retention
//! live in `media::recordings`.

use std::collections::HashMap;
use std::fs::File;
use std::future::{Future, IntoFuture};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use crate::media::{FRAME_MS, frame_len};
use crate::store::{CallId, RecordingId, SessionId};

#[cfg(test)]
mod tests;
mod wav;
mod writer;

pub use wav::repair;
use wav::*;
use writer::*;

/// Errors of the recorder.
#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    /// Only 8000 and 16000 Hz are recorded.
    #[error("unsupported recording sample rate {0} Hz (8000 or 16000)")]
    BadSampleRate(u32),
    /// A file-system operation failed.
    #[error("recording I/O on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// hound refused to write.
    #[error("WAV writer on {path}: {source}")]
    Wav {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: hound::Error,
    },
    /// [`repair`] found something that is not a WAV file it can fix.
    #[error("{path} is not a repairable WAV file: {reason}")]
    NotWav {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Writing failed during the recording (disk full, size limit…); the file holds what was
    /// written before, with a valid header.
    #[error("recording {path} failed: {reason}")]
    Failed {
        /// The file.
        path: PathBuf,
        /// What went wrong first.
        reason: String,
    },
    /// The writer thread is gone (or could not be started).
    #[error("the recording writer thread is not running")]
    WriterGone,
}

/// Which channels a recording has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelMode {
    /// Two channels: the caller left, the other party right.
    Stereo,
    /// One channel: both parties mixed.
    Mono,
    /// One channel: the caller (left) only, the other party is not recorded (voicemail).
    CallerOnly,
}

/// What to record and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingSpec {
    /// The server's data directory; recordings go below `<data_dir>/recordings/`.
    pub data_dir: PathBuf,
    /// The recording's id (file name).
    pub recording_id: RecordingId,
    /// The session (directory).
    pub session_id: SessionId,
    /// The call recorded.
    pub call_id: CallId,
    /// Start, Unix ms: picks the dated directory and is reported in the summary.
    pub started_ms: i64,
    /// 8000 or 16000.
    pub sample_rate: u32,
    /// Stereo or mono.
    pub mode: ChannelMode,
    /// Also write a mixed mono companion ([`companion_path`]); ignored for mono and
    /// caller-only recordings.
    pub mixed_companion: bool,
}

/// What a stopped recording produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingSummary {
    /// The main file.
    pub path: PathBuf,
    /// Length of the audio (frames × 20 ms, paused and dropped time included as silence).
    pub duration: Duration,
    /// 2 (stereo) or 1.
    pub channels: u16,
    /// Sample rate, Hz.
    pub sample_rate: u32,
    /// Size of the main file in bytes.
    pub size: u64,
    /// SHA-256 of the main file, lowercase hex.
    pub sha256: String,
    /// Start, Unix ms (from the spec).
    pub started_ms: i64,
    /// Stop, Unix ms.
    pub ended_ms: i64,
    /// Frames in the file.
    pub frames: u64,
    /// Frames the media path offered that the writer never got (written as silence).
    pub dropped_frames: u64,
    /// The mixed mono companion, if one was written.
    pub companion: Option<CompanionSummary>,
}

/// The mixed mono companion file of a stereo recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompanionSummary {
    /// The file.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
}

/// What [`repair`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairOutcome {
    /// Length of the audio now described by the header.
    pub duration: Duration,
    /// Channels.
    pub channels: u16,
    /// Sample rate, Hz.
    pub sample_rate: u32,
    /// File size after repair.
    pub size: u64,
    /// SHA-256 of the repaired file, lowercase hex.
    pub sha256: String,
    /// Whether the RIFF/data sizes had to be rewritten.
    pub header_rewritten: bool,
    /// Bytes of a partial trailing sample frame that were cut off.
    pub truncated_bytes: u64,
}

/// Sizing of a [`RecorderPool`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// Frames that may wait for the writer, over all recordings.
    pub queue_capacity: usize,
    /// Frame buffers one recording may have in flight (its backlog bound).
    pub buffers_per_recording: usize,
}

/// The shared writer service: one thread writing every recording. Cheap to clone.
#[derive(Clone)]
pub struct RecorderPool {
    inner: Arc<PoolInner>,
}

/// One recording, owned by the media path. Dropping it without [`Recorder::stop`] still
/// finalises the file (without a summary).
pub struct Recorder {
    id: u64,
    frame_len: usize,
    pool: Arc<PoolInner>,
    free: Arc<ArrayQueue<Box<[i16]>>>,
    allocated: usize,
    max_buffers: usize,
    path: PathBuf,
    sample_rate: u32,
    paused: bool,
    /// Frames offered by the media path (the next frame's sequence number).
    offered: u64,
    /// Frames that made it onto the queue.
    sent: u64,
    dropped: u64,
    stopped: bool,
}

/// The result of [`Recorder::stop`], delivered once the files are finalised, synced and hashed.
/// `.await` it (or [`PendingSummary::wait`]); outside a runtime, [`PendingSummary::wait_blocking`].
#[derive(Debug)]
pub struct PendingSummary {
    rx: oneshot::Receiver<Result<RecordingSummary, RecorderError>>,
}

/// Header and data are flushed (sizes rewritten) at least every this many frames: 1 s.
pub const FLUSH_EVERY_FRAMES: u64 = (1000 / FRAME_MS) as u64;
/// How long the writer sleeps between looks at the frame queue when nothing else wakes it.
pub const WRITER_TICK: Duration = Duration::from_millis(10);
/// The sample rates a recording may have.
pub const SAMPLE_RATES: [u32; 2] = [8000, 16000];

/// Bytes of buffering per open WAV file: about half a second of 8 kHz stereo, a quarter of
/// 16 kHz stereo. It must stay well under one second of audio: a full buffer reaches the file
/// between the once-a-second flushes, so a `kill -9` loses at most this much (plus the frames
/// in the queue), not a whole second (32 KiB held all of a second of 8 kHz stereo).
const FILE_BUFFER: usize = 16 * 1024;
/// hound keeps sizes in `u32`: stop writing before the data chunk would overflow.
const MAX_DATA_BYTES: u64 = u32::MAX as u64 - 1024 * 1024;

impl Default for PoolConfig {
    /// 16384 queued frames (≈ 0.6 s of 500 calls) and 50 buffers (1 s) per recording.
    fn default() -> Self {
        PoolConfig {
            queue_capacity: 16_384,
            buffers_per_recording: 50,
        }
    }
}

impl RecordingSpec {
    /// The file path relative to the data directory (what the store keeps).
    pub fn relative_path(&self) -> PathBuf {
        let (y, m, d) = civil_date(self.started_ms);
        PathBuf::from("recordings")
            .join(format!("{y:04}"))
            .join(format!("{m:02}"))
            .join(format!("{d:02}"))
            .join(self.session_id.to_string())
            .join(format!("{}.wav", self.recording_id))
    }

    /// The absolute (or data-dir-relative) path of the main file.
    pub fn path(&self) -> PathBuf {
        self.data_dir.join(self.relative_path())
    }

    /// Channels of the main file.
    pub fn channels(&self) -> u16 {
        self.mode.channels()
    }
}

impl ChannelMode {
    /// Channels of the main file in this mode.
    pub fn channels(self) -> u16 {
        match self {
            ChannelMode::Stereo => 2,
            ChannelMode::Mono | ChannelMode::CallerOnly => 1,
        }
    }
}

/// The pool behind [`RecorderPool::global`].
static GLOBAL_POOL: Mutex<Option<RecorderPool>> = Mutex::new(None);

impl RecorderPool {
    /// Starts the writer and finisher threads.
    pub fn new(config: PoolConfig) -> Result<RecorderPool, RecorderError> {
        let queue = Arc::new(ArrayQueue::new(config.queue_capacity.max(1)));
        let (ctrl_tx, ctrl_rx) = mpsc::channel();
        let (finish_tx, finish_rx) = mpsc::channel::<FinishJob>();
        let stats = Arc::new(PoolStats::default());
        let spawn_err = |e: io::Error| {
            tracing::error!(error = %e, "cannot start a recorder thread");
            RecorderError::WriterGone
        };
        std::thread::Builder::new()
            .name("recorder-finish".into())
            .spawn(move || {
                for job in finish_rx {
                    job.run();
                }
            })
            .map_err(spawn_err)?;
        let writer = WriterThread {
            queue: queue.clone(),
            ctrl: ctrl_rx,
            finisher: finish_tx,
            stats: stats.clone(),
            active: HashMap::new(),
        };
        std::thread::Builder::new()
            .name("recorder-write".into())
            .spawn(move || writer.run())
            .map_err(spawn_err)?;
        Ok(RecorderPool {
            inner: Arc::new(PoolInner {
                queue,
                ctrl: ctrl_tx,
                config,
                next_id: AtomicU64::new(1),
                stats,
            }),
        })
    }

    /// The process-wide pool (default sizing), started on first use.
    pub fn global() -> Result<RecorderPool, RecorderError> {
        let mut slot = GLOBAL_POOL.lock().map_err(|_| RecorderError::WriterGone)?;
        if let Some(pool) = slot.as_ref() {
            return Ok(pool.clone());
        }
        let pool = RecorderPool::new(PoolConfig::default())?;
        *slot = Some(pool.clone());
        Ok(pool)
    }

    /// The process-wide pool if something started it (for metrics: does not start it).
    pub fn global_if_started() -> Option<RecorderPool> {
        GLOBAL_POOL.lock().ok().and_then(|slot| slot.clone())
    }

    /// Creates the directories and the file(s), writes the header to disk and hands the
    /// recording to the writer. This does a few small blocking file-system calls (mkdir,
    /// create, one 44-byte write); per-frame work never touches the file system.
    pub fn start(&self, spec: RecordingSpec) -> Result<Recorder, RecorderError> {
        if !SAMPLE_RATES.contains(&spec.sample_rate) {
            return Err(RecorderError::BadSampleRate(spec.sample_rate));
        }
        let path = spec.path();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| RecorderError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let main = create_wav(&path, spec.channels(), spec.sample_rate)?;
        let companion = match (spec.mode, spec.mixed_companion) {
            (ChannelMode::Stereo, true) => {
                let cpath = companion_path(&path);
                Some((create_wav(&cpath, 1, spec.sample_rate)?, cpath))
            }
            _ => None,
        };
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let max_buffers = self.inner.config.buffers_per_recording.max(1);
        let free = Arc::new(ArrayQueue::new(max_buffers));
        let n = frame_len(spec.sample_rate);
        let active = Active {
            path: path.clone(),
            mode: spec.mode,
            sample_rate: spec.sample_rate,
            frame_len: n,
            frame_bytes: 2 * n as u64 * u64::from(spec.channels()),
            main: Some(main),
            companion,
            free: free.clone(),
            started_ms: spec.started_ms,
            next_seq: 0,
            received: 0,
            since_flush: 0,
            data_bytes: 0,
            failed: None,
            pending: None,
        };
        self.inner
            .ctrl
            .send(Ctrl::Start(id, Box::new(active)))
            .map_err(|_| RecorderError::WriterGone)?;
        Ok(Recorder {
            id,
            frame_len: n,
            sample_rate: spec.sample_rate,
            pool: self.inner.clone(),
            free,
            allocated: 0,
            max_buffers,
            path,
            paused: false,
            offered: 0,
            sent: 0,
            dropped: 0,
            stopped: false,
        })
    }

    /// Frames dropped over all recordings of this pool since it started.
    pub fn dropped_frames(&self) -> u64 {
        self.inner.stats.dropped.load(Ordering::Relaxed)
    }

    /// Recordings the writer currently has open.
    pub fn active_recordings(&self) -> usize {
        self.inner.stats.active.load(Ordering::Relaxed)
    }

    /// Test hook: blocks the writer thread until the returned guard is dropped.
    #[cfg(test)]
    fn stall_writer(&self) -> StallGuard {
        let (stalled_tx, stalled_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel();
        self.inner
            .ctrl
            .send(Ctrl::Stall {
                stalled: stalled_tx,
                release: release_rx,
            })
            .expect("writer thread runs in tests");
        stalled_rx.recv().expect("writer acknowledges the stall");
        StallGuard {
            _release: release_tx,
        }
    }

    /// Test hook: returns once the writer has written every frame queued so far.
    #[cfg(test)]
    fn sync_writer(&self) {
        let (tx, rx) = mpsc::channel();
        self.inner
            .ctrl
            .send(Ctrl::Sync(tx))
            .expect("writer thread runs in tests");
        rx.recv().expect("writer acknowledges the sync");
    }
}

impl Recorder {
    /// Starts a recording on the process-wide pool ([`RecorderPool::global`]).
    pub fn start(spec: RecordingSpec) -> Result<Recorder, RecorderError> {
        RecorderPool::global()?.start(spec)
    }

    /// Records one 20 ms frame: `left` is the caller, `right` the other party (mixed for mono
    /// recordings). Slices shorter than a frame are padded with silence, longer ones cut.
    /// Never blocks; if the writer is behind, the frame is dropped and counted.
    pub fn write_frame(&mut self, left: &[i16], right: &[i16]) {
        let seq = self.offered;
        self.offered += 1;
        let buf: Box<[i16]> = if self.paused {
            Box::default() // silence: no buffer needed (an empty box does not allocate)
        } else {
            let mut buf = match self.free.pop() {
                Some(b) => b,
                None if self.allocated < self.max_buffers => {
                    self.allocated += 1;
                    vec![0i16; 2 * self.frame_len].into_boxed_slice()
                }
                None => return self.count_drop(),
            };
            let (l, r) = buf.split_at_mut(self.frame_len);
            copy_padded(l, left);
            copy_padded(r, right);
            buf
        };
        match self.pool.queue.push(FrameMsg {
            id: self.id,
            seq,
            buf,
        }) {
            Ok(()) => self.sent += 1,
            Err(msg) => {
                if !msg.buf.is_empty() {
                    let _ = self.free.push(msg.buf); // room: it came from this queue's budget
                }
                self.count_drop();
            }
        }
    }

    /// `n` frames the media path never produced (its frame clock skipped them after a stall):
    /// the writer records them as silence, so the file keeps the call's timing. Not counted
    /// as dropped (nothing was offered).
    pub fn skip_frames(&mut self, n: u64) {
        self.offered += n;
    }

    /// Pauses: frames written from now on are recorded as silence.
    pub fn pause(&mut self) {
        self.paused = true;
    }

    /// Resumes recording the parties.
    pub fn resume(&mut self) {
        self.paused = false;
    }

    /// Whether the recording is paused.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Frames dropped so far because the writer was behind.
    pub fn dropped_frames(&self) -> u64 {
        self.dropped
    }

    /// Frames offered so far (the recording's length in frames).
    pub fn frames(&self) -> u64 {
        self.offered
    }

    /// The recording's sample rate.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops: the writer writes what is queued, pads to the frames offered, finalises the
    /// header; the finisher fsyncs and hashes. The summary arrives through the returned handle.
    pub fn stop(mut self) -> PendingSummary {
        let (tx, rx) = oneshot::channel();
        self.send_stop(Some(tx), crate::clock::unix_ms());
        PendingSummary { rx }
    }

    fn send_stop(
        &mut self,
        reply: Option<oneshot::Sender<Result<RecordingSummary, RecorderError>>>,
        ended_ms: i64,
    ) {
        self.stopped = true;
        let end = Pending::Stop {
            total: self.offered,
            dropped: self.dropped,
            ended_ms,
            reply,
        };
        // If the writer is gone, the reply sender is dropped and the waiter sees WriterGone.
        let _ = self.pool.ctrl.send(Ctrl::End {
            id: self.id,
            sent: self.sent,
            end,
        });
    }

    fn count_drop(&mut self) {
        self.dropped += 1;
        self.pool.stats.dropped.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("switchboard_recorder_dropped_frames_total").increment(1);
        if self.dropped.is_power_of_two() {
            tracing::warn!(path = %self.path.display(), dropped = self.dropped,
                "recording writer is behind; frames dropped (written as silence)");
        }
    }

    /// Test hook: the writer forgets the file without finalising it, as a `kill -9` would
    /// (what was flushed stays, the buffer and the header update are lost). Returns once done.
    #[cfg(test)]
    fn simulate_crash(mut self) {
        self.stopped = true;
        let (tx, rx) = mpsc::channel();
        self.pool
            .ctrl
            .send(Ctrl::End {
                id: self.id,
                sent: self.sent,
                end: Pending::Crash { done: tx },
            })
            .expect("writer thread runs in tests");
        rx.recv().expect("writer acknowledges the crash");
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if !self.stopped {
            self.send_stop(None, crate::clock::unix_ms());
        }
    }
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("path", &self.path)
            .field("frames", &self.offered)
            .field("dropped", &self.dropped)
            .field("paused", &self.paused)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for RecorderPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecorderPool")
            .field("config", &self.inner.config)
            .field("active", &self.active_recordings())
            .field("dropped", &self.dropped_frames())
            .finish()
    }
}

impl PendingSummary {
    /// Waits for the summary (does not block the runtime).
    pub async fn wait(self) -> Result<RecordingSummary, RecorderError> {
        self.rx.await.unwrap_or(Err(RecorderError::WriterGone))
    }

    /// Waits on this thread. Must not be called inside an async runtime.
    pub fn wait_blocking(self) -> Result<RecordingSummary, RecorderError> {
        self.rx
            .blocking_recv()
            .unwrap_or(Err(RecorderError::WriterGone))
    }
}

impl IntoFuture for PendingSummary {
    type Output = Result<RecordingSummary, RecorderError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.wait())
    }
}

/// The mixed mono companion of a main file: `x.wav` → `x.mixed.wav`.
pub fn companion_path(path: &Path) -> PathBuf {
    path.with_extension("mixed.wav")
}

/// The UTC calendar date (year, month, day) of a Unix-millisecond time (H. Hinnant's
/// `civil_from_days`).
fn civil_date(unix_ms: i64) -> (i64, u32, u32) {
    let z = unix_ms.div_euclid(86_400_000) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Whether a stored relative path stays inside the data directory (no `..`, not absolute).
pub fn is_safe_relative(path: &Path) -> bool {
    !path.as_os_str().is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)))
}
