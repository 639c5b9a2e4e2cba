//! The actix middleware: signs a visitor in by remember-me cookie on the
//! same request, re-checks open sessions against the user's auth epoch, and
//! applies remember-me cookie changes to responses.

use std::cell::RefCell;
use std::collections::BTreeSet;
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
use crate::flow::{ClientInfo, CookieChange, Flow, FlowKind, Progress, StepContext, Tag};
use crate::session::{AUTH_KEY, AuthState, SignInMethod, random_id};
use crate::store::audit_queue::{AuditQueue, OwnedAudit};
use crate::store::{AuditKind, StoreError, Stores, UserId};
use crate::threads::{JobFailed, STORE_THREADS, Threads};
use crate::token::{RememberCookie, SecretHash};

/// Store calls that may wait for a store thread; beyond, requests get a 503
/// at once (about half a second of work at the benchmark's rates).
const STORE_QUEUE: usize = 4096;

/// What the layer shares with the extractors.
pub(crate) struct Shared {
    pub config: Arc<RememberMeConfig>,
    pub ip_limiter: Option<crate::limits::IpLimiter>,
    /// Permits for password checks (see `password_concurrency`).
    pub password_checks: Arc<tokio::sync::Semaphore>,
    /// The threads that run the layer's store calls (see `store_concurrency`).
    pub store_threads: Threads,
    /// Remember-me sign-ins to record, written in batches off the request.
    pub audit_queue: AuditQueue,
    pub stores: Stores,
    pub login: Arc<Flow>,
    pub step_up: Arc<Flow>,
}

impl Shared {
    /// Runs blocking store work on the layer's store threads, at most
    /// `store_concurrency` calls at once: the others wait in the queue, in
    /// async land, without a thread.
    pub async fn run_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, JobFailed> {
        self.store_threads.run(f).await
    }

    /// Runs work that checks or hashes a password on actix's blocking pool
    /// (callers hold a `password_checks` permit, which bounds it). Never on
    /// the store threads: an Argon2 run holds its thread for tens of
    /// milliseconds, and every cookie sign-in and session check would wait
    /// behind it.
    pub async fn run_with_argon2<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, actix_web::error::BlockingError> {
        actix_web::web::block(f).await
    }

    pub fn flow(&self, kind: FlowKind) -> Arc<Flow> {
        match kind {
            FlowKind::Login => self.login.clone(),
            FlowKind::StepUp => self.step_up.clone(),
        }
    }
}

/// Per-request data the middleware leaves in the request extensions.
#[derive(Clone)]
pub(crate) struct RequestAuth {
    pub shared: Arc<Shared>,
    pub state: Rc<RefCell<Option<AuthState>>>,
    pub cookie_change: Rc<RefCell<Option<CookieChange>>>,
    pub signed_in_by_cookie: bool,
    /// A remember-me cookie or an open session could not be checked because
    /// the store did not answer: pages that need a user answer 503, not
    /// "please sign in".
    pub store_unavailable: bool,
    /// The session is kept through an outage without its epoch check:
    /// strong pages refuse it (503) until a check succeeds.
    pub unchecked: bool,
    /// A device cookie to set on the response (after a right password).
    pub device_cookie: Rc<RefCell<Option<String>>>,
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
            .field("config", &self.shared.config)
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
    /// [`FlowKind::StepUp`]).
    ///
    /// # Panics
    ///
    /// If the layer's threads (store calls, audit writer) cannot be started.
    pub fn with_flows(
        stores: Stores,
        config: RememberMeConfig,
        login: Flow,
        step_up: Flow,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                ip_limiter: crate::limits::ip_limiter(config.ip_attempts_per_minute),
                password_checks: Arc::new(tokio::sync::Semaphore::new(config.password_concurrency)),
                store_threads: Threads::start(STORE_THREADS, config.store_concurrency, STORE_QUEUE)
                    .expect("spawn the store threads"),
                audit_queue: AuditQueue::start(stores.audit.clone()),
                config: Arc::new(config),
                stores,
                login: Arc::new(login),
                step_up: Arc::new(step_up),
            }),
        }
    }
}

