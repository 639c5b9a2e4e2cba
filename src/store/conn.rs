//! Connections: one enum over both backends, a pool, and embedded migrations.

use std::sync::Arc;
use std::time::Duration;

use diesel::Connection;
#[cfg(feature = "postgres")]
use diesel::PgConnection;
#[cfg(feature = "sqlite")]
use diesel::SqliteConnection;
use diesel::connection::SimpleConnection;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
compile_error!("rememberme needs a database: enable the `sqlite` or the `postgres` feature");

/// A connection to either backend; queries written once run on both.
#[cfg(all(feature = "sqlite", feature = "postgres"))]
#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    /// PostgreSQL.
    Postgresql(PgConnection),
    /// SQLite.
    Sqlite(SqliteConnection),
}

/// A connection to the one backend built in (the `sqlite` feature).
#[cfg(all(feature = "sqlite", not(feature = "postgres")))]
#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    /// SQLite.
    Sqlite(SqliteConnection),
}

/// A connection to the one backend built in (the `postgres` feature).
#[cfg(all(feature = "postgres", not(feature = "sqlite")))]
#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    /// PostgreSQL.
    Postgresql(PgConnection),
}

impl AnyConnection {
    /// Whether this is a PostgreSQL connection.
    pub fn is_postgres(&self) -> bool {
        #[cfg(feature = "postgres")]
        if matches!(self, AnyConnection::Postgresql(_)) {
            return true;
        }
        false
    }
}

/// `per_backend!(conn, |c| query.get_result(c))`: runs the body with `c`
/// bound to the backend's own connection inside the `AnyConnection`, so
/// the query is built for that backend alone and, with a static query id,
/// found in the statement cache by its type. Run on the `AnyConnection`
/// itself, Diesel's `MultiConnection` writes out a query's SQL text each
/// time it runs it (to check that it may be cached, to look it up, to bind
/// it), escaping every identifier: on a sign-in by cookie that was a third
/// of the server's instructions. For the queries on the busy paths; the
/// body is compiled once per backend built in, so it must be generic.
macro_rules! per_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            #[cfg(feature = "postgres")]
            $crate::store::conn::AnyConnection::Postgresql($c) => $body,
            #[cfg(feature = "sqlite")]
            $crate::store::conn::AnyConnection::Sqlite($c) => $body,
        }
    };
}
pub(crate) use per_backend;

/// The error of a URL whose backend this build left out.
#[allow(dead_code)] // with both backends built in
fn not_built_in(feature: &str) -> diesel::ConnectionError {
    diesel::ConnectionError::BadConnection(format!(
        "this build of rememberme has no {feature} support: enable its `{feature}` feature"
    ))
}

/// Failure to open or migrate the database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatabaseError {
    /// The pool could not be built or no connection made.
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    /// Migrations failed.
    #[error("cannot migrate the database: {0}")]
    Migrate(String),
}

#[cfg(feature = "postgres")]
/// PostgreSQL's `statement_timeout` for a connection timeout: six lock waits.
fn statement_timeout_ms(timeout: Duration) -> u128 {
    timeout.as_millis().max(1).saturating_mul(6)
}

/// A pool of connections to one database.
#[derive(Clone)]
pub struct Database {
    pool: r2d2::Pool<Manager>,
    backend: Backend,
    /// SQLite allows one writer at a time. Writers of this process queue
    /// here, on a mutex that hands over at once, instead of inside SQLite's
    /// busy handler, which sleeps and retries (1 ms, 2 ms, 5 ms, …) and so
    /// stalls every writer behind the first. Other processes on the same
    /// file still meet the busy timeout. `None` for PostgreSQL, whose row
    /// locks let writers run side by side.
    sqlite_writer: Option<Arc<parking_lot::Mutex<()>>>,
    /// The longest wait for a connection, and on SQLite for the write lock.
    timeout: Duration,
    /// Shared by every clone of this handle, and only by them: dropped with
    /// the last one, it closes the pool (see [`Database::close`]).
    last: Arc<Closer>,
}

