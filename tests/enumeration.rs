//! Argon2 accounting: no user enumeration, and bounded concurrency.
//!
//! No user enumeration: an unknown username costs the same Argon2 work as a
//! wrong password and gets the same answer. Alone in its test binary because
//! the verification counter is process-wide.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};

use diesel::connection::InstrumentationEvent;
use rememberme::flow::argon2_verifications;

use common::{TestDb, TestServer};

/// The counters are process-wide: the tests of this file take turns.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `#[actix_web::test] async fn NAME()`: `TEST` on SQLite, then on
/// PostgreSQL, holding [`SERIAL`] (the counters are process-wide).
macro_rules! serially_on_both_backends {
    ($($name:ident => $test:ident),* $(,)?) => {$(
        #[actix_web::test]
        async fn $name() {
            let _serial = SERIAL.lock().await;
            $test(TestDb::sqlite()).await;
            if let Some(db) = TestDb::postgres() {
                $test(db).await;
            }
        }
    )*};
}

serially_on_both_backends!(
    unknown_users_cost_the_same_argon2_work_on_both_backends => unknown_users_cost_one_verification_like_wrong_passwords,
    the_signed_in_hot_path_touches_neither_database_nor_argon2_on_both_backends => a_signed_in_request_makes_no_store_call_and_no_argon2_call,
    a_re_authentication_costs_one_read_and_one_write_on_both_backends => a_re_authentication_is_one_read_and_one_write,
    an_unknown_name_runs_the_statements_of_a_wrong_password_on_both_backends => an_unknown_name_runs_the_statements_of_a_wrong_password,
    a_throttled_attempt_costs_no_argon2_work_on_both_backends => a_throttled_attempt_costs_no_argon2_work,
    a_directory_refusing_the_placeholder_id_tells_nothing_on_both_backends => a_directory_refusing_the_placeholder_id_tells_nothing,
);

async fn unknown_users_cost_one_verification_like_wrong_passwords(db: TestDb) {
    let server = TestServer::start(db);
    server.add_user("alice", "correct horse", false);
    let mut browser = server.browser();
    let mut answers = Vec::new();
    for user in ["alice", "nobody-by-this-name"] {
        let before = argon2_verifications();
        let res = browser.login(user, "wrong password", false).await;
        assert_eq!(
            argon2_verifications() - before,
            1,
            "one Argon2 verification for {user}"
        );
        let body = res.body.replace(user, "USER").replace(&res.csrf(), "CSRF");
        answers.push((res.status, body));
    }
    assert_eq!(answers[0].0, 401);
    assert_eq!(answers[0], answers[1], "same status and page");
}

#[actix_web::test]
async fn a_sign_in_storm_runs_at_most_the_configured_number_of_argon2_checks_at_once() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start_with(TestDb::sqlite(), |b| {
        b.password_concurrency(2).ip_attempts_per_minute(0)
    });
    server.add_user("alice", "correct horse", false);
    let storm = (0..12).map(|_| {
        let mut browser = server.browser();
        async move { browser.login("alice", "correct horse", false).await.status }
    });
    let statuses = futures_util::future::join_all(storm).await;
    assert!(statuses.iter().all(|s| *s == 303), "{statuses:?}");
    let peak = rememberme::flow::argon2_peak_concurrency();
    assert!((1..=2).contains(&peak), "peak concurrency {peak}");
}

/// Issue 7's hot path: with a valid session, a request makes no store call
/// and no Argon2 call.
async fn a_signed_in_request_makes_no_store_call_and_no_argon2_call(db: TestDb) {
    let (server, counts) = TestServer::start_counting(db, |b| {
        b.epoch_check_interval(std::time::Duration::from_secs(60))
    });
    server.add_user("alice", "correct horse", false);
    let mut browser = server.browser();
    browser.login("alice", "correct horse", true).await;
    let (calls, verifications) = (counts.total(), argon2_verifications());
    for _ in 0..50 {
        assert_eq!(browser.get("/").await.status, 200);
    }
    assert_eq!(counts.total(), calls, "no store call");
    assert_eq!(argon2_verifications(), verifications, "no Argon2 call");
}