impl RememberMe {
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
        if !crate::threads::wait_until_only(&self.shared, deadline) {
            return false;
        }
        match Arc::try_unwrap(self.shared) {
            Ok(mut last) => {
                let threads_ended = last.store_threads.end();
                let rows_written = last.audit_queue.end();
                // The password threads too: every thread the crate started.
                crate::threads::end_argon2();
                threads_ended && rows_written
            }
            Err(_) => false, // cannot happen: this was the only handle
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
        &self.shared.config
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
        let service = self.service.clone();
        let shared = self.shared.clone();
        Box::pin(async move {
            let session = req.get_session();
            let now = shared.config.now();
            let (mut state, check) = session_state(&session, &shared, now).await;
            let mut cookie_change = None;
            let mut signed_in_by_cookie = false;
            let mut store_unavailable = check == Check::Unavailable;
            if state.is_none()
                && let Some(raw) = raw_cookie(req.request(), &shared.config.cookie_name())
            {
                let client = client_info(req.request(), &shared.config);
                match cookie_sign_in(&shared, &session, raw, client, now).await {
                    Ok((signed_in, change)) => {
                        cookie_change = change;
                        signed_in_by_cookie = signed_in.is_some();
                        state = signed_in;
                    }
                    // The database did not answer: the cookie may well be
                    // valid, so keep it and serve the visitor anonymously.
                    Err(error) => {
                        tracing::warn!(%error, "remember-me check skipped: store unavailable");
                        store_unavailable = true;
                    }
                }
            }

            let auth = RequestAuth {
                shared: shared.clone(),
                state: Rc::new(RefCell::new(state)),
                cookie_change: Rc::new(RefCell::new(cookie_change)),
                signed_in_by_cookie,
                store_unavailable,
                unchecked: check == Check::Unchecked,
                device_cookie: Rc::new(RefCell::new(None)),
            };
            req.extensions_mut().insert(auth.clone());

            // A rotation the database committed must reach the client on
            // every response path, or its next visit presents a token one
            // rotation back. Handlers' and extractors' errors arrive here as
            // responses (actix's handler service renders them), so they get
            // the cookie below; only an error of a middleware *inside* this
            // one skips it, and no such middleware should sit between the
            // handlers and this layer.
            let mut res = service.call(req).await?;
            if let Some(change) = auth.cookie_change.borrow_mut().take() {
                let cookie = remember_cookie(&shared.config, &change);
                res.response_mut().add_cookie(&cookie)?;
            }
            if let Some(value) = auth.device_cookie.borrow_mut().take() {
                res.response_mut()
                    .add_cookie(&device_cookie(&shared.config, value))?;
            }
            if auth.state.borrow().is_some() {
                // Signed-in pages must not be kept by shared caches or the
                // back button after sign-out.
                res.headers_mut().insert(
                    actix_web::http::header::CACHE_CONTROL,
                    actix_web::http::header::HeaderValue::from_static("no-store"),
                );
            }
            Ok(res)
        })
    }
}

/// How far [`session_state`] could check the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Checked now or within the check interval (or no session).
    Fresh,
    /// Kept through a store outage without a check, for at most twice the
    /// check interval since the last one: strong pages refuse it.
    Unchecked,
    /// Dropped because it could not be checked for too long: the visitor
    /// gets a 503 while the store is down, never an open session that a
    /// revocation cannot reach.
    Unavailable,
}

