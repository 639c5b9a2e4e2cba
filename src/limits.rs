//! The per-client limit of password attempts, by network.

use actix_web::HttpRequest;

/// Limits password attempts per client IP.
pub(crate) type IpLimiter = governor::DefaultKeyedRateLimiter<std::net::IpAddr>;

pub(crate) fn ip_limiter(per_minute: u32) -> Option<IpLimiter> {
    let per_minute = std::num::NonZeroU32::new(per_minute)?;
    Some(governor::RateLimiter::keyed(governor::Quota::per_minute(
        per_minute,
    )))
}

/// `Some(seconds to wait)` when this client's network (its address cut to
/// the configured prefix: one IPv4 address, one IPv6 /64 by default) has
/// used up its attempts.
pub(crate) fn ip_throttled(
    limiter: &IpLimiter,
    config: &crate::RememberMeConfig,
    req: &HttpRequest,
) -> Option<u64> {
    use governor::clock::Clock as _;
    let ip = client_network(
        req.peer_addr()?.ip(),
        config.ip_prefix_v4,
        config.ip_prefix_v6,
    );
    // Forget idle addresses now and then so the map stays small.
    if limiter.len() > 10_000 {
        limiter.retain_recent();
    }
    limiter.check_key(&ip).err().map(|not_until| {
        let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
        wait.as_secs().max(1)
    })
}

/// `ip` with every bit past the prefix cleared: the key of its network.
/// An IPv4 address mapped into IPv6 counts as IPv4.
pub(crate) fn client_network(
    ip: std::net::IpAddr,
    v4_prefix: u8,
    v6_prefix: u8,
) -> std::net::IpAddr {
    use std::net::IpAddr;
    fn mask(bits: u32, prefix: u8) -> u128 {
        match u32::from(prefix.min(bits as u8)) {
            0 => 0,
            p => u128::MAX << (128 - p) >> (128 - bits),
        }
    }
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let masked = u32::from(v4) as u128 & mask(32, v4_prefix);
            IpAddr::V4((masked as u32).into())
        }
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & mask(128, v6_prefix)).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::{client_network, ip_limiter, ip_throttled};

    #[test]
    fn addresses_in_one_ipv6_64_share_one_allowance() {
        let limiter = ip_limiter(2).unwrap();
        let config = crate::RememberMeConfig::default();
        let from = |ip: &str| {
            actix_web::test::TestRequest::default()
                .peer_addr(format!("[{ip}]:4000").parse().unwrap())
                .to_http_request()
        };
        assert!(ip_throttled(&limiter, &config, &from("2001:db8:1:2::1")).is_none());
        assert!(ip_throttled(&limiter, &config, &from("2001:db8:1:2::2")).is_none());
        assert!(
            ip_throttled(&limiter, &config, &from("2001:db8:1:2:ffff::9")).is_some(),
            "a third address of the same /64 shares its allowance"
        );
        assert!(
            ip_throttled(&limiter, &config, &from("2001:db8:1:3::1")).is_none(),
            "another /64 has its own"
        );
    }

    #[test]
    fn clients_are_grouped_by_network_for_the_per_ip_limit() {
        let net = |ip: &str, v4, v6| client_network(ip.parse().unwrap(), v4, v6).to_string();
        // One IPv6 subscriber's /64 is one client: rotating the low bits
        // gains no fresh allowance.
        assert_eq!(net("2001:db8:1:2:aaaa::1", 32, 64), "2001:db8:1:2::");
        assert_eq!(
            net("2001:db8:1:2:ffff:ffff:ffff:ffff", 32, 64),
            "2001:db8:1:2::"
        );
        assert_ne!(
            net("2001:db8:1:3::1", 32, 64),
            net("2001:db8:1:2::1", 32, 64)
        );
        assert_eq!(net("2001:db8:1:2:aaaa::1", 32, 128), "2001:db8:1:2:aaaa::1");
        assert_eq!(net("2001:db8:1:2:aaaa::1", 32, 48), "2001:db8:1::");
        assert_eq!(net("2001:db8::1", 32, 0), "::");
        // IPv4 keeps the whole address by default; a prefix groups it.
        assert_eq!(net("203.0.113.77", 32, 64), "203.0.113.77");
        assert_eq!(net("203.0.113.77", 24, 64), "203.0.113.0");
        assert_eq!(
            net("::ffff:203.0.113.77", 24, 64),
            "203.0.113.0",
            "mapped v4 is v4"
        );
    }
}
