//! Property tests of the parsers that read hostile or careless input, through
//! the library's public API: whatever the bytes, each returns a typed error
//! or a value that keeps its promises, and never panics.

use std::path::{Component, Path};
use std::time::Duration;

use minimax_dl::ids;
use minimax_dl::parts::{FileConfig, Overrides, Settings};
use minimax_dl::policy::{ApiError, parse_retrieve};
use minimax_dl::policy::{Asked, Plan, ResponseHead, parse_content_range, plan_response};
use minimax_dl::policy::{
    Fields, MAX_COLLISION, MAX_COMPONENTS, NAME_MAX, PathTemplate, SIDECAR_SUFFIX,
};
use minimax_dl::policy::{MAX_NAME_BYTES, final_name, final_path, sanitize_filename};
use minimax_dl::policy::{MAX_REDIRECTS, UrlPolicy, host_matches};
use proptest::prelude::*;
use reqwest::Url;

/// Longest file name ext4 (and most Linux filesystems) accept, in bytes.
const EXT4_NAME_MAX: usize = 255;

/// 512 cases a property (about a second for the module); `PROPTEST_CASES`
/// asks for more when hunting.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(512),
        // One binary runs every module: keep failures in the test's output
        // rather than in files under tests/.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Runs `check` on [`config`]'s number of values of `strategy`; `check`
