//! Group commit for the callers of `find_and_rotate` (flat combining): the
//! JSON API's refresh, an app's own code. (The layer's sign-ins by cookie
//! come gathered already, through `find_and_rotate_all`.)
//!
//! A re-authentication is a lookup and a compare-and-swap rotation, and most
//! of its database time is the commit (and on PostgreSQL the round trip).
//! Under load several store threads make one at the same time. Here, the
//! first caller to find no batch running becomes the leader: it takes the
//! attempts waiting (its own included; the oldest [`MAX_BATCH`]), runs them
//! together — on PostgreSQL as **one** statement, on SQLite in one
//! transaction: one commit for the lot — and hands each caller its own
//! result. Callers that arrive meanwhile wait for the next batch, which one
//! of them leads. Alone, a caller leads a batch of one at once: no timer, no
//! added latency.
//!
//! Each attempt's result is what it would be alone: the same series may come
//! twice in a batch (one cookie on parallel requests), and then one rotates
//! and the others find the token replaced, as when they race alone; results
//! are handed out only after the batch, i.e. after its commit. A batch that
//! was not written and whose attempts may do better alone (on PostgreSQL: a
//! deadlock with another process's batch, a row lock held elsewhere) is
//! retried attempt by attempt, so one bad attempt costs only itself, for at
//! most another connection timeout (the rest then fail as unavailable,
//! untried); a batch that was written is never run again. An attempt that
//! no batch takes within the connection timeout gives up as unavailable,
//! unless a leader's place is free by then (it then leads); one that a
//! batch has taken waits for that batch, which may rotate its token.
//!
//! Hand-written: this is a few lines around one `Mutex` and a `Condvar` per
//! waiting caller, and the rules (repeats share a batch, retry alone only
//! what rolled back) are specific to the rotation; no crate offers flat
//! combining over blocking calls.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};

use super::{ExpiryOnUse, FoundSeries, RotationAttempt, StoreError};
use crate::token::SecretHash;

/// Most attempts in one batch (one statement's arrays).
pub(crate) const MAX_BATCH: usize = 64;

/// One attempt, owned while it waits.
#[derive(Debug, Clone)]
pub(crate) struct Attempt {
    pub series: SecretHash,
    pub token: SecretHash,
    pub new_token: SecretHash,
    pub sealed: Vec<u8>,
    pub now: i64,
    pub clock_offset_ms: i64,
    pub expiry: ExpiryOnUse,
    pub audit: Option<OwnedSignInAudit>,
}

/// [`SignInAudit`](super::SignInAudit), owned while its attempt waits.
#[derive(Debug, Clone, Default)]
pub(crate) struct OwnedSignInAudit {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub detail: String,
}

impl Attempt {
    /// The attempt, owned.
    pub fn new(attempt: &RotationAttempt<'_>) -> Self {
        Self {
            series: attempt.series.clone(),
            token: attempt.token.clone(),
            new_token: attempt.new_token.clone(),
            sealed: attempt.sealed.to_vec(),
            now: attempt.now,
            clock_offset_ms: attempt.clock_offset_ms,
            expiry: attempt.expiry,
            audit: attempt.audit.map(|a| OwnedSignInAudit {
                ip: a.ip.map(str::to_owned),
                user_agent: a.user_agent.map(str::to_owned),
                detail: a.detail.to_owned(),
            }),
        }
    }

    /// The attempt as the store API takes it.
    pub fn borrowed(&self) -> RotationAttempt<'_> {
        RotationAttempt {
            series: &self.series,
            token: &self.token,
            new_token: &self.new_token,
            sealed: &self.sealed,
            now: self.now,
            clock_offset_ms: self.clock_offset_ms,
            expiry: self.expiry,
            audit: self.audit.as_ref().map(|a| super::SignInAudit {
                ip: a.ip.as_deref(),
                user_agent: a.user_agent.as_deref(),
                detail: &a.detail,
            }),
        }
    }
}

/// One attempt's result.
pub(crate) type Outcome = Result<Option<FoundSeries>, StoreError>;

/// How a batch ran: `Ok` with one outcome per attempt, in order, once the
/// batch committed (an attempt's own row may have failed to decode) or when
/// trying again cannot help (every attempt then carries the error); `Err`
/// when nothing of it was written and each attempt may succeed alone (a
/// deadlock with another process's batch, say).
pub(crate) type BatchResult = Result<Vec<Outcome>, StoreError>;

/// The batches of one store (shared by its clones).
#[derive(Debug)]
pub(crate) struct RotationBatches {
    state: Mutex<State>,
    max_leaders: usize,
    max_wait: Duration,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    waiting: Vec<(u64, Attempt)>,
    results: HashMap<u64, Outcome>,
    /// The callers asleep, by their attempt's id, each on a `Condvar` of
    /// its own. A finished batch wakes its own callers and one caller that
    /// may lead the next batch, not every caller: with one `Condvar` for
    /// all, each batch woke every store thread, and those whose attempts
    /// were still waiting went back to sleep (two context switches each,
    /// for nothing). A caller is taken out of here as it is woken, so two
    /// wake-ups in a row reach two callers, never one twice.
    sleeping: HashMap<u64, Arc<Condvar>>,
    leaders: usize,
}

