//! The password step and Argon2id hashing.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use std::cell::RefCell;

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use super::{Failure, Step, StepContext, StepId, StepOutcome};
use crate::store::ThrottleKey;
use crate::store::{AuditKind, NewAuditEvent, Reservation, StoreError, User, UserId};
use crate::threads::Threads;

/// Checks a typed password. With a user already known (step-up) the typed
/// username is ignored and that user's password is checked.
///
/// Every check goes through [`check_password`]: an unknown username costs
/// the same Argon2 work as a wrong password and is throttled the same way,
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
        known_user: Option<UserId>,
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
                let id = user.id;
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
    Known(UserId),
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
    let users = &ctx.stores.users;
    let user = match who {
        Who::Known(id) => users.find_by_id(id)?,
        Who::Named(name) => users.find_by_username(name)?,
    };
    let key = match (&ctx.device, &user, who) {
        (Some(device), Some(user), _) if device.user == user.id => device.throttle_key(),
        (_, Some(user), Who::Known(_)) => ThrottleKey::account(&user.username),
        (_, _, Who::Named(name)) => ThrottleKey::account(name),
        (_, None, Who::Known(id)) => ThrottleKey::account(&format!("#{id}")),
    };
    // Throttle before any Argon2 work, and the same way whether or not the
    // account exists. The check is counted as a failure before it runs, so
    // parallel guesses (on any instance) cannot all read a count below the
    // limit: at most `max_failed_logins` checks per lockout, whatever the
    // concurrency. A right password clears the count.
    let lockout = ctx.config.lockout.as_secs() as i64;
    let max = ctx.config.max_failed_logins;
    if let Reservation::Throttled { last_failed_at } =
        users.reserve_attempt(&key, ctx.now, lockout, max)?
    {
        let retry_after_secs = (last_failed_at + lockout - ctx.now).clamp(1, lockout.max(1)) as u64;
        tracing::info!(
            user_id = user.as_ref().map(|u| u.id),
            retry_after_secs,
            trusted_device = ctx.device.is_some(),
            "password check throttled"
        );
        return Ok(PasswordCheck::Throttled { retry_after_secs });
    }
    let verified = verify_password_work(user.as_ref().map(|u| u.password_hash.as_str()), password);
    match user {
        Some(user) if verified => {
            users.clear_failures(&key)?;
            ctx.password_at = Some(ctx.now);
            Ok(PasswordCheck::Verified(Box::new(user)))
        }
        user => {
            let user_id = user.map(|u| u.id);
            tracing::info!(user_id, "password check failed");
            ctx.stores.audit(NewAuditEvent {
                at: ctx.now,
                kind: AuditKind::SignInFailed,
                user_id,
                ip: ctx.client.ip.as_deref(),
                user_agent: ctx.client.user_agent.as_deref(),
                detail,
            });
            Ok(PasswordCheck::Wrong)
        }
    }
}

/// OWASP's Argon2id parameters: 19 MiB, 2 iterations, 1 lane.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("constant Argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Runs `f` on the process's Argon2 threads (one per core) and waits for
/// its result. Argon2 allocates 19 MiB per call: done on whichever
/// blocking-pool thread happens to run, a sign-in storm grew the server to
/// gigabytes. Here memory is bounded by the number of these threads (one
/// per core: Argon2 cannot use more), each keeping one buffer (see
/// [`with_memory`]), and callers queue. Blocking.
fn on_argon2_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    debug_assert!(
        !std::thread::current()
            .name()
            .is_some_and(|name| name.starts_with(crate::threads::STORE_THREADS)),
        "Argon2 called from a store thread: every store call would wait behind it"
    );
    static THREADS: OnceLock<Threads> = OnceLock::new();
    THREADS
        .get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(2, usize::from);
            Threads::start("argon2", cores, 1024).expect("spawn the Argon2 threads")
        })
        .run_blocking(f)
        .expect("an Argon2 job does not panic")
}

/// Hashes a password with Argon2id (OWASP parameters) and a fresh salt, as a
/// PHC string. Slow by design (tens of milliseconds): call it from a
/// blocking thread.
pub fn hash_password(password: &str) -> String {
    let password = password.to_owned();
    on_argon2_thread(move || {
        let mut salt = [0u8; 16];
        rand::fill(&mut salt);
        let params = argon2().params().clone();
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        with_memory(params.block_count(), |memory| {
            argon2().hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, memory)
        })
        .expect("Argon2 with valid parameters, salt and output length does not fail");
        PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&params).expect("valid parameters encode"),
            salt: Some(Salt::new(&salt).expect("a 16-byte salt is valid")),
            hash: Some(Output::new(&out).expect("a 32-byte output is valid")),
        }
        .to_string()
    })
}

