DROP TABLE audit_events;
DROP TABLE remember_tokens;
DROP TABLE users;
