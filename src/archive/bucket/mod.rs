//! A bucket as the archive (`output_dir = "s3://BUCKET/PREFIX"`): the S3
//! calls a worker needs to put a verified local file under its final key
//! and prove it is there, and those `verify` needs to read it back.
//!
//! What a bucket promises us, and what we build on it:
//! - An object appears under its key whole or not at all (a single PUT, or
//!   the completion of a multipart upload), so nothing half-written is ever
//!   visible under a final key.
//! - Each object carries its sha256 and file id as user metadata
//!   (`x-amz-meta-sha256`, `x-amz-meta-file-id`): S3's own
//!   `x-amz-checksum-sha256` is only a checksum of checksums for multipart
//!   objects, and many S3-compatible stores ignore it, while user metadata
//!   is kept by all of them. A HEAD then confirms size and digest.
//! - A multipart upload that is never completed holds parts that cost
//!   money and show in `ListMultipartUploads`: its id is recorded in the
//!   queue before the first part is sent, so whoever works the job next
//!   aborts it (see `worker::upload`).
//!
//! Calls the store fails are retried by object_store's client (its own
//! backoff, for 5xx such as `SlowDown` and dropped connections), then once
//! more here, counted in [`Bucket::retries`]; what still fails is a
//! [`BucketError`] whose [`BucketError::is_lasting`] says whether waiting
//! can help.

pub(crate) mod credentials;
pub(crate) use crate::location::bucket as location;

use std::os::unix::fs::FileExt;
use std::path::Path as LocalPath;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, BackoffConfig, GetOptions, ObjectStore, PutMultipartOptions, PutOptions,
    PutPayload, RetryConfig,
};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub(crate) use location::{BucketLocation, names_object_store};

use super::fixity::Fixity;

/// Files up to this size go up in one PUT (the AWS CLI's multipart
/// threshold); larger ones in parts.
pub(crate) const SINGLE_PUT_MAX: u64 = 8 * 1024 * 1024;
/// The size of a multipart upload's parts: S3's smallest, so that more of
/// them fit in flight within the [`UPLOAD_BUFFER_BUDGET`]. S3 takes at
/// most 10,000 parts: 5 MiB parts carry files up to 48 GiB, and beyond
/// that the part size doubles until the count fits ([`part_size_for`]).
///
/// Measured (BENCHMARKS.md, "Upload to a bucket"): a 1 GiB upload as
/// 6 × 5 MiB in flight took the store less CPU than 4 × 8 MiB and ended
/// sooner (median of five 0.98× `aws s3 cp`, against 1.06×) for the same
/// 30–32 MiB of buffers; 8 × 8 MiB gained nothing for twice the memory.
pub(crate) const PART_SIZE: u64 = 5 * 1024 * 1024;
/// Parts in flight at once in one upload, at most (the shared
/// [`UPLOAD_BUFFER_BUDGET`] may allow fewer).
pub(crate) const PARALLEL_PARTS: usize = 6;
/// The bytes of upload bodies a process holds at once, shared by all its
/// uploads: a single PUT takes its file's size of it, a multipart part in
/// flight its part size. Many small files go up side by side while one
/// large file keeps to about this much whatever its size (the README's
/// "about 32 MiB"); the upload stage's job count bounds leases and the
/// staging disk, this bounds memory.
pub(crate) const UPLOAD_BUFFER_BUDGET: u64 = 32 * 1024 * 1024;
const MAX_PARTS: u64 = 10_000;
/// The bytes of single-PUT bodies kept between files for the next one
/// ([`SpareBodies`]), beyond the budget: one largest body's worth.
pub(crate) const SPARE_BODIES_MAX: u64 = SINGLE_PUT_MAX;

// What the sizes above must keep, checked when the crate builds: S3's
// smallest part, and a whole upload's parts in flight (or one PUT) within
// the buffer budget.
const _: () = {
    assert!(PART_SIZE >= 5 * 1024 * 1024);
    assert!(PART_SIZE <= SINGLE_PUT_MAX);
    assert!(PARALLEL_PARTS as u64 * PART_SIZE <= UPLOAD_BUFFER_BUDGET);
    assert!(SINGLE_PUT_MAX <= UPLOAD_BUFFER_BUDGET);
};

/// The user metadata keys (sent as `x-amz-meta-…`).
const META_SHA256: &str = "sha256";
const META_FILE_ID: &str = "file-id";

