//! Mistakes a new user makes, walked through the binary one by one: each
//! must end with its exit code and one plain message naming the problem
//! (no Rust debug formatting, no cause said twice), and must leave every
//! file and the queue as they were.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::support::{self, BIN, TEST_KEY};

/// A file or directory a case puts in its world before it runs.
#[derive(Clone, Copy)]
enum Put {
    File(&'static str, &'static [u8]),
    Dir(&'static str),
}

/// One bad input: the arguments (`@/x` is `x` in the case's own directory),
/// extra environment, what is there first, and what must come out.
struct Case {
    args: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
    put: &'static [Put],
    code: i32,
    /// A piece of the message that names the problem.
    says: &'static str,
}

const fn case(args: &'static [&'static str], code: i32, says: &'static str) -> Case {
    Case {
        args,
        env: &[],
        put: &[],
        code,
        says,
    }
}

const fn with_env(
    env: &'static [(&'static str, &'static str)],
    args: &'static [&'static str],
    says: &'static str,
) -> Case {
    Case {
        args,
        env,
        put: &[],
        code: 2,
        says,
    }
}

const fn with_files(
    put: &'static [Put],
    args: &'static [&'static str],
    says: &'static str,
) -> Case {
    Case {
        args,
        env: &[],
        put,
        code: 2,
        says,
    }
}

const CONFIG: &str = "config.toml";

