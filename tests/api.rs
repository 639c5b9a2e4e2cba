//! The JSON API for apps: long-lived device tokens exchanged for short-lived
//! access tokens, with the cookie's rules, on SQLite and PostgreSQL.

mod common;

use std::time::Duration;

use serde_json::{Value, json};

use common::{Browser, TestDb, TestServer};
use rememberme::store::StoreError;

on_both_backends!(
    login_without_remember_me_gives_only_an_access_token,
    login_with_remember_me_gives_a_long_lived_token_stored_as_hashes,
    refresh_rotates_the_long_lived_token_and_answers_as_remembered,
    a_stale_long_lived_token_converges_in_grace_ends_its_series_after_and_two_back_is_theft,
    the_same_device_key_replaces_the_devices_token,
    a_caller_with_only_a_long_lived_token_cannot_get_another_without_the_password,
    the_forever_option_keeps_refreshing_past_the_absolute_validity,
    logout_revokes_the_devices_token,
    an_access_token_dies_with_the_long_lived_token_it_came_with,
    access_tokens_are_refused_after_revoke_all,
    malformed_inputs_get_json_4xx_answers,
    app_tokens_are_listed_beside_browser_tokens,
    api_sign_ins_are_throttled_like_the_form,
    a_bearer_minting_a_token_as_everything_is_revoked_gets_nothing,
    a_bearer_minting_a_token_as_its_device_is_revoked_gets_nothing,
    a_bearer_minting_a_token_as_its_device_logs_out_keeps_nothing,
    a_logout_whose_token_a_step_up_just_replaced_ends_the_successor,
    a_bearer_of_a_user_the_app_deleted_mints_nothing,
    an_old_copy_of_a_long_lived_token_cannot_log_its_device_out,
    a_stale_copy_of_the_bearers_own_token_at_logout_is_judged_as_a_fork,
);

async fn api_sign_ins_are_throttled_like_the_form(db: TestDb) {
    let server = TestServer::start_with(db, |b| b.max_failed_logins(3));
    server.add_user("alice", "correct horse", false);
    let app = server.browser();
    for _ in 0..3 {
        let (status, _, _) = app
            .api(
                "POST",
                "/api/v1/login",
                None,
                Some(&login_body("alice", "nope", false, None)),
            )
            .await;
        assert_eq!(status, 401);
    }
    let (status, headers, body) = app
        .api(
            "POST",
            "/api/v1/login",
            None,
            Some(&login_body("alice", "correct horse", false, None)),
        )
        .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"], "too_many_attempts");
    assert!(headers.get("retry-after").is_some());
}

fn login_body(user: &str, password: &str, remember: bool, device: Option<&str>) -> String {
    json!({"username": user, "password": password, "remember_me": remember, "device_key": device})
        .to_string()
}

