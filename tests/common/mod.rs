//! Test harness: a fresh database per test (SQLite file or PostgreSQL
//! schema), the demo site on a real loopback socket, and a cookie-keeping
//! browser-like HTTP client.

#![allow(dead_code)]

pub mod instance;

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use actix_web::cookie::Cookie;
use actix_web::{HttpServer, rt};
use diesel::connection::SimpleConnection as _;
use diesel::{Connection as _, PgConnection};
use rememberme::clock::ManualClock;
use rememberme::config::RememberMeConfigBuilder;
use rememberme::demo::{Site, app};
use rememberme::store::{UserId, UsersTable};
use rememberme::{Database, DieselStore, RememberMeConfig, Stores};

/// The PostgreSQL server the tests use. Each test gets its own schema in it.
pub const POSTGRES_URL_VAR: &str = "REMEMBERME_TEST_POSTGRES_URL";
pub const POSTGRES_URL_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/test";

/// One test's database.
pub struct TestDb {
    pub url: String,
    pub backend: &'static str,
    schema: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        Self {
            url,
            backend: "sqlite",
            schema: None,
            _dir: Some(dir),
        }
    }

    /// A fresh schema on the test server; `None` (with a loud line) when no
    /// server answers, unless `CI=true`, where that is a failure.
    pub fn postgres() -> Option<Self> {
        let base = std::env::var(POSTGRES_URL_VAR).unwrap_or_else(|_| POSTGRES_URL_DEFAULT.into());
        let mut conn = match PgConnection::establish(&base) {
            Ok(conn) => conn,
            Err(error) => {
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("PostgreSQL at {base} is required under CI=true: {error}");
                }
                eprintln!(
                    "\n!!! SKIPPED PostgreSQL test: no server at {base} ({error}). \
                     Start one or set {POSTGRES_URL_VAR}.\n"
                );
                return None;
            }
        };
        let schema = format!("rm_test_{}", random_suffix());
        conn.batch_execute(&format!("CREATE SCHEMA {schema}"))
            .expect("create test schema");
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
        Some(Self {
            url,
            backend: "postgres",
            schema: Some((base, schema)),
            _dir: None,
        })
    }

    /// The database at `url`, owned by another `TestDb` (nothing is removed
    /// when this one drops): for a thread that starts a server on it.
    pub fn url_only(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            backend: "borrowed",
            schema: None,
            _dir: None,
        }
    }

    /// Owns nothing: what a restarted server leaves behind in the old one.
    fn moved() -> Self {
        Self {
            url: String::new(),
            backend: "moved",
            schema: None,
            _dir: None,
        }
    }

    pub fn sqlite_path(&self) -> Option<std::path::PathBuf> {
        self._dir.as_ref().map(|d| d.path().join("test.db"))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((base, schema)) = &self.schema
            && let Ok(mut conn) = PgConnection::establish(base)
        {
            let _ = conn.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
        }
    }
}

