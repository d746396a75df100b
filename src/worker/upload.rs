//! The last steps of a job whose archive is a bucket (`output_dir =
//! "s3://…"`): the verified file in the staging directory goes up to its
//! key, is confirmed by a HEAD, and only then is the job `done`.
//!
//! The order, and what a crash between two steps leaves:
//!
//! 1. The key is chosen (the one recorded by an earlier attempt, else the
//!    template's, moved on past keys holding another file's object) and
//!    recorded with the digest (`record_verified`, final_path = the
//!    object's `s3://` URL). A crash leaves the verified partial file and
//!    the digest: [`recover`] uploads it without downloading again.
//! 2. The upload is recorded (`record_upload`), with the multipart upload's
//!    id when the file goes up in parts, before its first part is sent. A
//!    crash leaves the id: the next worker aborts that upload (so no parts
//!    are orphaned) and starts again.
//! 3. The sidecar goes up, then the file (one PUT, or its parts and the
//!    completion). Nothing appears under the key before the whole object.
//! 4. A HEAD confirms size and sha256 (`record_uploaded`: ETag, version).
//!    A crash after the upload costs the next worker one HEAD: an object
//!    already there with this digest is not sent again.
//! 5. `done`, then the local copy is removed.
//!
//! Steps 2–5 run in the upload stage: before them the job takes a place
//! there (`Engine::upload_stage`) and gives the pool its download slot
//! back, so the next job downloads while this one uploads. A job waiting
//! for a place keeps its slot (what is in flight stays bounded: the pool's
//! downloads plus the stage's places); one stopped while it waits leaves
//! its digest recorded and its verified file staged, as after step 1.
//! The bodies in flight share one buffer budget (`Bucket::put_file`,
//! `Bucket::send_parts`). An upload under way is not cut short by a
//! shutdown: it finishes, as a rename into a directory would.
//!
//! A bucket that does not answer, or refuses us, stops the pool like a
//! full disk (`HostProblem::Archive`): the job goes back to the queue
//! uncounted, its verified file kept.

use std::path::{Path, PathBuf};

use object_store::path::Path as Key;
use sha2::{Digest, Sha256};
use tokio::sync::OwnedSemaphorePermit;
use tracing::{info, warn};

use super::pipeline::{changed_since_verified, retry_transient, sidecar_bytes, template_fields};
use super::{Engine, HostProblem, JobControl, Outcome};
use crate::api::FileInfo;
use crate::archive::bucket::{Bucket, BucketError, ObjectFacts, SINGLE_PUT_MAX, Stored};
use crate::archive::template::{MAX_COLLISION, SIDECAR_SUFFIX};
use crate::fetch::{Verified, file, naming};
use crate::queue::{
    Job, Leased, QueueError, ReleaseReason, StoredObject, Upload, VerifiedFile, now_millis,
};

/// A verified local file and the object it becomes.
struct Target<'a> {
    key: Key,
    url: String,
    local: &'a Path,
    size: u64,
    sha256: &'a str,
}

/// Steps 1–5 for a file just downloaded and verified at `partial`.
pub(super) async fn finish(
    engine: &Engine,
    bucket: &Bucket,
    job: &Leased,
    control: &JobControl,
    (partial, info): (&Path, &FileInfo),
    verified: Verified,
) -> Result<Outcome, QueueError> {
    if let Some(error) = changed_since_verified(partial, verified.size).await {
        return retry_transient(engine, job, &error).await;
    }
    let downloaded = std::time::SystemTime::now();
    let sidecar = sidecar_bytes(engine, job, info, &verified, downloaded);
    let key = match choose_key(engine, bucket, job, info, downloaded).await {
        Ok(Ok(key)) => key,
        Ok(Err(error)) => return retry_transient(engine, job, &error).await,
        Err(e) => return stopped_by(bucket, job, e).await,
    };
    let url = bucket.url_of(&key);
    let record = VerifiedFile {
        size: verified.size,
        size_source: verified.size_source,
        sha256: &verified.sha256,
        filename: info.filename.as_deref(),
        final_path: Path::new(&url),
    };
    job.lease.record_verified(&record).await?;
    engine.hooks.crash_point("after-verified");
    let target = Target {
        key,
        url,
        local: partial,
        size: verified.size,
        sha256: &verified.sha256,
    };
    put_in_bucket(engine, bucket, job, control, &target, sidecar).await
}

