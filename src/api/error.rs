//! The API's errors: a status and `{error, message}`, with the long-lived
//! token when the failed request changed it.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};

use crate::flow::CookieChange;
use crate::kernel::{CoreError, FailedAfterRotation};
use crate::store::StoreError;

/// An API error: a status and `{error, message}`.
#[derive(Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
    /// A long-lived token the failed request changed (committed): it goes
    /// out with the error, or the client would keep a token the store no
    /// longer accepts after the grace window.
    token: Option<(String, i64)>,
}

/// Written by hand: a long-lived token the error carries is a secret, and
/// errors are logged (actix-web's `Logger` prints them at `debug`).
impl std::fmt::Debug for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiError")
            .field("status", &self.status)
            .field("code", &self.code)
            .field("message", &self.message)
            .field("retry_after", &self.retry_after)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl ApiError {
    pub(super) fn new(status: StatusCode, code: &'static str, message: &str) -> Self {
        Self {
            status,
            code,
            message: message.to_owned(),
            retry_after: None,
            token: None,
        }
    }

    /// The error, carrying the long-lived token `change` sets, if any.
    pub(super) fn with_token(mut self, change: Option<CookieChange>) -> Self {
        if let Some(CookieChange::Set {
            cookie,
            max_age_secs,
        }) = change
        {
            self.token = Some((cookie.encode(), max_age_secs));
        }
        self
    }

    pub(super) fn unauthorized(code: &'static str, message: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    pub(super) fn bad_request(message: &str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
}

impl From<CoreError> for ApiError {
    fn from(error: CoreError) -> Self {
        match error {
            CoreError::Store(error) => error.into(),
            CoreError::Internal(error) => internal(error),
        }
    }
}

/// A failure after the presented long-lived token rotated: the error,
/// carrying the new token.
impl From<FailedAfterRotation> for ApiError {
    fn from(FailedAfterRotation { error, change }: FailedAfterRotation) -> Self {
        Self::from(error).with_token(Some(change))
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        tracing::warn!(%error, "API: store unavailable");
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "The service is temporarily unavailable.",
        );
        e.retry_after = Some(5);
        e
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            crate::telemetry::count(crate::telemetry::UNAVAILABLE);
        }
        let mut res = HttpResponse::build(self.status);
        if let Some(secs) = self.retry_after {
            res.insert_header((header::RETRY_AFTER, HeaderValue::from(secs)));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            res.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        let mut body = serde_json::json!({ "error": self.code, "message": self.message });
        if let Some((token, expires_in)) = &self.token {
            res.insert_header((header::CACHE_CONTROL, "no-store"));
            body["long_lived_token"] = token.as_str().into();
            body["long_lived_expires_in"] = (*expires_in).into();
        }
        res.json(body)
    }
}

pub(super) fn internal(error: impl std::fmt::Display) -> ApiError {
    tracing::error!(%error, "API request failed");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "Something went wrong on our side.",
    )
}

/// A step of the app's own waits for its input: send it in `inputs`, with
/// the password again (the API keeps no paused flow).
pub(super) fn input_required(step: &str) -> ApiError {
    ApiError::unauthorized(
        "input_required",
        &format!(
            "The sign-in needs the input of step `{step}`: send it in `inputs`, with the password."
        ),
    )
}

pub(super) fn password_required() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "password_required",
        "A long-lived token needs a password typed within the re-auth window, on this device: sign in with the password.",
    )
}

pub(super) fn throttled(secs: u64) -> ApiError {
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
        &format!("Too many attempts. Try again in {secs} seconds."),
    );
    e.retry_after = Some(secs);
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::RememberCookie;

    /// A token an error carries goes into its body, uncached, and never
    /// into its `Debug` (errors are logged).
    #[test]
    fn an_error_carrying_a_token_hides_it_from_logs_and_caches() {
        let cookie = RememberCookie::generate();
        let encoded = cookie.encode();
        let error =
            ApiError::from(StoreError::Query("boom".into())).with_token(Some(CookieChange::Set {
                cookie,
                max_age_secs: 60,
            }));
        let logged = format!("{error:?} {error}");
        assert!(!logged.contains(&encoded), "{logged}");
        assert!(logged.contains("[redacted]"), "{logged}");
        let res = error.error_response();
        assert_eq!(
            res.headers().get(header::CACHE_CONTROL).unwrap(),
            "no-store"
        );
        // Without a token: no header of the kind (nothing secret to keep).
        let plain = ApiError::from(StoreError::Query("boom".into())).error_response();
        assert!(plain.headers().get(header::CACHE_CONTROL).is_none());
    }
}