/// Whether [`record_statements`]'s instrumentation keeps what runs now.
static RECORDING: AtomicBool = AtomicBool::new(false);
/// The SQL of every statement run while [`RECORDING`] is on, any connection.
static STATEMENTS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Installs (once) Diesel instrumentation on every connection opened from
/// now on that records each statement's SQL while [`RECORDING`] is on.
fn record_statements() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        diesel::connection::set_default_instrumentation(|| {
            Some(Box::new(|event: InstrumentationEvent<'_>| {
                if let InstrumentationEvent::StartQuery { query, .. } = event
                    && RECORDING.load(Ordering::SeqCst)
                {
                    STATEMENTS.lock().unwrap().push(query.to_string());
                }
            }))
        })
        .expect("instrumentation installed");
    });
}

/// Issue 7's re-authentication: a remember-me sign-in reads the token with
/// its owner and rotates it by compare-and-swap through one store call
/// (`find_and_rotate_all`, in a batch): on PostgreSQL one statement, so one round trip; on
/// SQLite, in-process, a read and two writes in one transaction. The audit
/// row is written with the rotation (issue 14: a committed rotation always
/// has its row), nearly free in the batch's commit. A password
/// sign-in finds the user by name, reads the user's epoch, then the user
/// (the hash it checks) again by id (so that a password change landing
/// meanwhile still ends the session: the epoch is read before the hash),
/// reserves a check on its failure counter (so parallel guesses cannot
/// outrun the limit) and clears it.
async fn a_re_authentication_is_one_read_and_one_write(db: TestDb) {
    record_statements();
    let postgres = db.sqlite_path().is_none();
    let (server, counts) = TestServer::start_counting(db, |b| {
        b.epoch_check_interval(std::time::Duration::from_secs(60))
    });
    server.add_user("alice", "correct horse", false);
    let mut browser = server.browser();
    counts.take_log();
    browser.login("alice", "correct horse", false).await;
    let login: Vec<_> = counts
        .take_log()
        .into_iter()
        .filter(|c| *c != "record")
        .collect();
    // The failure counter is reserved before any Argon2 work (throttling)
    // and cleared by the right password. An unknown name makes the same
    // calls before Argon2 (and then no clearing: it fails).
    let mut stranger = server.browser();
    stranger
        .login("nobody-by-this-name", "correct horse", false)
        .await;
    let unknown: Vec<_> = counts
        .take_log()
        .into_iter()
        .filter(|c| *c != "record")
        .collect();
    assert_eq!(
        unknown,
        [
            "find_by_username",
            "auth_epoch",
            "find_by_id",
            "reserve_attempt"
        ],
        "unknown name: {unknown:?}"
    );
    assert_eq!(
        login,
        [
            "find_by_username",
            "auth_epoch",
            "find_by_id",
            "reserve_attempt",
            "clear_failures",
        ],
        "password sign-in: {login:?}"
    );

    let mut browser = server.browser();
    browser.login("alice", "correct horse", true).await;
    browser.drop_cookie("__Host-session");
    counts.take_log();
    STATEMENTS.lock().unwrap().clear();
    RECORDING.store(true, Ordering::SeqCst);
    let page = browser.get("/").await;
    RECORDING.store(false, Ordering::SeqCst);
    assert_eq!(page.status, 200);
    assert!(page.set_cookie("__Host-remember_me").is_some(), "rotated");
    let statements = std::mem::take(&mut *STATEMENTS.lock().unwrap());
    // The crate's data statements: not a new connection's PRAGMA or SET,
    // nor the app's users table (read once, by the directory).
    let token_statements: Vec<_> = statements
        .iter()
        .filter(|sql| {
            sql.contains("remember_tokens")
                || sql.contains("user_state")
                || sql.contains("audit_events")
        })
        .collect();
    let directory: Vec<_> = statements
        .iter()
        .filter(|sql| sql.contains("`users`") || sql.contains("\"users\""))
        .collect();
    assert_eq!(
        directory.len(),
        1,
        "the app's user, read once: {directory:#?}"
    );
    if postgres {
        assert_eq!(token_statements.len(), 1, "{token_statements:#?}");
        let sql = &token_statements[0];
        assert!(
            sql.contains("UPDATE remember_tokens")
                && sql.contains("JOIN")
                && sql.contains("INSERT INTO audit_events"),
            "lookup, rotation and audit row in one statement: {sql}"
        );
    } else {
        assert_eq!(token_statements.len(), 3, "{token_statements:#?}");
        assert!(token_statements[0].starts_with("SELECT"));
        assert!(token_statements[1].starts_with("UPDATE remember_tokens"));
        assert!(token_statements[2].starts_with("INSERT INTO audit_events"));
    }
    assert!(server.wait_for_audit("remember_me_sign_in").await);
    let calls: Vec<_> = counts
        .take_log()
        .into_iter()
        .filter(|c| *c != "list") // wait_for_audit's reads
        .collect();
    assert_eq!(
        calls,
        ["find_and_rotate_all", "find_by_ids"],
        "one lookup-and-rotation with its audit row, then the app's user, \
         read for the whole batch"
    );
}

