//! The dependency rules of ARCHITECTURE.md, checked on the source tree: a
//! forbidden `crate::…` path in a module's code (its tests aside) fails
//! here, naming the file and the line. The simulator is a crate of its own
//! (`crates/minimax-sim`): it must not depend on this one, and only the demo
//! and the `sim` verb use it.

use std::path::{Path, PathBuf};

/// Which top-level modules each module must not name.
const FORBIDDEN: &[(&str, &[&str])] = &[
    // fetch and api know nothing of the queue or of who drives them.
    (
        "fetch",
        &[
            "api", "queue", "gate", "worker", "daemon", "commands", "runtime", "demo", "metrics",
            "listen", "archive", "intake",
        ],
    ),
    (
        "api",
        &[
            "fetch", "queue", "gate", "worker", "daemon", "commands", "runtime", "demo", "metrics",
            "listen", "archive", "intake",
        ],
    ),
    // The queue is storage: it never touches the network or the archive.
    (
        "queue",
        &[
            "api", "fetch", "gate", "worker", "daemon", "commands", "runtime", "demo", "metrics",
            "listen", "archive", "intake",
        ],
    ),
    (
        "gate",
        &[
            "api", "fetch", "worker", "daemon", "commands", "runtime", "demo", "metrics", "listen",
            "archive", "intake",
        ],
    ),
    // The archive knows files and the queue's facts, not who fetched them.
    (
        "archive",
        &[
            "api", "gate", "worker", "daemon", "commands", "runtime", "demo", "metrics", "listen",
            "intake",
        ],
    ),
    // Workers and the pool report to observers; they never name metrics.
    (
        "worker",
        &[
            "daemon", "commands", "runtime", "demo", "metrics", "listen", "intake",
        ],
    ),
    // Task intake drives the API for tasks and hands the queue their jobs;
    // the pool runs its poller, the listener serves its callbacks.
    (
        "intake",
        &["daemon", "commands", "runtime", "demo", "metrics", "listen"],
    ),
    (
        "daemon",
        &["commands", "runtime", "demo", "metrics", "listen"],
    ),
    // Metrics hear the pool; the listener serves them and the queue.
    (
        "metrics",
        &["daemon", "commands", "runtime", "demo", "listen"],
    ),
    (
        "listen",
        &[
            "api", "fetch", "gate", "worker", "daemon", "commands", "runtime", "demo",
        ],
    ),
    ("runtime", &["commands", "demo"]),
    ("demo", &["commands"]),
    // Plain data and shared helpers at the bottom: they import nothing above.
    (
        "partial",
        &[
            "api", "fetch", "queue", "gate", "worker", "daemon", "commands", "runtime", "demo",
            "http", "config", "archive",
        ],
    ),
    (
        "http",
        &[
            "api", "fetch", "queue", "gate", "worker", "daemon", "commands", "runtime", "demo",
            "archive", "config",
        ],
    ),
    // Settings are plain values: config imports nothing above them.
    (
        "config",
        &[
            "api", "fetch", "queue", "gate", "worker", "daemon", "commands", "runtime", "demo",
            "metrics", "listen", "archive", "intake", "cli",
        ],
    ),
    (
        "location",
        &[
            "api", "fetch", "queue", "gate", "worker", "daemon", "commands", "runtime", "demo",
            "http", "config", "metrics", "listen", "archive", "intake",
        ],
    ),
    (
        "retry",
        &[
            "api", "fetch", "queue", "gate", "worker", "daemon", "commands", "runtime", "demo",
            "http", "config", "metrics", "listen", "archive", "intake",
        ],
    ),
    (
        "rate",
        &[
            "api", "fetch", "queue", "gate", "worker", "daemon", "commands", "runtime", "demo",
            "http", "config", "metrics", "listen", "archive", "intake",
        ],
    ),
    (
        "build_info",
        &[
            "api", "fetch", "queue", "gate", "worker", "daemon", "commands", "runtime", "demo",
            "http", "config", "metrics", "listen", "archive",
        ],
    ),
];

/// Only the demo and the `sim` verb (and the tests) use the simulator
/// crate.
const SIM_USERS: &[&str] = &["src/demo.rs", "src/commands/sim.rs"];

