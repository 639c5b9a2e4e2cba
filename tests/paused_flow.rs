//! A flow paused after its password, at a step of the app's own (a second
//! factor), waits only as long as the re-auth window: after it, answering
//! that step signs nobody in, and the password is asked again. With "Keep
//! me logged in" ticked, the remember-me cookie comes only once that step
//! has passed.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::{App, HttpResponse, test, web};
use rememberme::clock::ManualClock;
use rememberme::extract::SubmitOutcome;
use rememberme::flow::{
    Credentials, Flow, FlowKind, IDENTIFY, PASSWORD, PasswordStep, RememberMeIdentifyStep, StepDef,
    Tag,
};
use rememberme::store::UsersTable;
use rememberme::{Auth, AuthError, Database, DieselStore, RememberMe, RememberMeConfig, Stores};

#[derive(serde::Deserialize)]
struct Remember {
    #[serde(default)]
    remember: bool,
}

fn outcome_name(outcome: SubmitOutcome) -> HttpResponse {
    HttpResponse::Ok().body(match outcome {
        SubmitOutcome::SignedIn(_) => "signed in",
        SubmitOutcome::NeedsInput { .. } => "needs input",
        SubmitOutcome::InvalidCredentials => "invalid",
        _ => "other",
    })
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

#[actix_web::test]
async fn a_paused_flow_waits_only_as_long_as_the_reauth_window() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("p.db").display());
    let database = Database::connect(&url, 2).unwrap();
    let users = UsersTable::open(database.clone()).unwrap();
    users.create("alice", "alice-password", false).unwrap();
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
    let layer = RememberMe::with_flows(
        Stores::new(DieselStore::new(database), users),
        config,
        login,
        Flow::step_up(),
    )
    .with_session(actix_web::cookie::Key::generate());
    let app = test::init_service(
        App::new()
            .route("/password", web::post().to(password))
            .route("/code", web::post().to(code))
            .wrap(layer),
    )
    .await;
    let post = |uri: &str, session: Option<actix_web::cookie::Cookie<'static>>| {
        let mut req = test::TestRequest::post().uri(uri);
        if let Some(cookie) = session {
            req = req.cookie(cookie);
        }
        req.to_request()
    };
    let session_of = |res: &actix_web::dev::ServiceResponse| {
        res.response()
            .cookies()
            .find(|c| c.name() == "__Host-session")
            .map(|c| c.into_owned())
    };
    for (wait, expected) in [(60, "signed in"), (16 * 60, "invalid")] {
        let res = test::call_service(&app, post("/password", None)).await;
        let session = session_of(&res);
        assert_eq!(test::read_body(res).await, "needs input");
        clock.advance(Duration::from_secs(wait));
        let res = test::call_service(&app, post("/code", session)).await;
        assert_eq!(test::read_body(res).await, expected, "after {wait} s");
    }
}

/// `Flow::login().step(code)`: the code step goes before the token issuing
/// step, so a right password with the box ticked pauses without a
/// remember-me cookie (nor a token in the store), and the right code then
/// brings both.
#[actix_web::test]
async fn a_ticked_box_gets_its_cookie_only_after_the_apps_step() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("p.db").display());
    let database = Database::connect(&url, 2).unwrap();
    let users = UsersTable::open(database.clone()).unwrap();
    let alice = users.create("alice", "alice-password", false).unwrap();
    let stores = Stores::new(DieselStore::new(database), users);
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
    let app = test::init_service(
        App::new()
            .route("/password", web::post().to(password))
            .route("/code", web::post().to(code))
            .wrap(layer),
    )
    .await;
    let cookie = |res: &actix_web::dev::ServiceResponse, name: &str| {
        res.response()
            .cookies()
            .find(|c| c.name() == name)
            .map(|c| c.into_owned())
    };
    let res = test::call_service(
        &app,
        test::TestRequest::post()
            .uri("/password?remember=true")
            .to_request(),
    )
    .await;
    let session = cookie(&res, "__Host-session").expect("a session for the paused flow");
    assert!(
        cookie(&res, "__Host-remember_me").is_none(),
        "no cookie at the pause"
    );
    assert_eq!(test::read_body(res).await, "needs input");
    assert!(stores.tokens.list_for_user(&alice).unwrap().is_empty());
    let res = test::call_service(
        &app,
        test::TestRequest::post()
            .uri("/code")
            .cookie(session)
            .to_request(),
    )
    .await;
    assert!(
        cookie(&res, "__Host-remember_me").is_some(),
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
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("p.db").display());
    let database = Database::connect(&url, 2).unwrap();
    let users = UsersTable::open(database.clone()).unwrap();
    users.create("alice", "alice-password", false).unwrap();
    let layer = RememberMe::new(
        Stores::new(DieselStore::new(database), users),
        RememberMeConfig::default(),
    )
    .with_session(actix_web::cookie::Key::generate());
    let plant = |session: actix_session::Session| async move {
        let old = serde_json::json!({
            "kind": "Login", "position": 1, "user": null, "tags": [], "activated": []
        });
        session.insert("rm.flow", old).unwrap();
        HttpResponse::Ok().finish()
    };
    let app = test::init_service(
        App::new()
            .route("/plant", web::post().to(plant))
            .route("/password", web::post().to(password))
            .wrap(layer),
    )
    .await;
    let res = test::call_service(&app, test::TestRequest::post().uri("/plant").to_request()).await;
    let session = res
        .response()
        .cookies()
        .find(|c| c.name() == "__Host-session")
        .map(|c| c.into_owned())
        .expect("the planted state's session");
    let res = test::call_service(
        &app,
        test::TestRequest::post()
            .uri("/password")
            .cookie(session)
            .to_request(),
    )
    .await;
    assert_eq!(test::read_body(res).await, "signed in");
}
