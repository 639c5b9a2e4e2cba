//! `Database::builder(..).migrate_at_start(..)`: by default `connect` runs
//! the crate's migrations; told not to, it makes no connection and no
//! table (a missing SQLite file is only created, empty and private) until
//! the app runs `migrate` itself. Both backends, one test code.

mod common;

use common::TestDb;
use rememberme::Database;
use rememberme::store::{StoreError, TokenStore as _};

async fn migrations_run_at_start_only_when_asked(db: TestDb) {
    let deferred = Database::builder(&db.url)
        .max_size(2)
        .migrate_at_start(false)
        .connect()
        .expect("a pool, without a connection");
    if let Some(path) = db.sqlite_path() {
        // An empty file, the owner's only: not created later by a
        // connection with the process's umask.
        use std::os::unix::fs::PermissionsExt as _;
        let meta = std::fs::metadata(&path).expect("the file, made private");
        assert_eq!((meta.len(), meta.permissions().mode() & 0o777), (0, 0o600));
    }
    let store = rememberme::DieselStore::new(deferred.clone());
    // No table yet: a store call fails (as a query, not a panic).
    match store.list(None, None, 10) {
        Err(StoreError::Query(_) | StoreError::Unavailable(_)) => {}
        other => panic!("the crate's tables exist before migrate: {other:?}"),
    }
    deferred.migrate().expect("migrate");
    assert_eq!(store.list(None, None, 10).unwrap(), vec![]);
    if let Some(path) = db.sqlite_path() {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the file holds token hashes");
    }
    drop(store);
    assert!(deferred.close(std::time::Duration::from_secs(5)));

    // The default (and `connect`): migrated at start, and again is a no-op.
    let migrated = Database::builder(&db.url).max_size(1).connect().unwrap();
    let store = rememberme::DieselStore::new(migrated.clone());
    assert_eq!(store.list(None, None, 10).unwrap(), vec![]);
    migrated.migrate().expect("nothing pending");
    drop(store);
    assert!(migrated.close(std::time::Duration::from_secs(5)));
}

on_both_backends!(migrations_run_at_start_only_when_asked);
