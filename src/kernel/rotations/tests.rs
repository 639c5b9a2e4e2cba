//! The queue of sign-ins by cookie: attempts wait for a batch without a
//! thread, and every attempt gets its own outcome or gives up unwritten.

use std::sync::mpsc;

use super::*;
use crate::store::{ExpiryOnUse, NewAuditEvent, NewToken, RotationAttempt, TokenRecord, UserId};
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
            user_id: UserId::from(1),
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

/// Records each batch's series; the first batch waits for `release`, as a
/// batch stuck on a slow commit would; a series of 0xFF panics.
struct GatedStore {
    batches: parking_lot::Mutex<Vec<Vec<u8>>>,
    entered: parking_lot::Mutex<Option<mpsc::Sender<()>>>,
    release: parking_lot::Mutex<Option<mpsc::Receiver<()>>>,
}

impl GatedStore {
    fn new() -> (Arc<Self>, mpsc::Receiver<()>, mpsc::Sender<()>) {
        let (entered, on_enter) = mpsc::channel();
        let (release, on_release) = mpsc::channel();
        let store = Arc::new(Self {
            batches: parking_lot::Mutex::default(),
            entered: parking_lot::Mutex::new(Some(entered)),
            release: parking_lot::Mutex::new(Some(on_release)),
        });
        (store, on_enter, release)
    }

    fn batches(&self) -> Vec<Vec<u8>> {
        self.batches.lock().clone()
    }
}

impl TokenStore for GatedStore {
    fn find_and_rotate_all(
        &self,
        attempts: &[RotationAttempt<'_>],
    ) -> Vec<Result<Option<FoundSeries>, StoreError>> {
        let series: Vec<u8> = attempts.iter().map(|a| a.series.as_bytes()[0]).collect();
        self.batches.lock().push(series.clone());
        if let Some(entered) = self.entered.lock().take() {
            let _ = entered.send(());
            let release = self.release.lock().take().unwrap();
            let _ = release.recv_timeout(Duration::from_secs(10));
        }
        assert!(!series.contains(&0xFF), "the store panicked");
        attempts.iter().map(|a| Ok(Some(found(a)))).collect()
    }

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
    fn insert(&self, _: NewToken<'_>, _: u32) -> Result<i64, StoreError> {
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
}

fn queue(store: &Arc<GatedStore>, threads: &Threads, wait: Duration) -> Arc<RotationQueue> {
    RotationQueue::new(store.clone(), threads.submitter(), wait)
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

#[test]
fn attempts_wait_for_a_batch_without_a_thread_so_batches_outgrow_the_threads() {
    let (store, entered, release) = GatedStore::new();
    // One store thread: waiting for a batch on a thread, no batch could
    // ever hold more than one attempt.
    let threads = Threads::start("test-rotations", 1, 64).unwrap();
    let queue = queue(&store, &threads, Duration::from_secs(10));
    let outcomes = block_on(async {
        let first = tokio::spawn({
            let queue = queue.clone();
            async move { queue.rotate(attempt(1)).await }
        });
        // The first batch is in the store; twenty more sign-ins arrive.
        while entered.try_recv().is_err() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let rest: Vec<_> = (2..=21)
            .map(|series| {
                let queue = queue.clone();
                tokio::spawn(async move { queue.rotate(attempt(series)).await })
            })
            .collect();
        while queue.state.lock().waiting.len() < 20 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        release.send(()).unwrap();
        let mut outcomes = vec![first.await.unwrap()];
        for handle in rest {
            outcomes.push(handle.await.unwrap());
        }
        outcomes
    });
    let batches = store.batches();
    assert_eq!(batches.len(), 2, "{batches:?}");
    assert_eq!(batches[0], vec![1]);
    assert_eq!(
        batches[1],
        (2..=21).collect::<Vec<u8>>(),
        "one batch, sorted"
    );
    // Each caller got its own attempt's outcome.
    let ids: Vec<_> = outcomes.iter().map(id_of).collect();
    assert_eq!(ids, (1..=21).map(Some).collect::<Vec<_>>());
    assert!(!queue.state.lock().leading, "no batch job left behind");
}

#[test]
fn an_untaken_attempt_gives_up_unwritten_and_a_taken_one_waits_for_its_batch() {
    let (store, entered, release) = GatedStore::new();
    let threads = Threads::start("test-rotations", 2, 64).unwrap();
    let queue = queue(&store, &threads, Duration::from_millis(200));
    let (taken, untaken) = block_on(async {
        let taken = tokio::spawn({
            let queue = queue.clone();
            async move { queue.rotate(attempt(1)).await }
        });
        while entered.try_recv().is_err() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Behind a batch that outlasts the wait: gives up.
        let untaken = queue.rotate(attempt(2)).await;
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
        store.batches(),
        vec![vec![1]],
        "the attempt that gave up never ran"
    );
}

#[test]
fn an_attempt_whose_request_has_gone_is_not_rotated() {
    let (store, entered, release) = GatedStore::new();
    let threads = Threads::start("test-rotations", 1, 64).unwrap();
    let queue = queue(&store, &threads, Duration::from_secs(10));
    let kept = block_on(async {
        let first = tokio::spawn({
            let queue = queue.clone();
            async move { queue.rotate(attempt(1)).await }
        });
        while entered.try_recv().is_err() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // A client that disconnects while its attempt waits.
        let gone = tokio::spawn({
            let queue = queue.clone();
            async move { queue.rotate(attempt(2)).await }
        });
        let kept = tokio::spawn({
            let queue = queue.clone();
            async move { queue.rotate(attempt(3)).await }
        });
        while queue.state.lock().waiting.len() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        gone.abort();
        let _ = gone.await;
        release.send(()).unwrap();
        assert_eq!(id_of(&first.await.unwrap()), Some(1));
        kept.await.unwrap()
    });
    assert_eq!(id_of(&kept), Some(3));
    assert_eq!(store.batches(), vec![vec![1], vec![3]]);
}

#[test]
fn a_panicking_store_fails_its_batch_only_and_the_next_batch_runs() {
    let (store, _entered, release) = GatedStore::new();
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
fn without_store_threads_every_waiting_attempt_fails_as_unavailable() {
    let (store, _entered, _release) = GatedStore::new();
    let mut threads = Threads::start("test-rotations", 1, 64).unwrap();
    let queue = queue(&store, &threads, Duration::from_secs(10));
    assert!(threads.end());
    let outcome = block_on(queue.rotate(attempt(1)));
    assert!(
        matches!(outcome, Err(StoreError::Unavailable(_))),
        "{outcome:?}"
    );
    assert!(store.batches().is_empty());
    assert!(
        !queue.state.lock().leading,
        "the next attempt may start a batch"
    );
}
