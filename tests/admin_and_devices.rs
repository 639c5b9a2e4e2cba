//! Admin pages, the user's devices page, the audit log and sign-out
//! everywhere, on SQLite and PostgreSQL.

mod common;

use std::time::Duration;

use common::{Browser, TestDb, TestServer, hidden_value};

const RM: &str = "__Host-remember_me";
const SESSION: &str = "__Host-session";

on_both_backends!(
    an_admin_sees_every_token_and_revoking_one_makes_that_cookie_anonymous,
    revoke_all_ends_the_open_session_at_its_next_check_and_every_cookie_fails,
    non_admins_get_403_on_every_admin_page_and_action,
    the_devices_page_shows_only_ones_own_tokens_and_cannot_revoke_anothers,
    sign_out_all_other_devices_keeps_the_current_one,
    a_password_change_ends_other_sessions_and_tokens,
    every_listed_event_kind_reaches_the_audit_log,
    usernames_and_user_agents_render_inert,
    every_action_refuses_a_missing_csrf_token,
    the_epoch_check_queries_the_database_at_most_once_per_interval,
    revoking_a_device_ends_that_devices_open_session,
    a_revoked_session_cannot_adopt_the_next_epoch_by_signing_out_others,
    a_password_change_needs_the_current_password,
    the_admin_token_list_pages_by_keyset,
    the_audit_log_pages_by_keyset_across_equal_times,
);

/// 70 `logout` events, many sharing a second (so the `(at, id)` cursor
/// must break ties by id): the first page has the newest 50, the `Older`
/// link the other 20, none twice, none lost.
async fn the_audit_log_pages_by_keyset_across_equal_times(db: TestDb) {
    use rememberme::store::{AuditKind, NewAuditEvent};
    let server = TestServer::start(db);
    let alice = server.add_user("alice", "some password", false);
    let details: Vec<String> = (0..70).map(|i| format!("event-{i:02}")).collect();
    let events: Vec<NewAuditEvent<'_>> = details
        .iter()
        .enumerate()
        .map(|(i, detail)| NewAuditEvent {
            at: 1_000_000 + (i as i64) / 7, // seven events a second
            kind: AuditKind::Logout,
            user_id: Some(&alice),
            ip: None,
            user_agent: None,
            detail,
        })
        .collect();
    server.stores().audit.record_batch(&events).unwrap();
    server.add_user("root", "admin password", true);
    let mut admin = remembered(&server, "root", "admin password").await;
    let listed = |body: &str| -> Vec<String> {
        body.split("<td>event-")
            .skip(1)
            .map(|rest| rest[..2].to_owned())
            .collect()
    };
    let first = admin.get("/admin/audit?kind=logout&user=alice").await;
    assert_eq!(first.status, 200, "{}", first.body);
    let newest = listed(&first.body);
    assert_eq!(newest.len(), 50);
    assert_eq!(newest[0], "69", "newest first");
    let older = first
        .body
        .split("before_at=")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("an Older link")
        .replace("&amp;", "&");
    let second = admin
        .get(&format!(
            "/admin/audit?kind=logout&user=alice&before_at={older}"
        ))
        .await;
    assert_eq!(second.status, 200);
    let rest = listed(&second.body);
    assert!(second.body.contains(">Newest<") && !second.body.contains(">Older<"));
    let mut all: Vec<String> = newest.into_iter().chain(rest).collect();
    let expected: Vec<String> = (0..70).rev().map(|i| format!("{i:02}")).collect();
    assert_eq!(all, expected, "every event once, newest first");
    all.dedup();
    assert_eq!(all.len(), 70);
}

/// 61 tokens: the newest 50 on the first page and an `Older` link `before`
/// the last of them; that page has the other 11 and a link back to the
/// newest, and no `Older`. Pages are keyset (`before=<id>`), so a deep page
/// costs what the first does on a table of millions (issue 16).
async fn the_admin_token_list_pages_by_keyset(db: TestDb) {
    let server = TestServer::start(db);
    server.add_user("root", "admin password", true);
    for u in 0..6 {
        let id = server.add_user(&format!("user{u}"), "some password", false);
        for _ in 0..10 {
            rememberme::testing::remember_me_cookie(server.stores(), &server.config, &id).unwrap();
        }
    }
    let mut admin = remembered(&server, "root", "admin password").await;
    let first = admin.get("/admin/tokens").await;
    assert_eq!(first.status, 200, "{}", first.body);
    let rows = |body: &str| body.matches("/revoke\"").count();
    assert_eq!(rows(&first.body), 50, "{}", first.body);
    assert!(first.body.contains(">root</a>"), "the newest first");
    assert!(!first.body.contains(">Newest<"));
    let older = first
        .body
        .split("before=")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("an Older link")
        .to_owned();
    let second = admin
        .get(&format!("/admin/tokens?user=&before={older}"))
        .await;
    assert_eq!(second.status, 200);
    assert_eq!(rows(&second.body), 11, "{}", second.body);
    assert!(second.body.contains(">Newest<") && !second.body.contains(">Older<"));
    assert!(!second.body.contains(">root</a>"), "no row twice");
}

