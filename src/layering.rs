//! Tests of the layering rules (ARCHITECTURE.md): which module may import which. They read the
//! source files under `src/` and fail on a forbidden `crate::…` path outside comments, so a new
//! file in a module is covered without being listed here.

use std::path::{Path, PathBuf};

/// Every `.rs` file below `src/<module>`.
fn sources(module: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|x| x == "rs") {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join(module);
    let mut out = Vec::new();
    walk(&root, &mut out);
    assert!(!out.is_empty(), "no sources under {}", root.display());
    out
}

/// The lines of `module`'s sources (comments left out) that name one of `forbidden` as
/// `crate::<name>`, alone or in a `crate::{…}` group.
fn imports(module: &str, forbidden: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for path in sources(module) {
        let text = std::fs::read_to_string(&path).expect("read source");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            let hit = forbidden.iter().any(|m| {
                code.contains(&format!("crate::{m}::"))
                    || code.contains(&format!("crate::{m};"))
                    || (code.contains("crate::{")
                        && code
                            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                            .any(|word| word == *m))
            });
            if hit {
                found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn store_imports_neither_sip_nor_media() {
    let found = imports("store", &["sip", "media"]);
    assert!(
        found.is_empty(),
        "store must only store:\n{}",
        found.join("\n")
    );
}

#[test]
fn sip_does_not_import_session() {
    let found = imports("sip", &["session"]);
    assert!(
        found.is_empty(),
        "sip knows nothing about calls:\n{}",
        found.join("\n")
    );
}
