//! A step of the app's own in the login flow: a second factor, a TOTP code
//! (RFC 6238), skipped on a browser the user chose to trust for 30 days.
//! Built only from the crate's public API: the app's own tag
//! (`SECOND_FACTOR`), its own interactive step with its own input
//! (`totp_code`), and the login flow composed from the crate's steps and
//! its own. The crate's rules keep holding: the token step still needs a
//! password typed just now (and here the second factor too), and a
//! remember-me cookie alone stays weak.
//!
//! The flow: remember-me identifying (a cookie was issued after both
//! factors, so it carries `SECOND_FACTOR`) → password → trusted browser
//! (automatic: this browser's signed trust cookie names the user) → TOTP
//! (interactive, skipped once `SECOND_FACTOR` is there) → token.
//!
//! ```sh
//! cargo run --example custom_step -- --cookie-secure false
//! # alice / alice-password, then the code of secret "12345678901234567890"
//! # (RFC 6238's test secret) from any authenticator
//! ```

mod support;

use std::collections::BTreeMap;

use actix_web::cookie::{Cookie, CookieJar, Key, time::Duration as CookieDuration};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, post, web};
use rememberme::extract::SubmitOutcome;
use rememberme::flow::{
    Condition, Failure, IDENTIFY, ISSUE, PASSWORD, PasswordStep, RememberMeIdentifyStep,
    RememberMeIssueStep, Step, StepContext, StepDef, StepId, StepOutcome,
};
use rememberme::flow::{Credentials, Flow, FlowKind, Tag};
use rememberme::store::{Reservation, StoreError, ThrottleKey};
use rememberme::{Auth, AuthError, CsrfForm, Database, DieselStore, RememberMe, Stores, UserId};
use serde::Deserialize;

/// The app's own tag: the second factor is proven.
const SECOND_FACTOR: Tag = Tag::new("SECOND_FACTOR");
const TRUSTED_BROWSER: StepId = "trusted_browser";
const TOTP: StepId = "totp";
/// RFC 6238's test secret: alice's authenticator holds it.
pub const ALICE_TOTP_SECRET: &[u8] = b"12345678901234567890";
const TRUST_COOKIE: &str = "trusted_browser";
const TRUST_DAYS: i64 = 30;

/// The second factor: a six-digit code of the user's TOTP secret, within
/// one 30 s step of now. Five wrong codes in five minutes lock the step
/// (the crate's failure counters, in its own table); a code once used is
/// not taken again.
struct TotpStep {
    secrets: BTreeMap<UserId, Vec<u8>>,
    used: parking_lot::Mutex<BTreeMap<UserId, u64>>,
}

impl Step for TotpStep {
    fn is_interactive(&self) -> bool {
        true
    }

    fn has_input(&self, ctx: &StepContext<'_>) -> bool {
        ctx.inputs.contains_key("totp_code")
    }

    fn run(
        &self,
        ctx: &mut StepContext<'_>,
        known_user: Option<&UserId>,
    ) -> Result<StepOutcome, StoreError> {
        let (Some(user), Some(code)) = (known_user, ctx.inputs.get("totp_code")) else {
            return Ok(StepOutcome::Failed(Failure::InvalidCredentials));
        };
        let key = ThrottleKey::account(&format!("totp:{user}"));
        if let Reservation::Throttled { last_failed_at } =
            ctx.stores.state.reserve_attempt(&key, ctx.now, 300, 5)?
        {
            let retry_after_secs = (last_failed_at + 300 - ctx.now).max(1) as u64;
            return Ok(StepOutcome::Failed(Failure::Throttled { retry_after_secs }));
        }
        let Some(secret) = self.secrets.get(user) else {
            return Ok(StepOutcome::Failed(Failure::InvalidCredentials));
        };
        let totp = totp_rs::Builder::new()
            .with_secret(secret.clone())
            .build()
            .map_err(|e| StoreError::Query(e.to_string()))?;
        let step = totp.check(code.trim(), ctx.now.max(0) as u64);
        let mut used = self.used.lock();
        match step {
            Some(step) if used.get(user).is_none_or(|&last| step > last) => {
                used.insert(user.clone(), step);
                ctx.stores.state.clear_failures(&key)?;
                Ok(StepOutcome::Success {
                    user: user.clone(),
                    activate: Vec::new(),
                })
            }
            _ => Ok(StepOutcome::Failed(Failure::InvalidCredentials)),
        }
    }
}

