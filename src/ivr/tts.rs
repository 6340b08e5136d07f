//! Text to speech through espeak-ng: text → 16-bit mono WAV, cached by content under the data
//! directory, so a prompt is synthesised once.
//!
//! The text goes to espeak-ng on stdin (`--stdin`), never as an argument, and the voice is
//! checked against `[A-Za-z0-9+_-]{1,32}`, so nothing the dialplan (or a webhook) writes can
//! become an option. The cache file is named by `sha256(voice, NUL, text)`; it is written under
//! a temporary name and renamed, so a reader never sees half a file, and a hit returns without
//! running espeak-ng.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Why text could not be spoken.
#[derive(Debug, thiserror::Error)]
pub enum TtsError {
    #[error("espeak-ng is not installed (apt-get install espeak-ng): `say` steps need it")]
    NotInstalled,
    #[error("espeak-ng failed: {0}")]
    Failed(String),
    #[error("text to speech I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// The voice used when a step names none.
pub const DEFAULT_VOICE: &str = "en-us";

/// How long one synthesis may take before espeak-ng is killed.
pub const SYNTH_TIMEOUT: Duration = Duration::from_secs(10);

/// The program run by [`synthesize`] and [`available`].
const PROGRAM: &str = "espeak-ng";

/// Synthesises `text` (with `voice`, e.g. `en-us`) and returns the WAV's path in `cache_dir`.
pub async fn synthesize(
    text: &str,
    voice: Option<&str>,
    cache_dir: &Path,
) -> Result<PathBuf, TtsError> {
    // A burst of callers reaching a `say` at once must not start a burst of espeak-ng
    // processes on the media cores.
    static RUNNING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_RUNNING);
    let _permit = RUNNING.acquire().await.ok();
    synthesize_with(Path::new(PROGRAM), text, voice, cache_dir, SYNTH_TIMEOUT).await
}

/// espeak-ng processes run at once; more `say` steps wait their turn.
pub const MAX_RUNNING: usize = 2;

/// [`synthesize`] with the program and the time limit given: `program` is run as espeak-ng
/// (`--stdin -v VOICE -w FILE`). Tests use it to prove the missing-program and cache paths.
pub async fn synthesize_with(
    program: &Path,
    text: &str,
    voice: Option<&str>,
    cache_dir: &Path,
    timeout: Duration,
) -> Result<PathBuf, TtsError> {
    let voice = voice.unwrap_or(DEFAULT_VOICE);
    check_voice(voice)?;
    let path = cache_dir.join(cache_name(voice, text));
    if tokio::fs::try_exists(&path).await? {
        return Ok(path);
    }
    tokio::fs::create_dir_all(cache_dir).await?;
    let tmp = temp_name(&path);
    let result = run(program, text, voice, &tmp, timeout).await;
    match result {
        Ok(()) => match tokio::fs::rename(&tmp, &path).await {
            Ok(()) => Ok(path),
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                Err(e.into())
            }
        },
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            Err(e)
        }
    }
}

/// Whether espeak-ng can be run here.
pub fn available() -> bool {
    std::process::Command::new(PROGRAM)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The cache file name of `text` spoken with `voice`: hex sha256 of voice, NUL, text.
pub fn cache_name(voice: &str, text: &str) -> String {
    let mut h = Sha256::new();
    h.update(voice.as_bytes());
    h.update([0u8]);
    h.update(text.as_bytes());
    format!("{}.wav", hex::encode(h.finalize()))
}

/// A voice name must be 1–32 characters of `[A-Za-z0-9+_-]` (espeak-ng names such as `en-us`,
/// `en+f3`), not starting with `-`, so it can never be read as an option or a path.
fn check_voice(voice: &str) -> Result<(), TtsError> {
    let ok = (1..=32).contains(&voice.len())
        && voice
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'_' | b'-'))
        && !voice.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(TtsError::Failed(format!(
            "invalid voice {voice:?}: expected 1-32 characters of A-Z a-z 0-9 + _ - (e.g. en-us)"
        )))
    }
}

/// A fresh name next to `path`, unique within and across processes.
fn temp_name(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{}.{n}.tmp", std::process::id()));
    PathBuf::from(name)
}

/// Runs `program` once, writing the WAV to `out`; kills it after `timeout`.
async fn run(
    program: &Path,
    text: &str,
    voice: &str,
    out: &Path,
    timeout: Duration,
) -> Result<(), TtsError> {
    let mut child = tokio::process::Command::new(program)
        .arg("--stdin")
        .arg("-v")
        .arg(voice)
        .arg("-w")
        .arg(out)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => TtsError::NotInstalled,
            _ => TtsError::Io(e),
        })?;
    let stdin = child.stdin.take();
    let stderr = child.stderr.take();
    let feed = async move {
        if let Some(mut stdin) = stdin {
            // A program that exits without reading is reported by its status, not here.
            let _ = stdin.write_all(text.as_bytes()).await;
            let _ = stdin.shutdown().await;
        }
    };
    let drain = async move {
        let mut buf = Vec::new();
        if let Some(stderr) = stderr {
            // At most 64 KiB of diagnostics are kept.
            let _ = stderr.take(64 * 1024).read_to_end(&mut buf).await;
        }
        buf
    };
    let work = async {
        let ((), stderr, status) = tokio::join!(feed, drain, child.wait());
        status.map(|status| (status, stderr))
    };
    let (status, stderr) = match tokio::time::timeout(timeout, work).await {
        Ok(done) => done?,
        Err(_) => {
            // Killed and reaped before the caller removes the temporary file.
            let _ = child.kill().await;
            return Err(TtsError::Failed(format!(
                "no result after {timeout:?}; the process was killed"
            )));
        }
    };
    if !status.success() {
        let stderr = String::from_utf8_lossy(&stderr);
        let stderr = stderr.trim();
        return Err(TtsError::Failed(if stderr.is_empty() {
            format!("exited with {status}")
        } else {
            format!("{stderr} ({status})")
        }));
    }
    match tokio::fs::metadata(out).await {
        Ok(m) if m.len() > 44 => Ok(()),
        _ => Err(TtsError::Failed("produced no audio".to_owned())),
    }
}
