// The crate's own tables (the app's users live elsewhere: see UserDirectory).

diesel::table! {
    audit_events (id) {
        id -> Int8,
        at -> Int8,
        kind -> Text,
        user_id -> Nullable<Text>,
        ip -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        detail -> Text,
    }
}

diesel::table! {
    login_failures (key) {
        key -> Binary,
        failures -> Int4,
        last_failed_at -> Int8,
    }
}

diesel::table! {
    remember_tokens (id) {
        id -> Int8,
        series_hash -> Binary,
        token_hash -> Binary,
        previous_token_hash -> Nullable<Binary>,
        rotated_at -> Nullable<Int8>,
        user_id -> Text,
        created_at -> Int8,
        last_used_at -> Int8,
        expires_at -> Int8,
        user_agent -> Nullable<Text>,
        ip -> Nullable<Text>,
        device_key -> Nullable<Text>,
        sealed_token -> Nullable<Binary>,
    }
}

diesel::table! {
    user_state (user_id) {
        user_id -> Text,
        auth_epoch -> Int8,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    audit_events,
    login_failures,
    remember_tokens,
    user_state
);
