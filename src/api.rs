//! The JSON API for apps that cannot rely on cookies: the same flows, the
//! same series/token scheme and rules, with the long-lived token kept by the
//! app and exchanged for short-lived access tokens.
//!
//! Mount it with `App::service(rememberme::api::scope())` inside the
//! [`RememberMe`](crate::RememberMe) layer, and give the config an
//! [access-token secret](crate::RememberMeConfigBuilder::access_token_secret).
//!
//! | route | body | answer |
//! |---|---|---|
//! | `POST /api/v1/login` | `{username, password, remember_me, device_key}` | `{access_token, token_type, expires_in, long_lived_token?, long_lived_expires_in?}` |
//! | `POST /api/v1/login` with `Authorization: Bearer` and no password | `{remember_me: true, device_key}` | a long-lived token only if the bearer typed a password; else 403 `password_required` |
//! | `POST /api/v1/token/refresh` | `{long_lived_token}` | a new access token and the rotated long-lived token |
//! | `POST /api/v1/logout` | `Authorization: Bearer`, optional `{long_lived_token}` | 204; that device's token revoked |
//! | `GET /api/v1/me` | `Authorization: Bearer` | the user and how they authenticated |
//!
//! Every error is a 4xx/5xx with `{"error": "<code>", "message": "<text>"}`.

use std::collections::BTreeSet;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde::{Deserialize, Serialize};

use crate::access::{AccessClaims, AccessError};
use crate::extract::{ip_throttled, request_auth};
use crate::flow::{
    ClientInfo, CookieChange, Credentials, Failure, FlowKind, ISSUE, Progress, StepContext, Tag,
};
use crate::middleware::audit_off_the_request;
use crate::middleware::{RequestAuth, SignInMethod, client_info};
use crate::store::audit_queue::OwnedAudit;
use crate::store::{AuditKind, StoreError, UserId};
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

/// An API error: a status and `{error, message}`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: &str) -> Self {
        Self {
            status,
            code,
            message: message.to_owned(),
            retry_after: None,
        }
    }

    fn unauthorized(code: &'static str, message: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    fn bad_request(message: &str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
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
        let mut res = HttpResponse::build(self.status);
        if let Some(secs) = self.retry_after {
            res.insert_header((header::RETRY_AFTER, HeaderValue::from(secs)));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            res.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        res.json(serde_json::json!({ "error": self.code, "message": self.message }))
    }
}

fn internal(error: impl std::fmt::Display) -> ApiError {
    tracing::error!(%error, "API request failed");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "Something went wrong on our side.",
    )
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
}

#[derive(Deserialize)]
struct LoginBody {
    username: Option<String>,
    password: Option<String>,
    #[serde(default)]
    remember_me: bool,
    device_key: Option<String>,
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

/// What a flow run produced, for the response.
struct Ran {
    progress: Progress,
    cookie_change: Option<CookieChange>,
    epoch: Option<i64>,
}

/// Runs `kind` from `state` with the given inputs on a blocking thread.
#[allow(clippy::too_many_arguments)]
async fn run_flow(
    auth: &RequestAuth,
    kind: FlowKind,
    known: Option<(UserId, BTreeSet<Tag>)>,
    activate_issue: bool,
    remember_cookie: Option<Vec<u8>>,
    credentials: Option<Credentials>,
    device_key: Option<String>,
    client: ClientInfo,
) -> Result<Ran, ApiError> {
    let shared = &auth.shared;
    let stores = shared.stores.clone();
    let config = shared.config.clone();
    let flow = shared.flow(kind);
    let now = config.now();
    let has_password = credentials.is_some();
    let job = move || {
        let mut state = flow.start(known.as_ref().map(|(u, t)| (*u, t)));
        if activate_issue {
            state.activate(ISSUE);
        }
        let mut ctx = StepContext {
            stores: &stores,
            config: &config,
            now,
            client: &client,
            remember_cookie: remember_cookie.as_deref(),
            browser_series: None,
            device_key,
            credentials,
            cookie_change: None,
            user: None,
        };
        let progress = flow.advance(&mut state, &mut ctx)?;
        // The step read the user already (with the token, or with the
        // credentials); only a flow that did not is read again.
        let epoch = match &progress {
            Progress::Complete { user, .. } => match ctx.user.take().filter(|u| u.id == *user) {
                Some(loaded) => Some(loaded.auth_epoch),
                None => stores.users.auth_epoch(*user)?,
            },
            _ => None,
        };
        Ok::<_, StoreError>(Ran {
            progress,
            cookie_change: ctx.cookie_change,
            epoch,
        })
    };
    // A password check holds its thread for an Argon2 run: never on the
    // store threads, where it would hold up every cookie sign-in behind it.
    let ran = if has_password {
        shared.run_with_argon2(job).await.map_err(internal)?
    } else {
        shared.run_blocking(job).await.map_err(internal)?
    };
    ran.map_err(ApiError::from)
}

fn token_response(
    auth: &RequestAuth,
    user: UserId,
    epoch: i64,
    tags: BTreeSet<Tag>,
    method: SignInMethod,
    device: Option<String>,
    change: Option<CookieChange>,
) -> Result<HttpResponse, ApiError> {
    let config = &auth.shared.config;
    let signer = config
        .access_tokens
        .as_ref()
        .ok_or_else(|| internal("no access-token secret configured"))?;
    let lifetime = config.access_token_lifetime.as_secs();
    let access_token = signer.issue(&AccessClaims {
        sub: user,
        epoch,
        tags: tags.into_iter().collect(),
        method,
        device,
        exp: config.now() + lifetime as i64,
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
            expires_in: lifetime,
            long_lived_token,
            long_lived_expires_in,
        }))
}

