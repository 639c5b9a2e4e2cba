-- From rememberme 0.1's schema to the tables of migrations/postgres, under
-- the same version: afterwards the database is as if created by 0.2. The
-- users table stays (it is the `users-table` feature's), without the
-- columns that moved into the crate's own tables; user ids become text.
CREATE TABLE user_state (
    user_id TEXT PRIMARY KEY NOT NULL,
    auth_epoch BIGINT NOT NULL DEFAULT 0
);
INSERT INTO user_state (user_id, auth_epoch)
    SELECT id::text, auth_epoch FROM users WHERE auth_epoch <> 0;

ALTER TABLE remember_tokens DROP CONSTRAINT IF EXISTS remember_tokens_user_id_fkey;
ALTER TABLE remember_tokens ALTER COLUMN user_id TYPE TEXT USING user_id::text;
ALTER TABLE audit_events DROP CONSTRAINT IF EXISTS audit_events_user_id_fkey;
ALTER TABLE audit_events ALTER COLUMN user_id TYPE TEXT USING user_id::text;

ALTER TABLE users DROP COLUMN auth_epoch, DROP COLUMN failed_logins, DROP COLUMN last_failed_at;
