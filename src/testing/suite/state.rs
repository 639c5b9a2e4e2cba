//! The suite's checks of the state store and the audit log.

use super::*;

pub(super) fn epochs_start_at_zero_and_move_only_from_the_expected_value<
    S: StateStore + 'static,
>(
    store: Arc<S>,
) {
    let gina = user(6, "gina");
    assert_eq!(store.auth_epoch(&gina).unwrap(), 0);
    store.bump_epoch(&gina).unwrap();
    assert_eq!(store.auth_epoch(&gina).unwrap(), 1);
    assert_eq!(store.bump_epoch_from(&gina, 1).unwrap(), Some(2));
    assert_eq!(store.bump_epoch_from(&gina, 1).unwrap(), None, "moved on");
    assert_eq!(store.auth_epoch(&gina).unwrap(), 2);
    // From a user never bumped, and racing: exactly one moves it.
    let hank = user(6, "hank");
    let barrier = Arc::new(Barrier::new(6));
    let racers: Vec<_> = (0..6)
        .map(|_| {
            let (store, barrier, hank) = (store.clone(), barrier.clone(), hank.clone());
            std::thread::spawn(move || {
                barrier.wait();
                store.bump_epoch_from(&hank, 0).expect("no error")
            })
        })
        .collect();
    let moved: Vec<i64> = racers
        .into_iter()
        .filter_map(|r| r.join().expect("racer"))
        .collect();
    assert_eq!(moved, [1], "one racer moves the epoch from 0");
    assert_eq!(store.auth_epoch(&hank).unwrap(), 1);
}

pub(super) fn failure_counters_reserve_atomically_and_decay<S: StateStore + 'static>(
    store: Arc<S>,
) {
    let key = ThrottleKey::account("suite-7-ivy");
    let (window, max) = (300, 5);
    assert_eq!(store.failures(&key).unwrap(), None);
    let barrier = Arc::new(Barrier::new(12));
    let racers: Vec<_> = (0..12)
        .map(|_| {
            let (store, barrier) = (store.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                store
                    .reserve_attempt(&key, NOW, window, max)
                    .expect("no error")
            })
        })
        .collect();
    let allowed = racers
        .into_iter()
        .map(|r| r.join().expect("racer"))
        .filter(|r| *r == Reservation::Allowed)
        .count();
    assert_eq!(
        allowed, 5,
        "never more than max checks per window, whatever the race"
    );
    assert_eq!(store.failures(&key).unwrap(), Some((5, NOW)));
    assert_eq!(
        store.reserve_attempt(&key, NOW + 1, window, max).unwrap(),
        Reservation::Throttled {
            last_failed_at: NOW
        }
    );
    assert_eq!(
        store
            .reserve_attempt(&key, NOW + window, window, max)
            .unwrap(),
        Reservation::Allowed,
        "a counter decays after the window"
    );
    assert_eq!(store.failures(&key).unwrap(), Some((1, NOW + window)));
    store.clear_failures(&key).unwrap();
    assert_eq!(store.failures(&key).unwrap(), None);
    let stale = ThrottleKey::account("suite-7-stale");
    store
        .reserve_attempt(&stale, NOW - DAY, window, max)
        .unwrap();
    assert!(store.purge_failures(NOW - DAY + 1).unwrap() >= 1);
    assert_eq!(store.failures(&stale).unwrap(), None, "old counters purged");
    store.ping().expect("ping");
}

pub(super) fn revoking_everything_deletes_bumps_and_audits<S>(store: Arc<S>)
where
    S: TokenStore + StateStore + AuditLog + 'static,
{
    let jack = user(8, "jack");
    insert(&*store, &jack, (&hash(8, 1), &hash(8, 2)), NOW, None, 10);
    insert(&*store, &jack, (&hash(8, 3), &hash(8, 4)), NOW, None, 10);
    let stores = Stores {
        tokens: store.clone(),
        state: store.clone(),
        audit: store.clone(),
        users: Arc::new(NoUsers),
    };
    let n = stores
        .revoke_everything(
            &jack,
            NewAuditEvent {
                at: NOW,
                kind: AuditKind::TheftDetected,
                user_id: Some(&jack),
                ip: None,
                user_agent: None,
                detail: "suite",
            },
        )
        .unwrap();
    assert_eq!(n, 2);
    assert!(store.list_for_user(&jack).unwrap().is_empty());
    assert_eq!(store.auth_epoch(&jack).unwrap(), 1, "every session ends");
    let rows = AuditLog::list(&*store, Some("theft_detected"), Some(&jack), None, 10).unwrap();
    assert_eq!(rows.len(), 1, "with its audit row");
}

