//! Issue 14: a rotation the database committed reaches the client on every
//! response path, theft handling is all or nothing, and the connections
//! are set up so that a hung database cannot stall requests without bound.
//! (The three cases of a stale token are in tests/remember_me.rs and
//! tests/api.rs; the seal in tests/store.rs.)

mod common;

use std::sync::Arc;

use actix_web::{App, HttpResponse, test, web};
use diesel::Connection as _;
use diesel::connection::SimpleConnection as _;

use common::{After, TestDb, TestServer, database_with_alice, shut_down};
use rememberme::{RememberMe, RememberMeConfig, Stores};

const RM: &str = "__Host-remember_me";
const SESSION: &str = "__Host-session";

on_both_backends!(
    an_error_page_still_carries_the_rotated_cookie,
    a_step_failing_after_the_rotation_still_sends_the_rotated_cookie,
    a_step_panicking_after_the_rotation_still_sends_the_rotated_cookie,
    a_step_refusing_after_the_rotation_still_sends_the_rotated_cookie,
    a_directory_panicking_after_the_rotation_still_sends_the_rotated_cookie,
    without_an_access_token_secret_the_api_changes_no_token,
    theft_handling_is_all_or_nothing,
);

/// A custom login flow whose step after the identifying one fails: the
/// rotation committed, so its cookie reaches the client all the same.
async fn a_step_failing_after_the_rotation_still_sends_the_rotated_cookie(db: TestDb) {
    let fails = After(|| {
        Err(rememberme::store::StoreError::Query(
            "the app's step failed".into(),
        ))
    });
    rotated_cookie_survives(db, fails, 503, (503, "unavailable")).await;
}

/// The same with a step that panics: the rest of the sign-in fails as
/// with the store down, the rotation committed before it, and its cookie
/// still goes out.
async fn a_step_panicking_after_the_rotation_still_sends_the_rotated_cookie(db: TestDb) {
    let panics = After(|| panic!("the app's step has a bug"));
    rotated_cookie_survives(db, panics, 503, (503, "unavailable")).await;
}

/// The same with a step that refuses (a second factor the app checks by
/// itself, say): nobody signs in, and the rotated cookie still goes out.
async fn a_step_refusing_after_the_rotation_still_sends_the_rotated_cookie(db: TestDb) {
    use rememberme::flow::{Failure, StepOutcome};
    let refuses = After(|| Ok(StepOutcome::Failed(Failure::InvalidCredentials)));
    rotated_cookie_survives(db, refuses, 303, (401, "sign_in_refused")).await;
}

/// Signs in by cookie through a login flow of the identifying step and
/// `after`, which fails: served anonymously, or with `private` (a 503 as if
/// the store were down, a redirect to sign in) where the page needs a
/// sign-in, with the rotated cookie. The JSON API's refresh through the
/// same flow answers `api` (a status and an error code) with the rotated
/// long-lived token. Both with the Diesel store, whose rotations the layer
/// runs in batches before the flow, and with a store that rotates one by
/// one, inside the flow.
async fn rotated_cookie_survives(db: TestDb, after: After, private: u16, api: (u16, &str)) {
    let (database, batched, alice) = database_with_alice(&db);
    let one_by_one = common::stores_one_by_one(&database);
    assert!(batched.tokens.rotates_in_batches() && !one_by_one.tokens.rotates_in_batches());
    for stores in [batched, one_by_one] {
        rotated_token_survives_on(&stores, &alice, after, private, api).await;
    }
    assert!(database.close(std::time::Duration::from_secs(5)));
}

async fn rotated_token_survives_on(
    stores: &Stores,
    alice: &rememberme::store::UserId,
    after: After,
    private: u16,
    api: (u16, &str),
) {
    use rememberme::flow::{Flow, FlowKind, IDENTIFY, RememberMeIdentifyStep, StepDef, Tag};
    let config = RememberMeConfig::builder()
        .access_token_secret(&[7; 32])
        .build();
    let login = Flow::new(FlowKind::Login)
        .step(
            StepDef::new(IDENTIFY, RememberMeIdentifyStep)
                .tags_on_success([Tag::WEAK_AUTHENTICATION]),
        )
        .step(StepDef::new("fails", after));
    let layer = RememberMe::with_flows(stores.clone(), config.clone(), login, Flow::step_up());
    let app = test::init_service(
        App::new()
            .service(rememberme::api::scope())
            .route("/", web::get().to(|| async { HttpResponse::Ok().finish() }))
            .route(
                "/private",
                web::get().to(|_: rememberme::CurrentUser| async { HttpResponse::Ok().finish() }),
            )
            .wrap(layer.clone())
            .wrap(rememberme::session_middleware(
                actix_web::cookie::Key::generate(),
                &config,
            )),
    )
    .await;
    for (path, status) in [("/", 200), ("/private", private)] {
        let cookie = rememberme::testing::remember_me_cookie(stores, &config, alice).unwrap();
        let req = test::TestRequest::get()
            .uri(path)
            .insert_header(("cookie", format!("{RM}={}", cookie.value())))
            .to_request();
        let res = test::call_service(&app, req).await;
        assert_eq!(res.status().as_u16(), status, "{path}");
        let rotated =
            common::cookie_of(&res, RM).unwrap_or_else(|| panic!("{path}: the rotated cookie"));
        assert_newest(stores, rotated.value(), path);
    }
    let token = rememberme::testing::remember_me_cookie(stores, &config, alice).unwrap();
    let req = test::TestRequest::post()
        .uri("/api/v1/token/refresh")
        .set_json(serde_json::json!({ "long_lived_token": token.value() }))
        .to_request();
    let res = test::call_service(&app, req).await;
    assert_eq!(res.status().as_u16(), api.0, "refresh");
    assert_eq!(res.headers().get("cache-control").unwrap(), "no-store");
    let body: serde_json::Value = test::read_body_json(res).await;
    assert_eq!(body["error"], api.1);
    assert!(body["long_lived_expires_in"].as_i64().unwrap() > 0);
    let rotated = body["long_lived_token"]
        .as_str()
        .expect("the rotated token");
    assert_newest(stores, rotated, "refresh");
    drop(app);
    assert!(layer.close(std::time::Duration::from_secs(5)));
}