impl State {
    /// Wakes the caller of attempt `id`, if it sleeps.
    fn wake(&mut self, id: u64) {
        if let Some(waker) = self.sleeping.remove(&id) {
            waker.notify_one();
        }
    }

    /// Wakes the sleeping caller of the oldest attempt waiting, if any, to
    /// lead the next batch while a leader's place is free. (A caller that
    /// is awake, a leader whose own attempt is still waiting say, looks for
    /// that itself.)
    fn wake_next_leader(&mut self, max_leaders: usize) {
        if self.leaders >= max_leaders {
            return;
        }
        let next = self
            .waiting
            .iter()
            .map(|(id, _)| *id)
            .find(|id| self.sleeping.contains_key(id));
        if let Some(id) = next {
            self.wake(id);
        }
    }
}

impl RotationBatches {
    /// At most `max_leaders` (at least 1) batches run at once; an attempt
    /// that no batch has taken after `max_wait` gives up as unavailable.
    pub fn new(max_leaders: usize, max_wait: Duration) -> Self {
        Self {
            state: Mutex::default(),
            max_leaders: max_leaders.max(1),
            max_wait,
        }
    }

    /// Runs `attempt` in a batch with whatever else waits, through
    /// `execute`, which runs a batch together (see [`BatchResult`]).
    /// Blocking.
    pub fn run(
        &self,
        attempt: RotationAttempt<'_>,
        execute: impl Fn(&[Attempt]) -> BatchResult,
    ) -> Outcome {
        let mut state = self.state.lock();
        let id = state.next_id;
        state.next_id += 1;
        state.waiting.push((id, Attempt::new(&attempt)));
        let waker = Arc::new(Condvar::new());
        // Until a batch takes the attempt, it may give up: a batch stuck in
        // the database must not hold every caller behind it for longer than
        // a connection would. Once taken, it waits for its batch's result.
        let mut deadline = Some(Instant::now() + self.max_wait);
        loop {
            if let Some(outcome) = state.results.remove(&id) {
                return outcome;
            }
            if state.leaders < self.max_leaders && !state.waiting.is_empty() {
                self.lead(&mut state, &execute);
                continue;
            }
            state.sleeping.insert(id, waker.clone());
            let timed_out = match deadline {
                None => {
                    waker.wait(&mut state);
                    false
                }
                Some(until) => waker.wait_until(&mut state, until).timed_out(),
            };
            // Woken (and so taken out already), or timed out: out either way.
            state.sleeping.remove(&id);
            if !timed_out {
                continue;
            }
            match state.waiting.iter().position(|(w, _)| *w == id) {
                // Taken by a batch: it waits for that batch's result.
                None => deadline = None,
                // Untaken, but a leader's place is free now (the batch it
                // waited for ended as it timed out, and the wake-up for the
                // next leader was lost on this caller): it leads, rather
                // than give up and leave the others asleep.
                Some(_) if state.leaders < self.max_leaders => {}
                Some(at) => {
                    state.waiting.remove(at);
                    return Err(StoreError::Unavailable(
                        "no turn for the sign-in by cookie in time".into(),
                    ));
                }
            }
        }
    }

    /// Takes a batch, runs it without the lock, files its results. Every
    /// attempt taken gets a result, whatever happens in between (a panic
    /// fails the batch's attempts, not the callers waiting on them).
    fn lead(
        &self,
        state: &mut MutexGuard<'_, State>,
        execute: &impl Fn(&[Attempt]) -> BatchResult,
    ) {
        let (ids, batch) = take_batch(&mut state.waiting);
        state.leaders += 1;
        // Another leader's place still free: attempts left waiting (more
        // than one batch's worth) need not wait for this batch.
        state.wake_next_leader(self.max_leaders);
        let retry_for = self.max_wait;
        let outcomes = MutexGuard::unlocked(state, || {
            let started = Instant::now();
            let outcomes = std::panic::catch_unwind(AssertUnwindSafe(|| {
                tracing::trace!(size = batch.len(), "remember-me rotation batch");
                run_batch(&batch, execute, retry_for)
            }))
            .unwrap_or_default();
            // Under a guard of its own: the batch's outcomes are kept (and
            // handed out) whatever the app's recorder does.
            let ran = started.elapsed();
            let _ = std::panic::catch_unwind(|| crate::telemetry::rotation_batch(batch.len(), ran));
            outcomes
        });
        let mut outcomes = outcomes.into_iter();
        for id in ids {
            let outcome = outcomes.next().unwrap_or_else(|| {
                Err(StoreError::Query(
                    "the remember-me rotation batch did not finish".into(),
                ))
            });
            state.results.insert(id, outcome);
            state.wake(id);
        }
        state.leaders -= 1;
        // A leader's place is free: the sleeping caller of the oldest
        // attempt waiting leads the next batch.
        state.wake_next_leader(self.max_leaders);
    }
}

