use super::{client_addr, client_network, ip_limiter, ip_throttled};

fn from(peer: &str, headers: &[(&str, &str)]) -> actix_web::HttpRequest {
    let mut req = actix_web::test::TestRequest::default().peer_addr(peer.parse().unwrap());
    for &(name, value) in headers {
        req = req.insert_header((name, value));
    }
    req.to_http_request()
}

#[test]
#[allow(clippy::too_many_lines)] // one table of cases, read top to bottom
fn forwarded_addresses_count_only_from_trusted_proxies() {
    use crate::config::ForwardedHeader::{Forwarded, XForwardedFor};
    let trusted: Vec<ipnet::IpNet> =
        vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
    let addr = |req, header| client_addr(&req, &trusted, header).unwrap().to_string();
    let xff = |v| ("x-forwarded-for", v);
    // An untrusted peer's header is ignored.
    assert_eq!(
        addr(from("203.0.113.5:1", &[xff("198.51.100.1")]), XForwardedFor),
        "203.0.113.5"
    );
    // Behind a trusted proxy: the address it appended.
    assert_eq!(
        addr(from("10.1.2.3:1", &[xff("198.51.100.1")]), XForwardedFor),
        "198.51.100.1"
    );
    // A mapped IPv6 peer is its IPv4 address.
    assert_eq!(
        addr(
            from("[::ffff:10.1.2.3]:1", &[xff("198.51.100.1")]),
            XForwardedFor
        ),
        "198.51.100.1"
    );
    // A forged entry stands left of what the proxy appended: skipped.
    assert_eq!(
        addr(
            from("10.1.2.3:1", &[xff("1.2.3.4, 198.51.100.1")]),
            XForwardedFor
        ),
        "198.51.100.1"
    );
    // Two trusted proxies in a row; several header lines, in order.
    assert_eq!(
        addr(
            from("10.1.2.3:1", &[xff("1.2.3.4, 198.51.100.1, 10.9.9.9")]),
            XForwardedFor
        ),
        "198.51.100.1"
    );
    assert_eq!(
        addr(
            from("10.1.2.3:1", &[xff("1.2.3.4"), xff("198.51.100.1")]),
            XForwardedFor
        ),
        "198.51.100.1"
    );
    // Only the configured header: a client's own Forwarded, passed
    // through by a proxy that appends X-Forwarded-For, counts for nothing.
    assert_eq!(
        addr(
            from(
                "10.1.2.3:1",
                &[("forwarded", "for=1.2.3.4"), xff("198.51.100.1")]
            ),
            XForwardedFor
        ),
        "198.51.100.1"
    );
    // Forwarded (RFC 7239) when configured: IPv6 and ports.
    assert_eq!(
        addr(
            from(
                "[::1]:1",
                &[(
                    "forwarded",
                    "for=1.2.3.4, for=\"[2001:db8::7]:4711\";proto=https"
                )]
            ),
            Forwarded
        ),
        "2001:db8::7"
    );
    assert_eq!(
        addr(
            from("10.1.2.3:1", &[("forwarded", "for=192.0.2.60:8080")]),
            Forwarded
        ),
        "192.0.2.60"
    );
    // Garbage ends the chain, and what stands left of it is not read:
    // the proxy itself is the client then.
    for header in [xff("unknown"), xff("1.2.3.4, unknown")] {
        assert_eq!(
            addr(from("10.1.2.3:1", &[header]), XForwardedFor),
            "10.1.2.3"
        );
    }
    assert_eq!(
        addr(
            from("10.1.2.3:1", &[("forwarded", "for=1.2.3.4, for=_hidden")]),
            Forwarded
        ),
        "10.1.2.3"
    );
    assert_eq!(
        addr(
            from("10.1.2.3:1", &[("forwarded", "proto=https")]),
            Forwarded
        ),
        "10.1.2.3"
    );
    assert_eq!(addr(from("10.1.2.3:1", &[]), XForwardedFor), "10.1.2.3");
    // No trusted proxies (the default): always the peer.
    assert_eq!(
        client_addr(
            &from("10.1.2.3:1", &[xff("198.51.100.1")]),
            &[],
            XForwardedFor
        )
        .unwrap()
        .to_string(),
        "10.1.2.3"
    );
}

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
