//! The attacks of issue 13's outside review, each replayed against a running
//! server on both backends: every test here fails when the defence it names
//! is removed. (Finding 5, the fail-closed re-check, is in tests/outage.rs;
//! finding 7's /64 grouping in `extract`'s unit tests; finding 8 across two
//! instances in tests/multi_instance.rs.)

mod common;

use std::time::Duration;

use serde_json::{Value, json};

use common::{Browser, TestDb, TestServer};
use rememberme::store::UserId;

const RM: &str = "__Host-remember_me";
const SESSION: &str = "__Host-session";
const DEVICE: &str = "__Host-device";

on_both_backends!(
    f1_a_bearer_cannot_mint_long_lived_tokens_past_the_reauth_window,
    f1_a_derived_access_token_never_outlives_the_token_presented,
    f2_step_up_checks_the_password_of_a_password_verified_session,
    f2_step_up_keeps_the_sessions_absolute_lifetime,
    f2_strong_pages_need_a_password_typed_within_the_reauth_window,
    f3_wrong_current_passwords_on_the_password_page_are_throttled_and_audited,
    f4_a_guesser_cannot_lock_a_user_out_of_a_browser_they_signed_in_with,
    f4_a_device_cookie_for_another_user_or_forged_gives_no_budget,
    f4_device_cookies_from_before_a_password_change_give_no_budget_after_it,
    f4_a_revocation_leaves_the_users_own_browsers_their_budget,
    f4_an_app_with_its_device_token_keeps_signing_in_during_a_lockout,
    f4_a_locked_account_unlocks_by_itself_and_starts_a_fresh_count,
    f6_a_demoted_admin_loses_the_admin_pages_at_the_next_check,
    f9_cookies_planted_without_the_host_prefix_are_ignored,
    f10_an_issuing_step_in_a_custom_flow_refuses_without_a_recent_password,
);

fn login_body(user: &str, password: &str, remember: bool, device: Option<&str>) -> String {
    json!({"username": user, "password": password, "remember_me": remember, "device_key": device})
        .to_string()
}

async fn api_login(app: &Browser, body: &str) -> (u16, Value) {
    let (status, _, json) = app.api("POST", "/api/v1/login", None, Some(body)).await;
    (status, json)
}

async fn ask_for_long_lived(app: &Browser, bearer: &str, device: &str) -> (u16, Value) {
    let ask = json!({"remember_me": true, "device_key": device}).to_string();
    let (status, _, body) = app
        .api("POST", "/api/v1/login", Some(bearer), Some(&ask))
        .await;
    (status, body)
}

/// Finding 1: an access token from a password sign-in asked for new
/// long-lived tokens (and a fresh access token) forever, under any device
/// key it liked.
async fn f1_a_bearer_cannot_mint_long_lived_tokens_past_the_reauth_window(db: TestDb) {
    let server = TestServer::start_with(db, |b| b.reauth_window(Duration::from_secs(300)));
    let alice = server.add_user("alice", "correct horse", false);
    let mut browser = server.browser();
    browser.login("alice", "correct horse", true).await;
    let app = server.browser();
    let body = login_body("alice", "correct horse", false, Some("phone"));
    let (status, first) = api_login(&app, &body).await;
    assert_eq!(status, 200, "{first}");
    let mut bearer = first["access_token"].as_str().unwrap().to_owned();
    // Made-up device keys would push the real devices out through the cap.
    for made_up in ["a", "b"] {
        let (status, body) = ask_for_long_lived(&app, &bearer, made_up).await;
        assert_eq!(status, 403, "{made_up}: {body}");
    }
    // Its own device, within the window: allowed, and the derived token
    // (derived later) may ask again while the *password* is recent.
    for at in [0, 200] {
        server.clock.advance(Duration::from_secs(at));
        let (status, body) = ask_for_long_lived(&app, &bearer, "phone").await;
        assert_eq!(status, 200, "{body}");
        bearer = body["access_token"].as_str().unwrap().to_owned();
    }
    assert_eq!(
        server.tokens_of(&alice).len(),
        2,
        "the browser's and the phone's"
    );
    // Past the window (counted from the password, not from the last
    // derivation), the derived token may no longer mint anything.
    server.clock.advance(Duration::from_secs(101));
    let (status, body) = ask_for_long_lived(&app, &bearer, "phone").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "password_required");
    assert_eq!(server.tokens_of(&alice).len(), 2, "nothing issued");
    // The access token itself still reads /me until it expires.
    let (status, _, me) = app.api("GET", "/api/v1/me", Some(&bearer), None).await;
    assert_eq!(status, 200, "{me}");
}

