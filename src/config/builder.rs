//! [`RememberMeConfigBuilder`]: every setting of the layer, checked.

use super::*;

/// Builder of [`RememberMeConfig`].
#[derive(Debug, Clone)]
#[must_use]
pub struct RememberMeConfigBuilder {
    pub(super) config: RememberMeConfig,
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
    /// At most [`MAX_TOKEN_LIFETIME`] (longer is capped).
    pub fn rotation_grace(mut self, grace: Duration) -> Self {
        self.config.rotation_grace = grace.min(MAX_TOKEN_LIFETIME);
        self
    }

    /// How often an open session re-reads the user's auth epoch. Default 60 s:
    /// revocations reach open sessions within a minute without a database
    /// query on every request. Zero checks on every request.
    /// At most [`MAX_TOKEN_LIFETIME`] (longer is capped).
    pub fn epoch_check_interval(mut self, interval: Duration) -> Self {
        self.config.epoch_check_interval = interval.min(MAX_TOKEN_LIFETIME);
        self
    }

    /// Absolute lifetime of a signed-in session, checked on the server. Default
    /// 12 hours: a copied session cookie stops working the same day even though
    /// the session store keeps no server-side list. A remember-me cookie signs
    /// the user in again without a form.
    /// At most [`MAX_TOKEN_LIFETIME`] (longer is capped).
    pub fn session_lifetime(mut self, lifetime: Duration) -> Self {
        self.config.session_lifetime = lifetime.min(MAX_TOKEN_LIFETIME);
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
    /// At most [`MAX_TOKEN_LIFETIME`] (longer is capped).
    pub fn lockout(mut self, lockout: Duration) -> Self {
        self.config.lockout = lockout.min(MAX_TOKEN_LIFETIME);
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
    /// others wait in a queue without a thread. Default: what the token
    /// store suggests ([`TokenStore::suggested_concurrency`](crate::store::TokenStore::suggested_concurrency)), else 8.
    /// With a store that rotates in batches
    /// ([`TokenStore::rotates_in_batches`](crate::store::TokenStore::rotates_in_batches),
    /// as the Diesel store does), the sign-ins by cookie of the login flow
    /// and the JSON API's refreshes hold no thread while they wait for
    /// their rotation: one thread at a time runs them in batches of up to
    /// 64, as large as the load makes them, whatever this number. Each
    /// thread costs memory (about 0.3 MiB resident, mostly its malloc
    /// arena); a store of your own gains nothing from more threads than
    /// connections.
    pub fn store_concurrency(mut self, n: usize) -> Self {
        self.config.store_concurrency = Some(n.max(1));
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
    /// At most [`MAX_TOKEN_LIFETIME`] (longer is capped).
    pub fn access_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.config.access_token_lifetime = lifetime.min(MAX_TOKEN_LIFETIME);
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
    /// At most [`MAX_TOKEN_LIFETIME`] (longer is capped).
    pub fn reauth_window(mut self, window: Duration) -> Self {
        self.config.reauth_window = window.min(MAX_TOKEN_LIFETIME);
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
