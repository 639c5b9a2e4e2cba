//! The PostgreSQL batch statement of the sign-ins by cookie.

use super::*;

/// A batch of [`TokenStore::find_and_rotate`] calls on PostgreSQL as one
/// statement. The attempts travel as arrays (`unnest`), so the SQL is the
/// same for any batch size and stays prepared (static query id). The
/// compare-and-swap rotations run in a data-modifying `WITH`; the tokens with
/// their owners are read as the statement's snapshot saw them, i.e.
/// **before** the rotations (every part of one statement shares one
/// snapshot), each with whether it was rotated. Under READ COMMITTED a racing
/// rotation of the same row makes PostgreSQL re-check this one's `WHERE` on
/// the new row version, where the old token no longer matches: of two racing
/// calls one rotates. The expiry check sits in the `WHERE`, so an expired
/// token is never rotated. A batch may hold a series twice (one cookie on
/// parallel requests): `UPDATE … FROM` then updates that row once, through
/// one of the two input rows, and `RETURNING` names only that one; the other
/// reads as not rotated (the row before the statement, with its token still
/// current), which the identify step treats as a parallel request.
#[derive(Debug)]
pub(super) struct RotateBatchPg<'a> {
    /// Each attempt's position in the batch.
    n: Vec<i32>,
    series: Vec<&'a [u8]>,
    presented: Vec<&'a [u8]>,
    new: Vec<&'a [u8]>,
    sealed: Vec<&'a [u8]>,
    now: Vec<i64>,
    /// [`KEEP`], [`SET`] or [`CAPPED`].
    expiry: Vec<i16>,
    until: Vec<i64>,
    max_lifetime: Vec<i64>,
    /// Whether the attempt's sign-in is audited with its rotation, and the
    /// row's fields.
    audit: Vec<bool>,
    /// The layer's clock offset, added to the database's clock.
    offset_ms: Vec<i64>,
    ip: Vec<Option<&'a str>>,
    user_agent: Vec<Option<&'a str>>,
    detail: Vec<&'a str>,
}

/// The expiry stays.
const KEEP: i16 = 0;
/// `expires_at = until`.
const SET: i16 = 1;
/// `expires_at = LEAST(until, created_at + max_lifetime)`.
const CAPPED: i16 = 2;

impl<'a> RotateBatchPg<'a> {
    pub(super) fn new(batch: &'a [rotation_batch::Attempt]) -> Self {
        let mut query = Self {
            n: Vec::with_capacity(batch.len()),
            series: Vec::with_capacity(batch.len()),
            presented: Vec::with_capacity(batch.len()),
            new: Vec::with_capacity(batch.len()),
            sealed: Vec::with_capacity(batch.len()),
            now: Vec::with_capacity(batch.len()),
            expiry: Vec::with_capacity(batch.len()),
            until: Vec::with_capacity(batch.len()),
            max_lifetime: Vec::with_capacity(batch.len()),
            audit: Vec::with_capacity(batch.len()),
            offset_ms: Vec::with_capacity(batch.len()),
            ip: Vec::with_capacity(batch.len()),
            user_agent: Vec::with_capacity(batch.len()),
            detail: Vec::with_capacity(batch.len()),
        };
        for (n, attempt) in (0..).zip(batch) {
            let (expiry, until, max_lifetime) = match attempt.expiry {
                ExpiryOnUse::Keep => (KEEP, 0, 0),
                ExpiryOnUse::Extend {
                    until,
                    max_lifetime_secs: None,
                } => (SET, until, 0),
                // `created_at + max` is at least `until` once `max` is
                // (creation times are not negative): capping `max` there
                // changes no result and keeps the sum from overflowing.
                ExpiryOnUse::Extend {
                    until,
                    max_lifetime_secs: Some(max),
                } => (CAPPED, until, max.clamp(0, until.max(0))),
            };
            query.n.push(n);
            query.series.push(attempt.series.as_bytes());
            query.presented.push(attempt.token.as_bytes());
            query.new.push(attempt.new_token.as_bytes());
            query.sealed.push(&attempt.sealed);
            query.now.push(attempt.now);
            query.expiry.push(expiry);
            query.until.push(until);
            query.max_lifetime.push(max_lifetime);
            let audit = attempt.audit.as_ref();
            query.audit.push(audit.is_some());
            query.offset_ms.push(attempt.clock_offset_ms);
            query.ip.push(audit.and_then(|a| a.ip.as_deref()));
            query
                .user_agent
                .push(audit.and_then(|a| a.user_agent.as_deref()));
            query.detail.push(audit.map_or("", |a| a.detail.as_str()));
        }
        query
    }
}

