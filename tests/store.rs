//! The token store's re-authentication contract (`find_and_rotate`), called
//! directly on SQLite and PostgreSQL: only the current, unexpired token
//! rotates; the record returned is the row before the rotation; of racing
//! rotations of one token exactly one wins; the expiry moves by the rule.
//! (On PostgreSQL this is one statement of its own, on SQLite two steps: the
//! same tests hold both to the contract.)

mod common;

use std::sync::{Arc, Barrier};

use common::TestDb;
use rememberme::store::{
    ExpiryOnUse, NewToken, RotationAttempt, StateStore as _, TokenRecord, TokenStore as _, UserId,
};
use rememberme::token::SecretHash;
use rememberme::{Database, DieselStore};

on_both_backends!(
    only_the_current_unexpired_token_rotates_and_the_old_row_is_returned,
    racing_rotations_of_one_token_rotate_it_exactly_once,
    a_rotation_moves_the_expiry_by_the_rule,
    concurrent_re_authentications_each_get_their_own_row,
    a_row_that_does_not_decode_is_refused_before_it_is_rotated,
    concurrent_password_checks_never_outrun_the_failure_limit,
    a_rotation_stores_the_seal_of_the_new_token,
    a_rotation_writes_its_sign_in_audit_row_and_a_refused_one_none,
    the_diesel_store_suggests_its_store_threads,
);

/// The layer's default store threads come from the store: the pool size
/// on both backends (the sign-ins by cookie and the API's refreshes wait
/// for their batch without a thread, so more threads than connections
/// would only wait for a connection; an A/B on PostgreSQL in
/// bench/layer_notes.md). A store of the app's own suggests nothing.
async fn the_diesel_store_suggests_its_store_threads(db: TestDb) {
    let store = DieselStore::new(Database::connect(&db.url, 3).unwrap());
    assert_eq!(store.suggested_concurrency(), Some(3));
    assert_eq!(
        rememberme::testing::MemoryStore::new().suggested_concurrency(),
        None
    );
}

/// Issue 14, finding 7: the sign-in's audit row is written in the
/// rotation's own transaction, so a rotation that committed has its row
/// (a crash after the commit loses neither); a refused attempt writes none.
async fn a_rotation_writes_its_sign_in_audit_row_and_a_refused_one_none(db: TestDb) {
    use rememberme::store::{AuditLog, SignInAudit};
    let store = store(&db);
    let alice = user_with_token(&store, "alice", 1, 10, NOW + DAY);
    let audit = SignInAudit {
        ip: Some("203.0.113.9"),
        user_agent: Some("agent"),
        detail: "api refresh",
    };
    for (token, new, rotates) in [(10, 11, true), (10, 12, false), (99, 13, false)] {
        let found = store
            .find_and_rotate(RotationAttempt {
                audit: Some(audit),
                ..attempt(&hash(1), &hash(token), &hash(new), NOW)
            })
            .unwrap()
            .expect("found");
        assert_eq!(
            (found.rotated, found.audited),
            (rotates, rotates),
            "{token}"
        );
    }
    let rows = AuditLog::list(&store, Some("remember_me_sign_in"), None, None, 10).unwrap();
    assert_eq!(rows.len(), 1, "one row, for the one rotation");
    let row = &rows[0];
    assert_eq!(row.user_id, Some(alice));
    assert_eq!(row.at, NOW);
    assert_eq!(row.ip.as_deref(), Some("203.0.113.9"));
    assert_eq!(row.user_agent.as_deref(), Some("agent"));
    assert_eq!(row.detail, "api refresh");
}