/// says whether the value reached the property's main assertions (rather
/// than being refused before them). A property that is mostly vacuous
/// proves little: fewer than `min_share` of the cases reaching them fails,
/// and the share is printed (`--nocapture` shows it).
fn reaching<S>(name: &str, strategy: S, min_share: f64, check: impl Fn(S::Value) -> bool)
where
    S: Strategy,
    S::Value: std::fmt::Debug,
{
    use std::sync::atomic::{AtomicU32, Ordering};
    let (cases, reached) = (AtomicU32::new(0), AtomicU32::new(0));
    let mut runner = proptest::test_runner::TestRunner::new(config());
    let result = runner.run(&strategy, |value| {
        cases.fetch_add(1, Ordering::Relaxed);
        if check(value) {
            reached.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{name}: {failure}");
    }
    let (cases, reached) = (cases.into_inner(), reached.into_inner());
    let share = f64::from(reached) / f64::from(cases.max(1));
    println!("{name}: {reached} of {cases} cases reached the assertions ({share:.2})");
    assert!(
        share >= min_share,
        "{name}: only {reached} of {cases} cases reached the assertions (at least {min_share} wanted)"
    );
}

// ---------------------------------------------------------------- retrieve

/// JSON values of every shape, nested a little.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        ".{0,20}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(".{0,8}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A value for one field of a retrieve answer: usually plausible, often not.
fn field(plausible: BoxedStrategy<serde_json::Value>) -> BoxedStrategy<Option<serde_json::Value>> {
    prop_oneof![
        3 => plausible.prop_map(Some),
        1 => json_value().prop_map(Some),
        1 => Just(None),
    ]
    .boxed()
}

/// Retrieve answers close to the real shape, so that the parser's later
/// checks (id, URL, size) are reached, not only serde's.
fn retrieve_body(requested: i64) -> impl Strategy<Value = Vec<u8>> {
    let file_id = prop_oneof![
        Just(serde_json::json!(requested)),
        Just(serde_json::json!(requested.to_string())),
        Just(serde_json::json!(format!(" {requested} "))),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
    ]
    .boxed();
    let bytes = any::<i64>().prop_map(|n| serde_json::json!(n)).boxed();
    let filename = ".{0,300}".prop_map(|s| serde_json::json!(s)).boxed();
    let url = prop_oneof![
        "(https?|ftp|file|javascript|data)://[a-z0-9.:@\\[\\]-]{0,20}(/[^ ]{0,30})?",
        ".{0,40}",
    ]
    .prop_map(|s| serde_json::json!(s))
    .boxed();
    let status = prop_oneof![Just(0i64), any::<i64>()]
        .prop_map(|n| serde_json::json!(n))
        .boxed();
    (
        field(file_id),
        field(bytes),
        field(filename),
        field(url),
        field(status),
        field(".{0,20}".prop_map(|s| serde_json::json!(s)).boxed()),
    )
        .prop_map(|(id, bytes, name, url, code, msg)| {
            let object = |pairs: [(&str, Option<serde_json::Value>); 4]| {
                pairs
                    .into_iter()
                    .filter_map(|(k, v)| Some((k.to_string(), v?)))
                    .collect::<serde_json::Map<_, _>>()
            };
            let file = object([
                ("file_id", id),
                ("bytes", bytes),
                ("filename", name),
                ("download_url", url),
            ]);
            let base = object([
                ("status_code", code),
                ("status_msg", msg),
                ("", None),
                ("", None),
            ]);
            serde_json::to_vec(&serde_json::json!({ "file": file, "base_resp": base }))
                .expect("serialise")
        })
}

fn check_retrieve(requested: i64, body: &[u8]) {
    match parse_retrieve(requested, body, Some("trace-1".into())) {
        Ok(info) => {
            assert_eq!(info.file_id, requested);
            assert!(matches!(info.download_url.scheme(), "http" | "https"));
            assert!(info.download_url.host_str().is_some());
            assert!(info.bytes.is_none_or(|b| b > 0 && b <= i64::MAX as u64));
            assert_eq!(info.trace_id.as_deref(), Some("trace-1"));
        }
        Err(e) => {
            assert!(
                matches!(
                    e,
                    ApiError::Malformed { .. }
                        | ApiError::Status { .. }
                        | ApiError::DownloadScheme { .. }
                ),
                "{e:?}"
            );
            // The message quotes at most a short start of the body.
            assert!(e.to_string().len() < 1024, "{} bytes", e.to_string().len());
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn retrieve_any_bytes_give_a_value_or_a_typed_error(
        requested in any::<i64>(),
        body in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        check_retrieve(requested, &body);
    }

    #[test]
    fn retrieve_any_json_gives_a_value_or_a_typed_error(
        requested in any::<i64>(),
        value in json_value(),
    ) {
        check_retrieve(requested, &serde_json::to_vec(&value).expect("serialise"));
    }

    #[test]
    fn retrieve_near_misses_give_a_value_or_a_typed_error(
        (requested, body) in (1..=i64::MAX).prop_flat_map(|id| (Just(id), retrieve_body(id))),
    ) {
        check_retrieve(requested, &body);
    }

    #[test]
    fn retrieve_a_well_formed_answer_is_read_back(
        requested in 1..=i64::MAX,
        bytes in any::<i64>(),
        filename in ".{0,100}",
        // No hyphens: an "xn--" label would have to be valid punycode.
        host in "[a-z][a-z0-9]{0,20}(\\.[a-z]{2,5}){1,2}",
        path in "(/[A-Za-z0-9._-]{1,12}){0,4}",
    ) {
        let url = format!("https://{host}{path}?Expires=1&Signature=x");
        let body = serde_json::json!({
            "file": { "file_id": requested, "bytes": bytes, "filename": filename, "download_url": url },
            "base_resp": { "status_code": 0, "status_msg": "success" },
        });
        let info = parse_retrieve(requested, &serde_json::to_vec(&body).unwrap(), None)
            .unwrap_or_else(|e| panic!("{e}"));
        prop_assert_eq!(info.file_id, requested);
        prop_assert_eq!(info.bytes, (bytes > 0).then_some(bytes as u64));
        prop_assert_eq!(info.filename.as_deref(), Some(filename.as_str()));
        prop_assert_eq!(info.download_url.host_str(), Some(host.as_str()));
    }
}

// ------------------------------------------------------------ Content-Range

proptest! {
    #![proptest_config(config())]

    #[test]
    fn content_range_any_text_is_refused_or_consistent(value in ".{0,60}") {
        check_content_range(&value);
    }

    #[test]
    fn content_range_near_misses_are_refused_or_consistent(
        value in "[ ]?(bytes|Bytes|bytes=|)[ ]{0,2}([0-9*]{0,21}-?[0-9]{0,21}|\\*)[ ]?/?[ ]?([0-9]{0,21}|\\*)[ ]?",
    ) {
        check_content_range(&value);
    }

    #[test]
    fn content_range_round_trips(first in any::<u64>(), len in any::<u64>(), extra in any::<u64>()) {
        let last = first.saturating_add(len);
        let total = last.checked_add(1).map(|t| t.saturating_add(extra));
        let text = match total {
            Some(t) => format!("bytes {first}-{last}/{t}"),
            None => format!("bytes {first}-{last}/*"),
        };
        let parsed = parse_content_range(&text).unwrap_or_else(|| panic!("{text} refused"));
        prop_assert_eq!(parsed.first, Some(first));
        prop_assert_eq!(parsed.last, Some(last));
        prop_assert_eq!(parsed.total, total);
    }
}

fn check_content_range(value: &str) {
    if let Some(range) = parse_content_range(value) {
        assert_eq!(range.first.is_some(), range.last.is_some(), "{value:?}");
        if let (Some(first), Some(last)) = (range.first, range.last) {
            assert!(first <= last, "{value:?}");
            if let Some(total) = range.total {
                assert!(last < total, "{value:?}");
            }
        }
    }
}

// ------------------------------------------------------------ plan_response

fn header() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        ".{0,20}".prop_map(Some),
        "W/\"[a-z0-9]{0,6}\"".prop_map(Some),
        "\"[a-z0-9]{0,6}\"".prop_map(Some),
    ]
}

fn content_range_header() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        ".{0,30}".prop_map(Some),
        (0u64..2048, 0u64..2048, prop::option::of(0u64..4096)).prop_map(|(a, b, t)| {
            Some(match t {
                Some(t) => format!("bytes {a}-{b}/{t}"),
                None => format!("bytes {a}-{b}/*"),
            })
        }),
        (0u64..4096).prop_map(|t| Some(format!("bytes */{t}"))),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn plan_response_keeps_its_promises(
        status in prop_oneof![Just(200u16), Just(206), Just(416), Just(403), Just(404), Just(410), 100u16..600],
        offset in prop_oneof![Just(0u64), 0u64..4096, any::<u64>()],
        pinned in prop::option::of(prop_oneof![0u64..4096, any::<u64>()]),
        asked_validator in header(),
        content_length in prop::option::of(any::<u64>()),
        content_range in content_range_header(),
        etag in header(),
        last_modified in header(),
    ) {
        let asked = Asked { offset, validator: asked_validator.as_deref(), pinned_total: pinned };
        let head = ResponseHead {
            status,
            content_length,
            content_range: content_range.as_deref(),
            etag: etag.as_deref(),
            last_modified: last_modified.as_deref(),
        };
        let range = content_range.as_deref().and_then(parse_content_range);
        match plan_response(asked, &head) {
            Plan::Append { offset: at, total, validator } => {
                prop_assert!(status == 200 || status == 206);
                if status == 200 {
                    prop_assert_eq!(at, 0);
                    prop_assert_eq!(offset, 0);
                } else {
                    // A 206 is appended only where we asked, to a file of
                    // the pinned length, with the same validator.
                    let range = range.expect("206 appended without a valid Content-Range");
                    prop_assert_eq!(at, offset);
                    prop_assert_eq!(range.first, Some(offset));
                    if let (Some(p), Some(t)) = (pinned, total) {
                        prop_assert_eq!(p, t);
                    }
                    if let (Some(had), Some(now)) = (asked_validator.as_deref(), validator.as_deref()) {
                        prop_assert_eq!(had, now);
                    }
                }
                // The pinned validator is a strong ETag, else Last-Modified,
                // else the one we already had: never a weak or empty ETag.
                if let Some(v) = validator.as_deref() {
                    let strong_etag = etag.as_deref().filter(|t| !t.is_empty() && !t.starts_with("W/"));
                    prop_assert!(!v.is_empty());
                    prop_assert!(
                        Some(v) == strong_etag
                            || (strong_etag.is_none() && Some(v) == last_modified.as_deref())
                            || Some(v) == asked_validator.as_deref(),
                        "validator {v:?} from etag {etag:?}, last-modified {last_modified:?}"
                    );
                }
            }
            Plan::RestartWithBody { .. } => prop_assert!(status == 200 && offset > 0),
            Plan::RestartFresh { reason } => {
                prop_assert!(status == 206 || status == 416);
                prop_assert!(!reason.is_empty());
            }
            Plan::AlreadyComplete { total } => {
                prop_assert_eq!(status, 416);
                prop_assert_eq!(total, offset);
                prop_assert!(pinned.is_none_or(|p| p == total));
            }
            Plan::UrlRejected { status: s } => {
                prop_assert_eq!(s, status);
                prop_assert!(matches!(status, 403 | 404 | 410));
            }
            Plan::Retry { status: s } => {
                prop_assert_eq!(s, status);
                prop_assert!(!matches!(status, 200 | 206 | 416 | 403 | 404 | 410));
            }
        }
    }
}

// ---------------------------------------------------------------- filenames

/// Names a hostile server might send: separators, dots, controls, NULs,
/// direction overrides, long multi-byte runs, and anything at all.
fn hostile_name() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        prop::collection::vec(
            prop_oneof![
                Just("/".to_string()),
                Just("\\".to_string()),
                Just(".".to_string()),
                Just("..".to_string()),
                Just(" ".to_string()),
                Just("_".to_string()),
                Just("\0".to_string()),
                Just(":".to_string()),
                Just("\n".to_string()),
                Just("\u{202e}".to_string()),
                Just("\u{2066}".to_string()),
                Just("é".to_string()),
                Just("語".to_string()),
                Just("🎬".to_string()),
                Just(".mp4".to_string()),
                "[a-z]{1,8}",
                ".",
            ],
            0..120,
        )
        .prop_map(|parts| parts.concat()),
        // Long names of multi-byte characters, with or without an extension.
        (
            "[é語🎬a]{100,400}",
            prop_oneof![Just(""), Just(".mp4"), Just(".tar.gz")]
        )
            .prop_map(|(stem, ext)| format!("{stem}{ext}")),
    ]
}

