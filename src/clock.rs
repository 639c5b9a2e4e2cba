//! Where the layer reads the time: the system clock, or a test's clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where the layer reads the time (Unix seconds). The system clock by
/// default; tests use a [`ManualClock`] to step over grace windows and
/// expiry without sleeping.
pub trait Clock: Send + Sync {
    /// Seconds since the Unix epoch.
    fn now(&self) -> i64;

    /// How far this clock is set from the operating system's, in
    /// milliseconds: 0 for the system clock. A store that stamps rotations
    /// with its database's clock (one clock for every instance) adds it,
    /// so that a test clock moves those times too.
    fn offset_from_system_ms(&self) -> i64 {
        self.now().saturating_mul(1000).saturating_sub(system_ms())
    }
}

/// The system clock in milliseconds since the Unix epoch.
pub(crate) fn system_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default()
    }

    fn offset_from_system_ms(&self) -> i64 {
        0
    }
}

/// A clock that moves only when told to. Clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock standing at the system's current time.
    pub fn new() -> Self {
        Self(Arc::new(AtomicI64::new(SystemClock.now())))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_secs() as i64, Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// How far another instance's clock may run ahead of this one's for a time
/// it wrote (a password time, a device cookie's issue time) to count as
/// "now" here rather than as forged.
pub const CLOCK_SKEW_SECS: i64 = 60;
