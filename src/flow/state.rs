//! [`FlowState`]: where a run of a flow stands, kept in the session while
//! an interactive step waits; and [`Progress`], what a run came to.

use super::*;

/// Where a flow stands; kept in the session while an interactive step waits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowState {
    pub(super) kind: FlowKind,
    /// The flow's name, if not its kind's (kept out of the session cookie
    /// for the layer's own flows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) flow: Option<String>,
    pub(super) position: usize,
    /// The step the state stopped at, by id: a state resumes only where
    /// that step still stands (a flow whose steps changed since, or a state
    /// older than this field, starts afresh; by position alone it would
    /// resume past a step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) waiting: Option<String>,
    pub(super) user: Option<UserId>,
    pub(super) tags: BTreeSet<Tag>,
    pub(super) activated: BTreeSet<String>,
    /// When a step of this flow verified a password: kept with the state, so
    /// a step after a pause (a second factor answered on the next request)
    /// still sees it.
    #[serde(default)]
    pub(super) password_at: Option<i64>,
    /// The user's auth epoch when the flow paused after identifying them:
    /// the state resumes only while it is still the user's (a password
    /// change voids a sign-in paused after the old password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) epoch: Option<i64>,
    /// The device cookie a right password of this flow earned, handed out
    /// when the flow completes (the session is encrypted: it stays secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) device_cookie: Option<HeldCookie>,
}

/// A device cookie kept with a flow state: never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(super) struct HeldCookie(String);

impl fmt::Debug for HeldCookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl FlowState {
    /// The flow this state belongs to.
    pub fn kind(&self) -> FlowKind {
        self.kind
    }

    /// The name of the flow this state belongs to.
    pub fn flow_name(&self) -> &str {
        self.flow.as_deref().unwrap_or(self.kind.name())
    }

    /// The user identified so far.
    pub fn user(&self) -> Option<&UserId> {
        self.user.as_ref()
    }

    /// How many steps of the flow are behind this state.
    pub(crate) fn position(&self) -> usize {
        self.position
    }

    /// When a step of this flow verified a password, if one did.
    pub(crate) fn password_at(&self) -> Option<i64> {
        self.password_at
    }

    /// The user's auth epoch the state paused under, if recorded.
    pub(crate) fn epoch(&self) -> Option<i64> {
        self.epoch
    }

    /// The device cookie an earlier run of this flow earned, taken.
    pub(crate) fn take_device_cookie(&mut self) -> Option<String> {
        self.device_cookie.take().map(|held| held.0)
    }

    /// Keeps the device cookie this run earned (or carried) until the flow
    /// completes.
    pub(crate) fn keep_device_cookie(&mut self, cookie: Option<String>) {
        self.device_cookie = cookie.map(HeldCookie);
    }

    /// Records the user's auth epoch as the state pauses.
    pub(crate) fn paused_under(&mut self, epoch: i64) {
        self.epoch.get_or_insert(epoch);
    }

    /// Tags collected so far.
    pub fn tags(&self) -> &BTreeSet<Tag> {
        &self.tags
    }

    /// Activates a step because the caller asked for it (an app asking for a
    /// long-lived token). The step's precondition still decides whether it runs.
    pub fn activate(&mut self, step: StepId) {
        self.activated.insert(step.to_owned());
    }
}

/// The result of [`Flow::advance`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Every step is done or skipped and a user is identified.
    Complete {
        /// Who signed in.
        user: UserId,
        /// The tags the session carries.
        tags: BTreeSet<Tag>,
    },
    /// An interactive step waits for input (an empty id: nothing identified
    /// the user and no step is left).
    NeedsInput {
        /// The waiting step.
        step: StepId,
    },
    /// A step refused.
    Failed {
        /// The refusing step.
        step: StepId,
        /// Why.
        failure: Failure,
    },
    /// A step's precondition did not hold.
    Refused {
        /// The step that was reached.
        step: StepId,
        /// The tags it lacked.
        missing: Vec<Tag>,
    },
}
