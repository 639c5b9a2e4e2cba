//! Sign-ins by cookie that wait for their rotation without a thread.
//!
//! A sign-in by cookie is a rotation (a lookup and a compare-and-swap,
//! committed) and little else, and the rotations waiting at the same time
//! run together, one commit for the lot (see
//! [`TokenStore::find_and_rotate_all`]). Waiting for a batch on a store
//! thread held the thread: the batches could never hold more attempts
//! than there were store threads, and each thread costs memory. Here the
//! attempt is prepared on the async worker (the cookie decoded and hashed,
//! the next token drawn and sealed), queued, and awaited in async land;
//! one job on a store thread at a time runs the queue's batches, reads the
//! owners of the tokens a batch rotated in one call of the app's directory
//! ([`UserDirectory::find_by_ids`]), and hands each attempt its outcome
//! and owner, to the work that continues the sign-in (the steps after the
//! identifying one): the leading job runs it itself, on the thread that
//! ran the batch, while that stays quick (see [`INLINE_BUDGET`]); beyond,
//! it hands the rest to other store threads. A sign-in by cookie then costs one
//! hand-off to the store threads and one back, not two of each.
//!
//! An attempt whose request has gone before a batch takes it is dropped
//! unrun (its cookie stays good: no browser would receive the next one).
//! One that no batch takes within [`TokenStore::suggested_wait`] (else
//! [`ROTATION_WAIT`]) gives up as unavailable (a 503; nothing of it was
//! written); one that a batch has taken waits for its batch's outcome.
//!
//! Hand-written, like [`rotation_batch`](crate::store): a `Mutex` around
//! a queue, a oneshot channel per attempt, and rules specific to the
//! rotation.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::store::{
    FoundSeries, MAX_ROTATION_BATCH, OwnedRotation, StoreError, TokenStore, UserDirectory,
};
use crate::threads::Submitter;
use reply::{Reply, Then};

/// The longest an attempt waits for a batch to take it, if the store
/// suggests no wait.
pub(crate) const ROTATION_WAIT: Duration = Duration::from_secs(5);

/// The most attempts waiting; beyond, a sign-in by cookie fails at once as
/// unavailable (a 503 where the page needs a sign-in), as a store job does
/// with the store threads' queue full: a flood of cookies, valid or not,
/// costs memory and lock time up to this bound only.
pub(crate) const MAX_WAITING: usize = 4096;

/// One attempt's outcome (see [`TokenStore::find_and_rotate`]).
pub(crate) type Outcome = Result<Option<FoundSeries>, StoreError>;
pub(crate) use owners::Owner;

/// How long the leading job may spend after a batch continuing its
/// attempts' sign-ins itself: it runs the next one only if, at the cost
/// of the last one run, it would end within this. The rest go to the
/// other store threads, in parallel: a directory that answers slowly
/// (over the network, say) is not read one attempt after another, and
/// the next batch does not wait long for the leader. (Measured against
/// 1 ms and 0, bench/layer_notes.md: 1 ms did better on SQLite at 64
/// connections, where the CPU bounds, and worse on PostgreSQL, where the
/// round trips of the directory's reads, one after another, do.)
pub(crate) const INLINE_BUDGET: Duration = Duration::from_micros(250);

