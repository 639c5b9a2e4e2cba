//! The browser's own series, at a logout or a new sign-in: what its cookie
//! still proves, and a fork of the session's series judged before the
//! cookie goes.

use super::{end_series, in_grace, revoke_everything};
use crate::RememberMeConfig;
use crate::flow::StepContext;
use crate::store::{StoreError, TokenRecord};
use crate::token::{RememberCookie, SecretHash};

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
    Ok(presented(stores, raw)?.and_then(|p| p.proves(now, config).then_some(p.series)))
}

/// [`verified_series`], for a browser whose session is bound to the
/// series `own`, with one read of the row. A cookie of that series whose
/// token no longer proves it (neither current nor the one just replaced
/// within the grace window) shows that someone rotated the series past
/// this browser, with a copy of its cookie used while the session kept
/// the browser from presenting its own. On logout or a new sign-in the
/// browser's cookie is about to go, and with it the only sign of the
/// fork, so the series is judged now as the identifying step judges such
/// a token: one back, the series ends (`possible_theft`); older,
/// everything of the user (`theft_detected`). Blocking.
pub(crate) fn browser_series(
    ctx: &mut StepContext<'_>,
    raw: &[u8],
    own: Option<&SecretHash>,
) -> Result<Option<SecretHash>, StoreError> {
    let Some(cookie) = presented(ctx.stores, raw)? else {
        return Ok(None);
    };
    if cookie.proves(ctx.now, ctx.config) {
        return Ok(Some(cookie.series));
    }
    let Presented { series, record, .. } = &cookie;
    if own.is_some_and(|own| series.ct_eq(own.as_bytes())) && record.expires_at > ctx.now {
        match cookie.one_back() {
            true => end_series(ctx, series, record)?,
            false => revoke_everything(ctx, record)?,
        };
    }
    Ok(None)
}

/// A cookie's series, the token it presents, and the series' row.
struct Presented {
    series: SecretHash,
    token: SecretHash,
    record: TokenRecord,
}

impl Presented {
    /// Whether the token is the one the last rotation replaced.
    fn one_back(&self) -> bool {
        self.record
            .previous_token_hash
            .as_ref()
            .is_some_and(|previous| previous.ct_eq(self.token.as_bytes()))
    }

    /// Whether the token is current, or the one just replaced within the
    /// grace window.
    fn proves(&self, now: i64, config: &RememberMeConfig) -> bool {
        self.record.token_hash.ct_eq(self.token.as_bytes())
            || (self.one_back()
                && in_grace(&self.record, now, config, crate::clock::CLOCK_SKEW_SECS))
    }
}

/// The cookie's series and token, with the series' row; `None` for a
/// cookie that does not decode or a series the store does not have.
fn presented(stores: &crate::store::Stores, raw: &[u8]) -> Result<Option<Presented>, StoreError> {
    let Ok(cookie) = RememberCookie::decode(raw) else {
        return Ok(None);
    };
    let series = cookie.series.hash();
    Ok(stores
        .tokens
        .find_by_series(&series)?
        .map(|record| Presented {
            series,
            token: cookie.token.hash(),
            record,
        }))
}