/// The session's auth state if it is still good: within its lifetime and, at
/// most every `epoch_check_interval`, still under the user's current epoch
/// (the same query re-reads the user's roles). A check that cannot run
/// keeps the session only for twice the interval since the last good one.
async fn session_state(session: &Session, shared: &Shared, now: i64) -> (Option<AuthState>, Check) {
    let Some(mut state) = session.get::<AuthState>(AUTH_KEY).ok().flatten() else {
        return (None, Check::Fresh);
    };
    let config = &shared.config;
    if now - state.signed_in_at >= config.session_lifetime.as_secs() as i64 {
        // `clear`, not `purge`: a remember-me cookie may sign the user in
        // again on this same request, and a purged session keeps nothing.
        session.clear();
        return (None, Check::Fresh);
    }
    let interval = config.epoch_check_interval.as_secs() as i64;
    let since = now - state.checked_at;
    if (0..interval).contains(&since) {
        return (Some(state), Check::Fresh);
    }
    let stores = shared.stores.clone();
    let (user_id, series) = (state.user_id.clone(), state.series.clone());
    let checked = shared
        .run_blocking(move || {
            let epoch = match series.as_deref().and_then(SecretHash::from_slice) {
                // A session signed in by (or issued) a token lives only as
                // long as that token: revoking the device ends the device's
                // open session. One query gives the token and the epoch;
                // no token (or another user's) reads as revoked.
                Some(series) => match stores.tokens.find_by_series_with_epoch(&series)? {
                    Some((token, epoch)) if token.user_id == user_id => epoch,
                    _ => return Ok::<_, StoreError>(None),
                },
                None => stores.state.auth_epoch(&user_id)?,
            };
            // The app's user as it is now: gone, or its roles changed.
            Ok(stores
                .users
                .find_by_id(&user_id)?
                .map(|owner| (owner, epoch)))
        })
        .await;
    match checked {
        Ok(Ok(Some((owner, epoch)))) if epoch == state.epoch => {
            state.checked_at = now;
            // Roles come from the user's row, not from the sign-in: a
            // demoted admin loses the admin pages at this check.
            state.is_admin = owner.is_admin;
            let _ = session.insert(AUTH_KEY, &state);
            (Some(state), Check::Fresh)
        }
        Ok(Ok(_)) => {
            // Revoked (epoch bumped, device revoked) or the user is gone.
            tracing::info!(user_id = %state.user_id, "session ended: revoked");
            session.clear();
            (None, Check::Fresh)
        }
        Ok(Err(error)) => unchecked(state, since, interval, &error),
        Err(error) => unchecked(state, since, interval, &error),
    }
}

/// A session whose check could not run: kept (but refused by strong pages)
/// while its last check is less than twice the interval old, else dropped
/// from this request, not from the session, so it works again once the
/// store answers and confirms it.
fn unchecked(
    state: AuthState,
    since: i64,
    interval: i64,
    error: &dyn std::fmt::Display,
) -> (Option<AuthState>, Check) {
    let user_id = tracing::field::display(&state.user_id);
    if (0..2 * interval).contains(&since) {
        tracing::warn!(%error, user_id, "auth epoch check skipped: store unavailable");
        (Some(state), Check::Unchecked)
    } else {
        tracing::warn!(%error, user_id, since, "session refused: its epoch could not be checked");
        (None, Check::Unavailable)
    }
}

/// What a sign-in by cookie gave.
struct CookieSignIn {
    /// The new auth state, if the flow completed.
    state: Option<AuthState>,
    /// The cookie change to apply.
    change: Option<CookieChange>,
    /// Whether the store wrote the sign-in's audit row with the rotation.
    audited: bool,
}

/// A sign-in by remember-me cookie for a request without a session: the
/// new session started (and its audit row written off the request when
/// the rotation did not carry it), and the cookie change to apply.
async fn cookie_sign_in(
    shared: &Arc<Shared>,
    session: &Session,
    raw: Vec<u8>,
    client: ClientInfo,
    now: i64,
) -> Result<(Option<AuthState>, Option<CookieChange>), StoreError> {
    let CookieSignIn {
        state,
        change,
        audited,
    } = identify_by_cookie(shared, raw, client.clone(), now).await?;
    if let Some(new_state) = &state {
        // A rotation's row was written with it; a sign-in in the grace
        // window (no rotation) is recorded off the request.
        if !audited {
            audit_off_the_request(
                shared,
                OwnedAudit {
                    at: now,
                    kind: AuditKind::RememberMeSignIn,
                    user: Some(new_state.user_id.clone()),
                    ip: client.ip,
                    user_agent: client.user_agent,
                    detail: String::new(),
                },
            );
        }
        start_session(session, new_state);
    }
    Ok((state, change))
}