const CASES: &[Case] = &[
    // Ids and id lists.
    case(
        &["enqueue", "abc"],
        2,
        "invalid file id \"abc\": not a decimal integer",
    ),
    case(&["enqueue", "0"], 2, "zero is not a file id"),
    case(&["enqueue", "-5"], 2, "negative ids do not exist"),
    case(&["enqueue", "99999999999999999999"], 2, "too large"),
    case(&["enqueue", "12", "1x"], 2, "invalid file id \"1x\""),
    case(&["enqueue"], 2, "no file ids or tasks given"),
    with_files(
        &[Put::Dir("ids")],
        &["enqueue", "--from", "@/ids"],
        "it is a directory",
    ),
    case(
        &["enqueue", "--from", "@/missing.txt"],
        2,
        "cannot read ids from",
    ),
    with_files(
        &[Put::File("ids.txt", b"5\n\xef\xbb\xbf202\n")],
        &["enqueue", "--from", "@/ids.txt"],
        "on line 2: it holds a byte-order mark (U+FEFF) at character 1",
    ),
    with_files(
        &[Put::File("ids.txt", b"5\n\x00402\n")],
        &["enqueue", "--from", "@/ids.txt"],
        "on line 2: it holds a NUL character (U+0000) at character 1",
    ),
    with_files(
        &[Put::File("ids.txt", b"6\n7\xc2\xa08\n")],
        &["enqueue", "--from", "@/ids.txt"],
        "no-break space (U+00A0)",
    ),
    with_files(
        &[Put::File("ids.txt", b"# nothing\n\n")],
        &["enqueue", "--from", "@/ids.txt"],
        "holds no file ids",
    ),
    with_files(
        &[Put::File("ids.txt", b"\xff\xfe1\n")],
        &["enqueue", "--from", "@/ids.txt"],
        "line 1 is not UTF-8 text",
    ),
    // Generation tasks.
    case(
        &["enqueue", "--task", "2001", "v2:2001"],
        2,
        "task 2001 is given as v1:2001 and as v2:2001",
    ),
    case(
        &["enqueue", "--task", "v2:1001"],
        2,
        "task 1001 is already known under v1 (given here as v2:1001)",
    ),
    case(
        &["enqueue", "--task", "v3:5"],
        2,
        "the prefix must be v1: or v2:",
    ),
    with_files(
        &[Put::Dir("tasks")],
        &["enqueue", "--tasks-from", "@/tasks"],
        "it is a directory",
    ),
    // Where the queue and the archive are.
    with_files(
        &[Put::Dir("qdir")],
        &["--db", "@/qdir", "status"],
        "is a directory: name a file",
    ),
    with_files(
        &[Put::Dir("qdir")],
        &["--db", "@/qdir", "enqueue", "5"],
        "is a directory: name a file",
    ),
    with_files(
        &[Put::File("out.txt", b"not a directory\n")],
        &["--out", "@/out.txt", "fetch", "5"],
        "is a file, not a directory",
    ),
    with_files(
        &[Put::File("out.txt", b"not a directory\n")],
        &["--out", "@/out.txt", "run", "--exit-when-idle"],
        "is a file, not a directory",
    ),
    // The config file and the environment.
    case(
        &["--config", "@/nope.toml", "status"],
        2,
        "cannot read the config file",
    ),
    with_files(
        &[Put::Dir("confdir")],
        &["--config", "@/confdir", "status"],
        "it is a directory",
    ),
    with_files(
        &[Put::File(CONFIG, b"colour = \"blue\"\n")],
        &["status"],
        "unknown field",
    ),
    with_files(
        &[Put::File(CONFIG, b"not toml [")],
        &["status"],
        "config file",
    ),
    with_files(
        &[Put::File(CONFIG, b"concurrency = \"four\"\n")],
        &["status"],
        "key `concurrency`: invalid type",
    ),
    with_files(
        &[Put::File(CONFIG, b"task_api = \"v9\"\n")],
        &["status"],
        "is not \"v1\" or \"v2\"",
    ),
    with_env(
        &[("MINIMAX_DL_REQUESTS_PER_MINUTE", "1000000000000")],
        &["status"],
        "1000000000000 is not in 1..=",
    ),
    with_env(
        &[("MINIMAX_DL_REQUESTS_PER_MINUTE", "lots")],
        &["status"],
        "\"lots\" is not a whole number",
    ),
    with_env(
        &[("MINIMAX_DL_CONCURRENCY", "0")],
        &["status"],
        "0 is not in 1..=",
    ),
    with_env(
        &[("MINIMAX_API_BASE", "http://api.example.com")],
        &["status"],
        "uses plain http",
    ),
    with_env(
        &[("MINIMAX_API_BASE", "ftp://api.example.com")],
        &["status"],
        "has scheme \"ftp\"",
    ),
    with_env(
        &[("MINIMAX_API_BASE", "https://u:pw@api.example.com")],
        &["status"],
        "user name or password",
    ),
    with_env(
        &[("MINIMAX_API_BASE", "not a url")],
        &["status"],
        "is not a URL",
    ),
    with_env(
        &[("MINIMAX_DL_LISTEN", "nowhere")],
        &["run", "--exit-when-idle"],
        "nowhere",
    ),
    // The key: an empty MINIMAX_API_KEY leaves the choice to api_key_file.
    Case {
        args: &["fetch", "1"],
        env: &[("MINIMAX_API_KEY", "")],
        put: &[
            Put::Dir("keydir"),
            Put::File(CONFIG, b"api_key_file = \"keydir\"\n"),
        ],
        code: 2,
        says: "it is a directory",
    },
    Case {
        args: &["fetch", "1"],
        env: &[("MINIMAX_API_KEY", "")],
        put: &[Put::File(
            CONFIG,
            b"api_key_file = \"/nonexistent/minimax-key\"\n",
        )],
        code: 2,
        says: "cannot read the API key file /nonexistent/minimax-key",
    },
    // Flags and verbs.
    case(
        &["status", "--watch", "--interval", "1ms"],
        2,
        "\"1ms\" is not between 100ms and 1h",
    ),
    case(
        &["prune", "--done-older-than", "banana"],
        2,
        "\"banana\" is not an age like 30d",
    ),
    case(
        &["sync", "--since", "\u{feff}2026-07-01"],
        2,
        "--since: \"<U+FEFF>2026-07-01\" is not a date (2026-07-01)",
    ),
    case(&["list", "--state", "bogus"], 2, "bogus"),
    case(&["show", "abc"], 2, "abc"),
    case(&["retry", "999"], 2, "999"),
    case(&["cancel", "abc"], 2, "invalid file id \"abc\""),
    case(&["export", "--format", "xml"], 2, "invalid value 'xml'"),
    case(&["completions", "tcsh"], 2, "invalid value 'tcsh'"),
    case(&["run", "--concurrency", "0"], 2, "0 is not in 1..=256"),
    case(&["fetch", "abc"], 2, "invalid file id \"abc\""),
    case(&["verify", "999"], 2, "999"),
    case(&["frobnicate"], 2, "unrecognized subcommand 'frobnicate'"),
];

/// The paths under `dir` with each file's bytes (the queue's own files
/// aside: their bytes may move when SQLite checkpoints; the queue is
/// compared by its contents).
fn files(dir: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    let mut found = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            let name = path.strip_prefix(dir).unwrap().display().to_string();
            if name.starts_with("queue.db") {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
                found.insert(name, None);
            } else {
                found.insert(name, Some(std::fs::read(&path).unwrap()));
            }
        }
    }
    found
}