/// Finding 1, the other half: each derived access token used to get a fresh
/// 15 minutes.
async fn f1_a_derived_access_token_never_outlives_the_token_presented(db: TestDb) {
    let server = TestServer::start(db);
    server.add_user("alice", "correct horse", false);
    let app = server.browser();
    let body = login_body("alice", "correct horse", false, Some("phone"));
    let (_, first) = api_login(&app, &body).await;
    let expires_in = first["expires_in"].as_u64().unwrap();
    server.clock.advance(Duration::from_secs(600));
    let bearer = first["access_token"].as_str().unwrap();
    let (status, derived) = ask_for_long_lived(&app, bearer, "phone").await;
    assert_eq!(status, 200, "{derived}");
    assert!(
        derived["expires_in"].as_u64().unwrap() <= expires_in - 600,
        "derived {derived} outlives the original ({expires_in} s from the start)"
    );
    let derived = derived["access_token"].as_str().unwrap();
    server.clock.advance(Duration::from_secs(expires_in - 600));
    let (status, _, body) = app.api("GET", "/api/v1/me", Some(derived), None).await;
    assert_eq!(status, 401, "expired with the original: {body}");
}

/// Posts the step-up form of `browser`'s session with `password`, as an
/// attacker would: straight to the POST, with the session's CSRF token
/// (the form itself is not shown to a session whose password is recent).
async fn step_up(browser: &mut Browser, password: &str) -> common::Page {
    let csrf = browser.get("/").await.csrf();
    browser
        .post(
            "/login/step-up",
            &[
                ("csrf_token", &csrf),
                ("password", password),
                ("next", "/account/password"),
            ],
        )
        .await
}

fn audit_count(server: &TestServer, kind: &str) -> usize {
    server
        .stores()
        .audit
        .list(Some(kind), None, None, 1000)
        .unwrap()
        .len()
}

/// Finding 2: step-up skipped the password for a session that had typed one.
async fn f2_step_up_checks_the_password_of_a_password_verified_session(db: TestDb) {
    let server = TestServer::start(db);
    server.add_user("alice", "correct horse", false);
    let mut browser = server.browser();
    assert_eq!(
        browser.login("alice", "correct horse", false).await.status,
        303
    );
    let res = step_up(&mut browser, "x").await;
    assert_eq!(
        res.status,
        401,
        "a wrong password is wrong: {:?}",
        res.location()
    );
    assert_eq!(audit_count(&server, "step_up"), 0, "no false step_up row");
    assert_eq!(audit_count(&server, "sign_in_failed"), 1);
    let res = step_up(&mut browser, "correct horse").await;
    assert_eq!(res.status, 303);
    assert_eq!(audit_count(&server, "step_up"), 1);
}

/// Finding 2: a step-up restarted the session's 12-hour lifetime, so a
/// copied session cookie could be kept alive forever.
async fn f2_step_up_keeps_the_sessions_absolute_lifetime(db: TestDb) {
    let server = TestServer::start(db);
    server.add_user("alice", "correct horse", false);
    let mut browser = server.browser();
    browser.login("alice", "correct horse", false).await;
    server.clock.advance(Duration::from_secs(11 * 3600));
    assert_eq!(step_up(&mut browser, "correct horse").await.status, 303);
    server.clock.advance(Duration::from_secs(3600));
    let res = browser.get("/").await;
    assert_eq!(res.status, 303, "ended 12 hours after the sign-in");
}

/// Sudo mode: the password proves itself for the re-auth window only.
async fn f2_strong_pages_need_a_password_typed_within_the_reauth_window(db: TestDb) {
    let server = TestServer::start_with(db, |b| b.reauth_window(Duration::from_secs(300)));
    server.add_user("alice", "correct horse", false);
    let mut browser = server.browser();
    browser.login("alice", "correct horse", false).await;
    assert_eq!(browser.get("/account/password").await.status, 200);
    server.clock.advance(Duration::from_secs(301));
    let res = browser.get("/account/password").await;
    assert_eq!(res.status, 303);
    assert!(
        res.location().unwrap().starts_with("/login/step-up?next="),
        "{:?}",
        res.location()
    );
    // The step-up form asks for it (it no longer passes straight through).
    let form = browser.get("/login/step-up?next=/account/password").await;
    assert_eq!(form.status, 200);
    assert_eq!(step_up(&mut browser, "correct horse").await.status, 303);
    assert_eq!(browser.get("/account/password").await.status, 200);
}