/// How the archive bucket is reached.
#[derive(Clone, Debug, Default)]
pub(crate) struct BucketOptions {
    /// Plain `http://` to an endpoint that is not on loopback
    /// (`archive_allow_http`); loopback is always allowed.
    pub allow_http: bool,
}

/// What a HEAD of an object says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ObjectFacts {
    pub size: u64,
    pub sha256: Option<String>,
    pub file_id: Option<i64>,
    pub e_tag: Option<String>,
    pub version: Option<String>,
}

/// An object just written: its ETag and version (when the bucket keeps
/// versions).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Stored {
    pub e_tag: Option<String>,
    pub version: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum BucketError {
    #[error(
        "{store} refused the credentials: {detail}; check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or the systemd credentials)"
    )]
    Credentials { store: String, detail: String },
    #[error("{store} has no such bucket: create it, or correct output_dir")]
    NoBucket { store: String },
    #[error("{store} did not answer: {detail}")]
    Unreachable { store: String, detail: String },
    #[error("the archive bucket is not usable: {0}")]
    Config(String),
    #[error("cannot read the local copy {path}: {source}")]
    Local {
        path: String,
        source: std::io::Error,
    },
}

impl BucketError {
    /// Waiting will not help (bad credentials, no bucket, a bad setting):
    /// the operator must act. Otherwise the store may come back.
    pub(crate) fn is_lasting(&self) -> bool {
        matches!(
            self,
            BucketError::Credentials { .. } | BucketError::NoBucket { .. } | BucketError::Config(_)
        )
    }
}

/// The archive's bucket: one S3 client shared by every worker.
#[derive(Debug)]
pub(crate) struct Bucket {
    s3: Arc<AmazonS3>,
    location: BucketLocation,
    /// "s3://videos at http://127.0.0.1:8333", for messages.
    name: String,
    retries: AtomicU64,
    /// [`UPLOAD_BUFFER_BUDGET`] in bytes: taken before a body is read,
    /// given back once it is sent.
    buffer_budget: Arc<Semaphore>,
    spare_bodies: SpareBodies,
}

