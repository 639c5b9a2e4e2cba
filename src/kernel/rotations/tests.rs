//! The queue of sign-ins by cookie: attempts wait for a batch without a
//! thread, and every attempt gets its own outcome or gives up unwritten.

use std::sync::atomic::Ordering::SeqCst;
use std::sync::mpsc;

use super::*;
use crate::store::{
    ExpiryOnUse, NewAuditEvent, NewToken, RotationAttempt, TokenRecord, User, UserId,
};
use crate::threads::Threads;
use crate::token::SecretHash;

fn hash(byte: u8) -> SecretHash {
    SecretHash::from_slice(&[byte; 32]).unwrap()
}

fn attempt(series: u8) -> OwnedRotation {
    OwnedRotation::new(&RotationAttempt {
        series: &hash(series),
        token: &hash(0),
        new_token: &hash(0),
        sealed: &[0; 32],
        now: 0,
        clock_offset_ms: 0,
        expiry: ExpiryOnUse::Keep,
        audit: None,
    })
}

/// A found series whose record id is the series' first byte: each caller
/// can tell its own outcome.
fn found(attempt: &RotationAttempt<'_>) -> FoundSeries {
    FoundSeries {
        record: TokenRecord {
            id: i64::from(attempt.series.as_bytes()[0]),
            series_hash: attempt.series.clone(),
            token_hash: attempt.token.clone(),
            previous_token_hash: None,
            rotated_at: None,
            user_id: UserId::from(i64::from(attempt.series.as_bytes()[0])),
            created_at: 0,
            last_used_at: 0,
            expires_at: i64::MAX,
            user_agent: None,
            ip: None,
            device_key: None,
            sealed_token: None,
        },
        epoch: 0,
        rotated: true,
        audited: false,
        store_now: 0,
    }
}

/// The methods the queue never calls.
macro_rules! unused_methods {
    () => {
        fn find_by_series(&self, _: &SecretHash) -> Result<Option<TokenRecord>, StoreError> {
            unreachable!("the queue asks for batches only")
        }
        fn find_by_series_with_epoch(
            &self,
            _: &SecretHash,
        ) -> Result<Option<(TokenRecord, i64)>, StoreError> {
            unreachable!()
        }
        fn rotate(
            &self,
            _: i64,
            _: &SecretHash,
            _: &SecretHash,
            _: &[u8],
            _: i64,
            _: Option<i64>,
        ) -> Result<bool, StoreError> {
            unreachable!()
        }
        fn insert(&self, _: NewToken<'_>) -> Result<i64, StoreError> {
            unreachable!()
        }
        fn retire_replaced(&self, _: crate::store::Retire<'_>) -> Result<usize, StoreError> {
            unreachable!()
        }
        fn find_owner(&self, _: i64) -> Result<Option<UserId>, StoreError> {
            unreachable!()
        }
        fn delete_series(&self, _: &SecretHash) -> Result<bool, StoreError> {
            unreachable!()
        }
        fn delete_by_id(&self, _: i64, _: Option<&UserId>) -> Result<bool, StoreError> {
            unreachable!()
        }
        fn delete_all_for_user(&self, _: &UserId) -> Result<usize, StoreError> {
            unreachable!()
        }
        fn revoke_all_atomically(
            &self,
            _: &UserId,
            _: &NewAuditEvent<'_>,
        ) -> Result<Option<usize>, StoreError> {
            unreachable!()
        }
        fn list_for_user(&self, _: &UserId) -> Result<Vec<TokenRecord>, StoreError> {
            unreachable!()
        }
        fn list(
            &self,
            _: Option<&UserId>,
            _: Option<i64>,
            _: i64,
        ) -> Result<Vec<TokenRecord>, StoreError> {
            unreachable!()
        }
        fn purge_expired(&self, _: i64) -> Result<usize, StoreError> {
            unreachable!()
        }
    };
}