/// This browser is trusted for the user: the app's handler verified its
/// signed trust cookie and passed the user it names as the fact
/// `trusted_for` (in `verified`, never in `inputs`: those are the client's,
/// and the JSON API fills them from the request's body).
struct TrustedBrowserStep;

impl Step for TrustedBrowserStep {
    fn is_interactive(&self) -> bool {
        false
    }

    fn run(
        &self,
        ctx: &mut StepContext<'_>,
        known_user: Option<&UserId>,
    ) -> Result<StepOutcome, StoreError> {
        match (known_user, ctx.verified.get("trusted_for")) {
            (Some(user), Some(trusted)) if user.as_str() == trusted => Ok(StepOutcome::Success {
                user: user.clone(),
                activate: Vec::new(),
            }),
            _ => Ok(StepOutcome::NotApplicable),
        }
    }
}

/// The login flow, composed of the crate's steps and the app's.
fn login_flow(secrets: BTreeMap<UserId, Vec<u8>>) -> Flow {
    let weak = Tag::WEAK_AUTHENTICATION;
    Flow::new(FlowKind::Login)
        .step(
            StepDef::new(IDENTIFY, RememberMeIdentifyStep)
                .tags_on_success([weak.clone(), SECOND_FACTOR]),
        )
        .step(
            StepDef::new(PASSWORD, PasswordStep::new().activate_on_remember(ISSUE))
                .skip_if(Condition::has(weak.clone()))
                .tags_on_success([weak, Tag::PASSWORD_VERIFIED]),
        )
        .step(
            StepDef::new(TRUSTED_BROWSER, TrustedBrowserStep)
                .skip_if(Condition::has(SECOND_FACTOR))
                .tags_on_success([SECOND_FACTOR]),
        )
        .step(
            StepDef::new(
                TOTP,
                TotpStep {
                    secrets,
                    used: Default::default(),
                },
            )
            .skip_if(Condition::has(SECOND_FACTOR))
            .tags_on_success([SECOND_FACTOR]),
        )
        .step(
            StepDef::new(ISSUE, RememberMeIssueStep)
                .only_when_activated()
                .precondition(Condition::has_all([Tag::PASSWORD_VERIFIED, SECOND_FACTOR])),
        )
}

/// The key of the app's trust cookies.
struct TrustKey(Key);

/// The user this browser's trust cookie names, if it is signed and fresh.
fn trusted_for(req: &HttpRequest, key: &TrustKey) -> Option<String> {
    let mut jar = CookieJar::new();
    jar.add_original(req.cookie(TRUST_COOKIE)?.into_owned());
    let value = jar.signed(&key.0).get(TRUST_COOKIE)?.value().to_owned();
    let (user, until) = value.rsplit_once('|')?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs() as i64;
    (until.parse::<i64>().ok()? > now).then(|| user.to_owned())
}

fn trust_cookie(user: &UserId, key: &TrustKey, secure: bool) -> Cookie<'static> {
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
        + TRUST_DAYS * 24 * 3600;
    let mut jar = CookieJar::new();
    jar.signed_mut(&key.0)
        .add(Cookie::new(TRUST_COOKIE, format!("{user}|{until}")));
    let mut cookie = jar.get(TRUST_COOKIE).expect("just added").clone();
    cookie.set_http_only(true);
    cookie.set_secure(secure);
    cookie.set_path("/");
    cookie.set_max_age(CookieDuration::days(TRUST_DAYS));
    cookie
}

