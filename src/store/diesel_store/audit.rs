//! The audit log in Diesel.

use super::*;

/// The `remember_me_sign_in` row of a rotated attempt.
#[cfg(feature = "sqlite")]
pub(super) fn sign_in_row<'a>(
    attempt: &rotation_batch::Attempt,
    audit: &'a rotation_batch::OwnedSignInAudit,
    user: &'a UserId,
) -> NewAuditRow<'a> {
    NewAuditRow {
        at: attempt.now,
        kind: AuditKind::RememberMeSignIn.as_str(),
        user_id: Some(user.as_str()),
        ip: audit.ip.as_deref(),
        user_agent: audit.user_agent.as_deref(),
        detail: &audit.detail,
    }
}

/// One audit row's `INSERT`, with fixed SQL and a static query id, so the
/// statement stays prepared and is found by its type. Diesel's own
/// single-row `INSERT` has neither (its SQL depends on which optional
/// values are present): it wrote and looked up its SQL text on every sign-in
/// by cookie.
#[derive(Debug, Clone, Copy)]
pub(super) struct InsertAudit<'a>(pub NewAuditRow<'a>);

impl InsertAudit<'_> {
    /// Runs the insert on the backend's own connection (see `per_backend`).
    pub(super) fn run_on(self, conn: &mut AnyConnection) -> QueryResult<usize> {
        per_backend!(conn, |c| self.execute(c))
    }
}

impl diesel::query_builder::QueryId for InsertAudit<'_> {
    type QueryId = InsertAudit<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<DB> diesel::query_builder::QueryFragment<DB> for InsertAudit<'_>
where
    DB: diesel::backend::Backend,
    DB: diesel::sql_types::HasSqlType<diesel::sql_types::Text>,
    DB: diesel::sql_types::HasSqlType<diesel::sql_types::BigInt>,
    str: diesel::serialize::ToSql<diesel::sql_types::Text, DB>,
    i64: diesel::serialize::ToSql<diesel::sql_types::BigInt, DB>,
{
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, DB>,
    ) -> diesel::QueryResult<()> {
        use diesel::sql_types::{BigInt, Nullable, Text};
        let row = &self.0;
        out.push_sql(
            "INSERT INTO audit_events (at, kind, user_id, ip, user_agent, detail) VALUES (",
        );
        out.push_bind_param::<BigInt, _>(&row.at)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(row.kind)?;
        for optional in [&row.user_id, &row.ip, &row.user_agent] {
            out.push_sql(", ");
            out.push_bind_param::<Nullable<Text>, _>(optional)?;
        }
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(row.detail)?;
        out.push_sql(")");
        Ok(())
    }
}

impl<Conn> RunQueryDsl<Conn> for InsertAudit<'_> {}

pub(super) fn audit_row<'a>(event: &NewAuditEvent<'a>) -> NewAuditRow<'a> {
    NewAuditRow {
        at: event.at,
        kind: event.kind.as_str(),
        user_id: event.user_id.map(UserId::as_str),
        ip: event.ip,
        user_agent: event.user_agent,
        detail: event.detail,
    }
}

impl AuditLog for DieselStore {
    fn purge_before(&self, cutoff: i64) -> Result<usize, StoreError> {
        self.purge_in_batches("audit_events", |conn| {
            let old: Vec<i64> = audit_events::table
                .select(audit_events::id)
                .filter(audit_events::at.lt(cutoff))
                .order(audit_events::at)
                .limit(PURGE_BATCH)
                .load(conn)?;
            let selected = old.len();
            let still = audit_events::id
                .eq_any(old)
                .and(audit_events::at.lt(cutoff));
            let deleted = diesel::delete(audit_events::table.filter(still)).execute(conn)?;
            Ok((selected, deleted))
        })
    }

    fn record(&self, event: NewAuditEvent<'_>) -> Result<(), StoreError> {
        self.with_write_conn(|conn| InsertAudit(audit_row(&event)).run_on(conn).map(drop))
    }

    fn record_batch(&self, events: &[NewAuditEvent<'_>]) -> Result<(), StoreError> {
        // One multi-row INSERT: one statement and one commit for the batch.
        // `MultiConnection` cannot build a multi-row INSERT, so it runs on
        // the backend's own connection.
        let rows: Vec<NewAuditRow<'_>> = events.iter().map(audit_row).collect();
        self.with_write_conn(|conn| {
            per_backend!(conn, |c| {
                diesel::insert_into(audit_events::table)
                    .values(&rows)
                    .execute(c)
            })
            .map(drop)
        })
    }

    fn list(
        &self,
        kind: Option<&str>,
        user: Option<&UserId>,
        before: Option<(i64, i64)>,
        limit: i64,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        self.with_conn(|conn| {
            let mut query = audit_events::table
                .order((audit_events::at.desc(), audit_events::id.desc()))
                .select(AuditRow::as_select())
                .limit(limit)
                .into_boxed();
            if let Some((at, id)) = before {
                // (at, id) < (at₀, id₀): a range of the `at` index.
                query = query.filter(
                    audit_events::at
                        .lt(at)
                        .or(audit_events::at.eq(at).and(audit_events::id.lt(id))),
                );
            }
            if let Some(kind) = kind {
                query = query.filter(audit_events::kind.eq(kind));
            }
            if let Some(user) = user {
                query = query.filter(audit_events::user_id.eq(user.as_str()));
            }
            Ok(query
                .load::<AuditRow>(conn)?
                .into_iter()
                .map(|row| AuditEvent {
                    id: row.id,
                    at: row.at,
                    kind: row.kind,
                    user_id: row.user_id.map(UserId::from),
                    ip: row.ip,
                    user_agent: row.user_agent,
                    detail: row.detail,
                })
                .collect())
        })
    }
}