/// Without an access-token secret the API can answer nothing but a 500:
/// it finds out before it rotates or issues a token, so the client's token
/// stays the newest and no token is stored that no client holds.
async fn without_an_access_token_secret_the_api_changes_no_token(db: TestDb) {
    let (database, stores, alice) = database_with_alice(&db);
    let config = RememberMeConfig::default();
    let layer = RememberMe::new(stores.clone(), config.clone());
    let app = test::init_service(
        App::new()
            .service(rememberme::api::scope())
            .wrap(layer.clone())
            .wrap(rememberme::session_middleware(
                actix_web::cookie::Key::generate(),
                &config,
            )),
    )
    .await;
    let token = rememberme::testing::remember_me_cookie(&stores, &config, &alice).unwrap();
    let post = |uri: &str, body: serde_json::Value| {
        test::TestRequest::post()
            .uri(uri)
            .set_json(body)
            .to_request()
    };
    let refresh = post(
        "/api/v1/token/refresh",
        serde_json::json!({ "long_lived_token": token.value() }),
    );
    assert_eq!(
        test::call_service(&app, refresh).await.status().as_u16(),
        500
    );
    assert_newest(&stores, token.value(), "refresh");
    let login = post(
        "/api/v1/login",
        serde_json::json!({
            "username": "alice", "password": "alice-password",
            "remember_me": true, "device_key": "phone",
        }),
    );
    assert_eq!(test::call_service(&app, login).await.status().as_u16(), 500);
    assert_eq!(
        stores.tokens.list_for_user(&alice).unwrap().len(),
        1,
        "only the browser's token"
    );
    drop(app);
    shut_down(layer, stores, database);
}

/// The app's directory panics when the sign-in by cookie reads the user,
/// after the rotation committed (on the store thread that ran the
/// rotation's batch, since the rest of the sign-in runs there): the
/// request is served as with the store down, and its rotated cookie goes
/// out. With the batched Diesel store and with a store that rotates one
/// by one.
async fn a_directory_panicking_after_the_rotation_still_sends_the_rotated_cookie(db: TestDb) {
    use rememberme::store::{StoreError, User, UserDirectory, UserId};
    struct Panicking(Arc<dyn UserDirectory>);
    impl UserDirectory for Panicking {
        fn find_by_username(&self, username: &str) -> Result<Option<User>, StoreError> {
            self.0.find_by_username(username)
        }
        fn find_by_id(&self, _: &UserId) -> Result<Option<User>, StoreError> {
            panic!("the app's directory has a bug")
        }
    }
    let (database, batched, alice) = database_with_alice(&db);
    let one_by_one = common::stores_one_by_one(&database);
    for mut stores in [batched, one_by_one] {
        let config = RememberMeConfig::default();
        let minted = rememberme::testing::remember_me_cookie(&stores, &config, &alice).unwrap();
        stores.users = Arc::new(Panicking(stores.users.clone()));
        let layer = RememberMe::new(stores.clone(), config.clone());
        let app = test::init_service(
            App::new()
                .route("/", web::get().to(|| async { HttpResponse::Ok().finish() }))
                .wrap(layer.clone())
                .wrap(rememberme::session_middleware(
                    actix_web::cookie::Key::generate(),
                    &config,
                )),
        )
        .await;
        let req = test::TestRequest::get()
            .uri("/")
            .insert_header(("cookie", format!("{RM}={}", minted.value())))
            .to_request();
        let res = test::call_service(&app, req).await;
        assert_eq!(res.status().as_u16(), 200);
        let rotated = common::cookie_of(&res, RM).expect("the rotated cookie");
        assert_ne!(rotated.value(), minted.value());
        assert_newest(&stores, rotated.value(), "a panicking directory");
        drop((res, app));
        assert!(layer.close(std::time::Duration::from_secs(5)));
    }
    assert!(database.close(std::time::Duration::from_secs(5)));
}

