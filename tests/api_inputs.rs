//! The JSON API with a flow of the app's own: a step after the password
//! (a one-time code) takes its input from the login body's `inputs`, in the
//! same request as the password (the API keeps no paused flow). Without it
//! the answer is 401 `input_required` naming the step, and only after a
//! right password; a wrong code or a wrong password is
//! `invalid_credentials`. A long-lived token is issued only once the app's
//! step has passed. Both backends.

mod common;

use actix_web::{App, test as actix_test};
use common::{CodeStep, TestDb};
use rememberme::flow::{Flow, StepDef};
use rememberme::store::UsersTable;
use rememberme::{Database, DieselStore, RememberMe, RememberMeConfig, Stores};
use serde_json::{Value, json};

async fn an_api_login_takes_the_apps_step_inputs_with_the_password(db: TestDb) {
    let database = Database::connect(&db.url, 2).unwrap();
    let users = UsersTable::open(database.clone()).unwrap();
    let alice = users.create("alice", "alice-password", false).unwrap();
    let config = RememberMeConfig::builder()
        .access_token_secret(&[7; 32])
        .build();
    let login = Flow::login().step(StepDef::new(
        "code",
        CodeStep {
            input: "code",
            code: Some("123456"),
        },
    ));
    let stores = Stores::new(DieselStore::new(database), users);
    let layer = RememberMe::with_flows(stores.clone(), config, login, Flow::step_up())
        .with_session(actix_web::cookie::Key::generate());
    let app =
        actix_test::init_service(App::new().service(rememberme::api::scope()).wrap(layer)).await;
    let login = async |body: Value| {
        let req = actix_test::TestRequest::post()
            .uri("/api/v1/login")
            .set_json(body)
            .to_request();
        let res = actix_test::call_service(&app, req).await;
        let status = res.status().as_u16();
        let body: Value = actix_test::read_body_json(res).await;
        (status, body)
    };

    // `Flow::login().step(..)` puts the app's step before the token
    // issuing one: a right password with "keep me signed in" earns no
    // token while the code is missing or wrong.
    let tokens = || stores.tokens.list_for_user(&alice).unwrap().len();
    let remember = |inputs: Value| {
        json!({"username": "alice", "password": "alice-password",
               "remember_me": true, "device_key": "phone", "inputs": inputs})
    };
    let (status, body) = login(remember(json!({}))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("input_required"))
    );
    let (status, body) = login(remember(json!({"code": "000000"}))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_credentials"))
    );
    assert_eq!(tokens(), 0, "no token before the app's step passed");
    let (status, body) = login(remember(json!({"code": "123456"}))).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["long_lived_token"].is_string(), "{body}");
    assert_eq!(tokens(), 1);

    let (status, body) = login(json!({"username": "alice", "password": "alice-password"})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("input_required")),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("`code`"),
        "{body}"
    );

    // A wrong password never says that a code is wanted.
    let (status, body) = login(json!({"username": "alice", "password": "wrong-password"})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_credentials")),
        "{body}"
    );
    let wrong_password = json!({
        "username": "alice", "password": "wrong-password", "inputs": {"code": "123456"}
    });
    let (status, body) = login(wrong_password).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_credentials")),
        "{body}"
    );

    let wrong_code = json!({
        "username": "alice", "password": "alice-password", "inputs": {"code": "000000"}
    });
    let (status, body) = login(wrong_code).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_credentials")),
        "{body}"
    );

    let right = json!({
        "username": "alice", "password": "alice-password", "inputs": {"code": "123456"}
    });
    let (status, body) = login(right).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["access_token"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
}

/// A step that skips the code for a browser the app's handler trusts,
/// reading the fact from `verified`, as `examples/custom_step.rs` does.
struct TrustedBrowser;

impl rememberme::flow::Step for TrustedBrowser {
    fn is_interactive(&self) -> bool {
        false
    }
    fn run(
        &self,
        ctx: &mut rememberme::flow::StepContext<'_>,
        user: Option<&rememberme::store::UserId>,
    ) -> Result<rememberme::flow::StepOutcome, rememberme::store::StoreError> {
        use rememberme::flow::StepOutcome;
        Ok(match (user, ctx.verified.get("trusted_for")) {
            (Some(user), Some(trusted)) if user.as_str() == trusted => StepOutcome::Success {
                user: user.clone(),
                activate: Vec::new(),
            },
            _ => StepOutcome::NotApplicable,
        })
    }
}

/// From an attack review: the example's trusted-browser step read the
/// fact its handler had checked from `inputs`, which the JSON API fills
/// from the request's body, so a client that knew the password posted
/// `"inputs":{"trusted_for":"<id>"}` and skipped the second factor. Facts
/// now travel in `verified`, which the API never fills from the client.
async fn a_client_cannot_post_a_fact_the_app_verifies_itself(db: TestDb) {
    use rememberme::flow::{Condition, Tag};
    const TRUSTED: Tag = Tag::new("TRUSTED_BROWSER");
    let database = Database::connect(&db.url, 2).unwrap();
    let users = UsersTable::open(database.clone()).unwrap();
    let alice = users.create("alice", "alice-password", false).unwrap();
    let config = RememberMeConfig::builder()
        .access_token_secret(&[7; 32])
        .build();
    let login = Flow::login()
        .step(StepDef::new("trusted", TrustedBrowser).tags_on_success([TRUSTED]))
        .step(
            StepDef::new(
                "code",
                CodeStep {
                    input: "code",
                    code: Some("123456"),
                },
            )
            .skip_if(Condition::has(TRUSTED)),
        );
    let stores = Stores::new(DieselStore::new(database), users);
    let layer = RememberMe::with_flows(stores, config, login, Flow::step_up())
        .with_session(actix_web::cookie::Key::generate());
    let app =
        actix_test::init_service(App::new().service(rememberme::api::scope()).wrap(layer)).await;
    let req = actix_test::TestRequest::post()
        .uri("/api/v1/login")
        .set_json(json!({"username": "alice", "password": "alice-password",
                         "inputs": {"trusted_for": alice.as_str()}}))
        .to_request();
    let res = actix_test::call_service(&app, req).await;
    let status = res.status().as_u16();
    let body: Value = actix_test::read_body_json(res).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("input_required")),
        "the code is still wanted: {body}"
    );
}

on_both_backends!(
    an_api_login_takes_the_apps_step_inputs_with_the_password,
    a_client_cannot_post_a_fact_the_app_verifies_itself,
);
