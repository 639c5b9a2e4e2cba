//! A database made by rememberme 0.1 (the crate's own `users` table,
//! integer user ids, foreign keys) is upgraded in place on first connect,
//! on both backends: tokens keep working, revoked sessions stay revoked
//! (the auth epochs move), and the users table lives on as `UsersTable`.

mod common;

use common::TestDb;
use diesel::connection::SimpleConnection as _;
use diesel::{Connection as _, PgConnection, SqliteConnection};
use diesel_migrations::{FileBasedMigrations, MigrationHarness as _};
use rememberme::store::{StateStore as _, TokenStore as _, UsersTable};
use rememberme::token::RememberCookie;
use rememberme::{Database, DieselStore, UserDirectory as _, UserId};

/// 0.1's data: alice (id 1 from the sequence, epoch 3, one token, one
/// audit row) and bob (2).
const SEED: &str = "
    INSERT INTO users (username, password_hash, is_admin, auth_epoch, created_at)
        VALUES ('alice', 'alice-hash', FALSE, 3, 100), ('bob', 'bob-hash', TRUE, 0, 100);
    INSERT INTO audit_events (at, kind, user_id, detail) VALUES (100, 'logout', 1, '');
";

fn made_by_0_1(db: &TestDb, cookie: &RememberCookie) {
    let token_row = |blob: &dyn Fn(&[u8]) -> String| {
        format!(
            "INSERT INTO remember_tokens (series_hash, token_hash, user_id, created_at, \
             last_used_at, expires_at) VALUES ({}, {}, 1, 100, 100, 4000000000);",
            blob(cookie.series.hash().as_bytes()),
            blob(cookie.token.hash().as_bytes()),
        )
    };
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    match db.backend {
        "sqlite" => {
            let path = db.sqlite_path().unwrap();
            let mut conn = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
            conn.run_pending_migrations(
                FileBasedMigrations::from_path("migrations/v0_1/sqlite").unwrap(),
            )
            .unwrap();
            conn.batch_execute(&SEED.replace("FALSE", "0").replace("TRUE", "1"))
                .unwrap();
            conn.batch_execute(&token_row(&|b| format!("X'{}'", hex(b))))
                .unwrap();
        }
        _ => {
            let mut conn = PgConnection::establish(&db.url).unwrap();
            conn.run_pending_migrations(
                FileBasedMigrations::from_path("migrations/v0_1/postgres").unwrap(),
            )
            .unwrap();
            conn.batch_execute(SEED).unwrap();
            conn.batch_execute(&token_row(&|b| format!("'\\x{}'::bytea", hex(b))))
                .unwrap();
        }
    }
}

async fn a_database_of_0_1_is_upgraded_in_place(db: TestDb) {
    let cookie = RememberCookie::generate();
    made_by_0_1(&db, &cookie);

    let database = Database::connect(&db.url, 2).expect("the upgrade runs");
    let users = UsersTable::open(database.clone()).expect("0.1's users table is kept");
    let store = DieselStore::new(database.clone());
    let alice = UserId::from(1);

    // The token, now keyed by the id as text, with alice's epoch.
    let (token, epoch) = store
        .find_by_series_with_epoch(&cookie.series.hash())
        .unwrap()
        .expect("the token survived");
    assert_eq!(token.user_id, alice);
    assert_eq!(epoch, 3, "a session revoked under 0.1 stays revoked");
    assert_eq!(store.auth_epoch(&UserId::from(2)).unwrap(), 0);

    // The users, through the directory; new users get the next ids.
    let found = users.find_by_username("alice").unwrap().expect("alice");
    assert_eq!(found.id, alice);
    assert_eq!(found.password_hash.as_deref(), Some("alice-hash"));
    assert!(
        users
            .find_by_id(&UserId::from(2))
            .unwrap()
            .unwrap()
            .is_admin
    );
    assert_eq!(
        users.create("carol", "carol-password", false).unwrap(),
        UserId::from(3)
    );

    // The audit row, keyed by the id as text.
    let events = rememberme::store::AuditLog::list(&store, None, Some(&alice), None, 10).unwrap();
    assert_eq!(events.len(), 1);

    // Bumps go on from 0.1's epoch; a second connect has nothing to do.
    rememberme::store::StateStore::bump_epoch(&store, &alice).unwrap();
    drop((store, users));
    assert!(database.close(std::time::Duration::from_secs(5)));
    let again = Database::connect(&db.url, 2).expect("a second connect");
    assert_eq!(
        DieselStore::new(again.clone()).auth_epoch(&alice).unwrap(),
        4
    );
    assert!(again.close(std::time::Duration::from_secs(5)));
}

/// A new database gets the crate's tables only: no `users`.
async fn a_new_database_has_no_users_table(db: TestDb) {
    let database = Database::connect(&db.url, 2).unwrap();
    let probe = "SELECT COUNT(*) FROM users";
    let failed = match db.backend {
        "sqlite" => SqliteConnection::establish(db.sqlite_path().unwrap().to_str().unwrap())
            .unwrap()
            .batch_execute(probe)
            .is_err(),
        _ => PgConnection::establish(&db.url)
            .unwrap()
            .batch_execute(probe)
            .is_err(),
    };
    assert!(failed, "no users table made by the crate");
    assert!(database.close(std::time::Duration::from_secs(5)));
}

on_both_backends!(
    a_database_of_0_1_is_upgraded_in_place,
    a_new_database_has_no_users_table,
);