/// Posts the password form with `current` as the current password.
async fn change_password(browser: &mut Browser, current: &str) -> common::Page {
    let form = browser.get("/account/password").await;
    assert_eq!(form.status, 200, "{:?}", form.location());
    browser
        .post(
            "/account/password",
            &[
                ("csrf_token", &form.csrf()),
                ("current_password", current),
                ("new_password", "a new long password"),
                ("confirm_password", "a new long password"),
            ],
        )
        .await
}

/// Finding 3: the current-password check had no throttling and no audit.
/// Here from a copied session (no device cookie): it spends the account's
/// budget, as every other password check of that account does.
async fn f3_wrong_current_passwords_on_the_password_page_are_throttled_and_audited(db: TestDb) {
    let server = TestServer::start_with(db, |b| b.max_failed_logins(3));
    server.add_user("alice", "correct horse", false);
    let mut browser = server.browser();
    browser.login("alice", "correct horse", false).await;
    browser.drop_cookie(DEVICE);
    for _ in 0..3 {
        assert_eq!(change_password(&mut browser, "guess").await.status, 401);
    }
    let res = change_password(&mut browser, "correct horse").await;
    assert_eq!(res.status, 429, "throttled even with the right one");
    assert!(res.header("retry-after").is_some());
    let failed = server
        .stores()
        .audit
        .list(Some("sign_in_failed"), None, None, 100)
        .unwrap();
    assert_eq!(failed.len(), 3);
    assert!(failed.iter().all(|e| e.detail == "password change"));
    let res = server
        .browser()
        .login("alice", "correct horse", false)
        .await;
    assert_eq!(
        res.status, 429,
        "one budget for every password check of the account"
    );
    server.clock.advance(Duration::from_secs(301));
    let mut fresh = server.browser();
    assert_eq!(
        fresh.login("alice", "correct horse", false).await.status,
        303,
        "the password did not change"
    );
}

/// Fails a password sign-in of `user` from a client with no cookies.
async fn fail_from_anywhere(server: &TestServer, user: &str, times: usize) {
    for _ in 0..times {
        let status = server.browser().login(user, "wrong", false).await.status;
        assert!(status == 401 || status == 429, "{status}");
    }
}

/// Finding 4: five wrong tries from anywhere locked every client out.
async fn f4_a_guesser_cannot_lock_a_user_out_of_a_browser_they_signed_in_with(db: TestDb) {
    let server = TestServer::start_with(db, |b| b.max_failed_logins(3));
    server.add_user("alice", "correct horse", false);
    let mut own = server.browser();
    assert_eq!(own.login("alice", "correct horse", false).await.status, 303);
    assert!(
        own.cookie(DEVICE).is_some(),
        "a device cookie after the password"
    );
    own.logout().await;

    fail_from_anywhere(&server, "alice", 5).await;
    let res = server
        .browser()
        .login("alice", "correct horse", false)
        .await;
    assert_eq!(res.status, 429, "untrusted clients are locked out");
    let res = own.login("alice", "correct horse", false).await;
    assert_eq!(res.status, 303, "the user's own browser is not");

    // The browser's own budget is its own: spent, it is throttled too.
    own.logout().await;
    for _ in 0..3 {
        assert_eq!(own.login("alice", "wrong", false).await.status, 401);
    }
    assert_eq!(own.login("alice", "correct horse", false).await.status, 429);
}

async fn f4_a_device_cookie_for_another_user_or_forged_gives_no_budget(db: TestDb) {
    let server = TestServer::start_with(db, |b| b.max_failed_logins(3));
    server.add_user("alice", "correct horse", false);
    server.add_user("mallory", "mallory's own", false);
    let mut attacker = server.browser();
    attacker.login("mallory", "mallory's own", false).await;
    let mallorys = attacker.cookie(DEVICE).unwrap();
    attacker.logout().await;
    fail_from_anywhere(&server, "alice", 3).await;
    for cookie in [mallorys.clone(), mallorys.replacen("d3.", "d3.1", 1)] {
        let mut client = server.browser();
        client.set_cookie(DEVICE, &cookie);
        let res = client.login("alice", "correct horse", false).await;
        assert_eq!(res.status, 429, "{cookie} is no pass for alice");
    }
}

