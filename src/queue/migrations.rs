//! The schema migrations, embedded in the binary without `sqlx::migrate!`.
//!
//! The macro needs sqlx's `macros` feature, whose proc-macro crate compiles
//! sqlx's core, both drivers and the bundled SQLite C library a second time
//! for the build host: about a minute of every cold build, clippy run and
//! fuzz build. Here each file is `include_str!`-ed and turned into a
//! [`Migration`] the way sqlx reads a migrations folder (version before the
//! first `_`, the rest the description with `_` as spaces, `-- no-transaction`
//! opting out of the transaction, SHA-384 of the text as the checksum), so a
//! database migrated by an older build checks out the same. A unit test
//! compares both lists with what sqlx reads from the folders, so a new file
//! cannot be forgotten here.

use std::sync::LazyLock;

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

/// One migration file: its name in the folder and its text.
struct Embedded {
    file: &'static str,
    sql: &'static str,
}

macro_rules! embed {
    ($dir:literal: $($file:literal),+ $(,)?) => {
        &[$(Embedded {
            file: $file,
            sql: include_str!(concat!("../../migrations/", $dir, "/", $file)),
        }),+]
    };
}

const SQLITE: &[Embedded] = embed!("sqlite":
    "0001_queue.sql",
    "0002_pieces.sql",
    "0003_job_counts.sql",
    "0004_claim_index.sql",
    "0005_hot_path_events.sql",
    "0006_checkpoint_boot_id.sql",
    "0007_file_host.sql",
    "0008_fleet.sql",
    "0009_tasks.sql",
    "0010_account_pauses.sql",
    "0011_api_rate.sql",
    "0013_uploads.sql",
    "0014_host_pauses.sql",
);

const POSTGRES: &[Embedded] = embed!("postgres":
    "0001_queue.sql",
    "0002_tasks.sql",
    "0003_account_pauses.sql",
    "0004_api_rate.sql",
    "0006_uploads.sql",
    "0007_host_pauses.sql",
);

/// The SQLite queue's migrator.
pub(crate) static SQLITE_MIGRATOR: LazyLock<Migrator> = LazyLock::new(|| migrator(SQLITE));

/// The PostgreSQL queue's migrator.
pub(crate) static POSTGRES_MIGRATOR: LazyLock<Migrator> = LazyLock::new(|| migrator(POSTGRES));

fn migrator(files: &'static [Embedded]) -> Migrator {
    Migrator::with_migrations(files.iter().map(migration).collect())
}

/// A file as sqlx's folder reader makes it into a migration. The names are
/// this crate's own, fixed above, so a malformed one is a bug caught by the
/// unit tests, never a user's input.
fn migration(file: &'static Embedded) -> Migration {
    let (version, rest) = file
        .file
        .split_once('_')
        .expect("a migration file name has a version, `_`, then a description");
    let version: i64 = version.parse().expect("a migration version is a number");
    let description = rest
        .strip_suffix(".sql")
        .expect("a migration file name ends in .sql")
        .replace('_', " ");
    let no_tx = file.sql.starts_with("-- no-transaction");
    Migration::new(
        version,
        description.into(),
        MigrationType::Simple,
        file.sql.into_sql_str(),
        no_tx,
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// What sqlx reads from the folder, as (version, description, checksum,
    /// no-transaction).
    type Summary = (i64, String, Vec<u8>, bool);

    fn summary(migrator: &Migrator) -> Vec<Summary> {
        migrator
            .iter()
            .map(|m| {
                (
                    m.version,
                    m.description.to_string(),
                    m.checksum.to_vec(),
                    m.no_tx,
                )
            })
            .collect()
    }

    async fn from_folder(dir: &str) -> Vec<Summary> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(dir);
        summary(
            &Migrator::new(path.as_path())
                .await
                .expect("read the folder"),
        )
    }

    #[tokio::test]
    async fn the_embedded_sqlite_migrations_are_the_folders_to_the_checksum() {
        let embedded = summary(&SQLITE_MIGRATOR);
        assert_eq!(embedded, from_folder("sqlite").await);
        assert!(embedded.len() >= 12, "{embedded:?}");
    }

    #[tokio::test]
    async fn the_embedded_postgres_migrations_are_the_folders_to_the_checksum() {
        let embedded = summary(&POSTGRES_MIGRATOR);
        assert_eq!(embedded, from_folder("postgres").await);
        assert!(embedded.len() >= 5, "{embedded:?}");
    }

    #[test]
    fn versions_ascend_and_descriptions_read_as_words() {
        let versions: Vec<i64> = SQLITE_MIGRATOR.iter().map(|m| m.version).collect();
        assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
        let first = SQLITE_MIGRATOR.iter().next().unwrap();
        assert_eq!((first.version, &*first.description), (1, "queue"));
        let hot = SQLITE_MIGRATOR.iter().find(|m| m.version == 5).unwrap();
        assert_eq!(hot.description, "hot path events");
    }
}
