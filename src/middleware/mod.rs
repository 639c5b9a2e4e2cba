//! The actix middleware: signs a visitor in by remember-me cookie on the
//! same request, re-checks open sessions against the user's auth epoch, and
//! applies remember-me cookie changes to responses.

use std::cell::RefCell;
use std::future::{Ready, ready};
use std::rc::Rc;
use std::sync::Arc;

use actix_session::{Session, SessionExt as _};
use actix_web::Error;
use actix_web::HttpMessage as _;
use actix_web::body::MessageBody;
use actix_web::cookie::{Cookie, SameSite, time};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use futures_util::future::LocalBoxFuture;

use crate::RememberMeConfig;
use crate::flow::{ClientInfo, CookieChange, Flow, FlowKind};
use crate::kernel::{Shared, Visit};
use crate::session::{AUTH_KEY, AuthState};
use crate::store::{AuditKind, Stores};

/// Per-request data the middleware leaves in the request extensions: one
/// allocation, shared by the middleware and the extractors (a clone is a
/// reference count).
#[derive(Clone)]
pub(crate) struct RequestAuth(Rc<RequestAuthInner>);

pub(crate) struct RequestAuthInner {
    pub shared: Arc<Shared>,
    pub state: RefCell<Option<AuthState>>,
    pub cookie_change: RefCell<Option<CookieChange>>,
    pub signed_in_by_cookie: bool,
    /// A remember-me cookie or an open session could not be checked because
    /// the store did not answer: pages that need a user answer 503, not
    /// "please sign in".
    pub store_unavailable: bool,
    /// The session is kept through an outage without its epoch check:
    /// strong pages refuse it (503) until a check succeeds.
    pub unchecked: bool,
    /// A device cookie to set on the response (after a right password).
    pub device_cookie: RefCell<Option<String>>,
}

impl std::ops::Deref for RequestAuth {
    type Target = RequestAuthInner;

    fn deref(&self) -> &RequestAuthInner {
        &self.0
    }
}

/// The remember-me middleware. Wrap it **inside** actix-session's
/// `SessionMiddleware` (register it first with `.wrap`, so it runs after the
/// session is loaded):
///
/// ```no_run
/// # use actix_web::{App, cookie::Key};
/// # fn demo(remember: rememberme::RememberMe) {
/// let config = rememberme::RememberMeConfig::default();
/// let app = App::new()
///     .wrap(remember)
///     .wrap(rememberme::session_middleware(Key::generate(), &config));
/// # }
/// ```
///
/// Build it **once**, outside `HttpServer::new`'s closure, and clone it into
/// each worker: the sign-in limits (per-IP rate, concurrent password checks,
/// unknown-username throttling) are then shared by all workers instead of
/// multiplied by their number.
#[derive(Clone)]
pub struct RememberMe {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RememberMe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RememberMe")
            .field("config", &self.shared.config())
            .finish_non_exhaustive()
    }
}

impl RememberMe {
    /// The layer with the default login and step-up flows.
    ///
    /// # Panics
    ///
    /// If the layer's threads (store calls, audit writer) cannot be started.
    pub fn new(stores: Stores, config: RememberMeConfig) -> Self {
        Self::with_flows(stores, config, Flow::login(), Flow::step_up())
    }

    /// The layer with custom flows (of kinds [`FlowKind::Login`] and
    /// [`FlowKind::StepUp`], named after them: `Flow::new(kind)` is).
    ///
    /// # Panics
    ///
    /// If the layer's threads (store calls, audit writer) cannot be
    /// started, or if a flow is not of its kind or not named after it.
    pub fn with_flows(
        stores: Stores,
        config: RememberMeConfig,
        login: Flow,
        step_up: Flow,
    ) -> Self {
        // Flows are found by name too (`Auth::begin_flow`): each role's
        // flow must be of its kind and carry its kind's name, or the pages
        // and the cookie sign-in would run different flows.
        for (flow, kind) in [(&login, FlowKind::Login), (&step_up, FlowKind::StepUp)] {
            assert!(
                flow.kind() == kind && flow.name() == kind.name(),
                "the layer's {kind:?} flow must be of kind {kind:?} and named `{}` (got {:?} named `{}`); add flows of other names with `with_flow`",
                kind.name(),
                flow.kind(),
                flow.name()
            );
        }
        let shared = Shared::start(stores, config, login, step_up)
            .expect("spawn the layer's threads (store calls, audit writer)");
        Self {
            shared: Arc::new(shared),
        }
    }
}

