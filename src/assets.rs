//! The demo dialplan and media the binary carries (DRIVER: it writes files), so that an
//! installed `switchboard serve` works from any directory.
//!
//! `ivr.dialplans` and `media.dir` default to `dialplans` and `media`, relative to the working
//! directory: in a checkout those are the editable demo files. Where a default path does not
//! exist (the binary runs elsewhere), the embedded copy is written once under the data
//! directory (`<data_dir>/dialplans`, `<data_dir>/media`) and used from there; an operator
//! edits it in place (it is never overwritten). A path set in the configuration is used as
//! given, and a missing one is an error naming the path and its configuration key.

use std::io;
use std::path::{Path, PathBuf};

use crate::config::Settings;

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// The default `ivr.dialplans`.
pub const DEFAULT_DIALPLANS: &str = "dialplans";
/// The default `media.dir`.
pub const DEFAULT_MEDIA: &str = "media";

/// Why the dialplan or media directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    #[error("{key} = {path:?}: {source} (set `{key}` in the config file to an existing path)")]
    Missing {
        key: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("cannot write the demo {what} to {path:?}: {source}")]
    Install {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

/// Settles `settings.ivr.dialplans` and `settings.media.dir` on paths that exist, installing
/// the embedded demo under the data directory where a default path is absent.
pub fn resolve(settings: &mut Settings) -> Result<(), AssetError> {
    settings.ivr.dialplans = resolve_one(
        &settings.ivr.dialplans,
        DEFAULT_DIALPLANS,
        "ivr.dialplans",
        &settings.data_dir,
        DIALPLANS,
    )?;
    settings.media.dir = resolve_one(
        &settings.media.dir,
        DEFAULT_MEDIA,
        "media.dir",
        &settings.data_dir,
        MEDIA,
    )?;
    Ok(())
}

fn resolve_one(
    path: &Path,
    default: &'static str,
    key: &'static str,
    data_dir: &Path,
    files: &[(&str, &[u8])],
) -> Result<PathBuf, AssetError> {
    match std::fs::metadata(path) {
        Ok(_) => return Ok(path.to_owned()),
        Err(source) if path != Path::new(default) => {
            return Err(AssetError::Missing {
                key,
                path: path.to_owned(),
                source,
            });
        }
        Err(_) => {}
    }
    let installed = data_dir.join(default);
    if !installed.exists() {
        install(&installed, files).map_err(|source| AssetError::Install {
            what: default,
            path: installed.clone(),
            source,
        })?;
        tracing::info!(path = %installed.display(), key, "installed the demo {default} (no ./{default} here)");
    }
    Ok(installed)
}

/// Writes `files` under `dir` (created), through a temporary directory renamed into place so
/// that a crash never leaves a half-written demo behind.
fn install(dir: &Path, files: &[(&str, &[u8])]) -> io::Result<()> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let tmp = parent.join(format!(
        ".{}.tmp-{}",
        dir.file_name().and_then(|n| n.to_str()).unwrap_or("assets"),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    for (rel, bytes) in files {
        let path = tmp.join(rel);
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p)?;
        }
        std::fs::write(&path, bytes)?;
    }
    std::fs::rename(&tmp, dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_plan_and_prompts_are_embedded() {
        assert!(DIALPLANS.iter().any(|(p, _)| *p == "default.toml"));
        assert!(MEDIA.iter().any(|(p, _)| p.starts_with("prompts/")));
    }

    #[test]
    fn a_missing_default_is_installed_under_the_data_directory_once() {
        let data = tempfile::tempdir().expect("tempdir");
        let files: &[(&str, &[u8])] = &[("a.toml", b"x"), ("sub/b.wav", b"y")];
        // A default path that does not exist in the working directory.
        let got = resolve_one(
            Path::new("definitely-not-here-dialplans"),
            "definitely-not-here-dialplans",
            "ivr.dialplans",
            data.path(),
            files,
        )
        .expect("installed");
        assert_eq!(got, data.path().join("definitely-not-here-dialplans"));
        assert_eq!(std::fs::read(got.join("sub/b.wav")).expect("written"), b"y");
        std::fs::write(got.join("a.toml"), b"edited").expect("edit");
        let again = resolve_one(
            Path::new("definitely-not-here-dialplans"),
            "definitely-not-here-dialplans",
            "ivr.dialplans",
            data.path(),
            files,
        )
        .expect("found");
        assert_eq!(
            std::fs::read(again.join("a.toml")).expect("kept"),
            b"edited",
            "an operator's edits are never overwritten"
        );
    }

    #[test]
    fn a_configured_path_that_is_missing_names_its_key() {
        let data = tempfile::tempdir().expect("tempdir");
        let err = resolve_one(
            &data.path().join("plans"),
            DEFAULT_DIALPLANS,
            "ivr.dialplans",
            data.path(),
            DIALPLANS,
        )
        .expect_err("missing");
        let text = err.to_string();
        assert!(text.contains("ivr.dialplans"), "{text}");
        assert!(text.contains("plans"), "{text}");
    }
}