pub fn random_suffix() -> String {
    let mut bytes = [0u8; 8];
    rand_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn rand_bytes(buf: &mut [u8]) {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    for chunk in buf.chunks_mut(8) {
        let mut h = RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .elapsed()
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        let v = h.finish().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

/// The crate's stores on `database`, with the demo's users table.
pub fn stores_on(database: &Database) -> Stores {
    let users = UsersTable::open(database.clone()).expect("users table");
    Stores::new(DieselStore::new(database.clone()), users)
}

/// Deletes `username`'s row of the demo's users table behind the crate's
/// back, as an app deletes one of its users.
pub fn delete_user_row(db: &TestDb, username: &str) {
    use diesel::SqliteConnection;
    let delete = format!("DELETE FROM users WHERE username = '{username}'");
    match db.sqlite_path() {
        Some(path) => SqliteConnection::establish(path.to_str().unwrap())
            .unwrap()
            .batch_execute(&delete),
        None => PgConnection::establish(&db.url)
            .unwrap()
            .batch_execute(&delete),
    }
    .unwrap();
}

/// The stores on `database` with a token store that does not rotate in
/// batches (a store of the app's own, say): every sign-in by cookie runs
/// its rotation inside its flow, on a store thread.
pub fn stores_one_by_one(database: &Database) -> Stores {
    let users = UsersTable::open(database.clone()).expect("users table");
    Stores::new(
        CountingStore {
            inner: DieselStore::new(database.clone()),
            counts: Default::default(),
            batches: false,
        },
        users,
    )
}

/// The demo's users table on `database`, created if missing.
pub fn users_on(database: &Database) -> UsersTable {
    UsersTable::open(database.clone()).expect("users table")
}

/// Waits (up to 5 s: some audit rows are written after the response)
/// until `stores` have an audit row of `kind` whose detail starts with
/// `detail`.
pub async fn audit_written(stores: &Stores, kind: &str, detail: &str) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        let events = stores.audit.list(None, None, None, 1000).expect("audit");
        if events
            .iter()
            .any(|e| e.kind == kind && e.detail.starts_with(detail))
        {
            return true;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Cookie `name` as a test service's response sets it.
pub fn cookie_of(
    res: &actix_web::dev::ServiceResponse,
    name: &str,
) -> Option<actix_web::cookie::Cookie<'static>> {
    res.response()
        .cookies()
        .find(|c| c.name() == name)
        .map(|c| c.into_owned())
}

/// The demo site on a loopback port, in its own thread and actix `System`.
pub struct TestServer {
    pub base: String,
    pub clock: ManualClock,
    pub config: RememberMeConfig,
    pub session_key: actix_web::cookie::Key,
    handle: actix_web::dev::ServerHandle,
    thread: Option<JoinHandle<()>>,
    /// What the running server shares with the test; `None` once stopped.
    running: Option<Running>,
    pub db: TestDb,
}

/// The handles a running [`TestServer`] keeps, let go of when it stops.
struct Running {
    site: Site,
    stores: Stores,
    users: UsersTable,
    database: Database,
}

impl TestServer {
    pub fn start(db: TestDb) -> Self {
        Self::start_with(db, |b| b)
    }

    pub fn start_with(
        db: TestDb,
        tweak: impl FnOnce(RememberMeConfigBuilder) -> RememberMeConfigBuilder,
    ) -> Self {
        Self::start_counting(db, tweak).0
    }

    /// Like `start_with`, with every store call counted.
    pub fn start_counting(
        db: TestDb,
        tweak: impl FnOnce(RememberMeConfigBuilder) -> RememberMeConfigBuilder,
    ) -> (Self, std::sync::Arc<CallCounts>) {
        let database = Database::connect_with_timeout(&db.url, 8, Duration::from_secs(1))
            .expect("test database");
        let users = UsersTable::open(database.clone()).expect("users table");
        let store = DieselStore::new(database);
        let counts = std::sync::Arc::new(CallCounts::default());
        let stores = Stores::new(
            CountingStore {
                inner: store.clone(),
                counts: counts.clone(),
                batches: true,
            },
            CountingUsers {
                inner: users.clone(),
                counts: counts.clone(),
            },
        );
        let clock = ManualClock::new();
        let config = tweak(
            RememberMeConfig::builder()
                .clock(clock.clone())
                .epoch_check_interval(Duration::ZERO),
        )
        .build();
        let session_key = actix_web::cookie::Key::generate();
        let site = Site::new(stores.clone(), config.clone(), session_key.clone());
        let closing = site.clone();
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let system = rt::System::new();
            let server = HttpServer::new(move || app(site.clone()))
                .workers(2)
                .disable_signals()
                .bind(("127.0.0.1", 0))
                .expect("bind");
            let addr = server.addrs()[0];
            let server = server.run();
            tx.send((addr, server.handle())).unwrap();
            system.block_on(server).expect("server");
        });
        let (addr, handle) = rx.recv().expect("server started");
        let server = Self {
            base: format!("http://{addr}"),
            clock,
            config,
            session_key,
            handle,
            thread: Some(thread),
            running: Some(Running {
                site: closing,
                stores,
                users,
                database: store.database().clone(),
            }),
            db,
        };
        (server, counts)
    }

    /// Stops this server and starts a new one on the same database (a
    /// process restart: everything in memory is gone).
    pub fn restart(
        mut self,
        tweak: impl FnOnce(RememberMeConfigBuilder) -> RememberMeConfigBuilder,
    ) -> Self {
        self.shut_down();
        let db = std::mem::replace(&mut self.db, TestDb::moved());
        Self::start_with(db, tweak)
    }

    /// Stops the server, then closes its remember-me layer and its pool, as
    /// the demo binary does at exit: once this returns, no thread of it is
    /// left inside the database's client library (a test process exiting
    /// under one crashed in libpq's Kerberos clean-up). Safe to call twice.
    fn shut_down(&mut self) {
        let Some(Running {
            site,
            stores,
            users,
            database,
        }) = self.running.take()
        else {
            return;
        };
        // `stop` sends the command at once; the returned future only waits.
        drop(self.handle.stop(false));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        drop((stores, users));
        let wait = Duration::from_secs(10);
        let closed = site.close(wait) && database.close(wait);
        if !closed && !std::thread::panicking() {
            panic!("the stopped server still held the database after {wait:?}");
        }
    }

    /// The stores of the running server.
    pub fn stores(&self) -> &Stores {
        &self.running.as_ref().expect("a running server").stores
    }

    pub fn add_user(&self, name: &str, password: &str, admin: bool) -> UserId {
        self.users()
            .create(name, password, admin)
            .expect("create user")
    }

    /// The demo's users table of the running server.
    pub fn users(&self) -> &UsersTable {
        &self.running.as_ref().expect("a running server").users
    }

    pub fn clock_now(&self) -> i64 {
        rememberme::clock::Clock::now(&self.clock)
    }

    pub fn browser(&self) -> Browser {
        Browser::new(&self.base)
    }

    pub fn tokens_of(&self, user: &UserId) -> Vec<rememberme::store::TokenRecord> {
        self.stores()
            .tokens
            .list_for_user(user)
            .expect("list tokens")
    }

    /// Waits (up to 5 s) until an audit event of `kind` exists: some events
    /// are written after the response.
    pub async fn wait_for_audit(&self, kind: &str) -> bool {
        audit_written(self.stores(), kind, "").await
    }

    pub fn audit_kinds(&self) -> Vec<String> {
        self.stores()
            .audit
            .list(None, None, None, 1000)
            .expect("audit")
            .into_iter()
            .map(|e| e.kind)
            .collect()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub headers: actix_web::http::header::HeaderMap,
    pub body: String,
    pub set_cookies: Vec<Cookie<'static>>,
}

impl Page {
    pub fn location(&self) -> Option<&str> {
        self.headers.get("location").and_then(|v| v.to_str().ok())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn set_cookie(&self, name: &str) -> Option<&Cookie<'static>> {
        self.set_cookies.iter().rev().find(|c| c.name() == name)
    }

    /// The value of the form's hidden `csrf_token`.
    pub fn csrf(&self) -> String {
        hidden_value(&self.body, "csrf_token")
            .unwrap_or_else(|| panic!("no csrf_token in:\n{}", self.body))
    }
}

pub fn hidden_value(body: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = body.find(&marker)? + marker.len();
    let end = body[start..].find('"')? + start;
    Some(body[start..end].to_owned())
}

/// A cookie-keeping client that does not follow redirects.
pub struct Browser {
    client: awc::Client,
    pub user_agent: String,
    /// The site the browser talks to; change it to switch instances.
    pub base: String,
    pub jar: BTreeMap<String, String>,
}

impl Browser {
    pub fn new(base: &str) -> Self {
        Self::with_user_agent(base, "rememberme-tests/1.0")
    }

    pub fn with_user_agent(base: &str, user_agent: &str) -> Self {
        Self::with_headers(base, user_agent, &[])
    }

    /// A browser that sends these headers with every request too.
    pub fn with_headers(base: &str, user_agent: &str, headers: &[(&str, &str)]) -> Self {
        let mut client = awc::Client::builder()
            .disable_redirects()
            .add_default_header(("user-agent", user_agent));
        for (name, value) in headers {
            client = client.add_default_header((name.to_string(), value.to_string()));
        }
        Self {
            user_agent: user_agent.to_owned(),
            client: client.timeout(Duration::from_secs(30)).finish(),
            base: base.to_owned(),
            jar: BTreeMap::new(),
        }
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.jar.get(name).cloned()
    }

    pub fn set_cookie(&mut self, name: &str, value: &str) {
        self.jar.insert(name.to_owned(), value.to_owned());
    }

    pub fn drop_cookie(&mut self, name: &str) {
        self.jar.remove(name);
    }

    fn cookie_header(&self) -> String {
        self.jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn read<S>(&mut self, mut res: awc::ClientResponse<S>) -> Page
    where
        S: futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>>
            + Unpin,
    {
        let body = res.body().limit(4 << 20).await.expect("body");
        self.read_with_body(res, body)
    }

    /// Applies a response's Set-Cookie headers to the jar (only once its
    /// body has arrived: a browser that lost the response keeps its old
    /// cookies) and returns it as a `Page`.
    fn read_with_body<S>(
        &mut self,
        res: awc::ClientResponse<S>,
        body: actix_web::web::Bytes,
    ) -> Page {
        let mut set_cookies = Vec::new();
        for value in res.headers().get_all("set-cookie") {
            let cookie = Cookie::parse(value.to_str().expect("ascii cookie").to_owned())
                .expect("well-formed Set-Cookie");
            let removed = cookie.value().is_empty()
                || cookie
                    .max_age()
                    .is_some_and(|age| age.is_zero() || age.is_negative());
            if removed {
                self.jar.remove(cookie.name());
            } else {
                self.jar
                    .insert(cookie.name().to_owned(), cookie.value().to_owned());
            }
            set_cookies.push(cookie.into_owned());
        }
        Page {
            status: res.status().as_u16(),
            headers: res.headers().clone(),
            body: String::from_utf8_lossy(&body).into_owned(),
            set_cookies,
        }
    }

    /// Sends a JSON API request (no cookies) and returns status, headers and
    /// the JSON body (`Null` when there is none). `body` is sent as is, so
    /// malformed JSON can be tested.
    pub async fn api(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<&str>,
    ) -> (u16, actix_web::http::header::HeaderMap, serde_json::Value) {
        let url = format!("{}{path}", self.base);
        let mut req = match method {
            "GET" => self.client.get(url),
            _ => self.client.post(url),
        };
        if let Some(token) = bearer {
            req = req.insert_header(("authorization", format!("Bearer {token}")));
        }
        let mut res = match body {
            Some(body) => req
                .insert_header(("content-type", "application/json"))
                .send_body(body.to_owned())
                .await
                .expect("API request"),
            None => req.send().await.expect("API request"),
        };
        let bytes = res.body().limit(1 << 20).await.expect("body");
        let json = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)))
        };
        (res.status().as_u16(), res.headers().clone(), json)
    }

    /// Opens the sign-in form and posts it.
    pub async fn login(&mut self, username: &str, password: &str, remember: bool) -> Page {
        let form = self.get("/login").await;
        assert_eq!(form.status, 200, "sign-in form: {}", form.body);
        let csrf = form.csrf();
        let mut fields = vec![
            ("csrf_token", csrf.as_str()),
            ("username", username),
            ("password", password),
        ];
        if remember {
            fields.push(("remember_me", "on"));
        }
        self.post("/login", &fields).await
    }

    /// Posts the sign-out form of the home page.
    pub async fn logout(&mut self) -> Page {
        let home = self.get("/").await;
        let csrf = home.csrf();
        self.post("/logout", &[("csrf_token", csrf.as_str())]).await
    }

    pub async fn get(&mut self, path: &str) -> Page {
        self.try_get(path).await.expect("GET")
    }

    /// Like `get`, but a request that gets no response (the server is
    /// down, or died mid-request) is an `Err`, not a failed test.
    pub async fn try_get(&mut self, path: &str) -> Result<Page, String> {
        let mut req = self.client.get(format!("{}{path}", self.base));
        if !self.jar.is_empty() {
            req = req.insert_header(("cookie", self.cookie_header()));
        }
        let mut res = req.send().await.map_err(|e| e.to_string())?;
        // The body too may be cut off by a dying server.
        let body = res.body().limit(4 << 20).await.map_err(|e| e.to_string())?;
        Ok(self.read_with_body(res, body))
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let mut req = self.client.post(format!("{}{path}", self.base));
        if !self.jar.is_empty() {
            req = req.insert_header(("cookie", self.cookie_header()));
        }
        let res = req.send_form(&form).await.expect("POST");
        self.read(res).await
    }
}