/// From a review: an unknown name made the directory calls a wrong
/// password makes, but the users table answered the placeholder id of an
/// unknown name without a query, so a known name cost one statement more
/// before Argon2 (on PostgreSQL over a network, a round trip an attacker
/// could average out to tell which names exist). A failed sign-in now runs
/// the same statements either way (their SQL, binds left out; a new
/// connection's set-up and the audit queue's writes aside).
async fn an_unknown_name_runs_the_statements_of_a_wrong_password(db: TestDb) {
    record_statements();
    let server = TestServer::start(db);
    server.add_user("alice", "correct horse", false);
    let failed_sign_in = async |user: &str| {
        let mut browser = server.browser();
        STATEMENTS.lock().unwrap().clear();
        RECORDING.store(true, Ordering::SeqCst);
        let status = browser.login(user, "wrong password", false).await.status;
        RECORDING.store(false, Ordering::SeqCst);
        assert_eq!(status, 401, "{user}");
        let statements = std::mem::take(&mut *STATEMENTS.lock().unwrap());
        statements
            .iter()
            .map(|sql| sql.split("-- binds").next().unwrap().trim().to_owned())
            .filter(|sql| {
                let setup = sql.starts_with("PRAGMA") || sql.starts_with("SET");
                !(setup || sql.contains("audit_events"))
            })
            .collect::<Vec<_>>()
    };
    let known = failed_sign_in("alice").await;
    let unknown = failed_sign_in("nobody-by-this-name").await;
    assert!(
        known.iter().any(|sql| sql.contains("users")),
        "the users table read: {known:#?}"
    );
    assert_eq!(unknown, known);
}

/// Throttling comes before any Argon2 work: a throttled attempt, even with
/// the right password, costs no verification (for a real account and for an
/// unknown name alike).
async fn a_throttled_attempt_costs_no_argon2_work(db: TestDb) {
    let server = TestServer::start_with(db, |b| b.max_failed_logins(3).ip_attempts_per_minute(0));
    server.add_user("alice", "correct horse", false);
    for user in ["alice", "nobody-by-this-name"] {
        for _ in 0..3 {
            let status = server.browser().login(user, "wrong", false).await.status;
            assert_eq!(status, 401);
        }
        let before = argon2_verifications();
        let status = server
            .browser()
            .login(user, "correct horse", false)
            .await
            .status;
        assert_eq!(status, 429, "{user}");
        assert_eq!(argon2_verifications(), before, "no Argon2 work for {user}");
    }
}

/// An unknown name reads the directory by a placeholder id, for the
/// time of a known name's read. A directory whose ids have a form of
/// their own (UUIDs, say) refuses that id with an error: the answer is
/// still a wrong password's, not a 503 that would tell the name unknown.
/// A directory that is down answers 503 for every name alike.
async fn a_directory_refusing_the_placeholder_id_tells_nothing(db: TestDb) {
    use rememberme::store::StoreError;
    let (server, counts) = TestServer::start_counting(db, |b| b);
    server.add_user("alice", "correct horse", false);
    let mut answers = Vec::new();
    for user in ["alice", "nobody-by-this-name"] {
        counts.take_log();
        if user != "alice" {
            counts.trap("find_by_id", || {
                Err(StoreError::Query(
                    "invalid input syntax for type uuid".into(),
                ))
            });
        }
        let res = server.browser().login(user, "wrong password", false).await;
        assert_eq!(res.status, 401, "{user}: a wrong password's answer");
        assert!(
            counts.take_log().contains(&"find_by_id"),
            "{user}: read by id"
        );
        let body = res.body.replace(user, "USER").replace(&res.csrf(), "CSRF");
        answers.push((res.status, body));
    }
    assert_eq!(answers[0], answers[1], "same status and page");
    for user in ["alice", "nobody-by-this-name"] {
        counts.trap("find_by_id", || {
            Err(StoreError::Unavailable("the directory is down".into()))
        });
        let res = server.browser().login(user, "wrong password", false).await;
        assert_eq!(res.status, 503, "{user}: an outage");
    }
}
