//! Brute force, session ids, outages and bounded growth, on both backends.

mod common;

use std::time::Duration;

use common::{TestDb, TestServer};

on_both_backends!(
    an_account_is_throttled_after_repeated_failures_even_with_the_right_password,
    the_account_throttle_survives_a_restart_and_a_success_resets_it,
    unknown_usernames_are_throttled_exactly_like_real_accounts,
    one_client_address_is_limited_across_accounts,
    behind_a_trusted_proxy_each_forwarded_client_has_its_own_allowance,
    the_session_id_changes_at_every_sign_in_and_step_up,
    a_session_ends_on_the_server_after_its_lifetime,
    a_directory_that_ignores_case_gives_every_spelling_one_budget,
    a_sign_in_with_the_old_password_during_a_change_ends_with_the_change,
    a_token_of_an_old_password_checked_during_a_change_is_not_kept,
    a_session_revoked_during_its_own_password_change_signs_in_again,
    a_password_change_that_cannot_issue_the_browsers_new_token_leaves_no_copy_alive,
    a_revocation_just_before_a_password_changes_new_token_keeps_no_token,
    a_password_change_the_directory_cannot_store_keeps_the_changing_session,
    a_directory_without_set_password_changes_nothing,
    a_lockout_of_any_length_locks,
);

async fn a_session_ends_on_the_server_after_its_lifetime(db: TestDb) {
    let server = TestServer::start(db);
    server.add_user("alice", "correct horse", false);
    let mut browser = server.browser();
    browser.login("alice", "correct horse", false).await;
    server.clock.advance(Duration::from_secs(12 * 3600 - 60));
    assert_eq!(browser.get("/").await.status, 200);
    let copied = browser.cookie("__Host-session").unwrap();
    server.clock.advance(Duration::from_secs(61));
    assert_eq!(browser.get("/").await.status, 303, "ended after 12 hours");
    let mut replay = server.browser();
    replay.set_cookie("__Host-session", &copied);
    assert_eq!(
        replay.get("/").await.status,
        303,
        "a copy of the cookie too"
    );
}

/// Fails `times` sign-ins, each from a new connection: actix hands new
/// connections to its workers in turn, so state kept per worker would show.
async fn fail(server: &TestServer, user: &str, times: usize) {
    for _ in 0..times {
        let mut browser = server.browser();
        let status = browser.login(user, "wrong password", false).await.status;
        assert_eq!(status, 401);
    }
}

async fn an_account_is_throttled_after_repeated_failures_even_with_the_right_password(db: TestDb) {
    let server = TestServer::start_with(db, |b| b.max_failed_logins(3));
    server.add_user("alice", "correct horse", false);
    fail(&server, "alice", 3).await;
    let mut browser = server.browser();
    let res = browser.login("alice", "correct horse", false).await;
    assert_eq!(res.status, 429, "{}", res.body);
    let retry: u64 = res.header("retry-after").unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= 300, "{retry}");
    assert!(res.body.contains("Too many attempts"));
    assert_eq!(browser.get("/").await.status, 303, "not signed in");
    // That a throttled attempt costs no Argon2 work is checked in
    // tests/enumeration.rs, whose tests take turns: the verification
    // counter is process-wide, and the tests here run side by side.
}

async fn the_account_throttle_survives_a_restart_and_a_success_resets_it(db: TestDb) {
    let server = TestServer::start_with(db, |b| b.max_failed_logins(3));
    server.add_user("alice", "correct horse", false);
    fail(&server, "alice", 3).await;

    let server = server.restart(|b| b.max_failed_logins(3));
    let mut browser = server.browser();
    assert_eq!(
        browser.login("alice", "correct horse", false).await.status,
        429,
        "kept in the database"
    );

    server.clock.advance(Duration::from_secs(301));
    assert_eq!(
        browser.login("alice", "correct horse", false).await.status,
        303
    );
    let counter = server
        .stores()
        .state
        .failures(&rememberme::store::ThrottleKey::account("alice"))
        .unwrap();
    assert_eq!(counter, None, "a success resets the count");
    fail(&server, "alice", 2).await;
    let mut other = server.browser();

    assert_eq!(
        other.login("alice", "correct horse", false).await.status,
        303
    );
}

