//! Browser harness: a ChromeDriver per test, a headless Chromium per profile,
//! real restarts on the same profile, a screenshot of the last page, and the
//! page's URL and source printed when a scenario fails.
//!
//! A scenario runs through [`scenario`]. It gets a [`Lab`] that owns the
//! ChromeDriver process and every profile it opened; when the body returns or
//! panics, the lab takes the screenshot, reports on failure, closes every
//! session cleanly, and its `Drop` ends the ChromeDriver (by PID) and any
//! Chromium process still holding one of its profiles (by PID, found by the
//! profile's unique path).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix_web::cookie::time::OffsetDateTime;
use fantoccini::actions::{InputSource as _, KeyAction, KeyActions};
use fantoccini::cookies::Cookie;
use fantoccini::elements::Element;
use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::FutureExt as _;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

pub use fantoccini::key::Key;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long any wait for a page, an element or a process may take.
const WAIT: Duration = Duration::from_secs(15);
/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(50);
/// A whole scenario; a hung browser fails the test instead of the suite.
const SCENARIO_LIMIT: Duration = Duration::from_secs(120);

/// Runs one browser scenario. Skips (with one loud line) when Chromium or
/// ChromeDriver is missing, unless `CI=true`, where that is a failure.
pub async fn scenario<F, Fut>(name: &'static str, body: F)
where
    F: FnOnce(Lab) -> Fut,
    Fut: Future<Output = ()>,
{
    if !browsers_installed(name) {
        return;
    }
    let lab = Lab::start(name).await;
    let run = AssertUnwindSafe(async {
        actix_web::rt::time::timeout(SCENARIO_LIMIT, body(lab.clone()))
            .await
            .unwrap_or_else(|_| panic!("scenario {name} took longer than {SCENARIO_LIMIT:?}"))
    })
    .catch_unwind()
    .await;
    lab.finish(run.is_err()).await;
    if let Err(panic) = run {
        std::panic::resume_unwind(panic);
    }
}

fn browsers_installed(test: &str) -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|path| !Path::new(path).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "browser tests need {} under CI=true: apt-get install -y chromium chromium-driver",
            missing.join(" and ")
        );
    }
    // Straight to stderr: the test harness captures `eprintln!` of passing
    // tests, and a skip must not go unnoticed.
    let line = format!(
        "\n!!! SKIPPED browser test {test}: {} not found (apt-get install -y chromium chromium-driver)\n",
        missing.join(" and ")
    );
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
    false
}

/// Where the screenshots go: under the crate's own `target/`, whatever
/// `CARGO_TARGET_DIR` the build used, so the place is always the same.
pub fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-screenshots")
}

/// One ChromeDriver and the browser profiles a scenario opened.
#[derive(Clone)]
pub struct Lab(Rc<LabInner>);

struct LabInner {
    name: &'static str,
    driver: Driver,
    profiles: RefCell<Vec<Rc<Profile>>>,
    /// The profile that was driven last: its page is the scenario's last page.
    last: Cell<Option<usize>>,
}

struct Profile {
    label: String,
    dir: tempfile::TempDir,
    client: RefCell<Option<Client>>,
}

impl Lab {
    async fn start(name: &'static str) -> Self {
        Self(Rc::new(LabInner {
            name,
            driver: Driver::start().await,
            profiles: RefCell::new(Vec::new()),
            last: Cell::new(None),
        }))
    }

    /// Opens a fresh profile (its own `--user-data-dir`) in a new Chromium.
    pub async fn browser(&self, label: &str, base: &str) -> Browser {
        let dir = tempfile::Builder::new()
            .prefix(&format!("rememberme-browser-{label}-"))
            .tempdir()
            .expect("profile dir");
        let profile = Rc::new(Profile {
            label: label.to_owned(),
            dir,
            client: RefCell::new(None),
        });
        let index = {
            let mut profiles = self.0.profiles.borrow_mut();
            profiles.push(profile.clone());
            profiles.len() - 1
        };
        let browser = Browser {
            lab: self.clone(),
            index,
            profile,
            base: base.trim_end_matches('/').to_owned(),
        };
        browser.launch().await;
        browser
    }

