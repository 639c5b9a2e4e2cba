//! [`Flow`]: steps in order, run by the rules of tags, skips,
//! preconditions and activation.

use super::*;

/// What a flow does once complete: sign a session in anew, or confirm the
/// user already signed in. Each layer has one flow of each kind under the
/// kind's own name ([`FlowKind::name`]): the login flow, which the
/// middleware also runs with a remember-me cookie, and the step-up flow,
/// where strong pages send a session signed in by cookie. The app may add
/// flows of its own names of either kind
/// ([`RememberMe::with_flow`](crate::RememberMe::with_flow)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FlowKind {
    /// Sign in: identify by cookie, else password, then maybe issue a token.
    Login,
    /// Confirm the password of a user already known by a weaker step.
    StepUp,
}

impl FlowKind {
    /// The name of the layer's own flow of this kind: `login`, `step_up`.
    pub const fn name(self) -> &'static str {
        match self {
            FlowKind::Login => "login",
            FlowKind::StepUp => "step_up",
        }
    }
}

/// An ordered list of steps, with a kind and a name.
pub struct Flow {
    kind: FlowKind,
    name: &'static str,
    pub(super) steps: Vec<StepDef>,
}

impl fmt::Debug for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Flow")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field(
                "steps",
                &self.steps.iter().map(|s| s.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Flow {
    /// An empty flow of this kind, named after it ([`FlowKind::name`]).
    pub fn new(kind: FlowKind) -> Self {
        Self {
            kind,
            name: kind.name(),
            steps: Vec::new(),
        }
    }

    /// This flow under a name of the app's own (`"admin_login"`), run with
    /// [`Auth::begin_flow`](crate::Auth::begin_flow) and
    /// [`Auth::submit_flow`](crate::Auth::submit_flow) beside the layer's
    /// own flows.
    ///
    /// # Panics
    ///
    /// If `name` is empty, longer than 64 bytes, or holds anything but
    /// `a`–`z`, `0`–`9` and `_`.
    #[must_use]
    pub fn named(mut self, name: &'static str) -> Self {
        assert!(
            !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "a flow name is 1 to 64 of a-z, 0-9, _"
        );
        self.name = name;
        self
    }

    /// Adds a step: last, or, if the flow already has the token issuing
    /// step ([`RememberMeIssueStep`] itself, or a step of the app's marked
    /// with [`StepDef::issues_token`], such as one that wraps it), just
    /// before it. A remember-me token is thus issued only
    /// once every step of the app's has passed (or been skipped):
    /// `Flow::login().step(totp)` checks the one-time code before the
    /// token, as a second factor must (after it, a right password would
    /// have earned the token, and its cookie, with the code still
    /// unchecked).
    #[must_use]
    pub fn step(mut self, def: StepDef) -> Self {
        match self.steps.iter().position(|s| s.issues_token) {
            Some(issue) if !def.issues_token => self.steps.insert(issue, def),
            _ => self.steps.push(def),
        }
        self
    }

    /// The default login flow:
    ///
    /// 1. remember-me identifying step, adds `WEAK_AUTHENTICATION`;
    /// 2. password step, skipped when `WEAK_AUTHENTICATION` is present, adds
    ///    `WEAK_AUTHENTICATION` and `PASSWORD_VERIFIED`, activates step 3 when
    ///    "Keep me logged in" was ticked;
    /// 3. token generating step, only when activated, precondition
    ///    `PASSWORD_VERIFIED`.
    pub fn login() -> Self {
        Self::new(FlowKind::Login)
            .step(
                StepDef::new(IDENTIFY, RememberMeIdentifyStep)
                    .tags_on_success([Tag::WEAK_AUTHENTICATION]),
            )
            .step(
                StepDef::new(PASSWORD, PasswordStep::new().activate_on_remember(ISSUE))
                    .skip_if(Condition::has(Tag::WEAK_AUTHENTICATION))
                    .tags_on_success([Tag::WEAK_AUTHENTICATION, Tag::PASSWORD_VERIFIED]),
            )
            .step(issue_step())
    }

    /// The step-up flow: the password step for a user already known, skipped
    /// only when the flow starts with `PASSWORD_VERIFIED` (an API caller
    /// whose access token proves a recent password), and the same token
    /// generating step with the same precondition. The browser's step-up
    /// starts it without that tag, so its password is always checked.
    pub fn step_up() -> Self {
        Self::new(FlowKind::StepUp)
            .step(
                StepDef::new(PASSWORD, PasswordStep::new().activate_on_remember(ISSUE))
                    .skip_if(Condition::has(Tag::PASSWORD_VERIFIED))
                    .tags_on_success([Tag::WEAK_AUTHENTICATION, Tag::PASSWORD_VERIFIED]),
            )
            .step(issue_step())
    }

    /// This flow's kind.
    pub fn kind(&self) -> FlowKind {
        self.kind
    }

    /// This flow's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// A new state for this flow; `known` is the user (and tags) already
    /// established, as in a step-up.
    pub fn start(&self, known: Option<(UserId, &BTreeSet<Tag>)>) -> FlowState {
        let (user, tags) = match known {
            Some((user, tags)) => (Some(user), tags.clone()),
            None => (None, BTreeSet::new()),
        };
        FlowState {
            kind: self.kind,
            flow: (self.name != self.kind.name()).then(|| self.name.to_owned()),
            position: 0,
            waiting: None,
            user,
            tags,
            activated: BTreeSet::new(),
            password_at: None,
            epoch: None,
            device_cookie: None,
        }
    }

    /// Whether a run from the start ([`Flow::start`] with nobody known)
    /// runs [`RememberMeIdentifyStep`] before any other step: the layer
    /// then has the cookie's token rotated before the run, in a batch that
    /// no thread waits for, and the step concludes from that outcome.
    /// Follows [`Flow::advance`]'s rules for an empty state.
    pub(crate) fn starts_by_rotating(&self) -> bool {
        let none = BTreeSet::new();
        self.steps
            .iter()
            .find(|def| {
                !def.needs_activation && !def.skip_if.as_ref().is_some_and(|c| c.is_met(&none))
            })
            .is_some_and(|def| def.identifies_by_cookie && def.precondition.is_met(&none))
    }

    /// Whether `state` is this flow's, and, if stopped part-way, stopped
    /// at the step that still stands at its position (by position alone,
    /// a state of a flow whose steps moved would resume past a step).
    /// [`Flow::advance`] refuses a state that is not; the adapters start
    /// such a state afresh instead of resuming it.
    pub(crate) fn may_advance(&self, state: &FlowState) -> bool {
        state.kind == self.kind
            && state.flow_name() == self.name
            && (state.position == 0
                || self.steps.get(state.position).map(|d| d.id) == state.waiting.as_deref())
    }

    /// Whether the run `ctx` carries answers the interactive step `state`
    /// waits at: the step says it has its input
    /// ([`Step::has_input`](super::Step::has_input)). `false` for a state
    /// that waits at no interactive step.
    pub(crate) fn answers_waiting_step(&self, state: &FlowState, ctx: &StepContext<'_>) -> bool {
        self.may_advance(state)
            && state.position > 0
            && self
                .steps
                .get(state.position)
                .is_some_and(|def| def.step.is_interactive() && def.step.has_input(ctx))
    }

    /// Runs steps from where `state` stands until the flow completes, fails,
    /// is refused, or an interactive step has no input. Blocking.
    pub fn advance(
        &self,
        state: &mut FlowState,
        ctx: &mut StepContext<'_>,
    ) -> Result<Progress, StoreError> {
        if !self.may_advance(state) {
            return Ok(Progress::Failed {
                step: "",
                failure: Failure::UserMismatch,
            });
        }
        let progress = self.run_steps(state, ctx)?;
        // The step it stopped at, if any, for the run that resumes it.
        state.waiting = self.steps.get(state.position).map(|d| d.id.to_owned());
        Ok(progress)
    }

    /// [`Flow::advance`]'s steps, from where `state` stands.
    fn run_steps(
        &self,
        state: &mut FlowState,
        ctx: &mut StepContext<'_>,
    ) -> Result<Progress, StoreError> {
        // A password verified by an earlier request of this flow still
        // counts (the issuing step checks how recent it is).
        if ctx.password_at.is_none() {
            ctx.password_at = state.password_at;
        }
        while let Some(def) = self.steps.get(state.position) {
            if def.needs_activation && !state.activated.contains(def.id) {
                state.position += 1;
                continue;
            }
            if def.skip_if.as_ref().is_some_and(|c| c.is_met(&state.tags)) {
                state.position += 1;
                continue;
            }
            if !def.precondition.is_met(&state.tags) {
                return Ok(Progress::Refused {
                    step: def.id,
                    missing: def.precondition.missing(&state.tags),
                });
            }
            if def.step.is_interactive() && !def.step.has_input(ctx) {
                warn_if_issued_before(self.name, def.id, ctx);
                return Ok(Progress::NeedsInput { step: def.id });
            }
            match def.step.run(ctx, state.user.as_ref())? {
                StepOutcome::Success { user, activate } => {
                    if state.user.as_ref().is_some_and(|known| *known != user) {
                        return Ok(Progress::Failed {
                            step: def.id,
                            failure: Failure::UserMismatch,
                        });
                    }
                    state.user = Some(user);
                    state.password_at = ctx.password_at;
                    state.tags.extend(def.tags_on_success.iter().cloned());
                    state
                        .activated
                        .extend(activate.iter().map(|s| s.to_string()));
                }
                StepOutcome::NotApplicable => {}
                StepOutcome::Failed(failure) => {
                    return Ok(Progress::Failed {
                        step: def.id,
                        failure,
                    });
                }
            }
            state.position += 1;
        }
        Ok(match &state.user {
            Some(user) => Progress::Complete {
                user: user.clone(),
                tags: state.tags.clone(),
            },
            // Every step passed over and nobody identified: nobody signs in.
            None => Progress::NeedsInput { step: "" },
        })
    }
}

/// A flow that pauses after issuing a token (a token step of the app's
/// own put before an interactive step) has its token withdrawn: only a
/// completed run hands one out, and the run that completes the flow later
/// does not issue again. "Keep me logged in" then gives nothing, which the
/// app's developer must hear about.
fn warn_if_issued_before(flow: &str, step: StepId, ctx: &StepContext<'_>) {
    if let Some(change @ CookieChange::Set { .. }) = &ctx.cookie_change
        && !change.rotates(ctx.remember_cookie)
    {
        tracing::warn!(
            flow,
            step,
            "a remember-me token was issued before this interactive step: it is withdrawn, and \
             the sign-in will complete without one; issue tokens after every interactive step"
        );
    }
}

fn issue_step() -> StepDef {
    StepDef::new(ISSUE, RememberMeIssueStep)
        .only_when_activated()
        // Only a typed password may mint a remember-me token: a stolen cookie
        // must never be able to extend itself into a new chain.
        .precondition(Condition::has(Tag::PASSWORD_VERIFIED))
}
