//! Extractors: [`MaybeUser`], [`CurrentUser`], [`StrongAuth`] and [`Auth`],
//! the handle through which handlers run flows, sign out and check CSRF.

use std::collections::BTreeSet;
use std::future::{Ready, ready};

use actix_session::{Session, SessionExt as _};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, ContentType};
use actix_web::{FromRequest, HttpMessage as _, HttpRequest, HttpResponse, ResponseError};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use crate::flow::{CookieChange, PasswordCheck, check_password, verified_series};
use crate::flow::{FlowKind, FlowState, StepContext, Tag};
use crate::middleware::{RequestAuth, client_info, raw_cookie};
use crate::session::{AUTH_KEY, AuthState, random_id};
use crate::store::audit_queue::OwnedAudit;
use crate::store::{AuditKind, NewAuditEvent, StoreError, UserId};
use crate::threads::JobFailed;
use crate::token::RememberCookie;

#[path = "extract/sign_in.rs"]
mod sign_in;
#[path = "extract/submit.rs"]
mod submit;
pub use crate::session::SignInMethod;
pub use sign_in::{SignIn, SignedIn};

const FLOW_KEY: &str = "rm.flow";
const CSRF_KEY: &str = "rm.csrf";

/// A signed-in user as the request sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedUser {
    /// The app's id of the user.
    pub id: UserId,
    /// Login name.
    pub username: String,
    /// May use admin pages.
    pub is_admin: bool,
    /// Tags the session carries.
    pub tags: BTreeSet<Tag>,
    /// How the session was signed in.
    pub method: SignInMethod,
}

impl AuthenticatedUser {
    /// Whether the session carries `tag`.
    pub fn has(&self, tag: Tag) -> bool {
        self.tags.contains(&tag)
    }

    /// Whether the password was typed in this session.
    pub fn is_strong(&self) -> bool {
        self.has(Tag::PASSWORD_VERIFIED)
    }
}

impl From<&AuthState> for AuthenticatedUser {
    fn from(state: &AuthState) -> Self {
        Self {
            id: state.user_id.clone(),
            username: state.username.clone(),
            is_admin: state.is_admin,
            tags: state.tags.clone(),
            method: state.method,
        }
    }
}

/// Why a request was not served as asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// Nobody is signed in: a 303 to the sign-in page, or as [`Answer`] says.
    #[error("sign-in required")]
    SignInRequired {
        /// The sign-in URL with `next`.
        location: String,
        /// What the request asked for.
        answer: Answer,
    },
    /// The password is needed again (a remember-me sign-in, or one typed
    /// too long ago): a 303 to the step-up page, or as [`Answer`] says.
    #[error("password confirmation required")]
    StepUpRequired {
        /// The step-up URL with `next`.
        location: String,
        /// What the request asked for.
        answer: Answer,
    },
    /// Signed in, but not allowed: 403.
    #[error("forbidden")]
    Forbidden,
    /// No such thing (or not yours): 404.
    #[error("not found")]
    NotFound,
    /// The CSRF token was missing or wrong: 403.
    #[error("invalid CSRF token")]
    Csrf,
    /// The database did not answer: 503.
    #[error("service unavailable")]
    Unavailable(#[source] StoreError),
    /// A bug: 500, with no detail in the body.
    #[error("internal error: {0}")]
    Internal(String),
    /// The layer is missing from the app: 500.
    #[error(
        "RememberMe middleware is not installed: wrap the app with `RememberMe` inside `SessionMiddleware`"
    )]
    NotInstalled,
}

/// How a request that must sign in (or confirm the password) first is
/// answered, by what it asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Answer {
    /// A page: 303 to the form.
    Redirect,
    /// `Accept: application/json` (and not HTML): 401 with
    /// `{"error": "sign_in_required" | "step_up_required", "location": …}`.
    Json,
    /// An htmx request (`HX-Request: true`): 401 with `HX-Redirect`, which
    /// htmx follows with a full page load.
    Htmx,
}

impl Answer {
    /// What `req` asked for.
    pub fn for_request(req: &HttpRequest) -> Self {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
        if header("hx-request") == Some("true") {
            return Answer::Htmx;
        }
        match header("accept") {
            Some(accept)
                if accept.contains("application/json") && !accept.contains("text/html") =>
            {
                Answer::Json
            }
            _ => Answer::Redirect,
        }
    }
}

impl From<StoreError> for AuthError {
    fn from(error: StoreError) -> Self {
        AuthError::Unavailable(error)
    }
}

