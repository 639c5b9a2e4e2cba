//! Extractors: [`MaybeUser`], [`CurrentUser`], [`StrongAuth`] and [`Auth`],
//! the handle through which handlers run flows, sign out and check CSRF.

use std::collections::BTreeSet;
use std::future::{Ready, ready};

use actix_session::{Session, SessionExt as _};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, ContentType};
use actix_web::{FromRequest, HttpMessage as _, HttpRequest, HttpResponse, ResponseError};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use crate::flow::{CookieChange, FlowKind, FlowState, Tag};
use crate::kernel::Visit;
use crate::middleware::{RequestAuth, raw_cookie};
use crate::session::{AUTH_KEY, AuthState, random_id};
use crate::store::UserId;
use crate::token::RememberCookie;

mod account;
mod csrf;
mod errors;
mod guards;
mod sign_in;
mod submit;
pub use crate::kernel::SignIn;
pub use crate::session::SignInMethod;
pub use csrf::CsrfForm;
pub use errors::{Answer, AuthError, safe_redirect_path};
use errors::{unavailable, with_next};
use guards::has_recent_password;
pub(crate) use guards::request_auth;
pub use guards::{AdminAuth, CurrentUser, MaybeUser, StrongAuth};
pub use sign_in::SignedIn;

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
    /// The app's directory does not store passwords
    /// ([`UserDirectory::sets_passwords`](crate::store::UserDirectory::sets_passwords)):
    /// nothing was checked or changed. Offer no password page (or answer
    /// 501).
    Unsupported,
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

    /// Runs store work on the layer's store threads, like the crate's own
    /// (a full queue answers 503).
    #[cfg(feature = "pages")]
    pub(crate) async fn on_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&crate::store::Stores) -> Result<T, crate::store::StoreError> + Send + 'static,
    ) -> Result<T, AuthError> {
        Ok(self.auth.shared.store(move |core| f(&core.stores)).await?)
    }

    /// The request this handle was extracted from.
    #[cfg(feature = "pages")]
    pub(crate) fn request(&self) -> &HttpRequest {
        &self.req
    }

    /// The settings.
    pub fn config(&self) -> &crate::RememberMeConfig {
        self.auth.shared.config()
    }

    /// The stores.
    pub fn stores(&self) -> &crate::store::Stores {
        self.auth.shared.stores()
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
        self.begin_flow(kind.name()).await
    }

    /// [`Auth::begin`] for the flow named `name`: the layer's own
    /// (`login`, `step_up`) or one the app added
    /// ([`RememberMe::with_flow`](crate::RememberMe::with_flow)); its kind
    /// decides how it starts. [`AuthError::Internal`] for a name the layer
    /// does not know.
    pub async fn begin_flow(&self, name: &str) -> Result<bool, AuthError> {
        let kind = self.flow_kind(name)?;
        let state = self.start_state(name)?;
        self.session
            .insert(FLOW_KEY, &state)
            .map_err(|e| AuthError::Internal(e.to_string()))?;
        let config = &self.auth.shared.config();
        Ok(kind == FlowKind::StepUp
            && !self.auth.unchecked
            && self
                .auth
                .state
                .borrow()
                .as_ref()
                .is_some_and(|s| has_recent_password(s, config)))
    }

    /// The flow named `name`.
    fn flow_named(&self, name: &str) -> Result<&crate::flow::Flow, AuthError> {
        self.auth.shared.core().flow_named(name).ok_or_else(|| {
            tracing::error!(flow = name, "no flow of this name in the layer");
            AuthError::Internal(format!("no flow named {name}"))
        })
    }

    /// The kind of the flow named `name`.
    fn flow_kind(&self, name: &str) -> Result<FlowKind, AuthError> {
        self.flow_named(name).map(|flow| flow.kind())
    }

    fn start_state(&self, name: &str) -> Result<FlowState, AuthError> {
        let flow = self.flow_named(name)?;
        match flow.kind() {
            FlowKind::Login => Ok(flow.start(None)),
            FlowKind::StepUp => {
                let state = self.auth.state.borrow();
                let state = state.as_ref().ok_or_else(|| AuthError::SignInRequired {
                    location: self.auth.shared.config().login_path.clone(),
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
        let visit = self.visit();
        let user = self.user().map(|u| u.id);
        let own = self.own_series();
        self.auth
            .shared
            .store(move |core| core.logout(&visit, user.as_ref(), own.as_ref()))
            .await?;
        *self.auth.cookie_change.borrow_mut() = Some(CookieChange::Remove);
        *self.auth.state.borrow_mut() = None;
        self.session.purge();
        Ok(())
    }

    /// The series this session is bound to (it came from, or was issued,
    /// that remember-me token), if any.
    fn own_series(&self) -> Option<crate::token::SecretHash> {
        let state = self.auth.state.borrow();
        state.as_ref().and_then(|s| s.series.clone())
    }

    /// What this request brings to the core.
    fn visit(&self) -> Visit {
        crate::middleware::visit(&self.req, self.auth.shared.config())
    }

    fn actor(&self) -> String {
        self.user()
            .map(|u| format!("by {} (#{})", u.username, u.id))
            .unwrap_or_else(|| "by nobody".to_owned())
    }

    /// The hash of the remember-me series this browser carries, if its cookie decodes.
    pub fn browser_series(&self) -> Option<crate::token::SecretHash> {
        raw_cookie(&self.req, &self.auth.shared.config().cookie_name())
            .and_then(|raw| RememberCookie::decode(&raw).ok())
            .map(|c| c.series.hash())
    }

    /// Drops the session's auth state without touching tokens.
    pub fn forget_session(&self) {
        self.session.remove(AUTH_KEY);
        *self.auth.state.borrow_mut() = None;
    }
}

/// actix-session's cookie-store middleware set up as this crate expects: the
/// cookie named `session` (`__Host-session` with the default `Secure`
/// cookies and no cookie domain), `HttpOnly`, `SameSite=Lax`, `Secure` as the
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
mod tests;
