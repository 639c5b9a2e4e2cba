-- App tokens: a long-lived token belongs to (user, device_key); browser cookies have none.
ALTER TABLE remember_tokens ADD COLUMN device_key TEXT;
CREATE INDEX remember_tokens_user_device ON remember_tokens(user_id, device_key);
