//! What describes the command line to people and shells: completions
//! driven through the real bash, zsh and fish completion machinery, the man
//! pages, the environment variables `--help` lists against those the code
//! reads, and the figures the README states.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{World, assert_success, skip_or_fail, stdout};

/// The completion script for `shell`, written to `dir/name`.
async fn script(shell: &str, dir: &Path, name: &str) -> PathBuf {
    let out = World::new().run(&["completions", shell]).await;
    assert_success(&out);
    let path = dir.join(name);
    std::fs::write(&path, &out.stdout).unwrap();
    path
}

/// Whether `shell` can be run here; if not, a skip (a failure under CI).
fn have(shell: &str) -> bool {
    let found = Command::new(shell)
        .args(["-c", "exit 0"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        skip_or_fail(
            &format!("{shell} is not installed"),
            &format!("apt-get install {shell}"),
        );
    }
    found
}

/// What the shell offers for `line` (the words typed before TAB).
type Completer = fn(&Path, &str) -> Vec<String>;

/// bash: the script's function called as readline calls it, with
/// COMP_WORDS and COMP_CWORD set; COMPREPLY is the answer.
fn bash_offers(script: &Path, line: &str) -> Vec<String> {
    let program = r#"
source "$1"
read -ra COMP_WORDS <<< "$2"
[[ "$2" == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
COMP_LINE="$2"
COMP_POINT=${#COMP_LINE}
cur="${COMP_WORDS[COMP_CWORD]}"
prev="${COMP_WORDS[COMP_CWORD-1]}"
_minimax__dl minimax-dl "$cur" "$prev"
printf '%s\n' "${COMPREPLY[@]}"
"#;
    run_shell("bash", &["-c", program, "bash"], script, line)
}

/// fish: its own `complete --do-complete` over the loaded script.
fn fish_offers(script: &Path, line: &str) -> Vec<String> {
    let program = r#"source $argv[1]; complete --do-complete "$argv[2]""#;
    run_shell("fish", &["--no-config", "-c", program], script, line)
        .into_iter()
        .map(|l| l.split('\t').next().unwrap_or("").to_string())
        .collect()
}

/// zsh: an interactive zsh in a pseudo-terminal (zpty) with compinit and
/// the script in its fpath; the line is typed with a TAB, and every match
/// compsys adds through `compadd` is recorded in a file (ZLE's own display
/// is not parsed).
fn zsh_offers(script: &Path, line: &str) -> Vec<String> {
    let dir = script.parent().unwrap();
    let fdir = dir.join("zfunc");
    std::fs::create_dir_all(&fdir).unwrap();
    std::fs::copy(script, fdir.join("_minimax-dl")).unwrap();
    let record = dir.join("zsh-matches");
    let done = dir.join("zsh-done");
    let _ = std::fs::remove_file(&record);
    let _ = std::fs::remove_file(&done);
    let setup = format!(
        r#"PROMPT=''; fpath=({fdir} $fpath); autoload -Uz compinit; compinit -u -D
compadd() {{ if [[ ${{(j: :)@}} == *-[OAD]\ * ]]; then builtin compadd "$@"; return; fi; local -a __m; builtin compadd -O __m "$@"; print -rl -- $__m >> {record}; builtin compadd "$@" }}
__mdl_done() {{ print done >> {done} }}; comppostfuncs=(__mdl_done)"#,
        fdir = fdir.display(),
        record = record.display(),
        done = done.display(),
    );
    let harness = r#"
zmodload zsh/zpty
zpty z 'zsh -f -i'
zpty -w z "$1"
zpty -w -n z "$2"$'\t'
for i in {1..300}; do [[ -e "$3" ]] && break; sleep 0.1; done
zpty -d z
"#;
    let status = Command::new("zsh")
        .args(["-f", "-c", harness, "zsh", &setup, line])
        .arg(&done)
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    assert!(done.exists(), "zsh never completed {line:?}");
    std::fs::read_to_string(&record)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn run_shell(shell: &str, args: &[&str], script: &Path, line: &str) -> Vec<String> {
    let out = Command::new(shell)
        .args(args)
        .arg(script)
        .arg(line)
        .env("HOME", script.parent().unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{shell}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// What each shell must offer: verbs at the top, and each verb's own
/// flags after it (the bash script offered none of those before).
const EXPECTED: &[(&str, &[&str])] = &[
    ("minimax-dl enq", &["enqueue"]),
    ("minimax-dl export --", &["--format", "--state"]),
    ("minimax-dl run --exit", &["--exit-when-idle"]),
    ("minimax-dl db copy --", &["--from", "--to", "--merge"]),
    ("minimax-dl status --", &["--watch", "--interval", "--json"]),
];

async fn check_shell(shell: &str, file: &str, offers: Completer) {
    if !have(shell) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = script(shell, dir.path(), file).await;
    for (line, wanted) in EXPECTED {
        let offered = offers(&script, line);
        for want in *wanted {
            assert!(
                offered.iter().any(|o| o == want),
                "{shell}: `{line}<TAB>` offers {offered:?}, not {want}"
            );
        }
    }
}

#[tokio::test]
async fn bash_completes_verbs_and_each_verbs_flags() {
    check_shell("bash", "minimax-dl.bash", bash_offers).await;
}

#[tokio::test]
async fn zsh_completes_verbs_and_each_verbs_flags() {
    check_shell("zsh", "minimax-dl.zsh", zsh_offers).await;
}

#[tokio::test]
async fn fish_completes_verbs_and_each_verbs_flags() {
    check_shell("fish", "minimax-dl.fish", fish_offers).await;
}

/// The long options a man page lists (`\-\-name` in roff).
fn options_in(page: &str) -> BTreeSet<String> {
    let page = page.replace("\\-", "-");
    page.split("--")
        .skip(1)
        .map(|rest| {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            format!("--{name}")
        })
        .collect()
}

#[tokio::test]
async fn man_writes_a_page_per_verb_each_listing_its_options() {
    let world = World::new();
    let dir = world.path("man1");
    let out = world.run(&["man", "--dir", dir.to_str().unwrap()]).await;
    assert_success(&out);
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let top = read("minimax-dl.1");
    // Every page minimax-dl(1) refers to exists, and lists its verb's flags.
    let referenced: Vec<String> = top
        .split("minimax\\-dl\\-")
        .skip(1)
        .map(|rest| rest.split('(').next().unwrap().replace("\\-", "-"))
        .collect();
    assert!(referenced.len() >= 15, "{referenced:?}");
    for verb in &referenced {
        let page = read(&format!("minimax-dl-{verb}.1"));
        assert!(page.contains(".TH minimax-dl-"), "{verb}: {page}");
        let help = World::new().run(&[verb.as_str(), "--help"]).await;
        if verb == "db" {
            assert!(read("minimax-dl-db-copy.1").contains("\\-\\-merge"));
            continue;
        }
        assert_success(&help);
        let listed = options_in(&page);
        for flag in stdout(&help)
            .split_whitespace()
            .filter(|w| w.starts_with("--") && w.len() > 2)
        {
            let flag = flag.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
            assert!(
                listed.contains(flag),
                "minimax-dl-{verb}(1) lacks {flag}: {listed:?}"
            );
        }
    }
    for (verb, flag) in [
        ("enqueue", "--tasks-from"),
        ("run", "--exit-when-idle"),
        ("prune", "--done-older-than"),
    ] {
        assert!(options_in(&read(&format!("minimax-dl-{verb}.1"))).contains(flag));
    }
}

/// Every environment variable name the source reads (the simulator's crate,
/// which the `sim` verb runs, included): `env("X")` (the config's injected
/// reader), `var`/`var_os`/`try_from_env`, and any `"MINIMAX_..."` literal
/// that is not a compile-time `env!`. `cli.rs`, which holds the list
/// itself, is left out.
fn env_reads_in_source() -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut stack = vec![root.join("src"), root.join("crates/minimax-sim/src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("src/cli.rs") {
                scan(&std::fs::read_to_string(&path).unwrap(), &mut found);
            }
        }
    }
    found
}

fn scan(text: &str, found: &mut BTreeSet<String>) {
    for pattern in [
        "env(\"",
        "env_nonempty(\"",
        "var(\"",
        "var_os(\"",
        "try_from_env(\"",
        "\"MINIMAX_",
    ] {
        for (at, _) in text.match_indices(pattern) {
            if text[..at].ends_with("env!(") {
                continue;
            }
            let start = at + pattern.len() - if pattern.starts_with('"') { 8 } else { 0 };
            let name: String = text[start..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if name.len() > 1 {
                found.insert(name);
            }
        }
    }
}

#[tokio::test]
async fn every_environment_variable_read_is_listed_in_help_and_the_man_page() {
    let listed: BTreeSet<String> = minimax_dl::cli::ENVIRONMENT
        .iter()
        .map(|v| v.name.to_string())
        .collect();
    let read = env_reads_in_source();
    assert!(read.contains("MINIMAX_DL_CALLBACK_TOKEN"), "{read:?}");
    assert_eq!(
        read, listed,
        "the source reads (left) and cli::ENVIRONMENT lists (right) differ"
    );
    let help = stdout(&World::new().run(&["--help"]).await);
    let man = stdout(&World::new().run(&["man"]).await).replace("\\-", "-");
    for var in minimax_dl::cli::ENVIRONMENT.iter().filter(|v| !v.test_hook) {
        assert!(help.contains(var.name), "--help lacks {}", var.name);
        assert!(man.contains(var.name), "the man page lacks {}", var.name);
    }
}

/// The README's ```sh blocks.
fn readme_commands() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut lines = Vec::new();
    let mut in_sh = false;
    for line in readme.lines() {
        match line.trim() {
            "```sh" => in_sh = true,
            "```" => in_sh = false,
            l if in_sh => lines.push(l.split(" #").next().unwrap().to_string()),
            _ => {}
        }
    }
    lines
}

#[tokio::test]
async fn every_flag_the_readme_shows_is_in_the_verbs_help() {
    let mut checked = 0;
    for line in readme_commands() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(at) = words.iter().position(|w| *w == "minimax-dl") else {
            continue;
        };
        let rest = &words[at + 1..];
        let Some(verb) = rest.iter().find(|w| !w.starts_with('-')) else {
            continue;
        };
        let help = World::new().run(&[verb, "--help"]).await;
        let text = stdout(&help);
        for flag in rest.iter().filter(|w| w.starts_with("--")) {
            let flag = flag.split('=').next().unwrap();
            assert!(
                text.contains(flag),
                "README: `{line}`: `minimax-dl {verb} --help` has no {flag}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} flags found in the README");
}

#[tokio::test]
async fn the_readme_exit_codes_are_the_binarys() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let table = readme.split("### Exit codes").nth(1).unwrap();
    let codes: Vec<&str> = table
        .lines()
        .skip_while(|l| !l.starts_with("| code"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| l.split('|').nth(1).unwrap().trim())
        .collect();
    assert_eq!(codes, ["0", "1", "2", "3", "4", "5", "130, 143"]);
    let help = stdout(&World::new().run(&["--help"]).await);
    for code in ["0", "1", "2", "3", "4", "5", "130", "143"] {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{code} "))),
            "--help says nothing of exit code {code}"
        );
    }
    // What the table says of 0 and 2, through the binary.
    let world = World::new();
    assert_eq!(world.run(&["enqueue", "7"]).await.status.code(), Some(0));
    for bad in [
        &["enqueue", "seven"][..],
        &["retry", "999"],
        &["status", "--no-such-flag"],
    ] {
        assert_eq!(world.run(bad).await.status.code(), Some(2), "{bad:?}");
    }
    let row = |code: &str| {
        table
            .lines()
            .find(|l| l.starts_with(&format!("| {code} |")))
            .unwrap()
            .to_string()
    };
    assert!(row("2").contains("API key"), "{}", row("2"));
}
