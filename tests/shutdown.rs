//! A clean exit: the remember-me layer and the pool close once nothing else
//! holds them (the server's workers have let go), so the queued audit rows
//! are written and no thread is left inside the database's client library
//! when the process exits; the real binary does so on SIGTERM. (Waiting
//! for a connection attempt under way is a unit test in `store::conn`;
//! every `TestServer` also closes this way when dropped, and fails its test
//! if that does not work.)

mod common;

use std::time::{Duration, Instant};

use common::instance::{prepare, start};
use common::{Browser, TestDb};
use rememberme::store::{AuditLog as _, StateStore as _};
use rememberme::{Database, DieselStore, RememberMe, RememberMeConfig};

on_both_backends!(
    the_pool_closes_once_its_other_handles_are_gone,
    the_layer_closes_once_the_workers_let_go,
    the_binary_exits_cleanly_on_sigterm_after_a_cookie_sign_in,
);

/// Drops `handle` on another thread after `after`.
fn drop_later<T: Send + 'static>(handle: T, after: Duration) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        std::thread::sleep(after);
        drop(handle);
    })
}

async fn the_pool_closes_once_its_other_handles_are_gone(db: TestDb) {
    let database = Database::connect(&db.url, 4).expect("test database");
    let store = DieselStore::new(database.clone());
    store.auth_epoch(&"nobody".into()).unwrap(); // an idle connection to close

    let started = Instant::now();
    assert!(
        !database.clone().close(Duration::from_millis(200)),
        "not closed while a store still uses it"
    );
    assert!(started.elapsed() >= Duration::from_millis(200));

    let later = drop_later(store, Duration::from_millis(300));
    let started = Instant::now();
    assert!(
        database.close(Duration::from_secs(10)),
        "closed once it is gone"
    );
    assert!(started.elapsed() >= Duration::from_millis(250));
    later.join().unwrap();
}

async fn the_layer_closes_once_the_workers_let_go(db: TestDb) {
    let database = Database::connect(&db.url, 4).expect("test database");
    let layer = RememberMe::new(
        common::stores_on(&database),
        RememberMeConfig::builder().build(),
    );
    let worker_copy = layer.clone(); // as an actix worker's app holds it

    assert!(
        !layer.clone().close(Duration::from_millis(200)),
        "not closed while a worker holds it"
    );
    let later = drop_later(worker_copy, Duration::from_millis(300));
    let started = Instant::now();
    assert!(
        layer.close(Duration::from_secs(10)),
        "closed once it is let go"
    );
    assert!(started.elapsed() >= Duration::from_millis(250));
    later.join().unwrap();
    // The layer's stores and threads are gone with it: the pool is free.
    assert!(database.close(Duration::from_secs(1)));
}

async fn the_binary_exits_cleanly_on_sigterm_after_a_cookie_sign_in(db: TestDb) {
    let (_dir, key_file) = prepare(&db);
    let mut server = start(&db, &key_file);

    // Open connections, a rotation and a queued audit row to end with.
    let mut browser = Browser::new(&server.base);
    browser.login("alice", "correct horse battery", true).await;
    browser.drop_cookie("__Host-session");
    let page = browser.get("/").await;
    assert!(page.body.contains("Signed in by remember-me"));

    let status = server
        .terminate(Duration::from_secs(30))
        .expect("it exits after SIGTERM");
    let log = server.log.lock().unwrap().join("\n");
    assert!(status.success(), "{status:?}\n{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert!(!log.contains("shut down before all work ended"), "{log}");
    assert!(!log.contains("still busy"), "{log}");

    let store = DieselStore::new(Database::connect(&db.url, 1).expect("test database"));
    let kinds: Vec<String> = store
        .list(None, None, None, 100)
        .unwrap()
        .into_iter()
        .map(|event| event.kind)
        .collect();
    assert!(
        kinds.iter().any(|kind| kind == "remember_me_sign_in"),
        "{kinds:?}"
    );
}
