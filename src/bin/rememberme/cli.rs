//! The command line: the subcommands, and `serve`'s settings (each also an
//! environment variable).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use rememberme::config::Expiry;

#[derive(Parser, Debug)]
#[command(
    name = "rememberme",
    version,
    about = "rememberme demo site and admin CLI"
)]
pub(crate) struct Cli {
    /// Database URL: `sqlite://FILE` (or a path) or `postgres://…`.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://rememberme.db",
        global = true
    )]
    pub database_url: String,

    /// `serve`'s settings, accepted without the subcommand too.
    #[command(flatten)]
    pub serve: ServeArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

// Parsed once at start-up: the size of a variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Run the demo site (the default).
    Serve(ServeArgs),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage remember-me tokens.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Apply pending database migrations and exit.
    Migrate,
}

#[derive(Subcommand, Debug)]
pub(crate) enum UserCommand {
    /// Create a user; the password is read from standard input.
    Add {
        /// The username.
        name: String,
        /// Give the user admin rights.
        #[arg(long)]
        admin: bool,
    },
    /// Grant (`true`) or withdraw (`false`) a user's admin rights. Open
    /// sessions see the change at their next epoch check.
    SetAdmin {
        /// The username.
        name: String,
        /// Whether the user is an admin.
        #[arg(action = clap::ArgAction::Set)]
        admin: bool,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum TokensCommand {
    /// Delete expired remember-me tokens and failure counters that can no
    /// longer throttle.
    Purge {
        /// Seconds a throttled account waits after its last failure, as the
        /// site is served with (`serve --lockout-secs`, or
        /// `REMEMBERME_LOCKOUT_SECS`): counters are kept at least this long.
        #[arg(long)]
        lockout_secs: Option<u64>,
    },
    /// List remember-me tokens (never the secrets), newest first.
    List {
        /// Only this user's tokens.
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke every token of a user and end their open sessions.
    Revoke {
        /// The user.
        #[arg(long)]
        user: String,
    },
}

#[derive(Args, Debug, Clone)]
pub(crate) struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "REMEMBERME_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,
    /// Days a remember-me token stays valid.
    #[arg(long, env = "REMEMBERME_REMEMBER_DAYS", default_value_t = 30)]
    pub remember_days: u64,
    /// How use moves a token's expiry: absolute, sliding or forever.
    #[arg(long, env = "REMEMBERME_REMEMBER_EXPIRY", default_value = "absolute")]
    pub remember_expiry: Expiry,
    /// Seconds the token replaced by a rotation is still accepted.
    #[arg(long, env = "REMEMBERME_ROTATION_GRACE_SECS", default_value_t = 60)]
    pub rotation_grace_secs: u64,
    /// Seconds between re-checks of a session's auth epoch (0: every request).
    #[arg(long, env = "REMEMBERME_EPOCH_CHECK_SECS", default_value_t = 60)]
    pub epoch_check_secs: u64,
    /// Mark cookies Secure (HTTPS only). Browsers also accept Secure cookies
    /// from http://127.0.0.1 and http://localhost.
    #[arg(long, env = "REMEMBERME_COOKIE_SECURE", default_value_t = true, action = clap::ArgAction::Set)]
    pub cookie_secure: bool,
    /// File holding the session key (created if missing). Default: beside
    /// the SQLite database, or `rememberme.session-key` for PostgreSQL.
    #[arg(long, env = "REMEMBERME_SESSION_KEY_FILE")]
    pub session_key_file: Option<PathBuf>,
    /// Hours a signed-in session lasts at most.
    #[arg(long, env = "REMEMBERME_SESSION_HOURS", default_value_t = 12)]
    pub session_hours: u64,
    /// Most remember-me tokens (devices) per user; the least recently used goes.
    #[arg(long, env = "REMEMBERME_MAX_TOKENS_PER_USER", default_value_t = 20)]
    pub max_tokens_per_user: u32,
    /// Failed sign-ins after which an account is throttled.
    #[arg(long, env = "REMEMBERME_MAX_FAILED_LOGINS", default_value_t = 5)]
    pub max_failed_logins: u32,
    /// Seconds a throttled account waits after its last failure.
    #[arg(long, env = "REMEMBERME_LOCKOUT_SECS", default_value_t = 300)]
    pub lockout_secs: u64,
    /// Password attempts per minute from one client network (0: no limit).
    #[arg(long, env = "REMEMBERME_IP_ATTEMPTS_PER_MINUTE", default_value_t = 30)]
    pub ip_attempts_per_minute: u32,
    /// Prefix length that groups IPv4 clients for the per-IP limit.
    #[arg(long, env = "REMEMBERME_IP_LIMIT_V4_PREFIX", default_value_t = 32, value_parser = clap::value_parser!(u8).range(0..=32))]
    pub ip_limit_v4_prefix: u8,
    /// Prefix length that groups IPv6 clients for the per-IP limit (one
    /// subscriber usually holds a /64).
    #[arg(long, env = "REMEMBERME_IP_LIMIT_V6_PREFIX", default_value_t = 64, value_parser = clap::value_parser!(u8).range(0..=128))]
    pub ip_limit_v6_prefix: u8,
    /// Reverse proxies whose `Forwarded` / `X-Forwarded-For` name the client
    /// (comma-separated CIDRs or addresses). Default none: the headers are
    /// ignored.
    #[arg(long, env = "REMEMBERME_TRUSTED_PROXIES", value_delimiter = ',', value_parser = network)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The header those proxies write the client's address to
    /// (`x-forwarded-for` or `forwarded`); only that one is read.
    #[arg(
        long,
        env = "REMEMBERME_TRUSTED_PROXY_HEADER",
        default_value = "x-forwarded-for"
    )]
    pub trusted_proxy_header: rememberme::config::ForwardedHeader,
    /// Seconds a typed password counts for strong pages (admin, password
    /// change, revoking devices) and for minting long-lived tokens.
    #[arg(long, env = "REMEMBERME_REAUTH_WINDOW_SECS", default_value_t = 900)]
    pub reauth_window_secs: u64,
    /// Days audit events are kept; older ones go with each purge.
    #[arg(long, env = "REMEMBERME_AUDIT_RETENTION_DAYS", default_value_t = 90)]
    pub audit_retention_days: u64,
    /// Seconds between purges of expired tokens and old audit events (0: never).
    #[arg(long, env = "REMEMBERME_PURGE_INTERVAL_SECS", default_value_t = 3600)]
    pub purge_interval_secs: u64,
    /// Database connections in the pool (also the default of `--store-threads`)
    /// [default: 2 on SQLite, 8 on PostgreSQL]
    #[arg(long, env = "REMEMBERME_DB_POOL_SIZE")]
    pub db_pool_size: Option<u32>,
    /// Create the demo users `alice` (password `alice-password`) and `admin`
    /// (password `admin-password`, an admin) if they do not exist. For trying
    /// the demo only: never on a site with real users.
    #[arg(long, env = "REMEMBERME_SEED_DEMO_USERS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub seed_demo_users: bool,
    /// Minutes an API access token is valid.
    #[arg(long, env = "REMEMBERME_ACCESS_TOKEN_MINUTES", default_value_t = 15)]
    pub access_token_minutes: u64,
    /// Most password checks in progress at once (default: twice the cores;
    /// Argon2 itself runs on one thread per core).
    #[arg(long, env = "REMEMBERME_PASSWORD_CONCURRENCY")]
    pub password_concurrency: Option<usize>,
    /// Seconds a request waits for a database connection before a 503.
    #[arg(long, env = "REMEMBERME_DB_TIMEOUT_SECS", default_value_t = 5)]
    pub db_timeout_secs: u64,
    /// Most threads of each worker's blocking pool (database calls).
    #[arg(long, env = "REMEMBERME_BLOCKING_THREADS")]
    pub blocking_threads: Option<usize>,
    /// Threads that run the remember-me layer's database calls (default:
    /// the pool size). Sign-ins
    /// by cookie wait for their batch without one.
    #[arg(long, env = "REMEMBERME_STORE_THREADS")]
    pub store_threads: Option<usize>,
    /// Serve the crate's metrics (sign-ins, rotations, thefts, store
    /// latency...) at `GET /metrics` in Prometheus text.
    #[arg(long, env = "REMEMBERME_METRICS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub metrics: bool,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "REMEMBERME_WORKERS")]
    pub workers: Option<usize>,
}

/// A network (`10.0.0.0/8`) or one address (`10.0.0.1`).
pub(crate) fn network(value: &str) -> Result<ipnet::IpNet, String> {
    let value = value.trim();
    value
        .parse::<ipnet::IpNet>()
        .or_else(|_| value.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("`{value}` is not an address or a CIDR network"))
}
