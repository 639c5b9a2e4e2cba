//! Flows that do not run straight through.
//!
//! A token issued by a flow that then fails, panics, pauses or is refused
//! is never handed out (no cookie, no API token) and does not wait in the
//! store: its row is deleted (both backends, browser and API). A step-up
//! paused after its password at a step of the app's own (a second factor)
//! resumes there, and a password typed again while such a step waits
//! starts the flow afresh instead of being answered "wrong password".

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::cookie::Cookie;
use actix_web::{App, HttpResponse, test, web};
use common::{
    After, TestDb, cookie_of, database_with_alice, issuing_then, outcome_name, shut_down,
};
use rememberme::clock::ManualClock;
use rememberme::extract::StrongAuth;
use rememberme::flow::{
    Condition, Credentials, Failure, Flow, FlowKind, StepDef, StepOutcome, Tag,
};
use rememberme::store::StoreError;
use rememberme::{Auth, AuthError, Database, RememberMe, RememberMeConfig};

const RM: &str = "__Host-remember_me";
const SESSION: &str = "__Host-session";

on_both_backends!(
    a_form_sign_in_failing_after_its_token_was_issued_hands_out_and_keeps_none,
    a_form_sign_in_panicking_after_its_token_was_issued_hands_out_and_keeps_none,
    a_form_sign_in_paused_after_its_token_was_issued_hands_out_and_keeps_none,
    a_withdrawn_sign_in_leaves_the_browsers_own_token_alive,
    a_second_issuing_step_supersedes_the_first,
    an_api_sign_in_failing_after_its_token_was_issued_hands_out_and_keeps_none,
    an_api_sign_in_refused_after_its_token_was_issued_keeps_none,
);

/// A step after the issuing one that refuses the sign-in.
fn refuses() -> StepDef {
    StepDef::new(
        "check",
        After(|| Ok(StepOutcome::Failed(Failure::InvalidCredentials))),
    )
}

/// `/password` submits alice's password to the login flow (the box
/// ticked), `/step-up/password` to the step-up flow, `/step-up/code` and
/// `/code` the code; `/strong` answers only a strong session.
fn routes(cfg: &mut web::ServiceConfig) {
    async fn submit(
        auth: Auth,
        kind: FlowKind,
        credentials: Credentials,
    ) -> Result<HttpResponse, AuthError> {
        Ok(outcome_name(auth.submit(kind, credentials).await?))
    }
    fn password(user: &str, password: &str) -> Credentials {
        Credentials {
            username: user.into(),
            password: password.into(),
            remember_me: true,
            ..Default::default()
        }
    }
    fn code_input() -> Credentials {
        Credentials {
            inputs: BTreeMap::from([("code".to_owned(), "123456".to_owned())]),
            ..Default::default()
        }
    }
    cfg.route(
        "/password",
        web::post()
            .to(|auth: Auth| submit(auth, FlowKind::Login, password("alice", "alice-password"))),
    )
    .route(
        "/wrong-password",
        web::post().to(|auth: Auth| submit(auth, FlowKind::Login, password("alice", "nope"))),
    )
    .route(
        "/code",
        web::post().to(|auth: Auth| submit(auth, FlowKind::Login, code_input())),
    )
    .route(
        "/password-and-wrong-code",
        web::post().to(|auth: Auth| {
            let mut both = password("alice", "alice-password");
            both.inputs = BTreeMap::from([("code".to_owned(), "000000".to_owned())]);
            submit(auth, FlowKind::Login, both)
        }),
    )
    .route(
        "/code-as-password",
        web::post().to(|auth: Auth| submit(auth, FlowKind::Login, password("", "123456"))),
    )
    .route(
        "/wrong-code-as-password",
        web::post().to(|auth: Auth| submit(auth, FlowKind::Login, password("", "000000"))),
    )
    .route(
        "/step-up/password",
        web::post().to(|auth: Auth| submit(auth, FlowKind::StepUp, password("", "alice-password"))),
    )
    .route(
        "/step-up/code",
        web::post().to(|auth: Auth| submit(auth, FlowKind::StepUp, code_input())),
    )
    .route("/plant-step-up", web::post().to(plant_step_up_claim))
    .route("/strip-epoch", web::post().to(strip_epoch))
    .route(
        "/style.css",
        web::get().to(|| async {
            HttpResponse::Ok()
                .insert_header(("Cache-Control", "public, max-age=3600"))
                .body("body {}")
        }),
    )
    .route(
        "/strong",
        web::get().to(|_: StrongAuth| async { HttpResponse::Ok().body("strong") }),
    );
}

