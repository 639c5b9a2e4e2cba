//! Handlers of the demo site.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, ContentType};
use actix_web::{HttpResponse, get, post, web};
use askama::Template;
use serde::Deserialize;

use crate::{Auth, AuthError, CsrfForm, CurrentUser, Stores};

use crate::extract::{SignInMethod, SubmitOutcome, safe_redirect_path};

use crate::flow::{Credentials, FlowKind};

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(login_form)
        .service(login_submit)
        .service(step_up_form)
        .service(step_up_submit)
        .service(logout)
        .service(stylesheet);
}

/// The demo site's own pages: its home page and its health check.
#[cfg(feature = "demo")]
pub(crate) fn demo_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(home).service(healthz);
}

use super::view::{html, see_other, template_html};

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage<'a> {
    username: &'a str,
    by_remember_me: bool,
    tags: Vec<&'a str>,
    is_admin: bool,
    csrf_token: String,
}

#[get("/")]
async fn home(CurrentUser(user): CurrentUser, auth: Auth) -> Result<HttpResponse, AuthError> {
    template_html(
        StatusCode::OK,
        &HomePage {
            username: &user.username,
            by_remember_me: user.method == SignInMethod::RememberMe,
            tags: user.tags.iter().map(|t| t.as_str()).collect(),
            is_admin: user.is_admin,
            csrf_token: auth.csrf_token(),
        },
    )
}

/// What the sign-in and step-up pages show.
#[derive(Template, Debug)]
#[template(path = "login.html")]
#[non_exhaustive]
pub struct LoginPage<'a> {
    /// Where the form posts: `/login` or `/login/step-up`.
    pub action: &'a str,
    /// Whether this is the step-up page (the password only, for the user signed in).
    pub step_up: bool,
    /// The user signed in now, if any.
    pub signed_in_as: Option<String>,
    /// Why the last attempt failed, if it did.
    pub error: Option<&'a str>,
    /// The form's hidden `csrf_token` field.
    pub csrf_token: String,
    /// The form's hidden `next` field: where to go after.
    pub next: &'a str,
    /// The username typed before, to show again.
    pub username: &'a str,
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    remember_me: Option<String>,
    next: Option<String>,
}

/// One message for every failure: it must not say which of the two was wrong.
const INVALID: &str = "Wrong username or password.";

#[get("/login")]
async fn login_form(auth: Auth, query: web::Query<NextQuery>) -> Result<HttpResponse, AuthError> {
    let next = safe_redirect_path(query.next.as_deref());
    if auth.signed_in_by_cookie_now() {
        // Recognised by "Keep me logged in": no form to show.
        return Ok(see_other(next));
    }
    auth.begin(FlowKind::Login).await?;
    html(
        &auth,
        StatusCode::OK,
        &LoginPage {
            action: "/login",
            step_up: false,
            signed_in_as: auth.user().map(|u| u.username),
            error: None,
            csrf_token: auth.csrf_token(),
            next,
            username: "",
        },
    )
}

#[post("/login")]
async fn login_submit(
    auth: Auth,
    CsrfForm(form): CsrfForm<LoginForm>,
) -> Result<HttpResponse, AuthError> {
    submit(auth, form, None).await
}

/// Answers the password form of the login flow, or of the step-up flow when
/// `step_up_user` names the signed-in user.
async fn submit(
    auth: Auth,
    form: LoginForm,
    step_up_user: Option<String>,
) -> Result<HttpResponse, AuthError> {
    let next = safe_redirect_path(form.next.as_deref()).to_owned();
    let (kind, action, username) = match &step_up_user {
        Some(user) => (FlowKind::StepUp, "/login/step-up", user.clone()),
        None => (FlowKind::Login, "/login", form.username.clone()),
    };
    let outcome = auth
        .submit(
            kind,
            Credentials {
                username,
                password: form.password,
                remember_me: form.remember_me.is_some(),
                ..Default::default()
            },
        )
        .await?;
    let wrong = if step_up_user.is_some() {
        "Wrong password."
    } else {
        INVALID
    };
    let (status, error, retry) = match outcome {
        SubmitOutcome::SignedIn(_) => return Ok(see_other(&next)),
        SubmitOutcome::Throttled { retry_after_secs } => throttled(retry_after_secs),
        _ => (StatusCode::UNAUTHORIZED, wrong.to_owned(), None),
    };
    let step_up = step_up_user.is_some();
    with_retry_after(
        retry,
        html(
            &auth,
            status,
            &LoginPage {
                action,
                step_up,
                signed_in_as: step_up_user.or_else(|| auth.user().map(|u| u.username)),
                error: Some(&error),
                csrf_token: auth.csrf_token(),
                next: &next,
                username: if step_up { "" } else { &form.username },
            },
        ),
    )
}

#[get("/login/step-up")]
async fn step_up_form(
    CurrentUser(user): CurrentUser,
    auth: Auth,
    query: web::Query<NextQuery>,
) -> Result<HttpResponse, AuthError> {
    let next = safe_redirect_path(query.next.as_deref());
    if auth.begin(FlowKind::StepUp).await? {
        return Ok(see_other(next));
    }
    html(
        &auth,
        StatusCode::OK,
        &LoginPage {
            action: "/login/step-up",
            step_up: true,
            signed_in_as: Some(user.username),
            error: None,
            csrf_token: auth.csrf_token(),
            next,
            username: "",
        },
    )
}

#[post("/login/step-up")]
async fn step_up_submit(
    CurrentUser(user): CurrentUser,
    auth: Auth,
    CsrfForm(form): CsrfForm<LoginForm>,
) -> Result<HttpResponse, AuthError> {
    submit(auth, form, Some(user.username)).await
}

fn throttled(retry_after_secs: u64) -> (StatusCode, String, Option<u64>) {
    (
        StatusCode::TOO_MANY_REQUESTS,
        format!("Too many attempts. Try again in {retry_after_secs} seconds."),
        Some(retry_after_secs),
    )
}

fn with_retry_after(
    retry_after_secs: Option<u64>,
    page: Result<HttpResponse, AuthError>,
) -> Result<HttpResponse, AuthError> {
    let mut page = page?;
    if let Some(secs) = retry_after_secs {
        page.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
    }
    Ok(page)
}

#[post("/logout")]
async fn logout(
    auth: Auth,
    _: CsrfForm<super::account::CsrfOnly>,
) -> Result<HttpResponse, AuthError> {
    auth.logout().await?;
    Ok(see_other("/login"))
}

#[get("/healthz")]
async fn healthz(stores: web::Data<Stores>) -> HttpResponse {
    let state = stores.state.clone();
    match web::block(move || state.ping()).await {
        Ok(Ok(())) => HttpResponse::Ok()
            .content_type(ContentType::plaintext())
            .body("ok"),
        _ => HttpResponse::ServiceUnavailable()
            .content_type(ContentType::plaintext())
            .body("database unavailable"),
    }
}

#[get("/static/style.css")]
async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(include_str!("../../static/style.css"))
}
