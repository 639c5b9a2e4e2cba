//! The remember-me journey in a real browser: headless Chromium driven
//! through ChromeDriver, restarted for real on the same profile, so the
//! browser itself decides which cookies survive.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian packages
//! `chromium chromium-driver`); without them each test skips with a loud
//! line, except under `CI=true`, where it fails. Each scenario leaves a
//! screenshot of its last page in `target/browser-screenshots/`.
//!
//! Run: `cargo test --test browser`.

mod browser_support;
mod common;

use std::time::Duration;

use browser_support::{Browser, Key, Lab, scenario, webdriver_cookie};
use common::{TestDb, TestServer};

const RM: &str = "__Host-remember_me";
const SESSION: &str = "__Host-session";
const ALICE_PASSWORD: &str = "alice's long passphrase";
const ROOT_PASSWORD: &str = "root's long passphrase";

/// Each name becomes a `#[test]` that runs the `async fn` of that name in a
/// browser scenario (screenshot, failure report and clean-up included).
macro_rules! browser_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[actix_web::test]
            async fn $name() {
                scenario(stringify!($name), super::$name).await
            }
        )*
    };
}

mod chromium {
    use super::scenario;
    browser_tests!(
        a_ticked_box_brings_the_user_back_signed_in_by_remember_me_after_a_restart,
        an_unticked_box_leaves_the_user_at_the_login_form_after_a_restart,
        signing_out_removes_the_token_so_a_restart_shows_the_login_form,
        a_token_revoked_by_an_admin_in_another_browser_no_longer_signs_the_user_in,
        a_copied_cookie_that_comes_back_late_signs_out_that_series_and_is_audited,
        a_remembered_only_admin_confirms_the_password_before_the_admin_page,
        the_login_form_works_with_the_keyboard_alone,
    );
}

enum How {
    Password,
    RememberMe,
}

/// The home page of `username`, reached the way `how` says, with no form.
async fn assert_signed_in(browser: &Browser, username: &str, how: How) {
    browser.wait_for_location("/").await;
    assert_eq!(browser.text("h1").await, format!("Signed in as {username}"));
    let expected = match how {
        How::Password => "Signed in with your password.",
        How::RememberMe => "Signed in by remember-me",
    };
    let said = browser.text("#how").await;
    assert!(
        said.starts_with(expected),
        "expected {expected:?}, the page says {said:?}"
    );
    assert!(
        !browser.has("#password").await,
        "no sign-in form on the home page"
    );
}

/// The sign-in form, reached by asking for the home page.
async fn assert_at_the_login_form(browser: &Browser) {
    browser.wait_for_location("/login?next=%2F").await;
    assert_eq!(browser.text("h1").await, "Sign in");
    assert!(
        browser
            .find("#username")
            .await
            .is_displayed()
            .await
            .unwrap()
    );
    assert!(!browser.has("#how").await);
}

async fn a_ticked_box_brings_the_user_back_signed_in_by_remember_me_after_a_restart(lab: Lab) {
    let server = TestServer::start(TestDb::sqlite());
    let alice = server.add_user("alice", ALICE_PASSWORD, false);
    let browser = lab.browser("alice", &server.base).await;

    browser.sign_in("alice", ALICE_PASSWORD, true).await;
    assert_signed_in(&browser, "alice", How::Password).await;
    let before = browser.cookie(RM).await.expect("remember-me cookie");
    assert_eq!(before.http_only(), Some(true));
    assert_eq!(before.secure(), Some(true));
    assert!(before.expires_datetime().is_some(), "a persistent cookie");
    let session = browser.cookie(SESSION).await.expect("session cookie");
    assert!(
        session.expires_datetime().is_none(),
        "the session cookie ends with the browser"
    );

    browser.restart().await;
    browser.open("/").await;

    assert_signed_in(&browser, "alice", How::RememberMe).await;
    let after = browser.cookie(RM).await.expect("remember-me cookie");
    assert_ne!(after.value(), before.value(), "the token rotated on use");
    assert_eq!(server.tokens_of(&alice).len(), 1, "same series, one row");
}