/// Records each batch's series (and the other store jobs, as `[0]`); the
/// first batch waits for `release`, as a batch stuck on a slow commit
/// would; a series of 0xFF panics; with `reversed`, the outcomes come back
/// in the wrong order.
#[derive(Default)]
struct GatedStore {
    log: parking_lot::Mutex<Vec<Vec<u8>>>,
    entered: parking_lot::Mutex<Option<mpsc::Sender<()>>>,
    release: parking_lot::Mutex<Option<mpsc::Receiver<()>>>,
    /// How many batches wait for `release` (the first ones).
    gated: std::sync::atomic::AtomicUsize,
    reversed: bool,
}

impl GatedStore {
    fn new() -> (Arc<Self>, mpsc::Receiver<()>, mpsc::Sender<()>) {
        Self::with(false)
    }

    fn with(reversed: bool) -> (Arc<Self>, mpsc::Receiver<()>, mpsc::Sender<()>) {
        let (entered, on_enter) = mpsc::channel();
        let (release, on_release) = mpsc::channel();
        let store = Arc::new(Self {
            entered: parking_lot::Mutex::new(Some(entered)),
            release: parking_lot::Mutex::new(Some(on_release)),
            gated: 1.into(),
            reversed,
            ..Self::default()
        });
        (store, on_enter, release)
    }

    fn log(&self) -> Vec<Vec<u8>> {
        self.log.lock().clone()
    }
}

impl TokenStore for GatedStore {
    fn find_and_rotate_all(
        &self,
        attempts: &[RotationAttempt<'_>],
    ) -> Vec<Result<Option<FoundSeries>, StoreError>> {
        let series: Vec<u8> = attempts.iter().map(|a| a.series.as_bytes()[0]).collect();
        self.log.lock().push(series.clone());
        let gated = self
            .gated
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1));
        if gated.is_ok() {
            if let Some(entered) = &*self.entered.lock() {
                let _ = entered.send(());
            }
            if let Some(release) = &*self.release.lock() {
                let _ = release.recv_timeout(Duration::from_secs(10));
            }
        }
        assert!(!series.contains(&0xFF), "the store panicked");
        let mut outcomes: Vec<_> = attempts.iter().map(|a| Ok(Some(found(a)))).collect();
        if self.reversed {
            outcomes.reverse();
        }
        outcomes
    }

    fn find_and_rotate(
        &self,
        attempt: RotationAttempt<'_>,
    ) -> Result<Option<FoundSeries>, StoreError> {
        assert_ne!(attempt.series.as_bytes()[0], 0xFF, "the store panicked");
        Ok(Some(found(&attempt)))
    }

    unused_methods!();
}

/// A store with nothing but `find_and_rotate`: the default
/// `find_and_rotate_all`.
struct OneByOne;

impl TokenStore for OneByOne {
    fn find_and_rotate(
        &self,
        attempt: RotationAttempt<'_>,
    ) -> Result<Option<FoundSeries>, StoreError> {
        assert_ne!(attempt.series.as_bytes()[0], 0xFF, "the store panicked");
        Ok(Some(found(&attempt)))
    }

    unused_methods!();
}

fn queue(store: &Arc<GatedStore>, threads: &Threads, wait: Duration) -> Arc<RotationQueue> {
    RotationQueue::new(store.clone(), None, threads.submitter(), wait)
}

/// Runs `f` on a current-thread runtime, as the server's workers do.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(f)
}

fn id_of(outcome: &Outcome) -> Option<i64> {
    outcome.as_ref().ok()?.as_ref().map(|f| f.record.id)
}

/// Spawns a sign-in by cookie of `series`.
fn spawn_rotate(queue: &Arc<RotationQueue>, series: u8) -> tokio::task::JoinHandle<Outcome> {
    let queue = queue.clone();
    tokio::spawn(async move { queue.rotate(attempt(series)).await })
}

/// Waits (in async land) until `cond` holds, at most 5 s.
async fn until(mut cond: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the condition never held");
}

/// Waits until the gated first batch is in the store.
async fn entered(on_enter: &mpsc::Receiver<()>) {
    until(|| on_enter.try_recv().is_ok()).await;
}