    async fn finish(&self, failed: bool) {
        let profiles: Vec<Rc<Profile>> = self.0.profiles.borrow().clone();
        if failed {
            for profile in &profiles {
                let client = profile.client.borrow().clone();
                if let Some(client) = client {
                    report_page(&profile.label, &client).await;
                }
            }
        }
        let last = self.0.last.get().and_then(|i| profiles.get(i));
        let last_client = last.and_then(|p| p.client.borrow().clone());
        if let Some(client) = last_client {
            match client.screenshot().await {
                Ok(png) => {
                    let dir = screenshot_dir();
                    let path = dir.join(format!("{}.png", self.0.name));
                    let saved =
                        std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, png));
                    match saved {
                        Ok(()) => eprintln!("screenshot: {}", path.display()),
                        Err(error) => {
                            eprintln!("screenshot not saved at {}: {error}", path.display())
                        }
                    }
                }
                Err(error) => eprintln!("no screenshot of {}: {error}", self.0.name),
            }
        }
        for profile in &profiles {
            let client = profile.client.borrow_mut().take();
            if let Some(client) = client
                && let Err(error) = client.close().await
            {
                eprintln!("closing browser {}: {error}", profile.label);
            }
        }
    }
}

impl Drop for LabInner {
    fn drop(&mut self) {
        self.driver.stop();
        // A session that was not closed leaves Chromium running with the
        // profile locked; end exactly those processes, found by their profile.
        for profile in self.profiles.borrow().iter() {
            for pid in pids_using(profile.dir.path()) {
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .arg(pid.to_string())
                    .status();
            }
        }
    }
}

async fn report_page(label: &str, client: &Client) {
    let url = client
        .current_url()
        .await
        .map(|u| u.to_string())
        .unwrap_or_else(|e| format!("<no URL: {e}>"));
    let source = client
        .source()
        .await
        .unwrap_or_else(|e| format!("<no source: {e}>"));
    eprintln!("\n--- browser {label} was at {url}\n{source}\n--- end of {label}'s page\n");
}

/// PIDs of processes whose command line names `dir` (Chromium and its
/// helpers all carry `--user-data-dir=<dir>`).
fn pids_using(dir: &Path) -> Vec<u32> {
    let needle = dir.to_string_lossy().into_owned();
    let own = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != own)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|raw| String::from_utf8_lossy(&raw).contains(&needle))
                .unwrap_or(false)
        })
        .collect()
}

/// A ChromeDriver child process on a free loopback port.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    async fn start() -> Self {
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"));
        let mut driver = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = driver.child.try_wait() {
                panic!("{CHROMEDRIVER} exited at start: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "{CHROMEDRIVER} did not listen on port {port}"
            );
            actix_web::rt::time::sleep(POLL).await;
        }
        driver
    }

    fn stop(&mut self) {
        // `Child::kill` signals this child's own PID only.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn capabilities(profile: &Path) -> Capabilities {
    let caps = json!({
        "browserName": "chrome",
        "pageLoadStrategy": "normal",
        "timeouts": { "pageLoad": 20_000, "script": 10_000, "implicit": 0 },
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1024,700",
                format!("--user-data-dir={}", profile.display()),
            ],
        },
    });
    match caps {
        serde_json::Value::Object(map) => map,
        _ => unreachable!("capabilities are an object"),
    }
}

/// One browser profile, driven through WebDriver. `restart` quits Chromium
/// and starts it again on the same profile.
pub struct Browser {
    lab: Lab,
    index: usize,
    profile: Rc<Profile>,
    base: String,
}

