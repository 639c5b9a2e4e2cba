//! `rememberme`: the demo site and its admin CLI.

#![warn(clippy::too_many_lines)]

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use actix_web::cookie::Key;
use actix_web::{HttpServer, rt};
use clap::{Args, Parser, Subcommand};
use rememberme::config::Expiry;
use rememberme::demo::{Site, app};
use rememberme::store::{Backend, StoreError, UsersTable};
use rememberme::{Database, DieselStore, RememberMeConfig, Stores};

#[derive(Parser, Debug)]
#[command(
    name = "rememberme",
    version,
    about = "rememberme demo site and admin CLI"
)]
struct Cli {
    /// Database URL: `sqlite://FILE` (or a path) or `postgres://…`.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://rememberme.db",
        global = true
    )]
    database_url: String,

    /// `serve`'s settings, accepted without the subcommand too.
    #[command(flatten)]
    serve: ServeArgs,

    #[command(subcommand)]
    command: Option<Command>,
}

// Parsed once at start-up: the size of a variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
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
enum UserCommand {
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
enum TokensCommand {
    /// Delete expired remember-me tokens.
    Purge,
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
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "REMEMBERME_BIND", default_value = "127.0.0.1:8080")]
    bind: String,
    /// Days a remember-me token stays valid.
    #[arg(long, env = "REMEMBERME_REMEMBER_DAYS", default_value_t = 30)]
    remember_days: u64,
    /// How use moves a token's expiry: absolute, sliding or forever.
    #[arg(long, env = "REMEMBERME_REMEMBER_EXPIRY", default_value = "absolute")]
    remember_expiry: Expiry,
    /// Seconds the token replaced by a rotation is still accepted.
    #[arg(long, env = "REMEMBERME_ROTATION_GRACE_SECS", default_value_t = 60)]
    rotation_grace_secs: u64,
    /// Seconds between re-checks of a session's auth epoch (0: every request).
    #[arg(long, env = "REMEMBERME_EPOCH_CHECK_SECS", default_value_t = 60)]
    epoch_check_secs: u64,
    /// Mark cookies Secure (HTTPS only). Browsers also accept Secure cookies
    /// from http://127.0.0.1 and http://localhost.
    #[arg(long, env = "REMEMBERME_COOKIE_SECURE", default_value_t = true, action = clap::ArgAction::Set)]
    cookie_secure: bool,
    /// File holding the session key (created if missing). Default: beside
    /// the SQLite database, or `rememberme.session-key` for PostgreSQL.
    #[arg(long, env = "REMEMBERME_SESSION_KEY_FILE")]
    session_key_file: Option<PathBuf>,
    /// Hours a signed-in session lasts at most.
    #[arg(long, env = "REMEMBERME_SESSION_HOURS", default_value_t = 12)]
    session_hours: u64,
    /// Most remember-me tokens (devices) per user; the least recently used goes.
    #[arg(long, env = "REMEMBERME_MAX_TOKENS_PER_USER", default_value_t = 20)]
    max_tokens_per_user: u32,
    /// Failed sign-ins after which an account is throttled.
    #[arg(long, env = "REMEMBERME_MAX_FAILED_LOGINS", default_value_t = 5)]
    max_failed_logins: u32,
    /// Seconds a throttled account waits after its last failure.
    #[arg(long, env = "REMEMBERME_LOCKOUT_SECS", default_value_t = 300)]
    lockout_secs: u64,
    /// Password attempts per minute from one client network (0: no limit).
    #[arg(long, env = "REMEMBERME_IP_ATTEMPTS_PER_MINUTE", default_value_t = 30)]
    ip_attempts_per_minute: u32,
    /// Prefix length that groups IPv4 clients for the per-IP limit.
    #[arg(long, env = "REMEMBERME_IP_LIMIT_V4_PREFIX", default_value_t = 32, value_parser = clap::value_parser!(u8).range(0..=32))]
    ip_limit_v4_prefix: u8,
    /// Prefix length that groups IPv6 clients for the per-IP limit (one
    /// subscriber usually holds a /64).
    #[arg(long, env = "REMEMBERME_IP_LIMIT_V6_PREFIX", default_value_t = 64, value_parser = clap::value_parser!(u8).range(0..=128))]
    ip_limit_v6_prefix: u8,
    /// Reverse proxies whose `Forwarded` / `X-Forwarded-For` name the client
    /// (comma-separated CIDRs or addresses). Default none: the headers are
    /// ignored.
    #[arg(long, env = "REMEMBERME_TRUSTED_PROXIES", value_delimiter = ',', value_parser = network)]
    trusted_proxies: Vec<ipnet::IpNet>,
    /// The header those proxies write the client's address to
    /// (`x-forwarded-for` or `forwarded`); only that one is read.
    #[arg(
        long,
        env = "REMEMBERME_TRUSTED_PROXY_HEADER",
        default_value = "x-forwarded-for"
    )]
    trusted_proxy_header: rememberme::config::ForwardedHeader,
    /// Seconds a typed password counts for strong pages (admin, password
    /// change, revoking devices) and for minting long-lived tokens.
    #[arg(long, env = "REMEMBERME_REAUTH_WINDOW_SECS", default_value_t = 900)]
    reauth_window_secs: u64,
    /// Days audit events are kept; older ones go with each purge.
    #[arg(long, env = "REMEMBERME_AUDIT_RETENTION_DAYS", default_value_t = 90)]
    audit_retention_days: u64,
    /// Seconds between purges of expired tokens and old audit events (0: never).
    #[arg(long, env = "REMEMBERME_PURGE_INTERVAL_SECS", default_value_t = 3600)]
    purge_interval_secs: u64,
    /// Database connections in the pool.
    #[arg(long, env = "REMEMBERME_DB_POOL_SIZE", default_value_t = 8)]
    db_pool_size: u32,
    /// Create the demo users `alice` (password `alice-password`) and `admin`
    /// (password `admin-password`, an admin) if they do not exist. For trying
    /// the demo only: never on a site with real users.
    #[arg(long, env = "REMEMBERME_SEED_DEMO_USERS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    seed_demo_users: bool,
    /// Minutes an API access token is valid.
    #[arg(long, env = "REMEMBERME_ACCESS_TOKEN_MINUTES", default_value_t = 15)]
    access_token_minutes: u64,
    /// Most password checks in progress at once (default: twice the cores;
    /// Argon2 itself runs on one thread per core).
    #[arg(long, env = "REMEMBERME_PASSWORD_CONCURRENCY")]
    password_concurrency: Option<usize>,
    /// Seconds a request waits for a database connection before a 503.
    #[arg(long, env = "REMEMBERME_DB_TIMEOUT_SECS", default_value_t = 5)]
    db_timeout_secs: u64,
    /// Most threads of each worker's blocking pool (database calls).
    #[arg(long, env = "REMEMBERME_BLOCKING_THREADS")]
    blocking_threads: Option<usize>,
    /// Threads that run the remember-me layer's database calls (default:
    /// the pool size on SQLite; 4 × the pool size on PostgreSQL, where the
    /// re-authentications waiting together run as one statement on one
    /// connection).
    #[arg(long, env = "REMEMBERME_STORE_THREADS")]
    store_threads: Option<usize>,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "REMEMBERME_WORKERS")]
    workers: Option<usize>,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colours for a terminal only: escape codes in a log file are noise.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        None => serve(&cli.database_url, cli.serve),
        Some(Command::Serve(args)) => serve(&cli.database_url, args),
        Some(Command::Migrate) => {
            open(&cli.database_url, 1).map(|_| eprintln!("migrations applied"))
        }
        Some(Command::User(UserCommand::Add { name, admin })) => {
            add_user(&cli.database_url, &name, admin)
        }
        Some(Command::User(UserCommand::SetAdmin { name, admin })) => {
            set_admin(&cli.database_url, &name, admin)
        }
        Some(Command::Tokens(TokensCommand::Purge)) => {
            purge(&cli.database_url, cli.serve.lockout_secs)
        }
        Some(Command::Tokens(TokensCommand::List { user })) => {
            list_tokens(&cli.database_url, user.as_deref())
        }
        Some(Command::Tokens(TokensCommand::Revoke { user })) => {
            revoke_tokens(&cli.database_url, &user)
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A network (`10.0.0.0/8`) or one address (`10.0.0.1`).
fn network(value: &str) -> Result<ipnet::IpNet, String> {
    let value = value.trim();
    value
        .parse::<ipnet::IpNet>()
        .or_else(|_| value.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("`{value}` is not an address or a CIDR network"))
}

/// The crate's tables and the demo's users table on `url`, migrated.
fn open(url: &str, pool_size: u32) -> Result<(DieselStore, UsersTable), String> {
    let db = Database::connect(url, pool_size).map_err(|e| e.to_string())?;
    let users = UsersTable::open(db.clone()).map_err(|e| e.to_string())?;
    Ok((DieselStore::new(db), users))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

fn add_user(url: &str, name: &str, admin: bool) -> Result<(), String> {
    let name = name.trim();
    if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
        return Err("a username is 1 to 64 characters, without control characters".into());
    }
    if atty_stdin() {
        eprint!("Password for {name}: ");
        let _ = std::io::stderr().flush();
    }
    let mut password = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut password)
        .map_err(|e| format!("cannot read the password: {e}"))?;
    let password = password.trim_end_matches(['\r', '\n']);
    if password.len() < 8 {
        return Err("the password must have at least 8 characters".into());
    }
    let (_, users) = open(url, 1)?;
    match users.create(name, password, admin) {
        Ok(id) => {
            eprintln!(
                "user {name} created (id {id}{})",
                if admin { ", admin" } else { "" }
            );
            Ok(())
        }
        Err(StoreError::AlreadyExists) => Err(format!("user {name} already exists")),
        Err(e) => Err(e.to_string()),
    }
}