fn totp_page(auth: &Auth, status: StatusCode, error: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(format!(
            "<!doctype html><title>Second factor</title><p>{error}</p>\
             <form method=\"post\" action=\"/login/totp\">\
             <input type=\"hidden\" name=\"csrf_token\" value=\"{}\">\
             <input name=\"totp_code\" inputmode=\"numeric\" autocomplete=\"one-time-code\">\
             <label><input type=\"checkbox\" name=\"trust_browser\"> Trust this browser for 30 days</label>\
             <button>Verify</button></form>",
            auth.csrf_token()
        ))
}

fn answer(auth: &Auth, outcome: SubmitOutcome, status: StatusCode) -> HttpResponse {
    match outcome {
        SubmitOutcome::SignedIn(_) => support::see_other("/"),
        SubmitOutcome::NeedsInput { .. } => totp_page(auth, StatusCode::OK, ""),
        SubmitOutcome::Throttled { retry_after_secs } => HttpResponse::TooManyRequests()
            .insert_header(("Retry-After", retry_after_secs.to_string()))
            .body("Too many attempts."),
        _ if status == StatusCode::UNAUTHORIZED => {
            totp_page(auth, status, "That code is not right.")
        }
        _ => HttpResponse::Unauthorized().body("Wrong username or password."),
    }
}

#[post("/login")]
async fn login(
    req: HttpRequest,
    auth: Auth,
    key: web::Data<TrustKey>,
    CsrfForm(form): CsrfForm<support::LoginForm>,
) -> Result<HttpResponse, AuthError> {
    let mut verified = BTreeMap::new();
    if let Some(user) = trusted_for(&req, &key) {
        verified.insert("trusted_for".to_owned(), user);
    }
    let credentials = Credentials {
        username: form.username,
        password: form.password,
        remember_me: form.remember_me.is_some(),
        verified,
        ..Default::default()
    };
    let outcome = auth.submit(FlowKind::Login, credentials).await?;
    Ok(answer(&auth, outcome, StatusCode::FORBIDDEN))
}

#[derive(Deserialize)]
struct TotpForm {
    #[serde(default)]
    totp_code: String,
    trust_browser: Option<String>,
}

#[post("/login/totp")]
async fn totp_submit(
    auth: Auth,
    key: web::Data<TrustKey>,
    settings: web::Data<support::Settings>,
    CsrfForm(form): CsrfForm<TotpForm>,
) -> Result<HttpResponse, AuthError> {
    let credentials = Credentials {
        inputs: BTreeMap::from([("totp_code".to_owned(), form.totp_code)]),
        ..Default::default()
    };
    let outcome = auth.submit(FlowKind::Login, credentials).await?;
    let mut response = answer(&auth, outcome.clone(), StatusCode::UNAUTHORIZED);
    if let (SubmitOutcome::SignedIn(user), Some(_)) = (&outcome, form.trust_browser) {
        let cookie = trust_cookie(&user.id, &key, settings.cookie_secure);
        response
            .add_cookie(&cookie)
            .map_err(|e| AuthError::Internal(e.to_string()))?;
    }
    Ok(response)
}

fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(support::home)
        .service(support::login_form)
        .service(support::logout)
        .service(login)
        .service(totp_submit);
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let settings = support::Settings::from_env();
    let db = Database::connect(&settings.database_url, 8).map_err(std::io::Error::other)?;
    let (users, alice) = support::users_with_alice(&db)?;
    let secrets = BTreeMap::from([(alice, ALICE_TOTP_SECRET.to_vec())]);
    let stores = Stores::new(DieselStore::new(db.clone()), users);
    let flow = login_flow(secrets);
    let remember = RememberMe::with_flows(stores, settings.config(), flow, Flow::step_up());
    let key = support::session_key(&settings);
    let trust = web::Data::new(TrustKey(Key::derive_from(key.master())));
    let shared = web::Data::new(support::Settings::from_env());
    let layer = remember.with_session(key);
    support::serve(&settings, layer, db, move |cfg| {
        cfg.app_data(trust.clone()).app_data(shared.clone());
        routes(cfg);
    })
    .await
}
