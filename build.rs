// Embedded migrations are read at compile time (`include_str!` tracks each
// file; the folder is watched too, so a new file is seen by the unit test
// that compares the list with it).
// The commit `--version` prints comes from git when there is a checkout
// (`git rev-parse --short HEAD`), else it is "unknown" (a source tarball).
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=MINIMAX_DL_GIT_COMMIT={commit}");
    // A new commit moves HEAD or the branch it names: build the new commit
    // in. Only files that exist are named: cargo reruns this script at every
    // build for a missing one.
    let branch = git(&["symbolic-ref", "-q", "HEAD"]);
    for name in ["HEAD", "packed-refs"].into_iter().chain(branch.as_deref()) {
        if let Some(path) = git(&["rev-parse", "--git-path", name])
            && std::path::Path::new(&path).exists()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}

/// One line of git's output, or None when git or the checkout is missing.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let line = text.trim();
    (out.status.success() && !line.is_empty()).then(|| line.to_string())
}
