//! Any text as a remote filename: one safe component inside the archive.
#![no_main]

use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use minimax_dl::policy::{MAX_NAME_BYTES, final_name, final_path, sanitize_filename};

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    if let Some(name) = sanitize_filename(&raw) {
        assert!(!name.is_empty() && name != "." && name != "..");
        assert!(!name.starts_with('.'));
        assert!(!name.contains(['/', '\\', '\0']));
        assert!(!name.chars().any(char::is_control));
        assert!(name.len() <= MAX_NAME_BYTES);
    }
    let dir = Path::new("/srv/archive");
    let id = i64::MAX;
    let name = final_name(id, Some(&raw));
    assert!(!name.is_empty() && name.len() <= 255);
    let path = final_path(dir, id, Some(&raw));
    let rest: Vec<_> = path.strip_prefix(dir).unwrap().components().collect();
    assert!(matches!(rest.as_slice(), [Component::Normal(n)] if n.to_str() == Some(name.as_str())));
});
