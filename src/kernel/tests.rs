use super::*;

#[test]
fn a_visit_never_shows_its_cookie_in_debug_output() {
    let cookie = crate::token::RememberCookie::generate().encode();
    let visit = Visit {
        now: 1,
        client: ClientInfo::default(),
        cookie: Some(cookie.clone().into_bytes()),
        device: None,
    };
    let shown = format!("{visit:?}");
    assert!(!shown.contains(&cookie), "{shown}");
    // A derived Debug would print the bytes as numbers.
    let bytes = format!("{:?}", cookie.as_bytes());
    assert!(!shown.contains(&bytes[1..bytes.len() - 1]), "{shown}");
    assert!(shown.contains("[redacted]"), "{shown}");
}
