//! Configuration of the remember-me layer: durations and cookie options.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::{CLOCK_SKEW_SECS, Clock, SystemClock};

/// Which header the trusted proxies write the client's address to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For` (nginx, HAProxy, most load balancers). The default.
    #[default]
    XForwardedFor,
    /// `Forwarded`'s `for=` (RFC 7239).
    Forwarded,
}

impl std::str::FromStr for ForwardedHeader {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Ok(Self::XForwardedFor),
            "forwarded" => Ok(Self::Forwarded),
            other => Err(format!(
                "unknown header `{other}`: expected x-forwarded-for or forwarded"
            )),
        }
    }
}

/// The longest validity or maximum lifetime a token can be given: 100 years.
/// Expiry times are Unix seconds in an `i64`, and computed by the database
/// too; the cap keeps every sum of them far from overflowing.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// How a remember-me token's server-side expiry moves when it is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Expiry {
    /// The token expires `validity` after it was issued, however often it is
    /// used. The default: a stolen cookie is worth something for a bounded time.
    #[default]
    Absolute,
    /// Each use pushes expiry to `validity` from now, but never past
    /// `max_lifetime` after the chain was first issued.
    Sliding,
    /// Each use pushes expiry to `validity` from now with no absolute limit
    /// ("forever sessions"): a device that keeps coming back stays signed in
    /// until it signs out or is revoked. An idle device still expires.
    Forever,
}

impl std::str::FromStr for Expiry {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "absolute" => Ok(Self::Absolute),
            "sliding" => Ok(Self::Sliding),
            "forever" => Ok(Self::Forever),
            other => Err(format!(
                "unknown expiry `{other}`: expected absolute, sliding or forever"
            )),
        }
    }
}

/// Settings of the remember-me layer. Build one with [`RememberMeConfig::builder`].
///
/// ```
/// use std::time::Duration;
/// use rememberme::RememberMeConfig;
/// use rememberme::config::Expiry;
///
/// let config = RememberMeConfig::builder()
///     .validity(Duration::from_secs(14 * 24 * 3600))
///     .expiry(Expiry::Sliding)
///     .cookie_secure(true)
///     .build();
/// assert_eq!(config.validity(), Duration::from_secs(14 * 24 * 3600));
/// ```
#[derive(Clone)]
pub struct RememberMeConfig {
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) cookie_name: String,
    pub(crate) cookie_secure: bool,
    pub(crate) cookie_domain: Option<String>,
    pub(crate) validity: Duration,
    pub(crate) expiry: Expiry,
    pub(crate) max_lifetime: Duration,
    pub(crate) rotation_grace: Duration,
    pub(crate) epoch_check_interval: Duration,
    pub(crate) session_lifetime: Duration,
    pub(crate) max_tokens_per_user: u32,
    pub(crate) max_failed_logins: u32,
    pub(crate) lockout: Duration,
    pub(crate) ip_attempts_per_minute: u32,
    pub(crate) password_concurrency: usize,
    pub(crate) store_concurrency: usize,
    pub(crate) access_tokens: Option<crate::access::AccessTokens>,
    pub(crate) access_token_lifetime: Duration,
    pub(crate) login_path: String,
    pub(crate) step_up_path: String,
    pub(crate) reauth_window: Duration,
    pub(crate) ip_prefix_v4: u8,
    pub(crate) ip_prefix_v6: u8,
    pub(crate) device_cookies: crate::device::DeviceCookies,
    pub(crate) seal_key: crate::token::SealKey,
    pub(crate) trusted_proxies: Vec<ipnet::IpNet>,
    pub(crate) forwarded_header: ForwardedHeader,
}

impl std::fmt::Debug for RememberMeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RememberMeConfig")
            .field("cookie_name", &self.cookie_name)
            .field("cookie_secure", &self.cookie_secure)
            .field("validity", &self.validity)
            .field("expiry", &self.expiry)
            .field("rotation_grace", &self.rotation_grace)
            .field("epoch_check_interval", &self.epoch_check_interval)
            .field("session_lifetime", &self.session_lifetime)
            .field("max_tokens_per_user", &self.max_tokens_per_user)
            .field("reauth_window", &self.reauth_window)
            .finish_non_exhaustive()
    }
}

impl Default for RememberMeConfig {
    fn default() -> Self {
        Self::builder().build()
    }
}

