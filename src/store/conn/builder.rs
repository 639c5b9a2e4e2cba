//! [`DatabaseBuilder`]: how to open a [`Database`], with or without the
//! crate's migrations at start.

use std::time::Duration;

use super::{Database, DatabaseError};

/// How to open a [`Database`]:
///
/// ```no_run
/// # fn demo() -> Result<(), rememberme::store::DatabaseError> {
/// use rememberme::Database;
/// // The app runs the crate's migrations itself (say, in its deploy step,
/// // or with `rememberme migrate`): `connect` makes no connection.
/// let db = Database::builder("postgres://app@db/app")
///     .max_size(16)
///     .timeout(std::time::Duration::from_secs(2))
///     .migrate_at_start(false)
///     .connect()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct DatabaseBuilder {
    url: String,
    max_size: u32,
    timeout: Duration,
    migrate_at_start: bool,
}

impl Database {
    /// A builder for the database at `url`: `sqlite://FILE` (or a path) or
    /// `postgres://…`. By default 8 connections, a 5 s wait for one, and the
    /// crate's pending migrations run by [`DatabaseBuilder::connect`].
    pub fn builder(url: &str) -> DatabaseBuilder {
        DatabaseBuilder {
            url: url.to_owned(),
            max_size: 8,
            timeout: Duration::from_secs(5),
            migrate_at_start: true,
        }
    }

    /// Opens a pool of `max_size` connections to the database at `url` and
    /// runs pending migrations. Fails at once if no connection can be made.
    /// Shorthand for `Database::builder(url).max_size(max_size).connect()`.
    pub fn connect(url: &str, max_size: u32) -> Result<Self, DatabaseError> {
        Self::builder(url).max_size(max_size).connect()
    }

    /// Like [`Database::connect`], with the longest wait for a connection
    /// before a request gets a 503 (default 5 s).
    pub fn connect_with_timeout(
        url: &str,
        max_size: u32,
        timeout: Duration,
    ) -> Result<Self, DatabaseError> {
        Self::builder(url)
            .max_size(max_size)
            .timeout(timeout)
            .connect()
    }

    /// Opens a pool without requiring the database to answer now: the server
    /// starts (and `/healthz` says 503) while the database is down. Runs no
    /// migration: see [`Database::migrate`]. Shorthand for
    /// `Database::builder(url).max_size(max_size).migrate_at_start(false).connect()`.
    pub fn connect_lazy(url: &str, max_size: u32) -> Result<Self, DatabaseError> {
        Self::builder(url)
            .max_size(max_size)
            .migrate_at_start(false)
            .connect()
    }
}

impl DatabaseBuilder {
    /// Most connections in the pool (at least 1).
    pub fn max_size(mut self, max_size: u32) -> Self {
        self.max_size = max_size;
        self
    }

    /// The longest wait for a connection (and for a lock: SQLite's busy
    /// timeout, PostgreSQL's `lock_timeout`; a sign-in by cookie waits
    /// twice as long for a batch to take its rotation) before a request
    /// gets a 503.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether [`connect`](Self::connect) runs the crate's pending
    /// migrations (the default), and so needs the database to answer. Off,
    /// `connect` makes no connection: the pool connects as requests need
    /// it, and the app runs [`Database::migrate`] (or `rememberme migrate`)
    /// when it chooses, before the layer serves.
    pub fn migrate_at_start(mut self, migrate: bool) -> Self {
        self.migrate_at_start = migrate;
        self
    }

    /// Opens the pool, and with migrations at start runs them (see
    /// [`Database::migrate`]). Without them, a missing SQLite file is
    /// still created now, readable by its owner only (it will hold token
    /// and password hashes), rather than by the pool's first connection
    /// with the process's umask; if it cannot be yet (its directory is not
    /// mounted), the pool starts all the same, as it does with a database
    /// that is down.
    pub fn connect(self) -> Result<Database, DatabaseError> {
        let db = Database::lazy(&self.url, self.max_size, self.timeout);
        if self.migrate_at_start {
            db.migrate()?;
        } else if let Err(error) = db.create_private_file() {
            tracing::warn!(%error, "the SQLite file cannot be created yet");
        }
        Ok(db)
    }
}