async fn unknown_usernames_are_throttled_exactly_like_real_accounts(db: TestDb) {
    let server = TestServer::start_with(db, |b| b.max_failed_logins(3));
    server.add_user("alice", "correct horse", false);
    fail(&server, "alice", 3).await;
    fail(&server, "ghost", 3).await;
    let mut browser = server.browser();
    let real = browser.login("alice", "guess", false).await;
    let ghost = browser.login("ghost", "guess", false).await;
    assert_eq!((real.status, ghost.status), (429, 429));
    assert_eq!(real.header("retry-after"), ghost.header("retry-after"));
}

async fn one_client_address_is_limited_across_accounts(db: TestDb) {
    let server = TestServer::start_with(db, |b| b.ip_attempts_per_minute(4));
    server.add_user("alice", "correct horse", false);
    // Each attempt claims another address in X-Forwarded-For: a header any
    // client can forge must not give it a fresh allowance.
    for (i, user) in ["a", "b", "c", "d"].into_iter().enumerate() {
        let forged = format!("203.0.113.{i}");
        let mut browser = common::Browser::with_headers(
            &server.base,
            "rememberme-tests/1.0",
            &[("x-forwarded-for", &forged), ("x-real-ip", &forged)],
        );
        assert_eq!(browser.login(user, "x", false).await.status, 401);
    }
    let mut browser = common::Browser::with_headers(
        &server.base,
        "rememberme-tests/1.0",
        &[("x-forwarded-for", "198.51.100.9")],
    );
    let res = browser.login("alice", "correct horse", false).await;
    assert_eq!(res.status, 429, "a fifth attempt within the minute");
    assert!(res.header("retry-after").is_some());
}

/// With the proxy trusted, the address it forwards is the client: each
/// gets its own allowance, and the audit log records it.
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_allowance(db: TestDb) {
    let server = TestServer::start_with(db, |b| {
        b.ip_attempts_per_minute(2)
            .trusted_proxies(["127.0.0.0/8".parse().unwrap()])
    });
    let from = |client: &str| {
        common::Browser::with_headers(
            &server.base,
            "rememberme-tests/1.0",
            &[("x-forwarded-for", client)],
        )
    };
    for _ in 0..2 {
        assert_eq!(
            from("198.51.100.1").login("a", "x", false).await.status,
            401
        );
    }
    let res = from("198.51.100.1").login("a", "x", false).await;
    assert_eq!(res.status, 429, "that client's allowance is spent");
    assert_eq!(
        from("198.51.100.2").login("a", "x", false).await.status,
        401,
        "another client behind the same proxy has its own"
    );
    let ips: Vec<_> = server
        .stores()
        .audit
        .list(Some("sign_in_failed"), None, None, 10)
        .unwrap()
        .into_iter()
        .map(|e| e.ip.unwrap_or_default())
        .collect();
    assert_eq!(ips, ["198.51.100.2", "198.51.100.1", "198.51.100.1"]);
}

/// Decrypts the session cookie with the server's key and returns the
/// session's random id.
fn session_id(server: &TestServer, browser: &common::Browser) -> Option<String> {
    let value = browser.cookie("__Host-session")?;
    let mut jar = actix_web::cookie::CookieJar::new();
    jar.add_original(
        actix_web::cookie::Cookie::parse_encoded(format!("__Host-session={value}")).ok()?,
    );
    let decrypted = jar.private(&server.session_key).get("__Host-session")?;
    let state: std::collections::HashMap<String, String> =
        serde_json::from_str(decrypted.value()).ok()?;
    // `a2.<user>.<epoch>.<checked_at>.<signed_in_at>.<password_at>.<flags>.<sid>.…`
    let auth: String = serde_json::from_str(state.get("rm.auth")?).ok()?;
    auth.split('.').nth(7).map(str::to_owned)
}

