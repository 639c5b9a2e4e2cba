//! The remember-me tokens: [`TokenStore`] and its records.

use std::fmt;

use super::*;
use crate::token::SecretHash;

/// A stored remember-me token (hashes only).
#[derive(Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// Internal id, for admin pages. Never the series.
    pub id: i64,
    /// SHA-256 of the series.
    pub series_hash: SecretHash,
    /// SHA-256 of the current token.
    pub token_hash: SecretHash,
    /// SHA-256 of the token the last rotation replaced.
    pub previous_token_hash: Option<SecretHash>,
    /// When the last rotation happened.
    pub rotated_at: Option<i64>,
    /// Owner.
    pub user_id: UserId,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub last_used_at: i64,
    /// Unix seconds; the token is refused from then on.
    pub expires_at: i64,
    /// User agent at issue.
    pub user_agent: Option<String>,
    /// IP at issue.
    pub ip: Option<String>,
    /// The app device this token belongs to; `None` for a browser cookie.
    pub device_key: Option<String>,
    /// The current token sealed under the one the last rotation replaced
    /// (see [`RememberCookie::seal_next`](crate::token::RememberCookie::seal_next)).
    pub sealed_token: Option<Vec<u8>>,
}

impl fmt::Debug for TokenRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRecord")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A token to insert.
#[derive(Debug, Clone)]
pub struct NewToken<'a> {
    /// Owner.
    pub user_id: &'a UserId,
    /// SHA-256 of the series.
    pub series_hash: &'a SecretHash,
    /// SHA-256 of the token.
    pub token_hash: &'a SecretHash,
    /// Unix seconds.
    pub now: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// Client's user agent.
    pub user_agent: Option<&'a str>,
    /// Client's IP.
    pub ip: Option<&'a str>,
    /// The app device; a new token for the same `(user, device_key)`
    /// replaces the old one ([`TokenStore::retire_replaced`]). `None` for
    /// a browser cookie.
    pub device_key: Option<&'a str>,
}

/// What a completed sign-in's new token replaces
/// ([`TokenStore::retire_replaced`]).
#[derive(Debug, Clone, Copy)]
pub struct Retire<'a> {
    /// The new token's owner.
    pub user: &'a UserId,
    /// The new token's row: never deleted, and nothing newer is touched.
    pub kept: i64,
    /// The series the signing-in browser carried, whoever's it is: one
    /// token per browser.
    pub browser_series: Option<&'a SecretHash>,
    /// The new token's app device, if any: the user's other tokens of that
    /// device go.
    pub device_key: Option<&'a str>,
    /// The most tokens the user keeps, the new one included: beyond, the
    /// least recently used go.
    pub max_per_user: u32,
}

/// Persistence of remember-me tokens.
pub trait TokenStore: Send + Sync {
    /// The token of a series, if any.
    fn find_by_series(&self, series: &SecretHash) -> Result<Option<TokenRecord>, StoreError>;

    /// The token of a series and its owner's auth epoch
    /// ([`StateStore::auth_epoch`]), in one query: a remember-me sign-in
    /// and a session check need both, and a round trip saved is one less
    /// wait on the database on every re-authentication.
    fn find_by_series_with_epoch(
        &self,
        series: &SecretHash,
    ) -> Result<Option<(TokenRecord, i64)>, StoreError>;

    /// A remember-me sign-in's lookup and rotation together: reads the token
    /// of `attempt.series` with its owner and, if `attempt.token` is its
    /// current token and it has not expired at `attempt.now`, rotates it to
    /// `attempt.new_token` with the same compare-and-swap as
    /// [`TokenStore::rotate`]. The record returned is the row as it was
    /// **before** the rotation; [`FoundSeries::rotated`] says whether this
    /// call rotated it (`false` also when a racing request rotated it first).
    ///
    /// The default runs [`TokenStore::find_by_series_with_epoch`] and then
    /// [`TokenStore::rotate`]. A store that can do better should: this is
    /// the whole database cost of a re-authentication. The Diesel store runs
    /// the calls that wait at the same time together: on PostgreSQL as one
    /// statement (one round trip), on SQLite in one transaction (one commit).
    fn find_and_rotate(
        &self,
        attempt: RotationAttempt<'_>,
    ) -> Result<Option<FoundSeries>, StoreError> {
        find_then_rotate(self, attempt)
    }

