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
                #[cfg(feature = "postgres")]
                AnyConnection::Postgresql(pg) => insert.execute(pg),
                #[cfg(feature = "sqlite")]
                AnyConnection::Sqlite(sqlite) => insert.execute(sqlite),
            }
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
