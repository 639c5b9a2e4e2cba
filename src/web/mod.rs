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
//! middleware around the app, like every handler of the crate. To show a
//! page in your own layout, mount with [`configure_with`] and your
//! [`Templates`]; to replace a page's behaviour too, register your own
//! handler for its route before the mount: the first registration of a
//! route wins.

mod account;
mod admin;
mod login;
mod templates;
mod view;

use std::sync::Arc;

use actix_web::web;

pub use account::{DeviceRow, DevicesPage, PasswordPage};
pub use admin::{AuditPage, AuditRow, TokenRow, TokensPage};
pub use login::LoginPage;
pub use templates::{PageView, Templates};

/// Mounts the crate's pages on `cfg` (see the module's documentation).
pub fn configure(cfg: &mut web::ServiceConfig) {
    login::routes(cfg);
    account::routes(cfg);
    admin::routes(cfg);
}

/// Mounts the crate's pages with the app's `templates` for the pages they
/// render (the crate's templates for the others):
/// `App::new().configure(rememberme::pages::configure_with(MyTemplates))`.
pub fn configure_with(templates: impl Templates) -> impl FnOnce(&mut web::ServiceConfig) {
    let templates: templates::Mounted = web::Data::from(Arc::new(templates) as Arc<dyn Templates>);
    move |cfg| {
        cfg.app_data(templates);
        configure(cfg);
    }
}

/// The demo site's home page and health check, beside the pages.
#[cfg(feature = "demo")]
pub(crate) fn demo_routes(cfg: &mut web::ServiceConfig) {
    login::demo_routes(cfg);
}
