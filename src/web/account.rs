//! The user's own devices and password.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, get, post, web};
use askama::Template;
use serde::Deserialize;

use super::view::{back_with, device, html, take_flash, when};
use crate::extract::PasswordChange;
use crate::{Auth, AuthError, CsrfForm, CurrentUser, StrongAuth};

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(devices)
        .service(revoke_device)
        .service(sign_out_others)
        .service(password_form)
        .service(change_password);
}

/// One remember-me token (a browser or an app) of the user.
#[derive(Debug)]
#[non_exhaustive]
pub struct DeviceRow {
    /// The token's id (`POST /account/devices/{id}/revoke`).
    pub id: i64,
    /// A short name of the device ("Firefox on Linux", "App: " and its key).
    pub device: String,
    /// The address it was last used from.
    pub ip: String,
    /// When it was issued (UTC).
    pub created: String,
    /// When it was last used (UTC).
    pub last_used: String,
    /// When it expires (UTC).
    pub expires: String,
    /// Whether it is this browser's.
    pub current: bool,
}

/// What the devices page shows.
#[derive(Template, Debug)]
#[template(path = "devices.html")]
#[non_exhaustive]
pub struct DevicesPage {
    /// The user.
    pub username: String,
    /// The user's tokens, newest first.
    pub devices: Vec<DeviceRow>,
    /// The forms' hidden `csrf_token` field.
    pub csrf_token: String,
    /// The result of the last action, shown once.
    pub flash: Option<String>,
}

#[get("/account/devices")]
async fn devices(
    CurrentUser(user): CurrentUser,
    auth: Auth,
    session: Session,
) -> Result<HttpResponse, AuthError> {
    let id = user.id.clone();
    let records = auth
        .on_store(move |stores| stores.tokens.list_for_user(&id))
        .await?;
    let current = auth.browser_series();
    let devices = records
        .into_iter()
        .map(|t| DeviceRow {
            id: t.id,
            device: match &t.device_key {
                Some(key) => format!("App: {key}"),
                None => device(t.user_agent.as_deref()),
            },
            ip: t.ip.unwrap_or_default(),
            created: when(t.created_at),
            last_used: when(t.last_used_at),
            expires: when(t.expires_at),
            current: current.as_ref() == Some(&t.series_hash),
        })
        .collect();
    html(
        &auth,
        StatusCode::OK,
        &DevicesPage {
            username: user.username,
            devices,
            csrf_token: auth.csrf_token(),
            flash: take_flash(&session),
        },
    )
}

/// A form with nothing but its CSRF token (checked by [`CsrfForm`]).
#[derive(Deserialize)]
pub(super) struct CsrfOnly {}

#[post("/account/devices/{id}/revoke")]
async fn revoke_device(
    StrongAuth(user): StrongAuth,
    auth: Auth,
    session: Session,
    id: web::Path<i64>,
    _: CsrfForm<CsrfOnly>,
) -> Result<HttpResponse, AuthError> {
    // Scoped to the owner: another user's id revokes nothing and says so.
    if !auth.revoke_token(id.into_inner(), Some(user.id)).await? {
        return Err(AuthError::NotFound);
    }
    Ok(back_with(
        &session,
        "/account/devices",
        "Device signed out.",
    ))
}

#[post("/account/devices/sign-out-others")]
async fn sign_out_others(
    StrongAuth(_): StrongAuth,
    auth: Auth,
    session: Session,
    _: CsrfForm<CsrfOnly>,
) -> Result<HttpResponse, AuthError> {
    let n = auth.sign_out_other_devices().await?;
    Ok(back_with(
        &session,
        "/account/devices",
        format!("Signed out everywhere else ({n} device(s))."),
    ))
}

/// What the password page shows.
#[derive(Template, Debug)]
#[template(path = "password.html")]
#[non_exhaustive]
pub struct PasswordPage<'a> {
    /// The form's hidden `csrf_token` field.
    pub csrf_token: String,
    /// The result of the last action, shown once.
    pub flash: Option<String>,
    /// Why the last attempt failed, if it did.
    pub error: Option<&'a str>,
}

#[get("/account/password")]
async fn password_form(
    StrongAuth(_): StrongAuth,
    auth: Auth,
    session: Session,
) -> Result<HttpResponse, AuthError> {
    html(
        &auth,
        StatusCode::OK,
        &PasswordPage {
            csrf_token: auth.csrf_token(),
            flash: take_flash(&session),
            error: None,
        },
    )
}

#[derive(Deserialize)]
struct PasswordForm {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    confirm_password: String,
}

#[post("/account/password")]
async fn change_password(
    StrongAuth(_): StrongAuth,
    auth: Auth,
    session: Session,
    CsrfForm(form): CsrfForm<PasswordForm>,
) -> Result<HttpResponse, AuthError> {
    let error = if form.new_password.chars().count() < 8 {
        Some("The new password must have at least 8 characters.")
    } else if form.new_password != form.confirm_password {
        Some("The two passwords differ.")
    } else {
        None
    };
    if let Some(error) = error {
        return html(
            &auth,
            StatusCode::UNPROCESSABLE_ENTITY,
            &PasswordPage {
                csrf_token: auth.csrf_token(),
                flash: None,
                error: Some(error),
            },
        );
    }
    let changed = auth
        .change_password(form.current_password, form.new_password)
        .await?;
    let (status, error, retry_after) = match changed {
        PasswordChange::Changed => {
            return Ok(back_with(
                &session,
                "/account/devices",
                "Password changed. Every other session and device was signed out.",
            ));
        }
        refused => why_not_changed(refused),
    };
    let mut page = html(
        &auth,
        status,
        &PasswordPage {
            csrf_token: auth.csrf_token(),
            flash: None,
            error: Some(&error),
        },
    )?;
    if let Some(secs) = retry_after {
        page.headers_mut().insert(
            actix_web::http::header::RETRY_AFTER,
            actix_web::http::header::HeaderValue::from(secs),
        );
    }
    Ok(page)
}

/// The password page's status, message and `Retry-After` for a change
/// that did not happen.
fn why_not_changed(refused: PasswordChange) -> (StatusCode, String, Option<u64>) {
    match refused {
        PasswordChange::Throttled { retry_after_secs } => (
            StatusCode::TOO_MANY_REQUESTS,
            format!("Too many attempts. Try again in {retry_after_secs} seconds."),
            Some(retry_after_secs),
        ),
        PasswordChange::Unsupported => (
            StatusCode::NOT_IMPLEMENTED,
            "Passwords cannot be changed on this site.".to_owned(),
            None,
        ),
        _ => (
            StatusCode::UNAUTHORIZED,
            "Your current password is not right.".to_owned(),
            None,
        ),
    }
}