async fn revoking_a_device_ends_that_devices_open_session(db: TestDb) {
    let server = TestServer::start(db);
    let alice = server.add_user("alice", "correct horse", false);
    let mut laptop = remembered(&server, "alice", "correct horse").await;
    let mut stolen_phone = remembered(&server, "alice", "correct horse").await;
    assert_eq!(stolen_phone.get("/").await.status, 200);
    let phone_series = server
        .tokens_of(&alice)
        .into_iter()
        .find(|t| {
            let (series, _) = common::raw_parts(&stolen_phone.cookie(RM).unwrap());
            use sha2::Digest as _;
            t.series_hash.as_bytes().as_slice() == sha2::Sha256::digest(&series).as_slice()
        })
        .unwrap();
    let csrf = laptop.get("/account/devices").await.csrf();
    let res = laptop
        .post(
            &format!("/account/devices/{}/revoke", phone_series.id),
            &[("csrf_token", &csrf)],
        )
        .await;
    assert_eq!(res.status, 303);
    assert_eq!(
        stolen_phone.get("/").await.status,
        303,
        "the revoked device's open session ends"
    );
    assert_eq!(laptop.get("/").await.status, 200, "the other device stays");
}

async fn a_revoked_session_cannot_adopt_the_next_epoch_by_signing_out_others(db: TestDb) {
    let server = TestServer::start_with(db, |b| b.epoch_check_interval(Duration::from_secs(60)));
    let alice = server.add_user("alice", "correct horse", false);
    let mut thief = remembered(&server, "alice", "correct horse").await;
    let csrf = thief.get("/account/devices").await.csrf();
    // The victim revokes everything (as revoke-all does: tokens and epoch);
    // the thief's session has not re-checked yet.
    server.stores().tokens.delete_all_for_user(&alice).unwrap();
    server.stores().state.bump_epoch(&alice).unwrap();
    let res = thief
        .post("/account/devices/sign-out-others", &[("csrf_token", &csrf)])
        .await;
    assert_eq!(res.status, 303);
    assert_eq!(
        res.location(),
        Some("/login"),
        "the revoked session ends instead"
    );
    assert_eq!(thief.get("/").await.status, 303);
    let epoch = server.stores().state.auth_epoch(&alice).unwrap();
    assert_eq!(epoch, 1, "no second bump adopted by the thief");
}

async fn a_password_change_needs_the_current_password(db: TestDb) {
    let server = TestServer::start(db);
    server.add_user("alice", "correct horse", false);
    let mut browser = remembered(&server, "alice", "correct horse").await;
    let form = browser.get("/account/password").await;
    let res = browser
        .post(
            "/account/password",
            &[
                ("csrf_token", &form.csrf()),
                ("current_password", "wrong"),
                ("new_password", "a brand new password"),
                ("confirm_password", "a brand new password"),
            ],
        )
        .await;
    assert_eq!(res.status, 401);
    let mut fresh = server.browser();
    assert_eq!(
        fresh.login("alice", "correct horse", false).await.status,
        303,
        "unchanged"
    );
}

/// Signs in with the box ticked in a fresh browser.
async fn remembered(server: &TestServer, name: &str, password: &str) -> Browser {
    let mut browser = server.browser();
    let res = browser.login(name, password, true).await;
    assert_eq!(res.status, 303, "{}", res.body);
    browser
}

