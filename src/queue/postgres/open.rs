//! Opening a PostgreSQL queue. As with SQLite, a database is looked at
//! before anything is written to it: a verb that only reads never creates
//! the schema, and another application's database is refused, never
//! altered. The schema is created by the first writing open, under the
//! migrator's advisory lock, so several processes starting at once on an
//! empty database serialise there and all succeed.
//!
//! The URL may carry a password (so may `PGPASSWORD` and `~/.pgpass`, which
//! sqlx reads as libpq does). It is only ever shown redacted
//! ([`DbLocation::redacted`](crate::location::DbLocation::redacted));
//! the connect options are never `Debug`-printed (theirs prints it).

use std::str::FromStr;
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};

use super::{PgStore, deadline, no_answer};
use crate::queue::migrations::POSTGRES_MIGRATOR;
use crate::queue::{CommitSync, DbLocation, QueueError};

/// Connections each process keeps to the database (plus, at start, one for
/// migrating, closed after). A pool serves claims, heartbeats, checkpoints,
/// completions and reads; each is one short statement, and group commit
/// and batched claims keep their number low, so four carry a pool of
/// hundreds of downloads. A fleet of N hosts needs about 4·N connections
/// (PostgreSQL's default `max_connections` is 100).
pub(crate) const POOL_SIZE: u32 = 4;

/// A transaction left open this long by a process that stopped talking
/// (killed mid-verb, a network cut) is ended by the server, releasing its
/// row locks, instead of holding them until TCP notices (hours).
const IDLE_IN_TRANSACTION_TIMEOUT: &str = "60s";

/// TCP keepalives on the server's side of each connection: a host that
/// vanished (power cut, network gone) is noticed by the server in about a
/// minute (30 s idle, then 3 probes 10 s apart) instead of the kernel's two
/// hours, and its session, advisory locks and `pg_stat_activity` row go
/// with it. sqlx sets no keepalive on the client's socket; the client's side
/// is the per-call deadline (`db_timeout_secs`), which also covers a server
/// that keeps the connection alive but never answers.
const SERVER_KEEPALIVES: [(&str, &str); 3] = [
    ("tcp_keepalives_idle", "30"),
    ("tcp_keepalives_interval", "10"),
    ("tcp_keepalives_count", "3"),
];

/// A pooled connection idle for longer is pinged before use; one used
/// moments ago is not (a ping per statement would double every round trip).
const PING_AFTER_IDLE: Duration = Duration::from_secs(5);

/// What a database holds, as far as opening it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Contents {
    /// No tables in the current schema (or only an empty migrations table,
    /// left by a first migration that another process is still running or
    /// that failed).
    Empty,
    /// A queue: our first migration is applied. `behind` when this build has
    /// migrations it has not had.
    Queue { behind: bool },
    /// Someone else's tables.
    Foreign,
}

/// Decides from the tables of the current schema and the applied
/// migrations (version, checksum) what a database is, given ours. Pure.
pub(crate) fn identify(
    tables: &[String],
    applied: &[(i64, Vec<u8>)],
    ours: &[(i64, &[u8])],
) -> Contents {
    let only_migrations = tables.iter().all(|t| t == "_sqlx_migrations");
    if only_migrations && applied.is_empty() {
        return Contents::Empty;
    }
    let first_is_ours = ours.first().is_some_and(|(version, checksum)| {
        applied
            .iter()
            .any(|(v, c)| v == version && c.as_slice() == *checksum)
    });
    if !tables.iter().any(|t| t == "_sqlx_migrations") || !first_is_ours {
        return Contents::Foreign;
    }
    let behind = ours
        .iter()
        .any(|(version, _)| !applied.iter().any(|(v, _)| v == version));
    Contents::Queue { behind }
}

impl PgStore {
    /// Opens the queue for a verb that writes: creates the schema in an
    /// empty database, migrates an older one, refuses someone else's.
    pub(crate) async fn open_with(
        location: &DbLocation,
        sync: CommitSync,
    ) -> Result<PgStore, QueueError> {
        let display = location.redacted();
        let synchronous_commit = match sync {
            CommitSync::Full => "on",
            CommitSync::Normal => "off",
        };
        let options = connect_options(location, &display)?
            .options([("synchronous_commit", synchronous_commit)]);
        open_checked(options.clone(), options, POOL_SIZE, Verb::Writes, display).await
    }

    /// Opens an existing queue for a verb that writes but adds no work
    /// (`retry`, `cancel`, `prune`): a database without the schema is no
    /// queue, and is left as it is.
    pub(crate) async fn open_existing(location: &DbLocation) -> Result<PgStore, QueueError> {
        let display = location.redacted();
        let options = connect_options(location, &display)?.options([("synchronous_commit", "on")]);
        open_checked(options.clone(), options, POOL_SIZE, Verb::Edits, display).await
    }