/// Issue 13: the failure counter is reserved before a password check runs,
/// so guesses sent at once (here 24, through two pools, as two instances
/// would) get at most `max` checks per lockout, not one each.
async fn concurrent_password_checks_never_outrun_the_failure_limit(db: TestDb) {
    use rememberme::store::Reservation;
    use rememberme::store::ThrottleKey;
    let stores = [store(&db), store(&db)];
    let key = ThrottleKey::account("alice");
    let barrier = Arc::new(Barrier::new(24));
    let racers: Vec<_> = (0..24)
        .map(|i| {
            let store = stores[i % 2].clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                store.reserve_attempt(&key, NOW, 300, 5).unwrap()
            })
        })
        .collect();
    let allowed = racers
        .into_iter()
        .map(|r| r.join().unwrap())
        .filter(|r| *r == Reservation::Allowed)
        .count();
    assert_eq!(allowed, 5, "exactly the limit, whatever the concurrency");
    assert_eq!(stores[0].failures(&key).unwrap(), Some((5, NOW)));
    // Once the window has passed, the count starts again at one.
    let later = NOW + 300;
    assert_eq!(
        stores[0].reserve_attempt(&key, later, 300, 5).unwrap(),
        Reservation::Allowed
    );
    assert_eq!(stores[1].failures(&key).unwrap(), Some((1, later)));
    stores[1].clear_failures(&key).unwrap();
    assert_eq!(stores[0].failures(&key).unwrap(), None);
}

/// Issue 14: the rotation stores the new token sealed under the presented
/// one, in the same write.
async fn a_rotation_stores_the_seal_of_the_new_token(db: TestDb) {
    let store = store(&db);
    user_with_token(&store, "alice", 1, 10, NOW + DAY);
    let found = store
        .find_and_rotate(RotationAttempt {
            sealed: &[42; 32],
            ..attempt(&hash(1), &hash(10), &hash(11), NOW)
        })
        .unwrap()
        .expect("found");
    assert!(found.rotated);
    let row = row(&store, 1);
    assert_eq!(row.token_hash, hash(11));
    assert_eq!(row.sealed_token.as_deref(), Some(&[42u8; 32][..]));
}

const NOW: i64 = 1_800_000_000;
const DAY: i64 = 24 * 3600;

fn store(db: &TestDb) -> DieselStore {
    DieselStore::new(Database::connect(&db.url, 8).expect("test database"))
}

fn hash(byte: u8) -> SecretHash {
    SecretHash::from_slice(&[byte; 32]).unwrap()
}

/// A user with one token: series `hash(series)`, token `hash(token)`,
/// created at `NOW - DAY`, expiring at `expires_at`.
fn user_with_token(
    store: &DieselStore,
    name: &str,
    series: u8,
    token: u8,
    expires_at: i64,
) -> UserId {
    // The crate keeps no users: the app's id, whatever it is.
    let user = UserId::from(name);
    store
        .insert(NewToken {
            user_id: &user,
            series_hash: &hash(series),
            token_hash: &hash(token),
            now: NOW - DAY,
            expires_at,
            user_agent: None,
            ip: None,
            device_key: None,
        })
        .unwrap();
    user
}

fn attempt<'a>(
    series: &'a SecretHash,
    token: &'a SecretHash,
    new_token: &'a SecretHash,
    now: i64,
) -> RotationAttempt<'a> {
    RotationAttempt {
        series,
        token,
        new_token,
        sealed: &[7; 32],
        now,
        clock_offset_ms: 0,
        expiry: ExpiryOnUse::Keep,
        audit: None,
    }
}

fn row(store: &DieselStore, series: u8) -> TokenRecord {
    store.find_by_series(&hash(series)).unwrap().expect("row")
}

