//! Signing in a user the app authenticated itself (after sign-up, OAuth, a
//! magic link, a passkey), through the same rules as a password sign-in:
//! the same session, cookie, rotation, audit and per-user cap, and a
//! remember-me token only for a strong sign-in.

use std::collections::BTreeSet;

use super::cookie::{drop_foreign_series, new_auth_state};
use super::{Core, Visit};
use crate::flow::{CookieChange, RememberMeIssueStep, Step as _, StepContext, StepOutcome, Tag};
use crate::session::{AuthState, SignInMethod};
use crate::store::{AuditKind, StoreError, UserId};
use crate::token::SecretHash;

/// How the app authenticated the user it signs in with
/// [`Auth::sign_in`](crate::Auth::sign_in).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SignIn {
    /// Whether the app's check counts as much as a typed password (an
    /// OAuth provider that made the user sign in just now, a passkey): the
    /// session gets [`Tag::PASSWORD_VERIFIED`], passes
    /// [`StrongAuth`](crate::StrongAuth) for the re-auth window, and may
    /// get a remember-me token. A weak one (a magic link from a mailbox
    /// that may be shared) gets [`Tag::WEAK_AUTHENTICATION`] only: strong
    /// pages send it through step-up, and it never gets a token.
    pub strong: bool,
    /// "Keep me logged in": issue a remember-me token (strong sign-ins only).
    pub remember_me: bool,
    /// Free text for the audit row (`"oauth github"`); never a secret.
    pub detail: String,
}

impl SignIn {
    /// A sign-in as strong as a typed password.
    pub fn strong(detail: impl Into<String>) -> Self {
        Self {
            strong: true,
            remember_me: false,
            detail: detail.into(),
        }
    }

    /// A sign-in that identifies the user, but weakly.
    pub fn weak(detail: impl Into<String>) -> Self {
        Self {
            strong: false,
            remember_me: false,
            detail: detail.into(),
        }
    }

    /// With "Keep me logged in" ticked, or not.
    #[must_use]
    pub fn remember_me(mut self, remember_me: bool) -> Self {
        self.remember_me = remember_me;
        self
    }
}

/// What a sign-in by id gave.
pub(crate) struct SignInById {
    /// The new session state (`None`: the directory does not know the user).
    pub state: Option<AuthState>,
    pub change: Option<CookieChange>,
    /// Whether a remember-me token was issued.
    pub remembered: bool,
    /// A device cookie, for a strong sign-in (bound to the password the
    /// user has now, see `device`).
    pub device_cookie: Option<String>,
}

impl Core {
    /// Signs in `user`, whom the app authenticated itself. A series of
    /// another user that the visit's cookie still proves is revoked; a
    /// cookie of `own`, the series the visit's session is bound to, that
    /// no longer proves its token is a fork, judged before the cookie is
    /// replaced.
    pub fn sign_in_by_id(
        &self,
        visit: &Visit,
        user: &UserId,
        how: &SignIn,
        own: Option<&SecretHash>,
    ) -> Result<SignInById, StoreError> {
        let Some(found) = self.stores.users.find_by_id(user)? else {
            crate::telemetry::sign_in("app", "rejected");
            return Ok(SignInById {
                state: None,
                change: None,
                remembered: false,
                device_cookie: None,
            });
        };
        let device_cookie = how.strong.then(|| {
            let hash = found.password_hash.as_deref();
            self.config.device_cookies.issue(user, hash, visit.now)
        });
        let mut ctx = self.context(visit);
        ctx.browser_series = match &visit.cookie {
            Some(raw) => crate::flow::browser_series(&mut ctx, raw, own)?,
            None => None,
        };
        ctx.password_at = how.strong.then_some(visit.now);
        ctx.user = Some(found);
        let mut remembered = false;
        if how.remember_me {
            // The built-in rule holds here too: the issuing step refuses
            // without a recent password (a weak sign-in has none).
            remembered = matches!(
                RememberMeIssueStep.run(&mut ctx, Some(user))?,
                StepOutcome::Success { .. }
            );
        }
        let built = app_session(&mut ctx, user, how.strong).and_then(|state| {
            if state.is_some() {
                ctx.retire_replaced()?;
            }
            Ok(state)
        });
        let change = ctx.cookie_change.take();
        let state = match built {
            Ok(Some(state)) => state,
            // The user is gone, or the store failed, after a token was
            // issued: it is withdrawn, never handed out.
            Ok(None) => {
                let change = self.withdraw_issued(visit, change, Some(user));
                return Ok(SignInById {
                    state: None,
                    change,
                    remembered: false,
                    device_cookie: None,
                });
            }
            Err(error) => {
                self.withdraw_issued(visit, change, Some(user));
                return Err(error);
            }
        };
        self.stores
            .audit(visit.event(AuditKind::AppSignIn, Some(user), &how.detail));
        crate::telemetry::sign_in("app", "success");
        Ok(SignInById {
            state: Some(state),
            change,
            remembered,
            device_cookie,
        })
    }
}

/// The session state of a sign-in by the app (after its token, if any,
/// was issued): a series of another user the browser carries revoked.
fn app_session(
    ctx: &mut StepContext<'_>,
    user: &UserId,
    strong: bool,
) -> Result<Option<AuthState>, StoreError> {
    drop_foreign_series(ctx, user)?;
    let mut tags = BTreeSet::from([Tag::WEAK_AUTHENTICATION]);
    if strong {
        tags.insert(Tag::PASSWORD_VERIFIED);
    }
    let series = match &ctx.cookie_change {
        Some(CookieChange::Set { cookie, .. }) => Some(cookie.series.hash()),
        _ => None,
    };
    let password_at = ctx.password_at;
    Ok(
        new_auth_state(ctx, user, tags, SignInMethod::App, series)?.map(|state| AuthState {
            password_at,
            ..state
        }),
    )
}

#[cfg(feature = "testing")]
/// Issues a remember-me token for `user` as after a password with the box
/// ticked, through the issuing step the flows use (the testing helper).
pub(crate) fn issue_token(
    stores: &crate::store::Stores,
    config: &crate::RememberMeConfig,
    visit: &Visit,
    user: &UserId,
) -> Result<CookieChange, StoreError> {
    let mut ctx = super::context(stores, config, visit);
    ctx.password_at = Some(visit.now);
    match RememberMeIssueStep.run(&mut ctx, Some(user))? {
        StepOutcome::Success { .. } => ctx.retire_replaced()?,
        other => return Err(StoreError::Query(format!("token not issued: {other:?}"))),
    }
    match ctx.cookie_change {
        Some(change @ CookieChange::Set { .. }) => Ok(change),
        _ => Err(StoreError::Query("token step set no cookie".into())),
    }
}