    /// [`TokenStore::find_and_rotate`] for several attempts at once: one
    /// result per attempt, in order, each what that attempt would get
    /// alone (the same series may come twice, from one cookie on parallel
    /// requests: one rotates, the others find the token replaced). Called
    /// only if [`TokenStore::rotates_in_batches`] says so: the layer then
    /// gathers the sign-ins by cookie that arrive while a batch runs and
    /// hands them here together, at most
    /// [`MAX_ROTATION_BATCH`](crate::store::MAX_ROTATION_BATCH) at a time,
    /// one batch at a time.
    ///
    /// The default asks [`TokenStore::find_and_rotate`] for each in turn
    /// (a panic fails its own attempt only). The Diesel store runs them
    /// together: on PostgreSQL as one statement, on SQLite in one
    /// transaction (one commit for the lot).
    fn find_and_rotate_all(
        &self,
        attempts: &[RotationAttempt<'_>],
    ) -> Vec<Result<Option<FoundSeries>, StoreError>> {
        attempts
            .iter()
            .map(|attempt| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.find_and_rotate(*attempt)
                }))
                .unwrap_or_else(|_| Err(StoreError::Query("the rotation panicked".into())))
            })
            .collect()
    }

    /// Whether [`TokenStore::find_and_rotate_all`] runs its attempts
    /// together (one commit, one round trip), so that the layer should
    /// gather its sign-ins by cookie for it: they then wait for their batch
    /// without holding a store thread each. Default `false`: each sign-in
    /// by cookie calls [`TokenStore::find_and_rotate`] on a store thread of
    /// its own, as many at once as there are store threads. A store that
    /// wraps another and answers `true` must forward `find_and_rotate_all`.
    fn rotates_in_batches(&self) -> bool {
        false
    }

    /// Atomically replaces the current token by `new_token` if it still is
    /// `expected` (compare-and-swap): of two racing rotations exactly one
    /// returns `true`. The replaced hash becomes `previous_token_hash`,
    /// `sealed` becomes `sealed_token`. `expires_at` is the new expiry, or
    /// `None` to keep it (absolute expiry: then the write leaves the expiry
    /// index alone).
    fn rotate(
        &self,
        id: i64,
        expected: &SecretHash,
        new_token: &SecretHash,
        sealed: &[u8],
        now: i64,
        expires_at: Option<i64>,
    ) -> Result<bool, StoreError>;

    /// Inserts a token and returns its row's id. It deletes nothing: the
    /// tokens a new one replaces go with [`TokenStore::retire_replaced`],
    /// once the sign-in that issued it has completed (a sign-in that stops
    /// half-way, at a second factor say, must leave the user's other
    /// devices as they were). A series that exists already is
    /// [`StoreError::AlreadyExists`]. One user's ids must become visible
    /// in the order they are drawn (`retire_replaced` leaves newer ids
    /// alone): the Diesel store inserts under the lock its trims take.
    fn insert(&self, token: NewToken<'_>) -> Result<i64, StoreError>;

    /// What a completed sign-in's new token replaces goes, in one
    /// transaction (see [`Retire`]): the browser's previous series, the
    /// user's other tokens of the same device, then the user's least
    /// recently used beyond the cap. Only rows older than the new one
    /// (a smaller id) are touched: a newer one belongs to a sign-in still
    /// running, which retires or withdraws its own (two parallel sign-ins
    /// of one device must not each delete the other's new token). Returns
    /// how many went. Concurrent calls for one user must leave at most the
    /// cap (serialize them: the Diesel store locks the user's state row on
    /// PostgreSQL, before its tokens, as every transaction that touches
    /// both does). A token being rotated at that moment is in use, whatever
    /// its row still says: the Diesel store keeps it, counted in the cap,
    /// rather than wait for it (the rotation may be waiting for the
    /// browser's series this call has just deleted).
    fn retire_replaced(&self, retire: Retire<'_>) -> Result<usize, StoreError>;

    /// The owner of a token, by id.
    fn find_owner(&self, id: i64) -> Result<Option<UserId>, StoreError>;

    /// Deletes the token of a series. Returns whether a row went.
    fn delete_series(&self, series: &SecretHash) -> Result<bool, StoreError>;

    /// Deletes a token by id; with `owner`, only if it belongs to that user.
    fn delete_by_id(&self, id: i64, owner: Option<&UserId>) -> Result<bool, StoreError>;

    /// Deletes every token of a user. Returns how many went.
    fn delete_all_for_user(&self, user: &UserId) -> Result<usize, StoreError>;

    /// Deletes every token of `user`'s app device `device_key` (an app's
    /// logout). Returns how many went. One statement where the store can:
    /// a token a bearer's step-up stores for the device while it runs is
    /// either deleted with the rest or finds the device's token gone (the
    /// step-up checks it after its insert). The default lists and deletes
    /// one by one.
    fn delete_device(&self, user: &UserId, device_key: &str) -> Result<usize, StoreError> {
        let mut gone = 0;
        for token in self.list_for_user(user)? {
            if token.device_key.as_deref() == Some(device_key)
                && self.delete_by_id(token.id, Some(user))?
            {
                gone += 1;
            }
        }
        Ok(gone)
    }

    /// Ends everything of `user` (theft, revoke-all): deletes every token,
    /// bumps the user's auth epoch and records `event`, **in one
    /// transaction**, so a failure between them cannot leave tokens deleted
    /// but sessions alive, or no audit row. Returns how many tokens went, or
    /// `None` when this store cannot do it in one transaction (its users or
    /// audit log live elsewhere): [`Stores::revoke_everything`] then does
    /// the three apart. The Diesel store does it in one.
    fn revoke_all_atomically(
        &self,
        user: &UserId,
        event: &NewAuditEvent<'_>,
    ) -> Result<Option<usize>, StoreError> {
        let _ = (user, event);
        Ok(None)
    }

    /// A user's tokens, most recently used first.
    fn list_for_user(&self, user: &UserId) -> Result<Vec<TokenRecord>, StoreError>;

    /// Every token (or one user's), newest first (by id), at most `limit`;
    /// with `before`, only those with a smaller id. Keyset pagination: the
    /// next page is `before` the last id of this one, and every page costs
    /// the same however deep (an OFFSET would read every row before it).
    fn list(
        &self,
        user: Option<&UserId>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<TokenRecord>, StoreError>;

    /// Deletes tokens that expired before `now`. Returns how many went.
    fn purge_expired(&self, now: i64) -> Result<usize, StoreError>;

    /// How many store threads serve this store best, if it knows (the
    /// layer uses it unless
    /// [`store_concurrency`](crate::config::RememberMeConfigBuilder::store_concurrency)
    /// says otherwise; else 8). [`DieselStore`](crate::DieselStore): its
    /// pool size (the sign-ins by cookie wait for their batch without a
    /// thread; a thread beyond the connections would only wait for one).
    fn suggested_concurrency(&self) -> Option<usize> {
        None
    }

    /// How long a sign-in by cookie may wait for a batch to take its
    /// rotation (see [`TokenStore::rotates_in_batches`]) before it gives up
    /// as unavailable, nothing of it written, if this store says; else
    /// 5 s. [`DieselStore`](crate::DieselStore): twice its database's
    /// timeout
    /// ([`DatabaseBuilder::timeout`](crate::store::DatabaseBuilder::timeout)):
    /// the batch ahead may wait that long for a lock and still commit, and
    /// a batch stuck in the database holds the sign-ins queued behind it
    /// no longer. A store that wraps another should forward it.
    fn suggested_wait(&self) -> Option<std::time::Duration> {
        None
    }
}
