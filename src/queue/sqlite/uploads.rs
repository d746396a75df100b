//! A job's object in a bucket archive (migration 0013): the statements of
//! the lease holder's upload records (`orchestrate/uploads.rs` runs them),
//! and the record read back.

use super::{SqliteStore, SqliteTx};
use crate::queue::orchestrate::UploadStatements;
use crate::queue::{QueueError, StoredObject, Upload};

impl UploadStatements for SqliteStore {
    async fn write_upload(
        tx: &mut SqliteTx,
        file_id: i64,
        owner: &str,
        object_url: &str,
        upload_id: Option<&str>,
    ) -> Result<u64, sqlx::Error> {
        let written = sqlx::query(
            "INSERT INTO uploads (file_id, object_url, upload_id, etag, version, updated_at) \
             SELECT ?1, ?2, ?3, NULL, NULL, ?4 WHERE EXISTS \
               (SELECT 1 FROM jobs WHERE file_id = ?1 AND state = 'running' AND lease_owner = ?5) \
             ON CONFLICT (file_id) DO UPDATE SET object_url = excluded.object_url, \
               upload_id = excluded.upload_id, etag = NULL, version = NULL, updated_at = excluded.updated_at",
        )
        .bind(file_id)
        .bind(object_url)
        .bind(upload_id)
        .bind(tx.now)
        .bind(owner)
        .execute(&mut *tx.tx)
        .await?;
        Ok(written.rows_affected())
    }

    async fn write_uploaded(
        tx: &mut SqliteTx,
        file_id: i64,
        owner: &str,
        stored: StoredObject<'_>,
    ) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar(
            "UPDATE uploads SET upload_id = NULL, etag = ?2, version = ?3, updated_at = ?4 \
             WHERE file_id = ?1 AND EXISTS \
               (SELECT 1 FROM jobs WHERE file_id = ?1 AND state = 'running' AND lease_owner = ?5) \
             RETURNING object_url",
        )
        .bind(file_id)
        .bind(stored.etag)
        .bind(stored.version)
        .bind(tx.now)
        .bind(owner)
        .fetch_optional(&mut *tx.tx)
        .await
    }
}

impl SqliteStore {
    pub(crate) async fn upload(&self, file_id: i64) -> Result<Option<Upload>, QueueError> {
        let row = sqlx::query(
            "SELECT object_url, upload_id, etag, version FROM uploads WHERE file_id = ?1",
        )
        .bind(file_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row
            .map(|row| crate::queue::rows::upload_from_row(&row))
            .transpose()?)
    }
}
