//! The precedence, the file's checks and the secrets' rules, driven
//! through [`Settings::resolve`] with an environment of the test's own.

use std::path::Path;

use super::secrets::exposure_warning;
use super::*;
use secrecy::ExposeSecret;
use std::collections::HashMap;

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

fn file(text: &str) -> FileConfig {
    FileConfig::parse(text, Path::new("/etc/minimax-dl/config.toml")).unwrap()
}

#[test]
fn defaults_apply_when_nothing_is_said() {
    let env = env_of(&[("HOME", "/home/u")]);
    let s = Settings::resolve(&Overrides::default(), &env, None, FileConfig::default()).unwrap();
    assert_eq!(s.api_base.as_str(), "https://api.minimaxi.com/");
    assert_eq!(s.database.0, "/home/u/.local/share/minimax-dl/queue.db");
    assert_eq!(
        s.output_dir,
        PathBuf::from("/home/u/.local/share/minimax-dl/files")
    );
    assert_eq!(s.concurrency, DEFAULT_CONCURRENCY);
    assert_eq!(
        s.rate,
        RateSettings {
            requests: RequestRate::Auto { ceiling: 600 },
            burst: DEFAULT_BURST,
            window: RATE_WINDOW,
        }
    );
    assert_eq!(s.retry, RetryPolicy::default());
    assert!(matches!(s.api_key, Ok(None)));
}

#[test]
fn the_request_rate_is_auto_or_a_number_from_flag_environment_or_file() {
    let rate = |flag: Option<RateChoice>, var: Option<&str>, file: &str| {
        let env = |name: &str| match name {
            "HOME" => Some("/h".to_string()),
            "MINIMAX_DL_REQUESTS_PER_MINUTE" => var.map(str::to_string),
            _ => None,
        };
        let file = FileConfig::parse(file, Path::new("c.toml")).unwrap();
        let overrides = Overrides {
            requests_per_minute: flag,
            ..Overrides::default()
        };
        Settings::resolve(&overrides, &env, None, file).map(|s| s.rate)
    };
    let auto = |ceiling| RequestRate::Auto { ceiling };
    let cases: [(Option<RateChoice>, Option<&str>, &str, RequestRate); 7] = [
        (None, None, "", auto(600)),
        (
            None,
            None,
            "requests_per_minute = 90\n",
            RequestRate::Fixed(90),
        ),
        (
            None,
            None,
            "requests_per_minute = \"auto\"\nmax_requests_per_minute = 300\n",
            auto(300),
        ),
        (None, Some("auto"), "requests_per_minute = 90\n", auto(600)),
        (
            None,
            Some(" 45 "),
            "requests_per_minute = \"auto\"\n",
            RequestRate::Fixed(45),
        ),
        (
            Some(RateChoice::Fixed(7)),
            Some("auto"),
            "",
            RequestRate::Fixed(7),
        ),
        (
            Some(RateChoice::Auto),
            Some("12"),
            "requests_per_minute = 5\n",
            auto(600),
        ),
    ];
    for (flag, var, file, expected) in cases {
        assert_eq!(
            rate(flag, var, file).unwrap().requests,
            expected,
            "{flag:?} {var:?} {file:?}"
        );
    }
    assert_eq!(rate(None, None, "burst = 3\n").unwrap().burst, 3);
    let bad = [
        (None, "requests_per_minute = 0\n", "requests_per_minute"),
        (None, "requests_per_minute = -1\n", "requests_per_minute"),
        (
            None,
            "requests_per_minute = \"fast\"\n",
            "requests_per_minute",
        ),
        (
            None,
            "max_requests_per_minute = 0\n",
            "max_requests_per_minute",
        ),
        (None, "burst = 0\n", "burst"),
        (Some("lots"), "", "MINIMAX_DL_REQUESTS_PER_MINUTE"),
        (Some("0"), "", "MINIMAX_DL_REQUESTS_PER_MINUTE"),
    ];
    // A bad file value is an error even when the variable wins.
    let err = rate(None, Some("60"), "requests_per_minute = -1\n").unwrap_err();
    assert!(err.to_string().contains("requests_per_minute"), "{err}");
    for (var, file, named) in bad {
        let err = rate(None, var, file).unwrap_err().to_string();
        assert!(err.contains(named), "{var:?} {file:?}: {err}");
    }
    assert_eq!(parse_rate_choice("AUTO"), Ok(RateChoice::Auto));
    assert!(parse_rate_choice("1000001").is_err());
}