async fn an_admin_sees_every_token_and_revoking_one_makes_that_cookie_anonymous(db: TestDb) {
    let server = TestServer::start(db);
    server.add_user("root", "admin password", true);
    let alice = server.add_user("alice", "correct horse", false);
    server.add_user("bob", "battery staple", false);
    let mut alice_browser = remembered(&server, "alice", "correct horse").await;
    remembered(&server, "bob", "battery staple").await;
    let mut admin = remembered(&server, "root", "admin password").await;

    let page = admin.get("/admin/tokens").await;
    assert_eq!(page.status, 200, "{}", page.body);
    for name in ["alice", "bob", "root"] {
        assert!(page.body.contains(&format!(">{name}</a>")), "{name} listed");
    }
    assert!(
        !page
            .body
            .contains(&alice_browser.cookie(RM).unwrap()[3..20]),
        "no secret shown"
    );
    let filtered = admin.get("/admin/tokens?user=alice").await;
    assert!(filtered.body.contains(">alice</a>") && !filtered.body.contains(">bob</a>"));
    let empty = admin.get("/admin/tokens?user=nobody").await;
    assert!(empty.body.contains("No remember-me tokens"));

    let id = server.tokens_of(&alice)[0].id;
    let res = admin
        .post(
            &format!("/admin/tokens/{id}/revoke"),
            &[("csrf_token", &page.csrf())],
        )
        .await;
    assert_eq!(res.status, 303);
    assert_eq!(res.location(), Some("/admin/tokens"));
    assert!(
        admin
            .get("/admin/tokens")
            .await
            .body
            .contains("Token revoked."),
        "flash shown"
    );
    assert!(server.tokens_of(&alice).is_empty());

    alice_browser.drop_cookie(SESSION);
    assert_eq!(
        alice_browser.get("/").await.status,
        303,
        "the revoked cookie signs nobody in"
    );
}

async fn revoke_all_ends_the_open_session_at_its_next_check_and_every_cookie_fails(db: TestDb) {
    let server = TestServer::start_with(db, |b| b.epoch_check_interval(Duration::from_secs(60)));
    server.add_user("root", "admin password", true);
    let alice = server.add_user("alice", "correct horse", false);
    let mut phone = remembered(&server, "alice", "correct horse").await;
    let mut laptop = remembered(&server, "alice", "correct horse").await;
    let laptop_cookie = laptop.cookie(RM).unwrap();
    let mut admin = remembered(&server, "root", "admin password").await;
    let csrf = admin.get("/admin/tokens").await.csrf();

    let res = admin
        .post(
            "/admin/users/revoke-all",
            &[("csrf_token", &csrf), ("username", "alice")],
        )
        .await;
    assert_eq!(res.status, 303);
    assert!(server.tokens_of(&alice).is_empty());

    // Within the check interval the session still stands…
    assert_eq!(phone.get("/").await.status, 200);
    // …and at the next check it ends.
    server.clock.advance(Duration::from_secs(61));
    assert_eq!(phone.get("/").await.status, 303);
    laptop.drop_cookie(SESSION);
    laptop.set_cookie(RM, &laptop_cookie);
    assert_eq!(laptop.get("/").await.status, 303, "every cookie fails");
    assert!(
        server
            .audit_kinds()
            .contains(&"sign_out_everywhere".to_owned())
    );
}

async fn non_admins_get_403_on_every_admin_page_and_action(db: TestDb) {
    let server = TestServer::start(db);
    let alice = server.add_user("alice", "correct horse", false);
    let mut browser = remembered(&server, "alice", "correct horse").await;
    let csrf = browser.get("/account/devices").await.csrf();
    assert_eq!(browser.get("/admin/tokens").await.status, 403);
    assert_eq!(browser.get("/admin/audit").await.status, 403);
    let id = server.tokens_of(&alice)[0].id;
    let revoke = browser
        .post(
            &format!("/admin/tokens/{id}/revoke"),
            &[("csrf_token", &csrf)],
        )
        .await;
    assert_eq!(revoke.status, 403);
    let all = browser
        .post(
            "/admin/users/revoke-all",
            &[("csrf_token", &csrf), ("username", "alice")],
        )
        .await;
    assert_eq!(all.status, 403);
    assert_eq!(server.tokens_of(&alice).len(), 1, "nothing revoked");
    // A remembered-only non-admin is refused too, not offered a step-up.
    let mut remembered_only = server.browser();
    remembered_only.set_cookie(RM, &browser.cookie(RM).unwrap());
    assert_eq!(remembered_only.get("/admin/tokens").await.status, 403);
    // Anonymous visitors are sent to sign in.
    let anon = server.browser().get("/admin/tokens").await;
    assert_eq!(anon.status, 303);
    assert_eq!(anon.location(), Some("/login?next=%2Fadmin%2Ftokens"));
}

