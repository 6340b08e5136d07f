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
//! WAV (RIFF) layout as written by hound: `RIFF <size> WAVE`, a 16-byte PCM `fmt ` chunk,
//! then the `data` chunk, last in the file.

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

/// Rewrites the RIFF and data chunk sizes of a WAV file left open by a crash from the file's
/// actual length, cutting a partial trailing sample frame, fsyncs it and hashes it. A file
/// whose sizes are already right is left as it is. The `data` chunk must be the last chunk
/// (as hound writes it). Files without a complete RIFF/fmt/data header (e.g. zero-length)
/// are refused with [`RecorderError::NotWav`].
pub fn repair(path: &Path) -> Result<RepairOutcome, RecorderError> {
    let io_err = |source| RecorderError::Io {
        path: path.to_path_buf(),
        source,
    };
    let not_wav = |reason: String| RecorderError::NotWav {
        path: path.to_path_buf(),
        reason,
    };
    let mut file = File::options()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_err)?;
    let len = file.metadata().map_err(io_err)?.len();
    let mut head = vec![0u8; len.min(64 * 1024) as usize];
    file.read_exact(&mut head).map_err(io_err)?;
    let layout = parse_header(&head).map_err(not_wav)?;

    let avail = len - layout.data_start;
    let max_data = u64::from(u32::MAX) - (layout.data_start - 8);
    let block = u64::from(layout.block_align);
    let data_len = avail.min(max_data) / block * block;
    let new_len = layout.data_start + data_len;
    let truncated_bytes = len - new_len;
    if truncated_bytes > 0 {
        file.set_len(new_len).map_err(io_err)?;
    }
    let riff_size = (new_len - 8) as u32; // ≤ u32::MAX by the cap above
    let data_size = data_len as u32;
    let header_rewritten = layout.riff_size != riff_size || layout.data_size != data_size;
    if header_rewritten {
        file.seek(SeekFrom::Start(4)).map_err(io_err)?;
        file.write_all(&riff_size.to_le_bytes()).map_err(io_err)?;
        file.seek(SeekFrom::Start(layout.data_start - 4))
            .map_err(io_err)?;
        file.write_all(&data_size.to_le_bytes()).map_err(io_err)?;
    }
    file.sync_all().map_err(io_err)?;
    let frames = data_len / block;
    let duration = Duration::from_micros(frames * 1_000_000 / u64::from(layout.sample_rate));
    let sha256 = hash_file(&mut file).map_err(io_err)?;
    if header_rewritten || truncated_bytes > 0 {
        tracing::info!(path = %path.display(), ?duration, truncated_bytes, "recording repaired");
    }
    Ok(RepairOutcome {
        duration,
        channels: layout.channels,
        sample_rate: layout.sample_rate,
        size: new_len,
        sha256,
        header_rewritten,
        truncated_bytes,
    })
}

struct PoolInner {
    queue: Arc<ArrayQueue<FrameMsg>>,
    ctrl: mpsc::Sender<Ctrl>,
    config: PoolConfig,
    next_id: AtomicU64,
    stats: Arc<PoolStats>,
}

#[derive(Default)]
struct PoolStats {
    dropped: AtomicU64,
    active: AtomicUsize,
}

/// One frame for the writer: `buf` holds `frame_len` left samples then `frame_len` right
/// samples, or is empty for silence.
struct FrameMsg {
    id: u64,
    seq: u64,
    buf: Box<[i16]>,
}

