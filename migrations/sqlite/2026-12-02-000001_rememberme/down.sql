DROP TABLE user_state;
DROP TABLE login_failures;
DROP TABLE audit_events;
DROP TABLE remember_tokens;
