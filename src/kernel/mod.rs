//! The HTTP-free core. Every sign-in (by remember-me cookie, by password,
//! by the app's own check), step-up, logout, session check and account
//! change runs here, on domain types: [`Core`]'s blocking operations,
//! which [`Shared`] runs on the crate's threads. [`context`] is the one
//! place that builds the [`StepContext`] of a request.
//!
//! The middleware, the extractors, the JSON API, the pages and the testing
//! helpers are adapters: each turns a request into a [`Visit`] and a call
//! here, and the result into a response. Nothing here names actix: the
//! adapters depend on this module, never the other way.

use std::sync::Arc;

use crate::RememberMeConfig;
use crate::device::TrustedDevice;
use crate::flow::{ClientInfo, Flow, FlowKind, StepContext};
use crate::store::audit_queue::{AuditQueue, OwnedAudit};
use crate::store::{AuditKind, NewAuditEvent, StoreError, Stores, UserId};
use crate::threads::{JobFailed, STORE_THREADS, Threads};

mod account;
mod api;
mod cookie;
mod rotations;
mod sign_in;
mod submit;

pub(crate) use account::{PasswordChangeJob, Refused};
pub(crate) use api::{API_REFRESH, FailedAfterRotation, FlowInput, Ran};
pub(crate) use cookie::CookieSignIn;
use rotations::RotationQueue;
pub use sign_in::SignIn;
pub(crate) use sign_in::SignInById;
#[cfg(feature = "testing")]
pub(crate) use sign_in::issue_token;
pub(crate) use submit::{Previous, Submit, Submitted};

/// Store calls that may wait for a store thread; beyond, requests get a 503
/// at once (about half a second of work at the benchmark's rates).
const STORE_QUEUE: usize = 4096;

/// What a request brings to the core, read from it by the adapter. Its
/// `Debug` leaves the cookie out: it is a secret.
#[derive(Clone)]
pub(crate) struct Visit {
    /// Current time, Unix seconds.
    pub now: i64,
    /// Where the request comes from.
    pub client: ClientInfo,
    /// The remember-me cookie (or an app's long-lived token) the client
    /// carries, raw.
    pub cookie: Option<Vec<u8>>,
    /// The client's device cookie, if it verified.
    pub device: Option<TrustedDevice>,
}

impl std::fmt::Debug for Visit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Visit")
            .field("now", &self.now)
            .field("client", &self.client)
            .field("cookie", &self.cookie.as_ref().map(|_| "[redacted]"))
            .field("device", &self.device)
            .finish()
    }
}

impl Visit {
    /// An audit row of this visit.
    pub fn event<'a>(
        &'a self,
        kind: AuditKind,
        user: Option<&'a UserId>,
        detail: &'a str,
    ) -> NewAuditEvent<'a> {
        NewAuditEvent {
            at: self.now,
            kind,
            user_id: user,
            ip: self.client.ip.as_deref(),
            user_agent: self.client.user_agent.as_deref(),
            detail,
        }
    }

    /// An audit row of this visit, to write later (off the request).
    pub fn owned_event(&self, kind: AuditKind, user: Option<UserId>, detail: &str) -> OwnedAudit {
        OwnedAudit {
            at: self.now,
            kind,
            user,
            ip: self.client.ip.clone(),
            user_agent: self.client.user_agent.clone(),
            detail: detail.to_owned(),
        }
    }
}

/// Why a core operation gave no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CoreError {
    /// The store failed or did not answer, or too much store work is
    /// queued: every adapter answers 503.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The job panicked or the crate's threads are gone: 500.
    #[error("{0}")]
    Internal(String),
}

impl From<JobFailed> for CoreError {
    fn from(failed: JobFailed) -> Self {
        match failed {
            JobFailed::Busy => CoreError::Store(StoreError::Unavailable(failed.to_string())),
            JobFailed::Failed => CoreError::Internal(failed.to_string()),
        }
    }
}

