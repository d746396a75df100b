//! `enqueue`: file ids from the arguments and `--from`, generation tasks
//! from `--task` and `--tasks-from`, into the queue.

use std::io;
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::{file_ids, open_queue};
use crate::config::Settings;
use crate::ids;
use crate::queue::NewTask;
use crate::runtime::exit;

/// The ids of an `--from` list: a file, or stdin for `-`.
fn ids_from(path: &Path) -> Result<Vec<i64>> {
    read_list(
        path,
        |reader| ids::read_lines(reader),
        "ids",
        "file ids (one decimal id per line",
    )
}

/// A list of `what` read by `read` from a file, or stdin for `-`; an
/// empty one is refused, saying what a line holds (`shape`).
fn read_list<T, R>(path: &Path, read: R, what: &str, shape: &str) -> Result<Vec<T>>
where
    R: for<'r> Fn(Box<dyn io::BufRead + 'r>) -> Result<Vec<T>, ids::ListError>,
{
    let name = list_name(path);
    if path.is_dir() {
        bail!("cannot read {what} from {name}: it is a directory; give a file (or - for stdin)");
    }
    let items = if path == Path::new("-") {
        read(Box::new(io::stdin().lock()))
    } else {
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot read {what} from {name}"))?;
        read(Box::new(io::BufReader::new(file)))
    }
    .with_context(|| format!("in {name}"))?;
    if items.is_empty() {
        bail!("{name} holds no {shape}; blank lines and # comments are skipped)");
    }
    Ok(items)
}

/// What `enqueue` was given: file ids and generation tasks.
pub(crate) struct Inputs<'a> {
    pub ids: &'a [String],
    pub from: Option<&'a Path>,
    pub tasks: &'a [String],
    pub tasks_from: Option<&'a Path>,
}

pub(crate) async fn enqueue(settings: &Settings, inputs: Inputs<'_>) -> Result<u8> {
    let mut all = file_ids(inputs.ids)?;
    if let Some(path) = inputs.from {
        all.extend(ids_from(path)?);
    }
    let mut tasks = ids::parse_task_args(inputs.tasks)?;
    if let Some(path) = inputs.tasks_from {
        tasks.extend(tasks_from(path)?);
    }
    if all.is_empty() && tasks.is_empty() {
        bail!(
            "no file ids or tasks given: pass ids as arguments or with --from FILE, tasks with --task ID or --tasks-from FILE"
        );
    }
    let new: Vec<NewTask> = tasks
        .iter()
        .map(|t| NewTask {
            task_id: t.id,
            api: t.api.unwrap_or(settings.tasks.api),
            result: None,
        })
        .collect();
    if let Some(clash) = ids::api_clash(new.iter().map(|t| (t.task_id, t.api))) {
        bail!("{clash}");
    }
    let queue = open_queue(settings).await?;
    known_under_other_api(&queue, &new).await?;
    if !all.is_empty() {
        let report = queue.enqueue(&all).await?;
        out!(
            "enqueued {} new, skipped {} already queued",
            report.added,
            report.skipped
        );
    }
    if !new.is_empty() {
        let report = queue.enqueue_tasks(&new, settings.tasks.deadline).await?;
        out!(
            "enqueued {} new tasks, skipped {} already known; `run` polls them until their videos exist",
            report.added,
            report.known
        );
    }
    Ok(exit::OK)
}

/// Refuses the call, before anything is written, when a task it names is
/// in the queue already under the other API: the queue keeps one entry per
/// task id, so the second would be dropped without a word.
async fn known_under_other_api(queue: &crate::queue::Queue, new: &[NewTask]) -> Result<()> {
    for task in new {
        if let Some(known) = queue.get_task(task.task_id).await?
            && known.api != task.api
        {
            bail!(
                "task {id} is already known under {known_api} (given here as {api}:{id}); a task id \
                 belongs to one API: give it as {known_api}:{id} or without a prefix",
                id = task.task_id,
                known_api = known.api,
                api = task.api,
            );
        }
    }
    Ok(())
}

/// The tasks of a `--tasks-from` list: a file, or stdin for `-`.
fn tasks_from(path: &Path) -> Result<Vec<ids::TaskRef>> {
    read_list(
        path,
        |reader| ids::read_task_lines(reader),
        "tasks",
        "task ids (one ID, v1:ID or v2:ID per line",
    )
}

fn list_name(path: &Path) -> String {
    if path == Path::new("-") {
        "stdin".to_string()
    } else {
        path.display().to_string()
    }
}
