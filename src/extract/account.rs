//! The account's own changes: revoking devices, signing out everywhere,
//! changing the password.

use super::*;
use crate::kernel::{PasswordChangeJob, Refused};

impl Auth {
    /// Revokes one remember-me token by its id. With `owner`, only if it
    /// belongs to that user (a user revoking one of their devices: another
    /// user's id then revokes nothing); without, any token (an admin).
    pub async fn revoke_token(&self, id: i64, owner: Option<UserId>) -> Result<bool, AuthError> {
        let (visit, actor) = (self.visit(), self.actor());
        let revoked = self
            .auth
            .shared
            .store(move |core| core.revoke_token(&visit, id, owner.as_ref(), &actor))
            .await?;
        Ok(revoked)
    }

    /// Ends everything of `user`: every remember-me token is deleted and the
    /// auth epoch bumped, so every open session of the user ends at its next
    /// check (this one included, if it is that user's).
    pub async fn revoke_all(&self, user: UserId) -> Result<usize, AuthError> {
        let (visit, actor) = (self.visit(), self.actor());
        let revoked = user.clone();
        let n = self
            .auth
            .shared
            .store(move |core| core.revoke_all(&visit, &revoked, &actor))
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
    /// browser's session stays and its remember-me token is replaced by a
    /// new one, so that a copy of its cookie ends too (without a password
    /// within the re-auth window the token just ends). Callers should
    /// demand [`StrongAuth`].
    pub async fn sign_out_other_devices(&self) -> Result<usize, AuthError> {
        let (user, epoch) = self.user_and_epoch()?;
        let password_at = self
            .auth
            .state
            .borrow()
            .as_ref()
            .and_then(|s| s.password_at);
        let visit = self.visit();
        let done = self
            .auth
            .shared
            .store(move |core| core.sign_out_other_devices(&visit, &user, epoch, password_at))
            .await?;
        let done = done.map(|(n, epoch, change)| ((n, change), epoch));
        let ((n, change), _) = self.restamp_or_end(done)?;
        self.adopt_series(change);
        Ok(n)
    }

    /// Changes the current user's password (Argon2id on a blocking thread)
    /// after checking the current one, ends every other session and token of
    /// the user, keeps this one. Callers should demand [`StrongAuth`]. The
    /// current password is checked like every other password (see
    /// [`PasswordStep`](crate::flow::PasswordStep)): throttled per account,
    /// per device and per client address, and a wrong one is audited.
    ///
    /// # Errors
    ///
    /// [`AuthError::Unavailable`] when the store fails, or when the app's
    /// directory fails to store the new password
    /// ([`UserDirectory::set_password`](crate::store::UserDirectory::set_password)):
    /// then the password stays, this session stays signed in, and the
    /// user's other sessions end at their next check (the change had
    /// begun). A directory that does not store passwords at all
    /// ([`UserDirectory::sets_passwords`](crate::store::UserDirectory::sets_passwords))
    /// gives [`PasswordChange::Unsupported`] instead, and nothing changes.
    pub async fn change_password(
        &self,
        current_password: String,
        new_password: String,
    ) -> Result<PasswordChange, AuthError> {
        let shared = &self.auth.shared;
        if let Some(limiter) = &shared.ip_limiter
            && let Some(retry_after_secs) =
                crate::limits::ip_throttled(limiter, shared.config(), &self.req)
        {
            return Ok(PasswordChange::Throttled { retry_after_secs });
        }
        let (user, epoch) = self.user_and_epoch()?;
        let mut visit = self.visit();
        visit.device = crate::middleware::trusted_device(&self.req, shared.config());
        let now = visit.now;
        let job = PasswordChangeJob {
            user,
            epoch,
            current_password,
            new_password,
        };
        // Argon2 twice: on a password thread, not on the store threads.
        let done = shared
            .password(move |core| core.change_password(&visit, &job))
            .await?;
        match done {
            Some(Err(Refused::WrongPassword)) => Ok(PasswordChange::WrongPassword),
            Some(Err(Refused::Throttled { retry_after_secs })) => {
                Ok(PasswordChange::Throttled { retry_after_secs })
            }
            Some(Err(Refused::Unsupported)) => Ok(PasswordChange::Unsupported),
            Some(Err(Refused::NotStored { epoch, error })) => {
                self.restamp(Some(epoch));
                Err(AuthError::Unavailable(error))
            }
            Some(Ok(changed)) => {
                // The new password voids the user's device cookies (see
                // `device`); this client just typed it. First: a session
                // that must sign in again (the epoch moved during the
                // change) keeps it.
                *self.auth.device_cookie.borrow_mut() = changed.device_cookie;
                self.restamp_or_end(changed.epoch.map(|epoch| ((), epoch)))?;
                self.adopt_series(changed.change);
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

    /// This browser's remember-me token was replaced (or ended): the
    /// cookie follows, and the session is bound to the new series.
    fn adopt_series(&self, change: Option<CookieChange>) {
        let Some(change) = change else { return };
        if let Some(state) = self.auth.state.borrow_mut().as_mut() {
            state.series = match &change {
                CookieChange::Set { cookie, .. } => Some(cookie.series.hash()),
                CookieChange::Remove => None,
            };
            if let Err(error) = self.session.insert(AUTH_KEY, &*state) {
                tracing::error!(%error, "could not update the session");
            }
        }
        *self.auth.cookie_change.borrow_mut() = Some(change);
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
                    location: self.auth.shared.config().login_path.clone(),
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
            state.checked_at = self.auth.shared.config().now();
            // A fresh id too: the session's privileges were just re-confirmed.
            state.sid = random_id();
            if let Err(error) = self.session.insert(AUTH_KEY, &*state) {
                tracing::error!(%error, "could not update the session");
            }
        }
    }
}