fn set_admin(url: &str, name: &str, admin: bool) -> Result<(), String> {
    let (_, users) = open(url, 1)?;
    let user = users
        .find_by_name(name)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no user {name}"))?;
    users
        .set_admin(&user.id, admin)
        .map_err(|e| e.to_string())?;
    eprintln!(
        "{name} is {}an admin; open sessions see it at their next check",
        if admin { "" } else { "no longer " }
    );
    Ok(())
}

fn atty_stdin() -> bool {
    use std::io::IsTerminal as _;
    std::io::stdin().is_terminal()
}

fn purge(url: &str, lockout_secs: u64) -> Result<(), String> {
    use rememberme::store::{StateStore as _, TokenStore as _};
    let (store, _) = open(url, 1)?;
    let n = store.purge_expired(now()).map_err(|e| e.to_string())?;
    eprintln!("{n} expired token(s) deleted");
    // Never a counter that may still throttle (a lockout longer than the
    // retention keeps its counters as long).
    let n = store
        .purge_failures(now() - FAILURE_RETENTION_SECS.max(lockout_secs as i64))
        .map_err(|e| e.to_string())?;
    eprintln!("{n} stale failure counter(s) deleted");
    Ok(())
}

/// Failure counters idle this long are deleted by the purge: far past any
/// lockout, so no throttle is lifted early.
const FAILURE_RETENTION_SECS: i64 = 24 * 3600;