/// Runs `flow` on from `state`. A step that panics fails the run as a
/// store error does (the request is served as with the store down), so
/// that a token an earlier step rotated still reaches the client: the
/// panic would otherwise take the context, and the new token, with it.
/// A rotation run before the flow that no step took (it cannot happen
/// with `Flow::starts_by_rotating`) becomes the context's cookie change
/// all the same.
fn advance(
    flow: &crate::flow::Flow,
    state: &mut crate::flow::FlowState,
    ctx: &mut crate::flow::StepContext<'_>,
) -> Result<crate::flow::Progress, StoreError> {
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| flow.advance(state, ctx)))
        .unwrap_or_else(|_| {
            tracing::error!("a step of the login flow panicked");
            Err(StoreError::Query(
                "a step of the login flow panicked".into(),
            ))
        });
    if let Some(unused) = ctx.prefetched.take()
        && ctx.cookie_change.is_none()
    {
        ctx.cookie_change = unused.rotated_cookie(ctx.now);
    }
    ran
}

/// A flow run's end as a sign-in outcome: `unidentified` for a run that
/// identified nobody and waits for nothing (a cookie that signed nobody
/// in is `rejected`; a form without its password is `invalid`).
fn count_flow_end(
    method: &'static str,
    progress: &crate::flow::Progress,
    paused_later: bool,
    unidentified: &'static str,
) {
    use crate::flow::{Failure, Progress};
    let outcome = match progress {
        Progress::Complete { .. } => "success",
        Progress::NeedsInput { .. } if paused_later => "needs_input",
        Progress::NeedsInput { .. } => unidentified,
        Progress::Failed {
            failure: Failure::Throttled { .. },
            ..
        } => "throttled",
        Progress::Failed { .. } => "invalid",
        Progress::Refused { .. } => "refused",
    };
    crate::telemetry::sign_in(method, outcome);
}

/// The step context of a visit: the one place that builds one.
pub(crate) fn context<'a>(
    stores: &'a Stores,
    config: &'a RememberMeConfig,
    visit: &'a Visit,
) -> StepContext<'a> {
    let mut ctx = StepContext::new(stores, config, visit.now, &visit.client);
    ctx.device = visit.device.clone();
    ctx
}

/// The core's operations read the stores, the settings and the flows; they
/// block (store calls, Argon2) and run on the threads [`Shared`] gives them.
pub(crate) struct Core {
    pub stores: Stores,
    pub config: Arc<RememberMeConfig>,
    login: Flow,
    step_up: Flow,
    /// The app's own flows, by name.
    named: Vec<Flow>,
}

impl Core {
    /// The layer's own flow of `kind`.
    pub fn flow(&self, kind: FlowKind) -> &Flow {
        match kind {
            FlowKind::Login => &self.login,
            FlowKind::StepUp => &self.step_up,
        }
    }

    /// The flow named `name`: the layer's own or one of the app's.
    pub fn flow_named(&self, name: &str) -> Option<&Flow> {
        [&self.login, &self.step_up]
            .into_iter()
            .chain(&self.named)
            .find(|flow| flow.name() == name)
    }

    /// Adds the app's flow, or replaces the flow of its name. A flow under
    /// a kind's own name takes that kind's place, so it must be of it.
    fn add_flow(&mut self, flow: Flow) {
        for kind in [FlowKind::Login, FlowKind::StepUp] {
            if flow.name() == kind.name() {
                assert!(
                    flow.kind() == kind,
                    "the flow named `{}` must be of kind {kind:?}",
                    kind.name()
                );
            }
        }
        match flow.name() {
            "login" => self.login = flow,
            "step_up" => self.step_up = flow,
            name => {
                self.named.retain(|other| other.name() != name);
                self.named.push(flow);
            }
        }
    }

    fn context<'a>(&'a self, visit: &'a Visit) -> StepContext<'a> {
        context(&self.stores, &self.config, visit)
    }
}

/// The core with what runs it: the store threads, the password-check
/// permits, the per-address limiter and the audit queue. One per layer,
/// shared by its workers, its extractors and its API.
pub(crate) struct Shared {
    core: Arc<Core>,
    pub ip_limiter: Option<crate::limits::IpLimiter>,
    /// Permits for password checks (see `password_concurrency`).
    password_checks: Arc<tokio::sync::Semaphore>,
    /// The threads that run store calls (see `store_concurrency`).
    pub store_threads: Threads,
    /// Remember-me sign-ins to record, written in batches off the request.
    pub audit_queue: AuditQueue,
    /// Sign-ins by cookie waiting for their rotation's batch.
    pub rotations: Arc<RotationQueue>,
}

