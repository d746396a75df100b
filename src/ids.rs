//! Parsing file ids and generation task ids as users and the API give
//! them. Pure: no I/O of its own ([`read_lines`] reads from whatever reader
//! it is handed).

use std::io::BufRead;

/// Why a file id was refused. The message names the value (shortened: a
/// 14 MB line pasted back at the user helps nobody) and, for input read from
/// a file, the line.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("invalid file id {}{}: {}", quoted(value), on_line_no(*line), why(value, reason))]
    Invalid {
        value: String,
        line: Option<usize>,
        reason: &'static str,
    },
    #[error("invalid task id {}{}: {}", quoted(value), on_line_no(*line), why(value, reason))]
    InvalidTask {
        value: String,
        line: Option<usize>,
        reason: &'static str,
    },
}

fn on_line_no(line: Option<usize>) -> String {
    line.map(|l| format!(" on line {l}")).unwrap_or_default()
}

/// Why a value was refused: a character that cannot be seen (a stray
/// byte-order mark, a NUL from a binary file, a no-break space pasted from
/// a web page) is named with its position, since the value as shown would
/// otherwise look right; else the parser's reason.
fn why(value: &str, reason: &str) -> String {
    match value
        .chars()
        .position(|c| !c.is_ascii_graphic() && c != ' ')
    {
        Some(at) => {
            let c = value.chars().nth(at).unwrap_or_default();
            format!(
                "it holds {} at character {}; remove it (an id is decimal digits only)",
                char_name(c),
                at + 1
            )
        }
        None => reason.to_string(),
    }
}

/// A character no one can see, in words and its code point.
pub fn char_name(c: char) -> String {
    let code = format!("U+{:04X}", c as u32);
    match c {
        '\u{feff}' => format!("a byte-order mark ({code})"),
        '\0' => format!("a NUL character ({code})"),
        '\t' => format!("a tab ({code})"),
        '\r' => format!("a carriage return ({code})"),
        '\u{a0}' => format!("a no-break space ({code})"),
        c if c.is_control() => format!("a control character ({code})"),
        c if c.is_alphanumeric() || c.is_ascii_punctuation() => {
            format!("the non-ASCII character '{c}' ({code})")
        }
        _ => format!("an invisible or non-ASCII character ({code})"),
    }
}

/// Characters of a refused value quoted in a message; longer values are cut.
pub const SHOWN_CHARS: usize = 64;

/// The value as a message quotes it: whole when short, else its first
/// [`SHOWN_CHARS`] characters and its length. Characters that cannot be
/// seen or printed appear as their code point (`<U+FEFF>`), never as an
/// escape of Rust's debug formatting.
pub fn quoted(value: &str) -> String {
    let chars = value.chars().count();
    let visible = |s: &mut dyn Iterator<Item = char>| -> String {
        s.map(|c| match c {
            c if c.is_ascii_graphic() || c == ' ' => c.to_string(),
            c if c.is_alphanumeric() => c.to_string(),
            c => format!("<U+{:04X}>", c as u32),
        })
        .collect()
    };
    if chars <= SHOWN_CHARS {
        return format!("\"{}\"", visible(&mut value.chars()));
    }
    let head = visible(&mut value.chars().take(SHOWN_CHARS));
    format!("\"{head}\"... ({chars} characters)")
}

/// The byte-order mark some editors put at the start of a UTF-8 file.
const BOM: char = '\u{feff}';

/// A file id is a decimal integer from 1 to i64::MAX (the API's int64).
pub fn parse_file_id(raw: &str) -> Result<i64, &'static str> {
    let s = raw.trim();
    if s.is_empty() {
        return Err("empty");
    }
    if let Some(rest) = s.strip_prefix('-') {
        return Err(
            if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()) {
                "negative ids do not exist; ids run from 1 to 9223372036854775807"
            } else {
                "not a decimal integer"
            },
        );
    }
    let digits = s.strip_prefix('+').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("not a decimal integer");
    }
    match digits.parse::<i64>() {
        Ok(0) => Err("zero is not a file id; ids run from 1 to 9223372036854775807"),
        Ok(id) => Ok(id),
        Err(_) => Err("too large: ids run from 1 to 9223372036854775807 (int64)"),
    }
}

