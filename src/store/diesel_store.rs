//! The Diesel implementation of the stores: one code path for both backends.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use std::sync::Arc;

#[cfg(feature = "postgres")]
use super::ExpiryOnUse;
use super::conn::{AnyConnection, Backend, Database};
use super::models::{AuditRow, NewAuditRow, NewTokenRow, TokenRow};
#[cfg(feature = "postgres")]
use super::rotation_batch::Outcome;
use super::rotation_batch::{self, BatchResult, RotationBatches, every_attempt};
use super::schema::{audit_events, login_failures, remember_tokens, user_state};
use super::{
    AuditEvent, AuditLog, FoundSeries, NewAuditEvent, NewToken, Reservation, RotationAttempt,
    StateStore, StoreError, ThrottleKey, TokenRecord, TokenStore, UserId,
};
#[cfg(feature = "sqlite")]
use super::{AuditKind, rotate_if_current};
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
        // One batch at a time: SQLite writes one transaction at a time, and
        // on PostgreSQL a second concurrent batch made the batches smaller
        // and the whole slower (13,000 re-authentications/s with two, 10,000
        // with four, against 15,500 with one, on the 2-core benchmark).
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
                                diesel::insert_into(audit_events::table)
                                    .values(sign_in_row(attempt, audit, &found.record.user_id))
                                    .execute(conn)?;
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

    #[cfg(feature = "postgres")]
    fn find_and_rotate_batch_pg(&self, batch: &[rotation_batch::Attempt]) -> BatchResult {
        // PostgreSQL: a statement that failed is tried again attempt by
        // attempt only when it failed for meeting another batch (a deadlock,
        // a serialization failure); any other error is every attempt's.
        let retry_alone = std::cell::Cell::new(false);
        let written = self.with_conn(|conn| {
            #[allow(irrefutable_let_patterns)] // a PostgreSQL-only build
            let AnyConnection::Postgresql(pg) = conn else {
                return Err(DieselError::QueryBuilderError(
                    "a PostgreSQL pool gave another connection".into(),
                ));
            };
            let rows: Vec<BatchRow> = match load_batch_pg(pg, batch, self.db.timeout()) {
                // The statement ran (and committed): not to be retried.
                Err(DieselError::DeserializationError(error)) => {
                    return Ok(every_attempt(batch, &undecodable(&error.to_string())));
                }
                Err(error) => {
                    retry_alone.set(worth_retrying_alone(&error));
                    return Err(error);
                }
                Ok(rows) => rows,
            };
            let mut outcomes: Vec<Outcome> = batch.iter().map(|_| Ok(None)).collect();
            for (n, token, epoch, rotated, store_now) in rows {
                let Some(slot) = usize::try_from(n).ok().and_then(|n| outcomes.get_mut(n)) else {
                    continue;
                };
                // The statement wrote the audit row of every rotated attempt
                // that asked for one.
                let audited = rotated && batch[n as usize].audit.is_some();
                *slot = match TokenRecord::try_from(token) {
                    Ok(record) => Ok(Some(FoundSeries {
                        record,
                        epoch,
                        rotated,
                        audited,
                        store_now,
                    })),
                    Err(error) => Err(undecodable(&error.to_string())),
                };
            }
            Ok(outcomes)
        });
        match written {
            Err(error) if retry_alone.get() => Err(error),
            written => Ok(written.unwrap_or_else(|error| every_attempt(batch, &error))),
        }
    }
}

#[cfg(feature = "postgres")]
/// One row of the batch statement: the attempt's position, the token as it
/// was and its owner's epoch, whether it rotated, and the database's time.
type BatchRow = (i32, TokenRow, i64, bool, i64);

#[cfg(feature = "postgres")]
/// Runs the batch statement. The retry of one attempt of a failed batch
/// waits only briefly for a row lock (a tenth of the lock timeout, at least
/// 20 ms): the batch already waited a whole lock timeout, so a row still
/// locked is held by a long transaction elsewhere, and the other attempts
/// of the batch must not wait that out again, one after the other.
fn load_batch_pg(
    pg: &mut diesel::PgConnection,
    batch: &[rotation_batch::Attempt],
    lock_timeout: std::time::Duration,
) -> Result<Vec<BatchRow>, DieselError> {
    if !rotation_batch::retrying() {
        return RotateBatchPg::new(batch).load(pg);
    }
    let brief = (lock_timeout.as_millis() / 10).max(20);
    pg.transaction(|pg| {
        pg.batch_execute(&format!("SET LOCAL lock_timeout = {brief}"))?;
        RotateBatchPg::new(batch).load(pg)
    })
}

