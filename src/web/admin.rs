//! Admin pages: every remember-me token, and the audit log.

use std::collections::HashMap;

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, get, post, web};
use askama::Template;
use serde::Deserialize;

use super::account::CsrfOnly;
use super::view::{PAGE_SIZE, back_with, device, html, take_flash, when};
use crate::extract::AdminAuth;
use crate::store::{AuditKind, StoreError, Stores, UserId};
use crate::{Auth, AuthError, CsrfForm};

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(tokens)
        .service(revoke_token)
        .service(revoke_all)
        .service(audit);
}

/// One remember-me token, as the admin sees it.
#[derive(Debug)]
#[non_exhaustive]
pub struct TokenRow {
    /// The token's id (`POST /admin/tokens/{id}/revoke`).
    pub id: i64,
    /// Its user's name.
    pub username: String,
    /// A short name of the device.
    pub device: String,
    /// The address it was last used from.
    pub ip: String,
    /// When it was issued (UTC).
    pub created: String,
    /// When it was last used (UTC).
    pub last_used: String,
    /// When it expires (UTC).
    pub expires: String,
    /// How it was issued.
    pub issued: String,
}

/// What the admin token list shows.
#[derive(Template, Debug)]
#[template(path = "admin_tokens.html")]
#[non_exhaustive]
pub struct TokensPage {
    /// One page of tokens.
    pub rows: Vec<TokenRow>,
    /// The username filtered on (empty: all).
    pub filter: String,
    /// The forms' hidden `csrf_token` field.
    pub csrf_token: String,
    /// The result of the last action, shown once.
    pub flash: Option<String>,
    /// Whether this is a later page (link back to the newest).
    pub later_page: bool,
    /// The `before` of the older page (its tokens' ids are below it), if
    /// there is one.
    pub older_before: Option<i64>,
}

#[derive(Deserialize)]
struct TokensQuery {
    user: Option<String>,
    /// Keyset pagination: tokens with a smaller id (older) than this.
    before: Option<i64>,
}

#[get("/admin/tokens")]
async fn tokens(
    AdminAuth(_): AdminAuth,
    auth: Auth,
    session: Session,
    query: web::Query<TokensQuery>,
) -> Result<HttpResponse, AuthError> {
    let filter = query.user.clone().unwrap_or_default().trim().to_owned();
    let before = query.before;
    let name = (!filter.is_empty()).then(|| filter.clone());
    // One row more than a page tells whether an older page exists.
    let (listings, names) = auth
        .on_store(move |stores| {
            let user = match name {
                Some(name) => match stores.users.find_by_username(&name)? {
                    Some(user) => Some(user.id),
                    None => return Ok((Vec::new(), HashMap::new())),
                },
                None => None,
            };
            let listings = stores.tokens.list(user.as_ref(), before, PAGE_SIZE + 1)?;
            let names = usernames(stores, listings.iter().map(|t| &t.user_id))?;
            Ok::<_, StoreError>((listings, names))
        })
        .await?;
    let listings: Vec<_> = listings.into_iter().take(PAGE_SIZE as usize + 1).collect();
    let older_before = (listings.len() > PAGE_SIZE as usize)
        .then(|| listings.get(PAGE_SIZE as usize - 1).map(|t| t.id))
        .flatten();
    let rows = listings
        .into_iter()
        .take(PAGE_SIZE as usize)
        .map(|token| TokenRow {
            id: token.id,
            username: display_name(&names, Some(&token.user_id)),
            device: device(token.user_agent.as_deref()),
            ip: token.ip.unwrap_or_default(),
            created: when(token.created_at),
            last_used: when(token.last_used_at),
            expires: when(token.expires_at),
            issued: match &token.device_key {
                Some(device) => format!("App token (device {device})"),
                None => "Browser cookie (Keep me logged in)".to_owned(),
            },
        })
        .collect();
    html(
        &auth,
        StatusCode::OK,
        &TokensPage {
            rows,
            filter,
            csrf_token: auth.csrf_token(),
            flash: take_flash(&session),
            later_page: before.is_some(),
            older_before,
        },
    )
}

#[post("/admin/tokens/{id}/revoke")]
async fn revoke_token(
    AdminAuth(_): AdminAuth,
    auth: Auth,
    session: Session,
    id: web::Path<i64>,
    _: CsrfForm<CsrfOnly>,
) -> Result<HttpResponse, AuthError> {
    let message = if auth.revoke_token(id.into_inner(), None).await? {
        "Token revoked."
    } else {
        "That token was already gone."
    };
    Ok(back_with(&session, "/admin/tokens", message))
}

#[derive(Deserialize)]
struct RevokeAllForm {
    #[serde(default)]
    username: String,
}

