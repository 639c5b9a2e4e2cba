//! `Auth::sign_in` (issue 15): a user the app authenticated itself signs in
//! through the flow's rules. Strong: the tags of a password, a token if
//! asked for, the audit row. Weak: no token whatever is asked, strong pages
//! refused. An id the app's directory does not know signs nobody in. The
//! session is renewed (a planted session id is worth nothing after it).

mod common;

use std::time::Duration;

use actix_web::cookie::Cookie;
use actix_web::{App, HttpResponse, test, web};
use common::{TestDb, cookie_of};
use rememberme::clock::ManualClock;
use rememberme::{
    Auth, AuthError, CurrentUser, Database, RememberMe, RememberMeConfig, SignIn, StrongAuth,
    UserId,
};

#[derive(serde::Deserialize)]
struct How {
    id: String,
    strong: bool,
    remember: bool,
}

async fn sign_in(auth: Auth, how: web::Query<How>) -> Result<HttpResponse, AuthError> {
    let kind = if how.strong {
        SignIn::strong("test provider")
    } else {
        SignIn::weak("test link")
    };
    let done = auth
        .sign_in(
            &UserId::from(how.id.as_str()),
            kind.remember_me(how.remember),
        )
        .await?;
    Ok(HttpResponse::Ok().body(format!(
        "{} remembered={} strong={}",
        done.user.username,
        done.remembered,
        done.user.is_strong()
    )))
}

/// The test app on `$stores` with `$config`: `GET /sign-in?id=&strong=&remember=`,
/// `/strong`, `/session` (the session's id), `/me` (who is signed in).
macro_rules! app {
    ($stores:expr, $config:expr) => {
        test::init_service(
            App::new()
                .route("/sign-in", web::get().to(sign_in))
                .route(
                    "/strong",
                    web::get().to(|StrongAuth(user): StrongAuth| async move { user.username }),
                )
                .route(
                    "/session",
                    web::get()
                        .to(|auth: Auth| async move { auth.session_id().unwrap_or_default() }),
                )
                .route(
                    "/me",
                    web::get().to(|CurrentUser(user): CurrentUser| async move { user.username }),
                )
                .wrap(RememberMe::new($stores.clone(), $config.clone()))
                .wrap(rememberme::session_middleware(
                    actix_web::cookie::Key::generate(),
                    &$config,
                )),
        )
        .await
    };
}

/// A GET of `uri` with `cookies`.
fn get(uri: String, cookies: Vec<Cookie<'static>>) -> test::TestRequest {
    cookies
        .into_iter()
        .fold(test::TestRequest::get().uri(&uri), |req, cookie| {
            req.cookie(cookie)
        })
}

