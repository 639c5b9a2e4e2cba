//! Small helpers shared by the demo pages.

use actix_session::Session;
use actix_web::HttpResponse;
use actix_web::cookie::time::OffsetDateTime;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, ContentType};
use askama::Template;

use super::templates::{Mounted, View};
use crate::{Auth, AuthError};

/// A page in the app's templates, if it mounted some that render it
/// (see [`Templates`](super::Templates)), else in the crate's.
pub(super) fn html<P: Template + View>(
    auth: &Auth,
    status: StatusCode,
    page: &P,
) -> Result<HttpResponse, AuthError> {
    let apps = auth
        .request()
        .app_data::<Mounted>()
        .and_then(|templates| templates.render(page.view()));
    match apps {
        Some(body) => Ok(HttpResponse::build(status)
            .content_type(ContentType::html())
            .body(body)),
        None => template_html(status, page),
    }
}

/// A page in the crate's template.
pub(super) fn template_html(
    status: StatusCode,
    page: &impl Template,
) -> Result<HttpResponse, AuthError> {
    let body = page
        .render()
        .map_err(|e| AuthError::Internal(e.to_string()))?;
    Ok(HttpResponse::build(status)
        .content_type(ContentType::html())
        .body(body))
}

pub(super) fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}

const FLASH_KEY: &str = "demo.flash";

/// Redirects back after an action, with a message shown once.
pub(super) fn back_with(
    session: &Session,
    location: &str,
    message: impl Into<String>,
) -> HttpResponse {
    let _ = session.insert(FLASH_KEY, message.into());
    see_other(location)
}

/// The message of the last action, removed as it is read.
pub(super) fn take_flash(session: &Session) -> Option<String> {
    session.remove_as::<String>(FLASH_KEY).and_then(Result::ok)
}

/// `YYYY-MM-DD HH:MM UTC`.
pub(super) fn when(unix: i64) -> String {
    match OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        Err(_) => "—".to_owned(),
    }
}

/// A short readable name for a user agent: "Firefox on Linux".
pub(super) fn device(user_agent: Option<&str>) -> String {
    let Some(ua) = user_agent else {
        return "Unknown device".to_owned();
    };
    let browser = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("Chromium/", "Chromium"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
    ]
    .iter()
    .find(|(needle, _)| ua.contains(needle))
    .map(|(_, name)| *name);
    let os = [
        ("Android", "Android"),
        ("iPhone", "iPhone"),
        ("iPad", "iPad"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("CrOS", "ChromeOS"),
        ("Linux", "Linux"),
    ]
    .iter()
    .find(|(needle, _)| ua.contains(needle))
    .map(|(_, name)| *name);
    match (browser, os) {
        (Some(b), Some(o)) => format!("{b} on {o}"),
        (Some(b), None) => b.to_owned(),
        (None, Some(o)) => o.to_owned(),
        // Unknown agents are shown shortened, as typed (escaped by the template).
        (None, None) => ua.chars().take(40).collect(),
    }
}

/// Rows of a page of the admin lists.
pub(super) const PAGE_SIZE: i64 = 50;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_named_shortly() {
        let chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";
        assert_eq!(device(Some(chrome)), "Chrome on Linux");
        assert_eq!(
            device(Some(
                "Mozilla/5.0 (Windows NT 10.0; rv:120.0) Gecko/20100101 Firefox/120.0"
            )),
            "Firefox on Windows"
        );
        assert_eq!(device(None), "Unknown device");
        assert_eq!(device(Some("<script>")), "<script>");
    }

    #[test]
    fn times_are_shown_in_utc() {
        assert_eq!(when(0), "1970-01-01 00:00 UTC");
    }
}
