//! The pool's connections: how one is made, and the gate that lets the
//! pool close only after the attempts under way.

use super::*;

/// Opens connections for the pool. Written by hand (rather than diesel's
/// `ConnectionManager<AnyConnection>`) so a bad URL or a refused connection is
/// reported as it is, and so SQLite's pragmas are set on every connection.
#[derive(Debug)]
pub(crate) struct Manager {
    pub(super) backend: Backend,
    /// SQLite's busy timeout and PostgreSQL's `lock_timeout`, in ms.
    pub(super) busy_timeout_ms: u32,
    pub(super) gate: Arc<Gate>,
}

/// The pool's connections, open or being opened, and whether new ones are
/// refused ([`Database::close`]). r2d2 opens connections, and closes old
/// ones, on threads of its own that nobody joins; this is how a closing
/// process knows that none of them is inside the client library.
#[derive(Debug, Default)]
pub(super) struct Gate {
    pub(super) state: parking_lot::Mutex<GateState>,
    pub(super) changed: parking_lot::Condvar,
}

#[derive(Debug, Default)]
pub(super) struct GateState {
    pub(super) closed: bool,
    /// Connection attempts under way plus connections open.
    pub(super) live: usize,
}

/// One connection, from the start of its attempt until it is closed.
#[derive(Debug)]
pub(super) struct Live(Arc<Gate>);

impl Gate {
    /// A new connection may be opened, unless the pool is closed.
    fn enter(self: &Arc<Self>) -> Result<Live, diesel::ConnectionError> {
        let mut state = self.state.lock();
        if state.closed {
            return Err(diesel::ConnectionError::BadConnection(
                "the database handle is closed".into(),
            ));
        }
        state.live += 1;
        Ok(Live(self.clone()))
    }

    pub(super) fn is_closed(&self) -> bool {
        self.state.lock().closed
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.state.lock().live -= 1;
        self.0.changed.notify_all();
    }
}

/// A pooled connection and whether it failed: a connection that saw an error
/// is discarded rather than reused, so the pool heals by itself after the
/// database restarts.
pub(crate) struct PoolConn {
    pub(crate) conn: AnyConnection,
    pub(crate) failed: bool,
    /// Dropped after `conn` (fields drop in order): once the connection is
    /// closed.
    _live: Live,
}

impl r2d2::ManageConnection for Manager {
    type Connection = PoolConn;
    type Error = diesel::ConnectionError;

    fn connect(&self) -> Result<PoolConn, Self::Error> {
        let live = self.gate.enter()?;
        match &self.backend {
            #[cfg(not(feature = "postgres"))]
            Backend::Postgres(_) => Err(not_built_in("postgres")),
            #[cfg(not(feature = "sqlite"))]
            Backend::Sqlite(_) => Err(not_built_in("sqlite")),
            #[cfg(feature = "postgres")]
            Backend::Postgres(url) => {
                let mut conn = PgConnection::establish(url)?;
                // A statement waits at most this long for a row lock, then
                // fails: a row held by some long transaction elsewhere costs
                // the requests that need that row, not every request queued
                // behind them (the sign-ins by cookie run in batches).
                // No statement runs without bound either (a hung one holds a
                // batch's connection and everyone queued behind it): six
                // lock waits, 30 s by default.
                // synchronous_commit on (whatever the server's default): a
                // rotation acknowledged to a client survives the server's
                // crash too.
                conn.batch_execute(&format!(
                    "SET lock_timeout = {}; SET statement_timeout = {}; \
                     SET synchronous_commit = on",
                    self.busy_timeout_ms,
                    u64::from(self.busy_timeout_ms).saturating_mul(6)
                ))
                .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
                Ok(PoolConn {
                    conn: AnyConnection::Postgresql(conn),
                    failed: false,
                    _live: live,
                })
            }
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(path) => {
                let mut conn = SqliteConnection::establish(path)?;
                // WAL: readers never wait for the writer. FULL, not WAL's
                // usual NORMAL: NORMAL may roll back every commit since the
                // last checkpoint on a power loss, and a rotation rolled back
                // after its cookie was delivered makes that cookie look like
                // theft. Group commit (one fsync per batch of rotations) pays
                // for it. busy_timeout makes a writer wait for the lock
                // instead of failing with "database is locked".
                conn.batch_execute(&format!(
                    "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; \
                     PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
                    self.busy_timeout_ms
                ))
                .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
                Ok(PoolConn {
                    conn: AnyConnection::Sqlite(conn),
                    failed: false,
                    _live: live,
                })
            }
        }
    }

    fn is_valid(&self, conn: &mut PoolConn) -> Result<(), Self::Error> {
        conn.conn
            .batch_execute("SELECT 1")
            .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))
    }

    fn has_broken(&self, conn: &mut PoolConn) -> bool {
        conn.failed
    }
}
