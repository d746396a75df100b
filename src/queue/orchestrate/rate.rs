//! The fleet's adaptive rate: read, moved by `rate.rs`'s rule on the
//! store's clock with the calls in the window, stored, in one transaction.

use std::future::Future;
use std::time::Duration;

use super::Dialect;
use crate::queue::{Millis, QueueError};
use crate::rate::{Change, RateEvent, RateState};

/// The statements of moving the rate.
pub(crate) trait RateStatements: Dialect {
    /// No API call for `wait` (a longer cooldown already set stands).
    fn cool_fleet_in(
        tx: &mut Self::Tx,
        wait: Duration,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// The stored rate, locked until the transaction ends where the backend
    /// locks rows (processes apply their events one at a time).
    fn rate_for_update(
        tx: &mut Self::Tx,
    ) -> impl Future<Output = Result<RateState, sqlx::Error>> + Send;

    /// The store's time now and the API calls counted in the `window`
    /// before it.
    fn clock_and_calls(
        tx: &mut Self::Tx,
        window: Duration,
    ) -> impl Future<Output = Result<(Millis, u64), sqlx::Error>> + Send;

    fn store_rate(
        tx: &mut Self::Tx,
        rate: &RateState,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
}

pub(in crate::queue) async fn move_rate<S: RateStatements>(
    store: &S,
    window: Duration,
    cooldown: Option<Duration>,
    event: RateEvent,
) -> Result<(RateState, Change), QueueError> {
    let mut tx = store.begin().await?;
    if let Some(wait) = cooldown {
        S::cool_fleet_in(&mut tx, wait).await?;
    }
    let before = S::rate_for_update(&mut tx).await?;
    let (now, calls) = S::clock_and_calls(&mut tx, window).await?;
    let (after, change) = event.apply(before, now, calls);
    if after != before {
        S::store_rate(&mut tx, &after).await?;
    }
    S::commit(tx).await?;
    Ok((after, change))
}
