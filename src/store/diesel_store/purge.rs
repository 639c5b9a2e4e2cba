//! Purges in batches: expired tokens, old audit events, stale failure
//! counters, each batch a short transaction that sign-ins can run between.

use super::*;

/// Rows one purge statement deletes: each batch is its own transaction,
/// holding SQLite's write lock (or PostgreSQL's row locks) for
/// milliseconds, never the seconds that a million expired rows would take
/// in one statement. (On the 2-core benchmark machine, SQLite, rows at
/// random: 250 rows held it 32 ms at the 99th percentile; 1,000 held it
/// 44 ms on average. `bench/scale.sh` measures it.)
pub const PURGE_BATCH: i64 = 250;

impl DieselStore {
    /// Runs `batch` (one bounded DELETE of the rows of `table` a SELECT of
    /// at most [`PURGE_BATCH`] found, returning how many it found and how
    /// many went) until a batch finds fewer than [`PURGE_BATCH`], each batch
    /// in a transaction of its own: on SQLite an immediate one, so its
    /// select and delete see one state of the file. (A row changed between
    /// them on PostgreSQL is kept by the delete's own condition, and the
    /// purge goes on: it ends on what the select found, not on what went.)
    ///
    /// A purge is background work and must not starve the sign-ins: on
    /// SQLite, after each batch the process's write lock is handed to a
    /// writer waiting for it (a fair unlock), and if one took it the purge
    /// pauses as long as the batch held the lock, so it takes at most about
    /// half of the writing time while others write. (Without this a purge
    /// of 10^6 rows left re-authentications at 48/s, each waiting out a
    /// batch.) Each batch logs (debug) its table, rows, how long it held
    /// the lock (a wait for another process's writer in `BEGIN IMMEDIATE`
    /// included) to the commit, and how long the connection's checkout took.
    pub(super) fn purge_in_batches(
        &self,
        table: &'static str,
        mut batch: impl FnMut(&mut AnyConnection) -> Result<(usize, usize), DieselError>,
    ) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let writer = self.db.write_lock()?;
            let locked = std::time::Instant::now();
            let in_hand = std::cell::Cell::new(locked);
            let result = self.with_conn(|conn| {
                in_hand.set(std::time::Instant::now());
                write_transaction(conn, &mut batch)
            });
            // How long the batch held SQLite's write lock, from taking it
            // (the connection's checkout included: no other writer of this
            // process gets in meanwhile), or PostgreSQL's row locks, at
            // most its transaction (and the connection's return to the
            // pool): the longest a writer queued behind it waited. (On
            // PostgreSQL the checkout holds no lock: the first batch's may
            // open a connection.)
            let checkout = in_hand.get() - locked;
            let held = match writer {
                Some(_) => locked.elapsed(),
                None => in_hand.get().elapsed(),
            };
            let contended = match writer {
                Some(writer) => {
                    let lock = parking_lot::MutexGuard::mutex(&writer);
                    parking_lot::MutexGuard::unlock_fair(writer);
                    // Handed over: a writer was waiting and holds it now.
                    lock.is_locked()
                }
                None => false,
            };
            let (selected, deleted) = result?;
            tracing::debug!(
                table,
                rows = deleted,
                held_ms = held.as_millis() as u64,
                checkout_ms = checkout.as_millis() as u64,
                "purge batch"
            );
            total += deleted;
            if selected < PURGE_BATCH as usize {
                return Ok(total);
            }
            if contended {
                std::thread::sleep(held);
            }
        }
    }
}

/// Runs `f` in a transaction: on SQLite an immediate one (see
/// [`sqlite_immediate_transaction`]), on PostgreSQL a plain one.
pub(super) fn write_transaction<T>(
    conn: &mut AnyConnection,
    f: impl FnOnce(&mut AnyConnection) -> Result<T, DieselError>,
) -> Result<T, DieselError> {
    match conn {
        #[cfg(feature = "sqlite")]
        AnyConnection::Sqlite(_) => sqlite_immediate_transaction(conn, f),
        #[cfg(feature = "postgres")]
        AnyConnection::Postgresql(_) => conn.transaction(f),
    }
}
