//! WAV prompts, playback and the per-leg play queue (PURE once loaded).
//!
//! * [`PromptCache`] loads WAV files from the media root (see `media/README.md`) with `hound`:
//!   integer PCM of 8, 16, 24 or 32 bits and 32-bit float, any rate, any channel count
//!   (averaged to mono), converted to mono `i16` at the rate the caller asks for with the
//!   [`Resampler`](crate::media::resample::Resampler), and kept as an `Arc<[i16]>` keyed by
//!   (path, rate). **Loading reads the file and must stay off the media path**: the call
//!   actor / IVR interpreter calls [`PromptCache::load`] from a blocking task
//!   (`tokio::task::spawn_blocking`) when it prepares a play action, then hands the `Arc` to
//!   the media engine; frames are only ever cut from memory. Names are confined to the media
//!   root: [`PromptCache::resolve`] rejects absolute paths and `..`, and `load` also refuses a
//!   file whose real path (symbolic links followed) lies outside the root.
//! * [`Playback`] cuts 20 ms frames from a prompt (once or looped, for music on hold);
//!   [`Source`] is a prompt, a [`ToneSource`] or silence; [`PlayQueue`] plays sources in order
//!   and reports which one finished.
//!
//! Frames are whole: a source's last partial frame is padded with silence and the next item
//! starts at the next frame.

use std::collections::{HashMap, VecDeque};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use thiserror::Error;

use super::resample::{ResampleError, resample_block};
use super::tone::ToneSource;

/// Highest sample rate accepted in a file.
pub const MAX_FILE_RATE: u32 = 384_000;

/// Longest prompt accepted: one hour.
pub const MAX_PROMPT_SECONDS: u64 = 3600;

