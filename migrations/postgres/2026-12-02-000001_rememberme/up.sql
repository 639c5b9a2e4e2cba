-- The crate's own tables. The users are the app's (see UserDirectory):
-- user ids are the app's, as text, and nothing here references its table.
-- Times are Unix seconds (BIGINT) so both backends share one Rust type.
CREATE TABLE remember_tokens (
    id BIGSERIAL PRIMARY KEY,
    series_hash BYTEA NOT NULL UNIQUE,
    token_hash BYTEA NOT NULL,
    previous_token_hash BYTEA,
    rotated_at BIGINT,
    user_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    user_agent TEXT,
    ip TEXT,
    -- App tokens belong to (user, device_key); browser cookies have none.
    device_key TEXT,
    -- The current token sealed under the one it replaced (see
    -- RememberCookie::seal_next): unreadable without the replaced token,
    -- which the database never holds.
    sealed_token BYTEA
-- Room on every heap page for the next version of its rows: a rotation
-- changes no indexed column (the expiry only under sliding expiry), so
-- PostgreSQL can update the row in place (a HOT update).
) WITH (fillfactor = 70);
CREATE INDEX remember_tokens_user_id ON remember_tokens(user_id);
CREATE INDEX remember_tokens_expires_at ON remember_tokens(expires_at);
CREATE INDEX remember_tokens_user_device ON remember_tokens(user_id, device_key);

CREATE TABLE audit_events (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    user_id TEXT,
    ip TEXT,
    user_agent TEXT,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_events_at ON audit_events(at);
CREATE INDEX audit_events_user_id ON audit_events(user_id);

-- Failed password checks per throttle key (SHA-256 of an account name as
-- typed, or of a device cookie's nonce), shared by every instance on this
-- database. Holds no username: unknown names are counted like real ones.
CREATE TABLE login_failures (
    key BYTEA PRIMARY KEY NOT NULL,
    failures INTEGER NOT NULL,
    last_failed_at BIGINT NOT NULL
);
CREATE INDEX login_failures_last_failed_at ON login_failures(last_failed_at);

-- The auth epoch per user: bumped to end every session of the user at
-- once. No row: epoch 0.
CREATE TABLE user_state (
    user_id TEXT PRIMARY KEY NOT NULL,
    auth_epoch BIGINT NOT NULL DEFAULT 0
);
