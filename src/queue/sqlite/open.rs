//! Opening the queue database. A path is looked at before anything is
//! written to it: a mistyped `--db` must not create a database, a verb that
//! only reads must work on a queue it cannot write (another user's, a
//! backup), and another application's SQLite file must come out unchanged.
//! `PRAGMA application_id` marks a file as a queue; queues made before the
//! mark existed are recognised by their tables and marked on the next
//! writing open.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Connection, Row};

use super::SqliteStore;
use crate::queue::migrations::SQLITE_MIGRATOR;
use crate::queue::{CommitSync, DbLocation, QueueError};

/// The queue's mark in the SQLite header: "MMDL" in ASCII.
pub const APPLICATION_ID: i32 = 0x4d4d_444c;

/// What an existing SQLite file holds, as far as opening it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contents {
    /// No tables at all (an empty file, or one just being created).
    Empty,
    /// Marked as a queue.
    Queue,
    /// A queue made before the mark existed: its migrations and jobs tables.
    UnmarkedQueue,
    /// Someone else's database.
    Foreign,
}

/// Decides from the header's application id and the table names what a file
/// is. Pure.
pub fn identify(application_id: i32, tables: &[String]) -> Contents {
    let has = |name: &str| tables.iter().any(|t| t == name);
    match application_id {
        APPLICATION_ID => Contents::Queue,
        0 if tables.is_empty() => Contents::Empty,
        0 if has("_sqlx_migrations") && has("jobs") && has("job_events") => Contents::UnmarkedQueue,
        _ => Contents::Foreign,
    }
}

/// What [`inspect`] found in an existing file.
struct Found {
    contents: Contents,
    /// Migrations this build knows that the file has not had.
    behind: bool,
    /// How it could be read (see [`reading_options`]).
    options: SqliteConnectOptions,
}

impl SqliteStore {
    /// Opens the queue for a verb that writes: creates the file (and its
    /// directory) when missing, refuses a file that is someone else's
    /// database or that we may not write, migrates and marks it.
    pub(crate) async fn open_with(
        location: &DbLocation,
        sync: CommitSync,
    ) -> Result<SqliteStore, QueueError> {
        let path = location.sqlite_path();
        let display = path.display().to_string();
        if !exists(&path, &display)?
            && let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent).map_err(|cause| QueueError::CreateDir {
                path: parent.to_path_buf(),
                cause,
            })?;
        }
        let _first_open = OpenLock::take(&path, Sharing::Exclusive).await;
        let created = !exists(&path, &display)? && create_private(&path, &display)?;
        let mut marked = false;
        if exists(&path, &display)? {
            let found = inspect(&path, &display).await?;
            if found.contents == Contents::Foreign {
                return Err(QueueError::NotAQueue { location: display });
            }
            if !writable(&path) {
                return Err(QueueError::ReadOnly { location: display });
            }
            marked = found.contents == Contents::Queue;
        }
        let options = writing_options(&path, sync);
        let pool = connect(options.clone(), 8, &display).await?;
        SQLITE_MIGRATOR
            .run(&pool)
            .await
            .map_err(|cause| QueueError::Migrate {
                location: display.clone(),
                cause,
            })?;
        let writer = connect(options, 1, &display).await?;
        if created {
            restrict_sidecars(&path, &display)?;
        }
        if !marked {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "PRAGMA application_id = {APPLICATION_ID}"
            )))
            .execute(&writer)
            .await
            .map_err(|cause| readonly_or(cause, &display))?;
        }
        Ok(SqliteStore::from_pools(pool, writer, display))
    }

    /// Opens an existing queue for a verb that writes but adds no work:
    /// a missing or empty file is no queue, and nothing is created.
    pub(crate) async fn open_existing(location: &DbLocation) -> Result<SqliteStore, QueueError> {
        let path = location.sqlite_path();
        let display = path.display().to_string();
        if !exists(&path, &display)? || inspect(&path, &display).await?.contents == Contents::Empty
        {
            return Err(QueueError::Missing { location: display });
        }
        SqliteStore::open_with(location, CommitSync::Full).await
    }

    /// Opens the queue for a verb that only reads (`status`, `list`, `show`):
    /// SQLite's read-only mode, nothing created, nothing written. A queue
    /// whose schema is older than this build is upgraded first when we may
    /// write it (the only write a reading verb makes), else refused.
    pub(crate) async fn open_read_only(location: &DbLocation) -> Result<SqliteStore, QueueError> {
        let path = location.sqlite_path();
        let display = path.display().to_string();
        if !exists(&path, &display)? {
            return Err(QueueError::Missing { location: display });
        }
        let first_open = OpenLock::take(&path, Sharing::Shared).await;
        let found = inspect(&path, &display).await?;
        drop(first_open);
        match found.contents {
            Contents::Empty => return Err(QueueError::Missing { location: display }),
            Contents::Foreign => return Err(QueueError::NotAQueue { location: display }),
            Contents::Queue | Contents::UnmarkedQueue => {}
        }
        if found.behind {
            if !writable(&path) {
                return Err(QueueError::Outdated { location: display });
            }
            SqliteStore::open_with(location, CommitSync::Full)
                .await?
                .close()
                .await;
        }
        let pool = connect(found.options, 4, &display).await?;
        Ok(SqliteStore::from_pools(pool.clone(), pool, display))
    }
}

