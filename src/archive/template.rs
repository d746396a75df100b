//! `path_template`: where a file goes inside the archive. Parsed once, when
//! the config is loaded (a bad template is a config error), and expanded
//! for each file. Pure: no clock, no file system.
//!
//! Fields: `{file_id}`, `{task_id}`, `{filename}`, `{purpose}`,
//! `{created:FORMAT}` (the API's `created_at`) and `{downloaded:FORMAT}`
//! (when the file was verified), FORMAT being a strftime subset in UTC:
//! `%Y %y %m %d %H %M %S %j %F %%`. `/` in the template (or in a FORMAT)
//! separates directories; `/` in a value never does. `{{` and `}}` are
//! literal braces.
//!
//! Every value is sanitised like a remote filename (`fetch::naming`), every
//! component is one plain name of at most 255 bytes, and the result is a
//! relative path of plain components: always inside the archive.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::fetch::naming::{MAX_NAME_BYTES, is_kept, sanitize_component, sanitize_filename};

/// Today's naming, and the default: `42-output_aigc.mp4`.
pub(crate) const DEFAULT_TEMPLATE: &str = "{file_id}-{filename}";

/// Longest directory name, in bytes (ext4's `NAME_MAX`).
pub const NAME_MAX: usize = 255;

/// What a sidecar adds to its file's name.
pub const SIDECAR_SUFFIX: &str = ".json";

/// Room kept in the file's own name for a collision suffix: `-` and the id
/// (up to 19 digits), `-` and up to 3 digits.
const COLLISION_ROOM: usize = 24;

/// Longest file name a template yields, so that the collision suffix and
/// the sidecar's `.json` still fit in [`NAME_MAX`].
pub(crate) const FILE_NAME_MAX: usize = NAME_MAX - COLLISION_ROOM - SIDECAR_SUFFIX.len();

/// The highest collision number tried (`-{file_id}-999`).
pub const MAX_COLLISION: u32 = 999;

/// Directory levels a template may have, file name included: bounds the
/// path length (8 × 256 bytes) far below `PATH_MAX`.
pub const MAX_COMPONENTS: usize = 8;

/// Longest template text, in bytes.
pub(crate) const MAX_TEMPLATE_BYTES: usize = 1024;

/// What `{task_id}` becomes for a file that came from no generation task.
pub(crate) const NO_TASK: &str = "notask";

/// What `{purpose}` becomes when the API gave none usable.
pub(crate) const NO_PURPOSE: &str = "unknown";

/// The largest time a date field shows (9999-12-31T23:59:59Z); later or
/// earlier ones are shown as unknown.
const MAX_UNIX_SECS: i64 = 253_402_300_799;

/// A parsed `path_template`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathTemplate {
    text: String,
    components: Vec<Vec<Token>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Text(String),
    FileId,
    TaskId,
    Filename,
    Purpose,
    Time(Clock, Spec),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Clock {
    Created,
    Downloaded,
}

/// One strftime conversion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Spec {
    Year,
    Year2,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    DayOfYear,
}

/// What one file's path is made of.
#[derive(Clone, Copy, Debug)]
pub struct Fields<'a> {
    pub file_id: i64,
    /// The generation task the file came from; `None` today.
    pub task_id: Option<&'a str>,
    /// The API's `filename`, as it came (hostile until sanitised).
    pub filename: Option<&'a str>,
    pub purpose: Option<&'a str>,
    /// The API's `created_at`, Unix seconds.
    pub created: Option<i64>,
    /// When the file was verified, Unix seconds.
    pub downloaded: i64,
}

/// An expanded template: plain components, the last one the file's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelPath {
    components: Vec<String>,
}

impl RelPath {
    pub fn components(&self) -> &[String] {
        &self.components
    }

    pub fn to_path_buf(&self) -> PathBuf {
        self.components.iter().collect()
    }