impl ResponseError for AuthError {
    fn status_code(&self) -> StatusCode {
        match self {
            AuthError::SignInRequired { answer, .. } | AuthError::StepUpRequired { answer, .. } => {
                match answer {
                    Answer::Redirect => StatusCode::SEE_OTHER,
                    Answer::Json | Answer::Htmx => StatusCode::UNAUTHORIZED,
                }
            }
            AuthError::Forbidden | AuthError::Csrf => StatusCode::FORBIDDEN,
            AuthError::NotFound => StatusCode::NOT_FOUND,
            AuthError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AuthError::Internal(_) | AuthError::NotInstalled => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        match self {
            AuthError::SignInRequired { location, answer }
            | AuthError::StepUpRequired { location, answer } => {
                let code = match self {
                    AuthError::SignInRequired { .. } => "sign_in_required",
                    _ => "step_up_required",
                };
                // The answer depends on these request headers: caches must
                // keep them apart. A 401 names how to authenticate: the
                // session cookie that the sign-in form gives.
                let vary = (header::VARY, "Accept, HX-Request");
                let challenge = (header::WWW_AUTHENTICATE, "Cookie realm=\"sign-in\"");
                match answer {
                    Answer::Redirect => HttpResponse::SeeOther()
                        .insert_header((header::LOCATION, location.as_str()))
                        .insert_header(vary)
                        .finish(),
                    Answer::Json => HttpResponse::Unauthorized()
                        .insert_header(vary)
                        .insert_header(challenge)
                        .json(serde_json::json!({ "error": code, "location": location })),
                    Answer::Htmx => HttpResponse::Unauthorized()
                        .insert_header(("HX-Redirect", location.as_str()))
                        .insert_header(vary)
                        .insert_header(challenge)
                        .finish(),
                }
            }
            _ => {
                match self {
                    AuthError::Unavailable(e) => tracing::warn!(error = %e, "store unavailable"),
                    AuthError::Internal(_) | AuthError::NotInstalled => {
                        tracing::error!(error = %self, "request failed")
                    }
                    _ => {}
                }
                // Opaque bodies: no internal detail reaches the client.
                let message = match status {
                    StatusCode::FORBIDDEN if matches!(self, AuthError::Csrf) => {
                        "The form has expired or did not come from this site. Go back, reload the page and try again."
                    }
                    StatusCode::FORBIDDEN => "You are not allowed to see this page.",
                    StatusCode::NOT_FOUND => "There is nothing here (or it is not yours).",
                    StatusCode::SERVICE_UNAVAILABLE => {
                        "The service is temporarily unavailable. Please try again in a moment."
                    }
                    _ => "Something went wrong on our side.",
                };
                let mut res = HttpResponse::build(status);
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    res.insert_header((header::RETRY_AFTER, "5"));
                }
                // A minimal page of the status and one sentence; an app
                // renders its own with actix's `ErrorHandlers`.
                res.content_type(ContentType::html()).body(format!(
                    "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
                     <title>{code} {reason}</title></head>\
                     <body><h1>{code} {reason}</h1><p>{message}</p></body></html>",
                    code = status.as_u16(),
                    reason = status.canonical_reason().unwrap_or(""),
                ))
            }
        }
    }
}

/// `next` if it is a path on this site, else `/`. Refuses absolute URLs,
/// scheme-relative `//host` and `/\host` (browsers treat `\` as `/`), and
/// control characters: an open redirect would let phishing links borrow
/// this site's name.
pub fn safe_redirect_path(next: Option<&str>) -> &str {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.starts_with("/\\")
                && !path.chars().any(|c| c.is_control() || c == '\\') =>
        {
            path
        }
        _ => "/",
    }
}

fn unavailable() -> AuthError {
    AuthError::Unavailable(StoreError::Unavailable(
        "the remember-me cookie could not be checked".into(),
    ))
}

fn with_next(path: &str, next: &str) -> String {
    format!(
        "{path}?next={}",
        utf8_percent_encode(next, NON_ALPHANUMERIC)
    )
}

pub(crate) fn request_auth(req: &HttpRequest) -> Result<RequestAuth, AuthError> {
    req.extensions()
        .get::<RequestAuth>()
        .cloned()
        .ok_or(AuthError::NotInstalled)
}

fn current_path(req: &HttpRequest) -> String {
    req.uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_owned())
        .unwrap_or_else(|| "/".to_owned())
}

/// The signed-in user, if any. Never fails (but for a missing middleware).
#[derive(Debug, Clone)]
pub struct MaybeUser(pub Option<AuthenticatedUser>);

