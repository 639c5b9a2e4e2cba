//! [`Auth::sign_in`]: signing in a user the app authenticated itself
//! (after sign-up, OAuth, a magic link, a passkey), through the same rules
//! as a password sign-in: the same session, cookie, rotation, audit and
//! per-user cap, and a remember-me token only for a strong sign-in.

use std::collections::BTreeSet;

use super::{Auth, AuthError, AuthenticatedUser, client_info, raw_cookie};
use crate::flow::{CookieChange, RememberMeIssueStep, Step as _, StepContext, StepOutcome, Tag};
use crate::middleware::{new_auth_state, start_session};
use crate::session::SignInMethod;
use crate::store::{AuditKind, NewAuditEvent, StoreError, UserId};

/// How the app authenticated the user it signs in with [`Auth::sign_in`].
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

/// What [`Auth::sign_in`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SignedIn {
    /// The user now signed in on this session.
    pub user: AuthenticatedUser,
    /// Whether a remember-me token was issued (asked for, and allowed: a
    /// weak sign-in never gets one).
    pub remembered: bool,
}

/// The blocking part of a sign-in by id.
struct Job {
    stores: crate::store::Stores,
    config: std::sync::Arc<crate::RememberMeConfig>,
    client: crate::flow::ClientInfo,
    browser_cookie: Option<Vec<u8>>,
    now: i64,
    user: UserId,
    how: SignIn,
}

/// What a sign-in by id gave: the new session state (`None`: the directory
/// does not know the user), the cookie change, and whether a token was
/// issued.
type Done = (Option<super::AuthState>, Option<CookieChange>, bool);

impl Job {
    fn run(self) -> Result<Done, StoreError> {
        let Job {
            stores,
            config,
            client,
            browser_cookie,
            now,
            user,
            how,
        } = self;
        let Some(found) = stores.users.find_by_id(&user)? else {
            return Ok((None, None, false));
        };
        let mut ctx = StepContext::new(&stores, &config, now, &client);
        ctx.browser_series = match &browser_cookie {
            Some(raw) => crate::flow::verified_series(&stores, &config, now, raw)?,
            None => None,
        };
        ctx.password_at = how.strong.then_some(now);
        ctx.user = Some(found);
        let mut remembered = false;
        if how.remember_me {
            // The built-in rule holds here too: the issuing step refuses
            // without a recent password (a weak sign-in has none).
            remembered = matches!(
                RememberMeIssueStep.run(&mut ctx, Some(&user))?,
                StepOutcome::Success { .. }
            );
        }
        super::drop_foreign_series(&mut ctx, &user)?;
        let mut tags = BTreeSet::from([Tag::WEAK_AUTHENTICATION]);
        if how.strong {
            tags.insert(Tag::PASSWORD_VERIFIED);
        }
        let series = match &ctx.cookie_change {
            Some(CookieChange::Set { cookie, .. }) => Some(cookie.series.hash()),
            _ => None,
        };
        let state =
            new_auth_state(&mut ctx, &user, tags, SignInMethod::App, series)?.map(|state| {
                super::AuthState {
                    password_at: ctx.password_at,
                    ..state
                }
            });
        stores.audit(NewAuditEvent {
            at: now,
            kind: AuditKind::AppSignIn,
            user_id: Some(&user),
            ip: ctx.client.ip.as_deref(),
            user_agent: ctx.client.user_agent.as_deref(),
            detail: &how.detail,
        });
        Ok::<_, StoreError>((state, ctx.cookie_change, remembered))
    }
}

impl Auth {
    /// Signs in `user`, whom the app authenticated itself: the session is
    /// renewed (no fixation), the sign-in audited (`app_sign_in`), and, for
    /// a strong sign-in with [`SignIn::remember_me`], a remember-me token
    /// issued exactly as after a password with the box ticked. A series of
    /// another user that this browser still carries is revoked.
    ///
    /// [`AuthError::Forbidden`] if the app's directory does not know the
    /// user. Blocking work runs on the layer's threads.
    pub async fn sign_in(&self, user: &UserId, how: SignIn) -> Result<SignedIn, AuthError> {
        let shared = &self.auth.shared;
        let config = shared.config.clone();
        let client = client_info(&self.req, &config);
        let browser_cookie = raw_cookie(&self.req, &config.cookie_name());
        let now = config.now();
        let user = user.clone();
        let job = Job {
            stores: shared.stores.clone(),
            config: config.clone(),
            client,
            browser_cookie,
            now,
            user: user.clone(),
            how,
        };
        let (state, change, remembered) = super::blocking(shared, move || job.run()).await?;
        if let Some(change) = change {
            *self.auth.cookie_change.borrow_mut() = Some(change);
        }
        let state = state.ok_or(AuthError::Forbidden)?;
        if state.password_at.is_some() {
            *self.auth.device_cookie.borrow_mut() =
                Some(shared.config.device_cookies.issue(&state.user_id, now));
        }
        start_session(&self.session, &state);
        let user = AuthenticatedUser::from(&state);
        *self.auth.state.borrow_mut() = Some(state);
        Ok(SignedIn { user, remembered })
    }
}
