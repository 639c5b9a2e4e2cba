//! Row types: read structs apart from insert structs.

use diesel::prelude::*;

use super::schema::{audit_events, remember_tokens, users};

#[derive(Queryable, Selectable)]
#[diesel(table_name = users)]
pub(super) struct UserRow {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub is_admin: bool,
    pub auth_epoch: i64,
    pub created_at: i64,
    // Columns of 0.1, read with the rest (the PostgreSQL batch selects every
    // column) but no longer used: failure counters live in `login_failures`.
    #[allow(dead_code)]
    pub failed_logins: i32,
    #[allow(dead_code)]
    pub last_failed_at: Option<i64>,
}

#[derive(Insertable)]
#[diesel(table_name = users)]
pub(super) struct NewUserRow<'a> {
    pub username: &'a str,
    pub password_hash: &'a str,
    pub is_admin: bool,
    pub auth_epoch: i64,
    pub created_at: i64,
    pub failed_logins: i32,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = remember_tokens)]
pub(super) struct TokenRow {
    pub id: i64,
    pub series_hash: Vec<u8>,
    pub token_hash: Vec<u8>,
    pub previous_token_hash: Option<Vec<u8>>,
    pub rotated_at: Option<i64>,
    pub user_id: i64,
    pub created_at: i64,
    pub last_used_at: i64,
    pub expires_at: i64,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub device_key: Option<String>,
    pub sealed_token: Option<Vec<u8>>,
}

#[derive(Insertable)]
#[diesel(table_name = remember_tokens)]
pub(super) struct NewTokenRow<'a> {
    pub series_hash: &'a [u8],
    pub token_hash: &'a [u8],
    pub user_id: i64,
    pub created_at: i64,
    pub last_used_at: i64,
    pub expires_at: i64,
    pub user_agent: Option<&'a str>,
    pub ip: Option<&'a str>,
    pub device_key: Option<&'a str>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = audit_events)]
pub(super) struct AuditRow {
    pub id: i64,
    pub at: i64,
    pub kind: String,
    pub user_id: Option<i64>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub detail: String,
}

#[derive(Insertable)]
#[diesel(table_name = audit_events)]
pub(super) struct NewAuditRow<'a> {
    pub at: i64,
    pub kind: &'a str,
    pub user_id: Option<i64>,
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub detail: &'a str,
}