impl Bucket {
    /// A client for `location` with the credentials of the standard chain
    /// (see [`credentials`]) read through `env`.
    pub(crate) fn connect(
        location: BucketLocation,
        env: &dyn Fn(&str) -> Option<String>,
        options: &BucketOptions,
    ) -> Result<Bucket, BucketError> {
        let mut builder = AmazonS3Builder::new();
        for (key, value) in aws_settings(env) {
            if let Ok(config_key) = key.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
                builder = builder.with_config(config_key, value);
            }
        }
        let keys = credentials::static_keys(env).map_err(|e| BucketError::Config(e.to_string()))?;
        if let Some(keys) = keys {
            tracing::debug!("{location}: credentials from {}", keys.origin);
            builder = builder
                .with_access_key_id(keys.key_id)
                .with_secret_access_key(keys.secret.expose_secret());
            if let Some(token) = keys.token {
                builder = builder.with_token(token.expose_secret());
            }
        }
        if builder
            .get_config_value(&AmazonS3ConfigKey::Region)
            .is_none()
        {
            builder = builder.with_region("us-east-1");
        }
        let endpoint = builder.get_config_value(&AmazonS3ConfigKey::Endpoint);
        let plain_http = endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://"));
        if plain_http {
            let endpoint = endpoint.as_deref().unwrap_or_default();
            if !options.allow_http && !endpoint_is_loopback(endpoint) {
                return Err(BucketError::Config(format!(
                    "the endpoint {endpoint} is plain http to another host: use https, or set archive_allow_http = true if the network between is yours"
                )));
            }
        }
        let s3 = builder
            .with_bucket_name(&location.bucket)
            .with_allow_http(plain_http)
            .with_unsigned_payload(transport_guards_bytes(endpoint.as_deref()))
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(2),
                    base: 2.0,
                },
                max_retries: 4,
                retry_timeout: Duration::from_secs(30),
            })
            .build()
            .map_err(|e| BucketError::Config(e.to_string()))?;
        let name = match &endpoint {
            Some(endpoint) => format!("{location} at {endpoint}"),
            None => location.to_string(),
        };
        Ok(Bucket {
            s3: Arc::new(s3),
            location,
            name,
            retries: AtomicU64::new(0),
            buffer_budget: Arc::new(Semaphore::new(UPLOAD_BUFFER_BUDGET as usize)),
            spare_bodies: SpareBodies::default(),
        })
    }

    pub(crate) fn location(&self) -> &BucketLocation {
        &self.location
    }

    /// Calls retried after object_store's own retries gave up, since start.
    pub(crate) fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// The key of the file whose archive-relative path is `rel`.
    pub(crate) fn key(&self, rel: &str) -> Path {
        Path::from(self.location.key(rel))
    }

    /// `s3://BUCKET/KEY`: what the queue records as the file's place.
    pub(crate) fn url_of(&self, key: &Path) -> String {
        self.location.url_of(key.as_ref())
    }

    /// The key a recorded `s3://` URL names in this bucket.
    pub(crate) fn key_of(&self, url: &str) -> Option<Path> {
        self.location.key_of(url).map(Path::from)
    }

    /// Size, digest, file id, ETag and version of the object at `key`, or
    /// `None` when there is none.
    pub(crate) async fn head(&self, key: &Path) -> Result<Option<ObjectFacts>, BucketError> {
        let options = || GetOptions {
            head: true,
            ..GetOptions::default()
        };
        let got = self.retrying(|| self.s3.get_opts(key, options())).await;
        let got = match got {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.error(e)),
        };
        let meta = |name: &'static str| {
            got.attributes
                .get(&Attribute::Metadata(name.into()))
                .map(|v| v.as_ref().to_string())
        };
        Ok(Some(ObjectFacts {
            size: got.meta.size,
            sha256: meta(META_SHA256),
            file_id: meta(META_FILE_ID).and_then(|v| v.parse().ok()),
            e_tag: got.meta.e_tag.clone(),
            version: got.meta.version.clone(),
        }))
    }

    /// Puts a small body (a sidecar, a file up to [`SINGLE_PUT_MAX`]) in one call.
    pub(crate) async fn put(
        &self,
        key: &Path,
        body: Bytes,
        sha256: &str,
        file_id: i64,
    ) -> Result<Stored, BucketError> {
        let options = || PutOptions {
            attributes: attributes(key, sha256, file_id),
            ..PutOptions::default()
        };
        let put = self
            .retrying(|| {
                self.s3
                    .put_opts(key, PutPayload::from(body.clone()), options())
            })
            .await
            .map_err(|e| self.error(e))?;
        Ok(Stored {
            e_tag: put.e_tag,
            version: put.version,
        })
    }

    /// Puts the local file `file` (`size` bytes, at most [`SINGLE_PUT_MAX`]) in
    /// one call, once the buffer budget has room for its body.
    pub(crate) async fn put_file(
        &self,
        key: &Path,
        file: &LocalPath,
        size: u64,
        sha256: &str,
        file_id: i64,
    ) -> Result<Stored, BucketError> {
        let _room = self.buffer_room(size).await;
        let buffer = self.spare_bodies.take();
        let path = file.to_path_buf();
        let read = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&path)?;
            read_into(&file, 0, size, buffer)
        })
        .await;
        let body = local_read(read, file)?;
        let stored = self.put(key, body.clone(), sha256, file_id).await;
        self.spare_bodies.give_back(body);
        stored
    }

    /// Room for a body of `len` bytes in the process's buffer budget
    /// (all of it for a body larger than the budget), held until the
    /// permit is dropped. (`None` only if the budget were closed, which
    /// nothing does.)
    async fn buffer_room(&self, len: u64) -> BufferRoom {
        let bytes = len.clamp(1, UPLOAD_BUFFER_BUDGET) as u32;
        self.buffer_budget
            .clone()
            .acquire_many_owned(bytes)
            .await
            .ok()
    }

    /// Starts a multipart upload whose object will carry `sha256`; the id
    /// must be recorded before the first part goes up.
    pub(crate) async fn start_upload(
        &self,
        key: &Path,
        sha256: &str,
        file_id: i64,
    ) -> Result<String, BucketError> {
        let options = || PutMultipartOptions {
            attributes: attributes(key, sha256, file_id),
            ..PutMultipartOptions::default()
        };
        self.retrying(|| self.s3.create_multipart_opts(key, options()))
            .await
            .map_err(|e| self.error(e))
    }

    /// Sends the file at `path` (`size` bytes) as the parts of upload `id`, at most
    /// [`PARALLEL_PARTS`] at a time, and completes it: only then does the
    /// object appear under `key`.
    pub(crate) async fn send_parts(
        &self,
        key: &Path,
        id: &str,
        path: &LocalPath,
        size: u64,
    ) -> Result<Stored, BucketError> {
        let part_size = part_size_for(size);
        let count = size.div_ceil(part_size).max(1);
        let file = Arc::new(
            std::fs::File::open(path).map_err(|source| BucketError::Local {
                path: path.display().to_string(),
                source,
            })?,
        );
        let id = id.to_string();
        let buffers = PartBuffers::default();
        let parts: Vec<PartId> = futures_util::stream::iter(0..count)
            .map(|index| {
                let (file, id, buffers) = (file.clone(), id.clone(), &buffers);
                async move {
                    let start = index * part_size;
                    let len = part_size.min(size - start);
                    let (buffer, room) = match buffers.take() {
                        Some(taken) => taken,
                        None => (Vec::new(), self.buffer_room(part_size).await),
                    };
                    let body = read_part(file, path, start, len, buffer).await?;
                    let sent = self
                        .retrying(|| {
                            self.s3.put_part(
                                key,
                                &id,
                                index as usize,
                                PutPayload::from(body.clone()),
                            )
                        })
                        .await
                        .map_err(|e| self.error(e));
                    buffers.give_back(body, room);
                    sent
                }
            })
            .buffered(PARALLEL_PARTS)
            .try_collect()
            .await?;
        let done = self
            .retrying(|| self.s3.complete_multipart(key, &id, parts.clone()))
            .await
            .map_err(|e| self.error(e))?;
        Ok(Stored {
            e_tag: done.e_tag,
            version: done.version,
        })
    }

    /// Drops an unfinished multipart upload and its parts. One that is
    /// already gone (completed or aborted by someone else) is not an error.
    pub(crate) async fn abort_upload(&self, key: &Path, id: &str) -> Result<(), BucketError> {
        let id = id.to_string();
        match self.retrying(|| self.s3.abort_multipart(key, &id)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(e)),
        }
    }

    /// Reads the object at `key` back, hashing it as it streams: its size
    /// and sha256 (`verify`). `None`: no such object.
    pub(crate) async fn read_digest(
        &self,
        key: &Path,
    ) -> Result<Option<(u64, String)>, BucketError> {
        let got = match self.s3.get_opts(key, GetOptions::default()).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.error(e)),
        };
        let mut stream = got.into_stream();
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = stream.try_next().await.map_err(|e| self.error(e))? {
            size += chunk.len() as u64;
            hasher.update(&chunk);
        }
        Ok(Some((size, hex::encode(hasher.finalize()))))
    }

    /// `verify` of one object: HEAD, then (unless `quick`) a read and hash
    /// of every byte. `quick` trusts the digest the object carries.
    pub(crate) async fn check(&self, key: &Path, size: u64, sha256: &str, quick: bool) -> Fixity {
        let facts = match self.head(key).await {
            Ok(Some(facts)) => facts,
            Ok(None) => return Fixity::Missing,
            Err(e) => return Fixity::Unreadable(e.to_string()),
        };
        if facts.size != size {
            return Fixity::Changed(format!("{} bytes, {size} recorded", facts.size));
        }
        if quick {
            return match facts.sha256.as_deref() {
                Some(stored) if stored == sha256 => Fixity::Ok,
                Some(_) => Fixity::Changed("the object's sha256 is not the recorded one".into()),
                None => Fixity::Changed("the object carries no sha256".into()),
            };
        }
        match self.read_digest(key).await {
            Ok(Some((_, digest))) if digest == sha256 => Fixity::Ok,
            Ok(Some((read, _))) if read != size => {
                Fixity::Changed(format!("{read} bytes read, {size} recorded"))
            }
            Ok(Some((_, digest))) => Fixity::Changed(format!("sha256 {digest}, {sha256} recorded")),
            Ok(None) => Fixity::Missing,
            Err(e) => Fixity::Unreadable(e.to_string()),
        }
    }

    /// Does the bucket answer, and take our credentials? One cheap LIST.
    pub(crate) async fn probe(&self) -> Result<(), BucketError> {
        let prefix =
            (!self.location.prefix.is_empty()).then(|| Path::from(self.location.prefix.as_str()));
        let mut listing = self.s3.list(prefix.as_ref());
        match listing.next().await {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(self.error(e)),
        }
    }

    /// What a failure `e` means once a LIST has been asked too: some stores
    /// answer a write into a bucket that does not exist with AccessDenied,
    /// not NoSuchBucket (SeaweedFS does, to an identity that may not create
    /// buckets), which reads as bad credentials and would send the operator
    /// to the wrong setting.
    pub(crate) async fn diagnose(&self, e: BucketError) -> BucketError {
        if !matches!(e, BucketError::Credentials { .. }) {
            return e;
        }
        match self.probe().await {
            Err(missing @ BucketError::NoBucket { .. }) => missing,
            _ => e,
        }
    }

    /// `call` again after a short wait when it failed in a way that waiting
    /// may mend (after object_store's own retries: the store is struggling).
    async fn retrying<T, F, Fut>(&self, call: F) -> Result<T, object_store::Error>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, object_store::Error>>,
    {
        const SECOND_TRIES: u32 = 2;
        let mut tried = 0;
        loop {
            match call().await {
                Err(e) if tried < SECOND_TRIES && is_transient(&e) => {
                    tried += 1;
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("{}: {e}; trying again", self.name);
                    tokio::time::sleep(Duration::from_millis(500) * tried).await;
                }
                other => return other,
            }
        }
    }

    fn error(&self, e: object_store::Error) -> BucketError {
        classify(&self.name, e)
    }
}

