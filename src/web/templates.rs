//! The app's own templates for the crate's pages: [`Templates`] gets what a
//! page shows ([`PageView`]) and answers its HTML, or `None` for the
//! crate's template. Mount with [`configure_with`](super::configure_with).

use actix_web::web;

use super::account::{DevicesPage, PasswordPage};
use super::admin::{AuditPage, TokensPage};
use super::login::LoginPage;

/// A page about to be rendered, with what it shows. Every text in it is
/// raw: escape it for HTML (your template engine's default).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum PageView<'a> {
    /// `/login` and `/login/step-up`.
    Login(&'a LoginPage<'a>),
    /// `/account/devices`.
    Devices(&'a DevicesPage),
    /// `/account/password`.
    Password(&'a PasswordPage<'a>),
    /// `/admin/tokens`.
    AdminTokens(&'a TokensPage),
    /// `/admin/audit`.
    AdminAudit(&'a AuditPage),
}

/// The app's templates for the crate's pages, in its own engine and
/// layout: answer the HTML of the pages you replace and `None` for the
/// others. Each form must keep its fields (`csrf_token`, and the page's
/// own: see the crate's templates in `templates/`).
///
/// ```no_run
/// use rememberme::pages::{PageView, Templates};
///
/// struct MyTemplates;
///
/// impl Templates for MyTemplates {
///     fn render(&self, page: PageView<'_>) -> Option<String> {
///         match page {
///             PageView::Password(page) => Some(format!(
///                 "<form method=post action=/account/password>\
///                  <input type=hidden name=csrf_token value={}>…</form>",
///                 page.csrf_token // an unguessable token: nothing to escape
///             )),
///             _ => None,
///         }
///     }
/// }
///
/// let app = actix_web::App::new().configure(rememberme::pages::configure_with(MyTemplates));
/// ```
pub trait Templates: Send + Sync + 'static {
    /// The page's HTML, or `None` for the crate's own template.
    fn render(&self, page: PageView<'_>) -> Option<String>;
}

/// The templates an app mounted, as the pages find them.
pub(super) type Mounted = web::Data<dyn Templates>;

/// A page of the crate that an app's [`Templates`] may render.
pub(super) trait View {
    fn view(&self) -> PageView<'_>;
}

impl View for LoginPage<'_> {
    fn view(&self) -> PageView<'_> {
        PageView::Login(self)
    }
}

impl View for DevicesPage {
    fn view(&self) -> PageView<'_> {
        PageView::Devices(self)
    }
}

impl View for PasswordPage<'_> {
    fn view(&self) -> PageView<'_> {
        PageView::Password(self)
    }
}

impl View for TokensPage {
    fn view(&self) -> PageView<'_> {
        PageView::AdminTokens(self)
    }
}

impl View for AuditPage {
    fn view(&self) -> PageView<'_> {
        PageView::AdminAudit(self)
    }
}