async fn only_the_current_unexpired_token_rotates_and_the_old_row_is_returned(db: TestDb) {
    let store = store(&db);
    let alice = user_with_token(&store, "alice", 1, 10, NOW + DAY);
    let before = row(&store, 1);

    // Unknown series: nothing.
    let unknown = store
        .find_and_rotate(attempt(&hash(2), &hash(10), &hash(11), NOW))
        .unwrap();
    assert!(unknown.is_none());

    // A wrong token: found, not rotated, the row untouched.
    let wrong = store
        .find_and_rotate(attempt(&hash(1), &hash(99), &hash(11), NOW))
        .unwrap()
        .expect("found");
    assert!(!wrong.rotated);
    assert_eq!(wrong.record, before);
    assert_eq!(row(&store, 1), before, "a wrong token changes nothing");

    // The current token: rotated; the record is the row before.
    let found = store
        .find_and_rotate(attempt(&hash(1), &hash(10), &hash(11), NOW))
        .unwrap()
        .expect("found");
    assert!(found.rotated);
    assert_eq!(
        found.record, before,
        "the row as it was before the rotation"
    );
    assert_eq!(found.record.user_id, alice);
    assert_eq!(found.epoch, 0, "no bump yet");
    let after = row(&store, 1);
    assert_eq!(after.token_hash, hash(11));
    assert_eq!(after.previous_token_hash, Some(hash(10)));
    // Issue 14, finding 5: PostgreSQL stamps the rotation with its own
    // clock (one clock for every instance), whatever the caller's says;
    // the grace window is measured on that clock (`store_now`).
    // (SQLite: the machine's clock, which every process on the file shares,
    // taken when the batch runs.)
    let rotated_at = after.rotated_at.expect("stamped");
    let system = rememberme::clock::Clock::now(&rememberme::clock::SystemClock);
    assert!(
        (rotated_at - system).abs() <= 5,
        "the store's clock, not the caller's: {rotated_at} ({})",
        db.backend
    );
    assert_eq!(found.store_now, rotated_at);
    assert_eq!(after.last_used_at, NOW);
    assert_eq!(after.expires_at, before.expires_at);

    // The replaced token again (a replay, or a parallel request): found as
    // it now is, not rotated.
    let replay = store
        .find_and_rotate(attempt(&hash(1), &hash(10), &hash(12), NOW + 1))
        .unwrap()
        .expect("found");
    assert!(!replay.rotated);
    assert_eq!(replay.record, after);
    assert_eq!(row(&store, 1), after);

    // An expired token is never rotated, even with the right token.
    user_with_token(&store, "bob", 3, 30, NOW);
    let expired_before = row(&store, 3);
    let expired = store
        .find_and_rotate(attempt(&hash(3), &hash(30), &hash(31), NOW))
        .unwrap()
        .expect("found");
    assert!(!expired.rotated);
    assert_eq!(row(&store, 3), expired_before);
}

async fn racing_rotations_of_one_token_rotate_it_exactly_once(db: TestDb) {
    const RACERS: u8 = 8;
    let store = store(&db);
    // A second store on its own pool: as another process, its batches race
    // this one's in the database, not in one batcher.
    let other = self::store(&db);
    user_with_token(&store, "alice", 1, 0, NOW + DAY);
    // Each round, every racer presents the current token with a new token
    // of its own, all released at once; half through each store (so the
    // same series also meets itself inside one batch).
    let mut current = 0u8;
    for round in 0..10u8 {
        let barrier = Arc::new(Barrier::new(RACERS.into()));
        let racers: Vec<_> = (0..RACERS)
            .map(|racer| {
                let store = if racer % 2 == 0 { &store } else { &other }.clone();
                let barrier = barrier.clone();
                let new = 100 + round * RACERS + racer;
                std::thread::spawn(move || {
                    barrier.wait();
                    let found = store
                        .find_and_rotate(attempt(
                            &hash(1),
                            &hash(current),
                            &hash(new),
                            NOW + i64::from(round),
                        ))
                        .unwrap()
                        .expect("found");
                    found.rotated.then_some(new)
                })
            })
            .collect();
        let winners: Vec<u8> = racers
            .into_iter()
            .filter_map(|racer| racer.join().unwrap())
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let after = row(&store, 1);
        assert_eq!(after.token_hash, hash(winners[0]));
        assert_eq!(after.previous_token_hash, Some(hash(current)));
        current = winners[0];
    }
}

async fn a_rotation_moves_the_expiry_by_the_rule(db: TestDb) {
    let store = store(&db);
    let created = NOW - DAY;
    for (series, expiry, expected) in [
        // Absolute: unchanged.
        (1, ExpiryOnUse::Keep, NOW + DAY),
        // Sliding within the cap: to `until`.
        (
            2,
            ExpiryOnUse::Extend {
                until: NOW + 2 * DAY,
                max_lifetime_secs: Some(10 * DAY),
            },
            NOW + 2 * DAY,
        ),
        // Sliding past the cap: to the cap.
        (
            3,
            ExpiryOnUse::Extend {
                until: NOW + 30 * DAY,
                max_lifetime_secs: Some(10 * DAY),
            },
            created + 10 * DAY,
        ),
        // No cap: to `until`.
        (
            4,
            ExpiryOnUse::Extend {
                until: NOW + 30 * DAY,
                max_lifetime_secs: None,
            },
            NOW + 30 * DAY,
        ),
    ] {
        user_with_token(&store, &format!("user{series}"), series, 10, NOW + DAY);
        let found = store
            .find_and_rotate(RotationAttempt {
                expiry,
                ..attempt(&hash(series), &hash(10), &hash(11), NOW)
            })
            .unwrap()
            .expect("found");
        assert!(found.rotated, "{expiry:?}");
        assert_eq!(found.record.created_at, created);
        assert_eq!(expiry.applied_to(&found.record), expected, "{expiry:?}");
        assert_eq!(row(&store, series).expires_at, expected, "{expiry:?}");
    }
}

