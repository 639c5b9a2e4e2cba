//! What every example shares: its settings (`PORT`, `DATABASE_URL`,
//! `--cookie-secure false` / `REMEMBERME_COOKIE_SECURE=false`, and
//! `REMEMBERME_STORE_THREADS` as the demo reads it), the app's
//! own pages (`GET /` for a signed-in user, a login form, logout), built
//! only from the crate's public API, and the server around them.
//!
//! An app has its own pages already; these stand for them.

#![allow(dead_code)] // each example uses a part

use actix_web::cookie::Key;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, Responder, get, post, web};
use rememberme::extract::SubmitOutcome;
use rememberme::flow::FlowKind;
use rememberme::{Auth, AuthError, CsrfForm, CurrentUser, RememberMeConfig};
use serde::Deserialize;

/// The settings every example reads.
pub struct Settings {
    pub port: u16,
    pub database_url: String,
    pub cookie_secure: bool,
    /// Store threads, if set (else the store's suggestion).
    pub store_threads: Option<usize>,
}

impl Settings {
    /// From the environment and the command line.
    pub fn from_env() -> Self {
        let args: Vec<String> = std::env::args().collect();
        let flag = args
            .iter()
            .position(|a| a == "--cookie-secure")
            .and_then(|i| args.get(i + 1).cloned())
            .or_else(|| {
                args.iter()
                    .find_map(|a| a.strip_prefix("--cookie-secure=").map(str::to_owned))
            });
        let secure = flag.or_else(|| std::env::var("REMEMBERME_COOKIE_SECURE").ok());
        Self {
            port: std::env::var("PORT")
                .ok()
                .and_then(|p| p.parse().ok())
                .unwrap_or(8080),
            database_url: std::env::var("DATABASE_URL")
                .unwrap_or_else(|_| format!("sqlite://{}.db", example_name())),
            cookie_secure: secure.is_none_or(|v| v != "false"),
            store_threads: std::env::var("REMEMBERME_STORE_THREADS")
                .ok()
                .and_then(|n| n.parse().ok()),
        }
    }

    /// The layer's settings: the defaults, with these cookies (and store
    /// threads, if set).
    pub fn config(&self) -> RememberMeConfig {
        let builder = RememberMeConfig::builder().cookie_secure(self.cookie_secure);
        match self.store_threads {
            Some(n) => builder.store_concurrency(n),
            None => builder,
        }
        .build()
    }
}

/// The running example's name (its binary's), for its default file names.
fn example_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "example".to_owned())
}

/// `hello <name>` for a signed-in user; anyone else is sent to `/login`.
#[get("/")]
pub async fn home(CurrentUser(user): CurrentUser) -> impl Responder {
    format!("hello {}", user.username)
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    pub remember_me: Option<String>,
}

fn login_page(auth: &Auth, status: StatusCode, error: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(format!(
            "<!doctype html><title>Sign in</title><p>{error}</p>\
             <form method=\"post\" action=\"/login\">\
             <input type=\"hidden\" name=\"csrf_token\" value=\"{}\">\
             <input name=\"username\" autocomplete=\"username\">\
             <input name=\"password\" type=\"password\" autocomplete=\"current-password\">\
             <label><input type=\"checkbox\" name=\"remember_me\"> Keep me logged in</label>\
             <button>Sign in</button></form>",
            auth.csrf_token()
        ))
}

#[get("/login")]
pub async fn login_form(auth: Auth) -> Result<HttpResponse, AuthError> {
    auth.begin(FlowKind::Login).await?;
    Ok(login_page(&auth, StatusCode::OK, ""))
}

#[post("/login")]
pub async fn login(
    auth: Auth,
    CsrfForm(form): CsrfForm<LoginForm>,
) -> Result<HttpResponse, AuthError> {
    let credentials = rememberme::flow::Credentials {
        username: form.username,
        password: form.password,
        remember_me: form.remember_me.is_some(),
        ..Default::default()
    };
    Ok(match auth.submit(FlowKind::Login, credentials).await? {
        SubmitOutcome::SignedIn(_) => see_other("/"),
        SubmitOutcome::Throttled { retry_after_secs } => HttpResponse::TooManyRequests()
            .insert_header(("Retry-After", retry_after_secs.to_string()))
            .body("Too many attempts."),
        _ => login_page(
            &auth,
            StatusCode::UNAUTHORIZED,
            "Wrong username or password.",
        ),
    })
}

#[derive(Deserialize)]
pub struct Empty {}

#[post("/logout")]
pub async fn logout(auth: Auth, _: CsrfForm<Empty>) -> Result<HttpResponse, AuthError> {
    auth.logout().await?;
    Ok(see_other("/login"))
}

pub fn see_other(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header(("Location", to))
        .finish()
}

/// The example's pages: home, login, logout.
pub fn pages(cfg: &mut web::ServiceConfig) {
    cfg.service(home)
        .service(login_form)
        .service(login)
        .service(logout);
}

/// A session key kept beside the database file, so that a restart keeps
/// everyone signed in (a real app loads its key from its secrets).
pub fn session_key(settings: &Settings) -> Key {
    let path = match settings.database_url.strip_prefix("sqlite://") {
        Some(file) => format!("{file}.session-key"),
        None => format!("{}.session-key", example_name()),
    };
    if let Ok(bytes) = std::fs::read(&path)
        && let Ok(key) = Key::try_from(bytes.as_slice())
    {
        return key;
    }
    let key = Key::generate();
    let _ = std::fs::write(&path, key.master());
    key
}

/// The ready users table on `db`, with `alice` / `alice-password` in it.
/// Returns alice's id.
pub fn users_with_alice(
    db: &rememberme::Database,
) -> std::io::Result<(rememberme::store::UsersTable, rememberme::UserId)> {
    let users = rememberme::store::UsersTable::open(db.clone()).map_err(std::io::Error::other)?;
    let alice = match users.find_by_name("alice").map_err(std::io::Error::other)? {
        Some(alice) => alice.id,
        None => users
            .create("alice", "alice-password", false)
            .map_err(std::io::Error::other)?,
    };
    Ok((users, alice))
}

/// Serves the app `routes` builds behind `layer` on the settings' port,
/// then closes the layer and the database: the quickstart's wiring, for
/// the examples whose point is elsewhere.
pub async fn serve<F>(
    settings: &Settings,
    layer: rememberme::Layer,
    db: rememberme::Database,
    routes: F,
) -> std::io::Result<()>
where
    F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
{
    let server_layer = layer.clone();
    actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .wrap(server_layer.clone())
            .configure(routes.clone())
    })
    .bind(("127.0.0.1", settings.port))?
    .run()
    .await?;
    let wait = std::time::Duration::from_secs(10);
    layer.close(wait);
    db.close(wait);
    Ok(())
}
