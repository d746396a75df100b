//! Any text as a `path_template`, any text as its values: a template that
//! parses always gives plain components inside the archive.
#![no_main]

use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use minimax_dl::policy::{
    Fields, MAX_COLLISION, MAX_COMPONENTS, NAME_MAX, PathTemplate, SIDECAR_SUFFIX,
};

fuzz_target!(|data: &[u8]| {
    // Template, then the values, separated by NUL bytes.
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let Ok(template) = PathTemplate::parse(parts.next().unwrap_or_default()) else {
        return;
    };
    let (task, name, purpose) = (parts.next(), parts.next(), parts.next());
    let number = |s: Option<&str>| s.and_then(|s| s.parse::<i64>().ok());
    let fields = Fields {
        file_id: number(parts.next()).filter(|&n| n > 0).unwrap_or(i64::MAX),
        task_id: task,
        filename: name,
        purpose,
        created: number(parts.next()),
        downloaded: number(parts.next()).unwrap_or(0),
    };
    let dir = Path::new("/srv/archive");
    let expanded = template.expand(&fields);
    let levels = expanded.components().len();
    assert!((1..=MAX_COMPONENTS).contains(&levels));
    for n in [0, 1, MAX_COLLISION] {
        let rel = expanded.candidate(n, fields.file_id);
        for (i, part) in rel.components().iter().enumerate() {
            assert!(!part.is_empty() && part != "." && part != ".." && !part.starts_with('.'));
            assert!(!part.contains(['/', '\\', '\0']) && !part.chars().any(char::is_control));
            let room = if i + 1 == levels { SIDECAR_SUFFIX.len() } else { 0 };
            assert!(part.len() + room <= NAME_MAX);
        }
        let path = dir.join(rel.to_path_buf());
        let rest: Vec<_> = path.strip_prefix(dir).unwrap().components().collect();
        assert_eq!(rest.len(), levels);
        assert!(rest.iter().all(|c| matches!(c, Component::Normal(_))));
    }
});