/// Errors of prompt loading; each names the file.
#[derive(Debug, Error)]
pub enum PlayerError {
    /// The name is absolute, empty, or climbs out of the media root.
    #[error("prompt name {name:?} rejected: {reason}")]
    BadName {
        /// The name as given.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// The file's real path (after symbolic links) is outside the media root.
    #[error("prompt {path:?} resolves outside the media root {root:?}")]
    OutsideRoot {
        /// The file.
        path: PathBuf,
        /// The media root.
        root: PathBuf,
    },
    /// No such file.
    #[error("prompt {path:?} not found")]
    NotFound {
        /// The file.
        path: PathBuf,
    },
    /// Reading failed.
    #[error("prompt {path:?}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Not a RIFF/WAVE file, or a damaged one.
    #[error("prompt {path:?} is not a valid WAV file: {reason}")]
    NotWav {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A WAV encoding other than integer PCM 8/16/24/32 or 32-bit float.
    #[error("prompt {path:?} has an unsupported format: {reason}")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// The format found.
        reason: String,
    },
    /// Longer than [`MAX_PROMPT_SECONDS`].
    #[error("prompt {path:?} is {seconds} s long (at most {MAX_PROMPT_SECONDS} s)")]
    TooLong {
        /// The file.
        path: PathBuf,
        /// Its length.
        seconds: u64,
    },
    /// The file's or the requested rate cannot be converted.
    #[error("prompt {path:?}: {source}")]
    Rate {
        /// The file.
        path: PathBuf,
        /// The resampler's complaint.
        source: ResampleError,
    },
}

/// Cache key (resolved path, rate) to decoded samples.
type PromptMap = HashMap<(PathBuf, u32), Arc<[i16]>>;

/// Decoded prompts, shared by every call (`Arc<PromptCache>`).
#[derive(Debug)]
pub struct PromptCache {
    root: PathBuf,
    entries: Mutex<PromptMap>,
}

impl PromptCache {
    /// A cache of the prompts under `media_root`.
    pub fn new(media_root: impl Into<PathBuf>) -> Self {
        Self {
            root: media_root.into(),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The media root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of prompt `name` under the media root (lexical check only: relative, no `..`).
    pub fn resolve(&self, name: impl AsRef<Path>) -> Result<PathBuf, PlayerError> {
        let name = name.as_ref();
        let bad = |reason| PlayerError::BadName {
            name: name.display().to_string(),
            reason,
        };
        if name.as_os_str().is_empty() {
            return Err(bad("empty"));
        }
        let mut normal = 0;
        for c in name.components() {
            match c {
                Component::Normal(_) => normal += 1,
                Component::CurDir => {}
                Component::ParentDir => return Err(bad("`..` is not allowed")),
                Component::RootDir | Component::Prefix(_) => {
                    return Err(bad(
                        "absolute paths are not allowed; names are relative to the media root",
                    ));
                }
            }
        }
        if normal == 0 {
            return Err(bad("names no file"));
        }
        Ok(self.root.join(name))
    }

    /// Prompt `name` (relative to the media root) as mono `i16` at `rate` Hz, decoded on first
    /// use and cached. Reads the file: call it off the media path.
    pub fn load(&self, name: &Path, rate: u32) -> Result<Arc<[i16]>, PlayerError> {
        let path = self.resolve(name)?;
        let key = (path.clone(), rate);
        if let Some(hit) = self.lock().get(&key) {
            return Ok(hit.clone());
        }
        // Decode without holding the lock; a concurrent load of the same prompt is harmless.
        self.confine(&path)?;
        let samples: Arc<[i16]> = decode(&path, rate)?.into();
        Ok(self.lock().entry(key).or_insert(samples).clone())
    }

    /// Number of cached (prompt, rate) pairs.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every cached prompt (after the files changed); playbacks keep their `Arc`.
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PromptMap> {
        // A panic elsewhere while holding the lock leaves a consistent map: keep using it.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Refuses a file whose real path leaves the media root (a symbolic link pointing out).
    fn confine(&self, path: &Path) -> Result<(), PlayerError> {
        let io = |path: &Path, e: std::io::Error| {
            if e.kind() == std::io::ErrorKind::NotFound {
                PlayerError::NotFound {
                    path: path.to_owned(),
                }
            } else {
                PlayerError::Io {
                    path: path.to_owned(),
                    source: e,
                }
            }
        };
        let root = self.root.canonicalize().map_err(|e| io(&self.root, e))?;
        let real = path.canonicalize().map_err(|e| io(path, e))?;
        if real.starts_with(&root) {
            Ok(())
        } else {
            Err(PlayerError::OutsideRoot {
                path: path.to_owned(),
                root,
            })
        }
    }
}

/// Reads `path` and returns it as mono `i16` at `rate`.
fn decode(path: &Path, rate: u32) -> Result<Vec<i16>, PlayerError> {
    let p = || path.to_owned();
    let reader = hound::WavReader::open(path).map_err(|e| wav_error(path, e))?;
    let spec = reader.spec();
    if !(1..=MAX_FILE_RATE).contains(&spec.sample_rate) {
        return Err(PlayerError::Unsupported {
            path: p(),
            reason: format!("sample rate {} Hz", spec.sample_rate),
        });
    }
    if spec.channels == 0 {
        return Err(PlayerError::NotWav {
            path: p(),
            reason: "zero channels".into(),
        });
    }
    let seconds = u64::from(reader.duration()) / u64::from(spec.sample_rate);
    if seconds > MAX_PROMPT_SECONDS {
        return Err(PlayerError::TooLong { path: p(), seconds });
    }
    let channels = usize::from(spec.channels);
    let frames = reader.duration() as usize;
    // The header's length is a hint, not a promise: cap what it makes us reserve.
    let mut mono = Vec::with_capacity(frames.min(1 << 22));
    let mut acc = 0.0f32;
    let mut n = 0;
    let mut push = |v: f32| {
        acc += v;
        n += 1;
        if n == channels {
            let m = acc / channels as f32;
            mono.push(m.round().clamp(-32768.0, 32767.0) as i16);
            acc = 0.0;
            n = 0;
        }
    };
    match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
            // Scale to the 16-bit range.
            let scale = 2f32.powi(16 - i32::from(bits));
            for s in reader.into_samples::<i32>() {
                push(s.map_err(|e| wav_error(path, e))? as f32 * scale);
            }
        }
        (hound::SampleFormat::Float, 32) => {
            for s in reader.into_samples::<f32>() {
                let v = s.map_err(|e| wav_error(path, e))?;
                push(if v.is_finite() { v * 32768.0 } else { 0.0 });
            }
        }
        (format, bits) => {
            return Err(PlayerError::Unsupported {
                path: p(),
                reason: format!("{bits}-bit {format:?}"),
            });
        }
    }
    resample_block(spec.sample_rate, rate, &mono)
        .map_err(|source| PlayerError::Rate { path: p(), source })
}

fn wav_error(path: &Path, e: hound::Error) -> PlayerError {
    let path = path.to_owned();
    match e {
        hound::Error::IoError(e) if e.kind() == std::io::ErrorKind::NotFound => {
            PlayerError::NotFound { path }
        }
        // A truncated data chunk shows up as an unexpected end of file.
        hound::Error::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            PlayerError::NotWav {
                path,
                reason: "truncated".into(),
            }
        }
        hound::Error::IoError(source) => PlayerError::Io { path, source },
        hound::Error::Unsupported => PlayerError::Unsupported {
            path,
            reason: "not integer PCM or IEEE float (compressed or µ-law WAV?)".into(),
        },
        other => PlayerError::NotWav {
            path,
            reason: other.to_string(),
        },
    }
}

/// Plays one prompt frame by frame.
#[derive(Debug, Clone)]
pub struct Playback {
    samples: Arc<[i16]>,
    pos: usize,
    stopped: bool,
    /// Start again at the end (music on hold).
    pub looped: bool,
    /// The driver may cut this prompt short when the caller presses a key or speaks.
    pub barge_in: bool,
}

impl Playback {
    /// Plays `samples` once, without barge-in.
    pub fn new(samples: Arc<[i16]>) -> Self {
        Self {
            samples,
            pos: 0,
            stopped: false,
            looped: false,
            barge_in: false,
        }
    }

