//! The step engine: a login is a [`Flow`] of steps with tags, skip conditions,
//! preconditions and activation. It knows nothing of HTTP; the middleware and
//! the [`Auth`](crate::Auth) extractor drive it.
//!
//! A flow runs its steps in order. For each step:
//!
//! 1. a step that needs activation and was not activated by an earlier step is
//!    passed over;
//! 2. a step whose skip condition holds is skipped;
//! 3. a step whose precondition does not hold **refuses the whole flow** (a
//!    token-issuing step without `PASSWORD_VERIFIED` must never quietly pass);
//! 4. an interactive step without its input pauses the flow: the
//!    [`FlowState`] is kept (in the session) until the input arrives;
//! 5. otherwise the step runs. Success adds the step's tags and may activate
//!    later steps; failure ends the flow.
//!
//! When no step is left and a user was identified, the flow is complete and
//! the session is authenticated with the collected tags.

mod identify;
mod issue;
mod password;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

pub use identify::RememberMeIdentifyStep;
pub(crate) use identify::{Prefetched, Rotation, browser_series, verified_series};
pub use issue::RememberMeIssueStep;
pub(crate) use password::{PasswordCheck, Who, check_password};
pub use password::{PasswordStep, argon2_peak_concurrency, argon2_verifications};

pub use crate::session::Tag;
use crate::store::{StoreError, Stores, UserId};
use crate::token::{RememberCookie, SecretHash};

/// A set of tags that must all be present. The empty condition always holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Condition(BTreeSet<Tag>);

impl Condition {
    /// Holds when every tag in `tags` is present.
    pub fn has_all(tags: impl IntoIterator<Item = Tag>) -> Self {
        Self(tags.into_iter().collect())
    }

    /// Holds when `tag` is present.
    pub fn has(tag: Tag) -> Self {
        Self::has_all([tag])
    }

    /// Whether the condition holds for `tags`.
    pub fn is_met(&self, tags: &BTreeSet<Tag>) -> bool {
        self.0.is_subset(tags)
    }

    fn missing(&self, tags: &BTreeSet<Tag>) -> Vec<Tag> {
        self.0.difference(tags).cloned().collect()
    }
}

/// The name of a step within its flow, used for activation and in errors.
pub type StepId = &'static str;

/// Identifier of the remember-me identifying step in the built-in flows.
pub const IDENTIFY: StepId = "remember_me_identify";
/// Identifier of the password step in the built-in flows.
pub const PASSWORD: StepId = "password";
/// Identifier of the token generating step in the built-in flows.
pub const ISSUE: StepId = "remember_me_issue";

/// What a form posted to the flow: the password step's fields, and the
/// inputs of the app's own interactive steps (a one-time code, say).
///
/// A step of the app's reads its input from [`Credentials::inputs`] and
/// says so in [`Step::has_input`]: a browser submit
/// ([`Auth::submit`](crate::Auth::submit)) that posts a password to a flow
/// whose password was already verified (paused at a later step) starts the
/// flow afresh, taken for the user going back to the sign-in form, if it
/// comes with a username or the step does not have its input in it;
/// otherwise it answers that step.
#[derive(Clone, Default)]
pub struct Credentials {
    /// The username typed (ignored when the flow already knows the user).
    pub username: String,
    /// The password typed.
    pub password: String,
    /// Whether "Keep me logged in" was ticked.
    pub remember_me: bool,
    /// The app's own inputs, by name, offered to every step of this run as
    /// [`StepContext::inputs`] (never logged: they may be secrets). What
    /// the client posted: the JSON API fills it from the request's body,
    /// so a step must check it (a one-time code), never trust it.
    pub inputs: BTreeMap<String, String>,
    /// Facts the app's handler established itself (the user a signed
    /// trust cookie names, checked by the handler), offered to every step
    /// of this run as [`StepContext::verified`]. Never what the client
    /// posted: the JSON API leaves it empty, so a step that skips work on
    /// a fact reads it here, not from `inputs`.
    pub verified: BTreeMap<String, String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .field("remember_me", &self.remember_me)
            .field("inputs", &self.inputs.keys().collect::<Vec<_>>())
            .field("verified", &self.verified.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Where a request comes from, for the token table and the audit log.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    /// The `User-Agent` header, truncated.
    pub user_agent: Option<String>,
    /// The peer address.
    pub ip: Option<String>,
}

/// What a run of the steps wants done to the remember-me cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CookieChange {
    /// Set the cookie to this value, for this many seconds.
    Set {
        /// The new cookie content.
        cookie: RememberCookie,
        /// Seconds until the server-side expiry.
        max_age_secs: i64,
    },
    /// Remove the cookie (it is invalid, revoked, or replaced by nothing).
    Remove,
}

