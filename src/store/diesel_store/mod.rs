//! The Diesel implementation of the stores: one code path for both backends.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use std::sync::Arc;

#[cfg(feature = "postgres")]
use super::ExpiryOnUse;
use super::conn::{AnyConnection, Backend, Database, per_backend};
use super::models::{AuditRow, NewAuditRow, NewTokenRow, TokenRow};
#[cfg(feature = "postgres")]
use super::rotation_batch::Outcome;
use super::rotation_batch::{self, BatchResult, RotationBatches, every_attempt, run_batch};
use super::schema::{audit_events, login_failures, remember_tokens, user_state};
use super::{
    AuditEvent, AuditLog, FoundSeries, NewAuditEvent, NewToken, Reservation, Retire,
    RotationAttempt, StateStore, StoreError, ThrottleKey, TokenRecord, TokenStore, UserId,
};
#[cfg(feature = "sqlite")]
use super::{AuditKind, rotate_if_current};
use super::{MAX_ROTATION_BATCH, OwnedRotation};
use crate::token::SecretHash;

/// [`TokenStore`], [`StateStore`] and [`AuditLog`] over a [`Database`]:
/// the crate's own tables. The users are the app's
/// ([`UserDirectory`](super::UserDirectory)).
#[derive(Debug, Clone)]
pub struct DieselStore {
    db: Database,
    /// Re-authentications run together (see `rotation_batch`).
    rotations: Arc<RotationBatches>,
}

impl DieselStore {
    /// Stores over this database.
    pub fn new(db: Database) -> Self {
        // One batch at a time of `find_and_rotate`'s callers: SQLite writes
        // one transaction at a time, and on PostgreSQL a second concurrent
        // batch made the batches smaller and the whole slower (13,000
        // re-authentications/s with two, 10,000 with four, against 15,500
        // with one, on the 2-core benchmark). The layer's own batches
        // (`find_and_rotate_all`, one at a time too) may run beside one of
        // these: the API's refreshes are few next to the browsers'.
        let leaders = 1;
        Self {
            rotations: Arc::new(RotationBatches::new(leaders, db.timeout())),
            db,
        }
    }

    /// The database.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Runs `f`, which writes, on a pooled connection: on SQLite, after
    /// taking the process's write lock (see [`Database::write_lock`]).
    pub(super) fn with_write_conn<T>(
        &self,
        f: impl FnOnce(&mut AnyConnection) -> Result<T, DieselError>,
    ) -> Result<T, StoreError> {
        let _writer = self.db.write_lock()?;
        self.with_conn(f)
    }

    /// Runs `f` on a pooled connection. A connection is discarded after an
    /// error unless the server answered it (a unique key, a lock timeout, a
    /// deadlock: the connection is sound), so the pool heals by itself.
    pub(super) fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut AnyConnection) -> Result<T, DieselError>,
    ) -> Result<T, StoreError> {
        let mut pooled = self.db.get()?;
        // Stays set if `f` panics: the connection may be inside a
        // transaction, so the pool discards it instead of handing it out.
        pooled.failed = true;
        match f(&mut pooled.conn) {
            Ok(value) => {
                pooled.failed = false;
                Ok(value)
            }
            Err(error) => {
                pooled.failed = !(server_answered(&error) && outside_transaction(&mut pooled.conn));
                Err(map_error(error))
            }
        }
    }
}

impl DieselStore {
    /// One batch of re-authentications ([`TokenStore::find_and_rotate`]),
    /// one result per attempt, in order: on PostgreSQL one statement, on
    /// SQLite one transaction.
    fn find_and_rotate_batch(&self, batch: &[rotation_batch::Attempt]) -> BatchResult {
        match self.db.backend() {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(_) => self.find_and_rotate_batch_sqlite(batch),
            #[cfg(feature = "postgres")]
            Backend::Postgres(_) => self.find_and_rotate_batch_pg(batch),
            // A backend this build left out: such a database never connects.
            #[allow(unreachable_patterns)]
            _ => Ok(every_attempt(
                batch,
                &StoreError::Unavailable("backend not built in".into()),
            )),
        }
    }

