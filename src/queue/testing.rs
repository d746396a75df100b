//! Test support: staging states the public interface cannot reach.

use sqlx::sqlite::SqlitePool;

use super::Queue;
use super::store::Store;

impl Queue {
    /// Raw access for tests and benchmarks that need to stage unusual states.
    pub fn pool(&self) -> &SqlitePool {
        on_store!(self, s => s.pool())
    }
}
