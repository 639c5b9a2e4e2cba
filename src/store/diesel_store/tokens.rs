//! The remember-me tokens in Diesel.

use super::*;

// Lookups by a unique key use `get_result`, not `first`: `first` binds its
// `LIMIT 1` as a parameter, and SQLite (3.47+) marks a statement whose LIMIT
// is a bound parameter to be re-prepared whenever it is bound again, so
// every such lookup parsed and planned its SQL anew (a third of a
// re-authentication's time on SQLite). A unique key returns one row anyway.
impl TokenStore for DieselStore {
    fn suggested_concurrency(&self) -> Option<usize> {
        Some(self.db.max_size() as usize)
    }

    fn suggested_wait(&self) -> Option<std::time::Duration> {
        // The batch ahead may wait a timeout for a lock and still commit.
        Some(self.db.timeout().saturating_mul(2))
    }

    fn find_by_series(&self, series: &SecretHash) -> Result<Option<TokenRecord>, StoreError> {
        self.with_conn(|conn| {
            per_backend!(conn, |c| remember_tokens::table
                .filter(remember_tokens::series_hash.eq(series.as_bytes().as_slice()))
                .select(TokenRow::as_select())
                .get_result(c)
                .optional())?
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

    fn rotates_in_batches(&self) -> bool {
        true
    }

    fn find_and_rotate_all(
        &self,
        attempts: &[RotationAttempt<'_>],
    ) -> Vec<Result<Option<FoundSeries>, StoreError>> {
        // Gathered by the layer: run as batches of their own, with the
        // same rules as those `find_and_rotate`'s callers form.
        let owned: Vec<_> = attempts.iter().map(OwnedRotation::new).collect();
        owned
            .chunks(MAX_ROTATION_BATCH)
            .flat_map(|chunk| {
                run_batch(
                    chunk,
                    &|batch| self.find_and_rotate_batch(batch),
                    self.database().timeout(),
                )
            })
            .collect()
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

    fn insert(&self, token: NewToken<'_>) -> Result<i64, StoreError> {
        use remember_tokens::dsl as t;
        self.with_write_conn(|conn| {
            write_transaction(conn, |conn| {
                // Under the user's lock on PostgreSQL, so that one user's ids
                // commit in the order they are drawn: `retire_replaced` leaves
                // newer ids alone, and one drawn earlier but committed later
                // would escape every trim.
                lock_user_state(conn, token.user_id.as_str())?;
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
                t::remember_tokens
                    .filter(t::series_hash.eq(token.series_hash.as_bytes().as_slice()))
                    .select(t::id)
                    .get_result(conn)
            })
        })
    }

    fn retire_replaced(&self, retire: Retire<'_>) -> Result<usize, StoreError> {
        use remember_tokens::dsl as t;
        let (user, kept) = (retire.user.as_str(), retire.kept);
        self.with_write_conn(|conn| {
            write_transaction(conn, |conn| {
                // Serialize the user's concurrent sign-ins so the cap below
                // holds exactly (see `lock_user_state`).
                lock_user_state(conn, user)?;
                // Older rows only (see the trait): newer ones are sign-ins
                // still running.
                let mut gone = 0;
                // One token per browser, whoever's the series is.
                if let Some(series) = retire.browser_series {
                    gone += diesel::delete(
                        t::remember_tokens
                            .filter(t::id.lt(kept))
                            .filter(t::series_hash.eq(series.as_bytes().as_slice())),
                    )
                    .execute(conn)?;
                }
                // One token per app device.
                if let Some(device) = retire.device_key {
                    gone += diesel::delete(
                        t::remember_tokens
                            .filter(t::id.lt(kept))
                            .filter(t::user_id.eq(user))
                            .filter(t::device_key.eq(device)),
                    )
                    .execute(conn)?;
                }
                // Bounded growth: beyond the limit the least recently used
                // go (the new token counts as one).
                let room = (retire.max_per_user as usize).saturating_sub(1);
                gone += trim_beyond(conn, user, kept, room)?;
                Ok(gone)
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

    fn delete_device(&self, user: &UserId, device_key: &str) -> Result<usize, StoreError> {
        use remember_tokens::dsl as t;
        self.with_write_conn(|conn| {
            diesel::delete(
                t::remember_tokens
                    .filter(t::user_id.eq(user.as_str()))
                    .filter(t::device_key.eq(device_key)),
            )
            .execute(conn)
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
                // The user's state row before the tokens, as
                // `retire_replaced` takes them: the opposite order could
                // deadlock with a sign-in's trim on PostgreSQL.
                bump_epoch_on(conn, user)?;
                let n = diesel::delete(t::remember_tokens.filter(t::user_id.eq(user.as_str())))
                    .execute(conn)?;
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
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<TokenRecord>, StoreError> {
        self.with_conn(|conn| {
            // By the primary key: the newest page and every later one read
            // `limit` rows of the index, on a table of any size.
            let mut query = remember_tokens::table
                .order(remember_tokens::id.desc())
                .select(TokenRow::as_select())
                .limit(limit)
                .into_boxed();
            if let Some(user) = user {
                query = query.filter(remember_tokens::user_id.eq(user.as_str()));
            }
            if let Some(before) = before {
                query = query.filter(remember_tokens::id.lt(before));
            }
            query
                .load::<TokenRow>(conn)?
                .into_iter()
                .map(TokenRecord::try_from)
                .collect()
        })
    }

    fn purge_expired(&self, now: i64) -> Result<usize, StoreError> {
        self.purge_in_batches("remember_tokens", |conn| {
            let expired = expired_tokens(conn, now)?;
            let selected = expired.len();
            Ok((selected, delete_still_expired(conn, expired, now)?))
        })
    }
}

/// The ids of at most [`PURGE_BATCH`] tokens expired at `now`, the oldest
/// expiries first: one purge batch's select. The order makes both backends
/// read the expiry index, and stop after the batch. Without it PostgreSQL
/// planned a sequential scan whenever half the table had expired (a
/// `LIMIT` over a condition that half the rows meet looks cheap to scan
/// for), and read past every live row before the expired ones: 150–290 ms
/// for the first batch of a purge of 10^6 rows, and the whole table for
/// the last.
pub(super) fn expired_tokens(conn: &mut AnyConnection, now: i64) -> QueryResult<Vec<i64>> {
    use remember_tokens::dsl as t;
    t::remember_tokens
        .select(t::id)
        .filter(t::expires_at.le(now))
        .order(t::expires_at)
        .limit(PURGE_BATCH)
        .load(conn)
}

/// Deletes the tokens of `ids` that are **still** expired at `now`: a token
/// whose expiry a sign-in by cookie extended since the select is kept.
/// Returns how many went.
pub(super) fn delete_still_expired(
    conn: &mut AnyConnection,
    ids: Vec<i64>,
    now: i64,
) -> QueryResult<usize> {
    use remember_tokens::dsl as t;
    let still = t::id.eq_any(ids).and(t::expires_at.le(now));
    diesel::delete(t::remember_tokens.filter(still)).execute(conn)
}

/// Deletes `user`'s least recently used tokens older than `kept` beyond
/// the `room` most recent. On PostgreSQL neither kind of row another
/// transaction holds is waited for. A token a rotation holds (an update
/// of no key column) is in use right now, the most recent of all whatever
/// its row still says: it is kept and counted in the room. Waiting for it
/// could deadlock: the rotation's batch may be waiting for the browser's
/// series this transaction has just deleted. A token being deleted (a
/// logout, a revocation) is going: it is not counted, so the trim does
/// not sign out another device to make room the deletion makes anyway.
/// SQLite's immediate transaction has the database to itself.
fn trim_beyond(
    conn: &mut AnyConnection,
    user: &str,
    kept: i64,
    room: usize,
) -> Result<usize, DieselError> {
    use remember_tokens::dsl as t;
    let mine = || {
        t::remember_tokens
            .filter(t::id.lt(kept))
            .filter(t::user_id.eq(user))
    };
    let older = || {
        mine()
            .order((t::last_used_at.desc(), t::id.desc()))
            .select(t::id)
    };
    // The rows that stay, and those of them free to delete (in order).
    let (standing, free): (Vec<i64>, Vec<i64>) = match conn {
        #[cfg(feature = "postgres")]
        AnyConnection::Postgresql(pg) => (
            // A deletion's lock conflicts with FOR KEY SHARE, a rotation's
            // (FOR NO KEY UPDATE) does not.
            mine()
                .select(t::id)
                .for_key_share()
                .skip_locked()
                .load(pg)?,
            older().for_update().skip_locked().load(pg)?,
        ),
        #[cfg(feature = "sqlite")]
        AnyConnection::Sqlite(lite) => {
            let free: Vec<i64> = older().load(lite)?;
            (free.clone(), free)
        }
    };
    let busy = standing.len().saturating_sub(free.len());
    let excess: Vec<i64> = free.into_iter().skip(room.saturating_sub(busy)).collect();
    if excess.is_empty() {
        return Ok(0);
    }
    diesel::delete(t::remember_tokens.filter(t::id.eq_any(excess))).execute(conn)
}

/// Serializes the token writes of one user's sign-ins (inserts, trims)
/// within the caller's transaction. PostgreSQL needs a row lock (READ
/// COMMITTED lets two trims each count only the rows they saw): the user's
/// state row, made if missing, and taken before the tokens, as a
/// revocation takes them. FOR NO KEY UPDATE, not FOR UPDATE: it serializes
/// them all the same, and blocks no plain read. SQLite's immediate
/// transaction already holds the database's write lock.
fn lock_user_state(conn: &mut AnyConnection, user: &str) -> Result<(), DieselError> {
    #[cfg(feature = "postgres")]
    #[allow(irrefutable_let_patterns)] // a PostgreSQL-only build
    if let AnyConnection::Postgresql(pg) = conn {
        diesel::insert_into(user_state::table)
            .values((user_state::user_id.eq(user), user_state::auth_epoch.eq(0)))
            .on_conflict_do_nothing()
            .execute(pg)?;
        user_state::table
            .find(user)
            .select(user_state::auth_epoch)
            .for_no_key_update()
            .get_result::<i64>(pg)?;
    }
    let _ = (conn, user);
    Ok(())
}