/// The binary in a clean environment, at home in `dir`; `--db` and `--out`
/// point into it unless the case names its own.
fn command(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
    let at = |a: &str| match a.strip_prefix("@/") {
        Some(rest) => dir.join(rest).display().to_string(),
        None => a.to_string(),
    };
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("XDG_CONFIG_HOME", dir.join("xdg-config"))
        .env("XDG_DATA_HOME", dir.join("xdg-data"))
        .env("MINIMAX_DL_CONFIG", dir.join(CONFIG))
        .env("MINIMAX_API_KEY", TEST_KEY)
        .current_dir(dir)
        .kill_on_drop(true);
    if !args.contains(&"--db") {
        cmd.arg("--db").arg(dir.join("queue.db"));
    }
    if !args.contains(&"--out") {
        cmd.arg("--out").arg(dir.join("archive"));
    }
    cmd.args(args.iter().map(|a| at(a)));
    for (k, v) in env {
        cmd.env(k, at(v));
    }
    cmd
}

async fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    support::run_bounded(&mut command(dir, args, env), Duration::from_secs(60)).await
}

/// The queue's jobs and tasks as `list --json` prints them (read with no
/// config file: a case's own may be the bad input).
async fn queue_contents(dir: &Path) -> String {
    let mut text = String::new();
    for args in [&["list", "--json"][..], &["list", "--tasks", "--json"]] {
        let out = run(dir, args, &[("MINIMAX_DL_CONFIG", "/dev/null")]).await;
        support::assert_success(&out);
        text.push_str(&support::stdout(&out));
    }
    text
}

/// What is wrong with a message, if anything: none at all, Rust's debug
/// formatting, an OS error code, a cause said twice, a line repeated.
fn flaws(stderr: &str) -> Vec<String> {
    let mut flaws = Vec::new();
    for artefact in [
        "Some(", "None", "\\u{", "\\0", "os error", "Error {", "Os {", "kind:",
    ] {
        if stderr.contains(artefact) {
            flaws.push(format!("debug artefact {artefact:?}"));
        }
    }
    // No case has a secret file others can read: `chmod` is advice for
    // a file given where a directory is (or the reverse).
    if stderr.contains("chmod") {
        flaws.push("advice to chmod".into());
    }
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    for (i, line) in lines.iter().enumerate() {
        if lines[..i].contains(line) {
            flaws.push(format!("line repeated: {line}"));
        }
        let parts: Vec<&str> = line.split(": ").map(str::trim).collect();
        for (j, part) in parts.iter().enumerate() {
            if part.len() > 3 && parts[..j].contains(part) {
                flaws.push(format!("said twice: {part}"));
            }
        }
    }
    if lines.is_empty() {
        flaws.push("no message".into());
    }
    flaws
}

fn put(dir: &Path, what: &[Put]) {
    for p in what {
        match *p {
            Put::File(name, bytes) => std::fs::write(dir.join(name), bytes).unwrap(),
            Put::Dir(name) => std::fs::create_dir_all(dir.join(name)).unwrap(),
        }
    }
}

#[tokio::test]
async fn every_bad_input_is_refused_plainly_and_changes_nothing() {
    assert!(CASES.len() >= 40, "{} cases", CASES.len());
    let mut failures = Vec::new();
    for case in CASES {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path();
        std::fs::write(dir.join(CONFIG), "").unwrap();
        for setup in [
            &["enqueue", "1", "2", "3"][..],
            &["enqueue", "--task", "1001"],
        ] {
            support::assert_success(&run(dir, setup, &[]).await);
        }
        put(dir, case.put);
        let (files_before, queue_before) = (files(dir), queue_contents(dir).await);
        let out = run(dir, case.args, case.env).await;
        let stderr = support::stderr(&out);
        let mut wrong = flaws(&stderr);
        if out.status.code() != Some(case.code) {
            wrong.push(format!("exit {:?}, not {}", out.status.code(), case.code));
        }
        if !stderr.contains(case.says) {
            wrong.push(format!("the message does not say {:?}", case.says));
        }
        if files(dir) != files_before {
            wrong.push("files were created or changed".into());
        }
        if queue_contents(dir).await != queue_before {
            wrong.push("the queue changed".into());
        }
        if !wrong.is_empty() {
            failures.push(format!(
                "{:?} {:?}: {}\n  stderr: {stderr}",
                case.args,
                case.env,
                wrong.join("; ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn https_to_a_plain_http_server_says_it_does_not_speak_tls() {
    let sim = support::sim(support::small_files()).await;
    let plain = sim.api_base();
    let https = plain.replacen("http://", "https://", 1);
    let home = tempfile::tempdir().unwrap();
    let dir = home.path();
    std::fs::write(dir.join(CONFIG), "").unwrap();
    let out = run(dir, &["sync"], &[("MINIMAX_API_BASE", &https)]).await;
    let stderr = support::stderr(&out);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("the server does not speak TLS"), "{stderr}");
    assert!(!stderr.contains("InvalidContentType"), "{stderr}");
}
