//! A flow run for an app client (the JSON API): a long-lived token
//! refreshed, a password for tokens, or a bearer's step-up to a long-lived
//! token of its own device.

use std::collections::BTreeSet;

use super::rotations::Owner;
use super::{Core, Visit};
use crate::flow::{
    CookieChange, Credentials, FlowKind, ISSUE, Prefetched, Progress, Rotation, StepContext, Tag,
    browser_series,
};
use crate::store::{FoundSeries, StoreError, UserId};
use crate::token::{RememberCookie, SecretHash};

/// The audit detail of a sign-in by long-lived token.
pub(crate) const API_REFRESH: &str = "api refresh";

/// The inputs of one API flow run.
pub(crate) struct FlowInput {
    pub kind: FlowKind,
    /// The user and tags already established (a bearer's claims).
    pub known: Option<(UserId, BTreeSet<Tag>)>,
    pub activate_issue: bool,
    /// Present the visit's long-lived token to the identifying step.
    pub identify_by_token: bool,
    pub credentials: Option<Credentials>,
    pub device_key: Option<String>,
    /// When the bearer's password was typed.
    pub password_at: Option<i64>,
    /// The long-lived token's rotation, already run in a batch (see
    /// [`Core::prepare_cookie_rotation`]).
    pub prefetched: Option<Prefetched>,
    /// What a bearer's step-up stands on, checked once more where the run
    /// issues and completes (a revocation may land after the bearer's own
    /// check): the epoch its claims carry, and the series it came from.
    pub bearer: Option<(i64, Option<SecretHash>)>,
}

impl FlowInput {
    pub fn new(kind: FlowKind) -> Self {
        Self {
            kind,
            known: None,
            activate_issue: false,
            identify_by_token: false,
            credentials: None,
            device_key: None,
            password_at: None,
            prefetched: None,
            bearer: None,
        }
    }
}

/// What an API flow run gave.
pub(crate) struct Ran {
    pub progress: Progress,
    pub cookie_change: Option<CookieChange>,
    /// The user's epoch, if the flow completed for a user who still exists.
    pub epoch: Option<i64>,
    pub password_at: Option<i64>,
    /// The device the token was for, if the identifying step found one.
    pub device_key: Option<String>,
    /// Whether the rotation's audit row was written with it.
    pub audited: bool,
    /// The device cookie a right password earned, if the flow completed.
    pub device_cookie: Option<String>,
}

/// A flow run that failed after the presented long-lived token rotated
/// (committed): the new token must still reach the client, with the error.
pub(crate) struct FailedAfterRotation {
    pub error: StoreError,
    pub change: CookieChange,
}

impl Core {
    /// Runs an API flow (with a password: on a password thread).
    pub fn run_flow(
        &self,
        visit: &Visit,
        mut input: FlowInput,
    ) -> Result<Result<Ran, FailedAfterRotation>, StoreError> {
        let flow = self.flow(input.kind);
        let mut state = flow.start(input.known.as_ref().map(|(u, t)| (u.clone(), t)));
        if input.activate_issue {
            state.activate(ISSUE);
        }
        let (epoch, bearer) = input.bearer.take().unzip();
        let mut ctx = self.api_context(visit, &mut input);
        // The issuing step keeps no token once the bearer's epoch has
        // moved on, and the new access token carries that epoch.
        ctx.epoch = epoch;
        let started_at = state.position();
        let ran = super::advance(flow, &mut state, &mut ctx).and_then(|progress| {
            let (method, unidentified) = match (input.identify_by_token, input.kind) {
                (true, _) => ("api_refresh", "rejected"),
                (false, FlowKind::Login) => ("api_password", "invalid"),
                (false, FlowKind::StepUp) => ("api_step_up", "refused"),
            };
            let paused_later = state.position() > started_at;
            // Counted as answered: a step-up refused by its bearer's check
            // is no success.
            let progress = self.unless_bearer_revoked(progress, bearer.as_ref())?;
            super::count_flow_end(method, &progress, paused_later, unidentified);
            let epoch = self.completed(&progress, &mut ctx)?;
            Ok((progress, epoch))
        });
        let (progress, epoch) = match ran {
            Ok(ran) => ran,
            // Something failed after the presented token rotated (a custom
            // flow's later step failed or panicked, the store): the new
            // token still goes to the client, with the error. A token
            // issued for a new series is not handed out by a flow that
            // did not complete.
            Err(error) => {
                return match ctx.cookie_change {
                    Some(change) if change.rotates(visit.cookie.as_deref()) => {
                        tracing::warn!(%error, "API flow failed after its token rotated");
                        Ok(Err(FailedAfterRotation { error, change }))
                    }
                    change => {
                        self.withdraw_issued(visit, change, state.user());
                        Err(error)
                    }
                };
            }
        };
        // Only a completed flow hands out a token it issued.
        let cookie_change = match (&progress, epoch) {
            (Progress::Complete { .. }, Some(_)) => ctx.cookie_change,
            _ => self.withdraw_issued(visit, ctx.cookie_change, state.user()),
        };
        Ok(Ok(Ran {
            progress,
            cookie_change,
            epoch,
            password_at: ctx.password_at,
            device_key: ctx.device_key,
            audited: ctx.sign_in_audited,
            device_cookie: epoch.and(ctx.device_cookie),
        }))
    }

