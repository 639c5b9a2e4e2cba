//! The remember-me journey over HTTP, on SQLite and PostgreSQL.

mod common;

use std::time::Duration;

use common::{TestDb, TestServer, raw_parts};

const RM: &str = "__Host-remember_me";
const SESSION: &str = "__Host-session";
const THIRTY_DAYS: i64 = 30 * 24 * 3600;

on_both_backends!(
    sign_in_without_the_box_gives_a_session_and_no_remember_me_cookie,
    sign_in_with_the_box_sets_a_hardened_cookie_and_stores_only_hashes,
    the_remember_me_cookie_alone_signs_in_weakly_and_rotates_on_that_response,
    a_remembered_only_session_is_sent_through_step_up_for_a_strong_page,
    the_pre_rotation_token_converges_in_grace_and_ends_only_its_series_after,
    a_token_two_rotations_back_revokes_everything,
    malformed_and_unknown_cookies_are_removed_and_change_nothing,
    an_expired_token_is_deleted_and_its_cookie_removed,
    logout_clears_cookie_row_and_session,
    another_user_signing_in_revokes_the_series_the_browser_carries,
    the_same_user_signing_in_again_replaces_the_browser_series,
    step_up_from_a_remembered_only_session_never_issues_a_token_by_itself,
    forms_without_a_valid_csrf_token_are_refused,
    next_only_redirects_within_the_site,
    wrong_password_and_unknown_user_get_the_same_generic_401,
    healthz_answers_when_the_database_does,
    every_html_response_carries_the_security_headers,
    a_cookie_minted_by_the_testing_helpers_signs_in_by_remember_me,
    parallel_requests_with_one_cookie_rotate_it_exactly_once_without_theft,
    parallel_sign_ins_of_one_user_stay_within_the_token_cap,
    an_old_copy_of_a_cookie_cannot_sign_its_owner_out,
    logging_out_with_a_forked_cookie_ends_the_series_and_records_possible_theft,
    signing_in_again_over_a_forked_cookie_ends_the_forked_series,
    an_expired_session_is_replaced_by_a_cookie_sign_in_on_the_same_request,
    absolute_expiry_survives_rotations_and_sliding_expiry_moves_with_them,
    a_user_the_app_deleted_is_signed_out_and_their_cookie_refused,
);

/// The app owns its users: once it deletes one, that user's open session
/// ends at its next check and a remember-me cookie of theirs is refused
/// (its series deleted), though the crate's tables still held the token.
async fn a_user_the_app_deleted_is_signed_out_and_their_cookie_refused(db: TestDb) {
    let server = TestServer::start(db); // checks the epoch on every request
    let alice = server.add_user("alice", "correct horse", false);
    let mut session = server.browser();
    session.login("alice", "correct horse", false).await;
    assert_eq!(session.get("/").await.status, 200);
    let cookie =
        rememberme::testing::remember_me_cookie(server.stores(), &server.config, &alice).unwrap();

    common::delete_user_row(&server.db, "alice");

    assert_eq!(session.get("/").await.status, 303, "the session ended");
    let mut browser = server.browser();
    browser.set_cookie(RM, cookie.value());
    let home = browser.get("/").await;
    assert_eq!(home.status, 303, "the cookie signs nobody in");
    assert_eq!(browser.cookie(RM), None, "and is removed");
    assert!(server.tokens_of(&alice).is_empty(), "its series deleted");
}

