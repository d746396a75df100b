//! The sidecar: `NAME.json` beside a file (option `sidecar = true`), what
//! is known about it, readable without the queue, years later.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::partial::SizeSource;

/// The version written into every sidecar.
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");

/// One file's sidecar.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Sidecar<'a> {
    pub file_id: i64,
    /// The generation task the file came from (`null` for a file enqueued
    /// by its id).
    pub task_id: Option<&'a str>,
    /// The file object retrieve returned, without `download_url`.
    pub file: &'a Map<String, Value>,
    pub size: u64,
    /// Where the size the file was verified against came from: `api`
    /// (retrieve's `bytes`) or `cdn` (the length the CDN stated).
    pub size_source: SizeSource,
    pub sha256: &'a str,
    /// When the file was verified, RFC 3339 UTC.
    pub downloaded_at: String,
    pub minimax_dl_version: &'static str,
}

impl Sidecar<'_> {
    /// Pretty JSON with a final newline. A `download_url` in the file
    /// object is left out whatever its source: signed URLs are credentials.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Some(file) = value.get_mut("file").and_then(Value::as_object_mut) {
            file.remove("download_url");
        }
        let mut bytes = serde_json::to_vec_pretty(&value).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }
}

/// Is `text` a sidecar of `file_id` (written by minimax-dl)?
pub(crate) fn names_file(text: &str, file_id: i64) -> bool {
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return false;
    };
    value.get("file_id").and_then(Value::as_i64) == Some(file_id)
        && value.get("minimax_dl_version").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sidecar_has_every_fact_and_never_the_url() {
        let mut file = Map::new();
        file.insert("file_id".into(), 7.into());
        file.insert("filename".into(), "a.mp4".into());
        file.insert("download_url".into(), "https://cdn/x?sig=secret".into());
        let sidecar = Sidecar {
            file_id: 7,
            task_id: None,
            file: &file,
            size: 10,
            size_source: SizeSource::Cdn,
            sha256: "ab",
            downloaded_at: "2024-01-01T00:00:00Z".into(),
            minimax_dl_version: VERSION,
        };
        let bytes = sidecar.to_bytes();
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            !text.contains("secret") && !text.contains("download_url"),
            "{text}"
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["task_id"], Value::Null);
        assert_eq!(v["size_source"], "cdn");
        assert_eq!(v["file"]["filename"], "a.mp4");
        assert!(names_file(&text, 7));
        assert!(!names_file(&text, 8));
        assert!(!names_file("{\"file_id\":7}", 7));
    }
}
