//! [`Auth::submit`]: a posted form answers the waiting interactive step of
//! a flow, and the rest of the flow runs.

use std::collections::BTreeSet;

use super::{
    AuthError, AuthState, AuthenticatedUser, FLOW_KEY, SubmitOutcome, client_info,
    drop_foreign_series, raw_cookie,
};
use crate::flow::{
    ClientInfo, CookieChange, Credentials, Failure, Flow, FlowKind, FlowState, Progress,
    StepContext, Tag, verified_series,
};
use crate::middleware::{new_auth_state, start_session};
use crate::session::SignInMethod;
use crate::store::{AuditKind, NewAuditEvent, StoreError, Stores, UserId};
use crate::token::SecretHash;
use crate::{Auth, RememberMeConfig};

/// The session this submit continues, for a step-up: how it was signed
/// in, its series, and when.
type Previous = Option<(SignInMethod, Option<Vec<u8>>, i64)>;

/// What a run of the flow gave: its progress, the flow's state after it,
/// the cookie change, and the new session state if it completed.
type Ran = (Progress, FlowState, Option<CookieChange>, Option<AuthState>);

/// Everything the blocking part of a submit needs.
struct Job {
    stores: Stores,
    config: std::sync::Arc<RememberMeConfig>,
    flow: std::sync::Arc<Flow>,
    kind: FlowKind,
    state: FlowState,
    credentials: Credentials,
    client: ClientInfo,
    browser_cookie: Option<Vec<u8>>,
    device: Option<crate::device::TrustedDevice>,
    previous: Previous,
    now: i64,
}

impl Auth {
    /// Answers the waiting interactive step of the flow `kind` with
    /// credentials and runs the rest of the flow. On completion the session
    /// is signed in (renewed), and a remember-me cookie is issued if the
    /// token step ran. Argon2 and the database run on a blocking thread.
    pub async fn submit(
        &self,
        kind: FlowKind,
        credentials: Credentials,
    ) -> Result<SubmitOutcome, AuthError> {
        let shared = &self.auth.shared;
        if let Some(limiter) = &shared.ip_limiter
            && let Some(retry_after_secs) =
                crate::limits::ip_throttled(limiter, &shared.config, &self.req)
        {
            tracing::info!(
                retry_after_secs,
                "sign-in throttled for this client address"
            );
            return Ok(SubmitOutcome::Throttled { retry_after_secs });
        }
        let state = self.continued_state(kind)?;
        let started_at = state.position();
        let config = shared.config.clone();
        let job = Job {
            stores: shared.stores.clone(),
            flow: shared.flow(kind),
            kind,
            state,
            credentials,
            client: client_info(&self.req, &config),
            browser_cookie: raw_cookie(&self.req, &config.cookie_name()),
            device: crate::middleware::trusted_device(&self.req, &config),
            previous: self
                .auth
                .state
                .borrow()
                .as_ref()
                .map(|s| (s.method, s.series.clone(), s.signed_in_at)),
            now: config.now(),
            config,
        };
        let now = job.now;
        // Wait here, in async land, for a password-check permit: a storm of
        // sign-ins queues without holding blocking threads or Argon2 memory.
        let _permit = shared
            .password_checks
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| AuthError::Internal(e.to_string()))?;
        let (progress, state, change, new_state) = shared
            .run_with_argon2(move || run(job))
            .await
            .map_err(|e| AuthError::Internal(e.to_string()))??;
        if let Some(change) = change {
            *self.auth.cookie_change.borrow_mut() = Some(change);
        }
        let paused_later = state.position() > started_at;
        self.outcome(progress, &state, new_state, paused_later, now)
    }

    /// The flow state this submit continues: the session's, if it is of
    /// this kind (and, for a step-up, of the user signed in now and without
    /// a password already claimed), else a fresh one.
    fn continued_state(&self, kind: FlowKind) -> Result<FlowState, AuthError> {
        let stored: Option<FlowState> = self.session.get(FLOW_KEY).ok().flatten();
        let state = match stored {
            // A step-up never continues from a state that claims the
            // password already: it must check one now.
            Some(state)
                if state.kind() == kind
                    && !(kind == FlowKind::StepUp
                        && state.tags().contains(&Tag::PASSWORD_VERIFIED)) =>
            {
                state
            }
            _ => return self.start_state(kind),
        };
        // A step-up is for the user signed in now, never another.
        if kind == FlowKind::StepUp && state.user() != self.user().map(|u| u.id).as_ref() {
            return self.start_state(kind);
        }
        // A flow paused after its password (at a step of the app's own, a
        // second factor) waits only as long as the re-auth window: later,
        // the password starts again.
        let config = &self.auth.shared.config;
        if state
            .password_at()
            .is_some_and(|at| !config.password_is_recent(Some(at), config.now()))
        {
            return self.start_state(kind);
        }
        Ok(state)
    }

    /// The answer to a run of the flow, with the session updated.
    fn outcome(
        &self,
        progress: Progress,
        state: &FlowState,
        new_state: Option<AuthState>,
        paused_later: bool,
        now: i64,
    ) -> Result<SubmitOutcome, AuthError> {
        match progress {
            Progress::Complete { .. } => {
                let new_state = new_state.ok_or(AuthError::Forbidden)?;
                if new_state.password_at.is_some() {
                    // This client typed the right password: from now on its
                    // failures spend a budget of their own (see `device`).
                    let config = &self.auth.shared.config;
                    *self.auth.device_cookie.borrow_mut() =
                        Some(config.device_cookies.issue(&new_state.user_id, now));
                }
                start_session(&self.session, &new_state);
                let user = AuthenticatedUser::from(&new_state);
                *self.auth.state.borrow_mut() = Some(new_state);
                Ok(SubmitOutcome::SignedIn(user))
            }
            Progress::NeedsInput { step } if !step.is_empty() && paused_later => {
                // A later interactive step waits: keep the flow there.
                let _ = self.session.insert(FLOW_KEY, state);
                Ok(SubmitOutcome::NeedsInput { step })
            }
            Progress::Failed {
                failure: Failure::InvalidCredentials,
                ..
            }
            | Progress::NeedsInput { .. } => {
                // Keep the flow where it stands, so the form can be answered again.
                let _ = self.session.insert(FLOW_KEY, state);
                Ok(SubmitOutcome::InvalidCredentials)
            }
            Progress::Failed {
                failure: Failure::Throttled { retry_after_secs },
                ..
            } => {
                let _ = self.session.insert(FLOW_KEY, state);
                Ok(SubmitOutcome::Throttled { retry_after_secs })
            }
            Progress::Failed { .. } => Ok(SubmitOutcome::InvalidCredentials),
            Progress::Refused { step, missing } => {
                tracing::warn!(step, ?missing, "flow refused: precondition not met");
                self.session.remove(FLOW_KEY);
                Ok(SubmitOutcome::Refused)
            }
        }
    }
}

