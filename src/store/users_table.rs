//! [`UsersTable`]: a ready [`UserDirectory`] over a `users` table of its
//! own with Argon2id hashes, for a site that has no users yet (the demo
//! site uses it). Behind the `users-table` feature.

use diesel::prelude::*;
use diesel_migrations::embed_migrations;

use super::DieselStore;
use super::conn::{AnyConnection, Database, DatabaseError, MigrationSet, Migrations, per_backend};
use super::{StoreError, User, UserDirectory, UserId};

const MIGRATIONS: Migrations = Migrations {
    #[cfg(feature = "sqlite")]
    sqlite: MigrationSet {
        current: embed_migrations!("migrations/users_table/sqlite"),
        v0_1: None,
    },
    #[cfg(feature = "postgres")]
    postgres: MigrationSet {
        current: embed_migrations!("migrations/users_table/postgres"),
        v0_1: None,
    },
};

diesel::table! {
    users (id) {
        id -> Int8,
        username -> Text,
        password_hash -> Text,
        is_admin -> Bool,
        created_at -> Int8,
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = users)]
struct UserRow {
    id: i64,
    username: String,
    password_hash: String,
    is_admin: bool,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        User::new(row.id, row.username)
            .admin(row.is_admin)
            .password_hash(row.password_hash)
    }
}

/// Users in a `users` table (integer ids, unique names, Argon2id hashes),
/// on the same [`Database`] as the crate's own tables.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use rememberme::store::{Database, DieselStore, Stores, UsersTable};
///
/// let db = Database::connect("sqlite://app.db", 8)?;
/// let users = UsersTable::open(db.clone())?; // creates the table if missing
/// if users.find_by_name("alice")?.is_none() {
///     users.create("alice", "alice-password", false)?;
/// }
/// let stores = Stores::new(DieselStore::new(db), users);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct UsersTable {
    store: DieselStore,
}

impl UsersTable {
    /// The table on `db`, created (or brought up to date) if needed.
    /// Blocking.
    pub fn open(db: Database) -> Result<Self, DatabaseError> {
        db.run_migrations(MIGRATIONS)?;
        Ok(Self {
            store: DieselStore::new(db),
        })
    }

    /// Creates a user with `password` (hashed with Argon2id here, on the
    /// crate's password threads: tens of milliseconds). Returns the new
    /// id; [`StoreError::AlreadyExists`] if the name is taken. Blocking.
    pub fn create(
        &self,
        username: &str,
        password: &str,
        is_admin: bool,
    ) -> Result<UserId, StoreError> {
        self.create_with_hash(
            username,
            &crate::password::hash_password(password),
            is_admin,
        )
    }

    /// Creates a user whose Argon2 PHC hash is already made (users moved
    /// from elsewhere, or many users sharing one test password). Returns
    /// the new id; [`StoreError::AlreadyExists`] if the name is taken.
    /// Blocking.
    pub fn create_with_hash(
        &self,
        username: &str,
        hash: &str,
        is_admin: bool,
    ) -> Result<UserId, StoreError> {
        let now = crate::clock::system_ms().div_euclid(1000);
        self.store
            .with_write_conn(|conn| {
                conn.transaction(|conn| {
                    diesel::insert_into(users::table)
                        .values((
                            users::username.eq(username),
                            users::password_hash.eq(hash),
                            users::is_admin.eq(is_admin),
                            users::created_at.eq(now),
                        ))
                        .execute(conn)?;
                    users::table
                        .filter(users::username.eq(username))
                        .select(users::id)
                        .get_result::<i64>(conn)
                })
            })
            .map(UserId::from)
    }

    /// The user named `username`, if any. Blocking.
    pub fn find_by_name(&self, username: &str) -> Result<Option<User>, StoreError> {
        self.store
            .with_conn(|conn| {
                users::table
                    .filter(users::username.eq(username))
                    .select(UserRow::as_select())
                    .get_result(conn)
                    .optional()
            })
            .map(|row| row.map(User::from))
    }

    /// Grants or withdraws admin rights; open sessions see the change at
    /// their next check. Returns whether the user exists. Blocking.
    pub fn set_admin(&self, id: &UserId, is_admin: bool) -> Result<bool, StoreError> {
        let Some(id) = id.as_i64() else {
            return Ok(false);
        };
        self.store
            .with_write_conn(|conn| {
                diesel::update(users::table.find(id))
                    .set(users::is_admin.eq(is_admin))
                    .execute(conn)
            })
            .map(|n| n == 1)
    }
}

/// The row of user `key`, if any (a cached statement).
fn row_of(conn: &mut AnyConnection, key: i64) -> QueryResult<Option<UserRow>> {
    per_backend!(conn, |c| users::table
        .find(key)
        .select(UserRow::as_select())
        .get_result(c)
        .optional())
}

impl UserDirectory for UsersTable {
    fn find_by_username(&self, username: &str) -> Result<Option<User>, StoreError> {
        self.find_by_name(username)
    }

    fn find_by_id(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        // An id that is not one of this table's (the placeholder a sign-in
        // reads for an unknown name) runs the same query, its answer
        // dropped: an unknown name costs the statements a known one does,
        // so their timing tells nothing.
        let (key, ours) = match id.as_i64() {
            Some(key) => (key, true),
            None => (i64::MIN, false),
        };
        self.store
            .with_conn(|conn| row_of(conn, key))
            .map(|row| row.filter(|_| ours).map(User::from))
    }

    /// One query for the lot on PostgreSQL (`= ANY($1)`: one round trip).
    /// SQLite runs in the process, with no round trip to save: there one
    /// cached statement per id, on one connection, costs less than
    /// preparing an `IN (…)` of a new length each time.
    fn find_by_ids(&self, ids: &[UserId]) -> Result<Vec<Option<User>>, StoreError> {
        let keys: Vec<i64> = ids.iter().filter_map(UserId::as_i64).collect();
        let rows: Vec<UserRow> = if keys.is_empty() {
            Vec::new()
        } else {
            self.store.with_conn(|conn| {
                if conn.is_postgres() {
                    return per_backend!(conn, |c| users::table
                        .filter(users::id.eq_any(&keys))
                        .select(UserRow::as_select())
                        .load(c));
                }
                keys.iter()
                    .filter_map(|&key| row_of(conn, key).transpose())
                    .collect()
            })?
        };
        let found: std::collections::HashMap<i64, User> = rows
            .into_iter()
            .map(|row| (row.id, User::from(row)))
            .collect();
        // In the order asked; an id asked twice gets its user twice.
        Ok(ids
            .iter()
            .map(|id| id.as_i64().and_then(|key| found.get(&key).cloned()))
            .collect())
    }

    fn sets_passwords(&self) -> bool {
        true
    }

    fn set_password(&self, id: &UserId, password: &str) -> Result<(), StoreError> {
        // A user this table does not hold (an id it never issued, or a row
        // deleted meanwhile): `Ok` would report a password stored that was
        // not.
        let missing = || StoreError::Query(format!("no user with id {id}"));
        let key = id.as_i64().ok_or_else(missing)?;
        let hash = crate::password::hash_password(password);
        let changed = self.store.with_write_conn(|conn| {
            diesel::update(users::table.find(key))
                .set(users::password_hash.eq(&hash))
                .execute(conn)
        })?;
        if changed == 0 {
            return Err(missing());
        }
        Ok(())
    }
}