async fn the_session_id_changes_at_every_sign_in_and_step_up(db: TestDb) {
    let server = TestServer::start(db);
    server.add_user("alice", "correct horse", false);
    let mut browser = server.browser();
    browser.login("alice", "correct horse", true).await;
    let first = session_id(&server, &browser).expect("signed-in session");
    browser.login("alice", "correct horse", true).await;
    let second = session_id(&server, &browser).unwrap();
    assert_ne!(first, second, "new id at a second sign-in");

    let mut remembered = server.browser();
    remembered.set_cookie(
        "__Host-remember_me",
        &browser.cookie("__Host-remember_me").unwrap(),
    );
    remembered.get("/").await;
    let by_cookie = session_id(&server, &remembered).unwrap();
    let form = remembered.get("/login/step-up?next=/").await;
    remembered
        .post(
            "/login/step-up",
            &[("csrf_token", &form.csrf()), ("password", "correct horse")],
        )
        .await;
    let stepped_up = session_id(&server, &remembered).unwrap();
    assert_ne!(by_cookie, stepped_up, "new id at step-up");
}

/// The demo's users table, looked up without regard to case (as e-mail
/// addresses often are), saying so through `canonical_username`.
struct IgnoringCase(rememberme::store::UsersTable);

impl rememberme::store::UserDirectory for IgnoringCase {
    fn find_by_username(
        &self,
        username: &str,
    ) -> Result<Option<rememberme::store::User>, rememberme::store::StoreError> {
        self.0.find_by_username(&username.to_lowercase())
    }
    fn find_by_id(
        &self,
        id: &rememberme::UserId,
    ) -> Result<Option<rememberme::store::User>, rememberme::store::StoreError> {
        self.0.find_by_id(id)
    }
    fn canonical_username<'a>(&self, typed: &'a str) -> std::borrow::Cow<'a, str> {
        typed.to_lowercase().into()
    }
}

/// From an attack review: failures were counted under the name as typed,
/// so with a directory that ignores case every spelling of a name
/// (`alice`, `Alice`, `aLiCe`…) had a budget of its own. The directory now
/// names the form its lookups share, and that form is counted.
async fn a_directory_that_ignores_case_gives_every_spelling_one_budget(db: TestDb) {
    use actix_web::{App, HttpResponse, test, web};
    use rememberme::extract::SubmitOutcome;
    use rememberme::flow::{Credentials, FlowKind};
    use rememberme::{Auth, AuthError, Database, DieselStore, RememberMe, RememberMeConfig};

    let database = Database::connect(&db.url, 2).unwrap();
    let users = rememberme::store::UsersTable::open(database.clone()).unwrap();
    users.create("alice", "correct horse", false).unwrap();
    let stores = rememberme::Stores::new(DieselStore::new(database), IgnoringCase(users));
    let config = RememberMeConfig::builder().max_failed_logins(3).build();
    let layer = RememberMe::new(stores, config).with_session(actix_web::cookie::Key::generate());
    async fn sign_in(
        auth: Auth,
        path: web::Path<(String, String)>,
    ) -> Result<HttpResponse, AuthError> {
        let (username, password) = path.into_inner();
        let credentials = Credentials {
            username,
            password,
            ..Default::default()
        };
        Ok(
            HttpResponse::Ok().body(match auth.submit(FlowKind::Login, credentials).await? {
                SubmitOutcome::SignedIn(_) => "signed in",
                SubmitOutcome::Throttled { .. } => "throttled",
                _ => "invalid",
            }),
        )
    }
    let app = test::init_service(
        App::new()
            .route("/{user}/{password}", web::post().to(sign_in))
            .wrap(layer),
    )
    .await;
    let post = async |user: &str, password: &str| {
        let req = test::TestRequest::post()
            .uri(&format!("/{user}/{}", password.replace(' ', "%20")))
            .to_request();
        String::from_utf8(test::call_and_read_body(&app, req).await.to_vec()).unwrap()
    };
    assert_eq!(
        post("ALICE", "correct horse").await,
        "signed in",
        "one user"
    );
    for spelling in ["alice", "Alice", "aLiCe"] {
        assert_eq!(post(spelling, "wrong").await, "invalid");
    }
    assert_eq!(
        post("ALICE", "correct horse").await,
        "throttled",
        "three spellings, one budget"
    );
}

