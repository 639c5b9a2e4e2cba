//! A clean exit: the remember-me layer and the pool close once nothing else
//! holds them (the server's workers have let go), so the queued audit rows
//! are written and no thread is left inside the database's client library
//! when the process exits. (Waiting for a connection attempt under way is a
//! unit test in `store::conn`; every `TestServer` also closes this way when
//! dropped, and fails its test if that does not work.)

mod common;

use std::time::{Duration, Instant};

use common::TestDb;
use rememberme::store::UserStore as _;
use rememberme::{Database, DieselStore, RememberMe, RememberMeConfig, Stores};

on_both_backends!(
    the_pool_closes_once_its_other_handles_are_gone,
    the_layer_closes_once_the_workers_let_go,
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
    store.find_by_username("nobody").unwrap(); // an idle connection to close

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
        Stores::from_one(DieselStore::new(database.clone())),
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
