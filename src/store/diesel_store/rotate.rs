//! The compare-and-swap rotation of one token, as a prepared statement.

use super::*;

/// When a rotation happens: `rotated_at` on the store's clock (the grace
/// window is measured on it), `used_at` on the layer's.
#[derive(Debug, Clone, Copy)]
pub(super) struct Stamp {
    pub(super) rotated_at: i64,
    pub(super) used_at: i64,
}

/// [`TokenStore::rotate`] on a connection: see [`Rotate`].
pub(super) fn rotate_on(
    conn: &mut AnyConnection,
    id: i64,
    expected: &SecretHash,
    new_token: &SecretHash,
    sealed: &[u8],
    stamp: Stamp,
    expires_at: Option<i64>,
) -> Result<bool, DieselError> {
    let (expected, new) = (
        expected.as_bytes().as_slice(),
        new_token.as_bytes().as_slice(),
    );
    let updated = match expires_at {
        Some(expires_at) => Rotate::<true> {
            id,
            expected,
            new,
            sealed,
            stamp,
            expires_at,
        }
        .run_on(conn)?,
        None => Rotate::<false> {
            id,
            expected,
            new,
            sealed,
            stamp,
            expires_at: 0,
        }
        .run_on(conn)?,
    };
    Ok(updated == 1)
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
    sealed: &'a [u8],
    stamp: Stamp,
    expires_at: i64,
}

impl<const NEW_EXPIRY: bool> Rotate<'_, NEW_EXPIRY> {
    /// Runs the rotation on the backend's own connection (see
    /// [`per_backend`]); the number of rows it changed.
    fn run_on(self, conn: &mut AnyConnection) -> QueryResult<usize> {
        per_backend!(conn, |c| self.execute(c))
    }
}

impl<const NEW_EXPIRY: bool> diesel::query_builder::QueryId for Rotate<'_, NEW_EXPIRY> {
    type QueryId = Rotate<'static, NEW_EXPIRY>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<DB, const NEW_EXPIRY: bool> diesel::query_builder::QueryFragment<DB> for Rotate<'_, NEW_EXPIRY>
where
    DB: diesel::backend::Backend,
    DB: diesel::sql_types::HasSqlType<diesel::sql_types::Binary>,
    DB: diesel::sql_types::HasSqlType<diesel::sql_types::BigInt>,
    [u8]: diesel::serialize::ToSql<diesel::sql_types::Binary, DB>,
    i64: diesel::serialize::ToSql<diesel::sql_types::BigInt, DB>,
{
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, DB>,
    ) -> diesel::QueryResult<()> {
        use diesel::sql_types::{BigInt, Binary};
        out.push_sql("UPDATE remember_tokens SET previous_token_hash = token_hash, token_hash = ");
        out.push_bind_param::<Binary, _>(self.new)?;
        out.push_sql(", sealed_token = ");
        out.push_bind_param::<Binary, _>(self.sealed)?;
        out.push_sql(", rotated_at = ");
        out.push_bind_param::<BigInt, _>(&self.stamp.rotated_at)?;
        out.push_sql(", last_used_at = ");
        out.push_bind_param::<BigInt, _>(&self.stamp.used_at)?;
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

impl<Conn, const NEW_EXPIRY: bool> RunQueryDsl<Conn> for Rotate<'_, NEW_EXPIRY> {}
