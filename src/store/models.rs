//! Row types: read structs apart from insert structs.

use diesel::prelude::*;

use super::schema::{audit_events, remember_tokens};

#[derive(Queryable, Selectable)]
#[diesel(table_name = remember_tokens)]
pub(super) struct TokenRow {
    pub id: i64,
    pub series_hash: Vec<u8>,
    pub token_hash: Vec<u8>,
    pub previous_token_hash: Option<Vec<u8>>,
    pub rotated_at: Option<i64>,
    pub user_id: String,
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
    pub user_id: &'a str,
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
    pub user_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub detail: String,
}

#[derive(Insertable, Debug, Clone, Copy)]
#[diesel(table_name = audit_events)]
pub(super) struct NewAuditRow<'a> {
    pub at: i64,
    pub kind: &'a str,
    pub user_id: Option<&'a str>,
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub detail: &'a str,
}