/// Runs `f`, a long maintenance statement (a purge), without PostgreSQL's
/// per-connection `statement_timeout` (see `conn.rs`): in a transaction
/// with `SET LOCAL`, so the connection keeps its bound afterwards.
fn unbounded<T>(
    conn: &mut AnyConnection,
    f: impl FnOnce(&mut AnyConnection) -> Result<T, DieselError>,
) -> Result<T, DieselError> {
    if !conn.is_postgres() {
        return f(conn);
    }
    conn.transaction(|conn| {
        conn.batch_execute("SET LOCAL statement_timeout = 0")?;
        f(conn)
    })
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

// Lookups by a unique key use `get_result`, not `first`: `first` binds its
// `LIMIT 1` as a parameter, and SQLite (3.47+) marks a statement whose LIMIT
// is a bound parameter to be re-prepared whenever it is bound again, so
// every such lookup parsed and planned its SQL anew (a third of a
// re-authentication's time on SQLite). A unique key returns one row anyway.
impl TokenStore for DieselStore {
    fn find_by_series(&self, series: &SecretHash) -> Result<Option<TokenRecord>, StoreError> {
        self.with_conn(|conn| {
            remember_tokens::table
                .filter(remember_tokens::series_hash.eq(series.as_bytes().as_slice()))
                .select(TokenRow::as_select())
                .get_result(conn)
                .optional()?
                .map(TokenRecord::try_from)
                .transpose()
        })
    }

    fn find_by_series_with_epoch(
        &self,
        series: &SecretHash,
    ) -> Result<Option<(TokenRecord, i64)>, StoreError> {
        self.with_conn(|conn| token_with_epoch(conn, series))
    }

    fn find_and_rotate(
        &self,
        attempt: RotationAttempt<'_>,
    ) -> Result<Option<FoundSeries>, StoreError> {
        // The re-authentications waiting at the same time run together:
        // PostgreSQL, one statement (one round trip, one commit); SQLite,
        // one transaction (one commit). See `rotation_batch`.
        self.rotations
            .run(attempt, |batch| self.find_and_rotate_batch(batch))
    }

    fn rotate(
        &self,
        id: i64,
        expected: &SecretHash,
        new_token: &SecretHash,
        sealed: &[u8],
        now: i64,
        expires_at: Option<i64>,
    ) -> Result<bool, StoreError> {
        self.with_write_conn(|conn| {
            let stamp = Stamp {
                rotated_at: now,
                used_at: now,
            };
            rotate_on(conn, id, expected, new_token, sealed, stamp, expires_at)
        })
    }

    fn insert(&self, token: NewToken<'_>, max_per_user: u32) -> Result<i64, StoreError> {
        use remember_tokens::dsl as t;
        self.with_write_conn(|conn| {
            conn.transaction(|conn| {
                // Serialize the user's concurrent sign-ins so the cap below
                // holds exactly. PostgreSQL needs a row lock (READ COMMITTED
                // lets two inserts each trim only the rows they saw): the
                // user's state row, made if missing; SQLite already
                // serializes writers on the database lock.
                // FOR NO KEY UPDATE, not FOR UPDATE: it serializes the
                // inserts all the same, and blocks no plain read.
                #[cfg(feature = "postgres")]
                #[allow(irrefutable_let_patterns)] // a PostgreSQL-only build
                if let AnyConnection::Postgresql(pg) = conn {
                    diesel::insert_into(user_state::table)
                        .values((
                            user_state::user_id.eq(token.user_id.as_str()),
                            user_state::auth_epoch.eq(0),
                        ))
                        .on_conflict_do_nothing()
                        .execute(pg)?;
                    user_state::table
                        .find(token.user_id.as_str())
                        .select(user_state::auth_epoch)
                        .for_no_key_update()
                        .get_result::<i64>(pg)?;
                }
                // One token per app device: a new one replaces the old.
                if let Some(device) = token.device_key {
                    diesel::delete(
                        t::remember_tokens
                            .filter(t::user_id.eq(token.user_id.as_str()))
                            .filter(t::device_key.eq(device)),
                    )
                    .execute(conn)?;
                }
                diesel::insert_into(t::remember_tokens)
                    .values(NewTokenRow {
                        series_hash: token.series_hash.as_bytes(),
                        token_hash: token.token_hash.as_bytes(),
                        user_id: token.user_id.as_str(),
                        created_at: token.now,
                        last_used_at: token.now,
                        expires_at: token.expires_at,
                        user_agent: token.user_agent,
                        ip: token.ip,
                        device_key: token.device_key,
                    })
                    .execute(conn)?;
                // Bounded growth: beyond the limit the least recently used go.
                let ids: Vec<i64> = t::remember_tokens
                    .filter(t::user_id.eq(token.user_id.as_str()))
                    .order((t::last_used_at.desc(), t::id.desc()))
                    .select(t::id)
                    .load(conn)?;
                let excess: Vec<i64> = ids.iter().skip(max_per_user as usize).copied().collect();
                if !excess.is_empty() {
                    diesel::delete(t::remember_tokens.filter(t::id.eq_any(excess)))
                        .execute(conn)?;
                }
                t::remember_tokens
                    .filter(t::series_hash.eq(token.series_hash.as_bytes().as_slice()))
                    .select(t::id)
                    .get_result(conn)
            })
        })
    }

    fn find_owner(&self, id: i64) -> Result<Option<UserId>, StoreError> {
        use remember_tokens::dsl as t;
        self.with_conn(|conn| {
            t::remember_tokens
                .find(id)
                .select(t::user_id)
                .get_result::<String>(conn)
                .optional()
                .map(|id| id.map(UserId::from))
        })
    }

    fn delete_series(&self, series: &SecretHash) -> Result<bool, StoreError> {
        use remember_tokens::dsl as t;
        self.with_write_conn(|conn| {
            let n = diesel::delete(
                t::remember_tokens.filter(t::series_hash.eq(series.as_bytes().as_slice())),
            )
            .execute(conn)?;
            Ok(n > 0)
        })
    }

    fn delete_by_id(&self, id: i64, owner: Option<&UserId>) -> Result<bool, StoreError> {
        use remember_tokens::dsl as t;
        self.with_write_conn(|conn| {
            let n = match owner {
                Some(owner) => diesel::delete(
                    t::remember_tokens
                        .filter(t::id.eq(id))
                        .filter(t::user_id.eq(owner.as_str())),
                )
                .execute(conn)?,
                None => diesel::delete(t::remember_tokens.filter(t::id.eq(id))).execute(conn)?,
            };
            Ok(n > 0)
        })
    }

    fn delete_all_for_user(&self, user: &UserId) -> Result<usize, StoreError> {
        use remember_tokens::dsl as t;
        self.with_write_conn(|conn| {
            diesel::delete(t::remember_tokens.filter(t::user_id.eq(user.as_str()))).execute(conn)
        })
    }

    fn revoke_all_atomically(
        &self,
        user: &UserId,
        event: &NewAuditEvent<'_>,
    ) -> Result<Option<usize>, StoreError> {
        use remember_tokens::dsl as t;
        self.with_write_conn(|conn| {
            conn.transaction(|conn| {
                let n = diesel::delete(t::remember_tokens.filter(t::user_id.eq(user.as_str())))
                    .execute(conn)?;
                bump_epoch_on(conn, user)?;
                diesel::insert_into(audit_events::table)
                    .values(audit_row(event))
                    .execute(conn)?;
                Ok(Some(n))
            })
        })
    }

    fn list_for_user(&self, user: &UserId) -> Result<Vec<TokenRecord>, StoreError> {
        use remember_tokens::dsl as t;
        self.with_conn(|conn| {
            t::remember_tokens
                .filter(t::user_id.eq(user.as_str()))
                .order((t::last_used_at.desc(), t::id.desc()))
                .select(TokenRow::as_select())
                .load(conn)?
                .into_iter()
                .map(TokenRecord::try_from)
                .collect()
        })
    }

    fn list(
        &self,
        user: Option<&UserId>,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<TokenRecord>, StoreError> {
        self.with_conn(|conn| {
            let mut query = remember_tokens::table
                .order((
                    remember_tokens::created_at.desc(),
                    remember_tokens::id.desc(),
                ))
                .select(TokenRow::as_select())
                .offset(offset)
                .limit(limit)
                .into_boxed();
            if let Some(user) = user {
                query = query.filter(remember_tokens::user_id.eq(user.as_str()));
            }
            query
                .load::<TokenRow>(conn)?
                .into_iter()
                .map(TokenRecord::try_from)
                .collect()
        })
    }

    fn purge_expired(&self, now: i64) -> Result<usize, StoreError> {
        use remember_tokens::dsl as t;
        self.with_write_conn(|conn| {
            unbounded(conn, |conn| {
                diesel::delete(t::remember_tokens.filter(t::expires_at.le(now))).execute(conn)
            })
        })
    }
}

impl StateStore for DieselStore {
    fn auth_epoch(&self, id: &UserId) -> Result<i64, StoreError> {
        self.with_conn(|conn| {
            user_state::table
                .find(id.as_str())
                .select(user_state::auth_epoch)
                .get_result(conn)
                .optional()
                .map(|epoch| epoch.unwrap_or(0))
        })
    }

    fn bump_epoch(&self, id: &UserId) -> Result<(), StoreError> {
        self.with_write_conn(|conn| conn.transaction(|conn| bump_epoch_on(conn, id)))
    }

    fn bump_epoch_from(&self, id: &UserId, expected: i64) -> Result<Option<i64>, StoreError> {
        self.with_write_conn(|conn| {
            // No row is epoch 0: the first bump makes the row.
            if expected == 0 && insert_state_row(conn, id, 1)? == 1 {
                return Ok(Some(1));
            }
            let n = diesel::update(
                user_state::table
                    .find(id.as_str())
                    .filter(user_state::auth_epoch.eq(expected)),
            )
            .set(user_state::auth_epoch.eq(user_state::auth_epoch + 1))
            .execute(conn)?;
            Ok((n == 1).then_some(expected + 1))
        })
    }

    fn failures(&self, key: &ThrottleKey) -> Result<Option<(u32, i64)>, StoreError> {
        self.with_conn(|conn| {
            login_failures::table
                .find(key.as_bytes().as_slice())
                .select((login_failures::failures, login_failures::last_failed_at))
                .get_result::<(i32, i64)>(conn)
                .optional()
                .map(|row| row.map(|(n, at)| (n.max(0) as u32, at)))
        })
    }

    fn reserve_attempt(
        &self,
        key: &ThrottleKey,
        now: i64,
        window_secs: i64,
        max: u32,
    ) -> Result<Reservation, StoreError> {
        let key = key.as_bytes().as_slice();
        let stale = now.saturating_sub(window_secs);
        let max = i32::try_from(max).unwrap_or(i32::MAX);
        // Single statements instead of one upsert (`MultiConnection` builds
        // none), each atomic on its own, tried in turn until one decides:
        // the `WHERE` of the increment is what keeps concurrent
        // reservations from passing `max` (PostgreSQL re-checks it on the
        // row a racing statement just wrote). A lost race (a row restarted
        // or inserted under us) goes round again; three rounds always do.
        self.with_write_conn(|conn| {
            for _ in 0..3 {
                let counted = diesel::update(login_failures::table.find(key))
                    .filter(login_failures::last_failed_at.gt(stale))
                    .filter(login_failures::failures.lt(max))
                    .set((
                        login_failures::failures.eq(login_failures::failures + 1),
                        login_failures::last_failed_at.eq(now),
                    ))
                    .execute(conn)?;
                if counted == 1 {
                    return Ok(Reservation::Allowed);
                }
                let restarted = diesel::update(login_failures::table.find(key))
                    .filter(login_failures::last_failed_at.le(stale))
                    .set((
                        login_failures::failures.eq(1),
                        login_failures::last_failed_at.eq(now),
                    ))
                    .execute(conn)?;
                if restarted == 1 {
                    return Ok(Reservation::Allowed);
                }
                let row = login_failures::table
                    .find(key)
                    .select((login_failures::failures, login_failures::last_failed_at))
                    .get_result::<(i32, i64)>(conn)
                    .optional()?;
                match row {
                    Some((failures, at)) if failures >= max && at > stale => {
                        return Ok(Reservation::Throttled { last_failed_at: at });
                    }
                    Some(_) => continue,
                    None => {}
                }
                match diesel::insert_into(login_failures::table)
                    .values((
                        login_failures::key.eq(key),
                        login_failures::failures.eq(1),
                        login_failures::last_failed_at.eq(now),
                    ))
                    .execute(conn)
                {
                    Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
                        continue;
                    }
                    inserted => return inserted.map(|_| Reservation::Allowed),
                }
            }
            Err(DieselError::QueryBuilderError(
                "failure counter contended three times".into(),
            ))
        })
    }

    fn clear_failures(&self, key: &ThrottleKey) -> Result<(), StoreError> {
        self.with_write_conn(|conn| {
            diesel::delete(login_failures::table.find(key.as_bytes().as_slice()))
                .execute(conn)
                .map(drop)
        })
    }

    fn purge_failures(&self, cutoff: i64) -> Result<usize, StoreError> {
        self.with_write_conn(|conn| {
            diesel::delete(login_failures::table.filter(login_failures::last_failed_at.lt(cutoff)))
                .execute(conn)
        })
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.with_conn(|conn| conn.batch_execute("SELECT 1"))
    }
}

/// The token of a series with its owner's auth epoch, in one query.
fn token_with_epoch(
    conn: &mut AnyConnection,
    series: &SecretHash,
) -> Result<Option<(TokenRecord, i64)>, DieselError> {
    remember_tokens::table
        .left_join(user_state::table.on(user_state::user_id.eq(remember_tokens::user_id)))
        .filter(remember_tokens::series_hash.eq(series.as_bytes().as_slice()))
        .select((TokenRow::as_select(), user_state::auth_epoch.nullable()))
        .get_result::<(TokenRow, Option<i64>)>(conn)
        .optional()?
        .map(|(token, epoch)| Ok((TokenRecord::try_from(token)?, epoch.unwrap_or(0))))
        .transpose()
}

/// Inserts `id`'s state row at `epoch` unless it exists (one upsert:
/// `MultiConnection` builds none, so each backend its own). Returns how
/// many rows went in.
fn insert_state_row(conn: &mut AnyConnection, id: &UserId, epoch: i64) -> QueryResult<usize> {
    let insert = diesel::insert_into(user_state::table)
        .values((
            user_state::user_id.eq(id.as_str()),
            user_state::auth_epoch.eq(epoch),
        ))
        .on_conflict_do_nothing();
    match conn {
        #[cfg(feature = "postgres")]
        AnyConnection::Postgresql(pg) => insert.execute(pg),
        #[cfg(feature = "sqlite")]
        AnyConnection::Sqlite(sqlite) => insert.execute(sqlite),
    }
}

/// Increments `id`'s auth epoch (no row is epoch 0), inside the caller's
/// transaction.
fn bump_epoch_on(conn: &mut AnyConnection, id: &UserId) -> QueryResult<()> {
    for _ in 0..2 {
        let bumped = diesel::update(user_state::table.find(id.as_str()))
            .set(user_state::auth_epoch.eq(user_state::auth_epoch + 1))
            .execute(conn)?;
        if bumped == 1 || insert_state_row(conn, id, 1)? == 1 {
            return Ok(());
        }
    }
    Err(DieselError::QueryBuilderError(
        "user state row contended twice".into(),
    ))
}

/// When a rotation happens: `rotated_at` on the store's clock (the grace
/// window is measured on it), `used_at` on the layer's.
#[derive(Debug, Clone, Copy)]
struct Stamp {
    rotated_at: i64,
    used_at: i64,
}

/// [`TokenStore::rotate`] on a connection: see [`Rotate`].
fn rotate_on(
    conn: &mut AnyConnection,
    id: i64,
    expected: &SecretHash,
    new_token: &SecretHash,
    sealed: &[u8],
    stamp: Stamp,
    expires_at: Option<i64>,
) -> Result<bool, DieselError> {
    let (expected, new) = (
        expected.as_bytes().as_slice(),
        new_token.as_bytes().as_slice(),
    );
    let updated = match expires_at {
        Some(expires_at) => Rotate::<true> {
            id,
            expected,
            new,
            sealed,
            stamp,
            expires_at,
        }
        .execute(conn)?,
        None => Rotate::<false> {
            id,
            expected,
            new,
            sealed,
            stamp,
            expires_at: 0,
        }
        .execute(conn)?,
    };
    Ok(updated == 1)
}

/// The rotation: one `UPDATE … WHERE id = ? AND token_hash = ?`, a
/// compare-and-swap (of two racing rotations only one matches), the replaced
/// hash kept as `previous_token_hash`. With `NEW_EXPIRY` false the expiry
/// stays out of the SET list, so its index entry is not rewritten (and on
/// PostgreSQL the update can stay on its page, a HOT update).
///
/// Written as a query of its own because Diesel marks every
/// `UpdateStatement` as not cacheable: PostgreSQL parsed and planned the
/// rotation anew on every re-authentication, SQLite prepared it anew. This
/// one has a static query id and fixed SQL per `NEW_EXPIRY`, so both keep it
/// prepared.
#[derive(Debug, Clone, Copy)]
struct Rotate<'a, const NEW_EXPIRY: bool> {
    id: i64,
    expected: &'a [u8],
    new: &'a [u8],
    sealed: &'a [u8],
    stamp: Stamp,
    expires_at: i64,
}

