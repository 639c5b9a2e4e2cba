//! The password step, and the one path of every password check.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{Failure, Step, StepContext, StepId, StepOutcome};
use crate::store::ThrottleKey;
use crate::store::{AuditKind, NewAuditEvent, Reservation, StoreError, User, UserId};

/// Checks a typed password. With a user already known (step-up) the typed
/// username is ignored and that user's password is checked.
///
/// Every check goes through one path (`check_password`): an unknown username costs
/// the same hashing work as a wrong password and is throttled the same way,
/// and both fail with the same [`Failure::InvalidCredentials`], so neither
/// the answer nor its timing tells whether a username exists.
#[derive(Debug, Default)]
pub struct PasswordStep {
    activate_on_remember: Option<StepId>,
}

impl PasswordStep {
    /// A password step that activates nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// When "Keep me logged in" was ticked, activate `step` on success.
    #[must_use]
    pub fn activate_on_remember(mut self, step: StepId) -> Self {
        self.activate_on_remember = Some(step);
        self
    }
}

impl Step for PasswordStep {
    fn is_interactive(&self) -> bool {
        true
    }

    fn run(
        &self,
        ctx: &mut StepContext<'_>,
        known_user: Option<&UserId>,
    ) -> Result<StepOutcome, StoreError> {
        let Some(credentials) = ctx.credentials.take() else {
            return Ok(StepOutcome::Failed(Failure::InvalidCredentials));
        };
        let who = match known_user {
            Some(id) => Who::Known(id),
            None => Who::Named(&credentials.username),
        };
        match check_password(ctx, who, &credentials.password, "")? {
            PasswordCheck::Verified(user) => {
                let activate = match self.activate_on_remember {
                    Some(step) if credentials.remember_me => vec![step],
                    _ => Vec::new(),
                };
                let id = user.id.clone();
                ctx.user = Some(*user);
                Ok(StepOutcome::Success { user: id, activate })
            }
            PasswordCheck::Wrong => Ok(StepOutcome::Failed(Failure::InvalidCredentials)),
            PasswordCheck::Throttled { retry_after_secs } => {
                Ok(StepOutcome::Failed(Failure::Throttled { retry_after_secs }))
            }
        }
    }
}