/// Absolute (the default): rotations keep the expiry set at sign-in, so the
/// cookie dies on schedule however often it is used. Sliding: each rotation
/// moves the expiry to now + validity, never past the maximum lifetime.
async fn absolute_expiry_survives_rotations_and_sliding_expiry_moves_with_them(db: TestDb) {
    const DAY: u64 = 24 * 3600;
    let server = TestServer::start_with(db, |b| {
        b.validity(Duration::from_secs(2 * DAY))
            .epoch_check_interval(Duration::from_secs(60))
    });
    let alice = server.add_user("alice", "correct horse", false);
    let mut browser = server.browser();
    browser.login("alice", "correct horse", true).await;
    let expires_at = server.tokens_of(&alice)[0].expires_at;
    assert_eq!(expires_at, server.clock_now() + 2 * DAY as i64);
    server.clock.advance(Duration::from_secs(DAY));
    browser.drop_cookie(SESSION);
    assert!(browser.get("/").await.set_cookie(RM).is_some(), "rotated");
    let token = &server.tokens_of(&alice)[0];
    assert_eq!(token.rotated_at, Some(server.clock_now()));
    assert_eq!(
        token.expires_at, expires_at,
        "absolute: unchanged by the rotation"
    );
    server.clock.advance(Duration::from_secs(DAY));
    browser.drop_cookie(SESSION);
    let page = browser.get("/").await;
    assert!(!page.body.contains("Signed in as"), "expired on schedule");

    let server = server.restart(|b| {
        b.validity(Duration::from_secs(2 * DAY))
            .expiry(rememberme::config::Expiry::Sliding)
            .max_lifetime(Duration::from_secs(3 * DAY))
            .epoch_check_interval(Duration::from_secs(60))
    });
    let bob = server.add_user("bob", "correct horse", false);
    let mut browser = server.browser();
    browser.login("bob", "correct horse", true).await;
    let created = server.clock_now();
    for day in 1..=2 {
        server.clock.advance(Duration::from_secs(DAY));
        browser.drop_cookie(SESSION);
        assert!(
            browser.get("/").await.body.contains("Signed in as"),
            "day {day}"
        );
        let expected = (server.clock_now() + 2 * DAY as i64).min(created + 3 * DAY as i64);
        assert_eq!(server.tokens_of(&bob)[0].expires_at, expected, "day {day}");
    }
}

async fn an_old_copy_of_a_cookie_cannot_sign_its_owner_out(db: TestDb) {
    let server = TestServer::start(db);
    let alice = server.add_user("alice", "correct horse", false);
    server.add_user("mallory", "mallory pass", false);
    let mut victim = server.browser();
    victim.login("alice", "correct horse", true).await;
    let old = victim.cookie(RM).unwrap();
    victim.drop_cookie(SESSION);
    victim.get("/").await; // rotated
    server.clock.advance(Duration::from_secs(120));
    // Mallory signs in as herself carrying the old copy, then logs out.
    let mut mallory = server.browser();
    mallory.set_cookie(RM, &old);
    mallory.drop_cookie(RM);
    mallory.login("mallory", "mallory pass", false).await;
    mallory.set_cookie(RM, &old);
    mallory.logout().await;
    assert_eq!(
        server.tokens_of(&alice).len(),
        1,
        "the victim's token stays"
    );
    victim.drop_cookie(SESSION);
    assert_eq!(victim.get("/").await.status, 200);
}

/// From an attack review: a copy of the cookie, used while the owner's
/// session kept the owner's browser from presenting its own, forked the
/// series; the owner's logout then found its cookie stale, deleted
/// nothing, recorded nothing and dropped the cookie, the only sign of the
/// fork, and the copy's holder kept the series for its whole validity.
/// Now a stale cookie of the session's own series is judged as the
/// identifying step judges it: one back, the series ends (`possible_theft`),
/// and the copy's session with it.
async fn logging_out_with_a_forked_cookie_ends_the_series_and_records_possible_theft(db: TestDb) {
    let server = TestServer::start(db);
    let alice = server.add_user("alice", "correct horse", false);
    let mut victim = server.browser();
    victim.login("alice", "correct horse", true).await;
    let mut thief = server.browser();
    thief.set_cookie(RM, &victim.cookie(RM).unwrap());
    assert_eq!(thief.get("/").await.status, 200, "the copy signs in");
    server.clock.advance(Duration::from_secs(120));
    let home = victim.get("/").await;
    assert_eq!(home.status, 200, "the victim's session goes on");
    victim
        .post("/logout", &[("csrf_token", &home.csrf())])
        .await;
    assert!(
        server.tokens_of(&alice).is_empty(),
        "the forked series ends"
    );
    assert!(server.wait_for_audit("possible_theft").await);
    server.clock.advance(Duration::from_secs(61));
    assert_eq!(thief.get("/").await.status, 303, "and the copy's session");
}

