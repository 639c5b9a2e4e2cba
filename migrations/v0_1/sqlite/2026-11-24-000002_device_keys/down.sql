DROP INDEX remember_tokens_user_device;
ALTER TABLE remember_tokens DROP COLUMN device_key;