    /// Plays `samples` in a loop (music on hold).
    pub fn looped(samples: Arc<[i16]>) -> Self {
        Self {
            looped: true,
            ..Self::new(samples)
        }
    }

    /// Stops: the next frame is silent and reports the end.
    pub fn stop(&mut self) {
        self.stopped = true;
    }

    /// True once stopped or (not looped) played to the end. An empty prompt is finished.
    pub fn is_finished(&self) -> bool {
        self.stopped || self.samples.is_empty() || (!self.looped && self.pos >= self.samples.len())
    }

    /// Samples played so far (within the current loop).
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Fills `out` with the next samples. Returns false, `out` silent, if the playback had
    /// already finished before this frame; the last partial frame is padded with silence.
    pub fn next_frame(&mut self, out: &mut [i16]) -> bool {
        if self.is_finished() {
            out.fill(0);
            return false;
        }
        let mut i = 0;
        while i < out.len() {
            if self.pos >= self.samples.len() {
                if !self.looped {
                    out[i..].fill(0);
                    break;
                }
                self.pos = 0;
            }
            let n = (self.samples.len() - self.pos).min(out.len() - i);
            out[i..i + n].copy_from_slice(&self.samples[self.pos..self.pos + n]);
            self.pos += n;
            i += n;
        }
        true
    }
}

/// Something a leg can play.
#[derive(Debug, Clone)]
pub enum Source {
    /// A tone.
    Tone(ToneSource),
    /// A prompt.
    Prompt(Playback),
    /// This many frames of silence.
    Silence(u32),
}

impl Source {
    /// True once the source has nothing more to play.
    pub fn is_finished(&self) -> bool {
        match self {
            Source::Tone(t) => t.is_finished(),
            Source::Prompt(p) => p.is_finished(),
            Source::Silence(n) => *n == 0,
        }
    }