/// The same fork, met when the owner signs in again with the box ticked:
/// the new series replaces the stale cookie, and the forked one ends.
async fn signing_in_again_over_a_forked_cookie_ends_the_forked_series(db: TestDb) {
    let server = TestServer::start(db);
    let alice = server.add_user("alice", "correct horse", false);
    let mut victim = server.browser();
    victim.login("alice", "correct horse", true).await;
    let mut thief = server.browser();
    thief.set_cookie(RM, &victim.cookie(RM).unwrap());
    assert_eq!(thief.get("/").await.status, 200, "the copy signs in");
    server.clock.advance(Duration::from_secs(120));
    assert_eq!(
        victim.login("alice", "correct horse", true).await.status,
        303
    );
    assert_eq!(server.tokens_of(&alice).len(), 1, "only the new series");
    assert!(server.wait_for_audit("possible_theft").await);
    thief.drop_cookie(SESSION);
    assert_eq!(
        thief.get("/").await.status,
        303,
        "the copy signs in no more"
    );
}

async fn an_expired_session_is_replaced_by_a_cookie_sign_in_on_the_same_request(db: TestDb) {
    let server = TestServer::start(db);
    server.add_user("alice", "correct horse", false);
    let mut browser = server.browser();
    browser.login("alice", "correct horse", true).await;
    server.clock.advance(Duration::from_secs(12 * 3600 + 1));
    let home = browser.get("/").await;
    assert_eq!(home.status, 200, "signed in again by the cookie");
    assert!(home.body.contains("Signed in by remember-me"));
    // The new session was kept: its CSRF token works, no second rotation.
    let cookie = browser.cookie(RM).unwrap();
    let again = browser.get("/").await;
    assert_eq!(again.status, 200);
    assert_eq!(browser.cookie(RM).unwrap(), cookie, "no re-identification");
    let res = browser
        .post("/logout", &[("csrf_token", &again.csrf())])
        .await;
    assert_eq!(res.status, 303);
}

async fn sign_in_without_the_box_gives_a_session_and_no_remember_me_cookie(db: TestDb) {
    let server = TestServer::start(db);
    server.add_user("alice", "correct horse", false);
    let mut browser = server.browser();

    let res = browser.login("alice", "correct horse", false).await;
    assert_eq!(res.status, 303, "{}", res.body);
    assert_eq!(res.location(), Some("/"));
    assert!(
        res.set_cookie(RM).is_none(),
        "no remember-me cookie without the box"
    );
    assert!(browser.cookie(RM).is_none());

    let home = browser.get("/").await;
    assert_eq!(home.status, 200);
    assert!(home.body.contains("Signed in as alice"));
    assert!(home.body.contains("Signed in with your password"));

    browser.drop_cookie(SESSION);
    let home = browser.get("/").await;
    assert_eq!(home.status, 303);
    assert_eq!(home.location(), Some("/login?next=%2F"));
}

async fn sign_in_with_the_box_sets_a_hardened_cookie_and_stores_only_hashes(db: TestDb) {
    let server = TestServer::start(db);
    let alice = server.add_user("alice", "correct horse", false);
    let mut browser = server.browser();

    let res = browser.login("alice", "correct horse", true).await;
    assert_eq!(res.status, 303);
    let cookie = res.set_cookie(RM).expect("remember-me cookie");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.same_site(), Some(actix_web::cookie::SameSite::Lax));
    assert_eq!(cookie.path(), Some("/"));
    assert_eq!(cookie.secure(), Some(true));
    assert_eq!(
        cookie.max_age().map(|d| d.whole_seconds()),
        Some(THIRTY_DAYS)
    );

    let (series, token) = raw_parts(cookie.value());
    assert!(series.len() >= 16 && token.len() >= 32);
    let rows = server.tokens_of(&alice);
    assert_eq!(rows.len(), 1);
    use sha2::Digest as _;
    assert_eq!(
        rows[0].series_hash.as_bytes().as_slice(),
        sha2::Sha256::digest(&series).as_slice()
    );
    assert_eq!(
        rows[0].token_hash.as_bytes().as_slice(),
        sha2::Sha256::digest(&token).as_slice()
    );

    // The raw secrets appear nowhere in the database files.
    if let Some(path) = server.db.sqlite_path() {
        let mut bytes = std::fs::read(&path).unwrap();
        if let Ok(wal) = std::fs::read(path.with_extension("db-wal")) {
            bytes.extend(wal);
        }
        let value = cookie.value().as_bytes();
        for needle in [&series[..], &token[..], value, &value[3..25], &value[26..]] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "a raw secret was found in the database file"
            );
        }
    }
}

