//! The wake-ups of [`RotationBatches`] that hang on timing, made
//! deterministic: the test sets the count of running batches under the
//! lock (as a batch of another caller would) and decides who is woken.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use super::tests::{all_found, id_of, run};
use super::*;

/// Waits (at most 10 s) until `n` callers are asleep.
fn until_asleep(batches: &RotationBatches, n: usize) {
    let until = Instant::now() + Duration::from_secs(10);
    while batches.state.lock().sleeping.len() < n {
        assert!(Instant::now() < until, "the callers did not go to sleep");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The race at the end of a caller's wait: its time runs out just as the
/// batch it waited for ends, so the batch's wake-up for the next leader
/// finds it awake already and reaches nobody. With a leader's place free
/// and its attempt untaken, the caller leads the next batch, for itself and
/// for the callers asleep behind it, instead of giving up and leaving them
/// asleep until their own time runs out.
#[test]
fn a_caller_whose_wait_ends_as_a_leaders_place_frees_leads_the_next_batch() {
    // Long enough for the set-up below to finish well inside the first
    // caller's wait, on a loaded machine too (a slow set-up fails the
    // test; it cannot make it pass).
    let max_wait = Duration::from_secs(3);
    let batches = Arc::new(RotationBatches::new(1, max_wait));
    // Another caller's batch runs: the callers below go to sleep.
    batches.state.lock().leaders = 1;
    let callers: Vec<_> = [1_u8, 2]
        .into_iter()
        .map(|series| {
            let shared = batches.clone();
            let caller = std::thread::spawn(move || run(&shared, series, all_found));
            until_asleep(&batches, usize::from(series)); // 1 arrives first
            caller
        })
        .collect();
    // That batch ends, and its wake-up is lost: nobody is woken.
    batches.state.lock().leaders = 0;
    let outcomes: Vec<_> = callers.into_iter().map(|c| c.join().unwrap()).collect();
    assert!(
        outcomes.iter().all(Result::is_ok),
        "a caller gave up with a leader's place free: {outcomes:?}"
    );
    assert_eq!(id_of(&outcomes[0]), 1);
    assert_eq!(id_of(&outcomes[1]), 2);
}

/// With two leaders' places, a batch that leaves attempts waiting (more
/// than [`MAX_BATCH`] of them) wakes a caller at its start to lead the next
/// batch beside it, rather than leave them asleep until it ends.
#[test]
fn attempts_beyond_one_batch_start_a_second_batch_beside_the_first() {
    let batches = Arc::new(RotationBatches::new(2, Duration::from_secs(60)));
    // Both places taken: every caller below goes to sleep.
    batches.state.lock().leaders = 2;
    let callers = MAX_BATCH + 2;
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..callers)
        .map(|i| {
            let (batches, running, most) = (batches.clone(), running.clone(), most.clone());
            std::thread::spawn(move || {
                let series = u8::try_from(i).unwrap();
                run(&batches, series, |batch| {
                    most.fetch_max(running.fetch_add(1, SeqCst) + 1, SeqCst);
                    // Runs until a second batch runs beside it, or 3 s.
                    let until = Instant::now() + Duration::from_secs(3);
                    while most.load(SeqCst) < 2 && Instant::now() < until {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    running.fetch_sub(1, SeqCst);
                    all_found(batch)
                })
            })
        })
        .collect();
    until_asleep(&batches, callers);
    // The running batches end and wake one caller, as a batch's end does.
    {
        let mut state = batches.state.lock();
        state.leaders = 0;
        state.wake_next_leader(2);
    }
    for (i, handle) in handles.into_iter().enumerate() {
        assert_eq!(id_of(&handle.join().unwrap()), i64::try_from(i).unwrap());
    }
    assert_eq!(
        most.load(SeqCst),
        2,
        "the attempts left over waited for the first batch to end"
    );
}