impl RememberMe {
    /// Adds a flow of the app's own, run by name with
    /// [`Auth::begin_flow`](crate::Auth::begin_flow) and
    /// [`Auth::submit_flow`](crate::Auth::submit_flow): the layer's own
    /// login and step-up flows stay (a flow named `login` or `step_up`
    /// replaces that one). The built-in rules hold in any flow: the
    /// issuing step needs a password typed within the re-auth window, and
    /// a cookie sign-in is weak.
    ///
    /// ```no_run
    /// # fn demo(layer: rememberme::RememberMe, totp: rememberme::flow::StepDef) {
    /// use rememberme::flow::{Flow, FlowKind};
    /// let layer = layer.with_flow(Flow::login().named("admin_login").step(totp));
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// If the layer was already cloned (add flows first), or for a flow
    /// named `login` or `step_up` of the other kind.
    #[must_use]
    pub fn with_flow(mut self, flow: Flow) -> Self {
        Arc::get_mut(&mut self.shared)
            .expect("add flows before the layer is cloned (or its purge task made)")
            .add_flow(flow);
        self
    }

    /// Ends the layer cleanly once the server is done with it: waits, at
    /// most `timeout`, until this is the layer's last handle (the server's
    /// workers have dropped their copies of the app), then lets the layer's
    /// store threads finish their jobs and the audit writer write the rows
    /// still queued, and waits for them to end (a few seconds each at
    /// most); the password (Argon2) threads end too, after the check under
    /// way if any (a later check starts them again). Returns `false` if
    /// any of it ran out of time; if the handles
    /// did, the layer ends whenever its last handle drops, on whichever
    /// thread holds it.
    ///
    /// Call it after `HttpServer::run` returns and before the process
    /// exits, then [`Database::close`](crate::store::Database::close). A
    /// process that exits while one of the layer's threads is inside the
    /// database's client library can crash (libpq's Kerberos and OpenSSL
    /// clean up at exit), and audit rows still queued would be lost.
    pub fn close(self, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut shared = self.shared;
        loop {
            if !crate::threads::wait_until_only(&shared, deadline) {
                return false;
            }
            match Arc::try_unwrap(shared) {
                Ok(mut last) => {
                    let threads_ended = last.store_threads.end();
                    let rows_written = last.audit_queue.end();
                    // The password threads too: every thread the crate started.
                    crate::threads::end_argon2();
                    return threads_ended && rows_written;
                }
                // A purge task took a handle in between: wait again.
                Err(back) => shared = back,
            }
        }
    }
}

impl<S, B> Transform<S, ServiceRequest> for RememberMe
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = RememberMeMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(self.middleware(Rc::new(service))))
    }
}

impl RememberMe {
    /// The middleware around `service`.
    pub(crate) fn middleware<S>(&self, service: Rc<S>) -> RememberMeMiddleware<S> {
        RememberMeMiddleware {
            service,
            shared: self.shared.clone(),
        }
    }

    /// The layer's settings.
    pub fn config(&self) -> &RememberMeConfig {
        self.shared.config()
    }
}

#[doc(hidden)]
pub struct RememberMeMiddleware<S> {
    service: Rc<S>,
    shared: Arc<Shared>,
}

impl<S, B> Service<ServiceRequest> for RememberMeMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let shared = self.shared.clone();
        let session = req.get_session();
        let now = shared.config().now();
        let quick = session_now(&session, &shared, now);
        let cookie = match &quick {
            Quick::Done(Some(_), _) => None,
            _ => raw_cookie(req.request(), &shared.config().cookie_name()),
        };
        match (quick, cookie) {
            // Most requests: a session within its check interval, or a
            // visitor with neither session nor cookie. No store call, and
            // a small future (not the sign-in's) to allocate.
            (Quick::Done(state, check), None) => respond(
                &*self.service,
                request_auth(shared, state, check, None, false),
                req,
            ),
            (quick, cookie) => {
                let service = self.service.clone();
                Box::pin(async move {
                    let auth = check_or_sign_in(shared, &session, now, quick, cookie, &req).await;
                    respond(&*service, auth, req).await
                })
            }
        }
    }
}

