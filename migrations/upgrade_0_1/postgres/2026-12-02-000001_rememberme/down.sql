-- Not reversible: 0.1's user ids were the crate's own integers.
DO $$ BEGIN RAISE EXCEPTION 'the upgrade from rememberme 0.1 cannot be reverted'; END $$;
