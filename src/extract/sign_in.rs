//! [`Auth::sign_in`]: signing in a user the app authenticated itself
//! (after sign-up, OAuth, a magic link, a passkey), through the same rules
//! as a password sign-in: the same session, cookie, rotation, audit and
//! per-user cap, and a remember-me token only for a strong sign-in.

use super::{Auth, AuthError, AuthenticatedUser};
use crate::kernel::{SignIn, SignInById};
use crate::middleware::start_session;
use crate::store::UserId;

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

impl Auth {
    /// Signs in `user`, whom the app authenticated itself: the session is
    /// renewed (no fixation), the sign-in audited (`app_sign_in`), and, for
    /// a strong sign-in with [`SignIn::remember_me`], a remember-me token
    /// issued exactly as after a password with the box ticked. A series of
    /// another user that this browser still carries is revoked, and a
    /// stale cookie of the series the session is bound to (a copy rotated
    /// it past this browser) is judged as a sign-in by it would be.
    ///
    /// [`AuthError::Forbidden`] if the app's directory does not know the
    /// user. Blocking work runs on the layer's threads.
    pub async fn sign_in(&self, user: &UserId, how: SignIn) -> Result<SignedIn, AuthError> {
        let shared = &self.auth.shared;
        let visit = self.visit();
        let user = user.clone();
        let own = self.own_series();
        let SignInById {
            state,
            change,
            remembered,
            device_cookie,
        } = shared
            .store(move |core| core.sign_in_by_id(&visit, &user, &how, own.as_ref()))
            .await?;
        if let Some(change) = change {
            *self.auth.cookie_change.borrow_mut() = Some(change);
        }
        let state = state.ok_or(AuthError::Forbidden)?;
        if device_cookie.is_some() {
            *self.auth.device_cookie.borrow_mut() = device_cookie;
        }
        start_session(&self.session, &state);
        let user = AuthenticatedUser::from(&state);
        *self.auth.state.borrow_mut() = Some(state);
        Ok(SignedIn { user, remembered })
    }
}