impl FromRequest for MaybeUser {
    type Error = AuthError;
    type Future = Ready<Result<Self, AuthError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        ready(
            request_auth(req)
                .map(|auth| MaybeUser(auth.state.borrow().as_ref().map(AuthenticatedUser::from))),
        )
    }
}

/// A signed-in user; anonymous visitors get a 303 to the sign-in page with
/// `next` set to this page.
#[derive(Debug, Clone)]
pub struct CurrentUser(pub AuthenticatedUser);

impl FromRequest for CurrentUser {
    type Error = AuthError;
    type Future = Ready<Result<Self, AuthError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        ready(
            request_auth(req).and_then(|auth| match auth.state.borrow().as_ref() {
                Some(state) => Ok(CurrentUser(state.into())),
                None if auth.store_unavailable => Err(unavailable()),
                None => Err(AuthError::SignInRequired {
                    location: with_next(&auth.shared.config.login_path, &current_path(req)),
                    answer: Answer::for_request(req),
                }),
            }),
        )
    }
}

/// A user who typed their password in this session (`PASSWORD_VERIFIED`)
/// within the re-auth window ([`RememberMeConfigBuilder::reauth_window`](crate::config::RememberMeConfigBuilder::reauth_window)),
/// in a session whose epoch check is current. Any other signed-in session
/// (by remember-me, or with a password typed too long ago) is sent through
/// the step-up flow and back; anonymous visitors to the sign-in page; a
/// session that could not be checked gets a 503.
#[derive(Debug, Clone)]
pub struct StrongAuth(pub AuthenticatedUser);

impl FromRequest for StrongAuth {
    type Error = AuthError;
    type Future = Ready<Result<Self, AuthError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        ready(request_auth(req).and_then(|auth| {
            let config = &auth.shared.config;
            match auth.state.borrow().as_ref() {
                // A session kept through an outage without its epoch check
                // may have been revoked: never strong until checked.
                Some(_) if auth.unchecked => Err(unavailable()),
                Some(state) if has_recent_password(state, config) => Ok(StrongAuth(state.into())),
                Some(_) => Err(AuthError::StepUpRequired {
                    location: with_next(&config.step_up_path, &current_path(req)),
                    answer: Answer::for_request(req),
                }),
                None if auth.store_unavailable => Err(unavailable()),
                None => Err(AuthError::SignInRequired {
                    location: with_next(&config.login_path, &current_path(req)),
                    answer: Answer::for_request(req),
                }),
            }
        }))
    }
}

/// An admin (`is_admin`) who typed their password in this session. Other
/// signed-in users get 403; a remembered-only admin is sent through step-up;
/// anonymous visitors to the sign-in page.
#[derive(Debug, Clone)]
pub struct AdminAuth(pub AuthenticatedUser);

impl FromRequest for AdminAuth {
    type Error = AuthError;
    type Future = Ready<Result<Self, AuthError>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let current = CurrentUser::from_request(req, payload).into_inner();
        ready(current.and_then(|CurrentUser(user)| {
            if !user.is_admin {
                return Err(AuthError::Forbidden);
            }
            StrongAuth::from_request(req, payload)
                .into_inner()
                .map(|StrongAuth(user)| AdminAuth(user))
        }))
    }
}

/// Whether the session's password was typed recently enough for strong
/// pages and for minting long-lived tokens.
fn has_recent_password(state: &AuthState, config: &crate::RememberMeConfig) -> bool {
    state.tags.contains(&Tag::PASSWORD_VERIFIED)
        && config.password_is_recent(state.password_at, config.now())
}

/// A posted form (`application/x-www-form-urlencoded`, UTF-8) whose
/// `csrf_token` field matched the session's: a handler that takes its form
/// through this extractor cannot forget the CSRF check. The body is read
/// up to 16 KiB (a larger one is a 413, refused by its `Content-Length`
/// before it is read), then a missing or wrong token is a 403
/// ([`AuthError::Csrf`]) before the form is parsed; another content type
/// or charset is a 415, a form that does not parse a 400.
///
/// ```
/// # use rememberme::CsrfForm;
/// #[derive(serde::Deserialize)]
/// struct Rename {
///     name: String,
/// }
///
/// async fn rename(CsrfForm(form): CsrfForm<Rename>) -> String {
///     format!("renamed to {}", form.name)
/// }
/// ```
#[derive(Debug, Clone)]
pub struct CsrfForm<T>(pub T);

/// Largest form body [`CsrfForm`] reads.
const FORM_LIMIT: usize = 16 * 1024;