/// The `AWS_*` settings of the environment that object_store reads
/// (`AWS_ENDPOINT_URL`, `AWS_REGION`, keys, web identity, …).
fn aws_settings(env: &dyn Fn(&str) -> Option<String>) -> Vec<(String, String)> {
    const NAMES: &[&str] = &[
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ENDPOINT",
        "AWS_VIRTUAL_HOSTED_STYLE_REQUEST",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_ROLE_SESSION_NAME",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
        "AWS_METADATA_ENDPOINT",
        "AWS_IMDSV1_FALLBACK",
    ];
    NAMES
        .iter()
        .filter_map(|name| {
            let value = env(name).filter(|v| !v.trim().is_empty())?;
            let key = match *name {
                "AWS_ENDPOINT_URL_S3" => "AWS_ENDPOINT",
                other => other,
            };
            Some((key.to_string(), value))
        })
        .collect()
}

/// What an object under `key` carries beside its bytes: its digest and
/// file id, and the content type its name says.
fn attributes(key: &Path, sha256: &str, file_id: i64) -> Attributes {
    let mut attributes = Attributes::new();
    if let Some(content_type) = content_type_of(key.as_ref()) {
        attributes.insert(Attribute::ContentType, content_type.into());
    }
    attributes.insert(
        Attribute::Metadata(META_SHA256.into()),
        sha256.to_string().into(),
    );
    attributes.insert(
        Attribute::Metadata(META_FILE_ID.into()),
        file_id.to_string().into(),
    );
    attributes
}