/// The flow tests' app (`routes`) behind `layer`, and a client of it that
/// keeps the session cookie it is given: `call(method, uri)` answers the
/// status and the body.
async fn client(layer: RememberMe) -> impl AsyncFnMut(&str, &str) -> (u16, String) {
    let app = test::init_service(
        App::new()
            .configure(routes)
            .wrap(layer.with_session(actix_web::cookie::Key::generate())),
    )
    .await;
    let mut session = None;
    async move |method: &str, uri: &str| {
        let res = test::call_service(&app, request(method, uri, &session).to_request()).await;
        if let Some(renewed) = cookie_of(&res, SESSION) {
            session = Some(renewed);
        }
        let status = res.status().as_u16();
        let body = String::from_utf8_lossy(&test::read_body(res).await).into_owned();
        (status, body)
    }
}

/// A POST (or GET) of `uri` with the session cookie, if any.
fn request(
    method: &str,
    uri: &str,
    session: &Option<actix_web::cookie::Cookie<'static>>,
) -> test::TestRequest {
    let req = match method {
        "GET" => test::TestRequest::get(),
        _ => test::TestRequest::post(),
    }
    .uri(uri);
    match session {
        Some(cookie) => req.cookie(cookie.clone()),
        None => req,
    }
}

/// A form sign-in with `login` and the box ticked, by a browser that
/// carries its own valid remember-me cookie if `held`: the answer's
/// status, body and remember-me cookie. Alice has a token on another
/// device too, and the cap leaves no room for the new token beside the
/// ones she has. Checks that the issuing step ran, that its token was
/// withdrawn (audited, deleted), and that what it would have replaced
/// (the browser's series, the least recently used beyond the cap) is
/// left as it was: the sign-in did not complete.
async fn form_sign_in_keeps_no_token(
    db: TestDb,
    login: Flow,
    held: bool,
) -> (u16, String, Option<Cookie<'static>>) {
    let (database, stores, alice) = database_with_alice(&db);
    let config = RememberMeConfig::builder()
        .max_tokens_per_user(if held { 2 } else { 1 })
        .build();
    rememberme::testing::remember_me_cookie(&stores, &config, &alice).unwrap();
    let mut req = request("POST", "/password", &None);
    if held {
        let cookie = rememberme::testing::remember_me_cookie(&stores, &config, &alice).unwrap();
        req = req.insert_header(("cookie", format!("{RM}={}", cookie.value())));
    }
    let before = series_of(&stores, &alice);
    let layer = RememberMe::with_flows(stores.clone(), config, login, Flow::step_up());
    let key = actix_web::cookie::Key::generate();
    let app = test::init_service(
        App::new()
            .configure(routes)
            .wrap(layer.clone().with_session(key)),
    )
    .await;
    let res = test::call_service(&app, req.to_request()).await;
    let (status, remember) = (res.status().as_u16(), cookie_of(&res, RM));
    let body = String::from_utf8_lossy(&test::read_body(res).await).into_owned();
    assert!(
        common::audit_written(&stores, "token_issued", "").await,
        "the token was issued"
    );
    assert!(
        common::audit_written(&stores, "token_revoked", "withdrawn").await,
        "the withdrawal is audited"
    );
    assert_eq!(
        series_of(&stores, &alice),
        before,
        "the withdrawn token is deleted, and it replaced nothing"
    );
    drop(app);
    shut_down(layer, stores, database);
    (status, body, remember)
}

/// The series of `user`'s tokens, most recently used first.
fn series_of(stores: &rememberme::store::Stores, user: &rememberme::store::UserId) -> Vec<String> {
    let tokens = stores.tokens.list_for_user(user).unwrap();
    tokens
        .iter()
        .map(|t| format!("{:?}", t.series_hash.as_bytes()))
        .collect()
}

