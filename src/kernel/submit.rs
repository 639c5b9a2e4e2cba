//! A submitted interactive step (a password, an app's one-time code): the
//! rest of the flow runs, and on completion the session state is built and
//! the sign-in (or step-up) audited.

use std::collections::BTreeSet;

use super::cookie::{drop_foreign_series, new_auth_state};
use super::{Core, Visit};
use crate::flow::{
    CookieChange, Credentials, FlowKind, FlowState, Progress, StepContext, Tag, browser_series,
};
use crate::session::{AuthState, SignInMethod};
use crate::store::{AuditKind, StoreError, UserId};
use crate::token::SecretHash;

/// The session this submit continues, for a step-up: how it was signed
/// in, its series, when, and under which epoch.
pub(crate) struct Previous {
    pub method: SignInMethod,
    pub series: Option<SecretHash>,
    pub signed_in_at: i64,
    pub epoch: i64,
}

impl Previous {
    /// What a submit needs of the session's state.
    pub(crate) fn of(state: &AuthState) -> Self {
        Self {
            method: state.method,
            series: state.series.clone(),
            signed_in_at: state.signed_in_at,
            epoch: state.epoch,
        }
    }
}

/// A submit: the flow (by name), where it stands, and what was posted.
pub(crate) struct Submit {
    pub flow: String,
    pub state: FlowState,
    /// The state a new start of the flow has: run instead of `state` when
    /// `state` is void (paused under an epoch that has moved on), or when
    /// `restart` and the post begins again (see `began_again`).
    pub fresh: FlowState,
    /// A password was posted to a state whose password was verified (the
    /// user began again while a second factor waited?).
    pub restart: bool,
    pub credentials: Credentials,
    pub previous: Option<Previous>,
}

/// What a submit gave: the flow's progress and its state after the run,
/// whether it stopped past where it started, the cookie change, and the
/// new session state if it completed.
pub(crate) struct Submitted {
    pub progress: Progress,
    pub state: FlowState,
    pub paused_later: bool,
    /// The device cookie the run's right password earned, if it completed.
    pub device_cookie: Option<String>,
    pub change: Option<CookieChange>,
    pub new_state: Option<AuthState>,
}

impl Core {
    /// Runs the flow with the posted input (Argon2 and the store: call it
    /// on a password thread). The visit's cookie, if it still proves its
    /// token, is the series an issued token replaces.
    pub fn submit(&self, visit: &Visit, submit: Submit) -> Result<Submitted, StoreError> {
        let Submit {
            flow,
            mut state,
            fresh,
            restart,
            credentials,
            previous,
        } = submit;
        let flow = self
            .flow_named(&flow)
            .ok_or(StoreError::Unsupported("a flow of that name"))?;
        let kind = flow.kind();
        let mut ctx = self.submit_context(visit, credentials, previous.as_ref())?;
        if (restart && began_again(flow, &state, &ctx)) || self.is_void(&state)? {
            state = fresh;
        }
        // What an earlier request of this flow earned: its device cookie,
        // and the epoch its password was checked under (checked above).
        ctx.device_cookie = state.take_device_cookie();
        ctx.epoch = state.epoch();
        let started_at = state.position();
        let method = match kind {
            FlowKind::Login => "password",
            FlowKind::StepUp => "step_up",
        };
        let mut paused_later = false;
        let ran = super::advance(flow, &mut state, &mut ctx).and_then(|progress| {
            paused_later = state.position() > started_at;
            super::count_flow_end(method, &progress, paused_later, "invalid");
            let Progress::Complete { user, tags } = &progress else {
                return Ok((progress, None));
            };
            let new_state = completed(&mut ctx, kind, previous, user, tags.clone())?;
            if new_state.is_some() {
                ctx.retire_replaced()?;
                self.audit_completed(visit, flow, user);
            }
            Ok((progress, new_state))
        });
        let change = ctx.cookie_change.take();
        let (progress, new_state) = match ran {
            Ok(ran) => ran,
            Err(error) => {
                self.withdraw_issued(visit, change, state.user());
                return Err(error);
            }
        };
        let change = match new_state {
            Some(_) => change,
            None => self.withdraw_issued(visit, change, state.user()),
        };
        let device_cookie = self.hold(&mut state, &mut ctx, new_state.is_some())?;
        Ok(Submitted {
            progress,
            state,
            paused_later,
            device_cookie,
            change,
            new_state,
        })
    }
}

impl Core {
    /// The audit row of a completed sign-in or step-up; the app's own
    /// flows are named in it.
    fn audit_completed(&self, visit: &Visit, flow: &crate::flow::Flow, user: &UserId) {
        let kind = flow.kind();
        let audit = match kind {
            FlowKind::Login => AuditKind::PasswordSignIn,
            FlowKind::StepUp => AuditKind::StepUp,
        };
        let detail = Some(flow.name()).filter(|name| *name != kind.name());
        let event = visit.event(audit, Some(user), detail.unwrap_or_default());
        self.stores.audit(event);
    }