    /// Opens the queue for a verb that only reads (`status`, `list`, `show`):
    /// read-only transactions, nothing created. A queue whose schema is older
    /// than this build is upgraded first (the only write a reading verb
    /// makes, as on SQLite).
    pub(crate) async fn open_read_only(location: &DbLocation) -> Result<PgStore, QueueError> {
        let display = location.redacted();
        let options = connect_options(location, &display)?;
        let reading = options
            .clone()
            .options([("default_transaction_read_only", "on")]);
        open_checked(reading, options, 2, Verb::Reads, display).await
    }
}

/// Whether the verb opening the queue writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verb {
    /// Adds work: creates the schema in an empty database.
    Writes,
    /// Changes an existing queue (`retry`, `cancel`, `prune`).
    Edits,
    Reads,
}

/// What an open does with what it found (pure): `Ok(true)` migrates first,
/// `Ok(false)` uses the queue as it is.
pub(crate) fn plan(contents: Contents, verb: Verb, display: &str) -> Result<bool, QueueError> {
    match (contents, verb) {
        (Contents::Foreign, _) => Err(QueueError::NotOurs {
            location: display.to_string(),
        }),
        (Contents::Empty, Verb::Reads | Verb::Edits) => Err(QueueError::NoQueueIn {
            location: display.to_string(),
        }),
        (Contents::Empty, Verb::Writes) => Ok(true),
        (Contents::Queue { behind }, _) => Ok(behind),
    }
}

/// The pool, once the database was found to be a queue this verb may use
/// (and migrated, if it had to be). The look and the migration are made on
/// a connection of their own, closed afterwards whatever happened: sqlx's
/// migrator holds a session advisory lock while it works (which is what
/// serialises processes starting at once) and returns without unlocking
/// when a migration fails; a pooled connection would go back to the pool
/// still holding it, and the next migrator would wait for ever. Connecting
/// once by hand first also reports a server that refuses or a bad password
/// at once, where the pool would retry until its acquire timeout.
async fn open_checked(
    pooled: PgConnectOptions,
    migrating: PgConnectOptions,
    size: u32,
    verb: Verb,
    display: String,
) -> Result<PgStore, QueueError> {
    let connect_error = |cause| QueueError::Connect {
        location: display.clone(),
        cause,
    };
    // Bounded: a server that accepts the connection and never answers
    // must not hold the verb for ever (see `super::within`).
    let mut conn = tokio::time::timeout(deadline(), PgConnection::connect_with(&migrating))
        .await
        .unwrap_or_else(|_| Err(no_answer()))
        .map_err(connect_error)?;
    let checked = async {
        let contents = tokio::time::timeout(deadline(), inspect(&mut conn, &display))
            .await
            .unwrap_or_else(|_| Err(connect_error(no_answer())))?;
        // The migration is not bounded: it may wait for another process's
        // migration (the migrator's lock) for as long as that takes.
        if plan(contents, verb, &display)? {
            POSTGRES_MIGRATOR
                .run(&mut conn)
                .await
                .map_err(|cause| QueueError::Migrate {
                    location: display.clone(),
                    cause,
                })?;
        }
        Ok::<_, QueueError>(())
    };
    let checked = checked.await;
    let _ = conn.close().await;
    checked?;
    // The server ends a statement of ours that runs past the deadline too,
    // so that one the client gave up on does not go on holding its locks.
    let statement_timeout = deadline().as_millis().to_string();
    let pooled = pooled.options([("statement_timeout", statement_timeout)]);
    let pool = tokio::time::timeout(deadline(), connect(pooled.clone(), size, &display))
        .await
        .unwrap_or_else(|_| Err(connect_error(no_answer())))?;
    Ok(PgStore::new(pool, display, pooled))
}

/// The URL's options (with `PGPASSWORD`, `~/.pgpass`, `PGSSLMODE` ... as
/// libpq reads them) plus what every connection of ours sets.
fn connect_options(location: &DbLocation, display: &str) -> Result<PgConnectOptions, QueueError> {
    let options =
        PgConnectOptions::from_str(location.0.trim()).map_err(|cause| QueueError::Connect {
            location: display.to_string(),
            cause,
        })?;
    Ok(options
        .application_name(&application_name())
        .options([(
            "idle_in_transaction_session_timeout",
            IDLE_IN_TRANSACTION_TIMEOUT,
        )])
        .options(SERVER_KEEPALIVES))
}

/// `minimax-dl <host> pid <pid>` in `pg_stat_activity`: which process of
/// which host holds a connection.
fn application_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    let pid = std::process::id();
    if host.is_empty() {
        format!("minimax-dl pid {pid}")
    } else {
        format!("minimax-dl {host} pid {pid}")
    }
}

