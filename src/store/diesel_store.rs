//! The Diesel implementation of the stores: one code path for both backends.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use super::conn::{AnyConnection, Database};
use super::models::{AuditRow, NewAuditRow, NewTokenRow, NewUserRow, TokenRow, UserRow};
use super::schema::{audit_events, remember_tokens, users};
use super::{
    AuditEvent, AuditLog, NewAuditEvent, NewToken, NewUser, StoreError, TokenListing, TokenRecord,
    TokenStore, User, UserId, UserStore,
};
use crate::token::SecretHash;

/// [`TokenStore`], [`UserStore`] and [`AuditLog`] over a [`Database`].
#[derive(Debug, Clone)]
pub struct DieselStore {
    db: Database,
}

impl DieselStore {
    /// Stores over this database.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// The database.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Runs `f`, which writes, on a pooled connection: on SQLite, after
    /// taking the process's write lock (see [`Database::write_lock`]).
    fn with_write_conn<T>(
        &self,
        f: impl FnOnce(&mut AnyConnection) -> Result<T, DieselError>,
    ) -> Result<T, StoreError> {
        let _writer = self.db.write_lock()?;
        self.with_conn(f)
    }

    /// Runs `f` on a pooled connection. A connection whose statement failed
    /// for a reason other than the data (a unique key, say) is discarded.
    fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut AnyConnection) -> Result<T, DieselError>,
    ) -> Result<T, StoreError> {
        let mut pooled = self.db.get()?;
        f(&mut pooled.conn).map_err(|error| {
            let error = map_error(error);
            if matches!(error, StoreError::Unavailable(_) | StoreError::Query(_)) {
                pooled.failed = true;
            }
            error
        })
    }
}

fn map_error(error: DieselError) -> StoreError {
    match error {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
            StoreError::AlreadyExists
        }
        DieselError::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            info,
        ) => StoreError::Unavailable(info.message().to_owned()),
        other => StoreError::Query(other.to_string()),
    }
}

fn hash(bytes: Vec<u8>) -> Result<SecretHash, DieselError> {
    SecretHash::from_slice(&bytes)
        .ok_or_else(|| DieselError::DeserializationError("stored hash is not 32 bytes".into()))
}

impl TryFrom<TokenRow> for TokenRecord {
    type Error = DieselError;

    fn try_from(row: TokenRow) -> Result<Self, DieselError> {
        Ok(TokenRecord {
            id: row.id,
            series_hash: hash(row.series_hash)?,
            token_hash: hash(row.token_hash)?,
            previous_token_hash: row.previous_token_hash.map(hash).transpose()?,
            rotated_at: row.rotated_at,
            user_id: row.user_id,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
            expires_at: row.expires_at,
            user_agent: row.user_agent,
            ip: row.ip,
            device_key: row.device_key,
        })
    }
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        User {
            id: row.id,
            username: row.username,
            password_hash: row.password_hash,
            is_admin: row.is_admin,
            auth_epoch: row.auth_epoch,
            created_at: row.created_at,
            failed_logins: row.failed_logins,
            last_failed_at: row.last_failed_at,
        }
    }
}

// Lookups by a unique key use `get_result`, not `first`: `first` binds its
// `LIMIT 1` as a parameter, and SQLite (3.47+) marks a statement whose LIMIT
// is a bound parameter to be re-prepared whenever it is bound again, so
// every such lookup parsed and planned its SQL anew (a third of a
// re-authentication's time on SQLite). A unique key returns one row anyway.
impl TokenStore for DieselStore {
    fn find_by_series(&self, series: &SecretHash) -> Result<Option<TokenRecord>, StoreError> {
        self.with_conn(|conn| {
            remember_tokens::table
                .filter(remember_tokens::series_hash.eq(series.as_bytes().as_slice()))
                .select(TokenRow::as_select())
                .get_result(conn)
                .optional()?
                .map(TokenRecord::try_from)
                .transpose()
        })
    }

    fn find_by_series_with_owner(
        &self,
        series: &SecretHash,
    ) -> Result<Option<(TokenRecord, User)>, StoreError> {
        self.with_conn(|conn| {
            remember_tokens::table
                .inner_join(users::table)
                .filter(remember_tokens::series_hash.eq(series.as_bytes().as_slice()))
                .select((TokenRow::as_select(), UserRow::as_select()))
                .get_result::<(TokenRow, UserRow)>(conn)
                .optional()?
                .map(|(token, user)| Ok((TokenRecord::try_from(token)?, User::from(user))))
                .transpose()
        })
    }

