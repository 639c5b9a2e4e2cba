// @generated automatically by Diesel CLI.

diesel::table! {
    audit_events (id) {
        id -> Int8,
        at -> Int8,
        kind -> Text,
        user_id -> Nullable<Int8>,
        ip -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        detail -> Text,
    }
}

diesel::table! {
    login_failures (key) {
        key -> Bytea,
        failures -> Int4,
        last_failed_at -> Int8,
    }
}

diesel::table! {
    remember_tokens (id) {
        id -> Int8,
        series_hash -> Bytea,
        token_hash -> Bytea,
        previous_token_hash -> Nullable<Bytea>,
        rotated_at -> Nullable<Int8>,
        user_id -> Int8,
        created_at -> Int8,
        last_used_at -> Int8,
        expires_at -> Int8,
        user_agent -> Nullable<Text>,
        ip -> Nullable<Text>,
        device_key -> Nullable<Text>,
        sealed_token -> Nullable<Bytea>,
    }
}

diesel::table! {
    users (id) {
        id -> Int8,
        username -> Text,
        password_hash -> Text,
        is_admin -> Bool,
        auth_epoch -> Int8,
        created_at -> Int8,
        failed_logins -> Int4,
        last_failed_at -> Nullable<Int8>,
    }
}

diesel::joinable!(audit_events -> users (user_id));
diesel::joinable!(remember_tokens -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(audit_events, login_failures, remember_tokens, users,);
