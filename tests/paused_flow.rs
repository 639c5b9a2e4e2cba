//! A flow paused after its password, at a step of the app's own (a second
//! factor), waits only as long as the re-auth window: after it, answering
//! that step signs nobody in, and the password is asked again. With "Keep
//! me logged in" ticked, the remember-me cookie comes only once that step
//! has passed.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::{App, HttpResponse, test, web};
use common::{cookie_of, outcome_name};
use rememberme::clock::ManualClock;
use rememberme::flow::{
    Credentials, Flow, FlowKind, IDENTIFY, PASSWORD, PasswordStep, RememberMeIdentifyStep, StepDef,
    Tag,
};
use rememberme::store::UsersTable;
use rememberme::{
    Auth, AuthError, Database, DieselStore, RememberMe, RememberMeConfig, Stores, UserId,
};

#[derive(serde::Deserialize)]
struct Remember {
    #[serde(default)]
    remember: bool,
}

async fn password(auth: Auth, remember: web::Query<Remember>) -> Result<HttpResponse, AuthError> {
    let credentials = Credentials {
        username: "alice".into(),
        password: "alice-password".into(),
        remember_me: remember.remember,
        ..Default::default()
    };
    Ok(outcome_name(
        auth.submit(FlowKind::Login, credentials).await?,
    ))
}

async fn code(auth: Auth) -> Result<HttpResponse, AuthError> {
    let credentials = Credentials {
        inputs: BTreeMap::from([("code".to_owned(), "123456".to_owned())]),
        ..Default::default()
    };
    Ok(outcome_name(
        auth.submit(FlowKind::Login, credentials).await?,
    ))
}

/// The stores on a fresh SQLite file (kept while the `TempDir` lives),
/// with `alice`.
fn stores_with_alice() -> (tempfile::TempDir, Stores, UserId) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("p.db").display());
    let database = Database::connect(&url, 2).unwrap();
    let users = UsersTable::open(database.clone()).unwrap();
    let alice = users.create("alice", "alice-password", false).unwrap();
    (dir, Stores::new(DieselStore::new(database), users), alice)
}

/// The app's routes: the password (`?remember=true` ticks the box), the
/// code, and a state planted in the session as an older version saved it.
fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/password", web::post().to(password))
        .route("/code", web::post().to(code))
        .route("/plant", web::post().to(plant_old_state));
}

/// A login state at the password step as versions before the waiting
/// step's id saved it (after a wrong password, say).
async fn plant_old_state(session: actix_session::Session) -> HttpResponse {
    let old = serde_json::json!({
        "kind": "Login", "position": 1, "user": null, "tags": [], "activated": []
    });
    session.insert("rm.flow", old).unwrap();
    HttpResponse::Ok().finish()
}

/// A POST of `uri`, with the session cookie if there is one.
fn post(uri: &str, session: Option<actix_web::cookie::Cookie<'static>>) -> test::TestRequest {
    let req = test::TestRequest::post().uri(uri);
    match session {
        Some(cookie) => req.cookie(cookie),
        None => req,
    }
}

#[actix_web::test]
async fn a_paused_flow_waits_only_as_long_as_the_reauth_window() {
    let (_dir, stores, _) = stores_with_alice();
    let clock = ManualClock::new();
    let config = RememberMeConfig::builder()
        .clock(clock.clone())
        .reauth_window(Duration::from_secs(15 * 60))
        .build();
    let login = Flow::new(FlowKind::Login)
        .step(
            StepDef::new(IDENTIFY, RememberMeIdentifyStep)
                .tags_on_success([Tag::WEAK_AUTHENTICATION]),
        )
        .step(
            StepDef::new(PASSWORD, PasswordStep::new())
                .tags_on_success([Tag::WEAK_AUTHENTICATION, Tag::PASSWORD_VERIFIED]),
        )
        .step(StepDef::new(
            "code",
            common::CodeStep {
                input: "code",
                code: None,
            },
        ));
    let layer = RememberMe::with_flows(stores, config, login, Flow::step_up())
        .with_session(actix_web::cookie::Key::generate());
    let app = test::init_service(App::new().configure(routes).wrap(layer)).await;
    for (wait, expected) in [(60, "signed in"), (16 * 60, "invalid")] {
        let res = test::call_service(&app, post("/password", None).to_request()).await;
        let session = cookie_of(&res, "__Host-session");
        assert_eq!(test::read_body(res).await, "needs input");
        clock.advance(Duration::from_secs(wait));
        let res = test::call_service(&app, post("/code", session).to_request()).await;
        assert_eq!(test::read_body(res).await, expected, "after {wait} s");
    }
}

/// `Flow::login().step(code)`: the code step goes before the token issuing
/// step, so a right password with the box ticked pauses without a
/// remember-me cookie (nor a token in the store), and the right code then
/// brings both.
#[actix_web::test]
async fn a_ticked_box_gets_its_cookie_only_after_the_apps_step() {
    let (_dir, stores, alice) = stores_with_alice();
    let login = Flow::login().step(StepDef::new(
        "code",
        common::CodeStep {
            input: "code",
            code: Some("123456"),
        },
    ));
    let layer = RememberMe::with_flows(
        stores.clone(),
        RememberMeConfig::default(),
        login,
        Flow::step_up(),
    )
    .with_session(actix_web::cookie::Key::generate());
    let app = test::init_service(App::new().configure(routes).wrap(layer)).await;
    let res = test::call_service(&app, post("/password?remember=true", None).to_request()).await;
    let session = cookie_of(&res, "__Host-session").expect("a session for the paused flow");
    assert!(
        cookie_of(&res, "__Host-remember_me").is_none(),
        "no cookie at the pause"
    );
    assert_eq!(test::read_body(res).await, "needs input");
    assert!(stores.tokens.list_for_user(&alice).unwrap().is_empty());
    let res = test::call_service(&app, post("/code", Some(session)).to_request()).await;
    assert!(
        cookie_of(&res, "__Host-remember_me").is_some(),
        "the cookie after the code"
    );
    assert_eq!(test::read_body(res).await, "signed in");
    assert_eq!(stores.tokens.list_for_user(&alice).unwrap().len(), 1);
}

/// A login state saved before states named their step (a wrong password
/// leaves one at the password step) is not resumable by the engine: the
/// next submit starts afresh, so the right password signs in instead of
/// being refused until the session ends.
#[actix_web::test]
async fn a_state_saved_before_states_named_their_step_starts_afresh() {
    let (_dir, stores, _) = stores_with_alice();
    let layer = RememberMe::new(stores, RememberMeConfig::default())
        .with_session(actix_web::cookie::Key::generate());
    let app = test::init_service(App::new().configure(routes).wrap(layer)).await;
    let res = test::call_service(&app, post("/plant", None).to_request()).await;
    let session = cookie_of(&res, "__Host-session").expect("the planted state's session");
    let res = test::call_service(&app, post("/password", Some(session)).to_request()).await;
    assert_eq!(test::read_body(res).await, "signed in");
}
