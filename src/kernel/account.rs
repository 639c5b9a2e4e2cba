//! Logout and the account's own changes: revoking devices, signing out
//! everywhere, changing the password.

use super::{Core, Visit};
use crate::flow::{
    CookieChange, PasswordCheck, RememberMeIssueStep, Step as _, StepOutcome, Who, browser_series,
    check_password, verified_series,
};
use crate::store::{AuditKind, StoreError, UserId};
use crate::token::SecretHash;

/// A password change: whose, under which epoch, and the two passwords.
pub(crate) struct PasswordChangeJob {
    pub user: UserId,
    /// The epoch the session carries: only a session still under it may
    /// move the user to the next one.
    pub epoch: i64,
    pub current_password: String,
    pub new_password: String,
}

/// Why a password change changed nothing.
#[derive(Debug, Clone)]
pub(crate) enum Refused {
    /// The current password was wrong.
    WrongPassword,
    /// Too many wrong passwords: nothing was checked.
    Throttled { retry_after_secs: u64 },
    /// The app's directory could not store the new password (`error`)
    /// after the user had moved on to `epoch`: the session moves with it,
    /// the user's other sessions end, the password stays.
    NotStored { epoch: i64, error: StoreError },
    /// The app's directory does not store passwords: nothing was checked
    /// or changed.
    Unsupported,
}

/// What a password change gave: `None` if the session had been revoked
/// meanwhile (nothing changed), else what changed or why not.
pub(crate) type PasswordChanged = Option<Result<Changed, Refused>>;

/// A password changed: the new epoch for this session (`None`: the epoch
/// moved meanwhile, and the session must sign in again), this browser's
/// cookie change (see [`Core::replace_visit_series`]), and its device
/// cookie for the new password (the change voids the old ones).
pub(crate) struct Changed {
    pub epoch: Option<i64>,
    pub change: Option<CookieChange>,
    pub device_cookie: Option<String>,
}

/// What signing out the other devices gave: the tokens revoked, the new
/// epoch, and this browser's cookie change.
pub(crate) type OthersSignedOut = (usize, i64, Option<CookieChange>);

impl Core {
    /// Signs out: deletes the row of the visit's cookie (only if it still
    /// proves its token: an old copy must not quietly sign its owner's
    /// browser out) and records the logout of `user`, if any. A cookie of
    /// the session's own series (`own`) that no longer proves its token
    /// shows a fork, judged before the cookie goes (see
    /// `browser_series`).
    pub fn logout(
        &self,
        visit: &Visit,
        user: Option<&UserId>,
        own: Option<&SecretHash>,
    ) -> Result<(), StoreError> {
        let series = match &visit.cookie {
            Some(raw) => browser_series(&mut self.context(visit), raw, own)?,
            None => None,
        };
        if let Some(series) = series {
            self.stores.tokens.delete_series(&series)?;
        }
        if user.is_some() {
            self.stores.audit(visit.event(AuditKind::Logout, user, ""));
        }
        Ok(())
    }

    /// Revokes one token by id; with `owner`, only if it is that user's.
    pub fn revoke_token(
        &self,
        visit: &Visit,
        id: i64,
        owner: Option<&UserId>,
        actor: &str,
    ) -> Result<bool, StoreError> {
        let owner_of = match owner {
            Some(owner) => Some(owner.clone()),
            None => self.stores.tokens.find_owner(id)?,
        };
        let revoked = self.stores.tokens.delete_by_id(id, owner)?;
        if revoked {
            let detail = format!("token #{id} {actor}");
            self.stores
                .audit(visit.event(AuditKind::TokenRevoked, owner_of.as_ref(), &detail));
        }
        Ok(revoked)
    }

    /// Every token of `user` deleted and the epoch bumped, in one
    /// transaction with its audit row: no state with the tokens gone but
    /// the sessions alive, or without its trace.
    pub fn revoke_all(
        &self,
        visit: &Visit,
        user: &UserId,
        actor: &str,
    ) -> Result<usize, StoreError> {
        let detail = format!("every token revoked {actor}");
        self.stores.revoke_everything(
            user,
            visit.event(AuditKind::SignOutEverywhere, Some(user), &detail),
        )
    }

    /// The user's other devices signed out: the epoch moves on from
    /// `epoch` (`None`: it had moved on already, the session was revoked),
    /// every token but the visit's is deleted, and the visit's is replaced
    /// by a new one (with `password_at`, the session's password time; see
    /// [`Core::replace_visit_series`]).
    pub fn sign_out_other_devices(
        &self,
        visit: &Visit,
        user: &UserId,
        epoch: i64,
        password_at: Option<i64>,
    ) -> Result<Option<OthersSignedOut>, StoreError> {
        let Some(new_epoch) = self.stores.state.bump_epoch_from(user, epoch)? else {
            return Ok(None);
        };
        let (n, change) = self.end_other_tokens(visit, user, password_at, Some(new_epoch))?;
        let detail = format!("other devices: {n} token(s) revoked");
        self.stores
            .audit(visit.event(AuditKind::SignOutEverywhere, Some(user), &detail));
        Ok(Some((n, new_epoch, change)))
    }