/// No users: the suite tests the crate's own stores only.
struct NoUsers;

impl crate::store::UserDirectory for NoUsers {
    fn find_by_username(
        &self,
        _: &str,
    ) -> Result<Option<crate::store::User>, crate::store::StoreError> {
        Ok(None)
    }
    fn find_by_id(
        &self,
        _: &UserId,
    ) -> Result<Option<crate::store::User>, crate::store::StoreError> {
        Ok(None)
    }
}

pub(super) fn the_audit_log_filters_pages_and_purges<S: AuditLog + ?Sized>(store: &S) {
    let (kate, liam) = (user(9, "kate"), user(9, "liam"));
    let event = |at, kind, user_id| NewAuditEvent {
        at,
        kind,
        user_id,
        ip: Some("198.51.100.4"),
        user_agent: Some("suite agent"),
        detail: "suite detail",
    };
    store
        .record(event(NOW, AuditKind::Logout, Some(&kate)))
        .unwrap();
    store
        .record_batch(&[
            event(NOW + 1, AuditKind::StepUp, Some(&kate)),
            event(NOW + 2, AuditKind::Logout, Some(&liam)),
            event(NOW - 400 * DAY, AuditKind::Logout, Some(&kate)),
        ])
        .unwrap();
    let kates = store.list(None, Some(&kate), None, 10).unwrap();
    let kinds: Vec<&str> = kates.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["step_up", "logout", "logout"], "newest first");
    let first = &kates[0];
    assert_eq!(first.user_id.as_ref(), Some(&kate));
    assert_eq!(
        (first.at, first.ip.as_deref(), first.user_agent.as_deref()),
        (NOW + 1, Some("198.51.100.4"), Some("suite agent"))
    );
    assert_eq!(first.detail, "suite detail");
    let logouts = store.list(Some("logout"), Some(&kate), None, 10).unwrap();
    assert_eq!(logouts.len(), 2, "by kind and user");
    let newest = &store.list(None, Some(&kate), None, 1).unwrap()[0];
    assert_eq!(newest.kind, "step_up");
    let older = store
        .list(None, Some(&kate), Some((newest.at, newest.id)), 10)
        .unwrap();
    let kinds: Vec<&str> = older.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["logout", "logout"],
        "the page before the last (at, id)"
    );
    assert!(store.purge_before(NOW - DAY).unwrap() >= 1);
    assert_eq!(
        store.list(None, Some(&kate), None, 10).unwrap().len(),
        2,
        "old rows purged"
    );
    assert_eq!(store.list(None, Some(&liam), None, 10).unwrap().len(), 1);
}

/// Every column of an audit row reads back as written, by `record` and by
/// `record_batch`, absent values as absent.
pub(super) fn audit_rows_read_back_as_written<S: AuditLog + ?Sized>(store: &S) {
    let mia = user(9, "mia");
    type Written<'a> = (
        i64,
        Option<&'a UserId>,
        Option<&'a str>,
        Option<&'a str>,
        &'a str,
    );
    let rows: [Written<'_>; 3] = [
        (NOW + 12, None, None, None, "nobody's"),
        (
            NOW + 11,
            Some(&mia),
            Some("192.0.2.2"),
            Some("agent two"),
            "batched",
        ),
        (
            NOW + 10,
            Some(&mia),
            Some("192.0.2.1"),
            Some("agent one"),
            "alone",
        ),
    ];
    fn event<'a>(&(at, user_id, ip, user_agent, detail): &Written<'a>) -> NewAuditEvent<'a> {
        let kind = AuditKind::SignInFailed;
        NewAuditEvent {
            at,
            kind,
            user_id,
            ip,
            user_agent,
            detail,
        }
    }
    store.record(event(&rows[2])).unwrap();
    store.record_batch(&[event(&rows[1])]).unwrap();
    store.record(event(&rows[0])).unwrap();
    let read: Vec<_> = store
        .list(Some("sign_in_failed"), None, None, 3)
        .unwrap()
        .into_iter()
        .map(|e| (e.at, e.user_id, e.ip, e.user_agent, e.detail))
        .collect();
    let owned = |s: Option<&str>| s.map(str::to_owned);
    let written: Vec<_> = rows
        .iter()
        .map(|&(at, user, ip, agent, detail)| {
            (
                at,
                user.cloned(),
                owned(ip),
                owned(agent),
                detail.to_owned(),
            )
        })
        .collect();
    assert_eq!(read, written, "newest first, each column as written");
}