    /// The `n`th choice when earlier ones belong to other files: 0 is the
    /// path itself, 1 adds `-{file_id}` before the extension, `n` ≥ 2 adds
    /// `-{file_id}-{n}`. Deterministic, and never longer than
    /// [`NAME_MAX`] with a sidecar's `.json`.
    pub fn candidate(&self, n: u32, file_id: i64) -> RelPath {
        let mut components = self.components.clone();
        if n == 0 {
            return RelPath { components };
        }
        let suffix = match n {
            1 => format!("-{file_id}"),
            n => format!("-{file_id}-{}", n.min(MAX_COLLISION)),
        };
        if let Some(name) = components.last_mut() {
            let (stem, ext) = split_extension(name);
            *name = format!("{stem}{suffix}{ext}");
        }
        RelPath { components }
    }
}

/// `("clip", ".mp4")`; a name without a dot, or a dot first, or an
/// "extension" longer than 16 bytes, has none.
fn split_extension(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(dot) if dot > 0 && name.len() - dot <= 16 => name.split_at(dot),
        _ => (name, ""),
    }
}

/// Why a template was refused; the config error names the key.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(String);

fn refuse<T>(why: impl Into<String>) -> Result<T, TemplateError> {
    Err(TemplateError(why.into()))
}

impl PathTemplate {
    /// Parses a template. Refused: an empty one, an absolute one, empty,
    /// `.` or `..` components, unknown fields, formats on fields that are
    /// not dates, unknown conversions, unbalanced braces, literal text the
    /// sanitiser would change, more than [`MAX_COMPONENTS`] levels.
    pub fn parse(text: &str) -> Result<PathTemplate, TemplateError> {
        if text.trim().is_empty() {
            return refuse("the template is empty");
        }
        if text.len() > MAX_TEMPLATE_BYTES {
            return refuse(format!(
                "the template is {} bytes long; at most {MAX_TEMPLATE_BYTES}",
                text.len()
            ));
        }
        if text.starts_with('/') {
            return refuse(
                "the template starts with `/`: it is a path inside the output directory",
            );
        }
        let tokens = tokenize(text)?;
        let components = split_components(tokens)?;
        if components.len() > MAX_COMPONENTS {
            return refuse(format!(
                "the template has {} levels; at most {MAX_COMPONENTS}",
                components.len()
            ));
        }
        for component in &components {
            check_component(component)?;
        }
        Ok(PathTemplate {
            text: text.to_string(),
            components,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether two different files can never expand to one path: the file
    /// name starts with `{file_id}` followed by text that does not start
    /// with a digit (the default does). Such a template needs no collision
    /// handling: whatever is at a file's path is that file's own.
    pub fn unique_per_file(&self) -> bool {
        let Some(name) = self.components.last() else {
            return false;
        };
        match name.as_slice() {
            [Token::FileId] => true,
            [Token::FileId, Token::Text(t), ..] => !t.starts_with(|c: char| c.is_ascii_digit()),
            _ => false,
        }
    }

    /// The path of one file, relative to the archive.
    pub fn expand(&self, fields: &Fields<'_>) -> RelPath {
        let last = self.components.len() - 1;
        let components = self
            .components
            .iter()
            .enumerate()
            .map(|(i, tokens)| expand_component(tokens, fields, i == last))
            .collect();
        RelPath { components }
    }
}

impl Default for PathTemplate {
    fn default() -> PathTemplate {
        PathTemplate::parse(DEFAULT_TEMPLATE).expect("the default template parses")
    }
}

/// A template as a flat list: tokens, and `None` where a `/` separates
/// components.
fn tokenize(text: &str) -> Result<Vec<Option<Token>>, TemplateError> {
    let mut out = Vec::new();
    let mut literal = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                literal.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                literal.push('}');
            }
            '}' => return refuse("a `}` closes no field (write `}}` for a literal brace)"),
            '{' => {
                flush_literal(&mut literal, &mut out);
                let mut inner = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some('{') => return refuse(format!("a `{{` inside the field `{{{inner}`")),
                        Some(c) => inner.push(c),
                        None => return refuse(format!("the field `{{{inner}` is not closed")),
                    }
                }
                field_tokens(&inner, &mut out)?;
            }
            '/' => {
                flush_literal(&mut literal, &mut out);
                out.push(None);
            }
            c => literal.push(c),
        }
    }
    flush_literal(&mut literal, &mut out);
    Ok(out)
}

