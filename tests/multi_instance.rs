//! Two instances of the real binary behind one PostgreSQL database and one
//! session key: what one issues, the other honours.

mod common;

use std::time::Duration;

use common::instance::{cli, prepare, start, start_with};
use common::{Browser, TestDb};

const RM: &str = "__Host-remember_me";
const SESSION: &str = "__Host-session";

#[actix_web::test]
async fn two_instances_share_tokens_theft_detection_and_logout() {
    let Some(db) = TestDb::postgres() else { return };
    let (_dir, key_file) = prepare(&db);

    let a = start(&db, &key_file);
    let b = start(&db, &key_file);

    // Issued by A, accepted and rotated by B.
    let mut browser = Browser::new(&a.base);
    assert_eq!(
        browser
            .login("alice", "correct horse battery", true)
            .await
            .status,
        303
    );
    let issued = browser.cookie(RM).unwrap();
    let mut returning = Browser::new(&b.base);
    returning.set_cookie(RM, &issued);
    let home = returning.get("/").await;
    assert_eq!(home.status, 200, "B accepts A's cookie");
    assert!(home.body.contains("Signed in by remember-me"));
    let rotated = returning.cookie(RM).unwrap();
    assert_ne!(rotated, issued, "and rotates it");

    // The session made by B is read by A (one key).
    returning.base = a.base.clone();
    assert_eq!(returning.get("/").await.status, 200);

    // After the grace window, A ends the series of the pre-rotation cookie
    // (one rotation back: a lost response or a fork, issue 14).
    let mut thief = Browser::new(&a.base);
    thief.set_cookie(RM, &issued);
    std::thread::sleep(Duration::from_millis(2100)); // the grace window (1 s) must pass in real time
    let res = thief.get("/").await;
    assert_eq!(res.status, 303, "the replay signs nobody in");
    let listing = cli(&db, &["tokens", "list", "--user", "alice"], "");
    assert!(
        listing.contains("0 token(s)"),
        "the series is gone: {listing}"
    );
    returning.base = b.base.clone();
    assert_eq!(
        returning.get("/").await.status,
        303,
        "B ends the victim's session too"
    );

    // A logout on B is honoured by A.
    let mut browser = Browser::new(&a.base);
    browser.login("alice", "correct horse battery", true).await;
    let cookie = browser.cookie(RM).unwrap();
    browser.base = b.base.clone();
    let res = browser.logout().await;
    assert_eq!(res.status, 303);
    let mut replay = Browser::new(&a.base);
    replay.set_cookie(RM, &cookie);
    assert_eq!(
        replay.get("/").await.status,
        303,
        "A refuses the logged-out cookie"
    );
    assert!(
        browser.cookie(SESSION).is_none(),
        "the session cookie was dropped"
    );
    browser.base = a.base.clone();
    assert_eq!(browser.get("/").await.status, 303, "signed out on A too");

    // The admin CLI works on the shared database.
    let mut device = Browser::new(&b.base);
    device.login("alice", "correct horse battery", true).await;
    assert!(cli(&db, &["tokens", "list"], "").contains("1 token(s)"));
    let out = cli(&db, &["tokens", "revoke", "--user", "alice"], "");
    assert!(out.contains("1 token(s) revoked"), "{out}");
    assert_eq!(device.get("/").await.status, 303, "the open session ended");
}

/// Issue 13, finding 8: counters of unknown names lived in each process and
/// real accounts' in the database, so with two instances behind a balancer
/// a real account hit 429 after N failures and an unknown name after 2N.
/// Both kinds now live in the database: the same failures, spread over two
/// instances, throttle a real name and an unknown one alike.
#[actix_web::test]
async fn two_instances_throttle_real_and_unknown_usernames_alike() {
    let Some(db) = TestDb::postgres() else { return };
    let (_dir, key_file) = prepare(&db);
    let flags = [
        "--max-failed-logins",
        "3",
        "--ip-attempts-per-minute",
        "0",
        "--purge-interval-secs",
        "0",
    ];
    let a = start_with(&db, &key_file, &flags);
    let b = start_with(&db, &key_file, &flags);
    let mut answers = Vec::new();
    for name in ["alice", "ghost"] {
        // Alternating instances, as a balancer would: 2 failures on A, 1 on B.
        for base in [&a.base, &b.base, &a.base] {
            let status = Browser::new(base).login(name, "wrong", false).await.status;
            assert_eq!(status, 401, "{name}");
        }
        let mut seen = Vec::new();
        for base in [&a.base, &b.base] {
            let res = Browser::new(base).login(name, "wrong", false).await;
            seen.push((res.status, res.header("retry-after").is_some()));
        }
        answers.push(seen);
    }
    assert_eq!(answers[0], [(429, true), (429, true)], "alice on A and B");
    assert_eq!(answers[0], answers[1], "an unknown name answers the same");
}