fn check_name(id: i64, raw: &str) {
    if let Some(name) = sanitize_filename(raw) {
        assert!(!name.is_empty(), "{raw:?}");
        assert!(name != "." && name != "..", "{raw:?} -> {name:?}");
        assert!(!name.starts_with('.'), "{raw:?} -> hidden {name:?}");
        assert!(
            !name.contains(['/', '\\', '\0']),
            "{raw:?} -> {name:?} has a separator or NUL"
        );
        assert!(
            !name.chars().any(char::is_control),
            "{raw:?} -> {name:?} has a control character"
        );
        assert!(
            name.len() <= MAX_NAME_BYTES,
            "{raw:?} -> {} bytes",
            name.len()
        );
        // Even where a long name was cut.
        assert!(!name.ends_with(['.', ' ']), "{raw:?} -> {name:?}");
        assert!(!name.contains(".."), "{raw:?} -> {name:?}");
    }
    let dir = Path::new("/srv/archive");
    let name = final_name(id, Some(raw));
    assert!(!name.is_empty());
    assert!(
        name.len() <= EXT4_NAME_MAX,
        "{raw:?} -> {} bytes",
        name.len()
    );
    assert!(!name.contains(['/', '\0']), "{raw:?} -> {name:?}");
    assert!(name.starts_with(&id.to_string()), "{raw:?} -> {name:?}");
    let path = final_path(dir, id, Some(raw));
    assert_eq!(path.parent(), Some(dir), "{raw:?} -> {path:?}");
    assert_eq!(
        path.file_name().and_then(|n| n.to_str()),
        Some(name.as_str())
    );
    // Exactly one normal component more than the directory.
    let extra: Vec<_> = path
        .strip_prefix(dir)
        .expect("inside")
        .components()
        .collect();
    assert!(
        matches!(extra.as_slice(), [Component::Normal(_)]),
        "{raw:?} -> {path:?}"
    );
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn filenames_are_one_safe_component_inside_the_archive(
        id in 1..=i64::MAX,
        raw in hostile_name(),
    ) {
        check_name(id, &raw);
    }

    #[test]
    fn filenames_from_lossy_bytes_are_safe(
        id in 1..=i64::MAX,
        raw in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        check_name(id, &String::from_utf8_lossy(&raw));
    }

    #[test]
    fn ordinary_names_survive(stem in "[A-Za-z0-9][A-Za-z0-9_ -]{0,60}[A-Za-z0-9]", ext in "(\\.[a-z0-9]{1,5})?") {
        let raw = format!("{stem}{ext}");
        prop_assert_eq!(sanitize_filename(&raw), Some(raw.clone()));
    }
}

