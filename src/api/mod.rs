//! The JSON API for apps that cannot rely on cookies: the same flows, the
//! same series/token scheme and rules, with the long-lived token kept by the
//! app and exchanged for short-lived access tokens.
//!
//! Mount it with `App::service(rememberme::api::scope())` inside the
//! [`RememberMe`](crate::RememberMe) layer, and give the config an
//! [access-token secret](crate::config::RememberMeConfigBuilder::access_token_secret).
//!
//! | route | body | answer |
//! |---|---|---|
//! | `POST /api/v1/login` | `{username, password, remember_me, device_key, inputs?}` | `{access_token, token_type, expires_in, long_lived_token?, long_lived_expires_in?}`; 401 `input_required` after a right password when a step of the app's own wants its input in `inputs` |
//! | `POST /api/v1/login` with `Authorization: Bearer` and no password | `{remember_me: true, device_key}` | a long-lived token for the bearer's own device only if the bearer's password was typed within the re-auth window; else 403 `password_required` |
//! | `POST /api/v1/token/refresh` | `{long_lived_token}` | a new access token and the rotated long-lived token |
//! | `POST /api/v1/logout` | `Authorization: Bearer`, optional `{long_lived_token}` | 204; that device's token revoked |
//! | `GET /api/v1/me` | `Authorization: Bearer` | the user and how they authenticated |
//!
//! Every error is a 4xx/5xx with `{"error": "<code>", "message": "<text>"}`.
//! An error of a refresh after the presented long-lived token rotated (a
//! 503 when a step of the app's fails after the rotation, a 401
//! `sign_in_refused` when it refuses) also carries `long_lived_token` and
//! `long_lived_expires_in`: keep that token, as after a success.

use std::collections::BTreeSet;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use crate::access::{AccessClaims, AccessError};
use crate::extract::request_auth;
use crate::flow::{ClientInfo, CookieChange, Credentials, Failure, FlowKind, Progress, Tag};
use crate::kernel::{API_REFRESH, FlowInput, Ran, Visit};
use crate::limits::ip_throttled;
use crate::middleware::{RequestAuth, client_info};
use crate::session::SignInMethod;
use crate::store::{AuditKind, UserId};
use crate::token::RememberCookie;

/// The API's routes under `/api/v1`, with JSON errors for bad bodies.
pub fn scope() -> actix_web::Scope {
    web::scope("/api/v1")
        .app_data(
            web::JsonConfig::default()
                .limit(4096)
                .error_handler(|error, _req| {
                    let api = match &error {
                        actix_web::error::JsonPayloadError::OverflowKnownLength { .. }
                        | actix_web::error::JsonPayloadError::Overflow { .. } => ApiError::new(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "payload_too_large",
                            "The body is larger than 4 KiB.",
                        ),
                        actix_web::error::JsonPayloadError::ContentType => ApiError::new(
                            StatusCode::UNSUPPORTED_MEDIA_TYPE,
                            "unsupported_media_type",
                            "Send the body as application/json.",
                        ),
                        other => ApiError::new(
                            StatusCode::BAD_REQUEST,
                            "invalid_request",
                            &format!("The body is not valid: {other}"),
                        ),
                    };
                    api.into()
                }),
        )
        .route("/login", web::post().to(login))
        .route("/token/refresh", web::post().to(refresh))
        .route("/logout", web::post().to(logout))
        .route("/me", web::get().to(me))
        .default_service(web::to(|| async {
            Err::<HttpResponse, _>(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "No such endpoint.",
            ))
        }))
}

fn layer(req: &HttpRequest) -> Result<RequestAuth, ApiError> {
    request_auth(req).map_err(internal)
}

#[derive(Serialize)]
struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    long_lived_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    long_lived_expires_in: Option<i64>,
    /// The app's device cookie (see [`crate::device`]), after a right
    /// password: sent back as `device_token` with later password sign-ins,
    /// it gives the app a failure budget of its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    device_token: Option<String>,
}

#[derive(Deserialize)]
struct LoginBody {
    username: Option<String>,
    password: Option<String>,
    #[serde(default)]
    remember_me: bool,
    device_key: Option<String>,
    device_token: Option<String>,
    /// The inputs of the app's own interactive steps (a one-time code),
    /// sent with the password: the API keeps no paused flow.
    #[serde(default)]
    inputs: std::collections::BTreeMap<String, String>,
}

fn valid_device_key(key: Option<&str>) -> Result<Option<String>, ApiError> {
    match key {
        None => Ok(None),
        Some(k) if !k.is_empty() && k.len() <= 128 && !k.chars().any(char::is_control) => {
            Ok(Some(k.to_owned()))
        }
        Some(_) => Err(ApiError::bad_request(
            "device_key must be 1 to 128 printable characters.",
        )),
    }
}

/// Runs an API flow through the core: with a password, on a password
/// thread (after a permit); else on the store threads. A long-lived token
/// the flow changed reaches the client even when the flow then fails: the
/// error carries it (see [`ApiError::with_token`]).
async fn run_flow(auth: &RequestAuth, input: FlowInput, visit: Visit) -> Result<Ran, ApiError> {
    let shared = &auth.shared;
    let ran = if input.credentials.is_some() {
        shared
            .password(move |core| core.run_flow(&visit, input))
            .await
    } else {
        shared.store(move |core| core.run_flow(&visit, input)).await
    };
    Ok(ran??)
}