/// Where a test holds a call of the users table: an armed call, once
/// entered, waits until the test opens the gate.
#[derive(Default)]
struct Gate {
    /// Hold the next `set_password` (a change held while its new hash is
    /// made).
    set_password: std::sync::atomic::AtomicBool,
    /// Hold the next `find_by_id`, after its read (a sign-in held with the
    /// old password's hash). Not `verify_password`: that runs on the Argon2
    /// threads, which the change needs too.
    find_by_id: std::sync::atomic::AtomicBool,
    /// Fail the next `set_password` (a database error as it stores).
    fail_set_password: std::sync::atomic::AtomicBool,
    /// Act as a directory without `set_password` (its default, which
    /// refuses) from now on.
    no_set_password: std::sync::atomic::AtomicBool,
    entered: std::sync::atomic::AtomicBool,
    open: std::sync::atomic::AtomicBool,
}

impl Gate {
    /// Waits here if `armed` (disarming it), until the gate opens.
    fn pass(&self, armed: &std::sync::atomic::AtomicBool) {
        use std::sync::atomic::Ordering::SeqCst;
        if armed.swap(false, SeqCst) {
            self.entered.store(true, SeqCst);
            while !self.open.load(SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    /// Once a held call waits.
    async fn entered(&self) {
        while !self.entered.load(std::sync::atomic::Ordering::SeqCst) {
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn open(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The demo's users table with a [`Gate`].
struct Gated {
    inner: rememberme::store::UsersTable,
    gate: std::sync::Arc<Gate>,
}

impl rememberme::store::UserDirectory for Gated {
    fn find_by_username(
        &self,
        username: &str,
    ) -> Result<Option<rememberme::store::User>, rememberme::store::StoreError> {
        self.inner.find_by_username(username)
    }
    fn find_by_id(
        &self,
        id: &rememberme::UserId,
    ) -> Result<Option<rememberme::store::User>, rememberme::store::StoreError> {
        let found = self.inner.find_by_id(id);
        self.gate.pass(&self.gate.find_by_id);
        found
    }
    fn sets_passwords(&self) -> bool {
        !self
            .gate
            .no_set_password
            .load(std::sync::atomic::Ordering::SeqCst)
    }
    fn set_password(
        &self,
        id: &rememberme::UserId,
        password: &str,
    ) -> Result<(), rememberme::store::StoreError> {
        if !self.sets_passwords() {
            return Err(rememberme::store::StoreError::Unsupported("set_password"));
        }
        self.gate.pass(&self.gate.set_password);
        let fail = &self.gate.fail_set_password;
        if fail.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Err(rememberme::store::StoreError::Unavailable("cut".into()));
        }
        self.inner.set_password(id, password)
    }
}

/// Alice's password before and after the races' change.
const OLD: &str = "old-password";
const NEW: &str = "new-password";

/// A password-change race: alice (password [`OLD`]) in the users table
/// behind a [`Gate`], the stores over it, and a layer with a manual clock.
struct Race {
    stores: rememberme::Stores,
    alice: rememberme::UserId,
    gate: std::sync::Arc<Gate>,
    /// The token store's calls, to set traps on.
    calls: std::sync::Arc<common::CallCounts>,
    clock: rememberme::clock::ManualClock,
    layer: rememberme::Layer,
}

fn race(db: &TestDb) -> Race {
    use rememberme::{Database, DieselStore, RememberMe, RememberMeConfig};
    let database = Database::connect(&db.url, 4).unwrap();
    let users = rememberme::store::UsersTable::open(database.clone()).unwrap();
    let alice = users.create("alice", OLD, false).unwrap();
    let gate = std::sync::Arc::new(Gate::default());
    let directory = Gated {
        inner: users,
        gate: gate.clone(),
    };
    let (store, calls) = common::CountingStore::new(DieselStore::new(database));
    let stores = rememberme::Stores::new(store, directory);
    let clock = rememberme::clock::ManualClock::new();
    let config = RememberMeConfig::builder()
        .clock(clock.clone())
        .password_concurrency(4)
        .build();
    let layer =
        RememberMe::new(stores.clone(), config).with_session(actix_web::cookie::Key::generate());
    Race {
        stores,
        alice,
        gate,
        calls,
        clock,
        layer,
    }
}

/// The races' routes: `POST /sign-in/{password}/{remember|once}` (alice,
/// "Keep me logged in" ticked or not), `POST /change` ([`OLD`] to
/// [`NEW`]), `GET /me` (who the session is).
fn race_routes(cfg: &mut actix_web::web::ServiceConfig) {
    use actix_web::{HttpResponse, web};
    use rememberme::extract::{PasswordChange, SubmitOutcome};
    use rememberme::flow::{Credentials, FlowKind};
    use rememberme::{Auth, AuthError};
    async fn sign_in(
        auth: Auth,
        path: web::Path<(String, String)>,
    ) -> Result<HttpResponse, AuthError> {
        let (password, remember) = path.into_inner();
        let credentials = Credentials {
            username: "alice".into(),
            password,
            remember_me: remember == "remember",
            ..Default::default()
        };
        let outcome = auth.submit(FlowKind::Login, credentials).await?;
        Ok(HttpResponse::Ok().body(match outcome {
            SubmitOutcome::SignedIn(_) => "signed in",
            _ => "not signed in",
        }))
    }
    async fn change(auth: Auth) -> Result<HttpResponse, AuthError> {
        let changed = auth.change_password(OLD.into(), NEW.into()).await?;
        Ok(HttpResponse::Ok().body(match changed {
            PasswordChange::Changed => "changed",
            PasswordChange::Unsupported => "unsupported",
            _ => "not changed",
        }))
    }
    async fn me(auth: Auth) -> HttpResponse {
        HttpResponse::Ok().body(auth.user().map_or("nobody".to_owned(), |u| u.username))
    }
    cfg.route("/sign-in/{password}/{remember}", web::post().to(sign_in))
        .route("/change", web::post().to(change))
        .route("/me", web::get().to(me));
}

/// What a race's request set: the body, the session cookie, the
/// remember-me cookie.
type Answer = (
    String,
    Option<actix_web::cookie::Cookie<'static>>,
    Option<actix_web::cookie::Cookie<'static>>,
);

/// `async |req: TestRequest| -> Answer` on a race's `app`.
macro_rules! caller {
    ($app:ident) => {
        async |req: actix_web::test::TestRequest| -> Answer {
            let res = actix_web::test::call_service(&$app, req.to_request()).await;
            let session = common::cookie_of(&res, "__Host-session");
            let remembered = common::cookie_of(&res, "__Host-remember_me");
            let body = actix_web::test::read_body(res).await;
            (
                String::from_utf8(body.to_vec()).unwrap(),
                session,
                remembered,
            )
        }
    };
}

/// `let app = …; let call = caller!(app);`: the races' routes behind
/// `layer`, and a caller of them.
macro_rules! race_app {
    ($layer:expr => $app:ident, $call:ident) => {
        let $app = actix_web::test::init_service(
            actix_web::App::new().configure(race_routes).wrap($layer),
        )
        .await;
        let $call = caller!($app);
    };
}

/// Alice signed in with the old password and the box ticked, through
/// `call` (a [`caller!`]): her session cookie and her remember-me cookie.
async fn signed_in_remembered(
    call: &impl AsyncFn(actix_web::test::TestRequest) -> Answer,
) -> (
    actix_web::cookie::Cookie<'static>,
    actix_web::cookie::Cookie<'static>,
) {
    let sign_in = actix_web::test::TestRequest::post().uri(&format!("/sign-in/{OLD}/remember"));
    let (signed_in, owner, remembered) = call(sign_in).await;
    assert_eq!(signed_in, "signed in");
    (owner.expect("a session"), remembered.expect("a token"))
}

/// alice signed in twice: this session (remembered) and another's.
async fn signed_in_here_and_elsewhere(
    call: &impl AsyncFn(actix_web::test::TestRequest) -> Answer,
) -> (
    actix_web::cookie::Cookie<'static>,
    actix_web::cookie::Cookie<'static>,
) {
    let (owner, _) = signed_in_remembered(call).await;
    let elsewhere = actix_web::test::TestRequest::post().uri(&format!("/sign-in/{OLD}/once"));
    let other = call(elsewhere).await.1.expect("a second session");
    (owner, other)
}

/// No password change stands: the old password signs in, the new does not.
async fn only_the_old_password_signs_in(
    call: &impl AsyncFn(actix_web::test::TestRequest) -> Answer,
) {
    let sign_in = |password: &str| {
        actix_web::test::TestRequest::post().uri(&format!("/sign-in/{password}/once"))
    };
    assert_eq!(
        call(sign_in(OLD)).await.0,
        "signed in",
        "the password stayed"
    );
    assert_eq!(call(sign_in(NEW)).await.0, "not signed in");
}

/// The password change stands: the new password signs in, the old does not.
async fn only_the_new_password_signs_in(
    call: &impl AsyncFn(actix_web::test::TestRequest) -> Answer,
) {
    let sign_in = |password: &str| {
        actix_web::test::TestRequest::post().uri(&format!("/sign-in/{password}/once"))
    };
    assert_eq!(call(sign_in(OLD)).await.0, "not signed in");
    assert_eq!(call(sign_in(NEW)).await.0, "signed in");
}

/// From a review: a password change moved the epoch on before the new
/// password was hashed and stored, so a sign-in with the old password that
/// finished meanwhile got a session under the new epoch, and kept it. The
/// change now moves the epoch on again once the new password is stored,
/// and a password check's session carries the epoch read before the check.
async fn a_sign_in_with_the_old_password_during_a_change_ends_with_the_change(db: TestDb) {
    use actix_web::test;
    use std::sync::atomic::Ordering::SeqCst;

    let Race {
        gate, clock, layer, ..
    } = race(&db);
    gate.set_password.store(true, SeqCst);
    race_app!(layer => app, call);
    let sign_in = || test::TestRequest::post().uri(&format!("/sign-in/{OLD}/once"));
    let me = |session: &actix_web::cookie::Cookie<'static>| {
        test::TestRequest::get().uri("/me").cookie(session.clone())
    };
    let owner = call(sign_in()).await.1.expect("a session");

    let changing = call(test::TestRequest::post().uri("/change").cookie(owner));
    let meanwhile = async {
        gate.entered().await;
        let other = call(sign_in()).await.1.expect("a session");
        gate.open();
        other
    };
    let ((changed, ..), other) = futures_util::future::join(changing, meanwhile).await;
    assert_eq!(changed, "changed");
    assert_eq!(call(me(&other)).await.0, "alice", "signed in meanwhile");
    clock.advance(Duration::from_secs(61));
    assert_eq!(
        call(me(&other)).await.0,
        "nobody",
        "the old password's session ends at its next check"
    );
}

/// From a review: a sign-in with "keep me logged in" whose check of the old
/// password spans a whole password change inserted its token after the
/// change had deleted the user's tokens, and the token then signed the old
/// password's holder back in. The issuing step now checks, after its
/// insert, that the epoch is still the one the password was checked under.
async fn a_token_of_an_old_password_checked_during_a_change_is_not_kept(db: TestDb) {
    use actix_web::test;
    use std::sync::atomic::Ordering::SeqCst;

    let Race {
        stores,
        alice,
        gate,
        layer,
        ..
    } = race(&db);
    race_app!(layer => app, call);
    let sign_in = || test::TestRequest::post().uri(&format!("/sign-in/{OLD}/remember"));
    let (signed_in, owner, _) = call(sign_in()).await;
    assert_eq!(signed_in, "signed in");
    let owner = owner.expect("a session");
    let tokens = || stores.tokens.list_for_user(&alice).unwrap().len();
    assert_eq!(tokens(), 1);

    gate.find_by_id.store(true, SeqCst);
    let racing = call(sign_in());
    let meanwhile = async {
        gate.entered().await;
        let (changed, ..) = call(
            test::TestRequest::post()
                .uri("/change")
                .cookie(owner.clone()),
        )
        .await;
        gate.open();
        changed
    };
    let ((raced, ..), changed) = futures_util::future::join(racing, meanwhile).await;
    assert_eq!(changed, "changed");
    assert_eq!(raced, "not signed in", "its password was the old one");
    // The change ended every token (its request carried none of its own),
    // and the racing sign-in's, inserted after, did not stay.
    let kept: Vec<_> = stores.tokens.list_for_user(&alice).unwrap();
    assert!(kept.is_empty(), "{kept:?}");
}

/// A password change whose epoch moves while the new password is hashed
/// and stored (here "sign out everywhere" from another device; the same
/// for a theft's revocation): the change completes, the epoch moves on past
/// both, but the changing session does not adopt the result. A revoked
/// session never does: it ends now, and signs in again with the new
/// password.
async fn a_session_revoked_during_its_own_password_change_signs_in_again(db: TestDb) {
    use actix_web::test;
    use std::sync::atomic::Ordering::SeqCst;

    let Race {
        stores,
        alice,
        gate,
        clock,
        layer,
        ..
    } = race(&db);
    race_app!(layer => app, call);
    let (owner, remembered) = signed_in_remembered(&call).await;

    gate.set_password.store(true, SeqCst);
    let changing = call(
        test::TestRequest::post()
            .uri("/change")
            .cookie(owner.clone())
            .cookie(remembered),
    );
    let meanwhile = async {
        gate.entered().await;
        // Another device signs alice out everywhere while the change waits.
        stores.state.bump_epoch(&alice).unwrap();
        gate.open();
    };
    let ((changed, cleared, _), ()) = futures_util::future::join(changing, meanwhile).await;
    assert_ne!(
        changed, "changed",
        "the session was revoked before its change completed"
    );
    let kept = cleared.expect("the answer sets the session cookie");
    let (me, ..) = call(test::TestRequest::get().uri("/me").cookie(kept)).await;
    assert_eq!(
        me, "nobody",
        "the session the answer leaves is signed out, not restamped into the new epoch"
    );
    // A copy of the old session cookie (a cookie session lives in the
    // cookie) dies at its next check, under the old epoch.
    clock.advance(Duration::from_secs(61));
    let (me, ..) = call(test::TestRequest::get().uri("/me").cookie(owner)).await;
    assert_eq!(me, "nobody");
    // This browser's token went with the rest, and none was made for a
    // session that must sign in again (nobody would hold it).
    let left = stores.tokens.list_for_user(&alice).unwrap();
    assert!(left.is_empty(), "{left:?}");
    only_the_new_password_signs_in(&call).await;
}

/// A password change whose new token for this browser cannot be stored
/// (the database fails right then) answers an error, and leaves no copy
/// of the browser's old cookie alive: the change deletes this browser's
/// series with the user's other tokens before it issues the new one.
/// What had happened stands: the new password is the password.
async fn a_password_change_that_cannot_issue_the_browsers_new_token_leaves_no_copy_alive(
    db: TestDb,
) {
    use actix_web::test;
    use rememberme::store::StoreError;

    let Race {
        stores,
        alice,
        calls,
        layer,
        ..
    } = race(&db);
    race_app!(layer => app, call);
    let (owner, remembered) = signed_in_remembered(&call).await;

    calls.trap("insert", || Err(StoreError::Unavailable("cut".into())));
    let change = test::TestRequest::post()
        .uri("/change")
        .cookie(owner)
        .cookie(remembered.clone());
    let res = test::call_service(&app, change.to_request()).await;
    assert_eq!(
        res.status(),
        actix_web::http::StatusCode::SERVICE_UNAVAILABLE
    );

    let left = stores.tokens.list_for_user(&alice).unwrap();
    assert!(left.is_empty(), "{left:?}");
    let copy = test::TestRequest::get().uri("/me").cookie(remembered);
    assert_eq!(
        call(copy).await.0,
        "nobody",
        "the old cookie's copy is dead"
    );
    only_the_new_password_signs_in(&call).await;
}

/// "Sign out everywhere" from another device that lands after a password
/// change has ended the user's tokens, and before it stores this
/// browser's new one: the new token is deleted again (it was issued under
/// an epoch that has ended), its cookie does not sign in, and the changing
/// session ends at its next check like every other.
async fn a_revocation_just_before_a_password_changes_new_token_keeps_no_token(db: TestDb) {
    use actix_web::test;

    let Race {
        stores,
        alice,
        calls,
        clock,
        layer,
        ..
    } = race(&db);
    race_app!(layer => app, call);
    let (owner, remembered) = signed_in_remembered(&call).await;

    let (elsewhere, whom) = (stores.clone(), alice.clone());
    calls.trap("insert", move || elsewhere.state.bump_epoch(&whom));
    let change = test::TestRequest::post()
        .uri("/change")
        .cookie(owner)
        .cookie(remembered);
    let (changed, session, token) = call(change).await;
    assert_eq!(changed, "changed", "the change itself completed");

    let left = stores.tokens.list_for_user(&alice).unwrap();
    assert!(left.is_empty(), "{left:?}");
    assert!(
        token.as_ref().is_none_or(|c| c.value().is_empty()),
        "no token handed out: {token:?}"
    );
    clock.advance(Duration::from_secs(61));
    let me = test::TestRequest::get()
        .uri("/me")
        .cookie(session.expect("a session"));
    assert_eq!(call(me).await.0, "nobody", "revoked after its change");
}

/// From a review: a password change whose new password the app's directory
/// could not store (a database error; a directory without `set_password`)
/// had moved the user's epoch already. The password stayed, and every
/// session ended at its next check, the one that had just proved the
/// password too. That one now moves with the epoch (the answer is still
/// the error); the others end, as the change had begun.
async fn a_password_change_the_directory_cannot_store_keeps_the_changing_session(db: TestDb) {
    use actix_web::test;
    use std::sync::atomic::Ordering::SeqCst;

    let Race {
        gate, clock, layer, ..
    } = race(&db);
    race_app!(layer => app, call);
    let (owner, other) = signed_in_here_and_elsewhere(&call).await;

    gate.fail_set_password.store(true, SeqCst);
    let change = test::TestRequest::post()
        .uri("/change")
        .cookie(owner.clone());
    let res = test::call_service(&app, change.to_request()).await;
    assert_eq!(
        res.status(),
        actix_web::http::StatusCode::SERVICE_UNAVAILABLE
    );
    let kept = common::cookie_of(&res, "__Host-session").unwrap_or(owner);
    clock.advance(Duration::from_secs(61));
    let me = |session| test::TestRequest::get().uri("/me").cookie(session);
    assert_eq!(
        call(me(kept)).await.0,
        "alice",
        "the changing session stays"
    );
    assert_eq!(call(me(other)).await.0, "nobody", "the others end");
    only_the_old_password_signs_in(&call).await;
}

/// From a review: with a directory that does not store passwords (no
/// `set_password`), a password change moved the user's epoch, then failed
/// with a 503 ("try again") that could never succeed: every try signed the
/// user out everywhere else. It is now refused before anything moves.
async fn a_directory_without_set_password_changes_nothing(db: TestDb) {
    use actix_web::test;
    use std::sync::atomic::Ordering::SeqCst;

    let Race {
        gate, clock, layer, ..
    } = race(&db);
    race_app!(layer => app, call);
    let (owner, other) = signed_in_here_and_elsewhere(&call).await;

    gate.no_set_password.store(true, SeqCst);
    let change = || {
        test::TestRequest::post()
            .uri("/change")
            .cookie(owner.clone())
    };
    for _ in 0..2 {
        let (body, session, _) = call(change()).await;
        assert_eq!(body, "unsupported");
        assert!(session.is_none(), "the session is as it was");
    }
    clock.advance(Duration::from_secs(61));
    let me = |session| test::TestRequest::get().uri("/me").cookie(session);
    assert_eq!(call(me(owner)).await.0, "alice", "this session stays");
    assert_eq!(call(me(other)).await.0, "alice", "and so do the others");
    only_the_old_password_signs_in(&call).await;
}

/// From a review: a lockout meant as "for ever" (`Duration::MAX`, or a
/// huge `--lockout-secs`) was read as seconds in an `i64` and wrapped to
/// -1, so every failure counter read as stale and restarted at one: no
/// account was ever throttled. Durations are capped (100 years) instead.
async fn a_lockout_of_any_length_locks(db: TestDb) {
    let server = TestServer::start_with(db, |b| {
        b.max_failed_logins(3)
            .lockout(Duration::MAX)
            .ip_attempts_per_minute(0)
    });
    server.add_user("alice", "correct horse", false);
    for _ in 0..3 {
        let status = server.browser().login("alice", "wrong", false).await.status;
        assert_eq!(status, 401);
    }
    let right = server
        .browser()
        .login("alice", "correct horse", false)
        .await;
    assert_eq!(right.status, 429, "locked, even with the right password");
}