impl CookieChange {
    /// Whether this sets the next token of the series `presented` (a raw
    /// cookie) carries: a rotation, not a token of a new series.
    pub(crate) fn rotates(&self, presented: Option<&[u8]>) -> bool {
        let Self::Set { cookie, .. } = self else {
            return false;
        };
        presented
            .and_then(|raw| RememberCookie::decode(raw).ok())
            .is_some_and(|old| old.series.hash().ct_eq(cookie.series.hash().as_bytes()))
    }
}

/// Everything a step may read and write while it runs. Built by the bridge
/// (middleware or extractor) from the request; holds no HTTP types.
pub struct StepContext<'a> {
    /// The stores.
    pub stores: &'a Stores,
    /// The settings.
    pub config: &'a crate::RememberMeConfig,
    /// Current time, Unix seconds.
    pub now: i64,
    /// Where the request comes from.
    pub client: &'a ClientInfo,
    /// The raw remember-me cookie, offered to identifying steps.
    pub remember_cookie: Option<&'a [u8]>,
    /// The series the browser carries, if its cookie still proves it: the
    /// issuing step's token replaces it rather than adding a second token
    /// for one browser, once the run completes
    /// ([`StepContext::retire_replaced`]).
    pub browser_series: Option<SecretHash>,
    /// The app device a token step issues for (`None`: a browser cookie).
    pub device_key: Option<String>,
    /// Input for the next interactive step; taken by the step that uses it.
    pub credentials: Option<Credentials>,
    /// The app's own inputs of this run (from [`Credentials::inputs`]),
    /// for the app's steps: not taken by any step. Posted by the client
    /// (a form, the JSON API's body): to be checked, never trusted.
    pub inputs: BTreeMap<String, String>,
    /// Facts the app's handler established itself (from
    /// [`Credentials::verified`]); empty in a JSON API run.
    pub verified: BTreeMap<String, String>,
    /// Cookie change decided by the steps; applied to the response by the bridge.
    pub cookie_change: Option<CookieChange>,
    /// The user a step loaded on its way (the identifying step with the
    /// token, the password step with the credentials), so the bridge does
    /// not read it again to build the session.
    pub user: Option<crate::store::User>,
    /// The user's auth epoch, when a step read it (the identifying step
    /// reads it with the token).
    pub epoch: Option<i64>,
    /// When the password was last typed, as far as this run knows: set by
    /// the bridge from the session or access token it continues, and by a
    /// password step to `now` when it verifies one. The issuing step needs
    /// it within [`RememberMeConfig::reauth_window`](crate::RememberMeConfig::reauth_window).
    pub password_at: Option<i64>,
    /// The client's device cookie, if it verified (see [`crate::device`]):
    /// its failed password checks spend a budget of its own.
    pub device: Option<crate::device::TrustedDevice>,
    /// The device cookie a right password earned the client (bound to the
    /// password as it is stored now), for the bridge to hand out if the
    /// run completes.
    pub(crate) device_cookie: Option<String>,
    /// The detail of the `remember_me_sign_in` audit row an identifying
    /// step has the store write with its rotation (`"api refresh"`, say).
    pub sign_in_detail: &'static str,
    /// Set by an identifying step when the store wrote the sign-in's audit
    /// row with the rotation: the bridge must not record it again.
    pub sign_in_audited: bool,
    /// The rotation of the cookie, if the layer ran it before the steps
    /// (see [`Flow::starts_by_rotating`]); taken by the identifying step.
    pub(crate) prefetched: Option<Prefetched>,
    /// The token the issuing step inserted, and what it replaces once the
    /// run completes (see [`StepContext::retire_replaced`]).
    pub(crate) issued: Option<issue::Issued>,
}

impl<'a> StepContext<'a> {
    /// A context with nothing but the stores, the settings, the time and the
    /// client; the bridge fills in what its request carries.
    pub fn new(
        stores: &'a Stores,
        config: &'a crate::RememberMeConfig,
        now: i64,
        client: &'a ClientInfo,
    ) -> Self {
        Self {
            stores,
            config,
            now,
            client,
            remember_cookie: None,
            browser_series: None,
            device_key: None,
            credentials: None,
            inputs: BTreeMap::new(),
            verified: BTreeMap::new(),
            cookie_change: None,
            user: None,
            epoch: None,
            password_at: None,
            device: None,
            device_cookie: None,
            sign_in_detail: "",
            sign_in_audited: false,
            prefetched: None,
            issued: None,
        }
    }
}

