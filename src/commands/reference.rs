//! `completions SHELL` and `man`: the command line described for the shell
//! and for `man`, generated from the clap definitions so they never drift.

use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::Cli;
use crate::runtime::exit;

/// The binary's name, as the shell completes it and man pages are named.
const BIN: &str = "minimax-dl";

pub(crate) fn completions(shell: clap_complete::Shell) -> Result<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), BIN, &mut script);
    let mut script = String::from_utf8_lossy(&script).into_owned();
    if shell == clap_complete::Shell::Bash {
        script = fix_bash_labels(&script, BIN);
    }
    out!("{}", script.trim_end());
    Ok(exit::OK)
}

/// clap_complete (4.6.12 and before, clap-rs/clap#6421, #6529) escapes a
/// hyphenated binary name one way in the loop that finds the subcommand
/// (`minimax__dl__subcmd__export`) and another in the `case` labels of each
/// subcommand's options (`minimax__subcmd__dl__subcmd__export`): no label
/// ever matches, and `minimax-dl export --<TAB>` offers nothing. The labels
/// are rewritten the way the loop spells them.
fn fix_bash_labels(script: &str, bin: &str) -> String {
    let loop_spelling = bin.replace('-', "__");
    let label_spelling = bin.replace('-', "__subcmd__");
    if loop_spelling == label_spelling {
        return script.to_string();
    }
    script.replace(
        &format!("{label_spelling}__subcmd__"),
        &format!("{loop_spelling}__subcmd__"),
    )
}

/// Prints minimax-dl(1), or with `dir` writes it and a page per verb.
pub(crate) fn man(dir: Option<&Path>) -> Result<u8> {
    let Some(dir) = dir else {
        let mut page = Vec::new();
        clap_mangen::Man::new(Cli::command()).render(&mut page)?;
        out!("{}", String::from_utf8_lossy(&page).trim_end());
        return Ok(exit::OK);
    };
    let pages = man_pages()?;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the man page directory {}", dir.display()))?;
    for (name, page) in &pages {
        let path = dir.join(name);
        write_whole(&path, page).with_context(|| format!("cannot write {}", path.display()))?;
    }
    out!("wrote {} man pages to {}", pages.len(), dir.display());
    Ok(exit::OK)
}

/// Every page, named as `man` finds it: minimax-dl.1 and, as git does, one
/// per verb (minimax-dl-enqueue.1, minimax-dl-db-copy.1, ...), each listing
/// its own options. minimax-dl(1) names them in its SUBCOMMANDS section.
pub(crate) fn man_pages() -> Result<Vec<(String, Vec<u8>)>> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut pages = Vec::new();
    let mut stack = vec![cmd];
    while let Some(cmd) = stack.pop() {
        stack.extend(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
        let man = clap_mangen::Man::new(cmd);
        let mut page = Vec::new();
        man.render(&mut page)?;
        pages.push((man.get_filename(), page));
    }
    pages.sort();
    Ok(pages)
}

/// Writes a file through a temporary name and a rename: a page is there
/// whole or not at all.
fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp-minimax-dl");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bash_labels_are_spelled_as_the_loop_spells_them() {
        for (bin, script, want) in [
            (
                "minimax-dl",
                "cmd=\"minimax__dl__subcmd__export\"\n minimax__subcmd__dl__subcmd__export)",
                "cmd=\"minimax__dl__subcmd__export\"\n minimax__dl__subcmd__export)",
            ),
            ("minimax-dl", "minimax__dl)", "minimax__dl)"),
            ("plain", "plain__subcmd__x)", "plain__subcmd__x)"),
            (
                "a-b-c",
                "a__subcmd__b__subcmd__c__subcmd__run)",
                "a__b__c__subcmd__run)",
            ),
        ] {
            assert_eq!(fix_bash_labels(script, bin), want, "{bin}");
        }
    }

    #[test]
    fn there_is_a_man_page_for_every_verb() {
        let pages = man_pages().unwrap();
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        for name in [
            "minimax-dl.1",
            "minimax-dl-enqueue.1",
            "minimax-dl-run.1",
            "minimax-dl-db.1",
            "minimax-dl-db-copy.1",
        ] {
            assert!(names.contains(&name), "{name} in {names:?}");
        }
        assert!(!names.iter().any(|n| n.contains("help")), "{names:?}");
    }
}