/// Whether an [`OpenLock`] keeps others out or only writers.
#[derive(Clone, Copy)]
enum Sharing {
    Exclusive,
    Shared,
}

/// Serialises opening a queue: two processes starting at once on a new path
/// (an `enqueue` and a `run` from one script, several units at boot) must
/// not both create and migrate it, and a reader must not take a file that is
/// still being made for another application's database. The lock is an
/// `flock` on the queue's directory, not on the file: closing any
/// descriptor of the database file would drop the POSIX locks SQLite holds
/// on it in this process. It is held only while opening; a directory that
/// cannot be opened (no read permission) goes without it.
struct OpenLock {
    _held: Option<std::fs::File>,
}

impl OpenLock {
    async fn take(path: &Path, sharing: Sharing) -> OpenLock {
        let dir = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(parent) => parent.to_path_buf(),
            None => Path::new(".").to_path_buf(),
        };
        let locked = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(dir).ok()?;
            let taken = match sharing {
                Sharing::Exclusive => file.lock(),
                Sharing::Shared => file.lock_shared(),
            };
            taken.ok().map(|()| file)
        })
        .await
        .ok()
        .flatten();
        OpenLock { _held: locked }
    }
}

/// Mode of a queue file this process creates, and of its -wal and -shm:
/// the queue names every file of the account and where it is archived, for
/// its owner alone.
pub const PRIVATE_FILE_MODE: u32 = 0o600;

/// Creates the missing queue file, empty, 0600 whatever the umask (SQLite
/// would create it 0644 under the usual umask). Returns `true`; `false`
/// when another process created it first.
fn create_private(path: &Path, display: &str) -> Result<bool, QueueError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io_error = |cause| QueueError::Open {
        location: display.to_string(),
        cause: sqlx::Error::Io(cause),
    };
    let file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_FILE_MODE)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(io_error(e)),
    };
    file.set_permissions(std::fs::Permissions::from_mode(PRIVATE_FILE_MODE))
        .map_err(io_error)?;
    Ok(true)
}

/// SQLite gives the -wal and -shm files the database's mode; they are set
/// to 0600 again for a new queue, in case a build of SQLite did not.
fn restrict_sidecars(path: &Path, display: &str) -> Result<(), QueueError> {
    use std::os::unix::fs::PermissionsExt;
    for suffix in ["-wal", "-shm"] {
        let mut sidecar = path.as_os_str().to_owned();
        sidecar.push(suffix);
        match std::fs::set_permissions(&sidecar, std::fs::Permissions::from_mode(PRIVATE_FILE_MODE))
        {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(QueueError::Open {
                    location: display.to_string(),
                    cause: sqlx::Error::Io(e),
                });
            }
            _ => {}
        }
    }
    Ok(())
}

fn writing_options(path: &Path, sync: CommitSync) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(match sync {
            CommitSync::Full => SqliteSynchronous::Full,
            CommitSync::Normal => SqliteSynchronous::Normal,
        })
        .busy_timeout(Duration::from_secs(30))
        .foreign_keys(true)
        // Checkpoint the WAL every 32 MiB rather than every 4: the queue
        // rewrites the same few pages (counts, index nodes) in every
        // commit, and a checkpoint copies each page once however often
        // it changed, so rarer checkpoints mean far fewer page writes
        // and fsyncs for the same work.
        .pragma("wal_autocheckpoint", "8192")
}

async fn connect(
    options: SqliteConnectOptions,
    connections: u32,
    display: &str,
) -> Result<SqlitePool, QueueError> {
    SqlitePoolOptions::new()
        .max_connections(connections)
        // A local file needs no ping before each use: it would be one
        // more round trip to the database thread per query.
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .map_err(|cause| readonly_or(cause, display))
}

