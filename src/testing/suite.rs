//! [`store_acceptance_suite`]: the contract of the crate's stores, as
//! checks any implementation can run (actix-session's
//! `acceptance_test_suite` is the model).

use std::sync::{Arc, Barrier};

use crate::store::{
    AuditKind, AuditLog, ExpiryOnUse, NewAuditEvent, NewToken, Reservation, Retire,
    RotationAttempt, StateStore, Stores, ThrottleKey, TokenRecord, TokenStore, UserId,
};
use crate::token::SecretHash;

/// A time far from 0, so that windows and expiries stay positive.
const NOW: i64 = 1_800_000_000;
const DAY: i64 = 24 * 3600;

/// Runs the contract of [`TokenStore`], [`StateStore`] and [`AuditLog`] on
/// `store`, panicking at the first broken rule with what it expected. One
/// call proves a store of your own (SeaORM, sqlx, Redis…): run it on an
/// empty database in a test.
///
/// The checks share the store, each with users and series of its own, so
/// they never see each other's rows; they include races (threads on one
/// token, one epoch, one failure counter), so run it on a store that
/// others do not write to meanwhile. Blocking.
///
/// ```
/// rememberme::testing::store_acceptance_suite(rememberme::testing::MemoryStore::new());
/// ```
pub fn store_acceptance_suite<S>(store: S)
where
    S: TokenStore + StateStore + AuditLog + 'static,
{
    let store = Arc::new(store);
    tokens_are_found_by_series_and_listed_by_owner(&*store);
    only_the_current_unexpired_token_rotates(&*store);
    racing_rotations_of_one_token_rotate_it_once(store.clone());
    batch::a_batch_answers_each_attempt_as_alone(&*store);
    cap::the_cap_and_the_device_key_bound_a_users_tokens(&*store);
    cap::a_new_token_replaces_others_only_once_retired(&*store);
    cap::parallel_sign_ins_do_not_retire_each_others_tokens(&*store);
    cap::an_apps_logout_ends_its_devices_tokens_only(&*store);
    deletions_are_scoped(&*store);
    epochs_start_at_zero_and_move_only_from_the_expected_value(store.clone());
    failure_counters_reserve_atomically_and_decay(store.clone());
    revoking_everything_deletes_bumps_and_audits(store.clone());
    the_audit_log_filters_pages_and_purges(&*store);
    audit_rows_read_back_as_written(&*store);
}

/// A distinct hash per check and item.
fn hash(check: u8, item: u8) -> SecretHash {
    let mut bytes = [0xA5u8; 32];
    bytes[0] = check;
    bytes[1] = item;
    SecretHash::from_slice(&bytes).expect("32 bytes")
}

fn user(check: u8, name: &str) -> UserId {
    UserId::from(format!("suite-{check}-{name}"))
}

/// Inserts a token as the issuing step does, then retires what it
/// replaces as a completed sign-in does.
fn insert<S: TokenStore + ?Sized>(
    store: &S,
    owner: &UserId,
    pair: (&SecretHash, &SecretHash),
    now: i64,
    device: Option<&str>,
    cap: u32,
) -> i64 {
    let id = insert_only(store, owner, pair, now, device);
    let retire = Retire {
        user: owner,
        kept: id,
        browser_series: None,
        device_key: device,
        max_per_user: cap,
    };
    store.retire_replaced(retire).expect("retire_replaced");
    id
}

/// Inserts a token as the issuing step does: a sign-in still running.
fn insert_only<S: TokenStore + ?Sized>(
    store: &S,
    owner: &UserId,
    (series, token): (&SecretHash, &SecretHash),
    now: i64,
    device: Option<&str>,
) -> i64 {
    store
        .insert(NewToken {
            user_id: owner,
            series_hash: series,
            token_hash: token,
            now,
            expires_at: now + DAY,
            user_agent: Some("suite"),
            ip: Some("192.0.2.1"),
            device_key: device,
        })
        .expect("insert")
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
        sealed: b"sealed",
        now,
        clock_offset_ms: 0,
        expiry: ExpiryOnUse::Keep,
        audit: None,
    }
}

fn row<S: TokenStore + ?Sized>(store: &S, series: &SecretHash) -> TokenRecord {
    store
        .find_by_series(series)
        .expect("find")
        .expect("the row exists")
}