async fn app_login(app: &Browser, device: &str) -> Value {
    let (status, _, body) = app
        .api(
            "POST",
            "/api/v1/login",
            None,
            Some(&login_body("alice", "correct horse", true, Some(device))),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn refresh(app: &Browser, token: &str) -> (u16, Value) {
    let (status, _, body) = app
        .api(
            "POST",
            "/api/v1/token/refresh",
            None,
            Some(&json!({"long_lived_token": token}).to_string()),
        )
        .await;
    (status, body)
}

/// `POST /api/v1/logout` naming `long_lived_token`, with `access_token`
/// as the bearer: the status.
async fn logout_naming(app: &Browser, access_token: &str, long_lived_token: &str) -> u16 {
    let body = json!({ "long_lived_token": long_lived_token }).to_string();
    let (status, _, _) = app
        .api("POST", "/api/v1/logout", Some(access_token), Some(&body))
        .await;
    status
}

/// The access token of a login or refresh answer.
fn access(answer: &Value) -> &str {
    answer["access_token"].as_str().unwrap()
}

/// The long-lived token of a login or refresh answer.
fn long_lived(answer: &Value) -> String {
    answer["long_lived_token"].as_str().unwrap().to_owned()
}

fn setup(db: TestDb) -> (TestServer, rememberme::UserId, Browser) {
    let server = TestServer::start(db);
    let alice = server.add_user("alice", "correct horse", false);
    let app = server.browser();
    (server, alice, app)
}

async fn login_without_remember_me_gives_only_an_access_token(db: TestDb) {
    let (server, alice, app) = setup(db);
    let (status, headers, body) = app
        .api(
            "POST",
            "/api/v1/login",
            None,
            Some(&login_body("alice", "correct horse", false, None)),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert!(body.get("long_lived_token").is_none());
    assert_eq!(headers.get("cache-control").unwrap(), "no-store");
    assert!(server.tokens_of(&alice).is_empty());
    let (status, _, me) = app
        .api("GET", "/api/v1/me", body["access_token"].as_str(), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(me["username"], "alice");
    assert_eq!(me["method"], "password");
    assert!(
        me["tags"]
            .as_array()
            .unwrap()
            .contains(&json!("PASSWORD_VERIFIED"))
    );
    let (status, _, wrong) = app
        .api(
            "POST",
            "/api/v1/login",
            None,
            Some(&login_body("alice", "nope", false, None)),
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(wrong["error"], "invalid_credentials");
}

async fn login_with_remember_me_gives_a_long_lived_token_stored_as_hashes(db: TestDb) {
    let (server, alice, app) = setup(db);
    let body = app_login(&app, "phone-1").await;
    let token = body["long_lived_token"].as_str().unwrap();
    assert_eq!(body["long_lived_expires_in"], 30 * 24 * 3600);
    let rows = server.tokens_of(&alice);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].device_key.as_deref(), Some("phone-1"));
    let (series, secret) = common::raw_parts(token);
    use sha2::Digest as _;
    assert_eq!(
        rows[0].series_hash.as_bytes().as_slice(),
        sha2::Sha256::digest(&series).as_slice()
    );
    assert_eq!(
        rows[0].token_hash.as_bytes().as_slice(),
        sha2::Sha256::digest(&secret).as_slice()
    );
}

async fn refresh_rotates_the_long_lived_token_and_answers_as_remembered(db: TestDb) {
    let (server, alice, app) = setup(db);
    let first = app_login(&app, "phone").await;
    let old = first["long_lived_token"].as_str().unwrap();
    let (status, body) = refresh(&app, old).await;
    assert_eq!(status, 200, "{body}");
    let new = body["long_lived_token"].as_str().unwrap();
    assert_ne!(new, old);
    assert_eq!(
        common::raw_parts(new).0,
        common::raw_parts(old).0,
        "same series"
    );
    assert_eq!(server.tokens_of(&alice).len(), 1);
    // The refresh's audit row, written with its rotation, says so.
    let details: Vec<String> = server
        .stores()
        .audit
        .list(None, None, None, 100)
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "remember_me_sign_in")
        .map(|e| e.detail)
        .collect();
    assert_eq!(details, ["api refresh"]);
    let (_, _, me) = app
        .api("GET", "/api/v1/me", body["access_token"].as_str(), None)
        .await;
    assert_eq!(me["method"], "long_lived_token");
    assert_eq!(me["device_key"], "phone");
    assert!(
        !me["tags"]
            .as_array()
            .unwrap()
            .contains(&json!("PASSWORD_VERIFIED"))
    );
}

/// Issue 14's three cases through the API: the token one rotation back
/// converges within the grace window (the app gets the current token back),
/// ends only its own series after it, and a token two back is theft.
async fn a_stale_long_lived_token_converges_in_grace_ends_its_series_after_and_two_back_is_theft(
    db: TestDb,
) {
    let (server, alice, app) = setup(db);
    let tablet = long_lived(&app_login(&app, "tablet").await);
    let old = long_lived(&app_login(&app, "phone").await);
    let (_, rotated) = refresh(&app, &old).await;
    let new = long_lived(&rotated);
    let (status, grace) = refresh(&app, &old).await;
    assert_eq!(status, 200, "accepted in grace");
    assert_eq!(
        grace["long_lived_token"].as_str(),
        Some(new.as_str()),
        "handed the current token, not a new one"
    );
    server.clock.advance(Duration::from_secs(61));
    let (status, body) = refresh(&app, &old).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_token");
    assert_eq!(server.tokens_of(&alice).len(), 1, "only that series ended");
    assert!(server.audit_kinds().contains(&"possible_theft".to_owned()));
    assert!(!server.audit_kinds().contains(&"theft_detected".to_owned()));
    assert_eq!(
        refresh(&app, &new).await.0,
        401,
        "its newer token is dead too"
    );

    // The tablet's chain, two rotations on: its first token is certain theft.
    let (_, once) = refresh(&app, &tablet).await;
    let once = long_lived(&once);
    let (status, _) = refresh(&app, &once).await;
    assert_eq!(status, 200);
    let (status, _) = refresh(&app, &tablet).await;
    assert_eq!(status, 401);
    assert!(
        server.tokens_of(&alice).is_empty(),
        "theft revokes everything"
    );
    assert!(server.audit_kinds().contains(&"theft_detected".to_owned()));
}

async fn the_same_device_key_replaces_the_devices_token(db: TestDb) {
    let (server, alice, app) = setup(db);
    let first = app_login(&app, "tablet").await;
    app_login(&app, "tablet").await;
    assert_eq!(
        server.tokens_of(&alice).len(),
        1,
        "a device never holds two"
    );
    assert_eq!(
        refresh(&app, first["long_lived_token"].as_str().unwrap())
            .await
            .0,
        401
    );
    app_login(&app, "laptop").await;
    assert_eq!(server.tokens_of(&alice).len(), 2);
}

async fn a_caller_with_only_a_long_lived_token_cannot_get_another_without_the_password(db: TestDb) {
    let (server, alice, app) = setup(db);
    let first = app_login(&app, "phone").await;
    let (_, refreshed) = refresh(&app, first["long_lived_token"].as_str().unwrap()).await;
    let weak = refreshed["access_token"].as_str().unwrap();
    let ask = json!({"remember_me": true, "device_key": "second"}).to_string();
    let (status, _, body) = app
        .api("POST", "/api/v1/login", Some(weak), Some(&ask))
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "password_required");
    assert_eq!(server.tokens_of(&alice).len(), 1, "nothing issued");
    // An access token from a password sign-in may ask for one, for its own
    // device only (it replaces that device's token).
    let strong = first["access_token"].as_str().unwrap();
    let (status, _, body) = app
        .api("POST", "/api/v1/login", Some(strong), Some(&ask))
        .await;
    assert_eq!(status, 403, "not for another device: {body}");
    let own = json!({"remember_me": true, "device_key": "phone"}).to_string();
    let (status, _, body) = app
        .api("POST", "/api/v1/login", Some(strong), Some(&own))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["long_lived_token"].is_string());
    assert_eq!(
        server.tokens_of(&alice).len(),
        1,
        "the device's token replaced"
    );
}

