//! What admins expect of a command-line tool: `--version` with the commit
//! and backends, shell completions, a man page, `status --watch`.

use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::support::{self, BIN, World, assert_exit, assert_success, stdout};

#[tokio::test]
async fn version_names_the_version_the_commit_and_the_backends() {
    let out = World::new().run(&["--version"]).await;
    assert_success(&out);
    let line = stdout(&out);
    let expected = format!("minimax-dl {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(line.starts_with(&expected), "{line}");
    let commit = line[expected.len()..].split(';').next().unwrap();
    let hex = commit.len() >= 7 && commit.bytes().all(|b| b.is_ascii_hexdigit());
    assert!(hex || commit == "unknown", "{line}");
    assert!(
        line.trim_end().ends_with("backends: sqlite, postgres)"),
        "{line}"
    );
}

#[tokio::test]
async fn completions_are_printed_for_each_shell_even_with_a_broken_config() {
    let world = World::new();
    std::fs::write(&world.config, "not toml [").unwrap();
    for (shell, marker) in [
        ("bash", "complete -F _minimax__dl"),
        ("zsh", "#compdef minimax-dl"),
        ("fish", "complete -c minimax-dl"),
    ] {
        let out = world.run(&["completions", shell]).await;
        assert_success(&out);
        let script = stdout(&out);
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(
            script.contains("enqueue") && script.contains("exit-when-idle"),
            "{shell}"
        );
    }
    let out = world.run(&["completions", "tcsh"]).await;
    assert_exit(&out, 2);
}

#[tokio::test]
async fn the_bash_completion_script_is_valid_bash() {
    let out = World::new().run(&["completions", "bash"]).await;
    assert_success(&out);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("minimax-dl.bash");
    std::fs::write(&path, &out.stdout).unwrap();
    let check = std::process::Command::new("bash")
        .arg("-n")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[tokio::test]
async fn the_man_page_is_roff_describing_every_verb() {
    let out = World::new().run(&["man"]).await;
    assert_success(&out);
    let page = stdout(&out);
    assert!(page.starts_with(".ie") || page.starts_with(".TH"), "{page}");
    assert!(page.contains(".TH minimax-dl 1"), "{page}");
    for verb in ["enqueue", "run", "status", "retry", "completions"] {
        assert!(page.contains(verb), "no {verb} in the man page");
    }
}

/// Reads what a child prints until `enough` says so (bounded).
async fn read_until(
    out: &mut tokio::process::ChildStdout,
    enough: impl Fn(&str) -> bool,
) -> String {
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(30), async {
        while !enough(&String::from_utf8_lossy(&text)) {
            match out.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => text.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&text).into_owned();
    assert!(read.is_ok(), "not enough output in 30 s:\n{text}");
    text
}

#[tokio::test]
async fn status_watch_repeats_into_a_pipe_until_ctrl_c() {
    let world = World::new();
    assert_success(&world.run(&["enqueue", "1", "2"]).await);
    let mut child = support::spawn(&world, &["status", "--watch", "--interval", "200ms"]);
    let mut out = child.stdout.take().unwrap();
    let text = read_until(&mut out, |t| t.matches("--- ").count() >= 3).await;
    assert!(
        !text.contains('\x1b'),
        "no terminal codes into a pipe: {text:?}"
    );
    assert!(text.contains("queued     2"), "{text}");
    support::signal(child.id().unwrap(), "-INT");
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0), "Ctrl-C is how a watch ends");

    let mut child = support::spawn(
        &world,
        &["status", "--watch", "--json", "--interval", "200ms"],
    );
    let mut out = child.stdout.take().unwrap();
    let text = read_until(&mut out, |t| t.lines().count() >= 3).await;
    for line in text.lines().take(3) {
        let counts: serde_json::Value = serde_json::from_str(line).expect("one JSON object a line");
        assert_eq!(counts["queued"], 2, "{line}");
    }
    support::signal(child.id().unwrap(), "-INT");
    support::finish(child, Duration::from_secs(30)).await;
}

#[tokio::test]
async fn status_watch_redraws_a_terminal_in_place() {
    const REDRAW: &str = "\x1b[H\x1b[2J";
    let world = World::new();
    assert_success(&world.run(&["enqueue", "1"]).await);
    // `script` (util-linux) gives the command a terminal. The shell prints
    // its pid, then becomes minimax-dl (`exec`), so the test can end the
    // watch with SIGINT once it has seen two redraws, however slowly a
    // loaded machine starts it.
    let quote = |p: &std::path::Path| format!("'{}'", p.display());
    let line = format!(
        "echo pid=$$; exec {BIN} --db {} status --watch --interval 200ms",
        quote(&world.db)
    );
    let mut child = tokio::process::Command::new("script")
        .args(["-q", "-c", &line, "/dev/null"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", world.dir.path())
        .env("MINIMAX_DL_CONFIG", &world.config)
        .env("TERM", "xterm")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("script");
    let mut out = child.stdout.take().unwrap();
    let mut text = String::new();
    let pid = tokio::time::timeout(Duration::from_secs(60), async {
        let mut buf = [0u8; 4096];
        loop {
            let n = out.read(&mut buf).await.expect("read the terminal");
            assert!(n > 0, "the watch ended by itself: {text:?}");
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
            let pid = text
                .split("pid=")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(pid) = pid
                && text.matches(REDRAW).count() >= 2
            {
                return pid;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("two redraws within 60 s: {text:?}"));
    support::signal(pid, "-INT");
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), out.read_to_end(&mut rest))
        .await
        .expect("the watch ends on SIGINT")
        .expect("read the terminal");
    child.wait().await.expect("script");
    assert!(text.contains("Every 200ms: minimax-dl status"), "{text:?}");
}

#[tokio::test]
async fn an_interval_needs_watch() {
    let out = World::new().run(&["status", "--interval", "1s"]).await;
    assert_exit(&out, 2);
    let out = World::new()
        .run(&["status", "--watch", "--interval", "1ms"])
        .await;
    assert_exit(&out, 2);
}