enum Ctrl {
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

enum Pending {
    Stop {
        total: u64,
        dropped: u64,
        ended_ms: i64,
        reply: Option<oneshot::Sender<Result<RecordingSummary, RecorderError>>>,
    },
    #[cfg(test)]
    Crash { done: mpsc::Sender<()> },
}

type Wav = hound::WavWriter<BufWriter<File>>;

/// The writer's state of one open recording.
struct Active {
    path: PathBuf,
    mode: ChannelMode,
    sample_rate: u32,
    frame_len: usize,
    /// Bytes one frame adds to the main (largest) file.
    frame_bytes: u64,
    /// `None` only while being finalised.
    main: Option<Wav>,
    companion: Option<(Wav, PathBuf)>,
    free: Arc<ArrayQueue<Box<[i16]>>>,
    started_ms: i64,
    /// Sequence number of the next frame to write.
    next_seq: u64,
    received: u64,
    since_flush: u64,
    data_bytes: u64,
    failed: Option<String>,
    pending: Option<(u64, Pending)>,
}

struct WriterThread {
    queue: Arc<ArrayQueue<FrameMsg>>,
    ctrl: mpsc::Receiver<Ctrl>,
    finisher: mpsc::Sender<FinishJob>,
    stats: Arc<PoolStats>,
    active: HashMap<u64, Active>,
}

/// Work for the finisher thread: fsync, hash and reply.
struct FinishJob {
    path: PathBuf,
    companion: Option<PathBuf>,
    channels: u16,
    sample_rate: u32,
    frames: u64,
    dropped: u64,
    started_ms: i64,
    ended_ms: i64,
    failed: Option<String>,
    reply: Option<oneshot::Sender<Result<RecordingSummary, RecorderError>>>,
}

#[cfg(test)]
struct StallGuard {
    _release: mpsc::Sender<()>,
}

/// Where the parts of a WAV header are.
struct WavLayout {
    channels: u16,
    sample_rate: u32,
    block_align: u16,
    riff_size: u32,
    data_size: u32,
    /// Offset of the first sample byte.
    data_start: u64,
}

impl WriterThread {
    fn run(mut self) {
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
    fn drain_ctrl(&mut self) -> bool {
        loop {
            match self.ctrl.try_recv() {
                Ok(cmd) => self.on_ctrl(cmd),
                Err(mpsc::TryRecvError::Empty) => return false,
                Err(mpsc::TryRecvError::Disconnected) => return true,
            }
        }
    }

    fn on_ctrl(&mut self, cmd: Ctrl) {
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

    fn on_frame(&mut self, msg: FrameMsg) {
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

    fn finish_if_ready(&mut self, id: u64) {
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

    fn finish(&mut self, mut a: Active, end: Pending) {
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
    fn write(&mut self, buf: &[i16]) {
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

    fn write_samples(&mut self, buf: &[i16]) -> Result<(), hound::Error> {
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

    fn flush(&mut self) -> Result<(), hound::Error> {
        if let Some(main) = self.main.as_mut() {
            main.flush()?;
        }
        if let Some((wav, _)) = self.companion.as_mut() {
            wav.flush()?;
        }
        Ok(())
    }

    fn fail(&mut self, reason: String) {
        if self.failed.is_none() {
            tracing::error!(path = %self.path.display(), %reason, "recording failed");
            // Best effort: keep what was written readable.
            let _ = self.flush();
            self.failed = Some(reason);
        }
    }
}

impl FinishJob {
    fn run(self) {
        let result = self.summarise();
        if let Err(e) = &result {
            tracing::error!(error = %e, "recording could not be completed");
        }
        if let Some(reply) = self.reply {
            let _ = reply.send(result); // the waiter may have gone
        }
    }

    fn summarise(&self) -> Result<RecordingSummary, RecorderError> {
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

/// Creates a new WAV file (never overwriting one) and puts its header on disk.
fn create_wav(path: &Path, channels: u16, sample_rate: u32) -> Result<Wav, RecorderError> {
    let file = File::options()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|source| RecorderError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    let spec = hound::WavSpec {
        channels,
        sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let wav_err = |source| RecorderError::Wav {
        path: path.to_path_buf(),
        source,
    };
    let mut wav = hound::WavWriter::new(BufWriter::with_capacity(FILE_BUFFER, file), spec)
        .map_err(wav_err)?;
    wav.flush().map_err(wav_err)?;
    Ok(wav)
}

fn sync_and_hash(path: &Path) -> Result<(u64, String), RecorderError> {
    let io_err = |source| RecorderError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io_err)?;
    file.sync_all().map_err(io_err)?;
    let size = file.metadata().map_err(io_err)?.len();
    let sha = hash_file(&mut file).map_err(io_err)?;
    Ok((size, sha))
}

/// SHA-256 of a whole file, lowercase hex.
fn hash_file(file: &mut File) -> io::Result<String> {
    file.seek(SeekFrom::Start(0))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Finds the fmt and data chunks of a RIFF/WAVE header.
fn parse_header(head: &[u8]) -> Result<WavLayout, String> {
    let u32_at = |at: usize| -> Option<u32> {
        head.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u16_at = |at: usize| -> Option<u16> {
        head.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    if head.len() < 12 {
        return Err(format!(
            "{} bytes is too short for a RIFF header",
            head.len()
        ));
    }
    if &head[0..4] != b"RIFF" || &head[8..12] != b"WAVE" {
        return Err("no RIFF/WAVE signature".into());
    }
    let riff_size = u32_at(4).unwrap_or(0);
    let mut fmt: Option<(u16, u32, u16)> = None;
    let mut at = 12usize;
    loop {
        let (Some(id), Some(size)) = (head.get(at..at + 4), u32_at(at + 4)) else {
            return Err("no data chunk".into());
        };
        if id == b"fmt " {
            let (Some(tag), Some(channels), Some(rate), Some(align), Some(bits)) = (
                u16_at(at + 8),
                u16_at(at + 10),
                u32_at(at + 12),
                u16_at(at + 20),
                u16_at(at + 22),
            ) else {
                return Err("truncated fmt chunk".into());
            };
            if tag != 1 && tag != 0xFFFE {
                return Err(format!("format tag {tag:#x} is not PCM"));
            }
            if channels == 0 || rate == 0 || align == 0 || bits == 0 {
                return Err("fmt chunk with zero channels, rate, block size or bits".into());
            }
            fmt = Some((channels, rate, align));
        } else if id == b"data" {
            let Some((channels, sample_rate, block_align)) = fmt else {
                return Err("data chunk before the fmt chunk".into());
            };
            return Ok(WavLayout {
                channels,
                sample_rate,
                block_align,
                riff_size,
                data_size: size,
                data_start: at as u64 + 8,
            });
        }
        let size = size as usize;
        at = at
            .checked_add(8 + size + (size & 1))
            .ok_or_else(|| "chunk size overflows".to_string())?;
    }
}

/// Copies `src` into `dst`, cutting or padding with silence.
fn copy_padded(dst: &mut [i16], src: &[i16]) {
    let n = dst.len().min(src.len());
    dst[..n].copy_from_slice(&src[..n]);
    dst[n..].fill(0);
}

/// Saturating mix of two parties.
fn mix(a: i16, b: i16) -> i16 {
    a.saturating_add(b)
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

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000; // 2023-11-14T22:13:20Z

    /// Tests write frames in bursts, not every 20 ms: give each recording room for them.
    fn pool() -> RecorderPool {
        RecorderPool::new(PoolConfig {
            queue_capacity: 16_384,
            buffers_per_recording: 256,
        })
        .expect("pool starts")
    }

    fn spec(dir: &Path, rate: u32, mode: ChannelMode, companion: bool) -> RecordingSpec {
        RecordingSpec {
            data_dir: dir.to_path_buf(),
            recording_id: RecordingId::new(),
            session_id: SessionId::new(),
            call_id: CallId::new(),
            started_ms: T0,
            sample_rate: rate,
            mode,
            mixed_companion: companion,
        }
    }

    /// Frame `k` of a continuous sine of `hz` at `rate`, amplitude 8000.
    fn tone(hz: f64, rate: u32, k: usize) -> Vec<i16> {
        let n = frame_len(rate);
        (0..n)
            .map(|i| {
                let t = (k * n + i) as f64 / f64::from(rate);
                (8000.0 * (2.0 * std::f64::consts::PI * hz * t).sin()).round() as i16
            })
            .collect()
    }

    fn read(path: &Path) -> (hound::WavSpec, Vec<i16>) {
        let mut r = hound::WavReader::open(path).expect("opens with hound");
        let spec = r.spec();
        let samples = r
            .samples::<i16>()
            .collect::<Result<Vec<_>, _>>()
            .expect("samples");
        (spec, samples)
    }

    fn channel(samples: &[i16], channels: usize, c: usize) -> Vec<i16> {
        samples.iter().skip(c).step_by(channels).copied().collect()
    }

    /// Sign changes per second: 2 × the frequency of a pure tone.
    fn crossings_per_second(x: &[i16], rate: u32) -> f64 {
        let n = x.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        n as f64 * f64::from(rate) / x.len() as f64
    }

    fn sha_of(path: &Path) -> String {
        hex::encode(Sha256::digest(std::fs::read(path).expect("read")))
    }

    #[test]
    fn path_is_dated_utc_under_the_session() {
        let s = spec(Path::new("/data"), 8000, ChannelMode::Stereo, false);
        let want = format!(
            "recordings/2023/11/14/{}/{}.wav",
            s.session_id, s.recording_id
        );
        assert_eq!(s.relative_path(), PathBuf::from(&want));
        assert_eq!(s.path(), Path::new("/data").join(want));
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(951_782_400_000), (2000, 2, 29));
        assert_eq!(civil_date(-1), (1969, 12, 31));
        assert!(is_safe_relative(&s.relative_path()));
        assert!(!is_safe_relative(Path::new("../etc/passwd")));
        assert!(!is_safe_relative(Path::new("/etc/passwd")));
    }

    #[test]
    fn unsupported_sample_rate_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = pool()
            .start(spec(dir.path(), 44_100, ChannelMode::Stereo, false))
            .expect_err("44.1 kHz");
        assert!(matches!(err, RecorderError::BadSampleRate(44_100)));
    }

    #[test]
    fn stereo_recording_has_the_tone_left_silence_right_and_a_matching_summary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = spec(dir.path(), 8000, ChannelMode::Stereo, false);
        let mut rec = pool().start(s.clone()).expect("starts");
        for k in 0..100 {
            rec.write_frame(&tone(500.0, 8000, k), &[]);
        }
        let sum = rec.stop().wait_blocking().expect("summary");
        assert_eq!(sum.path, s.path());
        assert_eq!(sum.frames, 100);
        assert_eq!(sum.duration, Duration::from_secs(2));
        assert_eq!((sum.channels, sum.sample_rate), (2, 8000));
        assert_eq!(sum.dropped_frames, 0);
        assert_eq!(sum.started_ms, T0);
        assert!(sum.companion.is_none());

        let (wspec, samples) = read(&sum.path);
        assert_eq!(
            (wspec.channels, wspec.sample_rate, wspec.bits_per_sample),
            (2, 8000, 16)
        );
        assert_eq!(samples.len(), 2 * 16_000, "2 s of stereo");
        let left = channel(&samples, 2, 0);
        let right = channel(&samples, 2, 1);
        let zc = crossings_per_second(&left, 8000);
        assert!(
            (990.0..=1010.0).contains(&zc),
            "500 Hz left: {zc} crossings/s"
        );
        assert!(right.iter().all(|&x| x == 0), "right is silent");
        assert_eq!(
            left,
            (0..100)
                .flat_map(|k| tone(500.0, 8000, k))
                .collect::<Vec<_>>()
        );

        assert_eq!(sum.size, std::fs::metadata(&sum.path).expect("meta").len());
        assert_eq!(
            sum.sha256,
            sha_of(&sum.path),
            "sha256 matches a recomputation"
        );
    }

    #[test]
    fn skipped_frames_are_silence_in_place_and_keep_the_duration() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rec = pool()
            .start(spec(dir.path(), 8000, ChannelMode::Stereo, false))
            .expect("starts");
        for k in 0..10 {
            rec.write_frame(&tone(500.0, 8000, k), &[]);
        }
        rec.skip_frames(15);
        for k in 25..50 {
            rec.write_frame(&tone(500.0, 8000, k), &[]);
        }
        let sum = rec.stop().wait_blocking().expect("summary");
        assert_eq!(sum.frames, 50);
        assert_eq!(sum.duration, Duration::from_secs(1));
        assert_eq!(sum.dropped_frames, 0, "a skipped frame was never offered");
        let (_, samples) = read(&sum.path);
        let left = channel(&samples, 2, 0);
        let n = frame_len(8000);
        assert!(
            left[..10 * n].iter().any(|&v| v != 0),
            "tone before the gap"
        );
        assert!(
            left[10 * n..25 * n].iter().all(|&v| v == 0),
            "silence in the gap"
        );
        assert!(left[25 * n..].iter().any(|&v| v != 0), "tone after the gap");
    }

    #[test]
    fn mono_mode_and_companion_carry_the_mix_of_both_parties() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = pool();
        let mut stereo = p
            .start(spec(dir.path(), 16_000, ChannelMode::Stereo, true))
            .expect("stereo");
        let mut mono = p
            .start(spec(dir.path(), 16_000, ChannelMode::Mono, true))
            .expect("mono");
        for k in 0..10 {
            let (l, r) = (tone(500.0, 16_000, k), tone(1000.0, 16_000, k));
            stereo.write_frame(&l, &r);
            mono.write_frame(&l, &r);
        }
        let want: Vec<i16> = (0..10)
            .flat_map(|k| {
                let (l, r) = (tone(500.0, 16_000, k), tone(1000.0, 16_000, k));
                l.into_iter()
                    .zip(r)
                    .map(|(a, b)| a.saturating_add(b))
                    .collect::<Vec<_>>()
            })
            .collect();
        let s = stereo.stop().wait_blocking().expect("stereo summary");
        let m = mono.stop().wait_blocking().expect("mono summary");
        assert!(m.companion.is_none(), "a mono recording needs no companion");
        assert_eq!(m.channels, 1);
        let (mspec, msamples) = read(&m.path);
        assert_eq!((mspec.channels, mspec.sample_rate), (1, 16_000));
        assert_eq!(msamples, want);

        let c = s.companion.expect("companion written");
        assert_eq!(c.path, companion_path(&s.path));
        assert!(c.path.to_string_lossy().ends_with(".mixed.wav"));
        let (cspec, csamples) = read(&c.path);
        assert_eq!(cspec.channels, 1);
        assert_eq!(csamples, want);
        assert_eq!(c.sha256, sha_of(&c.path));
    }

    #[test]
    fn caller_only_mode_records_the_left_channel_alone_in_mono() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = pool();
        let mut rec = p
            .start(spec(dir.path(), 8000, ChannelMode::CallerOnly, true))
            .expect("caller-only");
        for k in 0..60 {
            rec.write_frame(&tone(500.0, 8000, k), &tone(1000.0, 8000, k));
        }
        rec.skip_frames(2);
        let sum = rec.stop().wait_blocking().expect("summary");
        assert_eq!(sum.channels, 1);
        assert!(sum.companion.is_none(), "one channel needs no companion");
        assert!(!companion_path(&sum.path).exists());
        assert_eq!(sum.frames, 62);
        assert_eq!(sum.duration, Duration::from_millis(62 * 20));
        assert_eq!(sum.sha256, sha_of(&sum.path));
        let (wspec, samples) = read(&sum.path);
        assert_eq!((wspec.channels, wspec.sample_rate), (1, 8000));
        let want: Vec<i16> = (0..60).flat_map(|k| tone(500.0, 8000, k)).collect();
        assert_eq!(&samples[..want.len()], &want[..], "the caller, not the mix");
        assert!(
            samples[want.len()..].iter().all(|&v| v == 0),
            "skipped frames are silence"
        );
        assert_eq!(samples.len(), 62 * 160);
    }

    #[test]
    fn pause_writes_silence_and_keeps_the_timing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rec = pool()
            .start(spec(dir.path(), 8000, ChannelMode::Stereo, false))
            .expect("starts");
        for k in 0..75 {
            match k {
                25 => rec.pause(),
                50 => rec.resume(),
                _ => {}
            }
            rec.write_frame(&tone(500.0, 8000, k), &tone(500.0, 8000, k));
        }
        let sum = rec.stop().wait_blocking().expect("summary");
        assert_eq!(
            sum.duration,
            Duration::from_millis(1500),
            "paused time is included"
        );
        let (_, samples) = read(&sum.path);
        let left = channel(&samples, 2, 0);
        assert_eq!(left.len(), 12_000);
        let (before, rest) = left.split_at(4000);
        let (paused, after) = rest.split_at(4000);
        assert!(paused.iter().all(|&x| x == 0), "silence while paused");
        assert!(before.iter().any(|&x| x != 0) && after.iter().any(|&x| x != 0));
        assert_eq!(
            after,
            &(50..75)
                .flat_map(|k| tone(500.0, 8000, k))
                .collect::<Vec<_>>()[..]
        );
    }

    #[test]
    fn header_is_valid_while_open_and_a_crash_loses_under_a_second() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rec_pool = pool();
        let mut rec = rec_pool
            .start(spec(dir.path(), 8000, ChannelMode::Stereo, true))
            .expect("starts");
        let path = rec.path().to_path_buf();
        for k in 0..175 {
            rec.write_frame(&tone(500.0, 8000, k), &[]); // 3.5 s
        }
        rec.simulate_crash();
        assert_eq!(rec_pool.active_recordings(), 0);

        // Before any repair: the header written by the last flush is valid on its own.
        let r = hound::WavReader::open(&path).expect("valid header after flush");
        let secs = f64::from(r.duration()) / 8000.0;
        assert!(secs >= 2.5, "header covers {secs} s");
        drop(r);

        let out = repair(&path).expect("repairs");
        assert!(out.duration >= Duration::from_secs(3), "{:?}", out.duration);
        assert!(
            out.duration <= Duration::from_millis(3500),
            "{:?}",
            out.duration
        );
        assert_eq!((out.channels, out.sample_rate), (2, 8000));
        assert_eq!(out.size, std::fs::metadata(&path).expect("meta").len());
        assert_eq!(out.sha256, sha_of(&path));
        let (_, samples) = read(&path);
        assert_eq!(samples.len() as u128, 2 * 8 * out.duration.as_millis());
        let left = channel(&samples, 2, 0);
        assert_eq!(
            left[..8000],
            (0..50)
                .flat_map(|k| tone(500.0, 8000, k))
                .collect::<Vec<_>>()[..]
        );

        let cout = repair(&companion_path(&path)).expect("companion repairs");
        assert!(cout.duration >= Duration::from_secs(3));
        assert_eq!(cout.channels, 1);
    }

    #[test]
    fn repair_truncates_a_partial_trailing_sample_frame() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).expect("create");
        for i in 0..200i16 {
            w.write_sample(i).expect("write");
        }
        w.finalize().expect("finalize");
        // As after a crash: sizes still zero, and 3 bytes of a half-written frame.
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[4..8].copy_from_slice(&0u32.to_le_bytes());
        bytes[40..44].copy_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&[1, 2, 3]);
        std::fs::write(&path, &bytes).expect("write");

        let out = repair(&path).expect("repairs");
        assert_eq!(out.truncated_bytes, 3);
        assert!(out.header_rewritten);
        assert_eq!(out.size, 44 + 400);
        assert_eq!(out.duration, Duration::from_micros(100 * 125));
        let (_, samples) = read(&path);
        assert_eq!(samples, (0..200).collect::<Vec<i16>>());

        let again = repair(&path).expect("idempotent");
        assert!(!again.header_rewritten);
        assert_eq!(again.truncated_bytes, 0);
        assert_eq!(again.sha256, out.sha256);
    }

    #[test]
    fn zero_length_and_garbage_files_are_refused_not_repaired() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty.wav");
        std::fs::write(&empty, b"").expect("write");
        let err = repair(&empty).expect_err("empty file");
        assert!(matches!(err, RecorderError::NotWav { .. }), "{err}");
        assert_eq!(
            std::fs::metadata(&empty).expect("meta").len(),
            0,
            "left untouched"
        );

        let junk = dir.path().join("junk.wav");
        std::fs::write(&junk, b"RIFF\0\0\0\0WAVEjunk\xff\xff\xff\xff").expect("write");
        assert!(matches!(repair(&junk), Err(RecorderError::NotWav { .. })));

        let missing = dir.path().join("missing.wav");
        assert!(matches!(repair(&missing), Err(RecorderError::Io { .. })));
    }

