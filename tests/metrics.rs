//! Operations (issue 16): the demo serves the crate's metrics at
//! `GET /metrics` in Prometheus text with `--metrics true`, and not without.
//! Driven over HTTP against the real binary, on both backends: a password
//! sign-in, a wrong password, a sign-in by cookie (a rotation), a parallel
//! request in the grace window, and a replayed token (theft) each move
//! their counter; the store's latency and queue are there.

mod common;

use common::instance::{prepare, start_with};
use common::{Browser, TestDb};

const RM: &str = "__Host-remember_me";

/// The value of the sample `name` (with its labels, as rendered), if any.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|line| line.split_once(' ').is_some_and(|(key, _)| key == name))
        .and_then(|line| line.rsplit_once(' '))
        .and_then(|(_, value)| value.parse().ok())
}

async fn the_demo_serves_its_metrics_when_asked(db: TestDb) {
    let (_dir, key_file) = prepare(&db);
    let flags = ["--rotation-grace-secs", "60", "--purge-interval-secs", "0"];
    let off = start_with(&db, &key_file, &flags);
    assert_eq!(
        Browser::new(&off.base).get("/metrics").await.status,
        404,
        "off by default"
    );
    drop(off);
    let on = start_with(
        &db,
        &key_file,
        &[&flags[..], &["--metrics", "true"]].concat(),
    );

    let mut alice = Browser::new(&on.base);
    assert_eq!(
        alice.login("alice", "wrong password", false).await.status,
        401
    );
    assert_eq!(
        alice
            .login("alice", "correct horse battery", true)
            .await
            .status,
        303
    );
    let issued = alice.cookie(RM).unwrap();
    // Back with the cookie only: a sign-in by cookie, its token rotated.
    let mut returning = Browser::new(&on.base);
    returning.set_cookie(RM, &issued);
    assert_eq!(returning.get("/").await.status, 200);
    // A parallel request of that page with the token just replaced.
    let mut parallel = Browser::new(&on.base);
    parallel.set_cookie(RM, &issued);
    assert_eq!(parallel.get("/").await.status, 200);
    // Back again (a new session): its second rotation; then the first
    // token, now two rotations back, is theft.
    returning.drop_cookie("__Host-session");
    assert_eq!(returning.get("/").await.status, 200, "a second rotation");
    let mut thief = Browser::new(&on.base);
    thief.set_cookie(RM, &issued);
    assert_eq!(thief.get("/").await.status, 303);

    let page = Browser::new(&on.base).get("/metrics").await;
    assert_eq!(page.status, 200);
    let text = &page.body;
    let count = |name: &str| sample(text, name).unwrap_or_else(|| panic!("no {name}:\n{text}"));
    assert_eq!(
        count("rememberme_sign_ins_total{method=\"password\",outcome=\"success\"}"),
        1.0
    );
    assert_eq!(
        count("rememberme_sign_ins_total{method=\"password\",outcome=\"invalid\"}"),
        1.0
    );
    assert_eq!(
        count("rememberme_sign_ins_total{method=\"remember_me\",outcome=\"success\"}"),
        3.0,
        "two rotations and one grace acceptance"
    );
    assert_eq!(count("rememberme_rotations_total"), 2.0);
    assert_eq!(count("rememberme_grace_acceptances_total"), 1.0);
    assert_eq!(count("rememberme_thefts_total{kind=\"certain\"}"), 1.0);
    assert!(count("rememberme_store_seconds_count") >= 3.0, "{text}");
    assert!(
        text.contains("# HELP rememberme_sign_ins_total"),
        "described: {text}"
    );
    assert!(text.contains("rememberme_store_queue_depth"), "{text}");
    // Four sign-ins by cookie (returning twice, parallel, thief) went
    // through the group commit, in one batch or more.
    assert!(
        count("rememberme_rotation_batch_size_count") >= 1.0,
        "{text}"
    );
    assert_eq!(count("rememberme_rotation_batch_size_sum"), 4.0, "{text}");
    assert!(
        count("rememberme_rotation_batch_seconds_count") >= 1.0,
        "{text}"
    );
    // Each waited for its rotation without a thread, then for its batch.
    assert_eq!(
        count("rememberme_rotation_wait_seconds_count"),
        4.0,
        "{text}"
    );
    assert!(!text.contains(&issued), "no secret in the metrics");
}

on_both_backends!(the_demo_serves_its_metrics_when_asked);
