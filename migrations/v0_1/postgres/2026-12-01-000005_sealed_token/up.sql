-- The current token sealed under the token it replaced (see
-- RememberCookie::seal_next): a request that presents the replaced token
-- within the grace window gets the current one back. Unreadable without the
-- replaced token, which the database never holds.
ALTER TABLE remember_tokens ADD COLUMN sealed_token BYTEA;