    fn rotate(
        &self,
        id: i64,
        expected: &SecretHash,
        new_token: &SecretHash,
        now: i64,
        expires_at: Option<i64>,
    ) -> Result<bool, StoreError> {
        self.with_write_conn(|conn| {
            let (expected, new) = (
                expected.as_bytes().as_slice(),
                new_token.as_bytes().as_slice(),
            );
            let updated = match expires_at {
                Some(expires_at) => Rotate::<true> {
                    id,
                    expected,
                    new,
                    now,
                    expires_at,
                }
                .execute(conn)?,
                None => Rotate::<false> {
                    id,
                    expected,
                    new,
                    now,
                    expires_at: 0,
                }
                .execute(conn)?,
            };
            Ok(updated == 1)
        })
    }

    fn insert(&self, token: NewToken<'_>, max_per_user: u32) -> Result<i64, StoreError> {
        use remember_tokens::dsl as t;
        self.with_write_conn(|conn| {
            conn.transaction(|conn| {
                // Serialize the user's concurrent sign-ins so the cap below
                // holds exactly. PostgreSQL needs a row lock (READ COMMITTED
                // lets two inserts each trim only the rows they saw); SQLite
                // already serializes writers on the database lock.
                if let AnyConnection::Postgresql(pg) = conn {
                    users::table
                        .find(token.user_id)
                        .select(users::id)
                        .for_update()
                        .get_result::<i64>(pg)?;
                }
                // One token per app device: a new one replaces the old.
                if let Some(device) = token.device_key {
                    diesel::delete(
                        t::remember_tokens
                            .filter(t::user_id.eq(token.user_id))
                            .filter(t::device_key.eq(device)),
                    )
                    .execute(conn)?;
                }
                diesel::insert_into(t::remember_tokens)
                    .values(NewTokenRow {
                        series_hash: token.series_hash.as_bytes(),
                        token_hash: token.token_hash.as_bytes(),
                        user_id: token.user_id,
                        created_at: token.now,
                        last_used_at: token.now,
                        expires_at: token.expires_at,
                        user_agent: token.user_agent,
                        ip: token.ip,
                        device_key: token.device_key,
                    })
                    .execute(conn)?;
                // Bounded growth: beyond the limit the least recently used go.
                let ids: Vec<i64> = t::remember_tokens
                    .filter(t::user_id.eq(token.user_id))
                    .order((t::last_used_at.desc(), t::id.desc()))
                    .select(t::id)
                    .load(conn)?;
                let excess: Vec<i64> = ids.iter().skip(max_per_user as usize).copied().collect();
                if !excess.is_empty() {
                    diesel::delete(t::remember_tokens.filter(t::id.eq_any(excess)))
                        .execute(conn)?;
                }
                t::remember_tokens
                    .filter(t::series_hash.eq(token.series_hash.as_bytes().as_slice()))
                    .select(t::id)
                    .get_result(conn)
            })
        })
    }

    fn find_owner(&self, id: i64) -> Result<Option<UserId>, StoreError> {
        use remember_tokens::dsl as t;
        self.with_conn(|conn| {
            t::remember_tokens
                .find(id)
                .select(t::user_id)
                .get_result(conn)
                .optional()
        })
    }

    fn delete_series(&self, series: &SecretHash) -> Result<bool, StoreError> {
        use remember_tokens::dsl as t;
        self.with_write_conn(|conn| {
            let n = diesel::delete(
                t::remember_tokens.filter(t::series_hash.eq(series.as_bytes().as_slice())),
            )
            .execute(conn)?;
            Ok(n > 0)
        })
    }

    fn delete_by_id(&self, id: i64, owner: Option<UserId>) -> Result<bool, StoreError> {
        use remember_tokens::dsl as t;
        self.with_write_conn(|conn| {
            let n = match owner {
                Some(owner) => diesel::delete(
                    t::remember_tokens
                        .filter(t::id.eq(id))
                        .filter(t::user_id.eq(owner)),
                )
                .execute(conn)?,
                None => diesel::delete(t::remember_tokens.filter(t::id.eq(id))).execute(conn)?,
            };
            Ok(n > 0)
        })
    }

    fn delete_all_for_user(&self, user: UserId) -> Result<usize, StoreError> {
        use remember_tokens::dsl as t;
        self.with_write_conn(|conn| {
            diesel::delete(t::remember_tokens.filter(t::user_id.eq(user))).execute(conn)
        })
    }

    fn list_for_user(&self, user: UserId) -> Result<Vec<TokenRecord>, StoreError> {
        use remember_tokens::dsl as t;
        self.with_conn(|conn| {
            t::remember_tokens
                .filter(t::user_id.eq(user))
                .order((t::last_used_at.desc(), t::id.desc()))
                .select(TokenRow::as_select())
                .load(conn)?
                .into_iter()
                .map(TokenRecord::try_from)
                .collect()
        })
    }

