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

/// A recorder of the counters, in this test process (the test above reads
/// the demo's own over HTTP): `name{label=value,…}` to its value.
mod counted {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};

    use metrics::{Counter, CounterFn, Gauge, Histogram, Key, KeyName, Metadata, SharedString};

    static COUNTS: OnceLock<Mutex<HashMap<String, u64>>> = OnceLock::new();

    fn counts() -> &'static Mutex<HashMap<String, u64>> {
        COUNTS.get_or_init(Default::default)
    }

    struct Count(String);

    impl CounterFn for Count {
        fn increment(&self, by: u64) {
            *counts().lock().unwrap().entry(self.0.clone()).or_default() += by;
        }
        fn absolute(&self, value: u64) {
            counts().lock().unwrap().insert(self.0.clone(), value);
        }
    }

    struct Recorder;

    impl metrics::Recorder for Recorder {
        fn describe_counter(&self, _: KeyName, _: Option<metrics::Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<metrics::Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<metrics::Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            Counter::from_arc(Arc::new(Count(name)))
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    /// Installs the recorder (once a process).
    pub fn install() {
        static ONCE: OnceLock<()> = OnceLock::new();
        ONCE.get_or_init(|| metrics::set_global_recorder(Recorder).expect("the only recorder"));
    }

    /// The counter `name` with its labels sorted, as rendered above.
    pub fn value(name: &str) -> u64 {
        counts().lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

/// From a review: a bearer's step-up refused by the check after its insert
/// (its device revoked meanwhile) answered 403 but was counted a success:
/// the flow's end was counted before that check.
#[actix_web::test]
async fn a_step_up_refused_after_its_insert_counts_as_refused() {
    use serde_json::json;
    counted::install();
    let step_ups = |outcome: &str| {
        counted::value(&format!(
            "rememberme_sign_ins_total{{method=api_step_up,outcome={outcome}}}"
        ))
    };
    let (server, calls) = common::TestServer::start_counting(TestDb::sqlite(), |b| b);
    let alice = server.add_user("alice", "correct horse", false);
    let app = server.browser();
    let signed_in = json!({"username": "alice", "password": "correct horse",
        "remember_me": true, "device_key": "phone"});
    let (status, _, body) = app
        .api("POST", "/api/v1/login", None, Some(&signed_in.to_string()))
        .await;
    assert_eq!(status, 200, "{body}");
    let bearer = body["access_token"].as_str().unwrap().to_owned();
    let (stores, user) = (server.stores().clone(), alice.clone());
    calls.trap("insert", move || {
        let [device] = &stores.tokens.list_for_user(&user)?[..] else {
            panic!("one token: the device's")
        };
        stores
            .tokens
            .delete_by_id(device.id, Some(&user))
            .map(|_| ())
    });
    let mint = json!({"remember_me": true, "device_key": "phone"}).to_string();
    let (status, _, _) = app
        .api("POST", "/api/v1/login", Some(&bearer), Some(&mint))
        .await;
    assert_eq!(status, 403);
    assert_eq!((step_ups("success"), step_ups("refused")), (0, 1));
}

/// The purge counts the rows it deleted, by what they were, however it is
/// run (here `Stores::purge`, beneath the layer's task and the CLI).
#[test]
fn the_purge_counts_what_it_deleted() {
    counted::install();
    let purged = |what: &str| counted::value(&format!("rememberme_purged_total{{what={what}}}"));
    let (tokens, counters) = (purged("tokens"), purged("failure_counters"));
    let db = TestDb::sqlite();
    let database = rememberme::Database::connect(&db.url, 1).unwrap();
    let stores = common::stores_on(&database);
    let now = common::insert_expired_token(&stores, "someone");
    let key = rememberme::store::ThrottleKey::account("someone");
    let stale = stores
        .state
        .reserve_attempt(&key, now - 2 * 86_400, 3600, 5);
    stale.unwrap();

    let hour = std::time::Duration::from_secs(3600);
    let done = stores.purge(now, hour, None).unwrap();
    assert_eq!((done.tokens, done.failure_counters), (1, 1), "{done:?}");
    assert_eq!(purged("tokens") - tokens, 1);
    assert_eq!(purged("failure_counters") - counters, 1);
}
