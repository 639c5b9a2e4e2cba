//! The examples, run as a user would run them (the built binary, `PORT`,
//! `DATABASE_URL`, `--cookie-secure false`) and driven over HTTP.

mod common;

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Browser, TestDb};

/// A running example; killed when dropped.
struct Example {
    child: Child,
    base: String,
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The example's binary, built by `cargo test` beside this test's (or
/// built now, when only this test was asked for).
fn binary(name: &str) -> PathBuf {
    let deps = std::env::current_exe().unwrap();
    let path = deps
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    if !path.exists() {
        let built = Command::new(env!("CARGO"))
            .args(["build", "--example", name])
            .status()
            .expect("cargo runs");
        assert!(built.success(), "cargo build --example {name}");
    }
    path
}

fn start(name: &str, database_url: &str, dir: &std::path::Path) -> Example {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(binary(name))
        .args(["--cookie-secure", "false"])
        .env("PORT", port.to_string())
        .env("DATABASE_URL", database_url)
        .current_dir(dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("the example starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{name} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Example {
        child,
        base: format!("http://127.0.0.1:{port}"),
    }
}

/// The database at `url` (migrated) with one expired token in it, of a
/// user the examples never make.
fn an_expired_token(url: &str) -> (rememberme::Database, rememberme::Stores) {
    let database = rememberme::Database::connect(url, 1).unwrap();
    let stores = common::stores_on(&database);
    common::insert_expired_token(&stores, "someone-gone");
    (database, stores)
}

/// A SQLite file in a fresh folder, or the test PostgreSQL schema.
fn database(db: &TestDb, dir: &std::path::Path) -> String {
    match db.backend {
        "sqlite" => format!("sqlite://{}", dir.join("example.db").display()),
        _ => db.url.clone(),
    }
}

/// The sign-in form, "Keep me logged in", logout: what every example
/// serves; and the quickstart's purge, which runs at its start.
async fn the_quickstart_keeps_alice_signed_in_and_signs_her_out(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let url = database(&db, dir.path());
    let (_database, stores) = an_expired_token(&url);
    let app = start("quickstart", &url, dir.path());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !stores.tokens.list(None, None, 10).unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the expired token was not purged"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut browser = Browser::new(&app.base);
    assert_eq!(browser.get("/").await.status, 303, "anonymous: to /login");
    assert_eq!(browser.login("alice", "wrong", false).await.status, 401);
    assert_eq!(
        browser.login("alice", "alice-password", true).await.status,
        303
    );
    assert_eq!(browser.get("/").await.body, "hello alice");

    browser.drop_cookie("session"); // the browser was closed
    let home = browser.get("/").await;
    assert_eq!(home.body, "hello alice", "signed in by remember-me");
    assert!(home.set_cookie("remember_me").is_some(), "rotated");

    let csrf = browser.get("/login").await.csrf();
    assert_eq!(
        browser
            .post("/logout", &[("csrf_token", &csrf)])
            .await
            .status,
        303
    );
    assert_eq!(browser.cookie("remember_me"), None, "cookie removed");
    assert_eq!(browser.get("/").await.status, 303, "signed out");
}

/// The app's own users (UUID ids, bcrypt): sign-in, "Keep me logged in",
/// the devices page and revoking a device.
async fn existing_users_plug_in_with_their_uuids_and_bcrypt_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("app.db").display());
    let app = start("existing_users", &url, dir.path());
    let mut browser = Browser::new(&app.base);
    assert_eq!(browser.login("alice", "nope", true).await.status, 401);
    assert_eq!(
        browser.login("alice", "alice-password", true).await.status,
        303
    );
    assert_eq!(browser.get("/").await.body, "hello alice");

    // The crate's devices page, mounted by the app.
    let devices = browser.get("/account/devices").await;
    assert_eq!(devices.status, 200);
    let revoke: Vec<&str> = devices
        .body
        .split("action=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .filter(|a| a.ends_with("/revoke") && a.starts_with("/account/devices/"))
        .collect();
    assert_eq!(revoke.len(), 1, "one device: {}", devices.body);
    let revoked = browser
        .post(revoke[0], &[("csrf_token", &devices.csrf())])
        .await;
    assert_eq!(revoked.status, 303);
    let after = browser.get("/account/devices").await.body;
    assert!(!after.contains("/revoke\""), "{after}");
    // The admin pages are guarded by the app's own roles (is_staff).
    assert_eq!(browser.get("/admin/tokens").await.status, 403);

    browser.drop_cookie("session");
    assert_eq!(
        browser.get("/").await.status,
        303,
        "the revoked cookie signs nobody in"
    );

    // The app's table is as the app made it: a UUID id and a bcrypt hash.
    use diesel::{Connection as _, RunQueryDsl as _};
    let mut conn =
        diesel::SqliteConnection::establish(dir.path().join("app.db").to_str().unwrap()).unwrap();
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        id: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        bcrypt_hash: String,
    }
    let row: Row = diesel::sql_query("SELECT id, bcrypt_hash FROM users")
        .get_result(&mut conn)
        .unwrap();
    assert!(uuid::Uuid::parse_str(&row.id).is_ok(), "{}", row.id);
    assert!(row.bcrypt_hash.starts_with("$2b$"));
}

/// Sign-in by id after an outside check: strong with a cookie, weak
/// without one and sent to step-up by a strong page.
async fn sign_in_by_id_follows_the_flow_rules(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let app = start("sign_in_by_id", &database(&db, dir.path()), dir.path());

    let mut oauth = Browser::new(&app.base);
    assert_eq!(oauth.get("/auth/callback?code=forged").await.status, 401);
    let back = oauth
        .get("/auth/callback?code=alice-code&remember_me=on")
        .await;
    assert_eq!(back.status, 303);
    assert!(back.set_cookie("remember_me").is_some(), "strong: a token");
    assert_eq!(oauth.get("/").await.body, "hello alice");
    assert_eq!(oauth.get("/settings").await.status, 200, "strong session");
    oauth.drop_cookie("session");
    assert_eq!(oauth.get("/").await.body, "hello alice", "by remember-me");

    let mut link = Browser::new(&app.base);
    let back = link
        .get("/auth/magic?token=alice-link&remember_me=on")
        .await;
    assert_eq!(back.status, 303);
    assert!(
        back.set_cookie("remember_me").is_none(),
        "weak: never a token"
    );
    assert_eq!(link.get("/").await.body, "hello alice");
    let settings = link.get("/settings").await;
    assert_eq!(settings.status, 303, "weak: step-up first");
}

/// The app's own step: a TOTP second factor after the password, skipped on
/// a trusted browser and for a remember-me cookie (issued after both).
async fn a_second_factor_of_the_apps_own_joins_the_flow(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let app = start("custom_step", &database(&db, dir.path()), dir.path());
    let totp = totp_rs::Builder::new()
        .with_secret(b"12345678901234567890".to_vec())
        .build()
        .unwrap();
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let code = totp.generate(now()).to_string();

    let mut laptop = Browser::new(&app.base);
    let second = laptop.login("alice", "alice-password", true).await;
    assert_eq!(
        second.status, 200,
        "the password is right: the code is next"
    );
    assert!(second.body.contains("totp_code"));
    assert!(
        second.set_cookie("remember_me").is_none(),
        "no token before the second factor"
    );
    assert_eq!(laptop.get("/").await.status, 303, "not signed in yet");
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let csrf = second.csrf();
    let refused = laptop
        .post(
            "/login/totp",
            &[("csrf_token", &csrf), ("totp_code", wrong)],
        )
        .await;
    assert_eq!(refused.status, 401);
    let csrf = refused.csrf();
    let fields = [
        ("csrf_token", csrf.as_str()),
        ("totp_code", code.as_str()),
        ("trust_browser", "on"),
    ];
    let signed_in = laptop.post("/login/totp", &fields).await;
    assert_eq!(signed_in.status, 303);
    assert!(
        signed_in.set_cookie("remember_me").is_some(),
        "both factors: the token"
    );
    assert!(signed_in.set_cookie("trusted_browser").is_some());
    assert_eq!(laptop.get("/").await.body, "hello alice");

    laptop.drop_cookie("session");
    assert_eq!(
        laptop.get("/").await.body,
        "hello alice",
        "the cookie skips the code"
    );
    let csrf = laptop.get("/login").await.csrf();
    laptop.post("/logout", &[("csrf_token", &csrf)]).await;
    assert_eq!(laptop.cookie("remember_me"), None);
    assert_eq!(
        laptop.login("alice", "alice-password", false).await.status,
        303,
        "a trusted browser skips the code"
    );

    let mut other = Browser::new(&app.base);
    let second = other.login("alice", "alice-password", false).await;
    assert_eq!(second.status, 200, "another browser is asked for the code");
    let replay = other
        .post(
            "/login/totp",
            &[("csrf_token", &second.csrf()), ("totp_code", &code)],
        )
        .await;
    assert_eq!(replay.status, 401, "a code is taken once");
    let next = totp.generate(now() + 30).to_string();
    let done = other
        .post(
            "/login/totp",
            &[("csrf_token", &replay.csrf()), ("totp_code", &next)],
        )
        .await;
    assert_eq!(done.status, 303);
    assert_eq!(other.get("/").await.body, "hello alice");
}

on_both_backends!(
    the_quickstart_keeps_alice_signed_in_and_signs_her_out,
    sign_in_by_id_follows_the_flow_rules,
    a_second_factor_of_the_apps_own_joins_the_flow,
);

#[actix_web::test]
async fn existing_users_example() {
    existing_users_plug_in_with_their_uuids_and_bcrypt_hashes().await;
}