fn list_tokens(url: &str, user: Option<&str>) -> Result<(), String> {
    use rememberme::store::{TokenStore as _, UserDirectory as _};
    let (store, users) = open(url, 1)?;
    let user = match user {
        Some(name) => Some(
            users
                .find_by_name(name)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no user {name}"))?
                .id,
        ),
        None => None,
    };
    let rows = store
        .list(user.as_ref(), 0, i64::MAX)
        .map_err(|e| e.to_string())?;
    let mut names = std::collections::HashMap::new();
    println!(
        "{:>6}  {:<20} {:<20} {:<16} {:<16} user agent",
        "id", "user", "expires (unix)", "last used", "ip"
    );
    for t in &rows {
        if !names.contains_key(&t.user_id) {
            let name = users.find_by_id(&t.user_id).map_err(|e| e.to_string())?;
            let name = name.map_or_else(|| format!("#{}", t.user_id), |u| u.username);
            names.insert(t.user_id.clone(), name);
        }
        println!(
            "{:>6}  {:<20} {:<20} {:<16} {:<16} {}",
            t.id,
            names[&t.user_id],
            t.expires_at,
            t.last_used_at,
            t.ip.as_deref().unwrap_or("-"),
            t.user_agent
                .as_deref()
                .unwrap_or("-")
                .chars()
                .take(60)
                .collect::<String>(),
        );
    }
    eprintln!("{} token(s)", rows.len());
    Ok(())
}

