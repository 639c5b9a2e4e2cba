//! The remember-me token generating step.

use super::{CookieChange, Failure, Step, StepContext, StepOutcome};
use crate::store::{AuditKind, NewAuditEvent, NewToken, Retire, StoreError, UserId};
use crate::token::{RememberCookie, SecretHash};

/// Issues a new series/token cookie for the identified user and stores its
/// hashes. What the new token replaces (the browser's previous series, if
/// it carries one: one token per browser; the app device's other token;
/// the user's least recently used tokens beyond the cap) goes only once
/// the sign-in completes: one that stops at a later step (a second factor
/// that never comes) leaves the user's devices as they were.
///
/// The built-in flows give it the precondition `PASSWORD_VERIFIED`, and
/// the step checks for itself that a password was typed within the re-auth
/// window ([`StepContext::password_at`]), whatever flow it is put in: a
/// remember-me cookie or a derived access token must never mint a new
/// long-lived token on its own.
#[derive(Debug, Clone, Copy, Default)]
pub struct RememberMeIssueStep;

impl Step for RememberMeIssueStep {
    fn is_interactive(&self) -> bool {
        false
    }

    fn run(
        &self,
        ctx: &mut StepContext<'_>,
        known_user: Option<&UserId>,
    ) -> Result<StepOutcome, StoreError> {
        let Some(user) = known_user else {
            return Ok(StepOutcome::Failed(Failure::UserMismatch));
        };
        if !ctx.config.password_is_recent(ctx.password_at, ctx.now) {
            tracing::warn!(user_id = %user, "token not issued: no recent password");
            return Ok(StepOutcome::Failed(Failure::PasswordRequired));
        }
        let cookie = RememberCookie::generate();
        let series = cookie.series.hash();
        // `validity` is at most `MAX_TOKEN_LIFETIME`: no overflow.
        let expires_at = ctx.now + ctx.config.validity.as_secs() as i64;
        let id = ctx.stores.tokens.insert(NewToken {
            user_id: user,
            series_hash: &series,
            token_hash: &cookie.token.hash(),
            now: ctx.now,
            expires_at,
            user_agent: ctx.client.user_agent.as_deref(),
            ip: ctx.client.ip.as_deref(),
            device_key: ctx.device_key.as_deref(),
        })?;
        // From here the run's cookie change names the new token: should
        // anything below fail, the run withdraws it. A second issuing step
        // in one run (the app's after the crate's) supersedes the first:
        // its token goes, and what it replaced is replaced by this one.
        let earlier = ctx.issued.take();
        let replaces = match &earlier {
            Some(earlier) => earlier.replaces.clone(),
            None => ctx.browser_series.take(),
        };
        let before = ctx.cookie_change.replace(CookieChange::Set {
            cookie,
            max_age_secs: expires_at - ctx.now,
        });
        ctx.issued = Some(Issued {
            id,
            user: user.clone(),
            replaces,
            device_key: ctx.device_key.clone(),
        });
        if let Some(earlier) = earlier {
            ctx.stores.tokens.delete_by_id(earlier.id, Some(user))?;
        }
        // The epoch this run's password was checked under (read before the
        // hash): moved on since (a password change landed while the old
        // password was being checked), the change may already have deleted
        // the user's tokens, and this one must not outlive it. Checked
        // after the insert: a change that moves the epoch later deletes
        // the token itself.
        if let Some(epoch) = ctx.epoch
            && ctx.stores.state.auth_epoch(user)? != epoch
        {
            ctx.stores.tokens.delete_series(&series)?;
            (ctx.cookie_change, ctx.issued) = (before, None);
            tracing::warn!(user_id = %user, "token not issued: the user's epoch moved during the sign-in");
            return Ok(StepOutcome::Failed(Failure::PasswordRequired));
        }
        tracing::info!(user_id = %user, token_id = id, "remember-me token issued");
        ctx.stores.audit(NewAuditEvent {
            at: ctx.now,
            kind: AuditKind::TokenIssued,
            user_id: Some(user),
            ip: ctx.client.ip.as_deref(),
            user_agent: ctx.client.user_agent.as_deref(),
            detail: &format!("token #{id}"),
        });
        Ok(StepOutcome::Success {
            user: user.clone(),
            activate: Vec::new(),
        })
    }
}

/// A token the issuing step inserted (row `id`, of `user`, for the app
/// device `device_key`), and the browser's series it replaces, if any.
#[derive(Debug)]
pub(crate) struct Issued {
    id: i64,
    user: UserId,
    replaces: Option<SecretHash>,
    device_key: Option<String>,
}

impl StepContext<'_> {
    /// Once a run has completed and its session is built: what the token
    /// its issuing step inserted replaces goes, in one transaction (the
    /// browser's previous series, the app device's other token, the user's
    /// least recently used tokens beyond the cap; see
    /// [`TokenStore::retire_replaced`](crate::store::TokenStore::retire_replaced)).
    /// Until then a token replaces nothing, so a run that stops half-way
    /// (its token withdrawn) signs no device out. The layer calls it
    /// wherever a run completes; an app that drives a flow itself
    /// ([`Flow::advance`](super::Flow::advance)) calls it on completion.
    /// Nothing to do if no token was issued.
    pub fn retire_replaced(&mut self) -> Result<(), StoreError> {
        let Some(issued) = self.issued.take() else {
            return Ok(());
        };
        self.stores.tokens.retire_replaced(Retire {
            user: &issued.user,
            kept: issued.id,
            browser_series: issued.replaces.as_ref(),
            device_key: issued.device_key.as_deref(),
            max_per_user: self.config.max_tokens_per_user,
        })?;
        Ok(())
    }
}
