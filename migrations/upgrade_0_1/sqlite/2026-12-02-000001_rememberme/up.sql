-- From rememberme 0.1's schema to the tables of migrations/sqlite, under
-- the same version: afterwards the database is as if created by 0.2. The
-- users table stays (it is the `users-table` feature's), without the
-- columns that moved into the crate's own tables; user ids become text.
CREATE TABLE user_state (
    user_id TEXT PRIMARY KEY NOT NULL,
    auth_epoch BIGINT NOT NULL DEFAULT 0
);
INSERT INTO user_state (user_id, auth_epoch)
    SELECT CAST(id AS TEXT), auth_epoch FROM users WHERE auth_epoch <> 0;

CREATE TABLE remember_tokens_v2 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    series_hash BLOB NOT NULL UNIQUE,
    token_hash BLOB NOT NULL,
    previous_token_hash BLOB,
    rotated_at BIGINT,
    user_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    user_agent TEXT,
    ip TEXT,
    device_key TEXT,
    sealed_token BLOB
);
INSERT INTO remember_tokens_v2 (id, series_hash, token_hash, previous_token_hash,
        rotated_at, user_id, created_at, last_used_at, expires_at, user_agent, ip,
        device_key, sealed_token)
    SELECT id, series_hash, token_hash, previous_token_hash, rotated_at,
        CAST(user_id AS TEXT), created_at, last_used_at, expires_at, user_agent, ip,
        device_key, sealed_token
    FROM remember_tokens;
DROP TABLE remember_tokens;
ALTER TABLE remember_tokens_v2 RENAME TO remember_tokens;
CREATE INDEX remember_tokens_user_id ON remember_tokens(user_id);
CREATE INDEX remember_tokens_expires_at ON remember_tokens(expires_at);
CREATE INDEX remember_tokens_user_device ON remember_tokens(user_id, device_key);

CREATE TABLE audit_events_v2 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    user_id TEXT,
    ip TEXT,
    user_agent TEXT,
    detail TEXT NOT NULL DEFAULT ''
);
INSERT INTO audit_events_v2 (id, at, kind, user_id, ip, user_agent, detail)
    SELECT id, at, kind, CAST(user_id AS TEXT), ip, user_agent, detail FROM audit_events;
DROP TABLE audit_events;
ALTER TABLE audit_events_v2 RENAME TO audit_events;
CREATE INDEX audit_events_at ON audit_events(at);
CREATE INDEX audit_events_user_id ON audit_events(user_id);

ALTER TABLE users DROP COLUMN auth_epoch;
ALTER TABLE users DROP COLUMN failed_logins;
ALTER TABLE users DROP COLUMN last_failed_at;