// --------------------------------------------------------------- templates

/// Template texts: anything, and near misses built of fields, formats,
/// separators, dots and stray braces.
fn template_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("{file_id}".to_string()),
        Just("{task_id}".to_string()),
        Just("{filename}".to_string()),
        Just("{purpose}".to_string()),
        Just("{created:%Y/%m/%d}".to_string()),
        Just("{downloaded:%Y-%m %j %%}".to_string()),
        Just("{created}".to_string()),
        Just("{created:%".to_string()),
        Just("/".to_string()),
        Just("-".to_string()),
        Just(".".to_string()),
        Just("..".to_string()),
        Just("{{".to_string()),
        Just("}}".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just("\\".to_string()),
        Just(" ".to_string()),
        Just("_".to_string()),
        Just("\u{202e}".to_string()),
        "[a-z0-9]{1,6}",
    ];
    // Levels built only of what parses, so that a good share of the cases
    // reach the checks of what a template gives.
    let good = prop_oneof![
        Just("{file_id}".to_string()),
        Just("{task_id}".to_string()),
        Just("{filename}".to_string()),
        Just("{purpose}".to_string()),
        Just("{created}".to_string()),
        Just("{downloaded:%Y-%m %j %%}".to_string()),
        Just("-".to_string()),
        Just("_".to_string()),
        "[a-z0-9]{1,6}",
    ];
    let level = prop::collection::vec(good, 1..4).prop_map(|p| p.concat());
    prop_oneof![
        1 => any::<String>(),
        4 => prop::collection::vec(piece, 1..14).prop_map(|p| p.concat()),
        4 => prop::collection::vec(level, 1..5).prop_map(|l| l.join("/")),
    ]
}

