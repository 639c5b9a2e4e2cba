use super::*;

#[test]
fn jobs_run_on_the_named_threads_and_a_panic_costs_only_its_job() {
    let threads = Threads::start("test-pool", 2, 16).unwrap();
    let name = threads
        .run_blocking(|| std::thread::current().name().map(str::to_owned))
        .unwrap();
    assert!(name.unwrap().starts_with("test-pool-"));
    assert!(threads.run_blocking::<()>(|| panic!("boom")).is_err());
    assert!(threads.run_blocking::<()>(|| panic!("boom")).is_err());
    // Both threads panicked once and still serve.
    let sum: u32 = (0..10)
        .map(|i| threads.run_blocking(move || i).unwrap())
        .sum();
    assert_eq!(sum, 45);
    let async_answer = actix_rt::System::new().block_on(threads.run(|| 7)).unwrap();
    assert_eq!(async_answer, 7);
}

#[test]
fn at_most_count_jobs_run_at_once() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let threads = Threads::start("test-bound", 3, 64).unwrap();
    let (running, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let waits: Vec<_> = (0..20)
        .map(|_| {
            let (running, peak) = (running.clone(), peak.clone());
            threads.run(move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(5));
                running.fetch_sub(1, Ordering::SeqCst);
            })
        })
        .collect();
    actix_rt::System::new().block_on(futures_util::future::join_all(waits));
    assert_eq!(peak.load(Ordering::SeqCst), 3);
}

#[test]
fn a_drop_waits_for_the_queued_jobs_to_end_but_not_forever() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let done = Arc::new(AtomicUsize::new(0));
    let threads = Threads::start("test-drop", 1, 8).unwrap();
    for _ in 0..3 {
        let done = done.clone();
        let job: Job = Box::new(move || {
            std::thread::sleep(Duration::from_millis(100));
            done.fetch_add(1, Ordering::SeqCst);
        });
        threads.submit(job).unwrap();
    }
    drop(threads);
    assert_eq!(
        done.load(Ordering::SeqCst),
        3,
        "the drop waited for all of them"
    );

    // A job that never ends holds the drop up for the bound only.
    let threads = Threads::start("test-stuck", 1, 8).unwrap();
    let (_hold, stuck) = std::sync::mpsc::channel::<()>();
    let job: Job = Box::new(move || {
        let _ = stuck.recv();
    });
    threads.submit(job).unwrap();
    let started = std::time::Instant::now();
    drop(threads);
    let waited = started.elapsed();
    assert!(waited >= END_WAIT && waited < END_WAIT * 2, "{waited:?}");
}

#[test]
fn a_full_queue_refuses_at_once_and_an_abandoned_job_is_skipped() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let threads = Arc::new(Threads::start("test-full", 1, 1).unwrap());
    let (hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
    let ran = Arc::new(AtomicUsize::new(0));
    actix_rt::System::new().block_on(async {
        // The one thread is stuck on the first job…
        let t = threads.clone();
        let stuck = actix_rt::spawn(async move { t.run(move || hold_rx.recv().unwrap()).await });
        actix_rt::time::sleep(std::time::Duration::from_millis(50)).await;
        // …the second job fills the queue, and its caller gives up…
        let ran2 = ran.clone();
        let t = threads.clone();
        let abandoned = actix_rt::spawn(async move {
            t.run(move || {
                ran2.fetch_add(1, Ordering::SeqCst);
            })
            .await
        });
        actix_rt::time::sleep(std::time::Duration::from_millis(50)).await;
        // …so a third finds no room and is refused without waiting.
        assert_eq!(threads.run(|| ()).await, Err(JobFailed::Busy));
        abandoned.abort();
        let _ = abandoned.await;
        hold_tx.send(()).unwrap();
        stuck.await.unwrap().unwrap();
        // The thread moves on past the abandoned job without running it
        // (until it has taken that job off the queue, the queue is full).
        let mut answer = threads.run(|| 5).await;
        for _ in 0..100 {
            if answer != Err(JobFailed::Busy) {
                break;
            }
            actix_rt::time::sleep(std::time::Duration::from_millis(10)).await;
            answer = threads.run(|| 5).await;
        }
        assert_eq!(answer, Ok(5));
    });
    assert_eq!(ran.load(Ordering::SeqCst), 0, "an abandoned job is skipped");
}

#[test]
fn a_submitter_queues_jobs_but_does_not_keep_the_threads_alive() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let done = Arc::new(AtomicUsize::new(0));
    let mut threads = Threads::start("test-submitter", 1, 8).unwrap();
    let submitter = threads.submitter();
    let counted = done.clone();
    submitter
        .submit(move || {
            counted.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    // The threads end with the `Threads`, though a submitter remains.
    assert!(threads.end(), "a submitter kept the threads alive");
    assert_eq!(done.load(Ordering::SeqCst), 1, "the queued job ran first");
    assert_eq!(submitter.submit(|| {}), Err(JobFailed::Failed));
    assert_eq!(submitter.queued(), 0);
}