impl RememberMeConfig {
    /// A builder holding the defaults documented on each setter.
    pub fn builder() -> RememberMeConfigBuilder {
        RememberMeConfigBuilder {
            config: RememberMeConfig {
                clock: Arc::new(SystemClock),
                cookie_name: "remember_me".to_owned(),
                cookie_secure: true,
                cookie_domain: None,
                validity: Duration::from_secs(30 * 24 * 3600),
                expiry: Expiry::Absolute,
                max_lifetime: Duration::from_secs(365 * 24 * 3600),
                rotation_grace: Duration::from_secs(60),
                epoch_check_interval: Duration::from_secs(60),
                session_lifetime: Duration::from_secs(12 * 3600),
                max_tokens_per_user: 20,
                max_failed_logins: 5,
                lockout: Duration::from_secs(300),
                ip_attempts_per_minute: 30,
                password_concurrency: 2 * std::thread::available_parallelism()
                    .map(usize::from)
                    .unwrap_or(2),
                store_concurrency: 8,
                access_tokens: None,
                access_token_lifetime: Duration::from_secs(15 * 60),
                login_path: "/login".to_owned(),
                step_up_path: "/login/step-up".to_owned(),
                reauth_window: Duration::from_secs(900),
                ip_prefix_v4: 32,
                ip_prefix_v6: 64,
                device_cookies: crate::device::DeviceCookies::random(),
                seal_key: crate::token::SealKey::random(),
                trusted_proxies: Vec::new(),
                forwarded_header: ForwardedHeader::XForwardedFor,
            },
        }
    }

    /// Derives the device-cookie and seal keys from `secret`.
    pub(crate) fn set_server_secret(&mut self, secret: &[u8]) {
        self.device_cookies = crate::device::DeviceCookies::from_secret(secret);
        self.seal_key = crate::token::SealKey::from_secret(secret);
    }

    /// The current time from the configured clock, Unix seconds.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// The configured clock's offset from the system's (see
    /// [`Clock::offset_from_system_ms`]).
    pub fn clock_offset_ms(&self) -> i64 {
        self.clock.offset_from_system_ms()
    }

    /// Name of the remember-me cookie as set in browsers: the configured
    /// name, with the `__Host-` prefix when cookies are `Secure` and carry
    /// no `Domain` (the default). A browser accepts a `__Host-` cookie only
    /// from this very host over a secure channel, with `Path=/`: a sibling
    /// subdomain cannot plant one (login CSRF into its own account).
    pub fn cookie_name(&self) -> String {
        self.prefixed(&self.cookie_name)
    }

    /// `name` with the `__Host-` prefix when the cookies this layer sets
    /// may carry it (see [`RememberMeConfig::cookie_name`]).
    pub fn prefixed(&self, name: &str) -> String {
        if self.cookie_secure && self.cookie_domain.is_none() {
            format!("__Host-{name}")
        } else {
            name.to_owned()
        }
    }

    /// How long a typed password counts for strong pages and for minting
    /// long-lived tokens ("sudo mode").
    pub fn reauth_window(&self) -> Duration {
        self.reauth_window
    }

    /// Whether a password typed at `password_at` is recent enough at `now`
    /// (see [`RememberMeConfigBuilder::reauth_window`]). A time up to
    /// [`CLOCK_SKEW_SECS`] in the future counts as now (another instance's
    /// clock a little ahead); further in the future, it does not.
    pub fn password_is_recent(&self, password_at: Option<i64>, now: i64) -> bool {
        password_at.is_some_and(|at| {
            let age = now - at;
            (-CLOCK_SKEW_SECS..=self.reauth_window.as_secs() as i64).contains(&age)
        })
    }

    /// How long a token stays valid (see [`Expiry`] for how use moves it).
    pub fn validity(&self) -> Duration {
        self.validity
    }

    /// How a token's expiry moves when it is used.
    pub fn expiry(&self) -> Expiry {
        self.expiry
    }

    /// How long the token a rotation replaced is still accepted.
    pub fn rotation_grace(&self) -> Duration {
        self.rotation_grace
    }

    /// How often a session re-checks the user's auth epoch.
    pub fn epoch_check_interval(&self) -> Duration {
        self.epoch_check_interval
    }

    /// Whether cookies are marked `Secure`.
    pub fn cookie_secure(&self) -> bool {
        self.cookie_secure
    }

    /// Where anonymous visitors are sent to sign in.
    pub fn login_path(&self) -> &str {
        &self.login_path
    }

    /// Where remembered-only visitors are sent to confirm their password.
    pub fn step_up_path(&self) -> &str {
        &self.step_up_path
    }

    /// Most remember-me tokens one user may hold; issuing one more deletes the oldest.
    pub fn max_tokens_per_user(&self) -> u32 {
        self.max_tokens_per_user
    }
}

/// Builder of [`RememberMeConfig`].
#[derive(Debug, Clone)]
#[must_use]
pub struct RememberMeConfigBuilder {
    config: RememberMeConfig,
}

impl RememberMeConfigBuilder {
    /// Name of the remember-me cookie. Default `remember_me`.
    pub fn cookie_name(mut self, name: impl Into<String>) -> Self {
        self.config.cookie_name = name.into();
        self
    }

