//! An app that already has users: its own `users` table with UUID ids and
//! bcrypt hashes, which the crate never touches. The app plugs it in with a
//! `UserDirectory` of about forty lines; the crate keeps its own state (the
//! tokens, the auth epochs, the audit log) in its own tables beside it.
//!
//! SQLite only (the default `DATABASE_URL`), to keep the app's side short:
//! the crate's side runs on PostgreSQL unchanged.
//!
//! ```sh
//! cargo run --example existing_users -- --cookie-secure false
//! # http://127.0.0.1:8080/login as alice / alice-password; /account/devices
//! # lists the browsers that keep her signed in
//! ```

mod support;

use actix_web::web;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, Pool};
use rememberme::store::StoreError;
use rememberme::{Database, DieselStore, RememberMe, Stores, User, UserDirectory, UserId};

// The app's own table, as it was before the crate came.
diesel::table! {
    users (id) {
        id -> Text,
        email -> Text,
        bcrypt_hash -> Text,
        is_staff -> Bool,
    }
}

/// The app's users, as the crate sees them.
struct AppUsers {
    pool: Pool<ConnectionManager<SqliteConnection>>,
    /// A bcrypt hash at the app's cost, checked for unknown names.
    dummy: String,
}

fn query_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Query(e.to_string())
}

impl AppUsers {
    fn find(
        &self,
        query: users::BoxedQuery<'_, diesel::sqlite::Sqlite>,
    ) -> Result<Option<User>, StoreError> {
        let mut conn = self
            .pool
            .get()
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let row = query
            .select((users::id, users::email, users::bcrypt_hash, users::is_staff))
            .first::<(String, String, String, bool)>(&mut conn)
            .optional()
            .map_err(query_error)?;
        Ok(row
            .map(|(id, email, hash, staff)| User::new(id, email).password_hash(hash).admin(staff)))
    }
}

impl UserDirectory for AppUsers {
    // An exact match on the address: a lookup that ignored case would say
    // so in `canonical_username`, so that failed checks of every spelling
    // count against one budget.
    fn find_by_username(&self, username: &str) -> Result<Option<User>, StoreError> {
        self.find(
            users::table
                .filter(users::email.eq(username.to_owned()))
                .into_boxed(),
        )
    }

    fn find_by_id(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        self.find(
            users::table
                .filter(users::id.eq(id.as_str().to_owned()))
                .into_boxed(),
        )
    }

    fn verify_password(&self, hash: &str, password: &str) -> bool {
        bcrypt::verify(password, hash).unwrap_or(false)
    }

    fn dummy_hash(&self) -> &str {
        &self.dummy
    }
}

/// The app's set-up: its table, and alice (id a UUID, hash bcrypt).
fn app_users(database_url: &str) -> Result<AppUsers, Box<dyn std::error::Error>> {
    let path = database_url
        .strip_prefix("sqlite://")
        .unwrap_or(database_url);
    let pool = Pool::builder()
        .max_size(4)
        .build(ConnectionManager::<SqliteConnection>::new(path))?;
    let mut conn = pool.get()?;
    diesel::sql_query(
        "CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY NOT NULL, \
         email TEXT NOT NULL UNIQUE, bcrypt_hash TEXT NOT NULL, is_staff BOOLEAN NOT NULL)",
    )
    .execute(&mut conn)?;
    let cost = 10;
    diesel::insert_or_ignore_into(users::table)
        .values((
            users::id.eq(uuid::Uuid::new_v4().to_string()),
            users::email.eq("alice"),
            users::bcrypt_hash.eq(bcrypt::hash("alice-password", cost)?),
            users::is_staff.eq(false),
        ))
        .execute(&mut conn)?;
    let dummy = bcrypt::hash(uuid::Uuid::new_v4().to_string(), cost)?;
    Ok(AppUsers {
        pool: pool.clone(),
        dummy,
    })
}

/// The app's home page, and the crate's pages mounted in one line: the
/// sign-in form, sign-out, and the devices page (guarded by the crate's
/// extractors, with the app's users behind them).
fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(support::home)
        .configure(rememberme::pages::configure);
}

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let settings = support::Settings::from_env();
    let users = app_users(&settings.database_url)?;
    // The crate's own tables, beside the app's, on the same file.
    let db = Database::connect(&settings.database_url, 8)?;
    let stores = Stores::new(DieselStore::new(db.clone()), users);
    let layer =
        RememberMe::new(stores, settings.config()).with_session(support::session_key(&settings));
    Ok(support::serve(&settings, layer, db, routes).await?)
}