/// Whatever the values, a template that parsed gives plain components
/// inside the archive, each a valid name with room for a sidecar, as many
/// for every file and every collision candidate.
///
/// Returns whether the template parsed (a refusal's only promise is a
/// message naming `path_template`, asserted here).
fn check_template(text: &str, fields: &Fields<'_>) -> bool {
    let template = match PathTemplate::parse(text) {
        Ok(template) => template,
        Err(e) => {
            let message = e.to_string();
            assert!(
                !message.is_empty() && !message.contains('\n'),
                "{text:?}: {message:?}"
            );
            return false;
        }
    };
    let dir = Path::new("/srv/archive");
    let expanded = template.expand(fields);
    let levels = expanded.components().len();
    assert!((1..=MAX_COMPONENTS).contains(&levels), "{text:?}");
    for n in [0, 1, 2, MAX_COLLISION] {
        let rel = expanded.candidate(n, fields.file_id);
        assert_eq!(rel.components().len(), levels);
        for (i, part) in rel.components().iter().enumerate() {
            assert!(
                !part.is_empty() && part != "." && part != "..",
                "{text:?}: {part:?}"
            );
            assert!(!part.starts_with('.'), "{text:?}: hidden {part:?}");
            assert!(!part.contains(['/', '\\', '\0']), "{text:?}: {part:?}");
            assert!(!part.chars().any(char::is_control), "{text:?}: {part:?}");
            let room = if i + 1 == levels {
                SIDECAR_SUFFIX.len()
            } else {
                0
            };
            assert!(
                part.len() + room <= NAME_MAX,
                "{text:?}: {} bytes",
                part.len()
            );
        }
        let path = dir.join(rel.to_path_buf());
        let rest: Vec<_> = path
            .strip_prefix(dir)
            .expect("inside")
            .components()
            .collect();
        assert_eq!(rest.len(), levels, "{text:?} -> {path:?}");
        assert!(
            rest.iter().all(|c| matches!(c, Component::Normal(_))),
            "{path:?}"
        );
    }
    true
}

fn hostile_fields() -> impl Strategy<Value = (i64, [Option<String>; 3], Option<i64>, i64)> {
    let value = || prop::option::weighted(0.8, hostile_name());
    (
        1..=i64::MAX,
        [value(), value(), value()],
        prop::option::of(any::<i64>()),
        any::<i64>(),
    )
}

fn fields_of<'a>(
    (id, [task, name, purpose], created, downloaded): &'a (
        i64,
        [Option<String>; 3],
        Option<i64>,
        i64,
    ),
) -> Fields<'a> {
    Fields {
        file_id: *id,
        task_id: task.as_deref(),
        filename: name.as_deref(),
        purpose: purpose.as_deref(),
        created: *created,
        downloaded: *downloaded,
    }
}

/// A share of the generated templates parse (the rest are refused with
/// a message, also checked).
#[test]
fn templates_keep_every_path_inside_the_archive() {
    let strategy = (template_text(), hostile_fields());
    reaching("templates", strategy, 0.2, |(text, values)| {
        check_template(&text, &fields_of(&values))
    });
}

/// Templates ending in `{file_id}` and a non-digit, with directories made
/// of pieces that parse: most are unique, and their two files differ.
fn unique_template() -> impl Strategy<Value = String> {
    let level = prop_oneof![
        Just("{task_id}".to_string()),
        Just("{purpose}".to_string()),
        Just("{created:%Y/%m/%d}".to_string()),
        Just("{downloaded:%Y-%m %j %%}".to_string()),
        Just("{filename}".to_string()),
        "[a-z0-9]{1,6}",
    ];
    // At most 2 levels of 3 directories, and the file: within the 8.
    let dirs = prop::option::of(prop::collection::vec(level, 1..3).prop_map(|l| l.join("/")));
    let tail = prop_oneof![
        Just(""),
        Just("-{filename}"),
        Just("_{task_id}.mp4"),
        Just(".{purpose}"),
        Just(" {created:%F}"),
        Just("{filename}"),
    ];
    (dirs, tail).prop_map(|(dirs, tail)| match dirs {
        Some(dirs) => format!("{dirs}/{{file_id}}{tail}"),
        None => format!("{{file_id}}{tail}"),
    })
}