async fn the_forever_option_keeps_refreshing_past_the_absolute_validity(db: TestDb) {
    let server = TestServer::start_with(db, |b| {
        b.validity(Duration::from_secs(2 * 24 * 3600))
            .expiry(rememberme::config::Expiry::Forever)
    });
    server.add_user("alice", "correct horse", false);
    let app = server.browser();
    let mut token = long_lived(&app_login(&app, "phone").await);
    for day in 1..=5 {
        server.clock.advance(Duration::from_secs(24 * 3600));
        let (status, body) = refresh(&app, &token).await;
        assert_eq!(status, 200, "day {day}: {body}");
        token = long_lived(&body);
    }
    server.clock.advance(Duration::from_secs(2 * 24 * 3600 + 1));
    assert_eq!(
        refresh(&app, &token).await.0,
        401,
        "an idle device still expires"
    );
}

async fn logout_revokes_the_devices_token(db: TestDb) {
    let (server, alice, app) = setup(db);
    let phone = app_login(&app, "phone").await;
    app_login(&app, "laptop").await;
    let (status, _, _) = app
        .api(
            "POST",
            "/api/v1/logout",
            phone["access_token"].as_str(),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let left = server.tokens_of(&alice);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].device_key.as_deref(), Some("laptop"));
    assert_eq!(
        refresh(&app, phone["long_lived_token"].as_str().unwrap())
            .await
            .0,
        401
    );
    let (status, _, body) = app.api("POST", "/api/v1/logout", None, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized"))
    );

    // Another user's access token naming Alice's long-lived token revokes
    // nothing of Alice's: a logout acts on the bearer's own tokens only.
    server.add_user("bob", "battery staple", false);
    let (_, _, bob) = app
        .api(
            "POST",
            "/api/v1/login",
            None,
            Some(&login_body("bob", "battery staple", false, None)),
        )
        .await;
    let laptop = server.tokens_of(&alice);
    assert_eq!(laptop.len(), 1);
    let alices = app_login(&app, "tablet").await;
    let status = logout_naming(&app, access(&bob), &long_lived(&alices)).await;
    assert_eq!(status, 204);
    assert_eq!(server.tokens_of(&alice).len(), 2, "Alice's tokens stay");
}

