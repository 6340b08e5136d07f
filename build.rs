//! Rebuilds when a migration is added or changed (sqlx embeds `migrations/` at compile time),
//! and embeds the demo dialplan and media (`dialplans/`, `media/`) so that an installed binary
//! run from any directory has them (`src/assets.rs` writes them under the data directory).
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let mut out = String::new();
    for (name, dir) in [("DIALPLANS", "dialplans"), ("MEDIA", "media")] {
        println!("cargo:rerun-if-changed={dir}");
        let mut files = Vec::new();
        collect(&root.join(dir), Path::new(""), &mut files);
        files.sort();
        out.push_str(&format!(
            "/// The files of `{dir}/` at build time: (path inside it, contents).\npub const {name}: &[(&str, &[u8])] = &[\n"
        ));
        for rel in files {
            let abs = root.join(dir).join(&rel);
            println!("cargo:rerun-if-changed={}", abs.display());
            out.push_str(&format!(
                "    ({:?}, include_bytes!({:?})),\n",
                rel.to_string_lossy().replace('\\', "/"),
                abs.display().to_string()
            ));
        }
        out.push_str("];\n");
    }
    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("assets.rs");
    std::fs::write(dest, out).expect("OUT_DIR is writable");
}

/// Every file under `dir` (recursively), as paths relative to the top.
fn collect(dir: &Path, rel: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let rel = rel.join(entry.file_name());
        if path.is_dir() {
            collect(&path, &rel, files);
        } else {
            files.push(rel);
        }
    }
}