    /// The context of a submit's run: the posted input, and the browser's
    /// series if its cookie still proves its token. A cookie of the
    /// session's own series (`previous`'s) that no longer does shows a fork,
    /// judged before a new sign-in replaces the cookie (see
    /// `browser_series`).
    fn submit_context<'a>(
        &'a self,
        visit: &'a Visit,
        mut credentials: Credentials,
        previous: Option<&Previous>,
    ) -> Result<StepContext<'a>, StoreError> {
        let mut ctx = self.context(visit);
        // A series it ends leaves `Remove` for the cookie, unless the run
        // issues a new one.
        let own = previous.and_then(|p| p.series.as_ref());
        ctx.browser_series = match &visit.cookie {
            Some(raw) => browser_series(&mut ctx, raw, own)?,
            None => None,
        };
        ctx.inputs = std::mem::take(&mut credentials.inputs);
        ctx.verified = std::mem::take(&mut credentials.verified);
        ctx.credentials = Some(credentials);
        Ok(ctx)
    }

    /// What the state keeps after a run: a state that did not complete
    /// with its user known records the user's epoch (the one read before
    /// the password was checked, if it was), whether it pauses or failed at
    /// a later step (a wrong code posted with a right password), since
    /// either is kept in the session to be answered again; the device
    /// cookie the flow's right password earned is handed out if the flow
    /// `completed`, and until then kept with the state in the session.
    fn hold(
        &self,
        state: &mut FlowState,
        ctx: &mut StepContext<'_>,
        completed: bool,
    ) -> Result<Option<String>, StoreError> {
        if let (false, Some(user)) = (completed, state.user()) {
            let epoch = match ctx.epoch {
                Some(epoch) => epoch,
                None => self.stores.state.auth_epoch(user)?,
            };
            state.paused_under(epoch);
        }
        if completed {
            return Ok(ctx.device_cookie.take());
        }
        state.keep_device_cookie(ctx.device_cookie.take());
        Ok(None)
    }

    /// Whether a state paused under an epoch that has since moved on (a
    /// password change, "sign out everywhere", a theft): what it verified
    /// (the old password, say) no longer counts, so it starts afresh. So
    /// does a state with a verified password and no epoch to hold it to
    /// (kept by an earlier version).
    fn is_void(&self, state: &FlowState) -> Result<bool, StoreError> {
        Ok(match (state.user(), state.epoch()) {
            (Some(user), Some(epoch)) => self.stores.state.auth_epoch(user)? != epoch,
            (Some(_), None) => state.password_at().is_some(),
            (None, _) => false,
        })
    }
}

/// Whether a password posted to a state whose password was verified begins
/// the flow again: it comes with a username (the sign-in form, not a later
/// step's), or the step the state waits at does not take it as its input
/// ([`Step::has_input`](crate::flow::Step::has_input)).
fn began_again(flow: &crate::flow::Flow, state: &FlowState, ctx: &StepContext<'_>) -> bool {
    let from_sign_in_form = ctx
        .credentials
        .as_ref()
        .is_some_and(|c| !c.username.is_empty());
    from_sign_in_form || !flow.answers_waiting_step(state, ctx)
}

/// The session state of a completed flow. A step-up keeps the session's
/// method, series and start; a sign-in is a new session, bound to the
/// token it was issued, if any.
fn completed(
    ctx: &mut StepContext<'_>,
    kind: FlowKind,
    previous: Option<Previous>,
    user: &UserId,
    tags: BTreeSet<Tag>,
) -> Result<Option<AuthState>, StoreError> {
    drop_foreign_series(ctx, user)?;
    let (method, series, signed_in_at, epoch) = match (kind, previous) {
        (FlowKind::StepUp, Some(p)) => (p.method, p.series, Some(p.signed_in_at), Some(p.epoch)),
        _ => (SignInMethod::Password, None, None, None),
    };
    let series = match &ctx.cookie_change {
        Some(CookieChange::Set { cookie, .. }) => Some(cookie.series.hash()),
        _ => series,
    };
    let password_at = ctx.password_at;
    Ok(new_auth_state(ctx, user, tags, method, series)?
        // A step-up confirms the session it continues, under that
        // session's epoch only: a session revoked meanwhile (its epoch
        // moved on, not yet checked) must not adopt the new one.
        .filter(|state| epoch.is_none_or(|epoch| epoch == state.epoch))
        .map(|state| AuthState {
            password_at,
            // A step-up confirms the session; it never restarts its
            // absolute lifetime.
            signed_in_at: signed_in_at.unwrap_or(state.signed_in_at),
            ..state
        }))
}
