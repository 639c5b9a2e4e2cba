//! Signing in a user the app authenticated itself: after sign-up, OAuth, a
//! magic link, a passkey. The crate takes the user's id and the strength
//! of the app's check ([`SignIn::strong`] or [`SignIn::weak`]) and does the
//! rest through the same rules as a password sign-in: a renewed session,
//! the audit row, and a remember-me cookie only for a strong sign-in.
//!
//! The "provider" here is a stand-in: `GET /auth/callback?code=alice-code`
//! plays an OAuth callback whose code the provider confirmed as alice's
//! (strong: the provider made her sign in just now), and
//! `GET /auth/magic?token=alice-link` a magic link (weak: a mailbox may be
//! shared). A real callback also checks OAuth's `state` against the
//! session (login CSRF) before it signs anyone in.
//!
//! ```sh
//! cargo run --example sign_in_by_id -- --cookie-secure false
//! # http://127.0.0.1:8080/auth/callback?code=alice-code&remember_me=on
//! ```

mod support;

use actix_web::{HttpResponse, get, web};
use rememberme::{Auth, AuthError, Database, DieselStore, RememberMe, SignIn, Stores};
use serde::Deserialize;

#[derive(Deserialize)]
struct Callback {
    code: Option<String>,
    token: Option<String>,
    remember_me: Option<String>,
}

/// What the stand-in provider says a code or link proves: whose it is.
fn provider_says(secret: &str) -> Option<&'static str> {
    match secret {
        "alice-code" | "alice-link" => Some("alice"),
        _ => None,
    }
}

async fn sign_in_as(auth: &Auth, name: &str, how: SignIn) -> Result<HttpResponse, AuthError> {
    let users = auth.stores().users.clone();
    let name = name.to_owned();
    let user = web::block(move || users.find_by_username(&name))
        .await
        .map_err(|e| AuthError::Internal(e.to_string()))??
        .ok_or(AuthError::Forbidden)?;
    auth.sign_in(&user.id, how).await?;
    Ok(support::see_other("/"))
}

#[get("/auth/callback")]
async fn callback(auth: Auth, query: web::Query<Callback>) -> Result<HttpResponse, AuthError> {
    let Some(name) = query.code.as_deref().and_then(provider_says) else {
        return Ok(HttpResponse::Unauthorized().body("the provider refused"));
    };
    let how = SignIn::strong("oauth stand-in").remember_me(query.remember_me.is_some());
    sign_in_as(&auth, name, how).await
}

#[get("/auth/magic")]
async fn magic(auth: Auth, query: web::Query<Callback>) -> Result<HttpResponse, AuthError> {
    let Some(name) = query.token.as_deref().and_then(provider_says) else {
        return Ok(HttpResponse::Unauthorized().body("the link is not valid"));
    };
    // Asking for "Keep me logged in" here changes nothing: a weak sign-in
    // never gets a remember-me token.
    let how = SignIn::weak("magic link stand-in").remember_me(query.remember_me.is_some());
    sign_in_as(&auth, name, how).await
}

/// A page that needs a strong session: a magic-link session is sent to
/// step-up (`/login/step-up`, which this example does not serve; the
/// `pages` feature's `rememberme::pages::configure` has a step-up page).
#[get("/settings")]
async fn settings_page(rememberme::StrongAuth(user): rememberme::StrongAuth) -> String {
    format!("settings of {}", user.username)
}

fn routes(cfg: &mut web::ServiceConfig) {
    support::pages(cfg);
    cfg.service(callback).service(magic).service(settings_page);
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let settings = support::Settings::from_env();
    let db = Database::connect(&settings.database_url, 8).map_err(std::io::Error::other)?;
    let (users, _) = support::users_with_alice(&db)?;
    let stores = Stores::new(DieselStore::new(db.clone()), users);
    let layer =
        RememberMe::new(stores, settings.config()).with_session(support::session_key(&settings));
    support::serve(&settings, layer, db, routes).await
}
