//! Bounded growth: the server's background task and `tokens purge` delete
//! expired tokens and audit events past retention; live rows stay.

mod common;

use std::time::{Duration, Instant};

use rememberme::store::{AuditKind, NewAuditEvent, NewToken};
use rememberme::token::RememberCookie;
use rememberme::{Database, Stores};

use common::TestDb;
use common::instance::{cli, start_with};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Stores over the test database, with the user `alice`.
fn stores_with_alice(db: &TestDb) -> (Stores, rememberme::store::UserId) {
    let database = Database::connect(&db.url, 2).unwrap();
    let stores = common::stores_on(&database);
    let user = common::users_on(&database)
        .create("alice", "alice-password", false)
        .unwrap();
    (stores, user)
}

/// A user with one live and one expired token, one recent and one ancient event.
fn seed(db: &TestDb) -> Stores {
    let (stores, user) = stores_with_alice(db);
    for expires_at in [now() + 3600, now() - 10] {
        let cookie = RememberCookie::generate();
        stores
            .tokens
            .insert(NewToken {
                user_id: &user,
                series_hash: &cookie.series.hash(),
                token_hash: &cookie.token.hash(),
                now: now() - 100,
                expires_at,
                user_agent: None,
                ip: None,
                device_key: None,
            })
            .unwrap();
    }
    for at in [now(), now() - 100 * 24 * 3600] {
        stores
            .audit
            .record(NewAuditEvent {
                at,
                kind: AuditKind::Logout,
                user_id: Some(&user),
                ip: None,
                user_agent: None,
                detail: "",
            })
            .unwrap();
    }
    stores
}

fn counts(stores: &Stores) -> (usize, usize) {
    (
        stores.tokens.list(None, None, 100).unwrap().len(),
        stores.audit.list(None, None, None, 100).unwrap().len(),
    )
}

