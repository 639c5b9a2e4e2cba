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
//! one job on a store thread at a time runs the queue's batches and hands
//! each attempt its outcome. The rest of the sign-in (the user read
//! through the app's directory, the steps after the identifying one) then
//! runs as a store job of its own.
//!
//! An attempt whose request has gone before a batch takes it is dropped
//! unrun (its cookie stays good: no browser would receive the next one).
//! One that no batch takes within [`ROTATION_WAIT`] gives up as
//! unavailable (a 503; nothing of it was written); one that a batch has
//! taken waits for that batch's outcome, which may have rotated its token.
//!
//! Hand-written, like [`rotation_batch`](crate::store): a `Mutex` around
//! a queue, a oneshot channel per attempt, and rules specific to the
//! rotation.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::store::{FoundSeries, MAX_ROTATION_BATCH, OwnedRotation, StoreError, TokenStore};
use crate::threads::Submitter;

/// The longest an attempt waits for a batch to take it.
pub(crate) const ROTATION_WAIT: Duration = Duration::from_secs(5);

/// The most attempts waiting; beyond, a sign-in by cookie fails at once as
/// unavailable (a 503 where the page needs a sign-in), as a store job does
/// with the store threads' queue full: a flood of cookies, valid or not,
/// costs memory and lock time up to this bound only.
pub(crate) const MAX_WAITING: usize = 4096;

/// One attempt's outcome (see [`TokenStore::find_and_rotate`]).
pub(crate) type Outcome = Result<Option<FoundSeries>, StoreError>;

/// The sign-ins by cookie waiting for a batch, and what runs the batches.
pub(crate) struct RotationQueue {
    state: Mutex<State>,
    tokens: Arc<dyn TokenStore>,
    threads: Submitter,
    max_wait: Duration,
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
    reply: oneshot::Sender<Outcome>,
}

impl RotationQueue {
    /// Batches run through `tokens`, as jobs on the threads of `threads`;
    /// an attempt that no batch took within `max_wait` gives up.
    pub fn new(tokens: Arc<dyn TokenStore>, threads: Submitter, max_wait: Duration) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::default(),
            tokens,
            threads,
            max_wait,
            #[cfg(test)]
            unwind_after_batch: false.into(),
        })
    }

    /// Rotates `attempt` in the next batch and returns its outcome, waiting
    /// in async land.
    pub async fn rotate(self: &Arc<Self>, attempt: OwnedRotation) -> Outcome {
        let (reply, answer) = oneshot::channel();
        let (id, lead) = {
            let mut state = self.state.lock();
            if state.waiting.len() >= MAX_WAITING {
                // Requests gone while their attempts waited hold no place.
                state.waiting.retain(|w| !w.reply.is_closed());
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
        let queued = Instant::now();
        let outcome = self.answer(id, answer).await;
        let _ = std::panic::catch_unwind(|| crate::telemetry::rotation_wait(queued.elapsed()));
        outcome
    }

    /// Attempt `id`'s outcome, once its batch has run; unavailable if no
    /// batch took it within `max_wait`.
    async fn answer(&self, id: u64, mut answer: oneshot::Receiver<Outcome>) -> Outcome {
        let gone = |_| {
            Err(StoreError::Query(
                "the rotation batch did not answer".into(),
            ))
        };
        match tokio::time::timeout(self.max_wait, &mut answer).await {
            Ok(answer) => answer.unwrap_or_else(gone),
            // Untaken: it gives up, unwritten. Taken: it waits for its batch.
            Err(_) if self.withdraw(id) => Err(StoreError::Unavailable(
                "no turn for the sign-in by cookie in time".into(),
            )),
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
            let _ = w.reply.send(Err(StoreError::Unavailable(why.to_owned())));
        }
    }

    /// On a store thread: runs batches while attempts wait. When other
    /// store jobs wait too (the sign-ins a batch answered continue in jobs
    /// of their own), the next batch queues behind them instead: batch
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
        state.waiting.retain(|w| !w.reply.is_closed());
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

    /// Runs one batch and hands each attempt its outcome. A panic in the
    /// store fails the batch's attempts, not the thread.
    fn run_batch(&self, batch: Vec<Waiting>) {
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
        let mut outcomes = outcomes.into_iter();
        for w in batch {
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
            let _ = w.reply.send(outcome);
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

#[cfg(test)]
mod tests;
