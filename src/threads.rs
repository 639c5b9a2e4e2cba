//! Every thread the crate starts: a fixed set of named threads that run
//! blocking jobs in order of arrival ([`Threads`]: the store threads, the
//! Argon2 threads), and the audit writer ([`spawn`]).
//!
//! Used for the two kinds of blocking work the layer does on every busy
//! path: Argon2 (CPU- and memory-bound: one thread per core, each keeping
//! its Argon2 memory) and the store calls of sign-ins and checks
//! (`store_concurrency` threads; the Diesel store's default is its pool
//! size). A sign-in by cookie waits for
//! its rotation's batch without one of them (see `kernel::rotations`). A fixed set instead of
//! actix's growing blocking pool: jobs beyond the threads wait in the queue,
//! not on a thread of their own, and a thread that finishes a job takes the
//! next one at once, without a hand-off through an async task in between. Hand-written (a channel and a few threads): the crates that
//! offer this (`threadpool`, `rayon`) either are unmaintained or bring a
//! work-stealing scheduler this does not need.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

type Job = Box<dyn FnOnce() + Send>;

/// The longest a dropped [`Threads`] waits for its threads to finish the
/// jobs queued and end.
pub(crate) const END_WAIT: Duration = Duration::from_secs(3);

/// Name (prefix) of the remember-me layer's store threads.
pub(crate) const STORE_THREADS: &str = "rememberme-store";

/// Runs `f` on the process's Argon2 threads (one per core) and waits for
/// its result. Argon2 allocates 19 MiB per call: done on whichever
/// blocking-pool thread happens to run, a sign-in storm grew the server to
/// gigabytes. Here memory is bounded by the number of these threads (one
/// per core: Argon2 cannot use more), each keeping one buffer (see
/// `password::with_memory`), and callers queue. Blocking.
pub(crate) fn on_argon2_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    debug_assert!(
        !std::thread::current()
            .name()
            .is_some_and(|name| name.starts_with(STORE_THREADS)),
        "Argon2 called from a store thread: every store call would wait behind it"
    );
    let threads = ARGON2
        .lock()
        .get_or_insert_with(|| {
            let cores = std::thread::available_parallelism().map_or(2, usize::from);
            Arc::new(Threads::start("argon2", cores, 1024).expect("spawn the Argon2 threads"))
        })
        .clone();
    threads
        .run_blocking(f)
        .expect("an Argon2 job does not panic")
}

/// Starts a named thread of the crate's. Every thread the crate starts is
/// started in this module: the store threads and the Argon2 threads
/// ([`Threads`]), and the audit writer (through this).
pub(crate) fn spawn(
    name: &str,
    f: impl FnOnce() + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name(name.to_owned()).spawn(f)
}

/// The Argon2 threads, started by the first password check or hash and
/// ended by [`end_argon2`] (a later check starts them again).
static ARGON2: parking_lot::Mutex<Option<Arc<Threads>>> = parking_lot::Mutex::new(None);

/// Ends the Argon2 threads: here, after their queued jobs (the drop of the
/// last handle waits for them, at most [`END_WAIT`]), or, if a check is
/// under way elsewhere, when that check lets go. Never waits for callers:
/// with several layers in one process, a check of another layer goes on,
/// and the next one starts the threads again.
pub(crate) fn end_argon2() {
    let threads = ARGON2.lock().take();
    drop(threads); // outside the lock: the drop may wait
}

/// The threads; they end when this is dropped, after the jobs queued, and
/// the drop waits for that (at most [`END_WAIT`]): a process must not exit
/// while one of them is inside the database's client library, whose own
/// clean-up at exit (libpq's Kerberos and OpenSSL) would pull the ground
/// from under it.
#[derive(Debug)]
pub(crate) struct Threads {
    /// `None` only while dropping. The one strong handle: the threads end
    /// once it is dropped and the queue is empty ([`Submitter`]s hold it
    /// weakly).
    jobs: Option<Arc<SyncSender<Job>>>,
    /// Jobs queued and not yet taken by a thread.
    queued: Arc<std::sync::atomic::AtomicUsize>,
    /// Room for this many jobs waiting.
    capacity: usize,
    ended: Ended,
    name: String,
}

impl Drop for Threads {
    fn drop(&mut self) {
        // After an explicit `end`, which waited already: nothing more.
        if self.jobs.is_some() && !self.end() {
            tracing::warn!(threads = %self.name, "threads still busy after the wait at shutdown");
        }
    }
}

