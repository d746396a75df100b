//! A job's object in a bucket archive (migration 0006): the statements of
//! the lease holder's upload records (`orchestrate/uploads.rs` runs them),
//! on the database clock, and the record read back.

use super::{PgStore, PgTx};
use crate::queue::orchestrate::UploadStatements;
use crate::queue::{QueueError, StoredObject, Upload};

/// The lease check every write here makes: the job is running under `$2`.
const HELD: &str = "EXISTS (SELECT 1 FROM jobs WHERE file_id = $1::bigint AND state = 'running' \
     AND lease_owner = $2::text)";

impl UploadStatements for PgStore {
    async fn write_upload(
        tx: &mut PgTx,
        file_id: i64,
        owner: &str,
        object_url: &str,
        upload_id: Option<&str>,
    ) -> Result<u64, sqlx::Error> {
        let sql = format!(
            "INSERT INTO uploads (file_id, object_url, upload_id, etag, version, updated_at) \
             SELECT $1::bigint, $3::text, $4::text, NULL, NULL, mdl_now_ms() WHERE {HELD} \
             ON CONFLICT (file_id) DO UPDATE SET object_url = excluded.object_url, \
               upload_id = excluded.upload_id, etag = NULL, version = NULL, updated_at = excluded.updated_at"
        );
        let written = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(file_id)
            .bind(owner)
            .bind(object_url)
            .bind(upload_id)
            .execute(&mut **tx)
            .await?;
        Ok(written.rows_affected())
    }

    async fn write_uploaded(
        tx: &mut PgTx,
        file_id: i64,
        owner: &str,
        stored: StoredObject<'_>,
    ) -> Result<Option<String>, sqlx::Error> {
        let sql = format!(
            "UPDATE uploads SET upload_id = NULL, etag = $3::text, version = $4::text, \
             updated_at = mdl_now_ms() WHERE file_id = $1::bigint AND {HELD} RETURNING object_url"
        );
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(file_id)
            .bind(owner)
            .bind(stored.etag)
            .bind(stored.version)
            .fetch_optional(&mut **tx)
            .await
    }
}

impl PgStore {
    pub(crate) async fn upload(&self, file_id: i64) -> Result<Option<Upload>, QueueError> {
        let row = sqlx::query(
            "SELECT object_url, upload_id, etag, version FROM uploads WHERE file_id = $1::bigint",
        )
        .bind(file_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row
            .map(|row| crate::queue::rows::upload_from_row(&row))
            .transpose()?)
    }
}
