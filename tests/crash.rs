//! Issue 14 with the real binary under remember-me load: a server killed
//! with SIGKILL mid-load (again and again) and restarted loses no cookie, no
//! committed row and no sign-in's audit row; a rolling restart of one of two
//! instances loses no request the survivor could answer.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::instance::{Instance, cli, prepare, start_with};
use common::{Browser, TestDb};

const RM: &str = "__Host-remember_me";
const SESSION: &str = "__Host-session";
const PASSWORD: &str = "correct horse battery";

/// A grace window of 2 s (a restart takes a few hundred milliseconds), the
/// session checked on every request, no background work, no per-IP limit.
const GRACE: Duration = Duration::from_secs(2);
const FLAGS: [&str; 8] = [
    "--rotation-grace-secs",
    "2",
    "--epoch-check-secs",
    "0",
    "--purge-interval-secs",
    "0",
    "--ip-attempts-per-minute",
    "0",
];

on_both_backends!(sigkill_under_remember_me_load_loses_no_cookie_row_or_audit_row);

/// How many times the server is killed.
const ROUNDS: usize = 4;

/// `n` browsers of alice, each signed in with "Keep me logged in" at `base`.
async fn remembered_browsers(base: &str, n: usize) -> Vec<Browser> {
    let mut browsers = Vec::new();
    for _ in 0..n {
        let mut browser = Browser::new(base);
        let res = browser.login("alice", PASSWORD, true).await;
        assert_eq!(res.status, 303, "{}", res.body);
        browsers.push(browser);
    }
    browsers
}

/// Signs `browser` in by its cookie alone, again and again, until a request
/// gets no answer or `until` passes. Every answer must be a sign-in (200):
/// a client holding the last cookie it received is never a thief. Returns
/// how many sign-ins it got.
async fn reauthenticate_until_no_answer(browser: &mut Browser, until: Instant) -> usize {
    let mut signed_in = 0;
    while Instant::now() < until {
        browser.drop_cookie(SESSION);
        match browser.try_get("/").await {
            Ok(page) => {
                assert_eq!(
                    page.status, 200,
                    "signed in by its last cookie: {}",
                    page.body
                );
                signed_in += 1;
            }
            Err(_) => break, // the server is gone
        }
    }
    signed_in
}

fn audit_count(db: &TestDb, kind: &str) -> usize {
    let store = rememberme::DieselStore::new(rememberme::Database::connect(&db.url, 1).unwrap());
    let n = rememberme::store::AuditLog::list(&store, Some(kind), None, None, i64::MAX)
        .unwrap()
        .len();
    let database = store.database().clone();
    drop(store);
    assert!(database.close(Duration::from_secs(5)));
    n
}

async fn sigkill_under_remember_me_load_loses_no_cookie_row_or_audit_row(db: TestDb) {
    let (_dir, key_file) = prepare(&db);
    let mut server = start_with(&db, &key_file, &FLAGS);
    let mut browsers = remembered_browsers(&server.base, 6).await;
    let mut signed_in = 0;
    for round in 0..ROUNDS as u64 {
        // The server dies mid-load, at a different moment each round.
        let mut doomed: Instance = server;
        let killer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150 + 110 * round));
            doomed.kill();
        });
        let until = Instant::now() + Duration::from_secs(20);
        let counts = futures_util::future::join_all(
            browsers
                .iter_mut()
                .map(|browser| reauthenticate_until_no_answer(browser, until)),
        )
        .await;
        killer.join().unwrap();
        assert!(counts.iter().all(|&n| n > 0), "the load ran: {counts:?}");
        signed_in += counts.iter().sum::<usize>();
        server = start_with(&db, &key_file, &FLAGS);
        for browser in &mut browsers {
            browser.base = server.base.clone();
        }
    }

    // Each browser presents the last cookie it received, right after the
    // restart: the current token, or (a response the kill cut off) the one
    // before, which the grace window takes and answers with the current
    // one. Then again after the window: every browser now holds the newest
    // token the database has. All signed in, nobody taken for a thief.
    for pass in 0..2 {
        if pass == 1 {
            std::thread::sleep(GRACE + Duration::from_millis(1100));
        }
        for browser in &mut browsers {
            browser.drop_cookie(SESSION);
            let page = browser.get("/").await;
            assert_eq!(page.status, 200, "pass {pass}: {}", page.body);
            assert!(page.body.contains("Signed in by remember-me"));
            assert!(browser.cookie(RM).is_some());
            signed_in += 1;
        }
    }
    drop(server);
    let listing = cli(&db, &["tokens", "list", "--user", "alice"], "");
    assert!(
        listing.contains(&format!("{} token(s)", browsers.len())),
        "no committed row lost, none added: {listing}"
    );
    assert_eq!(audit_count(&db, "theft_detected"), 0);
    assert_eq!(audit_count(&db, "possible_theft"), 0);
    // Every sign-in a client saw committed its audit row before its answer
    // (with its rotation, or at once in the grace window): no gap.
    // And no more than one row per sign-in besides those a kill cut off
    // before their answer (at most one in flight per browser and kill).
    let rows = audit_count(&db, "remember_me_sign_in");
    let cut_off = browsers.len() * ROUNDS;
    assert!(
        (signed_in..=signed_in + cut_off).contains(&rows),
        "{rows} audit rows for {signed_in} sign-ins answered"
    );
}