/// A refresh's flow. When the store rotates in batches, the token's
/// rotation runs in one (the request waits for it without holding a store
/// thread) and the flow runs where the batch ran, as soon as it has: one
/// hand-off to the store threads, not two. A batch that fails ends the
/// refresh (a 503, nothing written); a failure after the rotation carries
/// the new token (see [`ApiError::with_token`]).
async fn refresh_flow(auth: &RequestAuth, input: FlowInput, visit: Visit) -> Result<Ran, ApiError> {
    let core = auth.shared.core_handle();
    let Some((rotation, attempt)) = core.prepare_cookie_rotation(&visit, API_REFRESH) else {
        return run_flow(auth, input, visit).await;
    };
    let ran = auth
        .shared
        .rotations
        .rotate_then(attempt, move |outcome, owner| {
            core.finish_refresh(&visit, input, rotation, (outcome, owner))
        })
        .await
        .and_then(|ran| ran)?;
    Ok(ran?)
}

/// What an access token about to be issued says, beside the user.
struct Grant {
    user: UserId,
    epoch: i64,
    tags: BTreeSet<Tag>,
    method: SignInMethod,
    device: Option<String>,
    /// When the password behind it was typed.
    pwd_at: Option<i64>,
    /// The latest expiry it may have (a derived token never outlives the
    /// token presented).
    not_after: Option<i64>,
    /// A device cookie for the app (after a right password).
    device_token: Option<String>,
}

/// The access-token signer, or a 500 if the config has no secret.
fn signer(config: &crate::RememberMeConfig) -> Result<&crate::access::AccessTokens, ApiError> {
    config
        .access_tokens
        .as_ref()
        .ok_or_else(|| internal("no access-token secret configured"))
}

fn token_response(
    auth: &RequestAuth,
    grant: Grant,
    change: Option<CookieChange>,
) -> Result<HttpResponse, ApiError> {
    let config = &auth.shared.config();
    let signer = signer(config)?;
    let now = config.now();
    let lifetime = config.access_token_lifetime.as_secs() as i64;
    let exp = grant
        .not_after
        .map_or(now + lifetime, |at| at.min(now + lifetime));
    // Bound to the long-lived token it comes with: revoked with it.
    let series = match &change {
        Some(CookieChange::Set { cookie, .. }) => Some(cookie.series.hash()),
        _ => None,
    };
    let access_token = signer.issue(&AccessClaims {
        sub: grant.user,
        epoch: grant.epoch,
        tags: grant.tags.into_iter().collect(),
        method: grant.method,
        device: grant.device,
        exp,
        pwd_at: grant.pwd_at,
        series,
    });
    let (long_lived_token, long_lived_expires_in) = match change {
        Some(CookieChange::Set {
            cookie,
            max_age_secs,
        }) => (Some(cookie.encode()), Some(max_age_secs)),
        _ => (None, None),
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: (exp - now).max(0) as u64,
            long_lived_token,
            long_lived_expires_in,
            device_token: grant.device_token,
        }))
}

/// Records an API event through the layer's audit queue, off the request.
fn audit(auth: &RequestAuth, kind: AuditKind, user: &UserId, client: &ClientInfo, detail: &str) {
    let visit = Visit {
        now: auth.shared.config().now(),
        client: client.clone(),
        cookie: None,
        device: None,
    };
    auth.shared
        .audit_later(visit.owned_event(kind, Some(user.clone()), detail));
}

#[derive(Deserialize)]
struct RefreshBody {
    long_lived_token: String,
}

async fn refresh(req: HttpRequest, body: web::Json<RefreshBody>) -> Result<HttpResponse, ApiError> {
    let auth = layer(&req)?;
    // Checked before the rotation: after it, nothing may fail on the way to
    // the answer that carries the new token.
    signer(auth.shared.config())?;
    let presented = body.into_inner().long_lived_token;
    let client = client_info(&req, auth.shared.config());
    let visit = Visit {
        now: auth.shared.config().now(),
        client: client.clone(),
        cookie: Some(presented.clone().into_bytes()),
        device: None,
    };
    let mut input = FlowInput::new(FlowKind::Login);
    input.identify_by_token = true;
    let ran = refresh_flow(&auth, input, visit).await?;
    match (ran.progress, ran.epoch) {
        // Nothing fallible between the committed rotation and the answer
        // that carries it: the token's device came with the flow, the
        // signer was checked first.
        (Progress::Complete { user, tags }, Some(epoch)) => {
            let device = ran.device_key;
            if !ran.audited {
                audit(
                    &auth,
                    AuditKind::RememberMeSignIn,
                    &user,
                    &client,
                    "api refresh",
                );
            }
            let grant = Grant {
                user,
                epoch,
                tags,
                method: SignInMethod::RememberMe,
                device,
                pwd_at: None,
                not_after: None,
                device_token: None,
            };
            token_response(&auth, grant, ran.cookie_change)
        }
        // The token rotated, then a step of the app's refused: the new
        // token goes out with the refusal, which says to keep it.
        _ if ran
            .cookie_change
            .as_ref()
            .is_some_and(|change| change.rotates(Some(presented.as_bytes()))) =>
        {
            Err(ApiError::unauthorized(
                "sign_in_refused",
                "A step of the sign-in refused. The long-lived token is still valid: keep the one in this answer.",
            )
            .with_token(ran.cookie_change))
        }
        _ => Err(ApiError::unauthorized(
            "invalid_token",
            "The long-lived token is not valid (expired, revoked or replayed). Sign in again.",
        )),
    }
}

mod bearer;
mod error;
mod login;

use bearer::{bearer, logout, me, verify_bearer};
pub use error::ApiError;
use error::{input_required, internal, password_required, throttled};
use login::login;
