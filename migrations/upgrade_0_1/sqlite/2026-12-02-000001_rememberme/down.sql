-- Not reversible: 0.1's user ids were the crate's own integers.
SELECT RAISE(ABORT, 'the upgrade from rememberme 0.1 cannot be reverted');