type AnyBackend = <AnyConnection as Connection>::Backend;

impl<const NEW_EXPIRY: bool> diesel::query_builder::QueryId for Rotate<'_, NEW_EXPIRY> {
    type QueryId = Rotate<'static, NEW_EXPIRY>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<const NEW_EXPIRY: bool> diesel::query_builder::QueryFragment<AnyBackend>
    for Rotate<'_, NEW_EXPIRY>
{
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, AnyBackend>,
    ) -> diesel::QueryResult<()> {
        use diesel::sql_types::{BigInt, Binary};
        out.push_sql("UPDATE remember_tokens SET previous_token_hash = token_hash, token_hash = ");
        out.push_bind_param::<Binary, _>(self.new)?;
        out.push_sql(", sealed_token = ");
        out.push_bind_param::<Binary, _>(self.sealed)?;
        out.push_sql(", rotated_at = ");
        out.push_bind_param::<BigInt, _>(&self.stamp.rotated_at)?;
        out.push_sql(", last_used_at = ");
        out.push_bind_param::<BigInt, _>(&self.stamp.used_at)?;
        if NEW_EXPIRY {
            out.push_sql(", expires_at = ");
            out.push_bind_param::<BigInt, _>(&self.expires_at)?;
        }
        out.push_sql(" WHERE id = ");
        out.push_bind_param::<BigInt, _>(&self.id)?;
        out.push_sql(" AND token_hash = ");
        out.push_bind_param::<Binary, _>(self.expected)?;
        Ok(())
    }
}