async fn the_remember_me_cookie_alone_signs_in_weakly_and_rotates_on_that_response(db: TestDb) {
    let server = TestServer::start(db);
    let alice = server.add_user("alice", "correct horse", false);
    let mut first = server.browser();
    first.login("alice", "correct horse", true).await;
    let issued = first.cookie(RM).unwrap();

    let mut returning = server.browser();
    returning.set_cookie(RM, &issued);
    let home = returning.get("/").await;
    assert_eq!(home.status, 200, "{}", home.body);
    assert!(home.body.contains("Signed in as alice"));
    assert!(home.body.contains("Signed in by remember-me"));
    assert!(home.body.contains("WEAK_AUTHENTICATION"));
    assert!(!home.body.contains("PASSWORD_VERIFIED"));
    let rotated = home.set_cookie(RM).expect("rotated on the same response");
    assert_ne!(rotated.value(), issued);
    assert_eq!(
        raw_parts(rotated.value()).0,
        raw_parts(&issued).0,
        "same series"
    );
    assert_eq!(server.tokens_of(&alice).len(), 1);
    assert!(server.wait_for_audit("remember_me_sign_in").await);

    // A visitor with a valid cookie who opens the sign-in page goes straight on.
    let mut other = server.browser();
    other.set_cookie(RM, rotated.value());
    let res = other.get("/login?next=/somewhere").await;
    assert_eq!(res.status, 303);
    assert_eq!(res.location(), Some("/somewhere"));
}

async fn a_remembered_only_session_is_sent_through_step_up_for_a_strong_page(db: TestDb) {
    let server = TestServer::start(db);
    server.add_user("root", "admin password", true);
    let mut first = server.browser();
    first.login("root", "admin password", true).await;

    let mut returning = server.browser();
    returning.set_cookie(RM, &first.cookie(RM).unwrap());
    let res = returning.get("/admin/tokens").await;
    assert_eq!(res.status, 303);
    assert_eq!(
        res.location(),
        Some("/login/step-up?next=%2Fadmin%2Ftokens")
    );

    let form = returning.get("/login/step-up?next=%2Fadmin%2Ftokens").await;
    assert_eq!(form.status, 200);
    assert!(form.body.contains("Confirm your password"));
    let sid_before = returning.cookie(SESSION);
    let res = returning
        .post(
            "/login/step-up",
            &[
                ("csrf_token", &form.csrf()),
                ("password", "admin password"),
                ("next", "/admin/tokens"),
            ],
        )
        .await;
    assert_eq!(res.status, 303, "{}", res.body);
    assert_eq!(res.location(), Some("/admin/tokens"));
    assert_ne!(
        returning.cookie(SESSION),
        sid_before,
        "session renewed at step-up"
    );
    let page = returning.get("/admin/tokens").await;
    assert_eq!(page.status, 200);
    assert!(server.audit_kinds().contains(&"step_up".to_owned()));
}

/// Issue 14's three cases, black-box. The token one rotation back within
/// the grace window converges: the client is handed the current token.
/// After the window it ends that series only (a lost response and a fork
/// look alike): both copies die, the user's other browser stays signed in.
async fn the_pre_rotation_token_converges_in_grace_and_ends_only_its_series_after(db: TestDb) {
    let server = TestServer::start(db);
    let alice = server.add_user("alice", "correct horse", false);
    let mut other_device = server.browser();
    other_device.login("alice", "correct horse", true).await;
    let mut victim = server.browser();
    victim.login("alice", "correct horse", true).await;
    let old = victim.cookie(RM).unwrap();

    // The victim's browser restarts: session gone, cookie used and rotated.
    victim.drop_cookie(SESSION);
    assert_eq!(victim.get("/").await.status, 200);
    let new = victim.cookie(RM).unwrap();
    assert_ne!(new, old);

    // A client that missed that response (or a parallel request), inside
    // the grace window: accepted, and handed the current token.
    let mut lost_response = server.browser();
    lost_response.set_cookie(RM, &old);
    let res = lost_response.get("/").await;
    assert_eq!(res.status, 200, "accepted in grace");
    assert_eq!(
        lost_response.cookie(RM).as_deref(),
        Some(new.as_str()),
        "converged on the current token"
    );
    assert_eq!(server.tokens_of(&alice).len(), 2, "nothing else changed");

    // After the window, the token one back ends its series, and only it.
    server.clock.advance(Duration::from_secs(61));
    let mut late = server.browser();
    late.set_cookie(RM, &old);
    let res = late.get("/").await;
    assert_eq!(res.status, 303, "signs nobody in");
    let removal = res.set_cookie(RM).expect("cookie removed");
    assert_eq!(removal.max_age().map(|d| d.whole_seconds()), Some(0));
    assert_eq!(server.tokens_of(&alice).len(), 1, "only that series ended");
    assert!(server.audit_kinds().contains(&"possible_theft".to_owned()));
    assert!(!server.audit_kinds().contains(&"theft_detected".to_owned()));
    let mut holder = server.browser();
    holder.set_cookie(RM, &new);
    assert_eq!(
        holder.get("/").await.status,
        303,
        "its newer copy is dead too"
    );
    assert_eq!(
        victim.get("/").await.status,
        303,
        "the session bound to that series ended"
    );
    assert_eq!(
        other_device.get("/").await.status,
        200,
        "the user's other browser stays signed in"
    );
}