/// Closes the pool when the last handle of it goes, on that thread, rather
/// than whenever r2d2's own threads let go of it.
struct Closer {
    pool: r2d2::Pool<Manager>,
    gate: Arc<Gate>,
    timeout: Duration,
}

impl Closer {
    /// Refuses new connections and closes the idle ones on this thread,
    /// until `deadline` for those still being opened (or held by r2d2's
    /// reaper). False if one was still open at the deadline.
    fn close(&self, deadline: std::time::Instant) -> bool {
        self.gate.state.lock().closed = true;
        loop {
            // Discarding an idle connection closes it here.
            while let Some(mut conn) = self.pool.try_get() {
                conn.failed = true;
            }
            let mut state = self.gate.state.lock();
            if state.live == 0 {
                return true;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return false;
            }
            // An attempt under way, or a new connection on its way into
            // the idle list (which wakes nobody): look again soon.
            let _ = self
                .gate
                .changed
                .wait_until(&mut state, deadline.min(now + Duration::from_millis(10)));
        }
    }
}

impl Drop for Closer {
    fn drop(&mut self) {
        // After `Database::close`, only what is idle now: it waited already.
        let wait = if self.gate.is_closed() {
            Duration::ZERO
        } else {
            self.timeout
        };
        if !self.close(std::time::Instant::now() + wait) {
            tracing::warn!("a database connection is still open as the pool closes");
        }
    }
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.backend {
            Backend::Postgres(_) => "postgres",
            Backend::Sqlite(_) => "sqlite",
        };
        f.debug_struct("Database").field("backend", &kind).finish()
    }
}

impl Database {
    /// Creates a missing SQLite database file readable by its owner only
    /// (0600): it holds password hashes and token hashes. SQLite gives its
    /// `-wal` and `-shm` files the database file's permissions. An existing
    /// file keeps the permissions its owner chose.
    pub(super) fn create_private_file(&self) -> Result<(), DatabaseError> {
        let Backend::Sqlite(path) = &self.backend else {
            return Ok(());
        };
        if path.starts_with("file:") || path.contains(":memory:") {
            return Ok(());
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(path) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(DatabaseError::Connect(format!("cannot create {path}: {e}"))),
        }
    }

    pub(super) fn lazy(url: &str, max_size: u32, timeout: Duration) -> Self {
        let backend = Backend::from_url(url);
        let gate = Arc::new(Gate::default());
        let pool = r2d2::Pool::builder()
            .max_size(max_size.max(1))
            .min_idle(Some(0))
            // A request waits at most this long for a connection, then gets a 503.
            .connection_timeout(timeout)
            .test_on_check_out(false)
            .build_unchecked(Manager {
                backend: backend.with_connect_timeout(timeout),
                // Locks are waited for as long as connections: SQLite's
                // busy timeout, PostgreSQL's lock_timeout.
                busy_timeout_ms: u32::try_from(timeout.as_millis())
                    .unwrap_or(u32::MAX)
                    .max(1),
                gate: gate.clone(),
            });
        let sqlite_writer = matches!(backend, Backend::Sqlite(_)).then(Default::default);
        Self {
            last: Arc::new(Closer {
                pool: pool.clone(),
                gate,
                timeout,
            }),
            pool,
            backend,
            sqlite_writer,
            timeout,
        }
    }

    /// Closes the pool, for a clean exit: waits, at most `timeout`, until
    /// this is the last handle of it (the stores and layers built on it are
    /// gone: close the layer first, see `RememberMe::close`), then refuses
    /// new connections, waits for the connection attempts under way, and
    /// closes the idle connections on this thread. Returns `false` if the
    /// time ran out first.
    ///
    /// Dropping the last handle does the same (waiting at most the
    /// connection timeout), wherever that happens; `close` is how a `main`
    /// makes sure it happens before the process exits. A process that
    /// exits while another thread is inside the database's client library
    /// can crash, since libpq's Kerberos and OpenSSL clean up after
    /// themselves at exit; and r2d2 opens connections on threads of its own
    /// that nobody waits for.
    pub fn close(self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        crate::threads::wait_until_only(&self.last, deadline) && self.last.close(deadline)
    }