async fn the_devices_page_shows_only_ones_own_tokens_and_cannot_revoke_anothers(db: TestDb) {
    let server = TestServer::start(db);
    let alice = server.add_user("alice", "correct horse", false);
    let bob = server.add_user("bob", "battery staple", false);
    let mut alice_browser = remembered(&server, "alice", "correct horse").await;
    let _bob_browser = remembered(&server, "bob", "battery staple").await;
    let bob_token = server.tokens_of(&bob)[0].id;
    let alice_token = server.tokens_of(&alice)[0].id;

    let page = alice_browser.get("/account/devices").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body
            .contains(&format!("/account/devices/{alice_token}/revoke"))
    );
    assert!(
        !page
            .body
            .contains(&format!("/account/devices/{bob_token}/revoke"))
    );
    assert!(page.body.contains("(this browser)"));

    let res = alice_browser
        .post(
            &format!("/account/devices/{bob_token}/revoke"),
            &[("csrf_token", &page.csrf())],
        )
        .await;
    assert_eq!(res.status, 404, "guessing an id revokes nothing");
    assert_eq!(server.tokens_of(&bob).len(), 1);

    let res = alice_browser
        .post(
            &format!("/account/devices/{alice_token}/revoke"),
            &[("csrf_token", &page.csrf())],
        )
        .await;
    assert_eq!(res.status, 303);
    assert!(server.tokens_of(&alice).is_empty());
    // Revoking this browser's own token signs this browser out.
    assert_eq!(alice_browser.get("/account/devices").await.status, 303);
}

async fn sign_out_all_other_devices_keeps_the_current_one(db: TestDb) {
    let server = TestServer::start(db);
    let alice = server.add_user("alice", "correct horse", false);
    let mut here = remembered(&server, "alice", "correct horse").await;
    let mut other = remembered(&server, "alice", "correct horse").await;
    let mut no_box = server.browser();
    no_box.login("alice", "correct horse", false).await;
    assert_eq!(server.tokens_of(&alice).len(), 2);
    let keep = server
        .tokens_of(&alice)
        .into_iter()
        .map(|t| t.series_hash)
        .collect::<Vec<_>>();

    // A copy of this browser's cookie (what a user who suspects theft
    // signs everything out for) ends too: it used to stay current.
    let copy = here.cookie(RM).unwrap();
    let csrf = here.get("/account/devices").await.csrf();
    let res = here
        .post("/account/devices/sign-out-others", &[("csrf_token", &csrf)])
        .await;
    assert_eq!(res.status, 303);
    let left = server.tokens_of(&alice);
    assert_eq!(left.len(), 1, "only this browser's token stays");
    assert!(
        !keep.contains(&left[0].series_hash),
        "replaced by a new series"
    );
    let mut thief = server.browser();
    thief.set_cookie(RM, &copy);
    assert_eq!(thief.get("/").await.status, 303, "the copy is dead");
    assert_eq!(server.tokens_of(&alice).len(), 1);
    assert_eq!(here.get("/").await.status, 200, "this session stays");
    assert_eq!(other.get("/").await.status, 303, "other sessions end");
    assert_eq!(no_box.get("/").await.status, 303);
    here.drop_cookie(SESSION);
    assert_eq!(
        here.get("/").await.status,
        200,
        "this browser's cookie still works"
    );
}