fn exists(path: &Path, display: &str) -> Result<bool, QueueError> {
    path.try_exists().map_err(|cause| QueueError::Open {
        location: display.to_string(),
        cause: sqlx::Error::Io(cause),
    })
}

/// Read-only, with no pragma that could change the file. `immutable` is for
/// a WAL file nobody has open in a directory we may not write (another
/// user's queue, a backup): SQLite cannot make the shared-memory file it
/// would need, and nobody is writing the file meanwhile.
fn reading_options(path: &Path, immutable: bool) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .immutable(immutable)
        .busy_timeout(Duration::from_secs(30))
}

/// Reads the mark, the tables and the applied migrations through a
/// read-only connection, so the file is left exactly as it was whatever it
/// turns out to be.
async fn inspect(path: &Path, display: &str) -> Result<Found, QueueError> {
    match inspect_with(reading_options(path, false)).await {
        Err(e) if cannot_make_shared_memory(&e) => inspect_with(reading_options(path, true)).await,
        other => other,
    }
    .map_err(|cause| QueueError::Open {
        location: display.to_string(),
        cause,
    })
}

async fn inspect_with(options: SqliteConnectOptions) -> Result<Found, sqlx::Error> {
    let mut conn = SqliteConnection::connect_with(&options).await?;
    let found = read_identity(&mut conn).await;
    let _ = conn.close().await;
    let (contents, behind) = found?;
    Ok(Found {
        contents,
        behind,
        options,
    })
}

/// SQLITE_READONLY_CANTINIT and SQLITE_READONLY_DIRECTORY: a read-only
/// connection to a WAL file found no shared-memory file and may not create one.
fn cannot_make_shared_memory(e: &sqlx::Error) -> bool {
    let code = e.as_database_error().and_then(|d| d.code());
    matches!(code.as_deref(), Some("1288" | "1544"))
}

async fn read_identity(conn: &mut SqliteConnection) -> Result<(Contents, bool), sqlx::Error> {
    // The first real read is where a corrupt file shows itself.
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(&mut *conn)
            .await?;
    let application_id: i32 = sqlx::query("PRAGMA application_id")
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?;
    let contents = identify(application_id, &tables);
    let behind = match contents {
        Contents::Queue | Contents::UnmarkedQueue => {
            let applied: Vec<i64> =
                sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                    .fetch_all(&mut *conn)
                    .await?;
            SQLITE_MIGRATOR
                .iter()
                .any(|m| !applied.contains(&m.version))
        }
        Contents::Empty | Contents::Foreign => false,
    };
    Ok((contents, behind))
}

/// Whether this process may write the file. The mode bits are honoured even
/// for root, who could write anyway: a queue someone made read-only is
/// meant to stay as it is.
fn writable(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    if meta.permissions().readonly() {
        return false;
    }
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c_path` is a valid NUL-terminated string for the call.
    unsafe { libc::access(c_path.as_ptr(), libc::W_OK) == 0 }
}

/// SQLite's "attempt to write a readonly database" (code 8 and its extended
/// codes) becomes [`QueueError::ReadOnly`]; anything else an open error.
fn readonly_or(cause: sqlx::Error, display: &str) -> QueueError {
    let code = cause
        .as_database_error()
        .and_then(|e| e.code())
        .and_then(|c| c.parse::<i32>().ok());
    match code {
        Some(c) if c & 0xff == 8 => QueueError::ReadOnly {
            location: display.to_string(),
        },
        _ => QueueError::Open {
            location: display.to_string(),
            cause,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_mark_and_the_tables_say_what_a_file_is() {
        let queue_tables = names(&["_sqlx_migrations", "jobs", "job_events", "api_calls"]);
        assert_eq!(identify(APPLICATION_ID, &queue_tables), Contents::Queue);
        assert_eq!(identify(0, &queue_tables), Contents::UnmarkedQueue);
        assert_eq!(identify(0, &[]), Contents::Empty);
        assert_eq!(identify(APPLICATION_ID, &[]), Contents::Queue);
        assert_eq!(identify(0, &names(&["notes", "tags"])), Contents::Foreign);
        // Another application's migrations table alone is not a queue.
        assert_eq!(
            identify(0, &names(&["_sqlx_migrations", "users"])),
            Contents::Foreign
        );
        // Another application's mark wins over lookalike tables.
        assert_eq!(identify(0x0f0f_0f0f, &queue_tables), Contents::Foreign);
    }
}
