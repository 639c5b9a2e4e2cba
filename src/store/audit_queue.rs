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
mod tests;