fn tokens_are_found_by_series_and_listed_by_owner<S: TokenStore + StateStore + ?Sized>(store: &S) {
    let alice = user(1, "alice");
    let (s1, t1, s2, t2) = (hash(1, 1), hash(1, 2), hash(1, 3), hash(1, 4));
    assert_eq!(store.find_by_series(&s1).unwrap(), None, "nothing yet");
    let first = insert(store, &alice, (&s1, &t1), NOW - 10, None, 10);
    let second = insert(store, &alice, (&s2, &t2), NOW, Some("phone"), 10);
    let found = row(store, &s1);
    assert_eq!(
        (found.id, &found.user_id, &found.token_hash),
        (first, &alice, &t1)
    );
    assert_eq!(found.previous_token_hash, None);
    assert_eq!(
        (found.created_at, found.last_used_at, found.expires_at),
        (NOW - 10, NOW - 10, NOW - 10 + DAY)
    );
    assert_eq!(found.user_agent.as_deref(), Some("suite"));
    assert_eq!(found.ip.as_deref(), Some("192.0.2.1"));
    assert_eq!(row(store, &s2).device_key.as_deref(), Some("phone"));
    let (with_epoch, epoch) = store.find_by_series_with_epoch(&s1).unwrap().unwrap();
    assert_eq!((with_epoch, epoch), (found, 0), "epoch 0 before a bump");
    let ids: Vec<i64> = store
        .list_for_user(&alice)
        .unwrap()
        .iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(ids, [second, first], "most recently used first");
    let ids: Vec<i64> = store
        .list(Some(&alice), None, 10)
        .unwrap()
        .iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(ids, [second, first], "newest first");
    let newest = store.list(Some(&alice), None, 1).unwrap();
    assert_eq!(newest.iter().map(|t| t.id).collect::<Vec<_>>(), [second]);
    let next = store.list(Some(&alice), Some(second), 10).unwrap();
    assert_eq!(
        next.iter().map(|t| t.id).collect::<Vec<_>>(),
        [first],
        "the page before the last id"
    );
    assert!(
        store
            .list(Some(&alice), Some(first), 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.find_owner(first).unwrap(), Some(alice));
}

fn only_the_current_unexpired_token_rotates<S: TokenStore + ?Sized>(store: &S) {
    let bob = user(2, "bob");
    let (series, current, next, wrong) = (hash(2, 1), hash(2, 2), hash(2, 3), hash(2, 9));
    insert(store, &bob, (&series, &current), NOW - DAY / 2, None, 10);
    let before = row(store, &series);

    let refused = store
        .find_and_rotate(attempt(&series, &wrong, &next, NOW))
        .unwrap()
        .expect("a known series is found");
    assert!(!refused.rotated, "a wrong token does not rotate");
    assert_eq!(refused.record, before);
    assert_eq!(row(store, &series), before, "and changes nothing");
    assert!(
        store
            .find_and_rotate(attempt(&hash(2, 7), &current, &next, NOW))
            .unwrap()
            .is_none(),
        "an unknown series is not found"
    );

    let rotated = store
        .find_and_rotate(attempt(&series, &current, &next, NOW))
        .unwrap()
        .unwrap();
    assert!(rotated.rotated);
    assert_eq!(rotated.record, before, "the row as it was before");
    let after = row(store, &series);
    assert_eq!(after.token_hash, next);
    assert_eq!(after.previous_token_hash.as_ref(), Some(&current));
    assert_eq!(after.sealed_token.as_deref(), Some(&b"sealed"[..]));
    assert_eq!(after.last_used_at, NOW);
    assert_eq!(after.expires_at, before.expires_at, "Keep keeps the expiry");
    assert!(after.rotated_at.is_some());

    let again = store
        .find_and_rotate(attempt(&series, &current, &hash(2, 4), NOW))
        .unwrap()
        .unwrap();
    assert!(!again.rotated, "the replaced token does not rotate again");
    assert!(
        !store
            .rotate(before.id, &current, &hash(2, 8), b"x", NOW, None)
            .unwrap(),
        "rotate compares: a stale expected token swaps nothing"
    );
    assert_eq!(row(store, &series).token_hash, next, "unchanged");

    expiry_moves_by_the_rule_and_an_expired_token_never_rotates(store, &series, &next);
}

fn expiry_moves_by_the_rule_and_an_expired_token_never_rotates<S: TokenStore + ?Sized>(
    store: &S,
    series: &SecretHash,
    current: &SecretHash,
) {
    let extended = store
        .find_and_rotate(RotationAttempt {
            expiry: ExpiryOnUse::Extend {
                until: NOW + 2 * DAY,
                max_lifetime_secs: None,
            },
            ..attempt(series, current, &hash(2, 5), NOW + 1)
        })
        .unwrap()
        .unwrap();
    assert!(extended.rotated);
    assert_eq!(
        row(store, series).expires_at,
        NOW + 2 * DAY,
        "Extend moves it"
    );

    let expired = store
        .find_and_rotate(attempt(series, &hash(2, 5), &hash(2, 6), NOW + 3 * DAY))
        .unwrap()
        .unwrap();
    assert!(!expired.rotated, "an expired token never rotates");
}

fn racing_rotations_of_one_token_rotate_it_once<S: TokenStore + 'static>(store: Arc<S>) {
    const RACERS: u8 = 8;
    let carol = user(3, "carol");
    let (series, token) = (hash(3, 1), hash(3, 2));
    insert(&*store, &carol, (&series, &token), NOW, None, 10);
    let barrier = Arc::new(Barrier::new(RACERS.into()));
    let racers: Vec<_> = (0..RACERS)
        .map(|i| {
            let (store, barrier) = (store.clone(), barrier.clone());
            let (series, token, new) = (series.clone(), token.clone(), hash(3, 10 + i));
            std::thread::spawn(move || {
                barrier.wait();
                store
                    .find_and_rotate(attempt(&series, &token, &new, NOW))
                    .expect("no error")
                    .expect("found")
                    .rotated
            })
        })
        .collect();
    let wins = racers
        .into_iter()
        .map(|r| r.join().expect("racer"))
        .filter(|won| *won)
        .count();
    assert_eq!(
        wins, 1,
        "of racing rotations of one token, exactly one wins"
    );
}