    #[cfg(feature = "sqlite")]
    fn find_and_rotate_batch_sqlite(&self, batch: &[rotation_batch::Attempt]) -> BatchResult {
        // SQLite: each attempt's lookup and compare-and-swap, all in one
        // transaction (one commit), under the process's write lock. A
        // row that does not decode fails only its attempt; any other
        // error rolls the whole batch back and is every attempt's: with
        // the write lock held from the start, no attempt would do
        // better alone.
        let written = self.with_write_conn(|conn| {
            // One time for the batch, taken under the write lock: the
            // store's clock (the machine's, which every process on this
            // file shares) plus the layer's offset. Stamped on each
            // rotation and returned as `store_now`, so the age of a
            // token one rotation back is never negative (a request that
            // started a moment earlier may well be served later).
            let system_ms = crate::clock::system_ms();
            sqlite_immediate_transaction(conn, |conn| {
                batch
                    .iter()
                    .map(|attempt| {
                        let stamp = (system_ms + attempt.clock_offset_ms).div_euclid(1000);
                        let found = match token_with_epoch(conn, &attempt.series) {
                            Err(DieselError::DeserializationError(error)) => {
                                return Ok(Err(undecodable(&error.to_string())));
                            }
                            found => found?,
                        };
                        let found =
                            rotate_if_current(found, &attempt.borrowed(), |id, expires_at| {
                                rotate_on(
                                    conn,
                                    id,
                                    &attempt.token,
                                    &attempt.new_token,
                                    &attempt.sealed,
                                    Stamp {
                                        rotated_at: stamp,
                                        used_at: attempt.now,
                                    },
                                    expires_at,
                                )
                            })?;
                        // The sign-in's audit row in the rotation's own
                        // transaction: a committed rotation has its row.
                        let found = found.map(|found| FoundSeries {
                            store_now: stamp,
                            ..found
                        });
                        let found = match (found, &attempt.audit) {
                            (Some(mut found), Some(audit)) if found.rotated => {
                                InsertAudit(sign_in_row(attempt, audit, &found.record.user_id))
                                    .run_on(conn)?;
                                found.audited = true;
                                Some(found)
                            }
                            (found, _) => found,
                        };
                        Ok(Ok(found))
                    })
                    .collect()
            })
        });
        Ok(written.unwrap_or_else(|error| every_attempt(batch, &error)))
    }
}

/// Whether the server answered with `error`, so the connection still works.
fn server_answered(error: &DieselError) -> bool {
    matches!(
        error,
        DieselError::DatabaseError(kind, _) if !matches!(
            kind,
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand
        )
    ) || matches!(error, DieselError::NotFound)
}

/// Whether `conn` is outside any transaction, with a sound transaction
/// manager (a failed rollback leaves it broken).
fn outside_transaction(conn: &mut AnyConnection) -> bool {
    use diesel::connection::TransactionManager as _;
    matches!(
        <AnyConnection as diesel::Connection>::TransactionManager::transaction_manager_status_mut(
            conn
        )
        .transaction_depth(),
        Ok(None)
    )
}

#[cfg(feature = "postgres")]
/// Whether a batch statement that failed may succeed attempt by attempt.
/// One autocommit statement that failed wrote nothing, so trying its
/// attempts alone is always safe; it helps when the statement failed on
/// some of its rows: a deadlock with another process's batch, a row lock
/// held elsewhere beyond `lock_timeout` (then only the attempt on that row
/// fails again). Not when the connection is gone (every attempt would wait
/// for another), nor for errors outside the database (decoding, building).
/// By kind, never by message text, which follows the server's locale.
fn worth_retrying_alone(error: &DieselError) -> bool {
    match error {
        DieselError::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _,
        ) => false,
        DieselError::DatabaseError(..) => true,
        _ => false,
    }
}