impl<const NEW_EXPIRY: bool> RunQueryDsl<AnyConnection> for Rotate<'_, NEW_EXPIRY> {}

/// A batch of [`TokenStore::find_and_rotate`] calls on PostgreSQL as one
/// statement. The attempts travel as arrays (`unnest`), so the SQL is the
/// same for any batch size and stays prepared (static query id). The
/// compare-and-swap rotations run in a data-modifying `WITH`; the tokens with
/// their owners are read as the statement's snapshot saw them, i.e.
/// **before** the rotations (every part of one statement shares one
/// snapshot), each with whether it was rotated. Under READ COMMITTED a racing
/// rotation of the same row makes PostgreSQL re-check this one's `WHERE` on
/// the new row version, where the old token no longer matches: of two racing
/// calls one rotates. The expiry check sits in the `WHERE`, so an expired
/// token is never rotated. A batch may hold a series twice (one cookie on
/// parallel requests): `UPDATE … FROM` then updates that row once, through
/// one of the two input rows, and `RETURNING` names only that one; the other
/// reads as not rotated (the row before the statement, with its token still
/// current), which the identify step treats as a parallel request.
#[cfg(feature = "postgres")]
#[derive(Debug)]
struct RotateBatchPg<'a> {
    /// Each attempt's position in the batch.
    n: Vec<i32>,
    series: Vec<&'a [u8]>,
    presented: Vec<&'a [u8]>,
    new: Vec<&'a [u8]>,
    sealed: Vec<&'a [u8]>,
    now: Vec<i64>,
    /// [`KEEP`], [`SET`] or [`CAPPED`].
    expiry: Vec<i16>,
    until: Vec<i64>,
    max_lifetime: Vec<i64>,
    /// Whether the attempt's sign-in is audited with its rotation, and the
    /// row's fields.
    audit: Vec<bool>,
    /// The layer's clock offset, added to the database's clock.
    offset_ms: Vec<i64>,
    ip: Vec<Option<&'a str>>,
    user_agent: Vec<Option<&'a str>>,
    detail: Vec<&'a str>,
}

