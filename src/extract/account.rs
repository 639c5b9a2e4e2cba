//! The account's own changes: revoking devices, signing out everywhere,
//! changing the password.

use super::*;

impl Auth {
    /// Revokes one remember-me token by its id. With `owner`, only if it
    /// belongs to that user (a user revoking one of their devices: another
    /// user's id then revokes nothing); without, any token (an admin).
    pub async fn revoke_token(&self, id: i64, owner: Option<UserId>) -> Result<bool, AuthError> {
        let stores = self.stores().clone();
        let event = self.audit_event(
            AuditKind::TokenRevoked,
            owner.clone(),
            format!("token #{id} {}", self.actor()),
        );
        blocking(&self.auth.shared, move || {
            let owner_of = match &owner {
                Some(owner) => Some(owner.clone()),
                None => stores.tokens.find_owner(id)?,
            };
            let revoked = stores.tokens.delete_by_id(id, owner.as_ref())?;
            if revoked {
                stores.audit(event.borrowed(owner_of.as_ref()));
            }
            Ok(revoked)
        })
        .await
    }

    /// Ends everything of `user`: every remember-me token is deleted and the
    /// auth epoch bumped, so every open session of the user ends at its next
    /// check (this one included, if it is that user's).
    pub async fn revoke_all(&self, user: UserId) -> Result<usize, AuthError> {
        let stores = self.stores().clone();
        let event = self.audit_event(
            AuditKind::SignOutEverywhere,
            Some(user.clone()),
            String::new(),
        );
        let actor = self.actor();
        let revoked = user.clone();
        let n = blocking(&self.auth.shared, move || {
            // One transaction: no state with the tokens gone but the
            // sessions alive, or without its audit row.
            let detail = format!("every token revoked {actor}");
            stores.revoke_everything(
                &revoked,
                NewAuditEvent {
                    detail: &detail,
                    ..event.borrowed(None)
                },
            )
        })
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
    /// browser's token and session stay.
    pub async fn sign_out_other_devices(&self) -> Result<usize, AuthError> {
        let (user, epoch) = self.user_and_epoch()?;
        let keep = raw_cookie(&self.req, &self.auth.shared.config.cookie_name());
        let stores = self.stores().clone();
        let config = self.auth.shared.config.clone();
        let now = config.now();
        let event = self.audit_event(
            AuditKind::SignOutEverywhere,
            Some(user.clone()),
            String::new(),
        );
        let done = blocking(&self.auth.shared, move || {
            // Only a session still under the current epoch may move to the
            // next one: a revoked session must not adopt it and live on.
            let Some(new_epoch) = stores.state.bump_epoch_from(&user, epoch)? else {
                return Ok(None);
            };
            let n = delete_tokens_except(&stores, &config, now, &user, keep.as_deref())?;
            let detail = format!("other devices: {n} token(s) revoked");
            stores.audit(NewAuditEvent {
                detail: &detail,
                ..event.borrowed(None)
            });
            Ok(Some((n, new_epoch)))
        })
        .await?;
        self.restamp_or_end(done).map(|(n, _)| n)
    }

    /// Changes the current user's password (Argon2id on a blocking thread)
    /// after checking the current one, ends every other session and token of
    /// the user, keeps this one. Callers should demand [`StrongAuth`]. The
    /// current password is checked like every other password (see
    /// [`PasswordStep`](crate::flow::PasswordStep)): throttled per account,
    /// per device and per client address, and a wrong one is audited.
    pub async fn change_password(
        &self,
        current_password: String,
        new_password: String,
    ) -> Result<PasswordChange, AuthError> {
        if let Some(limiter) = &self.auth.shared.ip_limiter
            && let Some(retry_after_secs) =
                crate::limits::ip_throttled(limiter, &self.auth.shared.config, &self.req)
        {
            return Ok(PasswordChange::Throttled { retry_after_secs });
        }
        let (user, epoch) = self.user_and_epoch()?;
        let config = self.auth.shared.config.clone();
        let now = config.now();
        let job = PasswordJob {
            keep: raw_cookie(&self.req, &config.cookie_name()),
            device: crate::middleware::trusted_device(&self.req, &config),
            stores: self.stores().clone(),
            client: client_info(&self.req, &config),
            event: self.audit_event(
                AuditKind::PasswordChanged,
                Some(user.clone()),
                String::new(),
            ),
            config,
            now,
            user,
            epoch,
            current_password,
            new_password,
        };
        let _permit = self
            .auth
            .shared
            .password_checks
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| AuthError::Internal(e.to_string()))?;
        // Argon2 twice: on the blocking pool, not on the store threads.
        let done = self
            .auth
            .shared
            .run_with_argon2(move || job.run())
            .await
            .map_err(|e| AuthError::Internal(e.to_string()))?
            .map_err(AuthError::from)?;
        match done {
            Some(Err(refused)) => Ok(refused),
            Some(Ok(new_epoch)) => {
                self.restamp_or_end(Some(((), new_epoch)))?;
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
                    location: self.auth.shared.config.login_path.clone(),
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
            state.checked_at = self.auth.shared.config.now();
            // A fresh id too: the session's privileges were just re-confirmed.
            state.sid = random_id();
            if let Err(error) = self.session.insert(AUTH_KEY, &*state) {
                tracing::error!(%error, "could not update the session");
            }
        }
    }
}

/// Deletes every token of `user` except the one this browser's cookie
/// (`keep`, raw) still proves. Blocking.
fn delete_tokens_except(
    stores: &crate::store::Stores,
    config: &crate::RememberMeConfig,
    now: i64,
    user: &UserId,
    keep: Option<&[u8]>,
) -> Result<usize, StoreError> {
    let keep = match keep {
        Some(raw) => verified_series(stores, config, now, raw)?,
        None => None,
    };
    let mut n = 0;
    for token in stores.tokens.list_for_user(user)? {
        if keep.as_ref() != Some(&token.series_hash)
            && stores.tokens.delete_by_id(token.id, Some(user))?
        {
            n += 1;
        }
    }
    Ok(n)
}

/// Runs store work on the layer's store threads.
/// The blocking part of [`Auth::change_password`].
struct PasswordJob {
    stores: crate::store::Stores,
    config: std::sync::Arc<crate::RememberMeConfig>,
    now: i64,
    client: crate::flow::ClientInfo,
    device: Option<crate::device::TrustedDevice>,
    keep: Option<Vec<u8>>,
    event: OwnedAudit,
    user: UserId,
    epoch: i64,
    current_password: String,
    new_password: String,
}

impl PasswordJob {
    /// Checks the current password, moves the session to the next epoch
    /// (`None`: it had moved on, the session was revoked), has the app's
    /// directory store the new password, and ends the user's other tokens.
    fn run(self) -> Result<Option<Result<i64, PasswordChange>>, StoreError> {
        let (stores, user) = (&self.stores, &self.user);
        let mut ctx = StepContext::new(stores, &self.config, self.now, &self.client);
        ctx.device = self.device.clone();
        let who = crate::flow::Who::Known(user);
        match check_password(&mut ctx, who, &self.current_password, "password change")? {
            PasswordCheck::Verified(_) => {}
            PasswordCheck::Wrong => return Ok(Some(Err(PasswordChange::WrongPassword))),
            PasswordCheck::Throttled { retry_after_secs } => {
                return Ok(Some(Err(PasswordChange::Throttled { retry_after_secs })));
            }
        }
        let Some(new_epoch) = stores.state.bump_epoch_from(user, self.epoch)? else {
            return Ok(None);
        };
        // The app's directory hashes and stores it, in its scheme.
        stores.users.set_password(user, &self.new_password)?;
        let keep = self.keep.as_deref();
        let n = delete_tokens_except(stores, &self.config, self.now, user, keep)?;
        let detail = format!("{n} other token(s) revoked");
        stores.audit(NewAuditEvent {
            detail: &detail,
            ..self.event.borrowed(None)
        });
        Ok(Some(Ok(new_epoch)))
    }
}