/// Waits until `deadline` for `handle` to be the only one of its `Arc`;
/// false if others remain. For a clean shutdown: the server's workers drop
/// their copies when they end, on their own threads.
pub(crate) fn wait_until_only<T>(handle: &Arc<T>, deadline: std::time::Instant) -> bool {
    while Arc::strong_count(handle) > 1 {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// Tells when a group of threads has ended: each thread holds a clone of
/// the [`Sender`] that [`ended`] returns, dropped as the thread ends.
#[derive(Debug)]
pub(crate) struct Ended(Mutex<Receiver<()>>); // a mutex only to be `Sync`

/// A new signal: hand a clone of the sender to each thread.
pub(crate) fn ended() -> (Sender<()>, Ended) {
    let (tx, rx) = std::sync::mpsc::channel();
    (tx, Ended(Mutex::new(rx)))
}

impl Ended {
    /// Waits at most `timeout` for every thread holding a sender to end.
    /// False if one still runs. (Nothing is ever sent: the channel closes.)
    pub fn wait(&self, timeout: Duration) -> bool {
        let rx = self.0.lock().unwrap_or_else(|e| e.into_inner());
        matches!(
            rx.recv_timeout(timeout),
            Err(RecvTimeoutError::Disconnected)
        )
    }
}

/// Why a job gave no result.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum JobFailed {
    /// The queue was full: the threads are far behind (the database is
    /// slow or down). The job did not run.
    #[error("too much work queued")]
    Busy,
    /// The job panicked (its thread lives on), or the threads are gone.
    #[error("a background job did not finish")]
    Failed,
}

impl Threads {
    /// Starts `count` (at least 1) threads named `name-N`, with room for
    /// `capacity` waiting jobs.
    pub fn start(name: &str, count: usize, capacity: usize) -> std::io::Result<Self> {
        let (jobs, rx) = sync_channel::<Job>(capacity);
        let rx = Arc::new(Mutex::new(rx));
        let (alive, ended) = ended();
        for i in 0..count.max(1) {
            let (rx, alive) = (rx.clone(), alive.clone());
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    let _alive = alive; // dropped when the thread ends
                    work(&rx);
                })?;
        }
        Ok(Self {
            jobs: Some(Arc::new(jobs)),
            queued: Arc::default(),
            capacity,
            ended,
            name: name.to_owned(),
        })
    }

    /// Closes the queue (later jobs fail) and waits, at most [`END_WAIT`],
    /// for the threads to finish the jobs queued and end. False if one
    /// still runs.
    pub fn end(&mut self) -> bool {
        drop(self.jobs.take()); // each thread ends once the queue is empty
        self.ended.wait(END_WAIT)
    }

    /// A handle that queues jobs here without keeping the threads alive.
    pub fn submitter(&self) -> Submitter {
        Submitter {
            jobs: self.jobs.as_ref().map_or_else(Weak::new, Arc::downgrade),
            queued: self.queued.clone(),
            capacity: self.capacity,
        }
    }

    /// Runs `f` on one of the threads and waits for it, in async land.
    /// With the queue full it fails at once ([`JobFailed::Busy`]) rather than
    /// wait: the caller answers 503. A job whose caller has gone (the client
    /// disconnected while it waited) is skipped: for a cookie sign-in, a
    /// rotation whose new cookie no browser would receive.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, JobFailed> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(move || {
            if !tx.is_closed() {
                let _ = tx.send(f());
            }
        })?;
        rx.await.map_err(|_| JobFailed::Failed)
    }

    /// Queues `f` for one of the threads without waiting for it (see
    /// [`Submitter::submit`]).
    pub fn submit(&self, f: impl FnOnce() + Send + 'static) -> Result<(), JobFailed> {
        self.submitter().submit(f)
    }

    /// Jobs queued and not yet taken by a thread.
    pub fn queued(&self) -> usize {
        self.queued.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Runs `f` on one of the threads and blocks the calling thread until it
    /// is done (waiting for room in a full queue). Not from an async worker.
    pub fn run_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, JobFailed> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.jobs
            .as_ref()
            .ok_or(JobFailed::Failed)?
            .send(job)
            .map_err(|_| JobFailed::Failed)?;
        rx.recv().map_err(|_| JobFailed::Failed)
    }
}

/// Queues jobs on a [`Threads`] from anywhere, its own threads included,
/// without keeping them alive: once the [`Threads`] ends, submitting fails.
#[derive(Debug, Clone)]
pub(crate) struct Submitter {
    jobs: Weak<SyncSender<Job>>,
    queued: Arc<std::sync::atomic::AtomicUsize>,
    capacity: usize,
}

impl Submitter {
    /// Queues `f` for one of the threads without waiting for it; fails at
    /// once with the queue full ([`JobFailed::Busy`]) or closed.
    pub fn submit(&self, f: impl FnOnce() + Send + 'static) -> Result<(), JobFailed> {
        use std::sync::atomic::Ordering::Relaxed;
        let queue = self.jobs.upgrade().ok_or(JobFailed::Failed)?;
        let queued = self.queued.clone();
        let job: Job = Box::new(move || {
            queued.fetch_sub(1, Relaxed);
            f();
        });
        self.queued.fetch_add(1, Relaxed);
        queue.try_send(job).map_err(|error| {
            self.queued.fetch_sub(1, Relaxed);
            match error {
                TrySendError::Full(_) => JobFailed::Busy,
                TrySendError::Disconnected(_) => JobFailed::Failed,
            }
        })
    }

    /// Jobs queued and not yet taken by a thread.
    pub fn queued(&self) -> usize {
        self.queued.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the queue is less than half full: room for jobs that could
    /// as well run where they are (see `RotationQueue`), leaving the rest
    /// to jobs that cannot.
    pub fn has_room(&self) -> bool {
        self.queued() < self.capacity / 2
    }
}

fn work(rx: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only while taking a job, never while running it.
        let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(job) = job else {
            return; // the `Threads` was dropped and the queue is empty
        };
        // A panicking job drops its result sender (its caller sees
        // `JobFailed`); the thread stays for the next job.
        if std::panic::catch_unwind(AssertUnwindSafe(job)).is_err() {
            tracing::error!(
                thread = std::thread::current().name().unwrap_or("?"),
                "a background job panicked"
            );
        }
    }
}

#[cfg(test)]
mod tests;