async fn an_unticked_box_leaves_the_user_at_the_login_form_after_a_restart(lab: Lab) {
    let server = TestServer::start(TestDb::sqlite());
    let alice = server.add_user("alice", ALICE_PASSWORD, false);
    let browser = lab.browser("alice", &server.base).await;

    browser.sign_in("alice", ALICE_PASSWORD, false).await;
    assert_signed_in(&browser, "alice", How::Password).await;
    assert!(browser.cookie(RM).await.is_none());
    assert!(server.tokens_of(&alice).is_empty());

    browser.restart().await;
    browser.open("/").await;

    assert_at_the_login_form(&browser).await;
}

async fn signing_out_removes_the_token_so_a_restart_shows_the_login_form(lab: Lab) {
    let server = TestServer::start(TestDb::sqlite());
    let alice = server.add_user("alice", ALICE_PASSWORD, false);
    let browser = lab.browser("alice", &server.base).await;
    browser.sign_in("alice", ALICE_PASSWORD, true).await;
    assert_eq!(server.tokens_of(&alice).len(), 1);

    browser.click("form[action='/logout'] button").await;

    browser.wait_for_location("/login").await;
    browser.find("#username").await;
    assert!(browser.cookie(RM).await.is_none(), "cookie removed");
    assert!(server.tokens_of(&alice).is_empty(), "row deleted");

    browser.restart().await;
    browser.open("/").await;

    assert_at_the_login_form(&browser).await;
}

async fn a_token_revoked_by_an_admin_in_another_browser_no_longer_signs_the_user_in(lab: Lab) {
    let server = TestServer::start(TestDb::sqlite());
    let alice = server.add_user("alice", ALICE_PASSWORD, false);
    server.add_user("root", ROOT_PASSWORD, true);
    let user = lab.browser("alice", &server.base).await;
    user.sign_in("alice", ALICE_PASSWORD, true).await;
    assert_eq!(server.tokens_of(&alice).len(), 1);

    let admin = lab.browser("root", &server.base).await;
    admin.sign_in("root", ROOT_PASSWORD, false).await;
    admin.open("/admin/tokens").await;
    assert_eq!(admin.text("h1").await, "Remember-me tokens");
    assert_eq!(admin.texts("tbody td:first-child").await, ["alice"]);
    admin
        .click_xpath(
            "//tbody/tr[td[1][normalize-space()='alice']]//button[normalize-space()='Revoke']",
        )
        .await;
    assert_eq!(admin.text(".flash").await, "Token revoked.");
    assert!(admin.has("p.empty").await, "the table is empty");
    assert!(server.tokens_of(&alice).is_empty());

    user.restart().await;
    user.open("/").await;

    assert_at_the_login_form(&user).await;
    assert!(
        user.cookie(RM).await.is_none(),
        "the dead cookie was removed"
    );
}