/// From an attack review: the access token of a device that was signed
/// out (or revoked on the devices page) kept working for its lifetime and,
/// within the re-auth window, minted the device a new long-lived token. An
/// access token issued with, or refreshed from, a long-lived token now
/// lives only as long as that token's series, as a browser's session does.
async fn an_access_token_dies_with_the_long_lived_token_it_came_with(db: TestDb) {
    let (server, alice, app) = setup(db);
    let phone = app_login(&app, "phone").await;
    let laptop = app_login(&app, "laptop").await;
    let copied = phone["access_token"].as_str().unwrap();
    let (_, refreshed) = refresh(&app, laptop["long_lived_token"].as_str().unwrap()).await;
    let laptops = refreshed["access_token"].as_str().unwrap();
    for token in [copied, laptops] {
        let (status, _, body) = app.api("GET", "/api/v1/me", Some(token), None).await;
        assert_eq!(status, 200, "{body}");
    }

    // The phone signs out; the laptop is revoked on the devices page.
    let (status, _, _) = app.api("POST", "/api/v1/logout", Some(copied), None).await;
    assert_eq!(status, 204);
    let laptop_id = server.tokens_of(&alice)[0].id;
    let mut browser = server.browser();
    assert_eq!(
        browser.login("alice", "correct horse", false).await.status,
        303
    );
    let form = browser.get("/account/devices").await;
    let res = browser
        .post(
            &format!("/account/devices/{laptop_id}/revoke"),
            &[("csrf_token", &form.csrf())],
        )
        .await;
    assert_eq!(res.status, 303, "{}", res.body);
    assert!(server.tokens_of(&alice).is_empty());

    for token in [copied, laptops] {
        let (status, _, body) = app.api("GET", "/api/v1/me", Some(token), None).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("token_revoked"))
        );
    }
    let mint = json!({"remember_me": true, "device_key": "phone"}).to_string();
    let (status, _, body) = app
        .api("POST", "/api/v1/login", Some(copied), Some(&mint))
        .await;
    assert_eq!(status, 401, "no new token for a signed-out device: {body}");
    assert!(server.tokens_of(&alice).is_empty(), "nothing minted");

    // A token of a sign-in without a long-lived token is bound to none.
    let (status, _, plain) = app
        .api(
            "POST",
            "/api/v1/login",
            None,
            Some(&login_body("alice", "correct horse", false, None)),
        )
        .await;
    assert_eq!(status, 200);
    let token = plain["access_token"].as_str().unwrap();
    assert_eq!(app.api("GET", "/api/v1/me", Some(token), None).await.0, 200);
}

