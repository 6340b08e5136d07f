//! The WAV files themselves: creating one with its header on disk, reading a header back, fsync
//! and SHA-256 of a finished file, and [`repair`] of a file left open by a crash (RIFF and `data`
//! chunk sizes rewritten from the file's length, a partial sample frame cut).
//!
//! RIFF layout as hound writes it: `RIFF <size> WAVE`, a 16-byte PCM `fmt ` chunk, then the
//! `data` chunk, last in the file.

use super::*;

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

pub(super) type Wav = hound::WavWriter<BufWriter<File>>;

/// Where the parts of a WAV header are.
pub(super) struct WavLayout {
    pub(super) channels: u16,
    pub(super) sample_rate: u32,
    pub(super) block_align: u16,
    pub(super) riff_size: u32,
    pub(super) data_size: u32,
    /// Offset of the first sample byte.
    pub(super) data_start: u64,
}

/// Creates a new WAV file (never overwriting one) and puts its header on disk.
pub(super) fn create_wav(
    path: &Path,
    channels: u16,
    sample_rate: u32,
) -> Result<Wav, RecorderError> {
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

pub(super) fn sync_and_hash(path: &Path) -> Result<(u64, String), RecorderError> {
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
pub(super) fn hash_file(file: &mut File) -> io::Result<String> {
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
pub(super) fn parse_header(head: &[u8]) -> Result<WavLayout, String> {
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