async fn a_copied_cookie_that_comes_back_late_signs_out_that_series_and_is_audited(lab: Lab) {
    let server = TestServer::start(TestDb::sqlite());
    let alice = server.add_user("alice", ALICE_PASSWORD, false);
    server.add_user("root", ROOT_PASSWORD, true);
    let owner = lab.browser("alice", &server.base).await;
    owner.sign_in("alice", ALICE_PASSWORD, true).await;
    let stolen = owner.cookie(RM).await.expect("remember-me cookie");

    // The copy is used first: it rotates the token, so the owner's browser
    // now holds the token from just before the rotation.
    let thief = lab.browser("thief", &server.base).await;
    thief.open("/healthz").await;
    thief.add_cookie(stolen.clone()).await;
    thief.open("/").await;
    assert_signed_in(&thief, "alice", How::RememberMe).await;
    let rotated = thief.cookie(RM).await.unwrap();
    assert_ne!(rotated.value(), stolen.value());

    // Within the grace window the previous token is accepted and handed the
    // current one: parallel requests (or a lost response) converge.
    owner.restart().await;
    owner.open("/").await;
    assert_signed_in(&owner, "alice", How::RememberMe).await;
    assert_eq!(owner.cookie(RM).await.unwrap().value(), rotated.value());

    // The owner's next visit rotates again: the thief now holds the token
    // one rotation back, and comes back after the grace window.
    owner.restart().await;
    owner.open("/").await;
    assert_signed_in(&owner, "alice", How::RememberMe).await;
    server
        .clock
        .advance(server.config.rotation_grace() + Duration::from_secs(1));
    thief.restart().await;
    thief.open("/").await;
    assert_at_the_login_form(&thief).await;
    assert!(thief.cookie(RM).await.is_none());
    assert!(server.tokens_of(&alice).is_empty(), "that series ended");
    assert!(!server.audit_kinds().iter().any(|k| k == "theft_detected"));

    // The owner's open session was bound to the series: it ends too.
    owner.open("/").await;
    assert_at_the_login_form(&owner).await;

    let admin = lab.browser("root", &server.base).await;
    admin.sign_in("root", ROOT_PASSWORD, false).await;
    admin.open("/admin/audit").await;
    assert_eq!(admin.text("h1").await, "Audit log");
    let kinds = admin.texts("tbody td code").await;
    assert!(
        kinds.iter().any(|k| k == "possible_theft"),
        "audit kinds on the page: {kinds:?}"
    );
    admin.select("#kind", "possible_theft").await;
    admin.click("form.filter button").await;
    admin
        .wait_for_location("/admin/audit?kind=possible_theft&user=")
        .await;
    assert_eq!(
        admin.texts("tbody td:nth-child(2)").await,
        ["possible_theft"]
    );
    assert_eq!(admin.texts("tbody td:nth-child(3)").await, ["alice"]);
}

async fn a_remembered_only_admin_confirms_the_password_before_the_admin_page(lab: Lab) {
    let server = TestServer::start(TestDb::sqlite());
    let root = server.add_user("root", ROOT_PASSWORD, true);
    // A cookie minted by the crate's test helper, as if "Keep me logged in"
    // had been ticked in this profile earlier.
    let minted = rememberme::testing::remember_me_cookie(server.stores(), &server.config, &root)
        .expect("token issued");
    let browser = lab.browser("root", &server.base).await;
    browser.open("/healthz").await;
    browser.add_cookie(webdriver_cookie(&minted)).await;

    browser.open("/").await;
    assert_signed_in(&browser, "root", How::RememberMe).await;

    browser.open("/admin/tokens").await;
    browser
        .wait_for_location("/login/step-up?next=%2Fadmin%2Ftokens")
        .await;
    assert_eq!(browser.text("h1").await, "Confirm your password");
    assert!(!browser.has("#username").await, "the user is already known");
    browser.fill("#password", ROOT_PASSWORD).await;
    browser.click("form button[type='submit']").await;

    browser.wait_for_location("/admin/tokens").await;
    assert_eq!(browser.text("h1").await, "Remember-me tokens");
    assert_eq!(browser.texts("tbody td:first-child").await, ["root"]);
}

async fn the_login_form_works_with_the_keyboard_alone(lab: Lab) {
    let server = TestServer::start(TestDb::sqlite());
    let alice = server.add_user("alice", ALICE_PASSWORD, false);
    let browser = lab.browser("alice", &server.base).await;
    browser.open("/login").await;

    let label = browser.find("label[for='remember_me']").await;
    assert!(
        label.is_displayed().await.unwrap(),
        "the box's label is visible"
    );
    assert_eq!(label.text().await.unwrap(), "Keep me logged in");

    assert_eq!(browser.focused_id().await, "username", "autofocus");
    browser.press("alice".chars()).await;
    browser.press([Key::Tab.into()]).await;
    assert_eq!(browser.focused_id().await, "password");
    browser.press(ALICE_PASSWORD.chars()).await;
    browser.press([Key::Tab.into()]).await;
    assert_eq!(browser.focused_id().await, "remember_me");
    browser.press([Key::Space.into()]).await;
    assert!(
        browser
            .find("#remember_me")
            .await
            .is_selected()
            .await
            .unwrap()
    );
    browser.press([Key::Enter.into()]).await;

    assert_signed_in(&browser, "alice", How::Password).await;
    assert!(browser.cookie(RM).await.is_some(), "remember-me cookie set");
    assert_eq!(server.tokens_of(&alice).len(), 1);
}
