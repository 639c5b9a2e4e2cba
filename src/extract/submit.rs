//! [`Auth::submit`]: a posted form answers the waiting interactive step of
//! a flow, and the rest of the flow runs.

use super::{AuthError, AuthState, AuthenticatedUser, FLOW_KEY, SubmitOutcome};
use crate::Auth;
use crate::flow::{Credentials, Failure, FlowKind, FlowState, Progress, Tag};
use crate::kernel::{Previous, Submit, Submitted};
use crate::middleware::start_session;

impl Auth {
    /// Answers the waiting interactive step of the flow `kind` with
    /// credentials and runs the rest of the flow. On completion the session
    /// is signed in (renewed), and a remember-me cookie is issued if the
    /// token step ran; a token issued by a run that does not complete (a
    /// later step fails, refuses or waits for input) is withdrawn, never
    /// sent. Argon2 and the database run on a blocking thread.
    pub async fn submit(
        &self,
        kind: FlowKind,
        credentials: Credentials,
    ) -> Result<SubmitOutcome, AuthError> {
        self.submit_flow(kind.name(), credentials).await
    }

    /// [`Auth::submit`] for the flow named `name` (see
    /// [`Auth::begin_flow`]): the state kept in the session continues only
    /// in the flow it was started in.
    pub async fn submit_flow(
        &self,
        name: &str,
        credentials: Credentials,
    ) -> Result<SubmitOutcome, AuthError> {
        let kind = self.flow_kind(name)?;
        let shared = &self.auth.shared;
        if let Some(limiter) = &shared.ip_limiter
            && let Some(retry_after_secs) =
                crate::limits::ip_throttled(limiter, shared.config(), &self.req)
        {
            tracing::info!(
                retry_after_secs,
                "sign-in throttled for this client address"
            );
            return Ok(SubmitOutcome::Throttled { retry_after_secs });
        }
        let state = self.continued_state(name, kind)?;
        // A password posted to a state whose password was verified already
        // may be the user beginning again (back at the password form while
        // a second factor waits): the flow starts afresh unless the post
        // answers the waiting step (`Core::submit` asks the step).
        let restart = !credentials.password.is_empty() && state.password_at().is_some();
        let fresh = self.start_state(name)?;
        let mut visit = self.visit();
        visit.device = crate::middleware::trusted_device(&self.req, shared.config());
        let submit = Submit {
            flow: name.to_owned(),
            state,
            fresh,
            restart,
            credentials,
            previous: self.auth.state.borrow().as_ref().map(Previous::of),
        };
        // A password-check permit first (waited for in async land), then
        // Argon2 and the store on a password thread.
        let Submitted {
            progress,
            state,
            paused_later,
            device_cookie,
            change,
            new_state,
        } = shared
            .password(move |core| core.submit(&visit, submit))
            .await?;
        if let Some(change) = change {
            *self.auth.cookie_change.borrow_mut() = Some(change);
        }
        self.outcome(progress, &state, new_state, paused_later, device_cookie)
    }

    /// The flow state this submit continues: the session's, if it is of
    /// this kind (and, for a step-up, of the user signed in now), else a
    /// fresh one.
    fn continued_state(&self, name: &str, kind: FlowKind) -> Result<FlowState, AuthError> {
        let stored: Option<FlowState> = self.session.get(FLOW_KEY).ok().flatten();
        let state = match stored {
            Some(state) if state.flow_name() == name => state,
            _ => return self.start_state(name),
        };
        // A step-up checks a password now: it continues only from a state
        // whose password this flow verified (paused after it, at a step of
        // the app's own), never from one that claims it otherwise.
        if kind == FlowKind::StepUp
            && state.tags().contains(&Tag::PASSWORD_VERIFIED)
            && state.password_at().is_none()
        {
            return self.start_state(name);
        }
        // A state the flow would refuse (stopped at a step that no longer
        // stands at its position: the flow's steps moved, or the state is
        // older than states that name their step) starts afresh; resumed,
        // every submit would be refused until the session ends.
        if !self.flow_named(name)?.may_advance(&state) {
            return self.start_state(name);
        }
        // A step-up is for the user signed in now, never another.
        if kind == FlowKind::StepUp && state.user() != self.user().map(|u| u.id).as_ref() {
            return self.start_state(name);
        }
        // A flow paused after its password (at a step of the app's own, a
        // second factor) waits only as long as the re-auth window: later,
        // the password starts again.
        let config = &self.auth.shared.config();
        if state
            .password_at()
            .is_some_and(|at| !config.password_is_recent(Some(at), config.now()))
        {
            return self.start_state(name);
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
        device_cookie: Option<String>,
    ) -> Result<SubmitOutcome, AuthError> {
        match progress {
            Progress::Complete { .. } => {
                let new_state = new_state.ok_or(AuthError::Forbidden)?;
                if device_cookie.is_some() {
                    // This client typed the right password: from now on its
                    // failures spend a budget of their own (see `device`).
                    *self.auth.device_cookie.borrow_mut() = device_cookie;
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