async fn signs_in_a_user_the_app_authenticated(db: TestDb) {
    let database = Database::connect(&db.url, 2).unwrap();
    let users = common::users_on(&database);
    let alice = users.create("alice", "alice-password", false).unwrap();
    let stores = common::stores_on(&database);
    let config = RememberMeConfig::builder().cookie_secure(false).build();
    let app = app!(stores, config);

    // An unknown id: refused, nothing issued.
    let res = test::call_service(
        &app,
        get("/sign-in?id=404&strong=true&remember=true".into(), vec![]).to_request(),
    )
    .await;
    assert_eq!(res.status(), 403);
    assert!(cookie_of(&res, "remember_me").is_none());

    // Strong with "Keep me logged in": a token, the password's tags, the
    // session renewed from the one planted before.
    let planted = test::call_service(&app, get("/session".into(), vec![]).to_request()).await;
    let planted = cookie_of(&planted, "session");
    let uri = format!("/sign-in?id={alice}&strong=true&remember=true");
    let res = test::call_service(
        &app,
        get(uri, planted.clone().into_iter().collect()).to_request(),
    )
    .await;
    assert_eq!(res.status(), 200);
    let remember = cookie_of(&res, "remember_me").expect("a remember-me cookie");
    let session = cookie_of(&res, "session").expect("a new session");
    assert_ne!(Some(&session), planted.as_ref(), "session renewed");
    let body = test::read_body(res).await;
    assert_eq!(body, "alice remembered=true strong=true");
    let res = test::call_service(&app, get("/strong".into(), vec![session]).to_request()).await;
    assert_eq!(res.status(), 200, "a strong sign-in passes strong pages");
    assert_eq!(stores.tokens.list_for_user(&alice).unwrap().len(), 1);
    // Again, by the browser that carries the cookie: its token is
    // replaced, not added to (one per browser).
    let uri = format!("/sign-in?id={alice}&strong=true&remember=true");
    let res = test::call_service(&app, get(uri, vec![remember]).to_request()).await;
    assert_eq!(res.status(), 200);
    let remember = cookie_of(&res, "remember_me").expect("a new remember-me cookie");
    assert_eq!(
        stores.tokens.list_for_user(&alice).unwrap().len(),
        1,
        "the browser's token replaced"
    );
    // The cookie alone signs alice in again, weakly.
    let res = test::call_service(&app, get("/strong".into(), vec![remember]).to_request()).await;
    assert_eq!(res.status(), 303, "a cookie sign-in is weak: step-up first");

    // Weak, asking for a token all the same: none, and strong pages refuse.
    let uri = format!("/sign-in?id={alice}&strong=false&remember=true");
    let res = test::call_service(&app, get(uri, vec![]).to_request()).await;
    assert_eq!(res.status(), 200);
    assert!(cookie_of(&res, "remember_me").is_none(), "never a token");
    let session = cookie_of(&res, "session").unwrap();
    assert_eq!(
        test::read_body(res).await,
        "alice remembered=false strong=false"
    );
    let res = test::call_service(&app, get("/strong".into(), vec![session]).to_request()).await;
    assert_eq!(res.status(), 303);
    assert_eq!(stores.tokens.list_for_user(&alice).unwrap().len(), 1);

    // Both audited, with the app's detail.
    let events = stores
        .audit
        .list(Some("app_sign_in"), Some(&alice), None, 10)
        .unwrap();
    let details: Vec<_> = events.iter().map(|e| e.detail.as_str()).collect();
    assert_eq!(details, ["test link", "test provider", "test provider"]);
}

on_both_backends!(
    signs_in_a_user_the_app_authenticated,
    signing_in_again_over_a_forked_cookie_ends_the_forked_series,
);

/// From an attack review: `Auth::sign_in` by a browser whose session is
/// bound to a series, carrying that series' cookie after a copy rotated it
/// (a fork), replaced the cookie without judging it, and with it the only
/// sign of the fork: the copy's holder kept the series. It is judged now as
/// a password sign-in judges it: one back, the series ends
/// (`possible_theft`), and the browser gets its new token.
async fn signing_in_again_over_a_forked_cookie_ends_the_forked_series(db: TestDb) {
    let database = Database::connect(&db.url, 4).unwrap();
    let alice = common::users_on(&database)
        .create("alice", "alice-password", false)
        .unwrap();
    let stores = common::stores_on(&database);
    let clock = ManualClock::new();
    let config = RememberMeConfig::builder()
        .cookie_secure(false)
        .clock(clock.clone())
        .build();
    let app = app!(stores, config);
    let sign_in = format!("/sign-in?id={alice}&strong=true&remember=true");
    let res = test::call_service(&app, get(sign_in.clone(), vec![]).to_request()).await;
    assert_eq!(res.status(), 200);
    let victims = cookie_of(&res, "remember_me").expect("a token");
    let session = cookie_of(&res, "session").expect("a session");
    // A copy of the cookie signs in elsewhere: the series rotates past it.
    let res = test::call_service(&app, get("/me".into(), vec![victims.clone()]).to_request()).await;
    assert_eq!(res.status(), 200, "the copy signs in");
    let copys = cookie_of(&res, "remember_me").expect("rotated");
    clock.advance(Duration::from_secs(120));

    let res = test::call_service(&app, get(sign_in, vec![session, victims]).to_request()).await;
    assert_eq!(res.status(), 200);
    assert!(cookie_of(&res, "remember_me").is_some(), "a new token");
    assert!(common::audit_written(&stores, "possible_theft", "").await);
    let res = test::call_service(&app, get("/me".into(), vec![copys]).to_request()).await;
    assert_ne!(res.status(), 200, "the copy's series has ended");
    assert_eq!(stores.tokens.list_for_user(&alice).unwrap().len(), 1);
}
