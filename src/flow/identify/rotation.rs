//! A sign-in by cookie's rotation, worked out before the store is asked.

use super::expiry_on_use;
use crate::flow::{CookieChange, StepContext};
use crate::store::{ExpiryOnUse, FoundSeries, RotationAttempt, SignInAudit, StoreError};
use crate::token::{RememberCookie, SecretHash};

/// A sign-in by cookie's rotation as it is asked of the store: the cookie
/// decoded, the hashes, the next token and its seal. Worked out from the
/// cookie and the settings alone (no store), so the layer can prepare it
/// on an async worker and have it run in a batch that no thread waits for.
pub(crate) struct Rotation {
    pub(super) cookie: RememberCookie,
    pub(super) series: SecretHash,
    pub(super) presented: SecretHash,
    next: RememberCookie,
    new_token: SecretHash,
    sealed: [u8; crate::token::TOKEN_LEN],
    expiry: ExpiryOnUse,
}

impl Rotation {
    /// The rotation `raw` asks for; `None` if it does not decode.
    pub(crate) fn prepare(ctx: &StepContext<'_>, raw: &[u8]) -> Option<Self> {
        let cookie = RememberCookie::decode(raw).ok()?;
        let next = cookie.rotated();
        let sealed = cookie.seal_next(&ctx.config.seal_key, &next.token);
        Some(Self {
            series: cookie.series.hash(),
            presented: cookie.token.hash(),
            new_token: next.token.hash(),
            cookie,
            next,
            sealed,
            expiry: expiry_on_use(ctx),
        })
    }

    /// The attempt, as the store takes it.
    pub(crate) fn attempt<'a>(&'a self, ctx: &StepContext<'a>) -> RotationAttempt<'a> {
        RotationAttempt {
            series: &self.series,
            token: &self.presented,
            new_token: &self.new_token,
            sealed: &self.sealed,
            now: ctx.now,
            clock_offset_ms: ctx.config.clock_offset_ms(),
            expiry: self.expiry,
            audit: Some(SignInAudit {
                ip: ctx.client.ip.as_deref(),
                user_agent: ctx.client.user_agent.as_deref(),
                detail: ctx.sign_in_detail,
            }),
        }
    }

    /// The cookie to send if `found` says this attempt rotated the token:
    /// the next token, for as long as the row now lives. `rotated` alone
    /// would do for a correct store; the row is checked too, so a store
    /// that gets it wrong cannot let an expired or wrong token in
    /// (`record` is the row before the rotation).
    pub(crate) fn rotated_cookie(&self, found: &FoundSeries, now: i64) -> Option<CookieChange> {
        let record = &found.record;
        (found.rotated
            && record.expires_at > now
            && record.token_hash.ct_eq(self.presented.as_bytes()))
        .then(|| CookieChange::Set {
            cookie: self.next.clone(),
            max_age_secs: self.expiry.applied_to(record) - now,
        })
    }
}

/// A rotation the layer has already run for the context's cookie (see
/// [`Rotation`]): the identifying step concludes from its outcome instead
/// of asking the store. Used only for the cookie it was prepared from.
pub(crate) struct Prefetched {
    /// The cookie, raw, as the context carries it.
    pub raw: Vec<u8>,
    /// The rotation asked for.
    pub rotation: Rotation,
    /// What the store answered.
    pub outcome: Result<Option<FoundSeries>, StoreError>,
    /// The owner of the token as the app's directory had it after the
    /// batch, if the batch gave one: the step reads it otherwise.
    pub owner: Option<crate::store::User>,
}

impl Prefetched {
    /// The cookie to send if the rotation rotated the token (see
    /// [`Rotation::rotated_cookie`]), whatever happens to the sign-in next.
    pub(crate) fn rotated_cookie(&self, now: i64) -> Option<CookieChange> {
        let found = self.outcome.as_ref().ok()?.as_ref()?;
        self.rotation.rotated_cookie(found, now)
    }
}
