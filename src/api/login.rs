//! `POST /api/v1/login`: a password for tokens, or a recent password's
//! access token for a long-lived token of its own device.

use super::*;

pub(super) async fn login(
    req: HttpRequest,
    body: web::Json<LoginBody>,
) -> Result<HttpResponse, ApiError> {
    let auth = layer(&req)?;
    // Checked before a token is issued: after it, nothing may fail on the
    // way to the answer that carries it.
    signer(auth.shared.config())?;
    let body = body.into_inner();
    let device_key = valid_device_key(body.device_key.as_deref())?;
    if body.remember_me && device_key.is_none() {
        return Err(ApiError::bad_request("remember_me needs a device_key."));
    }
    let client = client_info(&req, auth.shared.config());
    let shared = auth.shared.clone();
    if let Some(limiter) = &shared.ip_limiter
        && let Some(secs) = ip_throttled(limiter, shared.config(), &req)
    {
        return Err(throttled(secs));
    }
    let (mut input, bearer_claims) = login_input(&req, &auth, &body, device_key.as_deref()).await?;
    let kind = input.kind;
    input.device_key = device_key.clone();
    let config = &shared.config();
    let visit = Visit {
        now: config.now(),
        client: client.clone(),
        cookie: None,
        // The app's device token (the API's device cookie), if it verifies:
        // its failed password checks spend a budget of their own.
        device: body
            .device_token
            .as_deref()
            .and_then(|token| config.device_cookies.verify(token.as_bytes(), config.now())),
    };
    let ran = run_flow(&auth, input, visit).await?;
    login_answer(&auth, &client, ran, (kind, bearer_claims), device_key)
}

/// The answer to a login's flow: tokens, or why not.
fn login_answer(
    auth: &RequestAuth,
    client: &ClientInfo,
    ran: Ran,
    (kind, bearer_claims): (FlowKind, Option<AccessClaims>),
    device_key: Option<String>,
) -> Result<HttpResponse, ApiError> {
    match ran.progress {
        Progress::Complete { user, tags } => {
            let epoch = ran.epoch.ok_or_else(|| {
                ApiError::unauthorized("invalid_credentials", "Wrong username or password.")
            })?;
            let grant = match bearer_claims {
                // Derived from the bearer: its password time, its method,
                // and never a later expiry than it had.
                Some(claims) => Grant {
                    user,
                    epoch,
                    tags,
                    method: claims.method,
                    device: claims.device,
                    pwd_at: claims.pwd_at,
                    not_after: Some(claims.exp),
                    device_token: None,
                },
                None => password_grant(
                    auth,
                    client,
                    (user, epoch, tags),
                    device_key,
                    (ran.password_at, ran.device_cookie),
                ),
            };
            token_response(auth, grant, ran.cookie_change)
        }
        Progress::Failed {
            failure: Failure::Throttled { retry_after_secs },
            ..
        } => Err(throttled(retry_after_secs)),
        Progress::NeedsInput { .. } | Progress::Refused { .. } | Progress::Failed { .. }
            if kind == FlowKind::StepUp =>
        {
            Err(password_required())
        }
        // The password was right (the flow went past it); a step of the
        // app's own wants its input.
        Progress::NeedsInput { step } if !step.is_empty() && step != crate::flow::PASSWORD => {
            Err(input_required(step))
        }
        _ => Err(ApiError::unauthorized(
            "invalid_credentials",
            "Wrong username or password.",
        )),
    }
}

/// What a right password grants (audited here): its tags, its time, and a
/// device token for the app.
fn password_grant(
    auth: &RequestAuth,
    client: &ClientInfo,
    (user, epoch, tags): (UserId, i64, BTreeSet<Tag>),
    device: Option<String>,
    (pwd_at, device_token): (Option<i64>, Option<String>),
) -> Grant {
    audit(auth, AuditKind::PasswordSignIn, &user, client, "api");
    Grant {
        user,
        epoch,
        tags,
        method: SignInMethod::Password,
        device,
        pwd_at,
        not_after: None,
        device_token,
    }
}

/// The flow a login request runs: the login flow with the password typed,
/// or, for a caller with an access token and no password, the step-up
/// flow that only issues a long-lived token (with the bearer's claims).
async fn login_input(
    req: &HttpRequest,
    auth: &RequestAuth,
    body: &LoginBody,
    device_key: Option<&str>,
) -> Result<(FlowInput, Option<AccessClaims>), ApiError> {
    let config = &auth.shared.config();
    match (&body.password, bearer(req)) {
        (Some(password), _) => {
            let username = body
                .username
                .clone()
                .ok_or_else(|| ApiError::bad_request("username is required."))?;
            let mut input = FlowInput::new(FlowKind::Login);
            input.credentials = Some(Credentials {
                username,
                password: password.clone(),
                remember_me: body.remember_me,
                inputs: body.inputs.clone(),
                // Nothing of the client's is a fact.
                verified: Default::default(),
            });
            Ok((input, None))
        }
        // A caller with an access token asks for a long-lived token without
        // typing the password: the step-up flow with the token step
        // activated, allowed only while the password behind the access
        // token is within the re-auth window, and only for the device that
        // typed it (a new token for it replaces its old one): a copied
        // access token must not mint tokens under made-up device keys,
        // which would also push the user's real devices out through the
        // per-user cap. The issuing step checks the password time again.
        (None, Some(token)) if body.remember_me => {
            let claims = verify_bearer(auth, &token).await?;
            if !(claims.tags.contains(&Tag::PASSWORD_VERIFIED)
                && config.password_is_recent(claims.pwd_at, config.now())
                && claims.device.as_deref().is_some()
                && claims.device.as_deref() == device_key)
            {
                return Err(password_required());
            }
            let mut input = FlowInput::new(FlowKind::StepUp);
            input.known = Some((claims.sub.clone(), claims.tags.iter().cloned().collect()));
            input.activate_issue = true;
            input.password_at = claims.pwd_at;
            input.bearer = Some((claims.epoch, claims.series.clone()));
            Ok((input, Some(claims)))
        }
        _ => Err(ApiError::bad_request("username and password are required.")),
    }
}
