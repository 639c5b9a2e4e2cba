//! Rejections fit the request (issue 15): a page gets a 303 to the form, a
//! JSON client a 401 it can read, htmx an `HX-Redirect` back to the page
//! (`HX-Current-URL`) the fragment belongs to; library error
//! bodies are minimal, with nothing of the demo's in them.

mod common;

use common::{Browser, TestDb, TestServer};

#[actix_web::test]
async fn a_request_that_must_sign_in_is_answered_as_it_asked() {
    let server = TestServer::start(TestDb::sqlite());
    let with = |headers: &[(&str, &str)]| {
        Browser::with_headers(&server.base, "rememberme-tests/1.0", headers)
    };
    let page = with(&[("accept", "text/html,application/xhtml+xml")])
        .get("/account/devices")
        .await;
    assert_eq!(page.status, 303);
    assert_eq!(page.location(), Some("/login?next=%2Faccount%2Fdevices"));

    let json = with(&[("accept", "application/json")])
        .get("/account/devices")
        .await;
    assert_eq!(json.status, 401);
    let body: serde_json::Value = serde_json::from_str(&json.body).unwrap();
    assert_eq!(body["error"], "sign_in_required");
    assert_eq!(body["location"], "/login?next=%2Faccount%2Fdevices");

    assert_eq!(
        json.header("vary"),
        Some("Accept, HX-Request, HX-Current-URL")
    );
    assert!(json.header("www-authenticate").is_some());
    let htmx = with(&[("hx-request", "true")])
        .get("/account/devices")
        .await;
    assert_eq!(htmx.status, 401);
    assert_eq!(
        htmx.header("hx-redirect"),
        Some("/login?next=%2Faccount%2Fdevices")
    );
    // A fragment requested by htmx comes back to its page, not to itself:
    // `next` is loaded as a whole page. Only the page's path is kept.
    let page = format!("{}/account/devices?tab=2#top", server.base);
    let fragment = with(&[("hx-request", "true"), ("hx-current-url", &page)])
        .get("/account/password")
        .await;
    assert_eq!(fragment.status, 401);
    assert_eq!(
        fragment.header("hx-redirect"),
        Some("/login?next=%2Faccount%2Fdevices%3Ftab%3D2")
    );
    for foreign in ["https://evil.example//evil.example/", "javascript:alert(1)"] {
        let fragment = with(&[("hx-request", "true"), ("hx-current-url", foreign)])
            .get("/account/password")
            .await;
        assert_eq!(
            fragment.header("hx-redirect"),
            Some("/login?next=%2Faccount%2Fpassword"),
            "{foreign}"
        );
    }
    // A boosted request is a whole page (its HX-Current-URL is the page
    // being left), and the sign-in form is no page to come back to: both
    // come back to the request's own path.
    let boosted = with(&[
        ("hx-request", "true"),
        ("hx-boosted", "true"),
        ("hx-current-url", &page),
    ])
    .get("/account/password")
    .await;
    assert_eq!(
        boosted.header("hx-redirect"),
        Some("/login?next=%2Faccount%2Fpassword")
    );
    let form = format!("{}/login?next=%2Fx", server.base);
    let from_form = with(&[("hx-request", "true"), ("hx-current-url", &form)])
        .get("/account/password")
        .await;
    assert_eq!(
        from_form.header("hx-redirect"),
        Some("/login?next=%2Faccount%2Fpassword")
    );
    // Not htmx: the header means nothing.
    let page_request = with(&[("hx-current-url", &page)])
        .get("/account/password")
        .await;
    assert_eq!(
        page_request.location(),
        Some("/login?next=%2Faccount%2Fpassword")
    );

    // Signed in by cookie only: the step-up, in the same three ways.
    let alice = server.add_user("alice", "correct horse", false);
    let cookie =
        rememberme::testing::remember_me_cookie(server.stores(), &server.config, &alice).unwrap();
    let mut remembered = with(&[("accept", "application/json")]);
    remembered.set_cookie(cookie.name(), cookie.value());
    let json = remembered.get("/account/password").await;
    assert_eq!(json.status, 401);
    let body: serde_json::Value = serde_json::from_str(&json.body).unwrap();
    assert_eq!(body["error"], "step_up_required");
}

#[actix_web::test]
async fn library_error_pages_carry_nothing_of_the_demo() {
    let server = TestServer::start(TestDb::sqlite());
    let mut browser = server.browser();
    browser.get("/login").await;
    let refused = browser.post("/logout", &[("csrf_token", "forged")]).await;
    assert_eq!(refused.status, 403);
    assert!(refused.body.contains("403 Forbidden"));
    assert!(
        !refused.body.contains("/static/") && !refused.body.contains("class="),
        "{}",
        refused.body
    );
}
