ALTER TABLE remember_tokens DROP COLUMN sealed_token;
