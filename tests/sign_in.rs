//! `Auth::sign_in` (issue 15): a user the app authenticated itself signs in
//! through the flow's rules. Strong: the tags of a password, a token if
//! asked for, the audit row. Weak: no token whatever is asked, strong pages
//! refused. An id the app's directory does not know signs nobody in. The
//! session is renewed (a planted session id is worth nothing after it).

mod common;

use actix_web::{App, HttpResponse, test, web};
use common::TestDb;
use rememberme::{
    Auth, AuthError, Database, RememberMe, RememberMeConfig, SignIn, StrongAuth, UserId,
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

async fn signs_in_a_user_the_app_authenticated(db: TestDb) {
    let database = Database::connect(&db.url, 2).unwrap();
    let users = common::users_on(&database);
    let alice = users.create("alice", "alice-password", false).unwrap();
    let stores = common::stores_on(&database);
    let config = RememberMeConfig::builder().cookie_secure(false).build();
    let layer = RememberMe::new(stores.clone(), config.clone());
    let app = test::init_service(
        App::new()
            .route("/sign-in", web::get().to(sign_in))
            .route(
                "/strong",
                web::get().to(|StrongAuth(user): StrongAuth| async move { user.username }),
            )
            .route(
                "/session",
                web::get().to(|auth: Auth| async move { auth.session_id().unwrap_or_default() }),
            )
            .wrap(layer.clone())
            .wrap(rememberme::session_middleware(
                actix_web::cookie::Key::generate(),
                &config,
            )),
    )
    .await;
    let get = |uri: String, cookies: Vec<actix_web::cookie::Cookie<'static>>| {
        let mut req = test::TestRequest::get().uri(&uri);
        for cookie in cookies {
            req = req.cookie(cookie);
        }
        req.to_request()
    };
    use common::cookie_of;

    // An unknown id: refused, nothing issued.
    let res = test::call_service(
        &app,
        get("/sign-in?id=404&strong=true&remember=true".into(), vec![]),
    )
    .await;
    assert_eq!(res.status(), 403);
    assert!(cookie_of(&res, "remember_me").is_none());

    // Strong with "Keep me logged in": a token, the password's tags, the
    // session renewed from the one planted before.
    let planted = test::call_service(&app, get("/session".into(), vec![])).await;
    let planted = cookie_of(&planted, "session");
    let uri = format!("/sign-in?id={alice}&strong=true&remember=true");
    let res = test::call_service(&app, get(uri, planted.clone().into_iter().collect())).await;
    assert_eq!(res.status(), 200);
    let remember = cookie_of(&res, "remember_me").expect("a remember-me cookie");
    let session = cookie_of(&res, "session").expect("a new session");
    assert_ne!(Some(&session), planted.as_ref(), "session renewed");
    let body = test::read_body(res).await;
    assert_eq!(body, "alice remembered=true strong=true");
    let res = test::call_service(&app, get("/strong".into(), vec![session])).await;
    assert_eq!(res.status(), 200, "a strong sign-in passes strong pages");
    assert_eq!(stores.tokens.list_for_user(&alice).unwrap().len(), 1);
    // Again, by the browser that carries the cookie: its token is
    // replaced, not added to (one per browser).
    let uri = format!("/sign-in?id={alice}&strong=true&remember=true");
    let res = test::call_service(&app, get(uri, vec![remember])).await;
    assert_eq!(res.status(), 200);
    let remember = cookie_of(&res, "remember_me").expect("a new remember-me cookie");
    assert_eq!(
        stores.tokens.list_for_user(&alice).unwrap().len(),
        1,
        "the browser's token replaced"
    );
    // The cookie alone signs alice in again, weakly.
    let res = test::call_service(&app, get("/strong".into(), vec![remember])).await;
    assert_eq!(res.status(), 303, "a cookie sign-in is weak: step-up first");

    // Weak, asking for a token all the same: none, and strong pages refuse.
    let uri = format!("/sign-in?id={alice}&strong=false&remember=true");
    let res = test::call_service(&app, get(uri, vec![])).await;
    assert_eq!(res.status(), 200);
    assert!(cookie_of(&res, "remember_me").is_none(), "never a token");
    let session = cookie_of(&res, "session").unwrap();
    assert_eq!(
        test::read_body(res).await,
        "alice remembered=false strong=false"
    );
    let res = test::call_service(&app, get("/strong".into(), vec![session])).await;
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

on_both_backends!(signs_in_a_user_the_app_authenticated);
