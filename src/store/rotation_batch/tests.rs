use std::sync::{Arc, Barrier};

use super::*;
use crate::store::TokenRecord;

fn hash(byte: u8) -> SecretHash {
    SecretHash::from_slice(&[byte; 32]).unwrap()
}

/// A found series whose record id is the series' first byte.
fn found(attempt: &Attempt) -> Option<FoundSeries> {
    let id = i64::from(attempt.series.as_bytes()[0]);
    Some(FoundSeries {
        record: TokenRecord {
            id,
            series_hash: attempt.series.clone(),
            token_hash: attempt.token.clone(),
            previous_token_hash: None,
            rotated_at: None,
            user_id: id.into(),
            created_at: 0,
            last_used_at: 0,
            expires_at: 1,
            user_agent: None,
            ip: None,
            device_key: None,
            sealed_token: None,
        },
        epoch: 0,
        rotated: true,
        audited: false,
        store_now: 0,
    })
}

pub(super) fn run(
    batches: &RotationBatches,
    series: u8,
    execute: impl Fn(&[Attempt]) -> BatchResult,
) -> Outcome {
    batches.run(
        RotationAttempt {
            series: &hash(series),
            token: &hash(200),
            new_token: &hash(201),
            sealed: &[0; 32],
            now: 0,
            clock_offset_ms: 0,
            expiry: ExpiryOnUse::Keep,
            audit: None,
        },
        execute,
    )
}

pub(super) fn all_found(batch: &[Attempt]) -> BatchResult {
    Ok(batch.iter().map(|a| Ok(found(a))).collect())
}

fn attempts(series: &[u8]) -> Vec<Attempt> {
    series
        .iter()
        .map(|&series| Attempt {
            series: hash(series),
            token: hash(0),
            new_token: hash(0),
            sealed: vec![0; 32],
            now: 0,
            clock_offset_ms: 0,
            expiry: ExpiryOnUse::Keep,
            audit: None,
        })
        .collect()
}

/// A retry budget that never runs out in a test.
fn far() -> Duration {
    Duration::from_secs(600)
}

pub(super) fn id_of(outcome: &Outcome) -> i64 {
    outcome.as_ref().unwrap().as_ref().unwrap().record.id
}

#[test]
fn alone_a_caller_runs_a_batch_of_one_at_once() {
    let batches = RotationBatches::new(1, Duration::from_secs(5));
    let sizes = Mutex::new(Vec::new());
    let outcome = run(&batches, 7, |batch| {
        sizes.lock().push(batch.len());
        all_found(batch)
    });
    assert_eq!(id_of(&outcome), 7);
    assert_eq!(*sizes.lock(), [1]);
}

/// Callers arriving while batches run share the next ones, each gets its
/// own row (the same series twice included), and no more than
/// `max_leaders` batches run at once.
#[test]
fn callers_share_batches_get_their_own_rows_and_leaders_are_bounded() {
    const CALLERS: u8 = 24;
    let batches = Arc::new(RotationBatches::new(2, Duration::from_secs(5)));
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let most_running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Arc::new(Barrier::new(usize::from(CALLERS)));
    let callers: Vec<_> = (1..=CALLERS)
        .map(|caller| {
            let (batches, sizes, start) = (batches.clone(), sizes.clone(), start.clone());
            let (running, most_running) = (running.clone(), most_running.clone());
            // Callers 1 and 2 present the same series.
            let series = caller.max(2);
            std::thread::spawn(move || {
                let execute = move |batch: &[Attempt]| {
                    use std::sync::atomic::Ordering::SeqCst;
                    let now = running.fetch_add(1, SeqCst) + 1;
                    most_running.fetch_max(now, SeqCst);
                    sizes.lock().push(batch.len());
                    // Slow enough that the others queue behind it.
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    running.fetch_sub(1, SeqCst);
                    all_found(batch)
                };
                start.wait();
                (series, run(&batches, series, execute))
            })
        })
        .collect();
    for caller in callers {
        let (series, outcome) = caller.join().unwrap();
        assert_eq!(id_of(&outcome), i64::from(series), "its own row");
    }
    let sizes = sizes.lock();
    assert_eq!(sizes.iter().sum::<usize>(), usize::from(CALLERS));
    assert!(
        sizes.len() < usize::from(CALLERS) && sizes.iter().any(|&n| n > 1),
        "batched: {sizes:?}"
    );
    let most = most_running.load(std::sync::atomic::Ordering::SeqCst);
    assert!((1..=2).contains(&most), "{most} batches at once");
}

