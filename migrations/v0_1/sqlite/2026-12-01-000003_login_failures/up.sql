-- Failed password checks per throttle key (SHA-256 of an account name as
-- typed, or of a device cookie's nonce), shared by every instance on this
-- database. Holds no username: unknown names are counted like real ones.
CREATE TABLE login_failures (
    key BLOB PRIMARY KEY NOT NULL,
    failures INTEGER NOT NULL,
    last_failed_at BIGINT NOT NULL
);
CREATE INDEX login_failures_last_failed_at ON login_failures(last_failed_at);