#[test]
fn attempts_wait_for_a_batch_without_a_thread_so_batches_outgrow_the_threads() {
    let (store, on_enter, release) = GatedStore::new();
    // One store thread: waiting for a batch on a thread, no batch could
    // ever hold more than one attempt.
    let threads = Threads::start("test-rotations", 1, 64).unwrap();
    let queue = queue(&store, &threads, Duration::from_secs(10));
    let outcomes = block_on(async {
        let first = spawn_rotate(&queue, 1);
        entered(&on_enter).await;
        // Twenty more sign-ins arrive, in descending order of series.
        let mut rest = Vec::new();
        for series in (2..=21).rev() {
            rest.push((series, spawn_rotate(&queue, series)));
            until(|| queue.state.lock().waiting.len() == rest.len()).await;
        }
        release.send(()).unwrap();
        let mut outcomes = vec![(1, first.await.unwrap())];
        for (series, handle) in rest {
            outcomes.push((series, handle.await.unwrap()));
        }
        until(|| !queue.state.lock().leading).await;
        outcomes
    });
    let log = store.log();
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[0], vec![1]);
    assert_eq!(
        log[1],
        (2..=21).collect::<Vec<u8>>(),
        "one batch, sorted by series"
    );
    // Each caller got its own attempt's outcome.
    for (series, outcome) in outcomes {
        assert_eq!(id_of(&outcome), Some(i64::from(series)), "{outcome:?}");
    }
}

#[test]
fn an_untaken_attempt_gives_up_unwritten_and_a_taken_one_waits_for_its_batch() {
    let (store, on_enter, release) = GatedStore::new();
    let threads = Threads::start("test-rotations", 2, 64).unwrap();
    let queue = queue(&store, &threads, Duration::from_millis(200));
    let (taken, untaken) = block_on(async {
        let taken = spawn_rotate(&queue, 1);
        entered(&on_enter).await;
        // Behind a batch that outlasts the wait: gives up, and leaves the
        // queue at once.
        let untaken = queue.rotate(attempt(2)).await;
        assert!(queue.state.lock().waiting.is_empty(), "withdrawn");
        // The batch ends long after the taken attempt's wait ran out.
        release.send(()).unwrap();
        (taken.await.unwrap(), untaken)
    });
    assert_eq!(id_of(&taken), Some(1), "{taken:?}");
    assert!(
        matches!(untaken, Err(StoreError::Unavailable(_))),
        "{untaken:?}"
    );
    assert_eq!(
        store.log(),
        vec![vec![1]],
        "the attempt that gave up never ran"
    );
}

#[test]
fn an_attempt_whose_request_has_gone_is_not_rotated() {
    let (store, on_enter, release) = GatedStore::new();
    let threads = Threads::start("test-rotations", 1, 64).unwrap();
    let queue = queue(&store, &threads, Duration::from_secs(10));
    let (first, kept) = block_on(async {
        let first = spawn_rotate(&queue, 1);
        entered(&on_enter).await;
        // A client that disconnects while its attempt waits.
        let gone = spawn_rotate(&queue, 2);
        let kept = spawn_rotate(&queue, 3);
        until(|| queue.state.lock().waiting.len() == 2).await;
        gone.abort();
        let _ = gone.await;
        release.send(()).unwrap();
        (first.await.unwrap(), kept.await.unwrap())
    });
    assert_eq!(id_of(&first), Some(1));
    assert_eq!(id_of(&kept), Some(3));
    assert_eq!(store.log(), vec![vec![1], vec![3]]);
}

#[test]
fn a_panicking_store_fails_its_batch_only_and_the_next_batch_runs() {
    let (store, _on_enter, release) = GatedStore::new();
    release.send(()).unwrap(); // the first batch does not wait
    let threads = Threads::start("test-rotations", 1, 64).unwrap();
    let queue = queue(&store, &threads, Duration::from_secs(10));
    let (panicked, next) = block_on(async {
        let panicked = queue.rotate(attempt(0xFF)).await;
        (panicked, queue.rotate(attempt(7)).await)
    });
    assert!(
        matches!(panicked, Err(StoreError::Query(_))),
        "{panicked:?}"
    );
    assert_eq!(id_of(&next), Some(7));
}

