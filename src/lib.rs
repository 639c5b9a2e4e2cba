//! A safe "Keep me logged in" for [actix-web](https://actix.rs).
//!
//! A sign-in is a [`Flow`](flow::Flow) of steps. The default one has three:
//!
//! 1. **remember-me identifying** (automatic): a valid remember-me cookie
//!    identifies the user, adds [`WEAK_AUTHENTICATION`](flow::Tag::WEAK_AUTHENTICATION) and rotates the
//!    cookie's token;
//! 2. **password** (interactive): skipped when the user is already identified;
//!    adds [`WEAK_AUTHENTICATION`](flow::Tag::WEAK_AUTHENTICATION) and [`PASSWORD_VERIFIED`](flow::Tag::PASSWORD_VERIFIED), and
//!    activates step 3 when "Keep me logged in" was ticked;
//! 3. **remember-me token generating** (automatic, only when activated,
//!    precondition [`PASSWORD_VERIFIED`](flow::Tag::PASSWORD_VERIFIED)): issues a new cookie.
//!
//! Pages that need the password typed in this session, within the re-auth
//! window (15 minutes by default), take [`StrongAuth`]; any other session (one
//! signed in only by cookie, say) is sent through the step-up flow first. So
//! a remember-me cookie can never mint another remember-me cookie by itself.
//!
//! # The cookie
//!
//! The remember-me cookie carries a random **series** (128 bits) and a random
//! **token** (256 bits). The database keeps only their SHA-256 hashes: a
//! leaked database lets nobody build a cookie. Each use replaces the token
//! (one compare-and-swap statement, so two racing requests cannot both
//! rotate). The token a rotation replaced is accepted for a short grace
//! window, so the parallel requests of one page load are not mistaken for
//! theft. Any older token of a known series is theft: every token of that
//! user is revoked and every session of the user ends (its auth epoch is
//! bumped).
//!
//! # Wiring
//!
//! ```no_run
//! use actix_web::{App, HttpServer, Responder, cookie::Key, get};
//! use rememberme::store::UsersTable;
//! use rememberme::{CurrentUser, Database, DieselStore, RememberMe, RememberMeConfig, Stores};
//!
//! #[get("/")]
//! async fn home(CurrentUser(user): CurrentUser) -> impl Responder {
//!     format!("Hello, {}", user.username)
//! }
//!
//! #[actix_web::main]
//! async fn main() -> std::io::Result<()> {
//!     let db = Database::connect("sqlite://app.db", 8).expect("database");
//!     // The app's users: a ready table here, or its own `UserDirectory`.
//!     let users = UsersTable::open(db.clone()).expect("users table");
//!     let stores = Stores::new(DieselStore::new(db.clone()), users);
//!     let key = Key::generate(); // load a persistent key in production
//!     // Built once and cloned into each worker: its limits are shared. It
//!     // brings the session middleware it needs: one `wrap`.
//!     let layer = RememberMe::new(stores, RememberMeConfig::default()).with_session(key);
//!     let server_layer = layer.clone();
//!     HttpServer::new(move || App::new().wrap(server_layer.clone()).service(home))
//!         .bind(("127.0.0.1", 8080))?
//!         .run()
//!         .await?;
//!     // A clean exit: the queued audit rows are written, and no thread is
//!     // left inside the database's client library.
//!     let wait = std::time::Duration::from_secs(10);
//!     layer.close(wait);
//!     db.close(wait);
//!     Ok(())
//! }
//! ```
//!
//! The sign-in handlers use the [`Auth`] extractor: [`Auth::begin`] when the
//! form is shown, [`Auth::submit`] when it is posted, [`Auth::logout`], and
//! [`Auth::csrf_token`] for the hidden field of every form; handlers receive
//! posted forms as [`CsrfForm`], which refuses a missing or wrong token
//! before they run; or mount the crate's pages (`pages` feature). The
//! examples in `examples/` are complete apps.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(clippy::too_many_lines)]

pub mod access;
pub mod api;
pub mod clock;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod device;
pub mod extract;
pub mod flow;
mod kernel;
mod layer;
mod limits;
mod middleware;
#[cfg(feature = "pages")]
#[path = "web/mod.rs"]
pub mod pages;
pub mod password;
mod session;
pub mod store;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
mod threads;
pub mod token;

// What wiring an app needs, at the root; the rest sits in its module
// (`clock`, `config`, `extract`, `flow`, `store`, ...).
pub use config::RememberMeConfig;
pub use extract::{Auth, AuthError, CsrfForm, CurrentUser, SignIn, StrongAuth, session_middleware};
pub use layer::Layer;
pub use middleware::RememberMe;
pub use store::{Database, DieselStore, Stores, User, UserDirectory, UserId};

/// The README's Rust snippets, compiled by `cargo test`.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
