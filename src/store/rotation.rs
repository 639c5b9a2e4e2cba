//! Rotating a presented remember-me token: the attempt, what the lookup
//! found, and the rule a store applies between the two.

use super::*;
use crate::token::SecretHash;

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