/// Counts only pairs of distinct ids under a template called unique.
#[test]
fn a_template_called_unique_never_gives_two_files_one_path() {
    let strategy = (unique_template(), hostile_fields(), hostile_fields());
    reaching("unique templates", strategy, 0.5, |(text, a, b)| {
        let template = PathTemplate::parse(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        if !template.unique_per_file() || a.0 == b.0 {
            return false;
        }
        assert_ne!(
            template.expand(&fields_of(&a)),
            template.expand(&fields_of(&b)),
            "{text:?}"
        );
        true
    });
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_default_template_is_the_old_naming(id in 1..=i64::MAX, raw in hostile_name()) {
        let fields = Fields { file_id: id, task_id: None, filename: Some(&raw), purpose: None, created: None, downloaded: 0 };
        let rel = PathTemplate::default().expand(&fields).to_path_buf();
        prop_assert_eq!(rel, std::path::PathBuf::from(final_name(id, Some(&raw))));
    }

}

// --------------------------------------------------------------------- ids

proptest! {
    #![proptest_config(config())]

    #[test]
    fn ids_any_text_is_an_id_in_range_or_a_reason(raw in any::<String>()) {
        match ids::parse_file_id(&raw) {
            Ok(id) => prop_assert!(id >= 1),
            Err(reason) => prop_assert!(!reason.is_empty()),
        }
    }

    #[test]
    fn ids_round_trip(
        id in 1..=i64::MAX,
        plus in any::<bool>(),
        before in "[ \t]{0,3}",
        after in "[ \t\r]{0,3}",
    ) {
        let raw = format!("{before}{}{id}{after}", if plus { "+" } else { "" });
        prop_assert_eq!(ids::parse_file_id(&raw), Ok(id));
        prop_assert_eq!(ids::parse_args(&[raw]), Ok(vec![id]));
    }

    #[test]
    fn ids_out_of_range_are_refused(n in any::<i128>()) {
        let parsed = ids::parse_file_id(&n.to_string());
        if (1..=i64::MAX as i128).contains(&n) {
            prop_assert_eq!(parsed, Ok(n as i64));
        } else {
            prop_assert!(parsed.is_err());
        }
    }

    #[test]
    fn id_lists_keep_ids_in_order_and_skip_the_rest(
        lines in prop::collection::vec(
            prop_oneof![
                (1..=i64::MAX, "[ \t]{0,2}", "( *#[^\n]{0,10})?")
                    .prop_map(|(id, pad, comment)| (Some(id), format!("{pad}{id}{pad}{comment}"))),
                "[ \t]{0,3}".prop_map(|blank| (None, blank)),
                "#[^\n]{0,20}".prop_map(|comment| (None, comment)),
            ],
            0..50,
        ),
        bom in any::<bool>(),
        crlf in any::<bool>(),
        final_newline in any::<bool>(),
    ) {
        let expected: Vec<i64> = lines.iter().filter_map(|(id, _)| *id).collect();
        let mut text = if bom { "\u{feff}".to_string() } else { String::new() };
        text += &lines
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join(if crlf { "\r\n" } else { "\n" });
        if final_newline {
            text.push('\n');
        }
        prop_assert_eq!(ids::parse_lines(&text), Ok(expected.clone()));
        prop_assert_eq!(ids::read_lines(text.as_bytes()).map_err(|e| e.to_string()), Ok(expected));
    }

    #[test]
    fn id_lists_of_any_bytes_are_read_or_refused_the_same_way(
        bytes in prop::collection::vec(
            prop_oneof![Just(b'\n'), Just(b'#'), Just(b' '), Just(b'\r'), b'0'..=b'9', any::<u8>()],
            0..400,
        ),
    ) {
        let streamed = ids::read_lines(&bytes[..]);
        match std::str::from_utf8(&bytes) {
            // On text, streaming and the whole-string parser agree, message
            // and all (lines here are shorter than MAX_LINE_BYTES).
            Ok(text) => prop_assert_eq!(
                streamed.map_err(|e| e.to_string()),
                ids::parse_lines(text).map_err(|e| e.to_string())
            ),
            Err(_) => {
                if let Ok(ids) = streamed {
                    prop_assert!(ids.iter().all(|&id| id >= 1));
                }
            }
        }
    }

    #[test]
    fn id_errors_name_a_line_that_exists(text in "([0-9a-z #+-]{0,12}\n){0,20}") {
        if let Err(ids::IdError::Invalid { line: Some(line), value, .. }) = ids::parse_lines(&text) {
            prop_assert!(line >= 1 && line <= text.lines().count());
            prop_assert!(text.lines().nth(line - 1).unwrap().contains(value.as_str()));
        }
    }
}

// ------------------------------------------------------------------ config

/// TOML values of the types a config key may hold, and some it may not.
fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        (0u64..100).prop_map(|n| n.to_string()),
        prop_oneof![
            Just(u32::MAX as i64),
            Just(i64::MAX),
            Just(86_400i64),
            Just(86_401)
        ]
        .prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        any::<bool>().prop_map(|b| b.to_string()),
        "[a-z:/.0-9_-]{0,30}".prop_map(|s| format!("{s:?}")),
        prop_oneof![
            Just("\"https://api.minimax.io\""),
            Just("\"http://127.0.0.1:1\""),
            Just("\"http://example.com\""),
            Just("\"text\""),
            Just("\"json\""),
            Just("\"\""),
            Just("[]"),
            Just("{}"),
            Just("[\"aliyuncs.com\", \".minimax.io\"]"),
            Just("[\"https://cdn.example\"]"),
            Just("[1, 2]"),
        ]
        .prop_map(str::to_string),
    ]
}

