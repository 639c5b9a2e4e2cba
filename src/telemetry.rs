//! The crate's metrics, emitted through the [`metrics`] facade: the app
//! installs the exporter it likes (the demo serves Prometheus text at
//! `GET /metrics` with `--metrics true`). Without a recorder installed each
//! emission costs a load and a branch.
//!
//! | name | type | labels | what |
//! |---|---|---|---|
//! | `rememberme_sign_ins_total` | counter | `method` (`password`, `step_up`, `remember_me`, `app`, `api_password`, `api_step_up`, `api_refresh`), `outcome` (`success`, `invalid`, `throttled`, `refused`, `needs_input`, `rejected`) | sign-in attempts and how they ended (`rejected`: a cookie or token that signed nobody in, an id the app does not know) |
//! | `rememberme_rotations_total` | counter | | remember-me tokens rotated on use |
//! | `rememberme_grace_acceptances_total` | counter | | tokens one rotation back accepted within the grace window (parallel requests, retries) |
//! | `rememberme_thefts_total` | counter | `kind` (`possible`: a token one back after the grace window, its series ended; `certain`: an older one, every token of the user revoked) | replayed tokens |
//! | `rememberme_remember_me_rejected_total` | counter | `reason` (`malformed`, `unknown`, `expired`, `user_gone`) | cookies removed without a sign-in |
//! | `rememberme_throttled_total` | counter | `scope` (`account`, `device`: the budget of a trusted device, `address`) | password checks refused for too many failures |
//! | `rememberme_store_seconds` | histogram | | time a store job runs on a store thread (the rest of a sign-in by cookie after its batch included) |
//! | `rememberme_store_wait_seconds` | histogram | | time a store job waits in the queue |
//! | `rememberme_store_queue_depth` | gauge | | store jobs waiting for a thread |
//! | `rememberme_unavailable_total` | counter | | answers 503 because the store failed or its queue was full |
//! | `rememberme_rotation_batch_size` | histogram | | sign-ins by cookie run together in one database transaction ([`DieselStore`](crate::DieselStore)'s group commit) |
//! | `rememberme_rotation_batch_seconds` | histogram | | time one such batch runs, commit included: while it runs the next one gathers |
//! | `rememberme_rotation_wait_seconds` | histogram | | time a sign-in by cookie waits for its rotation (queued without a thread, then its batch) |
//! | `rememberme_purged_total` | counter | `what` (`tokens`, `failure_counters`, `audit_events`) | rows deleted by the purge ([`Stores::purge`](crate::Stores::purge)) |
//!
//! Nothing secret is ever a label: no token, no cookie, no user id.

/// Sign-in attempts by `method` and `outcome`.
pub const SIGN_INS: &str = "rememberme_sign_ins_total";
/// Remember-me tokens rotated on use.
pub const ROTATIONS: &str = "rememberme_rotations_total";
/// Tokens one rotation back accepted within the grace window.
pub const GRACE_ACCEPTANCES: &str = "rememberme_grace_acceptances_total";
/// Replayed tokens, by `kind` (`possible`, `certain`).
pub const THEFTS: &str = "rememberme_thefts_total";
/// Remember-me cookies removed without a sign-in, by `reason`.
pub const REMEMBER_ME_REJECTED: &str = "rememberme_remember_me_rejected_total";
/// Password checks refused for too many failures, by `scope`.
pub const THROTTLED: &str = "rememberme_throttled_total";
/// Seconds a store job runs.
pub const STORE_SECONDS: &str = "rememberme_store_seconds";
/// Seconds a store job waits for a thread.
pub const STORE_WAIT_SECONDS: &str = "rememberme_store_wait_seconds";
/// Store jobs waiting for a thread.
pub const STORE_QUEUE_DEPTH: &str = "rememberme_store_queue_depth";
/// Answers 503 (store failed or its queue full).
pub const UNAVAILABLE: &str = "rememberme_unavailable_total";
/// Sign-ins by cookie run together in one transaction.
pub const ROTATION_BATCH_SIZE: &str = "rememberme_rotation_batch_size";
/// Seconds one batch of sign-ins by cookie runs, commit included.
pub const ROTATION_BATCH_SECONDS: &str = "rememberme_rotation_batch_seconds";
/// Seconds a sign-in by cookie waits for its rotation, batch included.
pub const ROTATION_WAIT_SECONDS: &str = "rememberme_rotation_wait_seconds";
/// Rows deleted by the purge, by `what`.
pub const PURGED: &str = "rememberme_purged_total";