/// Many tokens re-authenticated at once (they share batches):
/// each caller gets its own row and owner, each token is rotated once, and a
/// wrong token among them changes nothing.
async fn concurrent_re_authentications_each_get_their_own_row(db: TestDb) {
    const CALLERS: u8 = 24;
    let store = store(&db);
    let users: Vec<UserId> = (1..=CALLERS)
        .map(|i| user_with_token(&store, &format!("user{i}"), i, 100 + i, NOW + DAY))
        .collect();
    let barrier = Arc::new(Barrier::new(CALLERS.into()));
    let callers: Vec<_> = (1..=CALLERS)
        .map(|i| {
            let (store, barrier) = (store.clone(), barrier.clone());
            std::thread::spawn(move || {
                // Every third caller presents a wrong token.
                let presented = if i % 3 == 0 { 250 } else { 100 + i };
                barrier.wait();
                store
                    .find_and_rotate(attempt(&hash(i), &hash(presented), &hash(200 - i), NOW))
                    .unwrap()
                    .expect("found")
            })
        })
        .collect();
    for ((i, caller), user) in (1..=CALLERS).zip(callers).zip(users) {
        let found = caller.join().unwrap();
        assert_eq!(found.record.series_hash, hash(i), "caller {i}: its own row");
        assert_eq!(found.record.user_id, user);
        let after = row(&store, i);
        if i % 3 == 0 {
            assert!(!found.rotated, "caller {i}: a wrong token");
            assert_eq!(after, found.record);
        } else {
            assert!(found.rotated, "caller {i}");
            assert_eq!(found.record.token_hash, hash(100 + i), "the row before");
            assert_eq!(after.token_hash, hash(200 - i));
        }
    }
}

/// A corrupted row (a previous hash that is not 32 bytes) fails the attempt
/// and is left as it was: rotated, it would carry a token no browser ever
/// received, and the next use of the cookie would look like theft.
async fn a_row_that_does_not_decode_is_refused_before_it_is_rotated(db: TestDb) {
    use diesel::Connection as _;
    use diesel::connection::SimpleConnection as _;
    let store = store(&db);
    user_with_token(&store, "alice", 1, 10, NOW + DAY);
    match db.sqlite_path() {
        Some(path) => diesel::SqliteConnection::establish(path.to_str().unwrap())
            .unwrap()
            .batch_execute("UPDATE remember_tokens SET previous_token_hash = X'0102'")
            .unwrap(),
        None => diesel::PgConnection::establish(&db.url)
            .unwrap()
            .batch_execute("UPDATE remember_tokens SET previous_token_hash = '\\x0102'")
            .unwrap(),
    }
    let result = store.find_and_rotate(attempt(&hash(1), &hash(10), &hash(11), NOW));
    assert!(result.is_err(), "{result:?}");
    // Read back without decoding the broken column.
    let token_hash: Vec<u8> = {
        use diesel::prelude::*;
        use diesel::sql_types::Binary;
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = Binary)]
            token_hash: Vec<u8>,
        }
        let sql = "SELECT token_hash FROM remember_tokens";
        let rows: Vec<Row> = match db.sqlite_path() {
            Some(path) => diesel::sql_query(sql)
                .load(&mut diesel::SqliteConnection::establish(path.to_str().unwrap()).unwrap())
                .unwrap(),
            None => diesel::sql_query(sql)
                .load(&mut diesel::PgConnection::establish(&db.url).unwrap())
                .unwrap(),
        };
        rows.into_iter().next().unwrap().token_hash
    };
    assert_eq!(token_hash, hash(10).as_bytes(), "not rotated");
}
