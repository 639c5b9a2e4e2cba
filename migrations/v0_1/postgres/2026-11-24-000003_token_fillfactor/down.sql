ALTER TABLE remember_tokens RESET (fillfactor);
