//! The crate's pages, to mount in an app in one line: sign-in, step-up and
//! sign-out (`/login`, `/login/step-up`, `/logout`), the user's devices and
//! password (`/account/devices`, `/account/password`), and the admin pages
//! (`/admin/tokens`, `/admin/audit`, guarded by the app's own roles through
//! [`User::is_admin`](crate::User::is_admin)), with their stylesheet at
//! `/static/style.css`. Behind the `pages` feature (askama templates,
//! compiled in).
//!
//! ```no_run
//! # use actix_web::App;
//! let app = App::new().configure(rememberme::pages::configure);
//! ```
//!
//! They need the layer ([`RememberMe`](crate::RememberMe)) and the session
//! middleware around the app, like every handler of the crate. To replace
//! a page, register your own handler for its route before the mount: the
//! first registration of a route wins.

mod account;
mod admin;
mod login;
mod view;

use actix_web::web;

/// Mounts the crate's pages on `cfg` (see the module's documentation).
pub fn configure(cfg: &mut web::ServiceConfig) {
    login::routes(cfg);
    account::routes(cfg);
    admin::routes(cfg);
}

/// The demo site's home page and health check, beside the pages.
#[cfg(feature = "demo")]
pub(crate) fn demo_routes(cfg: &mut web::ServiceConfig) {
    login::demo_routes(cfg);
}