#[post("/admin/users/revoke-all")]
async fn revoke_all(
    AdminAuth(_): AdminAuth,
    auth: Auth,
    session: Session,
    CsrfForm(form): CsrfForm<RevokeAllForm>,
) -> Result<HttpResponse, AuthError> {
    let name = form.username.clone();
    let user = auth
        .on_store(move |stores| stores.users.find_by_username(&name))
        .await?
        .ok_or(AuthError::NotFound)?;
    let n = auth.revoke_all(user.id.clone()).await?;
    if auth.user().is_none() {
        // The admin revoked their own sessions.
        return Ok(super::view::see_other("/login"));
    }
    Ok(back_with(
        &session,
        "/admin/tokens",
        format!(
            "Signed {} out everywhere: {n} token(s) revoked, open sessions end at their next check.",
            user.username
        ),
    ))
}

/// One audit event.
#[derive(Debug)]
#[non_exhaustive]
pub struct AuditRow {
    /// When (UTC).
    pub at: String,
    /// What (`password_sign_in`, ...).
    pub kind: String,
    /// Whose.
    pub username: String,
    /// From where.
    pub ip: String,
    /// With what.
    pub user_agent: String,
    /// Free text.
    pub detail: String,
}

/// What the admin audit log shows.
#[derive(Template, Debug)]
#[template(path = "admin_audit.html")]
#[non_exhaustive]
pub struct AuditPage {
    /// One page of events.
    pub rows: Vec<AuditRow>,
    /// Every event kind, and whether it is the one filtered on.
    pub kinds: Vec<(&'static str, bool)>,
    /// The kind filtered on (empty: all).
    pub kind: String,
    /// The username filtered on (empty: all).
    pub user: String,
    /// The forms' hidden `csrf_token` field.
    pub csrf_token: String,
    /// Whether this is a later page (link back to the newest).
    pub later_page: bool,
    /// The `(at, id)` the older page starts before, if there is one.
    pub older_before: Option<(i64, i64)>,
}

#[derive(Deserialize)]
struct AuditQuery {
    kind: Option<String>,
    user: Option<String>,
    /// Keyset pagination: events older than this `at` (with `before_id`).
    before_at: Option<i64>,
    before_id: Option<i64>,
}

#[get("/admin/audit")]
async fn audit(
    AdminAuth(_): AdminAuth,
    auth: Auth,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, AuthError> {
    let kind = query.kind.clone().unwrap_or_default();
    let user = query.user.clone().unwrap_or_default().trim().to_owned();
    let before = query.before_at.zip(query.before_id);
    let (k, u) = (
        (!kind.is_empty()).then(|| kind.clone()),
        (!user.is_empty()).then(|| user.clone()),
    );
    let (events, names) = auth
        .on_store(move |stores| {
            let user = match u {
                Some(name) => match stores.users.find_by_username(&name)? {
                    Some(user) => Some(user.id),
                    None => return Ok((Vec::new(), HashMap::new())),
                },
                None => None,
            };
            let events = stores
                .audit
                .list(k.as_deref(), user.as_ref(), before, PAGE_SIZE + 1)?;
            let names = usernames(stores, events.iter().filter_map(|e| e.user_id.as_ref()))?;
            Ok::<_, StoreError>((events, names))
        })
        .await?;
    let older_before = (events.len() > PAGE_SIZE as usize)
        .then(|| events.get(PAGE_SIZE as usize - 1).map(|e| (e.at, e.id)))
        .flatten();
    let rows = events
        .into_iter()
        .take(PAGE_SIZE as usize)
        .map(|e| AuditRow {
            at: when(e.at),
            kind: e.kind,
            username: display_name(&names, e.user_id.as_ref()),
            ip: e.ip.unwrap_or_default(),
            user_agent: e.user_agent.unwrap_or_default(),
            detail: e.detail,
        })
        .collect();
    html(
        &auth,
        StatusCode::OK,
        &AuditPage {
            rows,
            kinds: AuditKind::ALL
                .iter()
                .map(|k| (k.as_str(), k.as_str() == kind))
                .collect(),
            kind,
            user,
            csrf_token: auth.csrf_token(),
            later_page: before.is_some(),
            older_before,
        },
    )
}

/// The names of the users behind `ids`, from the app's directory (at most a
/// page of distinct ids). Blocking.
fn usernames<'a>(
    stores: &Stores,
    ids: impl Iterator<Item = &'a UserId>,
) -> Result<HashMap<UserId, String>, StoreError> {
    let mut names = HashMap::new();
    for id in ids {
        if !names.contains_key(id) {
            let name = stores.users.find_by_id(id)?.map(|u| u.username);
            names.insert(id.clone(), name.unwrap_or_default());
        }
    }
    Ok(names)
}

/// A user's name for a listing: "—" for none, the id for a user the app no
/// longer knows.
fn display_name(names: &HashMap<UserId, String>, id: Option<&UserId>) -> String {
    match id {
        None => "—".to_owned(),
        Some(id) => match names.get(id) {
            Some(name) if !name.is_empty() => name.clone(),
            _ => format!("#{id} (gone)"),
        },
    }
}