    /// The rest of a refresh once its rotation's batch has run
    /// (`outcome`): [`Core::run_flow`] with it, on the store thread the
    /// batch left it to. A batch that failed ends it (nothing was
    /// written); past the rotation, a failure or a panic comes back with
    /// the rotated token.
    pub fn finish_refresh(
        &self,
        visit: &Visit,
        mut input: FlowInput,
        rotation: Rotation,
        (outcome, owner): (Result<Option<FoundSeries>, StoreError>, Owner),
    ) -> Result<Result<Ran, FailedAfterRotation>, StoreError> {
        let ran = super::cookie::after_rotation(visit, rotation, (outcome, owner), |prefetched| {
            input.prefetched = Some(prefetched);
            self.run_flow(visit, input)
        });
        match ran {
            Ok(ran) => Ok(ran),
            Err((error, Some(change))) => Ok(Err(FailedAfterRotation { error, change })),
            Err((error, None)) => Err(error),
        }
    }

    /// The context of an API run: the visit's long-lived token if it
    /// identifies, and what `input` brings.
    fn api_context<'a>(&'a self, visit: &'a Visit, input: &mut FlowInput) -> StepContext<'a> {
        let mut ctx = self.context(visit);
        if input.identify_by_token {
            ctx.remember_cookie = visit.cookie.as_deref();
        }
        ctx.device_key = input.device_key.take();
        let mut credentials = input.credentials.take();
        if let Some(credentials) = &mut credentials {
            ctx.inputs = std::mem::take(&mut credentials.inputs);
            ctx.verified = std::mem::take(&mut credentials.verified);
        }
        ctx.credentials = credentials;
        ctx.password_at = input.password_at;
        ctx.sign_in_detail = API_REFRESH;
        ctx.prefetched = input.prefetched.take();
        ctx
    }

    /// A completed bearer's step-up (`bearer`: the series the bearer came
    /// from, if any) whose series has gone since the bearer was checked,
    /// or whose user the app's directory no longer knows, is refused, and
    /// its new token withdrawn: a revoked device mints nothing. (The run
    /// holds the bearer's epoch, so no step read the user.) Checked after
    /// the issuing step's insert, so a revocation that lands later finds
    /// the new token listed.
    fn unless_bearer_revoked(
        &self,
        progress: Progress,
        bearer: Option<&Option<SecretHash>>,
    ) -> Result<Progress, StoreError> {
        let (Progress::Complete { user, .. }, Some(series)) = (&progress, bearer) else {
            return Ok(progress);
        };
        let series_stands = match series {
            Some(series) => self.token_of(user, series)?.is_some(),
            None => true,
        };
        if series_stands && self.stores.users.find_by_id(user)?.is_some() {
            return Ok(progress);
        }
        tracing::warn!(user_id = %user, "bearer revoked during its step-up: nothing issued");
        Ok(Progress::Refused {
            step: ISSUE,
            missing: Vec::new(),
        })
    }

    /// `user`'s token of `series`, if there is one (another user's is
    /// none).
    fn token_of(
        &self,
        user: &UserId,
        series: &SecretHash,
    ) -> Result<Option<crate::store::TokenRecord>, StoreError> {
        let token = self.stores.tokens.find_by_series(series)?;
        Ok(token.filter(|token| token.user_id == *user))
    }

    /// The epoch of the user a completed flow identified: the step's, if it
    /// read the user (with the token, or with the credentials), else read
    /// now. `None` for a flow that did not complete or a user who is gone;
    /// else what the run's new token replaces goes
    /// ([`StepContext::retire_replaced`](crate::flow::StepContext::retire_replaced)).
    fn completed(
        &self,
        progress: &Progress,
        ctx: &mut StepContext<'_>,
    ) -> Result<Option<i64>, StoreError> {
        let Progress::Complete { user, .. } = progress else {
            return Ok(None);
        };
        let epoch = match ctx.epoch.take() {
            Some(epoch) => Some(epoch),
            None => self
                .stores
                .users
                .find_by_id(user)?
                .map(|_| self.stores.state.auth_epoch(user))
                .transpose()?,
        };
        if epoch.is_some() {
            ctx.retire_replaced()?;
        }
        Ok(epoch)
    }

    /// An app's logout: revokes the long-lived token the visit carries
    /// (`cookie`, named in the request) and, with it, every token of its
    /// device (one token per device: a bearer's step-up may have stored its
    /// successor a moment ago); or, without one, the bearer's device's
    /// tokens. The named token must still prove its series, as a browser's
    /// cookie must at its logout ([`browser_series`]): an old copy revokes
    /// nothing quietly, and one of the bearer's own series is judged as a
    /// fork (one back, the series ends; older, everything of the user). A
    /// named token already gone that is the bearer's own (`bearer`: its
    /// series and device) was replaced by such a step-up between the
    /// bearer's check and now: the bearer's device's tokens go. The number
    /// revoked.
    pub fn api_logout(
        &self,
        visit: &Visit,
        user: &UserId,
        bearer: (Option<&SecretHash>, Option<&str>),
    ) -> Result<usize, StoreError> {
        let (bearer_series, device) = bearer;
        let of_device = |device: Option<&str>| match device {
            Some(device) => self.stores.tokens.delete_device(user, device),
            None => Ok(0),
        };
        let Some(raw) = &visit.cookie else {
            return of_device(device);
        };
        let Ok(named) = RememberCookie::decode(raw) else {
            return Ok(0);
        };
        let named = named.series.hash();
        let Some(token) = self.token_of(user, &named)? else {
            return match bearer_series == Some(&named) {
                true => of_device(device),
                false => Ok(0),
            };
        };
        if browser_series(&mut self.context(visit), raw, bearer_series)?.is_none() {
            return Ok(0);
        }
        match token.device_key.as_deref() {
            Some(device) => of_device(Some(device)),
            None => Ok(usize::from(
                self.stores.tokens.delete_by_id(token.id, Some(user))?,
            )),
        }
    }
}
