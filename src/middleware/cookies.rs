//! A sign-in by remember-me cookie, the new session, and the cookies the
//! layer sets.

use super::*;

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
pub(super) async fn cookie_sign_in(
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
pub(super) fn device_cookie(config: &RememberMeConfig, value: String) -> Cookie<'static> {
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