/// A sign-in attempt's end.
pub(crate) fn sign_in(method: &'static str, outcome: &'static str) {
    metrics::counter!(SIGN_INS, "method" => method, "outcome" => outcome).increment(1);
}

/// A remember-me cookie removed without a sign-in.
pub(crate) fn rejected(reason: &'static str) {
    metrics::counter!(REMEMBER_ME_REJECTED, "reason" => reason).increment(1);
}

/// A replayed token.
pub(crate) fn theft(kind: &'static str) {
    metrics::counter!(THEFTS, "kind" => kind).increment(1);
}

/// A password check refused before it ran.
pub(crate) fn throttled(scope: &'static str) {
    metrics::counter!(THROTTLED, "scope" => scope).increment(1);
}

/// A counter without labels, by name.
pub(crate) fn count(name: &'static str) {
    metrics::counter!(name).increment(1);
}

/// A store job: how long it waited and ran, and the queue it leaves.
pub(crate) fn store_job(waited: std::time::Duration, ran: std::time::Duration, queued: usize) {
    metrics::histogram!(STORE_WAIT_SECONDS).record(waited.as_secs_f64());
    metrics::histogram!(STORE_SECONDS).record(ran.as_secs_f64());
    metrics::gauge!(STORE_QUEUE_DEPTH).set(queued as f64);
}

/// The rest of a sign-in by cookie, run on a store thread after its batch
/// (not a store job of its own: it waited for its batch, not in the
/// queue), and the store threads' queue it leaves.
pub(crate) fn store_ran(ran: std::time::Duration, queued: usize) {
    metrics::histogram!(STORE_SECONDS).record(ran.as_secs_f64());
    metrics::gauge!(STORE_QUEUE_DEPTH).set(queued as f64);
}

/// A batch of sign-ins by cookie: how many, and how long it ran.
pub(crate) fn rotation_batch(size: usize, ran: std::time::Duration) {
    metrics::histogram!(ROTATION_BATCH_SIZE).record(size as f64);
    metrics::histogram!(ROTATION_BATCH_SECONDS).record(ran.as_secs_f64());
}

/// A sign-in by cookie's wait for its rotation, batch included.
pub(crate) fn rotation_wait(waited: std::time::Duration) {
    metrics::histogram!(ROTATION_WAIT_SECONDS).record(waited.as_secs_f64());
}

/// What one purge deleted: rows by what they were.
pub(crate) fn purged(rows: [(&'static str, usize); 3]) {
    for (what, n) in rows {
        metrics::counter!(PURGED, "what" => what).increment(n as u64);
    }
}

/// Describes the metrics to the recorder installed now (at each layer's
/// start: a recorder installed before the layer gets the help texts).
pub(crate) fn describe() {
    {
        use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
        describe_counter!(SIGN_INS, "Sign-in attempts by method and outcome");
        describe_counter!(ROTATIONS, "Remember-me tokens rotated on use");
        describe_counter!(
            GRACE_ACCEPTANCES,
            "Tokens one rotation back accepted within the grace window"
        );
        describe_counter!(THEFTS, "Replayed remember-me tokens by kind");
        describe_counter!(
            REMEMBER_ME_REJECTED,
            "Remember-me cookies removed without a sign-in, by reason"
        );
        describe_counter!(THROTTLED, "Password checks refused for too many failures");
        describe_histogram!(STORE_SECONDS, Unit::Seconds, "Time a store job runs");
        describe_histogram!(
            STORE_WAIT_SECONDS,
            Unit::Seconds,
            "Time a store job waits for a store thread"
        );
        describe_gauge!(STORE_QUEUE_DEPTH, "Store jobs waiting for a thread");
        describe_counter!(UNAVAILABLE, "Answers 503: store failed or its queue full");
        describe_histogram!(
            ROTATION_BATCH_SIZE,
            "Sign-ins by cookie run together in one transaction"
        );
        describe_histogram!(
            ROTATION_BATCH_SECONDS,
            Unit::Seconds,
            "Time one batch of sign-ins by cookie runs, commit included"
        );
        describe_histogram!(
            ROTATION_WAIT_SECONDS,
            Unit::Seconds,
            "Time a sign-in by cookie waits for its rotation, batch included"
        );
        describe_counter!(PURGED, "Rows deleted by the purge, by what they were");
    }
}
