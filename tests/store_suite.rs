//! The store acceptance suite (issue 15) on every store the crate has: in
//! memory, SQLite and PostgreSQL. A third-party store runs the same call.

mod common;

use common::TestDb;
use rememberme::testing::{MemoryStore, store_acceptance_suite};
use rememberme::{Database, DieselStore};

#[test]
fn the_memory_store_passes_the_acceptance_suite() {
    store_acceptance_suite(MemoryStore::new());
}

async fn the_diesel_store_passes_the_acceptance_suite(db: TestDb) {
    let database = Database::connect(&db.url, 8).unwrap();
    store_acceptance_suite(DieselStore::new(database.clone()));
    assert!(database.close(std::time::Duration::from_secs(5)));
}

on_both_backends!(the_diesel_store_passes_the_acceptance_suite);

/// The suite can fail: a store that breaks one rule is caught.
mod mutants {
    use rememberme::store::{
        AuditEvent, AuditLog, NewAuditEvent, NewToken, Reservation, Retire, StateStore, StoreError,
        ThrottleKey, TokenRecord, TokenStore, UserId,
    };
    use rememberme::testing::{MemoryStore, store_acceptance_suite};
    use rememberme::token::SecretHash;

    /// The memory store with one rule broken.
    struct Mutant {
        inner: MemoryStore,
        /// `rotate` swaps whatever the current token is (no compare).
        no_compare: bool,
        /// `reserve_attempt` always allows (no limit).
        no_limit: bool,
        /// `bump_epoch_from` ignores the expected epoch.
        no_expected_epoch: bool,
    }

    impl Mutant {
        fn new() -> Self {
            Self {
                inner: MemoryStore::new(),
                no_compare: false,
                no_limit: false,
                no_expected_epoch: false,
            }
        }
    }

    impl TokenStore for Mutant {
        fn find_by_series(&self, s: &SecretHash) -> Result<Option<TokenRecord>, StoreError> {
            self.inner.find_by_series(s)
        }
        fn find_by_series_with_epoch(
            &self,
            s: &SecretHash,
        ) -> Result<Option<(TokenRecord, i64)>, StoreError> {
            self.inner.find_by_series_with_epoch(s)
        }
        fn rotate(
            &self,
            id: i64,
            expected: &SecretHash,
            new: &SecretHash,
            sealed: &[u8],
            now: i64,
            expires_at: Option<i64>,
        ) -> Result<bool, StoreError> {
            let expected = match self.no_compare {
                true => {
                    let owner = self.inner.find_owner(id)?;
                    let current = owner
                        .and_then(|o| self.inner.list_for_user(&o).ok())
                        .and_then(|l| l.into_iter().find(|t| t.id == id))
                        .map(|t| t.token_hash);
                    current.unwrap_or_else(|| expected.clone())
                }
                false => expected.clone(),
            };
            self.inner
                .rotate(id, &expected, new, sealed, now, expires_at)
        }
        fn insert(&self, t: NewToken<'_>) -> Result<i64, StoreError> {
            self.inner.insert(t)
        }
        fn retire_replaced(&self, retire: Retire<'_>) -> Result<usize, StoreError> {
            self.inner.retire_replaced(retire)
        }
        fn find_owner(&self, id: i64) -> Result<Option<UserId>, StoreError> {
            self.inner.find_owner(id)
        }
        fn delete_series(&self, s: &SecretHash) -> Result<bool, StoreError> {
            self.inner.delete_series(s)
        }
        fn delete_by_id(&self, id: i64, owner: Option<&UserId>) -> Result<bool, StoreError> {
            self.inner.delete_by_id(id, owner)
        }
        fn delete_all_for_user(&self, u: &UserId) -> Result<usize, StoreError> {
            self.inner.delete_all_for_user(u)
        }
        fn list_for_user(&self, u: &UserId) -> Result<Vec<TokenRecord>, StoreError> {
            self.inner.list_for_user(u)
        }
        fn list(
            &self,
            u: Option<&UserId>,
            before: Option<i64>,
            limit: i64,
        ) -> Result<Vec<TokenRecord>, StoreError> {
            TokenStore::list(&self.inner, u, before, limit)
        }
        fn purge_expired(&self, now: i64) -> Result<usize, StoreError> {
            self.inner.purge_expired(now)
        }
    }

    impl StateStore for Mutant {
        fn auth_epoch(&self, id: &UserId) -> Result<i64, StoreError> {
            self.inner.auth_epoch(id)
        }
        fn bump_epoch(&self, id: &UserId) -> Result<(), StoreError> {
            self.inner.bump_epoch(id)
        }
        fn bump_epoch_from(&self, id: &UserId, expected: i64) -> Result<Option<i64>, StoreError> {
            match self.no_expected_epoch {
                true => {
                    let now = self.inner.auth_epoch(id)?;
                    self.inner.bump_epoch_from(id, now)
                }
                false => self.inner.bump_epoch_from(id, expected),
            }
        }
        fn failures(&self, k: &ThrottleKey) -> Result<Option<(u32, i64)>, StoreError> {
            self.inner.failures(k)
        }
        fn reserve_attempt(
            &self,
            k: &ThrottleKey,
            now: i64,
            window: i64,
            max: u32,
        ) -> Result<Reservation, StoreError> {
            let max = if self.no_limit { u32::MAX } else { max };
            self.inner.reserve_attempt(k, now, window, max)
        }
        fn clear_failures(&self, k: &ThrottleKey) -> Result<(), StoreError> {
            self.inner.clear_failures(k)
        }
        fn purge_failures(&self, cutoff: i64) -> Result<usize, StoreError> {
            self.inner.purge_failures(cutoff)
        }
        fn ping(&self) -> Result<(), StoreError> {
            self.inner.ping()
        }
    }

    impl AuditLog for Mutant {
        fn record(&self, e: NewAuditEvent<'_>) -> Result<(), StoreError> {
            self.inner.record(e)
        }
        fn list(
            &self,
            kind: Option<&str>,
            u: Option<&UserId>,
            before: Option<(i64, i64)>,
            limit: i64,
        ) -> Result<Vec<AuditEvent>, StoreError> {
            AuditLog::list(&self.inner, kind, u, before, limit)
        }
        fn purge_before(&self, cutoff: i64) -> Result<usize, StoreError> {
            self.inner.purge_before(cutoff)
        }
    }

    fn fails(mutant: Mutant) -> bool {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            store_acceptance_suite(mutant)
        }))
        .is_err()
    }

    #[test]
    fn a_store_that_breaks_a_rule_fails_the_suite() {
        assert!(!fails(Mutant::new()), "the faithful delegate passes");
        for (rule, mutant) in [
            (
                "compare-and-swap",
                Mutant {
                    no_compare: true,
                    ..Mutant::new()
                },
            ),
            (
                "failure limit",
                Mutant {
                    no_limit: true,
                    ..Mutant::new()
                },
            ),
            (
                "expected epoch",
                Mutant {
                    no_expected_epoch: true,
                    ..Mutant::new()
                },
            ),
        ] {
            assert!(fails(mutant), "a store without the {rule} passed");
        }
    }
}