#[test]
fn flags_beat_environment_beats_file() {
    let f = || file("concurrency = 3\ndatabase = \"/file.db\"\noutput_dir = \"/file-out\"\n");
    let env = env_of(&[
        ("MINIMAX_DL_CONCURRENCY", "5"),
        ("MINIMAX_DL_DATABASE", "/env.db"),
    ]);
    let s = Settings::resolve(&Overrides::default(), &env, None, f()).unwrap();
    assert_eq!((s.concurrency, s.database.0.as_str()), (5, "/env.db"));
    assert_eq!(s.output_dir, PathBuf::from("/file-out"));

    let flags = Overrides {
        concurrency: Some(7),
        database: Some("/flag.db".into()),
        ..Overrides::default()
    };
    let s = Settings::resolve(&flags, &env, None, f()).unwrap();
    assert_eq!((s.concurrency, s.database.0.as_str()), (7, "/flag.db"));

    let s = Settings::resolve(&Overrides::default(), &env_of(&[]), None, f()).unwrap();
    assert_eq!((s.concurrency, s.database.0.as_str()), (3, "/file.db"));
}

#[test]
fn unknown_keys_and_wrong_types_name_the_key_and_file() {
    let path = Path::new("/etc/minimax-dl/config.toml");
    let err = FileConfig::parse("concurency = 3\n", path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/etc/minimax-dl/config.toml") && err.contains("concurency"),
        "{err}"
    );
    let err = FileConfig::parse("concurrency = \"many\"\n", path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("concurrency") && err.contains("/etc/minimax-dl/config.toml"),
        "{err}"
    );
}

#[test]
fn out_of_range_values_name_their_origin() {
    let err = Settings::resolve(
        &Overrides::default(),
        &env_of(&[("HOME", "/h")]),
        Some("/c.toml".into()),
        file("concurrency = 0"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("/c.toml")
            && err.contains("concurrency")
            && err.contains("0 is not in 1..=256"),
        "{err}"
    );
    let err = Settings::resolve(
        &Overrides::default(),
        &env_of(&[("HOME", "/h"), ("MINIMAX_DL_REQUESTS_PER_MINUTE", "lots")]),
        None,
        FileConfig::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("MINIMAX_DL_REQUESTS_PER_MINUTE") && err.contains("lots"),
        "{err}"
    );
}

#[test]
fn timeouts_beyond_a_day_are_refused_before_they_overflow_a_deadline() {
    // Found by tests/it/props.rs: 2^63-1 seconds resolved, and the daemon's
    // `Instant::now() + probe_interval` then panicked at the first pause.
    for key in [
        "connect_timeout_secs",
        "read_timeout_secs",
        "probe_interval_secs",
        "db_timeout_secs",
        "api_unreachable_secs",
    ] {
        let resolve = |value: u64| {
            Settings::resolve(
                &Overrides::default(),
                &env_of(&[("HOME", "/h")]),
                Some("/c.toml".into()),
                file(&format!("{key} = {value}")),
            )
        };
        assert!(resolve(MAX_WAIT_SECS).is_ok(), "{key}");
        let err = resolve(i64::MAX as u64).unwrap_err().to_string();
        assert!(
            err.contains(key) && err.contains("is not in 1..=86400"),
            "{err}"
        );
    }
}

#[test]
fn environment_key_beats_key_file_and_never_prints() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("key");
    std::fs::write(&key_path, "file-secret\n").unwrap();
    let f = || file(&format!("api_key_file = {:?}", key_path.to_str().unwrap()));
    let s =
        Settings::resolve(&Overrides::default(), &env_of(&[("HOME", "/h")]), None, f()).unwrap();
    assert_eq!(key(&s), "file-secret");
    let s = Settings::resolve(
        &Overrides::default(),
        &env_of(&[("HOME", "/h"), ("MINIMAX_API_KEY", "env-secret")]),
        None,
        f(),
    )
    .unwrap();
    assert_eq!(key(&s), "env-secret");
    assert!(!format!("{s:?}").contains("env-secret"));
}

