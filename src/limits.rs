//! Who the client is (its address, behind trusted proxies only) and the
//! per-client limit of password attempts, by network.

use std::net::IpAddr;

use actix_web::HttpRequest;
use ipnet::IpNet;

use crate::config::ForwardedHeader;

/// The client's address: the socket's peer, unless the peer is a trusted
/// proxy ([`RememberMeConfigBuilder::trusted_proxies`](crate::config::RememberMeConfigBuilder::trusted_proxies)):
/// then the nearest address in the header the proxies write (one, never
/// the other: a proxy that appends to one passes a client's forged other
/// one through) that is not itself a trusted proxy, read from the right, as
/// each proxy appends the address it saw. A client cannot forge its way
/// past that: whatever it writes stands to the left of what the first
/// trusted proxy appended.
pub(crate) fn client_addr(
    req: &HttpRequest,
    trusted: &[IpNet],
    header: ForwardedHeader,
) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip().to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let chain = forwarded_chain(req, header);
    let mut client = peer;
    for hop in chain.into_iter().rev() {
        client = hop;
        if !is_trusted(&hop) {
            break;
        }
    }
    Some(client)
}

/// The addresses a request passed through, oldest first, from `header`
/// (all its lines, in order). A value that is not an address (`unknown`,
/// an obfuscated name, an element without `for=`) ends the chain there,
/// keeping only what stands to its right.
fn forwarded_chain(req: &HttpRequest, header: ForwardedHeader) -> Vec<IpAddr> {
    use actix_web::http::header::{FORWARDED, HeaderName};
    let values = |name: &HeaderName| -> Vec<String> {
        req.headers()
            .get_all(name)
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|v| v.trim().to_owned())
            .collect()
    };
    let hops: Vec<String> = match header {
        ForwardedHeader::XForwardedFor => values(&HeaderName::from_static("x-forwarded-for")),
        ForwardedHeader::Forwarded => values(&FORWARDED)
            .iter()
            .map(|element| {
                element
                    .split(';')
                    .find_map(|pair| {
                        let (key, value) = pair.trim().split_once('=')?;
                        key.eq_ignore_ascii_case("for").then(|| value.to_owned())
                    })
                    .unwrap_or_default()
            })
            .collect(),
    };
    let mut chain = Vec::new();
    for hop in hops.iter().rev() {
        match parse_hop(hop) {
            Some(ip) => chain.push(ip),
            None => break,
        }
    }
    chain.reverse();
    chain
}

/// `192.0.2.1`, `192.0.2.1:80`, `"[2001:db8::1]:4711"`, `2001:db8::1`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim().trim_matches('"');
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Some(rest) = hop.strip_prefix('[') {
        return rest
            .split(']')
            .next()?
            .parse::<IpAddr>()
            .ok()
            .map(|ip| ip.to_canonical());
    }
    let (host, _port) = hop.rsplit_once(':')?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

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
        client_addr(req, &config.trusted_proxies, config.forwarded_header)?,
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
}