/// A token two rotations back can only come from a fork: someone presented
/// its successor. Certain theft: everything of the user ends.
async fn a_token_two_rotations_back_revokes_everything(db: TestDb) {
    let server = TestServer::start(db);
    let alice = server.add_user("alice", "correct horse", false);
    let mut other_device = server.browser();
    other_device.login("alice", "correct horse", true).await;
    let mut victim = server.browser();
    victim.login("alice", "correct horse", true).await;
    let stolen = victim.cookie(RM).unwrap();
    for _ in 0..2 {
        victim.drop_cookie(SESSION);
        assert_eq!(victim.get("/").await.status, 200);
    }
    let mut thief = server.browser();
    thief.set_cookie(RM, &stolen);
    let res = thief.get("/").await;
    assert_eq!(res.status, 303, "the replay signs nobody in");
    assert!(res.set_cookie(RM).is_some(), "cookie removed");
    assert!(server.tokens_of(&alice).is_empty(), "every token revoked");
    assert!(server.audit_kinds().contains(&"theft_detected".to_owned()));
    assert_eq!(
        victim.get("/").await.status,
        303,
        "sessions end (auth epoch)"
    );
    assert_eq!(other_device.get("/").await.status, 303, "everywhere");
}

async fn malformed_and_unknown_cookies_are_removed_and_change_nothing(db: TestDb) {
    let server = TestServer::start(db);
    let alice = server.add_user("alice", "correct horse", false);
    let mut owner = server.browser();
    owner.login("alice", "correct horse", true).await;
    let good = owner.cookie(RM).unwrap();
    let before = server.tokens_of(&alice);
    let audit_before = server.audit_kinds().len();

    let unknown = rememberme::token::RememberCookie::generate().encode();
    let mut series_tampered = good.clone().into_bytes();
    series_tampered[5] = if series_tampered[5] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let cases: Vec<Vec<u8>> = vec![
        good.replacen("v1.", "v9.", 1).into_bytes(),
        series_tampered,
        format!("{}*", &good[..good.len() - 1]).into_bytes(),
        good.as_bytes()[..good.len() - 5].to_vec(),
        Vec::new(),
        vec![b'v', b'1', b'.', 0xC3, 0x28, 0xFF],
        unknown.into_bytes(),
    ];
    for raw in cases {
        let res = get_with_raw_cookie(&server, &raw).await;
        assert_eq!(res.0, 303, "anonymous for {raw:?}");
        assert!(
            res.1
                .iter()
                .any(|c| c.starts_with("__Host-remember_me=;") && c.contains("Max-Age=0")),
            "cookie removed for {raw:?}: {:?}",
            res.1
        );
    }
    assert_eq!(server.tokens_of(&alice), before, "rows unchanged");
    assert_eq!(server.audit_kinds().len(), audit_before, "nothing recorded");
    assert_eq!(owner.get("/").await.status, 200);
}

/// Sends `remember_me=<raw bytes>` (possibly not UTF-8) to `/`.
async fn get_with_raw_cookie(server: &TestServer, raw: &[u8]) -> (u16, Vec<String>) {
    let mut header = b"__Host-remember_me=".to_vec();
    header.extend_from_slice(raw);
    let value = actix_web::http::header::HeaderValue::from_bytes(&header).unwrap();
    let res = awc::Client::builder()
        .disable_redirects()
        .finish()
        .get(format!("{}/", server.base))
        .insert_header(("cookie", value))
        .send()
        .await
        .unwrap();
    let cookies = res
        .headers()
        .get_all("set-cookie")
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    (res.status().as_u16(), cookies)
}

