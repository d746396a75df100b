//! What this binary is: its version, the commit it was built from and the
//! queue backends compiled in, written once for `--version`, the
//! `minimax_dl_build_info` metric and the dashboard.

use std::sync::OnceLock;

pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `git rev-parse --short HEAD` when it was built (see `build.rs`),
/// "unknown" when it was built outside a git checkout.
pub(crate) const COMMIT: &str = env!("MINIMAX_DL_GIT_COMMIT");

/// The queue backends this binary can open: the one list to extend when a
/// backend is added (gate it with the same `cfg` as the backend).
pub(crate) const BACKENDS: &[&str] = &["sqlite", "postgres"];

/// "0.1.0 (commit 1a2b3c4; backends: sqlite, postgres)": what `--version` prints
/// after the program name.
pub(crate) fn version_line() -> &'static str {
    static LINE: OnceLock<String> = OnceLock::new();
    LINE.get_or_init(|| {
        format!(
            "{VERSION} (commit {COMMIT}; backends: {})",
            BACKENDS.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_line_names_version_commit_and_every_backend() {
        let line = version_line();
        assert!(line.starts_with(VERSION), "{line}");
        assert!(line.contains(COMMIT), "{line}");
        for backend in BACKENDS {
            assert!(line.contains(backend), "{line}");
        }
    }
}