#[test]
fn a_systemd_credential_is_the_last_resort_for_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("api_key"), "cred-secret\n").unwrap();
    let creds = dir.path().to_str().unwrap();
    let s = Settings::resolve(
        &Overrides::default(),
        &env_of(&[("HOME", "/h"), ("CREDENTIALS_DIRECTORY", creds)]),
        None,
        FileConfig::default(),
    )
    .unwrap();
    assert_eq!(key(&s), "cred-secret");
    let s = Settings::resolve(
        &Overrides::default(),
        &env_of(&[
            ("HOME", "/h"),
            ("CREDENTIALS_DIRECTORY", creds),
            ("MINIMAX_API_KEY", "env"),
        ]),
        None,
        FileConfig::default(),
    )
    .unwrap();
    assert_eq!(key(&s), "env");
}

fn key(s: &Settings) -> &str {
    s.api_key
        .as_ref()
        .unwrap()
        .as_ref()
        .unwrap()
        .expose_secret()
}

fn key_error(env: &[(&str, &str)], text: &str) -> String {
    let s = Settings::resolve(&Overrides::default(), &env_of(env), None, file(text))
        .expect("a key problem leaves the other settings usable");
    s.api_key.unwrap_err().to_string()
}

#[test]
fn a_missing_key_file_is_an_error_naming_it_for_the_verbs_that_ask() {
    let err = key_error(&[("HOME", "/h")], "api_key_file = \"/nonexistent/key\"");
    assert!(err.contains("/nonexistent/key"), "{err}");
}

#[test]
fn a_key_with_control_characters_is_refused_without_showing_it() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &[u8])] = &[
        ("newline", b"sk-first\nsk-second\n"),
        ("tab", b"sk-ab\tcd"),
        ("escape", b"sk-ab\x1bcd\n"),
        ("non-ASCII", "sk-ab\u{e9}cd".as_bytes()),
    ];
    for (what, bytes) in cases {
        let path = dir.path().join(what);
        std::fs::write(&path, bytes).unwrap();
        let err = key_error(
            &[("HOME", "/h")],
            &format!("api_key_file = {:?}", path.to_str().unwrap()),
        );
        assert!(err.contains(path.to_str().unwrap()), "{what}: {err}");
        assert!(!err.contains("sk-"), "{what}: the key leaked: {err}");
    }
    let err = key_error(&[("HOME", "/h"), ("MINIMAX_API_KEY", "sk-a\nsk-b")], "");
    assert!(err.contains("MINIMAX_API_KEY"), "{err}");
    assert!(!err.contains("sk-"), "the key leaked: {err}");
}

#[test]
fn a_key_file_may_start_with_a_byte_order_mark_and_end_with_a_newline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key");
    std::fs::write(&path, "\u{feff}sk-key\r\n").unwrap();
    let text = format!("api_key_file = {:?}", path.to_str().unwrap());
    let s = Settings::resolve(
        &Overrides::default(),
        &env_of(&[("HOME", "/h")]),
        None,
        file(&text),
    )
    .unwrap();
    assert_eq!(key(&s), "sk-key");
}

#[test]
fn a_database_that_cannot_outlive_the_command_is_refused_naming_its_origin() {
    for (flag, needle) in [("", "--db"), ("sqlite::memory:", "--db")] {
        let overrides = Overrides {
            database: Some(flag.into()),
            ..Overrides::default()
        };
        let err = Settings::resolve(&overrides, &env_of(&[("HOME", "/h")]), None, file(""))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(needle) && err.contains("file"),
            "{flag:?}: {err}"
        );
    }
    let err = Settings::resolve(
        &Overrides::default(),
        &env_of(&[("HOME", "/h"), ("MINIMAX_DL_DATABASE", ":memory:")]),
        None,
        file(""),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("MINIMAX_DL_DATABASE"), "{err}");
}