async fn a_password_change_ends_other_sessions_and_tokens(db: TestDb) {
    let server = TestServer::start(db);
    let alice = server.add_user("alice", "correct horse", false);
    let mut here = remembered(&server, "alice", "correct horse").await;
    let copy = here.cookie(RM).unwrap();
    let mut other = remembered(&server, "alice", "correct horse").await;

    // A remembered-only session must step up first.
    let mut remembered_only = server.browser();
    remembered_only.set_cookie(RM, &other.cookie(RM).unwrap());
    let res = remembered_only.get("/account/password").await;
    assert_eq!(res.status, 303);
    assert_eq!(
        res.location(),
        Some("/login/step-up?next=%2Faccount%2Fpassword")
    );
    other = remembered_only;

    let form = here.get("/account/password").await;
    assert_eq!(form.status, 200);
    let short = here
        .post(
            "/account/password",
            &[
                ("csrf_token", &form.csrf()),
                ("new_password", "short"),
                ("confirm_password", "short"),
            ],
        )
        .await;
    assert_eq!(short.status, 422);
    let res = here
        .post(
            "/account/password",
            &[
                ("csrf_token", &form.csrf()),
                ("current_password", "correct horse"),
                ("new_password", "a brand new password"),
                ("confirm_password", "a brand new password"),
            ],
        )
        .await;
    assert_eq!(res.status, 303, "{}", res.body);
    assert_eq!(here.get("/").await.status, 200, "this session stays");
    assert_eq!(other.get("/").await.status, 303, "the other session ends");
    assert_eq!(
        server.tokens_of(&alice).len(),
        1,
        "only this browser's token stays"
    );
    // A copy of this browser's cookie from before the change is dead (it
    // used to stay current), and the browser's own new cookie works.
    let mut thief = server.browser();
    thief.set_cookie(RM, &copy);
    assert_eq!(thief.get("/").await.status, 303, "the copy is dead");
    let mut own = server.browser();
    own.set_cookie(RM, &here.cookie(RM).unwrap());
    assert_eq!(
        own.get("/").await.status,
        200,
        "this browser's new cookie works"
    );

    let mut fresh = server.browser();
    assert_eq!(
        fresh.login("alice", "correct horse", false).await.status,
        401
    );
    assert_eq!(
        fresh
            .login("alice", "a brand new password", false)
            .await
            .status,
        303
    );
    assert!(
        server
            .audit_kinds()
            .contains(&"password_changed".to_owned())
    );
}

async fn every_listed_event_kind_reaches_the_audit_log(db: TestDb) {
    let server = TestServer::start(db);
    server.add_user("root", "admin password", true);
    server.add_user("alice", "correct horse", false);
    let mut alice = server.browser();
    alice.login("alice", "nope", false).await; // sign_in_failed
    alice = remembered(&server, "alice", "correct horse").await; // password_sign_in, token_issued
    let stolen = alice.cookie(RM).unwrap();
    alice.drop_cookie(SESSION);
    alice.get("/").await; // remember_me_sign_in (rotation)
    let step_up = alice.get("/account/password").await;
    assert_eq!(step_up.status, 303);
    let form = alice.get("/login/step-up?next=/account/password").await;
    alice
        .post(
            "/login/step-up",
            &[("csrf_token", &form.csrf()), ("password", "correct horse")],
        )
        .await; // step_up
    let form = alice.get("/account/password").await;
    alice
        .post(
            "/account/password",
            &[
                ("csrf_token", &form.csrf()),
                ("current_password", "correct horse"),
                ("new_password", "another password"),
                ("confirm_password", "another password"),
            ],
        )
        .await; // password_changed
    let csrf = alice.get("/account/devices").await.csrf();
    alice
        .post("/account/devices/sign-out-others", &[("csrf_token", &csrf)])
        .await; // sign_out_everywhere
    let _tablet = remembered(&server, "alice", "another password").await;
    let id = server.tokens_of(&rememberme::UserId::from(2))[0].id; // the tablet's: newest first
    let csrf = alice.get("/account/devices").await.csrf();
    alice
        .post(
            &format!("/account/devices/{id}/revoke"),
            &[("csrf_token", &csrf)],
        )
        .await; // token_revoked
    alice.logout().await; // logout

    let mut victim = remembered(&server, "alice", "another password").await;
    let old = victim.cookie(RM).unwrap();
    victim.drop_cookie(SESSION);
    victim.get("/").await;
    server.clock.advance(Duration::from_secs(120));
    let mut late = server.browser();
    late.set_cookie(RM, &old);
    late.get("/").await; // possible_theft: one rotation back, after the grace window

    let mut victim = remembered(&server, "alice", "another password").await;
    let old = victim.cookie(RM).unwrap();
    for _ in 0..2 {
        victim.drop_cookie(SESSION);
        victim.get("/").await;
    }
    let mut thief = server.browser();
    thief.set_cookie(RM, &old);
    thief.get("/").await; // theft_detected: two rotations back
    let _ = stolen;

    assert!(server.wait_for_audit("remember_me_sign_in").await);
    let mut admin = remembered(&server, "root", "admin password").await;
    let page = admin.get("/admin/audit").await;
    assert_eq!(page.status, 200);
    // The demo signs nobody in by id: `tests/sign_in.rs` covers that kind.
    for kind in rememberme::store::AuditKind::ALL
        .into_iter()
        .filter(|k| *k != rememberme::store::AuditKind::AppSignIn)
    {
        assert!(
            server.audit_kinds().contains(&kind.as_str().to_owned()),
            "no {} event",
            kind.as_str()
        );
        assert!(
            page.body
                .contains(&format!("<code>{}</code>", kind.as_str())),
            "{} shown",
            kind.as_str()
        );
    }
    let filtered = admin.get("/admin/audit?kind=theft_detected").await;
    assert!(filtered.body.contains("<code>theft_detected</code>"));
    assert!(!filtered.body.contains("<code>logout</code>"));
    let by_user = admin.get("/admin/audit?user=root").await;
    assert!(!by_user.body.contains("<code>theft_detected</code>"));
}