/// Asserts that `cookie` (a remember-me cookie's value) holds the newest
/// token of its series.
fn assert_newest(stores: &Stores, cookie: &str, case: &str) {
    let token = rememberme::token::RememberCookie::decode(cookie.as_bytes()).unwrap();
    let row = stores
        .tokens
        .find_by_series(&token.series.hash())
        .unwrap()
        .unwrap();
    assert_eq!(
        row.token_hash,
        token.token.hash(),
        "{case}: the client holds the newest token"
    );
}

/// A handler that fails and one whose extractor fails, behind the layer: a
/// cookie sign-in on either request rotated the token in the database, so
/// the error response must carry the new cookie, or the browser keeps a
/// token one rotation back.
async fn an_error_page_still_carries_the_rotated_cookie(db: TestDb) {
    #[derive(serde::Deserialize)]
    struct Needed {
        #[allow(dead_code)]
        q: u32,
    }
    let (database, stores, alice) = database_with_alice(&db);
    let config = RememberMeConfig::default();
    let layer = RememberMe::new(stores.clone(), config.clone());
    let key = actix_web::cookie::Key::generate();
    let app = test::init_service(
        App::new()
            .route(
                "/boom",
                web::get().to(|| async {
                    Err::<HttpResponse, _>(actix_web::error::ErrorInternalServerError("boom"))
                }),
            )
            .route(
                "/needs-q",
                web::get().to(|_: web::Query<Needed>| async { HttpResponse::Ok().finish() }),
            )
            .wrap(layer.clone())
            .wrap(rememberme::session_middleware(key, &config)),
    )
    .await;
    for (path, status) in [("/boom", 500), ("/needs-q", 400)] {
        let cookie = rememberme::testing::remember_me_cookie(&stores, &config, &alice).unwrap();
        let req = test::TestRequest::get()
            .uri(path)
            .insert_header(("cookie", format!("{RM}={}", cookie.value())))
            .to_request();
        let res = test::call_service(&app, req).await;
        assert_eq!(res.status().as_u16(), status, "{path}");
        let rotated = common::cookie_of(&res, RM)
            .unwrap_or_else(|| panic!("{path}: no {RM} on the error response"));
        assert_ne!(rotated.value(), cookie.value(), "{path}: the rotated token");
        assert!(!rotated.value().is_empty(), "{path}");
    }
    drop(app);
    shut_down(layer, stores, database);
}

/// Certain theft deletes every token, bumps the epoch and writes its audit
/// row in one transaction: when the last of the three cannot be written,
/// none happens (the request answers 503), instead of tokens gone but
/// sessions alive and no trace.
async fn theft_handling_is_all_or_nothing(db: TestDb) {
    let server = TestServer::start(db);
    let alice = server.add_user("alice", "correct horse", false);
    let mut victim = server.browser();
    victim.login("alice", "correct horse", true).await;
    let stolen = victim.cookie(RM).unwrap();
    for _ in 0..2 {
        victim.drop_cookie(SESSION);
        assert_eq!(victim.get("/").await.status, 200);
    }
    let epoch = server.stores().state.auth_epoch(&alice).unwrap();
    // The audit log refuses the theft's row (and only it), as a full or
    // broken audit table would.
    match server.db.sqlite_path() {
        Some(path) => {
            let mut conn = diesel::SqliteConnection::establish(path.to_str().unwrap()).unwrap();
            conn.batch_execute(
                "PRAGMA busy_timeout = 5000; \
                 CREATE TRIGGER refuse_theft_rows BEFORE INSERT ON audit_events \
                 WHEN NEW.kind = 'theft_detected' BEGIN SELECT RAISE(ABORT, 'refused'); END;",
            )
            .unwrap();
        }
        None => {
            let mut conn = diesel::PgConnection::establish(&server.db.url).unwrap();
            conn.batch_execute(
                "CREATE FUNCTION refuse_theft_rows() RETURNS trigger AS $$ BEGIN \
                 IF NEW.kind = 'theft_detected' THEN RAISE EXCEPTION 'refused'; END IF; \
                 RETURN NEW; END $$ LANGUAGE plpgsql; \
                 CREATE TRIGGER refuse_theft_rows BEFORE INSERT ON audit_events \
                 FOR EACH ROW EXECUTE FUNCTION refuse_theft_rows();",
            )
            .unwrap();
        }
    }
    let mut thief = server.browser();
    thief.set_cookie(RM, &stolen);
    let res = thief.get("/").await;
    assert_eq!(
        res.status,
        503,
        "the theft could not be recorded: {:?}",
        res.location()
    );
    assert_eq!(server.tokens_of(&alice).len(), 1, "no token deleted");
    assert_eq!(
        server.stores().state.auth_epoch(&alice).unwrap(),
        epoch,
        "no epoch bumped"
    );
}
