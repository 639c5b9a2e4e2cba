//! A lock held elsewhere (another process's long transaction) delays the
//! sign-ins by cookie that need the database for a bounded time, then they
//! give up as unavailable: the visitor is served anonymously, keeps the
//! cookie, and is signed in by it once the lock is gone. On SQLite the lock
//! is the database's write lock; on PostgreSQL, the token rows' locks.

mod common;

use std::time::{Duration, Instant};

use common::{TestDb, TestServer};
use diesel::Connection as _;
use diesel::connection::SimpleConnection as _;

const RM: &str = "__Host-remember_me";

on_both_backends!(
    a_held_lock_delays_cookie_sign_ins_for_a_bounded_time_only,
    a_stuck_batch_holds_the_sign_ins_queued_behind_it_no_longer_than_the_timeout,
);

/// A connection of its own (as another process) that holds the lock the
/// rotations need, until `release`.
enum Holder {
    Sqlite(diesel::SqliteConnection),
    Postgres(diesel::PgConnection),
}

impl Holder {
    fn take(db: &TestDb) -> Self {
        match db.sqlite_path() {
            Some(path) => {
                let mut conn = diesel::SqliteConnection::establish(path.to_str().unwrap()).unwrap();
                conn.batch_execute("BEGIN IMMEDIATE").unwrap();
                Holder::Sqlite(conn)
            }
            None => {
                let mut conn = diesel::PgConnection::establish(&db.url).unwrap();
                conn.batch_execute("BEGIN; SELECT 1 FROM remember_tokens FOR UPDATE")
                    .unwrap();
                Holder::Postgres(conn)
            }
        }
    }

    fn release(self) {
        match self {
            Holder::Sqlite(mut conn) => conn.batch_execute("ROLLBACK").unwrap(),
            Holder::Postgres(mut conn) => conn.batch_execute("ROLLBACK").unwrap(),
        }
    }
}

async fn a_held_lock_delays_cookie_sign_ins_for_a_bounded_time_only(db: TestDb) {
    // The test server waits 1 s for a connection, and so for a lock.
    let server = TestServer::start(db);
    server.add_user("alice", "correct horse", false);
    let mut browser = server.browser();
    browser.login("alice", "correct horse", true).await;
    browser.drop_cookie("__Host-session");
    let cookie = browser.cookie(RM).expect("remember-me cookie");

    let holder = Holder::take(&server.db);
    let started = Instant::now();
    let page = browser.get("/").await;
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(8),
        "answered after {waited:?}: bounded by the lock timeout"
    );
    assert!(
        !page.body.contains("Signed in as"),
        "not signed in while the lock is held"
    );
    assert!(
        page.set_cookie(RM).is_none(),
        "the cookie is kept: it may well be valid"
    );
    assert_eq!(browser.cookie(RM).as_deref(), Some(cookie.as_str()));

    holder.release();
    let page = browser.get("/").await;
    assert!(
        page.body.contains("Signed in as"),
        "signed in by the same cookie once the lock is gone"
    );
    assert!(page.set_cookie(RM).is_some(), "and rotated");
}

/// A rotation batch stuck in the database (a hung connection, say) holds
/// the sign-ins by cookie queued behind it for twice the database's
/// timeout (here 300 ms), not for the layer's own 5 s: they give up unwritten (a
/// 503 on a page that needs a sign-in) and keep their cookies, which sign
/// in once the database answers again.
async fn a_stuck_batch_holds_the_sign_ins_queued_behind_it_no_longer_than_the_timeout(db: TestDb) {
    use actix_web::{App, HttpResponse, test, web};
    use rememberme::{CurrentUser, RememberMe, RememberMeConfig};
    let (database, stores, calls, alice) = counted_with_timeout(&db, Duration::from_millis(300));
    let config = RememberMeConfig::builder().build();
    let layer = RememberMe::new(stores.clone(), config.clone());
    let app = test::init_service(
        App::new()
            .route(
                "/private",
                web::get().to(|_: CurrentUser| async { HttpResponse::Ok().finish() }),
            )
            .wrap(
                layer
                    .clone()
                    .with_session(actix_web::cookie::Key::generate()),
            ),
    )
    .await;
    let cookie = || rememberme::testing::remember_me_cookie(&stores, &config, &alice).unwrap();
    let (first, second) = (cookie(), cookie());
    let request = |cookie: &actix_web::cookie::Cookie<'_>| {
        test::TestRequest::get()
            .uri("/private")
            .insert_header(("cookie", format!("{RM}={}", cookie.value())))
            .to_request()
    };

    let (stuck, release) = calls.hang("find_and_rotate_all");
    let behind = async {
        while !stuck.load(std::sync::atomic::Ordering::SeqCst) {
            actix_web::rt::time::sleep(Duration::from_millis(5)).await;
        }
        let started = Instant::now();
        let res = test::call_service(&app, request(&second)).await;
        let waited = started.elapsed();
        release.send(()).unwrap();
        (res.status().as_u16(), common::cookie_of(&res, RM), waited)
    };
    let (held, (status, set, waited)) =
        futures_util::future::join(test::call_service(&app, request(&first)), behind).await;
    assert!(
        waited < Duration::from_millis(1500),
        "the sign-in behind the stuck batch answered after {waited:?}"
    );
    assert_eq!(status, 503, "given up as unavailable");
    assert!(set.is_none(), "its cookie is kept");
    assert_eq!(held.status().as_u16(), 200, "the stuck batch's own sign-in");

    // Nothing of the one that gave up was written: its cookie signs in.
    let res = test::call_service(&app, request(&second)).await;
    assert_eq!(res.status().as_u16(), 200);
    assert!(common::cookie_of(&res, RM).is_some(), "and rotates");
    drop((app, held, res));
    common::shut_down(layer, stores, database);
}

/// A pool on `db` that waits `timeout` for a connection, the stores on it
/// with the token store's calls counted (and trapped), and alice.
fn counted_with_timeout(
    db: &TestDb,
    timeout: Duration,
) -> (
    rememberme::Database,
    rememberme::Stores,
    std::sync::Arc<common::CallCounts>,
    rememberme::store::UserId,
) {
    let database = rememberme::Database::builder(&db.url)
        .max_size(4)
        .timeout(timeout)
        .connect()
        .unwrap();
    let alice = common::users_on(&database)
        .create("alice", "alice-password", false)
        .unwrap();
    let (store, calls) = common::CountingStore::new(rememberme::DieselStore::new(database.clone()));
    let stores = rememberme::Stores::new(store, common::users_on(&database));
    (database, stores, calls, alice)
}