    #[test]
    fn slow_writer_leads_to_counted_drops_not_blocking() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = RecorderPool::new(PoolConfig {
            queue_capacity: 2,
            buffers_per_recording: 4,
        })
        .expect("pool");
        let mut rec = p
            .start(spec(dir.path(), 8000, ChannelMode::Stereo, false))
            .expect("starts");
        let stall = p.stall_writer();
        for k in 0..100 {
            rec.write_frame(&tone(500.0, 8000, k), &[]); // returns although nobody reads
        }
        assert_eq!(
            rec.dropped_frames(),
            98,
            "two fit in the queue, the rest are dropped"
        );
        assert_eq!(p.dropped_frames(), 98);
        drop(stall);
        let sum = rec.stop().wait_blocking().expect("summary");
        assert_eq!(sum.dropped_frames, 98);
        assert_eq!(sum.frames, 100, "dropped frames are written as silence");
        assert_eq!(sum.duration, Duration::from_secs(2));
        let (_, samples) = read(&sum.path);
        let left = channel(&samples, 2, 0);
        assert_eq!(left.len(), 16_000);
        assert_eq!(
            left[..320],
            (0..2)
                .flat_map(|k| tone(500.0, 8000, k))
                .collect::<Vec<_>>()[..]
        );
        assert!(left[320..].iter().all(|&x| x == 0));
    }