/// A job whose digest an earlier worker recorded: its object may already
/// be complete (a crash after the upload), or its verified partial file
/// still waits here (a crash or a stopped store before). `None`: neither;
/// the digest is forgotten and the file downloaded again.
pub(super) async fn recover(
    engine: &Engine,
    bucket: &Bucket,
    job: &Leased,
    control: &JobControl,
) -> Result<Option<Outcome>, QueueError> {
    let (Some(sha256), Some(size)) = (job.sha256.as_deref(), job.bytes_expected) else {
        return Ok(None);
    };
    let Some(key) = job.final_path.as_deref().and_then(|url| bucket.key_of(url)) else {
        return Ok(None);
    };
    let partial = naming::partial_path(&engine.output_dir, job.file_id);
    let on_disk = {
        let path = partial.clone();
        tokio::task::spawn_blocking(move || file::hash_file(&path)).await
    };
    let intact = matches!(on_disk, Ok(Ok((len, ref digest))) if len == size && digest == sha256);
    let target = Target {
        url: bucket.url_of(&key),
        key,
        local: &partial,
        size,
        sha256,
    };
    if !intact {
        // Without the local copy, only a complete object finishes the job.
        match bucket.head(&target.key).await {
            Ok(Some(facts)) if holds(&facts, &target) => {}
            Ok(_) => {
                file::remove_quietly(vec![partial.clone()]).await;
                job.lease
                    .clear_verified(
                        "neither the verified file nor its object is there; downloading again",
                    )
                    .await?;
                return Ok(None);
            }
            Err(e) => return stopped_by(bucket, job, e).await.map(Some),
        }
    }
    let sidecar = staged_sidecar(engine, job.file_id);
    put_in_bucket(engine, bucket, job, control, &target, sidecar)
        .await
        .map(Some)
}

/// Steps 2–5, in the upload stage: the object up and confirmed, the job
/// done, the local copy gone.
async fn put_in_bucket(
    engine: &Engine,
    bucket: &Bucket,
    job: &Leased,
    control: &JobControl,
    target: &Target<'_>,
    sidecar: Option<Vec<u8>>,
) -> Result<Outcome, QueueError> {
    let Some(_place) = enter_upload_stage(engine, control).await else {
        // Stopped while waiting: the digest stays recorded and the
        // verified file staged, for whoever works the job next.
        return super::pipeline::stopped(job, control).await;
    };
    match upload(engine, bucket, job, target, sidecar).await {
        Ok(()) => {}
        Err(UploadError::Bucket(e)) => return stopped_by(bucket, job, e).await,
        Err(UploadError::Queue(e)) => return Err(e),
    }
    job.lease.complete(Path::new(&target.url)).await?;
    file::remove_quietly(vec![
        target.local.to_path_buf(),
        naming::pending_sidecar_path(&engine.output_dir, job.file_id),
    ])
    .await;
    info!(size = target.size, sha256 = %target.sha256, object = %target.url, "done");
    Ok(Outcome::Done {
        path: PathBuf::from(&target.url),
        size: target.size,
        sha256: target.sha256.to_string(),
    })
}