/// Hands the request on with `auth` in its extensions, and adds the layer's
/// cookies to the response.
///
/// A rotation the database committed must reach the client on every
/// response path, or its next visit presents a token one rotation back.
/// Handlers' and extractors' errors arrive here as responses (actix's
/// handler service renders them), so they get the cookie; only an error of
/// a middleware *inside* this one skips it, and no such middleware should
/// sit between the handlers and this layer.
fn respond<S, B>(
    service: &S,
    auth: RequestAuth,
    req: ServiceRequest,
) -> LocalBoxFuture<'static, Result<ServiceResponse<B>, Error>>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    req.extensions_mut().insert(auth.clone());
    let response = service.call(req);
    Box::pin(async move {
        let mut res = response.await?;
        add_cookies(&auth, &mut res)?;
        Ok(res)
    })
}

/// The request's auth when the session alone did not settle it: the epoch
/// check of a session past its interval, then, with no session left, the
/// sign-in by the remember-me cookie `cookie`.
async fn check_or_sign_in(
    shared: Arc<Shared>,
    session: &Session,
    now: i64,
    quick: Quick,
    cookie: Option<Vec<u8>>,
    req: &ServiceRequest,
) -> RequestAuth {
    let (state, mut check) = match quick {
        Quick::Done(state, check) => (state, check),
        Quick::Check(state, since) => check_epoch(session, &shared, now, state, since).await,
    };
    let (Some(raw), None) = (cookie, &state) else {
        return request_auth(shared, state, check, None, false);
    };
    let visit = Visit {
        now,
        client: client_info(req.request(), shared.config()),
        cookie: Some(raw),
        device: None,
    };
    let (state, cookie_change) = match cookie_sign_in(&shared, session, visit).await {
        Ok(signed_in) => signed_in,
        // The database did not answer: the cookie may well be valid, so
        // keep it and serve the visitor anonymously; if its rotation
        // committed, with the rotated cookie.
        Err((error, rotated)) => {
            tracing::warn!(%error, rotated = rotated.is_some(), "remember-me check skipped: store unavailable");
            check = Check::Unavailable;
            (None, rotated)
        }
    };
    let by_cookie = state.is_some();
    request_auth(shared, state, check, cookie_change, by_cookie)
}

/// The request's auth data, as the middleware leaves it for the extractors.
fn request_auth(
    shared: Arc<Shared>,
    state: Option<AuthState>,
    check: Check,
    cookie_change: Option<CookieChange>,
    signed_in_by_cookie: bool,
) -> RequestAuth {
    RequestAuth(Rc::new(RequestAuthInner {
        shared,
        state: RefCell::new(state),
        cookie_change: RefCell::new(cookie_change),
        signed_in_by_cookie,
        store_unavailable: check == Check::Unavailable,
        unchecked: check == Check::Unchecked,
        device_cookie: RefCell::new(None),
    }))
}

/// Adds the layer's cookies to a response: the remember-me change and the
/// device cookie, and `Cache-Control: no-store` to a signed-in page or any
/// response that carries such a cookie.
fn add_cookies<B>(auth: &RequestAuth, res: &mut ServiceResponse<B>) -> Result<(), Error> {
    let shared = &auth.shared;
    let mut sets_cookie = false;
    if let Some(change) = auth.cookie_change.borrow_mut().take() {
        let cookie = remember_cookie(shared.config(), &change);
        res.response_mut().add_cookie(&cookie)?;
        sets_cookie = true;
    }
    if let Some(value) = auth.device_cookie.borrow_mut().take() {
        res.response_mut()
            .add_cookie(&device_cookie(shared.config(), value))?;
        sets_cookie = true;
    }
    if sets_cookie || auth.state.borrow().is_some() {
        // Signed-in pages must not be kept by shared caches or the
        // back button after sign-out; nor may any response that
        // carries a cookie of the layer's (a rotated token on a
        // stylesheet whose handler says `public`), whatever the
        // handler said.
        res.headers_mut().insert(
            actix_web::http::header::CACHE_CONTROL,
            actix_web::http::header::HeaderValue::from_static("no-store"),
        );
    }
    Ok(())
}

mod check;
mod cookies;
mod purge;

use check::{Check, Quick, check_epoch, session_now};
pub(crate) use cookies::{
    client_info, raw_cookie, remember_cookie, start_session, trusted_device, visit,
};
use cookies::{cookie_sign_in, device_cookie};
