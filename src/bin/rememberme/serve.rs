//! `serve`: the demo site, its session key, and the periodic purge.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use actix_web::cookie::Key;
use actix_web::{HttpServer, rt};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use rememberme::demo::{Site, app};
use rememberme::store::{Backend, UsersTable};
use rememberme::{Database, DieselStore, RememberMeConfig, Stores};

use crate::cli::ServeArgs;

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
fn layer_config(args: &ServeArgs) -> RememberMeConfig {
    let mut builder = RememberMeConfig::builder();
    if let Some(n) = args.password_concurrency {
        builder = builder.password_concurrency(n);
    }
    // Without the flag, the store's own suggestion (the pool size).
    if let Some(n) = args.store_threads {
        builder = builder.store_concurrency(n);
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
        .access_token_lifetime(Duration::from_secs(args.access_token_minutes * 60))
        .cookie_secure(args.cookie_secure)
        .build()
}

/// The pool size without `--db-pool-size`. SQLite writes one at a time
/// whatever the pool, and each connection keeps a page cache of up to
/// 2 MiB: with 2 instead of 8, re-authentications ran as fast or faster and
/// the peak RSS of `bench/run.sh`'s cases fell by 4–5 MiB
/// (bench/layer_notes.md, 2026-12-03).
fn default_pool_size(url: &str) -> u32 {
    if Backend::from_url(url).sqlite_path().is_some() {
        2
    } else {
        8
    }
}

/// The database (migrated), the demo's users (seeded if asked) and the
/// session key (created on first start).
fn open_site(url: &str, args: &ServeArgs) -> Result<(Database, UsersTable, Key), String> {
    let key_path = args
        .session_key_file
        .clone()
        .unwrap_or_else(|| default_key_path(url));
    let database = Database::connect_with_timeout(
        url,
        args.db_pool_size.unwrap_or_else(|| default_pool_size(url)),
        Duration::from_secs(args.db_timeout_secs.max(1)),
    )
    .map_err(|e| e.to_string())?;
    let backend = match database.backend().sqlite_path() {
        Some(_) => "sqlite",
        None => "postgres",
    };
    tracing::info!(backend, pool_size = database.max_size(), "database ready");
    let users = UsersTable::open(database.clone()).map_err(|e| e.to_string())?;
    let key = session_key(&key_path)?;
    if args.seed_demo_users {
        seed_demo_users(&users)?;
    }
    Ok((database, users, key))
}

pub(crate) fn serve(url: &str, args: ServeArgs) -> Result<(), String> {
    let (database, users, key) = open_site(url, &args)?;
    let config = layer_config(&args);
    if !args.cookie_secure {
        tracing::warn!("cookies are not marked Secure: use this only for plain-HTTP development");
    }
    // Computes the dummy hash used for unknown usernames now, so the first
    // such sign-in is not slower than a real one.
    rememberme::password::dummy_hash();
    let stores = Stores::new(DieselStore::new(database.clone()), users);
    // Before the layer: it describes its metrics to the recorder installed.
    let metrics = args.metrics.then(install_metrics).transpose()?;
    let mut site = Site::new(stores, config, key);
    if let Some(handle) = &metrics {
        site = site.with_metrics(handle.clone());
    }
    let closing = site.clone();
    let served = rt::System::new().block_on(async move {
        if args.purge_interval_secs > 0 {
            rt::spawn(site.purge_every(
                Duration::from_secs(args.purge_interval_secs),
                Duration::from_secs(args.audit_retention_days.saturating_mul(24 * 3600)),
            ));
        }
        if let Some(handle) = metrics {
            rt::spawn(metrics_upkeep(handle));
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

/// The Prometheus recorder behind `GET /metrics` (`--metrics true`),
/// installed for the whole process.
fn install_metrics() -> Result<PrometheusHandle, String> {
    PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))
}

/// Drains the histograms' samples into their summaries now and then (the
/// exporter's own HTTP listener would; it is not built in).
async fn metrics_upkeep(handle: PrometheusHandle) {
    let mut every = rt::time::interval(Duration::from_secs(5));
    loop {
        every.tick().await;
        handle.run_upkeep();
    }
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