/// The sign-ins by cookie waiting for a batch, and what runs the batches.
pub(crate) struct RotationQueue {
    state: Mutex<State>,
    tokens: Arc<dyn TokenStore>,
    /// Where the owners of a batch's rotated tokens are read, if anywhere.
    users: Option<Arc<dyn UserDirectory>>,
    threads: Submitter,
    max_wait: Duration,
    /// How long the last continuation took, in nanoseconds (see
    /// [`INLINE_BUDGET`]).
    last_cost: AtomicU64,
    /// Test fault: the leading job unwinds after its next batch, as a bug
    /// in this module would (see `LeadGuard`).
    #[cfg(test)]
    unwind_after_batch: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct State {
    next_id: u64,
    waiting: Vec<Waiting>,
    /// Whether a batch job is queued or running: one at a time, so each
    /// batch takes every attempt that arrived while the last one ran.
    leading: bool,
}

struct Waiting {
    id: u64,
    attempt: OwnedRotation,
    reply: Box<dyn Reply>,
}

impl RotationQueue {
    /// Batches run through `tokens`, as jobs on the threads of `threads`,
    /// the owners of their rotated tokens read from `users`; an attempt
    /// that no batch took within `max_wait` gives up.
    pub fn new(
        tokens: Arc<dyn TokenStore>,
        users: Option<Arc<dyn UserDirectory>>,
        threads: Submitter,
        max_wait: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::default(),
            tokens,
            users,
            threads,
            max_wait,
            last_cost: AtomicU64::new(0),
            #[cfg(test)]
            unwind_after_batch: false.into(),
        })
    }

    /// Rotates `attempt` in the next batch; its outcome, waited for in async land.
    #[cfg(test)]
    pub async fn rotate(self: &Arc<Self>, attempt: OwnedRotation) -> Outcome {
        self.rotate_then(attempt, |outcome, _| outcome).await?
    }

    /// Rotates `attempt` in the next batch and continues with `then` (its
    /// outcome and, if rotated, its owner) on the store thread that ran
    /// the batch (or, past [`INLINE_BUDGET`], on another store thread),
    /// waiting in async land for what it returns. An error is an attempt that failed before any batch ran
    /// it: nothing of it was written. `then` must not panic once the
    /// rotation committed, or the rotated cookie is lost with it: catch
    /// what the rest of the sign-in may raise.
    pub async fn rotate_then<T: Send + 'static>(
        self: &Arc<Self>,
        attempt: OwnedRotation,
        then: impl FnOnce(Outcome, Owner) -> T + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        let reply = Box::new(Then {
            reply,
            then,
            queued: Instant::now(),
        });
        let (id, lead) = {
            let mut state = self.state.lock();
            if state.waiting.len() >= MAX_WAITING {
                // Requests gone while their attempts waited hold no place.
                state.waiting.retain(|w| !w.reply.is_gone());
            }
            if state.waiting.len() >= MAX_WAITING {
                return Err(StoreError::Unavailable(
                    "too many sign-ins by cookie waiting".into(),
                ));
            }
            let id = state.next_id;
            state.next_id += 1;
            state.waiting.push(Waiting { id, attempt, reply });
            (id, !std::mem::replace(&mut state.leading, true))
        };
        if lead {
            self.start_batch();
        }
        self.answer(id, answer).await
    }

    /// Attempt `id`'s answer, once its batch has run and its sign-in
    /// continued; unavailable if no batch took it within `max_wait`.
    async fn answer<T>(
        &self,
        id: u64,
        mut answer: oneshot::Receiver<Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let gone = |_| {
            Err(StoreError::Query(
                "the rotation batch did not answer".into(),
            ))
        };
        match tokio::time::timeout(self.max_wait, &mut answer).await {
            Ok(answer) => answer.unwrap_or_else(gone),
            // Untaken: it gives up, unwritten. Taken: it waits for its batch.
            Err(_) if self.withdraw(id) => {
                let waited = self.max_wait;
                let _ = std::panic::catch_unwind(|| crate::telemetry::rotation_wait(waited));
                Err(StoreError::Unavailable(
                    "no turn for the sign-in by cookie in time".into(),
                ))
            }
            Err(_) => answer.await.unwrap_or_else(gone),
        }
    }

    /// Takes attempt `id` out of the queue if no batch took it yet.
    fn withdraw(&self, id: u64) -> bool {
        let mut state = self.state.lock();
        let at = state.waiting.iter().position(|w| w.id == id);
        at.map(|at| state.waiting.remove(at)).is_some()
    }

    /// Queues the job that runs the next batches. With the store threads'
    /// queue full or closed, every attempt waiting fails as unavailable
    /// (a 503 each), none of them written.
    fn start_batch(self: &Arc<Self>) {
        let queue = self.clone();
        if let Err(failed) = self.threads.submit(move || queue.run_batches()) {
            self.fail_waiting(&failed.to_string());
        }
    }

    /// Fails every attempt waiting, unwritten; no batch leads any more.
    fn fail_waiting(&self, why: &str) {
        let waiting = {
            let mut state = self.state.lock();
            state.leading = false;
            std::mem::take(&mut state.waiting)
        };
        if !waiting.is_empty() {
            tracing::warn!(
                attempts = waiting.len(),
                why,
                "sign-ins by cookie failed before their batch"
            );
        }
        for w in waiting {
            w.reply.fail(StoreError::Unavailable(why.to_owned()));
        }
    }

    /// On a store thread: runs batches while attempts wait. When other
    /// store jobs wait too (session checks, sign-outs, the sign-ins a
    /// batch handed off), the next batch queues behind them instead: batch
    /// after batch must not keep them from a thread. With no room in the
    /// queue for it, this thread leads one more batch; still no room after
    /// it, the attempts waiting fail (503s): the jobs queued, which may
    /// have no other thread, go first.
    fn run_batches(self: &Arc<Self>) {
        // Should anything here panic, the attempts waiting fail (503s)
        // rather than wait for a batch that no job would lead.
        let _guard = LeadGuard(self);
        let mut led_on = false;
        while let Some(batch) = self.take_batch() {
            self.run_batch(batch);
            #[cfg(test)]
            if self
                .unwind_after_batch
                .swap(false, std::sync::atomic::Ordering::SeqCst)
            {
                panic!("test fault: the leading job unwinds");
            }
            if self.threads.queued() == 0 {
                led_on = false;
                continue;
            }
            if !self.has_waiting() {
                return;
            }
            let queue = self.clone();
            match self.threads.submit(move || queue.run_batches()) {
                Ok(()) => return,
                Err(_) if !led_on => led_on = true,
                Err(failed) => {
                    self.fail_waiting(&failed.to_string());
                    return;
                }
            }
        }
    }

    /// The next batch: the oldest attempts whose requests still wait, at
    /// most [`MAX_ROTATION_BATCH`], sorted by series (rows are then
    /// usually locked in one order). `None`, and no batch leading, if
    /// none waits.
    fn take_batch(&self) -> Option<Vec<Waiting>> {
        let mut state = self.state.lock();
        state.waiting.retain(|w| !w.reply.is_gone());
        if state.waiting.is_empty() {
            state.leading = false;
            return None;
        }
        let take = state.waiting.len().min(MAX_ROTATION_BATCH);
        let rest = state.waiting.split_off(take);
        let mut batch = std::mem::replace(&mut state.waiting, rest);
        drop(state);
        batch.sort_by(|a, b| a.attempt.series.as_bytes().cmp(b.attempt.series.as_bytes()));
        Some(batch)
    }

    /// Whether attempts wait; if none does, no batch is leading any more.
    fn has_waiting(&self) -> bool {
        let mut state = self.state.lock();
        state.leading = !state.waiting.is_empty();
        state.leading
    }

    /// Runs one batch and hands each attempt its outcome, continuing its
    /// sign-in here while that stays within [`INLINE_BUDGET`], then on
    /// other store threads. A panic in the store fails the batch's
    /// attempts, not the thread.
    fn run_batch(self: &Arc<Self>, batch: Vec<Waiting>) {
        let started = Instant::now();
        let attempts: Vec<_> = batch.iter().map(|w| w.attempt.borrowed()).collect();
        let outcomes = std::panic::catch_unwind(AssertUnwindSafe(|| {
            self.tokens.find_and_rotate_all(&attempts)
        }))
        .unwrap_or_default();
        drop(attempts);
        let (size, ran) = (batch.len(), started.elapsed());
        let _ = std::panic::catch_unwind(|| crate::telemetry::rotation_batch(size, ran));
        if outcomes.len() != batch.len() {
            tracing::error!(
                size = batch.len(),
                outcomes = outcomes.len(),
                "the rotation batch did not answer every attempt"
            );
        }
        let mut owners = owners::read(self.users.as_deref(), &outcomes).into_iter();
        let inline_until = Instant::now() + INLINE_BUDGET;
        let mut outcomes = outcomes.into_iter();
        for w in batch {
            let owner = owners.next().flatten();
            let outcome = match outcomes.next() {
                // A row of another series (a store that answered out of
                // order) must not decide this cookie's fate: theft handling
                // would revoke that row's user.
                Some(Ok(Some(found)))
                    if !found.record.series_hash.ct_eq(w.attempt.series.as_bytes()) =>
                {
                    tracing::error!("the rotation batch answered another series");
                    Err(StoreError::Query(
                        "the rotation batch answered another series".into(),
                    ))
                }
                Some(outcome) => outcome,
                None => Err(StoreError::Query(
                    "the remember-me rotation batch did not finish".into(),
                )),
            };
            // Handed off only while the store threads' queue is less than
            // half full: room in it must be left for the next batch (see
            // `run_batches`) and for other store jobs.
            let cost = Duration::from_nanos(self.last_cost.load(Relaxed));
            if Instant::now() + cost <= inline_until || !self.threads.has_room() {
                self.continue_attempt(w.reply, outcome, owner);
            } else {
                self.hand_off(w.reply, outcome, owner);
            }
        }
    }

    /// Continues an attempt's sign-in on this thread, and times it.
    fn continue_attempt(&self, reply: Box<dyn Reply>, outcome: Outcome, owner: Owner) {
        let started = Instant::now();
        if std::panic::catch_unwind(AssertUnwindSafe(|| reply.answer(outcome, owner))).is_err() {
            tracing::error!("the sign-in after a rotation panicked");
        }
        let ran = started.elapsed();
        let queued = self.threads.queued();
        let _ = std::panic::catch_unwind(|| crate::telemetry::store_ran(ran, queued));
        let cost = u64::try_from(ran.as_nanos()).unwrap_or(u64::MAX);
        self.last_cost.store(cost, Relaxed);
    }

    /// Continues an attempt's sign-in on another store thread; on this
    /// one after all if none can take it (its rotation has committed: its
    /// cookie must go out).
    fn hand_off(self: &Arc<Self>, reply: Box<dyn Reply>, outcome: Outcome, owner: Owner) {
        let slot = Arc::new(Mutex::new(Some((reply, outcome, owner))));
        let (queue, job) = (self.clone(), slot.clone());
        let handed = self.threads.submit(move || {
            if let Some((reply, outcome, owner)) = job.lock().take() {
                queue.continue_attempt(reply, outcome, owner);
            }
        });
        if handed.is_err()
            && let Some((reply, outcome, owner)) = slot.lock().take()
        {
            self.continue_attempt(reply, outcome, owner);
        }
    }
}

/// Fails the attempts waiting if the job leading the batches unwinds.
struct LeadGuard<'a>(&'a RotationQueue);

impl Drop for LeadGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0
                .fail_waiting("the remember-me rotation batches stopped");
        }
    }
}

mod owners;
mod reply;
#[cfg(test)]
mod tests;