/// The blocking part of a submit: the flow's steps (Argon2 and the store),
/// and on completion the new session state and the sign-in's audit row.
fn run(job: Job) -> Result<Ran, StoreError> {
    let Job {
        stores,
        config,
        flow,
        kind,
        mut state,
        mut credentials,
        client,
        browser_cookie,
        device,
        previous,
        now,
    } = job;
    let mut ctx = StepContext::new(&stores, &config, now, &client);
    ctx.browser_series = match &browser_cookie {
        Some(raw) => verified_series(&stores, &config, now, raw)?,
        None => None,
    };
    ctx.inputs = std::mem::take(&mut credentials.inputs);
    ctx.credentials = Some(credentials);
    ctx.device = device;
    let progress = flow.advance(&mut state, &mut ctx)?;
    let new_state = match &progress {
        Progress::Complete { user, tags } => {
            let new_state = completed(&mut ctx, kind, previous, user, tags.clone())?;
            stores.audit(NewAuditEvent {
                at: now,
                kind: match kind {
                    FlowKind::Login => AuditKind::PasswordSignIn,
                    FlowKind::StepUp => AuditKind::StepUp,
                },
                user_id: Some(user),
                ip: client.ip.as_deref(),
                user_agent: client.user_agent.as_deref(),
                detail: "",
            });
            new_state
        }
        _ => None,
    };
    Ok((progress, state, ctx.cookie_change, new_state))
}

/// The session state of a completed flow. A step-up keeps the session's
/// method, series and start; a sign-in is a new session, bound to the
/// token it was issued, if any.
fn completed(
    ctx: &mut StepContext<'_>,
    kind: FlowKind,
    previous: Previous,
    user: &UserId,
    tags: BTreeSet<Tag>,
) -> Result<Option<AuthState>, StoreError> {
    drop_foreign_series(ctx, user)?;
    let (method, series, signed_in_at) = match (kind, previous) {
        (FlowKind::StepUp, Some((method, series, signed_in_at))) => (
            method,
            series.as_deref().and_then(SecretHash::from_slice),
            Some(signed_in_at),
        ),
        _ => (SignInMethod::Password, None, None),
    };
    let series = match &ctx.cookie_change {
        Some(CookieChange::Set { cookie, .. }) => Some(cookie.series.hash()),
        _ => series,
    };
    let password_at = ctx.password_at;
    Ok(
        new_auth_state(ctx, user, tags, method, series)?.map(|state| AuthState {
            password_at,
            // A step-up confirms the session; it never restarts its
            // absolute lifetime.
            signed_in_at: signed_in_at.unwrap_or(state.signed_in_at),
            ..state
        }),
    )
}