async fn an_expired_token_is_deleted_and_its_cookie_removed(db: TestDb) {
    let server = TestServer::start(db);
    let alice = server.add_user("alice", "correct horse", false);
    let mut browser = server.browser();
    browser.login("alice", "correct horse", true).await;
    browser.drop_cookie(SESSION);

    server
        .clock
        .advance(Duration::from_secs(THIRTY_DAYS as u64 + 1));
    let res = browser.get("/").await;
    assert_eq!(res.status, 303);
    assert!(res.set_cookie(RM).is_some_and(|c| c.value().is_empty()));
    assert!(server.tokens_of(&alice).is_empty(), "expired row deleted");
    assert!(!server.audit_kinds().contains(&"theft_detected".to_owned()));
}

async fn logout_clears_cookie_row_and_session(db: TestDb) {
    let server = TestServer::start(db);
    let alice = server.add_user("alice", "correct horse", false);
    let mut browser = server.browser();
    browser.login("alice", "correct horse", true).await;
    let cookie = browser.cookie(RM).unwrap();
    let session = browser.cookie(SESSION).unwrap();

    let res = browser.logout().await;
    assert_eq!(res.status, 303);
    assert_eq!(res.location(), Some("/login"));
    let removal = res.set_cookie(RM).expect("remember-me cookie cleared");
    assert_eq!(removal.max_age().map(|d| d.whole_seconds()), Some(0));
    assert!(server.tokens_of(&alice).is_empty(), "row deleted");
    assert_eq!(browser.get("/").await.status, 303, "session ended");
    assert!(server.audit_kinds().contains(&"logout".to_owned()));

    let mut replay = server.browser();
    replay.set_cookie(RM, &cookie);
    assert_eq!(
        replay.get("/").await.status,
        303,
        "old cookie signs nobody in"
    );
    // The session cookie from before the logout carries nobody either
    // (its content was purged and the client was told to drop it).
    let mut old_session = server.browser();
    old_session.set_cookie(SESSION, &session);
    let _ = old_session.get("/").await;
}

async fn another_user_signing_in_revokes_the_series_the_browser_carries(db: TestDb) {
    let server = TestServer::start(db);
    let alice = server.add_user("alice", "correct horse", false);
    let bob = server.add_user("bob", "battery staple", false);
    let mut browser = server.browser();
    browser.login("alice", "correct horse", true).await;
    assert_eq!(server.tokens_of(&alice).len(), 1);

    let res = browser.login("bob", "battery staple", false).await;
    assert_eq!(res.status, 303);
    assert!(
        server.tokens_of(&alice).is_empty(),
        "alice's series revoked"
    );
    assert!(browser.cookie(RM).is_none(), "and removed from the browser");
    assert!(browser.get("/").await.body.contains("Signed in as bob"));

    // With the box ticked the other user's series goes and a new one comes.
    browser.login("alice", "correct horse", true).await;
    browser.login("bob", "battery staple", true).await;
    assert!(server.tokens_of(&alice).is_empty());
    assert_eq!(server.tokens_of(&bob).len(), 1);
}

async fn the_same_user_signing_in_again_replaces_the_browser_series(db: TestDb) {
    let server = TestServer::start(db);
    let alice = server.add_user("alice", "correct horse", false);
    let mut browser = server.browser();
    browser.login("alice", "correct horse", true).await;
    let first = server.tokens_of(&alice);
    browser.login("alice", "correct horse", true).await;
    let second = server.tokens_of(&alice);
    assert_eq!(second.len(), 1, "one token per browser");
    assert_ne!(first[0].series_hash, second[0].series_hash, "replaced");

    // A second browser is a second device.
    let mut laptop = server.browser();
    laptop.login("alice", "correct horse", true).await;
    assert_eq!(server.tokens_of(&alice).len(), 2);
}

