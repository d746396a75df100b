//! The dependency rules of ARCHITECTURE.md, checked on the source tree: the
//! ranks of its "Dependency rules" table (a module names only lower ranks,
//! and every module has one), pure policy files doing no I/O, no product
//! function over 80 lines. A broken rule fails here, naming the file and
//! the line. The simulator is a crate of its own (`crates/minimax-sim`): it
//! must not depend on this one, and only the demo and the `sim` verb use it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

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

/// A `tests.rs` / `*_tests.rs` file is a `#[cfg(test)] mod` of its own.
fn is_test_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n == "tests.rs" || n.ends_with("_tests.rs"))
}

/// The lines of a file's code up to its test module (`#[cfg(test)] mod
/// tests {`), with line numbers; comment lines left out, and a `use`
/// written over several lines joined into one.
fn code_lines(path: &Path) -> Vec<(usize, String)> {
    let lines = product_lines(path);
    let mut out: Vec<(usize, String)> = Vec::new();
    let mut open_use = false;
    for (n, line) in lines.iter().enumerate() {
        let trimmed = line.trim();
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

/// The ranks table of ARCHITECTURE.md ("## Dependency rules"): each row is
/// `| RANK | `module`, `module` | why |`. A module may import only modules
/// of a lower rank; a module missing from the table fails the check, so a
/// new module gets its place written down before it can be imported.
fn ranks() -> HashMap<String, u32> {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let section = text
        .split("\n## ")
        .find(|s| s.starts_with("Dependency rules"))
        .expect("ARCHITECTURE.md has a \"## Dependency rules\" section");
    let mut ranks = HashMap::new();
    for row in section.lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let Some(rank) = cells.get(1).and_then(|c| c.parse::<u32>().ok()) else {
            continue; // the header and its rule
        };
        for module in cells[2].split(',') {
            let module = module.trim().trim_matches('`');
            let earlier = ranks.insert(module.to_string(), rank);
            assert!(
                earlier.is_none(),
                "{module} is ranked twice in ARCHITECTURE.md"
            );
        }
    }
    assert!(
        ranks.len() >= 10,
        "the ranks table of ARCHITECTURE.md has {} modules",
        ranks.len()
    );
    ranks
}

/// The crate's `macro_rules!` names and the modules defining them: a
/// `crate::say!(…)` is an import of `stderr`.
fn macro_homes(files: &[PathBuf]) -> HashMap<String, String> {
    let mut homes = HashMap::new();
    for path in files {
        let (_, module) = module_of(path);
        for line in std::fs::read_to_string(path).unwrap().lines() {
            if let Some(name) = line.trim().strip_prefix("macro_rules! ") {
                let name: String = name
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                homes.insert(name, module.clone());
            }
        }
    }
    homes
}

#[test]
fn modules_import_only_lower_ranks() {
    let ranks = ranks();
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let macros = macro_homes(&files);
    let mut broken = Vec::new();
    for path in &files {
        let (file, module) = module_of(path);
        let Some(&rank) = ranks.get(&module) else {
            broken.push(format!(
                "{file}: module {module} has no rank: give it a row in ARCHITECTURE.md's \"Dependency rules\""
            ));
            continue;
        };
        for (line_no, line) in code_lines(path) {
            for named in crate_paths(&line) {
                let target = macros.get(&named[0]).unwrap_or(&named[0]);
                if *target == module {
                    continue;
                }
                match ranks.get(target) {
                    Some(&below) if below < rank => {}
                    Some(&other) => broken.push(format!(
                        "{file}:{line_no}: {module} (rank {rank}) names crate::{target} (rank {other})"
                    )),
                    None => broken.push(format!(
                        "{file}:{line_no}: {module} names crate::{target}, which has no rank"
                    )),
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

/// The longest a product function may be, from its `fn` line to its
/// closing brace: past a screen, a function is a list of steps waiting for
/// names (ARCHITECTURE.md, "Conventions").
const MAX_FUNCTION_LINES: usize = 80;

/// Every function of `lines` (a file's code up to its test module, as
/// rustfmt lays it out) longer than `max`, as (line of its `fn`, name,
/// length). The body ends at the first line that is its indentation
/// plus `}`.
fn long_functions(lines: &[&str], max: usize) -> Vec<(usize, String, usize)> {
    let mut found = Vec::new();
    for (at, line) in lines.iter().enumerate() {
        let code = line.trim_start();
        let indent = line.len() - code.len();
        let Some(name) = function_name(code) else {
            continue;
        };
        // The signature ends at `{` (a body), `;` (a declaration) or `}` (a
        // body on the same line).
        let Some(open) =
            (at..lines.len()).find(|&i| lines[i].trim_end().ends_with(['{', ';', '}']))
        else {
            continue;
        };
        if !lines[open].trim_end().ends_with('{') {
            continue;
        }
        let close = format!("{}}}", " ".repeat(indent));
        if let Some(end) = (open + 1..lines.len()).find(|&i| lines[i].trim_end() == close) {
            let length = end - at + 1;
            if length > max {
                found.push((at + 1, name, length));
            }
        }
    }
    found
}

/// `pub(crate) async fn name<T>(…` → `name`; anything else → `None`.
fn function_name(code: &str) -> Option<String> {
    let mut rest = code;
    for prefix in [
        "pub(crate) ",
        "pub(super) ",
        "pub ",
        "const ",
        "async ",
        "unsafe ",
        "extern \"C\" ",
    ] {
        rest = rest.strip_prefix(prefix).unwrap_or(rest);
    }
    let name: String = rest
        .strip_prefix("fn ")?
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

/// A file's lines up to its test module (none for a test file).
fn product_lines(path: &Path) -> Vec<String> {
    if is_test_file(path) {
        return Vec::new();
    }
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let end = (0..lines.len())
        .find(|&n| {
            let next = lines.get(n + 1).map_or("", |l| l.trim());
            lines[n].trim() == "#[cfg(test)]" && next.starts_with("mod ") && next.ends_with('{')
        })
        .unwrap_or(lines.len());
    lines[..end].iter().map(|l| l.to_string()).collect()
}

#[test]
fn no_product_function_is_longer_than_80_lines() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    rust_files(&root().join(SIM_CRATE).join("src"), &mut files);
    let mut long = Vec::new();
    for path in &files {
        let lines = product_lines(path);
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        for (line_no, name, length) in long_functions(&lines, MAX_FUNCTION_LINES) {
            let file = path.strip_prefix(root()).unwrap().display();
            long.push(format!("{file}:{line_no}: {name} is {length} lines"));
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_FUNCTION_LINES} lines (name their steps):\n{}",
        long.join("\n")
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

    assert_eq!(
        function_name("pub(crate) async fn go<T>(x: T) {").as_deref(),
        Some("go")
    );
    assert_eq!(function_name("let f = fn_ptr;"), None);
    let code = [
        "impl X {",
        "    fn short(&self) {}",
        "    pub fn long(&self)",
        "    where",
        "        Self: Sized,",
        "    {",
        "        let s = \"}\";",
        "    }",
        "    fn declared(&self);",
        "}",
    ];
    assert_eq!(long_functions(&code, 5), vec![(3, "long".to_string(), 6)]);
    assert!(long_functions(&code, 6).is_empty());
    let ranks = ranks();
    assert!(ranks["queue"] < ranks["worker"] && ranks["stderr"] == 0);
}