/// What one step reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    /// The step succeeded for this user and activates these later steps.
    Success {
        /// The user the step identified or confirmed.
        user: UserId,
        /// Steps that may now run.
        activate: Vec<StepId>,
    },
    /// The step had nothing to work with (no cookie, say): no tag, no failure.
    NotApplicable,
    /// The step refused: the flow ends without signing anyone in.
    Failed(Failure),
}

/// Why a step refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Failure {
    /// Wrong username or password. Deliberately one reason for both.
    InvalidCredentials,
    /// A step identified a different user than the flow already knows.
    UserMismatch,
    /// Too many failed attempts for this account: try again later.
    Throttled {
        /// Seconds until the next attempt is checked.
        retry_after_secs: u64,
    },
    /// A step that needs a recently typed password (issuing a long-lived
    /// token) found none in this run.
    PasswordRequired,
}

/// One unit of a login: identify by cookie, check a password, issue a token…
pub trait Step: Send + Sync {
    /// Whether the step needs input from the user (a form).
    fn is_interactive(&self) -> bool;

    /// Whether this run carries the input this interactive step needs: the
    /// flow pauses before it otherwise ([`Progress::NeedsInput`]). The
    /// default: credentials not yet taken by an earlier step. A step of the
    /// app's own looks for its input in [`StepContext::inputs`]; with the
    /// default, a password posted while the step waits is its answer, never
    /// a new start (see [`Credentials`]).
    fn has_input(&self, ctx: &StepContext<'_>) -> bool {
        ctx.credentials.is_some()
    }

    /// Runs the step. Blocking: call from a blocking thread.
    ///
    /// `known_user` is the user the flow already identified, if any.
    fn run(
        &self,
        ctx: &mut StepContext<'_>,
        known_user: Option<&UserId>,
    ) -> Result<StepOutcome, StoreError>;
}

/// A step in a flow, with the flow-specific rules around it.
pub struct StepDef {
    id: StepId,
    step: Box<dyn Step>,
    tags_on_success: Vec<Tag>,
    skip_if: Option<Condition>,
    precondition: Condition,
    needs_activation: bool,
    /// Whether the step is [`RememberMeIdentifyStep`] itself.
    identifies_by_cookie: bool,
    /// Whether the step is [`RememberMeIssueStep`] itself, or marked as a
    /// step that issues a token ([`StepDef::issues_token`]).
    issues_token: bool,
}

impl StepDef {
    /// A step that always runs, adds no tag and has no precondition.
    pub fn new<S: Step + 'static>(id: StepId, step: S) -> Self {
        use std::any::TypeId;
        Self {
            id,
            identifies_by_cookie: TypeId::of::<S>() == TypeId::of::<RememberMeIdentifyStep>(),
            issues_token: TypeId::of::<S>() == TypeId::of::<RememberMeIssueStep>(),
            step: Box::new(step),
            tags_on_success: Vec::new(),
            skip_if: None,
            precondition: Condition::default(),
            needs_activation: false,
        }
    }

    /// Marks the step as one that issues a remember-me token, as
    /// [`RememberMeIssueStep`] is (a step of the app's that wraps it, say,
    /// which [`Flow::step`] cannot recognise by its type): steps added to
    /// the flow after it then go before it, so that the token comes only
    /// once every other step has passed.
    #[must_use]
    pub fn issues_token(mut self) -> Self {
        self.issues_token = true;
        self
    }

    /// Tags added when the step succeeds.
    #[must_use]
    pub fn tags_on_success(mut self, tags: impl IntoIterator<Item = Tag>) -> Self {
        self.tags_on_success = tags.into_iter().collect();
        self
    }

    /// Skip the step when `condition` holds.
    #[must_use]
    pub fn skip_if(mut self, condition: Condition) -> Self {
        self.skip_if = Some(condition);
        self
    }

    /// Refuse the flow if the step is reached and `condition` does not hold.
    #[must_use]
    pub fn precondition(mut self, condition: Condition) -> Self {
        self.precondition = condition;
        self
    }

    /// Run the step only when an earlier step activated it.
    #[must_use]
    pub fn only_when_activated(mut self) -> Self {
        self.needs_activation = true;
        self
    }

    /// The step's identifier.
    pub fn id(&self) -> StepId {
        self.id
    }
}

mod engine;
mod state;
pub use engine::{Flow, FlowKind};
pub use state::{FlowState, Progress};

#[cfg(test)]
mod tests;