fn flush_literal(literal: &mut String, out: &mut Vec<Option<Token>>) {
    if !literal.is_empty() {
        out.push(Some(Token::Text(std::mem::take(literal))));
    }
}

/// One `{name}` or `{name:FORMAT}`, appended to `out`.
fn field_tokens(inner: &str, out: &mut Vec<Option<Token>>) -> Result<(), TemplateError> {
    let (name, format) = match inner.split_once(':') {
        Some((name, format)) => (name.trim(), Some(format)),
        None => (inner.trim(), None),
    };
    let simple = match name {
        "file_id" => Some(Token::FileId),
        "task_id" => Some(Token::TaskId),
        "filename" => Some(Token::Filename),
        "purpose" => Some(Token::Purpose),
        "created" | "downloaded" => None,
        other => {
            return refuse(format!(
                "unknown field `{{{other}}}`; the fields are {{file_id}}, {{task_id}}, \
                 {{filename}}, {{purpose}}, {{created:FORMAT}} and {{downloaded:FORMAT}}"
            ));
        }
    };
    match (simple, format) {
        (Some(token), None) => out.push(Some(token)),
        (Some(_), Some(_)) => {
            return refuse(format!(
                "`{{{name}}}` takes no format: only {{created}} and {{downloaded}} do"
            ));
        }
        (None, format) => {
            let clock = if name == "created" {
                Clock::Created
            } else {
                Clock::Downloaded
            };
            time_tokens(clock, format.unwrap_or("%F"), out)?;
        }
    }
    Ok(())
}

/// A strftime FORMAT as tokens: conversions, text and separators.
fn time_tokens(
    clock: Clock,
    format: &str,
    out: &mut Vec<Option<Token>>,
) -> Result<(), TemplateError> {
    if format.is_empty() {
        return refuse("an empty date format (try %Y-%m-%d)");
    }
    let mut literal = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        let spec = match c {
            '/' => {
                flush_literal(&mut literal, out);
                out.push(None);
                continue;
            }
            '%' => match chars.next() {
                Some('Y') => Spec::Year,
                Some('y') => Spec::Year2,
                Some('m') => Spec::Month,
                Some('d') => Spec::Day,
                Some('H') => Spec::Hour,
                Some('M') => Spec::Minute,
                Some('S') => Spec::Second,
                Some('j') => Spec::DayOfYear,
                Some('%') => {
                    literal.push('%');
                    continue;
                }
                Some('F') => {
                    flush_literal(&mut literal, out);
                    for (i, spec) in [Spec::Year, Spec::Month, Spec::Day].into_iter().enumerate() {
                        if i > 0 {
                            out.push(Some(Token::Text("-".into())));
                        }
                        out.push(Some(Token::Time(clock, spec)));
                    }
                    continue;
                }
                Some(other) => {
                    return refuse(format!(
                        "unknown date conversion `%{other}`; known: %Y %y %m %d %H %M %S %j %F %%"
                    ));
                }
                None => return refuse("a date format ends with a lone `%`"),
            },
            c => {
                literal.push(c);
                continue;
            }
        };
        flush_literal(&mut literal, out);
        out.push(Some(Token::Time(clock, spec)));
    }
    flush_literal(&mut literal, out);
    Ok(())
}