/// Two instances on one PostgreSQL, one session key, remember-me load on
/// both; one is stopped as a service manager does (SIGTERM) and started
/// again. Requests to the stopping instance may fail to connect, and only
/// that: no request gets an error answer, every request to the survivor is
/// answered, and nobody is taken for a thief.
#[actix_web::test]
async fn a_rolling_restart_loses_no_request_the_survivor_could_answer() {
    let Some(db) = TestDb::postgres() else { return };
    let (_dir, key_file) = prepare(&db);
    let a = start_with(&db, &key_file, &FLAGS);
    let b = start_with(&db, &key_file, &FLAGS);
    let a_base = Arc::new(Mutex::new(a.base.clone()));
    let mut browsers = remembered_browsers(&b.base, 6).await;

    let restarter = {
        let (db_url, key_file, a_base) = (db.url.clone(), key_file.clone(), a_base.clone());
        let mut a = a;
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(400));
            let status = a.terminate(Duration::from_secs(20)).expect("A stops");
            assert!(status.success(), "a clean exit: {status:?}");
            std::thread::sleep(Duration::from_millis(300));
            let again = start_with(&TestDb::url_only(&db_url), &key_file, &FLAGS);
            *a_base.lock().unwrap() = again.base.clone();
            std::thread::sleep(Duration::from_millis(600));
            again
        })
    };
    let until = Instant::now() + Duration::from_millis(1800);
    let outcomes =
        futures_util::future::join_all(browsers.iter_mut().enumerate().map(|(i, browser)| {
            let (a_base, b_base) = (a_base.clone(), b.base.clone());
            async move {
                let (mut to_b, mut to_a, mut refused) = (0, 0, 0);
                let mut turn = i;
                while Instant::now() < until {
                    turn += 1;
                    let on_b = turn % 2 == 0;
                    browser.base = if on_b {
                        b_base.clone()
                    } else {
                        a_base.lock().unwrap().clone()
                    };
                    browser.drop_cookie(SESSION);
                    match browser.try_get("/").await {
                        Ok(page) => {
                            assert_eq!(page.status, 200, "on {}: {}", browser.base, page.body);
                            if on_b { to_b += 1 } else { to_a += 1 }
                        }
                        Err(error) => {
                            assert!(!on_b, "the survivor answers every request: {error}");
                            refused += 1;
                            actix_rt::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                (to_b, to_a, refused)
            }
        }))
        .await;
    let a = restarter.join().unwrap();
    assert!(
        outcomes.iter().all(|&(to_b, to_a, _)| to_b > 0 && to_a > 0),
        "both instances served: {outcomes:?}"
    );
    for browser in &mut browsers {
        browser.base = a.base.clone();
        browser.drop_cookie(SESSION);
        assert_eq!(browser.get("/").await.status, 200, "the last cookie works");
    }
    drop((a, b));
    assert_eq!(audit_count(&db, "theft_detected"), 0);
    assert_eq!(audit_count(&db, "possible_theft"), 0);
}