#[test]
fn the_database_url_may_come_from_a_file_at_each_layer_and_never_shows() {
    let dir = tempfile::tempdir().unwrap();
    let url_file = dir.path().join("db_url");
    std::fs::write(&url_file, "postgres://u:hunter2@db/q\n").unwrap();
    let path = url_file.to_str().unwrap();
    let home = ("HOME", "/h");
    let resolve = |overrides: &Overrides, env: &[(&str, &str)], text: &str| {
        Settings::resolve(overrides, &env_of(env), None, file(text))
    };
    let from_file = format!("database_url_file = {path:?}");
    let flag = Overrides {
        database_url_file: Some(url_file.clone()),
        ..Overrides::default()
    };
    let env_var = [home, ("MINIMAX_DL_DATABASE_URL_FILE", path)];
    let dir_path = dir.path().to_str().unwrap();
    let credential = [home, ("CREDENTIALS_DIRECTORY", dir_path)];
    for s in [
        resolve(&Overrides::default(), &[home], &from_file),
        resolve(&flag, &[home], ""),
        resolve(&Overrides::default(), &env_var, ""),
        resolve(&Overrides::default(), &credential, ""),
    ] {
        let s = s.unwrap();
        assert_eq!(s.database.0, "postgres://u:hunter2@db/q");
        assert!(!format!("{s:?}").contains("hunter2"), "{s:?}");
        assert_eq!(s.database.redacted(), "postgres://u:***@db/q");
    }
    // A higher layer wins over the file; the credential comes last.
    let s = resolve(
        &Overrides::default(),
        &[home, ("MINIMAX_DL_DATABASE", "/e.db")],
        &from_file,
    );
    assert_eq!(s.unwrap().database.0, "/e.db");
    let s = resolve(&Overrides::default(), &credential, "database = \"/f.db\"");
    assert_eq!(s.unwrap().database.0, "/f.db");
    // Both at one layer is a mistake, named by both origins.
    let both = format!("database = \"/f.db\"\n{from_file}");
    let err = resolve(&Overrides::default(), &[home], &both)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`database`") && err.contains("`database_url_file`"),
        "{err}"
    );
    let err = resolve(
        &Overrides::default(),
        &[home, ("MINIMAX_DL_DATABASE", "/e.db"), env_var[1]],
        "",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("MINIMAX_DL_DATABASE_URL_FILE"), "{err}");
    // Unreadable, empty or several lines: the file is named, its contents never.
    for (contents, needle) in [
        ("", "empty"),
        ("postgres://u:hunter2@a/b\nmore\n", "one line"),
    ] {
        std::fs::write(&url_file, contents).unwrap();
        let err = resolve(&flag, &[home], "").unwrap_err().to_string();
        assert!(err.contains(path) && err.contains(needle), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
    let missing = Overrides {
        database_url_file: Some(dir.path().join("nope")),
        ..Overrides::default()
    };
    let err = resolve(&missing, &[home], "").unwrap_err().to_string();
    assert!(
        err.contains("nope") && err.contains("--database-url-file"),
        "{err}"
    );
}

#[test]
fn the_listener_is_off_unless_an_address_is_given_and_the_flag_wins() {
    let env = env_of(&[("HOME", "/h"), ("MINIMAX_DL_LISTEN", "127.0.0.1:2")]);
    let none = Settings::resolve(
        &Overrides::default(),
        &env_of(&[("HOME", "/h")]),
        None,
        file(""),
    );
    assert!(none.unwrap().listen.is_none());
    let f = || file("listen = \"127.0.0.1:3\"\nlisten_public = true\n");
    let s = Settings::resolve(&Overrides::default(), &env_of(&[("HOME", "/h")]), None, f());
    let l = s.unwrap().listen.unwrap();
    assert_eq!((l.addr.as_str(), l.public), ("127.0.0.1:3", true));
    let s = Settings::resolve(&Overrides::default(), &env, None, f()).unwrap();
    assert_eq!(s.listen.unwrap().addr, "127.0.0.1:2");
    let flag = Overrides {
        listen: Some("127.0.0.1:1".into()),
        ..Overrides::default()
    };
    let s = Settings::resolve(&flag, &env, None, f()).unwrap();
    assert_eq!(s.listen.unwrap().addr, "127.0.0.1:1");
}

#[test]
fn a_short_listen_token_is_refused_naming_its_origin_not_its_value() {
    let resolve = |env: &[(&str, &str)], text: &str| {
        Settings::resolve(
            &Overrides::default(),
            &env_of(env),
            Some("/c.toml".into()),
            file(text),
        )
    };
    let err = resolve(
        &[("HOME", "/h")],
        "listen = \"127.0.0.1:1\"\nlisten_token = \"abc\"",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("listen_token") && err.contains("16"), "{err}");
    assert!(!err.contains("abc"), "{err}");
    let env = [
        ("HOME", "/h"),
        ("MINIMAX_DL_LISTEN_TOKEN", "env-token-0123456789"),
    ];
    let s = resolve(
        &env,
        "listen = \"127.0.0.1:1\"\nlisten_token = \"file-token-0123456789\"",
    )
    .unwrap();
    let token = s.listen.as_ref().unwrap().token.as_ref().unwrap();
    assert_eq!(token.expose_secret(), "env-token-0123456789");
    assert!(!format!("{s:?}").contains("env-token"), "never printed");
}

#[test]
fn the_example_config_parses_and_matches_the_defaults() {
    let text = include_str!("../../config.example.toml");
    let parsed = FileConfig::parse(text, Path::new("config.example.toml")).unwrap();
    let env = env_of(&[("HOME", "/h")]);
    let s = Settings::resolve(&Overrides::default(), &env, None, parsed).unwrap();
    let d = Settings::resolve(&Overrides::default(), &env, None, FileConfig::default()).unwrap();
    assert_eq!(s.api_base, d.api_base);
    assert_eq!(s.concurrency, d.concurrency);
    assert_eq!(s.rate, d.rate);
    assert_eq!(s.retry, d.retry);
    assert_eq!(s.segments, d.segments);
    assert_eq!(s.read_timeout, d.read_timeout);
    assert_eq!(s.connect_timeout, d.connect_timeout);
    assert_eq!(s.probe_interval, d.probe_interval);
    assert!(s.listen.is_none() && d.listen.is_none());
    assert_eq!(s.cdn_allow, d.cdn_allow);
    assert_eq!(s.max_file_bytes, d.max_file_bytes);
    // Handed over as written; parsed by its owner, the same template.
    let template = |s: &Settings| crate::runtime::path_template(s).unwrap();
    assert_eq!(template(&s), template(&d));
    assert_eq!(s.sidecar, d.sidecar);
}

#[test]
fn cdn_allow_and_max_file_bytes_are_checked_naming_the_key() {
    let resolve = |text: &str| {
        Settings::resolve(
            &Overrides::default(),
            &env_of(&[("HOME", "/h")]),
            Some("/c.toml".into()),
            file(text),
        )
    };
    let s = resolve("cdn_allow = [\"AliyunCS.com\", \".minimax.io\"]\nmax_file_bytes = 5").unwrap();
    assert_eq!(s.cdn_allow, ["aliyuncs.com", "minimax.io"]);
    assert_eq!(s.max_file_bytes, 5);
    let d = resolve("").unwrap();
    assert!(d.cdn_allow.is_empty());
    assert_eq!(d.max_file_bytes, 64 << 30);
    for (text, key) in [
        ("cdn_allow = [\"https://cdn.example\"]", "cdn_allow"),
        ("cdn_allow = [\"\"]", "cdn_allow"),
        ("max_file_bytes = 0", "max_file_bytes"),
    ] {
        let err = resolve(text).unwrap_err().to_string();
        assert!(
            err.contains("/c.toml") && err.contains(key),
            "{text}: {err}"
        );
    }
}

#[test]
fn a_secret_in_a_file_others_can_read_is_named_with_the_fix() {
    let path = Path::new("/etc/minimax-dl/config.toml");
    let warning = exposure_warning(path, 0o100644, "the API key").unwrap();
    assert!(
        warning.contains("/etc/minimax-dl/config.toml")
            && warning.contains("chmod 600 /etc/minimax-dl/config.toml")
            && warning.contains("0644"),
        "{warning}"
    );
    assert!(exposure_warning(path, 0o100640, "x").is_some(), "group");
    assert!(exposure_warning(path, 0o100600, "x").is_none());
    assert!(exposure_warning(path, 0o100400, "x").is_none());
    let secrets = |text: &str| file(text).secret_keys();
    assert_eq!(
        secrets("database = \"postgres://dl:hunter2@db/queue\""),
        ["database"]
    );
    assert_eq!(
        secrets("database = \"host=db user=dl password=hunter2\""),
        ["database"]
    );
    assert!(secrets("database = \"postgres://dl@db/queue\"").is_empty());
    assert_eq!(
        secrets("listen_token = \"0123456789abcdef\""),
        ["listen_token"]
    );
    assert!(secrets("database = \"/var/lib/minimax-dl/queue.db\"").is_empty());
}