/// Runs the login flow's automatic steps with the cookie. Returns the new
/// auth state if the flow completed, and the cookie change to apply: the
/// change is returned even when work after the rotation fails, so a rotated
/// token is never lost (the browser would keep a token the database no
/// longer accepts after the grace window).
async fn identify_by_cookie(
    shared: &Shared,
    raw: Vec<u8>,
    client: ClientInfo,
    now: i64,
) -> Result<CookieSignIn, StoreError> {
    let stores = shared.stores.clone();
    let config = shared.config.clone();
    let flow = shared.login.clone();
    shared.run_blocking(move || {
        let mut ctx = StepContext::new(&stores, &config, now, &client);
        ctx.remember_cookie = Some(&raw);
        let mut flow_state = flow.start(None);
        let progress = match flow.advance(&mut flow_state, &mut ctx) {
            Ok(progress) => progress,
            // A step after the rotation failed (a custom flow's): the
            // rotation committed, so its cookie still goes to the client;
            // this request is served anonymously, the next signs in.
            Err(error) if ctx.cookie_change.is_some() => {
                tracing::warn!(%error, "sign-in by cookie failed after its rotation");
                return Ok(CookieSignIn {
                    state: None,
                    change: ctx.cookie_change.take(),
                    audited: ctx.sign_in_audited,
                });
            }
            Err(error) => return Err(error),
        };
        let mut signed_in = CookieSignIn {
            state: None,
            change: ctx.cookie_change.take(),
            audited: ctx.sign_in_audited,
        };
        let Progress::Complete { user, tags } = progress else {
            return Ok(signed_in);
        };
        let series = RememberCookie::decode(&raw).ok().map(|c| c.series.hash());
        match new_auth_state(&mut ctx, &user, tags, SignInMethod::RememberMe, series) {
            Ok(state) => signed_in.state = state,
            Err(error) => {
                tracing::warn!(%error, user_id = %user, "signed in by cookie, but the user could not be loaded");
            }
        }
        Ok(signed_in)
    })
    .await
    .map_err(|e| StoreError::Unavailable(e.to_string()))?
}

/// Records an audit event off the request: the event goes to the audit
/// queue, written with others in one transaction (see [`AuditQueue`]).
/// Only if the queue is full is it written by a task of its own, still
/// after the response.
pub(crate) fn audit_off_the_request(shared: &Arc<Shared>, event: OwnedAudit) {
    if let Err(event) = shared.audit_queue.push(event) {
        let shared = shared.clone();
        actix_web::rt::spawn(async move {
            let stores = shared.stores.clone();
            // `Stores::audit` counts a row the database refuses; a job that
            // could not even run is counted here.
            if let Err(error) = shared
                .run_blocking(move || stores.audit(event.borrowed(None)))
                .await
            {
                crate::store::audit_queue::count_dropped(1, &error);
            }
        });
    }
}

/// The session state of a user who just completed a flow.
///
/// The user and the epoch come from the context if a step already read
/// them (see [`StepContext::user`] and [`StepContext::epoch`]); otherwise
/// they are read here.
pub(crate) fn new_auth_state(
    ctx: &mut StepContext<'_>,
    user: &UserId,
    tags: BTreeSet<Tag>,
    method: SignInMethod,
    series: Option<SecretHash>,
) -> Result<Option<AuthState>, StoreError> {
    let stores = ctx.stores;
    let user = match ctx.user.take() {
        Some(loaded) if loaded.id == *user => loaded,
        _ => match stores.users.find_by_id(user)? {
            Some(user) => user,
            None => return Ok(None),
        },
    };
    let epoch = match ctx.epoch.take() {
        Some(epoch) => epoch,
        None => stores.state.auth_epoch(&user.id)?,
    };
    Ok(Some(AuthState {
        user_id: user.id,
        username: user.username,
        is_admin: user.is_admin,
        tags,
        method,
        epoch,
        checked_at: ctx.now,
        signed_in_at: ctx.now,
        password_at: None,
        sid: random_id(),
        series: series.map(|s| s.as_bytes().to_vec()),
    }))
}

