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
/// too; the cap keeps every sum of them far from overflowing. Every other
/// duration setting (grace window, check interval, session and access-token
/// lifetimes, lockout, re-auth window) is capped at it too: a longer one
/// ("lock forever" as `Duration::MAX`) would wrap when read as seconds in an
/// `i64`, and a lockout that wrapped would lock nobody.
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
    /// `None`: what the token store suggests, else 8.
    pub(crate) store_concurrency: Option<usize>,
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
                store_concurrency: None,
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

    /// Most remember-me tokens one user may hold; issuing one more deletes
    /// the least recently used.
    pub fn max_tokens_per_user(&self) -> u32 {
        self.max_tokens_per_user
    }
}

mod builder;
pub use builder::RememberMeConfigBuilder;

#[cfg(test)]
mod tests;
