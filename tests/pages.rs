//! `pages::configure` (issue 15): the crate's pages mount into an app in
//! one line, and an app replaces one by registering its own handler for
//! that route first.

use actix_web::{App, test, web};
use rememberme::{Database, DieselStore, RememberMe, RememberMeConfig, Stores};

#[actix_web::test]
async fn the_pages_mount_in_one_line_and_an_apps_own_route_comes_first() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("p.db").display());
    let database = Database::connect(&url, 2).unwrap();
    let users = rememberme::store::UsersTable::open(database.clone()).unwrap();
    let stores = Stores::new(DieselStore::new(database), users);
    let config = RememberMeConfig::default();
    let layer = RememberMe::new(stores, config.clone());
    let app = test::init_service(
        App::new()
            .route(
                "/account/password",
                web::get().to(|| async { "the app's own page" }),
            )
            .configure(rememberme::pages::configure)
            .wrap(layer)
            .wrap(rememberme::session_middleware(
                actix_web::cookie::Key::generate(),
                &config,
            )),
    )
    .await;
    let get = |uri: &str| test::TestRequest::get().uri(uri).to_request();

    let login = test::call_service(&app, get("/login")).await;
    assert_eq!(login.status(), 200);
    let body = String::from_utf8(test::read_body(login).await.to_vec()).unwrap();
    assert!(body.contains("name=\"csrf_token\""), "{body}");
    assert!(body.contains("name=\"remember_me\""));
    let css = test::call_service(&app, get("/static/style.css")).await;
    assert_eq!(css.status(), 200);
    let devices = test::call_service(&app, get("/account/devices")).await;
    assert_eq!(devices.status(), 303, "signed out: to the sign-in form");

    let replaced = test::call_service(&app, get("/account/password")).await;
    assert_eq!(replaced.status(), 200);
    assert_eq!(test::read_body(replaced).await, "the app's own page");
    let home = test::call_service(&app, get("/")).await;
    assert_eq!(home.status(), 404, "the demo's home page is not mounted");
}
