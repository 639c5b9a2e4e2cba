//! The crate's state per user: [`StateStore`].

use super::*;

/// What [`StateStore::reserve_attempt`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// The check may run; it was counted as a failure until a right
    /// password clears it.
    Allowed,
    /// The counter is full: no check. The time of its last failure.
    Throttled {
        /// Unix seconds.
        last_failed_at: i64,
    },
}

/// The crate's own state per user, keyed by the app's [`UserId`]: the auth
/// epoch, and the failure counters of password checks.
pub trait StateStore: Send + Sync {
    /// The user's current auth epoch: 0 until the first bump.
    fn auth_epoch(&self, id: &UserId) -> Result<i64, StoreError>;
    /// Increments the auth epoch: every session made under the old one ends.
    fn bump_epoch(&self, id: &UserId) -> Result<(), StoreError>;
    /// Increments the auth epoch only if it still is `expected` (one atomic
    /// statement); returns the new epoch, or `None` if it had moved on: the
    /// caller's session was already revoked and must not adopt the new one.
    fn bump_epoch_from(&self, id: &UserId, expected: i64) -> Result<Option<i64>, StoreError>;
    /// The failure counter of `key`: failed password checks and the time of
    /// the last one (`None`: no failure recorded).
    fn failures(&self, key: &ThrottleKey) -> Result<Option<(u32, i64)>, StoreError>;
    /// Reserves one password check against `key` at `now`, **before** the
    /// check runs: counts it as a failure unless the counter already holds
    /// `max` failures within `window_secs` (then nothing is counted and the
    /// time of the last failure is returned: throttled). A counter whose
    /// last failure is `window_secs` or more old starts again at 1:
    /// counters decay, so a locked account unlocks by itself. Atomic: of
    /// any number of concurrent reservations (on any instance) at most
    /// `max` per window succeed, so parallel guesses cannot outrun the
    /// count. A right password then clears the counter.
    fn reserve_attempt(
        &self,
        key: &ThrottleKey,
        now: i64,
        window_secs: i64,
        max: u32,
    ) -> Result<Reservation, StoreError>;
    /// Forgets `key`'s failures after a right password.
    fn clear_failures(&self, key: &ThrottleKey) -> Result<(), StoreError>;
    /// Deletes counters whose last failure is before `cutoff`. Returns how
    /// many went.
    fn purge_failures(&self, cutoff: i64) -> Result<usize, StoreError>;
    /// Whether the database answers.
    fn ping(&self) -> Result<(), StoreError>;
}
