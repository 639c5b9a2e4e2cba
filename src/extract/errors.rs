//! [`AuthError`] and how a rejection answers the request ([`Answer`]).

use super::*;
use crate::store::StoreError;

/// Why a request was not served as asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// Nobody is signed in: a 303 to the sign-in page, or as [`Answer`] says.
    #[error("sign-in required")]
    SignInRequired {
        /// The sign-in URL with `next`.
        location: String,
        /// What the request asked for.
        answer: Answer,
    },
    /// The password is needed again (a remember-me sign-in, or one typed
    /// too long ago): a 303 to the step-up page, or as [`Answer`] says.
    #[error("password confirmation required")]
    StepUpRequired {
        /// The step-up URL with `next`.
        location: String,
        /// What the request asked for.
        answer: Answer,
    },
    /// Signed in, but not allowed: 403.
    #[error("forbidden")]
    Forbidden,
    /// No such thing (or not yours): 404.
    #[error("not found")]
    NotFound,
    /// The CSRF token was missing or wrong: 403.
    #[error("invalid CSRF token")]
    Csrf,
    /// The database did not answer: 503.
    #[error("service unavailable")]
    Unavailable(#[source] StoreError),
    /// A bug: 500, with no detail in the body.
    #[error("internal error: {0}")]
    Internal(String),
    /// The layer is missing from the app: 500.
    #[error(
        "RememberMe middleware is not installed: wrap the app with `RememberMe` inside `SessionMiddleware`"
    )]
    NotInstalled,
}

/// How a request that must sign in (or confirm the password) first is
/// answered, by what it asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Answer {
    /// A page: 303 to the form.
    Redirect,
    /// `Accept: application/json` (and not HTML): 401 with
    /// `{"error": "sign_in_required" | "step_up_required", "location": …}`.
    Json,
    /// An htmx request (`HX-Request: true`): 401 with `HX-Redirect`, which
    /// htmx follows with a full page load; its `next` is the page the
    /// fragment was asked for (`HX-Current-URL`, its path and query), not
    /// the fragment.
    Htmx,
}

impl Answer {
    /// What `req` asked for.
    pub fn for_request(req: &HttpRequest) -> Self {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
        if header("hx-request") == Some("true") {
            return Answer::Htmx;
        }
        match header("accept") {
            Some(accept)
                if accept.contains("application/json") && !accept.contains("text/html") =>
            {
                Answer::Json
            }
            _ => Answer::Redirect,
        }
    }
}

impl From<crate::kernel::CoreError> for AuthError {
    fn from(error: crate::kernel::CoreError) -> Self {
        match error {
            crate::kernel::CoreError::Store(error) => AuthError::Unavailable(error),
            crate::kernel::CoreError::Internal(error) => AuthError::Internal(error),
        }
    }
}

impl From<StoreError> for AuthError {
    fn from(error: StoreError) -> Self {
        AuthError::Unavailable(error)
    }
}

impl ResponseError for AuthError {
    fn status_code(&self) -> StatusCode {
        match self {
            AuthError::SignInRequired { answer, .. } | AuthError::StepUpRequired { answer, .. } => {
                match answer {
                    Answer::Redirect => StatusCode::SEE_OTHER,
                    Answer::Json | Answer::Htmx => StatusCode::UNAUTHORIZED,
                }
            }
            AuthError::Forbidden | AuthError::Csrf => StatusCode::FORBIDDEN,
            AuthError::NotFound => StatusCode::NOT_FOUND,
            AuthError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AuthError::Internal(_) | AuthError::NotInstalled => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            crate::telemetry::count(crate::telemetry::UNAVAILABLE);
        }
        self.response(status)
    }
}

impl AuthError {
    /// The answer of [`ResponseError::error_response`].
    fn response(&self, status: StatusCode) -> HttpResponse {
        match self {
            AuthError::SignInRequired { location, answer }
            | AuthError::StepUpRequired { location, answer } => {
                let code = match self {
                    AuthError::SignInRequired { .. } => "sign_in_required",
                    _ => "step_up_required",
                };
                // The answer depends on these request headers (htmx's `next`
                // on HX-Current-URL): caches must keep them apart. A 401
                // names how to authenticate: the session cookie that the
                // sign-in form gives.
                let vary = (header::VARY, "Accept, HX-Request, HX-Current-URL");
                let challenge = (header::WWW_AUTHENTICATE, "Cookie realm=\"sign-in\"");
                match answer {
                    Answer::Redirect => HttpResponse::SeeOther()
                        .insert_header((header::LOCATION, location.as_str()))
                        .insert_header(vary)
                        .finish(),
                    Answer::Json => HttpResponse::Unauthorized()
                        .insert_header(vary)
                        .insert_header(challenge)
                        .json(serde_json::json!({ "error": code, "location": location })),
                    Answer::Htmx => HttpResponse::Unauthorized()
                        .insert_header(("HX-Redirect", location.as_str()))
                        .insert_header(vary)
                        .insert_header(challenge)
                        .finish(),
                }
            }
            _ => {
                match self {
                    AuthError::Unavailable(e) => tracing::warn!(error = %e, "store unavailable"),
                    AuthError::Internal(_) | AuthError::NotInstalled => {
                        tracing::error!(error = %self, "request failed")
                    }
                    _ => {}
                }
                // Opaque bodies: no internal detail reaches the client.
                let message = match status {
                    StatusCode::FORBIDDEN if matches!(self, AuthError::Csrf) => {
                        "The form has expired or did not come from this site. Go back, reload the page and try again."
                    }
                    StatusCode::FORBIDDEN => "You are not allowed to see this page.",
                    StatusCode::NOT_FOUND => "There is nothing here (or it is not yours).",
                    StatusCode::SERVICE_UNAVAILABLE => {
                        "The service is temporarily unavailable. Please try again in a moment."
                    }
                    _ => "Something went wrong on our side.",
                };
                let mut res = HttpResponse::build(status);
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    res.insert_header((header::RETRY_AFTER, "5"));
                }
                // A minimal page of the status and one sentence; an app
                // renders its own with actix's `ErrorHandlers`.
                res.content_type(ContentType::html()).body(format!(
                    "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
                     <title>{code} {reason}</title></head>\
                     <body><h1>{code} {reason}</h1><p>{message}</p></body></html>",
                    code = status.as_u16(),
                    reason = status.canonical_reason().unwrap_or(""),
                ))
            }
        }
    }
}

/// `next` if it is a path on this site, else `/`. Refuses absolute URLs,
/// scheme-relative `//host` and `/\host` (browsers treat `\` as `/`), and
/// control characters: an open redirect would let phishing links borrow
/// this site's name.
pub fn safe_redirect_path(next: Option<&str>) -> &str {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.starts_with("/\\")
                && !path.chars().any(|c| c.is_control() || c == '\\') =>
        {
            path
        }
        _ => "/",
    }
}

pub(super) fn unavailable() -> AuthError {
    AuthError::Unavailable(StoreError::Unavailable(
        "the remember-me cookie could not be checked".into(),
    ))
}

pub(super) fn with_next(path: &str, next: &str) -> String {
    format!(
        "{path}?next={}",
        utf8_percent_encode(next, NON_ALPHANUMERIC)
    )
}
