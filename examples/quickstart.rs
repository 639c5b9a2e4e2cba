//! The README's wiring in a runnable app: the crate's tables and its ready
//! users table (Argon2id) on one database, the layer around the app, its
//! purge task, and the app's own pages (`support`: `GET /`, a login form,
//! logout).
//!
//! ```sh
//! cargo run --example quickstart -- --cookie-secure false
//! # http://127.0.0.1:8080/login as alice / alice-password
//! ```

mod support;

use std::time::Duration;

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
    // Hourly, the first at once: expired tokens, stale failure counters and
    // audit rows older than 90 days.
    let (hour, days_90) = (Duration::from_secs(3600), Duration::from_secs(90 * 86_400));
    actix_web::rt::spawn(layer.purge_every(hour, days_90));
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
    let wait = Duration::from_secs(10);
    layer.close(wait);
    db.close(wait);
    Ok(())
}
