//! Storage: the crate's own [`TokenStore`], [`StateStore`] and [`AuditLog`]
//! and their Diesel implementation, [`DieselStore`], over SQLite or
//! PostgreSQL; and the app's users behind [`UserDirectory`] (with
//! [`UsersTable`], a ready Argon2 users table, behind the `users-table`
//! feature).
//!
//! Every method is blocking; call them from a blocking thread (the layer
//! runs them on its store threads, password work on actix's blocking pool),
//! never on an async worker. The stores hold
//! data and know nothing of flows: the rules (grace, theft, expiry) live in
//! the steps.

mod audit;
pub(crate) mod audit_queue;
mod conn;
mod diesel_store;
mod models;
mod rotation;
mod rotation_batch;
pub(crate) use rotation_batch::Attempt as OwnedRotation;

/// The most attempts the layer hands
/// [`TokenStore::find_and_rotate_all`] at once.
pub const MAX_ROTATION_BATCH: usize = rotation_batch::MAX_BATCH;
pub(crate) mod schema;
mod state;
mod throttle;
mod tokens;
mod users;
#[cfg(feature = "users-table")]
mod users_table;

use std::fmt;
use std::sync::Arc;

pub use audit::{AuditEvent, AuditKind, AuditLog, NewAuditEvent};
pub use conn::{AnyConnection, Backend, Database, DatabaseBuilder, DatabaseError};
pub use diesel_store::{DieselStore, PURGE_BATCH};
#[cfg(feature = "sqlite")]
pub(crate) use rotation::rotate_if_current;
pub use rotation::{ExpiryOnUse, FoundSeries, RotationAttempt, SignInAudit, find_then_rotate};
pub use state::{Reservation, StateStore};
pub use throttle::ThrottleKey;
pub use tokens::{NewToken, Retire, TokenRecord, TokenStore};
pub use users::{User, UserDirectory, UserId};
#[cfg(feature = "users-table")]
pub use users_table::UsersTable;

/// Failure of the storage layer. Wrong credentials or unknown rows are never
/// errors: those are `Ok(None)` / `Ok(false)`.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No connection could be had (database down, pool exhausted).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A statement failed.
    #[error("database query failed: {0}")]
    Query(String),
    /// A unique value already exists (a username, say).
    #[error("already exists")]
    AlreadyExists,
    /// The store does not do this (a [`UserDirectory`] without
    /// [`UserDirectory::set_password`], say).
    #[error("not supported by this store: {0}")]
    Unsupported(&'static str),
}

/// Audit events this process gave up on (written nowhere) since it started:
/// rows the database refused one by one, batches still failing when the
/// layer closed. Each is also logged at `error`. Alert on it growing.
pub fn audit_events_dropped() -> u64 {
    audit_queue::dropped()
}

/// The crate's three stores and the app's users, shared by the middleware,
/// the extractors and the steps.
#[derive(Clone)]
pub struct Stores {
    /// Remember-me tokens.
    pub tokens: Arc<dyn TokenStore>,
    /// The crate's state per user.
    pub state: Arc<dyn StateStore>,
    /// Audit log.
    pub audit: Arc<dyn AuditLog>,
    /// The app's users.
    pub users: Arc<dyn UserDirectory>,
}

impl fmt::Debug for Stores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Stores")
    }
}

impl Stores {
    /// The crate's three stores from one implementation (such as
    /// [`DieselStore`]), and the app's users.
    pub fn new<S, U>(store: S, users: U) -> Self
    where
        S: TokenStore + StateStore + AuditLog + 'static,
        U: UserDirectory,
    {
        let store = Arc::new(store);
        Self {
            tokens: store.clone(),
            state: store.clone(),
            audit: store,
            users: Arc::new(users),
        }
    }

    /// Ends everything of `user` and records `event` (see
    /// [`TokenStore::revoke_all_atomically`]): in one transaction where the
    /// store can, else token deletion, epoch bump and audit row one after
    /// the other. Returns how many tokens went.
    pub fn revoke_everything(
        &self,
        user: &UserId,
        event: NewAuditEvent<'_>,
    ) -> Result<usize, StoreError> {
        if let Some(n) = self.tokens.revoke_all_atomically(user, &event)? {
            return Ok(n);
        }
        let n = self.tokens.delete_all_for_user(user)?;
        self.state.bump_epoch(user)?;
        self.audit(event);
        Ok(n)
    }

    /// Deletes, as of `now` (Unix seconds), what no request can use any
    /// more: expired remember-me tokens, failure counters idle for a day
    /// (or for `lockout`, if longer: no throttle is lifted early) and,
    /// with `audit_retention`, the audit events older than it. Blocking,
    /// and long on large tables: [`DieselStore`] deletes in batches of
    /// [`PURGE_BATCH`] rows, each its own short transaction. Run it off the
    /// async workers, as [`RememberMe::purge`](crate::RememberMe::purge)
    /// does. Stops at the first store error, with what was deleted before
    /// it kept.
    pub fn purge(
        &self,
        now: i64,
        lockout: std::time::Duration,
        audit_retention: Option<std::time::Duration>,
    ) -> Result<Purged, StoreError> {
        let mut purged = Purged {
            tokens: self.tokens.purge_expired(now)?,
            ..Purged::default()
        };
        purged.failure_counters = self.state.purge_failures(failure_cutoff(now, lockout))?;
        if let Some(retention) = audit_retention {
            let retention = i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
            purged.audit_events = self.audit.purge_before(now.saturating_sub(retention))?;
        }
        crate::telemetry::purged([
            ("tokens", purged.tokens),
            ("failure_counters", purged.failure_counters),
            ("audit_events", purged.audit_events),
        ]);
        Ok(purged)
    }

    /// Records an audit event; a failure is logged and counted
    /// ([`audit_events_dropped`]), never returned, so a full audit table
    /// cannot lock users out.
    pub fn audit(&self, event: NewAuditEvent<'_>) {
        let kind = event.kind.as_str();
        if let Err(error) = self.audit.record(event) {
            tracing::error!(%error, kind, "could not write audit event");
            audit_queue::count_dropped(1, &error);
        }
    }
}

/// What one [`Stores::purge`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Purged {
    /// Expired remember-me tokens.
    pub tokens: usize,
    /// Failure counters that could throttle no more.
    pub failure_counters: usize,
    /// Audit events older than the retention.
    pub audit_events: usize,
}

/// How long a failure counter stays after its last failure at least (a
/// lockout longer than this keeps it as long): far past any throttle.
pub const FAILURE_RETENTION: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The last failure before which a counter can throttle no more at `now`:
/// [`FAILURE_RETENTION`], or `lockout` if longer (one too long for an
/// `i64` keeps them all).
fn failure_cutoff(now: i64, lockout: std::time::Duration) -> i64 {
    let kept = lockout.max(FAILURE_RETENTION).as_secs();
    now.saturating_sub(i64::try_from(kept).unwrap_or(i64::MAX))
}