impl Browser {
    async fn launch(&self) {
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities(self.profile.dir.path()))
            .connect(&self.lab.0.driver.url)
            .await
            .unwrap_or_else(|e| {
                panic!("browser {}: no WebDriver session: {e}", self.profile.label)
            });
        *self.profile.client.borrow_mut() = Some(client);
        self.lab.0.last.set(Some(self.index));
    }

    /// The live session; marks this browser as the one driven last.
    fn client(&self) -> Client {
        self.lab.0.last.set(Some(self.index));
        self.profile
            .client
            .borrow()
            .clone()
            .unwrap_or_else(|| panic!("browser {} is closed", self.profile.label))
    }

    /// Quits Chromium cleanly (so the profile is written and unlocked) and
    /// starts it again on the same profile: persistent cookies survive,
    /// browser-session cookies do not, as when a person restarts a browser.
    pub async fn restart(&self) {
        let client = self.profile.client.borrow_mut().take();
        if let Some(client) = client {
            client.close().await.expect("clean quit");
        }
        let dir = self.profile.dir.path();
        wait_until(
            &format!("Chromium to let go of {}", dir.display()),
            || async { pids_using(dir).is_empty() },
        )
        .await;
        self.launch().await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn open(&self, path: &str) {
        let url = self.url(path);
        self.client()
            .goto(&url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// Path and query of the current page, e.g. `/login?next=%2F`.
    pub async fn location(&self) -> String {
        let url = self.client().current_url().await.expect("current URL");
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// Waits until the browser shows `expected` (path and query).
    pub async fn wait_for_location(&self, expected: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let now = self.location().await;
            if now == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "browser {} stayed at {now}, expected {expected}",
                self.profile.label
            );
            actix_web::rt::time::sleep(POLL).await;
        }
    }

    /// Waits for an element matching `css`.
    pub async fn find(&self, css: &str) -> Element {
        self.client()
            .wait()
            .at_most(WAIT)
            .every(POLL)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("browser {}: no element {css}: {e}", self.profile.label))
    }

    /// Whether an element matching `css` is on the page now (no waiting).
    pub async fn has(&self, css: &str) -> bool {
        !self
            .client()
            .find_all(Locator::Css(css))
            .await
            .expect("find_all")
            .is_empty()
    }

    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.expect("element text")
    }

    /// Texts of every element matching `css`, now.
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let mut texts = Vec::new();
        for element in self
            .client()
            .find_all(Locator::Css(css))
            .await
            .expect("find_all")
        {
            texts.push(element.text().await.expect("element text"));
        }
        texts
    }

    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.expect("click");
    }

    pub async fn click_xpath(&self, xpath: &str) {
        self.client()
            .wait()
            .at_most(WAIT)
            .every(POLL)
            .for_element(Locator::XPath(xpath))
            .await
            .unwrap_or_else(|e| panic!("no element {xpath}: {e}"))
            .click()
            .await
            .expect("click");
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.expect("clear");
        field.send_keys(text).await.expect("type");
    }

    /// Picks the option with `value` in the `<select>` matching `css`.
    pub async fn select(&self, css: &str, value: &str) {
        self.find(css)
            .await
            .select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("select {value} in {css}: {e}"));
    }

    /// The `id` of the focused element.
    pub async fn focused_id(&self) -> String {
        self.client()
            .active_element()
            .await
            .expect("active element")
            .attr("id")
            .await
            .expect("id attribute")
            .unwrap_or_default()
    }

    /// Presses and releases each key in turn on whatever has the focus, as a
    /// keyboard does (no element is targeted).
    pub async fn press(&self, keys: impl IntoIterator<Item = char>) {
        let mut actions = KeyActions::new("keyboard".to_owned());
        for key in keys {
            actions = actions
                .then(KeyAction::Down { value: key })
                .then(KeyAction::Up { value: key });
        }
        self.client()
            .perform_actions(actions)
            .await
            .expect("key presses");
    }

    /// The cookie `name` as the browser holds it for the current page's site.
    pub async fn cookie(&self, name: &str) -> Option<Cookie<'static>> {
        self.client()
            .get_all_cookies()
            .await
            .expect("cookies")
            .into_iter()
            .find(|c| c.name() == name)
    }

    /// Stores a cookie for the current page's site.
    pub async fn add_cookie(&self, mut cookie: Cookie<'static>) {
        // fantoccini sends a missing domain as `null`, which ChromeDriver
        // refuses; the page's own host is what a missing domain means.
        if cookie.domain().is_none() {
            let url = self.client().current_url().await.expect("current URL");
            cookie.set_domain(url.host_str().expect("a page with a host").to_owned());
        }
        self.client().add_cookie(cookie).await.expect("add cookie");
    }

    /// Signs in through the form (clicking, as most people do).
    pub async fn sign_in(&self, username: &str, password: &str, keep_me_logged_in: bool) {
        self.open("/login").await;
        self.fill("#username", username).await;
        self.fill("#password", password).await;
        if keep_me_logged_in {
            self.click("label[for='remember_me']").await;
            assert!(
                self.find("#remember_me")
                    .await
                    .is_selected()
                    .await
                    .expect("checkbox state"),
                "clicking the label ticks the box"
            );
        }
        self.click("form[action='/login'] button[type='submit']")
            .await;
        self.wait_for_location("/").await;
    }
}

/// Converts a cookie the server would set (actix-web's `cookie` 0.16) into
/// the one WebDriver takes (`cookie` 0.18). WebDriver knows no Max-Age, so
/// it becomes an absolute expiry: the browser keeps it across restarts.
pub fn webdriver_cookie(set: &actix_web::cookie::Cookie<'_>) -> Cookie<'static> {
    let mut cookie = Cookie::parse(set.to_string())
        .expect("a Set-Cookie string parses")
        .into_owned();
    if let Some(max_age) = set.max_age() {
        cookie.set_expires(OffsetDateTime::now_utc() + max_age);
    }
    cookie
}

/// Polls `ready` until it holds, for at most the usual wait.
pub async fn wait_until<F, Fut>(what: &str, mut ready: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !ready().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        actix_web::rt::time::sleep(POLL).await;
    }
}
