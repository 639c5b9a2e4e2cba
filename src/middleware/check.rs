//! The session's epoch check: fresh, kept unchecked through an outage, or
//! refused.

use super::*;

/// How far [`session_now`] and [`check_epoch`] could check the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Check {
    /// Checked now or within the check interval (or no session).
    Fresh,
    /// Kept through a store outage without a check, for at most twice the
    /// check interval since the last one: strong pages refuse it.
    Unchecked,
    /// Dropped because it could not be checked for too long: the visitor
    /// gets a 503 while the store is down, never an open session that a
    /// revocation cannot reach.
    Unavailable,
}

/// What the session says before any store call.
pub(super) enum Quick {
    /// Settled: the state (if any) and how far it was checked.
    Done(Option<AuthState>, Check),
    /// A state past its check interval (by the seconds given): its epoch
    /// must be compared with the database ([`check_epoch`]).
    Check(AuthState, i64),
}

/// The session's auth state if it is still good: within its lifetime and, at
/// most every `epoch_check_interval`, still under the user's current epoch
/// (see [`check_epoch`], which the same query re-reads the user's roles
/// for). Settled here, with no store call, unless the interval has passed.
pub(super) fn session_now(session: &Session, shared: &Shared, now: i64) -> Quick {
    let Some(state) = session.get::<AuthState>(AUTH_KEY).ok().flatten() else {
        return Quick::Done(None, Check::Fresh);
    };
    let config = &shared.config();
    if now - state.signed_in_at >= config.session_lifetime.as_secs() as i64 {
        // `clear`, not `purge`: a remember-me cookie may sign the user in
        // again on this same request, and a purged session keeps nothing.
        session.clear();
        return Quick::Done(None, Check::Fresh);
    }
    let since = now - state.checked_at;
    if (0..config.epoch_check_interval.as_secs() as i64).contains(&since) {
        return Quick::Done(Some(state), Check::Fresh);
    }
    Quick::Check(state, since)
}

/// The epoch check of a state [`session_now`] found past its interval. A
/// check that cannot run keeps the session only for twice the interval
/// since the last good one.
pub(super) async fn check_epoch(
    session: &Session,
    shared: &Shared,
    now: i64,
    mut state: AuthState,
    since: i64,
) -> (Option<AuthState>, Check) {
    let interval = shared.config().epoch_check_interval.as_secs() as i64;
    let (user_id, series) = (state.user_id.clone(), state.series.clone());
    let checked = shared
        .store(move |core| core.check_session(&user_id, series.as_ref()))
        .await;
    match checked {
        Ok(Some((owner, epoch))) if epoch == state.epoch => {
            state.checked_at = now;
            // Roles come from the user's row, not from the sign-in: a
            // demoted admin loses the admin pages at this check.
            state.is_admin = owner.is_admin;
            let _ = session.insert(AUTH_KEY, &state);
            (Some(state), Check::Fresh)
        }
        Ok(_) => {
            // Revoked (epoch bumped, device revoked) or the user is gone.
            tracing::info!(user_id = %state.user_id, "session ended: revoked");
            session.clear();
            (None, Check::Fresh)
        }
        Err(error) => unchecked(state, since, interval, &error),
    }
}

/// A session whose check could not run: kept (but refused by strong pages)
/// while its last check is less than twice the interval old, else dropped
/// from this request, not from the session, so it works again once the
/// store answers and confirms it.
fn unchecked(
    state: AuthState,
    since: i64,
    interval: i64,
    error: &dyn std::fmt::Display,
) -> (Option<AuthState>, Check) {
    let user_id = tracing::field::display(&state.user_id);
    if (0..2 * interval).contains(&since) {
        tracing::warn!(%error, user_id, "auth epoch check skipped: store unavailable");
        (Some(state), Check::Unchecked)
    } else {
        tracing::warn!(%error, user_id, since, "session refused: its epoch could not be checked");
        (None, Check::Unavailable)
    }
}
