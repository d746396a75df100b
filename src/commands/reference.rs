//! `completions SHELL` and `man`: the command line described for the shell
//! and for `man`, generated from the clap definitions so they never drift.

use anyhow::Result;
use clap::CommandFactory;

use crate::cli::Cli;
use crate::runtime::exit;

pub fn completions(shell: clap_complete::Shell) -> Result<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "minimax-dl", &mut script);
    out!("{}", String::from_utf8_lossy(&script).trim_end());
    Ok(exit::OK)
}

pub fn man() -> Result<u8> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut page)?;
    out!("{}", String::from_utf8_lossy(&page).trim_end());
    Ok(exit::OK)
}
