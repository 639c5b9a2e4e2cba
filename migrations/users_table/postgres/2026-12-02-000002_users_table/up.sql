-- The `users-table` feature's users (UsersTable): Argon2id hashes. Already
-- there in a database upgraded from rememberme 0.1, where it was the
-- crate's own table.
CREATE TABLE IF NOT EXISTS users (
    id BIGSERIAL PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    is_admin BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL
);
