//! The remember-me identifying step.

use super::{CookieChange, Step, StepContext, StepOutcome};
use crate::RememberMeConfig;
use crate::config::Expiry;
use crate::store::{
    AuditKind, ExpiryOnUse, FoundSeries, NewAuditEvent, RotationAttempt, StoreError, TokenRecord,
    UserId,
};
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
        let next = cookie.rotated();

        // The token with its owner (the bridge builds the session from it),
        // rotated if the presented token is current: one round trip where
        // the store can, on every re-authentication.
        let expiry = expiry_on_use(ctx);
        let Some(found) = tokens.find_and_rotate(RotationAttempt {
            series: &series,
            token: &presented,
            new_token: &next.token.hash(),
            now: ctx.now,
            expiry,
        })?
        else {
            tracing::debug!("unknown remember-me series removed");
            return Ok(not_applicable_and_remove(ctx));
        };
        let FoundSeries {
            mut record,
            owner,
            rotated,
        } = found;
        // `rotated` alone would do for a correct store; the step checks the
        // row itself too, so a store that gets it wrong cannot let an expired
        // or wrong token in (`record` is the row before the rotation).
        if rotated && record.expires_at > ctx.now && record.token_hash.ct_eq(presented.as_bytes()) {
            ctx.cookie_change = Some(CookieChange::Set {
                cookie: next,
                max_age_secs: expiry.applied_to(&record) - ctx.now,
            });
            ctx.user = Some(owner);
            return Ok(success(record.user_id));
        }
        if record.expires_at <= ctx.now {
            tokens.delete_series(&series)?;
            tracing::debug!(token_id = record.id, "expired remember-me token deleted");
            return Ok(not_applicable_and_remove(ctx));
        }
        if record.token_hash.ct_eq(presented.as_bytes()) {
            // Current when read, yet not rotated: another request rotated
            // it a moment ago. Read the row again and treat this one as that
            // rotation's parallel request.
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

/// How a use moves the token's server-side expiry, per [`Expiry`].
fn expiry_on_use(ctx: &StepContext<'_>) -> ExpiryOnUse {
    let secs = |d: std::time::Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    let until = ctx.now.saturating_add(secs(ctx.config.validity));
    match ctx.config.expiry {
        Expiry::Absolute => ExpiryOnUse::Keep,
        Expiry::Sliding => ExpiryOnUse::Extend {
            until,
            max_lifetime_secs: Some(secs(ctx.config.max_lifetime)),
        },
        Expiry::Forever => ExpiryOnUse::Extend {
            until,
            max_lifetime_secs: None,
        },
    }
}
