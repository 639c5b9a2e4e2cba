//! The extractors that guard a handler: [`MaybeUser`], [`CurrentUser`],
//! [`StrongAuth`], [`AdminAuth`].

use super::*;

pub(crate) fn request_auth(req: &HttpRequest) -> Result<RequestAuth, AuthError> {
    req.extensions()
        .get::<RequestAuth>()
        .cloned()
        .ok_or(AuthError::NotInstalled)
}

/// Where to come back to after the sign-in (or step-up) a rejection asks
/// for: the request's path and query; for an htmx request for a fragment
/// of a page, the page's (from `HX-Current-URL`), since `next` is loaded as
/// a whole page. Not for a boosted request (`HX-Boosted`), a whole page
/// itself, whose `HX-Current-URL` is the page being left, nor when the page
/// is the sign-in or step-up form: `next` would show the form again.
pub(super) fn current_path(req: &HttpRequest, config: &crate::RememberMeConfig) -> String {
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    if header("hx-request") == Some("true")
        && header("hx-boosted") != Some("true")
        && let Some(page) = header("hx-current-url").and_then(page_path)
    {
        let path = page.split('?').next().unwrap_or_default();
        if path != config.login_path && path != config.step_up_path {
            return page;
        }
    }
    req.uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_owned())
        .unwrap_or_else(|| "/".to_owned())
}

/// The path and query of an absolute `http(s)` URL (htmx's
/// `HX-Current-URL`: the page a fragment request came from), without its
/// fragment; `None` for anything else, or a path [`safe_redirect_path`]
/// refuses. The host is dropped whatever it is: `next` is a path on this
/// site.
pub(super) fn page_path(url: &str) -> Option<String> {
    let scheme = url.find("://")?;
    if !matches!(&url[..scheme], s if s.eq_ignore_ascii_case("https") || s.eq_ignore_ascii_case("http"))
    {
        return None;
    }
    let rest = &url[scheme + 3..];
    let tail = &rest[rest.find(['/', '?', '#']).unwrap_or(rest.len())..];
    let tail = tail.split('#').next().unwrap_or_default();
    let path = match tail.starts_with('/') {
        true => tail.to_owned(),
        false => format!("/{tail}"),
    };
    (safe_redirect_path(Some(&path)) == path).then_some(path)
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
                None => {
                    let config = auth.shared.config();
                    Err(AuthError::SignInRequired {
                        location: with_next(&config.login_path, &current_path(req, config)),
                        answer: Answer::for_request(req),
                    })
                }
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
            let config = &auth.shared.config();
            match auth.state.borrow().as_ref() {
                // A session kept through an outage without its epoch check
                // may have been revoked: never strong until checked.
                Some(_) if auth.unchecked => Err(unavailable()),
                Some(state) if has_recent_password(state, config) => Ok(StrongAuth(state.into())),
                Some(_) => Err(AuthError::StepUpRequired {
                    location: with_next(&config.step_up_path, &current_path(req, config)),
                    answer: Answer::for_request(req),
                }),
                None if auth.store_unavailable => Err(unavailable()),
                None => Err(AuthError::SignInRequired {
                    location: with_next(&config.login_path, &current_path(req, config)),
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
pub(super) fn has_recent_password(state: &AuthState, config: &crate::RememberMeConfig) -> bool {
    state.tags.contains(&Tag::PASSWORD_VERIFIED)
        && config.password_is_recent(state.password_at, config.now())
}
