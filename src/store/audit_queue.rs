//! Audit events written in the background, a batch per transaction.
//!
//! A remember-me sign-in is recorded in the audit log, but the record is not
//! worth a database write on the re-authentication's critical path: on
//! SQLite every write waits for the single writer, and on PostgreSQL every
//! commit is a WAL flush. The middleware queues the event instead; one
//! thread drains the queue and writes what has gathered in one transaction
//! ([`AuditLog::record_batch`]), so under load many sign-ins share a commit;
//! an event is in the log within about 10 ms. A batch that fails because
//! the database is unavailable is tried again, whole, after a pause that
//! grows to a few seconds, for as long as the queue is open (an outage
//! costs no row; the queue fills and later events are handed back to their
//! callers). A batch that fails otherwise (a user deleted meanwhile whose
//! row the foreign key now refuses) is written one by one, so one bad row
//! costs only itself. Dropping the queue waits (up to a few seconds) for
//! the rows still in it. Every event that is given up on is counted
//! ([`dropped`]) and logged, never lost silently. (The sign-ins by cookie
//! that rotate a token do not come here: their rows are written with the
//! rotation.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use super::{AuditKind, AuditLog, NewAuditEvent, StoreError, UserId};
use crate::threads::{END_WAIT, Ended, ended};

/// Events waiting beyond this are written by their caller instead (the
/// database is far behind, or down).
const CAPACITY: usize = 4096;
/// Most events in one transaction.
const MAX_BATCH: usize = 256;
/// How long the writer gathers events after the first of a batch: an event
/// is in the log at most this much later than without the queue, and a busy
/// server writes at most one audit transaction per this interval.
const GATHER: std::time::Duration = std::time::Duration::from_millis(10);

/// The longest pause between two tries of a batch during an outage.
const MAX_PAUSE: Duration = Duration::from_secs(5);

static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Audit events this process gave up on (written nowhere), since it
/// started. Each is logged at `error` too.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Counts `n` events given up on.
pub(crate) fn count_dropped(n: usize, why: &dyn std::fmt::Display) {
    DROPPED.fetch_add(n as u64, Ordering::Relaxed);
    tracing::error!(count = n, error = %why, "audit events dropped");
}

/// An audit event that owns its strings, to cross threads.
#[derive(Debug, Clone)]
pub(crate) struct OwnedAudit {
    pub at: i64,
    pub kind: AuditKind,
    pub user: Option<UserId>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub detail: String,
}

impl OwnedAudit {
    /// The event to record, its user replaced by `user` if given.
    pub fn borrowed<'a>(&'a self, user: Option<&'a UserId>) -> NewAuditEvent<'a> {
        NewAuditEvent {
            at: self.at,
            kind: self.kind,
            user_id: user.or(self.user.as_ref()),
            ip: self.ip.as_deref(),
            user_agent: self.user_agent.as_deref(),
            detail: &self.detail,
        }
    }
}

/// The queue and its writer thread. The thread ends, after writing what is
/// left, when the queue is dropped; the drop waits for it (at most
/// [`END_WAIT`]).
#[derive(Debug)]
pub(crate) struct AuditQueue {
    tx: Option<SyncSender<OwnedAudit>>,
    /// When the writer thread has ended (`None` without a writer).
    ended: Option<Ended>,
    /// Set when the queue closes: a batch the writer keeps trying through
    /// an outage gets one last try, then is given up.
    closing: Arc<AtomicBool>,
}

impl Drop for AuditQueue {
    fn drop(&mut self) {
        // After an explicit `end`, which waited already: nothing more.
        if self.tx.is_some() && !self.end() {
            tracing::warn!("audit writer still busy at shutdown: its last rows may be lost");
        }
    }
}

impl AuditQueue {
    /// Starts the writer thread. If no thread can be started, every push
    /// hands its event back to be written by the caller.
    pub fn start(log: Arc<dyn AuditLog>) -> Self {
        let (tx, rx) = sync_channel(CAPACITY);
        let (alive, ended) = ended();
        let closing = Arc::new(AtomicBool::new(false));
        let closed = closing.clone();
        let spawned = crate::threads::spawn("rememberme-audit", move || {
            let _alive = alive; // dropped when the thread ends…
            let log = log; // …after the store (so its pool) is let go
            write_batches(&*log, &rx, &closed);
        });
        match spawned {
            Ok(_) => Self {
                tx: Some(tx),
                ended: Some(ended),
                closing,
            },
            Err(error) => {
                tracing::error!(%error, "no audit writer thread: audit events written inline");
                Self {
                    tx: None,
                    ended: None,
                    closing,
                }
            }
        }
    }

    /// Closes the queue and waits, at most [`END_WAIT`], for the writer
    /// to write what is left and end. False if it still runs.
    pub fn end(&mut self) -> bool {
        self.closing.store(true, Ordering::SeqCst);
        drop(self.tx.take()); // the writer sees the queue closed once it is empty
        self.ended.as_ref().is_none_or(|ended| ended.wait(END_WAIT))
    }

    /// Queues `event`; gives it back if the queue is full (or has no
    /// writer), and the caller must then write it itself: an audit event is
    /// never dropped.
    pub fn push(&self, event: OwnedAudit) -> Result<(), OwnedAudit> {
        let Some(tx) = &self.tx else {
            return Err(event);
        };
        tx.try_send(event).map_err(|error| match error {
            TrySendError::Full(event) | TrySendError::Disconnected(event) => event,
        })
    }
}

/// Waits for an event, sleeps [`GATHER`], takes what has come meanwhile (up
/// to [`MAX_BATCH`]) and writes it all in one transaction, until the queue
/// is closed and empty. Sleeping rather than waiting on the queue means the
/// requests that queue events never wake this thread: one wake-up per batch,
/// not per event.
fn write_batches(log: &dyn AuditLog, rx: &Receiver<OwnedAudit>, closing: &AtomicBool) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        std::thread::sleep(GATHER);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(event) => batch.push(event),
                Err(_) => break,
            }
        }
        // Pauses in short slices, so a closing queue is seen at once (the
        // layer waits only a few seconds for this thread at shutdown).
        let pause = |wait: Duration| {
            let until = std::time::Instant::now() + wait;
            while !closing.load(Ordering::SeqCst) && std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_millis(50));
            }
        };
        write_batch(log, &batch, closing, &pause);
        batch.clear();
    }
}

/// Writes one batch: whole, tried again through an outage (pausing with
/// `pause`, longer each time up to [`MAX_PAUSE`]) while the queue is open;
/// one by one after any other failure. What cannot be written is counted.
fn write_batch(
    log: &dyn AuditLog,
    batch: &[OwnedAudit],
    closing: &AtomicBool,
    pause: &dyn Fn(Duration),
) {
    let events: Vec<NewAuditEvent<'_>> = batch.iter().map(|e| e.borrowed(None)).collect();
    let mut wait = Duration::from_millis(100);
    loop {
        match log.record_batch(&events) {
            Ok(()) => return,
            Err(error @ StoreError::Unavailable(_)) => {
                if closing.load(Ordering::SeqCst) {
                    return count_dropped(events.len(), &error);
                }
                tracing::warn!(%error, count = events.len(), ?wait, "audit batch waits for the database");
                pause(wait);
                wait = (wait * 2).min(MAX_PAUSE);
            }
            Err(error) => {
                tracing::warn!(%error, count = events.len(), "audit batch failed: writing its events one by one");
                for event in &events {
                    if let Err(error) = log.record(event.clone()) {
                        count_dropped(1, &error);
                    }
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
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
            _: i64,
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
            _: i64,
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
}