/// The expiry stays.
#[cfg(feature = "postgres")]
const KEEP: i16 = 0;
/// `expires_at = until`.
#[cfg(feature = "postgres")]
const SET: i16 = 1;
/// `expires_at = LEAST(until, created_at + max_lifetime)`.
#[cfg(feature = "postgres")]
const CAPPED: i16 = 2;

#[cfg(feature = "postgres")]
impl<'a> RotateBatchPg<'a> {
    fn new(batch: &'a [rotation_batch::Attempt]) -> Self {
        let mut query = Self {
            n: Vec::with_capacity(batch.len()),
            series: Vec::with_capacity(batch.len()),
            presented: Vec::with_capacity(batch.len()),
            new: Vec::with_capacity(batch.len()),
            sealed: Vec::with_capacity(batch.len()),
            now: Vec::with_capacity(batch.len()),
            expiry: Vec::with_capacity(batch.len()),
            until: Vec::with_capacity(batch.len()),
            max_lifetime: Vec::with_capacity(batch.len()),
            audit: Vec::with_capacity(batch.len()),
            offset_ms: Vec::with_capacity(batch.len()),
            ip: Vec::with_capacity(batch.len()),
            user_agent: Vec::with_capacity(batch.len()),
            detail: Vec::with_capacity(batch.len()),
        };
        for (n, attempt) in (0..).zip(batch) {
            let (expiry, until, max_lifetime) = match attempt.expiry {
                ExpiryOnUse::Keep => (KEEP, 0, 0),
                ExpiryOnUse::Extend {
                    until,
                    max_lifetime_secs: None,
                } => (SET, until, 0),
                // `created_at + max` is at least `until` once `max` is
                // (creation times are not negative): capping `max` there
                // changes no result and keeps the sum from overflowing.
                ExpiryOnUse::Extend {
                    until,
                    max_lifetime_secs: Some(max),
                } => (CAPPED, until, max.clamp(0, until.max(0))),
            };
            query.n.push(n);
            query.series.push(attempt.series.as_bytes());
            query.presented.push(attempt.token.as_bytes());
            query.new.push(attempt.new_token.as_bytes());
            query.sealed.push(&attempt.sealed);
            query.now.push(attempt.now);
            query.expiry.push(expiry);
            query.until.push(until);
            query.max_lifetime.push(max_lifetime);
            let audit = attempt.audit.as_ref();
            query.audit.push(audit.is_some());
            query.offset_ms.push(attempt.clock_offset_ms);
            query.ip.push(audit.and_then(|a| a.ip.as_deref()));
            query
                .user_agent
                .push(audit.and_then(|a| a.user_agent.as_deref()));
            query.detail.push(audit.map_or("", |a| a.detail.as_str()));
        }
        query
    }
}

