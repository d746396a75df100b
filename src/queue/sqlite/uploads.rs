//! A job's object in a bucket archive (migration 0013): the multipart
//! upload in flight, and what the store said of the finished object.

use sqlx::Row;

use super::{SqliteStore, insert_event};
use crate::queue::error::lease_held;
use crate::queue::{QueueError, StoredObject, Upload, now_millis};

impl SqliteStore {
    pub(crate) async fn record_upload(
        &self,
        file_id: i64,
        owner: &str,
        object_url: &str,
        upload_id: Option<&str>,
    ) -> Result<(), QueueError> {
        let now = now_millis();
        let mut tx = self.write_tx().await?;
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
        .bind(now)
        .bind(owner)
        .execute(&mut *tx)
        .await?;
        lease_held(written.rows_affected(), file_id)?;
        if let Some(id) = upload_id {
            let message = format!("multipart upload {id} started to {object_url}");
            insert_event(&mut tx, file_id, now, "upload", None, Some(&message)).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn record_uploaded(
        &self,
        file_id: i64,
        owner: &str,
        stored: StoredObject<'_>,
    ) -> Result<(), QueueError> {
        let now = now_millis();
        let mut tx = self.write_tx().await?;
        let written = sqlx::query(
            "UPDATE uploads SET upload_id = NULL, etag = ?2, version = ?3, updated_at = ?4 \
             WHERE file_id = ?1 AND EXISTS \
               (SELECT 1 FROM jobs WHERE file_id = ?1 AND state = 'running' AND lease_owner = ?5) \
             RETURNING object_url",
        )
        .bind(file_id)
        .bind(stored.etag)
        .bind(stored.version)
        .bind(now)
        .bind(owner)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = written else {
            return Err(QueueError::LeaseLost(file_id));
        };
        let url: String = row.try_get("object_url")?;
        let message = Upload::stored_message(&url, stored);
        insert_event(&mut tx, file_id, now, "uploaded", None, Some(&message)).await?;
        tx.commit().await?;
        Ok(())
    }

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