async fn access_tokens_are_refused_after_revoke_all(db: TestDb) {
    let (server, alice, app) = setup(db);
    let body = app_login(&app, "phone").await;
    let access = body["access_token"].as_str().unwrap();
    assert_eq!(
        app.api("GET", "/api/v1/me", Some(access), None).await.0,
        200
    );
    server.stores().tokens.delete_all_for_user(&alice).unwrap();
    server.stores().state.bump_epoch(&alice).unwrap();
    let (status, _, body) = app.api("GET", "/api/v1/me", Some(access), None).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "token_revoked");
    server.clock.advance(Duration::from_secs(16 * 60));
    let fresh = app
        .api(
            "POST",
            "/api/v1/login",
            None,
            Some(&login_body("alice", "correct horse", false, None)),
        )
        .await
        .2;
    let token = fresh["access_token"].as_str().unwrap();
    server.clock.advance(Duration::from_secs(15 * 60));
    let (status, _, body) = app.api("GET", "/api/v1/me", Some(token), None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("token_expired"))
    );
}

async fn malformed_inputs_get_json_4xx_answers(db: TestDb) {
    let (_server, _alice, app) = setup(db);
    let good = app_login(&app, "phone").await;
    let access = good["access_token"].as_str().unwrap();
    let mut tampered = access.to_owned().into_bytes();
    tampered[8] = if tampered[8] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let big = format!("{{\"username\":\"{}\"}}", "x".repeat(10_000));
    let long_device = login_body("alice", "correct horse", true, Some(&"d".repeat(129)));
    type Case<'a> = (
        &'a str,
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        u16,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/api/v1/login",
            None,
            Some("{not json"),
            400,
            "invalid_request",
        ),
        (
            "POST",
            "/api/v1/login",
            None,
            Some("{}"),
            400,
            "invalid_request",
        ),
        (
            "POST",
            "/api/v1/login",
            None,
            Some(r#"{"username": 5, "password": "x"}"#),
            400,
            "invalid_request",
        ),
        (
            "POST",
            "/api/v1/login",
            None,
            Some(r#"{"username": "a", "password": "b", "remember_me": "yes"}"#),
            400,
            "invalid_request",
        ),
        (
            "POST",
            "/api/v1/login",
            None,
            Some(r#"{"username": "a", "password": "b", "remember_me": true}"#),
            400,
            "invalid_request",
        ),
        (
            "POST",
            "/api/v1/login",
            None,
            Some(&big),
            413,
            "payload_too_large",
        ),
        (
            "POST",
            "/api/v1/login",
            None,
            Some(&long_device),
            400,
            "invalid_request",
        ),
        (
            "POST",
            "/api/v1/token/refresh",
            None,
            Some("{}"),
            400,
            "invalid_request",
        ),
        (
            "POST",
            "/api/v1/token/refresh",
            None,
            Some(r#"{"long_lived_token": "v1.garbage"}"#),
            401,
            "invalid_token",
        ),
        ("GET", "/api/v1/me", None, None, 401, "unauthorized"),
        (
            "GET",
            "/api/v1/me",
            Some("garbage"),
            None,
            401,
            "invalid_token",
        ),
        (
            "GET",
            "/api/v1/me",
            Some(&tampered),
            None,
            401,
            "invalid_token",
        ),
        ("GET", "/api/v1/nothing", None, None, 404, "not_found"),
    ];
    for (method, path, bearer, body, status, error) in cases {
        let (got, _, json) = app.api(method, path, bearer, body).await;
        assert_eq!(got, status, "{method} {path} {body:?}: {json}");
        assert_eq!(json["error"], error, "{method} {path} {body:?}");
        assert!(json["message"].is_string());
    }
}

async fn app_tokens_are_listed_beside_browser_tokens(db: TestDb) {
    let server = TestServer::start(db);
    server.add_user("root", "admin password", true);
    server.add_user("alice", "correct horse", false);
    let app = server.browser();
    app_login(&app, "alices-phone").await;
    let mut alice = server.browser();
    alice.login("alice", "correct horse", true).await;
    let devices = alice.get("/account/devices").await;
    assert!(
        devices.body.contains("App: alices-phone"),
        "{}",
        devices.body
    );
    let mut admin = server.browser();
    admin.login("root", "admin password", true).await;
    let page = admin.get("/admin/tokens").await;
    assert!(
        page.body.contains("App token (device alices-phone)"),
        "{}",
        page.body
    );
    assert!(page.body.contains("Browser cookie"));
}

/// What a revocation that races a bearer's step-up works with: the
/// stores, the user, the server, the bearer and its long-lived token.
struct Minting {
    stores: rememberme::Stores,
    alice: rememberme::UserId,
    base: String,
    bearer: String,
    long_lived: Option<String>,
}

/// A bearer's step-up to a long-lived token for its device (`phone`, signed
/// in with the box ticked or not), with `revoke` landing as the store is
/// about to make the call `at` (after the bearer's own check). The
/// answer's status and body; the old bearer is checked revoked.
async fn mint_while_revoked(
    db: TestDb,
    remembered: bool,
    at: &'static str,
    revoke: impl FnOnce(Minting) -> Result<(), StoreError> + Send + 'static,
) -> (TestServer, rememberme::UserId, u16, Value) {
    let (server, calls) = TestServer::start_counting(db, |b| b);
    let alice = server.add_user("alice", "correct horse", false);
    let app = server.browser();
    let signed_in = login_body("alice", "correct horse", remembered, Some("phone"));
    let (status, _, body) = app
        .api("POST", "/api/v1/login", None, Some(&signed_in))
        .await;
    assert_eq!(status, 200, "{body}");
    let bearer = body["access_token"].as_str().unwrap().to_owned();
    let minting = Minting {
        stores: server.stores().clone(),
        alice: alice.clone(),
        base: server.base.clone(),
        bearer: bearer.clone(),
        long_lived: body["long_lived_token"].as_str().map(str::to_owned),
    };
    calls.trap(at, move || revoke(minting));
    let mint = json!({"remember_me": true, "device_key": "phone"}).to_string();
    let (status, _, minted) = app
        .api("POST", "/api/v1/login", Some(&bearer), Some(&mint))
        .await;
    let (old, _, _) = app.api("GET", "/api/v1/me", Some(&bearer), None).await;
    assert_eq!(old, 401, "the bearer itself is revoked");
    (server, alice, status, minted)
}

/// A step-up answered `403 password_required`, with no token of the user
/// left behind.
fn refused_and_nothing_kept(
    server: &TestServer,
    alice: &rememberme::UserId,
    status: u16,
    minted: &Value,
) {
    assert_eq!(
        (status, minted["error"].as_str()),
        (403, Some("password_required"))
    );
    assert!(server.tokens_of(alice).is_empty(), "nothing minted");
}

/// From an attack review: a copied access token asked for a long-lived
/// token of its device while "sign out everywhere" (or a password change:
/// the same epoch move) landed after its check. The issuing step did not
/// know the bearer's epoch, and the new tokens were stamped with the new
/// one: a 30-day token and an access token that outlived the revocation.
/// The run now holds the bearer's epoch: the issuing step deletes its token
/// once the epoch has moved, and nothing is handed out.
async fn a_bearer_minting_a_token_as_everything_is_revoked_gets_nothing(db: TestDb) {
    let (server, alice, status, minted) = mint_while_revoked(db, false, "insert", |m| {
        let event = rememberme::store::NewAuditEvent {
            at: 0,
            kind: rememberme::store::AuditKind::SignOutEverywhere,
            user_id: Some(&m.alice),
            ip: None,
            user_agent: None,
            detail: "every token revoked by the test",
        };
        m.stores.revoke_everything(&m.alice, event).map(|_| ())
    })
    .await;
    refused_and_nothing_kept(&server, &alice, status, &minted);
}

/// The same with the bearer's device signed out (its long-lived token
/// revoked, the user's other devices and the epoch untouched): the run
/// checks, after its insert, that the series the bearer came from still
/// stands, and withdraws its token otherwise.
async fn a_bearer_minting_a_token_as_its_device_is_revoked_gets_nothing(db: TestDb) {
    let (server, alice, status, minted) = mint_while_revoked(db, true, "insert", |m| {
        let [device] = &m.stores.tokens.list_for_user(&m.alice)?[..] else {
            panic!("one token: the device's");
        };
        m.stores
            .tokens
            .delete_by_id(device.id, Some(&m.alice))
            .map(|_| ())
    })
    .await;
    refused_and_nothing_kept(&server, &alice, status, &minted);
}

/// From a review of the check above: the app logs the device out by its
/// long-lived token (`POST /api/v1/logout`) just after the step-up found
/// that token standing. The logout deleted the named token only, and the
/// device's new one lived on. A logout by a token now ends its device's
/// every token, in one statement: the new one goes with it.
async fn a_bearer_minting_a_token_as_its_device_logs_out_keeps_nothing(db: TestDb) {
    let (server, alice, _, minted) = mint_while_revoked(db, true, "retire_replaced", |m| {
        let body = json!({ "long_lived_token": m.long_lived.expect("a token") }).to_string();
        // The app's own request, from another thread: this one is the
        // server's store thread, held here.
        let status = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let app = Browser::new(&m.base);
                let logout = app.api("POST", "/api/v1/logout", Some(&m.bearer), Some(&body));
                logout.await.0
            })
        })
        .join()
        .unwrap();
        assert_eq!(status, 204, "the device signed out");
        Ok(())
    })
    .await;
    assert!(server.tokens_of(&alice).is_empty(), "nothing left");
    if let Some(access) = minted["access_token"].as_str() {
        let (status, _, _) = server
            .browser()
            .api("GET", "/api/v1/me", Some(access), None)
            .await;
        assert_eq!(status, 401, "the answer's access token is dead");
    }
}