/// Records an API event through the layer's audit queue, off the request.
fn audit(auth: &RequestAuth, kind: AuditKind, user: UserId, client: &ClientInfo, detail: &str) {
    audit_off_the_request(
        &auth.shared,
        OwnedAudit {
            at: auth.shared.config.now(),
            kind,
            user: Some(user),
            ip: client.ip.clone(),
            user_agent: client.user_agent.clone(),
            detail: detail.to_owned(),
        },
    );
}

async fn login(req: HttpRequest, body: web::Json<LoginBody>) -> Result<HttpResponse, ApiError> {
    let auth = layer(&req)?;
    let body = body.into_inner();
    let device_key = valid_device_key(body.device_key.as_deref())?;
    if body.remember_me && device_key.is_none() {
        return Err(ApiError::bad_request("remember_me needs a device_key."));
    }
    let client = client_info(&req);
    let shared = auth.shared.clone();
    if let Some(limiter) = &shared.ip_limiter
        && let Some(secs) = ip_throttled(limiter, &req)
    {
        return Err(throttled(secs));
    }

    let (kind, known, credentials, method) = match (&body.password, bearer(&req)) {
        (Some(password), _) => {
            let username = body
                .username
                .clone()
                .ok_or_else(|| ApiError::bad_request("username is required."))?;
            let credentials = Credentials {
                username,
                password: password.clone(),
                remember_me: body.remember_me,
            };
            (
                FlowKind::Login,
                None,
                Some(credentials),
                SignInMethod::Password,
            )
        }
        // A caller with an access token asks for a long-lived token without
        // typing the password: the step-up flow with the token step
        // activated. Its precondition (PASSWORD_VERIFIED) decides.
        (None, Some(token)) if body.remember_me => {
            let claims = verify_bearer(&auth, &token).await?;
            let tags = claims.tags.iter().copied().collect();
            (
                FlowKind::StepUp,
                Some((claims.sub, tags)),
                None,
                claims.method,
            )
        }
        _ => return Err(ApiError::bad_request("username and password are required.")),
    };
    let activate = kind == FlowKind::StepUp;
    let _permit = shared
        .password_checks
        .clone()
        .acquire_owned()
        .await
        .map_err(internal)?;
    let ran = run_flow(
        &auth,
        kind,
        known,
        activate,
        None,
        credentials,
        device_key.clone(),
        client.clone(),
    )
    .await?;
    match ran.progress {
        Progress::Complete { user, tags } => {
            let epoch = ran.epoch.ok_or_else(|| {
                ApiError::unauthorized("invalid_credentials", "Wrong username or password.")
            })?;
            if kind == FlowKind::Login {
                audit(&auth, AuditKind::PasswordSignIn, user, &client, "api");
            }
            token_response(
                &auth,
                user,
                epoch,
                tags,
                method,
                device_key,
                ran.cookie_change,
            )
        }
        Progress::Failed {
            failure: Failure::Throttled { retry_after_secs },
            ..
        } => Err(throttled(retry_after_secs)),
        Progress::NeedsInput { .. } | Progress::Refused { .. } if kind == FlowKind::StepUp => {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "password_required",
                "A long-lived token needs the password: this access token came from a long-lived token.",
            ))
        }
        _ => Err(ApiError::unauthorized(
            "invalid_credentials",
            "Wrong username or password.",
        )),
    }
}

fn throttled(secs: u64) -> ApiError {
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
        &format!("Too many attempts. Try again in {secs} seconds."),
    );
    e.retry_after = Some(secs);
    e
}

#[derive(Deserialize)]
struct RefreshBody {
    long_lived_token: String,
}