fn config_text() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("api_base"),
        Just("api_key_file"),
        Just("database"),
        Just("output_dir"),
        Just("concurrency"),
        Just("requests_per_minute"),
        Just("max_attempts"),
        Just("segments"),
        Just("connect_timeout_secs"),
        Just("read_timeout_secs"),
        Just("probe_interval_secs"),
        Just("log_format"),
        Just("path_template"),
        Just("sidecar"),
        Just("cdn_allow"),
        Just("max_file_bytes"),
        Just("unknown_key"),
    ];
    prop::collection::vec((key, toml_value()), 0..8).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(k, v)| format!("{k} = {v}\n"))
            .collect()
    })
}

/// Returns whether `text` became settings (then checked); a refusal
/// must say something (checked too).
fn check_config(text: &str) -> bool {
    let path = Path::new("/etc/minimax-dl/config.toml");
    let refused = |e: &dyn std::fmt::Display| {
        assert!(!e.to_string().trim().is_empty(), "{text:?}: an empty error");
        false
    };
    let file = match FileConfig::parse(text, path) {
        Ok(file) => file,
        Err(e) => return refused(&e),
    };
    let env = |name: &str| match name {
        "HOME" => Some("/home/someone".to_string()),
        _ => None,
    };
    let settings = match Settings::resolve(&Overrides::default(), &env, Some(path.into()), file) {
        Ok(settings) => settings,
        Err(e) => return refused(&e),
    };
    // What the engine later does with the settings must not overflow: the
    // API client adds the two timeouts, the daemon adds the probe interval
    // to now, the rate gate divides a minute by requests_per_minute.
    let now = tokio::time::Instant::now();
    for (name, d) in [
        ("connect_timeout", settings.connect_timeout),
        ("read_timeout", settings.read_timeout),
        ("probe_interval", settings.probe_interval),
    ] {
        assert!(d >= Duration::from_secs(1), "{name} {d:?} from {text:?}");
        assert!(
            now.checked_add(d).is_some(),
            "{name} {d:?} cannot be added to now: from {text:?}"
        );
    }
    assert!(
        settings
            .read_timeout
            .checked_add(settings.connect_timeout)
            .is_some()
    );
    assert!(
        settings.concurrency >= 1 && settings.rate.requests.most() >= 1 && settings.rate.burst >= 1
    );
    assert!(matches!(settings.api_base.scheme(), "http" | "https"));
    assert!(settings.max_file_bytes >= 1);
    true
}

/// Any text: its promise is a typed error or settings, never a panic.
/// Almost no random text is a config (the share that is: the empty text,
/// comments, blank lines), so every case's assertions are on the error's
/// message; [`config_plausible_files_are_settings_or_a_typed_error`]
/// reaches the settings.
#[test]
fn config_any_text_is_settings_or_a_typed_error() {
    reaching("config: any text", any::<String>(), 0.0, |text| {
        check_config(&text)
    });
}

/// Near misses of real config files: a good share becomes settings.
#[test]
fn config_plausible_files_are_settings_or_a_typed_error() {
    reaching("config: plausible files", config_text(), 0.1, |text| {
        check_config(&text)
    });
}

// -------------------------------------------------------------- URL policy

const SECRET_QUERY: &str = "Signature=never-shown";