/// Whose password a check is for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Who<'a> {
    /// The user signed in now (step-up, password change).
    Known(&'a UserId),
    /// Whoever has this username, if anyone (sign-in).
    Named(&'a str),
}

/// What [`check_password`] found.
#[derive(Debug)]
pub(crate) enum PasswordCheck {
    /// The right password: the user's row. `ctx.password_at` is now.
    Verified(Box<User>),
    /// Wrong password or no such user (one answer for both).
    Wrong,
    /// Too many failures for this account (or this device): nothing was
    /// checked, no Argon2 work was done.
    Throttled {
        /// Seconds until the next attempt is checked.
        retry_after_secs: u64,
    },
}

/// The user a check is for, and their auth epoch read before the user's
/// password hash: what the check opens (a session, a token, a paused
/// state) carries that epoch, so a password change that lands during the
/// check, or between these reads, still ends it (the change moves the
/// epoch on after storing the new hash).
fn user_and_epoch(
    ctx: &StepContext<'_>,
    who: Who<'_>,
) -> Result<(Option<User>, Option<i64>), StoreError> {
    let (users, state) = (&ctx.stores.users, &ctx.stores.state);
    let (id, known) = match who {
        Who::Known(id) => (id.clone(), true),
        Who::Named(name) => match users.find_by_username(name)? {
            Some(found) => (found.id, true),
            // An unknown name makes the same reads (of a placeholder id,
            // their results dropped): the calls before Argon2 tell
            // nothing, even with a directory far away.
            None => (UserId::from("rememberme:no-such-user"), false),
        },
    };
    let epoch = state.auth_epoch(&id)?;
    let user = users.find_by_id(&id);
    Ok(match known {
        true => (user?, Some(epoch)),
        // The placeholder's read counts for its time only: a directory
        // that refuses an id not of its own form (a UUID column, say) must
        // not turn an unknown name into a 503 where a known one gets 401.
        // An outage is an outage for every name: it still answers 503.
        false => match user {
            Err(error @ StoreError::Unavailable(_)) => return Err(error),
            _ => (None, None),
        },
    })
}

/// The budget a password check spends: a device's own, if the client
/// carries a device cookie for this user and the password the user has now
/// (see `device`; then `true`), else the account's, by the name as typed
/// in the directory's canonical form
/// ([`UserDirectory::canonical_username`](crate::store::UserDirectory::canonical_username)).
fn throttle_key(
    ctx: &StepContext<'_>,
    user: Option<&User>,
    who: Who<'_>,
) -> Result<(ThrottleKey, bool), StoreError> {
    if let (Some(device), Some(user)) = (&ctx.device, user)
        && device.is_for(
            &user.id,
            user.password_hash.as_deref(),
            &ctx.config.device_cookies,
        )
    {
        return Ok((device.throttle_key(), true));
    }
    let users = &ctx.stores.users;
    let key = match (user, who) {
        (Some(user), Who::Known(_)) => {
            ThrottleKey::account(&users.canonical_username(&user.username))
        }
        (_, Who::Named(name)) => ThrottleKey::account(&users.canonical_username(name)),
        (None, Who::Known(id)) => ThrottleKey::account(&format!("#{id}")),
    };
    Ok((key, false))
}

/// The one path of every password check: sign-in, step-up, password change
/// and API sign-in get the same throttling, the same constant work for
/// unknown users and the same audit rows. Blocking (Argon2 and the store).
///
/// Failures count against the account as typed, whether or not it exists,
/// in the database (so every instance shares the count and unknown names
/// behave exactly like real ones), unless the client carries a device
/// cookie for that very user: then they count against that device alone
/// (OWASP's device cookies), so a guesser cannot lock the user out of the
/// browsers they already use. `detail` goes into the failure's audit row.
pub(crate) fn check_password(
    ctx: &mut StepContext<'_>,
    who: Who<'_>,
    password: &str,
    detail: &str,
) -> Result<PasswordCheck, StoreError> {
    let (users, state) = (&ctx.stores.users, &ctx.stores.state);
    let (user, epoch) = user_and_epoch(ctx, who)?;
    if epoch.is_some() {
        ctx.epoch = epoch;
    }
    let (key, trusted) = throttle_key(ctx, user.as_ref(), who)?;
    // Throttle before any Argon2 work, and the same way whether or not the
    // account exists. The check is counted as a failure before it runs, so
    // parallel guesses (on any instance) cannot all read a count below the
    // limit: at most `max_failed_logins` checks per lockout, whatever the
    // concurrency. A right password clears the count.
    let lockout = ctx.config.lockout.as_secs() as i64;
    let max = ctx.config.max_failed_logins;
    if let Reservation::Throttled { last_failed_at } =
        state.reserve_attempt(&key, ctx.now, lockout, max)?
    {
        let retry_after_secs = (last_failed_at + lockout - ctx.now).clamp(1, lockout.max(1)) as u64;
        tracing::info!(
            user_id = user.as_ref().map(|u| tracing::field::display(&u.id)),
            retry_after_secs,
            trusted_device = trusted,
            "password check throttled"
        );
        crate::telemetry::throttled(if trusted { "device" } else { "account" });
        return Ok(PasswordCheck::Throttled { retry_after_secs });
    }
    let verified = verify_password_work(users, user.as_ref(), password);
    match user {
        Some(user) if verified => {
            state.clear_failures(&key)?;
            ctx.password_at = Some(ctx.now);
            ctx.device_cookie = Some(ctx.config.device_cookies.issue(
                &user.id,
                user.password_hash.as_deref(),
                ctx.now,
            ));
            Ok(PasswordCheck::Verified(Box::new(user)))
        }
        user => {
            let user_id = user.map(|u| u.id);
            tracing::info!(
                user_id = user_id.as_ref().map(tracing::field::display),
                "password check failed"
            );
            ctx.stores.audit(NewAuditEvent {
                at: ctx.now,
                kind: AuditKind::SignInFailed,
                user_id: user_id.as_ref(),
                ip: ctx.client.ip.as_deref(),
                user_agent: ctx.client.user_agent.as_deref(),
                detail,
            });
            Ok(PasswordCheck::Wrong)
        }
    }
}

static VERIFICATIONS: AtomicU64 = AtomicU64::new(0);
static RUNNING: AtomicU64 = AtomicU64::new(0);
static PEAK_RUNNING: AtomicU64 = AtomicU64::new(0);

/// The most Argon2 verifications this process ran at the same time. For
/// tests that prove sign-in storms are bounded.
#[doc(hidden)]
pub fn argon2_peak_concurrency() -> u64 {
    PEAK_RUNNING.load(Ordering::SeqCst)
}

/// How many Argon2 verifications this process has run. For tests that
/// prove unknown users cost the same work as known ones.
#[doc(hidden)]
pub fn argon2_verifications() -> u64 {
    VERIFICATIONS.load(Ordering::Relaxed)
}

/// Runs `f` when dropped.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

/// Verifies `password` against `user`'s hash with the directory's own
/// check, on the crate's Argon2 threads, always doing one full check: with
/// no user (unknown name) or no hash it checks against the directory's
/// [`dummy_hash`](crate::store::UserDirectory::dummy_hash) and returns
/// `false`, so the timing tells nothing. Blocking.
pub(crate) fn verify_password_work(
    users: &std::sync::Arc<dyn crate::store::UserDirectory>,
    user: Option<&User>,
    password: &str,
) -> bool {
    VERIFICATIONS.fetch_add(1, Ordering::Relaxed);
    let stored = user.and_then(|u| u.password_hash.as_deref());
    // Fetched here, not on the Argon2 thread: a default dummy hash is made
    // on those threads the first time.
    let (hash, real) = match stored {
        Some(hash) => (hash.to_owned(), true),
        None => (users.dummy_hash().to_owned(), false),
    };
    let running = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
    PEAK_RUNNING.fetch_max(running, Ordering::SeqCst);
    let _running = scopeguard(|| {
        RUNNING.fetch_sub(1, Ordering::SeqCst);
    });
    let (users, password) = (users.clone(), password.to_owned());
    let ok = crate::threads::on_argon2_thread(move || users.verify_password(&hash, &password));
    real && ok
}