/// Which MiniMax API a generation task is queried through: v1 answers a
/// `file_id` to retrieve, v2 the video's URL itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskApi {
    V1,
    V2,
}

impl TaskApi {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskApi::V1 => "v1",
            TaskApi::V2 => "v2",
        }
    }

    pub fn parse(raw: &str) -> Option<TaskApi> {
        match raw.trim() {
            "v1" => Some(TaskApi::V1),
            "v2" => Some(TaskApi::V2),
            _ => None,
        }
    }
}

impl std::fmt::Display for TaskApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A generation task as a user names it: `ID`, or `v1:ID` / `v2:ID` to
/// choose its API (without a prefix, the `task_api` setting decides).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskRef {
    pub id: i64,
    pub api: Option<TaskApi>,
}

/// Parses `ID`, `v1:ID` or `v2:ID`. MiniMax's task ids are decimal numbers
/// (written as JSON strings), in the same range as file ids.
pub fn parse_task_ref(raw: &str) -> Result<TaskRef, &'static str> {
    let s = raw.trim();
    let (api, id) = match s.split_once(':') {
        Some((prefix, id)) => (
            Some(TaskApi::parse(prefix).ok_or("the prefix must be v1: or v2:")?),
            id,
        ),
        None => (None, s),
    };
    Ok(TaskRef {
        id: parse_file_id(id)?,
        api,
    })
}

/// The first task id a call names under both APIs (`1001` taken as v1 and
/// `v2:1001`), as the sentence refusing it. A task id belongs to one API,
/// and the queue keeps one entry per id: the second would be lost.
pub fn api_clash(tasks: impl IntoIterator<Item = (i64, TaskApi)>) -> Option<String> {
    let mut seen = std::collections::HashMap::new();
    for (id, api) in tasks {
        match seen.insert(id, api) {
            Some(first) if first != api => {
                return Some(format!(
                    "task {id} is given as {first}:{id} and as {api}:{id}; a task id belongs to one \
                     API: give it once"
                ));
            }
            _ => {}
        }
    }
    None
}

/// Parses task refs given as command-line arguments.
pub fn parse_task_args(values: &[String]) -> Result<Vec<TaskRef>, IdError> {
    values
        .iter()
        .map(|v| {
            parse_task_ref(v).map_err(|reason| IdError::InvalidTask {
                value: v.clone(),
                line: None,
                reason,
            })
        })
        .collect()
}

/// Parses ids given as command-line arguments.
pub fn parse_args(values: &[String]) -> Result<Vec<i64>, IdError> {
    values
        .iter()
        .map(|v| {
            parse_file_id(v).map_err(|reason| IdError::Invalid {
                value: v.clone(),
                line: None,
                reason,
            })
        })
        .collect()
}