    /// The pool's most connections: the `max_size` given to
    /// [`Database::connect`] or [`DatabaseBuilder::max_size`].
    pub fn max_size(&self) -> u32 {
        self.pool.max_size()
    }

    /// The longest wait for a connection or the SQLite write lock.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Which backend this is.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Runs the pending migrations of the crate's own tables
    /// (`remember_tokens`, `audit_events`, `login_failures`, `user_state`;
    /// never a users table). [`Database::connect`] calls it, as does a
    /// [`DatabaseBuilder`] unless told not to; call it yourself after
    /// [`Database::connect_lazy`]. A database made by
    /// rememberme 0.1 is upgraded (see CHANGELOG.md).
    pub fn migrate(&self) -> Result<(), DatabaseError> {
        self.run_migrations(CRATE_MIGRATIONS)
    }

    /// Runs this backend's set of `migrations` (the crate's, or a users
    /// table's).
    pub(crate) fn run_migrations(&self, migrations: Migrations) -> Result<(), DatabaseError> {
        self.create_private_file()?;
        let mut conn = self
            .pool
            .get()
            .map_err(|e| DatabaseError::Connect(e.to_string()))?;
        let result = match &mut conn.conn {
            #[cfg(feature = "sqlite")]
            AnyConnection::Sqlite(c) => run_migrations(c, migrations.sqlite),
            #[cfg(feature = "postgres")]
            AnyConnection::Postgresql(c) => {
                // A migration over a large table may run long: no
                // statement_timeout for it, the bound again afterwards.
                let unbounded = c.batch_execute("SET statement_timeout = 0");
                let migrated = unbounded
                    .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
                    .and_then(|()| run_migrations(c, migrations.postgres));
                let _ = c.batch_execute(&format!(
                    "SET statement_timeout = {}",
                    statement_timeout_ms(self.timeout)
                ));
                migrated
            }
        };
        result.map_err(|e| DatabaseError::Migrate(e.to_string()))
    }

    /// A pooled connection. Blocking.
    ///
    /// A SQLite file that vanished after start-up is an outage, not a reason
    /// to open (and so create) an empty database: until the file is back,
    /// every call fails as unavailable.
    pub(crate) fn get(&self) -> Result<r2d2::PooledConnection<Manager>, crate::store::StoreError> {
        if let Backend::Sqlite(path) = &self.backend
            && !path.starts_with("file:")
            && !path.contains(":memory:")
            && !std::path::Path::new(path).exists()
        {
            return Err(crate::store::StoreError::Unavailable(
                "the SQLite database file is missing".into(),
            ));
        }
        self.pool
            .get()
            .map_err(|e| crate::store::StoreError::Unavailable(e.to_string()))
    }

    /// The right to write, on SQLite: taken **before** a connection is
    /// checked out, so a writer waiting here holds no connection (a writer
    /// holding the lock can always get one). `None` on PostgreSQL. Waits at
    /// most the connection timeout, like SQLite's busy timeout before it,
    /// then fails as unavailable. Blocking.
    pub(crate) fn write_lock(
        &self,
    ) -> Result<Option<parking_lot::MutexGuard<'_, ()>>, crate::store::StoreError> {
        let Some(lock) = &self.sqlite_writer else {
            return Ok(None);
        };
        lock.try_lock_for(self.timeout).map(Some).ok_or_else(|| {
            crate::store::StoreError::Unavailable("SQLite is busy: no write lock in time".into())
        })
    }
}

mod backend;
mod builder;
mod migrations;
mod pool;

pub use backend::Backend;
pub use builder::DatabaseBuilder;

use migrations::CRATE_MIGRATIONS;
#[cfg(feature = "users-table")]
pub(crate) use migrations::MigrationSet;
pub(crate) use migrations::{Migrations, run_migrations};
use pool::Gate;
pub(crate) use pool::Manager;

#[cfg(test)]
mod tests;
