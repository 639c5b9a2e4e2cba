//! A lock held elsewhere (another process's long transaction) delays the
//! sign-ins by cookie that need the database for a bounded time, then they
//! give up as unavailable: the visitor is served anonymously, keeps the
//! cookie, and is signed in by it once the lock is gone. On SQLite the lock
//! is the database's write lock; on PostgreSQL, the token rows' locks.

mod common;

use std::time::{Duration, Instant};

use common::{TestDb, TestServer};
use diesel::Connection as _;
use diesel::connection::SimpleConnection as _;

const RM: &str = "__Host-remember_me";

on_both_backends!(a_held_lock_delays_cookie_sign_ins_for_a_bounded_time_only);

/// A connection of its own (as another process) that holds the lock the
/// rotations need, until `release`.
enum Holder {
    Sqlite(diesel::SqliteConnection),
    Postgres(diesel::PgConnection),
}

impl Holder {
    fn take(db: &TestDb) -> Self {
        match db.sqlite_path() {
            Some(path) => {
                let mut conn = diesel::SqliteConnection::establish(path.to_str().unwrap()).unwrap();
                conn.batch_execute("BEGIN IMMEDIATE").unwrap();
                Holder::Sqlite(conn)
            }
            None => {
                let mut conn = diesel::PgConnection::establish(&db.url).unwrap();
                conn.batch_execute("BEGIN; SELECT 1 FROM remember_tokens FOR UPDATE")
                    .unwrap();
                Holder::Postgres(conn)
            }
        }
    }

    fn release(self) {
        match self {
            Holder::Sqlite(mut conn) => conn.batch_execute("ROLLBACK").unwrap(),
            Holder::Postgres(mut conn) => conn.batch_execute("ROLLBACK").unwrap(),
        }
    }
}

async fn a_held_lock_delays_cookie_sign_ins_for_a_bounded_time_only(db: TestDb) {
    // The test server waits 1 s for a connection, and so for a lock.
    let server = TestServer::start(db);
    server.add_user("alice", "correct horse", false);
    let mut browser = server.browser();
    browser.login("alice", "correct horse", true).await;
    browser.drop_cookie("__Host-session");
    let cookie = browser.cookie(RM).expect("remember-me cookie");

    let holder = Holder::take(&server.db);
    let started = Instant::now();
    let page = browser.get("/").await;
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(8),
        "answered after {waited:?}: bounded by the lock timeout"
    );
    assert!(
        !page.body.contains("Signed in as"),
        "not signed in while the lock is held"
    );
    assert!(
        page.set_cookie(RM).is_none(),
        "the cookie is kept: it may well be valid"
    );
    assert_eq!(browser.cookie(RM).as_deref(), Some(cookie.as_str()));

    holder.release();
    let page = browser.get("/").await;
    assert!(
        page.body.contains("Signed in as"),
        "signed in by the same cookie once the lock is gone"
    );
    assert!(page.set_cookie(RM).is_some(), "and rotated");
}