/// The `Content-Type` for an object named `key`, from its extension, for
/// the kinds of file MiniMax makes and our sidecars: a video served from
/// the bucket (a presigned URL, a CDN in front) then plays in a browser
/// instead of downloading as `binary/octet-stream`, as after `aws s3 cp`.
/// Other names get none, and the store's default.
fn content_type_of(key: &str) -> Option<&'static str> {
    let name = key.rsplit('/').next().unwrap_or(key);
    let (_, extension) = name.rsplit_once('.')?;
    Some(match extension.to_ascii_lowercase().as_str() {
        "mp4" => "video/mp4",
        "mov" => "video/quicktime",
        "webm" => "video/webm",
        "mkv" => "video/x-matroska",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "flac" => "audio/flac",
        "m4a" => "audio/mp4",
        "ogg" => "audio/ogg",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "json" => "application/json",
        "jsonl" => "application/jsonl",
        "txt" => "text/plain; charset=utf-8",
        "srt" => "application/x-subrip",
        "vtt" => "text/vtt",
        _ => return None,
    })
}

/// The part size for a file of `size` bytes: [`PART_SIZE`], doubled until
/// the parts fit S3's 10,000.
pub(crate) fn part_size_for(size: u64) -> u64 {
    let mut part = PART_SIZE;
    while size.div_ceil(part) > MAX_PARTS {
        part *= 2;
    }
    part
}

/// Room taken in the process's [`UPLOAD_BUFFER_BUDGET`].
type BufferRoom = Option<OwnedSemaphorePermit>;

/// The buffers of one multipart upload's parts, each used again once its
/// part is sent, with the room it holds in the buffer budget: a fresh
/// 8 MiB allocation a part costs 2,048 page faults and the zeroing of
/// every page, for bytes that are about to be overwritten. No more of them
/// exist than parts in flight ([`PARALLEL_PARTS`], fewer when the budget
/// is shared), so the memory bound is the budget; they are freed, and
/// their room given back, with the upload.
#[derive(Default)]
struct PartBuffers(std::sync::Mutex<Vec<(Vec<u8>, BufferRoom)>>);