/// The simulator's crate, which models MiniMax on its own: a shared
/// misunderstanding of the wire must show up as a failing test, so it
/// borrows none of the client's parsing, types or helpers.
const SIM_CRATE: &str = "crates/minimax-sim";

/// Pure policy files: no I/O, so no runtime, network, database or file
/// system crate. (`reqwest::Url` is a plain type, re-exported from `url`.)
const POLICY_FILES: &[&str] = &[
    "src/api/classify.rs",
    "src/queue/state.rs",
    "src/fetch/range.rs",
    "src/fetch/naming.rs",
    "src/fetch/pieces.rs",
    "src/fetch/url_policy.rs",
    "src/worker/policy.rs",
    "src/archive/template.rs",
    "src/archive/manifest.rs",
    "src/api/task.rs",
    "src/queue/task.rs",
    "src/intake/policy.rs",
    "src/rate.rs",
    "src/retry.rs",
    "src/location/db.rs",
    "src/location/bucket.rs",
];
const IO_PATHS: &[&str] = &[
    "tokio",
    "reqwest",
    "sqlx",
    "std::fs",
    "std::net",
    "std::process",
    "libc",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/worker/pipeline.rs` → ("src/worker/pipeline.rs", "worker").
fn module_of(path: &Path) -> (String, String) {
    let relative = path.strip_prefix(root()).unwrap();
    let text = relative.to_string_lossy().replace('\\', "/");
    let first = text
        .strip_prefix("src/")
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .trim_end_matches(".rs")
        .to_string();
    (text, first)
}

/// The lines of a file's code up to its test module (`#[cfg(test)] mod
/// tests {`), with line numbers; comment lines left out, and a `use`
/// written over several lines joined into one.
fn code_lines(path: &Path) -> Vec<(usize, String)> {
    // A `tests.rs` / `*_tests.rs` file is a `#[cfg(test)] mod` of its own
    // (e.g. the simulator's tests driving the client against it).
    if path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n == "tests.rs" || n.ends_with("_tests.rs"))
    {
        return Vec::new();
    }
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut out: Vec<(usize, String)> = Vec::new();
    let mut open_use = false;
    for (n, line) in lines.iter().enumerate() {
        let trimmed = line.trim();
        let next = lines.get(n + 1).map_or("", |l| l.trim());
        if trimmed == "#[cfg(test)]" && next.starts_with("mod ") && next.ends_with('{') {
            break;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        if open_use && let Some((_, joined)) = out.last_mut() {
            joined.push(' ');
            joined.push_str(trimmed);
        } else {
            out.push((n + 1, trimmed.to_string()));
        }
        let starts_use = trimmed.starts_with("use ") || trimmed.starts_with("pub use ");
        if starts_use || open_use {
            open_use = !trimmed.ends_with(';');
        }
    }
    out
}

/// Every `crate::a::b` path a line names, as `["a", "b"]` (first two
/// segments), including those inside `use crate::{a::b, c}`.
fn crate_paths(line: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        let preceded_by_ident = rest[..at]
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$');
        rest = &rest[at + "crate::".len()..];
        if preceded_by_ident {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            for item in top_level_items(group) {
                found.push(segments(item.trim()));
            }
        } else {
            found.push(segments(rest));
        }
    }
    found.retain(|p| !p.is_empty() && !p[0].is_empty());
    found
}

/// The items of a `{…}` group (its opening brace already taken), split at
/// the commas outside nested groups.
fn top_level_items(group: &str) -> Vec<&str> {
    let (mut items, mut depth, mut start) = (Vec::new(), 0, 0);
    for (at, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&group[start..at]);
                return items;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    items.push(&group[start..]);
    items
}