/// The app's step after the issuing one refuses the sign-in: "invalid",
/// no cookie, no token left.
async fn a_form_sign_in_failing_after_its_token_was_issued_hands_out_and_keeps_none(db: TestDb) {
    let (status, body, remember) =
        form_sign_in_keeps_no_token(db, issuing_then(refuses()), false).await;
    assert_eq!((status, body.as_str()), (200, "invalid"));
    assert!(
        remember.is_none(),
        "a cookie from a flow that did not complete"
    );
}

/// The app's step after the issuing one panics: an error page (503),
/// no cookie, no token left.
async fn a_form_sign_in_panicking_after_its_token_was_issued_hands_out_and_keeps_none(db: TestDb) {
    let panics = StepDef::new("check", After(|| panic!("the app's step has a bug")));
    let (status, _, remember) = form_sign_in_keeps_no_token(db, issuing_then(panics), false).await;
    assert_eq!(status, 503);
    assert!(
        remember.is_none(),
        "a cookie from a flow that did not complete"
    );
}

/// The app's interactive step after the issuing one pauses the flow: the
/// token issued before it would skip that step, so none is kept.
async fn a_form_sign_in_paused_after_its_token_was_issued_hands_out_and_keeps_none(db: TestDb) {
    let code = common::CodeStep {
        input: "code",
        code: Some("123456"),
    };
    let login = issuing_then(StepDef::new("code", code));
    let (status, body, remember) = form_sign_in_keeps_no_token(db, login, false).await;
    assert_eq!((status, body.as_str()), (200, "needs input"));
    assert!(
        remember.is_none(),
        "a cookie from a flow that did not complete"
    );
}

/// A browser that still carries its own valid cookie signs in with the
/// box ticked, and the app's step after the issuing one refuses: the new
/// token would have replaced the browser's (one per browser), but only a
/// completed sign-in replaces anything. The browser keeps its cookie (no
/// change sent), and its series stays (checked by the helper).
async fn a_withdrawn_sign_in_leaves_the_browsers_own_token_alive(db: TestDb) {
    let (_, body, remember) = form_sign_in_keeps_no_token(db, issuing_then(refuses()), true).await;
    assert_eq!(body, "invalid");
    assert!(
        remember.is_none(),
        "the browser's cookie is left: {remember:?}"
    );
}

/// The API's password sign-in through `issuing_then(after)`, with the
/// box ticked: the answer's status and body. Checks that no long-lived
/// token is in the answer, that the issuing step ran (so a token handed
/// out would show) and that its token was withdrawn.
async fn api_sign_in_keeps_no_token(db: TestDb, after: StepDef) -> (u16, serde_json::Value) {
    let (database, stores, alice) = database_with_alice(&db);
    let config = RememberMeConfig::builder()
        .access_token_secret(&[7; 32])
        .build();
    // The phone's token from an earlier sign-in: a new one for the same
    // device would replace it, once its sign-in completed.
    let phone = rememberme::token::RememberCookie::generate();
    stores
        .tokens
        .insert(rememberme::store::NewToken {
            user_id: &alice,
            series_hash: &phone.series.hash(),
            token_hash: &phone.token.hash(),
            now: config.now(),
            expires_at: config.now() + 3600,
            user_agent: None,
            ip: None,
            device_key: Some("phone"),
        })
        .unwrap();
    let before = series_of(&stores, &alice);
    let login = issuing_then(after);
    let layer = RememberMe::with_flows(stores.clone(), config.clone(), login, Flow::step_up());
    let key = actix_web::cookie::Key::generate();
    let app = test::init_service(
        App::new()
            .service(rememberme::api::scope())
            .wrap(layer.clone())
            .wrap(rememberme::session_middleware(key, &config)),
    )
    .await;
    let req = test::TestRequest::post()
        .uri("/api/v1/login")
        .set_json(serde_json::json!({
            "username": "alice", "password": "alice-password",
            "remember_me": true, "device_key": "phone",
        }))
        .to_request();
    let res = test::call_service(&app, req).await;
    let status = res.status().as_u16();
    let body: serde_json::Value = test::read_body_json(res).await;
    assert!(body.get("long_lived_token").is_none(), "{body}");
    assert!(
        common::audit_written(&stores, "token_issued", "").await,
        "the token was issued"
    );
    assert_eq!(
        series_of(&stores, &alice),
        before,
        "the withdrawn token is deleted, and the phone's earlier one left"
    );
    drop(app);
    shut_down(layer, stores, database);
    (status, body)
}