#[cfg(feature = "postgres")]
impl diesel::query_builder::QueryId for RotateBatchPg<'_> {
    type QueryId = RotateBatchPg<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

#[cfg(feature = "postgres")]
impl diesel::query_builder::Query for RotateBatchPg<'_> {
    type SqlType = (
        diesel::sql_types::Integer,
        diesel::dsl::SqlTypeOf<<remember_tokens::table as Table>::AllColumns>,
        diesel::sql_types::BigInt,
        diesel::sql_types::Bool,
        diesel::sql_types::BigInt,
    );
}

#[cfg(feature = "postgres")]
impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for RotateBatchPg<'_> {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> diesel::QueryResult<()> {
        use diesel::sql_types::{Array, BigInt, Binary, Bool, Integer, Nullable, SmallInt, Text};
        out.push_sql("WITH input AS (SELECT * FROM unnest(");
        out.push_bind_param::<Array<Integer>, _>(&self.n)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Binary>, _>(&self.series)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Binary>, _>(&self.presented)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Binary>, _>(&self.new)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Binary>, _>(&self.sealed)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&self.now)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<SmallInt>, _>(&self.expiry)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&self.until)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&self.max_lifetime)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Bool>, _>(&self.audit)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&self.offset_ms)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.ip)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.user_agent)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.detail)?;
        // `KEEP` and `SET` (0 and 1) are written into the SQL.
        const _: () = assert!(KEEP == 0 && SET == 1);
        out.push_sql(
            ") AS i (n, series, presented, new, sealed, now, expiry, until, max_lifetime, \
             audit, offset_ms, ip, user_agent, detail)), \
             rotated AS (UPDATE remember_tokens \
             SET previous_token_hash = remember_tokens.token_hash, token_hash = i.new, \
             sealed_token = i.sealed, \
             rotated_at = FLOOR(EXTRACT(EPOCH FROM statement_timestamp()) \
             + i.offset_ms / 1000.0)::bigint, last_used_at = i.now, \
             expires_at = CASE i.expiry WHEN 0 THEN remember_tokens.expires_at \
             WHEN 1 THEN i.until \
             ELSE LEAST(i.until, remember_tokens.created_at + i.max_lifetime) END \
             FROM input i \
             WHERE remember_tokens.series_hash = i.series \
             AND remember_tokens.token_hash = i.presented \
             AND remember_tokens.expires_at > i.now \
             AND (remember_tokens.previous_token_hash IS NULL \
             OR octet_length(remember_tokens.previous_token_hash) = 32) \
             RETURNING i.n, remember_tokens.user_id), \
             audited AS (INSERT INTO audit_events (at, kind, user_id, ip, user_agent, detail) \
             SELECT i.now, 'remember_me_sign_in', r.user_id, i.ip, i.user_agent, i.detail \
             FROM rotated r INNER JOIN input i ON i.n = r.n WHERE i.audit) \
             SELECT i.n, ",
        );
        // The columns in the order of the row types (the schema's order),
        // written by the schema itself.
        remember_tokens::all_columns.walk_ast(out.reborrow())?;
        out.push_sql(
            ", COALESCE(user_state.auth_epoch, 0), i.n IN (SELECT n FROM rotated), \
             FLOOR(EXTRACT(EPOCH FROM statement_timestamp()) + i.offset_ms / 1000.0)::bigint \
             FROM input i \
             INNER JOIN remember_tokens ON remember_tokens.series_hash = i.series \
             LEFT JOIN user_state ON user_state.user_id = remember_tokens.user_id",
        );
        Ok(())
    }
}

#[cfg(feature = "postgres")]
impl RunQueryDsl<diesel::pg::PgConnection> for RotateBatchPg<'_> {}

/// The `remember_me_sign_in` row of a rotated attempt.
#[cfg(feature = "sqlite")]
fn sign_in_row<'a>(
    attempt: &rotation_batch::Attempt,
    audit: &'a rotation_batch::OwnedSignInAudit,
    user: &'a UserId,
) -> NewAuditRow<'a> {
    NewAuditRow {
        at: attempt.now,
        kind: AuditKind::RememberMeSignIn.as_str(),
        user_id: Some(user.as_str()),
        ip: audit.ip.as_deref(),
        user_agent: audit.user_agent.as_deref(),
        detail: &audit.detail,
    }
}

