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