fn the_server_purges_expired_tokens_and_old_events_in_the_background(db: TestDb) {
    let stores = seed(&db);
    assert_eq!(counts(&stores), (2, 2));
    let dir = tempfile::tempdir().unwrap();
    let _server = start_with(
        &db,
        &dir.path().join("key"),
        &["--purge-interval-secs", "1", "--audit-retention-days", "90"],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while counts(&stores) != (1, 1) {
        assert!(
            Instant::now() < deadline,
            "not purged: {:?}",
            counts(&stores)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn the_cli_purges_expired_tokens(db: TestDb) {
    let stores = seed(&db);
    let out = cli(&db, &["tokens", "purge"], "");
    assert!(out.contains("1 expired token(s) deleted"), "{out}");
    assert_eq!(counts(&stores).0, 1, "the live token stays");
}

#[test]
fn background_purge_on_both_backends() {
    the_server_purges_expired_tokens_and_old_events_in_the_background(TestDb::sqlite());
    if let Some(db) = TestDb::postgres() {
        the_server_purges_expired_tokens_and_old_events_in_the_background(db);
    }
}

/// The library's purge, as an app runs it: on the layer's clock (a token
/// live on the system's clock goes once the layer's has passed its
/// expiry), and as a task that neither keeps the layer from closing nor
/// outlives it.
async fn the_layer_purges_on_its_clock_and_its_task_ends_with_it(db: TestDb) {
    use rememberme::{RememberMe, RememberMeConfig};
    let stores = seed(&db);
    let clock = rememberme::clock::ManualClock::new();
    let config = RememberMeConfig::builder()
        .clock(clock.clone())
        .lockout(Duration::from_secs(48 * 3600))
        .build();
    let layer = RememberMe::new(stores.clone(), config);
    let retention = Duration::from_secs(90 * 24 * 3600);
    // A failure counter past the day a counter is kept, within the lockout.
    let key = rememberme::store::ThrottleKey::account("alice");
    let stale = stores
        .state
        .reserve_attempt(&key, now() - 25 * 3600, 48 * 3600, 5);
    stale.unwrap();

    let purged = layer.purge(retention).await.unwrap();
    assert_eq!((purged.tokens, purged.audit_events), (1, 1), "{purged:?}");
    let stay = "the live token and the recent event stay";
    assert_eq!(counts(&stores), (1, 1), "{stay}");
    assert!(
        stores.state.failures(&key).unwrap().is_some(),
        "still locking"
    );
    clock.advance(Duration::from_secs(2 * 3600));
    let purged = layer.purge(retention).await.unwrap();
    assert_eq!(purged.tokens, 1, "expired on the layer's clock");

    // Every 0 s is every second.
    let task = actix_web::rt::spawn(layer.purge_every(Duration::ZERO, retention));
    actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    assert!(
        layer.close(Duration::from_secs(5)),
        "the task holds no layer"
    );
    let ended = actix_web::rt::time::timeout(Duration::from_secs(5), task).await;
    assert!(matches!(ended, Ok(Ok(()))), "the task ends with the layer");
}

/// A purge under way holds the stores, not the layer: the layer closes
/// while it runs (an app's shutdown does not wait for a long purge), and
/// the task ends once its purge does.
async fn a_purge_under_way_does_not_hold_the_layer(db: TestDb) {
    use rememberme::{RememberMe, RememberMeConfig};
    let database = Database::connect(&db.url, 2).unwrap();
    let (store, calls) = common::CountingStore::new(rememberme::DieselStore::new(database.clone()));
    let stores = Stores::new(store, common::users_on(&database));
    let (started, release) = calls.hang("purge_expired");
    let layer = RememberMe::new(stores, RememberMeConfig::default());
    let day = Duration::from_secs(86_400);
    let task = actix_web::rt::spawn(layer.purge_every(Duration::from_secs(1), day));
    while !started.load(std::sync::atomic::Ordering::SeqCst) {
        actix_web::rt::time::sleep(Duration::from_millis(5)).await;
    }
    let closed = layer.close(Duration::from_millis(500));
    release.send(()).unwrap();
    assert!(closed, "the layer closes while its purge runs");
    let ended = actix_web::rt::time::timeout(Duration::from_secs(5), task).await;
    assert!(matches!(ended, Ok(Ok(()))), "the task ends after its purge");
    assert!(database.close(Duration::from_secs(5)));
}

#[actix_web::test]
async fn layer_purge_on_both_backends() {
    the_layer_purges_on_its_clock_and_its_task_ends_with_it(TestDb::sqlite()).await;
    a_purge_under_way_does_not_hold_the_layer(TestDb::sqlite()).await;
    if let Some(db) = TestDb::postgres() {
        the_layer_purges_on_its_clock_and_its_task_ends_with_it(db).await;
    }
    if let Some(db) = TestDb::postgres() {
        a_purge_under_way_does_not_hold_the_layer(db).await;
    }
}

#[test]
fn cli_purge_on_both_backends() {
    the_cli_purges_expired_tokens(TestDb::sqlite());
    if let Some(db) = TestDb::postgres() {
        the_cli_purges_expired_tokens(db);
    }
}

/// The audit writer's batches: every event stored, one statement for the
/// lot, and an empty batch is no error.
fn a_batch_of_audit_events_is_stored_whole(db: TestDb) {
    let (stores, user) = stores_with_alice(&db);
    stores.audit.record_batch(&[]).unwrap();
    let details: Vec<String> = (0..300).map(|i| format!("event {i}")).collect();
    let events: Vec<NewAuditEvent<'_>> = details
        .iter()
        .enumerate()
        .map(|(i, detail)| NewAuditEvent {
            at: now() + i as i64,
            kind: AuditKind::RememberMeSignIn,
            user_id: (i % 2 == 0).then_some(&user),
            ip: (i % 3 == 0).then_some("192.0.2.7"),
            user_agent: None,
            detail,
        })
        .collect();
    stores.audit.record_batch(&events).unwrap();
    let stored = stores.audit.list(None, None, None, 1000).unwrap();
    assert_eq!(stored.len(), 300);
    // Newest first: the last event of the batch comes first.
    for (i, event) in stored.iter().rev().enumerate() {
        assert_eq!(event.detail, format!("event {i}"));
        assert_eq!(event.kind, "remember_me_sign_in");
        assert_eq!(event.user_id.as_ref(), (i % 2 == 0).then_some(&user));
        assert_eq!(event.ip.as_deref(), (i % 3 == 0).then_some("192.0.2.7"));
    }
}

#[test]
fn audit_batches_on_both_backends() {
    a_batch_of_audit_events_is_stored_whole(TestDb::sqlite());
    if let Some(db) = TestDb::postgres() {
        a_batch_of_audit_events_is_stored_whole(db);
    }
}

/// A purge deletes in batches of `PURGE_BATCH` rows, each its own short
/// transaction (issue 16: no purge step holds a lock for long), until none
/// is left: every old row goes, over several batches, and no recent one.
fn a_purge_runs_in_batches_until_nothing_is_left(db: TestDb) {
    use rememberme::store::PURGE_BATCH;
    let (stores, user) = stores_with_alice(&db);
    let old = 2 * PURGE_BATCH as usize + 345;
    let cutoff = now() - 90 * 24 * 3600;
    let events: Vec<NewAuditEvent<'_>> = (0..old + 10)
        .map(|i| NewAuditEvent {
            // The first `old` before the cutoff, ten after it.
            at: if i < old {
                cutoff - 1 - i as i64
            } else {
                now()
            },
            kind: AuditKind::Logout,
            user_id: Some(&user),
            ip: None,
            user_agent: None,
            detail: "",
        })
        .collect();
    for chunk in events.chunks(500) {
        stores.audit.record_batch(chunk).unwrap();
    }
    assert_eq!(stores.audit.purge_before(cutoff).unwrap(), old);
    let left = stores.audit.list(None, None, None, 100).unwrap();
    assert_eq!(left.len(), 10, "the recent events stay");
    assert!(left.iter().all(|e| e.at >= cutoff));
    assert_eq!(stores.audit.purge_before(cutoff).unwrap(), 0);
}

#[test]
fn batched_purge_on_both_backends() {
    a_purge_runs_in_batches_until_nothing_is_left(TestDb::sqlite());
    if let Some(db) = TestDb::postgres() {
        a_purge_runs_in_batches_until_nothing_is_left(db);
    }
}