/// A step after the issuing one that fails: the API's password sign-in
/// answers 503 without the long-lived token (only a rotation of a token
/// the client holds goes out with an error: a new series' token from a
/// flow that did not complete would skip that step).
async fn an_api_sign_in_failing_after_its_token_was_issued_hands_out_and_keeps_none(db: TestDb) {
    let fails = After(|| Err(StoreError::Query("the app's step failed".into())));
    let (status, body) = api_sign_in_keeps_no_token(db, StepDef::new("fails", fails)).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"], "unavailable");
}

/// The API's password sign-in whose step after the issuing one refuses
/// (a precondition the flow does not meet): 401, no token in the answer,
/// and none left in the store.
async fn an_api_sign_in_refused_after_its_token_was_issued_keeps_none(db: TestDb) {
    let refused = StepDef::new("check", After(|| unreachable!()))
        .precondition(Condition::has(Tag::new("SECOND_FACTOR")));
    let (status, _) = api_sign_in_keeps_no_token(db, refused).await;
    assert_eq!(status, 401);
}

/// The app's code step: `123456` passes.
fn code() -> StepDef {
    StepDef::new(
        "code",
        common::CodeStep {
            input: "code",
            code: Some("123456"),
        },
    )
}

/// A step-up state of the signed-in user stopped at the code step and
/// claiming `PASSWORD_VERIFIED`, but without the time of a password this
/// flow verified, as no state the layer saves would be (a forged or
/// otherwise planted one).
async fn plant_step_up_claim(auth: Auth, session: actix_session::Session) -> HttpResponse {
    let user = auth.user().expect("signed in").id;
    let tags = std::collections::BTreeSet::from([Tag::WEAK_AUTHENTICATION, Tag::PASSWORD_VERIFIED]);
    let start = Flow::step_up().step(code()).start(Some((user, &tags)));
    let mut state = serde_json::to_value(start).unwrap();
    state["position"] = 1.into();
    state["waiting"] = "code".into();
    session.insert("rm.flow", state).unwrap();
    HttpResponse::Ok().finish()
}

/// Takes the epoch out of the flow state kept in the session, as a
/// version that recorded none kept it.
async fn strip_epoch(session: actix_session::Session) -> HttpResponse {
    let mut state: serde_json::Value = session.get("rm.flow").unwrap().expect("a kept state");
    state
        .as_object_mut()
        .unwrap()
        .remove("epoch")
        .expect("an epoch");
    session.insert("rm.flow", state).unwrap();
    HttpResponse::Ok().finish()
}

/// A login flow with the app's code step after the password, and a
/// step-up flow with the same code step after its password.
fn with_codes(db: &TestDb, clock: &ManualClock) -> (Database, RememberMe) {
    with_code_step(db, clock, code)
}

/// [`with_codes`] with the code step `code`.
fn with_code_step(
    db: &TestDb,
    clock: &ManualClock,
    code: fn() -> StepDef,
) -> (Database, RememberMe) {
    let (database, stores, _) = database_with_alice(db);
    let config = RememberMeConfig::builder()
        .clock(clock.clone())
        .reauth_window(Duration::from_secs(15 * 60))
        .build();
    let layer = RememberMe::with_flows(
        stores,
        config,
        Flow::login().step(code()),
        Flow::step_up().step(code()),
    );
    (database, layer)
}

