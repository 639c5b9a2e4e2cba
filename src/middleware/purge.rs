//! The purge of what no request can use any more, for the app to run now
//! and then: [`RememberMe::purge`], [`RememberMe::purge_every`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::RememberMe;
use crate::RememberMeConfig;
use crate::store::{Purged, StoreError, Stores};

impl RememberMe {
    /// Deletes expired tokens, failure counters that can throttle no more
    /// and audit events older than `audit_retention` (see
    /// [`Stores::purge`]), on a thread of the runtime's blocking pool:
    /// never on the layer's store threads, which the sign-ins need. A
    /// purge of many rows runs in short batches, so it holds the
    /// database's write lock (SQLite) or its rows' locks (PostgreSQL)
    /// for one batch at a time.
    pub async fn purge(&self, audit_retention: Duration) -> Result<Purged, StoreError> {
        let (stores, config) = (self.shared.stores(), self.shared.config());
        purge_now(stores.clone(), config.clone(), audit_retention).await
    }

    /// A task that purges (see [`RememberMe::purge`]) at once and then
    /// every `every` (at least a second), logging what went. Spawn it once,
    /// inside the server's runtime:
    ///
    /// ```no_run
    /// # async fn demo(layer: rememberme::Layer) {
    /// use std::time::Duration;
    /// let hourly = layer.purge_every(Duration::from_secs(3600), Duration::from_secs(90 * 86_400));
    /// actix_web::rt::spawn(hourly);
    /// # }
    /// ```
    ///
    /// Between purges it holds neither the layer nor the stores, so
    /// [`close`](Self::close) and
    /// [`Database::close`](crate::Database::close) do not wait for it
    /// (`Database::close` does for a purge under way); it ends at its next
    /// turn once the layer has ended. Make it after
    /// [`with_flow`](Self::with_flow), which panics once the layer has a
    /// purge task, as it does once the layer is cloned.
    pub fn purge_every(
        &self,
        every: Duration,
        audit_retention: Duration,
    ) -> impl Future<Output = ()> + 'static {
        let layer = Arc::downgrade(&self.shared);
        async move {
            let mut interval = tokio::time::interval(every.max(Duration::from_secs(1)));
            // A purge longer than `every` is not followed by the turns it missed.
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let Some((stores, config)) = layer
                    .upgrade()
                    .map(|layer| (layer.stores().clone(), layer.config().clone()))
                else {
                    return;
                };
                match purge_now(stores, config, audit_retention).await {
                    Ok(purged) if purged == Purged::default() => {}
                    Ok(purged) => tracing::info!(
                        tokens = purged.tokens,
                        failure_counters = purged.failure_counters,
                        audit_events = purged.audit_events,
                        "purged expired tokens, stale failure counters and old audit events"
                    ),
                    Err(error) => tracing::warn!(%error, "purge failed"),
                }
            }
        }
    }
}

/// One purge on the blocking pool, as of the layer's clock.
async fn purge_now(
    stores: Stores,
    config: Arc<RememberMeConfig>,
    audit_retention: Duration,
) -> Result<Purged, StoreError> {
    actix_web::rt::task::spawn_blocking(move || {
        stores.purge(config.now(), config.lockout, Some(audit_retention))
    })
    .await
    .map_err(|error| StoreError::Unavailable(format!("the purge did not finish: {error}")))?
}
