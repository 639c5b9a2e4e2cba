//! What an access token opens: `POST /api/v1/logout`, `GET /api/v1/me`,
//! and the bearer check itself.

use super::*;

pub(super) fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?;
    Some(token.trim().to_owned())
}

/// Signature, expiry, the user's current auth epoch, and, for a token
/// bound to a long-lived token's series, that the series still stands.
pub(super) async fn verify_bearer(
    auth: &RequestAuth,
    token: &str,
) -> Result<AccessClaims, ApiError> {
    let config = &auth.shared.config();
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
    let (sub, series) = (claims.sub.clone(), claims.series.clone());
    // One query either way: the series' row joined with the epoch, or the
    // epoch alone. A series gone (or another user's) reads as revoked.
    let epoch = auth
        .shared
        .store(move |core| match &series {
            Some(series) => Ok(core
                .stores
                .tokens
                .find_by_series_with_epoch(series)?
                .filter(|(token, _)| token.user_id == sub)
                .map(|(_, epoch)| epoch)),
            None => core.stores.state.auth_epoch(&sub).map(Some),
        })
        .await?;
    if epoch != Some(claims.epoch) {
        return Err(ApiError::unauthorized(
            "token_revoked",
            "The access token was revoked. Sign in again.",
        ));
    }
    Ok(claims)
}

pub(super) async fn bearer_claims(
    req: &HttpRequest,
    auth: &RequestAuth,
) -> Result<AccessClaims, ApiError> {
    let token = bearer(req).ok_or_else(|| {
        ApiError::unauthorized("unauthorized", "Send Authorization: Bearer <access token>.")
    })?;
    verify_bearer(auth, &token).await
}

#[derive(Deserialize, Default)]
pub(super) struct LogoutBody {
    long_lived_token: Option<String>,
}

pub(super) async fn logout(
    req: HttpRequest,
    body: Option<web::Json<LogoutBody>>,
) -> Result<HttpResponse, ApiError> {
    let auth = layer(&req)?;
    let claims = bearer_claims(&req, &auth).await?;
    let body = body.map(web::Json::into_inner).unwrap_or_default();
    let named = body.long_lived_token.map(String::into_bytes);
    if named
        .as_deref()
        .is_some_and(|raw| RememberCookie::decode(raw).is_err())
    {
        return Err(ApiError::bad_request("long_lived_token is malformed."));
    }
    let config = auth.shared.config();
    let client = client_info(&req, config);
    let visit = Visit {
        now: config.now(),
        client: client.clone(),
        cookie: named,
        device: None,
    };
    let (user, own, device) = (
        claims.sub.clone(),
        claims.series.clone(),
        claims.device.clone(),
    );
    let revoked = auth
        .shared
        .store(move |core| {
            let bearer = (own.as_ref(), device.as_deref());
            core.api_logout(&visit, &user, bearer)
        })
        .await?;
    tracing::info!(user_id = %claims.sub, revoked, "API logout");
    audit(&auth, AuditKind::Logout, &claims.sub, &client, "api");
    Ok(HttpResponse::NoContent().finish())
}

pub(super) async fn me(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let auth = layer(&req)?;
    let claims = bearer_claims(&req, &auth).await?;
    let sub = claims.sub.clone();
    let user = auth
        .shared
        .store(move |core| core.stores.users.find_by_id(&sub))
        .await?
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
                SignInMethod::App => "app",
            },
            "tags": claims.tags,
            "device_key": claims.device,
        })))
}
