//! A job's object in a bucket archive: the lease holder's two writes, each
//! with its history line, each refused once the lease is gone.

use std::future::Future;

use super::Dialect;
use crate::queue::error::lease_held;
use crate::queue::{QueueError, StoredObject, Upload};

/// The statements of the upload records; each matches only while `owner`
/// holds the lease of `file_id`.
pub(crate) trait UploadStatements: Dialect {
    /// Where the object goes and the multipart upload in flight (any
    /// earlier answer of the bucket forgotten). Returns the rows written.
    fn write_upload(
        tx: &mut Self::Tx,
        file_id: i64,
        owner: &str,
        object_url: &str,
        upload_id: Option<&str>,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send;

    /// No upload in flight, what the bucket said of the object. Returns
    /// the object's URL; `None`: no record, or the lease is gone.
    fn write_uploaded(
        tx: &mut Self::Tx,
        file_id: i64,
        owner: &str,
        stored: StoredObject<'_>,
    ) -> impl Future<Output = Result<Option<String>, sqlx::Error>> + Send;
}

pub(in crate::queue) async fn record_upload<S: UploadStatements>(
    store: &S,
    file_id: i64,
    owner: &str,
    object_url: &str,
    upload_id: Option<&str>,
) -> Result<(), QueueError> {
    let mut tx = store.begin().await?;
    let written = S::write_upload(&mut tx, file_id, owner, object_url, upload_id).await?;
    lease_held(written, file_id)?;
    if let Some(id) = upload_id {
        let message = format!("multipart upload {id} started to {object_url}");
        S::insert_event(&mut tx, file_id, "upload", &message).await?;
    }
    S::commit(tx).await?;
    Ok(())
}

pub(in crate::queue) async fn record_uploaded<S: UploadStatements>(
    store: &S,
    file_id: i64,
    owner: &str,
    stored: StoredObject<'_>,
) -> Result<(), QueueError> {
    let mut tx = store.begin().await?;
    let Some(url) = S::write_uploaded(&mut tx, file_id, owner, stored).await? else {
        return Err(QueueError::LeaseLost(file_id));
    };
    let message = Upload::stored_message(&url, stored);
    S::insert_event(&mut tx, file_id, "uploaded", &message).await?;
    S::commit(tx).await?;
    Ok(())
}