#[test]
fn the_default_batch_fails_a_panicking_attempt_alone() {
    let series = [hash(1), hash(0xFF), hash(3)];
    let attempts: Vec<_> = series
        .iter()
        .map(|s| RotationAttempt {
            series: s,
            token: s,
            new_token: s,
            sealed: &[],
            now: 0,
            clock_offset_ms: 0,
            expiry: ExpiryOnUse::Keep,
            audit: None,
        })
        .collect();
    assert!(
        !OneByOne.rotates_in_batches(),
        "not unless the store says so"
    );
    let outcomes = OneByOne.find_and_rotate_all(&attempts);
    let ids: Vec<_> = outcomes.iter().map(id_of).collect();
    assert_eq!(ids, vec![Some(1), None, Some(3)]);
    assert!(matches!(outcomes[1], Err(StoreError::Query(_))));
}

#[test]
fn an_outcome_for_another_series_is_refused() {
    let (store, _on_enter, release) = GatedStore::with(true);
    let threads = Threads::start("test-rotations", 1, 64).unwrap();
    let queue = queue(&store, &threads, Duration::from_secs(10));
    let (first, second, third) = block_on(async {
        let first = spawn_rotate(&queue, 1);
        until(|| !store.log().is_empty()).await;
        let second = spawn_rotate(&queue, 2);
        let third = spawn_rotate(&queue, 3);
        until(|| queue.state.lock().waiting.len() == 2).await;
        release.send(()).unwrap();
        (
            first.await.unwrap(),
            second.await.unwrap(),
            third.await.unwrap(),
        )
    });
    // Alone in its batch, the first is answered right even reversed.
    assert_eq!(id_of(&first), Some(1));
    // The store swapped the two rows: neither is taken for the other's.
    for outcome in [second, third] {
        assert!(matches!(outcome, Err(StoreError::Query(_))), "{outcome:?}");
    }
}

/// The first batch (series 1) gated in the store, then another store job
/// queued (it logs `[0]`) and a second attempt (series 2) waiting.
async fn batch_job_and_attempt(
    store: &Arc<GatedStore>,
    threads: &Threads,
    queue: &Arc<RotationQueue>,
    on_enter: &mpsc::Receiver<()>,
) -> (
    tokio::task::JoinHandle<Outcome>,
    tokio::task::JoinHandle<Outcome>,
) {
    let first = spawn_rotate(queue, 1);
    entered(on_enter).await;
    // The rest of an earlier sign-in, queued while the batch runs.
    let job = store.clone();
    threads
        .submit(move || job.log.lock().push(vec![0]))
        .unwrap();
    let second = spawn_rotate(queue, 2);
    until(|| queue.state.lock().waiting.len() == 1).await;
    (first, second)
}

#[test]
fn the_next_batch_queues_behind_other_store_jobs() {
    let (store, on_enter, release) = GatedStore::new();
    let threads = Threads::start("test-rotations", 1, 64).unwrap();
    let queue = queue(&store, &threads, Duration::from_secs(10));
    let outcome = block_on(async {
        let (first, second) = batch_job_and_attempt(&store, &threads, &queue, &on_enter).await;
        release.send(()).unwrap();
        assert_eq!(id_of(&first.await.unwrap()), Some(1));
        second.await.unwrap()
    });
    assert_eq!(id_of(&outcome), Some(2));
    assert_eq!(
        store.log(),
        vec![vec![1], vec![0], vec![2]],
        "the store job ran between the batches"
    );
}

#[test]
fn with_no_room_to_queue_the_next_batch_the_leader_runs_it() {
    let (store, on_enter, release) = GatedStore::new();
    // Room for one job: the other store job fills it.
    let threads = Threads::start("test-rotations", 1, 1).unwrap();
    let queue = queue(&store, &threads, Duration::from_secs(10));
    let outcome = block_on(async {
        let (first, second) = batch_job_and_attempt(&store, &threads, &queue, &on_enter).await;
        release.send(()).unwrap();
        assert_eq!(id_of(&first.await.unwrap()), Some(1));
        let second = second.await.unwrap();
        // The job runs once the leader has let its thread go.
        until(|| store.log().len() == 3).await;
        second
    });
    assert_eq!(id_of(&outcome), Some(2), "{outcome:?}");
    assert_eq!(store.log(), vec![vec![1], vec![2], vec![0]]);
}