/// Why a request's body is no form [`CsrfForm`] reads, if it is not.
fn not_a_form(req: &HttpRequest) -> Option<actix_web::Error> {
    use actix_web::HttpMessage as _;
    let mime = match req.mime_type() {
        Ok(Some(mime)) => mime,
        _ => {
            return Some(actix_web::error::ErrorUnsupportedMediaType(
                "expected a form",
            ));
        }
    };
    let is_form = mime.type_() == mime::APPLICATION && mime.subtype() == mime::WWW_FORM_URLENCODED;
    let utf8 = mime
        .get_param(mime::CHARSET)
        .is_none_or(|charset| charset == mime::UTF_8);
    if !is_form || !utf8 {
        return Some(actix_web::error::ErrorUnsupportedMediaType(
            "expected a UTF-8 form",
        ));
    }
    if req.headers().contains_key(header::CONTENT_ENCODING) {
        return Some(actix_web::error::ErrorUnsupportedMediaType(
            "expected an uncompressed form",
        ));
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    declared
        .is_some_and(|n| n > FORM_LIMIT)
        .then(|| actix_web::error::ErrorPayloadTooLarge("form too large"))
}

impl<T: serde::de::DeserializeOwned + 'static> FromRequest for CsrfForm<T> {
    type Error = actix_web::Error;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        #[derive(serde::Deserialize)]
        struct Token {
            csrf_token: Option<String>,
        }
        let auth = Auth::from_request(req, payload).into_inner();
        let refused = not_a_form(req);
        // The raw stream, read up to the limit: actix's `Bytes` extractor
        // would buffer up to the app's PayloadConfig (256 KiB by default,
        // or whatever an upload route set) before any check here.
        let body = actix_web::web::Payload::from_request(req, payload).into_inner();
        Box::pin(async move {
            let auth = auth?;
            if let Some(refused) = refused {
                return Err(refused);
            }
            let body = body?
                .to_bytes_limited(FORM_LIMIT)
                .await
                .map_err(|_| actix_web::error::ErrorPayloadTooLarge("form too large"))??;
            let Token { csrf_token } =
                serde_urlencoded::from_bytes(&body).map_err(actix_web::error::ErrorBadRequest)?;
            auth.verify_csrf(csrf_token.as_deref())?;
            serde_urlencoded::from_bytes(&body)
                .map(CsrfForm)
                .map_err(actix_web::error::ErrorBadRequest)
        })
    }
}

/// What [`Auth::change_password`] gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PasswordChange {
    /// Changed; every other session and token of the user ended.
    Changed,
    /// The current password was wrong: nothing changed.
    WrongPassword,
    /// Too many wrong passwords (for this account or from this address):
    /// nothing was checked. Answer 429 with `Retry-After`.
    Throttled {
        /// Seconds to wait.
        retry_after_secs: u64,
    },
}

/// What submitting an interactive step gave.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubmitOutcome {
    /// The flow completed: the session is signed in.
    SignedIn(AuthenticatedUser),
    /// The answered step passed and a later interactive step of the flow
    /// (one of the app's: a one-time code, say) waits for its input: show
    /// its form and submit again with [`Credentials::inputs`](crate::flow::Credentials::inputs). The flow's
    /// progress is kept in the session.
    NeedsInput {
        /// The waiting step.
        step: crate::flow::StepId,
    },
    /// Wrong username or password (one answer for both).
    InvalidCredentials,
    /// A step's precondition did not hold; nothing was signed in or issued.
    Refused,
    /// Too many attempts (for this account or from this address): answer
    /// 429 with `Retry-After`.
    Throttled {
        /// Seconds to wait.
        retry_after_secs: u64,
    },
}

/// The handle through which handlers run flows, sign out and check CSRF.
pub struct Auth {
    req: HttpRequest,
    session: Session,
    auth: RequestAuth,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("user", &self.user())
            .finish_non_exhaustive()
    }
}

impl FromRequest for Auth {
    type Error = AuthError;
    type Future = Ready<Result<Self, AuthError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        ready(request_auth(req).map(|auth| Auth {
            req: req.clone(),
            session: req.get_session(),
            auth,
        }))
    }
}

impl Auth {
    /// The signed-in user, if any.
    pub fn user(&self) -> Option<AuthenticatedUser> {
        self.auth
            .state
            .borrow()
            .as_ref()
            .map(AuthenticatedUser::from)
    }