async fn refresh(req: HttpRequest, body: web::Json<RefreshBody>) -> Result<HttpResponse, ApiError> {
    let auth = layer(&req)?;
    let client = client_info(&req);
    let raw = body.into_inner().long_lived_token.into_bytes();
    let series = RememberCookie::decode(&raw).ok().map(|c| c.series.hash());
    let ran = run_flow(
        &auth,
        FlowKind::Login,
        None,
        false,
        Some(raw),
        None,
        None,
        client.clone(),
    )
    .await?;
    match (ran.progress, ran.epoch) {
        (Progress::Complete { user, tags }, Some(epoch)) => {
            let stores = auth.shared.stores.clone();
            let device = match series {
                Some(series) => auth
                    .shared
                    .run_blocking(move || stores.tokens.find_by_series(&series))
                    .await
                    .map_err(internal)??
                    .and_then(|t| t.device_key),
                None => None,
            };
            audit(
                &auth,
                AuditKind::RememberMeSignIn,
                user,
                &client,
                "api refresh",
            );
            token_response(
                &auth,
                user,
                epoch,
                tags,
                SignInMethod::RememberMe,
                device,
                ran.cookie_change,
            )
        }
        _ => Err(ApiError::unauthorized(
            "invalid_token",
            "The long-lived token is not valid (expired, revoked or replayed). Sign in again.",
        )),
    }
}

fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?;
    Some(token.trim().to_owned())
}

/// Signature, expiry, and the user's current auth epoch.
async fn verify_bearer(auth: &RequestAuth, token: &str) -> Result<AccessClaims, ApiError> {
    let config = &auth.shared.config;
    let signer = config
        .access_tokens
        .as_ref()
        .ok_or_else(|| internal("no access-token secret configured"))?;
    let claims = signer.verify(token, config.now()).map_err(|e| match e {
        AccessError::Expired => {
            ApiError::unauthorized("token_expired", "The access token expired: refresh it.")
        }
        _ => ApiError::unauthorized("invalid_token", "The access token is not valid."),
    })?;
    let users = auth.shared.stores.users.clone();
    let sub = claims.sub;
    let epoch = auth
        .shared
        .run_blocking(move || users.auth_epoch(sub))
        .await
        .map_err(internal)??;
    if epoch != Some(claims.epoch) {
        return Err(ApiError::unauthorized(
            "token_revoked",
            "The access token was revoked. Sign in again.",
        ));
    }
    Ok(claims)
}

async fn bearer_claims(req: &HttpRequest, auth: &RequestAuth) -> Result<AccessClaims, ApiError> {
    let token = bearer(req).ok_or_else(|| {
        ApiError::unauthorized("unauthorized", "Send Authorization: Bearer <access token>.")
    })?;
    verify_bearer(auth, &token).await
}

#[derive(Deserialize, Default)]
struct LogoutBody {
    long_lived_token: Option<String>,
}

async fn logout(
    req: HttpRequest,
    body: Option<web::Json<LogoutBody>>,
) -> Result<HttpResponse, ApiError> {
    let auth = layer(&req)?;
    let claims = bearer_claims(&req, &auth).await?;
    let body = body.map(web::Json::into_inner).unwrap_or_default();
    let series = match body.long_lived_token {
        Some(token) => Some(
            RememberCookie::decode(token.as_bytes())
                .map_err(|_| ApiError::bad_request("long_lived_token is malformed."))?
                .series
                .hash(),
        ),
        None => None,
    };
    let stores = auth.shared.stores.clone();
    let (user, device) = (claims.sub, claims.device.clone());
    let revoked = auth
        .shared
        .run_blocking(move || {
            let mut revoked = 0;
            for token in stores.tokens.list_for_user(user)? {
                let named = series.as_ref() == Some(&token.series_hash);
                let this_device =
                    series.is_none() && device.is_some() && token.device_key == device;
                if (named || this_device) && stores.tokens.delete_by_id(token.id, Some(user))? {
                    revoked += 1;
                }
            }
            Ok::<_, StoreError>(revoked)
        })
        .await
        .map_err(internal)??;
    tracing::info!(user_id = claims.sub, revoked, "API logout");
    audit(
        &auth,
        AuditKind::Logout,
        claims.sub,
        &client_info(&req),
        "api",
    );
    Ok(HttpResponse::NoContent().finish())
}

async fn me(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let auth = layer(&req)?;
    let claims = bearer_claims(&req, &auth).await?;
    let users = auth.shared.stores.users.clone();
    let sub = claims.sub;
    let user = auth
        .shared
        .run_blocking(move || users.find_by_id(sub))
        .await
        .map_err(internal)??
        .ok_or_else(|| ApiError::unauthorized("token_revoked", "The user is gone."))?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({
            "id": user.id,
            "username": user.username,
            "is_admin": user.is_admin,
            "method": match claims.method {
                SignInMethod::Password => "password",
                SignInMethod::RememberMe => "long_lived_token",
            },
            "tags": claims.tags,
            "device_key": claims.device,
        })))
}