#[test]
fn a_batch_is_the_oldest_max_batch_attempts_sorted_by_series() {
    let mut waiting: Vec<_> = (0..).zip(attempts(&[5, 3, 5, 9, 3])).collect();
    let (ids, batch) = take_batch(&mut waiting);
    let series: Vec<u8> = batch.iter().map(|a| a.series.as_bytes()[0]).collect();
    assert_eq!(series, [3, 3, 5, 5, 9], "in series order, repeats included");
    assert_eq!(ids, [1, 4, 0, 2, 3]);
    assert!(waiting.is_empty());

    let all: Vec<u8> = (0..=u8::MAX).rev().collect();
    let mut waiting: Vec<_> = (0..).zip(attempts(&all)).collect();
    let (ids, _) = take_batch(&mut waiting);
    assert_eq!(ids.len(), MAX_BATCH);
    assert!(ids.iter().all(|&id| id < MAX_BATCH as u64), "the oldest");
    assert_eq!(waiting.len(), 256 - MAX_BATCH);
    assert_eq!(waiting[0].0, MAX_BATCH as u64, "the rest wait in order");
}

#[test]
fn a_batch_that_was_not_written_is_retried_one_by_one() {
    let batch = attempts(&[1, 2, 3]);
    // Series 2 fails any batch holding it (rolled back).
    let calls = Mutex::new(Vec::new());
    let execute = |batch: &[Attempt]| {
        calls.lock().push(batch.len());
        if batch.iter().any(|a| a.series.as_bytes()[0] == 2) {
            return Err(StoreError::Query("deadlock detected".into()));
        }
        all_found(batch)
    };
    let outcomes = run_batch(&batch, &execute, far());
    assert_eq!(*calls.lock(), [3, 1, 1, 1]);
    assert_eq!(id_of(&outcomes[0]), 1);
    assert!(matches!(outcomes[1], Err(StoreError::Query(_))));
    assert_eq!(id_of(&outcomes[2]), 3);

    // Unavailable: no retries, every attempt gets the error.
    let calls = Mutex::new(0);
    let down = |_: &[Attempt]| {
        *calls.lock() += 1;
        Err(StoreError::Unavailable("down".into()))
    };
    let outcomes = run_batch(&batch, &down, far());
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Err(StoreError::Unavailable(_))))
    );
    assert_eq!(*calls.lock(), 1);
}

/// Retrying one by one stops at the deadline, or at the first attempt
/// that finds the database unavailable: the rest fail as unavailable
/// untried (nothing of theirs was written), so a row lock held elsewhere
/// cannot hold a batch's callers for a lock timeout per attempt.
#[test]
fn retrying_one_by_one_stops_at_the_deadline_or_when_the_database_is_gone() {
    let batch = attempts(&[1, 2, 3, 4]);
    let calls = Mutex::new(Vec::new());
    let slow_alone = |batch: &[Attempt]| {
        calls.lock().push(batch.len());
        if batch.len() > 1 {
            return Err(StoreError::Query("lock timeout".into()));
        }
        std::thread::sleep(Duration::from_millis(60));
        all_found(batch)
    };
    let outcomes = run_batch(&batch, &slow_alone, Duration::from_millis(30));
    assert_eq!(*calls.lock(), [4, 1], "one retry, then the time was up");
    assert_eq!(id_of(&outcomes[0]), 1);
    assert!(
        outcomes[1..]
            .iter()
            .all(|o| matches!(o, Err(StoreError::Unavailable(_)))),
        "{outcomes:?}"
    );

    // An attempt alone that finds the database gone (an outcome, not a
    // batch error: the pool had no connection) ends the retries too.
    let calls = Mutex::new(Vec::new());
    let gone_alone = |batch: &[Attempt]| {
        calls.lock().push(batch.len());
        if batch.len() > 1 {
            return Err(StoreError::Query("deadlock detected".into()));
        }
        Ok(every_attempt(
            batch,
            &StoreError::Unavailable("no connection".into()),
        ))
    };
    let outcomes = run_batch(&batch, &gone_alone, far());
    assert_eq!(*calls.lock(), [4, 1]);
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Err(StoreError::Unavailable(_))))
    );
}