#[test]
fn a_leader_without_room_to_yield_leads_one_batch_more_then_lets_the_jobs_run() {
    let (store, on_enter, release) = GatedStore::new();
    store.gated.store(2, SeqCst); // the first two batches wait
    // One thread, room for one job, which the other store job takes.
    let threads = Threads::start("test-rotations", 1, 1).unwrap();
    let queue = queue(&store, &threads, Duration::from_secs(10));
    let (second, third) = block_on(async {
        let (first, second) = batch_job_and_attempt(&store, &threads, &queue, &on_enter).await;
        release.send(()).unwrap();
        // The leader runs the second batch itself; a third attempt arrives.
        entered(&on_enter).await;
        let third = spawn_rotate(&queue, 3);
        until(|| queue.state.lock().waiting.len() == 1).await;
        release.send(()).unwrap();
        assert_eq!(id_of(&first.await.unwrap()), Some(1));
        let answers = (second.await.unwrap(), third.await.unwrap());
        // The job runs once the leader has let its thread go.
        until(|| store.log().len() == 3).await;
        answers
    });
    assert_eq!(id_of(&second), Some(2), "{second:?}");
    // Still no room: the job queued goes first, the third fails unwritten.
    assert!(
        matches!(third, Err(StoreError::Unavailable(_))),
        "{third:?}"
    );
    assert_eq!(store.log(), vec![vec![1], vec![2], vec![0]]);
}

#[test]
fn a_full_queue_refuses_at_once() {
    let (store, on_enter, release) = GatedStore::new();
    let threads = Threads::start("test-rotations", 1, 64).unwrap();
    let queue = queue(&store, &threads, Duration::from_secs(10));
    let (refused, answered) = block_on(async {
        let first = spawn_rotate(&queue, 1);
        entered(&on_enter).await;
        let waiting: Vec<_> = (0..MAX_WAITING).map(|_| spawn_rotate(&queue, 2)).collect();
        until(|| queue.state.lock().waiting.len() == MAX_WAITING).await;
        let refused = queue.rotate(attempt(3)).await;
        release.send(()).unwrap();
        assert_eq!(id_of(&first.await.unwrap()), Some(1));
        let mut answered = 0;
        for handle in waiting {
            answered += usize::from(id_of(&handle.await.unwrap()) == Some(2));
        }
        (refused, answered)
    });
    assert!(
        matches!(refused, Err(StoreError::Unavailable(_))),
        "{refused:?}"
    );
    assert_eq!(answered, MAX_WAITING, "the others were served");
}

#[test]
fn without_store_threads_every_waiting_attempt_fails_as_unavailable() {
    let (store, _on_enter, _release) = GatedStore::new();
    let mut threads = Threads::start("test-rotations", 1, 64).unwrap();
    let queue = queue(&store, &threads, Duration::from_secs(10));
    assert!(threads.end());
    let outcome = block_on(queue.rotate(attempt(1)));
    assert!(
        matches!(outcome, Err(StoreError::Unavailable(_))),
        "{outcome:?}"
    );
    assert!(store.log().is_empty());
    assert!(
        !queue.state.lock().leading,
        "the next attempt may start a batch"
    );
}

/// The job leading the batches unwinds after a batch (a bug outside the
/// store call, which has its own guard) while another attempt waits: that
/// attempt fails as unavailable at once, not after its whole wait, and the
/// next sign-in leads a batch again.
#[test]
fn a_leader_that_unwinds_fails_the_waiting_attempts_and_the_next_one_leads() {
    let (store, on_enter, release) = GatedStore::new();
    let threads = Threads::start("test-rotations", 1, 64).unwrap();
    // A wait far longer than the test allows: only the guard can answer.
    let queue = queue(&store, &threads, Duration::from_secs(600));
    let (first, second, third) = block_on(async {
        let first = spawn_rotate(&queue, 1);
        entered(&on_enter).await;
        let second = spawn_rotate(&queue, 2);
        until(|| queue.state.lock().waiting.len() == 1).await;
        queue.unwind_after_batch.store(true, SeqCst);
        release.send(()).unwrap();
        let first = first.await.unwrap();
        let second = tokio::time::timeout(Duration::from_secs(10), second)
            .await
            .expect("the waiting attempt is answered, not left to its wait")
            .unwrap();
        (first, second, queue.rotate(attempt(3)).await)
    });
    assert_eq!(id_of(&first), Some(1));
    assert!(
        matches!(second, Err(StoreError::Unavailable(_))),
        "{second:?}"
    );
    assert_eq!(id_of(&third), Some(3));
    assert_eq!(store.log(), vec![vec![1], vec![3]], "2 was never written");
}