fn segments(path: &str) -> Vec<String> {
    path.split("::")
        .take(2)
        .map(|s| {
            s.chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

#[test]
fn modules_import_only_downwards() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let mut broken = Vec::new();
    for path in &files {
        let (file, module) = module_of(path);
        for (line_no, line) in code_lines(path) {
            for named in crate_paths(&line) {
                let target = named[0].as_str();
                let forbidden = FORBIDDEN
                    .iter()
                    .any(|(m, banned)| *m == module && banned.contains(&target));
                if forbidden {
                    broken.push(format!(
                        "{file}:{line_no}: {module} must not use crate::{target}"
                    ));
                }
            }
            if names(&line, "minimax_sim") && !SIM_USERS.contains(&file.as_str()) {
                broken.push(format!(
                    "{file}:{line_no}: only demo, the sim verb and tests use the simulator (minimax_sim)"
                ));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "dependency rules broken:\n{}",
        broken.join("\n")
    );
}

/// Whether `line` names the identifier `ident` (not as part of a longer one).
fn names(line: &str, ident: &str) -> bool {
    line.match_indices(ident).any(|(at, _)| {
        let before = line[..at].chars().last();
        let after = line[at + ident.len()..].chars().next();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
            && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

#[test]
fn the_simulator_depends_on_nothing_of_the_client() {
    let manifest_path = root().join(SIM_CRATE).join("Cargo.toml");
    let manifest: toml::Table = std::fs::read_to_string(&manifest_path)
        .unwrap()
        .parse()
        .unwrap();
    let mut tables = Vec::new();
    for kind in ["dependencies", "dev-dependencies", "build-dependencies"] {
        tables.extend(manifest.get(kind).and_then(|t| t.as_table()));
        for target in manifest
            .get("target")
            .and_then(|t| t.as_table())
            .into_iter()
            .flat_map(|t| t.values())
        {
            tables.extend(target.get(kind).and_then(|t| t.as_table()));
        }
    }
    assert!(!tables.is_empty(), "{manifest_path:?} has no dependencies");
    for (name, spec) in tables.iter().flat_map(|t| t.iter()) {
        let package = spec.get("package").and_then(|p| p.as_str()).unwrap_or(name);
        assert_ne!(package, "minimax-dl", "the simulator depends on the client");
        // The workspace's only path dependency is the simulator itself.
        assert!(
            spec.get("path").is_none(),
            "{SIM_CRATE} depends on a path: {name}"
        );
    }
    let mut files = Vec::new();
    rust_files(&root().join(SIM_CRATE).join("src"), &mut files);
    assert!(files.len() >= 5, "{files:?}");
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        for (n, line) in text.lines().enumerate() {
            assert!(
                !names(line, "minimax_dl"),
                "{}:{}: the simulator names the client",
                path.display(),
                n + 1
            );
        }
    }
}

#[test]
fn policy_modules_do_no_io() {
    let mut broken = Vec::new();
    for file in POLICY_FILES {
        let path = root().join(file);
        assert!(
            path.exists(),
            "{file} is listed as a policy module but does not exist"
        );
        for (line_no, line) in code_lines(&path) {
            let line = line.replace("reqwest::Url", "Url");
            for io in IO_PATHS {
                if names(&line, io) {
                    broken.push(format!("{file}:{line_no}: a policy module names {io}"));
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "policy modules doing I/O:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_checks_see_what_they_look_for() {
    assert_eq!(
        crate_paths("use crate::queue::{Job, Queue};"),
        vec![vec!["queue".to_string(), "".to_string()]]
    );
    assert_eq!(
        crate_paths("use crate::{api::X, queue};"),
        vec![
            vec!["api".to_string(), "X".to_string()],
            vec!["queue".to_string()]
        ]
    );
    assert_eq!(
        crate_paths("let x = crate::demo::run(files, dir);"),
        vec![vec!["demo".to_string(), "run".to_string()]]
    );
    assert_eq!(
        crate_paths("use crate::{queue::{self, state}, api};")
            .iter()
            .map(|p| p[0].as_str())
            .collect::<Vec<_>>(),
        ["queue", "api"]
    );
    assert!(crate_paths("$crate::stderr::line(x)").is_empty());
    assert!(crate_paths("minimax_dl::queue::Queue").is_empty());
    assert!(names(
        "use minimax_sim::{SimConfig, Simulator};",
        "minimax_sim"
    ));
    assert!(!names("let minimax_sim_port = 1;", "minimax_sim"));
}