impl Shared {
    /// Starts the store threads and the audit writer.
    pub fn start(
        stores: Stores,
        config: RememberMeConfig,
        login: Flow,
        step_up: Flow,
    ) -> std::io::Result<Self> {
        let config = Arc::new(config);
        crate::telemetry::describe();
        let store_threads = Threads::start(
            STORE_THREADS,
            config
                .store_concurrency
                .or_else(|| stores.tokens.suggested_concurrency())
                .unwrap_or(8)
                .max(1),
            STORE_QUEUE,
        )?;
        Ok(Self {
            ip_limiter: crate::limits::ip_limiter(config.ip_attempts_per_minute),
            password_checks: Arc::new(tokio::sync::Semaphore::new(config.password_concurrency)),
            rotations: RotationQueue::new(
                stores.tokens.clone(),
                Some(stores.users.clone()),
                store_threads.submitter(),
                stores
                    .tokens
                    .suggested_wait()
                    .unwrap_or(rotations::ROTATION_WAIT),
            ),
            store_threads,
            audit_queue: AuditQueue::start(stores.audit.clone()),
            core: Arc::new(Core {
                stores,
                config,
                login,
                step_up,
                named: Vec::new(),
            }),
        })
    }

    /// Adds the app's flow (see [`Core::add_flow`]).
    ///
    /// # Panics
    ///
    /// Once the core is shared (the layer was cloned), or for a flow under
    /// a kind's name that is not of that kind.
    pub fn add_flow(&mut self, flow: Flow) {
        Arc::get_mut(&mut self.core)
            .expect("add flows before the layer is cloned")
            .add_flow(flow);
    }

    /// The settings (the core's).
    pub fn config(&self) -> &Arc<RememberMeConfig> {
        &self.core.config
    }

    /// The stores (the core's).
    pub fn stores(&self) -> &Stores {
        &self.core.stores
    }

    /// The core, for work already on a blocking thread.
    pub fn core(&self) -> &Core {
        &self.core
    }

    /// A handle on the core, for work to run on a store thread later.
    pub fn core_handle(&self) -> Arc<Core> {
        self.core.clone()
    }

    /// Runs core work on the store threads, at most `store_concurrency`
    /// calls at once: the others wait in the queue, in async land, without
    /// a thread. A full queue is [`CoreError::Store`] (503) for every caller.
    pub async fn store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Core) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, CoreError> {
        let core = self.core.clone();
        let enqueued = std::time::Instant::now();
        let queued = self.store_threads.queued();
        let ran = self
            .store_threads
            .run(move || {
                let started = std::time::Instant::now();
                let result = f(&core);
                crate::telemetry::store_job(started - enqueued, started.elapsed(), queued);
                result
            })
            .await;
        if let Err(JobFailed::Busy) = &ran {
            tracing::warn!(queued, "store queue full: answering 503");
        }
        Ok(ran??)
    }

    /// Runs core work that checks or hashes a password: first a permit
    /// (waited for in async land, so a storm of sign-ins holds neither
    /// threads nor Argon2 memory), then a thread of tokio's blocking pool.
    /// Never on the store threads: an Argon2 run holds its thread for tens
    /// of milliseconds, and every cookie sign-in and session check would
    /// wait behind it.
    pub async fn password<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Core) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, CoreError> {
        let _permit = self
            .password_checks
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| CoreError::Internal(e.to_string()))?;
        let core = self.core.clone();
        Ok(tokio::task::spawn_blocking(move || f(&core))
            .await
            .map_err(|e| CoreError::Internal(e.to_string()))??)
    }

    /// Records an audit event off the request: the event goes to the audit
    /// queue, written with others in one transaction (see [`AuditQueue`]).
    /// Only if the queue is full is it written by a task of its own, still
    /// after the response.
    pub fn audit_later(self: &Arc<Self>, event: OwnedAudit) {
        if let Err(event) = self.audit_queue.push(event) {
            let shared = self.clone();
            tokio::task::spawn_local(async move {
                // `Stores::audit` counts a row the database refuses; a job
                // that could not even run is counted here.
                let written = shared
                    .store(move |core| {
                        core.stores.audit(event.borrowed(None));
                        Ok(())
                    })
                    .await;
                if let Err(error) = written {
                    crate::store::audit_queue::count_dropped(1, &error);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests;