/// Signed in with the password and the code, twenty minutes ago: the
/// session is no longer strong. The step-up's password pauses at the code
/// step, and the code then completes it: the session is strong again.
/// (The step-up used to discard any state claiming a password, so the
/// code was answered as a fresh step-up without one: "invalid".)
#[actix_web::test]
async fn a_step_up_resumes_at_the_apps_step_after_its_password() {
    let answers = step_up_with_code("/step-up/password").await;
    assert_eq!(answers, ["needs input", "signed in", "strong"]);
}

/// The same, but instead of the step-up's password, a state that claims
/// one without the time this flow verified it: the code alone must not
/// complete the step-up (it starts afresh and asks for the password).
#[actix_web::test]
async fn a_step_up_state_claiming_a_password_it_did_not_verify_starts_afresh() {
    let answers = step_up_with_code("/plant-step-up").await;
    assert_eq!(answers, ["", "invalid", "not strong"]);
}

/// Signs alice in (password and code), lets twenty minutes pass, posts
/// `first`, then the step-up's code, then asks for a strong page: the
/// three answers' bodies (the last "not strong" unless it is 200).
async fn step_up_with_code(first: &str) -> [String; 3] {
    let db = TestDb::sqlite();
    let clock = ManualClock::new();
    let (_database, layer) = with_codes(&db, &clock);
    let mut step = client(layer).await;
    assert_eq!(step("POST", "/password").await.1, "needs input");
    assert_eq!(step("POST", "/code").await.1, "signed in");
    assert_eq!(step("GET", "/strong").await, (200, "strong".to_owned()));
    clock.advance(Duration::from_secs(20 * 60));
    assert_ne!(step("GET", "/strong").await.0, 200, "no longer strong");
    let first = step("POST", first).await.1;
    let code = step("POST", "/step-up/code").await.1;
    let strong = match step("GET", "/strong").await {
        (200, body) => body,
        _ => "not strong".to_owned(),
    };
    [first, code, strong]
}

/// The password, then (the code form left) the password again: the flow
/// starts afresh and pauses at the code again, where it used to answer
/// the code step without a code, "invalid". A wrong password then is
/// still wrong, and the code still completes the flow.
#[actix_web::test]
async fn a_password_typed_again_while_a_code_waits_starts_afresh() {
    let db = TestDb::sqlite();
    let clock = ManualClock::new();
    let (_database, layer) = with_codes(&db, &clock);
    let mut call = client(layer).await;
    let mut post = async |uri: &str| call("POST", uri).await.1;
    assert_eq!(post("/password").await, "needs input");
    assert_eq!(post("/password").await, "needs input");
    assert_eq!(post("/wrong-password").await, "invalid");
    assert_eq!(post("/password").await, "needs input");
    assert_eq!(post("/code").await, "signed in");
}

