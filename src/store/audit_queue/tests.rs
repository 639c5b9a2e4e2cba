use std::sync::Mutex;
use std::time::Instant;

use super::*;
use crate::store::{AuditEvent, StoreError};

/// Records batch sizes; the first batch waits until `release` is set,
/// so events pile up behind it.
#[derive(Default)]
struct Recorder {
    batches: Mutex<Vec<Vec<i64>>>,
    release: std::sync::atomic::AtomicBool,
    /// Batches fail; single events fail when `at` is negative.
    failing: bool,
    singles: Mutex<Vec<i64>>,
}

impl AuditLog for Recorder {
    fn record(&self, event: NewAuditEvent<'_>) -> Result<(), StoreError> {
        assert!(self.failing, "single writes only after a failed batch");
        if event.at < 0 {
            return Err(StoreError::Query("a bad row".into()));
        }
        self.singles.lock().unwrap().push(event.at);
        Ok(())
    }
    fn record_batch(&self, events: &[NewAuditEvent<'_>]) -> Result<(), StoreError> {
        while !self.release.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        if self.failing {
            return Err(StoreError::Query("the batch has a bad row".into()));
        }
        let mut batches = self.batches.lock().unwrap();
        batches.push(events.iter().map(|e| e.at).collect());
        Ok(())
    }
    fn list(
        &self,
        _: Option<&str>,
        _: Option<&UserId>,
        _: Option<(i64, i64)>,
        _: i64,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        Ok(Vec::new())
    }
    fn purge_before(&self, _: i64) -> Result<usize, StoreError> {
        Ok(0)
    }
}

fn event(at: i64) -> OwnedAudit {
    OwnedAudit {
        at,
        kind: AuditKind::RememberMeSignIn,
        user: Some(UserId::from(1)),
        ip: None,
        user_agent: None,
        detail: String::new(),
    }
}

#[test]
fn events_that_gather_share_a_batch_and_none_is_lost_or_reordered() {
    let log = Arc::new(Recorder::default());
    let queue = AuditQueue::start(log.clone());
    for at in 0..1000 {
        queue.push(event(at)).expect("room in the queue");
    }
    log.release.store(true, std::sync::atomic::Ordering::SeqCst);
    drop(queue); // closes the queue: the thread writes the rest and ends
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let batches = log.batches.lock().unwrap().clone();
        let all: Vec<i64> = batches.iter().flatten().copied().collect();
        if all.len() == 1000 {
            assert_eq!(all, (0..1000).collect::<Vec<_>>(), "in order");
            assert!(
                batches.len() <= 1000 / MAX_BATCH + 2,
                "batched: {} transactions for 1000 events",
                batches.len()
            );
            assert!(batches.iter().all(|b| b.len() <= MAX_BATCH));
            break;
        }
        assert!(Instant::now() < deadline, "only {} written", all.len());
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_full_queue_hands_the_event_back_instead_of_dropping_it() {
    let log = Arc::new(Recorder::default()); // the writer is stuck until released
    let queue = AuditQueue::start(log.clone());
    let total = CAPACITY as i64 + MAX_BATCH as i64 + 10;
    let mut handed_back = Vec::new();
    for at in 0..total {
        if let Err(back) = queue.push(event(at)) {
            handed_back.push(back.at);
        }
    }
    assert!(!handed_back.is_empty(), "the queue is bounded");
    log.release.store(true, std::sync::atomic::Ordering::SeqCst);
    drop(queue);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut all: Vec<i64> = log
            .batches
            .lock()
            .unwrap()
            .iter()
            .flatten()
            .copied()
            .collect();
        if all.len() + handed_back.len() == total as usize {
            all.extend(&handed_back);
            all.sort_unstable();
            assert_eq!(
                all,
                (0..total).collect::<Vec<_>>(),
                "every event written or handed back"
            );
            break;
        }
        assert!(Instant::now() < deadline, "only {} written", all.len());
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Fails `record_batch` as unavailable until `outage` is cleared.
#[derive(Default)]
struct Flaky {
    outage: AtomicBool,
    tries: AtomicU64,
    written: Mutex<Vec<Vec<i64>>>,
}

impl AuditLog for Flaky {
    fn record(&self, _: NewAuditEvent<'_>) -> Result<(), StoreError> {
        panic!("an outage is no reason to write row by row");
    }
    fn record_batch(&self, events: &[NewAuditEvent<'_>]) -> Result<(), StoreError> {
        self.tries.fetch_add(1, Ordering::SeqCst);
        if self.outage.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("down".into()));
        }
        self.written
            .lock()
            .unwrap()
            .push(events.iter().map(|e| e.at).collect());
        Ok(())
    }
    fn list(
        &self,
        _: Option<&str>,
        _: Option<&UserId>,
        _: Option<(i64, i64)>,
        _: i64,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        Ok(Vec::new())
    }
    fn purge_before(&self, _: i64) -> Result<usize, StoreError> {
        Ok(0)
    }
}

#[test]
fn a_batch_waits_out_an_outage_whole_and_is_counted_only_if_given_up() {
    let log = Flaky::default();
    log.outage.store(true, Ordering::SeqCst);
    let batch: Vec<_> = (1..=3).map(event).collect();
    let open = AtomicBool::new(false);
    let pauses = Mutex::new(Vec::new());
    let pause = |d: Duration| {
        pauses.lock().unwrap().push(d);
        if pauses.lock().unwrap().len() == 7 {
            log.outage.store(false, Ordering::SeqCst); // the database is back
        }
    };
    let before = dropped();
    write_batch(&log, &batch, &open, &pause);
    assert_eq!(
        *log.written.lock().unwrap(),
        [vec![1, 2, 3]],
        "whole, once back"
    );
    let pauses = pauses.lock().unwrap().clone();
    assert_eq!(pauses[0], Duration::from_millis(100));
    assert_eq!(pauses[6], MAX_PAUSE, "growing, bounded: {pauses:?}");
    // Closing during an outage: one last try, then counted, not lost silently.
    log.outage.store(true, Ordering::SeqCst);
    let closing = AtomicBool::new(true);
    write_batch(&log, &batch, &closing, &|_| panic!("no pause once closing"));
    assert!(dropped() >= before + 3, "the three are counted");
}

#[test]
fn a_failed_batch_is_written_one_by_one_and_drop_waits_for_the_rows() {
    let log = Arc::new(Recorder {
        failing: true,
        release: std::sync::atomic::AtomicBool::new(true),
        ..Recorder::default()
    });
    let queue = AuditQueue::start(log.clone());
    for at in [1, 2, -3, 4] {
        queue.push(event(at)).unwrap();
    }
    drop(queue); // waits for the writer
    assert_eq!(
        *log.singles.lock().unwrap(),
        [1, 2, 4],
        "only the bad row is lost"
    );
}
