//! [`Backend`]: which database a URL names.

use std::time::Duration;

/// Which database a URL names.
#[derive(Clone, PartialEq, Eq)]
pub enum Backend {
    /// `postgres://` or `postgresql://`.
    Postgres(String),
    /// `sqlite://PATH`, `sqlite:PATH` or a bare path.
    Sqlite(String),
}

// A PostgreSQL URL may hold a password: never print it.
impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Postgres(_) => f.write_str("Postgres([redacted])"),
            Backend::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
        }
    }
}

impl Backend {
    /// Picks the backend from the URL scheme.
    pub fn from_url(url: &str) -> Self {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres(url.to_owned())
        } else {
            let path = url
                .strip_prefix("sqlite://")
                .or_else(|| url.strip_prefix("sqlite:"))
                .unwrap_or(url);
            Backend::Sqlite(path.to_owned())
        }
    }

    /// This backend with libpq's `connect_timeout` set to `timeout` (in
    /// whole seconds, at least 2, libpq's floor) unless the URL sets it:
    /// without one, an attempt to reach a server that accepts and never
    /// answers waits forever, holding one of r2d2's threads and a place in
    /// the pool.
    pub(super) fn with_connect_timeout(&self, timeout: Duration) -> Backend {
        let Backend::Postgres(url) = self else {
            return self.clone();
        };
        let mut url = url.clone();
        let mut add = |name: &str, value: String| {
            if !url.contains(&format!("{name}=")) {
                let separator = if url.contains('?') { '&' } else { '?' };
                url = format!("{url}{separator}{name}={value}");
            }
        };
        let secs = (timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0)).max(2);
        add("connect_timeout", secs.to_string());
        // A server that vanished without closing the connection (a host
        // gone, a firewall's dropped state) would leave a statement waiting
        // forever on a half-open socket, holding a batch's connection: TCP
        // keepalives find it within about 25 s, and unacknowledged writes
        // give up after 30 s.
        add("keepalives", "1".into());
        add("keepalives_idle", "10".into());
        add("keepalives_interval", "5".into());
        add("keepalives_count", "3".into());
        add("tcp_user_timeout", "30000".into());
        Backend::Postgres(url)
    }

    /// The SQLite file, if this is SQLite.
    pub fn sqlite_path(&self) -> Option<&str> {
        match self {
            Backend::Sqlite(path) => Some(path),
            Backend::Postgres(_) => None,
        }
    }
}
