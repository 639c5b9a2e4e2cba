//! Flows are the app's to compose and name: a flow of its own beside the
//! layer's (`RememberMe::with_flow`), run by name (`Auth::begin_flow`,
//! `Auth::submit_flow`), with its own step and tag, while the layer's login
//! flow stays as it was. A state paused in one flow never continues in
//! another, and the completion's audit row names the app's flow.

mod common;

use std::collections::BTreeMap;

use actix_web::{App, HttpResponse, test as actix_test, web};
use common::{CodeStep, TestDb};
use rememberme::extract::{MaybeUser, SubmitOutcome};
use rememberme::flow::{Credentials, Flow, FlowKind, StepDef, Tag};
use rememberme::store::UsersTable;
use rememberme::{Auth, AuthError, Database, DieselStore, RememberMe, RememberMeConfig, Stores};

const PIN_CHECKED: Tag = Tag::new("PIN_CHECKED");

fn answer(outcome: SubmitOutcome) -> HttpResponse {
    HttpResponse::Ok().body(match outcome {
        SubmitOutcome::SignedIn(_) => "signed in",
        SubmitOutcome::NeedsInput { .. } => "needs input",
        SubmitOutcome::InvalidCredentials => "invalid",
        _ => "other",
    })
}

fn password() -> Credentials {
    Credentials {
        username: "alice".into(),
        password: "alice-password".into(),
        ..Default::default()
    }
}

fn pin(value: &str) -> Credentials {
    Credentials {
        inputs: BTreeMap::from([("pin".to_owned(), value.to_owned())]),
        ..Default::default()
    }
}

/// `POST /{flow}/{what}`: submits the password or a PIN to a flow by name.
async fn submit(auth: Auth, path: web::Path<(String, String)>) -> Result<HttpResponse, AuthError> {
    let (flow, what) = path.into_inner();
    let credentials = match what.as_str() {
        "password" => password(),
        other => pin(other),
    };
    Ok(answer(auth.submit_flow(&flow, credentials).await?))
}

async fn begin(auth: Auth, flow: web::Path<String>) -> Result<HttpResponse, AuthError> {
    auth.begin_flow(&flow).await?;
    Ok(HttpResponse::Ok().body("begun"))
}

async fn whoami(MaybeUser(user): MaybeUser) -> HttpResponse {
    HttpResponse::Ok().body(match user {
        Some(user) if user.has(PIN_CHECKED) => format!("{} with pin", user.username),
        Some(user) => user.username,
        None => "nobody".into(),
    })
}

async fn an_app_flow_runs_by_name_beside_the_layers_own(db: TestDb) {
    let database = Database::connect(&db.url, 2).unwrap();
    let users = UsersTable::open(database.clone()).unwrap();
    users.create("alice", "alice-password", false).unwrap();
    let stores = Stores::new(DieselStore::new(database), users);
    let pin_login = Flow::login().named("pin_login").step(
        StepDef::new(
            "pin",
            CodeStep {
                input: "pin",
                code: Some("4321"),
            },
        )
        .tags_on_success([PIN_CHECKED]),
    );
    assert_eq!(pin_login.name(), "pin_login");
    assert_eq!(pin_login.kind(), FlowKind::Login);
    let layer = RememberMe::new(stores.clone(), RememberMeConfig::default())
        .with_flow(pin_login)
        .with_session(actix_web::cookie::Key::generate());
    let app = actix_test::init_service(
        App::new()
            .route("/begin/{flow}", web::post().to(begin))
            .route("/{flow}/{what}", web::post().to(submit))
            .route("/whoami", web::get().to(whoami))
            .wrap(layer),
    )
    .await;
    // One browser: the session cookie carried from answer to request.
    let mut session: Option<actix_web::cookie::Cookie<'static>> = None;
    let mut call = async |method: &str, uri: &str| {
        let mut req = match method {
            "GET" => actix_test::TestRequest::get(),
            _ => actix_test::TestRequest::post(),
        }
        .uri(uri);
        if let Some(cookie) = &session {
            req = req.cookie(cookie.clone());
        }
        let res = actix_test::call_service(&app, req.to_request()).await;
        let status = res.status();
        if let Some(cookie) = common::cookie_of(&res, "__Host-session") {
            session = Some(cookie);
        }
        (
            status,
            String::from_utf8(actix_test::read_body(res).await.to_vec()).unwrap(),
        )
    };

    // The layer's own login flow is unchanged: the password alone.
    assert_eq!(call("POST", "/login/password").await.1, "signed in");
    assert_eq!(call("GET", "/whoami").await.1, "alice");

    // The app's flow asks for its PIN after the password, refuses a wrong
    // one, and signs in with its tag on the right one.
    assert_eq!(call("POST", "/begin/pin_login").await.1, "begun");
    assert_eq!(call("POST", "/pin_login/password").await.1, "needs input");
    assert_eq!(call("POST", "/pin_login/1111").await.1, "invalid");
    // A state paused in the app's flow does not continue in another: the
    // login flow starts afresh and wants a password; and the app's flow,
    // its state replaced, wants the password again too.
    assert_eq!(call("POST", "/login/4321").await.1, "invalid");
    assert_eq!(call("POST", "/pin_login/4321").await.1, "invalid");
    assert_eq!(call("GET", "/whoami").await.1, "alice");
    assert_eq!(call("POST", "/pin_login/password").await.1, "needs input");
    assert_eq!(call("POST", "/pin_login/4321").await.1, "signed in");
    assert_eq!(call("GET", "/whoami").await.1, "alice with pin");

    // A name the layer does not know is the app's bug: a 500, not a sign-in.
    let (status, _) = call("POST", "/no_such_flow/password").await;
    assert_eq!(status, 500);

    // The audit row of the app's flow names it.
    let alice = stores.users.find_by_username("alice").unwrap().unwrap().id;
    let details: Vec<String> = stores
        .audit
        .list(Some("password_sign_in"), Some(&alice), None, 10)
        .unwrap()
        .into_iter()
        .map(|event| event.detail)
        .collect();
    assert_eq!(details, ["pin_login", ""], "newest first");
}

on_both_backends!(an_app_flow_runs_by_name_beside_the_layers_own);

#[test]
#[should_panic(expected = "must be of kind StepUp")]
fn a_flow_under_the_step_up_name_must_be_a_step_up() {
    let db = TestDb::sqlite();
    let database = Database::connect(&db.url, 1).unwrap();
    let users = UsersTable::open(database.clone()).unwrap();
    let _ = RememberMe::new(
        Stores::new(DieselStore::new(database), users),
        RememberMeConfig::default(),
    )
    .with_flow(Flow::login().named("step_up"));
}

#[test]
#[should_panic(expected = "a flow name is")]
fn a_flow_name_is_checked() {
    let _ = Flow::login().named("Admin Login");
}

#[test]
#[should_panic(expected = "must be of kind Login and named `login`")]
fn the_layers_own_flows_carry_their_kinds_names() {
    let db = TestDb::sqlite();
    let database = Database::connect(&db.url, 1).unwrap();
    let users = UsersTable::open(database.clone()).unwrap();
    let _ = RememberMe::with_flows(
        Stores::new(DieselStore::new(database), users),
        RememberMeConfig::default(),
        Flow::login().named("admin_login"),
        Flow::step_up(),
    );
}