async fn step_up_from_a_remembered_only_session_never_issues_a_token_by_itself(db: TestDb) {
    let server = TestServer::start(db);
    let alice = server.add_user("alice", "correct horse", false);
    let mut first = server.browser();
    first.login("alice", "correct horse", true).await;
    let mut remembered = server.browser();
    remembered.set_cookie(RM, &first.cookie(RM).unwrap());
    assert_eq!(remembered.get("/").await.status, 200);
    let cookie_after_identify = remembered.cookie(RM);

    // Ask for a token from the step-up form without the password.
    let form = remembered.get("/login/step-up?next=/").await;
    let res = remembered
        .post(
            "/login/step-up",
            &[
                ("csrf_token", &form.csrf()),
                ("password", "guess"),
                ("remember_me", "on"),
            ],
        )
        .await;
    assert_eq!(res.status, 401);
    assert!(res.set_cookie(RM).is_none());
    // Nor through the sign-in form, nor by merely browsing.
    let form = remembered.get("/login").await;
    let res = remembered
        .post(
            "/login",
            &[
                ("csrf_token", &form.csrf()),
                ("username", "alice"),
                ("password", ""),
                ("remember_me", "on"),
            ],
        )
        .await;
    assert_eq!(res.status, 401);
    for _ in 0..3 {
        remembered.get("/").await;
    }
    assert_eq!(server.tokens_of(&alice).len(), 1, "no token minted");
    assert_eq!(remembered.cookie(RM), cookie_after_identify);
    assert_eq!(
        server
            .audit_kinds()
            .iter()
            .filter(|k| *k == "token_issued")
            .count(),
        1
    );
}

async fn forms_without_a_valid_csrf_token_are_refused(db: TestDb) {
    let server = TestServer::start(db);
    server.add_user("alice", "correct horse", false);
    let mut browser = server.browser();
    browser.get("/login").await;
    let fields = [("username", "alice"), ("password", "correct horse")];
    assert_eq!(browser.post("/login", &fields).await.status, 403);
    let with_wrong = [
        ("csrf_token", "wrong"),
        ("username", "alice"),
        ("password", "correct horse"),
    ];
    assert_eq!(browser.post("/login", &with_wrong).await.status, 403);
    // A token from another session is wrong too.
    let mut other = server.browser();
    let foreign = other.get("/login").await.csrf();
    let with_foreign = [
        ("csrf_token", foreign.as_str()),
        ("username", "alice"),
        ("password", "correct horse"),
    ];
    assert_eq!(browser.post("/login", &with_foreign).await.status, 403);

    // The session is emptied at sign-in: a token of the session before it
    // (which a fixation attacker could know) is worthless afterwards.
    let before = browser.get("/login").await.csrf();
    assert_eq!(
        browser.login("alice", "correct horse", false).await.status,
        303
    );
    assert_eq!(
        browser
            .post("/logout", &[("csrf_token", before.as_str())])
            .await
            .status,
        403,
        "a CSRF token from before the sign-in"
    );
    assert_eq!(browser.post("/logout", &[]).await.status, 403);
    assert_eq!(
        browser.post("/logout", &[("csrf_token", "x")]).await.status,
        403
    );
    assert_eq!(browser.get("/").await.status, 200, "still signed in");
}

async fn next_only_redirects_within_the_site(db: TestDb) {
    let server = TestServer::start(db);
    server.add_user("alice", "correct horse", false);
    for (next, expected) in [
        ("//other.example/", "/"),
        ("https://other.example/", "/"),
        ("/\\other.example", "/"),
        ("javascript:alert(1)", "/"),
        ("/account/devices", "/account/devices"),
    ] {
        let mut browser = server.browser();
        let form = browser.get("/login").await;
        let res = browser
            .post(
                "/login",
                &[
                    ("csrf_token", &form.csrf()),
                    ("username", "alice"),
                    ("password", "correct horse"),
                    ("next", next),
                ],
            )
            .await;
        assert_eq!(res.status, 303);
        assert_eq!(res.location(), Some(expected), "next={next}");
    }
}

async fn wrong_password_and_unknown_user_get_the_same_generic_401(db: TestDb) {
    let server = TestServer::start(db);
    server.add_user("alice", "correct horse", false);
    let mut browser = server.browser();
    let wrong = browser.login("alice", "nope", true).await;
    let unknown = browser.login("mallory", "nope", true).await;
    assert_eq!(wrong.status, 401);
    assert_eq!(unknown.status, 401);
    let message = "Wrong username or password.";
    assert!(wrong.body.contains(message) && unknown.body.contains(message));
    assert!(browser.cookie(RM).is_none());
    assert_eq!(browser.get("/").await.status, 303);
    // The form can be answered again after a failure.
    assert_eq!(
        browser.login("alice", "correct horse", false).await.status,
        303
    );
}