/// A code step of the app's that keeps `Step::has_input`'s default (any
/// credentials) and reads its code where its function says: `123456`
/// passes.
struct DefaultInputCode(fn(&mut rememberme::flow::StepContext<'_>) -> Option<String>);

impl rememberme::flow::Step for DefaultInputCode {
    fn is_interactive(&self) -> bool {
        true
    }
    fn run(
        &self,
        ctx: &mut rememberme::flow::StepContext<'_>,
        user: Option<&rememberme::store::UserId>,
    ) -> Result<StepOutcome, StoreError> {
        let code = (self.0)(ctx);
        Ok(match user {
            Some(user) if code.as_deref() == Some("123456") => StepOutcome::Success {
                user: user.clone(),
                activate: Vec::new(),
            },
            _ => StepOutcome::Failed(Failure::InvalidCredentials),
        })
    }
}

/// The code from the password field.
fn in_password_field() -> StepDef {
    StepDef::new(
        "code",
        DefaultInputCode(|ctx| ctx.credentials.take().map(|c| c.password)),
    )
}

/// The code from the inputs, with `has_input`'s default all the same.
fn in_inputs_by_default() -> StepDef {
    StepDef::new(
        "code",
        DefaultInputCode(|ctx| ctx.inputs.get("code").cloned()),
    )
}

/// A step that says a posted password is its input is answered by it: the
/// flow does not start afresh (it used to, on any password posted after
/// the flow's own, so such a step could never complete: "invalid"). And a
/// post it takes as its answer is still checked: a wrong code is refused.
#[actix_web::test]
async fn a_password_posted_to_a_step_that_takes_it_as_its_input_answers_that_step() {
    let db = TestDb::sqlite();
    let clock = ManualClock::new();
    let (_database, layer) = with_code_step(&db, &clock, in_password_field);
    let mut call = client(layer).await;
    let mut post = async |uri: &str| call("POST", uri).await.1;
    assert_eq!(post("/password").await, "needs input");
    assert_eq!(
        post("/wrong-code-as-password").await,
        "invalid",
        "taken as a wrong code"
    );
    assert_eq!(post("/code-as-password").await, "signed in");
}

/// A sign-in by cookie that pauses at the app's code step rotates the token
/// but makes no session: the response carries the next token, and must not
/// be kept by a shared cache even where its handler says `public` (the next
/// visitor would be handed the token). It used to keep the handler's
/// `public, max-age=3600`.
#[actix_web::test]
async fn a_response_carrying_a_rotated_token_is_never_cacheable() {
    let db = TestDb::sqlite();
    let clock = ManualClock::new();
    let (_database, layer) = with_codes(&db, &clock);
    let app = test::init_service(
        App::new()
            .configure(routes)
            .wrap(layer.with_session(actix_web::cookie::Key::generate())),
    )
    .await;
    let res = test::call_service(&app, request("POST", "/password", &None).to_request()).await;
    let session = cookie_of(&res, SESSION);
    let res = test::call_service(&app, request("POST", "/code", &session).to_request()).await;
    let remembered = cookie_of(&res, RM).expect("the box was ticked: a remember-me cookie");
    assert_eq!(test::read_body(res).await, "signed in".as_bytes());

    let res = test::call_service(
        &app,
        request("GET", "/style.css", &Some(remembered.clone())).to_request(),
    )
    .await;
    let rotated = cookie_of(&res, RM).expect("the token rotated");
    assert_ne!(rotated.value(), remembered.value());
    assert!(
        cookie_of(&res, SESSION).is_none(),
        "paused at the code: no session"
    );
    assert_eq!(
        res.headers().get("cache-control").unwrap(),
        "no-store",
        "a response carrying a token is never cacheable"
    );
}

/// Moves alice's auth epoch on, as a password change or "sign out
/// everywhere" elsewhere would.
fn bump_alices_epoch(database: &Database) {
    let stores = common::stores_on(database);
    let alice = stores
        .users
        .find_by_username("alice")
        .unwrap()
        .expect("alice")
        .id;
    let epoch = stores.state.auth_epoch(&alice).unwrap();
    assert!(
        stores
            .state
            .bump_epoch_from(&alice, epoch)
            .unwrap()
            .is_some()
    );
}

/// From an attack review: a sign-in paused after its password (a second
/// factor waiting) survived a password change. Whoever had checked the old
/// password could still complete it with a code, for the re-auth window.
/// A paused state now resumes only under the epoch it paused under.
#[actix_web::test]
async fn a_sign_in_paused_after_its_password_dies_with_a_password_change() {
    let db = TestDb::sqlite();
    let clock = ManualClock::new();
    let (database, layer) = with_codes(&db, &clock);
    let mut call = client(layer).await;
    let mut post = async |uri: &str| call("POST", uri).await.1;
    assert_eq!(post("/password").await, "needs input");
    bump_alices_epoch(&database);
    assert_eq!(
        post("/code").await,
        "invalid",
        "the code alone signs nobody in"
    );
    assert_eq!(
        post("/password").await,
        "needs input",
        "the flow starts afresh"
    );
    assert_eq!(post("/code").await, "signed in");
}

/// From an attack review: the same with a wrong code posted beside the
/// right password (a form that asks for both at once). The run failed at
/// the code step, and the state kept for the form to be answered again
/// held no epoch: a right code after a password change signed in, with a
/// new remember-me token. Every state kept with its user now holds the
/// epoch it was checked under. (Without the change, the code completes it.)
#[actix_web::test]
async fn a_sign_in_whose_code_failed_beside_its_password_dies_with_a_password_change() {
    let db = TestDb::sqlite();
    let clock = ManualClock::new();
    let (database, layer) = with_codes(&db, &clock);
    let mut call = client(layer.clone()).await;
    let mut post = async |uri: &str| call("POST", uri).await.1;
    assert_eq!(post("/password-and-wrong-code").await, "invalid");
    assert_eq!(post("/code").await, "signed in", "kept to be answered");

    let mut call = client(layer).await;
    let mut post = async |uri: &str| call("POST", uri).await.1;
    assert_eq!(post("/password-and-wrong-code").await, "invalid");
    bump_alices_epoch(&database);
    assert_eq!(
        post("/code").await,
        "invalid",
        "the code alone signs nobody in"
    );
}

/// A state kept by an earlier version, with a verified password and no
/// epoch beside it, starts afresh: nothing would hold it to the password
/// it checked (a password change since would not void it).
#[actix_web::test]
async fn a_kept_state_without_an_epoch_starts_afresh() {
    let db = TestDb::sqlite();
    let clock = ManualClock::new();
    let (_database, layer) = with_codes(&db, &clock);
    let mut call = client(layer).await;
    let mut post = async |uri: &str| call("POST", uri).await.1;
    assert_eq!(post("/password").await, "needs input");
    post("/strip-epoch").await;
    assert_eq!(
        post("/code").await,
        "invalid",
        "the code alone signs nobody in"
    );
}

/// A session revoked by an epoch bump that it has not checked yet (it
/// checks at most once a minute) used to step up and adopt the new epoch,
/// escaping the revocation. A step-up now completes only under the epoch
/// of the session it continues.
#[actix_web::test]
async fn a_revoked_session_cannot_step_up_into_the_new_epoch() {
    let db = TestDb::sqlite();
    let clock = ManualClock::new();
    let (database, layer) = with_codes(&db, &clock);
    let mut step = client(layer).await;
    assert_eq!(step("POST", "/password").await.1, "needs input");
    assert_eq!(step("POST", "/code").await.1, "signed in");
    clock.advance(Duration::from_secs(20 * 60));
    assert_ne!(
        step("GET", "/strong").await.0,
        200,
        "no longer strong (checked now)"
    );
    bump_alices_epoch(&database);
    assert_eq!(step("POST", "/step-up/password").await.1, "needs input");
    assert_ne!(step("POST", "/step-up/code").await.1, "signed in");
    clock.advance(Duration::from_secs(61));
    assert_ne!(
        step("GET", "/strong").await.0,
        200,
        "and the session ends at its check"
    );
}

/// A review of the rule above: with such a step, a sign-in form posted
/// again (someone else at a shared computer, the user starting over) was
/// taken as the step's answer and refused, for the whole re-auth window.
/// A password that comes with a username is the sign-in form's: the flow
/// starts afresh.
#[actix_web::test]
async fn the_sign_in_form_posted_again_starts_afresh_whatever_the_waiting_step_says() {
    let db = TestDb::sqlite();
    let clock = ManualClock::new();
    let (_database, layer) = with_code_step(&db, &clock, in_inputs_by_default);
    let mut call = client(layer).await;
    let mut post = async |uri: &str| call("POST", uri).await.1;
    assert_eq!(post("/password").await, "needs input");
    assert_eq!(
        post("/password").await,
        "needs input",
        "afresh, not refused"
    );
    assert_eq!(post("/code").await, "signed in");
}

/// From the review of the device cookie's binding: the cookie a right
/// password earns was issued only by a run that checked the password and
/// completed, so a sign-in whose second factor came on the next request
/// never got one (nor its own failure budget). It is kept with the paused
/// flow and handed out when the flow completes, and never before.
#[actix_web::test]
async fn a_sign_in_with_a_second_factor_gets_its_device_cookie_when_it_completes() {
    const DEVICE: &str = "__Host-device";
    let db = TestDb::sqlite();
    let clock = ManualClock::new();
    let (_database, layer) = with_codes(&db, &clock);
    let app = test::init_service(
        App::new()
            .configure(routes)
            .wrap(layer.with_session(actix_web::cookie::Key::generate())),
    )
    .await;
    let res = test::call_service(&app, request("POST", "/password", &None).to_request()).await;
    assert!(cookie_of(&res, DEVICE).is_none(), "not before the code");
    let session = cookie_of(&res, SESSION);
    let res = test::call_service(&app, request("POST", "/code", &session).to_request()).await;
    assert!(
        cookie_of(&res, DEVICE).is_some(),
        "with the completed sign-in"
    );
}

/// The app's code step, with a password change landing as it passes: it
/// moves the user's epoch before it answers.
struct CodeThenChange;

impl rememberme::flow::Step for CodeThenChange {
    fn is_interactive(&self) -> bool {
        true
    }
    fn has_input(&self, ctx: &rememberme::flow::StepContext<'_>) -> bool {
        ctx.inputs.contains_key("code")
    }
    fn run(
        &self,
        ctx: &mut rememberme::flow::StepContext<'_>,
        user: Option<&rememberme::UserId>,
    ) -> Result<StepOutcome, StoreError> {
        let user = user.expect("the password identified the user");
        ctx.stores.state.bump_epoch(user)?;
        Ok(StepOutcome::Success {
            user: user.clone(),
            activate: Vec::new(),
        })
    }
}

/// A sign-in paused at a second factor resumes under the epoch its
/// password was checked under, and its issuing step holds the token to
/// that epoch: a password change that lands while the code is checked
/// (after the resumed state was found still valid) leaves no token of
/// the old password, and signs nobody in.
#[actix_web::test]
async fn a_resumed_sign_in_keeps_no_token_when_a_password_change_lands_during_its_code() {
    let db = TestDb::sqlite();
    let clock = ManualClock::new();
    let (database, layer) = with_code_step(&db, &clock, || StepDef::new("code", CodeThenChange));
    let mut call = client(layer).await;
    let mut post = async |uri: &str| call("POST", uri).await.1;
    assert_eq!(post("/password").await, "needs input");
    let answer = post("/code").await;
    let stores = common::stores_on(&database);
    let alice = stores.users.find_by_username("alice").unwrap().unwrap().id;
    let kept = stores.tokens.list_for_user(&alice).unwrap();
    assert!(kept.is_empty(), "a token outlives the change: {kept:?}");
    assert_ne!(answer, "signed in");
}

/// A login flow with two issuing steps (the crate's, then the app's own,
/// marked with `StepDef::issues_token`) and the box ticked, by a browser
/// that carries its own cookie: the second token supersedes the first,
/// whose row goes, and replaces what the first would have (the browser's
/// series). One token is left, the one handed out.
async fn a_second_issuing_step_supersedes_the_first(db: TestDb) {
    let (database, stores, alice) = database_with_alice(&db);
    let config = RememberMeConfig::default();
    let held = rememberme::testing::remember_me_cookie(&stores, &config, &alice).unwrap();
    let again = StepDef::new("again", common::Issuing)
        .issues_token()
        .precondition(Condition::has(Tag::PASSWORD_VERIFIED));
    let login = Flow::login().step(again);
    let layer = RememberMe::with_flows(stores.clone(), config, login, Flow::step_up());
    let key = actix_web::cookie::Key::generate();
    let app = test::init_service(
        App::new()
            .configure(routes)
            .wrap(layer.clone().with_session(key)),
    )
    .await;
    let req = request("POST", "/password", &None)
        .insert_header(("cookie", format!("{RM}={}", held.value())));
    let res = test::call_service(&app, req.to_request()).await;
    let issued = cookie_of(&res, RM).expect("a remember-me cookie");
    assert_eq!(test::read_body(res).await, "signed in".as_bytes());
    let handed_out = rememberme::token::RememberCookie::decode(issued.value().as_bytes())
        .unwrap()
        .series
        .hash();
    let left = stores.tokens.list_for_user(&alice).unwrap();
    let left: Vec<_> = left.iter().map(|t| &t.series_hash).collect();
    assert_eq!(
        left,
        [&handed_out],
        "neither the first token nor the browser's"
    );
    drop(app);
    shut_down(layer, stores, database);
}