/// Takes a place in the upload stage (at once when one is free, else
/// when an upload ends), then gives the job's download slot back to the
/// pool. `None`: the job was stopped while it waited.
async fn enter_upload_stage(engine: &Engine, control: &JobControl) -> Option<OwnedSemaphorePermit> {
    // A free place is taken even when the stop has come: `biased` polls it first.
    let place = tokio::select! {
        biased;
        place = engine.upload_stage.clone().acquire_owned() => place.ok()?,
        _ = control.cancel.cancelled() => return None,
    };
    control.give_back_download_slot();
    Some(place)
}

/// Why an upload step did not finish: the bucket cannot take the file now
/// (the job goes back, see [`stopped_by`]), or the queue refused a record
/// (a lost lease, a database that does not answer), which ends the job's
/// turn as it is.
enum UploadError {
    Bucket(BucketError),
    Queue(QueueError),
}

impl From<BucketError> for UploadError {
    fn from(error: BucketError) -> UploadError {
        UploadError::Bucket(error)
    }
}

impl From<QueueError> for UploadError {
    fn from(error: QueueError) -> UploadError {
        UploadError::Queue(error)
    }
}

/// Steps 2–4, each skipped when an earlier attempt already did it.
async fn upload(
    engine: &Engine,
    bucket: &Bucket,
    job: &Leased,
    target: &Target<'_>,
    sidecar: Option<Vec<u8>>,
) -> Result<(), UploadError> {
    let recorded = engine.queue.upload(job.file_id).await?;
    if let Some(Upload {
        upload_id: Some(id),
        object_url,
        ..
    }) = &recorded
    {
        let key = bucket
            .key_of(object_url)
            .unwrap_or_else(|| target.key.clone());
        bucket.abort_upload(&key, id).await?;
        info!("aborted multipart upload {id} left by an earlier attempt");
    }
    if let Some(recorded) = recorded
        && already_there(bucket, job, target, &recorded).await?
    {
        return Ok(());
    }
    if let Some(bytes) = sidecar {
        put_sidecar(bucket, target, job.file_id, bytes).await?;
    }
    let stored = send(engine, bucket, job, target).await?;
    engine.hooks.crash_point("after-upload");
    match bucket.head(&target.key).await? {
        Some(facts) if holds(&facts, target) => {}
        other => {
            return Err(BucketError::Unreachable {
                store: bucket.location().to_string(),
                detail: format!(
                    "{} was uploaded but a HEAD finds {}",
                    target.url,
                    describe(other.as_ref())
                ),
            }
            .into());
        }
    }
    job.lease
        .record_uploaded(StoredObject {
            etag: stored.e_tag.as_deref(),
            version: stored.version.as_deref(),
        })
        .await?;
    Ok(())
}

/// Is the object already complete under the key (an earlier attempt
/// crashed after its upload)? Then its upload is recorded as done and it is
/// not sent again. Asked only when an upload was recorded: the record is
/// made before any byte of the file is sent, so without it there is no
/// object of this job to find, and the HEAD (one request in three of a
/// small file's) is saved.
async fn already_there(
    bucket: &Bucket,
    job: &Leased,
    target: &Target<'_>,
    recorded: &Upload,
) -> Result<bool, UploadError> {
    let facts = match bucket.head(&target.key).await? {
        Some(facts) if holds(&facts, target) => facts,
        _ => return Ok(false),
    };
    if recorded.upload_id.is_some() || recorded.etag.is_none() {
        job.lease.record_upload(&target.url, None).await?;
        job.lease
            .record_uploaded(StoredObject {
                etag: facts.e_tag.as_deref(),
                version: facts.version.as_deref(),
            })
            .await?;
    }
    info!("the object is already in the bucket with this digest; not sent again");
    Ok(true)
}

