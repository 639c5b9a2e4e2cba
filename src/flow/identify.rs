//! The remember-me identifying step.

use super::{CookieChange, Step, StepContext, StepOutcome};
use crate::RememberMeConfig;
use crate::config::Expiry;
use crate::store::{
    AuditKind, ExpiryOnUse, FoundSeries, NewAuditEvent, StoreError, TokenRecord, User, UserId,
};
use crate::token::{RememberCookie, SecretHash};

/// Identifies the user by the remember-me cookie and rotates its token.
///
/// Every presentation of the current token rotates it, so a presented token
/// tells how far behind its holder is:
///
/// * the current token → success, token rotated (new cookie);
/// * the token **one rotation back, within the grace window** → a parallel
///   request of one page or a quick retry: success without rotating, and
///   the client is handed the current token (opened from the row's
///   [`sealed_token`](crate::store::TokenRecord::sealed_token)), so it
///   converges;
/// * the token **one rotation back, after the grace window** → a client that
///   lost a response, or a fork: nobody can tell them apart, so that series
///   ends (both copies die, with the sessions bound to it), a
///   `possible_theft` event is written, the cookie removed, and the user's
///   other devices are left alone;
/// * any **other** token of a known series (two or more rotations back, or
///   never issued) → certain theft, since someone presented its successor:
///   every token of the user revoked, the auth epoch bumped, one transaction;
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
        _known_user: Option<&UserId>,
    ) -> Result<StepOutcome, StoreError> {
        let Some(raw) = ctx.remember_cookie else {
            return Ok(StepOutcome::NotApplicable);
        };
        // The token with its owner (the bridge builds the session from it),
        // rotated if the presented token is current: one round trip where
        // the store can, on every re-authentication. The layer may have
        // run it already, in a batch no thread waited for (see
        // `Prefetched`).
        let (rotation, found, owner) = match ctx.prefetched.take_if(|done| done.raw == raw) {
            Some(done) => (done.rotation, done.outcome?, done.owner),
            None => {
                let Some(rotation) = Rotation::prepare(ctx, raw) else {
                    return Ok(reject(ctx, "malformed"));
                };
                let found = ctx.stores.tokens.find_and_rotate(rotation.attempt(ctx))?;
                (rotation, found, None)
            }
        };
        let Some(found) = found else {
            return Ok(reject(ctx, "unknown"));
        };
        conclude(ctx, &rotation, found, owner)
    }
}

/// The store's answer for a known series (and its owner, if the batch
/// that rotated it read it).
fn conclude(
    ctx: &mut StepContext<'_>,
    rotation: &Rotation,
    found: FoundSeries,
    owner: Option<User>,
) -> Result<StepOutcome, StoreError> {
    if let Some(change) = rotation.rotated_cookie(&found, ctx.now) {
        let FoundSeries {
            mut record,
            epoch,
            audited,
            ..
        } = found;
        ctx.cookie_change = Some(change);
        ctx.device_key = record.device_key.take();
        ctx.sign_in_audited = audited;
        crate::telemetry::count(crate::telemetry::ROTATIONS);
        return signed_in(ctx, record, epoch, owner);
    }
    let FoundSeries {
        record,
        epoch,
        store_now,
        ..
    } = found;
    if record.expires_at <= ctx.now {
        ctx.stores.tokens.delete_series(&rotation.series)?;
        tracing::debug!(token_id = record.id, "expired remember-me token deleted");
        return Ok(reject(ctx, "expired"));
    }
    not_current(
        ctx,
        &rotation.cookie,
        (&rotation.series, &rotation.presented),
        record,
        epoch,
        store_now,
    )
}

/// A known, unexpired series whose presented token did not rotate: a
/// racing request's, the token one rotation back (in grace or not), or an
/// older one (theft).
fn not_current(
    ctx: &mut StepContext<'_>,
    cookie: &RememberCookie,
    (series, presented): (&SecretHash, &SecretHash),
    mut record: TokenRecord,
    epoch: i64,
    store_now: i64,
) -> Result<StepOutcome, StoreError> {
    let tokens = &ctx.stores.tokens;
    // Current when read, yet not rotated: another request (of this
    // instance or another) rotated it a moment ago, after this one's
    // read. It is that rotation's parallel request, whatever the clocks
    // say: read the row again, to hand back the current token.
    let raced = record.token_hash.ct_eq(presented.as_bytes());
    if raced {
        match tokens.find_by_series(series)? {
            Some(fresh) => record = fresh,
            None => return Ok(not_applicable_and_remove(ctx)),
        }
    }
    let one_back = record
        .previous_token_hash
        .as_ref()
        .is_some_and(|previous| previous.ct_eq(presented.as_bytes()));
    // Measured on the clock that stamped the rotation (the database's,
    // where the store has one): strictly 0 to the grace window.
    let grace = raced || (one_back && in_grace(&record, store_now, ctx.config, 0));
    match (one_back || raced, grace) {
        (true, true) => {
            crate::telemetry::count(crate::telemetry::GRACE_ACCEPTANCES);
            hand_back_current(ctx, cookie, &record);
            // No rotation to carry the sign-in's audit row: written now,
            // before the response, like a rotation's (it is rare: the
            // parallel requests of one page, a retry, a lost response).
            ctx.stores.audit(NewAuditEvent {
                at: ctx.now,
                kind: AuditKind::RememberMeSignIn,
                user_id: Some(&record.user_id),
                ip: ctx.client.ip.as_deref(),
                user_agent: ctx.client.user_agent.as_deref(),
                detail: ctx.sign_in_detail,
            });
            ctx.sign_in_audited = true;
            ctx.device_key = record.device_key.take();
            signed_in(ctx, record, epoch, None)
        }
        (true, false) => end_series(ctx, series, &record),
        (false, _) => revoke_everything(ctx, &record),
    }
}

