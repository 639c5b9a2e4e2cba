//! What an operator meets: private files, the admin CLI's role switch, and
//! `Debug` output that never shows a secret (issue 13, findings 6 and 11).

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use common::instance::{cli, prepare, start, start_as_shipped, start_with};
use common::{Browser, TestDb};
use rememberme::Database;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn the_sqlite_database_and_its_wal_files_are_created_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fresh.db");
    let db = Database::connect(&format!("sqlite://{}", path.display()), 2).unwrap();
    let store = common::users_on(&db);
    store.create("alice", "alice-password", false).unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    drop(store);
    assert!(db.close(Duration::from_secs(5)));
}

#[test]
fn the_demo_creates_its_session_key_owner_only() {
    let db = TestDb::sqlite();
    let (dir, _) = prepare(&db);
    let key_file = dir.path().join("created-by-serve.session-key");
    let instance = start(&db, &key_file);
    assert_eq!(mode(&key_file), 0o600);
    drop(instance);
}

#[actix_web::test]
async fn the_cli_grants_and_withdraws_admin_rights_and_open_sessions_follow() {
    let db = TestDb::sqlite();
    let (_dir, key_file) = prepare(&db);
    let out = cli(&db, &["user", "set-admin", "alice", "true"], "");
    assert!(out.contains("alice is an admin"), "{out}");
    let server = start_with(
        &db,
        &key_file,
        &["--epoch-check-secs", "0", "--purge-interval-secs", "0"],
    );
    let mut browser = Browser::new(&server.base);
    browser.login("alice", "correct horse battery", false).await;
    assert_eq!(browser.get("/admin/tokens").await.status, 200);
    let out = cli(&db, &["user", "set-admin", "alice", "false"], "");
    assert!(out.contains("no longer an admin"), "{out}");
    assert_eq!(browser.get("/admin/tokens").await.status, 403);
    assert_eq!(browser.get("/").await.status, 200, "still signed in");
}

#[test]
fn the_demo_refuses_a_trusted_proxy_that_is_not_a_network() {
    let db = TestDb::sqlite();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rememberme"))
        .args(["serve", "--trusted-proxies", "10.0.0.0/8,proxy.example"])
        .env("DATABASE_URL", &db.url)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`proxy.example` is not an address or a CIDR network"),
        "{stderr}"
    );
}

#[test]
fn debug_output_never_shows_a_hash_or_a_secret() {
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$SECRETSALT$SECRETHASH";
    let new_user = rememberme::User::new(7, "alice").password_hash(hash);
    let credentials = rememberme::flow::Credentials {
        username: "alice".into(),
        password: "SECRETPASSWORD".into(),
        remember_me: true,
        ..Default::default()
    };
    let config = rememberme::RememberMeConfig::builder()
        .access_token_secret(b"SECRETKEY")
        .server_secret(b"SECRETKEY")
        .build();
    let cookie = rememberme::token::RememberCookie::generate();
    for shown in [
        format!("{new_user:?}"),
        format!("{credentials:?}"),
        format!("{config:?}"),
        format!("{cookie:?}"),
        format!(
            "{:?}",
            rememberme::device::DeviceCookies::from_secret(b"SECRETKEY")
        ),
        format!(
            "{:?}",
            rememberme::token::SealKey::from_secret(b"SECRETKEY")
        ),
    ] {
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(!shown.contains(&cookie.encode()), "{shown}");
    }
    assert!(format!("{new_user:?}").contains("alice"), "still useful");
}

on_both_backends!(
    the_pool_size_defaults_to_two_on_sqlite_and_eight_on_postgresql,
    the_cli_purge_keeps_failure_counters_as_long_as_the_lockout,
);

/// `rememberme serve` without `--db-pool-size` opens 2 connections on
/// SQLite (one writer at a time; each connection a page cache) and 8 on
/// PostgreSQL; the flag overrides either. Read back from the pool itself,
/// through the start-up log.
async fn the_pool_size_defaults_to_two_on_sqlite_and_eight_on_postgresql(db: TestDb) {
    let (_dir, key_file) = prepare(&db);
    let pool_size = |args: &[&str]| {
        let server = start_as_shipped(&db, &key_file, args);
        let log = server.log.lock().unwrap().clone();
        let line = log
            .iter()
            .find(|line| line.contains("database ready"))
            .unwrap_or_else(|| panic!("no start-up line in {log:?}"));
        let at = line.find("pool_size=").expect("pool_size field") + "pool_size=".len();
        line[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse::<u32>()
            .unwrap()
    };
    let expected = if db.backend == "postgres" { 8 } else { 2 };
    assert_eq!(pool_size(&["--purge-interval-secs", "0"]), expected);
    let flagged = ["--purge-interval-secs", "0", "--db-pool-size", "3"];
    assert_eq!(pool_size(&flagged), 3);
}

/// From a review: `rememberme tokens purge` (a cron job's) deleted failure
/// counters idle for a day whatever the site's lockout, since the flag
/// could not follow the subcommand: a 48-hour lockout was lifted after 24.
/// It takes `--lockout-secs` now, and keeps a counter at least that long.
async fn the_cli_purge_keeps_failure_counters_as_long_as_the_lockout(db: TestDb) {
    use rememberme::store::{StateStore as _, ThrottleKey};
    prepare(&db);
    let store = rememberme::DieselStore::new(Database::connect(&db.url, 1).unwrap());
    let key = ThrottleKey::account("alice");
    let day_and_more = rememberme::clock::Clock::now(&rememberme::clock::SystemClock) - 25 * 3600;
    store
        .reserve_attempt(&key, day_and_more, 48 * 3600, 5)
        .unwrap();

    let out = cli(&db, &["tokens", "purge", "--lockout-secs", "172800"], "");
    assert!(out.contains("0 stale failure counter(s) deleted"), "{out}");
    assert!(store.failures(&key).unwrap().is_some(), "still locking");
    let out = cli(&db, &["tokens", "purge"], "");
    assert!(out.contains("1 stale failure counter(s) deleted"), "{out}");
    assert!(store.failures(&key).unwrap().is_none());
}

/// `user add` counts a password's characters, as the password page does:
/// seven two-byte letters are seven characters, too short (they passed as
/// fourteen bytes). A terminal's password is read without echo, typed twice
/// (rpassword; checked by hand under a pty, not here).
#[test]
fn the_cli_counts_a_passwords_characters_not_its_bytes() {
    let db = TestDb::sqlite();
    let add = |password: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_rememberme"))
            .args(["user", "add", "bob"])
            .env("DATABASE_URL", &db.url)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write as _;
                child.stdin.take().unwrap().write_all(password.as_bytes())?;
                child.wait_with_output()
            })
            .unwrap()
    };
    let short = add("ééééééé\n");
    assert!(!short.status.success());
    let stderr = String::from_utf8_lossy(&short.stderr);
    assert!(stderr.contains("at least 8 characters"), "{stderr}");
    assert!(add("éééééééé\n").status.success(), "eight characters");
}
