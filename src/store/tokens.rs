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

/// How a rotation moves a token's expiry (from [`crate::config::Expiry`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryOnUse {
    /// The expiry stays (absolute expiry): the write leaves its index alone.
    Keep,
    /// The expiry becomes `until`, but never later than the token's
    /// `created_at + max_lifetime_secs` when that is set.
    Extend {
        /// The new expiry, usually now + validity.
        until: i64,
        /// The longest life of a token from its creation, if capped.
        max_lifetime_secs: Option<i64>,
    },
}

impl ExpiryOnUse {
    /// The expiry a rotation under this rule gives `record`.
    pub fn applied_to(self, record: &TokenRecord) -> i64 {
        match self {
            ExpiryOnUse::Keep => record.expires_at,
            ExpiryOnUse::Extend {
                until,
                max_lifetime_secs,
            } => max_lifetime_secs.map_or(until, |max| {
                until.min(record.created_at.saturating_add(max))
            }),
        }
    }
}

/// A presented remember-me token and its replacement, for
/// [`TokenStore::find_and_rotate`].
#[derive(Debug, Clone, Copy)]
pub struct RotationAttempt<'a> {
    /// SHA-256 of the presented series.
    pub series: &'a SecretHash,
    /// SHA-256 of the presented token.
    pub token: &'a SecretHash,
    /// SHA-256 of the token that replaces it.
    pub new_token: &'a SecretHash,
    /// The new token sealed under the presented one, stored with the
    /// rotation (see [`RememberCookie::seal_next`](crate::token::RememberCookie::seal_next)).
    pub sealed: &'a [u8],
    /// Unix seconds: the time of the use by the layer's clock
    /// (`last_used_at`, the expiry check, and `rotated_at` in a store
    /// without a clock of its own).
    pub now: i64,
    /// The layer's clock offset from the system's, in milliseconds (0 in
    /// production): a store that stamps `rotated_at` with its database's
    /// clock adds it (see [`FoundSeries::store_now`]).
    pub clock_offset_ms: i64,
    /// How the rotation moves the expiry.
    pub expiry: ExpiryOnUse,
    /// The `remember_me_sign_in` row to write with the rotation, if it
    /// rotates (see [`FoundSeries::audited`]).
    pub audit: Option<SignInAudit<'a>>,
}

/// What [`TokenStore::find_and_rotate`] found.
#[derive(Debug, Clone)]
pub struct FoundSeries {
    /// The token as it was before this call's rotation, if any.
    pub record: TokenRecord,
    /// Its owner's auth epoch ([`StateStore::auth_epoch`]) when it was read.
    pub epoch: i64,
    /// Whether this call rotated the token.
    pub rotated: bool,
    /// Whether the store wrote the attempt's [`SignInAudit`] row in the
    /// rotation's own transaction (the Diesel store does): the caller must
    /// then not record the sign-in again.
    pub audited: bool,
    /// The time of this call on the clock that stamps `rotated_at`: the
    /// grace window is measured on it. The Diesel store on PostgreSQL uses
    /// the database's clock (plus the attempt's `clock_offset_ms`), one
    /// clock for every instance, so skew between instances cannot make a
    /// parallel request look stale; elsewhere it is the attempt's `now`.
    pub store_now: i64,
}

/// The audit row of a sign-in by cookie, for the store to write in the
/// same transaction as its rotation: a rotation that committed then always
/// has its row, whatever happens to the process after the commit.
#[derive(Debug, Clone, Copy)]
pub struct SignInAudit<'a> {
    /// From where.
    pub ip: Option<&'a str>,
    /// With what.
    pub user_agent: Option<&'a str>,
    /// Free text (never a secret).
    pub detail: &'a str,
}

/// [`TokenStore::find_and_rotate`] in two steps: the lookup, then (if the
/// token is current and unexpired) the compare-and-swap. The default of
/// every store.
pub fn find_then_rotate<S: TokenStore + ?Sized>(
    store: &S,
    attempt: RotationAttempt<'_>,
) -> Result<Option<FoundSeries>, StoreError> {
    let found = store.find_by_series_with_epoch(attempt.series)?;
    rotate_if_current(found, &attempt, |id, expires_at| {
        store.rotate(
            id,
            attempt.token,
            attempt.new_token,
            attempt.sealed,
            attempt.now,
            expires_at,
        )
    })
}

/// The rule of [`TokenStore::find_and_rotate`] over a lookup's result: a
/// token that is current and unexpired is rotated by `rotate(id,
/// new_expiry)` (a compare-and-swap; `None`: the expiry stays).
pub(crate) fn rotate_if_current<E>(
    found: Option<(TokenRecord, i64)>,
    attempt: &RotationAttempt<'_>,
    rotate: impl FnOnce(i64, Option<i64>) -> Result<bool, E>,
) -> Result<Option<FoundSeries>, E> {
    let Some((record, epoch)) = found else {
        return Ok(None);
    };
    let rotated = record.expires_at > attempt.now
        && record.token_hash.ct_eq(attempt.token.as_bytes())
        && rotate(
            record.id,
            Some(attempt.expiry.applied_to(&record)).filter(|&at| at != record.expires_at),
        )?;
    Ok(Some(FoundSeries {
        record,
        epoch,
        rotated,
        audited: false,
        store_now: attempt.now,
    }))
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
}