/// Splits at the separators, joining adjacent literal text.
fn split_components(tokens: Vec<Option<Token>>) -> Result<Vec<Vec<Token>>, TemplateError> {
    let mut components = vec![Vec::new()];
    for token in tokens {
        let current = components.last_mut().expect("never empty");
        match token {
            None => components.push(Vec::new()),
            Some(Token::Text(t)) => match current.last_mut() {
                Some(Token::Text(previous)) => previous.push_str(&t),
                _ => current.push(Token::Text(t)),
            },
            Some(token) => current.push(token),
        }
    }
    if components.iter().any(Vec::is_empty) {
        return refuse(
            "the template has an empty path component (`//`, or a `/` at its end): \
             it must end with the file's name",
        );
    }
    Ok(components)
}

/// Literal text must come out of the sanitiser as written, so that what
/// the user wrote is what the archive holds.
fn check_component(tokens: &[Token]) -> Result<(), TemplateError> {
    let texts = || {
        tokens.iter().filter_map(|t| match t {
            Token::Text(s) => Some(s.as_str()),
            _ => None,
        })
    };
    for text in texts() {
        if let Some(c) = text.chars().find(|&c| !is_kept(c)) {
            return refuse(format!(
                "the text {text:?} has {c:?}, which a file name may not hold \
                 (a backslash, `:`, a control or direction character)"
            ));
        }
        if text.contains("..") {
            return refuse(format!("the text {text:?} has `..`"));
        }
    }
    if let Some(Token::Text(first)) = tokens.first()
        && first.starts_with(['.', ' ', '_'])
    {
        return refuse(format!(
            "a path component starts with {first:?}: names starting with `.`, `_` or a \
             space are not made (hidden files, and what the sanitiser trims)"
        ));
    }
    if let Some(Token::Text(last)) = tokens.last()
        && last.ends_with(['.', ' '])
    {
        return refuse(format!(
            "a path component ends with {last:?}: names ending with `.` or a space are not made"
        ));
    }
    if let [Token::Text(only)] = tokens
        && only.len() > NAME_MAX
    {
        return refuse(format!(
            "the directory name {only:?} is longer than {NAME_MAX} bytes"
        ));
    }
    Ok(())
}

/// One component for one file: its values sanitised one by one, the whole
/// sanitised again and capped.
fn expand_component(tokens: &[Token], fields: &Fields<'_>, is_file: bool) -> String {
    let filename = fields.filename.and_then(sanitize_filename);
    let mut out = String::new();
    for (i, token) in tokens.iter().enumerate() {
        match token {
            Token::Text(t) => {
                // A separator right before a missing {filename} goes with it.
                let before_missing = filename.is_none()
                    && tokens.get(i + 1) == Some(&Token::Filename)
                    && tokens.contains(&Token::FileId)
                    && t.chars().all(|c| matches!(c, '-' | '_' | ' ' | '.'));
                if !before_missing {
                    out.push_str(t);
                }
            }
            Token::FileId => {
                let _ = write!(out, "{}", fields.file_id);
            }
            Token::TaskId => out.push_str(&value_or(fields.task_id, NO_TASK)),
            Token::Purpose => out.push_str(&value_or(fields.purpose, NO_PURPOSE)),
            Token::Filename => match &filename {
                Some(name) => out.push_str(name),
                // `{file_id}-{filename}` gives `42.mp4`, as before templates.
                None if tokens.contains(&Token::FileId) => out.push_str(".mp4"),
                None => {
                    let _ = write!(out, "{}.mp4", fields.file_id);
                }
            },
            Token::Time(clock, spec) => {
                let at = match clock {
                    Clock::Created => fields.created,
                    Clock::Downloaded => Some(fields.downloaded),
                };
                out.push_str(&format_time(at, *spec));
            }
        }
    }
    let max = if is_file { FILE_NAME_MAX } else { NAME_MAX };
    match sanitize_component(&out, max) {
        Some(name) => name,
        None if is_file => format!("{}.mp4", fields.file_id),
        None => NO_PURPOSE.to_string(),
    }
}