    /// Whether a remember-me cookie signed the visitor in on this very request.
    pub fn signed_in_by_cookie_now(&self) -> bool {
        self.auth.signed_in_by_cookie
    }

    /// The session's random id, renewed at every sign-in and step-up.
    pub fn session_id(&self) -> Option<String> {
        self.auth.state.borrow().as_ref().map(|s| s.sid.clone())
    }

    /// The settings.
    pub fn config(&self) -> &crate::RememberMeConfig {
        &self.auth.shared.config
    }

    /// The stores.
    pub fn stores(&self) -> &crate::store::Stores {
        &self.auth.shared.stores
    }

    /// The session's CSRF token, created on first use. Put it in a hidden
    /// `csrf_token` field of every form.
    pub fn csrf_token(&self) -> String {
        if let Ok(Some(token)) = self.session.get::<String>(CSRF_KEY) {
            return token;
        }
        let token = random_id();
        let _ = self.session.insert(CSRF_KEY, &token);
        token
    }

    /// Checks a submitted CSRF token against the session's, in constant time.
    pub fn verify_csrf(&self, presented: Option<&str>) -> Result<(), AuthError> {
        use subtle::ConstantTimeEq as _;
        let expected = self.session.get::<String>(CSRF_KEY).ok().flatten();
        match (expected, presented) {
            (Some(expected), Some(presented))
                if !expected.is_empty()
                    && bool::from(expected.as_bytes().ct_eq(presented.as_bytes())) =>
            {
                Ok(())
            }
            _ => {
                tracing::info!(
                    path = self.req.path(),
                    "request refused: CSRF token missing or wrong"
                );
                Err(AuthError::Csrf)
            }
        }
    }

    /// Starts a flow and keeps its state in the session until its
    /// interactive step is answered. A step-up needs a signed-in user.
    /// Returns whether there is nothing to ask: a step-up of a session whose
    /// password was typed within the re-auth window (a submitted step-up
    /// checks the password all the same).
    pub async fn begin(&self, kind: FlowKind) -> Result<bool, AuthError> {
        let state = self.start_state(kind)?;
        self.session
            .insert(FLOW_KEY, &state)
            .map_err(|e| AuthError::Internal(e.to_string()))?;
        let config = &self.auth.shared.config;
        Ok(kind == FlowKind::StepUp
            && !self.auth.unchecked
            && self
                .auth
                .state
                .borrow()
                .as_ref()
                .is_some_and(|s| has_recent_password(s, config)))
    }

    fn start_state(&self, kind: FlowKind) -> Result<FlowState, AuthError> {
        let flow = self.auth.shared.flow(kind);
        match kind {
            FlowKind::Login => Ok(flow.start(None)),
            FlowKind::StepUp => {
                let state = self.auth.state.borrow();
                let state = state.as_ref().ok_or_else(|| AuthError::SignInRequired {
                    location: self.auth.shared.config.login_path.clone(),
                    answer: Answer::for_request(&self.req),
                })?;
                // Without PASSWORD_VERIFIED, so the password step always
                // runs: a step-up proves the password now, whatever the
                // session proved before.
                let mut tags = state.tags.clone();
                tags.remove(&Tag::PASSWORD_VERIFIED);
                Ok(flow.start(Some((state.user_id.clone(), &tags))))
            }
        }
    }

    /// Signs out: deletes this browser's remember-me row, removes the cookie
    /// and purges the session.
    pub async fn logout(&self) -> Result<(), AuthError> {
        let stores = self.auth.shared.stores.clone();
        let series = raw_cookie(&self.req, &self.auth.shared.config.cookie_name());
        let user = self.user().map(|u| u.id);
        let client = client_info(&self.req, &self.auth.shared.config);
        let now = self.auth.shared.config.now();
        let config = self.auth.shared.config.clone();
        blocking(&self.auth.shared, move || {
            // Only a cookie that still proves its token deletes its row: an
            // old copy must not quietly sign its owner's browser out.
            let series = match &series {
                Some(raw) => verified_series(&stores, &config, now, raw)?,
                None => None,
            };
            if let Some(series) = series {
                stores.tokens.delete_series(&series)?;
            }
            if user.is_some() {
                stores.audit(NewAuditEvent {
                    at: now,
                    kind: AuditKind::Logout,
                    user_id: user.as_ref(),
                    ip: client.ip.as_deref(),
                    user_agent: client.user_agent.as_deref(),
                    detail: "",
                });
            }
            Ok(())
        })
        .await?;
        *self.auth.cookie_change.borrow_mut() = Some(CookieChange::Remove);
        *self.auth.state.borrow_mut() = None;
        self.session.purge();
        Ok(())
    }

