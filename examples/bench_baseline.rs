//! The benchmark's baseline (`bash bench/layer.sh`): the quickstart's
//! `GET /` handler (`hello <name>` as plain text for a signed-in user)
//! served by actix-session's cookie store alone, with the session cookie
//! set up as the crate sets up its own (`__Host-session`, encrypted,
//! `HttpOnly`, `SameSite=Lax`). The layer's cost is then a ratio of two
//! runs doing the same work. Not a way to sign anyone in: `POST /login`
//! signs in `alice` without a password.
//!
//! ```sh
//! PORT=8081 cargo run --release --example bench_baseline
//! ```

use actix_session::Session;
use actix_web::cookie::Key;
use actix_web::http::header;
use actix_web::{App, HttpResponse, HttpServer, get, post};
use rememberme::RememberMeConfig;

/// `hello <name>` for a signed-in session, else a 303 to the sign-in form
/// (as the crate's `CurrentUser` answers).
#[get("/")]
async fn home(session: Session) -> HttpResponse {
    match session.get::<String>("user") {
        Ok(Some(name)) => HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .body(format!("hello {name}")),
        _ => HttpResponse::SeeOther()
            .insert_header((header::LOCATION, "/login?next=%2F"))
            .finish(),
    }
}

/// Signs `alice` in: a renewed session carrying her name.
#[post("/login")]
async fn login(session: Session) -> HttpResponse {
    session.renew();
    match session.insert("user", "alice") {
        Ok(()) => HttpResponse::SeeOther()
            .insert_header((header::LOCATION, "/"))
            .finish(),
        Err(error) => HttpResponse::InternalServerError().body(error.to_string()),
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080);
    let key = Key::generate();
    HttpServer::new(move || {
        // actix-session's cookie store exactly as the layer sets it up
        // (`__Host-session`, encrypted), without the layer.
        let sessions = rememberme::session_middleware(key.clone(), &RememberMeConfig::default());
        App::new().wrap(sessions).service(home).service(login)
    })
    .bind(("127.0.0.1", port))?
    .run()
    .await
}
