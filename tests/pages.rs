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

/// The app's own templates for the pages it chooses: the login page in its
/// layout (and its error after a wrong password), the rest the crate's.
struct AppTemplates;

impl rememberme::pages::Templates for AppTemplates {
    fn render(&self, page: rememberme::pages::PageView<'_>) -> Option<String> {
        match page {
            rememberme::pages::PageView::Login(login) => Some(format!(
                "<main class=app>{}<form action={} method=post>\
                 <input name=csrf_token value={}></form></main>",
                login.error.unwrap_or("app login"),
                login.action,
                login.csrf_token
            )),
            _ => None,
        }
    }
}

#[actix_web::test]
async fn an_app_renders_the_pages_it_chooses_in_its_own_templates() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let database = Database::connect(&url, 2).unwrap();
    let users = rememberme::store::UsersTable::open(database.clone()).unwrap();
    users.create("alice", "alice-password", false).unwrap();
    let stores = Stores::new(DieselStore::new(database), users);
    let layer = RememberMe::new(stores, RememberMeConfig::default())
        .with_session(actix_web::cookie::Key::generate());
    let app = test::init_service(
        App::new()
            .configure(rememberme::pages::configure_with(AppTemplates))
            .wrap(layer),
    )
    .await;
    let login = test::call_service(&app, test::TestRequest::get().uri("/login").to_request()).await;
    assert_eq!(login.status(), 200);
    let session = login
        .response()
        .cookies()
        .find(|c| c.name() == "__Host-session")
        .unwrap()
        .into_owned();
    let body = String::from_utf8(test::read_body(login).await.to_vec()).unwrap();
    assert!(body.starts_with("<main class=app>app login"), "{body}");
    let csrf = body
        .split("value=")
        .nth(1)
        .unwrap()
        .split('>')
        .next()
        .unwrap();

    // The app's page answers the form's result too, with the crate's status.
    let wrong = test::TestRequest::post()
        .uri("/login")
        .cookie(session.clone())
        .set_form([
            ("username", "alice"),
            ("password", "wrong-password"),
            ("csrf_token", csrf),
        ])
        .to_request();
    let wrong = test::call_service(&app, wrong).await;
    assert_eq!(wrong.status(), 401);
    let body = String::from_utf8(test::read_body(wrong).await.to_vec()).unwrap();
    assert!(
        body.contains("class=app>Wrong username or password."),
        "{body}"
    );

    // A page the app does not render is the crate's.
    let right = test::TestRequest::post()
        .uri("/login")
        .cookie(session)
        .set_form([
            ("username", "alice"),
            ("password", "alice-password"),
            ("csrf_token", csrf),
        ])
        .to_request();
    let right = test::call_service(&app, right).await;
    assert_eq!(right.status(), 303);
    let session = right
        .response()
        .cookies()
        .find(|c| c.name() == "__Host-session")
        .unwrap()
        .into_owned();
    let devices = test::TestRequest::get()
        .uri("/account/devices")
        .cookie(session)
        .to_request();
    let devices = test::call_service(&app, devices).await;
    assert_eq!(devices.status(), 200);
    let body = String::from_utf8(test::read_body(devices).await.to_vec()).unwrap();
    assert!(
        !body.contains("class=app") && body.contains("csrf_token"),
        "{body}"
    );
}
