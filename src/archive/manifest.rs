//! The manifest (`export`): one line per job, in JSON Lines or CSV. Pure:
//! the command streams jobs from the queue and writes the lines.

use std::borrow::Cow;
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

use crate::partial::SizeSource;
use crate::queue::{Job, JobState, Millis};

/// The columns, in order (the CSV header and the JSON keys).
pub(crate) const COLUMNS: [&str; 9] = [
    "file_id",
    "task_id",
    "state",
    "path",
    "size",
    "size_source",
    "sha256",
    "enqueued_at",
    "done_at",
];

/// One job as the manifest shows it. Path, size and digest only for a
/// done job: the file is in the archive, with those.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Row {
    pub file_id: i64,
    /// The generation task the file came from (`null` for a file enqueued
    /// by its id).
    pub task_id: Option<String>,
    pub state: JobState,
    pub path: Option<String>,
    pub size: Option<u64>,
    pub size_source: Option<SizeSource>,
    pub sha256: Option<String>,
    /// RFC 3339 UTC.
    pub enqueued_at: String,
    pub done_at: Option<String>,
}

impl Row {
    pub(crate) fn of(job: &Job) -> Row {
        let done = job.state == JobState::Done;
        Row {
            file_id: job.file_id,
            task_id: job.task_id.map(|t| t.to_string()),
            state: job.state,
            path: job.final_path.clone().filter(|_| done),
            size: job.bytes_expected.filter(|_| done),
            size_source: job.size_source.filter(|_| done),
            sha256: job.sha256.clone().filter(|_| done),
            enqueued_at: rfc3339(job.created_at),
            done_at: done.then(|| rfc3339(job.updated_at)),
        }
    }

    /// One JSON object, no newline.
    pub(crate) fn json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// One CSV record (RFC 4180), no newline.
    pub(crate) fn csv_line(&self) -> String {
        let fields: [Cow<'_, str>; 9] = [
            self.file_id.to_string().into(),
            opt(self.task_id.as_deref()),
            self.state.as_str().into(),
            opt(self.path.as_deref()),
            self.size.map(|s| s.to_string()).unwrap_or_default().into(),
            opt(self.size_source.map(SizeSource::as_str)),
            opt(self.sha256.as_deref()),
            self.enqueued_at.as_str().into(),
            opt(self.done_at.as_deref()),
        ];
        let quoted: Vec<Cow<'_, str>> = fields.iter().map(|f| csv_field(f)).collect();
        quoted.join(",")
    }
}

/// The CSV header line, no newline.
pub(crate) fn csv_header() -> String {
    COLUMNS.join(",")
}

fn opt(value: Option<&str>) -> Cow<'_, str> {
    value.unwrap_or_default().into()
}

/// A field quoted when it must be: it holds a comma, a quote, a line
/// break, or starts or ends with a space. Quotes inside are doubled.
pub(crate) fn csv_field(value: &str) -> Cow<'_, str> {
    let needs =
        value.contains([',', '"', '\n', '\r']) || value.starts_with(' ') || value.ends_with(' ');
    if needs {
        format!("\"{}\"", value.replace('"', "\"\"")).into()
    } else {
        value.into()
    }
}

fn rfc3339(millis: Millis) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(millis.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_they_must_be() {
        assert_eq!(csv_field("/a/b.mp4"), "/a/b.mp4");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_field(" padded"), "\" padded\"");
        assert_eq!(csv_field(""), "");
    }

    #[test]
    fn a_header_names_every_column_of_a_row() {
        assert_eq!(csv_header().split(',').count(), COLUMNS.len());
        let row = Row {
            file_id: 1,
            task_id: None,
            state: JobState::Done,
            path: Some("/x/a,b.mp4".into()),
            size: Some(3),
            size_source: Some(SizeSource::Api),
            sha256: Some("ff".into()),
            enqueued_at: "2024-01-01T00:00:00Z".into(),
            done_at: Some("2024-01-01T00:00:01Z".into()),
        };
        assert_eq!(
            row.csv_line(),
            "1,,done,\"/x/a,b.mp4\",3,api,ff,2024-01-01T00:00:00Z,2024-01-01T00:00:01Z"
        );
        let json: serde_json::Value = serde_json::from_str(&row.json_line()).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut columns = COLUMNS.to_vec();
        columns.sort_unstable();
        let mut keys = keys;
        keys.sort_unstable();
        assert_eq!(keys, columns);
        assert_eq!(json["size_source"], "api");
    }
}