    fn audit_event(&self, kind: AuditKind, user: Option<UserId>, detail: String) -> OwnedAudit {
        let client = client_info(&self.req, &self.auth.shared.config);
        OwnedAudit {
            at: self.auth.shared.config.now(),
            kind,
            user,
            ip: client.ip,
            user_agent: client.user_agent,
            detail,
        }
    }

    fn actor(&self) -> String {
        self.user()
            .map(|u| format!("by {} (#{})", u.username, u.id))
            .unwrap_or_else(|| "by nobody".to_owned())
    }

    /// Revokes one remember-me token by its id. With `owner`, only if it
    /// belongs to that user (a user revoking one of their devices: another
    /// user's id then revokes nothing); without, any token (an admin).
    pub async fn revoke_token(&self, id: i64, owner: Option<UserId>) -> Result<bool, AuthError> {
        let stores = self.stores().clone();
        let event = self.audit_event(
            AuditKind::TokenRevoked,
            owner.clone(),
            format!("token #{id} {}", self.actor()),
        );
        blocking(&self.auth.shared, move || {
            let owner_of = match &owner {
                Some(owner) => Some(owner.clone()),
                None => stores.tokens.find_owner(id)?,
            };
            let revoked = stores.tokens.delete_by_id(id, owner.as_ref())?;
            if revoked {
                stores.audit(event.borrowed(owner_of.as_ref()));
            }
            Ok(revoked)
        })
        .await
    }

    /// Ends everything of `user`: every remember-me token is deleted and the
    /// auth epoch bumped, so every open session of the user ends at its next
    /// check (this one included, if it is that user's).
    pub async fn revoke_all(&self, user: UserId) -> Result<usize, AuthError> {
        let stores = self.stores().clone();
        let event = self.audit_event(
            AuditKind::SignOutEverywhere,
            Some(user.clone()),
            String::new(),
        );
        let actor = self.actor();
        let revoked = user.clone();
        let n = blocking(&self.auth.shared, move || {
            // One transaction: no state with the tokens gone but the
            // sessions alive, or without its audit row.
            let detail = format!("every token revoked {actor}");
            stores.revoke_everything(
                &revoked,
                NewAuditEvent {
                    detail: &detail,
                    ..event.borrowed(None)
                },
            )
        })
        .await?;
        if self.user().is_some_and(|u| u.id == user) {
            *self.auth.cookie_change.borrow_mut() = Some(CookieChange::Remove);
            self.forget_session();
            self.session.purge();
        }
        Ok(n)
    }

    /// Signs the current user out of every other device: their other tokens
    /// are deleted and the epoch bumped (other sessions end), while this
    /// browser's token and session stay.
    pub async fn sign_out_other_devices(&self) -> Result<usize, AuthError> {
        let (user, epoch) = self.user_and_epoch()?;
        let keep = raw_cookie(&self.req, &self.auth.shared.config.cookie_name());
        let stores = self.stores().clone();
        let config = self.auth.shared.config.clone();
        let now = config.now();
        let event = self.audit_event(
            AuditKind::SignOutEverywhere,
            Some(user.clone()),
            String::new(),
        );
        let done = blocking(&self.auth.shared, move || {
            // Only a session still under the current epoch may move to the
            // next one: a revoked session must not adopt it and live on.
            let Some(new_epoch) = stores.state.bump_epoch_from(&user, epoch)? else {
                return Ok(None);
            };
            let n = delete_tokens_except(&stores, &config, now, &user, keep.as_deref())?;
            let detail = format!("other devices: {n} token(s) revoked");
            stores.audit(NewAuditEvent {
                detail: &detail,
                ..event.borrowed(None)
            });
            Ok(Some((n, new_epoch)))
        })
        .await?;
        self.restamp_or_end(done).map(|(n, _)| n)
    }