/// Runs each named `async fn(TestDb)` once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[actix_web::test]
                async fn $name() {
                    super::$name($crate::common::TestDb::sqlite()).await
                }
            )*
        }
        mod postgres {
            $(
                #[actix_web::test]
                async fn $name() {
                    if let Some(db) = $crate::common::TestDb::postgres() {
                        super::$name(db).await
                    }
                }
            )*
        }
    };
}

/// Decodes a remember-me cookie value into (series, token) raw bytes.
pub fn raw_parts(value: &str) -> (Vec<u8>, Vec<u8>) {
    let cookie = rememberme::token::RememberCookie::decode(value.as_bytes()).expect("valid cookie");
    (
        cookie.series.as_bytes().to_vec(),
        cookie.token.as_bytes().to_vec(),
    )
}

/// What a trap does when its call comes: anything first (another
/// request's work, say), then the call fails with its error or goes on.
type Trap = Box<dyn FnOnce() -> Result<(), StoreError> + Send>;

/// How often each kind of store call was made, and the traps set on the
/// next calls of a kind.
#[derive(Default)]
pub struct CallCounts {
    pub total: std::sync::atomic::AtomicU64,
    pub auth_epoch: std::sync::atomic::AtomicU64,
    /// Every call's method name, in order.
    pub log: std::sync::Mutex<Vec<&'static str>>,
    traps: std::sync::Mutex<Vec<(&'static str, Trap)>>,
}

impl CallCounts {
    pub fn total(&self) -> u64 {
        self.total.load(std::sync::atomic::Ordering::SeqCst)
    }
    pub fn auth_epoch(&self) -> u64 {
        self.auth_epoch.load(std::sync::atomic::Ordering::SeqCst)
    }
    /// Counts a call, and springs the first trap set on its kind.
    fn tick(&self, name: &'static str) -> Result<(), StoreError> {
        self.total.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.log.lock().unwrap().push(name);
        let trap = {
            let mut traps = self.traps.lock().unwrap();
            let first = traps.iter().position(|(kind, _)| *kind == name);
            first.map(|i| traps.remove(i).1)
        };
        trap.map_or(Ok(()), |trap| trap())
    }
    /// Sets a trap on the next call named `name` (a method of the store or
    /// of the users table): `trap` runs before the call, and an error it
    /// returns is the call's.
    pub fn trap(
        &self,
        name: &'static str,
        trap: impl FnOnce() -> Result<(), StoreError> + Send + 'static,
    ) {
        self.traps.lock().unwrap().push((name, Box::new(trap)));
    }
    /// Makes the next call named `name` hang until the sender sends (or
    /// 20 s pass); the flag says when it has begun to.
    pub fn hang(
        &self,
        name: &'static str,
    ) -> (
        std::sync::Arc<std::sync::atomic::AtomicBool>,
        mpsc::Sender<()>,
    ) {
        let started = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (release, released) = mpsc::channel::<()>();
        let entered = started.clone();
        self.trap(name, move || {
            entered.store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = released.recv_timeout(Duration::from_secs(20));
            Ok(())
        });
        (started, release)
    }
    /// The names of the calls made since the last `take_log`.
    pub fn take_log(&self) -> Vec<&'static str> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

/// The real Diesel store, with every call counted (and its batches of
/// rotations kept: see `rotates_in_batches`).
pub struct CountingStore {
    inner: DieselStore,
    counts: std::sync::Arc<CallCounts>,
    /// Whether it rotates in batches as the Diesel store does.
    batches: bool,
}

impl CountingStore {
    /// `inner` with its calls counted (and trapped: [`CallCounts::trap`]).
    pub fn new(inner: DieselStore) -> (Self, std::sync::Arc<CallCounts>) {
        let counts = std::sync::Arc::new(CallCounts::default());
        let store = Self {
            inner,
            counts: counts.clone(),
            batches: true,
        };
        (store, counts)
    }