async fn usernames_and_user_agents_render_inert(db: TestDb) {
    let server = TestServer::start(db);
    server.add_user("root", "admin password", true);
    let evil = "<script>alert(1)</script>";
    server.add_user(evil, "correct horse", false);
    let mut browser = Browser::with_user_agent(&server.base, "<script>alert(2)</script>");
    assert_eq!(browser.login(evil, "correct horse", true).await.status, 303);
    let home = browser.get("/").await;
    let devices = browser.get("/account/devices").await;
    let mut admin = remembered(&server, "root", "admin password").await;
    let tokens = admin.get("/admin/tokens").await;
    let audit = admin.get("/admin/audit").await;
    for page in [&home, &devices, &tokens, &audit] {
        assert_eq!(page.status, 200);
        assert!(
            !page.body.contains("<script"),
            "raw markup in:\n{}",
            page.body
        );
    }
    assert!(
        home.body
            .contains("&#60;script&#62;alert(1)&#60;/script&#62;")
    );
    assert!(audit.body.contains("&#60;script&#62;alert(2)"));
}

async fn every_action_refuses_a_missing_csrf_token(db: TestDb) {
    let server = TestServer::start(db);
    let root = server.add_user("root", "admin password", true);
    let mut admin = remembered(&server, "root", "admin password").await;
    let id = server.tokens_of(&root)[0].id;
    let paths = [
        format!("/admin/tokens/{id}/revoke"),
        "/admin/users/revoke-all".to_owned(),
        format!("/account/devices/{id}/revoke"),
        "/account/devices/sign-out-others".to_owned(),
        "/account/password".to_owned(),
        "/login/step-up".to_owned(),
        "/logout".to_owned(),
        "/login".to_owned(),
    ];
    for path in &paths {
        let fields = [
            ("username", "root"),
            ("password", "admin password"),
            ("new_password", "xxxxxxxxxx"),
            ("confirm_password", "xxxxxxxxxx"),
        ];
        let res = admin.post(path, &fields).await;
        assert_eq!(res.status, 403, "{path} without a CSRF token");
        let mut with_wrong = fields.to_vec();
        with_wrong.push(("csrf_token", "forged"));
        assert_eq!(
            admin.post(path, &with_wrong).await.status,
            403,
            "{path} with a wrong one"
        );
    }
    assert_eq!(server.tokens_of(&root).len(), 1, "nothing changed");
    assert_eq!(admin.get("/").await.status, 200, "still signed in");
    let mut fresh = server.browser();
    assert_eq!(
        fresh.login("root", "admin password", false).await.status,
        303,
        "password unchanged"
    );
    let _ = hidden_value;
}

async fn the_epoch_check_queries_the_database_at_most_once_per_interval(db: TestDb) {
    let (server, counts) =
        TestServer::start_counting(db, |b| b.epoch_check_interval(Duration::from_secs(60)));
    server.add_user("alice", "correct horse", false);
    let mut browser = server.browser();
    browser.login("alice", "correct horse", false).await;
    let before = counts.auth_epoch();
    let total_before = counts.total();
    for _ in 0..20 {
        assert_eq!(browser.get("/").await.status, 200);
    }
    assert_eq!(
        counts.auth_epoch(),
        before,
        "no epoch query inside the interval"
    );
    assert_eq!(
        counts.total(),
        total_before,
        "no store call at all on the signed-in hot path"
    );
    server.clock.advance(Duration::from_secs(61));
    counts.take_log();
    for _ in 0..5 {
        browser.get("/").await;
    }
    // The check reads the crate's epoch, and the app's user (it may be
    // gone, its roles may have changed).
    assert_eq!(
        counts.take_log(),
        ["auth_epoch", "find_by_id"],
        "one check after the interval"
    );
}
