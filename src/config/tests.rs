use super::*;

#[test]
fn mapped_ipv6_proxy_networks_are_read_as_ipv4() {
    let config = RememberMeConfig::builder()
        .trusted_proxies([
            "::ffff:10.0.0.0/104".parse().unwrap(),
            "::ffff:192.0.2.1/128".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ])
        .build();
    let shown: Vec<String> = config
        .trusted_proxies
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(shown, ["10.0.0.0/8", "192.0.2.1/32", "2001:db8::/32"]);
}

/// Expiry sums (`now + validity`, `created_at + max_lifetime`, in Rust
/// and in SQL) stay far from `i64::MAX` whatever a site configures.
#[test]
fn token_lifetimes_are_capped() {
    let config = RememberMeConfig::builder()
        .validity(Duration::MAX)
        .max_lifetime(Duration::MAX)
        .build();
    assert_eq!(config.validity(), MAX_TOKEN_LIFETIME);
    assert_eq!(config.max_lifetime, MAX_TOKEN_LIFETIME);
    let short = Duration::from_secs(3600);
    assert_eq!(
        RememberMeConfig::builder()
            .validity(short)
            .build()
            .validity(),
        short
    );
}

/// Every duration setting is capped like the token lifetimes: read as
/// seconds in an `i64` (`as_secs() as i64`), `Duration::MAX` would wrap to
/// -1, and a lockout of -1 s locked nobody.
#[test]
fn every_duration_setting_is_capped() {
    let config = RememberMeConfig::builder()
        .rotation_grace(Duration::MAX)
        .epoch_check_interval(Duration::MAX)
        .session_lifetime(Duration::MAX)
        .lockout(Duration::MAX)
        .access_token_lifetime(Duration::MAX)
        .reauth_window(Duration::MAX)
        .build();
    for (name, setting) in [
        ("rotation_grace", config.rotation_grace),
        ("epoch_check_interval", config.epoch_check_interval),
        ("session_lifetime", config.session_lifetime),
        ("lockout", config.lockout),
        ("access_token_lifetime", config.access_token_lifetime),
        ("reauth_window", config.reauth_window),
    ] {
        assert_eq!(setting, MAX_TOKEN_LIFETIME, "{name}");
    }
}
