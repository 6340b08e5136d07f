//! Chat attachments (PURE parts): what a file is, told by its first bytes and never by its
//! name or the uploader's Content-Type, and where it is kept. Images (PNG, JPEG, GIF, WebP)
//! and PDF are accepted; anything else is refused.

/// A kind of file the chat accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Png,
    Jpeg,
    Gif,
    Webp,
    Pdf,
}

impl FileKind {
    /// The kind `bytes` are, by their signature.
    pub fn sniff(bytes: &[u8]) -> Option<FileKind> {
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(FileKind::Png)
        } else if bytes.starts_with(b"\xff\xd8\xff") {
            Some(FileKind::Jpeg)
        } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
            Some(FileKind::Gif)
        } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            Some(FileKind::Webp)
        } else if bytes.starts_with(b"%PDF-") {
            Some(FileKind::Pdf)
        } else {
            None
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            FileKind::Png => "image/png",
            FileKind::Jpeg => "image/jpeg",
            FileKind::Gif => "image/gif",
            FileKind::Webp => "image/webp",
            FileKind::Pdf => "application/pdf",
        }
    }

    pub fn from_content_type(ct: &str) -> Option<FileKind> {
        [
            FileKind::Png,
            FileKind::Jpeg,
            FileKind::Gif,
            FileKind::Webp,
            FileKind::Pdf,
        ]
        .into_iter()
        .find(|k| k.content_type() == ct)
    }
}

/// A file name as shown to the other side: the last path component, printable characters
/// only, at most 100 bytes; `file` when nothing is left.
pub fn clean_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let mut out: String = last
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | '<' | '>'))
        .collect();
    while out.len() > 100 {
        out.pop();
    }
    let out = out.trim().trim_start_matches('.').to_owned();
    if out.is_empty() { "file".into() } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_told_by_their_first_bytes() {
        assert_eq!(
            FileKind::sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
            Some(FileKind::Png)
        );
        assert_eq!(
            FileKind::sniff(b"\xff\xd8\xff\xe0JFIF"),
            Some(FileKind::Jpeg)
        );
        assert_eq!(FileKind::sniff(b"GIF89a..."), Some(FileKind::Gif));
        assert_eq!(
            FileKind::sniff(b"RIFF\x10\0\0\0WEBPVP8 "),
            Some(FileKind::Webp)
        );
        assert_eq!(FileKind::sniff(b"%PDF-1.7\n"), Some(FileKind::Pdf));
        for other in [
            &b"MZ\x90\0"[..],
            b"<html><script>",
            b"PK\x03\x04",
            b"",
            b"RIFF\0\0\0\0WAVE",
        ] {
            assert_eq!(FileKind::sniff(other), None, "{other:?}");
        }
        assert_eq!(
            FileKind::from_content_type("application/pdf"),
            Some(FileKind::Pdf)
        );
    }

    #[test]
    fn names_lose_paths_and_control_characters() {
        assert_eq!(clean_name("../../etc/passwd"), "passwd");
        assert_eq!(clean_name("C:\\Users\\a\\photo.png"), "photo.png");
        assert_eq!(clean_name("a\u{0}b\n\"c\".pdf"), "abc.pdf");
        assert_eq!(clean_name(".hidden"), "hidden");
        assert_eq!(clean_name(""), "file");
        assert!(clean_name(&"x".repeat(300)).len() <= 100);
    }
}