fn audit_row<'a>(event: &NewAuditEvent<'a>) -> NewAuditRow<'a> {
    NewAuditRow {
        at: event.at,
        kind: event.kind.as_str(),
        user_id: event.user_id.map(UserId::as_str),
        ip: event.ip,
        user_agent: event.user_agent,
        detail: event.detail,
    }
}

impl AuditLog for DieselStore {
    fn purge_before(&self, cutoff: i64) -> Result<usize, StoreError> {
        self.with_write_conn(|conn| {
            unbounded(conn, |conn| {
                diesel::delete(audit_events::table.filter(audit_events::at.lt(cutoff)))
                    .execute(conn)
            })
        })
    }

    fn record(&self, event: NewAuditEvent<'_>) -> Result<(), StoreError> {
        self.with_write_conn(|conn| {
            diesel::insert_into(audit_events::table)
                .values(audit_row(&event))
                .execute(conn)
                .map(drop)
        })
    }

    fn record_batch(&self, events: &[NewAuditEvent<'_>]) -> Result<(), StoreError> {
        // One multi-row INSERT: one statement and one commit for the batch.
        // `MultiConnection` cannot build a multi-row INSERT, so each backend
        // gets its own (same code, concrete connection).
        let rows: Vec<NewAuditRow<'_>> = events.iter().map(audit_row).collect();
        self.with_write_conn(|conn| {
            let insert = diesel::insert_into(audit_events::table).values(&rows);
            match conn {
                #[cfg(feature = "postgres")]
                AnyConnection::Postgresql(pg) => insert.execute(pg),
                #[cfg(feature = "sqlite")]
                AnyConnection::Sqlite(sqlite) => insert.execute(sqlite),
            }
            .map(drop)
        })
    }

    fn list(
        &self,
        kind: Option<&str>,
        user: Option<&UserId>,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        self.with_conn(|conn| {
            let mut query = audit_events::table
                .order((audit_events::at.desc(), audit_events::id.desc()))
                .select(AuditRow::as_select())
                .offset(offset)
                .limit(limit)
                .into_boxed();
            if let Some(kind) = kind {
                query = query.filter(audit_events::kind.eq(kind));
            }
            if let Some(user) = user {
                query = query.filter(audit_events::user_id.eq(user.as_str()));
            }
            Ok(query
                .load::<AuditRow>(conn)?
                .into_iter()
                .map(|row| AuditEvent {
                    id: row.id,
                    at: row.at,
                    kind: row.kind,
                    user_id: row.user_id.map(UserId::from),
                    ip: row.ip,
                    user_agent: row.user_agent,
                    detail: row.detail,
                })
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewToken;

    fn hash(byte: u8) -> SecretHash {
        SecretHash::from_slice(&[byte; 32]).unwrap()
    }

    /// A user named `name` with one token, series `hash(series)` and token
    /// `hash(token)`, valid until 1,000,000.
    fn user_with_token(store: &DieselStore, name: &str, series: u8, token: u8) -> UserId {
        // The crate keeps no users: any id will do.
        let user = UserId::from(name);
        store
            .insert(
                NewToken {
                    user_id: &user,
                    series_hash: &hash(series),
                    token_hash: &hash(token),
                    now: 1_000,
                    expires_at: 1_000_000,
                    user_agent: None,
                    ip: None,
                    device_key: None,
                },
                10,
            )
            .unwrap();
        user
    }

    /// The same series three times in one batch (one cookie on parallel
    /// requests, plus a replayed old copy): exactly one rotates, none fails,
    /// the row holds the winner's token.
    fn repeats_of_one_series_in_one_batch_rotate_once(store: &DieselStore) {
        user_with_token(store, "alice", 1, 10);
        let attempt = |token: u8, new: u8| rotation_batch::Attempt {
            series: hash(1),
            token: hash(token),
            new_token: hash(new),
            sealed: vec![0; 32],
            now: 2_000,
            clock_offset_ms: 0,
            expiry: ExpiryOnUse::Keep,
            audit: None,
        };
        let batch = [attempt(10, 11), attempt(10, 12), attempt(99, 13)];
        let found: Vec<FoundSeries> = store
            .find_and_rotate_batch(&batch)
            .expect("written")
            .into_iter()
            .map(|outcome| outcome.expect("no error").expect("found"))
            .collect();
        let winners: Vec<usize> = (0..3).filter(|&i| found[i].rotated).collect();
        assert!(winners == [0] || winners == [1], "{winners:?}");
        let row = store.find_by_series(&hash(1)).unwrap().unwrap();
        assert_eq!(row.token_hash, hash(11 + winners[0] as u8));
        assert_eq!(row.previous_token_hash, Some(hash(10)));
    }

    #[test]
    fn a_failed_batch_is_tried_alone_unless_the_connection_is_gone() {
        let db_error = |kind| DieselError::DatabaseError(kind, Box::new(String::from("x")));
        for kind in [
            DatabaseErrorKind::SerializationFailure,
            // A deadlock or a lock timeout, in whatever language.
            DatabaseErrorKind::Unknown,
        ] {
            assert!(worth_retrying_alone(&db_error(kind)));
        }
        for kind in [
            DatabaseErrorKind::ClosedConnection,
            DatabaseErrorKind::UnableToSendCommand,
        ] {
            assert!(!worth_retrying_alone(&db_error(kind)));
        }
        assert!(!worth_retrying_alone(&DieselError::DeserializationError(
            "x".into()
        )));
        assert!(!worth_retrying_alone(&DieselError::NotFound));
    }

    #[test]
    fn repeats_of_one_series_in_one_batch_rotate_once_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("x.db");
        let db = Database::connect(url.to_str().unwrap(), 2).unwrap();
        repeats_of_one_series_in_one_batch_rotate_once(&DieselStore::new(db));
    }

    /// Runs `test` with the URL of a schema of its own on the test server of
    /// the integration tests (`REMEMBERME_TEST_POSTGRES_URL`); skipped
    /// loudly without one, failed under `CI=true`.
    fn on_postgres(test: impl FnOnce(&str) + std::panic::UnwindSafe) {
        use diesel::Connection as _;
        let base = std::env::var("REMEMBERME_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let mut admin = match diesel::PgConnection::establish(&base) {
            Ok(conn) => conn,
            Err(error) if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("PostgreSQL at {base} is required under CI=true: {error}")
            }
            Err(error) => {
                eprintln!("\n!!! SKIPPED PostgreSQL test: no server at {base} ({error})\n");
                return;
            }
        };
        let schema = format!(
            "rm_unit_{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        admin
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .unwrap();
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
        let result = std::panic::catch_unwind(|| test(&url));
        admin
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .unwrap();
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    }

    #[test]
    fn sqlite_commits_are_durable_across_power_loss() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::connect(dir.path().join("x.db").to_str().unwrap(), 1).unwrap();
        let store = DieselStore::new(db);
        let synchronous = store
            .with_conn(|conn| {
                diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>(
                    "synchronous FROM pragma_synchronous",
                ))
                .get_result::<i32>(conn)
            })
            .unwrap();
        // 2 is FULL: WAL's NORMAL (1) may lose the last commits on power
        // loss, and a lost rotation makes its delivered cookie look stale.
        assert_eq!(synchronous, 2);
    }

    /// A statement that hangs is cut off (six lock waits), so it cannot hold
    /// a batch's connection and everyone behind it without bound.
    #[test]
    fn a_hung_statement_is_cut_off_on_postgres() {
        on_postgres(|url| {
            let db = Database::connect_with_timeout(url, 1, std::time::Duration::from_millis(200))
                .unwrap();
            let store = DieselStore::new(db);
            let started = std::time::Instant::now();
            let slept = store.with_conn(|conn| conn.batch_execute("SELECT pg_sleep(30)"));
            assert!(slept.is_err(), "cut off");
            assert!(
                started.elapsed() < std::time::Duration::from_secs(5),
                "after {:?}",
                started.elapsed()
            );
        });
    }

    #[test]
    fn repeats_of_one_series_in_one_batch_rotate_once_on_postgres() {
        on_postgres(|url| {
            let db = Database::connect(url, 2).unwrap();
            repeats_of_one_series_in_one_batch_rotate_once(&DieselStore::new(db));
        });
    }

    /// A batch that meets a row locked by another transaction waits out
    /// `lock_timeout`, is retried attempt by attempt within one more lock
    /// timeout (counted from the failure), each retry waiting only briefly
    /// for a lock, and only the attempt on the locked row fails (its token
    /// unchanged), even when it comes first; the connection that met the
    /// timeout is kept, not reopened. (Issue 14, finding 2: with the
    /// deadline counted from the batch's start, every attempt failed.)
    #[test]
    fn a_row_locked_elsewhere_fails_only_its_attempt_on_postgres() {
        use diesel::Connection as _;
        on_postgres(|url| {
            let db = Database::connect_with_timeout(url, 1, std::time::Duration::from_millis(300))
                .unwrap();
            let store = DieselStore::new(db);
            let alice = user_with_token(&store, "alice", 1, 10);
            user_with_token(&store, "bob", 2, 20);
            let backend_pid = || {
                store
                    .with_conn(|conn| {
                        let AnyConnection::Postgresql(pg) = conn else {
                            unreachable!("a PostgreSQL pool")
                        };
                        diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>(
                            "pg_backend_pid()",
                        ))
                        .get_result::<i32>(pg)
                    })
                    .unwrap()
            };
            let before = backend_pid();

            let mut holder = diesel::PgConnection::establish(url).unwrap();
            holder
                .batch_execute(&format!(
                    "BEGIN; SELECT 1 FROM remember_tokens WHERE user_id = '{alice}' FOR UPDATE"
                ))
                .unwrap();
            let attempt = |series: u8, token: u8| rotation_batch::Attempt {
                series: hash(series),
                token: hash(token),
                new_token: hash(token + 1),
                sealed: vec![0; 32],
                now: 2_000,
                clock_offset_ms: 0,
                expiry: ExpiryOnUse::Keep,
                audit: None,
            };
            let batch = [attempt(1, 10), attempt(2, 20)];
            let outcomes = rotation_batch::run_batch(
                &batch,
                &|batch: &[rotation_batch::Attempt]| store.find_and_rotate_batch(batch),
                std::time::Duration::from_millis(300),
            );
            holder.batch_execute("ROLLBACK").unwrap();

            assert!(
                outcomes[0].is_err(),
                "the locked row's attempt: {:?}",
                outcomes[0]
            );
            let bob = outcomes[1]
                .as_ref()
                .expect("bob's attempt")
                .as_ref()
                .unwrap();
            assert!(bob.rotated, "the other attempt rotates");
            let locked = store.find_by_series(&hash(1)).unwrap().unwrap();
            assert_eq!(locked.token_hash, hash(10), "the locked token is unchanged");
            assert_eq!(backend_pid(), before, "the connection was kept");
        });
    }
}