/// Runs `f` in a `BEGIN IMMEDIATE` transaction on SQLite: the write lock is
/// taken first, waiting in the busy handler for another process's writer.
/// (A plain `BEGIN` would read first, and then fail at once with "database
/// is locked" when another process wrote since the read began.)
/// `AnyConnection` has no `immediate_transaction`, so this is
/// `SqliteConnection::immediate_transaction` on the inner connection, whose
/// transaction state `AnyConnection` shares.
#[cfg(feature = "sqlite")]
fn sqlite_immediate_transaction<T>(
    conn: &mut AnyConnection,
    f: impl FnOnce(&mut AnyConnection) -> Result<T, DieselError>,
) -> Result<T, DieselError> {
    use diesel::connection::{AnsiTransactionManager, TransactionManager as _};
    fn sqlite(conn: &mut AnyConnection) -> Result<&mut diesel::SqliteConnection, DieselError> {
        match conn {
            AnyConnection::Sqlite(sqlite) => Ok(sqlite),
            #[cfg(feature = "postgres")]
            AnyConnection::Postgresql(_) => Err(DieselError::QueryBuilderError(
                "not a SQLite connection".into(),
            )),
        }
    }
    AnsiTransactionManager::begin_transaction_sql(sqlite(conn)?, "BEGIN IMMEDIATE")?;
    let result = f(conn);
    let sqlite = sqlite(conn)?;
    match result {
        // A failed commit is rolled back by diesel itself.
        Ok(value) => AnsiTransactionManager::commit_transaction(sqlite).map(|()| value),
        Err(error) => {
            if let Err(rollback) = AnsiTransactionManager::rollback_transaction(sqlite) {
                tracing::error!(%error, %rollback, "SQLite rollback failed");
                return Err(rollback);
            }
            Err(error)
        }
    }
}

/// A stored row that does not decode (a hash that is not 32 bytes, say).
fn undecodable(why: &str) -> StoreError {
    tracing::error!(why, "a remember-me token row does not decode");
    StoreError::Query(format!("a stored token row does not decode: {why}"))
}

fn map_error(error: DieselError) -> StoreError {
    match error {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
            StoreError::AlreadyExists
        }
        DieselError::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            info,
        ) => StoreError::Unavailable(info.message().to_owned()),
        // SQLite's busy timeout ran out (another process held the write lock):
        // busy, like a pool with no connection to give.
        DieselError::DatabaseError(_, info) if info.message() == "database is locked" => {
            StoreError::Unavailable(info.message().to_owned())
        }
        other => StoreError::Query(other.to_string()),
    }
}

fn hash(bytes: Vec<u8>) -> Result<SecretHash, DieselError> {
    SecretHash::from_slice(&bytes)
        .ok_or_else(|| DieselError::DeserializationError("stored hash is not 32 bytes".into()))
}

impl TryFrom<TokenRow> for TokenRecord {
    type Error = DieselError;

    fn try_from(row: TokenRow) -> Result<Self, DieselError> {
        Ok(TokenRecord {
            id: row.id,
            series_hash: hash(row.series_hash)?,
            token_hash: hash(row.token_hash)?,
            previous_token_hash: row.previous_token_hash.map(hash).transpose()?,
            rotated_at: row.rotated_at,
            user_id: UserId::from(row.user_id),
            created_at: row.created_at,
            last_used_at: row.last_used_at,
            expires_at: row.expires_at,
            user_agent: row.user_agent,
            ip: row.ip,
            device_key: row.device_key,
            sealed_token: row.sealed_token,
        })
    }
}

mod audit;
#[cfg(feature = "postgres")]
mod pg_batch;
mod purge;
mod rotate;
mod state;
mod tokens;

pub use purge::PURGE_BATCH;

use audit::audit_row;
#[cfg(feature = "sqlite")]
use audit::{InsertAudit, sign_in_row};
use purge::write_transaction;
use rotate::{Stamp, rotate_on};
use state::{bump_epoch_on, token_with_epoch};

#[cfg(test)]
mod tests;