async fn connect(
    options: PgConnectOptions,
    size: u32,
    display: &str,
) -> Result<PgPool, QueueError> {
    PgPoolOptions::new()
        .max_connections(size)
        // Past the deadline a statement waiting for a connection counts
        // the database as unreachable (the daemon backs off and retries)
        // rather than every worker queueing behind a server that does not
        // answer.
        .acquire_timeout(deadline())
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > PING_AFTER_IDLE {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_with(options)
        .await
        .map_err(|cause| QueueError::Connect {
            location: display.to_string(),
            cause,
        })
}

/// The tables of the current schema and the applied migrations, read
/// without writing anything.
async fn inspect(conn: &mut PgConnection, display: &str) -> Result<Contents, QueueError> {
    let read = async {
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema()",
        )
        .fetch_all(&mut *conn)
        .await?;
        let applied: Vec<(i64, Vec<u8>)> = if tables.iter().any(|t| t == "_sqlx_migrations") {
            sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations WHERE success")
                .fetch_all(&mut *conn)
                .await?
        } else {
            Vec::new()
        };
        Ok::<_, sqlx::Error>((tables, applied))
    };
    let (tables, applied) = read.await.map_err(|cause| QueueError::Connect {
        location: display.to_string(),
        cause,
    })?;
    let ours: Vec<(i64, &[u8])> = POSTGRES_MIGRATOR
        .iter()
        .map(|m| (m.version, m.checksum.as_ref()))
        .collect();
    Ok(identify(&tables, &applied, &ours))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_connection_asks_the_server_for_keepalives_and_an_idle_transaction_limit() {
        let location =
            DbLocation("postgres://u@db.example/queue?options=-c%20search_path%3Dq".into());
        let options = connect_options(&location, "db.example").unwrap();
        let sent = options.get_options().unwrap_or_default();
        for wanted in [
            "-c tcp_keepalives_idle=30",
            "-c tcp_keepalives_interval=10",
            "-c tcp_keepalives_count=3",
            "-c idle_in_transaction_session_timeout=60s",
            "search_path",
        ] {
            assert!(sent.contains(wanted), "{wanted} in {sent}");
        }
    }

    #[test]
    fn reading_verbs_never_create_and_nobody_touches_a_foreign_database() {
        use Contents::*;
        let at = "postgres://h/db";
        for verb in [Verb::Reads, Verb::Edits] {
            assert!(matches!(
                plan(Empty, verb, at),
                Err(QueueError::NoQueueIn { .. })
            ));
        }
        assert!(matches!(plan(Empty, Verb::Writes, at), Ok(true)));
        for verb in [Verb::Reads, Verb::Edits, Verb::Writes] {
            assert!(matches!(
                plan(Foreign, verb, at),
                Err(QueueError::NotOurs { .. })
            ));
            assert!(matches!(plan(Queue { behind: true }, verb, at), Ok(true)));
            assert!(matches!(plan(Queue { behind: false }, verb, at), Ok(false)));
        }
    }

    #[test]
    fn a_database_is_ours_only_with_our_first_migration() {
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let ours: [(i64, &[u8]); 2] = [(1, b"one"), (2, b"two")];
        let queue = names(&["_sqlx_migrations", "jobs", "job_events"]);
        assert_eq!(identify(&[], &[], &ours), Contents::Empty);
        assert_eq!(
            identify(&names(&["_sqlx_migrations"]), &[], &ours),
            Contents::Empty
        );
        let first = vec![(1, b"one".to_vec())];
        let both = vec![(1, b"one".to_vec()), (2, b"two".to_vec())];
        assert_eq!(
            identify(&queue, &both, &ours),
            Contents::Queue { behind: false }
        );
        assert_eq!(
            identify(&queue, &first, &ours),
            Contents::Queue { behind: true }
        );
        // A newer build's queue is still ours (the migrator says what is missing).
        let newer = vec![
            (1, b"one".to_vec()),
            (2, b"two".to_vec()),
            (3, b"three".to_vec()),
        ];
        assert_eq!(
            identify(&queue, &newer, &ours),
            Contents::Queue { behind: false }
        );
        // Tables without migrations, or another application's migrations.
        assert_eq!(identify(&names(&["users"]), &[], &ours), Contents::Foreign);
        assert_eq!(
            identify(&names(&["jobs", "job_events"]), &[], &ours),
            Contents::Foreign
        );
        let theirs = vec![(1, b"not ours".to_vec())];
        assert_eq!(identify(&queue, &theirs, &ours), Contents::Foreign);
        assert_eq!(
            identify(&names(&["_sqlx_migrations", "users"]), &[], &ours),
            Contents::Foreign
        );
    }
}