/// A store that records the thread of each batch.
#[derive(Default)]
struct ThreadsOfBatches(parking_lot::Mutex<Vec<std::thread::ThreadId>>);

impl TokenStore for ThreadsOfBatches {
    fn find_and_rotate(
        &self,
        attempt: RotationAttempt<'_>,
    ) -> Result<Option<FoundSeries>, StoreError> {
        self.0.lock().push(std::thread::current().id());
        Ok(Some(found(&attempt)))
    }

    unused_methods!();
}

/// The rest of a sign-in runs on the thread that ran its batch, with the
/// batch's outcome for its own attempt: no second store job.
#[test]
fn a_quick_continuation_runs_on_the_thread_that_ran_the_batch() {
    let store = Arc::new(ThreadsOfBatches::default());
    let threads = Threads::start("test-rotations", 4, 64).unwrap();
    let queue = RotationQueue::new(
        store.clone(),
        None,
        threads.submitter(),
        Duration::from_secs(10),
    );
    for series in 1..=5 {
        let (ran_on, outcome) = block_on(queue.rotate_then(attempt(series), |outcome, _| {
            (std::thread::current().id(), outcome)
        }))
        .unwrap();
        assert_eq!(id_of(&outcome), Some(i64::from(series)));
        assert_eq!(Some(&ran_on), store.0.lock().last(), "sign-in {series}");
    }
}

/// Continuations that take long (a directory over the network) are not
/// run one after another by the leader: past the inline budget it hands
/// them to the other store threads, which run them side by side.
#[test]
fn slow_continuations_are_handed_to_other_store_threads() {
    use std::sync::atomic::AtomicUsize;
    let (store, on_enter, release) = GatedStore::new();
    let threads = Threads::start("test-rotations", 4, 64).unwrap();
    let queue = queue(&store, &threads, Duration::from_secs(10));
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let slow = |series: u8| {
        let (queue, running, most) = (queue.clone(), running.clone(), most.clone());
        tokio::spawn(async move {
            queue
                .rotate_then(attempt(series), move |outcome, _| {
                    let now = running.fetch_add(1, SeqCst) + 1;
                    most.fetch_max(now, SeqCst);
                    std::thread::sleep(Duration::from_millis(100));
                    running.fetch_sub(1, SeqCst);
                    outcome
                })
                .await
        })
    };
    let outcomes = block_on(async {
        let first = spawn_rotate(&queue, 1);
        entered(&on_enter).await;
        let rest: Vec<_> = (2..=4).map(slow).collect();
        until(|| queue.state.lock().waiting.len() == 3).await;
        release.send(()).unwrap();
        first.await.unwrap().unwrap();
        let mut outcomes = Vec::new();
        for handle in rest {
            outcomes.push(handle.await.unwrap().unwrap());
        }
        outcomes
    });
    assert_eq!(store.log(), vec![vec![1], vec![2, 3, 4]]);
    for (series, outcome) in (2..=4).zip(outcomes) {
        assert_eq!(id_of(&outcome), Some(series));
    }
    assert!(
        most.load(SeqCst) >= 2,
        "the slow continuations ran one by one"
    );
}

/// A continuation that panics fails its own request (an error, not a
/// hang) and neither the thread nor the next sign-in.
#[test]
fn a_panicking_continuation_fails_its_request_only() {
    let (store, _on_enter, release) = GatedStore::new();
    release.send(()).unwrap();
    let threads = Threads::start("test-rotations", 1, 64).unwrap();
    let queue = queue(&store, &threads, Duration::from_secs(10));
    let (panicked, next) = block_on(async {
        let panicked = queue
            .rotate_then(attempt(1), |_, _| -> Outcome {
                panic!("the sign-in has a bug")
            })
            .await;
        (panicked, queue.rotate(attempt(2)).await)
    });
    assert!(
        matches!(panicked, Err(StoreError::Query(_))),
        "{panicked:?}"
    );
    assert_eq!(id_of(&next), Some(2));
}