    fn tick(&self, name: &'static str) -> Result<(), StoreError> {
        self.counts.tick(name)
    }
}

use rememberme::store::ThrottleKey;
use rememberme::store::{
    AuditEvent, AuditLog, FoundSeries, NewAuditEvent, NewToken, Reservation, Retire,
    RotationAttempt, StateStore, StoreError, TokenRecord, TokenStore, User, UserDirectory,
};
use rememberme::token::SecretHash;

macro_rules! counted {
    ($tr:ident; $($name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        $(fn $name(&self $(, $arg: $ty)*) -> $ret {
            self.tick(stringify!($name))?;
            <DieselStore as $tr>::$name(&self.inner $(, $arg)*)
        })*
    };
}

impl TokenStore for CountingStore {
    counted! { TokenStore;
        find_by_series(&self, series: &SecretHash) -> Result<Option<TokenRecord>, StoreError>;
        find_by_series_with_epoch(&self, series: &SecretHash) -> Result<Option<(TokenRecord, i64)>, StoreError>;
        find_and_rotate(&self, attempt: RotationAttempt<'_>) -> Result<Option<FoundSeries>, StoreError>;
        rotate(&self, id: i64, expected: &SecretHash, new_token: &SecretHash, sealed: &[u8], now: i64, expires_at: Option<i64>) -> Result<bool, StoreError>;
        insert(&self, token: NewToken<'_>) -> Result<i64, StoreError>;
        retire_replaced(&self, retire: Retire<'_>) -> Result<usize, StoreError>;
        find_owner(&self, id: i64) -> Result<Option<UserId>, StoreError>;
        delete_series(&self, series: &SecretHash) -> Result<bool, StoreError>;
        delete_by_id(&self, id: i64, owner: Option<&UserId>) -> Result<bool, StoreError>;
        delete_all_for_user(&self, user: &UserId) -> Result<usize, StoreError>;
        delete_device(&self, user: &UserId, device_key: &str) -> Result<usize, StoreError>;
        revoke_all_atomically(&self, user: &UserId, event: &NewAuditEvent<'_>) -> Result<Option<usize>, StoreError>;
        list_for_user(&self, user: &UserId) -> Result<Vec<TokenRecord>, StoreError>;
        list(&self, user: Option<&UserId>, before: Option<i64>, limit: i64) -> Result<Vec<TokenRecord>, StoreError>;
        purge_expired(&self, now: i64) -> Result<usize, StoreError>;
    }

    fn find_and_rotate_all(
        &self,
        attempts: &[RotationAttempt<'_>],
    ) -> Vec<Result<Option<FoundSeries>, StoreError>> {
        match self.tick("find_and_rotate_all") {
            Ok(()) => self.inner.find_and_rotate_all(attempts),
            Err(error) => attempts.iter().map(|_| Err(error.clone())).collect(),
        }
    }

    // A property, asked on every sign-in by cookie: forwarded (unless
    // switched off), not counted, so the demo under test takes the batched
    // path as it does in production.
    fn rotates_in_batches(&self) -> bool {
        self.batches && self.inner.rotates_in_batches()
    }

    fn suggested_wait(&self) -> Option<Duration> {
        self.inner.suggested_wait()
    }
}

impl StateStore for CountingStore {
    counted! { StateStore;
        bump_epoch(&self, id: &UserId) -> Result<(), StoreError>;
        bump_epoch_from(&self, id: &UserId, expected: i64) -> Result<Option<i64>, StoreError>;
        failures(&self, key: &ThrottleKey) -> Result<Option<(u32, i64)>, StoreError>;
        reserve_attempt(&self, key: &ThrottleKey, now: i64, window_secs: i64, max: u32) -> Result<Reservation, StoreError>;
        clear_failures(&self, key: &ThrottleKey) -> Result<(), StoreError>;
        purge_failures(&self, cutoff: i64) -> Result<usize, StoreError>;
        ping(&self) -> Result<(), StoreError>;
    }

    fn auth_epoch(&self, id: &UserId) -> Result<i64, StoreError> {
        self.tick("auth_epoch")?;
        self.counts
            .auth_epoch
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.auth_epoch(id)
    }
}

impl AuditLog for CountingStore {
    counted! { AuditLog;
        record(&self, event: NewAuditEvent<'_>) -> Result<(), StoreError>;
        record_batch(&self, events: &[NewAuditEvent<'_>]) -> Result<(), StoreError>;
        list(&self, kind: Option<&str>, user: Option<&UserId>, before: Option<(i64, i64)>, limit: i64) -> Result<Vec<AuditEvent>, StoreError>;
        purge_before(&self, cutoff: i64) -> Result<usize, StoreError>;
    }
}

/// The demo's users table, with every call counted.
pub struct CountingUsers {
    inner: UsersTable,
    counts: std::sync::Arc<CallCounts>,
}

impl UserDirectory for CountingUsers {
    fn find_by_username(&self, username: &str) -> Result<Option<User>, StoreError> {
        self.counts.tick("find_by_username")?;
        self.inner.find_by_username(username)
    }
    fn find_by_id(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        self.counts.tick("find_by_id")?;
        self.inner.find_by_id(id)
    }
    fn find_by_ids(&self, ids: &[UserId]) -> Result<Vec<Option<User>>, StoreError> {
        self.counts.tick("find_by_ids")?;
        self.inner.find_by_ids(ids)
    }
    fn sets_passwords(&self) -> bool {
        self.inner.sets_passwords()
    }
    fn set_password(&self, id: &UserId, password: &str) -> Result<(), StoreError> {
        self.counts.tick("set_password")?;
        self.inner.set_password(id, password)
    }
    fn canonical_username<'a>(&self, typed: &'a str) -> std::borrow::Cow<'a, str> {
        self.inner.canonical_username(typed)
    }
}

/// A step of the app's own for the flow tests: interactive, its input named
/// `input`, passing the user the flow already knows when the input is
/// `code` (any value when `code` is `None`), refusing it otherwise.
pub struct CodeStep {
    pub input: &'static str,
    pub code: Option<&'static str>,
}

impl rememberme::flow::Step for CodeStep {
    fn is_interactive(&self) -> bool {
        true
    }
    fn has_input(&self, ctx: &rememberme::flow::StepContext<'_>) -> bool {
        ctx.inputs.contains_key(self.input)
    }
    fn run(
        &self,
        ctx: &mut rememberme::flow::StepContext<'_>,
        user: Option<&UserId>,
    ) -> Result<rememberme::flow::StepOutcome, rememberme::store::StoreError> {
        use rememberme::flow::{Failure, StepOutcome};
        let given = ctx.inputs.get(self.input).map(String::as_str);
        Ok(match user {
            Some(user) if self.code.is_none() || given == self.code => StepOutcome::Success {
                user: user.clone(),
                activate: Vec::new(),
            },
            _ => StepOutcome::Failed(Failure::InvalidCredentials),
        })
    }
}

/// A fresh pool on `db` (4 connections), the stores on it, and a user
/// `alice` (password `alice-password`).
pub fn database_with_alice(db: &TestDb) -> (Database, Stores, UserId) {
    let database = Database::connect(&db.url, 4).expect("database");
    let stores = stores_on(&database);
    let alice = users_on(&database)
        .create("alice", "alice-password", false)
        .expect("alice");
    (database, stores, alice)
}

/// Ends a test's layer, then its database, as an app does at exit: drop
/// the service (and any response) first, or the layer cannot close.
pub fn shut_down(layer: rememberme::RememberMe, stores: Stores, database: Database) {
    assert!(layer.close(Duration::from_secs(5)), "the layer closes");
    drop(stores);
    assert!(
        database.close(Duration::from_secs(5)),
        "the database closes"
    );
}

/// A step of the app's, not interactive, that does what its function does
/// (fails, panics, refuses).
#[derive(Clone, Copy)]
pub struct After(pub fn() -> Result<rememberme::flow::StepOutcome, rememberme::store::StoreError>);

impl rememberme::flow::Step for After {
    fn is_interactive(&self) -> bool {
        false
    }
    fn run(
        &self,
        _: &mut rememberme::flow::StepContext<'_>,
        _: Option<&UserId>,
    ) -> Result<rememberme::flow::StepOutcome, rememberme::store::StoreError> {
        (self.0)()
    }
}

/// The issuing step wrapped by the app: `Flow::step` moves a step added
/// after the crate's own issuing step before it, but not after a wrapper.
pub struct Issuing;

impl rememberme::flow::Step for Issuing {
    fn is_interactive(&self) -> bool {
        false
    }
    fn run(
        &self,
        ctx: &mut rememberme::flow::StepContext<'_>,
        user: Option<&UserId>,
    ) -> Result<rememberme::flow::StepOutcome, rememberme::store::StoreError> {
        rememberme::flow::RememberMeIssueStep.run(ctx, user)
    }
}

/// A login flow: the password (the box activates the issuing step), the
/// app's wrapped issuing step, then `after`.
pub fn issuing_then(after: rememberme::flow::StepDef) -> rememberme::flow::Flow {
    use rememberme::flow::{
        Condition, Flow, FlowKind, ISSUE, PASSWORD, PasswordStep, StepDef, Tag,
    };
    Flow::new(FlowKind::Login)
        .step(
            StepDef::new(PASSWORD, PasswordStep::new().activate_on_remember(ISSUE))
                .tags_on_success([Tag::WEAK_AUTHENTICATION, Tag::PASSWORD_VERIFIED]),
        )
        .step(
            StepDef::new(ISSUE, Issuing)
                .only_when_activated()
                .precondition(Condition::has(Tag::PASSWORD_VERIFIED)),
        )
        .step(after)
}

/// A submit's outcome as a one-word body, for the flow tests' handlers.
pub fn outcome_name(outcome: rememberme::extract::SubmitOutcome) -> actix_web::HttpResponse {
    use rememberme::extract::SubmitOutcome;
    actix_web::HttpResponse::Ok().body(match outcome {
        SubmitOutcome::SignedIn(_) => "signed in",
        SubmitOutcome::NeedsInput { .. } => "needs input",
        SubmitOutcome::InvalidCredentials => "invalid",
        _ => "other",
    })
}

/// Inserts a token of `user` that expired ten seconds ago; returns the
/// time it used (now, on the system's clock).
pub fn insert_expired_token(stores: &Stores, user: &str) -> i64 {
    let now = rememberme::clock::Clock::now(&rememberme::clock::SystemClock);
    let cookie = rememberme::token::RememberCookie::generate();
    stores
        .tokens
        .insert(rememberme::store::NewToken {
            user_id: &UserId::from(user),
            series_hash: &cookie.series.hash(),
            token_hash: &cookie.token.hash(),
            now: now - 100,
            expires_at: now - 10,
            user_agent: None,
            ip: None,
            device_key: None,
        })
        .unwrap();
    now
}