impl PartBuffers {
    /// A buffer from an earlier part and its room, if one is free.
    fn take(&self) -> Option<(Vec<u8>, BufferRoom)> {
        self.0.lock().ok().and_then(|mut free| free.pop())
    }

    /// The part is sent: its buffer is free again, unless something still
    /// holds the bytes (then it is simply dropped when that lets go, and
    /// its room given back now).
    fn give_back(&self, body: Bytes, room: BufferRoom) {
        if let Ok(buffer) = body.try_into_mut()
            && let Ok(mut free) = self.0.lock()
        {
            free.push((buffer.into(), room));
        }
    }
}

/// Reads `len` bytes at `start` of `file` into `buffer` (positioned: parts
/// in flight read the one file at once without sharing a cursor).
async fn read_part(
    file: Arc<std::fs::File>,
    path: &LocalPath,
    start: u64,
    len: u64,
    buffer: Vec<u8>,
) -> Result<Bytes, BucketError> {
    let read = tokio::task::spawn_blocking(move || read_into(&file, start, len, buffer)).await;
    local_read(read, path)
}

/// Reads `len` bytes at `start` of `file` into `buffer`, reused: only a
/// buffer's first use, or a shorter read after a longer one, resizes it.
fn read_into(
    file: &std::fs::File,
    start: u64,
    len: u64,
    mut buffer: Vec<u8>,
) -> std::io::Result<Vec<u8>> {
    buffer.resize(len as usize, 0);
    file.read_exact_at(&mut buffer, start).map(|()| buffer)
}

/// The outcome of a read on the blocking pool, as a body or the error
/// naming `path`.
fn local_read(
    read: Result<std::io::Result<Vec<u8>>, tokio::task::JoinError>,
    path: &LocalPath,
) -> Result<Bytes, BucketError> {
    let local = |source| BucketError::Local {
        path: path.display().to_string(),
        source,
    };
    match read {
        Ok(Ok(buffer)) => Ok(Bytes::from(buffer)),
        Ok(Err(source)) => Err(local(source)),
        Err(e) => Err(local(std::io::Error::other(e.to_string()))),
    }
}

/// Single-PUT bodies kept after their file went up, for the next file: a
/// fresh 2 MiB allocation costs 512 page faults and the zeroing of every
/// page for bytes about to be overwritten, about a tenth of a batch's CPU
/// (measured with `perf`, BENCHMARKS.md). Spares hold no room in the
/// buffer budget (so they can never starve an upload waiting for room);
/// instead at most [`SPARE_BODIES_MAX`] bytes of them are kept, and the
/// rest freed.
#[derive(Debug, Default)]
struct SpareBodies(std::sync::Mutex<Vec<Vec<u8>>>);

impl SpareBodies {
    /// A spare, or a new empty buffer.
    fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .ok()
            .and_then(|mut spares| spares.pop())
            .unwrap_or_default()
    }

    /// Keeps `body` for the next file, if nothing else still holds its
    /// bytes and the spares have room for it.
    fn give_back(&self, body: Bytes) {
        let Ok(buffer) = body.try_into_mut() else {
            return;
        };
        let buffer = Vec::from(buffer);
        if let Ok(mut spares) = self.0.lock() {
            let kept: usize = spares.iter().map(Vec::capacity).sum();
            if (kept + buffer.capacity()) as u64 <= SPARE_BODIES_MAX {
                spares.push(buffer);
            }
        }
    }
}

/// Does the way to `endpoint` (`None`: AWS itself, over https) already
/// guard the bytes of a request body, so that SigV4 need not sign each
/// body's sha256 (`UNSIGNED-PAYLOAD`, as the AWS SDKs send over https)?
/// Signing the payload hashes every byte a second time, after the sha256
/// that verified the download, and costs the CPU the store needs too. TLS
/// authenticates every byte; on loopback no network lies between. Plain
/// http to another host (`archive_allow_http`) has nothing else, so there
/// the body stays signed. (The HEAD after an upload confirms the object's
/// size and the digest it carries, which we set: not the bytes.)
fn transport_guards_bytes(endpoint: Option<&str>) -> bool {
    match endpoint {
        None => true,
        Some(endpoint) if endpoint.starts_with("https://") => true,
        Some(endpoint) => endpoint_is_loopback(endpoint),
    }
}