/// A later review: whoever once knew the password could keep the device
/// cookies of as many sign-ins as they liked, and after the user changed
/// it guess the new one with a budget for each. A device cookie now gives
/// a budget only under the epoch it was issued in; the user's own browser
/// gets a new one with the change.
async fn f4_device_cookies_from_before_a_password_change_give_no_budget_after_it(db: TestDb) {
    let server = TestServer::start_with(db, |b| b.max_failed_logins(3));
    server.add_user("alice", "correct horse", false);
    let mut kept = Vec::new();
    for _ in 0..2 {
        let mut thief = server.browser();
        assert_eq!(
            thief.login("alice", "correct horse", false).await.status,
            303
        );
        kept.push(thief.cookie(DEVICE).expect("a device cookie"));
        thief.logout().await;
    }
    let mut own = server.browser();
    assert_eq!(own.login("alice", "correct horse", false).await.status, 303);
    let form = own.get("/account/password").await;
    let res = own
        .post(
            "/account/password",
            &[
                ("csrf_token", &form.csrf()),
                ("current_password", "correct horse"),
                ("new_password", "a brand new password"),
                ("confirm_password", "a brand new password"),
            ],
        )
        .await;
    assert_eq!(res.status, 303, "changed");

    let mut checked = 0;
    for cookie in kept.iter().chain(kept.iter()).chain(kept.iter()) {
        let mut guesser = server.browser();
        guesser.set_cookie(DEVICE, cookie);
        match guesser.login("alice", "a guess", false).await.status {
            401 => checked += 1,
            429 => {}
            status => panic!("{status}"),
        }
    }
    assert_eq!(
        checked, 3,
        "one budget, the account's, not one a kept cookie"
    );
    own.logout().await;
    let res = own.login("alice", "a brand new password", false).await;
    assert_eq!(
        res.status, 303,
        "the user's own browser keeps a budget of its own"
    );
}

/// A review of the fix above: binding device cookies to the auth epoch
/// voided them at every revocation too, so whoever set one off (a stale
/// copy of a cookie presented as theft, say) could then lock the user out
/// of every browser. Only a password change voids them.
async fn f4_a_revocation_leaves_the_users_own_browsers_their_budget(db: TestDb) {
    let server = TestServer::start_with(db, |b| b.max_failed_logins(3));
    let alice = server.add_user("alice", "correct horse", false);
    let mut own = server.browser();
    assert_eq!(own.login("alice", "correct horse", false).await.status, 303);
    own.logout().await;
    let epoch = server.stores().state.auth_epoch(&alice).unwrap();
    assert!(
        server
            .stores()
            .state
            .bump_epoch_from(&alice, epoch)
            .unwrap()
            .is_some(),
        "everything of alice's revoked"
    );
    fail_from_anywhere(&server, "alice", 5).await;
    let res = own.login("alice", "correct horse", false).await;
    assert_eq!(res.status, 303, "the user's own browser keeps its budget");
}

/// Finding 4 for apps: the device token of an API sign-in is the app's
/// device cookie.
async fn f4_an_app_with_its_device_token_keeps_signing_in_during_a_lockout(db: TestDb) {
    let server = TestServer::start_with(db, |b| b.max_failed_logins(3));
    server.add_user("alice", "correct horse", false);
    let app = server.browser();
    let (status, first) = api_login(&app, &login_body("alice", "correct horse", false, None)).await;
    assert_eq!(status, 200);
    let device_token = first["device_token"]
        .as_str()
        .expect("device token")
        .to_owned();
    fail_from_anywhere(&server, "alice", 3).await;
    let (status, _) = api_login(&app, &login_body("alice", "correct horse", false, None)).await;
    assert_eq!(status, 429, "an app without its token is locked out");
    let body =
        json!({"username": "alice", "password": "correct horse", "device_token": device_token});
    let (status, body) = api_login(&app, &body.to_string()).await;
    assert_eq!(status, 200, "{body}");
}

/// Finding 4: counters decay; one wrong try after the lockout no longer
/// locks the account again at once.
async fn f4_a_locked_account_unlocks_by_itself_and_starts_a_fresh_count(db: TestDb) {
    let server = TestServer::start_with(db, |b| b.max_failed_logins(3));
    server.add_user("alice", "correct horse", false);
    fail_from_anywhere(&server, "alice", 3).await;
    assert_eq!(
        server
            .browser()
            .login("alice", "correct horse", false)
            .await
            .status,
        429
    );
    server.clock.advance(Duration::from_secs(301));
    fail_from_anywhere(&server, "alice", 1).await;
    assert_eq!(
        server
            .browser()
            .login("alice", "correct horse", false)
            .await
            .status,
        303,
        "one failure after the lockout is one, not four"
    );
}