/// A value sanitised, or the stand-in when there is none usable.
fn value_or(value: Option<&str>, missing: &str) -> String {
    value
        .and_then(|v| sanitize_component(v, MAX_NAME_BYTES))
        .unwrap_or_else(|| missing.to_string())
}

/// One conversion of a UTC time; an unknown time shows as zeros of the
/// same width (`0000/00/00`), so every file has as many levels.
fn format_time(unix_secs: Option<i64>, spec: Spec) -> String {
    let Some(secs) = unix_secs.filter(|s| (0..=MAX_UNIX_SECS).contains(s)) else {
        return match spec {
            Spec::Year => "0000".into(),
            Spec::DayOfYear => "000".into(),
            _ => "00".into(),
        };
    };
    let days = secs.div_euclid(86_400);
    let in_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    match spec {
        Spec::Year => format!("{year:04}"),
        Spec::Year2 => format!("{:02}", year % 100),
        Spec::Month => format!("{month:02}"),
        Spec::Day => format!("{day:02}"),
        Spec::Hour => format!("{:02}", in_day / 3600),
        Spec::Minute => format!("{:02}", in_day % 3600 / 60),
        Spec::Second => format!("{:02}", in_day % 60),
        Spec::DayOfYear => format!("{:03}", days - days_from_civil(year, 1, 1) + 1),
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
pub(crate) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The inverse of [`civil_from_days`].
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREATED: i64 = 1_700_469_398; // 2023-11-20T08:36:38Z

    fn fields(filename: Option<&str>) -> Fields<'_> {
        Fields {
            file_id: 42,
            task_id: None,
            filename,
            purpose: Some("video_generation"),
            created: Some(CREATED),
            downloaded: 1_704_067_199, // 2023-12-31T23:59:59Z
        }
    }

    fn expand(template: &str, fields: &Fields<'_>) -> String {
        let t = PathTemplate::parse(template).unwrap();
        t.expand(fields)
            .to_path_buf()
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn the_default_names_files_as_before_templates() {
        use crate::fetch::naming::final_name;
        for name in [
            Some("output_aigc.mp4"),
            Some("../../etc/passwd"),
            Some(".."),
            Some(""),
            None,
            Some("猫の動画.mp4"),
        ] {
            let f = fields(name);
            assert_eq!(
                expand(DEFAULT_TEMPLATE, &f),
                final_name(42, name),
                "{name:?}"
            );
        }
        let long = format!("{}.mp4", "視".repeat(300));
        assert_eq!(
            expand(DEFAULT_TEMPLATE, &fields(Some(&long))),
            final_name(42, Some(&long))
        );
        assert!(PathTemplate::default().unique_per_file());
    }

    #[test]
    fn fields_and_dates_expand() {
        let f = fields(Some("clip.mp4"));
        assert_eq!(
            expand("{purpose}/{created:%Y/%m/%d}/{file_id}-{filename}", &f),
            "video_generation/2023/11/20/42-clip.mp4"
        );
        assert_eq!(
            expand("{downloaded:%Y-%m}/{task_id}/{filename}", &f),
            "2023-12/notask/clip.mp4"
        );
        assert_eq!(
            expand("{created:%F %H%M%S %j %y %%}_{file_id}.mp4", &f),
            "2023-11-20 083638 324 23 %_42.mp4"
        );
        assert_eq!(expand("{created}/{filename}", &f), "2023-11-20/clip.mp4");
        let with_task = Fields {
            task_id: Some("106916112212032"),
            ..f
        };
        assert_eq!(
            expand("{task_id}/{{x}}{file_id}", &with_task),
            "106916112212032/{x}42"
        );
    }

    #[test]
    fn missing_values_keep_the_shape_of_the_path() {
        let f = Fields {
            created: None,
            purpose: None,
            ..fields(None)
        };
        assert_eq!(
            expand("{purpose}/{created:%Y/%m}/{filename}", &f),
            "unknown/0000/00/42.mp4"
        );
        let f = Fields {
            created: Some(i64::MAX),
            ..fields(Some("a.mp4"))
        };
        assert_eq!(expand("{created:%Y}/{filename}", &f), "0000/a.mp4");
    }

    #[test]
    fn slashes_in_values_never_make_directories() {
        let f = Fields {
            task_id: Some("../../x/y"),
            purpose: Some("/etc"),
            ..fields(Some("a/b/../c.mp4"))
        };
        let t = PathTemplate::parse("{task_id}/{purpose}/{filename}").unwrap();
        let rel = t.expand(&f);
        assert_eq!(rel.components(), ["x_y", "etc", "a_b_._c.mp4"]);
    }

    #[test]
    fn bad_templates_are_refused_saying_why() {
        for (template, needle) in [
            ("", "empty"),
            ("/abs/{file_id}", "starts with `/`"),
            ("a//{file_id}", "empty path component"),
            ("{file_id}/", "empty path component"),
            ("../{file_id}", "`..`"),
            ("./{file_id}", "starts with"),
            ("{nope}", "unknown field `{nope}`"),
            ("{file_id:%Y}", "takes no format"),
            ("{created:%Q}", "`%Q`"),
            ("{created:%}", "lone `%`"),
            ("{file_id", "not closed"),
            ("x}", "closes no field"),
            ("a\\b/{file_id}", "backslash"),
            (".hidden/{file_id}", "starts with"),
            ("dir./{file_id}", "ends with"),
            ("a/b/c/d/e/f/g/h/{file_id}", "levels"),
        ] {
            let err = PathTemplate::parse(template).unwrap_err().to_string();
            assert!(err.contains(needle), "{template:?}: {err}");
        }
        assert!(PathTemplate::parse(&"x".repeat(2000)).is_err());
    }

    #[test]
    fn only_an_id_prefix_makes_a_template_unique() {
        for (template, unique) in [
            ("{file_id}-{filename}", true),
            ("{file_id}", true),
            ("a/{created:%Y}/{file_id}_{filename}", true),
            ("{file_id}{filename}", false),
            ("{file_id}9{filename}", false),
            ("{filename}", false),
            ("{file_id}/{filename}", false),
        ] {
            let t = PathTemplate::parse(template).unwrap();
            assert_eq!(t.unique_per_file(), unique, "{template}");
        }
    }

    #[test]
    fn collision_candidates_go_before_the_extension() {
        let t = PathTemplate::parse("{purpose}/{filename}").unwrap();
        let rel = t.expand(&fields(Some("clip.mp4")));
        let at = |n| rel.candidate(n, 42).to_path_buf();
        assert_eq!(at(0), PathBuf::from("video_generation/clip.mp4"));
        assert_eq!(at(1), PathBuf::from("video_generation/clip-42.mp4"));
        assert_eq!(at(7), PathBuf::from("video_generation/clip-42-7.mp4"));
        let long = "x".repeat(1000);
        let rel = t.expand(&fields(Some(&long)));
        let name = rel.candidate(MAX_COLLISION, i64::MAX).components()[1].clone();
        assert!(
            name.len() + SIDECAR_SUFFIX.len() <= NAME_MAX,
            "{}",
            name.len()
        );
    }

    #[test]
    fn dates_match_the_calendar() {
        let at = |secs, spec| format_time(Some(secs), spec);
        assert_eq!(at(0, Spec::Year), "1970");
        assert_eq!(at(0, Spec::DayOfYear), "001");
        assert_eq!(at(951_782_400, Spec::Day), "29"); // 2000-02-29
        assert_eq!(at(MAX_UNIX_SECS, Spec::Year), "9999");
        assert_eq!(at(MAX_UNIX_SECS, Spec::DayOfYear), "365");
        for days in [-800_000, -1, 0, 59, 365, 11_016, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