/// Is `endpoint` (`http://host:port/...`) on this machine?
fn endpoint_is_loopback(endpoint: &str) -> bool {
    reqwest::Url::parse(endpoint)
        .ok()
        .and_then(|url| url.host_str().map(str::to_string))
        .is_some_and(|host| {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        })
}

/// Worth a second try: the store answered 5xx, or not at all.
fn is_transient(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::Generic { .. })
        && !no_such_bucket(e)
        && !refused_credentials(e)
}

fn no_such_bucket(e: &object_store::Error) -> bool {
    e.to_string().contains("NoSuchBucket")
}

/// The store refused who we are, in an error object_store leaves generic
/// (a failed LIST, for one, carries the store's 403 only as text).
fn refused_credentials(e: &object_store::Error) -> bool {
    let text = e.to_string();
    [
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
        "AccessDenied",
        "InvalidToken",
        "ExpiredToken",
    ]
    .iter()
    .any(|code| text.contains(code))
}

/// What a failed call means to the archive (pure; the message names the
/// store, never a credential).
fn classify(store: &str, e: object_store::Error) -> BucketError {
    use object_store::Error as E;
    let store = store.to_string();
    match e {
        E::Unauthenticated { source, .. } | E::PermissionDenied { source, .. } => {
            BucketError::Credentials {
                store,
                detail: short(&source.to_string()),
            }
        }
        ref e if no_such_bucket(e) => BucketError::NoBucket { store },
        ref e if refused_credentials(e) => BucketError::Credentials {
            store,
            detail: short(&e.to_string()),
        },
        E::NotFound { .. } => BucketError::NoBucket { store },
        e => BucketError::Unreachable {
            store,
            detail: short(&e.to_string()),
        },
    }
}