/// Finding 6: `is_admin` was cached in the session until the next sign-in.
async fn f6_a_demoted_admin_loses_the_admin_pages_at_the_next_check(db: TestDb) {
    let server = TestServer::start(db);
    let root = server.add_user("root", "admin password", true);
    let mut admin = server.browser();
    admin.login("root", "admin password", false).await;
    assert_eq!(admin.get("/admin/tokens").await.status, 200);
    assert!(server.users().set_admin(&root, false).unwrap());
    assert_eq!(admin.get("/admin/tokens").await.status, 403);
    assert_eq!(admin.get("/").await.status, 200, "still signed in");
}

/// Finding 9: without the `__Host-` prefix a sibling subdomain could plant
/// a `remember_me` or `session` cookie (login CSRF into its own account).
async fn f9_cookies_planted_without_the_host_prefix_are_ignored(db: TestDb) {
    let server = TestServer::start(db);
    server.add_user("mallory", "mallory's own", false);
    let mut attacker = server.browser();
    let res = attacker.login("mallory", "mallory's own", true).await;
    for name in [RM, SESSION, DEVICE] {
        let cookie = res.set_cookie(name).unwrap_or_else(|| panic!("{name} set"));
        assert!(cookie.secure().unwrap_or(false), "{name} is Secure");
        assert_eq!(cookie.path(), Some("/"), "{name}");
        assert!(cookie.domain().is_none(), "{name} has no Domain");
    }
    let remember = attacker.cookie(RM).unwrap();
    let session = attacker.cookie(SESSION).unwrap();
    let device = attacker.cookie(DEVICE).unwrap();
    let mut victim = server.browser();
    victim.set_cookie("remember_me", &remember);
    victim.set_cookie("session", &session);
    victim.set_cookie("device", &device);
    assert_eq!(victim.get("/").await.status, 303, "nobody is signed in");
    // A planted plain `device` cookie gives no device budget either.
    fail_from_anywhere(&server, "mallory", 5).await;
    let res = victim.login("mallory", "mallory's own", false).await;
    assert_eq!(res.status, 429, "the plain name is not read");
    let mut control = server.browser();
    control.set_cookie(RM, &remember);
    assert_eq!(control.get("/").await.status, 200, "the real name works");

    // Plain HTTP development: plain names, as the browser would refuse the prefix.
    let plain = server.restart(|b| b.cookie_secure(false));
    plain.add_user("bob", "bob's password", false);
    let res = plain.browser().login("bob", "bob's password", true).await;
    assert!(res.set_cookie("remember_me").is_some());
    assert!(res.set_cookie("session").is_some());
    assert!(res.set_cookie(RM).is_none());
}

/// Finding 10: the issuing step relied on the flow's precondition, so a
/// custom flow without it let a remember-me cookie mint new tokens.
async fn f10_an_issuing_step_in_a_custom_flow_refuses_without_a_recent_password(db: TestDb) {
    use rememberme::flow::{
        ClientInfo, Failure, IDENTIFY, ISSUE, Progress, RememberMeIdentifyStep,
        RememberMeIssueStep, StepContext, StepDef,
    };
    use rememberme::flow::{Flow, FlowKind, Tag};
    let server = TestServer::start(db);
    let alice: UserId = server.add_user("alice", "correct horse", false);
    let stores = server.stores().clone();
    let config = server.config.clone();
    let cookie = rememberme::testing::remember_me_cookie(&stores, &config, &alice).unwrap();
    let careless = Flow::new(FlowKind::Login)
        .step(
            StepDef::new(IDENTIFY, RememberMeIdentifyStep)
                .tags_on_success([Tag::WEAK_AUTHENTICATION]),
        )
        .step(StepDef::new(ISSUE, RememberMeIssueStep));
    let client = ClientInfo::default();
    let mut ctx = StepContext::new(&stores, &config, config.now(), &client);
    ctx.remember_cookie = Some(cookie.value().as_bytes());
    let mut state = careless.start(None);
    let progress = careless.advance(&mut state, &mut ctx).unwrap();
    assert_eq!(
        progress,
        Progress::Failed {
            step: ISSUE,
            failure: Failure::PasswordRequired
        }
    );
    assert_eq!(server.tokens_of(&alice).len(), 1, "no second token");
}