    /// Fills `out` with the next frame; false (and silence) when already finished.
    pub fn next_frame(&mut self, out: &mut [i16]) -> bool {
        match self {
            Source::Tone(t) => t.next_frame(out),
            Source::Prompt(p) => p.next_frame(out),
            Source::Silence(n) => {
                out.fill(0);
                if *n == 0 {
                    return false;
                }
                *n -= 1;
                true
            }
        }
    }

    /// True for sources a barge-in removes: prompts with `barge_in` set, and silences.
    pub fn interruptible(&self) -> bool {
        match self {
            Source::Tone(_) => false,
            Source::Prompt(p) => p.barge_in,
            Source::Silence(_) => true,
        }
    }
}

/// Identifies one item of a [`PlayQueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemId(pub u64);

/// Report that an item played to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// The item.
    pub id: ItemId,
}

/// Sources played one after the other, one whole frame at a time.
#[derive(Debug, Default)]
pub struct PlayQueue {
    items: VecDeque<(ItemId, Source)>,
    finished: VecDeque<ItemId>,
    next_id: u64,
}

impl PlayQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `source`; returns the id its [`Finished`] report will carry.
    pub fn push(&mut self, source: Source) -> ItemId {
        let id = ItemId(self.next_id);
        self.next_id += 1;
        self.items.push_back((id, source));
        id
    }

    /// Items waiting or playing.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when nothing is queued (frames are silent).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The item playing now.
    pub fn current(&self) -> Option<ItemId> {
        self.items.front().map(|(id, _)| *id)
    }

    /// The source playing now (to stop it or check its `barge_in`).
    pub fn current_mut(&mut self) -> Option<&mut Source> {
        self.items.front_mut().map(|(_, s)| s)
    }

    /// Fills `out` from the head item (silence when the queue is empty) and reports an item
    /// that finished. An item ends in the frame holding its last samples; the next item starts
    /// with the next frame. At most one report per call: when several items end in one frame
    /// (empty or stopped ones), the others come with the next calls.
    pub fn next_frame(&mut self, out: &mut [i16]) -> Option<Finished> {
        let mut played = false;
        while let Some((id, source)) = self.items.front_mut() {
            if source.is_finished() {
                // Empty, stopped, or ended: report it, play the next one.
                self.finished.push_back(*id);
                self.items.pop_front();
                continue;
            }
            played = source.next_frame(out);
            if source.is_finished() {
                self.finished.push_back(*id);
                self.items.pop_front();
            }
            break;
        }
        if !played {
            out.fill(0);
        }
        self.finished.pop_front().map(|id| Finished { id })
    }

    /// Removes the items a barge-in cuts short: the run of interruptible items at the head
    /// (prompts with `barge_in`, silences). Returns their ids; they are not reported again.
    pub fn barge_in(&mut self) -> Vec<ItemId> {
        let mut cut = Vec::new();
        while let Some((id, source)) = self.items.front() {
            if !source.interruptible() {
                break;
            }
            cut.push(*id);
            self.items.pop_front();
        }
        cut
    }

    /// Removes every item (hang-up, new menu). Returns their ids; they are not reported again.
    pub fn clear(&mut self) -> Vec<ItemId> {
        self.finished.clear();
        self.items.drain(..).map(|(id, _)| id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::tone::{ToneKind, ToneRegion};
    use std::f64::consts::PI;

    fn goertzel_amplitude(x: &[i16], rate: u32, freq: f64) -> f64 {
        let c = 2.0 * (2.0 * PI * freq / f64::from(rate)).cos();
        let (mut s1, mut s2) = (0.0, 0.0);
        for &v in x {
            let s = f64::from(v) + c * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        2.0 * (s1 * s1 + s2 * s2 - c * s1 * s2).max(0.0).sqrt() / x.len() as f64
    }

    fn write_wav(
        path: &Path,
        rate: u32,
        channels: u16,
        bits: u16,
        float: bool,
        seconds: f64,
        amp: f64,
    ) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: if float {
                hound::SampleFormat::Float
            } else {
                hound::SampleFormat::Int
            },
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        let n = (seconds * f64::from(rate)) as usize;
        for i in 0..n {
            let v = amp * (2.0 * PI * 1000.0 * i as f64 / f64::from(rate)).sin();
            for ch in 0..channels {
                // The second channel is silent: the downmix halves the level.
                let v = if ch == 0 { v } else { 0.0 };
                if float {
                    w.write_sample(v as f32).unwrap();
                } else {
                    let full = f64::from(1u32 << (bits - 1)) - 1.0;
                    w.write_sample((v * full).round() as i32).unwrap();
                }
            }
        }
        w.finalize().unwrap();
    }

    #[test]
    fn loads_every_pcm_depth_and_float_at_the_requested_rate() {
        let dir = tempfile::tempdir().unwrap();
        let cache = PromptCache::new(dir.path());
        for (bits, float) in [
            (8, false),
            (16, false),
            (24, false),
            (32, false),
            (32, true),
        ] {
            for (rate, channels) in [(8000, 1), (44100, 2), (48000, 1)] {
                let name = format!("t{bits}{float}{rate}{channels}.wav");
                write_wav(
                    &dir.path().join(&name),
                    rate,
                    channels,
                    bits,
                    float,
                    0.5,
                    0.5,
                );
                for want in [8000, 16000] {
                    let pcm = cache.load(Path::new(&name), want).unwrap();
                    assert_eq!(pcm.len(), (want / 2) as usize, "{name} at {want}");
                    let mid = &pcm[pcm.len() / 4..pcm.len() * 3 / 4];
                    let a = goertzel_amplitude(mid, want, 1000.0) / 32768.0;
                    let expect = 0.5 / f64::from(channels);
                    assert!((a - expect).abs() < 0.02, "{name} at {want}: amplitude {a}");
                }
            }
        }
    }

    #[test]
    fn cache_returns_the_same_samples_per_path_and_rate() {
        let dir = tempfile::tempdir().unwrap();
        write_wav(&dir.path().join("a.wav"), 8000, 1, 16, false, 0.1, 0.3);
        let cache = PromptCache::new(dir.path());
        let a = cache.load(Path::new("a.wav"), 8000).unwrap();
        let b = cache.load(Path::new("./a.wav"), 8000).unwrap();
        let c = cache.load(Path::new("a.wav"), 16000).unwrap();
        assert!(Arc::ptr_eq(
            &a,
            &cache.load(Path::new("a.wav"), 8000).unwrap()
        ));
        assert_eq!(a, b);
        assert_eq!(c.len(), 2 * a.len());
        assert!(cache.len() >= 2);
    }

    #[test]
    fn names_are_confined_to_the_media_root() {
        let cache = PromptCache::new("/srv/media");
        assert_eq!(
            cache.resolve("ivr/welcome.wav").unwrap(),
            PathBuf::from("/srv/media/ivr/welcome.wav")
        );
        for bad in ["/etc/passwd", "../secret.wav", "ivr/../../x.wav", "", "."] {
            let err = cache.resolve(bad).unwrap_err();
            assert!(matches!(err, PlayerError::BadName { .. }), "{bad}: {err}");
        }
        assert!(
            cache
                .resolve("/etc/passwd")
                .unwrap_err()
                .to_string()
                .contains("absolute")
        );
    }

    #[cfg(unix)]
    #[test]
    fn symlink_out_of_the_root_is_refused() {
        let outside = tempfile::tempdir().unwrap();
        write_wav(&outside.path().join("x.wav"), 8000, 1, 16, false, 0.1, 0.3);
        let root = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path().join("x.wav"), root.path().join("x.wav"))
            .unwrap();
        let cache = PromptCache::new(root.path());
        let err = cache.load(Path::new("x.wav"), 8000).unwrap_err();
        assert!(matches!(err, PlayerError::OutsideRoot { .. }), "{err}");
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cache = PromptCache::new(dir.path());
        let err = cache.load(Path::new("missing.wav"), 8000).unwrap_err();
        assert!(matches!(err, PlayerError::NotFound { .. }));
        assert!(err.to_string().contains("missing.wav"));

        std::fs::write(
            dir.path().join("text.wav"),
            b"this is not a wave file at all",
        )
        .unwrap();
        let err = cache.load(Path::new("text.wav"), 8000).unwrap_err();
        assert!(matches!(err, PlayerError::NotWav { .. }), "{err}");
        assert!(err.to_string().contains("text.wav"));

        // µ-law (format tag 7), as telephony systems like to store prompts.
        std::fs::write(dir.path().join("odd.wav"), wav_header(7, 8000, 8, 160)).unwrap();
        let err = cache.load(Path::new("odd.wav"), 8000).unwrap_err();
        assert!(matches!(err, PlayerError::Unsupported { .. }), "{err}");
        assert!(err.to_string().contains("odd.wav"));
    }

    /// A canonical 44-byte header with `data_len` bytes of zeros (capped at 320) after it.
    fn wav_header(format: u16, rate: u32, bits: u16, data_len: u32) -> Vec<u8> {
        let block = bits / 8;
        let mut wav = Vec::new();
        wav.extend_from_slice(b"RIFF");
        wav.extend_from_slice(&(36 + data_len).to_le_bytes());
        wav.extend_from_slice(b"WAVEfmt ");
        wav.extend_from_slice(&16u32.to_le_bytes());
        wav.extend_from_slice(&format.to_le_bytes());
        wav.extend_from_slice(&1u16.to_le_bytes()); // mono
        wav.extend_from_slice(&rate.to_le_bytes());
        wav.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
        wav.extend_from_slice(&block.to_le_bytes());
        wav.extend_from_slice(&bits.to_le_bytes());
        wav.extend_from_slice(b"data");
        wav.extend_from_slice(&data_len.to_le_bytes());
        wav.resize(44 + data_len.min(320) as usize, 0);
        wav
    }

    #[test]
    fn over_an_hour_is_refused_from_the_header() {
        let dir = tempfile::tempdir().unwrap();
        // A header claiming 2 h of 8 kHz audio, without the data: refused before reading it.
        let wav = wav_header(1, 8000, 16, 2 * 3600 * 8000 * 2);
        std::fs::write(dir.path().join("long.wav"), wav).unwrap();
        let err = PromptCache::new(dir.path())
            .load(Path::new("long.wav"), 8000)
            .unwrap_err();
        assert!(
            matches!(err, PlayerError::TooLong { seconds: 7200, .. }),
            "{err}"
        );
    }

    #[test]
    fn playback_pads_the_last_frame_and_loops_for_music_on_hold() {
        let samples: Arc<[i16]> = (1..=250).collect::<Vec<i16>>().into();
        let mut p = Playback::new(samples.clone());
        let mut f = [0i16; 160];
        assert!(p.next_frame(&mut f));
        assert_eq!(f[159], 160);
        assert!(p.next_frame(&mut f));
        assert_eq!(f[89], 250);
        assert!(f[90..].iter().all(|&s| s == 0));
        assert!(p.is_finished());
        assert!(!p.next_frame(&mut f));

        let mut moh = Playback::looped(samples);
        moh.next_frame(&mut f);
        moh.next_frame(&mut f);
        assert_eq!(&f[89..92], &[250, 1, 2]);
        for _ in 0..100 {
            assert!(moh.next_frame(&mut f));
        }
        moh.stop();
        assert!(!moh.next_frame(&mut f));
        assert!(f.iter().all(|&s| s == 0));
    }

    #[test]
    fn queue_plays_in_order_and_reports_each_end() {
        let mut q = PlayQueue::new();
        let prompt = q.push(Source::Prompt(Playback::new(vec![7i16; 200].into())));
        let gap = q.push(Source::Silence(2));
        let beep = q.push(Source::Tone(
            ToneSource::new(ToneKind::Beep, ToneRegion::Us, 8000).unwrap(),
        ));
        let mut f = [0i16; 160];
        assert_eq!(q.next_frame(&mut f), None);
        assert!(f.iter().all(|&s| s == 7));
        assert_eq!(q.next_frame(&mut f), Some(Finished { id: prompt }));
        assert_eq!(f[39], 7);
        assert_eq!(f[40], 0);
        assert_eq!(q.next_frame(&mut f), None);
        assert_eq!(q.next_frame(&mut f), Some(Finished { id: gap }));
        let mut reports = Vec::new();
        let mut tone_frames = 0;
        for _ in 0..20 {
            if let Some(r) = q.next_frame(&mut f) {
                reports.push(r);
            }
            if f.iter().any(|&s| s != 0) {
                tone_frames += 1;
            }
        }
        assert_eq!(reports, vec![Finished { id: beep }]);
        assert_eq!(tone_frames, 13); // 250 ms
        assert!(q.is_empty());
    }

    #[test]
    fn empty_items_are_reported_one_per_frame_and_do_not_leave_gaps() {
        let mut q = PlayQueue::new();
        let a = q.push(Source::Prompt(Playback::new(Vec::new().into())));
        let b = q.push(Source::Silence(0));
        let c = q.push(Source::Prompt(Playback::new(vec![5i16; 160].into())));
        let mut f = [0i16; 160];
        assert_eq!(q.next_frame(&mut f), Some(Finished { id: a }));
        assert!(f.iter().all(|&s| s == 5)); // c already plays
        assert_eq!(q.next_frame(&mut f), Some(Finished { id: b }));
        assert_eq!(q.next_frame(&mut f), Some(Finished { id: c }));
        assert_eq!(q.next_frame(&mut f), None);
    }

    #[test]
    fn barge_in_cuts_interruptible_prompts_but_not_the_beep() {
        let mut q = PlayQueue::new();
        let mut menu = Playback::new(vec![1i16; 8000].into());
        menu.barge_in = true;
        let a = q.push(Source::Prompt(menu.clone()));
        let b = q.push(Source::Silence(5));
        let c = q.push(Source::Prompt(menu));
        let beep = q.push(Source::Tone(
            ToneSource::new(ToneKind::Beep, ToneRegion::Us, 8000).unwrap(),
        ));
        let mut f = [0i16; 160];
        q.next_frame(&mut f);
        assert_eq!(q.barge_in(), vec![a, b, c]);
        assert_eq!(q.current(), Some(beep));
        assert!(q.barge_in().is_empty());
        assert_eq!(q.clear(), vec![beep]);
    }

    #[test]
    fn committed_assets_load() {
        let cache = PromptCache::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("media"));
        let moh = cache.load(Path::new("moh.wav"), 8000).unwrap();
        assert!(
            (8000 * 10..=8000 * 30).contains(&moh.len()),
            "{} samples",
            moh.len()
        );
        let beep = cache.load(Path::new("beep.wav"), 16000).unwrap();
        assert_eq!(beep.len(), 4000);
        assert!(goertzel_amplitude(&beep[1000..3000], 16000, 1000.0) > 4000.0);
    }

    #[test]
    fn block_resampling_is_time_aligned() {
        // An impulse keeps its place (in time) through 8k -> 16k.
        let mut x = vec![0i16; 800];
        x[400] = 10000;
        let y = resample_block(8000, 16000, &x).unwrap();
        assert_eq!(y.len(), 1600);
        let peak = y
            .iter()
            .enumerate()
            .max_by_key(|(_, v)| **v)
            .map(|(i, _)| i)
            .unwrap();
        assert!(peak.abs_diff(800) <= 1, "peak at {peak}");
    }
}