/// An error's text on one line, cut to a readable length.
fn short(text: &str) -> String {
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_stay_under_the_limit_of_ten_thousand() {
        assert_eq!(part_size_for(300 << 20), PART_SIZE);
        assert_eq!(part_size_for(PART_SIZE * MAX_PARTS), PART_SIZE);
        assert_eq!(part_size_for(PART_SIZE * MAX_PARTS + 1), PART_SIZE * 2);
        let huge = 64u64 << 30 << 4; // 1 TiB
        assert!(huge.div_ceil(part_size_for(huge)) <= MAX_PARTS);
    }

    #[test]
    fn failures_are_lasting_only_when_the_operator_must_act() {
        let boxed = |s: &str| -> Box<dyn std::error::Error + Send + Sync> { s.into() };
        let denied = classify(
            "s3://b",
            object_store::Error::PermissionDenied {
                path: "k".into(),
                source: boxed("SignatureDoesNotMatch"),
            },
        );
        assert!(denied.is_lasting());
        assert!(
            denied.to_string().contains("refused the credentials"),
            "{denied}"
        );
        let gone = classify(
            "s3://b",
            object_store::Error::Generic {
                store: "S3",
                source: boxed("<Code>NoSuchBucket</Code>"),
            },
        );
        assert!(gone.is_lasting() && gone.to_string().contains("no such bucket"));
        let down = classify(
            "s3://b",
            object_store::Error::Generic {
                store: "S3",
                source: boxed("error sending request: connection refused"),
            },
        );
        assert!(!down.is_lasting());
        assert!(
            down.to_string().starts_with("s3://b did not answer"),
            "{down}"
        );
    }

    #[test]
    fn payloads_go_unsigned_only_where_tls_or_loopback_guards_them() {
        assert!(transport_guards_bytes(None));
        assert!(transport_guards_bytes(Some(
            "https://oss-cn-hangzhou.aliyuncs.com"
        )));
        assert!(transport_guards_bytes(Some("http://127.0.0.1:8333")));
        assert!(transport_guards_bytes(Some("http://localhost:9000")));
        assert!(transport_guards_bytes(Some("http://[::1]:9000")));
        assert!(!transport_guards_bytes(Some("http://store.example:8333")));
        assert!(!transport_guards_bytes(Some("http://10.1.2.3:9000")));
    }

    #[test]
    fn a_sent_part_gives_its_buffer_and_its_room_to_the_next() {
        let budget = Arc::new(Semaphore::new(4 << 20));
        let room = || budget.clone().try_acquire_many_owned(1 << 20).ok();
        let buffers = PartBuffers::default();
        assert!(buffers.take().is_none(), "none before the first part");
        let first = vec![7u8; 1 << 20];
        let at = first.as_ptr();
        let body = Bytes::from(first);
        let in_flight = body.clone();
        buffers.give_back(body, room());
        assert!(buffers.take().is_none(), "held elsewhere: not reused");
        assert_eq!(budget.available_permits(), 4 << 20, "its room given back");
        buffers.give_back(in_flight, room());
        let (again, kept) = buffers.take().expect("the sent part's buffer");
        assert_eq!((again.as_ptr(), again.len()), (at, 1 << 20));
        assert!(kept.is_some(), "with its room");
        assert_eq!(budget.available_permits(), 3 << 20);
        assert!(buffers.take().is_none(), "one buffer, given once");
        drop(kept);
        assert_eq!(budget.available_permits(), 4 << 20);
    }

    #[test]
    fn a_sent_body_is_kept_for_the_next_file_within_the_spares_limit() {
        let spares = SpareBodies::default();
        assert_eq!(
            spares.take().capacity(),
            0,
            "nothing kept before the first file"
        );
        let first = Bytes::from(vec![1u8; 2 << 20]);
        let at = first.as_ptr();
        let in_flight = first.clone();
        spares.give_back(first);
        assert_eq!(
            spares.take().capacity(),
            0,
            "still held elsewhere: not kept"
        );
        spares.give_back(in_flight);
        let again = spares.take();
        assert_eq!(
            (again.as_ptr(), again.len()),
            (at, 2 << 20),
            "the same buffer"
        );
        // Bodies past SPARE_BODIES_MAX are freed, not kept.
        let each = (SPARE_BODIES_MAX / 3) as usize;
        for _ in 0..4 {
            spares.give_back(Bytes::from(vec![0u8; each]));
        }
        let mut kept = 0;
        while spares.take().capacity() > 0 {
            kept += 1;
        }
        assert_eq!(kept, 3);
    }

    #[test]
    fn an_object_gets_the_content_type_its_name_says() {
        assert_eq!(content_type_of("mm/2026/1-output.mp4"), Some("video/mp4"));
        assert_eq!(content_type_of("mm/1-OUTPUT.MP4"), Some("video/mp4"));
        assert_eq!(
            content_type_of("mm/1-output.mp4.json"),
            Some("application/json")
        );
        assert_eq!(content_type_of("speech.mp3"), Some("audio/mpeg"));
        assert_eq!(content_type_of("cover.jpeg"), Some("image/jpeg"));
        assert_eq!(content_type_of("mm/no-extension"), None);
        assert_eq!(content_type_of("v1.2/clip"), None, "a dot in a folder");
        assert_eq!(content_type_of("clip.xyz"), None);
    }

    #[test]
    fn a_refusal_left_generic_is_still_a_credentials_stop_and_not_retried() {
        let refused = || object_store::Error::Generic {
            store: "S3",
            source:
                "Error performing list request: 403 Forbidden: <Code>SignatureDoesNotMatch</Code>"
                    .into(),
        };
        assert!(!is_transient(&refused()));
        assert!(matches!(
            classify("s3://videos", refused()),
            BucketError::Credentials { .. }
        ));
        let dropped = object_store::Error::Generic {
            store: "S3",
            source: "connection reset by peer".into(),
        };
        assert!(is_transient(&dropped));
        assert!(matches!(
            classify("s3://videos", dropped),
            BucketError::Unreachable { .. }
        ));
    }

    #[test]
    fn plain_http_is_for_loopback_unless_allowed() {
        let loc = BucketLocation::parse("s3://videos").unwrap();
        let env = |far: bool| {
            move |name: &str| match name {
                "AWS_ENDPOINT_URL" if far => Some("http://store.example:8333".to_string()),
                "AWS_ENDPOINT_URL" => Some("http://127.0.0.1:8333".to_string()),
                "AWS_ACCESS_KEY_ID" => Some("id".to_string()),
                "AWS_SECRET_ACCESS_KEY" => Some("secret".to_string()),
                _ => None,
            }
        };
        let refused =
            Bucket::connect(loc.clone(), &env(true), &BucketOptions::default()).unwrap_err();
        assert!(
            refused.to_string().contains("plain http to another host"),
            "{refused}"
        );
        assert!(refused.is_lasting());
        let allowed = BucketOptions { allow_http: true };
        assert!(Bucket::connect(loc.clone(), &env(true), &allowed).is_ok());
        assert!(Bucket::connect(loc, &env(false), &BucketOptions::default()).is_ok());
    }
}
