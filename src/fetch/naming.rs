//! Where files go. `filename` comes from a remote server, so it is treated as
//! hostile: the result is always one plain name inside the output directory.

use std::path::{Path, PathBuf};

/// Longest sanitised filename, in bytes (ext4 allows 255 for the whole name,
/// and the `{file_id}-` prefix takes up to 20 more).
pub const MAX_NAME_BYTES: usize = 200;

/// Directory under the output dir holding partial downloads: same filesystem,
/// so the final rename is atomic.
pub const PARTIAL_DIR: &str = ".minimax-dl-partial";

/// Makes a remote filename safe: no path separators, no `..`, no NUL or
/// control characters, no leading dots (hidden files), no trailing dots or
/// spaces, at most [`MAX_NAME_BYTES`]. `None` when nothing usable is left.
pub fn sanitize_filename(raw: &str) -> Option<String> {
    sanitize_component(raw, MAX_NAME_BYTES)
}

/// Is `c` kept as it is by the sanitiser? Path separators, `:`, control
/// characters and Unicode direction overrides (which disguise extensions:
/// "evil\u{202e}4pm.exe") become `_`.
pub(crate) fn is_kept(c: char) -> bool {
    !(matches!(c, '/' | '\\' | ':' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        || c.is_control())
}

/// [`sanitize_filename`] with a length cap of the caller's: one plain path
/// component of at most `max` bytes (the extension kept), or `None`.
pub(crate) fn sanitize_component(raw: &str, max: usize) -> Option<String> {
    let mapped: String = raw
        .chars()
        .map(|c| if is_kept(c) { c } else { '_' })
        .collect();
    let mut name = mapped;
    while name.contains("..") {
        name = name.replace("..", ".");
    }
    let name = name
        .trim_start_matches(['.', ' ', '_'])
        .trim_end_matches(['.', ' ']);
    if name.is_empty() || name.chars().all(|c| c == '_') {
        return None;
    }
    // A cut may leave a dot or a space at the end: trimmed again.
    let name = truncate_keeping_extension(name, max);
    Some(name.trim_end_matches(['.', ' ']).to_string())
}

/// Cuts `name` to at most `max` bytes on a character boundary, keeping an
/// extension of up to 16 bytes.
pub(crate) fn truncate_keeping_extension(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    let (stem, ext) = match name.rfind('.') {
        Some(dot) if name.len() - dot <= 16 && dot > 0 => (&name[..dot], &name[dot..]),
        _ => (name, ""),
    };
    let mut cut = max.saturating_sub(ext.len()).min(stem.len());
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    // No `..` where the cut stem meets the extension.
    format!("{}{}", stem[..cut].trim_end_matches(['.', ' ']), ext)
}

/// The archive name of a file: `{file_id}-{filename}`, or `{file_id}.mp4`
/// when the API gave no usable name. The id prefix keeps names unique: every
/// MiniMax video is called `output_aigc.mp4`.
pub fn final_name(file_id: i64, filename: Option<&str>) -> String {
    match filename.and_then(sanitize_filename) {
        Some(name) => format!("{file_id}-{name}"),
        None => format!("{file_id}.mp4"),
    }
}

pub fn final_path(output_dir: &Path, file_id: i64, filename: Option<&str>) -> PathBuf {
    output_dir.join(final_name(file_id, filename))
}

pub(crate) fn partial_path(output_dir: &Path, file_id: i64) -> PathBuf {
    output_dir.join(PARTIAL_DIR).join(format!("{file_id}.part"))
}

/// Where a file's sidecar waits, complete and fsynced, until it is moved
/// next to the file (see `archive::place`).
pub(crate) fn pending_sidecar_path(output_dir: &Path, file_id: i64) -> PathBuf {
    output_dir.join(PARTIAL_DIR).join(format!("{file_id}.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_pass_through() {
        assert_eq!(final_name(7, Some("output_aigc.mp4")), "7-output_aigc.mp4");
        assert_eq!(final_name(7, Some("猫の動画.mp4")), "7-猫の動画.mp4");
    }

    #[test]
    fn hostile_names_stay_one_plain_name_inside_the_output_dir() {
        let out = Path::new("/archive");
        let hostile = [
            "../../etc/passwd",
            "..\\..\\windows\\system32",
            "/etc/shadow",
            "..",
            ".",
            "...",
            ".bashrc",
            "a/../../b",
            "nul\0byte.mp4",
            "line\nbreak.mp4",
            "\u{1b}[31mred.mp4",
            "evil\u{202e}4pm.exe",
            "C:\\x.mp4",
            "  ",
            "",
            "trailing. . .",
        ];
        for name in hostile {
            let path = final_path(out, 42, Some(name));
            assert_eq!(path.parent(), Some(out), "{name:?} -> {path:?}");
            let file = path.file_name().unwrap().to_str().unwrap();
            assert!(file.starts_with("42"), "{file}");
            assert!(
                !file.contains('/') && !file.contains('\\') && !file.contains(".."),
                "{file}"
            );
            assert!(!file.chars().any(char::is_control), "{file:?}");
            assert!(!file.ends_with('.') && !file.ends_with(' '), "{file:?}");
        }
        assert_eq!(final_name(42, Some("../../etc/passwd")), "42-etc_passwd");
        assert_eq!(final_name(42, Some("..")), "42.mp4");
        assert_eq!(final_name(42, Some(".bashrc")), "42-bashrc");
        assert_eq!(final_name(42, None), "42.mp4");
    }

    #[test]
    fn long_names_are_capped_on_a_char_boundary_keeping_the_extension() {
        let long = format!("{}.mp4", "視".repeat(300));
        let name = sanitize_filename(&long).unwrap();
        assert!(name.len() <= MAX_NAME_BYTES);
        assert!(name.ends_with(".mp4"));
        let plain = "x".repeat(1000);
        assert_eq!(sanitize_filename(&plain).unwrap().len(), MAX_NAME_BYTES);
    }

    #[test]
    fn partials_live_in_a_hidden_dir_of_the_output_dir() {
        assert_eq!(
            partial_path(Path::new("/a"), 9),
            PathBuf::from("/a/.minimax-dl-partial/9.part")
        );
    }
}