    /// Mark cookies `Secure` (sent over HTTPS only). Default `true`; turn it
    /// off only for plain-HTTP development.
    pub fn cookie_secure(mut self, secure: bool) -> Self {
        self.config.cookie_secure = secure;
        self
    }

    /// Domain attribute of the cookie. Default none: the cookie goes back only
    /// to the host that set it, which is the narrowest scope.
    pub fn cookie_domain(mut self, domain: Option<String>) -> Self {
        self.config.cookie_domain = domain;
        self
    }

    /// Validity of a token. Default 30 days: long enough that a regular user
    /// rarely types a password, short enough to bound a forgotten device.
    /// At most [`MAX_TOKEN_LIFETIME`] (longer is capped).
    pub fn validity(mut self, validity: Duration) -> Self {
        self.config.validity = validity.min(MAX_TOKEN_LIFETIME);
        self
    }

    /// How use moves expiry. Default [`Expiry::Absolute`].
    pub fn expiry(mut self, expiry: Expiry) -> Self {
        self.config.expiry = expiry;
        self
    }

    /// Absolute limit of a chain under [`Expiry::Sliding`]. Default 365 days.
    /// At most [`MAX_TOKEN_LIFETIME`] (longer is capped).
    pub fn max_lifetime(mut self, max_lifetime: Duration) -> Self {
        self.config.max_lifetime = max_lifetime.min(MAX_TOKEN_LIFETIME);
        self
    }

    /// Grace window after a rotation. Default 60 s: enough for the parallel
    /// requests of one page load (images, frames, tabs restored together) that
    /// all carry the pre-rotation cookie, short enough that a thief replaying a
    /// copied cookie later is caught.
    pub fn rotation_grace(mut self, grace: Duration) -> Self {
        self.config.rotation_grace = grace;
        self
    }

    /// How often an open session re-reads the user's auth epoch. Default 60 s:
    /// revocations reach open sessions within a minute without a database
    /// query on every request. Zero checks on every request.
    pub fn epoch_check_interval(mut self, interval: Duration) -> Self {
        self.config.epoch_check_interval = interval;
        self
    }

    /// Absolute lifetime of a signed-in session, checked on the server. Default
    /// 12 hours: a copied session cookie stops working the same day even though
    /// the session store keeps no server-side list. A remember-me cookie signs
    /// the user in again without a form.
    pub fn session_lifetime(mut self, lifetime: Duration) -> Self {
        self.config.session_lifetime = lifetime;
        self
    }

    /// Most tokens (devices) per user. Default 20; issuing one more deletes the
    /// least recently used, so a script cannot grow the table without bound.
    pub fn max_tokens_per_user(mut self, max: u32) -> Self {
        self.config.max_tokens_per_user = max.max(1);
        self
    }

    /// Failed sign-ins of one account after which it is throttled. Default 5.
    pub fn max_failed_logins(mut self, max: u32) -> Self {
        self.config.max_failed_logins = max.max(1);
        self
    }

    /// How long a throttled account waits after its last failure before the
    /// next attempt is checked. Default 5 minutes: slows an online guesser
    /// to about a dozen guesses an hour per account, while a user who
    /// mistypes a few times waits minutes, not forever. A success resets it.
    pub fn lockout(mut self, lockout: Duration) -> Self {
        self.config.lockout = lockout;
        self
    }

    /// Password attempts one client IP may make per minute (0: no limit).
    /// Default 30: no person types that fast; a script spraying many
    /// accounts from one address is slowed.
    pub fn ip_attempts_per_minute(mut self, n: u32) -> Self {
        self.config.ip_attempts_per_minute = n;
        self
    }

    /// Most password checks in progress at once (reading the user, then
    /// waiting for or running on one of the Argon2 threads, one per core);
    /// the others wait without holding a thread. Default: twice the cores,
    /// so that while every Argon2 thread hashes, the next sign-ins already
    /// have their user row and queue for it: no Argon2 thread idles between
    /// two sign-ins. Argon2's memory does not grow with it (one block per
    /// Argon2 thread); it bounds the blocking-pool threads that sign-ins hold.
    pub fn password_concurrency(mut self, n: usize) -> Self {
        self.config.password_concurrency = n.max(1);
        self
    }

    /// Threads that run the layer's store calls (remember-me sign-ins,
    /// session checks, sign-outs), so at most this many run at once and the
    /// others wait in a queue without a thread. Default 8. The Diesel store
    /// runs the re-authentications waiting at one time together (one
    /// transaction on SQLite, one statement on PostgreSQL), so more threads
    /// make larger batches: about the pool size on SQLite (one writer at a
    /// time anyway), about 4 × the pool size on PostgreSQL, where a thread
    /// waiting to join a batch holds no connection (a batch takes one; the
    /// threads' other calls, session checks and sign-outs, take one each
    /// and wait for the pool beyond its size). A store of your own gains
    /// nothing from more threads than connections.
    pub fn store_concurrency(mut self, n: usize) -> Self {
        self.config.store_concurrency = n.max(1);
        self
    }

