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
    assert!(shown.contains("[redacted]"), "{shown}");
}