impl diesel::query_builder::QueryId for RotateBatchPg<'_> {
    type QueryId = RotateBatchPg<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::Query for RotateBatchPg<'_> {
    type SqlType = (
        diesel::sql_types::Integer,
        diesel::dsl::SqlTypeOf<<remember_tokens::table as Table>::AllColumns>,
        diesel::sql_types::BigInt,
        diesel::sql_types::Bool,
        diesel::sql_types::BigInt,
    );
}

impl<'a> RotateBatchPg<'a> {
    /// The attempts' arrays, the arguments of the statement's `unnest`.
    fn push_inputs<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> diesel::QueryResult<()> {
        use diesel::sql_types::{Array, BigInt, Binary, Bool, Integer, Nullable, SmallInt, Text};
        out.push_bind_param::<Array<Integer>, _>(&self.n)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Binary>, _>(&self.series)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Binary>, _>(&self.presented)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Binary>, _>(&self.new)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Binary>, _>(&self.sealed)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&self.now)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<SmallInt>, _>(&self.expiry)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&self.until)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&self.max_lifetime)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Bool>, _>(&self.audit)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&self.offset_ms)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.ip)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.user_agent)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.detail)?;
        Ok(())
    }
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for RotateBatchPg<'_> {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> diesel::QueryResult<()> {
        out.push_sql("WITH input AS (SELECT * FROM unnest(");
        self.push_inputs(out.reborrow())?;
        // `KEEP` and `SET` (0 and 1) are written into the SQL.
        const _: () = assert!(KEEP == 0 && SET == 1);
        out.push_sql(
            ") AS i (n, series, presented, new, sealed, now, expiry, until, max_lifetime, \
             audit, offset_ms, ip, user_agent, detail)), \
             rotated AS (UPDATE remember_tokens \
             SET previous_token_hash = remember_tokens.token_hash, token_hash = i.new, \
             sealed_token = i.sealed, \
             rotated_at = FLOOR(EXTRACT(EPOCH FROM statement_timestamp()) \
             + i.offset_ms / 1000.0)::bigint, last_used_at = i.now, \
             expires_at = CASE i.expiry WHEN 0 THEN remember_tokens.expires_at \
             WHEN 1 THEN i.until \
             ELSE LEAST(i.until, remember_tokens.created_at + i.max_lifetime) END \
             FROM input i \
             WHERE remember_tokens.series_hash = i.series \
             AND remember_tokens.token_hash = i.presented \
             AND remember_tokens.expires_at > i.now \
             AND (remember_tokens.previous_token_hash IS NULL \
             OR octet_length(remember_tokens.previous_token_hash) = 32) \
             RETURNING i.n, remember_tokens.user_id), \
             audited AS (INSERT INTO audit_events (at, kind, user_id, ip, user_agent, detail) \
             SELECT i.now, 'remember_me_sign_in', r.user_id, i.ip, i.user_agent, i.detail \
             FROM rotated r INNER JOIN input i ON i.n = r.n WHERE i.audit) \
             SELECT i.n, ",
        );
        // The columns in the order of the row types (the schema's order),
        // written by the schema itself.
        remember_tokens::all_columns.walk_ast(out.reborrow())?;
        out.push_sql(
            ", COALESCE(user_state.auth_epoch, 0), i.n IN (SELECT n FROM rotated), \
             FLOOR(EXTRACT(EPOCH FROM statement_timestamp()) + i.offset_ms / 1000.0)::bigint \
             FROM input i \
             INNER JOIN remember_tokens ON remember_tokens.series_hash = i.series \
             LEFT JOIN user_state ON user_state.user_id = remember_tokens.user_id",
        );
        Ok(())
    }
}