    fn list(
        &self,
        username: Option<&str>,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<TokenListing>, StoreError> {
        self.with_conn(|conn| {
            let mut query = remember_tokens::table
                .inner_join(users::table)
                .order((
                    remember_tokens::created_at.desc(),
                    remember_tokens::id.desc(),
                ))
                .select((TokenRow::as_select(), users::username))
                .offset(offset)
                .limit(limit)
                .into_boxed();
            if let Some(name) = username {
                query = query.filter(users::username.eq(name));
            }
            query
                .load::<(TokenRow, String)>(conn)?
                .into_iter()
                .map(|(row, username)| {
                    Ok(TokenListing {
                        token: row.try_into()?,
                        username,
                    })
                })
                .collect()
        })
    }

    fn purge_expired(&self, now: i64) -> Result<usize, StoreError> {
        use remember_tokens::dsl as t;
        self.with_write_conn(|conn| {
            diesel::delete(t::remember_tokens.filter(t::expires_at.le(now))).execute(conn)
        })
    }
}

impl UserStore for DieselStore {
    fn find_by_username(&self, username: &str) -> Result<Option<User>, StoreError> {
        self.with_conn(|conn| {
            users::table
                .filter(users::username.eq(username))
                .select(UserRow::as_select())
                .get_result(conn)
                .optional()
                .map(|row| row.map(User::from))
        })
    }

    fn find_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
        self.with_conn(|conn| {
            users::table
                .find(id)
                .select(UserRow::as_select())
                .get_result(conn)
                .optional()
                .map(|row| row.map(User::from))
        })
    }

    fn create(&self, user: NewUser<'_>) -> Result<UserId, StoreError> {
        self.with_write_conn(|conn| {
            conn.transaction(|conn| {
                diesel::insert_into(users::table)
                    .values(NewUserRow {
                        username: user.username,
                        password_hash: user.password_hash,
                        is_admin: user.is_admin,
                        auth_epoch: 0,
                        created_at: user.now,
                        failed_logins: 0,
                    })
                    .execute(conn)?;
                users::table
                    .filter(users::username.eq(user.username))
                    .select(users::id)
                    .get_result(conn)
            })
        })
    }

    fn auth_epoch(&self, id: UserId) -> Result<Option<i64>, StoreError> {
        self.with_conn(|conn| {
            users::table
                .find(id)
                .select(users::auth_epoch)
                .get_result(conn)
                .optional()
        })
    }

    fn bump_epoch(&self, id: UserId) -> Result<(), StoreError> {
        self.with_write_conn(|conn| {
            diesel::update(users::table.find(id))
                .set(users::auth_epoch.eq(users::auth_epoch + 1))
                .execute(conn)
                .map(drop)
        })
    }

    fn bump_epoch_from(&self, id: UserId, expected: i64) -> Result<Option<i64>, StoreError> {
        self.with_write_conn(|conn| {
            let n = diesel::update(users::table.find(id).filter(users::auth_epoch.eq(expected)))
                .set(users::auth_epoch.eq(users::auth_epoch + 1))
                .execute(conn)?;
            Ok((n == 1).then_some(expected + 1))
        })
    }

    fn set_password_hash(&self, id: UserId, hash: &str) -> Result<(), StoreError> {
        self.with_write_conn(|conn| {
            diesel::update(users::table.find(id))
                .set(users::password_hash.eq(hash))
                .execute(conn)
                .map(drop)
        })
    }

    fn record_failed_login(&self, id: UserId, now: i64) -> Result<(), StoreError> {
        self.with_write_conn(|conn| {
            diesel::update(users::table.find(id))
                .set((
                    users::failed_logins.eq(users::failed_logins + 1),
                    users::last_failed_at.eq(Some(now)),
                ))
                .execute(conn)
                .map(drop)
        })
    }

    fn reset_failed_logins(&self, id: UserId) -> Result<(), StoreError> {
        self.with_write_conn(|conn| {
            diesel::update(users::table.find(id).filter(users::failed_logins.ne(0)))
                .set(users::failed_logins.eq(0))
                .execute(conn)
                .map(drop)
        })
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.with_conn(|conn| conn.batch_execute("SELECT 1"))
    }
}