/// Step 3 for the file: one PUT up to [`SINGLE_PUT_MAX`], else a multipart
/// upload whose id is in the queue before its first part goes up.
async fn send(
    engine: &Engine,
    bucket: &Bucket,
    job: &Leased,
    target: &Target<'_>,
) -> Result<Stored, UploadError> {
    if target.size <= SINGLE_PUT_MAX {
        job.lease.record_upload(&target.url, None).await?;
        return Ok(bucket
            .put_file(
                &target.key,
                target.local,
                target.size,
                target.sha256,
                job.file_id,
            )
            .await?);
    }
    let id = bucket
        .start_upload(&target.key, target.sha256, job.file_id)
        .await?;
    job.lease.record_upload(&target.url, Some(&id)).await?;
    engine.hooks.crash_point("after-upload-started");
    Ok(bucket
        .send_parts(&target.key, &id, target.local, target.size)
        .await?)
}

async fn put_sidecar(
    bucket: &Bucket,
    target: &Target<'_>,
    file_id: i64,
    bytes: Vec<u8>,
) -> Result<(), BucketError> {
    let key = Key::from(format!("{}{SIDECAR_SUFFIX}", target.key.as_ref()));
    let digest = hex::encode(Sha256::digest(&bytes));
    bucket
        .put(&key, bytes.into(), &digest, file_id)
        .await
        .map(drop)
}

/// The sidecar staged by an earlier attempt, if sidecars are on.
fn staged_sidecar(engine: &Engine, file_id: i64) -> Option<Vec<u8>> {
    if !engine.archive.sidecar {
        return None;
    }
    std::fs::read(naming::pending_sidecar_path(&engine.output_dir, file_id)).ok()
}

/// Does the object hold exactly the verified bytes?
fn holds(facts: &ObjectFacts, target: &Target<'_>) -> bool {
    facts.size == target.size && facts.sha256.as_deref() == Some(target.sha256)
}

fn describe(facts: Option<&ObjectFacts>) -> String {
    match facts {
        None => "no object".to_string(),
        Some(f) => format!(
            "{} bytes with sha256 {}",
            f.size,
            f.sha256.as_deref().unwrap_or("(none recorded)")
        ),
    }
}

/// Step 1's key: the recorded one, else the template's; with a template
/// that may give two files one name, the first candidate whose key holds
/// no other file's object. `Ok(Err)`: every candidate is taken.
async fn choose_key(
    engine: &Engine,
    bucket: &Bucket,
    job: &Job,
    info: &FileInfo,
    downloaded: std::time::SystemTime,
) -> Result<Result<Key, String>, BucketError> {
    if let Some(key) = job.final_path.as_deref().and_then(|url| bucket.key_of(url)) {
        return Ok(Ok(key));
    }
    let task_id = job.task_id.map(|t| t.to_string());
    let fields = template_fields(job, task_id.as_deref(), info, downloaded);
    let template = &engine.archive.template;
    let rel = template.expand(&fields);
    let key_of =
        |rel: &crate::archive::template::RelPath| bucket.key(&rel.to_path_buf().to_string_lossy());
    if template.unique_per_file() {
        return Ok(Ok(key_of(&rel)));
    }
    for n in 0..=MAX_COLLISION {
        let key = key_of(&rel.candidate(n, job.file_id));
        match bucket.head(&key).await? {
            None => return Ok(Ok(key)),
            Some(facts) if facts.file_id == Some(job.file_id) => return Ok(Ok(key)),
            Some(_) => continue,
        }
    }
    Ok(Err(format!(
        "no free key for file {}: {} and {MAX_COLLISION} variants of it hold other files",
        job.file_id,
        bucket.url_of(&key_of(&rel))
    )))
}

/// The bucket cannot take files now: the job goes back uncounted, its
/// verified file and digest kept, and the pool pauses.
async fn stopped_by(bucket: &Bucket, job: &Leased, e: BucketError) -> Result<Outcome, QueueError> {
    let e = bucket.diagnose(e).await;
    let message = e.to_string();
    warn!("the archive bucket cannot take files: {message}");
    job.lease
        .release(&message, now_millis(), ReleaseReason::AsLastError)
        .await?;
    Ok(Outcome::Paused(HostProblem::Archive {
        message,
        lasting: e.is_lasting(),
    }))
}