/// A parallel request or a quick retry with the token just replaced: the
/// client gets the current token back (opened from the seal only its token
/// opens, checked against the current hash), so it holds the newest token
/// again and never drifts into the "one back after the grace window" case.
/// A row without a seal (written by an older version) keeps the cookie.
fn hand_back_current(ctx: &mut StepContext<'_>, cookie: &RememberCookie, record: &TokenRecord) {
    let current = record
        .sealed_token
        .as_deref()
        .and_then(|sealed| cookie.open_sealed(&ctx.config.seal_key, sealed))
        .filter(|token| record.token_hash.ct_eq(token.hash().as_bytes()));
    if let Some(token) = current {
        ctx.cookie_change = Some(CookieChange::Set {
            cookie: RememberCookie {
                series: cookie.series.clone(),
                token,
            },
            max_age_secs: record.expires_at - ctx.now,
        });
    }
}

/// The token one rotation back, after the grace window: either this client
/// lost the response that carried its successor, or someone else holds a
/// copy and presented it first. Both copies die with the series (and the
/// sessions bound to it: they check it); the user's other devices stay.
fn end_series(
    ctx: &mut StepContext<'_>,
    series: &SecretHash,
    record: &TokenRecord,
) -> Result<StepOutcome, StoreError> {
    ctx.stores.tokens.delete_series(series)?;
    crate::telemetry::theft("possible");
    tracing::warn!(
        user_id = %record.user_id,
        token_id = record.id,
        "remember-me token one rotation back after the grace window: series ended"
    );
    ctx.stores.audit(NewAuditEvent {
        at: ctx.now,
        kind: AuditKind::PossibleTheft,
        user_id: Some(&record.user_id),
        ip: ctx.client.ip.as_deref(),
        user_agent: ctx.client.user_agent.as_deref(),
        detail: &format!(
            "series #{} ended: its previous token came back late",
            record.id
        ),
    });
    Ok(not_applicable_and_remove(ctx))
}

/// A known series with a token that is neither current nor one back: its
/// successor was presented by someone, so two parties held this cookie.
/// Nobody can tell which is the thief, so everything of that user goes, in
/// one transaction with its audit row.
fn revoke_everything(
    ctx: &mut StepContext<'_>,
    record: &TokenRecord,
) -> Result<StepOutcome, StoreError> {
    let user = &record.user_id;
    let revoked = ctx.stores.revoke_everything(
        user,
        NewAuditEvent {
            at: ctx.now,
            kind: AuditKind::TheftDetected,
            user_id: Some(user),
            ip: ctx.client.ip.as_deref(),
            user_agent: ctx.client.user_agent.as_deref(),
            detail: &format!(
                "replayed token of series #{}; every token revoked",
                record.id
            ),
        },
    )?;
    crate::telemetry::theft("certain");
    tracing::warn!(
        user_id = %user,
        token_id = record.id,
        revoked,
        "remember-me token replayed: theft assumed, every token of the user revoked"
    );
    Ok(not_applicable_and_remove(ctx))
}

/// Whether the last rotation is at most the grace window old at `now`, an
/// age from `-skew` on: `now` on the clock that stamped it, skew 0 (the
/// store's time of the sign-in, see [`FoundSeries::store_now`]), or this
/// instance's clock, `skew` [`CLOCK_SKEW_SECS`](crate::clock::CLOCK_SKEW_SECS)
/// (another instance may have stamped it, its clock a little ahead). A
/// negative age beyond that is not in grace: it must not keep an old token
/// valid without end.
fn in_grace(record: &TokenRecord, now: i64, config: &RememberMeConfig, skew: i64) -> bool {
    let grace = -skew..=config.rotation_grace.as_secs() as i64;
    record
        .rotated_at
        .is_some_and(|at| grace.contains(&now.saturating_sub(at)))
}

/// The cookie identified its owner: the app's directory says who that is
/// now (`owner`, if the batch that rotated the token read it after its
/// commit). A user the app deleted signs in no more: the series ends.
fn signed_in(
    ctx: &mut StepContext<'_>,
    record: TokenRecord,
    epoch: i64,
    owner: Option<User>,
) -> Result<StepOutcome, StoreError> {
    // The batch's read is taken only for this token's owner (a directory
    // answering out of order must not sign in another user); without it,
    // the user is read here, also before a series of a gone user ends.
    let owner = match owner {
        Some(user) if user.id == record.user_id => Some(user),
        _ => ctx.stores.users.find_by_id(&record.user_id)?,
    };
    let Some(user) = owner else {
        ctx.stores.tokens.delete_series(&record.series_hash)?;
        tracing::info!(
            user_id = %record.user_id,
            token_id = record.id,
            "remember-me token of a user the app no longer knows: series ended"
        );
        return Ok(reject(ctx, "user_gone"));
    };
    ctx.user = Some(user);
    ctx.epoch = Some(epoch);
    Ok(StepOutcome::Success {
        user: record.user_id,
        activate: Vec::new(),
    })
}

/// A cookie that signs nobody in, counted by why (see [`crate::telemetry`]).
fn reject(ctx: &mut StepContext<'_>, reason: &'static str) -> StepOutcome {
    tracing::debug!(reason, "remember-me cookie removed");
    crate::telemetry::rejected(reason);
    not_applicable_and_remove(ctx)
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

mod browser;
mod rotation;
pub(crate) use browser::{browser_series, verified_series};
pub(crate) use rotation::{Prefetched, Rotation};

#[cfg(test)]
mod tests;
