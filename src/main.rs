//! `minimax-dl`: parse the command line, set up logging, load settings, hand
//! over to the library, and turn the result into an exit code.

use std::process::ExitCode;

use clap::Parser;
use minimax_dl::cli::{Cli, Command};
use minimax_dl::{
    TestHooks, dispatch, error_exit, exit, init_logging, load_settings, overrides, process_env,
    say, stderr,
};

/// How long the exit waits for stderr to take the last lines.
const EXIT_FLUSH: std::time::Duration = std::time::Duration::from_millis(500);

fn main() -> ExitCode {
    let code = run();
    stderr::sink().flush(EXIT_FLUSH);
    ExitCode::from(code)
}

fn run() -> u8 {
    // The one read of the test hooks (nothing, in a release build).
    TestHooks::from_env().install();
    let cli = Cli::parse();
    let settings = load_settings(&overrides(&cli), &process_env);
    // demo, sim and the reference verbs need no configuration of their own;
    // doctor reports a broken one as its first check.
    if let Err(e) = &settings
        && !matches!(
            cli.command,
            Command::Demo { .. }
                | Command::Sim(_)
                | Command::Completions { .. }
                | Command::Man { .. }
                | Command::Doctor { .. }
        )
    {
        say!("minimax-dl: error: {}", stderr::error_line(e));
        return exit::USAGE;
    }
    let format = cli
        .log_format
        .or(settings.as_ref().ok().map(|s| s.log_format))
        .unwrap_or_default();
    init_logging(&cli, format);
    for warning in settings.iter().flat_map(|s| &s.warnings) {
        tracing::warn!("{warning}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            say!("minimax-dl: error: cannot start the async runtime: {e}");
            return exit::USAGE;
        }
    };
    let result = runtime.block_on(dispatch(cli, settings));
    match result {
        Ok(code) => code,
        Err(e) => {
            say!("minimax-dl: error: {}", stderr::error_line(e.as_ref()));
            error_exit(&e)
        }
    }
}
