use super::*;

/// Starts a connection attempt that hangs (a "server" that accepts and
/// never answers: libpq waits in its start-up, on one of r2d2's
/// threads), calls `end` on the pool's only handle on another thread,
/// and checks that `end` returns only once the attempt has ended.
fn ends_only_after_the_attempt_under_way(end: fn(Database) -> bool) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "postgres://nobody@127.0.0.1:{}/none?sslmode=disable&gssencmode=disable\
         &connect_timeout=60",
        listener.local_addr().unwrap().port()
    );
    let db = Database::lazy(&url, 1, Duration::from_secs(2));
    let started = std::thread::scope(|s| {
        // The checkout gives up after its timeout; the attempt goes on.
        s.spawn(|| db.get().is_err());
        listener.accept().unwrap()
    });
    let (socket, _) = started;
    let (tx, ended) = std::sync::mpsc::channel();
    let ender = std::thread::spawn(move || tx.send(end(db)));
    assert!(
        ended.recv_timeout(Duration::from_millis(300)).is_err(),
        "the pool waits while the attempt runs"
    );
    drop(listener); // no second attempt can reach it
    drop(socket); // the attempt fails and ends
    assert_eq!(ended.recv_timeout(Duration::from_secs(5)), Ok(true));
    ender.join().unwrap().unwrap();
}

#[test]
fn a_connection_attempt_that_gets_no_answer_ends_by_itself() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "postgres://nobody@127.0.0.1:{}/none?sslmode=disable&gssencmode=disable",
        listener.local_addr().unwrap().port()
    );
    let db = Database::lazy(&url, 1, Duration::from_secs(1));
    let _silent = std::thread::scope(|s| {
        s.spawn(|| db.get().is_err());
        listener.accept().unwrap()
    });
    // The socket stays open and silent; libpq gives up after its
    // connect_timeout (2 s, its floor), so the pool can close.
    let started = std::time::Instant::now();
    assert!(db.close(Duration::from_secs(8)));
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[test]
fn the_connect_timeout_and_keepalives_are_set_unless_the_url_sets_them() {
    let url = |backend: Backend| match backend {
        Backend::Postgres(url) => url,
        Backend::Sqlite(_) => unreachable!(),
    };
    const KEEPALIVES: &str = "keepalives=1&keepalives_idle=10&keepalives_interval=5\
                              &keepalives_count=3&tcp_user_timeout=30000";
    let second = Duration::from_secs(1);
    assert_eq!(
        url(Backend::from_url("postgres://h/d").with_connect_timeout(second * 5)),
        format!("postgres://h/d?connect_timeout=5&{KEEPALIVES}")
    );
    assert_eq!(
        url(Backend::from_url("postgres://h/d?sslmode=require").with_connect_timeout(second / 2)),
        format!("postgres://h/d?sslmode=require&connect_timeout=2&{KEEPALIVES}")
    );
    assert_eq!(
        url(
            Backend::from_url("postgres://h/d?connect_timeout=30&tcp_user_timeout=1")
                .with_connect_timeout(second * 5)
        ),
        "postgres://h/d?connect_timeout=30&tcp_user_timeout=1&keepalives=1\
         &keepalives_idle=10&keepalives_interval=5&keepalives_count=3"
    );
    assert_eq!(
        Backend::from_url("x.db").with_connect_timeout(second),
        Backend::from_url("x.db")
    );
}

#[test]
fn closing_waits_for_a_connection_attempt_under_way() {
    ends_only_after_the_attempt_under_way(|db| db.close(Duration::from_secs(10)));
}

#[test]
fn dropping_the_last_handle_waits_for_a_connection_attempt_under_way() {
    ends_only_after_the_attempt_under_way(|db| {
        drop(db);
        true
    });
}

#[test]
fn urls_pick_the_backend_and_a_postgres_password_never_prints() {
    let pg = Backend::from_url("postgres://app:s3cret@db.example/app");
    assert!(matches!(pg, Backend::Postgres(_)));
    assert!(!format!("{pg:?}").contains("s3cret"));
    assert_eq!(
        Backend::from_url("sqlite://x.db").sqlite_path(),
        Some("x.db")
    );
    assert_eq!(
        Backend::from_url("data/x.db").sqlite_path(),
        Some("data/x.db")
    );
    assert!(matches!(
        Backend::from_url("postgresql://h/d"),
        Backend::Postgres(_)
    ));
}

#[test]
fn a_sqlite_writer_waits_for_the_lock_at_most_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.db");
    let db = Database::lazy(path.to_str().unwrap(), 2, Duration::from_millis(100));
    let held = db.write_lock().unwrap().expect("SQLite has a write lock");
    let other = db.clone();
    let (result, waited) = std::thread::spawn(move || {
        let start = std::time::Instant::now();
        let result = other.write_lock().map(|guard| guard.is_some());
        (result, start.elapsed())
    })
    .join()
    .unwrap();
    assert!(
        matches!(result, Err(crate::store::StoreError::Unavailable(_))),
        "{result:?}"
    );
    assert!(waited >= Duration::from_millis(100), "{waited:?}");
    drop(held);
    assert!(db.write_lock().unwrap().is_some(), "free again");
    // PostgreSQL has row locks and no process-wide writer lock.
    let pg = Database::lazy(
        "postgres://nobody@127.0.0.1:1/none",
        1,
        Duration::from_millis(10),
    );
    assert!(pg.write_lock().unwrap().is_none());
}
