//! The README's wiring in a runnable app: the crate's tables and its ready
//! users table (Argon2id) on one database, the layer around the app, and
//! the app's own pages (`support`: `GET /`, a login form, logout).
//!
//! ```sh
//! cargo run --example quickstart -- --cookie-secure false
//! # http://127.0.0.1:8080/login as alice / alice-password
//! ```

mod support;

use actix_web::{App, HttpServer};
use rememberme::store::UsersTable;
use rememberme::{Database, DieselStore, RememberMe, Stores};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let settings = support::Settings::from_env();
    let db = Database::connect(&settings.database_url, 8).map_err(std::io::Error::other)?;
    let users = UsersTable::open(db.clone()).map_err(std::io::Error::other)?;
    if users
        .find_by_name("alice")
        .map_err(std::io::Error::other)?
        .is_none()
    {
        users
            .create("alice", "alice-password", false)
            .map_err(std::io::Error::other)?;
    }

    // The wiring: the stores, the layer (with its session), one `wrap`.
    let remember = RememberMe::new(
        Stores::new(DieselStore::new(db.clone()), users),
        settings.config(),
    );
    let layer = remember.with_session(support::session_key(&settings)); // your key, from your secrets
    let server_layer = layer.clone();
    HttpServer::new(move || {
        App::new()
            .wrap(server_layer.clone())
            .configure(support::pages)
    })
    .bind(("127.0.0.1", settings.port))?
    .run()
    .await?;
    // A clean exit: queued audit rows written, the pool closed.
    let wait = std::time::Duration::from_secs(10);
    layer.close(wait);
    db.close(wait);
    Ok(())
}
