//! What can go wrong with the queue.

use std::path::PathBuf;

/// Each message already says what went wrong underneath, so the underlying
/// error is kept as a plain field (`cause`), not as the error's `source()`:
/// `{:#}` would otherwise print it two or three times over.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("cannot create the directory {path} for the queue database: {cause}")]
    CreateDir {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "cannot open the queue database {location}: {cause}. Check that the path is right, readable and writable, and is a minimax-dl SQLite database"
    )]
    Open {
        location: String,
        cause: sqlx::Error,
    },
    #[error(
        "the queue database {location} could not be migrated: {cause}. Is it a minimax-dl database written by a newer version?"
    )]
    Migrate {
        location: String,
        cause: sqlx::migrate::MigrateError,
    },
    #[error("no queue at {location} (run `minimax-dl enqueue` to create one)")]
    Missing { location: String },
    #[error("the queue location {location} {why}")]
    BadLocation { location: String, why: &'static str },
    #[error(
        "{location} is not a minimax-dl queue: it is another application's SQLite database, left unchanged. Check --db, MINIMAX_DL_DATABASE or `database` in the config file"
    )]
    NotAQueue { location: String },
    #[error(
        "queue {location} is read-only: enqueue, run, fetch, retry and cancel need to write it. Check its permissions and owner (status, list and show work on a read-only queue)"
    )]
    ReadOnly { location: String },
    #[error(
        "queue {location} was written by an older minimax-dl and needs upgrading, but is read-only here: run `minimax-dl status` once as a user who may write it"
    )]
    Outdated { location: String },
    #[error(
        "cannot use the PostgreSQL queue {location}: {cause}. Check the host, port, database, user, the password (in the URL, PGPASSWORD or ~/.pgpass) and sslmode"
    )]
    Connect {
        location: String,
        cause: sqlx::Error,
    },
    #[error(
        "no queue at {location}: run `minimax-dl enqueue` to create one (only enqueue, sync, run, fetch and db copy --to create a queue)"
    )]
    NoQueueIn { location: String },
    #[error(
        "{location} is not a minimax-dl queue: it holds another application's tables, left unchanged. Give minimax-dl a database of its own (CREATE DATABASE minimax_dl OWNER <user>)"
    )]
    NotOurs { location: String },
    #[error("{what} is not possible on a PostgreSQL queue")]
    Unsupported { what: &'static str },
    #[error("queue database error: {0}")]
    Sql(sqlx::Error),
    #[error("job {0} is no longer leased by this worker (it was reclaimed or cancelled)")]
    LeaseLost(i64),
}

impl QueueError {
    /// The database did not answer (connection refused or reset, a timeout,
    /// a server shutting down): worth trying again later, unlike a wrong
    /// path, a foreign database or a bad password.
    pub fn is_unreachable(&self) -> bool {
        match self {
            QueueError::Open { cause, .. }
            | QueueError::Connect { cause, .. }
            | QueueError::Sql(cause) => unreachable(cause),
            QueueError::Migrate {
                cause: sqlx::migrate::MigrateError::Execute(cause),
                ..
            } => unreachable(cause),
            _ => false,
        }
    }
}

/// See [`QueueError::is_unreachable`]: SQLSTATE class 08 (connection
/// exception) and 57P01-57P03 (the server shutting down or starting).
fn unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}

impl From<sqlx::Error> for QueueError {
    fn from(e: sqlx::Error) -> QueueError {
        QueueError::Sql(e)
    }
}

/// A worker's write matched its row only if `owner` still held the lease.
pub(crate) fn lease_held(rows_affected: u64, file_id: i64) -> Result<(), QueueError> {
    if rows_affected == 1 {
        Ok(())
    } else {
        Err(QueueError::LeaseLost(file_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_connection_is_unreachable_and_a_missing_file_is_not() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(QueueError::Sql(sqlx::Error::Io(refused)).is_unreachable());
        assert!(QueueError::Sql(sqlx::Error::PoolTimedOut).is_unreachable());
        assert!(
            !QueueError::Missing {
                location: "q.db".into()
            }
            .is_unreachable()
        );
        assert!(!QueueError::Sql(sqlx::Error::RowNotFound).is_unreachable());
        assert!(!QueueError::LeaseLost(1).is_unreachable());
    }
}
