//! A sign-in by remember-me cookie, the new session, and the cookies the
//! layer sets.

use super::*;
use crate::kernel::{CookieSignIn, CoreError};

/// A sign-in by remember-me cookie for a request without a session: the
/// new session started (and its audit row written off the request when
/// the rotation did not carry it), and the cookie change to apply. On
/// failure, the cookie change all the same if the rotation committed.
pub(super) async fn cookie_sign_in(
    shared: &Arc<Shared>,
    session: &Session,
    visit: Visit,
) -> Result<(Option<AuthState>, Option<CookieChange>), (CoreError, Option<CookieChange>)> {
    let visit = Arc::new(visit);
    let job = visit.clone();
    let signed_in = match shared.core().prepare_cookie_rotation(&visit, "") {
        // The rest of the sign-in runs where the rotation's batch ran, as
        // soon as it has: one hand-off to the store threads, not two.
        Some((rotation, attempt)) => {
            let core = shared.core_handle();
            shared
                .rotations
                .rotate_then(attempt, move |outcome, owner| {
                    core.finish_cookie_sign_in(&job, rotation, outcome, owner)
                })
                .await
                .and_then(|signed_in| signed_in)
                .map_err(CoreError::Store)
        }
        None => {
            shared
                .store(move |core| core.cookie_sign_in(&job, None))
                .await
        }
    };
    // Once a rotation has committed, its cookie goes out even if the rest
    // of the sign-in cannot run (`failed`): a token the browser never
    // receives would read as a lost response, or theft, on its next visit.
    let CookieSignIn {
        state,
        change,
        audited,
        failed,
    } = signed_in.map_err(|error| (error, None))?;
    if let Some(error) = failed {
        return Err((CoreError::Store(error), change));
    }
    if let Some(new_state) = &state {
        // A rotation's row was written with it; a sign-in in the grace
        // window (no rotation) is recorded off the request.
        if !audited {
            shared.audit_later(visit.owned_event(
                AuditKind::RememberMeSignIn,
                Some(new_state.user_id.clone()),
                "",
            ));
        }
        start_session(session, new_state);
    }
    Ok((state, change))
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

/// What a request brings to the core: its time, client and remember-me
/// cookie. The device cookie is read (and its MAC checked) only by the
/// adapters whose operation uses it: see [`trusted_device`].
pub(crate) fn visit(req: &actix_web::HttpRequest, config: &RememberMeConfig) -> Visit {
    Visit {
        now: config.now(),
        client: client_info(req, config),
        cookie: raw_cookie(req, &config.cookie_name()),
        device: None,
    }
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