async fn healthz_answers_when_the_database_does(db: TestDb) {
    let server = TestServer::start(db);
    let res = server.browser().get("/healthz").await;
    assert_eq!(res.status, 200);
    assert_eq!(res.body, "ok");
}

async fn every_html_response_carries_the_security_headers(db: TestDb) {
    let server = TestServer::start(db);
    server.add_user("alice", "correct horse", false);
    let mut browser = server.browser();
    let login = browser.get("/login").await;
    browser.login("alice", "correct horse", false).await;
    let home = browser.get("/").await;
    for page in [&login, &home] {
        let csp = page.header("content-security-policy").unwrap();
        assert!(csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"));
        assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
        assert!(page.header("referrer-policy").is_some());
    }
    assert_eq!(home.header("cache-control"), Some("no-store"));
}

async fn a_cookie_minted_by_the_testing_helpers_signs_in_by_remember_me(db: TestDb) {
    let server = TestServer::start(db);
    let alice = server.add_user("alice", "correct horse", false);
    let cookie =
        rememberme::testing::remember_me_cookie(server.stores(), &server.config, &alice).unwrap();
    assert_eq!(cookie.name(), RM);
    let mut browser = server.browser();
    browser.set_cookie(RM, cookie.value());
    let home = browser.get("/").await;
    assert_eq!(home.status, 200);
    assert!(home.body.contains("Signed in by remember-me"));
    assert_eq!(server.tokens_of(&alice).len(), 1);
}

async fn parallel_requests_with_one_cookie_rotate_it_exactly_once_without_theft(db: TestDb) {
    let server = TestServer::start(db);
    let alice = server.add_user("alice", "correct horse", false);
    for parallel in [32, 50] {
        let cookie =
            rememberme::testing::remember_me_cookie(server.stores(), &server.config, &alice)
                .unwrap();
        let requests = (0..parallel).map(|_| {
            let mut browser = server.browser();
            browser.set_cookie(RM, cookie.value());
            async move {
                let page = browser.get("/").await;
                (
                    page.status,
                    page.set_cookie(RM).map(|c| c.value().to_owned()),
                    page.body,
                )
            }
        });
        let results = futures_util::future::join_all(requests).await;
        for (status, _, body) in &results {
            assert_eq!(*status, 200, "every request signed in: {body}");
            assert!(!body.contains("locked"), "no database error reaches a user");
        }
        // One request rotated; the others, in grace, were handed the
        // token it made: every browser leaves with the same current token.
        assert!(
            results.iter().all(|(_, c, _)| c.is_some()),
            "every request leaves with the current token"
        );
        let mut rotated: Vec<_> = results.iter().filter_map(|(_, c, _)| c.clone()).collect();
        rotated.dedup();
        assert_eq!(
            rotated.len(),
            1,
            "exactly one rotation among {parallel} requests: {rotated:?}"
        );
        let (series, _) = raw_parts(cookie.value());
        let row = server
            .tokens_of(&alice)
            .into_iter()
            .find(|t| {
                use sha2::Digest as _;
                t.series_hash.as_bytes().as_slice() == sha2::Sha256::digest(&series).as_slice()
            })
            .expect("the row survives");
        use sha2::Digest as _;
        let (_, new_token) = raw_parts(&rotated[0]);
        let (_, old_token) = raw_parts(cookie.value());
        assert_eq!(
            row.token_hash.as_bytes().as_slice(),
            sha2::Sha256::digest(&new_token).as_slice()
        );
        assert_eq!(
            row.previous_token_hash.unwrap().as_bytes().as_slice(),
            sha2::Sha256::digest(&old_token).as_slice()
        );
    }
    assert!(!server.audit_kinds().contains(&"theft_detected".to_owned()));
}

async fn parallel_sign_ins_of_one_user_stay_within_the_token_cap(db: TestDb) {
    let server = TestServer::start_with(db, |b| b.max_tokens_per_user(5));
    let alice = server.add_user("alice", "correct horse", false);
    let sign_ins = (0..20).map(|_| {
        let mut browser = server.browser();
        async move { browser.login("alice", "correct horse", true).await.status }
    });
    let statuses = futures_util::future::join_all(sign_ins).await;
    assert!(statuses.iter().all(|s| *s == 303), "{statuses:?}");
    assert_eq!(
        server.tokens_of(&alice).len(),
        5,
        "the oldest go beyond the cap"
    );
}