/// The same race the other way round (from a third review): the app's
/// logout by its long-lived token passes its bearer check, then a step-up
/// of the same device stores a successor and retires the named token, and
/// only then does the logout look the named token up. It found nothing
/// and revoked nothing: the successor lived. A named token already gone
/// that is the bearer's own now ends the bearer's device.
async fn a_logout_whose_token_a_step_up_just_replaced_ends_the_successor(db: TestDb) {
    let (server, calls) = TestServer::start_counting(db, |b| b);
    let alice = server.add_user("alice", "correct horse", false);
    let app = server.browser();
    let body = app_login(&app, "phone").await;
    let bearer = body["access_token"].as_str().unwrap().to_owned();
    let long_lived = long_lived(&body);
    let (base, minting) = (server.base.clone(), bearer.clone());
    calls.trap("find_by_series", move || {
        // The step-up, from another thread: this one is the server's store
        // thread, held here.
        let minted = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let mint = json!({"remember_me": true, "device_key": "phone"}).to_string();
                let app = Browser::new(&base);
                let answer = app.api("POST", "/api/v1/login", Some(&minting), Some(&mint));
                answer.await.0
            })
        })
        .join()
        .unwrap();
        assert_eq!(minted, 200, "the step-up stored a successor");
        Ok(())
    });
    assert_eq!(logout_naming(&app, &bearer, &long_lived).await, 204);
    assert!(
        server.tokens_of(&alice).is_empty(),
        "the successor went too"
    );
}