    /// Enables the JSON API's access tokens, signed with a key derived from
    /// `secret` (give every instance the same secret, e.g. the session key's
    /// master bytes). Without it the API answers 500.
    pub fn access_token_secret(mut self, secret: &[u8]) -> Self {
        self.config.access_tokens = Some(crate::access::AccessTokens::from_secret(secret));
        self
    }

    /// Lifetime of an API access token. Default 15 minutes: short enough
    /// that a leaked one is soon worthless, long enough that an app refreshes
    /// rarely.
    pub fn access_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.config.access_token_lifetime = lifetime;
        self
    }

    /// Path of the sign-in page. Default `/login`.
    pub fn login_path(mut self, path: impl Into<String>) -> Self {
        self.config.login_path = path.into();
        self
    }

    /// Path of the step-up (confirm your password) page. Default `/login/step-up`.
    pub fn step_up_path(mut self, path: impl Into<String>) -> Self {
        self.config.step_up_path = path.into();
        self
    }

    /// How long a typed password proves itself ("sudo mode", as GitHub does
    /// for sensitive pages). Default 900 s. Strong pages (admin, password
    /// change, revoking devices) and minting a long-lived token (the
    /// step-up form with "Keep me logged in", an API bearer asking for
    /// one) need the password typed within this window; past it the
    /// browser goes through step-up and the API answers 403
    /// `password_required`. A copied session or access token is then worth
    /// a bounded time for sensitive work, whatever its own lifetime.
    pub fn reauth_window(mut self, window: Duration) -> Self {
        self.config.reauth_window = window;
        self
    }

    /// Prefix lengths that group client addresses for the per-IP limit.
    /// Default `/32` for IPv4 (one address) and `/64` for IPv6: one IPv6
    /// subscriber usually holds a whole /64, and keyed per address it could
    /// rotate through 2^64 fresh allowances. Values are capped at 32 and 128.
    pub fn ip_limit_prefixes(mut self, v4: u8, v6: u8) -> Self {
        self.config.ip_prefix_v4 = v4.min(32);
        self.config.ip_prefix_v6 = v6.min(128);
        self
    }

    /// Networks of the reverse proxies in front of the site. Only from them
    /// are `Forwarded` and `X-Forwarded-For` believed (the nearest address
    /// in them that is not itself a trusted proxy is the client), for the
    /// per-network limit of password attempts and for the addresses the
    /// audit log and the devices pages record. Default none: the socket's
    /// peer is the client, and a header any client can forge decides
    /// nothing. Behind a proxy without this, every client shares the
    /// proxy's allowance.
    pub fn trusted_proxies(mut self, networks: impl IntoIterator<Item = ipnet::IpNet>) -> Self {
        self.config.trusted_proxies = networks.into_iter().map(unmapped).collect();
        self
    }

    /// The header the trusted proxies write the client's address to:
    /// `X-Forwarded-For` by default, or `Forwarded`. Only that one is read
    /// (a proxy that appends to one passes a client's forged other one
    /// through untouched).
    pub fn forwarded_header(mut self, header: ForwardedHeader) -> Self {
        self.config.forwarded_header = header;
        self
    }

    /// The server's secret, from which the keys of the device cookies (see
    /// [`crate::device`]) and of the grace seals (see
    /// [`RememberCookie::seal_next`](crate::token::RememberCookie::seal_next))
    /// are derived, each apart. Give every instance the same one (say, the
    /// session key's master bytes): they then accept each other's device
    /// cookies and hand back each other's sealed tokens. Default: random
    /// keys per process, so a restart makes every browser untrusted again
    /// (it loses only its separate lockout budget) and a request in the
    /// grace window just after a restart is accepted without getting the
    /// current token back.
    pub fn server_secret(mut self, secret: &[u8]) -> Self {
        self.config.set_server_secret(secret);
        self
    }

    /// The clock. Default [`SystemClock`]; tests pass a [`ManualClock`](crate::clock::ManualClock).
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.config.clock = Arc::new(clock);
        self
    }

    /// The finished configuration.
    pub fn build(self) -> RememberMeConfig {
        self.config
    }
}

/// An IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) as the IPv4 network
/// it maps (`10.0.0.0/8`): client addresses are compared in their IPv4
/// form, which an IPv6 network never contains.
fn unmapped(net: ipnet::IpNet) -> ipnet::IpNet {
    match net {
        ipnet::IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map(ipnet::IpNet::V4)
                .unwrap_or(net),
            None => net,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests;
