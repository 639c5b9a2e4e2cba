use super::*;

#[test]
fn the_grace_window_bounds_the_age_on_both_sides() {
    let config = RememberMeConfig::default();
    let mut record = crate::store::TokenRecord {
        id: 1,
        series_hash: SecretHash::from_slice(&[1; 32]).unwrap(),
        token_hash: SecretHash::from_slice(&[2; 32]).unwrap(),
        previous_token_hash: Some(SecretHash::from_slice(&[3; 32]).unwrap()),
        rotated_at: None,
        user_id: UserId::from(1),
        created_at: 0,
        last_used_at: 0,
        expires_at: i64::MAX,
        user_agent: None,
        ip: None,
        device_key: None,
        sealed_token: None,
    };
    let now = 10_000;
    for (rotated_at, skew, expected) in [
        (None, 0, false),
        (Some(now), 0, true),
        (Some(now - 60), 0, true),
        (Some(now - 61), 0, false),
        // One clock: no age below 0.
        (Some(now + 1), 0, false),
        // This instance's clock, a minute behind another instance's.
        (Some(now + 60), 60, true),
        // Further: not a grace without end.
        (Some(now + 61), 60, false),
        (Some(i64::MIN), 60, false),
        (Some(i64::MAX), 60, false),
    ] {
        record.rotated_at = rotated_at;
        assert_eq!(
            in_grace(&record, now, &config, skew),
            expected,
            "{rotated_at:?} {skew}"
        );
    }
}