/// The memory blocks of the Argon2 thread it runs on. Argon2 needs
/// `m_cost` KiB of memory per call; allocated afresh each time, the freed
/// blocks stay in the allocator's arenas (glibc raises its mmap threshold
/// after the first one), and a sign-in storm left hundreds of MiB resident.
/// Kept per thread, the memory is `threads × m_cost` for the life of the
/// process, whatever the load. (Every block is written before it is read,
/// so reuse needs no zeroing; a hash with a larger `m_cost` than any before
/// grows the buffer, up to [`MAX_REUSED_BLOCKS`], beyond which it gets a
/// buffer of its own.)
fn with_memory<T>(blocks: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
    thread_local! {
        static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
    }
    if blocks > MAX_REUSED_BLOCKS {
        return f(&mut vec![Block::new(); blocks]);
    }
    MEMORY.with_borrow_mut(|memory| {
        if memory.len() < blocks {
            memory.resize(blocks, Block::new());
        }
        f(&mut memory[..blocks])
    })
}

/// Largest Argon2 memory (in 1 KiB blocks) kept per thread between calls.
const MAX_REUSED_BLOCKS: usize = 64 * 1024;

/// Whether `password` matches the PHC string `stored` (Argon2 of any variant
/// and parameters the string names), computed in the thread's reused memory
/// and compared in constant time. Runs on an Argon2 thread.
fn verify_phc(password: &[u8], stored: &str) -> bool {
    let Ok(hash) = PasswordHash::new(stored) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm.as_str()) else {
        return false;
    };
    let Ok(version) = hash
        .version
        .map_or(Ok(Version::default()), Version::try_from)
    else {
        return false;
    };
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    let mut out = [0u8; Output::MAX_LENGTH];
    let out = &mut out[..expected.len()];
    let computed = with_memory(params.block_count(), |memory| {
        Argon2::new(algorithm, version, params.clone())
            .hash_password_into_with_memory(password, salt, out, memory)
    });
    use subtle::ConstantTimeEq as _;
    computed.is_ok() && bool::from(out.ct_eq(expected.as_bytes()))
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

/// Verifies `password` against `stored`, always doing one full Argon2
/// verification: with no stored hash (unknown user) it checks against a
/// dummy hash and returns `false`. Blocking.
pub fn verify_password_work(stored: Option<&str>, password: &str) -> bool {
    static DUMMY: OnceLock<String> = OnceLock::new();
    VERIFICATIONS.fetch_add(1, Ordering::Relaxed);
    let (hash, real) = match stored {
        Some(hash) => (hash, true),
        None => (
            DUMMY
                .get_or_init(|| hash_password("no user has this password"))
                .as_str(),
            false,
        ),
    };
    let running = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
    PEAK_RUNNING.fetch_max(running, Ordering::SeqCst);
    let _running = scopeguard(|| {
        RUNNING.fetch_sub(1, Ordering::SeqCst);
    });
    // A malformed stored hash verifies nothing (and costs less: that is a
    // data bug worth the log line, not an enumeration oracle).
    let (hash_owned, password_owned) = (hash.to_owned(), password.to_owned());
    let ok = on_argon2_thread(move || verify_phc(password_owned.as_bytes(), &hash_owned));
    if real && !ok && PasswordHash::new(hash).is_err() {
        tracing::error!("stored password hash is not a valid PHC string");
    }
    real && ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_interoperate_with_the_argon2_crate_and_any_parameters_verify() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        // Ours verifies with the stock verifier…
        let ours = hash_password("tr0ub4dor");
        argon2()
            .verify_password(b"tr0ub4dor", ours.as_str())
            .expect("the argon2 crate accepts our hash");
        // …and a stock hash at other parameters (smaller, then larger than
        // the memory the thread kept) verifies with ours.
        for m in [8 * 1024, 24 * 1024] {
            let params = Params::new(m, 1, 1, None).unwrap();
            let stock = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .hash_password(b"tr0ub4dor")
                .unwrap()
                .to_string();
            assert!(verify_password_work(Some(&stock), "tr0ub4dor"), "m={m}");
            assert!(!verify_password_work(Some(&stock), "tr0ub4dor!"), "m={m}");
        }
        // A tampered output or salt fails.
        let mut tampered = ours.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        assert!(!verify_password_work(Some(&tampered), "tr0ub4dor"));
        let salt_at = ours.rfind('$').unwrap() - 2;
        let mut tampered = ours.clone().into_bytes();
        tampered[salt_at] = if tampered[salt_at] == b'A' {
            b'B'
        } else {
            b'A'
        };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(!verify_password_work(Some(&tampered), "tr0ub4dor"));
    }

    #[test]
    fn passwords_are_hashed_with_argon2id_at_owasp_parameters_and_a_fresh_salt() {
        let a = hash_password("correct horse");
        let b = hash_password("correct horse");
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "a fresh salt each time");
        assert!(verify_password_work(Some(&a), "correct horse"));
        assert!(!verify_password_work(Some(&a), "Correct horse"));
        assert!(
            !verify_password_work(None, "correct horse"),
            "no user, no success"
        );
        assert!(!verify_password_work(Some("not a phc string"), "x"));
    }
}