/// A directory that answers only `find_by_ids`, logging each call: user
/// 2 is gone; with `fail`, every read fails.
#[derive(Default)]
struct Directory {
    calls: parking_lot::Mutex<Vec<Vec<UserId>>>,
    fail: bool,
}

impl crate::store::UserDirectory for Directory {
    fn find_by_username(&self, _: &str) -> Result<Option<User>, StoreError> {
        unreachable!("the queue reads users by id")
    }
    fn find_by_id(&self, _: &UserId) -> Result<Option<User>, StoreError> {
        panic!("the queue read a user on its own")
    }
    fn find_by_ids(&self, ids: &[UserId]) -> Result<Vec<Option<User>>, StoreError> {
        self.calls.lock().push(ids.to_vec());
        if self.fail {
            return Err(StoreError::Unavailable("down".into()));
        }
        let user = |id: &UserId| (id.as_str() != "2").then(|| User::new(id.clone(), "someone"));
        Ok(ids.iter().map(user).collect())
    }
}

/// Three sign-ins in one batch (one waits behind the gated first batch
/// with `rotate_then`), with `directory`: each one's owner.
fn owners_of_a_batch(directory: &Arc<Directory>) -> Vec<Owner> {
    let (store, on_enter, release) = GatedStore::new();
    let threads = Threads::start("test-rotations", 2, 64).unwrap();
    let users: Arc<dyn crate::store::UserDirectory> = directory.clone();
    let queue = RotationQueue::new(
        store.clone(),
        Some(users),
        threads.submitter(),
        Duration::from_secs(10),
    );
    let owners = block_on(async {
        let first = spawn_rotate(&queue, 1);
        entered(&on_enter).await;
        let rest: Vec<_> = [4, 2, 3, 3]
            .into_iter()
            .map(|series| {
                let queue = queue.clone();
                tokio::spawn(async move {
                    queue
                        .rotate_then(attempt(series), |_, owner| owner)
                        .await
                        .unwrap()
                })
            })
            .collect();
        until(|| queue.state.lock().waiting.len() == 4).await;
        release.send(()).unwrap();
        first.await.unwrap().unwrap();
        let mut owners = Vec::new();
        for handle in rest {
            owners.push(handle.await.unwrap());
        }
        owners
    });
    assert_eq!(store.log(), vec![vec![1], vec![2, 3, 3, 4]]);
    owners
}

/// The owners of a batch's rotated tokens are read in one call of the
/// directory (each id once), and each sign-in gets its own owner, or
/// none for a user the directory no longer knows (the sign-in reads it
/// again before it ends the series).
#[test]
fn a_batch_reads_its_owners_in_one_call() {
    let directory = Arc::new(Directory::default());
    let owners = owners_of_a_batch(&directory);
    let ids = |ids: &[i64]| ids.iter().map(|&id| UserId::from(id)).collect::<Vec<_>>();
    assert_eq!(*directory.calls.lock(), vec![ids(&[1]), ids(&[2, 3, 4])]);
    let got: Vec<_> = owners
        .iter()
        .map(|o| o.as_ref().map(|u| u.id.clone()))
        .collect();
    let user = |id: i64| Some(UserId::from(id));
    assert_eq!(got, vec![user(4), None, user(3), user(3)]);
}

/// A directory that cannot answer leaves each sign-in to read its owner
/// itself (`None`), rather than failing sign-ins whose tokens rotated.
#[test]
fn a_failed_read_of_the_owners_leaves_each_sign_in_to_read_its_own() {
    let directory = Arc::new(Directory {
        fail: true,
        ..Directory::default()
    });
    let owners = owners_of_a_batch(&directory);
    assert_eq!(directory.calls.lock().len(), 2);
    assert!(owners.iter().all(Option::is_none), "{}", owners.len());
}