/// An attempt that a batch has taken waits for that batch's result,
/// however long it takes, even when another caller leads it: the batch
/// may rotate its token, and a caller that gave up would keep the old
/// cookie, whose next use would look like theft.
#[test]
fn a_taken_attempt_waits_for_its_batch_beyond_the_wait_limit() {
    let max_wait = Duration::from_millis(200);
    let batches = Arc::new(RotationBatches::new(1, max_wait));
    let first_running = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Batch 1 (series 1) runs until callers 2 and 3 wait; the batch of
    // those two then takes longer than `max_wait`.
    let execute = {
        let (batches, first_running) = (batches.clone(), first_running.clone());
        move |batch: &[Attempt]| {
            if batch.len() == 1 && batch[0].series == hash(1) {
                first_running.store(true, std::sync::atomic::Ordering::SeqCst);
                while batches.state.lock().waiting.len() < 2 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            } else {
                std::thread::sleep(max_wait * 2);
            }
            all_found(batch)
        }
    };
    let caller = |series: u8| {
        let (batches, execute) = (batches.clone(), execute.clone());
        std::thread::spawn(move || run(&batches, series, execute))
    };
    let first = caller(1);
    while !first_running.load(std::sync::atomic::Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let (second, third) = (caller(2), caller(3));
    assert_eq!(id_of(&first.join().unwrap()), 1);
    assert_eq!(id_of(&second.join().unwrap()), 2, "the leader's or not");
    assert_eq!(id_of(&third.join().unwrap()), 3, "the leader's or not");
}

/// A written batch is never run again, even when one of its rows failed
/// to decode or it panicked: its tokens are already rotated, and running
/// it again would make their callers look like a replay.
#[test]
fn a_written_batch_is_never_retried() {
    let batch = attempts(&[1, 2, 3]);
    let calls = Mutex::new(0);
    let one_bad_row = |batch: &[Attempt]| {
        *calls.lock() += 1;
        Ok(batch
            .iter()
            .map(|a| match a.series.as_bytes()[0] {
                2 => Err(StoreError::Query("stored hash is not 32 bytes".into())),
                _ => Ok(found(a)),
            })
            .collect())
    };
    let outcomes = run_batch(&batch, &one_bad_row, far());
    assert_eq!(*calls.lock(), 1);
    assert_eq!(id_of(&outcomes[0]), 1);
    assert!(outcomes[1].is_err());
    assert_eq!(id_of(&outcomes[2]), 3);

    let calls = Mutex::new(0);
    let panics = |_: &[Attempt]| -> BatchResult {
        *calls.lock() += 1;
        panic!("boom")
    };
    let outcomes = run_batch(&batch, &panics, far());
    assert_eq!(*calls.lock(), 1);
    assert!(outcomes.iter().all(Result::is_err));
}

/// A caller whose attempt no batch has taken gives up after `max_wait`
/// (unavailable, nothing written for it); the batch that was running
/// still finishes for its own caller.
#[test]
fn a_caller_stuck_behind_a_slow_batch_gives_up_untaken() {
    let batches = Arc::new(RotationBatches::new(1, Duration::from_millis(50)));
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let slow = {
        let (batches, sizes) = (batches.clone(), sizes.clone());
        std::thread::spawn(move || {
            run(&batches, 1, |batch: &[Attempt]| {
                sizes.lock().push(batch.len());
                std::thread::sleep(Duration::from_millis(400));
                all_found(batch)
            })
        })
    };
    while sizes.lock().is_empty() {
        std::thread::sleep(Duration::from_millis(1));
    }
    let started = Instant::now();
    let outcome = run(&batches, 2, |batch: &[Attempt]| {
        sizes.lock().push(batch.len());
        all_found(batch)
    });
    assert!(
        matches!(outcome, Err(StoreError::Unavailable(_))),
        "{outcome:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "gave up in time"
    );
    assert_eq!(id_of(&slow.join().unwrap()), 1);
    assert_eq!(*sizes.lock(), [1], "the abandoned attempt never ran");
}

#[test]
fn a_panicking_leader_leaves_the_batches_usable() {
    let batches = RotationBatches::new(1, Duration::from_secs(5));
    let boom = |_: &[Attempt]| -> BatchResult { panic!("boom") };
    assert!(matches!(run(&batches, 1, boom), Err(StoreError::Query(_))));
    assert_eq!(
        id_of(&run(&batches, 2, all_found)),
        2,
        "the next caller leads"
    );
}

/// Callers that queue behind a batch are led as it ends: the caller of the
/// oldest attempt is woken to lead (else they sleep to their deadline).
#[test]
fn the_next_batch_starts_as_the_last_ends() {
    const QUEUED: usize = 8;
    let batches = Arc::new(RotationBatches::new(1, Duration::from_secs(10)));
    let started = std::time::Instant::now();
    let (first_runs_tx, first_runs_rx) = std::sync::mpsc::channel();
    let first = {
        let batches = batches.clone();
        std::thread::spawn(move || {
            run(&batches, 1, |batch| {
                let _ = first_runs_tx.send(());
                // Long enough for the others to queue and fall asleep.
                std::thread::sleep(Duration::from_millis(100));
                all_found(batch)
            })
        })
    };
    first_runs_rx.recv().unwrap();
    let queued: Vec<_> = (0..QUEUED)
        .map(|i| {
            let batches = batches.clone();
            std::thread::spawn(move || run(&batches, 10 + i as u8, all_found))
        })
        .collect();
    assert_eq!(id_of(&first.join().unwrap()), 1);
    for (i, caller) in queued.into_iter().enumerate() {
        assert_eq!(id_of(&caller.join().unwrap()), 10 + i as i64);
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "the queued callers waited {took:?}"
    );
}
