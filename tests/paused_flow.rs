//! A flow paused after its password, at a step of the app's own (a second
//! factor), waits only as long as the re-auth window: after it, answering
//! that step signs nobody in, and the password is asked again.

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

fn outcome_name(outcome: SubmitOutcome) -> HttpResponse {
    HttpResponse::Ok().body(match outcome {
        SubmitOutcome::SignedIn(_) => "signed in",
        SubmitOutcome::NeedsInput { .. } => "needs input",
        SubmitOutcome::InvalidCredentials => "invalid",
        _ => "other",
    })
}

async fn password(auth: Auth) -> Result<HttpResponse, AuthError> {
    let credentials = Credentials {
        username: "alice".into(),
        password: "alice-password".into(),
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
