//! [`MemoryStore`]: the crate's three stores in memory, for tests (an app's
//! own, and the acceptance suite's reference).

use std::collections::HashMap;

use parking_lot::Mutex;

use crate::store::{
    AuditEvent, AuditLog, NewAuditEvent, NewToken, Reservation, Retire, StateStore, StoreError,
    ThrottleKey, TokenRecord, TokenStore, UserId,
};
use crate::token::SecretHash;

/// [`TokenStore`], [`StateStore`] and [`AuditLog`] in memory, behind one
/// lock: every call is atomic, and a process's data is gone with it. For
/// tests; it passes [`store_acceptance_suite`](super::store_acceptance_suite).
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: i64,
    tokens: Vec<TokenRecord>,
    epochs: HashMap<UserId, i64>,
    failures: HashMap<ThrottleKey, (u32, i64)>,
    audit: Vec<AuditEvent>,
}

impl Inner {
    fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    fn record(&mut self, event: &NewAuditEvent<'_>) {
        let id = self.id();
        self.audit.push(AuditEvent {
            id,
            at: event.at,
            kind: event.kind.as_str().to_owned(),
            user_id: event.user_id.cloned(),
            ip: event.ip.map(str::to_owned),
            user_agent: event.user_agent.map(str::to_owned),
            detail: event.detail.to_owned(),
        });
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

/// A page of `items`, newest first, as the stores list.
fn page<T: Clone>(items: Vec<T>, offset: i64, limit: i64) -> Vec<T> {
    let offset = usize::try_from(offset.max(0)).unwrap_or(usize::MAX);
    let limit = usize::try_from(limit.max(0)).unwrap_or(usize::MAX);
    items.into_iter().skip(offset).take(limit).collect()
}

impl TokenStore for MemoryStore {
    fn find_by_series(&self, series: &SecretHash) -> Result<Option<TokenRecord>, StoreError> {
        let inner = self.inner.lock();
        Ok(inner
            .tokens
            .iter()
            .find(|t| t.series_hash == *series)
            .cloned())
    }

    fn find_by_series_with_epoch(
        &self,
        series: &SecretHash,
    ) -> Result<Option<(TokenRecord, i64)>, StoreError> {
        let inner = self.inner.lock();
        Ok(inner
            .tokens
            .iter()
            .find(|t| t.series_hash == *series)
            .map(|t| {
                (
                    t.clone(),
                    inner.epochs.get(&t.user_id).copied().unwrap_or(0),
                )
            }))
    }

    fn rotate(
        &self,
        id: i64,
        expected: &SecretHash,
        new_token: &SecretHash,
        sealed: &[u8],
        now: i64,
        expires_at: Option<i64>,
    ) -> Result<bool, StoreError> {
        let mut inner = self.inner.lock();
        let Some(token) = inner
            .tokens
            .iter_mut()
            .find(|t| t.id == id && t.token_hash.ct_eq(expected.as_bytes()))
        else {
            return Ok(false);
        };
        token.previous_token_hash = Some(token.token_hash.clone());
        token.token_hash = new_token.clone();
        token.sealed_token = Some(sealed.to_vec());
        token.rotated_at = Some(now);
        token.last_used_at = now;
        if let Some(at) = expires_at {
            token.expires_at = at;
        }
        Ok(true)
    }

    fn insert(&self, token: NewToken<'_>) -> Result<i64, StoreError> {
        let mut inner = self.inner.lock();
        if inner
            .tokens
            .iter()
            .any(|t| t.series_hash == *token.series_hash)
        {
            return Err(StoreError::AlreadyExists);
        }
        let id = inner.id();
        inner.tokens.push(TokenRecord {
            id,
            series_hash: token.series_hash.clone(),
            token_hash: token.token_hash.clone(),
            previous_token_hash: None,
            rotated_at: None,
            user_id: token.user_id.clone(),
            created_at: token.now,
            last_used_at: token.now,
            expires_at: token.expires_at,
            user_agent: token.user_agent.map(str::to_owned),
            ip: token.ip.map(str::to_owned),
            device_key: token.device_key.map(str::to_owned),
            sealed_token: None,
        });
        Ok(id)
    }

    fn retire_replaced(&self, retire: Retire<'_>) -> Result<usize, StoreError> {
        let mut inner = self.inner.lock();
        let before = inner.tokens.len();
        // Older rows only: newer ones are sign-ins still running.
        inner.tokens.retain(|t| {
            let browser = retire.browser_series == Some(&t.series_hash);
            let device = t.user_id == *retire.user
                && retire.device_key.is_some()
                && t.device_key.as_deref() == retire.device_key;
            t.id >= retire.kept || !(browser || device)
        });
        // Beyond the cap, the least recently used go (the new token counts
        // as one).
        let mut older: Vec<(i64, i64)> = inner
            .tokens
            .iter()
            .filter(|t| t.user_id == *retire.user && t.id < retire.kept)
            .map(|t| (t.last_used_at, t.id))
            .collect();
        older.sort_unstable_by(|a, b| b.cmp(a));
        let room = (retire.max_per_user as usize).saturating_sub(1);
        let excess: Vec<i64> = older.iter().skip(room).map(|&(_, id)| id).collect();
        inner.tokens.retain(|t| !excess.contains(&t.id));
        Ok(before - inner.tokens.len())
    }

    fn find_owner(&self, id: i64) -> Result<Option<UserId>, StoreError> {
        let inner = self.inner.lock();
        Ok(inner
            .tokens
            .iter()
            .find(|t| t.id == id)
            .map(|t| t.user_id.clone()))
    }

    fn delete_series(&self, series: &SecretHash) -> Result<bool, StoreError> {
        let mut inner = self.inner.lock();
        let before = inner.tokens.len();
        inner.tokens.retain(|t| t.series_hash != *series);
        Ok(inner.tokens.len() < before)
    }

    fn delete_by_id(&self, id: i64, owner: Option<&UserId>) -> Result<bool, StoreError> {
        let mut inner = self.inner.lock();
        let before = inner.tokens.len();
        inner
            .tokens
            .retain(|t| !(t.id == id && owner.is_none_or(|o| *o == t.user_id)));
        Ok(inner.tokens.len() < before)
    }

    fn delete_all_for_user(&self, user: &UserId) -> Result<usize, StoreError> {
        let mut inner = self.inner.lock();
        let before = inner.tokens.len();
        inner.tokens.retain(|t| t.user_id != *user);
        Ok(before - inner.tokens.len())
    }

    fn delete_device(&self, user: &UserId, device_key: &str) -> Result<usize, StoreError> {
        let mut inner = self.inner.lock();
        let before = inner.tokens.len();
        inner
            .tokens
            .retain(|t| t.user_id != *user || t.device_key.as_deref() != Some(device_key));
        Ok(before - inner.tokens.len())
    }

    fn revoke_all_atomically(
        &self,
        user: &UserId,
        event: &NewAuditEvent<'_>,
    ) -> Result<Option<usize>, StoreError> {
        let mut inner = self.inner.lock();
        let before = inner.tokens.len();
        inner.tokens.retain(|t| t.user_id != *user);
        let n = before - inner.tokens.len();
        *inner.epochs.entry(user.clone()).or_insert(0) += 1;
        inner.record(event);
        Ok(Some(n))
    }

    fn list_for_user(&self, user: &UserId) -> Result<Vec<TokenRecord>, StoreError> {
        let inner = self.inner.lock();
        let mut tokens: Vec<TokenRecord> = inner
            .tokens
            .iter()
            .filter(|t| t.user_id == *user)
            .cloned()
            .collect();
        tokens.sort_by_key(|t| std::cmp::Reverse((t.last_used_at, t.id)));
        Ok(tokens)
    }

    fn list(
        &self,
        user: Option<&UserId>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<TokenRecord>, StoreError> {
        let inner = self.inner.lock();
        let mut tokens: Vec<TokenRecord> = inner
            .tokens
            .iter()
            .filter(|t| user.is_none_or(|u| *u == t.user_id))
            .filter(|t| before.is_none_or(|before| t.id < before))
            .cloned()
            .collect();
        tokens.sort_by_key(|t| std::cmp::Reverse(t.id));
        Ok(page(tokens, 0, limit))
    }

    fn purge_expired(&self, now: i64) -> Result<usize, StoreError> {
        let mut inner = self.inner.lock();
        let before = inner.tokens.len();
        inner.tokens.retain(|t| t.expires_at > now);
        Ok(before - inner.tokens.len())
    }
}

impl StateStore for MemoryStore {
    fn auth_epoch(&self, id: &UserId) -> Result<i64, StoreError> {
        Ok(self.inner.lock().epochs.get(id).copied().unwrap_or(0))
    }

    fn bump_epoch(&self, id: &UserId) -> Result<(), StoreError> {
        *self.inner.lock().epochs.entry(id.clone()).or_insert(0) += 1;
        Ok(())
    }

    fn bump_epoch_from(&self, id: &UserId, expected: i64) -> Result<Option<i64>, StoreError> {
        let mut inner = self.inner.lock();
        let epoch = inner.epochs.entry(id.clone()).or_insert(0);
        if *epoch != expected {
            return Ok(None);
        }
        *epoch += 1;
        Ok(Some(*epoch))
    }

    fn failures(&self, key: &ThrottleKey) -> Result<Option<(u32, i64)>, StoreError> {
        Ok(self.inner.lock().failures.get(key).copied())
    }

    fn reserve_attempt(
        &self,
        key: &ThrottleKey,
        now: i64,
        window_secs: i64,
        max: u32,
    ) -> Result<Reservation, StoreError> {
        let mut inner = self.inner.lock();
        let counter = inner.failures.entry(*key).or_insert((0, now));
        if counter.1 <= now.saturating_sub(window_secs) {
            *counter = (0, now);
        }
        if counter.0 >= max {
            return Ok(Reservation::Throttled {
                last_failed_at: counter.1,
            });
        }
        *counter = (counter.0 + 1, now);
        Ok(Reservation::Allowed)
    }

    fn clear_failures(&self, key: &ThrottleKey) -> Result<(), StoreError> {
        self.inner.lock().failures.remove(key);
        Ok(())
    }

    fn purge_failures(&self, cutoff: i64) -> Result<usize, StoreError> {
        let mut inner = self.inner.lock();
        let before = inner.failures.len();
        inner.failures.retain(|_, (_, at)| *at >= cutoff);
        Ok(before - inner.failures.len())
    }

    fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

impl AuditLog for MemoryStore {
    fn record(&self, event: NewAuditEvent<'_>) -> Result<(), StoreError> {
        self.inner.lock().record(&event);
        Ok(())
    }

    fn list(
        &self,
        kind: Option<&str>,
        user: Option<&UserId>,
        before: Option<(i64, i64)>,
        limit: i64,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let inner = self.inner.lock();
        let mut events: Vec<AuditEvent> = inner
            .audit
            .iter()
            .filter(|e| kind.is_none_or(|k| e.kind == k))
            .filter(|e| user.is_none_or(|u| e.user_id.as_ref() == Some(u)))
            .filter(|e| before.is_none_or(|before| (e.at, e.id) < before))
            .cloned()
            .collect();
        events.sort_by_key(|e| std::cmp::Reverse((e.at, e.id)));
        Ok(page(events, 0, limit))
    }

    fn purge_before(&self, cutoff: i64) -> Result<usize, StoreError> {
        let mut inner = self.inner.lock();
        let before = inner.audit.len();
        inner.audit.retain(|e| e.at >= cutoff);
        Ok(before - inner.audit.len())
    }
}