/// The next batch: the oldest [`MAX_BATCH`] attempts waiting, sorted by
/// series (so rows are usually locked in one order; a deadlock between two
/// processes' batches is still possible: the database fails one of them,
/// which is then retried attempt by attempt). The same series may come twice (the same
/// cookie on parallel requests): one of them rotates, the others find the
/// token replaced, as when they race alone.
fn take_batch(waiting: &mut Vec<(u64, Attempt)>) -> (Vec<u64>, Vec<Attempt>) {
    let rest = waiting.split_off(waiting.len().min(MAX_BATCH));
    let mut taken = std::mem::replace(waiting, rest);
    taken.sort_by(|a, b| a.1.series.as_bytes().cmp(b.1.series.as_bytes()));
    taken.into_iter().unzip()
}

/// One result per attempt. A batch that rolled back where each attempt may
/// do better alone (see [`BatchResult`]) is retried attempt by attempt, for
/// at most `retry_for` **from the failure** (the failed batch has usually
/// waited out a whole lock timeout already: a deadline counted from its
/// start would leave no time to retry), until the database turns out
/// unavailable (then the rest fail as unavailable: nothing of theirs was
/// written, so their cookies stay good). The attempts are retried with
/// [`retrying`] set, so a store can wait only briefly for a row lock that
/// has already outlasted one lock timeout: one locked row then costs its
/// own attempt, not the others'. A batch that was written is never run
/// again (its tokens are already rotated). A panic fails the attempts it
/// touched.
pub(crate) fn run_batch(
    batch: &[Attempt],
    execute: &impl Fn(&[Attempt]) -> BatchResult,
    retry_for: Duration,
) -> Vec<Outcome> {
    let guarded = |batch: &[Attempt]| -> BatchResult {
        match std::panic::catch_unwind(AssertUnwindSafe(|| execute(batch))) {
            Ok(Ok(outcomes)) if outcomes.len() == batch.len() => Ok(outcomes),
            Ok(Ok(_)) => Ok(failed_all(
                batch,
                "the rotation batch answered the wrong number of rows",
            )),
            Ok(Err(error)) => Err(error),
            // Whether a panicking batch was written is unknown: not retried.
            Err(_) => Ok(failed_all(batch, "the remember-me rotation panicked")),
        }
    };
    match guarded(batch) {
        Ok(outcomes) => outcomes,
        Err(error @ StoreError::Unavailable(_)) => every_attempt(batch, &error),
        Err(error) if batch.len() == 1 => vec![Err(error)],
        Err(error) => {
            tracing::warn!(size = batch.len(), %error, "rotation batch failed; retrying one by one");
            let retry_until = Instant::now() + retry_for;
            let _retrying = Retrying::enter();
            // Once the database is unavailable or the time is up, the rest
            // are not tried: each could wait out the connection timeout
            // again, and the callers of a batch wait for all of it.
            let mut unavailable: Option<StoreError> = None;
            batch
                .iter()
                .map(|attempt| {
                    if unavailable.is_none() && Instant::now() >= retry_until {
                        unavailable = Some(StoreError::Unavailable(
                            "no time left to retry the sign-in by cookie".into(),
                        ));
                    }
                    if let Some(error) = &unavailable {
                        return Err(error.clone());
                    }
                    let outcome = match guarded(std::slice::from_ref(attempt)) {
                        Ok(mut outcomes) => outcomes.pop().unwrap_or_else(|| {
                            Err(StoreError::Query("the rotation answered no row".into()))
                        }),
                        Err(error) => Err(error),
                    };
                    if let Err(error @ StoreError::Unavailable(_)) = &outcome {
                        unavailable = Some(error.clone());
                    }
                    outcome
                })
                .collect()
        }
    }
}

thread_local! {
    static RETRYING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[cfg(feature = "postgres")]
/// Whether the batch being executed on this thread is the retry of one
/// attempt of a batch that failed (see [`run_batch`]).
pub(crate) fn retrying() -> bool {
    RETRYING.with(std::cell::Cell::get)
}

/// Sets [`retrying`] for its lifetime.
struct Retrying;

impl Retrying {
    fn enter() -> Self {
        RETRYING.with(|r| r.set(true));
        Self
    }
}

impl Drop for Retrying {
    fn drop(&mut self) {
        RETRYING.with(|r| r.set(false));
    }
}

fn failed_all(batch: &[Attempt], why: &str) -> Vec<Outcome> {
    tracing::error!(size = batch.len(), why, "remember-me rotation batch failed");
    every_attempt(batch, &StoreError::Query(why.to_owned()))
}

/// `error` as the outcome of every attempt of `batch`.
pub(crate) fn every_attempt(batch: &[Attempt], error: &StoreError) -> Vec<Outcome> {
    batch.iter().map(|_| Err(error.clone())).collect()
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod wake_tests;
