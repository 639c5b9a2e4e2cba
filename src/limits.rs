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
        crate::telemetry::throttled("address");
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
mod tests;