/// URLs of many schemes and hosts, loopback or not, always with a secret
/// in the query.
fn any_url() -> impl Strategy<Value = Url> {
    let scheme = prop_oneof![
        prop_oneof![
            Just("http"),
            Just("https"),
            Just("ftp"),
            Just("file"),
            Just("ws")
        ]
        .prop_map(str::to_string),
        "[a-z][a-z0-9+.-]{0,6}",
    ];
    let host = prop_oneof![
        Just("127.0.0.1".to_string()),
        Just("localhost".to_string()),
        Just("[::1]".to_string()),
        Just("0.0.0.0".to_string()),
        "[a-z0-9-]{1,10}(\\.[a-z0-9-]{1,10}){0,3}\\.?",
        "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}",
    ];
    let port = prop::option::of(1u16..);
    (scheme, host, port, "[a-zA-Z0-9/._-]{0,20}").prop_filter_map(
        "not a URL",
        |(scheme, host, port, path)| {
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            Url::parse(&format!("{scheme}://{host}{port}/{path}?{SECRET_QUERY}")).ok()
        },
    )
}

fn label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?"
}

/// A host name: labels, then a top-level one of letters (a name whose
/// last label is a number is an IPv4 address to a URL parser).
fn domain() -> impl Strategy<Value = String> {
    (prop::collection::vec(label(), 0..3), "[a-z]{2,6}").prop_map(|(mut labels, top)| {
        labels.push(top);
        labels.join(".")
    })
}

proptest! {
    #![proptest_config(config())]

    /// A URL is fetched as itself or its https form, or refused with a
    /// message that never carries its query.
    #[test]
    fn url_policy_fetches_http_s_only_upgrading_beyond_loopback(url in any_url()) {
        match UrlPolicy::default().first(&url) {
            Ok(fetched) => {
                prop_assert!(matches!(url.scheme(), "http" | "https"));
                prop_assert_eq!(fetched.host_str(), url.host_str());
                prop_assert_eq!(fetched.path(), url.path());
                prop_assert_eq!(fetched.query(), url.query());
                let loopback = minimax_dl::policy::is_loopback_host(url.host_str().unwrap());
                let expected = if loopback { url.scheme() } else { "https" };
                prop_assert_eq!(fetched.scheme(), expected);
            }
            Err(refusal) => {
                prop_assert!(!refusal.to_string().contains(SECRET_QUERY));
                prop_assert!(!matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty));
            }
        }
    }

    /// A host is under an allowed name exactly when it is that name or
    /// ends in "." and that name.
    #[test]
    fn cdn_allow_matches_on_label_boundaries(prefix in "[a-z0-9.-]{0,12}", allowed in domain()) {
        let host = format!("{prefix}{allowed}");
        let expected = prefix.is_empty() || (prefix.ends_with('.') && prefix.len() > 1);
        prop_assert_eq!(host_matches(&host, &allowed, true), expected, "{} under {}", host, allowed);
        // Through a URL: both sides as the URL parser writes them (an
        // all-numeric name is an IPv4 address there, which matches only
        // itself).
        let policy = UrlPolicy::new([allowed.as_str()]);
        prop_assume!(policy.is_ok());
        let policy = policy.unwrap();
        if let Ok(url) = Url::parse(&format!("https://{host}/x?{SECRET_QUERY}")) {
            let parsed = url.host_str().unwrap();
            let normalised = &policy.cdn_allow()[0];
            prop_assert_eq!(
                policy.first(&url).is_ok(),
                host_matches(parsed, normalised, url.domain().is_some())
            );
        }
    }

    /// A followed redirect stays on http(s), never leaves https for http,
    /// never goes to plain http beyond loopback, and ends after
    /// MAX_REDIRECTS; a refusal never carries a query.
    #[test]
    fn redirects_keep_the_rules(
        chain in prop::collection::vec(any_url(), 1..9),
        next in any_url(),
    ) {
        match UrlPolicy::default().redirect(&chain, &next) {
            Ok(()) => {
                prop_assert!(chain.len() <= MAX_REDIRECTS);
                prop_assert!(matches!(next.scheme(), "http" | "https"));
                let last = chain.last().unwrap();
                prop_assert!(!(last.scheme() == "https" && next.scheme() == "http"));
                if next.scheme() == "http" {
                    prop_assert!(minimax_dl::policy::is_loopback_host(next.host_str().unwrap()));
                }
            }
            Err(refusal) => prop_assert!(!refusal.to_string().contains(SECRET_QUERY)),
        }
    }
}