    #[test]
    fn many_recordings_share_one_writer_within_their_buffer_budget() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = pool();
        let mut recs: Vec<Recorder> = (0..64)
            .map(|_| {
                p.start(spec(dir.path(), 8000, ChannelMode::Stereo, false))
                    .expect("starts")
            })
            .collect();
        let frame = tone(500.0, 8000, 0);
        for _ in 0..60 {
            for r in &mut recs {
                r.write_frame(&frame, &frame);
            }
        }
        // A recording never allocates more buffers than its budget.
        assert!(recs.iter().all(|r| r.allocated <= 256));
        let pending: Vec<PendingSummary> = recs.into_iter().map(Recorder::stop).collect();
        for s in pending {
            let s = s.wait_blocking().expect("summary");
            assert_eq!(s.frames, 60);
            assert_eq!(s.dropped_frames, 0);
            let (_, samples) = read(&s.path);
            assert_eq!(samples.len(), 60 * 160 * 2);
        }
        assert_eq!(p.active_recordings(), 0);
    }

    #[test]
    fn paced_frames_reuse_one_buffer_once_warm() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = pool();
        let mut rec = p
            .start(spec(dir.path(), 8000, ChannelMode::Stereo, false))
            .expect("starts");
        let frame = tone(500.0, 8000, 0);
        for _ in 0..200 {
            rec.write_frame(&frame, &frame);
            p.sync_writer(); // like the 20 ms pacing: the writer keeps up
        }
        assert_eq!(rec.allocated, 1, "one buffer, recycled 200 times");
        assert_eq!(rec.dropped_frames(), 0);
        let sum = rec.stop().wait_blocking().expect("summary");
        assert_eq!(sum.frames, 200);
    }

    #[tokio::test]
    async fn stop_is_awaited_without_blocking_the_runtime_and_drop_finalises() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = pool();
        let mut rec = p
            .start(spec(dir.path(), 8000, ChannelMode::Stereo, false))
            .expect("starts");
        for k in 0..5 {
            rec.write_frame(&tone(500.0, 8000, k), &[]);
        }
        let sum = rec.stop().await.expect("summary");
        assert_eq!(sum.frames, 5);

        let mut dropped = p
            .start(spec(dir.path(), 8000, ChannelMode::Mono, false))
            .expect("starts");
        let path = dropped.path().to_path_buf();
        for k in 0..5 {
            dropped.write_frame(&tone(500.0, 8000, k), &[]);
        }
        drop(dropped);
        // A later stop on the same writer is answered after the dropped one was finalised.
        let last = p
            .start(spec(dir.path(), 8000, ChannelMode::Mono, false))
            .expect("starts");
        last.stop().await.expect("summary");
        let (_, samples) = read(&path);
        assert_eq!(samples.len(), 5 * 160);
    }
}