/// The app deletes a user while a copy of their access token (a password
/// sign-in, within the re-auth window) asks for a long-lived token. The
/// step-up holds the bearer's epoch, so no step reads the user: the run
/// checks the app's directory itself before it hands anything out.
async fn a_bearer_of_a_user_the_app_deleted_mints_nothing(db: TestDb) {
    let (server, alice, app) = setup(db);
    let signed_in = login_body("alice", "correct horse", false, Some("phone"));
    let (status, _, body) = app
        .api("POST", "/api/v1/login", None, Some(&signed_in))
        .await;
    assert_eq!(status, 200, "{body}");
    let bearer = body["access_token"].as_str().unwrap();
    common::delete_user_row(&server.db, "alice");
    let mint = json!({"remember_me": true, "device_key": "phone"}).to_string();
    let (status, _, minted) = app
        .api("POST", "/api/v1/login", Some(bearer), Some(&mint))
        .await;
    assert_ne!(status, 200, "{minted}");
    assert!(server.tokens_of(&alice).is_empty(), "nothing minted");
}

/// From a review: a logout took the named long-lived token's series
/// without asking whether the token still proved it, so an old copy of
/// another device's token, with any access token of the user, signed that
/// device out quietly, where the same copy at `/token/refresh` reads as
/// theft. As a browser's old cookie cannot sign its owner out, the named
/// token must now be current (or just replaced, within the grace window).
async fn an_old_copy_of_a_long_lived_token_cannot_log_its_device_out(db: TestDb) {
    let (server, alice, app) = setup(db);
    let phone = app_login(&app, "phone").await;
    let tablet = app_login(&app, "tablet").await;
    let copy = long_lived(&phone);
    let (_, once) = refresh(&app, &copy).await;
    let (_, twice) = refresh(&app, &long_lived(&once)).await;

    assert_eq!(logout_naming(&app, access(&tablet), &copy).await, 204);
    server.clock.advance(Duration::from_secs(61));
    assert_eq!(
        logout_naming(&app, access(&tablet), &long_lived(&once)).await,
        204
    );
    assert_eq!(server.tokens_of(&alice).len(), 2, "both devices stay");
    let (status, _) = refresh(&app, &long_lived(&twice)).await;
    assert_eq!(status, 200, "the phone's current token still works");
    let audit = server.audit_kinds();
    assert!(
        !audit.iter().any(|k| k.contains("theft")),
        "another device's series is not judged at this logout: {audit:?}"
    );
}