/// Puts a freshly signed-in state into a session. The old session content is
/// dropped and the session renewed, so an id planted before sign-in (session
/// fixation) is worth nothing after it.
pub(crate) fn start_session(session: &Session, state: &AuthState) {
    session.clear();
    session.renew();
    if let Err(error) = session.insert(AUTH_KEY, state) {
        tracing::error!(%error, "could not store the auth state in the session");
    }
}

/// The raw bytes of cookie `name`, read from the `Cookie` headers directly:
/// actix's parsed jar drops a header that is not UTF-8, and such a cookie
/// must still be seen (and removed), not silently kept by the browser.
pub(crate) fn raw_cookie(req: &actix_web::HttpRequest, name: &str) -> Option<Vec<u8>> {
    req.headers()
        .get_all(actix_web::http::header::COOKIE)
        .flat_map(|value| value.as_bytes().split(|&b| b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii_start();
            let rest = pair.strip_prefix(name.as_bytes())?;
            let value = rest.strip_prefix(b"=")?;
            // RFC 6265 allows the value in double quotes.
            let value = value.trim_ascii_end();
            let value = value
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(value);
            Some(value.to_vec())
        })
}

pub(crate) fn client_info(req: &actix_web::HttpRequest, config: &RememberMeConfig) -> ClientInfo {
    let user_agent = req
        .headers()
        .get(actix_web::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.chars().take(256).collect());
    // The socket's peer, or what a trusted proxy says: a header any client
    // can forge must not decide what the audit log records.
    let ip = crate::limits::client_addr(req, &config.trusted_proxies, config.forwarded_header)
        .map(|ip| ip.to_string());
    ClientInfo { user_agent, ip }
}

/// The one place that builds the remember-me cookie.
pub(crate) fn remember_cookie(config: &RememberMeConfig, change: &CookieChange) -> Cookie<'static> {
    let (value, max_age) = match change {
        CookieChange::Set {
            cookie,
            max_age_secs,
        } => (cookie.encode(), *max_age_secs),
        CookieChange::Remove => (String::new(), 0),
    };
    let mut cookie = Cookie::build(config.cookie_name(), value)
        // HttpOnly: page scripts (and so XSS) cannot read it.
        .http_only(true)
        // Lax: not sent on cross-site POSTs, so it cannot sign a forged form in.
        .same_site(SameSite::Lax)
        .path("/")
        // Secure: never sent over plain HTTP where it could be sniffed.
        .secure(config.cookie_secure)
        .max_age(time::Duration::seconds(max_age.max(0)))
        .finish();
    if let Some(domain) = &config.cookie_domain {
        cookie.set_domain(domain.clone());
    }
    if matches!(change, CookieChange::Remove) {
        cookie.set_expires(time::OffsetDateTime::UNIX_EPOCH);
    }
    cookie
}

/// The device cookie (see [`crate::device`]): the same attributes as the
/// remember-me cookie, for a year.
fn device_cookie(config: &RememberMeConfig, value: String) -> Cookie<'static> {
    let mut cookie = Cookie::build(config.prefixed(crate::device::DEVICE_COOKIE_NAME), value)
        .http_only(true)
        .same_site(SameSite::Lax)
        .path("/")
        .secure(config.cookie_secure)
        .max_age(time::Duration::seconds(
            crate::device::DEVICE_COOKIE_LIFETIME_SECS,
        ))
        .finish();
    if let Some(domain) = &config.cookie_domain {
        cookie.set_domain(domain.clone());
    }
    cookie
}

/// The client's device cookie, if it verifies (see [`crate::device`]).
pub(crate) fn trusted_device(
    req: &actix_web::HttpRequest,
    config: &RememberMeConfig,
) -> Option<crate::device::TrustedDevice> {
    let raw = raw_cookie(req, &config.prefixed(crate::device::DEVICE_COOKIE_NAME))?;
    config.device_cookies.verify(&raw, config.now())
}
