//! A sign-in by remember-me cookie, the open session's epoch check, and the
//! session state of a user who just signed in.

use std::collections::BTreeSet;

use super::rotations::Owner;
use super::{Core, Visit};
use crate::flow::{CookieChange, Prefetched, Progress, Rotation, StepContext, Tag};
use crate::session::{AuthState, SignInMethod, random_id};
use crate::store::{AuditKind, FoundSeries, OwnedRotation, StoreError, User, UserId};
use crate::token::{RememberCookie, SecretHash};

/// What a sign-in by cookie gave.
pub(crate) struct CookieSignIn {
    /// The new auth state, if the flow completed.
    pub state: Option<AuthState>,
    /// The cookie change to apply.
    pub change: Option<CookieChange>,
    /// Whether the store wrote the sign-in's audit row with the rotation.
    pub audited: bool,
    /// Why the sign-in failed after its rotation committed (then `change`
    /// carries the rotated cookie): the request is served as if the store
    /// were down.
    pub failed: Option<StoreError>,
}

impl Core {
    /// Runs the login flow's automatic steps with the visit's cookie.
    /// Returns the new auth state if the flow completed, and the cookie
    /// change to apply: the change is returned even when work after the
    /// rotation fails, so a rotated token is never lost (the browser would
    /// keep a token the database no longer accepts after the grace window).
    ///
    /// `prefetched` is the rotation of the cookie, already run (see
    /// [`Core::prepare_cookie_rotation`]).
    pub fn cookie_sign_in(
        &self,
        visit: &Visit,
        prefetched: Option<Prefetched>,
    ) -> Result<CookieSignIn, StoreError> {
        let Some(raw) = visit.cookie.as_deref() else {
            return Ok(CookieSignIn {
                state: None,
                change: None,
                audited: false,
                failed: None,
            });
        };
        let mut ctx = self.context(visit);
        ctx.remember_cookie = Some(raw);
        ctx.prefetched = prefetched;
        let flow = self.flow(crate::flow::FlowKind::Login);
        let mut flow_state = flow.start(None);
        let progress = match super::advance(flow, &mut flow_state, &mut ctx) {
            Ok(progress) => progress,
            // A step after the rotation failed or panicked (a custom
            // flow's): the rotation committed, so its cookie still goes to
            // the client; this request is served as with the store down,
            // the next signs in.
            Err(error) if ctx.cookie_change.is_some() => {
                tracing::warn!(%error, "sign-in by cookie failed after its rotation");
                return Ok(CookieSignIn {
                    state: None,
                    change: ctx.cookie_change.take(),
                    audited: ctx.sign_in_audited,
                    failed: Some(error),
                });
            }
            Err(error) => return Err(error),
        };
        let mut signed_in = CookieSignIn {
            state: None,
            change: ctx.cookie_change.take(),
            audited: ctx.sign_in_audited,
            failed: None,
        };
        let Progress::Complete { user, tags } = progress else {
            crate::telemetry::sign_in("remember_me", "rejected");
            return Ok(signed_in);
        };
        let series = RememberCookie::decode(raw).ok().map(|c| c.series.hash());
        match new_auth_state(&mut ctx, &user, tags, SignInMethod::RememberMe, series) {
            Ok(state) => {
                let outcome = if state.is_some() {
                    "success"
                } else {
                    "rejected"
                };
                crate::telemetry::sign_in("remember_me", outcome);
                signed_in.state = state;
            }
            Err(error) => {
                tracing::warn!(%error, user_id = %user, "signed in by cookie, but the user could not be loaded");
            }
        }
        Ok(signed_in)
    }

    /// The rest of a sign-in by cookie once its rotation's batch has run
    /// (`outcome`), on the store thread the batch left it to (see
    /// `RotationQueue::rotate_then`). A batch that failed ends it (nothing
    /// was written); past the rotation, a failure or a panic still hands
    /// back the rotated cookie, in [`CookieSignIn::failed`].
    pub fn finish_cookie_sign_in(
        &self,
        visit: &Visit,
        rotation: Rotation,
        outcome: Result<Option<FoundSeries>, StoreError>,
        owner: Owner,
    ) -> Result<CookieSignIn, StoreError> {
        after_rotation(visit, rotation, (outcome, owner), |prefetched| {
            self.cookie_sign_in(visit, Some(prefetched))
        })
        .or_else(|(error, rotated)| match rotated {
            Some(change) => Ok(CookieSignIn {
                state: None,
                change: Some(change),
                audited: false,
                failed: Some(error),
            }),
            None => Err(error),
        })
    }

