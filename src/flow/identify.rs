//! The remember-me identifying step.

use super::{CookieChange, Step, StepContext, StepOutcome};
use crate::RememberMeConfig;
use crate::config::Expiry;
use crate::store::{AuditKind, NewAuditEvent, StoreError, TokenRecord, UserId};
use crate::token::{RememberCookie, SecretHash};

/// Identifies the user by the remember-me cookie and rotates its token.
///
/// * valid current token → success, token rotated (new cookie);
/// * the token replaced by the last rotation, within the grace window →
///   success, nothing rotated, cookie untouched (parallel requests of one page);
/// * a known series with any other token → theft: every token of the user is
///   revoked, the auth epoch bumped, the cookie removed;
/// * expired, unknown or malformed → cookie removed (an expired row deleted).
#[derive(Debug, Clone, Copy, Default)]
pub struct RememberMeIdentifyStep;

impl Step for RememberMeIdentifyStep {
    fn is_interactive(&self) -> bool {
        false
    }

    fn run(
        &self,
        ctx: &mut StepContext<'_>,
        _known_user: Option<UserId>,
    ) -> Result<StepOutcome, StoreError> {
        let Some(raw) = ctx.remember_cookie else {
            return Ok(StepOutcome::NotApplicable);
        };
        let Ok(cookie) = RememberCookie::decode(raw) else {
            tracing::debug!("malformed remember-me cookie removed");
            return Ok(not_applicable_and_remove(ctx));
        };
        let tokens = &ctx.stores.tokens;
        let series = cookie.series.hash();
        let presented = cookie.token.hash();

        // The token with its owner, in one query: the bridge needs the user
        // to build the session, and every re-authentication saves a trip.
        let Some((mut record, owner)) = tokens.find_by_series_with_owner(&series)? else {
            tracing::debug!("unknown remember-me series removed");
            return Ok(not_applicable_and_remove(ctx));
        };
        if record.expires_at <= ctx.now {
            tokens.delete_series(&series)?;
            tracing::debug!(token_id = record.id, "expired remember-me token deleted");
            return Ok(not_applicable_and_remove(ctx));
        }

        if record.token_hash.ct_eq(presented.as_bytes()) {
            let next = cookie.rotated();
            let expires_at = next_expiry(ctx, &record);
            let new_expiry = (expires_at != record.expires_at).then_some(expires_at);
            if tokens.rotate(
                record.id,
                &presented,
                &next.token.hash(),
                ctx.now,
                new_expiry,
            )? {
                ctx.cookie_change = Some(CookieChange::Set {
                    cookie: next,
                    max_age_secs: expires_at - ctx.now,
                });
                ctx.user = Some(owner);
                return Ok(success(record.user_id));
            }
            // Another request rotated this token a moment ago: read the row
            // again and treat this one as that rotation's parallel request.
            match tokens.find_by_series(&series)? {
                Some(fresh) => record = fresh,
                None => return Ok(not_applicable_and_remove(ctx)),
            }
        }

        if in_grace(&record, &presented, ctx.now, ctx.config) {
            // Accepted without rotating and without touching the cookie: the
            // browser already holds (or is about to receive) the new token.
            ctx.user = Some(owner);
            return Ok(success(record.user_id));
        }

        // A known series with a token that is neither current nor just
        // replaced: two parties held this cookie. Nobody can tell which is the
        // thief, so everything of that user goes.
        let user = record.user_id;
        let revoked = tokens.delete_all_for_user(user)?;
        ctx.stores.users.bump_epoch(user)?;
        tracing::warn!(
            user_id = user,
            token_id = record.id,
            revoked,
            "remember-me token replayed: theft assumed, every token of the user revoked"
        );
        ctx.stores.audit(NewAuditEvent {
            at: ctx.now,
            kind: AuditKind::TheftDetected,
            user_id: Some(user),
            ip: ctx.client.ip.as_deref(),
            user_agent: ctx.client.user_agent.as_deref(),
            detail: &format!(
                "replayed token of series #{}; {revoked} token(s) revoked",
                record.id
            ),
        });
        Ok(not_applicable_and_remove(ctx))
    }
}

/// Whether `presented` is the token the last rotation replaced, within the
/// grace window.
fn in_grace(
    record: &TokenRecord,
    presented: &SecretHash,
    now: i64,
    config: &RememberMeConfig,
) -> bool {
    record
        .rotated_at
        .is_some_and(|at| now - at <= config.rotation_grace.as_secs() as i64)
        && record
            .previous_token_hash
            .as_ref()
            .is_some_and(|previous| previous.ct_eq(presented.as_bytes()))
}

/// The series of a browser's cookie if the cookie still proves it: its token
/// is current, or the one just replaced within the grace window. Logout and
/// sign-in act on the browser's series only then, so an old copy of a
/// cookie cannot be used to delete its owner's token quietly. Blocking.
pub(crate) fn verified_series(
    stores: &crate::store::Stores,
    config: &RememberMeConfig,
    now: i64,
    raw: &[u8],
) -> Result<Option<SecretHash>, StoreError> {
    let Ok(cookie) = RememberCookie::decode(raw) else {
        return Ok(None);
    };
    let series = cookie.series.hash();
    let presented = cookie.token.hash();
    Ok(stores.tokens.find_by_series(&series)?.and_then(|record| {
        (record.token_hash.ct_eq(presented.as_bytes())
            || in_grace(&record, &presented, now, config))
        .then_some(series)
    }))
}

fn success(user: UserId) -> StepOutcome {
    StepOutcome::Success {
        user,
        activate: Vec::new(),
    }
}

fn not_applicable_and_remove(ctx: &mut StepContext<'_>) -> StepOutcome {
    ctx.cookie_change = Some(CookieChange::Remove);
    StepOutcome::NotApplicable
}

/// Server-side expiry after a use, per [`Expiry`].
fn next_expiry(ctx: &StepContext<'_>, record: &TokenRecord) -> i64 {
    let validity = ctx.config.validity.as_secs() as i64;
    match ctx.config.expiry {
        Expiry::Absolute => record.expires_at,
        Expiry::Sliding => {
            let cap = record.created_at + ctx.config.max_lifetime.as_secs() as i64;
            (ctx.now + validity).min(cap)
        }
        Expiry::Forever => ctx.now + validity,
    }
}