    /// Changes the current user's password (Argon2id on a blocking thread)
    /// after checking the current one, ends every other session and token of
    /// the user, keeps this one. Callers should demand [`StrongAuth`]. The
    /// current password is checked like every other password (see
    /// [`PasswordStep`](crate::flow::PasswordStep)): throttled per account,
    /// per device and per client address, and a wrong one is audited.
    pub async fn change_password(
        &self,
        current_password: String,
        new_password: String,
    ) -> Result<PasswordChange, AuthError> {
        if let Some(limiter) = &self.auth.shared.ip_limiter
            && let Some(retry_after_secs) =
                crate::limits::ip_throttled(limiter, &self.auth.shared.config, &self.req)
        {
            return Ok(PasswordChange::Throttled { retry_after_secs });
        }
        let (user, epoch) = self.user_and_epoch()?;
        let config = self.auth.shared.config.clone();
        let now = config.now();
        let job = PasswordJob {
            keep: raw_cookie(&self.req, &config.cookie_name()),
            device: crate::middleware::trusted_device(&self.req, &config),
            stores: self.stores().clone(),
            client: client_info(&self.req, &config),
            event: self.audit_event(
                AuditKind::PasswordChanged,
                Some(user.clone()),
                String::new(),
            ),
            config,
            now,
            user,
            epoch,
            current_password,
            new_password,
        };
        let _permit = self
            .auth
            .shared
            .password_checks
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| AuthError::Internal(e.to_string()))?;
        // Argon2 twice: on the blocking pool, not on the store threads.
        let done = self
            .auth
            .shared
            .run_with_argon2(move || job.run())
            .await
            .map_err(|e| AuthError::Internal(e.to_string()))?
            .map_err(AuthError::from)?;
        match done {
            Some(Err(refused)) => Ok(refused),
            Some(Ok(new_epoch)) => {
                self.restamp_or_end(Some(((), new_epoch)))?;
                if let Some(state) = self.auth.state.borrow_mut().as_mut() {
                    state.password_at = Some(now);
                    let _ = self.session.insert(AUTH_KEY, &*state);
                }
                Ok(PasswordChange::Changed)
            }
            None => self
                .restamp_or_end::<()>(None)
                .map(|_| PasswordChange::WrongPassword),
        }
    }

    fn user_and_epoch(&self) -> Result<(UserId, i64), AuthError> {
        self.auth
            .state
            .borrow()
            .as_ref()
            .map(|s| (s.user_id.clone(), s.epoch))
            .ok_or(AuthError::Forbidden)
    }

    /// After a change this session made under its epoch: move it to the new
    /// epoch, or, if the epoch had already moved on (the session was revoked
    /// meanwhile), end it.
    fn restamp_or_end<T>(&self, done: Option<(T, i64)>) -> Result<(T, i64), AuthError> {
        match done {
            Some((value, epoch)) => {
                self.restamp(Some(epoch));
                Ok((value, epoch))
            }
            None => {
                tracing::info!("session ended: it was revoked before its own change");
                self.forget_session();
                self.session.clear();
                Err(AuthError::SignInRequired {
                    location: self.auth.shared.config.login_path.clone(),
                    answer: Answer::for_request(&self.req),
                })
            }
        }
    }

    /// Moves this session to the user's new epoch after a change it made itself.
    fn restamp(&self, epoch: Option<i64>) {
        let mut state = self.auth.state.borrow_mut();
        if let (Some(state), Some(epoch)) = (state.as_mut(), epoch) {
            state.epoch = epoch;
            state.checked_at = self.auth.shared.config.now();
            // A fresh id too: the session's privileges were just re-confirmed.
            state.sid = random_id();
            if let Err(error) = self.session.insert(AUTH_KEY, &*state) {
                tracing::error!(%error, "could not update the session");
            }
        }
    }

    /// The hash of the remember-me series this browser carries, if its cookie decodes.
    pub fn browser_series(&self) -> Option<crate::token::SecretHash> {
        raw_cookie(&self.req, &self.auth.shared.config.cookie_name())
            .and_then(|raw| RememberCookie::decode(&raw).ok())
            .map(|c| c.series.hash())
    }

    /// Drops the session's auth state without touching tokens.
    pub fn forget_session(&self) {
        self.session.remove(AUTH_KEY);
        *self.auth.state.borrow_mut() = None;
    }
}

/// Deletes every token of `user` except the one this browser's cookie
/// (`keep`, raw) still proves. Blocking.
fn delete_tokens_except(
    stores: &crate::store::Stores,
    config: &crate::RememberMeConfig,
    now: i64,
    user: &UserId,
    keep: Option<&[u8]>,
) -> Result<usize, StoreError> {
    let keep = match keep {
        Some(raw) => verified_series(stores, config, now, raw)?,
        None => None,
    };
    let mut n = 0;
    for token in stores.tokens.list_for_user(user)? {
        if keep.as_ref() != Some(&token.series_hash)
            && stores.tokens.delete_by_id(token.id, Some(user))?
        {
            n += 1;
        }
    }
    Ok(n)
}

