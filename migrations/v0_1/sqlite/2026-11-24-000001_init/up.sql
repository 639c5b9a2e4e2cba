-- Times are Unix seconds (BIGINT) so both backends share one Rust type.
CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    is_admin BOOLEAN NOT NULL DEFAULT 0,
    auth_epoch BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    failed_logins INTEGER NOT NULL DEFAULT 0,
    last_failed_at BIGINT
);

CREATE TABLE remember_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    series_hash BLOB NOT NULL UNIQUE,
    token_hash BLOB NOT NULL,
    previous_token_hash BLOB,
    rotated_at BIGINT,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    user_agent TEXT,
    ip TEXT
);
CREATE INDEX remember_tokens_user_id ON remember_tokens(user_id);
CREATE INDEX remember_tokens_expires_at ON remember_tokens(expires_at);

CREATE TABLE audit_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    user_id BIGINT REFERENCES users(id) ON DELETE SET NULL,
    ip TEXT,
    user_agent TEXT,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_events_at ON audit_events(at);
CREATE INDEX audit_events_user_id ON audit_events(user_id);