/// Parses an id list: one id per line, blank lines and `#` comments ignored
/// (a comment may also follow an id), a leading UTF-8 byte-order mark
/// ignored. The first bad line fails the whole list.
pub fn parse_lines(text: &str) -> Result<Vec<i64>, IdError> {
    let text = text.strip_prefix(BOM).unwrap_or(text);
    let mut ids = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if let Some(id) = id_on_line(line, index + 1)? {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// The id on one line of a list: `None` for a blank or comment-only line.
/// The one rule both [`parse_lines`] and [`read_lines`] apply.
fn id_on_line(line: &str, number: usize) -> Result<Option<i64>, IdError> {
    on_line(line, parse_file_id).map_err(|(value, reason)| IdError::Invalid {
        value,
        line: Some(number),
        reason,
    })
}

/// The task on one line of a `--tasks-from` list, as [`id_on_line`].
fn task_on_line(line: &str, number: usize) -> Result<Option<TaskRef>, IdError> {
    on_line(line, parse_task_ref).map_err(|(value, reason)| IdError::InvalidTask {
        value,
        line: Some(number),
        reason,
    })
}

/// A list line's value without its comment, parsed; `None` when blank.
/// A refusal comes with the value it refused.
fn on_line<T>(
    line: &str,
    parse: fn(&str) -> Result<T, &'static str>,
) -> Result<Option<T>, (String, &'static str)> {
    let content = line.split('#').next().unwrap_or("").trim();
    if content.is_empty() {
        return Ok(None);
    }
    parse(content)
        .map(Some)
        .map_err(|reason| (content.to_string(), reason))
}

/// Longest line [`read_lines`] accepts, in bytes. An id is at most 20
/// characters; the rest is room for whitespace and a comment. A longer line
/// means the file is not an id list (a binary, a dump, a wrong path).
pub const MAX_LINE_BYTES: usize = 4096;

/// Why an id list read with [`read_lines`] was refused.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error(transparent)]
    Id(#[from] IdError),
    #[error(
        "line {line} is longer than {MAX_LINE_BYTES} bytes ({}…): this is not a list of ids (one decimal id per line)",
        quoted(start)
    )]
    LineTooLong {
        line: usize,
        /// The line's first [`SHOWN_CHARS`] characters, to recognise it by.
        start: String,
    },
    #[error("line {line} is not UTF-8 text: this is not a list of ids (one decimal id per line)")]
    NotText { line: usize },
    #[error("{0}")]
    Read(#[from] std::io::Error),
}

/// [`parse_lines`] over a reader, one line at a time: memory stays bounded
/// by [`MAX_LINE_BYTES`] plus the ids themselves, and the first bad line
/// (too long, not UTF-8, not an id) stops the reading there, so a
/// gigabyte of garbage fails after its first line, not after reading it all.
pub fn read_lines(reader: impl BufRead) -> Result<Vec<i64>, ListError> {
    read_lines_with(reader, id_on_line)
}

/// [`read_lines`] for a list of generation tasks (`--tasks-from`): one
/// `ID`, `v1:ID` or `v2:ID` a line, under the same rules.
pub fn read_task_lines(reader: impl BufRead) -> Result<Vec<TaskRef>, ListError> {
    read_lines_with(reader, task_on_line)
}

/// The line-reading rules of [`read_lines`], whatever a line holds.
fn read_lines_with<T>(
    mut reader: impl BufRead,
    on_line: fn(&str, usize) -> Result<Option<T>, IdError>,
) -> Result<Vec<T>, ListError> {
    let mut ids = Vec::new();
    let mut buf = Vec::with_capacity(256);
    let mut number = 0;
    loop {
        buf.clear();
        let n = std::io::Read::take(reader.by_ref(), MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)?;
        if n == 0 {
            return Ok(ids);
        }
        number += 1;
        if buf.last() == Some(&b'\n') {
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
        } else if n > MAX_LINE_BYTES {
            let start = String::from_utf8_lossy(&buf)
                .chars()
                .take(SHOWN_CHARS)
                .collect();
            return Err(ListError::LineTooLong {
                line: number,
                start,
            });
        }
        let mut line =
            std::str::from_utf8(&buf).map_err(|_| ListError::NotText { line: number })?;
        if number == 1 {
            line = line.strip_prefix(BOM).unwrap_or(line);
        }
        if let Some(id) = on_line(line, number)? {
            ids.push(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_int64_range() {
        assert_eq!(parse_file_id("1"), Ok(1));
        assert_eq!(parse_file_id(" 305123456789012 "), Ok(305_123_456_789_012));
        assert_eq!(parse_file_id("9223372036854775807"), Ok(i64::MAX));
        assert_eq!(parse_file_id("+7"), Ok(7));
    }

    #[test]
    fn refuses_everything_else_with_a_reason() {
        for bad in [
            "0",
            "-1",
            "-0",
            "9223372036854775808",
            "abc",
            "12a",
            "1.5",
            "",
            "0x10",
            "1e3",
            "- 1",
        ] {
            assert!(parse_file_id(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_file_id("-5").unwrap_err().contains("negative"));
        assert!(parse_file_id("0").unwrap_err().contains("zero"));
        assert!(
            parse_file_id("99999999999999999999")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn lines_skip_blanks_and_comments_and_name_the_bad_line() {
        let text = "# batch 1\n101\n\n  102  # retried\n#103\n104\n";
        assert_eq!(parse_lines(text), Ok(vec![101, 102, 104]));
        let err = parse_lines("1\n2\nthree\n4\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid file id \"three\" on line 3: not a decimal integer"
        );
    }

    #[test]
    fn a_leading_byte_order_mark_is_ignored() {
        assert_eq!(parse_lines("\u{feff}3001\n3002\n"), Ok(vec![3001, 3002]));
        assert_eq!(parse_lines("\u{feff}# ids\r\n7\r\n"), Ok(vec![7]));
        // Only at the very start: elsewhere it is a bad character.
        assert!(parse_lines("1\n\u{feff}2\n").is_err());
    }

    #[test]
    fn invisible_characters_are_named_with_their_line_and_place() {
        for (text, want) in [
            (
                "1\n\u{feff}202\n",
                "invalid file id \"<U+FEFF>202\" on line 2: it holds a byte-order mark (U+FEFF) \
                 at character 1; remove it (an id is decimal digits only)",
            ),
            (
                "4\x00402\n",
                "invalid file id \"4<U+0000>402\" on line 1: it holds a NUL character (U+0000) \
                 at character 2; remove it (an id is decimal digits only)",
            ),
            (
                "\n\n12\u{a0}3\n",
                "invalid file id \"12<U+00A0>3\" on line 3: it holds a no-break space (U+00A0) \
                 at character 3; remove it (an id is decimal digits only)",
            ),
            (
                "7\u{200b}\n",
                "invalid file id \"7<U+200B>\" on line 1: it holds an invisible or non-ASCII \
                 character (U+200B) at character 2; remove it (an id is decimal digits only)",
            ),
        ] {
            let streamed = read_lines(text.as_bytes()).unwrap_err().to_string();
            assert_eq!(streamed, want);
            assert!(!streamed.contains("\\u{") && !streamed.contains("\\0"));
        }
    }

    #[test]
    fn a_task_named_under_both_apis_is_a_clash() {
        use TaskApi::{V1, V2};
        for (tasks, clash) in [
            (vec![(1001, V1), (1001, V2)], Some(1001)),
            (vec![(1, V2), (2, V1), (1, V2)], None),
            (vec![(5, V1), (6, V2), (7, V1), (6, V1)], Some(6)),
            (vec![], None),
        ] {
            let found = api_clash(tasks);
            assert_eq!(
                found
                    .as_ref()
                    .map(|m| m.starts_with(&format!("task {} ", clash.unwrap_or(0)))),
                clash.map(|_| true),
                "{found:?}"
            );
        }
        let message = api_clash([(1001, V1), (1001, V2)]).unwrap();
        assert!(
            message.contains("v1:1001") && message.contains("v2:1001"),
            "{message}"
        );
    }

    #[test]
    fn long_values_are_shortened_in_messages() {
        let long = "9".repeat(14_000_000);
        let message = parse_lines(&long).unwrap_err().to_string();
        assert!(message.len() < 200, "{} bytes", message.len());
        assert!(message.contains(&"9".repeat(SHOWN_CHARS)), "{message}");
        assert!(message.contains("14000000 characters"), "{message}");
        assert!(message.contains("line 1"), "{message}");
        let exactly = "x".repeat(SHOWN_CHARS);
        assert_eq!(
            parse_args(std::slice::from_ref(&exactly))
                .unwrap_err()
                .to_string(),
            format!("invalid file id {exactly:?}: not a decimal integer")
        );
    }

    #[test]
    fn task_refs_take_an_optional_api_prefix() {
        assert_eq!(
            parse_task_ref("176843862716480"),
            Ok(TaskRef {
                id: 176_843_862_716_480,
                api: None
            })
        );
        assert_eq!(
            parse_task_ref(" v2:424010985738629 "),
            Ok(TaskRef {
                id: 424_010_985_738_629,
                api: Some(TaskApi::V2)
            })
        );
        assert_eq!(parse_task_ref("v1:7").unwrap().api, Some(TaskApi::V1));
        assert!(parse_task_ref("v3:7").unwrap_err().contains("v1: or v2:"));
        assert!(parse_task_ref("v2:").is_err());
        assert!(parse_task_ref("v2:abc").is_err());
        assert!(parse_task_ref("v2:-4").unwrap_err().contains("negative"));
        let err = parse_task_args(&["v2:x".to_string()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid task id \"v2:x\": not a decimal integer"
        );
    }

    #[test]
    fn task_lists_follow_the_id_list_rules() {
        let text = "# from the pipeline\n101\nv2:102  # the new API\n\nv1:103\n";
        let refs = read_task_lines(text.as_bytes()).unwrap();
        let got: Vec<_> = refs.iter().map(|r| (r.id, r.api)).collect();
        assert_eq!(
            got,
            [
                (101, None),
                (102, Some(TaskApi::V2)),
                (103, Some(TaskApi::V1))
            ]
        );
        let err = read_task_lines(&b"1\nv9:2\n"[..]).unwrap_err();
        assert!(err.to_string().contains("on line 2"), "{err}");
    }

    #[test]
    fn crlf_lines_are_fine() {
        assert_eq!(parse_lines("5\r\n6\r\n"), Ok(vec![5, 6]));
    }

    #[test]
    fn read_lines_agrees_with_parse_lines() {
        for text in [
            "",
            "1\n",
            "1",
            "\u{feff}# ids\r\n7\r\n8",
            "# batch 1\n101\n\n  102  # retried\n#103\n104\n",
            "1\n2\nthree\n4\n",
            "1\n\u{feff}2\n",
            "5\r\n6\r\n",
        ] {
            let streamed = read_lines(text.as_bytes()).map_err(|e| e.to_string());
            let whole = parse_lines(text).map_err(|e| e.to_string());
            assert_eq!(streamed, whole, "{text:?}");
        }
    }

    #[test]
    fn read_lines_stops_at_a_long_line_or_binary() {
        let mut long = b"1\n2\n".to_vec();
        long.extend(std::iter::repeat_n(b'7', MAX_LINE_BYTES + 1));
        long.extend(b"\n3\n");
        let err = read_lines(&long[..]).unwrap_err();
        assert!(
            matches!(err, ListError::LineTooLong { line: 3, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("not a list of ids"), "{err}");

        let mut exactly = "7".repeat(MAX_LINE_BYTES - 2).into_bytes();
        exactly.extend(b" \n");
        assert!(matches!(read_lines(&exactly[..]), Err(ListError::Id(_))));

        let err = read_lines(&b"1\n\xff\xfe\x00garbage\n"[..]).unwrap_err();
        assert!(matches!(err, ListError::NotText { line: 2 }), "{err}");
    }

    #[test]
    fn read_lines_reads_no_further_than_the_bad_line() {
        // An endless reader of garbage: only a bounded prefix is read.
        let garbage = std::io::repeat(b'x');
        let err = read_lines(std::io::BufReader::new(garbage)).unwrap_err();
        assert!(
            matches!(err, ListError::LineTooLong { line: 1, .. }),
            "{err}"
        );
    }
}