fn revoke_tokens(url: &str, name: &str) -> Result<(), String> {
    use rememberme::store::{AuditKind, NewAuditEvent};
    let (store, users) = open(url, 1)?;
    let user = users
        .find_by_name(name)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no user {name}"))?;
    // Tokens, epoch and audit row in one transaction.
    let n = Stores::new(store, users)
        .revoke_everything(
            &user.id,
            NewAuditEvent {
                at: now(),
                kind: AuditKind::SignOutEverywhere,
                user_id: Some(&user.id),
                ip: None,
                user_agent: None,
                detail: "every token revoked from the command line",
            },
        )
        .map_err(|e| e.to_string())?;
    eprintln!("{name}: {n} token(s) revoked; open sessions end at their next check");
    Ok(())
}

/// Loads the session key, creating it (readable by the owner only) on first start.
fn session_key(path: &Path) -> Result<Key, String> {
    match std::fs::read(path) {
        Ok(bytes) => Key::try_from(bytes.as_slice())
            .map_err(|_| format!("{} does not hold a 64-byte session key", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Key::generate();
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options
                .open(path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            file.write_all(key.master())
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            tracing::info!(path = %path.display(), "new session key created");
            Ok(key)
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn default_key_path(url: &str) -> PathBuf {
    match Backend::from_url(url).sqlite_path() {
        Some(db) => {
            let db = Path::new(db);
            let stem = db
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("rememberme");
            db.with_file_name(format!("{stem}.session-key"))
        }
        None => PathBuf::from("rememberme.session-key"),
    }
}

/// The layer's settings from `serve`'s arguments.
fn layer_config(url: &str, args: &ServeArgs) -> RememberMeConfig {
    let mut builder = RememberMeConfig::builder();
    if let Some(n) = args.password_concurrency {
        builder = builder.password_concurrency(n);
    }
    builder
        .validity(Duration::from_secs(args.remember_days * 24 * 3600))
        .expiry(args.remember_expiry)
        .rotation_grace(Duration::from_secs(args.rotation_grace_secs))
        .epoch_check_interval(Duration::from_secs(args.epoch_check_secs))
        .session_lifetime(Duration::from_secs(args.session_hours * 3600))
        .max_tokens_per_user(args.max_tokens_per_user)
        .max_failed_logins(args.max_failed_logins)
        .lockout(Duration::from_secs(args.lockout_secs))
        .ip_attempts_per_minute(args.ip_attempts_per_minute)
        .ip_limit_prefixes(args.ip_limit_v4_prefix, args.ip_limit_v6_prefix)
        .trusted_proxies(args.trusted_proxies.clone())
        .forwarded_header(args.trusted_proxy_header)
        .reauth_window(Duration::from_secs(args.reauth_window_secs))
        .store_concurrency(args.store_threads.unwrap_or(
            if Backend::from_url(url).sqlite_path().is_some() {
                args.db_pool_size as usize
            } else {
                4 * args.db_pool_size as usize
            },
        ))
        .access_token_lifetime(Duration::from_secs(args.access_token_minutes * 60))
        .cookie_secure(args.cookie_secure)
        .build()
}

fn serve(url: &str, args: ServeArgs) -> Result<(), String> {
    let key_path = args
        .session_key_file
        .clone()
        .unwrap_or_else(|| default_key_path(url));
    let database = Database::connect_with_timeout(
        url,
        args.db_pool_size,
        Duration::from_secs(args.db_timeout_secs.max(1)),
    )
    .map_err(|e| e.to_string())?;
    let users = UsersTable::open(database.clone()).map_err(|e| e.to_string())?;
    let key = session_key(&key_path)?;
    if args.seed_demo_users {
        seed_demo_users(&users)?;
    }
    let config = layer_config(url, &args);
    if !args.cookie_secure {
        tracing::warn!("cookies are not marked Secure: use this only for plain-HTTP development");
    }
    // Computes the dummy hash used for unknown usernames now, so the first
    // such sign-in is not slower than a real one.
    rememberme::password::dummy_hash();
    let stores = Stores::new(DieselStore::new(database.clone()), users);
    let site = Site::new(stores.clone(), config, key);
    let closing = site.clone();
    let served = rt::System::new().block_on(async move {
        if args.purge_interval_secs > 0 {
            rt::spawn(purge_periodically(
                stores.clone(),
                Duration::from_secs(args.purge_interval_secs),
                Duration::from_secs(args.audit_retention_days * 24 * 3600),
                Duration::from_secs(args.lockout_secs),
            ));
        }
        let mut server = HttpServer::new(move || app(site.clone()));
        if let Some(workers) = args.workers {
            server = server.workers(workers);
        }
        if let Some(threads) = args.blocking_threads {
            server = server.worker_max_blocking_threads(threads.max(1));
        }
        let server = server
            .bind(&args.bind)
            .map_err(|e| format!("cannot listen on {}: {e}", args.bind))?;
        for addr in server.addrs() {
            tracing::info!("listening on http://{addr}");
        }
        server.run().await.map_err(|e| e.to_string())
    });
    // The workers are stopping: end the layer (its queued audit rows are
    // written) and close the pool, so that no thread is inside the
    // database's client library when the process exits.
    let layer_closed = closing.close(SHUTDOWN_WAIT);
    let database_closed = database.close(SHUTDOWN_WAIT);
    if !(layer_closed && database_closed) {
        tracing::warn!(
            layer_closed,
            database_closed,
            "shut down before all work ended"
        );
    }
    served
}

/// The longest the server waits at exit for its workers to let go of the
/// remember-me layer, and then of the database.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

fn seed_demo_users(users: &UsersTable) -> Result<(), String> {
    for (name, password, admin) in [
        ("alice", "alice-password", false),
        ("admin", "admin-password", true),
    ] {
        if users
            .find_by_name(name)
            .map_err(|e| e.to_string())?
            .is_some()
        {
            continue;
        }
        users
            .create(name, password, admin)
            .map_err(|e| e.to_string())?;
        tracing::warn!(
            username = name,
            "demo user created (password: <username>-password)"
        );
    }
    Ok(())
}

/// Keeps the tables small: expired tokens and audit events past retention.
async fn purge_periodically(
    stores: Stores,
    every: Duration,
    audit_retention: Duration,
    lockout: Duration,
) {
    let mut interval = rt::time::interval(every);
    loop {
        interval.tick().await;
        let stores = stores.clone();
        let result = actix_web::web::block(move || {
            let now = now();
            let tokens = stores.tokens.purge_expired(now)?;
            stores
                .state
                .purge_failures(now - FAILURE_RETENTION_SECS.max(lockout.as_secs() as i64))?;
            let events = stores
                .audit
                .purge_before(now - audit_retention.as_secs() as i64)?;
            Ok::<_, StoreError>((tokens, events))
        })
        .await;
        match result {
            Ok(Ok((0, 0))) => {}
            Ok(Ok((tokens, events))) => {
                tracing::info!(tokens, events, "purged expired tokens and old audit events")
            }
            Ok(Err(error)) => tracing::warn!(%error, "purge failed"),
            Err(error) => tracing::warn!(%error, "purge task could not run"),
        }
    }
}
