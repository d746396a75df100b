//! `enqueue`: ids from the arguments and `--from` into the queue.

use std::io;
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::{file_ids, open_queue};
use crate::config::Settings;
use crate::ids;
use crate::runtime::exit;

/// The ids of an `--from` list: a file, or stdin for `-`.
fn ids_from(path: &Path) -> Result<Vec<i64>> {
    let stdin = path == Path::new("-");
    let name = if stdin {
        "stdin".to_string()
    } else {
        path.display().to_string()
    };
    let ids = if stdin {
        ids::read_lines(io::stdin().lock())
    } else {
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot read ids from {name}"))?;
        ids::read_lines(io::BufReader::new(file))
    }
    .with_context(|| format!("in {name}"))?;
    if ids.is_empty() {
        bail!(
            "{name} holds no file ids (one decimal id per line; blank lines and # comments are skipped)"
        );
    }
    Ok(ids)
}

pub async fn enqueue(settings: &Settings, args: &[String], from: Option<&Path>) -> Result<u8> {
    let mut all = file_ids(args)?;
    if let Some(path) = from {
        all.extend(ids_from(path)?);
    }
    if all.is_empty() {
        bail!("no file ids given: pass ids as arguments or with --from FILE");
    }
    let queue = open_queue(settings).await?;
    let report = queue.enqueue(&all).await?;
    out!(
        "enqueued {} new, skipped {} already queued",
        report.added,
        report.skipped
    );
    Ok(exit::OK)
}
