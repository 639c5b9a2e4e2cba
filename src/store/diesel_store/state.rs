//! The crate's state per user (auth epochs, failure counters) in Diesel.

use super::*;

impl StateStore for DieselStore {
    fn auth_epoch(&self, id: &UserId) -> Result<i64, StoreError> {
        self.with_conn(|conn| {
            per_backend!(conn, |c| user_state::table
                .find(id.as_str())
                .select(user_state::auth_epoch)
                .get_result(c)
                .optional())
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
        // Single statements instead of one upsert with a `WHERE` on its
        // update (`MultiConnection` builds none), each atomic on its own,
        // tried in turn until one decides. The insert comes first: a sign-in
        // with no failure on record (most) is one statement. The `WHERE` of
        // the increment is what keeps concurrent reservations from passing
        // `max` (PostgreSQL re-checks it on the row a racing statement just
        // wrote). A lost race (a row restarted, deleted or inserted under
        // us) goes round again; three rounds always do.
        self.with_write_conn(|conn| {
            for _ in 0..3 {
                let insert = diesel::insert_into(login_failures::table)
                    .values((
                        login_failures::key.eq(key),
                        login_failures::failures.eq(1),
                        login_failures::last_failed_at.eq(now),
                    ))
                    .on_conflict_do_nothing();
                if per_backend!(conn, |c| insert.execute(c))? == 1 {
                    return Ok(Reservation::Allowed);
                }
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
                if let Some((failures, at)) = row
                    && failures >= max
                    && at > stale
                {
                    return Ok(Reservation::Throttled { last_failed_at: at });
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
        self.purge_in_batches("login_failures", |conn| {
            let stale = stale_failures(conn, cutoff)?;
            let selected = stale.len();
            Ok((selected, delete_still_stale(conn, stale, cutoff)?))
        })
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.with_conn(|conn| conn.batch_execute("SELECT 1"))
    }
}

/// The keys of at most [`PURGE_BATCH`] failure counters whose last failure
/// was before `cutoff`, the oldest first (read from the index, see
/// `expired_tokens`): one purge batch's select.
pub(super) fn stale_failures(conn: &mut AnyConnection, cutoff: i64) -> QueryResult<Vec<Vec<u8>>> {
    login_failures::table
        .select(login_failures::key)
        .filter(login_failures::last_failed_at.lt(cutoff))
        .order(login_failures::last_failed_at)
        .limit(PURGE_BATCH)
        .load(conn)
}

/// Deletes the counters of `keys` that are **still** stale at `cutoff`: a
/// counter that failed again since the select is kept (deleting it would
/// reset a throttle under attack). Returns how many went.
pub(super) fn delete_still_stale(
    conn: &mut AnyConnection,
    keys: Vec<Vec<u8>>,
    cutoff: i64,
) -> QueryResult<usize> {
    let still = login_failures::key
        .eq_any(keys)
        .and(login_failures::last_failed_at.lt(cutoff));
    diesel::delete(login_failures::table.filter(still)).execute(conn)
}

/// The token of a series with its owner's auth epoch, in one query.
pub(super) fn token_with_epoch(
    conn: &mut AnyConnection,
    series: &SecretHash,
) -> Result<Option<(TokenRecord, i64)>, DieselError> {
    per_backend!(conn, |c| remember_tokens::table
        .left_join(user_state::table.on(user_state::user_id.eq(remember_tokens::user_id)))
        .filter(remember_tokens::series_hash.eq(series.as_bytes().as_slice()))
        .select((TokenRow::as_select(), user_state::auth_epoch.nullable()))
        .get_result::<(TokenRow, Option<i64>)>(c)
        .optional())?
    .map(|(token, epoch)| Ok((TokenRecord::try_from(token)?, epoch.unwrap_or(0))))
    .transpose()
}

/// Inserts `id`'s state row at `epoch` unless it exists (one upsert:
/// `MultiConnection` builds none, so each backend its own). Returns how
/// many rows went in.
pub(super) fn insert_state_row(
    conn: &mut AnyConnection,
    id: &UserId,
    epoch: i64,
) -> QueryResult<usize> {
    let insert = diesel::insert_into(user_state::table)
        .values((
            user_state::user_id.eq(id.as_str()),
            user_state::auth_epoch.eq(epoch),
        ))
        .on_conflict_do_nothing();
    per_backend!(conn, |c| insert.execute(c))
}

/// Increments `id`'s auth epoch (no row is epoch 0), inside the caller's
/// transaction.
pub(super) fn bump_epoch_on(conn: &mut AnyConnection, id: &UserId) -> QueryResult<()> {
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