/// A stale copy of the bearer's own series, named at its logout, shows that
/// someone rotated the series past this client: judged as the refresh
/// judges it. One back after the grace window, the series ends
/// (`possible_theft`); older, everything of the user (`theft_detected`).
async fn a_stale_copy_of_the_bearers_own_token_at_logout_is_judged_as_a_fork(db: TestDb) {
    let (server, alice, app) = setup(db);
    let tablet = app_login(&app, "tablet").await;
    let phone = app_login(&app, "phone").await;
    let (_, rotated) = refresh(&app, &long_lived(&phone)).await;
    server.clock.advance(Duration::from_secs(61));
    assert_eq!(
        logout_naming(&app, access(&rotated), &long_lived(&phone)).await,
        204
    );
    let left = server.tokens_of(&alice);
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].device_key.as_deref(), Some("tablet"));
    assert!(server.audit_kinds().contains(&"possible_theft".to_owned()));
    assert!(!server.audit_kinds().contains(&"theft_detected".to_owned()));

    let copy = long_lived(&tablet);
    let (_, once) = refresh(&app, &copy).await;
    let (_, twice) = refresh(&app, &long_lived(&once)).await;
    app_login(&app, "laptop").await;
    assert_eq!(logout_naming(&app, access(&twice), &copy).await, 204);
    assert!(
        server.tokens_of(&alice).is_empty(),
        "two back: every token of the user goes"
    );
    assert!(server.audit_kinds().contains(&"theft_detected".to_owned()));
}