/// Runs store work on the layer's store threads.
/// The blocking part of [`Auth::change_password`].
struct PasswordJob {
    stores: crate::store::Stores,
    config: std::sync::Arc<crate::RememberMeConfig>,
    now: i64,
    client: crate::flow::ClientInfo,
    device: Option<crate::device::TrustedDevice>,
    keep: Option<Vec<u8>>,
    event: OwnedAudit,
    user: UserId,
    epoch: i64,
    current_password: String,
    new_password: String,
}

impl PasswordJob {
    /// Checks the current password, moves the session to the next epoch
    /// (`None`: it had moved on, the session was revoked), has the app's
    /// directory store the new password, and ends the user's other tokens.
    fn run(self) -> Result<Option<Result<i64, PasswordChange>>, StoreError> {
        let (stores, user) = (&self.stores, &self.user);
        let mut ctx = StepContext::new(stores, &self.config, self.now, &self.client);
        ctx.device = self.device.clone();
        let who = crate::flow::Who::Known(user);
        match check_password(&mut ctx, who, &self.current_password, "password change")? {
            PasswordCheck::Verified(_) => {}
            PasswordCheck::Wrong => return Ok(Some(Err(PasswordChange::WrongPassword))),
            PasswordCheck::Throttled { retry_after_secs } => {
                return Ok(Some(Err(PasswordChange::Throttled { retry_after_secs })));
            }
        }
        let Some(new_epoch) = stores.state.bump_epoch_from(user, self.epoch)? else {
            return Ok(None);
        };
        // The app's directory hashes and stores it, in its scheme.
        stores.users.set_password(user, &self.new_password)?;
        let keep = self.keep.as_deref();
        let n = delete_tokens_except(stores, &self.config, self.now, user, keep)?;
        let detail = format!("{n} other token(s) revoked");
        stores.audit(NewAuditEvent {
            detail: &detail,
            ..self.event.borrowed(None)
        });
        Ok(Some(Ok(new_epoch)))
    }
}

/// The browser still carries another user's series (one the issuing step
/// did not replace): revoke it, so the previous user's cookie does not
/// outlive this sign-in. Blocking.
fn drop_foreign_series(ctx: &mut StepContext<'_>, user: &UserId) -> Result<(), StoreError> {
    if let Some(series) = ctx.browser_series.take()
        && let Some(record) = ctx.stores.tokens.find_by_series(&series)?
        && record.user_id != *user
    {
        ctx.stores.tokens.delete_series(&series)?;
        ctx.cookie_change.get_or_insert(CookieChange::Remove);
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(
    shared: &crate::middleware::Shared,
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, AuthError> {
    match shared.run_blocking(f).await {
        Ok(result) => result.map_err(AuthError::from),
        Err(busy @ JobFailed::Busy) => Err(AuthError::Unavailable(StoreError::Unavailable(
            busy.to_string(),
        ))),
        Err(failed) => Err(AuthError::Internal(failed.to_string())),
    }
}

/// actix-session's cookie-store middleware set up as this crate expects: the
/// cookie named `session`, `HttpOnly`, `SameSite=Lax`, `Secure` as the
/// remember-me cookie, content encrypted and authenticated with `key`, and a
/// browser-session lifetime (it dies with the browser; the remember-me cookie
/// is what survives a restart).
pub fn session_middleware(
    key: actix_web::cookie::Key,
    config: &crate::RememberMeConfig,
) -> actix_session::SessionMiddleware<actix_session::storage::CookieSessionStore> {
    actix_session::SessionMiddleware::builder(
        actix_session::storage::CookieSessionStore::default(),
        key,
    )
    .cookie_name(config.prefixed("session"))
    .cookie_secure(config.cookie_secure)
    .cookie_http_only(true)
    .cookie_same_site(actix_web::cookie::SameSite::Lax)
    .cookie_path("/".to_owned())
    .cookie_domain(config.cookie_domain.clone())
    .build()
}

#[cfg(test)]
mod tests {
    use super::safe_redirect_path;

    #[test]
    fn only_paths_on_this_site_are_redirect_targets() {
        for ok in ["/", "/account/devices", "/admin/tokens?user=a%20b"] {
            assert_eq!(safe_redirect_path(Some(ok)), ok);
        }
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/\\evil.example",
            // Browsers drop tabs and newlines in URLs, so these become
            // "//evil.example", and a backslash may count as a slash.
            "/\t/evil.example",
            "/\n/evil.example",
            "/a\\b",
            "evil",
            "",
        ] {
            assert_eq!(safe_redirect_path(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_redirect_path(None), "/");
    }
}