    /// The rotation a sign-in by the visit's cookie starts with, worked out
    /// without the store (on an async worker), to be run in a batch before
    /// the flow (`RotationQueue::rotate`): `None` if the visit carries no
    /// cookie that decodes, the token store does not rotate in batches
    /// ([`TokenStore::rotates_in_batches`](crate::store::TokenStore::rotates_in_batches)),
    /// or the login flow does not start with the identifying step (then
    /// the flow asks the store itself).
    ///
    /// `detail` is the sign-in's audit detail, as the flow run that takes
    /// the rotation sets it.
    pub fn prepare_cookie_rotation(
        &self,
        visit: &Visit,
        detail: &'static str,
    ) -> Option<(Rotation, OwnedRotation)> {
        let raw = visit.cookie.as_deref()?;
        if !self.stores.tokens.rotates_in_batches()
            || !self.flow(crate::flow::FlowKind::Login).starts_by_rotating()
        {
            return None;
        }
        let mut ctx = self.context(visit);
        ctx.sign_in_detail = detail;
        let rotation = Rotation::prepare(&ctx, raw)?;
        let attempt = OwnedRotation::new(&rotation.attempt(&ctx));
        Some((rotation, attempt))
    }

    /// A token issued by a flow that did not complete (a later step
    /// failed, refused, paused, panicked, or the store failed after the
    /// issuing step) is never handed out, and its row is deleted rather
    /// than left to wait unseen in the store until it expires. A rotation
    /// of the token the client presented is kept: the client must get it.
    /// What is left to send. What the token would have replaced (the
    /// browser's own series, say) was left alone (see
    /// [`StepContext::retire_replaced`]): the browser
    /// keeps its cookie.
    pub(crate) fn withdraw_issued(
        &self,
        visit: &Visit,
        change: Option<CookieChange>,
        user: Option<&UserId>,
    ) -> Option<CookieChange> {
        let issued = match &change {
            Some(set @ CookieChange::Set { cookie, .. })
                if !set.rotates(visit.cookie.as_deref()) =>
            {
                cookie.series.hash()
            }
            _ => return change,
        };
        match self.stores.tokens.delete_series(&issued) {
            Ok(_) => {
                tracing::info!(user_id = ?user, "remember-me token withdrawn: its sign-in did not complete");
                self.stores.audit(visit.event(
                    AuditKind::TokenRevoked,
                    user,
                    "withdrawn: the sign-in did not complete",
                ));
            }
            Err(error) => tracing::warn!(
                %error,
                user_id = ?user,
                "a token of a sign-in that did not complete could not be withdrawn"
            ),
        }
        None
    }

    /// An open session's check: the user as the app's directory has it now
    /// and the epoch the session must still carry, or `None` if it was
    /// revoked. A session signed in by (or issued) a token lives only as
    /// long as that token: revoking the device ends the device's open
    /// session. One query gives the token and the epoch; no token (or
    /// another user's) reads as revoked.
    pub fn check_session(
        &self,
        user: &UserId,
        series: Option<&SecretHash>,
    ) -> Result<Option<(User, i64)>, StoreError> {
        let stores = &self.stores;
        let epoch = match series {
            Some(series) => match stores.tokens.find_by_series_with_epoch(series)? {
                Some((token, epoch)) if token.user_id == *user => epoch,
                _ => return Ok(None),
            },
            None => stores.state.auth_epoch(user)?,
        };
        // The app's user as it is now: gone, or its roles changed.
        Ok(stores.users.find_by_id(user)?.map(|owner| (owner, epoch)))
    }
}

/// Runs `rest` (the flow that a rotation, already run in a batch, starts)
/// with the batch's `outcome` and the owner it read. A batch that failed ends it here: nothing
/// was written. Should `rest` fail or panic, the error comes back with
/// the rotated cookie, if the rotation rotated the token: the client must
/// get it all the same.
pub(crate) fn after_rotation<T>(
    visit: &Visit,
    rotation: Rotation,
    (outcome, owner): (Result<Option<FoundSeries>, StoreError>, Owner),
    rest: impl FnOnce(Prefetched) -> Result<T, StoreError>,
) -> Result<T, (StoreError, Option<CookieChange>)> {
    if let Err(error) = outcome {
        return Err((error, None));
    }
    let prefetched = Prefetched {
        raw: visit.cookie.clone().unwrap_or_default(),
        rotation,
        outcome,
        owner,
    };
    let rotated = prefetched.rotated_cookie(visit.now);
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rest(prefetched)))
        .unwrap_or_else(|_| {
            tracing::error!("a sign-in by cookie or long-lived token panicked after its rotation");
            Err(StoreError::Query("the sign-in panicked".into()))
        })
        .map_err(|error| (error, rotated))
}

/// The session state of a user who just completed a flow.
///
/// The user and the epoch come from the context if a step already read
/// them (see [`StepContext::user`] and [`StepContext::epoch`]); otherwise
/// they are read here.
pub(super) fn new_auth_state(
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
        series,
    }))
}

/// The browser still carries another user's series (one the issuing step
/// did not replace): revoke it, so the previous user's cookie does not
/// outlive this sign-in.
pub(super) fn drop_foreign_series(
    ctx: &mut StepContext<'_>,
    user: &UserId,
) -> Result<(), StoreError> {
    if let Some(series) = ctx.browser_series.take()
        && let Some(record) = ctx.stores.tokens.find_by_series(&series)?
        && record.user_id != *user
    {
        ctx.stores.tokens.delete_series(&series)?;
        ctx.cookie_change.get_or_insert(CookieChange::Remove);
    }
    Ok(())
}
