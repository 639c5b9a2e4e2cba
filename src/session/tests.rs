use super::*;

fn state(username: &str, series: Option<SecretHash>) -> AuthState {
    AuthState {
        user_id: UserId::from("42.a/b"),
        username: username.to_owned(),
        is_admin: true,
        tags: [Tag::WEAK_AUTHENTICATION].into_iter().collect(),
        method: SignInMethod::RememberMe,
        epoch: 3,
        checked_at: 1_764_000_123,
        signed_in_at: -5,
        password_at: Some(1_764_000_000),
        sid: random_id(),
        series,
    }
}

#[test]
fn the_auth_state_round_trips_through_the_session_whatever_the_username() {
    for name in ["alice", "a.b.c", "\"quoted\" \\ ä 日本", ""] {
        for series in [None, SecretHash::from_slice(&[7u8; 32])] {
            let original = state(name, series);
            let json = serde_json::to_string(&original).unwrap();
            assert!(
                json.starts_with("\"a4.NDIuYS9i.3.-5.1764000128.1764000005."),
                "{json}"
            );
            let back: AuthState = serde_json::from_str(&json).unwrap();
            assert_eq!(back, original);
        }
    }
    let mut both = state("bob", None);
    both.tags.insert(Tag::PASSWORD_VERIFIED);
    both.is_admin = false;
    both.method = SignInMethod::Password;
    both.password_at = None;
    let back: AuthState = serde_json::from_str(&serde_json::to_string(&both).unwrap()).unwrap();
    assert_eq!(back, both);
    both.tags.insert(Tag::new("SECOND_FACTOR"));
    both.tags.insert(Tag::new("TRUSTED_BROWSER_2"));
    let back: AuthState = serde_json::from_str(&serde_json::to_string(&both).unwrap()).unwrap();
    assert_eq!(back, both, "the app's own tags too");
    both.method = SignInMethod::App;
    let back: AuthState = serde_json::from_str(&serde_json::to_string(&both).unwrap()).unwrap();
    assert_eq!(back, both);
}

#[test]
fn states_written_by_earlier_versions_still_read() {
    // (0.1's `a2.`: a_session_of_0_1_still_reads.)
    let mut earlier = state("a.b", SecretHash::from_slice(&[7u8; 32]));
    earlier.tags.insert(Tag::new("SECOND_FACTOR"));
    let sid = earlier.sid.clone();
    // 0.2's development versions: absolute times, `checked_at` first.
    let series = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc";
    let a3 = format!("a3.NDIuYS9i.3.1764000123.-5.1764000000.11.{sid}.{series}.SECOND_FACTOR.a.b");
    assert_eq!(AuthState::decode(&a3), Some(earlier));
}

#[test]
fn times_far_apart_round_trip_exactly() {
    let mut far = state("alice", None);
    for (signed_in_at, checked_at, password_at) in [
        (i64::MIN, i64::MAX, Some(i64::MAX)),
        (i64::MAX, i64::MIN, Some(0)),
        (0, -1, None),
    ] {
        (far.signed_in_at, far.checked_at, far.password_at) =
            (signed_in_at, checked_at, password_at);
        assert_eq!(AuthState::decode(&far.encode()), Some(far.clone()));
    }
}

#[test]
fn a_damaged_or_foreign_auth_state_reads_as_signed_out() {
    let good = state("alice", SecretHash::from_slice(&[1u8; 32])).encode();
    let series = |bytes: usize| {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(vec![1u8; bytes]);
        format!("a2.1.2.3.4..0.sid.{b64}.alice")
    };
    assert!(AuthState::decode(&series(32)).is_some());
    assert!(AuthState::decode(&good).is_some());
    let bad = [
        good.replacen("a4", "a1", 1), // an older layout
        good.replacen(".NDIuYS9i.", ".!.", 1),
        good.replacen(".NDIuYS9i.", ".gA.", 1), // not UTF-8
        good.replacen(".3.", ".", 1),
        good.replacen(".-5.", ".soon.", 1),
        good.replacen(".1764000005.", ".later.", 1), // the password's offset
        "a2.1.2.3.4..32.sid..alice".to_owned(),      // unknown flag bit
        "a2.1.2.3.4..24.sid..alice".to_owned(),      // two methods at once
        "a2.x.2.3.4..0.sid..alice".to_owned(),       // 0.1's ids are integers
        "a2.1.2.3.4..0.sid.AAAA.alice".to_owned(),   // series not 32 bytes
        series(31),
        series(33),
        series(34),
        series(64),
        "a2.1.2.3.4..0.sid.AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=.alice".to_owned(), // padded
        "a2.1.2.3".to_owned(),
        "a3.MQ.2.3.4..0.sid..second_factor.alice".to_owned(), // not a tag name
        "a3.MQ.2.3.4..0.sid..A.B.alice"
            .to_owned()
            .replace(".A.B.", ".A;B."),
        String::new(),
        r#"{"user_id":1}"#.to_owned(), // the former JSON form
    ];
    for value in bad {
        assert!(AuthState::decode(&value).is_none(), "{value}");
    }
}

#[test]
fn a_session_of_0_1_still_reads() {
    let old = "a2.42.3.1764000123.-5.1764000000.11.c2lk..alice";
    let state = AuthState::decode(old).expect("0.1's layout");
    assert_eq!(state.user_id, UserId::from(42));
    assert_eq!((state.epoch, state.username.as_str()), (3, "alice"));
    assert!(state.is_admin && state.method == SignInMethod::RememberMe);
}
