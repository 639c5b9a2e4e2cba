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

/// A SQLite file in a fresh folder, or the test PostgreSQL schema.
fn database(db: &TestDb, dir: &std::path::Path) -> String {
    match db.backend {
        "sqlite" => format!("sqlite://{}", dir.join("example.db").display()),
        _ => db.url.clone(),
    }
}

/// The sign-in form, "Keep me logged in", logout: what every example serves.
async fn the_quickstart_keeps_alice_signed_in_and_signs_her_out(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let app = start("quickstart", &database(&db, dir.path()), dir.path());
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

    let devices = browser.get("/devices").await.body;
    let lines: Vec<&str> = devices
        .lines()
        .filter(|l| l.starts_with("device "))
        .collect();
    assert_eq!(lines.len(), 1, "{devices}");
    let id = lines[0].split(' ').nth(1).unwrap().to_owned();
    let csrf = devices
        .lines()
        .next()
        .unwrap()
        .trim_start_matches("csrf_token=")
        .to_owned();
    let revoked = browser
        .post("/devices/revoke", &[("csrf_token", &csrf), ("id", &id)])
        .await;
    assert_eq!(revoked.status, 303);
    assert!(!browser.get("/devices").await.body.contains("device "));

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

on_both_backends!(
    the_quickstart_keeps_alice_signed_in_and_signs_her_out,
    sign_in_by_id_follows_the_flow_rules,
);

#[actix_web::test]
async fn existing_users_example() {
    existing_users_plug_in_with_their_uuids_and_bcrypt_hashes().await;
}