/// The rotation: one `UPDATE … WHERE id = ? AND token_hash = ?`, a
/// compare-and-swap (of two racing rotations only one matches), the replaced
/// hash kept as `previous_token_hash`. With `NEW_EXPIRY` false the expiry
/// stays out of the SET list, so its index entry is not rewritten (and on
/// PostgreSQL the update can stay on its page, a HOT update).
///
/// Written as a query of its own because Diesel marks every
/// `UpdateStatement` as not cacheable: PostgreSQL parsed and planned the
/// rotation anew on every re-authentication, SQLite prepared it anew. This
/// one has a static query id and fixed SQL per `NEW_EXPIRY`, so both keep it
/// prepared.
#[derive(Debug, Clone, Copy)]
struct Rotate<'a, const NEW_EXPIRY: bool> {
    id: i64,
    expected: &'a [u8],
    new: &'a [u8],
    now: i64,
    expires_at: i64,
}

type AnyBackend = <AnyConnection as Connection>::Backend;

impl<const NEW_EXPIRY: bool> diesel::query_builder::QueryId for Rotate<'_, NEW_EXPIRY> {
    type QueryId = Rotate<'static, NEW_EXPIRY>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<const NEW_EXPIRY: bool> diesel::query_builder::QueryFragment<AnyBackend>
    for Rotate<'_, NEW_EXPIRY>
{
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, AnyBackend>,
    ) -> diesel::QueryResult<()> {
        use diesel::sql_types::{BigInt, Binary};
        out.push_sql("UPDATE remember_tokens SET previous_token_hash = token_hash, token_hash = ");
        out.push_bind_param::<Binary, _>(self.new)?;
        out.push_sql(", rotated_at = ");
        out.push_bind_param::<BigInt, _>(&self.now)?;
        out.push_sql(", last_used_at = ");
        out.push_bind_param::<BigInt, _>(&self.now)?;
        if NEW_EXPIRY {
            out.push_sql(", expires_at = ");
            out.push_bind_param::<BigInt, _>(&self.expires_at)?;
        }
        out.push_sql(" WHERE id = ");
        out.push_bind_param::<BigInt, _>(&self.id)?;
        out.push_sql(" AND token_hash = ");
        out.push_bind_param::<Binary, _>(self.expected)?;
        Ok(())
    }
}

impl<const NEW_EXPIRY: bool> RunQueryDsl<AnyConnection> for Rotate<'_, NEW_EXPIRY> {}

fn audit_row<'a>(event: &NewAuditEvent<'a>) -> NewAuditRow<'a> {
    NewAuditRow {
        at: event.at,
        kind: event.kind.as_str(),
        user_id: event.user_id,
        ip: event.ip,
        user_agent: event.user_agent,
        detail: event.detail,
    }
}

impl AuditLog for DieselStore {
    fn purge_before(&self, cutoff: i64) -> Result<usize, StoreError> {
        self.with_write_conn(|conn| {
            diesel::delete(audit_events::table.filter(audit_events::at.lt(cutoff))).execute(conn)
        })
    }

    fn record(&self, event: NewAuditEvent<'_>) -> Result<(), StoreError> {
        self.with_write_conn(|conn| {
            diesel::insert_into(audit_events::table)
                .values(audit_row(&event))
                .execute(conn)
                .map(drop)
        })
    }

    fn record_batch(&self, events: &[NewAuditEvent<'_>]) -> Result<(), StoreError> {
        // One multi-row INSERT: one statement and one commit for the batch.
        // `MultiConnection` cannot build a multi-row INSERT, so each backend
        // gets its own (same code, concrete connection).
        let rows: Vec<NewAuditRow<'_>> = events.iter().map(audit_row).collect();
        self.with_write_conn(|conn| {
            let insert = diesel::insert_into(audit_events::table).values(&rows);
            match conn {
                AnyConnection::Postgresql(pg) => insert.execute(pg),
                AnyConnection::Sqlite(sqlite) => insert.execute(sqlite),
            }
            .map(drop)
        })
    }

    fn list(
        &self,
        kind: Option<&str>,
        username: Option<&str>,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        self.with_conn(|conn| {
            let mut query = audit_events::table
                .left_join(users::table)
                .order((audit_events::at.desc(), audit_events::id.desc()))
                .select((AuditRow::as_select(), users::username.nullable()))
                .offset(offset)
                .limit(limit)
                .into_boxed();
            if let Some(kind) = kind {
                query = query.filter(audit_events::kind.eq(kind));
            }
            if let Some(name) = username {
                query = query.filter(users::username.nullable().eq(name));
            }
            Ok(query
                .load::<(AuditRow, Option<String>)>(conn)?
                .into_iter()
                .map(|(row, username)| AuditEvent {
                    id: row.id,
                    at: row.at,
                    kind: row.kind,
                    user_id: row.user_id,
                    username,
                    ip: row.ip,
                    user_agent: row.user_agent,
                    detail: row.detail,
                })
                .collect())
        })
    }
}