    /// Checks the current password (throttled and audited like every
    /// password), moves the session to the next epoch, has the app's
    /// directory store the new password, and ends the user's other tokens.
    /// Argon2: call it on a password thread.
    pub fn change_password(
        &self,
        visit: &Visit,
        job: &PasswordChangeJob,
    ) -> Result<PasswordChanged, StoreError> {
        let user = &job.user;
        // Before the epoch moves: a change that cannot be stored must not
        // end the user's other sessions on every try.
        if !self.stores.users.sets_passwords() {
            tracing::warn!(
                user_id = %user,
                "password change refused: the app's directory does not store passwords \
                 (UserDirectory::sets_passwords is false)"
            );
            return Ok(Some(Err(Refused::Unsupported)));
        }
        let mut ctx = self.context(visit);
        let who = Who::Known(user);
        match check_password(&mut ctx, who, &job.current_password, "password change")? {
            PasswordCheck::Verified(_) => {}
            PasswordCheck::Wrong => return Ok(Some(Err(Refused::WrongPassword))),
            PasswordCheck::Throttled { retry_after_secs } => {
                return Ok(Some(Err(Refused::Throttled { retry_after_secs })));
            }
        }
        // Only a session still under its epoch may change the password.
        let Some(moved) = self.stores.state.bump_epoch_from(user, job.epoch)? else {
            return Ok(None);
        };
        // The app's directory hashes and stores it, in its scheme. Should
        // that fail, the epoch has moved all the same: this session, which
        // proved the password, moves with it rather than end with the rest.
        if let Err(error) = self.stores.users.set_password(user, &job.new_password) {
            tracing::error!(user_id = %user, %error, "new password not stored");
            return Ok(Some(Err(Refused::NotStored {
                epoch: moved,
                error,
            })));
        }
        // A check of the old password that finished while the new one was
        // hashed may have signed someone in, or paused a sign-in, under
        // `moved`: move on once more, so that nothing the old password
        // opened outlives the change. Should the epoch have moved meanwhile
        // (a revocation, or a session the old password opened moving it
        // itself), move on past it all the same, but this session does not
        // adopt the result: a revoked session never does; it signs in
        // again, with the new password.
        let new_epoch = match self.stores.state.bump_epoch_from(user, moved)? {
            Some(epoch) => Some(epoch),
            None => {
                self.stores.state.bump_epoch(user)?;
                None
            }
        };
        // A session that signs in again (`new_epoch` is `None`) gets no
        // new token: nobody would hold it.
        let password_at = new_epoch.map(|_| visit.now);
        let (n, change) = self.end_other_tokens(visit, user, password_at, new_epoch)?;
        let detail = format!("{n} other token(s) revoked");
        self.stores
            .audit(visit.event(AuditKind::PasswordChanged, Some(user), &detail));
        let device_cookie = self.stores.users.find_by_id(user)?.map(|now| {
            let hash = now.password_hash.as_deref();
            self.config.device_cookies.issue(user, hash, visit.now)
        });
        Ok(Some(Ok(Changed {
            epoch: new_epoch,
            change,
            device_cookie,
        })))
    }

    /// Deletes every token of `user`, in one statement (a failure cannot
    /// leave some alive), then gives the browser a new one in place of
    /// the one its cookie still proved (see [`Core::replace_visit_series`]).
    /// The number of the user's other tokens deleted, and the browser's
    /// cookie change.
    fn end_other_tokens(
        &self,
        visit: &Visit,
        user: &UserId,
        password_at: Option<i64>,
        epoch: Option<i64>,
    ) -> Result<(usize, Option<CookieChange>), StoreError> {
        let keep = match &visit.cookie {
            Some(raw) => verified_series(&self.stores, &self.config, visit.now, raw)?,
            None => None,
        };
        // This browser's token (its series proved a moment ago) went with
        // the others: not counted among them.
        let gone = self.stores.tokens.delete_all_for_user(user)?;
        let others = gone.saturating_sub(usize::from(keep.is_some()));
        let change = match keep {
            Some(_) => Some(self.replace_visit_series(visit, user, password_at, epoch)?),
            None => None,
        };
        Ok((others, change))
    }

    /// This browser's series, deleted with every other token of `user`
    /// (before this, whatever follows), replaced by a new one: a copy of
    /// this browser's cookie (what a user who suspects theft changes the
    /// password for) must die with the rest, and a rotation would leave it
    /// the grace window and the seal. The new token is issued
    /// as after a password typed at `password_at` (the issuing step's own
    /// rule: within the re-auth window), under `epoch` (the step deletes
    /// it again if a revocation moved the epoch on meanwhile); without a
    /// password, or should issuing it fail, the cookie goes.
    fn replace_visit_series(
        &self,
        visit: &Visit,
        user: &UserId,
        password_at: Option<i64>,
        epoch: Option<i64>,
    ) -> Result<CookieChange, StoreError> {
        let mut ctx = self.context(visit);
        ctx.password_at = password_at;
        ctx.epoch = epoch;
        let issued =
            RememberMeIssueStep
                .run(&mut ctx, Some(user))
                .and_then(|outcome| match outcome {
                    StepOutcome::Success { .. } => ctx.retire_replaced().map(|()| true),
                    _ => Ok(false),
                });
        match (issued, ctx.cookie_change.take()) {
            (Ok(true), Some(change @ CookieChange::Set { .. })) => Ok(change),
            (Ok(_), _) => Ok(CookieChange::Remove),
            (Err(error), change) => {
                self.withdraw_issued(visit, change, Some(user));
                Err(error)
            }
        }
    }
}
