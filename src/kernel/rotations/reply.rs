//! What a sign-in by cookie waiting in the queue gets: its batch's
//! outcome, continued by the caller's work on a store thread.

use std::time::Instant;

use tokio::sync::oneshot;

use super::{Outcome, Owner};
use crate::store::StoreError;

/// What an attempt's request awaits: its batch's outcome, continued by
/// the caller's work (see [`super::RotationQueue::rotate_then`]).
pub(super) trait Reply: Send {
    /// Whether the request has gone (its client left).
    fn is_gone(&self) -> bool;
    /// The batch's outcome (and the owner of the token it rotated):
    /// continues the sign-in and answers the request. On a store thread.
    fn answer(self: Box<Self>, outcome: Outcome, owner: Owner);
    /// The attempt failed before any batch ran it: nothing was written.
    fn fail(self: Box<Self>, error: StoreError);
}

/// A reply that runs `then` with the outcome and sends what it returns.
pub(super) struct Then<T, F> {
    pub reply: oneshot::Sender<Result<T, StoreError>>,
    pub then: F,
    pub queued: Instant,
}

impl<T: Send, F: FnOnce(Outcome, Owner) -> T + Send> Reply for Then<T, F> {
    fn is_gone(&self) -> bool {
        self.reply.is_closed()
    }

    fn answer(self: Box<Self>, outcome: Outcome, owner: Owner) {
        let Then {
            reply,
            then,
            queued,
        } = *self;
        let _ = std::panic::catch_unwind(|| crate::telemetry::rotation_wait(queued.elapsed()));
        // A request gone since its batch took it: no browser would
        // receive what the rest of its sign-in gives.
        if !reply.is_closed() {
            let _ = reply.send(Ok(then(outcome, owner)));
        }
    }

    fn fail(self: Box<Self>, error: StoreError) {
        let _ = std::panic::catch_unwind(|| crate::telemetry::rotation_wait(self.queued.elapsed()));
        let _ = self.reply.send(Err(error));
    }
}