impl RunQueryDsl<diesel::pg::PgConnection> for RotateBatchPg<'_> {}

impl DieselStore {
    pub(super) fn find_and_rotate_batch_pg(
        &self,
        batch: &[rotation_batch::Attempt],
    ) -> BatchResult {
        // PostgreSQL: a statement that failed is tried again attempt by
        // attempt only when it failed for meeting another batch (a deadlock,
        // a serialization failure); any other error is every attempt's.
        let retry_alone = std::cell::Cell::new(false);
        let written = self.with_conn(|conn| {
            #[allow(irrefutable_let_patterns)] // a PostgreSQL-only build
            let AnyConnection::Postgresql(pg) = conn else {
                return Err(DieselError::QueryBuilderError(
                    "a PostgreSQL pool gave another connection".into(),
                ));
            };
            let rows: Vec<BatchRow> = match load_batch_pg(pg, batch, self.db.timeout()) {
                // The statement ran (and committed): not to be retried.
                Err(DieselError::DeserializationError(error)) => {
                    return Ok(every_attempt(batch, &undecodable(&error.to_string())));
                }
                Err(error) => {
                    retry_alone.set(worth_retrying_alone(&error));
                    return Err(error);
                }
                Ok(rows) => rows,
            };
            let mut outcomes: Vec<Outcome> = batch.iter().map(|_| Ok(None)).collect();
            for (n, token, epoch, rotated, store_now) in rows {
                let Some(slot) = usize::try_from(n).ok().and_then(|n| outcomes.get_mut(n)) else {
                    continue;
                };
                // The statement wrote the audit row of every rotated attempt
                // that asked for one.
                let audited = rotated && batch[n as usize].audit.is_some();
                *slot = match TokenRecord::try_from(token) {
                    Ok(record) => Ok(Some(FoundSeries {
                        record,
                        epoch,
                        rotated,
                        audited,
                        store_now,
                    })),
                    Err(error) => Err(undecodable(&error.to_string())),
                };
            }
            Ok(outcomes)
        });
        match written {
            Err(error) if retry_alone.get() => Err(error),
            written => Ok(written.unwrap_or_else(|error| every_attempt(batch, &error))),
        }
    }
}

/// One row of the batch statement: the attempt's position, the token as it
/// was and its owner's epoch, whether it rotated, and the database's time.
type BatchRow = (i32, TokenRow, i64, bool, i64);

/// Runs the batch statement. The retry of one attempt of a failed batch
/// waits only briefly for a row lock (a tenth of the lock timeout, at least
/// 20 ms): the batch already waited a whole lock timeout, so a row still
/// locked is held by a long transaction elsewhere, and the other attempts
/// of the batch must not wait that out again, one after the other.
fn load_batch_pg(
    pg: &mut diesel::PgConnection,
    batch: &[rotation_batch::Attempt],
    lock_timeout: std::time::Duration,
) -> Result<Vec<BatchRow>, DieselError> {
    if !rotation_batch::retrying() {
        return RotateBatchPg::new(batch).load(pg);
    }
    let brief = (lock_timeout.as_millis() / 10).max(20);
    pg.transaction(|pg| {
        pg.batch_execute(&format!("SET LOCAL lock_timeout = {brief}"))?;
        RotateBatchPg::new(batch).load(pg)
    })
}