fn deletions_are_scoped<S: TokenStore + ?Sized>(store: &S) {
    let (erin, frank) = (user(5, "erin"), user(5, "frank"));
    let e1 = insert(store, &erin, (&hash(5, 1), &hash(5, 2)), NOW, None, 10);
    insert(store, &erin, (&hash(5, 3), &hash(5, 4)), NOW, None, 10);
    let f1 = insert(store, &frank, (&hash(5, 5), &hash(5, 6)), NOW, None, 10);
    assert!(!store.delete_by_id(f1, Some(&erin)).unwrap(), "not erin's");
    assert!(store.find_owner(f1).unwrap().is_some(), "frank's stays");
    assert!(store.delete_by_id(e1, Some(&erin)).unwrap());
    assert!(!store.delete_by_id(e1, None).unwrap(), "already gone");
    assert!(store.delete_series(&hash(5, 3)).unwrap());
    assert!(!store.delete_series(&hash(5, 3)).unwrap());
    assert!(store.list_for_user(&erin).unwrap().is_empty());
    insert(store, &erin, (&hash(5, 7), &hash(5, 8)), NOW, None, 10);
    assert_eq!(store.delete_all_for_user(&erin).unwrap(), 1);
    assert_eq!(
        store.list_for_user(&frank).unwrap().len(),
        1,
        "frank untouched"
    );
    // Expired rows are purged; live ones stay.
    let old = user(5, "old");
    insert(
        store,
        &old,
        (&hash(5, 9), &hash(5, 10)),
        NOW - 2 * DAY,
        None,
        10,
    );
    assert!(store.purge_expired(NOW).unwrap() >= 1);
    assert!(
        store.find_by_series(&hash(5, 9)).unwrap().is_none(),
        "expired gone"
    );
    assert!(
        store.find_by_series(&hash(5, 5)).unwrap().is_some(),
        "live stays"
    );
}

mod batch;
mod cap;
mod state;
use state::{
    audit_rows_read_back_as_written, epochs_start_at_zero_and_move_only_from_the_expected_value,
    failure_counters_reserve_atomically_and_decay, revoking_everything_deletes_bumps_and_audits,
    the_audit_log_filters_pages_and_purges,
};
